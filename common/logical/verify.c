/*
 * verify.c - `logicalbackup verify [ID | --all]`: every object read back, authenticated,
 * decompressed and compared with the manifest, and `pg_restore --list` run on every dump, so a
 * dump that would not restore is caught.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "logical/logical_int.h"
#include "repo/logical.h"

struct verify {
    struct ws_repo repo;
    struct ws_keyring kr;
    struct ws_logical_catalog cat;
    struct ws_tools tools;
    char pg_restore[4096];
    char stage[4096];
};

static int verify_dump(struct verify *v, const struct ws_logical_entry *e,
                       const struct ws_logical_dump *d, size_t i, struct ws_error *err)
{
    char what[300], dir[4200];
    struct ws_sink *s = NULL;
    struct ws_child c;
    int rc;

    snprintf(what, sizeof(what), "pg_restore --list of database \"%.200s\"", d->db);
    if (d->kind == WS_LOGICAL_GLOBALS_SQL) {
        if ((rc = ws_null_sink_new(&s, err)) != 0)
            return rc;
        return ws_logical_fetch(&v->repo, &v->kr, e->id, &d->objects[0], s, err);
    }
    if (d->kind == WS_LOGICAL_CUSTOM) {
        char *argv[] = {v->pg_restore, "--list", "--format=custom", NULL};
        if ((rc = ws_child_start(&c, what, argv, -1, WS_CHILD_PIPE, WS_CHILD_NULL, err)) != 0 ||
            (rc = ws_child_sink_new(&c, &s, err)) != 0)
            return rc;
        return ws_logical_fetch(&v->repo, &v->kr, e->id, &d->objects[0], s, err);
    }
    if (!v->stage[0] &&
        (rc = ws_tools_tempdir(&v->tools, "verify", v->stage, sizeof(v->stage), err)) != 0)
        return rc;
    snprintf(dir, sizeof(dir), "%s/%s.%03zu", v->stage, e->id, i);
    if ((rc = ws_logical_fetch_dir(&v->repo, &v->kr, e->id, d, dir, 1, err)) == 0) {
        char *argv[] = {v->pg_restore, "--list", "--format=directory", dir, NULL};
        rc = ws_tools_run(&v->tools, what, argv, err);
    }
    ws_tools_rmtree(dir);
    return rc;
}

/* 0 when e verifies; else its error, logged. */
static int verify_one(struct verify *v, const struct ws_logical_entry *e, struct ws_error *err)
{
    size_t i, nobj = 0;
    int rc = 0;

    if (e->status != WS_LOGICAL_COMPLETE)
        rc = ws_error_set(err, WS_ERR_INVALID, "logical backup %s is %s: %s", e->id,
                          ws_logical_status_name(e->status), e->why);
    for (i = 0; rc == 0 && i < e->m.ndumps; i++) {
        rc = verify_dump(v, e, &e->m.dumps[i], i, err);
        nobj += e->m.dumps[i].nobjects;
        if (rc != 0)
            ws_error_prefix(err, "logical backup %s", e->id);
    }
    if (rc == 0)
        printf("logical backup %s: ok (%zu dump%s, %zu object%s)\n", e->id, e->m.ndumps,
               e->m.ndumps == 1 ? "" : "s", nobj, nobj == 1 ? "" : "s");
    return rc;
}

int ws_logical_verify(const struct ws_config *cfg, const struct ws_logical_opts *o,
                      struct ws_error *err)
{
    struct verify v = {0};
    const struct ws_logical_entry *e = NULL;
    size_t i, failed = 0;
    int rc;

    if ((rc = ws_keyring_load(cfg, &v.kr, err)) != 0 ||
        (rc = ws_repo_open(cfg, &v.repo, err)) != 0 ||
        (rc = ws_logical_catalog_load(&v.repo, &v.kr, &v.cat, err)) != 0 ||
        (rc = ws_tools_open(&v.tools, cfg, err)) != 0 ||
        (rc = ws_tools_find(&v.tools, "pg_restore", v.pg_restore, sizeof(v.pg_restore), err)) != 0)
        goto out;
    if (o->all) {
        struct ws_error first = {0};
        for (i = 0; i < v.cat.n; i++) {
            struct ws_error one = {0};
            if (verify_one(&v, &v.cat.backups[i], &one) != 0) {
                ws_log_error(&one);
                if (!failed++)
                    first = one;
            }
        }
        if (failed)
            rc = ws_error_set(err, first.code, "%zu of %zu logical backups failed verification",
                              failed, v.cat.n);
        goto out;
    }
    if (o->id)
        e = ws_logical_catalog_find(&v.cat, o->id);
    else if (!(e = ws_logical_catalog_latest(&v.cat))) {
        rc = ws_error_set(err, WS_ERR_NOT_FOUND,
                          "the repository of cluster \"%s\" holds no complete logical backup",
                          v.repo.cluster);
        goto out;
    }
    if (!e)
        rc = ws_error_set(err, WS_ERR_NOT_FOUND,
                          "logical backup %s is not in the repository of cluster \"%s\"", o->id,
                          v.repo.cluster);
    else
        rc = verify_one(&v, e, err);
out:
    ws_tools_rmtree(v.stage);
    ws_tools_close(&v.tools);
    ws_logical_catalog_free(&v.cat);
    ws_repo_close(&v.repo);
    ws_keyring_wipe(&v.kr);
    return rc;
}
