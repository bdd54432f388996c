/*
 * backup/restore_extra.c - `basebackup restore --extra-to DIR`: a backup's extra paths (extra.h)
 * into DIR, then, with --pgdata, the same backup's data directory (ws_backup_restore).
 *
 * Unlike the data directory's restore this one runs as the user who started it: restoring the
 * recorded owners of /etc files needs root, and DIR is the caller's own staging directory. What it
 * writes goes through DIR's descriptors only (base/fs.h: no link below DIR is followed, files are
 * created exclusively) and every file is checked against its size and SHA-256 before its
 * attributes are set; the manifest is authenticated like every object.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup/extra.h"
#include "backup/pool.h"
#include "backup/restore_int.h"
#include "base/log.h"

/* a is b or lies below it */
static int within(const char *a, const char *b)
{
    size_t n = strlen(b);

    return strncmp(a, b, n) == 0 && (a[n] == '\0' || a[n] == '/');
}

/* The data directory a DIR must stay out of: --pgdata, else pgdata; "" when neither is set.
 * pd: lexically absolute; real: resolved ("" while it does not exist). */
struct pgdata_of {
    const char *named;
    char pd[PATH_MAX], real[PATH_MAX];
};

static int refuse_in_pgdata(const struct ws_restore_opts *o, const struct pgdata_of *p,
                            struct ws_error *err)
{
    return ws_error_set(err, WS_ERR_USAGE,
                        "--extra-to \"%s\" is or lies in the data directory \"%s\" (or holds it): "
                        "extra paths are never restored into a data directory",
                        o->extra_to, p->named);
}

/* DIR made absolute, and not the data directory nor in it, as named (lexically). */
static int check_dir(const struct ws_config *cfg, const struct ws_restore_opts *o, char *dir,
                     size_t dirsz, struct pgdata_of *p, struct ws_error *err)
{
    int rc;

    p->named = o->pgdata ? o->pgdata : cfg->pgdata;
    p->pd[0] = p->real[0] = '\0';
    if ((rc = ws_restore_absolute_path(o->extra_to, dir, dirsz, err)) != 0)
        return rc;
    if (strcmp(dir, "/") == 0)
        return ws_error_set(err, WS_ERR_USAGE, "--extra-to must not be the root directory");
    if (!p->named || !*p->named)
        return 0;
    if ((rc = ws_restore_absolute_path(p->named, p->pd, sizeof(p->pd), err)) != 0)
        return rc;
    if (!realpath(p->pd, p->real))
        p->real[0] = '\0';
    return within(dir, p->pd) || within(p->pd, dir) ? refuse_in_pgdata(o, p, err) : 0;
}

/* The same, as DIR resolves (its deepest existing directory, reached as ws_dir_lookup reaches it,
 * plus the components still missing): a link on the way may lead into the data directory. */
static int check_resolved(const struct ws_restore_opts *o, const struct rdir *d,
                          const struct pgdata_of *p, struct ws_error *err)
{
    char proc[64], real[PATH_MAX], full[2 * PATH_MAX];
    ssize_t n;

    if (!p->real[0])
        return 0;
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", d->ref.fd);
    if ((n = readlink(proc, real, sizeof(real) - 1)) < 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not resolve \"%s\"", d->path);
    real[n] = '\0';
    snprintf(full, sizeof(full), "%s%s%s", real, d->ref.missing[0] ? "/" : "", d->ref.missing);
    return within(full, p->real) || within(p->real, full) ? refuse_in_pgdata(o, p, err) : 0;
}

/* DIR: created when missing (0700), else it must be empty; d->fd is open on it. */
static int open_dir(const struct ws_restore_opts *o, struct rdir *d, const struct pgdata_of *p,
                    struct ws_error *err)
{
    int rc;

    if ((rc = ws_dir_lookup(d->path, &d->ref, err)) != 0 ||
        (rc = check_resolved(o, d, p, err)) != 0 ||
        (d->ref.missing[0] && (rc = ws_dir_create(&d->ref, d->path, 0700, err)) != 0) ||
        (rc = ws_restore_inspect_dir(d, err)) != 0)
        return rc;
    if (!d->empty)
        return ws_error_set(err, WS_ERR_INVALID,
                            "--extra-to \"%s\" is not empty: restore extra paths into an empty "
                            "or new directory",
                            d->path);
    return 0;
}

/* Every directory of the records, and every parent of a file, below DIR (0700 for now). */
static int make_dirs(const struct ws_manifest *m, const struct ws_tree *tree,
                     struct ws_tree_cursor *c, struct ws_error *err)
{
    char rel[PATH_MAX];
    size_t i;
    int rc;

    for (i = 0; i < m->nextra; i++) {
        const struct ws_bextra *e = &m->extra[i];
        char *slash;
        snprintf(rel, sizeof(rel), "%s", e->path + 1);
        for (slash = strchr(rel, '/'); slash; slash = strchr(slash + 1, '/')) {
            *slash = '\0';
            rc = ws_tree_mkdir(tree, c, rel, 0700, err);
            *slash = '/';
            if (rc)
                return rc;
        }
        if (e->dir && (rc = ws_tree_mkdir(tree, c, rel, 0700, err)) != 0)
            return rc;
    }
    return 0;
}

/* Owner (as root), mode and mtime of record e, now that its content is in place. */
static int settle(const struct ws_bextra *e, const struct ws_tree *tree, struct ws_tree_cursor *c,
                  struct ws_error *err)
{
    struct timespec ts[2] = {{0, UTIME_OMIT}, {(time_t)e->mtime, 0}};
    int fd, rc = 0;

    if ((rc = ws_tree_open(tree, c, e->path + 1, O_RDONLY | (e->dir ? O_DIRECTORY : 0), 0, &fd,
                           err)) != 0)
        return rc;
    if (geteuid() == 0 && fchown(fd, (uid_t)e->uid, (gid_t)e->gid) != 0)
        rc =
            ws_error_setsys(err, WS_ERR_IO, errno, "could not chown \"%s%s\"", tree->name, e->path);
    else if (fchmod(fd, (mode_t)e->mode) != 0 || futimens(fd, ts) != 0)
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not set the mode of \"%s%s\"",
                             tree->name, e->path);
    close(fd);
    return rc;
}

/* m's extra paths into DIR (d: open, empty). */
static int restore_into(struct ws_repo *repo, const struct ws_keyring *kr,
                        const struct ws_manifest *m, struct rdir *d, struct ws_error *err)
{
    struct ws_bundle_opts bo = {0};
    struct ws_tree tree = {0};
    struct ws_tree_cursor c = WS_TREE_CURSOR_INIT;
    size_t i, nfiles = 0;
    int rc;

    tree.fd = d->fd;
    tree.name = d->path;
    bo.tree = &tree;
    bo.problem = ws_restore_report_problem;
    if ((rc = make_dirs(m, &tree, &c, err)) != 0 ||
        (rc = ws_extra_split(repo, kr, m, &bo, err)) != 0)
        goto out;
    for (i = m->nextra; i-- > 0;) { /* files, then directories deepest first */
        nfiles += !m->extra[i].dir;
        if ((rc = settle(&m->extra[i], &tree, &c, err)) != 0)
            goto out;
    }
    if (syncfs(d->fd) != 0) {
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not sync \"%s\"", d->path);
        goto out;
    }
    printf("backup %s: %zu extra file(s) and %zu directory(ies) restored into \"%s\"%s\n", m->id,
           nfiles, m->nextra - nfiles, d->path,
           geteuid() == 0 ? "" : " (owners not restored: not run as root)");
    fflush(stdout);
out:
    ws_tree_cursor_close(&c);
    return rc;
}

/* The backup the options choose, its manifest, and its extra paths into DIR; *id: the backup. */
static int restore_extra(const struct ws_config *cfg, const struct ws_backup_env *env,
                         const struct ws_restore_opts *o, struct rdir *d, const struct pgdata_of *p,
                         char id[WS_BACKUP_ID_LEN + 1], struct ws_error *err)
{
    struct ws_keyring kr = {0};
    struct ws_repo repo = {0};
    struct ws_catalog cat = {0};
    struct ws_manifest m = {0};
    const struct ws_catalog_backup *b = NULL;
    int rc;

    if ((rc = ws_keyring_load(cfg, &kr, err)) != 0 ||
        (rc = ws_backup_repo_open(env, cfg, &repo, err)) != 0 ||
        (rc = ws_catalog_load(&repo, &kr, &cat, err)) != 0 ||
        (rc = ws_restore_choose(&cat, o, &b, err)) != 0 ||
        (rc = ws_catalog_manifest(&repo, &kr, b, &m, err)) != 0)
        goto out;
    memcpy(id, m.id, WS_BACKUP_ID_LEN + 1);
    if (m.nextra == 0) {
        rc = ws_error_set(err, WS_ERR_NOT_FOUND,
                          "backup %s holds no extra paths (backup_extra_paths was empty when it "
                          "was taken)",
                          m.id);
        goto out;
    }
    if ((rc = open_dir(o, d, p, err)) == 0)
        rc = restore_into(&repo, &kr, &m, d, err);
out:
    ws_manifest_free(&m);
    ws_catalog_free(&cat);
    if (repo.st)
        ws_repo_close(&repo);
    ws_keyring_wipe(&kr);
    return rc;
}

int ws_backup_restore_extra(const struct ws_config *cfg, const struct ws_backup_env *env,
                            const struct ws_restore_opts *o, struct ws_error *err)
{
    struct ws_restore_opts data = *o;
    char dir[PATH_MAX], id[WS_BACKUP_ID_LEN + 1];
    struct pgdata_of p;
    struct rdir d = {0};
    int rc;

    d.fd = d.ref.fd = -1;
    d.path = dir;
    if ((rc = check_dir(cfg, o, dir, sizeof(dir), &p, err)) != 0 ||
        (rc = restore_extra(cfg, env, o, &d, &p, id, err)) != 0)
        goto out;
    if (o->pgdata) { /* the same backup's data directory */
        data.backup = id;
        data.extra_to = NULL;
        rc = ws_backup_restore(cfg, env, &data, err);
    }
out:
    ws_restore_close_rdir(&d);
    return rc;
}
