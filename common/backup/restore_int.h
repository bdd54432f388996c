/*
 * backup/restore_int.h - what the units of `basebackup restore` share: restore.c (the command,
 * root and the owner's child), restore_choose.c (which backup), restore_target.c (the target
 * directories, checked before anything is touched), restore_fill.c (directories and bundles),
 * restore_recovery.c (recovery settings, tablespace_map). Not for other modules: they use
 * backup.h. Every function returns 0 or a ws_code with err set, unless it says otherwise.
 */
#ifndef WS_BACKUP_RESTORE_INT_H
#define WS_BACKUP_RESTORE_INT_H

#include <limits.h>
#include <stdint.h>
#include <sys/types.h>

#include "backup/backup.h"
#include "base/fs.h"
#include "repo/bundle.h"
#include "repo/catalog.h"

/* PostgreSQL's FirstNormalObjectId: every tablespace users create has an oid from here on. */
#define FIRST_NORMAL_OID 16384u

struct rdir {
    const char *path;      /* as named: --pgdata (absolute), a location or a map destination */
    uint32_t oid;          /* of a tablespace; 0 for the data directory */
    char link[32];         /* a tablespace's "pg_tblspc/<oid>" */
    int mapped;            /* a --tablespace-map destination */
    int clearable;         /* --force may empty it (also the replaced cluster's own, see
                              ws_restore_inspect_targets) */
    struct ws_dir_ref ref; /* looked up (base/fs.h) */
    int fd;                /* opened for reading, once it exists */
    int empty, has_pid;    /* what it held before the restore */
    char pg[NAME_MAX + 1]; /* a PG_<version>_<catversion> directory in it ("" if none) */
};

struct restore {
    const struct ws_config *cfg;
    const struct ws_backup_env *env;
    const struct ws_restore_opts *o;
    const struct ws_keyring *kr;
    const struct ws_manifest *m;
    char pgdata[PATH_MAX]; /* --pgdata made absolute (lexically), for checks and messages */
    char cmd[8192];        /* restore_command */
    struct rdir data;
    struct rdir *ts; /* one per tablespace of the manifest, in its order */
    int group_access;
    int started; /* something was removed or written: a failure leaves a directory not to start */
    char as_user[64];       /* the user a root-started restore runs as ("" otherwise) */
    char as_home[PATH_MAX]; /* and that user's home */
};

/* restore_choose.c: the backup --backup and the recovery target select (complete, ending
 * before the target). */
int ws_restore_choose(const struct ws_catalog *cat, const struct ws_restore_opts *o,
                      const struct ws_catalog_backup **out, struct ws_error *err);
/* -1 when s is no time stamp, 1 when it has no zone (local time assumed), else 0. */
int ws_parse_target_time(const char *s, double *out);

/* restore_target.c */
int ws_restore_has_control(const char *s); /* 1 when s holds a control character */
/* p made absolute against the working directory, ".", ".." and "//" resolved lexically. */
int ws_restore_absolute_path(const char *p, char *out, size_t outsz, struct ws_error *err);
int ws_restore_check_target(const struct ws_restore_opts *o, struct ws_error *err);
int ws_restore_check_manifest_paths(const struct ws_manifest *m, struct ws_error *err);
int ws_restore_check_tablespaces(struct restore *r, struct ws_error *err);
int ws_restore_check_root_tablespaces(const struct restore *r, struct ws_error *err);
int ws_restore_manifest_group_access(const struct ws_manifest *m);
mode_t ws_restore_dir_mode(const struct restore *r, uint32_t manifest_mode);
int ws_restore_inspect_dir(struct rdir *d, struct ws_error *err);
int ws_restore_inspect_targets(struct restore *r, struct ws_error *err);
int ws_restore_create_targets(struct restore *r, struct ws_error *err);
int ws_restore_empty_targets(struct restore *r, struct ws_error *err);
void ws_restore_close_rdir(struct rdir *d);

/* restore_fill.c */
int ws_restore_make_dirs(struct restore *r, const struct ws_tree *tree, struct ws_error *err);
int ws_restore_split_files(struct restore *r, const struct ws_tree *tree, int finish,
                           struct ws_error *err);
int ws_restore_bundles(const struct restore *r, struct ws_repo *repo,
                       const struct ws_bundle_opts *bo, struct ws_error *err);
void ws_restore_report_problem(void *arg, const struct ws_bfile *f, const char *msg);

/* restore_recovery.c */
int ws_restore_command(struct restore *r, struct ws_error *err);
int ws_restore_write_recovery(struct restore *r, struct ws_error *err);
int ws_restore_write_tablespace_map(struct restore *r, struct ws_error *err);
int ws_restore_sync_fs_of(const struct rdir *d, struct ws_error *err);

#endif
