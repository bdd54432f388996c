/*
 * pgpage.h - PostgreSQL data page checksums (data_checksums clusters), for base backups.
 *
 * A cluster initialised with `initdb -k` stores in every relation page a 16-bit checksum of the
 * page and its absolute block number. A base backup reads each relation file anyway, so it can
 * verify every page on the way and report corruption before the copy becomes the only one.
 * The algorithm is re-derived from the description in PostgreSQL's
 * src/include/storage/checksum_impl.h (not copied); the block size is the default 8 kB and a
 * segment file holds the default 1 GiB.
 *
 * No allocation, no errors: the functions only read the caller's buffer.
 *
 *     uint32_t segno;
 *     if (ws_pg_relation_file("base/5/16384.2", &segno))           // segno == 2
 *         nbad += ws_pg_check_pages(buf, len, segno, first_block, backup_start_lsn, report, ctx);
 *
 * A page that PostgreSQL writes while the backup reads it can be read torn (half old, half new):
 * re-read a bad page once before reporting it, as pg_basebackup does. Pages written after the
 * backup started carry an LSN >= the start LSN and are skipped: WAL replay rewrites them.
 */
#ifndef WS_PGPAGE_H
#define WS_PGPAGE_H

#include <stddef.h>
#include <stdint.h>

#define WS_PG_BLCKSZ 8192
#define WS_PG_RELSEG_BLOCKS 131072 /* blocks per 1 GiB relation segment file */

/* The checksum PostgreSQL stores in pd_checksum for this page at absolute block number blkno. */
uint16_t ws_pg_page_checksum(const uint8_t *page, uint32_t blkno);

/*
 * 1 if path (relative to the data directory, e.g. "base/5/16384.2", "global/1262",
 * "pg_tblspc/16390/PG_15_202209061/5/16391_vm") is a relation data file whose pages carry
 * checksums: main, fsm, vm and init forks and their .N segments under base/<db>/, global/ and
 * pg_tblspc/<oid>/PG_<version>_<catversion>/<db>/. Sets *segno to the .N suffix (0 if none, and
 * 0 when the result is 0). Everything else is 0: pg_filenode.map, pg_internal.init, PG_VERSION,
 * temporary relations (t<backend>_<relfilenode>), pgsql_tmp, names with leading zeros.
 */
int ws_pg_relation_file(const char *path, uint32_t *segno);

/*
 * Checks the pages in buf (len bytes, starting at block index first_block within the file whose
 * segment number is segno). For each whole page, in this order:
 *   - pd_lsn >= skip_lsn: skipped (written during the backup; pass UINT64_MAX to check all);
 *   - pd_upper == 0 (a new page): fine if all zero, bad otherwise;
 *   - header not sane (unknown pd_flags bits, or not pd_lower <= pd_upper <= pd_special <= 8192
 *     with pd_special a multiple of 8): bad;
 *   - stored checksum differs from the computed one: bad.
 * These are the rules PostgreSQL applies when it reads a page (PageIsVerifiedExtended).
 * A trailing partial page (len % 8192) is ignored. Calls bad(arg, block_in_file) for every bad
 * page, in order, and returns the number of bad pages. bad may be NULL.
 */
typedef void (*ws_pg_bad_page_fn)(void *arg, uint32_t block_in_file);
size_t ws_pg_check_pages(const uint8_t *buf, size_t len, uint32_t segno, uint32_t first_block,
                         uint64_t skip_lsn, ws_pg_bad_page_fn bad, void *arg);

#endif
