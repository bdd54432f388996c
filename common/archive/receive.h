/*
 * receive.h - wal-receive: WAL streamed from the server into the repository
 * (docs/design/receive.md).
 *
 * ws_receive_run() streams until *stop is set (the caller's signal handler sets it; the wait on
 * the server is interrupted by the signal, so handlers must be installed without SA_RESTART), then
 * flushes what it received (fsync'ed in the spool and stored as a chunk object) and returns 0.
 * Any failure of the server, the connection or the repository is logged, kept as the last error
 * of the status file, and followed by a new session after a backoff of 1 s doubling to 30 s. It
 * returns an error only when it cannot run at all: slot_name, the spool or the keys
 * (WS_ERR_CONFIG, one line naming the key), or a
 * server whose system identifier is not the repository cluster's (WS_ERR_FOREIGN).
 *
 * Files: the segment in progress is <spool_dir>/<cluster>/receive/<segment>.partial; a completed
 * segment is renamed to <segment> there and pushed with ws_archive_push_in (the WAL object
 * wal-push would store), then unlinked; at most receive_spool_segments of them wait for the
 * repository before reading from the server stops. The status file `status` in the same folder
 * (replaced atomically after every flush) holds "key = value" lines: slot, timeline, received,
 * flushed, stored (LSNs), pending_segments (completed segments waiting in the spool), updated
 * (UTC), last_error.
 *
 * ws_receive_slot(): creates (create = 1) or drops slot_name on the server of pg_conninfo.
 * ws_receive_status(): prints to out the slot, the server's position, the slot's restart point,
 * what the status file says and the lag in bytes and seconds; a server that cannot be reached is
 * said on a line, not a failure (the status file is still printed).
 */
#ifndef WS_RECEIVE_H
#define WS_RECEIVE_H

#include <signal.h>
#include <stddef.h>
#include <stdio.h>

#include "base/config.h"
#include "base/error.h"
#include "pg/repl.h"

int ws_receive_run(const struct ws_config *cfg, const struct ws_repl_ops *ops,
                   volatile sig_atomic_t *stop, struct ws_error *err);
int ws_receive_slot(const struct ws_config *cfg, const struct ws_repl_ops *ops, int create,
                    struct ws_error *err);
void ws_receive_status(const struct ws_config *cfg, const struct ws_repl_ops *ops, FILE *out);
/* The value of the line `key = value` of a status file's text into out ("" when absent). */
void ws_receive_status_field(const char *text, const char *key, char *out, size_t outsz);

#endif
