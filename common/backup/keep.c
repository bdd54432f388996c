/*
 * backup/keep.c - `basebackup keep ID [--unset]`: pins a backup so that wal-prune keeps it (and
 * the WAL from its start) forever.
 *
 * Only a complete backup can be pinned: pinning one that cannot be restored would keep its
 * objects and all later WAL for nothing. A pin stays when the backup later loses WAL (it is then
 * shown as incomplete and pinned, and still kept: the operator decides). Both directions are
 * idempotent, so a script may repeat them.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "backup/backup.h"
#include "base/log.h"

int ws_backup_keep(const struct ws_config *cfg, const char *id, int unset, struct ws_error *err)
{
    struct ws_repo repo = {0};
    struct ws_keyring kr = {0};
    struct ws_catalog cat = {0};
    const struct ws_catalog_backup *b = NULL;
    char key[256], text[128], when[21], why[320];
    size_t i;
    int rc;

    if ((rc = ws_keyring_load(cfg, &kr, err)) != 0 || (rc = ws_repo_open(cfg, &repo, err)) != 0 ||
        (rc = ws_catalog_load(&repo, &kr, &cat, err)) != 0)
        goto out;
    for (i = 0; i < cat.nbackups; i++)
        if (strcmp(cat.backups[i].id, id) == 0)
            b = &cat.backups[i];
    if (!b) {
        rc = ws_error_set(err, WS_ERR_NOT_FOUND,
                          "backup %s is not in the repository of cluster "
                          "\"%s\"",
                          id, repo.cluster);
        goto out;
    }
    if (unset) {
        if (!b->pinned) {
            printf("backup %s was not pinned\n", id);
            goto out;
        }
        ws_backup_object_key(&repo, id, WS_BACKUP_KEEP, key, sizeof(key));
        rc = ws_storage_remove(repo.st, key, err);
        if (rc == WS_ERR_NOT_FOUND)
            rc = 0;
        if (rc == 0)
            printf("backup %s is no longer pinned: wal-prune applies the retention policy to it\n",
                   id);
        goto out;
    }
    if (b->pinned) {
        printf("backup %s is already pinned\n", id);
        goto out;
    }
    if (b->status == WS_BACKUP_DELETING) {
        rc = ws_error_set(err, WS_ERR_INVALID,
                          "backup %s cannot be pinned: wal-prune has begun deleting it", id);
        goto out;
    }
    if (b->status != WS_BACKUP_COMPLETE) {
        ws_catalog_why(b, why, sizeof(why));
        rc = ws_error_set(err, WS_ERR_INVALID,
                          "backup %s cannot be pinned: it is not complete (%s)", id, why);
        goto out;
    }
    ws_format_utc(time(NULL), when);
    snprintf(text, sizeof(text), "pinned by basebackup keep at %s\n", when);
    ws_backup_object_key(&repo, id, WS_BACKUP_KEEP, key, sizeof(key));
    if ((rc = ws_backup_put_marker(&repo, key, text, err)) != 0)
        goto out;
    printf("backup %s is pinned: wal-prune keeps it, and all WAL from its start on, until "
           "\"basebackup keep --unset %s\"\n",
           id, id);
out:
    if (rc == 0 && fflush(stdout) != 0)
        rc = ws_error_set(err, WS_ERR_IO, "could not write to standard output");
    ws_catalog_free(&cat);
    ws_repo_close(&repo);
    ws_keyring_wipe(&kr);
    return rc;
}
