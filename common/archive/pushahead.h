/*
 * pushahead.h - push-ahead in wal-push: archive the backlog with `parallel` workers while
 * PostgreSQL calls archive_command one file at a time.
 *
 * PostgreSQL's archiver runs `wal-push pg_wal/X` for one ready file, waits, marks it done and
 * runs the next. When WAL is written faster than one process can compress, encrypt and store it,
 * pg_wal fills up. With `parallel` > 1 (the default on a machine with more than one CPU), the call
 * for X therefore also starts archiving the next ready files, and leaves a record of each in the
 * spool so that PostgreSQL's own later call for that file returns after a cheap check instead of
 * a push.
 *
 * What one call for X does (ws_pushahead_push):
 *   1. Applies only when `parallel` > 1 and pg_wal/archive_status/X.ready exists beside X (so the
 *      archiver runs us, with the data directory as working directory); otherwise it is
 *      ws_archive_push(). The spool is <spool_dir>/<cluster>/pushed (records) and .../pushing
 *      (lock files), opened under the rule of spool.h (created 0700 on first use; owner, mode,
 *      links and the data directory and pg_wal checked; all later work relative to the opened
 *      directories). A spool refused or unusable switches push-ahead off: one WARNING line,
 *      then X alone as without push-ahead. The spool never makes X fail. `spool_dir = ''` turns
 *      push-ahead off quietly (X alone, with `parallel` zstd threads as without push-ahead).
 *   2. Takes X's lock (below), waiting up to `timeout` seconds while a batch is pushing X.
 *   3. If a record for X exists, it is checked; when every check passes, the call returns 0
 *      without pushing (res->pushed_ahead). The checks:
 *        - the record parses and its own SHA-256 line matches (a torn or damaged record fails);
 *        - it names X, this `repo` and this `cluster`;
 *        - X is re-read now and fingerprinted (fingerprint.h: XXH3-128 of the whole content):
 *          size, fingerprint and (for segments) the system identifier in its page header equal
 *          the record's. The fingerprint was taken from the very bytes the push stored. This
 *          check is on PostgreSQL's critical path once per file: with SHA-256 it cost ~13 ms per
 *          16 MiB segment here, with XXH3-128 ~3.7 ms, most of it the read.
 *      Any failure removes the record (WARNING when it contradicts the file) and X is pushed
 *      normally, where the duplicate policy applies: identical content already stored is
 *      success, different content is refused (exit 1) and the stored copy kept. So a reused
 *      name, a restored cluster or a stale spool never turn into a false "archived": a record
 *      proves that this exact content was durably stored in this repository and cluster by a
 *      wal-push that had the same checks as without push-ahead (header, identity, duplicate
 *      policy), and it is written only after that store was durable.
 *      The check makes no storage request: on S3 a round trip, on SFTP a whole SSH session per
 *      call is what push-ahead exists to save. An object removed from the repository after it
 *      was stored is outside what any exit 0 can promise, with or without push-ahead; and a
 *      repository re-created under the same `repo` while records exist only misses segments
 *      completed before it was re-created, which no backup taken into it needs (its WAL starts
 *      after).
 *   4. Starts the push-ahead process (both after a verified record, to keep the next files
 *      coming, and before pushing X), unless one runs (it holds the `.batch` lock for its life):
 *      housekeeping first (records whose .ready is gone or older than a day, temp files of killed
 *      writers, abandoned lock files), then the first ready files in the archiver's order
 *      (.history files first, then by name, which is timeline then segment number, the order of
 *      PostgreSQL's pgarch.c), without X and without those that have a record or are locked,
 *      at most min(8 * parallel, 64). Each is locked here, then a detached process (fork,
 *      setsid, stdio on /dev/null: its lines go to log_file only) takes over the locks and
 *      pushes the files with `parallel` worker threads, each with its own storage handle (one
 *      session each on S3/SFTP) and one zstd thread per file, one attempt per file; a storage
 *      failure stops it, and then no new process starts for WS_PUSHAHEAD_OUTAGE_PAUSE seconds
 *      unless a call's own push succeeds first (the `.stopped` file). A worker that finds the
 *      queue empty looks for more ready files the same way (locked before they are queued; a file
 *      it failed is never taken again), for
 *      WS_PUSHAHEAD_PROCESS_SECONDS after the process started; the process exits when the queue
 *      is empty then, so its life is bounded (a later call starts the next one, with the
 *      configuration and keys of that moment). It holds `.alive` shared for its whole life
 *      (tests and benchmarks wait on it). PostgreSQL's next calls meet its files locked (in
 *      flight) and wait, or find their records.
 *      On a network repository (s3://, sftp://) the process starts even with nothing to push
 *      yet, and its workers, with the queue empty, wait for new .ready files (inotify on
 *      archive_status) instead of exiting, with their sessions open, for the rest of those
 *      WS_PUSHAHEAD_PROCESS_SECONDS, and only while the postmaster that ran at its start still
 *      runs (postmaster.pid is still the same file: stopping PostgreSQL ends the process within
 *      a second). A file that becomes ready alone is then locked by the process within a
 *      millisecond and pushed on an open session with the zstd threads the call would have used;
 *      PostgreSQL's call, which needs a fork, an exec and the configuration first, meets it
 *      locked, waits and finds its record. That saves each lone call its own connection: an SSH
 *      handshake and authentication (~35 ms on loopback), a TLS or TCP set-up and the identity
 *      read (S3). Measured (bench/wal.sh MODE=pushahead, trickle: 16 MiB segments made ready
 *      0.2 s apart, loopback servers, median call from .ready to exit): SFTP 60 ms and S3 57 ms
 *      against 45.5 ms for a local directory; with push-ahead off 117 ms and 66 ms. A local
 *      repository has no session to keep, and there the call pushes a lone file itself.
 *      Why a process of its own: PostgreSQL's call must re-read each file anyway, and with the
 *      batch inside the call that work and the call's start-up ran while the other cores idled;
 *      measured on 2 cores with a local repository, that made a backlog drain slower than
 *      without push-ahead (bench/wal.sh MODE=pushahead). A process per batch of 16 left the
 *      cores idle between batches.
 *   5. Otherwise (no valid record) pushes X itself, with `retries` and a fresh storage handle
 *      per attempt as without push-ahead (one zstd thread when a batch runs), and returns X's
 *      own status: a batch never changes it, and the batch's files are never reported by it.
 *   For every file durably stored (or already stored with identical content) by the batch or
 *   as X, a record is written with the file sink (temp, rename; no fsync: what a record claims
 *   was durable before it was written, and a record lost or torn by a crash only costs a second
 *   push that finds the identical copy). A record stays until PostgreSQL has marked its file done
 *   (housekeeping removes it then): removed at once, the push-ahead process could meet the
 *   file still .ready and push it a second time.
 *
 * The record, <spool_dir>/<cluster>/pushed/<name>, 0600, text (ws_pushahead_record_format):
 *     walsafe push-ahead record 2
 *     name = 000000010000000A000000F3
 *     repo = /srv/walsafe                 the `repo` setting as configured
 *     cluster = main
 *     system_identifier = 7312345678901234567       (0 for .history and .backup files)
 *     size = 16777216
 *     sha256 = <64 hex>                   the object's content digest (its footer's; the key's
 *                                         name is historical: WAL objects' is the XXH3-128
 *                                         fingerprint, zero-padded, object.h); informative
 *     fingerprint = <32 hex>              XXH3-128 of the same content (what step 3 compares)
 *     pushed_at = 1732300000              seconds since the epoch
 *     check = <64 hex>                    SHA-256 of the lines above
 * Records of format 1 (SHA-256 only) are not read: such a record counts as damaged, and the file
 * is pushed again, where the duplicate policy finds the identical copy.
 * It is written only after the object is durable, so a push killed at any point (SIGKILL
 * included) leaves no record for what it did not store: PostgreSQL's own call pushes that file.
 *
 * Two wal-push processes at once (a batch and PostgreSQL's call, an archiver restarted while an
 * orphaned wal-push still runs, an operator's manual run): each file being pushed is locked with
 * flock() on <spool_dir>/<cluster>/pushing/<name> (ws_spool_lock: the lock file is unlinked while
 * still locked, a locker checks that the name still names the inode it locked, so a lock is never
 * split; a lock file that is not the effective user's is never waited for).
 * A batch skips files locked by someone else; the call for X waits for X. Should two pushes of
 * one file still meet (a lock wait that timed out, a spool shared over NFS), the repository
 * decides: the second commit finds the name taken and compares digests, identical content is
 * success. Records are never trusted without the checks of step 3 in any case.
 *
 * PostgreSQL's archive_status files are only read, never created, renamed or removed.
 *
 * Error rules: ws_pushahead_push() returns what ws_archive_push() would for X (0 only when X is
 * durably in the repository); everything about the spool and the batch is logged, never
 * returned. The pure functions below are exposed for tests.
 *
 *     struct ws_push_result res;
 *     if (ws_pushahead_push(&cfg, "pg_wal/000000010000000A000000F3", &res, &err) != 0)
 *         ws_log_error(&err);
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

/* Reads path once: size, fingerprint (fingerprint.h) and, when `segment` is set and the file is
 * long enough, the system identifier of its long page header (else 0). Mapped where it can be
 * (ws_pushahead_fingerprint_mapped), else with read(). */
int ws_pushahead_fingerprint_file(const char *path, int segment,
                                  uint8_t fingerprint[WS_FINGERPRINT_SIZE], uint64_t *size,
                                  uint64_t *system_identifier, struct ws_error *err);

/*
 * The same for the first len bytes of fd (its size as fstat gave it), hashed through a read-only
 * mapping: the page cache's pages are hashed where they are. Copying a 16 MiB segment out with
 * read() cost ~6.7 ms of kernel time per call while push-ahead's workers kept both cores busy
 * (perf), four times the hashing; mapped, a 200-segment drain ran 14% faster. 0, or -1 when it
 * could not map or the file's size is no longer len: a page past the end raises SIGBUS, which
 * is unblocked and caught for the duration (the handler is process-wide: call it only while no
 * other thread runs, as PostgreSQL's call does before it starts anything), and a file that
 * shrank within its last page (read as zeros there) is caught by an fstat afterwards.
 */
int ws_pushahead_fingerprint_mapped(int fd, uint64_t len, int segment,
                                    uint8_t fingerprint[WS_FINGERPRINT_SIZE],
                                    uint64_t *system_identifier);

#endif
