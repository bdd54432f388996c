/*
 * backup/create.c - `basebackup create`: a non-exclusive base backup streamed into bundles.
 *
 * Steps: connect (the PostgreSQL session of the env), check the data directory and the
 * repository identity, pg_backup_start, walk the data directory (exclusions as PostgreSQL
 * documents them, tablespaces through pg_tblspc), copy files on the worker pool (pool.h; each
 * worker reads a file once: SHA-256, page checksum check, and its bundle's object writer:
 * zstd -> AEAD -> storage), pg_backup_stop, store backup_label and tablespace_map, write the
 * manifest last, then wait until every WAL segment from start to stop is in the repository.
 * Only then is the id printed.
 *
 * Workers share nothing but the pool's file queue, the bundle counter, the byte counters and
 * (under a mutex) the manifest's bad pages; each writes its own bundle through its own storage
 * handle. The first error stops every worker; on failure the objects already written are
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
#include "backup/exclude.h"
#include "backup/pool.h"
#include "base/fs.h"
#include "base/log.h"
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

static int walk_dir(struct walk *w, const char *rel, int depth, struct ws_error *err);

/* The names in directory abs, sorted (without "." and ".."). A directory that is gone is empty
 * when missing_ok. */
static int list_dir(const char *abs, int missing_ok, char ***out, size_t *nout,
                    struct ws_error *err)
{
    DIR *d;
    struct dirent *de;
    char **names = NULL;
    size_t n = 0, cap = 0, i;
    int rc = 0;

    *out = NULL;
    *nout = 0;
    if (!(d = opendir(abs))) {
        if (errno == ENOENT && missing_ok)
            return 0;
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
    *out = names;
    *nout = n;
    names = NULL;
    goto out;
oom:
    rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
out:
    if (names)
        for (i = 0; i < n; i++)
            free(names[i]);
    free(names);
    closedir(d);
    return rc;
}

/* exclude.h: whether the relation of file `name` in rel has an init fork. */
static int has_init_fork(void *arg, const char *rel, const char *name, size_t relnode_len)
{
    const struct walk *w = arg;
    char init[4096];
    struct stat ist;

    snprintf(init, sizeof(init), "%s/%s/%.*s_init", w->pgdata, rel, (int)relnode_len, name);
    return stat(init, &ist) == 0;
}

/* pg_tblspc/<oid>: a tablespace, recorded with its location and walked. */
static int walk_tablespace(struct walk *w, const char *abs, const char *child, const char *name,
                           int depth, struct ws_error *err)
{
    char target[4096];
    unsigned long oid = strtoul(name, NULL, 10);
    ssize_t tl;
    int rc;

    if ((tl = readlink(abs, target, sizeof(target) - 1)) < 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not read link \"%s\"", abs);
    target[tl] = '\0';
    if (oid == 0 || oid > UINT32_MAX || target[0] != '/')
        return ws_error_set(err, WS_ERR_INVALID,
                            "tablespace link \"%s\" is not <oid> -> /absolute/path", abs);
    if ((rc = ws_manifest_add_tblspc(w->m, (uint32_t)oid, target, err)) != 0)
        return rc;
    return walk_dir(w, child, depth + 1, err);
}

/* One entry `name` of directory `rel`. */
static int walk_entry(struct walk *w, const char *rel, int depth, const char *name,
                      struct ws_error *err)
{
    char abs[4096], child[4096];
    struct stat st;
    int rc;

    if (ws_path_join(child, sizeof(child), rel, name) != 0 ||
        ws_path_join(abs, sizeof(abs), w->pgdata, child) != 0)
        return ws_error_set(err, WS_ERR_INVALID, "path too long in \"%s/%s\"", w->pgdata, rel);
    if (lstat(abs, &st) != 0) {
        if (errno == ENOENT)
            return 0;
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not stat file \"%s\"", abs);
    }
    if (ws_exclude_entry(rel, depth, name, st.st_mode, has_init_fork, w))
        return 0;
    if (S_ISLNK(st.st_mode)) {
        if (depth == 1 && strcmp(rel, "pg_tblspc") == 0)
            return walk_tablespace(w, abs, child, name, depth, err);
        /* another link (pg_wal made with initdb -X, ...): copied as what it points to */
        if (stat(abs, &st) != 0) {
            ws_log_warning("skipping dangling link \"%s\"", abs);
            return 0;
        }
    }
    if (S_ISDIR(st.st_mode)) {
        if ((rc = ws_manifest_add_dir(w->m, child, st.st_mode & 07777, err)) != 0)
            return rc;
        if (ws_exclude_contents(depth, name))
            return strcmp(name, "pg_wal") == 0
                       ? ws_manifest_add_dir(w->m, "pg_wal/archive_status", 0700, err)
                       : 0;
        return walk_dir(w, child, depth + 1, err);
    }
    if (S_ISREG(st.st_mode) && add_file(w, child, &st) != 0)
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    /* sockets, fifos, devices: not part of a data directory; ignored */
    return 0;
}

/* Walks directory `rel` ("" for the top). depth counts from the data directory. */
static int walk_dir(struct walk *w, const char *rel, int depth, struct ws_error *err)
{
    char abs[4096];
    char **names = NULL;
    size_t n = 0, i;
    int rc;

    snprintf(abs, sizeof(abs), "%s%s%s", w->pgdata, *rel ? "/" : "", rel);
    /* a directory dropped during the backup: replay handles it */
    if ((rc = list_dir(abs, depth > 0, &names, &n, err)) != 0)
        return rc;
    for (i = 0; i < n && rc == 0; i++)
        rc = walk_entry(w, rel, depth, names[i], err);
    for (i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* ---- the copy ----------------------------------------------------------------------------- */

/* The bundle a worker is writing (or store_small_file). */
struct bundle_out {
    const struct ws_repo *repo; /* with the worker's storage handle */
    struct ws_sink *sink;       /* the object writer at the bundle's front; NULL: none open */
    uint32_t no;
    uint64_t len;
};

struct cworker {
    struct bundle_out out;
    uint8_t *buf; /* READ_BLOCK bytes */
};

struct job {
    const struct ws_config *cfg;
    const struct ws_key *key;
    const char *id;
    const char *pgdata;
    uint64_t start_lsn;
    int checksums;
    int zstd_workers;
    struct entry *files;
    size_t nfiles;
    struct ws_bfile *results; /* one per file; path NULL when the file vanished */
    struct cworker *workers;  /* one per pool worker */
    size_t nworkers;
    atomic_uint_fast32_t next_bundle;
    atomic_uint_fast64_t stored_bytes;
    pthread_mutex_t lock; /* bad pages are added to m under it */
    struct ws_manifest *m;
};

static int bundle_open(struct job *j, struct bundle_out *b, struct ws_error *err)
{
    struct ws_object_params p = {0};
    struct ws_sink *put = NULL;
    char key[256];
    int rc;

    b->no = (uint32_t)atomic_fetch_add(&j->next_bundle, 1);
    ws_backup_bundle_key(b->repo, j->id, b->no, key, sizeof(key));
    if ((rc = ws_storage_open_put(b->repo->st, key, 0, &put, err)) != 0)
        return rc;
    p.name = key;
    p.compress = j->cfg->compress;
    p.level = j->cfg->compress_level;
    p.workers = j->zstd_workers;
    p.content_size = -1;
    p.key = j->key;
    p.no_digest = 1; /* every file's SHA-256 is in the manifest */
    if ((rc = ws_object_writer_new(put, &p, &b->sink, err)) != 0)
        return rc;
    b->len = 0;
    return 0;
}

static int bundle_close(struct job *j, struct bundle_out *b, struct ws_error *err)
{
    struct ws_object_info info;
    int rc;

    if (!b->sink)
        return 0;
    rc = ws_sink_finish(b->sink, err);
    if (rc == 0) {
        ws_object_writer_info(b->sink, &info);
        atomic_fetch_add(&j->stored_bytes, info.stored_len);
    }
    ws_sink_free(b->sink);
    b->sink = NULL;
    return rc;
}

struct badpage_ctx {
    struct job *job;
    const char *path;
    int fd;
    uint32_t segno;
    int count;
    struct ws_error err; /* the first failure to record one */
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
    if (ws_manifest_add_badpage(c->job->m, c->path, block, &err) != 0 && !c->err.code)
        c->err = err;
    pthread_mutex_unlock(&c->job->lock);
    c->count++;
}

/* A large file continues in a new bundle at every WS_PIECE_SIZE boundary (manifest.h), so that
 * restore can write its pieces in parallel. */
static int next_piece(struct job *j, struct bundle_out *b, struct ws_bfile *r, uint64_t off,
                      struct ws_error *err)
{
    struct ws_bpiece *p;
    int rc;

    if ((rc = bundle_close(j, b, err)) != 0 || (rc = bundle_open(j, b, err)) != 0)
        return rc;
    if (!(p = realloc(r->pieces, (r->npieces + 1) * sizeof(*p))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    r->pieces = p;
    p[r->npieces].file_offset = off;
    p[r->npieces].length = 0;
    p[r->npieces].bundle = b->no;
    p[r->npieces].offset = 0;
    r->npieces++;
    return 0;
}

/* Reads the open file fd into the worker's bundle: SHA-256, page checksums, pieces. */
static int copy_content(struct job *j, struct cworker *cw, struct ws_pool_worker *pw,
                        const struct entry *e, struct ws_bfile *r, struct badpage_ctx *bp,
                        const char *abs, struct ws_error *err)
{
    struct bundle_out *b = &cw->out;
    EVP_MD_CTX *md = NULL;
    uint64_t off = 0;
    int rc = 0;

    if (!(md = EVP_MD_CTX_new()) || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "could not initialize SHA-256");
        goto out;
    }
    r->bundle = b->no;
    r->offset = b->len;
    for (;;) {
        ssize_t n = ws_pread_full(bp->fd, cw->buf, READ_BLOCK, (off_t)off);
        if (n < 0) {
            rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not read file \"%s\"", abs);
            goto out;
        }
        if (n == 0)
            break;
        if (e->checksummed && j->checksums)
            ws_pg_check_pages(cw->buf, (size_t)n, e->segno, (uint32_t)(off / WS_PG_BLCKSZ),
                              j->start_lsn, on_bad_page, bp);
        if (EVP_DigestUpdate(md, cw->buf, (size_t)n) != 1) {
            rc = ws_error_set(err, WS_ERR_INTERNAL, "SHA-256 failed");
            goto out;
        }
        if (off > 0 && off % WS_PIECE_SIZE == 0 && (rc = next_piece(j, b, r, off, err)) != 0)
            goto out;
        if ((rc = ws_sink_write(b->sink, cw->buf, (size_t)n, err)) != 0)
            goto out;
        b->len += (uint64_t)n;
        if (r->npieces)
            r->pieces[r->npieces - 1].length += (uint64_t)n;
        off += (uint64_t)n;
        ws_pool_progress(pw, (uint64_t)n);
        if ((size_t)n < READ_BLOCK)
            break;
    }
    if (EVP_DigestFinal_ex(md, r->sha256, NULL) != 1) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "SHA-256 failed");
        goto out;
    }
    r->size = off;
out:
    EVP_MD_CTX_free(md);
    return rc;
}

/* A pool task: copies file idx into the worker's bundle. A file that vanished is skipped (its
 * result's path stays NULL). */
static int copy_file(void *arg, struct ws_pool_worker *pw, size_t idx, struct ws_error *err)
{
    struct job *j = arg;
    struct cworker *cw = &j->workers[pw->index];
    struct entry *e = &j->files[idx];
    struct ws_bfile *r = &j->results[idx];
    struct badpage_ctx bp = {j, e->path, -1, e->segno, 0, {0}};
    char abs[4096];
    int fd, rc = 0;
    struct stat st;

    cw->out.repo = &pw->repo;
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
    if (!cw->out.sink && (rc = bundle_open(j, &cw->out, err)) != 0)
        goto out;
    if ((rc = copy_content(j, cw, pw, e, r, &bp, abs, err)) != 0)
        goto out;
    if (bp.err.code) {
        *err = bp.err;
        rc = err->code;
        goto out;
    }
    if (bp.count)
        ws_log_warning("file \"%s\": %d page(s) failed checksum verification", abs, bp.count);
    r->path = e->path;
    r->mode = e->mode;
    r->mtime = fstat(fd, &st) == 0 ? st.st_mtime : e->mtime;
    if (cw->out.len >= WS_BUNDLE_TARGET)
        rc = bundle_close(j, &cw->out, err);
out:
    close(fd);
    return rc;
}

/* A worker's end: its last bundle is finished unless the backup failed; after a failure it is
 * aborted, and nothing of it stays visible. */
static int copy_end(void *arg, struct ws_pool_worker *pw, struct ws_error *err)
{
    struct job *j = arg;
    struct cworker *cw = &j->workers[pw->index];
    int rc = 0;

    if (!ws_pool_failed(pw))
        rc = bundle_close(j, &cw->out, err);
    ws_sink_free(cw->out.sink);
    cw->out.sink = NULL;
    return rc;
}

static int cmp_size_desc(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;

    if (x->size != y->size)
        return x->size < y->size ? 1 : -1;
    return strcmp(x->path, y->path);
}

/* ---- the command -------------------------------------------------------------------------- */

static int store_small_file(struct job *j, const struct ws_repo *repo, const char *name,
                            const char *text, struct ws_bfile *out, struct ws_error *err)
{
    struct bundle_out b = {repo, NULL, 0, 0};
    EVP_MD_CTX *md = NULL;
    size_t len = strlen(text);
    unsigned int mdlen;
    int rc;

    if ((rc = bundle_open(j, &b, err)) != 0)
        goto out;
    if ((rc = ws_sink_write(b.sink, text, len, err)) != 0)
        goto out;
    memset(out, 0, sizeof(*out));
    out->path = (char *)name;
    out->mode = 0600;
    out->mtime = time(NULL);
    out->size = len;
    out->bundle = b.no;
    out->offset = 0;
    if (!(md = EVP_MD_CTX_new()) || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(md, text, len) != 1 || EVP_DigestFinal_ex(md, out->sha256, &mdlen) != 1) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "SHA-256 failed");
        goto out;
    }
    rc = bundle_close(j, &b, err);
out:
    EVP_MD_CTX_free(md);
    ws_sink_free(b.sink);
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

/* Everything one create holds (create_free releases it). */
struct create {
    const struct ws_config *cfg;
    const struct ws_backup_env *env;
    const struct ws_backup_opts *o;
    struct ws_repo repo;
    struct ws_keyring kr;
    struct ws_pg *pg;
    struct ws_pg_info info;
    char *pgdata; /* resolved */
    struct ws_manifest m;
    struct walk w;
    struct job j;
    int lock_init;
    int in_backup; /* between backup_start and backup_stop */
    char *labelfile, *spcmap;
};

/* The data directory: pgdata, else the server's. It must be the server's: the same system
 * identifier in global/pg_control. */
static int open_data_dir(struct create *c, struct ws_error *err)
{
    const struct ws_config *cfg = c->cfg;
    uint64_t sysid;
    int rc;

    if (cfg->pgdata && *cfg->pgdata)
        c->pgdata = realpath(cfg->pgdata, NULL);
    else if (c->info.data_directory)
        c->pgdata = realpath(c->info.data_directory, NULL);
    else
        return ws_error_set(err, WS_ERR_CONFIG,
                            "pgdata is not set and the server did not tell its "
                            "data directory: set pgdata (or PGDATA)");
    if (!c->pgdata)
        return ws_error_setsys(err, WS_ERR_CONFIG, errno, "could not resolve data directory \"%s\"",
                               cfg->pgdata && *cfg->pgdata ? cfg->pgdata : c->info.data_directory);
    if ((rc = control_sysid(c->pgdata, &sysid, err)) != 0)
        return rc;
    if (sysid != c->info.system_identifier)
        return ws_error_set(err, WS_ERR_FOREIGN,
                            "data directory \"%s\" belongs to database system %" PRIu64
                            ", but the server we are connected to is system %" PRIu64,
                            c->pgdata, sysid, c->info.system_identifier);
    return 0;
}

/* The repository holds this cluster, or nothing yet (then its identity is recorded). */
static int claim_repo(struct create *c, struct ws_error *err)
{
    struct ws_identity want = {0};
    char what[4200];

    want.format_version = WS_REPO_FORMAT;
    want.system_identifier = c->info.system_identifier;
    want.pg_version = c->info.version / 10000;
    want.wal_segment_size = c->info.wal_segment_size;
    snprintf(what, sizeof(what), "data directory \"%s\"", c->pgdata);
    return ws_repo_identity_ensure(&c->repo, &want, what, err);
}

/* The id (the start time, made unique in the repository), the label and the server's facts. */
static int name_backup(struct create *c, struct ws_error *err)
{
    struct ws_manifest *m = &c->m;
    char deflabel[64];
    int rc;

    m->start_time = time(NULL);
    for (;;) {
        int taken = 0;
        ws_backup_id_from_time(m->start_time, m->id);
        if ((rc = id_taken(&c->repo, m->id, &taken, err)) != 0)
            return rc;
        if (!taken)
            break;
        sleep(1);
        m->start_time = time(NULL);
    }
    snprintf(deflabel, sizeof(deflabel), "walsafe %s", m->id);
    if (!(m->label = strdup(c->o->label ? c->o->label : deflabel)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    m->pg_version = c->info.version;
    m->system_identifier = c->info.system_identifier;
    m->wal_segment_size = c->info.wal_segment_size;
    m->data_checksums = c->info.data_checksums;
    return 0;
}

static int start_backup(struct create *c, struct ws_error *err)
{
    char l[24];
    int rc;

    if ((rc = ws_pg_backup_start(c->pg, c->info.version, c->m.label, c->o->fast, &c->m.start_lsn,
                                 err)) != 0)
        return rc;
    c->in_backup = 1;
    ws_wal_format_lsn(l, c->m.start_lsn);
    ws_log_info("backup %s started at %s", c->m.id, l);
    return 0;
}

/* The files to copy, largest first. */
static int walk_files(struct create *c, struct ws_error *err)
{
    int rc;

    c->w.pgdata = c->pgdata;
    c->w.m = &c->m;
    if ((rc = walk_dir(&c->w, "", 0, err)) != 0)
        return rc;
    if (c->w.nfiles > 1)
        qsort(c->w.files, c->w.nfiles, sizeof(*c->w.files), cmp_size_desc);
    return 0;
}

/* Copies every file into bundles with the worker pool. */
static int copy_files(struct create *c, struct ws_error *err)
{
    struct job *j = &c->j;
    struct ws_pool_params pp = {0};
    const struct ws_backup_opts *o = c->o;
    size_t n = ws_pool_size(o->parallel > 0 ? o->parallel : c->cfg->parallel, c->w.nfiles), i;

    j->cfg = c->cfg;
    j->key = ws_keyring_write_key(&c->kr);
    j->id = c->m.id;
    j->pgdata = c->pgdata;
    j->start_lsn = c->m.start_lsn;
    j->checksums = c->info.data_checksums;
    j->files = c->w.files;
    j->nfiles = c->w.nfiles;
    j->m = &c->m;
    /* Every bundle compresses on `parallel` zstd threads: files are never split, so near the
     * end one large relation segment may be all that is left, and it still uses every core. */
    j->zstd_workers = n > 1 ? (int)n : 0;
    if (!(j->results = calloc(c->w.nfiles + 1, sizeof(*j->results))) ||
        !(j->workers = calloc(n, sizeof(*j->workers))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    j->nworkers = n;
    for (i = 0; i < n; i++)
        if (!(j->workers[i].buf = malloc(READ_BLOCK)))
            return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    pthread_mutex_init(&j->lock, NULL);
    c->lock_init = 1;
    pp.cfg = c->cfg;
    pp.env = c->env;
    pp.repo = &c->repo;
    pp.workers = n;
    pp.ntasks = c->w.nfiles;
    pp.task = copy_file;
    pp.end = copy_end;
    pp.arg = j;
    pp.progress = o->progress;
    pp.total_bytes = c->w.total;
    return ws_pool_run(&pp, err);
}

/* pg_backup_stop, then the manifest's file records: the copied files, backup_label and
 * tablespace_map (stored from what the server returned), and the totals. */
static int stop_backup(struct create *c, struct ws_error *err)
{
    struct ws_manifest *m = &c->m;
    struct ws_bfile bf;
    size_t i;
    int rc;

    if ((rc = ws_pg_backup_stop(c->pg, c->info.version, &m->stop_lsn, &c->labelfile, &c->spcmap,
                                err)) != 0)
        return rc;
    c->in_backup = 0;
    m->stop_time = time(NULL);
    if (parse_label_timeline(c->labelfile, &m->timeline) != 0)
        return ws_error_set(err, WS_ERR_INVALID,
                            "backup_label from the server has no START "
                            "TIMELINE line");
    for (i = 0; i < c->w.nfiles; i++)
        if (c->j.results[i].path && (rc = ws_manifest_add_file(m, &c->j.results[i], err)) != 0)
            return rc;
    if ((rc = store_small_file(&c->j, &c->repo, "backup_label", c->labelfile, &bf, err)) != 0 ||
        (rc = ws_manifest_add_file(m, &bf, err)) != 0)
        return rc;
    if (*c->spcmap &&
        ((rc = store_small_file(&c->j, &c->repo, "tablespace_map", c->spcmap, &bf, err)) != 0 ||
         (rc = ws_manifest_add_file(m, &bf, err)) != 0))
        return rc;
    m->bundles = (uint32_t)atomic_load(&c->j.next_bundle);
    m->bytes = 0;
    for (i = 0; i < m->nfiles; i++)
        m->bytes += m->files[i].size;
    m->stored_bytes = atomic_load(&c->j.stored_bytes);
    if (m->nbadpages)
        ws_log_warning("backup %s: %zu page(s) failed checksum verification; they are listed in "
                       "its manifest",
                       m->id, m->nbadpages);
    return 0;
}

/* The manifest, last: its presence makes the backup listed (complete once its WAL is in). */
static int store_manifest(struct create *c, struct ws_error *err)
{
    struct ws_object_params p = {0};
    char *text = NULL, key[256];
    size_t textlen;
    int rc;

    if ((rc = ws_manifest_format(&c->m, &text, &textlen, err)) != 0)
        return rc;
    ws_backup_manifest_key(&c->repo, c->m.id, key, sizeof(key));
    p.compress = c->cfg->compress;
    p.level = c->cfg->compress_level;
    p.key = c->j.key;
    rc = ws_repo_put_small(&c->repo, key, text, textlen, &p, err);
    free(text);
    return rc;
}

/* Ends backup mode on the server after a failure (closing the session would too). */
static void abort_backup(struct create *c)
{
    struct ws_error e = {0};
    uint64_t l;
    char *a = NULL, *b = NULL;

    if (ws_pg_backup_stop(c->pg, c->info.version, &l, &a, &b, &e) == 0) {
        free(a);
        free(b);
    }
}

static void create_free(struct create *c)
{
    struct job *j = &c->j;
    size_t i;

    if (j->workers)
        for (i = 0; i < j->nworkers; i++)
            free(j->workers[i].buf);
    free(j->workers);
    if (c->lock_init)
        pthread_mutex_destroy(&j->lock);
    if (j->results)
        for (i = 0; i < c->w.nfiles; i++)
            free(j->results[i].pieces);
    free(j->results);
    for (i = 0; i < c->w.nfiles; i++)
        free(c->w.files[i].path);
    free(c->w.files);
    free(c->labelfile);
    free(c->spcmap);
    free(c->pgdata);
    ws_manifest_free(&c->m);
    ws_pg_info_free(&c->info);
    ws_pg_close(c->pg);
    ws_repo_close(&c->repo);
    ws_keyring_wipe(&c->kr);
}

int ws_backup_create(const struct ws_config *cfg, const struct ws_backup_env *env,
                     const struct ws_backup_opts *o, struct ws_error *err)
{
    struct create c = {0};
    int rc;

    c.cfg = cfg;
    c.env = env;
    c.o = o;
    if ((rc = ws_keyring_load(cfg, &c.kr, err)) != 0 ||
        (rc = ws_backup_repo_open(env, cfg, &c.repo, err)) != 0 ||
        (rc = ws_pg_connect(env ? env->pg : NULL, cfg->pg_conninfo, &c.pg, err)) != 0 ||
        (rc = ws_pg_get_info(c.pg, &c.info, err)) != 0 || (rc = open_data_dir(&c, err)) != 0 ||
        (rc = claim_repo(&c, err)) != 0 || (rc = name_backup(&c, err)) != 0 ||
        (rc = start_backup(&c, err)) != 0 || (rc = walk_files(&c, err)) != 0 ||
        (rc = copy_files(&c, err)) != 0 || (rc = stop_backup(&c, err)) != 0 ||
        (rc = store_manifest(&c, err)) != 0)
        goto out;
    ws_log_info("backup %s: files stored, waiting for its WAL to be archived", c.m.id);
    if ((rc = wait_for_wal(&c.repo, &c.m, cfg->timeout, err)) != 0)
        goto done; /* the backup stays, incomplete until its WAL arrives */
    printf("%s\n", c.m.id);
    fflush(stdout);
    goto done;
out:
    if (c.in_backup)
        abort_backup(&c);
    if (c.m.id[0] && atomic_load(&c.j.next_bundle))
        remove_backup_objects(&c.repo, c.m.id, (uint32_t)atomic_load(&c.j.next_bundle));
done:
    create_free(&c);
    return rc;
}
