/*
 * PostgreSQL data page checksums against real pages of a PostgreSQL 15 cluster made with
 * `initdb -k` (a user table, catalog indexes at non-zero blocks, a visibility map page), single
 * bit flips, new and all-zero pages, the skip LSN, header sanity, and relation file names.
 *
 * The fixtures hold only the non-zero bytes of each page: "@<hex offset> <hex bytes>" runs
 * (the first run starts at 4: pd_lsn's high word is 0 in a young cluster). They were written
 * on x86-64, so they hold little-endian words like every cluster this tool backs up so far.
 */
#include <stdlib.h>
#include <string.h>

#include "pg/pgpage.h"
#include "unit.h"

struct real_page {
    const char *file; /* relative to the data directory */
    uint32_t blkno;   /* block number within that (segment 0) file */
    uint16_t checksum;
    uint64_t lsn;
    const char *runs;
};

static const struct real_page real_pages[] = {
    /* a user table (5 rows), main fork */
    {"base/5/16384", 0, 0x605C, UINT64_C(0x11646580),
     "@4 806564115c6000002c00381f0020042000000000d89f4400b09f4400889f4400609f4400389f44"
     "@1f38 d40200000000000007000000000000000500020002091800050000000d726f772035000000000000d402"
     "00000000000007000000000000000400020002091800040000000d726f772034000000000000d4020000000000"
     "0007000000000000000300020002091800030000000d726f772033000000000000d40200000000000007000000"
     "000000000200020002091800020000000d726f772032000000000000d402000000000000070000000000000001"
     "00020002091800010000000d726f772031"},
    /* pg_class_oid_index, a catalog index at block 3 */
    {"base/5/2662", 3, 0x7139, UINT64_C(0x133FE40),
     "@4 40fe3301397100002000d81ff01f042000000000e89f1000d89f20"
     "@1fda 0200010010208f2f000000000000000001000000082000000000000000000100000002"},
    /* pg_tablespace_oid_index, a shared catalog, block 1 */
    {"global/2697", 1, 0xF476, UINT64_C(0x1017198),
     "@4 9871010176f400002000d01ff01f042000000000e09f2000d09f2000d09f20"
     "@1fd4 020010008006"
     "@1fe4 010010007f06"
     "@1ffc 03"},
    /* the visibility map fork of a vacuumed 1500-page table */
    {"base/5/16396_vm", 0, 0xB36C, UINT64_C(0x3974E28),
     "@4 284e97036cb3000018000020002004200000000055555555555555555555555555555555555555555555555"
     "555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555"
     "555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555"
     "555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555"
     "555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555"
     "555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555"
     "555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555"
     "555555555555555555555555555555555555555555555555555555555555555555555555555555555555555555"
     "5555555555555555555555555555555555555555555555555555555555555555555555555"},
};

#define NREAL (sizeof(real_pages) / sizeof(real_pages[0]))

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Expands a fixture into page[8192]. Returns 0, or -1 on a malformed fixture. */
static int build_page(const struct real_page *rp, uint8_t *page)
{
    const char *s = rp->runs;
    size_t off = 0;

    memset(page, 0, WS_PG_BLCKSZ);
    while (*s) {
        if (*s == '@') {
            off = 0;
            for (s++; hexval(*s) >= 0; s++)
                off = off * 16 + (size_t)hexval(*s);
            if (*s++ != ' ')
                return -1;
            continue;
        }
        if (hexval(s[0]) < 0 || hexval(s[1]) < 0 || off >= WS_PG_BLCKSZ)
            return -1;
        page[off++] = (uint8_t)(hexval(s[0]) * 16 + hexval(s[1]));
        s += 2;
    }
    return 0;
}

static uint16_t stored_checksum(const uint8_t *page)
{
    uint16_t v;
    memcpy(&v, page + 8, sizeof(v));
    return v;
}

static void put16(uint8_t *page, size_t off, uint16_t v)
{
    memcpy(page + off, &v, sizeof(v));
}

struct bad_list {
    size_t n;
    uint32_t blocks[16];
};

static void collect(void *arg, uint32_t block)
{
    struct bad_list *l = arg;
    if (l->n < 16)
        l->blocks[l->n] = block;
    l->n++;
}

static void test_real_pages(void)
{
    uint8_t page[WS_PG_BLCKSZ], shifted[WS_PG_BLCKSZ + 3];

    for (size_t i = 0; i < NREAL; i++) {
        const struct real_page *rp = &real_pages[i];
        uint32_t xlogid, xrecoff; /* pd_lsn: two native uint32 */

        REQUIRE(build_page(rp, page) == 0);
        memcpy(&xlogid, page, 4);
        memcpy(&xrecoff, page + 4, 4);
        CHECK((((uint64_t)xlogid << 32) | xrecoff) == rp->lsn);
        CHECK(stored_checksum(page) == rp->checksum);
        CHECK(ws_pg_page_checksum(page, rp->blkno) == rp->checksum);
        CHECK(ws_pg_check_pages(page, sizeof(page), 0, rp->blkno, UINT64_MAX, NULL, NULL) == 0);
        /* any alignment */
        memcpy(shifted + 3, page, sizeof(page));
        CHECK(ws_pg_page_checksum(shifted + 3, rp->blkno) == rp->checksum);
        /* the block number is part of the checksum: another block, the next segment */
        CHECK(ws_pg_page_checksum(page, rp->blkno + 1) != rp->checksum);
        CHECK(ws_pg_page_checksum(page, rp->blkno + WS_PG_RELSEG_BLOCKS) != rp->checksum);
        CHECK(ws_pg_check_pages(page, sizeof(page), 0, rp->blkno + 1, UINT64_MAX, NULL, NULL) == 1);
        CHECK(ws_pg_check_pages(page, sizeof(page), 1, rp->blkno, UINT64_MAX, NULL, NULL) == 1);
        /* the checksum ignores the stored checksum */
        put16(page, 8, (uint16_t)(rp->checksum ^ 0x5555));
        CHECK(ws_pg_page_checksum(page, rp->blkno) == rp->checksum);
    }
}

/* Absolute block b lives in segment b / 131072 at block b % 131072. */
static void test_segment_block_numbers(void)
{
    uint8_t page[WS_PG_BLCKSZ];
    const uint32_t blocks[] = {5, WS_PG_RELSEG_BLOCKS + 5, 7 * WS_PG_RELSEG_BLOCKS + 12345,
                               UINT32_MAX - 1};

    REQUIRE(build_page(&real_pages[0], page) == 0);
    for (size_t i = 0; i < sizeof(blocks) / sizeof(blocks[0]); i++) {
        uint32_t segno = blocks[i] / WS_PG_RELSEG_BLOCKS, in_file = blocks[i] % WS_PG_RELSEG_BLOCKS;
        put16(page, 8, ws_pg_page_checksum(page, blocks[i]));
        CHECK(ws_pg_check_pages(page, sizeof(page), segno, in_file, UINT64_MAX, NULL, NULL) == 0);
        CHECK(ws_pg_check_pages(page, sizeof(page), segno + 1, in_file, UINT64_MAX, NULL, NULL) ==
              1);
        CHECK(ws_pg_check_pages(page, sizeof(page), segno, in_file + 1, UINT64_MAX, NULL, NULL) ==
              1);
    }
}

/*
 * Every 97th bit of every real page, flipped alone, makes that page (and only it) bad, with one
 * known exception. The stored checksum has 16 bits, so about 1 in 65535 corruptions goes
 * unnoticed, by PostgreSQL too: flipping bit 53450 of the visibility map page changes the 32-bit
 * hash from 0xBC4DF71D to 0x1D499622, and both reduce to 45932. More misses than that one would
 * mean a weakened hash, not bad luck.
 */
static void test_bit_flips(void)
{
    uint8_t *buf = malloc(3 * WS_PG_BLCKSZ);
    size_t flips = 0, missed = 0, wrong = 0;
    REQUIRE(buf != NULL);

    for (size_t i = 0; i < NREAL; i++) {
        const struct real_page *rp = &real_pages[i];
        size_t at = rp->blkno > 0 ? 1 : 0;
        uint8_t *page = buf + at * WS_PG_BLCKSZ;
        uint32_t first = rp->blkno - (uint32_t)at;

        memset(buf, 0, 3 * WS_PG_BLCKSZ); /* new pages around it */
        if (build_page(rp, page) != 0) {
            CHECK(!"fixture");
            break;
        }
        for (size_t bit = i; bit < 8 * WS_PG_BLCKSZ; bit += 97) {
            struct bad_list l = {0};
            size_t nbad;

            page[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            nbad = ws_pg_check_pages(buf, 3 * WS_PG_BLCKSZ, 0, first, UINT64_MAX, collect, &l);
            page[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            flips++;
            if (nbad == 0 && i == 3 && bit == 53450)
                continue;
            if (nbad == 0)
                missed++;
            else if (nbad != 1 || l.n != 1 || l.blocks[0] != rp->blkno)
                wrong++;
        }
        CHECK(ws_pg_check_pages(buf, 3 * WS_PG_BLCKSZ, 0, first, UINT64_MAX, NULL, NULL) == 0);
    }
    CHECK(flips > 2500);
    CHECK(missed == 0);
    CHECK(wrong == 0);
    free(buf);
}

static void test_new_pages(void)
{
    uint8_t *buf = calloc(4, WS_PG_BLCKSZ);
    struct bad_list l = {0};
    REQUIRE(buf != NULL);

    /* all-zero pages are fine at any block number, and a partial page is ignored */
    buf[4 * WS_PG_BLCKSZ - 1] = 0xFF;
    CHECK(ws_pg_check_pages(buf, 3 * WS_PG_BLCKSZ + 100, 2, 40, UINT64_MAX, collect, &l) == 0);
    CHECK(l.n == 0);
    CHECK(ws_pg_check_pages(buf, 100, 0, 0, UINT64_MAX, collect, &l) == 0);
    /* pd_upper == 0 with content anywhere: the header was lost */
    buf[WS_PG_BLCKSZ + 5000] = 1;
    buf[3 * WS_PG_BLCKSZ - 1] = 0x80;
    CHECK(ws_pg_check_pages(buf, 4 * WS_PG_BLCKSZ, 0, 40, UINT64_MAX, collect, &l) == 3);
    CHECK(l.n == 3 && l.blocks[0] == 41 && l.blocks[1] == 42 && l.blocks[2] == 43);
    /* a real page whose first sector was zeroed */
    l.n = 0;
    REQUIRE(build_page(&real_pages[0], buf) == 0);
    memset(buf, 0, 512);
    CHECK(ws_pg_check_pages(buf, WS_PG_BLCKSZ, 0, 0, UINT64_MAX, collect, &l) == 1);
    free(buf);
}

static void test_skip_lsn(void)
{
    uint8_t page[WS_PG_BLCKSZ];
    const struct real_page *rp = &real_pages[1];

    REQUIRE(build_page(rp, page) == 0);
    page[6000] ^= 0x04;
    CHECK(ws_pg_check_pages(page, sizeof(page), 0, rp->blkno, rp->lsn + 1, NULL, NULL) == 1);
    CHECK(ws_pg_check_pages(page, sizeof(page), 0, rp->blkno, rp->lsn, NULL, NULL) == 0);
    CHECK(ws_pg_check_pages(page, sizeof(page), 0, rp->blkno, rp->lsn - 1, NULL, NULL) == 0);
    CHECK(ws_pg_check_pages(page, sizeof(page), 0, rp->blkno, 0, NULL, NULL) == 0);
    /* the LSN is xlogid << 32 | xrecoff */
    {
        uint32_t hi = 2;
        memcpy(page, &hi, 4);
        CHECK(ws_pg_check_pages(page, sizeof(page), 0, rp->blkno, UINT64_C(0x1FFFFFFFF), NULL,
                                NULL) == 0);
        CHECK(ws_pg_check_pages(page, sizeof(page), 0, rp->blkno, UINT64_C(0x2FFFFFFFF), NULL,
                                NULL) == 1);
    }
}

/* A nonsense header is bad even when the checksum matches it. */
static void test_bad_headers(void)
{
    static const struct {
        uint16_t flags, lower, upper, special;
        int bad;
    } cases[] = {
        {0, 44, 7992, 8192, 0},      {7, 44, 7992, 8192, 0}, {8, 44, 7992, 8192, 1},
        {0, 7993, 7992, 8192, 1},    {0, 44, 8193, 8192, 1}, {0, 44, 7992, 8200, 1},
        {0, 44, 7992, 8188, 1},      {0, 44, 44, 8192, 0},   {0, 44, 8192, 8192, 0},
        {0x8000, 44, 7992, 8192, 1},
    };
    uint8_t page[WS_PG_BLCKSZ];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        REQUIRE(build_page(&real_pages[0], page) == 0);
        put16(page, 10, cases[i].flags);
        put16(page, 12, cases[i].lower);
        put16(page, 14, cases[i].upper);
        put16(page, 16, cases[i].special);
        put16(page, 8, ws_pg_page_checksum(page, 9));
        CHECK(ws_pg_check_pages(page, sizeof(page), 0, 9, UINT64_MAX, NULL, NULL) ==
              (size_t)cases[i].bad);
    }
}

static void test_relation_files(void)
{
    static const struct {
        const char *path;
        int is_rel;
        uint32_t segno;
    } cases[] = {
        {"base/5/16384", 1, 0},
        {"base/5/16384.2", 1, 2},
        {"base/5/16384_fsm", 1, 0},
        {"base/5/16384_vm", 1, 0},
        {"base/5/16384_init", 1, 0},
        {"base/5/16384_vm.3", 1, 3},
        {"base/1/1259", 1, 0},
        {"base/4294967295/4294967295.32767", 1, 32767},
        {"global/1262", 1, 0},
        {"global/1262_fsm", 1, 0},
        {"global/2697.1", 1, 1},
        {"pg_tblspc/16390/PG_15_202209061/5/16391_vm", 1, 0},
        {"pg_tblspc/16390/PG_15_202209061/5/16391.12", 1, 12},
        {"pg_tblspc/16390/PG_9.6_201608131/16389/16391", 1, 0},
        /* not relation data */
        {"base/5/pg_filenode.map", 0, 0},
        {"base/5/pg_internal.init", 0, 0},
        {"base/5/PG_VERSION", 0, 0},
        {"global/pg_filenode.map", 0, 0},
        {"global/pg_control", 0, 0},
        {"global/pg_internal.init", 0, 0},
        {"base/5/t3_16384", 0, 0},
        {"base/5/t3_16384_fsm", 0, 0},
        {"base/5/t3_16384.1", 0, 0},
        {"base/pgsql_tmp/pgsql_tmp1234.0", 0, 0},
        {"pg_tblspc/16390/PG_15_202209061/pgsql_tmp/pgsql_tmp1.0", 0, 0},
        {"pg_tblspc/16390/PG_15_202209061/5/t3_16391", 0, 0},
        {"PG_VERSION", 0, 0},
        {"16384", 0, 0},
        {"pg_wal/000000010000000000000001", 0, 0},
        {"pg_xact/0000", 0, 0},
        {"base/5", 0, 0},
        {"base/5/", 0, 0},
        {"base//16384", 0, 0},
        {"base/5/16384.", 0, 0},
        {"base/5/16384.0", 0, 0},
        {"base/5/16384.01", 0, 0},
        {"base/5/16384.32768", 0, 0},
        {"base/5/016384", 0, 0},
        {"base/05/16384", 0, 0},
        {"base/5/4294967296", 0, 0},
        {"base/5/16384_fsmx", 0, 0},
        {"base/5/16384_foo", 0, 0},
        {"base/5/16384_", 0, 0},
        {"base/5/16384.1.2", 0, 0},
        {"base/5/16384/", 0, 0},
        {"base/5/16384 ", 0, 0},
        {"base/5/6/16384", 0, 0},
        {"/base/5/16384", 0, 0},
        {"./base/5/16384", 0, 0},
        {"base/5/../5/16384", 0, 0},
        {"global/5/16384", 0, 0},
        {"pg_tblspc/16390/5/16391", 0, 0},
        {"pg_tblspc/16390/PG_15/5/16391", 0, 0},
        {"pg_tblspc/16390/PG__202209061/5/16391", 0, 0},
        {"pg_tblspc/16390/PG_15_202209061/16391", 0, 0},
        {"pg_tblspc/16390/PG_15_202209061/5/16391/x", 0, 0},
        {"pg_tblspc/x/PG_15_202209061/5/16391", 0, 0},
        {"", 0, 0},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint32_t segno = 999;
        int r = ws_pg_relation_file(cases[i].path, &segno);
        CHECK(r == cases[i].is_rel);
        CHECK(segno == cases[i].segno);
        if (r != cases[i].is_rel || segno != cases[i].segno)
            unit_fail(__FILE__, __LINE__, cases[i].path);
    }
}

const struct unit_test unit_tests[] = {
    {"real_pages", test_real_pages},
    {"segment_block_numbers", test_segment_block_numbers},
    {"bit_flips", test_bit_flips},
    {"new_pages", test_new_pages},
    {"skip_lsn", test_skip_lsn},
    {"bad_headers", test_bad_headers},
    {"relation_files", test_relation_files},
    {NULL, NULL},
};
