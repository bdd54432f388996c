/* prune/exec.c - deletes what a plan says, in an order a kill cannot turn into a backup that
 * looks complete but is not (prune.h, ws_prune_execute). */
#include "prune/prune_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"

static int remove_object(struct ws_repo *repo, const char *key, struct ws_error *err)
{
    int rc = ws_storage_remove(repo->st, key, err);

    return rc == WS_ERR_NOT_FOUND ? 0 : rc; /* gone already: a concurrent or earlier prune */
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);

    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Writes the tombstone <cluster>/backup/<ID>.deleting (unless an interrupted prune did), from
 * which on the catalog no longer calls the backup complete. */
static int begin_delete(struct ws_repo *repo, const struct ws_prune_backup *b, const char *tomb,
                        struct ws_error *err)
{
    char key[256], text[96], when[21];
    struct ws_error e2 = {0};
    int rc;

    if (b->status == WS_BACKUP_DELETING)
        return 0;
    ws_format_utc(time(NULL), when);
    snprintf(text, sizeof(text), "wal-prune began deleting this backup at %s\n", when);
    if ((rc = ws_backup_put_marker(repo, tomb, text, err)) == 0)
        return 0;
    /* A full repository (ENOSPC) refuses even this small object. Removing the manifest alone
     * also ends the backup's being complete (the catalog then sees a backup without manifest,
     * which a later prune removes as abandoned), and what follows frees space: go on without
     * the tombstone. If the manifest cannot go either, stop with the first error. */
    ws_backup_manifest_key(repo, b->id, key, sizeof(key));
    if (remove_object(repo, key, &e2) != 0)
        return rc;
    ws_log_warning("backup %s: could not write its tombstone (%s); its manifest was deleted "
                   "first instead",
                   b->id, err->msg);
    return 0;
}

/* Every object under prefix (the backup's directory) but the pin, in batches where the storage
 * can, in name order. */
static int remove_contents(struct ws_repo *repo, const char *prefix, struct ws_error *err)
{
    struct ws_prune_keys l = {0};
    size_t i, n = 0;
    int rc;

    if ((rc = ws_storage_list(repo->st, prefix, ws_prune_on_key, &l, err)) != 0)
        goto out;
    if (l.n > 1)
        qsort(l.keys, l.n, sizeof(*l.keys), cmp_str);
    for (i = 0; i < l.n; i++)
        if (!ends_with(l.keys[i], "/" WS_BACKUP_KEEP))
            l.keys[n++] = l.keys[i];
        else
            free(l.keys[i]);
    l.n = n;
    rc = ws_storage_remove_many(repo->st, (const char *const *)l.keys, l.n, err);
out:
    ws_prune_keys_free(&l);
    return rc;
}

/* The pin, temp files of uploads into the backup that were killed (a backup's, or the
 * tombstone's: nothing writes into a backup that is being deleted), its empty directories (of
 * bundles and of map objects, manifest.h and blockmap.h, then its own). */
static int remove_leftovers(struct ws_repo *repo, const struct ws_prune_backup *b,
                            const char *prefix, struct ws_error *err)
{
    static const char *const subdirs[] = {"data/", "map/"};
    char key[256], start[128]; /* "<cluster>/backup/<ID>": its directory and its tombstone */
    size_t ntemp = 0;
    uint64_t tbytes = 0;
    int rc;

    ws_backup_object_key(repo, b->id, WS_BACKUP_KEEP, key, sizeof(key));
    if ((rc = remove_object(repo, key, err)) != 0)
        return rc;
    snprintf(start, sizeof(start), "%.*s", (int)strlen(prefix) - 1, prefix);
    if ((rc = ws_storage_clean_temp(repo->st, start, INT64_MAX, 0, &ntemp, &tbytes, err)) != 0)
        return rc;
    for (size_t i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
        ws_backup_object_key(repo, b->id, subdirs[i], key, sizeof(key));
        if ((rc = ws_storage_remove_dir(repo->st, key, err)) != 0)
            return rc;
    }
    return ws_storage_remove_dir(repo->st, prefix, err);
}

/* Tombstone, manifest, everything else, pin, tombstone (prune.h). */
static int delete_backup(struct ws_repo *repo, const struct ws_prune_backup *b,
                         struct ws_error *err)
{
    char key[256], prefix[256], tomb[256];
    int rc;

    ws_backup_tombstone_key(repo, b->id, tomb, sizeof(tomb));
    ws_backup_manifest_key(repo, b->id, key, sizeof(key));
    ws_backup_object_key(repo, b->id, "", prefix, sizeof(prefix));
    if ((rc = begin_delete(repo, b, tomb, err)) == 0 && (rc = remove_object(repo, key, err)) == 0 &&
        (rc = remove_contents(repo, prefix, err)) == 0 &&
        (rc = remove_leftovers(repo, b, prefix, err)) == 0)
        rc = remove_object(repo, tomb, err); /* last: nothing of the backup is left */
    if (rc)
        ws_error_prefix(err, "could not delete backup %s", b->id);
    return rc;
}

void ws_prune_result_free(struct ws_prune_result *res)
{
    free(res->backup_done);
    memset(res, 0, sizeof(*res));
}

/* Does the next WAL file to delete after plan->wal_delete[j] live in the same directory? */
static int is_same_dir(const struct ws_prune_input *in, const struct ws_prune_plan *plan, size_t j)
{
    const struct ws_prune_wal *a = &in->wal[plan->wal_delete[j]], *b;

    if (j + 1 >= plan->nwal_delete)
        return 0;
    b = &in->wal[plan->wal_delete[j + 1]];
    if (a->key && b->key) {
        const char *x = strrchr(a->key, '/'), *y = strrchr(b->key, '/');
        return x - a->key == y - b->key && strncmp(a->key, b->key, (size_t)(x - a->key)) == 0;
    }
    return strncmp(a->name, b->name, 16) == 0; /* canonical layout: by the first 16 digits */
}

/* Backups first, in plan->delete_order (a backup after those that reference it): a kill leaves
 * at most one of them half-deleted, and its tombstone tells the catalog and the next run. */
static int delete_backups(struct ws_repo *repo, const struct ws_prune_input *in,
                          const struct ws_prune_plan *plan, FILE *report,
                          struct ws_prune_result *res, struct ws_error *err)
{
    size_t k;
    int rc;

    for (k = 0; k < plan->nbackups_delete; k++) {
        size_t i = plan->delete_order[k];
        if ((rc = delete_backup(repo, &in->backups[i], err)) != 0)
            return rc;
        res->backup_done[i] = 1;
        res->backups_deleted++;
        res->backup_bytes += in->backups[i].stored_bytes;
        if (report) {
            ws_prune_print_backup(report, "deleted", in, plan, i);
            fflush(report);
        }
    }
    return 0;
}

/* The keys of the next batch of WAL files from plan->wal_delete[*j] on: as many as one request
 * takes, all in one directory. Advances *j; returns the number of keys. */
static size_t wal_batch(struct ws_repo *repo, const struct ws_prune_input *in,
                        const struct ws_prune_plan *plan, size_t *j, char (*keybuf)[256],
                        const char **keys)
{
    size_t n = 0;

    for (;;) {
        const struct ws_prune_wal *w = &in->wal[plan->wal_delete[*j]];
        if (w->key)
            snprintf(keybuf[n], sizeof(keybuf[n]), "%s", w->key);
        else if (ws_repo_wal_key(repo, w->name, keybuf[n], sizeof(keybuf[n])) != 0)
            keybuf[n][0] = '\0'; /* not a WAL name (cannot happen: the catalog parsed it) */
        if (keybuf[n][0]) {
            keys[n] = keybuf[n];
            n++;
        }
        (*j)++;
        if (n == WS_STORAGE_REMOVE_BATCH || !is_same_dir(in, plan, *j - 1))
            return n;
    }
}

/* The directory of key, unless it is <cluster>/wal/ itself. */
static int remove_wal_dir(struct ws_repo *repo, const char *key, struct ws_error *err)
{
    const char *slash = strrchr(key, '/');
    char dir[256];

    snprintf(dir, sizeof(dir), "%.*s", (int)(slash - key + 1), key);
    if (strcmp(dir + strlen(repo->cluster), "/wal/") == 0)
        return 0;
    return ws_storage_remove_dir(repo->st, dir, err);
}

/* Then WAL, oldest first per timeline, one directory (a 4 GiB range of 16 MiB segments) at a
 * time: its files in batches (one request each on S3: DeleteObjects), then the directory. An
 * interruption leaves gaps at most in the one batch it hit, all of it older than what is kept;
 * the archive is shortened, never holed where it is still needed, and the next run removes the
 * rest. keybuf and keys: room for a batch. */
static int delete_wal(struct ws_repo *repo, const struct ws_prune_input *in,
                      const struct ws_prune_plan *plan, char (*keybuf)[256], const char **keys,
                      struct ws_prune_result *res, struct ws_error *err)
{
    size_t j, m;
    int rc;

    for (j = 0; j < plan->nwal_delete;) {
        size_t first = j, n = wal_batch(repo, in, plan, &j, keybuf, keys);
        if (n > 0 && (rc = ws_storage_remove_many(repo->st, keys, n, err)) != 0) {
            ws_error_prefix(err, "could not delete WAL files %s .. %s",
                            in->wal[plan->wal_delete[first]].name,
                            in->wal[plan->wal_delete[j - 1]].name);
            return rc;
        }
        for (m = first; m < j; m++) {
            res->wal_deleted++;
            res->wal_bytes += in->wal[plan->wal_delete[m]].size;
        }
        /* the directory, once its last file went (the next one lives elsewhere) */
        if (n > 0 && !is_same_dir(in, plan, j - 1) &&
            (rc = remove_wal_dir(repo, keys[n - 1], err)) != 0)
            return rc;
    }
    return 0;
}

/* Last, streamed chunks (wal-receive's) whose segment is stored whole or no longer kept. */
static int delete_chunks(struct ws_repo *repo, const struct ws_prune_input *in,
                         const struct ws_prune_plan *plan, const char **keys,
                         struct ws_prune_result *res, struct ws_error *err)
{
    for (size_t j = 0; j < plan->nchunk_delete;) {
        size_t n = 0;
        int rc;
        while (j < plan->nchunk_delete && n < WS_STORAGE_REMOVE_BATCH)
            keys[n++] = in->chunks[plan->chunk_delete[j++]].key;
        if ((rc = ws_storage_remove_many(repo->st, keys, n, err)) != 0)
            return ws_error_prefix(err, "could not delete streamed chunks");
        res->chunks_deleted += n;
    }
    return 0;
}

int ws_prune_execute(struct ws_repo *repo, const struct ws_prune_input *in,
                     const struct ws_prune_plan *plan, FILE *report, struct ws_prune_result *res,
                     struct ws_error *err)
{
    char(*keybuf)[256] = NULL;
    const char **keys = NULL;
    int rc;

    memset(res, 0, sizeof(*res));
    if (!(res->backup_done = calloc(in->nbackups + 1, sizeof(*res->backup_done))) ||
        !(keybuf = calloc(WS_STORAGE_REMOVE_BATCH, sizeof(*keybuf))) ||
        !(keys = calloc(WS_STORAGE_REMOVE_BATCH, sizeof(*keys)))) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        goto out;
    }
    if ((rc = delete_backups(repo, in, plan, report, res, err)) == 0)
        rc = delete_wal(repo, in, plan, keybuf, keys, res, err);
    if (rc == 0)
        rc = delete_chunks(repo, in, plan, keys, res, err);
out:
    free(keybuf);
    free(keys);
    return rc;
}
