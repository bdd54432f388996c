/*
 * marker.c - the small marker objects beside a backup's manifest (manifest.h): pins and
 * tombstones, whose presence is what counts.
 */
#include <stdio.h>
#include <string.h>

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
    int rc = ws_repo_put_small(repo, key, text, strlen(text), NULL, err);

    return rc == WS_ERR_EXISTS ? 0 : rc; /* only its presence counts */
}
