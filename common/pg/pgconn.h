/*
 * pgconn.h - the one libpq session of `basebackup` (only basebackup links libpq).
 *
 * The connection string is pg_conninfo; libpq's PG* variables, .pgpass and unix sockets apply
 * as usual, so a password-less local set-up needs no configuration. Messages carry libpq's own
 * error text (which never includes a password) prefixed with what we were doing.
 *
 * A non-exclusive backup lives as long as the session: ws_pg_backup_start() and
 * ws_pg_backup_stop() must run on the same connection, and closing it aborts the backup.
 */
#ifndef WS_PGCONN_H
#define WS_PGCONN_H

#include <stdint.h>

#include "base/error.h"

struct ws_pg;

struct ws_pg_info {
    int version;                /* server_version_num, e.g. 150004 */
    uint64_t system_identifier; /* from pg_control_system() */
    uint32_t wal_segment_size;
    int data_checksums;
    int in_recovery;
    char *data_directory; /* NULL when the role may not read it */
    char *archive_mode;
    char *archive_command;
};

int ws_pg_connect(const char *conninfo, struct ws_pg **out, struct ws_error *err);
void ws_pg_close(struct ws_pg *pg);
int ws_pg_get_info(struct ws_pg *pg, struct ws_pg_info *info, struct ws_error *err);
void ws_pg_info_free(struct ws_pg_info *info);
/* One row, one column, as text (malloc'ed; NULL for SQL NULL). */
int ws_pg_query_value(struct ws_pg *pg, const char *sql, char **value, struct ws_error *err);
/* Runs a statement with one text parameter and returns the first column of its one row. */
int ws_pg_query_param(struct ws_pg *pg, const char *sql, const char *param, char **value,
                      struct ws_error *err);

int ws_pg_backup_start(struct ws_pg *pg, int version, const char *label, int fast,
                       uint64_t *start_lsn, struct ws_error *err);
/* Ends the backup without waiting for archiving (we wait on the repository ourselves).
 * *labelfile and *spcmap are malloc'ed (spcmap may be empty). */
int ws_pg_backup_stop(struct ws_pg *pg, int version, uint64_t *stop_lsn, char **labelfile,
                      char **spcmap, struct ws_error *err);

#endif
