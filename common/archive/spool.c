#include "archive/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/crc32c.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/util.h"

#define MAX_LINKS 40 /* as the kernel's path walk */
#define LOCK_POLL_US 1000

/* ---- paths ---- */

int ws_spool_normalise(const char *path, char out[PATH_MAX])
{
    const char *p = path;
    size_t len = 0;

    if (!path || path[0] != '/')
        return -1;
    out[0] = '/';
    out[1] = '\0';
    len = 1;
    while (*p) {
        size_t n;
        while (*p == '/')
            p++;
        n = strcspn(p, "/");
        if (n == 0 || (n == 1 && p[0] == '.')) {
            /* nothing */
        } else if (n == 2 && p[0] == '.' && p[1] == '.') {
            while (len > 1 && out[len - 1] != '/')
                len--;
            if (len > 1)
                len--; /* the slash before the last component */
            out[len] = '\0';
        } else {
            if (len + (len > 1) + n >= PATH_MAX)
                return -1;
            if (len > 1)
                out[len++] = '/';
            memcpy(out + len, p, n);
            len += n;
            out[len] = '\0';
        }
        p += n;
    }
    return 0;
}

/* ---- the places a spool must never be ---- */

struct forbidden {
    struct stat st;
    const char *what; /* "the data directory", ... */
    const char *path;
    int set;
};

static void forbidden_init(const struct ws_spool_place *place, struct forbidden f[3])
{
    const char *paths[3] = {place ? place->datadir : NULL, place ? place->waldir : NULL,
                            place ? place->destdir : NULL};
    static const char *const what[3] = {"the data directory", "pg_wal",
                                        "the directory of DEST_PATH"};

    for (int i = 0; i < 3; i++) {
        f[i].what = what[i];
        f[i].path = paths[i];
        f[i].set = paths[i] && stat(paths[i], &f[i].st) == 0 && S_ISDIR(f[i].st.st_mode);
    }
}

/* The first forbidden place that st is, or NULL. */
static const struct forbidden *forbidden_match(const struct forbidden f[3], const struct stat *st)
{
    for (int i = 0; i < 3; i++)
        if (f[i].set && f[i].st.st_dev == st->st_dev && f[i].st.st_ino == st->st_ino)
            return &f[i];
    return NULL;
}

static int refuse_inside(const char *spool_dir, const struct forbidden *m, struct ws_error *err)
{
    char real[PATH_MAX];

    if (!realpath(m->path, real))
        snprintf(real, sizeof(real), "%s", m->path);
    return ws_error_set(err, WS_ERR_CONFIG,
                        "spool_dir \"%s\" is inside %s \"%s\"; set spool_dir to a directory "
                        "outside of the data directory",
                        spool_dir, m->what, real);
}

/* ---- the walk from / to spool_dir ---- */

static int trusted_owner(uid_t uid)
{
    return uid == 0 || uid == geteuid();
}

/* Others may create entries in it, but (sticky) not rename or remove ours. */
static int sticky_open(const struct stat *st)
{
    return (st->st_mode & (S_IWGRP | S_IWOTH)) && (st->st_mode & S_ISVTX);
}

static int check_walked(const char *path, const struct stat *st, struct ws_error *err)
{
    if (!S_ISDIR(st->st_mode))
        return ws_error_set(err, WS_ERR_CONFIG, "\"%s\" is not a directory", path);
    if (!trusted_owner(st->st_uid))
        return ws_error_set(err, WS_ERR_CONFIG,
                            "directory \"%s\" is owned by user %u, not by root or this user (%u)",
                            path, (unsigned)st->st_uid, (unsigned)geteuid());
    if ((st->st_mode & (S_IWGRP | S_IWOTH)) && !(st->st_mode & S_ISVTX))
        return ws_error_set(err, WS_ERR_CONFIG,
                            "directory \"%s\" is writable by group or others (mode %04o)", path,
                            (unsigned)(st->st_mode & 07777));
    return 0;
}

static int append(char out[PATH_MAX], const char *name, size_t n)
{
    size_t len = strlen(out);
    int slash = !(len == 1 && out[0] == '/');

    if (len + (size_t)slash + n >= PATH_MAX)
        return -1;
    if (slash)
        out[len++] = '/';
    memcpy(out + len, name, n);
    out[len + n] = '\0';
    return 0;
}

/* The new path to walk after link `target` met at `resolved` (its directory), `rest` to go. */
static int follow(const char *resolved, const char *target, const char *rest, char path[PATH_MAX])
{
    char buf[2 * PATH_MAX + 2];
    int n = target[0] == '/' ? snprintf(buf, sizeof(buf), "%s/%s", target, rest)
                             : snprintf(buf, sizeof(buf), "%s/%s/%s", resolved, target, rest);
    return n < 0 || (size_t)n >= sizeof(buf) || strlen(buf) >= PATH_MAX ||
                   ws_spool_normalise(buf, path) != 0
               ? -1
               : 0;
}

/* A walk from / to spool_dir: the directory reached so far and what it has passed. */
struct walker {
    const char *spool_dir; /* as configured, for messages */
    const struct forbidden *fb;
    char path[PATH_MAX];            /* the absolute, normalised path being walked */
    char resolved[PATH_MAX];        /* the directories entered so far */
    int fd;                         /* the last of them (O_PATH), or -1 */
    struct stat st;                 /* its stat */
    const struct forbidden *inside; /* the innermost forbidden place entered, or NULL */
    int links;
};

static int too_long(const struct walker *w, struct ws_error *err)
{
    return ws_error_set(err, WS_ERR_CONFIG, "spool_dir \"%s\" is too long", w->spool_dir);
}

static int foreign_in_sticky(const char *path, uid_t uid, struct ws_error *err)
{
    return ws_error_set(err, WS_ERR_CONFIG,
                        "\"%s\" is owned by user %u in a directory others may write", path,
                        (unsigned)uid);
}

/* Starts (again) at /. */
static int walk_root(struct walker *w, struct ws_error *err)
{
    if (w->fd >= 0)
        close(w->fd);
    snprintf(w->resolved, sizeof(w->resolved), "/");
    w->inside = NULL;
    if ((w->fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0 || fstat(w->fd, &w->st) != 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not open directory \"/\"");
    w->inside = forbidden_match(w->fb, &w->st);
    return check_walked("/", &w->st, err);
}

/* The entry `name` of the current directory, created 0700 if missing (never inside a forbidden
 * place), into *lst. */
static int walk_lookup(struct walker *w, const char *name, struct stat *lst, struct ws_error *err)
{
    if (fstatat(w->fd, name, lst, AT_SYMLINK_NOFOLLOW) == 0)
        return 0;
    if (errno != ENOENT)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not stat \"%s\"", w->resolved);
    if (w->inside)
        return refuse_inside(w->spool_dir, w->inside, err);
    if (mkdirat(w->fd, name, 0700) != 0 && errno != EEXIST)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not create directory \"%s\"",
                               w->resolved);
    if (fstatat(w->fd, name, lst, AT_SYMLINK_NOFOLLOW) != 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not stat \"%s\"", w->resolved);
    return 0;
}

/* The link `name` (at w->resolved) with `rest` still to walk: w->path becomes the new path. */
static int walk_link(struct walker *w, const char *name, const char *rest, struct ws_error *err)
{
    char target[PATH_MAX], dir[PATH_MAX];
    ssize_t n = readlinkat(w->fd, name, target, sizeof(target) - 1);

    if (n < 0 || ++w->links > MAX_LINKS)
        return ws_error_setsys(err, WS_ERR_CONFIG, n < 0 ? errno : ELOOP,
                               "could not follow link \"%s\"", w->resolved);
    target[n] = '\0';
    snprintf(dir, sizeof(dir), "%s", w->resolved);
    *strrchr(dir, '/') = '\0';
    return follow(dir[0] ? dir : "/", target, rest, w->path) == 0 ? 0 : too_long(w, err);
}

/* Enters directory `name` of the current one. */
static int walk_enter(struct walker *w, const char *name, struct ws_error *err)
{
    struct stat parent = w->st;
    int fd = openat(w->fd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), rc;

    if (fd < 0 || fstat(fd, &w->st) != 0) {
        rc = ws_error_setsys(err, errno == ENOTDIR ? WS_ERR_CONFIG : WS_ERR_IO, errno,
                             "could not open directory \"%s\"", w->resolved);
        if (fd >= 0)
            close(fd);
        return rc;
    }
    close(w->fd);
    w->fd = fd;
    if ((rc = check_walked(w->resolved, &w->st, err)) != 0)
        return rc;
    if (sticky_open(&parent) && !trusted_owner(w->st.st_uid))
        return foreign_in_sticky(w->resolved, w->st.st_uid, err);
    if (forbidden_match(w->fb, &w->st))
        w->inside = forbidden_match(w->fb, &w->st); /* the innermost names it best */
    return 0;
}

/* One component from *p: 0 entered, 1 a link (walk w->path again from /), else an error. */
static int walk_step(struct walker *w, const char **p, struct ws_error *err)
{
    char name[NAME_MAX + 1];
    size_t n = strcspn(*p, "/");
    struct stat lst;
    int rc;

    if (n > NAME_MAX)
        return too_long(w, err);
    memcpy(name, *p, n);
    name[n] = '\0';
    *p += n;
    if (append(w->resolved, name, n) != 0)
        return too_long(w, err);
    if ((rc = walk_lookup(w, name, &lst, err)) != 0)
        return rc;
    if (sticky_open(&w->st) && !trusted_owner(lst.st_uid))
        return foreign_in_sticky(w->resolved, lst.st_uid, err);
    if (S_ISLNK(lst.st_mode))
        return (rc = walk_link(w, name, *p, err)) != 0 ? rc : 1;
    return walk_enter(w, name, err);
}

/*
 * Opens directory `norm` (absolute, normalised) component by component from /, creating
 * missing ones 0700, following links only as the rule allows; *out is an O_PATH descriptor.
 */
static int walk(const char *spool_dir, const char *norm, const struct forbidden fb[3], int *out,
                struct ws_error *err)
{
    struct walker w;
    int rc = 0;

    memset(&w, 0, sizeof(w));
    w.spool_dir = spool_dir;
    w.fb = fb;
    w.fd = -1;
    snprintf(w.path, sizeof(w.path), "%s", norm);
    *out = -1;
    for (;;) {
        char path[PATH_MAX];
        const char *p = path;
        memcpy(path, w.path, sizeof(path)); /* walk_link replaces w.path */
        if ((rc = walk_root(&w, err)) != 0)
            break;
        while (*p == '/')
            p++;
        while (*p && (rc = walk_step(&w, &p, err)) == 0)
            while (*p == '/')
                p++;
        if (rc == 1)
            continue; /* a link: its target from / */
        if (rc == 0 && w.inside)
            rc = refuse_inside(spool_dir, w.inside, err);
        break;
    }
    if (rc != 0) {
        if (w.fd >= 0)
            close(w.fd);
        return rc;
    }
    *out = w.fd;
    return 0;
}

/* ---- the directories below spool_dir ---- */

static int subdir(int parent, const char *parent_path, const char *name, int private_dir, int flags,
                  const struct forbidden fb[3], const char *spool_dir, struct ws_spool_dir *out,
                  struct ws_error *err)
{
    const struct forbidden *m;
    struct stat st;
    int fd;

    out->fd = -1;
    if (snprintf(out->path, sizeof(out->path), "%s%s%s", parent_path,
                 strcmp(parent_path, "/") ? "/" : "", name) >= (int)sizeof(out->path))
        return ws_error_set(err, WS_ERR_CONFIG, "spool_dir \"%s\" is too long", spool_dir);
    if (!name[0] || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return ws_error_set(err, WS_ERR_CONFIG, "\"%s\" is not a valid spool directory name", name);
    for (int attempt = 0;; attempt++) {
        if (mkdirat(parent, name, 0700) != 0 && errno != EEXIST)
            return ws_error_setsys(err, WS_ERR_IO, errno, "could not create directory \"%s\"",
                                   out->path);
        fd = openat(parent, name, flags | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        /* ENOENT: removed since mkdirat (an idle prefetcher removes its own): make it again */
        if (fd >= 0 || errno != ENOENT || attempt == 2)
            break;
    }
    if (fd < 0) {
        int e = errno;
        if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
            return ws_error_set(err, WS_ERR_CONFIG, "spool directory \"%s\" is a symbolic link",
                                out->path);
        return ws_error_setsys(err, e == ENOTDIR ? WS_ERR_CONFIG : WS_ERR_IO, e,
                               "could not open spool directory \"%s\"", out->path);
    }
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return ws_error_setsys(err, WS_ERR_IO, e, "could not stat \"%s\"", out->path);
    }
    if (st.st_uid != geteuid() || (st.st_mode & (private_dir ? 077 : 022))) {
        close(fd);
        if (st.st_uid != geteuid())
            return ws_error_set(err, WS_ERR_CONFIG,
                                "spool directory \"%s\" is owned by user %u, not by this user (%u)",
                                out->path, (unsigned)st.st_uid, (unsigned)geteuid());
        return ws_error_set(err, WS_ERR_CONFIG,
                            "spool directory \"%s\" is %s by group or others (mode %04o)%s",
                            out->path, private_dir ? "accessible" : "writable",
                            (unsigned)(st.st_mode & 07777), private_dir ? "; it must be 0700" : "");
    }
    if ((m = forbidden_match(fb, &st)) != NULL) {
        close(fd);
        return refuse_inside(spool_dir, m, err);
    }
    out->fd = fd;
    return 0;
}

void ws_spool_close(struct ws_spool *sp)
{
    if (sp->cluster.fd >= 0)
        close(sp->cluster.fd);
    sp->cluster.fd = -1;
    for (size_t i = 0; i < sp->nsub; i++) {
        if (sp->sub[i].fd >= 0)
            close(sp->sub[i].fd);
        sp->sub[i].fd = -1;
    }
    sp->nsub = 0;
}

int ws_spool_open(const struct ws_config *cfg, const struct ws_spool_place *place,
                  const char *const *subs, size_t nsub, int private_subs, struct ws_spool *sp,
                  struct ws_error *err)
{
    struct forbidden fb[3];
    char norm[PATH_MAX];
    int top = -1, rc;

    memset(sp, 0, sizeof(*sp));
    sp->cluster.fd = -1;
    if (!cfg->spool_dir || !cfg->spool_dir[0])
        return ws_error_set(err, WS_ERR_CONFIG, "spool_dir is empty");
    if (cfg->spool_dir[0] != '/')
        return ws_error_set(err, WS_ERR_CONFIG, "spool_dir \"%s\" is not an absolute path",
                            cfg->spool_dir);
    if (nsub > WS_SPOOL_MAX_SUB || ws_spool_normalise(cfg->spool_dir, norm) != 0)
        return ws_error_set(err, WS_ERR_CONFIG, "spool_dir \"%s\" is too long", cfg->spool_dir);
    forbidden_init(place, fb);
    if ((rc = walk(cfg->spool_dir, norm, fb, &top, err)) != 0)
        goto out;
    if ((rc = subdir(top, norm, cfg->cluster, 0, O_PATH, fb, cfg->spool_dir, &sp->cluster, err)) !=
        0)
        goto out;
    for (size_t i = 0; i < nsub; i++) {
        sp->nsub = i + 1;
        if ((rc = subdir(sp->cluster.fd, sp->cluster.path, subs[i], private_subs, O_RDONLY, fb,
                         cfg->spool_dir, &sp->sub[i], err)) != 0)
            goto out;
    }
out:
    if (top >= 0)
        close(top);
    if (rc != 0)
        ws_spool_close(sp);
    return rc;
}

/* What is wrong with <spool_dir>/<cluster> or its subdirectories for this user, with the command
 * that fixes it (ws_dir_owner_problem); "" when none of them shows a problem of ownership. */
static void spool_fix(const struct ws_config *cfg, const char *const *subs, size_t nsub, char *out,
                      size_t outsz)
{
    char dir[PATH_MAX + 80];

    out[0] = '\0';
    for (size_t i = 0; i <= nsub && !out[0]; i++) {
        if (snprintf(dir, sizeof(dir), "%s/%s%s%s", cfg->spool_dir, cfg->cluster, i ? "/" : "",
                     i ? subs[i - 1] : "") >= (int)sizeof(dir))
            return;
        ws_dir_owner_problem(dir, geteuid(), getegid(), out, outsz);
        if (access(dir, F_OK) != 0)
            break; /* judged by its parent; nothing below it exists */
    }
}

/* The directory for the rate-limit stamp of the warning: $HOME, when it is private to this user
 * (owned by it, writable by no one else), opened without following a link at its last
 * component; never for root (whose spool is refused anyway, and whose home is not the server's)
 * nor for a spool_dir that is not absolute. Not the spool, which is what is broken, nor its
 * parent, which may be the data directory (docs/design/spool.md, "The warning's stamp").
 * -1 when there is none. */
static int stamp_dir(const struct ws_config *cfg)
{
    const char *home = getenv("HOME");
    struct stat st;
    int fd;

    if (geteuid() == 0 || cfg->spool_dir[0] != '/' || !home || home[0] != '/')
        return -1;
    fd = open(home, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) == 0 && st.st_uid == geteuid() && !(st.st_mode & (S_IWGRP | S_IWOTH)))
        return fd;
    close(fd);
    return -1;
}

/* 1 when the "is disabled" warning of this spool is due: its stamp
 * (".walsafe-spool-<cluster>-<crc of spool_dir>.warned") is absent or older than a minute, and
 * then it is touched; under an exclusive lock, so of concurrent callers one warns. 1 as well
 * when no private directory holds a stamp (the warning then repeats, saying so is the caller's
 * business: it is logged in full each time). */
static int warning_due(const struct ws_config *cfg)
{
    char name[128];
    struct stat st;
    int dir = stamp_dir(cfg), fd, due = 1;

    if (dir < 0)
        return 1;
    snprintf(name, sizeof(name), ".walsafe-spool-%s-%08x.warned", cfg->cluster,
             (unsigned)ws_crc32c(0, cfg->spool_dir, strlen(cfg->spool_dir)));
    fd = openat(dir, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    close(dir);
    if (fd < 0)
        return 1;
    if (flock(fd, LOCK_EX) == 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
        st.st_uid == geteuid()) {
        due = st.st_size == 0 || time(NULL) - st.st_mtime >= 60;
        if (due && (ws_pwrite_all(fd, "1", 1, 0) != 0 || futimens(fd, NULL) != 0))
            due = 1;
    }
    close(fd);
    return due;
}

int ws_spool_use(const struct ws_config *cfg, const char *what, const struct ws_spool_place *place,
                 const char *const *subs, size_t nsub, int private_subs, struct ws_spool *sp)
{
    struct ws_error err = {0};

    if (!cfg->spool_dir || !cfg->spool_dir[0]) {
        memset(sp, 0, sizeof(*sp));
        sp->cluster.fd = -1;
        ws_log_info("%s is off: spool_dir is empty", what);
        return -1;
    }
    if (ws_spool_open(cfg, place, subs, nsub, private_subs, sp, &err) != 0) {
        char fix[4200];
        spool_fix(cfg, subs, nsub, fix, sizeof(fix));
        if (warning_due(cfg))
            ws_log_warning("%s is disabled: %s%s%s", what, err.msg, fix[0] ? "; " : "", fix);
        else
            ws_log_debug("%s is disabled: %s", what, err.msg);
        return -1;
    }
    return 0;
}

/* ---- files ---- */

int ws_spool_openat(int dir, const char *name, int flags, int *out, struct ws_error *err)
{
    struct stat st;
    int fd = openat(dir, name, flags | O_NOFOLLOW | O_CLOEXEC, 0600);

    *out = -1;
    if (fd < 0) {
        if (errno == ENOENT) /* the file, or (O_CREAT) the directory: it was removed */
            return ws_error_setsys(err, WS_ERR_NOT_FOUND, ENOENT,
                                   "could not open spool file \"%s\"", name);
        return ws_error_setsys(err, errno == ELOOP ? WS_ERR_CONFIG : WS_ERR_IO, errno,
                               "could not open spool file \"%s\"", name);
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
        close(fd);
        return ws_error_set(err, WS_ERR_CONFIG,
                            "spool file \"%s\" is not a file of this user; not trusted", name);
    }
    *out = fd;
    return 0;
}

void *ws_spool_opendir(int dir)
{
    int fd = openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d;

    if (fd < 0)
        return NULL;
    if (!(d = fdopendir(fd)))
        close(fd);
    return d;
}

int ws_spool_lock(int dir, const char *name, double wait_s, int *out, struct ws_error *err)
{
    double t0 = ws_now_monotonic();
    int rc, moved = 0;

    *out = -1;
    for (;;) {
        struct stat a, b;
        int fd;
        if ((rc = ws_spool_openat(dir, name, O_RDWR | O_CREAT, &fd, err)) != 0)
            return rc;
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
            /* Still the file at its name? (its holder unlinks it before unlocking) */
            if (fstat(fd, &a) == 0 && fstatat(dir, name, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
                a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
                *out = fd;
                return 0;
            }
            close(fd);
            if (++moved > 100)
                return ws_error_set(err, WS_ERR_EXISTS, "lock file \"%s\" keeps changing", name);
            continue;
        }
        rc = errno;
        close(fd);
        if (rc != EWOULDBLOCK)
            return ws_error_setsys(err, WS_ERR_IO, rc, "could not lock \"%s\"", name);
        if (ws_now_monotonic() - t0 >= wait_s)
            return ws_error_set(err, WS_ERR_EXISTS, "\"%s\" is locked by another process", name);
        usleep(LOCK_POLL_US);
    }
}

void ws_spool_unlock(int dir, const char *name, int fd)
{
    if (fd < 0)
        return;
    unlinkat(dir, name, 0); /* while locked: see ws_spool_lock */
    close(fd);
}

/* ---- a file written under a temp name in a spool directory ---- */

struct spool_sink {
    struct ws_sink base;
    int dir, fd;
    char name[NAME_MAX + 1], tmp[NAME_MAX + 1];
};

static int spool_sink_write(struct ws_sink *s, const void *buf, size_t len, struct ws_error *err)
{
    struct spool_sink *f = (struct spool_sink *)s;
    if (ws_write_all(f->fd, buf, len) != 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not write spool file \"%s\"", f->tmp);
    return 0;
}

static int spool_sink_finish(struct ws_sink *s, struct ws_error *err)
{
    struct spool_sink *f = (struct spool_sink *)s;
    int fd = f->fd;

    f->fd = -1;
    if (close(fd) != 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not close spool file \"%s\"", f->tmp);
    if (renameat(f->dir, f->tmp, f->dir, f->name) != 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not rename spool file \"%s\"", f->tmp);
    return 0;
}

static void spool_sink_abort(struct ws_sink *s)
{
    struct spool_sink *f = (struct spool_sink *)s;
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    unlinkat(f->dir, f->tmp, 0);
}

static void spool_sink_destroy(struct ws_sink *s)
{
    free(s);
}

static const struct ws_sink_ops spool_sink_ops = {"spool file", spool_sink_write, spool_sink_finish,
                                                  spool_sink_abort, spool_sink_destroy};

int ws_spool_sink_new(int dir, const char *name, const char *tmp_name, struct ws_sink **out,
                      struct ws_error *err)
{
    struct spool_sink *f = calloc(1, sizeof(*f));
    int n;

    if (!f)
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    f->base.ops = &spool_sink_ops;
    f->dir = dir;
    n = tmp_name ? snprintf(f->tmp, sizeof(f->tmp), "%s", tmp_name)
                 : snprintf(f->tmp, sizeof(f->tmp), ".%s.walsafe.%ld", name, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(f->tmp) ||
        snprintf(f->name, sizeof(f->name), "%s", name) >= (int)sizeof(f->name)) {
        free(f);
        return ws_error_set(err, WS_ERR_INTERNAL, "spool file name \"%s\" is too long", name);
    }
    f->fd = openat(dir, f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (f->fd < 0 && errno == EEXIST && !tmp_name) {
        /* a leftover of a killed earlier process with this pid: ours to replace */
        unlinkat(dir, f->tmp, 0);
        f->fd = openat(dir, f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    }
    if (f->fd < 0) {
        int e = errno;
        free(f);
        return ws_error_setsys(err, WS_ERR_IO, e, "could not create spool file \"%s\"",
                               tmp_name ? tmp_name : name);
    }
    *out = &f->base;
    return 0;
}

int ws_spool_watch(int dir, unsigned int mask)
{
    int ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    char path[64];

    snprintf(path, sizeof(path), "/proc/self/fd/%d", dir);
    if (ifd >= 0 && inotify_add_watch(ifd, path, mask) < 0) {
        close(ifd);
        ifd = -1;
    }
    return ifd;
}

void ws_spool_watch_wait(int watch, int ms)
{
    struct pollfd pfd = {.fd = watch, .events = POLLIN};
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

    if (watch < 0) {
        usleep((useconds_t)ms * 1000u);
        return;
    }
    if (poll(&pfd, 1, ms) > 0)
        while (read(watch, buf, sizeof(buf)) > 0)
            ; /* the events only wake the caller, who looks again anyway */
}

/* ---- background processes ---- */

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Closes every descriptor above 2 that is not in keep (sorted). */
static void close_fds_except(const int *keep, size_t n)
{
    unsigned int from = 3;

    for (size_t i = 0; i <= n; i++) {
        unsigned int last;
        if (i < n && (keep[i] < 3 || (unsigned int)keep[i] < from))
            continue;
        last = i < n ? (unsigned int)keep[i] - 1 : ~0U;
        if (i == n || (unsigned int)keep[i] > from) {
            if (close_range(from, last, 0) != 0) {
                long max = sysconf(_SC_OPEN_MAX);
                for (long fd = from; fd <= (long)last && fd < (max > 0 ? max : 1024); fd++)
                    close((int)fd);
            }
        }
        if (i < n)
            from = (unsigned int)keep[i] + 1;
    }
}

/* Makes the calling process (a fresh child) a background one: see ws_spool_spawn(). 0, or -1
 * when a descriptor to keep could not be moved above 2. */
static int detach(int *const *keep, size_t nkeep, const char *progname, const char *comm,
                  const char *log_file)
{
    int dn, sorted[WS_SPOOL_DETACH_KEEP] = {0};

    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    if (nkeep > WS_SPOOL_DETACH_KEEP)
        nkeep = WS_SPOOL_DETACH_KEEP; /* callers keep fewer: see spool.h */
    /* Descriptors to keep that sit on 0..2 move up before stdio is replaced. */
    for (size_t i = 0; i < nkeep; i++)
        if (*keep[i] >= 0 && *keep[i] < 3) {
            int moved = fcntl(*keep[i], F_DUPFD_CLOEXEC, 3);
            if (moved < 0)
                return -1;
            *keep[i] = moved; /* a lock stays with the shared open file description */
        }
    if ((dn = open("/dev/null", O_RDWR | O_CLOEXEC)) >= 0) {
        dup2(dn, STDIN_FILENO);
        dup2(dn, STDOUT_FILENO);
        dup2(dn, STDERR_FILENO);
        if (dn > 2)
            close(dn);
    }
    /* Nothing inherited (PostgreSQL's pipe to its logger, say) stays open for the process's
     * life; log_file is opened again after. */
    ws_log_set_file(NULL);
    for (size_t i = 0; i < nkeep; i++)
        sorted[i] = *keep[i];
    qsort(sorted, nkeep, sizeof(*sorted), cmp_int);
    close_fds_except(sorted, nkeep);
    if (progname)
        ws_log_init(progname);
    ws_log_set_file(log_file);
    if (comm)
        prctl(PR_SET_NAME, comm, 0, 0, 0); /* what ps and top show (15 characters) */
    return 0;
}

pid_t ws_spool_spawn(int *const *keep, size_t nkeep, int orphan, const char *progname,
                     const char *comm, const char *log_file)
{
    pid_t pid = fork(), middle;
    int status;

    if (pid != 0) {
        while (orphan && pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        return pid;
    }
    /* The child: a session of its own, so the signals PostgreSQL sends to the process group
     * of its archiver or startup process are not ours. */
    if (setsid() < 0)
        _exit(1);
    if (orphan && (middle = fork()) != 0)
        _exit(middle < 0 ? 1 : 0); /* re-parents the process below to init */
    if (detach(keep, nkeep, progname, comm, log_file) != 0)
        _exit(1);
    return 0;
}
