/*
 * backup/check_int.h - the parts of `basebackup check` (check.c: the order, dependencies and the
 * lines on the repository and the server; check_local.c: the lines on this host's directories).
 * Every line is "OK|FAILED|SKIPPED <what>[: detail]", SKIPPED ones end "(needs: <line>)".
 */
#ifndef WS_BACKUP_CHECK_INT_H
#define WS_BACKUP_CHECK_INT_H

#include "base/config.h"
#include "pg/pgconn.h"

/* The <what> of each fixed line; a SKIPPED line names the one it needs by it. */
#define L_CONFIG "configuration valid"
#define L_USER "basebackup runs as the repository's owner"
#define L_KEY "encryption key file readable"
#define L_REPO "repository reachable and writable"
#define L_PG "database server reachable"
#define L_PGDATA "pgdata is the server's data directory"
#define L_SPOOL "spool_dir usable by the server's user"
#define L_IDENTITY "repository identity matches this cluster"
#define L_KEY_MATCH "encryption key matches the repository"
#define L_REPL_CONN "replication connection opens"
#define L_ARCHIVE_MODE "archive_mode is on"
#define L_ARCHIVE_CMD "archive_command calls wal-push"
#define L_ARCHIVE_LIB "archive_library is walsafe_archive"
#define L_SWITCH "a forced WAL switch reaches the repository"

/* What failed so far: each the <what> of a failed line (what dependent lines need), or NULL. */
struct ws_check_run {
    int failed; /* FAILED lines */
    const char *user, *key, *repo, *pg, *identity, *key_match, *archiving, *switch_grant;
};

/* Prints one OK or FAILED line; returns 0 for OK, 1 for FAILED. */
int ws_check_report(int ok, const char *what, const char *detail);
void ws_check_skipped(const char *what, const char *needs);

/* The pgdata and spool_dir lines; info is the server's (NULL when it was not reached). Returns
 * the number of FAILED lines. */
int ws_check_local(const struct ws_config *cfg, const struct ws_pg_info *info);

#endif
