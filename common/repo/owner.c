/*
 * repo/owner.c - who may write a repository (repo.h, ws_repo_check_user): the owner of a local
 * repository's directory, never root unless asked for. Files root leaves in a repository lock
 * its owner's wal-push and basebackup out, and a user who does not own it cannot write it.
 */
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "repo/repo.h"
#include "storage/params.h"

/* The user PostgreSQL runs as, when the data directory says so: "" otherwise. */
static void server_user(const struct ws_config *cfg, char *out, size_t outsz)
{
    struct stat st;

    out[0] = '\0';
    if (cfg->pgdata && cfg->pgdata[0] && stat(cfg->pgdata, &st) == 0 && st.st_uid != 0)
        ws_user_name(st.st_uid, out, outsz);
}

int ws_repo_check_user(const struct ws_config *cfg, const char *program, struct ws_error *err)
{
    char dir[4096], owner[64], me[64], server[64];
    uid_t euid = geteuid();
    struct stat st;
    int local = ws_storage_local_dir(cfg->repo, dir, sizeof(dir)) && stat(dir, &st) == 0;

    if (euid == 0 && cfg->allow_root)
        return 0;
    if (local)
        ws_user_name(st.st_uid, owner, sizeof(owner));
    if (euid == 0 && local && st.st_uid != 0)
        return ws_error_set(err, WS_ERR_INVALID,
                            "%s must not run as root: the repository \"%s\" belongs to user "
                            "\"%s\"; run it as that user (runuser -u %s -- %s ...), or give "
                            "--allow-root (what it creates is then given to \"%s\")",
                            program, dir, owner, owner, program, owner);
    server_user(cfg, server, sizeof(server));
    if (euid == 0 && local)
        return ws_error_set(err, WS_ERR_INVALID,
                            "%s must not run as root: the repository \"%s\" belongs to root; give "
                            "it to the user PostgreSQL runs as (chown -R %s: %s) and run %s as "
                            "that user, or give --allow-root",
                            program, dir, server[0] ? server : "postgres", dir, program);
    if (euid == 0)
        return ws_error_set(err, WS_ERR_INVALID,
                            "%s must not run as root: run it as %s%s%s, or give --allow-root",
                            program, server[0] ? "user \"" : "the backup user",
                            server[0] ? server : "", server[0] ? "\" (the owner of pgdata)" : "");
    if (local && st.st_uid != euid) {
        ws_user_name(euid, me, sizeof(me));
        return ws_error_set(err, WS_ERR_INVALID,
                            "%s runs as user \"%s\", but the repository \"%s\" belongs to user "
                            "\"%s\": run it as %s",
                            program, me, dir, owner, owner);
    }
    return 0;
}
