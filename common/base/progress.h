/*
 * progress.h - the progress line of long commands (basebackup create and restore --progress).
 *
 * Only for a terminal: callers check isatty(STDERR_FILENO) first; without one, walsafe prints
 * nothing but warnings, errors and results.
 */
#ifndef WS_PROGRESS_H
#define WS_PROGRESS_H

#include <stdint.h>

/* Rewrites the current stderr line: "done / total (pct), rate/s, ETA"; final ends the line. */
void ws_progress_line(uint64_t done, uint64_t total, double elapsed, int final);

#endif
