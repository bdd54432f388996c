/*
 * The hashing thread (io/hashpipe.h): the same SHA-256 as hashing in place, for every way of
 * cutting the input (single bytes, slot-sized and odd pieces, nothing at all), with and without
 * a thread, continuing a state; a failing update reported whether the producer is queueing or
 * waiting, and nothing hashed after it; teardown while the thread is inside an update.
 */
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/hashpipe.h"
#include "unit.h"

#define BIG (WS_HASHPIPE_MIN + 3 * WS_HASHPIPE_SLOT + 12345)

static void sha_direct(const uint8_t *p, size_t n, size_t skip, uint8_t out[32])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();

    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    EVP_DigestUpdate(md, p + skip, n - skip);
    EVP_DigestFinal_ex(md, out, NULL);
    EVP_MD_CTX_free(md);
}

/* SHA-256 of p[0..n) through a pipe (expect bytes announced), in pieces of `piece` bytes (0: a
 * changing size); prefix bytes hashed into the state before the pipe starts. */
static int sha_piped(const uint8_t *p, size_t n, size_t prefix, uint64_t expect, size_t piece,
                     uint8_t out[32])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    struct ws_hashpipe *hp = NULL;
    struct ws_error err = {0};
    size_t at = prefix, k, turn = 0;
    int rc;

    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    EVP_DigestUpdate(md, p, prefix);
    rc = ws_hashpipe_start(ws_hashpipe_evp, md, expect, &hp, &err);
    while (rc == 0 && at < n) {
        k = piece ? piece : (size_t)1 << (turn++ % 19);
        if (k > n - at)
            k = n - at;
        rc = ws_hashpipe_update(hp, p + at, k, &err);
        at += k;
    }
    if (rc == 0)
        rc = ws_hashpipe_finish(hp, &err);
    ws_hashpipe_free(hp);
    if (rc == 0)
        EVP_DigestFinal_ex(md, out, NULL);
    EVP_MD_CTX_free(md);
    return rc;
}

static void test_same_digest(void)
{
    static const size_t pieces[] = {0, 1, 4093, WS_HASHPIPE_SLOT, WS_HASHPIPE_SLOT + 1, 1u << 20};
    uint8_t *data = malloc(BIG), want[32], got[32];

    REQUIRE(data);
    unit_random(data, BIG, 17);
    sha_direct(data, BIG, 0, want);
    for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
        if (pieces[i] == 1)
            continue; /* below: one byte at a time over a shorter input */
        memset(got, 0, sizeof(got));
        CHECK(sha_piped(data, BIG, 0, BIG, pieces[i], got) == 0);
        CHECK(memcmp(got, want, 32) == 0);
        /* no thread: expect below the threshold, whatever is then given */
        memset(got, 0, sizeof(got));
        CHECK(sha_piped(data, BIG, 0, 0, pieces[i], got) == 0);
        CHECK(memcmp(got, want, 32) == 0);
    }
    /* single bytes across slot boundaries, threaded */
    sha_direct(data, 3 * WS_HASHPIPE_SLOT + 5, 0, want);
    CHECK(sha_piped(data, 3 * WS_HASHPIPE_SLOT + 5, 0, WS_HASHPIPE_MIN, 1, got) == 0);
    CHECK(memcmp(got, want, 32) == 0);
    free(data);
}

static void test_continue_and_empty(void)
{
    uint8_t *data = malloc(BIG), want[32], got[32];

    REQUIRE(data);
    unit_random(data, BIG, 5);
    /* a state that already holds a prefix goes on from there (restore_patch.c keeps one) */
    sha_direct(data, BIG, 0, want);
    CHECK(sha_piped(data, BIG, 777, BIG, 65536, got) == 0);
    CHECK(memcmp(got, want, 32) == 0);
    CHECK(sha_piped(data, BIG, 777, 0, 65536, got) == 0);
    CHECK(memcmp(got, want, 32) == 0);
    /* nothing given: the digest of nothing, threaded or not */
    sha_direct(data, 0, 0, want);
    CHECK(sha_piped(data, 0, 0, WS_HASHPIPE_MIN, 0, got) == 0);
    CHECK(memcmp(got, want, 32) == 0);
    CHECK(sha_piped(data, 0, 0, 0, 0, got) == 0);
    CHECK(memcmp(got, want, 32) == 0);
    free(data);
}

/* An update function that fails at call `fail_at` (1-based) and counts its calls. */
struct faulty {
    int fail_at;
    int calls;
};

static int faulty_update(void *ctx, const void *buf, size_t len)
{
    struct faulty *f = ctx;

    (void)buf;
    (void)len;
    return ++f->calls != f->fail_at;
}

/* Gives n bytes in 64 KiB pieces; the first error of update or finish. */
static int feed(struct ws_hashpipe *hp, size_t n, struct ws_error *err)
{
    static uint8_t chunk[65536];
    int rc = 0;

    for (size_t at = 0; rc == 0 && at < n; at += sizeof(chunk))
        rc = ws_hashpipe_update(hp, chunk, sizeof(chunk), err);
    return rc ? rc : ws_hashpipe_finish(hp, err);
}

static void test_failing_update(void)
{
    /* threaded: the failure of the first slot reaches the producer (queueing, or waiting for a
     * free slot: 64 slots are given, 4 fit), and nothing is hashed after it */
    for (int at = 1; at <= 3; at++) {
        struct faulty f = {at, 0};
        struct ws_hashpipe *hp = NULL;
        struct ws_error err = {0};
        REQUIRE(ws_hashpipe_start(faulty_update, &f, WS_HASHPIPE_MIN, &hp, &err) == 0);
        CHECK(feed(hp, 64 * WS_HASHPIPE_SLOT, &err) == WS_ERR_INTERNAL);
        CHECK(strstr(err.msg, "hash update failed") != NULL);
        ws_hashpipe_free(hp);
        CHECK(f.calls == at);
    }
    /* without a thread: at once, and never again */
    {
        struct faulty f = {2, 0};
        struct ws_hashpipe *hp = NULL;
        struct ws_error err = {0};
        REQUIRE(ws_hashpipe_start(faulty_update, &f, 100, &hp, &err) == 0);
        CHECK(ws_hashpipe_update(hp, "a", 1, &err) == 0);
        CHECK(ws_hashpipe_update(hp, "b", 1, &err) == WS_ERR_INTERNAL);
        CHECK(ws_hashpipe_update(hp, "c", 1, &err) == WS_ERR_INTERNAL);
        CHECK(ws_hashpipe_finish(hp, &err) == WS_ERR_INTERNAL);
        ws_hashpipe_free(hp);
        CHECK(f.calls == 2);
    }
    /* a failure in the last, partly filled slot shows at finish */
    {
        struct faulty f = {1, 0};
        struct ws_hashpipe *hp = NULL;
        struct ws_error err = {0};
        REQUIRE(ws_hashpipe_start(faulty_update, &f, WS_HASHPIPE_MIN, &hp, &err) == 0);
        CHECK(ws_hashpipe_update(hp, "abc", 3, &err) == 0);
        CHECK(ws_hashpipe_finish(hp, &err) == WS_ERR_INTERNAL);
        ws_hashpipe_free(hp);
        CHECK(f.calls == 1);
    }
}

/* An update function that, at its first call, says so and waits until it is let go. */
struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int entered, open, calls;
};

static int gated_update(void *ctx, const void *buf, size_t len)
{
    struct gate *g = ctx;

    (void)buf;
    (void)len;
    pthread_mutex_lock(&g->lock);
    g->calls++;
    g->entered = 1;
    pthread_cond_broadcast(&g->cond);
    while (!g->open)
        pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
    return 1;
}

static void *opener(void *arg)
{
    struct gate *g = arg;

    usleep(20 * 1000); /* let the main thread reach ws_hashpipe_free first, usually */
    pthread_mutex_lock(&g->lock);
    g->open = 1;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
    return NULL;
}

static void test_free_while_busy(void)
{
    struct gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0};
    static uint8_t data[WS_HASHPIPE_SLOTS * WS_HASHPIPE_SLOT];
    struct ws_hashpipe *hp = NULL;
    struct ws_error err = {0};
    pthread_t t;
    int calls;

    REQUIRE(ws_hashpipe_start(gated_update, &g, WS_HASHPIPE_MIN, &hp, &err) == 0);
    /* three slots queued (the first inside the update function), the last one partly filled */
    CHECK(ws_hashpipe_update(hp, data, sizeof(data) - 100, &err) == 0);
    pthread_mutex_lock(&g.lock);
    while (!g.entered)
        pthread_cond_wait(&g.cond, &g.lock);
    pthread_mutex_unlock(&g.lock);
    REQUIRE(pthread_create(&t, NULL, opener, &g) == 0);
    ws_hashpipe_free(hp); /* returns once the update in progress does; the rest is dropped */
    pthread_join(t, NULL);
    pthread_mutex_lock(&g.lock);
    calls = g.calls;
    pthread_mutex_unlock(&g.lock);
    CHECK(calls >= 1 && calls <= WS_HASHPIPE_SLOTS - 1);
}

static void test_free_unfinished(void)
{
    /* freed right after start, after updates without finish, after finish: no leak, no hang */
    uint8_t data[1000] = {0};
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    struct ws_hashpipe *hp = NULL;
    struct ws_error err = {0};

    REQUIRE(md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1);
    REQUIRE(ws_hashpipe_start(ws_hashpipe_evp, md, WS_HASHPIPE_MIN, &hp, &err) == 0);
    ws_hashpipe_free(hp);
    REQUIRE(ws_hashpipe_start(ws_hashpipe_evp, md, WS_HASHPIPE_MIN, &hp, &err) == 0);
    for (int i = 0; i < 1000; i++)
        CHECK(ws_hashpipe_update(hp, data, sizeof(data), &err) == 0);
    ws_hashpipe_free(hp);
    REQUIRE(ws_hashpipe_start(ws_hashpipe_evp, md, WS_HASHPIPE_MIN, &hp, &err) == 0);
    CHECK(ws_hashpipe_update(hp, data, sizeof(data), &err) == 0);
    CHECK(ws_hashpipe_finish(hp, &err) == 0);
    ws_hashpipe_free(hp);
    ws_hashpipe_free(NULL);
    EVP_MD_CTX_free(md);
}

const struct unit_test unit_tests[] = {
    {"same_digest", test_same_digest},         {"continue_and_empty", test_continue_and_empty},
    {"failing_update", test_failing_update},   {"free_while_busy", test_free_while_busy},
    {"free_unfinished", test_free_unfinished}, {NULL, NULL},
};
