/*
 * io/ratelimit.h - max_rate: one token bucket that the threads of a command share, and the
 * pass-through sink that charges it (docs/design/max-rate.md).
 *
 * Guarantees:
 * - the bucket holds at most `burst` bytes (WS_RATELIMIT_BURST of a second at the rate, at least
 *   WS_RATELIMIT_BURST_MIN) and starts full; a charge of n bytes takes n from it, going into debt
 *   when it holds less, and ws_ratelimit_take returns only after the debt is paid at `rate`
 *   bytes per second. So from any moment t0, the bytes charged by the takes that returned by t
 *   are at most burst + rate * (t - t0), whatever the threads and the sizes of the charges;
 * - charges are serialised by a mutex: any number of threads may share one limiter; the wait
 *   (the clock's sleep) happens outside the mutex;
 * - ws_ratelimit_charge is the arithmetic alone: it records the charge at `now` and returns the
 *   seconds to wait (0 when none), so tests drive it with their own clock;
 * - the limiter also counts every byte charged (ws_ratelimit_bytes), rate or not: with rate 0 it
 *   never waits and only counts;
 * - the sink passes every write on unchanged after charging it; its finish and abort are the
 *   next stage's (sink.h); it does not own the limiter.
 * Errors: WS_ERR_INTERNAL "out of memory" from the constructors (the sink's frees next then).
 */
#ifndef WS_RATELIMIT_H
#define WS_RATELIMIT_H

#include <stdint.h>

#include "io/sink.h"

#define WS_RATELIMIT_BURST 0.1            /* seconds of the rate the bucket holds */
#define WS_RATELIMIT_BURST_MIN (64 << 10) /* bytes */

struct ws_ratelimit;

/* A clock for tests: seconds on a monotonic scale, and a wait; NULL: CLOCK_MONOTONIC, nanosleep. */
struct ws_ratelimit_clock {
    double (*now)(void *arg);
    void (*sleep)(void *arg, double seconds);
    void *arg;
};

/* rate in bytes per second, 0: unlimited (count only). The clock is copied (NULL: the real one). */
int ws_ratelimit_new(uint64_t rate, const struct ws_ratelimit_clock *clock,
                     struct ws_ratelimit **out, struct ws_error *err);
void ws_ratelimit_free(struct ws_ratelimit *rl);

double ws_ratelimit_charge(struct ws_ratelimit *rl, uint64_t n, double now);
/* Charges n bytes and waits out the debt (NULL rl: nothing). Any thread. */
void ws_ratelimit_take(struct ws_ratelimit *rl, uint64_t n);
/* Bytes charged so far. */
uint64_t ws_ratelimit_bytes(struct ws_ratelimit *rl);
uint64_t ws_ratelimit_rate(const struct ws_ratelimit *rl);

/* A sink that charges rl for every write, then passes it to next (owned, also on failure). */
int ws_ratelimit_sink_new(struct ws_ratelimit *rl, struct ws_sink *next, struct ws_sink **out,
                          struct ws_error *err);

#endif
