#include "pg/pgpage.h"

#include <string.h>

/*
 * The checksum is 32 independent FNV-1a-like hashes ("lanes") over the page seen as 64 rows of
 * 32 native-order uint32 words: lane j folds in word j of every row. One fold step is
 *     t = h ^ w;  h = t * FNV_PRIME ^ (t >> 17)
 * (the shift mixes high bits down, which plain FNV does not). Independent lanes hide the
 * multiply latency and let the compiler turn a row into a few SIMD multiplies. After the page,
 * every lane folds in two zero words, the lanes are xor-ed together, the block number is xor-ed
 * in, and the result is reduced to 1..65535. pd_checksum itself counts as zero.
 *
 * The lane count, the prime and the lane seeds are part of the on-disk format.
 */
#define LANES 32
#define ROW_BYTES (LANES * 4)
#define ROWS (WS_PG_BLCKSZ / ROW_BYTES)
#define FNV_PRIME 16777619u

#define OFF_CHECKSUM 8
#define OFF_FLAGS 10
#define OFF_LOWER 12
#define OFF_UPPER 14
#define OFF_SPECIAL 16
#define VALID_FLAGS 0x0007 /* PD_HAS_FREE_LINES | PD_PAGE_FULL | PD_ALL_VISIBLE */
#define MAXALIGN 8

static const uint32_t lane_seeds[LANES] = {
    0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A, 0x79FF467A, 0x9BB9F8A3, 0x217E7CD2, 0x83E13D2C,
    0xF8D4474F, 0xE39EB970, 0x42C6AE16, 0x993216FA, 0x7B093B5D, 0x98DAFF3C, 0xF718902A, 0x0B1C9CDB,
    0xE58F764B, 0x187636BC, 0x5D7B3BB1, 0xE73DE7DE, 0x92BEC979, 0xCCA6C0B2, 0x304A0979, 0x85AA43D4,
    0x783125BB, 0x6CA8EAA2, 0xE407EAC6, 0x4B5CFC3E, 0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756,
};

/*
 * One row into all lanes. memcpy keeps unaligned buffers and strict aliasing legal; gcc -O2
 * turns the loop into vector loads, multiplies and shifts over the local lane array.
 */
static inline void fold_row(uint32_t h[LANES], const uint8_t *row)
{
    for (int j = 0; j < LANES; j++) {
        uint32_t w, t;
        memcpy(&w, row + 4 * j, sizeof(w));
        t = h[j] ^ w;
        h[j] = (t * FNV_PRIME) ^ (t >> 17);
    }
}

static uint32_t page_hash(const uint8_t *page)
{
    static const uint8_t zero_row[ROW_BYTES];
    uint32_t h[LANES];
    uint8_t first[ROW_BYTES];
    uint32_t result = 0;

    memcpy(h, lane_seeds, sizeof(h));
    /* hash the first row from a copy with pd_checksum zeroed: the page is const */
    memcpy(first, page, sizeof(first));
    memset(first + OFF_CHECKSUM, 0, 2);
    fold_row(h, first);
    for (int r = 1; r < ROWS; r++)
        fold_row(h, page + (size_t)r * ROW_BYTES);
    fold_row(h, zero_row);
    fold_row(h, zero_row);
    for (int j = 0; j < LANES; j++)
        result ^= h[j];
    return result;
}

uint16_t ws_pg_page_checksum(const uint8_t *page, uint32_t blkno)
{
    return (uint16_t)(((page_hash(page) ^ blkno) % 65535u) + 1);
}

static uint16_t get16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static uint64_t page_lsn(const uint8_t *page)
{
    uint32_t hi, lo;
    memcpy(&hi, page, 4);
    memcpy(&lo, page + 4, 4);
    return ((uint64_t)hi << 32) | lo;
}

static int all_zero(const uint8_t *page)
{
    uint64_t acc = 0;
    for (size_t i = 0; i < WS_PG_BLCKSZ; i += 8) {
        uint64_t w;
        memcpy(&w, page + i, sizeof(w));
        acc |= w;
    }
    return acc == 0;
}

static int header_sane(const uint8_t *page)
{
    uint16_t flags = get16(page + OFF_FLAGS), lower = get16(page + OFF_LOWER);
    uint16_t upper = get16(page + OFF_UPPER), special = get16(page + OFF_SPECIAL);

    return (flags & ~VALID_FLAGS) == 0 && lower <= upper && upper <= special &&
           special <= WS_PG_BLCKSZ && special % MAXALIGN == 0;
}

/* 1 if the page must be reported. */
static int page_bad(const uint8_t *page, uint32_t blkno, uint64_t skip_lsn)
{
    if (page_lsn(page) >= skip_lsn)
        return 0;
    if (get16(page + OFF_UPPER) == 0)
        return !all_zero(page);
    if (!header_sane(page))
        return 1;
    return ws_pg_page_checksum(page, blkno) != get16(page + OFF_CHECKSUM);
}

size_t ws_pg_check_pages(const uint8_t *buf, size_t len, uint32_t segno, uint32_t first_block,
                         uint64_t skip_lsn, ws_pg_bad_page_fn bad, void *arg)
{
    size_t npages = len / WS_PG_BLCKSZ, nbad = 0;

    for (size_t i = 0; i < npages; i++) {
        uint32_t block = first_block + (uint32_t)i;
        /* wraps like PostgreSQL's uint32 BlockNumber; real files never get there */
        uint32_t blkno = segno * (uint32_t)WS_PG_RELSEG_BLOCKS + block;

        if (page_bad(buf + i * WS_PG_BLCKSZ, blkno, skip_lsn)) {
            nbad++;
            if (bad)
                bad(arg, block);
        }
    }
    return nbad;
}

/* Relation file names. */

static int starts(const char **p, const char *prefix)
{
    size_t n = strlen(prefix);
    if (strncmp(*p, prefix, n) != 0)
        return 0;
    *p += n;
    return 1;
}

/* A decimal number without leading zeros, 1..max; advances *p past it. */
static int number(const char **p, uint32_t max, uint32_t *out)
{
    const char *s = *p;
    uint64_t v = 0;

    if (*s < '1' || *s > '9')
        return 0;
    while (*s >= '0' && *s <= '9') {
        v = v * 10 + (uint64_t)(*s - '0');
        if (v > max)
            return 0;
        s++;
    }
    *p = s;
    *out = (uint32_t)v;
    return 1;
}

static int oid_dir(const char **p)
{
    uint32_t oid;
    return number(p, UINT32_MAX, &oid) && starts(p, "/");
}

/* "PG_15_202209061/" (or "PG_9.6_201608131/" before version 10). */
static int version_dir(const char **p)
{
    const char *s = *p;
    uint32_t catversion;

    if (!starts(&s, "PG_") || !(*s >= '0' && *s <= '9'))
        return 0;
    while ((*s >= '0' && *s <= '9') || *s == '.')
        s++;
    if (!starts(&s, "_") || !number(&s, UINT32_MAX, &catversion) || !starts(&s, "/"))
        return 0;
    *p = s;
    return 1;
}

/* "<relfilenode>[_fsm|_vm|_init][.<segno>]" and nothing after it. */
static int relation_name(const char *p, uint32_t *segno)
{
    /* the largest block number is 0xFFFFFFFE, so segment numbers stay below this */
    const uint32_t max_segno = UINT32_MAX / WS_PG_RELSEG_BLOCKS;
    uint32_t relfilenode, seg = 0;

    if (!number(&p, UINT32_MAX, &relfilenode))
        return 0;
    if (*p == '_' && !starts(&p, "_fsm") && !starts(&p, "_vm") && !starts(&p, "_init"))
        return 0;
    if (*p == '.' && (p++, !number(&p, max_segno, &seg)))
        return 0;
    if (*p != '\0')
        return 0;
    *segno = seg;
    return 1;
}

int ws_pg_relation_file(const char *path, uint32_t *segno)
{
    const char *p = path;

    *segno = 0;
    if (starts(&p, "global/"))
        return relation_name(p, segno);
    if (starts(&p, "base/"))
        return oid_dir(&p) && relation_name(p, segno);
    if (starts(&p, "pg_tblspc/"))
        return oid_dir(&p) && version_dir(&p) && oid_dir(&p) && relation_name(p, segno);
    return 0;
}
