/*
 * The bundle splitter (bundle.h) in verify mode (root NULL) and restore mode (a fresh directory):
 * files of awkward sizes back to back, fed in slices from 1 byte to all at once; damaged,
 * short and long content; empty files at both ends; offsets that do not follow; a restore
 * onto a file that already exists; modes masked to 0600 / 0640 (setuid, sticky and world bits
 * never restored); a link planted at a directory or a file of the tree never followed. Files in
 * pieces (extents): a file in three bundles restored by three splitters in any order into the file
 * the caller created, verify with one running SHA-256 across the bundles (a flipped byte named when
 * the last piece ends), and ws_bundle_extents.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "repo/bundle.h"
#include "fixture.h"
#include "unit.h"

#define MAXF 16

struct fixture {
    struct ws_bfile f[MAXF];
    const struct ws_bfile *fp[MAXF];
    char paths[MAXF][64];
    size_t n;
    uint8_t *content;
    size_t len;
};

static const uint32_t modes[] = {0600, 0640, 0400, 0755, 0644, 0700, 0604};

/* Files of the given sizes back to back, named base/1/f<i>, with distinct modes and mtimes. */
static void fixture_init(struct fixture *fx, const size_t *sizes, size_t n, uint32_t seed)
{
    size_t i, off = 0;

    memset(fx, 0, sizeof(*fx));
    fx->n = n;
    for (i = 0; i < n; i++)
        fx->len += sizes[i];
    fx->content = malloc(fx->len ? fx->len : 1);
    if (!fx->content)
        abort();
    unit_random(fx->content, fx->len, seed);
    for (i = 0; i < n; i++) {
        struct ws_bfile *f = &fx->f[i];
        snprintf(fx->paths[i], sizeof(fx->paths[i]), "base/1/f%zu", i);
        f->path = fx->paths[i];
        f->mode = modes[i % (sizeof(modes) / sizeof(modes[0]))];
        f->mtime = 1600000000 + 86400 * (int64_t)i + 7;
        f->size = sizes[i];
        f->bundle = 3;
        f->offset = off;
        EVP_Digest(fx->content + off, sizes[i], f->sha256, NULL, EVP_sha256(), NULL);
        off += sizes[i];
        fx->fp[i] = f;
    }
}

static void fixture_free(struct fixture *fx)
{
    free(fx->content);
    fx->content = NULL;
}

/* ---- problem reports ---- */

struct report {
    int calls;
    char paths[MAXF][64];
    char msg[256];
};

static void on_problem(void *arg, const struct ws_bfile *f, const char *msg)
{
    struct report *r = arg;
    if (r->calls < MAXF)
        snprintf(r->paths[r->calls], sizeof(r->paths[0]), "%s", f->path);
    snprintf(r->msg, sizeof(r->msg), "%s", msg);
    r->calls++;
}

/* ---- running the splitter ---- */

struct result {
    int rc;
    size_t good, bad;
    struct report rep;
    struct ws_error err;
};

/* The tree of directory root (NULL: none, verify mode); close_tree() after the run. */
static const struct ws_tree *open_tree(const char *root, struct ws_tree *t)
{
    if (!root)
        return NULL;
    memset(t, 0, sizeof(*t));
    t->name = root;
    t->fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (t->fd < 0)
        unit_fail(__FILE__, __LINE__, "open root");
    return t;
}

static void close_tree(const struct ws_tree *t)
{
    if (t && t->fd >= 0)
        close(t->fd);
}

/* Feeds content[0..len) in slices of `slice` bytes (0: all at once), then finishes. */
static void run(const struct fixture *fx, const uint8_t *content, size_t len, const char *root,
                size_t slice, struct result *res)
{
    struct ws_bundle_opts o = {0};
    struct ws_tree tree;
    struct ws_sink *s = NULL;
    size_t done = 0;

    memset(res, 0, sizeof(*res));
    o.tree = open_tree(root, &tree);
    o.problem = on_problem;
    o.arg = &res->rep;
    if ((res->rc = ws_bundle_splitter_new(fx->fp, fx->n, &o, &s, &res->err)) != 0) {
        close_tree(o.tree);
        return;
    }
    while (done < len) {
        size_t n = slice == 0 || len - done < slice ? len - done : slice;
        if ((res->rc = ws_sink_write(s, content + done, n, &res->err)) != 0)
            break;
        done += n;
    }
    if (res->rc == 0)
        res->rc = ws_sink_finish(s, &res->err);
    res->good = ws_bundle_splitter_good(s);
    res->bad = ws_bundle_splitter_bad(s);
    ws_sink_free(s);
    close_tree(o.tree);
}

/* A fresh empty directory with base/1 in it. */
static const char *fresh_root(void)
{
    static char bufs[8][512];
    static int next;
    char *p = bufs[next++ % 8], sub[600];

    if (unit_path(p, 512, "root.XXXXXX") != 0 || !mkdtemp(p)) {
        unit_fail(__FILE__, __LINE__, "mkdtemp");
        return p;
    }
    snprintf(sub, sizeof(sub), "%s/base/1", p);
    unit_mkdir(sub);
    return p;
}

/* 1 when root/path holds exactly want[0..size). */
static int content_ok(const char *root, const struct ws_bfile *f, const uint8_t *want)
{
    char path[700];
    uint8_t *got;
    size_t len;
    int ok;

    snprintf(path, sizeof(path), "%s/%s", root, f->path);
    if (unit_read(path, &got, &len) != 0)
        return 0;
    ok = len == f->size && (len == 0 || memcmp(got, want, len) == 0);
    free(got);
    return ok;
}

/* 1 when root/path exists with exactly these bytes, the mode restore gives it, and mtime. */
static int restored_ok(const char *root, const struct ws_bfile *f, const uint8_t *want)
{
    char path[700];
    struct stat st;

    snprintf(path, sizeof(path), "%s/%s", root, f->path);
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return 0;
    if ((unsigned)(st.st_mode & 07777) != ws_bundle_file_mode(f->mode, 0) ||
        st.st_mtim.tv_sec != f->mtime || st.st_mtim.tv_nsec != 0 || (uint64_t)st.st_size != f->size)
        return 0;
    return content_ok(root, f, want);
}

static int exists(const char *root, const char *rel)
{
    char path[700];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    return lstat(path, &st) == 0;
}

/* Regular files under root/base/1 (the splitter must create nothing else). */
static int count_files(const char *root)
{
    int n = 0;
    for (int i = 0; i < MAXF; i++) {
        char rel[32];
        snprintf(rel, sizeof(rel), "base/1/f%d", i);
        n += exists(root, rel);
    }
    return n;
}

/* ---- tests ---- */

/* Slice size for restore runs: 7 instead of 1 */
#define RSLICE(s) ((s) == 1 ? 7 : (s))

static const size_t main_sizes[] = {0, 1, 8191, (1u << 20) + 3};
#define NMAIN (sizeof(main_sizes) / sizeof(main_sizes[0]))

static void test_good_all_slices(void)
{
    static const size_t slices[] = {1, 7, 4096, 0};
    struct fixture fx;
    struct result r;

    fixture_init(&fx, main_sizes, NMAIN, 1);
    for (size_t si = 0; si < sizeof(slices) / sizeof(slices[0]); si++) {
        const char *root = fresh_root();
        char what[64];
        snprintf(what, sizeof(what), "slice %zu", slices[si]);

        run(&fx, fx.content, fx.len, NULL, slices[si], &r);
        if (r.rc != 0 || r.good != NMAIN || r.bad != 0 || r.rep.calls != 0)
            unit_fail(__FILE__, __LINE__, what);

        run(&fx, fx.content, fx.len, root, slices[si], &r);
        if (r.rc != 0 || r.good != NMAIN || r.bad != 0 || r.rep.calls != 0)
            unit_fail(__FILE__, __LINE__, what);
        for (size_t i = 0; i < NMAIN; i++)
            if (!restored_ok(root, &fx.f[i], fx.content + fx.f[i].offset))
                unit_fail(__FILE__, __LINE__, fx.f[i].path);
        CHECK(count_files(root) == (int)NMAIN);
    }
    fixture_free(&fx);
}

static void test_verify_writes_nothing(void)
{
    struct fixture fx;
    struct result r;

    /* verify mode creates no file, not even relative to the working directory */
    fixture_init(&fx, main_sizes, NMAIN, 2);
    REQUIRE(access("base/1/f0", F_OK) != 0);
    run(&fx, fx.content, fx.len, NULL, 0, &r);
    CHECK(r.rc == 0 && r.good == NMAIN);
    CHECK(access("base/1/f0", F_OK) != 0 && access("(null)/base/1/f0", F_OK) != 0);
    fixture_free(&fx);
}

/* Modes as PostgreSQL creates files: 0600, or 0640 with group access; never setuid, setgid,
 * sticky, or anything for others. */
static void test_modes_masked(void)
{
    static const size_t sizes[] = {5, 3, 0};
    static const uint32_t wild[] = {06755, 01777, 0644};
    static const unsigned want[2][3] = {{0600, 0600, 0600}, {0640, 0640, 0640}};
    struct fixture fx;
    struct ws_tree tree;
    struct ws_bundle_opts o = {0};
    struct ws_sink *s = NULL;
    struct ws_error err = {0};

    CHECK(ws_bundle_file_mode(0400, 0) == 0400 && ws_bundle_file_mode(0440, 1) == 0440);
    for (int group = 0; group < 2; group++) {
        const char *root = fresh_root();
        fixture_init(&fx, sizes, 3, 3);
        for (int i = 0; i < 3; i++)
            fx.f[i].mode = wild[i];
        o.tree = open_tree(root, &tree);
        o.group_access = group;
        REQUIRE(ws_bundle_splitter_new(fx.fp, fx.n, &o, &s, &err) == 0);
        CHECK(ws_sink_write(s, fx.content, fx.len, &err) == 0);
        CHECK(ws_sink_finish(s, &err) == 0);
        CHECK(ws_bundle_splitter_good(s) == 3);
        ws_sink_free(s);
        close_tree(o.tree);
        for (int i = 0; i < 3; i++) {
            char path[700];
            struct stat st;
            snprintf(path, sizeof(path), "%s/%s", root, fx.f[i].path);
            CHECK(stat(path, &st) == 0 && (unsigned)(st.st_mode & 07777) == want[group][i]);
        }
        fixture_free(&fx);
    }
}

/* base/1 replaced by a link, or a file name taken by a link: the splitter writes nothing
 * through either (the restore would otherwise write wherever the link points). */
static void test_links_never_followed(void)
{
    static const size_t sizes[] = {5, 7};
    struct fixture fx;
    struct result r;
    const char *root = fresh_root(), *elsewhere = fresh_root();
    char path[700], target[700], buf[16];
    struct stat st;
    int fd;

    fixture_init(&fx, sizes, 2, 4);
    /* base/1 -> elsewhere/base/1 */
    snprintf(path, sizeof(path), "%s/base/1", root);
    REQUIRE(rmdir(path) == 0);
    snprintf(target, sizeof(target), "%s/base/1", elsewhere);
    REQUIRE(symlink(target, path) == 0);
    run(&fx, fx.content, fx.len, root, 0, &r);
    CHECK(r.rc == WS_ERR_INVALID && r.err.sys_errno == ENOTDIR);
    CHECK(strstr(r.err.msg, "base/1") != NULL);
    CHECK(count_files(elsewhere) == 0);

    /* base/1/f1 -> a file outside, which must keep its content */
    root = fresh_root();
    snprintf(target, sizeof(target), "%s/outside", elsewhere);
    fd = open(target, O_WRONLY | O_CREAT | O_EXCL, 0644);
    REQUIRE(fd >= 0 && write(fd, "canary", 6) == 6);
    close(fd);
    snprintf(path, sizeof(path), "%s/base/1/f1", root);
    REQUIRE(symlink(target, path) == 0);
    run(&fx, fx.content, fx.len, root, 0, &r);
    CHECK(r.rc == WS_ERR_IO && r.err.sys_errno == EEXIST);
    CHECK(stat(target, &st) == 0 && st.st_size == 6 && (st.st_mode & 07777) == 0644);
    fd = open(target, O_RDONLY);
    REQUIRE(fd >= 0);
    CHECK(read(fd, buf, sizeof(buf)) == 6 && memcmp(buf, "canary", 6) == 0);
    close(fd);
    CHECK(lstat(path, &st) == 0 && S_ISLNK(st.st_mode));
    fixture_free(&fx);
}

static void test_flipped_byte(void)
{
    static const size_t slices[] = {1, 4096, 0};
    struct fixture fx;
    struct result r;
    uint8_t *bad;
    size_t si;

    fixture_init(&fx, main_sizes, NMAIN, 4);
    bad = malloc(fx.len);
    REQUIRE(bad != NULL);

    for (si = 0; si < sizeof(slices) / sizeof(slices[0]); si++) {
        const char *root = fresh_root();
        /* one byte in the middle of f2 (8191 bytes) */
        memcpy(bad, fx.content, fx.len);
        bad[fx.f[2].offset + 4000] ^= 0x01;

        /* verify: the one file is named, the others pass, the run goes on to the end */
        run(&fx, bad, fx.len, NULL, slices[si], &r);
        CHECK(r.rc == 0);
        CHECK(r.good == NMAIN - 1 && r.bad == 1);
        CHECK(r.rep.calls == 1 && strcmp(r.rep.paths[0], "base/1/f2") == 0);
        CHECK(strstr(r.rep.msg, "SHA-256") != NULL);

        /* restore: fails CORRUPT naming the file; files before it are in place (1-byte writes
         * into files cost a system call each: good_all_slices covers them) */
        run(&fx, bad, fx.len, root, RSLICE(slices[si]), &r);
        CHECK(r.rc == WS_ERR_CORRUPT);
        CHECK(strstr(r.err.msg, "base/1/f2") != NULL);
        CHECK(r.bad == 1 && r.rep.calls == 1 && strcmp(r.rep.paths[0], "base/1/f2") == 0);
        CHECK(r.good == 2);
        CHECK(restored_ok(root, &fx.f[0], fx.content) && restored_ok(root, &fx.f[1], fx.content));
        CHECK(!exists(root, "base/1/f3"));

        /* the first and the last byte of the content, in verify mode: two files named */
        memcpy(bad, fx.content, fx.len);
        bad[0] ^= 0x80;          /* f1: f0 is empty */
        bad[fx.len - 1] ^= 0x80; /* f3 */
        run(&fx, bad, fx.len, NULL, slices[si], &r);
        CHECK(r.rc == 0 && r.good == 2 && r.bad == 2 && r.rep.calls == 2);
        CHECK(strcmp(r.rep.paths[0], "base/1/f1") == 0 && strcmp(r.rep.paths[1], "base/1/f3") == 0);

        /* the last byte in restore mode: the failure comes at the very end */
        memcpy(bad, fx.content, fx.len);
        bad[fx.len - 1] ^= 0x80;
        root = fresh_root();
        run(&fx, bad, fx.len, root, RSLICE(slices[si]), &r);
        CHECK(r.rc == WS_ERR_CORRUPT && r.rep.calls == 1 &&
              strcmp(r.rep.paths[0], "base/1/f3") == 0);
        CHECK(strstr(r.err.msg, "base/1/f3") != NULL);
    }
    free(bad);
    fixture_free(&fx);
}

static void test_wrong_digest_of_empty_file(void)
{
    static const size_t sizes[] = {3, 0, 3};
    struct fixture fx;
    struct result r;

    /* an empty file is checked too: the manifest's digest must be SHA-256("") */
    fixture_init(&fx, sizes, 3, 5);
    fx.f[1].sha256[31] ^= 1;
    run(&fx, fx.content, fx.len, NULL, 0, &r);
    CHECK(r.rc == 0 && r.good == 2 && r.bad == 1 && r.rep.calls == 1);
    CHECK(strcmp(r.rep.paths[0], "base/1/f1") == 0);
    run(&fx, fx.content, fx.len, fresh_root(), 0, &r);
    CHECK(r.rc == WS_ERR_CORRUPT && r.rep.calls == 1 && strstr(r.err.msg, "base/1/f1"));
    fixture_free(&fx);
}

static void test_short_content(void)
{
    struct fixture fx;
    struct result r;
    int mode;

    fixture_init(&fx, main_sizes, NMAIN, 6);
    for (mode = 0; mode < 2; mode++) {
        const char *root = mode ? fresh_root() : NULL;

        /* the last file is missing entirely */
        run(&fx, fx.content, fx.f[3].offset, root, 4096, &r);
        CHECK(r.rc == WS_ERR_CORRUPT);
        CHECK(strstr(r.err.msg, "base/1/f3") != NULL);
        CHECK(r.good == 3 && r.bad == 1 && r.rep.calls == 1);
        CHECK(strcmp(r.rep.paths[0], "base/1/f3") == 0);

        /* the last file lacks its last byte */
        root = mode ? fresh_root() : NULL;
        run(&fx, fx.content, fx.len - 1, root, 0, &r);
        CHECK(r.rc == WS_ERR_CORRUPT && r.good == 3 && r.rep.calls == 1);
        CHECK(strcmp(r.rep.paths[0], "base/1/f3") == 0);

        /* nothing at all: every non-empty file is missing (f0 is empty and at offset 0) */
        root = mode ? fresh_root() : NULL;
        run(&fx, fx.content, 0, root, 0, &r);
        CHECK(r.rc == WS_ERR_CORRUPT && r.good == 1 && r.bad == 3 && r.rep.calls == 3);
        CHECK(strcmp(r.rep.paths[0], "base/1/f1") == 0 && strcmp(r.rep.paths[2], "base/1/f3") == 0);
    }
    fixture_free(&fx);
}

static void test_short_before_trailing_empty(void)
{
    static const size_t sizes[] = {10, 100, 0, 0};
    struct fixture fx;
    struct result r;

    /* the cut lies inside f1: f1 and the empty files after it are all missing */
    fixture_init(&fx, sizes, 4, 7);
    run(&fx, fx.content, 50, NULL, 0, &r);
    CHECK(r.rc == WS_ERR_CORRUPT && r.good == 1 && r.bad == 3 && r.rep.calls == 3);
    CHECK(strcmp(r.rep.paths[1], "base/1/f2") == 0);
    /* exactly up to the empty files: they are complete, nothing is missing */
    run(&fx, fx.content, 110, NULL, 0, &r);
    CHECK(r.rc == 0 && r.good == 4 && r.bad == 0);
    fixture_free(&fx);
}

static void test_long_content(void)
{
    static const size_t slices[] = {1, 4096, 0};
    struct fixture fx;
    struct result r;
    uint8_t *more;
    size_t si;
    int mode;

    fixture_init(&fx, main_sizes, NMAIN, 8);
    more = malloc(fx.len + 100);
    REQUIRE(more != NULL);
    memcpy(more, fx.content, fx.len);
    memset(more + fx.len, 0, 100);
    for (mode = 0; mode < 2; mode++) {
        for (si = 0; si < sizeof(slices) / sizeof(slices[0]); si++) {
            size_t sl = mode ? RSLICE(slices[si]) : slices[si];
            run(&fx, more, fx.len + 1, mode ? fresh_root() : NULL, sl, &r);
            if (r.rc != WS_ERR_CORRUPT)
                unit_fail(__FILE__, __LINE__, mode ? "restore: 1 extra byte" : "verify: 1 extra");
            run(&fx, more, fx.len + 100, mode ? fresh_root() : NULL, sl, &r);
            if (r.rc != WS_ERR_CORRUPT)
                unit_fail(__FILE__, __LINE__, mode ? "restore: extra bytes" : "verify: extra");
        }
    }
    /* no files at all: any byte is too much, none is fine */
    {
        struct fixture none;
        fixture_init(&none, NULL, 0, 9);
        run(&none, more, 1, NULL, 0, &r);
        CHECK(r.rc == WS_ERR_CORRUPT);
        run(&none, more, 0, NULL, 0, &r);
        CHECK(r.rc == 0 && r.good == 0 && r.bad == 0);
        fixture_free(&none);
    }
    free(more);
    fixture_free(&fx);
}

static void test_empty_files_at_both_ends(void)
{
    static const size_t sizes[] = {0, 0, 10, 0, 5, 0, 0};
    static const size_t slices[] = {1, 3, 0};
    struct fixture fx;
    struct result r;
    size_t si, i;

    fixture_init(&fx, sizes, 7, 10);
    for (si = 0; si < sizeof(slices) / sizeof(slices[0]); si++) {
        const char *root = fresh_root();
        run(&fx, fx.content, fx.len, NULL, slices[si], &r);
        CHECK(r.rc == 0 && r.good == 7 && r.bad == 0);
        run(&fx, fx.content, fx.len, root, slices[si], &r);
        CHECK(r.rc == 0 && r.good == 7 && r.bad == 0);
        for (i = 0; i < 7; i++)
            if (!restored_ok(root, &fx.f[i], fx.content + fx.f[i].offset))
                unit_fail(__FILE__, __LINE__, fx.f[i].path);
    }
    fixture_free(&fx);

    /* a bundle of empty files only: no byte is ever written, finish creates them all */
    {
        static const size_t zeros[] = {0, 0, 0};
        const char *root = fresh_root();
        fixture_init(&fx, zeros, 3, 11);
        run(&fx, fx.content, 0, root, 0, &r);
        CHECK(r.rc == 0 && r.good == 3 && r.bad == 0);
        for (i = 0; i < 3; i++)
            CHECK(restored_ok(root, &fx.f[i], NULL));
        fixture_free(&fx);
    }
}

static void test_offsets_must_follow(void)
{
    static const size_t sizes[] = {10, 10, 10};
    struct fixture fx;
    struct result r;

    fixture_init(&fx, sizes, 3, 12);
    fx.f[1].offset = 11; /* a gap */
    run(&fx, fx.content, fx.len, NULL, 0, &r);
    CHECK(r.rc == WS_ERR_CORRUPT && strstr(r.err.msg, "base/1/f1") != NULL);
    fx.f[1].offset = 9; /* an overlap */
    run(&fx, fx.content, fx.len, NULL, 0, &r);
    CHECK(r.rc == WS_ERR_CORRUPT);
    fx.f[1].offset = 10;
    fx.f[0].offset = 1; /* the first file does not start the bundle */
    run(&fx, fx.content, fx.len, NULL, 1, &r);
    CHECK(r.rc == WS_ERR_CORRUPT && strstr(r.err.msg, "base/1/f0") != NULL);
    fx.f[0].offset = 0;
    run(&fx, fx.content, fx.len, NULL, 1, &r);
    CHECK(r.rc == 0 && r.good == 3);
    fixture_free(&fx);
}

static void test_restore_onto_existing_file(void)
{
    static const size_t sizes[] = {100, 200, 300};
    struct fixture fx;
    struct result r;
    const char *root = fresh_root();
    char path[700], buf[64];
    struct stat before, after;
    struct timespec old[2] = {{1234567890, 0}, {1234567890, 0}};
    ssize_t n;
    int fd;

    fixture_init(&fx, sizes, 3, 13);
    snprintf(path, sizeof(path), "%s/base/1/f1", root);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, "keep me", 7) == 7);
    REQUIRE(fchmod(fd, 0644) == 0 && futimens(fd, old) == 0);
    close(fd);
    REQUIRE(stat(path, &before) == 0);

    run(&fx, fx.content, fx.len, root, 0, &r);
    CHECK(r.rc != 0);
    CHECK(r.rc == WS_ERR_IO && r.err.sys_errno == EEXIST);
    CHECK(strstr(r.err.msg, "base/1/f1") != NULL);
    REQUIRE(stat(path, &after) == 0);
    CHECK(after.st_size == 7 && (after.st_mode & 07777) == 0644);
    CHECK(after.st_mtim.tv_sec == 1234567890 && after.st_ino == before.st_ino);
    fd = open(path, O_RDONLY);
    REQUIRE(fd >= 0);
    n = read(fd, buf, sizeof(buf));
    close(fd);
    CHECK(n == 7 && memcmp(buf, "keep me", 7) == 0);
    CHECK(restored_ok(root, &fx.f[0], fx.content));
    CHECK(!exists(root, "base/1/f2"));
    fixture_free(&fx);
}

static void test_missing_directory(void)
{
    static const size_t sizes[] = {4};
    struct fixture fx;
    struct result r;
    char root[600];

    /* the restore creates directories first; the splitter does not invent them */
    snprintf(root, sizeof(root), "%s/no-base.XXXXXX", unit_tmpdir());
    REQUIRE(mkdtemp(root) != NULL);
    fixture_init(&fx, sizes, 1, 14);
    run(&fx, fx.content, fx.len, root, 0, &r);
    CHECK(r.rc == WS_ERR_IO && r.err.sys_errno == ENOENT);
    fixture_free(&fx);
}

/* ---- files in pieces ---- */

/*
 * A file in pieces between whole files, in three bundles as backup_create writes them:
 *   bundle 0: w0 | big[0, a)
 *   bundle 1: big[a, b)
 *   bundle 2: big[b, size) | w1 | w2 (empty)
 * big's record holds bundle 0 and the offset after w0; its pieces are [a, b) and [b, size).
 */
struct pfix {
    struct ws_bfile w0, big, w1, w2;
    struct ws_bpiece pieces[2];
    uint8_t *w0c, *bigc, *w1c;
    uint8_t *bundle[3];
    size_t blen[3];
    struct ws_bextent ext[3][3];
    size_t next[3];
};

static void pfile(struct ws_bfile *f, const char *path, uint32_t mode, size_t size,
                  const uint8_t *content, uint32_t bundle, uint64_t offset)
{
    memset(f, 0, sizeof(*f));
    f->path = (char *)path;
    f->mode = mode;
    f->mtime = 1700000000 + (int64_t)size % 1000;
    f->size = size;
    f->bundle = bundle;
    f->offset = offset;
    EVP_Digest(content, size, f->sha256, NULL, EVP_sha256(), NULL);
}

static void pext(struct ws_bextent *e, const struct ws_bfile *f, uint64_t file_offset,
                 uint64_t length, uint64_t offset)
{
    memset(e, 0, sizeof(*e));
    e->file = f;
    e->file_offset = file_offset;
    e->length = length;
    e->offset = offset;
}

static void pfix_init(struct pfix *px, size_t a, size_t b, size_t size, uint32_t seed)
{
    const size_t n0 = 1000, n1 = 777;
    uint8_t *all;

    memset(px, 0, sizeof(*px));
    if (!(all = malloc(n0 + size + n1)) || !(px->bundle[0] = malloc(n0 + a)) ||
        !(px->bundle[1] = malloc(b - a)) || !(px->bundle[2] = malloc(size - b + n1)))
        abort();
    unit_random(all, n0 + size + n1, seed);
    px->w0c = all;
    px->bigc = all + n0;
    px->w1c = all + n0 + size;
    pfile(&px->w0, "base/1/w0", 0640, n0, px->w0c, 0, 0);
    pfile(&px->big, "base/1/big", 0600, size, px->bigc, 0, n0);
    pfile(&px->w1, "base/1/w1", 0604, n1, px->w1c, 2, size - b);
    pfile(&px->w2, "base/1/w2", 0644, 0, px->w1c, 2, size - b + n1);
    px->pieces[0] = (struct ws_bpiece){a, b - a, 1, 0};
    px->pieces[1] = (struct ws_bpiece){b, size - b, 2, 0};
    px->big.pieces = px->pieces;
    px->big.npieces = 2;

    memcpy(px->bundle[0], px->w0c, n0);
    memcpy(px->bundle[0] + n0, px->bigc, a);
    px->blen[0] = n0 + a;
    memcpy(px->bundle[1], px->bigc + a, b - a);
    px->blen[1] = b - a;
    memcpy(px->bundle[2], px->bigc + b, size - b);
    memcpy(px->bundle[2] + size - b, px->w1c, n1);
    px->blen[2] = size - b + n1;

    pext(&px->ext[0][0], &px->w0, 0, n0, 0);
    pext(&px->ext[0][1], &px->big, 0, a, n0);
    px->next[0] = 2;
    pext(&px->ext[1][0], &px->big, a, b - a, 0);
    px->next[1] = 1;
    pext(&px->ext[2][0], &px->big, b, size - b, 0);
    pext(&px->ext[2][1], &px->w1, 0, n1, size - b);
    pext(&px->ext[2][2], &px->w2, 0, 0, size - b + n1);
    px->next[2] = 3;
}

static void pfix_free(struct pfix *px)
{
    free(px->w0c);
    for (int i = 0; i < 3; i++)
        free(px->bundle[i]);
    memset(px, 0, sizeof(*px));
}

/* Attaches md to every extent of big (verify mode, as backup_verify does). */
static void pfix_set_md(struct pfix *px, EVP_MD_CTX *md)
{
    for (int b = 0; b < 3; b++)
        for (size_t i = 0; i < px->next[b]; i++)
            px->ext[b][i].md = px->ext[b][i].file == &px->big ? md : NULL;
}

static EVP_MD_CTX *new_sha256(void)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
        abort();
    return md;
}

/* run() for extents: feeds content[0..len) in slices, then finishes. */
static void run_ext(const struct ws_bextent *ext, size_t next, const uint8_t *content, size_t len,
                    const char *root, size_t slice, struct result *res)
{
    struct ws_bundle_opts o = {0};
    struct ws_tree tree;
    struct ws_sink *s = NULL;
    size_t done = 0;

    memset(res, 0, sizeof(*res));
    o.tree = open_tree(root, &tree);
    o.problem = on_problem;
    o.arg = &res->rep;
    if ((res->rc = ws_bundle_splitter_new_ext(ext, next, &o, &s, &res->err)) != 0) {
        close_tree(o.tree);
        return;
    }
    while (done < len) {
        size_t n = slice == 0 || len - done < slice ? len - done : slice;
        if ((res->rc = ws_sink_write(s, content + done, n, &res->err)) != 0)
            break;
        done += n;
    }
    if (res->rc == 0)
        res->rc = ws_sink_finish(s, &res->err);
    res->good = ws_bundle_splitter_good(s);
    res->bad = ws_bundle_splitter_bad(s);
    ws_sink_free(s);
    close_tree(o.tree);
}

/* What split_files does before the workers run: the file, exclusively, at its full size. */
static int precreate(const char *root, const struct ws_bfile *f)
{
    char path[700];
    int fd, ok;

    snprintf(path, sizeof(path), "%s/%s", root, f->path);
    if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0)
        return -1;
    ok = ftruncate(fd, (off_t)f->size) == 0;
    close(fd);
    return ok ? 0 : -1;
}

static void test_pieces_restore_any_order(void)
{
    static const int orders[][3] = {{2, 0, 1}, {2, 1, 0}, {0, 1, 2}, {1, 2, 0}};
    static const size_t slices[] = {7, 4096, 0};
    struct pfix px;
    struct result r;

    pfix_init(&px, 10007, 20011, 25013, 21);
    for (size_t oi = 0; oi < sizeof(orders) / sizeof(orders[0]); oi++) {
        for (size_t si = 0; si < sizeof(slices) / sizeof(slices[0]); si++) {
            const char *root = fresh_root();
            char what[64];
            snprintf(what, sizeof(what), "order %d%d%d, slice %zu", orders[oi][0], orders[oi][1],
                     orders[oi][2], slices[si]);
            if (precreate(root, &px.big) != 0) {
                unit_fail(__FILE__, __LINE__, what);
                continue;
            }
            /* three splitters, one per bundle, as three restore workers would run them */
            for (int k = 0; k < 3; k++) {
                int b = orders[oi][k];
                run_ext(px.ext[b], px.next[b], px.bundle[b], px.blen[b], root, slices[si], &r);
                if (r.rc != 0 || r.bad != 0 || r.rep.calls != 0) {
                    fprintf(stderr, "    (%s, bundle %d: rc %d: %s)\n", what, b, r.rc, r.err.msg);
                    unit_fail(__FILE__, __LINE__, what);
                }
            }
            if (!content_ok(root, &px.big, px.bigc))
                unit_fail(__FILE__, __LINE__, what);
            if (!restored_ok(root, &px.w0, px.w0c) || !restored_ok(root, &px.w1, px.w1c) ||
                !restored_ok(root, &px.w2, NULL))
                unit_fail(__FILE__, __LINE__, what);
        }
    }
    pfix_free(&px);
}

static void test_pieces_restore_large(void)
{
    /* pieces above the splitter's 8 MiB writeback step, at odd offsets */
    struct pfix px;
    struct result r;
    static const size_t slices[] = {65536 + 3, 0};

    pfix_init(&px, (9u << 20) + 4097, (19u << 20) + 1, (21u << 20) + 12345, 22);
    for (size_t si = 0; si < sizeof(slices) / sizeof(slices[0]); si++) {
        const char *root = fresh_root();
        REQUIRE(precreate(root, &px.big) == 0);
        for (int b = 2; b >= 0; b--) {
            run_ext(px.ext[b], px.next[b], px.bundle[b], px.blen[b], root, slices[si], &r);
            CHECK(r.rc == 0 && r.bad == 0 && r.rep.calls == 0);
        }
        CHECK(content_ok(root, &px.big, px.bigc));
        CHECK(restored_ok(root, &px.w0, px.w0c) && restored_ok(root, &px.w1, px.w1c));
    }
    pfix_free(&px);
}

static void test_pieces_restore_one_piece(void)
{
    struct pfix px;
    struct result r;
    const char *root = fresh_root();
    uint8_t *want;
    struct stat st;
    char path[700];

    /* one piece alone: written at its place, the file neither truncated nor extended */
    pfix_init(&px, 10007, 20011, 25013, 23);
    REQUIRE(precreate(root, &px.big) == 0);
    run_ext(px.ext[1], px.next[1], px.bundle[1], px.blen[1], root, 4096, &r);
    CHECK(r.rc == 0 && r.bad == 0 && r.rep.calls == 0);
    want = calloc(1, px.big.size);
    REQUIRE(want != NULL);
    memcpy(want + 10007, px.bigc + 10007, 20011 - 10007);
    CHECK(content_ok(root, &px.big, want));
    snprintf(path, sizeof(path), "%s/%s", root, px.big.path);
    CHECK(stat(path, &st) == 0 && (uint64_t)st.st_size == px.big.size);
    free(want);
    pfix_free(&px);
}

static void test_pieces_restore_needs_created_file(void)
{
    struct pfix px;
    struct result r;
    const char *root = fresh_root();

    /* a piece goes into the file the caller created: without it, an error naming the file, and
     * the splitter creates nothing */
    pfix_init(&px, 10007, 20011, 25013, 24);
    run_ext(px.ext[1], px.next[1], px.bundle[1], px.blen[1], root, 0, &r);
    CHECK(r.rc == WS_ERR_IO && r.err.sys_errno == ENOENT);
    CHECK(strstr(r.err.msg, "base/1/big") != NULL);
    CHECK(!exists(root, "base/1/big"));
    /* the same for the file's first bytes, after a whole file that is restored */
    run_ext(px.ext[0], px.next[0], px.bundle[0], px.blen[0], root, 0, &r);
    CHECK(r.rc == WS_ERR_IO && r.err.sys_errno == ENOENT);
    CHECK(!exists(root, "base/1/big"));
    CHECK(restored_ok(root, &px.w0, px.w0c));
    pfix_free(&px);
}

static void test_pieces_short_and_long(void)
{
    struct pfix px;
    struct result r;
    uint8_t *more;
    int mode;

    pfix_init(&px, 10007, 20011, 25013, 25);
    more = malloc(px.blen[1] + 1);
    REQUIRE(more != NULL);
    memcpy(more, px.bundle[1], px.blen[1]);
    more[px.blen[1]] = 0;
    for (mode = 0; mode < 2; mode++) {
        const char *root = mode ? fresh_root() : NULL;
        EVP_MD_CTX *md = mode ? NULL : new_sha256();
        if (root)
            REQUIRE(precreate(root, &px.big) == 0);
        pfix_set_md(&px, md);
        /* a piece one byte short: the bundle ends before it does, the file is named */
        run_ext(px.ext[1], px.next[1], px.bundle[1], px.blen[1] - 1, root, 0, &r);
        CHECK(r.rc == WS_ERR_CORRUPT && strstr(r.err.msg, "base/1/big") != NULL);
        CHECK(r.bad == 1 && r.rep.calls == 1 && strcmp(r.rep.paths[0], "base/1/big") == 0);
        /* one byte too many after the piece */
        run_ext(px.ext[1], px.next[1], more, px.blen[1] + 1, root, 1000, &r);
        CHECK(r.rc == WS_ERR_CORRUPT);
        /* the last piece short: the whole file after it is missing too */
        run_ext(px.ext[2], px.next[2], px.bundle[2], 5000 - 1, root, 0, &r);
        CHECK(r.rc == WS_ERR_CORRUPT && r.rep.calls == 3);
        CHECK(strcmp(r.rep.paths[0], "base/1/big") == 0);
        EVP_MD_CTX_free(md);
    }
    free(more);
    pfix_free(&px);
}

static void test_pieces_verify_good(void)
{
    static const size_t slices[] = {1, 4096, 0};
    struct pfix px;
    struct result r[3];

    pfix_init(&px, 10007, 20011, 25013, 26);
    for (size_t si = 0; si < sizeof(slices) / sizeof(slices[0]); si++) {
        EVP_MD_CTX *md = new_sha256();
        pfix_set_md(&px, md);
        for (int b = 0; b < 3; b++)
            run_ext(px.ext[b], px.next[b], px.bundle[b], px.blen[b], NULL, slices[si], &r[b]);
        for (int b = 0; b < 3; b++)
            CHECK(r[b].rc == 0 && r[b].bad == 0 && r[b].rep.calls == 0);
        /* big counts where its last piece ends */
        CHECK(r[0].good == 1 && r[1].good == 0 && r[2].good == 3);
        EVP_MD_CTX_free(md);
    }
    CHECK(access("base/1/big", F_OK) != 0 && access("(null)/base/1/big", F_OK) != 0);
    pfix_free(&px);
}

/* Verify mode over the three bundles with one byte of bundle `fb` at `fo` flipped: the first two
 * bundles in full, then bundle 2 up to `stop` bytes, checking that nothing was reported yet,
 * then the rest. */
static void verify_flipped(struct pfix *px, int fb, size_t fo, size_t stop, struct result *r)
{
    struct ws_bundle_opts o = {0};
    struct ws_sink *s = NULL;
    EVP_MD_CTX *md = new_sha256();
    uint8_t *copy = malloc(px->blen[fb]), *save = px->bundle[fb];
    int b;

    if (!copy)
        abort();
    memcpy(copy, save, px->blen[fb]);
    copy[fo] ^= 0x10;
    px->bundle[fb] = copy;
    pfix_set_md(px, md);
    for (b = 0; b < 2; b++)
        run_ext(px->ext[b], px->next[b], px->bundle[b], px->blen[b], NULL, 0, &r[b]);
    memset(&r[2], 0, sizeof(r[2]));
    o.problem = on_problem;
    o.arg = &r[2].rep;
    if (ws_bundle_splitter_new_ext(px->ext[2], px->next[2], &o, &s, &r[2].err) != 0)
        abort();
    r[2].rc = ws_sink_write(s, px->bundle[2], stop, &r[2].err);
    if (r[2].rep.calls != 0)
        unit_fail(__FILE__, __LINE__, "reported before the last piece ended");
    if (r[2].rc == 0)
        r[2].rc = ws_sink_write(s, px->bundle[2] + stop, px->blen[2] - stop, &r[2].err);
    if (r[2].rc == 0)
        r[2].rc = ws_sink_finish(s, &r[2].err);
    r[2].good = ws_bundle_splitter_good(s);
    r[2].bad = ws_bundle_splitter_bad(s);
    ws_sink_free(s);
    EVP_MD_CTX_free(md);
    px->bundle[fb] = save;
    free(copy);
}

static void test_pieces_verify_flipped_byte(void)
{
    struct pfix px;
    struct result r[3];
    const size_t last = 25013 - 20011; /* big's bytes in bundle 2 */
    static const struct {
        int bundle;
        size_t offset;
    } flips[] = {
        {1, 5000},         /* the middle piece */
        {0, 1000},         /* big's first byte (in its record's bundle, after w0) */
        {0, 1000 + 10006}, /* the last byte before the first piece */
        {1, 0},            /* the first byte of a piece */
        {2, 0},            /* the first byte of the last piece */
        {2, 5001},         /* its last byte */
    };

    pfix_init(&px, 10007, 20011, 25013, 27);
    for (size_t i = 0; i < sizeof(flips) / sizeof(flips[0]); i++) {
        char what[64];
        snprintf(what, sizeof(what), "flip in bundle %d at %zu", flips[i].bundle, flips[i].offset);
        verify_flipped(&px, flips[i].bundle, flips[i].offset, last - 1, r);
        /* nothing before the last piece ends; then big is named, once, and the run goes on
         * (w1 and w2 after it are good) */
        if (r[0].rc || r[1].rc || r[0].rep.calls || r[1].rep.calls || r[0].good != 1)
            unit_fail(__FILE__, __LINE__, what);
        if (r[2].rc != 0 || r[2].bad != 1 || r[2].good != 2 || r[2].rep.calls != 1 ||
            strcmp(r[2].rep.paths[0], "base/1/big") != 0 || !strstr(r[2].rep.msg, "SHA-256"))
            unit_fail(__FILE__, __LINE__, what);
    }
    /* a flipped byte in the whole file after the last piece: that file, not big */
    verify_flipped(&px, 2, last + 3, last, r);
    CHECK(r[2].rc == 0 && r[2].bad == 1 && r[2].good == 2 && r[2].rep.calls == 1);
    CHECK(strcmp(r[2].rep.paths[0], "base/1/w1") == 0);
    /* ... and in w0, before big's first bytes */
    verify_flipped(&px, 0, 999, last, r);
    CHECK(r[0].bad == 1 && r[0].rep.calls == 1 && strcmp(r[0].rep.paths[0], "base/1/w0") == 0);
    CHECK(r[2].rc == 0 && r[2].bad == 0 && r[2].good == 3);
    pfix_free(&px);
}

/* ws_bundle_extents: records in manifest order, extents sorted by (bundle, offset). */
static void test_extents(void)
{
    struct ws_manifest m = {0};
    struct ws_bfile f[7];
    struct ws_bpiece p1[2] = {{100, 100, 1, 0}, {200, 50, 4, 0}}, p6[1] = {{64, 6, 4, 53}};
    struct ws_bextent *ext = NULL;
    size_t *first = NULL, next = 0, i;
    struct ws_error err = {0};
    static const struct {
        int file;
        uint64_t file_offset, length, offset;
    } want[] = {
        /* bundle 0 */
        {2, 0, 5, 0},
        {1, 0, 100, 5},
        {3, 0, 0, 105}, /* empty file before the one at the same offset */
        {4, 0, 7, 105},
        /* bundle 1 */
        {1, 100, 100, 0},
        /* bundle 2 */
        {0, 0, 10, 0},
        {6, 0, 64, 10},
        /* bundle 3: none */
        /* bundle 4 */
        {1, 200, 50, 0},
        {5, 0, 3, 50},
        {6, 64, 6, 53},
        /* bundle 5: none */
    };
    static const size_t want_first[] = {0, 4, 5, 7, 7, 10, 10};
    static const struct {
        uint32_t bundle;
        uint64_t offset, size;
    } rec[7] = {{2, 0, 10},  {0, 5, 250}, {0, 0, 5},  {0, 105, 0},
                {0, 105, 7}, {4, 50, 3},  {2, 10, 70}};

    memset(f, 0, sizeof(f));
    for (i = 0; i < 7; i++) {
        static const char *const names[] = {"f0", "f1", "f2", "f3", "f4", "f5", "f6"};
        f[i].path = (char *)names[i];
        f[i].bundle = rec[i].bundle;
        f[i].offset = rec[i].offset;
        f[i].size = rec[i].size;
    }
    f[1].pieces = p1;
    f[1].npieces = 2;
    f[6].pieces = p6;
    f[6].npieces = 1;
    m.files = f;
    m.nfiles = 7;
    m.bundles = 6;
    REQUIRE(ws_bundle_extents(&m, &ext, &first, &next, &err) == 0);
    REQUIRE(ext != NULL && first != NULL);
    CHECK(next == sizeof(want) / sizeof(want[0]));
    for (i = 0; i < next && i < sizeof(want) / sizeof(want[0]); i++) {
        char what[32];
        snprintf(what, sizeof(what), "extent %zu", i);
        if (ext[i].file != &f[want[i].file] || ext[i].file_offset != want[i].file_offset ||
            ext[i].length != want[i].length || ext[i].offset != want[i].offset || ext[i].md != NULL)
            unit_fail(__FILE__, __LINE__, what);
    }
    for (i = 0; i <= 6; i++) {
        char what[32];
        snprintf(what, sizeof(what), "first[%zu]", i);
        if (first[i] != want_first[i])
            unit_fail(__FILE__, __LINE__, what);
    }
    free(ext);
    free(first);

    /* no files: first[] all 0 for every bundle (empty bundles are legal) */
    m.files = NULL;
    m.nfiles = 0;
    m.bundles = 3;
    REQUIRE(ws_bundle_extents(&m, &ext, &first, &next, &err) == 0);
    CHECK(next == 0 && first[0] == 0 && first[1] == 0 && first[2] == 0 && first[3] == 0);
    free(ext);
    free(first);
    m.bundles = 0;
    REQUIRE(ws_bundle_extents(&m, &ext, &first, &next, &err) == 0);
    CHECK(next == 0 && first[0] == 0);
    free(ext);
    free(first);
}

/* The path restore and verify take: the manifest's records through ws_bundle_extents into one
 * splitter per bundle. */
static void test_extents_feed_splitters(void)
{
    struct pfix px;
    struct ws_manifest m = {0};
    struct ws_bfile files[4];
    struct ws_bextent *ext = NULL;
    size_t *first = NULL, next = 0;
    struct ws_error err = {0};
    struct result r;
    const char *root = fresh_root();
    EVP_MD_CTX *md;
    int b;

    pfix_init(&px, 10007, 20011, 25013, 28);
    /* manifest order is not bundle order */
    files[0] = px.w1;
    files[1] = px.big;
    files[2] = px.w2;
    files[3] = px.w0;
    m.files = files;
    m.nfiles = 4;
    m.bundles = 3;
    REQUIRE(ws_bundle_extents(&m, &ext, &first, &next, &err) == 0);
    CHECK(next == 6 && first[0] == 0 && first[1] == 2 && first[2] == 3 && first[3] == 6);

    /* restore, last bundle first */
    REQUIRE(precreate(root, &px.big) == 0);
    for (b = 2; b >= 0; b--) {
        run_ext(ext + first[b], first[b + 1] - first[b], px.bundle[b], px.blen[b], root, 1000, &r);
        CHECK(r.rc == 0 && r.bad == 0 && r.rep.calls == 0);
    }
    CHECK(content_ok(root, &px.big, px.bigc));
    CHECK(restored_ok(root, &px.w0, px.w0c) && restored_ok(root, &px.w1, px.w1c));
    CHECK(restored_ok(root, &px.w2, NULL));

    /* verify, bundles in order, one running SHA-256 for the file in pieces */
    md = new_sha256();
    for (size_t i = 0; i < next; i++)
        ext[i].md = ext[i].file->npieces ? md : NULL;
    for (b = 0; b < 3; b++) {
        run_ext(ext + first[b], first[b + 1] - first[b], px.bundle[b], px.blen[b], NULL, 0, &r);
        CHECK(r.rc == 0 && r.bad == 0 && r.rep.calls == 0);
        CHECK(r.good == (b == 0 ? 1u : b == 1 ? 0u : 3u));
    }
    EVP_MD_CTX_free(md);
    free(ext);
    free(first);
    pfix_free(&px);
}

const struct unit_test unit_tests[] = {
    {"good_all_slices", test_good_all_slices},
    {"verify_writes_nothing", test_verify_writes_nothing},
    {"modes_masked", test_modes_masked},
    {"links_never_followed", test_links_never_followed},
    {"flipped_byte", test_flipped_byte},
    {"wrong_digest_of_empty_file", test_wrong_digest_of_empty_file},
    {"short_content", test_short_content},
    {"short_before_trailing_empty", test_short_before_trailing_empty},
    {"long_content", test_long_content},
    {"empty_files_at_both_ends", test_empty_files_at_both_ends},
    {"offsets_must_follow", test_offsets_must_follow},
    {"restore_onto_existing_file", test_restore_onto_existing_file},
    {"missing_directory", test_missing_directory},
    {"pieces_restore_any_order", test_pieces_restore_any_order},
    {"pieces_restore_large", test_pieces_restore_large},
    {"pieces_restore_one_piece", test_pieces_restore_one_piece},
    {"pieces_restore_needs_created_file", test_pieces_restore_needs_created_file},
    {"pieces_short_and_long", test_pieces_short_and_long},
    {"pieces_verify_good", test_pieces_verify_good},
    {"pieces_verify_flipped_byte", test_pieces_verify_flipped_byte},
    {"extents", test_extents},
    {"extents_feed_splitters", test_extents_feed_splitters},
    {NULL, NULL},
};
