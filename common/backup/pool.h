/*
 * backup/pool.h - the worker pool of create, restore and verify: N threads take the tasks
 * 0 .. ntasks-1 from one counter, each worker through its own repository handle.
 *
 * Guarantees of ws_pool_run:
 * - worker 0 uses the caller's storage handle (p->repo); workers 1 .. N-1 each open their own
 *   with ws_backup_storage_open (network drivers keep one session per handle) before any
 *   thread starts, with the caller's max_rate limiter (storage.h: `rate`), and the pool closes
 *   them before it returns;
 * - tasks are handed out one at a time in increasing order; each runs once, on one worker;
 * - the first error wins: that of a task, of an `end`, of opening a handle or of starting a
 *   thread is what ws_pool_run returns; later errors are dropped. After it no task starts
 *   (running ones finish: they are not interrupted);
 * - `end` (may be NULL) runs in each started worker's thread after its last task, also after
 *   a failure (ws_pool_failed tells);
 * - with p->progress, the bytes that tasks report with ws_pool_progress are shown on stderr
 *   (base/progress.h: a line rewritten every 250 ms on a terminal, else plain lines) and once
 *   at the end;
 * - it returns after every thread has been joined.
 * Tasks of different workers run concurrently: whatever else they share is theirs to lock.
 */
#ifndef WS_BACKUP_POOL_H
#define WS_BACKUP_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "backup/backup.h"
#include "repo/repo.h"

struct ws_pool;

struct ws_pool_worker {
    struct ws_pool *pool;
    size_t index;        /* 0 .. workers-1, for the caller's per-worker state */
    struct ws_repo repo; /* the caller's repository with this worker's storage handle */
};

/* A task or a worker's end: 0, or an error code with err set. */
typedef int (*ws_pool_task_fn)(void *arg, struct ws_pool_worker *w, size_t task,
                               struct ws_error *err);
typedef int (*ws_pool_end_fn)(void *arg, struct ws_pool_worker *w, struct ws_error *err);

struct ws_pool_params {
    const struct ws_config *cfg;
    const struct ws_backup_env *env; /* how handles are opened (NULL: the real storage) */
    const struct ws_repo *repo;      /* the caller's, open */
    size_t workers;                  /* ws_pool_size() */
    size_t ntasks;
    ws_pool_task_fn task;
    ws_pool_end_fn end;
    void *arg;
    int progress;         /* show progress (decided: base/progress.h, ws_progress_wanted) */
    uint64_t total_bytes; /* for the progress line */
};

/* How many workers: `parallel` (< 1: 1), but no more than there are tasks (when any). */
size_t ws_pool_size(int parallel, size_t ntasks);
int ws_pool_run(const struct ws_pool_params *p, struct ws_error *err);
/* Adds bytes done, for the progress line (any thread). */
void ws_pool_progress(struct ws_pool_worker *w, uint64_t bytes);
/* 1 once any error was recorded. */
int ws_pool_failed(struct ws_pool_worker *w);

/* A storage handle, or the repository, for cfg->repo through env->open_storage (NULL env or
 * opener: ws_storage_open, ws_repo_open). Every handle the backup commands use comes from here. */
int ws_backup_storage_open(const struct ws_backup_env *env, const struct ws_config *cfg,
                           struct ws_storage **out, struct ws_error *err);
int ws_backup_repo_open(const struct ws_backup_env *env, const struct ws_config *cfg,
                        struct ws_repo *repo, struct ws_error *err);
/* ws_backup_repo_open, its handle given *rate: a new limiter of cfg->max_rate (io/ratelimit.h;
 * unset: it only counts), the caller's to free after closing the repository (also after a
 * failure: *rate may be set when the open failed). */
int ws_backup_repo_open_rated(const struct ws_backup_env *env, const struct ws_config *cfg,
                              struct ws_repo *repo, struct ws_ratelimit **rate,
                              struct ws_error *err);

#endif
