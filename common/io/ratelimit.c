/* io/ratelimit.c - max_rate's token bucket and its sink (see ratelimit.h). */
#include "io/ratelimit.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "base/util.h"

struct ws_ratelimit {
    uint64_t rate; /* bytes per second, 0: unlimited */
    double burst;  /* bytes */
    struct ws_ratelimit_clock clock;
    pthread_mutex_t lock; /* tokens, last */
    double tokens;        /* may be negative: a debt */
    double last;          /* when tokens was last refilled; < 0: never */
    atomic_uint_fast64_t bytes;
};

static double real_now(void *arg)
{
    (void)arg;
    return ws_now_monotonic();
}

static void real_sleep(void *arg, double s)
{
    struct timespec ts;

    (void)arg;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0)
        ; /* EINTR: sleep what is left */
}

int ws_ratelimit_new(uint64_t rate, const struct ws_ratelimit_clock *clock,
                     struct ws_ratelimit **out, struct ws_error *err)
{
    struct ws_ratelimit *rl = calloc(1, sizeof(*rl));

    *out = NULL;
    if (!rl)
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    rl->rate = rate;
    rl->burst = (double)rate * WS_RATELIMIT_BURST;
    if (rl->burst < WS_RATELIMIT_BURST_MIN)
        rl->burst = WS_RATELIMIT_BURST_MIN;
    rl->tokens = rl->burst;
    rl->last = -1;
    if (clock)
        rl->clock = *clock;
    else
        rl->clock = (struct ws_ratelimit_clock){real_now, real_sleep, NULL};
    pthread_mutex_init(&rl->lock, NULL);
    atomic_init(&rl->bytes, 0);
    *out = rl;
    return 0;
}

void ws_ratelimit_free(struct ws_ratelimit *rl)
{
    if (!rl)
        return;
    pthread_mutex_destroy(&rl->lock);
    free(rl);
}

double ws_ratelimit_charge(struct ws_ratelimit *rl, uint64_t n, double now)
{
    double wait = 0;

    atomic_fetch_add(&rl->bytes, n);
    if (!rl->rate)
        return 0;
    pthread_mutex_lock(&rl->lock);
    if (rl->last >= 0 && now > rl->last) {
        rl->tokens += (now - rl->last) * (double)rl->rate;
        if (rl->tokens > rl->burst)
            rl->tokens = rl->burst;
    }
    if (now > rl->last)
        rl->last = now;
    rl->tokens -= (double)n;
    if (rl->tokens < 0)
        wait = -rl->tokens / (double)rl->rate;
    pthread_mutex_unlock(&rl->lock);
    return wait;
}

void ws_ratelimit_take(struct ws_ratelimit *rl, uint64_t n)
{
    double wait;

    if (!rl)
        return;
    wait = ws_ratelimit_charge(rl, n, rl->clock.now(rl->clock.arg));
    if (wait > 0)
        rl->clock.sleep(rl->clock.arg, wait);
}

uint64_t ws_ratelimit_bytes(struct ws_ratelimit *rl)
{
    return atomic_load(&rl->bytes);
}

uint64_t ws_ratelimit_rate(const struct ws_ratelimit *rl)
{
    return rl->rate;
}

/* ---- the sink ---------------------------------------------------------------------------- */

struct rate_sink {
    struct ws_sink base;
    struct ws_ratelimit *rl;
};

static int rate_write(struct ws_sink *s, const void *buf, size_t len, struct ws_error *err)
{
    struct rate_sink *r = (struct rate_sink *)s;

    ws_ratelimit_take(r->rl, len);
    return ws_sink_write(s->next, buf, len, err);
}

static void rate_destroy(struct ws_sink *s)
{
    free(s);
}

static const struct ws_sink_ops rate_ops = {"ratelimit", rate_write, NULL, NULL, rate_destroy};

int ws_ratelimit_sink_new(struct ws_ratelimit *rl, struct ws_sink *next, struct ws_sink **out,
                          struct ws_error *err)
{
    struct rate_sink *r = calloc(1, sizeof(*r));

    *out = NULL;
    if (!r) {
        ws_sink_free(next);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    }
    r->base.ops = &rate_ops;
    r->base.next = next;
    r->rl = rl;
    *out = &r->base;
    return 0;
}
