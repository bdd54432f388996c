/*
 * bundle.h - reading a backup bundle back into the files it holds.
 *
 * A bundle's content is whole files back to back (manifest.h). The splitter is a sink that takes
 * that content (from an object reader, so it is already authenticated chunk by chunk when
 * encrypted) and cuts it at the offsets the manifest gives. For every file it recomputes the
 * SHA-256 and compares size and digest with the manifest; in restore mode it also writes the
 * file into `tree` (base/fs.h: through directory descriptors, never following a link; created
 * exclusively, with the recorded mtime and the recorded mode masked to what PostgreSQL itself
 * gives its files: at most 0600, or 0640 with `group_access`).
 *
 * Problems are reported through `problem` (one call per file, message names the file) and
 * counted; in restore mode the first problem also fails the sink (WS_ERR_CORRUPT). In verify
 * mode the splitter continues so that one run lists everything that is wrong.
 *
 * A bundle may also hold pieces of a large file (manifest.h): an extent is then a range of the
 * file. In restore mode a piece is written with pwrite into the file, which the caller created
 * beforehand (and whose attributes the caller sets after all pieces); the whole-file SHA-256 of
 * a file in pieces cannot be checked by one worker, so restore relies on the objects'
 * authentication for pieces (each piece's length is checked). In verify mode the caller passes
 * one running SHA-256 per file in pieces (`md`) and feeds the bundles in order: the digest is
 * compared when the last piece ends.
 *
 * A delta extent (a DELTA record, blockmap.h) is decoded as it comes (repo/delta.c): in restore
 * mode each block is written with pwrite into the file, which must exist (an earlier layer of the
 * chain made it), and the file is then truncated to the size the extent records, which must be
 * the record's size; mode, mtime and the SHA-256 are the caller's business (it reads the finished
 * file back). A malformed extent is a problem like a damaged file. REF records have no extent.
 *
 * With `sparse`, the extents are a subset of the bundle's files: bytes before, between and after
 * them are read and dropped (a layer of a chain, or the files a delta restore rewrites).
 *
 * With `patch` (restore mode, a delta restore patching files in place): for each extent's file
 * `patch` gives the bitmap of the blocks (of `block_size`) still wanted, bit b of byte b / 8 for
 * block b, nbits bits (NULL: nothing wanted, the extent is only read). Only those blocks are
 * written, with pwrite into the existing file (never created, truncated, nor given attributes),
 * and each one's bit is cleared once its last byte is in: the first layer to write a block wins.
 * Whole extents are still checked against their SHA-256. Workers writing pieces of one file
 * touch distinct bytes of its bitmap (pieces start at multiples of WS_PIECE_SIZE).
 *
 * Ownership: the splitter copies the extents array; the files and md stay the caller's.
 */
#ifndef WS_BUNDLE_H
#define WS_BUNDLE_H

#include <stdint.h>
#include <sys/types.h>

#include "base/fs.h"
#include "io/sink.h"
#include "repo/blockmap.h"
#include "repo/manifest.h"

struct ws_bextent;

typedef void (*ws_bundle_problem_fn)(void *arg, const struct ws_bfile *f, const char *msg);

struct ws_bundle_opts {
    const struct ws_tree *tree; /* NULL: verify only, write nothing */
    int group_access;           /* files at most 0640 instead of 0600 */
    ws_bundle_problem_fn problem;
    void *arg;
    uint32_t block_size; /* the manifest's: delta extents are in blocks of it */
    int sparse;          /* extents are a subset of the bundle's content: skip the rest */
    uint8_t *(*patch)(void *arg, const struct ws_bfile *f, uint64_t *nbits);
    void *patch_arg;
};

struct ws_bextent {
    const struct ws_bfile *file;
    uint64_t file_offset; /* 0 and length == size: the whole file */
    uint64_t length;
    uint64_t offset; /* in the bundle's content; extents are given sorted by it */
    void *md;        /* verify mode, file in pieces: its running SHA-256 (EVP_MD_CTX *) */
    int delta;       /* a delta extent (file_offset 0, length the record's) */
};

int ws_bundle_splitter_new_ext(const struct ws_bextent *ext, size_t next,
                               const struct ws_bundle_opts *o, struct ws_sink **out,
                               struct ws_error *err);
/* The mode a restored file gets: the manifest's, masked to 0600 (0640 with group access). */
unsigned ws_bundle_file_mode(uint32_t manifest_mode, int group_access);
/* Whole files only (sorted by offset). */
int ws_bundle_splitter_new(const struct ws_bfile *const *files, size_t nfiles,
                           const struct ws_bundle_opts *o, struct ws_sink **out,
                           struct ws_error *err);
/*
 * Every extent of a manifest (whole files, first parts plus pieces of large ones, delta extents;
 * nothing of REF records), sorted by (bundle, offset); (*first)[b] .. (*first)[b + 1] are the
 * extents of bundle b. The caller frees *ext and *first.
 */
int ws_bundle_extents(const struct ws_manifest *m, struct ws_bextent **ext, size_t **first,
                      size_t *next, struct ws_error *err);
/* The same for some records of a manifest with `bundles` bundles (files[i] point into it). */
int ws_bundle_extents_of(const struct ws_bfile *const *files, size_t nfiles, uint32_t bundles,
                         struct ws_bextent **ext, size_t **first, size_t *next,
                         struct ws_error *err);

/* Files whose size and SHA-256 matched (valid after finish or failure). */
size_t ws_bundle_splitter_good(const struct ws_sink *s);
size_t ws_bundle_splitter_bad(const struct ws_sink *s);

#endif
