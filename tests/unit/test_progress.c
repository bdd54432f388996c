/*
 * base/progress.h with stderr a file (not a terminal): --progress/--no-progress/neither decide
 * as documented; plain lines, no control characters, at most one per interval but the final one
 * always; the summary line's exact form.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/progress.h"
#include "unit.h"

static char captured[4096];

/* Runs fn with stderr sent to a file; its output into `captured`. */
static void capture(void (*fn)(void))
{
    char path[256];
    int fd, saved;
    ssize_t n;

    snprintf(path, sizeof(path), "%s/stderr.txt", unit_tmpdir());
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    fflush(stderr);
    saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    fn();
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    n = pread(fd, captured, sizeof(captured) - 1, 0);
    captured[n > 0 ? n : 0] = '\0';
    close(fd);
}

static int wanted[3];

static void ask_wanted(void)
{
    wanted[0] = ws_progress_wanted(1);
    wanted[1] = ws_progress_wanted(0);
    wanted[2] = ws_progress_wanted(-1);
}

static void test_wanted(void)
{
    capture(ask_wanted);
    CHECK(wanted[0] == 1);
    CHECK(wanted[1] == 0);
    CHECK(wanted[2] == 0); /* neither option, and stderr is a file */
}

static void plain_lines(void)
{
    struct ws_progress p;

    ws_progress_start(&p);
    ws_progress_update(&p, 1 << 20, 4 << 20, 0); /* within the interval: nothing */
    p.last -= WS_PROGRESS_PLAIN_INTERVAL;        /* as if a second went by */
    ws_progress_update(&p, 2 << 20, 4 << 20, 0);
    ws_progress_update(&p, 3 << 20, 4 << 20, 0); /* within the interval again: nothing */
    ws_progress_update(&p, 4 << 20, 4 << 20, 1); /* the final one, always */
}

static void test_plain_lines(void)
{
    capture(plain_lines);
    CHECK(strncmp(captured, "progress: 2.0 MB / 4.0 MB (50%), ", 33) == 0);
    CHECK(strstr(captured, "\nprogress: 4.0 MB / 4.0 MB (100%), ") != NULL);
    CHECK(strstr(captured, "1.0 MB /") == NULL && strstr(captured, "3.0 MB /") == NULL);
    CHECK(strchr(captured, '\r') == NULL && strchr(captured, '\033') == NULL);
    CHECK(strstr(captured, "ETA") != NULL);                   /* the 50 % line has one */
    CHECK(captured[strlen(captured) - 1] == '\n');            /* whole lines */
    CHECK(strstr(strstr(captured, "(100%)"), "ETA") == NULL); /* the final one has none */
}

static void summaries(void)
{
    ws_progress_summary("backup 20261207T230000Z complete", UINT64_C(1288490189), "read",
                        UINT64_C(356515840), "stored", 1, 14.2);
    ws_progress_summary("restore of backup 20261207T230000Z complete", 3 << 20, "written", 1024,
                        "read from the repository", 0, 2.0);
}

static void test_summary(void)
{
    capture(summaries);
    CHECK(strcmp(captured, "backup 20261207T230000Z complete: 1.2 GB read, 340.0 MB stored (28%), "
                           "14.2 s, 86.5 MB/s\n"
                           "restore of backup 20261207T230000Z complete: 3.0 MB written, 1.0 kB "
                           "read from the repository, 2.0 s, 1.5 MB/s\n") == 0);
    if (strncmp(captured, "backup", 6) != 0 || !strstr(captured, "86.5 MB/s"))
        fprintf(stderr, "    got: %s", captured);
}

const struct unit_test unit_tests[] = {
    {"--progress, --no-progress, neither", test_wanted},
    {"plain lines: throttled, final always, no control characters", test_plain_lines},
    {"summary line", test_summary},
    {NULL, NULL},
};
