/*
 * basebackup - full snapshots of a data directory, and what to do with them:
 *   basebackup create | list | restore | verify | check | keep   (a command is required)
 *
 * Exit status: 0 success, 1 failure, 2 usage error.
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backup/backup.h"
#include "base/cli.h"
#include "base/fs.h"
#include "base/log.h"

static const char usage[] =
    "basebackup takes, lists, restores and verifies base backups in the walsafe repository.\n"
    "\n"
    "Usage:\n"
    "  basebackup [OPTIONS] create [--type full|diff|incr] [--label TEXT] [--fast]\n"
    "             [--parallel N] [--progress]   (--type: default backup_type, else full)\n"
    "  basebackup [OPTIONS] list [--json]   with --cluster all: every cluster of the repository\n"
    "                                       (--json: {\"clusters\": [one list --json each]})\n"
    "  basebackup [OPTIONS] restore --pgdata DIR [--backup ID|latest]\n"
    "             [--target-time TS | --target-lsn LSN | --target-xid XID |\n"
    "              --target-name NAME | --target-immediate]\n"
    "             [--target-action pause|promote|shutdown] [--parallel N] [--force | --delta]\n"
    "             [--tablespace-map OLDDIR=NEWDIR]... [--progress]\n"
    "  basebackup [OPTIONS] restore --extra-to DIR [--backup ID|latest] [--pgdata DIR ...]\n"
    "             the backup's extra paths (backup_extra_paths) into DIR/<their path>; with\n"
    "             --pgdata, that same backup's data directory afterwards\n"
    "  basebackup [OPTIONS] verify [ID | --all]\n"
    "  basebackup [OPTIONS] check\n"
    "  basebackup [OPTIONS] keep ID [--unset]   pin a backup: wal-prune keeps it (and the WAL\n"
    "                                            from its start) until --unset\n"
    "\n"
    "OPTIONS: --config FILE, --repo URL, --cluster NAME, -v, --help, --version\n"
    "\n"
    "Exit status: 0 success; 1 failure; 2 usage error.\n";

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
    if (strcmp(opt, "--progress") == 0)
        return o->create.progress = o->restore.progress = 1;
    if (strcmp(opt, "--json") == 0)
        return o->json = 1;
    if (strcmp(opt, "--all") == 0)
        return o->all = 1;
    if (strcmp(opt, "--unset") == 0)
        return o->unset = 1;
    if (strcmp(opt, "--force") == 0)
        return o->restore.force = 1;
    if (strcmp(opt, "--delta") == 0)
        return o->restore.delta = 1;
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

/* Rejects options that do not belong to the subcommand. */
static int check_options(struct opts *o, const struct ws_cli *cli, struct ws_error *err)
{
    const char *c = o->cmd;
    int is_create = strcmp(c, "create") == 0, is_restore = strcmp(c, "restore") == 0;

    if ((o->create.label || o->create.fast || o->type >= 0) && !is_create)
        return usage_error(err, "--type, --label and --fast apply to create, not to %s", c);
    if (o->create.parallel && !is_create && !is_restore)
        return usage_error(err, "--parallel applies to create and restore, not to %s", c);
    if (o->create.progress && !is_create && !is_restore)
        return usage_error(err, "--progress applies to create and restore, not to %s", c);
    if (o->json && strcmp(c, "list") != 0)
        return usage_error(err, "--json applies to list, not to %s", c);
    if (o->all && strcmp(c, "verify") != 0)
        return usage_error(err, "--all applies to verify, not to %s", c);
    if (o->unset && strcmp(c, "keep") != 0)
        return usage_error(err, "--unset applies to keep, not to %s", c);
    if (!is_restore &&
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
    static const char *const cmds[] = {"create", "list", "restore", "verify",
                                       "check",  "keep", NULL};
    /* the real PostgreSQL session (the one reference to libpq) and the real storage */
    static const struct ws_backup_env env = {&ws_pg_libpq, &ws_repl_libpq, NULL, NULL};
    struct ws_config cfg;
    struct ws_cli cli, sub;
    struct ws_error err = {0};
    struct opts o;
    int action, status = 1, i, rc;

    /* A fixed mmap threshold: glibc's dynamic one rises to the largest block freed (a manifest's
     * text), after which such blocks come from the heap and their pages stay resident; peak RSS
     * of restore and verify at 61 000 files 47 MB instead of 77 and 70 (incremental.md). */
    (void)mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    memset(&o, 0, sizeof(o));
    o.type = -1;
    ws_cli_start("basebackup");
    ws_config_init(&cfg);
    o.restore.maps = o.maps;
    /* options, then an optional subcommand, then its options */
    if (ws_cli_parse(argc, argv, &cfg, &cli, extra, &o, &action, &err) != 0)
        goto usage;
    if (action == WS_CLI_RUN && cli.nargs == 0) {
        ws_error_set(&err, WS_ERR_USAGE,
                     "a command is required (create, list, restore, verify, check or keep)");
        goto usage;
    }
    if (action == WS_CLI_RUN) {
        for (i = 0; cmds[i]; i++)
            if (strcmp(cli.args[0], cmds[i]) == 0)
                break;
        if (!cmds[i]) {
            ws_error_set(&err, WS_ERR_USAGE,
                         "unknown command \"%s\" (create, list, restore, "
                         "verify, check or keep)",
                         cli.args[0]);
            goto usage;
        }
        o.cmd = cmds[i];
        if (ws_cli_parse(cli.nargs, cli.args, &cfg, &sub, extra, &o, &action, &err) != 0)
            goto usage;
        if (sub.config_path)
            cli.config_path = sub.config_path;
        cli.verbose += sub.verbose;
        cli.nargs = sub.nargs;
        cli.args = sub.args;
    }
    if (action == WS_CLI_HELP) {
        printf(usage);
        status = 0;
        goto out;
    }
    if (action == WS_CLI_VERSION) {
        printf("basebackup (walsafe) %s\n", WS_VERSION);
        status = 0;
        goto out;
    }
    if (check_options(&o, &cli, &err) != 0)
        goto usage;
    cfg.cluster_all_ok = strcmp(o.cmd, "list") == 0; /* list --cluster all: every cluster */
    if (ws_cli_load_config(&cfg, &cli, &err) != 0) {
        ws_log_error(&err);
        goto out;
    }
    o.restore.config_path = cfg.config_file;
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
    else
        rc = ws_backup_check(&cfg, &env, &err);
    if (rc != 0) {
        ws_log_error(&err);
        goto out;
    }
    status = 0;
    goto out;
usage:
    ws_log_error(&err);
    fprintf(stderr, "Try \"basebackup --help\".\n");
    status = 2;
out:
    ws_config_free(&cfg);
    return status;
}
