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
 */
#ifndef WS_CLI_H
#define WS_CLI_H

#include "base/config.h"
#include "base/error.h"

#define WS_VERSION "0.1.0"

enum { WS_CLI_RUN = 0, WS_CLI_HELP, WS_CLI_VERSION };

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
/* Loads the configuration after parsing and applies -v. */
int ws_cli_load_config(struct ws_config *cfg, const struct ws_cli *cli, struct ws_error *err);

#endif
