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
 * Every relation file's block digests go to the worker's map object (blockmap.h). A diff or incr
 * backup first chooses its reference (the catalog; without a usable one it is a full backup and
 * one warning says why), and then a task is one map object of the reference with the relation
 * files whose digests it holds (loaded once, one per worker at a time), or one other file. A
 * relation file is read once: unchanged is a REF record, else its changed blocks (kept in the
 * worker's nameless temporary file in $TMPDIR meanwhile) are a DELTA extent, or when more than
 * half changed it is read again and stored whole; another file with the reference's size is read
 * once for its SHA-256, and again to be stored when that differs (docs/design/incremental.md).
 *
 * Workers share nothing but the pool's task queue, the bundle and map counters, the byte counters
 * and (under a mutex) the manifest's bad pages; each writes its own bundle and map object through
 * its own storage handle. The first error stops every worker; on failure the objects already
 * written (bundles, map objects) are removed (best effort: wal-prune removes what remains, since a
 * backup without a manifest is never listed as complete).
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
#include "pg/timeline.h"
#include "pg/wal.h"
#include "repo/blockmap.h"
#include "repo/catalog.h"

#define READ_BLOCK (1u << 20)

struct entry {
    char *path; /* relative to the data directory */
    uint64_t size;
    uint32_t mode;
    int64_t mtime;
    int relation; /* a relation file (pgpage.h): pages with checksums, digested block by block */
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
    e->relation = ws_pg_relation_file(rel, &e->segno);
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

/* The map object a worker is writing (blockmap.h): whole files' digests, streamed. */
struct map_out {
    struct ws_sink *sink; /* NULL: none open */
    uint32_t no;
    uint64_t count; /* digests in it */
};

struct cworker {
    struct bundle_out out;
    struct map_out map;
    uint8_t *buf;     /* READ_BLOCK bytes */
    uint8_t *digests; /* of the file at hand, before they go to the map object */
    size_t ndigests, capdigests;
    uint32_t *changed; /* its blocks that differ from the reference's version */
    size_t nchanged, capchanged;
    int spill; /* those blocks' bytes (a temporary file), -1: none yet */
    uint64_t spill_len;
    uint8_t *refmap; /* the reference's map object of the task at hand */
    size_t refmap_len;
};

/* A pool task: files order[first .. first+n) (several: the relation files whose reference
 * digests lie in map object ref_map, in their order there; else one file, ref_map -1). */
struct ctask {
    size_t first, n;
    int64_t ref_map;
    uint64_t bytes;
};

struct job {
    const struct ws_config *cfg;
    const struct ws_key *key;
    const struct ws_keyring *kr;
    const char *id;
    const char *pgdata;
    uint64_t start_lsn;
    int checksums;
    int zstd_workers;
    struct entry *files;
    size_t nfiles;
    const struct ws_manifest *ref;  /* the reference (diff, incr), or NULL */
    const struct ws_bfile **ref_of; /* per file: the reference's record of its path, or NULL */
    size_t *order;
    struct ctask *tasks;
    size_t ntasks;
    struct ws_bfile *results; /* one per file; path NULL when the file vanished */
    struct cworker *workers;  /* one per pool worker */
    size_t nworkers;
    atomic_uint_fast32_t next_bundle, next_map;
    atomic_uint_fast64_t stored_bytes;
    pthread_mutex_t lock; /* bad pages are added to m under it */
    struct ws_manifest *m;
};

/* A new object writer for key into *out (compressed as configured when compress). */
static int object_open(struct job *j, const struct ws_repo *repo, const char *key, int compress,
                       struct ws_sink **out, struct ws_error *err)
{
    struct ws_object_params p = {0};
    struct ws_sink *put = NULL;
    int rc;

    if ((rc = ws_storage_open_put(repo->st, key, 0, &put, err)) != 0)
        return rc;
    p.name = key;
    p.compress = compress ? j->cfg->compress : WS_COMPRESS_NONE;
    p.level = j->cfg->compress_level;
    p.workers = compress ? j->zstd_workers : 0;
    p.content_size = -1;
    p.key = j->key;
    p.no_digest = 1; /* every file's SHA-256 is in the manifest; digests are checked by count */
    return ws_object_writer_new(put, &p, out, err);
}

/* Finishes a writer (adding its stored bytes), or frees it unfinished after a failure. */
static int object_close(struct job *j, struct ws_sink **s, int failed, struct ws_error *err)
{
    struct ws_object_info info;
    int rc = 0;

    if (!*s)
        return 0;
    if (!failed && (rc = ws_sink_finish(*s, err)) == 0) {
        ws_object_writer_info(*s, &info);
        atomic_fetch_add(&j->stored_bytes, info.stored_len);
    }
    ws_sink_free(*s);
    *s = NULL;
    return rc;
}

static int bundle_open(struct job *j, struct bundle_out *b, struct ws_error *err)
{
    char key[256];

    b->no = (uint32_t)atomic_fetch_add(&j->next_bundle, 1);
    b->len = 0;
    ws_backup_bundle_key(b->repo, j->id, b->no, key, sizeof(key));
    return object_open(j, b->repo, key, 1, &b->sink, err);
}

static int bundle_close(struct job *j, struct bundle_out *b, struct ws_error *err)
{
    return object_close(j, &b->sink, 0, err);
}

/* The worker's bundle, opened when it has none. */
static int bundle_ready(struct job *j, struct bundle_out *b, struct ws_error *err)
{
    return b->sink ? 0 : bundle_open(j, b, err);
}

/* Appends the file's digests (cw->digests) to the worker's map object and names them in r. */
static int map_record(struct job *j, struct cworker *cw, struct ws_bfile *r, struct ws_error *err)
{
    struct map_out *mo = &cw->map;
    char key[256];
    int rc;

    if (!mo->sink) {
        mo->no = (uint32_t)atomic_fetch_add(&j->next_map, 1);
        mo->count = 0;
        ws_backup_map_key(cw->out.repo, j->id, mo->no, key, sizeof(key));
        if ((rc = object_open(j, cw->out.repo, key, 0, &mo->sink, err)) != 0)
            return rc;
    }
    if (cw->ndigests &&
        (rc = ws_sink_write(mo->sink, cw->digests, cw->ndigests * WS_BLOCK_DIGEST_SIZE, err)) != 0)
        return rc;
    r->has_map = 1;
    r->map = mo->no;
    r->map_index = mo->count;
    mo->count += cw->ndigests;
    if (mo->count * WS_BLOCK_DIGEST_SIZE >= WS_MAP_TARGET)
        return object_close(j, &mo->sink, 0, err);
    return 0;
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

/* What one read of a file does besides its SHA-256. */
struct pass {
    int store;          /* append its bytes to the worker's bundle (a whole copy, in pieces) */
    int check;          /* check page checksums (the first read of a file only) */
    int digest;         /* a relation file: digest every block into cw->digests */
    const uint8_t *ref; /* the reference's digests of the file: blocks that differ, or lie past
                           its nref, go to cw->changed and their bytes to the spill file */
    uint64_t nref;
    int progress; /* count the bytes for the progress line (the first read only) */
};

static int grow_array(void **p, size_t *cap, size_t need, size_t sz, struct ws_error *err)
{
    size_t c = *cap ? *cap : 64;
    void *q;

    if (need <= *cap)
        return 0;
    while (c < need)
        c *= 2;
    if (!(q = realloc(*p, c * sz)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    *p = q;
    *cap = c;
    return 0;
}

/* The spill file: a nameless temporary file in $TMPDIR (else /tmp). */
static int spill_write(struct cworker *cw, const uint8_t *p, size_t n, struct ws_error *err)
{
    const char *dir = getenv("TMPDIR");

    if (!dir || !*dir)
        dir = "/tmp";
    if (cw->spill < 0 && (cw->spill = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600)) < 0)
        return ws_error_setsys(err, WS_ERR_IO, errno,
                               "could not create a temporary file in \"%s\" (TMPDIR)", dir);
    while (n > 0) {
        ssize_t w = pwrite(cw->spill, p, n, (off_t)cw->spill_len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return ws_error_setsys(err, WS_ERR_IO, w < 0 ? errno : ENOSPC,
                                   "could not write a temporary file in \"%s\"", dir);
        p += w;
        n -= (size_t)w;
        cw->spill_len += (uint64_t)w;
    }
    return 0;
}

/* Digests the blocks of buf (n bytes at file offset off) and, against the reference's, keeps
 * the blocks that differ. */
static int digest_blocks(struct cworker *cw, const struct pass *p, uint64_t off, size_t n,
                         struct ws_error *err)
{
    size_t at, nb = (n + WS_PG_BLCKSZ - 1) / WS_PG_BLCKSZ;
    int rc;

    if ((rc = grow_array((void **)&cw->digests, &cw->capdigests, cw->ndigests + nb,
                         WS_BLOCK_DIGEST_SIZE, err)) != 0)
        return rc;
    for (at = 0; at < n; at += WS_PG_BLCKSZ) {
        size_t len = n - at < WS_PG_BLCKSZ ? n - at : WS_PG_BLCKSZ;
        uint64_t block = (off + at) / WS_PG_BLCKSZ;
        uint8_t *d = cw->digests + cw->ndigests++ * WS_BLOCK_DIGEST_SIZE;
        ws_block_digest(cw->buf + at, len, d);
        if (!p->ref || (block < p->nref && memcmp(d, p->ref + block * WS_BLOCK_DIGEST_SIZE,
                                                  WS_BLOCK_DIGEST_SIZE) == 0))
            continue;
        if ((rc = grow_array((void **)&cw->changed, &cw->capchanged, cw->nchanged + 1,
                             sizeof(*cw->changed), err)) != 0 ||
            (rc = spill_write(cw, cw->buf + at, len, err)) != 0)
            return rc;
        cw->changed[cw->nchanged++] = (uint32_t)block;
    }
    return 0;
}

/* Stores buf (n bytes at file offset off) in the worker's bundle, a new piece at every
 * WS_PIECE_SIZE boundary. */
static int store_bytes(struct job *j, struct cworker *cw, struct ws_bfile *r, uint64_t off,
                       size_t n, struct ws_error *err)
{
    struct bundle_out *b = &cw->out;
    int rc;

    if (off > 0 && off % WS_PIECE_SIZE == 0 && (rc = next_piece(j, b, r, off, err)) != 0)
        return rc;
    if ((rc = ws_sink_write(b->sink, cw->buf, n, err)) != 0)
        return rc;
    b->len += n;
    if (r->npieces)
        r->pieces[r->npieces - 1].length += n;
    return 0;
}

/* Reads the open file bp->fd once from its start: SHA-256 and size into r, and what p asks. */
static int read_pass(struct job *j, struct cworker *cw, struct ws_pool_worker *pw,
                     const struct entry *e, struct ws_bfile *r, struct badpage_ctx *bp,
                     const char *abs, const struct pass *p, struct ws_error *err)
{
    EVP_MD_CTX *md = NULL;
    uint64_t off = 0;
    int rc = 0;

    cw->ndigests = cw->nchanged = 0;
    cw->spill_len = 0;
    if (!(md = EVP_MD_CTX_new()) || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "could not initialize SHA-256");
        goto out;
    }
    if (p->store) {
        if ((rc = bundle_ready(j, &cw->out, err)) != 0)
            goto out;
        r->bundle = cw->out.no;
        r->offset = cw->out.len;
    }
    for (;;) {
        ssize_t n = ws_pread_full(bp->fd, cw->buf, READ_BLOCK, (off_t)off);
        if (n < 0) {
            rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not read file \"%s\"", abs);
            goto out;
        }
        if (n == 0)
            break;
        if (p->check && e->relation && j->checksums)
            ws_pg_check_pages(cw->buf, (size_t)n, e->segno, (uint32_t)(off / WS_PG_BLCKSZ),
                              j->start_lsn, on_bad_page, bp);
        if (EVP_DigestUpdate(md, cw->buf, (size_t)n) != 1) {
            rc = ws_error_set(err, WS_ERR_INTERNAL, "SHA-256 failed");
            goto out;
        }
        if ((p->digest && (rc = digest_blocks(cw, p, off, (size_t)n, err)) != 0) ||
            (p->store && (rc = store_bytes(j, cw, r, off, (size_t)n, err)) != 0))
            goto out;
        off += (uint64_t)n;
        if (p->progress)
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

/* The base of a DELTA or REF record whose reference record is ref (manifest.h). */
static void set_base(const struct job *j, const struct ws_bfile *ref, struct ws_bfile *r)
{
    memcpy(r->base, ref->kind == WS_BFILE_WHOLE ? j->ref->id : ref->base, sizeof(r->base));
}

static void put_be(uint8_t *p, uint64_t v, int bytes)
{
    while (bytes-- > 0) {
        p[bytes] = (uint8_t)v;
        v >>= 8;
    }
}

/* Writes the delta extent (blockmap.h) of the changed blocks, from the spill file, into the
 * worker's bundle. */
static int store_delta(struct job *j, struct cworker *cw, struct ws_bfile *r, struct ws_error *err)
{
    struct bundle_out *b = &cw->out;
    uint8_t hdr[WS_DELTA_HEADER], num[4];
    uint64_t done = 0;
    size_t i;
    int rc;

    if ((rc = bundle_ready(j, b, err)) != 0)
        return rc;
    r->kind = WS_BFILE_DELTA;
    r->bundle = b->no;
    r->offset = b->len;
    r->length = WS_DELTA_HEADER + 4 * (uint64_t)cw->nchanged + cw->spill_len;
    put_be(hdr, r->size, 8);
    put_be(hdr + 8, cw->nchanged, 4);
    if ((rc = ws_sink_write(b->sink, hdr, sizeof(hdr), err)) != 0)
        return rc;
    for (i = 0; i < cw->nchanged; i++) {
        put_be(num, cw->changed[i], 4);
        if ((rc = ws_sink_write(b->sink, num, sizeof(num), err)) != 0)
            return rc;
    }
    while (done < cw->spill_len) {
        size_t want =
            cw->spill_len - done < READ_BLOCK ? (size_t)(cw->spill_len - done) : READ_BLOCK;
        if (ws_pread_full(cw->spill, cw->buf, want, (off_t)done) != (ssize_t)want)
            return ws_error_setsys(err, WS_ERR_IO, errno, "could not read a temporary file");
        if ((rc = ws_sink_write(b->sink, cw->buf, want, err)) != 0)
            return rc;
        done += want;
    }
    b->len += r->length;
    if (cw->spill >= 0 && ftruncate(cw->spill, 0) != 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not truncate a temporary file");
    return 0;
}

/* A relation file against its reference record ref and digests (cw->refmap): unchanged (REF),
 * its changed blocks (DELTA), or, when more than half of them changed, whole. */
static int copy_relation_incr(struct job *j, struct cworker *cw, struct ws_pool_worker *pw,
                              const struct entry *e, const struct ws_bfile *ref, struct ws_bfile *r,
                              struct badpage_ctx *bp, const char *abs, struct ws_error *err)
{
    uint64_t nref = ws_blockmap_blocks(ref->size, WS_PG_BLCKSZ);
    struct pass p = {0, 1, 1, NULL, nref, 1};
    struct pass whole = {1, 0, 1, NULL, 0, 0};
    int rc;

    if (ref->map_index > cw->refmap_len / WS_BLOCK_DIGEST_SIZE ||
        nref > cw->refmap_len / WS_BLOCK_DIGEST_SIZE - ref->map_index)
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "map object %" PRIu32 " of backup %s does not hold the digests of "
                            "\"%s\"",
                            ref->map, j->ref->id, ref->path);
    p.ref = cw->refmap + ref->map_index * WS_BLOCK_DIGEST_SIZE;
    if ((rc = read_pass(j, cw, pw, e, r, bp, abs, &p, err)) != 0)
        return rc;
    if (cw->nchanged == 0 && r->size == ref->size) {
        r->kind = WS_BFILE_REF;
        set_base(j, ref, r);
        return 0;
    }
    if (2 * (uint64_t)cw->nchanged <= ws_blockmap_blocks(r->size, WS_PG_BLCKSZ)) {
        set_base(j, ref, r);
        return store_delta(j, cw, r, err);
    }
    return read_pass(j, cw, pw, e, r, bp, abs, &whole, err);
}

/* Any other file with a reference record of the same size: read once for its SHA-256; the same
 * is a REF, else it is read again and stored whole. */
static int copy_if_changed(struct job *j, struct cworker *cw, struct ws_pool_worker *pw,
                           const struct entry *e, const struct ws_bfile *ref, struct ws_bfile *r,
                           struct badpage_ctx *bp, const char *abs, struct ws_error *err)
{
    struct pass p = {0, 1, e->relation, NULL, 0, 1};
    struct pass whole = {1, 0, e->relation, NULL, 0, 0};
    int rc;

    if ((rc = read_pass(j, cw, pw, e, r, bp, abs, &p, err)) != 0)
        return rc;
    if (r->size == ref->size && memcmp(r->sha256, ref->sha256, sizeof(r->sha256)) == 0) {
        r->kind = WS_BFILE_REF;
        set_base(j, ref, r);
        return 0;
    }
    return read_pass(j, cw, pw, e, r, bp, abs, &whole, err);
}

/* Copies file idx as the reference allows (whole without one); relation files get their
 * digests recorded. A file that vanished is skipped (its result's path stays NULL). */
static int copy_file(struct job *j, struct cworker *cw, struct ws_pool_worker *pw, size_t idx,
                     struct ws_error *err)
{
    struct entry *e = &j->files[idx];
    struct ws_bfile *r = &j->results[idx];
    const struct ws_bfile *ref = j->ref_of ? j->ref_of[idx] : NULL;
    struct badpage_ctx bp = {j, e->path, -1, e->segno, 0, {0}};
    struct pass whole = {1, 1, e->relation, NULL, 0, 1};
    char abs[4096];
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
    if (ref && e->relation && ref->has_map && cw->refmap)
        rc = copy_relation_incr(j, cw, pw, e, ref, r, &bp, abs, err);
    else if (ref && ref->size == e->size)
        rc = copy_if_changed(j, cw, pw, e, ref, r, &bp, abs, err);
    else
        rc = read_pass(j, cw, pw, e, r, &bp, abs, &whole, err);
    if (rc == 0 && bp.err.code) {
        *err = bp.err;
        rc = err->code;
    }
    if (rc == 0 && e->relation)
        rc = map_record(j, cw, r, err);
    if (rc != 0)
        goto out;
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

/* A pool task: its files, with the reference's map object they need loaded (one at a time). */
static int copy_task(void *arg, struct ws_pool_worker *pw, size_t t, struct ws_error *err)
{
    struct job *j = arg;
    struct cworker *cw = &j->workers[pw->index];
    const struct ctask *task = &j->tasks[t];
    size_t k;
    int rc = 0;

    cw->out.repo = &pw->repo;
    if (task->ref_map >= 0 &&
        (rc = ws_blockmap_load(&pw->repo, j->kr, j->ref->id, (uint32_t)task->ref_map, &cw->refmap,
                               &cw->refmap_len, err)) != 0)
        return rc;
    for (k = 0; k < task->n && rc == 0; k++)
        rc = copy_file(j, cw, pw, j->order[task->first + k], err);
    free(cw->refmap);
    cw->refmap = NULL;
    cw->refmap_len = 0;
    return rc;
}

/* A worker's end: its last bundle and map object are finished unless the backup failed; after a
 * failure they are aborted, and nothing of them stays visible. */
static int copy_end(void *arg, struct ws_pool_worker *pw, struct ws_error *err)
{
    struct job *j = arg;
    struct cworker *cw = &j->workers[pw->index];
    int failed = ws_pool_failed(pw), rc;

    rc = object_close(j, &cw->out.sink, failed, err);
    if (rc == 0)
        rc = object_close(j, &cw->map.sink, failed, err);
    else
        object_close(j, &cw->map.sink, 1, err);
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

/* Removes what a failed backup wrote (best effort): its bundles and map objects. */
static void remove_backup_objects(struct ws_repo *repo, const char *id, uint32_t nbundles,
                                  uint32_t nmaps)
{
    struct ws_error e = {0};
    char key[256];
    uint32_t b;

    for (b = 0; b < nbundles; b++) {
        ws_backup_bundle_key(repo, id, b, key, sizeof(key));
        ws_storage_remove(repo->st, key, &e);
    }
    for (b = 0; b < nmaps; b++) {
        ws_backup_map_key(repo, id, b, key, sizeof(key));
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

/* Offsets in global/pg_control (ControlFileData, the same from PostgreSQL 9.3 to 17), native
 * byte order: the system identifier, and the timeline of the latest checkpoint
 * (checkPointCopy.ThisTimeLineID). */
#define CONTROL_SYSID 0
#define CONTROL_TIMELINE 48

/* len bytes of global/pg_control at off. */
static int read_control(const char *pgdata, void *buf, size_t len, off_t off, struct ws_error *err)
{
    char path[4096];
    int fd;
    ssize_t n;

    snprintf(path, sizeof(path), "%s/global/pg_control", pgdata);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return ws_error_setsys(err, WS_ERR_CONFIG, errno,
                               "could not open file \"%s\" (is pgdata a data directory?)", path);
    n = ws_pread_full(fd, buf, len, off);
    close(fd);
    if (n != (ssize_t)len)
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
    struct ws_manifest ref; /* the reference (diff, incr); ref.id "" when none */
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
    if ((rc = read_control(c->pgdata, &sysid, sizeof(sysid), CONTROL_SYSID, err)) != 0)
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

/* ---- the reference of a diff or incr backup (docs/design/incremental.md) ------------------ */

/* Whether timeline tli, where a backup stopped at stop_lsn, is the server's timeline `current`
 * or one it descends from at or after that point (its history file in the repository). */
static int in_lineage(struct create *c, uint32_t current, uint32_t tli, uint64_t stop_lsn,
                      struct ws_error *err)
{
    struct ws_timeline_switch *sw = NULL;
    char name[32], key[256], *text = NULL;
    size_t len = 0, n = 0, i;
    int found = 0;

    if (tli == current)
        return 1;
    snprintf(name, sizeof(name), "%08" PRIX32 ".history", current);
    if (ws_repo_wal_key(&c->repo, name, key, sizeof(key)) != 0 ||
        ws_repo_get_small(&c->repo, key, &c->kr, 1u << 20, &text, &len, err) != 0 ||
        ws_timeline_history_parse(text, len, key, &sw, &n, err) != 0) {
        free(text);
        return 0;
    }
    for (i = 0; i < n; i++)
        if (sw[i].tli == tli && sw[i].end_lsn >= stop_lsn)
            found = 1;
    free(sw);
    free(text);
    return found;
}

static const struct ws_catalog_backup *catalog_find(const struct ws_catalog *cat, const char *id)
{
    size_t i;

    for (i = 0; i < cat->nbackups; i++)
        if (strcmp(cat->backups[i].id, id) == 0)
            return &cat->backups[i];
    return NULL;
}

/* The newest complete backup (a full one for diff): by start time, then id. */
static struct ws_catalog_backup *newest_candidate(struct ws_catalog *cat, int type)
{
    struct ws_catalog_backup *best = NULL;
    size_t i;

    for (i = 0; i < cat->nbackups; i++) {
        struct ws_catalog_backup *b = &cat->backups[i];
        if (b->status != WS_BACKUP_COMPLETE ||
            (type == WS_BACKUP_DIFF && b->m.type != WS_BACKUP_FULL))
            continue;
        if (!best || b->m.start_time > best->m.start_time ||
            (b->m.start_time == best->m.start_time && strcmp(b->id, best->id) > 0))
            best = b;
    }
    return best;
}

/* Why backup b cannot be the reference (into why), or 0 when it can. */
static int unusable(struct create *c, const struct ws_catalog *cat,
                    const struct ws_catalog_backup *b, uint32_t tli, char *why, size_t whysz)
{
    const struct ws_catalog_backup *link = b;
    struct ws_error e = {0};

    if (b->m.version < 2 || b->m.block_size == 0)
        return snprintf(why, whysz, "backup %s has no block digests (manifest version %d)", b->id,
                        b->m.version);
    if (b->m.pg_version / 10000 != c->info.version / 10000)
        return snprintf(why, whysz, "backup %s is of PostgreSQL %d, the server is %d", b->id,
                        b->m.pg_version / 10000, c->info.version / 10000);
    if (b->m.block_size != WS_PG_BLCKSZ)
        return snprintf(why, whysz, "backup %s has block size %" PRIu32 ", not %d", b->id,
                        b->m.block_size, WS_PG_BLCKSZ);
    if (!in_lineage(c, tli, b->m.timeline, b->m.stop_lsn, &e))
        return snprintf(why, whysz,
                        "backup %s is on timeline %" PRIu32 ", which is not in the history of "
                        "the server's timeline %" PRIu32,
                        b->id, b->m.timeline, tli);
    while (link->m.type != WS_BACKUP_FULL) {
        const char *next = link->m.reference;
        if (!(link = catalog_find(cat, next)))
            return snprintf(why, whysz, "backup %s of its chain is missing", next);
        if (link->status != WS_BACKUP_COMPLETE)
            return snprintf(why, whysz, "backup %s of its chain is %s", next,
                            ws_backup_status_name(link->status));
    }
    return 0;
}

/* diff and incr: the reference (moved from the catalog into c->ref), or a full backup and one
 * line saying why. */
static int choose_reference(struct create *c, struct ws_error *err)
{
    struct ws_catalog cat = {0};
    struct ws_catalog_backup *b;
    int type = c->cfg->backup_type, rc;
    uint32_t tli = 0;
    char why[512] = "";

    c->m.type = WS_BACKUP_FULL;
    if (type == WS_BACKUP_FULL)
        return 0;
    if ((rc = read_control(c->pgdata, &tli, sizeof(tli), CONTROL_TIMELINE, err)) != 0 ||
        (rc = ws_catalog_load(&c->repo, &c->kr, &cat, err)) != 0)
        return rc;
    if (!(b = newest_candidate(&cat, type)))
        snprintf(why, sizeof(why), "no complete %sbackup in the repository",
                 type == WS_BACKUP_DIFF ? "full " : "");
    else if (!unusable(c, &cat, b, tli, why, sizeof(why))) {
        c->ref = b->m; /* moved: the catalog no longer owns it */
        memset(&b->m, 0, sizeof(b->m));
        c->m.type = type;
        memcpy(c->m.reference, c->ref.id, sizeof(c->m.reference));
    }
    ws_catalog_free(&cat);
    if (c->m.type == WS_BACKUP_FULL)
        ws_log_warning("no usable reference for %s backup (%s): taking a full backup",
                       type == WS_BACKUP_DIFF ? "a differential" : "an incremental", why);
    else
        ws_log_info("backup %s: %s, relative to backup %s", c->m.id, ws_backup_type_name(type),
                    c->m.reference);
    return 0;
}

/* ---- the plan of the copy ------------------------------------------------------------------ */

static int cmp_record_path(const void *a, const void *b)
{
    return strcmp((*(const struct ws_bfile *const *)a)->path,
                  (*(const struct ws_bfile *const *)b)->path);
}

/* Per file, the reference's record of the same path (j->ref_of). */
static int match_reference(struct job *j, struct ws_error *err)
{
    const struct ws_bfile **sorted;
    size_t n = j->ref->nfiles, i;

    if (!(sorted = malloc((n ? n : 1) * sizeof(*sorted))) ||
        !(j->ref_of = calloc(j->nfiles ? j->nfiles : 1, sizeof(*j->ref_of)))) {
        free(sorted);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    }
    for (i = 0; i < n; i++)
        sorted[i] = &j->ref->files[i];
    qsort(sorted, n, sizeof(*sorted), cmp_record_path);
    for (i = 0; i < j->nfiles; i++) {
        struct ws_bfile want = {0};
        const struct ws_bfile *wp = &want, **hit;
        want.path = j->files[i].path;
        hit = bsearch(&wp, sorted, n, sizeof(*sorted), cmp_record_path);
        j->ref_of[i] = hit ? *hit : NULL;
    }
    free(sorted);
    return 0;
}

struct slot {
    int64_t group; /* the reference's map object holding the file's digests, or -1 */
    uint64_t map_index;
    size_t idx;
};

static int cmp_slot(const void *a, const void *b)
{
    const struct slot *x = a, *y = b;

    if (x->group != y->group)
        return x->group < y->group ? -1 : 1;
    if (x->map_index != y->map_index)
        return x->map_index < y->map_index ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int cmp_task_bytes(const void *a, const void *b)
{
    const struct ctask *x = a, *y = b;

    if (x->bytes != y->bytes)
        return x->bytes < y->bytes ? 1 : -1;
    return x->first < y->first ? -1 : x->first > y->first;
}

/* The tasks: per map object of the reference, its relation files in order; every other file on
 * its own. Largest first. */
static int plan_tasks(struct job *j, struct ws_error *err)
{
    struct slot *s = malloc((j->nfiles ? j->nfiles : 1) * sizeof(*s));
    size_t i;

    j->order = malloc((j->nfiles ? j->nfiles : 1) * sizeof(*j->order));
    j->tasks = malloc((j->nfiles ? j->nfiles : 1) * sizeof(*j->tasks));
    if (!s || !j->order || !j->tasks) {
        free(s);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    }
    for (i = 0; i < j->nfiles; i++) {
        const struct ws_bfile *ref = j->ref_of ? j->ref_of[i] : NULL;
        int grouped = ref && ref->has_map && j->files[i].relation;
        s[i].group = grouped ? (int64_t)ref->map : -1;
        s[i].map_index = grouped ? ref->map_index : 0;
        s[i].idx = i;
    }
    qsort(s, j->nfiles, sizeof(*s), cmp_slot);
    j->ntasks = 0;
    for (i = 0; i < j->nfiles; i++) {
        struct ctask *t = j->ntasks ? &j->tasks[j->ntasks - 1] : NULL;
        j->order[i] = s[i].idx;
        if (!t || s[i].group < 0 || t->ref_map != s[i].group) {
            t = &j->tasks[j->ntasks++];
            t->first = i;
            t->n = 0;
            t->ref_map = s[i].group;
            t->bytes = 0;
        }
        t->n++;
        t->bytes += j->files[s[i].idx].size;
    }
    free(s);
    qsort(j->tasks, j->ntasks, sizeof(*j->tasks), cmp_task_bytes);
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
    size_t n, i;
    int rc;

    j->cfg = c->cfg;
    j->key = ws_keyring_write_key(&c->kr);
    j->kr = &c->kr;
    j->ref = c->ref.id[0] ? &c->ref : NULL;
    j->id = c->m.id;
    j->pgdata = c->pgdata;
    j->start_lsn = c->m.start_lsn;
    j->checksums = c->info.data_checksums;
    j->files = c->w.files;
    j->nfiles = c->w.nfiles;
    j->m = &c->m;
    if ((j->ref && (rc = match_reference(j, err)) != 0) || (rc = plan_tasks(j, err)) != 0)
        return rc;
    n = ws_pool_size(o->parallel > 0 ? o->parallel : c->cfg->parallel, j->ntasks);
    /* Every bundle compresses on `parallel` zstd threads: files are never split, so near the
     * end one large relation segment may be all that is left, and it still uses every core. */
    j->zstd_workers = n > 1 ? (int)n : 0;
    if (!(j->results = calloc(c->w.nfiles + 1, sizeof(*j->results))) ||
        !(j->workers = calloc(n, sizeof(*j->workers))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    j->nworkers = n;
    for (i = 0; i < n; i++)
        j->workers[i].spill = -1;
    for (i = 0; i < n; i++)
        if (!(j->workers[i].buf = malloc(READ_BLOCK)))
            return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    pthread_mutex_init(&j->lock, NULL);
    c->lock_init = 1;
    pp.cfg = c->cfg;
    pp.env = c->env;
    pp.repo = &c->repo;
    pp.workers = n;
    pp.ntasks = j->ntasks;
    pp.task = copy_task;
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
    m->maps = (uint32_t)atomic_load(&c->j.next_map);
    m->block_size = WS_PG_BLCKSZ;
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

    for (i = 0; j->workers && i < j->nworkers; i++) {
        struct cworker *cw = &j->workers[i];
        free(cw->buf);
        free(cw->digests);
        free(cw->changed);
        free(cw->refmap);
        if (cw->spill >= 0)
            close(cw->spill);
    }
    free(j->workers);
    free(j->ref_of);
    free(j->order);
    free(j->tasks);
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
    ws_manifest_free(&c->ref);
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
        (rc = start_backup(&c, err)) != 0 || (rc = choose_reference(&c, err)) != 0 ||
        (rc = walk_files(&c, err)) != 0 || (rc = copy_files(&c, err)) != 0 ||
        (rc = stop_backup(&c, err)) != 0 || (rc = store_manifest(&c, err)) != 0)
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
    if (c.m.id[0])
        remove_backup_objects(&c.repo, c.m.id, (uint32_t)atomic_load(&c.j.next_bundle),
                              (uint32_t)atomic_load(&c.j.next_map));
done:
    create_free(&c);
    return rc;
}
