/*
 * storage/storage.h - a repository's storage: a flat namespace of objects under relative keys,
 * one front-end over the drivers posix, s3 and sftp (opened from the configuration through
 * storage/params.h) and mem (the unit tests' own, tests/unit/storage_mem.c).
 *
 * Keys are relative, '/'-separated, made of [A-Za-z0-9._-] components, never "." or "..", never
 * starting with ".walsafe-tmp" (reserved for temp files); every entry point validates them and
 * refuses an invalid one with WS_ERR_INTERNAL (a caller's bug).
 *
 * Writing: ws_storage_open_put() returns a sink. Nothing is visible under the key until the
 * sink's finish succeeds, and then it is durable. Without WS_PUT_REPLACE, finish fails with
 * WS_ERR_EXISTS if the key exists and leaves the stored object untouched. Freeing a sink that
 * did not finish removes everything it wrote.
 *
 * Errors: WS_ERR_NOT_FOUND means the storage answered and holds no such object; anything that
 * prevents an answer is WS_ERR_STORAGE, with err->retryable set when a later try may succeed.
 * Messages name the repository (s->location) and the key, never a credential.
 *
 * Capabilities: s->caps says what kind of storage a handle is (WS_STORAGE_*, below), and
 * ws_storage_caps_of() says it of a repository URL before anything is opened, so no caller
 * needs to look at URL schemes.
 *
 * A handle is used by one thread at a time; any number may be open on one repository (the
 * workers of wal-push, wal-fetch and basebackup each open their own). ws_storage_close()
 * frees it.
 *
 *     struct ws_sink *put;
 *     if (ws_storage_open_put(st, "main/wal/x", 0, &put, err) == 0) { write...; finish; }
 *     ws_sink_free(put);
 */
#ifndef WS_STORAGE_H
#define WS_STORAGE_H

#include <stdint.h>

#include "base/error.h"
#include "io/ratelimit.h"
#include "io/sink.h"

struct ws_config;

#define WS_STORAGE_TO_END UINT64_MAX
#define WS_PUT_REPLACE 0x1

/* Capabilities (s->caps, ws_storage_caps_of). */
enum {
    /* Requests are network round trips, and an open handle keeps its session: a process that
     * keeps one open saves the set-up of each request. */
    WS_STORAGE_REMOTE = 0x1,
    WS_STORAGE_DIRS = 0x2,         /* objects are files in directories, which stay when emptied */
    WS_STORAGE_REMOVE_DIR = 0x4,   /* ws_storage_remove_dir() removes empty directories */
    WS_STORAGE_CLEAN_TEMP = 0x8,   /* ws_storage_clean_temp() finds the files of killed uploads */
    WS_STORAGE_REMOVE_MANY = 0x10, /* ws_storage_remove_many() sends batches */
    WS_STORAGE_PRESIGN = 0x20,     /* ws_storage_presign_get() makes download links (S3) */
};

struct ws_storage_stat {
    uint64_t size;
    int64_t mtime; /* seconds since the epoch */
    /* Listings only: 1 when the key is no object but a directory below the prefix that this
     * user may not read ("a/b/", ending in '/'; size and mtime 0). Delivered only by
     * ws_storage_list_denied(); ws_storage_list() fails on it instead. */
    int denied;
};

/* Called once per object; return non-zero (with err set) to stop the listing. */
typedef int (*ws_storage_list_cb)(void *arg, const char *key, const struct ws_storage_stat *st,
                                  struct ws_error *err);

struct ws_storage;

struct ws_storage_ops {
    const char *name;
    int (*stat)(struct ws_storage *s, const char *key, struct ws_storage_stat *out,
                struct ws_error *err);
    int (*open_put)(struct ws_storage *s, const char *key, int flags, struct ws_sink **out,
                    struct ws_error *err);
    /* Writes bytes [offset, offset+length) into dest; does not finish dest. A range that does
     * not lie within the object is WS_ERR_STORAGE (a silent short read would hide truncation);
     * length WS_STORAGE_TO_END reads to the end, and offset == size then yields nothing. */
    int (*get)(struct ws_storage *s, const char *key, uint64_t offset, uint64_t length,
               struct ws_sink *dest, struct ws_error *err);
    /* Every object whose key starts with prefix, in no particular order. */
    int (*list)(struct ws_storage *s, const char *prefix, ws_storage_list_cb cb, void *arg,
                struct ws_error *err);
    int (*remove)(struct ws_storage *s, const char *key, struct ws_error *err);
    void (*close)(struct ws_storage *s);
};

/* Optional housekeeping, used by wal-prune. A driver fills in the members its caps name
 * (WS_STORAGE_REMOVE_DIR, _CLEAN_TEMP, _REMOVE_MANY) and leaves the others NULL. */
struct ws_storage_housekeeping {
    /* Removes the directory holding the keys under prefix ("a/b/" is directory a/b) when it is
     * empty; an absent or non-empty directory is not an error. */
    int (*remove_dir)(struct ws_storage *s, const char *prefix, struct ws_error *err);
    /* Removes the temp files of killed uploads to keys that start with prefix (as list() would
     * match them: "a/b" covers a/b.x and everything under a/b/), last modified before `before`
     * (epoch seconds); with dry_run only counts them. Adds to *count and *bytes. */
    int (*clean_temp)(struct ws_storage *s, const char *prefix, int64_t before, int dry_run,
                      size_t *count, uint64_t *bytes, struct ws_error *err);
    /* Removes up to WS_STORAGE_REMOVE_BATCH keys in one request (S3 DeleteObjects); a key that
     * is already absent is no error. On failure any subset may have been removed. */
    int (*remove_many)(struct ws_storage *s, const char *const *keys, size_t n,
                       struct ws_error *err);
};

/* Optional: download links, for drivers whose caps have WS_STORAGE_PRESIGN. */
struct ws_storage_links {
    /* A URL that GETs key without credentials from now (epoch seconds) for `expires` seconds
     * (already checked: 1 to 7 days). It carries a signature, never the secret. */
    int (*presign_get)(struct ws_storage *s, const char *key, int64_t now, long expires, char *url,
                       size_t urlsz, struct ws_error *err);
};

struct ws_storage {
    const struct ws_storage_ops *ops;
    char *location; /* for messages: the repository's path or URL (URLs hold no credentials) */
    const struct ws_storage_housekeeping *hk; /* NULL: none */
    const struct ws_storage_links *links;     /* NULL: none (WS_STORAGE_PRESIGN) */
    unsigned int caps;                        /* WS_STORAGE_*, set by the driver */
    /* Tries of a request that fails transiently (below); ws_storage_open sets cfg->retries.
     * Callers that repeat whole operations themselves (wal-push and wal-fetch in archive.c,
     * the push-ahead and prefetch workers) set 1, so attempts never multiply. <= 1: one. */
    int attempts;
    /* max_rate: NULL, or the limiter (not owned) that every byte put or got through this
     * handle is charged to, before the driver takes it or the caller's sink gets it. The
     * command that sets it shares one among all its handles. */
    struct ws_ratelimit *rate;
};

/* Exponential backoff with jitter before attempt `attempt` + 1: 0.5 s, 1 s, 2 s, ... 16 s
 * (plus up to 255 ms). _delay_ms only computes it, for drivers that wait without sleeping. */
void ws_storage_retry_pause(int attempt);
unsigned int ws_storage_retry_delay_ms(int attempt);
/* After try `attempt` (1-based) of a request ended in rc: 1, after a warning and the pause, if
 * it failed transiently and s->attempts allows another try; else 0. For drivers too. */
int ws_storage_try_again(struct ws_storage *s, int rc, int attempt, const struct ws_error *err);

/* Opens the driver cfg->repo names, with the keys it takes (storage/params.h) and attempts set
 * to cfg->retries. A repo of no known form is WS_ERR_CONFIG listing the forms. */
int ws_storage_open(const struct ws_config *cfg, struct ws_storage **out, struct ws_error *err);
void ws_storage_close(struct ws_storage *s);

/* The capabilities of the driver that repo's form names (0: none), without checking the rest of
 * it or opening anything. */
unsigned int ws_storage_caps_of(const char *repo);

int ws_storage_key_valid(const char *key);

/*
 * Retries. A request that failed transiently (WS_ERR_STORAGE with err->retryable: a reset, a
 * timeout, a 5xx, a body cut short) is repeated up to s->attempts tries in all, with
 * ws_storage_retry_pause between them and a warning per retry:
 *   - stat, remove, remove_dir and remove_many: the same request again (all idempotent);
 *   - get: resumes after the bytes dest already took (objects are never rewritten in place;
 *     what is read is authenticated by its reader), unless dest itself failed; a try that
 *     moved at least 1 MiB does not count against the tries;
 *   - list: only while no key has reached the callback (it must not see a key twice); the S3
 *     driver repeats a failed continuation page itself;
 *   - put: inside the driver, where the data is still at hand: S3 repeats a single PUT, each
 *     multipart part and the completion from memory, and verifies a PUT whose outcome was
 *     unknown by its ETag. An SFTP upload streams and is one attempt (documented in README).
 */
int ws_storage_stat(struct ws_storage *s, const char *key, struct ws_storage_stat *out,
                    struct ws_error *err);
int ws_storage_open_put(struct ws_storage *s, const char *key, int flags, struct ws_sink **out,
                        struct ws_error *err);
int ws_storage_get(struct ws_storage *s, const char *key, uint64_t offset, uint64_t length,
                   struct ws_sink *dest, struct ws_error *err);
int ws_storage_list(struct ws_storage *s, const char *prefix, ws_storage_list_cb cb, void *arg,
                    struct ws_error *err);
/* The same, but a directory the user may not read (a local repository's, permission denied) is
 * passed to cb as an entry with st->denied set instead of failing the listing (list, verify,
 * wal-prune and restore go on past a backup another user owns). The prefix's own directory
 * unreadable is still an error. */
int ws_storage_list_denied(struct ws_storage *s, const char *prefix, ws_storage_list_cb cb,
                           void *arg, struct ws_error *err);
int ws_storage_remove(struct ws_storage *s, const char *key, struct ws_error *err);
/* The housekeeping operations; 0 without doing anything where the driver has none. */
int ws_storage_remove_dir(struct ws_storage *s, const char *prefix, struct ws_error *err);
int ws_storage_clean_temp(struct ws_storage *s, const char *prefix, int64_t before, int dry_run,
                          size_t *count, uint64_t *bytes, struct ws_error *err);

#define WS_STORAGE_REMOVE_BATCH 1000 /* keys per request at most (S3's DeleteObjects limit) */
/* Removes every key of keys[0..n); an absent key is no error (wal-prune: a concurrent or earlier
 * run removed it). In batches where the driver can (remove_many), else one by one in order. At
 * the first failure it stops, and then any of the keys may or may not be gone. */
int ws_storage_remove_many(struct ws_storage *s, const char *const *keys, size_t n,
                           struct ws_error *err);

/* A download link for key (storage_links): WS_ERR_USAGE for expires outside 1 s .. 7 days (AWS's
 * limit for presigned URLs), WS_ERR_CONFIG when the driver has none ("links need an S3
 * repository") or lacks what it needs (S3 credentials). Nothing is sent: no request is made. */
#define WS_STORAGE_LINK_MAX_SECONDS (7L * 86400)
int ws_storage_presign_get(struct ws_storage *s, const char *key, int64_t now, long expires,
                           char *url, size_t urlsz, struct ws_error *err);

/* Reads a whole (small) object into a new buffer of at most limit bytes; caller frees *data. */
int ws_storage_get_all(struct ws_storage *s, const char *key, size_t limit, uint8_t **data,
                       size_t *len, struct ws_error *err);

/* The in-memory driver (tests/unit/storage_mem.c, linked into the unit tests only; caps 0).
 * Faults: the nth call (1-based) of the operations in op_mask fails with `code`;
 * WS_MEM_TRUNCATE_GET makes get deliver only half of the bytes. */
enum {
    WS_MEM_STAT = 1,
    WS_MEM_PUT_WRITE = 2,
    WS_MEM_PUT_FINISH = 4,
    WS_MEM_GET = 8,
    WS_MEM_LIST = 16,
    WS_MEM_REMOVE = 32,
    WS_MEM_TRUNCATE_GET = 64,
    WS_MEM_RETRYABLE = 128, /* the injected fault is flagged transient (err->retryable) */
    WS_MEM_CUT_GET = 256    /* the nth get delivers half of its range, then fails with `code` */
};
int ws_storage_mem_open(struct ws_storage **out, struct ws_error *err);
void ws_storage_mem_fault(struct ws_storage *s, int op_mask, int nth, int code);
/* Direct access for corruption tests: the stored bytes of key (NULL if absent). */
uint8_t *ws_storage_mem_object(struct ws_storage *s, const char *key, size_t *len);
int ws_storage_mem_set_object(struct ws_storage *s, const char *key, const uint8_t *data,
                              size_t len);

#endif
