/* streamed.c - wal-fetch's streamed segment: the chunk objects wal-receive stored for a segment in
 * progress, served as a whole segment (archive.h, docs/design/receive.md). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "archive/archive.h"
#include "base/log.h"
#include "pg/wal.h"
#include "repo/repo.h"

struct chunk {
    char *key;
    uint32_t start, end;
};

struct chunks {
    struct chunk *c;
    size_t n, cap;
};

static int collect(void *arg, const char *key, const struct ws_storage_stat *st,
                   struct ws_error *err)
{
    struct chunks *l = arg;
    char seg[WS_WAL_NAME_LEN + 1];
    uint32_t start, end;

    (void)st;
    if (ws_repo_stream_parse(key, seg, &start, &end) != 0)
        return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        struct chunk *grown = realloc(l->c, cap * sizeof(*grown));
        if (!grown)
            return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        l->c = grown;
        l->cap = cap;
    }
    if (!(l->c[l->n].key = strdup(key)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    l->c[l->n].start = start;
    l->c[l->n].end = end;
    l->n++;
    return 0;
}

/* The chunk that holds byte off and reaches furthest, or NULL. */
static const struct chunk *cover(const struct chunks *l, uint32_t off, uint32_t seg_size)
{
    const struct chunk *best = NULL;

    for (size_t i = 0; i < l->n; i++)
        if (l->c[i].start <= off && l->c[i].end > off && l->c[i].end <= seg_size &&
            (!best || l->c[i].end > best->end))
            best = &l->c[i];
    return best;
}

/* Whether the repository holds the segment after name on its timeline. */
static int later_segment(struct ws_repo *repo, const char *name, uint32_t seg_size, int *found,
                         struct ws_error *err)
{
    char next[WS_WAL_NAME_LEN + 1], key[256];
    struct ws_storage_stat st;
    uint64_t segno;
    uint32_t tli;
    int rc;

    *found = 0;
    if (ws_wal_parse_name(name, seg_size, &tli, &segno) != 0)
        return ws_error_set(err, WS_ERR_INTERNAL, "\"%s\" is not a segment name", name);
    ws_wal_format_name(next, tli, segno + 1, seg_size);
    if (ws_repo_wal_key(repo, next, key, sizeof(key)) != 0)
        return ws_error_set(err, WS_ERR_INTERNAL, "could not build the key for \"%s\"", next);
    rc = ws_storage_stat(repo->st, key, &st, err);
    if (rc == WS_ERR_NOT_FOUND)
        return 0;
    *found = rc == 0;
    return rc;
}

/* The contiguous chunks from offset 0, then zeros up to the segment size, into out. */
static int write_cover(struct ws_repo *repo, const struct ws_keyring *kr, const struct chunks *l,
                       uint32_t seg_size, struct ws_sink *out, uint32_t *served,
                       struct ws_error *err)
{
    static const uint8_t zeros[65536];
    const struct chunk *c;
    uint32_t off = 0;
    char *data = NULL;
    size_t len;
    int rc = 0;

    while (!rc && (c = cover(l, off, seg_size)) != NULL) {
        rc = ws_repo_get_small(repo, c->key, kr, c->end - c->start, &data, &len, err);
        if (rc == WS_ERR_NOT_FOUND) {
            /* listed, then gone: the receiver stored the whole segment and removed its chunks.
             * Not "not in the archive": the fetch repeated finds the segment. */
            rc = ws_error_set(err, WS_ERR_STORAGE, "streamed chunk \"%s\" vanished while read",
                              c->key);
            err->retryable = 1;
        }
        if (rc != 0)
            break;
        if (len != c->end - c->start)
            rc = ws_error_set(err, WS_ERR_CORRUPT, "streamed chunk \"%s\" holds %zu bytes", c->key,
                              len);
        else
            rc = ws_sink_write(out, data + (off - c->start), c->end - off, err);
        free(data);
        data = NULL;
        off = c->end;
    }
    *served = off;
    for (uint32_t z = off; !rc && z < seg_size; z += sizeof(zeros))
        rc = ws_sink_write(out, zeros, seg_size - z < sizeof(zeros) ? seg_size - z : sizeof(zeros),
                           err);
    return rc;
}

int ws_archive_fetch_streamed(struct ws_repo *repo, const struct ws_keyring *kr, uint32_t seg_size,
                              const char *wal_name, const char *dest_path, struct ws_error *err)
{
    struct chunks *l = NULL;
    struct ws_sink *out = NULL;
    char prefix[256];
    uint32_t served = 0;
    int later, rc;

    if (ws_wal_classify(wal_name) != WS_WAL_SEGMENT ||
        ws_repo_stream_prefix(repo, wal_name, prefix, sizeof(prefix)) != 0)
        return WS_ERR_NOT_FOUND;
    if (!(l = calloc(1, sizeof(*l))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    /* the list first: without chunks (the common case) one request decides */
    if ((rc = ws_storage_list(repo->st, prefix, collect, l, err)) != 0)
        goto out;
    if (!cover(l, 0, seg_size)) {
        rc = WS_ERR_NOT_FOUND;
        goto out;
    }
    if ((rc = later_segment(repo, wal_name, seg_size, &later, err)) != 0)
        goto out;
    if (later) {
        rc = WS_ERR_NOT_FOUND; /* the segment was complete: its chunks are leftovers */
        goto out;
    }
    if ((rc = ws_file_sink_new(dest_path, 0600, 0, &out, err)) != 0 ||
        (rc = write_cover(repo, kr, l, seg_size, out, &served, err)) != 0 ||
        (rc = ws_sink_finish(out, err)) != 0)
        goto out;
    ws_log_info("served streamed segment \"%s\": %" PRIu32 " streamed bytes, zeros after them",
                wal_name, served);
out:
    ws_sink_free(out);
    for (size_t i = 0; l && i < l->n; i++)
        free(l->c[i].key);
    if (l)
        free(l->c);
    free(l);
    return rc;
}
