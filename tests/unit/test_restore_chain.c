/*
 * Restore of backups of a chain and delta restore (backup.h, docs/design/incremental.md), on a
 * local repository that the tests fill as create would: a model data directory goes through
 * three states (full <- incr <- incr: relation files changed, truncated, extended, removed,
 * added; non-relation files changed and not), each stored as a version-2 backup (WHOLE, DELTA
 * and REF records, delta extents computed from the model, two bundles) with its WAL.
 *
 * Chain: each backup restores to its state (content, size, mode, mtime; removed files absent),
 * with 1 and 3 workers; a malformed delta extent and a well-formed one whose blocks are wrong
 * both fail naming the file; a missing or incomplete link is refused naming it (the catalog's
 * chain status), and without --backup the newest backup whose chain is whole is restored. Delta:
 * files that match are left alone (same inode and mtime), others rewritten, extra files and
 * directories removed, what backups leave out kept; another system identifier, a running
 * postmaster, an empty or missing directory are refused; a run interrupted after pg_control
 * went is finished by a second one; a full backup works too. Block level: a relation file with a
 * few differing blocks is patched in place, each block from the newest layer holding it, older
 * layers' bundles unread when newer ones hold everything; a wrong recorded SHA-256 fails naming
 * the file; without the target's map object the files are compared whole; a file large enough
 * for the hashing thread (io/hashpipe.h) is patched, left alone, or refused for a wrong SHA-256
 * just the same.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backup/backup.h"
#include "backup/pool.h"
#include "backup/restore_int.h"
#include "io/hashpipe.h"
#include "io/object.h"
#include "pg/wal.h"
#include "repo/blockmap.h"
#include "fixture.h"
#include "unit.h"

#define BS 1024u
#define SEG (16u << 20)
#define MAXF 16

/* ---- the model --------------------------------------------------------------------------- */

struct mfile {
    const char *path;
    uint8_t *data;
    size_t size;
    uint32_t mode;
    int64_t mtime;
};

struct state {
    struct mfile f[MAXF];
    size_t n;
};

/* A stored backup: its id, its model state, and what each file's base is. */
struct stored {
    char id[WS_BACKUP_ID_LEN + 1];
    struct state s;
    char base[MAXF][WS_BACKUP_ID_LEN + 1]; /* "" : stored whole in this backup */
};

static const char *const dirs[] = {"global", "base", "base/1", "pg_wal", "pg_wal/archive_status"};

static struct mfile *state_find(struct state *s, const char *path)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->f[i].path, path) == 0)
            return &s->f[i];
    return NULL;
}

/* Sets path to size bytes from seed (an existing file keeps the bytes below `keep`). */
static void state_put(struct state *s, const char *path, size_t size, uint32_t seed, size_t keep)
{
    struct mfile *f = state_find(s, path);
    uint8_t *d = malloc(size + 1);

    if (!d)
        abort();
    unit_random(d, size, seed);
    if (!f) {
        f = &s->f[s->n++];
        f->path = path;
        f->data = NULL;
        f->size = 0;
        keep = 0;
    }
    if (keep > f->size)
        keep = f->size;
    if (keep > size)
        keep = size;
    if (keep)
        memcpy(d, f->data, keep);
    free(f->data);
    f->data = d;
    f->size = size;
    f->mode = strncmp(path, "base/", 5) == 0 ? 0600 : 0644;
    f->mtime = 1790000000 + seed;
}

/* Changes block b of path (its bytes from seed). */
static void state_block(struct state *s, const char *path, size_t b, uint32_t seed)
{
    struct mfile *f = state_find(s, path);
    size_t n = f->size - b * BS < BS ? f->size - b * BS : BS;

    unit_random(f->data + b * BS, n, seed);
    f->mtime = 1790000000 + seed;
}

static void state_remove(struct state *s, const char *path)
{
    struct mfile *f = state_find(s, path);

    free(f->data);
    *f = s->f[--s->n];
}

static void state_copy(struct state *to, const struct state *from)
{
    *to = *from;
    for (size_t i = 0; i < to->n; i++) {
        to->f[i].data = malloc(to->f[i].size + 1);
        if (to->f[i].size)
            memcpy(to->f[i].data, from->f[i].data, to->f[i].size);
    }
}

static void state_free(struct state *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->f[i].data);
    s->n = 0;
}

/* pg_control: the system identifier first. */
static void state_control(struct state *s, uint64_t sysid, uint32_t seed)
{
    state_put(s, "global/pg_control", 8192, seed, 0);
    memcpy(state_find(s, "global/pg_control")->data, &sysid, 8);
}

/* ---- the repository ------------------------------------------------------------------------ */

struct env {
    char root[512], repo[600], key[600];
    struct ws_config cfg;
    struct ws_backup_env benv;
    struct stored st[4];
    size_t nst;
    uint64_t next_segno;
    int ts; /* the backups have tablespace TS_OID, restored at ts_dir */
    char ts_dir[600];
};

#define TS_OID 16400
#define TS_LOCATION "/nonexistent/ts"
#define TS_PG "pg_tblspc/16400/PG_15_202209061"
static const char *const ts_dirs[] = {"pg_tblspc", TS_PG, TS_PG "/1"};

static int put_object(struct env *e, const char *key, const uint8_t *data, size_t len)
{
    struct ws_error err = {0};
    struct ws_repo repo = {0};
    struct ws_object_params p = {0};
    struct ws_sink *put = NULL, *wr = NULL;
    int rc;

    if ((rc = ws_backup_repo_open(NULL, &e->cfg, &repo, &err)) != 0)
        return rc;
    p.name = key;
    p.content_size = -1;
    p.no_digest = 1;
    if ((rc = ws_storage_open_put(repo.st, key, 0, &put, &err)) == 0 &&
        (rc = ws_object_writer_new(put, &p, &wr, &err)) == 0 &&
        (rc = ws_sink_write(wr, data, len, &err)) == 0)
        rc = ws_sink_finish(wr, &err);
    if (rc)
        fprintf(stderr, "    put %s: %s\n", key, err.msg);
    ws_sink_free(wr);
    ws_repo_close(&repo);
    return rc;
}

static void env_init(struct env *e, const char *tag)
{
    struct ws_error err = {0};
    struct ws_repo repo = {0};
    struct ws_identity id = {0};

    memset(e, 0, sizeof(*e));
    snprintf(e->root, sizeof(e->root), "%s/%s", unit_tmpdir(), tag);
    snprintf(e->repo, sizeof(e->repo), "%s/repo", e->root);
    CHECK(unit_mkdir(e->repo) == 0);
    CHECK(unit_config(&e->cfg, "repo", e->repo, "cluster", "main", NULL) == 0);
    e->cfg.parallel = 1;
    e->benv.wal_fetch = "/usr/lib/walsafe-test/wal-fetch";
    id.format_version = 1;
    id.system_identifier = UNIT_SYSID;
    id.pg_version = 150004;
    id.wal_segment_size = SEG;
    REQUIRE(ws_backup_repo_open(NULL, &e->cfg, &repo, &err) == 0);
    CHECK(ws_repo_identity_ensure(&repo, &id, "test", &err) == 0);
    ws_repo_close(&repo);
    e->next_segno = 2;
}

static void env_free(struct env *e)
{
    for (size_t i = 0; i < e->nst; i++)
        state_free(&e->st[i].s);
    ws_config_free(&e->cfg);
}

/* The bundles being written: two, files alternating; and the one map object. */
struct bundles {
    uint8_t *data[2];
    size_t len[2], cap[2];
    int next;
    uint8_t *map;
    size_t ndig;
};

/* The digests of every block of relation file f into the map object, as create records them. */
static void map_add(struct bundles *b, const struct mfile *f, struct ws_bfile *r)
{
    uint64_t nb = ws_blockmap_blocks(f->size, BS);

    if (!ws_blockmap_is_relation(f->path))
        return;
    r->has_map = 1;
    r->map = 0;
    r->map_index = b->ndig;
    b->map = realloc(b->map, (b->ndig + nb + 1) * WS_BLOCK_DIGEST_SIZE);
    for (uint64_t k = 0; k < nb; k++) {
        size_t n = f->size - k * BS < BS ? f->size - k * BS : BS;
        ws_block_digest(f->data + k * BS, n, b->map + (b->ndig + k) * WS_BLOCK_DIGEST_SIZE);
    }
    b->ndig += nb;
}

static uint64_t bundle_add(struct bundles *b, const uint8_t *p, size_t n, uint32_t *which)
{
    int k = b->next++ % 2;
    uint64_t off = b->len[k];

    if (b->len[k] + n + 1 > b->cap[k]) {
        b->cap[k] = (b->len[k] + n + 1) * 2;
        b->data[k] = realloc(b->data[k], b->cap[k]);
    }
    memcpy(b->data[k] + b->len[k], p, n);
    b->len[k] += n;
    *which = (uint32_t)k;
    return off;
}

static void put_be(uint8_t *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

/* The delta extent of f against its reference version r (blockmap.h); NULL when more than half
 * of its blocks changed (then it is stored whole, as create does). */
static uint8_t *make_delta(const struct mfile *f, const struct mfile *r, size_t *len)
{
    uint64_t nb = ws_blockmap_blocks(f->size, BS), rb = ws_blockmap_blocks(r->size, BS);
    uint8_t *x = malloc(WS_DELTA_HEADER + nb * (4 + BS) + 1);
    uint32_t count = 0;
    size_t at;

    for (uint64_t b = 0; b < nb; b++) {
        size_t n = f->size - b * BS < BS ? f->size - b * BS : BS;
        if (b >= rb || r->size - b * BS < n || memcmp(f->data + b * BS, r->data + b * BS, n) != 0)
            put_be(x + WS_DELTA_HEADER + 4 * count++, b, 4);
    }
    if (count * 2 > nb && nb > 1) {
        free(x);
        return NULL;
    }
    put_be(x, f->size, 8);
    put_be(x + 8, count, 4);
    at = WS_DELTA_HEADER + 4 * count;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t b =
            (uint32_t)((x[WS_DELTA_HEADER + 4 * i] << 24) | (x[WS_DELTA_HEADER + 4 * i + 1] << 16) |
                       (x[WS_DELTA_HEADER + 4 * i + 2] << 8) | x[WS_DELTA_HEADER + 4 * i + 3]);
        size_t n = f->size - (size_t)b * BS < BS ? f->size - (size_t)b * BS : BS;
        memcpy(x + at, f->data + (size_t)b * BS, n);
        at += n;
    }
    *len = at;
    return x;
}

/* One record of backup `me` for model file f, relative to stored backup ref (NULL: full). */
static void add_record(struct ws_manifest *m, struct stored *me, size_t i, const struct stored *ref,
                       struct bundles *b, int damage)
{
    const struct mfile *f = &me->s.f[i];
    const struct mfile *rf = ref ? state_find((struct state *)&ref->s, f->path) : NULL;
    struct ws_bfile r = {0};
    struct ws_error err = {0};
    uint8_t *x = NULL;
    size_t xlen = 0;

    r.path = (char *)f->path;
    r.mode = f->mode;
    r.mtime = f->mtime;
    r.size = f->size;
    EVP_Digest(f->data, f->size, r.sha256, NULL, EVP_sha256(), NULL);
    if (damage == 3)
        r.sha256[0] ^= 1; /* a record that no content has */
    map_add(b, f, &r);
    me->base[i][0] = '\0';
    if (rf) {
        const char *rbase = ref->base[rf - ref->s.f][0] ? ref->base[rf - ref->s.f] : ref->id;
        int same = rf->size == f->size && memcmp(rf->data, f->data, f->size) == 0;
        if (same || (strncmp(f->path, "base/", 5) == 0 && (x = make_delta(f, rf, &xlen)))) {
            snprintf(me->base[i], sizeof(me->base[i]), "%s", rbase);
            snprintf(r.base, sizeof(r.base), "%s", rbase);
            r.kind = same ? WS_BFILE_REF : WS_BFILE_DELTA;
        }
    }
    if (r.kind == WS_BFILE_DELTA) {
        if (damage == 1) /* block numbers that do not increase */
            put_be(x + 8, 2, 4), put_be(x + WS_DELTA_HEADER, 1, 4),
                put_be(x + WS_DELTA_HEADER + 4, 1, 4);
        if (damage == 2 && xlen > WS_DELTA_HEADER + 8)
            x[xlen - 1] ^= 0x55; /* well-formed, wrong bytes */
        r.length = xlen;
        r.offset = bundle_add(b, x, xlen, &r.bundle);
    } else if (r.kind == WS_BFILE_WHOLE) {
        r.offset = bundle_add(b, f->data, f->size, &r.bundle);
    }
    free(x);
    CHECK(ws_manifest_add_file(m, &r, &err) == 0);
}

/* Stores state s as a backup (full when ref is NULL, else incr relative to ref); damage: of
 * the delta extent of damage_path (1 malformed, 2 wrong bytes), or its SHA-256 (3). */
static const char *store_backup(struct env *e, const struct state *s, const struct stored *ref,
                                const char *damage_path, int damage)
{
    struct stored *me = &e->st[e->nst];
    struct ws_manifest m = {0};
    struct ws_error err = {0};
    struct ws_repo repo = {0};
    struct bundles b = {0};
    char key[256], wal[WS_WAL_NAME_LEN + 1], *text = NULL;
    size_t len = 0;

    state_copy(&me->s, s);
    snprintf(me->id, sizeof(me->id), "20261207T10%02zu00Z", e->nst);
    memcpy(m.id, me->id, sizeof(m.id));
    m.version = 2;
    m.label = "unit";
    m.start_time = 1796637600 + (int64_t)e->nst * 60;
    m.stop_time = m.start_time + 30;
    m.start_lsn = e->next_segno * SEG + 40;
    m.stop_lsn = e->next_segno * SEG + 4000;
    m.timeline = 1;
    m.pg_version = 150004;
    m.system_identifier = UNIT_SYSID;
    m.wal_segment_size = SEG;
    m.block_size = BS;
    m.type = ref ? WS_BACKUP_INCR : WS_BACKUP_FULL;
    if (ref)
        memcpy(m.reference, ref->id, sizeof(m.reference));
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
        CHECK(ws_manifest_add_dir(&m, dirs[i], 0700, &err) == 0);
    for (size_t i = 0; e->ts && i < sizeof(ts_dirs) / sizeof(ts_dirs[0]); i++)
        CHECK(ws_manifest_add_dir(&m, ts_dirs[i], 0700, &err) == 0);
    if (e->ts)
        CHECK(ws_manifest_add_tblspc(&m, TS_OID, TS_LOCATION, &err) == 0);
    for (size_t i = 0; i < me->s.n; i++) {
        add_record(&m, me, i, ref, &b,
                   damage_path && strcmp(me->s.f[i].path, damage_path) == 0 ? damage : 0);
        m.bytes += me->s.f[i].size;
    }
    m.bundles = 2;
    m.maps = 1;
    snprintf(repo.cluster, sizeof(repo.cluster), "main");
    ws_backup_map_key(&repo, me->id, 0, key, sizeof(key));
    CHECK(put_object(e, key, b.map ? b.map : (const uint8_t *)"", b.ndig * WS_BLOCK_DIGEST_SIZE) ==
          0);
    free(b.map);
    for (uint32_t k = 0; k < 2; k++) {
        ws_backup_bundle_key(&repo, me->id, k, key, sizeof(key));
        snprintf(repo.cluster, sizeof(repo.cluster), "main");
        ws_backup_bundle_key(&repo, me->id, k, key, sizeof(key));
        CHECK(put_object(e, key, b.data[k] ? b.data[k] : (const uint8_t *)"", b.len[k]) == 0);
        free(b.data[k]);
    }
    ws_wal_format_name(wal, 1, e->next_segno++, SEG);
    CHECK(ws_repo_wal_key(&repo, wal, key, sizeof(key)) == 0);
    CHECK(put_object(e, key, (const uint8_t *)"wal", 3) == 0);
    ws_backup_manifest_key(&repo, me->id, key, sizeof(key));
    CHECK(ws_manifest_format(&m, &text, &len, &err) == 0);
    CHECK(text && put_object(e, key, (const uint8_t *)text, len) == 0);
    free(text);
    m.label = NULL;
    ws_manifest_free(&m);
    e->nst++;
    return me->id;
}

/* ---- restore and compare ------------------------------------------------------------------ */

static int restore(struct env *e, const char *id, const char *dir, int delta, int parallel,
                   struct ws_error *err)
{
    struct ws_restore_opts o = {0};
    struct ws_tblspc_map map = {TS_LOCATION, e->ts_dir};

    memset(err, 0, sizeof(*err));
    o.maps = e->ts ? &map : NULL;
    o.nmaps = e->ts ? 1 : 0;
    o.pgdata = dir;
    o.backup = id;
    o.delta = delta;
    o.parallel = parallel;
    return ws_backup_restore(&e->cfg, &e->benv, &o, err);
}

/* dir holds the files of s with their content, mode and mtime, the recovery settings, and at
 * the top nothing else but `extra` more entries. */
static void check_state_extra(const char *dir, const struct state *s, int extra)
{
    char p[1024];
    struct stat st;

    for (size_t i = 0; i < s->n; i++) {
        uint8_t *got = NULL;
        size_t len = 0;
        snprintf(p, sizeof(p), "%s/%s", dir, s->f[i].path);
        if (unit_read(p, &got, &len) != 0 || len != s->f[i].size ||
            memcmp(got, s->f[i].data, len) != 0) {
            fprintf(stderr, "    %s: content differs (%zu bytes, want %zu)\n", p, len,
                    s->f[i].size);
            unit_fail(__FILE__, __LINE__, s->f[i].path);
        }
        free(got);
        CHECK(stat(p, &st) == 0 && (st.st_mode & 07777) == (s->f[i].mode & 0600) &&
              st.st_mtime == s->f[i].mtime);
    }
    snprintf(p, sizeof(p), "%s/recovery.signal", dir);
    CHECK(unit_exists(p));
    /* PG_VERSION global base pg_wal recovery.signal postgresql.auto.conf (pg_tblspc and
     * tablespace_map with a tablespace) */
    CHECK(unit_entries(dir) == 6 + extra);
}

static void check_state(const char *dir, const struct state *s)
{
    check_state_extra(dir, s, 0);
}

/* The three states: full, incr 1, incr 2 (see the header). */
static void build_chain(struct env *e, const char *damage_path, int damage, const char **ids)
{
    struct state s = {0};

    state_put(&s, "PG_VERSION", 3, 1, 0);
    state_control(&s, UNIT_SYSID, 2);
    state_put(&s, "global/1262", 3000, 3, 0);
    state_put(&s, "base/1/16384", 10 * BS, 4, 0);
    state_put(&s, "base/1/16385", 5 * BS, 5, 0);
    state_put(&s, "base/1/16386", 8 * BS, 6, 0);
    state_put(&s, "base/1/16387", 3 * BS, 7, 0);
    state_put(&s, "base/1/16388", 0, 8, 0);
    if (e->ts)
        state_put(&s, TS_PG "/1/16500", 6 * BS, 9, 0);
    ids[0] = store_backup(e, &s, NULL, NULL, 0);
    /* incr 1: changed blocks, truncated, extended, removed, added, non-relation changed */
    state_block(&s, "base/1/16384", 2, 20);
    state_block(&s, "base/1/16384", 7, 21);
    state_put(&s, "base/1/16385", 3 * BS, 22, 3 * BS);
    state_put(&s, "base/1/16386", 12 * BS, 23, 8 * BS);
    state_remove(&s, "base/1/16387");
    state_put(&s, "base/1/16390", 4 * BS + 10, 24, 0);
    state_put(&s, "global/1262", 3000, 25, 0);
    ids[1] = store_backup(e, &s, &e->st[0], NULL, 0);
    /* incr 2: again and again; the truncated file grows past its old end with a partial block */
    state_block(&s, "base/1/16384", 2, 30);
    state_put(&s, "base/1/16385", 4 * BS + 100, 31, 3 * BS);
    state_block(&s, "base/1/16390", 0, 32);
    if (e->ts)
        state_block(&s, TS_PG "/1/16500", 4, 35);
    state_put(&s, "base/1/16391", 2 * BS, 33, 0);
    state_control(&s, UNIT_SYSID, 34);
    ids[2] = store_backup(e, &s, &e->st[1], damage_path, damage);
    state_free(&s);
}

static void test_chain(void)
{
    struct env e;
    struct ws_error err = {0};
    const char *ids[3];
    char dir[1024];

    env_init(&e, "chain");
    build_chain(&e, NULL, 0, ids);
    for (int k = 0; k < 3; k++) {
        for (int par = 1; par <= 3; par += 2) {
            snprintf(dir, sizeof(dir), "%s/restored-%d-%d", e.root, k, par);
            if (restore(&e, ids[k], dir, 0, par, &err) != 0)
                fprintf(stderr, "    restore %s: %s\n", ids[k], err.msg);
            check_state(dir, &e.st[k].s);
        }
    }
    /* the records were what the test means to exercise: refs and deltas across layers */
    CHECK(strcmp(e.st[2].base[0], ids[0]) == 0); /* PG_VERSION */
    CHECK(strcmp(e.st[2].base[3], ids[0]) == 0); /* base/1/16384: delta on delta */
    CHECK(strcmp(e.st[2].base[4], ids[0]) == 0); /* base/1/16385: cut, then grown */
    CHECK(strcmp(e.st[2].base[2], ids[1]) == 0); /* global/1262: whole in incr 1 */
    env_free(&e);
}

static void test_chain_damaged_delta(void)
{
    for (int damage = 1; damage <= 2; damage++) {
        struct env e;
        struct ws_error err = {0};
        const char *ids[3];
        char dir[1024], tag[32];

        snprintf(tag, sizeof(tag), "damaged-%d", damage);
        env_init(&e, tag);
        build_chain(&e, "base/1/16384", damage, ids);
        snprintf(dir, sizeof(dir), "%s/restored", e.root);
        CHECK(restore(&e, ids[2], dir, 0, 2, &err) == WS_ERR_CORRUPT);
        CHECK(strstr(err.msg, "\"base/1/16384\"") != NULL);
        CHECK(strstr(err.msg, damage == 1 ? "not increasing" : "SHA-256 differs") != NULL);
        CHECK(strstr(err.msg, "do not start it") != NULL);
        env_free(&e);
    }
}

/* Removes objects of the repository by key. */
static void remove_objects(struct env *e, const char *const *keys, size_t n)
{
    struct ws_error err = {0};
    struct ws_repo repo = {0};

    REQUIRE(ws_backup_repo_open(NULL, &e->cfg, &repo, &err) == 0);
    for (size_t i = 0; i < n; i++)
        CHECK(ws_storage_remove(repo.st, keys[i], &err) == 0);
    ws_repo_close(&repo);
}

static void test_chain_missing_link(void)
{
    struct env e;
    struct ws_error err = {0};
    struct ws_repo repo = {0};
    const char *ids[3];
    char dir[1024], wal[WS_WAL_NAME_LEN + 1], k[4][256];
    const char *keys[4] = {k[0], k[1], k[2], k[3]};

    env_init(&e, "missing");
    build_chain(&e, NULL, 0, ids);
    snprintf(repo.cluster, sizeof(repo.cluster), "main");
    snprintf(dir, sizeof(dir), "%s/restored", e.root);
    /* incr 1 lost its WAL: incomplete */
    ws_wal_format_name(wal, 1, 3, SEG);
    CHECK(ws_repo_wal_key(&repo, wal, k[0], sizeof(k[0])) == 0);
    remove_objects(&e, keys, 1);
    CHECK(restore(&e, ids[2], dir, 0, 1, &err) == WS_ERR_INVALID);
    CHECK(strstr(err.msg, ids[1]) && strstr(err.msg, "not complete"));
    CHECK(!unit_exists(dir)); /* refused before anything was made */
    /* its manifest gone */
    ws_backup_manifest_key(&repo, ids[1], k[0], sizeof(k[0]));
    remove_objects(&e, keys, 1);
    CHECK(restore(&e, ids[2], dir, 0, 1, &err) == WS_ERR_INVALID);
    CHECK(strstr(err.msg, ids[1]) != NULL);
    /* all of it gone */
    ws_backup_bundle_key(&repo, ids[1], 0, k[0], sizeof(k[0]));
    ws_backup_bundle_key(&repo, ids[1], 1, k[1], sizeof(k[1]));
    ws_backup_map_key(&repo, ids[1], 0, k[2], sizeof(k[2]));
    remove_objects(&e, keys, 3);
    CHECK(restore(&e, ids[2], dir, 0, 1, &err) == WS_ERR_INVALID);
    CHECK(strstr(err.msg, ids[1]) && strstr(err.msg, "missing"));
    CHECK(!unit_exists(dir));
    /* without --backup: the newest complete backup, the full one */
    CHECK(restore(&e, NULL, dir, 0, 1, &err) == 0);
    check_state(dir, &e.st[0].s);
    env_free(&e);
}

/* ---- delta restore ------------------------------------------------------------------------ */

struct ident {
    ino_t ino;
    time_t mtime;
    long mtime_ns;
};

static void ident_of(const char *dir, const char *rel, struct ident *id)
{
    char p[1024];
    struct stat st;

    snprintf(p, sizeof(p), "%s/%s", dir, rel);
    memset(id, 0, sizeof(*id));
    if (stat(p, &st) == 0) {
        id->ino = st.st_ino;
        id->mtime = st.st_mtime;
        id->mtime_ns = st.st_mtim.tv_nsec;
    }
}

static int ident_same(const char *dir, const char *rel, const struct ident *want)
{
    struct ident now;

    ident_of(dir, rel, &now);
    return now.ino == want->ino && now.mtime == want->mtime && now.mtime_ns == want->mtime_ns;
}

static void put_text(const char *dir, const char *rel, const char *text)
{
    char p[2048];

    snprintf(p, sizeof(p), "%s/%s", dir, rel);
    CHECK(unit_write(p, text, strlen(text), 0600) == 0);
}

static int exists_in(const char *dir, const char *rel)
{
    char p[2048];

    snprintf(p, sizeof(p), "%s/%s", dir, rel);
    return unit_exists(p);
}

static void test_delta(void)
{
    struct env e;
    struct ws_error err = {0};
    const char *ids[3];
    struct ident pgv, g1262;
    char dir[1024], p[1100];

    env_init(&e, "delta");
    build_chain(&e, NULL, 0, ids);
    snprintf(dir, sizeof(dir), "%s/pgdata", e.root);
    REQUIRE(restore(&e, ids[1], dir, 0, 1, &err) == 0);
    ident_of(dir, "PG_VERSION", &pgv);
    ident_of(dir, "global/1262", &g1262);
    /* the copy diverges: extra files and directories, a file changed, one removed, one cut */
    put_text(dir, "base/1/99999", "extra relation");
    snprintf(p, sizeof(p), "%s/junk/sub", dir);
    CHECK(unit_mkdir(p) == 0);
    put_text(dir, "junk/sub/file", "extra");
    put_text(dir, "base/1/16386", "changed, not in incr 2");
    snprintf(p, sizeof(p), "%s/base/1/16390", dir);
    CHECK(unlink(p) == 0);
    snprintf(p, sizeof(p), "%s/base/1/16384", dir);
    CHECK(truncate(p, 3 * BS) == 0);
    /* and holds what backups leave out */
    put_text(dir, "postmaster.opts", "opts");
    put_text(dir, "pg_wal/000000010000000000000009", "wal");
    put_text(dir, "base/1/t3_16999", "temporary relation");
    put_text(dir, "standby.signal", "");
    if (restore(&e, ids[2], dir, 1, 2, &err) != 0)
        fprintf(stderr, "    delta: %s\n", err.msg);
    check_state_extra(dir, &e.st[2].s, 1);
    CHECK(ident_same(dir, "PG_VERSION", &pgv) && ident_same(dir, "global/1262", &g1262));
    CHECK(!exists_in(dir, "base/1/99999") && !exists_in(dir, "junk"));
    CHECK(exists_in(dir, "postmaster.opts") && exists_in(dir, "base/1/t3_16999"));
    /* but the diverged history's WAL goes, as after a plain restore; the backup's directories
     * below pg_wal are made again */
    CHECK(!exists_in(dir, "pg_wal/000000010000000000000009") &&
          exists_in(dir, "pg_wal/archive_status"));
    CHECK(!exists_in(dir, "standby.signal") && !exists_in(dir, "global/pg_control.walsafe-delta"));
    /* again: nothing to do, nothing touched */
    ident_of(dir, "base/1/16384", &pgv);
    CHECK(restore(&e, ids[2], dir, 1, 1, &err) == 0);
    CHECK(ident_same(dir, "base/1/16384", &pgv));
    check_state_extra(dir, &e.st[2].s, 1);
    /* a full backup too */
    CHECK(restore(&e, ids[0], dir, 1, 3, &err) == 0);
    check_state_extra(dir, &e.st[0].s, 1);
    env_free(&e);
}

static void test_delta_refused(void)
{
    struct env e;
    struct ws_error err = {0};
    const char *ids[3];
    char dir[1024], p[1100], pid[32];
    uint8_t control[8192] = {0};
    uint64_t other = UNIT_SYSID + 1;
    pid_t child;

    env_init(&e, "delta-refused");
    build_chain(&e, NULL, 0, ids);
    /* another database system */
    snprintf(dir, sizeof(dir), "%s/other", e.root);
    snprintf(p, sizeof(p), "%s/global", dir);
    CHECK(unit_mkdir(p) == 0);
    memcpy(control, &other, 8);
    snprintf(p, sizeof(p), "%s/global/pg_control", dir);
    CHECK(unit_write(p, control, sizeof(control), 0600) == 0);
    CHECK(restore(&e, ids[2], dir, 1, 1, &err) == WS_ERR_FOREIGN);
    CHECK(strstr(err.msg, "database system") != NULL);
    CHECK(exists_in(dir, "global/pg_control") && unit_entries(dir) == 1);
    /* no pg_control at all */
    CHECK(unlink(p) == 0);
    CHECK(restore(&e, ids[2], dir, 1, 1, &err) == WS_ERR_INVALID);
    CHECK(strstr(err.msg, "no global/pg_control") != NULL);
    /* empty and missing directories: a plain restore is the way */
    snprintf(dir, sizeof(dir), "%s/empty", e.root);
    CHECK(unit_mkdir(dir) == 0);
    CHECK(restore(&e, ids[2], dir, 1, 1, &err) == WS_ERR_INVALID);
    CHECK(strstr(err.msg, "is empty; restore into it without --delta") != NULL);
    snprintf(dir, sizeof(dir), "%s/missing", e.root);
    CHECK(restore(&e, ids[2], dir, 1, 1, &err) == WS_ERR_INVALID);
    CHECK(strstr(err.msg, "is missing") && !unit_exists(dir));
    /* a running postmaster (this process), then a stale postmaster.pid */
    snprintf(dir, sizeof(dir), "%s/running", e.root);
    REQUIRE(restore(&e, ids[0], dir, 0, 1, &err) == 0);
    snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    put_text(dir, "postmaster.pid", pid);
    CHECK(restore(&e, ids[2], dir, 1, 1, &err) == WS_ERR_INVALID);
    CHECK(strstr(err.msg, "running") && exists_in(dir, "global/pg_control"));
    if ((child = fork()) == 0)
        _exit(0);
    CHECK(child > 0 && waitpid(child, NULL, 0) == child);
    snprintf(pid, sizeof(pid), "%ld\n", (long)child);
    put_text(dir, "postmaster.pid", pid);
    CHECK(restore(&e, ids[2], dir, 1, 1, &err) == 0);
    check_state_extra(dir, &e.st[2].s, 1);
    /* --force and --delta */
    {
        struct ws_restore_opts o = {0};
        o.pgdata = dir;
        o.delta = o.force = 1;
        CHECK(ws_backup_restore(&e.cfg, &e.benv, &o, &err) == WS_ERR_USAGE);
    }
    env_free(&e);
}

static void test_delta_interrupted(void)
{
    struct env e;
    struct ws_error err = {0};
    const char *ids[3];
    char dir[1024], a[1100], b[1100];

    env_init(&e, "delta-interrupted");
    build_chain(&e, NULL, 0, ids);
    snprintf(dir, sizeof(dir), "%s/pgdata", e.root);
    REQUIRE(restore(&e, ids[1], dir, 0, 1, &err) == 0);
    /* a delta restore to incr 2 killed midway: pg_control renamed away, a file half rebuilt,
     * one removed and not yet rebuilt, one extra file not yet removed */
    snprintf(a, sizeof(a), "%s/global/pg_control", dir);
    snprintf(b, sizeof(b), "%s/global/pg_control.walsafe-delta", dir);
    CHECK(rename(a, b) == 0);
    snprintf(a, sizeof(a), "%s/base/1/16385", dir);
    CHECK(truncate(a, BS + 7) == 0);
    snprintf(a, sizeof(a), "%s/base/1/16390", dir);
    CHECK(unlink(a) == 0);
    put_text(dir, "base/1/55555", "left over");
    if (restore(&e, ids[2], dir, 1, 2, &err) != 0)
        fprintf(stderr, "    delta: %s\n", err.msg);
    check_state_extra(dir, &e.st[2].s, 0);
    CHECK(!exists_in(dir, "global/pg_control.walsafe-delta") && !exists_in(dir, "base/1/55555"));
    /* killed after pg_control was written, before the renamed copy went */
    snprintf(a, sizeof(a), "%s/global/pg_control", dir);
    {
        uint8_t *d = NULL;
        size_t n = 0;
        CHECK(unit_read(a, &d, &n) == 0);
        CHECK(unit_write(b, d, n, 0600) == 0);
        free(d);
    }
    CHECK(restore(&e, ids[2], dir, 1, 1, &err) == 0);
    check_state_extra(dir, &e.st[2].s, 0);
    CHECK(!exists_in(dir, "global/pg_control.walsafe-delta"));
    /* killed while pg_control was being written: an empty one beside the saved copy */
    CHECK(rename(a, b) == 0);
    CHECK(unit_write(a, "", 0, 0600) == 0);
    if (restore(&e, ids[2], dir, 1, 1, &err) != 0)
        fprintf(stderr, "    delta: %s\n", err.msg);
    check_state_extra(dir, &e.st[2].s, 0);
    CHECK(!exists_in(dir, "global/pg_control.walsafe-delta"));
    env_free(&e);
}

/* A tablespace: kept through its link when the data directory links to it, swept there too; a
 * destination the data directory does not link to is refused when it is not empty. */
static void test_delta_tablespace(void)
{
    struct env e;
    struct ws_error err = {0};
    const char *ids[3];
    char dir[1024], link[1200], p[1200];
    struct ident id;
    ssize_t n;

    env_init(&e, "delta-ts");
    e.ts = 1;
    snprintf(e.ts_dir, sizeof(e.ts_dir), "%s/ts", e.root);
    build_chain(&e, NULL, 0, ids);
    snprintf(dir, sizeof(dir), "%s/pgdata", e.root);
    REQUIRE(restore(&e, ids[1], dir, 0, 2, &err) == 0);
    check_state_extra(dir, &e.st[1].s, 2);
    ident_of(dir, "pg_tblspc/16400", &id);
    put_text(e.ts_dir, "PG_15_202209061/1/77777", "extra in the tablespace");
    put_text(e.ts_dir, "stray", "extra at the tablespace's top");
    if (restore(&e, ids[2], dir, 1, 2, &err) != 0)
        fprintf(stderr, "    delta: %s\n", err.msg);
    check_state_extra(dir, &e.st[2].s, 2);
    snprintf(p, sizeof(p), "%s/PG_15_202209061/1/77777", e.ts_dir);
    CHECK(!unit_exists(p));
    snprintf(p, sizeof(p), "%s/stray", e.ts_dir);
    CHECK(!unit_exists(p));
    snprintf(p, sizeof(p), "%s/pg_tblspc/16400", dir);
    n = readlink(p, link, sizeof(link) - 1);
    CHECK(n > 0 && (size_t)n == strlen(e.ts_dir) && memcmp(link, e.ts_dir, (size_t)n) == 0);
    /* a link elsewhere is replaced; the directory it named is left alone */
    snprintf(p, sizeof(p), "%s/elsewhere", e.root);
    CHECK(unit_mkdir(p) == 0);
    put_text(p, "keep", "not ours");
    snprintf(link, sizeof(link), "%s/pg_tblspc/16400", dir);
    CHECK(unlink(link) == 0 && symlink(p, link) == 0);
    put_text(dir, "pg_tblspc/99999", "a stray file in pg_tblspc");
    CHECK(restore(&e, ids[2], dir, 1, 1, &err) == WS_ERR_INVALID); /* ts_dir: not linked now */
    CHECK(strstr(err.msg, e.ts_dir) && strstr(err.msg, "does not link to it"));
    {
        char moved[700];
        snprintf(moved, sizeof(moved), "%s/ts-old", e.root);
        CHECK(rename(e.ts_dir, moved) == 0); /* the tablespace directory given up: empty again */
    }
    CHECK(restore(&e, ids[2], dir, 1, 1, &err) == 0);
    check_state_extra(dir, &e.st[2].s, 2);
    CHECK(!exists_in(dir, "pg_tblspc/99999"));
    snprintf(p, sizeof(p), "%s/elsewhere/keep", e.root);
    CHECK(unit_exists(p));
    env_free(&e);
}

/* Overwrites bytes [off, off + n) of dir/rel with a pattern (extends the file past its end). */
static void scribble(const char *dir, const char *rel, off_t off, size_t n)
{
    char p[2048];
    uint8_t junk[4 * BS];
    int fd;

    memset(junk, 0xa5, sizeof(junk));
    snprintf(p, sizeof(p), "%s/%s", dir, rel);
    REQUIRE(n <= sizeof(junk) && (fd = open(p, O_WRONLY)) >= 0);
    CHECK(pwrite(fd, junk, n, off) == (ssize_t)n);
    close(fd);
}

/* Replaces the content of backup id's bundles in the (local) repository with junk: any read of
 * them fails. */
static void spoil_bundles(struct env *e, const char *id)
{
    struct ws_repo repo = {0};
    char key[256], p[1200];

    snprintf(repo.cluster, sizeof(repo.cluster), "main");
    for (uint32_t k = 0; k < 2; k++) {
        ws_backup_bundle_key(&repo, id, k, key, sizeof(key));
        snprintf(p, sizeof(p), "%s/%s", e->repo, key);
        REQUIRE(unit_exists(p));
        CHECK(unit_write(p, "junk", 4, 0600) == 0);
    }
}

/* Relation files with a few differing blocks are patched in place: each block from the newest
 * layer that stored it (block 2 of 16384 changed in both incrementals, 7 in incr 1 only, 5 never:
 * the full's), a longer file cut, a shorter one completed (a partial last block from incr 1's
 * whole copy). */
static void test_delta_patch(void)
{
    struct env e;
    struct ws_error err = {0};
    const char *ids[3];
    struct ident i84, i90, i86;
    char dir[1024];

    env_init(&e, "delta-patch");
    build_chain(&e, NULL, 0, ids);
    snprintf(dir, sizeof(dir), "%s/pgdata", e.root);
    REQUIRE(restore(&e, ids[0], dir, 0, 1, &err) == 0);
    scribble(dir, "base/1/16384", 5 * BS + 3, 10);
    ident_of(dir, "base/1/16384", &i84);
    if (restore(&e, ids[2], dir, 1, 2, &err) != 0)
        fprintf(stderr, "    delta: %s\n", err.msg);
    check_state_extra(dir, &e.st[2].s, 0);
    CHECK(ident_same(dir, "base/1/16384", &i84) == 0); /* mtime set again */
    {
        struct ident now;
        ident_of(dir, "base/1/16384", &now);
        CHECK(now.ino == i84.ino); /* patched, not rebuilt */
    }
    /* longer (cut back), shorter by a partial block (completed from incr 1), a block off */
    scribble(dir, "base/1/16386", 12 * BS, 2 * BS);
    {
        char p[1100];
        snprintf(p, sizeof(p), "%s/base/1/16390", dir);
        CHECK(truncate(p, 4 * BS) == 0);
    }
    scribble(dir, "base/1/16391", 0, 1);
    ident_of(dir, "base/1/16384", &i84);
    ident_of(dir, "base/1/16390", &i90);
    ident_of(dir, "base/1/16386", &i86);
    if (restore(&e, ids[2], dir, 1, 1, &err) != 0)
        fprintf(stderr, "    delta: %s\n", err.msg);
    check_state_extra(dir, &e.st[2].s, 0);
    CHECK(ident_same(dir, "base/1/16384", &i84)); /* matched: not touched */
    {
        struct ident a, b;
        ident_of(dir, "base/1/16390", &a);
        ident_of(dir, "base/1/16386", &b);
        CHECK(a.ino == i90.ino && b.ino == i86.ino);
    }
    env_free(&e);
}

/* From incr 1's state to incr 2's, every differing block is in incr 2: the full backup's
 * bundles are never read (spoiled here: a plain restore fails on them). */
static void test_delta_newest_only(void)
{
    struct env e;
    struct ws_error err = {0};
    const char *ids[3];
    char dir[1024], other[1100];

    env_init(&e, "delta-newest");
    build_chain(&e, NULL, 0, ids);
    snprintf(dir, sizeof(dir), "%s/pgdata", e.root);
    REQUIRE(restore(&e, ids[1], dir, 0, 1, &err) == 0);
    spoil_bundles(&e, ids[0]);
    snprintf(other, sizeof(other), "%s/plain", e.root);
    CHECK(restore(&e, ids[2], other, 0, 1, &err) != 0);
    if (restore(&e, ids[2], dir, 1, 2, &err) != 0)
        fprintf(stderr, "    delta: %s\n", err.msg);
    check_state_extra(dir, &e.st[2].s, 0);
    env_free(&e);
}

/* A record whose SHA-256 no content has fails the delta restore naming the file, whether the
 * file was patched (16384) or all its digests matched (16388, empty and unchanged). */
static void test_delta_wrong_record(void)
{
    static const char *const paths[] = {"base/1/16384", "base/1/16388"};

    for (size_t k = 0; k < 2; k++) {
        struct env e;
        struct ws_error err = {0};
        const char *ids[3];
        char dir[1024], want[64];

        env_init(&e, k ? "delta-wrong-1" : "delta-wrong-0");
        build_chain(&e, paths[k], 3, ids);
        snprintf(dir, sizeof(dir), "%s/pgdata", e.root);
        REQUIRE(restore(&e, ids[1], dir, 0, 1, &err) == 0);
        CHECK(restore(&e, ids[2], dir, 1, 2, &err) == WS_ERR_CORRUPT);
        snprintf(want, sizeof(want), "\"%s\"", paths[k]);
        CHECK(strstr(err.msg, want) && strstr(err.msg, "SHA-256 differs"));
        CHECK(strstr(err.msg, "do not start it") != NULL);
        CHECK(exists_in(dir, "global/pg_control.walsafe-delta"));
        env_free(&e);
    }
}

/* The target's map object lost: its files are compared whole (a warning), the restore still
 * comes out right. */
static void test_delta_no_map(void)
{
    struct env e;
    struct ws_error err = {0};
    struct ws_repo repo = {0};
    const char *ids[3];
    char dir[1024], k[256];
    const char *keys[1] = {k};

    env_init(&e, "delta-no-map");
    build_chain(&e, NULL, 0, ids);
    snprintf(dir, sizeof(dir), "%s/pgdata", e.root);
    REQUIRE(restore(&e, ids[1], dir, 0, 1, &err) == 0);
    snprintf(repo.cluster, sizeof(repo.cluster), "main");
    ws_backup_map_key(&repo, ids[2], 0, k, sizeof(k));
    remove_objects(&e, keys, 1);
    if (restore(&e, ids[2], dir, 1, 2, &err) != 0)
        fprintf(stderr, "    delta: %s\n", err.msg);
    check_state_extra(dir, &e.st[2].s, 0);
    env_free(&e);
}

/* A relation file of the data directory hard-linked to a file outside it (a `cp -al` copy, or a
 * link planted by whoever can write the directory): never patched in place through the link,
 * rebuilt as a file of its own; the file outside keeps its bytes. */
static void test_delta_hardlink(void)
{
    struct env e;
    struct ws_error err = {0};
    const char *ids[3];
    char dir[1024], in[1100], out[1100], pv[1100], out2[1100];
    uint8_t *before = NULL, *after = NULL;
    size_t nbefore = 0, nafter = 0;
    struct stat st;

    env_init(&e, "delta-hardlink");
    build_chain(&e, NULL, 0, ids);
    snprintf(dir, sizeof(dir), "%s/pgdata", e.root);
    REQUIRE(restore(&e, ids[0], dir, 0, 1, &err) == 0);
    scribble(dir, "base/1/16384", 5 * BS + 3, 10);
    snprintf(in, sizeof(in), "%s/base/1/16384", dir);
    snprintf(out, sizeof(out), "%s/outside", e.root);
    REQUIRE(link(in, out) == 0);
    REQUIRE(unit_read(out, &before, &nbefore) == 0);
    snprintf(pv, sizeof(pv), "%s/PG_VERSION", dir);
    snprintf(out2, sizeof(out2), "%s/outside-pgv", e.root);
    REQUIRE(link(pv, out2) == 0); /* matches the backup: still made a file of its own */
    if (restore(&e, ids[2], dir, 1, 2, &err) != 0)
        fprintf(stderr, "    delta: %s\n", err.msg);
    check_state_extra(dir, &e.st[2].s, 0);
    REQUIRE(unit_read(out, &after, &nafter) == 0);
    CHECK(nafter == nbefore && memcmp(after, before, nbefore) == 0);
    CHECK(stat(in, &st) == 0 && st.st_nlink == 1);
    CHECK(stat(pv, &st) == 0 && st.st_nlink == 1);
    free(before);
    free(after);
    env_free(&e);
}

/* A file whose bytes match but that is another user's, or has another mode, is not left as it
 * is: a plain restore would have made it the restoring user's with the record's mode. */
static void test_delta_attributes(void)
{
    static const char *const paths[] = {"PG_VERSION", "global/1262", "base/1/16384",
                                        "base/1/16386"};
    struct env e;
    struct ws_error err = {0};
    const char *ids[3];
    char dir[1024], p[1100];
    struct stat st;

    env_init(&e, "delta-attributes");
    build_chain(&e, NULL, 0, ids);
    snprintf(dir, sizeof(dir), "%s/pgdata", e.root);
    REQUIRE(restore(&e, ids[2], dir, 0, 1, &err) == 0);
    for (size_t k = 0; k < 4; k++) {
        snprintf(p, sizeof(p), "%s/%s", dir, paths[k]);
        REQUIRE(k % 2 ? chown(p, 65534, 65534) == 0 : chmod(p, 0666) == 0);
    }
    if (restore(&e, ids[2], dir, 1, 2, &err) != 0)
        fprintf(stderr, "    delta: %s\n", err.msg);
    check_state_extra(dir, &e.st[2].s, 0);
    for (size_t k = 0; k < 4; k++) {
        snprintf(p, sizeof(p), "%s/%s", dir, paths[k]);
        CHECK(stat(p, &st) == 0 && st.st_uid == geteuid() && (st.st_mode & 07777) == 0600);
    }
    env_free(&e);
}

/* A relation file of WS_HASHPIPE_MIN bytes and more is hashed on the hashing thread
 * (io/hashpipe.h) in the compare pass and when it is settled: patched from the incremental (two
 * blocks far apart), then left alone by a second run; a wrong recorded SHA-256 still fails the
 * restore naming it. */
static void test_delta_large_file(void)
{
    for (int wrong = 0; wrong <= 1; wrong++) {
        struct env e;
        struct ws_error err = {0};
        struct state s = {0};
        struct ident before, now;
        const char *ids[2];
        char dir[1024];

        env_init(&e, wrong ? "delta-large-wrong" : "delta-large");
        state_put(&s, "PG_VERSION", 3, 1, 0);
        state_control(&s, UNIT_SYSID, 2);
        state_put(&s, "base/1/16384", WS_HASHPIPE_MIN + 3 * BS + 100, 4, 0);
        ids[0] = store_backup(&e, &s, NULL, NULL, 0);
        state_block(&s, "base/1/16384", 3, 20);
        state_block(&s, "base/1/16384", WS_HASHPIPE_MIN / BS - 2, 21);
        ids[1] = store_backup(&e, &s, &e.st[0], wrong ? "base/1/16384" : NULL, wrong ? 3 : 0);
        state_free(&s);
        snprintf(dir, sizeof(dir), "%s/pgdata", e.root);
        REQUIRE(restore(&e, ids[0], dir, 0, 1, &err) == 0);
        ident_of(dir, "base/1/16384", &before);
        if (wrong) {
            CHECK(restore(&e, ids[1], dir, 1, 2, &err) == WS_ERR_CORRUPT);
            CHECK(strstr(err.msg, "\"base/1/16384\"") && strstr(err.msg, "SHA-256 differs"));
            env_free(&e);
            continue;
        }
        if (restore(&e, ids[1], dir, 1, 2, &err) != 0)
            fprintf(stderr, "    delta: %s\n", err.msg);
        check_state(dir, &e.st[1].s);
        ident_of(dir, "base/1/16384", &now);
        CHECK(now.ino == before.ino); /* patched, not rebuilt */
        ident_of(dir, "base/1/16384", &before);
        CHECK(restore(&e, ids[1], dir, 1, 1, &err) == 0);
        check_state(dir, &e.st[1].s);
        CHECK(ident_same(dir, "base/1/16384", &before)); /* matched: not touched */
        env_free(&e);
    }
}

/* restore --force empties the tablespaces, then the data directory: before any of it, the data
 * directory's recovery.signal, standby.signal and pg_control are gone, so a restore killed (here:
 * failing) while it empties a tablespace leaves no directory PostgreSQL would start (t_restore_kill
 * found recovery.signal beside a half-emptied tablespace). */
static void test_force_disarms_first(void)
{
    char dir[] = "/tmp/ws-disarm-XXXXXX", p[PATH_MAX];
    static const char *const files[] = {"recovery.signal", "standby.signal", "global/pg_control",
                                        "PG_VERSION"};
    struct ws_manifest m = {0};
    struct rdir ts = {0};
    struct restore r = {0};
    struct ws_error err = {0};
    struct stat st;

    CHECK(mkdtemp(dir) != NULL);
    snprintf(p, sizeof(p), "%s/global", dir);
    CHECK(mkdir(p, 0700) == 0);
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
        FILE *f = fopen(p, "w");
        CHECK(f != NULL);
        if (f)
            fclose(f);
    }
    m.ntblspc = 1;
    ts.path = "/nonexistent/tablespace";
    ts.fd = -1; /* emptying it fails */
    r.m = &m;
    r.ts = &ts;
    r.data.path = dir;
    r.data.fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(r.data.fd >= 0);
    CHECK(ws_restore_empty_targets(&r, &err) != 0);
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
        if (stat(p, &st) == 0)
            unit_fail(__FILE__, __LINE__, p);
    }
    snprintf(p, sizeof(p), "%s/PG_VERSION", dir);
    CHECK(stat(p, &st) == 0); /* the rest waits for its turn */
    /* global a symbolic link to a directory holding a pg_control: the link goes, what it points
     * to stays */
    {
        char elsewhere[PATH_MAX], link[PATH_MAX], target[PATH_MAX + 16];
        snprintf(elsewhere, sizeof(elsewhere), "%s.elsewhere", dir);
        CHECK(mkdir(elsewhere, 0700) == 0);
        snprintf(target, sizeof(target), "%s/pg_control", elsewhere);
        FILE *f = fopen(target, "w");
        CHECK(f != NULL);
        if (f)
            fclose(f);
        snprintf(link, sizeof(link), "%s/global", dir);
        CHECK(rmdir(link) == 0 && symlink(elsewhere, link) == 0);
        CHECK(ws_restore_empty_targets(&r, &err) != 0);
        if (lstat(link, &st) == 0)
            unit_fail(__FILE__, __LINE__, "the global link was left");
        CHECK(stat(target, &st) == 0);
        unlink(target);
        rmdir(elsewhere);
    }
    close(r.data.fd);
    unlink(p);
    rmdir(dir);
}

const struct unit_test unit_tests[] = {
    {"chain", test_chain},
    {"chain_damaged_delta", test_chain_damaged_delta},
    {"chain_missing_link", test_chain_missing_link},
    {"delta", test_delta},
    {"delta_refused", test_delta_refused},
    {"delta_interrupted", test_delta_interrupted},
    {"delta_tablespace", test_delta_tablespace},
    {"delta_patch", test_delta_patch},
    {"delta_newest_only", test_delta_newest_only},
    {"delta_wrong_record", test_delta_wrong_record},
    {"delta_no_map", test_delta_no_map},
    {"delta_hardlink", test_delta_hardlink},
    {"delta_attributes", test_delta_attributes},
    {"delta_large_file", test_delta_large_file},
    {"force_disarms_first", test_force_disarms_first},
    {NULL, NULL},
};
