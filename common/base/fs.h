/*
 * base/fs.h - the few POSIX file-system steps that durability and safe writing depend on.
 *
 * Durable publication of a file is: write temp, fsync(temp), rename, fsync(directory). Newly
 * created directories need their parent fsynced too, which ws_mkdir_p() does.
 *
 * Writing into a directory that someone else may also write to (a restore target owned by
 * another user) goes through directory descriptors: ws_dir_lookup() opens the directory a path
 * names, and a ws_tree resolves relative paths below it one component at a time with
 * O_NOFOLLOW, so a symbolic link planted anywhere below is refused, never followed.
 */
#ifndef WS_BASE_FS_H
#define WS_BASE_FS_H

#include <limits.h>
#include <stddef.h>
#include <sys/types.h>

#include "base/error.h"

/* write() all of buf, retrying on EINTR and short writes. Returns 0 or -1 with errno set. */
int ws_write_all(int fd, const void *buf, size_t len);
/* pwrite() all of buf at off, retrying on EINTR and short writes. Returns 0 or -1 with errno. */
int ws_pwrite_all(int fd, const void *buf, size_t len, off_t off);
/* pread() exactly len bytes at off; returns bytes read (short only at EOF) or -1. */
ssize_t ws_pread_full(int fd, void *buf, size_t len, off_t off);
/* fsync the directory that holds path. */
int ws_fsync_parent(const char *path, struct ws_error *err);
int ws_fsync_dir(const char *dir, struct ws_error *err);
/* mkdir -p with mode; each directory it creates is made durable in its parent. */
int ws_mkdir_p(const char *dir, int mode, struct ws_error *err);
/* The same; with uid non-NULL each directory it creates is given to *uid:gid (lchown: root). */
int ws_mkdir_p_owned(const char *dir, int mode, const uid_t *uid, gid_t gid, struct ws_error *err);
/* A user's name, else its number. */
void ws_user_name(uid_t uid, char *out, size_t outsz);
/* Why user uid (group gid) cannot keep `dir` as a private directory of its own (owned by uid,
 * writable by no one else; a missing one must be creatable in its parent), as one phrase that
 * names the owner and mode found and the command that fixes it, into out: "\"/x\" is owned by
 * root (mode 0755), not by postgres; fix: chown -R postgres: /x". "" when nothing is wrong. */
void ws_dir_owner_problem(const char *dir, uid_t uid, gid_t gid, char *out, size_t outsz);
/* 1 when p is absolute and normalised (no empty, "." or ".." component, no trailing slash),
 * not "/", shorter than PATH_MAX and free of control characters. */
int ws_path_clean_absolute(const char *p);

/*
 * The directory `path` names, opened component by component with O_NOFOLLOW: a symbolic link on
 * the way (the last component included) is followed only when root or the effective user owns
 * it, at most 40 of them; a link of anyone else is refused (WS_ERR_INVALID), as is a component
 * that is not a directory. When the path does not exist yet, `fd` is its deepest existing
 * ancestor and `missing` the components still to create ("a/b", never "." or ".."); otherwise
 * `missing` is "". `fd` is an O_PATH descriptor: use it as the base of *at() calls, or open
 * "." from it. Release with ws_dir_ref_close() (also after a failure).
 */
struct ws_dir_ref {
    int fd;
    char missing[PATH_MAX];
};
int ws_dir_lookup(const char *path, struct ws_dir_ref *ref, struct ws_error *err);
/* Creates ref's missing components with `mode` (under the umask) and points ref->fd at the
 * directory. Something created there meanwhile is used if it is a directory, refused if it is
 * anything else (a link included). `path` names the directory in messages. */
int ws_dir_create(struct ws_dir_ref *ref, const char *path, mode_t mode, struct ws_error *err);
void ws_dir_ref_close(struct ws_dir_ref *ref);

/* Removes everything inside directory dirfd (not the directory itself), through descriptors:
 * links are removed, never followed, and a directory swapped for a link meanwhile is removed
 * as the link. A mount point inside (another file system, or a bind mount of a directory of
 * the same one) is refused, not entered.
 * `path` names dirfd in messages. */
int ws_dir_clear(int dirfd, const char *path, struct ws_error *err);

/*
 * A directory tree reached only through descriptors: relative paths ("base/5/1259") are
 * resolved from `fd` component by component with O_DIRECTORY|O_NOFOLLOW, so no symbolic link
 * below the root is ever followed. A mount lets the paths below `prefix` ("pg_tblspc/16385")
 * start at another directory's descriptor instead (the prefix itself is then a name in the
 * tree like any other). Paths must be relative, with no empty, "." or ".." component
 * (WS_ERR_INVALID otherwise). `name` is the root's path, for messages.
 */
struct ws_tree_mount {
    const char *prefix;
    int fd;
};
struct ws_tree {
    int fd;
    const char *name;
    const struct ws_tree_mount *mounts;
    size_t nmounts;
};
/* The parent directory of the last path resolved, kept open for the next one in the same
 * directory. One per thread; start with WS_TREE_CURSOR_INIT, end with ws_tree_cursor_close. */
struct ws_tree_cursor {
    int fd;
    char dir[PATH_MAX];
};
#define WS_TREE_CURSOR_INIT                                                                        \
    {                                                                                              \
        -1, ""                                                                                     \
    }
void ws_tree_cursor_close(struct ws_tree_cursor *c);
/* openat(parent, last component, flags | O_NOFOLLOW | O_CLOEXEC, mode) into *fd. */
int ws_tree_open(const struct ws_tree *t, struct ws_tree_cursor *c, const char *rel, int flags,
                 mode_t mode, int *fd, struct ws_error *err);
/* Opens an existing file to change it in place (flags: O_WRONLY or O_RDWR; O_NONBLOCK and
 * O_NOFOLLOW are added): it must be a regular file with one link, so that no write reaches a file
 * outside the tree through a hard link, and no FIFO blocks the caller (WS_ERR_INVALID otherwise,
 * *fd -1). */
int ws_tree_open_own(const struct ws_tree *t, struct ws_tree_cursor *c, const char *rel, int flags,
                     int *fd, struct ws_error *err);
/* Creates directory rel (an existing directory is taken as it is; anything else there is
 * refused) and gives it `mode` exactly. */
int ws_tree_mkdir(const struct ws_tree *t, struct ws_tree_cursor *c, const char *rel, mode_t mode,
                  struct ws_error *err);
/* Creates the symbolic link rel -> target. */
int ws_tree_symlink(const struct ws_tree *t, struct ws_tree_cursor *c, const char *target,
                    const char *rel, struct ws_error *err);

#endif
