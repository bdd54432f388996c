/*
 * prefetch.h: the window arithmetic, spool file verdicts, entry-name binding, path checks and
 * spool directory rules as pure functions; then the prefetcher itself, run in a thread of this
 * process against a posix repository of synthetic 1 MiB segments: entries appear only for
 * verified objects, are served by rename and only to their own name, and are refused when the
 * stored object changed, vanished or was never theirs; the spool is emptied and removed when
 * the prefetcher goes idle.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "archive/archive.h"
#include "archive/prefetch.h"
#include "base/config.h"
#include "pg/wal.h"
#include "fixture.h"
#include "unit.h"

#define SEG UNIT_SEG

static const char KEYHEX[] = UNIT_KEYHEX;

/* The fixture's calls (fixture.h) under the names the tests below use. */
#define write_file unit_write
#define same_content unit_same_file

/* ---- pure pieces ---- */

static void test_limits(void)
{
    static const struct {
        int parallel;
        uint64_t seg;
        int ahead, workers;
    } cases[] = {
        {2, 16u << 20, 4, 2},     {4, 16u << 20, 8, 4}, {16, 16u << 20, 32, 16},
        {100, 16u << 20, 32, 32}, {1, 16u << 20, 2, 1}, {8, 64u << 20, 16, 8},
        {16, 64u << 20, 16, 16},  {4, 1u << 30, 1, 1},  {2, 512u << 20, 2, 2},
        {32, 1u << 20, 32, 32},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int a = -1, w = -1;
        ws_prefetch_limits(cases[i].parallel, cases[i].seg, &a, &w);
        CHECK(a == cases[i].ahead);
        CHECK(w == cases[i].workers);
        /* bounded by count and by bytes */
        CHECK(a <= WS_PREFETCH_MAX_AHEAD);
        CHECK((uint64_t)a * cases[i].seg <= WS_PREFETCH_MAX_BYTES || a == 1);
    }
}

static void test_next_name(void)
{
    char out[WS_WAL_NAME_LEN + 1];

    CHECK(ws_prefetch_next_name("000000010000000000000001", 16u << 20, 1, out) == 0 &&
          strcmp(out, "000000010000000000000002") == 0);
    /* into the next 4 GiB "log" */
    CHECK(ws_prefetch_next_name("0000000100000000000000FF", 16u << 20, 1, out) == 0 &&
          strcmp(out, "000000010000000100000000") == 0);
    CHECK(ws_prefetch_next_name("0000000100000000000000FE", 16u << 20, 3, out) == 0 &&
          strcmp(out, "000000010000000100000001") == 0);
    CHECK(ws_prefetch_next_name("000000010000000000000FFF", 1u << 20, 1, out) == 0 &&
          strcmp(out, "000000010000000100000000") == 0);
    CHECK(ws_prefetch_next_name("000000030000000000000003", 1u << 30, 1, out) == 0 &&
          strcmp(out, "000000030000000100000000") == 0);
    /* the timeline stays */
    CHECK(ws_prefetch_next_name("0000002A0000000A000000F3", 16u << 20, 32, out) == 0 &&
          strcmp(out, "0000002A0000000B00000013") == 0);
    /* no segment after the last one */
    CHECK(ws_prefetch_next_name("00000001FFFFFFFF000000FF", 16u << 20, 1, out) != 0);
    CHECK(ws_prefetch_next_name("00000001FFFFFFFF000000FE", 16u << 20, 1, out) == 0);
    /* only segment names of that size */
    CHECK(ws_prefetch_next_name("00000002.history", 16u << 20, 1, out) != 0);
    CHECK(ws_prefetch_next_name("000000010000000000000001.partial", 16u << 20, 1, out) != 0);
    CHECK(ws_prefetch_next_name("000000010000000000000100", 16u << 20, 1, out) != 0);
    CHECK(ws_prefetch_next_name("00000001000000000000000a", 16u << 20, 1, out) != 0);
    CHECK(ws_prefetch_next_name("000000010000000000000001", 3u << 20, 1, out) != 0);
}

static void test_classify(void)
{
    const char *w = "0000000100000000000000FE";
    const char *h = "0123456789abcdef0123456789abcdef";
    char name[WS_WAL_NAME_LEN + 1], f[128];
    const uint64_t s = 16u << 20;

    CHECK(ws_prefetch_classify("lock", w, s, 4, name) == WS_PREFETCH_OTHER);
    CHECK(ws_prefetch_classify("wanted", w, s, 4, name) == WS_PREFETCH_OTHER);
    CHECK(ws_prefetch_classify(".wanted.1234", w, s, 4, name) == WS_PREFETCH_OTHER);
    CHECK(ws_prefetch_classify(".000000010000000100000001.tmp", w, s, 4, name) ==
              WS_PREFETCH_TEMP &&
          strcmp(name, "000000010000000100000001") == 0);
    CHECK(ws_prefetch_classify(".000000010000000100000001.ready", w, s, 4, name) ==
          WS_PREFETCH_TEMP);
    CHECK(ws_prefetch_classify(".00000001000000010000000.tmp", w, s, 4, name) == WS_PREFETCH_OTHER);
    /* the wanted one and k after it are kept, across the log boundary */
    snprintf(f, sizeof(f), "%s.%s", w, h);
    CHECK(ws_prefetch_classify(f, w, s, 4, name) == WS_PREFETCH_KEEP && strcmp(name, w) == 0);
    snprintf(f, sizeof(f), "000000010000000100000002.%s", h);
    CHECK(ws_prefetch_classify(f, w, s, 4, name) == WS_PREFETCH_KEEP);
    /* beyond k, behind, another timeline */
    snprintf(f, sizeof(f), "000000010000000100000003.%s", h);
    CHECK(ws_prefetch_classify(f, w, s, 4, name) == WS_PREFETCH_REMOVE);
    snprintf(f, sizeof(f), "0000000100000000000000FD.%s", h);
    CHECK(ws_prefetch_classify(f, w, s, 4, name) == WS_PREFETCH_REMOVE);
    snprintf(f, sizeof(f), "0000000200000000000000FF.%s", h);
    CHECK(ws_prefetch_classify(f, w, s, 4, name) == WS_PREFETCH_REMOVE);
    /* nothing wanted: nothing kept */
    snprintf(f, sizeof(f), "0000000100000000000000FF.%s", h);
    CHECK(ws_prefetch_classify(f, "", s, 4, name) == WS_PREFETCH_REMOVE);
    CHECK(ws_prefetch_classify(f, w, s, 4, name) == WS_PREFETCH_KEEP);
    /* names that are not ours are left alone (the spool never deletes what it did not make) */
    CHECK(ws_prefetch_classify("0000000100000000000000FF.0123456789ABCDEF0123456789abcdef", w, s, 4,
                               name) == WS_PREFETCH_OTHER);
    CHECK(ws_prefetch_classify("0000000100000000000000FF.0123", w, s, 4, name) ==
          WS_PREFETCH_OTHER);
    CHECK(ws_prefetch_classify("0000000100000000000000FF", w, s, 4, name) == WS_PREFETCH_OTHER);
    CHECK(ws_prefetch_classify("RECOVERYXLOG", w, s, 4, name) == WS_PREFETCH_OTHER);
    CHECK(ws_prefetch_classify(".", w, s, 4, name) == WS_PREFETCH_OTHER);
    CHECK(ws_prefetch_classify("..", w, s, 4, name) == WS_PREFETCH_OTHER);
}

static void test_entry_name(void)
{
    struct ws_error err = {0};
    uint8_t tail[WS_PREFETCH_TAIL];
    char base[WS_PREFETCH_ENTRY_LEN + 1], other[WS_PREFETCH_ENTRY_LEN + 1];
    const char *seg = "000000010000000000000005";
    struct ws_prefetch_binding b = {0}, c;

    unit_random(tail, sizeof(tail), 7);
    b.boot_id = "047079ac-6009-4de7-99e3-6f558ed7fa2b";
    b.location = "/srv/walsafe";
    b.key = "main/wal/0000000100000000/000000010000000000000005";
    memset(b.keyring_fp, 1, 32);
    b.size = 123456;
    b.mtime = 1700000000;
    b.tail = tail;
    b.tail_len = sizeof(tail);
    REQUIRE(ws_prefetch_entry_name(seg, &b, base, &err) == 0);
    CHECK(strlen(base) == WS_PREFETCH_ENTRY_LEN && strncmp(base, seg, 24) == 0 && base[24] == '.');
    REQUIRE(ws_prefetch_entry_name(seg, &b, other, &err) == 0);
    CHECK(strcmp(base, other) == 0); /* deterministic */
    /* every bound field changes the name */
    for (int field = 0; field < 8; field++) {
        uint8_t t2[WS_PREFETCH_TAIL];
        c = b;
        memcpy(t2, tail, sizeof(t2));
        switch (field) {
        case 0:
            c.boot_id = "147079ac-6009-4de7-99e3-6f558ed7fa2b";
            break;
        case 1:
            c.location = "/srv/walsafe2";
            break;
        case 2:
            c.key = "other/wal/0000000100000000/000000010000000000000005";
            break;
        case 3:
            c.keyring_fp[31] ^= 1;
            break;
        case 4:
            c.size++;
            break;
        case 5:
            c.mtime++;
            break;
        case 6:
            t2[WS_PREFETCH_TAIL - 1] ^= 0x80;
            c.tail = t2;
            break;
        case 7:
            c.tail_len--;
            c.tail = tail + 1;
            break;
        }
        REQUIRE(ws_prefetch_entry_name(seg, &c, other, &err) == 0);
        CHECK(strcmp(base, other) != 0);
    }
    /* no field can be shifted into its neighbour */
    c = b;
    c.location = "/srv/walsafemain/wal/0000000100000000/000000010000000000000005";
    c.key = "";
    REQUIRE(ws_prefetch_entry_name(seg, &c, other, &err) == 0);
    CHECK(strcmp(base, other) != 0);
    CHECK(ws_prefetch_entry_name("00000002.history", &b, other, &err) != 0);
}

/* ---- the spool directory rules ---- */

static char start_cwd[PATH_MAX];

static void config_for(struct ws_config *cfg, const char *repo, const char *spool,
                       const char *parallel, const char *keyfile)
{
    unit_config(cfg, "repo", repo, "cluster", "main", "spool_dir", spool, "parallel", parallel,
                "timeout", "5", "encrypt_key_file", keyfile, NULL);
}

static void test_spool_dir(void)
{
    struct ws_config cfg;
    struct ws_error err = {0};
    struct ws_prefetch_spool sp, sp2;
    char data[PATH_MAX], walreal[PATH_MAX], link_path[PATH_MAX + 16], spool[PATH_MAX + 16];
    struct stat st;

    REQUIRE(getcwd(start_cwd, sizeof(start_cwd)) != NULL);
    snprintf(data, sizeof(data), "%s/pgdata", unit_tmpdir());
    snprintf(walreal, sizeof(walreal), "%s/waldisk", unit_tmpdir());
    snprintf(link_path, sizeof(link_path), "%s/pg_wal", data);
    REQUIRE(mkdir(data, 0700) == 0 && mkdir(walreal, 0700) == 0 &&
            symlink(walreal, link_path) == 0);
    REQUIRE(chdir(data) == 0);

    /* inside pg_wal, reached through its symlink target */
    snprintf(spool, sizeof(spool), "%s/spool", walreal);
    config_for(&cfg, "/nonexistent-repo", spool, "2", NULL);
    CHECK(ws_prefetch_spool_open(&cfg, "pg_wal/RECOVERYXLOG", &sp, &err) == WS_ERR_CONFIG);
    CHECK(strstr(err.msg, "pg_wal") != NULL);
    CHECK(stat(spool, &st) != 0); /* refused before anything was created */
    ws_config_free(&cfg);
    /* relative: refused, whatever it would resolve to */
    config_for(&cfg, "/nonexistent-repo", "pg_wal/x/../spool", "2", NULL);
    CHECK(ws_prefetch_spool_open(&cfg, "pg_wal/RECOVERYXLOG", &sp, &err) == WS_ERR_CONFIG);
    CHECK(strstr(err.msg, "not an absolute path") != NULL);
    ws_config_free(&cfg);

    /* inside the data directory (it holds PG_VERSION) */
    REQUIRE(write_file("PG_VERSION", "15\n", 3, 0600) == 0);
    snprintf(spool, sizeof(spool), "%s/walsafe-spool", data);
    config_for(&cfg, "/nonexistent-repo", spool, "2", NULL);
    CHECK(ws_prefetch_spool_open(&cfg, "pg_wal/RECOVERYXLOG", &sp, &err) == WS_ERR_CONFIG);
    CHECK(strstr(err.msg, "data directory") != NULL);
    CHECK(stat(spool, &st) != 0);
    ws_config_free(&cfg);
    /* elsewhere: created 0700, per repository, cluster and data directory */
    snprintf(spool, sizeof(spool), "%s/spool", unit_tmpdir());
    config_for(&cfg, "/nonexistent-repo", spool, "2", NULL);
    REQUIRE(ws_prefetch_spool_open(&cfg, "pg_wal/RECOVERYXLOG", &sp, &err) == 0);
    CHECK(strncmp(sp.sp.sub[0].path, spool, strlen(spool)) == 0 &&
          strstr(sp.sp.sub[0].path, "/main/prefetch-") != NULL);
    CHECK(stat(sp.sp.sub[0].path, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);
    REQUIRE(ws_prefetch_spool_open(&cfg, "pg_wal/RECOVERYXLOG", &sp2, &err) == 0);
    CHECK(strcmp(sp.sp.sub[0].path, sp2.sp.sub[0].path) == 0);
    ws_prefetch_spool_close(&sp2);
    ws_config_free(&cfg);
    config_for(&cfg, "/other-repo", spool, "2", NULL);
    REQUIRE(ws_prefetch_spool_open(&cfg, "pg_wal/RECOVERYXLOG", &sp2, &err) == 0);
    CHECK(strcmp(sp.sp.sub[0].path, sp2.sp.sub[0].path) != 0);
    ws_prefetch_spool_close(&sp2);
    REQUIRE(chdir(walreal) == 0);
    ws_config_free(&cfg);
    config_for(&cfg, "/nonexistent-repo", spool, "2", NULL);
    REQUIRE(ws_prefetch_spool_open(&cfg, "RECOVERYXLOG", &sp2, &err) == 0);
    CHECK(strcmp(sp.sp.sub[0].path, sp2.sp.sub[0].path) != 0);
    ws_prefetch_spool_close(&sp2);
    REQUIRE(chdir(data) == 0);
    /* open to others: refused */
    REQUIRE(chmod(sp.sp.sub[0].path, 0750) == 0);
    CHECK(ws_prefetch_spool_open(&cfg, "pg_wal/RECOVERYXLOG", &sp2, &err) == WS_ERR_CONFIG);
    CHECK(strstr(err.msg, "accessible by group or others") != NULL);
    REQUIRE(chmod(sp.sp.sub[0].path, 0700) == 0);
    ws_prefetch_spool_close(&sp);
    /* not a segment, or parallel 1: no spool work at all */
    ws_config_free(&cfg);
    snprintf(spool, sizeof(spool), "%s/spool-none", unit_tmpdir());
    config_for(&cfg, "/nonexistent-repo", spool, "2", NULL);
    CHECK(ws_prefetch_serve(&cfg, "00000002.history", "pg_wal/RECOVERYHISTORY") == 0);
    CHECK(ws_prefetch_serve(&cfg, "000000010000000000000001.partial", "pg_wal/x") == 0);
    CHECK(stat(spool, &st) != 0);
    ws_config_free(&cfg);
    config_for(&cfg, "/nonexistent-repo", spool, "1", NULL);
    CHECK(ws_prefetch_serve(&cfg, "000000010000000000000001", "pg_wal/RECOVERYXLOG") == 0);
    CHECK(stat(spool, &st) != 0);
    ws_config_free(&cfg);
    /* spool_dir = '': off, nothing created in the working directory (it is not resolved) */
    config_for(&cfg, "/nonexistent-repo", "", "2", NULL);
    CHECK(ws_prefetch_spool_open(&cfg, "pg_wal/RECOVERYXLOG", &sp, &err) == WS_ERR_CONFIG);
    CHECK(ws_prefetch_serve(&cfg, "000000010000000000000001", "pg_wal/RECOVERYXLOG") == 0);
    CHECK(stat("main", &st) != 0);
    REQUIRE(chdir(unit_tmpdir()) == 0);
    CHECK(ws_prefetch_serve(&cfg, "000000010000000000000001", "pgdata/RECOVERYXLOG") == 0);
    CHECK(stat("main", &st) != 0);
    ws_config_free(&cfg);
    REQUIRE(chdir(start_cwd) == 0);
}

/* ---- the prefetcher in this process ---- */

static int make_segment(const char *dir, uint64_t segno, uint32_t seed, char *out, size_t outsz)
{
    return unit_wal_segment(dir, segno, UNIT_SYSID, seed, out, outsz);
}

/* Entries of the spool whose name starts with seg ("" counts every file). */
static int count_entries(const char *spool, const char *seg)
{
    DIR *d = opendir(spool);
    struct dirent *de;
    int n = 0;
    if (!d)
        return 0;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.' && strncmp(de->d_name, seg, strlen(seg)) == 0 &&
            strlen(de->d_name) == WS_PREFETCH_ENTRY_LEN)
            n++;
    closedir(d);
    return n;
}

static int wait_entries(const char *spool, const char *seg, int want, int seconds)
{
    for (int i = 0; i < seconds * 100; i++) {
        if (count_entries(spool, seg) >= want)
            return 1;
        usleep(10000);
    }
    return 0;
}

struct run_arg {
    const struct ws_config *cfg;
    struct ws_keyring kr;
    const struct ws_prefetch_spool *sp;
    int lock_fd;
    struct ws_prefetch_opts o;
    int rc;
    struct ws_error err;
};

static void *run_thread(void *p)
{
    struct run_arg *a = p;
    a->rc = ws_prefetch_run(a->cfg, &a->kr, a->sp, a->lock_fd, &a->o, &a->err);
    return NULL;
}

static void flip(const char *path, long off)
{
    int fd = open(path, O_RDWR);
    unsigned char c = 0;
    long size = 0;
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        unit_fail(__FILE__, __LINE__, "open object to flip");
        return;
    }
    size = (long)st.st_size;
    if (off < 0)
        off += size;
    if (pread(fd, &c, 1, off) != 1 || (c ^= 0x20, pwrite(fd, &c, 1, off)) != 1)
        unit_fail(__FILE__, __LINE__, "flip");
    close(fd);
}

static void test_prefetcher(void)
{
    struct ws_config cfg;
    struct ws_error err = {0};
    struct ws_push_result res;
    struct ws_prefetch_opts o = {2, 60, 0};
    struct run_arg ra;
    pthread_t th;
    char repo[PATH_MAX], wal[PATH_MAX], data[PATH_MAX], keyf[PATH_MAX], spoolcfg[PATH_MAX];
    struct ws_prefetch_spool sp;
    const char *spool;
    char seg[9][PATH_MAX + 32], name[9][WS_WAL_NAME_LEN + 1], obj[9][PATH_MAX + 64];
    char dest[PATH_MAX + 32], path[PATH_MAX + 128], text[80];
    struct stat st;
    int started = 0;

    snprintf(repo, sizeof(repo), "%s/pf-repo", unit_tmpdir());
    snprintf(wal, sizeof(wal), "%s/pf-wal", unit_tmpdir());
    snprintf(data, sizeof(data), "%s/pf-data", unit_tmpdir());
    snprintf(keyf, sizeof(keyf), "%s/pf.key", unit_tmpdir());
    snprintf(spoolcfg, sizeof(spoolcfg), "%s/pf-spool", unit_tmpdir());
    REQUIRE(mkdir(repo, 0700) == 0 && mkdir(wal, 0700) == 0 && mkdir(data, 0700) == 0);
    snprintf(path, sizeof(path), "%s/pg_wal", data);
    REQUIRE(mkdir(path, 0700) == 0);
    snprintf(text, sizeof(text), "%s\n", KEYHEX);
    REQUIRE(write_file(keyf, text, strlen(text), 0600) == 0);
    config_for(&cfg, repo, spoolcfg, "2", keyf); /* k = 4, 2 workers */
    for (int i = 1; i <= 8; i++) {
        REQUIRE(make_segment(wal, (uint64_t)i, (uint32_t)(40 + i), seg[i], sizeof(seg[i])) == 0);
        ws_wal_format_name(name[i], 1, (uint64_t)i, SEG);
        snprintf(obj[i], sizeof(obj[i]), "%s/main/wal/%.16s/%s", repo, name[i], name[i]);
        memset(&err, 0, sizeof(err));
        if (ws_archive_push(&cfg, seg[i], &res, &err) != 0)
            unit_fail(__FILE__, __LINE__, err.msg);
    }
    REQUIRE(getcwd(start_cwd, sizeof(start_cwd)) != NULL);
    REQUIRE(chdir(data) == 0);
    snprintf(dest, sizeof(dest), "%s/pg_wal/RECOVERYXLOG", data);
    REQUIRE(ws_prefetch_spool_open(&cfg, dest, &sp, &err) == 0);
    spool = sp.sp.sub[0].path;

    /* A planted entry under the right segment name but another binding: never served, and
     * removed by the request that finds it. */
    snprintf(path, sizeof(path), "%s/%s.0123456789abcdef0123456789abcdef", spool, name[7]);
    REQUIRE(write_file(path, "forged", 6, 0600) == 0);
    CHECK(ws_prefetch_serve_opts(&cfg, name[7], dest, &o) == 0);
    CHECK(stat(dest, &st) != 0 && stat(path, &st) != 0);

    /* segment 4 is damaged in the repository before anything is prefetched */
    flip(obj[4], SEG / 2);
    /* PostgreSQL asks for 1: nothing in the spool yet (the foreground fetches it itself) */
    CHECK(ws_prefetch_serve_opts(&cfg, name[1], dest, &o) == 0);
    CHECK(stat(dest, &st) != 0);

    memset(&ra, 0, sizeof(ra));
    ra.cfg = &cfg;
    ra.sp = &sp;
    ra.o = o;
    REQUIRE(ws_keyring_load(&cfg, &ra.kr, &err) == 0);
    REQUIRE(ws_prefetch_lock(&sp, &ra.lock_fd, &err) == 0);
    {
        int fd2 = -1;
        CHECK(ws_prefetch_lock(&sp, &fd2, &err) == WS_ERR_EXISTS && fd2 == -1);
    }
    REQUIRE(pthread_create(&th, NULL, run_thread, &ra) == 0);
    started = 1;

    /* 2, 3 and 5 appear; 4 never does (its object fails authentication) */
    CHECK(wait_entries(spool, name[2], 1, 10));
    CHECK(wait_entries(spool, name[3], 1, 10));
    CHECK(wait_entries(spool, name[5], 1, 10));
    usleep(300000);
    CHECK(count_entries(spool, name[4]) == 0);
    CHECK(count_entries(spool, name[6]) == 0); /* beyond the window of 1 */

    CHECK(ws_prefetch_serve_opts(&cfg, name[2], dest, &o) == 1);
    CHECK(same_content(dest, seg[2]));
    CHECK(stat(dest, &st) == 0 && (st.st_mode & 0777) == 0600);
    unlink(dest);
    CHECK(count_entries(spool, name[2]) == 0); /* taken by rename */
    CHECK(ws_prefetch_serve_opts(&cfg, name[3], dest, &o) == 1);
    CHECK(same_content(dest, seg[3]));
    unlink(dest);
    /* the damaged one is not served from the spool, nor anything in its place */
    CHECK(ws_prefetch_serve_opts(&cfg, name[4], dest, &o) == 0);
    CHECK(stat(dest, &st) != 0);
    memset(&err, 0, sizeof(err));
    CHECK(ws_archive_fetch(&cfg, name[4], dest, &err) == WS_ERR_CORRUPT);
    CHECK(stat(dest, &st) != 0);

    /* wanted = 4: the window is 5..8 */
    CHECK(wait_entries(spool, name[6], 1, 10));
    CHECK(wait_entries(spool, name[7], 1, 10));
    CHECK(wait_entries(spool, name[8], 1, 10));
    /* the end of 5's object changed after it was prefetched: the repository decides */
    flip(obj[5], -1);
    CHECK(ws_prefetch_serve_opts(&cfg, name[5], dest, &o) == 0);
    CHECK(stat(dest, &st) != 0 && count_entries(spool, name[5]) == 0);
    flip(obj[5], -1);
    /* 6's object is gone: not served ("not in the archive" is the repository's answer) */
    snprintf(path, sizeof(path), "%s.moved", obj[6]);
    REQUIRE(rename(obj[6], path) == 0);
    CHECK(ws_prefetch_serve_opts(&cfg, name[6], dest, &o) == 0);
    CHECK(stat(dest, &st) != 0);
    REQUIRE(rename(path, obj[6]) == 0);
    /* another keyring: not served */
    {
        struct ws_config cfg2;
        char key2[PATH_MAX + 8];
        snprintf(key2, sizeof(key2), "%s.old", keyf);
        REQUIRE(write_file(key2,
                           "aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbccccccccccccccccdddddddddddddddd\n", 65,
                           0600) == 0);
        config_for(&cfg2, repo, spoolcfg, "2", keyf);
        CHECK(ws_config_set(&cfg2, "decrypt_key_files", key2, "test", &err) == 0);
        CHECK(ws_prefetch_serve_opts(&cfg2, name[7], dest, &o) == 0);
        CHECK(stat(dest, &st) != 0);
        ws_config_free(&cfg2);
    }
    /* and 8 is served to its own name only */
    CHECK(ws_prefetch_serve_opts(&cfg, name[8], dest, &o) == 1);
    CHECK(same_content(dest, seg[8]));
    unlink(dest);

    /* idle: the prefetcher exits by itself and removes its spool */
    pthread_join(th, NULL);
    started = 0;
    CHECK(ra.rc == 0);
    CHECK(stat(spool, &st) != 0);
    ws_keyring_wipe(&ra.kr);
    if (started)
        pthread_join(th, NULL);
    ws_prefetch_spool_close(&sp);
    ws_config_free(&cfg);
    REQUIRE(chdir(start_cwd) == 0);
}

/* A prefetcher that cannot work (the repository holds no such cluster) leaves no spool behind. */
static void test_prefetcher_no_identity(void)
{
    struct ws_config cfg;
    struct ws_error err = {0};
    struct ws_prefetch_opts o = {2, 60, 0};
    struct ws_keyring kr;
    char repo[PATH_MAX], spoolcfg[PATH_MAX], data[PATH_MAX];
    struct ws_prefetch_spool sp;
    char dest[PATH_MAX + 32];
    struct stat st;
    int fd = -1;

    snprintf(repo, sizeof(repo), "%s/ni-repo", unit_tmpdir());
    snprintf(spoolcfg, sizeof(spoolcfg), "%s/ni-spool", unit_tmpdir());
    snprintf(data, sizeof(data), "%s/ni-data", unit_tmpdir());
    REQUIRE(mkdir(repo, 0700) == 0 && mkdir(data, 0700) == 0);
    REQUIRE(getcwd(start_cwd, sizeof(start_cwd)) != NULL);
    REQUIRE(chdir(data) == 0);
    config_for(&cfg, repo, spoolcfg, "2", NULL);
    snprintf(dest, sizeof(dest), "%s/RECOVERYXLOG", data);
    CHECK(ws_prefetch_serve_opts(&cfg, "000000010000000000000003", dest, &o) == 0);
    REQUIRE(ws_prefetch_spool_open(&cfg, dest, &sp, &err) == 0);
    REQUIRE(ws_keyring_load(&cfg, &kr, &err) == 0);
    REQUIRE(ws_prefetch_lock(&sp, &fd, &err) == 0);
    CHECK(ws_prefetch_run(&cfg, &kr, &sp, fd, &o, &err) == WS_ERR_NOT_FOUND);
    CHECK(stat(sp.sp.sub[0].path, &st) != 0);
    ws_prefetch_spool_close(&sp);
    ws_keyring_wipe(&kr);
    ws_config_free(&cfg);
    REQUIRE(chdir(start_cwd) == 0);
}

const struct unit_test unit_tests[] = {
    {"limits", test_limits},
    {"next_name", test_next_name},
    {"classify", test_classify},
    {"entry_name", test_entry_name},
    {"spool_dir", test_spool_dir},
    {"prefetcher", test_prefetcher},
    {"prefetcher_no_identity", test_prefetcher_no_identity},
    {NULL, NULL},
};
