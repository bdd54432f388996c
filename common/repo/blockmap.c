/* blockmap.c - block digests and map objects (blockmap.h). Delta extents are read in delta.c. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "io/fingerprint.h"
#include "pg/pgpage.h"
#include "repo/blockmap.h"

uint64_t ws_blockmap_blocks(uint64_t size, uint32_t block_size)
{
    return size / block_size + (size % block_size != 0);
}

void ws_block_digest(const void *p, size_t n, uint8_t out[WS_BLOCK_DIGEST_SIZE])
{
    ws_fingerprint64(p, n, out);
}

void ws_backup_map_key(const struct ws_repo *repo, const char *id, uint32_t map, char *out,
                       size_t outsz)
{
    snprintf(out, outsz, "%s/backup/%s/map/%06" PRIu32, repo->cluster, id, map);
}

int ws_blockmap_load(struct ws_repo *repo, const struct ws_keyring *kr, const char *id,
                     uint32_t map, uint8_t **out, size_t *len, struct ws_error *err)
{
    char key[256], *data = NULL;
    int rc;

    *out = NULL;
    *len = 0;
    ws_backup_map_key(repo, id, map, key, sizeof(key));
    if ((rc = ws_repo_get_small(repo, key, kr, WS_MAP_LIMIT, &data, len, err)) != 0)
        return rc;
    if (*len % WS_BLOCK_DIGEST_SIZE != 0) {
        rc =
            ws_error_set(err, WS_ERR_CORRUPT, "map object %s holds %zu bytes, not a multiple of %d",
                         key, *len, WS_BLOCK_DIGEST_SIZE);
        free(data);
        *len = 0;
        return rc;
    }
    *out = (uint8_t *)data;
    return 0;
}

int ws_blockmap_is_relation(const char *path)
{
    uint32_t segno;

    return ws_pg_relation_file(path, &segno);
}
