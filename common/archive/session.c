/*
 * archive/session.c - wal-push's push, with the configuration, the keys and the repository kept
 * between files (session.h). Reasons: docs/design/archive-module.md.
 */
#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archive/pushahead.h"
#include "archive/session.h"
#include "base/config.h"
#include "base/log.h"
#include "base/util.h"
#include "io/key.h"
#include "pg/wal.h"
#include "repo/repo.h"

#define READY_MAX 4096 /* ready files looked at per call */

/* A thread that pushes one ready file ahead, with a storage handle of its own. */
struct ahead {
    struct ws_archive_session *s;
    struct ws_repo repo;
    int repo_open;
    int started;
    pthread_t thread;
    char path[PATH_MAX];
    struct ws_push_result res;
    struct ws_error err;
    int rc;
};

/* What identifies a version of the configuration file: a change of any field reloads it. */
struct file_stamp {
    int present;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime;
};

struct ws_archive_session {
    int loaded; /* cfg and kr hold a configuration that loaded */
    int repo_open;
    int reload; /* ws_archive_session_reload() was called */
    char *config_path;
    struct file_stamp stamp;
    struct ws_config cfg;
    struct ws_keyring kr;
    struct ws_repo repo;
    struct ahead *ahead; /* parallel - 1 of them, made with the first batch */
    size_t nahead;
    struct ws_pushahead_record *recs; /* pushed ahead, not yet asked for (oldest first) */
    size_t nrecs;
    struct ws_archive_session_stats stats;
};

struct ws_archive_session *ws_archive_session_new(void)
{
    struct ws_archive_session *s = calloc(1, sizeof(*s));

    if (s)
        ws_config_init(&s->cfg);
    return s;
}

static void close_repo(struct ws_archive_session *s)
{
    if (s->repo_open)
        ws_repo_close(&s->repo);
    memset(&s->repo, 0, sizeof(s->repo));
    s->repo_open = 0;
}

static void close_ahead(struct ws_archive_session *s)
{
    for (size_t i = 0; i < s->nahead; i++)
        if (s->ahead[i].repo_open)
            ws_repo_close(&s->ahead[i].repo);
    free(s->ahead);
    s->ahead = NULL;
    s->nahead = 0;
    s->nrecs = 0; /* records bind the repository they were made for */
}

static void unload(struct ws_archive_session *s)
{
    close_ahead(s);
    close_repo(s);
    ws_keyring_wipe(&s->kr);
    ws_config_free(&s->cfg);
    ws_config_init(&s->cfg);
    s->loaded = 0;
}

void ws_archive_session_free(struct ws_archive_session *s)
{
    if (!s)
        return;
    unload(s);
    free(s->recs);
    free(s->config_path);
    free(s);
}

void ws_archive_session_reload(struct ws_archive_session *s)
{
    s->reload = 1;
}

void ws_archive_session_stats(const struct ws_archive_session *s,
                              struct ws_archive_session_stats *out)
{
    *out = s->stats;
}

static void stamp_of(const char *path, struct file_stamp *st)
{
    struct stat sb;

    memset(st, 0, sizeof(*st));
    if (stat(path, &sb) != 0)
        return;
    st->present = 1;
    st->dev = sb.st_dev;
    st->ino = sb.st_ino;
    st->size = sb.st_size;
    st->mtime = sb.st_mtim;
    st->ctime = sb.st_ctim;
}

static int stamp_same(const struct file_stamp *a, const struct file_stamp *b)
{
    return a->present == b->present && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
           a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

/* Loads the configuration and the keys when they are not loaded or may have changed. */
static int ensure_config(struct ws_archive_session *s, const char *config_path,
                         struct ws_error *err)
{
    struct file_stamp now;
    char *path_copy;
    int rc;

    stamp_of(config_path, &now);
    if (s->loaded && !s->reload && s->config_path && strcmp(s->config_path, config_path) == 0 &&
        stamp_same(&s->stamp, &now))
        return 0;
    unload(s);
    s->reload = 0;
    if (!(path_copy = strdup(config_path)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    free(s->config_path);
    s->config_path = path_copy;
    s->stamp = now;
    s->stats.config_loads++;
    if ((rc = ws_config_load(&s->cfg, config_path, err)) != 0 ||
        (rc = ws_keyring_load(&s->cfg, &s->kr, err)) != 0) {
        unload(s);
        return rc;
    }
    s->loaded = 1;
    return 0;
}

/* Opens repo for the session's pushes: identity read once, one request per attempt. */
static int open_repo(const struct ws_config *cfg, struct ws_repo *repo, struct ws_error *err)
{
    int rc;

    if ((rc = ws_repo_open(cfg, repo, err)) != 0) {
        memset(repo, 0, sizeof(*repo));
        return rc;
    }
    repo->keep_identity = 1; /* read once per session, not once per file */
    repo->st->attempts = 1;  /* the whole push is what repeats (ws_archive_push_in) */
    return 0;
}

static int ensure_repo(struct ws_archive_session *s, struct ws_error *err)
{
    int rc;

    if (s->repo_open)
        return 0;
    s->stats.repo_opens++;
    if ((rc = open_repo(&s->cfg, &s->repo, err)) != 0)
        return rc;
    s->repo_open = 1;
    return 0;
}

/* ---- push-ahead on threads (docs/design/archive-module.md) ---- */

static struct ws_pushahead_record *find_record(struct ws_archive_session *s, const char *name)
{
    for (size_t i = 0; i < s->nrecs; i++)
        if (strcmp(s->recs[i].name, name) == 0)
            return &s->recs[i];
    return NULL;
}

static void drop_record(struct ws_archive_session *s, struct ws_pushahead_record *r)
{
    size_t i = (size_t)(r - s->recs);

    memmove(&s->recs[i], &s->recs[i + 1], (s->nrecs - i - 1) * sizeof(*r));
    s->nrecs--;
}

/* 1 when an earlier call pushed wal_path ahead and the file still is what was pushed. */
static int take_record(struct ws_archive_session *s, const char *wal_path,
                       struct ws_push_result *res)
{
    struct ws_pushahead_record *r = find_record(s, ws_base_name(wal_path));
    const char *why = NULL;
    int rc;

    if (!r)
        return 0;
    rc = ws_pushahead_record_check(&s->cfg, r, wal_path, res, &why);
    drop_record(s, r);
    if (rc == 0)
        ws_log_warning("WAL file \"%s\" differs from the copy pushed ahead (%s); archiving it "
                       "normally",
                       wal_path, why);
    if (rc != 1)
        return 0;
    s->stats.ahead_used++;
    return 1;
}

static void *ahead_main(void *arg)
{
    struct ahead *a = arg;

    a->rc = ws_archive_push_in(&a->s->cfg, &a->repo, &a->s->kr, 0, 1, a->path, &a->res, &a->err);
    return NULL;
}

/* The ready files after `name` in dir/archive_status, in the archiver's order, that no record
 * covers: up to max of them into names (malloc'ed, the caller frees each); their count. */
static size_t next_ready(struct ws_archive_session *s, const char *status, const char *name,
                         char **names, size_t max)
{
    char **all = calloc(READY_MAX, sizeof(*all));
    DIR *d = opendir(status);
    struct dirent *e;
    size_t n = 0, m, k = 0, len;

    while (all && d && n < READY_MAX && (e = readdir(d)) != NULL)
        if ((len = strlen(e->d_name)) > 6 && strcmp(e->d_name + len - 6, ".ready") == 0 &&
            (all[n] = strndup(e->d_name, len - 6)) != NULL)
            n++;
    if (d)
        closedir(d);
    m = all ? ws_pushahead_order(all, n, name) : 0;
    for (size_t i = 0; i < n; i++) {
        if (i < m && k < max && ws_pushahead_ready_cmp(all[i], name) > 0 &&
            !find_record(s, all[i])) {
            names[k++] = all[i];
            continue;
        }
        free(all[i]);
    }
    free(all);
    return k;
}

/*
 * When `parallel` > 1 and wal_path is the archiver's (its .ready beside it), starts threads that
 * push the next ready files, one each; signals stay with the caller's thread. Their count.
 */
static size_t ahead_start(struct ws_archive_session *s, const char *wal_path)
{
    char dir[PATH_MAX], status[PATH_MAX], ready[PATH_MAX], *names[WS_PUSHAHEAD_MAX_BATCH];
    const char *name = ws_base_name(wal_path);
    size_t want = s->cfg.parallel > 1 ? (size_t)s->cfg.parallel - 1 : 0, n, i, started = 0;
    sigset_t all, old;

    if (want > WS_PUSHAHEAD_MAX_BATCH)
        want = WS_PUSHAHEAD_MAX_BATCH;
    if (want == 0 || name == wal_path || (size_t)(name - wal_path) >= sizeof(dir))
        return 0;
    snprintf(dir, sizeof(dir), "%.*s", (int)(name - wal_path - 1), wal_path);
    if (snprintf(status, sizeof(status), "%s/archive_status", dir) >= (int)sizeof(status) ||
        snprintf(ready, sizeof(ready), "%s/%s.ready", status, name) >= (int)sizeof(ready) ||
        access(ready, F_OK) != 0)
        return 0;
    if (!s->ahead && (s->ahead = calloc(want, sizeof(*s->ahead))) != NULL)
        s->nahead = want;
    if (!s->recs && !(s->recs = calloc(WS_PUSHAHEAD_MAX_BATCH, sizeof(*s->recs))))
        return 0;
    n = next_ready(s, status, name, names, s->nahead);
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (i = 0; i < n; i++) {
        struct ahead *a = &s->ahead[i];
        a->s = s;
        a->started = 0;
        memset(&a->err, 0, sizeof(a->err));
        if (snprintf(a->path, sizeof(a->path), "%s/%s", dir, names[i]) < (int)sizeof(a->path) &&
            (a->repo_open || open_repo(&s->cfg, &a->repo, &a->err) == 0)) {
            a->repo_open = 1;
            a->started = pthread_create(&a->thread, NULL, ahead_main, a) == 0;
            started += (size_t)a->started;
        }
        free(names[i]);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return started;
}

/* Joins the threads; each file stored gets its record, a handle that failed is closed. */
static void ahead_finish(struct ws_archive_session *s)
{
    for (size_t i = 0; i < s->nahead; i++) {
        struct ahead *a = &s->ahead[i];
        if (!a->started)
            continue;
        pthread_join(a->thread, NULL);
        a->started = 0;
        if (a->rc != 0) {
            ws_log_info("push-ahead: %s", a->err.msg); /* PostgreSQL's own call will report it */
            ws_repo_close(&a->repo);
            a->repo_open = 0;
            continue;
        }
        if (s->nrecs == WS_PUSHAHEAD_MAX_BATCH)
            drop_record(s, &s->recs[0]);
        if (ws_pushahead_record_of(&s->cfg, ws_base_name(a->path), &a->res, &s->recs[s->nrecs]) ==
            0) {
            s->nrecs++;
            s->stats.pushed_ahead++;
        }
    }
}

int ws_archive_session_push(struct ws_archive_session *s, const char *config_path,
                            const char *wal_path, struct ws_push_result *res, struct ws_error *err)
{
    size_t batch;
    int rc;

    memset(res, 0, sizeof(*res));
    if ((rc = ensure_config(s, config_path, err)) != 0 || (rc = ensure_repo(s, err)) != 0) {
        if (strstr(err->msg, wal_path) == NULL)
            ws_error_prefix(err, "could not archive WAL file \"%s\"", wal_path);
        return rc;
    }
    if (take_record(s, wal_path, res))
        return 0;
    batch = ahead_start(s, wal_path);
    rc = ws_archive_push_in(&s->cfg, &s->repo, &s->kr, batch ? 0 : -1, s->cfg.retries, wal_path,
                            res, err);
    ahead_finish(s);
    if (rc != 0)
        close_repo(s); /* a session that failed is not trusted for the next file */
    return rc;
}
