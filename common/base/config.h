/*
 * config.h - the one configuration of every walsafe program (README.md, "Configuration").
 *
 * Sources, lowest precedence first: built-in defaults, the file (--config FILE, else
 * $WALSAFE_CONFIG, else /etc/walsafe.conf), the environment (WALSAFE_<KEY>), the command line
 * (--repo, --cluster). The file uses PostgreSQL's syntax: `key = value`, `key = 'quoted'`,
 * `#` comments. Every error names its source (file and line, or variable) and the key.
 *
 *     struct ws_config cfg;
 *     ws_config_init(&cfg);
 *     ws_config_set(&cfg, "repo", "/srv/wal", "command line option --repo", &err);
 *     if (ws_config_load(&cfg, NULL, &err) != 0) ...   // file, then environment, then finalize
 *     ...
 *     ws_config_free(&cfg);
 *
 * Values set with ws_config_set_cli() before ws_config_load() win over file and environment;
 * plain ws_config_set() values are overridden by them. The struct owns its strings.
 *
 * The file must be a regular file of at most 1 MB, not writable by group or others (anyone could
 * redirect repo or drop in encrypt_key_file), in a directory that others cannot write to unless
 * it has the sticky bit (/tmp); if it holds a secret (s3_secret_access_key, s3_session_token, a
 * password in pg_conninfo) it must not be readable by group or others either. A symbolic link
 * is followed: the file it leads to is checked. Refusals are WS_ERR_CONFIG naming the file (and
 * the key). A file without secrets may be readable by everyone, as postgresql.conf is.
 */
#ifndef WS_CONFIG_H
#define WS_CONFIG_H

#include <stdint.h>

#include "base/error.h"

#define WS_DEFAULT_CONFIG "/etc/walsafe.conf"

enum ws_compress { WS_COMPRESS_NONE = 0, WS_COMPRESS_ZSTD = 1 };
enum ws_fetch_error { WS_FETCH_ERROR_AUTO = 0, WS_FETCH_ERROR_ABORT, WS_FETCH_ERROR_MISSING };
/* backup_method: how basebackup create reads the data directory (docs/design/remote.md). */
enum ws_backup_method {
    WS_BACKUP_METHOD_UNSET = -1,
    WS_BACKUP_METHOD_LOCAL,
    WS_BACKUP_METHOD_STREAM
};

struct ws_config {
    char *repo;
    char *cluster;
    int compress;
    int compress_level;
    char *encrypt_key_file;
    char *decrypt_key_files;
    char *pgdata;
    char *pg_conninfo;
    char *pg_bindir; /* PostgreSQL's client programs (pg_dump ...); NULL: found on PATH */
    int parallel;
    char *spool_dir;
    int timeout; /* seconds */
    int retries;
    int fetch_error;
    int backup_type;          /* basebackup create's default: an index of ws_backup_type_choices */
    int backup_method;        /* enum ws_backup_method; UNSET: ws_config_backup_method's rule */
    char *backup_extra_paths; /* comma-separated absolute paths stored with base backups */
    int retain_full;          /* 0 = not set */
    int64_t retain_time;      /* seconds, 0 = not set */
    int retain_logical;       /* logical backups: keep this many newest; 0 = not set */
    int64_t retain_logical_time; /* logical backups: keep those of this window (s); 0 = not set */
    int log_level;
    char *log_file;
    char *s3_endpoint;
    char *s3_region;
    char *s3_uri_style;
    char *s3_access_key_id;
    char *s3_secret_access_key;
    char *s3_session_token;
    char *s3_ca_file;
    int s3_verify_tls;
    int64_t s3_part_size;
    int64_t max_rate; /* bytes per second to and from the repository; 0: unlimited */
    char *sftp_identity_file;
    char *sftp_known_hosts;
    char *sftp_host_key_sha256;
    char *slot_name;            /* wal-receive's replication slot */
    int receive_flush_interval; /* seconds */
    int receive_synchronous;    /* 1: flush = durable in the repository */
    int receive_spool_segments; /* completed segments kept unpushed at most */
    char *notify_command;       /* run through /bin/sh -c after a command (ops/notify.h) */
    int64_t notify_timeout;     /* seconds */

    char *config_file; /* the file that was read, or NULL */
    /* set by the caller before ws_config_load: cluster may be "all" (basebackup list, where it
     * means every cluster of the repository); else ws_config_load refuses that name */
    int cluster_all_ok;
    /* set by the caller: --allow-root was given (basebackup, wal-prune; ws_repo_check_user) */
    int allow_root;
    /* internal: the first key of the file read that holds a secret (a static name), or NULL */
    const char *file_secret;
    /* internal: which keys were set on the command line (bit per key index) */
    uint64_t set_by_cli;
};

/* backup_type's values, NULL-terminated, in the order of enum ws_backup_type (repo/manifest.h). */
extern const char *const ws_backup_type_choices[];

/* The backup_method in effect: the one set, else local when pgdata (or PGDATA, after
 * ws_config_load) is set and stream when not. */
int ws_config_backup_method(const struct ws_config *cfg);

/* A cluster name the option `cluster` accepts: 1 to 64 of [A-Za-z0-9._-], not "." or "..". */
int ws_config_cluster_valid(const char *s);

void ws_config_init(struct ws_config *cfg);
void ws_config_free(struct ws_config *cfg);

/* Sets one key from `source` (used in error messages). Unknown key or bad value: WS_ERR_CONFIG. */
int ws_config_set(struct ws_config *cfg, const char *key, const char *value, const char *source,
                  struct ws_error *err);

/* ws_config_set() for a command-line override: file and environment will not replace it. */
int ws_config_set_cli(struct ws_config *cfg, const char *key, const char *value,
                      struct ws_error *err);

/*
 * Reads the file (explicit path, else $WALSAFE_CONFIG, else the default, which may be missing
 * when repo comes from elsewhere), then WALSAFE_* variables, and checks the result (repo is
 * required: an absolute path or a URL, whose scheme ws_storage_open() checks; cluster "all" is
 * refused unless cluster_all_ok). Command-line values already set are kept.
 */
int ws_config_load(struct ws_config *cfg, const char *path, struct ws_error *err);

/* Parses config text (exposed for tests). `fname` is used in messages. */
int ws_config_parse_text(struct ws_config *cfg, const char *text, const char *fname,
                         struct ws_error *err);

/*
 * Whether a libpq connection string holds a password: a `password` keyword (key = value form,
 * or a URI query parameter), or a postgresql:// URI with user:password@. Text it cannot parse
 * counts as holding one when it mentions "password" (exposed for tests).
 */
int ws_conninfo_has_password(const char *conninfo);

/* Strict parsers (exposed for tests): "16MB" (B kB MB GB TB, 1024-based) and "30d" (s m h d w). */
int ws_parse_size(const char *s, int64_t *out);
int ws_parse_duration(const char *s, int64_t *out);

#endif
