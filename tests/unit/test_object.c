/*
 * The object format: writer/reader round trips through a matrix of inputs, write and read slice
 * sizes, compression, cipher and chunk size; a cross-check of the zstd payload with the real zstd
 * tool; and tampering: every flipped bit, every truncation, appended, swapped and foreign
 * chunks, another name, wrong and forged keys. Encrypted objects must never deliver a byte of a
 * chunk that did not verify.
 */
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/config.h"
#include "io/fingerprint.h"
#include "io/key.h"
#include "io/object.h"
#include "fixture.h"
#include "unit.h"

#define MIB (1u << 20)
#define TAG 16
#define PLAIN_TRAILER (WS_OBJECT_FOOTER_SIZE + 32)
#define GCM_TRAILER (WS_OBJECT_FOOTER_SIZE + TAG)

static const char NAME[] = "main/wal/0000000100000000/000000010000000000000001";

struct blob {
    uint8_t *data;
    size_t len;
};

static void blob_free(struct blob *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
}

static void sha256(const uint8_t *p, size_t n, uint8_t out[32])
{
    unsigned int len = 32;
    EVP_Digest(p, n, out, &len, EVP_sha256(), NULL);
}

/* The fixture's calls (fixture.h) under the names the tests below use. */
#define make_key unit_key
#define keyring_of unit_keyring

/* Text that zstd compresses well. */
static void make_text(uint8_t *p, size_t n, uint32_t seed)
{
    static const char *const words[] = {"checkpoint ",      "WAL ",        "segment ",  "archive ",
                                        "restore_command ", "0/16B374D8 ", "relation ", "\n"};
    uint8_t r[1];
    size_t i = 0;
    while (i < n) {
        unit_random(r, 1, seed + (uint32_t)i);
        const char *w = words[r[0] % 8];
        for (size_t j = 0; w[j] && i < n; j++)
            p[i++] = (uint8_t)w[j];
    }
}

/* ---- writing and reading with slices ---- */

/* Writes in[0..len) into a new object in slices of `slice` bytes. Returns the writer's rc. */
static int write_object(const uint8_t *in, size_t len, size_t slice,
                        const struct ws_object_params *p, struct blob *out,
                        struct ws_object_info *info)
{
    struct ws_sink *buf = NULL, *w = NULL;
    struct ws_error err = {0};
    const uint8_t *data;
    size_t n;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = ws_buffer_sink_new(SIZE_MAX, &buf, &err)) != 0)
        return rc;
    if ((rc = ws_object_writer_new(buf, p, &w, &err)) != 0)
        return rc;
    rc = ws_sink_write(w, in, 0, &err);
    for (size_t off = 0; rc == 0 && off < len; off += slice)
        rc = ws_sink_write(w, in + off, len - off < slice ? len - off : slice, &err);
    if (rc == 0)
        rc = ws_sink_finish(w, &err);
    if (rc == 0) {
        ws_object_writer_info(w, info);
        data = ws_buffer_sink_data(buf, &n);
        out->data = malloc(n ? n : 1);
        if (n)
            memcpy(out->data, data, n);
        out->len = n;
    }
    ws_sink_free(w);
    return rc;
}

struct read_result {
    int rc;
    int failed_in_write; /* the error came from a write, not from finish */
    struct blob out;     /* what reached dest, also after a failure */
    struct ws_object_info info;
    struct ws_error err;
};

/* Slice patterns for feeding the reader; 0 ends a pattern, which then repeats. */
static const size_t P_ONE[] = {1, 0};
static const size_t P_SEVEN[] = {7, 0};
static const size_t P_WHOLE[] = {SIZE_MAX, 0};
static const size_t P_VARIED[] = {1, 13, 63,    64, 65,          1023, 1040, 4097,
                                  5, 80, 65539, 2,  262144 + 80, MIB,  3,    0};
static const size_t P_CHUNKY[] = {1040, 64, 1, 1039, 2080, 17, 0};

/* Content cap the next read_object() sets on its reader (0: none). */
static uint64_t read_limit;

static void read_object(const uint8_t *obj, size_t len, const char *name,
                        const struct ws_keyring *kr, const size_t *pattern, int verify_digest,
                        struct read_result *res)
{
    struct ws_sink *dest = NULL, *r = NULL;
    const uint8_t *data;
    size_t n, off = 0, pi = 0;

    memset(res, 0, sizeof(*res));
    if ((res->rc = ws_buffer_sink_new(SIZE_MAX, &dest, &res->err)) != 0)
        return;
    if ((res->rc = ws_object_reader_new(dest, name, kr, verify_digest, &r, &res->err)) != 0)
        return;
    if (read_limit)
        ws_object_reader_set_limit(r, read_limit);
    while (off < len) {
        size_t s = pattern[pi];
        if (s > len - off)
            s = len - off;
        if ((res->rc = ws_sink_write(r, obj + off, s, &res->err)) != 0) {
            res->failed_in_write = 1;
            break;
        }
        off += s;
        if (pattern[++pi] == 0)
            pi = 0;
    }
    if (res->rc == 0)
        res->rc = ws_sink_finish(r, &res->err);
    if (res->rc == 0)
        ws_object_reader_info(r, &res->info);
    data = ws_buffer_sink_data(dest, &n);
    res->out.data = malloc(n ? n : 1);
    if (n)
        memcpy(res->out.data, data, n);
    res->out.len = n;
    ws_sink_free(r); /* frees dest */
}

/* ---- round trips ---- */

static int roundtrip_failures;

static void check_roundtrip(const uint8_t *in, size_t len, size_t wslice, int compress,
                            const struct ws_key *key, uint32_t chunk, const size_t *rpattern,
                            const struct ws_keyring *kr)
{
    struct ws_object_params p = {0};
    struct ws_object_info winfo;
    struct blob obj;
    struct read_result rr;
    uint8_t digest[32];
    int before = unit_failures;

    p.name = NAME;
    p.compress = compress;
    p.level = 3;
    p.content_size = (wslice & 1) ? (int64_t)len : -1; /* exercise both */
    p.key = key;
    p.chunk_size = chunk;
    REQUIRE(write_object(in, len, wslice, &p, &obj, &winfo) == 0);

    sha256(in, len, digest);
    CHECK(winfo.content_len == len);
    CHECK(memcmp(winfo.content_digest, digest, 32) == 0);
    CHECK(winfo.stored_len == obj.len);
    CHECK(winfo.compress == compress);
    CHECK(winfo.cipher == (key ? WS_CIPHER_AES256GCM : WS_CIPHER_NONE));
    /* header fields */
    REQUIRE(obj.len >= WS_OBJECT_HEADER_SIZE);
    CHECK(memcmp(obj.data, "WSAFEOBJ", 8) == 0 && obj.data[8] == 1);
    CHECK(obj.data[9] == compress && obj.data[10] == winfo.cipher);
    if (key) {
        uint32_t cs = (uint32_t)obj.data[12] << 24 | (uint32_t)obj.data[13] << 16 |
                      (uint32_t)obj.data[14] << 8 | obj.data[15];
        CHECK(cs == (chunk ? chunk : WS_OBJECT_CHUNK_SIZE));
        CHECK(memcmp(obj.data + 16, key->id, WS_KEY_ID_LEN) == 0);
        CHECK(memcmp(winfo.key_id, key->id, WS_KEY_ID_LEN) == 0);
        if (compress == WS_COMPRESS_NONE) {
            size_t nchunks = (len + cs - 1) / cs;
            CHECK(obj.len == WS_OBJECT_HEADER_SIZE + len + nchunks * TAG + GCM_TRAILER);
        }
    } else if (compress == WS_COMPRESS_NONE) {
        CHECK(obj.len == WS_OBJECT_HEADER_SIZE + len + PLAIN_TRAILER);
        CHECK(len == 0 || memcmp(obj.data + WS_OBJECT_HEADER_SIZE, in, len) == 0);
    }

    read_object(obj.data, obj.len, NAME, kr, rpattern, wslice != 4096, &rr);
    CHECK(rr.rc == 0);
    if (rr.rc != 0)
        fprintf(stderr, "    read failed: %s\n", rr.err.msg);
    CHECK(rr.out.len == len);
    CHECK(rr.out.len == len && (len == 0 || memcmp(rr.out.data, in, len) == 0));
    CHECK(rr.info.content_len == winfo.content_len);
    CHECK(memcmp(rr.info.content_digest, winfo.content_digest, 32) == 0);
    CHECK(rr.info.compress == winfo.compress && rr.info.cipher == winfo.cipher);
    CHECK(memcmp(rr.info.key_id, winfo.key_id, WS_KEY_ID_LEN) == 0);
    if (unit_failures != before && roundtrip_failures++ < 5)
        fprintf(stderr, "    roundtrip len=%zu wslice=%zu compress=%d key=%d chunk=%u\n", len,
                wslice, compress, key != NULL, chunk);
    blob_free(&rr.out);
    blob_free(&obj);
}

static void test_roundtrip_matrix(void)
{
    enum { BIG = 3 * MIB, MEDIUM = 40000 };
    uint8_t *random_big = malloc(BIG), *text_big = malloc(BIG), *medium = malloc(MEDIUM);
    uint8_t one = 0xA5;
    struct ws_key key;
    struct ws_keyring kr;
    static const size_t wslices[] = {1, 7, 4096, MIB};
    static const uint32_t chunks[] = {1024, 0};
    const size_t *rpatterns[] = {P_VARIED, P_SEVEN, P_WHOLE, P_CHUNKY};
    struct {
        const uint8_t *p;
        size_t len;
    } inputs[5];
    int combo = 0;

    REQUIRE(random_big && text_big && medium);
    unit_random(random_big, BIG, 1);
    make_text(text_big, BIG, 2);
    unit_random(medium, MEDIUM / 2, 3);
    make_text(medium + MEDIUM / 2, MEDIUM / 2, 4);
    inputs[0].p = &one, inputs[0].len = 0;
    inputs[1].p = &one, inputs[1].len = 1;
    inputs[2].p = medium, inputs[2].len = MEDIUM;
    inputs[3].p = random_big, inputs[3].len = BIG;
    inputs[4].p = text_big, inputs[4].len = BIG;
    make_key(&key, 77);
    keyring_of(&kr, &key, 1);

    for (size_t i = 0; i < 5; i++) {
        for (size_t s = 0; s < 4; s++) {
            if (wslices[s] == 1 && inputs[i].len > 64 * 1024)
                continue;
            for (int compress = 0; compress <= 1; compress++) {
                /* no cipher (chunk size unused), then AES with small and default chunks */
                for (int c = -1; c < 2; c++) {
                    const size_t *rp = rpatterns[combo++ % 4];
                    if (inputs[i].len <= 64 * 1024 && combo % 3 == 0)
                        rp = P_ONE;
                    check_roundtrip(inputs[i].p, inputs[i].len, wslices[s], compress,
                                    c < 0 ? NULL : &key, c < 0 ? 0 : chunks[c], rp, &kr);
                }
            }
        }
    }
    free(random_big);
    free(text_big);
    free(medium);
}

/* Content lengths around chunk boundaries, read one byte at a time. */
static void test_chunk_boundaries(void)
{
    static const size_t lens[] = {1, 1023, 1024, 1025, 2047, 2048, 4096, 4097};
    uint8_t in[4097];
    struct ws_key key;
    struct ws_keyring kr;

    unit_random(in, sizeof(in), 9);
    make_key(&key, 9);
    keyring_of(&kr, &key, 1);
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        check_roundtrip(in, lens[i], 1000, WS_COMPRESS_NONE, &key, 1024, P_ONE, &kr);
        check_roundtrip(in, lens[i], 1024, WS_COMPRESS_NONE, &key, 1024, P_CHUNKY, &kr);
        check_roundtrip(in, lens[i], 3, WS_COMPRESS_ZSTD, &key, 1024, P_ONE, &kr);
        check_roundtrip(in, lens[i], 5000, WS_COMPRESS_NONE, NULL, 0, P_ONE, &kr);
    }
}

/* A pledged content size is enforced by the compressor. */
static void test_content_size_enforced(void)
{
    uint8_t in[5000];
    struct ws_object_params p = {0};
    struct ws_object_info info;
    struct blob obj;

    unit_random(in, sizeof(in), 5);
    p.name = NAME;
    p.compress = WS_COMPRESS_ZSTD;
    p.level = 1;
    p.content_size = 4999;
    CHECK(write_object(in, sizeof(in), 1000, &p, &obj, &info) != 0);
    p.content_size = 5001;
    CHECK(write_object(in, sizeof(in), 1000, &p, &obj, &info) != 0);
    p.content_size = 5000;
    CHECK(write_object(in, sizeof(in), 1000, &p, &obj, &info) == 0);
    blob_free(&obj);
}

/*
 * The writer must not produce what the reader refuses: a chunk size outside the format's range
 * (1 KiB..16 MiB) is either refused up front or, if accepted, readable. Each size runs in a child
 * process, so that a memory error (reported by ASan) fails this test without ending the others.
 */
static int chunk_size_case(uint32_t size, char *why, size_t whysz)
{
    uint8_t in[3000];
    struct ws_key key;
    struct ws_keyring kr;
    struct ws_object_params p = {0};
    struct ws_object_info info;
    struct read_result rr;
    struct blob obj;
    int ok;

    unit_random(in, sizeof(in), 13);
    make_key(&key, 13);
    keyring_of(&kr, &key, 1);
    p.name = NAME;
    p.compress = WS_COMPRESS_NONE;
    p.content_size = -1;
    p.key = &key;
    p.chunk_size = size;
    if (write_object(in, sizeof(in), 1000, &p, &obj, &info) != 0)
        return 1; /* refused: fine */
    read_object(obj.data, obj.len, NAME, &kr, P_WHOLE, 1, &rr);
    ok = rr.rc == 0 && rr.out.len == sizeof(in) && memcmp(rr.out.data, in, sizeof(in)) == 0;
    snprintf(why, whysz, "written, but the reader says: %s", rr.err.msg);
    blob_free(&rr.out);
    blob_free(&obj);
    return ok;
}

static void test_chunk_size_limits(void)
{
    static const uint32_t sizes[] = {1, 16, 47, 512, 1023, 1024, 16u << 20, (16u << 20) + 1};

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        int status = 0;
        pid_t pid;

        fflush(stdout);
        fflush(stderr);
        pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            char why[1200] = "";
            int ok = chunk_size_case(sizes[i], why, sizeof(why));
            if (!ok)
                fprintf(stderr, "    chunk size %u: %s\n", sizes[i], why);
            _exit(ok ? 0 : 1);
        }
        REQUIRE(waitpid(pid, &status, 0) == pid);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) > 1)
            fprintf(stderr,
                    "    chunk size %u: the writer crashed (status 0x%x; see the report "
                    "above)\n",
                    sizes[i], (unsigned)status);
    }
}

/* ---- the zstd payload is a standard zstd frame with a content checksum ---- */

static int run_zstd_decompress(const char *in, const char *out)
{
    int status;
    pid_t pid = fork();

    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        int nul = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (fd < 0 || nul < 0 || dup2(fd, 1) < 0 || dup2(nul, 2) < 0)
            _exit(126);
        execlp("zstd", "zstd", "-d", "-c", "-q", in, (char *)NULL);
        _exit(127);
    }
    if (waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int write_file(const char *path, const uint8_t *p, size_t n)
{
    return unit_write(path, p, n, 0600);
}

static int read_file(const char *path, struct blob *b)
{
    return unit_read(path, &b->data, &b->len);
}

static void test_zstd_cli(void)
{
    enum { LEN = 3 * MIB };
    uint8_t *text = malloc(LEN), *rnd = malloc(LEN);
    char payload_path[512], out_path[512];
    struct ws_object_params p = {0};
    struct ws_object_info info;
    struct blob obj, out;
    int rc;

    REQUIRE(text && rnd);
    make_text(text, LEN, 11);
    unit_random(rnd, LEN, 12);
    snprintf(payload_path, sizeof(payload_path), "%s/payload.zst", unit_tmpdir());
    snprintf(out_path, sizeof(out_path), "%s/payload.out", unit_tmpdir());
    p.name = NAME;
    p.compress = WS_COMPRESS_ZSTD;
    p.level = 3;
    p.content_size = -1;

    for (int which = 0; which < 3; which++) {
        const uint8_t *in = which == 1 ? rnd : text;
        size_t len = which == 2 ? 0 : LEN;
        uint8_t fhd;
        REQUIRE(write_object(in, len, 100000, &p, &obj, &info) == 0);
        REQUIRE(obj.len > WS_OBJECT_HEADER_SIZE + PLAIN_TRAILER + 4);
        const uint8_t *payload = obj.data + WS_OBJECT_HEADER_SIZE;
        size_t plen = obj.len - WS_OBJECT_HEADER_SIZE - PLAIN_TRAILER;
        /* zstd magic, and the frame header says "content checksum" */
        CHECK(payload[0] == 0x28 && payload[1] == 0xB5 && payload[2] == 0x2F && payload[3] == 0xFD);
        fhd = payload[4];
        CHECK((fhd & 0x04) != 0);
        if (which == 0)
            CHECK(plen < LEN / 4); /* the text really was compressed */

        REQUIRE(write_file(payload_path, payload, plen) == 0);
        rc = run_zstd_decompress(payload_path, out_path);
        if (rc == 127) {
            fprintf(stderr, "    note: zstd tool not found; cross-check skipped\n");
            blob_free(&obj);
            break;
        }
        CHECK(rc == 0);
        REQUIRE(read_file(out_path, &out) == 0);
        CHECK(out.len == len && (len == 0 || memcmp(out.data, in, len) == 0));
        blob_free(&out);

        /* the tool also verifies the checksum we wrote: damage the last checksum byte */
        if (len > 0) {
            uint8_t *bad = malloc(plen);
            REQUIRE(bad);
            memcpy(bad, payload, plen);
            bad[plen - 1] ^= 0x01;
            REQUIRE(write_file(payload_path, bad, plen) == 0);
            CHECK(run_zstd_decompress(payload_path, out_path) != 0);
            free(bad);
        }
        blob_free(&obj);
    }
    free(text);
    free(rnd);
}

/* ---- tampering ---- */

struct layout {
    size_t cs;          /* chunk size (plaintext) */
    size_t nchunks;     /* data chunks */
    size_t data_end;    /* offset of the trailer */
    size_t content_len; /* for compress none: the payload */
};

/* Which data chunk holds byte `pos` of a compress-none AES object: -1 header, nchunks trailer. */
static long chunk_at(const struct layout *l, size_t pos)
{
    if (pos < WS_OBJECT_HEADER_SIZE)
        return -1;
    if (pos >= l->data_end)
        return (long)l->nchunks;
    return (long)((pos - WS_OBJECT_HEADER_SIZE) / (l->cs + TAG));
}

/*
 * After a failed read of an encrypted object: dest holds a prefix of the content made of whole
 * verified chunks (or the complete content, when only the trailer failed), and nothing of
 * chunk `bad` (the first damaged one) or later.
 */
static int only_verified(const struct read_result *rr, const uint8_t *content,
                         const struct layout *l, long bad)
{
    size_t n = rr->out.len;
    if (n > l->content_len || (n && memcmp(rr->out.data, content, n) != 0))
        return 0;
    if (n % l->cs != 0 && n != l->content_len)
        return 0;
    if (bad >= 0 && bad < (long)l->nchunks && n > (size_t)bad * l->cs)
        return 0;
    if (bad < 0 && n != 0)
        return 0;
    return 1;
}

static const size_t *pattern_for(size_t i)
{
    static const size_t *const pats[] = {P_WHOLE, P_VARIED, P_CHUNKY, P_SEVEN};
    return pats[i % 4];
}

enum { TAMPER_LEN = 4500, TAMPER_CS = 1024 };

static void encrypted_fixture(uint8_t *content, struct ws_key *key, struct ws_keyring *kr,
                              struct blob *obj, struct layout *l, const char *name)
{
    struct ws_object_params p = {0};
    struct ws_object_info info;

    unit_random(content, TAMPER_LEN, 21);
    make_key(key, 21);
    keyring_of(kr, key, 1);
    p.name = name;
    p.compress = WS_COMPRESS_NONE;
    p.content_size = TAMPER_LEN;
    p.key = key;
    p.chunk_size = TAMPER_CS;
    if (write_object(content, TAMPER_LEN, 999, &p, obj, &info) != 0)
        unit_fail(__FILE__, __LINE__, "write_object");
    l->cs = TAMPER_CS;
    l->nchunks = (TAMPER_LEN + TAMPER_CS - 1) / TAMPER_CS;
    l->content_len = TAMPER_LEN;
    l->data_end = WS_OBJECT_HEADER_SIZE + TAMPER_LEN + l->nchunks * TAG;
}

static void test_aead_bitflips(void)
{
    uint8_t content[TAMPER_LEN];
    struct ws_key key;
    struct ws_keyring kr;
    struct blob obj;
    struct layout l;
    struct read_result rr;
    int reported = 0;

    encrypted_fixture(content, &key, &kr, &obj, &l, NAME);
    REQUIRE(obj.len == l.data_end + GCM_TRAILER);
    REQUIRE(l.nchunks == 5);

    /* sanity: the untouched object reads */
    read_object(obj.data, obj.len, NAME, &kr, P_WHOLE, 1, &rr);
    CHECK(rr.rc == 0 && rr.out.len == TAMPER_LEN);
    blob_free(&rr.out);

    /* every byte of header, chunks, tags and trailer */
    for (size_t pos = 0; pos < obj.len; pos++) {
        long bad = chunk_at(&l, pos);
        int ok_code;
        obj.data[pos] ^= (uint8_t)(1u << (pos % 8));
        read_object(obj.data, obj.len, NAME, &kr, pattern_for(pos), pos % 2, &rr);
        obj.data[pos] ^= (uint8_t)(1u << (pos % 8));
        /* a damaged key id names a key we do not have: that is WS_ERR_KEY */
        ok_code = rr.rc == WS_ERR_CORRUPT || (pos >= 16 && pos < 24 && rr.rc == WS_ERR_KEY);
        CHECK(ok_code);
        CHECK(only_verified(&rr, content, &l, bad));
        /* exactly the chunks before the damaged one arrived (all of them for the trailer) */
        CHECK(rr.out.len == (bad < 0                  ? 0
                             : bad >= (long)l.nchunks ? l.content_len
                                                      : (size_t)bad * l.cs));
        if ((!ok_code || !only_verified(&rr, content, &l, bad)) && reported++ < 5)
            fprintf(stderr, "    flip at %zu (chunk %ld): rc=%s delivered=%zu: %s\n", pos, bad,
                    ws_code_name(rr.rc), rr.out.len, rr.err.msg);
        blob_free(&rr.out);
    }
    blob_free(&obj);
}

static void test_aead_truncation_and_appending(void)
{
    uint8_t content[TAMPER_LEN];
    struct ws_key key;
    struct ws_keyring kr;
    struct blob obj;
    struct layout l;
    struct read_result rr;
    uint8_t *big;
    int reported = 0;

    encrypted_fixture(content, &key, &kr, &obj, &l, NAME);
    REQUIRE(obj.len == l.data_end + GCM_TRAILER);

    /* every length shorter than the object: all chunk boundaries, mid-chunk, minus one byte */
    for (size_t len = 0; len < obj.len; len++) {
        read_object(obj.data, len, NAME, &kr, pattern_for(len), 0, &rr);
        CHECK(rr.rc == WS_ERR_CORRUPT);
        CHECK(only_verified(&rr, content, &l, (long)l.nchunks));
        /* the chunks cut off were never delivered */
        CHECK(rr.out.len <= (len > WS_OBJECT_HEADER_SIZE
                                 ? (len - WS_OBJECT_HEADER_SIZE) / (l.cs + TAG) * l.cs
                                 : 0));
        if ((rr.rc != WS_ERR_CORRUPT || !only_verified(&rr, content, &l, (long)l.nchunks)) &&
            reported++ < 5)
            fprintf(stderr, "    truncated to %zu: rc=%s delivered=%zu: %s\n", len,
                    ws_code_name(rr.rc), rr.out.len, rr.err.msg);
        blob_free(&rr.out);
    }

    /* appended bytes: one byte, a copy of the trailer, a copy of the last chunk and trailer */
    big = malloc(obj.len + 2000);
    REQUIRE(big);
    memcpy(big, obj.data, obj.len);
    big[obj.len] = 0;
    read_object(big, obj.len + 1, NAME, &kr, P_VARIED, 0, &rr);
    CHECK(rr.rc == WS_ERR_CORRUPT);
    CHECK(only_verified(&rr, content, &l, (long)l.nchunks));
    blob_free(&rr.out);

    memcpy(big + obj.len, obj.data + l.data_end, GCM_TRAILER);
    read_object(big, obj.len + GCM_TRAILER, NAME, &kr, P_CHUNKY, 0, &rr);
    CHECK(rr.rc == WS_ERR_CORRUPT);
    CHECK(only_verified(&rr, content, &l, (long)l.nchunks));
    blob_free(&rr.out);

    {
        size_t last = WS_OBJECT_HEADER_SIZE + (l.nchunks - 1) * (l.cs + TAG);
        size_t tail = obj.len - last;
        memcpy(big + obj.len, obj.data + last, tail);
        read_object(big, obj.len + tail, NAME, &kr, P_WHOLE, 0, &rr);
        CHECK(rr.rc == WS_ERR_CORRUPT);
        CHECK(only_verified(&rr, content, &l, (long)l.nchunks));
        blob_free(&rr.out);
    }
    free(big);
    blob_free(&obj);
}

static void test_aead_reordering(void)
{
    uint8_t content[TAMPER_LEN], other_content[TAMPER_LEN];
    struct ws_key key;
    struct ws_keyring kr;
    struct blob obj, other;
    struct layout l;
    struct read_result rr;
    const size_t unit = TAMPER_CS + TAG;
    uint8_t *m;

    encrypted_fixture(content, &key, &kr, &obj, &l, NAME);
    m = malloc(obj.len + unit);
    REQUIRE(m);
#define CHUNK(i) (WS_OBJECT_HEADER_SIZE + (size_t)(i)*unit)

    /* swap chunks 1 and 2 */
    memcpy(m, obj.data, obj.len);
    memcpy(m + CHUNK(1), obj.data + CHUNK(2), unit);
    memcpy(m + CHUNK(2), obj.data + CHUNK(1), unit);
    read_object(m, obj.len, NAME, &kr, P_VARIED, 0, &rr);
    CHECK(rr.rc == WS_ERR_CORRUPT);
    CHECK(only_verified(&rr, content, &l, 1));
    blob_free(&rr.out);

    /* drop chunk 2 */
    memcpy(m, obj.data, CHUNK(2));
    memcpy(m + CHUNK(2), obj.data + CHUNK(3), obj.len - CHUNK(3));
    read_object(m, obj.len - unit, NAME, &kr, P_CHUNKY, 0, &rr);
    CHECK(rr.rc == WS_ERR_CORRUPT);
    CHECK(only_verified(&rr, content, &l, 2));
    blob_free(&rr.out);

    /* chunk 1 twice */
    memcpy(m, obj.data, CHUNK(2));
    memcpy(m + CHUNK(2), obj.data + CHUNK(1), obj.len - CHUNK(1));
    read_object(m, obj.len + unit, NAME, &kr, P_WHOLE, 0, &rr);
    CHECK(rr.rc == WS_ERR_CORRUPT);
    CHECK(only_verified(&rr, content, &l, 2));
    blob_free(&rr.out);

    /* drop the last data chunk: the trailer then sits at the wrong index */
    memcpy(m, obj.data, CHUNK(l.nchunks - 1));
    memcpy(m + CHUNK(l.nchunks - 1), obj.data + l.data_end, GCM_TRAILER);
    read_object(m, CHUNK(l.nchunks - 1) + GCM_TRAILER, NAME, &kr, P_VARIED, 0, &rr);
    CHECK(rr.rc == WS_ERR_CORRUPT);
    CHECK(only_verified(&rr, content, &l, (long)l.nchunks - 1));
    blob_free(&rr.out);

    /* chunks and trailer of another object under the same name and key (another salt) */
    {
        struct ws_object_params p = {0};
        struct ws_object_info info;
        unit_random(other_content, TAMPER_LEN, 22);
        p.name = NAME;
        p.content_size = -1;
        p.key = &key;
        p.chunk_size = TAMPER_CS;
        REQUIRE(write_object(other_content, TAMPER_LEN, 4500, &p, &other, &info) == 0);
        REQUIRE(other.len == obj.len);

        memcpy(m, obj.data, obj.len);
        memcpy(m + CHUNK(3), other.data + CHUNK(3), unit);
        read_object(m, obj.len, NAME, &kr, P_VARIED, 0, &rr);
        CHECK(rr.rc == WS_ERR_CORRUPT);
        CHECK(only_verified(&rr, content, &l, 3));
        blob_free(&rr.out);

        memcpy(m, obj.data, obj.len);
        memcpy(m + l.data_end, other.data + l.data_end, GCM_TRAILER);
        read_object(m, obj.len, NAME, &kr, P_WHOLE, 0, &rr);
        CHECK(rr.rc == WS_ERR_CORRUPT);
        CHECK(only_verified(&rr, content, &l, (long)l.nchunks));
        blob_free(&rr.out);

        /* the other object's header with our body */
        memcpy(m, obj.data, obj.len);
        memcpy(m, other.data, WS_OBJECT_HEADER_SIZE);
        read_object(m, obj.len, NAME, &kr, P_WHOLE, 0, &rr);
        CHECK(rr.rc == WS_ERR_CORRUPT);
        CHECK(rr.out.len == 0);
        blob_free(&rr.out);
        blob_free(&other);
    }
#undef CHUNK
    free(m);
    blob_free(&obj);
}

static void test_aead_names_and_keys(void)
{
    uint8_t content[TAMPER_LEN];
    struct ws_key key, other, forged;
    struct ws_keyring kr, kr_other, kr_forged, kr_empty, kr_both;
    struct blob obj;
    struct layout l;
    struct read_result rr;
    struct ws_key both[2];

    encrypted_fixture(content, &key, &kr, &obj, &l, "main/wal/A");

    /* the right key under the right name */
    read_object(obj.data, obj.len, "main/wal/A", &kr, P_VARIED, 1, &rr);
    CHECK(rr.rc == 0 && rr.out.len == TAMPER_LEN);
    blob_free(&rr.out);

    /* the object served under another name */
    read_object(obj.data, obj.len, "main/wal/B", &kr, P_VARIED, 0, &rr);
    CHECK(rr.rc == WS_ERR_CORRUPT);
    CHECK(rr.out.len == 0);
    CHECK(strstr(rr.err.msg, "main/wal/B") != NULL);
    blob_free(&rr.out);

    /* another key: no key with that id */
    make_key(&other, 99);
    keyring_of(&kr_other, &other, 1);
    read_object(obj.data, obj.len, "main/wal/A", &kr_other, P_WHOLE, 0, &rr);
    CHECK(rr.rc == WS_ERR_KEY);
    CHECK(rr.out.len == 0);
    blob_free(&rr.out);

    /* a key that claims the id but has other bytes */
    forged = other;
    memcpy(forged.id, key.id, WS_KEY_ID_LEN);
    keyring_of(&kr_forged, &forged, 1);
    read_object(obj.data, obj.len, "main/wal/A", &kr_forged, P_WHOLE, 0, &rr);
    CHECK(rr.rc == WS_ERR_CORRUPT);
    CHECK(rr.out.len == 0);
    blob_free(&rr.out);

    /* no keys at all */
    keyring_of(&kr_empty, NULL, 0);
    read_object(obj.data, obj.len, "main/wal/A", &kr_empty, P_WHOLE, 0, &rr);
    CHECK(rr.rc == WS_ERR_KEY);
    CHECK(rr.out.len == 0);
    blob_free(&rr.out);
    read_object(obj.data, obj.len, "main/wal/A", NULL, P_WHOLE, 0, &rr);
    CHECK(rr.rc == WS_ERR_KEY);
    CHECK(rr.out.len == 0);
    blob_free(&rr.out);

    /* the right key among others */
    both[0] = other;
    both[1] = key;
    keyring_of(&kr_both, both, 2);
    read_object(obj.data, obj.len, "main/wal/A", &kr_both, P_SEVEN, 1, &rr);
    CHECK(rr.rc == 0 && rr.out.len == TAMPER_LEN && memcmp(rr.out.data, content, TAMPER_LEN) == 0);
    blob_free(&rr.out);
    blob_free(&obj);
}

/* Encrypted and compressed: whatever reaches dest is a prefix of the content. */
static void test_aead_zstd_tampering(void)
{
    enum { LEN = 200000 };
    uint8_t *content = malloc(LEN);
    struct ws_key key;
    struct ws_keyring kr;
    struct ws_object_params p = {0};
    struct ws_object_info info;
    struct blob obj;
    struct read_result rr;

    REQUIRE(content);
    make_text(content, LEN, 31);
    unit_random(content + LEN / 2, 20000, 32);
    make_key(&key, 31);
    keyring_of(&kr, &key, 1);
    p.name = NAME;
    p.compress = WS_COMPRESS_ZSTD;
    p.level = 3;
    p.content_size = -1;
    p.key = &key;
    p.chunk_size = 1024;
    REQUIRE(write_object(content, LEN, 65536, &p, &obj, &info) == 0);
    for (size_t pos = 0; pos < obj.len; pos += 97) {
        obj.data[pos] ^= 0x10;
        read_object(obj.data, obj.len, NAME, &kr, pattern_for(pos), 0, &rr);
        obj.data[pos] ^= 0x10;
        CHECK(rr.rc == WS_ERR_CORRUPT || (pos >= 16 && pos < 24 && rr.rc == WS_ERR_KEY));
        CHECK(rr.out.len <= LEN &&
              (rr.out.len == 0 || memcmp(rr.out.data, content, rr.out.len) == 0));
        if (pos < WS_OBJECT_HEADER_SIZE)
            CHECK(rr.out.len == 0);
        blob_free(&rr.out);
    }
    for (size_t len = 0; len < obj.len; len += 61) {
        read_object(obj.data, len, NAME, &kr, pattern_for(len), 0, &rr);
        CHECK(rr.rc == WS_ERR_CORRUPT);
        CHECK(rr.out.len < LEN &&
              (rr.out.len == 0 || memcmp(rr.out.data, content, rr.out.len) == 0));
        blob_free(&rr.out);
    }
    blob_free(&obj);
    free(content);
}

/* Step for walking positions: every byte, or for zstd every byte of header and trailer and a
 * sample of the body. */
static size_t sampled(int compress, size_t pos, size_t len)
{
    if (!compress || pos < WS_OBJECT_HEADER_SIZE + 8 || pos + PLAIN_TRAILER + 8 >= len)
        return 1;
    return 17;
}

/* Unencrypted objects: the checksum catches every flipped bit, truncation, append, rename. */
static void test_plain_tampering(void)
{
    uint8_t content[TAMPER_LEN];
    struct ws_object_params p = {0};
    struct ws_object_info info;
    struct read_result rr;
    int reported = 0;

    unit_random(content, TAMPER_LEN, 41);
    make_text(content + 1000, 2000, 42);
    for (int compress = 0; compress <= 1; compress++) {
        struct blob obj;
        uint8_t *big;
        p.name = NAME;
        p.compress = compress;
        p.level = 3;
        p.content_size = -1;
        REQUIRE(write_object(content, TAMPER_LEN, 333, &p, &obj, &info) == 0);
        if (compress == 0)
            REQUIRE(obj.len == WS_OBJECT_HEADER_SIZE + TAMPER_LEN + PLAIN_TRAILER);

        /* zstd readers are expensive to set up under ASan: sample the zstd body */
        for (size_t pos = 0; pos < obj.len; pos += sampled(compress, pos, obj.len)) {
            obj.data[pos] ^= (uint8_t)(0x80u >> (pos % 8));
            read_object(obj.data, obj.len, NAME, NULL, pattern_for(pos), (int)(pos % 2), &rr);
            obj.data[pos] ^= (uint8_t)(0x80u >> (pos % 8));
            CHECK(rr.rc == WS_ERR_CORRUPT);
            if (rr.rc != WS_ERR_CORRUPT && reported++ < 5)
                fprintf(stderr, "    plain compress=%d flip at %zu: rc=%s: %s\n", compress, pos,
                        ws_code_name(rr.rc), rr.err.msg);
            blob_free(&rr.out);
        }
        for (size_t len = 0; len < obj.len; len += sampled(compress, len, obj.len)) {
            read_object(obj.data, len, NAME, NULL, pattern_for(len), 0, &rr);
            CHECK(rr.rc == WS_ERR_CORRUPT);
            if (rr.rc != WS_ERR_CORRUPT && reported++ < 5)
                fprintf(stderr, "    plain compress=%d truncated to %zu: rc=%s\n", compress, len,
                        ws_code_name(rr.rc));
            blob_free(&rr.out);
        }
        big = malloc(obj.len + PLAIN_TRAILER);
        REQUIRE(big);
        memcpy(big, obj.data, obj.len);
        big[obj.len] = 0;
        read_object(big, obj.len + 1, NAME, NULL, P_VARIED, 0, &rr);
        CHECK(rr.rc == WS_ERR_CORRUPT);
        blob_free(&rr.out);
        memcpy(big + obj.len, obj.data + obj.len - PLAIN_TRAILER, PLAIN_TRAILER);
        read_object(big, obj.len + PLAIN_TRAILER, NAME, NULL, P_WHOLE, 0, &rr);
        CHECK(rr.rc == WS_ERR_CORRUPT);
        blob_free(&rr.out);
        free(big);

        /* under another name */
        read_object(obj.data, obj.len, "main/wal/0000000100000000/000000010000000000000002", NULL,
                    P_WHOLE, 0, &rr);
        CHECK(rr.rc == WS_ERR_CORRUPT);
        blob_free(&rr.out);
        /* and correct */
        read_object(obj.data, obj.len, NAME, NULL, P_ONE, 1, &rr);
        CHECK(rr.rc == 0 && rr.out.len == TAMPER_LEN &&
              memcmp(rr.out.data, content, TAMPER_LEN) == 0);
        blob_free(&rr.out);
        blob_free(&obj);
    }
}

/* ---- the XXH3-128 content digest (format 2) ---- */

static void test_xxh3_digest(void)
{
    enum { LEN = 300000 };
    uint8_t *content = malloc(LEN), fp[WS_FINGERPRINT_SIZE], zero[16] = {0}, hdr[64];
    struct ws_key key;
    struct ws_keyring kr;
    struct ws_object_info info, hinfo;
    struct ws_error err = {0};
    struct read_result rr;
    uint32_t chunk;

    REQUIRE(content);
    unit_random(content, LEN / 2, 51);
    make_text(content + LEN / 2, LEN - LEN / 2, 52);
    ws_fingerprint(content, LEN, fp);
    make_key(&key, 53);
    keyring_of(&kr, &key, 1);
    for (int enc = 0; enc <= 1; enc++)
        for (int compress = 0; compress <= 1; compress++) {
            struct ws_object_params p = {0};
            struct blob obj;
            p.name = NAME;
            p.compress = compress;
            p.level = 3;
            p.content_size = LEN;
            p.key = enc ? &key : NULL;
            p.digest = WS_DIGEST_XXH3_128;
            REQUIRE(write_object(content, LEN, 4093, &p, &obj, &info) == 0);
            CHECK(obj.data[8] == 2 && obj.data[11] == WS_DIGEST_XXH3_128);
            CHECK(info.digest == WS_DIGEST_XXH3_128);
            CHECK(memcmp(info.content_digest, fp, 16) == 0 &&
                  memcmp(info.content_digest + 16, zero, 16) == 0);
            read_object(obj.data, obj.len, NAME, &kr, P_VARIED, 1, &rr);
            CHECK(rr.rc == 0 && rr.out.len == LEN && memcmp(rr.out.data, content, LEN) == 0);
            CHECK(rr.info.digest == WS_DIGEST_XXH3_128 &&
                  memcmp(rr.info.content_digest, info.content_digest, 32) == 0);
            blob_free(&rr.out);
            if (!enc && !compress) {
                /* a footer digest that does not match the content, behind a valid checksum:
                 * only the recomputed digest can tell */
                uint8_t *footer = obj.data + obj.len - PLAIN_TRAILER, nl[4];
                size_t namelen = strlen(NAME);
                EVP_MD_CTX *md = EVP_MD_CTX_new();
                unsigned int n = 32;
                footer[8] ^= 1;
                nl[0] = (uint8_t)(namelen >> 24), nl[1] = (uint8_t)(namelen >> 16);
                nl[2] = (uint8_t)(namelen >> 8), nl[3] = (uint8_t)namelen;
                REQUIRE(md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1);
                EVP_DigestUpdate(md, obj.data, WS_OBJECT_HEADER_SIZE);
                EVP_DigestUpdate(md, nl, 4);
                EVP_DigestUpdate(md, NAME, namelen);
                EVP_DigestUpdate(md, obj.data + WS_OBJECT_HEADER_SIZE, LEN);
                EVP_DigestUpdate(md, footer, WS_OBJECT_FOOTER_SIZE);
                EVP_DigestFinal_ex(md, footer + WS_OBJECT_FOOTER_SIZE, &n);
                EVP_MD_CTX_free(md);
                read_object(obj.data, obj.len, NAME, NULL, P_WHOLE, 0, &rr);
                CHECK(rr.rc == 0); /* the checksum holds: without verify_digest it passes */
                blob_free(&rr.out);
                read_object(obj.data, obj.len, NAME, NULL, P_WHOLE, 1, &rr);
                CHECK(rr.rc == WS_ERR_CORRUPT && strstr(rr.err.msg, "XXH3-128") != NULL);
                blob_free(&rr.out);
            }
            /* the version and the digest byte go together */
            memcpy(hdr, obj.data, sizeof(hdr));
            CHECK(ws_object_parse_header(hdr, NAME, &hinfo, &chunk, &err) == 0 &&
                  hinfo.digest == WS_DIGEST_XXH3_128);
            hdr[8] = 1; /* version 1 has no digest byte */
            CHECK(ws_object_parse_header(hdr, NAME, &hinfo, &chunk, &err) == WS_ERR_CORRUPT);
            hdr[8] = 2, hdr[11] = 0;
            CHECK(ws_object_parse_header(hdr, NAME, &hinfo, &chunk, &err) == WS_ERR_CORRUPT);
            hdr[11] = 2;
            CHECK(ws_object_parse_header(hdr, NAME, &hinfo, &chunk, &err) == WS_ERR_CORRUPT);
            hdr[8] = 3, hdr[11] = 1;
            CHECK(ws_object_parse_header(hdr, NAME, &hinfo, &chunk, &err) == WS_ERR_CORRUPT &&
                  strstr(err.msg, "format version 3") != NULL);
            blob_free(&obj);
        }
    /* ws_object_digest_fd: both kinds, as a writer records them */
    {
        char path[] = "/tmp/walsafe-test-digest-XXXXXX";
        uint8_t d[32], want[32] = {0};
        uint64_t n = 0;
        int fd = mkstemp(path);
        REQUIRE(fd >= 0);
        unlink(path);
        REQUIRE(write(fd, content, LEN) == LEN);
        CHECK(ws_object_digest_fd(fd, WS_DIGEST_XXH3_128, "test file", d, &n, &err) == 0);
        memcpy(want, fp, 16);
        CHECK(n == LEN && memcmp(d, want, 32) == 0);
        CHECK(ws_object_digest_fd(fd, WS_DIGEST_SHA256, "test file", d, &n, &err) == 0);
        sha256(content, LEN, want);
        CHECK(n == LEN && memcmp(d, want, 32) == 0);
        close(fd);
    }
    free(content);
}

/* ---- footer alone ---- */

static void test_read_footer(void)
{
    static const size_t lens[] = {0, 1, 4500, 100000};
    uint8_t *content = malloc(100000);
    struct ws_key key, other;
    struct ws_keyring kr, kr_other, kr_empty;

    REQUIRE(content);
    unit_random(content, 100000, 51);
    make_key(&key, 51);
    make_key(&other, 52);
    keyring_of(&kr, &key, 1);
    keyring_of(&kr_other, &other, 1);
    keyring_of(&kr_empty, NULL, 0);
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        for (int compress = 0; compress <= 1; compress++) {
            for (int enc = 0; enc <= 1; enc++) {
                struct ws_object_params p = {0};
                struct ws_object_info winfo, finfo;
                struct ws_error err = {0};
                struct blob obj;
                size_t tsize = ws_object_trailer_size(enc ? WS_CIPHER_AES256GCM : WS_CIPHER_NONE);
                const uint8_t *trailer;

                p.name = NAME;
                p.compress = compress;
                p.level = 1;
                p.content_size = -1;
                p.key = enc ? &key : NULL;
                p.chunk_size = enc ? 1024 : 0;
                REQUIRE(write_object(content, lens[i], 4096, &p, &obj, &winfo) == 0);
                CHECK(tsize == (enc ? GCM_TRAILER : PLAIN_TRAILER));
                trailer = obj.data + obj.len - tsize;
                memset(&finfo, 0xEE, sizeof(finfo));
                CHECK(ws_object_read_footer(obj.data, trailer, tsize, obj.len, NAME, &kr, &finfo,
                                            &err) == 0);
                CHECK(finfo.content_len == winfo.content_len && finfo.content_len == lens[i]);
                CHECK(memcmp(finfo.content_digest, winfo.content_digest, 32) == 0);
                CHECK(finfo.cipher == winfo.cipher && finfo.compress == winfo.compress);
                CHECK(finfo.stored_len == obj.len);
                /* wrong trailer size, object shorter than header + trailer */
                CHECK(ws_object_read_footer(obj.data, trailer, tsize - 1, obj.len, NAME, &kr,
                                            &finfo, &err) == WS_ERR_CORRUPT);
                CHECK(ws_object_read_footer(obj.data, trailer, tsize,
                                            WS_OBJECT_HEADER_SIZE + tsize - 1, NAME, &kr, &finfo,
                                            &err) == WS_ERR_CORRUPT);
                if (enc) {
                    /* the footer is authenticated: name, size (chunk count) and key matter */
                    CHECK(ws_object_read_footer(obj.data, trailer, tsize, obj.len, "main/wal/x",
                                                &kr, &finfo, &err) == WS_ERR_CORRUPT);
                    CHECK(ws_object_read_footer(obj.data, trailer, tsize, obj.len + 1040, NAME, &kr,
                                                &finfo, &err) == WS_ERR_CORRUPT);
                    CHECK(ws_object_read_footer(obj.data, trailer, tsize, obj.len, NAME, &kr_other,
                                                &finfo, &err) == WS_ERR_KEY);
                    CHECK(ws_object_read_footer(obj.data, trailer, tsize, obj.len, NAME, &kr_empty,
                                                &finfo, &err) == WS_ERR_KEY);
                    {
                        uint8_t t2[GCM_TRAILER];
                        memcpy(t2, trailer, tsize);
                        t2[5] ^= 1;
                        CHECK(ws_object_read_footer(obj.data, t2, tsize, obj.len, NAME, &kr, &finfo,
                                                    &err) == WS_ERR_CORRUPT);
                    }
                }
                /* a damaged header */
                {
                    uint8_t h2[WS_OBJECT_HEADER_SIZE];
                    memcpy(h2, obj.data, sizeof(h2));
                    h2[0] ^= 1;
                    CHECK(ws_object_read_footer(h2, trailer, tsize, obj.len, NAME, &kr, &finfo,
                                                &err) == WS_ERR_CORRUPT);
                }
                blob_free(&obj);
            }
        }
    }
    free(content);
}

/* ---- key rotation ---- */

static void test_key_rotation(void)
{
    static const char HEX1[] = "8f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
    static const char HEX2[] = "1111111111111111222222222222222233333333333333334444444444444444";
    char p1[512], p2[512], text[80];
    struct ws_config cfg;
    struct ws_keyring kr_old, kr_new, kr_new_only;
    struct ws_error err = {0};
    struct ws_object_params p = {0};
    struct ws_object_info info;
    struct blob obj1, obj2;
    struct read_result rr;
    uint8_t content[3000];

    snprintf(p1, sizeof(p1), "%s/rot1.key", unit_tmpdir());
    snprintf(p2, sizeof(p2), "%s/rot2.key", unit_tmpdir());
    snprintf(text, sizeof(text), "%s\n", HEX1);
    REQUIRE(write_file(p1, (const uint8_t *)text, strlen(text)) == 0);
    snprintf(text, sizeof(text), "%s\n", HEX2);
    REQUIRE(write_file(p2, (const uint8_t *)text, strlen(text)) == 0);
    REQUIRE(chmod(p1, 0600) == 0 && chmod(p2, 0600) == 0);

    /* before the rotation: key1 writes */
    ws_config_init(&cfg);
    REQUIRE(ws_config_set(&cfg, "encrypt_key_file", p1, "t", &err) == 0);
    REQUIRE(ws_keyring_load(&cfg, &kr_old, &err) == 0);
    ws_config_free(&cfg);
    /* after: key2 writes, key1 still reads */
    ws_config_init(&cfg);
    REQUIRE(ws_config_set(&cfg, "encrypt_key_file", p2, "t", &err) == 0);
    REQUIRE(ws_config_set(&cfg, "decrypt_key_files", p1, "t", &err) == 0);
    REQUIRE(ws_keyring_load(&cfg, &kr_new, &err) == 0);
    ws_config_free(&cfg);
    ws_config_init(&cfg);
    REQUIRE(ws_config_set(&cfg, "encrypt_key_file", p2, "t", &err) == 0);
    REQUIRE(ws_keyring_load(&cfg, &kr_new_only, &err) == 0);
    ws_config_free(&cfg);

    unit_random(content, sizeof(content), 61);
    p.name = NAME;
    p.compress = WS_COMPRESS_ZSTD;
    p.level = 3;
    p.content_size = -1;
    p.chunk_size = 1024;
    p.key = ws_keyring_write_key(&kr_old);
    REQUIRE(p.key);
    REQUIRE(write_object(content, sizeof(content), 512, &p, &obj1, &info) == 0);
    p.key = ws_keyring_write_key(&kr_new);
    REQUIRE(p.key);
    CHECK(memcmp(p.key->id, ws_keyring_write_key(&kr_old)->id, WS_KEY_ID_LEN) != 0);
    REQUIRE(write_object(content, sizeof(content), 512, &p, &obj2, &info) == 0);

    read_object(obj1.data, obj1.len, NAME, &kr_new, P_VARIED, 1, &rr);
    CHECK(rr.rc == 0 && rr.out.len == sizeof(content) &&
          memcmp(rr.out.data, content, sizeof(content)) == 0);
    blob_free(&rr.out);
    read_object(obj2.data, obj2.len, NAME, &kr_new, P_VARIED, 1, &rr);
    CHECK(rr.rc == 0 && rr.out.len == sizeof(content));
    blob_free(&rr.out);
    /* without decrypt_key_files the old object cannot be read */
    read_object(obj1.data, obj1.len, NAME, &kr_new_only, P_VARIED, 1, &rr);
    CHECK(rr.rc == WS_ERR_KEY && rr.out.len == 0);
    blob_free(&rr.out);
    /* nor the new one with only the old key */
    read_object(obj2.data, obj2.len, NAME, &kr_old, P_VARIED, 1, &rr);
    CHECK(rr.rc == WS_ERR_KEY && rr.out.len == 0);
    blob_free(&rr.out);

    ws_keyring_wipe(&kr_old);
    ws_keyring_wipe(&kr_new);
    ws_keyring_wipe(&kr_new_only);
    blob_free(&obj1);
    blob_free(&obj2);
}

/* An encrypted object is not readable as plain text anywhere in its body. */
/* A small object that decodes to much more content: the cap stops it before a byte beyond the
 * cap reaches dest, with or without encryption, whatever the slices. */
static void test_content_limit(void)
{
    enum { BIG = 8 * MIB };
    uint8_t *zeros = calloc(1, BIG);
    struct ws_key key;
    struct ws_keyring kr;
    static const size_t *const patterns[] = {P_ONE, P_VARIED, P_WHOLE};

    REQUIRE(zeros != NULL);
    make_key(&key, 77);
    keyring_of(&kr, &key, 1);
    for (int enc = 0; enc <= 1; enc++) {
        struct ws_object_params p = {0};
        struct ws_object_info info;
        struct blob obj;
        struct read_result rr;

        p.name = NAME;
        p.compress = WS_COMPRESS_ZSTD;
        p.level = 3;
        p.content_size = -1;
        p.key = enc ? &key : NULL;
        REQUIRE(write_object(zeros, BIG, MIB, &p, &obj, &info) == 0);
        CHECK(obj.len < 16384); /* 8 MiB of zeros: a few KiB stored */
        for (size_t i = 0; i < sizeof(patterns) / sizeof(patterns[0]); i++) {
            if (patterns[i] == P_ONE && enc)
                continue; /* byte by byte through GCM chunks: slow, and P_VARIED covers it */
            read_limit = MIB;
            read_object(obj.data, obj.len, NAME, &kr, patterns[i], 0, &rr);
            CHECK(rr.rc == WS_ERR_CORRUPT);
            CHECK(rr.out.len <= MIB); /* stopped at the cap, not after decoding it all */
            CHECK(strstr(rr.err.msg, "more than 1048576 bytes") != NULL);
            CHECK(strstr(rr.err.msg, NAME) != NULL);
            blob_free(&rr.out);
        }
        /* exactly at the cap, and one byte above it */
        read_limit = BIG;
        read_object(obj.data, obj.len, NAME, &kr, P_VARIED, 1, &rr);
        CHECK(rr.rc == 0 && rr.out.len == BIG);
        blob_free(&rr.out);
        read_limit = BIG - 1;
        read_object(obj.data, obj.len, NAME, &kr, P_WHOLE, 0, &rr);
        CHECK(rr.rc == WS_ERR_CORRUPT && rr.out.len <= BIG - 1);
        blob_free(&rr.out);
        read_limit = 0;
        blob_free(&obj);
    }
    free(zeros);
}

static void test_ciphertext_hides_content(void)
{
    uint8_t content[8192];
    struct ws_key key;
    struct ws_object_params p = {0};
    struct ws_object_info info;
    struct blob obj;

    make_text(content, sizeof(content), 71);
    make_key(&key, 71);
    p.name = NAME;
    p.compress = WS_COMPRESS_NONE;
    p.content_size = -1;
    p.key = &key;
    p.chunk_size = 1024;
    REQUIRE(write_object(content, sizeof(content), 8192, &p, &obj, &info) == 0);
    CHECK(memmem(obj.data, obj.len, "checkpoint", 10) == NULL);
    CHECK(memmem(obj.data, obj.len, key.key, 8) == NULL);
    blob_free(&obj);
}

const struct unit_test unit_tests[] = {
    {"roundtrip_matrix", test_roundtrip_matrix},
    {"chunk_boundaries", test_chunk_boundaries},
    {"content_size_enforced", test_content_size_enforced},
    {"chunk_size_limits", test_chunk_size_limits},
    {"zstd_cli", test_zstd_cli},
    {"aead_bitflips", test_aead_bitflips},
    {"aead_truncation_and_appending", test_aead_truncation_and_appending},
    {"aead_reordering", test_aead_reordering},
    {"aead_names_and_keys", test_aead_names_and_keys},
    {"aead_zstd_tampering", test_aead_zstd_tampering},
    {"plain_tampering", test_plain_tampering},
    {"read_footer", test_read_footer},
    {"xxh3_digest", test_xxh3_digest},
    {"key_rotation", test_key_rotation},
    {"ciphertext_hides_content", test_ciphertext_hides_content},
    {"content_limit", test_content_limit},
    {NULL, NULL},
};
