/*
 * spool.h: the lexical normalisation, lock files, the spool file sink; then one table of
 * spool_dir edge cases run through both programs' entry points, ws_pushahead_push() (wal-push)
 * and ws_prefetch_serve_opts() (wal-fetch), in a data directory look-alike: relative, "."/"..",
 * a symlinked spool_dir, inside the data directory or pg_wal, owned by another user, open to
 * group or others, links planted at <cluster>, pushed, pushing and prefetch-<tag>, and ''. For
 * each, both answer the same way: the spool is used, or refused with exactly one WARNING (the
 * call still archives), or off quietly; and nothing is created or deleted where a link points.
 * Cases that need another user (chown) run only as root.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "archive/archive.h"
#include "archive/prefetch.h"
#include "archive/pushahead.h"
#include "archive/spool.h"
#include "base/config.h"
#include "base/log.h"
#include "base/util.h"
#include "io/sink.h"
#include "pg/wal.h"
#include "fixture.h"
#include "unit.h"

#define OTHER_UID 65534 /* nobody */

/* Fault injection: this many of the next mkdirat() calls for a "prefetch-*" name are followed at
 * once by the removal of that directory, as an idle prefetcher removes its own (prefetch.h). */
static int rmdir_after_mkdirat;

int mkdirat(int dirfd, const char *path, mode_t mode)
{
    int rc = (int)syscall(SYS_mkdirat, dirfd, path, mode), e = errno;

    if (rmdir_after_mkdirat > 0 && strncmp(path, "prefetch-", 9) == 0) {
        rmdir_after_mkdirat--;
        (void)syscall(SYS_unlinkat, dirfd, path, AT_REMOVEDIR);
    }
    errno = e;
    return rc;
}

/* The fixture's calls (fixture.h) under the names the tests below use. */
#define exists unit_exists
#define count_entries unit_entries

static int write_file(const char *path, const void *p, size_t n)
{
    return unit_write(path, p, n, 0600);
}

/* ---- the pieces ---- */

static void test_normalise(void)
{
    char out[PATH_MAX];

    CHECK(ws_spool_normalise("/tmp/./a/../b", out) == 0 && strcmp(out, "/tmp/b") == 0);
    CHECK(ws_spool_normalise("//var///spool/walsafe/", out) == 0 &&
          strcmp(out, "/var/spool/walsafe") == 0);
    CHECK(ws_spool_normalise("/..", out) == 0 && strcmp(out, "/") == 0);
    CHECK(ws_spool_normalise("/a/b/../../..", out) == 0 && strcmp(out, "/") == 0);
    CHECK(ws_spool_normalise("/", out) == 0 && strcmp(out, "/") == 0);
    CHECK(ws_spool_normalise("/a/.b/..c/...", out) == 0 && strcmp(out, "/a/.b/..c/...") == 0);
    CHECK(ws_spool_normalise("spool", out) == -1);
    CHECK(ws_spool_normalise("./spool", out) == -1);
    CHECK(ws_spool_normalise("", out) == -1);
}

/* A lock file that is not ours is never waited for; a busy one of ours is, up to wait_s. */
static void test_lock(void)
{
    char dir[PATH_MAX], path[PATH_MAX + 32];
    struct ws_error err = {0};
    struct timespec t0, t1;
    int d, fd = -1, fd2 = -1, held;

    snprintf(dir, sizeof(dir), "%s/locks", unit_tmpdir());
    REQUIRE(mkdir(dir, 0700) == 0);
    REQUIRE((d = open(dir, O_RDONLY | O_DIRECTORY)) >= 0);
    REQUIRE(ws_spool_lock(d, "A", 0, &fd, &err) == 0 && fd >= 0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK(ws_spool_lock(d, "A", 0.3, &fd2, &err) == WS_ERR_EXISTS && fd2 == -1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK(t1.tv_sec - t0.tv_sec + (t1.tv_nsec - t0.tv_nsec) / 1e9 >= 0.3);
    ws_spool_unlock(d, "A", fd);
    snprintf(path, sizeof(path), "%s/A", dir);
    CHECK(!exists(path)); /* unlinked while locked */
    /* a link at the name: not followed, not created through */
    snprintf(path, sizeof(path), "%s/B", dir);
    REQUIRE(symlink("/nonexistent-walsafe-target", path) == 0);
    CHECK(ws_spool_lock(d, "B", 5, &fd2, &err) == WS_ERR_CONFIG && fd2 == -1);
    CHECK(!exists("/nonexistent-walsafe-target"));
    if (geteuid() == 0) {
        /* another user's lock file, held: refused at once, not after wait_s */
        snprintf(path, sizeof(path), "%s/C", dir);
        REQUIRE(write_file(path, "", 0) == 0 && chown(path, OTHER_UID, OTHER_UID) == 0);
        held = open(path, O_RDWR);
        REQUIRE(held >= 0 && flock(held, LOCK_EX) == 0);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        CHECK(ws_spool_lock(d, "C", 5, &fd2, &err) == WS_ERR_CONFIG && fd2 == -1);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        CHECK(t1.tv_sec - t0.tv_sec < 1);
        close(held);
    } else {
        printf("    (not root: another user's lock file not tested)\n");
    }
    close(d);
}

/* The spool file sink: temp name, rename at finish, nothing left after abort. */
static void test_sink(void)
{
    char dir[PATH_MAX], path[PATH_MAX + 32];
    struct ws_error err = {0};
    struct ws_sink *s = NULL;
    int d;

    snprintf(dir, sizeof(dir), "%s/sink", unit_tmpdir());
    REQUIRE(mkdir(dir, 0700) == 0 && (d = open(dir, O_RDONLY | O_DIRECTORY)) >= 0);
    REQUIRE(ws_spool_sink_new(d, "rec", NULL, &s, &err) == 0);
    CHECK(count_entries(dir) == 1); /* the temp file */
    CHECK(ws_sink_write(s, "abc", 3, &err) == 0 && ws_sink_finish(s, &err) == 0);
    ws_sink_free(s);
    snprintf(path, sizeof(path), "%s/rec", dir);
    CHECK(count_entries(dir) == 1 && exists(path));
    s = NULL;
    REQUIRE(ws_spool_sink_new(d, "other", ".other.tmp", &s, &err) == 0);
    CHECK(ws_sink_write(s, "abc", 3, &err) == 0);
    ws_sink_free(s); /* abort */
    CHECK(count_entries(dir) == 1);
    /* an explicit temp name that exists (a link, say) is not written through */
    snprintf(path, sizeof(path), "%s/.x.tmp", dir);
    REQUIRE(symlink("/nonexistent-walsafe-target", path) == 0);
    s = NULL;
    CHECK(ws_spool_sink_new(d, "x", ".x.tmp", &s, &err) == WS_ERR_IO && s == NULL);
    CHECK(!exists("/nonexistent-walsafe-target"));
    /* a watch on the opened directory sees what happens in it */
    {
        int ifd = ws_spool_watch(d, IN_CREATE);
        char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
        REQUIRE(ifd >= 0);
        snprintf(path, sizeof(path), "%s/new", dir);
        REQUIRE(write_file(path, "", 0) == 0);
        CHECK(read(ifd, buf, sizeof(buf)) > 0);
        /* ws_spool_watch_wait() returns at an event and reads them all */
        snprintf(path, sizeof(path), "%s/new2", dir);
        REQUIRE(write_file(path, "", 0) == 0);
        {
            int64_t t0 = ws_mono_ms();
            ws_spool_watch_wait(ifd, 10000);
            CHECK(ws_mono_ms() - t0 < 5000);
            CHECK(read(ifd, buf, sizeof(buf)) < 0 && errno == EAGAIN);
        }
        close(ifd);
    }
    close(d);
}

/* ---- one table, both programs ---- */

enum outcome { USE, REFUSE, OFF };

struct fixture {
    char root[PATH_MAX]; /* the case's directory */
    char data[PATH_MAX]; /* data directory look-alike (the working directory of both) */
    char seg[3][WS_WAL_NAME_LEN + 1];
    struct ws_config cfg;
    char spool_cfg[PATH_MAX]; /* spool_dir as configured */
    char spool_at[PATH_MAX];  /* where the spool is when it is used */
    char victim[PATH_MAX];    /* a directory of files that must stay as they are */
    char pftag[64];           /* prefetch-<tag> of this configuration */
};

struct spool_case {
    const char *name;
    /* Plants what the case is about; returns 0, or -1 to skip (needs root). */
    int (*setup)(struct fixture *f);
    enum outcome push, fetch;
};

static void path_of(char *out, const struct fixture *f, const char *rel)
{
    snprintf(out, PATH_MAX, "%.3000s/%s", f->root, rel);
}

/* The case's directories: data/ (PG_VERSION, pg_wal with 3 ready segments), repo/, a key, a
 * victim directory of files, and spool_dir = root/spool unless the case says otherwise. */
static int fixture_make(struct fixture *f, int idx)
{
    char p[PATH_MAX], q[PATH_MAX + 64], key[PATH_MAX];

    memset(f, 0, sizeof(*f));
    if (unit_path(f->root, sizeof(f->root), "case%02d", idx) != 0 || unit_exists(f->root))
        return -1;
    path_of(f->data, f, "data");
    path_of(f->victim, f, "victim");
    path_of(f->spool_cfg, f, "spool");
    path_of(f->spool_at, f, "spool");
    snprintf(q, sizeof(q), "%s/pg_wal/archive_status", f->data);
    if (unit_mkdir(q) != 0 || unit_mkdir(f->victim) != 0)
        return -1;
    snprintf(q, sizeof(q), "%s/PG_VERSION", f->data);
    if (write_file(q, "15\n", 3) != 0)
        return -1;
    snprintf(q, sizeof(q), "%s/pg_wal", f->data);
    for (int i = 0; i < 3; i++)
        if (unit_wal_ready(q, (uint64_t)i + 1, (uint32_t)i + 1, f->seg[i]) != 0)
            return -1;
    for (int i = 0; i < 3; i++) {
        static const char *const names[] = {"1259", "16384", "PG_VERSION"};
        snprintf(q, sizeof(q), "%s/%s", f->victim, names[i]);
        if (write_file(q, "canary", 6) != 0)
            return -1;
    }
    path_of(p, f, "repo");
    path_of(key, f, "key");
    if (unit_mkdir(p) != 0 || unit_key_file(key, NULL) != 0)
        return -1;
    return unit_config(&f->cfg, "repo", p, "cluster", "main", "parallel", "2", "timeout", "5",
                       "encrypt_key_file", key, NULL);
}

/* prefetch-<tag> of f's configuration in f's data directory, learnt from a spool elsewhere. */
static int learn_tag(struct fixture *f)
{
    struct ws_prefetch_spool sp;
    struct ws_error err = {0};
    struct ws_config probe = f->cfg;
    char dir[PATH_MAX];

    path_of(dir, f, "probe");
    probe.spool_dir = dir;
    if (ws_prefetch_spool_open(&probe, "pg_wal/RECOVERYXLOG", &sp, &err) != 0)
        return -1;
    snprintf(f->pftag, sizeof(f->pftag), "%s", sp.name);
    ws_prefetch_spool_close(&sp);
    return 0;
}

static int mkdir_mode(const char *path, mode_t mode)
{
    return mkdir(path, 0700) == 0 && chmod(path, mode) == 0 ? 0 : -1;
}

static int plant_link(struct fixture *f, const char *rel, const char *target)
{
    char p[PATH_MAX];
    path_of(p, f, rel);
    return symlink(target, p);
}

/* -- the cases -- */

static int c_plain(struct fixture *f)
{
    (void)f;
    return 0;
}

static int c_relative(struct fixture *f)
{
    snprintf(f->spool_cfg, sizeof(f->spool_cfg), "spool");
    path_of(f->spool_at, f, "data/spool"); /* where it must not appear */
    return 0;
}

static int c_dots(struct fixture *f)
{
    char p[PATH_MAX];
    path_of(p, f, "x");
    snprintf(f->spool_cfg, sizeof(f->spool_cfg), "%.3000s/./x/../spool/", f->root);
    return mkdir(p, 0700); /* x exists: ".." is still lexical, the spool is root/spool */
}

static int c_symlinked(struct fixture *f)
{
    char real[PATH_MAX];
    path_of(real, f, "real");
    path_of(f->spool_cfg, f, "link");
    snprintf(f->spool_at, sizeof(f->spool_at), "%s", real);
    return mkdir(real, 0700) == 0 ? plant_link(f, "link", real) : -1;
}

static int c_relative_link(struct fixture *f)
{
    char real[PATH_MAX], x[PATH_MAX];
    path_of(real, f, "real/inner");
    path_of(f->spool_cfg, f, "link/inner");
    snprintf(f->spool_at, sizeof(f->spool_at), "%s", real);
    path_of(real, f, "real");
    path_of(x, f, "x");
    return mkdir(real, 0700) == 0 && mkdir(x, 0700) == 0 ? plant_link(f, "link", "./x/../real")
                                                         : -1;
}

static int c_in_pgdata(struct fixture *f)
{
    path_of(f->spool_cfg, f, "data/spool");
    snprintf(f->spool_at, sizeof(f->spool_at), "%s", f->spool_cfg);
    return 0;
}

static int c_pgdata_itself(struct fixture *f)
{
    /* spool_dir is the data directory's parent and the cluster is named like it */
    snprintf(f->spool_cfg, sizeof(f->spool_cfg), "%s", f->root);
    snprintf(f->spool_at, sizeof(f->spool_at), "%s", f->root);
    return ws_config_set(&f->cfg, "cluster", "data", "test", NULL);
}

static int c_in_pgwal(struct fixture *f)
{
    path_of(f->spool_cfg, f, "data/pg_wal/archive_status/../spool");
    path_of(f->spool_at, f, "data/pg_wal/spool");
    return 0;
}

static int c_in_pgwal_target(struct fixture *f)
{
    /* pg_wal is a link to another directory; the spool is inside that one */
    char wal[PATH_MAX], disk[PATH_MAX];
    path_of(wal, f, "data/pg_wal");
    path_of(disk, f, "waldisk");
    path_of(f->spool_cfg, f, "waldisk/spool");
    snprintf(f->spool_at, sizeof(f->spool_at), "%s", f->spool_cfg);
    return rename(wal, disk) == 0 && symlink(disk, wal) == 0 ? 0 : -1;
}

static int c_foreign(struct fixture *f)
{
    if (geteuid() != 0)
        return -1;
    return mkdir(f->spool_at, 0700) == 0 && chown(f->spool_at, OTHER_UID, OTHER_UID) == 0 ? 0 : -1;
}

static int c_foreign_parent(struct fixture *f)
{
    char anc[PATH_MAX];
    if (geteuid() != 0)
        return -1;
    path_of(anc, f, "shared");
    path_of(f->spool_cfg, f, "shared/spool");
    snprintf(f->spool_at, sizeof(f->spool_at), "%s", f->spool_cfg);
    return mkdir_mode(anc, 0755) == 0 && mkdir(f->spool_at, 0700) == 0 &&
                   chown(anc, OTHER_UID, OTHER_UID) == 0
               ? 0
               : -1;
}

static int c_group_writable(struct fixture *f)
{
    return mkdir_mode(f->spool_at, 0770);
}

static int c_group_writable_parent(struct fixture *f)
{
    char anc[PATH_MAX];
    path_of(anc, f, "shared");
    path_of(f->spool_cfg, f, "shared/spool");
    snprintf(f->spool_at, sizeof(f->spool_at), "%s", f->spool_cfg);
    return mkdir_mode(anc, 0775) == 0 && mkdir(f->spool_at, 0700) == 0 ? 0 : -1;
}

static int c_sticky(struct fixture *f)
{
    return mkdir_mode(f->spool_at, 01777); /* as /tmp: <cluster> in it is ours */
}

static int c_sticky_foreign_cluster(struct fixture *f)
{
    char p[PATH_MAX];
    if (geteuid() != 0)
        return -1;
    path_of(p, f, "spool/main");
    return mkdir_mode(f->spool_at, 01777) == 0 && mkdir_mode(p, 0777) == 0 &&
                   chown(p, OTHER_UID, OTHER_UID) == 0
               ? 0
               : -1;
}

static int c_sticky_foreign_link(struct fixture *f)
{
    char dir[PATH_MAX], real[PATH_MAX], link[PATH_MAX];
    if (geteuid() != 0)
        return -1;
    path_of(dir, f, "tmp");
    path_of(real, f, "real");
    path_of(link, f, "tmp/spool");
    snprintf(f->spool_cfg, sizeof(f->spool_cfg), "%s", link);
    snprintf(f->spool_at, sizeof(f->spool_at), "%s", real);
    return mkdir_mode(dir, 01777) == 0 && mkdir(real, 0700) == 0 && symlink(real, link) == 0 &&
                   lchown(link, OTHER_UID, OTHER_UID) == 0
               ? 0
               : -1;
}

static int c_link_cluster(struct fixture *f)
{
    return mkdir(f->spool_at, 0700) == 0 ? plant_link(f, "spool/main", f->victim) : -1;
}

static int c_cluster_open(struct fixture *f)
{
    char p[PATH_MAX];
    path_of(p, f, "spool/main");
    return mkdir(f->spool_at, 0700) == 0 ? mkdir_mode(p, 0777) : -1;
}

static int c_link_pushed(struct fixture *f)
{
    char p[PATH_MAX];
    path_of(p, f, "spool/main");
    return mkdir(f->spool_at, 0700) == 0 && mkdir(p, 0700) == 0
               ? plant_link(f, "spool/main/pushed", f->victim)
               : -1;
}

static int c_link_pushing(struct fixture *f)
{
    char p[PATH_MAX], wal[PATH_MAX];
    path_of(p, f, "spool/main");
    path_of(wal, f, "data/pg_wal");
    return mkdir(f->spool_at, 0700) == 0 && mkdir(p, 0700) == 0
               ? plant_link(f, "spool/main/pushing", wal)
               : -1;
}

static int c_link_prefetch(struct fixture *f)
{
    char p[PATH_MAX], rel[128];
    path_of(p, f, "spool/main");
    snprintf(rel, sizeof(rel), "spool/main/%s", f->pftag);
    return mkdir(f->spool_at, 0700) == 0 && mkdir(p, 0700) == 0 ? plant_link(f, rel, f->victim)
                                                                : -1;
}

static int c_file(struct fixture *f)
{
    return write_file(f->spool_at, "x", 1);
}

static int c_empty(struct fixture *f)
{
    f->spool_cfg[0] = '\0';
    path_of(f->spool_at, f, "data"); /* nothing may appear in the working directory */
    return 0;
}

static const struct spool_case cases[] = {
    {"an absolute spool_dir", c_plain, USE, USE},
    {"relative", c_relative, REFUSE, REFUSE},
    {"\".\" and \"..\" (lexical)", c_dots, USE, USE},
    {"a symlinked spool_dir", c_symlinked, USE, USE},
    {"a relative link with \"..\" on the way", c_relative_link, USE, USE},
    {"inside the data directory", c_in_pgdata, REFUSE, REFUSE},
    {"<spool_dir>/<cluster> is the data directory", c_pgdata_itself, REFUSE, REFUSE},
    {"inside pg_wal", c_in_pgwal, REFUSE, REFUSE},
    {"inside pg_wal's link target", c_in_pgwal_target, REFUSE, REFUSE},
    {"owned by another user", c_foreign, REFUSE, REFUSE},
    {"below a directory of another user", c_foreign_parent, REFUSE, REFUSE},
    {"group-writable", c_group_writable, REFUSE, REFUSE},
    {"below a group-writable directory", c_group_writable_parent, REFUSE, REFUSE},
    {"sticky and world-writable (as /tmp)", c_sticky, USE, USE},
    {"sticky, <cluster> made by another user", c_sticky_foreign_cluster, REFUSE, REFUSE},
    {"another user's link in a sticky directory", c_sticky_foreign_link, REFUSE, REFUSE},
    {"a link at <spool>/<cluster>", c_link_cluster, REFUSE, REFUSE},
    {"<spool>/<cluster> writable by others", c_cluster_open, REFUSE, REFUSE},
    {"a link at pushed", c_link_pushed, REFUSE, USE},
    {"a link at pushing", c_link_pushing, REFUSE, USE},
    {"a link at prefetch-<tag>", c_link_prefetch, USE, REFUSE},
    {"a file at spool_dir", c_file, REFUSE, REFUSE},
    {"spool_dir = ''", c_empty, OFF, OFF},
};

/* Runs fn with stderr in a file; the number of WARNING lines and whether `want` was logged. */
struct captured {
    int warnings;
    int said;        /* the line expected for the outcome was there */
    char text[4096]; /* what was logged, shown when the case fails */
};

static void capture_begin(int *saved, char *path, size_t pathsz)
{
    int fd;
    snprintf(path, pathsz, "%s/stderr", unit_tmpdir());
    fflush(stderr);
    *saved = dup(2);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 2);
    close(fd);
}

static void capture_end(int saved, const char *path, const char *want, struct captured *c)
{
    FILE *f;
    char line[2048];

    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    memset(c, 0, sizeof(*c));
    if (!(f = fopen(path, "r")))
        return;
    while (fgets(line, sizeof(line), f)) {
        if (strstr(line, "WARNING"))
            c->warnings++;
        if (want && strstr(line, want))
            c->said = 1;
        size_t len = strlen(c->text);
        snprintf(c->text + len, sizeof(c->text) - len, "%s", line);
    }
    fclose(f);
}

/* Waits for the push-ahead process of a spool at `at` (it holds pushing/.alive shared). */
static void settle(const char *at)
{
    char path[PATH_MAX + 64];
    int fd;
    snprintf(path, sizeof(path), "%s/main/pushing/.alive", at);
    if ((fd = open(path, O_RDWR | O_NOFOLLOW)) >= 0) {
        if (flock(fd, LOCK_EX) != 0)
            unit_fail(__FILE__, __LINE__, "flock .alive");
        close(fd);
    }
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

/* Did the program use a spool at f->spool_at? */
static int used(const struct fixture *f, int push)
{
    char p[PATH_MAX + 128];
    DIR *d;
    struct dirent *de;
    int found = 0;

    if (push) {
        snprintf(p, sizeof(p), "%s/main/pushed/%s", f->spool_at, f->seg[0]);
        return exists(p);
    }
    snprintf(p, sizeof(p), "%s/main", f->spool_at);
    if (!(d = opendir(p)))
        return 0;
    while ((de = readdir(d)) != NULL) {
        char w[2 * PATH_MAX];
        struct stat st;
        if (strncmp(de->d_name, "prefetch-", 9) != 0)
            continue;
        snprintf(w, sizeof(w), "%.4200s/%.255s/wanted", p, de->d_name);
        if (lstat(w, &st) == 0 && S_ISREG(st.st_mode))
            found = 1;
    }
    closedir(d);
    return found;
}

static void run_case(const struct spool_case *c, int idx, int push, const char *cwd)
{
    static const char *const progs[] = {"wal-fetch", "wal-push"};
    struct fixture f;
    struct captured cap;
    char err_path[PATH_MAX], wal[64];
    enum outcome want = push ? c->push : c->fetch;
    const char *say = want == REFUSE ? "is disabled:"
                      : want == OFF  ? "is off: spool_dir is empty"
                                     : NULL;
    int saved, rc = 0, failed_before = unit_failures, data_entries, victim_entries;

    if (fixture_make(&f, 2 * idx + push) != 0 || chdir(f.data) != 0) {
        unit_fail(__FILE__, __LINE__, "fixture");
        return;
    }
    if (learn_tag(&f) != 0 || c->setup(&f) != 0) {
        printf("    %s, %s: skipped (needs root)\n", c->name, progs[push]);
        ws_config_free(&f.cfg);
        if (chdir(cwd) != 0)
            unit_fail(__FILE__, __LINE__, "chdir back");
        return;
    }
    if (ws_config_set(&f.cfg, "spool_dir", f.spool_cfg, "test", NULL) != 0)
        unit_fail(__FILE__, __LINE__, "spool_dir");
    data_entries = count_entries(f.data);
    victim_entries = count_entries(f.victim);
    capture_begin(&saved, err_path, sizeof(err_path));
    if (push) {
        struct ws_pushahead_result res;
        struct ws_error err = {0};
        snprintf(wal, sizeof(wal), "pg_wal/%s", f.seg[0]);
        rc = ws_pushahead_push(&f.cfg, wal, &res, &err);
        settle(f.spool_at);
    } else {
        struct ws_prefetch_opts o = {2, 60, 0};
        rc = ws_prefetch_serve_opts(&f.cfg, f.seg[0], "pg_wal/RECOVERYXLOG", &o);
    }
    capture_end(saved, err_path, say, &cap);

    CHECK(rc == 0); /* wal-push archived X; wal-fetch found nothing to serve */
    CHECK(cap.warnings == (want == REFUSE ? 1 : 0));
    if (say)
        CHECK(cap.said);
    if (want == USE)
        CHECK(used(&f, push));
    else
        CHECK(!used(&f, push));
    /* nothing created in the data directory, nothing deleted or added through a link */
    CHECK(count_entries(f.data) == data_entries);
    CHECK(count_entries(f.victim) == victim_entries);
    {
        char q[PATH_MAX + 64];
        snprintf(q, sizeof(q), "%s/pg_wal/%s", f.data, f.seg[1]);
        CHECK(exists(q));
    }
    if (unit_failures != failed_before)
        fprintf(stderr, "    ^ case \"%s\", %s (spool_dir \"%s\"), which logged:\n%s", c->name,
                progs[push], f.spool_cfg, cap.text);
    ws_config_free(&f.cfg);
    if (chdir(cwd) != 0)
        unit_fail(__FILE__, __LINE__, "chdir back");
}

static void test_table(void)
{
    char cwd[PATH_MAX];
    int level = ws_log_get_level();

    REQUIRE(getcwd(cwd, sizeof(cwd)) != NULL);
    ws_log_set_level(WS_LOG_INFO);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        for (int push = 0; push <= 1; push++)
            run_case(&cases[i], (int)i, push, cwd);
    ws_log_set_level(level);
}

/* The idle prefetcher removes its directory while a wal-fetch opens it (between the mkdirat() that
 * finds it and the openat()): the directory is made again, not refused with a WARNING. */
static void test_removed_while_opened(void)
{
    static const char *const subs[] = {"prefetch-0123456789abcdef"};
    struct ws_config cfg;
    struct ws_error err = {0};
    struct ws_spool sp;
    char dir[PATH_MAX];

    snprintf(dir, sizeof(dir), "%s/removed", unit_tmpdir());
    ws_config_init(&cfg);
    REQUIRE(ws_config_set(&cfg, "spool_dir", dir, "test", &err) == 0 &&
            ws_config_set(&cfg, "cluster", "main", "test", &err) == 0);
    REQUIRE(ws_spool_open(&cfg, NULL, subs, 1, 1, &sp, &err) == 0); /* it exists now */
    ws_spool_close(&sp);
    rmdir_after_mkdirat = 1;
    memset(&err, 0, sizeof(err));
    CHECK(ws_spool_open(&cfg, NULL, subs, 1, 1, &sp, &err) == 0);
    if (err.msg[0])
        fprintf(stderr, "    %s\n", err.msg);
    CHECK(rmdir_after_mkdirat == 0); /* it was removed once */
    CHECK(sp.nsub == 1 && sp.sub[0].fd >= 0);
    ws_spool_close(&sp);
    rmdir_after_mkdirat = 0;
    ws_config_free(&cfg);
}

const struct unit_test unit_tests[] = {
    {"lexical normalisation", test_normalise},
    {"lock files", test_lock},
    {"spool file sink", test_sink},
    {"a directory removed while it is opened", test_removed_while_opened},
    {"spool_dir edge cases, answered alike by push-ahead and prefetch", test_table},
    {NULL, NULL},
};
