/*
 * archive/session.c - wal-push's push, with the configuration, the keys and the repository kept
 * between files (session.h). Reasons: docs/design/archive-module.md.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "archive/session.h"
#include "base/config.h"
#include "io/key.h"
#include "repo/repo.h"

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
    unsigned config_loads, repo_opens;
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

static void unload(struct ws_archive_session *s)
{
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
    free(s->config_path);
    free(s);
}

void ws_archive_session_reload(struct ws_archive_session *s)
{
    s->reload = 1;
}

void ws_archive_session_counts(const struct ws_archive_session *s, unsigned *config_loads,
                               unsigned *repo_opens)
{
    *config_loads = s->config_loads;
    *repo_opens = s->repo_opens;
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
    s->config_loads++;
    if ((rc = ws_config_load(&s->cfg, config_path, err)) != 0 ||
        (rc = ws_keyring_load(&s->cfg, &s->kr, err)) != 0) {
        unload(s);
        return rc;
    }
    s->loaded = 1;
    return 0;
}

static int ensure_repo(struct ws_archive_session *s, struct ws_error *err)
{
    int rc;

    if (s->repo_open)
        return 0;
    s->repo_opens++;
    if ((rc = ws_repo_open(&s->cfg, &s->repo, err)) != 0) {
        memset(&s->repo, 0, sizeof(s->repo));
        return rc;
    }
    s->repo_open = 1;
    s->repo.keep_identity = 1; /* read once per session, not once per file */
    s->repo.st->attempts = 1;  /* the whole push is what repeats (ws_archive_push_in) */
    return 0;
}

int ws_archive_session_push(struct ws_archive_session *s, const char *config_path,
                            const char *wal_path, struct ws_push_result *res, struct ws_error *err)
{
    int rc;

    memset(res, 0, sizeof(*res));
    if ((rc = ensure_config(s, config_path, err)) != 0 || (rc = ensure_repo(s, err)) != 0) {
        if (strstr(err->msg, wal_path) == NULL)
            ws_error_prefix(err, "could not archive WAL file \"%s\"", wal_path);
        return rc;
    }
    rc = ws_archive_push_in(&s->cfg, &s->repo, &s->kr, -1, s->cfg.retries, wal_path, res, err);
    if (rc != 0)
        close_repo(s); /* a session that failed is not trusted for the next file */
    return rc;
}
