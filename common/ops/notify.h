/*
 * notify.h - notify_command: after basebackup create, verify and drill, logicalbackup create and
 * verify, and wal-prune (any program's command may: one call), the command's main() hands its
 * outcome to ws_notify(), which
 * runs notify_command through `/bin/sh -c` (as cron runs a job: it is the operator's own command)
 * with one JSON document on stdin:
 *
 *   {"event": "basebackup create", "cluster": "main", "id": "20261207T230000Z" | null,
 *    "status": "success" | "failure", "bytes": N | null, "stored_bytes": N | null,
 *    "duration_seconds": 12.345, "error": "one line" | null, "host": "db1",
 *    "time": "2026-12-07T23:00:12Z"}
 *
 * The document holds what the event struct gives and the host and time, nothing of the
 * configuration: no secret can reach it (error lines never hold one, log.h). The notifier runs
 * in a process group of its own, stdin a memory file holding the document, stdout to our
 * stderr; after notify_timeout seconds the whole group is killed (SIGKILL). Its failure (exit
 * status, signal, timeout, cannot start) is one WARNING line; nothing here changes the caller's
 * exit status, and nothing is run when notify_command is unset. Installs no signal handler.
 */
#ifndef WS_OPS_NOTIFY_H
#define WS_OPS_NOTIFY_H

#include <stdint.h>
#include <stdio.h>

#include "base/config.h"
#include "base/error.h"

struct ws_notify_event {
    const char *event; /* "basebackup create", "wal-prune", ... */
    const char *id;    /* the backup, or NULL */
    int ok;            /* the command succeeded */
    int has_sizes;     /* bytes and stored_bytes are known */
    uint64_t bytes, stored_bytes;
    double seconds;    /* how long the command took */
    const char *error; /* its error line when it failed, or NULL */
};

/* The document above, one line ending in '\n', into f (host and now given, for tests). */
void ws_notify_json(FILE *f, const char *cluster, const struct ws_notify_event *ev,
                    const char *host, int64_t now);

/* Runs notify_command with the document of ev (nothing when it is unset); see above. */
void ws_notify(const struct ws_config *cfg, const struct ws_notify_event *ev);
/* ws_notify for a command that started at t0 (ws_now_monotonic) and returned rc with err: sets
 * ev's ok, error (err's message when rc != 0) and seconds (until now) first. */
void ws_notify_outcome(const struct ws_config *cfg, struct ws_notify_event *ev, double t0, int rc,
                       const struct ws_error *err);

#endif
