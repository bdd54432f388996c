/*
 * restore.c - `logicalbackup restore`: a dump streamed into pg_restore (staged in a temporary
 * directory for --jobs and for directory-format dumps), the globals into psql, or either
 * written to --to-file.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/log.h"
#include "base/util.h"
#include "logical/logical_int.h"
#include "repo/logical.h"

struct restore {
    const struct ws_config *cfg;
    const struct ws_logical_opts *o;
    struct ws_repo repo;
    struct ws_keyring kr;
    struct ws_logical_catalog cat;
    const struct ws_logical_entry *e;
    struct ws_tools tools;
    struct ws_pg *pg;
    char stage[4096];
};

/* The decrypted dump (or globals) into o->to_file: a file, or a directory for a DIR dump. */
static int to_file(struct restore *r, const struct ws_logical_dump *d, struct ws_error *err)
{
    struct ws_file_opts fo = {0};
    struct ws_sink *dest = NULL;
    int rc;

    if (d->kind == WS_LOGICAL_DIR)
        return ws_logical_fetch_dir(&r->repo, &r->kr, r->e->id, d, r->o->to_file, 0, err);
    fo.mode = 0600;
    fo.fsync = 1;
    fo.no_replace = 1;
    if ((rc = ws_file_sink_open(r->o->to_file, &fo, &dest, err)) != 0)
        return rc;
    rc = ws_logical_fetch(&r->repo, &r->kr, r->e->id, &d->objects[0], dest, err);
    if (rc == WS_ERR_EXISTS)
        rc = ws_error_set(err, WS_ERR_EXISTS, "file \"%s\" exists: --to-file never replaces one",
                          r->o->to_file);
    return rc;
}

/* Streams the one object of a custom or globals dump into the child argv reads on stdin. */
static int stream_into(struct restore *r, const struct ws_logical_dump *d, const char *what,
                       char *const argv[], struct ws_error *err)
{
    struct ws_child c;
    struct ws_sink *s = NULL;
    int rc;

    if ((rc = ws_child_start(&c, what, argv, r->tools.passfd, WS_CHILD_PIPE, WS_CHILD_NULL, err)) !=
            0 ||
        (rc = ws_child_sink_new(&c, &s, err)) != 0)
        return rc;
    return ws_logical_fetch(&r->repo, &r->kr, r->e->id, &d->objects[0], s, err);
}

static int restore_globals(struct restore *r, struct ws_error *err)
{
    const struct ws_logical_dump *d = ws_logical_find_dump(&r->e->m, NULL);
    char psql[4096], *conninfo = NULL;
    int rc;

    if (!d)
        return ws_error_set(err, WS_ERR_NOT_FOUND,
                            "logical backup %s holds no globals (create --all stores them)",
                            r->e->id);
    if (r->o->to_file)
        return to_file(r, d, err);
    if ((rc = ws_tools_find(&r->tools, "psql", psql, sizeof(psql), err)) != 0 ||
        (rc = ws_tools_conninfo(&r->tools, "postgres", &conninfo, err)) != 0)
        return rc;
    {
        /* no ON_ERROR_STOP: a role that exists already (the bootstrap superuser) is no reason to
         * stop */
        char *argv[] = {psql, "-X", "-q", "--no-password", "--dbname", conninfo, NULL};
        rc = stream_into(r, d, "psql restoring the globals", argv, err);
    }
    free(conninfo);
    if (rc == 0)
        printf("globals of logical backup %s restored\n", r->e->id);
    return rc;
}

/* The target exists, or is created (--create); refused otherwise, and when it exists without
 * --clean. */
static int prepare_target(struct restore *r, const char *target, struct ws_error *err)
{
    char **names = NULL;
    size_t n = 0, i;
    int rc, exists = 0;

    if ((rc = ws_pg_connect(r->o->pg, r->cfg->pg_conninfo, &r->pg, err)) != 0 ||
        (rc = ws_pg_libpq_databases(r->pg, &names, &n, err)) != 0)
        return rc;
    for (i = 0; i < n; i++)
        exists |= strcmp(names[i], target) == 0;
    ws_pg_names_free(names, n);
    if (exists && !r->o->clean)
        return ws_error_set(err, WS_ERR_EXISTS,
                            "database \"%s\" exists: restore with --clean to replace its objects, "
                            "or name a new database with --to-db and --create",
                            target);
    if (!exists && !r->o->create_db)
        return ws_error_set(err, WS_ERR_NOT_FOUND,
                            "database \"%s\" does not exist: add --create to create it", target);
    if (!exists)
        rc = ws_pg_libpq_create_database(r->pg, target, err);
    return rc;
}

static int restore_database(struct restore *r, const char *db, struct ws_error *err)
{
    const struct ws_logical_dump *d = ws_logical_find_dump(&r->e->m, db);
    const char *target = r->o->to_db ? r->o->to_db : db;
    char pg_restore[4096], *conninfo = NULL, jobs[32], what[300], dir[4200];
    char *argv[12];
    int rc, n = 0, staged;

    if (!d)
        return ws_error_set(err, WS_ERR_NOT_FOUND,
                            "logical backup %s holds no dump of database \"%s\"", r->e->id, db);
    if (r->o->to_file)
        return to_file(r, d, err);
    if ((rc = ws_tools_find(&r->tools, "pg_restore", pg_restore, sizeof(pg_restore), err)) != 0 ||
        (rc = prepare_target(r, target, err)) != 0 ||
        (rc = ws_tools_conninfo(&r->tools, target, &conninfo, err)) != 0)
        goto out;
    snprintf(what, sizeof(what), "pg_restore into database \"%.200s\"", target);
    snprintf(jobs, sizeof(jobs), "--jobs=%d", r->o->jobs > 1 ? r->o->jobs : 1);
    argv[n++] = pg_restore;
    argv[n++] = "--no-password";
    argv[n++] = jobs;
    if (r->o->clean) {
        argv[n++] = "--clean";
        argv[n++] = "--if-exists";
    }
    argv[n++] = "--dbname";
    argv[n++] = conninfo;
    staged = d->kind == WS_LOGICAL_DIR || r->o->jobs > 1;
    if (!staged) {
        argv[n++] = "--format=custom";
        argv[n] = NULL;
        rc = stream_into(r, d, what, argv, err);
        goto out;
    }
    if ((rc = ws_tools_tempdir(&r->tools, "restore", r->stage, sizeof(r->stage), err)) != 0)
        goto out;
    snprintf(dir, sizeof(dir), "%s/dump.d", r->stage);
    if ((rc = ws_logical_fetch_dir(&r->repo, &r->kr, r->e->id, d, dir, 0, err)) != 0)
        goto out;
    if (d->kind == WS_LOGICAL_CUSTOM) {
        argv[n++] = "--format=custom";
        snprintf(dir, sizeof(dir), "%s/dump.d/dump", r->stage);
    } else {
        argv[n++] = "--format=directory";
    }
    argv[n++] = dir;
    argv[n] = NULL;
    rc = ws_tools_run(&r->tools, what, argv, err);
out:
    free(conninfo);
    if (rc == 0)
        printf("database \"%s\" of logical backup %s restored into database \"%s\"\n", db, r->e->id,
               target);
    return rc;
}

int ws_logical_restore(const struct ws_config *cfg, const struct ws_logical_opts *o,
                       struct ws_error *err)
{
    struct restore r = {0};
    int rc;

    r.cfg = cfg;
    r.o = o;
    if ((rc = ws_keyring_load(cfg, &r.kr, err)) != 0 ||
        (rc = ws_repo_open(cfg, &r.repo, err)) != 0 ||
        (rc = ws_logical_catalog_load(&r.repo, &r.kr, &r.cat, err)) != 0 ||
        (rc = ws_logical_complete(&r.repo, &r.cat, o->id, &r.e, err)) != 0 ||
        (rc = ws_tools_open(&r.tools, cfg, err)) != 0)
        goto out;
    if (o->globals && (rc = restore_globals(&r, err)) != 0)
        goto out;
    if (o->ndbs > 0)
        rc = restore_database(&r, o->dbs[0], err);
out:
    ws_tools_rmtree(r.stage);
    ws_tools_close(&r.tools);
    ws_pg_close(r.pg);
    ws_logical_catalog_free(&r.cat);
    ws_repo_close(&r.repo);
    ws_keyring_wipe(&r.kr);
    return rc;
}
