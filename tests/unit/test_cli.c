/* ws_cli_start: what every program gets before it opens anything. */
#include <fcntl.h>
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

const struct unit_test unit_tests[] = {
    {"closed stdin, stdout and stderr are reopened on /dev/null", test_stdio_reopened},
    {"an open stderr is kept", test_stdio_kept},
    {NULL, NULL},
};
