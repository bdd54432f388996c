/*
 * basebackup create, restore, verify and check as library calls (backup.h), with a fake
 * PostgreSQL session (the pgconn.h ops) that serves a small data directory made in the scratch
 * directory, into the in-memory storage: every handle the commands open (one per worker) is a
 * view of one store, behind a lock. Create leaves out what PostgreSQL documents (postmaster.pid,
 * pg_wal's contents, temporary files, an unlogged relation's main fork), records a tablespace,
 * stores backup_label and tablespace_map from the fake's stop, and waits for the WAL from start
 * to stop; restore brings back contents, modes (masked) and mtimes, the tablespace at its
 * --tablespace-map destination, and the recovery settings; verify finds a damaged bundle. A
 * storage failure at each write of a create leaves no backup object and ends backup mode once.
 * The worker pool (pool.h) on its own: each task once, in order on one worker, the first error
 * wins and stops the handing out, every worker's end runs, per-worker handles are closed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "backup/backup.h"
#include "backup/pool.h"
#include "base/crc32c.h"
#include "base/log.h"
#include "base/util.h"
#include "io/key.h"
#include "io/object.h"
#include "pg/pgpage.h"
#include "pg/wal.h"
#include "repo/blockmap.h"
#include "repo/catalog.h"
#include "storage/storage.h"
#include "fixture.h"
#include "unit.h"

#define SEG (16u << 20)
#define SYSID UINT64_C(7301234567890123456)
#define START_LSN UINT64_C(0x2000028) /* segment 2 */
#define STOP_LSN UINT64_C(0x3000100)  /* segment 3 */
#define TS_OID 16400
#define WAL_FETCH "/usr/lib/walsafe-test/wal-fetch"

/* The fixture's calls (fixture.h) under the names the tests below use. */
#define mkdirs unit_mkdir
#define write_file unit_write

/* ---- the in-memory store, shared by every handle ----------------------------------------- */

static struct ws_storage *mem; /* the store */
static pthread_mutex_t mem_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int handles_open, handles_opened, fail_open_at;
/* replication sessions open now; WAL objects looked up while one was, and in all */
static atomic_int repls_open, wal_stats_in_session, wal_stats;

struct view {
    struct ws_storage base;
};

struct view_put {
    struct ws_sink base;
    struct ws_sink *inner;
    int fail_after; /* the key ends with fail_after_commit: stored, then an error */
};

/* A put of a key ending with this is stored, then reported failed (a storage that committed the
 * object and lost the answer, or an fsync of the directory that failed after the rename). */
static const char *fail_after_commit;

static int vput_write(struct ws_sink *s, const void *buf, size_t len, struct ws_error *err)
{
    struct view_put *p = (struct view_put *)s;
    int rc;

    pthread_mutex_lock(&mem_lock);
    rc = ws_sink_write(p->inner, buf, len, err);
    pthread_mutex_unlock(&mem_lock);
    return rc;
}

static int vput_finish(struct ws_sink *s, struct ws_error *err)
{
    struct view_put *p = (struct view_put *)s;
    int rc;

    pthread_mutex_lock(&mem_lock);
    rc = ws_sink_finish(p->inner, err);
    pthread_mutex_unlock(&mem_lock);
    if (rc == 0 && p->fail_after)
        rc = ws_error_set(err, WS_ERR_STORAGE, "injected: stored, then failed");
    return rc;
}

static void vput_destroy(struct ws_sink *s)
{
    struct view_put *p = (struct view_put *)s;

    ws_sink_free(p->inner);
    free(p);
}

static const struct ws_sink_ops vput_ops = {"view-put", vput_write, vput_finish, NULL,
                                            vput_destroy};

static int v_stat(struct ws_storage *s, const char *key, struct ws_storage_stat *out,
                  struct ws_error *err)
{
    int rc;

    (void)s;
    if (strstr(key, "/wal/")) {
        atomic_fetch_add(&wal_stats, 1);
        if (atomic_load(&repls_open))
            atomic_fetch_add(&wal_stats_in_session, 1);
    }
    pthread_mutex_lock(&mem_lock);
    rc = mem->ops->stat(mem, key, out, err);
    pthread_mutex_unlock(&mem_lock);
    return rc;
}

static int v_open_put(struct ws_storage *s, const char *key, int flags, struct ws_sink **out,
                      struct ws_error *err)
{
    struct view_put *p = calloc(1, sizeof(*p));
    int rc;

    (void)s;
    if (!p)
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    pthread_mutex_lock(&mem_lock);
    rc = mem->ops->open_put(mem, key, flags, &p->inner, err);
    pthread_mutex_unlock(&mem_lock);
    if (rc) {
        free(p);
        return rc;
    }
    p->base.ops = &vput_ops;
    p->fail_after = fail_after_commit && strlen(key) >= strlen(fail_after_commit) &&
                    strcmp(key + strlen(key) - strlen(fail_after_commit), fail_after_commit) == 0;
    *out = &p->base;
    return 0;
}

static int v_get(struct ws_storage *s, const char *key, uint64_t offset, uint64_t length,
                 struct ws_sink *dest, struct ws_error *err)
{
    int rc;

    (void)s;
    pthread_mutex_lock(&mem_lock);
    rc = mem->ops->get(mem, key, offset, length, dest, err);
    pthread_mutex_unlock(&mem_lock);
    return rc;
}

static int v_list(struct ws_storage *s, const char *prefix, ws_storage_list_cb cb, void *arg,
                  struct ws_error *err)
{
    int rc;

    (void)s;
    pthread_mutex_lock(&mem_lock);
    rc = mem->ops->list(mem, prefix, cb, arg, err);
    pthread_mutex_unlock(&mem_lock);
    return rc;
}

static int v_remove(struct ws_storage *s, const char *key, struct ws_error *err)
{
    int rc;

    (void)s;
    pthread_mutex_lock(&mem_lock);
    rc = mem->ops->remove(mem, key, err);
    pthread_mutex_unlock(&mem_lock);
    return rc;
}

static void v_close(struct ws_storage *s)
{
    free(s->location);
    free(s);
    atomic_fetch_sub(&handles_open, 1);
}

static const struct ws_storage_ops view_ops = {"view", v_stat,   v_open_put, v_get,
                                               v_list, v_remove, v_close};

/* The opener the commands get (ws_backup_env.open_storage); fail_open_at = n fails the nth. */
static int open_view(const struct ws_config *cfg, struct ws_storage **out, struct ws_error *err)
{
    struct view *v;
    int n = atomic_fetch_add(&handles_opened, 1) + 1;

    (void)cfg;
    if (n == atomic_load(&fail_open_at))
        return ws_error_set(err, WS_ERR_STORAGE, "injected: could not open handle %d", n);
    if (!(v = calloc(1, sizeof(*v))) || !(v->base.location = strdup("mem:"))) {
        free(v);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    }
    v->base.ops = &view_ops;
    atomic_fetch_add(&handles_open, 1);
    *out = &v->base;
    return 0;
}

static void mem_begin(void)
{
    struct ws_error err = {0};

    if (ws_storage_mem_open(&mem, &err) != 0)
        abort();
    atomic_store(&handles_open, 0);
    atomic_store(&handles_opened, 0);
    atomic_store(&fail_open_at, 0);
}

static void mem_end(void)
{
    CHECK(atomic_load(&handles_open) == 0);
    ws_storage_close(mem);
    mem = NULL;
}

static int count_one(void *arg, const char *key, const struct ws_storage_stat *st,
                     struct ws_error *err)
{
    (void)key, (void)st, (void)err;
    ++*(int *)arg;
    return 0;
}

/* Number of stored objects whose key starts with prefix (-1: the listing failed). */
static int count_objects(const char *prefix)
{
    struct ws_error err = {0};
    int n = 0;

    if (mem->ops->list(mem, prefix, count_one, &n, &err) != 0)
        return -1;
    return n;
}

/* ---- the fake PostgreSQL session --------------------------------------------------------- */

static struct {
    char pgdata[512];
    uint64_t sysid; /* what get_info reports */
    char spcmap[1024];
    char labelfile[1024]; /* what the last stop returned */
    char backup_label[256];
    int connects, closes, starts, stops;
    void (*on_start)(const char *label); /* called once in backup mode, then cleared */
    void (*on_stop)(void);               /* called once at the stop, then cleared */
    int version;                         /* server_version_num; 0: 150004 */
    /* what get_access reports: zero is a superuser with max_wal_senders = 10 */
    int not_super, no_replication, no_execute[WS_PG_NFUNCS], no_wal_senders, switches;
    const char *archive_library; /* what get_info reports; NULL: none (before PostgreSQL 15) */
    const char *archive_command; /* NULL: "wal-push %p" */
    int down;                    /* connect fails: the server is unreachable */
} fake;

static int f_connect(const char *conninfo, struct ws_pg **out, struct ws_error *err)
{
    (void)conninfo;
    if (fake.down)
        return ws_error_set(err, WS_ERR_STORAGE, "connecting: connection refused");
    if (!(*out = calloc(1, sizeof(**out))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    fake.connects++;
    return 0;
}

static void f_close(struct ws_pg *pg)
{
    fake.closes++;
    free(pg);
}

static int f_get_info(struct ws_pg *pg, struct ws_pg_info *info, struct ws_error *err)
{
    (void)pg;
    memset(info, 0, sizeof(*info));
    info->version = fake.version ? fake.version : 150004;
    info->system_identifier = fake.sysid;
    info->wal_segment_size = SEG;
    info->data_directory = strdup(fake.pgdata);
    info->archive_mode = strdup("on");
    info->archive_command = strdup(fake.archive_command ? fake.archive_command : "wal-push %p");
    info->archive_library = fake.archive_library ? strdup(fake.archive_library) : NULL;
    if (!info->data_directory || !info->archive_mode || !info->archive_command ||
        (fake.archive_library && !info->archive_library)) {
        ws_pg_info_free(info);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    }
    return 0;
}

static int f_switch_wal(struct ws_pg *pg, char **walfile, struct ws_error *err)
{
    (void)pg;
    fake.switches++;
    if (!(*walfile = strdup("000000010000000000000003")))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    return 0;
}

static int f_backup_start(struct ws_pg *pg, int version, const char *label, int fast,
                          uint64_t *start_lsn, struct ws_error *err)
{
    (void)pg, (void)version, (void)fast, (void)err;
    void (*hook)(const char *) = fake.on_start;

    fake.starts++;
    snprintf(fake.backup_label, sizeof(fake.backup_label), "%s", label);
    *start_lsn = START_LSN;
    fake.on_start = NULL;
    if (hook)
        hook(label);
    return 0;
}

static int f_backup_stop(struct ws_pg *pg, int version, uint64_t *stop_lsn, char **labelfile,
                         char **spcmap, struct ws_error *err)
{
    void (*hook)(void) = fake.on_stop;

    (void)pg, (void)version;
    fake.on_stop = NULL;
    if (hook)
        hook();
    fake.stops++;
    snprintf(fake.labelfile, sizeof(fake.labelfile),
             "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n"
             "CHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\n"
             "START TIME: 2026-12-07 10:00:00 UTC\nLABEL: %s\nSTART TIMELINE: 1\n",
             fake.backup_label);
    *stop_lsn = STOP_LSN;
    *labelfile = strdup(fake.labelfile);
    *spcmap = strdup(fake.spcmap);
    if (!*labelfile || !*spcmap) {
        free(*labelfile);
        free(*spcmap);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    }
    return 0;
}

static int f_get_access(struct ws_pg *pg, int version, struct ws_pg_access *a, struct ws_error *err)
{
    (void)pg, (void)version;
    memset(a, 0, sizeof(*a));
    if (!(a->role = strdup(fake.not_super ? "walsafe" : "postgres")))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    a->superuser = !fake.not_super;
    a->replication = !fake.no_replication;
    for (int i = 0; i < WS_PG_NFUNCS; i++)
        a->execute[i] = !fake.no_execute[i];
    a->max_wal_senders = fake.no_wal_senders ? 0 : 10;
    return 0;
}

static const struct ws_pg_ops fake_pg = {f_connect,      f_close,       f_get_info,   f_switch_wal,
                                         f_backup_start, f_backup_stop, f_get_access, NULL};
/* ---- the fake replication session (pg/repl.h): plays a script of messages ---------------- */

struct fmsg {
    enum ws_repl_msg_type type;
    char *name, *location; /* ARCHIVE */
    uint8_t *data;         /* DATA */
    size_t len;
    uint64_t progress;
};

static struct {
    struct fmsg *msgs;
    size_t n, cap, at;
    size_t fail_at;     /* next fails (a connection lost) when at reaches it; 0: never */
    char location[512]; /* the tablespace it announces */
    uint64_t start_lsn, end_lsn;
    int checksum_failure; /* END's */
    int connects, closes, base_backups;
    char label[256]; /* BASE_BACKUP's */
    int refuse;      /* connect fails as a pg_hba.conf without a replication line makes it */
} frepl;

static int fr_connect(const char *conninfo, struct ws_repl **out, struct ws_error *err)
{
    (void)conninfo;
    if (frepl.refuse)
        return ws_error_set(err, WS_ERR_STORAGE,
                            "connecting for replication: FATAL:  no pg_hba.conf entry for "
                            "replication connection from host \"127.0.0.1\", user \"walsafe\"");
    if (!(*out = calloc(1, sizeof(**out))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    frepl.connects++;
    atomic_fetch_add(&repls_open, 1);
    return 0;
}

static void fr_close(struct ws_repl *r)
{
    frepl.closes++;
    atomic_fetch_sub(&repls_open, 1);
    free(r);
}

static int fr_identify(struct ws_repl *r, struct ws_repl_system *sys, struct ws_error *err)
{
    (void)r, (void)err;
    memset(sys, 0, sizeof(*sys));
    sys->system_identifier = fake.sysid;
    sys->timeline = 1;
    sys->version = fake.version ? fake.version : 150004;
    sys->wal_segment_size = SEG;
    sys->block_size = WS_PG_BLCKSZ;
    return 0;
}

static int fr_base_backup(struct ws_repl *r, const struct ws_repl_bb_opts *o,
                          struct ws_repl_bb_start *start, struct ws_error *err)
{
    (void)r;
    frepl.base_backups++;
    snprintf(frepl.label, sizeof(frepl.label), "%s", o->label);
    memset(start, 0, sizeof(*start));
    start->start_lsn = frepl.start_lsn;
    start->timeline = 1;
    if (!(start->tablespaces = calloc(1, sizeof(*start->tablespaces))) ||
        !(start->tablespaces[0].location = strdup(frepl.location)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    start->tablespaces[0].oid = TS_OID;
    start->tablespaces[0].size = -1;
    start->ntablespaces = 1;
    return 0;
}

static int fr_next(struct ws_repl *r, struct ws_repl_msg *msg, struct ws_error *err)
{
    const struct fmsg *f;

    (void)r;
    memset(msg, 0, sizeof(*msg));
    if (frepl.fail_at && frepl.at == frepl.fail_at)
        return ws_error_set(err, WS_ERR_STORAGE, "injected: the connection was lost");
    if (frepl.at == frepl.n) {
        msg->type = WS_REPL_END;
        msg->end_lsn = frepl.end_lsn;
        msg->end_timeline = 1;
        msg->checksum_failure = frepl.checksum_failure;
        return 0;
    }
    f = &frepl.msgs[frepl.at++];
    msg->type = f->type;
    msg->archive_name = f->name;
    msg->tablespace_location = f->location;
    msg->data = f->data;
    msg->len = f->len;
    msg->progress = f->progress;
    return 0;
}

static const struct ws_repl_ops fake_repl = {.connect = fr_connect,
                                             .close = fr_close,
                                             .identify = fr_identify,
                                             .base_backup = fr_base_backup,
                                             .next = fr_next};

static const struct ws_backup_env env = {&fake_pg, &fake_repl, open_view, WAL_FETCH};

/* ---- the data directory ------------------------------------------------------------------ */

/* Its files: `kept` ones are in the backup; `ts` ones lie in the tablespace directory. */
struct src {
    const char *path;
    size_t size;
    mode_t mode;
    int kept, ts;
};

static const struct src files[] = {
    {"PG_VERSION", 3, 0600, 1, 0},
    {"global/pg_control", 8192, 0600, 1, 0},
    {"postgresql.conf", 300, 0600, 1, 0},
    {"postmaster.pid", 60, 0600, 0, 0},
    {"postmaster.opts", 40, 0600, 0, 0},
    {"backup_label.old", 40, 0600, 0, 0},
    {"base/1/16384", 3 * 8192, 0600, 1, 0},
    {"base/1/16384_fsm", 8192, 0640, 1, 0},
    {"base/1/16385", 8192, 0600, 0, 0}, /* unlogged: only its init fork */
    {"base/1/16385_init", 0, 0600, 1, 0},
    {"base/1/16386", (3u << 20) + 123, 0644, 1, 0}, /* several read blocks */
    {"base/1/t3_16387", 100, 0600, 0, 0},
    {"base/1/pg_internal.init", 100, 0600, 0, 0},
    {"base/pgsql_tmp/pgsql_tmp123.0", 100, 0600, 0, 0},
    {"pg_wal/000000010000000000000001", 1000, 0600, 0, 0},
    {"pg_wal/archive_status/000000010000000000000001.done", 0, 0600, 0, 0},
    {"pg_stat_tmp/global.stat", 100, 0600, 0, 0},
    {"PG_15_202209061/1/16401", 2 * 8192, 0600, 1, 1},
};
#define NFILES (sizeof(files) / sizeof(files[0]))

static const char auto_conf[] = "# Do not edit this file manually!\n"
                                "work_mem = '8MB'\n"
                                "restore_command = 'cp /old/%f %p'\n";

struct cluster {
    struct ws_config cfg;
    char cluster[65];
    char pgdata[512], ts_src[512];
    char target[512], ts_dst[512]; /* restore into */
    struct ws_keyring kr;
};

/* The content of file i: random, pg_control starting with the system identifier. */
static uint8_t *content(size_t i)
{
    uint8_t *d = malloc(files[i].size + 8);

    if (!d)
        abort();
    unit_random(d, files[i].size, (uint32_t)i + 1);
    if (strcmp(files[i].path, "global/pg_control") == 0) {
        uint64_t id = SYSID;
        memcpy(d, &id, sizeof(id));
    }
    return d;
}

static void src_path(const struct cluster *c, size_t i, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s/%s", files[i].ts ? c->ts_src : c->pgdata, files[i].path);
}

/* A data directory with a tablespace, a key, a configuration and the fake serving them. */
static void cluster_init(struct cluster *c, const char *tag, int parallel)
{
    struct ws_error err = {0};
    char p[PATH_MAX + 64], key[PATH_MAX];

    memset(c, 0, sizeof(*c));
    snprintf(c->cluster, sizeof(c->cluster), "cl-%s", tag);
    snprintf(c->pgdata, sizeof(c->pgdata), "%s/%s/pgdata", unit_tmpdir(), tag);
    snprintf(c->ts_src, sizeof(c->ts_src), "%s/%s/ts", unit_tmpdir(), tag);
    snprintf(c->target, sizeof(c->target), "%s/%s/restored", unit_tmpdir(), tag);
    snprintf(c->ts_dst, sizeof(c->ts_dst), "%s/%s/ts-restored", unit_tmpdir(), tag);
    for (size_t i = 0; i < NFILES; i++) {
        uint8_t *d = content(i);
        src_path(c, i, p, sizeof(p));
        *strrchr(p, '/') = '\0';
        mkdirs(p);
        src_path(c, i, p, sizeof(p));
        if (write_file(p, d, files[i].size, files[i].mode) != 0)
            unit_fail(__FILE__, __LINE__, p);
        free(d);
    }
    snprintf(p, sizeof(p), "%s/postgresql.auto.conf", c->pgdata);
    CHECK(write_file(p, auto_conf, strlen(auto_conf), 0600) == 0);
    snprintf(p, sizeof(p), "%s/pg_notify", c->pgdata);
    mkdirs(p);
    snprintf(p, sizeof(p), "%s/pg_tblspc", c->pgdata);
    mkdirs(p);
    snprintf(p, sizeof(p), "%s/pg_tblspc/%d", c->pgdata, TS_OID);
    CHECK(symlink(c->ts_src, p) == 0);

    snprintf(key, sizeof(key), "%s/%s/key", unit_tmpdir(), tag);
    CHECK(unit_key_file(key, NULL) == 0);
    ws_config_init(&c->cfg);
    c->cfg.repo = strdup("mem:");
    c->cfg.cluster = strdup(c->cluster);
    c->cfg.pgdata = strdup(c->pgdata); /* backup_method local */
    c->cfg.encrypt_key_file = strdup(key);
    c->cfg.parallel = parallel;
    c->cfg.timeout = 10;
    c->cfg.allow_root = 1; /* the unit tests run as root (check's user line) */
    CHECK(ws_keyring_load(&c->cfg, &c->kr, &err) == 0);

    memset(&fake, 0, sizeof(fake));
    snprintf(fake.pgdata, sizeof(fake.pgdata), "%s", c->pgdata);
    fake.sysid = SYSID;
    snprintf(fake.spcmap, sizeof(fake.spcmap), "%d %s\n", TS_OID, c->ts_src);
}

static void cluster_free(struct cluster *c)
{
    ws_keyring_wipe(&c->kr);
    ws_config_free(&c->cfg);
}

/* Stores WAL segment segno of timeline 1 as wal-push would (encrypted, bound to its key). */
static int store_wal(const struct cluster *c, uint64_t segno)
{
    struct ws_error err = {0};
    struct ws_repo repo = {0};
    struct ws_object_params p = {0};
    struct ws_sink *put = NULL, *wr = NULL;
    char name[WS_WAL_NAME_LEN + 1], key[256];
    uint8_t data[4096];
    int rc;

    snprintf(repo.cluster, sizeof(repo.cluster), "%s", c->cluster);
    ws_wal_format_name(name, 1, segno, SEG);
    ws_repo_wal_key(&repo, name, key, sizeof(key));
    unit_random(data, sizeof(data), (uint32_t)segno);
    p.name = key;
    p.content_size = sizeof(data);
    p.key = ws_keyring_write_key(&c->kr);
    if ((rc = open_view(NULL, &repo.st, &err)) != 0)
        return rc;
    if ((rc = ws_storage_open_put(repo.st, key, 0, &put, &err)) == 0 &&
        (rc = ws_object_writer_new(put, &p, &wr, &err)) == 0 &&
        (rc = ws_sink_write(wr, data, sizeof(data), &err)) == 0)
        rc = ws_sink_finish(wr, &err);
    ws_sink_free(wr);
    ws_storage_close(repo.st);
    return rc;
}

/* stdout of a command into buf (the id create prints, verify's verdict). */
static int saved_stdout = -1, capture_fd = -1;

static void capture_begin(void)
{
    char p[PATH_MAX];

    snprintf(p, sizeof(p), "%s/stdout", unit_tmpdir());
    fflush(stdout);
    saved_stdout = dup(STDOUT_FILENO);
    capture_fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (saved_stdout < 0 || capture_fd < 0 || dup2(capture_fd, STDOUT_FILENO) < 0)
        abort();
}

static void capture_end(char *buf, size_t bufsz)
{
    ssize_t n;

    fflush(stdout);
    dup2(saved_stdout, STDOUT_FILENO);
    close(saved_stdout);
    n = pread(capture_fd, buf, bufsz - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    close(capture_fd);
}

/* Runs create; *id gets the id it printed. */
static int create(struct cluster *c, char id[WS_BACKUP_ID_LEN + 1], struct ws_error *err)
{
    struct ws_backup_opts o = {0};
    char out[256];
    int rc;

    o.label = "unit";
    capture_begin();
    rc = ws_backup_create(&c->cfg, &env, &o, err);
    capture_end(out, sizeof(out));
    out[strcspn(out, "\n")] = '\0';
    snprintf(id, WS_BACKUP_ID_LEN + 1, "%.*s", WS_BACKUP_ID_LEN, out);
    CHECK(rc != 0 || ws_backup_id_valid(id));
    CHECK(atomic_load(&handles_open) == 0);
    CHECK(fake.connects == fake.closes);
    return rc;
}

/* The catalog entry of backup id. */
static int load_backup(const struct cluster *c, const char *id, struct ws_catalog *cat,
                       const struct ws_catalog_backup **b)
{
    struct ws_error err = {0};
    struct ws_repo repo = {0};
    int rc;

    *b = NULL;
    if ((rc = ws_backup_repo_open(&env, &c->cfg, &repo, &err)) != 0)
        return rc;
    rc = ws_catalog_load(&repo, &c->kr, cat, &err);
    ws_repo_close(&repo);
    for (size_t i = 0; rc == 0 && i < cat->nbackups; i++)
        if (strcmp(cat->backups[i].id, id) == 0)
            *b = &cat->backups[i];
    return rc ? rc : *b ? 0 : -1;
}

/* ---- checks -------------------------------------------------------------------------------- */

static const struct ws_bfile *manifest_file(const struct ws_manifest *m, const char *path)
{
    for (size_t i = 0; i < m->nfiles; i++)
        if (strcmp(m->files[i].path, path) == 0)
            return &m->files[i];
    return NULL;
}

/* The base of path's record in m; "(none)" without a record (a failure then). */
static const char *base_of(const struct ws_manifest *m, const char *path)
{
    const struct ws_bfile *f = manifest_file(m, path);

    if (!f)
        unit_fail(__FILE__, __LINE__, path);
    return f ? f->base : "(none)";
}

static int manifest_dir(const struct ws_manifest *m, const char *path)
{
    for (size_t i = 0; i < m->ndirs; i++)
        if (strcmp(m->dirs[i].path, path) == 0)
            return 1;
    return 0;
}

static void manifest_path(size_t i, char *out, size_t outsz)
{
    if (files[i].ts)
        snprintf(out, outsz, "pg_tblspc/%d/%s", TS_OID, files[i].path);
    else
        snprintf(out, outsz, "%s", files[i].path);
}

/* What create recorded: the kept files and no other, the directories, the tablespace. */
static void check_manifest(const struct cluster *c, const struct ws_manifest *m)
{
    static const char *const dirs[] = {
        "global",      "base/1",    "pg_wal",    "pg_wal/archive_status",
        "pg_stat_tmp", "pg_notify", "pg_tblspc", "pg_tblspc/16400/PG_15_202209061/1"};
    size_t kept = 3; /* postgresql.auto.conf, backup_label, tablespace_map */
    char path[PATH_MAX];

    for (size_t i = 0; i < NFILES; i++) {
        const struct ws_bfile *f;
        manifest_path(i, path, sizeof(path));
        f = manifest_file(m, path);
        kept += files[i].kept;
        CHECK(!f == !files[i].kept);
        if (f) {
            CHECK(f->size == files[i].size);
            CHECK(f->mode == files[i].mode);
        }
    }
    CHECK(m->nfiles == kept);
    CHECK(manifest_file(m, "postgresql.auto.conf") != NULL);
    CHECK(manifest_file(m, "backup_label") && manifest_file(m, "tablespace_map"));
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
        CHECK(manifest_dir(m, dirs[i]));
    CHECK(!manifest_dir(m, "base/pgsql_tmp"));
    REQUIRE(m->ntblspc == 1);
    CHECK(m->tblspc[0].oid == TS_OID && strcmp(m->tblspc[0].location, c->ts_src) == 0);
    CHECK(m->start_lsn == START_LSN && m->stop_lsn == STOP_LSN && m->timeline == 1);
    CHECK(m->system_identifier == SYSID && m->wal_segment_size == SEG);
    CHECK(strcmp(m->label, "unit") == 0 && strcmp(fake.backup_label, "unit") == 0);
}

static int same_content(const char *path, const void *data, size_t len)
{
    uint8_t *buf = malloc(len + 1);
    int fd = open(path, O_RDONLY | O_CLOEXEC), ok;

    ok =
        buf && fd >= 0 && pread(fd, buf, len + 1, 0) == (ssize_t)len && memcmp(buf, data, len) == 0;
    if (fd >= 0)
        close(fd);
    free(buf);
    return ok;
}

static char *read_text(const char *path)
{
    static char buf[8192];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? pread(fd, buf, sizeof(buf) - 1, 0) : -1;

    if (fd >= 0)
        close(fd);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

/* What restore wrote: every kept file with its content, mode (masked to 0600) and mtime, none
 * of the others, the tablespace at ts_dst, backup_label, tablespace_map, recovery settings. */
static void check_restored(const struct cluster *c)
{
    char p[PATH_MAX + 64], want[PATH_MAX + 256], link[PATH_MAX];
    struct stat st, sst;
    const char *conf;
    ssize_t n;

    for (size_t i = 0; i < NFILES; i++) {
        uint8_t *d = content(i);
        snprintf(p, sizeof(p), "%s/%s", files[i].ts ? c->ts_dst : c->target, files[i].path);
        if (!files[i].kept) {
            CHECK(lstat(p, &st) != 0 && errno == ENOENT);
        } else {
            CHECK(same_content(p, d, files[i].size));
            src_path(c, i, want, sizeof(want));
            CHECK(stat(p, &st) == 0 && stat(want, &sst) == 0);
            CHECK((st.st_mode & 07777) == 0600);
            CHECK(st.st_mtime == sst.st_mtime);
        }
        free(d);
    }
    snprintf(p, sizeof(p), "%s/base/1", c->target);
    CHECK(stat(p, &st) == 0 && (st.st_mode & 07777) == 0700);
    snprintf(p, sizeof(p), "%s/pg_wal/archive_status", c->target);
    CHECK(stat(p, &st) == 0 && S_ISDIR(st.st_mode));
    snprintf(p, sizeof(p), "%s/base/pgsql_tmp", c->target);
    CHECK(lstat(p, &st) != 0);
    snprintf(p, sizeof(p), "%s/pg_tblspc/%d", c->target, TS_OID);
    n = readlink(p, link, sizeof(link) - 1);
    CHECK(n > 0 && (size_t)n == strlen(c->ts_dst) && memcmp(link, c->ts_dst, (size_t)n) == 0);
    snprintf(p, sizeof(p), "%s/backup_label", c->target);
    CHECK(strcmp(read_text(p), fake.labelfile) == 0);
    snprintf(p, sizeof(p), "%s/tablespace_map", c->target);
    snprintf(want, sizeof(want), "%d %s\n", TS_OID, c->ts_dst);
    CHECK(strcmp(read_text(p), want) == 0);
    snprintf(p, sizeof(p), "%s/recovery.signal", c->target);
    CHECK(stat(p, &st) == 0 && st.st_size == 0);
    snprintf(p, sizeof(p), "%s/postgresql.auto.conf", c->target);
    conf = read_text(p);
    snprintf(want, sizeof(want),
             "work_mem = '8MB'\n# recovery settings written by walsafe basebackup restore of "
             "backup ");
    CHECK(strstr(conf, want) != NULL);
    CHECK(strstr(conf, "cp /old") == NULL);
    snprintf(want, sizeof(want), "restore_command = '%s --repo mem: --cluster %s %%f %%p'\n",
             WAL_FETCH, c->cluster);
    CHECK(strstr(conf, want) != NULL);
    CHECK(strstr(conf, "recovery_target_timeline = 'latest'\n") != NULL);
}

static int restore(struct cluster *c, int parallel, int force, struct ws_error *err)
{
    struct ws_restore_opts o = {0};
    struct ws_tblspc_map map = {c->ts_src, c->ts_dst};
    int rc;

    o.pgdata = c->target;
    o.parallel = parallel;
    o.force = force;
    o.maps = &map;
    o.nmaps = 1;
    rc = ws_backup_restore(&c->cfg, &env, &o, err);
    CHECK(atomic_load(&handles_open) == 0);
    return rc;
}

/* ---- create, restore, verify, check -------------------------------------------------------- */

/* global/pg_control was read after every other file of the data directory had been copied (a
 * standby's backup needs it last: create_copy.c): its bundle was opened after every bundle holding
 * another file's bytes (bundle numbers count up as bundles are opened; backup_label and
 * tablespace_map are stored after the copy). */
static void check_control_last(const struct ws_manifest *m)
{
    const struct ws_bfile *ctl = NULL;
    uint32_t last = 0;

    for (size_t i = 0; i < m->nfiles; i++) {
        const struct ws_bfile *f = &m->files[i];
        if (strcmp(f->path, "global/pg_control") == 0) {
            ctl = f;
            continue;
        }
        if (strcmp(f->path, "backup_label") == 0 || strcmp(f->path, "tablespace_map") == 0)
            continue;
        if (f->bundle > last)
            last = f->bundle;
        for (size_t k = 0; k < f->npieces; k++)
            if (f->pieces[k].bundle > last)
                last = f->pieces[k].bundle;
    }
    REQUIRE(ctl != NULL);
    CHECK(ctl->bundle > last);
}

static void roundtrip(const char *tag, int parallel)
{
    struct cluster c;
    struct ws_error err = {0};
    struct ws_catalog cat = {0};
    const struct ws_catalog_backup *b = NULL;
    char id[WS_BACKUP_ID_LEN + 1], out[4096], key[256];
    struct ws_repo repo = {0}, opened = {0};
    struct ws_manifest whole = {0};
    uint8_t *obj;
    size_t len;

    mem_begin();
    cluster_init(&c, tag, parallel);
    CHECK(store_wal(&c, 2) == 0 && store_wal(&c, 3) == 0);
    if (create(&c, id, &err) != 0)
        fprintf(stderr, "    create: %s\n", err.msg);
    CHECK(fake.starts == 1 && fake.stops == 1);
    /* one handle per worker: the main one and parallel - 1 more */
    CHECK(atomic_load(&handles_opened) == 2 + parallel);
    REQUIRE(load_backup(&c, id, &cat, &b) == 0);
    CHECK(b->status == WS_BACKUP_COMPLETE);
    REQUIRE(ws_backup_repo_open(&env, &c.cfg, &opened, &err) == 0);
    REQUIRE(ws_catalog_manifest(&opened, &c.kr, b, &whole, &err) == 0);
    ws_repo_close(&opened);
    check_manifest(&c, &whole);
    check_control_last(&whole);
    ws_manifest_free(&whole);

    if (restore(&c, parallel, 0, &err) != 0)
        fprintf(stderr, "    restore: %s\n", err.msg);
    check_restored(&c);
    /* a second restore into the filled directories is refused without --force */
    CHECK(restore(&c, parallel, 0, &err) == WS_ERR_INVALID);
    CHECK(strstr(err.msg, "is not empty") != NULL);
    CHECK(restore(&c, parallel, 1, &err) == 0);
    check_restored(&c);

    capture_begin();
    CHECK(ws_backup_verify(&c.cfg, &env, NULL, 0, &err) == 0);
    CHECK(ws_backup_check(&c.cfg, &env, &err) == 0);
    capture_end(out, sizeof(out));
    CHECK(strstr(out, ": OK (") != NULL);
    if (strstr(out, "FAILED"))
        fprintf(stderr, "%s", out);
    CHECK(strstr(out, "FAILED") == NULL);
    CHECK(strstr(out, "a forced WAL switch reaches the repository: 000000010000000000000003 "
                      "archived") != NULL);

    /* one byte of the first bundle flipped: verify names the problem */
    snprintf(repo.cluster, sizeof(repo.cluster), "%s", c.cluster);
    ws_backup_bundle_key(&repo, id, 0, key, sizeof(key));
    REQUIRE((obj = ws_storage_mem_object(mem, key, &len)) != NULL);
    obj[len / 2] ^= 0x40;
    capture_begin();
    CHECK(ws_backup_verify(&c.cfg, &env, id, 0, &err) == WS_ERR_CORRUPT);
    capture_end(out, sizeof(out));
    CHECK(strstr(err.msg, "failed verification") != NULL);

    ws_catalog_free(&cat);
    cluster_free(&c);
    mem_end();
}

static void test_roundtrip_one_worker(void)
{
    roundtrip("one", 1);
}

static void test_roundtrip_three_workers(void)
{
    roundtrip("three", 3);
}

/* check of a cluster whose WAL segments 2 and 3 are archived; out gets its lines. */
static int run_check(struct cluster *c, char *out, size_t outsz)
{
    struct ws_error err = {0};
    int rc;

    capture_begin();
    rc = ws_backup_check(&c->cfg, &env, &err);
    capture_end(out, outsz);
    return rc;
}

/* Each missing privilege is its own FAILED line ending with the statement that grants it; the
 * local method (pgdata set) needs the backup functions, the stream method replication. */
static void test_check_privileges(void)
{
    struct cluster c;
    char out[8192];

    mem_begin();
    cluster_init(&c, "privileges", 1);
    CHECK(store_wal(&c, 2) == 0 && store_wal(&c, 3) == 0);
    CHECK(c.cfg.pgdata != NULL); /* the local method */
    fake.not_super = 1;
    CHECK(run_check(&c, out, sizeof(out)) == 0); /* a non-superuser with every grant */
    CHECK(strstr(out, "FAILED") == NULL);
    CHECK(strstr(out, "OK      role walsafe may call pg_backup_start(text, boolean) (local "
                      "backup)\n") != NULL);
    CHECK(strstr(out, "replication") == NULL);

    fake.no_execute[WS_PG_BACKUP_STOP] = 1;
    CHECK(run_check(&c, out, sizeof(out)) == WS_ERR_INVALID);
    CHECK(strstr(out, "FAILED  role walsafe may call pg_backup_stop(boolean) (local backup): "
                      "GRANT EXECUTE ON FUNCTION pg_backup_stop(boolean) TO walsafe;\n") != NULL);
    CHECK(strstr(out, "OK      role walsafe may call pg_backup_start(text, boolean)") != NULL);
    fake.version = 140007; /* the functions' names before PostgreSQL 15 */
    CHECK(run_check(&c, out, sizeof(out)) == WS_ERR_INVALID);
    CHECK(strstr(out, ": GRANT EXECUTE ON FUNCTION pg_stop_backup(boolean, boolean) TO "
                      "walsafe;\n") != NULL);
    fake.version = 0;
    fake.no_execute[WS_PG_BACKUP_STOP] = 0;

    fake.no_execute[WS_PG_SWITCH_WAL] = 1; /* then check does not try the switch */
    fake.switches = 0;
    CHECK(run_check(&c, out, sizeof(out)) == WS_ERR_INVALID);
    CHECK(strstr(out, "FAILED  role walsafe may call pg_switch_wal() (the WAL switch of check): "
                      "GRANT EXECUTE ON FUNCTION pg_switch_wal() TO walsafe;\n") != NULL);
    CHECK(strstr(out, "SKIPPED a forced WAL switch reaches the repository (needs: the role may "
                      "call pg_switch_wal())\n") != NULL);
    CHECK(fake.switches == 0);
    fake.no_execute[WS_PG_SWITCH_WAL] = 0;

    /* the stream method (backup_method, else no pgdata): no EXECUTE on the backup functions */
    fake.no_execute[WS_PG_BACKUP_START] = fake.no_execute[WS_PG_BACKUP_STOP] = 1;
    c.cfg.backup_method = WS_BACKUP_METHOD_STREAM;
    CHECK(run_check(&c, out, sizeof(out)) == 0);
    CHECK(strstr(out, "pg_backup_st") == NULL);
    CHECK(strstr(out, "OK      role walsafe may open replication connections\n") != NULL);
    CHECK(strstr(out, "OK      replication connection opens: system identifier ") != NULL);
    CHECK(frepl.connects == frepl.closes);
    frepl.refuse = 1; /* pg_hba.conf has no replication line for the role */
    CHECK(run_check(&c, out, sizeof(out)) == WS_ERR_INVALID);
    CHECK(strstr(out, "FAILED  replication connection opens: connecting for replication: FATAL:  "
                      "no pg_hba.conf entry for replication connection") != NULL);
    CHECK(strstr(out, "OK      a forced WAL switch reaches the repository") != NULL);
    frepl.refuse = 0;
    fake.down = 1; /* the server unreachable: the line is not tried */
    CHECK(run_check(&c, out, sizeof(out)) == WS_ERR_INVALID);
    CHECK(strstr(out, "SKIPPED replication connection opens (needs: database server "
                      "reachable)\n") != NULL);
    CHECK(strstr(out, "FAILED  replication") == NULL);
    fake.down = 0;
    c.cfg.backup_method = WS_BACKUP_METHOD_UNSET;
    free(c.cfg.pgdata);
    c.cfg.pgdata = NULL;
    CHECK(run_check(&c, out, sizeof(out)) == 0);
    CHECK(strstr(out, "pg_backup_st") == NULL);
    CHECK(strstr(out, "OK      role walsafe may open replication connections\n") != NULL);
    fake.no_replication = fake.no_wal_senders = 1;
    CHECK(run_check(&c, out, sizeof(out)) == WS_ERR_INVALID);
    CHECK(strstr(out, "FAILED  role walsafe may open replication connections: ALTER ROLE walsafe "
                      "REPLICATION;") != NULL);
    CHECK(strstr(out, "FAILED  max_wal_senders allows replication connections: "
                      "max_wal_senders = 0: ") != NULL);
    CHECK(strstr(out, "SKIPPED replication connection opens (needs: role walsafe may open "
                      "replication connections)\n") != NULL);
    cluster_free(&c);
    mem_end();
}

/* A failed precondition: the lines that need it say SKIPPED naming it, never a second FAILED,
 * and the WAL switch is not tried (no wait of `timeout`). */
static void test_check_skips(void)
{
    char *realkey;
    struct cluster c;
    struct ws_error cfg_err = {0};
    char out[8192];

    mem_begin();
    cluster_init(&c, "skips", 1);
    CHECK(store_wal(&c, 2) == 0 && store_wal(&c, 3) == 0);
    fake.switches = 0;
    c.cfg.allow_root = 0; /* root without --allow-root */
    CHECK(run_check(&c, out, sizeof(out)) == WS_ERR_INVALID);
    CHECK(strstr(out, "FAILED  basebackup runs as the repository's owner: basebackup must not run "
                      "as root") != NULL);
    CHECK(strstr(out, "SKIPPED repository reachable and writable (needs: basebackup runs as the "
                      "repository's owner)\n") != NULL);
    CHECK(strstr(out, "SKIPPED a forced WAL switch reaches the repository (needs: basebackup runs "
                      "as the repository's owner)\n") != NULL);
    CHECK(fake.switches == 0);
    c.cfg.allow_root = 1;

    realkey = c.cfg.encrypt_key_file; /* a key file that cannot be read */
    c.cfg.encrypt_key_file = strdup("/nonexistent/walsafe.key");
    CHECK(run_check(&c, out, sizeof(out)) == WS_ERR_INVALID);
    CHECK(strstr(out, "FAILED  encryption key file readable: ") != NULL);
    CHECK(strstr(out, "SKIPPED encryption key matches the repository (needs: encryption key file "
                      "readable)\n") != NULL);
    CHECK(strstr(out, "SKIPPED a forced WAL switch reaches the repository (needs: encryption key "
                      "file readable)\n") != NULL);
    CHECK(strstr(out, "OK      repository reachable and writable") != NULL);
    CHECK(fake.switches == 0);
    /* only one FAILED line: no false second diagnosis */
    CHECK(strstr(strstr(out, "FAILED") + 1, "FAILED") == NULL);

    free(c.cfg.encrypt_key_file);
    c.cfg.encrypt_key_file = realkey;
    {
        char *real = c.cfg.pgdata; /* pgdata another directory than the server's */
        c.cfg.pgdata = strdup(unit_tmpdir());
        c.cfg.spool_dir = strdup("/nonexistent/spool");
        CHECK(run_check(&c, out, sizeof(out)) == WS_ERR_INVALID);
        CHECK(strstr(out, "FAILED  pgdata is the server's data directory: ") != NULL);
        CHECK(strstr(out, "SKIPPED spool_dir usable by the server's user (needs: pgdata is the "
                          "server's data directory)\n") != NULL);
        free(c.cfg.pgdata);
        c.cfg.pgdata = real;
        CHECK(run_check(&c, out, sizeof(out)) == WS_ERR_INVALID); /* the spool's parent is gone */
        CHECK(strstr(out, "FAILED  spool_dir usable by the server's user: \"/nonexistent/spool/") !=
              NULL);
        CHECK(strstr(out, "fix: install -d -o ") != NULL);
        free(c.cfg.spool_dir);
        c.cfg.spool_dir = NULL;
    }

    snprintf(cfg_err.msg, sizeof(cfg_err.msg), "configuration file \"f\" line 1: unknown key");
    capture_begin();
    ws_backup_check_config_failed(&cfg_err);
    capture_end(out, sizeof(out));
    CHECK(strncmp(out, "FAILED  configuration valid: configuration file \"f\" line 1", 58) == 0);
    CHECK(strstr(out, "SKIPPED a forced WAL switch reaches the repository (needs: configuration "
                      "valid)\n") != NULL);
    CHECK(strstr(out, "OK") == NULL);
    cluster_free(&c);
    mem_end();
}

/* archive_library (PostgreSQL 15+) set to the walsafe_archive module, by name or by path, is a
 * valid archiving set-up (archive_command is then ignored by the server); another module is not,
 * and then the WAL switch is not tried. An empty archive_library leaves archive_command's rule. */
static void test_check_archive_library(void)
{
    static const char *const ok[] = {"walsafe_archive",
                                     "/usr/lib/postgresql/15/lib/walsafe_archive",
                                     "/opt/x/walsafe_archive.so"};
    struct cluster c;
    char out[8192];
    size_t i;

    mem_begin();
    cluster_init(&c, "archive-library", 1);
    CHECK(store_wal(&c, 2) == 0 && store_wal(&c, 3) == 0);
    fake.archive_command = "";
    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        fake.archive_library = ok[i];
        fake.switches = 0;
        CHECK(run_check(&c, out, sizeof(out)) == 0);
        CHECK(strstr(out, "FAILED") == NULL);
        CHECK(strstr(out, "OK      archive_library is walsafe_archive: archive_library = '") !=
              NULL);
        CHECK(strstr(out, "archive_command") == NULL);
        CHECK(fake.switches == 1);
    }
    fake.archive_library = "basic_archive";
    fake.archive_command = "wal-push %p"; /* ignored by the server while a library is set */
    fake.switches = 0;
    CHECK(run_check(&c, out, sizeof(out)) == WS_ERR_INVALID);
    CHECK(strstr(out, "FAILED  archive_library is walsafe_archive: archive_library = "
                      "'basic_archive'\n") != NULL);
    CHECK(strstr(out, "SKIPPED a forced WAL switch reaches the repository (needs: archive_library "
                      "is walsafe_archive)\n") != NULL);
    CHECK(fake.switches == 0);
    fake.archive_library = "";
    CHECK(run_check(&c, out, sizeof(out)) == 0);
    CHECK(strstr(out, "OK      archive_command calls wal-push: archive_command = 'wal-push %p'") !=
          NULL);
    fake.archive_library = NULL;
    fake.archive_command = NULL;
    cluster_free(&c);
    mem_end();
}

/* ---- create's failures ------------------------------------------------------------------- */

/* Runs a create that must fail with code, its message holding msg: backup mode ended as often
 * as it began (started: 0 or 1), no object of the backup left. */
static void create_fails(struct cluster *c, int code, const char *msg, int started)
{
    struct ws_error err = {0};
    char id[WS_BACKUP_ID_LEN + 1], prefix[128];

    CHECK(create(c, id, &err) == code);
    CHECK(strstr(err.msg, msg) != NULL);
    CHECK(fake.starts == started && fake.stops == started && fake.connects == 1);
    snprintf(prefix, sizeof(prefix), "%s/backup/", c->cluster);
    CHECK(count_objects(prefix) == 0);
}

/* A data directory of another system than the server's: nothing started, nothing stored. */
static void test_create_foreign_data_dir(void)
{
    struct cluster c;
    char prefix[128];

    mem_begin();
    cluster_init(&c, "foreign", 2);
    fake.sysid = SYSID + 1;
    create_fails(&c, WS_ERR_FOREIGN, "belongs to database system", 0);
    snprintf(prefix, sizeof(prefix), "%s/", c.cluster);
    CHECK(count_objects(prefix) == 0);
    cluster_free(&c);
    mem_end();
}

/* A storage failure at each put of a create (its claim, the first bundle, backup_label's,
 * tablespace_map's, the manifest) fails it, ends backup mode exactly once (never begun when the
 * claim fails) and leaves no object of the backup. */
static void test_create_storage_failure(void)
{
    for (int nth = 2; nth <= 6; nth++) {
        struct cluster c;
        char tag[32];

        mem_begin();
        snprintf(tag, sizeof(tag), "fail%d", nth);
        cluster_init(&c, tag, 1);
        CHECK(store_wal(&c, 2) == 0 && store_wal(&c, 3) == 0);
        /* put 1 is the cluster's identity */
        ws_storage_mem_fault(mem, WS_MEM_PUT_FINISH, nth, WS_ERR_STORAGE);
        create_fails(&c, WS_ERR_STORAGE, "injected", nth > 2);
        cluster_free(&c);
        mem_end();
    }
}

/* A manifest put that stored the object but reported a failure: the create fails and leaves no
 * object, the manifest first (it removed the bundles and map objects and left the manifest, a
 * backup listed complete whose data was gone). */
static void test_create_manifest_stored_then_failed(void)
{
    struct cluster c;
    char prefix[128];

    mem_begin();
    cluster_init(&c, "mfail", 2);
    CHECK(store_wal(&c, 2) == 0 && store_wal(&c, 3) == 0);
    fail_after_commit = "/manifest";
    create_fails(&c, WS_ERR_STORAGE, "stored, then failed", 1);
    fail_after_commit = NULL;
    snprintf(prefix, sizeof(prefix), "%s/backup/", c.cluster);
    CHECK(count_objects(prefix) == 0);
    cluster_free(&c);
    mem_end();
}

/* A worker that cannot open its storage handle fails the create before any file is read. */
static void test_create_worker_handle_fails(void)
{
    struct cluster c;

    mem_begin();
    cluster_init(&c, "handle", 3);
    atomic_store(&fail_open_at, 3); /* the main handle, worker 1's, then worker 2's */
    create_fails(&c, WS_ERR_STORAGE, "could not open handle 3", 1);
    cluster_free(&c);
    mem_end();
}

static void *store_wal_later(void *arg)
{
    usleep(300 * 1000);
    if (store_wal(arg, 3) != 0)
        unit_fail(__FILE__, __LINE__, "store_wal");
    return NULL;
}

/* Create prints the id only once the WAL from start to stop is in the repository: it waits
 * for a segment that arrives late, and fails after `timeout` for one that never does (the
 * backup then stays, incomplete). */
static void test_create_waits_for_wal(void)
{
    struct cluster c;
    struct ws_error err = {0};
    struct ws_catalog cat = {0};
    const struct ws_catalog_backup *b = NULL;
    char id[WS_BACKUP_ID_LEN + 1], prefix[128];
    pthread_t t;

    mem_begin();
    cluster_init(&c, "walwait", 2);
    CHECK(store_wal(&c, 2) == 0);
    REQUIRE(pthread_create(&t, NULL, store_wal_later, &c) == 0);
    CHECK(create(&c, id, &err) == 0);
    pthread_join(t, NULL);
    REQUIRE(load_backup(&c, id, &cat, &b) == 0);
    CHECK(b->status == WS_BACKUP_COMPLETE);
    ws_catalog_free(&cat);
    cluster_free(&c);
    mem_end();

    mem_begin();
    cluster_init(&c, "walmissing", 2);
    c.cfg.timeout = 1;
    CHECK(store_wal(&c, 2) == 0);
    CHECK(create(&c, id, &err) == WS_ERR_STORAGE);
    CHECK(strstr(err.msg, "WAL file 000000010000000000000003 needed by backup") != NULL);
    CHECK(id[0] == '\0');
    snprintf(prefix, sizeof(prefix), "%s/backup/", c.cluster);
    CHECK(count_objects(prefix) >= 2); /* its bundles and manifest stay */
    cluster_free(&c);
    mem_end();
}

/* ---- the pool ------------------------------------------------------------------------------ */

#define NTASKS 200

static struct {
    atomic_int runs[NTASKS];
    atomic_int ends, order_ok, last, fail_at, later_errors;
    struct ws_storage *handle[8];
    struct ws_storage *main_st;
} pt;

static int pool_task(void *arg, struct ws_pool_worker *w, size_t task, struct ws_error *err)
{
    (void)arg;
    atomic_fetch_add(&pt.runs[task], 1);
    if ((int)task <= atomic_exchange(&pt.last, (int)task))
        atomic_store(&pt.order_ok, 0);
    if ((int)task == atomic_load(&pt.fail_at))
        return ws_error_set(err, WS_ERR_CORRUPT, "task %zu failed", task);
    if (atomic_load(&pt.fail_at) >= 0 && (int)task > atomic_load(&pt.fail_at)) {
        /* running while the failing task runs: fails once that failure is recorded */
        for (int i = 0; i < 5000 && !ws_pool_failed(w); i++)
            usleep(1000);
        atomic_fetch_add(&pt.later_errors, 1);
        return ws_error_set(err, WS_ERR_IO, "a later error");
    }
    ws_pool_progress(w, 10);
    return 0;
}

static int pool_end(void *arg, struct ws_pool_worker *w, struct ws_error *err)
{
    (void)arg;
    atomic_fetch_add(&pt.ends, 1);
    if (w->index < 8)
        pt.handle[w->index] = w->repo.st;
    if (ws_pool_failed(w))
        return ws_error_set(err, WS_ERR_IO, "an end's error after the failure");
    return 0;
}

static int run_pool(size_t workers, int fail_at, struct ws_error *err)
{
    struct ws_config cfg;
    struct ws_repo repo = {0};
    struct ws_pool_params p = {0};
    int rc;

    memset(&pt, 0, sizeof(pt));
    atomic_store(&pt.order_ok, 1);
    atomic_store(&pt.last, -1);
    atomic_store(&pt.fail_at, fail_at);
    ws_config_init(&cfg);
    if (open_view(NULL, &repo.st, err) != 0)
        return -1;
    pt.main_st = repo.st;
    p.cfg = &cfg;
    p.env = &env;
    p.repo = &repo;
    p.workers = workers;
    p.ntasks = NTASKS;
    p.task = pool_task;
    p.end = pool_end;
    p.total_bytes = NTASKS * 10;
    rc = ws_pool_run(&p, err);
    CHECK(atomic_load(&handles_open) == 1); /* the workers' own are closed */
    ws_storage_close(repo.st);
    return rc;
}

static void test_pool_size(void)
{
    CHECK(ws_pool_size(0, 10) == 1);
    CHECK(ws_pool_size(-3, 10) == 1);
    CHECK(ws_pool_size(4, 10) == 4);
    CHECK(ws_pool_size(4, 3) == 3);
    CHECK(ws_pool_size(4, 0) == 4);
}

/* Every task once; on one worker in order; worker 0 on the caller's handle, the others each on
 * one of their own. */
static void test_pool_every_task_once(void)
{
    struct ws_error err = {0};

    mem_begin();
    CHECK(run_pool(4, -1, &err) == 0);
    for (int i = 0; i < NTASKS; i++)
        CHECK(atomic_load(&pt.runs[i]) == 1);
    CHECK(atomic_load(&pt.ends) == 4);
    CHECK(atomic_load(&handles_opened) == 4);
    CHECK(pt.handle[0] == pt.main_st);
    for (int i = 1; i < 4; i++) {
        CHECK(pt.handle[i] != NULL && pt.handle[i] != pt.main_st);
        for (int k = 1; k < i; k++)
            CHECK(pt.handle[i] != pt.handle[k]);
    }
    CHECK(run_pool(1, -1, &err) == 0);
    CHECK(atomic_load(&pt.order_ok) == 1);
    CHECK(atomic_load(&pt.ends) == 1);
    mem_end();
}

/* The first error is the pool's; no task starts after it (on one worker: none after the
 * failed one), later errors (tasks already running, the ends) are dropped. */
static void test_pool_first_error_wins(void)
{
    struct ws_error err = {0};
    int ran = 0;

    mem_begin();
    CHECK(run_pool(1, 5, &err) == WS_ERR_CORRUPT);
    CHECK(strcmp(err.msg, "task 5 failed") == 0);
    for (int i = 0; i < NTASKS; i++)
        CHECK(atomic_load(&pt.runs[i]) == (i <= 5));
    CHECK(atomic_load(&pt.ends) == 1);

    CHECK(run_pool(4, 5, &err) == WS_ERR_CORRUPT);
    CHECK(strcmp(err.msg, "task 5 failed") == 0);
    for (int i = 0; i < NTASKS; i++) {
        /* 0 .. 5 once each; a later one at most once: other workers may have taken it before
         * task 5 failed (pool.h: running tasks finish) */
        CHECK(i <= 5 ? atomic_load(&pt.runs[i]) == 1 : atomic_load(&pt.runs[i]) <= 1);
        ran += atomic_load(&pt.runs[i]);
    }
    CHECK(ran <= 5 + 4); /* 0 .. 5 and at most one more on each other worker */
    CHECK(atomic_load(&pt.ends) == 4);
    mem_end();
}

/* A worker handle that cannot be opened: that error, no task run, the opened ones closed. */
static void test_pool_open_failure(void)
{
    struct ws_error err = {0};

    mem_begin();
    atomic_store(&fail_open_at, 3); /* the caller's, then worker 1's, worker 2's */
    CHECK(run_pool(4, -1, &err) == WS_ERR_STORAGE);
    CHECK(strstr(err.msg, "could not open handle 3") != NULL);
    for (int i = 0; i < NTASKS; i++)
        CHECK(atomic_load(&pt.runs[i]) == 0);
    CHECK(atomic_load(&pt.ends) == 0);
    mem_end();
}

/* ---- incremental backups: types, references, block digests (issue 17) -------------------- */

/* The timeline create reads from global/pg_control for diff and incr (ThisTimeLineID of the
 * latest checkpoint, offset 48). */
static void set_control_timeline(const struct cluster *c, uint32_t tli)
{
    char p[PATH_MAX];
    int fd;

    snprintf(p, sizeof(p), "%s/global/pg_control", c->pgdata);
    fd = open(p, O_WRONLY | O_CLOEXEC);
    CHECK(fd >= 0 && pwrite(fd, &tli, sizeof(tli), 48) == (ssize_t)sizeof(tli));
    if (fd >= 0)
        close(fd);
}

/* Runs create of `type` (backup_type); what it logged is in log (up to logsz bytes). */
static int create_type(struct cluster *c, int type, char id[WS_BACKUP_ID_LEN + 1], char *log,
                       size_t logsz, struct ws_error *err)
{
    char p[PATH_MAX];
    const char *text;
    size_t n;
    int rc;

    snprintf(p, sizeof(p), "%s/create.log", unit_tmpdir());
    unlink(p);
    c->cfg.backup_type = type;
    ws_log_set_file(p);
    rc = create(c, id, err);
    ws_log_set_file(NULL);
    text = read_text(p);
    n = strnlen(text, logsz - 1); /* its start (-O2 warns of a truncating snprintf) */
    memcpy(log, text, n);
    log[n] = '\0';
    if (rc)
        fprintf(stderr, "    create: %s\n", err->msg);
    return rc;
}

static int load_manifest(const struct cluster *c, const char *id, struct ws_manifest *m)
{
    struct ws_error err = {0};
    struct ws_repo repo = {0};
    int rc;

    if ((rc = ws_backup_repo_open(&env, &c->cfg, &repo, &err)) != 0)
        return rc;
    rc = ws_manifest_load(&repo, &c->kr, id, m, &err);
    ws_repo_close(&repo);
    return rc;
}

/* The bytes [off, off+len) of bundle `bundle` of backup id (malloc'ed), or NULL. */
static uint8_t *bundle_bytes(const struct cluster *c, const char *id, uint32_t bundle, uint64_t off,
                             uint64_t len)
{
    struct ws_error err = {0};
    struct ws_repo repo = {0};
    char key[256], *data = NULL;
    size_t n = 0;
    uint8_t *out = NULL;

    if (ws_backup_repo_open(&env, &c->cfg, &repo, &err) != 0)
        return NULL;
    ws_backup_bundle_key(&repo, id, bundle, key, sizeof(key));
    if (ws_repo_get_small(&repo, key, &c->kr, 256u << 20, &data, &n, &err) == 0 && off + len <= n &&
        (out = malloc(len ? len : 1)) != NULL)
        memcpy(out, data + off, len);
    free(data);
    ws_repo_close(&repo);
    return out;
}

/* The live file `path` (relative to pgdata or, for pg_tblspc/<oid>/..., the tablespace). */
static void live_path(const struct cluster *c, const char *path, char *out, size_t outsz)
{
    char ts[32];

    snprintf(ts, sizeof(ts), "pg_tblspc/%d/", TS_OID);
    if (strncmp(path, ts, strlen(ts)) == 0)
        snprintf(out, outsz, "%s/%s", c->ts_src, path + strlen(ts));
    else
        snprintf(out, outsz, "%s/%s", c->pgdata, path);
}

/* Record r holds the live file's size and SHA-256, and, for a relation file, a map line whose
 * digests are those of the live file's blocks. */
static void check_record(const struct cluster *c, const char *id, const struct ws_bfile *r)
{
    struct ws_error err = {0};
    struct ws_repo repo = {0};
    char p[PATH_MAX];
    uint8_t *data = NULL, *map = NULL, sha[32], d[WS_BLOCK_DIGEST_SIZE];
    size_t len = 0, maplen = 0;
    uint64_t b, nb;

    live_path(c, r->path, p, sizeof(p));
    REQUIRE(unit_read(p, &data, &len) == 0);
    CHECK(r->size == len);
    EVP_Digest(data, len, sha, NULL, EVP_sha256(), NULL);
    if (memcmp(sha, r->sha256, 32) != 0)
        unit_fail(__FILE__, __LINE__, r->path);
    CHECK(!r->has_map == !ws_blockmap_is_relation(r->path));
    if (r->has_map && ws_backup_repo_open(&env, &c->cfg, &repo, &err) == 0) {
        CHECK(ws_blockmap_load(&repo, &c->kr, id, r->map, &map, &maplen, &err) == 0);
        nb = ws_blockmap_blocks(len, WS_PG_BLCKSZ);
        REQUIRE(map && (r->map_index + nb) * WS_BLOCK_DIGEST_SIZE <= maplen);
        for (b = 0; b < nb; b++) {
            size_t n =
                len - b * WS_PG_BLCKSZ < WS_PG_BLCKSZ ? len - b * WS_PG_BLCKSZ : WS_PG_BLCKSZ;
            ws_block_digest(data + b * WS_PG_BLCKSZ, n, d);
            if (memcmp(d, map + (r->map_index + b) * WS_BLOCK_DIGEST_SIZE, sizeof(d)) != 0)
                unit_fail(__FILE__, __LINE__, r->path);
        }
        free(map);
        ws_repo_close(&repo);
    }
    free(data);
}

/* Writes n bytes of `byte` at offset off of the live file path (its size grows when past it). */
static void patch(const struct cluster *c, const char *path, uint64_t off, size_t n, int byte)
{
    char p[PATH_MAX];
    uint8_t buf[WS_PG_BLCKSZ];
    int fd;

    live_path(c, path, p, sizeof(p));
    memset(buf, byte, sizeof(buf));
    fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    CHECK(fd >= 0 && n <= sizeof(buf) && pwrite(fd, buf, n, (off_t)off) == (ssize_t)n);
    if (fd >= 0)
        close(fd);
}

static void truncate_live(const struct cluster *c, const char *path, off_t size)
{
    char p[PATH_MAX];

    live_path(c, path, p, sizeof(p));
    CHECK(truncate(p, size) == 0);
}

static uint32_t be32_at(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The delta extent of record r (a DELTA of backup id): the file size, exactly the blocks
 * want[0..nwant), and their bytes as the live file has them. */
static void check_delta(const struct cluster *c, const char *id, const struct ws_bfile *r,
                        const uint32_t *want, size_t nwant)
{
    char p[PATH_MAX];
    uint8_t *ext, *data = NULL;
    size_t len = 0, k, at;
    uint64_t size = 0;

    REQUIRE(r->kind == WS_BFILE_DELTA);
    ext = bundle_bytes(c, id, r->bundle, r->offset, r->length);
    REQUIRE(ext != NULL);
    live_path(c, r->path, p, sizeof(p));
    REQUIRE(unit_read(p, &data, &len) == 0);
    for (k = 0; k < 8; k++)
        size = size << 8 | ext[k];
    CHECK(size == r->size && size == len);
    REQUIRE(be32_at(ext + 8) == nwant);
    at = WS_DELTA_HEADER + 4 * nwant;
    for (k = 0; k < nwant; k++) {
        uint64_t o = (uint64_t)want[k] * WS_PG_BLCKSZ;
        size_t n = len - o < WS_PG_BLCKSZ ? len - o : WS_PG_BLCKSZ;
        CHECK(be32_at(ext + WS_DELTA_HEADER + 4 * k) == want[k]);
        CHECK(at + n <= r->length && memcmp(ext + at, data + o, n) == 0);
        at += n;
    }
    CHECK(at == r->length);
    free(ext);
    free(data);
}

/* A full backup records the digests of every relation file; an incr after changes stores the
 * changed blocks of a relation file (DELTA), nothing of unchanged files (REF, relation or not),
 * a relation file with more than half of its blocks changed, a changed non-relation file and a
 * new file whole, a truncated relation file as a DELTA of no block; a second incr refers
 * through the first to the full backup's copies (base); a diff refers to the full backup. */
static void test_create_incr_records(void)
{
    static const uint32_t changed16386[] = {5, 200, 384};
    struct cluster c;
    struct ws_error err = {0};
    struct ws_manifest full = {0}, inc = {0}, inc2 = {0}, diff = {0};
    char id1[WS_BACKUP_ID_LEN + 1], id2[WS_BACKUP_ID_LEN + 1], id3[WS_BACKUP_ID_LEN + 1],
        id4[WS_BACKUP_ID_LEN + 1], log[4096];
    const struct ws_bfile *f;
    size_t i;

    mem_begin();
    cluster_init(&c, "incr", 2);
    set_control_timeline(&c, 1);
    CHECK(store_wal(&c, 2) == 0 && store_wal(&c, 3) == 0);
    REQUIRE(create_type(&c, WS_BACKUP_FULL, id1, log, sizeof(log), &err) == 0);
    REQUIRE(load_manifest(&c, id1, &full) == 0);
    CHECK(full.version == 2 && full.type == WS_BACKUP_FULL && full.block_size == WS_PG_BLCKSZ);
    CHECK(full.maps >= 1 && full.reference[0] == '\0');
    for (i = 0; i < full.nfiles; i++) {
        CHECK(full.files[i].kind == WS_BFILE_WHOLE);
        if (strcmp(full.files[i].path, "backup_label") &&
            strcmp(full.files[i].path, "tablespace_map"))
            check_record(&c, id1, &full.files[i]);
    }

    patch(&c, "base/1/16386", 5 * WS_PG_BLCKSZ + 100, 1, 0xAB);
    patch(&c, "base/1/16386", 200 * WS_PG_BLCKSZ, WS_PG_BLCKSZ, 0xCD);
    patch(&c, "base/1/16386", 384 * WS_PG_BLCKSZ + 122, 1, 0xEF); /* the last, partial block */
    patch(&c, "base/1/16384_fsm", 0, 1, 0x11);                    /* 1 of 1 block: whole */
    patch(&c, "postgresql.conf", 7, 1, 0x22);                     /* same size, other bytes */
    truncate_live(&c, "pg_tblspc/16400/PG_15_202209061/1/16401", WS_PG_BLCKSZ);
    patch(&c, "base/1/16390", 0, 100, 0x33); /* new */
    REQUIRE(create_type(&c, WS_BACKUP_INCR, id2, log, sizeof(log), &err) == 0);
    CHECK(strstr(log, "no usable reference") == NULL);
    REQUIRE(load_manifest(&c, id2, &inc) == 0);
    CHECK(inc.type == WS_BACKUP_INCR && strcmp(inc.reference, id1) == 0);
    for (i = 0; i < inc.nfiles; i++)
        if (strcmp(inc.files[i].path, "backup_label") &&
            strcmp(inc.files[i].path, "tablespace_map"))
            check_record(&c, id2, &inc.files[i]);
    REQUIRE((f = manifest_file(&inc, "base/1/16386")) != NULL);
    check_delta(&c, id2, f, changed16386, 3);
    CHECK(strcmp(f->base, id1) == 0);
    REQUIRE((f = manifest_file(&inc, "pg_tblspc/16400/PG_15_202209061/1/16401")) != NULL);
    check_delta(&c, id2, f, NULL, 0);
    REQUIRE((f = manifest_file(&inc, "base/1/16384")) != NULL);
    CHECK(f->kind == WS_BFILE_REF && strcmp(f->base, id1) == 0 && f->has_map);
    REQUIRE((f = manifest_file(&inc, "PG_VERSION")) != NULL);
    CHECK(f->kind == WS_BFILE_REF && strcmp(f->base, id1) == 0 && !f->has_map);
    REQUIRE((f = manifest_file(&inc, "base/1/16385_init")) != NULL); /* empty */
    CHECK(f->kind == WS_BFILE_REF && f->has_map);
    CHECK(manifest_file(&inc, "base/1/16384_fsm")->kind == WS_BFILE_WHOLE);
    CHECK(manifest_file(&inc, "postgresql.conf")->kind == WS_BFILE_WHOLE);
    CHECK(manifest_file(&inc, "base/1/16390")->kind == WS_BFILE_WHOLE);
    CHECK(manifest_file(&inc, "backup_label")->kind == WS_BFILE_WHOLE);
    CHECK(inc.stored_bytes < full.stored_bytes / 4);

    /* nothing changed: every file a REF, its base the backup holding its last whole copy */
    REQUIRE(create_type(&c, WS_BACKUP_INCR, id3, log, sizeof(log), &err) == 0);
    REQUIRE(load_manifest(&c, id3, &inc2) == 0);
    CHECK(strcmp(inc2.reference, id2) == 0);
    CHECK(manifest_file(&inc2, "base/1/16386")->kind == WS_BFILE_REF);
    CHECK(strcmp(base_of(&inc2, "base/1/16386"), id1) == 0);     /* DELTA in id2 */
    CHECK(strcmp(base_of(&inc2, "base/1/16384"), id1) == 0);     /* REF in id2 */
    CHECK(strcmp(base_of(&inc2, "base/1/16384_fsm"), id2) == 0); /* WHOLE in id2 */
    CHECK(strcmp(base_of(&inc2, "base/1/16390"), id2) == 0);
    for (i = 0; i < inc2.nfiles; i++)
        if (strcmp(inc2.files[i].path, "backup_label") &&
            strcmp(inc2.files[i].path, "tablespace_map"))
            CHECK(inc2.files[i].kind == WS_BFILE_REF);

    /* a diff is relative to the newest full backup, not to the incrs after it */
    REQUIRE(create_type(&c, WS_BACKUP_DIFF, id4, log, sizeof(log), &err) == 0);
    REQUIRE(load_manifest(&c, id4, &diff) == 0);
    CHECK(diff.type == WS_BACKUP_DIFF && strcmp(diff.reference, id1) == 0);
    check_delta(&c, id4, manifest_file(&diff, "base/1/16386"), changed16386, 3);
    CHECK(strcmp(base_of(&diff, "base/1/16384_fsm"), "") == 0);

    ws_manifest_free(&full);
    ws_manifest_free(&inc);
    ws_manifest_free(&inc2);
    ws_manifest_free(&diff);
    cluster_free(&c);
    mem_end();
}

/* Replaces the manifest of backup id: by its version-1 form (no maps, block_size, type, map
 * lines) when v1, else with its pg_version line replaced by `pg_version`. */
static void rewrite_manifest(const struct cluster *c, const char *id, int v1,
                             const char *pg_version)
{
    struct ws_error err = {0};
    struct ws_repo repo = {0};
    struct ws_object_params p = {0};
    char key[256], *text = NULL, *out, *line, *next, *o;
    size_t len = 0;

    REQUIRE(ws_backup_repo_open(&env, &c->cfg, &repo, &err) == 0);
    ws_backup_manifest_key(&repo, id, key, sizeof(key));
    REQUIRE(ws_repo_get_small(&repo, key, &c->kr, 1u << 20, &text, &len, &err) == 0);
    REQUIRE((out = malloc(len + 64)) != NULL);
    o = out;
    for (line = text; *line; line = next) {
        size_t n = strcspn(line, "\n") + 1;
        next = line + n;
        if (v1 && (strncmp(line, "maps ", 5) == 0 || strncmp(line, "block_size ", 11) == 0 ||
                   strncmp(line, "type ", 5) == 0 || strncmp(line, "map ", 4) == 0))
            continue;
        if (!v1 && strncmp(line, "pg_version ", 11) == 0) {
            o += snprintf(o, 64, "%s\n", pg_version);
            continue;
        }
        memcpy(o, line, n);
        o += n;
    }
    if (v1)
        memcpy(out, "walsafe-manifest 1", 18);
    REQUIRE(repo.st->ops->remove(repo.st, key, &err) == 0);
    p.key = ws_keyring_write_key(&c->kr);
    CHECK(ws_repo_put_small(&repo, key, out, (size_t)(o - out), &p, &err) == 0);
    free(text);
    free(out);
    ws_repo_close(&repo);
}

/* Without a usable reference an incr (or diff) is a full backup, and one line says why: none in
 * the repository, a version-1 reference, another PostgreSQL major version, a timeline that is
 * not in the server's history. */
static void test_create_incr_fallback(void)
{
    struct cluster c;
    struct ws_error err = {0};
    struct ws_manifest m = {0};
    char id[WS_BACKUP_ID_LEN + 1], id0[WS_BACKUP_ID_LEN + 1], log[4096];

    mem_begin();
    cluster_init(&c, "fallback", 1);
    set_control_timeline(&c, 1);
    CHECK(store_wal(&c, 2) == 0 && store_wal(&c, 3) == 0);

    REQUIRE(create_type(&c, WS_BACKUP_INCR, id0, log, sizeof(log), &err) == 0);
    CHECK(strstr(log, "no usable reference for an incremental backup (no complete backup in the "
                      "repository): taking a full backup") != NULL);
    REQUIRE(load_manifest(&c, id0, &m) == 0);
    CHECK(m.type == WS_BACKUP_FULL && m.maps >= 1);
    ws_manifest_free(&m);

    /* the diff's own rule: a full backup is needed */
    rewrite_manifest(&c, id0, 1, NULL);
    REQUIRE(create_type(&c, WS_BACKUP_DIFF, id, log, sizeof(log), &err) == 0);
    CHECK(strstr(log, "no usable reference for a differential backup (backup ") != NULL);
    CHECK(strstr(log, "has no block digests (manifest version 1)): taking a full backup") != NULL);
    REQUIRE(load_manifest(&c, id, &m) == 0);
    CHECK(m.type == WS_BACKUP_FULL);
    ws_manifest_free(&m);

    /* the newest (version 2, full) on another timeline without a history file */
    set_control_timeline(&c, 2);
    REQUIRE(create_type(&c, WS_BACKUP_INCR, id0, log, sizeof(log), &err) == 0);
    CHECK(strstr(log, "is on timeline 1, which is not in the history of the server's timeline 2") !=
          NULL);
    REQUIRE(load_manifest(&c, id0, &m) == 0);
    CHECK(m.type == WS_BACKUP_FULL);
    ws_manifest_free(&m);
    set_control_timeline(&c, 1);

    /* another major version (the repository's identity forbids it for new backups; an
     * upgraded repository could hold one) */
    rewrite_manifest(&c, id0, 0, "pg_version 140007");
    REQUIRE(create_type(&c, WS_BACKUP_INCR, id, log, sizeof(log), &err) == 0);
    CHECK(strstr(log, "is of PostgreSQL 14, the server is 15): taking a full backup") != NULL);
    REQUIRE(load_manifest(&c, id, &m) == 0);
    CHECK(m.type == WS_BACKUP_FULL && m.pg_version == 150004);
    ws_manifest_free(&m);
    cluster_free(&c);
    mem_end();
}

/* Backup id's manifest removed: it is running (no manifest) in the catalog, and every backup
 * whose chain holds it is incomplete. */
static void remove_manifest(const struct cluster *c, const char *id)
{
    struct ws_error err = {0};
    char key[256];

    snprintf(key, sizeof(key), "%s/backup/%s/manifest", c->cluster, id);
    REQUIRE(mem->ops->remove(mem, key, &err) == 0);
}

/* An incr when the newest backup is not complete because its chain lost a link: with no older
 * complete backup it is a full backup, and the line says why the newest one is not usable (the
 * catalog's reason, naming the missing link); with one, the incr is relative to it, and the line
 * says why the newer one was passed over. */
static void test_create_incr_broken_chain(void)
{
    struct cluster c;
    struct ws_error err = {0};
    struct ws_manifest m = {0};
    char id1[WS_BACKUP_ID_LEN + 1], id2[WS_BACKUP_ID_LEN + 1], id3[WS_BACKUP_ID_LEN + 1];
    char id4[WS_BACKUP_ID_LEN + 1], id5[WS_BACKUP_ID_LEN + 1], id6[WS_BACKUP_ID_LEN + 1];
    char log[4096], want[256];
    int level, rc;

    mem_begin();
    cluster_init(&c, "chain", 1);
    set_control_timeline(&c, 1);
    CHECK(store_wal(&c, 2) == 0 && store_wal(&c, 3) == 0);
    REQUIRE(create_type(&c, WS_BACKUP_FULL, id1, log, sizeof(log), &err) == 0);
    patch(&c, "base/1/16386", 0, 1, 0x55);
    REQUIRE(create_type(&c, WS_BACKUP_INCR, id2, log, sizeof(log), &err) == 0);
    remove_manifest(&c, id1);
    REQUIRE(create_type(&c, WS_BACKUP_INCR, id3, log, sizeof(log), &err) == 0);
    snprintf(want, sizeof(want),
             "no usable reference for an incremental backup (the newest backup %s is incomplete: "
             "its reference %s is running (no manifest)): taking a full backup",
             id2, id1);
    CHECK(strstr(log, want) != NULL);
    REQUIRE(load_manifest(&c, id3, &m) == 0);
    CHECK(m.type == WS_BACKUP_FULL && m.reference[0] == '\0');
    ws_manifest_free(&m);

    /* id3 (full) is complete; id5's chain loses id4: the next incr is relative to id3 */
    patch(&c, "base/1/16386", 0, 1, 0x56);
    REQUIRE(create_type(&c, WS_BACKUP_INCR, id4, log, sizeof(log), &err) == 0);
    patch(&c, "base/1/16386", 0, 1, 0x57);
    REQUIRE(create_type(&c, WS_BACKUP_INCR, id5, log, sizeof(log), &err) == 0);
    remove_manifest(&c, id4);
    patch(&c, "base/1/16386", 0, 1, 0x58);
    level = ws_log_get_level();
    ws_log_set_level(WS_LOG_INFO); /* the line naming the reference */
    rc = create_type(&c, WS_BACKUP_INCR, id6, log, sizeof(log), &err);
    ws_log_set_level(level);
    REQUIRE(rc == 0);
    snprintf(want, sizeof(want),
             "backup %s: incr, relative to backup %s (the newest backup %s is incomplete: its "
             "reference %s is running (no manifest))",
             id6, id3, id5, id4);
    CHECK(strstr(log, want) != NULL);
    CHECK(strstr(log, "taking a full backup") == NULL);
    REQUIRE(load_manifest(&c, id6, &m) == 0);
    CHECK(m.type == WS_BACKUP_INCR && strcmp(m.reference, id3) == 0);
    ws_manifest_free(&m);
    cluster_free(&c);
    mem_end();
}

/* A storage failure at each put of an incr (its claim, its bundle, its map object, backup_label's,
 * tablespace_map's, the manifest: one worker) fails it and leaves no object of it: no map object
 * either; the full backup it refers to keeps all of its own. */
static void test_create_incr_failure_leaves_no_map(void)
{
    for (int nth = 1; nth <= 6; nth++) {
        struct cluster c;
        struct ws_error err = {0};
        char tag[32], id1[WS_BACKUP_ID_LEN + 1], id[WS_BACKUP_ID_LEN + 1], log[4096];
        char prefix[128];
        int before;

        mem_begin();
        snprintf(tag, sizeof(tag), "incrfail%d", nth);
        cluster_init(&c, tag, 1);
        set_control_timeline(&c, 1);
        CHECK(store_wal(&c, 2) == 0 && store_wal(&c, 3) == 0);
        REQUIRE(create_type(&c, WS_BACKUP_FULL, id1, log, sizeof(log), &err) == 0);
        snprintf(prefix, sizeof(prefix), "%s/backup/", c.cluster);
        before = count_objects(prefix);
        patch(&c, "base/1/16386", 0, 1, 0x44);
        ws_storage_mem_fault(mem, WS_MEM_PUT_FINISH, nth, WS_ERR_STORAGE);
        CHECK(create_type(&c, WS_BACKUP_INCR, id, log, sizeof(log), &err) == WS_ERR_STORAGE);
        CHECK(strstr(err.msg, "injected") != NULL);
        CHECK(count_objects(prefix) == before);
        snprintf(prefix, sizeof(prefix), "%s/backup/%s/map/", c.cluster, id1);
        CHECK(count_objects(prefix) >= 1);
        cluster_free(&c);
        mem_end();
    }
}

/* What wal-prune does to backup prune_ref.id while an incr is copied: its tombstone (first step)
 * or, tombstone and manifest gone, its manifest. */
static struct {
    const struct cluster *c;
    char id[WS_BACKUP_ID_LEN + 1];
    int manifest;
} prune_ref;

static void prune_reference(void)
{
    struct ws_error err = {0};
    struct ws_sink *put = NULL;
    char key[256];

    if (prune_ref.manifest) {
        snprintf(key, sizeof(key), "%s/backup/%s/manifest", prune_ref.c->cluster, prune_ref.id);
        CHECK(mem->ops->remove(mem, key, &err) == 0);
        return;
    }
    snprintf(key, sizeof(key), "%s/backup/%s.deleting", prune_ref.c->cluster, prune_ref.id);
    REQUIRE(mem->ops->open_put(mem, key, 0, &put, &err) == 0);
    CHECK(ws_sink_write(put, "x", 1, &err) == 0 && ws_sink_finish(put, &err) == 0);
    ws_sink_free(put);
}

/* An incr whose reference wal-prune deletes while it is copied (prune cannot know the reference
 * of a backup without a manifest) fails naming both, prints no id and is not complete: it exited
 * 0 and printed its id, for a backup the catalog calls incomplete and restore refuses. */
static void test_create_incr_reference_pruned(void)
{
    for (int manifest = 0; manifest <= 1; manifest++) {
        struct cluster c;
        struct ws_error err = {0};
        struct ws_catalog cat = {0};
        const struct ws_catalog_backup *b = NULL;
        struct ws_repo repo = {0};
        char tag[32], id[WS_BACKUP_ID_LEN + 1], log[4096], want[128];
        size_t i;

        mem_begin();
        snprintf(tag, sizeof(tag), "refpruned%d", manifest);
        cluster_init(&c, tag, 1);
        set_control_timeline(&c, 1);
        CHECK(store_wal(&c, 2) == 0 && store_wal(&c, 3) == 0);
        REQUIRE(create_type(&c, WS_BACKUP_FULL, prune_ref.id, log, sizeof(log), &err) == 0);
        patch(&c, "base/1/16386", 0, 1, 0x66);
        prune_ref.c = &c;
        prune_ref.manifest = manifest;
        fake.on_stop = prune_reference;
        CHECK(create_type(&c, WS_BACKUP_INCR, id, log, sizeof(log), &err) == WS_ERR_INVALID);
        snprintf(want, sizeof(want), "its reference %s was deleted while it was being taken",
                 prune_ref.id);
        CHECK(strstr(err.msg, want) != NULL);
        CHECK(id[0] == '\0');
        REQUIRE(ws_backup_repo_open(&env, &c.cfg, &repo, &err) == 0);
        REQUIRE(ws_catalog_load(&repo, &c.kr, &cat, &err) == 0);
        for (i = 0; i < cat.nbackups; i++)
            if (strcmp(cat.backups[i].id, prune_ref.id) != 0)
                b = &cat.backups[i];
        REQUIRE(b != NULL);
        CHECK(b->has_manifest && b->status == WS_BACKUP_INCOMPLETE);
        ws_catalog_free(&cat);
        ws_repo_close(&repo);
        cluster_free(&c);
        mem_end();
    }
}

/* An incr taken after a minor upgrade of the server (15.4 to 15.5: the same on-disk format) is
 * relative to the backup taken before it, and restores: restore refused it, its chain "of another
 * PostgreSQL version", while the catalog listed it complete. */
static void test_create_incr_after_minor_upgrade(void)
{
    struct cluster c;
    struct ws_error err = {0};
    struct ws_manifest m = {0};
    char id1[WS_BACKUP_ID_LEN + 1], id2[WS_BACKUP_ID_LEN + 1], log[4096];
    int rc;

    mem_begin();
    cluster_init(&c, "minor", 2);
    set_control_timeline(&c, 1);
    CHECK(store_wal(&c, 2) == 0 && store_wal(&c, 3) == 0);
    REQUIRE(create_type(&c, WS_BACKUP_FULL, id1, log, sizeof(log), &err) == 0);
    fake.version = 150005;
    REQUIRE(create_type(&c, WS_BACKUP_INCR, id2, log, sizeof(log), &err) == 0);
    REQUIRE(load_manifest(&c, id2, &m) == 0);
    CHECK(m.type == WS_BACKUP_INCR && strcmp(m.reference, id1) == 0 && m.pg_version == 150005);
    ws_manifest_free(&m);
    if ((rc = restore(&c, 2, 0, &err)) != 0)
        fprintf(stderr, "    restore: %s\n", err.msg);
    CHECK(rc == 0);
    for (size_t i = 0; rc == 0 && i < NFILES; i++) {
        char p[PATH_MAX + 64], want[PATH_MAX];
        if (!files[i].kept)
            continue;
        snprintf(p, sizeof(p), "%s/%s", files[i].ts ? c.ts_dst : c.target, files[i].path);
        src_path(&c, i, want, sizeof(want));
        if (!unit_same_file(p, want))
            unit_fail(__FILE__, __LINE__, files[i].path);
    }
    cluster_free(&c);
    mem_end();
}

/* ---- two creates at once --------------------------------------------------------------------- */

static struct {
    struct cluster *c;
    int rc, same_second;
} race;

/* fake.on_start of the first create (label "walsafe <its id>"): a whole second create, in the
 * same second. */
static void second_create(const char *label)
{
    struct ws_backup_opts o = {0};
    struct ws_error err = {0};
    char now[WS_BACKUP_ID_LEN + 1];

    ws_backup_id_from_time(time(NULL), now);
    race.same_second = strcmp(label + strlen("walsafe "), now) == 0;
    race.rc = ws_backup_create(&race.c->cfg, &env, &o, &err);
    if (race.rc)
        fprintf(stderr, "    second create: %s\n", err.msg);
}

/* Two creates started in the same second each get an id of their own: the second one, run while
 * the first is in backup mode, found no object of the first yet and took the same id; it
 * completed, then the first failed on its bundle (the name taken) and its clean-up removed the
 * second one's bundle and map object, leaving a manifest listed complete without its data. */
static void test_create_same_second(void)
{
    int attempt;

    for (attempt = 0; attempt < 3; attempt++) {
        struct cluster c;
        struct ws_backup_opts o = {0};
        struct ws_error err = {0};
        struct ws_catalog cat = {0};
        struct ws_repo repo = {0};
        char tag[32], out[512];
        size_t i, complete = 0;
        int rc;

        mem_begin();
        snprintf(tag, sizeof(tag), "race%d", attempt);
        cluster_init(&c, tag, 1);
        CHECK(store_wal(&c, 2) == 0 && store_wal(&c, 3) == 0);
        race.c = &c;
        fake.on_start = second_create; /* o.label NULL: the label names the id */
        capture_begin();
        rc = ws_backup_create(&c.cfg, &env, &o, &err);
        capture_end(out, sizeof(out));
        if (!race.same_second) { /* a second boundary passed: try again */
            cluster_free(&c);
            mem_end();
            continue;
        }
        if (rc)
            fprintf(stderr, "    first create: %s\n", err.msg);
        CHECK(rc == 0 && race.rc == 0);
        REQUIRE(ws_backup_repo_open(&env, &c.cfg, &repo, &err) == 0);
        REQUIRE(ws_catalog_load(&repo, &c.kr, &cat, &err) == 0);
        for (i = 0; i < cat.nbackups; i++) {
            if (cat.backups[i].status != WS_BACKUP_COMPLETE)
                continue;
            complete++;
            capture_begin();
            CHECK(ws_backup_verify(&c.cfg, &env, cat.backups[i].id, 0, &err) == 0);
            capture_end(out, sizeof(out));
        }
        CHECK(complete == 2);
        ws_catalog_free(&cat);
        ws_repo_close(&repo);
        cluster_free(&c);
        mem_end();
        break;
    }
    CHECK(attempt < 3);
}

/* fake.on_start of an incr: a whole full backup, taken (and complete) before the incr chooses its
 * reference; with the incr's id claimed, it takes a later id. */
static void full_meanwhile(const char *label)
{
    struct ws_backup_opts o = {0};
    struct ws_error err = {0};
    int type = race.c->cfg.backup_type;

    (void)label;
    race.c->cfg.backup_type = WS_BACKUP_FULL;
    race.rc = ws_backup_create(&race.c->cfg, &env, &o, &err);
    race.c->cfg.backup_type = type;
    if (race.rc)
        fprintf(stderr, "    full create: %s\n", err.msg);
}

/* A backup that began after an incr and completed before the incr chose its reference is not its
 * reference (a reference is older): the incr named it, and the catalog called the incr invalid
 * ("names no older backup") while create exited 0. */
static void test_create_incr_newer_backup_meanwhile(void)
{
    struct cluster c;
    struct ws_error err = {0};
    struct ws_catalog cat = {0};
    struct ws_repo repo = {0};
    struct ws_manifest m = {0};
    char id0[WS_BACKUP_ID_LEN + 1], full[WS_BACKUP_ID_LEN + 1], log[4096];
    const struct ws_catalog_backup *b = NULL;
    size_t i;

    mem_begin();
    cluster_init(&c, "meanwhile", 1);
    set_control_timeline(&c, 1);
    CHECK(store_wal(&c, 2) == 0 && store_wal(&c, 3) == 0);
    REQUIRE(create_type(&c, WS_BACKUP_FULL, id0, log, sizeof(log), &err) == 0);
    race.c = &c;
    fake.on_start = full_meanwhile;
    /* the full backup prints its id first */
    REQUIRE(create_type(&c, WS_BACKUP_INCR, full, log, sizeof(log), &err) == 0);
    CHECK(race.rc == 0);
    REQUIRE(ws_backup_repo_open(&env, &c.cfg, &repo, &err) == 0);
    REQUIRE(ws_catalog_load(&repo, &c.kr, &cat, &err) == 0);
    CHECK(cat.nbackups == 3);
    for (i = 0; i < cat.nbackups; i++)
        if (strcmp(cat.backups[i].id, id0) != 0 && strcmp(cat.backups[i].id, full) != 0)
            b = &cat.backups[i];
    REQUIRE(b != NULL);
    CHECK(strcmp(b->id, full) < 0); /* the incr began first */
    CHECK(b->status == WS_BACKUP_COMPLETE);
    REQUIRE(load_manifest(&c, b->id, &m) == 0);
    CHECK(m.type == WS_BACKUP_INCR && strcmp(m.reference, id0) == 0);
    ws_manifest_free(&m);
    ws_catalog_free(&cat);
    ws_repo_close(&repo);
    cluster_free(&c);
    mem_end();
}

/* ---- backup_method stream (issue 18): BASE_BACKUP played by the fake replication session -- */

struct tbuf {
    uint8_t *p;
    size_t len, cap;
};

static void tb_put(struct tbuf *b, const void *d, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        if (!(b->p = realloc(b->p, cap)))
            abort();
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void tb_printf(struct tbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tb_printf(struct tbuf *b, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    tb_put(b, line, n > 0 ? (size_t)n : 0);
}

/* A tar header's octal field of len bytes (len - 1 digits and a NUL). */
static void octal(uint8_t *f, size_t len, uint64_t v)
{
    f[len - 1] = '\0';
    for (size_t i = len - 1; i-- > 0; v >>= 3)
        f[i] = (uint8_t)('0' + (v & 7));
}

/* A ustar member as PostgreSQL's tar code writes one (type '0', '5' or '2'). */
static void tar_member(struct tbuf *b, const char *path, char type, mode_t mode, int64_t mtime,
                       const void *data, size_t size, const char *link)
{
    static const uint8_t zeros[512];
    uint8_t h[512] = {0};
    unsigned sum = 0;

    snprintf((char *)h, 100, "%s", path);
    octal(h + 100, 8, mode & 07777);
    octal(h + 108, 8, 0);
    octal(h + 116, 8, 0);
    octal(h + 124, 12, size);
    octal(h + 136, 12, (uint64_t)mtime);
    memset(h + 148, ' ', 8);
    h[156] = (uint8_t)type;
    if (link)
        snprintf((char *)h + 157, 100, "%s", link);
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    for (size_t i = 0; i < sizeof(h); i++)
        sum += h[i];
    octal(h + 148, 7, sum);
    tb_put(b, h, sizeof(h));
    tb_put(b, data, size);
    tb_put(b, zeros, (512 - size % 512) % 512);
}

/* The server's manifest being built: its file lines, one of them (bad_crc) with a wrong CRC-32C
 * (big_endian: each CRC's bytes as a big-endian server writes them),
 * one (left_out) missing. */
struct smf {
    struct tbuf text;
    int files;
    const char *bad_crc, *left_out;
    int big_endian;
};

static void smf_file(struct smf *m, const char *path, const void *data, size_t size)
{
    uint32_t crc;
    char hex[9];

    if (m->left_out && strcmp(path, m->left_out) == 0)
        return;
    crc = ws_crc32c(0, data, size);
    if (m->bad_crc && strcmp(path, m->bad_crc) == 0)
        crc ^= 0x100;
    ws_crc32c_manifest_hex(m->big_endian ? __builtin_bswap32(crc) : crc, hex);
    tb_printf(
        &m->text,
        "%s{ \"Path\": \"%s\", \"Size\": %zu, \"Last-Modified\": \"2026-12-07 10:00:00 GMT\", "
        "\"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"%s\" }",
        m->files++ ? ",\n" : "", path, size, hex);
}

/* The members of directory root/rel into tar (and their files into the manifest as mpfx/...), as
 * the server sends them with TABLESPACE_MAP: links not followed, pg_tblspc's left out, an unlogged
 * relation's main fork left out. */
static void tar_tree(struct tbuf *tar, struct smf *m, const char *root, const char *rel,
                     const char *mpfx)
{
    char dir[PATH_MAX], abs[PATH_MAX + 256], child[PATH_MAX], target[PATH_MAX];
    struct dirent *de;
    struct stat st;
    DIR *d;

    snprintf(dir, sizeof(dir), "%s%s%s", root, *rel ? "/" : "", rel);
    REQUIRE((d = opendir(dir)) != NULL);
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        snprintf(child, sizeof(child), "%s%s%s", rel, *rel ? "/" : "", de->d_name);
        snprintf(abs, sizeof(abs), "%s/%s", root, child);
        if (strcmp(child, "base/1/16385") == 0 || lstat(abs, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            tar_member(tar, child, '5', st.st_mode, st.st_mtime, NULL, 0, NULL);
            tar_tree(tar, m, root, child, mpfx);
        } else if (S_ISLNK(st.st_mode) && strcmp(rel, "pg_tblspc") != 0) {
            ssize_t n = readlink(abs, target, sizeof(target) - 1);
            target[n > 0 ? n : 0] = '\0';
            tar_member(tar, child, '2', 0777, st.st_mtime, NULL, 0, target);
        } else if (S_ISREG(st.st_mode)) {
            uint8_t *data = NULL;
            size_t len = 0;
            REQUIRE(unit_read(abs, &data, &len) == 0);
            tar_member(tar, child, '0', st.st_mode, st.st_mtime, data, len, NULL);
            snprintf(target, sizeof(target), "%s%s", mpfx, child);
            smf_file(m, target, data, len);
            free(data);
        }
    }
    closedir(d);
}

static void script_add(enum ws_repl_msg_type type, const char *name, const char *location,
                       const void *data, size_t len)
{
    struct fmsg *f;

    if (frepl.n == frepl.cap) {
        frepl.cap = frepl.cap ? frepl.cap * 2 : 256;
        if (!(frepl.msgs = realloc(frepl.msgs, frepl.cap * sizeof(*frepl.msgs))))
            abort();
    }
    f = memset(&frepl.msgs[frepl.n++], 0, sizeof(*f));
    f->type = type;
    f->name = name ? strdup(name) : NULL;
    f->location = location ? strdup(location) : NULL;
    if (len && (f->data = malloc(len)))
        memcpy(f->data, data, len);
    f->len = len;
}

static void script_free(void)
{
    for (size_t i = 0; i < frepl.n; i++) {
        free(frepl.msgs[i].name);
        free(frepl.msgs[i].location);
        free(frepl.msgs[i].data);
    }
    free(frepl.msgs);
    memset(&frepl, 0, sizeof(frepl));
}

/* An archive's bytes as DATA messages of 7777 bytes (never at a tar block boundary), each
 * followed by a PROGRESS message. */
static void script_data(const struct tbuf *b, uint64_t *sent)
{
    for (size_t at = 0; at < b->len; at += 7777) {
        size_t n = b->len - at < 7777 ? b->len - at : 7777;
        script_add(WS_REPL_DATA, NULL, NULL, b->p + at, n);
        *sent += n;
        script_add(WS_REPL_PROGRESS, NULL, NULL, NULL, 0);
        frepl.msgs[frepl.n - 1].progress = *sent;
    }
}

struct script_opts {
    const char *location; /* of the tablespace's archive; NULL: the announced one */
    const char *bad_crc, *left_out;
    int no_ts_archive;     /* the tablespace announced, its archive not sent */
    const char *announced; /* the tablespace's location in the start message; NULL: its own */
    const char *dup;       /* a member the main archive holds a second time, other bytes */
    int big_endian;        /* the manifest's CRC-32C as a big-endian server writes them */
};

/* The session's script: the tablespace's archive first (as PostgreSQL 15 sends it), then the
 * main directory's with backup_label and tablespace_map, the manifest, END. */
static void script_build(const struct cluster *c, const struct script_opts *o)
{
    struct tbuf ts = {0}, main = {0};
    struct smf m = {{0}, 0, o->bad_crc, o->left_out, o->big_endian};
    char spcmap[1024], hex[65];
    uint8_t sha[32];
    uint64_t sent = 0;

    script_free();
    snprintf(frepl.location, sizeof(frepl.location), "%s", o->announced ? o->announced : c->ts_src);
    frepl.start_lsn = START_LSN;
    frepl.end_lsn = STOP_LSN;
    snprintf(fake.labelfile, sizeof(fake.labelfile),
             "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n"
             "CHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\n"
             "START TIME: 2026-12-07 10:00:00 UTC\nLABEL: unit\nSTART TIMELINE: 1\n");
    snprintf(spcmap, sizeof(spcmap), "%d %s\n", TS_OID, c->ts_src);
    tb_printf(&m.text, "{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n");
    tar_member(&main, "backup_label", '0', 0600, time(NULL), fake.labelfile, strlen(fake.labelfile),
               NULL);
    smf_file(&m, "backup_label", fake.labelfile, strlen(fake.labelfile));
    tar_member(&main, "tablespace_map", '0', 0600, time(NULL), spcmap, strlen(spcmap), NULL);
    smf_file(&m, "tablespace_map", spcmap, strlen(spcmap));
    tar_tree(&ts, &m, c->ts_src, "", "pg_tblspc/16400/");
    tar_tree(&main, &m, c->pgdata, "", "");
    if (o->dup)
        tar_member(&main, o->dup, '0', 0600, time(NULL), "other", 5, NULL);
    tb_printf(&m.text, "\n],\n\"WAL-Ranges\": [\n{ \"Timeline\": 1, \"Start-LSN\": \"0/2000028\", "
                       "\"End-LSN\": \"0/3000100\" }\n],\n");
    EVP_Digest(m.text.p, m.text.len, sha, NULL, EVP_sha256(), NULL);
    ws_hex(sha, sizeof(sha), hex);
    tb_printf(&m.text, "\"Manifest-Checksum\": \"%s\"}\n", hex);

    if (!o->no_ts_archive) {
        script_add(WS_REPL_ARCHIVE, "16400.tar", o->location ? o->location : frepl.location, NULL,
                   0);
        script_data(&ts, &sent);
    }
    script_add(WS_REPL_ARCHIVE, "base.tar", "", NULL, 0);
    script_data(&main, &sent);
    script_add(WS_REPL_MANIFEST, NULL, NULL, NULL, 0);
    script_data(&m.text, &sent);
    free(ts.p);
    free(main.p);
    free(m.text.p);
}

/* The cluster's configuration with pgdata unset: backup_method stream by the rule. */
static void use_stream(struct cluster *c)
{
    free(c->cfg.pgdata);
    c->cfg.pgdata = NULL;
}

/* A stream backup: the same records as a local one (check_manifest, every file's size, SHA-256
 * and block digests), backup_label and tablespace_map from the stream, the server's manifest
 * stored; no local session; restore and verify as for a local backup. */
static void test_stream_roundtrip(void)
{
    struct script_opts so = {0};
    struct cluster c;
    struct ws_error err = {0};
    struct ws_catalog cat = {0};
    const struct ws_catalog_backup *b = NULL;
    struct ws_manifest whole = {0};
    struct ws_repo repo = {0};
    char id[WS_BACKUP_ID_LEN + 1], key[256], out[4096];

    mem_begin();
    cluster_init(&c, "stream", 2);
    use_stream(&c);
    script_build(&c, &so);
    CHECK(store_wal(&c, 2) == 0 && store_wal(&c, 3) == 0);
    atomic_store(&wal_stats, 0);
    atomic_store(&wal_stats_in_session, 0);
    if (create(&c, id, &err) != 0)
        fprintf(stderr, "    create: %s\n", err.msg);
    CHECK(fake.connects == 0 && frepl.connects == 1 && frepl.closes == 1);
    /* the session closed before the wait for the WAL: its max_wal_senders slot is free */
    CHECK(atomic_load(&wal_stats) > 0 && atomic_load(&wal_stats_in_session) == 0);
    CHECK(frepl.base_backups == 1 && strcmp(frepl.label, "unit") == 0);
    CHECK(frepl.at == frepl.n); /* read to the end */
    REQUIRE(load_backup(&c, id, &cat, &b) == 0);
    CHECK(b->status == WS_BACKUP_COMPLETE);
    REQUIRE(ws_backup_repo_open(&env, &c.cfg, &repo, &err) == 0);
    REQUIRE(ws_catalog_manifest(&repo, &c.kr, b, &whole, &err) == 0);
    snprintf(fake.backup_label, sizeof(fake.backup_label), "%s", frepl.label);
    check_manifest(&c, &whole);
    for (size_t i = 0; i < whole.nfiles; i++)
        if (strcmp(whole.files[i].path, "backup_label") &&
            strcmp(whole.files[i].path, "tablespace_map"))
            check_record(&c, id, &whole.files[i]);
    ws_backup_object_key(&repo, id, WS_BACKUP_SERVER_MANIFEST, key, sizeof(key));
    CHECK(count_objects(key) == 1);
    ws_repo_close(&repo);
    ws_manifest_free(&whole);
    ws_catalog_free(&cat);

    if (restore(&c, 2, 0, &err) != 0)
        fprintf(stderr, "    restore: %s\n", err.msg);
    check_restored(&c);
    capture_begin();
    CHECK(ws_backup_verify(&c.cfg, &env, NULL, 0, &err) == 0);
    capture_end(out, sizeof(out));
    script_free();
    cluster_free(&c);
    mem_end();
}

/* A server of the other byte order writes each CRC-32C's bytes the other way round: accepted. */
static void test_stream_big_endian_server(void)
{
    struct script_opts so = {0};
    struct cluster c;
    struct ws_error err = {0};
    char id[WS_BACKUP_ID_LEN + 1];

    mem_begin();
    cluster_init(&c, "stream-be", 1);
    use_stream(&c);
    so.big_endian = 1;
    script_build(&c, &so);
    CHECK(store_wal(&c, 2) == 0 && store_wal(&c, 3) == 0);
    if (create(&c, id, &err) != 0)
        unit_fail(__FILE__, __LINE__, err.msg);
    script_free();
    cluster_free(&c);
    mem_end();
}

/* Where a case cuts the connection: cut_off messages after the first message, the main
 * directory's ARCHIVE, the MANIFEST or the END (frepl.fail_at; CUT_NONE: never). */
enum cut_from { CUT_NONE, CUT_START, CUT_BASE, CUT_MANIFEST, CUT_END };

static size_t cut_position(enum cut_from from, int off)
{
    size_t at = from == CUT_END ? frepl.n : 0;

    for (size_t i = 0; i < frepl.n && (from == CUT_BASE || from == CUT_MANIFEST); i++)
        if (frepl.msgs[i].type == (from == CUT_BASE ? WS_REPL_ARCHIVE : WS_REPL_MANIFEST))
            at = i;
    return from == CUT_NONE ? 0 : (size_t)((long)at + off);
}

/* A stream that fails: a file whose CRC-32C differs from the server's manifest, a file the
 * manifest lacks, a tablespace archive at a location the server did not announce, an announced
 * tablespace without its archive, checksum failures the server found and we did not, a
 * tablespace restore would refuse, an end before the start, the connection lost at each phase:
 * one line naming what, no backup object left, the session closed. */
static void test_stream_failures(void)
{
    static const struct {
        struct script_opts o;
        enum cut_from cut_from; /* the connection lost there */
        int cut_off;
        int checksum_failure, code;
        const char *msg;
        uint64_t end_lsn; /* END's position; 0: STOP_LSN */
    } cases[] = {
        {{NULL, "base/1/16384", NULL, 0, NULL, NULL, 0},
         CUT_NONE,
         0,
         0,
         WS_ERR_CORRUPT,
         "file \"base/1/16384\": the server's",
         0},
        {{NULL, NULL, "postgresql.conf", 0, NULL, NULL, 0},
         CUT_NONE,
         0,
         0,
         WS_ERR_CORRUPT,
         "file \"postgresql.conf\" of the backup is not in the server's backup_manifest",
         0},
        {{"/elsewhere", NULL, NULL, 0, NULL, NULL, 0},
         CUT_NONE,
         0,
         0,
         WS_ERR_CORRUPT,
         "which it did not announce",
         0},
        {{NULL, NULL, NULL, 1, NULL, NULL, 0},
         CUT_NONE,
         0,
         0,
         WS_ERR_CORRUPT,
         "but sent no archive of it",
         0},
        {{NULL, NULL, NULL, 0, NULL, NULL, 0},
         CUT_NONE,
         0,
         1,
         WS_ERR_CORRUPT,
         "page checksum failures",
         0},
        /* locations restore refuses: the backup must not become complete */
        {{NULL, NULL, NULL, 0, "/", NULL, 0},
         CUT_NONE,
         0,
         0,
         WS_ERR_CORRUPT,
         "not a user tablespace",
         0},
        {{NULL, NULL, NULL, 0, "/srv/ts/../ts", NULL, 0},
         CUT_NONE,
         0,
         0,
         WS_ERR_CORRUPT,
         "not a user tablespace",
         0},
        {{NULL, NULL, NULL, 0, "/srv/ts/", NULL, 0},
         CUT_NONE,
         0,
         0,
         WS_ERR_CORRUPT,
         "not a user tablespace",
         0},
        /* an end before the start: no WAL would be waited for */
        {{NULL, NULL, NULL, 0, NULL, NULL, 0},
         CUT_NONE,
         0,
         0,
         WS_ERR_CORRUPT,
         "before the position it started at",
         START_LSN - 1},
        /* the connection lost at each phase: the tablespace's archive, the main one's first
         * member and its last bytes, the manifest's first and last bytes, the END */
        {{NULL, NULL, NULL, 0, NULL, NULL, 0},
         CUT_START,
         1,
         0,
         WS_ERR_STORAGE,
         "the connection was lost",
         0},
        {{NULL, NULL, NULL, 0, NULL, NULL, 0},
         CUT_START,
         2,
         0,
         WS_ERR_STORAGE,
         "the connection was lost",
         0},
        {{NULL, NULL, NULL, 0, NULL, NULL, 0},
         CUT_START,
         300,
         0,
         WS_ERR_STORAGE,
         "the connection was lost",
         0},
        {{NULL, NULL, NULL, 0, NULL, NULL, 0},
         CUT_BASE,
         1,
         0,
         WS_ERR_STORAGE,
         "the connection was lost",
         0},
        {{NULL, NULL, NULL, 0, NULL, NULL, 0},
         CUT_MANIFEST,
         -1,
         0,
         WS_ERR_STORAGE,
         "the connection was lost",
         0},
        {{NULL, NULL, NULL, 0, NULL, NULL, 0},
         CUT_MANIFEST,
         1,
         0,
         WS_ERR_STORAGE,
         "the connection was lost",
         0},
        {{NULL, NULL, NULL, 0, NULL, NULL, 0},
         CUT_END,
         -1,
         0,
         WS_ERR_STORAGE,
         "the connection was lost",
         0},
        {{NULL, NULL, NULL, 0, NULL, NULL, 0},
         CUT_END,
         0,
         0,
         WS_ERR_STORAGE,
         "the connection was lost",
         0},
        /* a file twice (other bytes the second time), the server's manifest listing the first */
        {{NULL, NULL, NULL, 0, NULL, "postgresql.conf", 0},
         CUT_NONE,
         0,
         0,
         WS_ERR_CORRUPT,
         "postgresql.conf",
         0},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cluster c;
        struct ws_error err = {0};
        char id[WS_BACKUP_ID_LEN + 1], prefix[128], tag[32];

        mem_begin();
        snprintf(tag, sizeof(tag), "sfail%zu", i);
        cluster_init(&c, tag, 1);
        use_stream(&c);
        script_build(&c, &cases[i].o);
        frepl.fail_at = cut_position(cases[i].cut_from, cases[i].cut_off);
        frepl.checksum_failure = cases[i].checksum_failure;
        if (cases[i].end_lsn)
            frepl.end_lsn = cases[i].end_lsn;
        CHECK(store_wal(&c, 2) == 0 && store_wal(&c, 3) == 0);
        CHECK(create(&c, id, &err) == cases[i].code);
        if (!strstr(err.msg, cases[i].msg) || strchr(err.msg, '\n'))
            unit_fail(__FILE__, __LINE__, err.msg);
        CHECK(frepl.connects == 1 && frepl.closes == 1);
        snprintf(prefix, sizeof(prefix), "%s/backup/", c.cluster);
        CHECK(count_objects(prefix) == 0);
        script_free();
        cluster_free(&c);
        mem_end();
    }
}

/* An incr in stream mode over a full one taken locally or streamed: a changed relation file is a
 * DELTA of its changed blocks even when all changed (16384_fsm), an unchanged one a REF, a
 * non-relation file of the reference's size stored whole; verify and restore give the live
 * files. */
static void stream_incr(const char *tag, int full_streamed)
{
    static const uint32_t changed16386[] = {5, 200};
    static const uint32_t changed_fsm[] = {0};
    struct script_opts so = {0};
    struct cluster c;
    struct ws_error err = {0};
    struct ws_manifest inc = {0};
    const struct ws_bfile *f;
    char id1[WS_BACKUP_ID_LEN + 1], id2[WS_BACKUP_ID_LEN + 1], log[4096], p[PATH_MAX + 64],
        live[PATH_MAX];
    size_t i;

    mem_begin();
    cluster_init(&c, tag, 2);
    set_control_timeline(&c, 1);
    CHECK(store_wal(&c, 2) == 0 && store_wal(&c, 3) == 0);
    if (full_streamed) {
        use_stream(&c);
        script_build(&c, &so);
    }
    REQUIRE(create_type(&c, WS_BACKUP_FULL, id1, log, sizeof(log), &err) == 0);
    sleep(1); /* another id */
    patch(&c, "base/1/16386", 5 * WS_PG_BLCKSZ + 100, 1, 0xAB);
    patch(&c, "base/1/16386", 200 * WS_PG_BLCKSZ, WS_PG_BLCKSZ, 0xCD);
    patch(&c, "base/1/16384_fsm", 0, 1, 0x11);
    patch(&c, "postgresql.conf", 7, 1, 0x22);
    use_stream(&c);
    script_build(&c, &so);
    REQUIRE(create_type(&c, WS_BACKUP_INCR, id2, log, sizeof(log), &err) == 0);
    REQUIRE(load_manifest(&c, id2, &inc) == 0);
    CHECK(inc.type == WS_BACKUP_INCR && strcmp(inc.reference, id1) == 0);
    for (i = 0; i < inc.nfiles; i++)
        if (strcmp(inc.files[i].path, "backup_label") &&
            strcmp(inc.files[i].path, "tablespace_map"))
            check_record(&c, id2, &inc.files[i]);
    REQUIRE((f = manifest_file(&inc, "base/1/16386")) != NULL);
    check_delta(&c, id2, f, changed16386, 2);
    REQUIRE((f = manifest_file(&inc, "base/1/16384_fsm")) != NULL);
    check_delta(&c, id2, f, changed_fsm, 1);
    REQUIRE((f = manifest_file(&inc, "base/1/16384")) != NULL);
    CHECK(f->kind == WS_BFILE_REF && strcmp(f->base, id1) == 0 && f->has_map);
    REQUIRE((f = manifest_file(&inc, "pg_tblspc/16400/PG_15_202209061/1/16401")) != NULL);
    CHECK(f->kind == WS_BFILE_REF);
    CHECK(manifest_file(&inc, "PG_VERSION")->kind == WS_BFILE_WHOLE);
    CHECK(manifest_file(&inc, "postgresql.conf")->kind == WS_BFILE_WHOLE);
    ws_manifest_free(&inc);

    capture_begin();
    CHECK(ws_backup_verify(&c.cfg, &env, NULL, 1, &err) == 0);
    capture_end(log, sizeof(log));
    REQUIRE(restore(&c, 2, 0, &err) == 0);
    for (i = 0; i < NFILES; i++) {
        if (!files[i].kept)
            continue;
        src_path(&c, i, live, sizeof(live));
        snprintf(p, sizeof(p), "%s/%s", files[i].ts ? c.ts_dst : c.target, files[i].path);
        if (!unit_same_file(live, p))
            unit_fail(__FILE__, __LINE__, files[i].path);
    }
    script_free();
    cluster_free(&c);
    mem_end();
}

/* backup_method local without pgdata: the server's data_directory, as before the stream existed;
 * no replication session. */
static void test_local_without_pgdata(void)
{
    struct cluster c;
    struct ws_error err = {0};
    char id[WS_BACKUP_ID_LEN + 1];

    mem_begin();
    script_free(); /* no session played, none counted */
    cluster_init(&c, "localnopg", 1);
    use_stream(&c);
    c.cfg.backup_method = WS_BACKUP_METHOD_LOCAL;
    CHECK(store_wal(&c, 2) == 0 && store_wal(&c, 3) == 0);
    CHECK(create(&c, id, &err) == 0);
    CHECK(fake.connects == 1 && fake.starts == 1 && frepl.connects == 0);
    cluster_free(&c);
    mem_end();
}

static void test_stream_incr_over_local(void)
{
    stream_incr("sincr-local", 0);
}

static void test_stream_incr_over_stream(void)
{
    stream_incr("sincr-stream", 1);
}

const struct unit_test unit_tests[] = {
    {"pool_size", test_pool_size},
    {"pool_every_task_once", test_pool_every_task_once},
    {"pool_first_error_wins", test_pool_first_error_wins},
    {"pool_open_failure", test_pool_open_failure},
    {"roundtrip_one_worker", test_roundtrip_one_worker},
    {"check_skips", test_check_skips},
    {"roundtrip_three_workers", test_roundtrip_three_workers},
    {"check_privileges", test_check_privileges},
    {"check_archive_library", test_check_archive_library},
    {"create_foreign_data_dir", test_create_foreign_data_dir},
    {"create_storage_failure", test_create_storage_failure},
    {"create_manifest_stored_then_failed", test_create_manifest_stored_then_failed},
    {"create_worker_handle_fails", test_create_worker_handle_fails},
    {"create_waits_for_wal", test_create_waits_for_wal},
    {"create_incr_records", test_create_incr_records},
    {"create_incr_fallback", test_create_incr_fallback},
    {"create_incr_broken_chain", test_create_incr_broken_chain},
    {"create_incr_failure_leaves_no_map", test_create_incr_failure_leaves_no_map},
    {"create_same_second", test_create_same_second},
    {"create_incr_newer_backup_meanwhile", test_create_incr_newer_backup_meanwhile},
    {"create_incr_reference_pruned", test_create_incr_reference_pruned},
    {"create_incr_after_minor_upgrade", test_create_incr_after_minor_upgrade},
    {"stream_roundtrip", test_stream_roundtrip},
    {"stream_failures", test_stream_failures},
    {"stream_big_endian_server", test_stream_big_endian_server},
    {"local_without_pgdata", test_local_without_pgdata},
    {"stream_incr_over_local", test_stream_incr_over_local},
    {"stream_incr_over_stream", test_stream_incr_over_stream},
    {NULL, NULL},
};
