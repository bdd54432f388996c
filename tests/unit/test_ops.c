/*
 * The ops layer's pure parts: the notify_command document (ops/notify.h), exactly as written,
 * with text from outside escaped; and the drill's wal_end verdict (ops/drill.h) on a catalog of
 * archived segments: reached, beyond, a missing segment named, a segment present but not
 * replayed, an older timeline.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/drill.h"
#include "ops/notify.h"
#include "pg/wal.h"
#include "unit.h"

#define SEG (16u << 20)

static char *json_of(const char *cluster, const struct ws_notify_event *ev)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    if (!f)
        return NULL;
    /* 2026-12-07T23:00:00Z */
    ws_notify_json(f, cluster, ev, "db1", 1796684400);
    fclose(f);
    return buf;
}

static void test_notify_success(void)
{
    struct ws_notify_event ev = {"basebackup create", "20261207T225900Z", 1, 1, 1000, 400, 12.5,
                                 "ignored when ok"};
    char *s = json_of("main", &ev);

    REQUIRE(s);
    CHECK(strcmp(s, "{\"event\": \"basebackup create\", \"cluster\": \"main\", \"id\": "
                    "\"20261207T225900Z\", \"status\": \"success\", \"bytes\": 1000, "
                    "\"stored_bytes\": 400, \"duration_seconds\": 12.500, \"error\": null, "
                    "\"host\": \"db1\", \"time\": \"2026-12-07T23:00:00Z\"}\n") == 0);
    free(s);
}

static void test_notify_failure_escaped(void)
{
    struct ws_notify_event ev = {"wal-prune", NULL, 0,    0,
                                 0,           0,    0.25, "could not open \"a\nb\": \\ denied"};
    char *s = json_of("main", &ev);

    REQUIRE(s);
    CHECK(strstr(s, "\"id\": null, \"status\": \"failure\", \"bytes\": null, "
                    "\"stored_bytes\": null, \"duration_seconds\": 0.250, ") != NULL);
    CHECK(strstr(s, "\"error\": \"could not open \\\"a\\u000ab\\\": \\\\ denied\"") != NULL);
    CHECK(strchr(s, '\n') == s + strlen(s) - 1); /* one line */
    free(s);
}

static void test_notify_failure_without_message(void)
{
    struct ws_notify_event ev = {"basebackup verify", "", 0, 0, 0, 0, 1, NULL};
    char *s = json_of("main", &ev);

    REQUIRE(s);
    CHECK(strstr(s, "\"id\": null") != NULL);
    CHECK(strstr(s, "\"error\": \"failed\"") != NULL);
    free(s);
}

/* A catalog of segments tli 1: 10..20, and tli 2: 20..25 when two_timelines. */
static void catalog_of(struct ws_catalog *cat, struct ws_wal_seg *segs, int two_timelines)
{
    size_t n = 0;
    uint64_t s;

    memset(cat, 0, sizeof(*cat));
    for (s = 10; s <= 20; s++)
        segs[n++] = (struct ws_wal_seg){1, s};
    if (two_timelines)
        for (s = 20; s <= 25; s++)
            segs[n++] = (struct ws_wal_seg){2, s};
    cat->segs = segs;
    cat->nsegs = n;
}

static void test_verdict_reached(void)
{
    struct ws_wal_seg segs[32];
    struct ws_catalog cat;
    char out[400];

    catalog_of(&cat, segs, 0);
    /* ends inside segment 20 */
    CHECK(ws_drill_wal_verdict(&cat, SEG, 1, 20 * (uint64_t)SEG + 4096, out, sizeof(out)) == 0);
    CHECK(strstr(out, "000000010000000000000014, the newest archived segment") != NULL);
    /* ends exactly at the end of 20 (a switch record) */
    CHECK(ws_drill_wal_verdict(&cat, SEG, 1, 21 * (uint64_t)SEG, out, sizeof(out)) == 0);
    /* beyond: archived since the drill began */
    CHECK(ws_drill_wal_verdict(&cat, SEG, 1, 22 * (uint64_t)SEG + 8, out, sizeof(out)) == 0);
    CHECK(strstr(out, "archived since") != NULL);
}

static void test_verdict_missing_named(void)
{
    struct ws_wal_seg segs[32];
    struct ws_catalog cat;
    char out[400];

    catalog_of(&cat, segs, 0);
    /* segment 15 is gone: recovery ended at the end of 14 */
    memmove(&segs[5], &segs[6], 5 * sizeof(segs[0]));
    cat.nsegs--;
    CHECK(ws_drill_wal_verdict(&cat, SEG, 1, 15 * (uint64_t)SEG, out, sizeof(out)) == -1);
    CHECK(strstr(out, "WAL segment 00000001000000000000000F is missing from the repository") ==
          out);
    CHECK(strstr(out, "in 00000001000000000000000E") != NULL);
    CHECK(strstr(out, "the newest archived segment is 000000010000000000000014") != NULL);
}

static void test_verdict_present_not_replayed(void)
{
    struct ws_wal_seg segs[32];
    struct ws_catalog cat;
    char out[400];

    catalog_of(&cat, segs, 0);
    CHECK(ws_drill_wal_verdict(&cat, SEG, 1, 15 * (uint64_t)SEG, out, sizeof(out)) == -1);
    CHECK(strstr(out, "although the repository holds 00000001000000000000000F") != NULL);
}

static void test_verdict_timelines(void)
{
    struct ws_wal_seg segs[32];
    struct ws_catalog cat;
    char out[400];

    catalog_of(&cat, segs, 1);
    /* recovery stayed on timeline 1 although timeline 2 goes on to 25 */
    CHECK(ws_drill_wal_verdict(&cat, SEG, 1, 21 * (uint64_t)SEG, out, sizeof(out)) == -1);
    CHECK(strstr(out, "000000020000000000000019") != NULL);
    CHECK(ws_drill_wal_verdict(&cat, SEG, 2, 25 * (uint64_t)SEG + 100, out, sizeof(out)) == 0);
    cat.nsegs = 0;
    CHECK(ws_drill_wal_verdict(&cat, SEG, 1, 21 * (uint64_t)SEG, out, sizeof(out)) == -1);
}

const struct unit_test unit_tests[] = {
    {"notify_success", test_notify_success},
    {"notify_failure_escaped", test_notify_failure_escaped},
    {"notify_failure_without_message", test_notify_failure_without_message},
    {"verdict_reached", test_verdict_reached},
    {"verdict_missing_named", test_verdict_missing_named},
    {"verdict_present_not_replayed", test_verdict_present_not_replayed},
    {"verdict_timelines", test_verdict_timelines},
    {NULL, NULL},
};
