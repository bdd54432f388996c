/*
 * wal-receive - streams WAL from the server of pg_conninfo into the repository, in the
 * foreground, until SIGTERM or SIGINT (then it flushes what it received and exits 0).
 *
 * Exit status: 0 stopped by a signal, or the slot or status command done; 1 a failure (the
 * spool, the keys, a server of another system than the repository cluster); 2 a usage error.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "archive/receive.h"
#include "base/cli.h"
#include "base/log.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };
enum { RUN, CREATE_SLOT, DROP_SLOT, STATUS };

static const char usage[] =
    "wal-receive streams WAL from PostgreSQL into the walsafe repository.\n"
    "\n"
    "Usage: wal-receive [--config FILE] [--repo URL] [--cluster NAME] [-v]\n"
    "                   [--create-slot | --drop-slot | --status]\n"
    "       wal-receive --help | --version\n"
    "\n"
    "Without an option it runs in the foreground until SIGTERM or SIGINT: a replication\n"
    "connection from pg_conninfo (application_name: the cluster name), the physical slot\n"
    "slot_name (create it first with --create-slot), segments stored as wal-push stores\n"
    "them and the segment in progress stored every receive_flush_interval.\n"
    "  --create-slot  create the replication slot slot_name, then exit\n"
    "  --drop-slot    drop it, then exit\n"
    "  --status       print the slot, positions, lag and last error, then exit\n"
    "\n"
    "Exit status: 0 stopped by a signal (after a flush) or done; 1 failure; 2 usage error.\n";

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static int extra(void *arg, const char *opt, const char *next, int *used_arg, struct ws_error *err)
{
    static const char *const names[] = {NULL, "--create-slot", "--drop-slot", "--status"};
    int *mode = arg;

    (void)next;
    *used_arg = 0;
    for (int i = CREATE_SLOT; i <= STATUS; i++)
        if (strcmp(opt, names[i]) == 0) {
            if (*mode != RUN)
                return ws_error_set(err, WS_ERR_USAGE,
                                    "--create-slot, --drop-slot and --status exclude each other");
            *mode = i;
            return 1;
        }
    return 0;
}

/* SIGTERM and SIGINT set stop and interrupt the wait for the server (no SA_RESTART). */
static void install_handlers(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int main(int argc, char **argv)
{
    struct ws_config cfg;
    struct ws_cli cli;
    struct ws_error err = {0};
    int action, mode = RUN, status = EXIT_FAIL, rc;

    ws_cli_start("wal-receive");
    install_handlers();
    ws_config_init(&cfg);
    if (ws_cli_parse(argc, argv, &cfg, &cli, extra, &mode, &action, &err) != 0) {
        ws_cli_usage_error(&err);
        status = EXIT_USAGE;
        goto out;
    }
    if (ws_cli_answer(action, usage)) {
        status = EXIT_OK;
        goto out;
    }
    if (cli.nargs != 0) {
        ws_error_set(&err, WS_ERR_USAGE, "unexpected argument \"%s\"", cli.args[0]);
        ws_log_error(&err);
        status = EXIT_USAGE;
        goto out;
    }
    if ((rc = ws_cli_load_config(&cfg, &cli, &err)) == 0) {
        if (mode == CREATE_SLOT || mode == DROP_SLOT)
            rc = ws_receive_slot(&cfg, &ws_repl_libpq, mode == CREATE_SLOT, &err);
        else if (mode == STATUS)
            ws_receive_status(&cfg, &ws_repl_libpq, stdout);
        else
            rc = ws_receive_run(&cfg, &ws_repl_libpq, &stop, &err);
    }
    if (rc != 0) {
        ws_log_error(&err);
        goto out;
    }
    status = EXIT_OK;
out:
    ws_config_free(&cfg);
    return status;
}
