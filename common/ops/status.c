/* ops/status.c - basebackup status: the repository part, the verdict, the command (status.h). */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "io/key.h"
#include "ops/status_int.h"
#include "pg/wal.h"
#include "prune/prune.h"
#include "repo/repo.h"

const char *ws_status_state_name(int state)
{
    switch (state) {
    case WS_STATUS_OK:
        return "OK";
    case WS_STATUS_WARNING:
        return "WARNING";
    case WS_STATUS_CRITICAL:
        return "CRITICAL";
    default:
        return "UNKNOWN";
    }
}

/* ---- gaps ---- */

struct gap_scan {
    struct ws_status_repo *r;
    size_t cap;
    uint64_t prev_last;
    int has_floor;  /* a complete backup starts on this timeline: */
    uint64_t floor; /* the lowest start segment of those */
    int oom;
};

static void on_run(void *arg, uint32_t tli, uint64_t first, uint64_t last, int is_first)
{
    struct gap_scan *g = arg;
    struct ws_status_gap *gap;

    if (!is_first && !g->oom) {
        if (g->r->ngaps == g->cap) {
            size_t cap = g->cap ? g->cap * 2 : 8;
            void *p = realloc(g->r->gaps, cap * sizeof(*g->r->gaps));
            if (!p) {
                g->oom = 1;
                return;
            }
            g->r->gaps = p;
            g->cap = cap;
        }
        gap = &g->r->gaps[g->r->ngaps++];
        memset(gap, 0, sizeof(*gap));
        gap->tli = tli;
        gap->first = g->prev_last + 1;
        gap->last = first - 1;
        gap->needed = !(g->has_floor && gap->last < g->floor);
    }
    g->prev_last = last;
}

int ws_status_find_gaps(const struct ws_catalog *cat, struct ws_status_repo *r,
                        struct ws_error *err)
{
    struct gap_scan g = {r, 0, 0, 0, 0, 0};
    size_t i, b;

    for (i = 0; i < cat->nsegs; i++) {
        uint32_t tli = cat->segs[i].tli;
        if (i > 0 && cat->segs[i - 1].tli == tli)
            continue;
        g.has_floor = 0;
        for (b = 0; b < cat->nbackups; b++) {
            const struct ws_catalog_backup *bk = &cat->backups[b];
            uint64_t start;
            if (bk->status != WS_BACKUP_COMPLETE || bk->m.timeline != tli)
                continue;
            start = ws_manifest_start_segno(&bk->m);
            if (!g.has_floor || start < g.floor)
                g.floor = start;
            g.has_floor = 1;
        }
        ws_catalog_wal_runs(cat, tli, on_run, &g);
    }
    if (g.oom)
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    return 0;
}

/* The segment a name of the archiver's stands for: segments, .partial and .backup files. */
static int archived_segment(const char *name, uint32_t seg_size, uint32_t *tli, uint64_t *segno)
{
    int kind = ws_wal_classify(name);

    if (kind != WS_WAL_SEGMENT && kind != WS_WAL_PARTIAL && kind != WS_WAL_BACKUP)
        return -1;
    return ws_wal_parse_name(name, seg_size, tli, segno);
}

int ws_status_archive_lag(uint64_t current_lsn, const char *last_archived, uint32_t seg_size,
                          uint64_t *segments, uint64_t *bytes)
{
    uint32_t tli;
    uint64_t s, end, cur;

    *segments = *bytes = 0;
    if (!ws_wal_seg_size_valid(seg_size) || archived_segment(last_archived, seg_size, &tli, &s))
        return -1;
    end = ws_wal_segno_to_lsn(s + 1, seg_size);
    if (current_lsn <= end)
        return 0;
    *bytes = current_lsn - end;
    cur = ws_wal_lsn_to_segno(current_lsn, seg_size);
    *segments = cur > s + 1 ? cur - s - 1 : 0;
    return 0;
}

void ws_status_mark_pending(struct ws_status *s)
{
    const struct ws_pg_archiver *a = &s->server.a;
    uint32_t tli;
    uint64_t segno;
    size_t i;

    if (!s->server.reached || s->server.error[0] ||
        archived_segment(a->last_archived_wal, s->repo.seg_size, &tli, &segno) != 0)
        return;
    for (i = 0; i < s->repo.ngaps; i++)
        if (s->repo.gaps[i].tli == tli && s->repo.gaps[i].first > segno)
            s->repo.gaps[i].pending = 1;
}

/* ---- the repository ---- */

static struct ws_status_timeline *timeline_of(struct ws_status_repo *r, uint32_t tli)
{
    for (size_t i = 0; i < r->ntls; i++)
        if (r->tls[i].tli == tli)
            return &r->tls[i];
    return NULL;
}

/* Each timeline's first, last and count from the catalog's sorted segments. */
static int timelines_from_catalog(const struct ws_catalog *cat, struct ws_status_repo *r,
                                  struct ws_error *err)
{
    size_t i;

    if (!(r->tls = calloc(cat->nsegs + 1, sizeof(*r->tls))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    for (i = 0; i < cat->nsegs; i++) {
        const struct ws_wal_seg *sg = &cat->segs[i];
        struct ws_status_timeline *t = &r->tls[r->ntls];
        if (i == 0 || cat->segs[i - 1].tli != sg->tli) {
            t->tli = sg->tli;
            t->first = sg->segno;
            r->ntls++;
        }
        t = &r->tls[r->ntls - 1];
        t->last = sg->segno;
        t->segments++;
    }
    return 0;
}

/* Sizes and times from the gathered listings; the newest segment's time asked of storage when
 * the listing has none (SFTP). */
static int sizes_and_times(struct ws_repo *repo, const struct ws_prune_state *st,
                           struct ws_status_repo *r, struct ws_error *err)
{
    size_t i;
    int rc;

    for (i = 0; i < st->nwal; i++) {
        const struct ws_prune_wal *w = &st->wal[i];
        struct ws_status_timeline *t = w->kind == WS_WAL_SEGMENT ? timeline_of(r, w->tli) : NULL;
        r->wal_bytes += w->size;
        if (!t)
            continue;
        t->bytes += w->size;
        if (w->segno == t->last)
            t->newest_mtime = w->mtime;
    }
    for (i = 0; i < st->nchunks; i++)
        r->stream_bytes += st->chunks[i].size;
    for (i = 0; i < r->ntls; i++) {
        struct ws_status_timeline *t = &r->tls[i];
        struct ws_storage_stat sst;
        char name[WS_WAL_NAME_LEN + 1], key[256];
        if (t->newest_mtime > 0)
            continue;
        ws_wal_format_name(name, t->tli, t->last, r->seg_size);
        if (ws_repo_wal_key(repo, name, key, sizeof(key)) != 0)
            continue;
        rc = ws_storage_stat(repo->st, key, &sst, err);
        if (rc == WS_ERR_INTERNAL)
            return rc;
        if (rc == 0)
            t->newest_mtime = sst.mtime;
    }
    return 0;
}

static void backups_summary(const struct ws_catalog *cat, struct ws_status_repo *r)
{
    const struct ws_catalog_backup *latest = ws_catalog_latest(cat);
    size_t i;

    for (i = 0; i < cat->nbackups; i++) {
        const struct ws_catalog_backup *b = &cat->backups[i];
        if ((size_t)b->status < sizeof(r->backups) / sizeof(r->backups[0]))
            r->backups[b->status]++;
        r->backup_bytes += b->stored_objects;
    }
    if (latest) {
        r->has_latest = 1;
        memcpy(r->latest_id, latest->id, sizeof(r->latest_id));
        r->latest_type = latest->m.type;
        r->latest_stop_time = latest->m.stop_time;
    }
}

static void logical_summary(const struct ws_logical_catalog *lc, struct ws_status_repo *r)
{
    const struct ws_logical_entry *latest = ws_logical_catalog_latest(lc);

    for (size_t i = 0; i < lc->n; i++) {
        if (lc->backups[i].status >= 0 && lc->backups[i].status < 3)
            r->logical[lc->backups[i].status]++;
        r->logical_bytes += lc->backups[i].stored_total;
    }
    if (latest) {
        r->has_logical_latest = 1;
        memcpy(r->logical_latest_id, latest->id, sizeof(r->logical_latest_id));
        r->logical_latest_stop_time = latest->m.stop_time;
    }
}

/* What the repository holds: s->repo; a repository that cannot be read is its error. */
static int gather_repo(const struct ws_config *cfg, struct ws_status *s, struct ws_error *err)
{
    struct ws_status_repo *r = &s->repo;
    struct ws_repo repo = {0};
    struct ws_keyring kr = {0};
    struct ws_prune_state st;
    struct ws_logical_catalog lc = {0};
    struct ws_error e = {0};
    int rc;

    memset(&st, 0, sizeof(st));
    if ((rc = ws_keyring_load(cfg, &kr, &e)) == 0 && (rc = ws_repo_open(cfg, &repo, &e)) == 0) {
        snprintf(s->location, sizeof(s->location), "%s", repo.st->location);
        rc = ws_prune_gather_opts(&repo, &kr, &st, 0, &e);
    }
    if (rc == 0 && st.cat.has_identity) {
        r->has_identity = 1;
        r->system_identifier = st.cat.identity.system_identifier;
        r->seg_size = st.cat.identity.wal_segment_size;
        r->latest_tli = st.latest_tli;
        backups_summary(&st.cat, r);
        if ((rc = timelines_from_catalog(&st.cat, r, &e)) == 0 &&
            (rc = sizes_and_times(&repo, &st, r, &e)) == 0)
            rc = ws_status_find_gaps(&st.cat, r, &e);
    }
    if (rc == 0 && (rc = ws_logical_catalog_load(&repo, &kr, &lc, &e)) == 0)
        logical_summary(&lc, r);
    if (rc == WS_ERR_INTERNAL)
        *err = e;
    else if (rc)
        snprintf(r->error, sizeof(r->error), "%s", e.msg);
    ws_logical_catalog_free(&lc);
    ws_prune_state_free(&st);
    ws_repo_close(&repo);
    ws_keyring_wipe(&kr);
    return rc == WS_ERR_INTERNAL ? rc : 0;
}

int ws_status_gather(const struct ws_config *cfg, const struct ws_pg_ops *pg_ops,
                     struct ws_status *s, struct ws_error *err)
{
    int rc;

    memset(s, 0, sizeof(*s));
    s->now = time(NULL);
    snprintf(s->cluster, sizeof(s->cluster), "%s", cfg->cluster);
    snprintf(s->location, sizeof(s->location), "%s", cfg->repo);
    snprintf(s->slot_name, sizeof(s->slot_name), "%s", cfg->slot_name ? cfg->slot_name : "");
    if ((rc = gather_repo(cfg, s, err)) != 0) {
        ws_status_free(s);
        return rc;
    }
    if (pg_ops)
        ws_status_gather_server(cfg, pg_ops, s);
    ws_status_mark_pending(s);
    ws_status_gather_spool(cfg, s);
    return 0;
}

void ws_status_free(struct ws_status *s)
{
    free(s->repo.tls);
    free(s->repo.gaps);
    s->repo.tls = NULL;
    s->repo.gaps = NULL;
    s->repo.ntls = s->repo.ngaps = 0;
}

/* ---- the verdict ---- */

static void reason(struct ws_status_verdict *v, int state, const char *check, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Precedence: CRITICAL > WARNING > UNKNOWN > OK. */
static int rank(int state)
{
    static const int r[] = {0, 2, 3, 1};
    return state >= 0 && state <= 3 ? r[state] : 1;
}

static void reason(struct ws_status_verdict *v, int state, const char *check, const char *fmt, ...)
{
    va_list ap;

    if (rank(state) > rank(v->state))
        v->state = state;
    if (v->n == WS_STATUS_MAX_REASONS) {
        v->dropped++;
        return;
    }
    v->reasons[v->n].state = state;
    v->reasons[v->n].check = check;
    va_start(ap, fmt);
    vsnprintf(v->reasons[v->n].msg, sizeof(v->reasons[v->n].msg), fmt, ap);
    va_end(ap);
    v->n++;
}

static void judge_repo(const struct ws_status *s, const struct ws_status_limits *l,
                       struct ws_status_verdict *v)
{
    const struct ws_status_repo *r = &s->repo;
    const struct ws_status_timeline *t = NULL;
    char a[WS_WAL_NAME_LEN + 1], b[WS_WAL_NAME_LEN + 1];
    size_t i;

    for (i = 0; i < r->ntls; i++)
        if (r->tls[i].tli == r->latest_tli)
            t = &r->tls[i];
    if (l->max_backup_age >= 0 && !r->has_latest)
        reason(v, WS_STATUS_CRITICAL, "backup_age", "no complete backup in the repository");
    else if (l->max_backup_age >= 0 && s->now - r->latest_stop_time > l->max_backup_age)
        reason(v, WS_STATUS_CRITICAL, "backup_age",
               "newest complete backup %s finished %" PRId64 " s ago, more than %" PRId64
               " s (--max-backup-age)",
               r->latest_id, s->now - r->latest_stop_time, l->max_backup_age);
    if (l->max_logical_age >= 0 && !r->has_logical_latest)
        reason(v, WS_STATUS_CRITICAL, "logical_age",
               "no complete logical backup in the repository");
    else if (l->max_logical_age >= 0 && s->now - r->logical_latest_stop_time > l->max_logical_age)
        reason(v, WS_STATUS_CRITICAL, "logical_age",
               "newest complete logical backup %s finished %" PRId64 " s ago, more than %" PRId64
               " s (--max-logical-age)",
               r->logical_latest_id, s->now - r->logical_latest_stop_time, l->max_logical_age);
    if (l->max_wal_age >= 0 && (!t || t->newest_mtime <= 0))
        reason(v, WS_STATUS_CRITICAL, "wal_age", "no archived WAL segment of timeline %" PRIu32,
               r->latest_tli);
    else if (l->max_wal_age >= 0 && s->now - t->newest_mtime > l->max_wal_age)
        reason(v, WS_STATUS_CRITICAL, "wal_age",
               "newest archived WAL segment was stored %" PRId64 " s ago, more than %" PRId64
               " s (--max-wal-age)",
               s->now - t->newest_mtime, l->max_wal_age);
    for (i = 0; i < r->ngaps; i++) {
        const struct ws_status_gap *g = &r->gaps[i];
        if (!g->needed || g->pending)
            continue;
        ws_wal_format_name(a, g->tli, g->first, r->seg_size);
        ws_wal_format_name(b, g->tli, g->last, r->seg_size);
        reason(v, WS_STATUS_CRITICAL, "wal_gap",
               "WAL gap on timeline %" PRIu32 ": %s to %s are missing from the repository", g->tli,
               a, b);
    }
    if (r->backups[WS_BACKUP_INVALID])
        reason(v, WS_STATUS_WARNING, "backup_invalid",
               "%zu backup(s) cannot be read (basebackup list says why)",
               r->backups[WS_BACKUP_INVALID]);
    if (r->logical[WS_LOGICAL_INVALID])
        reason(v, WS_STATUS_WARNING, "backup_invalid",
               "%zu logical backup(s) cannot be read (logicalbackup list says why)",
               r->logical[WS_LOGICAL_INVALID]);
}

static void judge_server(const struct ws_status *s, const struct ws_status_limits *l,
                         struct ws_status_verdict *v)
{
    const struct ws_status_server *sv = &s->server;
    const struct ws_pg_archiver *a = &sv->a;
    int ok = sv->reached && !sv->error[0];

    /* the times are pg_stat_archiver's, to the microsecond: they alone order the attempts */
    if (ok && a->last_failed_us > a->last_archived_us)
        reason(v, WS_STATUS_WARNING, "archiver_failing",
               "the archiver's latest attempt failed (WAL file %s; pg_stat_archiver.failed_count "
               "%" PRId64 ")",
               a->last_failed_wal[0] ? a->last_failed_wal : "?", a->failed_count);
    if (l->max_archive_lag >= 0 && ok && sv->has_lag &&
        sv->lag_segments > (uint64_t)l->max_archive_lag)
        reason(v, WS_STATUS_CRITICAL, "archive_lag",
               "archive lag %" PRIu64 " segments (%" PRIu64
               " bytes), more than %ld (--max-archive-lag)",
               sv->lag_segments, sv->lag_bytes, l->max_archive_lag);
    else if (l->max_archive_lag >= 0 && (!ok || !sv->has_lag))
        reason(v, WS_STATUS_UNKNOWN, "archive_lag", "archive lag unknown: %s",
               !sv->reached     ? "the server was not reached"
               : !ok            ? "the server's archiver could not be read"
               : a->in_recovery ? "the server is in recovery"
                                : "nothing archived since the server's statistics were reset");
    if (ok && a->slot_exists && strcmp(a->slot_wal_status, "lost") == 0)
        reason(v, WS_STATUS_CRITICAL, "slot", "replication slot \"%s\" lost WAL it needed",
               s->slot_name);
    else if (ok && a->slot_exists && strcmp(a->slot_wal_status, "unreserved") == 0)
        reason(v, WS_STATUS_WARNING, "slot",
               "replication slot \"%s\" is about to lose WAL (max_slot_wal_keep_size)",
               s->slot_name);
}

void ws_status_evaluate(const struct ws_status *s, const struct ws_status_limits *l,
                        struct ws_status_verdict *v)
{
    memset(v, 0, sizeof(*v));
    v->state = WS_STATUS_OK;
    if (s->repo.error[0])
        reason(v, WS_STATUS_UNKNOWN, "repository", "the repository could not be read: %s",
               s->repo.error);
    else
        judge_repo(s, l, v);
    judge_server(s, l, v);
}

/* ---- the command ---- */

int ws_status(const struct ws_config *cfg, const struct ws_pg_ops *pg_ops,
              const struct ws_status_opts *o)
{
    struct ws_status s;
    struct ws_status_verdict v;
    struct ws_error err = {0};

    if (ws_status_gather(cfg, pg_ops, &s, &err) != 0) {
        ws_log_error(&err);
        return WS_STATUS_UNKNOWN;
    }
    ws_status_evaluate(&s, &o->limits, &v);
    if (o->prom_path && ws_status_write_prometheus(o->prom_path, &s, &v, &err) != 0) {
        ws_log_error(&err);
        if (rank(WS_STATUS_UNKNOWN) > rank(v.state))
            v.state = WS_STATUS_UNKNOWN;
    }
    if (o->json)
        ws_status_print_json(stdout, &s, &v);
    else
        ws_status_print_text(stdout, &s, &v);
    fflush(stdout);
    ws_status_free(&s);
    return v.state;
}
