/*
 * timeline.h - PostgreSQL's timeline history files (<TLI>.history, src/backend/access/transam/
 * timeline.c), as read back from a repository.
 *
 * A history file lists the ancestors of its timeline, oldest first, one line each:
 *
 *   <parent tli><TAB><switch LSN, X/X><TAB><reason>
 *
 * meaning: the line of history left timeline <parent tli> at <switch LSN>. Blank lines and lines
 * whose first non-blank character is '#' are comments; leading blanks are skipped, and fields are
 * separated by any run of spaces or tabs. The reason is free text and is not kept. Parent
 * timelines must be non-zero and strictly increasing (PostgreSQL refuses a file where they are
 * not, and so do we).
 */
#ifndef WS_PG_TIMELINE_H
#define WS_PG_TIMELINE_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

/* One line of a history file: the line left its ancestor `tli` at `end_lsn`. */
struct ws_timeline_switch {
    uint32_t tli;
    uint64_t end_lsn;
};

/*
 * Parses the text of a history file (len bytes, no terminator needed). On success *out is
 * malloc'ed (NULL when *n is 0; the caller frees it). Errors: WS_ERR_CORRUPT on a malformed line
 * (the message names `what` and the line number), WS_ERR_INTERNAL when out of memory; *out is
 * then NULL and *n 0.
 */
int ws_timeline_history_parse(const char *text, size_t len, const char *what,
                              struct ws_timeline_switch **out, size_t *n, struct ws_error *err);

#endif
