/*
 * marker.c - the small marker objects beside a backup's manifest (manifest.h): pins and
 * tombstones, whose presence is what counts.
 */
#include <stdio.h>
#include <string.h>

#include "io/object.h"
#include "repo/manifest.h"

void ws_backup_object_key(const struct ws_repo *repo, const char *id, const char *name, char *out,
                          size_t outsz)
{
    snprintf(out, outsz, "%s/backup/%s/%s", repo->cluster, id, name);
}

void ws_backup_tombstone_key(const struct ws_repo *repo, const char *id, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s/backup/%s%s", repo->cluster, id, WS_BACKUP_DELETING_SUFFIX);
}

int ws_backup_put_marker(struct ws_repo *repo, const char *key, const char *text,
                         struct ws_error *err)
{
    struct ws_object_params p = {0};
    struct ws_sink *put = NULL, *w = NULL;
    size_t len = strlen(text);
    int rc;

    p.name = key;
    p.compress = WS_COMPRESS_NONE;
    p.content_size = (int64_t)len;
    if ((rc = ws_storage_open_put(repo->st, key, 0, &put, err)) != 0)
        goto out;
    rc = ws_object_writer_new(put, &p, &w, err);
    put = NULL; /* owned by the writer now, even when it failed */
    if (rc != 0 || (rc = ws_sink_write(w, text, len, err)) != 0)
        goto out;
    rc = ws_sink_finish(w, err);
    if (rc == WS_ERR_EXISTS)
        rc = 0; /* only its presence counts */
out:
    ws_sink_free(w);
    ws_sink_free(put);
    return rc;
}
