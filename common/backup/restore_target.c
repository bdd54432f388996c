/*
 * backup/restore_target.c - the directories a restore writes into: the options, manifest paths,
 * tablespaces and target directories are checked before anything is touched; --force empties
 * only what these checks allow (docs/design/restore-safety.md).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <signal.h>
#include <unistd.h>

#include "backup/restore_int.h"
#include "base/log.h"

int ws_restore_has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

/* inner is outer or lies below it (both clean absolute paths). */
static int path_within(const char *inner, const char *outer)
{
    size_t n = strlen(outer);

    return strncmp(inner, outer, n) == 0 && (inner[n] == '\0' || inner[n] == '/');
}

/* p made absolute against the working directory, with ".", ".." and "//" resolved lexically. */
int ws_restore_absolute_path(const char *p, char *out, size_t outsz, struct ws_error *err)
{
    char buf[PATH_MAX * 2], cwd[PATH_MAX];
    const char *s;
    size_t n = 0;

    if (p[0] == '/') {
        if ((size_t)snprintf(buf, sizeof(buf), "%s", p) >= sizeof(buf))
            return ws_error_set(err, WS_ERR_USAGE, "--pgdata is too long");
    } else {
        if (!getcwd(cwd, sizeof(cwd)))
            return ws_error_setsys(err, WS_ERR_IO, errno, "could not get the working directory");
        if ((size_t)snprintf(buf, sizeof(buf), "%s/%s", cwd, p) >= sizeof(buf))
            return ws_error_set(err, WS_ERR_USAGE, "--pgdata is too long");
    }
    out[0] = '\0';
    for (s = buf; *s;) {
        const char *e = strchr(s, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len == 2 && s[0] == '.' && s[1] == '.') {
            while (n > 0 && out[n - 1] != '/')
                n--;
            if (n > 0)
                n--;
            out[n] = '\0';
        } else if (len > 0 && !(len == 1 && s[0] == '.')) {
            if (n + 1 + len >= outsz)
                return ws_error_set(err, WS_ERR_USAGE, "--pgdata is too long");
            out[n++] = '/';
            memcpy(out + n, s, len);
            n += len;
            out[n] = '\0';
        }
        s += len;
        if (*s == '/')
            s++;
    }
    if (n == 0)
        snprintf(out, outsz, "/");
    return 0;
}

static const char *mapped_location(const struct ws_restore_opts *o, const char *loc)
{
    size_t i;

    for (i = 0; i < o->nmaps; i++)
        if (strcmp(o->maps[i].from, loc) == 0)
            return o->maps[i].to;
    return loc;
}

/* Paths from a manifest must stay inside the data directory. */
static int safe_relpath(const char *p)
{
    const char *s = p;

    if (!*p || *p == '/')
        return 0;
    while (*s) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
            return 0;
        s += n;
        if (*s == '/')
            s++;
    }
    return 1;
}

/* Recovery targets end up in postgresql.auto.conf: a line break there would end the setting. */
int ws_restore_check_target(const struct ws_restore_opts *o, struct ws_error *err)
{
    static const char *const names[] = {
        "", "--target-time", "--target-lsn", "--target-xid", "--target-name", "--target-immediate"};

    if (o->target && ws_restore_has_control(o->target))
        return ws_error_set(err, WS_ERR_USAGE, "%s must not contain control characters",
                            o->target_kind >= 0 && o->target_kind <= WS_TARGET_IMMEDIATE
                                ? names[o->target_kind]
                                : "the recovery target");
    return 0;
}

int ws_restore_check_manifest_paths(const struct ws_manifest *m, struct ws_error *err)
{
    size_t i;

    for (i = 0; i < m->nfiles; i++)
        if (!safe_relpath(m->files[i].path))
            return ws_error_set(err, WS_ERR_CORRUPT, "backup %s: unsafe path \"%s\" in manifest",
                                m->id, m->files[i].path);
    for (i = 0; i < m->ndirs; i++)
        if (!safe_relpath(m->dirs[i].path))
            return ws_error_set(err, WS_ERR_CORRUPT, "backup %s: unsafe path \"%s\" in manifest",
                                m->id, m->dirs[i].path);
    return 0;
}

/* The tablespaces of the manifest and the --tablespace-map options: sane oids and locations,
 * and where each tablespace goes (r->ts), which must lie apart from the data directory and
 * from the others. */
int ws_restore_check_tablespaces(struct restore *r, struct ws_error *err)
{
    const struct ws_manifest *m = r->m;
    const struct ws_restore_opts *o = r->o;
    size_t t, u, i;

    for (t = 0; t < m->ntblspc; t++) {
        const struct ws_btblspc *b = &m->tblspc[t];
        if (b->oid < FIRST_NORMAL_OID)
            return ws_error_set(err, WS_ERR_CORRUPT,
                                "backup %s: tablespace oid %" PRIu32 " is not a user tablespace's",
                                m->id, b->oid);
        for (u = 0; u < t; u++)
            if (m->tblspc[u].oid == b->oid)
                return ws_error_set(err, WS_ERR_CORRUPT,
                                    "backup %s: tablespace %" PRIu32 " is listed twice", m->id,
                                    b->oid);
        if (!ws_path_clean_absolute(b->location))
            return ws_error_set(err, WS_ERR_CORRUPT,
                                "backup %s: tablespace %" PRIu32
                                " has location \"%s\", which is not an absolute normalised path",
                                m->id, b->oid, b->location);
    }
    for (i = 0; i < o->nmaps; i++) {
        const struct ws_tblspc_map *mp = &o->maps[i];
        for (t = 0; t < m->ntblspc && strcmp(m->tblspc[t].location, mp->from) != 0; t++)
            ;
        if (t == m->ntblspc)
            return ws_error_set(err, WS_ERR_USAGE,
                                "--tablespace-map \"%s\": backup %s has no tablespace there",
                                mp->from, m->id);
        for (u = 0; u < i; u++)
            if (strcmp(o->maps[u].from, mp->from) == 0)
                return ws_error_set(err, WS_ERR_USAGE, "--tablespace-map \"%s\" is given twice",
                                    mp->from);
        if (!ws_path_clean_absolute(mp->to))
            return ws_error_set(err, WS_ERR_USAGE,
                                "--tablespace-map \"%s\": NEWDIR must be an absolute path without "
                                "\".\", \"..\", \"//\" or a trailing slash, and not \"/\"",
                                mp->to);
    }
    for (t = 0; t < m->ntblspc; t++) {
        struct rdir *d = &r->ts[t];
        d->oid = m->tblspc[t].oid;
        snprintf(d->link, sizeof(d->link), "pg_tblspc/%" PRIu32, d->oid);
        d->path = mapped_location(o, m->tblspc[t].location);
        d->mapped = d->path != m->tblspc[t].location;
        /* --force empties a destination named on this command line that is no tablespace's
         * original location (the primary may be using that one); an original location only
         * when the replaced data directory links to it (ws_restore_inspect_targets) */
        d->clearable = d->mapped;
        for (u = 0; u < m->ntblspc; u++)
            if (path_within(d->path, m->tblspc[u].location) ||
                path_within(m->tblspc[u].location, d->path))
                d->clearable = 0;
        if (path_within(d->path, r->pgdata) || path_within(r->pgdata, d->path))
            return ws_error_set(err, d->mapped ? WS_ERR_USAGE : WS_ERR_INVALID,
                                "tablespace directory \"%s\" (tablespace %" PRIu32
                                ") and the data directory \"%s\" must lie apart%s",
                                d->path, d->oid, r->pgdata,
                                d->mapped ? "" : "; move the tablespace with --tablespace-map");
        for (u = 0; u < t; u++)
            if (path_within(d->path, r->ts[u].path) || path_within(r->ts[u].path, d->path))
                return ws_error_set(err, WS_ERR_USAGE,
                                    "tablespaces %" PRIu32 " and %" PRIu32
                                    " would share the directory \"%s\"",
                                    r->ts[u].oid, d->oid, d->path);
    }
    return 0;
}

/* Root restoring into a root-owned target (no privilege drop) creates and fills each
 * tablespace directory as root: a location from the manifest, which whoever writes the
 * repository chooses ("/root/.ssh"), is not enough; the command line must name it. */
int ws_restore_check_root_tablespaces(const struct restore *r, struct ws_error *err)
{
    size_t t;

    if (geteuid() != 0)
        return 0;
    for (t = 0; t < r->m->ntblspc; t++)
        if (!r->ts[t].mapped)
            return ws_error_set(err, WS_ERR_INVALID,
                                "tablespace %" PRIu32 ": the restore runs as root (root owns "
                                "\"%s\" or what holds it), and the location \"%s\" comes from "
                                "the backup's manifest, which whoever writes the repository "
                                "chooses: name the directory with --tablespace-map %s=DIR (DIR "
                                "may be that location), or restore into a directory the database "
                                "user owns",
                                r->ts[t].oid, r->pgdata, r->m->tblspc[t].location,
                                r->m->tblspc[t].location);
    return 0;
}

/* PostgreSQL decides on group access from the data directory's mode; the manifest has the
 * mode of "global", which it creates alike. */
int ws_restore_manifest_group_access(const struct ws_manifest *m)
{
    size_t i;

    for (i = 0; i < m->ndirs; i++)
        if (strcmp(m->dirs[i].path, "global") == 0)
            return (m->dirs[i].mode & 0050) == 0050;
    return 0;
}

/* What a restored directory gets: the manifest's mode masked to 0700 (0750 with group
 * access), and always 0700 for its owner (the restore writes into it). */
mode_t ws_restore_dir_mode(const struct restore *r, uint32_t manifest_mode)
{
    return (mode_t)((manifest_mode & (r->group_access ? 0750u : 0700u)) | 0700u);
}

/* ---- the target directories --------------------------------------------------------------- */

/* What directory fd holds: anything at all, a postmaster.pid, a PG_* directory. */
static int scan_dir(struct rdir *d, struct ws_error *err)
{
    int fd = openat(d->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *dir;
    struct dirent *de;

    d->empty = 1;
    d->has_pid = 0;
    d->pg[0] = '\0';
    if (fd < 0 || !(dir = fdopendir(fd))) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return ws_error_setsys(err, WS_ERR_IO, e, "could not open directory \"%s\"", d->path);
    }
    while ((de = readdir(dir)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        d->empty = 0;
        if (strcmp(de->d_name, "postmaster.pid") == 0)
            d->has_pid = 1;
        if (strncmp(de->d_name, "PG_", 3) == 0 && !d->pg[0])
            snprintf(d->pg, sizeof(d->pg), "%s", de->d_name);
    }
    closedir(dir);
    return 0;
}

/* Opens a directory that exists (d->ref found it) for reading and looks at what it holds. */
int ws_restore_inspect_dir(struct rdir *d, struct ws_error *err)
{
    d->empty = 1;
    if (d->ref.missing[0])
        return 0;
    if ((d->fd = openat(d->ref.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not open directory \"%s\"", d->path);
    return scan_dir(d, err);
}

/* A directory the restore fills must be ours (PostgreSQL wants its directories so, and we
 * change nothing that belongs to someone else). */
static int check_mine(const struct rdir *d, const char *what, struct ws_error *err)
{
    struct stat st;

    if (d->fd < 0)
        return 0;
    if (fstat(d->fd, &st) != 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not stat \"%s\"", d->path);
    if (st.st_uid != geteuid())
        return ws_error_set(err, WS_ERR_INVALID,
                            "%s \"%s\" belongs to user %u, not to user %u who restores into it",
                            what, d->path, (unsigned)st.st_uid, (unsigned)geteuid());
    return 0;
}

/* A link in the data directory's pg_tblspc (as it was before the restore) leads to d: d is a
 * tablespace of the cluster that --force replaces. */
static int linked_from_data(const struct restore *r, const struct rdir *d)
{
    struct stat want, st;
    struct dirent *de;
    DIR *dir;
    int fd, found = 0;

    if (r->data.fd < 0 || fstat(d->fd, &want) != 0)
        return 0;
    if ((fd = openat(r->data.fd, "pg_tblspc", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
        return 0;
    if (!(dir = fdopendir(fd))) {
        close(fd);
        return 0;
    }
    while (!found && (de = readdir(dir)) != NULL)
        found = strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 &&
                fstatat(fd, de->d_name, &st, 0) == 0 && st.st_dev == want.st_dev &&
                st.st_ino == want.st_ino;
    closedir(dir);
    return found;
}

/* A tablespace directory: looked up, looked at, ours. */
static int inspect_tablespace(struct rdir *d, struct ws_error *err)
{
    if (ws_dir_lookup(d->path, &d->ref, err) != 0 || ws_restore_inspect_dir(d, err) != 0 ||
        check_mine(d, "tablespace directory", err) != 0)
        return ws_error_prefix(err, "tablespace %" PRIu32, d->oid);
    return 0;
}

/* The data directory and every tablespace directory: refused unless each is empty, missing,
 * or one --force may empty. Nothing is changed yet. */
int ws_restore_inspect_targets(struct restore *r, struct ws_error *err)
{
    struct rdir *d = &r->data;
    size_t t;
    int rc, ours;

    if ((rc = ws_restore_inspect_dir(d, err)) != 0 ||
        (rc = check_mine(d, "data directory", err)) != 0)
        return rc;
    if (!d->empty && !r->o->force)
        return ws_error_set(err, WS_ERR_INVALID,
                            "data directory \"%s\" is not empty; restore into an empty directory "
                            "or add --force to replace its contents",
                            d->path);
    if (d->has_pid)
        return ws_error_set(err, WS_ERR_INVALID,
                            "data directory \"%s\" holds postmaster.pid: stop the server (or "
                            "remove a stale postmaster.pid) before restoring over it",
                            d->path);
    for (t = 0; t < r->m->ntblspc; t++) {
        d = &r->ts[t];
        if ((rc = inspect_tablespace(d, err)) != 0)
            return rc;
        if (d->empty)
            continue;
        /* the data directory --force replaces links to it: that cluster's own tablespace */
        ours = r->o->force && linked_from_data(r, d);
        if (!d->clearable && !(ours && strcmp(d->path, r->m->tblspc[t].location) == 0)) {
            char held[NAME_MAX + 80] = "";
            if (d->pg[0])
                snprintf(held, sizeof(held),
                         " (it holds \"%s\": a tablespace of a cluster, perhaps the one backed up)",
                         d->pg);
            return ws_error_set(err, WS_ERR_INVALID,
                                "tablespace directory \"%s\" of tablespace %" PRIu32
                                " is not empty%s; --force empties a tablespace's original "
                                "location only when the data directory it replaces links to it: "
                                "restore the tablespace elsewhere with --tablespace-map %s=NEWDIR",
                                d->path, d->oid, held, r->m->tblspc[t].location);
        }
        if (!r->o->force)
            return ws_error_set(err, WS_ERR_INVALID,
                                "tablespace directory \"%s\" (--tablespace-map) is not empty; use "
                                "an empty directory or add --force to replace its contents",
                                d->path);
        if (d->has_pid)
            return ws_error_set(err, WS_ERR_INVALID,
                                "tablespace directory \"%s\" holds postmaster.pid: it is a data "
                                "directory, not emptied",
                                d->path);
        if (d->pg[0] && !ours)
            return ws_error_set(err, WS_ERR_INVALID,
                                "tablespace directory \"%s\" (--tablespace-map) holds \"%s\", a "
                                "tablespace that no link in \"%s/pg_tblspc\" points to (another "
                                "cluster's?): --force empties only the tablespaces of the data "
                                "directory it replaces; choose another directory",
                                d->path, d->pg, r->data.path);
    }
    return 0;
}

/* postmaster.pid in the data directory names a process that runs (kill(pid, 0) finds it):
 * *pid is that process, 0 when the file is missing, stale or unreadable. */
static void live_postmaster(const struct rdir *d, long *pid)
{
    char buf[32] = "", *end;
    int fd = openat(d->fd, "postmaster.pid", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    ssize_t n = fd >= 0 ? ws_pread_full(fd, buf, sizeof(buf) - 1, 0) : -1;
    long p;

    *pid = 0;
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return;
    buf[n] = '\0';
    errno = 0;
    p = strtol(buf, &end, 10);
    if (errno == 0 && end != buf && p > 0 && (*end == '\n' || *end == '\0') &&
        (kill((pid_t)p, 0) == 0 || errno == EPERM))
        *pid = p;
}

int ws_restore_inspect_delta_targets(struct restore *r, struct ws_error *err)
{
    struct rdir *d = &r->data;
    long pid;
    int rc;

    if ((rc = ws_restore_inspect_dir(d, err)) != 0 ||
        (rc = check_mine(d, "data directory", err)) != 0)
        return rc;
    if (d->empty)
        return ws_error_set(err, WS_ERR_INVALID,
                            "--delta: data directory \"%s\" is %s; restore into it without --delta",
                            d->path, d->ref.missing[0] ? "missing" : "empty");
    live_postmaster(d, &pid);
    if (pid)
        return ws_error_set(err, WS_ERR_INVALID,
                            "data directory \"%s\" holds postmaster.pid of process %ld, which is "
                            "running: stop the server before a delta restore",
                            d->path, pid);
    for (size_t t = 0; t < r->m->ntblspc; t++) {
        d = &r->ts[t];
        if ((rc = inspect_tablespace(d, err)) != 0)
            return rc;
        if (!d->empty && (!linked_from_data(r, d) || d->has_pid))
            return ws_error_set(err, WS_ERR_INVALID,
                                "--delta: tablespace directory \"%s\" of tablespace %" PRIu32
                                " is not empty and \"%s/pg_tblspc\" does not link to it: a delta "
                                "restore rewrites only the data directory's own tablespaces",
                                d->path, d->oid, r->data.path);
    }
    return 0;
}

/* inner is outer or lies below it, by device and inode (links and mounts make paths lie). */
static int dir_within(int inner, int outer, int *within, struct ws_error *err)
{
    struct stat o, st, pst;
    int fd = openat(inner, ".", O_PATH | O_DIRECTORY | O_CLOEXEC), depth, rc = 0;

    *within = 0;
    if (fd < 0 || fstat(outer, &o) != 0) {
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not stat a target directory");
        goto out;
    }
    for (depth = 0; depth < 4096; depth++) {
        int up;
        if (fstat(fd, &st) != 0) {
            rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not stat a target directory");
            goto out;
        }
        if (st.st_dev == o.st_dev && st.st_ino == o.st_ino) {
            *within = 1;
            goto out;
        }
        if ((up = openat(fd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0 || fstat(up, &pst) != 0) {
            rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not open a parent directory");
            if (up >= 0)
                close(up);
            goto out;
        }
        close(fd);
        fd = up;
        if (pst.st_dev == st.st_dev && pst.st_ino == st.st_ino)
            goto out; /* "/" */
    }
out:
    if (fd >= 0)
        close(fd);
    return rc;
}

static int apart(const struct rdir *a, const struct rdir *b, struct ws_error *err)
{
    int in1, in2, rc;

    if ((rc = dir_within(a->fd, b->fd, &in1, err)) != 0 ||
        (rc = dir_within(b->fd, a->fd, &in2, err)) != 0)
        return rc;
    if (in1 || in2)
        return ws_error_set(err, WS_ERR_INVALID,
                            "\"%s\" and \"%s\" are the same directory or one holds the other: a "
                            "data directory and its tablespaces must lie apart",
                            a->path, b->path);
    return 0;
}

/* Creates what is missing (each directory as it is named, links of others refused) and checks
 * by inode that the directories lie apart. The "/" of the file system is never a target. */
int ws_restore_create_targets(struct restore *r, struct ws_error *err)
{
    size_t t, u;
    int rc, top;

    for (t = 0; t <= r->m->ntblspc; t++) {
        struct rdir *d = t == 0 ? &r->data : &r->ts[t - 1];
        if (!d->ref.missing[0])
            continue;
        if ((rc = ws_dir_create(&d->ref, d->path, 0700, err)) != 0)
            return rc;
        if ((d->fd = openat(d->ref.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
            return ws_error_setsys(err, WS_ERR_IO, errno, "could not open directory \"%s\"",
                                   d->path);
        /* someone else may have made it first */
        if ((rc = check_mine(d, t == 0 ? "data directory" : "tablespace directory", err)) != 0)
            return rc;
    }
    {
        int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (root < 0)
            return ws_error_setsys(err, WS_ERR_IO, errno, "could not open \"/\"");
        rc = dir_within(root, r->data.fd, &top, err);
        close(root);
        if (rc == 0 && top)
            rc = ws_error_set(err, WS_ERR_INVALID, "data directory \"%s\" is the root directory",
                              r->data.path);
        if (rc)
            return rc;
    }
    for (t = 0; t < r->m->ntblspc; t++) {
        if ((rc = apart(&r->ts[t], &r->data, err)) != 0)
            return rc;
        for (u = 0; u < t; u++)
            if ((rc = apart(&r->ts[t], &r->ts[u], err)) != 0)
                return rc;
    }
    return 0;
}

int ws_restore_unlink_in(const struct rdir *d, const char *name, struct ws_error *err)
{
    if (unlinkat(d->fd, name, 0) != 0 && errno != ENOENT)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not remove \"%s/%s\"", d->path, name);
    return 0;
}

/* What makes a replaced data directory start, removed (durably) before anything else is: a
 * restore killed while it empties the tablespaces must not leave recovery.signal (nor the old
 * pg_control) beside half of them. */
static int disarm_data_dir(struct rdir *d, struct ws_error *err)
{
    struct rdir global = {0};
    char gpath[PATH_MAX];
    int rc;

    if ((rc = ws_restore_unlink_in(d, "recovery.signal", err)) != 0 ||
        (rc = ws_restore_unlink_in(d, "standby.signal", err)) != 0)
        return rc;
    global.fd = openat(d->fd, "global", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (global.fd < 0 && (errno == ELOOP || errno == ENOTDIR)) { /* no directory: it goes now */
        if ((rc = ws_restore_unlink_in(d, "global", err)) != 0)
            return rc;
    } else if (global.fd < 0 && errno != ENOENT)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not open \"%s/global\"", d->path);
    if (global.fd >= 0) {
        snprintf(gpath, sizeof(gpath), "%s/global", d->path);
        global.path = gpath;
        if ((rc = ws_restore_unlink_in(&global, "pg_control", err)) == 0 && fsync(global.fd) != 0)
            rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not fsync \"%s/global\"", d->path);
        close(global.fd);
        if (rc)
            return rc;
    }
    if (fsync(d->fd) != 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not fsync \"%s\"", d->path);
    return 0;
}

/* --force: empties what inspect_targets allowed; then the modes PostgreSQL wants. The
 * tablespace directories go first: while the data directory keeps its pg_tblspc links, a
 * restore killed meanwhile can be repeated (see linked_from_data). */
int ws_restore_empty_targets(struct restore *r, struct ws_error *err)
{
    mode_t mode = r->group_access ? 0750 : 0700;
    size_t t, n = r->m->ntblspc;
    int rc;

    if (!r->data.empty && (rc = disarm_data_dir(&r->data, err)) != 0)
        return rc;
    for (t = 0; t <= n; t++) {
        struct rdir *d = t == n ? &r->data : &r->ts[t];
        if (!d->empty) {
            ws_log_warning("--force: removing the contents of %s \"%s\"",
                           t == n ? "data directory" : "tablespace directory", d->path);
            if ((rc = ws_dir_clear(d->fd, d->path, err)) != 0)
                return rc;
        }
        if (fchmod(d->fd, mode) != 0)
            return ws_error_setsys(err, WS_ERR_IO, errno, "could not chmod \"%s\"", d->path);
    }
    return 0;
}

void ws_restore_close_rdir(struct rdir *d)
{
    if (d->fd >= 0)
        close(d->fd);
    d->fd = -1;
    ws_dir_ref_close(&d->ref);
}
