/*
 * basebackup - full snapshots of a data directory, and what to do with them:
 *   basebackup create | list | restore | verify | check | keep | status | drill
 *   (a command is required)
 *
 * Exit status: 0 success, 1 failure, 2 usage error; status alone exits with Nagios's states
 * (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, a usage error of its options included).
 */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backup/backup.h"
#include "base/cli.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/progress.h"
#include "base/util.h"
#include "ops/drill.h"
#include "ops/notify.h"
#include "ops/status.h"

static const char usage[] =
    "basebackup takes, lists, restores and verifies base backups in the walsafe repository.\n"
    "\n"
    "Usage:\n"
    "  basebackup [OPTIONS] create [--type full|diff|incr] [--label TEXT] [--fast]\n"
    "             [--parallel N] [--progress | --no-progress] [--allow-root]\n"
    "             (--type: default backup_type, else full)\n"
    "  basebackup [OPTIONS] list [--json]   with --cluster all: every cluster of the repository\n"
    "                                       (--json: {\"clusters\": [one list --json each]})\n"
    "  basebackup [OPTIONS] restore --pgdata DIR [--backup ID|latest]\n"
    "             [--target-time TS | --target-lsn LSN | --target-xid XID |\n"
    "              --target-name NAME | --target-immediate]\n"
    "             [--target-action pause|promote|shutdown] [--parallel N] [--force | --delta]\n"
    "             [--tablespace-map OLDDIR=NEWDIR]... [--progress | --no-progress]\n"
    "  basebackup [OPTIONS] restore --extra-to DIR [--backup ID|latest] [--pgdata DIR ...]\n"
    "             the backup's extra paths (backup_extra_paths) into DIR/<their path>; with\n"
    "             --pgdata, that same backup's data directory afterwards\n"
    "  basebackup [OPTIONS] verify [ID | --all]\n"
    "  basebackup [OPTIONS] check [--allow-root]   one OK/FAILED/SKIPPED line per precondition;\n"
    "                                              forces a WAL switch (pg_switch_wal)\n"
    "  basebackup [OPTIONS] keep ID [--unset] [--allow-root]   pin a backup: wal-prune keeps it\n"
    "                                 (and the WAL from its start) until --unset\n"
    "  basebackup [OPTIONS] status [--json] [--prometheus FILE] [--max-archive-lag N]\n"
    "             [--max-backup-age DUR] [--max-wal-age DUR] [--max-logical-age DUR]\n"
    "             is the cluster safe? (DUR: 90s, 30m, 26h, 2d; N: WAL segments)\n"
    "  basebackup [OPTIONS] drill [--backup ID] [--keep] [--json]   restore test: restore into\n"
    "             a private directory, recover to the end of the archive, check, remove\n"
    "\n"
    "OPTIONS: --config FILE, --repo URL, --cluster NAME, -v, --help, --version\n"
    "\n"
    "create and restore show progress on stderr when it is a terminal (--progress: also when\n"
    "not; --no-progress: never) and end with one summary line on stderr (size, stored,\n"
    "duration, rate); create's stdout is only the backup id. Without --fast, create waits for\n"
    "a spread checkpoint first. max_rate (config) limits the bytes per second to and from\n"
    "the repository.\n"
    "\n"
    "create, keep and check run as the owner of a local repository's directory and never as\n"
    "root, unless --allow-root is given (what they create is then given to that owner).\n"
    "\n"
    "Exit status: 0 success; 1 failure; 2 usage error. status: 0 OK, 1 WARNING, 2 CRITICAL,\n"
    "3 UNKNOWN (Nagios's states).\n";

#define MAX_MAPS 64

struct opts {
    const char *cmd;
    struct ws_backup_opts create;
    int type; /* --type: an enum ws_backup_type, or -1 */
    struct ws_restore_opts restore;
    struct ws_tblspc_map maps[MAX_MAPS];
    char map_from[MAX_MAPS][4096]; /* the OLDDIR part of each --tablespace-map */
    int json, all, ntargets;
    const char *verify_id;
    int unset;
    const char *keep_id;
    struct ws_status_opts status;
    int status_opts; /* a status option was given */
    int progress;    /* --progress 1, --no-progress 0, neither -1 */
    int allow_root;
    struct ws_drill_opts drill;
};

static int parse_int(const char *opt, const char *v, int lo, int hi, int *out, struct ws_error *err)
{
    char *end;
    long n = strtol(v, &end, 10);

    if (!*v || *end || n < lo || n > hi)
        return ws_error_set(err, WS_ERR_USAGE,
                            "option %s needs a number from %d to %d (got "
                            "\"%s\")",
                            opt, lo, hi, v);
    *out = (int)n;
    return 0;
}

/* status's options: --prometheus FILE, --max-archive-lag N, --max-backup-age / --max-wal-age /
 * --max-logical-age DUR. 1 when taken, 0 when unknown, or an error code. */
static int status_option(struct opts *o, const char *opt, const char *next, int *used,
                         struct ws_error *err)
{
    struct ws_status_limits *l = &o->status.limits;
    int64_t *dur = strcmp(opt, "--max-backup-age") == 0    ? &l->max_backup_age
                   : strcmp(opt, "--max-wal-age") == 0     ? &l->max_wal_age
                   : strcmp(opt, "--max-logical-age") == 0 ? &l->max_logical_age
                                                           : NULL;
    int n;

    if (!dur && strcmp(opt, "--prometheus") && strcmp(opt, "--max-archive-lag"))
        return 0;
    if (!next)
        return ws_error_set(err, WS_ERR_USAGE, "option %s needs a value", opt);
    *used = 1;
    o->status_opts = 1;
    if (strcmp(opt, "--prometheus") == 0) {
        if (!*next)
            return ws_error_set(err, WS_ERR_USAGE, "--prometheus needs a file name");
        o->status.prom_path = next;
    } else if (!dur) {
        if (parse_int(opt, next, 0, 1000000, &n, err) != 0)
            return err->code;
        l->max_archive_lag = n;
    } else if (ws_parse_duration(next, dur) != 0) {
        return ws_error_set(err, WS_ERR_USAGE,
                            "%s needs a duration such as 90s, 30m, 26h or 2d (got \"%s\")", opt,
                            next);
    }
    return 1;
}

/* Program options; which ones a subcommand accepts is checked after parsing. */
static int extra(void *arg, const char *opt, const char *next, int *used, struct ws_error *err)
{
    struct opts *o = arg;
    static const struct {
        const char *name;
        int kind;
    } targets[] = {{"--target-time", WS_TARGET_TIME},
                   {"--target-lsn", WS_TARGET_LSN},
                   {"--target-xid", WS_TARGET_XID},
                   {"--target-name", WS_TARGET_NAME}};
    size_t i;

    *used = 0;
    if (strcmp(opt, "--fast") == 0)
        return o->create.fast = 1;
    if (strcmp(opt, "--progress") == 0 || strcmp(opt, "--no-progress") == 0) {
        o->progress = strcmp(opt, "--progress") == 0;
        return 1;
    }
    if (strcmp(opt, "--json") == 0)
        return o->json = 1;
    if (strcmp(opt, "--all") == 0)
        return o->all = 1;
    if (strcmp(opt, "--unset") == 0)
        return o->unset = 1;
    if (strcmp(opt, "--keep") == 0)
        return o->drill.keep = 1;
    if (strcmp(opt, "--force") == 0)
        return o->restore.force = 1;
    if (strcmp(opt, "--delta") == 0)
        return o->restore.delta = 1;
    if (strcmp(opt, "--allow-root") == 0)
        return o->allow_root = 1;
    if (strcmp(opt, "--target-immediate") == 0) {
        o->restore.target_kind = WS_TARGET_IMMEDIATE;
        o->ntargets++;
        return 1;
    }
    /* the rest take a value */
    for (i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
        if (strcmp(opt, targets[i].name) == 0) {
            if (!next)
                return ws_error_set(err, WS_ERR_USAGE, "option %s needs a value", opt);
            const char *c;
            for (c = next; *c; c++)
                if ((unsigned char)*c < 0x20 || *c == 0x7f)
                    return ws_error_set(err, WS_ERR_USAGE,
                                        "%s must not contain control characters (it goes into "
                                        "postgresql.auto.conf)",
                                        opt);
            o->restore.target_kind = targets[i].kind;
            o->restore.target = next;
            o->ntargets++;
            *used = 1;
            return 1;
        }
    }
    if (strcmp(opt, "--prometheus") == 0 || strncmp(opt, "--max-", 6) == 0)
        return status_option(o, opt, next, used, err);
    if (strcmp(opt, "--type") == 0) {
        if (!next || (o->type = ws_backup_type_parse(next)) < 0)
            return ws_error_set(err, WS_ERR_USAGE, "--type must be full, diff or incr (got \"%s\")",
                                next ? next : "");
        *used = 1;
        return 1;
    }
    if (strcmp(opt, "--label") && strcmp(opt, "--parallel") && strcmp(opt, "--pgdata") &&
        strcmp(opt, "--backup") && strcmp(opt, "--target-action") &&
        strcmp(opt, "--tablespace-map") && strcmp(opt, "--extra-to"))
        return 0;
    if (!next)
        return ws_error_set(err, WS_ERR_USAGE, "option %s needs a value", opt);
    *used = 1;
    if (strcmp(opt, "--label") == 0) {
        if (strlen(next) > 255)
            return ws_error_set(err, WS_ERR_USAGE, "--label is longer than 255 bytes");
        o->create.label = next;
    } else if (strcmp(opt, "--parallel") == 0) {
        if (parse_int(opt, next, 1, 256, &o->create.parallel, err) != 0)
            return err->code;
        o->restore.parallel = o->create.parallel;
    } else if (strcmp(opt, "--pgdata") == 0) {
        o->restore.pgdata = next;
    } else if (strcmp(opt, "--extra-to") == 0) {
        o->restore.extra_to = next;
    } else if (strcmp(opt, "--backup") == 0) {
        if (strcmp(next, "latest") != 0 && !ws_backup_id_valid(next))
            return ws_error_set(err, WS_ERR_USAGE,
                                "--backup needs a backup id "
                                "(YYYYMMDDTHHMMSSZ) or \"latest\" (got \"%s\")",
                                next);
        o->restore.backup = next;
    } else if (strcmp(opt, "--target-action") == 0) {
        if (strcmp(next, "pause") && strcmp(next, "promote") && strcmp(next, "shutdown"))
            return ws_error_set(err, WS_ERR_USAGE,
                                "--target-action must be pause, promote or "
                                "shutdown (got \"%s\")",
                                next);
        o->restore.target_action = next;
    } else {
        const char *eq = strchr(next, '=');
        if (!eq || eq == next || !eq[1] || next[0] != '/' || eq[1] != '/')
            return ws_error_set(err, WS_ERR_USAGE,
                                "--tablespace-map needs OLDDIR=NEWDIR with "
                                "absolute paths (got \"%s\")",
                                next);
        if (o->restore.nmaps == MAX_MAPS)
            return ws_error_set(err, WS_ERR_USAGE, "too many --tablespace-map options");
        if ((size_t)(eq - next) >= sizeof(o->map_from[0]))
            return ws_error_set(err, WS_ERR_USAGE, "--tablespace-map: OLDDIR is too long");
        memcpy(o->map_from[o->restore.nmaps], next, (size_t)(eq - next));
        o->map_from[o->restore.nmaps][eq - next] = '\0';
        if (!ws_path_clean_absolute(o->map_from[o->restore.nmaps]) ||
            !ws_path_clean_absolute(eq + 1))
            return ws_error_set(err, WS_ERR_USAGE,
                                "--tablespace-map \"%s\": OLDDIR and NEWDIR must be absolute "
                                "paths without \".\", \"..\", \"//\" or a trailing slash, and "
                                "not \"/\"",
                                next);
        o->maps[o->restore.nmaps].from = o->map_from[o->restore.nmaps];
        o->maps[o->restore.nmaps].to = eq + 1;
        o->restore.nmaps++;
    }
    return 1;
}

#define usage_error(err, ...) ws_error_set(err, WS_ERR_USAGE, __VA_ARGS__)

/* drill: SIGINT and SIGTERM ask it to stop; it then stops its server and removes its files. */
static volatile sig_atomic_t stop_requested;
static void on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void catch_stop_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal; /* no SA_RESTART: waits wake up */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* notify_command after create, verify and drill (ops/notify.h). */
static void notify(const struct ws_config *cfg, const struct opts *o, int rc,
                   const struct ws_error *err, double t0, const struct ws_drill_result *dr)
{
    char event[32];
    struct ws_notify_event ev = {event, NULL, 0, 0, 0, 0, 0, NULL};

    if (strcmp(o->cmd, "create") && strcmp(o->cmd, "verify") && strcmp(o->cmd, "drill"))
        return;
    snprintf(event, sizeof(event), "basebackup %s", o->cmd);
    if (strcmp(o->cmd, "create") == 0 && rc == 0) {
        ev.id = o->create.done->id;
        ev.has_sizes = 1;
        ev.bytes = o->create.done->bytes;
        ev.stored_bytes = o->create.done->stored_bytes;
    } else if (strcmp(o->cmd, "verify") == 0) {
        ev.id = o->verify_id;
    } else if (strcmp(o->cmd, "drill") == 0) {
        ev.id = dr->id;
        ev.has_sizes = dr->bytes > 0;
        ev.bytes = ev.stored_bytes = dr->bytes;
    }
    ws_notify_outcome(cfg, &ev, t0, rc, err);
}

/* Rejects options that do not belong to the subcommand. */
static int check_options(struct opts *o, const struct ws_cli *cli, struct ws_error *err)
{
    const char *c = o->cmd;
    int is_create = strcmp(c, "create") == 0, is_restore = strcmp(c, "restore") == 0;
    int is_drill = strcmp(c, "drill") == 0;

    if ((o->create.label || o->create.fast || o->type >= 0) && !is_create)
        return usage_error(err, "--type, --label and --fast apply to create, not to %s", c);
    if (o->create.parallel && !is_create && !is_restore)
        return usage_error(err, "--parallel applies to create and restore, not to %s", c);
    if (o->progress >= 0 && !is_create && !is_restore)
        return usage_error(
            err, "--progress and --no-progress apply to create and restore, not to %s", c);
    if (o->json && strcmp(c, "list") != 0 && strcmp(c, "status") != 0 && !is_drill)
        return usage_error(err, "--json applies to list, status and drill, not to %s", c);
    if (o->status_opts && strcmp(c, "status") != 0)
        return usage_error(err, "--prometheus and --max-* apply to status, not to %s", c);
    if (o->drill.keep && !is_drill)
        return usage_error(err, "--keep applies to drill, not to %s", c);
    if (o->all && strcmp(c, "verify") != 0)
        return usage_error(err, "--all applies to verify, not to %s", c);
    if (o->unset && strcmp(c, "keep") != 0)
        return usage_error(err, "--unset applies to keep, not to %s", c);
    if (o->allow_root && !is_create && strcmp(c, "keep") != 0 && strcmp(c, "check") != 0)
        return usage_error(err, "--allow-root applies to create, keep and check, not to %s", c);
    if (is_drill && (o->restore.pgdata || o->ntargets || o->restore.target_action ||
                     o->restore.force || o->restore.delta || o->restore.nmaps))
        return usage_error(err, "drill takes --backup, --keep and --json, no other restore "
                                "option");
    if (!is_restore && !is_drill &&
        (o->restore.pgdata || o->restore.backup || o->ntargets || o->restore.target_action ||
         o->restore.force || o->restore.delta || o->restore.nmaps || o->restore.extra_to))
        return usage_error(err,
                           "restore options (--pgdata, --backup, --target-*, --force, --delta, "
                           "--tablespace-map, --extra-to) do not apply to %s",
                           c);
    if (is_restore) {
        if (!o->restore.pgdata && !o->restore.extra_to)
            return ws_error_set(err, WS_ERR_USAGE,
                                "restore needs --pgdata DIR (or --extra-to DIR)");
        if (o->restore.delta && o->restore.force)
            return ws_error_set(err, WS_ERR_USAGE,
                                "--delta and --force exclude each other: --delta rewrites what "
                                "differs in a data directory of the same system, --force empties "
                                "the directory first");
        if (o->ntargets > 1)
            return ws_error_set(err, WS_ERR_USAGE,
                                "give at most one of --target-time, "
                                "--target-lsn, --target-xid, --target-name, "
                                "--target-immediate");
        if (o->restore.target_action && o->restore.target_kind == WS_TARGET_NONE)
            return ws_error_set(err, WS_ERR_USAGE, "--target-action needs a recovery target");
    }
    if (strcmp(c, "verify") == 0) {
        if (cli->nargs > 1 || (cli->nargs == 1 && o->all))
            return ws_error_set(err, WS_ERR_USAGE, "verify takes one backup id or --all");
        if (cli->nargs == 1) {
            if (!ws_backup_id_valid(cli->args[0]))
                return usage_error(err, "\"%s\" is not a backup id (YYYYMMDDTHHMMSSZ)",
                                   cli->args[0]);
            o->verify_id = cli->args[0];
        }
    } else if (strcmp(c, "keep") == 0) {
        if (cli->nargs != 1)
            return usage_error(err, "keep takes one backup id");
        if (!ws_backup_id_valid(cli->args[0]))
            return usage_error(err, "\"%s\" is not a backup id (YYYYMMDDTHHMMSSZ)", cli->args[0]);
        o->keep_id = cli->args[0];
    } else if (cli->nargs > 0) {
        return usage_error(err, "unexpected argument \"%s\"", cli->args[0]);
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const char *const cmds[] = {"create", "list",   "restore", "verify", "check",
                                       "keep",   "status", "drill",   NULL};
    /* the real PostgreSQL session (the one reference to libpq) and the real storage */
    static const struct ws_backup_env env = {&ws_pg_libpq, &ws_repl_libpq, NULL, NULL};
    struct ws_config cfg;
    struct ws_cli cli;
    struct ws_error err = {0};
    struct opts o;
    struct ws_backup_done done = {0};
    struct ws_drill_result drilled = {0};
    int action, status = 1, i, rc;
    double t0 = ws_now_monotonic();

    /* A fixed mmap threshold: glibc's dynamic one rises to the largest block freed (a manifest's
     * text), after which such blocks come from the heap and their pages stay resident; peak RSS
     * of restore and verify at 61 000 files 47 MB instead of 77 and 70 (incremental.md). */
    (void)mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    memset(&o, 0, sizeof(o));
    o.type = -1;
    o.status.limits.max_archive_lag = -1;
    o.status.limits.max_backup_age = o.status.limits.max_wal_age = -1;
    o.status.limits.max_logical_age = -1;
    o.progress = -1;
    ws_cli_start("basebackup");
    ws_config_init(&cfg);
    o.restore.maps = o.maps;
    o.create.done = &done;
    /* options, then an optional subcommand, then its options */
    if (ws_cli_parse(argc, argv, &cfg, &cli, extra, &o, &action, &err) != 0)
        goto usage;
    if (action == WS_CLI_RUN && cli.nargs == 0) { /* a bare basebackup: never a backup */
        ws_error_set(&err, WS_ERR_USAGE,
                     "a command is required (create, list, restore, verify, check, keep or "
                     "status or drill)");
        ws_log_error(&err);
        fputs(usage, stderr);
        status = 2;
        goto out;
    }
    if (action == WS_CLI_RUN) {
        for (i = 0; cmds[i]; i++)
            if (strcmp(cli.args[0], cmds[i]) == 0)
                break;
        if (!cmds[i]) {
            ws_error_set(&err, WS_ERR_USAGE,
                         "unknown command \"%s\" (create, list, restore, "
                         "verify, check, keep, status or drill)",
                         cli.args[0]);
            goto usage;
        }
        o.cmd = cmds[i];
        if (ws_cli_parse_more(&cfg, &cli, extra, &o, &action, &err) != 0)
            goto usage;
    }
    if (ws_cli_answer(action, usage)) {
        status = WS_CLI_EXIT_OK;
        goto out;
    }
    if (check_options(&o, &cli, &err) != 0)
        goto usage;
    cfg.cluster_all_ok = strcmp(o.cmd, "list") == 0; /* list --cluster all: every cluster */
    if ((rc = ws_cli_load_config(&cfg, &cli, &err)) != 0) {
        if (strcmp(o.cmd, "check") == 0)
            ws_backup_check_config_failed(&err); /* in check's own format, on stdout */
        status = ws_cli_finish(rc, &err);
        if (strcmp(o.cmd, "status") == 0)
            status = WS_STATUS_UNKNOWN;
        goto out;
    }
    if (strcmp(o.cmd, "status") == 0) {
        o.status.json = o.json;
        status = ws_status(&cfg, &ws_pg_libpq, &o.status);
        goto out;
    }
    o.restore.config_path = cfg.config_file;
    o.create.progress = o.restore.progress = ws_progress_wanted(o.progress);
    cfg.allow_root = o.allow_root;
    /* the commands that write the repository run as its owner (check reports it as a line) */
    if ((strcmp(o.cmd, "create") == 0 || strcmp(o.cmd, "keep") == 0) &&
        ws_repo_check_user(&cfg, "basebackup", &err) != 0) {
        ws_log_error(&err);
        goto out;
    }
    if (o.type >= 0)
        cfg.backup_type = o.type; /* the option wins over the config key */
    if (strcmp(o.cmd, "create") == 0)
        rc = ws_backup_create(&cfg, &env, &o.create, &err);
    else if (strcmp(o.cmd, "list") == 0)
        rc = ws_backup_list(&cfg, o.json, &err);
    else if (strcmp(o.cmd, "restore") == 0)
        rc = o.restore.extra_to ? ws_backup_restore_extra(&cfg, &env, &o.restore, &err)
                                : ws_backup_restore(&cfg, &env, &o.restore, &err);
    else if (strcmp(o.cmd, "verify") == 0)
        rc = ws_backup_verify(&cfg, &env, o.verify_id, o.all, &err);
    else if (strcmp(o.cmd, "keep") == 0)
        rc = ws_backup_keep(&cfg, o.keep_id, o.unset, &err);
    else if (strcmp(o.cmd, "drill") == 0) {
        o.drill.backup = o.restore.backup;
        o.drill.json = o.json;
        o.drill.config_path = cfg.config_file;
        o.drill.stop = &stop_requested;
        catch_stop_signals();
        rc = ws_drill_run(&cfg, &env, &o.drill, &drilled, &err);
    } else
        rc = ws_backup_check(&cfg, &env, &err);
    status = ws_cli_finish(rc, &err);
    notify(&cfg, &o, rc, &err, t0, &drilled);
    goto out;
usage:
    ws_cli_usage_error(&err);
    status = o.cmd && strcmp(o.cmd, "status") == 0 ? WS_STATUS_UNKNOWN : WS_CLI_EXIT_USAGE;
out:
    ws_config_free(&cfg);
    return status;
}
