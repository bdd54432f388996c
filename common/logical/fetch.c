/* fetch.c - objects of a logical backup read back, authenticated and checked against the
 * manifest (logical_int.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/util.h"
#include "logical/logical_int.h"
#include "repo/logical.h"

/* Between the reader and dest: its finish (after the reader's, before dest's) compares what the
 * reader read with the manifest's record, so dest commits nothing that is not the named object. */
struct gate {
    struct ws_sink base;
    const struct ws_sink *reader;
    const char *id;
    const struct ws_logical_object *o;
};

static int gate_write(struct ws_sink *s, const void *buf, size_t len, struct ws_error *err)
{
    return ws_sink_write(s->next, buf, len, err);
}

static int gate_finish(struct ws_sink *s, struct ws_error *err)
{
    struct gate *g = (struct gate *)s;
    return ws_logical_object_check(g->reader, g->id, g->o, err);
}

static void gate_destroy(struct ws_sink *s)
{
    free(s);
}

static const struct ws_sink_ops gate_ops = {"gate", gate_write, gate_finish, NULL, gate_destroy};

int ws_logical_fetch(struct ws_repo *repo, const struct ws_keyring *kr, const char *id,
                     const struct ws_logical_object *o, struct ws_sink *dest, struct ws_error *err)
{
    struct gate *g = calloc(1, sizeof(*g));
    struct ws_sink *r = NULL;
    char key[512];
    int rc;

    if (!g) {
        ws_sink_free(dest);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    }
    g->base.ops = &gate_ops;
    g->base.next = dest;
    g->id = id;
    g->o = o;
    ws_logical_key(repo, id, o->name, key, sizeof(key));
    if ((rc = ws_logical_reader_new(&g->base, kr, &r, err)) != 0)
        return ws_error_prefix(err, "object \"%s\"", key);
    g->reader = r;
    ws_object_reader_set_limit(r, o->bytes);
    if ((rc = ws_storage_get(repo->st, key, 0, WS_STORAGE_TO_END, r, err)) == 0)
        rc = ws_sink_finish(r, err);
    if (rc != 0 && !strstr(err->msg, key) && !strstr(err->msg, o->name))
        ws_error_prefix(err, "object \"%s\"", key);
    ws_sink_free(r);
    return rc;
}

int ws_logical_fetch_dir(struct ws_repo *repo, const struct ws_keyring *kr, const char *id,
                         const struct ws_logical_dump *d, const char *dir, int toc_only,
                         struct ws_error *err)
{
    char path[4096];
    size_t i;
    int rc = 0;

    if (mkdir(dir, 0700) != 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not create directory \"%s\"", dir);
    for (i = 0; rc == 0 && i < d->nobjects; i++) {
        const struct ws_logical_object *o = &d->objects[i];
        const char *base = d->kind == WS_LOGICAL_DIR ? ws_base_name(o->name) : "dump";
        struct ws_sink *dest = NULL;
        if (toc_only && strcmp(base, "toc.dat") != 0)
            rc = ws_null_sink_new(&dest, err);
        else if (ws_path_join(path, sizeof(path), dir, base) != 0)
            rc = ws_error_set(err, WS_ERR_INVALID, "path \"%s/%s\" is too long", dir, base);
        else {
            struct ws_file_opts fo = {0};
            fo.mode = 0600;
            fo.no_replace = 1;
            rc = ws_file_sink_open(path, &fo, &dest, err);
        }
        if (rc == 0)
            rc = ws_logical_fetch(repo, kr, id, o, dest, err);
    }
    return rc;
}

int ws_logical_complete(const struct ws_repo *repo, const struct ws_logical_catalog *cat,
                        const char *id, const struct ws_logical_entry **out, struct ws_error *err)
{
    const struct ws_logical_entry *e = ws_logical_catalog_find(cat, id);

    *out = NULL;
    if (!e)
        return ws_error_set(err, WS_ERR_NOT_FOUND,
                            "logical backup %s is not in the repository of cluster \"%s\"", id,
                            repo->cluster);
    if (e->status != WS_LOGICAL_COMPLETE)
        return ws_error_set(err, WS_ERR_INVALID, "logical backup %s is %s: %s", id,
                            ws_logical_status_name(e->status), e->why);
    *out = e;
    return 0;
}
