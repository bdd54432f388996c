/*
 * The catalog of logical backups (repo/logical.h) over an in-memory repository: the manifest's
 * text form and its parser, a backup written as create writes it (claim, objects, manifest last)
 * and its status, a failure injected at every storage call of a create and of a delete (never a
 * backup listed complete with an object missing), pins, damaged manifests, objects read back and
 * checked against the manifest.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repo/logical.h"
#include "fixture.h"
#include "unit.h"

#define ID1 "20261207T230000Z"
#define ID2 "20261208T010203Z"

static void config(struct ws_config *cfg)
{
    unit_config(cfg, "repo", "/nonexistent", "compress", "zstd", NULL);
}

static struct ws_key test_key(void)
{
    struct ws_key k;
    unit_key(&k, 7);
    return k;
}

/* One object `name` of backup id with `len` pseudo-random bytes, recorded in m. */
static int put_object(struct ws_repo *repo, struct ws_logical_manifest *m, const char *id,
                      const char *name, size_t len, const struct ws_key *key, struct ws_error *err)
{
    struct ws_config cfg;
    struct ws_sink *w = NULL;
    struct ws_logical_object o = {0};
    uint8_t *buf = malloc(len + 1);
    int rc;

    config(&cfg);
    unit_random(buf, len, (uint32_t)len);
    if ((rc = ws_logical_object_open(repo, id, name, &cfg, key, &w, err)) == 0 &&
        (rc = ws_sink_write(w, buf, len, err)) == 0 && (rc = ws_sink_finish(w, err)) == 0) {
        ws_logical_object_done(w, &o);
        o.name = (char *)name;
        rc = ws_logical_add_object(m, &o, err);
    }
    ws_sink_free(w);
    free(buf);
    ws_config_free(&cfg);
    return rc;
}

/* A create: claim, two databases (one custom, one directory of two files), globals, manifest. */
static int create(struct ws_repo *repo, const char *id, const struct ws_key *key,
                  struct ws_error *err)
{
    struct ws_logical_manifest m = {0};
    struct ws_config cfg;
    int rc;

    config(&cfg);
    memcpy(m.id, id, sizeof(m.id));
    m.label = strdup("nightly run");
    m.start_time = 1796684400;
    m.stop_time = 1796684410;
    m.pg_version = 150004;
    m.pg_dump_version = 150004;
    if ((rc = ws_logical_claim(repo, id, err)) == 0 &&
        (rc = ws_logical_add_dump(&m, "app db", WS_LOGICAL_CUSTOM, err)) == 0 &&
        (rc = put_object(repo, &m, id, "000.dump", 70000, key, err)) == 0 &&
        (rc = ws_logical_add_dump(&m, "sales", WS_LOGICAL_DIR, err)) == 0 &&
        (rc = put_object(repo, &m, id, "001.d/toc.dat", 3000, key, err)) == 0 &&
        (rc = put_object(repo, &m, id, "001.d/3001.dat", 50000, key, err)) == 0 &&
        (rc = ws_logical_add_dump(&m, "", WS_LOGICAL_GLOBALS_SQL, err)) == 0 &&
        (rc = put_object(repo, &m, id, WS_LOGICAL_GLOBALS, 500, key, err)) == 0)
        rc = ws_logical_manifest_store(repo, &m, &cfg, key, err);
    ws_logical_manifest_free(&m);
    ws_config_free(&cfg);
    return rc;
}

static int load(struct ws_repo *repo, const struct ws_keyring *kr, struct ws_logical_catalog *cat)
{
    struct ws_error err = {0};
    return ws_logical_catalog_load(repo, kr, cat, &err);
}

static void test_manifest_round_trip(void)
{
    struct ws_logical_manifest m = {0}, back = {0};
    struct ws_logical_object o = {0};
    struct ws_error err = {0};
    char *text = NULL;
    size_t len;

    memcpy(m.id, ID1, sizeof(m.id));
    m.label = strdup("");
    m.duration_ms = 1234;
    m.pg_version = 150004;
    REQUIRE(ws_logical_add_dump(&m, "weird name\twith % and ünïcode", WS_LOGICAL_CUSTOM, &err) ==
            0);
    o.name = "000.dump";
    o.bytes = 10, o.stored_bytes = 120, o.sha256[0] = 0xab;
    REQUIRE(ws_logical_add_object(&m, &o, &err) == 0);
    o.name = "../x";
    CHECK(ws_logical_add_object(&m, &o, &err) == WS_ERR_INVALID);
    o.name = "manifest";
    CHECK(ws_logical_add_object(&m, &o, &err) == WS_ERR_INVALID);
    REQUIRE(ws_logical_manifest_format(&m, &text, &len, &err) == 0);
    REQUIRE(ws_logical_manifest_parse(text, len, "test", &back, &err) == 0);
    CHECK(strcmp(back.id, ID1) == 0 && strcmp(back.label, "") == 0);
    CHECK(back.duration_ms == 1234 && back.pg_version == 150004 && back.ndumps == 1);
    CHECK(strcmp(back.dumps[0].db, "weird name\twith % and ünïcode") == 0);
    CHECK(back.dumps[0].nobjects == 1 && back.dumps[0].objects[0].sha256[0] == 0xab);
    CHECK(back.bytes == 10 && back.stored_bytes == 120);
    CHECK(ws_logical_find_dump(&back, "weird name\twith % and ünïcode") == &back.dumps[0]);
    CHECK(ws_logical_find_dump(&back, NULL) == NULL && !back.globals);
    ws_logical_manifest_free(&back);
    /* without its end line, with a line added, with a bad string: refused */
    CHECK(ws_logical_manifest_parse(text, len - 4, "test", &back, &err) == WS_ERR_CORRUPT);
    text[len - 2] = 'x';
    CHECK(ws_logical_manifest_parse(text, len, "test", &back, &err) == WS_ERR_CORRUPT);
    CHECK(strstr(err.msg, "test: line") != NULL);
    free(text);
    CHECK(ws_logical_manifest_parse("walsafe-logical 1\nid " ID1 "\nlabel 6\nend\n", 41, "t", &back,
                                    &err) == WS_ERR_CORRUPT);
    ws_logical_manifest_free(&m);
}

static void test_complete_pinned_and_missing(void)
{
    struct ws_repo repo = {0};
    struct ws_key key = test_key();
    struct ws_keyring kr;
    struct ws_logical_catalog cat = {0};
    struct ws_error err = {0};
    const struct ws_logical_entry *e;
    char k[256];

    unit_keyring(&kr, &key, 1);
    REQUIRE(unit_mem_repo(&repo, "main", NULL) == 0);
    REQUIRE(create(&repo, ID1, &key, &err) == 0);
    REQUIRE(create(&repo, ID2, &key, &err) == 0);
    CHECK(ws_logical_claim(&repo, ID2, &err) == WS_ERR_EXISTS);
    ws_logical_key(&repo, ID1, WS_LOGICAL_KEEP, k, sizeof(k));
    REQUIRE(ws_backup_put_marker(&repo, k, "pinned\n", &err) == 0);
    REQUIRE(load(&repo, &kr, &cat) == 0);
    REQUIRE(cat.n == 2);
    e = ws_logical_catalog_find(&cat, ID1);
    REQUIRE(e && e->status == WS_LOGICAL_COMPLETE && e->pinned && e->has_manifest);
    CHECK(e->m.ndumps == 3 && e->m.globals && strcmp(e->m.label, "nightly run") == 0);
    CHECK(e->m.bytes == 70000 + 3000 + 50000 + 500 && e->m.stored_bytes > 0);
    CHECK(ws_logical_catalog_latest(&cat) == &cat.backups[1]);
    CHECK(!cat.backups[1].pinned);
    ws_logical_catalog_free(&cat);

    /* an object gone: incomplete, naming it; without the key: invalid */
    ws_logical_key(&repo, ID2, "001.d/3001.dat", k, sizeof(k));
    REQUIRE(ws_storage_remove(repo.st, k, &err) == 0);
    REQUIRE(load(&repo, &kr, &cat) == 0);
    e = ws_logical_catalog_find(&cat, ID2);
    REQUIRE(e && e->status == WS_LOGICAL_INCOMPLETE);
    CHECK(strstr(e->why, "001.d/3001.dat is missing") != NULL);
    CHECK(ws_logical_catalog_latest(&cat) == &cat.backups[0]);
    ws_logical_catalog_free(&cat);
    REQUIRE(load(&repo, NULL, &cat) == 0);
    CHECK(cat.backups[0].status == WS_LOGICAL_INVALID && cat.backups[0].why[0]);
    ws_logical_catalog_free(&cat);
    ws_storage_close(repo.st);
}

static void test_damaged_manifest_and_object(void)
{
    struct ws_repo repo = {0};
    struct ws_key key = test_key();
    struct ws_keyring kr;
    struct ws_logical_catalog cat = {0};
    struct ws_error err = {0};
    struct ws_sink *null = NULL, *r = NULL;
    uint8_t *obj;
    size_t len;
    char k[256];

    unit_keyring(&kr, &key, 1);
    REQUIRE(unit_mem_repo(&repo, "main", NULL) == 0);
    REQUIRE(create(&repo, ID1, &key, &err) == 0);
    /* an object read back is checked against its manifest record; a flipped byte fails */
    REQUIRE(load(&repo, &kr, &cat) == 0);
    const struct ws_logical_object *o = &cat.backups[0].m.dumps[0].objects[0];
    ws_logical_key(&repo, ID1, o->name, k, sizeof(k));
    REQUIRE(ws_null_sink_new(&null, &err) == 0);
    REQUIRE(ws_logical_reader_new(null, &kr, &r, &err) == 0);
    REQUIRE(ws_storage_get(repo.st, k, 0, WS_STORAGE_TO_END, r, &err) == 0);
    REQUIRE(ws_sink_finish(r, &err) == 0);
    CHECK(ws_logical_object_check(r, ID1, o, &err) == 0);
    CHECK(ws_logical_object_check(r, ID1, &cat.backups[0].m.dumps[1].objects[0], &err) ==
          WS_ERR_CORRUPT);
    ws_sink_free(r);
    obj = ws_storage_mem_object(repo.st, k, &len);
    REQUIRE(obj);
    obj[len / 2] ^= 1;
    REQUIRE(ws_null_sink_new(&null, &err) == 0);
    REQUIRE(ws_logical_reader_new(null, &kr, &r, &err) == 0);
    CHECK(ws_storage_get(repo.st, k, 0, WS_STORAGE_TO_END, r, &err) != 0 ||
          ws_sink_finish(r, &err) != 0);
    ws_sink_free(r);
    ws_logical_catalog_free(&cat);
    /* a damaged manifest: invalid, with the reason; not an error of the load */
    ws_logical_key(&repo, ID1, WS_LOGICAL_MANIFEST, k, sizeof(k));
    obj = ws_storage_mem_object(repo.st, k, &len);
    REQUIRE(obj);
    obj[len - 1] ^= 1;
    REQUIRE(load(&repo, &kr, &cat) == 0);
    CHECK(cat.n == 1 && cat.backups[0].status == WS_LOGICAL_INVALID &&
          !cat.backups[0].has_manifest);
    CHECK(ws_logical_catalog_latest(&cat) == NULL);
    ws_logical_catalog_free(&cat);
    ws_storage_close(repo.st);
}

/* A failure at every storage write of a create leaves nothing complete. */
static void test_create_fault_at_every_write(void)
{
    struct ws_key key = test_key();
    struct ws_keyring kr;
    int nth, failed_once = 0;

    unit_keyring(&kr, &key, 1);
    for (nth = 1; nth < 40; nth++) {
        struct ws_repo repo = {0};
        struct ws_logical_catalog cat = {0};
        struct ws_error err = {0};
        int rc;

        REQUIRE(unit_mem_repo(&repo, "main", NULL) == 0);
        ws_storage_mem_fault(repo.st, WS_MEM_PUT_WRITE | WS_MEM_PUT_FINISH, nth, WS_ERR_STORAGE);
        rc = create(&repo, ID1, &key, &err);
        ws_storage_mem_fault(repo.st, 0, 0, 0);
        REQUIRE(load(&repo, &kr, &cat) == 0);
        if (rc != 0) {
            failed_once = 1;
            CHECK(cat.n <= 1);
            CHECK(cat.n == 0 || cat.backups[0].status == WS_LOGICAL_INCOMPLETE);
        } else {
            CHECK(cat.n == 1 && cat.backups[0].status == WS_LOGICAL_COMPLETE);
        }
        ws_logical_catalog_free(&cat);
        ws_storage_close(repo.st);
        if (rc == 0)
            break; /* nth is past the create's last write */
    }
    CHECK(failed_once && nth > 5);
}

/* A delete cut at every storage call never leaves a complete backup with an object missing; a
 * repeated delete finishes the job. */
static void test_delete_fault_at_every_call(void)
{
    struct ws_key key = test_key();
    struct ws_keyring kr;
    int nth, op, done = 0;
    static const int ops[] = {WS_MEM_REMOVE, WS_MEM_LIST};

    unit_keyring(&kr, &key, 1);
    for (op = 0; op < 2; op++)
        for (nth = 1; nth < 20; nth++) {
            struct ws_repo repo = {0};
            struct ws_logical_catalog cat = {0};
            struct ws_error err = {0};
            int rc;

            REQUIRE(unit_mem_repo(&repo, "main", NULL) == 0);
            REQUIRE(create(&repo, ID1, &key, &err) == 0);
            REQUIRE(create(&repo, ID2, &key, &err) == 0);
            ws_storage_mem_fault(repo.st, ops[op], nth, WS_ERR_STORAGE);
            rc = ws_logical_delete(&repo, ID1, &err);
            ws_storage_mem_fault(repo.st, 0, 0, 0);
            REQUIRE(load(&repo, &kr, &cat) == 0);
            const struct ws_logical_entry *e = ws_logical_catalog_find(&cat, ID1);
            /* gone, incomplete, or (the manifest's removal failed) untouched: all 6 objects */
            CHECK(!e || e->status == WS_LOGICAL_INCOMPLETE ||
                  (rc != 0 && e->status == WS_LOGICAL_COMPLETE && e->nobjects == 6));
            CHECK(ws_logical_catalog_find(&cat, ID2)->status == WS_LOGICAL_COMPLETE);
            if (rc != 0)
                CHECK(strstr(err.msg, ID1) != NULL);
            else
                CHECK(e == NULL), done++;
            ws_logical_catalog_free(&cat);
            REQUIRE(ws_logical_delete(&repo, ID1, &err) == 0);
            REQUIRE(load(&repo, &kr, &cat) == 0);
            CHECK(cat.n == 1 && strcmp(cat.backups[0].id, ID2) == 0);
            ws_logical_catalog_free(&cat);
            ws_storage_close(repo.st);
        }
    CHECK(done > 0);
}

const struct unit_test unit_tests[] = {
    {"manifest_round_trip", test_manifest_round_trip},
    {"complete_pinned_and_missing", test_complete_pinned_and_missing},
    {"damaged_manifest_and_object", test_damaged_manifest_and_object},
    {"create_fault_at_every_write", test_create_fault_at_every_write},
    {"delete_fault_at_every_call", test_delete_fault_at_every_call},
    {NULL, NULL},
};
