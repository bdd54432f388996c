/* receive_spool.c - the receiver's files: the .partial segment, completed segments and their
 * pushes, chunk objects, the status file (receive.h, docs/design/receive.md). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "archive/archive.h"
#include "archive/receive_int.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/util.h"

void ws_rx_set_error(struct receiver *r, const struct ws_error *err)
{
    if (strcmp(r->last_error, err->msg) == 0) {
        ws_log_debug("%s (again)", err->msg); /* a repository that stays down: said once */
        return;
    }
    ws_log_error(err);
    snprintf(r->last_error, sizeof(r->last_error), "%s", err->msg);
}

int ws_rx_open_segment(struct receiver *r, struct ws_error *err)
{
    char name[WS_WAL_NAME_LEN + 16];
    int rc;

    ws_wal_format_name(r->segment, r->tli, ws_wal_lsn_to_segno(r->pos, r->seg_size), r->seg_size);
    snprintf(name, sizeof(name), "%s.partial", r->segment);
    if ((rc = ws_spool_openat(r->dir, name, O_RDWR | O_CREAT | O_TRUNC, &r->fd, err)) != 0)
        return rc;
    /* the file has the segment's size from the start, as pg_receivewal's and pg_wal's have */
    if (ftruncate(r->fd, (off_t)r->seg_size) != 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not size spool file \"%s/%s\"",
                               r->sp.sub[0].path, name);
    r->chunked = r->pos;
    return 0;
}

void ws_rx_drop_partial(struct receiver *r)
{
    char name[WS_WAL_NAME_LEN + 16];

    if (r->fd < 0)
        return;
    close(r->fd);
    r->fd = -1;
    snprintf(name, sizeof(name), "%s.partial", r->segment);
    unlinkat(r->dir, name, 0);
}

/* Names (chunk keys, spool file names), malloc'ed. */
struct chunk_list {
    char **keys;
    size_t n, cap;
};

static int collect_key(void *arg, const char *key, const struct ws_storage_stat *st,
                       struct ws_error *err)
{
    struct chunk_list *l = arg;
    char **grown;

    (void)st;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        if (!(grown = realloc(l->keys, l->cap * sizeof(*grown))))
            return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        l->keys = grown;
    }
    if (!(l->keys[l->n] = strdup(key)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    l->n++;
    return 0;
}

/* The chunks of segment in the repository but the one at keep (NULL: none), removed: after the
 * segment's WAL object is stored, or after the first chunk of a session is. */
static int remove_chunks(struct receiver *r, const char *segment, const char *keep,
                         struct ws_error *err)
{
    struct chunk_list l = {0};
    char prefix[256];
    size_t n = 0;
    int rc;

    if (ws_repo_stream_prefix(&r->repo, segment, prefix, sizeof(prefix)) != 0)
        return 0;
    if ((rc = ws_storage_list(r->repo.st, prefix, collect_key, &l, err)) == 0) {
        for (size_t i = 0; i < l.n; i++)
            if (keep && strcmp(l.keys[i], keep) == 0)
                free(l.keys[i]);
            else
                l.keys[n++] = l.keys[i];
        l.n = n;
        if (l.n)
            rc = ws_storage_remove_many(r->repo.st, (const char *const *)l.keys, l.n, err);
    }
    for (size_t i = 0; i < l.n; i++)
        free(l.keys[i]);
    free(l.keys);
    return rc;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The completed segments in the spool, sorted. */
static int spool_segments(struct receiver *r, struct chunk_list *l, struct ws_error *err)
{
    DIR *d = ws_spool_opendir(r->dir);
    struct dirent *e;
    int rc = 0;

    if (!d)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not read spool directory \"%s\"",
                               r->sp.sub[0].path);
    while (!rc && (e = readdir(d)))
        if (ws_wal_classify(e->d_name) == WS_WAL_SEGMENT)
            rc = collect_key(l, e->d_name, NULL, err);
    closedir(d);
    if (l->n > 1)
        qsort(l->keys, l->n, sizeof(*l->keys), cmp_name);
    return rc;
}

static void free_list(struct chunk_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->keys[i]);
    free(l->keys);
    memset(l, 0, sizeof(*l));
}

/* One completed segment of the spool into the repository, then out of the spool. */
static int push_one(struct receiver *r, const char *name, struct ws_error *err)
{
    struct ws_push_result res;
    struct ws_error e2 = {0};
    char path[PATH_MAX];
    int rc;

    if (ws_path_join(path, sizeof(path), r->sp.sub[0].path, name) != 0)
        return ws_error_set(err, WS_ERR_INTERNAL, "spool path too long for \"%s\"", name);
    /* zstd in this thread (0 workers): a receiver's peak RSS stays under 32 MB (with `parallel`
     * zstd threads a segment's push took about 13 MB more); one segment at a time keeps up with
     * the server's WAL rate (docs/design/receive.md). */
    if ((rc = ws_archive_push_in(r->cfg, &r->repo, &r->kr, 0, 1, path, &res, err)) != 0)
        return rc;
    if (ws_wal_classify(name) == WS_WAL_SEGMENT && remove_chunks(r, name, NULL, &e2) != 0)
        ws_log_warning("could not remove the streamed chunks of segment \"%s\": %s", name, e2.msg);
    if (unlinkat(r->dir, name, 0) != 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not remove spool file \"%s\"", path);
    return 0;
}

void ws_rx_push_pending(struct receiver *r)
{
    struct chunk_list l = {0};
    struct ws_error err = {0};
    size_t done = 0;
    int rc;

    /* rc, not err.code: a push that found an identical copy returns 0 with err still set by
     * the refused no-replace put. */
    if ((rc = spool_segments(r, &l, &err)) == 0)
        for (; done < l.n; done++)
            if ((rc = push_one(r, l.keys[done], &err)) != 0)
                break;
    if (rc) {
        ws_rx_set_error(r, &err);
    }
    r->pending = l.n - done;
    if (r->pending == 0)
        r->full_logged = 0;
    free_list(&l);
}

void ws_rx_segment_end(const char *name, uint32_t tli, uint32_t seg_size, uint64_t *end)
{
    uint64_t segno;
    uint32_t t;

    if (ws_wal_classify(name) == WS_WAL_SEGMENT &&
        ws_wal_parse_name(name, seg_size, &t, &segno) == 0 && t == tli && segno + 1 > *end)
        *end = segno + 1;
}

uint64_t ws_rx_spool_end(struct receiver *r, uint32_t tli)
{
    struct chunk_list l = {0};
    struct ws_error err = {0};
    uint64_t end = 0;

    if (spool_segments(r, &l, &err) == 0)
        for (size_t i = 0; i < l.n; i++)
            ws_rx_segment_end(l.keys[i], tli, r->seg_size, &end);
    free_list(&l);
    return end;
}

/* The segment in progress is complete: renamed in the spool (durably), then pushed. */
static int complete_segment(struct receiver *r, struct ws_error *err)
{
    char name[WS_WAL_NAME_LEN + 16];

    snprintf(name, sizeof(name), "%s.partial", r->segment);
    if (fsync(r->fd) != 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not fsync spool file \"%s/%s\"",
                               r->sp.sub[0].path, name);
    close(r->fd);
    r->fd = -1;
    if (renameat(r->dir, name, r->dir, r->segment) != 0 || fsync(r->dir) != 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not rename spool file \"%s/%s\"",
                               r->sp.sub[0].path, name);
    r->synced = r->pos;
    ws_log_info("received segment \"%s\"", r->segment);
    ws_rx_push_pending(r);
    if (r->pending == 0)
        r->stored = r->pos;
    ws_rx_write_status(r);
    return ws_rx_open_segment(r, err);
}

int ws_rx_write(struct receiver *r, const uint8_t *data, size_t len, struct ws_error *err)
{
    int rc;

    while (len > 0) {
        uint64_t off = r->pos % r->seg_size, n = r->seg_size - off;
        if (n > len)
            n = len;
        if (ws_pwrite_all(r->fd, data, (size_t)n, (off_t)off) != 0)
            return ws_error_setsys(err, WS_ERR_IO, errno,
                                   "could not write to spool file \"%s/%s.partial\"",
                                   r->sp.sub[0].path, r->segment);
        r->pos += n;
        data += n;
        len -= (size_t)n;
        if (r->pos % r->seg_size == 0 && (rc = complete_segment(r, err)) != 0)
            return rc;
    }
    return 0;
}

/* The chunk at key exists (an earlier session's): kept when it holds the same len bytes as data,
 * else replaced by them. The server may have rewritten WAL at the same position since (crash
 * recovery overwrites a torn record at the end of WAL). */
static int put_again(struct receiver *r, const char *key, const uint8_t *data, size_t len,
                     const struct ws_object_params *p, struct ws_error *err)
{
    char *old = NULL;
    size_t old_len = 0;
    int rc;

    memset(err, 0, sizeof(*err)); /* the refused put's */
    rc = ws_repo_get_small(&r->repo, key, &r->kr, len, &old, &old_len, err);
    if (rc == 0 && old_len == len && memcmp(old, data, len) == 0)
        goto out;
    if (rc != 0 && rc != WS_ERR_CORRUPT && rc != WS_ERR_NOT_FOUND)
        goto out;
    memset(err, 0, sizeof(*err));
    ws_log_info("streamed chunk \"%s\" holds other bytes than the server sent now: replaced", key);
    if ((rc = ws_storage_remove(r->repo.st, key, err)) == 0)
        rc = ws_repo_put_small(&r->repo, key, data, len, p, err);
out:
    free(old);
    return rc;
}

/* Bytes [chunked, pos) of the segment in progress as a chunk object. */
static int store_chunk(struct receiver *r, struct ws_error *err)
{
    uint32_t start = (uint32_t)(r->chunked % r->seg_size),
             end = start + (uint32_t)(r->pos - r->chunked);
    struct ws_object_params p = {0};
    uint8_t *buf = NULL;
    char key[256];
    int rc;

    if (ws_repo_stream_key(&r->repo, r->segment, start, end, key, sizeof(key)) != 0)
        return ws_error_set(err, WS_ERR_INTERNAL, "could not build the chunk key of \"%s\"",
                            r->segment);
    if (!(buf = malloc(end - start)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    if (ws_pread_full(r->fd, buf, end - start, start) != (ssize_t)(end - start)) {
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not read spool file \"%s/%s.partial\"",
                             r->sp.sub[0].path, r->segment);
        goto out;
    }
    p.compress = r->cfg->compress;
    p.level = r->cfg->compress_level;
    p.digest = WS_DIGEST_XXH3_128;
    p.key = ws_keyring_write_key(&r->kr);
    rc = ws_repo_put_small(&r->repo, key, buf, end - start, &p, err);
    if (rc == WS_ERR_EXISTS)
        rc = put_again(r, key, buf, end - start, &p, err);
    /* a session streams the segment from its start: what other chunks hold is superseded */
    if (rc == 0 && start == 0)
        rc = remove_chunks(r, r->segment, key, err);
    if (rc == 0) {
        r->chunked = r->pos;
        ws_log_debug("stored chunk \"%s\"", key);
    }
out:
    free(buf);
    return rc;
}

int ws_rx_flush(struct receiver *r, struct ws_error *err)
{
    struct ws_error e2 = {0};
    int rc;

    if (r->pending > 0)
        ws_rx_push_pending(r); /* segments the repository refused before: again */

    if (r->fd >= 0 && r->pos > r->synced) {
        if (fsync(r->fd) != 0)
            return ws_error_setsys(err, WS_ERR_IO, errno,
                                   "could not fsync spool file \"%s/%s.partial\"",
                                   r->sp.sub[0].path, r->segment);
        r->synced = r->pos;
    }
    if (r->fd >= 0 && r->pos > r->chunked && (rc = store_chunk(r, &e2)) != 0) {
        if (rc == WS_ERR_IO) /* the spool file could not be read */
            return *err = e2, rc;
        ws_rx_set_error(r, &e2); /* the spool holds the bytes: the next flush tries again */
    } else if (r->pending == 0)
        r->stored = r->pos;
    ws_rx_write_status(r);
    return 0;
}

void ws_rx_write_status(struct receiver *r)
{
    char text[2048], recv[24], synced[24], stored[24], now[21];
    struct ws_sink *s = NULL;
    struct ws_error err = {0};
    int n;

    ws_wal_format_lsn(recv, r->pos);
    ws_wal_format_lsn(synced, r->cfg->receive_synchronous ? r->stored : r->synced);
    ws_wal_format_lsn(stored, r->stored);
    ws_format_utc((int64_t)time(NULL), now);
    n = snprintf(text, sizeof(text),
                 "slot = %s\ntimeline = %" PRIu32 "\nreceived = %s\nflushed = %s\nstored = %s\n"
                 "pending_segments = %zu\nupdated = %s\nlast_error = %s\n",
                 r->cfg->slot_name, r->tli, recv, synced, stored, r->pending, now, r->last_error);
    if (n < 0 || (size_t)n >= sizeof(text))
        n = (int)sizeof(text) - 1;
    if (ws_spool_sink_new(r->dir, "status", NULL, &s, &err) != 0 ||
        ws_sink_write(s, text, (size_t)n, &err) != 0 || ws_sink_finish(s, &err) != 0) {
        /* a full spool disk fails every write until it clears: said once */
        if (r->status_failed)
            ws_log_debug("could not write the status file in \"%s\": %s (again)", r->sp.sub[0].path,
                         err.msg);
        else
            ws_log_warning("could not write the status file in \"%s\": %s", r->sp.sub[0].path,
                           err.msg);
        r->status_failed = 1;
    } else {
        r->status_failed = 0;
    }
    ws_sink_free(s);
}

int ws_rx_push_content(struct receiver *r, const char *name, const char *data, size_t len,
                       struct ws_error *err)
{
    struct ws_sink *s = NULL;
    int rc;

    if ((rc = ws_spool_sink_new(r->dir, name, NULL, &s, err)) != 0 ||
        (rc = ws_sink_write(s, data, len, err)) != 0 || (rc = ws_sink_finish(s, err)) != 0)
        goto out;
    rc = push_one(r, name, err);
out:
    ws_sink_free(s);
    return rc;
}
