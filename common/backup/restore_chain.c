/*
 * backup/restore_chain.c - restore of a backup of a chain (full <- diff <- incr ...), layer by
 * layer, oldest first (docs/design/incremental.md, "Restore of a chain"). Holds the target's
 * manifest (the caller's) and one layer's manifest at a time, never a block map.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup/pool.h"
#include "backup/restore_int.h"
#include "base/log.h"
#include "io/hashpipe.h"

#define READ_BUF (1u << 20)

/* A link must be of the same system, PostgreSQL major version (a minor release keeps the on-disk
 * format, and create takes a reference of the same major version) and block size: its blocks are
 * pasted into the target's files. */
static int check_link(const struct ws_manifest *top, const struct ws_manifest *ref,
                      struct ws_error *err)
{
    if (ref->system_identifier != top->system_identifier ||
        ref->pg_version / 10000 != top->pg_version / 10000 || ref->block_size != top->block_size)
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "backup %s cannot be restored: backup %s of its chain is of another "
                            "database system, PostgreSQL major version or block size",
                            top->id, ref->id);
    return 0;
}

int ws_restore_resolve_chain(const struct ws_catalog *cat, struct restore *r, struct ws_error *err)
{
    const struct ws_catalog_backup *b = ws_catalog_find(cat, r->m->id), **links = NULL;
    size_t n = 0;
    int rc;

    /* the catalog called the backup complete, so its whole chain is (catalog.h) */
    if (!b)
        return ws_error_set(err, WS_ERR_NOT_FOUND, "backup %s is not in the repository", r->m->id);
    if ((rc = ws_catalog_chain(cat, b, &links, &n, err)) != 0)
        goto out;
    if (!(r->chain = calloc(n, sizeof(*r->chain)))) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        goto out;
    }
    r->nchain = n;
    /* newest first from the catalog, oldest first here */
    for (size_t i = 0; i < n && rc == 0; i++) {
        memcpy(r->chain[n - 1 - i], links[i]->id, WS_BACKUP_ID_LEN + 1);
        rc = check_link(r->m, &links[i]->m, err);
    }
out:
    free(links);
    return rc;
}

/* ---- one layer ---------------------------------------------------------------------------- */

static int cmp_record(const void *a, const void *b)
{
    return strcmp((*(const struct ws_bfile *const *)a)->path,
                  (*(const struct ws_bfile *const *)b)->path);
}

static const struct ws_bfile *layer_record(const struct ws_restore_layer *l, const char *path)
{
    struct ws_bfile key = {0};
    const struct ws_bfile *kp = &key, **hit;

    key.path = (char *)path;
    hit = bsearch(&kp, l->by_path, l->m->nfiles, sizeof(*l->by_path), cmp_record);
    return hit ? *hit : NULL;
}

int ws_restore_base_layer(const struct restore *r, const struct ws_bfile *f, size_t *j,
                          struct ws_error *err)
{
    if (f->kind == WS_BFILE_WHOLE) {
        *j = r->nchain - 1;
        return 0;
    }
    for (*j = 0; *j + 1 < r->nchain; (*j)++)
        if (strcmp(r->chain[*j], f->base) == 0)
            return 0;
    return ws_error_set(err, WS_ERR_CORRUPT,
                        "backup %s: file \"%s\" has base %s, which is not in its chain", r->m->id,
                        f->path, f->base);
}

int ws_restore_layer_part(const struct ws_restore_layer *l, const struct ws_bfile *tf, size_t j,
                          const struct ws_bfile **out, struct ws_error *err)
{
    const struct ws_bfile *lf = l->k + 1 == l->r->nchain ? tf : layer_record(l, tf->path);

    *out = NULL;
    if (!lf)
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "backup %s (of the chain of %s) does not list file \"%s\"", l->m->id,
                            l->r->m->id, tf->path);
    if (l->k == j ? lf->kind != WS_BFILE_WHOLE
                  : lf->kind == WS_BFILE_WHOLE || strcmp(lf->base, tf->base) != 0)
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "backup %s: its record of file \"%s\" does not fit the chain of %s",
                            l->m->id, tf->path, l->r->m->id);
    if (lf->kind != WS_BFILE_REF)
        *out = lf;
    return 0;
}

int ws_restore_layer_open(const struct restore *r, struct ws_repo *repo, size_t k,
                          struct ws_restore_layer *l, struct ws_error *err)
{
    int rc;

    memset(l, 0, sizeof(*l));
    l->r = r;
    l->k = k;
    l->m = r->m;
    if (k + 1 == r->nchain)
        return 0;
    if ((rc = ws_manifest_load(repo, r->kr, r->chain[k], &l->own, err)) != 0) {
        ws_error_prefix(err, "backup %s cannot be restored: backup %s of its chain", r->m->id,
                        r->chain[k]);
        return rc;
    }
    l->m = &l->own;
    if (!(l->by_path = malloc((l->own.nfiles ? l->own.nfiles : 1) * sizeof(*l->by_path))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    for (size_t i = 0; i < l->own.nfiles; i++)
        l->by_path[i] = &l->own.files[i];
    qsort(l->by_path, l->own.nfiles, sizeof(*l->by_path), cmp_record);
    return 0;
}

void ws_restore_layer_close(struct ws_restore_layer *l)
{
    free(l->by_path);
    l->by_path = NULL;
    ws_manifest_free(&l->own);
}

/* The records layer l writes: of the files wanted (want NULL: all) whose base is l or older. */
static int select_records(const struct ws_restore_layer *l, const uint8_t *want,
                          const struct ws_bfile **sel, size_t *nsel, struct ws_error *err)
{
    const struct ws_manifest *t = l->r->m;
    int rc;

    for (size_t i = 0; i < t->nfiles; i++) {
        const struct ws_bfile *lf;
        size_t j;
        if (want && !want[i])
            continue;
        if ((rc = ws_restore_base_layer(l->r, &t->files[i], &j, err)) != 0)
            return rc;
        if (j > l->k)
            continue;
        if ((rc = ws_restore_layer_part(l, &t->files[i], j, &lf, err)) != 0)
            return rc;
        if (lf)
            sel[(*nsel)++] = lf;
    }
    return 0;
}

/* Writes layer l's records sel into the tree: files in pieces created first, bundles in
 * parallel. */
static int apply_layer(const struct ws_restore_layer *l, const struct ws_bfile **sel, size_t nsel,
                       struct ws_repo *repo, const struct ws_tree *tree,
                       const struct ws_bundle_opts *bo, struct ws_error *err)
{
    struct ws_bundle_opts lo = *bo;
    int rc;

    lo.sparse = 1;
    lo.block_size = l->m->block_size;
    if ((rc = ws_restore_split_files(l->r, tree, sel, nsel, 0, err)) != 0 ||
        (rc = ws_restore_bundles_of(l->r, repo, l->m, sel, nsel, &lo, err)) != 0)
        return rc;
    return ws_restore_split_files(l->r, tree, sel, nsel, 1, err);
}

/* Layer k of the chain: its manifest loaded (the target's is at hand), indexed, applied. */
static int run_layer(const struct restore *r, size_t k, struct ws_repo *repo,
                     const struct ws_tree *tree, const struct ws_bundle_opts *bo,
                     const uint8_t *want, struct ws_error *err)
{
    struct ws_restore_layer l;
    const struct ws_bfile **sel = NULL;
    size_t nsel = 0;
    int rc;

    if ((rc = ws_restore_layer_open(r, repo, k, &l, err)) != 0)
        goto out;
    if (!(sel = calloc(r->m->nfiles ? r->m->nfiles : 1, sizeof(*sel)))) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        goto out;
    }
    if ((rc = select_records(&l, want, sel, &nsel, err)) != 0 || nsel == 0)
        goto out;
    ws_log_info("backup %s: applying layer %zu of %zu (backup %s, %zu records)", r->m->id, k + 1,
                r->nchain, r->chain[k], nsel);
    rc = apply_layer(&l, sel, nsel, repo, tree, bo, err);
out:
    free(sel);
    ws_restore_layer_close(&l);
    return rc;
}

/* ---- the finished files: size, attributes, read back ------------------------------------- */

int ws_restore_sha_rest(int fd, const struct ws_bfile *f, void *ctx, uint64_t off, uint8_t *buf,
                        int *match, struct ws_error *err)
{
    EVP_MD_CTX *md = ctx;
    struct ws_hashpipe *hp = NULL; /* hashing overlaps the reads (incremental.md, "Speed") */
    uint8_t digest[32];
    int rc;

    *match = 0;
    if ((rc = ws_hashpipe_start(ws_hashpipe_evp, md, f->size > off ? f->size - off : 0, &hp,
                                err)) != 0)
        goto out;
    for (;;) {
        ssize_t n = ws_pread_full(fd, buf, READ_BUF, (off_t)off);
        if (n < 0) {
            rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not read file \"%s\"", f->path);
            goto out;
        }
        if (n == 0 || (off += (uint64_t)n) > f->size)
            break;
        if ((rc = ws_hashpipe_update(hp, buf, (size_t)n, err)) != 0)
            goto out;
    }
    if ((rc = ws_hashpipe_finish(hp, err)) != 0 || off != f->size)
        goto out;
    if (EVP_DigestFinal_ex(md, digest, NULL) != 1) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "SHA-256 failed");
        goto out;
    }
    *match = memcmp(digest, f->sha256, 32) == 0;
out:
    ws_hashpipe_free(hp);
    return rc;
}

int ws_restore_own_file(const struct stat *st)
{
    return S_ISREG(st->st_mode) && st->st_nlink == 1 && st->st_uid == geteuid();
}

int ws_restore_keep_mode(const struct restore *r, int fd, const struct stat *st,
                         const struct ws_bfile *f, const char *dir, struct ws_error *err)
{
    unsigned mode = ws_bundle_file_mode(f->mode, r->group_access);

    if ((st->st_mode & 07777) != mode && fchmod(fd, mode) != 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not set the mode of \"%s/%s\"", dir,
                               f->path);
    return 0;
}

int ws_restore_file_matches(int fd, const struct ws_bfile *f, uint8_t *buf, int *match,
                            struct ws_error *err)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int rc;

    *match = 0;
    if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
        rc = ws_error_set(err, WS_ERR_INTERNAL, "SHA-256 failed");
    else
        rc = ws_restore_sha_rest(fd, f, md, 0, buf, match, err);
    EVP_MD_CTX_free(md);
    return rc;
}

struct file_job {
    const struct restore *r;
    const struct ws_tree *tree;
    ws_restore_file_fn fn;
    void *arg;
    struct ws_tree_cursor *cursors; /* one per worker */
    uint8_t **bufs;                 /* one READ_BUF per worker */
};

static int file_task(void *arg, struct ws_pool_worker *w, size_t i, struct ws_error *err)
{
    struct file_job *j = arg;
    int rc = j->fn(j->arg, j->tree, &j->cursors[w->index], j->bufs[w->index], i, err);

    if (rc == 0)
        ws_pool_progress(w, j->r->m->files[i].size);
    return rc;
}

int ws_restore_each_file(const struct restore *r, struct ws_repo *repo, const struct ws_tree *tree,
                         ws_restore_file_fn fn, void *arg, struct ws_error *err)
{
    struct file_job j = {r, tree, fn, arg, NULL, NULL};
    struct ws_pool_params pp = {0};
    size_t workers =
               ws_pool_size(r->o->parallel > 0 ? r->o->parallel : r->cfg->parallel, r->m->nfiles),
           i;
    int rc = 0;

    if (!(j.cursors = calloc(workers, sizeof(*j.cursors))) ||
        !(j.bufs = calloc(workers, sizeof(*j.bufs)))) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        goto out;
    }
    for (i = 0; i < workers; i++) {
        j.cursors[i].fd = -1;
        if (!(j.bufs[i] = malloc(READ_BUF))) {
            rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
            goto out;
        }
    }
    pp.cfg = r->cfg;
    pp.env = r->env;
    pp.repo = repo;
    pp.workers = workers;
    pp.ntasks = r->m->nfiles;
    pp.task = file_task;
    pp.arg = &j;
    pp.progress = r->o->progress;
    pp.total_bytes = r->m->bytes;
    rc = ws_pool_run(&pp, err);
out:
    for (i = 0; j.cursors && i < workers; i++)
        ws_tree_cursor_close(&j.cursors[i]);
    for (i = 0; j.bufs && i < workers; i++)
        free(j.bufs[i]);
    free(j.cursors);
    free(j.bufs);
    return rc;
}

struct finish {
    const struct restore *r;
    const uint8_t *want;
};

int ws_restore_settle_file(const struct restore *r, const struct ws_tree *tree,
                           struct ws_tree_cursor *c, const struct ws_bfile *f, void *md,
                           uint64_t off, uint8_t *buf, const char *after, struct ws_error *err)
{
    struct timespec ts[2] = {{f->mtime, 0}, {f->mtime, 0}};
    int fd = -1, rc, match = 0;

    if ((rc = ws_tree_open_own(tree, c, f->path, O_RDWR, &fd, err)) != 0)
        return rc;
    if (ftruncate(fd, (off_t)f->size) != 0 ||
        fchmod(fd, ws_bundle_file_mode(f->mode, r->group_access)) != 0) {
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not set attributes of \"%s/%s\"",
                             tree->name, f->path);
        goto out;
    }
    rc = md ? ws_restore_sha_rest(fd, f, md, off, buf, &match, err)
            : ws_restore_file_matches(fd, f, buf, &match, err);
    if (rc)
        goto out;
    if (!match) {
        rc = ws_error_set(err, WS_ERR_CORRUPT,
                          "restored file \"%s\": size or SHA-256 differs from backup %s's record "
                          "after %s",
                          f->path, r->m->id, after);
        goto out;
    }
    if (futimens(fd, ts) != 0)
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not set attributes of \"%s/%s\"",
                             tree->name, f->path);
out:
    if (close(fd) != 0 && rc == 0)
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not write file \"%s/%s\"", tree->name,
                             f->path);
    return rc;
}

/* File i of the target, when rebuilt from its chain: settled, read back from its start. */
static int finish_file(void *arg, const struct ws_tree *tree, struct ws_tree_cursor *c,
                       uint8_t *buf, size_t i, struct ws_error *err)
{
    const struct finish *fin = arg;
    const struct ws_bfile *f = &fin->r->m->files[i];

    if (f->kind == WS_BFILE_WHOLE || (fin->want && !fin->want[i]))
        return 0;
    return ws_restore_settle_file(fin->r, tree, c, f, NULL, 0, buf, "its chain was applied", err);
}

int ws_restore_chain(const struct restore *r, struct ws_repo *repo, const struct ws_tree *tree,
                     const struct ws_bundle_opts *bo, const uint8_t *want, struct ws_error *err)
{
    size_t first = r->nchain - 1, j;
    int rc;

    /* layers older than the oldest base of a file wanted have nothing to give */
    for (size_t i = 0; i < r->m->nfiles; i++) {
        if (want && !want[i])
            continue;
        if ((rc = ws_restore_base_layer(r, &r->m->files[i], &j, err)) != 0)
            return rc;
        if (j < first)
            first = j;
    }
    for (size_t k = first; k < r->nchain; k++)
        if ((rc = run_layer(r, k, repo, tree, bo, want, err)) != 0)
            return rc;
    {
        struct finish fin = {r, want};
        return ws_restore_each_file(r, repo, tree, finish_file, &fin, err);
    }
}
