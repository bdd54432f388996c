/*
 * File digests (io/filedigest.h): the tree digest against vectors made independently with the
 * openssl tool, and the same digest however the bytes are cut into updates and pipe runs, with 0
 * to WS_FDPIPE_THREADS threads; a pipe's side function sees every byte; teardown mid-run.
 *
 * The vectors (2026-12-07): data byte i = (i * 31 + 7) % 251, n = 2 MiB + 12345 bytes;
 *   split -b 1048576 -d data p.; for f in p.*; do openssl dgst -sha256 -binary $f >> outer; done
 *   printf '\x00\x00\x00\x00\x00\x20\x30\x39\x00\x10\x00\x00' >> outer; openssl dgst -sha256 outer
 * and for n = 0 the SHA-256 of the 12 bytes 00 x 8, 00 10 00 00 alone.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/util.h"
#include "io/filedigest.h"
#include "unit.h"

#define N (2 * WS_TREE_PIECE + 12345)
static const char TREE_N[] = "849b1877e81bb20fa08afa24f3fca381a9f9bcf58a3c490a9e8e318bacc2e5a2";
static const char TREE_0[] = "da1e758bead73354ccc8db47bde0fb99ee70fe3a07eb655486c9fce95ab68320";
static const char SHA_N[] = "6672858328151573611914347f89f5aa8d935b272ce622f82a1deccaae6d45b5";

static uint8_t *make_data(void)
{
    uint8_t *p = malloc(N);

    for (size_t i = 0; p && i < N; i++)
        p[i] = (uint8_t)((i * 31 + 7) % 251);
    return p;
}

static int hex_is(const uint8_t d[32], const char *want)
{
    char hex[65];

    ws_hex(d, 32, hex);
    return strcmp(hex, want) == 0;
}

static void test_vectors(void)
{
    struct ws_fdigest *d = NULL;
    struct ws_error err = {0};
    uint8_t *data = make_data(), out[32];

    REQUIRE(data);
    REQUIRE(ws_fdigest_new(WS_FDIGEST_TREE, &d, &err) == 0);
    CHECK(ws_fdigest_update(d, data, N, &err) == 0);
    CHECK(ws_fdigest_length(d) == N);
    CHECK(ws_fdigest_final(d, out, &err) == 0);
    CHECK(hex_is(out, TREE_N));
    CHECK(ws_fdigest_reset(d, WS_FDIGEST_TREE, &err) == 0);
    CHECK(ws_fdigest_final(d, out, &err) == 0);
    CHECK(hex_is(out, TREE_0));
    CHECK(ws_fdigest_reset(d, WS_FDIGEST_SHA256, &err) == 0);
    CHECK(ws_fdigest_update(d, data, N, &err) == 0);
    CHECK(ws_fdigest_final(d, out, &err) == 0);
    CHECK(hex_is(out, SHA_N));
    ws_fdigest_free(d);
    free(data);
}

struct counter {
    uint64_t bytes, sum;
};

static int count_side(void *ctx, const void *buf, size_t len)
{
    struct counter *c = ctx;
    const uint8_t *p = buf;

    for (size_t i = 0; i < len; i++)
        c->sum = c->sum * 31 + p[i];
    c->bytes += len;
    return 1;
}

/* The digest of data through runs that end at each of `cuts` (the last one at N), updates of
 * `step` bytes (0: changing sizes), `threads` threads; the side function's count and sum too. */
static int piped(int kind, const uint8_t *data, const size_t *cuts, size_t ncuts, size_t step,
                 int threads, uint8_t out[32], struct counter *c)
{
    struct ws_fdigest *d = NULL;
    struct ws_error err = {0};
    size_t at = 0, turn = 0;
    int rc = ws_fdigest_new(kind, &d, &err);

    for (size_t r = 0; rc == 0 && r < ncuts; r++) {
        struct ws_fdpipe *p = NULL;
        rc = ws_fdpipe_start(d, threads, cuts[r] - at, count_side, c, &p, &err);
        while (rc == 0 && at < cuts[r]) {
            size_t k = step ? step : (size_t)(1 + (turn++ * 7919) % 300000);
            if (k > cuts[r] - at)
                k = cuts[r] - at;
            rc = ws_fdpipe_update(p, data + at, k, &err);
            at += k;
        }
        if (rc == 0)
            rc = ws_fdpipe_finish(p, &err);
        ws_fdpipe_free(p);
    }
    if (rc == 0)
        rc = ws_fdigest_final(d, out, &err);
    ws_fdigest_free(d);
    return rc;
}

static void test_cuts_and_threads(void)
{
    uint8_t *data = make_data(), out[32];
    const size_t one[] = {N};
    const size_t mid[] = {5, WS_TREE_PIECE - 1, WS_TREE_PIECE, WS_TREE_PIECE + 77, N};
    const size_t steps[] = {0, 1 << 20, 4096, 100003};
    struct counter want = {0, 0};

    REQUIRE(data);
    count_side(&want, data, N);
    for (int t = 0; t <= WS_FDPIPE_THREADS + 1; t++)
        for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
            struct counter c = {0, 0};
            CHECK(piped(WS_FDIGEST_TREE, data, one, 1, steps[s], t, out, &c) == 0);
            CHECK(hex_is(out, TREE_N));
            CHECK(c.bytes == N && c.sum == want.sum);
            memset(&c, 0, sizeof(c));
            CHECK(piped(WS_FDIGEST_TREE, data, mid, 5, steps[s], t, out, &c) == 0);
            CHECK(hex_is(out, TREE_N));
            CHECK(c.bytes == N && c.sum == want.sum);
            memset(&c, 0, sizeof(c));
            CHECK(piped(WS_FDIGEST_SHA256, data, mid, 5, steps[s], t, out, &c) == 0);
            CHECK(hex_is(out, SHA_N));
            CHECK(c.bytes == N && c.sum == want.sum);
        }
    /* the tree digest differs from the SHA-256 and with the length */
    {
        struct counter c = {0, 0};
        const size_t shorter[] = {N - 1};
        CHECK(piped(WS_FDIGEST_TREE, data, shorter, 1, 0, 2, out, &c) == 0);
        CHECK(!hex_is(out, TREE_N));
    }
    free(data);
}

static void test_free_mid_run(void)
{
    uint8_t *data = make_data();
    struct ws_fdigest *d = NULL;
    struct ws_fdpipe *p = NULL;
    struct ws_error err = {0};

    REQUIRE(data);
    REQUIRE(ws_fdigest_new(WS_FDIGEST_TREE, &d, &err) == 0);
    REQUIRE(ws_fdpipe_start(d, 3, N, NULL, NULL, &p, &err) == 0);
    CHECK(ws_fdpipe_update(p, data, N, &err) == 0);
    ws_fdpipe_free(p); /* pieces may still be queued or hashing */
    ws_fdigest_free(d);
    free(data);
}

/* The digest of data[0..N) with the first `prefix` bytes given by update and the rest read from
 * the file at path by ws_fdigest_read_fd up to `end`; *exact as it says. */
static int from_fd(int kind, const uint8_t *data, const char *path, size_t prefix, uint64_t end,
                   int threads, uint8_t out[32], int *exact)
{
    struct ws_fdigest *d = NULL;
    struct ws_error err = {0};
    uint8_t *buf = malloc(WS_TREE_PIECE);
    int fd = open(path, O_RDONLY), rc = -1;

    if (buf && fd >= 0 && ws_fdigest_new(kind, &d, &err) == 0 &&
        ws_fdigest_update(d, data, prefix, &err) == 0 &&
        ws_fdigest_read_fd(d, fd, end, threads, buf, path, exact, &err) == 0)
        rc = *exact ? ws_fdigest_final(d, out, &err) : 0;
    ws_fdigest_free(d);
    if (fd >= 0)
        close(fd);
    free(buf);
    return rc;
}

static void test_read_fd(void)
{
    uint8_t *data = make_data(), out[32];
    const size_t prefixes[] = {0, 5, WS_TREE_PIECE - 1, WS_TREE_PIECE, WS_TREE_PIECE + 77, N};
    char path[512], cut[512];
    int exact, fd;

    REQUIRE(data);
    snprintf(path, sizeof(path), "%s/data", unit_tmpdir());
    snprintf(cut, sizeof(cut), "%s/cut", unit_tmpdir());
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    REQUIRE(fd >= 0 && write(fd, data, N) == (ssize_t)N && close(fd) == 0);
    fd = open(cut, O_WRONLY | O_CREAT | O_TRUNC, 0600); /* ends inside the second piece */
    REQUIRE(fd >= 0 && write(fd, data, WS_TREE_PIECE + 100) == WS_TREE_PIECE + 100 &&
            close(fd) == 0);
    for (int t = 0; t <= WS_FDPIPE_THREADS + 1; t++)
        for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
            exact = 0;
            CHECK(from_fd(WS_FDIGEST_TREE, data, path, prefixes[i], N, t, out, &exact) == 0);
            CHECK(exact && hex_is(out, TREE_N));
            exact = 0;
            CHECK(from_fd(WS_FDIGEST_SHA256, data, path, prefixes[i], N, t, out, &exact) == 0);
            CHECK(exact && hex_is(out, SHA_N));
        }
    /* the file longer or shorter than the range: not exact */
    for (int t = 0; t <= 2; t++) {
        exact = 1;
        CHECK(from_fd(WS_FDIGEST_TREE, data, path, 0, N - 1, t, out, &exact) == 0 && !exact);
        exact = 1;
        CHECK(from_fd(WS_FDIGEST_TREE, data, cut, 0, N, t, out, &exact) == 0 && !exact);
        exact = 1;
        CHECK(from_fd(WS_FDIGEST_SHA256, data, cut, 0, N, t, out, &exact) == 0 && !exact);
    }
    free(data);
}

static void test_threshold(void)
{
    unsetenv("WALSAFE_TEST_TREE_MIN");
    CHECK(ws_tree_min() == WS_TREE_MIN_DEFAULT);
    CHECK(ws_digest_kind_for(WS_TREE_MIN_DEFAULT - 1) == WS_FDIGEST_SHA256);
    CHECK(ws_digest_kind_for(WS_TREE_MIN_DEFAULT) == WS_FDIGEST_TREE);
    setenv("WALSAFE_TEST_TREE_MIN", "4096", 1);
    CHECK(ws_digest_kind_for(4095) == WS_FDIGEST_SHA256);
    CHECK(ws_digest_kind_for(4096) == WS_FDIGEST_TREE);
    setenv("WALSAFE_TEST_TREE_MIN", "0", 1);
    CHECK(ws_tree_min() == WS_TREE_MIN_DEFAULT);
    setenv("WALSAFE_TEST_TREE_MIN", "12x", 1);
    CHECK(ws_tree_min() == WS_TREE_MIN_DEFAULT);
    unsetenv("WALSAFE_TEST_TREE_MIN");
}

const struct unit_test unit_tests[] = {
    {"tree digest and SHA-256 vectors (openssl)", test_vectors},
    {"same digest for every cut, run and thread count", test_cuts_and_threads},
    {"pipe freed in the middle of a run", test_free_mid_run},
    {"read from a file on threads", test_read_fd},
    {"threshold and its test setting", test_threshold},
    {NULL, NULL},
};
