/*
 * backup/create_ref.c - the reference of a diff or incr backup (docs/design/incremental.md): the
 * newest complete backup of the catalog (the newest complete full one for diff) that has block
 * digests, the server's PostgreSQL major version and block size, and a timeline in the server's
 * history; without one the backup is a full one and one warning says why.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backup/create_int.h"
#include "base/log.h"
#include "pg/pgpage.h"
#include "pg/timeline.h"
#include "repo/catalog.h"

/* Whether timeline tli, where a backup stopped at stop_lsn, is the server's timeline `current`
 * or one it descends from at or after that point (its history file in the repository). */
static int in_lineage(struct create *c, uint32_t current, uint32_t tli, uint64_t stop_lsn,
                      struct ws_error *err)
{
    struct ws_timeline_switch *sw = NULL;
    char name[32], key[256], *text = NULL;
    size_t len = 0, n = 0, i;
    int found = 0;

    if (tli == current)
        return 1;
    snprintf(name, sizeof(name), "%08" PRIX32 ".history", current);
    if (ws_repo_wal_key(&c->repo, name, key, sizeof(key)) != 0 ||
        ws_repo_get_small(&c->repo, key, &c->kr, 1u << 20, &text, &len, err) != 0 ||
        ws_timeline_history_parse(text, len, key, &sw, &n, err) != 0) {
        free(text);
        return 0;
    }
    for (i = 0; i < n; i++)
        if (sw[i].tli == tli && sw[i].end_lsn >= stop_lsn)
            found = 1;
    free(sw);
    free(text);
    return found;
}

/* The newest complete backup (a full one for diff) older than self (the id being taken: a reference
 * is always older, catalog.h; another create that began after self may have completed since): by
 * start time, then id. A complete backup's chain is complete (catalog.h). */
static struct ws_catalog_backup *newest_candidate(struct ws_catalog *cat, const char *self,
                                                  int type)
{
    struct ws_catalog_backup *best = NULL;
    size_t i;

    for (i = 0; i < cat->nbackups; i++) {
        struct ws_catalog_backup *b = &cat->backups[i];
        if (b->status != WS_BACKUP_COMPLETE || strcmp(b->id, self) >= 0 ||
            (type == WS_BACKUP_DIFF && b->m.type != WS_BACKUP_FULL))
            continue;
        if (!best || b->m.start_time > best->m.start_time ||
            (b->m.start_time == best->m.start_time && strcmp(b->id, best->id) > 0))
            best = b;
    }
    return best;
}

/* When the newest backup other than self (the one being taken; for diff: the newest full one, by
 * its manifest) is not complete and is newer than cand (or cand is NULL): its id, status and the
 * catalog's reason into why, before what why held (then joined by "; "). Else why is left
 * alone. */
static void say_newer_broken(const struct ws_catalog *cat, const char *self,
                             const struct ws_catalog_backup *cand, int type, char *why,
                             size_t whysz)
{
    const struct ws_catalog_backup *b = NULL;
    char reason[320], before[512];
    size_t i = cat->nbackups;

    while (i-- > 0 && !b)
        if (strcmp(cat->backups[i].id, self) != 0 &&
            (type != WS_BACKUP_DIFF ||
             (cat->backups[i].has_manifest && cat->backups[i].m.type == WS_BACKUP_FULL)))
            b = &cat->backups[i];
    if (!b || b == cand || b->status == WS_BACKUP_COMPLETE || (cand && strcmp(b->id, cand->id) < 0))
        return;
    ws_catalog_why(b, reason, sizeof(reason));
    snprintf(before, sizeof(before), "%s", why);
    snprintf(why, whysz, "the newest %sbackup %s is %s: %s%s%s",
             type == WS_BACKUP_DIFF ? "full " : "", b->id, ws_backup_status_name(b->status), reason,
             *before ? "; " : "", before);
}

/* Why backup b cannot be the reference (into why), or 0 when it can. */
static int unusable(struct create *c, const struct ws_catalog_backup *b, uint32_t tli, char *why,
                    size_t whysz)
{
    struct ws_error e = {0};

    if (b->m.version < 2 || b->m.block_size == 0)
        return snprintf(why, whysz, "backup %s has no block digests (manifest version %d)", b->id,
                        b->m.version);
    if (b->m.pg_version / 10000 != c->info.version / 10000)
        return snprintf(why, whysz, "backup %s is of PostgreSQL %d, the server is %d", b->id,
                        b->m.pg_version / 10000, c->info.version / 10000);
    if (b->m.block_size != WS_PG_BLCKSZ)
        return snprintf(why, whysz, "backup %s has block size %" PRIu32 ", not %d", b->id,
                        b->m.block_size, WS_PG_BLCKSZ);
    if (!in_lineage(c, tli, b->m.timeline, b->m.stop_lsn, &e))
        return snprintf(why, whysz,
                        "backup %s is on timeline %" PRIu32 ", which is not in the history of "
                        "the server's timeline %" PRIu32,
                        b->id, b->m.timeline, tli);
    return 0;
}

/* b's whole manifest into c->ref (*loaded = 1); one that no longer loads makes b unusable (why
 * says so, *loaded = 0), not an error. */
static int load_reference(struct create *c, const struct ws_catalog_backup *b, int *loaded,
                          char *why, size_t whysz, struct ws_error *err)
{
    int rc = ws_catalog_manifest(&c->repo, &c->kr, b, &c->ref, err);

    *loaded = rc == 0;
    if (rc == WS_ERR_CORRUPT || rc == WS_ERR_KEY || rc == WS_ERR_NOT_FOUND) {
        snprintf(why, whysz, "backup %s does not load: %.900s", b->id, err->msg);
        rc = 0;
    }
    return rc;
}

/* diff and incr: the reference (its whole manifest in c->ref), or a full backup and one line
 * saying why; either line names a newer backup that is not complete, and why. */
int ws_create_choose_reference(struct create *c, struct ws_error *err)
{
    struct ws_catalog cat = {0};
    struct ws_catalog_backup *b;
    int type = c->cfg->backup_type, rc, loaded = 0;
    char why[1024] = "", newer[1024] = "";

    c->m.type = WS_BACKUP_FULL;
    if (type == WS_BACKUP_FULL)
        return 0;
    if ((rc = ws_catalog_load(&c->repo, &c->kr, &cat, err)) != 0)
        return rc;
    b = newest_candidate(&cat, c->m.id, type);
    if (b && !unusable(c, b, c->tli, why, sizeof(why)) &&
        (rc = load_reference(c, b, &loaded, why, sizeof(why), err)) != 0)
        goto out;
    if (loaded) {
        say_newer_broken(&cat, c->m.id, b, type, newer, sizeof(newer));
        c->m.type = type;
        memcpy(c->m.reference, c->ref.id, sizeof(c->m.reference));
    } else
        say_newer_broken(&cat, c->m.id, b, type, why, sizeof(why));
    if (!why[0])
        snprintf(why, sizeof(why), "no complete %sbackup in the repository",
                 type == WS_BACKUP_DIFF ? "full " : "");
    if (c->m.type == WS_BACKUP_FULL)
        ws_log_warning("no usable reference for %s backup (%s): taking a full backup",
                       type == WS_BACKUP_DIFF ? "a differential" : "an incremental", why);
    else
        ws_log_info("backup %s: %s, relative to backup %s%s%s%s", c->m.id,
                    ws_backup_type_name(type), c->m.reference, *newer ? " (" : "", newer,
                    *newer ? ")" : "");
out:
    ws_catalog_free(&cat);
    return rc;
}

static int cmp_record_path(const void *a, const void *b)
{
    return strcmp((*(const struct ws_bfile *const *)a)->path,
                  (*(const struct ws_bfile *const *)b)->path);
}

/* Replaces ref's records by kept[0 .. n) (create_int.h): the others' paths and pieces freed. */
static void keep_records(struct ws_manifest *ref, struct ws_bfile *kept, size_t n)
{
    for (size_t i = 0; i < ref->nfiles; i++) {
        free(ref->files[i].path);
        free(ref->files[i].pieces);
    }
    free(ref->files);
    ref->files = kept;
    ref->nfiles = n;
    ref->files_cap = n; /* kept has exactly n records */
}

int ws_create_ref_index(const struct ws_manifest *ref, struct ws_bfile ***out, struct ws_error *err)
{
    size_t n = ref->nfiles, i;

    if (!(*out = malloc((n ? n : 1) * sizeof(**out))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    for (i = 0; i < n; i++)
        (*out)[i] = &ref->files[i];
    qsort(*out, n, sizeof(**out), cmp_record_path);
    return 0;
}

struct ws_bfile *ws_create_ref_find(struct ws_bfile *const *index, size_t n, const char *path)
{
    struct ws_bfile want = {0}, *wp = &want, *const * hit;

    want.path = (char *)path;
    hit = bsearch(&wp, index, n, sizeof(*index), cmp_record_path);
    return hit ? *hit : NULL;
}

/* Per file, the reference's record of the same path (j->ref_of), moved into an array of the
 * matched records only (a manifest's arrays grow by doubling, and the paths are the walk's too). */
int ws_create_match_reference(struct create *c, struct ws_error *err)
{
    struct job *j = &c->j;
    struct ws_manifest *ref = &c->ref;
    struct ws_bfile **sorted = NULL, *kept = NULL, *hit;
    size_t i, k = 0;
    int rc;

    if ((rc = ws_create_ref_index(ref, &sorted, err)) != 0)
        return rc;
    if (!(kept = malloc((j->nfiles ? j->nfiles : 1) * sizeof(*kept))) ||
        !(j->ref_of = calloc(j->nfiles ? j->nfiles : 1, sizeof(*j->ref_of)))) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        goto out;
    }
    for (i = 0; i < j->nfiles; i++) {
        if (!(hit = ws_create_ref_find(sorted, ref->nfiles, j->files[i].path)))
            continue;
        kept[k] = *hit;
        kept[k].path = NULL;
        hit->pieces = NULL; /* moved */
        hit->npieces = 0;
        j->ref_of[i] = &kept[k++];
    }
    keep_records(ref, kept, k);
    kept = NULL;
out:
    free(kept);
    free(sorted);
    return rc;
}

/* diff and incr, once the backup is stored: its reference still there (its manifest, no
 * tombstone). wal-prune cannot know the reference of a backup without a manifest, so a prune
 * during the copy may have deleted it; the backup is then incomplete in the catalog and must not
 * be reported taken. */
int ws_create_check_reference(struct create *c, struct ws_error *err)
{
    struct ws_storage_stat st;
    char key[256];
    int rc, gone;

    if (c->m.type == WS_BACKUP_FULL)
        return 0;
    ws_backup_tombstone_key(&c->repo, c->m.reference, key, sizeof(key));
    if ((rc = ws_storage_stat(c->repo.st, key, &st, err)) != 0 && rc != WS_ERR_NOT_FOUND)
        return rc;
    gone = rc == 0;
    ws_backup_manifest_key(&c->repo, c->m.reference, key, sizeof(key));
    if (!gone && (rc = ws_storage_stat(c->repo.st, key, &st, err)) != 0 && rc != WS_ERR_NOT_FOUND)
        return rc;
    if (gone || rc == WS_ERR_NOT_FOUND)
        return ws_error_set(err, WS_ERR_INVALID,
                            "backup %s is not complete: its reference %s was deleted while it was "
                            "being taken (wal-prune); take another backup",
                            c->m.id, c->m.reference);
    return 0;
}
