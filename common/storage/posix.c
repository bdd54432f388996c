/*
 * storage/posix.c - a repository in a local (or mounted) directory.
 *
 * Publication (ws_file_sink_open in sink.c): the object is written to
 * "<dir>/.walsafe-tmp.<name>.<pid>.<random>" (mode 0600), fsynced, renamed to its key with
 * RENAME_NOREPLACE (or link+unlink where the file system lacks it), and the directory is fsynced.
 * Directories are created 0700 and made durable in their parents. The repository root itself must
 * exist: a missing root is more likely an unmounted file system than a new repository, and writing
 * into the mount point would lose WAL.
 *
 * A key whose path is a directory is a prefix of other keys, as on an object store: stat and
 * remove answer WS_ERR_NOT_FOUND. Reading it (get) is WS_ERR_CORRUPT: an object was expected
 * there, and wal-fetch must not take damage for "not in the archive" (nor, on a standby, for an
 * unreachable repository).
 *
 * A listing passes a subdirectory it may not read (EACCES) on as a `denied` entry (storage.h).
 * Run as root in a repository another user owns, every directory and file it creates is given
 * to the owner of the repository root (basebackup and wal-prune --allow-root): root-owned files
 * there would lock the owner's own wal-push and basebackup out.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "storage/params.h"

struct posix_storage {
    struct ws_storage base;
    char *root;
    int give;  /* chown what it creates to uid:gid (running as root, the root owned by another) */
    uid_t uid; /* the repository root's owner */
    gid_t gid;
};

static int full_path(struct posix_storage *ps, const char *key, char *out, size_t outsz,
                     struct ws_error *err)
{
    if ((size_t)snprintf(out, outsz, "%s/%s", ps->root, key) >= outsz)
        return ws_error_set(err, WS_ERR_STORAGE, "path too long for key \"%s\"", key);
    return 0;
}

static int p_stat(struct ws_storage *s, const char *key, struct ws_storage_stat *out,
                  struct ws_error *err)
{
    struct posix_storage *ps = (struct posix_storage *)s;
    char path[PATH_MAX];
    struct stat st;

    if (full_path(ps, key, path, sizeof(path), err) != 0)
        return err->code;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return ws_error_set(err, WS_ERR_NOT_FOUND,
                                "object \"%s\" not found in repository "
                                "\"%s\"",
                                key, ps->root);
        return ws_error_setsys(err, WS_ERR_STORAGE, errno, "could not stat file \"%s\"", path);
    }
    if (S_ISDIR(st.st_mode)) /* a key prefix, not an object */
        return ws_error_set(err, WS_ERR_NOT_FOUND,
                            "object \"%s\" not found in repository "
                            "\"%s\"",
                            key, ps->root);
    if (!S_ISREG(st.st_mode))
        return ws_error_set(err, WS_ERR_STORAGE, "\"%s\" is not a regular file", path);
    out->size = (uint64_t)st.st_size;
    out->mtime = st.st_mtime;
    return 0;
}

/* ---- put ---- */

static int p_open_put(struct ws_storage *s, const char *key, int flags, struct ws_sink **out,
                      struct ws_error *err)
{
    struct posix_storage *ps = (struct posix_storage *)s;
    char path[PATH_MAX], dir[PATH_MAX], tmp[PATH_MAX + 64];
    const char *slash;
    uint8_t rnd[6];
    char rhex[13];

    if (full_path(ps, key, path, sizeof(path), err) != 0)
        return err->code;
    slash = strrchr(path, '/');
    memcpy(dir, path, (size_t)(slash - path));
    dir[slash - path] = '\0';
    if (ws_mkdir_p_owned(dir, 0700, ps->give ? &ps->uid : NULL, ps->gid, err) != 0) {
        err->code = WS_ERR_STORAGE;
        return err->code;
    }
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return ws_error_set(err, WS_ERR_INTERNAL, "could not generate random bytes");
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(rhex + 2 * i, 3, "%02x", rnd[i]);
    snprintf(tmp, sizeof(tmp), "%s/.walsafe-tmp.%s.%ld.%s", dir, slash + 1, (long)getpid(), rhex);
    /* Temp names start with .walsafe-tmp so listings skip them and wal-prune can find them. */
    {
        struct ws_file_opts o = {.mode = 0600,
                                 .fsync = 1,
                                 .no_replace = !(flags & WS_PUT_REPLACE),
                                 .err_code = WS_ERR_STORAGE,
                                 .tmp_path = tmp,
                                 .give = ps->give,
                                 .uid = ps->uid,
                                 .gid = ps->gid};
        return ws_file_sink_open(path, &o, out, err);
    }
}

/* ---- get ---- */

static int p_get(struct ws_storage *s, const char *key, uint64_t offset, uint64_t length,
                 struct ws_sink *dest, struct ws_error *err)
{
    enum { BLOCK = 1 << 20 };
    struct posix_storage *ps = (struct posix_storage *)s;
    char path[PATH_MAX];
    uint8_t *buf = NULL;
    uint64_t left = length;
    off_t off = (off_t)offset;
    struct stat st;
    int fd, rc = 0;

    if (full_path(ps, key, path, sizeof(path), err) != 0)
        return err->code;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return ws_error_set(err, WS_ERR_NOT_FOUND,
                                "object \"%s\" not found in repository "
                                "\"%s\"",
                                key, ps->root);
        return ws_error_setsys(err, WS_ERR_STORAGE, errno, "could not open file \"%s\"", path);
    }
    if (fstat(fd, &st) != 0) {
        rc = ws_error_setsys(err, WS_ERR_STORAGE, errno, "could not stat file \"%s\"", path);
        close(fd);
        return rc;
    }
    if (!S_ISREG(st.st_mode)) {
        /* An object's place holds a directory (or anything but a file): damage, not "no such
         * object" (see the top of this file). */
        close(fd);
        return ws_error_set(err, WS_ERR_CORRUPT, "\"%s\" is %s, not an object file", path,
                            S_ISDIR(st.st_mode) ? "a directory" : "not a regular file");
    }
    if (offset > (uint64_t)st.st_size) {
        close(fd);
        return ws_error_set(err, WS_ERR_STORAGE, "offset %llu is beyond the end of \"%s\"",
                            (unsigned long long)offset, path);
    }
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    if (!(buf = malloc(BLOCK))) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        goto out;
    }
    while (left > 0) {
        size_t want = left < BLOCK ? (size_t)left : BLOCK;
        ssize_t n = pread(fd, buf, want, off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = ws_error_setsys(err, WS_ERR_STORAGE, errno, "could not read file \"%s\"", path);
            goto out;
        }
        if (n == 0)
            break;
        if ((rc = ws_sink_write(dest, buf, (size_t)n, err)) != 0)
            goto out;
        off += n;
        if (length != WS_STORAGE_TO_END)
            left -= (uint64_t)n;
    }
    if (length != WS_STORAGE_TO_END && left > 0)
        rc = ws_error_set(err, WS_ERR_STORAGE, "file \"%s\" is shorter than expected", path);
out:
    free(buf);
    close(fd);
    return rc;
}

/* ---- list ---- */

static int walk(struct posix_storage *ps, const char *rel, const char *prefix, int depth,
                ws_storage_list_cb cb, void *arg, struct ws_error *err)
{
    char path[PATH_MAX], child[PATH_MAX];
    DIR *d;
    struct dirent *de;
    int rc = 0;

    snprintf(path, sizeof(path), "%s%s%s", ps->root, *rel ? "/" : "", rel);
    if (!(d = opendir(path))) {
        if (errno == ENOENT || errno == ENOTDIR)
            return 0;
        if (errno == EACCES && depth > 0) { /* below the prefix's own directory */
            struct ws_storage_stat denied = {.denied = 1};
            snprintf(child, sizeof(child), "%s/", rel);
            return cb(arg, child, &denied, err);
        }
        return ws_error_setsys(err, WS_ERR_STORAGE, errno, "could not open directory \"%s\"", path);
    }
    while (rc == 0 && (errno = 0, de = readdir(d)) != NULL) {
        struct stat st;
        char full[PATH_MAX];
        size_t plen = strlen(prefix);
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
            strncmp(de->d_name, ".walsafe-tmp", 12) == 0)
            continue; /* temp files are never objects */
        if ((size_t)snprintf(child, sizeof(child), "%s%s%s", rel, *rel ? "/" : "", de->d_name) >=
            sizeof(child))
            continue;
        /* Prune subtrees that cannot match the prefix. */
        if (strncmp(child, prefix, strlen(child) < plen ? strlen(child) : plen) != 0)
            continue;
        if ((size_t)snprintf(full, sizeof(full), "%s/%s", ps->root, child) >= sizeof(full))
            continue;
        if (lstat(full, &st) != 0) {
            if (errno == ENOENT)
                continue;
            rc = ws_error_setsys(err, WS_ERR_STORAGE, errno, "could not stat file \"%s\"", full);
        } else if (S_ISDIR(st.st_mode)) {
            rc = walk(ps, child, prefix, depth + 1, cb, arg, err);
        } else if (S_ISREG(st.st_mode) && strncmp(child, prefix, plen) == 0) {
            struct ws_storage_stat ss = {.size = (uint64_t)st.st_size, .mtime = st.st_mtime};
            rc = cb(arg, child, &ss, err);
        }
    }
    if (rc == 0 && errno != 0)
        rc = ws_error_setsys(err, WS_ERR_STORAGE, errno, "could not read directory \"%s\"", path);
    closedir(d);
    return rc;
}

static int p_list(struct ws_storage *s, const char *prefix, ws_storage_list_cb cb, void *arg,
                  struct ws_error *err)
{
    struct posix_storage *ps = (struct posix_storage *)s;
    char start[PATH_MAX];
    const char *slash = strrchr(prefix, '/');
    size_t n = slash ? (size_t)(slash - prefix) : 0;

    /* Start at the deepest directory the prefix names. */
    memcpy(start, prefix, n);
    start[n] = '\0';
    return walk(ps, start, prefix, 0, cb, arg, err);
}

static int p_remove(struct ws_storage *s, const char *key, struct ws_error *err)
{
    struct posix_storage *ps = (struct posix_storage *)s;
    char path[PATH_MAX];

    if (full_path(ps, key, path, sizeof(path), err) != 0)
        return err->code;
    if (unlink(path) != 0) {
        if (errno == ENOENT || errno == ENOTDIR || errno == EISDIR)
            return ws_error_set(err, WS_ERR_NOT_FOUND, "object \"%s\" not found", key);
        return ws_error_setsys(err, WS_ERR_STORAGE, errno, "could not remove file \"%s\"", path);
    }
    if (ws_fsync_parent(path, err) != 0) {
        err->code = WS_ERR_STORAGE;
        return err->code;
    }
    return 0;
}

/* ---- housekeeping (wal-prune) ---- */

static int p_remove_dir(struct ws_storage *s, const char *prefix, struct ws_error *err)
{
    struct posix_storage *ps = (struct posix_storage *)s;
    char path[PATH_MAX];

    if ((size_t)snprintf(path, sizeof(path), "%s/%.*s", ps->root, (int)strlen(prefix) - 1,
                         prefix) >= sizeof(path))
        return ws_error_set(err, WS_ERR_STORAGE, "path too long for prefix \"%s\"", prefix);
    if (rmdir(path) != 0) {
        if (errno == ENOENT || errno == ENOTEMPTY || errno == EEXIST || errno == ENOTDIR)
            return 0;
        return ws_error_setsys(err, WS_ERR_STORAGE, errno, "could not remove directory \"%s\"",
                               path);
    }
    if (ws_fsync_parent(path, err) != 0)
        return err->code = WS_ERR_STORAGE;
    return 0;
}

struct temp_walk {
    int64_t before;
    int dry_run;
    size_t *count;
    uint64_t *bytes;
    int depth;
};

/* Temp files ("<dir>/.walsafe-tmp.<name>.<pid>.<random>", see p_open_put) in dir whose <name>
 * starts with `start`, and every one in the subdirectories whose name starts with it. */
static int clean_dir(const char *dir, const char *start, struct temp_walk *tw, struct ws_error *err)
{
    char child[PATH_MAX];
    struct dirent *de;
    size_t sl = strlen(start);
    DIR *d;
    int rc = 0;

    if (!(d = opendir(dir))) {
        if (errno == ENOENT || errno == ENOTDIR || (errno == EACCES && tw->depth > 0))
            return 0; /* below the prefix, another user's: its temp files are not ours either */
        return ws_error_setsys(err, WS_ERR_STORAGE, errno, "could not open directory \"%s\"", dir);
    }
    while (rc == 0 && (errno = 0, de = readdir(d)) != NULL) {
        struct stat st;
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if ((size_t)snprintf(child, sizeof(child), "%s/%s", dir, de->d_name) >= sizeof(child))
            continue;
        if (lstat(child, &st) != 0)
            continue; /* gone meanwhile */
        if (S_ISDIR(st.st_mode)) {
            if (tw->depth < 16 && strncmp(de->d_name, start, sl) == 0) {
                tw->depth++;
                rc = clean_dir(child, "", tw, err);
                tw->depth--;
            }
        } else if (S_ISREG(st.st_mode) && strncmp(de->d_name, ".walsafe-tmp.", 13) == 0 &&
                   strncmp(de->d_name + 13, start, sl) == 0 && (int64_t)st.st_mtime < tw->before) {
            if (!tw->dry_run && unlink(child) != 0) {
                if (errno != ENOENT)
                    rc = ws_error_setsys(err, WS_ERR_STORAGE, errno,
                                         "could not remove temp file \"%s\"", child);
                continue;
            }
            (*tw->count)++;
            *tw->bytes += (uint64_t)st.st_size;
        }
    }
    if (rc == 0 && errno != 0)
        rc = ws_error_setsys(err, WS_ERR_STORAGE, errno, "could not read directory \"%s\"", dir);
    closedir(d);
    return rc;
}

static int p_clean_temp(struct ws_storage *s, const char *prefix, int64_t before, int dry_run,
                        size_t *count, uint64_t *bytes, struct ws_error *err)
{
    struct posix_storage *ps = (struct posix_storage *)s;
    struct temp_walk tw = {before, dry_run, count, bytes, 0};
    const char *slash = strrchr(prefix, '/');
    size_t n = slash ? (size_t)(slash - prefix) : 0;
    char path[PATH_MAX];

    /* the deepest directory the prefix names, and the start of names in it */
    if ((size_t)snprintf(path, sizeof(path), "%s%s%.*s", ps->root, n ? "/" : "", (int)n, prefix) >=
        sizeof(path))
        return ws_error_set(err, WS_ERR_STORAGE, "path too long for prefix \"%s\"", prefix);
    return clean_dir(path, slash ? slash + 1 : prefix, &tw, err);
}

static void p_close(struct ws_storage *s)
{
    struct posix_storage *ps = (struct posix_storage *)s;
    free(ps->root);
    free(ps->base.location);
    free(ps);
}

static const struct ws_storage_ops posix_ops = {"posix", p_stat,   p_open_put, p_get,
                                                p_list,  p_remove, p_close};
static const struct ws_storage_housekeeping posix_hk = {p_remove_dir, p_clean_temp, NULL};

int ws_storage_posix_open(const struct ws_posix_params *p, struct ws_storage **out,
                          struct ws_error *err)
{
    const char *root = p->root;
    struct posix_storage *ps;
    struct stat st;
    size_t n = strlen(root);

    if (root[0] != '/')
        return ws_error_set(err, WS_ERR_CONFIG, "repository path \"%s\" is not absolute", root);
    if (stat(root, &st) != 0)
        return ws_error_setsys(err, WS_ERR_STORAGE, errno,
                               "could not access repository directory \"%s\" (create it with mode "
                               "0700, or check that its file system is mounted)",
                               root);
    if (!S_ISDIR(st.st_mode))
        return ws_error_set(err, WS_ERR_STORAGE, "repository \"%s\" is not a directory", root);
    ps = calloc(1, sizeof(*ps));
    if (!ps || !(ps->root = strdup(root)) || !(ps->base.location = strdup(root))) {
        if (ps)
            free(ps->root);
        free(ps);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    }
    while (n > 1 && ps->root[n - 1] == '/')
        ps->root[--n] = '\0';
    ps->base.ops = &posix_ops;
    ps->base.hk = &posix_hk;
    ps->base.caps = WS_POSIX_CAPS;
    ps->give = geteuid() == 0 && st.st_uid != 0;
    ps->uid = st.st_uid;
    ps->gid = st.st_gid;
    *out = &ps->base;
    return 0;
}
