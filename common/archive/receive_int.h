/*
 * receive_int.h - the receiver's state, shared by receive.c (sessions with the server) and
 * receive_spool.c (the spool, chunk objects and pushes). Not for other modules.
 *
 * Positions are LSNs: pos = received and written to the .partial file; synced = fsync'ed in the
 * spool; stored = durable in the repository (a chunk object or the segment's WAL object);
 * chunked = the first byte of the segment in progress that no chunk of this run holds.
 */
#ifndef WS_RECEIVE_INT_H
#define WS_RECEIVE_INT_H

#include <signal.h>
#include <stdint.h>

#include "archive/spool.h"
#include "base/config.h"
#include "base/error.h"
#include "io/key.h"
#include "pg/repl.h"
#include "pg/wal.h"
#include "repo/repo.h"

struct receiver {
    const struct ws_config *cfg;
    const struct ws_repl_ops *ops;
    volatile sig_atomic_t *stop;
    struct ws_spool sp;
    int dir; /* the spool's receive/ folder */
    struct ws_repo repo;
    struct ws_keyring kr;
    struct ws_repl *session;
    uint32_t seg_size;
    uint32_t tli;
    uint64_t pos, synced, stored, chunked;
    int fd;                            /* the .partial file, -1 when none */
    char segment[WS_WAL_NAME_LEN + 1]; /* the segment the .partial file holds */
    size_t pending;                    /* completed segments waiting in the spool */
    int full_logged;                   /* "the spool is full" said once */
    int status_failed;                 /* the last status file write failed (said once) */
    int64_t next_push_ms;              /* a full spool: the next push attempt (ws_mono_ms) */
    char last_error[sizeof(((struct ws_error *)0)->msg)];
};

int ws_rx_open_segment(struct receiver *r, struct ws_error *err);
int ws_rx_write(struct receiver *r, const uint8_t *data, size_t len, struct ws_error *err);
/* Pushes pending segments, fsyncs the .partial file and stores its new bytes as a chunk; a
 * repository failure is logged and kept as the last error (0). Errors: the spool's (WS_ERR_IO). */
int ws_rx_flush(struct receiver *r, struct ws_error *err);
void ws_rx_drop_partial(struct receiver *r);
/* Pushes the completed segments of the spool, oldest first, until one fails (logged). */
void ws_rx_push_pending(struct receiver *r);
/* name is a segment of tli (a base name): *end raised to the segment number after it. */
void ws_rx_segment_end(const char *name, uint32_t tli, uint32_t seg_size, uint64_t *end);
/* The segment number after the newest completed segment of tli in the spool, or 0. */
uint64_t ws_rx_spool_end(struct receiver *r, uint32_t tli);
/* Logs err and keeps it as the last error; the same message again is logged at debug level. */
void ws_rx_set_error(struct receiver *r, const struct ws_error *err);
void ws_rx_write_status(struct receiver *r);
/* Stores a WAL file's content (a .history file) through the spool and ws_archive_push_in. */
int ws_rx_push_content(struct receiver *r, const char *name, const char *data, size_t len,
                       struct ws_error *err);

#endif
