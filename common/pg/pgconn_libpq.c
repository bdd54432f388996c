/* pgconn_libpq.c - the libpq session of basebackup, ws_pg_libpq (see pgconn.h). */
#include "pg/pgconn.h"

#include <ctype.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg/libpq_int.h"
#include "pg/wal.h"

struct pq_session {
    struct ws_pg base;
    PGconn *conn;
};

/* ---- shared with repl_libpq.c (pg/libpq_int.h) ---- */

const char *ws_pq_one_line(const char *text, char *buf, size_t bufsz)
{
    size_t n = 0;

    for (text = text && *text ? text : "unknown error"; *text && n + 1 < bufsz; text++) {
        if (!isspace((unsigned char)*text))
            buf[n++] = *text;
        else if (n > 0 && buf[n - 1] != ' ')
            buf[n++] = ' ';
    }
    while (n > 0 && buf[n - 1] == ' ')
        n--;
    buf[n] = '\0';
    return buf;
}

const char *ws_pq_result_message(PGconn *conn, const PGresult *res, char *buf, size_t bufsz)
{
    const char *m = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;

    return ws_pq_one_line(m ? m : PQerrorMessage(conn), buf, bufsz);
}

/* A connection string libpq cannot parse: WS_ERR_CONFIG, without libpq's reason. */
static int check_conninfo(const char *conninfo, struct ws_error *err)
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

/* A refused connection in words an operator can act on. */
static int connect_error(PGconn *conn, const char *conninfo, int replication, struct ws_error *err)
{
    char buf[768];
    const char *m = ws_pq_one_line(conn ? PQerrorMessage(conn) : "out of memory", buf, sizeof(buf));

    if (replication && strstr(m, "exceeds max_wal_senders (currently 0)"))
        return ws_error_set(err, WS_ERR_CONFIG,
                            "the server allows no replication connections (max_wal_senders = 0)");
    if (replication &&
        (strstr(m, "must be superuser or replication role") || strstr(m, "REPLICATION attribute")))
        return ws_error_set(err, WS_ERR_CONFIG,
                            "could not open a replication connection: the role must have the "
                            "REPLICATION attribute: %s",
                            m);
    return ws_error_set(err, WS_ERR_STORAGE,
                        "could not %s to the database server: %s (see pg_conninfo%s)",
                        replication ? "open a replication connection" : "connect", m,
                        conninfo && *conninfo ? "" : ", empty: libpq's PG* variables apply");
}

int ws_pq_open(const char *conninfo, int replication, const char *app_name, PGconn **out,
               struct ws_error *err)
{
    /* "dbname" with expand_dbname = 1 takes the whole connection string; later keys win */
    const char *keys[] = {"dbname", "fallback_application_name", "replication", NULL};
    const char *vals[] = {conninfo ? conninfo : "", app_name, "true", NULL};
    int rc;

    *out = NULL;
    if ((rc = check_conninfo(conninfo, err)) != 0)
        return rc;
    if (!replication)
        keys[2] = NULL;
    *out = PQconnectdbParams(keys, vals, 1);
    if (*out && PQstatus(*out) == CONNECTION_OK)
        return 0;
    rc = connect_error(*out, conninfo, replication, err);
    if (*out)
        PQfinish(*out);
    *out = NULL;
    return rc;
}

/* ---- the session ---- */

static int pq_connect(const char *conninfo, struct ws_pg **out, struct ws_error *err)
{
    struct pq_session *pg;
    int rc;

    *out = NULL;
    if (!(pg = calloc(1, sizeof(*pg))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    if ((rc = ws_pq_open(conninfo, 0, "walsafe basebackup", &pg->conn, err)) != 0) {
        free(pg);
        return rc;
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
        ws_error_set(err, WS_ERR_STORAGE, "query \"%.60s\" failed: %s", sql,
                     ws_pq_result_message(pg->conn, res, buf, sizeof(buf)));
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

/* Runs a statement and returns the n columns of its one row, each malloc'ed (NULL for NULL) into
 * v[0..n), which the caller frees (also after a failure). */
static int query_row(struct pq_session *pg, const char *sql, int nparams, const char *const *params,
                     int n, char **v, struct ws_error *err)
{
    PGresult *res;
    int rc, i;

    if ((rc = run(pg, sql, nparams, params, &res, err)) != 0)
        return rc;
    for (i = 0; i < n && rc == 0; i++)
        rc = one_value(res, i, sql, &v[i], err);
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
    char *v[9] = {0};
    int rc, i;

    memset(info, 0, sizeof(*info));
    if ((rc = query_row((struct pq_session *)session, sql, 0, NULL, 9, v, err)) != 0)
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
    char *v[7] = {0};
    int rc, i;

    memset(access, 0, sizeof(*access));
    for (i = 0; i < WS_PG_NFUNCS; i++)
        fn[i] = ws_pg_function(version, (enum ws_pg_func)i);
    if ((rc = query_row((struct pq_session *)session, sql, WS_PG_NFUNCS, fn, 7, v, err)) != 0)
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
    return rc;
}

/* pg_stat_archiver and the current position; pg_current_wal_lsn() fails during recovery. */
static int archiver_row(struct pq_session *pg, struct ws_pg_archiver *a, struct ws_error *err)
{
    static const char sql[] =
        "SELECT archived_count, coalesce(last_archived_wal, ''), "
        "coalesce((extract(epoch FROM last_archived_time) * 1000000)::bigint, 0), failed_count, "
        "coalesce(last_failed_wal, ''), "
        "coalesce((extract(epoch FROM last_failed_time) * 1000000)::bigint, 0), "
        "coalesce(extract(epoch FROM stats_reset)::bigint, 0), pg_is_in_recovery(), "
        "CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END, "
        "CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END, "
        "current_setting('archive_mode'), "
        "(SELECT setting FROM pg_settings WHERE name = 'wal_segment_size') FROM pg_stat_archiver";
    char *v[12] = {0};
    int rc, i;

    rc = query_row(pg, sql, 0, NULL, 12, v, err);
    if (rc == 0 && (!v[0] || !v[3] || !v[7] || !v[10] || !v[11]))
        rc = ws_error_set(err, WS_ERR_STORAGE, "the server did not report pg_stat_archiver");
    if (rc)
        goto out;
    a->archived_count = strtoll(v[0], NULL, 10);
    snprintf(a->last_archived_wal, sizeof(a->last_archived_wal), "%s", v[1]);
    a->last_archived_us = strtoll(v[2], NULL, 10);
    a->failed_count = strtoll(v[3], NULL, 10);
    snprintf(a->last_failed_wal, sizeof(a->last_failed_wal), "%s", v[4]);
    a->last_failed_us = strtoll(v[5], NULL, 10);
    a->stats_reset = strtoll(v[6], NULL, 10);
    a->in_recovery = strcmp(v[7], "t") == 0;
    a->has_current =
        v[8] && v[9] && ws_wal_parse_lsn(v[8], &a->current_lsn) == 0 && strlen(v[9]) >= 8;
    if (a->has_current) {
        char tli[9];
        memcpy(tli, v[9], 8); /* the segment name's first 8 hex digits: its timeline */
        tli[8] = '\0';
        a->timeline = (uint32_t)strtoul(tli, NULL, 16);
    }
    snprintf(a->archive_mode, sizeof(a->archive_mode), "%s", v[10]);
    a->wal_segment_size = (uint32_t)strtoul(v[11], NULL, 10);
out:
    for (i = 0; i < 12; i++)
        free(v[i]);
    return rc;
}

/* The .ready files; a refusal is no error: ready stays -1 and ready_error names the privilege. */
static void ready_count(struct pq_session *pg, struct ws_pg_archiver *a)
{
    PGresult *res = PQexec(pg->conn, "SELECT count(*) FROM pg_ls_archive_statusdir() "
                                     "WHERE name LIKE '%.ready'");
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    char buf[256];

    if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
        a->ready = strtol(PQgetvalue(res, 0, 0), NULL, 10);
    else if (state && strcmp(state, "42501") == 0)
        snprintf(a->ready_error, sizeof(a->ready_error),
                 "permission denied for pg_ls_archive_statusdir(): grant the role pg_monitor");
    else
        snprintf(a->ready_error, sizeof(a->ready_error), "could not count .ready files: %s",
                 ws_pq_result_message(pg->conn, res, buf, sizeof(buf)));
    PQclear(res);
}

static int slot_row(struct pq_session *pg, const char *slot, struct ws_pg_archiver *a,
                    struct ws_error *err)
{
    static const char sql[] = "SELECT active, coalesce(restart_lsn::text, ''), "
                              "coalesce(wal_status, '') FROM pg_replication_slots "
                              "WHERE slot_name = $1";
    PGresult *res = NULL;
    int rc;

    if ((rc = run(pg, sql, 1, &slot, &res, err)) != 0)
        return rc;
    if (PQntuples(res) == 1 && PQnfields(res) == 3) {
        a->slot_exists = 1;
        a->slot_active = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        if (ws_wal_parse_lsn(PQgetvalue(res, 0, 1), &a->slot_restart_lsn) != 0)
            a->slot_restart_lsn = 0;
        snprintf(a->slot_wal_status, sizeof(a->slot_wal_status), "%s", PQgetvalue(res, 0, 2));
    }
    PQclear(res);
    return 0;
}

static int pq_get_archiver(struct ws_pg *session, const char *slot_name, struct ws_pg_archiver *a,
                           struct ws_error *err)
{
    struct pq_session *pg = (struct pq_session *)session;
    int rc;

    if ((rc = archiver_row(pg, a, err)) != 0)
        return rc;
    ready_count(pg, a);
    return slot_name && *slot_name ? slot_row(pg, slot_name, a, err) : 0;
}

const struct ws_pg_ops ws_pg_libpq = {pq_connect,    pq_close,        pq_get_info,
                                      pq_switch_wal, pq_backup_start, pq_backup_stop,
                                      pq_get_access, pq_get_archiver};

/* ---- for logicalbackup (pgconn.h) ------------------------------------------------------------ */

int ws_pg_libpq_databases(struct ws_pg *session, char ***names, size_t *n, struct ws_error *err)
{
    static const char sql[] = "SELECT datname FROM pg_database WHERE datallowconn AND NOT "
                              "datistemplate ORDER BY datname";
    PGresult *res = NULL;
    int rc, i, rows;

    *names = NULL;
    *n = 0;
    if ((rc = run((struct pq_session *)session, sql, 0, NULL, &res, err)) != 0)
        return rc;
    rows = PQntuples(res);
    if (rows > 0 && !(*names = calloc((size_t)rows, sizeof(**names)))) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        goto out;
    }
    for (i = 0; i < rows; i++) {
        if (!((*names)[i] = strdup(PQgetvalue(res, i, 0)))) {
            rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
            goto out;
        }
        (*n)++;
    }
out:
    PQclear(res);
    if (rc) {
        ws_pg_names_free(*names, *n);
        *names = NULL;
        *n = 0;
    }
    return rc;
}

int ws_pg_libpq_create_database(struct ws_pg *session, const char *name, struct ws_error *err)
{
    struct pq_session *pg = (struct pq_session *)session;
    PGresult *res = NULL;
    char *ident = PQescapeIdentifier(pg->conn, name, strlen(name)), sql[600], buf[512];
    int rc;

    if (!ident)
        return ws_error_set(err, WS_ERR_INTERNAL, "could not quote database name \"%s\": %s", name,
                            ws_pq_one_line(PQerrorMessage(pg->conn), buf, sizeof(buf)));
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", ident);
    PQfreemem(ident);
    if ((rc = run(pg, sql, 0, NULL, &res, err)) == 0)
        PQclear(res);
    return rc;
}

/* Appends " key='value'" (quotes and backslashes escaped) to *out of *len bytes. */
static int append_setting(char **out, size_t *len, const char *key, const char *value)
{
    size_t need = *len + strlen(key) + 2 * strlen(value) + 5;
    char *p = realloc(*out, need), *w;

    if (!p)
        return -1;
    *out = p;
    w = p + *len;
    if (*len)
        *w++ = ' ';
    memcpy(w, key, strlen(key));
    w += strlen(key);
    *w++ = '=';
    *w++ = '\'';
    for (; *value; value++) {
        if (*value == '\'' || *value == '\\')
            *w++ = '\\';
        *w++ = *value;
    }
    *w++ = '\'';
    *w = '\0';
    *len = (size_t)(w - p);
    return 0;
}

int ws_pg_libpq_tool_conninfo(const char *conninfo, const char *dbname, char **out, char **password,
                              struct ws_error *err)
{
    PQconninfoOption *opts = NULL, *o;
    char *msg = NULL;
    size_t len = 0;
    int rc = 0;

    *out = *password = NULL;
    if (conninfo && *conninfo) {
        if ((rc = check_conninfo(conninfo, err)) != 0)
            return rc;
        if (!(opts = PQconninfoParse(conninfo, &msg))) {
            PQfreemem(msg);
            return ws_error_set(err, WS_ERR_CONFIG, "pg_conninfo cannot be parsed");
        }
        for (o = opts; o->keyword; o++) {
            if (!o->val || strcmp(o->keyword, "dbname") == 0)
                continue;
            if (strcmp(o->keyword, "password") == 0) {
                if (!(*password = strdup(o->val)))
                    rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
            } else if (append_setting(out, &len, o->keyword, o->val) != 0) {
                rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
            }
            if (rc)
                break;
        }
    }
    if (rc == 0 && append_setting(out, &len, "dbname", dbname) != 0)
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    for (o = opts; o && o->keyword; o++)
        if (o->val && strcmp(o->keyword, "password") == 0)
            memset(o->val, 0, strlen(o->val));
    PQconninfoFree(opts);
    if (rc) {
        free(*out);
        if (*password)
            memset(*password, 0, strlen(*password));
        free(*password);
        *out = *password = NULL;
    }
    return rc;
}
