/* repl.c - the replication session calls, through the session's ops (see repl.h). No libpq here:
 * repl_libpq.c holds the real session. */
#include "pg/repl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* ---- the protocol's rules, without I/O ---- */

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
