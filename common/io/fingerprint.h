/*
 * fingerprint.h - a fast fingerprint of a content: XXH3-128 (libxxhash, inlined), in its
 * canonical big-endian form, the same bytes on every machine.
 *
 * What it proves: two contents with equal fingerprints and equal lengths are the same content,
 * except with a probability of about 2^-128 for contents that were not built to collide. XXH3 is
 * not a cryptographic hash: it does not stop someone who can choose the content. It is the
 * content digest of WAL objects (object.h) and what push-ahead's records bind a file's content
 * with (pushahead.h); why it suffices there and what it costs: docs/design/pushahead.md and
 * docs/design/object-format.md.
 *
 * The sink passes bytes through to next (NULL: fingerprint only), taking ownership of next as
 * all sinks do; results are valid after finish. Errors: WS_ERR_INTERNAL (out of memory, a
 * failed update); next's errors pass through.
 */
#ifndef WS_FINGERPRINT_H
#define WS_FINGERPRINT_H

#include <stdint.h>

#include "base/error.h"
#include "io/sink.h"

#define WS_FINGERPRINT_SIZE 16

int ws_fingerprint_sink_new(struct ws_sink *next, struct ws_sink **out, struct ws_error *err);
void ws_fingerprint_sink_result(const struct ws_sink *s, uint8_t fp[WS_FINGERPRINT_SIZE],
                                uint64_t *len);

/* Fingerprints a whole buffer. */
void ws_fingerprint(const void *buf, size_t len, uint8_t fp[WS_FINGERPRINT_SIZE]);
/* XXH3-64 of a buffer, canonical (big-endian): block digests (repo/blockmap.h). */
void ws_fingerprint64(const void *buf, size_t len, uint8_t fp[8]);

#endif
