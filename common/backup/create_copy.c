/*
 * backup/create_copy.c - the copy of `basebackup create` on the worker pool (pool.h): each
 * worker reads a file (SHA-256, page checksum check) into its bundle's object writer (zstd ->
 * AEAD -> storage), a large file in pieces (manifest.h), and every relation file's block digests
 * into its map object (blockmap.h).
 *
 * With a reference (diff, incr), a task is one map object of the reference with the relation
 * files whose digests it holds (loaded once, one per worker at a time), or one other file. A
 * relation file is read once: unchanged is a REF record, else its changed blocks (kept in the
 * worker's nameless temporary file in $TMPDIR meanwhile) are a DELTA extent, or when more than
 * half changed it is read again and stored whole; another file with the reference's size is read
 * once for its SHA-256, and again to be stored when that differs (docs/design/incremental.md).
 * A tar member of a stream (create_stream.c) goes through the same copy but can be read once
 * only: a changed relation file is always a DELTA extent, another file is stored whole.
 *
 * Workers share nothing but the pool's task queue, the bundle and map counters, the byte counters
 * and (under a mutex) the manifest's bad pages; each writes its own bundle and map object through
 * its own storage handle. The first error stops every worker, whose last bundle and map object
 * are then aborted.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backup/create_int.h"
#include "backup/pool.h"
#include "base/crc32c.h"
#include "base/fs.h"
#include "base/log.h"
#include "io/hashpipe.h"
#include "io/object.h"
#include "pg/pgpage.h"
#include "repo/blockmap.h"

/* A new object writer for key into *out (compressed as configured when compress, on `workers`
 * zstd threads). */
int ws_create_object_open(struct job *j, const struct ws_repo *repo, const char *key, int compress,
                          int workers, struct ws_sink **out, struct ws_error *err)
{
    struct ws_object_params p = {0};
    struct ws_sink *put = NULL;
    int rc;

    if ((rc = ws_storage_open_put(repo->st, key, 0, &put, err)) != 0)
        return rc;
    p.name = key;
    p.compress = compress ? j->cfg->compress : WS_COMPRESS_NONE;
    p.level = j->cfg->compress_level;
    p.workers = compress ? workers : 0;
    p.content_size = -1;
    p.key = j->key;
    p.no_digest = 1; /* every file's SHA-256 is in the manifest; digests are checked by count */
    return ws_object_writer_new(put, &p, out, err);
}

/* Finishes a writer (adding its stored bytes), or frees it unfinished after a failure. */
int ws_create_object_close(struct job *j, struct ws_sink **s, int failed, struct ws_error *err)
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

/*
 * Bundles of small files compress on the worker's own thread: the pool's workers are the
 * parallelism, and zstd threads on top of them cost memory per worker (incremental.md, "Memory").
 * A file of WS_PIECE_SIZE or more goes into bundles that compress on zstd_workers threads: near
 * the end of a backup one large relation segment may be all that is left, and it still uses
 * every core (a full backup of pgbench scale 70 took 3.16 s instead of 1.82 s without). A stream
 * has one worker: all its bundles compress on `parallel` threads (create_stream.c).
 */
static int bundle_open(struct job *j, struct bundle_out *b, int mt, struct ws_error *err)
{
    char key[256];

    b->no = (uint32_t)atomic_fetch_add(&j->next_bundle, 1);
    b->len = 0;
    b->mt = mt;
    ws_backup_bundle_key(b->repo, j->id, b->no, key, sizeof(key));
    return ws_create_object_open(j, b->repo, key, 1, mt ? j->zstd_workers : 0, &b->sink, err);
}

static int bundle_close(struct job *j, struct bundle_out *b, struct ws_error *err)
{
    return ws_create_object_close(j, &b->sink, 0, err);
}

/* The worker's bundle for `len` more bytes, opened when it has none or when its threading does
 * not suit them (bundle_open). */
static int bundle_ready(struct job *j, struct bundle_out *b, uint64_t len, struct ws_error *err)
{
    int mt = j->zstd_workers > 0 && len >= j->mt_from, rc;

    if (b->sink && b->mt != mt && (rc = bundle_close(j, b, err)) != 0)
        return rc;
    return b->sink ? 0 : bundle_open(j, b, mt, err);
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
        if ((rc = ws_create_object_open(j, cw->out.repo, key, 0, 0, &mo->sink, err)) != 0)
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
        return ws_create_object_close(j, &mo->sink, 0, err);
    return 0;
}

/* Where a file's bytes come from: a local file, read with pread as often as needed, or a tar
 * member of a stream, read once in order (`once`), whose CRC-32C read_pass also computes (the
 * server's manifest holds one per file: create_stream.c cross-checks them). */
struct source {
    int fd;             /* -1: the tar member */
    struct ws_tar *tar; /* at the member's data */
    const char *what;   /* names it in messages */
    int once;
    uint32_t crc32c; /* once: of the bytes read */
};

/* Up to want bytes at file offset off (the next ones of a tar member) into buf: fewer only at
 * the end. */
static ssize_t source_read(struct source *src, uint8_t *buf, size_t want, uint64_t off,
                           struct ws_error *err)
{
    size_t done = 0, got;
    ssize_t n;

    if (src->fd >= 0) {
        if ((n = ws_pread_full(src->fd, buf, want, (off_t)off)) < 0)
            ws_error_setsys(err, WS_ERR_IO, errno, "could not read file \"%s\"", src->what);
        return n;
    }
    while (done < want) {
        if (ws_tar_read(src->tar, buf + done, want - done, &got, err) != 0)
            return -1;
        if (got == 0)
            break;
        done += got;
    }
    return (ssize_t)done;
}

struct badpage_ctx {
    struct job *job;
    const char *path;
    struct source *src;
    uint32_t segno;
    int count;
    struct ws_error err; /* the first failure to record one */
};

static void still_bad(void *arg, uint32_t block)
{
    (void)block;
    *(int *)arg = 1;
}

/* A page of a local file that failed is read again once: PostgreSQL may have been writing it (a
 * torn read). The server re-read a streamed one already (docs/design/remote.md). */
static void on_bad_page(void *arg, uint32_t block)
{
    struct badpage_ctx *c = arg;
    struct ws_error err = {0};
    uint8_t page[WS_PG_BLCKSZ];
    int bad = 0;

    if (c->src->fd >= 0) {
        /* a page that is gone now was truncated away: not worth a warning either */
        if (ws_pread_full(c->src->fd, page, sizeof(page), (off_t)block * WS_PG_BLCKSZ) !=
            (ssize_t)sizeof(page))
            return;
        ws_pg_check_pages(page, sizeof(page), c->segno, block, c->job->start_lsn, still_bad, &bad);
        if (!bad)
            return;
    }

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

    if ((rc = bundle_close(j, b, err)) != 0 ||
        (rc = bundle_open(j, b, j->zstd_workers > 0, err)) != 0)
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

int ws_create_grow(void **p, size_t *cap, size_t need, size_t sz, struct ws_error *err)
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

    if ((rc = ws_create_grow((void **)&cw->digests, &cw->capdigests, cw->ndigests + nb,
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
        if ((rc = ws_create_grow((void **)&cw->changed, &cw->capchanged, cw->nchanged + 1,
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

/* What read_pass hashes, on the hashing thread for a large file: SHA-256, and a streamed file's
 * CRC-32C (crc_on). */
struct hashes {
    EVP_MD_CTX *md;
    int crc_on;
    uint32_t crc;
};

static int hashes_update(void *ctx, const void *buf, size_t len)
{
    struct hashes *h = ctx;

    if (h->crc_on)
        h->crc = ws_crc32c(h->crc, buf, len);
    return EVP_DigestUpdate(h->md, buf, len);
}

/* Reads the source bp->src once from its start: SHA-256 and size into r (and a member's CRC-32C
 * into the source), and what p asks. */
static int read_pass(struct job *j, struct cworker *cw, struct ws_pool_worker *pw,
                     const struct entry *e, struct ws_bfile *r, struct badpage_ctx *bp,
                     const struct pass *p, struct ws_error *err)
{
    struct hashes h = {NULL, bp->src->once, 0};
    struct ws_hashpipe *hp = NULL; /* the hashes on their own thread (incremental.md, "Speed") */
    uint64_t off = 0;
    int rc = 0;

    cw->ndigests = cw->nchanged = 0;
    cw->spill_len = 0;
    if (!(h.md = EVP_MD_CTX_new()) || EVP_DigestInit_ex(h.md, EVP_sha256(), NULL) != 1) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "could not initialize SHA-256");
        goto out;
    }
    if ((rc = ws_hashpipe_start(hashes_update, &h, e->size, &hp, err)) != 0)
        goto out;
    if (p->store) {
        if ((rc = bundle_ready(j, &cw->out, e->size, err)) != 0)
            goto out;
        r->bundle = cw->out.no;
        r->offset = cw->out.len;
    }
    for (;;) {
        ssize_t n = source_read(bp->src, cw->buf, READ_BLOCK, off, err);
        if (n < 0) {
            rc = err->code;
            goto out;
        }
        if (n == 0)
            break;
        if (p->check && e->relation && j->checksums)
            ws_pg_check_pages(cw->buf, (size_t)n, e->segno, (uint32_t)(off / WS_PG_BLCKSZ),
                              j->start_lsn, on_bad_page, bp);
        if ((rc = ws_hashpipe_update(hp, cw->buf, (size_t)n, err)) != 0)
            goto out;
        if ((p->digest && (rc = digest_blocks(cw, p, off, (size_t)n, err)) != 0) ||
            (p->store && (rc = store_bytes(j, cw, r, off, (size_t)n, err)) != 0))
            goto out;
        off += (uint64_t)n;
        if (p->progress)
            ws_pool_progress(pw, (uint64_t)n);
        if ((size_t)n < READ_BLOCK)
            break;
    }
    if ((rc = ws_hashpipe_finish(hp, err)) != 0)
        goto out;
    if (EVP_DigestFinal_ex(h.md, r->sha256, NULL) != 1) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "SHA-256 failed");
        goto out;
    }
    r->size = off;
    bp->src->crc32c = h.crc;
out:
    ws_hashpipe_free(hp); /* before h, which its thread may be using */
    EVP_MD_CTX_free(h.md);
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

    if ((rc = bundle_ready(j, b, WS_DELTA_HEADER + 4 * (uint64_t)cw->nchanged + cw->spill_len,
                           err)) != 0)
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
 * its changed blocks (DELTA), or, when more than half of them changed and the source can be read
 * again, whole. */
static int copy_relation_incr(struct job *j, struct cworker *cw, struct ws_pool_worker *pw,
                              const struct entry *e, const struct ws_bfile *ref, struct ws_bfile *r,
                              struct badpage_ctx *bp, struct ws_error *err)
{
    uint64_t nref = ws_blockmap_blocks(ref->size, WS_PG_BLCKSZ);
    struct pass p = {0, 1, 1, NULL, nref, !bp->src->once};
    struct pass whole = {1, 0, 1, NULL, 0, 0};
    int rc;

    if (ref->map_index > cw->refmap_len / WS_BLOCK_DIGEST_SIZE ||
        nref > cw->refmap_len / WS_BLOCK_DIGEST_SIZE - ref->map_index)
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "map object %" PRIu32 " of backup %s does not hold the digests of "
                            "\"%s\"",
                            ref->map, j->ref->id, e->path);
    p.ref = cw->refmap + ref->map_index * WS_BLOCK_DIGEST_SIZE;
    if ((rc = read_pass(j, cw, pw, e, r, bp, &p, err)) != 0)
        return rc;
    if (cw->nchanged == 0 && r->size == ref->size) {
        r->kind = WS_BFILE_REF;
        set_base(j, ref, r);
        return 0;
    }
    if (bp->src->once || 2 * (uint64_t)cw->nchanged <= ws_blockmap_blocks(r->size, WS_PG_BLCKSZ)) {
        set_base(j, ref, r);
        return store_delta(j, cw, r, err);
    }
    return read_pass(j, cw, pw, e, r, bp, &whole, err);
}

/* Any other file with a reference record of the same size: read once for its SHA-256; the same
 * is a REF, else it is read again and stored whole. */
static int copy_if_changed(struct job *j, struct cworker *cw, struct ws_pool_worker *pw,
                           const struct entry *e, const struct ws_bfile *ref, struct ws_bfile *r,
                           struct badpage_ctx *bp, struct ws_error *err)
{
    struct pass p = {0, 1, e->relation, NULL, 0, 1};
    struct pass whole = {1, 0, e->relation, NULL, 0, 0};
    int rc;

    if ((rc = read_pass(j, cw, pw, e, r, bp, &p, err)) != 0)
        return rc;
    if (r->size == ref->size && memcmp(r->sha256, ref->sha256, sizeof(r->sha256)) == 0) {
        r->kind = WS_BFILE_REF;
        set_base(j, ref, r);
        return 0;
    }
    return read_pass(j, cw, pw, e, r, bp, &whole, err);
}

/* Copies file e from src as the reference record ref allows (whole without one) into r; relation
 * files get their digests recorded. A source read once is stored while it is read (a file with
 * the reference's size too: comparing it first would need a second read). */
static int copy_source(struct job *j, struct cworker *cw, struct ws_pool_worker *pw,
                       const struct entry *e, const struct ws_bfile *ref, struct source *src,
                       struct ws_bfile *r, struct ws_error *err)
{
    struct badpage_ctx bp = {j, e->path, src, e->segno, 0, {0}};
    struct pass whole = {1, 1, e->relation, NULL, 0, !src->once};
    int rc;

    if (ref && e->relation && ref->has_map && cw->refmap)
        rc = copy_relation_incr(j, cw, pw, e, ref, r, &bp, err);
    else if (ref && ref->size == e->size && !src->once)
        rc = copy_if_changed(j, cw, pw, e, ref, r, &bp, err);
    else
        rc = read_pass(j, cw, pw, e, r, &bp, &whole, err);
    if (rc == 0 && bp.err.code) {
        *err = bp.err;
        rc = err->code;
    }
    if (rc == 0 && e->relation)
        rc = map_record(j, cw, r, err);
    if (rc != 0)
        return rc;
    if (bp.count)
        ws_log_warning("file \"%s\": %d page(s) failed checksum verification", src->what, bp.count);
    r->path = e->path;
    r->mode = e->mode;
    r->mtime = e->mtime;
    return cw->out.len >= WS_BUNDLE_TARGET ? bundle_close(j, &cw->out, err) : 0;
}

/* Copies file idx of the walk. A file that vanished is skipped (its result's path stays NULL). */
static int copy_file(struct job *j, struct cworker *cw, struct ws_pool_worker *pw, size_t idx,
                     struct ws_error *err)
{
    struct entry *e = &j->files[idx];
    struct ws_bfile *r = &j->results[idx];
    struct source src = {-1, NULL, NULL, 0, 0};
    char abs[4096];
    struct stat st;
    int rc;

    snprintf(abs, sizeof(abs), "%s/%s", j->pgdata, e->path);
    src.what = abs;
    src.fd = open(abs, O_RDONLY | O_NOATIME | O_CLOEXEC);
    if (src.fd < 0 && errno == EPERM)
        src.fd = open(abs, O_RDONLY | O_CLOEXEC);
    if (src.fd < 0) {
        if (errno == ENOENT) {
            ws_log_info("file \"%s\" vanished during the backup (WAL replay handles it)", abs);
            return 0;
        }
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not open file \"%s\"", abs);
    }
    rc = copy_source(j, cw, pw, e, j->ref_of ? j->ref_of[idx] : NULL, &src, r, err);
    if (rc == 0 && fstat(src.fd, &st) == 0)
        r->mtime = st.st_mtime;
    close(src.fd);
    return rc;
}

int ws_create_copy_member(struct job *j, struct cworker *cw, struct ws_pool_worker *pw,
                          const struct entry *e, const struct ws_bfile *ref, struct ws_tar *tar,
                          struct ws_bfile *r, uint32_t *crc32c, struct ws_error *err)
{
    struct source src = {-1, tar, e->path, 1, 0};
    int rc;

    cw->out.repo = &pw->repo;
    rc = copy_source(j, cw, pw, e, ref, &src, r, err);
    *crc32c = src.crc32c;
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
int ws_create_copy_end(void *arg, struct ws_pool_worker *pw, struct ws_error *err)
{
    struct job *j = arg;
    struct cworker *cw = &j->workers[pw->index];
    int failed = ws_pool_failed(pw), rc;

    rc = ws_create_object_close(j, &cw->out.sink, failed, err);
    if (rc == 0)
        rc = ws_create_object_close(j, &cw->map.sink, failed, err);
    else
        ws_create_object_close(j, &cw->map.sink, 1, err);
    return rc;
}

int ws_create_store_small_file(struct job *j, const struct ws_repo *repo, const char *name,
                               const char *text, struct ws_bfile *out, struct ws_error *err)
{
    struct bundle_out b = {repo, NULL, 0, 0, 0};
    EVP_MD_CTX *md = NULL;
    size_t len = strlen(text);
    unsigned int mdlen;
    int rc;

    if ((rc = bundle_open(j, &b, 0, err)) != 0)
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

int ws_create_job_init(struct create *c, size_t n, struct ws_error *err)
{
    struct job *j = &c->j;
    size_t i;

    j->cfg = c->cfg;
    j->key = ws_keyring_write_key(&c->kr);
    j->kr = &c->kr;
    j->ref = c->ref.id[0] ? &c->ref : NULL;
    j->id = c->m.id;
    j->pgdata = c->pgdata;
    j->start_lsn = c->m.start_lsn;
    j->checksums = c->info.data_checksums;
    j->m = &c->m;
    j->zstd_workers = n > 1 ? (int)n : 0; /* for large files' bundles (bundle_open) */
    j->mt_from = WS_PIECE_SIZE;
    if (!(j->workers = calloc(n, sizeof(*j->workers))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    j->nworkers = n;
    for (i = 0; i < n; i++)
        j->workers[i].spill = -1;
    for (i = 0; i < n; i++)
        if (!(j->workers[i].buf = malloc(READ_BLOCK)))
            return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    pthread_mutex_init(&j->lock, NULL);
    c->lock_init = 1;
    return 0;
}

/* global/pg_control's task moved to the end of the plan: 1, or 0 when there is none. */
static int control_last(struct job *j)
{
    struct ctask t;

    for (size_t i = 0; i < j->ntasks; i++)
        if (j->tasks[i].n == 1 &&
            strcmp(j->files[j->order[j->tasks[i].first]].path, "global/pg_control") == 0) {
            t = j->tasks[i];
            memmove(&j->tasks[i], &j->tasks[i + 1], (j->ntasks - i - 1) * sizeof(t));
            j->tasks[j->ntasks - 1] = t;
            return 1;
        }
    return 0;
}

/* The last task of the plan (pg_control's), as the only task of a pool of its own. */
static int copy_last_task(void *arg, struct ws_pool_worker *pw, size_t t, struct ws_error *err)
{
    struct job *j = arg;

    (void)t;
    return copy_task(arg, pw, j->ntasks - 1, err);
}

/* Copies every file into bundles with the worker pool; global/pg_control after the pool finished
 * every other one, on a pool of one worker: PostgreSQL ends the recovery of a standby's backup at
 * the minimum recovery point of the pg_control it holds, "assuming pg_control was backed up
 * last" (xlog.c; docs/design/remote.md, "A local backup of a standby"). */
int ws_create_copy_files(struct create *c, struct ws_error *err)
{
    struct job *j = &c->j;
    struct ws_pool_params pp = {0};
    const struct ws_backup_opts *o = c->o;
    uint64_t rest;
    size_t n;
    int control;
    int rc;

    j->ref = c->ref.id[0] ? &c->ref : NULL;
    j->files = c->w.files;
    j->nfiles = c->w.nfiles;
    if ((j->ref && (rc = ws_create_match_reference(c, err)) != 0) || (rc = plan_tasks(j, err)) != 0)
        return rc;
    control = control_last(j);
    n = ws_pool_size(o->parallel > 0 ? o->parallel : c->cfg->parallel, j->ntasks - control);
    if ((rc = ws_create_job_init(c, n, err)) != 0)
        return rc;
    /* room for backup_label and tablespace_map (create.c) */
    if (!(j->results = calloc(c->w.nfiles + 2, sizeof(*j->results))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    j->nresults = c->w.nfiles;
    pp.cfg = c->cfg;
    pp.env = c->env;
    pp.repo = &c->repo;
    pp.workers = n;
    pp.ntasks = j->ntasks - control;
    pp.task = copy_task;
    pp.end = ws_create_copy_end;
    pp.arg = j;
    pp.progress = o->progress;
    rest = control ? j->tasks[j->ntasks - 1].bytes : 0;
    pp.total_bytes = c->w.total > rest ? c->w.total - rest : 0;
    if ((rc = ws_pool_run(&pp, err)) != 0 || !control)
        return rc;
    pp.workers = 1; /* the caller's storage handle: nothing more is opened */
    pp.ntasks = 1;
    pp.task = copy_last_task;
    pp.progress = 0; /* its bytes are left off the progress line */
    return ws_pool_run(&pp, err);
}
