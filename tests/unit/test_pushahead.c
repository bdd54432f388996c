/*
 * Push-ahead (pushahead.h): the archiver's order of ready files, the record's text form and its
 * refusal of every damage, the content binding, and ws_pushahead_push() against a posix
 * repository with a synthetic pg_wal (1 MiB segments, .ready files in archive_status): a batch
 * records exactly what it stored, a later call is answered from a verified record, and a stale,
 * damaged or foreign record, a busy lock, a failing file and an unusable spool never produce a
 * false "archived".
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "archive/archive.h"
#include "archive/pushahead.h"
#include "base/config.h"
#include "base/util.h"
#include "io/fingerprint.h"
#include "io/key.h"
#include "io/sink.h"
#include "pg/wal.h"
#include "fixture.h"
#include "unit.h"

#define SEG UNIT_SEG
#define SYSID1 UNIT_SYSID

/* ---- helpers ---- */

/* The fixture's calls (fixture.h) under the names the tests below use. */
#define exists unit_exists
#define count_entries unit_entries

static int write_file(const char *path, const void *p, size_t n)
{
    return unit_write(path, p, n, 0600);
}

static void seg_name(uint64_t segno, char name[WS_WAL_NAME_LEN + 1])
{
    ws_wal_format_name(name, 1, segno, SEG);
}

/* Segment `segno` of timeline 1 with a valid long page header and pseudo-random content. */
static int make_segment(const char *dir, uint64_t segno, uint32_t seed, char *out, size_t outsz)
{
    return unit_wal_segment(dir, segno, UNIT_SYSID, seed, out, outsz);
}

/* A data directory look-alike with pg_wal/archive_status, a repository and a spool. */
struct env {
    struct ws_config cfg;
    char root[512], wal[600], status[700], repo[600], spool[600], pushed[700], locks[700];
};

static int setup(struct env *e, const char *tag, const char *parallel)
{
    char key[600];

    memset(e, 0, sizeof(*e));
    if (unit_path(e->root, sizeof(e->root), "%s", tag) != 0 || unit_exists(e->root))
        return -1;
    snprintf(e->wal, sizeof(e->wal), "%s/data/pg_wal", e->root);
    snprintf(e->status, sizeof(e->status), "%s/archive_status", e->wal);
    snprintf(e->repo, sizeof(e->repo), "%s/repo", e->root);
    snprintf(e->spool, sizeof(e->spool), "%s/spool", e->root);
    snprintf(e->pushed, sizeof(e->pushed), "%s/main/pushed", e->spool);
    snprintf(e->locks, sizeof(e->locks), "%s/main/pushing", e->spool);
    snprintf(key, sizeof(key), "%s/key", e->root);
    if (unit_mkdir(e->repo) != 0 || unit_mkdir(e->status) != 0 || unit_key_file(key, NULL) != 0)
        return -1;
    return unit_config(&e->cfg, "repo", e->repo, "cluster", "main", "parallel", parallel,
                       "spool_dir", e->spool, "encrypt_key_file", key, NULL);
}

/* Segments first..first+n-1 in pg_wal, each with its .ready. */
static int add_ready(struct env *e, uint64_t first, int n)
{
    for (int i = 0; i < n; i++)
        if (unit_wal_ready(e->wal, first + (uint64_t)i, (uint32_t)(first + (uint64_t)i), NULL) != 0)
            return -1;
    return 0;
}

/* What the archiver does after a 0: .ready becomes .done. */
static void mark_done(struct env *e, const char *name)
{
    char a[800], b[800];
    snprintf(a, sizeof(a), "%s/%s.ready", e->status, name);
    snprintf(b, sizeof(b), "%s/%s.done", e->status, name);
    if (rename(a, b) != 0)
        unit_fail(__FILE__, __LINE__, "rename .ready");
}

static void wal_path(const struct env *e, uint64_t segno, char *out, size_t outsz)
{
    char name[WS_WAL_NAME_LEN + 1];
    seg_name(segno, name);
    snprintf(out, outsz, "%s/%s", e->wal, name);
}

static int has_record(const struct env *e, uint64_t segno)
{
    char name[WS_WAL_NAME_LEN + 1], path[800];
    seg_name(segno, name);
    snprintf(path, sizeof(path), "%s/%s", e->pushed, name);
    return exists(path);
}

static int in_repo(const struct env *e, uint64_t segno)
{
    char name[WS_WAL_NAME_LEN + 1], path[800];
    seg_name(segno, name);
    snprintf(path, sizeof(path), "%s/main/wal/%.16s/%s", e->repo, name, name);
    return exists(path);
}

/* Waits until every batch process of the spool has exited: each holds .alive shared and the one
 * that runs holds .batch, and an exiting process may release one before the other, so both are
 * waited for (else the next call can meet .batch still held and start no process). */
static void settle(const struct env *e)
{
    static const char *const names[] = {".alive", ".batch"};
    char path[800];
    int fd;

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", e->locks, names[i]);
        if ((fd = open(path, O_RDWR)) >= 0) {
            if (flock(fd, LOCK_EX) != 0)
                unit_fail(__FILE__, __LINE__, "flock");
            close(fd);
        }
    }
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

/* The archiver's call; then the batch it started, if any, is waited for. */
static int push(struct env *e, uint64_t segno, struct ws_pushahead_result *res,
                struct ws_error *err)
{
    char path[800];
    int rc;

    wal_path(e, segno, path, sizeof(path));
    memset(err, 0, sizeof(*err));
    rc = ws_pushahead_push(&e->cfg, path, res, err);
    settle(e);
    return rc;
}

/* Every file in pg_wal archived to the repository is byte-identical when fetched back. */
static int fetch_same(struct env *e, uint64_t segno)
{
    char name[WS_WAL_NAME_LEN + 1], src[800], dst[800];
    struct ws_error err = {0};
    uint8_t *a = malloc(SEG), *b = malloc(SEG);
    int fa, fb, ok = 0;

    seg_name(segno, name);
    wal_path(e, segno, src, sizeof(src));
    snprintf(dst, sizeof(dst), "%s/fetched", e->root);
    unlink(dst);
    if (a && b && ws_archive_fetch(&e->cfg, name, dst, &err) == 0 &&
        (fa = open(src, O_RDONLY)) >= 0) {
        if ((fb = open(dst, O_RDONLY)) >= 0) {
            ok = read(fa, a, SEG) == SEG && read(fb, b, SEG) == SEG && memcmp(a, b, SEG) == 0;
            close(fb);
        }
        close(fa);
    }
    free(a);
    free(b);
    return ok;
}

/* ---- pure parts ---- */

static void test_order(void)
{
    const char *in[] = {"000000020000000000000003",
                        "junk",
                        "00000002.history",
                        "000000010000000000000005.00000028.backup",
                        "000000010000000000000005",
                        "000000010000000100000000",
                        "000000010000000000000004",
                        "000000010000000000000006.partial",
                        "00000003.history",
                        "000000010000000000000004",
                        "000000010000000000000007.ready",
                        ""};
    const char *want[] = {"00000002.history",
                          "00000003.history",
                          "000000010000000000000005",
                          "000000010000000000000005.00000028.backup",
                          "000000010000000000000006.partial",
                          "000000010000000100000000",
                          "000000020000000000000003"};
    size_t n = sizeof(in) / sizeof(in[0]), k;
    char *names[sizeof(in) / sizeof(in[0])];
    int seen_junk = 0;

    for (size_t i = 0; i < n; i++)
        names[i] = (char *)in[i];
    /* "current" (X) is dropped wherever it is, also twice */
    k = ws_pushahead_order(names, n, "000000010000000000000004");
    REQUIRE(k == sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < k; i++)
        CHECK(strcmp(names[i], want[i]) == 0);
    /* a permutation: what was dropped is behind */
    for (size_t i = k; i < n; i++)
        seen_junk += strcmp(names[i], "junk") == 0;
    CHECK(seen_junk == 1);

    CHECK(ws_pushahead_ready_cmp("00000009.history", "000000010000000000000001") < 0);
    CHECK(ws_pushahead_ready_cmp("000000010000000000000001", "00000009.history") > 0);
    CHECK(ws_pushahead_ready_cmp("000000010000000000000001", "000000010000000000000001") == 0);
    CHECK(ws_pushahead_order(names, 0, NULL) == 0);

    CHECK(ws_pushahead_batch_max(1) == 8);
    CHECK(ws_pushahead_batch_max(2) == 16);
    CHECK(ws_pushahead_batch_max(8) == 64);
    CHECK(ws_pushahead_batch_max(256) == WS_PUSHAHEAD_MAX_BATCH);
}

static void sample_record(struct ws_pushahead_record *r)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->name, sizeof(r->name), "000000010000000A000000F3");
    snprintf(r->repo, sizeof(r->repo), "s3://bucket/some prefix = odd");
    snprintf(r->cluster, sizeof(r->cluster), "main");
    r->system_identifier = UINT64_MAX;
    r->size = 16777216;
    for (int i = 0; i < 32; i++)
        r->content_digest[i] = (uint8_t)(i * 7 + 1);
    for (int i = 0; i < WS_FINGERPRINT_SIZE; i++)
        r->fingerprint[i] = (uint8_t)(i * 13 + 5);
    r->pushed_at = 1732300000;
}

/* sample_record() as written by every walsafe since format 2 (the check is SHA-256 of the rest). */
static const char golden_record[] =
    "walsafe push-ahead record 2\n"
    "name = 000000010000000A000000F3\n"
    "repo = s3://bucket/some prefix = odd\n"
    "cluster = main\n"
    "system_identifier = 18446744073709551615\n"
    "size = 16777216\n"
    "sha256 = 01080f161d242b323940474e555c636a71787f868d949ba2a9b0b7bec5ccd3da\n"
    "fingerprint = 05121f2c394653606d7a8794a1aebbc8\n"
    "pushed_at = 1732300000\n"
    "check = d094a8a1a0412adc07a45487239966c8a88d3d6b70d5c5c7814d472899ff28b1\n";

static void test_record_roundtrip(void)
{
    struct ws_pushahead_record r, back;
    char text[WS_PUSHAHEAD_RECORD_SIZE];
    int n;

    sample_record(&r);
    n = ws_pushahead_record_format(&r, text, sizeof(text));
    REQUIRE(n > 0);
    CHECK(strncmp(text, "walsafe push-ahead record 2\nname = 000000010000000A000000F3\n", 59) == 0);
    CHECK(strstr(text, "\nfingerprint = 05121f2c39465360") != NULL);
    /* byte for byte what records have always been (the content digest's key stays "sha256") */
    CHECK((size_t)n == strlen(golden_record) && memcmp(text, golden_record, (size_t)n) == 0);
    REQUIRE(ws_pushahead_record_parse(text, (size_t)n, &back) == 0);
    CHECK(ws_pushahead_record_mismatch(&back, &r) == NULL);
    CHECK(strcmp(back.name, r.name) == 0 && strcmp(back.repo, r.repo) == 0 &&
          strcmp(back.cluster, r.cluster) == 0);
    CHECK(back.system_identifier == r.system_identifier && back.size == r.size &&
          back.pushed_at == r.pushed_at && memcmp(back.content_digest, r.content_digest, 32) == 0 &&
          memcmp(back.fingerprint, r.fingerprint, WS_FINGERPRINT_SIZE) == 0);
    /* a record of the first format (SHA-256 only, no fingerprint) is not one of these */
    {
        char old[WS_PUSHAHEAD_RECORD_SIZE];
        const char *fp = strstr(text, "fingerprint = ");
        REQUIRE(fp);
        int m = snprintf(old, sizeof(old), "walsafe push-ahead record 1%.*s%s",
                         (int)(fp - (text + 27)), text + 27, strchr(fp, '\n') + 1);
        struct ws_pushahead_record o;
        CHECK(ws_pushahead_record_parse(old, (size_t)m, &o) == -1);
    }

    /* other WAL file kinds */
    snprintf(r.name, sizeof(r.name), "00000002.history");
    r.system_identifier = 0;
    n = ws_pushahead_record_format(&r, text, sizeof(text));
    CHECK(n > 0 && ws_pushahead_record_parse(text, (size_t)n, &back) == 0);

    /* what cannot be written */
    sample_record(&r);
    snprintf(r.repo, sizeof(r.repo), "/srv/a\nname = x");
    CHECK(ws_pushahead_record_format(&r, text, sizeof(text)) == -1);
    sample_record(&r);
    snprintf(r.name, sizeof(r.name), "../../etc/passwd");
    CHECK(ws_pushahead_record_format(&r, text, sizeof(text)) == -1);
    sample_record(&r);
    r.repo[0] = '\0';
    CHECK(ws_pushahead_record_format(&r, text, sizeof(text)) == -1);
    sample_record(&r);
    CHECK(ws_pushahead_record_format(&r, text, 100) == -1);
}

/* Every truncation, every flipped bit and every appended byte is refused. */
static void test_record_damage(void)
{
    struct ws_pushahead_record r, back;
    char text[WS_PUSHAHEAD_RECORD_SIZE], bad[WS_PUSHAHEAD_RECORD_SIZE + 8];
    int n, refused = 0, total = 0;

    sample_record(&r);
    n = ws_pushahead_record_format(&r, text, sizeof(text));
    REQUIRE(n > 0);
    for (int len = 0; len < n; len++)
        CHECK(ws_pushahead_record_parse(text, (size_t)len, &back) == -1);
    for (int i = 0; i < n; i++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(bad, text, (size_t)n);
            bad[i] = (char)(bad[i] ^ (1 << bit));
            total++;
            refused += ws_pushahead_record_parse(bad, (size_t)n, &back) == -1;
        }
    }
    CHECK(refused == total);
    memcpy(bad, text, (size_t)n);
    memcpy(bad + n, "x\n", 2);
    CHECK(ws_pushahead_record_parse(bad, (size_t)n + 2, &back) == -1);
    CHECK(ws_pushahead_record_parse(bad, (size_t)n + 1, &back) == -1);
    /* a NUL inside */
    memcpy(bad, text, (size_t)n);
    bad[40] = '\0';
    CHECK(ws_pushahead_record_parse(bad, (size_t)n, &back) == -1);
    /* a record re-made with a wrong value but a correct check still fails on the value */
    {
        char forged[WS_PUSHAHEAD_RECORD_SIZE];
        const char *p = strstr(text, "size = ");
        REQUIRE(p);
        int m = snprintf(forged, sizeof(forged), "%.*ssize = 0123\n", (int)(p - text), text);
        const char *rest = strchr(p, '\n') + 1;
        const char *chk = strstr(rest, "check = ");
        m += snprintf(forged + m, sizeof(forged) - (size_t)m, "%.*s", (int)(chk - rest), rest);
        {
            uint8_t d[32];
            unsigned int dl;
            char hex[65];
            EVP_Digest(forged, (size_t)m, d, &dl, EVP_sha256(), NULL);
            for (int i = 0; i < 32; i++)
                snprintf(hex + 2 * i, 3, "%02x", d[i]);
            m += snprintf(forged + m, sizeof(forged) - (size_t)m, "check = %s\n", hex);
        }
        CHECK(ws_pushahead_record_parse(forged, (size_t)m, &back) == -1); /* leading zero */
    }
    /* digests are lower-case hex, as written: upper case under a correct check is refused */
    {
        char forged[WS_PUSHAHEAD_RECORD_SIZE], *p, *chk;
        uint8_t d[32];
        unsigned int dl;
        char hex[65];
        int m;
        memcpy(forged, text, (size_t)n);
        forged[n] = '\0';
        REQUIRE((p = strstr(forged, "\nsha256 = ")) != NULL);
        for (p += 10; *p != '\n'; p++)
            if (*p >= 'a' && *p <= 'f')
                *p = (char)(*p - 'a' + 'A');
        REQUIRE((chk = strstr(forged, "check = ")) != NULL);
        m = (int)(chk - forged);
        EVP_Digest(forged, (size_t)m, d, &dl, EVP_sha256(), NULL);
        for (int i = 0; i < 32; i++)
            snprintf(hex + 2 * i, 3, "%02x", d[i]);
        m += snprintf(forged + m, sizeof(forged) - (size_t)m, "check = %s\n", hex);
        CHECK(ws_pushahead_record_parse(forged, (size_t)m, &back) == -1);
    }
}

static void test_record_binding(void)
{
    struct ws_pushahead_record r, now;

    sample_record(&r);
    now = r;
    now.pushed_at = 1; /* when it was pushed does not matter */
    CHECK(ws_pushahead_record_mismatch(&r, &now) == NULL);
    for (int i = 0; i < WS_FINGERPRINT_SIZE; i++) {
        now = r;
        now.fingerprint[i] ^= 0x80;
        CHECK(ws_pushahead_record_mismatch(&r, &now) &&
              strcmp(ws_pushahead_record_mismatch(&r, &now), "the content differs") == 0);
    }
    now = r;
    now.size--;
    CHECK(strcmp(ws_pushahead_record_mismatch(&r, &now), "the size differs") == 0);
    now = r;
    now.system_identifier = 1;
    CHECK(strcmp(ws_pushahead_record_mismatch(&r, &now), "it is for another database system") == 0);
    now = r;
    snprintf(now.repo, sizeof(now.repo), "s3://bucket/other");
    CHECK(strcmp(ws_pushahead_record_mismatch(&r, &now), "it is for another repository") == 0);
    now = r;
    snprintf(now.cluster, sizeof(now.cluster), "main2");
    CHECK(strcmp(ws_pushahead_record_mismatch(&r, &now), "it is for another cluster") == 0);
    now = r;
    snprintf(now.name, sizeof(now.name), "000000010000000A000000F4");
    CHECK(strcmp(ws_pushahead_record_mismatch(&r, &now), "it names another file") == 0);
}

/* XXH3-128 known answers (xxhsum -H2 of Debian's xxhash package) and the file reader. */
static void test_fingerprint_file(void)
{
    static const char empty[] = "99aa06d3014798d86001c324468d497f";
    static const char abc[] = "06b05ab6733a618578af5f94892f3950";
    char dir[600], path[800], hex[2 * WS_FINGERPRINT_SIZE + 1];
    uint8_t d[WS_FINGERPRINT_SIZE], want[WS_FINGERPRINT_SIZE];
    uint64_t size, sysid;
    struct ws_error err = {0};
    struct ws_sink *s = NULL;
    uint8_t *buf = malloc(SEG);

    REQUIRE(buf);
    ws_fingerprint("", 0, d);
    ws_hex(d, WS_FINGERPRINT_SIZE, hex);
    CHECK(strcmp(hex, empty) == 0);
    ws_fingerprint("abc", 3, d);
    ws_hex(d, WS_FINGERPRINT_SIZE, hex);
    CHECK(strcmp(hex, abc) == 0);
    /* the sink, fed in pieces, agrees with the one-shot form */
    REQUIRE(ws_fingerprint_sink_new(NULL, &s, &err) == 0);
    CHECK(ws_sink_write(s, "a", 1, &err) == 0 && ws_sink_write(s, "", 0, &err) == 0 &&
          ws_sink_write(s, "bc", 2, &err) == 0 && ws_sink_finish(s, &err) == 0);
    ws_fingerprint_sink_result(s, d, &size);
    ws_hex(d, WS_FINGERPRINT_SIZE, hex);
    CHECK(strcmp(hex, abc) == 0 && size == 3);
    ws_sink_free(s);

    snprintf(dir, sizeof(dir), "%s/hash", unit_tmpdir());
    REQUIRE(mkdir(dir, 0700) == 0);
    REQUIRE(make_segment(dir, 5, 77, path, sizeof(path)) == 0);
    {
        int fd = open(path, O_RDONLY);
        REQUIRE(fd >= 0);
        CHECK(read(fd, buf, SEG) == SEG);
        close(fd);
    }
    ws_fingerprint(buf, SEG, want);
    CHECK(ws_pushahead_fingerprint_file(path, 1, d, &size, &sysid, &err) == 0);
    CHECK(size == SEG && sysid == SYSID1 && memcmp(d, want, sizeof(d)) == 0);
    CHECK(ws_pushahead_fingerprint_file(path, 0, d, &size, &sysid, &err) == 0);
    CHECK(sysid == 0 && memcmp(d, want, sizeof(d)) == 0);
    /* one flipped bit anywhere changes it */
    buf[SEG / 2] ^= 1;
    ws_fingerprint(buf, SEG, d);
    CHECK(memcmp(d, want, sizeof(d)) != 0);
    /* an empty file, and a missing one */
    snprintf(path, sizeof(path), "%s/empty", dir);
    REQUIRE(write_file(path, "", 0) == 0);
    CHECK(ws_pushahead_fingerprint_file(path, 1, d, &size, &sysid, &err) == 0);
    ws_hex(d, WS_FINGERPRINT_SIZE, hex);
    CHECK(size == 0 && sysid == 0 && strcmp(hex, empty) == 0);
    snprintf(path, sizeof(path), "%s/missing", dir);
    CHECK(ws_pushahead_fingerprint_file(path, 1, d, &size, &sysid, &err) == WS_ERR_IO);
    CHECK(strstr(err.msg, "missing") != NULL);
    /* mapped: the whole segment, and a file that shrank below the size taken (its pages past the
     * end raise SIGBUS, caught: -1, and the process lives on) */
    REQUIRE(make_segment(dir, 6, 77, path, sizeof(path)) == 0);
    {
        int fd = open(path, O_RDONLY);
        REQUIRE(fd >= 0);
        CHECK(read(fd, buf, SEG) == SEG);
        ws_fingerprint(buf, SEG, want);
        CHECK(ws_pushahead_fingerprint_mapped(fd, SEG, 1, d, &sysid) == 0);
        CHECK(sysid == SYSID1 && memcmp(d, want, sizeof(d)) == 0);
        REQUIRE(truncate(path, SEG / 2) == 0);
        sysid = 1;
        CHECK(ws_pushahead_fingerprint_mapped(fd, SEG, 1, d, &sysid) == -1);
        CHECK(ws_pushahead_fingerprint_mapped(fd, SEG, 1, d, &sysid) == -1); /* again */
        CHECK(ws_pushahead_fingerprint_mapped(fd, 0, 1, d, &sysid) == -1);
        close(fd);
        /* and the file's fingerprint is that of what it now holds */
        ws_fingerprint(buf, SEG / 2, want);
        CHECK(ws_pushahead_fingerprint_file(path, 1, d, &size, &sysid, &err) == 0);
        CHECK(size == SEG / 2 && memcmp(d, want, sizeof(d)) == 0);
    }
    free(buf);
}

/* ---- ws_pushahead_push ---- */

/* A backlog drained the way PostgreSQL does it: every call 0, every file stored once, records
 * consumed, the spool empty of records at the end. */
static void test_backlog(void)
{
    struct env e;
    struct ws_pushahead_result res;
    struct ws_error err;
    int ahead = 0, n = 40;

    REQUIRE(setup(&e, "backlog", "2") == 0);
    REQUIRE(add_ready(&e, 1, n) == 0);
    for (int i = 1; i <= n; i++) {
        if (push(&e, (uint64_t)i, &res, &err) != 0)
            unit_fail(__FILE__, __LINE__, err.msg);
        CHECK(res.push.bytes == SEG && res.push.duplicate == 0);
        ahead += res.pushed_ahead;
        if (i == 1) {
            /* the first call pushed X and started the push-ahead process, which took the next
             * 2 * 8 and then, refilling its queue, the rest of the backlog: each recorded */
            for (int k = 1; k <= n; k++)
                CHECK(in_repo(&e, (uint64_t)k) && has_record(&e, (uint64_t)k));
        }
        /* a record stays while PostgreSQL has not marked its file done */
        CHECK(has_record(&e, (uint64_t)i));
        char name[WS_WAL_NAME_LEN + 1];
        seg_name((uint64_t)i, name);
        mark_done(&e, name);
    }
    /* only the first call pushed; the process it started did the rest */
    CHECK(ahead == n - 1);
    for (int i = 1; i <= n; i++)
        CHECK(fetch_same(&e, (uint64_t)i));
    /* what is left: at most the record of the last X, removed by the next batch */
    CHECK(count_entries(e.pushed) <= 1);
    CHECK(count_entries(e.locks) == 2); /* .batch and .alive: no file lock left */
    /* PostgreSQL's files were not touched */
    CHECK(count_entries(e.status) == n);
    ws_config_free(&e.cfg);
}

/* With max_rate set, the push-ahead process uploads through the limiter (io/ratelimit.h): every
 * file stored once and recorded, and byte-identical when fetched back. (The rate itself is
 * measured by tests/integration/t_max_rate.sh on create and restore, which share the front-end.) */
static void test_max_rate(void)
{
    struct env e;
    struct ws_pushahead_result res;
    struct ws_error err = {0};
    int n = 8;

    REQUIRE(setup(&e, "max_rate", "2") == 0);
    REQUIRE(ws_config_set(&e.cfg, "max_rate", "64MB", "test", &err) == 0);
    REQUIRE(add_ready(&e, 1, n) == 0);
    if (push(&e, 1, &res, &err) != 0)
        unit_fail(__FILE__, __LINE__, err.msg);
    for (int k = 1; k <= n; k++)
        CHECK(in_repo(&e, (uint64_t)k) && has_record(&e, (uint64_t)k) &&
              fetch_same(&e, (uint64_t)k));
    ws_config_free(&e.cfg);
}

/* The archiver's next call comes while the batch still pushes: it waits for that file's lock, then
 * its record answers. */
static void test_in_flight(void)
{
    struct env e;
    struct ws_pushahead_result res;
    struct ws_error err = {0};
    char path[800], name[WS_WAL_NAME_LEN + 1];

    REQUIRE(setup(&e, "inflight", "2") == 0);
    REQUIRE(add_ready(&e, 1, 12) == 0);
    wal_path(&e, 1, path, sizeof(path));
    CHECK(ws_pushahead_push(&e.cfg, path, &res, &err) == 0); /* no settle: the batch runs on */
    seg_name(1, name);
    mark_done(&e, name);
    for (int i = 2; i <= 12; i++) {
        wal_path(&e, (uint64_t)i, path, sizeof(path));
        memset(&err, 0, sizeof(err));
        CHECK(ws_pushahead_push(&e.cfg, path, &res, &err) == 0 && res.pushed_ahead);
        seg_name((uint64_t)i, name);
        mark_done(&e, name);
    }
    settle(&e);
    for (int i = 1; i <= 12; i++)
        CHECK(fetch_same(&e, (uint64_t)i));
    ws_config_free(&e.cfg);
}

/* Content changed under a pushed-ahead name: the record is not trusted, the push refuses. */
static void test_stale_record(void)
{
    struct env e;
    struct ws_pushahead_result res;
    struct ws_error err;
    char path[800], name[WS_WAL_NAME_LEN + 1];

    REQUIRE(setup(&e, "stale", "2") == 0);
    REQUIRE(add_ready(&e, 1, 4) == 0);
    CHECK(push(&e, 1, &res, &err) == 0);
    CHECK(has_record(&e, 3));
    /* segment 3 is re-made with other content (a restored cluster reusing the name) */
    REQUIRE(make_segment(e.wal, 3, 999, path, sizeof(path)) == 0);
    seg_name(1, name);
    mark_done(&e, name);
    CHECK(push(&e, 2, &res, &err) == 0 && res.pushed_ahead);
    CHECK(push(&e, 3, &res, &err) == WS_ERR_CONFLICT);
    CHECK(!res.pushed_ahead);
    CHECK(!has_record(&e, 3));
    /* the stored copy is the original */
    REQUIRE(make_segment(e.wal, 3, 3, path, sizeof(path)) == 0);
    CHECK(fetch_same(&e, 3));
    ws_config_free(&e.cfg);
}

/* Records that are damaged or of another repository. */
static void test_untrusted_records(void)
{
    struct env e;
    struct ws_pushahead_result res;
    struct ws_error err;
    char rec[800], name[WS_WAL_NAME_LEN + 1];

    REQUIRE(setup(&e, "untrusted", "2") == 0);
    REQUIRE(add_ready(&e, 1, 6) == 0);
    CHECK(push(&e, 1, &res, &err) == 0);
    for (int i = 2; i <= 6; i++)
        CHECK(has_record(&e, (uint64_t)i));

    /* damaged: ignored and removed; the normal push finds the identical copy */
    seg_name(2, name);
    snprintf(rec, sizeof(rec), "%s/%s", e.pushed, name);
    CHECK(write_file(rec, "walsafe push-ahead record 1\nname = x\n", 38) == 0);
    CHECK(push(&e, 2, &res, &err) == 0 && !res.pushed_ahead && res.push.duplicate);

    /* another repo setting: not this configuration's record, so not used (and left alone) */
    {
        struct ws_config saved = e.cfg;
        char other_repo[700];
        snprintf(other_repo, sizeof(other_repo), "file://%s", e.repo);
        e.cfg.repo = other_repo;
        CHECK(push(&e, 4, &res, &err) == 0 && !res.pushed_ahead && res.push.duplicate);
        e.cfg = saved;
    }
    CHECK(push(&e, 6, &res, &err) == 0 && res.pushed_ahead);
    ws_config_free(&e.cfg);
}

/* A batch file that fails leaves no record and does not change X's status; a locked file is
 * skipped; X's failure is X's alone. */
static void test_failures(void)
{
    struct env e;
    struct ws_pushahead_result res;
    struct ws_error err;
    char path[800], name[WS_WAL_NAME_LEN + 1], lock[800];
    int fd;

    REQUIRE(setup(&e, "failures", "3") == 0);
    REQUIRE(add_ready(&e, 1, 6) == 0);
    /* segment 3 is cut short: not a segment; segment 4 is locked by another wal-push */
    wal_path(&e, 3, path, sizeof(path));
    REQUIRE(truncate(path, 1000) == 0);
    REQUIRE(mkdir(e.spool, 0700) == 0);
    {
        char d[700];
        snprintf(d, sizeof(d), "%s/main", e.spool);
        REQUIRE(mkdir(d, 0700) == 0 && mkdir(e.locks, 0700) == 0);
    }
    seg_name(4, name);
    snprintf(lock, sizeof(lock), "%s/%s", e.locks, name);
    fd = open(lock, O_RDWR | O_CREAT, 0600);
    REQUIRE(fd >= 0 && flock(fd, LOCK_EX) == 0);
    CHECK(push(&e, 1, &res, &err) == 0);
    CHECK(has_record(&e, 1) && has_record(&e, 2) && !has_record(&e, 3) && !has_record(&e, 4) &&
          has_record(&e, 5) && has_record(&e, 6));
    CHECK(!in_repo(&e, 3) && !in_repo(&e, 4));
    CHECK(exists(lock)); /* someone else's lock is not removed */
    close(fd);
    /* PostgreSQL's own calls: 2 from its record, 3 fails as it would without push-ahead, and
     * its batch (4, no longer locked, and 7) still runs */
    seg_name(1, name);
    mark_done(&e, name);
    CHECK(push(&e, 2, &res, &err) == 0 && res.pushed_ahead);
    seg_name(2, name);
    mark_done(&e, name);
    REQUIRE(add_ready(&e, 7, 1) == 0);
    CHECK(push(&e, 3, &res, &err) == WS_ERR_INVALID);
    CHECK(strstr(err.msg, "000000010000000000000003") != NULL);
    CHECK(!has_record(&e, 3));
    CHECK(has_record(&e, 4));
    CHECK(has_record(&e, 7));
    ws_config_free(&e.cfg);
}

/* After a push-ahead process stopped on a storage failure (`.stopped`, fresh), no new one starts
 * until a call's own push succeeds; an old `.stopped` holds nothing back. */
static void test_outage_pause(void)
{
    struct env e;
    struct ws_pushahead_result res;
    struct ws_error err;
    char name[WS_WAL_NAME_LEN + 1], stopped[800];
    struct timeval old[2] = {{1000000000, 0}, {1000000000, 0}};

    REQUIRE(setup(&e, "outage", "2") == 0);
    REQUIRE(add_ready(&e, 1, 6) == 0);
    REQUIRE(mkdir(e.spool, 0700) == 0);
    {
        char d[700];
        snprintf(d, sizeof(d), "%s/main", e.spool);
        REQUIRE(mkdir(d, 0700) == 0 && mkdir(e.locks, 0700) == 0);
    }
    snprintf(stopped, sizeof(stopped), "%s/.stopped", e.locks);
    REQUIRE(write_file(stopped, "", 0) == 0);
    CHECK(push(&e, 1, &res, &err) == 0 && !res.pushed_ahead);
    CHECK(has_record(&e, 1) && !has_record(&e, 2) && !in_repo(&e, 2)); /* no process */
    CHECK(!exists(stopped)); /* X went through: the storage works */
    seg_name(1, name);
    mark_done(&e, name);
    CHECK(push(&e, 2, &res, &err) == 0 && !res.pushed_ahead);
    for (int i = 3; i <= 6; i++)
        CHECK(has_record(&e, (uint64_t)i));
    seg_name(2, name);
    mark_done(&e, name);
    /* an old mark: a verified call starts the next process as usual */
    REQUIRE(add_ready(&e, 7, 2) == 0);
    REQUIRE(write_file(stopped, "", 0) == 0 && utimes(stopped, old) == 0);
    CHECK(push(&e, 3, &res, &err) == 0 && res.pushed_ahead);
    CHECK(has_record(&e, 7) && has_record(&e, 8));
    ws_config_free(&e.cfg);
}

/* When push-ahead does not apply or the spool cannot be used, X alone is pushed as before. */
static void test_not_applied(void)
{
    struct env e;
    struct ws_pushahead_result res;
    struct ws_error err;
    char spool[800];

    /* parallel = 1 */
    REQUIRE(setup(&e, "serial", "1") == 0);
    REQUIRE(add_ready(&e, 1, 3) == 0);
    CHECK(push(&e, 1, &res, &err) == 0 && in_repo(&e, 1) && !in_repo(&e, 2));
    CHECK(!exists(e.spool));
    ws_config_free(&e.cfg);

    /* no .ready beside the file: not the archiver's call */
    REQUIRE(setup(&e, "noready", "2") == 0);
    REQUIRE(add_ready(&e, 1, 3) == 0);
    {
        char ready[800], name[WS_WAL_NAME_LEN + 1];
        seg_name(1, name);
        snprintf(ready, sizeof(ready), "%s/%s.ready", e.status, name);
        REQUIRE(unlink(ready) == 0);
    }
    CHECK(push(&e, 1, &res, &err) == 0 && in_repo(&e, 1) && !in_repo(&e, 2));
    CHECK(!exists(e.spool));
    ws_config_free(&e.cfg);

    /* a spool inside the data directory, also through pg_wal */
    for (int via_wal = 0; via_wal <= 1; via_wal++) {
        char tag[32];
        snprintf(tag, sizeof(tag), "inside%d", via_wal);
        REQUIRE(setup(&e, tag, "2") == 0);
        REQUIRE(add_ready(&e, 1, 3) == 0);
        snprintf(spool, sizeof(spool), "%s/%s/spool", via_wal ? e.wal : e.root,
                 via_wal ? "archive_status/.." : "data");
        REQUIRE(ws_config_set(&e.cfg, "spool_dir", spool, "test", &err) == 0);
        CHECK(push(&e, 1, &res, &err) == 0 && in_repo(&e, 1) && !in_repo(&e, 2));
        CHECK(!exists(spool));
        ws_config_free(&e.cfg);
    }

    /* spool_dir = '': off */
    REQUIRE(setup(&e, "nospool", "2") == 0);
    REQUIRE(add_ready(&e, 1, 3) == 0);
    REQUIRE(ws_config_set(&e.cfg, "spool_dir", "", "test", &err) == 0);
    CHECK(push(&e, 1, &res, &err) == 0 && in_repo(&e, 1) && !in_repo(&e, 2));
    CHECK(!exists(e.spool));
    ws_config_free(&e.cfg);

    /* a spool that cannot be created (a file in the way) */
    REQUIRE(setup(&e, "unwritable", "2") == 0);
    REQUIRE(add_ready(&e, 1, 3) == 0);
    REQUIRE(write_file(e.spool, "x", 1) == 0);
    CHECK(push(&e, 1, &res, &err) == 0 && in_repo(&e, 1) && !in_repo(&e, 2));
    ws_config_free(&e.cfg);
}

/* Housekeeping: records whose .ready is gone or that are a day old, temp files of killed record
 * writers, abandoned lock files. */
static void test_clean(void)
{
    struct env e;
    struct ws_pushahead_result res;
    struct ws_error err;
    char name[WS_WAL_NAME_LEN + 1], path[800], tmp[800], lock[800];
    struct timeval old[2] = {{1000000000, 0}, {1000000000, 0}};

    REQUIRE(setup(&e, "clean", "2") == 0);
    REQUIRE(add_ready(&e, 1, 3) == 0);
    CHECK(push(&e, 1, &res, &err) == 0);
    CHECK(has_record(&e, 1) && has_record(&e, 2) && has_record(&e, 3));
    seg_name(1, name);
    mark_done(&e, name);
    /* a day-old record (its file is not even in pg_wal: the batch fails on it and records
     * nothing); a temp record and a lock file of killed processes */
    seg_name(0x50, name);
    snprintf(path, sizeof(path), "%s/%s", e.pushed, name);
    CHECK(write_file(path, "x", 1) == 0 && utimes(path, old) == 0);
    snprintf(tmp, sizeof(tmp), "%s/%s.ready", e.status, name);
    CHECK(write_file(tmp, "", 0) == 0);
    snprintf(tmp, sizeof(tmp), "%s/.%s.walsafe.99999", e.pushed, name);
    snprintf(lock, sizeof(lock), "%s/000000010000000000000099", e.locks);
    CHECK(write_file(tmp, "x", 1) == 0 && utimes(tmp, old) == 0);
    CHECK(write_file(lock, "", 0) == 0 && utimes(lock, old) == 0);
    REQUIRE(add_ready(&e, 4, 1) == 0);
    /* 4 is pushed with a batch: housekeeping runs first */
    CHECK(push(&e, 4, &res, &err) == 0 && !res.pushed_ahead);
    CHECK(!has_record(&e, 1) && !has_record(&e, 0x50));
    CHECK(has_record(&e, 2) && has_record(&e, 3) && has_record(&e, 4));
    CHECK(!exists(tmp) && !exists(lock));
    CHECK(push(&e, 2, &res, &err) == 0 && res.pushed_ahead);
    CHECK(push(&e, 3, &res, &err) == 0 && res.pushed_ahead);
    ws_config_free(&e.cfg);
}

/* Housekeeping touches only names it creates, and a link is removed as a link, never followed:
 * not the files a link named like a record or a lock points to, not names it does not know. */
static void test_clean_own_names(void)
{
    struct env e;
    struct ws_pushahead_result res;
    struct ws_error err;
    char name[WS_WAL_NAME_LEN + 1], victim[800], path[800], foreign[800], link[800];
    struct timeval old[2] = {{1000000000, 0}, {1000000000, 0}};

    REQUIRE(setup(&e, "ownnames", "2") == 0);
    REQUIRE(add_ready(&e, 1, 2) == 0);
    CHECK(push(&e, 1, &res, &err) == 0);
    seg_name(1, name);
    mark_done(&e, name);
    snprintf(victim, sizeof(victim), "%s/victim", e.root);
    REQUIRE(write_file(victim, "canary", 6) == 0);
    /* an old file of another name, in both directories: not ours, left alone */
    snprintf(foreign, sizeof(foreign), "%s/PG_VERSION", e.pushed);
    REQUIRE(write_file(foreign, "15", 2) == 0 && utimes(foreign, old) == 0);
    snprintf(path, sizeof(path), "%s/notes.txt", e.locks);
    REQUIRE(write_file(path, "x", 1) == 0 && utimes(path, old) == 0);
    /* links named like a record, a temp record and a lock */
    seg_name(0x60, name);
    snprintf(link, sizeof(link), "%s/%s", e.pushed, name);
    REQUIRE(symlink(victim, link) == 0);
    snprintf(link, sizeof(link), "%s/.%s.walsafe.77", e.pushed, name);
    REQUIRE(symlink(victim, link) == 0);
    snprintf(link, sizeof(link), "%s/%s", e.locks, name);
    REQUIRE(symlink(victim, link) == 0);
    REQUIRE(add_ready(&e, 3, 1) == 0);
    CHECK(push(&e, 3, &res, &err) == 0); /* a batch: housekeeping runs */
    CHECK(exists(victim) && exists(foreign) && exists(path));
    CHECK(count_entries(e.locks) == 3); /* .batch, .alive, notes.txt: the link is gone */
    snprintf(link, sizeof(link), "%s/%s", e.pushed, name);
    CHECK(!exists(link));
    snprintf(link, sizeof(link), "%s/.%s.walsafe.77", e.pushed, name);
    CHECK(!exists(link));
    {
        FILE *f = fopen(victim, "r");
        char buf[16] = "";
        CHECK(f && fgets(buf, sizeof(buf), f) && strcmp(buf, "canary") == 0);
        if (f)
            fclose(f);
    }
    ws_config_free(&e.cfg);
}

/* A lock file of another user (only root can put one there) is never waited for: the call
 * archives X without it at once instead of after `timeout` seconds. */
static void test_foreign_lock(void)
{
    struct env e;
    struct ws_pushahead_result res;
    struct ws_error err;
    char name[WS_WAL_NAME_LEN + 1], lock[800], d[700];
    struct timespec t0, t1;
    int fd;

    if (geteuid() != 0) {
        printf("    (not root: skipped)\n");
        return;
    }
    REQUIRE(setup(&e, "foreignlock", "2") == 0);
    REQUIRE(ws_config_set(&e.cfg, "timeout", "20", "test", &err) == 0);
    REQUIRE(add_ready(&e, 1, 1) == 0);
    snprintf(d, sizeof(d), "%s/main", e.spool);
    REQUIRE(mkdir(e.spool, 0700) == 0 && mkdir(d, 0700) == 0 && mkdir(e.locks, 0700) == 0);
    seg_name(1, name);
    snprintf(lock, sizeof(lock), "%s/%s", e.locks, name);
    REQUIRE(write_file(lock, "", 0) == 0 && chown(lock, 65534, 65534) == 0);
    fd = open(lock, O_RDWR);
    REQUIRE(fd >= 0 && flock(fd, LOCK_EX) == 0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK(push(&e, 1, &res, &err) == 0 && in_repo(&e, 1));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK(t1.tv_sec - t0.tv_sec < 5);
    CHECK(exists(lock)); /* not ours: not removed either */
    close(fd);
    ws_config_free(&e.cfg);
}

/* wal-push started with stdin, stdout and stderr closed (a cron job, `<&- >&- 2>&-`): the spool's
 * directories then sit on descriptors 0..2, which the push-ahead process replaces with /dev/null;
 * it must go on with the copies it moved them to, and record what it pushed. */
static void test_closed_stdio(void)
{
    struct env e;
    struct ws_error err = {0};
    struct ws_pushahead_result res;
    char path[800];
    int status = -1;
    pid_t pid;

    REQUIRE(setup(&e, "closedstdio", "2") == 0);
    REQUIRE(add_ready(&e, 1, 6) == 0);
    wal_path(&e, 1, path, sizeof(path));
    fflush(NULL);
    REQUIRE((pid = fork()) >= 0);
    if (pid == 0) {
        close(0);
        close(1);
        close(2);
        _exit(ws_pushahead_push(&e.cfg, path, &res, &err) == 0 ? 0 : 1);
    }
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    settle(&e);
    for (uint64_t k = 1; k <= 6; k++)
        CHECK(in_repo(&e, k));
    /* the push-ahead process recorded each file it pushed, and released its lock files */
    for (uint64_t k = 2; k <= 6; k++)
        CHECK(has_record(&e, k));
    CHECK(count_entries(e.locks) == 2); /* .batch and .alive */
    ws_config_free(&e.cfg);
}

const struct unit_test unit_tests[] = {
    {"ready files in the archiver's order", test_order},
    {"record: text round trip", test_record_roundtrip},
    {"record: every truncation, flipped bit, appended byte refused", test_record_damage},
    {"record: content binding", test_record_binding},
    {"fingerprint of a WAL file", test_fingerprint_file},
    {"backlog drained through records", test_backlog},
    {"the next call waits for the file in flight", test_in_flight},
    {"push-ahead with max_rate", test_max_rate},
    {"stale record: content changed under the name", test_stale_record},
    {"damaged and foreign records", test_untrusted_records},
    {"failing and locked batch files, failing X", test_failures},
    {"no new process for a while after a storage failure", test_outage_pause},
    {"no push-ahead: serial, no .ready, no spool, spool refused or unusable", test_not_applied},
    {"spool housekeeping", test_clean},
    {"housekeeping: own names only, links never followed", test_clean_own_names},
    {"another user's lock file is not waited for", test_foreign_lock},
    {"started with stdin, stdout and stderr closed", test_closed_stdio},
    {NULL, NULL},
};
