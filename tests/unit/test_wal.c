/* WAL names and LSN arithmetic for 1 MiB, 16 MiB and 1 GiB segments, and the segment check. */
#include <string.h>

#include "pg/wal.h"
#include "fixture.h"
#include "unit.h"

static void test_classify(void)
{
    CHECK(ws_wal_classify("000000010000000000000001") == WS_WAL_SEGMENT);
    CHECK(ws_wal_classify("000000010000000000000001.partial") == WS_WAL_PARTIAL);
    CHECK(ws_wal_classify("00000002.history") == WS_WAL_HISTORY);
    CHECK(ws_wal_classify("000000010000000000000001.00000028.backup") == WS_WAL_BACKUP);
    CHECK(ws_wal_classify("00000001000000000000000") == WS_WAL_INVALID);
    CHECK(ws_wal_classify("0000000100000000000000001") == WS_WAL_INVALID);
    CHECK(ws_wal_classify("00000001000000000000000a") == WS_WAL_INVALID); /* lower case */
    CHECK(ws_wal_classify("000000010000000000000001.partia") == WS_WAL_INVALID);
    CHECK(ws_wal_classify("0000000G.history") == WS_WAL_INVALID);
    CHECK(ws_wal_classify("../00000002.history") == WS_WAL_INVALID);
    CHECK(ws_wal_classify("RECOVERYXLOG") == WS_WAL_INVALID);
    CHECK(ws_wal_classify("") == WS_WAL_INVALID);
}

static void test_names(void)
{
    static const struct {
        uint64_t seg_size;
        uint32_t tli;
        uint64_t segno;
        const char *name;
    } cases[] = {
        {16u << 20, 1, 1, "000000010000000000000001"},
        {16u << 20, 1, 255, "0000000100000000000000FF"},
        {16u << 20, 1, 256, "000000010000000100000000"},
        {16u << 20, 0x2A, 0x12345667, "0000002A0012345600000067"},
        {1u << 20, 1, 4095, "000000010000000000000FFF"},
        {1u << 20, 1, 4096, "000000010000000100000000"},
        {1u << 30, 3, 3, "000000030000000000000003"},
        {1u << 30, 3, 4, "000000030000000100000000"},
        {1u << 30, 0xFFFFFFFF, 4 * 0xFFFFFFFFull + 3, "FFFFFFFFFFFFFFFF00000003"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char name[WS_WAL_NAME_LEN + 1];
        uint32_t tli;
        uint64_t segno;
        ws_wal_format_name(name, cases[i].tli, cases[i].segno, cases[i].seg_size);
        CHECK(strcmp(name, cases[i].name) == 0);
        CHECK(ws_wal_parse_name(cases[i].name, cases[i].seg_size, &tli, &segno) == 0);
        CHECK(tli == cases[i].tli && segno == cases[i].segno);
    }
    /* seg part beyond the segments of one 4 GiB "log" is not a valid name */
    {
        uint32_t tli;
        uint64_t segno;
        CHECK(ws_wal_parse_name("000000010000000000000100", 16u << 20, &tli, &segno) != 0);
        CHECK(ws_wal_parse_name("000000010000000000000004", 1u << 30, &tli, &segno) != 0);
        CHECK(ws_wal_parse_name("000000010000000000001000", 1u << 20, &tli, &segno) != 0);
    }
}

static void test_lsn(void)
{
    uint64_t lsn;
    char buf[24];

    CHECK(ws_wal_parse_lsn("16/B374D848", &lsn) == 0 && lsn == 0x16B374D848ull);
    ws_wal_format_lsn(buf, lsn);
    CHECK(strcmp(buf, "16/B374D848") == 0);
    CHECK(ws_wal_parse_lsn("0/0", &lsn) == 0 && lsn == 0);
    CHECK(ws_wal_parse_lsn("ffffffff/ffffffff", &lsn) == 0 && lsn == UINT64_MAX);
    CHECK(ws_wal_parse_lsn("16B374D848", &lsn) != 0);
    CHECK(ws_wal_parse_lsn("/1", &lsn) != 0);
    CHECK(ws_wal_parse_lsn("1/", &lsn) != 0);
    CHECK(ws_wal_parse_lsn("123456789/0", &lsn) != 0);
    CHECK(ws_wal_parse_lsn("1/G", &lsn) != 0);
    CHECK(ws_wal_lsn_to_segno(0x16B374D848ull, 16u << 20) == 0x16B3);
    CHECK(ws_wal_lsn_to_segno(0x16B374D848ull, 1u << 20) == 0x16B37);
    CHECK(ws_wal_lsn_to_segno(0x16B374D848ull, 1u << 30) == 0x5A);
    CHECK(ws_wal_segno_to_lsn(0x16B3, 16u << 20) == 0x16B3000000ull);
    CHECK(ws_wal_segs_per_id(16u << 20) == 256 && ws_wal_segs_per_id(1u << 20) == 4096 &&
          ws_wal_segs_per_id(1u << 30) == 4);
    CHECK(ws_wal_seg_size_valid(1u << 20) && ws_wal_seg_size_valid(1u << 30));
    CHECK(!ws_wal_seg_size_valid(1u << 19) && !ws_wal_seg_size_valid(3u << 20) &&
          !ws_wal_seg_size_valid(1ull << 31));
}

/* The fixture's call (fixture.h) under the name the tests below use. */
#define make_header unit_wal_header

static void test_check_segment(void)
{
    uint8_t b[WS_WAL_LONG_HEADER_SIZE];
    struct ws_wal_long_header h;
    struct ws_error err = {0};
    const char *name = "000000010000000000000003";
    uint64_t seg = 16u << 20;

    make_header(b, 0xD110, WS_XLP_LONG_HEADER, 3 * seg, 7000000000000000001ull, 16u << 20, 8192);
    CHECK(ws_wal_check_segment(name, name, b, sizeof(b), seg, &h, &err) == 0);
    CHECK(h.sysid == 7000000000000000001ull && ws_wal_magic_to_major(h.magic) == 15);
    CHECK(ws_wal_check_segment(name, name, b, sizeof(b), seg - 1, &h, &err) == WS_ERR_INVALID);
    CHECK(strstr(err.msg, "truncated") != NULL);
    CHECK(ws_wal_check_segment(name, name, b, 10, seg, &h, &err) == WS_ERR_INVALID);
    CHECK(ws_wal_check_segment(name, "000000010000000000000004", b, sizeof(b), seg, &h, &err) ==
          WS_ERR_INVALID);
    make_header(b, 0x1234, WS_XLP_LONG_HEADER, 3 * seg, 1, 16u << 20, 8192);
    CHECK(ws_wal_check_segment(name, name, b, sizeof(b), seg, &h, &err) == WS_ERR_INVALID);
    CHECK(strstr(err.msg, "magic") != NULL);
    make_header(b, 0xD110, 0, 3 * seg, 1, 16u << 20, 8192);
    CHECK(ws_wal_check_segment(name, name, b, sizeof(b), seg, &h, &err) == WS_ERR_INVALID);
    make_header(b, 0xD110, WS_XLP_LONG_HEADER, 3 * seg, 1, 3u << 20, 8192);
    CHECK(ws_wal_check_segment(name, name, b, sizeof(b), 3u << 20, &h, &err) == WS_ERR_INVALID);
    /* 1 GiB segments: segment 3 of log 0 */
    make_header(b, 0xD110, WS_XLP_LONG_HEADER, 3ull << 30, 1, 1u << 30, 8192);
    CHECK(ws_wal_check_segment(name, name, b, sizeof(b), 1ull << 30, &h, &err) == 0);
}

/* What wal-fetch lets a WAL file of each kind grow to (archive.h). */
static void test_max_size(void)
{
    CHECK(ws_wal_max_size(ws_wal_classify("000000010000000000000001"), 16u << 20) == 16u << 20);
    CHECK(ws_wal_max_size(ws_wal_classify("000000010000000000000001.partial"), 1u << 20) ==
          1u << 20);
    CHECK(ws_wal_max_size(ws_wal_classify("00000002.history"), 16u << 20) == WS_WAL_SIDE_FILE_MAX);
    CHECK(ws_wal_max_size(ws_wal_classify("000000010000000000000001.00000028.backup"), 1u << 30) ==
          WS_WAL_SIDE_FILE_MAX);
    CHECK(ws_wal_max_size(ws_wal_classify("RECOVERYXLOG"), 16u << 20) == 0);
}

const struct unit_test unit_tests[] = {
    {"classify", test_classify},           {"names", test_names},       {"lsn", test_lsn},
    {"check_segment", test_check_segment}, {"max_size", test_max_size}, {NULL, NULL},
};
