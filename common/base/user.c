/*
 * base/user.c - another user: lookup and becoming it (user.h).
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "base/user.h"

int ws_user_lookup(uid_t uid, const char *name, struct ws_user *u, struct ws_error *err)
{
    struct passwd pw, *res = NULL;
    char buf[4096];
    int want = 0;

    memset(u, 0, sizeof(*u));
    if ((name ? getpwnam_r(name, &pw, buf, sizeof(buf), &res)
              : getpwuid_r(uid, &pw, buf, sizeof(buf), &res)) != 0 ||
        !res) {
        if (name)
            return ws_error_set(err, WS_ERR_NOT_FOUND, "user \"%s\" does not exist", name);
        return ws_error_set(err, WS_ERR_NOT_FOUND, "user %u has no entry in the user database",
                            (unsigned)uid);
    }
    u->uid = res->pw_uid;
    u->gid = res->pw_gid;
    snprintf(u->name, sizeof(u->name), "%s", res->pw_name);
    snprintf(u->home, sizeof(u->home), "%s", res->pw_dir);
    getgrouplist(res->pw_name, u->gid, NULL, &want); /* only counts */
    if (want < 1)
        want = 1;
    if (!(u->groups = calloc((size_t)want, sizeof(*u->groups))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    u->ngroups = want;
    if (getgrouplist(res->pw_name, u->gid, u->groups, &u->ngroups) < 0) {
        u->groups[0] = u->gid;
        u->ngroups = 1;
    }
    return 0;
}

void ws_user_free(struct ws_user *u)
{
    free(u->groups);
    u->groups = NULL;
    u->ngroups = 0;
}

int ws_user_become(const struct ws_user *u, pid_t parent, int sig, const char *what,
                   struct ws_error *err)
{
    if (setgroups((size_t)u->ngroups, u->groups) != 0 || setresgid(u->gid, u->gid, u->gid) != 0 ||
        setresuid(u->uid, u->uid, u->uid) != 0)
        return ws_error_setsys(err, WS_ERR_INTERNAL, errno,
                               "could not become user \"%s\" (%u, group %u) for %s", u->name,
                               (unsigned)u->uid, (unsigned)u->gid, what);
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        return ws_error_setsys(err, WS_ERR_INTERNAL, errno, "could not make %s non-dumpable", what);
    if (prctl(PR_SET_PDEATHSIG, sig) != 0 || getppid() != parent)
        return ws_error_set(err, WS_ERR_INTERNAL, "the parent process of %s ended", what);
    if (setenv("HOME", u->home, 1) != 0 || setenv("USER", u->name, 1) != 0 ||
        setenv("LOGNAME", u->name, 1) != 0)
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    return 0;
}
