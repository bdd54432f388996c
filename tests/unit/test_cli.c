/* ws_cli_start: what every program gets before it opens anything; a subcommand's options
 * merged (ws_cli_parse_more); the exit status of a result (ws_cli_finish). */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/cli.h"
#include "unit.h"

/* Runs in a child with 0, 1 and 2 closed: after ws_cli_start they are open on /dev/null, so a
 * file the program opens later can never become its stderr (a log line would land in it). */
static int child_stdio_closed(void)
{
    struct stat null_st, st;
    int fd;

    if (stat("/dev/null", &null_st) != 0)
        return 10;
    close(0);
    close(1);
    close(2);
    ws_cli_start("test_cli");
    for (fd = 0; fd <= 2; fd++) {
        if (fstat(fd, &st) != 0)
            return 20 + fd;
        if (!S_ISCHR(st.st_mode) || st.st_rdev != null_st.st_rdev)
            return 30 + fd;
    }
    fd = open("/dev/null", O_RDONLY);
    return fd == 3 ? 0 : 40;
}

static void test_stdio_reopened(void)
{
    pid_t pid = fork();
    int status = -1;

    REQUIRE(pid >= 0);
    if (pid == 0)
        _exit(child_stdio_closed());
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* An open stderr stays what it was. */
static int child_stdio_open(void)
{
    struct stat before, after;

    if (fstat(2, &before) != 0)
        return 10;
    ws_cli_start("test_cli");
    if (fstat(2, &after) != 0)
        return 20;
    return before.st_ino == after.st_ino && before.st_dev == after.st_dev ? 0 : 30;
}

static void test_stdio_kept(void)
{
    pid_t pid = fork();
    int status = -1;

    REQUIRE(pid >= 0);
    if (pid == 0)
        _exit(child_stdio_open());
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* "prog -v --config /outer sub -v --config /inner a b": the subcommand's --config wins, -v adds
 * up, the arguments are what follows the subcommand's options; without a --config of its own the
 * outer one stays. */
static void test_parse_more(void)
{
    char *argv[] = {"prog", "-v", "--config", "/outer", "sub", "-v", "--config=/inner", "a", "b"};
    char *plain[] = {"prog", "--config", "/outer", "sub", "a"};
    struct ws_config cfg;
    struct ws_cli cli;
    struct ws_error err = {0};
    int action = -1;

    ws_config_init(&cfg);
    REQUIRE(ws_cli_parse(9, argv, &cfg, &cli, NULL, NULL, &action, &err) == 0);
    REQUIRE(cli.nargs == 5 && strcmp(cli.args[0], "sub") == 0);
    REQUIRE(ws_cli_parse_more(&cfg, &cli, NULL, NULL, &action, &err) == 0);
    CHECK(action == WS_CLI_RUN);
    CHECK(strcmp(cli.config_path, "/inner") == 0);
    CHECK(cli.verbose == 2);
    CHECK(cli.nargs == 2 && cli.args == argv + 7);
    REQUIRE(ws_cli_parse(5, plain, &cfg, &cli, NULL, NULL, &action, &err) == 0);
    REQUIRE(ws_cli_parse_more(&cfg, &cli, NULL, NULL, &action, &err) == 0);
    CHECK(strcmp(cli.config_path, "/outer") == 0 && cli.verbose == 0);
    CHECK(cli.nargs == 1 && strcmp(cli.args[0], "a") == 0);
    /* an unknown option after the subcommand: a usage error */
    plain[4] = "--nope";
    REQUIRE(ws_cli_parse(5, plain, &cfg, &cli, NULL, NULL, &action, &err) == 0);
    CHECK(ws_cli_parse_more(&cfg, &cli, NULL, NULL, &action, &err) == WS_ERR_USAGE);
    CHECK(strcmp(err.msg, "unknown option \"--nope\"") == 0);
    ws_config_free(&cfg);
}

static void test_finish(void)
{
    struct ws_error err = {0};

    CHECK(ws_cli_answer(WS_CLI_RUN, "usage") == 0); /* prints nothing */
    CHECK(ws_cli_finish(0, &err) == WS_CLI_EXIT_OK);
    ws_error_set(&err, WS_ERR_STORAGE, "could not reach the repository (a test)");
    CHECK(ws_cli_finish(WS_ERR_STORAGE, &err) == WS_CLI_EXIT_FAILURE);
}

const struct unit_test unit_tests[] = {
    {"a subcommand's options merged", test_parse_more},
    {"the exit status of a result", test_finish},
    {"closed stdin, stdout and stderr are reopened on /dev/null", test_stdio_reopened},
    {"an open stderr is kept", test_stdio_kept},
    {NULL, NULL},
};
