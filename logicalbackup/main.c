/*
 * logicalbackup - logical backups (pg_dump) in the walsafe repository:
 *   logicalbackup create | list | restore | verify | keep | link | decode   (a command is required)
 *
 * Exit status: 0 success, 1 failure, 2 usage error.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/cli.h"
#include "base/log.h"
#include "base/util.h"
#include "logical/logical.h"
#include "ops/notify.h"
#include "repo/manifest.h"

static const char usage[] =
    "logicalbackup takes, lists, restores and verifies logical backups (pg_dump) in the walsafe\n"
    "repository.\n"
    "\n"
    "Usage:\n"
    "  logicalbackup [OPTIONS] create [--db NAME]... [--all] [--label TEXT] [--jobs N]\n"
    "                 --all: every database and the globals (roles, tablespaces);\n"
    "                 --jobs N > 1: directory format dumped with N jobs\n"
    "  logicalbackup [OPTIONS] list [--json]\n"
    "  logicalbackup [OPTIONS] restore ID --db NAME [--to-db TARGET | --to-file PATH]\n"
    "                 [--create] [--clean] [--jobs N] [--globals]\n"
    "  logicalbackup [OPTIONS] verify [ID | --all]\n"
    "  logicalbackup [OPTIONS] keep ID [--unset]\n"
    "  logicalbackup [OPTIONS] link ID --db NAME|--globals --valid-for DURATION\n"
    "                 download links (S3 presigned URLs, at most 7d) for that dump's objects\n"
    "  logicalbackup decode --key-file FILE < OBJECT > DUMP\n"
    "\n"
    "OPTIONS: --config FILE, --repo URL, --cluster NAME, -v, --help, --version\n"
    "\n"
    "Exit status: 0 success; 1 failure; 2 usage error.\n";

/* The options a subcommand may take (bits). */
enum {
    O_DB = 1 << 0,
    O_ALL = 1 << 1,
    O_LABEL = 1 << 2,
    O_JOBS = 1 << 3,
    O_JSON = 1 << 4,
    O_TO_DB = 1 << 5,
    O_TO_FILE = 1 << 6,
    O_CREATE = 1 << 7,
    O_CLEAN = 1 << 8,
    O_GLOBALS = 1 << 9,
    O_UNSET = 1 << 10,
    O_KEY_FILE = 1 << 11,
    O_VALID_FOR = 1 << 12,
};

#define MAX_DBS 256

struct opts {
    struct ws_logical_opts l;
    const char *dbs[MAX_DBS];
    unsigned int given; /* O_* bits of the options seen */
};

typedef int (*run_fn)(const struct ws_config *cfg, const struct ws_logical_opts *o,
                      struct ws_error *err);

static int run_decode(const struct ws_config *cfg, const struct ws_logical_opts *o,
                      struct ws_error *err)
{
    (void)cfg;
    return ws_logical_decode(o->key_file, 0, 1, err);
}

/* The subcommands: name, function, options taken, positional id (0 none, 1 optional,
 * 2 required), whether it reads the configuration. A new subcommand is one row. */
static const struct command {
    const char *name;
    run_fn run;
    unsigned int takes;
    int id;
    int config;
} commands[] = {
    {"create", ws_logical_create, O_DB | O_ALL | O_LABEL | O_JOBS, 0, 1},
    {"list", ws_logical_list, O_JSON, 0, 1},
    {"restore", ws_logical_restore,
     O_DB | O_TO_DB | O_TO_FILE | O_CREATE | O_CLEAN | O_JOBS | O_GLOBALS, 2, 1},
    {"verify", ws_logical_verify, O_ALL, 1, 1},
    {"keep", ws_logical_keep, O_UNSET, 2, 1},
    {"link", ws_logical_link, O_DB | O_GLOBALS | O_VALID_FOR, 2, 1},
    {"decode", run_decode, O_KEY_FILE, 0, 0},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static int parse_jobs(const char *v, int *out, struct ws_error *err)
{
    char *end;
    long n = strtol(v, &end, 10);

    if (!*v || *end || n < 1 || n > 64)
        return ws_error_set(err, WS_ERR_USAGE,
                            "option --jobs needs a number from 1 to 64 (got "
                            "\"%s\")",
                            v);
    *out = (int)n;
    return 0;
}

static const struct {
    const char *name;
    unsigned int bit;
    int has_value;
} options[] = {
    {"--db", O_DB, 1},
    {"--all", O_ALL, 0},
    {"--label", O_LABEL, 1},
    {"--jobs", O_JOBS, 1},
    {"--json", O_JSON, 0},
    {"--to-db", O_TO_DB, 1},
    {"--to-file", O_TO_FILE, 1},
    {"--create", O_CREATE, 0},
    {"--clean", O_CLEAN, 0},
    {"--globals", O_GLOBALS, 0},
    {"--unset", O_UNSET, 0},
    {"--key-file", O_KEY_FILE, 1},
    {"--valid-for", O_VALID_FOR, 1},
};

static int extra(void *arg, const char *opt, const char *next, int *used, struct ws_error *err)
{
    struct opts *o = arg;
    size_t i;

    *used = 0;
    for (i = 0; i < sizeof(options) / sizeof(options[0]); i++)
        if (strcmp(opt, options[i].name) == 0)
            break;
    if (i == sizeof(options) / sizeof(options[0]))
        return 0;
    if (options[i].has_value && !next)
        return ws_error_set(err, WS_ERR_USAGE, "option %s needs a value", opt);
    *used = options[i].has_value;
    o->given |= options[i].bit;
    switch (options[i].bit) {
    case O_DB:
        if (!*next)
            return ws_error_set(err, WS_ERR_USAGE, "--db needs a database name");
        if (o->l.ndbs == MAX_DBS)
            return ws_error_set(err, WS_ERR_USAGE, "too many --db options (at most %d)", MAX_DBS);
        o->dbs[o->l.ndbs++] = next;
        break;
    case O_ALL:
        o->l.all = 1;
        break;
    case O_LABEL:
        if (strlen(next) > 255)
            return ws_error_set(err, WS_ERR_USAGE, "--label is longer than 255 bytes");
        o->l.label = next;
        break;
    case O_JOBS:
        return parse_jobs(next, &o->l.jobs, err) ? err->code : 1;
    case O_JSON:
        o->l.json = 1;
        break;
    case O_TO_DB:
        if (!*next)
            return ws_error_set(err, WS_ERR_USAGE, "--to-db needs a database name");
        o->l.to_db = next;
        break;
    case O_TO_FILE:
        if (!*next)
            return ws_error_set(err, WS_ERR_USAGE, "--to-file needs a path");
        o->l.to_file = next;
        break;
    case O_CREATE:
        o->l.create_db = 1;
        break;
    case O_CLEAN:
        o->l.clean = 1;
        break;
    case O_GLOBALS:
        o->l.globals = 1;
        break;
    case O_UNSET:
        o->l.unset = 1;
        break;
    case O_VALID_FOR:
        if (ws_parse_duration(next, &o->l.valid_for) != 0 || o->l.valid_for < 1 ||
            o->l.valid_for > 7 * 86400)
            return ws_error_set(err, WS_ERR_USAGE,
                                "--valid-for needs a duration from 1s to 7d, the most S3 allows "
                                "for a presigned URL (got \"%s\")",
                                next);
        break;
    default:
        o->l.key_file = next;
        break;
    }
    return 1;
}

/* The options of o against what c takes, and what each combination needs. */
static int check_options(struct opts *o, const struct command *c, const struct ws_cli *cli,
                         struct ws_error *err)
{
    unsigned int extra_bits = o->given & ~c->takes;
    size_t i;

    for (i = 0; extra_bits && i < sizeof(options) / sizeof(options[0]); i++)
        if (extra_bits & options[i].bit)
            return ws_error_set(err, WS_ERR_USAGE, "option %s does not apply to %s",
                                options[i].name, c->name);
    if (cli->nargs > (c->id ? 1 : 0))
        return ws_error_set(err, WS_ERR_USAGE, "unexpected argument \"%s\"",
                            cli->args[c->id ? 1 : 0]);
    if (c->id == 2 && cli->nargs == 0)
        return ws_error_set(err, WS_ERR_USAGE, "%s needs a backup id", c->name);
    if (cli->nargs == 1) {
        if (!ws_backup_id_valid(cli->args[0]))
            return ws_error_set(err, WS_ERR_USAGE, "\"%s\" is not a backup id (YYYYMMDDTHHMMSSZ)",
                                cli->args[0]);
        o->l.id = cli->args[0];
    }
    if (strcmp(c->name, "create") == 0 && o->l.ndbs == 0 && !o->l.all)
        return ws_error_set(err, WS_ERR_USAGE, "create needs --db NAME or --all");
    if (strcmp(c->name, "verify") == 0 && o->l.id && o->l.all)
        return ws_error_set(err, WS_ERR_USAGE, "verify takes one backup id or --all");
    if (strcmp(c->name, "restore") == 0) {
        if (o->l.ndbs > 1)
            return ws_error_set(err, WS_ERR_USAGE, "restore takes one --db");
        if (o->l.ndbs == 0 && !o->l.globals)
            return ws_error_set(err, WS_ERR_USAGE, "restore needs --db NAME (or --globals)");
        if (o->l.to_db && o->l.to_file)
            return ws_error_set(err, WS_ERR_USAGE, "--to-db and --to-file exclude each other");
        if (o->l.to_file && o->l.ndbs && o->l.globals)
            return ws_error_set(err, WS_ERR_USAGE,
                                "--to-file writes one dump: give --db NAME or --globals");
        if (o->l.to_file && (o->l.create_db || o->l.clean || o->l.jobs))
            return ws_error_set(err, WS_ERR_USAGE,
                                "--create, --clean and --jobs do not apply to --to-file");
        if (o->l.to_db && !o->l.ndbs)
            return ws_error_set(err, WS_ERR_USAGE, "--to-db needs --db NAME");
    }
    if (strcmp(c->name, "link") == 0 &&
        ((o->l.ndbs != 1) == !o->l.globals || !(o->given & O_VALID_FOR)))
        return ws_error_set(err, WS_ERR_USAGE,
                            "link needs one --db NAME (or --globals) and --valid-for DURATION");
    if (strcmp(c->name, "decode") == 0 && !o->l.key_file)
        return ws_error_set(err, WS_ERR_USAGE, "decode needs --key-file FILE");
    return 0;
}

static void on_signal(int sig)
{
    (void)sig;
    ws_logical_stop = 1;
}

/* Stop signals end the run through the commands' own cleanup (temporary files, children). */
static void install_handlers(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal; /* no SA_RESTART: a blocked poll or read returns EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN); /* a child that exits early: write fails with EPIPE instead */
}

int main(int argc, char **argv)
{
    const struct command *c = NULL;
    struct ws_config cfg;
    struct ws_cli cli;
    struct ws_error err = {0};
    struct opts o;
    int action, status = 1, rc;
    double t0;
    size_t i;

    memset(&o, 0, sizeof(o));
    o.l.dbs = o.dbs;
    o.l.pg = &ws_pg_libpq; /* the one reference to libpq */
    ws_cli_start("logicalbackup");
    ws_config_init(&cfg);
    if (ws_cli_parse(argc, argv, &cfg, &cli, extra, &o, &action, &err) != 0)
        goto usage;
    if (action == WS_CLI_RUN && cli.nargs == 0) {
        ws_error_set(&err, WS_ERR_USAGE,
                     "a command is required (create, list, restore, verify, keep, link or decode)");
        goto usage;
    }
    if (action == WS_CLI_RUN) {
        for (i = 0; i < NCOMMANDS && !c; i++)
            if (strcmp(cli.args[0], commands[i].name) == 0)
                c = &commands[i];
        if (!c) {
            ws_error_set(
                &err, WS_ERR_USAGE,
                "unknown command \"%s\" (create, list, restore, verify, keep, link or decode)",
                cli.args[0]);
            goto usage;
        }
        if (ws_cli_parse_more(&cfg, &cli, extra, &o, &action, &err) != 0)
            goto usage;
        /* "restore ID --db NAME": options after the id too */
        if (c->id && cli.nargs > 1 && action == WS_CLI_RUN) {
            char **id = cli.args;
            if (ws_cli_parse_more(&cfg, &cli, extra, &o, &action, &err) != 0)
                goto usage;
            if (cli.nargs > 0) {
                ws_error_set(&err, WS_ERR_USAGE, "unexpected argument \"%s\"", cli.args[0]);
                goto usage;
            }
            cli.args = id;
            cli.nargs = 1;
        }
    }
    if (ws_cli_answer(action, usage)) {
        status = WS_CLI_EXIT_OK;
        goto out;
    }
    if (check_options(&o, c, &cli, &err) != 0)
        goto usage;
    if (c->config && (rc = ws_cli_load_config(&cfg, &cli, &err)) != 0) {
        status = ws_cli_finish(rc, &err);
        goto out;
    }
    install_handlers();
    t0 = ws_now_monotonic();
    rc = c->run(&cfg, &o.l, &err);
    status = ws_cli_finish(rc, &err);
    if (strcmp(c->name, "create") == 0 || strcmp(c->name, "verify") == 0) {
        char event[32];
        struct ws_notify_event ev = {event, NULL, 0, 0, 0, 0, 0, NULL};

        snprintf(event, sizeof(event), "logicalbackup %s", c->name);
        ws_notify_outcome(&cfg, &ev, t0, rc, &err); /* never changes the status */
    }
    goto out;
usage:
    ws_cli_usage_error(&err);
    status = WS_CLI_EXIT_USAGE;
out:
    ws_config_free(&cfg);
    return status;
}
