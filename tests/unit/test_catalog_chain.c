/*
 * Chains of diff and incr backups over a local repository (docs/design/incremental.md, "Retention
 * and verify"): the catalog's status of a backup whose chain has a link missing, running, being
 * deleted or invalid, naming the link, also two links down; ws_catalog_chain and
 * ws_catalog_find; verify of a chain (a REF and a DELTA record on a full backup: every link
 * there and complete, each record's base holding the path, delta extents' structure, map objects
 * there and long enough); and the planner's input gathered from it (type, reference: the full
 * backup is kept because the kept incremental references it) and a prune that deletes the chain
 * (no directory of it left).
 */
#include <inttypes.h>
#include <openssl/evp.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backup/backup.h"
#include "base/log.h"
#include "io/object.h"
#include "pg/wal.h"
#include "prune/prune.h"
#include "repo/blockmap.h"
#include "repo/catalog.h"
#include "fixture.h"
#include "unit.h"

#define SEG (16u << 20)
#define SYSID UINT64_C(7311142436245338543)
#define BLK 8192u
#define ID_F "20261120T000000Z"    /* full */
#define ID_I "20261121T000000Z"    /* incr on F */
#define ID_I2 "20261122T000000Z"   /* incr on I */
#define ID_NONE "20261120T120000Z" /* no backup */

/* ---- a repository of a chain ---- */

struct chain {
    char dir[512];
    struct ws_config cfg;
    struct ws_repo repo;
    uint8_t rel_f[2 * BLK], rel_i[2 * BLK]; /* base/1/1259 in F, and in I (block 1 changed) */
    char log[512];
};

static void put(struct chain *c, const char *key, const void *data, size_t len)
{
    struct ws_error err = {0};
    int rc = ws_storage_remove(c->repo.st, key, &err);

    if ((rc != 0 && rc != WS_ERR_NOT_FOUND) ||
        ws_repo_put_small(&c->repo, key, data, len, NULL, &err) != 0)
        unit_fail(__FILE__, __LINE__, err.msg);
}

static void drop(struct chain *c, const char *key)
{
    struct ws_error err = {0};

    if (ws_storage_remove(c->repo.st, key, &err) != 0)
        unit_fail(__FILE__, __LINE__, key);
}

static void put_seg(struct chain *c, uint64_t segno)
{
    char name[WS_WAL_NAME_LEN + 1], key[256];

    ws_wal_format_name(name, 1, segno, SEG);
    if (ws_repo_wal_key(&c->repo, name, key, sizeof(key)) != 0)
        unit_fail(__FILE__, __LINE__, name);
    put(c, key, "wal", 3);
}

/* A record; the manifest copies it. */
static void add_file(struct ws_manifest *m, const char *path, int kind, const char *base,
                     const void *content, uint64_t size, uint64_t offset, uint64_t length, int map)
{
    struct ws_bfile f = {0};
    struct ws_error err = {0};

    f.path = (char *)path;
    f.mode = 0600;
    f.mtime = 1795342500;
    f.size = size;
    EVP_Digest(content, size, f.sha256, NULL, EVP_sha256(), NULL);
    f.kind = kind;
    if (base)
        memcpy(f.base, base, WS_BACKUP_ID_LEN + 1);
    f.offset = offset;
    f.length = length;
    f.has_map = map;
    if (ws_manifest_add_file(m, &f, &err) != 0)
        unit_fail(__FILE__, __LINE__, err.msg);
}

/* The manifest m of backup id (segment segno), as create writes it. */
static void put_manifest(struct chain *c, struct ws_manifest *m, const char *id, int type,
                         const char *reference, uint64_t segno)
{
    struct ws_error err = {0};
    char key[256], *text = NULL;
    size_t len = 0;

    memcpy(m->id, id, WS_BACKUP_ID_LEN + 1);
    m->label = strdup("chain");
    if (ws_parse_utc("2026-11-22T10:15:00Z", &m->start_time) != 0)
        unit_fail(__FILE__, __LINE__, "ws_parse_utc");
    m->start_time -= (int64_t)(ID_I2[7] - id[7]) * 86400; /* one a day */
    m->stop_time = m->start_time + 60;
    m->start_lsn = segno * SEG + 0x28;
    m->stop_lsn = segno * SEG + 0x100;
    m->timeline = 1;
    m->pg_version = 150004;
    m->system_identifier = SYSID;
    m->wal_segment_size = SEG;
    m->version = 2;
    m->bundles = 1;
    m->maps = 1;
    m->block_size = BLK;
    m->type = type;
    if (reference)
        memcpy(m->reference, reference, WS_BACKUP_ID_LEN + 1);
    ws_backup_manifest_key(&c->repo, id, key, sizeof(key));
    if (ws_manifest_format(m, &text, &len, &err) != 0)
        unit_fail(__FILE__, __LINE__, err.msg);
    put(c, key, text, len);
    free(text);
    put_seg(c, segno);
}

/* A map object of n digests (their values do not matter to verify). */
static void put_map(struct chain *c, const char *id, size_t n)
{
    uint8_t digests[4 * WS_BLOCK_DIGEST_SIZE] = {0};
    char key[256];

    ws_backup_map_key(&c->repo, id, 0, key, sizeof(key));
    put(c, key, digests, n * WS_BLOCK_DIGEST_SIZE);
}

/* A full backup (F): PG_VERSION and base/1/1259 (2 blocks) whole. */
static void put_full(struct chain *c, const char *id, uint64_t segno)
{
    struct ws_manifest m = {0};
    uint8_t bundle[3 + sizeof(c->rel_f)];
    char key[256];

    memcpy(bundle, "15\n", 3);
    memcpy(bundle + 3, c->rel_f, sizeof(c->rel_f));
    add_file(&m, "PG_VERSION", WS_BFILE_WHOLE, NULL, "15\n", 3, 0, 0, 0);
    add_file(&m, "base/1/1259", WS_BFILE_WHOLE, NULL, c->rel_f, sizeof(c->rel_f), 3, 0, 1);
    ws_backup_bundle_key(&c->repo, id, 0, key, sizeof(key));
    put(c, key, bundle, sizeof(bundle));
    put_map(c, id, 2);
    put_manifest(c, &m, id, WS_BACKUP_FULL, NULL, segno);
    ws_manifest_free(&m);
}

/* A delta extent of the file rel (2 blocks) holding block 1; `count_lie` adds to its count. */
static size_t delta_extent(const uint8_t *rel, uint32_t count_lie, uint8_t *out)
{
    uint64_t size = 2 * BLK;
    uint32_t count = 1 + count_lie, block = 1;

    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(size >> (56 - 8 * i));
    for (int i = 0; i < 4; i++) {
        out[8 + i] = (uint8_t)(count >> (24 - 8 * i));
        out[12 + i] = (uint8_t)(block >> (24 - 8 * i));
    }
    memcpy(out + 16, rel + BLK, BLK);
    return 16 + BLK;
}

/* An incr `id` on `ref`: PG_VERSION a REF, base/1/1259 a DELTA (block 1), both based on F;
 * extra_ref: also a REF record of a path F does not hold, and one based on no backup of the
 * chain. */
static void put_incr(struct chain *c, const char *id, const char *ref, uint64_t segno,
                     int extra_ref)
{
    struct ws_manifest m = {0};
    uint8_t ext[16 + BLK];
    size_t len = delta_extent(c->rel_i, 0, ext);
    char key[256];

    add_file(&m, "PG_VERSION", WS_BFILE_REF, ID_F, "15\n", 3, 0, 0, 0);
    add_file(&m, "base/1/1259", WS_BFILE_DELTA, ID_F, c->rel_i, sizeof(c->rel_i), 0, len, 1);
    if (extra_ref)
        add_file(&m, "global/1262", WS_BFILE_REF, ID_F, "x", 1, 0, 0, 0);
    if (extra_ref)
        add_file(&m, "global/1263", WS_BFILE_REF, ID_NONE, "x", 1, 0, 0, 0);
    ws_backup_bundle_key(&c->repo, id, 0, key, sizeof(key));
    put(c, key, ext, len);
    put_map(c, id, 2);
    put_manifest(c, &m, id, WS_BACKUP_INCR, ref, segno);
    ws_manifest_free(&m);
}

/* F <- I, complete, in a fresh local repository named by tag. */
static void chain_init(struct chain *c, const char *tag)
{
    struct ws_identity id = {0};
    struct ws_error err = {0};

    memset(c, 0, sizeof(*c));
    unit_random(c->rel_f, sizeof(c->rel_f), 7);
    memcpy(c->rel_i, c->rel_f, sizeof(c->rel_i));
    unit_random(c->rel_i + BLK, BLK, 8);
    if (unit_path(c->dir, sizeof(c->dir), "chain-%s", tag) != 0 ||
        unit_path(c->log, sizeof(c->log), "chain-%s.log", tag) != 0 || unit_mkdir(c->dir) != 0 ||
        unit_config(&c->cfg, "repo", c->dir, "cluster", "main", NULL) != 0 ||
        ws_repo_open(&c->cfg, &c->repo, &err) != 0)
        unit_fail(__FILE__, __LINE__, err.msg);
    id.system_identifier = SYSID;
    id.pg_version = 150004;
    id.wal_segment_size = SEG;
    if (ws_repo_identity_ensure(&c->repo, &id, "test", &err) != 0)
        unit_fail(__FILE__, __LINE__, err.msg);
    put_full(c, ID_F, 10);
    put_incr(c, ID_I, ID_F, 20, 0);
    for (uint64_t s = 11; s <= 30; s++)
        if (s != 20)
            put_seg(c, s); /* no gap for verify --all */
}

static void chain_free(struct chain *c)
{
    ws_repo_close(&c->repo);
    ws_config_free(&c->cfg);
}

static int load(struct chain *c, struct ws_catalog *cat)
{
    struct ws_error err = {0};
    int rc = ws_catalog_load(&c->repo, NULL, cat, &err);

    if (rc)
        fprintf(stderr, "    catalog: %s\n", err.msg);
    return rc;
}

/* The file at path as text into out (cut to fit; "" when it cannot be read). */
static void read_text(const char *path, char *out, size_t outsz)
{
    uint8_t *data = NULL;
    size_t len = 0;

    out[0] = '\0';
    if (unit_read(path, &data, &len) == 0)
        snprintf(out, outsz, "%.*s", (int)len, (const char *)data);
    free(data);
}

/* verify of id (NULL: --all); log gets what it logged. */
static int verify(struct chain *c, const char *id, char *log, size_t logsz, struct ws_error *err)
{
    static const struct ws_backup_env env = {NULL, NULL, NULL, NULL};
    int rc;

    unit_write(c->log, "", 0, 0600);
    ws_log_set_file(c->log);
    rc = ws_backup_verify(&c->cfg, &env, id, id == NULL, err);
    ws_log_set_file(NULL);
    read_text(c->log, log, logsz);
    return rc;
}

/* `basebackup list` (json or text) into out. */
static int list(struct chain *c, int json, char *out, size_t outsz)
{
    struct ws_error err = {0};
    char path[600];
    int saved, fd, rc;

    snprintf(path, sizeof(path), "%s.list", c->dir);
    fflush(stdout);
    saved = dup(STDOUT_FILENO);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (saved < 0 || fd < 0 || dup2(fd, STDOUT_FILENO) < 0)
        abort();
    rc = ws_backup_list(&c->cfg, json, &err);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    close(fd);
    read_text(path, out, outsz);
    return rc;
}

/* ---- tests ---- */

static void test_chain_complete(void)
{
    struct chain c;
    struct ws_catalog cat;
    struct ws_error err = {0};
    const struct ws_catalog_backup *f, *i, **v = NULL;
    size_t n = 0;
    char log[8192];

    chain_init(&c, "complete");
    REQUIRE(load(&c, &cat) == 0);
    f = ws_catalog_find(&cat, ID_F);
    i = ws_catalog_find(&cat, ID_I);
    REQUIRE(f && i && !ws_catalog_find(&cat, ID_I2) && !ws_catalog_find(&cat, "x"));
    CHECK(f->status == WS_BACKUP_COMPLETE && i->status == WS_BACKUP_COMPLETE);
    CHECK(i->chain_error[0] == '\0' && i->m.type == WS_BACKUP_INCR);
    CHECK(ws_catalog_latest(&cat) == i);
    REQUIRE(ws_catalog_chain(&cat, i, &v, &n, &err) == 0);
    CHECK(n == 2 && v[0] == i && v[1] == f);
    free(v);
    REQUIRE(ws_catalog_chain(&cat, f, &v, &n, &err) == 0);
    CHECK(n == 1 && v[0] == f);
    free(v);
    ws_catalog_free(&cat);
    CHECK(verify(&c, ID_I, log, sizeof(log), &err) == 0);
    CHECK(log[0] == '\0');
    if (log[0])
        fprintf(stderr, "    logged: %s", log);
    CHECK(verify(&c, NULL, log, sizeof(log), &err) == 0);
    chain_free(&c);
}

/* The status of I and of I2 (on I) as F changes. */
static void check_broken(struct chain *c, enum ws_backup_status want, const char *state)
{
    struct ws_catalog cat;
    struct ws_error err = {0};
    const struct ws_catalog_backup *i, *i2, **v = NULL;
    char s1[128], s2[128];
    size_t n = 0;

    REQUIRE(load(c, &cat) == 0);
    i = ws_catalog_find(&cat, ID_I);
    i2 = ws_catalog_find(&cat, ID_I2);
    REQUIRE(i && i2);
    snprintf(s1, sizeof(s1), "its reference %s is %s", ID_F, state);
    snprintf(s2, sizeof(s2), "%s, a backup of its chain, is %s", ID_F, state);
    CHECK(i->status == want && strcmp(i->chain_error, s1) == 0);
    CHECK(i2->status == want && strcmp(i2->chain_error, s2) == 0);
    if (strcmp(i->chain_error, s1) != 0 || strcmp(i2->chain_error, s2) != 0)
        fprintf(stderr, "    \"%s\"; \"%s\"\n", i->chain_error, i2->chain_error);
    CHECK(i->missing_wal[0] == '\0' && ws_catalog_latest(&cat) != i2);
    ws_catalog_why(i, s2, sizeof(s2));
    CHECK(strcmp(s2, s1) == 0);
    if (strcmp(state, "missing") == 0)
        CHECK(ws_catalog_chain(&cat, i2, &v, &n, &err) == WS_ERR_NOT_FOUND && !v &&
              strstr(err.msg, ID_F));
    if (strcmp(state, "running (no manifest)") == 0)
        CHECK(ws_catalog_chain(&cat, i2, &v, &n, &err) == WS_ERR_CORRUPT && !v &&
              strstr(err.msg, "backup " ID_F " of the chain of backup " ID_I2));
    ws_catalog_free(&cat);
}

static void test_chain_broken_links(void)
{
    struct chain c;
    struct ws_catalog cat;
    struct ws_error err = {0};
    char key[256], tomb[256];
    char log[8192];

    chain_init(&c, "broken");
    put_incr(&c, ID_I2, ID_I, 30, 0);
    REQUIRE(load(&c, &cat) == 0);
    CHECK(ws_catalog_find(&cat, ID_I2)->status == WS_BACKUP_COMPLETE);
    ws_catalog_free(&cat);

    /* F's manifest damaged: both invalid */
    ws_backup_manifest_key(&c.repo, ID_F, key, sizeof(key));
    put(&c, key, "walsafe-manifest 2\n", 19);
    check_broken(&c, WS_BACKUP_INVALID, "invalid");
    /* F being deleted */
    ws_backup_tombstone_key(&c.repo, ID_F, tomb, sizeof(tomb));
    put(&c, tomb, "deleting\n", 9);
    check_broken(&c, WS_BACKUP_INCOMPLETE, "being deleted");
    drop(&c, tomb);
    /* F without manifest */
    drop(&c, key);
    check_broken(&c, WS_BACKUP_INCOMPLETE, "running (no manifest)");
    /* F gone */
    ws_backup_bundle_key(&c.repo, ID_F, 0, key, sizeof(key));
    drop(&c, key);
    ws_backup_map_key(&c.repo, ID_F, 0, key, sizeof(key));
    drop(&c, key);
    check_broken(&c, WS_BACKUP_INCOMPLETE, "missing");
    /* list shows why, under the backup (text) and as its "error" (JSON) */
    {
        char out[8192];
        CHECK(list(&c, 0, out, sizeof(out)) == 0);
        CHECK(strstr(out, "  its reference " ID_F " is missing\n") != NULL);
        CHECK(strstr(out, "  " ID_F ", a backup of its chain, is missing\n") != NULL);
        CHECK(list(&c, 1, out, sizeof(out)) == 0);
        CHECK(strstr(out, "\"error\": \"its reference " ID_F " is missing\"") != NULL);
    }
    /* keep refuses it, saying why */
    CHECK(ws_backup_keep(&c.cfg, ID_I, 0, &err) == WS_ERR_INVALID);
    CHECK(strstr(err.msg, "not complete (its reference " ID_F " is missing)") != NULL);
    /* verify names it, as today: exit 1 with the list */
    CHECK(verify(&c, ID_I2, log, sizeof(log), &err) == WS_ERR_CORRUPT);
    CHECK(strstr(err.msg, "failed verification") != NULL);
    CHECK(strstr(log, "backup " ID_I ": its reference " ID_F " is missing") != NULL);
    chain_free(&c);
}

/* list with cluster "all": every top-level folder holding an identity, by name, each as a
 * one-cluster list prints it; one that cannot be read is reported in its place and fails the
 * command after the others. */
static void test_list_all_clusters(void)
{
    struct chain c;
    struct ws_identity id = {WS_REPO_FORMAT, SYSID + 1, 15, SEG};
    struct ws_error err = {0};
    const char *head = "{\"clusters\": [\n{\"cluster\": \"b-second\", \"system_identifier\": "
                       "\"7311142436245338544\", \"backups\": [], ";
    char out[16384], *b, *bad, *m;

    chain_init(&c, "all");
    snprintf(c.repo.cluster, sizeof(c.repo.cluster), "b-second");
    REQUIRE(ws_repo_identity_ensure(&c.repo, &id, "test", &err) == 0);
    put(&c, "c-bad/identity", "not an identity", 15);
    put(&c, "d-none/wal/x", "x", 1);      /* no identity: no cluster */
    put(&c, "e/nested/identity", "x", 1); /* not top-level */
    /* a folder no configuration names, written beside the storage layer (which refuses such a
     * key): its name would forge a line of the text list */
    {
        char dir[1024], file[1100];
        snprintf(dir, sizeof(dir), "%s/f\ncluster \"forged\": x", c.dir);
        snprintf(file, sizeof(file), "%s/identity", dir);
        REQUIRE(unit_mkdir(dir) == 0 && unit_write(file, "x", 1, 0600) == 0);
    }
    snprintf(c.repo.cluster, sizeof(c.repo.cluster), "main");
    free(c.cfg.cluster);
    REQUIRE((c.cfg.cluster = strdup(WS_LIST_ALL_CLUSTERS)) != NULL);

    CHECK(list(&c, 0, out, sizeof(out)) == WS_ERR_STORAGE);
    b = strstr(out, "cluster \"b-second\", database system 7311142436245338544, repository ");
    bad = strstr(out, "\ncluster \"c-bad\": identity of cluster \"c-bad\" in repository");
    m = strstr(out, "\ncluster \"main\", database system 7311142436245338543, repository ");
    CHECK(b == out && bad && m && b < bad && bad < m);
    CHECK(m && strstr(m, ID_F "  complete") != NULL && strstr(m, ID_I "  complete") != NULL);
    CHECK(strstr(out, "d-none") == NULL && strstr(out, "nested") == NULL);
    CHECK(strstr(out, "forged") == NULL);

    CHECK(list(&c, 1, out, sizeof(out)) == WS_ERR_STORAGE);
    CHECK(strncmp(out, head, strlen(head)) == 0);
    CHECK(strstr(out, "}\n,\n{\"cluster\": \"c-bad\", \"error\": \"identity of cluster") != NULL);
    CHECK(strstr(out,
                 "}\n,\n{\"cluster\": \"main\", \"system_identifier\": \"7311142436245338543\"") !=
          NULL);
    CHECK(strstr(out, "\"id\": \"" ID_I "\", \"status\": \"complete\"") != NULL);
    CHECK(strlen(out) > 3 && strcmp(out + strlen(out) - 3, "]}\n") == 0);
    CHECK(strstr(out, "d-none") == NULL && strstr(out, "nested") == NULL);

    /* every cluster readable: success */
    put(&c, "c-bad/identity", "x", 1);
    drop(&c, "c-bad/identity");
    CHECK(list(&c, 0, out, sizeof(out)) == 0);
    CHECK(strstr(out, "c-bad") == NULL);
    chain_free(&c);
}

/* I's own WAL missing: incomplete for that (missing_wal), and I2 on it incomplete, naming I. */
static void test_chain_link_incomplete(void)
{
    struct chain c;
    struct ws_catalog cat;
    const struct ws_catalog_backup *i, *i2;
    char name[WS_WAL_NAME_LEN + 1], key[256];

    chain_init(&c, "wal");
    put_incr(&c, ID_I2, ID_I, 30, 0);
    ws_wal_format_name(name, 1, 20, SEG);
    ws_repo_wal_key(&c.repo, name, key, sizeof(key));
    drop(&c, key);
    REQUIRE(load(&c, &cat) == 0);
    i = ws_catalog_find(&cat, ID_I);
    i2 = ws_catalog_find(&cat, ID_I2);
    REQUIRE(i && i2);
    CHECK(i->status == WS_BACKUP_INCOMPLETE && strcmp(i->missing_wal, name) == 0);
    CHECK(i->chain_error[0] == '\0');
    {
        char why[128];
        ws_catalog_why(i, why, sizeof(why));
        CHECK(strstr(why, "WAL file ") && strstr(why, name) && strstr(why, " is missing"));
        ws_catalog_why(ws_catalog_find(&cat, ID_F), why, sizeof(why));
        CHECK(why[0] == '\0');
    }
    CHECK(i2->status == WS_BACKUP_INCOMPLETE &&
          strcmp(i2->chain_error, "its reference " ID_I " is incomplete") == 0);
    CHECK(ws_catalog_latest(&cat) == ws_catalog_find(&cat, ID_F));
    ws_catalog_free(&cat);
    chain_free(&c);
}

/* verify: a base that does not hold the path, a malformed delta extent, a short and a missing
 * map object; each one line. */
static void test_verify_chain_problems(void)
{
    struct chain c;
    struct ws_error err = {0};
    uint8_t ext[16 + BLK];
    char key[256], log[8192];
    size_t len;

    chain_init(&c, "verify");
    put_incr(&c, ID_I2, ID_I, 30, 1);
    CHECK(verify(&c, ID_I2, log, sizeof(log), &err) == WS_ERR_CORRUPT);
    CHECK(strstr(log, "file \"global/1262\": its base backup " ID_F " does not hold it") != NULL);
    CHECK(strstr(log, "file \"global/1263\": its base backup \"" ID_NONE "\" is not in its chain"));
    CHECK(strstr(err.msg, "2 problem(s)") != NULL);
    /* I's delta extent says 2 blocks but holds 1 */
    len = delta_extent(c.rel_i, 1, ext);
    ws_backup_bundle_key(&c.repo, ID_I, 0, key, sizeof(key));
    put(&c, key, ext, len);
    CHECK(verify(&c, ID_I, log, sizeof(log), &err) == WS_ERR_CORRUPT);
    CHECK(strstr(log, "base/1/1259") && strstr(log, "delta extent"));
    put_incr(&c, ID_I, ID_F, 20, 0);
    CHECK(verify(&c, ID_I, log, sizeof(log), &err) == 0);
    /* I's map object holds 1 digest of the 2 its file needs; then none at all */
    put_map(&c, ID_I, 1);
    CHECK(verify(&c, ID_I, log, sizeof(log), &err) == WS_ERR_CORRUPT);
    CHECK(strstr(log, "map object 000000 holds 1 block digests, but file \"base/1/1259\" needs 2"));
    ws_backup_map_key(&c.repo, ID_I, 0, key, sizeof(key));
    drop(&c, key);
    CHECK(verify(&c, ID_I, log, sizeof(log), &err) == WS_ERR_CORRUPT);
    CHECK(strstr(log, "map object 000000: missing from the repository") != NULL);
    /* F incomplete (its WAL gone): verify of I says so */
    put_map(&c, ID_I, 2);
    {
        char name[WS_WAL_NAME_LEN + 1];
        ws_wal_format_name(name, 1, 10, SEG);
        ws_repo_wal_key(&c.repo, name, key, sizeof(key));
        drop(&c, key);
    }
    CHECK(verify(&c, ID_I, log, sizeof(log), &err) == WS_ERR_CORRUPT);
    CHECK(strstr(log, ID_F ", a backup of its chain, is incomplete") != NULL);
    chain_free(&c);
}

/* wal-prune's input from this repository: type and reference; the plan keeps F because the
 * newest backup, I, references it. */
static void test_prune_gathers_chain(void)
{
    struct chain c;
    struct ws_error err = {0};
    struct ws_prune_state st;
    struct ws_prune_input in;
    struct ws_prune_plan plan;
    struct ws_prune_result res;
    size_t f, i;
    char t[700];

    chain_init(&c, "prune");
    REQUIRE(ws_prune_gather(&c.repo, NULL, &st, &err) == 0);
    REQUIRE(st.nbackups == 2);
    f = strcmp(st.backups[0].id, ID_F) == 0 ? 0 : 1;
    i = 1 - f;
    CHECK(st.backups[i].type == WS_BACKUP_INCR && strcmp(st.backups[i].reference, ID_F) == 0);
    CHECK(st.backups[f].type == WS_BACKUP_FULL && st.backups[f].reference[0] == '\0');
    ws_prune_input_from_state(&st, &in);
    in.now = st.backups[i].stop_time + 3600;
    in.retain_time = 60;
    REQUIRE(ws_prune_plan_make(&in, &plan, &err) == 0);
    CHECK((plan.why[i] & WS_KEEP_NEWEST) && plan.why[f] == WS_KEEP_REFERENCED);
    if (plan.why[f] != WS_KEEP_REFERENCED)
        fprintf(stderr, "    why %x %x\n", plan.why[i], plan.why[f]);
    CHECK(plan.nbackups_delete == 0);
    ws_prune_why_text(&in, &plan, f, plan.why[f], t, sizeof(t));
    CHECK(strcmp(t, "kept: referenced by " ID_I) == 0);
    ws_prune_plan_free(&plan);
    ws_prune_state_free(&st);
    /* a newer full backup, retain_full = 1: the chain goes, leaving no directory of it (map/
     * included) */
    put_full(&c, ID_I2, 30);
    REQUIRE(ws_prune_gather(&c.repo, NULL, &st, &err) == 0);
    ws_prune_input_from_state(&st, &in);
    in.now = st.backups[2].stop_time + 3600;
    in.retain_full = 1;
    REQUIRE(ws_prune_plan_make(&in, &plan, &err) == 0);
    CHECK(plan.nbackups_delete == 2 && strcmp(in.backups[plan.delete_order[0]].id, ID_I) == 0);
    REQUIRE(ws_prune_execute(&c.repo, &in, &plan, NULL, &res, &err) == 0);
    CHECK(res.backups_deleted == 2);
    snprintf(t, sizeof(t), "%s/main/backup/%s", c.dir, ID_F);
    CHECK(!unit_exists(t));
    snprintf(t, sizeof(t), "%s/main/backup/%s", c.dir, ID_I);
    CHECK(!unit_exists(t));
    ws_prune_result_free(&res);
    ws_prune_plan_free(&plan);
    ws_prune_state_free(&st);
    chain_free(&c);
}

const struct unit_test unit_tests[] = {
    {"chain_complete", test_chain_complete},
    {"chain_broken_links", test_chain_broken_links},
    {"chain_link_incomplete", test_chain_link_incomplete},
    {"list_all_clusters", test_list_all_clusters},
    {"verify_chain_problems", test_verify_chain_problems},
    {"prune_gathers_chain", test_prune_gathers_chain},
    {NULL, NULL},
};
