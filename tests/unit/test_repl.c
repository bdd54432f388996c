/*
 * The replication session's rules without a server (pg/repl.h): the calls go through the
 * session's ops; the BASE_BACKUP command (options, the label quoted, refused labels and rates);
 * the COPY stream's messages as PostgreSQL 15 sends them and every malformed or misplaced one
 * refused; sizes as SHOW prints them. The libpq session itself is tested against a real server
 * (tests/integration/t_repl_proto.sh).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg/repl.h"
#include "unit.h"

/* ---- a session that records the calls ---- */

struct fake {
    struct ws_repl base;
    int *closed;
};
static int fake_closed;

static int fake_connect(const char *conninfo, struct ws_repl **out, struct ws_error *err)
{
    struct fake *f;

    if (strcmp(conninfo, "refuse") == 0)
        return ws_error_set(err, WS_ERR_CONFIG, "refused");
    if (!(f = calloc(1, sizeof(*f))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    f->closed = &fake_closed;
    *out = &f->base;
    return 0;
}

static void fake_close(struct ws_repl *r)
{
    ++*((struct fake *)r)->closed;
    free(r);
}

static int fake_identify(struct ws_repl *r, struct ws_repl_system *sys, struct ws_error *err)
{
    (void)r, (void)err;
    sys->version = 150004;
    return 0;
}

static int fake_base_backup(struct ws_repl *r, const struct ws_repl_bb_opts *o,
                            struct ws_repl_bb_start *start, struct ws_error *err)
{
    (void)r, (void)o, (void)err;
    start->ntablespaces = 2;
    start->tablespaces = calloc(2, sizeof(*start->tablespaces));
    start->tablespaces[0].location = strdup("/srv/a");
    start->tablespaces[1].location = strdup("/srv/b");
    return 0;
}

static int fake_next(struct ws_repl *r, struct ws_repl_msg *msg, struct ws_error *err)
{
    (void)r, (void)err;
    msg->type = WS_REPL_END;
    return 0;
}

static const struct ws_repl_ops fake_ops = {.connect = fake_connect,
                                            .close = fake_close,
                                            .identify = fake_identify,
                                            .base_backup = fake_base_backup,
                                            .next = fake_next};

static void test_dispatch(void)
{
    struct ws_error err = {0};
    struct ws_repl *r = (struct ws_repl *)1;
    struct ws_repl_system sys = {0};
    struct ws_repl_bb_start start = {0};
    struct ws_repl_bb_opts o = {.label = "x"};
    struct ws_repl_msg msg = {0};

    CHECK(ws_repl_connect(NULL, "", &r, &err) == WS_ERR_INTERNAL && r == NULL);
    r = (struct ws_repl *)1;
    CHECK(ws_repl_connect(&fake_ops, "refuse", &r, &err) == WS_ERR_CONFIG && r == NULL);
    REQUIRE(ws_repl_connect(&fake_ops, "", &r, &err) == 0);
    CHECK(r->ops == &fake_ops);
    CHECK(ws_repl_identify(r, &sys, &err) == 0 && sys.version == 150004);
    CHECK(ws_repl_base_backup(r, &o, &start, &err) == 0 && start.ntablespaces == 2);
    ws_repl_bb_start_free(&start);
    CHECK(start.tablespaces == NULL && start.ntablespaces == 0);
    CHECK(ws_repl_next(r, &msg, &err) == 0 && msg.type == WS_REPL_END);
    fake_closed = 0;
    ws_repl_close(r);
    ws_repl_close(NULL);
    CHECK(fake_closed == 1);
}

/* ---- BASE_BACKUP ---- */

static void test_command(void)
{
    struct ws_repl_bb_opts o = {
        .label = "walsafe 20261207T194500Z", .fast = 1, .progress = 1, .verify_checksums = 1};
    struct ws_error err = {0};
    char cmd[4096], label[WS_REPL_LABEL_MAX + 2];

    REQUIRE(ws_repl_bb_command(&o, cmd, sizeof(cmd), &err) == 0);
    CHECK(strcmp(cmd, "BASE_BACKUP (LABEL 'walsafe 20261207T194500Z', PROGRESS, CHECKPOINT "
                      "'fast', WAL false, WAIT false, TABLESPACE_MAP, MANIFEST 'yes', "
                      "MANIFEST_CHECKSUMS 'CRC32C', VERIFY_CHECKSUMS true, TARGET 'client')") == 0);
    o = (struct ws_repl_bb_opts){.label = "it's 'quoted''", .max_rate = 32 * 1024};
    REQUIRE(ws_repl_bb_command(&o, cmd, sizeof(cmd), &err) == 0);
    CHECK(strcmp(cmd, "BASE_BACKUP (LABEL 'it''s ''quoted''''', CHECKPOINT 'spread', WAL false, "
                      "WAIT false, TABLESPACE_MAP, MANIFEST 'yes', MANIFEST_CHECKSUMS 'CRC32C', "
                      "VERIFY_CHECKSUMS false, TARGET 'client', MAX_RATE 32)") == 0);
    o.max_rate = UINT64_C(10) << 40; /* above the server's 1 GB/s: its maximum */
    REQUIRE(ws_repl_bb_command(&o, cmd, sizeof(cmd), &err) == 0);
    CHECK(strstr(cmd, ", MAX_RATE 1048576)") != NULL);
    o.max_rate = 32 * 1024 - 1;
    CHECK(ws_repl_bb_command(&o, cmd, sizeof(cmd), &err) == WS_ERR_CONFIG);
    CHECK(strstr(err.msg, "32 kB/s") != NULL);
    o.max_rate = 0;
    /* labels: control characters would make lines of backup_label; the server's length limit */
    static const char *const bad[] = {"", "two\nlines", "cr\r", "tab\there", "del\x7f", NULL};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        o.label = bad[i];
        CHECK(ws_repl_bb_command(&o, cmd, sizeof(cmd), &err) == WS_ERR_CONFIG);
    }
    memset(label, '\'', WS_REPL_LABEL_MAX);
    label[WS_REPL_LABEL_MAX] = '\0';
    o.label = label;
    REQUIRE(ws_repl_bb_command(&o, cmd, sizeof(cmd), &err) == 0); /* 1024 quotes, doubled */
    CHECK(strlen(cmd) > 2 * WS_REPL_LABEL_MAX);
    label[WS_REPL_LABEL_MAX] = 'x';
    label[WS_REPL_LABEL_MAX + 1] = '\0';
    CHECK(ws_repl_bb_command(&o, cmd, sizeof(cmd), &err) == WS_ERR_CONFIG);
    o.label = "x";
    CHECK(ws_repl_bb_command(&o, cmd, 40, &err) == WS_ERR_INTERNAL); /* never truncated */
}

/* ---- the COPY stream ---- */

struct wire {
    const char *bytes;
    size_t len;
};
#define W(s)                                                                                       \
    {                                                                                              \
        s, sizeof(s) - 1                                                                           \
    }

static void test_stream(void)
{
    static const struct wire good[] = {
        W("n16384.tar\0/srv/ts\0"),
        W("dPG_15_"),
        W("p\0\0\0\0\0\0\x02\x01"),
        W("nbase.tar\0\0"),
        W("d"),
        W("p\x7f\xff\xff\xff\xff\xff\xff\xff"),
        W("m"),
        W("d{\"PostgreSQL-Backup-Manifest-Version\": 1"),
    };
    static const enum ws_repl_msg_type want[] = {
        WS_REPL_ARCHIVE, WS_REPL_DATA,     WS_REPL_PROGRESS, WS_REPL_ARCHIVE,
        WS_REPL_DATA,    WS_REPL_PROGRESS, WS_REPL_MANIFEST, WS_REPL_DATA,
    };
    struct ws_repl_stream st = {0};
    struct ws_repl_msg m;
    struct ws_error err = {0};

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        REQUIRE(ws_repl_parse_copy(&st, (const uint8_t *)good[i].bytes, good[i].len, &m, &err) ==
                0);
        CHECK(m.type == want[i]);
        if (i == 0)
            CHECK(strcmp(m.archive_name, "16384.tar") == 0 &&
                  strcmp(m.tablespace_location, "/srv/ts") == 0);
        if (i == 1)
            CHECK(m.len == 6 && memcmp(m.data, "PG_15_", 6) == 0);
        if (i == 2)
            CHECK(m.progress == 0x201);
        if (i == 3)
            CHECK(strcmp(m.archive_name, "base.tar") == 0 && *m.tablespace_location == '\0');
        if (i == 4)
            CHECK(m.len == 0);
        if (i == 5)
            CHECK(m.progress == INT64_MAX);
    }
}

static void test_stream_bad(void)
{
    static const struct {
        struct wire before; /* a message that sets the stream up (or none) */
        struct wire bad;
        const char *in_msg;
    } bad[] = {
        {{NULL, 0}, W("dbytes"), "data before the first archive"},
        {{NULL, 0}, W(""), "empty"},
        {{NULL, 0}, W("n"), "without a name"},
        {{NULL, 0}, W("n\0/srv\0"), "without a name"},
        {{NULL, 0}, W("nbase.tar"), "without a name"},
        {{NULL, 0}, W("nbase.tar\0"), "without its tablespace location"},
        {{NULL, 0}, W("nbase.tar\0/srv"), "without its tablespace location"},
        {{NULL, 0}, W("nbase.tar\0\0x"), "without its tablespace location"},
        {{NULL, 0}, W("nbase.tar\0\0\0"), "without its tablespace location"},
        {{NULL, 0}, W("p\0\0\0\0\0\0\0"), "progress (8 bytes)"},
        {{NULL, 0}, W("p\0\0\0\0\0\0\0\0\0"), "progress (10 bytes)"},
        {{NULL, 0}, W("mx"), "manifest (2 bytes)"},
        {W("m"), W("m"), "manifest (1 bytes)"},
        {W("m"), W("nbase.tar\0\0"), "a new archive after the manifest"},
        {{NULL, 0}, W("x"), "unknown type 0x78"},
        {W("nbase.tar\0\0"), W("\xff"), "unknown type 0xff"},
    };
    struct ws_repl_msg m;
    struct ws_error err;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct ws_repl_stream st = {0};
        if (bad[i].before.bytes)
            REQUIRE(ws_repl_parse_copy(&st, (const uint8_t *)bad[i].before.bytes, bad[i].before.len,
                                       &m, &err) == 0);
        memset(&err, 0, sizeof(err));
        CHECK(ws_repl_parse_copy(&st, (const uint8_t *)bad[i].bad.bytes, bad[i].bad.len, &m,
                                 &err) == WS_ERR_CORRUPT);
        if (!strstr(err.msg, bad[i].in_msg))
            fprintf(stderr, "    case %zu: %s\n", i, err.msg);
        CHECK(strstr(err.msg, bad[i].in_msg) != NULL);
        CHECK(strstr(err.msg, "during the base backup") != NULL);
    }
}

static void test_size(void)
{
    static const struct {
        const char *text;
        uint64_t bytes;
    } good[] = {
        {"16MB", 16u << 20}, {"8192", 8192}, {"1GB", 1u << 30}, {"64kB", 64 << 10},
        {"512B", 512},       {"0", 0},       {"1MB", 1u << 20}, {"4096MB", UINT64_C(4096) << 20}};
    static const char *const bad[] = {"",
                                      "MB",
                                      "16 MB",
                                      "16mb",
                                      "16MBx",
                                      "-1",
                                      "+16",
                                      " 16",
                                      "16TB",
                                      "4294967296",
                                      "99999999999999999999MB",
                                      NULL};
    uint64_t v;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        CHECK(ws_repl_parse_size(good[i].text, &v) == 0 && v == good[i].bytes);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(ws_repl_parse_size(bad[i], &v) == -1);
}

/* ---- streaming ---- */

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static void test_xlog(void)
{
    uint8_t buf[64] = {'w'};
    struct ws_repl_wal_msg m;
    struct ws_error err = {0};

    /* XLogData: start, end, send time, then the WAL bytes */
    put64(buf + 1, UINT64_C(0x16000000));
    put64(buf + 9, UINT64_C(0x16000100));
    put64(buf + 17, 12345);
    memcpy(buf + 25, "abc", 3);
    REQUIRE(ws_repl_parse_xlog(buf, 28, &m, &err) == 0);
    CHECK(m.type == WS_REPL_WAL && m.wal_start == 0x16000000 && m.wal_end == 0x16000100);
    CHECK(m.send_time == 12345 && m.len == 3 && memcmp(m.data, "abc", 3) == 0);
    CHECK(ws_repl_parse_xlog(buf, 25, &m, &err) == 0 && m.len == 0);
    CHECK(ws_repl_parse_xlog(buf, 24, &m, &err) == WS_ERR_CORRUPT);
    /* a start so high that its data would wrap */
    put64(buf + 1, UINT64_MAX - 1);
    CHECK(ws_repl_parse_xlog(buf, 28, &m, &err) == WS_ERR_CORRUPT);

    /* keepalive: end, send time, reply requested (0 or 1) */
    memset(buf, 0, sizeof(buf));
    buf[0] = 'k';
    put64(buf + 1, 0x2000);
    buf[17] = 1;
    REQUIRE(ws_repl_parse_xlog(buf, 18, &m, &err) == 0);
    CHECK(m.type == WS_REPL_KEEPALIVE && m.wal_end == 0x2000 && m.reply_requested == 1);
    CHECK(ws_repl_parse_xlog(buf, 17, &m, &err) == WS_ERR_CORRUPT);
    CHECK(ws_repl_parse_xlog(buf, 19, &m, &err) == WS_ERR_CORRUPT);
    buf[17] = 2;
    CHECK(ws_repl_parse_xlog(buf, 18, &m, &err) == WS_ERR_CORRUPT);
    buf[0] = 'x';
    CHECK(ws_repl_parse_xlog(buf, 18, &m, &err) == WS_ERR_CORRUPT);
    CHECK(strstr(err.msg, "0x78") != NULL);
    CHECK(ws_repl_parse_xlog(buf, 0, &m, &err) == WS_ERR_CORRUPT);
}

static void test_status_update(void)
{
    uint8_t out[WS_REPL_STATUS_SIZE], want[WS_REPL_STATUS_SIZE] = {'r'};

    put64(want + 1, 0x0102030405060708);
    put64(want + 9, 0x1112131415161718);
    put64(want + 25, 99);
    ws_repl_format_status(out, 0x0102030405060708, 0x1112131415161718, 99);
    CHECK(memcmp(out, want, sizeof(out)) == 0);
    /* the protocol's clock: after 2026-01-01 (820454400 s after 2000-01-01) */
    CHECK(ws_repl_pg_now() > INT64_C(820454400) * 1000000);
}

static void test_slot_name(void)
{
    struct ws_error err = {0};
    char longest[WS_REPL_SLOT_MAX + 2];

    CHECK(ws_repl_slot_name_check("walsafe", &err) == 0);
    CHECK(ws_repl_slot_name_check("a_1", &err) == 0);
    memset(longest, 'a', sizeof(longest));
    longest[WS_REPL_SLOT_MAX] = '\0';
    CHECK(ws_repl_slot_name_check(longest, &err) == 0);
    longest[WS_REPL_SLOT_MAX] = 'a';
    longest[WS_REPL_SLOT_MAX + 1] = '\0';
    CHECK(ws_repl_slot_name_check(longest, &err) == WS_ERR_CONFIG);
    CHECK(ws_repl_slot_name_check("", &err) == WS_ERR_CONFIG);
    CHECK(ws_repl_slot_name_check("Upper", &err) == WS_ERR_CONFIG);
    CHECK(ws_repl_slot_name_check("a b; DROP", &err) == WS_ERR_CONFIG);
    CHECK(strstr(err.msg, "slot_name") != NULL);
}

/* A session without the streaming calls refuses them instead of crashing. */
static void test_no_streaming(void)
{
    struct ws_repl *r = NULL;
    struct ws_error err = {0};
    struct ws_repl_slot slot;

    CHECK(ws_repl_connect_as(&fake_ops, "x", "app", &r, &err) == WS_ERR_INTERNAL);
    REQUIRE(ws_repl_connect(&fake_ops, "x", &r, &err) == 0);
    CHECK(ws_repl_read_slot(r, "walsafe", &slot, &err) == WS_ERR_INTERNAL);
    CHECK(ws_repl_create_slot(r, "Bad Name", &err) == WS_ERR_CONFIG);
    CHECK(ws_repl_start_streaming(r, "walsafe", 0, 1, &err) == WS_ERR_INTERNAL);
    ws_repl_close(r);
}

const struct unit_test unit_tests[] = {
    {"dispatch", test_dispatch},
    {"command", test_command},
    {"stream", test_stream},
    {"stream_bad", test_stream_bad},
    {"size", test_size},
    {"xlog", test_xlog},
    {"status_update", test_status_update},
    {"slot_name", test_slot_name},
    {"no_streaming", test_no_streaming},
    {NULL, NULL},
};
