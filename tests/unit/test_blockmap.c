/*
 * Block digests and map objects (blockmap.h): block counts at the edges of a block, the digest's
 * known value and canonical byte order, map keys, loading map objects from an in-memory
 * repository (encrypted, the wrong length, missing, over the limit) and which paths are relation
 * files.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repo/blockmap.h"
#include "fixture.h"
#include "unit.h"

#define ID "20261122T101500Z"

static void test_blocks(void)
{
    CHECK(ws_blockmap_blocks(0, 8192) == 0);
    CHECK(ws_blockmap_blocks(1, 8192) == 1);
    CHECK(ws_blockmap_blocks(8191, 8192) == 1);
    CHECK(ws_blockmap_blocks(8192, 8192) == 1);
    CHECK(ws_blockmap_blocks(8193, 8192) == 2);
    CHECK(ws_blockmap_blocks(UINT64_C(1) << 30, 8192) == 131072);
    CHECK(ws_blockmap_blocks(UINT64_MAX, 1024) == (UINT64_MAX >> 10) + 1);
    CHECK(ws_blockmap_blocks(3, 1024) == 1 && ws_blockmap_blocks(32768, 32768) == 1);
}

static void test_digest(void)
{
    /* XXH3-64 of no bytes, canonical (big-endian): xxHash's test vector 2D06800538D394C2 */
    static const uint8_t empty[WS_BLOCK_DIGEST_SIZE] = {0x2d, 0x06, 0x80, 0x05,
                                                        0x38, 0xd3, 0x94, 0xc2};
    uint8_t block[8192], a[WS_BLOCK_DIGEST_SIZE], b[WS_BLOCK_DIGEST_SIZE];

    ws_block_digest("", 0, a);
    CHECK(memcmp(a, empty, sizeof(a)) == 0);
    unit_random(block, sizeof(block), 7);
    ws_block_digest(block, sizeof(block), a);
    ws_block_digest(block, sizeof(block), b);
    CHECK(memcmp(a, b, sizeof(a)) == 0);
    /* one bit anywhere, or one byte fewer, is another digest */
    for (size_t at = 0; at < sizeof(block); at += 1021) {
        block[at] ^= 1;
        ws_block_digest(block, sizeof(block), b);
        CHECK(memcmp(a, b, sizeof(a)) != 0);
        block[at] ^= 1;
    }
    ws_block_digest(block, sizeof(block) - 1, b);
    CHECK(memcmp(a, b, sizeof(a)) != 0);
}

static void test_map_key(void)
{
    struct ws_repo repo = {0};
    char k[256];

    snprintf(repo.cluster, sizeof(repo.cluster), "main");
    ws_backup_map_key(&repo, ID, 0, k, sizeof(k));
    CHECK(strcmp(k, "main/backup/" ID "/map/000000") == 0);
    ws_backup_map_key(&repo, ID, 1234567, k, sizeof(k));
    CHECK(strcmp(k, "main/backup/" ID "/map/1234567") == 0);
}

static int put_map(struct ws_repo *repo, const struct ws_key *key, uint32_t map, const void *data,
                   size_t len)
{
    struct ws_object_params p = {0};
    struct ws_error err = {0};
    char k[256];

    p.key = key;
    p.compress = 1;
    p.level = 1;
    ws_backup_map_key(repo, ID, map, k, sizeof(k));
    return ws_repo_put_small(repo, k, data, len, &p, &err);
}

static void test_load(void)
{
    struct ws_repo repo = {0};
    struct ws_keyring kr;
    struct ws_key key;
    struct ws_error err = {0};
    uint8_t digests[48 * WS_BLOCK_DIGEST_SIZE], *got = NULL;
    size_t len = 99;

    REQUIRE(unit_mem_repo(&repo, "main", NULL) == 0);
    REQUIRE(unit_key(&key, 3) == 0);
    unit_keyring(&kr, &key, 1);
    unit_random(digests, sizeof(digests), 5);
    REQUIRE(put_map(&repo, &key, 0, digests, sizeof(digests)) == 0);
    REQUIRE(put_map(&repo, &key, 1, digests, 33) == 0);
    REQUIRE(put_map(&repo, &key, 2, "", 0) == 0);

    REQUIRE(ws_blockmap_load(&repo, &kr, ID, 0, &got, &len, &err) == 0);
    CHECK(len == sizeof(digests) && got && memcmp(got, digests, len) == 0);
    free(got);
    /* not a whole number of digests */
    CHECK(ws_blockmap_load(&repo, &kr, ID, 1, &got, &len, &err) == WS_ERR_CORRUPT);
    CHECK(got == NULL && len == 0 && strstr(err.msg, "map/000001") != NULL);
    /* an empty map object is valid (a backup whose relation files are all empty) */
    REQUIRE(ws_blockmap_load(&repo, &kr, ID, 2, &got, &len, &err) == 0);
    CHECK(len == 0);
    free(got);
    /* missing; no key to read it */
    CHECK(ws_blockmap_load(&repo, &kr, ID, 3, &got, &len, &err) == WS_ERR_NOT_FOUND);
    CHECK(got == NULL);
    CHECK(ws_blockmap_load(&repo, NULL, ID, 0, &got, &len, &err) != 0 && got == NULL);
    ws_storage_close(repo.st);
}

/* A map object over WS_MAP_LIMIT is refused before it is held whole. */
static void test_load_limit(void)
{
    struct ws_repo repo = {0};
    struct ws_error err = {0};
    uint8_t *big = calloc(1, WS_MAP_LIMIT + WS_BLOCK_DIGEST_SIZE), *got = NULL;
    size_t len = 0;

    REQUIRE(big != NULL);
    REQUIRE(unit_mem_repo(&repo, "main", NULL) == 0);
    REQUIRE(put_map(&repo, NULL, 0, big, WS_MAP_LIMIT + WS_BLOCK_DIGEST_SIZE) == 0);
    CHECK(ws_blockmap_load(&repo, NULL, ID, 0, &got, &len, &err) == WS_ERR_CORRUPT);
    CHECK(got == NULL);
    ws_storage_close(repo.st);
    free(big);
}

static void test_is_relation(void)
{
    static const char *const yes[] = {
        "base/5/16384",
        "base/5/16384.1",
        "base/5/16384_fsm",
        "base/5/16384_vm.2",
        "base/5/16384_init",
        "global/1262",
        "pg_tblspc/16390/PG_15_202209061/5/16391_vm",
    };
    static const char *const no[] = {
        "PG_VERSION",
        "base/5/PG_VERSION",
        "base/5/pg_filenode.map",
        "base/5/t3_16384",
        "base/5/016384",
        "base/5/16384_xx",
        "pg_wal/000000010000000000000001",
        "global/pg_control",
        "base/5/pgsql_tmp/x",
        "pg_tblspc/16390/5/16391",
        "base/16384",
        "postgresql.conf",
    };
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        if (!ws_blockmap_is_relation(yes[i]))
            unit_fail(__FILE__, __LINE__, yes[i]);
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        if (ws_blockmap_is_relation(no[i]))
            unit_fail(__FILE__, __LINE__, no[i]);
}

const struct unit_test unit_tests[] = {
    {"blocks", test_blocks},
    {"digest", test_digest},
    {"map_key", test_map_key},
    {"load", test_load},
    {"load_limit", test_load_limit},
    {"is_relation", test_is_relation},
    {NULL, NULL},
};
