/*
 * pgconn.h - the PostgreSQL session of `basebackup` (create and check) and `logicalbackup`,
 * behind an ops table.
 *
 * ws_pg_libpq (pgconn_libpq.c, the only file that calls libpq) is the real session. Only
 * basebackup/main.c and logicalbackup/main.c name it, so only they link libpq: the library's other
 * objects never refer to it, and a static library member that nothing refers to is not linked (the
 * unit tests link without libpq and put in a fake session of their own).
 *
 * The libpq session: the connection string is pg_conninfo; libpq's PG* variables, .pgpass and
 * unix sockets apply as usual, so a password-less local set-up needs no configuration. Messages
 * carry libpq's own error text prefixed with what we were doing, but never when pg_conninfo
 * cannot be parsed: libpq then quotes a piece of it, which may be a password
 * (WS_ERR_CONFIG; pg/libpq_int.h's ws_pq_open, shared with pg/repl.h). Every other error is
 * WS_ERR_STORAGE (the server did not answer as needed), WS_ERR_CONFIG (a server older than
 * PostgreSQL 13) or WS_ERR_INTERNAL (out of memory).
 *
 * A non-exclusive backup lives as long as the session: backup_start and backup_stop must run on
 * the same connection, and closing it aborts the backup.
 *
 * Privileges: get_info and get_access need none (data_directory is NULL unless the role is a
 * superuser or has pg_read_all_settings); switch_wal, backup_start and backup_stop need EXECUTE
 * on the functions ws_pg_function() names; get_archiver needs none but for the count of .ready
 * files (pg_monitor, or EXECUTE on pg_ls_archive_statusdir(): without it ready_error says so).
 */
#ifndef WS_PGCONN_H
#define WS_PGCONN_H

#include <stdint.h>

#include "base/error.h"

struct ws_pg_ops;

/* A session: an implementation's own struct starts with this one. */
struct ws_pg {
    const struct ws_pg_ops *ops;
};

struct ws_pg_info {
    int version;                /* server_version_num, e.g. 150004 */
    uint64_t system_identifier; /* from pg_control_system() */
    uint32_t wal_segment_size;
    int data_checksums;
    int in_recovery;
    char *data_directory; /* NULL when the role may not read it */
    char *archive_mode;   /* these four: malloc'ed, freed by ws_pg_info_free */
    char *archive_command;
    char *archive_library; /* "" when unset; NULL before PostgreSQL 15 (no such setting) */
};

/* The server functions walsafe calls that a non-superuser must be granted EXECUTE on. */
enum ws_pg_func { WS_PG_BACKUP_START, WS_PG_BACKUP_STOP, WS_PG_SWITCH_WAL, WS_PG_NFUNCS };

/* What the session's role may do. */
struct ws_pg_access {
    char *role; /* current_user as an SQL identifier (quoted when needed), for a GRANT; malloc'ed */
    int superuser;
    int replication;           /* may open replication connections (REPLICATION or superuser) */
    int execute[WS_PG_NFUNCS]; /* EXECUTE on ws_pg_function(version, f) */
    int max_wal_senders;
};

/* What the server says about archiving (get_archiver, for basebackup status). last_*_us are
 * microseconds since the epoch, exactly as pg_stat_archiver holds them (so two attempts in one
 * second keep their order); stats_reset is seconds since the epoch; 0 when the server has none;
 * names "" when it has none. */
struct ws_pg_archiver {
    int64_t archived_count, failed_count; /* pg_stat_archiver, since stats_reset */
    char last_archived_wal[64], last_failed_wal[64];
    int64_t last_archived_us, last_failed_us, stats_reset;
    int in_recovery;
    int has_current;      /* current_lsn and timeline are known (never during recovery) */
    uint64_t current_lsn; /* pg_current_wal_lsn() */
    uint32_t timeline;    /* of the segment current_lsn is in */
    uint32_t wal_segment_size;
    char archive_mode[16];
    long ready;            /* .ready files in pg_wal/archive_status; -1: unknown (ready_error) */
    char ready_error[300]; /* why, naming the privilege when that is it */
    /* the replication slot asked for: slot_exists 0 when the server has none of that name */
    int slot_exists, slot_active;
    uint64_t slot_restart_lsn; /* 0: none */
    char slot_wal_status[16];  /* reserved, extended, unreserved, lost; "" */
};

struct ws_pg_ops {
    /* A new session in *out (ws_pg_connect sets its ops). */
    int (*connect)(const char *conninfo, struct ws_pg **out, struct ws_error *err);
    void (*close)(struct ws_pg *pg);
    int (*get_info)(struct ws_pg *pg, struct ws_pg_info *info, struct ws_error *err);
    /* Forces a switch to a new WAL segment (after a WAL record, so that it happens on an idle
     * server too); *walfile: the name of the segment switched from (malloc'ed; NULL when the
     * server returned none). */
    int (*switch_wal)(struct ws_pg *pg, char **walfile, struct ws_error *err);
    int (*backup_start)(struct ws_pg *pg, int version, const char *label, int fast,
                        uint64_t *start_lsn, struct ws_error *err);
    /* Ends the backup without waiting for archiving (we wait on the repository ourselves).
     * *labelfile and *spcmap are malloc'ed (spcmap may be empty). */
    int (*backup_stop)(struct ws_pg *pg, int version, uint64_t *stop_lsn, char **labelfile,
                       char **spcmap, struct ws_error *err);
    /* The role's access; version is the server's (get_info), for ws_pg_function. */
    int (*get_access)(struct ws_pg *pg, int version, struct ws_pg_access *access,
                      struct ws_error *err);
    /* Archiving as the server sees it, and the replication slot slot_name (may be NULL). */
    int (*get_archiver)(struct ws_pg *pg, const char *slot_name, struct ws_pg_archiver *out,
                        struct ws_error *err);
};

extern const struct ws_pg_ops ws_pg_libpq;

/* The calls, through the session's ops. ws_pg_close(NULL) does nothing. */
int ws_pg_connect(const struct ws_pg_ops *ops, const char *conninfo, struct ws_pg **out,
                  struct ws_error *err);
void ws_pg_close(struct ws_pg *pg);
int ws_pg_get_info(struct ws_pg *pg, struct ws_pg_info *info, struct ws_error *err);
void ws_pg_info_free(struct ws_pg_info *info);
int ws_pg_switch_wal(struct ws_pg *pg, char **walfile, struct ws_error *err);
int ws_pg_backup_start(struct ws_pg *pg, int version, const char *label, int fast,
                       uint64_t *start_lsn, struct ws_error *err);
int ws_pg_backup_stop(struct ws_pg *pg, int version, uint64_t *stop_lsn, char **labelfile,
                      char **spcmap, struct ws_error *err);
int ws_pg_get_access(struct ws_pg *pg, int version, struct ws_pg_access *access,
                     struct ws_error *err);
void ws_pg_access_free(struct ws_pg_access *access);
int ws_pg_get_archiver(struct ws_pg *pg, const char *slot_name, struct ws_pg_archiver *out,
                       struct ws_error *err);
/* Function f of a server of this version as GRANT and has_function_privilege() spell it, e.g.
 * "pg_backup_start(text, boolean)" (PostgreSQL 13 and 14: pg_start_backup, pg_stop_backup). */
const char *ws_pg_function(int version, enum ws_pg_func f);

/*
 * For logicalbackup, on a ws_pg_libpq session only (pgconn_libpq.c):
 * ws_pg_libpq_databases: the databases one may connect to (not templates), sorted by name, into
 * *names (malloc'ed with their strings: ws_pg_names_free). ws_pg_libpq_create_database: CREATE
 * DATABASE with the name quoted as an identifier. ws_pg_libpq_tool_conninfo: pg_conninfo for a
 * client program (pg_dump, pg_restore, psql) connecting to dbname: *out holds every setting of
 * conninfo but the password, with dbname replaced, as "key='value' ..."; *password is the
 * password conninfo held (NULL if none): it goes into a passfile, never into argv. Both
 * malloc'ed (the caller wipes and frees the password); WS_ERR_CONFIG for a conninfo libpq cannot
 * parse (as ws_pq_open).
 */
int ws_pg_libpq_databases(struct ws_pg *pg, char ***names, size_t *n, struct ws_error *err);
void ws_pg_names_free(char **names, size_t n);
int ws_pg_libpq_create_database(struct ws_pg *pg, const char *name, struct ws_error *err);
int ws_pg_libpq_tool_conninfo(const char *conninfo, const char *dbname, char **out, char **password,
                              struct ws_error *err);

#endif
