/* repl_libpq.c - the libpq replication session, ws_repl_libpq (see repl.h). */
#include "pg/repl.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "pg/libpq_int.h"
#include "pg/wal.h"

#define SQLSTATE_DATA_CORRUPTED "XX001"
#define SQLSTATE_DUPLICATE_OBJECT "42710"
#define SQLSTATE_UNDEFINED_OBJECT "42704"

enum repl_state { IDLE, STREAMING, DONE, WAL_STREAMING };

struct pq_repl {
    struct ws_repl base;
    PGconn *conn;
    enum repl_state state;
    char *copybuf; /* the last COPY message (PQfreemem), what next's answer points into */
    struct ws_repl_stream stream;
};

/* WARNING and NOTICE messages of the server, one line each. */
static void on_notice(void *arg, const PGresult *res)
{
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    char buf[1024];

    (void)arg;
    ws_log_warning("server %s: %s", sev ? sev : "NOTICE",
                   ws_pq_result_message(NULL, res, buf, sizeof(buf)));
}

static void pq_close(struct ws_repl *session);

static int pq_connect_as(const char *conninfo, const char *app_name, struct ws_repl **out,
                         struct ws_error *err)
{
    struct pq_repl *r;
    int rc, version;

    *out = NULL;
    if (!(r = calloc(1, sizeof(*r))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    if ((rc = ws_pq_open(conninfo, 1, app_name, &r->conn, err)) != 0) {
        free(r);
        return rc;
    }
    PQsetNoticeReceiver(r->conn, on_notice, NULL);
    if ((version = PQserverVersion(r->conn)) < 150000) {
        ws_error_set(err, WS_ERR_CONFIG,
                     "PostgreSQL %d is not supported for a base backup over the network (15 or "
                     "later is)",
                     version / 10000);
        pq_close(&r->base);
        return err->code;
    }
    *out = &r->base;
    return 0;
}

static int pq_connect(const char *conninfo, struct ws_repl **out, struct ws_error *err)
{
    return pq_connect_as(conninfo, "walsafe basebackup", out, err);
}

static void pq_close(struct ws_repl *session)
{
    struct pq_repl *r = (struct pq_repl *)session;

    if (r->copybuf)
        PQfreemem(r->copybuf);
    if (r->conn)
        PQfinish(r->conn); /* in the middle of a BASE_BACKUP, the server aborts it */
    free(r);
}

/* ---- values the server returns ---- */

static int parse_u64(const char *s, uint64_t max, uint64_t *v)
{
    char *end;

    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    *v = strtoull(s, &end, 10);
    return errno || *end || *v > max ? -1 : 0;
}

/* Runs a command that returns rows; *res holds at least one row of at least cols columns. */
static int run(struct pq_repl *r, const char *cmd, int cols, PGresult **res, struct ws_error *err)
{
    char buf[768];

    *res = PQexec(r->conn, cmd);
    if (PQresultStatus(*res) != PGRES_TUPLES_OK) {
        ws_error_set(err, WS_ERR_STORAGE, "replication command \"%s\" failed: %s", cmd,
                     ws_pq_result_message(r->conn, *res, buf, sizeof(buf)));
        goto fail;
    }
    if (PQntuples(*res) < 1 || PQnfields(*res) < cols) {
        ws_error_set(err, WS_ERR_CORRUPT,
                     "replication command \"%s\" returned %d rows of %d columns, expected %d "
                     "columns",
                     cmd, PQntuples(*res), PQnfields(*res), cols);
        goto fail;
    }
    return 0;
fail:
    PQclear(*res);
    *res = NULL;
    return err->code;
}

/* SHOW name: the setting's text into buf. */
static int show(struct pq_repl *r, const char *name, char *buf, size_t bufsz, struct ws_error *err)
{
    char cmd[64];
    PGresult *res;
    int rc;

    snprintf(cmd, sizeof(cmd), "SHOW %s", name);
    if ((rc = run(r, cmd, 1, &res, err)) != 0)
        return rc;
    snprintf(buf, bufsz, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return 0;
}

static int identify_system(struct pq_repl *r, struct ws_repl_system *sys, struct ws_error *err)
{
    PGresult *res;
    uint64_t tli = 0;
    int rc;

    if ((rc = run(r, "IDENTIFY_SYSTEM", 3, &res, err)) != 0)
        return rc;
    if (parse_u64(PQgetvalue(res, 0, 0), UINT64_MAX, &sys->system_identifier) != 0 ||
        parse_u64(PQgetvalue(res, 0, 1), UINT32_MAX, &tli) != 0 || tli == 0 ||
        ws_wal_parse_lsn(PQgetvalue(res, 0, 2), &sys->xlogpos) != 0)
        rc = ws_error_set(err, WS_ERR_CORRUPT,
                          "IDENTIFY_SYSTEM returned an invalid system identifier, timeline or "
                          "position");
    sys->timeline = (uint32_t)tli;
    PQclear(res);
    return rc;
}

static int pq_identify(struct ws_repl *session, struct ws_repl_system *sys, struct ws_error *err)
{
    struct pq_repl *r = (struct pq_repl *)session;
    char version[32], segsz[32], blcksz[32], checksums[16];
    uint64_t v, seg, blk;
    int rc;

    memset(sys, 0, sizeof(*sys));
    if (r->state == STREAMING)
        return ws_error_set(err, WS_ERR_INTERNAL, "IDENTIFY_SYSTEM during a base backup");
    if ((rc = identify_system(r, sys, err)) != 0 ||
        (rc = show(r, "server_version_num", version, sizeof(version), err)) != 0 ||
        (rc = show(r, "wal_segment_size", segsz, sizeof(segsz), err)) != 0 ||
        (rc = show(r, "block_size", blcksz, sizeof(blcksz), err)) != 0 ||
        (rc = show(r, "data_checksums", checksums, sizeof(checksums), err)) != 0)
        return rc;
    /* the block size only parsed: its user decides which it takes (create: WS_PG_BLCKSZ) */
    if (parse_u64(version, INT32_MAX, &v) != 0 || ws_repl_parse_size(segsz, &seg) != 0 ||
        !ws_wal_seg_size_valid(seg) || ws_repl_parse_size(blcksz, &blk) != 0 || blk > UINT32_MAX)
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "the server reported an invalid server_version_num \"%s\", "
                            "wal_segment_size \"%s\" or block_size \"%s\"",
                            version, segsz, blcksz);
    sys->version = (int)v;
    sys->wal_segment_size = (uint32_t)seg;
    sys->block_size = (uint32_t)blk;
    sys->data_checksums = strcmp(checksums, "on") == 0;
    return 0;
}

/* ---- BASE_BACKUP ---- */

/* The next result of the running command, which must have status `want`. */
static int bb_result(struct pq_repl *r, ExecStatusType want, const char *what, PGresult **res,
                     struct ws_error *err)
{
    char buf[768];

    *res = PQgetResult(r->conn);
    if (PQresultStatus(*res) == want)
        return 0;
    if (PQstatus(r->conn) == CONNECTION_BAD)
        ws_error_set(err, WS_ERR_STORAGE,
                     "connection to the server was lost during the base backup: %s",
                     ws_pq_one_line(PQerrorMessage(r->conn), buf, sizeof(buf)));
    else if (!*res || PQresultStatus(*res) == PGRES_FATAL_ERROR)
        ws_error_set(err, WS_ERR_STORAGE, "the base backup failed on the server: %s",
                     ws_pq_result_message(r->conn, *res, buf, sizeof(buf)));
    else
        ws_error_set(err, WS_ERR_CORRUPT, "the server answered BASE_BACKUP with %s instead of %s",
                     PQresStatus(PQresultStatus(*res)), what);
    PQclear(*res);
    *res = NULL;
    return err->code;
}

/* A result row's (LSN, timeline) pair: the start or the end position. */
static int bb_position(PGresult *res, const char *what, uint64_t *lsn, uint32_t *tli,
                       struct ws_error *err)
{
    uint64_t t;

    if (PQntuples(res) != 1 || PQnfields(res) < 2 || PQgetisnull(res, 0, 0) ||
        ws_wal_parse_lsn(PQgetvalue(res, 0, 0), lsn) != 0 ||
        parse_u64(PQgetvalue(res, 0, 1), UINT32_MAX, &t) != 0 || t == 0)
        return ws_error_set(err, WS_ERR_CORRUPT, "the server sent an invalid %s position", what);
    *tli = (uint32_t)t;
    return 0;
}

/* A size column in kB: bytes, -1 when NULL (no PROGRESS). */
static int size_kb(PGresult *res, int row, int64_t *bytes)
{
    uint64_t kb;

    *bytes = -1;
    if (PQgetisnull(res, row, 2))
        return 0;
    if (parse_u64(PQgetvalue(res, row, 2), INT64_MAX / 1024, &kb) != 0)
        return -1;
    *bytes = (int64_t)(kb * 1024);
    return 0;
}

/* The tablespace list: one row per tablespace (oid, location, size in kB) and the main
 * directory's (NULL oid and location). */
static int bb_tablespaces(PGresult *res, struct ws_repl_bb_start *start, struct ws_error *err)
{
    int rows = PQntuples(res), bad;
    uint64_t oid;

    start->main_size = -1;
    if (PQnfields(res) < 3)
        return ws_error_set(err, WS_ERR_CORRUPT, "the server sent an invalid tablespace list");
    if (rows > 0 && !(start->tablespaces = calloc((size_t)rows, sizeof(*start->tablespaces))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    for (int i = 0; i < rows; i++) {
        struct ws_repl_tablespace *ts = &start->tablespaces[start->ntablespaces];
        if (PQgetisnull(res, i, 0))
            bad = size_kb(res, i, &start->main_size);
        else
            bad = parse_u64(PQgetvalue(res, i, 0), UINT32_MAX, &oid) != 0 || oid == 0 ||
                  PQgetisnull(res, i, 1) || PQgetvalue(res, i, 1)[0] != '/' ||
                  size_kb(res, i, &ts->size) != 0;
        if (bad)
            return ws_error_set(err, WS_ERR_CORRUPT,
                                "the server sent an invalid tablespace list (row %d)", i + 1);
        if (PQgetisnull(res, i, 0))
            continue;
        if (!(ts->location = strdup(PQgetvalue(res, i, 1))))
            return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        ts->oid = (uint32_t)oid;
        start->ntablespaces++;
    }
    return 0;
}

static int pq_base_backup(struct ws_repl *session, const struct ws_repl_bb_opts *o,
                          struct ws_repl_bb_start *start, struct ws_error *err)
{
    struct pq_repl *r = (struct pq_repl *)session;
    char cmd[2 * WS_REPL_LABEL_MAX + 512], buf[768];
    PGresult *res = NULL;
    int rc;

    memset(start, 0, sizeof(*start));
    if (r->state != IDLE)
        return ws_error_set(err, WS_ERR_INTERNAL, "one base backup per replication session");
    if ((rc = ws_repl_bb_command(o, cmd, sizeof(cmd), err)) != 0)
        return rc;
    if (!PQsendQuery(r->conn, cmd))
        return ws_error_set(err, WS_ERR_STORAGE, "could not send BASE_BACKUP: %s",
                            ws_pq_one_line(PQerrorMessage(r->conn), buf, sizeof(buf)));
    r->state = STREAMING; /* from here on the session holds no other command */
    if ((rc = bb_result(r, PGRES_TUPLES_OK, "start position", &res, err)) != 0 ||
        (rc = bb_position(res, "start", &start->start_lsn, &start->timeline, err)) != 0)
        goto out;
    PQclear(res);
    if ((rc = bb_result(r, PGRES_TUPLES_OK, "tablespace list", &res, err)) != 0 ||
        (rc = bb_tablespaces(res, start, err)) != 0)
        goto out;
    PQclear(res);
    rc = bb_result(r, PGRES_COPY_OUT, "COPY stream", &res, err);
out:
    PQclear(res);
    if (rc) {
        ws_repl_bb_start_free(start);
        r->state = DONE;
    }
    return rc;
}

/* ---- the COPY stream ---- */

/* After the COPY: the end position, then the command's completion (or XX001). */
static int stream_end(struct pq_repl *r, struct ws_repl_msg *msg, struct ws_error *err)
{
    char buf[768];
    PGresult *res;
    const char *state;
    int rc;

    if ((rc = bb_result(r, PGRES_TUPLES_OK, "end position", &res, err)) != 0)
        return rc;
    rc = bb_position(res, "end", &msg->end_lsn, &msg->end_timeline, err);
    PQclear(res);
    if (rc)
        return rc;
    res = PQgetResult(r->conn);
    state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (PQresultStatus(res) == PGRES_FATAL_ERROR && state &&
        strcmp(state, SQLSTATE_DATA_CORRUPTED) == 0 && PQstatus(r->conn) == CONNECTION_OK)
        msg->checksum_failure = 1;
    else if (PQresultStatus(res) != PGRES_COMMAND_OK)
        rc = ws_error_set(err, WS_ERR_STORAGE, "the base backup failed after its end position: %s",
                          ws_pq_result_message(r->conn, res, buf, sizeof(buf)));
    PQclear(res);
    while (!rc && (res = PQgetResult(r->conn)) != NULL)
        PQclear(res); /* nothing else is expected: drained */
    msg->type = WS_REPL_END;
    return rc;
}

static int pq_next(struct ws_repl *session, struct ws_repl_msg *msg, struct ws_error *err)
{
    struct pq_repl *r = (struct pq_repl *)session;
    char buf[768];
    int len;

    memset(msg, 0, sizeof(*msg));
    if (r->copybuf) {
        PQfreemem(r->copybuf);
        r->copybuf = NULL;
    }
    if (r->state != STREAMING)
        return ws_error_set(err, WS_ERR_INTERNAL, "no base backup is streaming");
    len = PQgetCopyData(r->conn, &r->copybuf, 0);
    if (len > 0 &&
        ws_repl_parse_copy(&r->stream, (const uint8_t *)r->copybuf, (size_t)len, msg, err) == 0)
        return 0;
    r->state = DONE; /* after an error too: the stream cannot be followed further */
    if (len > 0)
        return err->code;
    if (len == -1)
        return stream_end(r, msg, err);
    if (PQstatus(r->conn) == CONNECTION_BAD)
        return ws_error_set(err, WS_ERR_STORAGE,
                            "connection to the server was lost during the base backup: %s",
                            ws_pq_one_line(PQerrorMessage(r->conn), buf, sizeof(buf)));
    return ws_error_set(err, WS_ERR_STORAGE, "could not read the base backup's COPY data: %s",
                        ws_pq_one_line(PQerrorMessage(r->conn), buf, sizeof(buf)));
}

/* ---- streaming (wal-receive) ---- */

static int sqlstate_is(const PGresult *res, const char *state)
{
    const char *s = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    return s && strcmp(s, state) == 0;
}

static int pq_slot_command(struct ws_repl *session, int create, const char *slot,
                           struct ws_error *err)
{
    struct pq_repl *r = (struct pq_repl *)session;
    char cmd[128], buf[768];
    PGresult *res;
    int rc = 0;

    if (create)
        snprintf(cmd, sizeof(cmd), "CREATE_REPLICATION_SLOT %s PHYSICAL RESERVE_WAL", slot);
    else
        snprintf(cmd, sizeof(cmd), "DROP_REPLICATION_SLOT %s", slot);
    res = PQexec(r->conn, cmd);
    if (PQresultStatus(res) == PGRES_TUPLES_OK || PQresultStatus(res) == PGRES_COMMAND_OK)
        rc = 0;
    else if (create && sqlstate_is(res, SQLSTATE_DUPLICATE_OBJECT))
        rc = ws_error_set(err, WS_ERR_EXISTS, "replication slot \"%s\" already exists", slot);
    else if (!create && sqlstate_is(res, SQLSTATE_UNDEFINED_OBJECT))
        rc = ws_error_set(err, WS_ERR_NOT_FOUND, "replication slot \"%s\" does not exist", slot);
    else
        rc = ws_error_set(err, WS_ERR_STORAGE, "could not %s replication slot \"%s\": %s",
                          create ? "create" : "drop", slot,
                          ws_pq_result_message(r->conn, res, buf, sizeof(buf)));
    PQclear(res);
    return rc;
}

static int pq_read_slot(struct ws_repl *session, const char *slot, struct ws_repl_slot *out,
                        struct ws_error *err)
{
    struct pq_repl *r = (struct pq_repl *)session;
    char cmd[128];
    PGresult *res;
    uint64_t tli = 0;
    int rc;

    snprintf(cmd, sizeof(cmd), "READ_REPLICATION_SLOT %s", slot);
    if ((rc = run(r, cmd, 3, &res, err)) != 0)
        return rc;
    if (!PQgetisnull(res, 0, 0)) {
        out->exists = 1;
        if ((!PQgetisnull(res, 0, 1) &&
             ws_wal_parse_lsn(PQgetvalue(res, 0, 1), &out->restart_lsn) != 0) ||
            (!PQgetisnull(res, 0, 2) && parse_u64(PQgetvalue(res, 0, 2), UINT32_MAX, &tli) != 0))
            rc = ws_error_set(err, WS_ERR_CORRUPT,
                              "READ_REPLICATION_SLOT %s returned an invalid position or timeline",
                              slot);
        out->timeline = (uint32_t)tli;
    }
    PQclear(res);
    return rc;
}

static int pq_timeline_history(struct ws_repl *session, uint32_t tli, char **content, size_t *len,
                               struct ws_error *err)
{
    struct pq_repl *r = (struct pq_repl *)session;
    char cmd[64], want[32];
    PGresult *res;
    int rc;

    snprintf(cmd, sizeof(cmd), "TIMELINE_HISTORY %" PRIu32, tli);
    snprintf(want, sizeof(want), "%08" PRIX32 ".history", tli);
    if ((rc = run(r, cmd, 2, &res, err)) != 0)
        return rc;
    if (strcmp(PQgetvalue(res, 0, 0), want) != 0)
        rc = ws_error_set(err, WS_ERR_CORRUPT,
                          "TIMELINE_HISTORY %" PRIu32 " returned file \"%s\" instead of \"%s\"",
                          tli, PQgetvalue(res, 0, 0), want);
    else if (!(*content = malloc((size_t)PQgetlength(res, 0, 1) + 1)))
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    else {
        *len = (size_t)PQgetlength(res, 0, 1);
        memcpy(*content, PQgetvalue(res, 0, 1), *len + 1);
    }
    PQclear(res);
    return rc;
}

static int pq_start_streaming(struct ws_repl *session, const char *slot, uint64_t lsn, uint32_t tli,
                              struct ws_error *err)
{
    struct pq_repl *r = (struct pq_repl *)session;
    char cmd[160], pos[24], slotpart[80] = "", buf[768];
    PGresult *res;
    int rc = 0;

    if (r->state != IDLE)
        return ws_error_set(err, WS_ERR_INTERNAL, "START_REPLICATION while another command runs");
    ws_wal_format_lsn(pos, lsn);
    if (slot)
        snprintf(slotpart, sizeof(slotpart), "SLOT %s ", slot);
    snprintf(cmd, sizeof(cmd), "START_REPLICATION %sPHYSICAL %s TIMELINE %" PRIu32, slotpart, pos,
             tli);
    res = PQexec(r->conn, cmd);
    if (PQresultStatus(res) == PGRES_COPY_BOTH)
        r->state = WAL_STREAMING;
    else if (slot && sqlstate_is(res, SQLSTATE_UNDEFINED_OBJECT))
        rc = ws_error_set(err, WS_ERR_CONFIG,
                          "replication slot \"%s\" does not exist (create it with wal-receive "
                          "--create-slot)",
                          slot);
    else
        rc = ws_error_set(err, WS_ERR_STORAGE, "replication command \"%s\" failed: %s", cmd,
                          ws_pq_result_message(r->conn, res, buf, sizeof(buf)));
    PQclear(res);
    return rc;
}

static int lost(struct pq_repl *r, const char *what, struct ws_error *err)
{
    char buf[768];

    r->state = DONE;
    return ws_error_set(err, WS_ERR_STORAGE, "%s while streaming WAL: %s", what,
                        ws_pq_one_line(PQerrorMessage(r->conn), buf, sizeof(buf)));
}

/* The server ended the COPY: ours ends too, then the next timeline and its start (if any). */
static int wal_stream_end(struct pq_repl *r, struct ws_repl_wal_msg *msg, struct ws_error *err)
{
    char buf[768];
    PGresult *res;
    uint64_t tli = 0;
    int rc = 0;

    if (PQputCopyEnd(r->conn, NULL) != 1 || PQflush(r->conn) != 0)
        return lost(r, "could not end the COPY", err);
    res = PQgetResult(r->conn);
    if (PQresultStatus(res) == PGRES_TUPLES_OK) {
        if (PQntuples(res) != 1 || PQnfields(res) < 2 ||
            parse_u64(PQgetvalue(res, 0, 0), UINT32_MAX, &tli) != 0 || tli == 0 ||
            ws_wal_parse_lsn(PQgetvalue(res, 0, 1), &msg->next_start) != 0)
            rc = ws_error_set(err, WS_ERR_CORRUPT,
                              "the server sent an invalid next timeline at the end of streaming");
        msg->next_timeline = (uint32_t)tli;
        PQclear(res);
        res = PQgetResult(r->conn);
    }
    if (!rc && PQresultStatus(res) != PGRES_COMMAND_OK)
        rc = ws_error_set(err, WS_ERR_STORAGE, "streaming WAL ended with an error: %s",
                          ws_pq_result_message(r->conn, res, buf, sizeof(buf)));
    PQclear(res);
    while ((res = PQgetResult(r->conn)) != NULL)
        PQclear(res);
    r->state = rc ? DONE : IDLE;
    msg->type = WS_REPL_TIMELINE_END;
    return rc;
}

static int pq_stream_next(struct ws_repl *session, int timeout_ms, struct ws_repl_wal_msg *msg,
                          struct ws_error *err)
{
    struct pq_repl *r = (struct pq_repl *)session;
    struct pollfd pfd;
    int len;

    if (r->copybuf) {
        PQfreemem(r->copybuf);
        r->copybuf = NULL;
    }
    if (r->state != WAL_STREAMING)
        return ws_error_set(err, WS_ERR_INTERNAL, "no WAL is streaming");
    for (int waited = 0;; waited = 1) {
        len = PQgetCopyData(r->conn, &r->copybuf, 1);
        if (len > 0) {
            int rc = ws_repl_parse_xlog((const uint8_t *)r->copybuf, (size_t)len, msg, err);
            if (rc)
                r->state = DONE;
            return rc;
        }
        if (len == -1)
            return wal_stream_end(r, msg, err);
        if (len < -1)
            return lost(r, "the connection failed", err);
        if (waited) {
            msg->type = WS_REPL_IDLE;
            return 0;
        }
        pfd.fd = PQsocket(r->conn);
        pfd.events = POLLIN;
        pfd.revents = 0;
        if (pfd.fd < 0)
            return lost(r, "the connection is closed", err);
        if (poll(&pfd, 1, timeout_ms) < 0 && errno != EINTR)
            return lost(r, "could not wait for the server", err);
        if (!PQconsumeInput(r->conn))
            return lost(r, "the connection was lost", err);
    }
}

static int pq_send_status(struct ws_repl *session, uint64_t write_lsn, uint64_t flush_lsn,
                          int64_t now, struct ws_error *err)
{
    struct pq_repl *r = (struct pq_repl *)session;
    uint8_t buf[WS_REPL_STATUS_SIZE];

    if (r->state != WAL_STREAMING)
        return ws_error_set(err, WS_ERR_INTERNAL, "no WAL is streaming");
    ws_repl_format_status(buf, write_lsn, flush_lsn, now);
    if (PQputCopyData(r->conn, (const char *)buf, sizeof(buf)) != 1 || PQflush(r->conn) != 0)
        return lost(r, "could not send a status update", err);
    return 0;
}

const struct ws_repl_ops ws_repl_libpq = {pq_connect,         pq_close,       pq_identify,
                                          pq_base_backup,     pq_next,        pq_connect_as,
                                          pq_slot_command,    pq_read_slot,   pq_timeline_history,
                                          pq_start_streaming, pq_stream_next, pq_send_status};
