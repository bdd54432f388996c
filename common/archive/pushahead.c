#include "archive/pushahead.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "archive/spool.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/util.h"
#include "io/fingerprint.h"
#include "io/key.h"
#include "io/ratelimit.h"
#include "io/sink.h"
#include "pg/wal.h"
#include "repo/repo.h"

#define RECORD_MAGIC "walsafe push-ahead record 2"
/* The key of the content digest's line: the format's historical name, kept so that records stay
 * byte for byte what they were (it holds the object's content digest, XXH3-128 for WAL). */
#define DIGEST_KEY "sha256"
#define TEMP_MAX_AGE 3600 /* seconds: temp files of killed record writers, lock files */
#define LOCK_POLL_US 1000 /* PostgreSQL's call waits this long at most after a worker's push */

/* ---- pure parts: order, records, binding ---- */

int ws_pushahead_ready_cmp(const char *a, const char *b)
{
    int ha = ws_wal_classify(a) == WS_WAL_HISTORY, hb = ws_wal_classify(b) == WS_WAL_HISTORY;

    /* pgarch.c: timeline history files always go first, then older files before newer. */
    if (ha != hb)
        return ha ? -1 : 1;
    return strcmp(a, b);
}

static int cmp_names(const void *a, const void *b)
{
    return ws_pushahead_ready_cmp(*(char *const *)a, *(char *const *)b);
}

size_t ws_pushahead_order(char **names, size_t n, const char *current)
{
    size_t keep = 0;

    for (size_t i = 0; i < n; i++) {
        if (ws_wal_classify(names[i]) == WS_WAL_INVALID ||
            (current && strcmp(names[i], current) == 0))
            continue;
        char *t = names[keep];
        names[keep++] = names[i];
        names[i] = t;
    }
    if (keep > 1)
        qsort(names, keep, sizeof(*names), cmp_names);
    return keep;
}

size_t ws_pushahead_batch_max(int parallel)
{
    size_t n = (size_t)(parallel > 1 ? parallel : 1) * WS_PUSHAHEAD_PER_WORKER;
    return n < WS_PUSHAHEAD_MAX_BATCH ? n : WS_PUSHAHEAD_MAX_BATCH;
}

static int sha256_hex_of(const char *text, size_t len, char hex[65])
{
    uint8_t d[32];
    unsigned int dlen = 0;

    if (EVP_Digest(text, len, d, &dlen, EVP_sha256(), NULL) != 1 || dlen != 32)
        return -1;
    ws_hex(d, 32, hex);
    return 0;
}

int ws_pushahead_record_format(const struct ws_pushahead_record *r, char *out, size_t outsz)
{
    char digest[2 * WS_OBJECT_DIGEST_SIZE + 1], fp[2 * WS_FINGERPRINT_SIZE + 1], check[65];
    int n, m;

    if (ws_wal_classify(r->name) == WS_WAL_INVALID || strpbrk(r->repo, "\r\n") || !r->repo[0] ||
        strpbrk(r->cluster, "\r\n") || !r->cluster[0])
        return -1;
    ws_hex(r->content_digest, WS_OBJECT_DIGEST_SIZE, digest);
    ws_hex(r->fingerprint, WS_FINGERPRINT_SIZE, fp);
    n = snprintf(out, outsz,
                 RECORD_MAGIC "\nname = %s\nrepo = %s\ncluster = %s\nsystem_identifier = %" PRIu64
                              "\nsize = %" PRIu64 "\n" DIGEST_KEY
                              " = %s\nfingerprint = %s\npushed_at = %" PRId64 "\n",
                 r->name, r->repo, r->cluster, r->system_identifier, r->size, digest, fp,
                 r->pushed_at);
    if (n < 0 || (size_t)n >= outsz || sha256_hex_of(out, (size_t)n, check) != 0)
        return -1;
    m = snprintf(out + n, outsz - (size_t)n, "check = %s\n", check);
    if (m < 0 || (size_t)m >= outsz - (size_t)n)
        return -1;
    return n + m;
}

/* One "key = value\n" line at *pos; value points into text, NUL-terminated in place. */
static int take_line(char *text, size_t len, size_t *pos, const char *key, char **value)
{
    size_t klen = strlen(key), start = *pos;
    char *nl;

    if (start >= len || !(nl = memchr(text + start, '\n', len - start)))
        return -1;
    if ((size_t)(nl - (text + start)) < klen + 3 || memcmp(text + start, key, klen) != 0 ||
        memcmp(text + start + klen, " = ", 3) != 0)
        return -1;
    *nl = '\0';
    *value = text + start + klen + 3;
    *pos = (size_t)(nl - text) + 1;
    return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;

    if (!*s || (s[0] == '0' && s[1]))
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}

/* Exactly 2 * len lower-case hex digits, as ws_pushahead_record_format() writes them. */
static int parse_hex(const char *s, uint8_t *out, size_t len)
{
    return strspn(s, "0123456789abcdef") == 2 * len ? ws_unhex(s, out, len) : -1;
}

int ws_pushahead_record_parse(const char *text, size_t len, struct ws_pushahead_record *r)
{
    char buf[WS_PUSHAHEAD_RECORD_SIZE], check[65];
    char *name, *repo, *cluster, *sysid, *size, *digest, *fp, *at, *chk;
    size_t pos = sizeof(RECORD_MAGIC), body;
    uint64_t t;

    memset(r, 0, sizeof(*r));
    if (len >= sizeof(buf) || len < pos || memcmp(text, RECORD_MAGIC "\n", pos) != 0 ||
        memchr(text, '\0', len))
        return -1;
    memcpy(buf, text, len);
    buf[len] = '\0';
    if (take_line(buf, len, &pos, "name", &name) || take_line(buf, len, &pos, "repo", &repo) ||
        take_line(buf, len, &pos, "cluster", &cluster) ||
        take_line(buf, len, &pos, "system_identifier", &sysid) ||
        take_line(buf, len, &pos, "size", &size) ||
        take_line(buf, len, &pos, DIGEST_KEY, &digest) ||
        take_line(buf, len, &pos, "fingerprint", &fp) ||
        take_line(buf, len, &pos, "pushed_at", &at))
        return -1;
    body = pos;
    if (take_line(buf, len, &pos, "check", &chk) || pos != len)
        return -1;
    /* the check covers the text as written, before take_line cut it into strings */
    if (sha256_hex_of(text, body, check) != 0 || strcmp(check, chk) != 0)
        return -1;
    if (strlen(name) >= sizeof(r->name) || ws_wal_classify(name) == WS_WAL_INVALID ||
        strlen(repo) >= sizeof(r->repo) || !*repo || strlen(cluster) >= sizeof(r->cluster) ||
        !*cluster || parse_u64(sysid, &r->system_identifier) || parse_u64(size, &r->size) ||
        parse_hex(digest, r->content_digest, WS_OBJECT_DIGEST_SIZE) ||
        parse_hex(fp, r->fingerprint, WS_FINGERPRINT_SIZE) || parse_u64(at, &t) || t > INT64_MAX)
        return -1;
    snprintf(r->name, sizeof(r->name), "%s", name);
    snprintf(r->repo, sizeof(r->repo), "%s", repo);
    snprintf(r->cluster, sizeof(r->cluster), "%s", cluster);
    r->pushed_at = (int64_t)t;
    return 0;
}

const char *ws_pushahead_record_mismatch(const struct ws_pushahead_record *rec,
                                         const struct ws_pushahead_record *now)
{
    if (strcmp(rec->name, now->name) != 0)
        return "it names another file";
    if (strcmp(rec->repo, now->repo) != 0)
        return "it is for another repository";
    if (strcmp(rec->cluster, now->cluster) != 0)
        return "it is for another cluster";
    if (rec->system_identifier != now->system_identifier)
        return "it is for another database system";
    if (rec->size != now->size)
        return "the size differs";
    if (CRYPTO_memcmp(rec->fingerprint, now->fingerprint, WS_FINGERPRINT_SIZE) != 0)
        return "the content differs";
    return NULL;
}

static sigjmp_buf bus_jump;

static void on_sigbus(int sig)
{
    (void)sig;
    siglongjmp(bus_jump, 1);
}

int ws_pushahead_fingerprint_mapped(int fd, uint64_t len, int segment,
                                    uint8_t fingerprint[WS_FINGERPRINT_SIZE],
                                    uint64_t *system_identifier)
{
    struct sigaction sa, old;
    sigset_t bus, old_mask;
    volatile int done = 0;
    struct stat st;
    void *map;

    if (len == 0 || len > SIZE_MAX)
        return -1;
    map = mmap(NULL, (size_t)len, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (map == MAP_FAILED)
        return -1;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigbus;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, &old) != 0) {
        munmap(map, (size_t)len);
        return -1;
    }
    /* A SIGBUS blocked in the mask inherited from the caller would kill the process. */
    sigemptyset(&bus);
    sigaddset(&bus, SIGBUS);
    sigprocmask(SIG_UNBLOCK, &bus, &old_mask);
    /* A page past the file's end (it shrank since its size was taken) raises SIGBUS: back here,
     * and the caller reads the file instead. */
    if (sigsetjmp(bus_jump, 1) == 0) {
        *system_identifier = 0;
        if (segment && len >= WS_WAL_LONG_HEADER_SIZE) {
            struct ws_wal_long_header h;
            ws_wal_decode_long_header(map, &h);
            *system_identifier = h.sysid;
        }
        ws_fingerprint(map, (size_t)len, fingerprint);
        done = 1;
    }
    sigprocmask(SIG_SETMASK, &old_mask, NULL);
    sigaction(SIGBUS, &old, NULL);
    munmap(map, (size_t)len);
    /* A file that shrank within its last page reads as zeros there instead of faulting. */
    if (done && (fstat(fd, &st) != 0 || (uint64_t)st.st_size != len))
        done = 0;
    return done ? 0 : -1;
}

int ws_pushahead_fingerprint_file(const char *path, int segment,
                                  uint8_t fingerprint[WS_FINGERPRINT_SIZE], uint64_t *size,
                                  uint64_t *system_identifier, struct ws_error *err)
{
    /* 128 KiB: larger buffers cost ~6 ms of first-touch page faults per process here, more than
     * fingerprinting a 16 MiB segment takes. */
    enum { BLOCK = 128 << 10 };
    uint8_t *buf = NULL;
    struct ws_sink *fp = NULL;
    uint64_t total = 0;
    int fd, rc = 0;

    *size = 0;
    *system_identifier = 0;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not open WAL file \"%s\"", path);
    {
        struct stat st;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
            (uint64_t)st.st_size <= WS_WAL_MAX_SEG_SIZE &&
            ws_pushahead_fingerprint_mapped(fd, (uint64_t)st.st_size, segment, fingerprint,
                                            system_identifier) == 0) {
            *size = (uint64_t)st.st_size;
            close(fd);
            return 0;
        }
    }
    *system_identifier = 0; /* the mapped attempt may have set it */
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    if (!(buf = malloc(BLOCK))) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        goto out;
    }
    if ((rc = ws_fingerprint_sink_new(NULL, &fp, err)) != 0)
        goto out;
    for (;;) {
        ssize_t n = read(fd, buf, BLOCK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not read WAL file \"%s\"", path);
            goto out;
        }
        if (n == 0)
            break;
        if (total == 0 && segment && n >= WS_WAL_LONG_HEADER_SIZE) {
            struct ws_wal_long_header h;
            ws_wal_decode_long_header(buf, &h);
            *system_identifier = h.sysid;
        }
        if ((rc = ws_sink_write(fp, buf, (size_t)n, err)) != 0)
            goto out;
        total += (uint64_t)n;
    }
    if ((rc = ws_sink_finish(fp, err)) != 0)
        goto out;
    ws_fingerprint_sink_result(fp, fingerprint, NULL);
    *size = total;
out:
    ws_sink_free(fp);
    free(buf);
    close(fd);
    return rc;
}

/* ---- the spool (spool.h): <spool_dir>/<cluster>/pushed (records), .../pushing (locks) ---- */

struct spool {
    char datadir[PATH_MAX]; /* its parent, by name ("."): the data directory */
    char waldir[PATH_MAX];  /* directory of the WAL file, as given ("pg_wal") */
    char status[PATH_MAX];  /* waldir/archive_status */
    struct ws_spool sp;     /* sub[0]: pushed, sub[1]: pushing */
    int pushed, locks;      /* their descriptors */
};

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/*
 * 0: push-ahead applies and the spool is ready; 1: it does not apply (quietly, or with the
 * INFO line of spool_dir = ''); -1: it applies but the spool is refused or unusable (one
 * WARNING was logged).
 */
static int spool_open(const struct ws_config *cfg, const char *wal_path, struct spool *sp)
{
    static const char *const subs[] = {"pushed", "pushing"};
    const char *name = ws_base_name(wal_path), *slash;
    char path[PATH_MAX];
    struct ws_spool_place place;
    int n;

    sp->sp.cluster.fd = sp->pushed = sp->locks = -1;
    if (cfg->parallel <= 1 || ws_wal_classify(name) == WS_WAL_INVALID)
        return 1;
    /* waldir: "pg_wal" for "pg_wal/X"; the data directory is its parent by name ("." here),
     * not by realpath, because pg_wal may be a link to another file system. */
    if (name == wal_path)
        n = snprintf(sp->waldir, sizeof(sp->waldir), ".");
    else if (name - wal_path == 1)
        n = snprintf(sp->waldir, sizeof(sp->waldir), "/");
    else
        n = snprintf(sp->waldir, sizeof(sp->waldir), "%.*s", (int)(name - wal_path - 1), wal_path);
    if (n < 0 || n >= (int)sizeof(sp->waldir))
        return 1;
    if (!(slash = strrchr(sp->waldir, '/')))
        n = snprintf(sp->datadir, sizeof(sp->datadir), ".");
    else if (slash == sp->waldir)
        n = snprintf(sp->datadir, sizeof(sp->datadir), "/");
    else
        n = snprintf(sp->datadir, sizeof(sp->datadir), "%.*s", (int)(slash - sp->waldir),
                     sp->waldir);
    if (n < 0 || n >= (int)sizeof(sp->datadir) ||
        ws_path_join(sp->status, sizeof(sp->status), sp->waldir, "archive_status") != 0 ||
        snprintf(path, sizeof(path), "%s/%s.ready", sp->status, name) >= (int)sizeof(path) ||
        !exists(path))
        return 1; /* not the archiver's call: nothing to push ahead */
    place.datadir = sp->datadir;
    place.waldir = sp->waldir;
    place.destdir = NULL;
    if (ws_spool_use(cfg, "push-ahead", &place, subs, 2, 0, &sp->sp) != 0)
        return cfg->spool_dir && cfg->spool_dir[0] ? -1 : 1;
    sp->pushed = sp->sp.sub[0].fd;
    sp->locks = sp->sp.sub[1].fd;
    return 0;
}

/* ---- locks: one flock()ed file per WAL file being pushed ---- */

/* Locks `name`; waits up to wait_s seconds (0: not at all) while someone holds it. The fd, or
 * -1 when busy, broken, or the lock file is not ours (then at once: never waits for another
 * user's lock). */
static int lock_take(const struct spool *sp, const char *name, double wait_s)
{
    struct ws_error e = {0};
    int fd;

    return ws_spool_lock(sp->locks, name, wait_s, &fd, &e) == 0 ? fd : -1;
}

static void lock_release(const struct spool *sp, const char *name, int fd)
{
    ws_spool_unlock(sp->locks, name, fd);
}

/* ---- records ---- */

/* 0 and *r filled; 1 no record; -1 unreadable, damaged, or not a file of ours. */
static int record_read(const struct spool *sp, const char *name, struct ws_pushahead_record *r)
{
    char buf[WS_PUSHAHEAD_RECORD_SIZE];
    struct ws_error e = {0};
    ssize_t n;
    int fd, rc;

    if ((rc = ws_spool_openat(sp->pushed, name, O_RDONLY, &fd, &e)) != 0)
        return rc == WS_ERR_NOT_FOUND ? 1 : -1;
    n = ws_pread_full(fd, buf, sizeof(buf), 0);
    close(fd);
    if (n < 0 || (size_t)n >= sizeof(buf))
        return -1;
    return ws_pushahead_record_parse(buf, (size_t)n, r) == 0 ? 0 : -1;
}

static void record_remove(const struct spool *sp, const char *name)
{
    unlinkat(sp->pushed, name, 0);
}

static int record_exists(const struct spool *sp, const char *name)
{
    struct stat st;
    return fstatat(sp->pushed, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Records that `name` is durably stored with this content; a failure is one WARNING. */
int ws_pushahead_record_of(const struct ws_config *cfg, const char *name,
                           const struct ws_push_result *res, struct ws_pushahead_record *r)
{
    memset(r, 0, sizeof(*r));
    if (strlen(name) >= sizeof(r->name) || strlen(cfg->repo) >= sizeof(r->repo))
        return -1;
    snprintf(r->name, sizeof(r->name), "%s", name);
    snprintf(r->repo, sizeof(r->repo), "%s", cfg->repo);
    snprintf(r->cluster, sizeof(r->cluster), "%s", cfg->cluster);
    r->system_identifier = res->system_identifier;
    r->size = res->bytes;
    /* The fingerprint (fingerprint.h) is the XXH3-128 content digest the push took of the file's
     * `bytes` bytes; a push that took none (or another) binds no content: then no record. */
    if (res->digest != WS_DIGEST_XXH3_128)
        return -1;
    memcpy(r->content_digest, res->content_digest, WS_OBJECT_DIGEST_SIZE);
    memcpy(r->fingerprint, res->content_digest, WS_FINGERPRINT_SIZE);
    r->pushed_at = (int64_t)time(NULL);
    return 0;
}

static void record_write(const struct ws_config *cfg, const struct spool *sp, const char *name,
                         const struct ws_push_result *res)
{
    struct ws_pushahead_record r;
    struct ws_sink *s = NULL;
    struct ws_error e = {0};
    char text[WS_PUSHAHEAD_RECORD_SIZE];
    int n, rc;

    if (ws_pushahead_record_of(cfg, name, res, &r) != 0)
        return;
    if ((n = ws_pushahead_record_format(&r, text, sizeof(text))) < 0) {
        ws_log_warning("could not write push-ahead record \"%s/%s\": the repo setting cannot be "
                       "recorded",
                       sp->sp.sub[0].path, name);
        return;
    }
    /* No fsync: the record is written after the object is durable, so what it claims holds
     * whether or not the record itself survives a crash; one lost or torn by a crash only means
     * that PostgreSQL's call pushes the file again and finds the identical copy (a WARNING). */
    if ((rc = ws_spool_sink_new(sp->pushed, name, NULL, &s, &e)) == 0 &&
        (rc = ws_sink_write(s, text, (size_t)n, &e)) == 0)
        rc = ws_sink_finish(s, &e);
    ws_sink_free(s);
    if (rc != 0)
        ws_log_warning("could not write push-ahead record in \"%s\": %s", sp->sp.sub[0].path,
                       e.msg);
}

/* ---- housekeeping ---- */

static int older_than(const struct stat *st, time_t now, int64_t age)
{
    return (int64_t)now - (int64_t)st->st_mtime > age;
}

/* ".<WAL file name>.walsafe.<digits>": the temp file of a record writer (ws_spool_sink_new). */
static int is_temp_record(const char *s)
{
    const char *tag = s[0] == '.' ? strstr(s + 1, ".walsafe.") : NULL;
    char name[64];

    if (!tag || (size_t)(tag - s - 1) >= sizeof(name) || !tag[9])
        return 0;
    memcpy(name, s + 1, (size_t)(tag - s - 1));
    name[tag - s - 1] = '\0';
    return ws_wal_classify(name) != WS_WAL_INVALID &&
           strspn(tag + 9, "0123456789") == strlen(tag + 9);
}

/*
 * Records whose .ready is gone (PostgreSQL has archived the file: the record served or is of no
 * use) or that are older than a day; temp files of killed record writers; abandoned lock files.
 * Records of another repo or cluster (a spool shared by two servers) are left to the age rule.
 * Only names this module creates are touched, each by unlinkat() of the name: an entry that is
 * a link is removed as a link, never followed; anything else is left alone.
 */
static void spool_clean(const struct ws_config *cfg, const struct spool *sp)
{
    time_t now = time(NULL);
    DIR *d;
    struct dirent *de;
    char ready[PATH_MAX];
    struct stat st;

    if ((d = ws_spool_opendir(sp->pushed))) {
        while ((de = readdir(d))) {
            struct ws_pushahead_record r;
            int rc, temp = is_temp_record(de->d_name);
            if ((!temp && ws_wal_classify(de->d_name) == WS_WAL_INVALID) ||
                fstatat(sp->pushed, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
                continue;
            if (S_ISLNK(st.st_mode) ||
                (S_ISREG(st.st_mode) &&
                 older_than(&st, now, temp ? TEMP_MAX_AGE : WS_PUSHAHEAD_RECORD_MAX_AGE))) {
                record_remove(sp, de->d_name);
                continue;
            }
            if (temp || !S_ISREG(st.st_mode) ||
                snprintf(ready, sizeof(ready), "%s/%s.ready", sp->status, de->d_name) >=
                    (int)sizeof(ready) ||
                exists(ready))
                continue;
            rc = record_read(sp, de->d_name, &r);
            if (rc < 0 ||
                (rc == 0 && strcmp(r.repo, cfg->repo) == 0 && strcmp(r.cluster, cfg->cluster) == 0))
                record_remove(sp, de->d_name);
        }
        closedir(d);
    }
    if ((d = ws_spool_opendir(sp->locks))) {
        while ((de = readdir(d))) {
            int fd;
            if (ws_wal_classify(de->d_name) == WS_WAL_INVALID ||
                fstatat(sp->locks, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
                continue;
            if (S_ISLNK(st.st_mode))
                unlinkat(sp->locks, de->d_name, 0);
            else if (S_ISREG(st.st_mode) && older_than(&st, now, TEMP_MAX_AGE) &&
                     (fd = lock_take(sp, de->d_name, 0)) >= 0)
                lock_release(sp, de->d_name, fd);
        }
        closedir(d);
    }
}

/* ---- step 3: PostgreSQL's call for a file with a record ---- */

/*
 * 1 when X is verified as archived (res filled), else 0 (push it normally). No storage request:
 * on S3 or SFTP that would cost round trips or a session per call, the very cost push-ahead
 * saves (docs/design/pushahead.md: what a record proves).
 */
int ws_pushahead_record_check(const struct ws_config *cfg, const struct ws_pushahead_record *rec,
                              const char *wal_path, struct ws_push_result *res, const char **why)
{
    const char *name = ws_base_name(wal_path);
    int kind = ws_wal_classify(name);
    struct ws_pushahead_record now;
    struct ws_error e = {0};

    memset(&now, 0, sizeof(now));
    snprintf(now.name, sizeof(now.name), "%s", name);
    snprintf(now.repo, sizeof(now.repo), "%s", cfg->repo);
    snprintf(now.cluster, sizeof(now.cluster), "%s", cfg->cluster);
    *why = NULL;
    if (ws_pushahead_fingerprint_file(wal_path, kind == WS_WAL_SEGMENT || kind == WS_WAL_PARTIAL,
                                      now.fingerprint, &now.size, &now.system_identifier, &e) != 0)
        return -1;
    if ((*why = ws_pushahead_record_mismatch(rec, &now)) != NULL)
        return 0;
    memset(res, 0, sizeof(*res));
    res->bytes = now.size;
    res->system_identifier = now.system_identifier;
    /* the content digest of the object stored for it (records are written for XXH3-128 only) */
    res->digest = WS_DIGEST_XXH3_128;
    memcpy(res->content_digest, rec->content_digest, WS_OBJECT_DIGEST_SIZE);
    return 1;
}

static int verify_record(const struct ws_config *cfg, const struct spool *sp, const char *wal_path,
                         struct ws_pushahead_result *res)
{
    const char *name = ws_base_name(wal_path);
    struct ws_pushahead_record rec;
    const char *why;
    int rc;

    rc = record_read(sp, name, &rec);
    if (rc == 1)
        return 0;
    if (rc < 0) {
        ws_log_warning("ignoring damaged push-ahead record \"%s/%s\"; archiving \"%s\"",
                       sp->sp.sub[0].path, name, wal_path);
        record_remove(sp, name);
        return 0;
    }
    if ((rc = ws_pushahead_record_check(cfg, &rec, wal_path, &res->push, &why)) < 0) {
        record_remove(sp, name);
        return 0; /* the push reports the file's problem */
    }
    if (rc == 0) {
        /* A record of another repository or cluster may be another server's (shared spool). */
        if (strcmp(rec.repo, cfg->repo) == 0 && strcmp(rec.cluster, cfg->cluster) == 0) {
            ws_log_warning("push-ahead record \"%s/%s\" does not match WAL file \"%s\" (%s); "
                           "archiving it normally",
                           sp->sp.sub[0].path, name, wal_path, why);
            record_remove(sp, name);
        }
        return 0;
    }
    /* The record stays until PostgreSQL has marked X done (spool_clean): removed now, the
     * push-ahead process could find X still .ready, without a record, and push it again. A
     * repeated call for X (the archiver restarted before it marked X done) checks it again. */
    res->pushed_ahead = 1;
    ws_log_info("WAL file \"%s\" was archived ahead by an earlier call (record verified: same "
                "content)",
                wal_path);
    return 1;
}

/*
 * `.stopped` in the lock directory: written by a push-ahead process that stopped on a storage
 * failure, removed by the next call whose own push succeeds. While it is younger than
 * WS_PUSHAHEAD_OUTAGE_PAUSE seconds no new process starts, so an outage does not cost a process
 * and a failing request per call of PostgreSQL's on top of the call's own.
 */
static void outage_mark(const struct spool *sp, int on)
{
    struct ws_error e = {0};
    int fd;

    if (!on) {
        unlinkat(sp->locks, ".stopped", 0);
        return;
    }
    if (ws_spool_openat(sp->locks, ".stopped", O_WRONLY | O_CREAT | O_TRUNC, &fd, &e) == 0) {
        futimens(fd, NULL);
        close(fd);
    }
}

static int outage_pause(const struct spool *sp)
{
    struct stat st;
    time_t now = time(NULL);

    return fstatat(sp->locks, ".stopped", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
           st.st_mtime <= now && now - st.st_mtime < WS_PUSHAHEAD_OUTAGE_PAUSE;
}

/* ---- step 4: the batch ---- */

/* The ready files to push ahead of `current`, in order, at most max; caller frees. */
static char **ready_batch(const struct spool *sp, const char *current, size_t max, size_t *count)
{
    DIR *d = opendir(sp->status);
    struct dirent *de;
    char **all = NULL, **out = NULL;
    size_t n = 0, cap = 0, keep, taken = 0;

    *count = 0;
    if (!d)
        return NULL;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len <= 6 || strcmp(de->d_name + len - 6, ".ready") != 0)
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            char **t = realloc(all, nc * sizeof(*all));
            if (!t)
                break;
            all = t;
            cap = nc;
        }
        if (!(all[n] = strndup(de->d_name, len - 6)))
            break;
        n++;
    }
    closedir(d);
    keep = ws_pushahead_order(all, n, current);
    if (keep > 0 && (out = calloc(max ? max : 1, sizeof(*out)))) {
        for (size_t i = 0; i < keep && taken < max; i++) {
            if (record_exists(sp, all[i]))
                continue; /* pushed ahead already, waiting for PostgreSQL's call */
            out[taken++] = all[i];
            all[i] = NULL;
        }
    }
    for (size_t i = 0; i < n; i++)
        free(all[i]);
    free(all);
    *count = taken;
    return out;
}

/*
 * The queue of the detached process of batch_start(): files locked before they are queued (fds),
 * pushed in order by `parallel` workers. The first files are chosen and locked by the call that
 * starts the process; when a worker finds the queue empty, it looks for more ready files
 * (refill) for WS_PUSHAHEAD_PROCESS_SECONDS, so a long backlog is pushed by one process with its
 * workers always busy, not by a process per batch with the cores idle in between.
 */
struct batch {
    const struct ws_config *cfg;
    const struct spool *sp;
    const struct ws_keyring *kr;
    struct ws_keyring keyring; /* what kr points to */
    char **names;              /* every file ever queued: a failed one is never taken again */
    int *fds;                  /* each queued file's lock, until it is done */
    size_t n, cap;
    pthread_mutex_t lock;
    size_t next;
    int stop;     /* storage trouble: start no more */
    double start; /* monotonic s, of the process: refills end WS_PUSHAHEAD_PROCESS_SECONDS later */
    size_t pushed, failed;
    size_t busy; /* workers pushing a file now */
    /* Network repositories: with the queue empty, the workers wait for new ready files (with
     * their sessions open) while the postmaster that was running at the start still runs. */
    int linger;
    int watch;         /* inotify on the archive_status directory, or -1 (then: poll) */
    struct stat pmpid; /* postmaster.pid at the start */
};

struct worker {
    struct batch *b;
    struct ws_repo repo;
    pthread_t thread;
    int started;
};

/* Appends name (taken over) with its lock fd to the queue; -1 when out of memory. */
static int queue_add(struct batch *b, char *name, int fd)
{
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 32;
        char **nn = realloc(b->names, nc * sizeof(*nn));
        if (!nn)
            return -1;
        b->names = nn;
        int *nf = realloc(b->fds, nc * sizeof(*nf));
        if (!nf)
            return -1;
        b->fds = nf;
        b->cap = nc;
    }
    b->names[b->n] = name;
    b->fds[b->n++] = fd;
    return 0;
}

static int queued(const struct batch *b, const char *name)
{
    for (size_t i = 0; i < b->n; i++)
        if (strcmp(b->names[i], name) == 0)
            return 1;
    return 0;
}

/*
 * Queues up to `max` more ready files after `current` (NULL: any), in the archiver's order: those
 * without a record, never queued before, and not locked by anyone (a locked one is being pushed
 * by a call of PostgreSQL's or another wal-push). Each is locked before it is queued and checked
 * for a record again under the lock. The number queued.
 */
static size_t queue_fill(struct batch *b, const char *current, size_t max)
{
    size_t n = 0, added = 0, i;
    char **names;

    spool_clean(b->cfg, b->sp); /* records of files PostgreSQL has marked done go first */
    /* look further than max: files that failed or are locked do not count */
    names = ready_batch(b->sp, current, max + WS_PUSHAHEAD_MAX_BATCH, &n);

    for (i = 0; i < n; i++) {
        int fd = -1;
        if (added < max && !queued(b, names[i]) && (fd = lock_take(b->sp, names[i], 0)) >= 0 &&
            !record_exists(b->sp, names[i]) && queue_add(b, names[i], fd) == 0) {
            names[i] = NULL;
            added++;
            continue;
        }
        if (fd >= 0)
            lock_release(b->sp, names[i], fd);
        free(names[i]);
    }
    free(names);
    return added;
}

/* zstd_workers: as ws_archive_push_in's (-1: the default for a file alone). */
static void push_ahead_one(struct batch *b, struct ws_repo *repo, const char *name, int fd,
                           int zstd_workers)
{
    struct ws_push_result res;
    struct ws_error e = {0};
    char path[PATH_MAX], ready[PATH_MAX];
    int rc = 0, outcome = 0; /* 0 skipped, 1 pushed, 2 failed */

    /* Re-checked under the lock: pushed by someone else meanwhile, or archived by PostgreSQL. */
    if (ws_path_join(path, sizeof(path), b->sp->waldir, name) != 0 ||
        snprintf(ready, sizeof(ready), "%s/%s.ready", b->sp->status, name) >= (int)sizeof(ready) ||
        record_exists(b->sp, name) || !exists(ready))
        goto out;
    rc = ws_archive_push_in(b->cfg, repo, b->kr, zstd_workers, 1, path, &res, &e);
    if (rc == 0) {
        record_write(b->cfg, b->sp, name, &res);
        outcome = 1;
    } else {
        ws_log_warning("push-ahead: %s; PostgreSQL's own call will archive it", e.msg);
        outcome = 2;
    }
out:
    lock_release(b->sp, name, fd);
    pthread_mutex_lock(&b->lock);
    b->busy--;
    if (outcome == 1)
        b->pushed++;
    else if (outcome == 2)
        b->failed++;
    if (outcome == 2 && rc == WS_ERR_STORAGE)
        b->stop = 1;
    pthread_mutex_unlock(&b->lock);
}

/* Is the postmaster that ran when the process started still running? (PostgreSQL removes
 * postmaster.pid when it stops; a new postmaster writes a new file.) */
static int postmaster_same(const struct batch *b)
{
    char path[PATH_MAX];
    struct stat st;

    return ws_path_join(path, sizeof(path), b->sp->datadir, "postmaster.pid") == 0 &&
           stat(path, &st) == 0 && st.st_dev == b->pmpid.st_dev && st.st_ino == b->pmpid.st_ino;
}

/* Waits up to `left` seconds (at most one) for a change in archive_status. */
static void wait_ready(struct batch *b, double left)
{
    int ms = left < 1.0 ? (int)(left * 1000.0) + 1 : 1000;

    ws_spool_watch_wait(b->watch, b->watch >= 0 || ms < 50 ? ms : 50); /* unwatched: polled */
}

static void work(struct batch *b, struct ws_repo *repo)
{
    for (;;) {
        const char *name = NULL;
        int fd = -1, alone = 0, stop;
        double age;
        pthread_mutex_lock(&b->lock);
        age = ws_now_monotonic() - b->start;
        if (!b->stop && b->next == b->n && age < WS_PUSHAHEAD_PROCESS_SECONDS)
            queue_fill(b, NULL, ws_pushahead_batch_max(b->cfg->parallel));
        if (!b->stop && b->next < b->n) {
            fd = b->fds[b->next];
            b->fds[b->next] = -1;
            name = b->names[b->next++];
            /* A file alone (nothing queued behind it, no other worker busy) gets the zstd
             * threads PostgreSQL's own call would use: its call is waiting for it. */
            alone = b->next == b->n && b->busy == 0;
            b->busy++;
        }
        stop = b->stop;
        pthread_mutex_unlock(&b->lock);
        if (name) {
            push_ahead_one(b, repo, name, fd, alone ? -1 : 0);
            continue;
        }
        if (stop || !b->linger || age >= WS_PUSHAHEAD_PROCESS_SECONDS || !postmaster_same(b))
            return;
        wait_ready(b, WS_PUSHAHEAD_PROCESS_SECONDS - age);
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    if (w->b->linger) {
        /* Open the session now (and keep the identity), so the first file waits for neither. */
        struct ws_identity id;
        struct ws_error e = {0};
        (void)ws_repo_identity_load(&w->repo, &id, &e);
    }
    work(w->b, &w->repo);
    return NULL;
}

/* inotify on archive_status (new .ready files), or -1. */
static int watch_status(const struct spool *sp)
{
    int dir = open(sp->status, O_PATH | O_DIRECTORY | O_CLOEXEC), watch;

    if (dir < 0)
        return -1;
    watch = ws_spool_watch(dir, IN_CREATE | IN_MOVED_TO);
    close(dir);
    return watch;
}

/* The detached process: push the queue and what refills bring, release what it did not start. */
static void batch_run(struct batch *b)
{
    const struct ws_config *cfg = b->cfg;
    struct worker *w = NULL;
    struct ws_ratelimit *rate = NULL; /* max_rate, shared by the workers' handles */
    struct ws_error e = {0};
    size_t nw = (size_t)(cfg->parallel > 1 ? cfg->parallel : 1), i = 0;

    b->kr = &b->keyring;
    pthread_mutex_init(&b->lock, NULL);
    if (ws_keyring_load(cfg, &b->keyring, &e) != 0 ||
        (cfg->max_rate && ws_ratelimit_new((uint64_t)cfg->max_rate, NULL, &rate, &e) != 0) ||
        !(w = calloc(nw, sizeof(*w)))) {
        ws_log_warning("push-ahead: %s", e.msg[0] ? e.msg : "out of memory");
        nw = 0;
    }
    for (i = 0; i < nw; i++) {
        if (ws_repo_open(cfg, &w[i].repo, &e) != 0) {
            ws_log_warning("push-ahead: %s", e.msg);
            break;
        }
        w[i].repo.keep_identity = 1; /* one read per worker, not one per file */
        w[i].repo.st->attempts = 1;  /* one try per request: a file that fails is X's to push */
        w[i].repo.st->rate = rate;
    }
    nw = i;
    b->watch = b->linger && nw > 0 ? watch_status(b->sp) : -1;
    for (i = 0; i < nw; i++)
        w[i].b = b;
    for (i = 1; i < nw; i++)
        w[i].started = pthread_create(&w[i].thread, NULL, worker_main, &w[i]) == 0;
    if (nw > 0)
        worker_main(&w[0]);
    for (i = 1; i < nw; i++)
        if (w[i].started)
            pthread_join(w[i].thread, NULL);
    for (i = b->next; i < b->n; i++)
        lock_release(b->sp, b->names[i], b->fds[i]);
    if (b->stop)
        outage_mark(b->sp, 1);
    ws_log_info("push-ahead: %zu of %zu ready WAL files archived ahead by process %d with %zu "
                "workers in %.1f s (%zu failed)",
                b->pushed, b->n, (int)getpid(), nw, ws_now_monotonic() - b->start, b->failed);
    for (i = 0; i < nw; i++)
        ws_repo_close(&w[i].repo);
    free(w);
    ws_ratelimit_free(rate);
    if (b->watch >= 0)
        close(b->watch);
    ws_keyring_wipe(&b->keyring);
}

/*
 * Starts the detached push-ahead process for the ready files after `current`, unless one runs
 * (it holds the `.batch` lock for its life): the first files are locked here, before the call
 * returns, so PostgreSQL's next call finds its file in flight (and waits) instead of pushing it a
 * second time. The caller's lock of `current` is not the process's: it closes its copy.
 * 1 when a process started.
 */
static int batch_start(const struct ws_config *cfg, const struct spool *sp, const char *current)
{
    struct batch b;
    struct spool own; /* the process's: its descriptors as ws_spool_spawn() leaves them */
    struct ws_error e = {0};
    char path[PATH_MAX];
    int *keep[WS_PUSHAHEAD_MAX_BATCH + 5];
    size_t i, nk = 0;
    int slot = -1, live = -1, started = 0;
    pid_t pid = -1;

    memset(&b, 0, sizeof(b));
    if (outage_pause(sp))
        return 0; /* the last process stopped on a storage failure moments ago */
    if (ws_spool_openat(sp->locks, ".batch", O_RDWR | O_CREAT, &slot, &e) != 0 ||
        flock(slot, LOCK_EX | LOCK_NB) != 0 ||
        ws_spool_openat(sp->locks, ".alive", O_RDWR | O_CREAT, &live, &e) != 0 ||
        flock(live, LOCK_SH | LOCK_NB) != 0)
        goto out; /* a push-ahead process runs (or is being started) */
    b.cfg = cfg;
    b.sp = sp;
    /* A network repository: the process also serves files that become ready while it runs,
     * with its sessions open (see `linger`), so it starts even with nothing to push yet. */
    b.linger = (ws_storage_caps_of(cfg->repo) & WS_STORAGE_REMOTE) &&
               ws_path_join(path, sizeof(path), sp->datadir, "postmaster.pid") == 0 &&
               stat(path, &b.pmpid) == 0;
    if (queue_fill(&b, current, ws_pushahead_batch_max(cfg->parallel)) == 0 && !b.linger)
        goto out;
    /* What the process keeps: the spool's directories and the locks, which are its own from now
     * on: the files', .batch (one such process per spool) and .alive (shared, for the process's
     * life). The caller's lock of `current` is not the process's: it is closed with every other
     * descriptor. Its lines go to log_file only. */
    own = *sp;
    keep[nk++] = &slot;
    keep[nk++] = &live;
    keep[nk++] = &own.sp.cluster.fd;
    keep[nk++] = &own.sp.sub[0].fd;
    keep[nk++] = &own.sp.sub[1].fd;
    for (i = 0; i < b.n && nk < sizeof(keep) / sizeof(keep[0]); i++)
        keep[nk++] = &b.fds[i]; /* b.n <= WS_PUSHAHEAD_MAX_BATCH: all of them */
    if ((pid = ws_spool_spawn(keep, nk, 0, NULL, "wal-push-ahead", cfg->log_file)) < 0)
        goto out;
    if (pid == 0) {
        own.pushed = own.sp.sub[0].fd;
        own.locks = own.sp.sub[1].fd;
        b.sp = &own;
        b.start = ws_now_monotonic();
        batch_run(&b);
        _exit(0);
    }
    started = 1;
    ws_log_info("push-ahead: %zu ready WAL files after \"%s\" are being archived by process %d%s",
                b.n, current, (int)pid,
                b.linger ? ", which also takes the files that become ready while it runs" : "");
out:
    for (i = 0; i < b.n; i++) {
        if (started)
            close(b.fds[i]); /* the new process holds these locks */
        else
            lock_release(sp, b.names[i], b.fds[i]);
        free(b.names[i]);
    }
    free(b.names);
    free(b.fds);
    if (slot >= 0)
        close(slot);
    if (live >= 0)
        close(live);
    return started;
}

/* ---- the call ---- */

int ws_pushahead_push(const struct ws_config *cfg, const char *wal_path,
                      struct ws_pushahead_result *res, struct ws_error *err)
{
    const char *name = ws_base_name(wal_path);
    struct spool sp;
    int lockfd = -1, rc, batch;

    memset(res, 0, sizeof(*res));
    memset(&sp, 0, sizeof(sp));
    if (spool_open(cfg, wal_path, &sp) != 0) {
        ws_spool_close(&sp.sp);
        return ws_archive_push(cfg, wal_path, &res->push, err);
    }

    /* A concurrent push of this very file (a batch's) finishes first; then its record is
     * checked. */
    if ((lockfd = lock_take(&sp, name, cfg->timeout)) < 0)
        ws_log_info("could not lock \"%s/%s\"; archiving \"%s\" without the lock",
                    sp.sp.sub[1].path, name, wal_path);
    if (verify_record(cfg, &sp, wal_path, res)) {
        /* Keep the next files coming while PostgreSQL works through these. */
        (void)batch_start(cfg, &sp, name);
        rc = 0;
        goto out;
    }
    /* X itself, with its retries and a fresh storage handle per attempt, as without push-ahead;
     * one zstd thread when a batch keeps the other cores busy. */
    batch = batch_start(cfg, &sp, name);
    rc = ws_archive_push_in(cfg, NULL, NULL, batch ? 0 : -1, cfg->retries, wal_path, &res->push,
                            err);
    if (rc == 0) {
        record_write(cfg, &sp, name, &res->push);
        outage_mark(&sp, 0); /* the storage works: push-ahead may start again */
    }
out:
    lock_release(&sp, name, lockfd);
    ws_spool_close(&sp.sp);
    return rc;
}
