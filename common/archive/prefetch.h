/*
 * prefetch.h - wal-fetch's prefetch: a background process keeps the next segments of the
 * requested timeline, fetched and verified, in a local spool, where wal-fetch's request for one
 * takes it with a rename. Reasons: docs/design/prefetch.md.
 *
 * ws_prefetch_serve(cfg, N, DEST_PATH) returns 1 when DEST_PATH now holds segment N, complete and
 * authenticated, else 0: the caller fetches from the repository as without prefetch (which alone
 * decides "not in the archive"). It never fails: a spool problem is logged (WARNING when prefetch
 * cannot work at all; spool_dir = '' one INFO line) and is a 0. It acts only when `parallel` > 1
 * and N is a segment name. It records N as `wanted`, starts the prefetcher when no process holds
 * `lock` (unless `wanted` already said N), then serves N: an entry bound to the stored object as
 * it is now is renamed (or, across file systems, copied) to DEST_PATH; other entries of N are
 * deleted; N in flight is waited for until it appears, fails, its prefetcher dies or it makes no
 * progress for `timeout` s.
 *
 * The spool: <spool_dir>/<cluster>/prefetch-<tag>/, tag = hex of the first 8 bytes of SHA-256 over
 * (repo, cluster, working directory), opened under spool.h's rule, private (0700), never in
 * DEST_PATH's directory either. Every file is reached relative to the opened directory:
 *   lock                     flock()ed by the prefetcher (ps: wal-prefetch) for its life; its PID
 *   wanted                   "<N>\n", the last request (replaced by rename; mtime: last request)
 *   .<N>.tmp / .<N>.ready    being written (in flight)
 *   <N>.<32 hex>             an entry: a verified copy of N's content
 * The 32 hex digits are the first 16 bytes of SHA-256 over the boot id, the repository location,
 * the object key, the keyring's key ids and the stored object's size, mtime and last
 * WS_PREFETCH_TAIL bytes (ws_prefetch_entry_name): an entry is served only for the object it was
 * fetched from, in this boot, with this keyring.
 *
 * The prefetcher (ws_prefetch_run), for the latest request N: keeps N+1 ... N+k
 * (ws_prefetch_limits) in the spool, fetched lowest first through the full object reader by its
 * workers, never N itself; content that is not exactly one segment is refused; it removes what
 * leaves [N, N+k], entries older than WS_PREFETCH_STALE_AGE s or from before the boot, and temp
 * files nobody writes; stops at the end of the archive until a new request; retries a failed
 * fetch after 1, 2, 4 ... 30 s; fetches only while the file system keeps min(5 %, 4 GiB) plus a
 * segment free. It exits, emptying and removing the spool, after WS_PREFETCH_IDLE_TIMEOUT s
 * without a request or when it cannot work (no cluster identity, say); keeping its entries, after
 * WS_PREFETCH_MAX_LIFE s; and when its spool or lock file is gone. The environment variable
 * WALSAFE_PREFETCH_IDLE_TIMEOUT=<1..300> sets the idle timeout (for tests). The other functions
 * are its pieces, exposed for tests: they return a ws_code and fill err.
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

/* What an entry name binds to (see above). */
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
