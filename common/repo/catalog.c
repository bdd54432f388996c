/* catalog.c - what a repository holds for one cluster, from its listings (catalog.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/config.h"
#include "pg/wal.h"
#include "repo/catalog.h"

struct scan {
    struct ws_catalog *cat;
    const char *prefix; /* of the backup listing */
    size_t prefix_len;
    size_t cap_b, cap_s, cap_h;
    struct ws_error *err;
};

static struct ws_catalog_backup *backup_entry(struct scan *sc, const char *id)
{
    struct ws_catalog *cat = sc->cat;
    size_t i;

    for (i = cat->nbackups; i-- > 0;)
        if (strcmp(cat->backups[i].id, id) == 0)
            return &cat->backups[i];
    if (cat->nbackups == sc->cap_b) {
        size_t cap = sc->cap_b ? sc->cap_b * 2 : 16;
        void *p = realloc(cat->backups, cap * sizeof(*cat->backups));
        if (!p)
            return NULL;
        cat->backups = p;
        sc->cap_b = cap;
    }
    memset(&cat->backups[cat->nbackups], 0, sizeof(cat->backups[0]));
    memcpy(cat->backups[cat->nbackups].id, id, WS_BACKUP_ID_LEN + 1);
    return &cat->backups[cat->nbackups++];
}

static int on_backup_key(void *arg, const char *key, const struct ws_storage_stat *st,
                         struct ws_error *err)
{
    struct scan *sc = arg;
    const char *rest;
    char id[WS_BACKUP_ID_LEN + 1];
    struct ws_catalog_backup *b;

    /* Drivers list only keys under the prefix; one that does not must not make us read past
     * the end of a shorter key. */
    if (strncmp(key, sc->prefix, sc->prefix_len) != 0)
        return 0;
    rest = key + sc->prefix_len;
    if (strlen(rest) < WS_BACKUP_ID_LEN + 1 ||
        (rest[WS_BACKUP_ID_LEN] != '/' &&
         strcmp(rest + WS_BACKUP_ID_LEN, WS_BACKUP_DELETING_SUFFIX) != 0))
        return 0;
    memcpy(id, rest, WS_BACKUP_ID_LEN);
    id[WS_BACKUP_ID_LEN] = '\0';
    if (!ws_backup_id_valid(id))
        return 0;
    if (!(b = backup_entry(sc, id)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    if (st->denied)
        b->denied = 1;
    else if (rest[WS_BACKUP_ID_LEN] != '/')
        b->status = WS_BACKUP_DELETING; /* its tombstone decides, whatever else is there */
    else if (strcmp(rest + WS_BACKUP_ID_LEN + 1, "manifest") == 0)
        b->has_manifest = 1;
    else if (strcmp(rest + WS_BACKUP_ID_LEN + 1, WS_BACKUP_KEEP) == 0)
        b->pinned = 1;
    b->stored_objects += st->size;
    if (st->mtime > b->newest_mtime)
        b->newest_mtime = st->mtime;
    return 0;
}

static int on_wal_key(void *arg, const char *key, const struct ws_storage_stat *st,
                      struct ws_error *err)
{
    struct scan *sc = arg;
    struct ws_catalog *cat = sc->cat;
    const char *name = strrchr(key, '/');
    uint32_t tli;
    uint64_t segno;
    int kind;

    (void)st;
    name = name ? name + 1 : key;
    kind = ws_wal_classify(name);
    if (kind == WS_WAL_SEGMENT) {
        if (ws_wal_parse_name(name, cat->identity.wal_segment_size, &tli, &segno) != 0)
            return 0;
        if (cat->nsegs == sc->cap_s) {
            size_t cap = sc->cap_s ? sc->cap_s * 2 : 256;
            void *p = realloc(cat->segs, cap * sizeof(*cat->segs));
            if (!p)
                return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
            cat->segs = p;
            sc->cap_s = cap;
        }
        cat->segs[cat->nsegs].tli = tli;
        cat->segs[cat->nsegs].segno = segno;
        cat->nsegs++;
    } else if (kind == WS_WAL_HISTORY) {
        if (cat->nhistories == sc->cap_h) {
            size_t cap = sc->cap_h ? sc->cap_h * 2 : 16;
            void *p = realloc(cat->histories, cap * sizeof(*cat->histories));
            if (!p)
                return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
            cat->histories = p;
            sc->cap_h = cap;
        }
        cat->histories[cat->nhistories++] = (uint32_t)strtoul(name, NULL, 16);
    }
    return 0;
}

static int cmp_seg(const void *a, const void *b)
{
    const struct ws_wal_seg *x = a, *y = b;

    if (x->tli != y->tli)
        return x->tli < y->tli ? -1 : 1;
    return x->segno < y->segno ? -1 : x->segno > y->segno;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_backup(const void *a, const void *b)
{
    return strcmp(((const struct ws_catalog_backup *)a)->id,
                  ((const struct ws_catalog_backup *)b)->id);
}

int ws_catalog_has_seg(const struct ws_catalog *cat, uint32_t tli, uint64_t segno)
{
    struct ws_wal_seg key = {tli, segno};

    if (cat->nsegs == 0)
        return 0;
    return bsearch(&key, cat->segs, cat->nsegs, sizeof(key), cmp_seg) != NULL;
}

void ws_catalog_wal_runs(const struct ws_catalog *cat, uint32_t tli, ws_catalog_run_fn fn,
                         void *arg)
{
    size_t i = 0;
    int first = 1;

    while (i < cat->nsegs && cat->segs[i].tli != tli)
        i++;
    while (i < cat->nsegs && cat->segs[i].tli == tli) {
        uint64_t a = cat->segs[i].segno, b = a;
        while (i + 1 < cat->nsegs && cat->segs[i + 1].tli == tli && cat->segs[i + 1].segno == b + 1)
            b = cat->segs[++i].segno;
        fn(arg, tli, a, b, first);
        first = 0;
        i++;
    }
}

const char *ws_backup_status_name(enum ws_backup_status status)
{
    switch (status) {
    case WS_BACKUP_COMPLETE:
        return "complete";
    case WS_BACKUP_INCOMPLETE:
        return "incomplete";
    case WS_BACKUP_INVALID:
        return "invalid";
    case WS_BACKUP_DELETING:
        return "deleting";
    case WS_BACKUP_UNREADABLE:
        return "unreadable";
    case WS_BACKUP_RUNNING:
        break;
    }
    return "running";
}

/* Keeps b's manifest header and the counts list prints; frees its records (catalog.h). */
static void drop_records(struct ws_catalog_backup *b)
{
    struct ws_manifest head = b->m;

    b->nfiles = b->m.nfiles;
    b->nbadpages = b->m.nbadpages;
    head.tblspc = NULL;
    head.ntblspc = 0;
    head.dirs = NULL;
    head.ndirs = 0;
    head.files = NULL;
    head.nfiles = 0;
    head.files_cap = head.dirs_cap = 0;
    head.badpages = NULL;
    head.nbadpages = 0;
    b->m.label = NULL; /* kept in head, like the extra paths (few; list --json shows them) */
    b->m.extra = NULL;
    b->m.nextra = 0;
    ws_manifest_free(&b->m);
    b->m = head;
}

/* Reads b's manifest when the listing has one: a manifest that does not verify makes the backup
 * invalid (manifest_error), one of another system fails the load. */
static int load_manifest(struct ws_repo *repo, const struct ws_keyring *kr,
                         const struct ws_catalog *cat, struct ws_catalog_backup *b,
                         struct ws_error *err)
{
    int rc;

    if (!b->has_manifest)
        return 0;
    rc = ws_manifest_load(repo, kr, b->id, &b->m, err);
    if (rc == WS_ERR_STORAGE && err->sys_errno == EACCES) { /* another user's (catalog.h) */
        b->has_manifest = 0;
        b->denied = 1;
        return 0;
    }
    if (rc == WS_ERR_CORRUPT || rc == WS_ERR_KEY || rc == WS_ERR_NOT_FOUND) {
        b->has_manifest = 0;
        b->bad_manifest = 1;
        snprintf(b->manifest_error, sizeof(b->manifest_error), "%.299s", err->msg);
        return 0;
    }
    if (rc)
        return rc;
    if (b->m.system_identifier != cat->identity.system_identifier)
        return ws_error_set(err, WS_ERR_FOREIGN,
                            "backup %s belongs to database system %" PRIu64
                            ", but the repository's cluster \"%s\" is system %" PRIu64,
                            b->id, b->m.system_identifier, repo->cluster,
                            cat->identity.system_identifier);
    drop_records(b);
    return 0;
}

/* b's missing_wal, then its status (catalog.h; a tombstone was recorded while listing). */
static void settle_status(const struct ws_catalog *cat, struct ws_catalog_backup *b)
{
    uint64_t s, last;

    if (b->has_manifest) {
        last = ws_manifest_stop_segno(&b->m);
        for (s = ws_manifest_start_segno(&b->m); s <= last; s++) {
            if (!ws_catalog_has_seg(cat, b->m.timeline, s)) {
                ws_wal_format_name(b->missing_wal, b->m.timeline, s, b->m.wal_segment_size);
                break;
            }
        }
    }
    if (b->status == WS_BACKUP_DELETING)
        return;
    if (b->denied) {
        b->has_manifest = 0;
        b->status = WS_BACKUP_UNREADABLE;
        snprintf(b->manifest_error, sizeof(b->manifest_error),
                 "this user may not read it (permission denied): run as the owner of the "
                 "repository");
        return;
    }
    if (b->has_manifest)
        b->status = b->missing_wal[0] ? WS_BACKUP_INCOMPLETE : WS_BACKUP_COMPLETE;
    else
        b->status = b->bad_manifest ? WS_BACKUP_INVALID : WS_BACKUP_RUNNING;
}

void ws_catalog_why(const struct ws_catalog_backup *b, char *out, size_t outsz)
{
    if (b->status == WS_BACKUP_DELETING)
        snprintf(out, outsz, "wal-prune began deleting it");
    else if (b->bad_manifest || b->status == WS_BACKUP_UNREADABLE)
        snprintf(out, outsz, "%s", b->manifest_error);
    else if (!b->has_manifest)
        snprintf(out, outsz, "no manifest: still running, or failed");
    else if (b->missing_wal[0])
        snprintf(out, outsz, "WAL file %s is missing from the repository", b->missing_wal);
    else
        snprintf(out, outsz, "%s", b->chain_error);
}

const struct ws_catalog_backup *ws_catalog_find(const struct ws_catalog *cat, const char *id)
{
    size_t lo = 0, hi = cat->nbackups;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(cat->backups[mid].id, id);
        if (c == 0)
            return &cat->backups[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* The next link after b (which has a manifest): *r = its reference, NULL for a full backup.
 * WS_ERR_CORRUPT when b names no older reference, WS_ERR_NOT_FOUND when it is not in the
 * catalog; err says which. */
static int next_link(const struct ws_catalog *cat, const struct ws_catalog_backup *b,
                     const struct ws_catalog_backup **r, struct ws_error *err)
{
    *r = NULL;
    if (b->m.type == WS_BACKUP_FULL)
        return 0;
    if (!b->m.reference[0] || strcmp(b->m.reference, b->id) >= 0)
        return ws_error_set(err, WS_ERR_CORRUPT, "backup %s names no older backup as its reference",
                            b->id);
    if (!(*r = ws_catalog_find(cat, b->m.reference)))
        return ws_error_set(err, WS_ERR_NOT_FOUND, "backup %s: its reference %s is missing", b->id,
                            b->m.reference);
    return 0;
}

/* How a link that is not complete breaks the chains it is in. */
static const char *link_state(enum ws_backup_status status)
{
    switch (status) {
    case WS_BACKUP_DELETING:
        return "being deleted";
    case WS_BACKUP_RUNNING:
        return "running (no manifest)";
    default:
        return ws_backup_status_name(status);
    }
}

/* Sets b's chain_error and status when its chain does not resolve (catalog.h). Runs after the
 * status of every older backup is settled: a link that is complete has a complete chain. */
static void settle_chain(const struct ws_catalog *cat, struct ws_catalog_backup *b)
{
    const struct ws_catalog_backup *cur = b, *r = NULL;
    struct ws_error e = {0};
    enum ws_backup_status broken = WS_BACKUP_INCOMPLETE;
    int rc;

    if (!b->has_manifest)
        return;
    /* down the chain while the next link is broken by its own chain only */
    while ((rc = next_link(cat, cur, &r, &e)) == 0 && r && r->status != WS_BACKUP_COMPLETE) {
        if (!r->chain_error[0] || r->status == WS_BACKUP_DELETING || r->missing_wal[0])
            break;
        cur = r;
    }
    if (rc == 0 && (!r || r->status == WS_BACKUP_COMPLETE))
        return;
    if (rc == WS_ERR_CORRUPT) {
        broken = WS_BACKUP_INVALID;
        snprintf(b->chain_error, sizeof(b->chain_error), "%.299s", e.msg);
    } else {
        const char *id = rc == WS_ERR_NOT_FOUND ? cur->m.reference : r->id;
        if (rc == 0 && r->status == WS_BACKUP_INVALID)
            broken = WS_BACKUP_INVALID;
        if (cur == b)
            snprintf(b->chain_error, sizeof(b->chain_error), "its reference %s is %s", id,
                     rc ? "missing" : link_state(r->status));
        else
            snprintf(b->chain_error, sizeof(b->chain_error), "%s, a backup of its chain, is %s", id,
                     rc ? "missing" : link_state(r->status));
    }
    if (b->status == WS_BACKUP_COMPLETE || broken == WS_BACKUP_INVALID)
        b->status = b->status == WS_BACKUP_DELETING ? WS_BACKUP_DELETING : broken;
}

int ws_catalog_chain(const struct ws_catalog *cat, const struct ws_catalog_backup *b,
                     const struct ws_catalog_backup ***out, size_t *n, struct ws_error *err)
{
    const struct ws_catalog_backup **v = NULL, *cur = b;
    size_t cnt = 0;
    int rc = 0;

    *out = NULL;
    *n = 0;
    while (cur) {
        void *p = realloc(v, (cnt + 1) * sizeof(*v));
        if (!p) {
            rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
            goto out;
        }
        v = p;
        v[cnt++] = cur;
        if (!cur->has_manifest) {
            rc = ws_error_set(err, WS_ERR_CORRUPT,
                              "backup %s of the chain of backup %s has no readable manifest",
                              cur->id, b->id);
            goto out;
        }
        if ((rc = next_link(cat, cur, &cur, err)) != 0)
            goto out;
    }
    *out = v;
    *n = cnt;
    v = NULL;
out:
    free(v);
    return rc;
}

int ws_catalog_load(struct ws_repo *repo, const struct ws_keyring *kr, struct ws_catalog *cat,
                    struct ws_error *err)
{
    struct scan sc = {0};
    char prefix[128];
    size_t i;
    int rc;

    memset(cat, 0, sizeof(*cat));
    sc.cat = cat;
    sc.err = err;
    rc = ws_repo_identity_load(repo, &cat->identity, err);
    if (rc == WS_ERR_NOT_FOUND)
        return 0; /* an empty cluster: nothing archived, no backups */
    if (rc)
        return rc;
    cat->has_identity = 1;

    snprintf(prefix, sizeof(prefix), "%s/wal/", repo->cluster);
    if ((rc = ws_storage_list(repo->st, prefix, on_wal_key, &sc, err)) != 0)
        goto out;
    if (cat->nsegs > 1)
        qsort(cat->segs, cat->nsegs, sizeof(*cat->segs), cmp_seg);
    if (cat->nhistories > 1)
        qsort(cat->histories, cat->nhistories, sizeof(*cat->histories), cmp_u32);

    ws_backup_prefix(repo, prefix, sizeof(prefix));
    sc.prefix = prefix;
    sc.prefix_len = strlen(prefix);
    if ((rc = ws_storage_list_denied(repo->st, prefix, on_backup_key, &sc, err)) != 0)
        goto out;
    if (cat->nbackups > 1)
        qsort(cat->backups, cat->nbackups, sizeof(*cat->backups), cmp_backup);

    for (i = 0; i < cat->nbackups && rc == 0; i++)
        if ((rc = load_manifest(repo, kr, cat, &cat->backups[i], err)) == 0)
            settle_status(cat, &cat->backups[i]);
    for (i = 0; i < cat->nbackups && rc == 0; i++)
        settle_chain(cat, &cat->backups[i]); /* by id: references first */
out:
    if (rc)
        ws_catalog_free(cat);
    return rc;
}

void ws_catalog_free(struct ws_catalog *cat)
{
    size_t i;

    for (i = 0; i < cat->nbackups; i++)
        ws_manifest_free(&cat->backups[i].m);
    free(cat->backups);
    free(cat->segs);
    free(cat->histories);
    memset(cat, 0, sizeof(*cat));
}

int ws_catalog_manifest(struct ws_repo *repo, const struct ws_keyring *kr,
                        const struct ws_catalog_backup *b, struct ws_manifest *m,
                        struct ws_error *err)
{
    int rc;

    memset(m, 0, sizeof(*m));
    if (!b->has_manifest)
        return ws_error_set(err, WS_ERR_NOT_FOUND, "backup %s has no readable manifest", b->id);
    if ((rc = ws_manifest_load(repo, kr, b->id, m, err)) != 0)
        return rc;
    if (m->nfiles != b->nfiles || m->stop_lsn != b->m.stop_lsn || m->type != b->m.type ||
        strcmp(m->reference, b->m.reference) != 0) {
        ws_manifest_free(m);
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "the manifest of backup %s changed while it was being read", b->id);
    }
    return 0;
}

const struct ws_catalog_backup *ws_catalog_latest(const struct ws_catalog *cat)
{
    size_t i;

    for (i = cat->nbackups; i-- > 0;)
        if (cat->backups[i].status == WS_BACKUP_COMPLETE)
            return &cat->backups[i];
    return NULL;
}

struct clusters {
    char **names;
    size_t n, cap;
};

/* Keeps the cluster of key when key is that cluster's identity object. */
static int on_top_key(void *arg, const char *key, const struct ws_storage_stat *st,
                      struct ws_error *err)
{
    struct clusters *cl = arg;
    struct ws_repo r = {0};
    const char *slash = strchr(key, '/');
    char want[128];

    (void)st;
    if (!slash || (size_t)(slash - key) >= sizeof(r.cluster))
        return 0;
    memcpy(r.cluster, key, (size_t)(slash - key));
    ws_repo_identity_key(&r, want, sizeof(want));
    if (strcmp(key, want) != 0 || !ws_config_cluster_valid(r.cluster))
        return 0; /* a name no configuration could give, e.g. with a newline: not ours */
    if (cl->n == cl->cap) {
        size_t cap = cl->cap ? 2 * cl->cap : 16;
        char **p = realloc(cl->names, cap * sizeof(*p));
        if (!p)
            return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        cl->names = p;
        cl->cap = cap;
    }
    if (!(cl->names[cl->n] = strdup(r.cluster)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    cl->n++;
    return 0;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int ws_catalog_clusters(struct ws_storage *st, char ***names, size_t *n, struct ws_error *err)
{
    struct clusters cl = {0};
    int rc;

    *names = NULL;
    *n = 0;
    if ((rc = ws_storage_list(st, "", on_top_key, &cl, err)) != 0) {
        ws_catalog_clusters_free(cl.names, cl.n);
        return rc;
    }
    if (cl.n > 1)
        qsort(cl.names, cl.n, sizeof(*cl.names), cmp_name);
    *names = cl.names;
    *n = cl.n;
    return 0;
}

void ws_catalog_clusters_free(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}
