/*
 * proc.h - work done in a forked child process, its result sent back as one fixed-size record
 * through a pipe (basebackup restore as the target's owner, the drill's steps).
 *
 *     struct ws_proc p;
 *     if ((rc = ws_proc_start(&p, "restore process", fn, arg, &rec, sizeof(rec), err)) != 0 ||
 *         (rc = ws_proc_finish(&p, &rec, sizeof(rec), NULL, err)) != 0)
 *         return rc;
 *     ... rec is what fn left in the child ...
 *
 * The child runs fn(arg, parent, rec) on its copy of the caller's record (as the caller left it
 * before ws_proc_start), then writes the whole record into the pipe and _exits (0 when it was
 * written, else 1); stdout is flushed before the fork and before the child's exit. The child
 * keeps the caller's signal handlers: fn sets up its own (ws_user_become, PR_SET_PDEATHSIG).
 */
#ifndef WS_BASE_PROC_H
#define WS_BASE_PROC_H

#include <signal.h>
#include <stddef.h>
#include <sys/types.h>

#include "base/error.h"

/* In the child: fills rec (the size given to ws_proc_start); parent is the caller's pid. */
typedef void (*ws_proc_fn)(void *arg, pid_t parent, void *rec);

struct ws_proc {
    pid_t pid;
    int fd;           /* the pipe's read end */
    const char *what; /* names the child in messages ("restore process"); not copied */
};

/* Starts the child. 0, or WS_ERR_INTERNAL ("could not create a pipe", "could not start the
 * <what>") with no child left; then ws_proc_finish must not be called. */
int ws_proc_start(struct ws_proc *p, const char *what, ws_proc_fn fn, void *arg, void *rec,
                  size_t size, struct ws_error *err);

/* Reads the child's record into rec, closes the pipe and reaps the child (always). 0 when the
 * whole record came; else WS_ERR_INTERNAL, "the <what> ended with status N" (or "by signal N", or
 * "without saying how it ended" when it could not be reaped, as with SIGCHLD ignored), rec
 * unspecified. While *stop (may be NULL) is set, the child gets SIGTERM once a second. */
int ws_proc_finish(struct ws_proc *p, void *rec, size_t size, const volatile sig_atomic_t *stop,
                   struct ws_error *err);

#endif
