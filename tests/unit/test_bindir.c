/*
 * Where PostgreSQL's programs are (pg/bindir.h): pg_bindir alone when it is set, else the given
 * directories in order, else the absolute directories of PATH in order; what counts as the
 * program (an executable regular file, through a link too; not a plain file, not a directory);
 * the one wording of each error.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"
#include "pg/bindir.h"
#include "unit.h"

#define PROG "ws-test-prog"

/* "<scratch>/name", made (0700), into out; with an executable PROG when has_prog. */
static void make_dir(char *out, size_t outsz, const char *name, int has_prog)
{
    char p[4096];

    unit_path(out, outsz, "%s", name);
    CHECK(unit_mkdir(out) == 0);
    if (has_prog) {
        snprintf(p, sizeof(p), "%s/%s", out, PROG);
        CHECK(unit_write(p, "#!/bin/sh\n", 10, 0755) == 0);
    }
}

/* ws_pg_bindir_find with PATH set to path (NULL: unset). */
static int find(const char *pg_bindir, const char *const dirs[], const char *path, char *out,
                size_t outsz, struct ws_error *err)
{
    char *old = getenv("PATH") ? strdup(getenv("PATH")) : NULL;
    int rc;

    if (path)
        setenv("PATH", path, 1);
    else
        unsetenv("PATH");
    rc = ws_pg_bindir_find(pg_bindir, dirs, PROG, out, outsz, err);
    if (old)
        setenv("PATH", old, 1);
    free(old);
    return rc;
}

static void test_pg_bindir_only(void)
{
    char a[4096], b[4096], out[4096], want[8300];
    const char *const dirs[] = {b, NULL};
    struct ws_error err = {0};

    make_dir(a, sizeof(a), "only-a", 0);
    make_dir(b, sizeof(b), "only-b", 1);
    CHECK(find(b, NULL, a, out, sizeof(out), &err) == 0 && strcmp(out, b) == 0);
    /* set but without the program: an error, although dirs and PATH hold it */
    CHECK(find(a, dirs, b, out, sizeof(out), &err) == WS_ERR_CONFIG && out[0] == '\0');
    snprintf(want, sizeof(want), "pg_bindir \"%s\" holds no executable \"" PROG "\"", a);
    CHECK(strcmp(err.msg, want) == 0);
    /* "" is unset */
    CHECK(find("", NULL, b, out, sizeof(out), &err) == 0 && strcmp(out, b) == 0);
}

static void test_order(void)
{
    char a[4096], b[4096], c[4096], out[4096], path[16400];
    const char *const dirs[] = {a, b, NULL};
    struct ws_error err = {0};

    make_dir(a, sizeof(a), "order-a", 0);
    make_dir(b, sizeof(b), "order-b", 1);
    make_dir(c, sizeof(c), "oc", 1); /* shorter than b */
    CHECK(find(NULL, dirs, c, out, sizeof(out), &err) == 0 && strcmp(out, b) == 0);
    /* PATH: empty, relative and missing entries skipped, the first that holds it wins */
    snprintf(path, sizeof(path), "::oc:/nonexistent:%s:%s:%s", a, c, b);
    CHECK(find(NULL, NULL, path, out, sizeof(out), &err) == 0 && strcmp(out, c) == 0);
    /* no PATH: /usr/bin:/bin, where a shell is */
    CHECK(ws_pg_bindir_find(NULL, NULL, "sh", out, sizeof(out), &err) == 0);
    unsetenv("PATH");
    CHECK(ws_pg_bindir_find(NULL, NULL, "sh", out, sizeof(out), &err) == 0 &&
          (strcmp(out, "/usr/bin") == 0 || strcmp(out, "/bin") == 0));
    setenv("PATH", "/usr/bin:/bin", 1);
    /* a directory too long for out is passed over */
    CHECK(find(NULL, dirs, c, out, strlen(b), &err) == 0 && strcmp(out, c) == 0);
}

static void test_relative_path_entry(void)
{
    char d[4096], out[4096];
    struct ws_error err = {0};
    int cwd = open(".", O_RDONLY | O_DIRECTORY);

    make_dir(d, sizeof(d), "rel/bin", 1);
    REQUIRE(cwd >= 0);
    unit_path(d, sizeof(d), "rel");
    REQUIRE(chdir(d) == 0);
    CHECK(find(NULL, NULL, "bin", out, sizeof(out), &err) == WS_ERR_CONFIG);
    CHECK(fchdir(cwd) == 0);
    close(cwd);
}

static void test_what_counts(void)
{
    char d[4096], p[4200], t[4200], out[4096];
    struct ws_error err = {0};

    make_dir(d, sizeof(d), "counts", 0);
    snprintf(p, sizeof(p), "%s/%s", d, PROG);
    CHECK(unit_write(p, "x", 1, 0644) == 0); /* not executable (not even for root) */
    CHECK(find(d, NULL, "/nonexistent", out, sizeof(out), &err) == WS_ERR_CONFIG);
    CHECK(ws_pg_bindir_has(d, PROG) == 0);
    unlink(p);
    CHECK(unit_mkdir(p) == 0); /* a directory of that name */
    CHECK(ws_pg_bindir_has(d, PROG) == 0);
    rmdir(p);
    snprintf(t, sizeof(t), "%s/target", d);
    CHECK(unit_write(t, "#!/bin/sh\n", 10, 0755) == 0);
    CHECK(symlink(t, p) == 0); /* a link to an executable: followed, as exec does */
    CHECK(ws_pg_bindir_has(d, PROG) == 1);
    CHECK(find(d, NULL, "/nonexistent", out, sizeof(out), &err) == 0 && strcmp(out, d) == 0);
}

static void test_not_found(void)
{
    char a[4096], b[4096], out[4096] = "x", want[8400];
    const char *const dirs[] = {a, b, NULL};
    struct ws_error err = {0};

    make_dir(a, sizeof(a), "none-a", 0);
    make_dir(b, sizeof(b), "none-b", 0);
    CHECK(find(NULL, dirs, "/nonexistent", out, sizeof(out), &err) == WS_ERR_CONFIG);
    CHECK(out[0] == '\0');
    snprintf(want, sizeof(want),
             "could not find \"" PROG "\" in %s, %s or on PATH; set pg_bindir to the directory "
             "of PostgreSQL's programs",
             a, b);
    CHECK(strcmp(err.msg, want) == 0);
    CHECK(find(NULL, NULL, "", out, sizeof(out), &err) == WS_ERR_CONFIG);
    CHECK(strcmp(err.msg, "could not find \"" PROG "\" on PATH; set pg_bindir to the directory of "
                          "PostgreSQL's programs") == 0);
}

const struct unit_test unit_tests[] = {
    {"pg_bindir_only", test_pg_bindir_only},
    {"order", test_order},
    {"relative_path_entry", test_relative_path_entry},
    {"what_counts", test_what_counts},
    {"not_found", test_not_found},
    {NULL, NULL},
};
