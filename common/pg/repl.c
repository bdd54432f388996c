/* repl.c - the replication session calls, through the session's ops (see repl.h). No libpq here:
 * repl_libpq.c holds the real session. */
#include "pg/repl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_RATE_MIN 32u /* kB/s, the server's limits */
#define MAX_RATE_MAX 1048576u

int ws_repl_connect(const struct ws_repl_ops *ops, const char *conninfo, struct ws_repl **out,
                    struct ws_error *err)
{
    int rc;

    *out = NULL;
    if (!ops)
        return ws_error_set(err, WS_ERR_INTERNAL, "no replication session implementation");
    if ((rc = ops->connect(conninfo, out, err)) == 0)
        (*out)->ops = ops;
    return rc;
}

void ws_repl_close(struct ws_repl *r)
{
    if (r)
        r->ops->close(r);
}

int ws_repl_identify(struct ws_repl *r, struct ws_repl_system *sys, struct ws_error *err)
{
    return r->ops->identify(r, sys, err);
}

int ws_repl_base_backup(struct ws_repl *r, const struct ws_repl_bb_opts *o,
                        struct ws_repl_bb_start *start, struct ws_error *err)
{
    return r->ops->base_backup(r, o, start, err);
}

int ws_repl_next(struct ws_repl *r, struct ws_repl_msg *msg, struct ws_error *err)
{
    return r->ops->next(r, msg, err);
}

void ws_repl_bb_start_free(struct ws_repl_bb_start *start)
{
    for (size_t i = 0; i < start->ntablespaces; i++)
        free(start->tablespaces[i].location);
    free(start->tablespaces);
    memset(start, 0, sizeof(*start));
}

/* ---- streaming ---- */

static int no_streaming(struct ws_error *err)
{
    return ws_error_set(err, WS_ERR_INTERNAL, "this replication session cannot stream WAL");
}

int ws_repl_connect_as(const struct ws_repl_ops *ops, const char *conninfo, const char *app_name,
                       struct ws_repl **out, struct ws_error *err)
{
    int rc;

    *out = NULL;
    if (!ops || !ops->connect_as)
        return no_streaming(err);
    if ((rc = ops->connect_as(conninfo, app_name, out, err)) == 0)
        (*out)->ops = ops;
    return rc;
}

static int slot_command(struct ws_repl *r, int create, const char *slot, struct ws_error *err)
{
    int rc;

    if ((rc = ws_repl_slot_name_check(slot, err)) != 0)
        return rc;
    return r->ops->slot_command ? r->ops->slot_command(r, create, slot, err) : no_streaming(err);
}

int ws_repl_create_slot(struct ws_repl *r, const char *slot, struct ws_error *err)
{
    return slot_command(r, 1, slot, err);
}

int ws_repl_drop_slot(struct ws_repl *r, const char *slot, struct ws_error *err)
{
    return slot_command(r, 0, slot, err);
}

int ws_repl_read_slot(struct ws_repl *r, const char *slot, struct ws_repl_slot *out,
                      struct ws_error *err)
{
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = ws_repl_slot_name_check(slot, err)) != 0)
        return rc;
    return r->ops->read_slot ? r->ops->read_slot(r, slot, out, err) : no_streaming(err);
}

int ws_repl_timeline_history(struct ws_repl *r, uint32_t tli, char **content, size_t *len,
                             struct ws_error *err)
{
    *content = NULL;
    *len = 0;
    return r->ops->timeline_history ? r->ops->timeline_history(r, tli, content, len, err)
                                    : no_streaming(err);
}

int ws_repl_start_streaming(struct ws_repl *r, const char *slot, uint64_t lsn, uint32_t tli,
                            struct ws_error *err)
{
    int rc;

    if (slot && (rc = ws_repl_slot_name_check(slot, err)) != 0)
        return rc;
    return r->ops->start_streaming ? r->ops->start_streaming(r, slot, lsn, tli, err)
                                   : no_streaming(err);
}

int ws_repl_stream_next(struct ws_repl *r, int timeout_ms, struct ws_repl_wal_msg *msg,
                        struct ws_error *err)
{
    memset(msg, 0, sizeof(*msg));
    return r->ops->stream_next ? r->ops->stream_next(r, timeout_ms, msg, err) : no_streaming(err);
}

int ws_repl_send_status(struct ws_repl *r, uint64_t write_lsn, uint64_t flush_lsn, int64_t now,
                        struct ws_error *err)
{
    return r->ops->send_status ? r->ops->send_status(r, write_lsn, flush_lsn, now, err)
                               : no_streaming(err);
}

/* ---- the protocol's rules, without I/O ---- */

int ws_repl_slot_name_check(const char *slot, struct ws_error *err)
{
    size_t n = slot ? strlen(slot) : 0;

    if (n == 0 || n > WS_REPL_SLOT_MAX ||
        strspn(slot, "abcdefghijklmnopqrstuvwxyz0123456789_") != n)
        return ws_error_set(err, WS_ERR_CONFIG,
                            "invalid value \"%s\" for \"slot_name\": expected 1 to %d lower-case "
                            "letters, digits or underscores",
                            slot ? slot : "", WS_REPL_SLOT_MAX);
    return 0;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

#define XLOGDATA_HEADER 25 /* 'w', start, end, send time */
#define KEEPALIVE_SIZE 18  /* 'k', end, send time, reply requested */

int ws_repl_parse_xlog(const uint8_t *buf, size_t len, struct ws_repl_wal_msg *msg,
                       struct ws_error *err)
{
    memset(msg, 0, sizeof(*msg));
    if (len >= XLOGDATA_HEADER && buf[0] == 'w') {
        msg->type = WS_REPL_WAL;
        msg->wal_start = get_u64(buf + 1);
        msg->wal_end = get_u64(buf + 9);
        msg->send_time = (int64_t)get_u64(buf + 17);
        msg->data = buf + XLOGDATA_HEADER;
        msg->len = len - XLOGDATA_HEADER;
        if (msg->wal_start + msg->len >= msg->wal_start)
            return 0;
    } else if (len == KEEPALIVE_SIZE && buf[0] == 'k' && buf[17] <= 1) {
        msg->type = WS_REPL_KEEPALIVE;
        msg->wal_end = get_u64(buf + 1);
        msg->send_time = (int64_t)get_u64(buf + 9);
        msg->reply_requested = buf[17];
        return 0;
    }
    return ws_error_set(err, WS_ERR_CORRUPT,
                        "the server sent an invalid message while streaming WAL: type 0x%02x, %zu "
                        "bytes",
                        len ? buf[0] : 0, len);
}

void ws_repl_format_status(uint8_t out[WS_REPL_STATUS_SIZE], uint64_t write_lsn, uint64_t flush_lsn,
                           int64_t now)
{
    out[0] = 'r';
    put_u64(out + 1, write_lsn);
    put_u64(out + 9, flush_lsn);
    put_u64(out + 17, 0); /* apply: invalid, nothing is replayed here */
    put_u64(out + 25, (uint64_t)now);
    out[33] = 0;
}

#define PG_EPOCH_OFFSET INT64_C(946684800) /* 2000-01-01 in Unix time */

int64_t ws_repl_pg_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return ((int64_t)ts.tv_sec - PG_EPOCH_OFFSET) * 1000000 + ts.tv_nsec / 1000;
}

int ws_repl_bb_command(const struct ws_repl_bb_opts *o, char *cmd, size_t cmdsz,
                       struct ws_error *err)
{
    char label[2 * WS_REPL_LABEL_MAX + 1], rate[32] = "";
    uint64_t kb = o->max_rate / 1024;
    size_t n = 0;

    if (!o->label || !*o->label || strlen(o->label) > WS_REPL_LABEL_MAX)
        return ws_error_set(err, WS_ERR_CONFIG, "the backup label is empty or longer than %d bytes",
                            WS_REPL_LABEL_MAX);
    for (const char *s = o->label; *s; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return ws_error_set(err, WS_ERR_CONFIG,
                                "the backup label must not contain control characters");
        if (*s == '\'')
            label[n++] = '\'';
        label[n++] = *s;
    }
    label[n] = '\0';
    if (o->max_rate && kb < MAX_RATE_MIN)
        return ws_error_set(err, WS_ERR_CONFIG,
                            "a rate limit of %" PRIu64 " bytes per second is below the server's "
                            "minimum of %u kB/s",
                            o->max_rate, MAX_RATE_MIN);
    if (o->max_rate)
        snprintf(rate, sizeof(rate), ", MAX_RATE %" PRIu64, kb < MAX_RATE_MAX ? kb : MAX_RATE_MAX);
    if ((size_t)snprintf(cmd, cmdsz,
                         "BASE_BACKUP (LABEL '%s'%s, CHECKPOINT '%s', WAL false, WAIT false, "
                         "TABLESPACE_MAP, "
                         "MANIFEST 'yes', MANIFEST_CHECKSUMS 'CRC32C', VERIFY_CHECKSUMS %s, "
                         "TARGET 'client'%s)",
                         label, o->progress ? ", PROGRESS" : "", o->fast ? "fast" : "spread",
                         o->verify_checksums ? "true" : "false", rate) >= cmdsz)
        return ws_error_set(err, WS_ERR_INTERNAL, "BASE_BACKUP command too long");
    return 0;
}

int ws_repl_parse_size(const char *s, uint64_t *bytes)
{
    static const struct {
        const char *unit;
        int shift;
    } units[] = {{"", 0}, {"B", 0}, {"kB", 10}, {"MB", 20}, {"GB", 30}};
    char *end;

    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    *bytes = strtoull(s, &end, 10);
    if (errno || *bytes > UINT32_MAX)
        return -1;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strcmp(end, units[i].unit) == 0) {
            *bytes <<= units[i].shift;
            return 0;
        }
    return -1;
}

static int bad_message(const char *what, size_t len, struct ws_error *err)
{
    return ws_error_set(err, WS_ERR_CORRUPT,
                        "the server sent an invalid COPY message during the base backup: %s "
                        "(%zu bytes)",
                        what, len);
}

/* 'n': archive name and tablespace location, each NUL-terminated, nothing after them. */
static int new_archive(struct ws_repl_stream *st, const uint8_t *buf, size_t len,
                       struct ws_repl_msg *msg, struct ws_error *err)
{
    const char *p = (const char *)buf + 1, *end = (const char *)buf + len;
    const char *name_end = memchr(p, '\0', (size_t)(end - p)), *loc, *loc_end;

    if (!name_end || name_end == p)
        return bad_message("a new archive without a name", len, err);
    loc = name_end + 1;
    if (!(loc_end = memchr(loc, '\0', (size_t)(end - loc))) || loc_end + 1 != end)
        return bad_message("a new archive without its tablespace location", len, err);
    if (st->in_manifest)
        return bad_message("a new archive after the manifest", len, err);
    msg->type = WS_REPL_ARCHIVE;
    msg->archive_name = p;
    msg->tablespace_location = loc;
    st->have_archive = 1;
    return 0;
}

int ws_repl_parse_copy(struct ws_repl_stream *st, const uint8_t *buf, size_t len,
                       struct ws_repl_msg *msg, struct ws_error *err)
{
    uint64_t v = 0;

    memset(msg, 0, sizeof(*msg));
    if (len == 0)
        return bad_message("empty", len, err);
    switch (buf[0]) {
    case 'n':
        return new_archive(st, buf, len, msg, err);
    case 'd':
        if (!st->have_archive && !st->in_manifest)
            return bad_message("data before the first archive", len, err);
        msg->type = WS_REPL_DATA;
        msg->data = buf + 1;
        msg->len = len - 1;
        return 0;
    case 'p':
        if (len != 9)
            return bad_message("progress", len, err);
        for (int i = 1; i < 9; i++)
            v = v << 8 | buf[i];
        msg->type = WS_REPL_PROGRESS;
        msg->progress = v;
        return 0;
    case 'm':
        if (len != 1 || st->in_manifest)
            return bad_message("manifest", len, err);
        st->in_manifest = 1;
        msg->type = WS_REPL_MANIFEST;
        return 0;
    default:
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "the server sent a COPY message of unknown type 0x%02x during the "
                            "base backup (%zu bytes)",
                            buf[0], len);
    }
}
