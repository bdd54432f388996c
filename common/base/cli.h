/*
 * cli.h - the command-line conventions every walsafe program shares.
 *
 * Options (any order, before the positional arguments; "--" ends them): --config FILE,
 * --repo URL, --cluster NAME, -v (repeat for more detail), --help, --version. Program-specific
 * options are handed to `extra` (may be NULL), which returns 1 if it consumed the option (and
 * *used_arg if it also took the next argument), 0 if unknown, or an error code.
 *
 * ws_cli_start() comes first in every main(): descriptors 0, 1 and 2 open (on /dev/null where
 * they were closed), and the process safe for secrets: no core dumps, not dumpable, umask 077.
 * Its progname is the <program> of the messages below.
 *
 * The end of main() is the same in every program: ws_cli_answer() for --help and --version,
 * ws_cli_usage_error() for a bad command line (exit status WS_CLI_EXIT_USAGE), ws_cli_finish()
 * for the command's result (its error logged, WS_CLI_EXIT_OK or WS_CLI_EXIT_FAILURE).
 */
#ifndef WS_CLI_H
#define WS_CLI_H

#include "base/config.h"
#include "base/error.h"

#define WS_VERSION "0.1.0"

enum { WS_CLI_RUN = 0, WS_CLI_HELP, WS_CLI_VERSION };
enum { WS_CLI_EXIT_OK = 0, WS_CLI_EXIT_FAILURE = 1, WS_CLI_EXIT_USAGE = 2 };

typedef int (*ws_cli_extra_fn)(void *arg, const char *opt, const char *next, int *used_arg,
                               struct ws_error *err);

struct ws_cli {
    const char *config_path;
    int verbose;
    int nargs;
    char **args;
};

void ws_cli_start(const char *progname);
/* Returns WS_CLI_RUN/HELP/VERSION in *action; WS_ERR_USAGE on a bad option. */
int ws_cli_parse(int argc, char **argv, struct ws_config *cfg, struct ws_cli *cli,
                 ws_cli_extra_fn extra, void *extra_arg, int *action, struct ws_error *err);
/* A subcommand's options: parses cli->args as ws_cli_parse parses argv (cli->args[0], the
 * subcommand or the argument after which options may follow, skipped as argv[0] is) and merges
 * the result into *cli: a --config given there wins, -v counts add up, cli->args and cli->nargs
 * become the arguments left. Errors as ws_cli_parse. */
int ws_cli_parse_more(struct ws_config *cfg, struct ws_cli *cli, ws_cli_extra_fn extra,
                      void *extra_arg, int *action, struct ws_error *err);
/* Loads the configuration after parsing and applies -v. */
int ws_cli_load_config(struct ws_config *cfg, const struct ws_cli *cli, struct ws_error *err);

/* WS_CLI_HELP: usage on stdout; WS_CLI_VERSION: "<program> (walsafe) <version>" on stdout; both
 * return 1 (the program exits with its success status). WS_CLI_RUN: nothing printed, 0. */
int ws_cli_answer(int action, const char *usage);
/* A bad command line: err logged (ws_log_error), then "Try "<program> --help"." on stderr. */
void ws_cli_usage_error(const struct ws_error *err);
/* The command returned rc: WS_CLI_EXIT_OK for 0, else err logged and WS_CLI_EXIT_FAILURE. */
int ws_cli_finish(int rc, const struct ws_error *err);

#endif
