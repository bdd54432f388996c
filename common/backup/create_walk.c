/*
 * backup/create_walk.c - the files `basebackup create` copies: the data directory walked in name
 * order, what PostgreSQL documents as excluded left out (backup/exclude.h), tablespaces followed
 * through pg_tblspc (recorded with their locations), every directory recorded in the manifest.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup/create_int.h"
#include "backup/exclude.h"
#include "base/log.h"
#include "base/util.h"
#include "pg/pgpage.h"

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

static int cmp_size_desc(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;

    if (x->size != y->size)
        return x->size < y->size ? 1 : -1;
    return strcmp(x->path, y->path);
}

/* The files to copy, largest first. */
int ws_create_walk(struct create *c, struct ws_error *err)
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
