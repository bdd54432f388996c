/*
 * backup/create.c - `basebackup create`: a non-exclusive base backup streamed into bundles.
 *
 * Steps: connect (libpq), check the data directory and the repository identity, pg_backup_start,
 * walk the data directory (exclusions as PostgreSQL documents them, tablespaces through
 * pg_tblspc), copy files with `parallel` workers (each reads a file once: SHA-256, page checksum
 * check, and the bundle's object writer: zstd -> AEAD -> storage), pg_backup_stop, store
 * backup_label and tablespace_map, write the manifest last, then wait until every WAL segment
 * from start to stop is in the repository. Only then is the id printed.
 *
 * Workers share nothing but the file queue (an index under a mutex), the bundle counter and the
 * byte counters; each opens its own storage handle (network drivers keep one session per
 * handle). The first error stops every worker; on failure the objects already written are
 * removed (best effort: wal-prune removes what remains, since a backup without a manifest is
 * never listed as complete).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backup/backup.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/progress.h"
#include "base/util.h"
#include "io/object.h"
#include "pg/pgconn.h"
#include "pg/pgpage.h"
#include "pg/wal.h"

#define READ_BLOCK (1u << 20)

struct entry {
    char *path; /* relative to the data directory */
    uint64_t size;
    uint32_t mode;
    int64_t mtime;
    int checksummed; /* relation file whose pages carry checksums */
    uint32_t segno;
};

struct walk {
    const char *pgdata;
    struct entry *files;
    size_t nfiles, cap;
    uint64_t total;
    struct ws_manifest *m;
};

/* ---- what a base backup leaves out (PostgreSQL docs, "Backing Up the Data Directory") ---- */

/* Directories whose contents are skipped (the directory itself is kept). */
static const char *const skip_contents[] = {
    "pg_wal",       "pg_dynshmem", "pg_notify",   "pg_replslot", "pg_serial",
    "pg_snapshots", "pg_stat_tmp", "pg_subtrans", NULL,
};

/* Files of the top-level directory that are never copied. backup_label and tablespace_map come
 * from pg_backup_stop instead; the signal files are written by restore. */
static const char *const skip_top_files[] = {
    "postmaster.pid",   "postmaster.opts",  "backup_label",       "tablespace_map",
    "backup_manifest",  "backup_label.old", "tablespace_map.old", "postgresql.auto.conf.tmp",
    "current_logfiles", "recovery.signal",  "standby.signal",     NULL,
};

static int in_list(const char *const *list, const char *s)
{
    for (; *list; list++)
        if (strcmp(*list, s) == 0)
            return 1;
    return 0;
}

/* t<digits>_<digits>[...]: a temporary relation. */
static int temp_relation(const char *name)
{
    const char *p = name;

    if (*p++ != 't' || !(*p >= '0' && *p <= '9'))
        return 0;
    while (*p >= '0' && *p <= '9')
        p++;
    return *p == '_' && p[1] >= '0' && p[1] <= '9';
}

/* The relfilenode part of a relation file name ("16384" of "16384_fsm.2"), or 0. */
static size_t relnode_len(const char *name)
{
    size_t n = 0;

    while (name[n] >= '0' && name[n] <= '9')
        n++;
    if (n == 0 || (name[n] != '\0' && name[n] != '_' && name[n] != '.'))
        return 0;
    return n;
}

static int add_file(struct walk *w, const char *rel, const struct stat *st)
{
    struct entry *e;

    if (w->nfiles == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 1024;
        void *p = realloc(w->files, cap * sizeof(*w->files));
        if (!p)
            return -1;
        w->files = p;
        w->cap = cap;
    }
    e = &w->files[w->nfiles];
    memset(e, 0, sizeof(*e));
    if (!(e->path = strdup(rel)))
        return -1;
    e->size = (uint64_t)st->st_size;
    e->mode = st->st_mode & 07777;
    e->mtime = st->st_mtime;
    e->checksummed = ws_pg_relation_file(rel, &e->segno);
    w->total += e->size;
    w->nfiles++;
    return 0;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Walks directory `rel` ("" for the top). depth counts from the data directory. */
static int walk_dir(struct walk *w, const char *rel, int depth, struct ws_error *err)
{
    char abs[4096], child[4096];
    DIR *d = NULL;
    struct dirent *de;
    char **names = NULL;
    size_t n = 0, cap = 0, i;
    int rc = 0, in_db_dir;
    const char *base = strrchr(rel, '/');

    base = base ? base + 1 : rel;
    snprintf(abs, sizeof(abs), "%s%s%s", w->pgdata, *rel ? "/" : "", rel);
    if (!(d = opendir(abs))) {
        if (errno == ENOENT && depth > 0)
            return 0; /* dropped during the backup: replay handles it */
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not open directory \"%s\"", abs);
    }
    while ((errno = 0, de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (n == cap) {
            size_t c = cap ? cap * 2 : 64;
            void *p = realloc(names, c * sizeof(*names));
            if (!p)
                goto oom;
            names = p;
            cap = c;
        }
        if (!(names[n] = strdup(de->d_name)))
            goto oom;
        n++;
    }
    if (errno) {
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not read directory \"%s\"", abs);
        goto out;
    }
    if (n > 1)
        qsort(names, n, sizeof(*names), cmp_name);

    /* A database directory (base/<oid>, pg_tblspc/<oid>/PG_*\/<oid>): unlogged relations are
     * those with an _init fork; only the init fork is copied. */
    in_db_dir = (strncmp(rel, "base/", 5) == 0 && depth == 2) ||
                (strncmp(rel, "pg_tblspc/", 10) == 0 && depth == 4);

    for (i = 0; i < n; i++) {
        const char *name = names[i];
        struct stat st;

        if (ws_path_join(child, sizeof(child), rel, name) != 0 ||
            ws_path_join(abs, sizeof(abs), w->pgdata, child) != 0) {
            rc = ws_error_set(err, WS_ERR_INVALID, "path too long in \"%s/%s\"", w->pgdata, rel);
            goto out;
        }
        if (lstat(abs, &st) != 0) {
            if (errno == ENOENT)
                continue;
            rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not stat file \"%s\"", abs);
            goto out;
        }
        if (depth == 0 && S_ISREG(st.st_mode) && in_list(skip_top_files, name))
            continue;
        if (strncmp(name, "pgsql_tmp", 9) == 0 || strcmp(name, "pg_internal.init") == 0 ||
            temp_relation(name))
            continue;
        if (in_db_dir && S_ISREG(st.st_mode)) {
            size_t rl = relnode_len(name);
            if (rl && strcmp(name + rl, "_init") != 0) {
                char init[4096];
                struct stat ist;
                snprintf(init, sizeof(init), "%s/%s/%.*s_init", w->pgdata, rel, (int)rl, name);
                if (stat(init, &ist) == 0)
                    continue; /* an unlogged relation's other forks */
            }
        }
        if (S_ISLNK(st.st_mode)) {
            char target[4096];
            ssize_t tl;
            if (depth == 1 && strcmp(rel, "pg_tblspc") == 0) {
                unsigned long oid = strtoul(name, NULL, 10);
                if ((tl = readlink(abs, target, sizeof(target) - 1)) < 0) {
                    rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not read link \"%s\"", abs);
                    goto out;
                }
                target[tl] = '\0';
                if (oid == 0 || oid > UINT32_MAX || target[0] != '/') {
                    rc = ws_error_set(err, WS_ERR_INVALID,
                                      "tablespace link \"%s\" is not <oid> -> /absolute/path", abs);
                    goto out;
                }
                if ((rc = ws_manifest_add_tblspc(w->m, (uint32_t)oid, target, err)) != 0)
                    goto out;
                if ((rc = walk_dir(w, child, depth + 1, err)) != 0)
                    goto out;
                continue;
            }
            /* another link (pg_wal made with initdb -X, ...): copied as what it points to */
            if (stat(abs, &st) != 0) {
                ws_log_warning("skipping dangling link \"%s\"", abs);
                continue;
            }
        }
        if (S_ISDIR(st.st_mode)) {
            if ((rc = ws_manifest_add_dir(w->m, child, st.st_mode & 07777, err)) != 0)
                goto out;
            if (depth == 0 && in_list(skip_contents, name)) {
                if (strcmp(name, "pg_wal") == 0 &&
                    (rc = ws_manifest_add_dir(w->m, "pg_wal/archive_status", 0700, err)) != 0)
                    goto out;
                continue;
            }
            if ((rc = walk_dir(w, child, depth + 1, err)) != 0)
                goto out;
        } else if (S_ISREG(st.st_mode)) {
            if (add_file(w, child, &st) != 0)
                goto oom;
        }
        /* sockets, fifos, devices: not part of a data directory; ignored */
    }
    goto out;
oom:
    rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
out:
    for (i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (d)
        closedir(d);
    return rc;
}

/* ---- the copy ----------------------------------------------------------------------------- */

struct job {
    const struct ws_config *cfg;
    const struct ws_key *key;
    struct ws_repo *repo;
    const char *id;
    const char *pgdata;
    uint64_t start_lsn;
    int checksums;
    struct entry *files;
    size_t nfiles;
    struct ws_bfile *results; /* one per file; path NULL when the file vanished */
    pthread_mutex_t lock;
    size_t next_file;
    uint32_t next_bundle;
    int failed;
    struct ws_error first_err;
    atomic_uint_fast64_t done_bytes;
    atomic_uint_fast64_t stored_bytes;
    atomic_int finished_workers;
    struct ws_manifest *m; /* bad pages are added under lock */
    int zstd_workers;
};

struct worker {
    struct job *job;
    pthread_t thread;
    struct ws_storage *st;
    struct ws_repo repo; /* repo with this worker's storage handle */
    struct ws_sink *bundle;
    struct ws_sink *writer; /* the object writer at the bundle's front */
    uint32_t bundle_no;
    uint64_t bundle_len;
    uint8_t *buf;
};

static int job_failed(struct job *j)
{
    int f;

    pthread_mutex_lock(&j->lock);
    f = j->failed;
    pthread_mutex_unlock(&j->lock);
    return f;
}

static void job_fail(struct job *j, const struct ws_error *err)
{
    pthread_mutex_lock(&j->lock);
    if (!j->failed) {
        j->failed = 1;
        j->first_err = *err;
    }
    pthread_mutex_unlock(&j->lock);
}

static int bundle_open(struct worker *w, struct ws_error *err)
{
    struct job *j = w->job;
    struct ws_object_params p = {0};
    struct ws_sink *put = NULL;
    char key[256];
    int rc;

    pthread_mutex_lock(&j->lock);
    w->bundle_no = j->next_bundle++;
    pthread_mutex_unlock(&j->lock);
    ws_backup_bundle_key(&w->repo, j->id, w->bundle_no, key, sizeof(key));
    if ((rc = ws_storage_open_put(w->st, key, 0, &put, err)) != 0)
        return rc;
    p.name = key;
    p.compress = j->cfg->compress;
    p.level = j->cfg->compress_level;
    p.workers = j->zstd_workers;
    p.content_size = -1;
    p.key = j->key;
    p.no_digest = 1; /* every file's SHA-256 is in the manifest */
    if ((rc = ws_object_writer_new(put, &p, &w->bundle, err)) != 0)
        return rc;
    w->bundle_len = 0;
    return 0;
}

static int bundle_close(struct worker *w, struct ws_error *err)
{
    struct ws_object_info info;
    int rc;

    if (!w->bundle)
        return 0;
    rc = ws_sink_finish(w->bundle, err);
    if (rc == 0) {
        ws_object_writer_info(w->bundle, &info);
        atomic_fetch_add(&w->job->stored_bytes, info.stored_len);
    }
    ws_sink_free(w->bundle);
    w->bundle = NULL;
    return rc;
}

struct badpage_ctx {
    struct job *job;
    const char *path;
    int fd;
    uint32_t segno;
    int count;
};

static void still_bad(void *arg, uint32_t block)
{
    (void)block;
    *(int *)arg = 1;
}

/* A page that failed is read again once: PostgreSQL may have been writing it (a torn read). */
static void on_bad_page(void *arg, uint32_t block)
{
    struct badpage_ctx *c = arg;
    struct ws_error err = {0};
    uint8_t page[WS_PG_BLCKSZ];
    int bad = 0;

    if (ws_pread_full(c->fd, page, sizeof(page), (off_t)block * WS_PG_BLCKSZ) ==
        (ssize_t)sizeof(page)) {
        ws_pg_check_pages(page, sizeof(page), c->segno, block, c->job->start_lsn, still_bad, &bad);
        if (!bad)
            return;
    } /* a page that is gone now was truncated away: not worth a warning either */
    else
        return;

    pthread_mutex_lock(&c->job->lock);
    if (ws_manifest_add_badpage(c->job->m, c->path, block, &err) != 0 && !c->job->failed) {
        c->job->failed = 1;
        c->job->first_err = err;
    }
    pthread_mutex_unlock(&c->job->lock);
    c->count++;
}

/* A large file continues in a new bundle at every WS_PIECE_SIZE boundary (backup.h), so that
 * restore can write its pieces in parallel. */
static int next_piece(struct worker *w, struct ws_bfile *r, uint64_t off, struct ws_error *err)
{
    struct ws_bpiece *p;
    int rc;

    if ((rc = bundle_close(w, err)) != 0 || (rc = bundle_open(w, err)) != 0)
        return rc;
    if (!(p = realloc(r->pieces, (r->npieces + 1) * sizeof(*p))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    r->pieces = p;
    p[r->npieces].file_offset = off;
    p[r->npieces].length = 0;
    p[r->npieces].bundle = w->bundle_no;
    p[r->npieces].offset = 0;
    r->npieces++;
    return 0;
}

/* Copies one file into the worker's bundle. A file that vanished is skipped (path stays NULL). */
static int copy_file(struct worker *w, size_t idx, struct ws_error *err)
{
    struct job *j = w->job;
    struct entry *e = &j->files[idx];
    struct ws_bfile *r = &j->results[idx];
    struct badpage_ctx bp = {j, e->path, -1, e->segno, 0};
    EVP_MD_CTX *md = NULL;
    char abs[4096];
    uint64_t off = 0;
    int fd, rc = 0;
    struct stat st;

    snprintf(abs, sizeof(abs), "%s/%s", j->pgdata, e->path);
    fd = open(abs, O_RDONLY | O_NOATIME | O_CLOEXEC);
    if (fd < 0 && errno == EPERM)
        fd = open(abs, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            ws_log_info("file \"%s\" vanished during the backup (WAL replay handles it)", abs);
            return 0;
        }
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not open file \"%s\"", abs);
    }
    bp.fd = fd;
    if (!w->bundle && (rc = bundle_open(w, err)) != 0)
        goto out;
    if (!(md = EVP_MD_CTX_new()) || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "could not initialize SHA-256");
        goto out;
    }
    r->bundle = w->bundle_no;
    r->offset = w->bundle_len;
    for (;;) {
        ssize_t n = ws_pread_full(fd, w->buf, READ_BLOCK, (off_t)off);
        if (n < 0) {
            rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not read file \"%s\"", abs);
            goto out;
        }
        if (n == 0)
            break;
        if (e->checksummed && j->checksums)
            ws_pg_check_pages(w->buf, (size_t)n, e->segno, (uint32_t)(off / WS_PG_BLCKSZ),
                              j->start_lsn, on_bad_page, &bp);
        if (EVP_DigestUpdate(md, w->buf, (size_t)n) != 1) {
            rc = ws_error_set(err, WS_ERR_INTERNAL, "SHA-256 failed");
            goto out;
        }
        if (off > 0 && off % WS_PIECE_SIZE == 0 && (rc = next_piece(w, r, off, err)) != 0)
            goto out;
        if ((rc = ws_sink_write(w->bundle, w->buf, (size_t)n, err)) != 0)
            goto out;
        w->bundle_len += (uint64_t)n;
        if (r->npieces)
            r->pieces[r->npieces - 1].length += (uint64_t)n;
        off += (uint64_t)n;
        atomic_fetch_add(&j->done_bytes, (uint64_t)n);
        if ((size_t)n < READ_BLOCK)
            break;
    }
    if (EVP_DigestFinal_ex(md, r->sha256, NULL) != 1) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "SHA-256 failed");
        goto out;
    }
    if (bp.count)
        ws_log_warning("file \"%s\": %d page(s) failed checksum verification", abs, bp.count);
    r->path = e->path;
    r->mode = e->mode;
    r->mtime = fstat(fd, &st) == 0 ? st.st_mtime : e->mtime;
    r->size = off;
    if (w->bundle_len >= WS_BUNDLE_TARGET)
        rc = bundle_close(w, err);
out:
    EVP_MD_CTX_free(md);
    close(fd);
    return rc;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct job *j = w->job;
    struct ws_error err = {0};

    for (;;) {
        size_t idx;
        if (job_failed(j))
            break;
        pthread_mutex_lock(&j->lock);
        idx = j->next_file++;
        pthread_mutex_unlock(&j->lock);
        if (idx >= j->nfiles)
            break;
        if (copy_file(w, idx, &err) != 0) {
            job_fail(j, &err);
            break;
        }
    }
    if (!job_failed(j) && bundle_close(w, &err) != 0)
        job_fail(j, &err);
    ws_sink_free(w->bundle); /* after a failure: aborts, nothing of it stays visible */
    w->bundle = NULL;
    atomic_fetch_add(&j->finished_workers, 1);
    return NULL;
}

static int cmp_size_desc(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;

    if (x->size != y->size)
        return x->size < y->size ? 1 : -1;
    return strcmp(x->path, y->path);
}

/* ---- the command -------------------------------------------------------------------------- */

static int store_small_file(struct job *j, const char *name, const char *text, struct ws_bfile *out,
                            struct ws_error *err)
{
    struct worker w = {0};
    EVP_MD_CTX *md = NULL;
    size_t len = strlen(text);
    unsigned int mdlen;
    int rc;

    w.job = j;
    w.st = j->repo->st;
    w.repo = *j->repo;
    if ((rc = bundle_open(&w, err)) != 0)
        goto out;
    if ((rc = ws_sink_write(w.bundle, text, len, err)) != 0)
        goto out;
    memset(out, 0, sizeof(*out));
    out->path = (char *)name;
    out->mode = 0600;
    out->mtime = time(NULL);
    out->size = len;
    out->bundle = w.bundle_no;
    out->offset = 0;
    if (!(md = EVP_MD_CTX_new()) || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(md, text, len) != 1 || EVP_DigestFinal_ex(md, out->sha256, &mdlen) != 1) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "SHA-256 failed");
        goto out;
    }
    rc = bundle_close(&w, err);
out:
    EVP_MD_CTX_free(md);
    ws_sink_free(w.bundle);
    return rc;
}

/* Removes what a failed backup wrote (best effort). */
static void remove_backup_objects(struct ws_repo *repo, const char *id, uint32_t nbundles)
{
    struct ws_error e = {0};
    char key[256];
    uint32_t b;

    for (b = 0; b < nbundles; b++) {
        ws_backup_bundle_key(repo, id, b, key, sizeof(key));
        ws_storage_remove(repo->st, key, &e);
    }
}

static int note_object(void *arg, const char *key, const struct ws_storage_stat *st,
                       struct ws_error *err)
{
    (void)key;
    (void)st;
    (void)err;
    *(int *)arg = 1;
    return 0;
}

/* Does any object of backup `id` exist: a bundle, the manifest, the pin or a tombstone? A run
 * killed between the renames of its bundles can leave bundle 1 stored and bundle 0 not, so
 * looking for bundle 0 and the manifest alone is not enough: a new backup under that id would
 * fail on the dead run's bundle (and remove it as its own). */
static int id_taken(struct ws_repo *repo, const char *id, int *taken, struct ws_error *err)
{
    char base[128], prefix[160];

    ws_backup_prefix(repo, base, sizeof(base));
    snprintf(prefix, sizeof(prefix), "%s%s", base, id); /* "<cluster>/backup/<ID>" */
    *taken = 0;
    return ws_storage_list(repo->st, prefix, note_object, taken, err);
}

static int wait_for_wal(struct ws_repo *repo, const struct ws_manifest *m, int timeout,
                        struct ws_error *err)
{
    uint64_t s = ws_manifest_start_segno(m), last = ws_manifest_stop_segno(m);
    double since = ws_now_monotonic();
    char name[WS_WAL_NAME_LEN + 1], key[256];
    int rc;

    while (s <= last) {
        struct ws_storage_stat st;
        ws_wal_format_name(name, m->timeline, s, m->wal_segment_size);
        ws_repo_wal_key(repo, name, key, sizeof(key));
        rc = ws_storage_stat(repo->st, key, &st, err);
        if (rc == 0) {
            s++;
            since = ws_now_monotonic();
            continue;
        }
        if (rc != WS_ERR_NOT_FOUND)
            return rc;
        if (ws_now_monotonic() - since > timeout)
            return ws_error_set(err, WS_ERR_STORAGE,
                                "WAL file %s needed by backup %s did not reach the repository "
                                "within %d s (timeout); check archive_command and "
                                "pg_stat_archiver; the backup is not complete",
                                name, m->id, timeout);
        usleep(100 * 1000);
    }
    return 0;
}

static int parse_label_timeline(const char *label, uint32_t *tli)
{
    const char *p = strstr(label, "START TIMELINE: ");
    unsigned long v;

    if (!p)
        return -1;
    v = strtoul(p + 16, NULL, 10);
    if (v == 0 || v > UINT32_MAX)
        return -1;
    *tli = (uint32_t)v;
    return 0;
}

/* The system identifier in global/pg_control (its first 8 bytes, native order). */
static int control_sysid(const char *pgdata, uint64_t *sysid, struct ws_error *err)
{
    char path[4096];
    int fd;
    ssize_t n;

    snprintf(path, sizeof(path), "%s/global/pg_control", pgdata);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return ws_error_setsys(err, WS_ERR_CONFIG, errno,
                               "could not open file \"%s\" (is pgdata a data directory?)", path);
    n = ws_pread_full(fd, sysid, sizeof(*sysid), 0);
    close(fd);
    if (n != (ssize_t)sizeof(*sysid))
        return ws_error_set(err, WS_ERR_CONFIG, "could not read file \"%s\"", path);
    return 0;
}

int ws_backup_create(const struct ws_config *cfg, const struct ws_backup_opts *o,
                     struct ws_error *err)
{
    struct ws_repo repo = {0};
    struct ws_keyring kr = {0};
    struct ws_pg *pg = NULL;
    struct ws_pg_info info = {0};
    struct ws_manifest m = {0};
    struct walk w = {0};
    struct job j = {0};
    struct worker *workers = NULL;
    struct ws_identity want = {0};
    char *pgdata = NULL, *labelfile = NULL, *spcmap = NULL, *text = NULL;
    char what[4200], key[256], deflabel[64];
    size_t textlen, i;
    int rc, nworkers = 0, started = 0, in_backup = 0, lock_init = 0, tty;
    uint64_t sysid;
    double t0;

    tty = o->progress && isatty(STDERR_FILENO);
    if ((rc = ws_keyring_load(cfg, &kr, err)) != 0 || (rc = ws_repo_open(cfg, &repo, err)) != 0)
        goto out;
    if ((rc = ws_pg_connect(cfg->pg_conninfo, &pg, err)) != 0 ||
        (rc = ws_pg_get_info(pg, &info, err)) != 0)
        goto out;
    if (cfg->pgdata && *cfg->pgdata)
        pgdata = realpath(cfg->pgdata, NULL);
    else if (info.data_directory)
        pgdata = realpath(info.data_directory, NULL);
    else {
        rc = ws_error_set(err, WS_ERR_CONFIG,
                          "pgdata is not set and the server did not tell its "
                          "data directory: set pgdata (or PGDATA)");
        goto out;
    }
    if (!pgdata) {
        rc = ws_error_setsys(err, WS_ERR_CONFIG, errno, "could not resolve data directory \"%s\"",
                             cfg->pgdata && *cfg->pgdata ? cfg->pgdata : info.data_directory);
        goto out;
    }
    if ((rc = control_sysid(pgdata, &sysid, err)) != 0)
        goto out;
    if (sysid != info.system_identifier) {
        rc = ws_error_set(err, WS_ERR_FOREIGN,
                          "data directory \"%s\" belongs to database system %" PRIu64
                          ", but the server we are connected to is system %" PRIu64,
                          pgdata, sysid, info.system_identifier);
        goto out;
    }
    want.format_version = WS_REPO_FORMAT;
    want.system_identifier = info.system_identifier;
    want.pg_version = info.version / 10000;
    want.wal_segment_size = info.wal_segment_size;
    snprintf(what, sizeof(what), "data directory \"%s\"", pgdata);
    if ((rc = ws_repo_identity_ensure(&repo, &want, what, err)) != 0)
        goto out;

    /* the id: the start time, made unique in the repository */
    m.start_time = time(NULL);
    for (;;) {
        int taken = 0;
        ws_backup_id_from_time(m.start_time, m.id);
        if ((rc = id_taken(&repo, m.id, &taken, err)) != 0)
            goto out;
        if (!taken)
            break;
        sleep(1);
        m.start_time = time(NULL);
    }
    snprintf(deflabel, sizeof(deflabel), "walsafe %s", m.id);
    if (!(m.label = strdup(o->label ? o->label : deflabel))) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        goto out;
    }
    m.pg_version = info.version;
    m.system_identifier = info.system_identifier;
    m.wal_segment_size = info.wal_segment_size;
    m.data_checksums = info.data_checksums;

    if ((rc = ws_pg_backup_start(pg, info.version, m.label, o->fast, &m.start_lsn, err)) != 0)
        goto out;
    in_backup = 1;
    {
        char l[24];
        ws_wal_format_lsn(l, m.start_lsn);
        ws_log_info("backup %s started at %s", m.id, l);
    }

    w.pgdata = pgdata;
    w.m = &m;
    if ((rc = walk_dir(&w, "", 0, err)) != 0)
        goto out;
    if (w.nfiles > 1)
        qsort(w.files, w.nfiles, sizeof(*w.files), cmp_size_desc);

    {
        int n = o->parallel > 0 ? o->parallel : cfg->parallel;
        if (n < 1)
            n = 1;
        if ((size_t)n > w.nfiles && w.nfiles > 0)
            n = (int)w.nfiles;
        if (!(workers = calloc((size_t)n, sizeof(*workers)))) {
            rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
            goto out;
        }
        nworkers = n;
    }
    j.cfg = cfg;
    j.key = ws_keyring_write_key(&kr);
    j.repo = &repo;
    j.id = m.id;
    j.pgdata = pgdata;
    j.start_lsn = m.start_lsn;
    j.checksums = info.data_checksums;
    j.files = w.files;
    j.nfiles = w.nfiles;
    j.m = &m;
    /* Every bundle compresses on `parallel` zstd threads: files are never split, so near the
     * end one large relation segment may be all that is left, and it still uses every core. */
    j.zstd_workers = nworkers > 1 ? nworkers : 0;
    if (!(j.results = calloc(w.nfiles + 1, sizeof(*j.results)))) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        goto out;
    }
    pthread_mutex_init(&j.lock, NULL);
    lock_init = 1;
    for (i = 0; i < (size_t)nworkers; i++) {
        struct worker *wk = &workers[i];
        wk->job = &j;
        if (!(wk->buf = malloc(READ_BLOCK))) {
            rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
            goto out;
        }
        /* worker 0 uses the main handle; the others open their own (one session each) */
        wk->repo = repo;
        if (i == 0)
            wk->st = repo.st;
        else if ((rc = ws_storage_open(cfg, &wk->st, err)) != 0)
            goto out;
        wk->repo.st = wk->st;
    }
    t0 = ws_now_monotonic();
    for (i = 0; i < (size_t)nworkers; i++) {
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0) {
            struct ws_error e;
            ws_error_set(&e, WS_ERR_INTERNAL, "could not start a worker thread");
            job_fail(&j, &e);
            break;
        }
        started++;
    }
    while (tty && atomic_load(&j.finished_workers) < started) {
        ws_progress_line(atomic_load(&j.done_bytes), w.total, ws_now_monotonic() - t0, 0);
        usleep(250 * 1000);
    }
    for (i = 0; i < (size_t)started; i++)
        pthread_join(workers[i].thread, NULL);
    if (tty)
        ws_progress_line(atomic_load(&j.done_bytes), w.total, ws_now_monotonic() - t0, 1);
    if (j.failed || started < nworkers) {
        *err = j.first_err;
        rc = err->code ? err->code : WS_ERR_INTERNAL;
        goto out;
    }

    if ((rc = ws_pg_backup_stop(pg, info.version, &m.stop_lsn, &labelfile, &spcmap, err)) != 0)
        goto out;
    in_backup = 0;
    m.stop_time = time(NULL);
    if (parse_label_timeline(labelfile, &m.timeline) != 0) {
        rc = ws_error_set(err, WS_ERR_INVALID,
                          "backup_label from the server has no START "
                          "TIMELINE line");
        goto out;
    }
    for (i = 0; i < w.nfiles; i++)
        if (j.results[i].path && (rc = ws_manifest_add_file(&m, &j.results[i], err)) != 0)
            goto out;
    {
        struct ws_bfile bf;
        if ((rc = store_small_file(&j, "backup_label", labelfile, &bf, err)) != 0 ||
            (rc = ws_manifest_add_file(&m, &bf, err)) != 0)
            goto out;
        if (*spcmap && ((rc = store_small_file(&j, "tablespace_map", spcmap, &bf, err)) != 0 ||
                        (rc = ws_manifest_add_file(&m, &bf, err)) != 0))
            goto out;
    }
    m.bundles = j.next_bundle;
    m.bytes = 0;
    for (i = 0; i < m.nfiles; i++)
        m.bytes += m.files[i].size;
    m.stored_bytes = atomic_load(&j.stored_bytes);
    if (m.nbadpages)
        ws_log_warning("backup %s: %zu page(s) failed checksum verification; they are listed in "
                       "its manifest",
                       m.id, m.nbadpages);

    /* the manifest, last */
    if ((rc = ws_manifest_format(&m, &text, &textlen, err)) != 0)
        goto out;
    {
        struct ws_object_params p = {0};
        ws_backup_manifest_key(&repo, m.id, key, sizeof(key));
        p.compress = cfg->compress;
        p.level = cfg->compress_level;
        p.key = j.key;
        if ((rc = ws_repo_put_small(&repo, key, text, textlen, &p, err)) != 0)
            goto out;
    }
    ws_log_info("backup %s: files stored, waiting for its WAL to be archived", m.id);
    if ((rc = wait_for_wal(&repo, &m, cfg->timeout, err)) != 0)
        goto done;
    printf("%s\n", m.id);
    fflush(stdout);
    goto done;
out:
    if (in_backup) {
        /* ends backup mode on the server too (closing the session would also) */
        struct ws_error e = {0};
        uint64_t l;
        char *a = NULL, *b = NULL;
        if (ws_pg_backup_stop(pg, info.version, &l, &a, &b, &e) == 0) {
            free(a);
            free(b);
        }
    }
    if (rc && m.id[0] && j.next_bundle)
        remove_backup_objects(&repo, m.id, j.next_bundle);
done:
    if (workers) {
        for (i = 0; i < (size_t)nworkers; i++) {
            free(workers[i].buf);
            if (i > 0)
                ws_storage_close(workers[i].st);
        }
        free(workers);
    }
    if (lock_init)
        pthread_mutex_destroy(&j.lock);
    if (j.results)
        for (i = 0; i < w.nfiles; i++)
            free(j.results[i].pieces);
    free(j.results);
    for (i = 0; i < w.nfiles; i++)
        free(w.files[i].path);
    free(w.files);
    free(text);
    free(labelfile);
    free(spcmap);
    free(pgdata);
    ws_manifest_free(&m);
    ws_pg_info_free(&info);
    ws_pg_close(pg);
    ws_repo_close(&repo);
    ws_keyring_wipe(&kr);
    return rc;
}
