#include "archive/prefetch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "archive/archive.h"
#include "archive/spool.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/util.h"
#include "io/object.h"
#include "io/sink.h"
#include "repo/repo.h"
#include "storage/storage.h"

#define LOCK_FILE "lock"
#define WANTED_FILE "wanted"
#define RESERVE_MAX (UINT64_C(4) << 30)

/* ---- small helpers ---- */

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
        return WS_PREFETCH_OTHER; /* not a name of ours: left alone */
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

/* ---- the spool directory ---- */

#define DIR_FD(s) ((s)->sp.sub[0].fd)
#define DIR_PATH(s) ((s)->sp.sub[0].path)

/* Where this repository's, cluster's and data directory's spool is, and where it must not be. */
static int spool_place(const struct ws_config *cfg, const char *dest_path,
                       char name[WS_PREFETCH_DIR_LEN + 1], char destdir[PATH_MAX],
                       struct ws_spool_place *place, struct ws_error *err)
{
    char cwd[PATH_MAX], tag[17];
    uint8_t md[32];
    unsigned int mdlen = 0;
    EVP_MD_CTX *c;
    struct stat st;
    const char *slash = strrchr(dest_path, '/');
    int ok, n;

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
    snprintf(name, WS_PREFETCH_DIR_LEN + 1, "prefetch-%s", tag);
    /* Never inside pg_wal (PostgreSQL owns every file there), nor elsewhere in the data
     * directory (base backups would copy the spool), nor beside DEST_PATH. */
    n = !slash ? snprintf(destdir, PATH_MAX, ".")
        : slash == dest_path
            ? snprintf(destdir, PATH_MAX, "/")
            : snprintf(destdir, PATH_MAX, "%.*s", (int)(slash - dest_path), dest_path);
    if (n < 0 || n >= PATH_MAX)
        return ws_error_set(err, WS_ERR_IO, "path \"%s\" is too long", dest_path);
    place->datadir = stat("PG_VERSION", &st) == 0 ? "." : NULL;
    place->waldir = "pg_wal";
    place->destdir = destdir;
    return 0;
}

int ws_prefetch_spool_open(const struct ws_config *cfg, const char *dest_path,
                           struct ws_prefetch_spool *s, struct ws_error *err)
{
    const char *subs[1];
    struct ws_spool_place place;
    char destdir[PATH_MAX];
    int rc;

    memset(s, 0, sizeof(*s));
    s->sp.cluster.fd = -1;
    subs[0] = s->name;
    if ((rc = spool_place(cfg, dest_path, s->name, destdir, &place, err)) != 0)
        return rc;
    return ws_spool_open(cfg, &place, subs, 1, 1, &s->sp, err);
}

void ws_prefetch_spool_close(struct ws_prefetch_spool *s)
{
    ws_spool_close(&s->sp);
}

/* What wal-fetch does: the spool, or -1 after one WARNING (INFO for spool_dir = ''). */
static int spool_use(const struct ws_config *cfg, const char *dest_path,
                     struct ws_prefetch_spool *s)
{
    const char *subs[1];
    struct ws_spool_place place = {NULL, NULL, NULL};
    struct ws_error err = {0};
    char destdir[PATH_MAX];

    memset(s, 0, sizeof(*s));
    s->sp.cluster.fd = -1;
    subs[0] = s->name;
    if (cfg->spool_dir && cfg->spool_dir[0] &&
        spool_place(cfg, dest_path, s->name, destdir, &place, &err) != 0) {
        ws_log_warning("prefetch is disabled: %s", err.msg);
        return -1;
    }
    return ws_spool_use(cfg, "prefetch", &place, subs, 1, 1, &s->sp);
}

/* Reads the wanted file: its name (empty if absent or not a segment name) and its mtime. */
static void read_wanted(int dir, char name[WS_WAL_NAME_LEN + 1], struct timespec *mtime)
{
    struct ws_error e = {0};
    char buf[64];
    struct stat st;
    ssize_t n = -1;
    int fd;

    name[0] = '\0';
    memset(mtime, 0, sizeof(*mtime));
    if (ws_spool_openat(dir, WANTED_FILE, O_RDONLY, &fd, &e) != 0)
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

/* Writes the wanted file anew (temp + rename); errno set on failure. */
static int write_wanted(int dir, const char *wal_name)
{
    char tmp[64], line[WS_WAL_NAME_LEN + 2];
    struct ws_error e = {0};
    int fd, ok, saved;

    snprintf(tmp, sizeof(tmp), ".wanted.%ld", (long)getpid());
    snprintf(line, sizeof(line), "%s\n", wal_name);
    if (ws_spool_openat(dir, tmp, O_WRONLY | O_CREAT | O_TRUNC, &fd, &e) != 0) {
        errno = e.sys_errno ? e.sys_errno : EPERM;
        return -1;
    }
    ok = ws_write_all(fd, line, strlen(line)) == 0;
    saved = errno;
    close(fd);
    if (ok && renameat(dir, tmp, dir, WANTED_FILE) == 0)
        return 0;
    saved = ok ? errno : saved;
    unlinkat(dir, tmp, 0);
    errno = saved;
    return -1;
}

/*
 * Records a request for wal_name: a new name replaces the wanted file, the same name touches it
 * (its mtime is the time of the last request). *changed = 1 for a new name. The prefetcher
 * removes an idle spool directory: if it went away under us, it is opened (created) again.
 */
static int record_request(const struct ws_config *cfg, const char *dest_path,
                          struct ws_prefetch_spool *s, const char *wal_name, int *changed,
                          struct ws_error *err)
{
    char have[WS_WAL_NAME_LEN + 1];
    struct timespec mt;

    *changed = 0;
    read_wanted(DIR_FD(s), have, &mt);
    if (strcmp(have, wal_name) == 0 &&
        utimensat(DIR_FD(s), WANTED_FILE, NULL, AT_SYMLINK_NOFOLLOW) == 0)
        return 0;
    for (int attempt = 0;; attempt++) {
        int rc;
        if (write_wanted(DIR_FD(s), wal_name) == 0) {
            *changed = 1;
            return 0;
        }
        if (errno != ENOENT || attempt >= 2)
            return ws_error_setsys(err, WS_ERR_IO, errno, "could not write \"%s/%s\"", DIR_PATH(s),
                                   WANTED_FILE);
        ws_prefetch_spool_close(s);
        if ((rc = ws_prefetch_spool_open(cfg, dest_path, s, err)) != 0)
            return rc;
    }
}

int ws_prefetch_lock(const struct ws_prefetch_spool *s, int *out, struct ws_error *err)
{
    int rc = ws_spool_lock(DIR_FD(s), LOCK_FILE, 0, out, err);
    if (rc == WS_ERR_EXISTS)
        return ws_error_set(err, WS_ERR_EXISTS, "a prefetcher holds \"%s/%s\"", DIR_PATH(s),
                            LOCK_FILE);
    return rc;
}

/* Is a prefetcher alive on this spool (does someone hold its lock)? */
static int lock_held(int dir)
{
    struct ws_error e = {0};
    int fd, held;

    if (ws_spool_openat(dir, LOCK_FILE, O_RDONLY, &fd, &e) != 0)
        return 0;
    held = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd); /* also releases our shared lock */
    return held;
}

/* ---- the foreground: wal-fetch ---- */

struct spool_scan {
    int entry;    /* some "<name>.<hex>" exists */
    int inflight; /* ".<name>.tmp" or ".<name>.ready" exists */
    char inflight_name[NAME_MAX + 1];
};

static void scan_for(int dir, const char *wal_name, struct spool_scan *s)
{
    DIR *d = ws_spool_opendir(dir);
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
            snprintf(s->inflight_name, sizeof(s->inflight_name), "%s", f);
        }
    }
    closedir(d);
}

/* Removes every entry of wal_name (used when none of them may be served). */
static void remove_entries(int dir, const char *wal_name)
{
    DIR *d = ws_spool_opendir(dir);
    struct dirent *de;

    if (!d)
        return;
    while ((de = readdir(d)) != NULL)
        if (strncmp(de->d_name, wal_name, WS_WAL_NAME_LEN) == 0 && is_entry_name(de->d_name))
            unlinkat(dir, de->d_name, 0);
    closedir(d);
}

/*
 * The prefetcher is writing wal_name: wait until its entry appears (1), or until the temp file
 * is gone without an entry, the prefetcher died, or the temp file made no progress for
 * `timeout` seconds (0).
 */
static int wait_inflight(int dir, const char *wal_name, int timeout)
{
    int ifd = ws_spool_watch(dir, IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CLOSE_WRITE);
    int64_t last_progress = ws_mono_ms();
    off_t last_size = -1;
    struct spool_scan s;
    int found = 0;

    for (;;) {
        struct stat st;

        scan_for(dir, wal_name, &s);
        if (s.entry) {
            found = 1;
            break;
        }
        if (!s.inflight || !lock_held(dir))
            break;
        if (fstatat(dir, s.inflight_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            st.st_size != last_size) {
            last_size = st.st_size;
            last_progress = ws_mono_ms();
        }
        if (ws_mono_ms() - last_progress > (int64_t)timeout * 1000)
            break;
        ws_spool_watch_wait(ifd, ifd >= 0 ? 250 : 5);
    }
    if (ifd >= 0)
        close(ifd);
    return found;
}

/* Copies a spool entry to dest_path through a temp file beside it (spool on another file
 * system). */
static int copy_entry(int dir, const char *entry, const char *dest_path, struct ws_error *err)
{
    struct ws_sink *out = NULL;
    int fd, rc;

    if ((rc = ws_spool_openat(dir, entry, O_RDONLY, &fd, err)) != 0)
        return rc;
    if ((rc = ws_file_sink_new(dest_path, 0600, 0, &out, err)) == 0 &&
        (rc = ws_sink_write_file(out, fd, entry, err)) == 0)
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
                           const struct ws_prefetch_spool *sp, const char *wal_name,
                           const char *dest_path)
{
    struct spool_scan s;
    struct ws_error err = {0};
    char entry[WS_PREFETCH_ENTRY_LEN + 1];
    int e, dir = DIR_FD(sp);

    scan_for(dir, wal_name, &s);
    if (!s.entry && !(s.inflight && wait_inflight(dir, wal_name, cfg->timeout)))
        return 0;
    if (current_entry_name(cfg, kr, wal_name, entry, &err) != 0) {
        /* Not there any more, unreachable, damaged at its end: the repository decides. */
        ws_log_info("prefetched copy of \"%s\" not used: %s", wal_name, err.msg);
        remove_entries(dir, wal_name);
        return 0;
    }
    if (renameat(dir, entry, AT_FDCWD, dest_path) == 0) {
        ws_log_info("restored WAL file \"%s\" from the prefetch spool \"%s\"", wal_name,
                    DIR_PATH(sp));
        return 1;
    }
    e = errno;
    if (e == EXDEV) {
        if (copy_entry(dir, entry, dest_path, &err) == 0) {
            unlinkat(dir, entry, 0);
            ws_log_info("restored WAL file \"%s\" from the prefetch spool \"%s\" (copied)",
                        wal_name, DIR_PATH(sp));
            return 1;
        }
        ws_log_info("%s", err.msg);
    } else if (e == ENOENT) {
        ws_log_info("the spool holds no copy of \"%s\" bound to its stored object", wal_name);
    } else {
        ws_log_info("could not move \"%s/%s\" to \"%s\": %s", DIR_PATH(sp), entry, dest_path,
                    strerror(e));
    }
    remove_entries(dir, wal_name);
    return 0;
}

static void start_prefetcher(const struct ws_config *cfg, const struct ws_keyring *kr,
                             const struct ws_prefetch_spool *sp, const struct ws_prefetch_opts *o);

int ws_prefetch_serve_opts(const struct ws_config *cfg, const char *wal_name, const char *dest_path,
                           const struct ws_prefetch_opts *o)
{
    struct ws_prefetch_spool sp;
    struct ws_keyring kr;
    struct ws_error err = {0};
    int changed = 0, served = 0;

    if (cfg->parallel < 2 || ws_wal_classify(wal_name) != WS_WAL_SEGMENT)
        return 0;
    if (spool_use(cfg, dest_path, &sp) != 0)
        return 0; /* logged */
    if (record_request(cfg, dest_path, &sp, wal_name, &changed, &err) != 0) {
        ws_log_warning("prefetch is disabled: %s", err.msg);
        goto out;
    }
    /* A bad key file is the repository fetch's to report, with its own exit status. */
    if (ws_keyring_load(cfg, &kr, &err) != 0)
        goto out;
    if (o->spawn && changed)
        start_prefetcher(cfg, &kr, &sp, o);
    served = take_from_spool(cfg, &kr, &sp, wal_name, dest_path);
    ws_keyring_wipe(&kr);
out:
    ws_prefetch_spool_close(&sp);
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
    const struct ws_prefetch_spool *sp;
    int dir;          /* the spool directory */
    const char *path; /* its path, for messages */
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
    struct ws_object_info info;
    struct ws_prefetch_binding b = {0};
    struct tail_sink *t;
    char key[256], tmp[64], ready[64], entry[WS_PREFETCH_ENTRY_LEN + 1];
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
    snprintf(tmp, sizeof(tmp), ".%s.tmp", sl->name);
    snprintf(ready, sizeof(ready), ".%s.ready", sl->name);
    if ((rc = ws_spool_sink_new(d->dir, ready, tmp, &file, err)) != 0)
        return rc;
    rc = ws_archive_wal_reader_new(file, key, sl->name, d->kr, d->seg_size, &reader, err);
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
        unlinkat(d->dir, ready, 0);
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
    if ((rc = ws_prefetch_entry_name(sl->name, &b, entry, err)) != 0) {
        unlinkat(d->dir, ready, 0);
        goto out;
    }
    if (renameat(d->dir, ready, d->dir, entry) != 0) {
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not rename \"%s/%s\"", d->path, ready);
        unlinkat(d->dir, ready, 0);
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
 * too old, and temp files nobody is writing; names it does not know are left alone, and every
 * removal is an unlinkat() of the name (a link is removed, never followed).
 */
static int sweep(struct daemon *d, const char *wanted, char present[][WS_WAL_NAME_LEN + 1])
{
    DIR *dir = ws_spool_opendir(d->dir);
    struct dirent *de;
    char name[WS_WAL_NAME_LEN + 1];
    time_t now = time(NULL);
    int n = 0;

    if (!dir)
        return 0;
    while ((de = readdir(dir)) != NULL) {
        struct stat st;
        int v = ws_prefetch_classify(de->d_name, wanted, d->seg_size, d->ahead, name);
        if (v == WS_PREFETCH_OTHER)
            continue;
        if (v == WS_PREFETCH_TEMP) {
            if (!job_running(d, name))
                unlinkat(d->dir, de->d_name, 0);
            continue;
        }
        if (v == WS_PREFETCH_KEEP && fstatat(d->dir, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISREG(st.st_mode) && st.st_mtime >= d->btime &&
            now - st.st_mtime < WS_PREFETCH_STALE_AGE) {
            if (n < MAX_PRESENT)
                memcpy(present[n++], name, sizeof(name));
            continue;
        }
        unlinkat(d->dir, de->d_name, 0);
    }
    closedir(dir);
    return n;
}

/* A new prefetcher adopts the entries of an earlier one only if they are still bound to the
 * stored objects (a killed prefetcher's spool from before a repository was replaced, say). */
static void drop_unbound(struct daemon *d, struct ws_repo *repo)
{
    DIR *dir = ws_spool_opendir(d->dir);
    struct dirent *de;
    char entry[WS_PREFETCH_ENTRY_LEN + 1], name[WS_WAL_NAME_LEN + 1];

    if (!dir)
        return;
    while ((de = readdir(dir)) != NULL) {
        struct ws_error e = {0};
        if (!is_entry_name(de->d_name))
            continue;
        memcpy(name, de->d_name, WS_WAL_NAME_LEN);
        name[WS_WAL_NAME_LEN] = '\0';
        if (entry_name_now(repo, d->kr_fp, d->boot_id, name, entry, &e) != 0 ||
            strcmp(entry, de->d_name) != 0)
            unlinkat(d->dir, de->d_name, 0);
    }
    closedir(dir);
}

static int space_ok(const struct daemon *d)
{
    struct statvfs sv;
    uint64_t avail, total, reserve;

    if (fstatvfs(d->dir, &sv) != 0)
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

/* Does the lock file at its name (in a directory that still exists) name the file we locked? */
static int still_ours(int dir, const struct stat *lock_st)
{
    struct stat st;
    return fstatat(dir, LOCK_FILE, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_dev == lock_st->st_dev &&
           st.st_ino == lock_st->st_ino;
}

static int same_stamp(const struct stamp *a, const struct stamp *b)
{
    return strcmp(a->name, b->name) == 0 && a->mtime.tv_sec == b->mtime.tv_sec &&
           a->mtime.tv_nsec == b->mtime.tv_nsec;
}

enum { END_IDLE = 1, END_OLD, END_GONE };

/* The dispatcher: the prefetcher's main thread, which decides what the workers fetch. */
struct dispatcher {
    struct daemon d; /* what the workers share */
    const struct ws_prefetch_opts *o;
    struct worker workers[WS_PREFETCH_MAX_AHEAD];
    int nstarted;
    struct failure fails[2 * WS_PREFETCH_MAX_AHEAD];
    int nfails;
    char present[MAX_PRESENT][WS_WAL_NAME_LEN + 1]; /* the entries the last sweep kept */
    int npresent;
    struct stamp cur;                  /* the request being served */
    char missing[WS_WAL_NAME_LEN + 1]; /* the end of the archive, as found ... */
    struct stamp missing_at;           /* ... while serving this request */
    struct stat lock_st;               /* the lock file we hold */
    int64_t start;                     /* mono_ms */
    time_t start_wall;
    int ifd; /* inotify on the spool, or -1 (then: polled) */
};

/* Everything that cannot fail, so that the end of ws_prefetch_run() can release it all. */
static void dispatcher_init(struct dispatcher *r, const struct ws_config *cfg,
                            const struct ws_keyring *kr, const struct ws_prefetch_spool *sp,
                            const struct ws_prefetch_opts *o)
{
    struct daemon *d = &r->d;

    memset(r, 0, sizeof(*r));
    r->o = o;
    r->start = ws_mono_ms();
    r->start_wall = time(NULL);
    r->ifd = -1;
    d->cfg = cfg;
    d->kr = kr;
    d->sp = sp;
    d->dir = DIR_FD(sp);
    d->path = DIR_PATH(sp);
    d->pipe_r = d->pipe_w = -1;
    atomic_init(&d->stop, 0);
    for (int i = 0; i < WS_PREFETCH_MAX_AHEAD; i++)
        atomic_init(&d->slots[i].cancel, 0);
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    read_boot_id(d->boot_id);
    d->btime = boot_time();
    ws_prefetch_keyring_fp(kr, d->kr_fp);
}

/* The pipe through which workers wake the dispatcher, and inotify on the spool. */
static int open_wakeups(struct dispatcher *r, struct ws_error *err)
{
    int pipefd[2];

    if (pipe2(pipefd, O_CLOEXEC | O_NONBLOCK) != 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not create a pipe");
    r->d.pipe_r = pipefd[0];
    r->d.pipe_w = pipefd[1];
    r->ifd = ws_spool_watch(r->d.dir, IN_MOVED_TO | IN_MOVED_FROM | IN_ATTRIB | IN_CLOSE_WRITE |
                                          IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF);
    return 0;
}

/* The segment size (the cluster identity), the window that follows from it, and the spool as
 * an earlier prefetcher left it: tidied, its entries kept only while still bound. */
static int dispatcher_start(struct dispatcher *r, int lock_fd, struct ws_error *err)
{
    struct daemon *d = &r->d;
    struct ws_repo repo = {0};
    struct ws_identity id;
    int rc;

    if (!d->boot_id[0])
        return ws_error_set(err, WS_ERR_IO, "no boot id: spool entries could not be bound");
    if (fstat(lock_fd, &r->lock_st) != 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not stat the lock of \"%s\"", d->path);
    read_wanted(d->dir, r->cur.name, &r->cur.mtime);
    if ((rc = ws_repo_open(d->cfg, &repo, err)) != 0 ||
        (rc = ws_repo_identity_load(&repo, &id, err)) != 0)
        goto out;
    if (!ws_wal_seg_size_valid(id.wal_segment_size)) {
        rc = ws_error_set(err, WS_ERR_CORRUPT, "cluster identity names an invalid segment size");
        goto out;
    }
    d->seg_size = id.wal_segment_size;
    ws_prefetch_limits(d->cfg->parallel, d->seg_size, &d->ahead, &d->nworkers);
    if ((rc = open_wakeups(r, err)) != 0)
        goto out;
    sweep(d, r->cur.name, r->present); /* a dead prefetcher's temp files, old and foreign ones */
    drop_unbound(d, &repo);
out:
    ws_repo_close(&repo);
    return rc;
}

static int start_workers(struct dispatcher *r, struct ws_error *err)
{
    for (int i = 0; i < r->d.nworkers; i++) {
        r->workers[i].d = &r->d;
        if (pthread_create(&r->workers[i].th, NULL, worker_main, &r->workers[i]) != 0)
            break;
        r->nstarted++;
    }
    if (r->nstarted == 0)
        return ws_error_set(err, WS_ERR_INTERNAL, "could not start prefetch workers");
    ws_log_debug("prefetcher started on \"%s\": %d ahead, %d workers", r->d.path, r->d.ahead,
                 r->d.nworkers);
    return 0;
}

/* A failed fetch of `name` (not a cancelled one): tried again after 1, 2, 4 ... 30 s. */
static void note_failure(struct dispatcher *r, const char *name, int64_t now)
{
    struct failure *f = find_failure(r->fails, r->nfails, name);

    if (!f) {
        f = find_failure(r->fails, r->nfails, "");
        if (!f && r->nfails < (int)(sizeof(r->fails) / sizeof(r->fails[0])))
            f = &r->fails[r->nfails++];
        if (!f)
            f = &r->fails[0];
        memcpy(f->name, name, sizeof(f->name));
        f->attempts = 0;
    }
    f->attempts++;
    f->retry_at = now + (f->attempts >= 6 ? 30000 : 1000 << (f->attempts - 1));
}

/* Frees the slots of finished fetches: a success forgets the file's failures, "not in the
 * archive" marks the end of the archive for the current request, any other failure is logged
 * and tried again later. */
static void collect_results(struct dispatcher *r, int64_t now)
{
    struct daemon *d = &r->d;

    pthread_mutex_lock(&d->mu);
    for (int i = 0; i < WS_PREFETCH_MAX_AHEAD; i++) {
        struct slot *sl = &d->slots[i];
        struct failure *f;
        if (sl->state != SLOT_DONE)
            continue;
        if (sl->rc == 0) {
            if ((f = find_failure(r->fails, r->nfails, sl->name)) != NULL)
                f->name[0] = '\0';
        } else if (sl->rc == WS_ERR_NOT_FOUND) {
            memcpy(r->missing, sl->name, sizeof(r->missing));
            r->missing_at = r->cur;
        } else if (!atomic_load(&sl->cancel) && !atomic_load(&d->stop)) {
            note_failure(r, sl->name, now);
            ws_log_warning("could not prefetch WAL file \"%s\": %s", sl->name, sl->err.msg);
        }
        sl->state = SLOT_FREE;
        atomic_store(&sl->cancel, 0);
    }
    pthread_mutex_unlock(&d->mu);
}

/* Why the prefetcher ends now (END_*), else 0 with the current request in r->cur and the
 * seconds until it is idle in *idle_left. */
static int end_reason(struct dispatcher *r, int64_t now, time_t wall, int64_t *idle_left)
{
    time_t last_request;

    if (now - r->start >= (int64_t)r->o->max_life * 1000)
        return END_OLD;
    if (!still_ours(r->d.dir, &r->lock_st))
        return END_GONE;
    read_wanted(r->d.dir, r->cur.name, &r->cur.mtime);
    last_request = r->cur.mtime.tv_sec ? r->cur.mtime.tv_sec : r->start_wall;
    *idle_left = (int64_t)r->o->idle_timeout - (wall - last_request);
    return *idle_left <= 0 ? END_IDLE : 0;
}

/* Drops queued jobs and cancels running ones that left the window of `wanted` (d->mu held);
 * the number still queued or running. */
static int cancel_outside(struct daemon *d, const char *wanted)
{
    int outstanding = 0;

    for (int i = 0; i < WS_PREFETCH_MAX_AHEAD; i++) {
        struct slot *sl = &d->slots[i];
        if (sl->state == SLOT_QUEUED && !in_window(d, sl->name, wanted, 0))
            sl->state = SLOT_FREE;
        else if (sl->state == SLOT_RUNNING && !in_window(d, sl->name, wanted, 1))
            atomic_store(&sl->cancel, 1);
        if (sl->state == SLOT_QUEUED || sl->state == SLOT_RUNNING)
            outstanding++;
    }
    return outstanding;
}

enum { QUEUE_SKIP, QUEUE_STOP, QUEUE_ADDED };

/* Segment `name` of the window (d->mu held): skipped when the spool has it, a job has it, or
 * it failed and its retry is not due (*wait_ms then ends no later than the retry); the window
 * stops at the end of the archive, with no free slot, or short of space; else it is queued. */
static int queue_one(struct dispatcher *r, const char *name, int64_t now, int64_t *wait_ms)
{
    struct daemon *d = &r->d;
    struct slot *free_slot = NULL;
    struct failure *f;
    int busy = 0, have = 0;

    for (int j = 0; j < r->npresent && !have; j++)
        have = strcmp(r->present[j], name) == 0;
    for (int j = 0; j < WS_PREFETCH_MAX_AHEAD; j++) {
        if (d->slots[j].state != SLOT_FREE && strcmp(d->slots[j].name, name) == 0)
            busy = 1;
        if (d->slots[j].state == SLOT_FREE && !free_slot)
            free_slot = &d->slots[j];
    }
    if (have || busy)
        return QUEUE_SKIP;
    /* The end of the archive: look again only on a new request. */
    if (r->missing[0] && same_stamp(&r->missing_at, &r->cur) && strncmp(name, r->missing, 8) == 0 &&
        strcmp(name, r->missing) >= 0)
        return QUEUE_STOP;
    f = find_failure(r->fails, r->nfails, name);
    if (f && now < f->retry_at) {
        if (f->retry_at - now < *wait_ms)
            *wait_ms = f->retry_at - now;
        return QUEUE_SKIP;
    }
    if (!free_slot || !space_ok(d))
        return QUEUE_STOP;
    memcpy(free_slot->name, name, sizeof(free_slot->name));
    atomic_store(&free_slot->cancel, 0);
    free_slot->state = SLOT_QUEUED;
    return QUEUE_ADDED;
}

/* Brings the jobs in line with the current request: N+1 ... N+k, lowest first, while workers
 * are free. */
static void schedule(struct dispatcher *r, int64_t now, int64_t *wait_ms)
{
    struct daemon *d = &r->d;
    int outstanding, queued = 0, v;

    pthread_mutex_lock(&d->mu);
    outstanding = cancel_outside(d, r->cur.name);
    for (int i = 1; r->cur.name[0] && i <= d->ahead && outstanding < d->nworkers; i++) {
        char name[WS_WAL_NAME_LEN + 1];
        if (ws_prefetch_next_name(r->cur.name, d->seg_size, i, name) != 0 ||
            (v = queue_one(r, name, now, wait_ms)) == QUEUE_STOP)
            break;
        if (v == QUEUE_ADDED) {
            outstanding++;
            queued++;
        }
    }
    if (queued)
        pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

/* Sleeps until a worker finishes, the spool changes, or wait_ms (bounded by the idle time
 * left) passes. */
static void wait_events(struct dispatcher *r, int64_t wait_ms, int64_t idle_left)
{
    struct pollfd pfd[2] = {{r->d.pipe_r, POLLIN, 0}, {r->ifd, POLLIN, 0}};
    char buf[4096];

    if (idle_left * 1000 < wait_ms)
        wait_ms = idle_left * 1000;
    if (wait_ms < 10)
        wait_ms = 10;
    if (r->ifd < 0 && wait_ms > 20)
        wait_ms = 20; /* no inotify: poll the spool */
    if (poll(pfd, r->ifd >= 0 ? 2 : 1, (int)wait_ms) > 0) {
        while (read(r->d.pipe_r, buf, sizeof(buf)) > 0)
            ;
        while (r->ifd >= 0 && read(r->ifd, buf, sizeof(buf)) > 0)
            ;
    }
}

/* The main loop; returns why it ended (END_*). */
static int dispatch(struct dispatcher *r)
{
    for (;;) {
        struct stamp again;
        int64_t now = ws_mono_ms(), wait_ms = 1000, idle_left = 0;
        time_t wall = time(NULL);
        int end;

        collect_results(r, now);
        if ((end = end_reason(r, now, wall, &idle_left)) != 0)
            return end;
        /* Tidy first, then look at `wanted` again: an entry that vanished during the sweep was
         * taken by a request we must see before deciding what is missing. */
        r->npresent = sweep(&r->d, r->cur.name, r->present);
        read_wanted(r->d.dir, again.name, &again.mtime);
        if (!same_stamp(&r->cur, &again))
            continue;
        schedule(r, now, &wait_ms);
        wait_events(r, wait_ms, idle_left);
    }
}

static void stop_workers(struct dispatcher *r)
{
    atomic_store(&r->d.stop, 1);
    pthread_mutex_lock(&r->d.mu);
    pthread_cond_broadcast(&r->d.cv);
    pthread_mutex_unlock(&r->d.mu);
    for (int i = 0; i < r->nstarted; i++)
        pthread_join(r->workers[i].th, NULL);
}

/* What stays in the spool after the end (END_*, 0 for an error). */
static void leave_spool(struct dispatcher *r, int end)
{
    struct daemon *d = &r->d;
    struct stamp last;

    if (end == END_OLD) {
        sweep(d, r->cur.name, r->present); /* keeps valid entries for the next prefetcher */
        return;
    }
    if (end != END_IDLE && end != 0)
        return;
    /* Recovery stopped asking, or this prefetcher cannot work (no identity, say): the spool is
     * of no more use; the next request starts afresh. */
    sweep(d, "", r->present);
    read_wanted(d->dir, last.name, &last.mtime);
    if (same_stamp(&last, &r->cur)) {
        unlinkat(d->dir, WANTED_FILE, 0);
        if (still_ours(d->dir, &r->lock_st))
            unlinkat(d->dir, LOCK_FILE, 0);
        unlinkat(d->sp->sp.cluster.fd, d->sp->name, AT_REMOVEDIR);
    }
}

int ws_prefetch_run(const struct ws_config *cfg, const struct ws_keyring *kr,
                    const struct ws_prefetch_spool *sp, int lock_fd,
                    const struct ws_prefetch_opts *o, struct ws_error *err)
{
    struct dispatcher run, *r = &run;
    int rc, end = 0;

    dispatcher_init(r, cfg, kr, sp, o);
    if ((rc = dispatcher_start(r, lock_fd, err)) == 0 && (rc = start_workers(r, err)) == 0)
        end = dispatch(r);
    stop_workers(r);
    leave_spool(r, end);
    ws_log_debug("prefetcher on \"%s\" ends (%s)", r->d.path,
                 end == END_IDLE  ? "idle"
                 : end == END_OLD ? "lifetime"
                 : end            ? "spool gone"
                                  : "error");
    if (r->ifd >= 0)
        close(r->ifd);
    if (r->d.pipe_r >= 0)
        close(r->d.pipe_r);
    if (r->d.pipe_w >= 0)
        close(r->d.pipe_w);
    pthread_cond_destroy(&r->d.cv);
    pthread_mutex_destroy(&r->d.mu);
    close(lock_fd);
    return rc;
}

/* The background process (ws_spool_spawn()): records its PID in the lock file, runs, exits. */
static _Noreturn void prefetcher_main(const struct ws_config *cfg, const struct ws_keyring *kr,
                                      const struct ws_prefetch_spool *sp, int lock_fd,
                                      const struct ws_prefetch_opts *o)
{
    struct ws_error err = {0};
    char pid[32];
    int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());

    if (ftruncate(lock_fd, 0) != 0 || pwrite(lock_fd, pid, (size_t)n, 0) != n) {
        /* the PID is for operators and tests; the lock works without it */
    }
    if (ws_prefetch_run(cfg, kr, sp, lock_fd, o, &err) != 0)
        ws_log_warning("prefetcher on \"%s\" stopped: %s", DIR_PATH(sp), err.msg);
    _exit(0);
}

static void start_prefetcher(const struct ws_config *cfg, const struct ws_keyring *kr,
                             const struct ws_prefetch_spool *sp, const struct ws_prefetch_opts *o)
{
    struct ws_prefetch_spool own = *sp; /* its descriptors as ws_spool_spawn() leaves them */
    struct ws_error err = {0};
    int fd = -1, *keep[3] = {&fd, &DIR_FD(&own), &own.sp.cluster.fd};
    pid_t pid;

    if (ws_prefetch_lock(sp, &fd, &err) != 0) {
        if (err.code != WS_ERR_EXISTS)
            ws_log_info("prefetch: %s", err.msg);
        return;
    }
    /* Detached: a new session, re-parented to init, so PostgreSQL waits only for us. The lock
     * travels with the open file description: no moment without it. */
    pid = ws_spool_spawn(keep, 3, 1, "wal-fetch prefetch", "wal-prefetch", cfg->log_file);
    if (pid == 0)
        prefetcher_main(cfg, kr, &own, fd, o);
    if (pid < 0)
        ws_log_info("could not start the prefetcher: %s", strerror(errno));
    close(fd);
}
