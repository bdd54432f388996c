/*
 * wal-fetch - PostgreSQL's restore_command: restore_command = 'wal-fetch %f %p'
 *
 * Exit status is safety-critical (README.md, "Exit status"): 0 = DEST_PATH holds the verified
 * file; 1 = the repository was reached and does not hold it (PostgreSQL then ends recovery or
 * waits); 255 = anything else, which makes PostgreSQL stop instead of promoting at the wrong
 * point. fetch_error = auto turns "storage unreachable" into 1 on a standby (standby.signal in the
 * working directory, which PostgreSQL sets to the data directory), because a standby retries.
 * With parallel > 1 a request for a segment also keeps the following ones coming in the
 * background (prefetch.h).
 */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "archive/archive.h"
#include "archive/prefetch.h"
#include "base/cli.h"
#include "base/log.h"

enum { EXIT_FETCHED = 0, EXIT_MISSING = 1, EXIT_ABORT = 255 };

static const char usage[] =
    "wal-fetch restores one WAL file from the walsafe repository (PostgreSQL's "
    "restore_command).\n"
    "\n"
    "Usage: wal-fetch [--config FILE] [--repo URL] [--cluster NAME] [-v] WAL_NAME DEST_PATH\n"
    "       wal-fetch --help | --version\n"
    "  restore_command = 'wal-fetch %f %p'\n"
    "\n"
    "Exit status: 0 restored and verified; 1 not in the archive; 255 any other failure\n"
    "(see fetch_error).\n"
    "\n"
    "With parallel > 1, a request for a segment also prefetches the following segments of its\n"
    "timeline in the background into spool_dir, verified before they are served.\n";

static int failure_status(const struct ws_config *cfg, int code)
{
    if (code == WS_ERR_NOT_FOUND)
        return EXIT_MISSING;
    switch (cfg->fetch_error) {
    case WS_FETCH_ERROR_MISSING:
        return EXIT_MISSING;
    case WS_FETCH_ERROR_ABORT:
        return EXIT_ABORT;
    default:
        if (code == WS_ERR_STORAGE && access("standby.signal", F_OK) == 0)
            return EXIT_MISSING;
        return EXIT_ABORT;
    }
}

int main(int argc, char **argv)
{
    struct ws_config cfg;
    struct ws_cli cli;
    struct ws_error err = {0};
    int action, status = EXIT_ABORT;

    ws_cli_start("wal-fetch");
    /* A closed stderr (PostgreSQL's logging collector gone) makes writes fail with EPIPE instead
     * of killing us with SIGPIPE: status 141 means nothing to PostgreSQL's archiver or
     * recovery. Inherited by the push-ahead and prefetch processes we start. */
    signal(SIGPIPE, SIG_IGN);
    ws_config_init(&cfg);
    if (ws_cli_parse(argc, argv, &cfg, &cli, NULL, NULL, &action, &err) != 0) {
        ws_cli_usage_error(&err);
        goto out;
    }
    if (ws_cli_answer(action, usage)) {
        status = EXIT_FETCHED;
        goto out;
    }
    if (cli.nargs != 2) {
        ws_error_set(&err, WS_ERR_USAGE,
                     "expected exactly two arguments, WAL_NAME and DEST_PATH (got %d)", cli.nargs);
        ws_log_error(&err);
        goto out;
    }
    /* A bad configuration always stops recovery, whatever fetch_error says. */
    if (ws_cli_load_config(&cfg, &cli, &err) != 0) {
        ws_log_error(&err);
        goto out;
    }
    /* parallel > 1: a verified copy from the prefetch spool, and the next segments on their way
     * (prefetch.h); anything else about the spool means "fetch as without it". */
    if (ws_prefetch_serve(&cfg, cli.args[0], cli.args[1])) {
        status = EXIT_FETCHED;
        goto out;
    }
    if (ws_archive_fetch(&cfg, cli.args[0], cli.args[1], &err) != 0) {
        status = failure_status(&cfg, err.code);
        if (err.code == WS_ERR_NOT_FOUND)
            ws_log_info("%s", err.msg); /* routine: PostgreSQL probes for files that don't exist */
        else
            ws_log_error(&err);
        goto out;
    }
    status = EXIT_FETCHED;
out:
    ws_config_free(&cfg);
    return status;
}
