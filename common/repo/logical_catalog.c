/* logical_catalog.c - the logical backups of a cluster, their status, and deleting one
 * (logical.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repo/logical.h"

struct listed {
    char *rest; /* "<ID>/<name>" */
    uint64_t size;
};

struct scan {
    struct ws_logical_catalog *cat;
    size_t cap;
    struct listed *objs;
    size_t nobjs, cap_objs;
    const char *prefix;
    size_t prefix_len;
};

static struct ws_logical_entry *entry(struct scan *sc, const char *id)
{
    struct ws_logical_catalog *cat = sc->cat;
    size_t i;

    for (i = cat->n; i-- > 0;)
        if (strcmp(cat->backups[i].id, id) == 0)
            return &cat->backups[i];
    if (cat->n == sc->cap) {
        size_t cap = sc->cap ? sc->cap * 2 : 16;
        void *p = realloc(cat->backups, cap * sizeof(*cat->backups));
        if (!p)
            return NULL;
        cat->backups = p;
        sc->cap = cap;
    }
    memset(&cat->backups[cat->n], 0, sizeof(cat->backups[0]));
    memcpy(cat->backups[cat->n].id, id, WS_BACKUP_ID_LEN + 1);
    return &cat->backups[cat->n++];
}

static int on_key(void *arg, const char *key, const struct ws_storage_stat *st,
                  struct ws_error *err)
{
    struct scan *sc = arg;
    const char *rest, *name;
    char id[WS_BACKUP_ID_LEN + 1];
    struct ws_logical_entry *e;

    if (strncmp(key, sc->prefix, sc->prefix_len) != 0)
        return 0;
    rest = key + sc->prefix_len;
    if (strlen(rest) < WS_BACKUP_ID_LEN + 2 || rest[WS_BACKUP_ID_LEN] != '/')
        return 0;
    memcpy(id, rest, WS_BACKUP_ID_LEN);
    id[WS_BACKUP_ID_LEN] = '\0';
    if (!ws_backup_id_valid(id))
        return 0;
    if (!(e = entry(sc, id)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    name = rest + WS_BACKUP_ID_LEN + 1;
    if (strcmp(name, WS_LOGICAL_MANIFEST) == 0)
        e->has_manifest = 1; /* for now: listed; load_manifest decides */
    else if (strcmp(name, WS_LOGICAL_KEEP) == 0)
        e->pinned = 1;
    e->nobjects++;
    e->stored_total += st->size;
    if (st->mtime > e->newest_mtime)
        e->newest_mtime = st->mtime;
    if (sc->nobjs == sc->cap_objs) {
        size_t cap = sc->cap_objs ? sc->cap_objs * 2 : 64;
        void *p = realloc(sc->objs, cap * sizeof(*sc->objs));
        if (!p)
            return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        sc->objs = p;
        sc->cap_objs = cap;
    }
    if (!(sc->objs[sc->nobjs].rest = strdup(rest)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    sc->objs[sc->nobjs++].size = st->size;
    return 0;
}

static int cmp_listed(const void *a, const void *b)
{
    return strcmp(((const struct listed *)a)->rest, ((const struct listed *)b)->rest);
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const struct ws_logical_entry *)a)->id,
                  ((const struct ws_logical_entry *)b)->id);
}

/* The first object of e's manifest that is not listed with its stored size, into e->why. */
static void check_objects(const struct scan *sc, struct ws_logical_entry *e)
{
    size_t i, k;
    char rest[WS_BACKUP_ID_LEN + WS_LOGICAL_NAME_MAX + 2];

    for (i = 0; i < e->m.ndumps; i++)
        for (k = 0; k < e->m.dumps[i].nobjects; k++) {
            const struct ws_logical_object *o = &e->m.dumps[i].objects[k];
            struct listed key = {rest, 0}, *hit;
            snprintf(rest, sizeof(rest), "%s/%s", e->id, o->name);
            hit = sc->nobjs == 0
                      ? NULL
                      : bsearch(&key, sc->objs, sc->nobjs, sizeof(*sc->objs), cmp_listed);
            if (!hit) {
                snprintf(e->why, sizeof(e->why), "its object %.200s is missing", o->name);
                return;
            }
            if (hit->size != o->stored_bytes) {
                snprintf(e->why, sizeof(e->why), "its object %.200s has %llu bytes, not %llu",
                         o->name, (unsigned long long)hit->size,
                         (unsigned long long)o->stored_bytes);
                return;
            }
        }
}

/* Loads e's manifest and sets its status; only out of memory and storage errors fail. */
static int classify(struct ws_repo *repo, const struct ws_keyring *kr, const struct scan *sc,
                    struct ws_logical_entry *e, struct ws_error *err)
{
    struct ws_error merr = {0};
    int rc;

    e->status = WS_LOGICAL_INCOMPLETE;
    if (!e->has_manifest) {
        snprintf(e->why, sizeof(e->why), "it has no manifest (still running, or cut short)");
        return 0;
    }
    e->has_manifest = 0;
    rc = ws_logical_manifest_load(repo, kr, e->id, &e->m, &merr);
    if (rc == WS_ERR_STORAGE || rc == WS_ERR_INTERNAL) {
        *err = merr;
        return rc;
    }
    if (rc == WS_ERR_NOT_FOUND) {
        snprintf(e->why, sizeof(e->why), "it has no manifest (still running, or cut short)");
        return 0;
    }
    if (rc != 0) {
        e->status = WS_LOGICAL_INVALID;
        snprintf(e->why, sizeof(e->why), "%.300s", merr.msg);
        return 0;
    }
    e->has_manifest = 1;
    check_objects(sc, e);
    if (!e->why[0])
        e->status = WS_LOGICAL_COMPLETE;
    return 0;
}

int ws_logical_catalog_load(struct ws_repo *repo, const struct ws_keyring *kr,
                            struct ws_logical_catalog *cat, struct ws_error *err)
{
    struct scan sc = {0};
    char prefix[160];
    size_t i;
    int rc;

    memset(cat, 0, sizeof(*cat));
    ws_logical_prefix(repo, prefix, sizeof(prefix));
    sc.cat = cat;
    sc.prefix = prefix;
    sc.prefix_len = strlen(prefix);
    if ((rc = ws_storage_list(repo->st, prefix, on_key, &sc, err)) != 0)
        goto out;
    if (sc.nobjs > 0)
        qsort(sc.objs, sc.nobjs, sizeof(*sc.objs), cmp_listed);
    if (cat->n > 0)
        qsort(cat->backups, cat->n, sizeof(*cat->backups), cmp_entry);
    for (i = 0; i < cat->n; i++)
        if ((rc = classify(repo, kr, &sc, &cat->backups[i], err)) != 0)
            goto out;
out:
    for (i = 0; i < sc.nobjs; i++)
        free(sc.objs[i].rest);
    free(sc.objs);
    if (rc)
        ws_logical_catalog_free(cat);
    return rc;
}

void ws_logical_catalog_free(struct ws_logical_catalog *cat)
{
    size_t i;

    for (i = 0; i < cat->n; i++)
        ws_logical_manifest_free(&cat->backups[i].m);
    free(cat->backups);
    memset(cat, 0, sizeof(*cat));
}

const struct ws_logical_entry *ws_logical_catalog_find(const struct ws_logical_catalog *cat,
                                                       const char *id)
{
    size_t i;

    for (i = 0; i < cat->n; i++)
        if (strcmp(cat->backups[i].id, id) == 0)
            return &cat->backups[i];
    return NULL;
}

const struct ws_logical_entry *ws_logical_catalog_latest(const struct ws_logical_catalog *cat)
{
    size_t i;

    for (i = cat->n; i-- > 0;)
        if (cat->backups[i].status == WS_LOGICAL_COMPLETE)
            return &cat->backups[i];
    return NULL;
}

/* ---- delete ---------------------------------------------------------------------------------- */

struct keys {
    char **v;
    size_t n, cap;
};

static int on_delete_key(void *arg, const char *key, const struct ws_storage_stat *st,
                         struct ws_error *err)
{
    struct keys *k = arg;

    (void)st;
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 32;
        void *p = realloc(k->v, cap * sizeof(*k->v));
        if (!p)
            return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        k->v = p;
        k->cap = cap;
    }
    if (!(k->v[k->n] = strdup(key)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    k->n++;
    return 0;
}

int ws_logical_delete(struct ws_repo *repo, const char *id, struct ws_error *err)
{
    struct keys k = {0};
    char key[256], prefix[256];
    size_t i;
    int rc;

    ws_logical_key(repo, id, WS_LOGICAL_MANIFEST, key, sizeof(key));
    rc = ws_storage_remove(repo->st, key, err);
    if (rc != 0 && rc != WS_ERR_NOT_FOUND)
        return ws_error_prefix(err, "could not delete logical backup %s", id);
    ws_logical_key(repo, id, "", prefix, sizeof(prefix));
    if ((rc = ws_storage_list(repo->st, prefix, on_delete_key, &k, err)) == 0 && k.n > 0)
        rc = ws_storage_remove_many(repo->st, (const char *const *)k.v, k.n, err);
    if (rc == 0)
        rc = ws_storage_remove_dir(repo->st, prefix, err);
    if (rc != 0)
        ws_error_prefix(err, "could not delete logical backup %s", id);
    for (i = 0; i < k.n; i++)
        free(k.v[i]);
    free(k.v);
    return rc;
}
