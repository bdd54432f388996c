/*
 * sink.h - push-model data pipelines.
 *
 * A sink accepts bytes with ws_sink_write() and passes what it produces to the next sink. The
 * chain is built back to front; every constructor takes ownership of `next`, also when it
 * fails (then it frees next), so a chain is built without special cases:
 *
 *     struct ws_sink *s = NULL;
 *     if (ws_file_sink_new(path, 0600, 1, &s, err) || ws_zstd_decompress_sink_new(s, &s, err))
 *         goto out;
 *     ... ws_sink_write(s, buf, n, err) ...
 *     rc = ws_sink_finish(s, err);      // flush and commit the whole chain, front to back
 *   out:
 *     ws_sink_free(s);                  // aborts every stage not finished, frees the chain
 *
 * finish() commits: a storage writer makes its object visible only there. After any error the
 * only path is ws_sink_free(), which calls abort() on each stage that did not finish, so
 * nothing partial stays visible. A sink must not be written after an error.
 */
#ifndef WS_SINK_H
#define WS_SINK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/error.h"

struct ws_sink;

struct ws_sink_ops {
    const char *name;
    /* Consume len bytes (len may be 0). */
    int (*write)(struct ws_sink *s, const void *buf, size_t len, struct ws_error *err);
    /* Flush this stage into next; ws_sink_finish() then finishes next. May be NULL. */
    int (*finish)(struct ws_sink *s, struct ws_error *err);
    /* Discard: called by ws_sink_free() if finish did not succeed. May be NULL. */
    void (*abort)(struct ws_sink *s);
    /* Release this stage's memory only (not next). */
    void (*destroy)(struct ws_sink *s);
};

struct ws_sink {
    const struct ws_sink_ops *ops;
    struct ws_sink *next;
    int finished;
};

int ws_sink_write(struct ws_sink *s, const void *buf, size_t len, struct ws_error *err);
int ws_sink_finish(struct ws_sink *s, struct ws_error *err);
void ws_sink_free(struct ws_sink *s);

/* Writes into a growable buffer, failing beyond `limit` bytes. Owns the buffer. */
int ws_buffer_sink_new(size_t limit, struct ws_sink **out, struct ws_error *err);
const uint8_t *ws_buffer_sink_data(const struct ws_sink *s, size_t *len);
/* The content as a NUL-terminated string (never NULL; writable, e.g. for strtok_r). */
char *ws_buffer_sink_text(struct ws_sink *s);

/* Discards everything; useful to verify an object without keeping its content. */
int ws_null_sink_new(struct ws_sink **out, struct ws_error *err);

/*
 * Writes a local file under a temp name and publishes it as `path` in finish: (fsync,) close,
 * rename (without replacing when no_replace: WS_ERR_EXISTS if `path` exists), (fsync of the
 * directory). Abort unlinks the temp file. This is the one implementation of durable local
 * publication; the posix storage driver uses it too.
 */
struct ws_file_opts {
    int mode;             /* of the new file */
    int fsync;            /* fsync file and directory: durable when finish returns 0 */
    int no_replace;       /* never replace an existing `path` */
    int err_code;         /* code for I/O errors (0: WS_ERR_IO) */
    const char *tmp_path; /* temp name (same directory); NULL: "<dir>/.<base>.walsafe.<pid>" */
    int create_on_write;  /* create the temp file at the first write (or at finish), not now:
                             an abandoned sink then touches nothing */
    int give;             /* 1: the new file is given to uid:gid (fchown: root only) */
    uid_t uid;
    gid_t gid;
    uint64_t preallocate; /* the expected length: reserved at creation (fallocate keeping the
                             size, best effort); what the content leaves unused is released */
};
int ws_file_sink_open(const char *path, const struct ws_file_opts *o, struct ws_sink **out,
                      struct ws_error *err);
/* The common case: replace, optional fsync, WS_ERR_IO, created on first write (wal-fetch: a
 * WAL file that is not in the archive costs no file creation in pg_wal). */
int ws_file_sink_new(const char *path, int mode, int do_fsync, struct ws_sink **out,
                     struct ws_error *err);

/* Reads a local file in large blocks and writes it into s (not finished). */
int ws_sink_write_file(struct ws_sink *s, int fd, const char *path, struct ws_error *err);

#endif
