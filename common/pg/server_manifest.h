/*
 * pg/server_manifest.h - a reader of the backup_manifest PostgreSQL 15 sends after BASE_BACKUP
 * (version 1, MANIFEST_CHECKSUMS 'CRC32C'), one line at a time: never the whole manifest in
 * memory, at most WS_SMF_LINE_MAX bytes of one line.
 *
 * The lines are exactly those PostgreSQL's backup_manifest.c writes:
 *
 *   { "PostgreSQL-Backup-Manifest-Version": 1,
 *   "Files": [
 *   { "Path": "<JSON string>", "Size": <n>, "Last-Modified": "<...>", "Checksum-Algorithm":
 *     "CRC32C", "Checksum": "<8 hex>" },             (one line; "Encoded-Path": "<hex>" for a
 *   ...                                                path that is not valid text; the last one
 *   ],                                                 without the comma)
 *   "WAL-Ranges": [
 *   { "Timeline": <n>, "Start-LSN": "<X/X>", "End-LSN": "<X/X>" },   (one or more)
 *   ],
 *   "Manifest-Checksum": "<64 hex>"}
 *
 * and the manifest checksum (SHA-256 of every byte before its line) is checked. Each file entry
 * goes to the caller's callback as it is parsed (its path decoded, valid until the callback
 * returns); a callback's error stops the reader and is returned as it is. Anything else (another
 * line, a file without a CRC-32C, bytes after the last line, a manifest that stops early) is
 * WS_ERR_CORRUPT naming `what` and the line number; WS_ERR_INTERNAL when out of memory.
 */
#ifndef WS_PG_SERVER_MANIFEST_H
#define WS_PG_SERVER_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

#define WS_SMF_LINE_MAX 16384
#define WS_SMF_PATH_MAX 4096

struct ws_smf_file {
    const char *path; /* decoded, NUL-terminated (a path holding a NUL is refused) */
    uint64_t size;
    uint32_t crc32c; /* the 4 bytes of "Checksum" read as little-endian: the CRC-32C (crc32c.h)
                        of a little-endian server; a big-endian one's is byte-swapped */
};

typedef int (*ws_smf_file_fn)(void *arg, const struct ws_smf_file *f, struct ws_error *err);

struct ws_smf;

/* A reader; what (copied) names the manifest in messages; on_file and arg are kept. */
int ws_smf_new(const char *what, ws_smf_file_fn on_file, void *arg, struct ws_smf **out,
               struct ws_error *err);
void ws_smf_free(struct ws_smf *r);
/* The manifest's next bytes, in chunks of any size. */
int ws_smf_feed(struct ws_smf *r, const uint8_t *data, size_t len, struct ws_error *err);
/* After the last byte: the manifest was complete and its checksum right. */
int ws_smf_finish(struct ws_smf *r, struct ws_error *err);

#endif
