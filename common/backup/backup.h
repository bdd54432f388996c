/*
 * backup.h - the basebackup commands: create, list, restore, verify, check, keep
 * (basebackup/main.c is a thin wrapper around these). Each returns a ws_code and fills err;
 * output goes to stdout, one-line messages to the log.
 *
 * What the commands reach outside the library comes in a ws_backup_env: the PostgreSQL
 * session (create and check need one; basebackup passes &ws_pg_libpq, the only reference to
 * libpq), the replication session of a create with backup_method stream (&ws_repl_libpq), and
 * how storage handles are opened. The unit tests pass fake sessions and the in-memory storage.
 */
#ifndef WS_BACKUP_H
#define WS_BACKUP_H

#include "base/config.h"
#include "base/error.h"
#include "pg/pgconn.h"
#include "pg/repl.h"
#include "repo/catalog.h"
#include "repo/manifest.h"
#include "storage/storage.h"

struct ws_backup_env {
    const struct ws_pg_ops *pg;     /* required by create (local) and check */
    const struct ws_repl_ops *repl; /* required by create (stream) */
    /* Opens a storage handle for cfg->repo; NULL: ws_storage_open. */
    int (*open_storage)(const struct ws_config *cfg, struct ws_storage **out, struct ws_error *err);
    /* The program restore_command runs; NULL: the wal-fetch beside this program. */
    const char *wal_fetch;
};

/* What a successful create made (for notify_command). */
struct ws_backup_done {
    char id[32];
    uint64_t bytes, stored_bytes;
};

struct ws_backup_opts {
    const char *label;
    int fast;                    /* request an immediate checkpoint */
    int parallel;                /* 0: cfg->parallel */
    int progress;                /* show progress on stderr (base/progress.h decides) */
    struct ws_backup_done *done; /* filled when create succeeds, if not NULL */
};

/* Takes a backup, by the backup_method in effect (ws_config_backup_method); prints its id on
 * stdout when complete (nothing else goes to stdout), then one summary line on stderr
 * (base/progress.h). Without o->fast, says on stderr (with o->progress, else at level info) that
 * it waits for a spread checkpoint. Bytes to and from the repository: at most cfg->max_rate per
 * second (io/ratelimit.h); with backup_method stream the server sends at most as much too
 * (BASE_BACKUP's MAX_RATE). */
int ws_backup_create(const struct ws_config *cfg, const struct ws_backup_env *env,
                     const struct ws_backup_opts *o, struct ws_error *err);

/* The cluster name that makes list show every cluster of the repository (a cluster of that name
 * cannot be listed alone). */
#define WS_LIST_ALL_CLUSTERS "all"
int ws_backup_list(const struct ws_config *cfg, int json, struct ws_error *err);

enum ws_target_kind {
    WS_TARGET_NONE = 0,
    WS_TARGET_TIME,
    WS_TARGET_LSN,
    WS_TARGET_XID,
    WS_TARGET_NAME,
    WS_TARGET_IMMEDIATE
};
struct ws_tblspc_map {
    const char *from, *to;
};
struct ws_restore_opts {
    const char *pgdata;
    const char *backup; /* id, "latest" or NULL */
    int target_kind;
    const char *target;        /* the value as given */
    const char *target_action; /* NULL: PostgreSQL's default (pause) */
    int parallel;
    int force;
    int delta;    /* --delta: rewrite what differs in an existing data directory; not with force */
    int progress; /* as ws_backup_opts' */
    int quiet;    /* no summary lines: the caller reports on its own (drill's report) */
    struct ws_tblspc_map *maps; /* absolute normalised paths, each OLDDIR once */
    size_t nmaps;
    const char *config_path; /* the config file in use, for restore_command (may be NULL) */
    const char *extra_to;    /* --extra-to DIR: ws_backup_restore_extra */
};
/*
 * Restores a backup into o->pgdata (and its tablespaces) and writes the recovery settings.
 * The data directory and --tablespace-map destinations must be empty or missing unless
 * o->force; a tablespace's original location must be empty or missing even with force. Run as
 * root, the work is done by a child process as the target's owner (the data directory's, its
 * parent's when root owns an empty one, its nearest existing ancestor's when it is missing):
 * that user reads the repository and creates the tablespace directories. The catalog is read
 * before, as the caller. Installs no signal handler. WS_ERR_USAGE for bad targets or maps.
 * A diff or incr backup is rebuilt from its chain, which must resolve (else an error naming the
 * missing, incomplete or invalid link). With o->delta the data directory must hold a data
 * directory of the backup's system (WS_ERR_FOREIGN otherwise) with no running postmaster: files
 * that match are left alone, the rest is rewritten or removed (docs/design/incremental.md).
 * Reads from the repository at most cfg->max_rate bytes per second; ends with one summary line on
 * stderr (size, bytes read from the repository, duration, rate).
 */
int ws_backup_restore(const struct ws_config *cfg, const struct ws_backup_env *env,
                      const struct ws_restore_opts *o, struct ws_error *err);

/* `restore --extra-to DIR`: the chosen backup's extra paths (backup/extra.h) into o->extra_to, then
 * with o->pgdata that same backup's data directory (ws_backup_restore). WS_ERR_USAGE when DIR is
 * or lies in the data directory, WS_ERR_NOT_FOUND when the backup holds no extra paths. */
int ws_backup_restore_extra(const struct ws_config *cfg, const struct ws_backup_env *env,
                            const struct ws_restore_opts *o, struct ws_error *err);

/* Exit 1 (WS_ERR_CORRUPT) with a list on stderr of what is missing or corrupt. */
int ws_backup_verify(const struct ws_config *cfg, const struct ws_backup_env *env, const char *id,
                     int all, struct ws_error *err);

/* `basebackup check`: its lines on stdout (check.c); WS_ERR_INVALID when a line FAILED. */
int ws_backup_check(const struct ws_config *cfg, const struct ws_backup_env *env,
                    struct ws_error *err);
/* check's lines when the configuration did not load: FAILED for it (cfg_err), SKIPPED for the
 * rest. */
void ws_backup_check_config_failed(const struct ws_error *cfg_err);
/* `basebackup keep ID [--unset]`: pins a complete backup, or removes the pin. */
int ws_backup_keep(const struct ws_config *cfg, const char *id, int unset, struct ws_error *err);

#endif
