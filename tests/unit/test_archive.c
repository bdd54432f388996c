/*
 * wal-push and wal-fetch as library calls (archive.h) against a posix repository in a scratch
 * directory, with synthetic 1 MiB WAL segments: round trips with and without compression and
 * encryption, duplicates, conflicts, foreign systems, invalid files, missing and corrupt objects,
 * and .history files. On every fetch failure DEST_PATH must stay absent (or untouched) with no
 * temp file left beside it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archive/archive.h"
#include "base/config.h"
#include "io/fingerprint.h"
#include "io/key.h"
#include "io/object.h"
#include "pg/wal.h"
#include "repo/repo.h"
#include "storage/storage.h"
#include "fixture.h"
#include "unit.h"

#define SEG UNIT_SEG
#define SYSID1 UNIT_SYSID
#define SYSID2 UINT64_C(7111111111111111112)
#define PLAIN_TRAILER 80

static const char KEYHEX[] = UNIT_KEYHEX;
static const char KEYHEX2[] = "aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbccccccccccccccccdddddddddddddddd";

/* The fixture's calls (fixture.h) under the names the tests below use. */
#define write_all unit_write
#define exists unit_exists
#define same_file unit_same_file
#define entries unit_entries
#define count_matching unit_count_named
#define seg_opts unit_seg
#define make_segment unit_wal_segment
#define make_segment_ex unit_wal_segment_ex

struct file {
    uint8_t *data;
    size_t len;
};

static void file_free(struct file *f)
{
    free(f->data);
    f->data = NULL;
    f->len = 0;
}

static int read_all(const char *path, struct file *f)
{
    return unit_read(path, &f->data, &f->len);
}

/* A fresh directory under the scratch directory. */
static const char *fresh_dir(const char *name)
{
    static char bufs[16][512];
    static int next;
    char *p = bufs[next++ % 16];

    if (unit_path(p, 512, "%s", name) != 0 || unit_mkdir(p) != 0)
        p[0] = '\0';
    return p;
}

static void seg_name(uint64_t segno, char name[WS_WAL_NAME_LEN + 1])
{
    ws_wal_format_name(name, 1, segno, SEG);
}

/* ---- configuration ---- */

struct env {
    struct ws_config cfg;
    char repo[512];
    char cluster[65];
    char wal[512];     /* where segments are made */
    char restore[512]; /* where fetched files go */
};

/* A key file under the scratch directory. */
static const char *key_file(const char *hex, const char *name)
{
    static char paths[4][512];
    static int next;
    char *p = paths[next++ % 4];

    if (unit_path(p, 512, "%s", name) != 0 || unit_key_file(p, hex) != 0)
        p[0] = '\0';
    return p;
}

static int setup(struct env *e, const char *tag, const char *compress, const char *keyfile,
                 const char *parallel)
{
    char sub[128];

    memset(e, 0, sizeof(*e));
    snprintf(sub, sizeof(sub), "repo-%s", tag);
    snprintf(e->repo, sizeof(e->repo), "%s", fresh_dir(sub));
    snprintf(sub, sizeof(sub), "wal-%s", tag);
    snprintf(e->wal, sizeof(e->wal), "%s", fresh_dir(sub));
    snprintf(sub, sizeof(sub), "restore-%s", tag);
    snprintf(e->restore, sizeof(e->restore), "%s", fresh_dir(sub));
    snprintf(e->cluster, sizeof(e->cluster), "cl-%s", tag);
    return unit_config(&e->cfg, "repo", e->repo, "cluster", e->cluster, "compress", compress,
                       "parallel", parallel, "encrypt_key_file", keyfile, NULL);
}

static void object_path(const struct env *e, const char *walname, char *out, size_t outsz)
{
    if (strstr(walname, ".history"))
        snprintf(out, outsz, "%s/%s/wal/%s", e->repo, e->cluster, walname);
    else
        snprintf(out, outsz, "%s/%s/wal/%.16s/%s", e->repo, e->cluster, walname, walname);
}

static void dest_path(const struct env *e, const char *name, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s/%s", e->restore, name);
}

/* ---- tests ---- */

static void roundtrip(const char *compress, int encrypt, const char *parallel)
{
    struct env e;
    struct ws_error err = {0};
    struct ws_push_result res;
    char tag[64], seg[600], dest[600], obj[700], name[WS_WAL_NAME_LEN + 1];
    static const uint64_t segnos[] = {1, 4096, 4097};
    struct file stored;

    snprintf(tag, sizeof(tag), "rt-%s-%d-%s", compress, encrypt, parallel);
    REQUIRE(setup(&e, tag, compress, encrypt ? key_file(KEYHEX, "rt.key") : NULL, parallel) == 0);
    for (size_t i = 0; i < sizeof(segnos) / sizeof(segnos[0]); i++) {
        seg_name(segnos[i], name);
        REQUIRE(make_segment(e.wal, segnos[i], SYSID1, (uint32_t)(100 + i), seg, sizeof(seg)) == 0);
        memset(&err, 0, sizeof(err));
        if (ws_archive_push(&e.cfg, seg, &res, &err) != 0)
            unit_fail(__FILE__, __LINE__, err.msg);
        CHECK(res.duplicate == 0);
        CHECK(res.bytes == SEG);

        object_path(&e, name, obj, sizeof(obj));
        REQUIRE(read_all(obj, &stored) == 0);
        CHECK(res.stored_bytes == stored.len);
        CHECK(stored.len > 64 && memcmp(stored.data, "WSAFEOBJ", 8) == 0);
        /* zstd: independent frames, format version 3 */
        CHECK(stored.data[9] == (strcmp(compress, "zstd") == 0 ? WS_OBJECT_ZSTD_FRAMES : 0));
        CHECK(stored.data[8] == (strcmp(compress, "zstd") == 0 ? 3 : 2));
        CHECK(stored.data[10] == (encrypt ? 1 : 0));
        if (!encrypt && strcmp(compress, "none") == 0)
            CHECK(stored.len == 64 + SEG + PLAIN_TRAILER);
        {
            struct stat st;
            CHECK(stat(obj, &st) == 0 && (st.st_mode & 07777) == 0600);
        }
        file_free(&stored);

        dest_path(&e, name, dest, sizeof(dest));
        memset(&err, 0, sizeof(err));
        if (ws_archive_fetch(&e.cfg, name, dest, &err) != 0)
            unit_fail(__FILE__, __LINE__, err.msg);
        CHECK(same_file(seg, dest));
    }
    /* only the fetched files in the restore directory: no temp files */
    CHECK(entries(e.restore) == 3);
    CHECK(count_matching(e.repo, ".walsafe-tmp") == 0);
    /* the identity was recorded */
    {
        char id[700];
        snprintf(id, sizeof(id), "%s/%s/identity", e.repo, e.cluster);
        CHECK(exists(id));
    }
    ws_config_free(&e.cfg);
}

static void test_roundtrip(void)
{
    roundtrip("none", 0, "1");
    roundtrip("zstd", 0, "1");
    roundtrip("none", 1, "1");
    roundtrip("zstd", 1, "1");
    roundtrip("zstd", 1, "4"); /* zstd worker threads */
}

static void test_duplicate_and_conflict(void)
{
    for (int encrypt = 0; encrypt <= 1; encrypt++) {
        struct env e;
        struct ws_error err = {0};
        struct ws_push_result res;
        struct file before, after;
        char seg[600], other_dir[600], other[600], obj[700], dest[600];
        char name[WS_WAL_NAME_LEN + 1];

        REQUIRE(setup(&e, encrypt ? "dup-enc" : "dup", "zstd",
                      encrypt ? key_file(KEYHEX, "dup.key") : NULL, "1") == 0);
        seg_name(5, name);
        REQUIRE(make_segment(e.wal, 5, SYSID1, 5, seg, sizeof(seg)) == 0);
        REQUIRE(ws_archive_push(&e.cfg, seg, &res, &err) == 0);
        object_path(&e, name, obj, sizeof(obj));
        REQUIRE(read_all(obj, &before) == 0);

        /* identical content again: success, marked as duplicate, object untouched */
        memset(&res, 0xFF, sizeof(res));
        CHECK(ws_archive_push(&e.cfg, seg, &res, &err) == 0);
        CHECK(res.duplicate == 1);
        CHECK(res.bytes == SEG);
        REQUIRE(read_all(obj, &after) == 0);
        CHECK(after.len == before.len && memcmp(after.data, before.data, before.len) == 0);
        file_free(&after);
        /* also after compress changed: the content digest is what counts */
        REQUIRE(ws_config_set(&e.cfg, "compress", "none", "t", &err) == 0);
        memset(&res, 0, sizeof(res));
        CHECK(ws_archive_push(&e.cfg, seg, &res, &err) == 0);
        CHECK(res.duplicate == 1);
        REQUIRE(ws_config_set(&e.cfg, "compress", "zstd", "t", &err) == 0);

        /* different content under the same name: refused, stored copy kept */
        snprintf(other_dir, sizeof(other_dir), "%s/other", e.wal);
        REQUIRE(mkdir(other_dir, 0700) == 0);
        REQUIRE(make_segment(other_dir, 5, SYSID1, 6, other, sizeof(other)) == 0);
        memset(&err, 0, sizeof(err));
        CHECK(ws_archive_push(&e.cfg, other, &res, &err) == WS_ERR_CONFLICT);
        CHECK(strstr(err.msg, other) != NULL);
        CHECK(res.duplicate == 0);
        REQUIRE(read_all(obj, &after) == 0);
        CHECK(after.len == before.len && memcmp(after.data, before.data, before.len) == 0);
        file_free(&after);
        CHECK(count_matching(e.repo, ".walsafe-tmp") == 0);

        /* and fetch still returns the original */
        dest_path(&e, name, dest, sizeof(dest));
        CHECK(ws_archive_fetch(&e.cfg, name, dest, &err) == 0);
        CHECK(same_file(seg, dest));
        file_free(&before);
        ws_config_free(&e.cfg);
    }
}

/* Stores `path` under its WAL key as a walsafe from before XXH3-128 digests did: format 1, the
 * content's SHA-256 in the footer. */
static int put_sha256_object(const struct env *e, const char *path, const char *name)
{
    struct ws_error err = {0};
    struct ws_repo repo = {0};
    struct ws_keyring kr = {0};
    struct ws_object_params p = {0};
    struct ws_sink *put = NULL, *w = NULL;
    struct stat st;
    char key[256];
    int fd = open(path, O_RDONLY), rc = -1;

    if (fd < 0 || fstat(fd, &st) != 0 || ws_keyring_load(&e->cfg, &kr, &err) != 0 ||
        ws_repo_open(&e->cfg, &repo, &err) != 0 ||
        ws_repo_wal_key(&repo, name, key, sizeof(key)) != 0 ||
        ws_storage_open_put(repo.st, key, 0, &put, &err) != 0)
        goto out;
    p.name = key;
    p.compress = WS_COMPRESS_ZSTD;
    p.level = 3;
    p.content_size = st.st_size;
    p.key = ws_keyring_write_key(&kr);
    p.digest = WS_DIGEST_SHA256;
    rc = ws_object_writer_new(put, &p, &w, &err);
    put = NULL;
    if (rc != 0 || (rc = ws_sink_write_file(w, fd, path, &err)) != 0 ||
        (rc = ws_sink_finish(w, &err)) != 0)
        rc = -1;
out:
    if (err.msg[0])
        fprintf(stderr, "    put_sha256_object: %s\n", err.msg);
    ws_sink_free(w);
    ws_sink_free(put);
    ws_repo_close(&repo);
    ws_keyring_wipe(&kr);
    if (fd >= 0)
        close(fd);
    return rc;
}

/* WAL objects carry an XXH3-128 content digest (format 3); one stored with a SHA-256 digest by an
 * older walsafe is still compared correctly, and still fetched. */
static void test_duplicate_across_digests(void)
{
    for (int encrypt = 0; encrypt <= 1; encrypt++) {
        struct env e;
        struct ws_error err = {0};
        struct ws_push_result res;
        struct file obj, before, after;
        char seg[600], seg2[600], other_dir[600], other[600], path[700], dest[600];
        char name[WS_WAL_NAME_LEN + 1], name2[WS_WAL_NAME_LEN + 1];
        uint8_t fp[WS_FINGERPRINT_SIZE];

        REQUIRE(setup(&e, encrypt ? "digests-enc" : "digests", "zstd",
                      encrypt ? key_file(KEYHEX, "digests.key") : NULL, "1") == 0);
        /* a new push: format 3 (zstd frames), digest 1, the fingerprint of the content */
        seg_name(4, name2);
        REQUIRE(make_segment(e.wal, 4, SYSID1, 4, seg2, sizeof(seg2)) == 0);
        REQUIRE(ws_archive_push(&e.cfg, seg2, &res, &err) == 0);
        object_path(&e, name2, path, sizeof(path));
        REQUIRE(read_all(path, &obj) == 0);
        CHECK(obj.data[8] == 3 && obj.data[11] == WS_DIGEST_XXH3_128);
        REQUIRE(read_all(seg2, &before) == 0);
        ws_fingerprint(before.data, before.len, fp);
        CHECK(res.digest == WS_DIGEST_XXH3_128 && memcmp(res.content_digest, fp, sizeof(fp)) == 0);
        {
            static const uint8_t zero[WS_OBJECT_DIGEST_SIZE - WS_FINGERPRINT_SIZE];
            CHECK(memcmp(res.content_digest + WS_FINGERPRINT_SIZE, zero, sizeof(zero)) == 0);
        }
        file_free(&before);
        file_free(&obj);

        /* an older object: format 1, SHA-256 */
        seg_name(5, name);
        REQUIRE(make_segment(e.wal, 5, SYSID1, 5, seg, sizeof(seg)) == 0);
        REQUIRE(put_sha256_object(&e, seg, name) == 0);
        object_path(&e, name, path, sizeof(path));
        REQUIRE(read_all(path, &before) == 0);
        CHECK(before.data[8] == 1 && before.data[11] == WS_DIGEST_SHA256);

        /* the same content pushed now: recognised (its SHA-256 recomputed), object untouched */
        memset(&res, 0, sizeof(res));
        CHECK(ws_archive_push(&e.cfg, seg, &res, &err) == 0);
        CHECK(res.duplicate == 1 && res.bytes == SEG);
        REQUIRE(read_all(path, &after) == 0);
        CHECK(after.len == before.len && memcmp(after.data, before.data, before.len) == 0);
        file_free(&after);

        /* different content under its name: refused, the stored copy kept */
        snprintf(other_dir, sizeof(other_dir), "%s/other", e.wal);
        REQUIRE(mkdir(other_dir, 0700) == 0);
        REQUIRE(make_segment(other_dir, 5, SYSID1, 6, other, sizeof(other)) == 0);
        memset(&err, 0, sizeof(err));
        CHECK(ws_archive_push(&e.cfg, other, &res, &err) == WS_ERR_CONFLICT);
        CHECK(strstr(err.msg, other) != NULL);
        REQUIRE(read_all(path, &after) == 0);
        CHECK(after.len == before.len && memcmp(after.data, before.data, before.len) == 0);
        file_free(&after);
        file_free(&before);

        /* both formats fetch back byte-identical */
        dest_path(&e, name, dest, sizeof(dest));
        CHECK(ws_archive_fetch(&e.cfg, name, dest, &err) == 0);
        CHECK(same_file(seg, dest));
        dest_path(&e, name2, dest, sizeof(dest));
        CHECK(ws_archive_fetch(&e.cfg, name2, dest, &err) == 0);
        CHECK(same_file(seg2, dest));
        ws_config_free(&e.cfg);
    }
}

static void test_foreign(void)
{
    struct env e;
    struct ws_error err = {0};
    struct ws_push_result res;
    char seg[600], obj[700], name[WS_WAL_NAME_LEN + 1], id1[32], id2[32];

    REQUIRE(setup(&e, "foreign", "zstd", NULL, "1") == 0);
    REQUIRE(make_segment(e.wal, 1, SYSID1, 1, seg, sizeof(seg)) == 0);
    REQUIRE(ws_archive_push(&e.cfg, seg, &res, &err) == 0);

    /* another system's segment */
    REQUIRE(make_segment(e.wal, 2, SYSID2, 2, seg, sizeof(seg)) == 0);
    memset(&err, 0, sizeof(err));
    CHECK(ws_archive_push(&e.cfg, seg, &res, &err) == WS_ERR_FOREIGN);
    snprintf(id1, sizeof(id1), "%" PRIu64, SYSID1);
    snprintf(id2, sizeof(id2), "%" PRIu64, SYSID2);
    CHECK(strstr(err.msg, id1) != NULL);
    CHECK(strstr(err.msg, id2) != NULL);
    seg_name(2, name);
    object_path(&e, name, obj, sizeof(obj));
    CHECK(!exists(obj));

    /* the same system with another segment size */
    {
        struct seg_opts o = {0xD110, 2u << 20, 2u << 20, 2, SYSID1};
        char dir2[600];
        snprintf(dir2, sizeof(dir2), "%s/big", e.wal);
        REQUIRE(mkdir(dir2, 0700) == 0);
        /* segment 2 of 2 MiB segments has the name of segment 2 of 1 MiB ones */
        REQUIRE(make_segment_ex(dir2, 2, 3, &o, seg, sizeof(seg)) == 0);
        memset(&err, 0, sizeof(err));
        CHECK(ws_archive_push(&e.cfg, seg, &res, &err) == WS_ERR_FOREIGN);
        CHECK(!exists(obj));
    }
    /* another PostgreSQL version */
    {
        struct seg_opts o = {0xD113, SEG, SEG, 2, SYSID1};
        REQUIRE(make_segment_ex(e.wal, 2, 4, &o, seg, sizeof(seg)) == 0);
        memset(&err, 0, sizeof(err));
        CHECK(ws_archive_push(&e.cfg, seg, &res, &err) == WS_ERR_FOREIGN);
        CHECK(!exists(obj));
    }
    CHECK(count_matching(e.repo, ".walsafe-tmp") == 0);
    ws_config_free(&e.cfg);
}

static void test_invalid_segments(void)
{
    struct env e;
    struct ws_error err = {0};
    struct ws_push_result res;
    char seg[600], obj[700], name[WS_WAL_NAME_LEN + 1], id[700];
    static const struct {
        struct seg_opts o;
        const char *what;
    } cases[] = {
        {{0xD110, SEG, SEG - 1, 3, SYSID1}, "truncated"},
        {{0xD110, SEG, SEG + 8192, 3, SYSID1}, "too long"},
        {{0xD110, SEG, 20, 3, SYSID1}, "tiny"},
        {{0xD110, SEG, 0, 3, SYSID1}, "empty"},
        {{0xD110, 2u << 20, SEG, 3, SYSID1}, "header says 2 MiB"},
        {{0xD110, 3u << 20, 3u << 20, 3, SYSID1}, "not a power of two"},
        {{0xD110, SEG, SEG, 4, SYSID1}, "page address of another segment"},
        {{0x1234, SEG, SEG, 3, SYSID1}, "bad magic"},
    };

    REQUIRE(setup(&e, "invalid", "zstd", NULL, "1") == 0);
    seg_name(3, name);
    object_path(&e, name, obj, sizeof(obj));
    snprintf(id, sizeof(id), "%s/%s/identity", e.repo, e.cluster);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        REQUIRE(make_segment_ex(e.wal, 3, (uint32_t)i, &cases[i].o, seg, sizeof(seg)) == 0);
        memset(&err, 0, sizeof(err));
        CHECK(ws_archive_push(&e.cfg, seg, &res, &err) == WS_ERR_INVALID);
        if (err.code != WS_ERR_INVALID)
            fprintf(stderr, "    %s: %s: %s\n", cases[i].what, ws_code_name(err.code), err.msg);
        CHECK(strstr(err.msg, seg) != NULL || strstr(err.msg, name) != NULL);
        CHECK(!exists(obj));
        /* nothing was recorded from an invalid file */
        CHECK(!exists(id));
    }
    /* a file that is not named like a WAL file */
    {
        char bad[600];
        snprintf(bad, sizeof(bad), "%s/RECOVERYXLOG", e.wal);
        REQUIRE(write_all(bad, "x", 1, 0600) == 0);
        CHECK(ws_archive_push(&e.cfg, bad, &res, &err) == WS_ERR_INVALID);
        snprintf(bad, sizeof(bad), "%s/missing/000000010000000000000003", e.wal);
        CHECK(ws_archive_push(&e.cfg, bad, &res, &err) == WS_ERR_IO);
    }
    CHECK(count_matching(e.repo, ".walsafe-tmp") == 0);
    ws_config_free(&e.cfg);
}

static void test_fetch_missing(void)
{
    struct env e;
    struct ws_error err = {0};
    struct ws_push_result res;
    char seg[600], dest[600], name[WS_WAL_NAME_LEN + 1];

    REQUIRE(setup(&e, "missing", "zstd", NULL, "1") == 0);
    REQUIRE(make_segment(e.wal, 1, SYSID1, 1, seg, sizeof(seg)) == 0);
    REQUIRE(ws_archive_push(&e.cfg, seg, &res, &err) == 0);

    /* a segment never archived: "not in the archive" */
    seg_name(99, name);
    dest_path(&e, "RECOVERYXLOG", dest, sizeof(dest));
    memset(&err, 0, sizeof(err));
    CHECK(ws_archive_fetch(&e.cfg, name, dest, &err) == WS_ERR_NOT_FOUND);
    CHECK(strstr(err.msg, name) != NULL);
    CHECK(!exists(dest));
    CHECK(entries(e.restore) == 0);
    /* also a history file and a segment of another timeline directory */
    CHECK(ws_archive_fetch(&e.cfg, "00000005.history", dest, &err) == WS_ERR_NOT_FOUND);
    CHECK(ws_archive_fetch(&e.cfg, "000000050000000000000001", dest, &err) == WS_ERR_NOT_FOUND);
    CHECK(!exists(dest));
    CHECK(entries(e.restore) == 0);

    /* a cluster that holds nothing (no identity) is a configuration problem, not "missing" */
    {
        struct ws_error err2 = {0};
        struct ws_config cfg2;
        int rc;
        ws_config_init(&cfg2);
        REQUIRE(ws_config_set(&cfg2, "repo", e.repo, "t", &err2) == 0);
        REQUIRE(ws_config_set(&cfg2, "cluster", "nosuchcluster", "t", &err2) == 0);
        seg_name(1, name);
        rc = ws_archive_fetch(&cfg2, name, dest, &err2);
        CHECK(rc != 0 && rc != WS_ERR_NOT_FOUND);
        CHECK(!exists(dest));
        ws_config_free(&cfg2);
    }
    /* a repository that is not there (unmounted) is not "missing" either */
    {
        struct ws_error err2 = {0};
        struct ws_config cfg2;
        char gone[600];
        int rc;
        snprintf(gone, sizeof(gone), "%s/not-mounted", unit_tmpdir());
        ws_config_init(&cfg2);
        REQUIRE(ws_config_set(&cfg2, "repo", gone, "t", &err2) == 0);
        REQUIRE(ws_config_set(&cfg2, "cluster", e.cluster, "t", &err2) == 0);
        rc = ws_archive_fetch(&cfg2, name, dest, &err2);
        CHECK(rc != 0 && rc != WS_ERR_NOT_FOUND);
        CHECK(!exists(dest));
        ws_config_free(&cfg2);
    }
    /* names that are not WAL files */
    CHECK(ws_archive_fetch(&e.cfg, "../000000010000000000000001", dest, &err) == WS_ERR_USAGE);
    CHECK(ws_archive_fetch(&e.cfg, "pg_control", dest, &err) == WS_ERR_USAGE);
    CHECK(!exists(dest));
    CHECK(entries(e.restore) == 0);
    ws_config_free(&e.cfg);
}

/* Damage the stored object in several ways; fetch must fail with CORRUPT and leave no file. */
static void test_fetch_corrupt(void)
{
    for (int encrypt = 0; encrypt <= 1; encrypt++) {
        for (int compress = 0; compress <= 1; compress++) {
            struct env e;
            struct ws_error err = {0};
            struct ws_push_result res;
            struct file orig, other;
            char tag[32], seg[600], seg2[600], obj[700], obj2[700], dest[600];
            char name[WS_WAL_NAME_LEN + 1], name2[WS_WAL_NAME_LEN + 1];

            snprintf(tag, sizeof(tag), "corrupt-%d-%d", encrypt, compress);
            REQUIRE(setup(&e, tag, compress ? "zstd" : "none",
                          encrypt ? key_file(KEYHEX, "corrupt.key") : NULL, "1") == 0);
            REQUIRE(make_segment(e.wal, 7, SYSID1, 7, seg, sizeof(seg)) == 0);
            REQUIRE(make_segment(e.wal, 8, SYSID1, 8, seg2, sizeof(seg2)) == 0);
            REQUIRE(ws_archive_push(&e.cfg, seg, &res, &err) == 0);
            REQUIRE(ws_archive_push(&e.cfg, seg2, &res, &err) == 0);
            seg_name(7, name);
            seg_name(8, name2);
            object_path(&e, name, obj, sizeof(obj));
            object_path(&e, name2, obj2, sizeof(obj2));
            REQUIRE(read_all(obj, &orig) == 0);
            REQUIRE(read_all(obj2, &other) == 0);

            for (int how = 0; how < 7; how++) {
                struct file f;
                size_t len = orig.len;
                int rc;
                f.data = malloc(orig.len + 100);
                REQUIRE(f.data);
                memcpy(f.data, orig.data, orig.len);
                switch (how) {
                case 0:
                    f.data[orig.len / 2] ^= 0x04;
                    break; /* body */
                case 1:
                    f.data[10] ^= 0x01;
                    break; /* header */
                case 2:
                    f.data[orig.len - 3] ^= 0x80;
                    break; /* trailer */
                case 3:
                    len = orig.len - 1;
                    break; /* truncated */
                case 4:
                    f.data[len++] = 0;
                    break; /* appended */
                case 5:
                    len = orig.len - 64 - 16 - 1000;
                    break; /* cut mid-body */
                case 6:    /* another segment's object under this name */
                    free(f.data);
                    f.data = malloc(other.len);
                    REQUIRE(f.data);
                    memcpy(f.data, other.data, other.len);
                    len = other.len;
                    break;
                }
                REQUIRE(write_all(obj, f.data, len, 0600) == 0);
                free(f.data);

                /* with no file at DEST_PATH */
                dest_path(&e, "RECOVERYXLOG", dest, sizeof(dest));
                memset(&err, 0, sizeof(err));
                rc = ws_archive_fetch(&e.cfg, name, dest, &err);
                CHECK(rc == WS_ERR_CORRUPT);
                if (rc != WS_ERR_CORRUPT)
                    fprintf(stderr, "    encrypt=%d compress=%d how=%d: %s: %s\n", encrypt,
                            compress, how, ws_code_name(rc), err.msg);
                CHECK(strstr(err.msg, name) != NULL);
                CHECK(!exists(dest));
                CHECK(entries(e.restore) == 0); /* no temp file beside DEST_PATH */

                /* with an older file at DEST_PATH: left as it was */
                REQUIRE(write_all(dest, "previous", 8, 0600) == 0);
                rc = ws_archive_fetch(&e.cfg, name, dest, &err);
                CHECK(rc == WS_ERR_CORRUPT);
                {
                    struct file now;
                    CHECK(read_all(dest, &now) == 0 && now.len == 8 &&
                          memcmp(now.data, "previous", 8) == 0);
                    file_free(&now);
                }
                CHECK(entries(e.restore) == 1);
                unlink(dest);
            }
            /* restored: fetch works again */
            REQUIRE(write_all(obj, orig.data, orig.len, 0600) == 0);
            dest_path(&e, name, dest, sizeof(dest));
            CHECK(ws_archive_fetch(&e.cfg, name, dest, &err) == 0);
            CHECK(same_file(seg, dest));
            file_free(&orig);
            file_free(&other);
            ws_config_free(&e.cfg);
        }
    }
}

static void test_keys(void)
{
    struct env e;
    struct ws_error err = {0};
    struct ws_push_result res;
    char seg[600], dest[600], name[WS_WAL_NAME_LEN + 1];
    const char *k1 = key_file(KEYHEX, "keys1.key"), *k2 = key_file(KEYHEX2, "keys2.key");

    REQUIRE(setup(&e, "keys", "zstd", k1, "1") == 0);
    REQUIRE(make_segment(e.wal, 1, SYSID1, 1, seg, sizeof(seg)) == 0);
    REQUIRE(ws_archive_push(&e.cfg, seg, &res, &err) == 0);
    seg_name(1, name);
    dest_path(&e, name, dest, sizeof(dest));

    /* no key configured */
    free(e.cfg.encrypt_key_file);
    e.cfg.encrypt_key_file = NULL;
    memset(&err, 0, sizeof(err));
    CHECK(ws_archive_fetch(&e.cfg, name, dest, &err) == WS_ERR_KEY);
    CHECK(!exists(dest) && entries(e.restore) == 0);
    /* another key */
    REQUIRE(ws_config_set(&e.cfg, "encrypt_key_file", k2, "t", &err) == 0);
    CHECK(ws_archive_fetch(&e.cfg, name, dest, &err) == WS_ERR_KEY);
    CHECK(!exists(dest) && entries(e.restore) == 0);
    /* after rotation: new write key, old one for reading */
    REQUIRE(ws_config_set(&e.cfg, "decrypt_key_files", k1, "t", &err) == 0);
    CHECK(ws_archive_fetch(&e.cfg, name, dest, &err) == 0);
    CHECK(same_file(seg, dest));
    /* re-pushing the old segment after rotation is still recognised as a duplicate */
    CHECK(ws_archive_push(&e.cfg, seg, &res, &err) == 0);
    CHECK(res.duplicate == 1);
    /* a key file readable by others is a configuration error */
    {
        const char *open_key = key_file(KEYHEX2, "keys-open.key");
        REQUIRE(chmod(open_key, 0644) == 0);
        REQUIRE(ws_config_set(&e.cfg, "encrypt_key_file", open_key, "t", &err) == 0);
        unlink(dest);
        CHECK(ws_archive_fetch(&e.cfg, name, dest, &err) == WS_ERR_CONFIG);
        CHECK(!exists(dest));
        CHECK(ws_archive_push(&e.cfg, seg, &res, &err) == WS_ERR_CONFIG);
    }
    ws_config_free(&e.cfg);
}

static void test_history(void)
{
    for (int encrypt = 0; encrypt <= 1; encrypt++) {
        struct env e;
        struct ws_error err = {0};
        struct ws_push_result res;
        char hist[600], dest[600], obj[700], seg[600];
        struct file before, after;
        static const char text[] = "1\t0/3000000\tno recovery target specified\n";
        static const char text2[] = "1\t0/4000000\tno recovery target specified\n";

        REQUIRE(setup(&e, encrypt ? "hist-enc" : "hist", "zstd",
                      encrypt ? key_file(KEYHEX, "hist.key") : NULL, "1") == 0);
        /* before any segment (no identity yet) and after one */
        snprintf(hist, sizeof(hist), "%s/00000002.history", e.wal);
        REQUIRE(write_all(hist, text, strlen(text), 0600) == 0);
        memset(&err, 0, sizeof(err));
        if (ws_archive_push(&e.cfg, hist, &res, &err) != 0)
            unit_fail(__FILE__, __LINE__, err.msg);
        CHECK(res.duplicate == 0 && res.bytes == strlen(text));
        REQUIRE(make_segment(e.wal, 1, SYSID1, 1, seg, sizeof(seg)) == 0);
        REQUIRE(ws_archive_push(&e.cfg, seg, &res, &err) == 0);

        object_path(&e, "00000002.history", obj, sizeof(obj));
        REQUIRE(read_all(obj, &before) == 0);
        CHECK(before.data[10] == (encrypt ? 1 : 0));

        dest_path(&e, "00000002.history", dest, sizeof(dest));
        CHECK(ws_archive_fetch(&e.cfg, "00000002.history", dest, &err) == 0);
        CHECK(same_file(hist, dest));

        /* the same again: a duplicate */
        CHECK(ws_archive_push(&e.cfg, hist, &res, &err) == 0);
        CHECK(res.duplicate == 1);

        /* different content: never replaced */
        REQUIRE(write_all(hist, text2, strlen(text2), 0600) == 0);
        memset(&err, 0, sizeof(err));
        CHECK(ws_archive_push(&e.cfg, hist, &res, &err) == WS_ERR_CONFLICT);
        /* not even by one that is only longer */
        {
            char longer[200];
            snprintf(longer, sizeof(longer), "%s2\t0/5000000\tbefore 2024-01-01\n", text);
            REQUIRE(write_all(hist, longer, strlen(longer), 0600) == 0);
            CHECK(ws_archive_push(&e.cfg, hist, &res, &err) == WS_ERR_CONFLICT);
        }
        REQUIRE(read_all(obj, &after) == 0);
        CHECK(after.len == before.len && memcmp(after.data, before.data, before.len) == 0);
        file_free(&after);
        file_free(&before);
        unlink(dest);
        CHECK(ws_archive_fetch(&e.cfg, "00000002.history", dest, &err) == 0);
        {
            struct file f;
            CHECK(read_all(dest, &f) == 0 && f.len == strlen(text) &&
                  memcmp(f.data, text, f.len) == 0);
            file_free(&f);
        }
        CHECK(count_matching(e.repo, ".walsafe-tmp") == 0);
        ws_config_free(&e.cfg);
    }
}

/*
 * .history files carry no system identifier; when run from a data directory (PostgreSQL's
 * working directory for archive_command) its pg_control is checked against the identity.
 */
static void test_history_foreign_datadir(void)
{
    struct env e;
    struct ws_error err = {0};
    struct ws_push_result res;
    char seg[600], hist[600], pgdata[600], ctl[700], cwd[1024], obj[700], id1[32], id2[32];
    uint8_t control[512];
    uint64_t sysid;

    REQUIRE(getcwd(cwd, sizeof(cwd)) != NULL);
    REQUIRE(setup(&e, "histdd", "zstd", NULL, "1") == 0);
    REQUIRE(make_segment(e.wal, 1, SYSID1, 1, seg, sizeof(seg)) == 0);
    REQUIRE(ws_archive_push(&e.cfg, seg, &res, &err) == 0);
    snprintf(hist, sizeof(hist), "%s/00000003.history", e.wal);
    REQUIRE(write_all(hist, "2\t0/5000000\tno recovery target specified\n", 42, 0600) == 0);
    object_path(&e, "00000003.history", obj, sizeof(obj));

    snprintf(pgdata, sizeof(pgdata), "%s", fresh_dir("histdd-pgdata"));
    snprintf(ctl, sizeof(ctl), "%s/global", pgdata);
    REQUIRE(mkdir(ctl, 0700) == 0);
    snprintf(ctl, sizeof(ctl), "%s/global/pg_control", pgdata);
    unit_random(control, sizeof(control), 3);

    /* the data directory of another system */
    sysid = SYSID2;
    memcpy(control, &sysid, 8);
    REQUIRE(write_all(ctl, control, sizeof(control), 0600) == 0);
    REQUIRE(chdir(pgdata) == 0);
    memset(&err, 0, sizeof(err));
    CHECK(ws_archive_push(&e.cfg, hist, &res, &err) == WS_ERR_FOREIGN);
    snprintf(id1, sizeof(id1), "%" PRIu64, SYSID1);
    snprintf(id2, sizeof(id2), "%" PRIu64, SYSID2);
    CHECK(strstr(err.msg, id1) != NULL && strstr(err.msg, id2) != NULL);
    CHECK(!exists(obj));

    /* our own */
    sysid = SYSID1;
    memcpy(control, &sysid, 8);
    REQUIRE(write_all(ctl, control, sizeof(control), 0600) == 0);
    CHECK(ws_archive_push(&e.cfg, hist, &res, &err) == 0);
    CHECK(exists(obj));
    CHECK(chdir(cwd) == 0);
    ws_config_free(&e.cfg);
}

/* Stores under the object key of walname an unencrypted zstd object of `bytes` zero bytes. */
static int plant_zeros(const struct env *e, const char *walname, uint64_t bytes)
{
    static const uint8_t zeros[64 * 1024];
    struct ws_storage *st = NULL;
    struct ws_sink *put = NULL, *w = NULL;
    struct ws_object_params p = {0};
    struct ws_error err = {0};
    char key[256];
    int rc;

    if (strstr(walname, ".history"))
        snprintf(key, sizeof(key), "%s/wal/%s", e->cluster, walname);
    else
        snprintf(key, sizeof(key), "%s/wal/%.16s/%s", e->cluster, walname, walname);
    p.name = key;
    p.compress = WS_COMPRESS_ZSTD;
    p.level = 3;
    p.content_size = (int64_t)bytes;
    if ((rc = ws_storage_open(&e->cfg, &st, &err)) != 0 ||
        (rc = ws_storage_open_put(st, key, WS_PUT_REPLACE, &put, &err)) != 0)
        goto out;
    rc = ws_object_writer_new(put, &p, &w, &err);
    put = NULL;
    for (uint64_t done = 0; rc == 0 && done < bytes; done += sizeof(zeros))
        rc = ws_sink_write(w, zeros, bytes - done < sizeof(zeros) ? bytes - done : sizeof(zeros),
                           &err);
    if (rc == 0)
        rc = ws_sink_finish(w, &err);
out:
    if (rc)
        fprintf(stderr, "    plant %s: %s\n", key, err.msg);
    ws_sink_free(w);
    ws_sink_free(put);
    ws_storage_close(st);
    return rc;
}

/* An object that decodes to more than a WAL file of its kind holds is refused before more than
 * that reaches DEST_PATH's temp file: segments and .partial files at the cluster's segment size,
 * .history and .backup files at WS_WAL_SIDE_FILE_MAX. */
static void test_fetch_bounded(void)
{
    struct env e;
    struct ws_error err = {0};
    struct ws_push_result res;
    char seg[600], dest[600], name[WS_WAL_NAME_LEN + 1];
    static const struct {
        int segno;
        const char *suffix;
        uint64_t bytes;
        int ok;
    } cases[] = {
        {2, "", 64 * SEG, 0},
        {3, "", SEG + 1, 0},
        {4, "", SEG, 1}, /* exactly a segment: the cap is inclusive */
        {5, ".partial", SEG + 1, 0},
        {6, ".partial", SEG, 1},
        {7, ".00000028.backup", WS_WAL_SIDE_FILE_MAX + 1, 0},
        {8, ".00000028.backup", 1000, 1},
    };

    REQUIRE(setup(&e, "bounded", "zstd", NULL, "1") == 0);
    REQUIRE(make_segment(e.wal, 1, SYSID1, 1, seg, sizeof(seg)) == 0);
    REQUIRE(ws_archive_push(&e.cfg, seg, &res, &err) == 0);
    dest_path(&e, "RECOVERYXLOG", dest, sizeof(dest));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char n[64];
        int rc;
        seg_name((uint64_t)cases[i].segno, name);
        snprintf(n, sizeof(n), "%s%s", name, cases[i].suffix);
        REQUIRE(plant_zeros(&e, n, cases[i].bytes) == 0);
        memset(&err, 0, sizeof(err));
        rc = ws_archive_fetch(&e.cfg, n, dest, &err);
        if (cases[i].ok) {
            struct stat st;
            CHECK(rc == 0);
            CHECK(stat(dest, &st) == 0 && (uint64_t)st.st_size == cases[i].bytes);
            unlink(dest);
        } else {
            CHECK(rc == WS_ERR_CORRUPT);
            CHECK(strstr(err.msg, "more than") != NULL && strstr(err.msg, n) != NULL);
            CHECK(!exists(dest));
        }
        CHECK(entries(e.restore) == 0);
    }
    snprintf(name, sizeof(name), "00000009.history");
    REQUIRE(plant_zeros(&e, name, WS_WAL_SIDE_FILE_MAX + 1) == 0);
    CHECK(ws_archive_fetch(&e.cfg, name, dest, &err) == WS_ERR_CORRUPT);
    CHECK(!exists(dest) && entries(e.restore) == 0);
    snprintf(name, sizeof(name), "0000000A.history");
    REQUIRE(plant_zeros(&e, name, WS_WAL_SIDE_FILE_MAX) == 0);
    CHECK(ws_archive_fetch(&e.cfg, name, dest, &err) == 0);
    ws_config_free(&e.cfg);
}

/* A missing file is "not in the archive" only when the cluster's identity was read: a damaged
 * one is an error (wal-fetch 255), for segments and for history files alike. */
static void test_fetch_missing_bad_identity(void)
{
    struct env e;
    struct ws_error err = {0};
    struct ws_push_result res;
    char seg[600], dest[600], id[700], name[WS_WAL_NAME_LEN + 1];
    struct file f;

    REQUIRE(setup(&e, "missbadid", "zstd", NULL, "1") == 0);
    REQUIRE(make_segment(e.wal, 1, SYSID1, 1, seg, sizeof(seg)) == 0);
    REQUIRE(ws_archive_push(&e.cfg, seg, &res, &err) == 0);
    dest_path(&e, "RECOVERYXLOG", dest, sizeof(dest));
    seg_name(2, name);
    CHECK(ws_archive_fetch(&e.cfg, name, dest, &err) == WS_ERR_NOT_FOUND);
    snprintf(id, sizeof(id), "%s/%s/identity", e.repo, e.cluster);
    REQUIRE(read_all(id, &f) == 0);
    f.data[f.len / 2] ^= 0x01;
    REQUIRE(write_all(id, f.data, f.len, 0600) == 0);
    file_free(&f);
    memset(&err, 0, sizeof(err));
    CHECK(ws_archive_fetch(&e.cfg, name, dest, &err) == WS_ERR_CORRUPT);
    CHECK(strstr(err.msg, "identity") != NULL);
    memset(&err, 0, sizeof(err));
    CHECK(ws_archive_fetch(&e.cfg, "00000002.history", dest, &err) == WS_ERR_CORRUPT);
    /* an identity that parses but names an impossible segment size bounds nothing: refused */
    {
        struct ws_storage *st = NULL;
        struct ws_sink *put = NULL, *w = NULL;
        struct ws_object_params p = {0};
        char key[128], text[512];
        struct ws_identity bad = {WS_REPO_FORMAT, SYSID1, 15, 12345};
        int n = ws_identity_format(&bad, text, sizeof(text));
        snprintf(key, sizeof(key), "%s/identity", e.cluster);
        p.name = key;
        p.content_size = n;
        REQUIRE(n > 0 && ws_storage_open(&e.cfg, &st, &err) == 0);
        REQUIRE(ws_storage_open_put(st, key, WS_PUT_REPLACE, &put, &err) == 0);
        REQUIRE(ws_object_writer_new(put, &p, &w, &err) == 0);
        CHECK(ws_sink_write(w, text, (size_t)n, &err) == 0 && ws_sink_finish(w, &err) == 0);
        ws_sink_free(w);
        ws_storage_close(st);
        memset(&err, 0, sizeof(err));
        seg_name(1, name);
        CHECK(ws_archive_fetch(&e.cfg, name, dest, &err) == WS_ERR_CORRUPT);
        CHECK(strstr(err.msg, "segment size") != NULL);
    }
    CHECK(!exists(dest) && entries(e.restore) == 0);
    ws_config_free(&e.cfg);
}

/* A directory where a segment's object belongs is damage: never "not in the archive". */
static void test_fetch_directory_at_key(void)
{
    struct env e;
    struct ws_error err = {0};
    struct ws_push_result res;
    char seg[600], dest[600], obj[700], name[WS_WAL_NAME_LEN + 1];

    REQUIRE(setup(&e, "dirkey", "zstd", NULL, "1") == 0);
    REQUIRE(make_segment(e.wal, 1, SYSID1, 1, seg, sizeof(seg)) == 0);
    REQUIRE(ws_archive_push(&e.cfg, seg, &res, &err) == 0);
    seg_name(2, name);
    object_path(&e, name, obj, sizeof(obj));
    REQUIRE(mkdir(obj, 0700) == 0);
    dest_path(&e, "RECOVERYXLOG", dest, sizeof(dest));
    memset(&err, 0, sizeof(err));
    CHECK(ws_archive_fetch(&e.cfg, name, dest, &err) == WS_ERR_CORRUPT);
    CHECK(strstr(err.msg, "directory") != NULL && strstr(err.msg, name) != NULL);
    CHECK(!exists(dest) && entries(e.restore) == 0);
    ws_config_free(&e.cfg);
}

/* A damaged identity object is never silently replaced. */
static void test_damaged_identity(void)
{
    struct env e;
    struct ws_error err = {0};
    struct ws_push_result res;
    char seg[600], id[700];
    struct file f;

    REQUIRE(setup(&e, "badid", "zstd", NULL, "1") == 0);
    REQUIRE(make_segment(e.wal, 1, SYSID1, 1, seg, sizeof(seg)) == 0);
    REQUIRE(ws_archive_push(&e.cfg, seg, &res, &err) == 0);
    snprintf(id, sizeof(id), "%s/%s/identity", e.repo, e.cluster);
    REQUIRE(read_all(id, &f) == 0);
    f.data[f.len / 2] ^= 0x01;
    REQUIRE(write_all(id, f.data, f.len, 0600) == 0);
    REQUIRE(make_segment(e.wal, 2, SYSID1, 2, seg, sizeof(seg)) == 0);
    memset(&err, 0, sizeof(err));
    CHECK(ws_archive_push(&e.cfg, seg, &res, &err) == WS_ERR_CORRUPT);
    {
        struct file now;
        CHECK(read_all(id, &now) == 0 && now.len == f.len && memcmp(now.data, f.data, f.len) == 0);
        file_free(&now);
    }
    file_free(&f);
    ws_config_free(&e.cfg);
}

/* One repository, two clusters: each sees only its own WAL, even with the same names. */
static void test_two_clusters(void)
{
    struct env a, b;
    struct ws_error err = {0};
    struct ws_push_result res;
    char sega[600], segb[600], dest[600], name[WS_WAL_NAME_LEN + 1];

    REQUIRE(setup(&a, "twoA", "zstd", NULL, "1") == 0);
    REQUIRE(setup(&b, "twoB", "zstd", NULL, "1") == 0);
    /* b shares a's repository */
    free(b.cfg.repo);
    b.cfg.repo = strdup(a.repo);
    snprintf(b.repo, sizeof(b.repo), "%s", a.repo);
    REQUIRE(make_segment(a.wal, 1, SYSID1, 1, sega, sizeof(sega)) == 0);
    REQUIRE(make_segment(b.wal, 1, SYSID2, 2, segb, sizeof(segb)) == 0);
    CHECK(ws_archive_push(&a.cfg, sega, &res, &err) == 0);
    CHECK(ws_archive_push(&b.cfg, segb, &res, &err) == 0);
    seg_name(1, name);
    dest_path(&a, name, dest, sizeof(dest));
    CHECK(ws_archive_fetch(&a.cfg, name, dest, &err) == 0 && same_file(sega, dest));
    dest_path(&b, name, dest, sizeof(dest));
    CHECK(ws_archive_fetch(&b.cfg, name, dest, &err) == 0 && same_file(segb, dest));
    /* a's object copied into b's place is detected */
    {
        char oa[700], ob[700];
        struct file f;
        object_path(&a, name, oa, sizeof(oa));
        object_path(&b, name, ob, sizeof(ob));
        REQUIRE(read_all(oa, &f) == 0);
        REQUIRE(write_all(ob, f.data, f.len, 0600) == 0);
        file_free(&f);
        unlink(dest);
        CHECK(ws_archive_fetch(&b.cfg, name, dest, &err) == WS_ERR_CORRUPT);
        CHECK(!exists(dest));
    }
    ws_config_free(&a.cfg);
    ws_config_free(&b.cfg);
}

/* ---- streamed chunks (wal-receive) served by wal-fetch ---- */

/* Stores bytes [start, end) of content as a chunk object of segment name, as wal-receive does. */
static int put_chunk(const struct env *e, const char *name, const uint8_t *content, uint32_t start,
                     uint32_t end)
{
    struct ws_object_params p = {0};
    struct ws_keyring kr = {0};
    struct ws_repo repo = {0};
    struct ws_error err = {0};
    char key[256];
    int rc;

    if (ws_keyring_load(&e->cfg, &kr, &err) != 0 || ws_repo_open(&e->cfg, &repo, &err) != 0)
        return -1;
    p.compress = e->cfg.compress;
    p.key = ws_keyring_write_key(&kr);
    rc = ws_repo_stream_key(&repo, name, start, end, key, sizeof(key)) != 0
             ? -1
             : ws_repo_put_small(&repo, key, content + start, end - start, &p, &err);
    ws_repo_close(&repo);
    ws_keyring_wipe(&kr);
    return rc;
}

static void test_fetch_streamed(void)
{
    struct env e;
    struct ws_error err = {0};
    struct ws_push_result res;
    char seg[600], dest[600], name[WS_WAL_NAME_LEN + 1], keyfile[600], gap[WS_WAL_NAME_LEN + 1];
    uint8_t *content = malloc(UNIT_SEG);
    struct file got = {0};
    int ok = 1;

    REQUIRE(content != NULL);
    REQUIRE(unit_path(keyfile, sizeof(keyfile), "streamed.key") == 0);
    REQUIRE(unit_key_file(keyfile, NULL) == 0);
    REQUIRE(setup(&e, "streamed", "zstd", keyfile, "1") == 0);
    REQUIRE(make_segment(e.wal, 1, SYSID1, 1, seg, sizeof(seg)) == 0);
    REQUIRE(ws_archive_push(&e.cfg, seg, &res, &err) == 0);
    unit_random(content, UNIT_SEG, 7);
    seg_name(2, name);
    /* contiguous chunks (one overlapping the next, as after a reconnect) */
    REQUIRE(put_chunk(&e, name, content, 0, 1000) == 0);
    REQUIRE(put_chunk(&e, name, content, 0, 5000) == 0);
    REQUIRE(put_chunk(&e, name, content, 5000, 70000) == 0);
    dest_path(&e, "RECOVERYXLOG", dest, sizeof(dest));
    CHECK(ws_archive_fetch(&e.cfg, name, dest, &err) == 0);
    REQUIRE(read_all(dest, &got) == 0);
    CHECK(got.len == UNIT_SEG);
    CHECK(got.len == UNIT_SEG && memcmp(got.data, content, 70000) == 0);
    for (size_t i = 70000; got.len == UNIT_SEG && i < UNIT_SEG; i++)
        ok &= got.data[i] == 0;
    CHECK(ok);
    file_free(&got);
    unlink(dest);

    /* a gap: only what is contiguous from offset 0 */
    seg_name(3, gap);
    REQUIRE(put_chunk(&e, gap, content, 0, 100) == 0);
    REQUIRE(put_chunk(&e, gap, content, 200, 300) == 0);
    CHECK(ws_archive_fetch(&e.cfg, gap, dest, &err) == 0);
    REQUIRE(read_all(dest, &got) == 0);
    CHECK(got.len == UNIT_SEG && memcmp(got.data, content, 100) == 0 && got.data[250] == 0);
    file_free(&got);
    unlink(dest);

    /* no chunk at offset 0: not served */
    seg_name(5, gap);
    REQUIRE(put_chunk(&e, gap, content, 100, 200) == 0);
    CHECK(ws_archive_fetch(&e.cfg, gap, dest, &err) == WS_ERR_NOT_FOUND);
    CHECK(!exists(dest));

    /* on a standby (standby.signal in the working directory): never served */
    {
        char cwd[600];
        REQUIRE(getcwd(cwd, sizeof(cwd)) != NULL);
        REQUIRE(chdir(e.restore) == 0);
        REQUIRE(write_all("standby.signal", "", 0, 0600) == 0);
        CHECK(ws_archive_fetch(&e.cfg, name, "RECOVERYXLOG", &err) == WS_ERR_NOT_FOUND);
        CHECK(!exists("RECOVERYXLOG"));
        unlink("standby.signal");
        REQUIRE(chdir(cwd) == 0);
    }

    /* a later segment of the timeline is stored: the chunks are leftovers, not served */
    REQUIRE(make_segment(e.wal, 3, SYSID1, 3, seg, sizeof(seg)) == 0);
    REQUIRE(ws_archive_push(&e.cfg, seg, &res, &err) == 0);
    CHECK(ws_archive_fetch(&e.cfg, name, dest, &err) == WS_ERR_NOT_FOUND);
    CHECK(!exists(dest));
    free(content);
    ws_config_free(&e.cfg);
}

/* A chunk removed between the list and its read (the receiver has just stored the segment whole):
 * a failure worth repeating the fetch for, not "not in the archive". */
static void test_fetch_streamed_vanished(void)
{
    struct ws_error err = {0};
    struct ws_repo repo = {0};
    char name[WS_WAL_NAME_LEN + 1], key[256], dest[600];
    uint8_t bytes[100] = {1};

    REQUIRE(unit_mem_repo(&repo, "main", NULL) == 0);
    seg_name(2, name);
    REQUIRE(ws_repo_stream_key(&repo, name, 0, sizeof(bytes), key, sizeof(key)) == 0);
    REQUIRE(ws_repo_put_small(&repo, key, bytes, sizeof(bytes), NULL, &err) == 0);
    REQUIRE(unit_path(dest, sizeof(dest), "vanished-dest") == 0);
    ws_storage_mem_fault(repo.st, WS_MEM_GET, 1, WS_ERR_NOT_FOUND);
    CHECK(ws_archive_fetch_streamed(&repo, NULL, UNIT_SEG, name, dest, &err) == WS_ERR_STORAGE);
    CHECK(err.retryable == 1 && strstr(err.msg, key) != NULL);
    CHECK(!exists(dest));
    /* the read succeeds: served */
    memset(&err, 0, sizeof(err));
    CHECK(ws_archive_fetch_streamed(&repo, NULL, UNIT_SEG, name, dest, &err) == 0);
    unlink(dest);
    ws_storage_close(repo.st);
}

const struct unit_test unit_tests[] = {
    {"roundtrip", test_roundtrip},
    {"duplicate_and_conflict", test_duplicate_and_conflict},
    {"duplicate_across_digests", test_duplicate_across_digests},
    {"foreign", test_foreign},
    {"invalid_segments", test_invalid_segments},
    {"fetch_missing", test_fetch_missing},
    {"fetch_corrupt", test_fetch_corrupt},
    {"keys", test_keys},
    {"history", test_history},
    {"history_foreign_datadir", test_history_foreign_datadir},
    {"damaged_identity", test_damaged_identity},
    {"two_clusters", test_two_clusters},
    {"fetch_bounded", test_fetch_bounded},
    {"fetch_missing_bad_identity", test_fetch_missing_bad_identity},
    {"fetch_directory_at_key", test_fetch_directory_at_key},
    {"fetch_streamed", test_fetch_streamed},
    {"fetch_streamed_vanished", test_fetch_streamed_vanished},
    {NULL, NULL},
};
