/*
 * backup/check_local.c - the lines of `basebackup check` on this host's directories: pgdata (the
 * data directory a local create copies: it must be the server's) and spool_dir (push-ahead and
 * prefetch of the server's wal-push and wal-fetch: it must be the server user's).
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup/check_int.h"
#include "base/fs.h"

/* pgdata exists, is readable, holds PG_VERSION and is the server's data_directory (when the role
 * may read that setting); unset with backup_method local, the server's data_directory must be
 * known and here. *owner: the data directory's stat (its owner is the server's user). */
static int check_pgdata(const struct ws_config *cfg, const struct ws_pg_info *info,
                        struct stat *owner)
{
    char detail[9000], ver[4200];
    struct stat srv;

    if (ws_config_backup_method(cfg) == WS_BACKUP_METHOD_STREAM && !(cfg->pgdata && *cfg->pgdata))
        return ws_check_report(1, L_PGDATA, "not set: backup_method stream copies from the server");
    if (!cfg->pgdata || !*cfg->pgdata) { /* backup_method = local: create takes the server's */
        if (!info || !info->data_directory)
            return ws_check_report(0, L_PGDATA,
                                   "pgdata is not set and the server does not tell its "
                                   "data_directory to this role: set pgdata");
        if (stat(info->data_directory, owner) != 0)
            return ws_check_report(0, L_PGDATA, "the server's data_directory is not on this host");
        snprintf(detail, sizeof(detail), "not set: create copies the server's data_directory %s",
                 info->data_directory);
        return ws_check_report(1, L_PGDATA, detail);
    }
    if (stat(cfg->pgdata, owner) != 0 || !S_ISDIR(owner->st_mode)) {
        snprintf(detail, sizeof(detail), "\"%s\" is not a directory", cfg->pgdata);
        return ws_check_report(0, L_PGDATA, detail);
    }
    snprintf(ver, sizeof(ver), "%s/PG_VERSION", cfg->pgdata);
    if (access(ver, R_OK) != 0) {
        char who[64];
        ws_user_name(owner->st_uid, who, sizeof(who));
        snprintf(detail, sizeof(detail),
                 "\"%s\" cannot be read by this user (owned by %s, mode %04o), or holds no "
                 "PG_VERSION: run as %s",
                 ver, who, (unsigned)(owner->st_mode & 07777), who);
        return ws_check_report(0, L_PGDATA, detail);
    }
    if (!info || !info->data_directory) {
        snprintf(detail, sizeof(detail), "%s (the server's data_directory unknown: not compared)",
                 cfg->pgdata);
        return ws_check_report(1, L_PGDATA, detail);
    }
    if (stat(info->data_directory, &srv) != 0 || srv.st_dev != owner->st_dev ||
        srv.st_ino != owner->st_ino) {
        snprintf(detail, sizeof(detail),
                 "pgdata is \"%s\", but the server's data_directory is \"%s\"", cfg->pgdata,
                 info->data_directory);
        return ws_check_report(0, L_PGDATA, detail);
    }
    return ws_check_report(1, L_PGDATA, cfg->pgdata);
}

/* <spool_dir>/<cluster> and push-ahead's directories in it are the server user's (owner). */
static int check_spool(const struct ws_config *cfg, const struct stat *owner)
{
    static const char *const subs[] = {"", "/pushed", "/pushing"};
    char dir[4200], why[8400], who[64];

    if (!cfg->spool_dir || !*cfg->spool_dir)
        return ws_check_report(1, L_SPOOL, "spool_dir = '': push-ahead and prefetch are off");
    if (cfg->spool_dir[0] != '/') {
        snprintf(why, sizeof(why), "spool_dir \"%s\" is not an absolute path", cfg->spool_dir);
        return ws_check_report(0, L_SPOOL, why);
    }
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
        snprintf(dir, sizeof(dir), "%s/%s%s", cfg->spool_dir, cfg->cluster, subs[i]);
        ws_dir_owner_problem(dir, owner->st_uid, owner->st_gid, why, sizeof(why));
        if (why[0])
            return ws_check_report(0, L_SPOOL, why);
        if (access(dir, F_OK) != 0)
            break; /* it will be created */
    }
    ws_user_name(owner->st_uid, who, sizeof(who));
    snprintf(why, sizeof(why), "%s/%s, %s's", cfg->spool_dir, cfg->cluster, who);
    return ws_check_report(1, L_SPOOL, why);
}

int ws_check_local(const struct ws_config *cfg, const struct ws_pg_info *info)
{
    struct stat owner;
    int failed = check_pgdata(cfg, info, &owner);
    int local = ws_config_backup_method(cfg) == WS_BACKUP_METHOD_LOCAL;

    if (failed || !local)
        ws_check_skipped(L_SPOOL, failed ? L_PGDATA : "pgdata: the spool is on the server's host");
    else
        failed += check_spool(cfg, &owner);
    return failed;
}
