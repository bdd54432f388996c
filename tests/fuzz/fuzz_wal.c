/*
 * fuzz_wal: WAL file names and the WAL long page header (wal.h), as wal-push and wal-fetch see
 * them from PostgreSQL or from a repository listing.
 *
 * The first byte picks the target; the rest is its input:
 *   even: a file name: ws_wal_classify; for a segment-like name ws_wal_parse_name with every
 *         segment size, and ws_wal_format_name gives the name back; ws_wal_parse_lsn /
 *         ws_wal_format_lsn round trip; ws_wal_max_size is bounded for every kind
 *   odd:  the first bytes of a segment file: ws_wal_check_segment against the name the header
 *         itself implies (so the page-address check is reached) and against a name from the
 *         input; an accepted header has a valid magic, long flag and segment size.
 * Properties: no crash or undefined behaviour, and the round trips and bounds above.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg/wal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

static void fuzz_name(const char *name)
{
    int kind = ws_wal_classify(name);
    uint64_t lsn, lsn2;
    char out[WS_WAL_NAME_LEN + 1], text[24];

    check(kind >= WS_WAL_INVALID && kind <= WS_WAL_BACKUP);
    check(ws_wal_max_size(kind, WS_WAL_MAX_SEG_SIZE) <= WS_WAL_MAX_SEG_SIZE);
    check((kind == WS_WAL_INVALID) == (ws_wal_max_size(kind, WS_WAL_MIN_SEG_SIZE) == 0));
    if (kind != WS_WAL_INVALID)
        check(strchr(name, '/') == NULL && strlen(name) >= 16);
    for (uint64_t seg = WS_WAL_MIN_SEG_SIZE; seg <= WS_WAL_MAX_SEG_SIZE; seg <<= 1) {
        uint32_t tli;
        uint64_t segno;
        if (ws_wal_parse_name(name, seg, &tli, &segno) != 0)
            continue;
        check(segno < (UINT64_C(1) << 32) * ws_wal_segs_per_id(seg));
        ws_wal_format_name(out, tli, segno, seg);
        check(strncmp(out, name, WS_WAL_NAME_LEN) == 0);
        check(ws_wal_lsn_to_segno(ws_wal_segno_to_lsn(segno, seg), seg) == segno);
    }
    if (ws_wal_parse_lsn(name, &lsn) == 0) {
        ws_wal_format_lsn(text, lsn);
        check(ws_wal_parse_lsn(text, &lsn2) == 0 && lsn2 == lsn);
    }
}

static void fuzz_header(const uint8_t *buf, size_t len)
{
    struct ws_wal_long_header h;
    struct ws_error err = {0};
    char name[WS_WAL_NAME_LEN + 1] = "000000010000000000000001";
    uint64_t file_size = len;

    if (len >= WS_WAL_LONG_HEADER_SIZE) {
        ws_wal_decode_long_header(buf, &h);
        if (ws_wal_seg_size_valid(h.seg_size)) {
            /* the name and size the header claims: reaches the page address check */
            ws_wal_format_name(name, h.tli, h.pageaddr / h.seg_size, h.seg_size);
            file_size = h.seg_size;
        }
    }
    if (ws_wal_check_segment("fuzz", name, buf, len, file_size, &h, &err) == 0) {
        check(ws_wal_magic_to_major(h.magic) != 0 && (h.info & WS_XLP_LONG_HEADER));
        check(ws_wal_seg_size_valid(h.seg_size) && h.seg_size == file_size);
        check(h.pageaddr % h.seg_size == 0);
    } else {
        check(err.code == WS_ERR_INVALID);
    }
    /* a name taken from the input (after the header), any file size */
    if (len >= WS_WAL_LONG_HEADER_SIZE + WS_WAL_NAME_LEN) {
        memcpy(name, buf + WS_WAL_LONG_HEADER_SIZE, WS_WAL_NAME_LEN);
        name[WS_WAL_NAME_LEN] = '\0';
        (void)ws_wal_check_segment("fuzz", name, buf, len, len, &h, &err);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *name;

    if (size < 1)
        return 0;
    if (data[0] & 1) {
        fuzz_header(data + 1, size - 1);
        return 0;
    }
    if (!(name = malloc(size)))
        return 0;
    memcpy(name, data + 1, size - 1);
    name[size - 1] = '\0';
    fuzz_name(name);
    free(name);
    return 0;
}
