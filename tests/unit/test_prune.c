/*
 * Retention (prune.h). First the pure planner, with an injected "now": retain_full, retain_time
 * (the backup just before the window, and the one before that when it straddles the window),
 * both, no policy, pins, ordering by time and LSN rather than by name, timelines (failover, a
 * promoted point-in-time restore of an old backup, numbers versus names), backups that are not
 * complete (running, incomplete, invalid, interrupted deletes, the age limit), WAL gaps, and the
 * rule that the newest complete backup always stays; chains of diff and incr backups (retain_full
 * counting full backups only, the chain of every kept backup kept, pins on chains, links being
 * deleted or invalid, the delete order). Then each step of the planner alone (prune_int.h), on a
 * plan as the steps before it leave it. Then the executor over an in-memory repository,
 * including a failure injected at every single storage call of a prune: after each one no backup
 * is listed complete that misses an object or WAL (nor, for a chain, left while its reference
 * is gone), and the next run finishes. Logical backups: their planner with backdated ids (by count,
 * by time, both, pins, invalid and abandoned ones), and their executor with a failure at every
 * storage call: no logical backup is left complete with an object gone, and the next run
 * finishes.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pg/wal.h"
#include "prune/prune.h"
#include "prune/prune_int.h"
#include "repo/catalog.h"
#include "repo/logical.h"
#include "fixture.h"
#include "unit.h"

#define SEG (16u << 20)
#define SYSID UINT64_C(7311142436245338543)
#define NOW INT64_C(1795342500) /* 2026-11-22T10:15:00Z */
#define MIN 60
#define HOUR 3600
#define DAY 86400

/* ---- planner fixtures ---- */

struct fx {
    struct ws_prune_backup b[32];
    size_t nb;
    struct ws_prune_wal w[600];
    char names[600][48];
    size_t nw;
    struct ws_timeline_switch hsw[8][8];
    struct ws_prune_history hist[8];
    size_t nhist;
    struct ws_prune_input in;
    struct ws_prune_plan plan;
    struct ws_error err;
};

static void fx_init(struct fx *f)
{
    memset(f, 0, sizeof(*f));
    f->in.now = NOW;
    f->in.wal_segment_size = SEG;
    f->in.incomplete_age = 60;
}

/* A backup that started at `start`, ran `dur` seconds, from segment s0 to s1 of timeline tli. */
static size_t add_backup(struct fx *f, enum ws_backup_status status, int64_t start, int64_t dur,
                         uint32_t tli, uint64_t s0, uint64_t s1)
{
    struct ws_prune_backup *b = &f->b[f->nb];

    memset(b, 0, sizeof(*b));
    ws_backup_id_from_time(start, b->id);
    b->status = status;
    b->has_position = status == WS_BACKUP_COMPLETE || status == WS_BACKUP_INCOMPLETE;
    b->start_time = start;
    b->stop_time = start + dur;
    b->start_lsn = s0 * SEG + 0x28;
    b->stop_lsn = s1 * SEG + 0x100;
    b->timeline = tli;
    b->last_write = start + dur;
    b->stored_bytes = 1000;
    return f->nb++;
}

static void add_name(struct fx *f, const char *name, uint64_t size)
{
    struct ws_prune_wal *w = &f->w[f->nw];

    snprintf(f->names[f->nw], sizeof(f->names[0]), "%s", name);
    memset(w, 0, sizeof(*w));
    w->name = f->names[f->nw];
    w->kind = ws_wal_classify(name);
    if (w->kind == WS_WAL_HISTORY)
        w->tli = (uint32_t)strtoul(name, NULL, 16);
    else if (ws_wal_parse_name(name, SEG, &w->tli, &w->segno) != 0)
        unit_fail(__FILE__, __LINE__, name);
    w->size = size;
    f->nw++;
}

static void seg_name(char out[WS_WAL_NAME_LEN + 1], uint32_t tli, uint64_t segno)
{
    ws_wal_format_name(out, tli, segno, SEG);
}

/* Segments s0..s1 (inclusive) of a timeline. */
static void add_segs(struct fx *f, uint32_t tli, uint64_t s0, uint64_t s1)
{
    char n[WS_WAL_NAME_LEN + 1];

    for (uint64_t s = s0; s <= s1; s++) {
        seg_name(n, tli, s);
        add_name(f, n, SEG);
    }
}

/* The history entry of timeline tli (created empty when missing). */
static struct ws_prune_history *hist_entry(struct fx *f, uint32_t tli)
{
    size_t i;

    for (i = 0; i < f->nhist; i++)
        if (f->hist[i].tli == tli)
            return &f->hist[i];
    memset(&f->hist[i], 0, sizeof(f->hist[i]));
    f->hist[i].tli = tli;
    f->hist[i].sw = f->hsw[i];
    f->nhist++;
    return &f->hist[i];
}

/* A line of timeline tli's history file: it left its ancestor `parent` at end_lsn (lines are
 * added oldest first, as PostgreSQL writes them). */
static void hist_line(struct fx *f, uint32_t tli, uint32_t parent, uint64_t end_lsn)
{
    struct ws_prune_history *h = hist_entry(f, tli);
    struct ws_timeline_switch *sw = (struct ws_timeline_switch *)h->sw;

    sw[h->nsw].tli = parent;
    sw[h->nsw].end_lsn = end_lsn;
    h->nsw++;
}

/* Timeline tli's history file is gone from the input (as if not in the repository). */
static void hist_drop(struct fx *f, uint32_t tli)
{
    size_t i;

    for (i = 0; i < f->nhist; i++) {
        if (f->hist[i].tli == tli) {
            f->hist[i].tli = 0xFFFFFFFFu; /* matches no timeline */
            return;
        }
    }
}

static void fx_input(struct fx *f)
{
    f->in.backups = f->b;
    f->in.nbackups = f->nb;
    f->in.wal = f->w;
    f->in.nwal = f->nw;
    f->in.histories = f->hist;
    f->in.nhistories = f->nhist;
}

static int run_plan(struct fx *f)
{
    fx_input(f);
    ws_prune_plan_free(&f->plan);
    return ws_prune_plan_make(&f->in, &f->plan, &f->err);
}

static int wal_goes(const struct fx *f, const char *name)
{
    for (size_t j = 0; j < f->plan.nwal_delete; j++)
        if (strcmp(f->w[f->plan.wal_delete[j]].name, name) == 0)
            return 1;
    return 0;
}

static int seg_goes(const struct fx *f, uint32_t tli, uint64_t segno)
{
    char n[WS_WAL_NAME_LEN + 1];
    seg_name(n, tli, segno);
    return wal_goes(f, n);
}

/* Exactly the segments below `cutoff` go (of those in the fixture), and nothing else. */
static int only_below(const struct fx *f, uint64_t cutoff)
{
    size_t expect = 0;

    for (size_t i = 0; i < f->nw; i++) {
        int goes = wal_goes(f, f->w[i].name);
        int should = f->w[i].kind != WS_WAL_HISTORY && f->w[i].segno < cutoff;
        if (goes != should) {
            fprintf(stderr, "    WAL %s: goes %d, expected %d\n", f->w[i].name, goes, should);
            return 0;
        }
        expect += should;
    }
    return expect == f->plan.nwal_delete;
}

static int has_warning(const struct fx *f, const char *needle)
{
    for (size_t i = 0; i < f->plan.nwarnings; i++)
        if (strstr(f->plan.warnings[i], needle))
            return 1;
    return 0;
}

/* Five daily complete backups (oldest first), 10 segments apart, one hour long. */
static void five_daily(struct fx *f)
{
    for (int k = 4; k >= 0; k--)
        add_backup(f, WS_BACKUP_COMPLETE, NOW - k * DAY - 2 * HOUR, HOUR, 1, 10 + 10 * (4 - k),
                   11 + 10 * (4 - k));
    add_segs(f, 1, 5, 60);
}

/* ---- planner tests ---- */

static void test_no_policy(void)
{
    struct fx f;

    fx_init(&f);
    five_daily(&f);
    CHECK(run_plan(&f) == WS_ERR_CONFIG);
    CHECK(strstr(f.err.msg, "retain_full") && strstr(f.err.msg, "retain_time"));
    CHECK(f.plan.keep == NULL && f.plan.nwal_delete == 0);
    ws_prune_plan_free(&f.plan);
}

static void test_retain_full(void)
{
    struct fx f;
    char n[64], s[WS_WAL_NAME_LEN + 1];

    fx_init(&f);
    five_daily(&f);
    /* a .backup and a .partial beside old and new segments */
    seg_name(s, 1, 12);
    snprintf(n, sizeof(n), "%s.00000028.backup", s);
    add_name(&f, n, 300);
    seg_name(s, 1, 42);
    snprintf(n, sizeof(n), "%s.00000028.backup", s);
    add_name(&f, n, 300);
    seg_name(s, 1, 29);
    snprintf(n, sizeof(n), "%s.partial", s);
    add_name(&f, n, SEG);
    seg_name(s, 1, 30);
    snprintf(n, sizeof(n), "%s.partial", s);
    add_name(&f, n, SEG);
    /* timeline 2 was just created (its history is archived, no segment yet): it left timeline 1
     * at segment 60, so every backup here reaches it */
    add_name(&f, "00000002.history", 40);
    hist_line(&f, 2, 1, 60 * (uint64_t)SEG);

    f.in.retain_full = 2;
    REQUIRE(run_plan(&f) == 0);
    /* b[3] (segment 40) and b[4] (segment 50) stay */
    CHECK(!f.plan.keep[0] && !f.plan.keep[1] && !f.plan.keep[2]);
    CHECK(f.plan.keep[3] && f.plan.keep[4]);
    CHECK(f.plan.why[4] == (WS_KEEP_NEWEST | WS_KEEP_FULL));
    CHECK(f.plan.why[3] == WS_KEEP_FULL);
    CHECK(f.plan.why[0] == WS_DROP_RETENTION);
    CHECK(f.plan.nbackups_delete == 3 && f.plan.backup_bytes == 3000);
    CHECK(f.plan.wal_cutoff == 40 && f.plan.cutoff_backup == 3);
    CHECK(only_below(&f, 40));
    /* .backup and .partial go with their segments; the history file stays */
    seg_name(s, 1, 12);
    snprintf(n, sizeof(n), "%s.00000028.backup", s);
    CHECK(wal_goes(&f, n));
    seg_name(s, 1, 42);
    snprintf(n, sizeof(n), "%s.00000028.backup", s);
    CHECK(!wal_goes(&f, n));
    CHECK(!wal_goes(&f, "00000002.history"));
    /* deletion order: by timeline, then segment number */
    for (size_t j = 1; j < f.plan.nwal_delete; j++) {
        const struct ws_prune_wal *a = &f.w[f.plan.wal_delete[j - 1]],
                                  *b = &f.w[f.plan.wal_delete[j]];
        CHECK(a->tli < b->tli || (a->tli == b->tli && a->segno <= b->segno));
    }
    CHECK(f.plan.nwarnings == 0);

    /* more than there are: everything stays, WAL from the oldest backup's start */
    f.in.retain_full = 9;
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.nbackups_delete == 0 && f.plan.wal_cutoff == 10 && only_below(&f, 10));
    /* retain_full = 1: only the newest */
    f.in.retain_full = 1;
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.nbackups_delete == 4 && f.plan.keep[4] && only_below(&f, 50));
    ws_prune_plan_free(&f.plan);
}

static void test_order_by_time_and_lsn(void)
{
    struct fx f;
    size_t a, b, c;

    fx_init(&f);
    /* same start second, told apart by LSN: b is newer although its id is the same text */
    a = add_backup(&f, WS_BACKUP_COMPLETE, NOW - DAY, 60, 1, 20, 21);
    b = add_backup(&f, WS_BACKUP_COMPLETE, NOW - DAY, 60, 1, 30, 31);
    memcpy(f.b[b].id, "20260101T000000Z", WS_BACKUP_ID_LEN + 1); /* its name sorts first */
    /* a manifest whose start time is older than its id says: its time decides */
    c = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 3 * DAY, 60, 1, 10, 11);
    memcpy(f.b[c].id, "20991231T235959Z", WS_BACKUP_ID_LEN + 1); /* sorts last by name */
    add_segs(&f, 1, 10, 40);
    f.in.retain_full = 1;
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.keep[b] && !f.plan.keep[a] && !f.plan.keep[c]);
    CHECK(f.plan.order[0] == c && f.plan.order[1] == a && f.plan.order[2] == b);
    CHECK(f.plan.wal_cutoff == 30);
    f.in.retain_full = 2;
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.keep[a] && f.plan.keep[b] && !f.plan.keep[c] && f.plan.wal_cutoff == 20);
    ws_prune_plan_free(&f.plan);
}

static void test_retain_time(void)
{
    struct fx f;
    size_t i;

    fx_init(&f);
    /* daily backups (k = 9..0 days ago, index 9 - k), from 2 h to 1 h before that moment */
    for (int k = 9; k >= 0; k--)
        add_backup(&f, WS_BACKUP_COMPLETE, NOW - k * DAY - 2 * HOUR, HOUR, 1, 100 - 10 * k,
                   101 - 10 * k);
    add_segs(&f, 1, 5, 105);
    /* the window opens at NOW - 3d - 30min: the backups of k = 0..2 ended inside it; k = 3
     * (ended NOW - 3d - 1h) is the newest that ended before it opened */
    f.in.retain_time = 3 * DAY + 30 * MIN;
    REQUIRE(run_plan(&f) == 0);
    for (i = 0; i < 10; i++) {
        int k = 9 - (int)i;
        CHECK(f.plan.keep[i] == (k <= 3));
    }
    CHECK(f.plan.why[6] == WS_KEEP_WINDOW_BASE); /* k = 3 */
    CHECK(f.plan.why[7] == WS_KEEP_WINDOW);      /* k = 2 */
    CHECK(f.plan.why[5] == WS_DROP_RETENTION);   /* k = 4 */
    CHECK(f.plan.wal_cutoff == 70 && f.plan.cutoff_backup == 6 && only_below(&f, 70));

    /* the window opens (NOW - 3d - 90 min) while the k = 3 backup runs: it ended inside the
     * window, but a restore to the window's first moment needs the one before it (k = 4) */
    f.in.retain_time = 3 * DAY + 90 * MIN;
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.why[6] == WS_KEEP_WINDOW && f.plan.why[5] == WS_KEEP_WINDOW_BASE);
    CHECK(!f.plan.keep[4] && f.plan.wal_cutoff == 60);

    /* finding 8: the window opens exactly when the k = 3 backup ended: a restore to that moment
     * cannot start from it (it needs stop_time + 1 <= target), so k = 4 is the base */
    f.in.retain_time = 3 * DAY + HOUR;
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.keep[6] && (f.plan.why[6] & WS_KEEP_WINDOW));
    CHECK(f.plan.keep[5] && (f.plan.why[5] & WS_KEEP_WINDOW_BASE) && !f.plan.keep[4]);
    CHECK(f.plan.wal_cutoff == 60);
    /* a second earlier it is the base itself */
    f.in.retain_time = 3 * DAY + HOUR - 1;
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.why[6] == WS_KEEP_WINDOW_BASE && !f.plan.keep[5]);

    /* a window shorter than the time since the newest backup: it alone stays */
    f.in.retain_time = 10 * MIN;
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.nbackups_delete == 9 && f.plan.keep[9]);
    CHECK(f.plan.why[9] == (WS_KEEP_NEWEST | WS_KEEP_WINDOW_BASE));
    CHECK(f.plan.wal_cutoff == 100);
    ws_prune_plan_free(&f.plan);
}

static void test_both_union(void)
{
    struct fx f;

    fx_init(&f);
    for (int k = 9; k >= 0; k--)
        add_backup(&f, WS_BACKUP_COMPLETE, NOW - k * DAY - 2 * HOUR, HOUR, 1, 100 - 10 * k,
                   101 - 10 * k);
    add_segs(&f, 1, 10, 105);
    /* retain_full keeps 4 (k = 0..3); retain_time 1d keeps k = 0, 1 (base) */
    f.in.retain_full = 4;
    f.in.retain_time = DAY;
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.nbackups_delete == 6 && f.plan.keep[6] && !f.plan.keep[5]);
    CHECK(f.plan.why[8] == (WS_KEEP_FULL | WS_KEEP_WINDOW_BASE));
    /* retain_time reaches further than retain_full: k = 0..6 */
    f.in.retain_full = 2;
    f.in.retain_time = 6 * DAY - HOUR;
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.nbackups_delete == 3 && f.plan.keep[3] && !f.plan.keep[2]);
    CHECK(f.plan.wal_cutoff == 40 && only_below(&f, 40));
    ws_prune_plan_free(&f.plan);
}

static void test_newest_complete_never_deleted(void)
{
    struct fx f;
    size_t old, newest, inc, run;

    fx_init(&f);
    old = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 30 * DAY, HOUR, 1, 10, 11);
    newest = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 20 * DAY, HOUR, 1, 20, 21);
    /* newer backups that are not complete do not count */
    inc = add_backup(&f, WS_BACKUP_INCOMPLETE, NOW - 2 * DAY, HOUR, 1, 30, 31);
    run = add_backup(&f, WS_BACKUP_RUNNING, NOW - 2 * HOUR, HOUR, 0, 0, 0);
    add_segs(&f, 1, 10, 29);
    /* a one-minute window in which nothing ended */
    f.in.retain_time = MIN;
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.keep[newest] && (f.plan.why[newest] & WS_KEEP_NEWEST));
    CHECK(!f.plan.keep[old]);
    CHECK(f.plan.keep[inc] && f.plan.why[inc] == WS_KEEP_PENDING); /* 2 days, but newest */
    CHECK(f.plan.keep[run] && f.plan.why[run] == WS_KEEP_YOUNG);
    /* the running backup's position is unknown: WAL is kept from the lowest start known (old's,
     * although old goes now; the next run releases it), never from a guessed position */
    CHECK(f.plan.wal_cutoff == 10 && f.plan.cutoff_backup == (long)old);
    CHECK(has_warning(&f, f.b[inc].id));
    /* the same with retain_full = 1 */
    f.in.retain_time = 0;
    f.in.retain_full = 1;
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.keep[newest] && !f.plan.keep[old]);
    ws_prune_plan_free(&f.plan);
}

static void test_pins(void)
{
    struct fx f;

    fx_init(&f);
    five_daily(&f);
    f.b[0].pinned = 1; /* the oldest */
    f.in.retain_full = 2;
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.keep[0] && f.plan.why[0] == WS_KEEP_PINNED);
    CHECK(!f.plan.keep[1] && !f.plan.keep[2] && f.plan.keep[3] && f.plan.keep[4]);
    /* the pin holds the WAL from its start */
    CHECK(f.plan.wal_cutoff == 10 && f.plan.cutoff_backup == 0 && only_below(&f, 10));
    /* a pin among the newest: counted by retain_full as any complete backup */
    f.b[0].pinned = 0;
    f.b[4].pinned = 1;
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.why[4] == (WS_KEEP_PINNED | WS_KEEP_NEWEST | WS_KEEP_FULL));
    CHECK(f.plan.keep[3] && !f.plan.keep[2]);
    /* a pinned backup that lost WAL (incomplete) or was half deleted stays */
    f.b[4].pinned = 0;
    f.b[1].pinned = 1;
    f.b[1].status = WS_BACKUP_INCOMPLETE;
    f.b[2].pinned = 1;
    f.b[2].status = WS_BACKUP_DELETING;
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.keep[1] && f.plan.why[1] == WS_KEEP_PINNED);
    CHECK(f.plan.keep[2] && f.plan.why[2] == WS_KEEP_PINNED);
    CHECK(!f.plan.keep[0] && f.plan.wal_cutoff == 20);
    ws_prune_plan_free(&f.plan);
}

static void test_timelines_failover(void)
{
    struct fx f;
    char n[64], s[WS_WAL_NAME_LEN + 1];

    fx_init(&f);
    /* timeline 1: segments 10..30, promoted at 30 (30.partial on 1), timeline 2 from 30 on */
    add_backup(&f, WS_BACKUP_COMPLETE, NOW - 3 * DAY, HOUR, 1, 10, 11);
    add_backup(&f, WS_BACKUP_COMPLETE, NOW - 2 * DAY, HOUR, 1, 20, 21);
    add_segs(&f, 1, 5, 29);
    seg_name(s, 1, 30);
    snprintf(n, sizeof(n), "%s.partial", s);
    add_name(&f, n, SEG);
    add_segs(&f, 2, 30, 40);
    /* lower segment numbers on the higher timeline (a name sorts them after every segment of
     * timeline 1) */
    add_segs(&f, 2, 3, 4);
    add_name(&f, "00000002.history", 40);
    hist_line(&f, 2, 1, 30 * (uint64_t)SEG + 0x5000);
    f.in.retain_full = 1;
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.latest_tli == 2);
    CHECK(!f.plan.keep[0] && f.plan.keep[1] && f.plan.why[1] == (WS_KEEP_NEWEST | WS_KEEP_FULL));
    CHECK(f.plan.wal_cutoff == 20 && only_below(&f, 20));
    CHECK(seg_goes(&f, 2, 3) && seg_goes(&f, 1, 19) && !seg_goes(&f, 1, 20));
    CHECK(!wal_goes(&f, n) && !seg_goes(&f, 2, 30));
    CHECK(f.plan.nwarnings == 0);
    ws_prune_plan_free(&f.plan);
}

static void test_timelines_promoted_restore(void)
{
    struct fx f;
    size_t b1, b2;

    fx_init(&f);
    /* b1 on timeline 1 at segment 10; timeline 2 left timeline 1 at segment 80 and b2 was taken
     * on it at 100; then b1 was restored to segment 50 and promoted: timeline 3 (history: left
     * timeline 1 at segment 50) is the production server now */
    b1 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 10 * DAY, HOUR, 1, 10, 11);
    b2 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 3 * DAY, HOUR, 2, 100, 101);
    add_segs(&f, 1, 5, 80); /* 5..9: older than every backup */
    add_segs(&f, 2, 80, 110);
    add_segs(&f, 3, 50, 60);
    add_name(&f, "00000002.history", 40);
    add_name(&f, "00000003.history", 80);
    hist_line(&f, 2, 1, 80 * (uint64_t)SEG);
    hist_line(&f, 3, 1, 50 * (uint64_t)SEG + 0x100);
    f.in.retain_full = 1;
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.latest_tli == 3 && f.plan.hold == 0 && f.plan.hold_msg == NULL);
    CHECK(f.plan.keep[b2] && f.plan.keep[b1] && f.plan.why[b1] == WS_KEEP_TIMELINE);
    CHECK(f.plan.wal_cutoff == 10 && only_below(&f, 10));
    CHECK(!seg_goes(&f, 3, 55));
    /* b2 (segment 100) is newer than b1 (segment 10) by time and by WAL on timeline 2's line;
     * b2 and a later backup on timeline 3 at a lower LSN are on lines that forked apart */
    CHECK(f.plan.nwarnings == 0);

    /* without timeline 3's history it is unknown which backups reach it (finding 1): fail
     * closed. b1, the only one that does, is held, none of timeline 3's WAL goes, and the
     * plan says why in one message; WAL of known lines below every backup still goes */
    hist_drop(&f, 3);
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.hold == WS_HOLD_LINEAGE && f.plan.hold_msg != NULL);
    CHECK(f.plan.keep[b1] && f.plan.keep[b2] && f.plan.nbackups_delete == 0);
    CHECK(f.plan.why[b1] == WS_KEEP_HELD);
    CHECK(!seg_goes(&f, 3, 50) && !seg_goes(&f, 3, 55) && !seg_goes(&f, 3, 60));
    CHECK(only_below(&f, 10));
    CHECK(f.plan.ntls == 3 && f.plan.tls[2].tli == 3 && f.plan.tls[2].rule == WS_TL_UNKNOWN);
    CHECK(f.plan.tls[0].rule == WS_TL_REACHED && f.plan.tls[0].cutoff == 10);
    CHECK(strstr(f.plan.hold_msg, "00000003.history: not in the repository") &&
          strstr(f.plan.hold_msg, "wal-push") && strstr(f.plan.hold_msg, "timeline 3"));
    CHECK(f.plan.nwarnings == 0); /* the hold message alone */
    {
        char t[1024];
        ws_prune_why_text(&f.in, &f.plan, b1, f.plan.why[b1], t, sizeof(t));
        CHECK(strstr(t, "history cannot be read") != NULL);
    }
    /* the same when it is there but cannot be read */
    hist_entry(&f, 3)->problem = "invalid data in history file 00000003.history, line 2";
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.hold == WS_HOLD_LINEAGE && f.plan.keep[b1] && f.plan.nbackups_delete == 0);
    CHECK(strstr(f.plan.hold_msg, "line 2") && !seg_goes(&f, 3, 50));
    /* an unreadable history of timeline 2 (b2 on it, WAL on it) holds as well */
    hist_entry(&f, 3)->problem = NULL;
    hist_entry(&f, 3)->nsw = 0;
    hist_line(&f, 3, 1, 50 * (uint64_t)SEG + 0x100);
    hist_entry(&f, 2)->problem = "no key with id 0123456789abcdef";
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.hold == WS_HOLD_LINEAGE && strstr(f.plan.hold_msg, "00000002.history"));
    CHECK(!seg_goes(&f, 2, 80) && only_below(&f, 10));
    hist_entry(&f, 2)->problem = NULL;

    /* a backup that ended after timeline 1 was left at segment 50 cannot follow timeline 3:
     * nothing kept reaches timeline 3, and none of its WAL goes */
    f.b[b1].stop_lsn = 51 * (uint64_t)SEG;
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.hold == 0);
    CHECK(!f.plan.keep[b1] && has_warning(&f, "timeline 3") && has_warning(&f, "none of its WAL"));
    CHECK(!seg_goes(&f, 3, 50) && !seg_goes(&f, 3, 60) && f.plan.tls[2].rule == WS_TL_UNREACHED);
    /* timeline 1 is an ancestor of b2's: its WAL goes below b2's start, as before */
    CHECK(f.plan.tls[0].rule == WS_TL_ANCESTOR && seg_goes(&f, 1, 80));
    ws_prune_plan_free(&f.plan);
}

/* Finding 2: a stray promoted copy (timeline 2, forked from timeline 1 at segment 6, before
 * every backup) keeps archiving; no kept backup reaches it, and it is no ancestor of a kept
 * backup's timeline: none of its WAL goes, although its segment numbers are below the cutoff. */
static void test_stray_timeline(void)
{
    struct fx f;

    fx_init(&f);
    add_backup(&f, WS_BACKUP_COMPLETE, NOW - 3 * DAY, HOUR, 1, 10, 11);
    add_backup(&f, WS_BACKUP_COMPLETE, NOW - 2 * DAY, HOUR, 1, 20, 21);
    add_backup(&f, WS_BACKUP_COMPLETE, NOW - 1 * DAY, HOUR, 1, 30, 31);
    add_segs(&f, 1, 5, 40);
    add_segs(&f, 2, 6, 25);
    add_name(&f, "00000002.history", 40);
    hist_line(&f, 2, 1, 6 * (uint64_t)SEG + 0x100);
    f.in.retain_full = 2;
    REQUIRE(run_plan(&f) == 0);
    CHECK(!f.plan.keep[0] && f.plan.keep[1] && f.plan.keep[2]);
    CHECK(seg_goes(&f, 1, 19) && !seg_goes(&f, 1, 20));
    for (uint64_t s = 6; s <= 25; s++)
        CHECK(!seg_goes(&f, 2, s));
    CHECK(f.plan.hold == 0 && f.plan.ntls == 2);
    CHECK(f.plan.tls[0].rule == WS_TL_REACHED && f.plan.tls[0].cutoff == 20);
    CHECK(f.plan.tls[1].rule == WS_TL_UNREACHED && f.plan.tls[1].cutoff == 0);
    /* it is the latest timeline: one warning says no backup reaches it and its WAL stays */
    CHECK(has_warning(&f, "timeline 2, the latest") && has_warning(&f, "none of its WAL"));
    CHECK(f.plan.nwarnings == 1);

    /* production fails over to timeline 3 (left timeline 1 at segment 35): the stray is no
     * longer the latest, and still none of it goes */
    add_segs(&f, 3, 35, 45);
    add_name(&f, "00000003.history", 40);
    hist_line(&f, 3, 1, 35 * (uint64_t)SEG + 0x100);
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.latest_tli == 3 && f.plan.hold == 0);
    CHECK(!f.plan.keep[0] && f.plan.keep[1] && f.plan.keep[2]);
    CHECK(!seg_goes(&f, 2, 6) && !seg_goes(&f, 2, 19) && seg_goes(&f, 1, 19));
    CHECK(f.plan.tls[2].rule == WS_TL_REACHED && f.plan.tls[2].cutoff == 20);
    CHECK(has_warning(&f, "timeline 2: no kept backup restores along it"));
    ws_prune_plan_free(&f.plan);
}

/* Finding 2: a kept backup whose position is unknown (its manifest cannot be read) must not
 * be given a guessed position: it was taken on timeline 2 at segment 35, but its id (a wrong
 * clock) puts it after the backup of segment 40. The WAL of every timeline is kept from the
 * lowest start that is known. */
static void test_unknown_position_kept(void)
{
    struct fx f;
    size_t inv;

    fx_init(&f);
    add_backup(&f, WS_BACKUP_COMPLETE, NOW - 5 * DAY, HOUR, 1, 10, 11);
    add_backup(&f, WS_BACKUP_COMPLETE, NOW - 3 * DAY, HOUR, 2, 40, 41);
    inv = add_backup(&f, WS_BACKUP_INVALID, NOW - 2 * DAY, HOUR, 0, 0, 0);
    add_backup(&f, WS_BACKUP_COMPLETE, NOW - 1 * DAY, HOUR, 2, 60, 61);
    add_segs(&f, 1, 5, 29);
    add_segs(&f, 2, 30, 70);
    add_name(&f, "00000002.history", 40);
    hist_line(&f, 2, 1, 30 * (uint64_t)SEG + 0x100);
    f.in.retain_full = 1;
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.keep[inv] && f.plan.keep[3] && !f.plan.keep[0] && !f.plan.keep[1]);
    /* nothing of timeline 2 goes (all of it is from segment 30 on); timeline 1 below 10 */
    for (uint64_t s = 30; s <= 70; s++)
        CHECK(!seg_goes(&f, 2, s));
    CHECK(seg_goes(&f, 1, 9) && !seg_goes(&f, 1, 10));
    CHECK(f.plan.wal_cutoff == 10 && f.plan.cutoff_backup == 0);
    CHECK(f.plan.tls[0].rule == WS_TL_ANCESTOR && f.plan.tls[0].cutoff == 10);
    CHECK(f.plan.tls[1].rule == WS_TL_REACHED && f.plan.tls[1].cutoff == 10);
    CHECK(has_warning(&f, "oldest start known"));
    /* without it, timeline 2 keeps WAL from the kept backup's start only */
    f.b[inv].status = WS_BACKUP_RUNNING;
    f.b[inv].last_write = NOW - 3 * DAY;
    REQUIRE(run_plan(&f) == 0);
    CHECK(!f.plan.keep[inv] && f.plan.tls[1].cutoff == 60 && seg_goes(&f, 2, 59));
    CHECK(!seg_goes(&f, 2, 60) && f.plan.tls[0].cutoff == 60 && seg_goes(&f, 1, 29));
    ws_prune_plan_free(&f.plan);
}

/* Finding 3: retain_time after a promoted restore. b1 (timeline 1) was restored and promoted:
 * timeline 3 left timeline 1 at segment 50. The newest backup that ended before the window
 * opened is b2 on timeline 2, the abandoned line; a restore to the window's first moments along
 * timeline 3 needs b1. */
static void test_retain_time_timelines(void)
{
    struct fx f;
    size_t b1, b2, b3;

    fx_init(&f);
    b1 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 10 * DAY, HOUR, 1, 10, 11);
    b2 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 3 * DAY, HOUR, 2, 100, 101);
    b3 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 1 * DAY, HOUR, 3, 70, 71);
    add_segs(&f, 1, 10, 80);
    add_segs(&f, 2, 80, 110);
    add_segs(&f, 3, 50, 75);
    add_name(&f, "00000002.history", 40);
    add_name(&f, "00000003.history", 40);
    hist_line(&f, 2, 1, 80 * (uint64_t)SEG);
    hist_line(&f, 3, 1, 50 * (uint64_t)SEG + 0x100);
    f.in.retain_time = 2 * DAY;
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.keep[b3] && f.plan.keep[b2] && f.plan.keep[b1]);
    CHECK(!seg_goes(&f, 1, 10) && !seg_goes(&f, 3, 50));
    CHECK(f.plan.why[b3] == (WS_KEEP_NEWEST | WS_KEEP_WINDOW));
    CHECK(f.plan.why[b2] == WS_KEEP_WINDOW_BASE && f.plan.why[b1] == WS_KEEP_WINDOW_TL);
    CHECK(f.plan.hold == 0 && f.plan.nwal_delete == 0);
    {
        char t[1024];
        ws_prune_why_text(&f.in, &f.plan, 0, WS_KEEP_WINDOW_TL, t, sizeof(t));
        CHECK(strstr(t, "timeline 3, the latest") && strstr(t, "2d"));
    }
    /* the newest backup before the window (by time) reaches timeline 3 itself: no other one */
    f.b[b2].timeline = 3;
    f.b[b2].start_lsn = 60 * (uint64_t)SEG;
    f.b[b2].stop_lsn = 61 * (uint64_t)SEG;
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.keep[b2] && !f.plan.keep[b1] && f.plan.why[b2] == WS_KEEP_WINDOW_BASE);
    ws_prune_plan_free(&f.plan);
}

/* Finding 4: a backup whose clock was wrong (stamped 2000-01-01) has the highest start LSN on
 * the timeline: time order and WAL order disagree, so no backup is deleted. Backups on lines
 * that forked apart are not compared. */
static void test_clock_disagreement(void)
{
    struct fx f;
    size_t bad;

    fx_init(&f);
    add_backup(&f, WS_BACKUP_COMPLETE, NOW - 3 * DAY, HOUR, 1, 10, 11);
    add_backup(&f, WS_BACKUP_COMPLETE, NOW - 2 * DAY, HOUR, 1, 20, 21);
    bad = add_backup(&f, WS_BACKUP_COMPLETE, INT64_C(946684800), HOUR, 1, 30, 31);
    add_segs(&f, 1, 5, 40);
    f.in.retain_full = 2;
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.keep[bad] && f.plan.nbackups_delete == 0);
    CHECK(!seg_goes(&f, 1, 10) && seg_goes(&f, 1, 9));
    CHECK(f.plan.hold == WS_HOLD_ORDER && f.plan.why[bad] == WS_KEEP_HELD);
    CHECK(strstr(f.plan.hold_msg, f.b[bad].id) && strstr(f.plan.hold_msg, f.b[0].id) &&
          strstr(f.plan.hold_msg, "clock"));
    /* an incomplete backup that would go as abandoned is held too ("newer than every complete
     * backup" depends on the order) */
    {
        size_t inc = add_backup(&f, WS_BACKUP_INCOMPLETE, NOW - 4 * DAY, HOUR, 1, 8, 9);
        REQUIRE(run_plan(&f) == 0);
        CHECK(f.plan.keep[inc] && f.plan.why[inc] == WS_KEEP_HELD && f.plan.nbackups_delete == 0);
        f.nb--;
    }
    /* a correct clock: no hold, the oldest goes */
    f.b[bad].start_time = NOW - 1 * DAY;
    f.b[bad].stop_time = NOW - 1 * DAY + HOUR;
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.hold == 0 && f.plan.hold_msg == NULL && !f.plan.keep[0] && f.plan.keep[bad]);
    ws_prune_plan_free(&f.plan);

    /* lines that forked apart are not compared: after timeline 3 left timeline 1 at segment 50,
     * a backup on it (segment 60) is newer than one at segment 100 on timeline 2 (which left
     * timeline 1 at 80) */
    fx_init(&f);
    add_backup(&f, WS_BACKUP_COMPLETE, NOW - 10 * DAY, HOUR, 1, 10, 11);
    add_backup(&f, WS_BACKUP_COMPLETE, NOW - 3 * DAY, HOUR, 2, 100, 101);
    add_backup(&f, WS_BACKUP_COMPLETE, NOW - 1 * DAY, HOUR, 3, 60, 61);
    add_segs(&f, 1, 10, 80);
    add_segs(&f, 2, 80, 110);
    add_segs(&f, 3, 50, 65);
    hist_line(&f, 2, 1, 80 * (uint64_t)SEG);
    hist_line(&f, 3, 1, 50 * (uint64_t)SEG + 0x100);
    f.in.retain_full = 2;
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.hold == 0 && !f.plan.keep[0] && f.plan.keep[1] && f.plan.keep[2]);
    /* but on one line they are: a backup on timeline 1 at segment 40 (before timeline 3 left
     * it at 50) stamped after the one at segment 60 of timeline 3 */
    add_backup(&f, WS_BACKUP_COMPLETE, NOW - 1 * DAY + MIN, HOUR, 1, 40, 41);
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.hold == WS_HOLD_ORDER && f.plan.nbackups_delete == 0);
    ws_prune_plan_free(&f.plan);
}

static void test_incomplete_backups(void)
{
    struct fx f;
    size_t oldc, run_old, run_young, inc_old, inc_young, inv, del, newc, run_30h;

    fx_init(&f);
    oldc = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 10 * DAY, HOUR, 1, 10, 11);
    run_old = add_backup(&f, WS_BACKUP_RUNNING, NOW - 9 * DAY, HOUR, 0, 0, 0);
    inc_old = add_backup(&f, WS_BACKUP_INCOMPLETE, NOW - 8 * DAY, HOUR, 1, 20, 21);
    inv = add_backup(&f, WS_BACKUP_INVALID, NOW - 7 * DAY, HOUR, 0, 0, 0);
    f.b[inv].problem = "manifest main/backup/x/manifest: no key with id 0123456789abcdef";
    del = add_backup(&f, WS_BACKUP_DELETING, NOW - 6 * DAY, HOUR, 1, 30, 31);
    newc = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 5 * DAY, HOUR, 1, 40, 41);
    /* younger than a day: may still be running */
    run_young = add_backup(&f, WS_BACKUP_RUNNING, NOW - 2 * DAY, HOUR, 0, 0, 0);
    f.b[run_young].last_write = NOW - 23 * HOUR;
    inc_young = add_backup(&f, WS_BACKUP_INCOMPLETE, NOW - 20 * HOUR, HOUR, 1, 60, 61);
    run_30h = add_backup(&f, WS_BACKUP_RUNNING, NOW - 30 * HOUR, MIN, 0, 0, 0);
    add_segs(&f, 1, 5, 70);
    f.in.retain_full = 1;
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.why[oldc] == WS_DROP_RETENTION);
    CHECK(f.plan.why[run_old] == WS_DROP_ABANDONED);
    CHECK(f.plan.why[inc_old] == WS_DROP_ABANDONED); /* a newer complete backup exists */
    CHECK(f.plan.why[inv] == WS_KEEP_UNREADABLE && has_warning(&f, "no key with id"));
    CHECK(f.plan.why[del] == WS_DROP_DELETING);
    CHECK(f.plan.why[newc] == (WS_KEEP_NEWEST | WS_KEEP_FULL));
    CHECK(f.plan.why[run_young] == WS_KEEP_YOUNG);
    CHECK(f.plan.why[inc_young] == WS_KEEP_YOUNG);
    CHECK(f.plan.why[run_30h] == WS_DROP_ABANDONED);
    /* the invalid backup (position unknown) holds WAL from the lowest start known of any
     * backup (oldc, segment 10, deleted in this run), not from a guess of its position */
    CHECK(f.plan.wal_cutoff == 10 && only_below(&f, 10) && f.plan.cutoff_backup == (long)oldc);

    /* the age is never below a day, even with a short timeout, and follows a longer one */
    f.in.incomplete_age = 36 * HOUR;
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.why[run_30h] == WS_KEEP_YOUNG);
    f.in.incomplete_age = 0;
    f.b[inv].status = WS_BACKUP_RUNNING; /* now an old running backup */
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.why[inv] == WS_DROP_ABANDONED);
    /* the young running backup (position unknown) still holds WAL from the lowest start known */
    CHECK(f.plan.wal_cutoff == 10 && only_below(&f, 10));
    /* once it is abandoned too, the cutoff is newc's start */
    f.b[run_young].last_write = NOW - 25 * HOUR;
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.why[run_young] == WS_DROP_ABANDONED);
    CHECK(f.plan.wal_cutoff == 40 && only_below(&f, 40) && f.plan.cutoff_backup == (long)newc);
    ws_prune_plan_free(&f.plan);
}

static void test_running_before_newest(void)
{
    struct fx f;
    size_t run;

    fx_init(&f);
    add_backup(&f, WS_BACKUP_COMPLETE, NOW - 3 * DAY, HOUR, 1, 10, 11);
    add_backup(&f, WS_BACKUP_COMPLETE, NOW - 2 * DAY, HOUR, 1, 20, 21);
    /* a long backup that started before the newest complete one and is still writing */
    run = add_backup(&f, WS_BACKUP_RUNNING, NOW - 2 * DAY - HOUR, HOUR, 0, 0, 0);
    f.b[run].last_write = NOW - MIN;
    add_backup(&f, WS_BACKUP_COMPLETE, NOW - DAY, HOUR, 1, 30, 31);
    add_segs(&f, 1, 10, 40);
    f.in.retain_full = 1;
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.keep[run] && f.plan.nbackups_delete == 2);
    /* it started after the backup of segment 10 (and before that of 20): its WAL may begin
     * anywhere from 10 on */
    CHECK(f.plan.wal_cutoff == 10 && f.plan.nwal_delete == 0);
    /* no backup with a position before it: no WAL goes at all */
    f.b[run].id[0] = '1'; /* 1026: before everything */
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.wal_cutoff == 0 && f.plan.nwal_delete == 0);
    ws_prune_plan_free(&f.plan);
}

static void test_no_complete_backup(void)
{
    struct fx f;
    size_t old;

    fx_init(&f);
    old = add_backup(&f, WS_BACKUP_RUNNING, NOW - 9 * DAY, HOUR, 0, 0, 0);
    add_backup(&f, WS_BACKUP_INCOMPLETE, NOW - 8 * DAY, HOUR, 1, 20, 21);
    add_segs(&f, 1, 5, 30);
    f.in.retain_full = 3;
    REQUIRE(run_plan(&f) == 0);
    CHECK(!f.plan.keep[old] && f.plan.keep[1] && f.plan.why[1] == WS_KEEP_PENDING);
    CHECK(f.plan.wal_cutoff == 0 && f.plan.nwal_delete == 0);
    CHECK(has_warning(&f, "no complete backup"));
    /* an empty repository */
    ws_prune_plan_free(&f.plan);
    fx_init(&f);
    f.in.retain_time = DAY;
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.nbackups_delete == 0 && f.plan.nwal_delete == 0 && f.plan.nwarnings == 0);
    ws_prune_plan_free(&f.plan);
}

static void test_wal_gaps(void)
{
    struct fx f;
    char a[WS_WAL_NAME_LEN + 1];
    size_t inc;

    fx_init(&f);
    add_backup(&f, WS_BACKUP_COMPLETE, NOW - 3 * DAY, HOUR, 1, 10, 11);
    add_backup(&f, WS_BACKUP_COMPLETE, NOW - 2 * DAY, HOUR, 1, 20, 21);
    /* the newest lost its WAL (the catalog calls it incomplete): not one of the newest complete
     * backups; 30 h old, it is kept only because it is newer than every complete one */
    inc = add_backup(&f, WS_BACKUP_INCOMPLETE, NOW - 30 * HOUR, HOUR, 1, 30, 31);
    add_segs(&f, 1, 5, 14);
    add_segs(&f, 1, 18, 29); /* 15..17 missing: before the cutoff */
    add_segs(&f, 1, 33, 40); /* 30..32 missing: after it */
    f.in.retain_full = 1;
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.keep[1] && !f.plan.keep[0] && f.plan.why[inc] == WS_KEEP_PENDING);
    CHECK(f.plan.wal_cutoff == 20 && only_below(&f, 20));
    seg_name(a, 1, 30);
    CHECK(has_warning(&f, a) && has_warning(&f, "gap"));
    seg_name(a, 1, 15);
    CHECK(!has_warning(&f, a)); /* that gap goes with the WAL before it */
    /* with both kept, the older gap is reported too */
    f.in.retain_full = 2;
    REQUIRE(run_plan(&f) == 0);
    CHECK(has_warning(&f, a) && f.plan.wal_cutoff == 10);
    ws_prune_plan_free(&f.plan);
}

static void test_why_text(void)
{
    struct fx f;
    char t[1024];

    fx_init(&f);
    five_daily(&f);
    f.in.retain_full = 2;
    f.in.retain_time = 30 * DAY;
    REQUIRE(run_plan(&f) == 0);
    ws_prune_why_text(&f.in, &f.plan, 0, WS_DROP_RETENTION, t, sizeof(t));
    CHECK(strstr(t, "older than the 2 newest") && strstr(t, "30d"));
    ws_prune_why_text(&f.in, &f.plan, 0, WS_KEEP_PINNED | WS_KEEP_NEWEST, t, sizeof(t));
    CHECK(strncmp(t, "pinned", 6) == 0 && strstr(t, "; the newest complete backup"));
    ws_prune_why_text(&f.in, &f.plan, 0, WS_DROP_ABANDONED, t, sizeof(t));
    CHECK(strstr(t, "1d") != NULL);
    CHECK(strcmp(ws_prune_why_name(WS_KEEP_FULL), "retain_full") == 0);
    CHECK(strcmp(ws_backup_status_name(WS_BACKUP_DELETING), "deleting") == 0);
    /* sizes as the report prints them (base/util.h) */
    ws_format_bytes(0, t, sizeof(t));
    CHECK(strcmp(t, "0 B") == 0);
    ws_format_bytes(1023, t, sizeof(t));
    CHECK(strcmp(t, "1023 B") == 0);
    ws_format_bytes(1536, t, sizeof(t));
    CHECK(strcmp(t, "1.5 kB") == 0);
    ws_format_bytes(UINT64_C(3) << 40, t, sizeof(t));
    CHECK(strcmp(t, "3.0 TB") == 0);
    ws_format_bytes(UINT64_MAX, t, sizeof(t));
    CHECK(strcmp(t, "16384.0 PB") == 0);
    /* a tiny buffer is cut, not overrun */
    ws_prune_why_text(&f.in, &f.plan, 0, WS_PRUNE_KEEP_MASK, t, 8);
    CHECK(strlen(t) == 7);
    ws_prune_plan_free(&f.plan);
}

/* The fixture's input, and a plan as ws_prune_plan_make has it before its first rule: allocated,
 * with the latest timeline and the order. A policy must be set. */
static void step_begin(struct fx *f)
{
    fx_input(f);
    ws_prune_plan_free(&f->plan);
    if (ws_prune_plan_init(&f->in, &f->plan, &f->err) != 0 ||
        ws_prune_order(&f->in, &f->plan, &f->err) != 0)
        unit_fail(__FILE__, __LINE__, f->err.msg);
    f->plan.latest_tli = ws_prune_latest_tli(&f->in);
}

/* ---- chains: diff and incr backups (docs/design/incremental.md, "Retention and verify") ---- */

/* Backup i becomes a diff or incr relative to backup ref. */
static void make_link(struct fx *f, size_t i, enum ws_backup_type type, size_t ref)
{
    f->b[i].type = type;
    memcpy(f->b[i].reference, f->b[ref].id, WS_BACKUP_ID_LEN + 1);
}

/* Does the plan delete backup a before backup b? */
static int deleted_before(const struct fx *f, size_t a, size_t b)
{
    size_t k, pa = SIZE_MAX, pb = SIZE_MAX;

    for (k = 0; k < f->plan.nbackups_delete; k++) {
        if (f->plan.delete_order[k] == a)
            pa = k;
        if (f->plan.delete_order[k] == b)
            pb = k;
    }
    return pa != SIZE_MAX && pb != SIZE_MAX && pa < pb;
}

/* F1 <- I1 <- I2, F2 <- D3 <- I4: retain_full counts F1 and F2 only; the incrementals and the
 * diff never count, and each is kept with its full backup. */
static void test_chain_retain_full_counts_full(void)
{
    struct fx f;
    size_t f1, i1, i2, f2, d3, i4;
    char t[1024];

    fx_init(&f);
    f1 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 6 * DAY, HOUR, 1, 10, 11);
    i1 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 5 * DAY, HOUR, 1, 20, 21);
    i2 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 4 * DAY, HOUR, 1, 30, 31);
    f2 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 3 * DAY, HOUR, 1, 40, 41);
    d3 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 2 * DAY, HOUR, 1, 50, 51);
    i4 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 1 * DAY, HOUR, 1, 60, 61);
    make_link(&f, i1, WS_BACKUP_INCR, f1);
    make_link(&f, i2, WS_BACKUP_INCR, i1);
    make_link(&f, d3, WS_BACKUP_DIFF, f2);
    make_link(&f, i4, WS_BACKUP_INCR, d3);
    add_segs(&f, 1, 5, 65);
    /* 2 full backups: all six stay (counting every complete backup would keep 3 of them) */
    f.in.retain_full = 2;
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.nbackups_delete == 0 && f.plan.wal_cutoff == 10);
    CHECK((f.plan.why[f1] & WS_KEEP_FULL) && (f.plan.why[f2] & WS_KEEP_FULL));
    CHECK(f.plan.why[i2] == WS_KEEP_FULL_CHAIN && (f.plan.why[i1] & WS_KEEP_FULL_CHAIN));
    CHECK(!(f.plan.why[i4] & WS_KEEP_FULL) && (f.plan.why[i4] & WS_KEEP_FULL_CHAIN));
    ws_prune_why_text(&f.in, &f.plan, i1, f.plan.why[i1], t, sizeof(t));
    CHECK(strstr(t, f.b[f1].id) && strstr(t, "2 newest complete full backups"));
    /* 1: F2 and what depends on it */
    f.in.retain_full = 1;
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.keep[f2] && f.plan.keep[d3] && f.plan.keep[i4]);
    CHECK(!f.plan.keep[f1] && !f.plan.keep[i1] && !f.plan.keep[i2]);
    CHECK(f.plan.why[d3] == (WS_KEEP_FULL_CHAIN | WS_KEEP_REFERENCED));
    CHECK(f.plan.wal_cutoff == 40 && only_below(&f, 40));
    ws_prune_why_text(&f.in, &f.plan, f1, f.plan.why[f1], t, sizeof(t));
    CHECK(strstr(t, "older than the newest complete full backup") != NULL);
    /* the chain goes newest first */
    CHECK(deleted_before(&f, i2, i1) && deleted_before(&f, i1, f1));
    ws_prune_plan_free(&f.plan);
}

/* An old full backup that no policy keeps stays because a kept incremental references it
 * (through another one): "kept: referenced by <ID>", and its WAL stays from its start. */
static void test_chain_referenced_old_full(void)
{
    struct fx f;
    size_t lone, f0, i1, i2, i3;
    char t[1024], want[64];

    fx_init(&f);
    lone = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 12 * DAY, HOUR, 1, 5, 6);
    f0 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 10 * DAY, HOUR, 1, 10, 11);
    i1 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 9 * DAY, HOUR, 1, 20, 21);
    i2 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 8 * DAY, HOUR, 1, 30, 31);
    i3 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - DAY, HOUR, 1, 40, 41);
    make_link(&f, i1, WS_BACKUP_INCR, f0);
    make_link(&f, i2, WS_BACKUP_INCR, i1);
    make_link(&f, i3, WS_BACKUP_INCR, i2);
    add_segs(&f, 1, 5, 45);
    f.in.retain_time = 2 * DAY; /* keeps i3 (window) and i2 (its base) */
    REQUIRE(run_plan(&f) == 0);
    CHECK((f.plan.why[i3] & WS_KEEP_WINDOW) && (f.plan.why[i2] & WS_KEEP_WINDOW_BASE));
    CHECK(f.plan.why[i1] == WS_KEEP_REFERENCED && f.plan.referenced_by[i1] == (long)i2);
    CHECK(f.plan.why[f0] == WS_KEEP_REFERENCED && f.plan.referenced_by[f0] == (long)i1);
    CHECK(!f.plan.keep[lone] && f.plan.nbackups_delete == 1 && f.plan.referenced_by[lone] == -1);
    CHECK(f.plan.wal_cutoff == 10 && f.plan.cutoff_backup == (long)f0 && only_below(&f, 10));
    ws_prune_why_text(&f.in, &f.plan, f0, f.plan.why[f0], t, sizeof(t));
    snprintf(want, sizeof(want), "kept: referenced by %s", f.b[i1].id);
    CHECK(strcmp(t, want) == 0);
    /* retain_full = 1 as well: the same */
    f.in.retain_full = 1;
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.keep[f0] && f.plan.keep[i1] && !f.plan.keep[lone]);
    CHECK(f.plan.why[f0] == (WS_KEEP_FULL | WS_KEEP_REFERENCED));
    ws_prune_plan_free(&f.plan);
}

/* A pin keeps the whole chain; a link an interrupted prune began deleting cannot be kept. */
static void test_chain_pin_and_deleting_link(void)
{
    struct fx f;
    size_t f0, i1, i2, f3, f4;

    fx_init(&f);
    f0 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 10 * DAY, HOUR, 1, 10, 11);
    i1 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 9 * DAY, HOUR, 1, 20, 21);
    i2 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 8 * DAY, HOUR, 1, 30, 31);
    f3 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 2 * DAY, HOUR, 1, 40, 41);
    f4 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - DAY, HOUR, 1, 50, 51);
    make_link(&f, i1, WS_BACKUP_INCR, f0);
    make_link(&f, i2, WS_BACKUP_INCR, i1);
    add_segs(&f, 1, 10, 55);
    f.b[i2].pinned = 1;
    f.in.retain_full = 1;
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.why[i2] == WS_KEEP_PINNED);
    CHECK(f.plan.why[i1] == WS_KEEP_REFERENCED && f.plan.why[f0] == WS_KEEP_REFERENCED);
    CHECK(!f.plan.keep[f3] && f.plan.keep[f4] && f.plan.wal_cutoff == 10);
    /* i1 half deleted: it goes (finished), and so does nothing else of the chain; f0 is no
     * longer referenced by a kept backup */
    f.b[i1].status = WS_BACKUP_DELETING;
    f.b[i2].status = WS_BACKUP_INCOMPLETE; /* the catalog says so: a link is being deleted */
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.why[i2] == WS_KEEP_PINNED && f.plan.why[i1] == WS_DROP_DELETING);
    CHECK(f.plan.why[f0] == WS_DROP_RETENTION && f.plan.referenced_by[f0] == -1);
    ws_prune_plan_free(&f.plan);
}

/* Chain backups that are not complete: judged like any backup that is not complete (young,
 * pending, abandoned); one invalid through a link stays, with its own phrase and warning; a
 * young one keeps its chain, an abandoned one does not. */
static void test_chain_not_complete(void)
{
    struct fx f;
    size_t f0, i1, full, inc, inv;
    char t[1024];

    fx_init(&f);
    f0 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 10 * DAY, HOUR, 1, 10, 11);
    i1 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 9 * DAY, HOUR, 1, 20, 21);
    full = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 3 * DAY, HOUR, 1, 30, 31);
    inc = add_backup(&f, WS_BACKUP_INCOMPLETE, NOW - 5 * DAY, HOUR, 1, 25, 26);
    inv = add_backup(&f, WS_BACKUP_INVALID, NOW - 4 * DAY, HOUR, 1, 27, 28);
    f.b[inv].has_position = 1; /* its manifest was read: a link of its chain is invalid */
    f.b[inv].problem = "its reference 20261112T101500Z is invalid";
    make_link(&f, i1, WS_BACKUP_INCR, f0);
    make_link(&f, inc, WS_BACKUP_INCR, i1);
    make_link(&f, inv, WS_BACKUP_INCR, f0);
    add_segs(&f, 1, 10, 35);
    f.in.retain_full = 1;
    f.in.incomplete_age = 0; /* 24 h */
    REQUIRE(run_plan(&f) == 0);
    /* inc: untouched for 5 days, older than a complete backup: abandoned; inv stays and keeps
     * f0, not i1 */
    CHECK(f.plan.why[inc] == WS_DROP_ABANDONED && f.plan.why[inv] == WS_KEEP_LINK_INVALID);
    CHECK(f.plan.why[f0] == WS_KEEP_REFERENCED && f.plan.why[i1] == WS_DROP_RETENTION);
    CHECK(has_warning(&f, f.b[inv].id) && has_warning(&f, "is invalid (its reference"));
    ws_prune_why_text(&f.in, &f.plan, inv, f.plan.why[inv], t, sizeof(t));
    CHECK(strstr(t, "chain is invalid") != NULL && strstr(t, "manifest") == NULL);
    /* written to an hour ago: young, and it keeps its chain */
    f.b[inc].last_write = NOW - HOUR;
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.why[inc] == WS_KEEP_YOUNG && f.plan.why[i1] == WS_KEEP_REFERENCED);
    CHECK(f.plan.referenced_by[i1] == (long)inc && f.plan.keep[full]);
    /* the newest, its reference gone: pending, and the warning says what it lacks */
    f.b[inc].last_write = NOW - 2 * DAY;
    f.b[inc].start_time = f.b[inc].stop_time = NOW - 2 * DAY;
    f.b[full].status = WS_BACKUP_DELETING;
    f.b[inc].problem = "its reference 20261119T101500Z is being deleted";
    REQUIRE(run_plan(&f) == 0);
    CHECK(f.plan.why[inc] == WS_KEEP_PENDING);
    CHECK(has_warning(&f, "(its reference 20261119T101500Z is being deleted); it is kept"));
    ws_prune_plan_free(&f.plan);
}

/* The references resolve by id; one not there, or not older, resolves to nothing. */
static void test_step_link_chains(void)
{
    struct fx f;
    size_t a, b, c, d, run;

    fx_init(&f);
    f.in.retain_full = 1;
    a = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 4 * DAY, HOUR, 1, 10, 11);
    b = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 3 * DAY, HOUR, 1, 20, 21);
    c = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 2 * DAY, HOUR, 1, 30, 31);
    d = add_backup(&f, WS_BACKUP_COMPLETE, NOW - DAY, HOUR, 1, 40, 41);
    run = add_backup(&f, WS_BACKUP_RUNNING, NOW - HOUR, HOUR, 1, 0, 0);
    make_link(&f, b, WS_BACKUP_INCR, a);
    make_link(&f, c, WS_BACKUP_DIFF, d); /* a newer reference: never followed */
    memcpy(f.b[d].reference, "20200101T000000Z", WS_BACKUP_ID_LEN + 1); /* not there */
    f.b[d].type = WS_BACKUP_INCR;
    make_link(&f, run, WS_BACKUP_INCR, a); /* no manifest read: its fields mean nothing */
    f.b[run].has_position = 0;
    make_link(&f, a, WS_BACKUP_FULL, b); /* a full backup has no reference to follow */
    f.b[a].type = WS_BACKUP_FULL;
    step_begin(&f);
    REQUIRE(ws_prune_link_chains(&f.in, &f.plan, &f.err) == 0);
    CHECK(f.plan.ref[b] == (long)a && f.plan.ref[a] == -1 && f.plan.ref[c] == -1);
    CHECK(f.plan.ref[d] == -1 && f.plan.ref[run] == -1);
    CHECK(ws_prune_chain_root(&f.in, &f.plan, b) == (long)a);
    CHECK(ws_prune_chain_root(&f.in, &f.plan, a) == (long)a);
    CHECK(ws_prune_chain_root(&f.in, &f.plan, d) == -1); /* broken before a full one */
    ws_prune_plan_free(&f.plan);
}

/* Deepest in the chain first, whatever the times say; chains oldest first. */
static void test_step_delete_order(void)
{
    struct fx f;
    size_t f0, i1, i2, d3, lone, kept;

    fx_init(&f);
    f.in.retain_full = 1;
    lone = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 20 * DAY, HOUR, 1, 5, 6);
    f0 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 10 * DAY, HOUR, 1, 10, 11);
    i1 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 9 * DAY, HOUR, 1, 20, 21);
    i2 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 8 * DAY, HOUR, 1, 30, 31);
    d3 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 7 * DAY, HOUR, 1, 40, 41);
    kept = add_backup(&f, WS_BACKUP_COMPLETE, NOW - DAY, HOUR, 1, 50, 51);
    make_link(&f, i1, WS_BACKUP_INCR, f0);
    make_link(&f, i2, WS_BACKUP_INCR, i1);
    make_link(&f, d3, WS_BACKUP_DIFF, f0);
    /* i2's clock was behind: by time it is older than i1, its reference */
    f.b[i2].start_time = f.b[i1].start_time - HOUR;
    step_begin(&f);
    REQUIRE(ws_prune_link_chains(&f.in, &f.plan, &f.err) == 0);
    f.plan.keep[kept] = 1;
    f.plan.nbackups_delete = 5;
    REQUIRE(ws_prune_delete_order(&f.in, &f.plan, &f.err) == 0);
    CHECK(f.plan.delete_order[0] == lone && f.plan.delete_order[1] == i2);
    CHECK(f.plan.delete_order[2] == d3 && f.plan.delete_order[3] == i1);
    CHECK(f.plan.delete_order[4] == f0);
    /* f0 kept: its dependents are chains of their own, oldest first */
    f.plan.keep[f0] = 1;
    f.plan.nbackups_delete = 4;
    REQUIRE(ws_prune_delete_order(&f.in, &f.plan, &f.err) == 0);
    CHECK(f.plan.delete_order[0] == lone && f.plan.delete_order[1] == i2);
    CHECK(f.plan.delete_order[2] == i1 && f.plan.delete_order[3] == d3);
    ws_prune_plan_free(&f.plan);
}

/* The chain walk: kept backups' links become WS_KEEP_REFERENCED, dropping reasons cleared. */
static void test_step_keep_referenced(void)
{
    struct fx f;
    size_t f0, i1, i2, other;

    fx_init(&f);
    f.in.retain_full = 1;
    f0 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 4 * DAY, HOUR, 1, 10, 11);
    i1 = add_backup(&f, WS_BACKUP_INCOMPLETE, NOW - 3 * DAY, HOUR, 1, 20, 21);
    i2 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 2 * DAY, HOUR, 1, 30, 31);
    other = add_backup(&f, WS_BACKUP_COMPLETE, NOW - DAY, HOUR, 1, 40, 41);
    make_link(&f, i1, WS_BACKUP_INCR, f0);
    make_link(&f, i2, WS_BACKUP_INCR, i1);
    step_begin(&f);
    REQUIRE(ws_prune_link_chains(&f.in, &f.plan, &f.err) == 0);
    f.plan.why[f0] = WS_DROP_RETENTION;
    f.plan.why[i1] = WS_DROP_ABANDONED;
    f.plan.why[i2] = WS_KEEP_PINNED;
    f.plan.why[other] = WS_DROP_RETENTION;
    ws_prune_keep_referenced(&f.in, &f.plan);
    CHECK(f.plan.why[i1] == WS_KEEP_REFERENCED && f.plan.referenced_by[i1] == (long)i2);
    CHECK(f.plan.why[f0] == WS_KEEP_REFERENCED && f.plan.referenced_by[f0] == (long)i1);
    CHECK(f.plan.why[i2] == WS_KEEP_PINNED && f.plan.why[other] == WS_DROP_RETENTION);
    /* nothing kept: nothing referenced */
    step_begin(&f);
    REQUIRE(ws_prune_link_chains(&f.in, &f.plan, &f.err) == 0);
    f.plan.why[i2] = WS_DROP_RETENTION;
    ws_prune_keep_referenced(&f.in, &f.plan);
    CHECK(f.plan.why[i1] == 0 && f.plan.why[f0] == 0 && f.plan.referenced_by[f0] == -1);
    ws_prune_plan_free(&f.plan);
}

/* ---- the planner's steps, one at a time (prune_int.h) ---- */

/* By start time (the id's time when the manifest was not read), then start LSN, then id. */
static void test_step_order(void)
{
    struct fx f;
    size_t later, earlier, run, old, garbled;

    fx_init(&f);
    f.in.retain_full = 1;
    /* the same time and LSN: the id decides */
    later = add_backup(&f, WS_BACKUP_COMPLETE, NOW - DAY, HOUR, 1, 30, 31);
    earlier = add_backup(&f, WS_BACKUP_COMPLETE, NOW - DAY, HOUR, 1, 30, 31);
    memcpy(f.b[earlier].id, "20261121T101459Z", WS_BACKUP_ID_LEN + 1);
    /* no manifest: the time its id encodes, whatever the (unread) start fields hold */
    run = add_backup(&f, WS_BACKUP_RUNNING, NOW - 2 * DAY, HOUR, 1, 0, 0);
    f.b[run].start_time = NOW;
    /* the oldest by time, although its LSN is the highest */
    old = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 3 * DAY, HOUR, 1, 50, 51);
    /* an id that encodes no time: time 0, first */
    garbled = add_backup(&f, WS_BACKUP_RUNNING, NOW - HOUR, HOUR, 1, 0, 0);
    memcpy(f.b[garbled].id, "not-a-backup-id!", WS_BACKUP_ID_LEN + 1);
    step_begin(&f);
    CHECK(f.plan.order[0] == garbled && f.plan.order[1] == old && f.plan.order[2] == run);
    CHECK(f.plan.order[3] == earlier && f.plan.order[4] == later);
    CHECK(ws_prune_newest(&f.in, &f.plan) == 4);
    /* the newest complete backup is found by the order, not by the index */
    f.b[later].status = WS_BACKUP_INCOMPLETE;
    CHECK(ws_prune_newest(&f.in, &f.plan) == 3);
    ws_prune_plan_free(&f.plan);
}

/* The latest timeline counts history files and positioned backups; the timelines whose lineage
 * must be known are those with WAL, with a backup on them, and the latest. */
static void test_step_latest_timeline(void)
{
    struct fx f;
    uint32_t tlv[16];
    size_t n, run;

    fx_init(&f);
    add_segs(&f, 1, 5, 6);
    add_segs(&f, 3, 7, 7);
    add_segs(&f, 1, 7, 7);
    add_name(&f, "00000005.history", 40); /* promoted, nothing archived on it yet */
    add_backup(&f, WS_BACKUP_COMPLETE, NOW - DAY, HOUR, 4, 8, 9);
    run = add_backup(&f, WS_BACKUP_RUNNING, NOW - HOUR, HOUR, 9, 0, 0);
    fx_input(&f);
    CHECK(f.b[run].timeline == 9 && ws_prune_latest_tli(&f.in) == 5); /* 9: position unknown */
    n = ws_prune_wal_tlis(&f.in, tlv);
    CHECK(n == 2 && tlv[0] == 1 && tlv[1] == 3);
    n = ws_prune_lineage_tlis(&f.in, 5, tlv);
    CHECK(n == 4 && tlv[0] == 1 && tlv[1] == 3 && tlv[2] == 4 && tlv[3] == 5);
    n = ws_prune_lineage_tlis(&f.in, 0, tlv);
    CHECK(n == 3 && tlv[2] == 4);
    /* nothing at all */
    fx_init(&f);
    fx_input(&f);
    CHECK(ws_prune_latest_tli(&f.in) == 0 && ws_prune_lineage_tlis(&f.in, 0, tlv) == 0);
}

/* Timeline 2 left timeline 1 at segment 50: which backups can restore along it, which need its
 * WAL, and which starts lie on one line. */
static void test_step_lineage(void)
{
    struct fx f;
    uint64_t end = 0;
    size_t before, across, after, on2;

    fx_init(&f);
    before = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 4 * DAY, HOUR, 1, 10, 11);
    across = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 3 * DAY, HOUR, 1, 49, 51);
    after = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 2 * DAY, HOUR, 1, 60, 61);
    on2 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 1 * DAY, HOUR, 2, 70, 71);
    hist_line(&f, 2, 1, 50 * (uint64_t)SEG + 0x100);
    fx_input(&f);
    CHECK(ws_prune_lineage_known(&f.in, 1) && ws_prune_lineage_known(&f.in, 2));
    CHECK(!ws_prune_lineage_known(&f.in, 3) && ws_prune_history_of(&f.in, 3) == NULL);
    CHECK(ws_prune_left_at(&f.in, 2, 1, &end) && end == 50 * (uint64_t)SEG + 0x100);
    CHECK(!ws_prune_left_at(&f.in, 1, 2, &end) && !ws_prune_left_at(&f.in, 2, 2, &end));
    CHECK(ws_prune_restorable_to(&f.in, &f.b[before], 2));
    CHECK(ws_prune_needs_wal_of(&f.in, &f.b[before], 2));
    /* started before the switch, ended after it: needs timeline 2's WAL, cannot follow it */
    CHECK(!ws_prune_restorable_to(&f.in, &f.b[across], 2));
    CHECK(ws_prune_needs_wal_of(&f.in, &f.b[across], 2));
    CHECK(!ws_prune_restorable_to(&f.in, &f.b[after], 2));
    CHECK(!ws_prune_needs_wal_of(&f.in, &f.b[after], 2));
    CHECK(ws_prune_restorable_to(&f.in, &f.b[on2], 2) &&
          !ws_prune_restorable_to(&f.in, &f.b[on2], 1));
    CHECK(ws_prune_one_line(&f.in, &f.b[before], &f.b[on2]));
    CHECK(ws_prune_one_line(&f.in, &f.b[on2], &f.b[across]));
    CHECK(!ws_prune_one_line(&f.in, &f.b[after], &f.b[on2]));
    /* a backup whose position is unknown reaches nothing */
    f.b[before].has_position = 0;
    CHECK(!ws_prune_restorable_to(&f.in, &f.b[before], 1));
    CHECK(!ws_prune_needs_wal_of(&f.in, &f.b[before], 1));
}

static void test_step_hold_lineage(void)
{
    struct fx f;

    fx_init(&f);
    f.in.retain_full = 1;
    add_backup(&f, WS_BACKUP_COMPLETE, NOW - DAY, HOUR, 1, 10, 11);
    add_segs(&f, 1, 10, 20);
    add_segs(&f, 2, 20, 25);
    add_segs(&f, 3, 25, 26);
    hist_line(&f, 2, 1, 20 * (uint64_t)SEG);
    step_begin(&f);
    REQUIRE(ws_prune_hold_lineage(&f.in, &f.plan, &f.err) == 0);
    CHECK(f.plan.hold == WS_HOLD_LINEAGE && f.plan.hold_msg);
    CHECK(strstr(f.plan.hold_msg, "timeline 3: its history file cannot be read") &&
          strstr(f.plan.hold_msg, "00000003.history: not in the repository"));
    CHECK(!strstr(f.plan.hold_msg, "00000002.history"));
    /* with it: no hold */
    hist_line(&f, 3, 2, 25 * (uint64_t)SEG);
    step_begin(&f);
    REQUIRE(ws_prune_hold_lineage(&f.in, &f.plan, &f.err) == 0);
    CHECK(f.plan.hold == 0 && f.plan.hold_msg == NULL);
    /* the latest timeline needs its history even with no segment on it yet */
    add_name(&f, "00000004.history", 40);
    hist_entry(&f, 4)->problem = "invalid data in history file 00000004.history, line 1";
    step_begin(&f);
    CHECK(f.plan.latest_tli == 4);
    REQUIRE(ws_prune_hold_lineage(&f.in, &f.plan, &f.err) == 0);
    CHECK(f.plan.hold == WS_HOLD_LINEAGE && strstr(f.plan.hold_msg, "timeline 4:") &&
          strstr(f.plan.hold_msg, "line 1"));
    ws_prune_plan_free(&f.plan);
}

static void test_step_hold_order(void)
{
    struct fx f;
    size_t a, b;

    fx_init(&f);
    f.in.retain_full = 1;
    a = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 2 * DAY, HOUR, 1, 30, 31);
    b = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 1 * DAY, HOUR, 1, 20, 21);
    step_begin(&f);
    REQUIRE(ws_prune_hold_order(&f.in, &f.plan, &f.err) == 0);
    CHECK(f.plan.hold == WS_HOLD_ORDER && f.plan.hold_msg);
    /* the one older by time is named first */
    CHECK(strstr(f.plan.hold_msg, f.b[a].id) && strstr(f.plan.hold_msg, f.b[b].id) &&
          strstr(f.plan.hold_msg, f.b[a].id) < strstr(f.plan.hold_msg, f.b[b].id));
    /* an interrupted delete is not compared */
    f.b[b].status = WS_BACKUP_DELETING;
    step_begin(&f);
    REQUIRE(ws_prune_hold_order(&f.in, &f.plan, &f.err) == 0);
    CHECK(f.plan.hold == 0);
    /* nor are lines that forked apart: timeline 2 left timeline 1 at segment 10, before a */
    f.b[b].status = WS_BACKUP_COMPLETE;
    f.b[b].timeline = 2;
    hist_line(&f, 2, 1, 10 * (uint64_t)SEG);
    step_begin(&f);
    REQUIRE(ws_prune_hold_order(&f.in, &f.plan, &f.err) == 0);
    CHECK(f.plan.hold == 0 && f.plan.hold_msg == NULL);
    ws_prune_plan_free(&f.plan);
}

/* Each policy adds its own bit and nothing else. */
static void test_step_policies(void)
{
    struct fx f;
    size_t inc;

    fx_init(&f);
    five_daily(&f); /* b[0..4], ended 4d1h .. 1h ago */
    inc = add_backup(&f, WS_BACKUP_INCOMPLETE, NOW - HOUR, 30 * MIN, 1, 62, 63);
    f.in.retain_full = 2;
    f.in.retain_time = 2 * DAY;
    step_begin(&f);
    ws_prune_keep_newest(&f.in, &f.plan);
    CHECK(f.plan.why[4] == WS_KEEP_NEWEST && f.plan.why[3] == 0 && f.plan.why[inc] == 0);
    ws_prune_keep_full(&f.in, &f.plan);
    CHECK(f.plan.why[4] == (WS_KEEP_NEWEST | WS_KEEP_FULL) && f.plan.why[3] == WS_KEEP_FULL);
    CHECK(f.plan.why[2] == 0 && f.plan.why[inc] == 0); /* not complete: not counted */
    ws_prune_keep_window(&f.in, &f.plan);
    CHECK(f.plan.why[3] == (WS_KEEP_FULL | WS_KEEP_WINDOW));
    CHECK(f.plan.why[2] == WS_KEEP_WINDOW_BASE); /* ended 2d1h ago: before the window opened */
    CHECK(f.plan.why[1] == 0 && f.plan.why[0] == 0 && f.plan.why[inc] == 0);
    f.b[0].pinned = 1;
    ws_prune_keep_pinned(&f.in, &f.plan);
    CHECK(f.plan.why[0] == WS_KEEP_PINNED && f.plan.why[1] == 0);
    ws_prune_expire(&f.in, &f.plan);
    CHECK(f.plan.why[1] == WS_DROP_RETENTION && f.plan.why[0] == WS_KEEP_PINNED);
    CHECK(f.plan.why[inc] == 0); /* not complete: not the policies' to judge */
    /* without retain_time the window step does nothing */
    f.in.retain_time = 0;
    step_begin(&f);
    ws_prune_keep_window(&f.in, &f.plan);
    for (size_t i = 0; i < f.nb; i++)
        CHECK(f.plan.why[i] == 0);
    ws_prune_plan_free(&f.plan);
}

static void test_step_judge_incomplete(void)
{
    struct fx f;
    size_t c1, c2, old, young, pend, run_old, run_young, inv, del, pinned;

    fx_init(&f);
    f.in.retain_full = 1;
    f.in.incomplete_age = 0; /* the default: 24 h */
    c1 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 3 * DAY, HOUR, 1, 20, 21);
    old = add_backup(&f, WS_BACKUP_INCOMPLETE, NOW - 4 * DAY, HOUR, 1, 10, 11);
    c2 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 2 * DAY, HOUR, 1, 30, 31);
    pend = add_backup(&f, WS_BACKUP_INCOMPLETE, NOW - 36 * HOUR, HOUR, 1, 40, 41);
    young = add_backup(&f, WS_BACKUP_INCOMPLETE, NOW - 30 * HOUR, HOUR, 1, 50, 51);
    f.b[young].last_write = NOW - 23 * HOUR; /* its WAL wait still writes */
    run_old = add_backup(&f, WS_BACKUP_RUNNING, NOW - 5 * DAY, HOUR, 1, 0, 0);
    f.b[run_old].last_write = 0;
    run_young = add_backup(&f, WS_BACKUP_RUNNING, NOW - HOUR, HOUR, 1, 0, 0);
    f.b[run_young].last_write = 0; /* no write time known: the id's time counts */
    inv = add_backup(&f, WS_BACKUP_INVALID, NOW - 6 * DAY, HOUR, 1, 0, 0);
    del = add_backup(&f, WS_BACKUP_DELETING, NOW - 7 * DAY, HOUR, 1, 0, 0);
    pinned = add_backup(&f, WS_BACKUP_RUNNING, NOW - 8 * DAY, HOUR, 1, 0, 0);
    f.b[pinned].pinned = 1;
    step_begin(&f);
    ws_prune_keep_pinned(&f.in, &f.plan);
    ws_prune_judge_incomplete(&f.in, &f.plan);
    CHECK(f.plan.why[c1] == 0 && f.plan.why[c2] == 0);
    CHECK(f.plan.why[old] == WS_DROP_ABANDONED);
    CHECK(f.plan.why[pend] == WS_KEEP_PENDING);
    CHECK(f.plan.why[young] == WS_KEEP_YOUNG);
    CHECK(f.plan.why[run_old] == WS_DROP_ABANDONED && f.plan.why[run_young] == WS_KEEP_YOUNG);
    CHECK(f.plan.why[inv] == WS_KEEP_UNREADABLE && f.plan.why[del] == WS_DROP_DELETING);
    CHECK(f.plan.why[pinned] == WS_KEEP_PINNED); /* a pin wins over abandoned */
    /* a longer timeout lengthens the age limit */
    f.in.incomplete_age = 6 * DAY;
    step_begin(&f);
    ws_prune_judge_incomplete(&f.in, &f.plan);
    CHECK(f.plan.why[run_old] == WS_KEEP_YOUNG && f.plan.why[old] == WS_KEEP_YOUNG);
    /* no complete backup: an old incomplete one is pending, not abandoned */
    f.in.incomplete_age = 0;
    f.b[c1].status = f.b[c2].status = WS_BACKUP_INVALID;
    step_begin(&f);
    ws_prune_judge_incomplete(&f.in, &f.plan);
    CHECK(f.plan.why[old] == WS_KEEP_PENDING);
    ws_prune_plan_free(&f.plan);
}

static void test_step_latest_reachable(void)
{
    struct fx f;
    size_t b1, b2;
    int warned = -1;

    fx_init(&f);
    f.in.retain_full = 1;
    b1 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 10 * DAY, HOUR, 1, 10, 11);
    b2 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 3 * DAY, HOUR, 2, 100, 101);
    add_segs(&f, 3, 50, 60);
    hist_line(&f, 2, 1, 80 * (uint64_t)SEG);
    hist_line(&f, 3, 1, 50 * (uint64_t)SEG + 0x100);
    step_begin(&f);
    ws_prune_keep_full(&f.in, &f.plan);
    ws_prune_expire(&f.in, &f.plan);
    CHECK(f.plan.why[b1] == WS_DROP_RETENTION);
    REQUIRE(ws_prune_keep_latest_reachable(&f.in, &f.plan, &warned, &f.err) == 0);
    CHECK(f.plan.latest_tli == 3 && f.plan.why[b1] == WS_KEEP_TIMELINE && warned == 0);
    CHECK(f.plan.why[b2] == WS_KEEP_FULL && f.plan.nwarnings == 0);
    /* none can: a warning, and nothing kept for it */
    f.b[b1].stop_lsn = 51 * (uint64_t)SEG;
    step_begin(&f);
    ws_prune_keep_full(&f.in, &f.plan);
    ws_prune_expire(&f.in, &f.plan);
    REQUIRE(ws_prune_keep_latest_reachable(&f.in, &f.plan, &warned, &f.err) == 0);
    CHECK(warned == 1 && f.plan.why[b1] == WS_DROP_RETENTION && has_warning(&f, "timeline 3"));
    /* ... unless timeline 3's lineage is unknown: the hold speaks instead */
    hist_drop(&f, 3);
    step_begin(&f);
    REQUIRE(ws_prune_keep_latest_reachable(&f.in, &f.plan, &warned, &f.err) == 0);
    CHECK(warned == 0 && f.plan.nwarnings == 0);
    ws_prune_plan_free(&f.plan);
}

static void test_step_hold_and_tally(void)
{
    static const unsigned why[] = {WS_DROP_RETENTION, WS_DROP_ABANDONED, WS_DROP_DELETING,
                                   WS_KEEP_FULL};
    struct fx f;
    size_t i;

    fx_init(&f);
    f.in.retain_full = 1;
    for (i = 0; i < 4; i++)
        add_backup(&f, WS_BACKUP_COMPLETE, NOW - (int64_t)(4 - i) * DAY, HOUR, 1, 10 * i, 10 * i);
    step_begin(&f);
    memcpy(f.plan.why, why, sizeof(why));
    ws_prune_apply_hold(&f.in, &f.plan);
    CHECK(memcmp(f.plan.why, why, sizeof(why)) == 0); /* not held: unchanged */
    f.plan.hold = WS_HOLD_LINEAGE;
    ws_prune_apply_hold(&f.in, &f.plan);
    CHECK(f.plan.why[0] == WS_KEEP_HELD && f.plan.why[1] == WS_DROP_ABANDONED);
    CHECK(f.plan.why[2] == WS_DROP_DELETING && f.plan.why[3] == WS_KEEP_FULL);
    ws_prune_tally(&f.in, &f.plan);
    CHECK(f.plan.keep[0] && !f.plan.keep[1] && !f.plan.keep[2] && f.plan.keep[3]);
    CHECK(f.plan.nbackups_delete == 2 && f.plan.backup_bytes == 2000);
    /* the order in doubt: abandoned ones are held too; interrupted deletes are finished */
    memcpy(f.plan.why, why, sizeof(why));
    f.plan.hold = WS_HOLD_ORDER;
    ws_prune_apply_hold(&f.in, &f.plan);
    CHECK(f.plan.why[0] == WS_KEEP_HELD && f.plan.why[1] == WS_KEEP_HELD);
    CHECK(f.plan.why[2] == WS_DROP_DELETING);
    ws_prune_plan_free(&f.plan);
}

static void test_step_wal_cutoff(void)
{
    struct fx f;
    size_t b0, inv, b2;
    uint64_t floor;
    long from = 0;

    fx_init(&f);
    f.in.retain_full = 1;
    b0 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 3 * DAY, HOUR, 1, 10, 11);
    inv = add_backup(&f, WS_BACKUP_INVALID, NOW - 2 * DAY, HOUR, 1, 0, 0);
    b2 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 1 * DAY, HOUR, 1, 40, 41);
    step_begin(&f);
    /* b0 goes; the unreadable one stays and holds WAL from the lowest start known (b0's) */
    f.plan.keep[inv] = f.plan.keep[b2] = 1;
    floor = ws_prune_wal_floor(&f.in, &f.plan, &from);
    CHECK(floor == 10 && from == (long)b0);
    ws_prune_global_cutoff(&f.in, &f.plan, floor, from);
    CHECK(f.plan.wal_cutoff == 10 && f.plan.cutoff_backup == (long)b0);
    /* without it: b2's start */
    f.plan.keep[inv] = 0;
    floor = ws_prune_wal_floor(&f.in, &f.plan, &from);
    CHECK(floor == UINT64_MAX && from == -1);
    ws_prune_global_cutoff(&f.in, &f.plan, floor, from);
    CHECK(f.plan.wal_cutoff == 40 && f.plan.cutoff_backup == (long)b2);
    /* before every backup with a position: all WAL stays */
    f.b[inv].id[3] = '0'; /* 2026 -> 2020 */
    step_begin(&f);
    CHECK(f.plan.order[0] == inv);
    f.plan.keep[inv] = f.plan.keep[b2] = 1;
    floor = ws_prune_wal_floor(&f.in, &f.plan, &from);
    CHECK(floor == 0 && from == -1);
    ws_prune_global_cutoff(&f.in, &f.plan, floor, from);
    CHECK(f.plan.wal_cutoff == 0 && f.plan.cutoff_backup == -1);
    /* no complete backup: no cutoff */
    f.b[b0].status = f.b[b2].status = WS_BACKUP_INCOMPLETE;
    step_begin(&f);
    f.plan.keep[b0] = f.plan.keep[b2] = 1;
    ws_prune_global_cutoff(&f.in, &f.plan, UINT64_MAX, -1);
    CHECK(f.plan.wal_cutoff == 0 && f.plan.cutoff_backup == -1);
    ws_prune_plan_free(&f.plan);
}

static const struct ws_prune_tl *tl_rule_of(const struct fx *f, uint32_t tli)
{
    for (size_t i = 0; i < f->plan.ntls; i++)
        if (f->plan.tls[i].tli == tli)
            return &f->plan.tls[i];
    unit_fail(__FILE__, __LINE__, "timeline missing");
    return &f->plan.tls[0];
}

static void test_step_timeline_cutoffs(void)
{
    struct fx f;
    size_t b1, b2, across;

    fx_init(&f);
    f.in.retain_full = 1;
    /* b1 on 1 (segment 10); 2 left 1 at 80 (b2 at 100); 3 left 1 at 50; 4 left 1 at 3, before
     * every backup (a stray copy); 5 has no history */
    b1 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 10 * DAY, HOUR, 1, 10, 11);
    b2 = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 3 * DAY, HOUR, 2, 100, 101);
    across = add_backup(&f, WS_BACKUP_COMPLETE, NOW - 9 * DAY, HOUR, 1, 45, 52);
    add_segs(&f, 1, 5, 80);
    add_segs(&f, 2, 80, 110);
    add_segs(&f, 3, 50, 60);
    add_segs(&f, 4, 3, 20);
    add_segs(&f, 5, 90, 91);
    hist_line(&f, 2, 1, 80 * (uint64_t)SEG);
    hist_line(&f, 3, 1, 50 * (uint64_t)SEG);
    hist_line(&f, 4, 1, 3 * (uint64_t)SEG);
    step_begin(&f);
    f.plan.keep[b1] = f.plan.keep[b2] = 1;
    ws_prune_global_cutoff(&f.in, &f.plan, UINT64_MAX, -1);
    REQUIRE(ws_prune_timeline_cutoffs(&f.in, &f.plan, UINT64_MAX, -1, 0, &f.err) == 0);
    CHECK(f.plan.ntls == 5);
    CHECK(tl_rule_of(&f, 1)->rule == WS_TL_REACHED && tl_rule_of(&f, 1)->cutoff == 10 &&
          tl_rule_of(&f, 1)->backup == (long)b1);
    CHECK(tl_rule_of(&f, 2)->rule == WS_TL_REACHED && tl_rule_of(&f, 2)->cutoff == 10);
    CHECK(tl_rule_of(&f, 3)->rule == WS_TL_REACHED && tl_rule_of(&f, 3)->cutoff == 10);
    CHECK(tl_rule_of(&f, 4)->rule == WS_TL_UNREACHED && tl_rule_of(&f, 4)->cutoff == 0);
    CHECK(tl_rule_of(&f, 5)->rule == WS_TL_UNKNOWN && tl_rule_of(&f, 5)->cutoff == 0);
    CHECK(f.plan.nwarnings == 1 && has_warning(&f, "timeline 4: no kept backup"));
    /* b2 alone: timeline 1 is its ancestor (the global cutoff), 3 and 4 unreached */
    step_begin(&f);
    f.plan.keep[b2] = 1;
    ws_prune_global_cutoff(&f.in, &f.plan, UINT64_MAX, -1);
    REQUIRE(ws_prune_timeline_cutoffs(&f.in, &f.plan, UINT64_MAX, -1, 0, &f.err) == 0);
    CHECK(tl_rule_of(&f, 1)->rule == WS_TL_ANCESTOR && tl_rule_of(&f, 1)->cutoff == 100 &&
          tl_rule_of(&f, 1)->backup == (long)b2);
    CHECK(tl_rule_of(&f, 2)->rule == WS_TL_REACHED && tl_rule_of(&f, 2)->cutoff == 100);
    CHECK(tl_rule_of(&f, 3)->rule == WS_TL_UNREACHED && f.plan.nwarnings == 2);
    /* a floor (a kept backup whose position is unknown) lowers the reached ones */
    step_begin(&f);
    f.plan.keep[b2] = 1;
    REQUIRE(ws_prune_timeline_cutoffs(&f.in, &f.plan, 7, (long)b1, 0, &f.err) == 0);
    CHECK(tl_rule_of(&f, 2)->cutoff == 7 && tl_rule_of(&f, 2)->backup == (long)b1);
    /* a backup that started on 1 before 3 left it but ended after: it cannot restore along 3,
     * and still needs 3's WAL from its start */
    step_begin(&f);
    f.plan.keep[across] = 1;
    REQUIRE(ws_prune_timeline_cutoffs(&f.in, &f.plan, UINT64_MAX, -1, 0, &f.err) == 0);
    CHECK(!ws_prune_restorable_to(&f.in, &f.b[across], 3));
    CHECK(tl_rule_of(&f, 3)->rule == WS_TL_REACHED && tl_rule_of(&f, 3)->cutoff == 45 &&
          tl_rule_of(&f, 3)->backup == (long)across);
    /* the latest timeline (5 here has no history; make 4 the latest) warned of already */
    f.nw -= 2;
    step_begin(&f);
    f.plan.keep[b1] = f.plan.keep[b2] = 1;
    REQUIRE(ws_prune_timeline_cutoffs(&f.in, &f.plan, UINT64_MAX, -1, 1, &f.err) == 0);
    CHECK(f.plan.latest_tli == 4 && f.plan.nwarnings == 0);
    /* no complete backup: every timeline keeps all, one warning */
    f.b[b1].status = f.b[b2].status = f.b[across].status = WS_BACKUP_INCOMPLETE;
    step_begin(&f);
    REQUIRE(ws_prune_timeline_cutoffs(&f.in, &f.plan, UINT64_MAX, -1, 0, &f.err) == 0);
    CHECK(f.plan.ntls == 4 && tl_rule_of(&f, 1)->rule == WS_TL_NO_BACKUP &&
          tl_rule_of(&f, 2)->rule == WS_TL_NO_BACKUP && tl_rule_of(&f, 1)->cutoff == 0);
    CHECK(f.plan.nwarnings == 1 && has_warning(&f, "no complete backup"));
    ws_prune_plan_free(&f.plan);
}

static void test_step_select_wal(void)
{
    struct fx f;
    char n[64], s[WS_WAL_NAME_LEN + 1];
    size_t j;

    fx_init(&f);
    f.in.retain_full = 1;
    for (uint64_t g = 5; g <= 20; g++)
        if (g != 7 && g != 12) /* holes: 7 (below the cutoff), 12 (above) */
            add_segs(&f, 1, g, g);
    seg_name(s, 1, 9);
    snprintf(n, sizeof(n), "%s.partial", s);
    add_name(&f, n, 77);
    add_segs(&f, 2, 3, 6);
    add_segs(&f, 3, 1, 2); /* no rule for timeline 3: nothing of it goes */
    add_name(&f, "00000002.history", 40);
    step_begin(&f);
    f.plan.tls[0] = (struct ws_prune_tl){1, WS_TL_REACHED, 10, -1};
    f.plan.tls[1] = (struct ws_prune_tl){2, WS_TL_ANCESTOR, 5, -1};
    f.plan.ntls = 2;
    REQUIRE(ws_prune_select_wal(&f.in, &f.plan, &f.err) == 0);
    /* timeline 1: 5, 6, 8, 9, 9.partial; timeline 2: 3, 4 */
    CHECK(f.plan.nwal_delete == 7 && f.plan.wal_bytes == 6 * (uint64_t)SEG + 77);
    CHECK(seg_goes(&f, 1, 9) && wal_goes(&f, n) && !seg_goes(&f, 1, 10));
    CHECK(seg_goes(&f, 2, 4) && !seg_goes(&f, 2, 5) && !seg_goes(&f, 3, 1));
    CHECK(!wal_goes(&f, "00000002.history"));
    for (j = 1; j < f.plan.nwal_delete; j++) {
        const struct ws_prune_wal *a = &f.w[f.plan.wal_delete[j - 1]],
                                  *b = &f.w[f.plan.wal_delete[j]];
        CHECK(a->tli < b->tli || (a->tli == b->tli && a->segno < b->segno) ||
              (a->tli == b->tli && a->segno == b->segno && strcmp(a->name, b->name) < 0));
    }
    CHECK(strcmp(f.w[f.plan.wal_delete[4]].name, n) == 0); /* after its segment */
    /* one gap warning: the hole at 12, in what stays; not the one at 7 */
    seg_name(s, 1, 12);
    CHECK(f.plan.nwarnings == 1 && has_warning(&f, "WAL gap on timeline 1") && has_warning(&f, s));
    ws_prune_plan_free(&f.plan);
}

/* The summary line ws_prune_print_summary writes for f's plan and res, in line. */
static int summary(const struct fx *f, const struct ws_prune_result *res, int dry_run, char *line,
                   size_t size)
{
    FILE *out = tmpfile();
    int ok;

    if (!out)
        return 0;
    ws_prune_print_summary(out, &f->in, &f->plan, res, dry_run);
    rewind(out);
    ok = fgets(line, (int)size, out) != NULL;
    fclose(out);
    return ok;
}

/* wal-receive's streamed chunks: those of a segment stored whole, or below their timeline's
 * cutoff, go; those of the segment in progress (and of a timeline without a rule) stay. */
static void test_step_select_chunks(void)
{
    static const struct {
        uint32_t tli;
        uint64_t segno;
        int goes;
    } chunks[] = {
        {1, 4, 1},             /* below the cutoff of timeline 1 */
        {1, 11, 1},            /* segment 11 is stored whole */
        {1, 12, 0},            /* the segment in progress */
        {1, 12, 0}, {3, 1, 0}, /* no rule for timeline 3 */
    };
    struct ws_prune_wal c[5];
    char names[5][64], s[WS_WAL_NAME_LEN + 1];
    struct fx f;

    fx_init(&f);
    f.in.retain_full = 1;
    add_segs(&f, 1, 10, 11);
    memset(c, 0, sizeof(c));
    for (size_t i = 0; i < 5; i++) {
        seg_name(s, chunks[i].tli, chunks[i].segno);
        snprintf(names[i], sizeof(names[i]), "%s.%08zX-%08zX", s, i * 16, i * 16 + 16);
        c[i] = (struct ws_prune_wal){names[i], NULL, WS_WAL_SEGMENT, chunks[i].tli, chunks[i].segno,
                                     16,       0};
    }
    f.in.chunks = c;
    f.in.nchunks = 5;
    step_begin(&f);
    f.plan.tls[0] = (struct ws_prune_tl){1, WS_TL_REACHED, 10, -1};
    f.plan.ntls = 1;
    REQUIRE(ws_prune_select_chunks(&f.in, &f.plan, &f.err) == 0);
    CHECK(f.plan.nchunk_delete == 2);
    for (size_t j = 0; j < f.plan.nchunk_delete; j++)
        CHECK(chunks[f.plan.chunk_delete[j]].goes);
    /* the summary names them: a dry run from the plan, a run from what it deleted */
    {
        struct ws_prune_result res = {0};
        char line[1024];
        CHECK(summary(&f, &res, 1, line, sizeof(line)) &&
              strstr(line, "0 WAL file(s) and 2 streamed chunk(s) (") != NULL);
        CHECK(summary(&f, &res, 0, line, sizeof(line)) && !strstr(line, "streamed chunk"));
        res.chunks_deleted = 1;
        res.temp_deleted = 3;
        CHECK(summary(&f, &res, 0, line, sizeof(line)) &&
              strstr(line, " and 3 temp file(s) of killed uploads and 1 streamed chunk(s) (") !=
                  NULL);
    }
    ws_prune_plan_free(&f.plan);
}

/* ---- executor over an in-memory repository ---- */

/* Stores text as the object at key, replacing what is there. */
static void put_object(struct ws_repo *repo, const char *key, const char *text)
{
    struct ws_error err = {0};
    int rc = ws_storage_remove(repo->st, key, &err);

    if ((rc != 0 && rc != WS_ERR_NOT_FOUND) ||
        ws_repo_put_small(repo, key, text, strlen(text), NULL, &err) != 0)
        unit_fail(__FILE__, __LINE__, key);
}

static void put_wal(struct ws_repo *repo, const char *name, const char *text)
{
    char key[256];

    if (ws_repo_wal_key(repo, name, key, sizeof(key)) != 0)
        unit_fail(__FILE__, __LINE__, name);
    put_object(repo, key, text);
}

/* A complete backup with two bundles: manifest, data/000000, data/000001. */
static void put_backup_ref(struct ws_repo *repo, int64_t start, uint64_t s0, uint64_t s1,
                           const char *reference, char id[WS_BACKUP_ID_LEN + 1]);
static void put_backup(struct ws_repo *repo, int64_t start, uint64_t s0, uint64_t s1,
                       char id[WS_BACKUP_ID_LEN + 1])
{
    put_backup_ref(repo, start, s0, s1, NULL, id);
}

/* The same, an incr on `reference` (NULL: a full backup). */
static void put_backup_ref(struct ws_repo *repo, int64_t start, uint64_t s0, uint64_t s1,
                           const char *reference, char id[WS_BACKUP_ID_LEN + 1])
{
    struct ws_manifest m = {0};
    struct ws_error err = {0};
    char key[256], *text = NULL;
    size_t len;

    ws_backup_id_from_time(start, m.id);
    memcpy(id, m.id, WS_BACKUP_ID_LEN + 1);
    m.label = "test";
    m.start_time = start;
    m.stop_time = start + 60;
    m.start_lsn = s0 * SEG + 0x28;
    m.stop_lsn = s1 * SEG + 0x100;
    m.timeline = 1;
    m.pg_version = 150004;
    m.system_identifier = SYSID;
    m.wal_segment_size = SEG;
    m.bundles = 2;
    if (reference) {
        m.type = WS_BACKUP_INCR;
        m.block_size = 8192;
        memcpy(m.reference, reference, WS_BACKUP_ID_LEN + 1);
    }
    if (ws_manifest_format(&m, &text, &len, &err) != 0)
        unit_fail(__FILE__, __LINE__, err.msg);
    ws_backup_bundle_key(repo, m.id, 0, key, sizeof(key));
    put_object(repo, key, "bundle zero");
    ws_backup_bundle_key(repo, m.id, 1, key, sizeof(key));
    put_object(repo, key, "bundle one");
    ws_backup_manifest_key(repo, m.id, key, sizeof(key));
    put_object(repo, key, text);
    free(text);
}

/* Identity, three daily backups (segments 10, 20, 30), WAL 5..40 with a .backup file per
 * backup, a history file, and a pin on nothing. */
static void make_repo(struct ws_repo *repo, char ids[3][WS_BACKUP_ID_LEN + 1])
{
    struct ws_identity id = {0};
    char n[64], s[WS_WAL_NAME_LEN + 1];

    id.system_identifier = SYSID;
    id.pg_version = 15;
    id.wal_segment_size = SEG;
    unit_mem_repo(repo, "main", &id);
    for (int k = 0; k < 3; k++) {
        put_backup(repo, NOW - (3 - k) * DAY, 10 + 10 * (uint64_t)k, 11 + 10 * (uint64_t)k, ids[k]);
        seg_name(s, 1, 10 + 10 * (uint64_t)k);
        snprintf(n, sizeof(n), "%s.00000028.backup", s);
        put_wal(repo, n, "backup history");
    }
    for (uint64_t g = 5; g <= 40; g++) {
        seg_name(s, 1, g);
        put_wal(repo, s, "segment");
    }
    put_wal(repo, "00000002.history", "1\t0/28000000\tno recovery target specified\n");
}

static int exists(struct ws_repo *repo, const char *key)
{
    struct ws_storage_stat st;
    struct ws_error err = {0};

    return ws_storage_stat(repo->st, key, &st, &err) == 0;
}

/* No backup is complete in the catalog unless every object its manifest names, and every WAL
 * file from its start to its stop, is there. Returns the number of complete backups. */
static int consistent(struct ws_repo *repo, size_t *ncomplete)
{
    struct ws_catalog cat;
    struct ws_error err = {0};
    size_t i;
    int ok = 1;

    if (ws_catalog_load(repo, NULL, &cat, &err) != 0) {
        fprintf(stderr, "    catalog: %s\n", err.msg);
        return 0;
    }
    *ncomplete = 0;
    for (i = 0; i < cat.nbackups; i++) {
        const struct ws_catalog_backup *b = &cat.backups[i];
        char key[256];
        if (b->status != WS_BACKUP_COMPLETE)
            continue;
        (*ncomplete)++;
        for (uint32_t k = 0; k < b->m.bundles; k++) {
            ws_backup_bundle_key(repo, b->id, k, key, sizeof(key));
            if (!exists(repo, key)) {
                fprintf(stderr, "    backup %s is complete but %s is gone\n", b->id, key);
                ok = 0;
            }
        }
        for (uint64_t s = ws_manifest_start_segno(&b->m); s <= ws_manifest_stop_segno(&b->m); s++)
            if (!ws_catalog_has_seg(&cat, 1, s))
                ok = 0;
    }
    ws_catalog_free(&cat);
    return ok;
}

/* gather, plan with retain_full and execute; the storage fault, if any, is already armed. */
static int prune_full(struct ws_repo *repo, int retain_full, struct ws_prune_plan *plan_out,
                      struct ws_error *err)
{
    struct ws_prune_state st;
    struct ws_prune_input in;
    struct ws_prune_plan plan;
    struct ws_prune_result res;
    int rc;

    if ((rc = ws_prune_gather(repo, NULL, &st, err)) != 0)
        return rc;
    ws_prune_input_from_state(&st, &in);
    in.now = NOW;
    in.retain_full = retain_full;
    if ((rc = ws_prune_plan_make(&in, &plan, err)) == 0) {
        rc = ws_prune_execute(repo, &in, &plan, NULL, &res, err);
        if (plan_out) {
            plan_out->nbackups_delete = plan.nbackups_delete;
            plan_out->nwal_delete = plan.nwal_delete;
            plan_out->wal_cutoff = plan.wal_cutoff;
        }
        ws_prune_result_free(&res);
        ws_prune_plan_free(&plan);
    }
    ws_prune_state_free(&st);
    return rc;
}

/* gather, plan (retain_full = 2) and execute; the storage fault, if any, is already armed. */
static int prune_once(struct ws_repo *repo, struct ws_prune_plan *plan_out, struct ws_error *err)
{
    return prune_full(repo, 2, plan_out, err);
}
static size_t count_objects_cb_n;
static int count_cb(void *arg, const char *key, const struct ws_storage_stat *st,
                    struct ws_error *err)
{
    (void)arg, (void)key, (void)st, (void)err;
    count_objects_cb_n++;
    return 0;
}

static size_t count_objects(struct ws_repo *repo, const char *prefix)
{
    struct ws_error err = {0};

    count_objects_cb_n = 0;
    if (ws_storage_list(repo->st, prefix, count_cb, NULL, &err) != 0)
        unit_fail(__FILE__, __LINE__, err.msg);
    return count_objects_cb_n;
}

/* The state after a finished prune with retain_full = 2 of make_repo. */
static void check_final(struct ws_repo *repo, char ids[3][WS_BACKUP_ID_LEN + 1])
{
    char key[256], s[WS_WAL_NAME_LEN + 1], prefix[128];
    size_t n = 0;

    snprintf(prefix, sizeof(prefix), "main/backup/%s/", ids[0]);
    CHECK(count_objects(repo, prefix) == 0);
    snprintf(prefix, sizeof(prefix), "main/backup/%s/", ids[1]);
    CHECK(count_objects(repo, prefix) == 3);
    snprintf(prefix, sizeof(prefix), "main/backup/%s/", ids[2]);
    CHECK(count_objects(repo, prefix) == 3);
    /* WAL: 20..40 (21 segments), two .backup files, the history file */
    CHECK(count_objects(repo, "main/wal/") == 21 + 2 + 1);
    seg_name(s, 1, 19);
    ws_repo_wal_key(repo, s, key, sizeof(key));
    CHECK(!exists(repo, key));
    seg_name(s, 1, 20);
    ws_repo_wal_key(repo, s, key, sizeof(key));
    CHECK(exists(repo, key));
    CHECK(consistent(repo, &n) && n == 2);
}

static void test_execute(void)
{
    struct ws_repo repo;
    struct ws_prune_plan p = {0};
    struct ws_error err = {0};
    char ids[3][WS_BACKUP_ID_LEN + 1], key[256];
    size_t n;

    make_repo(&repo, ids);
    CHECK(consistent(&repo, &n) && n == 3);
    REQUIRE(prune_once(&repo, &p, &err) == 0);
    CHECK(p.nbackups_delete == 1 && p.nwal_delete == 15 + 1 && p.wal_cutoff == 20);
    check_final(&repo, ids);
    /* a second run has nothing to do */
    REQUIRE(prune_once(&repo, &p, &err) == 0);
    CHECK(p.nbackups_delete == 0 && p.nwal_delete == 0);
    check_final(&repo, ids);

    /* a pin: the pinned oldest of the two stays when retain_full would drop it */
    ws_backup_object_key(&repo, ids[1], WS_BACKUP_KEEP, key, sizeof(key));
    put_object(&repo, key, "pinned\n");
    {
        char id4[WS_BACKUP_ID_LEN + 1];
        char s[WS_WAL_NAME_LEN + 1];
        put_backup(&repo, NOW - HOUR, 40, 40, id4);
        REQUIRE(prune_once(&repo, &p, &err) == 0);
        CHECK(p.nbackups_delete == 0); /* ids[1] pinned, ids[2] and id4 the 2 newest */
        CHECK(exists(&repo, key));
        seg_name(s, 1, 20);
        ws_repo_wal_key(&repo, s, key, sizeof(key));
        CHECK(exists(&repo, key));
    }
    ws_repo_close(&repo);
}

/* gather reads the history file of every timeline that needs one; a damaged or missing one is
 * a problem the planner holds on (finding 1), and nothing of the backups goes. */
static void test_gather_histories(void)
{
    struct ws_repo repo;
    struct ws_error err = {0};
    char ids[3][WS_BACKUP_ID_LEN + 1], s[WS_WAL_NAME_LEN + 1];
    struct ws_prune_state st;
    struct ws_prune_input in;
    struct ws_prune_plan plan;
    struct ws_prune_result res;

    make_repo(&repo, ids);
    /* timeline 2 (left timeline 1 at 0/28000000, segment 40) has WAL now */
    seg_name(s, 2, 40);
    put_wal(&repo, s, "segment");
    seg_name(s, 2, 41);
    put_wal(&repo, s, "segment");
    REQUIRE(ws_prune_gather(&repo, NULL, &st, &err) == 0);
    CHECK(st.latest_tli == 2 && st.nhistories == 1 && st.histories[0].tli == 2);
    CHECK(st.histories[0].problem == NULL && st.histories[0].nsw == 1);
    CHECK(st.histories[0].sw[0].tli == 1 && st.histories[0].sw[0].end_lsn == 0x28000000);
    ws_prune_input_from_state(&st, &in);
    in.now = NOW;
    in.retain_full = 2;
    REQUIRE(ws_prune_plan_make(&in, &plan, &err) == 0);
    CHECK(plan.hold == 0 && plan.nbackups_delete == 1 && plan.ntls == 2);
    CHECK(plan.tls[1].tli == 2 && plan.tls[1].rule == WS_TL_REACHED);
    ws_prune_plan_free(&plan);
    ws_prune_state_free(&st);

    /* damaged: held, nothing deleted by retention, timeline 2's WAL stays */
    put_wal(&repo, "00000002.history", "this is not a history file\n");
    REQUIRE(ws_prune_gather(&repo, NULL, &st, &err) == 0);
    CHECK(st.nhistories == 1 && st.histories[0].problem &&
          strstr(st.histories[0].problem, "00000002.history"));
    ws_prune_input_from_state(&st, &in);
    in.now = NOW;
    in.retain_full = 2;
    REQUIRE(ws_prune_plan_make(&in, &plan, &err) == 0);
    CHECK(plan.hold == WS_HOLD_LINEAGE && plan.nbackups_delete == 0);
    CHECK(plan.tls[1].rule == WS_TL_UNKNOWN && plan.tls[1].cutoff == 0);
    REQUIRE(ws_prune_execute(&repo, &in, &plan, NULL, &res, &err) == 0);
    CHECK(res.backups_deleted == 0);
    ws_prune_result_free(&res);
    ws_prune_plan_free(&plan);
    ws_prune_state_free(&st);
    {
        char key[256];
        size_t n = 0;
        seg_name(s, 2, 40);
        ws_repo_wal_key(&repo, s, key, sizeof(key));
        CHECK(exists(&repo, key));
        CHECK(consistent(&repo, &n) && n == 3);
    }

    /* missing: the same */
    {
        char key[256];
        ws_repo_wal_key(&repo, "00000002.history", key, sizeof(key));
        REQUIRE(ws_storage_remove(repo.st, key, &err) == 0);
    }
    REQUIRE(ws_prune_gather(&repo, NULL, &st, &err) == 0);
    CHECK(st.nhistories == 1 && st.histories[0].problem &&
          strcmp(st.histories[0].problem, "not in the repository") == 0);
    ws_prune_input_from_state(&st, &in);
    in.now = NOW;
    in.retain_full = 2;
    REQUIRE(ws_prune_plan_make(&in, &plan, &err) == 0);
    CHECK(plan.hold == WS_HOLD_LINEAGE && plan.nbackups_delete == 0);
    CHECK(strstr(plan.hold_msg, "00000002.history: not in the repository") != NULL);
    ws_prune_plan_free(&plan);
    ws_prune_state_free(&st);
    ws_repo_close(&repo);
}

/* Finding 5: a full repository refuses the tombstone (the only object a prune writes). The
 * backup is made incomplete by removing its manifest first, and the run goes on. */
static void test_execute_tombstone_fails(void)
{
    struct ws_repo repo;
    struct ws_error err = {0};
    char ids[3][WS_BACKUP_ID_LEN + 1];
    int rc;

    make_repo(&repo, ids);
    ws_storage_mem_fault(repo.st, WS_MEM_PUT_FINISH, 1, WS_ERR_STORAGE);
    rc = prune_once(&repo, NULL, &err);
    ws_storage_mem_fault(repo.st, 0, 0, 0);
    CHECK(rc == 0);
    check_final(&repo, ids);
    ws_repo_close(&repo);
}

/* The executor deletes backups in plan->delete_order (the planner's, which puts a backup after
 * those that reference it), not in time order. */
static void test_execute_delete_order(void)
{
    struct ws_repo repo;
    struct ws_error err = {0};
    char ids[3][WS_BACKUP_ID_LEN + 1], line[512];
    struct ws_prune_state st;
    struct ws_prune_input in;
    struct ws_prune_plan plan;
    struct ws_prune_result res;
    FILE *report = tmpfile();
    size_t tmp;

    REQUIRE(report != NULL);
    make_repo(&repo, ids);
    REQUIRE(ws_prune_gather(&repo, NULL, &st, &err) == 0);
    ws_prune_input_from_state(&st, &in);
    in.now = NOW;
    in.retain_full = 1;
    REQUIRE(ws_prune_plan_make(&in, &plan, &err) == 0);
    REQUIRE(plan.nbackups_delete == 2);
    CHECK(strcmp(in.backups[plan.delete_order[0]].id, ids[0]) == 0); /* no chains: oldest first */
    tmp = plan.delete_order[0];
    plan.delete_order[0] = plan.delete_order[1];
    plan.delete_order[1] = tmp;
    REQUIRE(ws_prune_execute(&repo, &in, &plan, report, &res, &err) == 0);
    CHECK(res.backups_deleted == 2);
    rewind(report);
    CHECK(fgets(line, sizeof(line), report) && strstr(line, ids[1]));
    CHECK(fgets(line, sizeof(line), report) && strstr(line, ids[0]));
    fclose(report);
    ws_prune_result_free(&res);
    ws_prune_plan_free(&plan);
    ws_prune_state_free(&st);
    ws_repo_close(&repo);
}

/* A failure at the nth storage call of the given kind: an interrupted prune. */
static void test_execute_interrupted(void)
{
    static const int ops[] = {WS_MEM_REMOVE, WS_MEM_PUT_FINISH, WS_MEM_LIST};
    size_t o, interrupted = 0;

    for (o = 0; o < sizeof(ops) / sizeof(ops[0]); o++) {
        for (int nth = 1; nth < 40; nth++) {
            struct ws_repo repo;
            struct ws_error err = {0};
            char ids[3][WS_BACKUP_ID_LEN + 1];
            size_t n;
            int rc;

            make_repo(&repo, ids);
            ws_storage_mem_fault(repo.st, ops[o], nth, WS_ERR_STORAGE);
            rc = prune_once(&repo, NULL, &err);
            ws_storage_mem_fault(repo.st, 0, 0, 0);
            if (!consistent(&repo, &n) || n < 2) {
                fprintf(stderr, "    after a fault at call %d of op %d (rc %d: %s)\n", nth, ops[o],
                        rc, err.msg);
                unit_fail(__FILE__, __LINE__, "inconsistent after an interrupted prune");
            }
            /* the next run finishes */
            if (prune_once(&repo, NULL, &err) != 0)
                unit_fail(__FILE__, __LINE__, err.msg);
            check_final(&repo, ids);
            ws_repo_close(&repo);
            if (rc == 0)
                break; /* the fault came after the last call */
            interrupted++;
        }
    }
    /* 21 removes (manifest, 2 bundles, pin, tombstone, 16 WAL files), 5 listings (the fifth:
     * wal-receive's streamed chunks); a refused tombstone (the one put) does not interrupt: the
     * manifest goes first instead (execute_tombstone_fails) */
    CHECK(interrupted == 21 + 5);
}

/* F <- I1 <- I2, then a newer full backup: with retain_full = 1 the chain goes, newest first.
 * A failure at any storage call of that prune leaves no backup with a manifest whose reference
 * is gone or being deleted, and the next run finishes. */
static int references_there(struct ws_repo *repo)
{
    struct ws_catalog cat;
    struct ws_error err = {0};
    int ok = 1;

    if (ws_catalog_load(repo, NULL, &cat, &err) != 0)
        return 0;
    for (size_t i = 0; i < cat.nbackups; i++) {
        const struct ws_catalog_backup *b = &cat.backups[i], *r;
        if (!b->has_manifest || b->m.type == WS_BACKUP_FULL)
            continue;
        r = ws_catalog_find(&cat, b->m.reference);
        if (!r || r->status == WS_BACKUP_DELETING || !r->has_manifest) {
            fprintf(stderr, "    backup %s: its reference %s is gone\n", b->id, b->m.reference);
            ok = 0;
        }
    }
    ws_catalog_free(&cat);
    return ok;
}

static void test_execute_chain_interrupted(void)
{
    size_t interrupted = 0;

    for (int nth = 1; nth < 60; nth++) {
        struct ws_repo repo;
        struct ws_identity id = {0};
        struct ws_error err = {0};
        char ids[4][WS_BACKUP_ID_LEN + 1], s[WS_WAL_NAME_LEN + 1];
        size_t n;
        int rc;

        id.system_identifier = SYSID;
        id.pg_version = 15;
        id.wal_segment_size = SEG;
        unit_mem_repo(&repo, "main", &id);
        put_backup_ref(&repo, NOW - 4 * DAY, 10, 11, NULL, ids[0]);
        put_backup_ref(&repo, NOW - 3 * DAY, 20, 21, ids[0], ids[1]);
        put_backup_ref(&repo, NOW - 2 * DAY, 30, 31, ids[1], ids[2]);
        put_backup_ref(&repo, NOW - DAY, 40, 41, NULL, ids[3]);
        for (uint64_t g = 10; g <= 41; g++) {
            seg_name(s, 1, g);
            put_wal(&repo, s, "segment");
        }
        REQUIRE(consistent(&repo, &n) && n == 4);
        ws_storage_mem_fault(repo.st, WS_MEM_REMOVE, nth, WS_ERR_STORAGE);
        rc = prune_full(&repo, 1, NULL, &err);
        ws_storage_mem_fault(repo.st, 0, 0, 0);
        if (!references_there(&repo) || !consistent(&repo, &n)) {
            fprintf(stderr, "    after a fault at remove %d (rc %d: %s)\n", nth, rc, err.msg);
            unit_fail(__FILE__, __LINE__, "a reference went before the backups that need it");
        }
        if (prune_full(&repo, 1, NULL, &err) != 0)
            unit_fail(__FILE__, __LINE__, err.msg);
        CHECK(consistent(&repo, &n) && n == 1);
        ws_repo_close(&repo);
        if (rc == 0)
            break;
        interrupted++;
    }
    /* 3 backups of 5 removes each (manifest, 2 bundles, pin, tombstone) and 30 WAL files */
    CHECK(interrupted == 3 * 5 + 30);
}

/* ---- logical backups (retain_logical, retain_logical_time) ---- */

struct lfx {
    struct ws_prune_logical b[16];
    size_t n;
    struct ws_prune_logical_input in;
    struct ws_prune_logical_plan plan;
    struct ws_error err;
};

/* A logical backup started `age` seconds before NOW (its id says when), last written then. */
static size_t ladd(struct lfx *f, int64_t age, int status, int pinned)
{
    struct ws_prune_logical *b = &f->b[f->n];

    memset(b, 0, sizeof(*b));
    ws_backup_id_from_time(NOW - age, b->id);
    b->status = status;
    b->pinned = pinned;
    b->last_write = NOW - age;
    b->stored_bytes = 1000 + f->n;
    return f->n++;
}

static int lplan(struct lfx *f, int count, int64_t window)
{
    f->in.backups = f->b;
    f->in.n = f->n;
    f->in.now = NOW;
    f->in.retain_logical = count;
    f->in.retain_logical_time = window;
    f->in.incomplete_age = 60;
    return ws_prune_logical_plan_make(&f->in, &f->plan, &f->err);
}

static void test_logical_no_policy(void)
{
    struct lfx f = {0};

    ladd(&f, DAY, WS_LOGICAL_COMPLETE, 0);
    CHECK(lplan(&f, 0, 0) == WS_ERR_CONFIG && strstr(f.err.msg, "retain_logical"));
}

static void test_logical_by_count(void)
{
    struct lfx f = {0};
    size_t d5, d4, d3, d2, d1, pin, inv, young, old, oldpin;

    /* added out of order: the plan orders by id */
    d2 = ladd(&f, 2 * DAY, WS_LOGICAL_COMPLETE, 0);
    d5 = ladd(&f, 5 * DAY, WS_LOGICAL_COMPLETE, 0);
    d1 = ladd(&f, 1 * DAY, WS_LOGICAL_COMPLETE, 0);
    d4 = ladd(&f, 4 * DAY, WS_LOGICAL_COMPLETE, 0);
    d3 = ladd(&f, 3 * DAY, WS_LOGICAL_COMPLETE, 0);
    pin = ladd(&f, 9 * DAY, WS_LOGICAL_COMPLETE, 1);
    inv = ladd(&f, 8 * DAY, WS_LOGICAL_INVALID, 0);
    young = ladd(&f, 10 * MIN, WS_LOGICAL_INCOMPLETE, 0);     /* a create running */
    old = ladd(&f, 7 * DAY, WS_LOGICAL_INCOMPLETE, 0);        /* a killed create */
    oldpin = ladd(&f, 6 * DAY + 1, WS_LOGICAL_INCOMPLETE, 1); /* pinned: stays */
    REQUIRE(lplan(&f, 2, 0) == 0);
    CHECK(f.plan.keep[d1] && f.plan.why[d1] == (WS_LKEEP_NEWEST | WS_LKEEP_COUNT));
    CHECK(f.plan.keep[d2] && f.plan.why[d2] == WS_LKEEP_COUNT);
    CHECK(!f.plan.keep[d3] && f.plan.why[d3] == WS_LDROP_RETENTION);
    CHECK(!f.plan.keep[d4] && !f.plan.keep[d5]);
    CHECK(f.plan.keep[pin] && f.plan.why[pin] == WS_LKEEP_PINNED); /* not counted either */
    CHECK(f.plan.keep[inv] && f.plan.why[inv] == WS_LKEEP_INVALID);
    CHECK(f.plan.keep[young] && f.plan.why[young] == WS_LKEEP_YOUNG);
    CHECK(!f.plan.keep[old] && f.plan.why[old] == WS_LDROP_ABANDONED);
    CHECK(f.plan.keep[oldpin] && f.plan.why[oldpin] == WS_LKEEP_PINNED);
    /* oldest first: old (7 d), d5, d4, d3 */
    REQUIRE(f.plan.ndelete == 4);
    CHECK(f.plan.deletes[0] == old && f.plan.deletes[1] == d5 && f.plan.deletes[2] == d4 &&
          f.plan.deletes[3] == d3);
    CHECK(f.plan.bytes == f.b[old].stored_bytes + f.b[d5].stored_bytes + f.b[d4].stored_bytes +
                              f.b[d3].stored_bytes);
    ws_prune_logical_plan_free(&f.plan);
}

static void test_logical_by_time(void)
{
    struct lfx f = {0};
    size_t d1, d3, d3b, d4, d6;
    char why[512];

    d6 = ladd(&f, 6 * DAY, WS_LOGICAL_COMPLETE, 0);
    d4 = ladd(&f, 4 * DAY, WS_LOGICAL_COMPLETE, 0);
    d3b = ladd(&f, 3 * DAY + 1, WS_LOGICAL_COMPLETE, 0); /* a second before the window */
    d3 = ladd(&f, 3 * DAY, WS_LOGICAL_COMPLETE, 0);      /* at its start: inside */
    d1 = ladd(&f, 1 * DAY, WS_LOGICAL_COMPLETE, 0);
    REQUIRE(lplan(&f, 0, 3 * DAY) == 0);
    CHECK(f.plan.why[d1] == (WS_LKEEP_NEWEST | WS_LKEEP_WINDOW));
    CHECK(f.plan.why[d3] == WS_LKEEP_WINDOW);
    CHECK(!f.plan.keep[d3b] && !f.plan.keep[d4] && !f.plan.keep[d6]);
    CHECK(f.plan.ndelete == 3 && f.plan.deletes[0] == d6 && f.plan.deletes[2] == d3b);
    ws_prune_logical_why_text(&f.in, f.plan.why[d3], why, sizeof(why));
    CHECK(strstr(why, "within the last 3d (retain_logical_time)") != NULL);
    ws_prune_logical_plan_free(&f.plan);
    /* both policies: what either keeps */
    REQUIRE(lplan(&f, 4, 3 * DAY) == 0);
    CHECK(f.plan.keep[d3b] && f.plan.keep[d4] && !f.plan.keep[d6] && f.plan.ndelete == 1);
    CHECK(f.plan.why[d4] == WS_LKEEP_COUNT);
    ws_prune_logical_plan_free(&f.plan);
    /* every backup older than the window: the newest complete one stays all the same */
    REQUIRE(lplan(&f, 0, HOUR) == 0);
    CHECK(f.plan.keep[d1] && f.plan.why[d1] == WS_LKEEP_NEWEST && f.plan.ndelete == 4);
    ws_prune_logical_plan_free(&f.plan);
}

/* A logical backup through the catalog (repo/logical.h): claim, one dump object, manifest. */
static void put_logical(struct ws_repo *repo, const char *id, const struct ws_key *key)
{
    struct ws_logical_manifest m = {0};
    struct ws_logical_object o = {0};
    struct ws_config cfg;
    struct ws_sink *w = NULL;
    struct ws_error err = {0};
    int rc;

    unit_config(&cfg, "repo", "/nonexistent", NULL);
    memcpy(m.id, id, sizeof(m.id));
    m.label = strdup("");
    m.start_time = ws_backup_id_time(id);
    m.stop_time = m.start_time + 5;
    m.pg_version = m.pg_dump_version = 150004;
    rc = ws_logical_claim(repo, id, &err);
    if (rc == 0)
        rc = ws_logical_add_dump(&m, "app", WS_LOGICAL_CUSTOM, &err);
    if (rc == 0 && (rc = ws_logical_object_open(repo, id, "000.dump", &cfg, key, &w, &err)) == 0 &&
        (rc = ws_sink_write(w, "PGDMP dump bytes", 16, &err)) == 0 &&
        (rc = ws_sink_finish(w, &err)) == 0) {
        ws_logical_object_done(w, &o);
        o.name = "000.dump";
        rc = ws_logical_add_object(&m, &o, &err);
    }
    ws_sink_free(w);
    if (rc == 0)
        rc = ws_logical_manifest_store(repo, &m, &cfg, key, &err);
    if (rc != 0)
        unit_fail(__FILE__, __LINE__, err.msg);
    ws_logical_manifest_free(&m);
    ws_config_free(&cfg);
}

/* A prune of three backdated logical backups with retain_logical 1, a fault injected at the nth
 * storage call of kind op; *rc its result. */
static void prune_logical_once(struct ws_repo *repo, const struct ws_keyring *kr, int64_t now,
                               int op, int nth, int *rc, struct ws_error *err)
{
    struct ws_prune_logical_state st = {0};
    struct ws_prune_lrun lr = {0};

    *rc = ws_prune_logical_gather(repo, kr, &st, err);
    if (*rc == 0) {
        lr.in.backups = st.backups;
        lr.in.n = st.n;
        lr.in.now = now;
        lr.in.retain_logical = 1;
        *rc = ws_prune_logical_plan_make(&lr.in, &lr.plan, err);
    }
    ws_storage_mem_fault(repo->st, op, nth, WS_ERR_STORAGE);
    if (*rc == 0)
        *rc = ws_prune_logical_execute(repo, &lr.in, &lr.plan, NULL, NULL, &lr.deleted, &lr.bytes,
                                       err);
    ws_storage_mem_fault(repo->st, 0, 0, 0);
    ws_prune_logical_plan_free(&lr.plan);
    ws_prune_logical_state_free(&st);
}

static void test_logical_execute_faults(void)
{
    static const int ops[] = {WS_MEM_REMOVE, WS_MEM_LIST};
    struct ws_key key;
    struct ws_keyring kr;
    char ids[3][WS_BACKUP_ID_LEN + 1];
    int op, nth, failed = 0;

    unit_key(&key, 3);
    unit_keyring(&kr, &key, 1);
    for (op = 0; op < 2; op++)
        for (nth = 1; nth < 16; nth++) {
            struct ws_repo repo = {0};
            struct ws_logical_catalog cat = {0};
            struct ws_error err = {0};
            int rc, k;

            REQUIRE(unit_mem_repo(&repo, "main", NULL) == 0);
            for (k = 0; k < 3; k++) {
                ws_backup_id_from_time(NOW - (3 - k) * DAY, ids[k]);
                put_logical(&repo, ids[k], &key);
            }
            prune_logical_once(&repo, &kr, NOW, ops[op], nth, &rc, &err);
            failed += rc != 0;
            REQUIRE(ws_logical_catalog_load(&repo, &kr, &cat, &err) == 0);
            /* after any failure: the kept one complete; the others gone, incomplete, or (their
             * manifest's removal failed) complete with every object */
            for (k = 0; k < 3; k++) {
                const struct ws_logical_entry *e = ws_logical_catalog_find(&cat, ids[k]);
                if (k == 2)
                    CHECK(e && e->status == WS_LOGICAL_COMPLETE);
                else if (e && e->status == WS_LOGICAL_COMPLETE)
                    CHECK(rc != 0 && e->nobjects == 3); /* claim, dump, manifest */
            }
            ws_logical_catalog_free(&cat);
            /* a run after the age limit finishes (what an interrupted delete leaves is incomplete,
             * like a killed create: the objects' times are this machine's clock) */
            prune_logical_once(&repo, &kr, (int64_t)time(NULL) + 2 * DAY, 0, 0, &rc, &err);
            CHECK(rc == 0);
            REQUIRE(ws_logical_catalog_load(&repo, &kr, &cat, &err) == 0);
            CHECK(cat.n == 1 && strcmp(cat.backups[0].id, ids[2]) == 0);
            ws_logical_catalog_free(&cat);
            ws_storage_close(repo.st);
        }
    CHECK(failed > 0);
}

const struct unit_test unit_tests[] = {
    {"no_policy", test_no_policy},
    {"logical_no_policy", test_logical_no_policy},
    {"logical_by_count", test_logical_by_count},
    {"logical_by_time", test_logical_by_time},
    {"logical_execute_faults", test_logical_execute_faults},
    {"retain_full", test_retain_full},
    {"order_by_time_and_lsn", test_order_by_time_and_lsn},
    {"retain_time", test_retain_time},
    {"both_union", test_both_union},
    {"newest_complete_never_deleted", test_newest_complete_never_deleted},
    {"pins", test_pins},
    {"timelines_failover", test_timelines_failover},
    {"timelines_promoted_restore", test_timelines_promoted_restore},
    {"stray_timeline", test_stray_timeline},
    {"unknown_position_kept", test_unknown_position_kept},
    {"retain_time_timelines", test_retain_time_timelines},
    {"clock_disagreement", test_clock_disagreement},
    {"incomplete_backups", test_incomplete_backups},
    {"running_before_newest", test_running_before_newest},
    {"no_complete_backup", test_no_complete_backup},
    {"wal_gaps", test_wal_gaps},
    {"why_text", test_why_text},
    {"chain_retain_full_counts_full", test_chain_retain_full_counts_full},
    {"chain_referenced_old_full", test_chain_referenced_old_full},
    {"chain_pin_and_deleting_link", test_chain_pin_and_deleting_link},
    {"chain_not_complete", test_chain_not_complete},
    {"step_order", test_step_order},
    {"step_latest_timeline", test_step_latest_timeline},
    {"step_lineage", test_step_lineage},
    {"step_hold_lineage", test_step_hold_lineage},
    {"step_hold_order", test_step_hold_order},
    {"step_policies", test_step_policies},
    {"step_judge_incomplete", test_step_judge_incomplete},
    {"step_latest_reachable", test_step_latest_reachable},
    {"step_hold_and_tally", test_step_hold_and_tally},
    {"step_link_chains", test_step_link_chains},
    {"step_keep_referenced", test_step_keep_referenced},
    {"step_delete_order", test_step_delete_order},
    {"step_wal_cutoff", test_step_wal_cutoff},
    {"step_timeline_cutoffs", test_step_timeline_cutoffs},
    {"step_select_wal", test_step_select_wal},
    {"step_select_chunks", test_step_select_chunks},
    {"execute", test_execute},
    {"gather_histories", test_gather_histories},
    {"execute_tombstone_fails", test_execute_tombstone_fails},
    {"execute_delete_order", test_execute_delete_order},
    {"execute_interrupted", test_execute_interrupted},
    {"execute_chain_interrupted", test_execute_chain_interrupted},
    {NULL, NULL},
};
