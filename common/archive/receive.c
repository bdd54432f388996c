/* receive.c - wal-receive's sessions with the server: where to start, the stream, timeline
 * switches, reconnects (receive.h, docs/design/receive.md). */
#include "archive/receive.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "archive/receive_int.h"
#include "base/log.h"
#include "base/util.h"

#define BACKOFF_MAX_S 30
#define STATUS_INTERVAL_MS 10000 /* a status update at least this often (wal_sender_timeout) */

/* ---- where the repository ends ---- */

struct newest {
    uint32_t tli, seg_size;
    uint64_t end; /* segment number after the newest, 0: none */
};

static int newest_cb(void *arg, const char *key, const struct ws_storage_stat *st,
                     struct ws_error *err)
{
    struct newest *n = arg;

    (void)st;
    (void)err;
    ws_rx_segment_end(ws_base_name(key), n->tli, n->seg_size, &n->end);
    return 0;
}

/* The segment after the newest one of tli that the repository or the spool holds whole. */
static int held_end(struct receiver *r, uint32_t tli, uint64_t *end, struct ws_error *err)
{
    struct newest n = {tli, r->seg_size, 0};
    char prefix[128];
    uint64_t spool_end;
    int rc;

    snprintf(prefix, sizeof(prefix), "%s/wal/%08" PRIX32, r->repo.cluster, tli);
    if ((rc = ws_storage_list(r->repo.st, prefix, newest_cb, &n, err)) != 0)
        return rc;
    spool_end = ws_rx_spool_end(r, tli);
    *end = n.end > spool_end ? n.end : spool_end;
    return 0;
}

/* The start: the end of what is held for the server's timeline, else the slot's restart point,
 * else the server's current segment; always the start of a segment (as pg_receivewal). */
static int find_start(struct receiver *r, const struct ws_repl_system *sys, struct ws_error *err)
{
    struct ws_repl_slot slot;
    uint64_t end, now_seg = ws_wal_lsn_to_segno(sys->xlogpos, r->seg_size);
    int rc;

    if ((rc = held_end(r, sys->timeline, &end, err)) != 0)
        return rc;
    r->tli = sys->timeline;
    if (end > 0) {
        r->pos = ws_wal_segno_to_lsn(end <= now_seg ? end : now_seg, r->seg_size);
        return 0;
    }
    if ((rc = ws_repl_read_slot(r->session, r->cfg->slot_name, &slot, err)) != 0)
        return rc;
    if (slot.exists && slot.restart_lsn) {
        r->pos =
            ws_wal_segno_to_lsn(ws_wal_lsn_to_segno(slot.restart_lsn, r->seg_size), r->seg_size);
        if (slot.timeline)
            r->tli = slot.timeline;
        return 0;
    }
    r->pos = ws_wal_segno_to_lsn(now_seg, r->seg_size);
    return 0;
}

/* ---- one session ---- */

/* The server must be the repository cluster's (or the first of it). */
static int check_identity(struct receiver *r, const struct ws_repl_system *sys,
                          struct ws_error *err)
{
    struct ws_identity want = {0};

    want.system_identifier = sys->system_identifier;
    want.pg_version = sys->version / 10000;
    want.wal_segment_size = sys->wal_segment_size;
    r->seg_size = sys->wal_segment_size;
    return ws_repo_identity_ensure(&r->repo, &want, "the server of pg_conninfo", err);
}

/* The history file of tli into the repository, unless it is there. */
static int store_history(struct receiver *r, uint32_t tli, struct ws_error *err)
{
    struct ws_storage_stat st;
    char name[32], key[256], *content = NULL;
    size_t len;
    int rc;

    snprintf(name, sizeof(name), "%08" PRIX32 ".history", tli);
    if (tli <= 1 || ws_repo_wal_key(&r->repo, name, key, sizeof(key)) != 0)
        return 0;
    if ((rc = ws_storage_stat(r->repo.st, key, &st, err)) != WS_ERR_NOT_FOUND)
        return rc;
    if ((rc = ws_repl_timeline_history(r->session, tli, &content, &len, err)) == 0 &&
        (rc = ws_rx_push_content(r, name, content, len, err)) == 0)
        ws_log_info("stored timeline history file \"%s\"", name);
    free(content);
    return rc;
}

static int send_status(struct receiver *r, int64_t *last_ms, struct ws_error *err)
{
    uint64_t flushed = r->cfg->receive_synchronous ? r->stored : r->synced;

    *last_ms = ws_mono_ms();
    return ws_repl_send_status(r->session, r->pos, flushed, ws_repl_pg_now(), err);
}

/* A flush, then the status update that reports it. */
static int flush_and_report(struct receiver *r, int64_t *status_ms, struct ws_error *err)
{
    int rc = ws_rx_flush(r, err);

    return rc ? rc : send_status(r, status_ms, err);
}

/* The spool holds as many unpushed segments as it may: no reading until one is pushed. The
 * pushes are tried again at most once per receive_flush_interval. */
static int spool_full(struct receiver *r)
{
    int64_t now = ws_mono_ms();

    if (r->pending < (size_t)r->cfg->receive_spool_segments)
        return 0;
    if (now < r->next_push_ms)
        return 1;
    r->next_push_ms = now + (int64_t)r->cfg->receive_flush_interval * 1000;
    ws_rx_push_pending(r);
    if (r->pending < (size_t)r->cfg->receive_spool_segments)
        return 0;
    if (!r->full_logged)
        ws_log_warning("%zu received segments wait in \"%s\" for the repository "
                       "(receive_spool_segments): reading from the server stops until they are "
                       "stored",
                       r->pending, r->sp.sub[0].path);
    r->full_logged = 1;
    return 1;
}

static int handle(struct receiver *r, const struct ws_repl_wal_msg *m, int64_t *status_ms,
                  int64_t *data_ms, struct ws_error *err)
{
    char have[24], got[24];
    uint64_t synced;
    int rc;

    if (m->type == WS_REPL_KEEPALIVE && m->reply_requested)
        return send_status(r, status_ms, err);
    if (m->type != WS_REPL_WAL)
        return 0;
    if (m->wal_start != r->pos) {
        ws_wal_format_lsn(have, r->pos);
        ws_wal_format_lsn(got, m->wal_start);
        return ws_error_set(err, WS_ERR_CORRUPT, "the server sent WAL from %s, expected from %s",
                            got, have);
    }
    if (m->len && !*data_ms)
        *data_ms = ws_mono_ms();
    synced = r->synced;
    if ((rc = ws_rx_write(r, m->data, m->len, err)) != 0)
        return rc;
    /* a segment completed (fsync'ed and renamed in the spool): that is a flush to report */
    return r->synced > synced ? send_status(r, status_ms, err) : 0;
}

/* How long to wait for the server: until the flush that received bytes are due for (at
 * once in synchronous mode, where a flush follows every batch the socket holds), at most 1 s. */
static int wait_ms(const struct receiver *r, int64_t data_ms, int64_t now)
{
    int64_t left = data_ms + (int64_t)r->cfg->receive_flush_interval * 1000 - now;

    if (!data_ms)
        return 1000;
    if (r->cfg->receive_synchronous || left < 0)
        return 0;
    return left > 1000 ? 1000 : (int)left;
}

/* Streams one timeline from r->pos until it ends (*next set), stop, or an error. */
static int stream_timeline(struct receiver *r, struct ws_repl_wal_msg *end, struct ws_error *err)
{
    int64_t interval = (int64_t)r->cfg->receive_flush_interval * 1000, status_ms = 0, data_ms = 0;
    struct ws_repl_wal_msg m;
    char at[24];
    int rc;

    if ((rc = ws_repl_start_streaming(r->session, r->cfg->slot_name, r->pos, r->tli, err)) != 0 ||
        (rc = ws_rx_open_segment(r, err)) != 0)
        return rc;
    r->synced = r->stored = r->pos;
    ws_wal_format_lsn(at, r->pos);
    ws_log_info("streaming WAL from %s on timeline %" PRIu32, at, r->tli);
    while (!*r->stop) {
        int64_t now = ws_mono_ms();
        if (data_ms && now - data_ms >= interval) {
            data_ms = 0;
            if ((rc = flush_and_report(r, &status_ms, err)) != 0)
                return rc;
        }
        if (now - status_ms >= STATUS_INTERVAL_MS && (rc = send_status(r, &status_ms, err)) != 0)
            return rc;
        if (spool_full(r)) {
            usleep(200 * 1000);
            continue;
        }
        if ((rc = ws_repl_stream_next(r->session, wait_ms(r, data_ms, now), &m, err)) != 0)
            return rc;
        if (m.type == WS_REPL_TIMELINE_END) {
            *end = m; /* the COPY is over: a flush, no status update */
            return ws_rx_flush(r, err);
        }
        if ((rc = handle(r, &m, &status_ms, &data_ms, err)) != 0)
            return rc;
        /* synchronous: the batch is over (nothing more buffered), or the server asks for a
         * reply: flush now */
        if (r->cfg->receive_synchronous && data_ms && m.type != WS_REPL_WAL)
            data_ms = 1;
    }
    return flush_and_report(r, &status_ms, err);
}

/* Connects and streams until stop or an error, following timeline switches. */
static int session(struct receiver *r, struct ws_error *err)
{
    struct ws_repl_system sys;
    struct ws_repl_wal_msg end;
    int rc;

    if ((rc = ws_repl_connect_as(r->ops, r->cfg->pg_conninfo, r->cfg->cluster, &r->session, err)) !=
            0 ||
        (rc = ws_repl_identify(r->session, &sys, err)) != 0 ||
        (rc = check_identity(r, &sys, err)) != 0)
        goto out;
    ws_rx_push_pending(r);
    if ((rc = store_history(r, sys.timeline, err)) != 0 || (rc = find_start(r, &sys, err)) != 0)
        goto out;
    while (!*r->stop) {
        memset(&end, 0, sizeof(end));
        if ((rc = stream_timeline(r, &end, err)) != 0 || *r->stop)
            break;
        ws_rx_drop_partial(r); /* its bytes are in chunks; the next timeline has them too */
        if (!end.next_timeline) {
            rc = ws_error_set(err, WS_ERR_STORAGE, "the server ended streaming");
            break;
        }
        ws_log_info("timeline %" PRIu32 " ends; following timeline %" PRIu32, r->tli,
                    end.next_timeline);
        if ((rc = store_history(r, end.next_timeline, err)) != 0)
            break;
        r->tli = end.next_timeline;
        r->pos = ws_wal_segno_to_lsn(ws_wal_lsn_to_segno(end.next_start, r->seg_size), r->seg_size);
    }
out:
    if (r->fd >= 0) {
        /* the server may be gone for good: what it sent goes to the repository now */
        struct ws_error e2 = {0};
        if (rc != 0 && r->pos > r->chunked)
            ws_rx_flush(r, &e2);
        close(r->fd);
        r->fd = -1;
    }
    ws_repl_close(r->session);
    r->session = NULL;
    return rc;
}

/* Sleeps s seconds, or until stop. */
static void pause_s(volatile sig_atomic_t *stop, int s)
{
    for (int i = 0; i < s * 10 && !*stop; i++)
        usleep(100 * 1000);
}

static int open_receiver(const struct ws_config *cfg, struct receiver *r, struct ws_error *err)
{
    static const char *const subs[] = {"receive"};
    struct ws_spool_place place = {0};
    int rc;

    r->fd = -1;
    if ((rc = ws_spool_open(cfg, &place, subs, 1, 1, &r->sp, err)) != 0)
        return ws_error_prefix(err, "wal-receive needs spool_dir");
    r->dir = r->sp.sub[0].fd;
    if ((rc = ws_keyring_load(cfg, &r->kr, err)) != 0 ||
        (rc = ws_repo_open(cfg, &r->repo, err)) != 0)
        return rc;
    r->repo.st->attempts = 1; /* the receiver retries on its own clock */
    r->repo.keep_identity = 1;
    return 0;
}

static void close_receiver(struct receiver *r)
{
    ws_repo_close(&r->repo);
    ws_keyring_wipe(&r->kr);
    ws_spool_close(&r->sp);
}

int ws_receive_run(const struct ws_config *cfg, const struct ws_repl_ops *ops,
                   volatile sig_atomic_t *stop, struct ws_error *err)
{
    struct receiver r = {0};
    int backoff = 1, rc;

    r.cfg = cfg;
    r.ops = ops;
    r.stop = stop;
    if ((rc = ws_repl_slot_name_check(cfg->slot_name, err)) != 0 ||
        (rc = open_receiver(cfg, &r, err)) != 0)
        goto out;
    while (!*stop) {
        uint64_t before = r.pos;
        rc = session(&r, err);
        if (rc == WS_ERR_FOREIGN)
            goto out;
        if (rc == 0)
            break;
        ws_rx_set_error(&r, err);
        ws_rx_write_status(&r);
        if (r.pos > before)
            backoff = 1; /* it streamed: the failure is new */
        ws_log_info("reconnecting in %d s", backoff);
        pause_s(stop, backoff);
        backoff = backoff * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : backoff * 2;
    }
    rc = 0;
out:
    close_receiver(&r);
    return rc;
}
