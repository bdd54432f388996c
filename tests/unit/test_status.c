/*
 * basebackup status (ops/status.h), its pure parts: gap detection over a catalog (needed or
 * not, pending or not), the archive lag from the archiver's last file and the current position,
 * the verdict for each threshold and their precedence, and the outputs: the Prometheus
 * exposition (HELP and TYPE before samples, label escaping, counters ending in _total), its
 * atomic file, and the JSON (one object on one line); the spool read as push-ahead, prefetch and
 * wal-receive leave it (links not followed, nothing created).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ops/status.h"
#include "ops/status_int.h"
#include "pg/wal.h"
#include "fixture.h"
#include "unit.h"

#define SEG (16u << 20)
#define NOW INT64_C(1795342500) /* 2026-11-22T10:15:00Z */
#define HOUR 3600
#define US(t) ((t)*INT64_C(1000000)) /* seconds to pg_stat_archiver's microseconds */

static const struct ws_status_limits no_limits = {-1, -1, -1, -1};

/* Timeline 1: 1 2 3 . 5 6 . . 9; timeline 2: 10 . 12; a complete backup on 1 from segment 5. */
static void gap_catalog(struct ws_catalog *cat, struct ws_wal_seg *segs,
                        struct ws_catalog_backup *b)
{
    static const struct ws_wal_seg s[] = {{1, 1}, {1, 2}, {1, 3},  {1, 5},
                                          {1, 6}, {1, 9}, {2, 10}, {2, 12}};

    memset(cat, 0, sizeof(*cat));
    memset(b, 0, sizeof(*b));
    memcpy(segs, s, sizeof(s));
    cat->identity.wal_segment_size = SEG;
    cat->has_identity = 1;
    cat->segs = segs;
    cat->nsegs = sizeof(s) / sizeof(s[0]);
    snprintf(b->id, sizeof(b->id), "20261122T090000Z");
    b->status = WS_BACKUP_COMPLETE;
    b->has_manifest = 1;
    b->m.timeline = 1;
    b->m.wal_segment_size = SEG;
    b->m.start_lsn = ws_wal_segno_to_lsn(5, SEG) + 0x28;
    cat->backups = b;
    cat->nbackups = 1;
}

static void test_gaps(void)
{
    struct ws_catalog cat;
    struct ws_wal_seg segs[8];
    struct ws_catalog_backup b;
    struct ws_status_repo r;
    struct ws_error err = {0};

    gap_catalog(&cat, segs, &b);
    memset(&r, 0, sizeof(r));
    REQUIRE(ws_status_find_gaps(&cat, &r, &err) == 0);
    REQUIRE(r.ngaps == 3);
    CHECK(r.gaps[0].tli == 1 && r.gaps[0].first == 4 && r.gaps[0].last == 4);
    CHECK(!r.gaps[0].needed); /* wholly below the backup's start: nothing restores through it */
    CHECK(r.gaps[1].tli == 1 && r.gaps[1].first == 7 && r.gaps[1].last == 8);
    CHECK(r.gaps[1].needed);
    CHECK(r.gaps[2].tli == 2 && r.gaps[2].first == 11 && r.gaps[2].last == 11);
    CHECK(r.gaps[2].needed); /* no backup on timeline 2: every gap counts */
    free(r.gaps);

    /* the backup incomplete: no floor, the early gap counts too */
    b.status = WS_BACKUP_INCOMPLETE;
    memset(&r, 0, sizeof(r));
    REQUIRE(ws_status_find_gaps(&cat, &r, &err) == 0);
    REQUIRE(r.ngaps == 3);
    CHECK(r.gaps[0].needed);
    free(r.gaps);

    /* no gap at all */
    cat.nsegs = 3;
    memset(&r, 0, sizeof(r));
    REQUIRE(ws_status_find_gaps(&cat, &r, &err) == 0);
    CHECK(r.ngaps == 0);
    free(r.gaps);
}

static void test_pending(void)
{
    struct ws_catalog cat;
    struct ws_wal_seg segs[8];
    struct ws_catalog_backup b;
    struct ws_status s;
    struct ws_error err = {0};

    gap_catalog(&cat, segs, &b);
    memset(&s, 0, sizeof(s));
    s.repo.seg_size = SEG;
    REQUIRE(ws_status_find_gaps(&cat, &s.repo, &err) == 0);
    /* not reached: nothing is pending */
    ws_status_mark_pending(&s);
    CHECK(!s.repo.gaps[0].pending && !s.repo.gaps[1].pending && !s.repo.gaps[2].pending);
    /* the server archived up to segment 6 of timeline 1: 7-8 may still come */
    s.server.reached = 1;
    snprintf(s.server.a.last_archived_wal, sizeof(s.server.a.last_archived_wal), "%s",
             "000000010000000000000006");
    ws_status_mark_pending(&s);
    CHECK(!s.repo.gaps[0].pending);
    CHECK(s.repo.gaps[1].pending);
    CHECK(!s.repo.gaps[2].pending); /* another timeline */
    /* archived beyond the gap: it is real */
    s.repo.gaps[1].pending = 0;
    snprintf(s.server.a.last_archived_wal, sizeof(s.server.a.last_archived_wal), "%s",
             "000000010000000000000009");
    ws_status_mark_pending(&s);
    CHECK(!s.repo.gaps[1].pending);
    /* a .history name says nothing about segments */
    snprintf(s.server.a.last_archived_wal, sizeof(s.server.a.last_archived_wal), "%s",
             "00000002.history");
    ws_status_mark_pending(&s);
    CHECK(!s.repo.gaps[2].pending);
    ws_status_free(&s);
}

static void test_archive_lag(void)
{
    uint64_t segs = 99, bytes = 99;

    /* archived 3; the server writes at the start of 6: 4 and 5 complete, not archived */
    CHECK(ws_status_archive_lag(0x6000000, "000000010000000000000003", SEG, &segs, &bytes) == 0);
    CHECK(segs == 2 && bytes == 0x2000000);
    /* in the middle of 6: the same complete segments, more bytes */
    CHECK(ws_status_archive_lag(0x6000100, "000000010000000000000003", SEG, &segs, &bytes) == 0);
    CHECK(segs == 2 && bytes == 0x2000100);
    /* just switched after archiving 3: nothing waits */
    CHECK(ws_status_archive_lag(0x4000000, "000000010000000000000003", SEG, &segs, &bytes) == 0);
    CHECK(segs == 0 && bytes == 0);
    CHECK(ws_status_archive_lag(0x4000100, "000000010000000000000003", SEG, &segs, &bytes) == 0);
    CHECK(segs == 0 && bytes == 0x100);
    /* .partial and .backup names stand for their segment */
    CHECK(ws_status_archive_lag(0x6000000, "000000010000000000000003.partial", SEG, &segs,
                                &bytes) == 0 &&
          segs == 2);
    CHECK(ws_status_archive_lag(0x6000000, "000000010000000000000003.00000028.backup", SEG, &segs,
                                &bytes) == 0 &&
          segs == 2);
    /* a position behind the archived segment (another timeline's numbering): no lag */
    CHECK(ws_status_archive_lag(0x1000000, "000000010000000000000003", SEG, &segs, &bytes) == 0);
    CHECK(segs == 0 && bytes == 0);
    /* other segment sizes: 1 MiB, archived 0x10, position at 0x20 */
    CHECK(ws_status_archive_lag(0x2000000, "000000010000000000000010", 1u << 20, &segs, &bytes) ==
          0);
    CHECK(segs == 0x2000000 / (1u << 20) - 0x10 - 1);
    /* no segment named: unknown */
    CHECK(ws_status_archive_lag(0x6000000, "00000002.history", SEG, &segs, &bytes) == -1);
    CHECK(ws_status_archive_lag(0x6000000, "", SEG, &segs, &bytes) == -1);
    CHECK(ws_status_archive_lag(0x6000000, "RECOVERYXLOG", SEG, &segs, &bytes) == -1);
    CHECK(ws_status_archive_lag(0x6000000, "000000010000000000000003", 12345, &segs, &bytes) == -1);
}

/* A healthy status: a backup an hour old, WAL stored a minute ago, the server archiving. */
static void healthy(struct ws_status *s)
{
    static struct ws_status_timeline tl;

    memset(s, 0, sizeof(*s));
    snprintf(s->cluster, sizeof(s->cluster), "main");
    snprintf(s->location, sizeof(s->location), "/srv/walsafe");
    snprintf(s->slot_name, sizeof(s->slot_name), "walsafe");
    s->now = NOW;
    s->repo.has_identity = 1;
    s->repo.seg_size = SEG;
    s->repo.latest_tli = 1;
    memset(&tl, 0, sizeof(tl));
    tl.tli = 1;
    tl.first = 2;
    tl.last = 9;
    tl.segments = 8;
    tl.newest_mtime = NOW - 60;
    s->repo.tls = &tl;
    s->repo.ntls = 1;
    s->repo.backups[WS_BACKUP_COMPLETE] = 1;
    s->repo.has_latest = 1;
    snprintf(s->repo.latest_id, sizeof(s->repo.latest_id), "20261122T091500Z");
    s->repo.latest_stop_time = NOW - HOUR;
    s->server.reached = 1;
    s->server.a.archived_count = 8;
    s->server.a.last_archived_us = US(NOW - 60);
    snprintf(s->server.a.last_archived_wal, sizeof(s->server.a.last_archived_wal),
             "000000010000000000000009");
    s->server.has_lag = 1;
}

/* healthy, then one failure of failed_wal and the last success of archived_wal, both within the
 * second NOW - 10, at the given microseconds of it. */
static void same_second(struct ws_status *s, const char *failed_wal, int64_t failed_usec,
                        const char *archived_wal, int64_t archived_usec)
{
    healthy(s);
    s->server.a.failed_count = 1;
    s->server.a.last_failed_us = US(NOW - 10) + failed_usec;
    s->server.a.last_archived_us = US(NOW - 10) + archived_usec;
    snprintf(s->server.a.last_failed_wal, sizeof(s->server.a.last_failed_wal), "%s", failed_wal);
    snprintf(s->server.a.last_archived_wal, sizeof(s->server.a.last_archived_wal), "%s",
             archived_wal);
}

static int has_reason(const struct ws_status_verdict *v, const char *check, int state)
{
    for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->reasons[i].check, check) == 0 && v->reasons[i].state == state)
            return 1;
    return 0;
}

static void test_verdict_repository(void)
{
    struct ws_status s;
    struct ws_status_verdict v;
    struct ws_status_limits l = {4, 26 * HOUR, HOUR, -1};
    struct ws_status_gap gap = {1, 5, 5, 1, 0};

    healthy(&s);
    ws_status_evaluate(&s, &no_limits, &v);
    CHECK(v.state == WS_STATUS_OK && v.n == 0);
    ws_status_evaluate(&s, &l, &v);
    CHECK(v.state == WS_STATUS_OK && v.n == 0);

    /* backup age: one second over the limit, exactly at it, none at all */
    s.repo.latest_stop_time = NOW - 26 * HOUR - 1;
    ws_status_evaluate(&s, &l, &v);
    CHECK(v.state == WS_STATUS_CRITICAL && has_reason(&v, "backup_age", WS_STATUS_CRITICAL));
    ws_status_evaluate(&s, &no_limits, &v);
    CHECK(v.state == WS_STATUS_OK); /* no limit, no verdict on age */
    s.repo.latest_stop_time = NOW - 26 * HOUR;
    ws_status_evaluate(&s, &l, &v);
    CHECK(v.state == WS_STATUS_OK);
    s.repo.has_latest = 0;
    s.repo.backups[WS_BACKUP_COMPLETE] = 0;
    ws_status_evaluate(&s, &l, &v);
    CHECK(v.state == WS_STATUS_CRITICAL && has_reason(&v, "backup_age", WS_STATUS_CRITICAL));
    CHECK(strstr(v.reasons[0].msg, "no complete backup") != NULL);

    /* WAL age, and no WAL at all */
    healthy(&s);
    s.repo.tls[0].newest_mtime = NOW - HOUR - 1;
    ws_status_evaluate(&s, &l, &v);
    CHECK(v.state == WS_STATUS_CRITICAL && has_reason(&v, "wal_age", WS_STATUS_CRITICAL));
    s.repo.ntls = 0;
    ws_status_evaluate(&s, &l, &v);
    CHECK(has_reason(&v, "wal_age", WS_STATUS_CRITICAL));

    /* gaps: needed and real is CRITICAL without any limit; pending or not needed is not */
    healthy(&s);
    s.repo.gaps = &gap;
    s.repo.ngaps = 1;
    ws_status_evaluate(&s, &no_limits, &v);
    CHECK(v.state == WS_STATUS_CRITICAL && has_reason(&v, "wal_gap", WS_STATUS_CRITICAL));
    CHECK(strstr(v.reasons[0].msg, "000000010000000000000005 to 000000010000000000000005"));
    gap.pending = 1;
    ws_status_evaluate(&s, &no_limits, &v);
    CHECK(v.state == WS_STATUS_OK);
    gap.pending = 0;
    gap.needed = 0;
    ws_status_evaluate(&s, &no_limits, &v);
    CHECK(v.state == WS_STATUS_OK);

    /* logical backups: their own limit, and none at all */
    healthy(&s);
    {
        struct ws_status_limits ll = {-1, -1, -1, 26 * HOUR};
        ws_status_evaluate(&s, &ll, &v);
        CHECK(v.state == WS_STATUS_CRITICAL && has_reason(&v, "logical_age", WS_STATUS_CRITICAL));
        s.repo.has_logical_latest = 1;
        s.repo.logical_latest_stop_time = NOW - 26 * HOUR;
        ws_status_evaluate(&s, &ll, &v);
        CHECK(v.state == WS_STATUS_OK);
        s.repo.logical_latest_stop_time = NOW - 26 * HOUR - 1;
        ws_status_evaluate(&s, &ll, &v);
        CHECK(v.state == WS_STATUS_CRITICAL && has_reason(&v, "logical_age", WS_STATUS_CRITICAL));
        s.repo.logical[WS_LOGICAL_INVALID] = 2;
        ws_status_evaluate(&s, &no_limits, &v);
        CHECK(v.state == WS_STATUS_WARNING && strstr(v.reasons[0].msg, "2 logical backup(s)"));
    }

    /* an invalid backup warns; an unreadable repository is UNKNOWN */
    healthy(&s);
    s.repo.backups[WS_BACKUP_INVALID] = 1;
    ws_status_evaluate(&s, &no_limits, &v);
    CHECK(v.state == WS_STATUS_WARNING && has_reason(&v, "backup_invalid", WS_STATUS_WARNING));
    healthy(&s);
    snprintf(s.repo.error, sizeof(s.repo.error), "could not list \"main/wal/\"");
    ws_status_evaluate(&s, &no_limits, &v);
    CHECK(v.state == WS_STATUS_UNKNOWN && has_reason(&v, "repository", WS_STATUS_UNKNOWN));
}

static void test_verdict_server(void)
{
    struct ws_status s;
    struct ws_status_verdict v;
    struct ws_status_limits l = {4, -1, -1, -1};

    /* lag: at the limit is fine, one above is CRITICAL */
    healthy(&s);
    s.server.lag_segments = 4;
    ws_status_evaluate(&s, &l, &v);
    CHECK(v.state == WS_STATUS_OK);
    s.server.lag_segments = 5;
    ws_status_evaluate(&s, &l, &v);
    CHECK(v.state == WS_STATUS_CRITICAL && has_reason(&v, "archive_lag", WS_STATUS_CRITICAL));
    ws_status_evaluate(&s, &no_limits, &v);
    CHECK(v.state == WS_STATUS_OK);

    /* the archiver's last attempt failed: WARNING; with the lag over the limit: CRITICAL wins */
    healthy(&s);
    s.server.a.failed_count = 3;
    s.server.a.last_failed_us = US(NOW - 5);
    ws_status_evaluate(&s, &no_limits, &v);
    CHECK(v.state == WS_STATUS_WARNING && has_reason(&v, "archiver_failing", WS_STATUS_WARNING));
    s.server.lag_segments = 9;
    ws_status_evaluate(&s, &l, &v);
    CHECK(v.state == WS_STATUS_CRITICAL && v.n == 2);
    /* a failure and a success in the same second: the times alone order them, to the
     * microsecond, whatever the WAL files' names say */
    same_second(&s, "00000001000000000000000E", 100000, "00000001000000000000000D", 900000);
    ws_status_evaluate(&s, &no_limits, &v);
    CHECK(v.state == WS_STATUS_OK); /* D archived after E failed */
    same_second(&s, "00000001000000000000000D", 900000, "00000001000000000000000E", 100000);
    ws_status_evaluate(&s, &no_limits, &v);
    CHECK(v.state == WS_STATUS_WARNING && has_reason(&v, "archiver_failing", WS_STATUS_WARNING));
    /* a timeline switch: the new timeline's history file failed after the old one's segment */
    same_second(&s, "00000002.history", 700000, "00000001000000000000000F", 300000);
    ws_status_evaluate(&s, &no_limits, &v);
    CHECK(v.state == WS_STATUS_WARNING && has_reason(&v, "archiver_failing", WS_STATUS_WARNING));
    same_second(&s, "00000002.history", 300000, "00000001000000000000000F.partial", 700000);
    ws_status_evaluate(&s, &no_limits, &v);
    CHECK(v.state == WS_STATUS_OK);
    /* one microsecond apart, each way */
    same_second(&s, "000000010000000000000010", 500001, "000000010000000000000010", 500000);
    ws_status_evaluate(&s, &no_limits, &v);
    CHECK(v.state == WS_STATUS_WARNING && has_reason(&v, "archiver_failing", WS_STATUS_WARNING));
    same_second(&s, "000000010000000000000010", 500000, "000000010000000000000010", 500001);
    ws_status_evaluate(&s, &no_limits, &v);
    CHECK(v.state == WS_STATUS_OK);
    /* an old failure, archived since: fine */
    healthy(&s);
    s.server.a.failed_count = 3;
    s.server.a.last_failed_us = US(NOW - 3600);
    ws_status_evaluate(&s, &no_limits, &v);
    CHECK(v.state == WS_STATUS_OK);

    /* lag unknown with a limit: UNKNOWN, ranked below WARNING */
    healthy(&s);
    s.server.reached = 0;
    snprintf(s.server.error, sizeof(s.server.error), "could not connect");
    ws_status_evaluate(&s, &no_limits, &v);
    CHECK(v.state == WS_STATUS_OK); /* no limit needs the server */
    ws_status_evaluate(&s, &l, &v);
    CHECK(v.state == WS_STATUS_UNKNOWN && has_reason(&v, "archive_lag", WS_STATUS_UNKNOWN));
    s.repo.backups[WS_BACKUP_INVALID] = 1;
    ws_status_evaluate(&s, &l, &v);
    CHECK(v.state == WS_STATUS_WARNING && v.n == 2);
    healthy(&s);
    s.server.has_lag = 0;
    s.server.a.in_recovery = 1;
    ws_status_evaluate(&s, &l, &v);
    CHECK(v.state == WS_STATUS_UNKNOWN && strstr(v.reasons[0].msg, "in recovery"));

    /* the slot */
    healthy(&s);
    s.server.a.slot_exists = 1;
    snprintf(s.server.a.slot_wal_status, sizeof(s.server.a.slot_wal_status), "unreserved");
    ws_status_evaluate(&s, &no_limits, &v);
    CHECK(v.state == WS_STATUS_WARNING && has_reason(&v, "slot", WS_STATUS_WARNING));
    snprintf(s.server.a.slot_wal_status, sizeof(s.server.a.slot_wal_status), "lost");
    ws_status_evaluate(&s, &no_limits, &v);
    CHECK(v.state == WS_STATUS_CRITICAL && has_reason(&v, "slot", WS_STATUS_CRITICAL));
}

static void test_many_reasons(void)
{
    struct ws_status s;
    struct ws_status_verdict v;
    struct ws_status_gap gaps[WS_STATUS_MAX_REASONS + 4];

    healthy(&s);
    for (size_t i = 0; i < sizeof(gaps) / sizeof(gaps[0]); i++) {
        struct ws_status_gap g = {1, 20 + 2 * i, 20 + 2 * i, 1, 0};
        gaps[i] = g;
    }
    s.repo.gaps = gaps;
    s.repo.ngaps = sizeof(gaps) / sizeof(gaps[0]);
    ws_status_evaluate(&s, &no_limits, &v);
    CHECK(v.state == WS_STATUS_CRITICAL);
    CHECK(v.n == WS_STATUS_MAX_REASONS && v.dropped == 4);
}

/* Output of fn(f, s, v) as a malloc'ed string. */
static char *capture(void (*fn)(FILE *, const struct ws_status *, const struct ws_status_verdict *),
                     const struct ws_status *s, const struct ws_status_verdict *v)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    if (!f)
        return NULL;
    fn(f, s, v);
    fclose(f);
    return buf;
}

/* Every sample line's family has its HELP and TYPE before it; counters end in _total. */
static void check_exposition(const char *text)
{
    const char *line = text;
    char seen[64][96];
    size_t nseen = 0;

    while (*line) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        char name[96];
        REQUIRE(nl); /* every line ends with a newline */
        if (strncmp(line, "# HELP ", 7) == 0) {
            const char *sp = memchr(line + 7, ' ', len - 7);
            char type[128];
            REQUIRE(sp && nl[1] == '#'); /* TYPE follows HELP */
            snprintf(name, sizeof(name), "%.*s", (int)(sp - line - 7), line + 7);
            snprintf(type, sizeof(type), "# TYPE %s ", name);
            CHECK(strncmp(nl + 1, type, strlen(type)) == 0);
            if (strncmp(nl + 1 + strlen(type), "counter", 7) == 0)
                CHECK(strlen(name) > 6 && strcmp(name + strlen(name) - 6, "_total") == 0);
            for (size_t i = 0; i < nseen; i++)
                CHECK(strcmp(seen[i], name) != 0); /* one HELP per family */
            REQUIRE(nseen < 64);
            snprintf(seen[nseen++], sizeof(seen[0]), "%s", name);
        } else if (line[0] != '#') {
            size_t n = strcspn(line, "{ ");
            int found = 0;
            snprintf(name, sizeof(name), "%.*s", (int)n, line);
            for (size_t i = 0; i < nseen; i++)
                found |= strcmp(seen[i], name) == 0;
            CHECK(found);
            CHECK(strncmp(line + n, "{cluster=\"main\"", 15) == 0);
        }
        line = nl + 1;
    }
}

static void test_prometheus(void)
{
    struct ws_status s;
    struct ws_status_verdict v;
    char *text;

    healthy(&s);
    s.server.lag_segments = 2;
    s.server.lag_bytes = 33554432;
    s.server.a.ready = 2;
    s.server.a.slot_exists = 1;
    s.server.a.slot_active = 1;
    s.server.has_slot_lag = 1;
    s.server.slot_lag_bytes = 4096;
    s.server.a.last_archived_us += 999999; /* metrics in seconds: the microseconds cut off */
    snprintf(s.slot_name, sizeof(s.slot_name), "%s", "a\"b\\c\nd"); /* every escape */
    ws_status_evaluate(&s, &no_limits, &v);
    REQUIRE((text = capture(ws_status_print_prometheus, &s, &v)) != NULL);
    check_exposition(text);
    CHECK(strstr(text, "walsafe_status_state{cluster=\"main\"} 0\n"));
    CHECK(strstr(text, "walsafe_backup_newest_complete_timestamp_seconds{cluster=\"main\"} "
                       "1795338900\n"));
    CHECK(strstr(text, "walsafe_wal_newest_timestamp_seconds{cluster=\"main\",timeline=\"1\"} "
                       "1795342440\n"));
    CHECK(strstr(text, "walsafe_archive_lag_segments{cluster=\"main\"} 2\n"));
    CHECK(strstr(text, "walsafe_archive_lag_bytes{cluster=\"main\"} 33554432\n"));
    CHECK(strstr(text, "walsafe_archiver_archived_total{cluster=\"main\"} 8\n"));
    CHECK(strstr(text, "walsafe_archiver_last_archived_timestamp_seconds{cluster=\"main\"} "
                       "1795342440\n"));
    CHECK(strstr(text, "walsafe_archiver_last_failed_timestamp_seconds{cluster=\"main\"} 0\n"));
    CHECK(strstr(text, "# TYPE walsafe_archiver_failed_total counter\n"));
    CHECK(strstr(text,
                 "walsafe_replication_slot_lag_bytes{cluster=\"main\",slot=\"a\\\"b\\\\c\\nd\"} "
                 "4096\n"));
    CHECK(strstr(text, "walsafe_backups{cluster=\"main\",status=\"incomplete\"} 0\n"));
    CHECK(strstr(text, "walsafe_logical_backup_newest_complete_timestamp_seconds{cluster=\"main\"} "
                       "0\n"));
    CHECK(strstr(text, "walsafe_repository_size_bytes{cluster=\"main\",kind=\"logical\"} 0\n"));
    free(text);

    /* the server not reached: its families are left out, walsafe_server_up says 0 */
    s.server.reached = 0;
    snprintf(s.server.error, sizeof(s.server.error), "could not connect");
    REQUIRE((text = capture(ws_status_print_prometheus, &s, &v)) != NULL);
    check_exposition(text);
    CHECK(strstr(text, "walsafe_server_up{cluster=\"main\"} 0\n"));
    CHECK(!strstr(text, "walsafe_archiver_"));
    free(text);

    /* no complete backup: the time is 0, so that "time() - x > 26h" fires */
    healthy(&s);
    s.repo.has_latest = 0;
    REQUIRE((text = capture(ws_status_print_prometheus, &s, &v)) != NULL);
    CHECK(strstr(text, "walsafe_backup_newest_complete_timestamp_seconds{cluster=\"main\"} 0\n"));
    free(text);
}

static void test_prometheus_file(void)
{
    struct ws_status s;
    struct ws_status_verdict v;
    struct ws_error err = {0};
    char path[600], dir[400], bad[600];
    struct stat st;
    FILE *f;
    char buf[256];

    healthy(&s);
    ws_status_evaluate(&s, &no_limits, &v);
    snprintf(dir, sizeof(dir), "%s/textfile", unit_tmpdir());
    REQUIRE(mkdir(dir, 0700) == 0);
    snprintf(path, sizeof(path), "%s/walsafe.prom", dir);
    /* an old file is replaced whole */
    REQUIRE((f = fopen(path, "w")) != NULL);
    fputs("old\n", f);
    fclose(f);
    REQUIRE(ws_status_write_prometheus(path, &s, &v, &err) == 0);
    REQUIRE(stat(path, &st) == 0);
    CHECK((st.st_mode & 07777) == 0644);
    REQUIRE((f = fopen(path, "r")) != NULL);
    CHECK(fgets(buf, sizeof(buf), f) && strncmp(buf, "# HELP walsafe_status_state ", 28) == 0);
    fclose(f);
    CHECK(unit_entries(dir) == 1); /* no temp file left */
    /* a directory that does not exist: WS_ERR_IO naming the file, nothing written */
    snprintf(bad, sizeof(bad), "%s/missing/walsafe.prom", dir);
    CHECK(ws_status_write_prometheus(bad, &s, &v, &err) == WS_ERR_IO);
    CHECK(strstr(err.msg, "missing/.walsafe.prom.walsafe-tmp.") != NULL);
}

static void test_json(void)
{
    struct ws_status s;
    struct ws_status_verdict v;
    struct ws_status_gap gap = {1, 5, 6, 1, 0};
    char *text;

    healthy(&s);
    s.repo.gaps = &gap;
    s.repo.ngaps = 1;
    snprintf(s.server.a.ready_error, sizeof(s.server.a.ready_error), "needs \"pg_monitor\"");
    s.server.a.ready = -1;
    s.server.a.last_archived_us += 999999;
    ws_status_evaluate(&s, &no_limits, &v);
    REQUIRE((text = capture(ws_status_print_json, &s, &v)) != NULL);
    CHECK(text[0] == '{' && strlen(text) > 2 && strcmp(text + strlen(text) - 2, "}\n") == 0);
    CHECK(strchr(text, '\n') == text + strlen(text) - 1); /* one line */
    CHECK(strstr(text, "\"state\": \"CRITICAL\", \"exit_status\": 2"));
    CHECK(strstr(text, "{\"timeline\": 1, \"first\": \"000000010000000000000005\", \"last\": "
                       "\"000000010000000000000006\", \"needed\": true, \"pending\": false}"));
    CHECK(strstr(text, "\"ready_files\": null, \"ready_error\": \"needs \\\"pg_monitor\\\"\""));
    CHECK(strstr(text, "\"newest_complete\": {\"id\": \"20261122T091500Z\""));
    CHECK(strstr(text, "\"last_archived_time\": \"2026-11-22T10:14:00Z\", "));
    CHECK(strstr(text, "\"last_failed_time\": null"));
    free(text);

    /* the text's first line is the verdict, as Nagios shows it */
    REQUIRE((text = capture(ws_status_print_text, &s, &v)) != NULL);
    CHECK(strncmp(text, "CRITICAL: WAL gap on timeline 1: ", 33) == 0);
    CHECK(strstr(text, "; last archived 000000010000000000000009 at 2026-11-22T10:14:00Z (") !=
          NULL);
    free(text);
}

/* A spool as push-ahead, prefetch and wal-receive leave it, with links and dot files that must
 * not count; read without creating or following anything. */
static void test_spool(void)
{
    static const char rx[] = "slot = walsafe\nreceived = 0/3000000\nflushed = 0/2000000\n"
                             "stored = 0/2000000\nupdated = 2026-11-22T10:14:00Z\nlast_error = \n";
    struct ws_config cfg;
    struct ws_status s;
    struct timespec ts[2] = {{NOW - 100, 0}, {NOW - 100, 0}};
    char p[600], pid[32], spool[400], pf[500];

    REQUIRE(unit_path(spool, sizeof(spool), "spool") == 0);
    REQUIRE(unit_path(pf, sizeof(pf), "spool/main/prefetch-0123456789abcdef") == 0);
    REQUIRE(unit_mkdir(pf) == 0);
#define FILE_IN(rel, text)                                                                         \
    (snprintf(p, sizeof(p), "%s/main/%s", spool, rel), unit_write(p, text, strlen(text), 0600) == 0)
    REQUIRE(unit_path(p, sizeof(p), "spool/main/pushed") == 0 && unit_mkdir(p) == 0);
    REQUIRE(unit_path(p, sizeof(p), "spool/main/pushing") == 0 && unit_mkdir(p) == 0);
    REQUIRE(unit_path(p, sizeof(p), "spool/main/receive") == 0 && unit_mkdir(p) == 0);
    REQUIRE(FILE_IN("pushed/000000010000000000000003", "record"));
    REQUIRE(FILE_IN("pushed/000000010000000000000004", "record"));
    REQUIRE(FILE_IN("pushed/.000000010000000000000005.walsafe.1", "temp"));
    REQUIRE(FILE_IN("pushing/000000010000000000000005", ""));
    REQUIRE(FILE_IN("pushing/.batch", ""));
    REQUIRE(FILE_IN("pushing/.stopped", ""));
    REQUIRE(utimensat(AT_FDCWD, p, ts, 0) == 0);
    snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    REQUIRE(FILE_IN("prefetch-0123456789abcdef/lock", pid));
    REQUIRE(FILE_IN("prefetch-0123456789abcdef/wanted", "000000010000000000000007\n"));
    REQUIRE(FILE_IN("prefetch-0123456789abcdef/000000010000000000000008."
                    "0123456789abcdef0123456789abcdef",
                    "x"));
    REQUIRE(FILE_IN("prefetch-0123456789abcdef/000000010000000000000009."
                    "0123456789abcdef0123456789abcdef",
                    "x"));
    REQUIRE(FILE_IN("prefetch-0123456789abcdef/.000000010000000000000010.tmp", "x"));
    REQUIRE(FILE_IN("receive/status", rx));
#undef FILE_IN
    /* links: an entry and a whole prefetch spool, neither followed nor counted */
    snprintf(p, sizeof(p), "%s/main/pushed/00000001000000000000000A", spool);
    REQUIRE(symlink("/etc/passwd", p) == 0);
    snprintf(p, sizeof(p), "%s/main/prefetch-fedcba9876543210", spool);
    REQUIRE(symlink(pf, p) == 0);

    REQUIRE(unit_config(&cfg, "repo", "/nonexistent", "spool_dir", spool, "cluster", "main",
                        NULL) == 0);
    memset(&s, 0, sizeof(s));
    ws_status_gather_spool(&cfg, &s);
    CHECK(s.spool.present && !s.spool.error[0]);
    CHECK(s.spool.pushed == 2 && s.spool.pushing == 1);
    CHECK(s.spool.outage_since == NOW - 100);
    CHECK(s.spool.prefetch_spools == 1 && s.spool.prefetch_entries == 2);
    CHECK(s.spool.prefetch_alive == 1); /* the lock names this process */
    CHECK(strcmp(s.spool.prefetch_wanted, "000000010000000000000007") == 0);
    CHECK(s.spool.receive && strcmp(s.spool.rx_slot, "walsafe") == 0);
    CHECK(strcmp(s.spool.rx_flushed, "0/2000000") == 0 && s.spool.rx_last_error[0] == '\0');
    ws_config_free(&cfg);

    /* another cluster, no spool of its own: nothing there, nothing created */
    REQUIRE(unit_config(&cfg, "repo", "/nonexistent", "spool_dir", spool, "cluster", "other",
                        NULL) == 0);
    memset(&s, 0, sizeof(s));
    ws_status_gather_spool(&cfg, &s);
    CHECK(!s.spool.present && !s.spool.error[0] && s.spool.pushed == -1);
    snprintf(p, sizeof(p), "%s/other", spool);
    CHECK(!unit_exists(p));
    ws_config_free(&cfg);
    /* spool_dir missing altogether: the same */
    snprintf(p, sizeof(p), "%s/none", spool);
    REQUIRE(unit_config(&cfg, "repo", "/nonexistent", "spool_dir", p, "cluster", "main", NULL) ==
            0);
    memset(&s, 0, sizeof(s));
    ws_status_gather_spool(&cfg, &s);
    CHECK(!s.spool.present && !s.spool.error[0] && !unit_exists(p));
    ws_config_free(&cfg);
}

const struct unit_test unit_tests[] = {
    {"spool", test_spool},
    {"gaps", test_gaps},
    {"pending", test_pending},
    {"archive_lag", test_archive_lag},
    {"verdict_repository", test_verdict_repository},
    {"verdict_server", test_verdict_server},
    {"many_reasons", test_many_reasons},
    {"prometheus", test_prometheus},
    {"prometheus_file", test_prometheus_file},
    {"json", test_json},
    {NULL, NULL},
};
