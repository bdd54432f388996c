#include "io/zstd_frames.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <zstd.h>
#include <zstd_errors.h>

/*
 * One sink type for both directions: a ring of jobs (one frame each) filled by the calling
 * thread, transformed by the workers (or inline), and passed on to next in order by the calling
 * thread, which so writes frame i while the workers transform frames i+1 ... Decompressing, when
 * it has to wait for frame i, the calling thread transforms a frame that no worker has taken yet
 * instead of sleeping: `workers` cores in all are the calling thread and workers - 1 threads
 * (object-format.md: a third thread on 2 cores was slower).
 */
enum { JOB_FREE = 0, JOB_READY, JOB_BUSY, JOB_DONE };
#define MAX_SLOTS (WS_ZSTD_FRAMES_MAX_WORKERS + 1)

struct job {
    int state;
    uint8_t *in, *out;
    const uint8_t *src; /* decompression: the frame, in `in` or (no threads) in acc */
    size_t in_len, in_cap, out_len, out_cap;
    size_t want; /* decompression: the frame's content size */
    int failed;
    char msg[128];
};

struct frames {
    struct ws_sink base;
    int compress, level, nthreads, nslots, started;
    int helps; /* the calling thread transforms frames too (decompression) */
    pthread_t th[WS_ZSTD_FRAMES_MAX_WORKERS];
    ZSTD_CCtx *cctx[MAX_SLOTS]; /* per thread; [nthreads] for the calling thread's work */
    ZSTD_DCtx *dctx[MAX_SLOTS];
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    int stop, sync_ready;
    struct job jobs[MAX_SLOTS];
    unsigned head, tail; /* next job to fill, next to pass on (counters, modulo nslots) */
    uint8_t *acc;        /* decompression: compressed bytes not yet passed on, from acc + acc_off */
    size_t acc_off, acc_len, acc_cap;
    uint8_t *region; /* the jobs' content buffers (decompression: out; compression: in) */
    size_t region_len;
};

static int grow(uint8_t **buf, size_t *cap, size_t need)
{
    uint8_t *p;
    if (*cap >= need)
        return 0;
    if (!(p = realloc(*buf, need)))
        return -1;
    *buf = p;
    *cap = need;
    return 0;
}

static void job_fail(struct job *j, const char *what, size_t code)
{
    j->failed = 1;
    snprintf(j->msg, sizeof(j->msg), "%s: %s", what, ZSTD_getErrorName(code));
}

/* The work of one job, in whichever thread; ctx index t. */
static void job_run(struct frames *f, struct job *j, int t)
{
    size_t r;

    j->failed = 0;
    if (f->compress) {
        r = ZSTD_compress2(f->cctx[t], j->out, j->out_cap, j->in, j->in_len);
        if (ZSTD_isError(r))
            return job_fail(j, "zstd compression failed", r);
        j->out_len = r;
        return;
    }
    r = ZSTD_decompressDCtx(f->dctx[t], j->out, j->want, j->src, j->in_len);
    if (ZSTD_isError(r))
        return job_fail(j, "zstd decompression failed", r);
    if (r != j->want) {
        j->failed = 1;
        snprintf(j->msg, sizeof(j->msg), "zstd frame decoded to %zu bytes, its header says %zu", r,
                 j->want);
        return;
    }
    j->out_len = r;
}

struct worker_arg {
    struct frames *f;
    int t;
};

static struct job *next_ready(struct frames *f)
{
    for (unsigned k = f->tail; k != f->head; k++) {
        struct job *j = &f->jobs[k % (unsigned)f->nslots];
        if (j->state == JOB_READY)
            return j;
    }
    return NULL;
}

static void *worker_main(void *arg)
{
    struct frames *f = ((struct worker_arg *)arg)->f;
    int t = ((struct worker_arg *)arg)->t;
    struct job *j;

    free(arg);
    pthread_mutex_lock(&f->mu);
    for (;;) {
        while (!f->stop && !(j = next_ready(f)))
            pthread_cond_wait(&f->cv_work, &f->mu);
        if (f->stop)
            break;
        j->state = JOB_BUSY;
        pthread_mutex_unlock(&f->mu);
        job_run(f, j, t);
        pthread_mutex_lock(&f->mu);
        j->state = JOB_DONE;
        pthread_cond_broadcast(&f->cv_done);
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

/* Waits for the oldest job and passes its output on. */
static int emit_oldest(struct frames *f, struct ws_error *err)
{
    struct job *j = &f->jobs[f->tail % (unsigned)f->nslots];
    int rc = 0;

    if (f->nthreads > 0) {
        pthread_mutex_lock(&f->mu);
        while (j->state != JOB_DONE) {
            struct job *r = f->helps ? next_ready(f) : NULL;
            if (!r) {
                pthread_cond_wait(&f->cv_done, &f->mu);
                continue;
            }
            /* no worker has taken it: this thread does it rather than wait */
            r->state = JOB_BUSY;
            pthread_mutex_unlock(&f->mu);
            job_run(f, r, f->nthreads);
            pthread_mutex_lock(&f->mu);
            r->state = JOB_DONE;
        }
        pthread_mutex_unlock(&f->mu);
    }
    if (j->failed)
        rc = ws_error_set(err, f->compress ? WS_ERR_INTERNAL : WS_ERR_CORRUPT, "%s", j->msg);
    else if (j->out_len)
        rc = ws_sink_write(f->base.next, j->out, j->out_len, err);
    j->in_len = 0;
    /* the workers read state, tail and head under the mutex (next_ready) */
    if (f->nthreads > 0)
        pthread_mutex_lock(&f->mu);
    j->state = JOB_FREE;
    f->tail++;
    if (f->nthreads > 0)
        pthread_mutex_unlock(&f->mu);
    return rc;
}

/* Hands the job at head (filled) to a worker, or runs it here; keeps at most nslots in flight. */
static int submit(struct frames *f, struct ws_error *err)
{
    struct job *j = &f->jobs[f->head % (unsigned)f->nslots];

    if (f->nthreads == 0) {
        job_run(f, j, 0);
        j->state = JOB_DONE;
        f->head++;
        return emit_oldest(f, err);
    }
    pthread_mutex_lock(&f->mu);
    j->state = JOB_READY;
    f->head++;
    pthread_cond_signal(&f->cv_work);
    pthread_mutex_unlock(&f->mu);
    if (f->head - f->tail == (unsigned)f->nslots)
        return emit_oldest(f, err);
    return 0;
}

static int drain(struct frames *f, struct ws_error *err)
{
    while (f->tail != f->head)
        if (emit_oldest(f, err) != 0)
            return err->code;
    return 0;
}

/* ---- compression: blocks of WS_ZSTD_FRAME_SIZE bytes ---- */

static struct job *fill_job(struct frames *f, struct ws_error *err)
{
    struct job *j = &f->jobs[f->head % (unsigned)f->nslots];
    size_t bound = ZSTD_compressBound(WS_ZSTD_FRAME_SIZE);

    if (grow(&j->in, &j->in_cap, WS_ZSTD_FRAME_SIZE) != 0 || grow(&j->out, &j->out_cap, bound))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory for zstd frames"), NULL;
    return j;
}

static int fc_write(struct ws_sink *s, const void *buf, size_t len, struct ws_error *err)
{
    struct frames *f = (struct frames *)s;
    const uint8_t *p = buf;

    while (len > 0) {
        struct job *j = fill_job(f, err);
        size_t take;
        if (!j)
            return err->code;
        take = WS_ZSTD_FRAME_SIZE - j->in_len;
        if (take > len)
            take = len;
        memcpy(j->in + j->in_len, p, take);
        j->in_len += take;
        p += take;
        len -= take;
        if (j->in_len == WS_ZSTD_FRAME_SIZE && submit(f, err) != 0)
            return err->code;
    }
    return 0;
}

static int fc_finish(struct ws_sink *s, struct ws_error *err)
{
    struct frames *f = (struct frames *)s;
    struct job *j = &f->jobs[f->head % (unsigned)f->nslots];

    if (j->in_len > 0 && submit(f, err) != 0)
        return err->code;
    return drain(f, err);
}

/* ---- decompression: whole frames out of the compressed stream ---- */

/* The zstd frame at the start of acc: *csize its compressed size, 0 while it is incomplete. */
static int frame_at_start(struct frames *f, size_t *csize, size_t *content, struct ws_error *err)
{
    const uint8_t *a = f->acc + f->acc_off;
    unsigned long long n;
    size_t r;

    *csize = 0;
    if (f->acc_len >= 4 &&
        (a[0] | a[1] << 8 | a[2] << 16 | (uint32_t)a[3] << 24) != ZSTD_MAGICNUMBER)
        return ws_error_set(err, WS_ERR_CORRUPT, "zstd frames: bytes that are not a zstd frame");
    r = ZSTD_findFrameCompressedSize(a, f->acc_len);
    if (ZSTD_isError(r)) {
        if (ZSTD_getErrorCode(r) != ZSTD_error_srcSize_wrong)
            return ws_error_set(err, WS_ERR_CORRUPT, "zstd frames: %s", ZSTD_getErrorName(r));
        if (f->acc_len > ZSTD_compressBound(WS_ZSTD_FRAME_SIZE))
            return ws_error_set(err, WS_ERR_CORRUPT,
                                "zstd frames: a frame longer than any block compresses to");
        return 0; /* incomplete */
    }
    /* byte 4, the frame header descriptor: bit 2 is the content checksum flag */
    n = ZSTD_getFrameContentSize(a, r);
    if (n > WS_ZSTD_FRAME_SIZE || !(a[4] & 4))
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "zstd frames: a frame without a checksum or a content size of at "
                            "most %u bytes",
                            WS_ZSTD_FRAME_SIZE);
    *csize = r;
    *content = (size_t)n;
    return 0;
}

/* Passes the frame at the start of acc on: decoded here (no threads: straight from acc), or
 * copied for a worker. */
static int fd_dispatch(struct frames *f, size_t csize, size_t content, struct ws_error *err)
{
    struct job *j = &f->jobs[f->head % (unsigned)f->nslots];

    if (grow(&j->out, &j->out_cap, content ? content : 1) != 0 ||
        (f->nthreads > 0 && grow(&j->in, &j->in_cap, csize) != 0))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory for zstd frames");
    j->src = f->acc + f->acc_off;
    if (f->nthreads > 0) {
        memcpy(j->in, j->src, csize);
        j->src = j->in;
    }
    j->in_len = csize;
    j->want = content;
    f->acc_off += csize;
    f->acc_len -= csize;
    if (f->acc_len == 0)
        f->acc_off = 0;
    return submit(f, err);
}

static int fd_write(struct ws_sink *s, const void *buf, size_t len, struct ws_error *err)
{
    struct frames *f = (struct frames *)s;
    size_t csize, content;

    if (len == 0)
        return 0;
    if (f->acc_off + f->acc_len + len > f->acc_cap && f->acc_off > 0) {
        memmove(f->acc, f->acc + f->acc_off, f->acc_len);
        f->acc_off = 0;
    }
    if (grow(&f->acc, &f->acc_cap, f->acc_off + f->acc_len + len) != 0)
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory for zstd frames");
    memcpy(f->acc + f->acc_off + f->acc_len, buf, len);
    f->acc_len += len;
    for (;;) {
        if (frame_at_start(f, &csize, &content, err) != 0)
            return err->code;
        if (csize == 0)
            return 0;
        if (fd_dispatch(f, csize, content, err) != 0)
            return err->code;
        if (f->acc_len == 0)
            return 0;
    }
}

static int fd_finish(struct ws_sink *s, struct ws_error *err)
{
    struct frames *f = (struct frames *)s;

    if (f->acc_len > 0)
        return ws_error_set(err, WS_ERR_CORRUPT, "zstd frames: the last frame is truncated");
    return drain(f, err);
}

/* ---- set-up ---- */

static void frames_destroy(struct ws_sink *s)
{
    struct frames *f = (struct frames *)s;

    if (f->started > 0) {
        pthread_mutex_lock(&f->mu);
        f->stop = 1;
        pthread_cond_broadcast(&f->cv_work);
        pthread_mutex_unlock(&f->mu);
        for (int i = 0; i < f->started; i++)
            pthread_join(f->th[i], NULL);
    }
    if (f->sync_ready) {
        pthread_mutex_destroy(&f->mu);
        pthread_cond_destroy(&f->cv_work);
        pthread_cond_destroy(&f->cv_done);
    }
    for (int i = 0; i < MAX_SLOTS; i++) {
        ZSTD_freeCCtx(f->cctx[i]);
        ZSTD_freeDCtx(f->dctx[i]);
        if (!f->region || !f->compress)
            free(f->jobs[i].in);
        if (!f->region || f->compress)
            free(f->jobs[i].out);
    }
    if (f->region)
        munmap(f->region, f->region_len);
    free(f->acc);
    free(f);
}

static const struct ws_sink_ops fc_ops = {"zstd-frames-compress", fc_write, fc_finish, NULL,
                                          frames_destroy};
static const struct ws_sink_ops fd_ops = {"zstd-frames-decompress", fd_write, fd_finish, NULL,
                                          frames_destroy};

static int make_contexts(struct frames *f)
{
    for (int i = 0; i <= f->nthreads; i++) {
        if (!f->compress) {
            if (!(f->dctx[i] = ZSTD_createDCtx()))
                return -1;
            continue;
        }
        if (!(f->cctx[i] = ZSTD_createCCtx()) ||
            ZSTD_isError(ZSTD_CCtx_setParameter(f->cctx[i], ZSTD_c_compressionLevel, f->level)) ||
            ZSTD_isError(ZSTD_CCtx_setParameter(f->cctx[i], ZSTD_c_checksumFlag, 1)) ||
            ZSTD_isError(ZSTD_CCtx_setParameter(f->cctx[i], ZSTD_c_contentSizeFlag, 1)))
            return -1;
    }
    return 0;
}

static int start_threads(struct frames *f)
{
    if (pthread_mutex_init(&f->mu, NULL) != 0 || pthread_cond_init(&f->cv_work, NULL) != 0 ||
        pthread_cond_init(&f->cv_done, NULL) != 0)
        return -1;
    f->sync_ready = 1;
    for (int i = 0; i < f->nthreads; i++) {
        struct worker_arg *a = malloc(sizeof(*a));
        if (!a)
            return -1;
        a->f = f;
        a->t = i;
        if (pthread_create(&f->th[i], NULL, worker_main, a) != 0) {
            free(a);
            return -1;
        }
        f->started++;
    }
    return 0;
}

/*
 * The jobs' 1 MiB content buffers in one mapping, on transparent huge pages where the kernel
 * offers them: a fresh process faulted each 4 KiB page of them in (256 faults per MiB, 1-4 ms per
 * 4 MiB on the machine of object-format.md); 2 MiB pages take one fault each. Best effort: without
 * it the buffers are malloc()ed as they are needed.
 */
static void map_region(struct frames *f)
{
    const size_t huge = 2u << 20;
    size_t len = ((size_t)f->nslots * WS_ZSTD_FRAME_SIZE + huge - 1) & ~(huge - 1),
           map = len + huge;
    uint8_t *p = mmap(NULL, map, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint8_t *aligned;

    if (p == MAP_FAILED)
        return;
    aligned = (uint8_t *)(((uintptr_t)p + huge - 1) & ~(uintptr_t)(huge - 1));
    if (aligned > p)
        munmap(p, (size_t)(aligned - p));
    if (aligned + len < p + map)
        munmap(aligned + len, (size_t)(p + map - (aligned + len)));
    (void)madvise(aligned, len, MADV_HUGEPAGE);
    f->region = aligned;
    f->region_len = len;
    for (int i = 0; i < f->nslots; i++) {
        struct job *j = &f->jobs[i];
        if (f->compress)
            j->in = aligned + (size_t)i * WS_ZSTD_FRAME_SIZE, j->in_cap = WS_ZSTD_FRAME_SIZE;
        else
            j->out = aligned + (size_t)i * WS_ZSTD_FRAME_SIZE, j->out_cap = WS_ZSTD_FRAME_SIZE;
    }
}

static int frames_new(struct ws_sink *next, int compress, int level, int workers,
                      struct ws_sink **out, struct ws_error *err)
{
    struct frames *f = calloc(1, sizeof(*f));

    if (!f) {
        ws_sink_free(next);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory setting up zstd frames");
    }
    f->base.ops = compress ? &fc_ops : &fd_ops;
    f->base.next = next;
    f->compress = compress;
    f->level = level;
    if (workers > WS_ZSTD_FRAMES_MAX_WORKERS)
        workers = WS_ZSTD_FRAMES_MAX_WORKERS;
    /* Decompression: the calling thread is one of the workers (emit_oldest), as its own work
     * per frame (the write of the content) is small. Compression: it reads the file and sends
     * the frames on, and while it compressed one the workers ran out of filled jobs (measured
     * slower in object-format.md). */
    f->helps = !compress;
    f->nthreads = workers > 1 ? workers - f->helps : 0;
    f->nslots = f->nthreads > 0 ? f->nthreads + 1 + f->helps : 1; /* <= MAX_SLOTS */
    map_region(f);
    if (make_contexts(f) != 0 || (f->nthreads > 0 && start_threads(f) != 0)) {
        ws_sink_free(&f->base);
        return ws_error_set(err, WS_ERR_INTERNAL, "could not set up zstd frames");
    }
    *out = &f->base;
    return 0;
}

int ws_zstd_frames_compress_new(struct ws_sink *next, int level, int workers, struct ws_sink **out,
                                struct ws_error *err)
{
    return frames_new(next, 1, level, workers, out, err);
}

int ws_zstd_frames_decompress_new(struct ws_sink *next, int workers, struct ws_sink **out,
                                  struct ws_error *err)
{
    return frames_new(next, 0, 0, workers, out, err);
}
