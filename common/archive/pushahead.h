/*
 * pushahead.h - wal-push's push-ahead: while PostgreSQL archives one file per call, the call for
 * X also has the next ready files archived by a background process, and each file so stored
 * leaves a record that lets PostgreSQL's own later call for it return after a local check.
 * Reasons and measurements: docs/design/pushahead.md.
 *
 * ws_pushahead_push(cfg, "pg_wal/X", ...) returns what ws_archive_push() would for X: 0 only when
 * X is durably in the repository. The spool and the background process are logged, never
 * returned, and never make X fail. Push-ahead applies when `parallel` > 1 and
 * pg_wal/archive_status/X.ready exists (the archiver's call); otherwise, with spool_dir = ''
 * (one INFO line) or a spool that spool.h's rule refuses (one WARNING), X is pushed alone.
 * With push-ahead the call locks X (waiting up to `timeout` s while another push holds it), then:
 *   - returns 0 with pushed_ahead when X's record is intact, names X, this `repo` and `cluster`,
 *     and X read now has the record's size, fingerprint (fingerprint.h) and, for segments, the
 *     system identifier of its page header. This check makes no storage request;
 *   - else pushes X itself (`retries`, a fresh storage handle per attempt), after removing a
 *     damaged record or one of this repo and cluster that does not match X (a WARNING);
 *   - either way starts the background process (ps: wal-push-ahead) unless one runs. It pushes
 *     the next ready files in the archiver's order, each locked before it is taken, one attempt
 *     each on `parallel` workers, and takes more for WS_PUSHAHEAD_PROCESS_SECONDS (on s3:// and
 *     sftp:// also files that become ready meanwhile, while the postmaster of its start runs).
 *     After it stopped on a storage failure, none starts for WS_PUSHAHEAD_OUTAGE_PAUSE s unless a
 *     call's own push succeeds first. Its workers together upload at most `max_rate` bytes per
 *     second (io/ratelimit.h); the call's own push of X is not limited.
 * A record is written (temp + rename, no fsync) only after its file's object is durable (stored,
 * or found stored with identical content), and removed once PostgreSQL has marked the file done
 * or after WS_PUSHAHEAD_RECORD_MAX_AGE s. archive_status is only ever read.
 *
 * The spool, <spool_dir>/<cluster>/: pushed/<name> the records; pushing/<name> the lock of a file
 * being pushed (ws_spool_lock); pushing/.batch flock()ed by the background process for its life,
 * .alive held shared for its life, .stopped its mark of a storage failure.
 * The record (0600, text, as ws_pushahead_record_format() writes it; format 1 is not read):
 *     walsafe push-ahead record 2
 *     name = 000000010000000A000000F3
 *     repo = /srv/walsafe               the `repo` setting
 *     cluster = main
 *     system_identifier = 7312345678901234567     0 for .history and .backup files
 *     size = 16777216
 *     sha256 = <64 hex>                 the object's content digest (the key's name is historical)
 *     fingerprint = <32 hex>            XXH3-128 of the content: what the check compares
 *     pushed_at = 1732300000            seconds since the epoch
 *     check = <64 hex>                  SHA-256 of all the lines above
 */
#ifndef WS_PUSHAHEAD_H
#define WS_PUSHAHEAD_H

#include <stddef.h>
#include <stdint.h>

#include "archive/archive.h"
#include "base/config.h"
#include "base/error.h"
#include "io/fingerprint.h"
#include "io/object.h"

#define WS_PUSHAHEAD_PER_WORKER 8 /* batch files per worker */
#define WS_PUSHAHEAD_MAX_BATCH 64
#define WS_PUSHAHEAD_OUTAGE_PAUSE 30    /* seconds without a new process after a storage failure */
#define WS_PUSHAHEAD_PROCESS_SECONDS 60 /* a push-ahead process takes no new files after this */
#define WS_PUSHAHEAD_RECORD_MAX_AGE (24 * 3600) /* seconds */
#define WS_PUSHAHEAD_REPO_MAX 4096
#define WS_PUSHAHEAD_RECORD_SIZE (WS_PUSHAHEAD_REPO_MAX + 1024) /* enough for any record */

struct ws_pushahead_record {
    char name[64];
    char repo[WS_PUSHAHEAD_REPO_MAX];
    char cluster[65];
    uint64_t system_identifier;
    uint64_t size;
    uint8_t content_digest[WS_OBJECT_DIGEST_SIZE]; /* the object's footer's (object.h) */
    uint8_t fingerprint[WS_FINGERPRINT_SIZE];      /* of the content: what the check compares */
    int64_t pushed_at;
};

struct ws_pushahead_result {
    struct ws_push_result push; /* X's push; with pushed_ahead, what X's verified record says */
    int pushed_ahead;           /* an earlier call stored X (its record verified): nothing pushed */
};

/* What wal-push does for wal_path: ws_archive_push() plus push-ahead when it applies. */
int ws_pushahead_push(const struct ws_config *cfg, const char *wal_path,
                      struct ws_pushahead_result *res, struct ws_error *err);

/* The archiver's order of ready files: .history files first, then by name. strcmp-like. */
int ws_pushahead_ready_cmp(const char *a, const char *b);

/*
 * Keeps the names that are WAL file names other than `current` (which may be NULL), sorts them
 * in the archiver's order and returns their count; the others are moved behind it (not freed:
 * names stays a permutation of its input).
 */
size_t ws_pushahead_order(char **names, size_t n, const char *current);

/* Batch size for `parallel` workers. */
size_t ws_pushahead_batch_max(int parallel);

/* The record's text into out; its length, or -1 when it does not fit or a field cannot be
 * written (a newline in repo, an invalid name). */
int ws_pushahead_record_format(const struct ws_pushahead_record *r, char *out, size_t outsz);
/* Parses a record; 0, or -1 for anything but a complete, intact record. */
int ws_pushahead_record_parse(const char *text, size_t len, struct ws_pushahead_record *r);

/*
 * The content binding: NULL when `rec` stands for the file described by `now` (name, repo,
 * cluster, system identifier, size, fingerprint; pushed_at is ignored), else a short reason for
 * messages ("the content differs", ...).
 */
const char *ws_pushahead_record_mismatch(const struct ws_pushahead_record *rec,
                                         const struct ws_pushahead_record *now);

/* The record of name's push (what record_write stores, pushed_at now); -1 when the push took no
 * XXH3-128 digest or a field does not fit: then nothing binds the content and no record is kept. */
int ws_pushahead_record_of(const struct ws_config *cfg, const char *name,
                           const struct ws_push_result *res, struct ws_pushahead_record *r);

/*
 * Checks rec against wal_path as it is now (read once: ws_pushahead_fingerprint_file) with this
 * cfg's repo and cluster: 1 when it matches (res filled as the push recorded it), 0 when it does
 * not (*why: the reason), -1 when the file cannot be read (the push will report why).
 */
int ws_pushahead_record_check(const struct ws_config *cfg, const struct ws_pushahead_record *rec,
                              const char *wal_path, struct ws_push_result *res, const char **why);

/* Reads path once: size, fingerprint (fingerprint.h) and, when `segment` is set and the file is
 * long enough, the system identifier of its long page header (else 0). Mapped where it can be
 * (ws_pushahead_fingerprint_mapped), else with read(). WS_ERR_IO names the file. */
int ws_pushahead_fingerprint_file(const char *path, int segment,
                                  uint8_t fingerprint[WS_FINGERPRINT_SIZE], uint64_t *size,
                                  uint64_t *system_identifier, struct ws_error *err);

/*
 * The same for the first len bytes of fd (its size as fstat gave it), hashed through a read-only
 * mapping. 0, or -1 when it could not map or the file's size is no longer len (the caller then
 * reads it). SIGBUS (a page past a shrunk file's end) is unblocked and caught while it runs, with
 * a process-wide handler: call it only while no other thread runs.
 */
int ws_pushahead_fingerprint_mapped(int fd, uint64_t len, int segment,
                                    uint8_t fingerprint[WS_FINGERPRINT_SIZE],
                                    uint64_t *system_identifier);

#endif
