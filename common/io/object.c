#include "io/object.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/config.h"
#include "base/util.h"
#include "io/fingerprint.h"
#include "io/zstd_frames.h"
#include "io/zstd_sink.h"

static const uint8_t MAGIC[8] = {'W', 'S', 'A', 'F', 'E', 'O', 'B', 'J'};
#define TAG_LEN 16
#define PLAIN_TRAILER (WS_OBJECT_FOOTER_SIZE + 32)
#define GCM_TRAILER (WS_OBJECT_FOOTER_SIZE + TAG_LEN)
#define MIN_CHUNK 1024u
#define MAX_CHUNK (16u << 20)

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

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get_be64(const uint8_t *p)
{
    return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

size_t ws_object_trailer_size(int cipher)
{
    return cipher == WS_CIPHER_AES256GCM ? GCM_TRAILER : PLAIN_TRAILER;
}

static void encode_footer(uint8_t *f, uint64_t content_len, const uint8_t *digest,
                          uint64_t payload_len)
{
    put_be64(f, content_len);
    memcpy(f + 8, digest, WS_OBJECT_DIGEST_SIZE);
    put_be64(f + 40, payload_len);
}

/* ---- the content digest (header byte 11) ---- */

struct content_digest {
    int alg;           /* enum ws_digest */
    EVP_MD_CTX *md;    /* SHA-256 */
    struct ws_sink *x; /* XXH3-128: a fingerprint sink without a next (fingerprint.h) */
};

static int digest_init(struct content_digest *d, int alg, struct ws_error *err)
{
    d->alg = alg;
    if (alg == WS_DIGEST_XXH3_128)
        return ws_fingerprint_sink_new(NULL, &d->x, err);
    if (!(d->md = EVP_MD_CTX_new()) || EVP_DigestInit_ex(d->md, EVP_sha256(), NULL) != 1)
        return ws_error_set(err, WS_ERR_INTERNAL, "could not set up SHA-256");
    return 0;
}

static int digest_update(struct content_digest *d, const void *buf, size_t len,
                         struct ws_error *err)
{
    if (len == 0)
        return 0;
    if (d->x)
        return ws_sink_write(d->x, buf, len, err);
    if (EVP_DigestUpdate(d->md, buf, len) != 1)
        return ws_error_set(err, WS_ERR_INTERNAL, "SHA-256 update failed");
    return 0;
}

static int digest_final(struct content_digest *d, uint8_t out[WS_OBJECT_DIGEST_SIZE],
                        struct ws_error *err)
{
    unsigned int n;

    memset(out, 0, WS_OBJECT_DIGEST_SIZE);
    if (d->x) {
        if (ws_sink_finish(d->x, err) != 0)
            return err->code;
        ws_fingerprint_sink_result(d->x, out, NULL);
        return 0;
    }
    if (EVP_DigestFinal_ex(d->md, out, &n) != 1)
        return ws_error_set(err, WS_ERR_INTERNAL, "SHA-256 failed");
    return 0;
}

static void digest_free(struct content_digest *d)
{
    EVP_MD_CTX_free(d->md);
    ws_sink_free(d->x);
    d->md = NULL;
    d->x = NULL;
}

static int digest_active(const struct content_digest *d)
{
    return d->md || d->x;
}

int ws_object_digest_fd(int fd, int digest, const char *what, uint8_t out[WS_OBJECT_DIGEST_SIZE],
                        uint64_t *len, struct ws_error *err)
{
    enum { BLOCK = 128 << 10 };
    struct content_digest d = {0};
    uint8_t *buf = NULL;
    uint64_t off = 0;
    int rc;

    if ((rc = digest_init(&d, digest, err)) != 0)
        goto out;
    if (!(buf = malloc(BLOCK))) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        goto out;
    }
    for (;;) {
        ssize_t n = pread(fd, buf, BLOCK, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not read %s", what);
            goto out;
        }
        if (n == 0)
            break;
        if ((rc = digest_update(&d, buf, (size_t)n, err)) != 0)
            goto out;
        off += (uint64_t)n;
    }
    if ((rc = digest_final(&d, out, err)) != 0)
        goto out;
    *len = off;
out:
    digest_free(&d);
    free(buf);
    return rc;
}

/* ---- AES-256-GCM chunks ---- */

static int gcm_ctx_new(EVP_CIPHER_CTX **out, const struct ws_key *key, const uint8_t *salt,
                       int encrypt, struct ws_error *err)
{
    uint8_t okey[32];
    EVP_CIPHER_CTX *c;
    int ok;

    if (ws_hkdf_sha256(key->key, WS_KEY_LEN, salt, 32, "walsafe object v1", okey, sizeof(okey),
                       err) != 0)
        return err->code;
    c = EVP_CIPHER_CTX_new();
    ok = c && EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, okey, NULL, encrypt) == 1;
    OPENSSL_cleanse(okey, sizeof(okey));
    if (!ok) {
        EVP_CIPHER_CTX_free(c);
        return ws_error_set(err, WS_ERR_INTERNAL, "could not set up AES-256-GCM");
    }
    *out = c;
    return 0;
}

static int gcm_aad(EVP_CIPHER_CTX *c, const uint8_t *hdr, const char *name, uint64_t idx, int final)
{
    uint8_t nonce[12] = {0}, meta[9];
    int outl;

    put_be64(nonce + 4, idx);
    meta[0] = (uint8_t)(final ? 1 : 0);
    put_be64(meta + 1, idx);
    return EVP_CipherInit_ex(c, NULL, NULL, NULL, nonce, -1) == 1 &&
           EVP_CipherUpdate(c, NULL, &outl, hdr, WS_OBJECT_HEADER_SIZE) == 1 &&
           EVP_CipherUpdate(c, NULL, &outl, meta, sizeof(meta)) == 1 &&
           EVP_CipherUpdate(c, NULL, &outl, (const uint8_t *)name, (int)strlen(name)) == 1;
}

/* out receives len + TAG_LEN bytes. */
static int gcm_seal(EVP_CIPHER_CTX *c, const uint8_t *hdr, const char *name, uint64_t idx,
                    int final, const uint8_t *in, size_t len, uint8_t *out, struct ws_error *err)
{
    int n1 = 0, n2 = 0;
    if (!gcm_aad(c, hdr, name, idx, final) || EVP_CipherUpdate(c, out, &n1, in, (int)len) != 1 ||
        EVP_CipherFinal_ex(c, out + n1, &n2) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, out + len) != 1)
        return ws_error_set(err, WS_ERR_INTERNAL, "AES-256-GCM encryption failed");
    return 0;
}

/* in holds len bytes of ciphertext followed by the tag; out receives len bytes, valid only
 * when this returns 0. */
static int gcm_open(EVP_CIPHER_CTX *c, const uint8_t *hdr, const char *name, uint64_t idx,
                    int final, const uint8_t *in, size_t len, uint8_t *out, struct ws_error *err)
{
    int n1 = 0, n2 = 0;
    if (!gcm_aad(c, hdr, name, idx, final) || EVP_CipherUpdate(c, out, &n1, in, (int)len) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, (void *)(in + len)) != 1)
        return ws_error_set(err, WS_ERR_INTERNAL, "AES-256-GCM decryption failed");
    if (EVP_CipherFinal_ex(c, out + n1, &n2) != 1)
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "object \"%s\" failed authentication at chunk %llu: it is damaged, "
                            "truncated, or not the object of that name",
                            name, (unsigned long long)idx);
    return 0;
}

/* ---- header ---- */

/* Version, compression and digest go together: version 1 is SHA-256, version 2 XXH3-128, each with
 * a payload of at most one zstd frame; version 3 is zstd frames with either digest. */
static int header_kinds_valid(const uint8_t *h)
{
    switch (h[8]) {
    case WS_OBJECT_VERSION:
        return h[9] <= WS_OBJECT_ZSTD && h[11] == WS_DIGEST_SHA256;
    case WS_OBJECT_VERSION_2:
        return h[9] <= WS_OBJECT_ZSTD && h[11] == WS_DIGEST_XXH3_128;
    default:
        return h[9] == WS_OBJECT_ZSTD_FRAMES && h[11] <= WS_DIGEST_XXH3_128;
    }
}

int ws_object_parse_header(const uint8_t *h, const char *name, struct ws_object_info *info,
                           uint32_t *chunk_size, struct ws_error *err)
{
    static const uint8_t zero[32];

    if (memcmp(h, MAGIC, 8) != 0)
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "object \"%s\" is not a walsafe object (bad magic)", name);
    if (h[8] < WS_OBJECT_VERSION || h[8] > WS_OBJECT_VERSION_3)
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "object \"%s\" has format version %u; this walsafe reads versions %d "
                            "to %d",
                            name, h[8], WS_OBJECT_VERSION, WS_OBJECT_VERSION_3);
    memset(info, 0, sizeof(*info));
    info->compress = h[9] ? WS_COMPRESS_ZSTD : WS_COMPRESS_NONE; /* zstd, one frame or frames */
    info->cipher = h[10];
    info->digest = h[11];
    memcpy(info->key_id, h + 16, WS_KEY_ID_LEN);
    *chunk_size = get_be32(h + 12);
    if (!header_kinds_valid(h) || info->cipher > WS_CIPHER_AES256GCM ||
        memcmp(h + 56, zero, 8) != 0)
        return ws_error_set(err, WS_ERR_CORRUPT, "object \"%s\" has an invalid header", name);
    if (info->cipher == WS_CIPHER_NONE &&
        (*chunk_size != 0 || memcmp(h + 16, zero, 8) != 0 || memcmp(h + 24, zero, 32) != 0))
        return ws_error_set(err, WS_ERR_CORRUPT, "object \"%s\" has an invalid header", name);
    if (info->cipher == WS_CIPHER_AES256GCM && (*chunk_size < MIN_CHUNK || *chunk_size > MAX_CHUNK))
        return ws_error_set(err, WS_ERR_CORRUPT, "object \"%s\" has an invalid chunk size %u", name,
                            *chunk_size);
    return 0;
}

static int key_for(const struct ws_keyring *kr, const uint8_t *id, const char *name,
                   const struct ws_key **key, struct ws_error *err)
{
    char hex[2 * WS_KEY_ID_LEN + 1];

    ws_hex(id, WS_KEY_ID_LEN, hex);
    if (!kr || kr->n == 0)
        return ws_error_set(err, WS_ERR_KEY,
                            "object \"%s\" is encrypted (key id %s) but no encrypt_key_file or "
                            "decrypt_key_files is configured",
                            name, hex);
    if (!(*key = ws_keyring_find(kr, id)))
        return ws_error_set(err, WS_ERR_KEY,
                            "object \"%s\" is encrypted with key id %s, which is none of the "
                            "configured keys (encrypt_key_file, decrypt_key_files)",
                            name, hex);
    return 0;
}

/* ---- writer ---- */

struct obj_frame;

struct obj_writer {
    struct ws_sink base;
    struct content_digest d; /* none with no_digest */
    int64_t expected_len;    /* -1: unknown */
    uint64_t content_len;
    uint8_t digest[WS_OBJECT_DIGEST_SIZE];
    struct obj_frame *frame;
};

struct obj_frame {
    struct ws_sink base;
    struct obj_writer *head;
    char *name;
    uint8_t header[WS_OBJECT_HEADER_SIZE];
    int cipher;
    EVP_CIPHER_CTX *cctx;
    EVP_MD_CTX *objmd;
    uint8_t *chunk, *sealed;
    uint32_t chunk_size;
    size_t fill;
    uint64_t index, payload_len, stored_len;
};

static int frame_emit(struct obj_frame *f, const void *buf, size_t len, struct ws_error *err)
{
    f->stored_len += len;
    return ws_sink_write(f->base.next, buf, len, err);
}

static int frame_seal_chunk(struct obj_frame *f, int final, const uint8_t *in, size_t len,
                            struct ws_error *err)
{
    if (gcm_seal(f->cctx, f->header, f->name, f->index, final, in, len, f->sealed, err) != 0)
        return err->code;
    f->index++;
    return frame_emit(f, f->sealed, len + TAG_LEN, err);
}

static int frame_write(struct ws_sink *s, const void *buf, size_t len, struct ws_error *err)
{
    struct obj_frame *f = (struct obj_frame *)s;
    const uint8_t *p = buf;

    f->payload_len += len;
    if (f->cipher == WS_CIPHER_NONE) {
        if (len && EVP_DigestUpdate(f->objmd, buf, len) != 1)
            return ws_error_set(err, WS_ERR_INTERNAL, "SHA-256 update failed");
        return frame_emit(f, buf, len, err);
    }
    while (len > 0) {
        size_t take;
        if (f->fill == 0 && len >= f->chunk_size) { /* whole chunk straight from the input */
            if (frame_seal_chunk(f, 0, p, f->chunk_size, err) != 0)
                return err->code;
            p += f->chunk_size;
            len -= f->chunk_size;
            continue;
        }
        take = f->chunk_size - f->fill;
        if (take > len)
            take = len;
        memcpy(f->chunk + f->fill, p, take);
        f->fill += take;
        p += take;
        len -= take;
        if (f->fill == f->chunk_size) {
            if (frame_seal_chunk(f, 0, f->chunk, f->fill, err) != 0)
                return err->code;
            f->fill = 0;
        }
    }
    return 0;
}

static int frame_finish(struct ws_sink *s, struct ws_error *err)
{
    struct obj_frame *f = (struct obj_frame *)s;
    uint8_t footer[WS_OBJECT_FOOTER_SIZE], sum[32];
    unsigned int n;

    encode_footer(footer, f->head->content_len, f->head->digest, f->payload_len);
    if (f->cipher == WS_CIPHER_NONE) {
        if (EVP_DigestUpdate(f->objmd, footer, sizeof(footer)) != 1 ||
            EVP_DigestFinal_ex(f->objmd, sum, &n) != 1)
            return ws_error_set(err, WS_ERR_INTERNAL, "SHA-256 failed");
        if (frame_emit(f, footer, sizeof(footer), err) != 0)
            return err->code;
        return frame_emit(f, sum, sizeof(sum), err);
    }
    if (f->fill > 0 && frame_seal_chunk(f, 0, f->chunk, f->fill, err) != 0)
        return err->code;
    f->fill = 0;
    return frame_seal_chunk(f, 1, footer, sizeof(footer), err);
}

static void frame_destroy(struct ws_sink *s)
{
    struct obj_frame *f = (struct obj_frame *)s;
    EVP_CIPHER_CTX_free(f->cctx);
    EVP_MD_CTX_free(f->objmd);
    if (f->chunk)
        OPENSSL_cleanse(f->chunk, f->chunk_size);
    free(f->chunk);
    free(f->sealed);
    free(f->name);
    free(f);
}

static const struct ws_sink_ops frame_ops = {"object-frame", frame_write, frame_finish, NULL,
                                             frame_destroy};

static int writer_write(struct ws_sink *s, const void *buf, size_t len, struct ws_error *err)
{
    struct obj_writer *w = (struct obj_writer *)s;
    if (digest_active(&w->d) && digest_update(&w->d, buf, len, err) != 0)
        return err->code;
    w->content_len += len;
    return ws_sink_write(s->next, buf, len, err);
}

static int writer_finish(struct ws_sink *s, struct ws_error *err)
{
    struct obj_writer *w = (struct obj_writer *)s;

    /* Checked before anything downstream commits: a short or long read never becomes an object. */
    if (w->expected_len >= 0 && w->content_len != (uint64_t)w->expected_len)
        return ws_error_set(err, WS_ERR_IO, "content of \"%s\" is %llu bytes, expected %lld",
                            w->frame->name, (unsigned long long)w->content_len,
                            (long long)w->expected_len);
    if (digest_active(&w->d) && digest_final(&w->d, w->digest, err) != 0)
        return err->code;
    return 0; /* without a digest the footer's stays all zero: "not recorded" */
}

static void writer_destroy(struct ws_sink *s)
{
    struct obj_writer *w = (struct obj_writer *)s;
    digest_free(&w->d);
    free(w);
}

static const struct ws_sink_ops writer_ops = {"object-writer", writer_write, writer_finish, NULL,
                                              writer_destroy};

int ws_object_writer_new(struct ws_sink *dest, const struct ws_object_params *p,
                         struct ws_sink **out, struct ws_error *err)
{
    struct obj_writer *w = NULL;
    struct obj_frame *f = calloc(1, sizeof(*f));
    struct ws_sink *chain;
    uint32_t namelen_be;
    int framed = p->frames && p->compress == WS_COMPRESS_ZSTD;

    /* Readers accept only this range; a smaller chunk could not even hold the footer. */
    if (p->key && p->chunk_size && (p->chunk_size < MIN_CHUNK || p->chunk_size > MAX_CHUNK)) {
        free(f);
        ws_sink_free(dest);
        return ws_error_set(err, WS_ERR_INTERNAL, "invalid chunk size %u for object \"%s\"",
                            p->chunk_size, p->name);
    }
    if (!f) {
        ws_sink_free(dest);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    }
    f->base.ops = &frame_ops;
    f->base.next = dest;
    chain = &f->base;
    f->name = strdup(p->name);
    f->cipher = p->key ? WS_CIPHER_AES256GCM : WS_CIPHER_NONE;
    f->chunk_size = p->key ? (p->chunk_size ? p->chunk_size : WS_OBJECT_CHUNK_SIZE) : 0;
    memcpy(f->header, MAGIC, 8);
    f->header[8] = framed                            ? WS_OBJECT_VERSION_3
                   : p->digest == WS_DIGEST_XXH3_128 ? WS_OBJECT_VERSION_2
                                                     : WS_OBJECT_VERSION;
    f->header[9] = framed ? WS_OBJECT_ZSTD_FRAMES
                          : (uint8_t)(p->compress == WS_COMPRESS_ZSTD ? WS_OBJECT_ZSTD : 0);
    f->header[10] = (uint8_t)f->cipher;
    f->header[11] = (uint8_t)(p->digest == WS_DIGEST_XXH3_128 ? WS_DIGEST_XXH3_128 : 0);
    put_be32(f->header + 12, f->chunk_size);
    if (!f->name)
        goto nomem;
    if (p->key) {
        memcpy(f->header + 16, p->key->id, WS_KEY_ID_LEN);
        if (RAND_bytes(f->header + 24, 32) != 1) {
            ws_sink_free(chain);
            return ws_error_set(err, WS_ERR_INTERNAL, "could not generate a random salt");
        }
        if (gcm_ctx_new(&f->cctx, p->key, f->header + 24, 1, err) != 0) {
            ws_sink_free(chain);
            return err->code;
        }
        if (!(f->chunk = malloc(f->chunk_size)) || !(f->sealed = malloc(f->chunk_size + TAG_LEN)))
            goto nomem;
    } else {
        namelen_be = 0;
        put_be32((uint8_t *)&namelen_be, (uint32_t)strlen(p->name));
        if (!(f->objmd = EVP_MD_CTX_new()) ||
            EVP_DigestInit_ex(f->objmd, EVP_sha256(), NULL) != 1 ||
            EVP_DigestUpdate(f->objmd, f->header, WS_OBJECT_HEADER_SIZE) != 1 ||
            EVP_DigestUpdate(f->objmd, &namelen_be, 4) != 1 ||
            EVP_DigestUpdate(f->objmd, p->name, strlen(p->name)) != 1)
            goto nomem;
    }
    /* The header goes out first, unencrypted (it is authenticated through every chunk). */
    if (frame_emit(f, f->header, WS_OBJECT_HEADER_SIZE, err) != 0) {
        ws_sink_free(chain);
        return err->code;
    }
    if (framed && ws_zstd_frames_compress_new(chain, p->level, p->workers, &chain, err) != 0)
        return err->code;
    if (!framed && p->compress == WS_COMPRESS_ZSTD &&
        ws_zstd_compress_sink_new(chain, p->level, p->workers, p->content_size, &chain, err) != 0)
        return err->code;
    if (!(w = calloc(1, sizeof(*w)))) {
        ws_sink_free(chain);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    }
    if (!p->no_digest && digest_init(&w->d, f->header[11], err) != 0) {
        digest_free(&w->d);
        free(w);
        ws_sink_free(chain);
        return err->code;
    }
    w->base.ops = &writer_ops;
    w->base.next = chain;
    w->expected_len = p->content_size;
    w->frame = f;
    f->head = w;
    *out = &w->base;
    return 0;
nomem:
    ws_sink_free(chain);
    return ws_error_set(err, WS_ERR_INTERNAL, "out of memory setting up object \"%s\"", p->name);
}

void ws_object_writer_info(const struct ws_sink *writer, struct ws_object_info *info)
{
    const struct obj_writer *w = (const struct obj_writer *)writer;
    memset(info, 0, sizeof(*info));
    info->compress = w->frame->header[9] ? WS_COMPRESS_ZSTD : WS_COMPRESS_NONE;
    info->cipher = w->frame->cipher;
    info->digest = w->frame->header[11];
    memcpy(info->key_id, w->frame->header + 16, WS_KEY_ID_LEN);
    info->content_len = w->content_len;
    memcpy(info->content_digest, w->digest, WS_OBJECT_DIGEST_SIZE);
    info->stored_len = w->frame->stored_len;
}

/* ---- reader ---- */

struct obj_reader;

/* Last stage before dest: counts content and compares it with the footer at finish. */
struct content_check {
    struct ws_sink base;
    struct obj_reader *r;
    int verify;              /* verify_digest */
    struct content_digest d; /* set up once the header names the digest */
    uint64_t len;
    uint64_t limit; /* 0: none */
};

struct obj_reader {
    struct ws_sink base;
    char *name;
    const struct ws_keyring *kr;
    uint8_t header[WS_OBJECT_HEADER_SIZE];
    size_t hfill;
    int have_header;
    struct ws_object_info info;
    uint32_t chunk_size;
    int workers; /* for zstd frames */
    size_t unit, trailer;
    EVP_CIPHER_CTX *cctx;
    EVP_MD_CTX *objmd;
    uint8_t *buf;
    size_t fill;
    uint64_t index, payload_len, stored_len;
    struct ws_sink *pending; /* check -> dest, until the header says what goes before it */
    struct content_check *check;
};

static int check_write(struct ws_sink *s, const void *buf, size_t len, struct ws_error *err)
{
    struct content_check *c = (struct content_check *)s;
    if (c->limit && len > c->limit - c->len)
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "object \"%s\" decodes to more than %llu bytes, the most it may hold: "
                            "it is damaged or not what its name says",
                            c->r->name, (unsigned long long)c->limit);
    if (digest_active(&c->d) && digest_update(&c->d, buf, len, err) != 0)
        return err->code;
    c->len += len;
    return ws_sink_write(s->next, buf, len, err);
}

static int check_finish(struct ws_sink *s, struct ws_error *err)
{
    struct content_check *c = (struct content_check *)s;
    uint8_t d[WS_OBJECT_DIGEST_SIZE];

    if (c->len != c->r->info.content_len)
        return ws_error_set(
            err, WS_ERR_CORRUPT, "object \"%s\" decoded to %llu bytes but was stored with %llu",
            c->r->name, (unsigned long long)c->len, (unsigned long long)c->r->info.content_len);
    static const uint8_t none[WS_OBJECT_DIGEST_SIZE];

    if (!digest_active(&c->d) ||
        CRYPTO_memcmp(none, c->r->info.content_digest, WS_OBJECT_DIGEST_SIZE) == 0)
        return 0;
    if (digest_final(&c->d, d, err) != 0)
        return err->code;
    if (CRYPTO_memcmp(d, c->r->info.content_digest, WS_OBJECT_DIGEST_SIZE) != 0)
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "object \"%s\" decoded to content whose %s differs from the "
                            "stored one",
                            c->r->name,
                            c->r->info.digest == WS_DIGEST_XXH3_128 ? "XXH3-128" : "SHA-256");
    return 0;
}

static void check_destroy(struct ws_sink *s)
{
    struct content_check *c = (struct content_check *)s;
    digest_free(&c->d);
    free(c);
}

static const struct ws_sink_ops check_ops = {"object-check", check_write, check_finish, NULL,
                                             check_destroy};

static int reader_start(struct obj_reader *r, struct ws_error *err)
{
    const struct ws_key *key;
    uint32_t namelen_be = 0;

    if (ws_object_parse_header(r->header, r->name, &r->info, &r->chunk_size, err) != 0)
        return err->code;
    if (r->check->verify && digest_init(&r->check->d, r->info.digest, err) != 0)
        return err->code;
    if (r->info.cipher == WS_CIPHER_AES256GCM) {
        if (key_for(r->kr, r->info.key_id, r->name, &key, err) != 0 ||
            gcm_ctx_new(&r->cctx, key, r->header + 24, 0, err) != 0)
            return err->code;
        r->unit = r->chunk_size + TAG_LEN;
        r->trailer = GCM_TRAILER;
    } else {
        r->unit = 256 * 1024;
        r->trailer = PLAIN_TRAILER;
        put_be32((uint8_t *)&namelen_be, (uint32_t)strlen(r->name));
        if (!(r->objmd = EVP_MD_CTX_new()) ||
            EVP_DigestInit_ex(r->objmd, EVP_sha256(), NULL) != 1 ||
            EVP_DigestUpdate(r->objmd, r->header, WS_OBJECT_HEADER_SIZE) != 1 ||
            EVP_DigestUpdate(r->objmd, &namelen_be, 4) != 1 ||
            EVP_DigestUpdate(r->objmd, r->name, strlen(r->name)) != 1)
            return ws_error_set(err, WS_ERR_INTERNAL, "could not set up SHA-256");
    }
    if (!(r->buf = malloc(r->unit + r->trailer)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    if (r->header[9] == WS_OBJECT_ZSTD_FRAMES) {
        struct ws_sink *chain = r->pending;
        r->pending = NULL;
        if (ws_zstd_frames_decompress_new(chain, r->workers, &r->base.next, err) != 0)
            return err->code;
    } else if (r->info.compress == WS_COMPRESS_ZSTD) {
        struct ws_sink *chain = r->pending;
        r->pending = NULL;
        if (ws_zstd_decompress_sink_new(chain, &r->base.next, err) != 0)
            return err->code;
    } else {
        r->base.next = r->pending;
        r->pending = NULL;
    }
    r->have_header = 1;
    return 0;
}

/* Handles one unit of body bytes that is known not to be part of the trailer; an encrypted chunk
 * is decrypted in place. */
static int reader_unit(struct obj_reader *r, uint8_t *p, size_t len, struct ws_error *err)
{
    r->payload_len += r->info.cipher == WS_CIPHER_AES256GCM ? len - TAG_LEN : len;
    if (r->info.cipher == WS_CIPHER_NONE) {
        if (EVP_DigestUpdate(r->objmd, p, len) != 1)
            return ws_error_set(err, WS_ERR_INTERNAL, "SHA-256 update failed");
        return ws_sink_write(r->base.next, p, len, err);
    }
    if (len <= TAG_LEN)
        return ws_error_set(err, WS_ERR_CORRUPT, "object \"%s\" is truncated", r->name);
    if (gcm_open(r->cctx, r->header, r->name, r->index, 0, p, len - TAG_LEN, p, err) != 0)
        return err->code;
    r->index++;
    return ws_sink_write(r->base.next, p, len - TAG_LEN, err);
}

static int reader_write(struct ws_sink *s, const void *buf, size_t len, struct ws_error *err)
{
    struct obj_reader *r = (struct obj_reader *)s;
    const uint8_t *p = buf;

    r->stored_len += len;
    if (!r->have_header) {
        size_t take = WS_OBJECT_HEADER_SIZE - r->hfill;
        if (take > len)
            take = len;
        memcpy(r->header + r->hfill, p, take);
        r->hfill += take;
        p += take;
        len -= take;
        if (r->hfill < WS_OBJECT_HEADER_SIZE)
            return 0;
        if (reader_start(r, err) != 0)
            return err->code;
    }
    while (len > 0) {
        size_t cap = r->unit + r->trailer, take = cap - r->fill;
        if (take > len)
            take = len;
        memcpy(r->buf + r->fill, p, take);
        r->fill += take;
        p += take;
        len -= take;
        if (r->fill == cap) {
            if (reader_unit(r, r->buf, r->unit, err) != 0)
                return err->code;
            memmove(r->buf, r->buf + r->unit, r->trailer);
            r->fill = r->trailer;
        }
    }
    return 0;
}

static int footer_decode(struct obj_reader *r, const uint8_t *footer, struct ws_error *err)
{
    uint64_t payload = get_be64(footer + 40);
    r->info.content_len = get_be64(footer);
    memcpy(r->info.content_digest, footer + 8, WS_OBJECT_DIGEST_SIZE);
    if (payload != r->payload_len)
        return ws_error_set(
            err, WS_ERR_CORRUPT, "object \"%s\" holds %llu payload bytes but its footer says %llu",
            r->name, (unsigned long long)r->payload_len, (unsigned long long)payload);
    return 0;
}

static int reader_finish(struct ws_sink *s, struct ws_error *err)
{
    struct obj_reader *r = (struct obj_reader *)s;
    uint8_t footer[WS_OBJECT_FOOTER_SIZE], sum[32];
    unsigned int n;
    size_t body;

    if (!r->have_header)
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "object \"%s\" is truncated: %zu bytes, shorter than its header",
                            r->name, r->hfill);
    if (r->fill < r->trailer)
        return ws_error_set(err, WS_ERR_CORRUPT, "object \"%s\" is truncated: no complete trailer",
                            r->name);
    body = r->fill - r->trailer;
    if (body > 0 && reader_unit(r, r->buf, body, err) != 0)
        return err->code;
    if (r->info.cipher == WS_CIPHER_NONE) {
        memcpy(footer, r->buf + body, sizeof(footer));
        if (EVP_DigestUpdate(r->objmd, footer, sizeof(footer)) != 1 ||
            EVP_DigestFinal_ex(r->objmd, sum, &n) != 1)
            return ws_error_set(err, WS_ERR_INTERNAL, "SHA-256 failed");
        if (CRYPTO_memcmp(sum, r->buf + body + sizeof(footer), 32) != 0)
            return ws_error_set(err, WS_ERR_CORRUPT,
                                "object \"%s\" failed its checksum: it is damaged, truncated, or "
                                "not the object of that name",
                                r->name);
    } else if (gcm_open(r->cctx, r->header, r->name, r->index, 1, r->buf + body,
                        WS_OBJECT_FOOTER_SIZE, footer, err) != 0) {
        return err->code;
    }
    r->info.stored_len = r->stored_len;
    return footer_decode(r, footer, err);
}

static void reader_destroy(struct ws_sink *s)
{
    struct obj_reader *r = (struct obj_reader *)s;
    ws_sink_free(r->pending);
    EVP_CIPHER_CTX_free(r->cctx);
    EVP_MD_CTX_free(r->objmd);
    if (r->buf)
        OPENSSL_cleanse(r->buf, r->unit + r->trailer);
    free(r->buf);
    free(r->name);
    free(r);
}

static const struct ws_sink_ops reader_ops = {"object-reader", reader_write, reader_finish, NULL,
                                              reader_destroy};

int ws_object_reader_new(struct ws_sink *dest, const char *name, const struct ws_keyring *kr,
                         int verify_digest, struct ws_sink **out, struct ws_error *err)
{
    struct obj_reader *r = calloc(1, sizeof(*r));
    struct content_check *c = calloc(1, sizeof(*c));

    if (!r || !c || !(r->name = strdup(name))) {
        if (r)
            free(r->name);
        free(r);
        free(c);
        ws_sink_free(dest);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    }
    c->base.ops = &check_ops;
    c->base.next = dest;
    c->r = r;
    c->verify = verify_digest;
    r->base.ops = &reader_ops;
    r->kr = kr;
    r->pending = &c->base;
    r->check = c;
    *out = &r->base;
    return 0;
}

void ws_object_reader_set_workers(struct ws_sink *reader, int workers)
{
    ((struct obj_reader *)reader)->workers = workers;
}

void ws_object_reader_set_limit(struct ws_sink *reader, uint64_t max_content)
{
    ((struct obj_reader *)reader)->check->limit = max_content;
}

void ws_object_reader_info(const struct ws_sink *reader, struct ws_object_info *info)
{
    *info = ((const struct obj_reader *)reader)->info;
}

int ws_object_read_footer(const uint8_t *hdr, const uint8_t *trailer, size_t trailer_len,
                          uint64_t stored_len, const char *name, const struct ws_keyring *kr,
                          struct ws_object_info *info, struct ws_error *err)
{
    uint32_t chunk_size;
    const struct ws_key *key;
    EVP_CIPHER_CTX *c = NULL;
    uint8_t footer[WS_OBJECT_FOOTER_SIZE];
    uint64_t body, nchunks;
    int rc;

    if ((rc = ws_object_parse_header(hdr, name, info, &chunk_size, err)) != 0)
        return rc;
    if (trailer_len != ws_object_trailer_size(info->cipher) ||
        stored_len < WS_OBJECT_HEADER_SIZE + trailer_len)
        return ws_error_set(err, WS_ERR_CORRUPT, "object \"%s\" is truncated", name);
    body = stored_len - WS_OBJECT_HEADER_SIZE - trailer_len;
    if (info->cipher == WS_CIPHER_NONE) {
        memcpy(footer, trailer, sizeof(footer));
    } else {
        nchunks = (body + chunk_size + TAG_LEN - 1) / (chunk_size + TAG_LEN);
        if ((rc = key_for(kr, info->key_id, name, &key, err)) != 0 ||
            (rc = gcm_ctx_new(&c, key, hdr + 24, 0, err)) != 0)
            return rc;
        rc = gcm_open(c, hdr, name, nchunks, 1, trailer, WS_OBJECT_FOOTER_SIZE, footer, err);
        EVP_CIPHER_CTX_free(c);
        if (rc != 0)
            return rc;
    }
    info->content_len = get_be64(footer);
    memcpy(info->content_digest, footer + 8, WS_OBJECT_DIGEST_SIZE);
    info->stored_len = stored_len;
    return 0;
}
