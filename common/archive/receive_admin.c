/* receive_admin.c - wal-receive's --create-slot, --drop-slot and --status (receive.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "archive/receive.h"
#include "archive/spool.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/util.h"
#include "pg/wal.h"

int ws_receive_slot(const struct ws_config *cfg, const struct ws_repl_ops *ops, int create,
                    struct ws_error *err)
{
    struct ws_repl *r = NULL;
    int rc;

    if ((rc = ws_repl_connect_as(ops, cfg->pg_conninfo, cfg->cluster, &r, err)) != 0)
        return rc;
    rc = create ? ws_repl_create_slot(r, cfg->slot_name, err)
                : ws_repl_drop_slot(r, cfg->slot_name, err);
    ws_repl_close(r);
    if (rc == 0)
        ws_log_info("replication slot \"%s\" %s", cfg->slot_name, create ? "created" : "dropped");
    return rc;
}

/* The status file's text into buf ("" when there is none yet). */
static void read_status_file(const struct ws_config *cfg, char *buf, size_t bufsz)
{
    static const char *const subs[] = {"receive"};
    struct ws_spool_place place = {0};
    struct ws_spool sp;
    struct ws_error err = {0};
    ssize_t n = 0;
    int fd = -1;

    buf[0] = '\0';
    if (ws_spool_open(cfg, &place, subs, 1, 1, &sp, &err) != 0)
        return;
    if (ws_spool_openat(sp.sub[0].fd, "status", O_RDONLY, &fd, &err) == 0) {
        n = ws_pread_full(fd, buf, bufsz - 1, 0);
        close(fd);
    }
    buf[n > 0 ? n : 0] = '\0';
    ws_spool_close(&sp);
}

void ws_receive_status_field(const char *text, const char *key, char *out, size_t outsz)
{
    size_t klen = strlen(key);
    const char *p = text, *end;

    out[0] = '\0';
    for (; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, key, klen) == 0 && strncmp(p + klen, " = ", 3) == 0) {
            p += klen + 3;
            end = strchr(p, '\n');
            snprintf(out, outsz, "%.*s", (int)(end ? end - p : (long)strlen(p)), p);
            return;
        }
}

void ws_receive_status(const struct ws_config *cfg, const struct ws_repl_ops *ops, FILE *out)
{
    char text[4096], received[64], flushed[64], updated[64], lasterr[1100], pos[24];
    char restart[24] = "none";
    struct ws_repl_system sys = {0};
    struct ws_repl_slot slot = {0};
    struct ws_repl *r = NULL;
    struct ws_error e2 = {0};
    uint64_t flushed_lsn = 0;
    int64_t t = 0;
    int reached;

    read_status_file(cfg, text, sizeof(text));
    ws_receive_status_field(text, "received", received, sizeof(received));
    ws_receive_status_field(text, "flushed", flushed, sizeof(flushed));
    ws_receive_status_field(text, "updated", updated, sizeof(updated));
    ws_receive_status_field(text, "last_error", lasterr, sizeof(lasterr));
    reached = ws_repl_connect_as(ops, cfg->pg_conninfo, cfg->cluster, &r, &e2) == 0 &&
              ws_repl_identify(r, &sys, &e2) == 0 &&
              ws_repl_read_slot(r, cfg->slot_name, &slot, &e2) == 0;
    ws_repl_close(r);
    fprintf(out, "slot: %s (%s)\n", cfg->slot_name,
            !reached      ? "server not reached"
            : slot.exists ? "exists"
                          : "missing");
    if (slot.exists && slot.restart_lsn)
        ws_wal_format_lsn(restart, slot.restart_lsn);
    ws_wal_format_lsn(pos, sys.xlogpos);
    if (reached)
        fprintf(out, "server position: %s (timeline %" PRIu32 "), slot restart point: %s\n", pos,
                sys.timeline, restart);
    else
        fprintf(out, "server: %s\n", e2.msg);
    fprintf(out, "received: %s\nflushed: %s\n", received[0] ? received : "nothing yet",
            flushed[0] ? flushed : "-");
    if (reached && flushed[0] && ws_wal_parse_lsn(flushed, &flushed_lsn) == 0 &&
        ws_parse_utc(updated, &t) == 0)
        fprintf(out, "lag: %" PRIu64 " bytes, %" PRId64 " s\n",
                sys.xlogpos > flushed_lsn ? sys.xlogpos - flushed_lsn : 0,
                sys.xlogpos > flushed_lsn ? (int64_t)time(NULL) - t : 0);
    fprintf(out, "last error: %s\n", lasterr[0] ? lasterr : "none");
}
