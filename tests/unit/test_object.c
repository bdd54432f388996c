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
#include <zstd.h>

#include "base/config.h"
#include "io/fingerprint.h"
#include "io/key.h"
#include "io/object.h"
#include "fixture.h"
#include "object_old.h"
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

/* Content cap the next read_object() sets on its reader (0: none), and its threads for zstd
 * frames (format version 3). */
static uint64_t read_limit;
static int read_workers;

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
    ws_object_reader_set_workers(r, read_workers);
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

/* The `compress` of the round trips: 0 none, 1 zstd (one frame), FRAMES zstd frames. */
#define FRAMES 2

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
    p.compress = compress == FRAMES ? WS_COMPRESS_ZSTD : compress;
    p.frames = compress == FRAMES;
    p.workers = compress == FRAMES && (wslice & 2) ? 2 : 0;
    p.level = 3;
    p.content_size = (wslice & 1) ? (int64_t)len : -1; /* exercise both */
    p.key = key;
    p.chunk_size = chunk;
    REQUIRE(write_object(in, len, wslice, &p, &obj, &winfo) == 0);

    sha256(in, len, digest);
    CHECK(winfo.content_len == len);
    CHECK(memcmp(winfo.content_digest, digest, 32) == 0);
    CHECK(winfo.stored_len == obj.len);
    CHECK(winfo.compress == (compress ? WS_COMPRESS_ZSTD : WS_COMPRESS_NONE));
    CHECK(winfo.cipher == (key ? WS_CIPHER_AES256GCM : WS_CIPHER_NONE));
    /* header fields */
    REQUIRE(obj.len >= WS_OBJECT_HEADER_SIZE);
    CHECK(memcmp(obj.data, "WSAFEOBJ", 8) == 0 && obj.data[8] == (compress == FRAMES ? 3 : 1));
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
            for (int compress = 0; compress <= FRAMES; compress++) {
                /* no cipher (chunk size unused), then AES with small and default chunks */
                for (int c = -1; c < 2; c++) {
                    const size_t *rp = rpatterns[combo++ % 4];
                    if (inputs[i].len <= 64 * 1024 && combo % 3 == 0)
                        rp = P_ONE;
                    read_workers = combo % 3; /* frames: 0, 1 (none) or 2 threads */
                    check_roundtrip(inputs[i].p, inputs[i].len, wslices[s], compress,
                                    c < 0 ? NULL : &key, c < 0 ? 0 : chunks[c], rp, &kr);
                }
            }
        }
    }
    read_workers = 0;
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
        check_roundtrip(in, lens[i], 7, FRAMES, &key, 1024, P_ONE, &kr);
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
    for (p.frames = 0; p.frames <= 1; p.frames++) {
        p.content_size = 4999;
        CHECK(write_object(in, sizeof(in), 1000, &p, &obj, &info) != 0);
        p.content_size = 5001;
        CHECK(write_object(in, sizeof(in), 1000, &p, &obj, &info) != 0);
        p.content_size = 5000;
        CHECK(write_object(in, sizeof(in), 1000, &p, &obj, &info) == 0);
        blob_free(&obj);
    }
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

    /* one frame, then zstd frames (format version 3): concatenated frames are a valid zstd
     * stream, which the tool decodes, checking every frame's checksum */
    for (int k = 0; k < 6; k++) {
        int which = k % 3;
        const uint8_t *in = which == 1 ? rnd : text;
        size_t len = which == 2 ? 0 : LEN;
        uint8_t fhd;
        p.frames = k >= 3;
        REQUIRE(write_object(in, len, 100000, &p, &obj, &info) == 0);
        if (p.frames && len == 0) { /* no content, no frame */
            CHECK(obj.len == WS_OBJECT_HEADER_SIZE + PLAIN_TRAILER);
            blob_free(&obj);
            continue;
        }
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
            hdr[8] = 3, hdr[11] = 1; /* version 3 is zstd frames (byte 9 = 2), nothing else */
            CHECK(hdr[9] != WS_OBJECT_ZSTD_FRAMES &&
                  ws_object_parse_header(hdr, NAME, &hinfo, &chunk, &err) == WS_ERR_CORRUPT);
            hdr[8] = 4;
            CHECK(ws_object_parse_header(hdr, NAME, &hinfo, &chunk, &err) == WS_ERR_CORRUPT &&
                  strstr(err.msg, "format version 4") != NULL);
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
    for (int mode = 0; mode < 4; mode++) {
        int enc = mode & 1;
        struct ws_object_params p = {0};
        struct ws_object_info info;
        struct blob obj;
        struct read_result rr;

        p.name = NAME;
        p.compress = WS_COMPRESS_ZSTD;
        p.frames = mode >= 2; /* a frame holds at most 1 MiB: the cap comes first all the same */
        read_workers = mode == 3 ? 2 : 0;
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
        read_workers = 0;
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

/* ---- format version 3: zstd frames ---- */

/* rr delivered only a prefix of content (possibly nothing); when encrypted, never all of it (an
 * unencrypted object's checksum is checked at finish: dest stages, object.h). */
static int delivered_prefix(const struct read_result *rr, const uint8_t *content, size_t len,
                            int enc)
{
    return (enc ? rr->out.len < len : rr->out.len <= len) &&
           (rr->out.len == 0 || memcmp(rr->out.data, content, rr->out.len) == 0);
}

/* One damaged object read through a reader with 0 or 2 threads: refused, only a prefix out. */
static void check_damaged(const uint8_t *obj, size_t objlen, const char *name,
                          const struct ws_keyring *kr, size_t variant, const uint8_t *content,
                          size_t len, int enc, int key_byte, const char *what)
{
    struct read_result rr;
    static int reported;

    read_workers = variant % 2 ? 2 : 0;
    read_object(obj, objlen, name, kr, pattern_for(variant), (int)(variant % 3 == 0), &rr);
    read_workers = 0;
    CHECK(rr.rc == WS_ERR_CORRUPT || (key_byte && rr.rc == WS_ERR_KEY));
    CHECK(delivered_prefix(&rr, content, len, enc));
    if ((!(rr.rc == WS_ERR_CORRUPT || (key_byte && rr.rc == WS_ERR_KEY)) ||
         !delivered_prefix(&rr, content, len, enc)) &&
        reported++ < 5)
        fprintf(stderr, "    %s (variant %zu): rc=%s delivered=%zu: %s\n", what, variant,
                ws_code_name(rr.rc), rr.out.len, rr.err.msg);
    blob_free(&rr.out);
}

/*
 * Every failure mode of the earlier formats with a version 3 object (three frames), encrypted
 * and not, read with and without threads: flipped bits, truncation, appended bytes, another name,
 * a wrong or missing key. Encrypted: nothing of a chunk that failed authentication is delivered,
 * and a frame reaches dest only whole and checked.
 */
static void test_frames_tampering(void)
{
    enum { LEN = 2 * MIB + 5000 };
    uint8_t *content = malloc(LEN), *big;
    struct ws_key key, forged;
    struct ws_keyring kr, kr_forged;

    REQUIRE(content);
    make_text(content, LEN, 81);
    unit_random(content + MIB - 3000, 6000, 82); /* across the first frame boundary */
    make_key(&key, 81);
    keyring_of(&kr, &key, 1);
    make_key(&forged, 82);
    memcpy(forged.id, key.id, WS_KEY_ID_LEN);
    keyring_of(&kr_forged, &forged, 1);
    for (int enc = 0; enc <= 1; enc++) {
        struct ws_object_params p = {0};
        struct ws_object_info info;
        struct read_result rr;
        struct blob obj;
        size_t step, trailer = enc ? GCM_TRAILER : PLAIN_TRAILER;

        p.name = NAME;
        p.compress = WS_COMPRESS_ZSTD;
        p.frames = 1;
        p.workers = enc ? 2 : 0;
        p.level = 3;
        p.content_size = LEN;
        p.key = enc ? &key : NULL;
        p.chunk_size = enc ? 4096 : 0;
        REQUIRE(write_object(content, LEN, 100000, &p, &obj, &info) == 0);
        REQUIRE(obj.data[8] == 3 && obj.data[9] == WS_OBJECT_ZSTD_FRAMES);
        for (read_workers = 0; read_workers <= 3; read_workers += 3) {
            read_object(obj.data, obj.len, NAME, &kr, P_VARIED, 1, &rr);
            CHECK(rr.rc == 0 && rr.out.len == LEN && memcmp(rr.out.data, content, LEN) == 0);
            blob_free(&rr.out);
        }
        read_workers = 0;
        /* every byte of header and trailer, a sample of the body */
        step = obj.len / 150 + 1;
        for (size_t pos = 0; pos < obj.len;
             pos += pos < WS_OBJECT_HEADER_SIZE || pos + trailer + 1 >= obj.len ? 1 : step) {
            obj.data[pos] ^= (uint8_t)(1u << (pos % 8));
            check_damaged(obj.data, obj.len, NAME, &kr, pos, content, LEN, enc,
                          enc && pos >= 16 && pos < 24, "flipped bit");
            obj.data[pos] ^= (uint8_t)(1u << (pos % 8));
        }
        /* truncation: every length of header and trailer, a sample of the body */
        for (size_t len = 0; len < obj.len;
             len += len < WS_OBJECT_HEADER_SIZE || len + trailer + 1 >= obj.len ? 1 : step)
            check_damaged(obj.data, len, NAME, &kr, len, content, LEN, enc, 0, "truncated");
        /* appended: a byte, a copy of the trailer, a valid zstd frame */
        big = malloc(obj.len + 4096);
        REQUIRE(big);
        memcpy(big, obj.data, obj.len);
        big[obj.len] = 0;
        check_damaged(big, obj.len + 1, NAME, &kr, 1, content, LEN, enc, 0, "one byte appended");
        memcpy(big + obj.len, obj.data + obj.len - trailer, trailer);
        check_damaged(big, obj.len + trailer, NAME, &kr, 2, content, LEN, enc, 0,
                      "trailer appended");
        {
            size_t n = ZSTD_compress(big + obj.len, 4096, content, 1000, 3);
            REQUIRE(!ZSTD_isError(n));
            check_damaged(big, obj.len + n, NAME, &kr, 3, content, LEN, enc, 0, "frame appended");
        }
        free(big);
        /* another name; another key with the same id; no key */
        read_object(obj.data, obj.len, "main/wal/0000000100000000/000000010000000000000002", &kr,
                    P_WHOLE, 0, &rr);
        CHECK(rr.rc == WS_ERR_CORRUPT && (!enc || rr.out.len == 0));
        blob_free(&rr.out);
        if (enc) {
            read_workers = 2;
            read_object(obj.data, obj.len, NAME, &kr_forged, P_WHOLE, 0, &rr);
            CHECK(rr.rc == WS_ERR_CORRUPT && rr.out.len == 0);
            blob_free(&rr.out);
            read_object(obj.data, obj.len, NAME, NULL, P_WHOLE, 0, &rr);
            CHECK(rr.rc == WS_ERR_KEY && rr.out.len == 0);
            blob_free(&rr.out);
            read_workers = 0;
        }
        blob_free(&obj);
    }
    free(content);
}

/* An unencrypted version 3 object around any payload, with a valid checksum (and no digest):
 * what the frame parser gets once the object's own checks pass. */
static void plain_v3(const uint8_t *payload, size_t plen, uint64_t content_len, struct blob *obj)
{
    uint8_t *o = calloc(1, WS_OBJECT_HEADER_SIZE + plen + PLAIN_TRAILER), *f, nl[4];
    size_t namelen = strlen(NAME);
    unsigned int n = 32;
    EVP_MD_CTX *md = EVP_MD_CTX_new();

    REQUIRE(o && md);
    memcpy(o, "WSAFEOBJ", 8);
    o[8] = 3, o[9] = WS_OBJECT_ZSTD_FRAMES, o[11] = WS_DIGEST_XXH3_128;
    if (plen)
        memcpy(o + WS_OBJECT_HEADER_SIZE, payload, plen);
    f = o + WS_OBJECT_HEADER_SIZE + plen;
    for (int i = 0; i < 8; i++) {
        f[i] = (uint8_t)(content_len >> (56 - 8 * i));
        f[40 + i] = (uint8_t)((uint64_t)plen >> (56 - 8 * i));
    }
    nl[0] = (uint8_t)(namelen >> 24), nl[1] = (uint8_t)(namelen >> 16);
    nl[2] = (uint8_t)(namelen >> 8), nl[3] = (uint8_t)namelen;
    REQUIRE(EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1);
    EVP_DigestUpdate(md, o, WS_OBJECT_HEADER_SIZE);
    EVP_DigestUpdate(md, nl, 4);
    EVP_DigestUpdate(md, NAME, namelen);
    EVP_DigestUpdate(md, o + WS_OBJECT_HEADER_SIZE, plen + WS_OBJECT_FOOTER_SIZE);
    EVP_DigestFinal_ex(md, f + WS_OBJECT_FOOTER_SIZE, &n);
    EVP_MD_CTX_free(md);
    obj->data = o;
    obj->len = WS_OBJECT_HEADER_SIZE + plen + PLAIN_TRAILER;
}

/* Compresses in[0..len) as one frame: checksum and content size on or off. 0 on failure. */
static size_t one_frame(const uint8_t *in, size_t len, int checksum, int size_flag, uint8_t *out,
                        size_t cap)
{
    ZSTD_CCtx *c = ZSTD_createCCtx();
    size_t n = 0;

    if (c && !ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, checksum)) &&
        !ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, size_flag))) {
        if (size_flag) {
            n = ZSTD_compress2(c, out, cap, in, len);
        } else { /* streaming without a pledged size: no content size in the header */
            ZSTD_inBuffer i = {in, len, 0};
            ZSTD_outBuffer o = {out, cap, 0};
            n = ZSTD_compressStream2(c, &o, &i, ZSTD_e_end) == 0 ? o.pos : 0;
        }
    }
    ZSTD_freeCCtx(c);
    CHECK(n != 0 && !ZSTD_isError(n));
    return ZSTD_isError(n) ? 0 : n;
}

/* The payload of a version 3 object holds only what the writer writes (zstd_frames.h). */
static void test_frames_payload_rules(void)
{
    enum { CAP = 3 * MIB };
    uint8_t *text = malloc(MIB + 2), *pl = malloc(CAP);
    struct read_result rr;
    struct blob obj;
    size_t a, b;
    static const uint8_t skippable[] = {0x50, 0x2a, 0x4d, 0x18, 2, 0, 0, 0, 'h', 'i'};

    REQUIRE(text && pl);
    make_text(text, MIB + 2, 91);
    /* two good frames: 1 MiB and 2 bytes */
    a = one_frame(text, MIB, 1, 1, pl, CAP);
    b = one_frame(text + MIB, 2, 1, 1, pl + a, CAP - a);
    plain_v3(pl, a + b, MIB + 2, &obj);
    read_workers = 2;
    read_object(obj.data, obj.len, NAME, NULL, P_VARIED, 0, &rr);
    CHECK(rr.rc == 0 && rr.out.len == MIB + 2 && memcmp(rr.out.data, text, MIB + 2) == 0);
    blob_free(&rr.out);
    blob_free(&obj);
    /* the last frame cut short, or followed by bytes that are no frame */
    plain_v3(pl, a + b - 1, MIB + 2, &obj);
    read_object(obj.data, obj.len, NAME, NULL, P_VARIED, 0, &rr);
    CHECK(rr.rc == WS_ERR_CORRUPT && rr.out.len <= MIB);
    blob_free(&rr.out);
    blob_free(&obj);
    memset(pl + a + b, 0, 5);
    plain_v3(pl, a + b + 5, MIB + 2, &obj);
    read_object(obj.data, obj.len, NAME, NULL, P_WHOLE, 0, &rr);
    CHECK(rr.rc == WS_ERR_CORRUPT && strstr(rr.err.msg, "not a zstd frame") != NULL);
    blob_free(&rr.out);
    blob_free(&obj);
    /* a frame without a checksum, without a content size, of more than 1 MiB; a skippable frame */
    for (int k = 0; k < 4; k++) {
        size_t n = k == 3 ? sizeof(skippable)
                          : one_frame(text, k == 2 ? MIB + 1 : 1000, k != 0, k != 1, pl, CAP);
        if (k == 3)
            memcpy(pl, skippable, n);
        plain_v3(pl, n, k == 2 ? MIB + 1 : 1000, &obj);
        read_workers = k % 2 ? 2 : 0;
        read_object(obj.data, obj.len, NAME, NULL, P_VARIED, 0, &rr);
        CHECK(rr.rc == WS_ERR_CORRUPT && rr.out.len == 0);
        if (rr.rc != WS_ERR_CORRUPT)
            fprintf(stderr, "    frame rule %d not enforced\n", k);
        blob_free(&rr.out);
        blob_free(&obj);
    }
    /* a frame whose checksum does not match its content: nothing of it is delivered */
    a = one_frame(text, 5000, 1, 1, pl, CAP);
    pl[a - 1] ^= 1;
    plain_v3(pl, a, 5000, &obj);
    read_object(obj.data, obj.len, NAME, NULL, P_WHOLE, 0, &rr);
    CHECK(rr.rc == WS_ERR_CORRUPT && rr.out.len == 0);
    blob_free(&rr.out);
    blob_free(&obj);
    read_workers = 0;
    free(text);
    free(pl);
}

/* Objects that walsafe wrote before version 3 (object_old.h), byte for byte, still read. */
static void test_previous_versions(void)
{
    static const char OLD_NAME[] = "main/wal/0000000100000000/000000010000000000000003";
    uint8_t content[8192];
    struct ws_key key = {0};
    struct ws_keyring kr;
    struct ws_error err = {0};
    struct read_result rr;
    size_t n = 0;

    while (n < sizeof(content)) {
        char line[64];
        int k = snprintf(line, sizeof(line), "line %05zu of an object of format version 2\n", n);
        for (int i = 0; i < k && n < sizeof(content); i++)
            content[n++] = (uint8_t)line[i];
    }
    for (int i = 0; i < WS_KEY_LEN; i++)
        key.key[i] = (uint8_t)(0xa5 ^ (i * 7));
    REQUIRE(ws_key_derive_id(&key, &err) == 0);
    keyring_of(&kr, &key, 1);
    CHECK(OBJECT_V1_PLAIN[8] == 1 && OBJECT_V2_GCM[8] == 2);
    for (int v = 1; v <= 2; v++) {
        const uint8_t *obj = v == 1 ? OBJECT_V1_PLAIN : OBJECT_V2_GCM;
        size_t len = v == 1 ? sizeof(OBJECT_V1_PLAIN) : sizeof(OBJECT_V2_GCM);
        read_workers = 2; /* no effect on one frame */
        read_object(obj, len, OLD_NAME, &kr, P_VARIED, 1, &rr);
        CHECK(rr.rc == 0 && rr.out.len == sizeof(content) &&
              memcmp(rr.out.data, content, sizeof(content)) == 0);
        CHECK(rr.info.digest == (v == 1 ? WS_DIGEST_SHA256 : WS_DIGEST_XXH3_128));
        blob_free(&rr.out);
        read_object(obj, len, NAME, &kr, P_WHOLE, 0, &rr);
        CHECK(rr.rc == WS_ERR_CORRUPT);
        blob_free(&rr.out);
        read_workers = 0;
    }
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
    {"frames_tampering", test_frames_tampering},
    {"frames_payload_rules", test_frames_payload_rules},
    {"previous_versions", test_previous_versions},
    {NULL, NULL},
};
