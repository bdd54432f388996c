/*
 * The server's backup_manifest (pg/server_manifest.h): the lines PostgreSQL 15 writes (a path
 * with JSON escapes, an Encoded-Path, several WAL ranges) read in chunks from 1 byte to the whole,
 * each file handed over with its size and CRC-32C; the manifest checksum checked; every
 * deviation (another line, a file without CRC-32C (a SHA-256 one, 7 hex digits), a short or long
 * manifest, a line over the limit) refused naming the manifest and the line; a callback's error
 * returned as it is.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "pg/server_manifest.h"
#include "unit.h"

/* CRC_A: the CRC-32C of "123456789", 0xE3069283, as a backup_manifest shows it */
#define CRC_A "839206e3"
#define SHA_A "0b9c2625dc21ef05f6ad4ddf47c5f203837aa32c1b3ee5b2a2b3f04a2c38e1f2"

struct seen {
    int n;
    char paths[8][64];
    uint64_t sizes[8];
    uint32_t first_crc;
    int fail_at; /* the callback fails at this file (1-based), 0: never */
};

static int on_file(void *arg, const struct ws_smf_file *f, struct ws_error *err)
{
    struct seen *s = arg;

    if (++s->n == s->fail_at)
        return ws_error_set(err, WS_ERR_CORRUPT, "callback refused \"%s\"", f->path);
    if (s->n <= 8) {
        snprintf(s->paths[s->n - 1], sizeof(s->paths[0]), "%s", f->path);
        s->sizes[s->n - 1] = f->size;
    }
    if (s->n == 1)
        s->first_crc = f->crc32c;
    return 0;
}

/* The manifest of files (lines, each without its separator) and its checksum line. */
static char *manifest(const char *const *lines, size_t n, int bad_checksum)
{
    char *text = malloc(64 * 1024), hex[65];
    uint8_t sha[32];
    size_t len = 0;

    len += (size_t)snprintf(text + len, 64 * 1024 - len,
                            "{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [");
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(text + len, 64 * 1024 - len, "%s%s", i ? ",\n" : "\n", lines[i]);
    len += (size_t)snprintf(text + len, 64 * 1024 - len,
                            "\n],\n\"WAL-Ranges\": [\n"
                            "{ \"Timeline\": 1, \"Start-LSN\": \"0/2000028\", \"End-LSN\": "
                            "\"0/20000A0\" },\n"
                            "{ \"Timeline\": 2, \"Start-LSN\": \"0/20000A0\", \"End-LSN\": "
                            "\"1/0\" }\n],\n");
    EVP_Digest(text, len, sha, NULL, EVP_sha256(), NULL);
    sha[0] ^= (uint8_t)bad_checksum;
    ws_hex(sha, sizeof(sha), hex);
    snprintf(text + len, 64 * 1024 - len, "\"Manifest-Checksum\": \"%s\"}\n", hex);
    return text;
}

static int run(const char *text, size_t len, size_t chunk, struct seen *s, struct ws_error *err)
{
    struct ws_smf *r = NULL;
    int rc;

    memset(err, 0, sizeof(*err));
    if ((rc = ws_smf_new("backup_manifest of x", on_file, s, &r, err)) != 0)
        return rc;
    for (size_t at = 0; rc == 0 && at < len; at += chunk)
        rc = ws_smf_feed(r, (const uint8_t *)text + at, len - at < chunk ? len - at : chunk, err);
    if (rc == 0)
        rc = ws_smf_finish(r, err);
    ws_smf_free(r);
    return rc;
}

static const char *const good_files[] = {
    "{ \"Path\": \"backup_label\", \"Size\": 225, \"Last-Modified\": \"2026-12-07 10:00:00 GMT\", "
    "\"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"" CRC_A "\" }",
    "{ \"Path\": \"base/1/a\\\"b\\\\c\\td\\u0001\", \"Size\": 0, \"Last-Modified\": \"2026-12-07 "
    "10:00:00 GMT\", \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"" CRC_A "\" }",
    "{ \"Encoded-Path\": \"62617365ff\", \"Size\": 18446744073709551, \"Last-Modified\": "
    "\"2026-12-07 10:00:00 GMT\", \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"" CRC_A
    "\" }",
};

static void test_good(void)
{
    static const size_t chunks[] = {1, 2, 7, 511, 100000};
    char *text = manifest(good_files, 3, 0);
    struct ws_error err = {0};
    for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
        struct seen s = {0};
        REQUIRE(run(text, strlen(text), chunks[i], &s, &err) == 0);
        REQUIRE(s.n == 3);
        CHECK(strcmp(s.paths[0], "backup_label") == 0 && s.sizes[0] == 225);
        CHECK(strcmp(s.paths[1], "base/1/a\"b\\c\td\001") == 0 && s.sizes[1] == 0);
        CHECK(strcmp(s.paths[2], "base\xff") == 0 && s.sizes[2] == UINT64_C(18446744073709551));
        CHECK(s.first_crc == 0xE3069283u);
    }
    free(text);
}

/* Each bad manifest: its code, a part of its message. */
static void refused(const char *text, size_t len, const char *msg)
{
    struct seen s = {0};
    struct ws_error err = {0};

    CHECK(run(text, len, 3, &s, &err) == WS_ERR_CORRUPT);
    if (!strstr(err.msg, msg) || !strstr(err.msg, "backup_manifest of x"))
        unit_fail(__FILE__, __LINE__, err.msg);
}

static void test_refused(void)
{
    static const struct {
        const char *line, *msg;
    } bad[] = {
        {"{ \"Path\": \"a\", \"Size\": 1, \"Last-Modified\": \"x\", \"Checksum-Algorithm\": "
         "\"SHA256\", \"Checksum\": \"" SHA_A "\" }",
         "line 3"},
        {"{ \"Path\": \"a\", \"Size\": 1, \"Last-Modified\": \"x\", \"Checksum-Algorithm\": "
         "\"CRC32C\", \"Checksum\": \"8392063\" }",
         "line 3"},
        {"{ \"Path\": \"a\", \"Size\": 1, \"Last-Modified\": \"x\" }", "line 3"},
        {"{ \"Path\": \"\", \"Size\": 1, \"Last-Modified\": \"x\", \"Checksum-Algorithm\": "
         "\"CRC32C\", \"Checksum\": \"" CRC_A "\" }",
         "line 3"},
        {"{ \"Path\": \"a\\u0000\", \"Size\": 1, \"Last-Modified\": \"x\", "
         "\"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"" CRC_A "\" }",
         "line 3"},
        {"{ \"Path\": \"a\", \"Size\": -1, \"Last-Modified\": \"x\", \"Checksum-Algorithm\": "
         "\"CRC32C\", \"Checksum\": \"" CRC_A "\" }",
         "line 3"},
        {"{ \"Encoded-Path\": \"6\", \"Size\": 1, \"Last-Modified\": \"x\", "
         "\"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"" CRC_A "\" }",
         "line 3"},
        {"{ \"Path\": \"a\", \"Size\": 1, \"Last-Modified\": \"x\", \"Checksum-Algorithm\": "
         "\"CRC32C\", \"Checksum\": \"" CRC_A "\" } ",
         "line 3"},
    };
    const char *lines[2];
    char *text, *p, big[WS_SMF_LINE_MAX + 64];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        lines[0] = bad[i].line;
        text = manifest(lines, 1, 0);
        refused(text, strlen(text), bad[i].msg);
        free(text);
    }
    text = manifest(good_files, 3, 1);
    refused(text, strlen(text), "Manifest-Checksum does not match");
    free(text);
    text = manifest(good_files, 3, 0);
    refused(text, strlen(text) - 1, "ends early");  /* the last newline missing */
    refused(text, strlen(text) - 30, "ends early"); /* cut */
    p = strstr(text, "],\n\"WAL");
    refused(text, (size_t)(p - text), "ends early");
    memmove(p + 1, p, strlen(p) + 1); /* an empty line before "]," */
    *p = '\n';
    refused(text, strlen(text), "line 6");
    free(text);
    text = manifest(good_files, 3, 0);
    snprintf(text + strlen(text), 2, "x");
    refused(text, strlen(text), "bytes after its last line");
    free(text);
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    refused(big, strlen(big), "longer than");
}

/* A callback's error stops the reader and is what it returns. */
static void test_callback_error(void)
{
    char *text = manifest(good_files, 3, 0);
    struct seen s = {0};
    struct ws_error err = {0};

    s.fail_at = 2;
    CHECK(run(text, strlen(text), 5, &s, &err) == WS_ERR_CORRUPT);
    CHECK(strstr(err.msg, "callback refused") != NULL && s.n == 2);
    free(text);
}

const struct unit_test unit_tests[] = {
    {"good", test_good},
    {"refused", test_refused},
    {"callback_error", test_callback_error},
    {NULL, NULL},
};
