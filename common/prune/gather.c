/* prune/gather.c - reads a repository into the planner's input (prune.h, ws_prune_gather). */
#include "prune/prune_int.h"

#include <stdlib.h>
#include <string.h>

#include "pg/wal.h"

/* Room for element n of arr (cap of them allocated, each size bytes): arr itself, or arr grown
 * (doubling, from `first`), or NULL when out of memory (arr is then still valid). */
static void *grow(void *arr, size_t n, size_t *cap, size_t size, size_t first)
{
    size_t nc = *cap ? *cap * 2 : first;
    void *p;

    if (n < *cap)
        return arr;
    if (!(p = realloc(arr, nc * size)))
        return NULL;
    *cap = nc;
    return p;
}

struct wal_scan {
    struct ws_prune_state *st;
    size_t cap;
    uint32_t seg_size;
};

static int on_wal_object(void *arg, const char *key, const struct ws_storage_stat *sst,
                         struct ws_error *err)
{
    struct wal_scan *sc = arg;
    struct ws_prune_state *st = sc->st;
    struct ws_prune_wal w = {0};
    const char *name = strrchr(key, '/');
    char *copy;
    void *p;

    name = name ? name + 1 : key;
    w.kind = ws_wal_classify(name);
    if (w.kind == WS_WAL_INVALID)
        return 0; /* not ours to judge */
    if (w.kind == WS_WAL_HISTORY)
        w.tli = (uint32_t)strtoul(name, NULL, 16);
    else if (ws_wal_parse_name(name, sc->seg_size, &w.tli, &w.segno) != 0)
        return 0;
    if (!(p = grow(st->wal, st->nwal, &sc->cap, sizeof(*st->wal), 256)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    st->wal = p;
    if (!(copy = strdup(key)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    w.key = copy;
    w.name = copy + (name - key);
    w.size = sst->size;
    w.mtime = sst->mtime;
    st->wal[st->nwal++] = w;
    return 0;
}

static int on_chunk(void *arg, const char *key, const struct ws_storage_stat *sst,
                    struct ws_error *err)
{
    struct wal_scan *sc = arg;
    struct ws_prune_state *st = sc->st;
    struct ws_prune_wal w = {0};
    char segment[WS_WAL_NAME_LEN + 1];
    uint32_t start, end;
    char *copy;
    void *p;

    if (ws_repo_stream_parse(key, segment, &start, &end) != 0 ||
        ws_wal_parse_name(segment, sc->seg_size, &w.tli, &w.segno) != 0)
        return 0; /* not ours to judge */
    if (!(p = grow(st->chunks, st->nchunks, &sc->cap, sizeof(*st->chunks), 64)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    st->chunks = p;
    if (!(copy = strdup(key)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    w.key = copy;
    w.name = strrchr(copy, '/') + 1;
    w.kind = WS_WAL_SEGMENT;
    w.size = sst->size;
    st->chunks[st->nchunks++] = w;
    return 0;
}

/* Reads the history file of timeline tli into a new entry of st->histories. Problems other than
 * storage failures (missing, damaged, a key we lack, malformed) are recorded as the entry's
 * problem: the planner then treats the timeline's lineage as unknown and holds. */
static int read_history(struct ws_repo *repo, const struct ws_keyring *kr,
                        struct ws_prune_state *st, uint32_t tli, struct ws_error *err)
{
    const struct ws_prune_wal *h = NULL;
    struct ws_prune_history *e = &st->histories[st->nhistories];
    struct ws_timeline_switch *sw = NULL;
    char *text = NULL;
    struct ws_error e2 = {0};
    size_t i, len, nsw = 0;
    int rc;

    memset(e, 0, sizeof(*e));
    e->tli = tli;
    for (i = 0; i < st->nwal; i++)
        if (st->wal[i].kind == WS_WAL_HISTORY && st->wal[i].tli == tli)
            h = &st->wal[i];
    if (!h) {
        if (!(e->problem = strdup("not in the repository")))
            return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        st->nhistories++;
        return 0;
    }
    rc = ws_repo_get_small(repo, h->key, kr, WS_WAL_SIDE_FILE_MAX, &text, &len, &e2);
    if (rc == 0)
        rc = ws_timeline_history_parse(text, len, h->name, &sw, &nsw, &e2);
    free(text);
    if (rc == WS_ERR_STORAGE || rc == WS_ERR_INTERNAL) {
        *err = e2;
        return rc;
    }
    if (rc) {
        if (!(e->problem = strdup(e2.msg)))
            return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    } else {
        e->sw = sw;
        e->nsw = nsw;
    }
    st->nhistories++;
    return 0;
}

int ws_prune_on_key(void *arg, const char *key, const struct ws_storage_stat *st,
                    struct ws_error *err)
{
    struct ws_prune_keys *l = arg;
    void *p;

    (void)st;
    if (!(p = grow(l->keys, l->n, &l->cap, sizeof(*l->keys), 64)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    l->keys = p;
    if (!(l->keys[l->n] = strdup(key)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    l->n++;
    return 0;
}

void ws_prune_keys_free(struct ws_prune_keys *l)
{
    size_t i;

    for (i = 0; i < l->n; i++)
        free(l->keys[i]);
    free(l->keys);
    memset(l, 0, sizeof(*l));
}

/* The age of a backup that is not complete decides whether it is abandoned. Listings of some
 * drivers carry no modification times (SFTP): ask each of its objects. */
static int last_write_by_stat(struct ws_repo *repo, struct ws_prune_backup *b, struct ws_error *err)
{
    struct ws_prune_keys l = {0};
    char prefix[128];
    size_t i;
    int rc;

    ws_backup_object_key(repo, b->id, "", prefix, sizeof(prefix));
    if ((rc = ws_storage_list(repo->st, prefix, ws_prune_on_key, &l, err)) != 0)
        goto out;
    for (i = 0; i < l.n; i++) {
        struct ws_storage_stat sst;
        rc = ws_storage_stat(repo->st, l.keys[i], &sst, err);
        if (rc == WS_ERR_NOT_FOUND) {
            rc = 0;
            continue;
        }
        if (rc)
            goto out;
        if (sst.mtime > b->last_write)
            b->last_write = sst.mtime;
    }
out:
    ws_prune_keys_free(&l);
    return rc;
}

/* The planner's view of each backup the catalog found. */
static int backups_from_catalog(struct ws_prune_state *st, struct ws_error *err)
{
    size_t i;

    if (!(st->backups = calloc(st->cat.nbackups + 1, sizeof(*st->backups))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    st->nbackups = st->cat.nbackups;
    for (i = 0; i < st->cat.nbackups; i++) {
        const struct ws_catalog_backup *c = &st->cat.backups[i];
        struct ws_prune_backup *b = &st->backups[i];
        memcpy(b->id, c->id, sizeof(b->id));
        b->status = c->status;
        b->pinned = c->pinned;
        b->has_position = c->has_manifest;
        if (c->has_manifest) {
            b->start_time = c->m.start_time;
            b->stop_time = c->m.stop_time;
            b->start_lsn = c->m.start_lsn;
            b->stop_lsn = c->m.stop_lsn;
            b->timeline = c->m.timeline;
            b->type = c->m.type;
            memcpy(b->reference, c->m.reference, sizeof(b->reference));
        }
        b->last_write = c->newest_mtime;
        b->stored_bytes = c->stored_objects;
        b->problem = c->bad_manifest || c->denied ? c->manifest_error
                     : c->chain_error[0]          ? c->chain_error
                                                  : NULL;
    }
    return 0;
}

/* The history files the planner needs (ws_prune_lineage_tlis): of every timeline above 1 with
 * WAL, with a backup on it, or the latest. */
static int read_histories(struct ws_repo *repo, const struct ws_keyring *kr,
                          struct ws_prune_state *st, struct ws_error *err)
{
    struct ws_prune_input in;
    uint32_t *tlv = calloc(st->nwal + st->nbackups + 2, sizeof(*tlv));
    size_t i, ntl;
    int rc = 0;

    if (!tlv)
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    ws_prune_input_from_state(st, &in);
    st->latest_tli = ws_prune_latest_tli(&in);
    ntl = ws_prune_lineage_tlis(&in, st->latest_tli, tlv);
    st->histories = calloc(ntl + 1, sizeof(*st->histories));
    if (!st->histories)
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    for (i = 0; i < ntl && rc == 0; i++)
        if (tlv[i] > 1)
            rc = read_history(repo, kr, st, tlv[i], err);
    free(tlv);
    return rc;
}

int ws_prune_gather(struct ws_repo *repo, const struct ws_keyring *kr, struct ws_prune_state *st,
                    struct ws_error *err)
{
    return ws_prune_gather_opts(repo, kr, st, 1, err);
}

int ws_prune_gather_opts(struct ws_repo *repo, const struct ws_keyring *kr,
                         struct ws_prune_state *st, int stat_unlisted, struct ws_error *err)
{
    struct wal_scan sc = {0};
    char prefix[128];
    size_t i;
    int rc;

    memset(st, 0, sizeof(*st));
    if ((rc = ws_catalog_load(repo, kr, &st->cat, err)) != 0 || !st->cat.has_identity)
        return rc;
    sc.st = st;
    sc.seg_size = st->cat.identity.wal_segment_size;
    snprintf(prefix, sizeof(prefix), "%s/wal/", repo->cluster);
    if ((rc = ws_storage_list(repo->st, prefix, on_wal_object, &sc, err)) != 0 ||
        (rc = backups_from_catalog(st, err)) != 0)
        goto out;
    sc.cap = 0;
    snprintf(prefix, sizeof(prefix), "%s/stream/", repo->cluster);
    if ((rc = ws_storage_list(repo->st, prefix, on_chunk, &sc, err)) != 0)
        goto out;
    for (i = 0; i < st->nbackups && rc == 0 && stat_unlisted; i++)
        if (st->backups[i].status != WS_BACKUP_COMPLETE &&
            st->backups[i].status != WS_BACKUP_UNREADABLE && st->backups[i].last_write <= 0)
            rc = last_write_by_stat(repo, &st->backups[i], err); /* not into another's dir */
    if (rc == 0)
        rc = read_histories(repo, kr, st, err);
out:
    if (rc)
        ws_prune_state_free(st);
    return rc;
}

void ws_prune_state_free(struct ws_prune_state *st)
{
    size_t i;

    for (i = 0; i < st->nwal; i++)
        free((char *)st->wal[i].key);
    free(st->wal);
    for (i = 0; i < st->nchunks; i++)
        free((char *)st->chunks[i].key);
    free(st->chunks);
    free(st->backups);
    for (i = 0; i < st->nhistories; i++) {
        free((struct ws_timeline_switch *)st->histories[i].sw);
        free((char *)st->histories[i].problem);
    }
    free(st->histories);
    ws_catalog_free(&st->cat);
    memset(st, 0, sizeof(*st));
}

void ws_prune_input_from_state(const struct ws_prune_state *st, struct ws_prune_input *in)
{
    memset(in, 0, sizeof(*in));
    in->backups = st->backups;
    in->nbackups = st->nbackups;
    in->wal = st->wal;
    in->nwal = st->nwal;
    in->chunks = st->chunks;
    in->nchunks = st->nchunks;
    in->wal_segment_size = st->cat.identity.wal_segment_size;
    in->histories = st->histories;
    in->nhistories = st->nhistories;
}
