/*
 * fingerprint.h - a fast fingerprint of a file's content: XXH3-128 (libxxhash, inlined).
 *
 * What it is for: push-ahead records (pushahead.h) bind "this name was archived" to the exact
 * content, and PostgreSQL's later call for the file must check that binding by reading the
 * whole file again. SHA-256 made that check cost ~13 ms per 16 MiB segment here, XXH3-128 ~3.7
 * ms (most of it the read), and the check runs on the archiver's critical path once per file.
 *
 * What it proves: two contents with equal fingerprints and equal lengths are the same content,
 * except with a probability of about 2^-128 for contents that were not built to collide. That
 * covers what the binding is there for (a reused name, a restored cluster, a stale spool).
 * XXH3 is not a cryptographic hash: it is not meant to stop someone who can write pg_wal (who
 * could corrupt the WAL itself). For the same reasons it is the content digest of WAL objects
 * (object.h: what duplicate detection compares), so a push takes the fingerprint from its object
 * writer at no extra cost; manifests, backup files and every digest checked on read stay
 * SHA-256.
 *
 * The sink passes bytes through to next (NULL: fingerprint only); results are valid after
 * finish. Errors: WS_ERR_INTERNAL (out of memory), WS_ERR_IO for the file.
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

#endif
