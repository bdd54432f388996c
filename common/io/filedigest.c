/*
 * io/filedigest.c - SHA-256 and tree digests of whole files (docs/design/manifest.md, "File
 * digests").
 *
 * A tree pipe: the caller (producer) copies each whole piece of the run into a slot; slot
 * s % nslots holds the run's piece s. A queued slot is hashed by any worker outside the lock;
 * its digest is folded into the outer SHA-256 by the producer, in piece order: when it takes the
 * slot again for piece s + nslots (waiting until it is done), and at finish. Slot states are read
 * and written under the mutex only; the producer writes a slot's bytes only while it is FILLING
 * (no worker touches it), a worker reads them only while it is BUSY (the producer waits).
 */
#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/fs.h"
#include "io/filedigest.h"

struct ws_fdigest {
    int kind;
    uint64_t n;        /* bytes given */
    EVP_MD_CTX *outer; /* SHA-256: of the file; tree: of the piece digests folded so far */
    EVP_MD_CTX *piece; /* tree: the piece in progress (when n % WS_TREE_PIECE != 0) */
};

uint64_t ws_tree_min(void)
{
    const char *env = getenv("WALSAFE_TEST_TREE_MIN");
    unsigned long long v;
    char *end;

    if (!env || !*env)
        return WS_TREE_MIN_DEFAULT;
    errno = 0;
    v = strtoull(env, &end, 10);
    if (errno != 0 || *end != '\0' || v < 1 || v > (1ull << 40))
        return WS_TREE_MIN_DEFAULT;
    return v;
}

int ws_digest_kind_for(uint64_t size)
{
    return size >= ws_tree_min() ? WS_FDIGEST_TREE : WS_FDIGEST_SHA256;
}

static int bad(struct ws_error *err)
{
    return ws_error_set(err, WS_ERR_INTERNAL, "file digest failed");
}

int ws_fdigest_reset(struct ws_fdigest *d, int kind, struct ws_error *err)
{
    d->kind = kind;
    d->n = 0;
    if (EVP_DigestInit_ex(d->outer, EVP_sha256(), NULL) != 1)
        return bad(err);
    return 0;
}

int ws_fdigest_new(int kind, struct ws_fdigest **out, struct ws_error *err)
{
    struct ws_fdigest *d = calloc(1, sizeof(*d));

    *out = NULL;
    if (!d || !(d->outer = EVP_MD_CTX_new()) || !(d->piece = EVP_MD_CTX_new())) {
        ws_fdigest_free(d);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    }
    if (ws_fdigest_reset(d, kind, err) != 0) {
        ws_fdigest_free(d);
        return err->code;
    }
    *out = d;
    return 0;
}

int ws_fdigest_kind(const struct ws_fdigest *d)
{
    return d->kind;
}

uint64_t ws_fdigest_length(const struct ws_fdigest *d)
{
    return d->n;
}

void ws_fdigest_free(struct ws_fdigest *d)
{
    if (!d)
        return;
    EVP_MD_CTX_free(d->outer);
    EVP_MD_CTX_free(d->piece);
    free(d);
}

/* Tree: bytes of the piece in progress, in the caller's thread; a piece completed is folded. */
static int tree_inline(struct ws_fdigest *d, const uint8_t *p, size_t len)
{
    while (len > 0) {
        size_t at = (size_t)(d->n % WS_TREE_PIECE), k = WS_TREE_PIECE - at;
        uint8_t h[32];
        if (k > len)
            k = len;
        if (at == 0 && EVP_DigestInit_ex(d->piece, EVP_sha256(), NULL) != 1)
            return 0;
        if (EVP_DigestUpdate(d->piece, p, k) != 1)
            return 0;
        d->n += k, p += k, len -= k;
        if (d->n % WS_TREE_PIECE == 0 &&
            (EVP_DigestFinal_ex(d->piece, h, NULL) != 1 || EVP_DigestUpdate(d->outer, h, 32) != 1))
            return 0;
    }
    return 1;
}

int ws_fdigest_update(struct ws_fdigest *d, const void *buf, size_t len, struct ws_error *err)
{
    if (d->kind == WS_FDIGEST_TREE)
        return tree_inline(d, buf, len) ? 0 : bad(err);
    if (len > 0 && EVP_DigestUpdate(d->outer, buf, len) != 1)
        return bad(err);
    d->n += len;
    return 0;
}

int ws_fdigest_final(struct ws_fdigest *d, uint8_t out[32], struct ws_error *err)
{
    uint8_t tail[12], h[32];
    int i;

    if (d->kind == WS_FDIGEST_TREE) {
        if (d->n % WS_TREE_PIECE != 0 &&
            (EVP_DigestFinal_ex(d->piece, h, NULL) != 1 || EVP_DigestUpdate(d->outer, h, 32) != 1))
            return bad(err);
        for (i = 0; i < 8; i++)
            tail[i] = (uint8_t)(d->n >> (56 - 8 * i));
        for (i = 0; i < 4; i++)
            tail[8 + i] = (uint8_t)(WS_TREE_PIECE >> (24 - 8 * i));
        if (EVP_DigestUpdate(d->outer, tail, sizeof(tail)) != 1)
            return bad(err);
    }
    return EVP_DigestFinal_ex(d->outer, out, NULL) == 1 ? 0 : bad(err);
}

/* ---- pipes ------------------------------------------------------------------------------- */

enum { SLOT_FREE = 0, SLOT_FILLING, SLOT_QUEUED, SLOT_BUSY, SLOT_DONE };

struct slot {
    uint8_t *buf; /* WS_TREE_PIECE bytes */
    size_t len;
    uint64_t seq; /* the run's piece number */
    int state;    /* under lock */
    uint8_t h[32];
};

struct ws_fdpipe {
    struct ws_fdigest *d;
    ws_hashpipe_fn side;
    void *side_ctx;
    struct ws_hashpipe *hp; /* SHA-256 */
    /* tree */
    size_t nthreads, nslots;
    pthread_t th[WS_FDPIPE_THREADS];
    pthread_mutex_t lock;
    pthread_cond_t work; /* workers wait: a slot queued, or stop */
    pthread_cond_t done; /* the producer waits: a slot hashed */
    struct slot slots[WS_FDPIPE_THREADS + 1];
    uint64_t nsub;      /* pieces of the run given to slots */
    uint64_t next_fold; /* the first of them not folded yet */
    int filling;        /* producer's: slot nsub % nslots is being filled */
    int stop, failed;   /* under lock: no more work; a worker's hash failed */
    int broken;         /* the producer's: an update failed (or, without threads, a hash) */
    int finished;
};

static int plain_fn(void *ctx, const void *buf, size_t len)
{
    struct ws_fdpipe *p = ctx;

    if (p->side && p->side(p->side_ctx, buf, len) != 1)
        return 0;
    return EVP_DigestUpdate(p->d->outer, buf, len);
}

static int hash_slot(struct slot *s)
{
    return EVP_Digest(s->buf, s->len, s->h, NULL, EVP_sha256(), NULL) == 1;
}

static void *worker(void *arg)
{
    struct ws_fdpipe *p = arg;

    pthread_mutex_lock(&p->lock);
    for (;;) {
        struct slot *s = NULL;
        int ok;
        for (size_t i = 0; i < p->nslots; i++)
            if (p->slots[i].state == SLOT_QUEUED && (!s || p->slots[i].seq < s->seq))
                s = &p->slots[i];
        if (p->stop)
            break;
        if (!s) {
            pthread_cond_wait(&p->work, &p->lock);
            continue;
        }
        s->state = SLOT_BUSY;
        pthread_mutex_unlock(&p->lock);
        ok = hash_slot(s);
        pthread_mutex_lock(&p->lock);
        s->state = SLOT_DONE;
        if (!ok)
            p->failed = 1;
        pthread_cond_broadcast(&p->done);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static void stop_workers(struct ws_fdpipe *p)
{
    if (!p->nthreads)
        return;
    pthread_mutex_lock(&p->lock);
    p->stop = 1;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (size_t i = 0; i < p->nthreads; i++)
        pthread_join(p->th[i], NULL);
    p->nthreads = 0;
    pthread_cond_destroy(&p->done);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->lock);
}

static int tree_start(struct ws_fdpipe *p, int threads)
{
    size_t want = threads < 1 ? 0 : (size_t)threads;

    if (want > WS_FDPIPE_THREADS)
        want = WS_FDPIPE_THREADS;
    p->nslots = want + 1;
    for (size_t i = 0; i < p->nslots; i++)
        if (!(p->slots[i].buf = malloc(WS_TREE_PIECE)))
            return 0;
    if (!want)
        return 1;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done, NULL);
    while (p->nthreads < want && pthread_create(&p->th[p->nthreads], NULL, worker, p) == 0)
        p->nthreads++;
    if (!p->nthreads) { /* hashed in the caller's thread */
        pthread_cond_destroy(&p->done);
        pthread_cond_destroy(&p->work);
        pthread_mutex_destroy(&p->lock);
    }
    return 1;
}

int ws_fdpipe_start(struct ws_fdigest *d, int threads, uint64_t expect, ws_hashpipe_fn side,
                    void *side_ctx, struct ws_fdpipe **out, struct ws_error *err)
{
    struct ws_fdpipe *p = calloc(1, sizeof(*p));
    int rc = 0;

    *out = NULL;
    if (!p)
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    p->d = d;
    p->side = side;
    p->side_ctx = side_ctx;
    if (d->kind != WS_FDIGEST_TREE)
        rc = ws_hashpipe_start(plain_fn, p, threads < 1 ? 0 : expect, &p->hp, err);
    else if (!tree_start(p, expect >= 2 * (uint64_t)WS_TREE_PIECE ? threads : 0))
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    if (rc) {
        ws_fdpipe_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

/* Waits until slot s is neither queued nor busy, folds its digest when it holds one, and gives
 * it state `next` (free, or filling for the producer); 0 when a hash failed. */
static int fold_slot(struct ws_fdpipe *p, struct slot *s, int next)
{
    int ok = 1, st;

    if (p->nthreads) {
        pthread_mutex_lock(&p->lock);
        while (s->state == SLOT_QUEUED || s->state == SLOT_BUSY)
            pthread_cond_wait(&p->done, &p->lock);
        st = s->state;
        s->state = next;
        ok = !p->failed;
        pthread_mutex_unlock(&p->lock);
    } else {
        st = s->state;
        s->state = next;
    }
    if (ok && st == SLOT_DONE) {
        ok = EVP_DigestUpdate(p->d->outer, s->h, 32) == 1;
        p->next_fold++;
    }
    return ok;
}

static int queue_slot(struct ws_fdpipe *p, struct slot *s)
{
    p->nsub++;
    p->filling = 0;
    if (!p->nthreads) {
        s->state = SLOT_DONE;
        return hash_slot(s);
    }
    pthread_mutex_lock(&p->lock);
    s->state = SLOT_QUEUED;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->lock);
    return 1;
}

static int tree_update(struct ws_fdpipe *p, const uint8_t *buf, size_t len)
{
    struct ws_fdigest *d = p->d;

    if (!p->filling && d->n % WS_TREE_PIECE != 0) { /* a piece begun before the run */
        size_t k = WS_TREE_PIECE - (size_t)(d->n % WS_TREE_PIECE);
        if (k > len)
            k = len;
        if (!tree_inline(d, buf, k))
            return 0;
        buf += k, len -= k;
    }
    while (len > 0) {
        struct slot *s = &p->slots[p->nsub % p->nslots];
        size_t k;
        if (!p->filling) {
            if (!fold_slot(p, s, SLOT_FILLING))
                return 0;
            s->seq = p->nsub;
            s->len = 0;
            p->filling = 1;
        }
        k = WS_TREE_PIECE - s->len < len ? WS_TREE_PIECE - s->len : len;
        memcpy(s->buf + s->len, buf, k);
        s->len += k, d->n += k, buf += k, len -= k;
        if (s->len == WS_TREE_PIECE && !queue_slot(p, s))
            return 0;
    }
    return 1;
}

int ws_fdpipe_update(struct ws_fdpipe *p, const void *buf, size_t len, struct ws_error *err)
{
    if (p->hp) {
        int rc = ws_hashpipe_update(p->hp, buf, len, err);
        if (rc == 0)
            p->d->n += len;
        return rc;
    }
    if (p->broken || (p->side && len > 0 && p->side(p->side_ctx, buf, len) != 1) ||
        !tree_update(p, buf, len)) {
        p->broken = 1;
        return bad(err);
    }
    return 0;
}

int ws_fdpipe_finish(struct ws_fdpipe *p, struct ws_error *err)
{
    struct ws_fdigest *d = p->d;
    int ok = !p->broken;

    if (p->hp)
        return ws_hashpipe_finish(p->hp, err);
    if (p->finished)
        return ok ? 0 : bad(err);
    if (ok && p->filling) { /* an unfinished piece: left in progress, in d */
        struct slot *s = &p->slots[p->nsub % p->nslots];
        d->n -= s->len;
        ok = tree_inline(d, s->buf, s->len) && fold_slot(p, s, SLOT_FREE);
        p->filling = 0;
    }
    while (ok && p->next_fold < p->nsub)
        ok = fold_slot(p, &p->slots[p->next_fold % p->nslots], SLOT_FREE);
    stop_workers(p);
    p->finished = 1;
    if (!ok)
        p->broken = 1;
    return ok ? 0 : bad(err);
}

void ws_fdpipe_free(struct ws_fdpipe *p)
{
    if (!p)
        return;
    ws_hashpipe_free(p->hp);
    stop_workers(p);
    for (size_t i = 0; i < WS_FDPIPE_THREADS + 1; i++)
        free(p->slots[i].buf);
    free(p);
}

/* ---- reading a file ---------------------------------------------------------------------- */

#define BATCH 1024 /* pieces read in parallel before their digests are folded (32 KiB) */

/* Whole pieces [0, n) from base on, each read and hashed by whichever thread takes it first. */
struct preader {
    int fd;
    uint64_t base;
    size_t n, next;
    uint8_t (*h)[32];
    pthread_mutex_t lock;
    int failed, sys_errno, short_read; /* under lock */
};

static void *preader_run(void *arg)
{
    struct preader *pr = arg;
    uint8_t *b = malloc(WS_TREE_PIECE);

    for (;;) {
        size_t i;
        ssize_t got;
        int ok;
        pthread_mutex_lock(&pr->lock);
        i = pr->next++;
        if (!b)
            pr->failed = 1;
        ok = i < pr->n && !pr->failed && !pr->short_read;
        pthread_mutex_unlock(&pr->lock);
        if (!ok)
            break;
        got = ws_pread_full(pr->fd, b, WS_TREE_PIECE, (off_t)(pr->base + i * WS_TREE_PIECE));
        pthread_mutex_lock(&pr->lock);
        if (got < 0 && !pr->failed)
            pr->failed = 1, pr->sys_errno = errno ? errno : EIO;
        else if (got >= 0 && (size_t)got < WS_TREE_PIECE)
            pr->short_read = 1;
        else if (got >= 0 && EVP_Digest(b, WS_TREE_PIECE, pr->h[i], NULL, EVP_sha256(), NULL) != 1)
            pr->failed = 1;
        pthread_mutex_unlock(&pr->lock);
    }
    free(b);
    return NULL;
}

/* Tree: the whole pieces of [d->n, end) (d->n on a piece boundary), in batches; *short_read when
 * the file ended before. */
static int tree_read_pieces(struct ws_fdigest *d, int fd, uint64_t end, int threads,
                            const char *what, int *short_read, struct ws_error *err)
{
    struct preader pr = {0};
    pthread_t th[WS_FDPIPE_THREADS];
    size_t nth = 0, want = threads > WS_FDPIPE_THREADS ? WS_FDPIPE_THREADS : (size_t)threads;
    int rc = 0;

    if (!(pr.h = malloc(BATCH * sizeof(*pr.h))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    pthread_mutex_init(&pr.lock, NULL);
    pr.fd = fd;
    while (rc == 0 && !*short_read && (end - d->n) / WS_TREE_PIECE > 0) {
        pr.base = d->n;
        pr.n =
            (size_t)((end - d->n) / WS_TREE_PIECE < BATCH ? (end - d->n) / WS_TREE_PIECE : BATCH);
        pr.next = 0;
        for (nth = 0; nth + 1 < want && nth + 1 < pr.n; nth++)
            if (pthread_create(&th[nth], NULL, preader_run, &pr) != 0)
                break;
        preader_run(&pr); /* the caller's thread takes pieces too */
        while (nth > 0)
            pthread_join(th[--nth], NULL);
        if (pr.failed)
            rc = pr.sys_errno ? ws_error_setsys(err, WS_ERR_IO, pr.sys_errno,
                                                "could not read file \"%s\"", what)
                              : bad(err);
        *short_read = pr.short_read;
        for (size_t i = 0; rc == 0 && !*short_read && i < pr.n; i++)
            if (EVP_DigestUpdate(d->outer, pr.h[i], 32) != 1)
                rc = bad(err);
        if (rc == 0 && !*short_read)
            d->n += (uint64_t)pr.n * WS_TREE_PIECE;
    }
    pthread_mutex_destroy(&pr.lock);
    free(pr.h);
    return rc;
}

/* Bytes [d->n, stop) through a pipe, read into buf; *short_read when the file ended before. */
static int piped_read(struct ws_fdigest *d, int fd, uint64_t stop, int threads, uint8_t *buf,
                      const char *what, int *short_read, struct ws_error *err)
{
    struct ws_fdpipe *p = NULL;
    uint64_t off = d->n;
    int rc;

    if ((rc = ws_fdpipe_start(d, threads, stop - off, NULL, NULL, &p, err)) != 0)
        return rc;
    while (off < stop) {
        size_t want = stop - off < WS_TREE_PIECE ? (size_t)(stop - off) : WS_TREE_PIECE;
        ssize_t n = ws_pread_full(fd, buf, want, (off_t)off);
        if (n < 0) {
            rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not read file \"%s\"", what);
            break;
        }
        if ((rc = ws_fdpipe_update(p, buf, (size_t)n, err)) != 0)
            break;
        off += (uint64_t)n;
        if ((size_t)n < want) {
            *short_read = 1;
            break;
        }
    }
    if (rc == 0)
        rc = ws_fdpipe_finish(p, err);
    ws_fdpipe_free(p);
    return rc;
}

int ws_fdigest_read_fd(struct ws_fdigest *d, int fd, uint64_t end, int threads, uint8_t *buf,
                       const char *what, int *exact, struct ws_error *err)
{
    int rc = 0, short_read = 0;
    ssize_t n;

    *exact = 0;
    if (d->n > end)
        return 0;
    if (d->kind == WS_FDIGEST_TREE && d->n % WS_TREE_PIECE != 0) { /* up to a piece boundary */
        uint64_t stop = d->n + (WS_TREE_PIECE - d->n % WS_TREE_PIECE);
        rc = piped_read(d, fd, stop < end ? stop : end, 0, buf, what, &short_read, err);
    }
    if (rc == 0 && !short_read && d->kind == WS_FDIGEST_TREE && threads > 1)
        rc = tree_read_pieces(d, fd, end, threads, what, &short_read, err);
    if (rc == 0 && !short_read)
        rc = piped_read(d, fd, end, threads, buf, what, &short_read, err);
    if (rc || short_read)
        return rc;
    if ((n = ws_pread_full(fd, buf, 1, (off_t)end)) < 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not read file \"%s\"", what);
    *exact = n == 0;
    return 0;
}
