/*
 * backup_extra_paths at create (backup/extra.h): what is refused before anything is read (a missing
 * path, a link, overlapping paths, the data directory, the key files by name) and while reading
 * (a key file reached under another name, by device and inode), and what a walk stores: records
 * in order with their attributes, contents back to back with their SHA-256.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup/extra.h"
#include "base/config.h"
#include "fixture.h"
#include "io/sink.h"
#include "unit.h"

/* <scratch>/<name>/ with etc/app.conf (0640), etc/sub/b (0600), etc/key (the key) and data/. */
static void layout(const char *name, char *root, size_t n)
{
    char p[2048];

    unit_path(root, n, "%s", name);
    snprintf(p, sizeof(p), "%s/etc/sub", root);
    unit_mkdir(p);
    snprintf(p, sizeof(p), "%s/data", root);
    unit_mkdir(p);
    snprintf(p, sizeof(p), "%s/etc/app.conf", root);
    unit_write(p, "setting = 1\n", 12, 0640);
    snprintf(p, sizeof(p), "%s/etc/sub/b", root);
    unit_write(p, "bee", 3, 0600);
    snprintf(p, sizeof(p), "%s/keys", root);
    unit_mkdir(p);
    snprintf(p, sizeof(p), "%s/keys/key", root);
    unit_key_file(p, NULL);
}

/* ws_extra_check with backup_extra_paths = paths and the key at key; the message in msg. */
static int check(const char *paths, const char *key, const char *pgdata, char *msg, size_t msgsz)
{
    struct ws_config cfg;
    struct ws_error err = {0};
    int rc;

    if (unit_config(&cfg, "backup_extra_paths", paths, "encrypt_key_file", key, NULL) != 0)
        return -1;
    rc = ws_extra_check(&cfg, pgdata, &err);
    snprintf(msg, msgsz, "%s", err.msg);
    ws_config_free(&cfg);
    return rc;
}

static void test_refusals(void)
{
    char root[1024], paths[8192], key[2048], msg[1100], pg[2048], p[2048];

    layout("refuse", root, sizeof(root));
    snprintf(key, sizeof(key), "%s/keys/key", root);
    snprintf(pg, sizeof(pg), "%s/data", root);
    snprintf(paths, sizeof(paths), "%s/etc, %s/etc/../x", root, root);
    CHECK(check(paths, key, pg, msg, sizeof(msg)) == WS_ERR_CONFIG && strstr(msg, "/etc/../x"));
    snprintf(paths, sizeof(paths), "%s/etc,%s/missing", root, root);
    CHECK(check(paths, key, pg, msg, sizeof(msg)) == WS_ERR_CONFIG && strstr(msg, "/missing\"") &&
          strstr(msg, "No such file"));
    snprintf(paths, sizeof(paths), "%s/etc,%s/etc/sub", root, root);
    CHECK(check(paths, key, pg, msg, sizeof(msg)) == WS_ERR_CONFIG && strstr(msg, "overlaps"));
    snprintf(paths, sizeof(paths), "%s", root);
    CHECK(check(paths, NULL, pg, msg, sizeof(msg)) == WS_ERR_CONFIG &&
          strstr(msg, "data directory"));
    snprintf(paths, sizeof(paths), "%s/data", root);
    CHECK(check(paths, NULL, pg, msg, sizeof(msg)) == WS_ERR_CONFIG &&
          strstr(msg, "data directory"));
    snprintf(p, sizeof(p), "%s/link", root);
    CHECK(symlink("etc/app.conf", p) == 0);
    CHECK(check(p, NULL, pg, msg, sizeof(msg)) == WS_ERR_CONFIG && strstr(msg, "symbolic link"));
    /* the key file: listed itself, or under a listed directory; also as decrypt_key_files */
    CHECK(check(key, key, pg, msg, sizeof(msg)) == WS_ERR_CONFIG && strstr(msg, "key file") &&
          strstr(msg, "lost with them"));
    snprintf(paths, sizeof(paths), "%s/etc,%s/keys", root, root);
    CHECK(check(paths, key, pg, msg, sizeof(msg)) == WS_ERR_CONFIG && strstr(msg, "/keys\""));
    {
        struct ws_config cfg;
        struct ws_error err = {0};
        REQUIRE(unit_config(&cfg, "backup_extra_paths", paths, "decrypt_key_files", key, NULL) ==
                0);
        CHECK(ws_extra_check(&cfg, pg, &err) == WS_ERR_CONFIG && strstr(err.msg, "key file"));
        ws_config_free(&cfg);
    }
    /* allowed: the same list without the key's directory */
    snprintf(paths, sizeof(paths), "%s/etc", root);
    CHECK(check(paths, key, pg, msg, sizeof(msg)) == 0);
    CHECK(check(paths, key, NULL, msg, sizeof(msg)) == 0);
}

/* The walk into a buffer sink: records and contents. */
static int store(const char *paths, const char *key, struct ws_manifest *m, uint8_t **data,
                 size_t *len, struct ws_error *err)
{
    struct ws_config cfg;
    struct ws_sink *s = NULL;
    const uint8_t *d;
    int rc;

    memset(m, 0, sizeof(*m));
    *data = NULL;
    *len = 0;
    if (unit_config(&cfg, "backup_extra_paths", paths, "encrypt_key_file", key, NULL) != 0 ||
        ws_buffer_sink_new(1 << 20, &s, err) != 0)
        return -1;
    if ((rc = ws_extra_store(&cfg, NULL, s, m, err)) == 0) {
        d = ws_buffer_sink_data(s, len);
        *data = malloc(*len + 1);
        memcpy(*data, d, *len);
    }
    ws_sink_free(s);
    ws_config_free(&cfg);
    return rc;
}

static void sha256(const void *p, size_t n, uint8_t out[32])
{
    unsigned int l = 32;
    EVP_Digest(p, n, out, &l, EVP_sha256(), NULL);
}

static void test_store(void)
{
    char root[1024], paths[8192], key[2048], p[2048];
    struct ws_manifest m;
    struct ws_error err = {0};
    uint8_t *data = NULL, want[32];
    size_t len = 0;

    layout("store", root, sizeof(root));
    snprintf(key, sizeof(key), "%s/keys/key", root);
    snprintf(p, sizeof(p), "%s/etc/sub/fifo", root);
    CHECK(mkfifo(p, 0600) == 0); /* skipped with a warning, never opened */
    snprintf(p, sizeof(p), "%s/etc/sub/link", root);
    CHECK(symlink("/etc/passwd", p) == 0);
    snprintf(paths, sizeof(paths), "%s/etc,%s/keys/../etc/../etc/app.conf", root, root);
    CHECK(store(paths, key, &m, &data, &len, &err) == WS_ERR_CONFIG); /* not normalised */
    ws_manifest_free(&m);
    free(data);
    snprintf(paths, sizeof(paths), "%s/etc", root);
    REQUIRE(store(paths, key, &m, &data, &len, &err) == 0);
    /* etc, etc/app.conf, etc/sub, etc/sub/b: name order, directories before what they hold */
    REQUIRE(m.nextra == 4);
    CHECK(len == 15 && memcmp(data, "setting = 1\nbee", 15) == 0);
    snprintf(p, sizeof(p), "%s/etc", root);
    CHECK(m.extra[0].dir && strcmp(m.extra[0].path, p) == 0 && m.extra[0].mode == 0700);
    CHECK(!m.extra[1].dir && strstr(m.extra[1].path, "/etc/app.conf") && m.extra[1].mode == 0640 &&
          m.extra[1].size == 12 && m.extra[1].offset == 0 && m.extra[1].uid == geteuid());
    sha256("setting = 1\n", 12, want);
    CHECK(memcmp(m.extra[1].sha256, want, 32) == 0);
    CHECK(m.extra[2].dir && strstr(m.extra[2].path, "/etc/sub"));
    CHECK(strstr(m.extra[3].path, "/etc/sub/b") && m.extra[3].offset == 12 &&
          m.extra[3].size == 3 && m.extra[3].mode == 0600);
    ws_manifest_free(&m);
    free(data);
    /* the key reached under another name (a hard link in a listed directory): refused */
    snprintf(p, sizeof(p), "%s/etc/sub/key-copy", root);
    REQUIRE(link(key, p) == 0);
    CHECK(store(paths, key, &m, &data, &len, &err) == WS_ERR_CONFIG &&
          strstr(err.msg, "key-copy") && strstr(err.msg, "lost with them"));
    ws_manifest_free(&m);
    free(data);
}

const struct unit_test unit_tests[] = {
    {"refusals", test_refusals},
    {"store", test_store},
    {NULL, NULL},
};
