/* progress.c - the progress display and closing line of long commands (see progress.h). */
#include "base/progress.h"

#include <stdio.h>
#include <unistd.h>

#include "base/util.h"

int ws_progress_wanted(int option)
{
    return option > 0 || (option < 0 && isatty(STDERR_FILENO));
}

void ws_progress_start(struct ws_progress *p)
{
    p->tty = isatty(STDERR_FILENO);
    p->t0 = ws_now_monotonic();
    p->last = p->t0;
}

void ws_progress_update(struct ws_progress *p, uint64_t done, uint64_t total, int final)
{
    double now = ws_now_monotonic(), elapsed = now - p->t0;
    double rate = elapsed > 0 ? (double)done / elapsed : 0;
    char d[32], t[32], r[32], eta[32] = "";
    int pct = total ? (int)(100.0 * (double)done / (double)total) : 100;

    if (!p->tty && !final && now - p->last < WS_PROGRESS_PLAIN_INTERVAL)
        return;
    p->last = now;
    ws_format_bytes(done, d, sizeof(d));
    ws_format_bytes(total, t, sizeof(t));
    ws_format_bytes((uint64_t)rate, r, sizeof(r));
    if (!final && rate > 0 && total > done) {
        long s = (long)((double)(total - done) / rate);
        snprintf(eta, sizeof(eta), ", ETA %ldm%02lds", s / 60, s % 60);
    }
    if (p->tty)
        fprintf(stderr, "\r%s / %s (%d%%), %s/s%s\033[K%s", d, t, pct, r, eta, final ? "\n" : "");
    else
        fprintf(stderr, "progress: %s / %s (%d%%), %s/s%s\n", d, t, pct, r, eta);
    fflush(stderr);
}

void ws_progress_summary(const char *head, uint64_t a, const char *a_what, uint64_t b,
                         const char *b_what, int ratio, double seconds)
{
    char as[32], bs[32], rs[32], pct[16] = "";

    ws_format_bytes(a, as, sizeof(as));
    ws_format_bytes(b, bs, sizeof(bs));
    ws_format_bytes(seconds > 0 ? (uint64_t)((double)a / seconds) : a, rs, sizeof(rs));
    if (ratio && a)
        snprintf(pct, sizeof(pct), " (%d%%)", (int)(100.0 * (double)b / (double)a + 0.5));
    fprintf(stderr, "%s: %s %s, %s %s%s, %.1f s, %s/s\n", head, as, a_what, bs, b_what, pct,
            seconds, rs);
    fflush(stderr);
}
