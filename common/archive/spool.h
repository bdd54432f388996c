/*
 * spool.h - the local spool directory of push-ahead (wal-push) and prefetch (wal-fetch).
 *
 * The spool is <spool_dir>/<cluster>/<sub>: push-ahead's pushed/ and pushing/, prefetch's
 * prefetch-<tag>/. The rule (docs/design/spool.md says why, and which test proves each part):
 *   - spool_dir must be an absolute path; "." and ".." are removed lexically. '' means off.
 *   - Every directory from / to spool_dir, symbolic links resolved, must be owned by root or
 *     the effective user and writable by no one else, unless it is sticky (as /tmp): then the
 *     entry followed in it (directory or link) must be owned by root or the effective user.
 *   - <cluster> and the subdirectories are created 0700 and must be directories (never links)
 *     owned by the effective user, not writable by group or others; a `private` one (prefetch's,
 *     which holds decrypted WAL) must grant group and others nothing at all.
 *   - None of them may be, or lie inside, the data directory, pg_wal or DEST_PATH's directory
 *     (compared by device and inode, so links and bind mounts change nothing).
 * Each directory is opened with O_NOFOLLOW relative to its parent's descriptor, and everything
 * below is done with *at() calls on those descriptors: a path is never resolved again, so a
 * directory swapped after the checks is not followed. Files in the spool are opened O_NOFOLLOW
 * and trusted only when they are regular files owned by the effective user.
 *
 * The module also holds what both programs' background processes share: lock files, files
 * written under a temp name, inotify watches, and starting the process itself (ws_spool_spawn).
 *
 * Errors: functions return a ws_code and fill err; a refusal is WS_ERR_CONFIG, naming the
 * directory and what is wrong with it. ws_spool_use() is what both programs call: it logs
 * one WARNING (or, for spool_dir = '', one INFO line) and returns -1 when there is no spool.
 * Ownership: an open struct ws_spool owns its descriptors until ws_spool_close(); a failed open
 * leaves it closed.
 */
#ifndef WS_SPOOL_H
#define WS_SPOOL_H

#include <limits.h>
#include <stddef.h>
#include <sys/types.h>

#include "base/config.h"
#include "base/error.h"
#include "io/sink.h"

#define WS_SPOOL_MAX_SUB 2
#define WS_SPOOL_DETACH_KEEP 128 /* descriptors ws_spool_spawn() keeps at most */

/* Where a spool must never be; each a path (links followed) or NULL. */
struct ws_spool_place {
    const char *datadir; /* the data directory */
    const char *waldir;  /* pg_wal */
    const char *destdir; /* the directory of wal-fetch's DEST_PATH */
};

struct ws_spool_dir {
    int fd;              /* O_DIRECTORY (O_PATH for <cluster>), checked; -1 when closed */
    char path[PATH_MAX]; /* for messages */
};

struct ws_spool {
    struct ws_spool_dir cluster; /* <spool_dir>/<cluster> */
    struct ws_spool_dir sub[WS_SPOOL_MAX_SUB];
    size_t nsub;
};

/* Removes ".", ".." and repeated "/" from an absolute path; -1 if relative or too long. */
int ws_spool_normalise(const char *path, char out[PATH_MAX]);

/* Opens (creating what is missing) the spool and its subdirectories `subs` under the rule. */
int ws_spool_open(const struct ws_config *cfg, const struct ws_spool_place *place,
                  const char *const *subs, size_t nsub, int private_subs, struct ws_spool *sp,
                  struct ws_error *err);
/* ws_spool_open, logged as "<what> is disabled: <reason>" (WARNING) or "<what> is off: spool_dir
 * is empty" (INFO); 0 when the spool is ready, else -1 (sp is then closed). */
int ws_spool_use(const struct ws_config *cfg, const char *what, const struct ws_spool_place *place,
                 const char *const *subs, size_t nsub, int private_subs, struct ws_spool *sp);
void ws_spool_close(struct ws_spool *sp);

/* Opens file `name` in dir with flags | O_NOFOLLOW | O_CLOEXEC; WS_ERR_NOT_FOUND if absent
 * (without O_CREAT), WS_ERR_CONFIG if it is not a regular file owned by the effective user. */
int ws_spool_openat(int dir, const char *name, int flags, int *fd, struct ws_error *err);
/* A fresh DIR stream of dir (its own file description), or NULL. */
void *ws_spool_opendir(int dir);

/*
 * An exclusive flock() on lock file `name` in dir (created 0600), waiting up to wait_s seconds
 * (0: not at all). The holder unlinks the file before it unlocks (ws_spool_unlock), so a locker
 * checks that the name still names the inode it locked. 0 and *fd; WS_ERR_EXISTS when someone
 * else holds it; WS_ERR_CONFIG (at once, never waited for) when the file is not ours.
 */
int ws_spool_lock(int dir, const char *name, double wait_s, int *fd, struct ws_error *err);
void ws_spool_unlock(int dir, const char *name, int fd);

/* Writes `name` in dir under a temp name (tmp_name, or ".<name>.walsafe.<pid>"), created now,
 * O_EXCL | O_NOFOLLOW, 0600; finish renames it to `name`, abort unlinks it. No fsync. */
int ws_spool_sink_new(int dir, const char *name, const char *tmp_name, struct ws_sink **out,
                      struct ws_error *err);

/* An inotify descriptor (non-blocking, close-on-exec) watching the open directory dir for
 * `mask`, or -1. */
int ws_spool_watch(int dir, unsigned int mask);
/* Returns after an event on watch (all pending ones are read: events only wake the caller) or
 * after ms milliseconds; with watch < 0 it sleeps ms. */
void ws_spool_watch_wait(int watch, int ms);

/*
 * Starts a background process, as fork() does: the child's pid (or -1, errno set) in the caller,
 * 0 in the background process. The child starts a session of its own (setsid) and, with
 * `orphan`, forks once more and exits (reaped before this returns), so that the process which
 * returns 0 is re-parented to init at once. Before it returns 0, the process is detached: SIGPIPE,
 * SIGHUP and SIGINT ignored; stdio on /dev/null; every descriptor closed but *keep[0..nkeep)
 * (at most WS_SPOOL_DETACH_KEEP), which are moved above 2 when they sit on 0..2 and updated in
 * place (a flock() stays with its open file description); log lines go to log_file only (as
 * `progname`, if not NULL); `comm` is the name ps shows. A child that cannot do all of this
 * exits with status 1 instead of returning.
 */
pid_t ws_spool_spawn(int *const *keep, size_t nkeep, int orphan, const char *progname,
                     const char *comm, const char *log_file);

#endif
