#include "unit.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int unit_failures;
static int cur_failed;
static char tmpdir[256];

void unit_fail(const char *file, int line, const char *expr)
{
    fprintf(stderr, "    %s:%d: check failed: %s\n", file, line, expr);
    unit_failures++;
    cur_failed = 1;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void cleanup(void)
{
    if (tmpdir[0])
        nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *unit_tmpdir(void)
{
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/walsafe-unit.XXXXXX");
        if (!mkdtemp(tmpdir)) {
            perror("mkdtemp");
            exit(2);
        }
        atexit(cleanup);
    }
    return tmpdir;
}

void unit_random(uint8_t *buf, size_t len, uint32_t seed)
{
    uint64_t x = 0x9E3779B97F4A7C15ull ^ seed;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (uint8_t)(x >> 24);
    }
}

int main(int argc, char **argv)
{
    int passed = 0, failed = 0;
    (void)argc;
    for (const struct unit_test *t = unit_tests; t->name; t++) {
        cur_failed = 0;
        t->fn();
        printf("%s %s: %s\n", cur_failed ? "FAIL" : "ok  ", argv[0], t->name);
        if (cur_failed)
            failed++;
        else
            passed++;
    }
    printf("%s: %d passed, %d failed\n", argv[0], passed, failed);
    return failed ? 1 : 0;
}
