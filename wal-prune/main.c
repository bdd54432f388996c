/*
 * wal-prune - deletes the backups and WAL files that the retention policy (retain_full,
 * retain_time; retain_logical, retain_logical_time for logical backups) no longer needs, and
 * backups that died half-written. Run it after the nightly
 * `basebackup create` (scripts/ has cron and systemd examples).
 *
 * Exit status: 0 success (also when there was nothing to delete); 1 failure, or a run that held
 * back (a timeline's history file missing or unreadable, or backup times that disagree with their
 * WAL positions: no backup deleted by retention, the rest done; prune.h); 2 usage error.
 */
#include <stdio.h>
#include <string.h>

#include "base/cli.h"
#include "base/log.h"
#include "base/util.h"
#include "ops/notify.h"
#include "prune/prune.h"
#include "repo/repo.h"

static const char usage[] =
    "wal-prune deletes the backups and WAL files that the retention policy no longer needs.\n"
    "\n"
    "Usage: wal-prune [OPTIONS] [--dry-run] [--retain-full N] [--retain-time DURATION]\n"
    "                 [--retain-logical N] [--retain-logical-time DURATION] [--json]\n"
    "                 [--allow-root]\n"
    "\n"
    "  --dry-run               print exactly what would be deleted, and delete nothing\n"
    "  --retain-full N         keep the N newest complete full backups and the diff and incr\n"
    "                          backups on them; diffs and incrs never count (overrides\n"
    "                          retain_full)\n"
    "  --retain-time DURATION  keep what restores to any moment of the last DURATION, e.g. 30d\n"
    "                          (units s m h d w; overrides retain_time)\n"
    "  --retain-logical N      logical backups (logicalbackup): keep the N newest complete ones\n"
    "                          (overrides retain_logical)\n"
    "  --retain-logical-time DURATION\n"
    "                          logical backups: keep those started in the last DURATION\n"
    "                          (overrides retain_logical_time)\n"
    "  --json                  print the plan (with --dry-run) or the result as JSON\n"
    "  --allow-root            run as root (refused without it; what it writes into a local\n"
    "                          repository is given to the owner of its directory)\n"
    "\n"
    "OPTIONS: --config FILE, --repo URL, --cluster NAME, -v, --help, --version\n"
    "\n"
    "With both policies set, what either keeps is kept. The newest complete backup and pinned\n"
    "backups (basebackup keep ID) are never deleted, nor any backup that a kept backup needs\n"
    "through its chain of references (\"kept: referenced by ID\"; a pin keeps the whole chain);\n"
    ".history files are always kept. When a timeline's history file cannot be read, or backup\n"
    "times disagree with their WAL positions, no backup is deleted by retention and the exit\n"
    "status is 1.\n"
    "Logical backups follow their own policies (retain_logical, retain_logical_time), apart\n"
    "from the physical ones: the newest complete and pinned ones (logicalbackup keep ID) are\n"
    "never deleted; without either policy they are left alone.\n"
    "\n"
    "Exit status: 0 success; 1 failure, or deletions held back (see the message); 2 usage error.\n";

struct opts {
    struct ws_prune_opts prune;
    struct ws_config *cfg;
};

static int extra(void *arg, const char *opt, const char *next, int *used, struct ws_error *err)
{
    struct opts *o = arg;
    const char *key;

    *used = 0;
    if (strcmp(opt, "--dry-run") == 0)
        return o->prune.dry_run = 1;
    if (strcmp(opt, "--json") == 0)
        return o->prune.json = 1;
    if (strcmp(opt, "--allow-root") == 0)
        return o->cfg->allow_root = 1;
    if (strcmp(opt, "--retain-full") == 0)
        key = "retain_full";
    else if (strcmp(opt, "--retain-time") == 0)
        key = "retain_time";
    else if (strcmp(opt, "--retain-logical") == 0)
        key = "retain_logical";
    else if (strcmp(opt, "--retain-logical-time") == 0)
        key = "retain_logical_time";
    else
        return 0;
    if (!next)
        return ws_error_set(err, WS_ERR_USAGE, "option %s needs a value", opt);
    *used = 1;
    if (ws_config_set_cli(o->cfg, key, next, err) != 0) {
        /* name the option as it was given, not the config key */
        const char *why = strstr(err->msg, "invalid value");
        char msg[sizeof(err->msg)];
        snprintf(msg, sizeof(msg), "%s", why ? why : err->msg);
        return ws_error_set(err, WS_ERR_USAGE, "option %s: %s", opt, msg);
    }
    return 1;
}

int main(int argc, char **argv)
{
    struct ws_config cfg;
    struct ws_cli cli;
    struct ws_error err = {0};
    struct opts o;
    int action, status = 1, rc;
    struct ws_notify_event ev = {"wal-prune", NULL, 0, 0, 0, 0, 0, NULL};
    double t0 = ws_now_monotonic();

    memset(&o, 0, sizeof(o));
    ws_cli_start("wal-prune");
    ws_config_init(&cfg);
    o.cfg = &cfg;
    if (ws_cli_parse(argc, argv, &cfg, &cli, extra, &o, &action, &err) != 0)
        goto usage;
    if (ws_cli_answer(action, usage)) {
        status = WS_CLI_EXIT_OK;
        goto out;
    }
    if (cli.nargs > 0) {
        ws_error_set(&err, WS_ERR_USAGE, "unexpected argument \"%s\"", cli.args[0]);
        goto usage;
    }
    if ((rc = ws_cli_load_config(&cfg, &cli, &err)) != 0 ||
        (rc = ws_repo_check_user(&cfg, "wal-prune", &err)) != 0) {
        status = ws_cli_finish(rc, &err);
        goto out;
    }
    rc = ws_prune(&cfg, &o.prune, &err);
    status = ws_cli_finish(rc, &err);
    ws_notify_outcome(&cfg, &ev, t0, rc, &err); /* notify_command (ops/notify.h) */
    goto out;
usage:
    ws_cli_usage_error(&err);
    status = WS_CLI_EXIT_USAGE;
out:
    ws_config_free(&cfg);
    return status;
}
