/*
 * The bundle splitter (bundle.h) in verify mode (root NULL) and restore mode (a fresh directory):
 * files of awkward sizes back to back, fed in slices from 1 byte to all at once; damaged,
 * short and long content; empty files at both ends; offsets that do not follow; and a restore
 * onto a file that already exists.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bundle.h"
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

/* Feeds content[0..len) in slices of `slice` bytes (0: all at once), then finishes. */
static void run(const struct fixture *fx, const uint8_t *content, size_t len, const char *root,
                size_t slice, struct result *res)
{
    struct ws_bundle_opts o = {0};
    struct ws_sink *s = NULL;
    size_t done = 0;

    memset(res, 0, sizeof(*res));
    o.root = root;
    o.problem = on_problem;
    o.arg = &res->rep;
    if ((res->rc = ws_bundle_splitter_new(fx->fp, fx->n, &o, &s, &res->err)) != 0)
        return;
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
}

/* A fresh empty directory with base/1 in it. */
static const char *fresh_root(void)
{
    static char bufs[8][512];
    static int next;
    char *p = bufs[next++ % 8], sub[600];

    snprintf(p, 512, "%s/root.XXXXXX", unit_tmpdir());
    if (!mkdtemp(p)) {
        unit_fail(__FILE__, __LINE__, "mkdtemp");
        return p;
    }
    snprintf(sub, sizeof(sub), "%s/base", p);
    mkdir(sub, 0700);
    snprintf(sub, sizeof(sub), "%s/base/1", p);
    if (mkdir(sub, 0700) != 0)
        unit_fail(__FILE__, __LINE__, "mkdir base/1");
    return p;
}

/* 1 when root/path exists with exactly these bytes, mode and mtime. */
static int restored_ok(const char *root, const struct ws_bfile *f, const uint8_t *want)
{
    char path[700];
    struct stat st;
    uint8_t *buf;
    int fd, ok;

    snprintf(path, sizeof(path), "%s/%s", root, f->path);
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return 0;
    if ((uint32_t)(st.st_mode & 07777) != f->mode || st.st_mtim.tv_sec != f->mtime ||
        st.st_mtim.tv_nsec != 0 || (uint64_t)st.st_size != f->size)
        return 0;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return 0;
    buf = malloc(f->size + 1);
    ok = buf && read(fd, buf, f->size + 1) == (ssize_t)f->size &&
         (f->size == 0 || memcmp(buf, want, f->size) == 0);
    free(buf);
    close(fd);
    return ok;
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

static void test_chown(void)
{
    struct fixture fx;
    struct ws_bundle_opts o = {0};
    struct ws_sink *s = NULL;
    struct ws_error err = {0};
    const char *root = fresh_root();
    static const size_t sizes[] = {5, 0};

    fixture_init(&fx, sizes, 2, 3);
    o.root = root;
    o.chown_files = 1;
    o.uid = getuid();
    o.gid = getgid();
    REQUIRE(ws_bundle_splitter_new(fx.fp, fx.n, &o, &s, &err) == 0);
    CHECK(ws_sink_write(s, fx.content, fx.len, &err) == 0);
    CHECK(ws_sink_finish(s, &err) == 0);
    CHECK(ws_bundle_splitter_good(s) == 2);
    ws_sink_free(s);
    CHECK(restored_ok(root, &fx.f[0], fx.content));
    CHECK(restored_ok(root, &fx.f[1], fx.content));
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
    snprintf(root, sizeof(root), "%s/no-such-dir", unit_tmpdir());
    fixture_init(&fx, sizes, 1, 14);
    run(&fx, fx.content, fx.len, root, 0, &r);
    CHECK(r.rc == WS_ERR_IO && r.err.sys_errno == ENOENT);
    fixture_free(&fx);
}

const struct unit_test unit_tests[] = {
    {"good_all_slices", test_good_all_slices},
    {"verify_writes_nothing", test_verify_writes_nothing},
    {"chown", test_chown},
    {"flipped_byte", test_flipped_byte},
    {"wrong_digest_of_empty_file", test_wrong_digest_of_empty_file},
    {"short_content", test_short_content},
    {"short_before_trailing_empty", test_short_before_trailing_empty},
    {"long_content", test_long_content},
    {"empty_files_at_both_ends", test_empty_files_at_both_ends},
    {"offsets_must_follow", test_offsets_must_follow},
    {"restore_onto_existing_file", test_restore_onto_existing_file},
    {"missing_directory", test_missing_directory},
    {NULL, NULL},
};
