/*
 * create.c - `logicalbackup create`: pg_dump of each database (custom format streamed through
 * the object writer into the repository; directory format with --jobs > 1, staged in a temporary
 * directory and removed on every exit), pg_dumpall --globals-only with --all, the manifest last.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "logical/logical_int.h"
#include "repo/logical.h"

struct create {
    const struct ws_config *cfg;
    const struct ws_logical_opts *o;
    struct ws_repo repo;
    struct ws_keyring kr;
    struct ws_tools tools;
    struct ws_pg *pg;
    struct ws_pg_info info;
    char pg_dump[4096], pg_dumpall[4096];
    char **dbs; /* the databases to dump */
    size_t ndbs;
    struct ws_logical_manifest m;
    char stage[4096]; /* the -Fd staging directory, "" when none */
    int claimed;
};

/* Stores the stdout of the child started by argv as object `name` of the backup. */
static int dump_stream(struct create *c, const char *what, char *const argv[], const char *name,
                       struct ws_error *err)
{
    struct ws_child ch;
    struct ws_sink *w = NULL;
    struct ws_logical_object obj = {0};
    int rc;

    if ((rc = ws_logical_object_open(&c->repo, c->m.id, name, c->cfg, ws_keyring_write_key(&c->kr),
                                     &w, err)) != 0)
        return rc;
    if ((rc = ws_child_start(&ch, what, argv, c->tools.passfd, WS_CHILD_NULL, WS_CHILD_PIPE,
                             err)) != 0)
        goto out;
    rc = ws_child_pump(&ch, w, err);
    if (rc == 0)
        rc = ws_child_wait(&ch, err); /* before finish: a killed pg_dump never gets stored */
    ws_child_kill(&ch);
    if (rc == 0)
        rc = ws_sink_finish(w, err);
    if (rc == 0) {
        ws_logical_object_done(w, &obj);
        obj.name = (char *)name;
        rc = ws_logical_add_object(&c->m, &obj, err);
    }
out:
    ws_sink_free(w);
    return rc;
}

/* Uploads file dir/file as object "<sub>/<file>". */
static int upload_file(struct create *c, const char *dir, const char *sub, const char *file,
                       struct ws_error *err)
{
    struct ws_sink *w = NULL;
    struct ws_logical_object obj = {0};
    char path[4096], name[WS_LOGICAL_NAME_MAX + 1];
    int fd = -1, rc;

    if (ws_path_join(path, sizeof(path), dir, file) != 0 ||
        (size_t)snprintf(name, sizeof(name), "%s/%s", sub, file) >= sizeof(name))
        return ws_error_set(err, WS_ERR_INVALID, "pg_dump wrote a file with too long a name");
    if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not open \"%s\"", path);
    if ((rc = ws_logical_object_open(&c->repo, c->m.id, name, c->cfg, ws_keyring_write_key(&c->kr),
                                     &w, err)) == 0 &&
        (rc = ws_sink_write_file(w, fd, path, err)) == 0 && (rc = ws_sink_finish(w, err)) == 0) {
        ws_logical_object_done(w, &obj);
        obj.name = name;
        rc = ws_logical_add_object(&c->m, &obj, err);
    }
    ws_sink_free(w);
    close(fd);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every file pg_dump -Fd wrote into dir, sorted (toc.dat among them), as objects under sub. */
static int upload_dir(struct create *c, const char *dir, const char *sub, struct ws_error *err)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char **names = NULL;
    size_t n = 0, i;
    int rc = 0;

    if (!d)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not open directory \"%s\"", dir);
    while ((e = readdir(d)) != NULL) {
        void *p;
        if (e->d_name[0] == '.')
            continue;
        if (!(p = realloc(names, (n + 1) * sizeof(*names))) ||
            !((names = p)[n] = strdup(e->d_name))) {
            rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
            break;
        }
        n++;
    }
    closedir(d);
    if (rc == 0 && n > 0)
        qsort(names, n, sizeof(*names), cmp_str);
    for (i = 0; rc == 0 && i < n; i++)
        rc = ws_logical_stop ? ws_error_set(err, WS_ERR_IO, "interrupted while storing \"%s\"", dir)
                             : upload_file(c, dir, sub, names[i], err);
    for (i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* Dumps database i. */
static int dump_database(struct create *c, size_t i, struct ws_error *err)
{
    const char *db = c->dbs[i];
    char *conninfo = NULL, what[300], name[32], jobs[32], dir[4200];
    int rc, directory = c->o->jobs > 1;

    snprintf(what, sizeof(what), "pg_dump of database \"%.200s\"", db);
    if ((rc = ws_tools_conninfo(&c->tools, db, &conninfo, err)) != 0 ||
        (rc = ws_logical_add_dump(&c->m, db, directory ? WS_LOGICAL_DIR : WS_LOGICAL_CUSTOM,
                                  err)) != 0)
        goto out;
    if (!directory) {
        char *argv[] = {
            c->pg_dump, "--format=custom", "--compress=0", "--no-password", "--dbname", conninfo,
            NULL};
        snprintf(name, sizeof(name), "%03zu.dump", i);
        rc = dump_stream(c, what, argv, name, err);
        goto out;
    }
    snprintf(name, sizeof(name), "%03zu.d", i);
    snprintf(jobs, sizeof(jobs), "--jobs=%d", c->o->jobs);
    if (!c->stage[0] &&
        (rc = ws_tools_tempdir(&c->tools, "logical", c->stage, sizeof(c->stage), err)) != 0)
        goto out;
    snprintf(dir, sizeof(dir), "%s/%s", c->stage, name);
    {
        char *argv[] = {
            c->pg_dump, "--format=directory", "--compress=0", jobs, "--no-password", "--file",
            dir,        "--dbname",           conninfo,       NULL};
        if ((rc = ws_tools_run(&c->tools, what, argv, err)) == 0)
            rc = upload_dir(c, dir, name, err);
    }
    ws_tools_rmtree(dir);
out:
    if (rc != 0 && !strstr(err->msg, what))
        ws_error_prefix(err, "%s", what);
    free(conninfo);
    return rc;
}

static int dump_globals(struct create *c, struct ws_error *err)
{
    char *conninfo = NULL;
    int rc;

    if ((rc = ws_tools_conninfo(&c->tools, "postgres", &conninfo, err)) != 0 ||
        (rc = ws_logical_add_dump(&c->m, "", WS_LOGICAL_GLOBALS_SQL, err)) != 0)
        goto out;
    {
        char *argv[] = {c->pg_dumpall, "--globals-only", "--no-password",
                        "--dbname",    conninfo,         NULL};
        rc = dump_stream(c, "pg_dumpall --globals-only", argv, WS_LOGICAL_GLOBALS, err);
    }
out:
    free(conninfo);
    return rc;
}

/* The server's version against pg_dump's; the databases to dump. */
static int prepare(struct create *c, struct ws_error *err)
{
    struct ws_identity want = {0};
    char **all = NULL;
    size_t nall = 0, i, k;
    int rc;

    if ((rc = ws_pg_connect(c->o->pg, c->cfg->pg_conninfo, &c->pg, err)) != 0 ||
        (rc = ws_pg_get_info(c->pg, &c->info, err)) != 0 ||
        (rc = ws_tools_find(&c->tools, "pg_dump", c->pg_dump, sizeof(c->pg_dump), err)) != 0 ||
        (rc = ws_tools_version(&c->tools, c->pg_dump, &c->m.pg_dump_version, err)) != 0)
        return rc;
    c->m.pg_version = c->info.version;
    if (c->m.pg_dump_version / 10000 < c->info.version / 10000)
        return ws_error_set(err, WS_ERR_CONFIG,
                            "pg_dump \"%s\" is version %d, older than the server's version %d: "
                            "set pg_bindir to the client programs of PostgreSQL %d or later",
                            c->pg_dump, c->m.pg_dump_version / 10000, c->info.version / 10000,
                            c->info.version / 10000);
    if (c->o->all && (rc = ws_tools_find(&c->tools, "pg_dumpall", c->pg_dumpall,
                                         sizeof(c->pg_dumpall), err)) != 0)
        return rc;
    want.format_version = WS_REPO_FORMAT;
    want.system_identifier = c->info.system_identifier;
    want.pg_version = c->info.version / 10000;
    want.wal_segment_size = c->info.wal_segment_size;
    if ((rc = ws_repo_identity_ensure(&c->repo, &want, "the server of pg_conninfo", err)) != 0)
        return rc;
    if ((rc = ws_pg_libpq_databases(c->pg, &all, &nall, err)) != 0)
        return rc;
    for (i = 0; i < c->o->ndbs; i++) {
        for (k = 0; k < nall && strcmp(all[k], c->o->dbs[i]) != 0; k++)
            ;
        if (k == nall) {
            rc = ws_error_set(err, WS_ERR_INVALID,
                              "database \"%s\" does not exist on the server (or does not allow "
                              "connections)",
                              c->o->dbs[i]);
            break;
        }
    }
    if (rc == 0 && c->o->all) {
        c->dbs = all, c->ndbs = nall;
        return 0;
    }
    ws_pg_names_free(all, nall);
    if (rc == 0 && !(c->dbs = calloc(c->o->ndbs, sizeof(*c->dbs))))
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    for (i = 0; rc == 0 && i < c->o->ndbs; i++, c->ndbs++)
        if (!(c->dbs[i] = strdup(c->o->dbs[i])))
            rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    return rc;
}

/* A new id, claimed: the start time, one second later when another create has it. */
static int claim(struct create *c, struct ws_error *err)
{
    int tries, rc = 0;

    for (tries = 0; tries < 5; tries++) {
        c->m.start_time = time(NULL);
        ws_backup_id_from_time(c->m.start_time, c->m.id);
        rc = ws_logical_claim(&c->repo, c->m.id, err);
        if (rc != WS_ERR_EXISTS)
            break;
        sleep(1);
    }
    c->claimed = rc == 0;
    return rc;
}

static void report(const struct create *c)
{
    char bytes[32], stored[32];

    ws_format_bytes(c->m.bytes, bytes, sizeof(bytes));
    ws_format_bytes(c->m.stored_bytes, stored, sizeof(stored));
    printf("logical backup %s complete: %zu database%s%s, %s dumped, %s stored, %.1f s\n", c->m.id,
           c->ndbs, c->ndbs == 1 ? "" : "s", c->m.globals ? " and the globals" : "", bytes, stored,
           (double)c->m.duration_ms / 1000.0);
}

int ws_logical_create(const struct ws_config *cfg, const struct ws_logical_opts *o,
                      struct ws_error *err)
{
    struct create c = {0};
    int64_t t0 = ws_mono_ms();
    size_t i;
    int rc;

    c.cfg = cfg;
    c.o = o;
    if ((rc = ws_keyring_load(cfg, &c.kr, err)) != 0 ||
        (rc = ws_repo_open(cfg, &c.repo, err)) != 0 ||
        (rc = ws_tools_open(&c.tools, cfg, err)) != 0 || (rc = prepare(&c, err)) != 0 ||
        (rc = claim(&c, err)) != 0)
        goto out;
    if (!(c.m.label = strdup(o->label ? o->label : ""))) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        goto out;
    }
    ws_log_info("logical backup %s: %zu database(s)", c.m.id, c.ndbs);
    for (i = 0; rc == 0 && i < c.ndbs; i++)
        rc = ws_logical_stop ? ws_error_set(err, WS_ERR_IO, "interrupted")
                             : dump_database(&c, i, err);
    if (rc == 0 && o->all)
        rc = dump_globals(&c, err);
    if (rc != 0)
        goto out;
    c.m.stop_time = time(NULL);
    c.m.duration_ms = ws_mono_ms() - t0;
    if ((rc = ws_logical_manifest_store(&c.repo, &c.m, cfg, ws_keyring_write_key(&c.kr), err)) == 0)
        report(&c);
out:
    if (rc != 0 && c.claimed) {
        struct ws_error derr = {0};
        if (ws_logical_delete(&c.repo, c.m.id, &derr) != 0)
            ws_log_warning("%s (wal-prune removes it later)", derr.msg);
    }
    ws_tools_rmtree(c.stage);
    ws_tools_close(&c.tools);
    ws_logical_manifest_free(&c.m);
    ws_pg_names_free(c.dbs, c.ndbs);
    ws_pg_info_free(&c.info);
    ws_pg_close(c.pg);
    ws_repo_close(&c.repo);
    ws_keyring_wipe(&c.kr);
    return rc;
}
