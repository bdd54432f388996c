/*
 * wal-receive's loop (archive/receive.h) against a scripted replication session and a local
 * repository: a completed segment becomes the WAL object wal-push would store (wal-fetch returns
 * it byte for byte) and leaves the spool; the segment in progress is stored as a chunk when the
 * receiver stops, and wal-fetch serves it zero-filled; the flush position reported to the server
 * is what was received; a connection that fails stores what was received first; a server of
 * another system is refused at once; a later session's bytes replace the chunks of an earlier
 * one that the server has rewritten since; a slot_name the server would refuse stops it at once.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "archive/archive.h"
#include "archive/receive.h"
#include "fixture.h"
#include "unit.h"

#define PIECE (UNIT_SEG / 4)
#define TAIL 1000 /* bytes of the next segment, in progress when the receiver stops */

static struct {
    uint64_t sysid;
    const uint8_t *seg;  /* segment 1, whole */
    const uint8_t *next; /* TAIL bytes of segment 2 */
    int sent;            /* messages sent */
    uint64_t flushed;    /* the last flush position reported */
    uint64_t start;      /* START_REPLICATION's position */
    volatile sig_atomic_t *stop;
    int cut;             /* after the last message the connection fails instead of idling */
    const uint8_t *part; /* set: segment 1's first part_len bytes only, in one message */
    size_t part_len;
} script;

struct fake {
    struct ws_repl base;
};

static int f_connect_as(const char *conninfo, const char *app, struct ws_repl **out,
                        struct ws_error *err)
{
    (void)conninfo;
    (void)app;
    if (!(*out = calloc(1, sizeof(struct fake))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    return 0;
}

static void f_close(struct ws_repl *r)
{
    free(r);
}

static int f_identify(struct ws_repl *r, struct ws_repl_system *sys, struct ws_error *err)
{
    (void)r;
    (void)err;
    memset(sys, 0, sizeof(*sys));
    sys->system_identifier = script.sysid;
    sys->timeline = 1;
    sys->xlogpos = UNIT_SEG + 100; /* in segment 1 */
    sys->version = 150004;
    sys->wal_segment_size = UNIT_SEG;
    return 0;
}

static int f_read_slot(struct ws_repl *r, const char *slot, struct ws_repl_slot *out,
                       struct ws_error *err)
{
    (void)r;
    (void)slot;
    (void)err;
    memset(out, 0, sizeof(*out));
    return 0;
}

static int f_start(struct ws_repl *r, const char *slot, uint64_t lsn, uint32_t tli,
                   struct ws_error *err)
{
    (void)r;
    (void)slot;
    (void)tli;
    (void)err;
    script.start = lsn;
    return 0;
}

/* Segment 1 in four pieces, then the start of segment 2, then nothing (and stop). */
static int f_next(struct ws_repl *r, int timeout_ms, struct ws_repl_wal_msg *m,
                  struct ws_error *err)
{
    (void)r;
    (void)timeout_ms;
    (void)err;
    memset(m, 0, sizeof(*m));
    m->type = WS_REPL_WAL;
    if (script.part && script.sent == 0) {
        m->wal_start = UNIT_SEG;
        m->data = script.part;
        m->len = script.part_len;
    } else if (script.part) {
        m->type = WS_REPL_IDLE;
        *script.stop = 1;
    } else if (script.sent < 4) {
        m->wal_start = UNIT_SEG + (uint64_t)script.sent * PIECE;
        m->data = script.seg + (size_t)script.sent * PIECE;
        m->len = PIECE;
    } else if (script.sent == 4) {
        m->wal_start = 2 * (uint64_t)UNIT_SEG;
        m->data = script.next;
        m->len = TAIL;
    } else {
        m->type = WS_REPL_IDLE;
        *script.stop = 1;
        if (script.cut)
            return ws_error_set(err, WS_ERR_STORAGE, "connection lost (test)");
    }
    script.sent++;
    return 0;
}

static int f_status(struct ws_repl *r, uint64_t write_lsn, uint64_t flush_lsn, int64_t now,
                    struct ws_error *err)
{
    (void)r;
    (void)write_lsn;
    (void)now;
    (void)err;
    script.flushed = flush_lsn;
    return 0;
}

static const struct ws_repl_ops fake_ops = {.close = f_close,
                                            .identify = f_identify,
                                            .connect_as = f_connect_as,
                                            .read_slot = f_read_slot,
                                            .start_streaming = f_start,
                                            .stream_next = f_next,
                                            .send_status = f_status};

static int setup(const char *tag, struct ws_config *cfg, char *seg_path, size_t seg_path_sz)
{
    char repo[512], spool[512], wal[512];

    if (unit_path(repo, sizeof(repo), "%s-repo", tag) || unit_mkdir(repo) ||
        unit_path(spool, sizeof(spool), "%s-spool", tag) || unit_mkdir(spool) ||
        unit_path(wal, sizeof(wal), "%s-wal", tag) || unit_mkdir(wal) ||
        unit_wal_segment(wal, 1, UNIT_SYSID, 5, seg_path, seg_path_sz))
        return -1;
    return unit_config(cfg, "repo", repo, "spool_dir", spool, "cluster", "main", "slot_name",
                       "walsafe", NULL);
}

static void stream(const char *tag, int cut)
{
    static volatile sig_atomic_t stop;
    struct ws_config cfg;
    struct ws_error err = {0};
    char seg_path[600], dest[600], name[WS_WAL_NAME_LEN + 1], spooled[700];
    uint8_t *seg = NULL, *next = malloc(TAIL), *got = NULL;
    size_t seg_len = 0, got_len = 0;
    int zeros = 1;

    REQUIRE(next != NULL);
    REQUIRE(setup(tag, &cfg, seg_path, sizeof(seg_path)) == 0);
    REQUIRE(unit_read(seg_path, &seg, &seg_len) == 0 && seg_len == UNIT_SEG);
    unit_random(next, TAIL, 9);
    memset(&script, 0, sizeof(script));
    script.sysid = UNIT_SYSID;
    script.seg = seg;
    script.next = next;
    script.stop = &stop;
    script.cut = cut;
    stop = 0;
    CHECK(ws_receive_run(&cfg, &fake_ops, &stop, &err) == 0);
    CHECK(script.start == UNIT_SEG); /* the server's segment, from its start */
    /* cut: the bytes of segment 2 are stored, but no status update reaches the server */
    CHECK(script.flushed == (cut ? (uint64_t)UNIT_SEG * 2 : 2 * (uint64_t)UNIT_SEG + TAIL));

    /* segment 1: the WAL object, byte for byte, and gone from the spool */
    ws_wal_format_name(name, 1, 1, UNIT_SEG);
    REQUIRE(unit_path(dest, sizeof(dest), "%s-restored-1", tag) == 0);
    CHECK(ws_archive_fetch(&cfg, name, dest, &err) == 0);
    CHECK(unit_same_file(seg_path, dest));
    REQUIRE(unit_path(spooled, sizeof(spooled), "%s-spool/main/receive/%s", tag, name) == 0);
    CHECK(!unit_exists(spooled));

    /* segment 2, in progress: its chunk, served zero-filled */
    ws_wal_format_name(name, 1, 2, UNIT_SEG);
    REQUIRE(unit_path(dest, sizeof(dest), "%s-restored-2", tag) == 0);
    CHECK(ws_archive_fetch(&cfg, name, dest, &err) == 0);
    REQUIRE(unit_read(dest, &got, &got_len) == 0);
    CHECK(got_len == UNIT_SEG && memcmp(got, next, TAIL) == 0);
    for (size_t i = TAIL; got_len == UNIT_SEG && i < got_len; i++)
        zeros &= got[i] == 0;
    CHECK(zeros);
    free(got);
    free(seg);
    free(next);
    ws_config_free(&cfg);
}

static void test_stream(void)
{
    stream("stream", 0);
}

/* The connection fails (the server died): what it sent is stored before the reconnect. */
static void test_stream_cut(void)
{
    stream("cut", 1);
}

/* A server of another system than the repository's cluster: refused, nothing streamed. */
static void test_foreign(void)
{
    static volatile sig_atomic_t stop;
    struct ws_config cfg;
    struct ws_error err = {0};
    char seg_path[600];
    struct ws_push_result res;

    REQUIRE(setup("foreign", &cfg, seg_path, sizeof(seg_path)) == 0);
    REQUIRE(ws_archive_push(&cfg, seg_path, &res, &err) == 0); /* the cluster: UNIT_SYSID */
    memset(&script, 0, sizeof(script));
    script.sysid = UNIT_SYSID + 1;
    script.stop = &stop;
    stop = 0;
    CHECK(ws_receive_run(&cfg, &fake_ops, &stop, &err) == WS_ERR_FOREIGN);
    CHECK(strchr(err.msg, '\n') == NULL && script.sent == 0);
    ws_config_free(&cfg);
}

/* A slot_name PostgreSQL would refuse (the configuration takes any text): the receiver and
 * --create-slot stop at once with one line naming the key, nothing streamed. */
static void test_bad_slot_name(void)
{
    static const char *const bad[] = {"", "Walsafe", "a-b"};
    static volatile sig_atomic_t stop;
    struct ws_config cfg;
    char seg_path[600];

    REQUIRE(setup("badslot", &cfg, seg_path, sizeof(seg_path)) == 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        struct ws_error err = {0};
        REQUIRE(ws_config_set(&cfg, "slot_name", bad[i], "t", &err) == 0);
        memset(&script, 0, sizeof(script));
        script.sysid = UNIT_SYSID;
        script.stop = &stop;
        stop = 0;
        CHECK(ws_receive_run(&cfg, &fake_ops, &stop, &err) == WS_ERR_CONFIG);
        CHECK(strstr(err.msg, "\"slot_name\"") && !strchr(err.msg, '\n') && script.sent == 0);
        memset(&err, 0, sizeof(err));
        CHECK(ws_receive_slot(&cfg, &fake_ops, 1, &err) == WS_ERR_CONFIG);
        CHECK(strstr(err.msg, "\"slot_name\"") && !strchr(err.msg, '\n'));
    }
    ws_config_free(&cfg);
}

/* One session: segment 1's first len bytes of wal, stored as a chunk when the receiver stops;
 * then what wal-fetch serves for segment 1 must be those bytes and zeros. */
static void session_part(const char *tag, struct ws_config *cfg, const uint8_t *wal, size_t len)
{
    static volatile sig_atomic_t stop;
    struct ws_error err = {0};
    char dest[600], name[WS_WAL_NAME_LEN + 1];
    uint8_t *got = NULL;
    size_t got_len = 0;
    int zeros = 1;

    memset(&script, 0, sizeof(script));
    script.sysid = UNIT_SYSID;
    script.part = wal;
    script.part_len = len;
    script.stop = &stop;
    stop = 0;
    CHECK(ws_receive_run(cfg, &fake_ops, &stop, &err) == 0);
    CHECK(script.start == UNIT_SEG && script.flushed == UNIT_SEG + len);
    ws_wal_format_name(name, 1, 1, UNIT_SEG);
    REQUIRE(unit_path(dest, sizeof(dest), "%s-restored-%zu", tag, len) == 0);
    CHECK(ws_archive_fetch(cfg, name, dest, &err) == 0);
    REQUIRE(unit_read(dest, &got, &got_len) == 0);
    CHECK(got_len == UNIT_SEG && memcmp(got, wal, len) == 0);
    for (size_t i = len; got_len == UNIT_SEG && i < got_len; i++)
        zeros &= got[i] == 0;
    CHECK(zeros);
    free(got);
}

/* The server crashed and its recovery rewrote the end of WAL at the same positions (an
 * overwritten torn record): the chunks the receiver stored before hold bytes that are no longer
 * the server's. A later session's bytes win, whether its chunk has the same range as an old one
 * (stored again) or a shorter one (the old, longer chunk removed). */
static void test_rewritten(void)
{
    struct ws_config cfg;
    char seg_path[600];
    uint8_t *a = malloc(2 * PIECE), *b = malloc(2 * PIECE), *c = malloc(2 * PIECE);

    REQUIRE(a && b && c);
    REQUIRE(setup("rewritten", &cfg, seg_path, sizeof(seg_path)) == 0);
    unit_random(a, 2 * PIECE, 11);
    memcpy(b, a, PIECE); /* the same up to PIECE, then other bytes */
    unit_random(b + PIECE, PIECE, 12);
    memcpy(c, b, PIECE / 2); /* the same up to PIECE / 2 */
    unit_random(c + PIECE / 2, PIECE + PIECE / 2, 13);
    session_part("rewritten", &cfg, a, 2 * PIECE);
    session_part("rewritten", &cfg, b, 2 * PIECE); /* the same chunk range: stored again */
    session_part("rewritten", &cfg, c, PIECE);     /* shorter: the longer chunk goes */
    free(a);
    free(b);
    free(c);
    ws_config_free(&cfg);
}

const struct unit_test unit_tests[] = {
    {"stream", test_stream},       {"stream_cut", test_stream_cut},       {"foreign", test_foreign},
    {"rewritten", test_rewritten}, {"bad_slot_name", test_bad_slot_name}, {NULL, NULL},
};
