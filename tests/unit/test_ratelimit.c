/*
 * max_rate's limiter (io/ratelimit.h) on an injected clock, so nothing here sleeps or depends
 * on the machine's speed: the bytes that pass by a moment stay within burst + rate * elapsed;
 * a long transfer takes bytes/rate; idle time refills at most a burst; charges from many
 * threads are all accounted (none lost to a race); rate 0 counts without waiting; the sink
 * charges what it passes on, unchanged, and through the storage front-end both a put and a get
 * are charged.
 */
#include <pthread.h>
#include <string.h>

#include "io/ratelimit.h"
#include "storage/storage.h"
#include "unit.h"

/* A fake clock: sleep advances it. */
struct fake {
    double t;
    double slept;
};

static double fake_now(void *arg)
{
    return ((struct fake *)arg)->t;
}

static void fake_sleep(void *arg, double s)
{
    ((struct fake *)arg)->t += s;
    ((struct fake *)arg)->slept += s;
}

static struct ws_ratelimit *fake_limiter(uint64_t rate, struct fake *f)
{
    struct ws_ratelimit_clock c = {fake_now, fake_sleep, f};
    struct ws_ratelimit *rl = NULL;
    struct ws_error err = {0};

    memset(f, 0, sizeof(*f));
    f->t = 100;
    return ws_ratelimit_new(rate, &c, &rl, &err) == 0 ? rl : NULL;
}

/* a and b within a microsecond (each evaluated once) */
static int near(double a, double b)
{
    return a - b < 1e-6 && b - a < 1e-6;
}
#define NEAR(a, b) near((a), (b))

/* 40 MB in 64 kB pieces at 8 MB/s: (40 MB - burst) / rate seconds, and at every moment the bytes
 * passed stay within burst + rate * elapsed. */
static void test_long_transfer(void)
{
    const uint64_t rate = 8 << 20, total = 40 << 20, piece = 64 << 10;
    struct fake f;
    struct ws_ratelimit *rl = fake_limiter(rate, &f);
    double burst = (double)rate * WS_RATELIMIT_BURST;
    uint64_t done = 0;
    int within = 1;

    REQUIRE(rl);
    while (done < total) {
        ws_ratelimit_take(rl, piece);
        done += piece;
        if ((double)done > burst + (double)rate * (f.t - 100) + 1e-3)
            within = 0;
    }
    CHECK(within);
    CHECK(NEAR(f.t - 100, ((double)total - burst) / (double)rate));
    CHECK(ws_ratelimit_bytes(rl) == total);
    ws_ratelimit_free(rl);
}

/* One charge larger than the bucket passes at once and is paid for by waiting. */
static void test_debt(void)
{
    struct fake f;
    struct ws_ratelimit *rl = fake_limiter(1 << 20, &f);
    double burst = (double)(1 << 20) * WS_RATELIMIT_BURST;

    REQUIRE(rl);
    CHECK(NEAR(ws_ratelimit_charge(rl, 3 << 20, 100), (3.0 * (1 << 20) - burst) / (1 << 20)));
    /* a second charge at the same moment waits behind the first one's debt */
    CHECK(NEAR(ws_ratelimit_charge(rl, 1 << 20, 100), (4.0 * (1 << 20) - burst) / (1 << 20)));
    ws_ratelimit_free(rl);
}

/* Idle time refills the bucket, but never beyond a burst. */
static void test_idle_refills_one_burst(void)
{
    struct fake f;
    struct ws_ratelimit *rl = fake_limiter(1 << 20, &f);
    double burst = (double)(1 << 20) * WS_RATELIMIT_BURST;

    REQUIRE(rl);
    CHECK(ws_ratelimit_charge(rl, (uint64_t)burst, 100) == 0); /* the bucket starts full */
    CHECK(ws_ratelimit_charge(rl, 1, 100) > 0);
    /* an hour later: one burst is free again, not an hour's worth */
    CHECK(ws_ratelimit_charge(rl, (uint64_t)burst, 3700) == 0);
    CHECK(NEAR(ws_ratelimit_charge(rl, 1 << 20, 3700), 1.0));
    ws_ratelimit_free(rl);
}

/* A small rate has a bucket of WS_RATELIMIT_BURST_MIN; a clock that steps back refills nothing. */
static void test_small_rate_and_clock_order(void)
{
    struct fake f;
    struct ws_ratelimit *rl = fake_limiter(32 << 10, &f);

    REQUIRE(rl);
    CHECK(ws_ratelimit_charge(rl, WS_RATELIMIT_BURST_MIN, 100) == 0);
    CHECK(NEAR(ws_ratelimit_charge(rl, 32 << 10, 99), 1.0));
    CHECK(NEAR(ws_ratelimit_charge(rl, 0, 100), 1.0));
    CHECK(NEAR(ws_ratelimit_charge(rl, 0, 101), 0.0)); /* the debt of 1 s, paid by t = 101 */
    ws_ratelimit_free(rl);
}

static void test_unlimited_counts(void)
{
    struct fake f;
    struct ws_ratelimit *rl = fake_limiter(0, &f);

    REQUIRE(rl);
    for (int i = 0; i < 1000; i++)
        ws_ratelimit_take(rl, 1 << 20);
    CHECK(f.slept == 0);
    CHECK(ws_ratelimit_bytes(rl) == (uint64_t)1000 << 20);
    ws_ratelimit_take(NULL, 5); /* no limiter: nothing */
    ws_ratelimit_free(rl);
}

/* Threads charging one limiter at a frozen moment: the last charge's wait covers every byte
 * (a lost update would show as a smaller debt). */
struct shared {
    struct ws_ratelimit *rl;
    double max_wait;
    pthread_mutex_t lock;
};

static void *charger(void *arg)
{
    struct shared *s = arg;

    for (int i = 0; i < 2000; i++) {
        double w = ws_ratelimit_charge(s->rl, 1000, 100);
        pthread_mutex_lock(&s->lock);
        if (w > s->max_wait)
            s->max_wait = w;
        pthread_mutex_unlock(&s->lock);
    }
    return NULL;
}

static void test_threads(void)
{
    struct fake f;
    struct shared s = {fake_limiter(1 << 20, &f), 0, PTHREAD_MUTEX_INITIALIZER};
    pthread_t t[8];
    double burst = (double)(1 << 20) * WS_RATELIMIT_BURST;
    int i;

    REQUIRE(s.rl);
    for (i = 0; i < 8; i++)
        REQUIRE(pthread_create(&t[i], NULL, charger, &s) == 0);
    for (i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
    CHECK(ws_ratelimit_bytes(s.rl) == 8 * 2000 * 1000);
    CHECK(NEAR(s.max_wait, (8.0 * 2000 * 1000 - burst) / (1 << 20)));
    ws_ratelimit_free(s.rl);
}

/* The sink passes the bytes on unchanged and charges each write. */
static void test_sink(void)
{
    struct fake f;
    struct ws_ratelimit *rl = fake_limiter(1 << 20, &f);
    struct ws_sink *s = NULL;
    struct ws_error err = {0};
    uint8_t data[5000];
    const uint8_t *got;
    size_t len;

    REQUIRE(rl);
    unit_random(data, sizeof(data), 7);
    REQUIRE(ws_buffer_sink_new(1 << 20, &s, &err) == 0);
    REQUIRE(ws_ratelimit_sink_new(rl, s, &s, &err) == 0);
    CHECK(ws_sink_write(s, data, 1234, &err) == 0);
    CHECK(ws_sink_write(s, data + 1234, 0, &err) == 0);
    CHECK(ws_sink_write(s, data + 1234, sizeof(data) - 1234, &err) == 0);
    CHECK(ws_sink_finish(s, &err) == 0);
    got = ws_buffer_sink_data(s->next, &len);
    CHECK(len == sizeof(data) && memcmp(got, data, len) == 0);
    CHECK(ws_ratelimit_bytes(rl) == sizeof(data));
    ws_sink_free(s);
    ws_ratelimit_free(rl);
}

/* Through the storage front-end: a put and a get on a handle with a limiter are both charged,
 * and a handle without one is not. */
static void test_storage_charges(void)
{
    struct fake f;
    struct ws_ratelimit *rl = fake_limiter(1 << 20, &f);
    struct ws_storage *st = NULL;
    struct ws_sink *put = NULL, *buf = NULL;
    struct ws_error err = {0};
    uint8_t data[3000];

    REQUIRE(rl);
    unit_random(data, sizeof(data), 3);
    REQUIRE(ws_storage_mem_open(&st, &err) == 0);
    REQUIRE(ws_storage_open_put(st, "a/b", 0, &put, &err) == 0);
    CHECK(ws_sink_write(put, data, sizeof(data), &err) == 0);
    CHECK(ws_sink_finish(put, &err) == 0);
    ws_sink_free(put);
    CHECK(ws_ratelimit_bytes(rl) == 0);
    st->rate = rl;
    REQUIRE(ws_storage_open_put(st, "a/c", 0, &put, &err) == 0);
    CHECK(ws_sink_write(put, data, sizeof(data), &err) == 0);
    CHECK(ws_sink_finish(put, &err) == 0);
    ws_sink_free(put);
    CHECK(ws_ratelimit_bytes(rl) == sizeof(data));
    REQUIRE(ws_buffer_sink_new(1 << 20, &buf, &err) == 0);
    CHECK(ws_storage_get(st, "a/b", 0, WS_STORAGE_TO_END, buf, &err) == 0);
    CHECK(ws_ratelimit_bytes(rl) == 2 * sizeof(data));
    ws_sink_free(buf);
    ws_storage_close(st);
    ws_ratelimit_free(rl);
}

const struct unit_test unit_tests[] = {
    {"long transfer: bytes/rate, never above burst + rate*t", test_long_transfer},
    {"a charge beyond the bucket is a debt", test_debt},
    {"idle time refills one burst at most", test_idle_refills_one_burst},
    {"small rate, clock stepping back", test_small_rate_and_clock_order},
    {"rate 0 counts and never waits", test_unlimited_counts},
    {"threads: every charge accounted", test_threads},
    {"sink passes bytes on, charged", test_sink},
    {"storage put and get are charged", test_storage_charges},
    {NULL, NULL},
};
