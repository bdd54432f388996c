/*
 * backup/restore_patch.c - `restore --delta` for relation files: blocks compared with the
 * target's digests (repo/blockmap.h), only the differing ones fetched, newest layer first
 * (docs/design/incremental.md, "Delta restore").
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup/pool.h"
#include "backup/restore_int.h"
#include "base/log.h"
#include "io/hashpipe.h"

#define READ_BUF (1u << 20)

/* A file being patched: the blocks still to fetch, and the SHA-256 of its bytes [0, sha_off),
 * which are the target's (every block before the first differing one matched). */
struct patch {
    size_t i; /* file of r->m */
    uint8_t *bits;
    uint64_t nbits;
    EVP_MD_CTX *md;
    uint64_t sha_off;
};

struct ws_restore_patches {
    struct patch *p; /* sorted by i once the compare pass is over */
    size_t n, cap;
    pthread_mutex_t lock;
};

int ws_restore_by_blocks(const struct restore *r, const struct ws_bfile *f)
{
    return f->has_map && f->map < r->m->maps && r->m->block_size > 0 &&
           READ_BUF % r->m->block_size == 0 && strcmp(f->path, "global/pg_control") != 0;
}

/* ---- the compare pass --------------------------------------------------------------------- */

/* A worker's: its cursor, read buffer, and the last map object it loaded. */
struct cworker {
    struct ws_tree_cursor c;
    uint8_t *buf;
    uint8_t *map; /* NULL: none loaded, or map object `mapno` could not be read */
    size_t maplen;
    int64_t mapno;
};

struct cjob {
    const struct restore *r;
    const struct ws_tree *tree;
    uint8_t *want;
    struct ws_restore_patches *ps;
    size_t *order; /* the files compared by blocks, by map object: one task each */
    size_t norder;
    struct cworker *w;
};

/* What one file's blocks say. */
struct scan {
    uint8_t *bits;
    uint64_t ndiff, sha_off;
    EVP_MD_CTX *md;
    struct ws_hashpipe *hp; /* feeds md while the file is read (incremental.md, "Speed") */
};

static void mark(struct scan *s, uint64_t b, uint32_t bs)
{
    if (s->ndiff++ == 0)
        s->sha_off = b * bs;
    s->bits[b / 8] |= (uint8_t)(1u << (b % 8));
}

/* The blocks of buf (n bytes read at off, lim the end of what is compared) against the digests
 * from block 0 of the file on; SHA-256 fed while nothing differed. */
static int scan_chunk(struct scan *s, const struct ws_bfile *f, uint32_t bs, const uint8_t *dg,
                      const uint8_t *buf, size_t n, uint64_t off, struct ws_error *err)
{
    int rc;

    for (size_t q = 0; q < n; q += bs) {
        uint64_t at = off + q, b = at / bs, tlen = f->size - at < bs ? f->size - at : bs;
        uint8_t got[WS_BLOCK_DIGEST_SIZE];
        size_t k = n - q < bs ? n - q : bs;
        if (k < tlen) {
            mark(s, b, bs);
            continue;
        }
        ws_block_digest(buf + q, (size_t)tlen, got);
        if (memcmp(got, dg + b * WS_BLOCK_DIGEST_SIZE, WS_BLOCK_DIGEST_SIZE) != 0)
            mark(s, b, bs);
        else if (s->ndiff == 0 && (rc = ws_hashpipe_update(s->hp, buf + q, (size_t)tlen, err)))
            return rc;
    }
    return 0;
}

/* Reads the existing file (esize bytes) at fd block by block against dg (f's digests). */
static int scan_file(struct scan *s, int fd, uint64_t esize, const struct ws_bfile *f, uint32_t bs,
                     const uint8_t *dg, uint8_t *buf, const char *dir, struct ws_error *err)
{
    uint64_t nb = ws_blockmap_blocks(f->size, bs), lim = esize < f->size ? esize : f->size, off;
    int rc;

    s->sha_off = f->size;
    if ((rc = ws_hashpipe_start(ws_hashpipe_evp, s->md, lim, &s->hp, err)) != 0)
        return rc;
    for (off = 0; off < lim && s->ndiff * 2 <= nb;) {
        size_t want = lim - off < READ_BUF ? (size_t)(lim - off) : READ_BUF;
        ssize_t n = ws_pread_full(fd, buf, want, (off_t)off);
        if (n < 0)
            return ws_error_setsys(err, WS_ERR_IO, errno, "could not read file \"%s/%s\"", dir,
                                   f->path);
        if (n == 0)
            break; /* shorter than it said: what is left differs */
        if ((rc = scan_chunk(s, f, bs, dg, buf, (size_t)n, off, err)) != 0)
            return rc;
        off += (uint64_t)n;
    }
    for (uint64_t b = ws_blockmap_blocks(off, bs); b < nb && s->ndiff * 2 <= nb; b++)
        mark(s, b, bs);
    return ws_hashpipe_finish(s->hp, err);
}

static int add_patch(struct ws_restore_patches *ps, size_t i, struct scan *s, uint64_t nb,
                     struct ws_error *err)
{
    int rc = 0;

    pthread_mutex_lock(&ps->lock);
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 64;
        struct patch *p = realloc(ps->p, cap * sizeof(*p));
        if (!p)
            rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        else
            ps->p = p, ps->cap = cap;
    }
    if (rc == 0) {
        struct patch *p = &ps->p[ps->n++];
        p->i = i;
        p->bits = s->bits;
        p->nbits = nb;
        p->md = s->md;
        p->sha_off = s->sha_off;
        s->bits = NULL;
        s->md = NULL;
    }
    pthread_mutex_unlock(&ps->lock);
    return rc;
}

/* File i of r->m against its digests dg: left alone, to patch, or wanted whole. */
static int compare_file(struct cjob *j, struct ws_tree_cursor *c, uint8_t *buf, size_t i,
                        const uint8_t *dg, struct ws_error *err)
{
    const struct ws_bfile *f = &j->r->m->files[i];
    uint32_t bs = j->r->m->block_size;
    uint64_t nb = ws_blockmap_blocks(f->size, bs);
    struct scan s = {0};
    struct stat st;
    int fd = -1, rc, match = 0;

    if ((rc = ws_tree_open(j->tree, c, f->path, O_RDONLY | O_NONBLOCK, 0, &fd, err)) != 0) {
        if (err->sys_errno != ENOENT)
            return rc;
        memset(err, 0, sizeof(*err));
        j->want[i] = 1;
        return 0;
    }
    if (fstat(fd, &st) != 0) {
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not stat \"%s/%s\"", j->tree->name,
                             f->path);
        goto out;
    }
    if (!ws_restore_own_file(&st) || !(s.bits = calloc(nb / 8 + 1, 1)) ||
        !(s.md = EVP_MD_CTX_new()) || EVP_DigestInit_ex(s.md, EVP_sha256(), NULL) != 1) {
        j->want[i] = 1; /* odd (hard-linked, another user's), or out of memory: rebuilt whole */
        goto out;
    }
    if ((rc = scan_file(&s, fd, (uint64_t)st.st_size, f, bs, dg, buf, j->tree->name, err)) != 0)
        goto out;
    if (s.ndiff * 2 > nb) {
        j->want[i] = 1;
    } else if (s.ndiff == 0 && (uint64_t)st.st_size == f->size) {
        /* every digest matched: the SHA-256 must too (else rebuilt and checked whole) */
        if ((rc = ws_restore_sha_rest(fd, f, s.md, f->size, buf, &match, err)) == 0 && !match)
            j->want[i] = 1;
        else if (rc == 0)
            rc = ws_restore_keep_mode(j->r, fd, &st, f, j->tree->name, err);
    } else {
        rc = add_patch(j->ps, i, &s, nb, err);
    }
out:
    free(s.bits);
    ws_hashpipe_free(s.hp); /* before md, which its thread may be using */
    EVP_MD_CTX_free(s.md);
    if (fd >= 0)
        close(fd);
    return rc;
}

/* Map object t of r->m into w (kept until a file of another one comes). A missing or damaged one
 * is no failure: its files are compared whole, by rebuilding them. */
static int load_map(struct cjob *j, struct cworker *w, struct ws_repo *repo, uint32_t t,
                    struct ws_error *err)
{
    int rc;

    if (w->mapno == (int64_t)t)
        return 0;
    free(w->map);
    w->map = NULL;
    w->maplen = 0;
    w->mapno = t;
    rc = ws_blockmap_load(repo, j->r->kr, j->r->m->id, t, &w->map, &w->maplen, err);
    if (rc == WS_ERR_NOT_FOUND || rc == WS_ERR_CORRUPT) {
        ws_log(WS_LOG_WARNING, "backup %s: %s; its files are compared whole", j->r->m->id,
               err->msg);
        memset(err, 0, sizeof(*err));
        return 0;
    }
    if (rc)
        ws_error_prefix(err, "backup %s", j->r->m->id);
    return rc;
}

/* A pool task: file order[x] of r->m against its digests. */
static int compare_task(void *arg, struct ws_pool_worker *pw, size_t x, struct ws_error *err)
{
    struct cjob *j = arg;
    struct cworker *w = &j->w[pw->index];
    const struct ws_bfile *f = &j->r->m->files[j->order[x]];
    uint64_t nb = ws_blockmap_blocks(f->size, j->r->m->block_size), have;
    int rc;

    if ((rc = load_map(j, w, &pw->repo, f->map, err)) != 0)
        return rc;
    have = w->maplen / WS_BLOCK_DIGEST_SIZE;
    if (!w->map || f->map_index > have || nb > have - f->map_index)
        j->want[j->order[x]] = 1; /* digests missing: compared whole by rebuilding */
    else if ((rc = compare_file(j, &w->c, w->buf, j->order[x],
                                w->map + f->map_index * WS_BLOCK_DIGEST_SIZE, err)) != 0)
        return rc;
    ws_pool_progress(pw, f->size);
    return 0;
}

/* Files of WS_PIECE_SIZE or more first, largest first: the largest one's compare, and then its
 * SHA-256, is the longest path of a delta restore, and it starts at once instead of after every
 * file of the map objects before its own (incremental.md, "Speed"). Then the others by map
 * object. */
static int cmp_order(const void *a, const void *b, void *arg)
{
    const struct ws_bfile *x = &((const struct ws_manifest *)arg)->files[*(const size_t *)a],
                          *y = &((const struct ws_manifest *)arg)->files[*(const size_t *)b];
    int xl = x->size >= WS_PIECE_SIZE, yl = y->size >= WS_PIECE_SIZE;

    if (xl != yl)
        return xl ? -1 : 1;
    if (xl && x->size != y->size)
        return x->size > y->size ? -1 : 1;
    if (x->map != y->map)
        return x->map < y->map ? -1 : 1;
    return x->map_index < y->map_index ? -1 : x->map_index > y->map_index;
}

/* j->order: the files compared by blocks, large ones first, the others by map object (a worker
 * loads each map object about once; a large file may cost one more load, at most 4 MiB against
 * its 64 MiB or more). */
static int order_tasks(struct cjob *j, struct ws_error *err)
{
    const struct ws_manifest *m = j->r->m;

    if (!(j->order = malloc((m->nfiles ? m->nfiles : 1) * sizeof(*j->order))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    for (size_t i = 0; i < m->nfiles; i++)
        if (ws_restore_by_blocks(j->r, &m->files[i]))
            j->order[j->norder++] = i;
    qsort_r(j->order, j->norder, sizeof(*j->order), cmp_order, (void *)m);
    return 0;
}

static int cmp_patch(const void *a, const void *b)
{
    const struct patch *x = a, *y = b;

    return x->i < y->i ? -1 : x->i > y->i;
}

int ws_restore_patch_compare(const struct restore *r, struct ws_repo *repo,
                             const struct ws_tree *tree, uint8_t *want,
                             struct ws_restore_patches **out, struct ws_error *err)
{
    struct cjob j = {0};
    struct ws_pool_params pp = {0};
    size_t workers = 0;
    int rc = 0;

    j.r = r;
    j.tree = tree;
    j.want = want;
    if (!(*out = j.ps = calloc(1, sizeof(*j.ps))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    pthread_mutex_init(&j.ps->lock, NULL);
    if ((rc = order_tasks(&j, err)) != 0 || j.norder == 0)
        goto out;
    workers = ws_pool_size(r->o->parallel > 0 ? r->o->parallel : r->cfg->parallel, j.norder);
    if (!(j.w = calloc(workers, sizeof(*j.w)))) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < workers; i++) {
        j.w[i].c.fd = -1;
        j.w[i].mapno = -1;
        if (!(j.w[i].buf = malloc(READ_BUF))) {
            rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
            goto out;
        }
    }
    pp.cfg = r->cfg;
    pp.env = r->env;
    pp.repo = repo;
    pp.workers = workers;
    pp.ntasks = j.norder;
    pp.task = compare_task;
    pp.arg = &j;
    pp.progress = r->o->progress;
    pp.total_bytes = r->m->bytes;
    if ((rc = ws_pool_run(&pp, err)) == 0 && j.ps->n > 1)
        qsort(j.ps->p, j.ps->n, sizeof(*j.ps->p), cmp_patch);
out:
    for (size_t i = 0; j.w && i < workers; i++) {
        ws_tree_cursor_close(&j.w[i].c);
        free(j.w[i].buf);
        free(j.w[i].map);
    }
    free(j.w);
    free(j.order);
    return rc;
}

/* ---- fetching the differing blocks, newest layer first ------------------------------------ */

/* A record of a layer and the file it patches. */
struct source {
    const struct ws_bfile *rec;
    struct patch *p;
};

struct fetch {
    struct source *src; /* sorted by rec */
    size_t nsrc;
};

static int cmp_source(const void *a, const void *b)
{
    const struct ws_bfile *x = ((const struct source *)a)->rec,
                          *y = ((const struct source *)b)->rec;

    return x < y ? -1 : x > y;
}

/* bundle.h's patch callback: the bitmap of the file a record patches. */
static uint8_t *unresolved(void *arg, const struct ws_bfile *rec, uint64_t *nbits)
{
    const struct fetch *fx = arg;
    struct source key = {rec, NULL}, *hit;

    hit = bsearch(&key, fx->src, fx->nsrc, sizeof(*fx->src), cmp_source);
    if (!hit)
        return NULL;
    *nbits = hit->p->nbits;
    return hit->p->bits;
}

static int pending(const struct patch *p)
{
    for (uint64_t x = 0; x < p->nbits / 8 + 1; x++)
        if (p->bits[x])
            return 1;
    return 0;
}

static int any_pending(const struct ws_restore_patches *ps)
{
    for (size_t x = 0; x < ps->n; x++)
        if (pending(&ps->p[x]))
            return 1;
    return 0;
}

/* Layer k's records of the files with blocks still to fetch whose base is k or older. */
static int layer_sources(const struct ws_restore_layer *l, struct ws_restore_patches *ps,
                         struct fetch *fx, const struct ws_bfile **recs, struct ws_error *err)
{
    int rc;

    fx->nsrc = 0;
    for (size_t x = 0; x < ps->n; x++) {
        const struct ws_bfile *tf = &l->r->m->files[ps->p[x].i], *lf;
        size_t j;
        if (!pending(&ps->p[x]))
            continue;
        if ((rc = ws_restore_base_layer(l->r, tf, &j, err)) != 0)
            return rc;
        if (j > l->k)
            continue;
        if ((rc = ws_restore_layer_part(l, tf, j, &lf, err)) != 0)
            return rc;
        if (lf) {
            recs[fx->nsrc] = lf;
            fx->src[fx->nsrc].rec = lf;
            fx->src[fx->nsrc++].p = &ps->p[x];
        }
    }
    qsort(fx->src, fx->nsrc, sizeof(*fx->src), cmp_source);
    return 0;
}

/* Layer k: the blocks it stored of files still wanting them, from its bundles holding them. */
static int fetch_layer(const struct restore *r, struct ws_repo *repo, const struct ws_tree *tree,
                       size_t k, struct ws_restore_patches *ps, struct fetch *fx,
                       const struct ws_bfile **recs, struct ws_error *err)
{
    struct ws_restore_layer l;
    struct ws_bundle_opts bo = {0};
    int rc;

    if ((rc = ws_restore_layer_open(r, repo, k, &l, err)) != 0 ||
        (rc = layer_sources(&l, ps, fx, recs, err)) != 0 || fx->nsrc == 0)
        goto out;
    ws_log_info("backup %s: patching from layer %zu of %zu (backup %s, %zu records)", r->m->id,
                k + 1, r->nchain, r->chain[k], fx->nsrc);
    bo.tree = tree;
    bo.group_access = r->group_access;
    bo.problem = ws_restore_report_problem;
    bo.block_size = l.m->block_size;
    bo.sparse = 1;
    bo.patch = unresolved;
    bo.patch_arg = fx;
    rc = ws_restore_bundles_of(r, repo, l.m, recs, fx->nsrc, &bo, err);
out:
    ws_restore_layer_close(&l);
    return rc;
}

static struct patch *patch_of(struct ws_restore_patches *ps, size_t i)
{
    struct patch key = {0};

    key.i = i;
    return bsearch(&key, ps->p, ps->n, sizeof(*ps->p), cmp_patch);
}

struct finish {
    const struct restore *r;
    struct ws_restore_patches *ps;
};

/* File i, when patched: settled, its SHA-256 finished from the state the compare pass kept. */
static int finish_file(void *arg, const struct ws_tree *tree, struct ws_tree_cursor *c,
                       uint8_t *buf, size_t i, struct ws_error *err)
{
    const struct finish *fin = arg;
    struct patch *p = patch_of(fin->ps, i);

    if (!p)
        return 0;
    return ws_restore_settle_file(fin->r, tree, c, &fin->r->m->files[i], p->md, p->sha_off, buf,
                                  "its differing blocks were patched", err);
}

int ws_restore_patch(const struct restore *r, struct ws_repo *repo, const struct ws_tree *tree,
                     struct ws_restore_patches *ps, struct ws_error *err)
{
    struct fetch fx = {0};
    const struct ws_bfile **recs = NULL;
    int rc = 0;

    if (ps->n == 0)
        return 0;
    if (!(fx.src = calloc(ps->n, sizeof(*fx.src))) || !(recs = calloc(ps->n, sizeof(*recs)))) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        goto out;
    }
    /* the first layer to store a block holds its final content: older ones are not read once
     * nothing is left to fetch */
    for (size_t k = r->nchain; k-- > 0 && rc == 0 && any_pending(ps);)
        rc = fetch_layer(r, repo, tree, k, ps, &fx, recs, err);
    if (rc == 0) {
        struct finish fin = {r, ps};
        rc = ws_restore_each_file(r, repo, tree, finish_file, &fin, err);
    }
out:
    free(fx.src);
    free(recs);
    return rc;
}

size_t ws_restore_patch_count(const struct ws_restore_patches *p)
{
    return p ? p->n : 0;
}

void ws_restore_patches_free(struct ws_restore_patches *p)
{
    if (!p)
        return;
    for (size_t x = 0; x < p->n; x++) {
        free(p->p[x].bits);
        EVP_MD_CTX_free(p->p[x].md);
    }
    free(p->p);
    pthread_mutex_destroy(&p->lock);
    free(p);
}
