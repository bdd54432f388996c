/*
 * prefetch.h - verified WAL prefetch for wal-fetch (restore_command).
 *
 * PostgreSQL asks restore_command for one segment at a time and replays it before asking for
 * the next, so a lone wal-fetch spends its whole life waiting on storage, decryption and zstd.
 * With `parallel` > 1, a request for segment N also makes sure that a background prefetcher
 * fetches N+1 ... N+k into a local spool, where the request for N+1 finds it and takes it with
 * one rename. Nothing about what wal-fetch promises changes (SPEC.md, "Exit status"): exit 0
 * only with the complete, authenticated file in DEST_PATH, 1 only for "not in the archive"
 * (always decided against the repository), 255 otherwise. The spool is a cache: every problem
 * with it means "fetch from the repository as without prefetch", never a failure.
 *
 * Where: <spool_dir>/<cluster>/prefetch-<tag>/, with tag = SHA-256(repository location,
 * cluster, data directory)[:8] in hex, the data directory being wal-fetch's working directory
 * (PostgreSQL runs restore_command there): two restores on one host never share a spool. It is
 * opened under the rule of spool.h, as push-ahead's: created 0700, owned by us with no access
 * for group or others, never a link, and neither it nor its parents may be foreign or open to
 * others; inside pg_wal, the data directory (a working directory holding PG_VERSION) or
 * DEST_PATH's directory it is refused. A refusal is one WARNING line and no prefetch;
 * `spool_dir = ''` turns prefetch off quietly. Every file in it is reached relative to the
 * opened directory.
 *
 *   lock                     flock()ed by the prefetcher ("wal-prefetch" in ps) for its whole
 *                            life; holds its PID
 *   wanted                   the segment PostgreSQL asked for last: "<WALNAME>\n", replaced by
 *                            rename for a new name, touched (mtime) for the same name
 *   .<WALNAME>.tmp / .ready  being written by the prefetcher (in flight)
 *   <WALNAME>.<32 hex>       a complete, verified copy of the segment's content
 *
 * Entry names bind content to the stored object. The 32 hex digits are the first 16 bytes of
 * SHA-256 over: the kernel's boot id, the repository location, the object key (cluster, name),
 * the key ids of the keyring, and the stored object's size, mtime and last 80 bytes (the
 * trailer: for encrypted objects the authenticated footer chunk, for unencrypted ones the
 * footer and the SHA-256 over header, name, payload and footer, so either pins the object and
 * the digest of its content). The prefetcher records size and tail as it streams the object
 * through the full reader, so the name describes exactly the bytes it verified. To serve N,
 * wal-fetch stats the object, reads its last 80 bytes (one small ranged read, no download),
 * computes the name and renames exactly that entry into DEST_PATH. Therefore an entry is never
 * served when:
 *   - it came from another repository, cluster or system, or from a repository that reused the
 *     name for other content (another object => other size/mtime/trailer), or the object was
 *     rewritten, removed or damaged at its end since it was prefetched (then the repository
 *     answers: a removed object is "not in the archive", a damaged one exits 255);
 *   - it was written before the last reboot (the spool is not fsynced: a crash may leave a
 *     renamed file without its data, and the boot id changes);
 *   - the keyring changed (the prefetcher might hold a key this wal-fetch no longer has);
 *   - it is another segment: names are exact; nothing is ever renamed across names.
 * Damage to the middle of an object after it was prefetched is not seen by that request: the
 * bytes served are the ones authenticated minutes before. Entries of the wrong binding are
 * deleted by the wal-fetch that finds them.
 *
 * The prefetcher is a detached process (double fork, setsid, stdin/stdout/stderr on
 * /dev/null, other inherited descriptors closed, log lines to log_file only), started by the
 * wal-fetch that finds the lock free and hands its flock over (no gap in which a second one
 * could start; whoever takes the lock checks it still names the file at its path). It keeps the
 * working directory (relative key or CA paths keep working). It:
 *   - loads the cluster identity (segment size), opens min(parallel, k) storage handles;
 *   - keeps N+1 ... N+k of the wanted segment N's timeline in the spool, k = min(2 * parallel,
 *     32, 1 GiB / segment size), at least 1, fetched lowest first by min(parallel, k) worker
 *     threads, each through storage get -> object reader (authentication, decryption, zstd,
 *     length against the authenticated footer) -> temp file; content that is not exactly one
 *     segment long is refused; the temp is renamed to the entry name only after all of it;
 *   - never fetches N itself (the foreground does that, or finds it in flight and waits);
 *   - removes every entry outside [N, N+k] of N's timeline (behind the newest request, other
 *     timelines after a switch, too far ahead after a restart from an earlier point), temp
 *     files of dead writers, and entries not in the current boot or older than 10 minutes;
 *     when it starts, it keeps an earlier prefetcher's entries only if their names still match
 *     the stored objects; it cancels running fetches that left the window;
 *   - stops at the first segment that is not in the archive (the end of the archive) and asks
 *     for it again only on a new request; a failed fetch (corrupt object, storage error) is
 *     logged, its entry simply never appears, and it is retried after 1, 2, 4 ... 30 s;
 *   - starts a fetch only while the spool's file system keeps min(5 %, 4 GiB) plus one segment
 *     free (pg_wal is often on the same file system and must never fill up because of us);
 *   - exits when no request came for 30 s, or when it cannot work (no cluster identity, say),
 *     and then empties the spool and removes it; after 5 minutes in any case (entries are
 *     kept; the next request starts a fresh prefetcher); or when its spool directory or lock
 *     file disappears.
 * WALSAFE_PREFETCH_IDLE_TIMEOUT=<seconds> (1..300) shortens or lengthens the idle timeout; it
 * exists for tests and is not a configuration key.
 *
 * The foreground (ws_prefetch_serve) for segment N, and only for real segment names (.history,
 * .partial and .backup files cost no spool work): records N in `wanted`, starts a prefetcher if
 * none holds the lock (unless `wanted` already said N: a standby probing the end of the archive
 * every few seconds keeps no process alive), then looks for N in the spool. No entry and
 * nothing in flight: return at once, the caller fetches as before. In flight: wait (inotify)
 * until the entry appears, the temp file disappears (failed), the prefetcher dies, or the temp
 * file did not grow for `timeout` seconds. Entry present: binding check as above, then
 * rename() into DEST_PATH (or a verified-length copy through a temp file beside DEST_PATH when
 * the spool is on another file system).
 *
 * Usage (wal-fetch, through ws_archive_fetch):
 *     if (ws_prefetch_serve(cfg, wal_name, dest_path))
 *         return 0;            // DEST_PATH holds the segment
 *     ... fetch from the repository ...
 *
 * Errors: ws_prefetch_serve never fails; it logs problems of the spool (WARNING when prefetch
 * cannot work at all, INFO otherwise) and returns 0. The other functions return a ws_code and
 * fill err; they are exposed for the unit tests.
 */
#ifndef WS_PREFETCH_H
#define WS_PREFETCH_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "archive/spool.h"
#include "base/config.h"
#include "base/error.h"
#include "io/key.h"
#include "pg/wal.h"

#define WS_PREFETCH_MAX_AHEAD 32
#define WS_PREFETCH_MAX_BYTES (UINT64_C(1) << 30)
#define WS_PREFETCH_TAIL 80 /* bytes of the stored object's end that the binding covers */
#define WS_PREFETCH_IDLE_TIMEOUT 30
#define WS_PREFETCH_MAX_LIFE 300
#define WS_PREFETCH_STALE_AGE 600
/* "<24-character name>.<32 hex>" */
#define WS_PREFETCH_ENTRY_LEN (WS_WAL_NAME_LEN + 1 + 32)
#define WS_PREFETCH_DIR_LEN 25 /* "prefetch-<16 hex>" */

struct ws_prefetch_opts {
    int idle_timeout; /* seconds without a request before the prefetcher exits */
    int max_life;     /* seconds the prefetcher lives at most */
    int spawn;        /* 0: never start a background prefetcher (unit tests run it in-process) */
};

/* The defaults, with WALSAFE_PREFETCH_IDLE_TIMEOUT applied. */
void ws_prefetch_default_opts(struct ws_prefetch_opts *o);

/* wal-fetch's entry point: 1 when dest_path now holds wal_name from the spool, else 0. */
int ws_prefetch_serve(const struct ws_config *cfg, const char *wal_name, const char *dest_path);
int ws_prefetch_serve_opts(const struct ws_config *cfg, const char *wal_name, const char *dest_path,
                           const struct ws_prefetch_opts *o);

/* ---- the pieces, exposed for tests ---- */

/* How far ahead (k) and with how many workers, for `parallel` and the segment size. */
void ws_prefetch_limits(int parallel, uint64_t seg_size, int *ahead, int *workers);

/* Segment `i` (1..) after `wanted` on its timeline into out; -1 if wanted is no segment name of
 * this size or the segment number would overflow. */
int ws_prefetch_next_name(const char *wanted, uint64_t seg_size, int i,
                          char out[WS_WAL_NAME_LEN + 1]);

/* What the prefetcher does with a spool file, given the wanted segment and k. */
enum ws_prefetch_verdict {
    WS_PREFETCH_KEEP = 0, /* an entry of [wanted, wanted + k] on wanted's timeline */
    WS_PREFETCH_REMOVE,   /* an entry outside it, or not ours to keep */
    WS_PREFETCH_TEMP,     /* a temp file (.<name>.tmp / .ready): removed unless in flight */
    WS_PREFETCH_OTHER,    /* lock, wanted and their temp files: left alone */
};
int ws_prefetch_classify(const char *file, const char *wanted, uint64_t seg_size, int ahead,
                         char name_out[WS_WAL_NAME_LEN + 1]);

/* What an entry name binds to (see the header comment). */
struct ws_prefetch_binding {
    const char *boot_id;
    const char *location; /* the repository location, as storage reports it */
    const char *key;      /* the object key */
    uint8_t keyring_fp[32];
    uint64_t size; /* stored object size */
    int64_t mtime; /* stored object mtime */
    const uint8_t *tail;
    size_t tail_len; /* min(WS_PREFETCH_TAIL, size) */
};
/* "<wal_name>.<32 hex>" into out[WS_PREFETCH_ENTRY_LEN + 1]. */
int ws_prefetch_entry_name(const char *wal_name, const struct ws_prefetch_binding *b,
                           char out[WS_PREFETCH_ENTRY_LEN + 1], struct ws_error *err);
/* SHA-256 over the key ids of a keyring, in order. */
void ws_prefetch_keyring_fp(const struct ws_keyring *kr, uint8_t out[32]);

/* The spool of this repository, cluster and working directory (spool.h): <spool_dir>/<cluster>/
 * prefetch-<tag>, checked against pg_wal, the data directory and dest_path's directory. */
struct ws_prefetch_spool {
    struct ws_spool sp; /* sp.sub[0]: prefetch-<tag> */
    char name[WS_PREFETCH_DIR_LEN + 1];
};
int ws_prefetch_spool_open(const struct ws_config *cfg, const char *dest_path,
                           struct ws_prefetch_spool *s, struct ws_error *err);
void ws_prefetch_spool_close(struct ws_prefetch_spool *s);

/*
 * The prefetcher's main loop in the calling process, until it is idle or old (see above).
 * lock_fd: the spool's lock file, flock()ed exclusively by the caller; it is closed on return.
 * kr: the keyring (not copied; must live until return). Used by the detached process and,
 * directly, by the unit tests.
 */
int ws_prefetch_run(const struct ws_config *cfg, const struct ws_keyring *kr,
                    const struct ws_prefetch_spool *sp, int lock_fd,
                    const struct ws_prefetch_opts *o, struct ws_error *err);

/* Takes the spool's lock without waiting: the fd, WS_ERR_EXISTS if another process holds it. */
int ws_prefetch_lock(const struct ws_prefetch_spool *sp, int *fd, struct ws_error *err);

#endif
