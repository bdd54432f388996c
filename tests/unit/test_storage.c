/*
 * The storage contract (storage.h), run against every driver that needs no server: posix (in a
 * scratch directory) and mem; and against sftp when the environment names a test server. Then
 * what only one driver has: posix file modes and temp files, mem fault injection, sftp sessions
 * and host keys.
 *
 * SFTP (tests/integration/t_sftp.sh sets these; without them only posix and mem run):
 *   WALSAFE_TEST_SFTP_REPO         sftp://user@127.0.0.1:PORT/abs/path, a directory of THIS
 *                                  machine, so the tests can look at what the server wrote
 *   WALSAFE_TEST_SFTP_IDENTITY     an authorized client key (ed25519 or ecdsa)
 *   WALSAFE_TEST_SFTP_KNOWN_HOSTS  a known_hosts file holding the server's key (one line)
 *   WALSAFE_TEST_SSHD_PID          optional: the sshd listener; the reconnect test kills the
 *                                  per-connection processes below it (by PID, from /proc)
 *   WALSAFE_TEST_SFTP_IDLE_PORT    optional: a second sshd on the same host, same keys, serving
 *                                  the same directory, that drops idle sessions (sshd's
 *                                  ClientAliveInterval/CountMax), with
 *   WALSAFE_TEST_SSHD_IDLE_PID     its listener: the test waits until no session is left below
 *   WALSAFE_TEST_SFTP_IDLE_S       it, for at most this many seconds (without the PID: sleeps)
 *
 * S3 (tests/integration/t_s3.sh sets these; the contract then runs against the s3 driver too):
 *   WALSAFE_TEST_S3_ENDPOINT       http://127.0.0.1:PORT of an S3-compatible server
 *   WALSAFE_TEST_S3_BUCKET         an existing bucket; each run works under its own prefix
 *   WALSAFE_TEST_S3_KEY, _SECRET   credentials (S3RVER / S3RVER when unset)
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/config.h"
#include "storage/params.h"
#include "storage/storage.h"
#include "fixture.h"
#include "unit.h"

extern char **environ;

enum driver_kind { DRV_POSIX, DRV_MEM, DRV_SFTP, DRV_S3 };

struct driver {
    const char *name;
    struct ws_storage *st;
    char root[512]; /* posix and sftp: the local directory of the repository, else "" */
};

/* ---- the sftp test server, from the environment ---- */

struct sftp_env {
    const char *repo, *identity, *known_hosts;
    char url[700];   /* this process's scratch directory in the repository, as a URL */
    char local[400]; /* the same directory on this machine */
};

static char sftp_scratch[400]; /* removed at exit */

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void sftp_cleanup(void)
{
    if (sftp_scratch[0])
        nftw(sftp_scratch, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/*
 * 1 when the environment names a server, 0 when it names none, -1 when it is half set up or
 * unusable. Every run works in a fresh directory of the repository (made here, once, and owned
 * like the repository, since the server may log in as another user), so runs never collide.
 */
static int sftp_env(struct sftp_env *e)
{
    const char *path;
    char base[512];
    struct stat sb;
    size_t n;

    memset(e, 0, sizeof(*e));
    e->repo = getenv("WALSAFE_TEST_SFTP_REPO");
    e->identity = getenv("WALSAFE_TEST_SFTP_IDENTITY");
    e->known_hosts = getenv("WALSAFE_TEST_SFTP_KNOWN_HOSTS");
    if (!e->repo && !e->identity && !e->known_hosts)
        return 0;
    if (!e->repo || !e->identity || !e->known_hosts || strncmp(e->repo, "sftp://", 7) != 0 ||
        !(path = strchr(e->repo + 7, '/')) || path[1] == '\0') {
        fprintf(stderr, "    WALSAFE_TEST_SFTP_REPO (sftp://user@host:port/abs/path), "
                        "WALSAFE_TEST_SFTP_IDENTITY and WALSAFE_TEST_SFTP_KNOWN_HOSTS must be set "
                        "together\n");
        return -1;
    }
    snprintf(base, sizeof(base), "%s", path);
    for (n = strlen(base); n > 1 && base[n - 1] == '/'; n--)
        base[n - 1] = '\0';
    if (!sftp_scratch[0]) {
        snprintf(sftp_scratch, sizeof(sftp_scratch), "%s/walsafe-unit.XXXXXX", base);
        if (stat(base, &sb) != 0 || !mkdtemp(sftp_scratch) ||
            chown(sftp_scratch, sb.st_uid, sb.st_gid) != 0) {
            fprintf(stderr,
                    "    cannot make a scratch directory in %s (the path of "
                    "WALSAFE_TEST_SFTP_REPO must be a directory of this machine): %s\n",
                    base, strerror(errno));
            sftp_scratch[0] = '\0';
            return -1;
        }
        atexit(sftp_cleanup);
    }
    snprintf(e->local, sizeof(e->local), "%s", sftp_scratch);
    snprintf(e->url, sizeof(e->url), "%.*s%s", (int)(path - e->repo), e->repo, sftp_scratch);
    return 1;
}

/* The server logs in as a user that may not be us: its directories belong to that user. */
static int sftp_mkdir(const struct sftp_env *e, const char *sub, char *local, size_t localsz)
{
    struct stat sb;

    snprintf(local, localsz, "%s/%s", e->local, sub);
    if (stat(e->local, &sb) != 0 || (mkdir(local, 0700) != 0 && errno != EEXIST))
        return -1;
    return chown(local, sb.st_uid, sb.st_gid);
}

/* The driver cfg->repo names, opened as ws_storage_open() opens it but with attempts left at 0
 * (one try), as the driver tests expect. */
static int open_from_config(const struct ws_config *cfg, struct ws_storage **out,
                            struct ws_error *err)
{
    struct ws_storage_params p;
    int rc = ws_storage_params_from_config(cfg, &p, err);

    if (rc == 0 && (rc = ws_storage_open_params(&p, out, err)) == 0)
        (*out)->attempts = 0;
    ws_storage_params_free(&p);
    return rc;
}

static int posix_open(const char *root, struct ws_storage **out, struct ws_error *err)
{
    struct ws_posix_params p = {(char *)root};
    return ws_storage_posix_open(&p, out, err);
}

/* Opens the sftp driver on <repo>/<sub>; NULL identity / known_hosts mean the environment's. */
static int sftp_open_at(const struct sftp_env *e, const char *sub, const char *identity,
                        const char *known_hosts, const char *pin, struct ws_storage **out,
                        struct ws_error *err)
{
    struct ws_config cfg;
    char url[1100];
    int rc;

    ws_config_init(&cfg);
    snprintf(url, sizeof(url), "%s/%s", e->url, sub);
    cfg.repo = strdup(url);
    cfg.sftp_identity_file = strdup(identity ? identity : e->identity);
    cfg.sftp_known_hosts = strdup(known_hosts ? known_hosts : e->known_hosts);
    cfg.sftp_host_key_sha256 = pin ? strdup(pin) : NULL;
    cfg.timeout = 10;
    cfg.retries = 1;
    *out = NULL;
    if (!cfg.repo || !cfg.sftp_identity_file || !cfg.sftp_known_hosts ||
        (pin && !cfg.sftp_host_key_sha256))
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    else
        rc = open_from_config(&cfg, out, err);
    ws_config_free(&cfg);
    return rc;
}

/* Opens the s3 driver under a prefix unique to this process and contract test. */
static int s3_open(const char *sub, struct ws_storage **out, struct ws_error *err)
{
    const char *ep = getenv("WALSAFE_TEST_S3_ENDPOINT"), *bucket = getenv("WALSAFE_TEST_S3_BUCKET");
    const char *key = getenv("WALSAFE_TEST_S3_KEY"), *secret = getenv("WALSAFE_TEST_S3_SECRET");
    struct ws_config cfg;
    char repo[512];
    int rc;

    snprintf(repo, sizeof(repo), "s3://%s/unit-%ld-%ld/%s", bucket, (long)getpid(),
             (long)time(NULL), sub);
    ws_config_init(&cfg);
    if (ws_config_set(&cfg, "repo", repo, "test", err) != 0 ||
        ws_config_set(&cfg, "s3_endpoint", ep, "test", err) != 0 ||
        ws_config_set(&cfg, "s3_access_key_id", key ? key : "S3RVER", "test", err) != 0 ||
        ws_config_set(&cfg, "s3_secret_access_key", secret ? secret : "S3RVER", "test", err) != 0 ||
        ws_config_set(&cfg, "s3_region", "us-east-1", "test", err) != 0 ||
        ws_config_set(&cfg, "timeout", "10", "test", err) != 0) {
        ws_config_free(&cfg);
        return err->code;
    }
    rc = open_from_config(&cfg, out, err);
    ws_config_free(&cfg);
    return rc;
}

static int s3_enabled(void)
{
    return getenv("WALSAFE_TEST_S3_ENDPOINT") && getenv("WALSAFE_TEST_S3_BUCKET");
}

static int open_driver(enum driver_kind kind, const char *sub, struct driver *d)
{
    static const char *const names[] = {"posix", "mem", "sftp", "s3"};
    struct ws_error err = {0};
    struct sftp_env e;
    int rc;

    memset(d, 0, sizeof(*d));
    d->name = names[kind];
    if (kind == DRV_MEM)
        return ws_storage_mem_open(&d->st, &err);
    if (kind == DRV_S3) {
        /* root stays "": S3 needs no temp names, so there is nothing local to inspect */
        rc = s3_open(sub, &d->st, &err);
        if (rc != 0)
            fprintf(stderr, "    s3: %s\n", err.msg);
        return rc;
    }
    if (kind == DRV_SFTP) {
        if (sftp_env(&e) != 1 || sftp_mkdir(&e, sub, d->root, sizeof(d->root)) != 0)
            return -1;
        rc = sftp_open_at(&e, sub, NULL, NULL, NULL, &d->st, &err);
        if (rc != 0)
            fprintf(stderr, "    sftp: %s\n", err.msg);
        return rc;
    }
    if (unit_path(d->root, sizeof(d->root), "%s", sub) != 0 || unit_mkdir(d->root) != 0)
        return -1;
    return posix_open(d->root, &d->st, &err);
}

static int put(struct ws_storage *st, const char *key, int flags, const void *data, size_t len,
               struct ws_error *err)
{
    struct ws_sink *s = NULL;
    int rc = ws_storage_open_put(st, key, flags, &s, err);
    if (rc == 0) {
        /* in two pieces, to have more than one write */
        rc = ws_sink_write(s, data, len / 2, err);
        if (rc == 0)
            rc = ws_sink_write(s, (const uint8_t *)data + len / 2, len - len / 2, err);
        if (rc == 0)
            rc = ws_sink_finish(s, err);
    }
    ws_sink_free(s);
    return rc;
}

/* get into a buffer; returns rc, *out malloc'd (also on error: what was delivered) */
static int get(struct ws_storage *st, const char *key, uint64_t off, uint64_t len, uint8_t **out,
               size_t *outlen, struct ws_error *err)
{
    struct ws_sink *b = NULL;
    const uint8_t *p;
    int rc;

    *out = NULL;
    *outlen = 0;
    if ((rc = ws_buffer_sink_new(SIZE_MAX, &b, err)) != 0)
        return rc;
    rc = ws_storage_get(st, key, off, len, b, err);
    p = ws_buffer_sink_data(b, outlen);
    *out = malloc(*outlen ? *outlen : 1);
    if (*outlen)
        memcpy(*out, p, *outlen);
    ws_sink_free(b);
    return rc;
}

static int same(struct ws_storage *st, const char *key, const uint8_t *want, size_t wantlen)
{
    struct ws_error err = {0};
    uint8_t *got;
    size_t n;
    int rc = get(st, key, 0, WS_STORAGE_TO_END, &got, &n, &err);
    int ok = rc == 0 && n == wantlen && (n == 0 || memcmp(got, want, n) == 0);
    free(got);
    return ok;
}

/* Entries under dir (recursively) whose name contains part (fixture.h). */
#define count_named unit_count_named

static int temp_files(const struct driver *d)
{
    return d->root[0] ? count_named(d->root, ".walsafe-tmp") : 0;
}

/* ---- listing helper ---- */

struct listing {
    char keys[64][256];
    uint64_t sizes[64];
    int n;
    int stop_after; /* 0 = never */
};

static int collect(void *arg, const char *key, const struct ws_storage_stat *st,
                   struct ws_error *err)
{
    struct listing *l = arg;
    if (l->n < 64) {
        snprintf(l->keys[l->n], sizeof(l->keys[0]), "%s", key);
        l->sizes[l->n] = st->size;
    }
    l->n++;
    if (l->stop_after && l->n >= l->stop_after)
        return ws_error_set(err, WS_ERR_CONFLICT, "stop here");
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

/* Lists prefix and compares with the expected keys (any order). */
static int list_is(struct ws_storage *st, const char *prefix, const char *const *want, int nwant)
{
    static struct listing l;
    struct ws_error err = {0};
    char sorted[64][256];

    memset(&l, 0, sizeof(l));
    if (ws_storage_list(st, prefix, collect, &l, &err) != 0 || l.n != nwant || l.n > 64) {
        fprintf(stderr, "    list \"%s\": %d keys, want %d (%s)\n", prefix, l.n, nwant, err.msg);
        return 0;
    }
    qsort(l.keys, (size_t)l.n, sizeof(l.keys[0]), cmp_str);
    for (int i = 0; i < nwant; i++)
        snprintf(sorted[i], sizeof(sorted[0]), "%s", want[i]);
    qsort(sorted, (size_t)nwant, sizeof(sorted[0]), cmp_str);
    for (int i = 0; i < nwant; i++) {
        if (strcmp(l.keys[i], sorted[i]) != 0) {
            fprintf(stderr, "    list \"%s\": got \"%s\", want \"%s\"\n", prefix, l.keys[i],
                    sorted[i]);
            return 0;
        }
    }
    return 1;
}

/* ---- the contract ---- */

static void contract_put_get(struct driver *d)
{
    struct ws_storage *st = d->st;
    struct ws_error err = {0};
    struct ws_storage_stat ss;
    enum { LEN = 100000 };
    uint8_t *data = malloc(LEN), *got;
    size_t n;

    REQUIRE(data);
    unit_random(data, LEN, 1);
    REQUIRE(put(st, "c/a/b/obj1", 0, data, LEN, &err) == 0);
    CHECK(ws_storage_stat(st, "c/a/b/obj1", &ss, &err) == 0);
    CHECK(ss.size == LEN);
    CHECK(ss.mtime > 0);
    CHECK(same(st, "c/a/b/obj1", data, LEN));

    /* ranges */
    static const struct {
        uint64_t off, len;
        size_t want_off, want_len;
    } ranges[] = {
        {0, 10, 0, 10},
        {100, 1000, 100, 1000},
        {LEN - 5, 5, LEN - 5, 5},
        {LEN - 5, WS_STORAGE_TO_END, LEN - 5, 5},
        {0, LEN, 0, LEN},
        {12345, WS_STORAGE_TO_END, 12345, LEN - 12345},
        {LEN, WS_STORAGE_TO_END, LEN, 0},
        {7, 0, 7, 0},
    };
    for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
        CHECK(get(st, "c/a/b/obj1", ranges[i].off, ranges[i].len, &got, &n, &err) == 0);
        CHECK(n == ranges[i].want_len);
        CHECK(n == ranges[i].want_len &&
              (n == 0 || memcmp(got, data + ranges[i].want_off, n) == 0));
        free(got);
    }

    /* an empty object */
    CHECK(put(st, "c/empty", 0, data, 0, &err) == 0);
    CHECK(ws_storage_stat(st, "c/empty", &ss, &err) == 0 && ss.size == 0);
    CHECK(same(st, "c/empty", data, 0));

    /* writes of every size in one object: small ones (which a driver may hold and send
     * together) before, between and after large ones */
    {
        static const size_t sizes[] = {1,    64,     900, 131071, 1,    131072,
                                       5000, 200000, 3,   70000,  70000};
        enum { TOTAL = 608112 };
        uint8_t *big = malloc(TOTAL);
        struct ws_sink *s = NULL;
        size_t off = 0;
        int rc;
        REQUIRE(big);
        unit_random(big, TOTAL, 9);
        REQUIRE(ws_storage_open_put(st, "c/sizes", 0, &s, &err) == 0);
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            rc = ws_sink_write(s, big + off, sizes[i], &err);
            CHECK(rc == 0);
            off += sizes[i];
        }
        CHECK(off == TOTAL);
        CHECK(ws_sink_finish(s, &err) == 0);
        ws_sink_free(s);
        CHECK(same(st, "c/sizes", big, TOTAL));
        free(big);
    }

    /* ws_storage_get_all and its limit */
    {
        uint8_t *all = NULL;
        size_t alen = 0;
        CHECK(ws_storage_get_all(st, "c/a/b/obj1", LEN, &all, &alen, &err) == 0);
        CHECK(alen == LEN && all && memcmp(all, data, LEN) == 0);
        free(all);
        all = NULL;
        CHECK(ws_storage_get_all(st, "c/a/b/obj1", LEN - 1, &all, &alen, &err) != 0);
        free(all);
        all = NULL;
        CHECK(ws_storage_get_all(st, "c/nothing", LEN, &all, &alen, &err) == WS_ERR_NOT_FOUND);
        free(all);
    }
    CHECK(temp_files(d) == 0);
    free(data);
}

static void contract_abandoned_put(struct driver *d)
{
    struct ws_storage *st = d->st;
    struct ws_error err = {0};
    struct ws_storage_stat ss;
    struct ws_sink *s = NULL;
    uint8_t data[5000];

    unit_random(data, sizeof(data), 2);
    /* written, never finished */
    REQUIRE(ws_storage_open_put(st, "ab/x/obj", 0, &s, &err) == 0);
    CHECK(ws_sink_write(s, data, sizeof(data), &err) == 0);
    CHECK(ws_storage_stat(st, "ab/x/obj", &ss, &err) == WS_ERR_NOT_FOUND);
    CHECK(list_is(st, "ab/", NULL, 0)); /* not visible while being written */
    ws_sink_free(s);
    CHECK(ws_storage_stat(st, "ab/x/obj", &ss, &err) == WS_ERR_NOT_FOUND);
    CHECK(list_is(st, "ab/", NULL, 0));
    CHECK(temp_files(d) == 0);

    /* opened and dropped without a write */
    s = NULL;
    REQUIRE(ws_storage_open_put(st, "ab/y", 0, &s, &err) == 0);
    ws_sink_free(s);
    CHECK(ws_storage_stat(st, "ab/y", &ss, &err) == WS_ERR_NOT_FOUND);
    CHECK(temp_files(d) == 0);

    /* an abandoned replacement leaves the old object */
    REQUIRE(put(st, "ab/z", 0, "old", 3, &err) == 0);
    s = NULL;
    REQUIRE(ws_storage_open_put(st, "ab/z", WS_PUT_REPLACE, &s, &err) == 0);
    CHECK(ws_sink_write(s, "new content", 11, &err) == 0);
    ws_sink_free(s);
    CHECK(same(st, "ab/z", (const uint8_t *)"old", 3));
    CHECK(temp_files(d) == 0);
}

static void contract_no_replace(struct driver *d)
{
    struct ws_storage *st = d->st;
    struct ws_error err = {0};
    struct ws_sink *s1 = NULL, *s2 = NULL;

    REQUIRE(put(st, "nr/dup", 0, "first", 5, &err) == 0);
    memset(&err, 0, sizeof(err));
    CHECK(put(st, "nr/dup", 0, "second!", 7, &err) == WS_ERR_EXISTS);
    CHECK(err.code == WS_ERR_EXISTS);
    CHECK(same(st, "nr/dup", (const uint8_t *)"first", 5));
    CHECK(temp_files(d) == 0);

    CHECK(put(st, "nr/dup", WS_PUT_REPLACE, "second!", 7, &err) == 0);
    CHECK(same(st, "nr/dup", (const uint8_t *)"second!", 7));
    CHECK(put(st, "nr/dup", WS_PUT_REPLACE, "", 0, &err) == 0);
    CHECK(same(st, "nr/dup", (const uint8_t *)"", 0));
    /* replace also creates */
    CHECK(put(st, "nr/new", WS_PUT_REPLACE, "n", 1, &err) == 0);
    CHECK(same(st, "nr/new", (const uint8_t *)"n", 1));

    /* two writers of one key: the first to finish wins, the second gets EXISTS */
    REQUIRE(ws_storage_open_put(st, "nr/race", 0, &s1, &err) == 0);
    REQUIRE(ws_storage_open_put(st, "nr/race", 0, &s2, &err) == 0);
    CHECK(ws_sink_write(s1, "one", 3, &err) == 0);
    CHECK(ws_sink_write(s2, "two!", 4, &err) == 0);
    CHECK(ws_sink_finish(s2, &err) == 0);
    CHECK(ws_sink_finish(s1, &err) == WS_ERR_EXISTS);
    ws_sink_free(s1);
    ws_sink_free(s2);
    CHECK(same(st, "nr/race", (const uint8_t *)"two!", 4));
    CHECK(temp_files(d) == 0);
}

static void contract_missing(struct driver *d)
{
    struct ws_storage *st = d->st;
    struct ws_error err = {0};
    struct ws_storage_stat ss;
    uint8_t *got;
    size_t n;

    REQUIRE(put(st, "ms/present", 0, "x", 1, &err) == 0);
    static const char *const missing[] = {"ms/absent", "nowhere/at/all", "ms/absen"};
    for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++) {
        memset(&err, 0, sizeof(err));
        CHECK(ws_storage_stat(st, missing[i], &ss, &err) == WS_ERR_NOT_FOUND);
        CHECK(err.code == WS_ERR_NOT_FOUND && strstr(err.msg, missing[i]) != NULL);
        CHECK(get(st, missing[i], 0, WS_STORAGE_TO_END, &got, &n, &err) == WS_ERR_NOT_FOUND);
        CHECK(n == 0);
        free(got);
        CHECK(ws_storage_remove(st, missing[i], &err) == WS_ERR_NOT_FOUND);
    }
    /* remove, then it is gone */
    CHECK(ws_storage_remove(st, "ms/present", &err) == 0);
    CHECK(ws_storage_stat(st, "ms/present", &ss, &err) == WS_ERR_NOT_FOUND);
    CHECK(ws_storage_remove(st, "ms/present", &err) == WS_ERR_NOT_FOUND);
    /* and can be written again without REPLACE */
    CHECK(put(st, "ms/present", 0, "yz", 2, &err) == 0);
    CHECK(same(st, "ms/present", (const uint8_t *)"yz", 2));
}

/* Many keys at once (S3: DeleteObjects batches): absent ones are no error, others untouched. */
static void contract_remove_many(struct driver *d)
{
    struct ws_storage *st = d->st;
    struct ws_error err = {0};
    struct ws_storage_stat ss;
    enum { N = WS_STORAGE_REMOVE_BATCH + 5 }; /* two batches */
    static char names[N][64];
    static const char *keys[N + 1];
    size_t i;

    for (i = 0; i < 12; i++) {
        snprintf(names[i], sizeof(names[i]), "rm/d%zu/obj.%zu", i % 3, i);
        REQUIRE(put(st, names[i], 0, "x", 1, &err) == 0);
    }
    for (i = 12; i < N; i++)
        snprintf(names[i], sizeof(names[i]), "rm/absent/%zu", i); /* never written */
    REQUIRE(put(st, "rm/keep", 0, "k", 1, &err) == 0);
    for (i = 0; i < N; i++)
        keys[i] = names[i];
    /* the first 11 written keys and every absent one, spread over both batches */
    keys[11] = names[N - 1];
    CHECK(ws_storage_remove_many(st, keys, N - 1, &err) == 0);
    for (i = 0; i < 11; i++)
        CHECK(ws_storage_stat(st, names[i], &ss, &err) == WS_ERR_NOT_FOUND);
    CHECK(ws_storage_stat(st, names[11], &ss, &err) == 0);
    CHECK(same(st, "rm/keep", (const uint8_t *)"k", 1));
    /* nothing at all, and an invalid key refused before anything is removed */
    CHECK(ws_storage_remove_many(st, keys, 0, &err) == 0);
    {
        const char *bad[] = {"rm/keep", "../escape"};
        memset(&err, 0, sizeof(err));
        CHECK(ws_storage_remove_many(st, bad, 2, &err) != 0 && err.msg[0]);
        CHECK(same(st, "rm/keep", (const uint8_t *)"k", 1));
    }
    CHECK(temp_files(d) == 0);
}

static void contract_list(struct driver *d)
{
    struct ws_storage *st = d->st;
    struct ws_error err = {0};
    struct ws_sink *pending = NULL;
    static const char *const keys[] = {
        "ls/c1/wal/0000000100000000/000000010000000000000001",
        "ls/c1/wal/0000000100000000/000000010000000000000002",
        "ls/c1/wal/0000000100000001/000000010000000100000000",
        "ls/c1/wal/00000002.history",
        "ls/c1/identity",
        "ls/c10/identity",
        "ls/c2/identity",
        "ls/top",
    };
    enum { NKEYS = sizeof(keys) / sizeof(keys[0]) };

    for (int i = 0; i < NKEYS; i++)
        REQUIRE(put(st, keys[i], 0, keys[i], strlen(keys[i]), &err) == 0);
    /* a write in progress is never listed */
    REQUIRE(ws_storage_open_put(st, "ls/c1/wal/0000000100000000/000000010000000000000003", 0,
                                &pending, &err) == 0);
    CHECK(ws_sink_write(pending, "partial", 7, &err) == 0);

    CHECK(list_is(st, "ls/", keys, NKEYS));
    CHECK(list_is(st, "ls", keys, NKEYS));
    {
        const char *const want[] = {keys[0], keys[1], keys[2], keys[3], keys[4]};
        CHECK(list_is(st, "ls/c1/", want, 5));
    }
    {
        const char *const want[] = {keys[0], keys[1], keys[2], keys[3], keys[4], keys[5]};
        CHECK(list_is(st, "ls/c1", want, 6));
    }
    CHECK(list_is(st, "ls/c1/wal/", keys, 4));
    CHECK(list_is(st, "ls/c1/wal/0000000100000000/", keys, 2));
    CHECK(list_is(st, "ls/c1/wal/0000000100000000/0000000100000000000000", keys, 2));
    CHECK(list_is(st, "ls/c1/wal/0000000100000000/000000010000000000000002", keys + 1, 1));
    CHECK(list_is(st, "ls/c1/wal/000000010000000", keys, 3));
    CHECK(list_is(st, "ls/c1/wal/00000002", keys + 3, 1));
    CHECK(list_is(st, "ls/c1/identity", keys + 4, 1));
    CHECK(list_is(st, "ls/t", keys + 7, 1));
    CHECK(list_is(st, "ls/nope/", NULL, 0));
    CHECK(list_is(st, "ls/c3", NULL, 0));
    CHECK(list_is(st, "ls/c1/identityX", NULL, 0));
    ws_sink_free(pending);

    /* sizes are reported */
    {
        static struct listing l;
        memset(&l, 0, sizeof(l));
        CHECK(ws_storage_list(st, "ls/c2/", collect, &l, &err) == 0);
        CHECK(l.n == 1 && l.sizes[0] == strlen(keys[6]));
    }
    /* a callback error stops the listing and is returned */
    {
        static struct listing l;
        memset(&l, 0, sizeof(l));
        l.stop_after = 2;
        memset(&err, 0, sizeof(err));
        CHECK(ws_storage_list(st, "ls/", collect, &l, &err) == WS_ERR_CONFLICT);
        CHECK(l.n == 2);
        CHECK(strcmp(err.msg, "stop here") == 0);
    }
    /* removal shows in the listing */
    CHECK(ws_storage_remove(st, keys[7], &err) == 0);
    CHECK(list_is(st, "ls/t", NULL, 0));
    CHECK(temp_files(d) == 0);
}

/*
 * A range the object cannot supply is an error, the same with every driver: a silently short
 * read is how truncation goes unnoticed. Reading from exactly the end gives nothing, no error.
 */
static void contract_range_past_end(struct driver *d)
{
    struct ws_storage *st = d->st;
    struct ws_error err = {0};
    uint8_t *got;
    size_t n;
    int rc;

    REQUIRE(put(st, "rg/obj", 0, "0123456789", 10, &err) == 0);
    CHECK(get(st, "rg/obj", 10, WS_STORAGE_TO_END, &got, &n, &err) == 0 && n == 0);
    free(got);
    rc = get(st, "rg/obj", 5, 10, &got, &n, &err);
    CHECK(rc != 0 && rc != WS_ERR_NOT_FOUND);
    if (rc == 0)
        fprintf(stderr, "    %s: get [5, 15) of a 10-byte object succeeded with %zu bytes\n",
                d->name, n);
    free(got);
    rc = get(st, "rg/obj", 11, WS_STORAGE_TO_END, &got, &n, &err);
    CHECK(rc != 0 && rc != WS_ERR_NOT_FOUND);
    if (rc == 0)
        fprintf(stderr, "    %s: get from offset 11 of a 10-byte object succeeded\n", d->name);
    free(got);
}

/* Keys that name a "directory" (a prefix of other keys) or lie below an object are absent
 * objects like any other: NOT_FOUND, as an object store would answer (but see get below). */
static void contract_key_vs_prefix(struct driver *d)
{
    struct ws_storage *st = d->st;
    struct ws_error err = {0};
    struct ws_storage_stat ss;
    uint8_t *got;
    size_t n;
    static const char *const missing[] = {"kp", "kp/dir", "kp/dir/obj/below"};

    REQUIRE(put(st, "kp/dir/obj", 0, "x", 1, &err) == 0);
    for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++) {
        int rc, ok;
        memset(&err, 0, sizeof(err));
        rc = ws_storage_stat(st, missing[i], &ss, &err);
        CHECK(rc == WS_ERR_NOT_FOUND);
        if (rc != WS_ERR_NOT_FOUND)
            fprintf(stderr, "    %s: stat \"%s\": %s: %s\n", d->name, missing[i], ws_code_name(rc),
                    err.msg);
        /* A prefix may instead be refused as damage by a driver with directories, which finds
         * one where an object was asked for (storage/posix.c); it is never read as an object. */
        rc = get(st, missing[i], 0, WS_STORAGE_TO_END, &got, &n, &err);
        ok = rc == WS_ERR_NOT_FOUND || (i < 2 && rc == WS_ERR_CORRUPT);
        CHECK(ok);
        if (!ok)
            fprintf(stderr, "    %s: get \"%s\": %s: %s\n", d->name, missing[i], ws_code_name(rc),
                    err.msg);
        free(got);
        rc = ws_storage_remove(st, missing[i], &err);
        CHECK(rc == WS_ERR_NOT_FOUND);
        if (rc != WS_ERR_NOT_FOUND)
            fprintf(stderr, "    %s: remove \"%s\": %s: %s\n", d->name, missing[i],
                    ws_code_name(rc), err.msg);
    }
    CHECK(same(st, "kp/dir/obj", (const uint8_t *)"x", 1));
}

/* Keys whose components start with a dot (but not ".walsafe-tmp") are valid keys: listable too. */
static void contract_dot_keys(struct driver *d)
{
    struct ws_storage *st = d->st;
    struct ws_error err = {0};
    static const char *const keys[] = {"dk/.hidden", "dk/.d/obj", "dk/...", "dk/a.walsafe-tmp"};

    for (int i = 0; i < 4; i++) {
        CHECK(ws_storage_key_valid(keys[i]));
        CHECK(put(st, keys[i], 0, "v", 1, &err) == 0);
        CHECK(same(st, keys[i], (const uint8_t *)"v", 1));
    }
    CHECK(list_is(st, "dk/", keys, 4));
}

static void contract_invalid_keys(struct driver *d)
{
    struct ws_storage *st = d->st;
    static const char *const bad[] = {
        "/abs",
        "/",
        "..",
        "../escape",
        "a/../b",
        "a/..",
        ".",
        "./a",
        "a/./b",
        "a//b",
        "a/",
        "",
        ".walsafe-tmp",
        ".walsafe-tmp.x",
        "a/.walsafe-tmp.obj.1.2",
        "a b",
        "a\\b",
        "a:b",
        "a\nb",
        "\xc3\xa4",
        "a*",
        "a?b",
        "a/b/",
        "//",
        "a\tb",
        "~x",
        "a%2fb",
    };
    char longkey[1100];
    struct ws_error err = {0};
    struct ws_storage_stat ss;
    struct ws_sink *s;
    uint8_t *got;
    size_t n;

    memset(longkey, 'k', 1025);
    longkey[1025] = '\0';
    for (size_t i = 0; i <= sizeof(bad) / sizeof(bad[0]); i++) {
        const char *k = i < sizeof(bad) / sizeof(bad[0]) ? bad[i] : longkey;
        int rc;
        CHECK(!ws_storage_key_valid(k));
        rc = ws_storage_stat(st, k, &ss, &err);
        CHECK(rc != 0 && rc != WS_ERR_NOT_FOUND);
        s = NULL;
        rc = ws_storage_open_put(st, k, WS_PUT_REPLACE, &s, &err);
        CHECK(rc != 0 && s == NULL);
        if (s) {
            ws_sink_free(s);
            fprintf(stderr, "    %s: open_put accepted \"%s\"\n", d->name, k);
        }
        rc = get(st, k, 0, WS_STORAGE_TO_END, &got, &n, &err);
        CHECK(rc != 0 && rc != WS_ERR_NOT_FOUND && n == 0);
        free(got);
        rc = ws_storage_remove(st, k, &err);
        CHECK(rc != 0 && rc != WS_ERR_NOT_FOUND);
    }
    CHECK(ws_storage_key_valid("a"));
    CHECK(ws_storage_key_valid("a/b"));
    CHECK(ws_storage_key_valid("A-Z_0.9/x-y_z.partial"));
    CHECK(ws_storage_key_valid("main/wal/0000000100000000/000000010000000000000001"));
    longkey[1024] = '\0';
    CHECK(ws_storage_key_valid(longkey));
    if (d->root[0]) {
        /* nothing escaped the root */
        char esc[600];
        struct stat sb;
        snprintf(esc, sizeof(esc), "%s/../escape", d->root);
        CHECK(stat(esc, &sb) != 0);
        snprintf(esc, sizeof(esc), "%s/b", d->root);
        CHECK(stat(esc, &sb) != 0);
    }
}

static void run_contract(void (*fn)(struct driver *), const char *sub)
{
    struct sftp_env e;
    int sftp = sftp_env(&e);

    if (sftp < 0)
        unit_fail(__FILE__, __LINE__, "incomplete WALSAFE_TEST_SFTP_* environment");
    for (int kind = DRV_POSIX; kind <= DRV_S3; kind++) {
        static const char *const suffix[] = {"posix", "mem", "sftp", "s3"};
        struct driver d;
        char name[64];
        int before = unit_failures;
        if ((kind == DRV_SFTP && sftp != 1) || (kind == DRV_S3 && !s3_enabled()))
            continue;
        snprintf(name, sizeof(name), "%s-%s", sub, suffix[kind]);
        if (open_driver(kind, name, &d) != 0) {
            unit_fail(__FILE__, __LINE__, "open_driver");
            continue;
        }
        fn(&d);
        if (unit_failures != before)
            fprintf(stderr, "    ^ with the %s driver\n", d.name);
        ws_storage_close(d.st);
    }
}

static void test_put_get(void)
{
    run_contract(contract_put_get, "putget");
}
static void test_abandoned_put(void)
{
    run_contract(contract_abandoned_put, "abandon");
}
static void test_no_replace(void)
{
    run_contract(contract_no_replace, "noreplace");
}
static void test_missing(void)
{
    run_contract(contract_missing, "missing");
}
static void test_list(void)
{
    run_contract(contract_list, "list");
}
static void test_remove_many(void)
{
    run_contract(contract_remove_many, "removemany");
}
static void test_range_past_end(void)
{
    run_contract(contract_range_past_end, "range");
}
static void test_key_vs_prefix(void)
{
    run_contract(contract_key_vs_prefix, "keyprefix");
}
static void test_dot_keys(void)
{
    run_contract(contract_dot_keys, "dotkeys");
}
static void test_invalid_keys(void)
{
    run_contract(contract_invalid_keys, "invalid");
}

/* ---- posix only ---- */

static void test_posix_modes(void)
{
    struct driver d;
    struct ws_error err = {0};
    struct stat sb;
    char path[1024];
    mode_t old = umask(0);

    REQUIRE(open_driver(DRV_POSIX, "modes", &d) == 0);
    CHECK(put(d.st, "m/p/q/obj", 0, "data", 4, &err) == 0);
    CHECK(put(d.st, "m/p/q/obj2", WS_PUT_REPLACE, "data", 4, &err) == 0);
    umask(old);
    snprintf(path, sizeof(path), "%s/m/p/q/obj", d.root);
    CHECK(stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && (sb.st_mode & 07777) == 0600);
    snprintf(path, sizeof(path), "%s/m/p/q/obj2", d.root);
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 07777) == 0600);
    static const char *const dirs[] = {"m", "m/p", "m/p/q"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", d.root, dirs[i]);
        CHECK(stat(path, &sb) == 0 && S_ISDIR(sb.st_mode) && (sb.st_mode & 07777) == 0700);
    }
    /* the object is a plain file with the bytes under the key's path */
    {
        FILE *f;
        char buf[16] = "";
        snprintf(path, sizeof(path), "%s/m/p/q/obj", d.root);
        f = fopen(path, "rb");
        CHECK(f && fread(buf, 1, sizeof(buf), f) == 4 && memcmp(buf, "data", 4) == 0);
        if (f)
            fclose(f);
    }
    ws_storage_close(d.st);
}

/* Run as root in a repository another user owns, every directory and file created is that
 * user's (basebackup and wal-prune --allow-root must leave nothing root-owned there). */
static void test_posix_gives_to_owner(void)
{
    const uid_t nobody = 65534;
    struct ws_storage *st = NULL;
    struct ws_error err = {0};
    struct stat sb;
    char root[600], path[700];
    static const char *const made[] = {"c", "c/backup", "c/backup/obj"};

    if (geteuid() != 0) {
        fprintf(stderr, "    skipped: needs root\n");
        return;
    }
    snprintf(root, sizeof(root), "%s/owned-by-nobody", unit_tmpdir());
    REQUIRE(mkdir(root, 0700) == 0 && chown(root, nobody, nobody) == 0);
    REQUIRE(posix_open(root, &st, &err) == 0);
    CHECK(put(st, "c/backup/obj", 0, "data", 4, &err) == 0);
    for (size_t i = 0; i < sizeof(made) / sizeof(made[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", root, made[i]);
        CHECK(lstat(path, &sb) == 0 && sb.st_uid == nobody && sb.st_gid == nobody);
    }
    ws_storage_close(st);
}

static int count_denied(void *arg, const char *key, const struct ws_storage_stat *st,
                        struct ws_error *err)
{
    (void)err;
    if (st->denied && strcmp(key, "c/backup/B/") == 0)
        ++*(int *)arg;
    return 0;
}

/* A directory below the prefix that the user may not read: ws_storage_list fails naming it,
 * ws_storage_list_denied passes it on as a denied entry and lists the rest. Run in a child as
 * nobody (root reads everything). */
static void test_posix_denied_listing(void)
{
    const uid_t nobody = 65534;
    char root[600], path[700];
    int status = -1;
    pid_t pid;

    if (geteuid() != 0) {
        fprintf(stderr, "    skipped: needs root\n");
        return;
    }
    snprintf(root, sizeof(root), "%s/denied", unit_tmpdir());
    REQUIRE(mkdir(root, 0755) == 0 && chown(root, nobody, nobody) == 0);
    chmod(unit_tmpdir(), 0755);
    snprintf(path, sizeof(path), "%s/c", root);
    REQUIRE(mkdir(path, 0755) == 0);
    snprintf(path, sizeof(path), "%s/c/backup", root);
    REQUIRE(mkdir(path, 0755) == 0);
    snprintf(path, sizeof(path), "%s/c/backup/A", root);
    REQUIRE(mkdir(path, 0755) == 0);
    snprintf(path, sizeof(path), "%s/c/backup/B", root);
    REQUIRE(mkdir(path, 0700) == 0); /* root's */
    REQUIRE((pid = fork()) >= 0);
    if (pid == 0) {
        struct ws_storage *st = NULL;
        struct ws_error err = {0};
        int denied = 0, bad = 0;
        if (setgid(nobody) != 0 || setuid(nobody) != 0 || posix_open(root, &st, &err) != 0)
            _exit(10);
        if (ws_storage_list(st, "c/backup/", count_denied, &denied, &err) != WS_ERR_STORAGE ||
            err.sys_errno != EACCES || !strstr(err.msg, "c/backup/B") || denied != 0)
            bad |= 1;
        memset(&err, 0, sizeof(err));
        if (ws_storage_list_denied(st, "c/backup/", count_denied, &denied, &err) != 0 ||
            denied != 1)
            bad |= 2;
        ws_storage_close(st);
        _exit(bad);
    }
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fprintf(stderr, "    child status %d\n", status);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_posix_open(void)
{
    struct ws_storage *st = NULL;
    struct ws_error err = {0};
    char path[600];
    FILE *f;

    snprintf(path, sizeof(path), "%s/no-such-dir", unit_tmpdir());
    CHECK(posix_open(path, &st, &err) == WS_ERR_STORAGE);
    CHECK(strstr(err.msg, path) != NULL);
    snprintf(path, sizeof(path), "%s/no-such-dir/deeper", unit_tmpdir());
    CHECK(posix_open(path, &st, &err) == WS_ERR_STORAGE);
    /* a file is not a repository */
    snprintf(path, sizeof(path), "%s/plainfile", unit_tmpdir());
    f = fopen(path, "w");
    REQUIRE(f);
    fclose(f);
    CHECK(posix_open(path, &st, &err) == WS_ERR_STORAGE);
    /* relative paths are refused */
    CHECK(posix_open("relative/dir", &st, &err) != 0);

    /* a trailing slash is fine and names the same place */
    snprintf(path, sizeof(path), "%s/slash", unit_tmpdir());
    REQUIRE(mkdir(path, 0700) == 0);
    {
        struct ws_storage *a = NULL, *b = NULL;
        struct ws_storage_stat ss;
        char withslash[620];
        snprintf(withslash, sizeof(withslash), "%s/", path);
        REQUIRE(posix_open(withslash, &a, &err) == 0);
        REQUIRE(posix_open(path, &b, &err) == 0);
        CHECK(put(a, "k/obj", 0, "1", 1, &err) == 0);
        CHECK(ws_storage_stat(b, "k/obj", &ss, &err) == 0 && ss.size == 1);
        CHECK(list_is(a, "k/", (const char *const[]){"k/obj"}, 1));
        ws_storage_close(a);
        ws_storage_close(b);
    }

    /* ws_storage_open picks the driver from the repo URL */
    {
        struct ws_config cfg;
        ws_config_init(&cfg);
        cfg.repo = path;
        CHECK(ws_storage_open(&cfg, &st, &err) == 0);
        ws_storage_close(st);
        {
            char url[700];
            snprintf(url, sizeof(url), "file://%s", path);
            cfg.repo = url;
            CHECK(ws_storage_open(&cfg, &st, &err) == 0);
            ws_storage_close(st);
        }
        cfg.repo = (char *)"file://relative";
        CHECK(ws_storage_open(&cfg, &st, &err) == WS_ERR_CONFIG);
        cfg.repo = (char *)"relative/path";
        CHECK(ws_storage_open(&cfg, &st, &err) == WS_ERR_CONFIG);
        cfg.repo = NULL;
    }
}

/* An empty credential is an unset one (WALSAFE_S3_ACCESS_KEY_ID= in the environment): it opens
 * anonymously, or names the missing secret; never "out of memory". Opening sends no request. */
static void test_s3_empty_credentials(void)
{
    static const struct {
        const char *akid, *secret;
        int rc;
    } cases[] = {{"", "", 0},
                 {"", "secret", 0},
                 {NULL, "", 0},
                 {"AKID", "", WS_ERR_CONFIG},
                 {"AKID", NULL, WS_ERR_CONFIG},
                 {"AKID", "secret", 0}};

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct ws_storage *st = NULL;
        struct ws_error err = {0};
        struct ws_config cfg;
        ws_config_init(&cfg);
        REQUIRE(ws_config_set(&cfg, "repo", "s3://walsafe-test/p", "test", &err) == 0);
        REQUIRE(ws_config_set(&cfg, "s3_endpoint", "http://127.0.0.1:9", "test", &err) == 0);
        if (cases[i].akid)
            REQUIRE(ws_config_set(&cfg, "s3_access_key_id", cases[i].akid, "t", &err) == 0);
        if (cases[i].secret)
            REQUIRE(ws_config_set(&cfg, "s3_secret_access_key", cases[i].secret, "t", &err) == 0);
        CHECK(open_from_config(&cfg, &st, &err) == cases[i].rc);
        if (cases[i].rc == WS_ERR_CONFIG)
            CHECK(strstr(err.msg, "s3_secret_access_key is not") != NULL);
        ws_storage_close(st);
        ws_config_free(&cfg);
    }
}

/* A configuration with repo and the given keys ("key", "value", ..., NULL). */
static void config_with(struct ws_config *cfg, const char *repo, ...)
{
    struct ws_error err = {0};
    const char *k;
    va_list ap;

    ws_config_init(cfg);
    CHECK(ws_config_set(cfg, "repo", repo, "test", &err) == 0);
    va_start(ap, repo);
    while ((k = va_arg(ap, const char *)) != NULL)
        CHECK(ws_config_set(cfg, k, va_arg(ap, const char *), "test", &err) == 0);
    va_end(ap);
}

static int str_is(const char *got, const char *want)
{
    return got && strcmp(got, want) == 0;
}

/* ws_storage_params_from_config: what each driver gets from a configuration. */
static void test_params(void)
{
    struct ws_storage_params p;
    struct ws_error err = {0};
    struct ws_config cfg;

    config_with(&cfg, "file:///srv/r/", "retries", "7", NULL);
    REQUIRE(ws_storage_params_from_config(&cfg, &p, &err) == 0);
    CHECK(p.kind == WS_STORAGE_POSIX && p.attempts == 7 && str_is(p.posix.root, "/srv/r/"));
    ws_storage_params_free(&p);
    ws_config_free(&cfg);

    config_with(&cfg, "s3://bucket/a/b//", "s3_endpoint", "http://h:9000/ignored", "parallel", "3",
                "timeout", "9", "s3_access_key_id", "AK", "s3_secret_access_key", "SK",
                "s3_session_token", "", "s3_part_size", "5MB", NULL);
    REQUIRE(ws_storage_params_from_config(&cfg, &p, &err) == 0);
    CHECK(p.kind == WS_STORAGE_S3 && str_is(p.s3.location, "s3://bucket/a/b//"));
    CHECK(str_is(p.s3.scheme, "http") && str_is(p.s3.host, "h:9000") && p.s3.path_style);
    CHECK(str_is(p.s3.bucket, "bucket") && str_is(p.s3.prefix, "a/b/"));
    CHECK(str_is(p.s3.region, "us-east-1") && str_is(p.s3.access_key_id, "AK") &&
          str_is(p.s3.secret_access_key, "SK") && !p.s3.session_token && !p.s3.ca_file);
    CHECK(p.s3.parallel == 3 && p.s3.timeout == 9 && p.s3.part_size == 5u << 20 && p.s3.verify_tls);
    ws_storage_params_free(&p);
    CHECK(!p.s3.secret_access_key && !p.s3.bucket);
    ws_config_free(&cfg);

    config_with(&cfg, "s3://bucket", "s3_region", "eu-west-3", NULL);
    REQUIRE(ws_storage_params_from_config(&cfg, &p, &err) == 0);
    CHECK(str_is(p.s3.scheme, "https") && str_is(p.s3.host, "s3.eu-west-3.amazonaws.com"));
    CHECK(!p.s3.path_style && str_is(p.s3.prefix, "") && !p.s3.access_key_id);
    ws_storage_params_free(&p);
    ws_config_free(&cfg);

    config_with(&cfg, "sftp://u@[::1]:2222/srv/r//", "sftp_host_key_sha256", "SHA256:abc",
                "sftp_identity_file", "/k", NULL);
    REQUIRE(ws_storage_params_from_config(&cfg, &p, &err) == 0);
    CHECK(p.kind == WS_STORAGE_SFTP && str_is(p.sftp.origin, "sftp://u@[::1]:2222"));
    CHECK(str_is(p.sftp.root, "/srv/r") && str_is(p.sftp.host, "::1") && p.sftp.port == 2222);
    CHECK(str_is(p.sftp.host_key_sha256, "abc") && str_is(p.sftp.identity_file, "/k"));
    CHECK(p.sftp.known_hosts && strstr(p.sftp.known_hosts, "/.ssh/known_hosts") != NULL);
    ws_storage_params_free(&p);
    ws_config_free(&cfg);

    {
        static const struct {
            const char *repo, *key, *value, *msg;
        } bad[] = {
            {"ftp://h/x", NULL, NULL, "expected /abs/path, file:///abs/path, s3://"},
            {"relative/x", NULL, NULL, "expected /abs/path"},
            {"file://rel", NULL, NULL, "needs an absolute path"},
            {"s3://ab", NULL, NULL, "3 to 63"},
            {"s3://bucket", "s3_endpoint", "ftp://h", "invalid s3_endpoint"},
            {"s3://bucket", "s3_uri_style", "sideways", "invalid s3_uri_style"},
            {"s3://bucket", "s3_access_key_id", "AK", "s3_secret_access_key is not"},
            {"sftp://u@h/", NULL, NULL, "expected sftp://"},
            {"sftp://h/x", NULL, NULL, "expected sftp://"},
            {"sftp://u@h:0/x", NULL, NULL, "expected sftp://"},
            {"sftp://u@h:70000/x", NULL, NULL, "expected sftp://"},
            {"sftp://u@[::1/x", NULL, NULL, "expected sftp://"},
            {"sftp://u@:22/x", NULL, NULL, "expected sftp://"},
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            struct ws_storage *st = NULL;
            config_with(&cfg, bad[i].repo, bad[i].key, bad[i].value, NULL);
            CHECK(ws_storage_params_from_config(&cfg, &p, &err) == WS_ERR_CONFIG);
            CHECK(strstr(err.msg, bad[i].msg) != NULL);
            CHECK(p.kind == 0 && !p.s3.bucket && !p.sftp.origin);
            CHECK(ws_storage_open(&cfg, &st, &err) == WS_ERR_CONFIG && !st);
            ws_config_free(&cfg);
        }
    }
}

/* Capabilities: what ws_storage_caps_of() says of a URL is what its driver declares, and the
 * housekeeping operations a driver has are those its capabilities name. */
static int caps_match_hk(const struct ws_storage *st)
{
    const struct ws_storage_housekeeping *hk = st->hk;
    unsigned int from_hk = (hk && hk->remove_dir ? WS_STORAGE_REMOVE_DIR : 0) |
                           (hk && hk->clean_temp ? WS_STORAGE_CLEAN_TEMP : 0) |
                           (hk && hk->remove_many ? WS_STORAGE_REMOVE_MANY : 0);

    return (st->caps & (WS_STORAGE_REMOVE_DIR | WS_STORAGE_CLEAN_TEMP | WS_STORAGE_REMOVE_MANY)) ==
           from_hk;
}

static void test_caps(void)
{
    struct ws_storage *st = NULL;
    struct ws_error err = {0};
    struct ws_config cfg;
    struct sftp_env e;
    char url[700];

    CHECK(ws_storage_caps_of("/srv/r") == WS_POSIX_CAPS);
    CHECK(ws_storage_caps_of("file:///srv/r") == WS_POSIX_CAPS);
    CHECK(ws_storage_caps_of("s3://b") == WS_S3_CAPS);
    CHECK(ws_storage_caps_of("sftp://u@h/r") == WS_SFTP_CAPS);
    CHECK(ws_storage_caps_of("ftp://h/r") == 0 && ws_storage_caps_of("rel") == 0 &&
          ws_storage_caps_of("S3://b") == 0 && ws_storage_caps_of(NULL) == 0);
    CHECK(!(WS_POSIX_CAPS & WS_STORAGE_REMOTE) && (WS_S3_CAPS & WS_STORAGE_REMOTE) &&
          (WS_SFTP_CAPS & WS_STORAGE_REMOTE) && (WS_POSIX_CAPS & WS_STORAGE_DIRS) &&
          !(WS_S3_CAPS & WS_STORAGE_DIRS) && (WS_SFTP_CAPS & WS_STORAGE_DIRS));

    REQUIRE(posix_open(unit_tmpdir(), &st, &err) == 0);
    CHECK(st->caps == WS_POSIX_CAPS && caps_match_hk(st));
    ws_storage_close(st);
    REQUIRE(ws_storage_mem_open(&st, &err) == 0);
    CHECK(st->caps == 0 && caps_match_hk(st));
    ws_storage_close(st);
    /* opening the s3 driver sends no request */
    config_with(&cfg, "s3://walsafe-test/p", "s3_endpoint", "http://127.0.0.1:9", NULL);
    REQUIRE(ws_storage_open(&cfg, &st, &err) == 0);
    CHECK(st->caps == WS_S3_CAPS && caps_match_hk(st) && st->attempts == cfg.retries);
    ws_storage_close(st);
    ws_config_free(&cfg);
    if (sftp_env(&e) == 1) {
        snprintf(url, sizeof(url), "%s", e.url);
        config_with(&cfg, url, "sftp_identity_file", e.identity, "sftp_known_hosts", e.known_hosts,
                    NULL);
        REQUIRE(ws_storage_open(&cfg, &st, &err) == 0);
        CHECK(st->caps == WS_SFTP_CAPS && caps_match_hk(st));
        ws_storage_close(st);
        ws_config_free(&cfg);
    }
}

/* The temp file of a put in progress lives beside the target and goes away on abort. */
static void test_posix_temp_files(void)
{
    struct driver d;
    struct ws_error err = {0};
    struct ws_sink *s = NULL;
    char dir[700];

    REQUIRE(open_driver(DRV_POSIX, "temps", &d) == 0);
    REQUIRE(ws_storage_open_put(d.st, "t/u/obj", 0, &s, &err) == 0);
    CHECK(ws_sink_write(s, "abc", 3, &err) == 0);
    snprintf(dir, sizeof(dir), "%s/t/u", d.root);
    CHECK(count_named(dir, ".walsafe-tmp") == 1);
    ws_sink_free(s);
    CHECK(count_named(d.root, ".walsafe-tmp") == 0);
    CHECK(count_named(d.root, "obj") == 0);

    /* after a successful put only the object is there */
    CHECK(put(d.st, "t/u/obj", 0, "abc", 3, &err) == 0);
    CHECK(count_named(d.root, ".walsafe-tmp") == 0);
    CHECK(count_named(dir, "") == 1);
    /* and after a refused one too */
    CHECK(put(d.st, "t/u/obj", 0, "abcd", 4, &err) == WS_ERR_EXISTS);
    CHECK(count_named(dir, "") == 1);
    ws_storage_close(d.st);
}

/* ---- mem only: faults ---- */

/* Deletes repeat a transient failure up to `attempts` times; a permanent one fails at once. */
static void test_delete_retries(void)
{
    static const char *const keys[] = {"r/a", "r/b", "r/c"};
    struct ws_storage *st = NULL;
    struct ws_error err = {0};
    struct ws_storage_stat ss;

    REQUIRE(ws_storage_mem_open(&st, &err) == 0);
    for (int i = 0; i < 3; i++)
        REQUIRE(put(st, keys[i], 0, "x", 1, &err) == 0);
    st->attempts = 3;
    /* the second delete request fails once, transiently: repeated, every key gone */
    ws_storage_mem_fault(st, WS_MEM_REMOVE | WS_MEM_RETRYABLE, 2, WS_ERR_STORAGE);
    CHECK(ws_storage_remove_many(st, keys, 3, &err) == 0);
    for (int i = 0; i < 3; i++)
        CHECK(ws_storage_stat(st, keys[i], &ss, &err) == WS_ERR_NOT_FOUND);
    /* a permanent failure is reported at once */
    REQUIRE(put(st, "r/a", 0, "x", 1, &err) == 0);
    ws_storage_mem_fault(st, WS_MEM_REMOVE, 1, WS_ERR_STORAGE);
    CHECK(ws_storage_remove(st, "r/a", &err) == WS_ERR_STORAGE && !err.retryable);
    CHECK(ws_storage_stat(st, "r/a", &ss, &err) == 0);
    /* so is a transient one when no attempt is left */
    st->attempts = 1;
    ws_storage_mem_fault(st, WS_MEM_REMOVE | WS_MEM_RETRYABLE, 1, WS_ERR_STORAGE);
    CHECK(ws_storage_remove(st, "r/a", &err) == WS_ERR_STORAGE && err.retryable);
    CHECK(ws_storage_stat(st, "r/a", &ss, &err) == 0);
    ws_storage_mem_fault(st, 0, 0, 0);
    ws_storage_close(st);
}

/* A destination that fails every write with an error that looks transient, counting them. */
struct failing_sink {
    struct ws_sink base;
    int writes;
};

static int failing_write(struct ws_sink *s, const void *buf, size_t len, struct ws_error *err)
{
    (void)buf, (void)len;
    ((struct failing_sink *)s)->writes++;
    ws_error_set(err, WS_ERR_STORAGE, "destination failed");
    err->retryable = 1;
    return err->code;
}

static int stop_after_one(void *arg, const char *key, const struct ws_storage_stat *st,
                          struct ws_error *err)
{
    (void)key, (void)st;
    ++*(int *)arg;
    ws_error_set(err, WS_ERR_STORAGE, "callback failed");
    err->retryable = 1;
    return err->code;
}

/* stat, get and list repeat a transient failure up to `attempts` tries; get resumes after the
 * bytes its destination already took; a get whose destination failed, or a listing that
 * already delivered a key, is never repeated. */
static void test_read_retries(void)
{
    static const struct ws_sink_ops failing_ops = {"failing", failing_write, NULL, NULL, NULL};
    static const char *const both[] = {"g/obj", "g/two"};
    struct ws_storage *st = NULL;
    struct ws_error err = {0};
    struct ws_storage_stat ss;
    struct failing_sink failing = {{&failing_ops, NULL, 0}, 0};
    uint8_t data[10000], *got = NULL;
    size_t n = 0;
    int calls = 0;

    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 7 + i / 251);
    REQUIRE(ws_storage_mem_open(&st, &err) == 0);
    REQUIRE(put(st, "g/obj", 0, data, sizeof(data), &err) == 0);
    REQUIRE(put(st, "g/two", 0, "x", 1, &err) == 0);
    st->attempts = 3;

    ws_storage_mem_fault(st, WS_MEM_STAT | WS_MEM_RETRYABLE, 1, WS_ERR_STORAGE);
    CHECK(ws_storage_stat(st, "g/obj", &ss, &err) == 0 && ss.size == sizeof(data));

    /* cut half-way: resumed, every byte exactly once, for a whole object and for a range */
    ws_storage_mem_fault(st, WS_MEM_CUT_GET | WS_MEM_RETRYABLE, 1, WS_ERR_STORAGE);
    CHECK(get(st, "g/obj", 0, WS_STORAGE_TO_END, &got, &n, &err) == 0);
    CHECK(n == sizeof(data) && got && memcmp(got, data, n) == 0);
    free(got);
    got = NULL;
    ws_storage_mem_fault(st, WS_MEM_CUT_GET | WS_MEM_RETRYABLE, 1, WS_ERR_STORAGE);
    CHECK(get(st, "g/obj", 1000, 5001, &got, &n, &err) == 0);
    CHECK(n == 5001 && got && memcmp(got, data + 1000, n) == 0);
    free(got);
    got = NULL;
    /* a permanent failure is not repeated; nor a transient one without tries left */
    ws_storage_mem_fault(st, WS_MEM_CUT_GET, 1, WS_ERR_STORAGE);
    CHECK(get(st, "g/obj", 0, WS_STORAGE_TO_END, &got, &n, &err) == WS_ERR_STORAGE);
    free(got);
    got = NULL;
    st->attempts = 1;
    ws_storage_mem_fault(st, WS_MEM_GET | WS_MEM_RETRYABLE, 1, WS_ERR_STORAGE);
    CHECK(get(st, "g/obj", 0, WS_STORAGE_TO_END, &got, &n, &err) == WS_ERR_STORAGE);
    free(got);
    got = NULL;
    st->attempts = 3;
    /* the destination's own failure ends the get: it is never written again */
    ws_storage_mem_fault(st, 0, 0, 0);
    CHECK(ws_storage_get(st, "g/obj", 0, WS_STORAGE_TO_END, &failing.base, &err) == WS_ERR_STORAGE);
    CHECK(failing.writes == 1);

    /* a listing that failed before any key is repeated */
    ws_storage_mem_fault(st, WS_MEM_LIST | WS_MEM_RETRYABLE, 1, WS_ERR_STORAGE);
    CHECK(list_is(st, "g/", both, 2));
    /* one whose callback saw a key is not (the callback would see it twice) */
    ws_storage_mem_fault(st, 0, 0, 0);
    CHECK(ws_storage_list(st, "g/", stop_after_one, &calls, &err) == WS_ERR_STORAGE);
    CHECK(calls == 1);
    ws_storage_close(st);
}

static void test_mem_faults(void)
{
    struct ws_storage *st = NULL;
    struct ws_error err = {0};
    struct ws_storage_stat ss;
    struct ws_sink *s = NULL;
    uint8_t *got;
    size_t n;

    REQUIRE(ws_storage_mem_open(&st, &err) == 0);

    /* a failing commit leaves nothing visible */
    ws_storage_mem_fault(st, WS_MEM_PUT_FINISH, 1, WS_ERR_STORAGE);
    CHECK(put(st, "f/x", 0, "data", 4, &err) == WS_ERR_STORAGE);
    CHECK(ws_storage_stat(st, "f/x", &ss, &err) == WS_ERR_NOT_FOUND);
    CHECK(list_is(st, "f/", NULL, 0));
    CHECK(ws_storage_mem_object(st, "f/x", &n) == NULL);
    /* the next one works */
    CHECK(put(st, "f/x", 0, "data", 4, &err) == 0);
    CHECK(same(st, "f/x", (const uint8_t *)"data", 4));

    /* a failing replacement keeps the old content */
    ws_storage_mem_fault(st, WS_MEM_PUT_FINISH, 1, WS_ERR_STORAGE);
    CHECK(put(st, "f/x", WS_PUT_REPLACE, "new!", 4, &err) == WS_ERR_STORAGE);
    CHECK(same(st, "f/x", (const uint8_t *)"data", 4));

    /* a failing write, then the sink is freed */
    ws_storage_mem_fault(st, WS_MEM_PUT_WRITE, 2, WS_ERR_STORAGE);
    REQUIRE(ws_storage_open_put(st, "f/w", 0, &s, &err) == 0);
    CHECK(ws_sink_write(s, "ab", 2, &err) == 0);
    CHECK(ws_sink_write(s, "cd", 2, &err) == WS_ERR_STORAGE);
    ws_sink_free(s);
    CHECK(ws_storage_stat(st, "f/w", &ss, &err) == WS_ERR_NOT_FOUND);

    /* get, stat, list, remove faults pass their code through */
    ws_storage_mem_fault(st, WS_MEM_GET, 1, WS_ERR_STORAGE);
    CHECK(get(st, "f/x", 0, WS_STORAGE_TO_END, &got, &n, &err) == WS_ERR_STORAGE);
    free(got);
    ws_storage_mem_fault(st, WS_MEM_STAT, 1, WS_ERR_STORAGE);
    CHECK(ws_storage_stat(st, "f/x", &ss, &err) == WS_ERR_STORAGE);
    CHECK(ws_storage_stat(st, "f/x", &ss, &err) == 0);
    ws_storage_mem_fault(st, WS_MEM_LIST, 1, WS_ERR_STORAGE);
    {
        static struct listing l;
        memset(&l, 0, sizeof(l));
        CHECK(ws_storage_list(st, "f/", collect, &l, &err) == WS_ERR_STORAGE);
    }
    ws_storage_mem_fault(st, WS_MEM_REMOVE, 1, WS_ERR_STORAGE);
    CHECK(ws_storage_remove(st, "f/x", &err) == WS_ERR_STORAGE);
    CHECK(same(st, "f/x", (const uint8_t *)"data", 4));

    /* a truncating get delivers less */
    ws_storage_mem_fault(st, WS_MEM_TRUNCATE_GET, 0, 0);
    CHECK(get(st, "f/x", 0, WS_STORAGE_TO_END, &got, &n, &err) == 0);
    CHECK(n == 2);
    free(got);
    ws_storage_mem_fault(st, 0, 0, 0);

    /* direct access */
    {
        size_t len = 0;
        uint8_t *p = ws_storage_mem_object(st, "f/x", &len);
        CHECK(p && len == 4 && memcmp(p, "data", 4) == 0);
        CHECK(ws_storage_mem_set_object(st, "f/y", (const uint8_t *)"zz", 2) == 0);
        CHECK(same(st, "f/y", (const uint8_t *)"zz", 2));
    }
    ws_storage_close(st);
}

/* ---- sftp only: sessions and host keys (only when the environment names a server) ---- */

/* Returns 1 with *e filled when the sftp tests can run; otherwise says why, once. */
static int sftp_ready(struct sftp_env *e)
{
    static int said;
    int rc = sftp_env(e);

    if (rc < 0)
        unit_fail(__FILE__, __LINE__, "incomplete WALSAFE_TEST_SFTP_* environment");
    else if (rc == 0 && !said++)
        fprintf(stderr, "    sftp tests skipped: WALSAFE_TEST_SFTP_REPO is not set "
                        "(tests/integration/t_sftp.sh runs them)\n");
    return rc == 1;
}

/* Base64 as OpenSSH prints fingerprints: no padding. */
static void b64_unpadded(const unsigned char *in, int len, char *out)
{
    int n = EVP_EncodeBlock((unsigned char *)out, in, len);
    while (n > 0 && out[n - 1] == '=')
        out[--n] = '\0';
}

/*
 * Reads the first line of a known_hosts file: its host field (e.g. "[127.0.0.1]:2222") and the
 * SHA-256 fingerprint of its key, computed here from the key blob (independently of the driver).
 */
static int known_host(const char *file, char *host, size_t hostsz, char *fp, size_t fpsz)
{
    char line[4096], h[512], type[64], blob[2048];
    unsigned char raw[2048], md[32];
    unsigned int mdlen = 0;
    FILE *f = fopen(file, "r");
    int rawlen, ok;
    size_t blen;

    if (!f)
        return -1;
    ok = fgets(line, sizeof(line), f) != NULL &&
         sscanf(line, "%511s %63s %2047s", h, type, blob) == 3;
    fclose(f);
    if (!ok || fpsz < 64)
        return -1;
    blen = strlen(blob);
    rawlen = EVP_DecodeBlock(raw, (const unsigned char *)blob, (int)blen);
    while (blen > 0 && blob[blen - 1] == '=' && rawlen > 0)
        blen--, rawlen--;
    if (rawlen <= 0 || EVP_Digest(raw, (size_t)rawlen, md, &mdlen, EVP_sha256(), NULL) != 1)
        return -1;
    snprintf(host, hostsz, "%s", h);
    b64_unpadded(md, (int)mdlen, fp);
    return 0;
}

/* The fingerprint a message names after "SHA256:" (empty if none). */
static void fp_in(const char *msg, char *out, size_t outsz)
{
    const char *p = strstr(msg, "SHA256:");
    size_t n = 0;

    if (p)
        for (p += 7; n + 1 < outsz && p[n] &&
                     (strchr("+/", p[n]) || (p[n] >= 'A' && p[n] <= 'Z') ||
                      (p[n] >= 'a' && p[n] <= 'z') || (p[n] >= '0' && p[n] <= '9'));
             n++)
            out[n] = p[n];
    out[n] = '\0';
}

static int write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    int ok = f && fputs(text, f) >= 0;
    if (f && fclose(f) != 0)
        ok = 0;
    return ok ? 0 : -1;
}

/* Runs argv (found in PATH), quietly; returns its exit status or -1. */
static int spawn_wait(char *const argv[])
{
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int status = 0, rc;

    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return -1;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Every operation of the driver against st fails with `code`, the message containing `want`;
 * nothing appears in local (the repository's directory). */
static void all_ops_fail(struct ws_storage *st, const char *local, int code, const char *want)
{
    struct ws_error err = {0};
    struct ws_storage_stat ss;
    struct ws_sink *s = NULL;
    static struct listing l;
    uint8_t *got, data[70000];
    size_t n;
    int rc;

    unit_random(data, sizeof(data), 9);
    CHECK(ws_storage_stat(st, "h/obj", &ss, &err) == code);
    CHECK(strstr(err.msg, want) != NULL);
    if (!strstr(err.msg, want))
        fprintf(stderr, "    stat: \"%s\" does not mention \"%s\"\n", err.msg, want);
    CHECK(!err.retryable); /* a refusal is final: repeating it cannot help */
    memset(&err, 0, sizeof(err));
    CHECK(get(st, "h/obj", 0, WS_STORAGE_TO_END, &got, &n, &err) == code);
    CHECK(n == 0 && strstr(err.msg, want) != NULL);
    free(got);
    memset(&err, 0, sizeof(err));
    memset(&l, 0, sizeof(l));
    CHECK(ws_storage_list(st, "h/", collect, &l, &err) == code);
    CHECK(l.n == 0 && strstr(err.msg, want) != NULL);
    memset(&err, 0, sizeof(err));
    CHECK(ws_storage_remove(st, "h/obj", &err) == code);
    CHECK(strstr(err.msg, want) != NULL);
    memset(&err, 0, sizeof(err));
    REQUIRE(ws_storage_open_put(st, "h/new", 0, &s, &err) == 0);
    rc = ws_sink_write(s, data, sizeof(data), &err);
    if (rc == 0)
        rc = ws_sink_finish(s, &err);
    CHECK(rc == code);
    CHECK(strstr(err.msg, want) != NULL);
    if (!strstr(err.msg, want))
        fprintf(stderr, "    put: \"%s\" does not mention \"%s\"\n", err.msg, want);
    ws_sink_free(s);
    CHECK(count_named(local, "") == 0);
}

/* A key that is not authorized: refused, and the message names the identity file. */
static void test_sftp_wrong_client_key(void)
{
    struct sftp_env e;
    struct ws_storage *st = NULL;
    struct ws_error err = {0};
    char key[600], local[600];

    if (!sftp_ready(&e))
        return;
    snprintf(key, sizeof(key), "%s/stranger_ed25519", unit_tmpdir());
    {
        char *argv[] = {"ssh-keygen",       "-q", "-t", "ed25519", "-N", "", "-C",
                        "walsafe-stranger", "-f", key,  NULL};
        REQUIRE(spawn_wait(argv) == 0);
    }
    REQUIRE(sftp_mkdir(&e, "wrongkey", local, sizeof(local)) == 0);
    REQUIRE(sftp_open_at(&e, "wrongkey", key, NULL, NULL, &st, &err) == 0);
    all_ops_fail(st, local, WS_ERR_STORAGE, key);
    ws_storage_close(st);

    /* an identity file that cannot be read is a configuration error, found at open */
    snprintf(key, sizeof(key), "%s/no-such-key", unit_tmpdir());
    memset(&err, 0, sizeof(err));
    CHECK(sftp_open_at(&e, "wrongkey", key, NULL, NULL, &st, &err) == WS_ERR_CONFIG);
    CHECK(strstr(err.msg, key) != NULL);
}

/* An identity file (here our own) accessible by group or others is refused at open, as OpenSSH
 * refuses it, naming its mode and path; 0600 and 0400 are fine. */
static void test_sftp_identity_mode(void)
{
    struct sftp_env e;
    struct ws_storage *st = NULL;
    struct ws_error err = {0};
    struct ws_storage_stat ss;
    char key[600], local[600], mode[16];
    static const mode_t bad[] = {0644, 0640, 0604, 0660, 0610, 0601};
    int in, out;
    ssize_t n;
    char buf[8192];

    if (!sftp_ready(&e))
        return;
    snprintf(key, sizeof(key), "%s/identity_copy", unit_tmpdir());
    REQUIRE((in = open(e.identity, O_RDONLY)) >= 0);
    REQUIRE((out = open(key, O_WRONLY | O_CREAT | O_TRUNC, 0600)) >= 0);
    while ((n = read(in, buf, sizeof(buf))) > 0)
        REQUIRE(write(out, buf, (size_t)n) == n);
    close(in);
    close(out);
    REQUIRE(sftp_mkdir(&e, "idmode", local, sizeof(local)) == 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        REQUIRE(chmod(key, bad[i]) == 0);
        snprintf(mode, sizeof(mode), "%04o", (unsigned)bad[i]);
        memset(&err, 0, sizeof(err));
        CHECK(sftp_open_at(&e, "idmode", key, NULL, NULL, &st, &err) == WS_ERR_CONFIG);
        CHECK(strstr(err.msg, key) != NULL && strstr(err.msg, mode) != NULL &&
              strstr(err.msg, "too open") != NULL);
        if (st) {
            fprintf(stderr, "    identity file of mode %s accepted\n", mode);
            ws_storage_close(st);
            st = NULL;
        }
    }
    for (int i = 0; i < 2; i++) {
        REQUIRE(chmod(key, i ? 0400 : 0600) == 0);
        memset(&err, 0, sizeof(err));
        REQUIRE(sftp_open_at(&e, "idmode", key, NULL, NULL, &st, &err) == 0);
        CHECK(ws_storage_stat(st, "h/obj", &ss, &err) == WS_ERR_NOT_FOUND);
        if (err.code != WS_ERR_NOT_FOUND)
            fprintf(stderr, "    identity file of mode %o: %s\n", i ? 0400 : 0600, err.msg);
        ws_storage_close(st);
    }
}

/* Expands a known_hosts template: %H the server as the environment's known_hosts names it
 * ("[127.0.0.1]:PORT"), %h the bare host, %K the server's "type base64", %B its base64 alone,
 * %O another key. */
static void expand(const char *tmpl, const char *H, const char *h, const char *K, const char *O,
                   char *out, size_t outsz)
{
    const char *B = strchr(K, ' ') ? strchr(K, ' ') + 1 : K;
    size_t o = 0;

    for (; *tmpl && o + 1 < outsz; tmpl++) {
        const char *v = NULL;
        if (tmpl[0] == '%' && tmpl[1])
            v = tmpl[1] == 'H'   ? H
                : tmpl[1] == 'h' ? h
                : tmpl[1] == 'K' ? K
                : tmpl[1] == 'B' ? B
                : tmpl[1] == 'O' ? O
                                 : NULL;
        if (v) {
            o += (size_t)snprintf(out + o, outsz - o, "%s", v);
            tmpl++;
        } else {
            out[o++] = *tmpl;
        }
        if (o >= outsz)
            o = outsz - 1;
    }
    out[o] = '\0';
}

/* The first line's host field and "type base64" key of a known_hosts file. */
static int known_line(const char *file, char *host, size_t hostsz, char *key, size_t keysz)
{
    char line[4096], h[512], type[64], blob[2048];
    FILE *f = fopen(file, "r");
    int ok;

    if (!f)
        return -1;
    ok = fgets(line, sizeof(line), f) != NULL &&
         sscanf(line, "%511s %63s %2047s", h, type, blob) == 3;
    fclose(f);
    if (!ok)
        return -1;
    snprintf(host, hostsz, "%s", h);
    snprintf(key, keysz, "%s %s", type, blob);
    return 0;
}

/*
 * Host keys as OpenSSH checks them (the server listens on a port other than 22): unknown,
 * changed and revoked keys are refused naming the key the server presented and the file; an
 * entry for the plain host (port 22's) or a CA key does not vouch for the server; hashed names
 * (made by ssh-keygen -H itself) and patterns are accepted.
 */
static void test_sftp_host_key(void)
{
    /* any ed25519 key that is not the server's */
    static const char other[] =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICniPthxbA02oHlJT8LRogH8jGoKETOJSJybwUdcAO2G";
    static const char other_fp[] = "Xv2j1rlUqk2AsR6PP6fq868WKODouSA9+8s7oDIh3Lg";
    struct sftp_env e;
    struct ws_storage *st = NULL;
    struct ws_error err = {0};
    struct ws_storage_stat ss;
    char host[512], bare[512], key[2200], fp[64], shown[128], kh[600], text[8192], local[600];
    char want[80];
    const char *colon;

    if (!sftp_ready(&e))
        return;
    REQUIRE(known_host(e.known_hosts, host, sizeof(host), fp, sizeof(fp)) == 0);
    REQUIRE(known_line(e.known_hosts, host, sizeof(host), key, sizeof(key)) == 0);
    REQUIRE(strcmp(fp, other_fp) != 0);
    /* "[127.0.0.1]:PORT" -> "127.0.0.1" */
    REQUIRE(host[0] == '[' && (colon = strstr(host, "]:")) != NULL);
    snprintf(bare, sizeof(bare), "%.*s", (int)(colon - host - 1), host + 1);
    snprintf(want, sizeof(want), "SHA256:%s", fp);
    REQUIRE(sftp_mkdir(&e, "hostkey", local, sizeof(local)) == 0);
    snprintf(kh, sizeof(kh), "%s/known_hosts.test", unit_tmpdir());

    /* the environment's known_hosts works */
    REQUIRE(sftp_open_at(&e, "hostkey", NULL, NULL, NULL, &st, &err) == 0);
    CHECK(ws_storage_stat(st, "h/obj", &ss, &err) == WS_ERR_NOT_FOUND);
    ws_storage_close(st);

    static const struct {
        const char *what, *tmpl, *says;
    } refused[] = {
        {"empty known_hosts", "", "unknown"},
        {"the server's key under another port", "[%h]:1 %K\n", "unknown"},
        {"the server's key for the plain host (port 22's entry)", "%h %K\n", "unknown"},
        {"the server's key for the plain host, by a pattern", "127.0.0.*,localhost %K\n",
         "unknown"},
        {"another key for this host", "%H %O\n", "CHANGED"},
        {"the server's key, also @revoked for all hosts", "%H %K\n@revoked * %K\n", "@revoked"},
        {"the server's key @revoked for this host (after the entry)",
         "# comment\n%H %K\n@revoked %H %K\n", "@revoked"},
        {"the server's key only as a @cert-authority", "@cert-authority %H %K\n", "unknown"},
        {"the server's key, the host excluded by !pattern", "!%H,[127.0.0.*]:* %K\n", "unknown"},
        {"the server's key under the wrong type name", "%H ssh-rsa %B\n", "unknown"},
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        int before = unit_failures;
        expand(refused[i].tmpl, host, bare, key, other, text, sizeof(text));
        REQUIRE(write_text(kh, text) == 0);
        memset(&err, 0, sizeof(err));
        REQUIRE(sftp_open_at(&e, "hostkey", NULL, kh, NULL, &st, &err) == 0);
        all_ops_fail(st, local, WS_ERR_STORAGE, want);
        memset(&err, 0, sizeof(err));
        CHECK(ws_storage_stat(st, "h/obj", &ss, &err) == WS_ERR_STORAGE);
        fp_in(err.msg, shown, sizeof(shown));
        CHECK(strcmp(shown, fp) == 0); /* exactly the server's key, not a prefix of something */
        CHECK(strstr(err.msg, refused[i].says) != NULL);
        CHECK(strstr(err.msg, kh) != NULL); /* where to add the key, or what revoked it */
        if (strcmp(refused[i].says, "unknown") == 0)
            CHECK(strstr(err.msg, host) != NULL); /* the entry it needs: "[127.0.0.1]:PORT" */
        if (unit_failures != before)
            fprintf(stderr, "    ^ with %s (real fingerprint %s): %s\n", refused[i].what, fp,
                    err.msg);
        ws_storage_close(st);
    }

    static const struct {
        const char *what, *tmpl;
        int hash;
    } accepted[] = {
        {"the server's entry after others", "# comment\n\n%h %O\n[%h]:1 %O\n%H %K\n", 0},
        {"CRLF line ends, no final newline", "%h %O\r\n%H %K", 0},
        {"a pattern list", "other.example,[127.0.0.?]:* %K\n", 0},
        {"a revoked key of another type",
         "%H %K\n@revoked * ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAAQE=\n", 0},
        {"the entry hashed by ssh-keygen -H", "%H %K\n", 1},
    };
    for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
        int before = unit_failures;
        expand(accepted[i].tmpl, host, bare, key, other, text, sizeof(text));
        REQUIRE(write_text(kh, text) == 0);
        if (accepted[i].hash) {
            char *argv[] = {"ssh-keygen", "-q", "-H", "-f", kh, NULL};
            char got[4096] = "";
            FILE *f;
            REQUIRE(spawn_wait(argv) == 0);
            REQUIRE((f = fopen(kh, "r")) != NULL);
            if (!fgets(got, sizeof(got), f))
                got[0] = '\0';
            fclose(f);
            CHECK(strncmp(got, "|1|", 3) == 0); /* really hashed */
        }
        memset(&err, 0, sizeof(err));
        REQUIRE(sftp_open_at(&e, "hostkey", NULL, kh, NULL, &st, &err) == 0);
        CHECK(ws_storage_stat(st, "h/obj", &ss, &err) == WS_ERR_NOT_FOUND);
        if (unit_failures != before)
            fprintf(stderr, "    ^ with %s: %s\n", accepted[i].what, err.msg);
        ws_storage_close(st);
    }

    /* a known_hosts file that cannot be read is a configuration error, found at open */
    snprintf(kh, sizeof(kh), "%s/no-such-known-hosts", unit_tmpdir());
    memset(&err, 0, sizeof(err));
    CHECK(sftp_open_at(&e, "hostkey", NULL, kh, NULL, &st, &err) == WS_ERR_CONFIG);
    CHECK(strstr(err.msg, kh) != NULL);
}

/* sftp_host_key_sha256 pins the key instead of known_hosts: the right pin works (as ssh-keygen
 * prints it, with "SHA256:", with base64 padding), a wrong one is refused. */
static void test_sftp_pin(void)
{
    struct sftp_env e;
    struct ws_storage *st = NULL;
    struct ws_error err = {0};
    struct ws_storage_stat ss;
    char host[512], fp[64], nokh[600], local[600];

    if (!sftp_ready(&e))
        return;
    REQUIRE(known_host(e.known_hosts, host, sizeof(host), fp, sizeof(fp)) == 0);
    REQUIRE(sftp_mkdir(&e, "pin", local, sizeof(local)) == 0);
    /* no known_hosts at all: the pin is enough */
    snprintf(nokh, sizeof(nokh), "%s/no-such-known-hosts", unit_tmpdir());
    for (int i = 0; i < 3; i++) {
        static const char *const keys[] = {"p/a", "p/b", "p/c"};
        char pin[80];
        snprintf(pin, sizeof(pin), "%s%s%s", i == 1 ? "SHA256:" : "", fp, i == 2 ? "=" : "");
        memset(&err, 0, sizeof(err));
        REQUIRE(sftp_open_at(&e, "pin", NULL, nokh, pin, &st, &err) == 0);
        CHECK(put(st, keys[i], 0, "pinned", 6, &err) == 0);
        CHECK(same(st, keys[i], (const uint8_t *)"pinned", 6));
        CHECK(ws_storage_stat(st, keys[i], &ss, &err) == 0 && ss.size == 6);
        if (err.msg[0])
            fprintf(stderr, "    pin \"%s\": %s\n", pin, err.msg);
        ws_storage_close(st);
    }
    CHECK(count_named(local, "") == 4); /* p, p/a, p/b, p/c */

    /* wrong pins: another key's, the right one with its first or its last character changed */
    {
        char first[64], last[64];
        const char *wrong[] = {"Xv2j1rlUqk2AsR6PP6fq868WKODouSA9+8s7oDIh3Lg", first, last};
        size_t n = strlen(fp);
        snprintf(first, sizeof(first), "%s", fp);
        first[0] = first[0] == 'A' ? 'B' : 'A';
        snprintf(last, sizeof(last), "%s", fp);
        last[n - 1] = last[n - 1] == 'A' ? 'E' : 'A'; /* the last of 43 digits holds 4 bits */
        for (int i = 0; i < 3; i++) {
            char sub[64], wlocal[600];
            int before = unit_failures;
            snprintf(sub, sizeof(sub), "pin-wrong%d", i);
            REQUIRE(sftp_mkdir(&e, sub, wlocal, sizeof(wlocal)) == 0);
            memset(&err, 0, sizeof(err));
            REQUIRE(sftp_open_at(&e, sub, NULL, nokh, wrong[i], &st, &err) == 0);
            all_ops_fail(st, wlocal, WS_ERR_STORAGE, "sftp_host_key_sha256");
            if (unit_failures != before)
                fprintf(stderr, "    ^ with the wrong pin %s (right: %s)\n", wrong[i], fp);
            ws_storage_close(st);
        }
    }
}

/* ---- killing the server's per-connection processes (by PID, from /proc) ---- */

/* Appends every process below pid to out[n..max); returns the new n. */
static int descendants(long pid, long *out, int n, int max)
{
    char path[128];
    DIR *d;
    struct dirent *de;

    snprintf(path, sizeof(path), "/proc/%ld/task", pid);
    if (!(d = opendir(path)))
        return n;
    while ((de = readdir(d)) != NULL) {
        char cpath[600], buf[4096], *p, *end;
        FILE *f;
        size_t len;
        if (de->d_name[0] == '.')
            continue;
        snprintf(cpath, sizeof(cpath), "%s/%s/children", path, de->d_name);
        if (!(f = fopen(cpath, "r")))
            continue;
        len = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[len] = '\0';
        for (p = buf;; p = end) {
            long c = strtol(p, &end, 10);
            if (end == p)
                break;
            if (n < max) {
                out[n++] = c;
                n = descendants(c, out, n, max);
            }
        }
    }
    closedir(d);
    return n;
}

static int alive(long pid)
{
    char path[64], buf[512], *p;
    FILE *f;
    size_t len;

    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    if (!(f = fopen(path, "r")))
        return 0;
    len = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[len] = '\0';
    p = strrchr(buf, ')');
    return !(p && p[1] == ' ' && p[2] == 'Z'); /* a zombie is gone for our purposes */
}

/* SIGKILLs every process below the sshd listener and waits until they are gone; returns how
 * many there were, -1 if the listener is not running. */
static int kill_sessions(long listener)
{
    long pids[256];
    int n;

    if (!alive(listener))
        return -1;
    n = descendants(listener, pids, 0, 256);
    for (int i = 0; i < n; i++)
        kill((pid_t)pids[i], SIGKILL);
    for (int tries = 0; tries < 500; tries++) {
        int left = 0;
        for (int i = 0; i < n; i++)
            left += alive(pids[i]);
        if (!left)
            break;
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    }
    return n;
}

/* A drop that only the next request can notice: the session processes are frozen (SIGSTOP, so
 * the socket stays open and quiet, and libcurl reuses it) and killed by a thread a little later,
 * while that request waits for its answer. */
struct killer {
    long pids[256];
    int n;
    pthread_t thread;
};

enum { KILL_AFTER_MS = 300 };

static void *kill_later(void *arg)
{
    struct killer *k = arg;
    nanosleep(&(struct timespec){0, KILL_AFTER_MS * 1000000L}, NULL);
    for (int i = 0; i < k->n; i++)
        kill((pid_t)k->pids[i], SIGKILL);
    return NULL;
}

static int freeze_then_kill(long listener, struct killer *k)
{
    k->n = descendants(listener, k->pids, 0, 256);
    for (int i = 0; i < k->n; i++)
        kill((pid_t)k->pids[i], SIGSTOP);
    if (pthread_create(&k->thread, NULL, kill_later, k) != 0) {
        for (int i = 0; i < k->n; i++)
            kill((pid_t)k->pids[i], SIGKILL);
        return -1;
    }
    return k->n;
}

static void join_killer(struct killer *k)
{
    pthread_join(k->thread, NULL);
    for (int tries = 0; tries < 500; tries++) {
        int left = 0;
        for (int i = 0; i < k->n; i++)
            left += alive(k->pids[i]);
        if (!left)
            break;
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    }
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1000 + (double)t.tv_nsec / 1e6;
}

/*
 * The server drops the session between requests: the driver keeps one session per storage, and
 * must notice and work on a fresh one, for every operation. A drop in the middle of an upload
 * fails that upload and leaves nothing behind; the next one works.
 */
static void test_sftp_reconnect(void)
{
    struct sftp_env e;
    struct driver d;
    struct ws_error err = {0};
    struct ws_storage_stat ss;
    struct ws_sink *s = NULL;
    const char *pidenv = getenv("WALSAFE_TEST_SSHD_PID");
    long listener = pidenv ? strtol(pidenv, NULL, 10) : 0;
    enum { LEN = 300000 };
    uint8_t *data = malloc(LEN), *got;
    size_t n;
    int rc;

    if (!sftp_ready(&e) || !data) {
        free(data);
        return;
    }
    if (listener <= 0) {
        fprintf(stderr, "    sftp_reconnect skipped: WALSAFE_TEST_SSHD_PID is not set\n");
        free(data);
        return;
    }
    unit_random(data, LEN, 5);
    REQUIRE(open_driver(DRV_SFTP, "reconnect", &d) == 0);
    CHECK(put(d.st, "r/obj", 0, data, LEN, &err) == 0);
    CHECK(ws_storage_stat(d.st, "r/obj", &ss, &err) == 0 && ss.size == LEN);

    for (int op = 0; op < 6; op++) {
        static const char *const names[] = {"stat", "get", "range get", "put", "list", "remove"};
        int killed = kill_sessions(listener), before = unit_failures;
        CHECK(killed >= 1); /* the session was kept open, and is gone now */
        memset(&err, 0, sizeof(err));
        switch (op) {
        case 0:
            CHECK(ws_storage_stat(d.st, "r/obj", &ss, &err) == 0 && ss.size == LEN);
            break;
        case 1:
            CHECK(same(d.st, "r/obj", data, LEN));
            break;
        case 2:
            CHECK(get(d.st, "r/obj", 1000, 5000, &got, &n, &err) == 0 && n == 5000 &&
                  memcmp(got, data + 1000, 5000) == 0);
            free(got);
            break;
        case 3:
            CHECK(put(d.st, "r/obj2", 0, data, LEN, &err) == 0);
            CHECK(same(d.st, "r/obj2", data, LEN));
            break;
        case 4:
            CHECK(list_is(d.st, "r/", (const char *const[]){"r/obj", "r/obj2"}, 2));
            break;
        case 5:
            CHECK(ws_storage_remove(d.st, "r/obj2", &err) == 0);
            CHECK(ws_storage_stat(d.st, "r/obj2", &ss, &err) == WS_ERR_NOT_FOUND);
            break;
        }
        if (unit_failures != before)
            fprintf(stderr, "    ^ %s after the session was killed (%d processes): %s\n", names[op],
                    killed, err.msg);
    }
    CHECK(alive(listener)); /* only the sessions were killed */

    /*
     * Dropped while the request waits (the session looked alive): the driver must repeat the
     * request on a fresh session, and must not believe a "no such file" that libcurl derives
     * from the session's previous error (each case starts with a genuine "not found").
     */
    for (int op = 0; op < 6; op++) {
        static const char *const names[] = {"stat",  "stat of a missing key", "get", "list", "put",
                                            "remove"};
        struct killer k;
        int before = unit_failures, frozen;
        double t0, ms;
        CHECK(ws_storage_stat(d.st, "r/none", &ss, &err) == WS_ERR_NOT_FOUND);
        frozen = freeze_then_kill(listener, &k);
        REQUIRE(frozen >= 1);
        memset(&err, 0, sizeof(err));
        t0 = now_ms();
        switch (op) {
        case 0:
            rc = ws_storage_stat(d.st, "r/obj", &ss, &err);
            CHECK(rc == 0 && ss.size == LEN);
            break;
        case 1:
            rc = ws_storage_stat(d.st, "r/none", &ss, &err);
            CHECK(rc == WS_ERR_NOT_FOUND);
            break;
        case 2:
            rc = get(d.st, "r/obj", 0, WS_STORAGE_TO_END, &got, &n, &err);
            CHECK(rc == 0 && n == LEN && memcmp(got, data, LEN) == 0);
            free(got);
            break;
        case 3:
            CHECK(list_is(d.st, "r/", (const char *const[]){"r/obj"}, 1));
            break;
        case 4:
            CHECK(put(d.st, "r/obj3", 0, data, 1000, &err) == 0);
            CHECK(same(d.st, "r/obj3", data, 1000));
            break;
        case 5:
            CHECK(ws_storage_remove(d.st, "r/obj3", &err) == 0);
            CHECK(ws_storage_stat(d.st, "r/obj3", &ss, &err) == WS_ERR_NOT_FOUND);
            break;
        }
        ms = now_ms() - t0;
        join_killer(&k);
        CHECK(ms >= KILL_AFTER_MS - 50); /* it did wait on the dead session */
        if (unit_failures != before)
            fprintf(stderr,
                    "    ^ %s on a session dropped mid-request (%d processes, %.0f ms): %s\n",
                    names[op], frozen, ms, err.msg);
    }
    CHECK(alive(listener));

    /* killed in the middle of an upload: that put fails, nothing is visible, no temp file */
    REQUIRE(ws_storage_open_put(d.st, "r/cut", 0, &s, &err) == 0);
    CHECK(ws_sink_write(s, data, LEN / 2, &err) == 0);
    CHECK(count_named(d.root, ".walsafe-tmp") == 1);
    CHECK(kill_sessions(listener) >= 1);
    memset(&err, 0, sizeof(err));
    rc = ws_sink_write(s, data + LEN / 2, LEN - LEN / 2, &err);
    if (rc == 0)
        rc = ws_sink_finish(s, &err);
    CHECK(rc == WS_ERR_STORAGE);
    CHECK(err.retryable); /* the whole operation may be repeated */
    ws_sink_free(s);
    CHECK(ws_storage_stat(d.st, "r/cut", &ss, &err) == WS_ERR_NOT_FOUND);
    CHECK(count_named(d.root, "cut") == 0);
    CHECK(temp_files(&d) == 0);
    /* and the repeat works */
    CHECK(put(d.st, "r/cut", 0, data, LEN, &err) == 0);
    CHECK(same(d.st, "r/cut", data, LEN));
    CHECK(temp_files(&d) == 0);
    ws_storage_close(d.st);
    free(data);
}

/* Sits idle until the server dropped our session (no process below its listener), at most
 * `seconds`; without a listener PID just sleeps that long. 1 if it was dropped (or unknown). */
static int wait_idle_drop(long listener, long seconds)
{
    long pids[256];

    if (listener <= 0) {
        sleep((unsigned)seconds);
        return 1;
    }
    for (long waited = 0; waited < seconds * 10; waited++) {
        nanosleep(&(struct timespec){0, 100000000}, NULL);
        if (descendants(listener, pids, 0, 256) == 0)
            return 1;
    }
    fprintf(stderr, "    the idle session was not dropped within %ld s\n", seconds);
    return 0;
}

/*
 * A server that drops idle sessions (sshd's ClientAliveInterval: libssh2 answers the server's
 * keepalives only while it reads, so an idle client looks dead): every operation after the drop
 * works, on a new session.
 */
static void test_sftp_idle(void)
{
    const char *port = getenv("WALSAFE_TEST_SFTP_IDLE_PORT");
    const char *secs = getenv("WALSAFE_TEST_SFTP_IDLE_S");
    const char *pidenv = getenv("WALSAFE_TEST_SSHD_IDLE_PID");
    long idle = secs ? strtol(secs, NULL, 10) : 0, listener = pidenv ? strtol(pidenv, NULL, 10) : 0;
    struct sftp_env e, ie;
    struct ws_storage *st = NULL;
    struct ws_error err = {0};
    struct ws_storage_stat ss;
    char local[600];
    const char *path, *colon;
    uint8_t data[50000];

    if (!sftp_ready(&e))
        return;
    if (!port || idle <= 0) {
        fprintf(stderr, "    sftp_idle skipped: WALSAFE_TEST_SFTP_IDLE_PORT and _IDLE_S are not "
                        "set\n");
        return;
    }
    /* the same URL with the idle server's port: sftp://user@host:PORT/... */
    ie = e;
    path = strchr(e.url + 7, '/');
    colon = strrchr(e.url, ':');
    REQUIRE(path && colon && colon > strchr(e.url, '@') && colon < path);
    snprintf(ie.url, sizeof(ie.url), "%.*s:%s%s", (int)(colon - e.url), e.url, port, path);
    unit_random(data, sizeof(data), 11);
    REQUIRE(sftp_mkdir(&e, "idle", local, sizeof(local)) == 0);
    REQUIRE(sftp_open_at(&ie, "idle", NULL, NULL, NULL, &st, &err) == 0);
    CHECK(put(st, "i/obj", 0, data, sizeof(data), &err) == 0);
    CHECK(ws_storage_stat(st, "i/obj", &ss, &err) == 0);
    if (listener > 0)
        CHECK(descendants(listener, (long[256]){0}, 0, 256) >= 1); /* the session is open */
    CHECK(wait_idle_drop(listener, idle));
    memset(&err, 0, sizeof(err));
    CHECK(ws_storage_stat(st, "i/obj", &ss, &err) == 0 && ss.size == sizeof(data));
    CHECK(same(st, "i/obj", data, sizeof(data)));
    CHECK(wait_idle_drop(listener, idle));
    CHECK(put(st, "i/obj2", 0, data, 100, &err) == 0);
    CHECK(list_is(st, "i/", (const char *const[]){"i/obj", "i/obj2"}, 2));
    if (err.msg[0])
        fprintf(stderr, "    idle: %s\n", err.msg);
    ws_storage_close(st);
}

const struct unit_test unit_tests[] = {
    {"put_get", test_put_get},
    {"abandoned_put", test_abandoned_put},
    {"no_replace", test_no_replace},
    {"missing", test_missing},
    {"list", test_list},
    {"remove_many", test_remove_many},
    {"range_past_end", test_range_past_end},
    {"key_vs_prefix", test_key_vs_prefix},
    {"dot_keys", test_dot_keys},
    {"invalid_keys", test_invalid_keys},
    {"posix_modes", test_posix_modes},
    {"posix_gives_to_owner", test_posix_gives_to_owner},
    {"posix_denied_listing", test_posix_denied_listing},
    {"posix_open", test_posix_open},
    {"posix_temp_files", test_posix_temp_files},
    {"s3_empty_credentials", test_s3_empty_credentials},
    {"params", test_params},
    {"caps", test_caps},
    {"mem_faults", test_mem_faults},
    {"delete_retries", test_delete_retries},
    {"read_retries", test_read_retries},
    {"sftp_wrong_client_key", test_sftp_wrong_client_key},
    {"sftp_host_key", test_sftp_host_key},
    {"sftp_identity_mode", test_sftp_identity_mode},
    {"sftp_pin", test_sftp_pin},
    {"sftp_reconnect", test_sftp_reconnect},
    {"sftp_idle", test_sftp_idle},
    {NULL, NULL},
};
