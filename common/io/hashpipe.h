/*
 * io/hashpipe.h - a hash (SHA-256 of a file, in practice) computed on a thread of its own, so
 * that the caller reads and does its other work on the bytes while earlier bytes are hashed.
 *
 * Guarantees:
 * - every ws_hashpipe_update hands fn (with ctx) the same bytes, in the same order, as calling
 *   fn directly would; once ws_hashpipe_finish returned 0, ctx holds all of them. Between start
 *   and finish (or free) ctx is the pipe's: the caller must not use it;
 * - update copies the bytes: the caller's buffer is free again when it returns. It waits only
 *   while the queue (WS_HASHPIPE_SLOTS slots of WS_HASHPIPE_SLOT bytes) is full, that is while
 *   the hashing thread is behind;
 * - with `expect` (the bytes the caller means to hash) below WS_HASHPIPE_MIN, or when the thread
 *   cannot be started, no thread is used: update calls fn in the caller's thread;
 * - errors: WS_ERR_INTERNAL, "out of memory" from start; "hash update failed" when fn returned
 *   anything but 1, from the update after it or from finish. After an error, and after
 *   finish, only ws_hashpipe_free is allowed;
 * - ws_hashpipe_free (NULL is fine) may be called at any moment, also while the thread is
 *   hashing: what is queued is dropped, the thread joined, the memory freed; ctx's state is
 *   then undefined (the caller still owns and frees it, after ws_hashpipe_free).
 * One pipe is used by one thread (the caller's); pipes share nothing.
 * Memory: WS_HASHPIPE_SLOTS x WS_HASHPIPE_SLOT bytes and one thread while a pipe is threaded.
 */
#ifndef WS_HASHPIPE_H
#define WS_HASHPIPE_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

#define WS_HASHPIPE_SLOTS 4
#define WS_HASHPIPE_SLOT (128u * 1024)
#define WS_HASHPIPE_MIN (8u * 1024 * 1024)

struct ws_hashpipe;

/* A hash update: 1 on success (as EVP_DigestUpdate). */
typedef int (*ws_hashpipe_fn)(void *ctx, const void *buf, size_t len);

/* EVP_DigestUpdate, for ctx an initialised EVP_MD_CTX (SHA-256: EVP_DigestInit_ex). */
int ws_hashpipe_evp(void *ctx, const void *buf, size_t len);

int ws_hashpipe_start(ws_hashpipe_fn fn, void *ctx, uint64_t expect, struct ws_hashpipe **out,
                      struct ws_error *err);
int ws_hashpipe_update(struct ws_hashpipe *hp, const void *buf, size_t len, struct ws_error *err);
/* Waits until every byte given is hashed and stops the thread. */
int ws_hashpipe_finish(struct ws_hashpipe *hp, struct ws_error *err);
void ws_hashpipe_free(struct ws_hashpipe *hp);

#endif
