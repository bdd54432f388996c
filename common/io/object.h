/*
 * object.h - the object format of a walsafe repository: every stored object (WAL files, the
 * cluster identity, backup bundles, manifests, markers) is self-describing and always verified:
 *
 *   header (64 bytes) | body | trailer
 *
 * Header, all integers big-endian:
 *   off len
 *     0   8  magic "WSAFEOBJ"
 *     8   1  format version: 3 exactly when byte 9 is 2; else 1, or 2 when byte 11 is not 0
 *     9   1  compression of the payload: 0 none, 1 zstd (one frame, content checksum on),
 *            2 zstd frames (version 3): independent frames of at most 1 MiB of content each,
 *            each with its content size and checksum (io/zstd_frames.h); no content, no frame
 *    10   1  cipher: 0 none, 1 AES-256-GCM
 *    11   1  content digest: 0 SHA-256 (version 1, or 3), 1 XXH3-128 (version 2, or 3)
 *    12   4  chunk size: plaintext bytes per AEAD chunk (1 KiB..16 MiB); 0 when cipher is none
 *    16   8  key id of the master key (key.h); zero when cipher is none
 *    24  32  salt, random per object; zero when cipher is none
 *    56   8  reserved, 0
 * The payload is the content after compression. The footer (48 bytes) is
 *   content length (u64) | content digest (32) | payload length (u64)
 * with the content's SHA-256, or with byte 11 = 1 its XXH3-128 in canonical (big-endian) form
 * followed by 16 zero bytes; an all-zero digest means "not recorded" (backup bundles).
 * cipher 0: body = payload; trailer = footer | SHA-256(header | u32 name length | name |
 *   payload | footer).
 * cipher 1: object key = HKDF-SHA256(master key, salt, "walsafe object v1"). The payload is cut
 *   into chunks of `chunk size` bytes (the last may be shorter, never empty); chunk i is stored
 *   as ciphertext | 16-byte tag, with nonce = 0x00000000 | u64 i and AAD = header | u8 final |
 *   u64 i | name. The trailer is one more chunk, index n (the count of data chunks), holding the
 *   footer, with final = 1 (64 bytes stored).
 *
 * What a reader guarantees: the object name is bound in, so an object served under another name
 * fails, as do flipped bits, truncation (also at a chunk boundary), reordered or appended chunks,
 * another object's chunks and a wrong key; payload and content lengths are checked against the
 * footer and zstd checks its XXH64. The footer alone (ws_object_read_footer) gives the content
 * digest without a download: duplicate detection compares it. WAL objects use XXH3-128, all else
 * SHA-256; why, and the history: docs/design/object-format.md.
 * Ownership: writer and reader constructors take ownership of `dest` (the next sink), as all
 * sinks do. Nothing here logs; errors carry the object name.
 */
#ifndef WS_OBJECT_H
#define WS_OBJECT_H

#include <stdint.h>

#include "io/key.h"
#include "io/sink.h"

#define WS_OBJECT_HEADER_SIZE 64
#define WS_OBJECT_FOOTER_SIZE 48
#define WS_OBJECT_VERSION 1   /* SHA-256 digest */
#define WS_OBJECT_VERSION_2 2 /* the digest of byte 11 */
#define WS_OBJECT_VERSION_3 3 /* zstd frames, either digest */
/* Byte 9 of the header. */
enum { WS_OBJECT_UNCOMPRESSED = 0, WS_OBJECT_ZSTD = 1, WS_OBJECT_ZSTD_FRAMES = 2 };
#define WS_OBJECT_DIGEST_SIZE 32

/* Byte 11 of the header; WS_DIGEST_NONE is never stored: "no digest known" in results. */
enum ws_digest { WS_DIGEST_NONE = -1, WS_DIGEST_SHA256 = 0, WS_DIGEST_XXH3_128 = 1 };
#define WS_OBJECT_CHUNK_SIZE (256 * 1024)

enum ws_cipher { WS_CIPHER_NONE = 0, WS_CIPHER_AES256GCM = 1 };

struct ws_object_params {
    const char *name;         /* bound into the object; the repository key, e.g. "main/wal/..." */
    int compress;             /* enum ws_compress */
    int level;                /* zstd level */
    int workers;              /* zstd threads, <= 1 for none */
    int frames;               /* with zstd: independent frames (version 3), which a reader can
                                 decompress on several threads */
    int64_t content_size;     /* exact content length if known (enforced at finish), else -1 */
    const struct ws_key *key; /* NULL: no encryption */
    uint32_t chunk_size;      /* 0: WS_OBJECT_CHUNK_SIZE (tests use small ones) */
    int digest;               /* enum ws_digest of the content; 0: SHA-256 */
    int no_digest;            /* do not compute the content digest: the footer holds zeros.
                                 For backup bundles, whose files' digests are in the manifest;
                                 it saves a second pass over every byte. */
};

struct ws_object_info {
    int compress;
    int cipher;
    uint8_t key_id[WS_KEY_ID_LEN];
    int digest; /* enum ws_digest: what content_digest holds */
    uint64_t content_len;
    uint8_t content_digest[WS_OBJECT_DIGEST_SIZE];
    uint64_t stored_len;
};

/* A sink that takes content and writes the object into dest. */
int ws_object_writer_new(struct ws_sink *dest, const struct ws_object_params *p,
                         struct ws_sink **out, struct ws_error *err);
/* After a successful finish: lengths and content digest. */
void ws_object_writer_info(const struct ws_sink *writer, struct ws_object_info *info);

/*
 * A sink that takes stored object bytes and writes the content into dest; the whole object is
 * verified when finish returns 0 (before dest is finished). Encrypted objects reach dest only in
 * authenticated chunks. Unencrypted objects are checked against their checksum only at finish,
 * so dest may have received damaged bytes when finish fails: dest must stage its output and
 * publish it only in its own finish (as the file sink and storage writers do).
 * verify_digest also recomputes the content digest.
 */
int ws_object_reader_new(struct ws_sink *dest, const char *name, const struct ws_keyring *kr,
                         int verify_digest, struct ws_sink **out, struct ws_error *err);
/*
 * Caps the content: the reader fails with WS_ERR_CORRUPT as soon as the content would exceed
 * max_content bytes, before any byte beyond the cap reaches dest (a few KiB of zstd decode to
 * gigabytes, and an unencrypted object's checksum is only checked at finish). 0: no cap (the
 * default). Call before the first write.
 */
void ws_object_reader_set_limit(struct ws_sink *reader, uint64_t max_content);
/* Threads for the payload of a version 3 object (zstd frames); <= 1: none (the default). Call
 * before the first write. */
void ws_object_reader_set_workers(struct ws_sink *reader, int workers);
void ws_object_reader_info(const struct ws_sink *reader, struct ws_object_info *info);

/* Size of the trailer for an object with this header (for reading the footer alone). */
int ws_object_parse_header(const uint8_t *hdr, const char *name, struct ws_object_info *info,
                           uint32_t *chunk_size, struct ws_error *err);
size_t ws_object_trailer_size(int cipher);

/*
 * Decodes the footer from the header and the trailer bytes (the last ws_object_trailer_size()
 * bytes), authenticating it when encrypted. Fills digest, content_len and content_digest.
 */
int ws_object_read_footer(const uint8_t *hdr, const uint8_t *trailer, size_t trailer_len,
                          uint64_t stored_len, const char *name, const struct ws_keyring *kr,
                          struct ws_object_info *info, struct ws_error *err);

/*
 * The content digest (enum ws_digest) of everything fd holds from offset 0, as a writer would
 * record it, and its length. what names the file in errors (WS_ERR_IO).
 */
int ws_object_digest_fd(int fd, int digest, const char *what, uint8_t out[WS_OBJECT_DIGEST_SIZE],
                        uint64_t *len, struct ws_error *err);

#endif
