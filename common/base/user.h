/*
 * user.h - another user, for the child processes in which root has work done with that user's
 * rights (basebackup restore as the target's owner, drill as the server's user):
 * docs/design/restore-safety.md says why the work that reads the repository never runs as root.
 *
 * Ownership: a ws_user owns its groups array; ws_user_free().
 */
#ifndef WS_BASE_USER_H
#define WS_BASE_USER_H

#include <limits.h>
#include <sys/types.h>

#include "base/error.h"

struct ws_user {
    uid_t uid;
    gid_t gid;     /* the user's own group */
    gid_t *groups; /* supplementary groups (the own one included) */
    int ngroups;
    char name[64];
    char home[PATH_MAX];
};

/* The user database's entry of uid (name NULL) or of name, with its groups: 0, WS_ERR_NOT_FOUND
 * when there is none (u is then left empty), WS_ERR_INTERNAL when out of memory. */
int ws_user_lookup(uid_t uid, const char *name, struct ws_user *u, struct ws_error *err);
void ws_user_free(struct ws_user *u);

/*
 * In a child process of root: becomes u (supplementary groups, then group, then user, all three
 * ids), makes the process non-dumpable again (the change of ids reset it: the user could
 * otherwise ptrace what root read into it), sets the parent-death signal `sig` (the change
 * cleared it) and checks that the parent is still `parent`, and sets HOME, USER and LOGNAME.
 * `what` names the work in messages ("the restore"). WS_ERR_INTERNAL on any failure.
 */
int ws_user_become(const struct ws_user *u, pid_t parent, int sig, const char *what,
                   struct ws_error *err);

#endif
