/*
 * io/filedigest.h - the digest a backup manifest records of a whole file: the SHA-256 of its
 * bytes, or, for a file of ws_tree_min() bytes or more, its tree digest, whose pieces several
 * threads hash at once (docs/design/manifest.md, "File digests").
 *
 * Tree digest of a file of n bytes: cut into pieces of WS_TREE_PIECE bytes (the last one shorter;
 * none when n is 0), H_k the SHA-256 of piece k,
 *     SHA-256(H_0 || H_1 || ... || H_m-1 || n (8 bytes, big-endian) || WS_TREE_PIECE (4 bytes,
 *     big-endian))
 * A kind never stands for the other: the manifest says which one a file has.
 *
 * A ws_fdigest is a running digest of one kind: fed a file's bytes in order (update), then final.
 * It is small (two SHA-256 states) whatever the file's size. A run of updates may go through a
 * pipe, which hashes on other threads while the caller reads on:
 * - SHA-256: one thread (io/hashpipe.h, with its rules: none below WS_HASHPIPE_MIN expected);
 * - tree: up to WS_FDPIPE_THREADS threads, each hashing whole pieces copied into one of
 *   threads + 1 slots of WS_TREE_PIECE bytes; bytes that complete a piece begun before the run,
 *   and those of a piece left unfinished at its end, are hashed in the caller's thread.
 * Guarantees: the digest is the same however the bytes are cut into updates and runs, with or
 * without threads (or when they cannot be started). Between ws_fdpipe_start and finish (or free)
 * the ws_fdigest is the pipe's; after ws_fdpipe_finish returned 0 it holds every byte given.
 * `side` (may be NULL) sees every byte of a run once, in order: on the hashing thread for
 * SHA-256, in the caller's thread for a tree digest; it returns 1 on success.
 * ws_fdpipe_free (NULL is fine) may come at any moment: queued bytes are dropped, threads joined;
 * the ws_fdigest's state is then undefined (free it after the pipe).
 * Errors: WS_ERR_INTERNAL ("out of memory", "file digest failed": a hash or side update failed;
 * after it only the free functions are allowed).
 * Memory: a tree pipe (threads + 1) x WS_TREE_PIECE bytes; a SHA-256 pipe that of its hashpipe;
 * ws_fdigest_read_fd threads x WS_TREE_PIECE bytes, plus 32 bytes per piece of a batch (32 KiB).
 */
#ifndef WS_IO_FILEDIGEST_H
#define WS_IO_FILEDIGEST_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "io/hashpipe.h"

enum ws_fdigest_kind {
    WS_FDIGEST_SHA256 = 0, /* SHA-256 of the whole file */
    WS_FDIGEST_TREE = 1,   /* the tree digest above */
};

#define WS_TREE_PIECE (1u << 20)        /* bytes per piece of a tree digest */
#define WS_TREE_MIN_DEFAULT (64u << 20) /* files this large or larger get a tree digest */
#define WS_FDPIPE_THREADS 4             /* hashing threads of a tree pipe at most */

/* The threshold: WS_TREE_MIN_DEFAULT, or WALSAFE_TEST_TREE_MIN (bytes, 1 to 2^40; a setting for
 * tests only, so that they need no file of 64 MiB) when it is set to such a number. */
uint64_t ws_tree_min(void);
/* The kind a file of `size` bytes gets when it is backed up. */
int ws_digest_kind_for(uint64_t size);

struct ws_fdigest;

int ws_fdigest_new(int kind, struct ws_fdigest **out, struct ws_error *err);
/* Starts over, with kind. */
int ws_fdigest_reset(struct ws_fdigest *d, int kind, struct ws_error *err);
int ws_fdigest_kind(const struct ws_fdigest *d);
/* Bytes given so far. */
uint64_t ws_fdigest_length(const struct ws_fdigest *d);
int ws_fdigest_update(struct ws_fdigest *d, const void *buf, size_t len, struct ws_error *err);
/* The digest of every byte given; d must then be reset before any other use. */
int ws_fdigest_final(struct ws_fdigest *d, uint8_t out[32], struct ws_error *err);
void ws_fdigest_free(struct ws_fdigest *d);

struct ws_fdpipe;

/* threads: how many may hash (`parallel`; < 1: none, the caller's thread); expect: the bytes the
 * caller means to give in this run. */
int ws_fdpipe_start(struct ws_fdigest *d, int threads, uint64_t expect, ws_hashpipe_fn side,
                    void *side_ctx, struct ws_fdpipe **out, struct ws_error *err);
int ws_fdpipe_update(struct ws_fdpipe *p, const void *buf, size_t len, struct ws_error *err);
/* Waits until every byte given is in the ws_fdigest and stops the threads. */
int ws_fdpipe_finish(struct ws_fdpipe *p, struct ws_error *err);
void ws_fdpipe_free(struct ws_fdpipe *p);

/* Feeds d with the bytes of the file open at fd from offset ws_fdigest_length(d) up to `end`
 * (pread; `what` names the file in messages), then *exact: whether the file ends exactly there
 * (0: shorter, d then holds a part of the range, or longer). A tree digest's whole pieces are read
 * and hashed by up to `threads` threads at once (the caller's among them), each into a 1 MiB
 * buffer of its own, nothing copied; the rest goes through a pipe as above. buf: 1 MiB of the
 * caller's. Errors: WS_ERR_IO (errno) when a read fails, WS_ERR_INTERNAL. */
int ws_fdigest_read_fd(struct ws_fdigest *d, int fd, uint64_t end, int threads, uint8_t *buf,
                       const char *what, int *exact, struct ws_error *err);

#endif
