/*
 * zstd_sink.h - streaming zstd compression and decompression as sinks.
 *
 * Compression writes one frame with the content checksum (XXH64) enabled, so decompression
 * verifies the decompressed bytes end to end. Decompression accepts exactly one frame: a
 * truncated frame or bytes after it are WS_ERR_CORRUPT. Both take ownership of next.
 */
#ifndef WS_ZSTD_SINK_H
#define WS_ZSTD_SINK_H

#include <stdint.h>

#include "io/sink.h"

/* level 1..19; workers > 0 compresses on that many zstd threads in 1 MiB jobs; exact_size < 0 when
 * unknown, else the input must be exactly that long (zstd fails otherwise). */
int ws_zstd_compress_sink_new(struct ws_sink *next, int level, int workers, int64_t exact_size,
                              struct ws_sink **out, struct ws_error *err);
int ws_zstd_decompress_sink_new(struct ws_sink *next, struct ws_sink **out, struct ws_error *err);

#endif
