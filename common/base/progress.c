/* progress.c - the progress line of long commands (see progress.h). */
#include "base/progress.h"

#include <stdio.h>
#include <time.h>

static void fmt_bytes(double b, char *out, size_t n)
{
    const char *u[] = {"B", "kB", "MB", "GB", "TB"};
    int i = 0;

    while (b >= 1024 && i < 4) {
        b /= 1024;
        i++;
    }
    snprintf(out, n, i ? "%.1f %s" : "%.0f %s", b, u[i]);
}

void ws_progress_line(uint64_t done, uint64_t total, double elapsed, int final)
{
    char d[32], t[32], r[32], eta[32] = "";
    double rate = elapsed > 0 ? (double)done / elapsed : 0;

    fmt_bytes((double)done, d, sizeof(d));
    fmt_bytes((double)total, t, sizeof(t));
    fmt_bytes(rate, r, sizeof(r));
    if (!final && rate > 0 && total > done) {
        long s = (long)((double)(total - done) / rate);
        snprintf(eta, sizeof(eta), ", ETA %ldm%02lds", s / 60, s % 60);
    }
    fprintf(stderr, "\r%s / %s (%d%%), %s/s%s\033[K%s", d, t,
            total ? (int)(100.0 * (double)done / (double)total) : 100, r, eta, final ? "\n" : "");
    fflush(stderr);
}
