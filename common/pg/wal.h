/*
 * wal.h - WAL file names, LSN arithmetic and the long page header, as PostgreSQL defines them
 * in src/include/access/xlog_internal.h (re-derived here, not copied).
 *
 * A segment name is TTTTTTTTXXXXXXXXYYYYYYYY: timeline, then the segment number split into
 * "log" (segno / segments_per_4GiB) and "seg" (segno % segments_per_4GiB), 8 hex digits each.
 * Segment sizes are powers of two from 1 MiB to 1 GiB.
 */
#ifndef WS_WAL_H
#define WS_WAL_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

#define WS_WAL_NAME_LEN 24
#define WS_WAL_MIN_SEG_SIZE (1u << 20)
#define WS_WAL_MAX_SEG_SIZE (1u << 30)
#define WS_WAL_LONG_HEADER_SIZE 40
#define WS_XLP_LONG_HEADER 0x0002

enum ws_wal_kind {
    WS_WAL_INVALID = 0,
    WS_WAL_SEGMENT, /* 000000010000000000000001 */
    WS_WAL_PARTIAL, /* 000000010000000000000001.partial */
    WS_WAL_HISTORY, /* 00000002.history */
    WS_WAL_BACKUP,  /* 000000010000000000000001.00000028.backup */
};

/* Classifies a bare file name (no directory). */
int ws_wal_classify(const char *name);

/* The most a .history or .backup file may hold: PostgreSQL writes a few hundred bytes per
 * timeline switch (history) or one small label (backup). */
#define WS_WAL_SIDE_FILE_MAX (1u << 20)
/* The most content a WAL file of this kind may hold: seg_size for a segment or .partial file,
 * WS_WAL_SIDE_FILE_MAX for .history and .backup; 0 for WS_WAL_INVALID. */
uint64_t ws_wal_max_size(int kind, uint64_t seg_size);

int ws_wal_seg_size_valid(uint64_t seg_size);
uint64_t ws_wal_segs_per_id(uint64_t seg_size);

/* Parses the first 24 characters of a segment-like name. Returns 0 or -1. */
int ws_wal_parse_name(const char *name, uint64_t seg_size, uint32_t *tli, uint64_t *segno);
/* Writes the 24-character name (plus NUL) into out[25]. */
void ws_wal_format_name(char out[WS_WAL_NAME_LEN + 1], uint32_t tli, uint64_t segno,
                        uint64_t seg_size);

uint64_t ws_wal_lsn_to_segno(uint64_t lsn, uint64_t seg_size);
uint64_t ws_wal_segno_to_lsn(uint64_t segno, uint64_t seg_size);
/* "16/B374D848" <-> 64-bit LSN. Parse returns 0 or -1. */
int ws_wal_parse_lsn(const char *s, uint64_t *lsn);
void ws_wal_format_lsn(char out[24], uint64_t lsn);

struct ws_wal_long_header {
    uint16_t magic;
    uint16_t info;
    uint32_t tli;
    uint64_t pageaddr;
    uint64_t sysid;
    uint32_t seg_size;
    uint32_t blcksz;
};

/* Decodes the first 40 bytes of a segment (native byte order, as PostgreSQL writes them). */
void ws_wal_decode_long_header(const uint8_t buf[WS_WAL_LONG_HEADER_SIZE],
                               struct ws_wal_long_header *h);
/* The inverse, for tools and tests that make segments: h into buf, xlp_rem_len and padding 0. */
void ws_wal_encode_long_header(const struct ws_wal_long_header *h,
                               uint8_t buf[WS_WAL_LONG_HEADER_SIZE]);

/* PostgreSQL major version for a XLOG_PAGE_MAGIC, 0 if unknown. */
int ws_wal_magic_to_major(uint16_t magic);

/*
 * Checks that `buf` (the first bytes of file `name`, file size `file_size`) is the start of a
 * real segment for that name: known magic, long header, valid segment and block size, file size
 * equal to the segment size, and page address equal to the segment's start LSN. Anything else
 * is WS_ERR_INVALID, with a message naming `path`.
 */
int ws_wal_check_segment(const char *path, const char *name, const uint8_t *buf, size_t buflen,
                         uint64_t file_size, struct ws_wal_long_header *h, struct ws_error *err);

#endif
