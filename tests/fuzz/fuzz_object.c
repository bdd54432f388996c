/*
 * fuzz_object: bytes as a stored object through the object reader (object.h), as wal-fetch,
 * restore and verify read every object of a repository, with a fixed test key in the keyring.
 *
 * The first byte picks the mode; the rest is its input:
 *   0  the bytes as stored, fed in slices (size from the mode byte's upper bits), content capped
 *      at 1 MiB, read with 2 threads for zstd frames when the slice selector is odd; also the
 *      footer read alone (ws_object_read_footer), as duplicate detection does
 *   1  header | payload | footer of an unencrypted object, to which the harness adds the valid
 *      checksum (and the true payload length): what lies behind the checksum (the zstd decoder,
 *      the zstd frames parser of version 3 when byte 9 % 3 is 2, the footer checks) is reached
 *      with any payload
 *   2  a round trip: parameters from the next bytes (compression, zstd frames, key, digest, chunk
 *      size, known size, write slices, threads), then content: written, read back identical;
 *      then the object with one bit flipped (position from the input) must be refused
 * Properties: no crash, leak or undefined behaviour; nothing read ever passes the cap; an
 * accepted object delivered exactly its footer's content length; round trips are exact; a
 * flipped bit is always detected.
 */
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/config.h"
#include "io/key.h"
#include "io/object.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define LIMIT (1u << 20)
static const char NAME[] = "main/wal/0000000100000000/000000010000000000000001";
static struct ws_keyring keyring;

static void check(int ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct ws_error err = {0};
    (void)argc, (void)argv;
    for (int i = 0; i < WS_KEY_LEN; i++)
        keyring.keys[0].key[i] = (uint8_t)(0x5a ^ i);
    check(ws_key_derive_id(&keyring.keys[0], &err) == 0);
    keyring.n = 1;
    keyring.has_write_key = 1;
    return 0;
}

/* Reads obj through a reader into a buffer; returns its rc, *out_len what reached the buffer. */
static int read_object(const uint8_t *obj, size_t len, size_t slice, int verify, int workers,
                       struct ws_object_info *info, uint8_t **out, size_t *out_len)
{
    struct ws_sink *buf = NULL, *r = NULL;
    struct ws_error err = {0};
    const uint8_t *p;
    int rc;

    *out = NULL;
    *out_len = 0;
    if (ws_buffer_sink_new(LIMIT, &buf, &err) != 0)
        return -1;
    if ((rc = ws_object_reader_new(buf, NAME, &keyring, verify, &r, &err)) != 0)
        return rc;
    ws_object_reader_set_limit(r, LIMIT);
    ws_object_reader_set_workers(r, workers);
    for (size_t off = 0; off < len; off += slice) {
        size_t n = len - off < slice ? len - off : slice;
        if ((rc = ws_sink_write(r, obj + off, n, &err)) != 0)
            break;
    }
    if (rc == 0 && (rc = ws_sink_finish(r, &err)) == 0)
        ws_object_reader_info(r, info);
    check(rc == 0 || err.code != 0);
    p = ws_buffer_sink_data(buf, out_len);
    check(*out_len <= LIMIT);
    if (*out_len && (*out = malloc(*out_len)))
        memcpy(*out, p, *out_len);
    ws_sink_free(r);
    return rc;
}

static void mode_raw(const uint8_t *d, size_t n, unsigned sel)
{
    struct ws_object_info info, finfo;
    struct ws_error err = {0};
    uint8_t *out;
    size_t out_len, slice = sel ? sel * 61u : SIZE_MAX;

    if (read_object(d, n, slice, 1, sel & 1 ? 2 : 0, &info, &out, &out_len) == 0) {
        check(out_len == info.content_len && info.stored_len == n);
        check(info.cipher == WS_CIPHER_NONE || info.cipher == WS_CIPHER_AES256GCM);
    }
    free(out);
    if (n >= WS_OBJECT_HEADER_SIZE) {
        size_t t = ws_object_trailer_size(d[10] == WS_CIPHER_AES256GCM);
        if (n >= WS_OBJECT_HEADER_SIZE + t &&
            ws_object_read_footer(d, d + n - t, t, n, NAME, &keyring, &finfo, &err) == 0)
            check(finfo.stored_len == n);
    }
}

static void put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static void mode_checksummed(const uint8_t *d, size_t n, unsigned sel)
{
    struct ws_object_info info;
    uint8_t *obj, *out, namelen[4];
    size_t payload, out_len;
    unsigned int sumlen = 32;
    EVP_MD_CTX *md;

    if (n < WS_OBJECT_HEADER_SIZE + WS_OBJECT_FOOTER_SIZE || !(obj = malloc(n + 32)))
        return;
    memcpy(obj, d, n);
    /* a valid unencrypted header, keeping the compression and digest kind of the input */
    memcpy(obj, "WSAFEOBJ", 8);
    obj[9] %= 3; /* 2: zstd frames, format version 3 */
    obj[10] = WS_CIPHER_NONE;
    obj[11] &= 1;
    obj[8] = obj[9] == 2 ? 3 : obj[11] ? 2 : 1;
    memset(obj + 12, 0, WS_OBJECT_HEADER_SIZE - 12);
    payload = n - WS_OBJECT_HEADER_SIZE - WS_OBJECT_FOOTER_SIZE;
    put_be64(obj + n - 8, payload);
    if (sel & 1) /* content digest "not recorded": the content length check still applies */
        memset(obj + n - WS_OBJECT_FOOTER_SIZE + 8, 0, WS_OBJECT_DIGEST_SIZE);
    put_be32(namelen, (uint32_t)strlen(NAME));
    md = EVP_MD_CTX_new();
    check(md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
          EVP_DigestUpdate(md, obj, WS_OBJECT_HEADER_SIZE) == 1 &&
          EVP_DigestUpdate(md, namelen, 4) == 1 && EVP_DigestUpdate(md, NAME, strlen(NAME)) == 1 &&
          EVP_DigestUpdate(md, obj + WS_OBJECT_HEADER_SIZE, n - WS_OBJECT_HEADER_SIZE) == 1 &&
          EVP_DigestFinal_ex(md, obj + n, &sumlen) == 1);
    EVP_MD_CTX_free(md);
    if (read_object(obj, n + 32, (sel >> 1) ? (sel >> 1) * 113u : SIZE_MAX, 1, (int)(sel & 1) * 2,
                    &info, &out, &out_len) == 0)
        check(out_len == info.content_len);
    free(out);
    free(obj);
}

static void mode_roundtrip(const uint8_t *d, size_t n)
{
    struct ws_object_params p = {0};
    struct ws_object_info winfo, rinfo;
    struct ws_sink *buf = NULL, *w = NULL;
    struct ws_error err = {0};
    const uint8_t *content, *stored;
    uint8_t *obj = NULL, *out;
    size_t len, slice, objlen = 0, out_len, flip;
    int rc;

    if (n < 4)
        return;
    p.name = NAME;
    p.compress = d[0] & 1 ? WS_COMPRESS_ZSTD : WS_COMPRESS_NONE;
    p.frames = (d[1] & 0x80) != 0;
    p.workers = d[2] & 1 ? 2 : 0;
    p.level = 1 + d[1] % 5;
    p.key = d[0] & 2 ? &keyring.keys[0] : NULL;
    p.digest = d[0] & 4 ? WS_DIGEST_XXH3_128 : WS_DIGEST_SHA256;
    p.chunk_size = 1024u * (1 + d[1] % 8);
    p.no_digest = (d[0] & 0x30) == 0x30;
    content = d + 4;
    len = n - 4;
    p.content_size = d[0] & 8 ? (int64_t)len : -1;
    slice = d[2] ? d[2] * 17u : SIZE_MAX;
    if (ws_buffer_sink_new(SIZE_MAX, &buf, &err) != 0)
        return;
    check(ws_object_writer_new(buf, &p, &w, &err) == 0);
    rc = 0;
    for (size_t off = 0; rc == 0 && off < len; off += slice)
        rc = ws_sink_write(w, content + off, len - off < slice ? len - off : slice, &err);
    check(rc == 0 && ws_sink_finish(w, &err) == 0);
    ws_object_writer_info(w, &winfo);
    stored = ws_buffer_sink_data(buf, &objlen);
    check(winfo.content_len == len && winfo.stored_len == objlen);
    if ((obj = malloc(objlen)))
        memcpy(obj, stored, objlen);
    ws_sink_free(w);
    if (!obj)
        return;

    check(read_object(obj, objlen, d[3] ? d[3] * 29u : SIZE_MAX, 1, d[3] & 1 ? 2 : 0, &rinfo, &out,
                      &out_len) == 0);
    check(out_len == len && (len == 0 || memcmp(out, content, len) == 0));
    check(rinfo.content_len == len &&
          memcmp(rinfo.content_digest, winfo.content_digest, WS_OBJECT_DIGEST_SIZE) == 0);
    free(out);

    /* any flipped bit is refused (or, in the footer's digest of a bundle-like object, caught by
     * nothing but the checksum or tag, which is what is asserted here too) */
    flip = ((size_t)d[3] << 16 | (size_t)d[2] << 8 | d[1]) % objlen;
    obj[flip] ^= (uint8_t)(1u << (d[0] >> 5));
    check(read_object(obj, objlen, SIZE_MAX, 1, d[1] & 1 ? 2 : 0, &rinfo, &out, &out_len) != 0);
    free(out);
    free(obj);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    switch (data[0] % 3) {
    case 0:
        mode_raw(data + 1, size - 1, data[0] / 3);
        break;
    case 1:
        mode_checksummed(data + 1, size - 1, data[0] / 3);
        break;
    default:
        mode_roundtrip(data + 1, size - 1);
        break;
    }
    return 0;
}
