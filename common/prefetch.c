#include "prefetch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "log.h"
#include "object.h"
#include "repo.h"
#include "sink.h"
#include "storage.h"

#define LOCK_FILE "lock"
#define WANTED_FILE "wanted"
#define RESERVE_MAX (UINT64_C(4) << 30)

/* ---- small helpers ---- */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int is_hex_upper(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'F')))
            return 0;
    return 1;
}

static int is_hex_lower(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* A WAL segment name (24 upper-case hex digits) at s, followed by `rest` exactly. */
static int segment_then(const char *s, const char *rest)
{
    return strlen(s) == WS_WAL_NAME_LEN + strlen(rest) && is_hex_upper(s, WS_WAL_NAME_LEN) &&
           strcmp(s + WS_WAL_NAME_LEN, rest) == 0;
}

/* "<segment>.<32 lower-case hex>" */
static int is_entry_name(const char *s)
{
    return strlen(s) == WS_PREFETCH_ENTRY_LEN && is_hex_upper(s, WS_WAL_NAME_LEN) &&
           s[WS_WAL_NAME_LEN] == '.' && is_hex_lower(s + WS_WAL_NAME_LEN + 1, 32);
}

static int path_join(char *out, size_t outsz, const char *dir, const char *name)
{
    int n = snprintf(out, outsz, "%s/%s", dir, name);
    return n > 0 && (size_t)n < outsz ? 0 : -1;
}

static void read_boot_id(char out[64])
{
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, out, 63) : -1;

    if (fd >= 0)
        close(fd);
    if (n < 0)
        n = 0;
    out[n] = '\0';
    out[strcspn(out, "\n")] = '\0';
}

/* The system's boot time (epoch seconds), 0 if unknown. */
static int64_t boot_time(void)
{
    FILE *f = fopen("/proc/stat", "re");
    char line[256];
    long long bt = 0;

    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "btime %lld", &bt) == 1)
            break;
    fclose(f);
    return bt;
}

/* ---- the pure pieces ---- */

void ws_prefetch_default_opts(struct ws_prefetch_opts *o)
{
    const char *env = getenv("WALSAFE_PREFETCH_IDLE_TIMEOUT");
    char *end;
    long v;

    o->idle_timeout = WS_PREFETCH_IDLE_TIMEOUT;
    o->max_life = WS_PREFETCH_MAX_LIFE;
    o->spawn = 1;
    if (env && *env) {
        errno = 0;
        v = strtol(env, &end, 10);
        if (errno == 0 && *end == '\0' && v >= 1 && v <= 300)
            o->idle_timeout = (int)v;
    }
}

void ws_prefetch_limits(int parallel, uint64_t seg_size, int *ahead, int *workers)
{
    int k = parallel >= WS_PREFETCH_MAX_AHEAD / 2 ? WS_PREFETCH_MAX_AHEAD : 2 * parallel;
    uint64_t by_bytes = seg_size ? WS_PREFETCH_MAX_BYTES / seg_size : 1;

    if ((uint64_t)k > by_bytes)
        k = (int)by_bytes;
    if (k < 1)
        k = 1;
    *ahead = k;
    *workers = parallel < k ? parallel : k;
    if (*workers < 1)
        *workers = 1;
}

int ws_prefetch_next_name(const char *wanted, uint64_t seg_size, int i,
                          char out[WS_WAL_NAME_LEN + 1])
{
    uint32_t tli;
    uint64_t segno, limit;

    if (ws_wal_classify(wanted) != WS_WAL_SEGMENT || !ws_wal_seg_size_valid(seg_size) ||
        ws_wal_parse_name(wanted, seg_size, &tli, &segno) != 0 || i < 0)
        return -1;
    limit = (UINT64_C(1) << 32) * ws_wal_segs_per_id(seg_size); /* first segno too large */
    if (segno + (uint64_t)i >= limit)
        return -1;
    ws_wal_format_name(out, tli, segno + (uint64_t)i, seg_size);
    return 0;
}

int ws_prefetch_classify(const char *file, const char *wanted, uint64_t seg_size, int ahead,
                         char name_out[WS_WAL_NAME_LEN + 1])
{
    uint32_t wtli, tli;
    uint64_t wseg, seg;

    name_out[0] = '\0';
    if (strcmp(file, LOCK_FILE) == 0 || strcmp(file, WANTED_FILE) == 0 ||
        strncmp(file, ".wanted.", 8) == 0)
        return WS_PREFETCH_OTHER;
    if (file[0] == '.' && (segment_then(file + 1, ".tmp") || segment_then(file + 1, ".ready"))) {
        memcpy(name_out, file + 1, WS_WAL_NAME_LEN);
        name_out[WS_WAL_NAME_LEN] = '\0';
        return WS_PREFETCH_TEMP;
    }
    if (!is_entry_name(file))
        return WS_PREFETCH_REMOVE;
    memcpy(name_out, file, WS_WAL_NAME_LEN);
    name_out[WS_WAL_NAME_LEN] = '\0';
    if (!wanted || ws_wal_classify(wanted) != WS_WAL_SEGMENT ||
        ws_wal_parse_name(wanted, seg_size, &wtli, &wseg) != 0 ||
        ws_wal_parse_name(name_out, seg_size, &tli, &seg) != 0)
        return WS_PREFETCH_REMOVE;
    if (tli != wtli || seg < wseg || seg - wseg > (uint64_t)ahead)
        return WS_PREFETCH_REMOVE;
    return WS_PREFETCH_KEEP;
}

static int digest_field(EVP_MD_CTX *c, const void *p, size_t n)
{
    uint8_t len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
    return EVP_DigestUpdate(c, len, 8) == 1 && (n == 0 || EVP_DigestUpdate(c, p, n) == 1);
}

int ws_prefetch_entry_name(const char *wal_name, const struct ws_prefetch_binding *b,
                           char out[WS_PREFETCH_ENTRY_LEN + 1], struct ws_error *err)
{
    static const char domain[] = "walsafe prefetch entry v1";
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    uint8_t md[32], num[16];
    unsigned int mdlen = 0;
    int ok;

    for (int i = 0; i < 8; i++) {
        num[i] = (uint8_t)(b->size >> (56 - 8 * i));
        num[8 + i] = (uint8_t)((uint64_t)b->mtime >> (56 - 8 * i));
    }
    ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 &&
         digest_field(c, domain, sizeof(domain) - 1) &&
         digest_field(c, b->boot_id, strlen(b->boot_id)) &&
         digest_field(c, b->location, strlen(b->location)) &&
         digest_field(c, b->key, strlen(b->key)) && digest_field(c, b->keyring_fp, 32) &&
         digest_field(c, num, sizeof(num)) && digest_field(c, b->tail, b->tail_len) &&
         EVP_DigestFinal_ex(c, md, &mdlen) == 1 && mdlen == 32;
    EVP_MD_CTX_free(c);
    if (!ok)
        return ws_error_set(err, WS_ERR_INTERNAL, "SHA-256 failed");
    if (ws_wal_classify(wal_name) != WS_WAL_SEGMENT)
        return ws_error_set(err, WS_ERR_INTERNAL, "\"%s\" is not a segment name", wal_name);
    memcpy(out, wal_name, WS_WAL_NAME_LEN);
    out[WS_WAL_NAME_LEN] = '.';
    ws_hex(md, 16, out + WS_WAL_NAME_LEN + 1);
    return 0;
}

void ws_prefetch_keyring_fp(const struct ws_keyring *kr, uint8_t out[32])
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned int n = 0;
    int ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1;

    for (size_t i = 0; ok && i < kr->n; i++)
        ok = EVP_DigestUpdate(c, kr->keys[i].id, WS_KEY_ID_LEN) == 1;
    if (!ok || EVP_DigestFinal_ex(c, out, &n) != 1)
        memset(out, 0xff, 32); /* never equal to a real fingerprint of the same keyring */
    EVP_MD_CTX_free(c);
}

int ws_prefetch_path_inside(const char *path, const char *dir)
{
    size_t n = strlen(dir);

    if (n == 1 && dir[0] == '/')
        return path[0] == '/';
    while (n > 1 && dir[n - 1] == '/')
        n--;
    return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* Appends the components of rest to out (an absolute, resolved path), dropping "." and
 * applying "..". */
static int append_components(char out[PATH_MAX], const char *rest)
{
    const char *p = rest;

    while (*p) {
        size_t n = strcspn(p, "/"), len = strlen(out);
        if (n == 0 || (n == 1 && p[0] == '.')) {
            /* nothing */
        } else if (n == 2 && p[0] == '.' && p[1] == '.') {
            char *slash = strrchr(out, '/');
            if (slash && slash != out)
                *slash = '\0';
            else
                out[1] = '\0';
        } else {
            int need_slash = !(len == 1 && out[0] == '/');
            if (len + need_slash + n >= PATH_MAX)
                return -1;
            if (need_slash)
                out[len++] = '/';
            memcpy(out + len, p, n);
            out[len + n] = '\0';
        }
        p += n;
        while (*p == '/')
            p++;
    }
    return 0;
}

int ws_prefetch_resolve(const char *path, char out[PATH_MAX], struct ws_error *err)
{
    char buf[PATH_MAX], cwd[PATH_MAX];
    int n;

    if (path[0] == '/') {
        n = snprintf(buf, sizeof(buf), "%s", path);
    } else {
        if (!getcwd(cwd, sizeof(cwd)))
            return ws_error_setsys(err, WS_ERR_IO, errno,
                                   "could not determine the working directory");
        n = snprintf(buf, sizeof(buf), "%s/%s", cwd, path);
    }
    if (n < 0 || (size_t)n >= sizeof(buf))
        return ws_error_set(err, WS_ERR_IO, "path \"%s\" is too long", path);
    /* The longest prefix that exists is resolved by the kernel; the rest is lexical. */
    for (size_t cut = strlen(buf);;) {
        char save = buf[cut];
        buf[cut] = '\0';
        if (realpath(cut ? buf : "/", out)) {
            buf[cut] = save;
            if (append_components(out, buf + cut) != 0)
                return ws_error_set(err, WS_ERR_IO, "path \"%s\" is too long", path);
            return 0;
        }
        buf[cut] = save;
        if (cut == 0)
            return ws_error_setsys(err, WS_ERR_IO, errno, "could not resolve path \"%s\"", path);
        while (cut > 0 && buf[cut - 1] != '/')
            cut--;
        while (cut > 1 && buf[cut - 1] == '/')
            cut--;
        if (cut == 1)
            cut = 0;
    }
}

/* ---- the spool directory ---- */

int ws_prefetch_spool_dir(const struct ws_config *cfg, const char *dest_path, char out[PATH_MAX],
                          struct ws_error *err)
{
    char cwd[PATH_MAX], spool[PATH_MAX], other[PATH_MAX], tag[17];
    uint8_t md[32];
    unsigned int mdlen = 0;
    EVP_MD_CTX *c;
    struct stat st;
    const char *slash;
    int rc, ok, n;

    if (!getcwd(cwd, sizeof(cwd)))
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not determine the working directory");
    c = EVP_MD_CTX_new();
    ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 &&
         digest_field(c, cfg->repo, strlen(cfg->repo)) &&
         digest_field(c, cfg->cluster, strlen(cfg->cluster)) && digest_field(c, cwd, strlen(cwd)) &&
         EVP_DigestFinal_ex(c, md, &mdlen) == 1;
    EVP_MD_CTX_free(c);
    if (!ok)
        return ws_error_set(err, WS_ERR_INTERNAL, "SHA-256 failed");
    ws_hex(md, 8, tag);
    if ((rc = ws_prefetch_resolve(cfg->spool_dir, spool, err)) != 0)
        return rc;
    /* Never inside pg_wal (PostgreSQL owns every file there), nor elsewhere in the data
     * directory (base backups would copy the spool), nor beside DEST_PATH. */
    if (stat("pg_wal", &st) == 0 && ws_prefetch_resolve("pg_wal", other, err) == 0 &&
        ws_prefetch_path_inside(spool, other))
        return ws_error_set(err, WS_ERR_CONFIG, "spool_dir \"%s\" is inside pg_wal (\"%s\")",
                            cfg->spool_dir, other);
    if (stat("PG_VERSION", &st) == 0 && ws_prefetch_path_inside(spool, cwd))
        return ws_error_set(err, WS_ERR_CONFIG,
                            "spool_dir \"%s\" is inside the data directory \"%s\"", cfg->spool_dir,
                            cwd);
    slash = strrchr(dest_path, '/');
    n = slash ? snprintf(cwd, sizeof(cwd), "%.*s", (int)(slash - dest_path), dest_path)
              : snprintf(cwd, sizeof(cwd), ".");
    if (n > 0 && (size_t)n < sizeof(cwd) &&
        ws_prefetch_resolve(*cwd ? cwd : "/", other, err) == 0 &&
        ws_prefetch_path_inside(spool, other))
        return ws_error_set(err, WS_ERR_CONFIG,
                            "spool_dir \"%s\" is inside the directory of DEST_PATH (\"%s\")",
                            cfg->spool_dir, other);
    n = snprintf(out, PATH_MAX, "%s/%s/prefetch-%s", strcmp(spool, "/") ? spool : "", cfg->cluster,
                 tag);
    if (n < 0 || n >= PATH_MAX)
        return ws_error_set(err, WS_ERR_CONFIG, "spool_dir \"%s\" is too long", cfg->spool_dir);
    if ((rc = ws_mkdir_p(out, 0700, err)) != 0)
        return rc;
    if (lstat(out, &st) != 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not stat directory \"%s\"", out);
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077) != 0)
        return ws_error_set(err, WS_ERR_CONFIG,
                            "spool directory \"%s\" must be a directory owned by this user "
                            "with no access for group or others",
                            out);
    return 0;
}

/* Reads the wanted file: its name (empty if absent or not a segment name) and its mtime. */
static void read_wanted(const char *spool, char name[WS_WAL_NAME_LEN + 1], struct timespec *mtime)
{
    char path[PATH_MAX], buf[64];
    struct stat st;
    ssize_t n = -1;
    int fd;

    name[0] = '\0';
    memset(mtime, 0, sizeof(*mtime));
    if (path_join(path, sizeof(path), spool, WANTED_FILE) != 0)
        return;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return;
    if (fstat(fd, &st) == 0) {
        *mtime = st.st_mtim;
        n = read(fd, buf, sizeof(buf) - 1);
    }
    close(fd);
    if (n == WS_WAL_NAME_LEN + 1 && buf[WS_WAL_NAME_LEN] == '\n') {
        buf[WS_WAL_NAME_LEN] = '\0';
        if (ws_wal_classify(buf) == WS_WAL_SEGMENT)
            memcpy(name, buf, WS_WAL_NAME_LEN + 1);
    }
}

/*
 * Records a request for wal_name: a new name replaces the wanted file (temp + rename), the same
 * name touches it (its mtime is the time of the last request). *changed = 1 for a new name.
 */
static int record_request(const char *spool, const char *wal_name, int *changed,
                          struct ws_error *err)
{
    char path[PATH_MAX], tmp[PATH_MAX], have[WS_WAL_NAME_LEN + 1], line[WS_WAL_NAME_LEN + 2];
    struct timespec mt;
    int fd;

    *changed = 0;
    if (path_join(path, sizeof(path), spool, WANTED_FILE) != 0 ||
        snprintf(tmp, sizeof(tmp), "%s/.wanted.%ld", spool, (long)getpid()) >= (int)sizeof(tmp))
        return ws_error_set(err, WS_ERR_IO, "spool path \"%s\" is too long", spool);
    read_wanted(spool, have, &mt);
    if (strcmp(have, wal_name) == 0 && utimensat(AT_FDCWD, path, NULL, AT_SYMLINK_NOFOLLOW) == 0)
        return 0;
    snprintf(line, sizeof(line), "%s\n", wal_name);
    /* The prefetcher removes an idle spool directory: if it went away under us, recreate it. */
    for (int attempt = 0;; attempt++) {
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd >= 0) {
            int ok = ws_write_all(fd, line, strlen(line)) == 0;
            close(fd);
            if (ok && rename(tmp, path) == 0) {
                *changed = 1;
                return 0;
            }
            unlink(tmp);
        }
        if (errno != ENOENT || attempt >= 2)
            return ws_error_setsys(err, WS_ERR_IO, errno, "could not write \"%s\"", path);
        if (ws_mkdir_p(spool, 0700, err) != 0)
            return err->code;
    }
}

int ws_prefetch_lock(const char *spool, int *out, struct ws_error *err)
{
    char path[PATH_MAX];
    struct stat a, b;

    *out = -1;
    if (path_join(path, sizeof(path), spool, LOCK_FILE) != 0)
        return ws_error_set(err, WS_ERR_IO, "spool path \"%s\" is too long", spool);
    /* Whoever holds the lock may unlink it on exit: a lock on a file that is no longer at the
     * path is no lock at all, so check the path still names what we locked. */
    for (int attempt = 0; attempt < 5; attempt++) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
            return ws_error_setsys(err, WS_ERR_IO, errno, "could not open lock file \"%s\"", path);
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            close(fd);
            if (e == EWOULDBLOCK)
                return ws_error_set(err, WS_ERR_EXISTS, "a prefetcher holds \"%s\"", path);
            return ws_error_setsys(err, WS_ERR_IO, e, "could not lock \"%s\"", path);
        }
        if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
            a.st_ino == b.st_ino) {
            *out = fd;
            return 0;
        }
        close(fd);
    }
    return ws_error_set(err, WS_ERR_EXISTS, "lock file \"%s\" keeps changing", path);
}

/* Is a prefetcher alive on this spool (does someone hold its lock)? */
static int lock_held(const char *spool)
{
    char path[PATH_MAX];
    int fd, held;

    if (path_join(path, sizeof(path), spool, LOCK_FILE) != 0)
        return 0;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return 0;
    held = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd); /* also releases our shared lock */
    return held;
}

/* ---- the foreground: wal-fetch ---- */

struct spool_scan {
    int entry;    /* some "<name>.<hex>" exists */
    int inflight; /* ".<name>.tmp" or ".<name>.ready" exists */
    char inflight_path[PATH_MAX];
};

static void scan_for(const char *spool, const char *wal_name, struct spool_scan *s)
{
    DIR *d = opendir(spool);
    struct dirent *de;

    memset(s, 0, sizeof(*s));
    if (!d)
        return;
    while ((de = readdir(d)) != NULL) {
        const char *f = de->d_name;
        if (strncmp(f, wal_name, WS_WAL_NAME_LEN) == 0 && is_entry_name(f)) {
            s->entry = 1;
        } else if (f[0] == '.' && strncmp(f + 1, wal_name, WS_WAL_NAME_LEN) == 0 &&
                   (segment_then(f + 1, ".tmp") || segment_then(f + 1, ".ready"))) {
            s->inflight = 1;
            path_join(s->inflight_path, sizeof(s->inflight_path), spool, f);
        }
    }
    closedir(d);
}

/* Removes every entry of wal_name (used when none of them may be served). */
static void remove_entries(const char *spool, const char *wal_name)
{
    DIR *d = opendir(spool);
    struct dirent *de;
    char path[PATH_MAX];

    if (!d)
        return;
    while ((de = readdir(d)) != NULL)
        if (strncmp(de->d_name, wal_name, WS_WAL_NAME_LEN) == 0 && is_entry_name(de->d_name) &&
            path_join(path, sizeof(path), spool, de->d_name) == 0)
            unlink(path);
    closedir(d);
}

/*
 * The prefetcher is writing wal_name: wait until its entry appears (1), or until the temp file
 * is gone without an entry, the prefetcher died, or the temp file made no progress for
 * `timeout` seconds (0).
 */
static int wait_inflight(const char *spool, const char *wal_name, int timeout)
{
    int ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK), found = 0;
    int64_t last_progress = mono_ms();
    off_t last_size = -1;
    struct spool_scan s;

    if (ifd >= 0 && inotify_add_watch(
                        ifd, spool, IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CLOSE_WRITE) < 0) {
        close(ifd);
        ifd = -1;
    }
    for (;;) {
        struct stat st;
        struct pollfd pfd = {ifd, POLLIN, 0};
        char buf[4096];

        scan_for(spool, wal_name, &s);
        if (s.entry) {
            found = 1;
            break;
        }
        if (!s.inflight || !lock_held(spool))
            break;
        if (stat(s.inflight_path, &st) == 0 && st.st_size != last_size) {
            last_size = st.st_size;
            last_progress = mono_ms();
        }
        if (mono_ms() - last_progress > (int64_t)timeout * 1000)
            break;
        if (ifd >= 0) {
            if (poll(&pfd, 1, 250) > 0)
                while (read(ifd, buf, sizeof(buf)) > 0)
                    ;
        } else {
            usleep(5000);
        }
    }
    if (ifd >= 0)
        close(ifd);
    return found;
}

/* Copies a spool entry to dest_path through a temp file beside it (spool on another file
 * system). */
static int copy_entry(const char *from, const char *dest_path, struct ws_error *err)
{
    struct ws_sink *out = NULL;
    int fd = open(from, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), rc;

    if (fd < 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not open \"%s\"", from);
    if ((rc = ws_file_sink_new(dest_path, 0600, 0, &out, err)) == 0 &&
        (rc = ws_sink_write_file(out, fd, from, err)) == 0)
        rc = ws_sink_finish(out, err);
    ws_sink_free(out);
    close(fd);
    return rc;
}

/* The entry name the stored object of wal_name has now in repo (stat + one ranged read of its
 * last bytes, no download). */
static int entry_name_now(struct ws_repo *repo, const uint8_t kr_fp[32], const char *boot_id,
                          const char *wal_name, char entry[WS_PREFETCH_ENTRY_LEN + 1],
                          struct ws_error *err)
{
    struct ws_storage_stat st;
    struct ws_sink *buf = NULL;
    struct ws_prefetch_binding b = {0};
    char key[256];
    size_t len = 0;
    int rc;

    if (!boot_id[0])
        return ws_error_set(err, WS_ERR_IO, "no boot id: spool entries cannot be trusted");
    if (ws_repo_wal_key(repo, wal_name, key, sizeof(key)) != 0)
        return ws_error_set(err, WS_ERR_INTERNAL, "could not build the key for \"%s\"", wal_name);
    if ((rc = ws_storage_stat(repo->st, key, &st, err)) != 0)
        return rc;
    b.tail_len = st.size < WS_PREFETCH_TAIL ? (size_t)st.size : WS_PREFETCH_TAIL;
    if ((rc = ws_buffer_sink_new(WS_PREFETCH_TAIL, &buf, err)) != 0 ||
        (rc = ws_storage_get(repo->st, key, st.size - b.tail_len, b.tail_len, buf, err)) != 0)
        goto out;
    b.tail = ws_buffer_sink_data(buf, &len);
    if (len != b.tail_len) {
        rc = ws_error_set(err, WS_ERR_CORRUPT, "short read of the end of \"%s\"", key);
        goto out;
    }
    b.boot_id = boot_id;
    b.location = repo->st->location;
    b.key = key;
    memcpy(b.keyring_fp, kr_fp, 32);
    b.size = st.size;
    b.mtime = st.mtime;
    rc = ws_prefetch_entry_name(wal_name, &b, entry, err);
out:
    ws_sink_free(buf);
    return rc;
}

static int current_entry_name(const struct ws_config *cfg, const struct ws_keyring *kr,
                              const char *wal_name, char entry[WS_PREFETCH_ENTRY_LEN + 1],
                              struct ws_error *err)
{
    struct ws_repo repo = {0};
    uint8_t fp[32];
    char boot_id[64];
    int rc;

    read_boot_id(boot_id);
    ws_prefetch_keyring_fp(kr, fp);
    if ((rc = ws_repo_open(cfg, &repo, err)) == 0) {
        repo.st->attempts = 1; /* a failure means "fetch as without the spool", which retries */
        rc = entry_name_now(&repo, fp, boot_id, wal_name, entry, err);
    }
    ws_repo_close(&repo);
    return rc;
}

/* Serves wal_name from the spool if a matching entry is there (or in flight); 1 if served. */
static int take_from_spool(const struct ws_config *cfg, const struct ws_keyring *kr,
                           const char *spool, const char *wal_name, const char *dest_path)
{
    struct spool_scan s;
    struct ws_error err = {0};
    char entry[WS_PREFETCH_ENTRY_LEN + 1], path[PATH_MAX];
    int e;

    scan_for(spool, wal_name, &s);
    if (!s.entry && !(s.inflight && wait_inflight(spool, wal_name, cfg->timeout)))
        return 0;
    if (current_entry_name(cfg, kr, wal_name, entry, &err) != 0) {
        /* Not there any more, unreachable, damaged at its end: the repository decides. */
        ws_log_info("prefetched copy of \"%s\" not used: %s", wal_name, err.msg);
        remove_entries(spool, wal_name);
        return 0;
    }
    if (path_join(path, sizeof(path), spool, entry) != 0)
        return 0;
    if (rename(path, dest_path) == 0) {
        ws_log_info("restored WAL file \"%s\" from the prefetch spool \"%s\"", wal_name, spool);
        return 1;
    }
    e = errno;
    if (e == EXDEV) {
        if (copy_entry(path, dest_path, &err) == 0) {
            unlink(path);
            ws_log_info("restored WAL file \"%s\" from the prefetch spool \"%s\" (copied)",
                        wal_name, spool);
            return 1;
        }
        ws_log_info("%s", err.msg);
    } else if (e == ENOENT) {
        ws_log_info("the spool holds no copy of \"%s\" bound to its stored object", wal_name);
    } else {
        ws_log_info("could not move \"%s\" to \"%s\": %s", path, dest_path, strerror(e));
    }
    remove_entries(spool, wal_name);
    return 0;
}

static void start_prefetcher(const struct ws_config *cfg, const struct ws_keyring *kr,
                             const char *spool, const struct ws_prefetch_opts *o);

int ws_prefetch_serve_opts(const struct ws_config *cfg, const char *wal_name, const char *dest_path,
                           const struct ws_prefetch_opts *o)
{
    char spool[PATH_MAX];
    struct ws_keyring kr;
    struct ws_error err = {0};
    int changed = 0, served = 0;

    if (cfg->parallel < 2 || ws_wal_classify(wal_name) != WS_WAL_SEGMENT)
        return 0;
    if (ws_prefetch_spool_dir(cfg, dest_path, spool, &err) != 0 ||
        record_request(spool, wal_name, &changed, &err) != 0) {
        ws_log_warning("prefetch disabled: %s (set spool_dir to a directory of this user outside "
                       "pg_wal, or parallel = 1)",
                       err.msg);
        return 0;
    }
    /* A bad key file is the repository fetch's to report, with its own exit status. */
    if (ws_keyring_load(cfg, &kr, &err) != 0)
        return 0;
    if (o->spawn && changed)
        start_prefetcher(cfg, &kr, spool, o);
    served = take_from_spool(cfg, &kr, spool, wal_name, dest_path);
    ws_keyring_wipe(&kr);
    return served;
}

int ws_prefetch_serve(const struct ws_config *cfg, const char *wal_name, const char *dest_path)
{
    struct ws_prefetch_opts o;
    ws_prefetch_default_opts(&o);
    return ws_prefetch_serve_opts(cfg, wal_name, dest_path, &o);
}

/* ---- the prefetcher ---- */

enum { SLOT_FREE = 0, SLOT_QUEUED, SLOT_RUNNING, SLOT_DONE };

struct slot {
    int state;
    char name[WS_WAL_NAME_LEN + 1];
    atomic_int cancel;
    int rc;
    struct ws_error err;
};

struct failure {
    char name[WS_WAL_NAME_LEN + 1];
    int attempts;
    int64_t retry_at; /* mono_ms */
};

/* A request: the wanted name and the mtime of the wanted file. */
struct stamp {
    char name[WS_WAL_NAME_LEN + 1];
    struct timespec mtime;
};

struct daemon {
    const struct ws_config *cfg;
    const struct ws_keyring *kr;
    const char *spool;
    char boot_id[64];
    uint8_t kr_fp[32];
    int64_t btime;
    uint64_t seg_size;
    int ahead, nworkers;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_int stop;
    struct slot slots[WS_PREFETCH_MAX_AHEAD];
    int pipe_r, pipe_w;
};

struct worker {
    struct daemon *d;
    pthread_t th;
    struct ws_repo repo;
    int repo_open;
};

/* Passes the stored bytes through and keeps their count and the last WS_PREFETCH_TAIL of
 * them; fails as soon as the job is cancelled (it left the window, or the prefetcher stops). */
struct tail_sink {
    struct ws_sink base;
    uint64_t count;
    uint8_t tail[WS_PREFETCH_TAIL];
    atomic_int *cancel, *stop;
};

static int tail_write(struct ws_sink *s, const void *buf, size_t len, struct ws_error *err)
{
    struct tail_sink *t = (struct tail_sink *)s;
    const uint8_t *p = buf;

    if (atomic_load(t->cancel) || atomic_load(t->stop))
        return ws_error_set(err, WS_ERR_INTERNAL, "prefetch cancelled");
    if (len >= WS_PREFETCH_TAIL) {
        memcpy(t->tail, p + len - WS_PREFETCH_TAIL, WS_PREFETCH_TAIL);
    } else if (len > 0) {
        memmove(t->tail, t->tail + len, WS_PREFETCH_TAIL - len);
        memcpy(t->tail + WS_PREFETCH_TAIL - len, p, len);
    }
    t->count += len;
    return ws_sink_write(s->next, buf, len, err);
}

static void tail_destroy(struct ws_sink *s)
{
    free(s);
}

static const struct ws_sink_ops tail_ops = {"tail", tail_write, NULL, NULL, tail_destroy};

static int tail_sink_new(struct ws_sink *next, atomic_int *cancel, atomic_int *stop,
                         struct ws_sink **out, struct ws_error *err)
{
    struct tail_sink *t = calloc(1, sizeof(*t));
    if (!t) {
        ws_sink_free(next);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    }
    t->base.ops = &tail_ops;
    t->base.next = next;
    t->cancel = cancel;
    t->stop = stop;
    *out = &t->base;
    return 0;
}

/* One segment into the spool: stat, then storage get -> tail -> object reader -> temp file;
 * published as .<name>.ready by the file sink, then renamed to its entry name. */
static int fetch_one(struct daemon *d, struct worker *w, struct slot *sl, struct ws_error *err)
{
    struct ws_storage_stat st;
    struct ws_sink *file = NULL, *reader = NULL, *chain = NULL;
    struct ws_file_opts fo = {0};
    struct ws_object_info info;
    struct ws_prefetch_binding b = {0};
    struct tail_sink *t;
    char key[256], tmp[PATH_MAX], ready[PATH_MAX], entry[WS_PREFETCH_ENTRY_LEN + 1];
    char final[PATH_MAX];
    int rc;

    if (!w->repo_open) {
        if ((rc = ws_repo_open(d->cfg, &w->repo, err)) != 0)
            return rc;
        w->repo.st->attempts = 1; /* the scheduler retries a failed file itself, later */
        w->repo_open = 1;
    }
    if (ws_repo_wal_key(&w->repo, sl->name, key, sizeof(key)) != 0)
        return ws_error_set(err, WS_ERR_INTERNAL, "could not build the key for \"%s\"", sl->name);
    if ((rc = ws_storage_stat(w->repo.st, key, &st, err)) != 0)
        return rc;
    if (snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", d->spool, sl->name) >= (int)sizeof(tmp) ||
        snprintf(ready, sizeof(ready), "%s/.%s.ready", d->spool, sl->name) >= (int)sizeof(ready))
        return ws_error_set(err, WS_ERR_IO, "spool path \"%s\" is too long", d->spool);
    fo.mode = 0600;
    fo.tmp_path = tmp;
    if ((rc = ws_file_sink_open(ready, &fo, &file, err)) != 0)
        return rc;
    rc = ws_object_reader_new(file, key, d->kr, 0, &reader, err);
    file = NULL; /* owned by the reader */
    if (rc != 0)
        return rc;
    if ((rc = tail_sink_new(reader, &sl->cancel, &d->stop, &chain, err)) != 0)
        return rc; /* the reader was freed with it */
    rc = ws_storage_get(w->repo.st, key, 0, WS_STORAGE_TO_END, chain, err);
    if (rc == 0)
        rc = ws_sink_finish(chain, err); /* verifies everything, then publishes .ready */
    if (rc != 0)
        goto out;
    ws_object_reader_info(reader, &info);
    if (info.content_len != d->seg_size) {
        unlink(ready);
        rc = ws_error_set(err, WS_ERR_CORRUPT,
                          "object \"%s\" holds %" PRIu64 " bytes, not a segment of %" PRIu64, key,
                          info.content_len, d->seg_size);
        goto out;
    }
    t = (struct tail_sink *)chain;
    b.boot_id = d->boot_id;
    b.location = w->repo.st->location;
    b.key = key;
    memcpy(b.keyring_fp, d->kr_fp, 32);
    b.size = t->count;
    b.mtime = st.mtime;
    b.tail_len = t->count < WS_PREFETCH_TAIL ? (size_t)t->count : WS_PREFETCH_TAIL;
    b.tail = t->tail + WS_PREFETCH_TAIL - b.tail_len;
    if ((rc = ws_prefetch_entry_name(sl->name, &b, entry, err)) != 0 ||
        path_join(final, sizeof(final), d->spool, entry) != 0) {
        unlink(ready);
        rc = rc ? rc : ws_error_set(err, WS_ERR_IO, "spool path \"%s\" is too long", d->spool);
        goto out;
    }
    if (rename(ready, final) != 0) {
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not rename \"%s\"", ready);
        unlink(ready);
    }
out:
    ws_sink_free(chain);
    return rc;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct daemon *d = w->d;

    pthread_mutex_lock(&d->mu);
    while (!atomic_load(&d->stop)) {
        struct slot *pick = NULL;
        struct ws_error e = {0};
        int rc;

        for (int i = 0; i < WS_PREFETCH_MAX_AHEAD; i++)
            if (d->slots[i].state == SLOT_QUEUED &&
                (!pick || strcmp(d->slots[i].name, pick->name) < 0))
                pick = &d->slots[i];
        if (!pick) {
            pthread_cond_wait(&d->cv, &d->mu);
            continue;
        }
        pick->state = SLOT_RUNNING;
        pthread_mutex_unlock(&d->mu);
        rc = fetch_one(d, w, pick, &e);
        pthread_mutex_lock(&d->mu);
        pick->rc = rc;
        pick->err = e;
        pick->state = SLOT_DONE;
        if (write(d->pipe_w, "x", 1) < 0) {
            /* the pipe is full: the dispatcher is awake anyway */
        }
    }
    pthread_mutex_unlock(&d->mu);
    if (w->repo_open)
        ws_repo_close(&w->repo);
    return NULL;
}

/* Is name within the window of wanted: (wanted, wanted + ahead], or [wanted, ...] with lo_incl. */
static int in_window(const struct daemon *d, const char *name, const char *wanted, int lo_incl)
{
    uint32_t wt, t;
    uint64_t ws, s;

    if (!wanted[0] || ws_wal_parse_name(wanted, d->seg_size, &wt, &ws) != 0 ||
        ws_wal_parse_name(name, d->seg_size, &t, &s) != 0 || t != wt)
        return 0;
    return s >= ws + (lo_incl ? 0 : 1) && s - ws <= (uint64_t)d->ahead;
}

static int job_running(struct daemon *d, const char *name)
{
    int r = 0;
    pthread_mutex_lock(&d->mu);
    for (int i = 0; i < WS_PREFETCH_MAX_AHEAD; i++)
        if (d->slots[i].state == SLOT_RUNNING && strcmp(d->slots[i].name, name) == 0)
            r = 1;
    pthread_mutex_unlock(&d->mu);
    return r;
}

#define MAX_PRESENT (2 * (WS_PREFETCH_MAX_AHEAD + 1))

/*
 * Tidies the spool for the wanted segment (empty: nothing is wanted) and lists the entries
 * kept in present[] (names). Removes entries outside the window, from before the last boot or
 * too old, junk, and temp files nobody is writing.
 */
static int sweep(struct daemon *d, const char *wanted, char present[][WS_WAL_NAME_LEN + 1])
{
    DIR *dir = opendir(d->spool);
    struct dirent *de;
    char name[WS_WAL_NAME_LEN + 1], path[PATH_MAX];
    time_t now = time(NULL);
    int n = 0;

    if (!dir)
        return 0;
    while ((de = readdir(dir)) != NULL) {
        struct stat st;
        int v;
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        v = ws_prefetch_classify(de->d_name, wanted, d->seg_size, d->ahead, name);
        if (v == WS_PREFETCH_OTHER || path_join(path, sizeof(path), d->spool, de->d_name) != 0)
            continue;
        if (v == WS_PREFETCH_TEMP) {
            if (!job_running(d, name))
                unlink(path);
            continue;
        }
        if (v == WS_PREFETCH_KEEP && lstat(path, &st) == 0 && S_ISREG(st.st_mode) &&
            st.st_mtime >= d->btime && now - st.st_mtime < WS_PREFETCH_STALE_AGE) {
            if (n < MAX_PRESENT)
                memcpy(present[n++], name, sizeof(name));
            continue;
        }
        unlink(path);
    }
    closedir(dir);
    return n;
}

/* A new prefetcher adopts the entries of an earlier one only if they are still bound to the
 * stored objects (a killed prefetcher's spool from before a repository was replaced, say). */
static void drop_unbound(struct daemon *d, struct ws_repo *repo)
{
    DIR *dir = opendir(d->spool);
    struct dirent *de;
    char entry[WS_PREFETCH_ENTRY_LEN + 1], name[WS_WAL_NAME_LEN + 1], path[PATH_MAX];

    if (!dir)
        return;
    while ((de = readdir(dir)) != NULL) {
        struct ws_error e = {0};
        if (!is_entry_name(de->d_name))
            continue;
        memcpy(name, de->d_name, WS_WAL_NAME_LEN);
        name[WS_WAL_NAME_LEN] = '\0';
        if ((entry_name_now(repo, d->kr_fp, d->boot_id, name, entry, &e) != 0 ||
             strcmp(entry, de->d_name) != 0) &&
            path_join(path, sizeof(path), d->spool, de->d_name) == 0)
            unlink(path);
    }
    closedir(dir);
}

static int space_ok(const struct daemon *d)
{
    struct statvfs sv;
    uint64_t avail, total, reserve;

    if (statvfs(d->spool, &sv) != 0)
        return 0;
    avail = (uint64_t)sv.f_bavail * sv.f_frsize;
    total = (uint64_t)sv.f_blocks * sv.f_frsize;
    reserve = total / 20 < RESERVE_MAX ? total / 20 : RESERVE_MAX;
    return avail >= reserve + d->seg_size;
}

static struct failure *find_failure(struct failure *f, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(f[i].name, name) == 0)
            return &f[i];
    return NULL;
}

/* Does the lock file at its path still name the file we locked? */
static int still_ours(const char *spool, const struct stat *lock_st)
{
    char path[PATH_MAX];
    struct stat st;
    return path_join(path, sizeof(path), spool, LOCK_FILE) == 0 && stat(path, &st) == 0 &&
           st.st_dev == lock_st->st_dev && st.st_ino == lock_st->st_ino;
}

static int same_stamp(const struct stamp *a, const struct stamp *b)
{
    return strcmp(a->name, b->name) == 0 && a->mtime.tv_sec == b->mtime.tv_sec &&
           a->mtime.tv_nsec == b->mtime.tv_nsec;
}

enum { END_IDLE = 1, END_OLD, END_GONE };

int ws_prefetch_run(const struct ws_config *cfg, const struct ws_keyring *kr, const char *spool,
                    int lock_fd, const struct ws_prefetch_opts *o, struct ws_error *err)
{
    struct daemon d;
    struct worker workers[WS_PREFETCH_MAX_AHEAD];
    struct failure fails[2 * WS_PREFETCH_MAX_AHEAD];
    char present[MAX_PRESENT][WS_WAL_NAME_LEN + 1];
    struct stamp cur = {0}, missing_at = {0};
    char missing[WS_WAL_NAME_LEN + 1] = "";
    struct ws_repo repo = {0};
    struct ws_identity id;
    struct stat lock_st;
    int64_t start = mono_ms();
    time_t start_wall = time(NULL);
    int pipefd[2] = {-1, -1}, ifd = -1, nstarted = 0, nfails = 0, rc = 0, end = 0;

    memset(&d, 0, sizeof(d));
    memset(workers, 0, sizeof(workers));
    memset(&lock_st, 0, sizeof(lock_st));
    d.cfg = cfg;
    d.kr = kr;
    d.spool = spool;
    d.pipe_r = d.pipe_w = -1;
    atomic_init(&d.stop, 0);
    for (int i = 0; i < WS_PREFETCH_MAX_AHEAD; i++)
        atomic_init(&d.slots[i].cancel, 0);
    pthread_mutex_init(&d.mu, NULL);
    pthread_cond_init(&d.cv, NULL);
    read_boot_id(d.boot_id);
    d.btime = boot_time();
    ws_prefetch_keyring_fp(kr, d.kr_fp);
    if (!d.boot_id[0]) {
        rc = ws_error_set(err, WS_ERR_IO, "no boot id: spool entries could not be bound");
        goto out;
    }
    if (fstat(lock_fd, &lock_st) != 0) {
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not stat the lock of \"%s\"", spool);
        goto out;
    }
    read_wanted(spool, cur.name, &cur.mtime);
    if ((rc = ws_repo_open(cfg, &repo, err)) != 0 ||
        (rc = ws_repo_identity_load(&repo, &id, err)) != 0)
        goto out;
    if (!ws_wal_seg_size_valid(id.wal_segment_size)) {
        rc = ws_error_set(err, WS_ERR_CORRUPT, "cluster identity names an invalid segment size");
        goto out;
    }
    d.seg_size = id.wal_segment_size;
    ws_prefetch_limits(cfg->parallel, d.seg_size, &d.ahead, &d.nworkers);
    if (pipe2(pipefd, O_CLOEXEC | O_NONBLOCK) != 0) {
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not create a pipe");
        goto out;
    }
    d.pipe_r = pipefd[0];
    d.pipe_w = pipefd[1];
    ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (ifd >= 0 && inotify_add_watch(ifd, spool,
                                      IN_MOVED_TO | IN_MOVED_FROM | IN_ATTRIB | IN_CLOSE_WRITE |
                                          IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF) < 0) {
        close(ifd);
        ifd = -1;
    }
    sweep(&d, cur.name, present); /* a dead prefetcher's temp files, old and foreign entries */
    drop_unbound(&d, &repo);
    ws_repo_close(&repo);
    for (int i = 0; i < d.nworkers; i++) {
        workers[i].d = &d;
        if (pthread_create(&workers[i].th, NULL, worker_main, &workers[i]) != 0)
            break;
        nstarted++;
    }
    if (nstarted == 0) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "could not start prefetch workers");
        goto out;
    }
    ws_log_debug("prefetcher started on \"%s\": %d ahead, %d workers", spool, d.ahead, d.nworkers);

    for (;;) {
        struct stamp again;
        int64_t now = mono_ms(), wait_ms = 1000, idle_left;
        time_t wall = time(NULL), last_request;
        struct pollfd pfd[2] = {{d.pipe_r, POLLIN, 0}, {ifd, POLLIN, 0}};
        int npresent, outstanding = 0, queued = 0;
        char buf[4096];

        /* Results of finished jobs. */
        pthread_mutex_lock(&d.mu);
        for (int i = 0; i < WS_PREFETCH_MAX_AHEAD; i++) {
            struct slot *sl = &d.slots[i];
            struct failure *f;
            if (sl->state != SLOT_DONE)
                continue;
            f = find_failure(fails, nfails, sl->name);
            if (sl->rc == 0) {
                if (f)
                    f->name[0] = '\0';
            } else if (sl->rc == WS_ERR_NOT_FOUND) {
                memcpy(missing, sl->name, sizeof(missing));
                missing_at = cur;
            } else if (!atomic_load(&sl->cancel) && !atomic_load(&d.stop)) {
                if (!f) {
                    f = find_failure(fails, nfails, "");
                    if (!f && nfails < (int)(sizeof(fails) / sizeof(fails[0])))
                        f = &fails[nfails++];
                    if (!f)
                        f = &fails[0];
                    memcpy(f->name, sl->name, sizeof(f->name));
                    f->attempts = 0;
                }
                f->attempts++;
                f->retry_at = now + (f->attempts >= 6 ? 30000 : 1000 << (f->attempts - 1));
                ws_log_warning("could not prefetch WAL file \"%s\": %s", sl->name, sl->err.msg);
            }
            sl->state = SLOT_FREE;
            atomic_store(&sl->cancel, 0);
        }
        pthread_mutex_unlock(&d.mu);

        if (now - start >= (int64_t)o->max_life * 1000) {
            end = END_OLD;
            break;
        }
        if (!still_ours(spool, &lock_st)) {
            end = END_GONE;
            break;
        }
        read_wanted(spool, cur.name, &cur.mtime);
        last_request = cur.mtime.tv_sec ? cur.mtime.tv_sec : start_wall;
        idle_left = (int64_t)o->idle_timeout - (wall - last_request);
        if (idle_left <= 0) {
            end = END_IDLE;
            break;
        }
        /* Tidy first, then look at `wanted` again: an entry that vanished during the sweep was
         * taken by a request we must see before deciding what is missing. */
        npresent = sweep(&d, cur.name, present);
        read_wanted(spool, again.name, &again.mtime);
        if (!same_stamp(&cur, &again))
            continue;

        pthread_mutex_lock(&d.mu);
        for (int i = 0; i < WS_PREFETCH_MAX_AHEAD; i++) {
            struct slot *sl = &d.slots[i];
            if (sl->state == SLOT_QUEUED && !in_window(&d, sl->name, cur.name, 0))
                sl->state = SLOT_FREE;
            else if (sl->state == SLOT_RUNNING && !in_window(&d, sl->name, cur.name, 1))
                atomic_store(&sl->cancel, 1);
            if (sl->state == SLOT_QUEUED || sl->state == SLOT_RUNNING)
                outstanding++;
        }
        for (int i = 1; cur.name[0] && i <= d.ahead && outstanding < d.nworkers; i++) {
            char name[WS_WAL_NAME_LEN + 1];
            struct failure *f;
            struct slot *free_slot = NULL;
            int busy = 0, have = 0;

            if (ws_prefetch_next_name(cur.name, d.seg_size, i, name) != 0)
                break;
            for (int j = 0; j < npresent && !have; j++)
                have = strcmp(present[j], name) == 0;
            for (int j = 0; j < WS_PREFETCH_MAX_AHEAD; j++) {
                if (d.slots[j].state != SLOT_FREE && strcmp(d.slots[j].name, name) == 0)
                    busy = 1;
                if (d.slots[j].state == SLOT_FREE && !free_slot)
                    free_slot = &d.slots[j];
            }
            if (have || busy)
                continue;
            /* The end of the archive: look again only on a new request. */
            if (missing[0] && same_stamp(&missing_at, &cur) && strncmp(name, missing, 8) == 0 &&
                strcmp(name, missing) >= 0)
                break;
            f = find_failure(fails, nfails, name);
            if (f && now < f->retry_at) {
                if (f->retry_at - now < wait_ms)
                    wait_ms = f->retry_at - now;
                continue;
            }
            if (!free_slot || !space_ok(&d))
                break;
            memcpy(free_slot->name, name, sizeof(name));
            atomic_store(&free_slot->cancel, 0);
            free_slot->state = SLOT_QUEUED;
            outstanding++;
            queued++;
        }
        if (queued)
            pthread_cond_broadcast(&d.cv);
        pthread_mutex_unlock(&d.mu);

        if (idle_left * 1000 < wait_ms)
            wait_ms = idle_left * 1000;
        if (wait_ms < 10)
            wait_ms = 10;
        if (ifd < 0 && wait_ms > 20)
            wait_ms = 20; /* no inotify: poll the spool */
        if (poll(pfd, ifd >= 0 ? 2 : 1, (int)wait_ms) > 0) {
            while (read(d.pipe_r, buf, sizeof(buf)) > 0)
                ;
            while (ifd >= 0 && read(ifd, buf, sizeof(buf)) > 0)
                ;
        }
    }

out:
    atomic_store(&d.stop, 1);
    pthread_mutex_lock(&d.mu);
    pthread_cond_broadcast(&d.cv);
    pthread_mutex_unlock(&d.mu);
    for (int i = 0; i < nstarted; i++)
        pthread_join(workers[i].th, NULL);
    ws_repo_close(&repo);
    if (end == END_IDLE || end == 0) {
        /* Recovery stopped asking, or this prefetcher cannot work (no identity, say): the spool
         * is of no more use; the next request starts afresh. */
        char wanted_path[PATH_MAX], lock_path[PATH_MAX];
        struct stamp last;
        sweep(&d, "", present);
        read_wanted(spool, last.name, &last.mtime);
        if (path_join(wanted_path, sizeof(wanted_path), spool, WANTED_FILE) == 0 &&
            path_join(lock_path, sizeof(lock_path), spool, LOCK_FILE) == 0 &&
            same_stamp(&last, &cur)) {
            unlink(wanted_path);
            if (still_ours(spool, &lock_st))
                unlink(lock_path);
            rmdir(spool);
        }
    } else if (end == END_OLD) {
        sweep(&d, cur.name, present); /* keeps valid entries for the next prefetcher */
    }
    ws_log_debug("prefetcher on \"%s\" ends (%s)", spool,
                 end == END_IDLE  ? "idle"
                 : end == END_OLD ? "lifetime"
                 : end            ? "spool gone"
                                  : "error");
    if (ifd >= 0)
        close(ifd);
    if (pipefd[0] >= 0)
        close(pipefd[0]);
    if (pipefd[1] >= 0)
        close(pipefd[1]);
    pthread_cond_destroy(&d.cv);
    pthread_mutex_destroy(&d.mu);
    close(lock_fd);
    return rc;
}

/* Closes every descriptor but 0, 1, 2 and keep. */
static void close_other_fds(int keep)
{
    if (keep > 3)
        close_range(3, (unsigned int)keep - 1, 0);
    if (close_range((unsigned int)keep + 1, ~0U, 0) != 0) {
        for (int fd = keep + 1; fd < 1024; fd++)
            close(fd);
    }
}

static _Noreturn void prefetcher_main(const struct ws_config *cfg, const struct ws_keyring *kr,
                                      const char *spool, int lock_fd,
                                      const struct ws_prefetch_opts *o)
{
    struct ws_error err = {0};
    char pid[32];
    int null = open("/dev/null", O_RDWR), n;

    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        if (null > 2)
            close(null);
    }
    ws_log_set_file(NULL);
    if (lock_fd < 3) {
        int moved = fcntl(lock_fd, F_DUPFD_CLOEXEC, 3);
        lock_fd = moved; /* the lock stays with the shared open file description */
    }
    if (lock_fd < 0)
        _exit(1);
    close_other_fds(lock_fd);
    ws_log_init("wal-fetch prefetch");
    ws_log_set_file(cfg->log_file);
    prctl(PR_SET_NAME, "wal-prefetch", 0, 0, 0); /* 15 characters at most */
    n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(lock_fd, 0) != 0 || pwrite(lock_fd, pid, (size_t)n, 0) != n) {
        /* the PID is for operators and tests; the lock works without it */
    }
    if (ws_prefetch_run(cfg, kr, spool, lock_fd, o, &err) != 0)
        ws_log_warning("prefetcher on \"%s\" stopped: %s", spool, err.msg);
    _exit(0);
}

static void start_prefetcher(const struct ws_config *cfg, const struct ws_keyring *kr,
                             const char *spool, const struct ws_prefetch_opts *o)
{
    struct ws_error err = {0};
    int fd, status;
    pid_t pid;

    if (ws_prefetch_lock(spool, &fd, &err) != 0) {
        if (err.code != WS_ERR_EXISTS)
            ws_log_info("prefetch: %s", err.msg);
        return;
    }
    /* Detached: a new session, re-parented to init, so PostgreSQL waits only for us. The lock
     * travels with the open file description: no moment without it. */
    pid = fork();
    if (pid < 0) {
        ws_log_info("could not start the prefetcher: %s", strerror(errno));
        close(fd);
        return;
    }
    if (pid == 0) {
        pid_t p2;
        if (setsid() < 0)
            _exit(1);
        p2 = fork();
        if (p2 != 0)
            _exit(p2 < 0 ? 1 : 0);
        prefetcher_main(cfg, kr, spool, fd, o);
    }
    close(fd);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
}
