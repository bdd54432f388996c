/* pgconn_libpq.c - the libpq session of basebackup, ws_pg_libpq (see pgconn.h). */
#include "pg/pgconn.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg/wal.h"

struct pq_session {
    struct ws_pg base;
    PGconn *conn;
};

/* libpq's message without its trailing newline(s), on one line. */
static const char *pq_message(PGconn *conn, char *buf, size_t bufsz)
{
    const char *m = conn ? PQerrorMessage(conn) : "out of memory";
    size_t i, n;

    snprintf(buf, bufsz, "%s", m && *m ? m : "unknown error");
    n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    for (i = 0; i < n; i++)
        if (buf[i] == '\n' || buf[i] == '\t')
            buf[i] = ' ';
    return buf;
}

static void pq_close(struct ws_pg *session);

int ws_pg_libpq_check_conninfo(const char *conninfo, struct ws_error *err)
{
    PQconninfoOption *opts;
    char *msg = NULL;

    /* what libpq expands as a connection string; anything else is a database name */
    if (!conninfo || (!strchr(conninfo, '=') && strncmp(conninfo, "postgresql://", 13) != 0 &&
                      strncmp(conninfo, "postgres://", 11) != 0))
        return 0;
    if ((opts = PQconninfoParse(conninfo, &msg)) != NULL) {
        PQconninfoFree(opts);
        return 0;
    }
    PQfreemem(msg); /* "missing \"=\" after \"<a piece of it>\"": it may be a password's */
    return ws_error_set(err, WS_ERR_CONFIG,
                        "pg_conninfo is not a connection string libpq can read (its reason is "
                        "not shown: it would quote pg_conninfo, which may hold a password)");
}

static int pq_connect(const char *conninfo, struct ws_pg **out, struct ws_error *err)
{
    /* "dbname" with expand_dbname = 1 takes the whole connection string */
    const char *keys[] = {"dbname", "fallback_application_name", NULL};
    const char *vals[] = {conninfo ? conninfo : "", "walsafe basebackup", NULL};
    struct pq_session *pg;
    char buf[512];

    *out = NULL;
    if (ws_pg_libpq_check_conninfo(conninfo, err) != 0)
        return err->code;
    if (!(pg = calloc(1, sizeof(*pg))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    pg->conn = PQconnectdbParams(keys, vals, 1);
    if (!pg->conn || PQstatus(pg->conn) != CONNECTION_OK) {
        ws_error_set(err, WS_ERR_STORAGE,
                     "could not connect to the database server: %s (see pg_conninfo%s)",
                     pq_message(pg->conn, buf, sizeof(buf)),
                     conninfo && *conninfo ? "" : ", empty: libpq's PG* variables apply");
        pq_close(&pg->base);
        return err->code;
    }
    *out = &pg->base;
    return 0;
}

static void pq_close(struct ws_pg *session)
{
    struct pq_session *pg = (struct pq_session *)session;

    if (pg->conn)
        PQfinish(pg->conn);
    free(pg);
}

static int run(struct pq_session *pg, const char *sql, int nparams, const char *const *params,
               PGresult **out, struct ws_error *err)
{
    PGresult *res = PQexecParams(pg->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    char buf[512];

    if (!res ||
        (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK)) {
        const char *m = res ? PQresultErrorMessage(res) : NULL;
        if (m && *m) {
            snprintf(buf, sizeof(buf), "%s", m);
            buf[strcspn(buf, "\n")] = '\0';
        } else {
            pq_message(pg->conn, buf, sizeof(buf));
        }
        ws_error_set(err, WS_ERR_STORAGE, "query \"%.60s\" failed: %s", sql, buf);
        PQclear(res);
        return err->code;
    }
    *out = res;
    return 0;
}

static int one_value(PGresult *res, int col, const char *sql, char **value, struct ws_error *err)
{
    if (PQntuples(res) != 1 || PQnfields(res) <= col)
        return ws_error_set(err, WS_ERR_STORAGE, "query \"%.60s\" returned %d rows", sql,
                            PQntuples(res));
    *value = NULL;
    if (PQgetisnull(res, 0, col))
        return 0;
    if (!(*value = strdup(PQgetvalue(res, 0, col))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    return 0;
}

static int query_value(struct pq_session *pg, const char *sql, char **value, struct ws_error *err)
{
    PGresult *res;
    int rc;

    if ((rc = run(pg, sql, 0, NULL, &res, err)) != 0)
        return rc;
    rc = one_value(res, 0, sql, value, err);
    PQclear(res);
    return rc;
}

/* Runs a statement with one text parameter and returns the first column of its one row. */
static int query_param(struct pq_session *pg, const char *sql, const char *param, char **value,
                       struct ws_error *err)
{
    PGresult *res;
    int rc;

    if ((rc = run(pg, sql, 1, &param, &res, err)) != 0)
        return rc;
    rc = one_value(res, 0, sql, value, err);
    PQclear(res);
    return rc;
}

static int pq_get_info(struct ws_pg *session, struct ws_pg_info *info, struct ws_error *err)
{
    static const char sql[] =
        "SELECT current_setting('server_version_num'), "
        "(SELECT system_identifier FROM pg_control_system()), "
        "(SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'), "
        "current_setting('data_checksums'), pg_is_in_recovery(), "
        "(SELECT setting FROM pg_settings WHERE name = 'data_directory'), "
        "current_setting('archive_mode'), current_setting('archive_command'), "
        "current_setting('archive_library', true)";
    PGresult *res = NULL;
    char *v[9] = {0};
    int rc, i;

    memset(info, 0, sizeof(*info));
    if ((rc = run((struct pq_session *)session, sql, 0, NULL, &res, err)) != 0)
        return rc;
    for (i = 0; i < 9; i++)
        if ((rc = one_value(res, i, sql, &v[i], err)) != 0)
            goto out;
    if (!v[0] || !v[1] || !v[2] || !v[3] || !v[4]) {
        rc = ws_error_set(err, WS_ERR_STORAGE,
                          "the server did not report its version, system "
                          "identifier and WAL segment size");
        goto out;
    }
    info->version = (int)strtol(v[0], NULL, 10);
    info->system_identifier = strtoull(v[1], NULL, 10);
    info->wal_segment_size = (uint32_t)strtoul(v[2], NULL, 10);
    info->data_checksums = strcmp(v[3], "on") == 0;
    info->in_recovery = strcmp(v[4], "t") == 0;
    info->data_directory = v[5];
    info->archive_mode = v[6];
    info->archive_command = v[7];
    info->archive_library = v[8];
    v[5] = v[6] = v[7] = v[8] = NULL;
    if (info->version < 130000) {
        rc = ws_error_set(err, WS_ERR_CONFIG, "PostgreSQL %d is not supported (13 or later is)",
                          info->version / 10000);
        goto out;
    }
out:
    for (i = 0; i < 9; i++)
        free(v[i]);
    PQclear(res);
    if (rc)
        ws_pg_info_free(info);
    return rc;
}

static int pq_switch_wal(struct ws_pg *session, char **walfile, struct ws_error *err)
{
    return query_value((struct pq_session *)session,
                       "SELECT pg_walfile_name(pg_switch_wal()) FROM "
                       "(SELECT pg_logical_emit_message(false, 'walsafe', 'check')) m",
                       walfile, err);
}

static int pq_backup_start(struct ws_pg *session, int version, const char *label, int fast,
                           uint64_t *start_lsn, struct ws_error *err)
{
    const char *sql = version >= 150000 ? (fast ? "SELECT pg_backup_start($1, true)"
                                                : "SELECT pg_backup_start($1, false)")
                                        : (fast ? "SELECT pg_start_backup($1, true, false)"
                                                : "SELECT pg_start_backup($1, false, false)");
    char *v = NULL;
    int rc;

    if ((rc = query_param((struct pq_session *)session, sql, label, &v, err)) != 0)
        return rc;
    if (!v || ws_wal_parse_lsn(v, start_lsn) != 0)
        rc = ws_error_set(err, WS_ERR_STORAGE, "the server returned no backup start position");
    free(v);
    return rc;
}

static int pq_backup_stop(struct ws_pg *session, int version, uint64_t *stop_lsn, char **labelfile,
                          char **spcmap, struct ws_error *err)
{
    const char *sql = version >= 150000 ? "SELECT lsn, labelfile, spcmapfile FROM "
                                          "pg_backup_stop(false)"
                                        : "SELECT lsn, labelfile, spcmapfile FROM "
                                          "pg_stop_backup(false, false)";
    PGresult *res;
    char *lsn = NULL;
    int rc;

    *labelfile = *spcmap = NULL;
    if ((rc = run((struct pq_session *)session, sql, 0, NULL, &res, err)) != 0)
        return rc;
    if ((rc = one_value(res, 0, sql, &lsn, err)) != 0 ||
        (rc = one_value(res, 1, sql, labelfile, err)) != 0 ||
        (rc = one_value(res, 2, sql, spcmap, err)) != 0)
        goto out;
    if (!lsn || ws_wal_parse_lsn(lsn, stop_lsn) != 0 || !*labelfile) {
        rc = ws_error_set(err, WS_ERR_STORAGE, "the server returned no backup stop position");
        goto out;
    }
    if (!*spcmap && !(*spcmap = strdup(""))) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        goto out;
    }
out:
    free(lsn);
    PQclear(res);
    if (rc) {
        free(*labelfile);
        free(*spcmap);
        *labelfile = *spcmap = NULL;
    }
    return rc;
}

static int pq_get_access(struct ws_pg *session, int version, struct ws_pg_access *access,
                         struct ws_error *err)
{
    static const char sql[] =
        "SELECT quote_ident(current_user), rolsuper, rolsuper OR rolreplication, "
        "has_function_privilege($1::text, 'EXECUTE'), "
        "has_function_privilege($2::text, 'EXECUTE'), "
        "has_function_privilege($3::text, 'EXECUTE'), "
        "current_setting('max_wal_senders') "
        "FROM pg_roles WHERE rolname = current_user";
    const char *fn[WS_PG_NFUNCS];
    PGresult *res = NULL;
    char *v[7] = {0};
    int rc, i;

    memset(access, 0, sizeof(*access));
    for (i = 0; i < WS_PG_NFUNCS; i++)
        fn[i] = ws_pg_function(version, (enum ws_pg_func)i);
    if ((rc = run((struct pq_session *)session, sql, WS_PG_NFUNCS, fn, &res, err)) != 0)
        return rc;
    for (i = 0; i < 7; i++)
        if ((rc = one_value(res, i, sql, &v[i], err)) != 0)
            goto out;
    for (i = 0; i < 7; i++)
        if (!v[i]) {
            rc = ws_error_set(err, WS_ERR_STORAGE,
                              "the server did not report the role's "
                              "privileges");
            goto out;
        }
    access->role = v[0];
    v[0] = NULL;
    access->superuser = strcmp(v[1], "t") == 0;
    access->replication = strcmp(v[2], "t") == 0;
    for (i = 0; i < WS_PG_NFUNCS; i++)
        access->execute[i] = strcmp(v[3 + i], "t") == 0;
    access->max_wal_senders = (int)strtol(v[6], NULL, 10);
out:
    for (i = 0; i < 7; i++)
        free(v[i]);
    PQclear(res);
    return rc;
}

const struct ws_pg_ops ws_pg_libpq = {pq_connect,      pq_close,       pq_get_info,  pq_switch_wal,
                                      pq_backup_start, pq_backup_stop, pq_get_access};
