/*
 * The delta extent reader (blockmap.h, repo/delta.c): well-formed extents (no block, a partial
 * last block, every block) fed in slices from 1 byte to all at once hand every block's bytes at
 * its file offset and end with the file size; every malformed extent (short header, a count too
 * large for the length or for the file, block numbers not increasing or past the file's end,
 * trailing bytes, a length that the header does not make, truncated) is WS_ERR_CORRUPT naming
 * the file; a callback's error ends the feed with that error. Through the bundle splitter
 * (bundle.h): a delta extent between two whole files, picked out of the bundle by a sparse
 * splitter, rewrites its blocks in the existing file and cuts it to its size (the other files are
 * not written); a damaged one fails the restore naming the file and is reported once in verify
 * mode; a splitter that is not sparse still refuses a bundle with files it was not given.
 */
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "repo/blockmap.h"
#include "repo/bundle.h"
#include "fixture.h"
#include "unit.h"

#define BS 64u /* block size of these tests: small, so that extents stay small */

struct extent {
    uint8_t buf[4096];
    size_t len;
};

static void put_be(uint8_t *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

/* An extent of a file of `size` bytes holding blocks[0..n) of `file` (the new version). */
static void make_extent(struct extent *e, uint64_t size, const uint32_t *blocks, uint32_t n,
                        const uint8_t *file)
{
    e->len = 0;
    put_be(e->buf, size, 8);
    put_be(e->buf + 8, n, 4);
    e->len = WS_DELTA_HEADER;
    for (uint32_t i = 0; i < n; i++, e->len += 4)
        put_be(e->buf + e->len, blocks[i], 4);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t off = (uint64_t)blocks[i] * BS, k = size - off < BS ? size - off : BS;
        memcpy(e->buf + e->len, file + off, (size_t)k);
        e->len += (size_t)k;
    }
}

struct target {
    uint8_t data[1024];
    uint64_t last_end; /* blocks' bytes come in file order */
    int fail_at;       /* a call number that fails (0: none) */
    int calls;
};

static int on_block(void *arg, uint64_t off, const uint8_t *p, size_t n, struct ws_error *err)
{
    struct target *t = arg;

    if (++t->calls == t->fail_at)
        return ws_error_set(err, WS_ERR_IO, "injected write failure");
    if (off < t->last_end || off + n > sizeof(t->data))
        return ws_error_set(err, WS_ERR_INTERNAL, "block out of order or range");
    memcpy(t->data + off, p, n);
    t->last_end = off + n;
    return 0;
}

/* Feeds e in slices of `slice` bytes (the declared length `length`); returns the first error. */
static int run(const struct extent *e, uint64_t length, size_t slice, struct target *t,
               uint64_t *size, struct ws_error *err)
{
    struct ws_delta_reader r;
    int rc = 0;

    ws_delta_reader_init(&r, BS, length, "base/5/16384");
    r.block = on_block;
    r.arg = t;
    for (size_t done = 0; rc == 0 && done < e->len; done += slice)
        rc = ws_delta_reader_feed(&r, e->buf + done, e->len - done < slice ? e->len - done : slice,
                                  err);
    if (rc == 0)
        rc = ws_delta_reader_end(&r, size, err);
    ws_delta_reader_free(&r);
    return rc;
}

static void roundtrip_case(uint64_t size, const uint32_t *blocks, uint32_t n)
{
    static const size_t slices[] = {1, 3, 4, 7, 12, 63, 64, 65, 4096};
    uint8_t file[1024], old[1024];

    unit_random(file, sizeof(file), (uint32_t)size + n);
    unit_random(old, sizeof(old), 99);
    for (size_t s = 0; s < sizeof(slices) / sizeof(slices[0]); s++) {
        struct extent e;
        struct target t = {0};
        struct ws_error err = {0};
        uint64_t got = 0;
        make_extent(&e, size, blocks, n, file);
        memcpy(t.data, old, sizeof(old));
        REQUIRE(run(&e, e.len, slices[s], &t, &got, &err) == 0);
        CHECK(got == size);
        for (uint64_t b = 0; b < ws_blockmap_blocks(size, BS); b++) {
            int in = 0;
            uint64_t k = size - b * BS < BS ? size - b * BS : BS;
            for (uint32_t i = 0; i < n; i++)
                in |= blocks[i] == b;
            CHECK(memcmp(t.data + b * BS, in ? file + b * BS : old + b * BS, (size_t)k) == 0);
        }
    }
}

static void test_wellformed(void)
{
    static const uint32_t some[] = {0, 2, 5}, last[] = {1, 9}, all[] = {0, 1, 2, 3};

    roundtrip_case(10 * BS, NULL, 0);
    roundtrip_case(0, NULL, 0);
    roundtrip_case(10 * BS, some, 3);
    roundtrip_case(9 * BS + 17, last, 2); /* the last block is partial */
    roundtrip_case(4 * BS, all, 4);
    roundtrip_case(3 * BS + 1, all, 4);
}

/* e as made, then damaged by `damage`, fed whole with declared length e.len + extra. */
static void expect_corrupt(const struct extent *e, uint64_t length, size_t slice, const char *why)
{
    struct target t = {0};
    struct ws_error err = {0};
    uint64_t size;
    int rc = run(e, length, slice, &t, &size, &err);

    CHECK(rc == WS_ERR_CORRUPT);
    if (rc != WS_ERR_CORRUPT || !strstr(err.msg, "\"base/5/16384\"") || !strstr(err.msg, why)) {
        fprintf(stderr, "    want \"%s\", got: %s\n", why, err.msg);
        unit_fail(__FILE__, __LINE__, why);
    }
}

static void test_malformed(void)
{
    static const uint32_t two[] = {1, 3}, same[] = {2, 2}, down[] = {3, 1}, past[] = {0, 10};
    uint8_t file[1024];
    struct extent e;

    unit_random(file, sizeof(file), 7);
    for (size_t slice = 1; slice <= 4096; slice = slice * 5 + 1) {
        /* short header: the extent's length cannot hold one */
        make_extent(&e, 10 * BS, NULL, 0, file);
        e.len = 7;
        expect_corrupt(&e, 7, slice, "shorter than its header");
        /* a count too large for the length */
        make_extent(&e, 100000 * BS, two, 2, file);
        put_be(e.buf + 8, 1000, 4);
        expect_corrupt(&e, e.len, slice, "too large for the extent's length");
        /* more blocks than the file has */
        make_extent(&e, 2 * BS, NULL, 0, file);
        put_be(e.buf + 8, 3, 4);
        e.len = WS_DELTA_HEADER + 12 + 2 * BS;
        expect_corrupt(&e, e.len, slice, "more blocks than the file has");
        /* block numbers not increasing: equal, then decreasing */
        make_extent(&e, 10 * BS, two, 2, file);
        put_be(e.buf + WS_DELTA_HEADER, same[0], 4);
        put_be(e.buf + WS_DELTA_HEADER + 4, same[1], 4);
        expect_corrupt(&e, e.len, slice, "not increasing");
        make_extent(&e, 10 * BS, two, 2, file);
        put_be(e.buf + WS_DELTA_HEADER, down[0], 4);
        put_be(e.buf + WS_DELTA_HEADER + 4, down[1], 4);
        expect_corrupt(&e, e.len, slice, "not increasing");
        /* a block past the file's end */
        make_extent(&e, 10 * BS, two, 2, file);
        put_be(e.buf + WS_DELTA_HEADER + 4, past[1], 4);
        expect_corrupt(&e, e.len, slice, "past the end of the file");
        /* trailing bytes: more content than the declared length */
        make_extent(&e, 10 * BS, two, 2, file);
        e.len += 5;
        expect_corrupt(&e, e.len - 5, slice, "trailing bytes");
        /* a declared length the header and numbers do not make (longer, shorter, no blocks) */
        make_extent(&e, 10 * BS, two, 2, file);
        expect_corrupt(&e, e.len + 5, slice, "length differs");
        expect_corrupt(&e, e.len - 5, slice, ""); /* or "trailing bytes", by slice */
        make_extent(&e, 10 * BS, NULL, 0, file);
        expect_corrupt(&e, e.len + 1, slice, "length differs");
        /* truncated: the content stops before the declared length */
        make_extent(&e, 10 * BS, two, 2, file);
        e.len -= 3;
        expect_corrupt(&e, e.len + 3, slice, "truncated");
        e.len = 5;
        expect_corrupt(&e, WS_DELTA_HEADER, slice, "truncated");
    }
}

static void test_callback_error(void)
{
    static const uint32_t two[] = {1, 3};
    uint8_t file[1024];
    struct extent e;
    struct target t = {0};
    struct ws_error err = {0};
    uint64_t size;

    unit_random(file, sizeof(file), 3);
    make_extent(&e, 10 * BS, two, 2, file);
    t.fail_at = 2;
    CHECK(run(&e, e.len, 16, &t, &size, &err) == WS_ERR_IO);
    CHECK(strstr(err.msg, "injected") != NULL);
}

/* ---- through the bundle splitter ---------------------------------------------------------- */

struct bundle_case {
    uint8_t content[4096]; /* A (100 bytes) | delta extent of B | C (50 bytes) */
    size_t len;
    struct ws_bfile f[3];
    struct ws_bextent ext[3];
    uint8_t newb[1024], oldb[1024];
    char dir[512];
    int problems;
    char problem[512];
};

static void on_problem(void *arg, const struct ws_bfile *f, const char *msg)
{
    struct bundle_case *bc = arg;

    bc->problems++;
    snprintf(bc->problem, sizeof(bc->problem), "%s: %s", f->path, msg);
}

/* B was 10 blocks (oldb) and is now 7 blocks and 5 bytes: blocks 1, 4 and 7 changed. */
static void bundle_case_init(struct bundle_case *bc, const char *tag)
{
    static const uint32_t blocks[] = {1, 4, 7};
    static const char *const names[] = {"a", "b", "c"};
    struct extent e;
    char p[600];

    memset(bc, 0, sizeof(*bc));
    unit_random(bc->oldb, sizeof(bc->oldb), 11);
    memcpy(bc->newb, bc->oldb, sizeof(bc->newb));
    unit_random(bc->newb + 1 * BS, BS, 12);
    unit_random(bc->newb + 4 * BS, BS, 13);
    unit_random(bc->newb + 7 * BS, 5, 14);
    make_extent(&e, 7 * BS + 5, blocks, 3, bc->newb);
    unit_random(bc->content, 100, 15);
    memcpy(bc->content + 100, e.buf, e.len);
    unit_random(bc->content + 100 + e.len, 50, 16);
    bc->len = 100 + e.len + 50;
    for (int i = 0; i < 3; i++) {
        bc->f[i].path = (char *)names[i];
        bc->f[i].mode = 0600;
        bc->ext[i].file = &bc->f[i];
    }
    bc->f[0].size = bc->ext[0].length = 100;
    bc->f[1].kind = WS_BFILE_DELTA;
    bc->f[1].size = 7 * BS + 5;
    bc->f[1].length = bc->ext[1].length = e.len;
    bc->ext[1].delta = 1;
    bc->ext[1].offset = 100;
    bc->f[2].size = bc->ext[2].length = 50;
    bc->ext[2].offset = 100 + e.len;
    EVP_Digest(bc->content, 100, bc->f[0].sha256, NULL, EVP_sha256(), NULL);
    EVP_Digest(bc->content + 100 + e.len, 50, bc->f[2].sha256, NULL, EVP_sha256(), NULL);
    snprintf(bc->dir, sizeof(bc->dir), "%s/%s", unit_tmpdir(), tag);
    unit_mkdir(bc->dir);
    snprintf(p, sizeof(p), "%s/b", bc->dir);
    unit_write(p, bc->oldb, 10 * BS, 0600);
}

/* The case's bundle through a splitter for ext[0..n) (restore mode with restore set). */
static int split(struct bundle_case *bc, const struct ws_bextent *ext, size_t n, int sparse,
                 int restore, struct ws_error *err)
{
    struct ws_bundle_opts o = {0};
    struct ws_tree tree = {0};
    struct ws_sink *s = NULL;
    int rc;

    tree.fd = open(bc->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    tree.name = bc->dir;
    o.tree = restore ? &tree : NULL;
    o.block_size = BS;
    o.sparse = sparse;
    o.problem = on_problem;
    o.arg = bc;
    if ((rc = ws_bundle_splitter_new_ext(ext, n, &o, &s, err)) == 0) {
        for (size_t done = 0; rc == 0 && done < bc->len; done += 37)
            rc = ws_sink_write(s, bc->content + done, bc->len - done < 37 ? bc->len - done : 37,
                               err);
        if (rc == 0)
            rc = ws_sink_finish(s, err);
    }
    ws_sink_free(s);
    close(tree.fd);
    return rc;
}

/* A header that claims 2^32-1 blocks of a huge file, in an extent whose recorded length allows
 * them, then ends after two numbers: the reader holds what it read, never what the header
 * claims (16 GiB of block numbers: ASan refuses such an allocation). */
static void test_claimed_count(void)
{
    struct ws_delta_reader r;
    struct ws_error err = {0};
    uint8_t buf[WS_DELTA_HEADER + 8];
    uint64_t size = 0;

    put_be(buf, UINT64_C(1) << 50, 8);
    put_be(buf + 8, UINT32_MAX, 4);
    put_be(buf + 12, 1, 4);
    put_be(buf + 16, 2, 4);
    ws_delta_reader_init(&r, BS, UINT64_C(1) << 46, "base/5/16384");
    CHECK(ws_delta_reader_feed(&r, buf, WS_DELTA_HEADER, &err) == 0);
    CHECK(r.blocks == NULL); /* the header alone allocates nothing */
    CHECK(ws_delta_reader_feed(&r, buf + WS_DELTA_HEADER, 8, &err) == 0);
    CHECK(r.blocks != NULL && r.cap <= 1024);
    CHECK(ws_delta_reader_end(&r, &size, &err) == WS_ERR_CORRUPT);
    ws_delta_reader_free(&r);
}

static void test_splitter_delta(void)
{
    struct bundle_case bc;
    struct ws_error err = {0};
    char p[600];
    uint8_t *got = NULL;
    size_t len = 0;

    bundle_case_init(&bc, "split-delta");
    REQUIRE(split(&bc, &bc.ext[1], 1, 1, 1, &err) == 0);
    snprintf(p, sizeof(p), "%s/b", bc.dir);
    REQUIRE(unit_read(p, &got, &len) == 0);
    CHECK(len == 7 * BS + 5 && memcmp(got, bc.newb, len) == 0);
    free(got);
    CHECK(unit_entries(bc.dir) == 1); /* a and c not written */
    /* verify mode, the whole bundle: nothing wrong */
    CHECK(split(&bc, bc.ext, 3, 0, 0, &err) == 0 && bc.problems == 0);
    /* not sparse: a splitter given B only refuses the bundle */
    CHECK(split(&bc, &bc.ext[1], 1, 0, 0, &err) == WS_ERR_CORRUPT);
}

static void test_splitter_delta_damaged(void)
{
    struct bundle_case bc;
    struct ws_error err = {0};

    bundle_case_init(&bc, "split-delta-bad");
    put_be(bc.content + 100 + WS_DELTA_HEADER + 4, 0, 4); /* block numbers 1, 0, 7 */
    CHECK(split(&bc, &bc.ext[1], 1, 1, 1, &err) == WS_ERR_CORRUPT);
    CHECK(strstr(err.msg, "\"b\"") && strstr(err.msg, "not increasing"));
    bc.problems = 0;
    CHECK(split(&bc, bc.ext, 3, 0, 0, &err) == 0);
    CHECK(bc.problems == 1 && strstr(bc.problem, "not increasing"));
    /* a size that is not the record's */
    bundle_case_init(&bc, "split-delta-size");
    bc.f[1].size = 7 * BS + 6;
    CHECK(split(&bc, &bc.ext[1], 1, 1, 1, &err) == WS_ERR_CORRUPT);
    CHECK(strstr(err.msg, "the manifest says") != NULL);
}

const struct unit_test unit_tests[] = {
    {"wellformed", test_wellformed},
    {"malformed", test_malformed},
    {"callback_error", test_callback_error},
    {"claimed_count", test_claimed_count},
    {"splitter_delta", test_splitter_delta},
    {"splitter_delta_damaged", test_splitter_delta_damaged},
    {NULL, NULL},
};
