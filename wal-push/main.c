/*
 * wal-push - PostgreSQL's archive_command: archive_command = 'wal-push %p'
 *
 * Exit 0 only when the WAL file is durably in the repository (or an identical copy already
 * was); 1 for every failure, so PostgreSQL keeps the file and retries. Never above 125.
 * With parallel > 1 the call also archives other ready files ahead (pushahead.h).
 */
#include <signal.h>
#include <stdio.h>

#include "archive/archive.h"
#include "archive/pushahead.h"
#include "base/cli.h"
#include "base/log.h"

static const char usage[] =
    "wal-push stores one WAL file in the walsafe repository (PostgreSQL's archive_command).\n"
    "\n"
    "Usage: wal-push [--config FILE] [--repo URL] [--cluster NAME] [-v] WAL_PATH\n"
    "       wal-push --help | --version\n"
    "  archive_command = 'wal-push %p'\n"
    "\n"
    "With parallel > 1, other ready files in pg_wal/archive_status are archived ahead, and\n"
    "their records in spool_dir let PostgreSQL's later calls return after a content check.\n"
    "\n"
    "Exit status: 0 archived durably (or an identical copy already was); 1 not archived.\n";

int main(int argc, char **argv)
{
    struct ws_config cfg;
    struct ws_cli cli;
    struct ws_error err = {0};
    struct ws_pushahead_result res;
    int action, status = 1;

    ws_cli_start("wal-push");
    /* A closed stderr (PostgreSQL's logging collector gone) makes writes fail with EPIPE instead
     * of killing us with SIGPIPE: status 141 means nothing to PostgreSQL's archiver or
     * recovery. Inherited by the push-ahead and prefetch processes we start. */
    signal(SIGPIPE, SIG_IGN);
    ws_config_init(&cfg);
    if (ws_cli_parse(argc, argv, &cfg, &cli, NULL, NULL, &action, &err) != 0) {
        ws_cli_usage_error(&err); /* status 1, as for every failure */
        goto out;
    }
    if (ws_cli_answer(action, usage)) {
        status = 0;
        goto out;
    }
    if (cli.nargs != 1) {
        ws_error_set(&err, WS_ERR_USAGE, "expected exactly one argument, WAL_PATH (got %d)",
                     cli.nargs);
        ws_log_error(&err);
        goto out;
    }
    if (ws_cli_load_config(&cfg, &cli, &err) != 0 ||
        ws_pushahead_push(&cfg, cli.args[0], &res, &err) != 0) {
        ws_log_error(&err);
        goto out;
    }
    status = 0;
out:
    ws_config_free(&cfg);
    return status;
}
