/*
 * backup/restore_delta.c - `basebackup restore --delta`: rewrites an existing data directory of
 * the same database system into the backup, leaving alone every file whose size and SHA-256
 * already match (docs/design/incremental.md, "Delta restore").
 *
 * Order, so that a run killed at any moment leaves a directory PostgreSQL refuses to start and a
 * second --delta run finishes: the system identifier is checked; global/pg_control is renamed to
 * global/pg_control.walsafe-delta (synced); what the backup does not have is removed (except
 * what backups leave out, backup/exclude.h); relation files with a few differing blocks are
 * patched in place (restore_patch.c), other files that differ removed and rebuilt from the
 * chain; tablespace_map, sync, the recovery settings; pg_control last, then the renamed copy goes.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup/exclude.h"
#include "backup/restore_int.h"
#include "base/log.h"
#include "base/util.h"

#define CONTROL "global/pg_control"
#define CONTROL_SAVED "global/pg_control.walsafe-delta"

struct delta {
    struct restore *r;
    struct ws_tree tree;
    const char **files, **dirs;         /* the backup's paths, sorted */
    uint8_t *want;                      /* per file of r->m: to be rebuilt */
    struct ws_restore_patches *patches; /* relation files patched block by block */
    size_t removed;
};

/* ---- the system identifier and pg_control -------------------------------------------------- */

/* The data directory's system identifier: the first field of pg_control (native byte order), of
 * the copy an interrupted delta restore left when there is one (its pg_control may be half
 * written). */
static int read_sysid(struct delta *d, uint64_t *id, struct ws_error *err)
{
    static const char *const names[] = {CONTROL_SAVED, CONTROL};
    struct ws_tree_cursor c = WS_TREE_CURSOR_INIT;
    int rc = 0;

    for (size_t i = 0; i < 2; i++) {
        int fd;
        ssize_t n;
        if ((rc = ws_tree_open(&d->tree, &c, names[i], O_RDONLY | O_NONBLOCK, 0, &fd, err)) != 0) {
            if (err->sys_errno != ENOENT)
                goto out;
            memset(err, 0, sizeof(*err));
            rc = 0;
            continue;
        }
        n = ws_pread_full(fd, id, sizeof(*id), 0);
        close(fd);
        if (n != (ssize_t)sizeof(*id))
            rc = ws_error_set(err, WS_ERR_INVALID, "\"%s/%s\" is too short for pg_control",
                              d->tree.name, names[i]);
        goto out;
    }
    rc = ws_error_set(err, WS_ERR_INVALID,
                      "--delta: \"%s\" holds no global/pg_control, so it is no data directory of "
                      "this database system; restore without --delta into an empty directory",
                      d->tree.name);
out:
    ws_tree_cursor_close(&c);
    return rc;
}

static int check_system(struct delta *d, struct ws_error *err)
{
    uint64_t id = 0;
    int rc;

    if ((rc = read_sysid(d, &id, err)) != 0)
        return rc;
    if (id != d->r->m->system_identifier)
        return ws_error_set(err, WS_ERR_FOREIGN,
                            "--delta: data directory \"%s\" is of database system %" PRIu64
                            ", backup %s of system %" PRIu64
                            "; restore into an empty directory without --delta",
                            d->tree.name, id, d->r->m->id, d->r->m->system_identifier);
    return 0;
}

/* Renames (to = 1) pg_control to its saved name, or removes the saved copy (to = 0); then syncs
 * global. A missing name is no error (an interrupted run did it already). A saved copy is never
 * replaced: it is the directory's own, pg_control may be one an interrupted run half wrote. */
static int move_control(struct delta *d, int to, struct ws_error *err)
{
    struct ws_tree_cursor c = WS_TREE_CURSOR_INIT;
    struct stat st;
    int fd = -1, rc, r;

    if ((rc = ws_tree_open(&d->tree, &c, "global", O_RDONLY | O_DIRECTORY, 0, &fd, err)) != 0)
        goto out;
    if (!to)
        r = unlinkat(fd, "pg_control.walsafe-delta", 0);
    else if (fstatat(fd, "pg_control.walsafe-delta", &st, AT_SYMLINK_NOFOLLOW) == 0)
        r = unlinkat(fd, "pg_control", 0);
    else
        r = renameat(fd, "pg_control", fd, "pg_control.walsafe-delta");
    if (r != 0 && errno != ENOENT) {
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not %s \"%s/%s\"",
                             to ? "rename" : "remove", d->tree.name, to ? CONTROL : CONTROL_SAVED);
        goto out;
    }
    if (fsync(fd) != 0)
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not fsync directory \"%s/global\"",
                             d->tree.name);
out:
    if (fd >= 0)
        close(fd);
    ws_tree_cursor_close(&c);
    return rc;
}

/* ---- what the backup does not have goes ---------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int listed(const char **sorted, size_t n, const char *path)
{
    return bsearch(&path, sorted, n, sizeof(*sorted), cmp_str) != NULL;
}

static int index_paths(struct delta *d, struct ws_error *err)
{
    const struct ws_manifest *m = d->r->m;

    if (!(d->files = malloc((m->nfiles + 1) * sizeof(*d->files))) ||
        !(d->dirs = malloc((m->ndirs + 1) * sizeof(*d->dirs))) ||
        !(d->want = calloc(m->nfiles + 1, 1)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    for (size_t i = 0; i < m->nfiles; i++)
        d->files[i] = m->files[i].path;
    for (size_t i = 0; i < m->ndirs; i++)
        d->dirs[i] = m->dirs[i].path;
    qsort(d->files, m->nfiles, sizeof(*d->files), cmp_str);
    qsort(d->dirs, m->ndirs, sizeof(*d->dirs), cmp_str);
    return 0;
}

/* exclude.h: the relation of `name` has an init fork in the directory at *arg. */
static int has_init_fork(void *arg, const char *rel, const char *name, size_t relnode_len)
{
    char init[NAME_MAX + 1];
    struct stat st;

    (void)rel;
    snprintf(init, sizeof(init), "%.*s_init", (int)relnode_len, name);
    return fstatat(*(const int *)arg, init, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Removes entry name of dirfd (rel names it), a directory with everything in it. */
static int remove_entry(struct delta *d, int dirfd, const char *name, const char *rel,
                        const struct stat *st, struct ws_error *err)
{
    char path[PATH_MAX];
    int fd, rc;

    snprintf(path, sizeof(path), "%s/%s", d->tree.name, rel);
    if (S_ISDIR(st->st_mode)) {
        if ((fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
            return ws_error_setsys(err, WS_ERR_IO, errno, "could not open directory \"%s\"", path);
        rc = ws_dir_clear(fd, path, err);
        close(fd);
        if (rc)
            return rc;
    }
    if (unlinkat(dirfd, name, S_ISDIR(st->st_mode) ? AT_REMOVEDIR : 0) != 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not remove \"%s\"", path);
    d->removed++;
    return 0;
}

/* A tablespace link of the backup that leads where this restore puts the tablespace: kept. */
static int right_link(const struct delta *d, int dirfd, const char *name, const char *rel)
{
    char target[PATH_MAX];
    ssize_t n = readlinkat(dirfd, name, target, sizeof(target) - 1);

    if (n < 0)
        return 0;
    target[n] = '\0';
    for (size_t t = 0; t < d->r->m->ntblspc; t++)
        if (strcmp(d->r->ts[t].link, rel) == 0)
            return strcmp(d->r->ts[t].path, target) == 0;
    return 0;
}

static int sweep_dir(struct delta *d, int dirfd, const char *rel, int depth, struct ws_error *err);

/*
 * Left out of backups, but emptied as a plain restore leaves them: the diverged directory's
 * pg_wal would otherwise offer recovery WAL of another history whenever restore_command finds
 * no segment (PostgreSQL then reads pg_wal), and its replication slots could hold positions
 * (a logical slot's confirmed_flush) past the restored point, so a subscriber would skip changes.
 */
static int emptied(int depth, const char *name)
{
    return depth == 0 && (strcmp(name, "pg_wal") == 0 || strcmp(name, "pg_replslot") == 0);
}

/* One entry of directory rel: kept, entered or removed. */
static int sweep_entry(struct delta *d, int dirfd, const char *rel, int depth, const char *name,
                       struct ws_error *err)
{
    char child[PATH_MAX];
    struct stat st;
    int sub, rc;

    if (ws_path_join(child, sizeof(child), rel, name) != 0)
        return ws_error_set(err, WS_ERR_INVALID, "path too long in \"%s/%s\"", d->tree.name, rel);
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return errno == ENOENT ? 0
                               : ws_error_setsys(err, WS_ERR_IO, errno, "could not stat \"%s/%s\"",
                                                 d->tree.name, child);
    if (listed(d->files, d->r->m->nfiles, child))
        return S_ISREG(st.st_mode) ? 0 : remove_entry(d, dirfd, name, child, &st, err);
    if (S_ISLNK(st.st_mode) && depth == 1 && strcmp(rel, "pg_tblspc") == 0 &&
        right_link(d, dirfd, name, child))
        return 0; /* its directory is swept through the tree's mount */
    if (listed(d->dirs, d->r->m->ndirs, child)) {
        if (!S_ISDIR(st.st_mode))
            return remove_entry(d, dirfd, name, child, &st, err);
        if (ws_exclude_contents(depth, name) && !emptied(depth, name))
            return 0;
        if ((sub = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
            return ws_error_setsys(err, WS_ERR_IO, errno, "could not open directory \"%s/%s\"",
                                   d->tree.name, child);
        if (emptied(depth, name)) {
            char path[PATH_MAX];
            int n = snprintf(path, sizeof(path), "%s/%s", d->tree.name, child);
            rc = n < 0 || (size_t)n >= sizeof(path)
                     ? ws_error_set(err, WS_ERR_INVALID, "path too long in \"%s\"", d->tree.name)
                     : ws_dir_clear(sub, path, err);
            close(sub);
            return rc;
        }
        rc = sweep_dir(d, sub, child, depth + 1, err);
        close(sub);
        return rc;
    }
    if (strcmp(child, CONTROL_SAVED) == 0 ||
        ws_exclude_entry(rel, depth, name, st.st_mode, has_init_fork, &dirfd))
        return 0;
    return remove_entry(d, dirfd, name, child, &st, err);
}

/* Every entry of the directory open at dirfd (rel in the data directory), names read first. */
static int sweep_dir(struct delta *d, int dirfd, const char *rel, int depth, struct ws_error *err)
{
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    DIR *dir;

    if (fd < 0 || !(dir = fdopendir(fd))) {
        if (fd >= 0)
            close(fd);
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not read directory \"%s/%s\"",
                               d->tree.name, rel);
    }
    while (rc == 0 && (de = readdir(dir)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (n == cap) {
            char **p = realloc(names, (cap = cap ? cap * 2 : 64) * sizeof(*names));
            if (!p) {
                rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
                break;
            }
            names = p;
        }
        if (!(names[n] = strdup(de->d_name)))
            rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        else
            n++;
    }
    closedir(dir);
    for (size_t i = 0; i < n; i++) {
        if (rc == 0)
            rc = sweep_entry(d, dirfd, rel, depth, names[i], err);
        free(names[i]);
    }
    free(names);
    return rc;
}

/* The data directory and each tablespace directory (as pg_tblspc/<oid>, at depth 2). */
static int sweep(struct delta *d, struct ws_error *err)
{
    int rc = sweep_dir(d, d->r->data.fd, "", 0, err);

    for (size_t t = 0; rc == 0 && t < d->r->m->ntblspc; t++)
        rc = sweep_dir(d, d->r->ts[t].fd, d->r->ts[t].link, 2, err);
    return rc;
}

/* ---- files that differ are rebuilt --------------------------------------------------------- */

/* File i of the backup, unless compared block by block: left alone (given its mode) when it is
 * a file of our own (ws_restore_own_file: a hard-linked one or another user's is made anew) whose
 * size and SHA-256 match, else wanted. */
static int compare_file(void *arg, const struct ws_tree *tree, struct ws_tree_cursor *c,
                        uint8_t *buf, size_t i, struct ws_error *err)
{
    struct delta *d = arg;
    const struct ws_bfile *f = &d->r->m->files[i];
    struct stat st;
    int fd, rc, match = 0;

    if (ws_restore_by_blocks(d->r, f))
        return 0;
    if (strcmp(f->path, CONTROL) == 0) {
        d->want[i] = 1; /* renamed away: written last */
        return 0;
    }
    if ((rc = ws_tree_open(tree, c, f->path, O_RDONLY | O_NONBLOCK, 0, &fd, err)) != 0) {
        if (err->sys_errno != ENOENT)
            return rc;
        memset(err, 0, sizeof(*err));
        d->want[i] = 1;
        return 0;
    }
    if (fstat(fd, &st) != 0)
        rc =
            ws_error_setsys(err, WS_ERR_IO, errno, "could not stat \"%s/%s\"", tree->name, f->path);
    else if (ws_restore_own_file(&st) && (uint64_t)st.st_size == f->size &&
             (rc = ws_restore_file_matches(fd, f, buf, &match, err)) == 0 && match)
        rc = ws_restore_keep_mode(d->r, fd, &st, f, tree->name, err);
    close(fd);
    if (rc == 0 && !match)
        d->want[i] = 1;
    return rc;
}

/* Every file wanted (but pg_control, renamed away) goes: the chain creates it anew. */
static int remove_wanted(struct delta *d, struct ws_error *err)
{
    struct ws_tree_cursor c = WS_TREE_CURSOR_INIT;
    int rc = 0;

    for (size_t i = 0; i < d->r->m->nfiles && rc == 0; i++) {
        const struct ws_bfile *f = &d->r->m->files[i];
        int fd;
        if (!d->want[i] || strcmp(f->path, CONTROL) == 0)
            continue;
        /* the parent directory, through the tree (never following a link) */
        if ((rc = ws_tree_open(&d->tree, &c, f->path, O_RDONLY | O_NONBLOCK, 0, &fd, err)) != 0) {
            if (err->sys_errno == ENOENT) {
                memset(err, 0, sizeof(*err));
                rc = 0;
            }
            continue;
        }
        close(fd);
        if (unlinkat(c.fd, ws_base_name(f->path), 0) != 0)
            rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not remove \"%s/%s\"", d->tree.name,
                                 f->path);
    }
    ws_tree_cursor_close(&c);
    return rc;
}

/* Which files are left alone, patched, or rebuilt whole (those removed). */
static int compare(struct delta *d, struct ws_repo *repo, struct ws_error *err)
{
    int rc;

    if ((rc = ws_restore_each_file(d->r, repo, &d->tree, compare_file, d, err)) != 0 ||
        (rc = ws_restore_patch_compare(d->r, repo, &d->tree, d->want, &d->patches, err)) != 0)
        return rc;
    return remove_wanted(d, err);
}

/* ---- the whole ------------------------------------------------------------------------------ */

/* want restricted to pg_control (last = 1) or to everything else (last = 0). */
static void want_control(struct delta *d, uint8_t *out, int last)
{
    for (size_t i = 0; i < d->r->m->nfiles; i++)
        out[i] = d->want[i] && (strcmp(d->r->m->files[i].path, CONTROL) == 0) == last;
}

static int rebuild(struct delta *d, struct ws_repo *repo, struct ws_error *err)
{
    struct restore *r = d->r;
    struct ws_bundle_opts bo = {0};
    uint8_t *sel = calloc(r->m->nfiles + 1, 1);
    size_t n = 0;
    int rc;

    if (!sel)
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    for (size_t i = 0; i < r->m->nfiles; i++)
        n += d->want[i];
    ws_log_info("delta restore of backup %s into \"%s\": %zu of %zu files to rebuild, %zu to "
                "patch, %zu entries removed",
                r->m->id, r->data.path, n, r->m->nfiles, ws_restore_patch_count(d->patches),
                d->removed);
    bo.tree = &d->tree;
    bo.group_access = r->group_access;
    bo.problem = ws_restore_report_problem;
    want_control(d, sel, 0);
    if ((rc = ws_restore_chain(r, repo, &d->tree, &bo, sel, err)) != 0 ||
        (rc = ws_restore_patch(r, repo, &d->tree, d->patches, err)) != 0 ||
        (rc = ws_restore_finish(r, err)) != 0)
        goto out;
    want_control(d, sel, 1);
    if ((rc = ws_restore_chain(r, repo, &d->tree, &bo, sel, err)) != 0 ||
        (rc = ws_restore_sync_fs_of(&r->data, err)) != 0)
        goto out;
    rc = move_control(d, 0, err);
out:
    free(sel);
    return rc;
}

int ws_restore_delta(struct restore *r, struct ws_repo *repo, struct ws_error *err)
{
    struct delta d = {0};
    int rc;

    d.r = r;
    if ((rc = ws_restore_inspect_delta_targets(r, err)) != 0)
        goto out;
    d.tree.fd = r->data.fd; /* the data directory alone, until the tablespaces are there */
    d.tree.name = r->data.path;
    if ((rc = check_system(&d, err)) != 0 || (rc = index_paths(&d, err)) != 0 ||
        (rc = ws_restore_create_targets(r, err)) != 0 ||
        (rc = ws_restore_tree(r, &d.tree, err)) != 0)
        goto out;
    r->started = 1;
    /* a plain restore leaves no standby.signal (backups leave it out): neither does a delta one */
    if ((rc = move_control(&d, 1, err)) != 0 ||
        (rc = ws_restore_unlink_in(&r->data, "standby.signal", err)) != 0 ||
        (rc = sweep(&d, err)) != 0 || (rc = ws_restore_make_dirs(r, &d.tree, err)) != 0 ||
        (rc = compare(&d, repo, err)) != 0 || (rc = rebuild(&d, repo, err)) != 0)
        goto out;
    ws_log_info("backup %s restored into \"%s\" (delta); start PostgreSQL to recover", r->m->id,
                r->data.path);
out:
    if (rc && r->started)
        ws_error_prefix(err,
                        "delta restore into \"%s\" failed, do not start it (run the restore with "
                        "--delta again)",
                        r->data.path);
    free((void *)d.tree.mounts);
    free(d.files);
    free(d.dirs);
    free(d.want);
    ws_restore_patches_free(d.patches);
    return rc;
}
