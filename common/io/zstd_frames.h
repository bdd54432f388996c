/*
 * zstd_frames.h - zstd as a sequence of independent frames, as sinks (object format version 3,
 * object.h): the content is cut into blocks of WS_ZSTD_FRAME_SIZE bytes (the last may be
 * shorter) and each block is one zstd frame with its content size in the frame header and its
 * content checksum (XXH64) on. Empty content is no frame at all.
 *
 * Both sinks work on `workers` cores when workers > 1 (frames are compressed or decompressed
 * concurrently and passed on in order by the calling thread): compression on `workers` threads of
 * its own, decompression on the calling thread and workers - 1 threads; else everything is done
 * in the calling thread. Memory: at most workers + 1 frames in flight (each WS_ZSTD_FRAME_SIZE
 * bytes of content and its compressed form).
 *
 * Decompression accepts only what compression writes: frames of type zstd (no skippable frame)
 * with a content size of at most WS_ZSTD_FRAME_SIZE, a checksum, and content of exactly that
 * size; a frame that does not complete within the compressed bound of a block, bytes that are no
 * frame, or a partial frame at finish are WS_ERR_CORRUPT, and nothing of a frame that failed
 * reaches next. Both take ownership of next, also when they fail.
 */
#ifndef WS_ZSTD_FRAMES_H
#define WS_ZSTD_FRAMES_H

#include "io/sink.h"

#define WS_ZSTD_FRAME_SIZE (1u << 20)
#define WS_ZSTD_FRAMES_MAX_WORKERS 8

/* level 1..19; workers: threads (<= 1: none; at most WS_ZSTD_FRAMES_MAX_WORKERS). */
int ws_zstd_frames_compress_new(struct ws_sink *next, int level, int workers, struct ws_sink **out,
                                struct ws_error *err);
int ws_zstd_frames_decompress_new(struct ws_sink *next, int workers, struct ws_sink **out,
                                  struct ws_error *err);

#endif
