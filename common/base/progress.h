/*
 * progress.h - what long commands (basebackup create and restore) tell while they run, and the
 * one line they end with.
 *
 * - ws_progress_wanted: whether to show progress at all: --progress (1) always, --no-progress
 *   (0) never, neither (-1) when stderr is a terminal;
 * - a progress meter rewrites one line on a terminal ("done / total (pct), rate/s, ETA") at
 *   every update; on anything else (a log, a pipe) it writes whole lines, at most one per
 *   WS_PROGRESS_PLAIN_INTERVAL seconds and the final one always, so a log stays short and each
 *   line can be read alone: "progress: 12.0 MB / 40.0 MB (30%), 8.0 MB/s";
 * - ws_progress_summary writes the one closing line, whatever the meter did:
 *   "<head>: <a> <a_what>, <b> <b_what> (<b/a>%), <s> s, <a/s>/s" (the percentage only with
 *   ratio), e.g. "backup 20261207T230000Z complete: 1.2 GB read, 340 MB stored (28%), 14.2 s,
 *   86.0 MB/s".
 * Everything goes to stderr (stdout carries results only: create's id). One thread writes.
 */
#ifndef WS_PROGRESS_H
#define WS_PROGRESS_H

#include <stdint.h>

#define WS_PROGRESS_PLAIN_INTERVAL 1.0

int ws_progress_wanted(int option);

struct ws_progress {
    int tty;     /* stderr is a terminal */
    double t0;   /* monotonic start */
    double last; /* when the last plain line was written */
};

void ws_progress_start(struct ws_progress *p);
/* Shows done of total bytes; final ends the display (a newline on a terminal). */
void ws_progress_update(struct ws_progress *p, uint64_t done, uint64_t total, int final);

void ws_progress_summary(const char *head, uint64_t a, const char *a_what, uint64_t b,
                         const char *b_what, int ratio, double seconds);

#endif
