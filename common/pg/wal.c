#include "pg/wal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int all_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F')))
            return 0;
    }
    return 1;
}

int ws_wal_classify(const char *name)
{
    size_t n = strlen(name);

    if (n == WS_WAL_NAME_LEN && all_hex(name, n))
        return WS_WAL_SEGMENT;
    if (n == WS_WAL_NAME_LEN + 8 && all_hex(name, WS_WAL_NAME_LEN) &&
        strcmp(name + WS_WAL_NAME_LEN, ".partial") == 0)
        return WS_WAL_PARTIAL;
    if (n == 8 + 8 && all_hex(name, 8) && strcmp(name + 8, ".history") == 0)
        return WS_WAL_HISTORY;
    if (n == WS_WAL_NAME_LEN + 1 + 8 + 7 && all_hex(name, WS_WAL_NAME_LEN) &&
        name[WS_WAL_NAME_LEN] == '.' && all_hex(name + WS_WAL_NAME_LEN + 1, 8) &&
        strcmp(name + WS_WAL_NAME_LEN + 9, ".backup") == 0)
        return WS_WAL_BACKUP;
    return WS_WAL_INVALID;
}

uint64_t ws_wal_max_size(int kind, uint64_t seg_size)
{
    switch (kind) {
    case WS_WAL_SEGMENT:
    case WS_WAL_PARTIAL:
        return seg_size;
    case WS_WAL_HISTORY:
    case WS_WAL_BACKUP:
        return WS_WAL_SIDE_FILE_MAX;
    default:
        return 0;
    }
}

int ws_wal_seg_size_valid(uint64_t seg_size)
{
    return seg_size >= WS_WAL_MIN_SEG_SIZE && seg_size <= WS_WAL_MAX_SEG_SIZE &&
           (seg_size & (seg_size - 1)) == 0;
}

uint64_t ws_wal_segs_per_id(uint64_t seg_size)
{
    return UINT64_C(0x100000000) / seg_size;
}

static uint32_t hex8(const char *s)
{
    uint32_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v * 16 + (uint32_t)(s[i] <= '9' ? s[i] - '0' : s[i] - 'A' + 10);
    return v;
}

int ws_wal_parse_name(const char *name, uint64_t seg_size, uint32_t *tli, uint64_t *segno)
{
    uint64_t per = ws_wal_segs_per_id(seg_size);
    uint32_t log, seg;

    if (strlen(name) < WS_WAL_NAME_LEN || !all_hex(name, WS_WAL_NAME_LEN))
        return -1;
    log = hex8(name + 8);
    seg = hex8(name + 16);
    if (seg >= per)
        return -1;
    *tli = hex8(name);
    *segno = (uint64_t)log * per + seg;
    return 0;
}

void ws_wal_format_name(char out[WS_WAL_NAME_LEN + 1], uint32_t tli, uint64_t segno,
                        uint64_t seg_size)
{
    uint64_t per = ws_wal_segs_per_id(seg_size);
    snprintf(out, WS_WAL_NAME_LEN + 1, "%08" PRIX32 "%08" PRIX32 "%08" PRIX32, tli,
             (uint32_t)(segno / per), (uint32_t)(segno % per));
}

uint64_t ws_wal_lsn_to_segno(uint64_t lsn, uint64_t seg_size)
{
    return lsn / seg_size;
}

uint64_t ws_wal_segno_to_lsn(uint64_t segno, uint64_t seg_size)
{
    return segno * seg_size;
}

int ws_wal_parse_lsn(const char *s, uint64_t *lsn)
{
    const char *slash = strchr(s, '/');
    uint64_t hi = 0, lo = 0;
    size_t nhi, nlo;

    if (!slash)
        return -1;
    nhi = (size_t)(slash - s);
    nlo = strlen(slash + 1);
    if (nhi < 1 || nhi > 8 || nlo < 1 || nlo > 8)
        return -1;
    for (size_t i = 0; i < nhi + 1 + nlo; i++) {
        char c = s[i];
        uint64_t d;
        if (i == nhi)
            continue;
        if (c >= '0' && c <= '9')
            d = (uint64_t)(c - '0');
        else if (c >= 'A' && c <= 'F')
            d = (uint64_t)(c - 'A' + 10);
        else if (c >= 'a' && c <= 'f')
            d = (uint64_t)(c - 'a' + 10);
        else
            return -1;
        if (i < nhi)
            hi = hi * 16 + d;
        else
            lo = lo * 16 + d;
    }
    *lsn = hi << 32 | lo;
    return 0;
}

void ws_wal_format_lsn(char out[24], uint64_t lsn)
{
    snprintf(out, 24, "%" PRIX32 "/%" PRIX32, (uint32_t)(lsn >> 32), (uint32_t)lsn);
}

void ws_wal_decode_long_header(const uint8_t buf[WS_WAL_LONG_HEADER_SIZE],
                               struct ws_wal_long_header *h)
{
    /* XLogPageHeaderData: magic u16 @0, info u16 @2, tli u32 @4, pageaddr u64 @8,
     * rem_len u32 @16, padded to 24; then sysid u64 @24, seg_size u32 @32, blcksz u32 @36. */
    memcpy(&h->magic, buf + 0, 2);
    memcpy(&h->info, buf + 2, 2);
    memcpy(&h->tli, buf + 4, 4);
    memcpy(&h->pageaddr, buf + 8, 8);
    memcpy(&h->sysid, buf + 24, 8);
    memcpy(&h->seg_size, buf + 32, 4);
    memcpy(&h->blcksz, buf + 36, 4);
}

void ws_wal_encode_long_header(const struct ws_wal_long_header *h,
                               uint8_t buf[WS_WAL_LONG_HEADER_SIZE])
{
    memset(buf, 0, WS_WAL_LONG_HEADER_SIZE);
    memcpy(buf + 0, &h->magic, 2);
    memcpy(buf + 2, &h->info, 2);
    memcpy(buf + 4, &h->tli, 4);
    memcpy(buf + 8, &h->pageaddr, 8);
    memcpy(buf + 24, &h->sysid, 8);
    memcpy(buf + 32, &h->seg_size, 4);
    memcpy(buf + 36, &h->blcksz, 4);
}

int ws_wal_magic_to_major(uint16_t magic)
{
    static const struct {
        uint16_t magic;
        int major;
    } known[] = {
        {0xD101, 12}, {0xD106, 13}, {0xD10D, 14}, {0xD110, 15},
        {0xD113, 16}, {0xD116, 17}, {0xD118, 18},
    };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (known[i].magic == magic)
            return known[i].major;
    return 0;
}

int ws_wal_check_segment(const char *path, const char *name, const uint8_t *buf, size_t buflen,
                         uint64_t file_size, struct ws_wal_long_header *h, struct ws_error *err)
{
    uint32_t tli;
    uint64_t segno;
    char lsn[24];

    if (buflen < WS_WAL_LONG_HEADER_SIZE)
        return ws_error_set(err, WS_ERR_INVALID,
                            "file \"%s\" is not a WAL segment: only %zu bytes long", path, buflen);
    ws_wal_decode_long_header(buf, h);
    if (ws_wal_magic_to_major(h->magic) == 0)
        return ws_error_set(err, WS_ERR_INVALID,
                            "file \"%s\" is not a WAL segment: unknown page magic 0x%04X", path,
                            h->magic);
    if (!(h->info & WS_XLP_LONG_HEADER))
        return ws_error_set(err, WS_ERR_INVALID,
                            "file \"%s\" is not a WAL segment: first page has no long header",
                            path);
    if (!ws_wal_seg_size_valid(h->seg_size) || h->blcksz < 1024 || h->blcksz > 65536 ||
        (h->blcksz & (h->blcksz - 1)) != 0)
        return ws_error_set(err, WS_ERR_INVALID,
                            "file \"%s\" is not a WAL segment: invalid segment size %u or block "
                            "size %u in its header",
                            path, h->seg_size, h->blcksz);
    if (file_size != h->seg_size)
        return ws_error_set(err, WS_ERR_INVALID,
                            "WAL file \"%s\" has %llu bytes but its header says the segment size "
                            "is %u: truncated or damaged",
                            path, (unsigned long long)file_size, h->seg_size);
    if (ws_wal_parse_name(name, h->seg_size, &tli, &segno) != 0)
        return ws_error_set(err, WS_ERR_INVALID,
                            "file name \"%s\" is not a valid WAL segment name for segment size %u",
                            name, h->seg_size);
    if (h->pageaddr != ws_wal_segno_to_lsn(segno, h->seg_size)) {
        ws_wal_format_lsn(lsn, h->pageaddr);
        return ws_error_set(
            err, WS_ERR_INVALID,
            "WAL file \"%s\" starts at LSN %s, which does not belong to segment %.24s", path, lsn,
            name);
    }
    return 0;
}
