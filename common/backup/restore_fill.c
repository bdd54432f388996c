/*
 * backup/restore_fill.c - filling the data directory: its directories and tablespace links, files
 * in pieces, and the bundles through the worker pool (backup/pool.h) and the bundle splitter.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup/pool.h"
#include "backup/restore_int.h"
#include "base/log.h"
#include "io/object.h"

struct rjob {
    const struct ws_keyring *kr;
    const struct ws_manifest *m;
    struct ws_bextent *ext; /* extents sorted by (bundle, offset) */
    size_t *first;          /* first index in ext of each bundle (+1 sentinel) */
    struct ws_bundle_opts bo;
};

/* A pool task: bundle b through its reader and splitter into the tree. */
static int restore_bundle(void *arg, struct ws_pool_worker *w, size_t b, struct ws_error *err)
{
    struct rjob *j = arg;
    struct ws_sink *split = NULL, *reader = NULL;
    char key[256];
    int rc;

    if (j->bo.sparse && j->first[b] == j->first[b + 1])
        return 0; /* nothing wanted from this bundle */
    ws_backup_bundle_key(&w->repo, j->m->id, (uint32_t)b, key, sizeof(key));
    if ((rc = ws_bundle_splitter_new_ext(j->ext + j->first[b], j->first[b + 1] - j->first[b],
                                         &j->bo, &split, err)) != 0)
        return rc;
    if ((rc = ws_object_reader_new(split, key, j->kr, 0, &reader, err)) != 0)
        return rc;
    if ((rc = ws_storage_get(w->repo.st, key, 0, WS_STORAGE_TO_END, reader, err)) != 0 ||
        (rc = ws_sink_finish(reader, err)) != 0)
        ws_error_prefix(err, "backup %s, bundle %s", j->m->id, key);
    ws_sink_free(reader);
    if (rc == 0) {
        size_t i;
        uint64_t n = 0;
        for (i = j->first[b]; i < j->first[b + 1]; i++)
            n += j->ext[i].length;
        ws_pool_progress(w, n);
    }
    return rc;
}

/* Bundles 0 .. m->bundles-1 of m through j's extents, in parallel. */
static int run_bundles(const struct restore *r, struct ws_repo *repo, struct rjob *j,
                       struct ws_error *err)
{
    struct ws_pool_params pp = {0};
    uint64_t total = 0;

    for (size_t i = 0; i < j->first[j->m->bundles]; i++)
        total += j->ext[i].length;
    pp.cfg = r->cfg;
    pp.env = r->env;
    pp.repo = repo;
    pp.workers =
        ws_pool_size(r->o->parallel > 0 ? r->o->parallel : r->cfg->parallel, j->m->bundles);
    pp.ntasks = j->m->bundles;
    pp.task = restore_bundle;
    pp.arg = j;
    pp.progress = r->o->progress;
    pp.total_bytes = total;
    return ws_pool_run(&pp, err);
}

int ws_restore_bundles(const struct restore *r, struct ws_repo *repo,
                       const struct ws_bundle_opts *bo, struct ws_error *err)
{
    struct rjob j = {0};
    size_t next_count = 0;
    int rc;

    j.kr = r->kr;
    j.m = r->m;
    j.bo = *bo;
    if ((rc = ws_bundle_extents(r->m, &j.ext, &j.first, &next_count, err)) == 0)
        rc = run_bundles(r, repo, &j, err);
    free(j.ext);
    free(j.first);
    return rc;
}

int ws_restore_bundles_of(const struct restore *r, struct ws_repo *repo,
                          const struct ws_manifest *m, const struct ws_bfile *const *files,
                          size_t nfiles, const struct ws_bundle_opts *bo, struct ws_error *err)
{
    struct rjob j = {0};
    size_t next_count = 0;
    int rc;

    j.kr = r->kr;
    j.m = m;
    j.bo = *bo;
    if ((rc = ws_bundle_extents_of(files, nfiles, m->bundles, &j.ext, &j.first, &next_count,
                                   err)) == 0)
        rc = run_bundles(r, repo, &j, err);
    free(j.ext);
    free(j.first);
    return rc;
}

/* ---- filling the data directory ----------------------------------------------------------- */

int ws_restore_tree(const struct restore *r, struct ws_tree *tree, struct ws_error *err)
{
    struct ws_tree_mount *mounts = NULL;

    if (r->m->ntblspc && !(mounts = calloc(r->m->ntblspc, sizeof(*mounts))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    for (size_t i = 0; i < r->m->ntblspc; i++) {
        mounts[i].prefix = r->ts[i].link;
        mounts[i].fd = r->ts[i].fd;
    }
    tree->fd = r->data.fd;
    tree->name = r->data.path;
    tree->mounts = mounts;
    tree->nmounts = r->m->ntblspc;
    return 0;
}

/* Every directory of the manifest, and the pg_tblspc links to the tablespace directories as
 * soon as pg_tblspc is there: before anything is written into a tablespace directory, the data
 * directory says it is its own (what a --force after a killed restore relies on). */
int ws_restore_make_dirs(struct restore *r, const struct ws_tree *tree, struct ws_error *err)
{
    struct ws_tree_cursor c = WS_TREE_CURSOR_INIT;
    size_t i, t;
    int rc = 0, linked = 0;

    for (i = 0; i < r->m->ndirs && rc == 0; i++) {
        rc = ws_tree_mkdir(tree, &c, r->m->dirs[i].path, ws_restore_dir_mode(r, r->m->dirs[i].mode),
                           err);
        if (rc || linked || strcmp(r->m->dirs[i].path, "pg_tblspc") != 0)
            continue;
        for (t = 0; t < r->m->ntblspc && rc == 0; t++)
            if ((rc = ws_tree_symlink(tree, &c, r->ts[t].path, r->ts[t].link, err)) != 0 &&
                r->o->delta && err->sys_errno == EEXIST) {
                memset(err, 0, sizeof(*err)); /* a delta restore kept only the right links */
                rc = 0;
            }
        linked = 1;
    }
    if (rc == 0 && !linked && r->m->ntblspc)
        rc = ws_error_set(err, WS_ERR_CORRUPT,
                          "backup %s has tablespaces but no pg_tblspc directory in its manifest",
                          r->m->id);
    ws_tree_cursor_close(&c);
    return rc;
}

/* One file in pieces: created (exclusively, at its full size), or given its attributes. */
static int split_file(const struct restore *r, const struct ws_tree *tree, struct ws_tree_cursor *c,
                      const struct ws_bfile *f, int finish, struct ws_error *err)
{
    struct timespec ts[2] = {{f->mtime, 0}, {f->mtime, 0}};
    int fd, rc = 0;

    if (!finish) {
        if ((rc = ws_tree_open(tree, c, f->path, O_WRONLY | O_CREAT | O_EXCL, 0600, &fd, err)) != 0)
            return rc;
        if (ftruncate(fd, (off_t)f->size) != 0)
            rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not extend file \"%s/%s\"",
                                 tree->name, f->path);
    } else {
        if ((rc = ws_tree_open(tree, c, f->path, O_RDONLY | O_NONBLOCK, 0, &fd, err)) != 0)
            return rc;
        if (fchmod(fd, ws_bundle_file_mode(f->mode, r->group_access)) != 0 || futimens(fd, ts) != 0)
            rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not set attributes of \"%s/%s\"",
                                 tree->name, f->path);
    }
    close(fd);
    return rc;
}

/* Files in pieces are written by several workers with pwrite: create them first (exclusively,
 * at their full size) and give them their attributes after every piece is in. */
int ws_restore_split_files(const struct restore *r, const struct ws_tree *tree,
                           const struct ws_bfile *const *files, size_t nfiles, int finish,
                           struct ws_error *err)
{
    struct ws_tree_cursor c = WS_TREE_CURSOR_INIT;
    size_t i, n = files ? nfiles : r->m->nfiles;
    int rc = 0;

    for (i = 0; i < n && rc == 0; i++) {
        const struct ws_bfile *f = files ? files[i] : &r->m->files[i];
        if (f->kind == WS_BFILE_WHOLE && f->npieces)
            rc = split_file(r, tree, &c, f, finish, err);
    }
    ws_tree_cursor_close(&c);
    return rc;
}

void ws_restore_report_problem(void *arg, const struct ws_bfile *f, const char *msg)
{
    (void)arg;
    ws_log(WS_LOG_ERROR, "file \"%s\": %s", f->path, msg);
}
