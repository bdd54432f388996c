/*
 * logicalbackdate - copies a logical backup to another (older) id, for the integration tests of
 * retention by time (wal-prune's retain_logical_time): the copy is what `logicalbackup create`
 * would have written at that time. The dump objects are copied as stored (they are bound to the
 * fixed name of logical objects, not to their key, repo/logical.h); the claim is stored and the
 * manifest written last through the catalog (repo/logical.h), with the new id and its times
 * shifted by the same amount.
 *
 *   logicalbackdate CONFIG_FILE SOURCE_ID NEW_ID
 *
 * Exit status: 0 stored; 1 any error (one line on stderr); 2 usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/config.h"
#include "io/key.h"
#include "repo/logical.h"
#include "repo/repo.h"
#include "storage/storage.h"

#define OBJECT_LIMIT (256u << 20)

/* Object `name` of backup src, as stored, under backup dst. */
static int copy_object(struct ws_repo *repo, const char *src, const char *dst, const char *name,
                       struct ws_error *err)
{
    char from[256], to[256];
    struct ws_sink *put = NULL;
    uint8_t *data = NULL;
    size_t len = 0;
    int rc;

    ws_logical_key(repo, src, name, from, sizeof(from));
    ws_logical_key(repo, dst, name, to, sizeof(to));
    if ((rc = ws_storage_get_all(repo->st, from, OBJECT_LIMIT, &data, &len, err)) == 0 &&
        (rc = ws_storage_open_put(repo->st, to, 0, &put, err)) == 0 &&
        (rc = ws_sink_write(put, data, len, err)) == 0)
        rc = ws_sink_finish(put, err);
    ws_sink_free(put);
    free(data);
    return rc;
}

int main(int argc, char **argv)
{
    struct ws_config cfg;
    struct ws_keyring kr = {0};
    struct ws_repo repo = {0};
    struct ws_logical_manifest m = {0};
    struct ws_error err = {0};
    int64_t shift;
    size_t i, k;
    int rc, repo_open = 0;

    if (argc != 4 || !ws_backup_id_valid(argv[2]) || !ws_backup_id_valid(argv[3])) {
        fprintf(stderr, "usage: logicalbackdate CONFIG_FILE SOURCE_ID NEW_ID\n");
        return 2;
    }
    ws_config_init(&cfg);
    if ((rc = ws_config_load(&cfg, argv[1], &err)) != 0 ||
        (rc = ws_keyring_load(&cfg, &kr, &err)) != 0 || (rc = ws_repo_open(&cfg, &repo, &err)) != 0)
        goto out;
    repo_open = 1;
    if ((rc = ws_logical_manifest_load(&repo, &kr, argv[2], &m, &err)) != 0 ||
        (rc = ws_logical_claim(&repo, argv[3], &err)) != 0)
        goto out;
    for (i = 0; i < m.ndumps && rc == 0; i++)
        for (k = 0; k < m.dumps[i].nobjects && rc == 0; k++)
            rc = copy_object(&repo, argv[2], argv[3], m.dumps[i].objects[k].name, &err);
    if (rc)
        goto out;
    shift = ws_backup_id_time(argv[3]) - ws_backup_id_time(argv[2]);
    memcpy(m.id, argv[3], sizeof(m.id));
    m.start_time += shift;
    m.stop_time += shift;
    rc = ws_logical_manifest_store(&repo, &m, &cfg, ws_keyring_write_key(&kr), &err);
out:
    if (rc)
        fprintf(stderr, "logicalbackdate: %s\n", err.msg);
    ws_logical_manifest_free(&m);
    if (repo_open)
        ws_repo_close(&repo);
    ws_keyring_wipe(&kr);
    ws_config_free(&cfg);
    return rc ? 1 : 0;
}
