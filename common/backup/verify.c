/*
 * backup/verify.c - `basebackup verify [ID | --all]`: re-reads backups from the repository.
 *
 * For a backup: every bundle is read through the object reader (authentication, checksums) and
 * the bundle splitter in verify mode (each whole file's size and SHA-256 against the manifest,
 * each delta extent's structure: repo/delta.c), every map object is read and verified and must
 * hold the block digests its files' map lines point to, and every WAL segment from its start to
 * its stop is read and verified too. A diff or incr also needs its chain: every link there,
 * complete (the catalog's status) and its manifest loaded, and every DELTA and REF record's base
 * a link of its chain that holds the same path. With --all: every backup, and WAL continuity per
 * timeline from the oldest backup's start to the newest segment. Each problem is one line on
 * stderr; the result is WS_ERR_CORRUPT when there was any.
 */
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backup/backup.h"
#include "backup/extra.h"
#include "backup/pool.h"
#include "base/log.h"
#include "io/object.h"
#include "pg/wal.h"
#include "repo/blockmap.h"
#include "repo/bundle.h"

struct vctx {
    const char *id;
    size_t problems;
};

static void problem(struct vctx *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(struct vctx *v, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ws_log(WS_LOG_ERROR, "%s", msg);
    v->problems++;
}

static void file_problem(void *arg, const struct ws_bfile *f, const char *msg)
{
    struct vctx *v = arg;

    if (f->npieces)
        problem(v, "backup %s: file \"%s\" (bundles %06" PRIu32 " to %06" PRIu32 "): %s", v->id,
                f->path, f->bundle, f->pieces[f->npieces - 1].bundle, msg);
    else
        problem(v, "backup %s: file \"%s\" (bundle %06" PRIu32 "): %s", v->id, f->path, f->bundle,
                msg);
}

/* Reads and verifies one WAL object. */
static int verify_wal(struct ws_repo *repo, const struct ws_keyring *kr, const char *name,
                      struct vctx *v, struct ws_error *err)
{
    struct ws_sink *null = NULL, *reader = NULL;
    char key[256];
    int rc;

    ws_repo_wal_key(repo, name, key, sizeof(key));
    if ((rc = ws_null_sink_new(&null, err)) != 0 ||
        (rc = ws_object_reader_new(null, key, kr, 1, &reader, err)) != 0)
        return rc;
    rc = ws_storage_get(repo->st, key, 0, WS_STORAGE_TO_END, reader, err);
    if (rc == 0)
        rc = ws_sink_finish(reader, err);
    ws_sink_free(reader);
    if (rc == WS_ERR_NOT_FOUND) {
        problem(v, "backup %s: WAL file %s is missing from the repository", v->id, name);
        return 0;
    }
    if (rc == WS_ERR_CORRUPT || rc == WS_ERR_KEY) {
        problem(v, "backup %s: WAL file %s: %s", v->id, name, err->msg);
        return 0;
    }
    return rc;
}

struct vjob {
    const struct ws_keyring *kr;
    const struct ws_catalog_backup *b;
    struct ws_bextent *ext; /* sorted by (bundle, offset) */
    size_t *first;          /* first index in ext of each bundle (+1 sentinel) */
    struct vctx v;
};

/* Reads bundle bn through the splitter in verify mode; what is missing or damaged is a
 * problem, not an error. */
static int verify_bundle(void *arg, struct ws_pool_worker *w, size_t bn, struct ws_error *err)
{
    struct vjob *j = arg;
    const char *id = j->b->id;
    struct ws_bundle_opts bo = {0};
    struct ws_sink *split = NULL, *reader = NULL;
    char key[256];
    size_t a = j->first[bn], z = j->first[bn + 1], f;
    int rc;

    bo.problem = file_problem;
    bo.arg = &j->v;
    bo.block_size = j->b->m.block_size; /* the header's */
    ws_backup_bundle_key(&w->repo, id, (uint32_t)bn, key, sizeof(key));
    if ((rc = ws_bundle_splitter_new_ext(j->ext + a, z - a, &bo, &split, err)) != 0 ||
        (rc = ws_object_reader_new(split, key, j->kr, 0, &reader, err)) != 0)
        return rc;
    rc = ws_storage_get(w->repo.st, key, 0, WS_STORAGE_TO_END, reader, err);
    if (rc == 0)
        rc = ws_sink_finish(reader, err);
    if (rc == WS_ERR_NOT_FOUND || rc == WS_ERR_CORRUPT || rc == WS_ERR_KEY) {
        problem(&j->v, "backup %s: bundle %s: %s", id, key,
                rc == WS_ERR_NOT_FOUND ? "missing from the repository" : err->msg);
        for (f = a; f < z && f < a + 20; f++)
            problem(&j->v, "backup %s: file \"%s\" is in that bundle", id, j->ext[f].file->path);
        if (z - a > 20)
            problem(&j->v, "backup %s: ... and %zu more files in that bundle", id, z - a - 20);
        rc = 0;
    }
    ws_sink_free(reader);
    return rc;
}

static void extra_problem(void *arg, const struct ws_bfile *f, const char *msg)
{
    struct vctx *v = arg;

    problem(v, "backup %s: extra file \"/%s\": %s", v->id, f->path, msg);
}

/* The object of the extra paths (backup/extra.h), like a bundle: damage is a problem. */
static int verify_extra(struct ws_repo *repo, const struct ws_keyring *kr,
                        const struct ws_manifest *m, struct vctx *v, struct ws_error *err)
{
    struct ws_bundle_opts bo = {0};
    int rc;

    bo.problem = extra_problem;
    bo.arg = v;
    rc = ws_extra_split(repo, kr, m, &bo, err);
    if (rc == WS_ERR_NOT_FOUND || rc == WS_ERR_CORRUPT || rc == WS_ERR_KEY) {
        problem(v, "%s", err->msg);
        rc = 0;
    }
    return rc;
}

/* One running SHA-256 per file in pieces, set on its extents. A file's pieces lie in bundles
 * of increasing number: fed in bundle order, each such file is hashed from its first byte to
 * its last (which is why verify runs its pool with one worker). */
static int piece_digests(const struct ws_manifest *m, struct ws_bextent *ext, size_t next,
                         EVP_MD_CTX **mds, struct ws_error *err)
{
    size_t i;

    for (i = 0; i < next; i++) {
        const struct ws_bfile *bf = ext[i].file;
        size_t idx = (size_t)(bf - m->files);
        if (!bf->npieces)
            continue;
        if (!mds[idx] && (!(mds[idx] = EVP_MD_CTX_new()) ||
                          EVP_DigestInit_ex(mds[idx], EVP_sha256(), NULL) != 1))
            return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        ext[i].md = mds[idx];
    }
    return 0;
}

/* Map objects: each there and verifying, each holding the digests its files' map lines point to
 * (the file's index plus ws_blockmap_blocks of its size). */
static int verify_maps(struct ws_repo *repo, const struct ws_keyring *kr,
                       const struct ws_manifest *m, struct vctx *v, struct ws_error *err)
{
    uint64_t *need = calloc((size_t)m->maps + 1, sizeof(*need));
    const struct ws_bfile **by = calloc((size_t)m->maps + 1, sizeof(*by));
    size_t i, len;
    uint32_t k;
    int rc = 0;

    if (!need || !by) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        goto out;
    }
    for (i = 0; i < m->nfiles; i++) {
        const struct ws_bfile *f = &m->files[i];
        uint64_t end;
        if (!f->has_map || f->map >= m->maps) /* the parser allows neither without maps */
            continue;
        end = f->map_index + ws_blockmap_blocks(f->size, m->block_size);
        if (end > need[f->map]) {
            need[f->map] = end;
            by[f->map] = f;
        }
    }
    for (k = 0; k < m->maps && rc == 0; k++) {
        uint8_t *data = NULL;
        rc = ws_blockmap_load(repo, kr, m->id, k, &data, &len, err);
        free(data);
        if (rc == WS_ERR_NOT_FOUND || rc == WS_ERR_CORRUPT || rc == WS_ERR_KEY) {
            problem(v, "backup %s: map object %06" PRIu32 ": %s", m->id, k,
                    rc == WS_ERR_NOT_FOUND ? "missing from the repository" : err->msg);
            rc = 0;
        } else if (rc == 0 && len / WS_BLOCK_DIGEST_SIZE < need[k]) {
            problem(v,
                    "backup %s: map object %06" PRIu32 " holds %zu block digests, but file \"%s\" "
                    "needs %" PRIu64,
                    m->id, k, len / WS_BLOCK_DIGEST_SIZE, by[k]->path, need[k]);
        }
    }
out:
    free(need);
    free(by);
    return rc;
}

static int cmp_path(const void *a, const void *b)
{
    return strcmp((*(const struct ws_bfile *const *)a)->path,
                  (*(const struct ws_bfile *const *)b)->path);
}

/* A DELTA or REF record of the backup verified: its path (taken from its manifest) and the index
 * in its chain of its base. */
struct vref {
    char *path;
    size_t link;
};

static int cmp_vref(const void *a, const void *b)
{
    const struct vref *x = a, *y = b;
    return x->link < y->link ? -1 : x->link > y->link;
}

static void free_vrefs(struct vref *refs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(refs[i].path);
    free(refs);
}

/* The DELTA and REF records of *m (the whole manifest of chain[0]) into *out, sorted by the link
 * of chain (n links) that is their base, their paths taken from m; one whose base is not in the
 * chain is a problem. m is freed (so that only one manifest's records are held while each link's
 * is loaded), also on failure. */
static int take_refs(struct ws_manifest *m, const struct ws_catalog_backup **chain, size_t n,
                     struct vref **out, size_t *nout, struct vctx *v, struct ws_error *err)
{
    struct vref *refs = calloc(m->nfiles + 1, sizeof(*refs));
    size_t i, k, cnt = 0;

    if (!refs) {
        ws_manifest_free(m);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    }
    for (i = 0; i < m->nfiles; i++) {
        struct ws_bfile *f = &m->files[i];
        if (f->kind == WS_BFILE_WHOLE)
            continue;
        for (k = 1; k < n && strcmp(f->base, chain[k]->id) != 0; k++)
            ;
        if (k == n) {
            problem(v, "backup %s: file \"%s\": its base backup \"%s\" is not in its chain", m->id,
                    f->path, f->base);
            continue;
        }
        refs[cnt].path = f->path;
        refs[cnt++].link = k;
        f->path = NULL;
    }
    ws_manifest_free(m);
    if (cnt > 1)
        qsort(refs, cnt, sizeof(*refs), cmp_vref);
    *out = refs;
    *nout = cnt;
    return 0;
}

/* refs[0 .. n) (their base is link, chain[0] is b): link must hold each path. Loads link's whole
 * manifest, freed before returning; one that does not load is a problem. */
static int check_base(struct ws_repo *repo, const struct ws_keyring *kr,
                      const struct ws_catalog_backup *b, const struct vref *refs, size_t n,
                      const struct ws_catalog_backup *link, struct vctx *v, struct ws_error *err)
{
    struct ws_manifest lm = {0};
    const struct ws_bfile **idx = NULL;
    size_t i;
    int rc = ws_catalog_manifest(repo, kr, link, &lm, err);

    if (rc == WS_ERR_NOT_FOUND || rc == WS_ERR_CORRUPT || rc == WS_ERR_KEY) {
        problem(v, "backup %s: %s, a backup of its chain: %s", b->id, link->id, err->msg);
        return 0;
    }
    if (rc)
        return rc;
    if (!(idx = calloc(lm.nfiles + 1, sizeof(*idx)))) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        goto out;
    }
    for (i = 0; i < lm.nfiles; i++)
        idx[i] = &lm.files[i];
    if (lm.nfiles > 1)
        qsort(idx, lm.nfiles, sizeof(*idx), cmp_path);
    for (i = 0; i < n; i++) {
        struct ws_bfile want = {0};
        const struct ws_bfile *key = &want;
        want.path = refs[i].path;
        if (!lm.nfiles || !bsearch(&key, idx, lm.nfiles, sizeof(*idx), cmp_path))
            problem(v, "backup %s: file \"%s\": its base backup %s does not hold it", b->id,
                    refs[i].path, link->id);
    }
out:
    free(idx);
    ws_manifest_free(&lm);
    return rc;
}

/* b's chain (*m: b's whole manifest, freed here: take_refs): every link there and complete; every
 * DELTA and REF record names a link older than b that holds the same path (each link's whole
 * manifest loaded in turn). */
static int verify_chain(struct ws_repo *repo, const struct ws_keyring *kr,
                        const struct ws_catalog *cat, const struct ws_catalog_backup *b,
                        struct ws_manifest *m, struct vctx *v, struct ws_error *err)
{
    const struct ws_catalog_backup **chain = NULL;
    struct vref *refs = NULL;
    size_t n = 0, nrefs = 0, i = 0, k, e;
    int rc = ws_catalog_chain(cat, b, &chain, &n, err);

    if (rc == WS_ERR_NOT_FOUND || rc == WS_ERR_CORRUPT) {
        problem(v, "%s", err->msg);
        ws_manifest_free(m);
        return 0;
    }
    if (rc != 0 || (rc = take_refs(m, chain, n, &refs, &nrefs, v, err)) != 0)
        goto out;
    for (k = 1; k < n && rc == 0; k++) {
        if (chain[k]->status != WS_BACKUP_COMPLETE)
            problem(v, "backup %s: %s, a backup of its chain, is %s", b->id, chain[k]->id,
                    ws_backup_status_name(chain[k]->status));
        for (e = i; e < nrefs && refs[e].link == k; e++)
            ;
        rc = check_base(repo, kr, b, refs + i, e - i, chain[k], v, err);
        i = e;
    }
out:
    ws_manifest_free(m);
    free_vrefs(refs, nrefs);
    free(chain);
    return rc;
}

/* What reading the bundles needed: the extents and the running digests (mds: n entries). */
static void free_extents(struct vjob *j, EVP_MD_CTX **mds, size_t n)
{
    for (size_t i = 0; mds && i < n; i++)
        EVP_MD_CTX_free(mds[i]);
    free(mds);
    free(j->ext);
    free(j->first);
    j->ext = NULL;
    j->first = NULL;
}

static int verify_backup(const struct ws_config *cfg, const struct ws_backup_env *env,
                         struct ws_repo *repo, const struct ws_keyring *kr,
                         const struct ws_catalog *cat, const struct ws_catalog_backup *b,
                         struct ws_error *err)
{
    struct ws_manifest full = {0};
    const struct ws_manifest *m = &full;
    struct vjob j = {kr, b, NULL, NULL, {b->id, 0}};
    struct ws_pool_params pp = {0};
    size_t next = 0;
    EVP_MD_CTX **mds = NULL; /* one running SHA-256 per file in pieces */
    uint64_t s;
    int rc = 0;

    if (!b->has_manifest) {
        if (b->bad_manifest)
            ws_log(WS_LOG_ERROR, "backup %s: %s", b->id, b->manifest_error);
        else
            ws_log(WS_LOG_ERROR, "backup %s has no manifest: it is still running or it failed",
                   b->id);
        return ws_error_set(err, WS_ERR_CORRUPT, "backup %s is not complete", b->id);
    }
    if ((rc = ws_catalog_manifest(repo, kr, b, &full, err)) != 0 ||
        (rc = ws_bundle_extents(m, &j.ext, &j.first, &next, err)) != 0)
        goto out;
    if (!(mds = calloc(m->nfiles + 1, sizeof(*mds)))) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        goto out;
    }
    if ((rc = piece_digests(m, j.ext, next, mds, err)) != 0)
        goto out;
    pp.cfg = cfg;
    pp.env = env;
    pp.repo = repo;
    pp.workers = 1;
    pp.ntasks = m->bundles;
    pp.task = verify_bundle;
    pp.arg = &j;
    if ((rc = ws_pool_run(&pp, err)) != 0)
        goto out;
    free_extents(&j, mds, m->nfiles); /* before the chain's manifests are loaded */
    mds = NULL;
    if ((rc = verify_maps(repo, kr, m, &j.v, err)) != 0 ||
        (rc = verify_extra(repo, kr, m, &j.v, err)) != 0 ||
        (rc = verify_chain(repo, kr, cat, b, &full, &j.v, err)) != 0)
        goto out;
    /* full is freed now: the catalog's header (b->m) has the rest */
    for (s = ws_manifest_start_segno(&b->m); s <= ws_manifest_stop_segno(&b->m); s++) {
        char name[WS_WAL_NAME_LEN + 1];
        ws_wal_format_name(name, b->m.timeline, s, b->m.wal_segment_size);
        if ((rc = verify_wal(repo, kr, name, &j.v, err)) != 0)
            goto out;
    }
    if (j.v.problems)
        rc = ws_error_set(err, WS_ERR_CORRUPT, "backup %s failed verification: %zu problem(s)",
                          b->id, j.v.problems);
    else
        printf("backup %s: OK (%zu files, %" PRIu64 " bytes, WAL %s)\n", b->id, b->nfiles,
               b->m.bytes, "present and valid");
out:
    free_extents(&j, mds, m->nfiles);
    ws_manifest_free(&full);
    return rc;
}

/* WAL continuity per timeline, from the oldest backup's start segment on its timeline. */
static size_t check_continuity(const struct ws_catalog *cat, const struct ws_catalog_backup *oldest)
{
    size_t i, gaps = 0;
    uint32_t ss = cat->identity.wal_segment_size;

    for (i = 0; i + 1 < cat->nsegs; i++) {
        const struct ws_wal_seg *a = &cat->segs[i], *b = &cat->segs[i + 1];
        char x[32], y[32];
        if (a->tli != b->tli || b->segno == a->segno + 1)
            continue;
        if (oldest && a->tli == oldest->m.timeline &&
            b->segno <= ws_manifest_start_segno(&oldest->m))
            continue; /* before the oldest backup: not needed */
        ws_wal_format_name(x, a->tli, a->segno + 1, ss);
        ws_wal_format_name(y, b->tli, b->segno - 1, ss);
        ws_log(WS_LOG_ERROR, "WAL gap on timeline %" PRIu32 ": %s to %s are missing", a->tli, x, y);
        gaps++;
    }
    return gaps;
}

/* --all: every backup, then WAL continuity. */
static int verify_all(const struct ws_config *cfg, const struct ws_backup_env *env,
                      struct ws_repo *repo, const struct ws_keyring *kr,
                      const struct ws_catalog *cat, struct ws_error *err)
{
    const struct ws_catalog_backup *oldest = NULL;
    size_t i, failed = 0, gaps, unreadable = 0;
    int rc;

    for (i = 0; i < cat->nbackups; i++) {
        const struct ws_catalog_backup *b = &cat->backups[i];
        if (b->has_manifest && !oldest)
            oldest = b;
        if (b->status == WS_BACKUP_UNREADABLE) {
            ws_log_warning("backup %s is unreadable: %s; not verified", b->id, b->manifest_error);
            unreadable++;
            continue;
        }
        if (b->bad_manifest) {
            ws_log(WS_LOG_ERROR, "backup %s: %s", b->id, b->manifest_error);
            failed++;
            continue;
        }
        if (!b->has_manifest) {
            ws_log_warning("backup %s has no manifest (running or failed); skipped", b->id);
            continue;
        }
        rc = verify_backup(cfg, env, repo, kr, cat, b, err);
        if (rc == WS_ERR_CORRUPT) {
            ws_log_error(err);
            failed++;
        } else if (rc) {
            return rc;
        }
    }
    gaps = check_continuity(cat, oldest);
    if (failed || gaps)
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "verification failed: %zu backup(s) with problems, %zu WAL gap(s)",
                            failed, gaps);
    if (unreadable)
        return ws_error_set(err, WS_ERR_INVALID,
                            "%zu of %zu backup(s) and the WAL archive verified; %zu could not be "
                            "read by this user",
                            cat->nbackups - unreadable, cat->nbackups, unreadable);
    printf("all %zu backup(s) and the WAL archive verified\n", cat->nbackups);
    return 0;
}

/* The backup `id`, else the newest complete one, else the newest with a manifest. */
static int pick_backup(const struct ws_catalog *cat, const struct ws_repo *repo, const char *id,
                       const struct ws_catalog_backup **out, struct ws_error *err)
{
    const struct ws_catalog_backup *b = NULL;
    size_t i;

    if (id) {
        for (i = 0; i < cat->nbackups; i++)
            if (strcmp(cat->backups[i].id, id) == 0)
                b = &cat->backups[i];
        if (!b)
            return ws_error_set(err, WS_ERR_NOT_FOUND, "backup %s is not in the repository", id);
    } else if (!(b = ws_catalog_latest(cat))) {
        for (i = cat->nbackups; i-- > 0 && !b;)
            if (cat->backups[i].has_manifest)
                b = &cat->backups[i];
        if (!b)
            return ws_error_set(err, WS_ERR_NOT_FOUND,
                                "the repository holds no backup of cluster "
                                "\"%s\"",
                                repo->cluster);
    }
    *out = b;
    return 0;
}

int ws_backup_verify(const struct ws_config *cfg, const struct ws_backup_env *env, const char *id,
                     int all, struct ws_error *err)
{
    struct ws_repo repo = {0};
    struct ws_keyring kr = {0};
    struct ws_catalog cat = {0};
    const struct ws_catalog_backup *b = NULL;
    int rc;

    if ((rc = ws_keyring_load(cfg, &kr, err)) != 0 ||
        (rc = ws_backup_repo_open(env, cfg, &repo, err)) != 0 ||
        (rc = ws_catalog_load(&repo, &kr, &cat, err)) != 0)
        goto out;
    if (all)
        rc = verify_all(cfg, env, &repo, &kr, &cat, err);
    else if ((rc = pick_backup(&cat, &repo, id, &b, err)) == 0)
        rc = verify_backup(cfg, env, &repo, &kr, &cat, b, err);
out:
    ws_catalog_free(&cat);
    ws_repo_close(&repo);
    ws_keyring_wipe(&kr);
    return rc;
}
