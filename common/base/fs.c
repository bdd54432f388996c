/* base/fs.c - durable writes, and directories reached through descriptors (see base/fs.h). */
#include "base/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* write() (off < 0) or pwrite() at off until len bytes are written: 0, else -1 with errno. */
static int write_loop(int fd, const void *buf, size_t len, off_t off)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = off < 0 ? write(fd, p, len) : pwrite(fd, p, len, off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
        if (off >= 0)
            off += n;
    }
    return 0;
}

int ws_write_all(int fd, const void *buf, size_t len)
{
    return write_loop(fd, buf, len, -1);
}

ssize_t ws_pread_full(int fd, void *buf, size_t len, off_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (char *)buf + done, len - done, off + (off_t)done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            break;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

int ws_fsync_dir(const char *dir, struct ws_error *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not open directory \"%s\"", dir);
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return ws_error_setsys(err, WS_ERR_IO, e, "could not fsync directory \"%s\"", dir);
    }
    close(fd);
    return 0;
}

int ws_fsync_parent(const char *path, struct ws_error *err)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');

    if (!slash)
        return ws_fsync_dir(".", err);
    if (slash == path)
        return ws_fsync_dir("/", err);
    if ((size_t)(slash - path) >= sizeof(dir))
        return ws_error_set(err, WS_ERR_IO, "path too long: \"%s\"", path);
    memcpy(dir, path, (size_t)(slash - path));
    dir[slash - path] = '\0';
    return ws_fsync_dir(dir, err);
}

int ws_mkdir_p(const char *dir, int mode, struct ws_error *err)
{
    return ws_mkdir_p_owned(dir, mode, NULL, 0, err);
}

int ws_mkdir_p_owned(const char *dir, int mode, const uid_t *uid, gid_t gid, struct ws_error *err)
{
    char buf[PATH_MAX];
    size_t len = strlen(dir);
    struct stat st;

    if (len == 0 || len >= sizeof(buf))
        return ws_error_set(err, WS_ERR_IO, "invalid directory path \"%s\"", dir);
    if (stat(dir, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return 0;
        return ws_error_set(err, WS_ERR_IO, "\"%s\" exists and is not a directory", dir);
    }
    memcpy(buf, dir, len + 1);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, (mode_t)mode) == 0) {
                if (uid && lchown(buf, *uid, gid) != 0)
                    return ws_error_setsys(err, WS_ERR_IO, errno,
                                           "could not give directory \"%s\" to user %ld", buf,
                                           (long)*uid);
                if (ws_fsync_parent(buf, err) != 0)
                    return err ? err->code : WS_ERR_IO;
            } else if (errno != EEXIST) {
                return ws_error_setsys(err, WS_ERR_IO, errno, "could not create directory \"%s\"",
                                       buf);
            }
            *p = c;
            if (c == '\0')
                break;
        }
    }
    return 0;
}

void ws_user_name(uid_t uid, char *out, size_t outsz)
{
    struct passwd *pw = getpwuid(uid);
    if (pw && pw->pw_name)
        snprintf(out, outsz, "%s", pw->pw_name);
    else
        snprintf(out, outsz, "%ld", (long)uid);
}

/* A group's name, else its number. */
static void group_of(gid_t gid, char *out, size_t outsz)
{
    struct group *gr = getgrgid(gid);
    if (gr && gr->gr_name)
        snprintf(out, outsz, "%s", gr->gr_name);
    else
        snprintf(out, outsz, "%ld", (long)gid);
}

void ws_dir_owner_problem(const char *dir, uid_t uid, gid_t gid, char *out, size_t outsz)
{
    char parent[PATH_MAX], u[64], g[64], o[64];
    const char *slash = strrchr(dir, '/');
    struct stat st;

    out[0] = '\0';
    ws_user_name(uid, u, sizeof(u));
    group_of(gid, g, sizeof(g));
    if (stat(dir, &st) != 0) {
        if (errno != ENOENT || !slash) {
            snprintf(out, outsz, "could not stat \"%s\": %s", dir, strerror(errno));
            return;
        }
        snprintf(parent, sizeof(parent), "%.*s", slash == dir ? 1 : (int)(slash - dir), dir);
        if (stat(parent, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == uid &&
            (st.st_mode & S_IWUSR))
            return; /* it can create it */
        if (stat(parent, &st) != 0)
            snprintf(out, outsz, "\"%s\" does not exist; fix: install -d -o %s -g %s -m 700 %s",
                     dir, u, g, dir);
        else {
            ws_user_name(st.st_uid, o, sizeof(o));
            snprintf(out, outsz,
                     "\"%s\" does not exist and %s may not create it in \"%s\" (owned by %s, "
                     "mode %04o); fix: install -d -o %s -g %s -m 700 %s",
                     dir, u, parent, o, (unsigned)(st.st_mode & 07777), u, g, dir);
        }
        return;
    }
    ws_user_name(st.st_uid, o, sizeof(o));
    if (!S_ISDIR(st.st_mode))
        snprintf(out, outsz, "\"%s\" is not a directory (owned by %s)", dir, o);
    else if (st.st_uid != uid)
        snprintf(out, outsz, "\"%s\" is owned by %s (mode %04o), not by %s; fix: chown -R %s:%s %s",
                 dir, o, (unsigned)(st.st_mode & 07777), u, u, g, dir);
    else if (st.st_mode & (S_IWGRP | S_IWOTH))
        snprintf(out, outsz,
                 "\"%s\" is writable by group or others (mode %04o); fix: chmod go-w %s", dir,
                 (unsigned)(st.st_mode & 07777), dir);
}

int ws_pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
    return off < 0 ? (errno = EINVAL, -1) : write_loop(fd, buf, len, off);
}

int ws_path_clean_absolute(const char *p)
{
    const char *s;

    if (p[0] != '/' || !p[1] || strlen(p) >= PATH_MAX)
        return 0;
    for (s = p; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    for (s = p + 1;;) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
            return 0;
        if (!e)
            return 1;
        s = e + 1;
    }
}

/* ---- directories reached through descriptors ---------------------------------------------- */

#define MAX_LINKS 40
#define MAX_DEPTH 256 /* of a tree ws_dir_clear descends into */

/* The next component of *p (skipping slashes) into name; 0 at the end, -1 if too long. */
static int next_component(const char **p, char name[NAME_MAX + 1])
{
    const char *s = *p, *e;

    while (*s == '/')
        s++;
    if (!*s) {
        *p = s;
        return 0;
    }
    for (e = s; *e && *e != '/'; e++)
        ;
    if ((size_t)(e - s) > NAME_MAX)
        return -1;
    memcpy(name, s, (size_t)(e - s));
    name[e - s] = '\0';
    *p = e;
    return 1;
}

/* The components of rest (to create), "." dropped; refused when one is "..". */
static int set_missing(struct ws_dir_ref *ref, const char *first, const char *rest)
{
    char name[NAME_MAX + 1];
    size_t n;
    int r;

    n = (size_t)snprintf(ref->missing, sizeof(ref->missing), "%s", first);
    while ((r = next_component(&rest, name)) > 0) {
        if (strcmp(name, ".") == 0)
            continue;
        if (strcmp(name, "..") == 0)
            return -1;
        n += (size_t)snprintf(ref->missing + n, sizeof(ref->missing) - n, "/%s", name);
        if (n >= sizeof(ref->missing))
            return -1;
    }
    return r;
}

void ws_dir_ref_close(struct ws_dir_ref *ref)
{
    if (ref->fd >= 0)
        close(ref->fd);
    ref->fd = -1;
}

/* Follows the link `name` in directory cur when root or we own it: its target replaces it in
 * `rest` (which then starts at *pos = 0), and cur moves to "/" for an absolute target. */
static int follow_link(const char *path, int *cur, const char *name, char *rest, size_t restsz,
                       size_t *pos, struct ws_error *err)
{
    char target[PATH_MAX], tail[PATH_MAX * 2];
    struct stat st;
    ssize_t n;
    int lfd = openat(*cur, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);

    if (lfd < 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not open directory \"%s\"", path);
    if (fstat(lfd, &st) != 0 || !S_ISLNK(st.st_mode)) {
        close(lfd);
        return ws_error_setsys(err, WS_ERR_INVALID, ENOTDIR, "could not open directory \"%s\"",
                               path);
    }
    if (st.st_uid != 0 && st.st_uid != geteuid()) {
        close(lfd);
        return ws_error_set(err, WS_ERR_INVALID,
                            "could not open directory \"%s\": \"%s\" on the way is a symbolic "
                            "link owned by user %u, which is not followed (name the directory "
                            "it points to)",
                            path, name, (unsigned)st.st_uid);
    }
    n = readlinkat(lfd, "", target, sizeof(target) - 1);
    close(lfd);
    if (n < 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not read link \"%s\" in \"%s\"", name,
                               path);
    target[n] = '\0';
    if ((size_t)snprintf(tail, sizeof(tail), "%s/%s", target, rest + *pos) >= sizeof(tail) ||
        strlen(tail) >= restsz)
        return ws_error_setsys(err, WS_ERR_INVALID, ENAMETOOLONG, "could not open directory \"%s\"",
                               path);
    memcpy(rest, tail, strlen(tail) + 1);
    *pos = 0;
    if (target[0] == '/') {
        int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (root < 0)
            return ws_error_setsys(err, WS_ERR_IO, errno, "could not open directory \"/\"");
        close(*cur);
        *cur = root;
    }
    return 0;
}

int ws_dir_lookup(const char *path, struct ws_dir_ref *ref, struct ws_error *err)
{
    char rest[PATH_MAX * 2], name[NAME_MAX + 1];
    size_t pos = 0;
    int cur, links = 0, rc;

    ref->fd = -1;
    ref->missing[0] = '\0';
    if (!*path || strlen(path) >= sizeof(rest))
        return ws_error_set(err, WS_ERR_INVALID, "invalid directory path \"%s\"", path);
    memcpy(rest, path, strlen(path) + 1);
    if ((cur = open(path[0] == '/' ? "/" : ".", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not open directory \"%s\"", path);
    for (;;) {
        const char *p = rest + pos;
        int r = next_component(&p, name), nfd;
        if (r < 0) {
            rc = ws_error_setsys(err, WS_ERR_INVALID, ENAMETOOLONG,
                                 "could not open directory \"%s\"", path);
            goto fail;
        }
        if (r == 0)
            break;
        pos = (size_t)(p - rest);
        if (strcmp(name, ".") == 0)
            continue;
        if ((nfd = openat(cur, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) >= 0) {
            close(cur);
            cur = nfd;
            continue;
        }
        if (errno == ENOENT) {
            if (set_missing(ref, name, rest + pos) != 0) {
                rc = ws_error_set(err, WS_ERR_INVALID,
                                  "could not open directory \"%s\": \"%s\" does not exist", path,
                                  name);
                goto fail;
            }
            break;
        }
        if (errno != ENOTDIR && errno != ELOOP) {
            rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not open directory \"%s\"", path);
            goto fail;
        }
        if (++links > MAX_LINKS) {
            rc = ws_error_setsys(err, WS_ERR_INVALID, ELOOP, "could not open directory \"%s\"",
                                 path);
            goto fail;
        }
        if ((rc = follow_link(path, &cur, name, rest, sizeof(rest), &pos, err)) != 0)
            goto fail;
    }
    ref->fd = cur;
    return 0;
fail:
    close(cur);
    ref->missing[0] = '\0';
    return rc;
}

int ws_dir_create(struct ws_dir_ref *ref, const char *path, mode_t mode, struct ws_error *err)
{
    char name[NAME_MAX + 1];
    const char *p = ref->missing;
    int r;

    while ((r = next_component(&p, name)) > 0) {
        int nfd;
        if (mkdirat(ref->fd, name, mode) != 0 && errno != EEXIST)
            return ws_error_setsys(err, WS_ERR_IO, errno, "could not create directory \"%s\"",
                                   path);
        if ((nfd = openat(ref->fd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
            return ws_error_setsys(err,
                                   errno == ENOTDIR || errno == ELOOP ? WS_ERR_INVALID : WS_ERR_IO,
                                   errno, "could not open directory \"%s\"", path);
        close(ref->fd);
        ref->fd = nfd;
    }
    ref->missing[0] = '\0';
    return r < 0 ? ws_error_set(err, WS_ERR_INVALID, "invalid directory path \"%s\"", path) : 0;
}

/* Removes one entry of directory dir: a directory (opened without following) after its
 * contents, anything else (a link included) with unlink. */
static int clear_entry(int dir, const char *name, const char *path, int depth,
                       struct ws_error *err);

static int clear_at(int dir, const char *path, int depth, struct ws_error *err)
{
    int fd, rc = 0, removed, pass;
    DIR *d;
    struct dirent *de;

    if (depth > MAX_DEPTH)
        return ws_error_set(err, WS_ERR_INVALID, "\"%s\" is nested too deeply to clear", path);
    if ((fd = openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not open directory \"%s\"", path);
    if (!(d = fdopendir(fd))) {
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not open directory \"%s\"", path);
        close(fd);
        return rc;
    }
    /* Entries removed while reading may make readdir skip others: read again until a pass
     * finds nothing (a few passes; something that keeps adding entries makes it fail). */
    for (pass = 0, removed = 1; rc == 0 && removed; pass++) {
        if (pass == 8) {
            rc = ws_error_set(err, WS_ERR_IO, "directory \"%s\" keeps changing while it is cleared",
                              path);
            break;
        }
        removed = 0;
        rewinddir(d);
        while (rc == 0 && (errno = 0, de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            rc = clear_entry(fd, de->d_name, path, depth, err);
            removed = 1;
        }
        if (rc == 0 && errno != 0)
            rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not read directory \"%s\"", path);
    }
    closedir(d);
    return rc;
}

/* 1 when directories a and b lie on the same mount: same device, and the same mount id where
 * the kernel reports one (a bind mount of a directory of the same file system keeps st_dev). */
static int same_mount(int a, int b)
{
    struct statx sa, sb;

    if (statx(a, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_MNT_ID, &sa) != 0 ||
        statx(b, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_MNT_ID, &sb) != 0)
        return 0;
    if (sa.stx_dev_major != sb.stx_dev_major || sa.stx_dev_minor != sb.stx_dev_minor)
        return 0;
    return !(sa.stx_mask & sb.stx_mask & STATX_MNT_ID) || sa.stx_mnt_id == sb.stx_mnt_id;
}

static int clear_entry(int dir, const char *name, const char *path, int depth, struct ws_error *err)
{
    int sub = openat(dir, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), rc;

    if (sub >= 0) {
        /* another file system (or a bind mount) here is not ours to empty */
        if (!same_mount(sub, dir)) {
            close(sub);
            return ws_error_set(err, WS_ERR_INVALID,
                                "\"%s\" in \"%s\" is a mount point (or could not be checked): "
                                "not emptied",
                                name, path);
        }
        rc = clear_at(sub, path, depth + 1, err);
        close(sub);
        if (rc == 0 && unlinkat(dir, name, AT_REMOVEDIR) != 0 && errno != ENOENT)
            rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not remove \"%s\" in \"%s\"", name,
                                 path);
        return rc;
    }
    if (errno == ENOENT)
        return 0;
    if (errno != ENOTDIR && errno != ELOOP)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not open \"%s\" in \"%s\"", name,
                               path);
    if (unlinkat(dir, name, 0) != 0 && errno != ENOENT)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not remove \"%s\" in \"%s\"", name,
                               path);
    return 0;
}

int ws_dir_clear(int dirfd, const char *path, struct ws_error *err)
{
    return clear_at(dirfd, path, 0, err);
}

void ws_tree_cursor_close(struct ws_tree_cursor *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->dir[0] = '\0';
}

static int tree_path_valid(const char *rel)
{
    const char *s = rel;

    if (!*rel || *rel == '/' || strlen(rel) >= PATH_MAX)
        return 0;
    while (*s) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 0 || n > NAME_MAX || (n == 1 && s[0] == '.') ||
            (n == 2 && s[0] == '.' && s[1] == '.'))
            return 0;
        s += n;
        if (*s == '/' && !*++s)
            return 0; /* trailing slash */
    }
    return 1;
}

/* Points the cursor at the directory holding rel's last component; *leaf is that component. */
static int tree_parent(const struct ws_tree *t, struct ws_tree_cursor *c, const char *rel,
                       const char **leaf, struct ws_error *err)
{
    const char *slash = strrchr(rel, '/'), *p;
    size_t dlen = slash ? (size_t)(slash - rel) : 0, i, best = 0;
    char name[NAME_MAX + 1];
    int start = t->fd, fd, r;

    if (!tree_path_valid(rel))
        return ws_error_set(err, WS_ERR_INVALID, "invalid path \"%s\" in \"%s\"", rel, t->name);
    *leaf = slash ? slash + 1 : rel;
    if (c->fd >= 0 && strlen(c->dir) == dlen && strncmp(c->dir, rel, dlen) == 0)
        return 0;
    ws_tree_cursor_close(c);
    p = rel;
    for (i = 0; i < t->nmounts; i++) {
        size_t n = strlen(t->mounts[i].prefix);
        if (n > best && n <= dlen && strncmp(rel, t->mounts[i].prefix, n) == 0 && (rel[n] == '/')) {
            best = n;
            start = t->mounts[i].fd;
            p = rel + n;
        }
    }
    if ((fd = fcntl(start, F_DUPFD_CLOEXEC, 0)) < 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not open directory \"%s\"", t->name);
    while (p < rel + dlen && (r = next_component(&p, name)) > 0) {
        int nfd = openat(fd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (nfd < 0) {
            int e = errno;
            close(fd);
            return ws_error_setsys(err, e == ENOTDIR || e == ELOOP ? WS_ERR_INVALID : WS_ERR_IO,
                                   e == ELOOP ? ENOTDIR : e, "could not open directory \"%s/%.*s\"",
                                   t->name, (int)(p - rel), rel);
        }
        close(fd);
        fd = nfd;
    }
    c->fd = fd;
    memcpy(c->dir, rel, dlen);
    c->dir[dlen] = '\0';
    return 0;
}

int ws_tree_open(const struct ws_tree *t, struct ws_tree_cursor *c, const char *rel, int flags,
                 mode_t mode, int *fd, struct ws_error *err)
{
    const char *leaf;
    int rc;

    *fd = -1;
    if ((rc = tree_parent(t, c, rel, &leaf, err)) != 0)
        return rc;
    if ((*fd = openat(c->fd, leaf, flags | O_NOFOLLOW | O_CLOEXEC, mode)) < 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not %s file \"%s/%s\"",
                               (flags & O_CREAT) ? "create" : "open", t->name, rel);
    return 0;
}

int ws_tree_open_own(const struct ws_tree *t, struct ws_tree_cursor *c, const char *rel, int flags,
                     int *fd, struct ws_error *err)
{
    struct stat st;
    int rc;

    if ((rc = ws_tree_open(t, c, rel, flags | O_NONBLOCK, 0, fd, err)) != 0)
        return rc;
    if (fstat(*fd, &st) != 0)
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not stat \"%s/%s\"", t->name, rel);
    else if (!S_ISREG(st.st_mode) || st.st_nlink != 1)
        rc = ws_error_set(err, WS_ERR_INVALID,
                          "\"%s/%s\" is no regular file with one link; not written through it",
                          t->name, rel);
    if (rc) {
        close(*fd);
        *fd = -1;
    }
    return rc;
}

int ws_tree_mkdir(const struct ws_tree *t, struct ws_tree_cursor *c, const char *rel, mode_t mode,
                  struct ws_error *err)
{
    const char *leaf;
    int rc, fd;

    if ((rc = tree_parent(t, c, rel, &leaf, err)) != 0)
        return rc;
    if (mkdirat(c->fd, leaf, 0700) != 0 && errno != EEXIST)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not create directory \"%s/%s\"",
                               t->name, rel);
    if ((fd = openat(c->fd, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
        if (errno == ENOTDIR || errno == ELOOP)
            return ws_error_set(err, WS_ERR_INVALID,
                                "\"%s/%s\" exists and is not a directory (links are not followed)",
                                t->name, rel);
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not open directory \"%s/%s\"", t->name,
                               rel);
    }
    if (fchmod(fd, mode) != 0)
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not set the mode of \"%s/%s\"", t->name,
                             rel);
    close(fd);
    return rc;
}

int ws_tree_symlink(const struct ws_tree *t, struct ws_tree_cursor *c, const char *target,
                    const char *rel, struct ws_error *err)
{
    const char *leaf;
    int rc;

    if ((rc = tree_parent(t, c, rel, &leaf, err)) != 0)
        return rc;
    if (symlinkat(target, c->fd, leaf) != 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not create link \"%s/%s\"", t->name,
                               rel);
    return 0;
}
