/*
 * blockmap.h - what incremental backups add to a backup: block digests and delta extents.
 * Why blocks are compared by digest, and the memory arithmetic: docs/design/incremental.md.
 *
 *   <cluster>/backup/<ID>/map/<NNNNNN>   map objects: 8-byte block digests back to back
 *
 * Block digest: XXH3-64 of the block's bytes, canonical (big-endian) form; the last block of
 * a file whose size is no multiple of the block size is digested over the bytes it has. A
 * relation file's manifest record names its map object and the index of its first digest
 * ("map" line, manifest.h); it has ws_blockmap_blocks(size, block_size) digests there. Every
 * backup (full, diff, incr) of manifest version 2 records the digests of every relation file it
 * lists, whatever it stored of it, so that the next incremental needs its reference only. A map
 * object holds whole files' digests; a writer starts a new one past WS_MAP_TARGET bytes; a reader
 * refuses one above WS_MAP_LIMIT before it holds it.
 *
 * Delta extent: the bytes a DELTA record points to in a bundle, all integers big-endian:
 *   u64 file size | u32 count | count x u32 block number (strictly increasing, each below
 *   ws_blockmap_blocks(file size)) | the count blocks' bytes, each block_size bytes except a
 *   last partial block of the file (file size % block_size bytes)
 * Applying it to the reference's version of the file (pwrite of each block, then truncation to
 * the file size) gives the file. Blocks at or past the reference version's end are always in the
 * extent, so a file that grew again after a truncation comes out right.
 *
 * Errors: the decoder fails with WS_ERR_CORRUPT naming `what` on any deviation (lengths, order,
 * counts); nothing here does I/O except ws_blockmap_load (storage's, ws_repo_get_small's errors).
 */
#ifndef WS_REPO_BLOCKMAP_H
#define WS_REPO_BLOCKMAP_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "io/key.h"
#include "repo/manifest.h"
#include "repo/repo.h"

#define WS_BLOCK_DIGEST_SIZE 8
#define WS_MAP_TARGET (4u << 20) /* a writer starts a new map object past this many bytes */
#define WS_MAP_LIMIT (64u << 20) /* the most a map object's content may hold */
#define WS_DELTA_HEADER 12       /* u64 size | u32 count */

/* ceil(size / block_size) */
uint64_t ws_blockmap_blocks(uint64_t size, uint32_t block_size);
void ws_block_digest(const void *p, size_t n, uint8_t out[WS_BLOCK_DIGEST_SIZE]);
/* "<cluster>/backup/<ID>/map/<NNNNNN>" */
void ws_backup_map_key(const struct ws_repo *repo, const char *id, uint32_t map, char *out,
                       size_t outsz);
/* Reads a whole map object (at most WS_MAP_LIMIT); *out is malloc'ed, *len a multiple of
 * WS_BLOCK_DIGEST_SIZE (else WS_ERR_CORRUPT). */
int ws_blockmap_load(struct ws_repo *repo, const struct ws_keyring *kr, const char *id,
                     uint32_t map, uint8_t **out, size_t *len, struct ws_error *err);
/* Whether a data-directory path is a relation file (base/, global/, pg_tblspc/<oid>/<ver>/:
 * a relfilenode, its forks and segments), whose blocks are compared one by one. */
int ws_blockmap_is_relation(const char *path);

/* A delta extent being read back, fed in any slices (the bundle splitter's view of it). */
struct ws_delta_reader {
    uint32_t block_size;
    uint64_t length;  /* of the whole extent, from the manifest */
    const char *what; /* names the file in messages */
    /* Called for each block's bytes as they come (a block may arrive in several calls: off is
     * the offset in the file). Returns 0 or an error code (and sets err). */
    int (*block)(void *arg, uint64_t off, const uint8_t *p, size_t n, struct ws_error *err);
    void *arg;
    /* private */
    uint64_t pos, size;
    uint32_t count, idx;
    uint8_t hdr[WS_DELTA_HEADER];
    uint8_t numbuf[4];
    uint32_t *blocks, cap; /* grown as numbers arrive: never more than the bytes read make */
};
void ws_delta_reader_init(struct ws_delta_reader *r, uint32_t block_size, uint64_t length,
                          const char *what);
int ws_delta_reader_feed(struct ws_delta_reader *r, const uint8_t *p, size_t n,
                         struct ws_error *err);
/* After the last byte: checks that the extent ended where its header says; *size = the file
 * size it records. */
int ws_delta_reader_end(struct ws_delta_reader *r, uint64_t *size, struct ws_error *err);
void ws_delta_reader_free(struct ws_delta_reader *r);

#endif
