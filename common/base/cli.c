#include "base/cli.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "base/log.h"

static const char *program = "walsafe"; /* ws_cli_start's progname */

void ws_cli_start(const char *progname)
{
    struct rlimit no_core = {0, 0};
    int fd;

    /* Descriptors 0, 1 and 2 are open before anything else is (/dev/null where the caller
     * closed them): otherwise the next file opened would become stdout or stderr, and a log
     * line would be written into it. */
    for (fd = 0; fd <= 2; fd++)
        if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY) < 0)
            break;

    program = progname;
    ws_log_init(progname);
    setrlimit(RLIMIT_CORE, &no_core);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    umask(077);
}

/* "--opt=value" or "--opt value". */
static int opt_value(const char *arg, const char *name, const char *next, const char **value,
                     int *used, struct ws_error *err)
{
    size_t n = strlen(name);
    if (strncmp(arg, name, n) != 0)
        return 0;
    if (arg[n] == '=') {
        *value = arg + n + 1;
        return 1;
    }
    if (arg[n] != '\0')
        return 0;
    if (!next)
        return -ws_error_set(err, WS_ERR_USAGE, "option %s needs a value", name);
    *value = next;
    *used = 1;
    return 1;
}

int ws_cli_parse(int argc, char **argv, struct ws_config *cfg, struct ws_cli *cli,
                 ws_cli_extra_fn extra, void *extra_arg, int *action, struct ws_error *err)
{
    int i;

    memset(cli, 0, sizeof(*cli));
    *action = WS_CLI_RUN;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL, *v = NULL;
        int used = 0, r;

        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (a[0] != '-' || a[1] == '\0')
            break;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            *action = WS_CLI_HELP;
            return 0;
        }
        if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0) {
            *action = WS_CLI_VERSION;
            return 0;
        }
        if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            cli->verbose++;
            continue;
        }
        if ((r = opt_value(a, "--config", next, &v, &used, err)) != 0) {
            if (r < 0)
                return -r;
            cli->config_path = v;
        } else if ((r = opt_value(a, "--repo", next, &v, &used, err)) != 0) {
            if (r < 0 || ws_config_set_cli(cfg, "repo", v, err) != 0)
                return err->code;
        } else if ((r = opt_value(a, "--cluster", next, &v, &used, err)) != 0) {
            if (r < 0 || ws_config_set_cli(cfg, "cluster", v, err) != 0)
                return err->code;
        } else if (extra && (r = extra(extra_arg, a, next, &used, err)) != 0) {
            if (r != 1)
                return r;
        } else {
            return ws_error_set(err, WS_ERR_USAGE, "unknown option \"%s\"", a);
        }
        i += used;
    }
    cli->nargs = argc - i;
    cli->args = argv + i;
    return 0;
}

int ws_cli_load_config(struct ws_config *cfg, const struct ws_cli *cli, struct ws_error *err)
{
    if (cli->verbose)
        ws_log_set_level(cli->verbose > 1 ? WS_LOG_DEBUG : WS_LOG_INFO);
    return ws_config_load(cfg, cli->config_path, err);
}

int ws_cli_parse_more(struct ws_config *cfg, struct ws_cli *cli, ws_cli_extra_fn extra,
                      void *extra_arg, int *action, struct ws_error *err)
{
    struct ws_cli sub;
    int rc;

    if ((rc = ws_cli_parse(cli->nargs, cli->args, cfg, &sub, extra, extra_arg, action, err)) != 0)
        return rc;
    if (sub.config_path)
        cli->config_path = sub.config_path;
    cli->verbose += sub.verbose;
    cli->nargs = sub.nargs;
    cli->args = sub.args;
    return 0;
}

int ws_cli_answer(int action, const char *usage)
{
    if (action == WS_CLI_HELP)
        fputs(usage, stdout);
    else if (action == WS_CLI_VERSION)
        printf("%s (walsafe) %s\n", program, WS_VERSION);
    return action == WS_CLI_HELP || action == WS_CLI_VERSION;
}

void ws_cli_usage_error(const struct ws_error *err)
{
    ws_log_error(err);
    fprintf(stderr, "Try \"%s --help\".\n", program);
}

int ws_cli_finish(int rc, const struct ws_error *err)
{
    if (rc == 0)
        return WS_CLI_EXIT_OK;
    ws_log_error(err);
    return WS_CLI_EXIT_FAILURE;
}
