/* backup/pool.c - the worker pool of create, restore and verify (see pool.h). */
#include "backup/pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/progress.h"
#include "base/util.h"

struct ws_pool {
    const struct ws_pool_params *p;
    pthread_mutex_t lock; /* next_task, failed, first_err */
    size_t next_task;
    int failed;
    struct ws_error first_err;
    atomic_uint_fast64_t done_bytes;
    atomic_size_t finished; /* workers whose thread has ended */
};

struct slot {
    struct ws_pool_worker w;
    pthread_t thread;
};

size_t ws_pool_size(int parallel, size_t ntasks)
{
    size_t n = parallel < 1 ? 1 : (size_t)parallel;

    if (ntasks > 0 && n > ntasks)
        n = ntasks;
    return n;
}

static void pool_fail(struct ws_pool *pool, const struct ws_error *err)
{
    pthread_mutex_lock(&pool->lock);
    if (!pool->failed) {
        pool->failed = 1;
        pool->first_err = *err;
    }
    pthread_mutex_unlock(&pool->lock);
}

int ws_pool_failed(struct ws_pool_worker *w)
{
    int f;

    pthread_mutex_lock(&w->pool->lock);
    f = w->pool->failed;
    pthread_mutex_unlock(&w->pool->lock);
    return f;
}

void ws_pool_progress(struct ws_pool_worker *w, uint64_t bytes)
{
    atomic_fetch_add(&w->pool->done_bytes, bytes);
}

/* The next task, or 0 when there is none or the pool failed. */
static int next_task(struct ws_pool *pool, size_t *task)
{
    int more;

    pthread_mutex_lock(&pool->lock);
    more = !pool->failed && pool->next_task < pool->p->ntasks;
    if (more)
        *task = pool->next_task++;
    pthread_mutex_unlock(&pool->lock);
    return more;
}

static void *worker_main(void *arg)
{
    struct ws_pool_worker *w = arg;
    struct ws_pool *pool = w->pool;
    const struct ws_pool_params *p = pool->p;
    struct ws_error err = {0};
    size_t task;

    while (next_task(pool, &task))
        if (p->task(p->arg, w, task, &err) != 0) {
            pool_fail(pool, &err);
            break;
        }
    if (p->end && p->end(p->arg, w, &err) != 0)
        pool_fail(pool, &err);
    atomic_fetch_add(&pool->finished, 1);
    return NULL;
}

/* Worker 0 shares the caller's handle; the others open theirs. */
static int open_handles(const struct ws_pool_params *p, struct slot *s, size_t n,
                        struct ws_error *err)
{
    size_t i;
    int rc;

    for (i = 0; i < n; i++) {
        s[i].w.index = i;
        s[i].w.repo = *p->repo;
        if (i > 0) {
            s[i].w.repo.st = NULL;
            if ((rc = ws_backup_storage_open(p->env, p->cfg, &s[i].w.repo.st, err)) != 0)
                return rc;
            s[i].w.repo.st->rate = p->repo->st->rate; /* one max_rate for the command */
        }
    }
    return 0;
}

/* Starts the threads; returns how many started (a failure to start is the pool's error). */
static size_t start_threads(struct ws_pool *pool, struct slot *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        s[i].w.pool = pool;
        if (pthread_create(&s[i].thread, NULL, worker_main, &s[i].w) != 0) {
            struct ws_error e = {0};
            ws_error_set(&e, WS_ERR_INTERNAL, "could not start a worker thread");
            pool_fail(pool, &e);
            break;
        }
    }
    return i;
}

/* Updates the progress display until every started worker has ended. */
static void show_progress(struct ws_pool *pool, size_t started)
{
    uint64_t total = pool->p->total_bytes;
    struct ws_progress pr;

    ws_progress_start(&pr);
    while (atomic_load(&pool->finished) < started) {
        ws_progress_update(&pr, atomic_load(&pool->done_bytes), total, 0);
        usleep(250 * 1000);
    }
    ws_progress_update(&pr, atomic_load(&pool->done_bytes), total, 1);
}

int ws_pool_run(const struct ws_pool_params *p, struct ws_error *err)
{
    struct ws_pool pool = {0};
    struct slot *s = NULL;
    size_t n = p->workers ? p->workers : 1, started = 0, i;
    int rc;

    pool.p = p;
    atomic_init(&pool.done_bytes, 0);
    atomic_init(&pool.finished, 0);
    if (!(s = calloc(n, sizeof(*s))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    if ((rc = open_handles(p, s, n, err)) != 0)
        goto out;
    pthread_mutex_init(&pool.lock, NULL);
    started = start_threads(&pool, s, n);
    if (p->progress)
        show_progress(&pool, started);
    for (i = 0; i < started; i++)
        pthread_join(s[i].thread, NULL);
    pthread_mutex_destroy(&pool.lock);
    if (pool.failed) {
        *err = pool.first_err;
        rc = err->code ? err->code : WS_ERR_INTERNAL;
    }
out:
    for (i = 1; i < n; i++)
        if (s[i].w.repo.st)
            ws_storage_close(s[i].w.repo.st);
    free(s);
    return rc;
}

int ws_backup_storage_open(const struct ws_backup_env *env, const struct ws_config *cfg,
                           struct ws_storage **out, struct ws_error *err)
{
    if (env && env->open_storage)
        return env->open_storage(cfg, out, err);
    return ws_storage_open(cfg, out, err);
}

int ws_backup_repo_open(const struct ws_backup_env *env, const struct ws_config *cfg,
                        struct ws_repo *repo, struct ws_error *err)
{
    if (!env || !env->open_storage)
        return ws_repo_open(cfg, repo, err);
    memset(repo, 0, sizeof(*repo));
    snprintf(repo->cluster, sizeof(repo->cluster), "%s", cfg->cluster);
    return env->open_storage(cfg, &repo->st, err);
}

int ws_backup_repo_open_rated(const struct ws_backup_env *env, const struct ws_config *cfg,
                              struct ws_repo *repo, struct ws_ratelimit **rate,
                              struct ws_error *err)
{
    int rc;

    if ((rc = ws_ratelimit_new((uint64_t)cfg->max_rate, NULL, rate, err)) != 0 ||
        (rc = ws_backup_repo_open(env, cfg, repo, err)) != 0)
        return rc;
    repo->st->rate = *rate;
    return 0;
}
