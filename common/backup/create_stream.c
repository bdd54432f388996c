/*
 * backup/create_stream.c - `basebackup create` with backup_method stream: BASE_BACKUP over a
 * replication connection (pg/repl.h), its tar archives read as they arrive (io/tar.h) into the
 * same records as a local backup (docs/design/remote.md).
 *
 * Steps: connect and identify the server (its facts in c->info, its timeline in c->tli), the
 * shared begin (identity, claim, name) and reference, BASE_BACKUP, then the stream on the pool
 * with one worker and one task: each archive's members (the main directory's paths as they are,
 * a tablespace's under pg_tblspc/<oid>/) through backup/exclude.h; directories and the announced
 * tablespaces into the manifest as create_walk.c records them; backup_label and
 * tablespace_map kept in memory; every other file through the per-file copy of create_copy.c.
 * Then the shared records, the server's backup_manifest stored as object server_manifest and
 * cross-checked against them (pg/server_manifest.h), and the end position.
 *
 * Failures: WS_ERR_CORRUPT for a stream that breaks the protocol's promises (a tablespace the
 * server did not announce, or announced and did not send; a file whose size or CRC-32C differs
 * from the server's manifest; a file one side lists and the other does not hold), naming it;
 * the session's and the copy's errors as they are.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "backup/create_int.h"
#include "backup/exclude.h"
#include "backup/pool.h"
#include "base/crc32c.h"
#include "base/fs.h"
#include "base/log.h"
#include "pg/pgpage.h"
#include "pg/server_manifest.h"
#include "pg/wal.h"
#include "repo/blockmap.h"

/* The reference's map objects in memory at most (docs/design/remote.md, "Map objects"). */
#define MAP_CACHE_BYTES (16u << 20)
#define MAP_CACHE_SLOTS 64
/* The first oid of a user's tablespace: restore refuses a lower one (restore_int.h) */
#define FIRST_NORMAL_OID 16384u
/* backup_label and tablespace_map are kept in memory: no larger than this */
#define SMALL_MEMBER_MAX (1u << 20)

struct cached_map {
    uint32_t no;
    uint8_t *buf;
    size_t len;
    uint64_t used; /* the tick of its last use */
};

struct stream {
    struct create *c;
    struct ws_repl_bb_start start;
    struct ws_repl_msg pending; /* a message the reader of an archive met and left */
    int has_pending;
    struct ws_pool_worker *pw; /* during the copy */
    char prefix[32];           /* of the archive at hand: "" or "pg_tblspc/<oid>/" */
    int main_seen;
    uint8_t *archived; /* per announced tablespace: its archive came */
    size_t cap;        /* of c->j.results */
    char **excluded;   /* files the stream carried that the backup leaves out */
    size_t nexcluded, capexcluded;
    struct ws_bfile **refindex; /* the reference's records by path */
    struct cached_map maps[MAP_CACHE_SLOTS];
    size_t nmaps, map_bytes;
    uint64_t tick, progress;
    uint32_t *crc;          /* per result (then per record of c->m): its CRC-32C */
    size_t capcrc;          /* of crc */
    size_t nstreamed;       /* results the copy made: the records before backup_label's */
    struct ws_bfile **ours; /* our records by path, for the cross-check */
    uint8_t *seen;
    size_t nours;
};

/* The next message: the one left pending, else the session's next. */
static int next_msg(struct stream *s, struct ws_repl_msg *msg, struct ws_error *err)
{
    if (s->has_pending) {
        *msg = s->pending;
        s->has_pending = 0;
        return 0;
    }
    return ws_repl_next(s->c->repl, msg, err);
}

static void on_progress(struct stream *s, uint64_t sent)
{
    if (sent > s->progress && s->pw)
        ws_pool_progress(s->pw, sent - s->progress);
    if (sent > s->progress)
        s->progress = sent;
}

/* io/tar.h's source: the current archive's DATA messages; any other message ends it (and is left
 * pending), PROGRESS is taken on the way. */
static int fill(void *arg, const uint8_t **data, size_t *len, struct ws_error *err)
{
    struct stream *s = arg;
    struct ws_repl_msg msg;
    int rc;

    *len = 0;
    while (!s->has_pending) {
        if ((rc = ws_repl_next(s->c->repl, &msg, err)) != 0)
            return rc;
        if (msg.type == WS_REPL_PROGRESS)
            on_progress(s, msg.progress);
        else if (msg.type != WS_REPL_DATA) {
            s->pending = msg;
            s->has_pending = 1;
        } else if (msg.len > 0) {
            *data = msg.data;
            *len = msg.len;
            return 0;
        }
    }
    return 0;
}

/* exclude.h's question in a stream: the server leaves out an unlogged relation's other forks
 * itself, so none of them arrives. */
static int no_init_fork(void *arg, const char *rel, const char *name, size_t relnode_len)
{
    (void)arg, (void)rel, (void)name, (void)relnode_len;
    return 0;
}

/* Whether the backup leaves out member `path` (of type `type`) or a directory above it, as the
 * walk of a data directory would. */
static int member_excluded(const char *path, enum ws_tar_type type)
{
    const char *name = path, *slash;
    char rel[512], comp[256];
    int depth = 0;

    for (;; depth++) {
        size_t nlen;
        mode_t mode;
        slash = strchr(name, '/');
        nlen = slash ? (size_t)(slash - name) : strlen(name);
        mode = slash || type == WS_TAR_DIR ? S_IFDIR : type == WS_TAR_FILE ? S_IFREG : S_IFLNK;
        snprintf(comp, sizeof(comp), "%.*s", (int)nlen, name);
        snprintf(rel, sizeof(rel), "%.*s", name > path ? (int)(name - path - 1) : 0, path);
        if (ws_exclude_entry(rel, depth, comp, mode, no_init_fork, NULL))
            return 1;
        if (!slash)
            return 0;
        if (ws_exclude_contents(depth, comp))
            return 1;
        name = slash + 1;
    }
}

static int note_excluded(struct stream *s, const char *path, struct ws_error *err)
{
    int rc = ws_create_grow((void **)&s->excluded, &s->capexcluded, s->nexcluded + 1,
                            sizeof(char *), err);

    if (rc == 0 && !(s->excluded[s->nexcluded] = strdup(path)))
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    if (rc == 0)
        s->nexcluded++;
    return rc;
}

/* A member kept in memory (backup_label, tablespace_map) into *out (malloc'ed). */
static int keep_member(struct ws_tar *tar, const struct ws_tar_member *m, char **out,
                       struct ws_error *err)
{
    size_t done = 0, got;
    char *buf;
    int rc;

    if (m->size > SMALL_MEMBER_MAX)
        return ws_error_set(err, WS_ERR_CORRUPT, "\"%s\" of the stream is larger than %u bytes",
                            m->path, SMALL_MEMBER_MAX);
    if (!(buf = malloc(m->size + 1)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    while (done < m->size) {
        if ((rc = ws_tar_read(tar, (uint8_t *)buf + done, m->size - done, &got, err)) != 0) {
            free(buf);
            return rc;
        }
        if (got == 0)
            break;
        done += got;
    }
    buf[done] = '\0';
    if (strlen(buf) != done) {
        free(buf);
        return ws_error_set(err, WS_ERR_CORRUPT, "\"%s\" of the stream holds a NUL byte", m->path);
    }
    free(*out);
    *out = buf;
    return 0;
}

/* The announced tablespace of oid (location NULL) or of location, or -1. */
static long find_tablespace(const struct stream *s, uint32_t oid, const char *location)
{
    for (size_t i = 0; i < s->start.ntablespaces; i++)
        if (location ? strcmp(s->start.tablespaces[i].location, location) == 0
                     : s->start.tablespaces[i].oid == oid)
            return (long)i;
    return -1;
}

/* A symbolic link: pg_tblspc/<oid> (which TABLESPACE_MAP leaves out) must be an announced
 * tablespace's, at its location (a tar link name holds 99 bytes at most), whose record its archive
 * makes; another is left out with a warning. */
static int member_link(struct stream *s, const char *path, const struct ws_tar_member *m,
                       struct ws_error *err)
{
    const char *name = path + 10;
    char *end = NULL;
    unsigned long oid = 0;
    const char *loc;
    long t;

    if (!s->prefix[0] && strncmp(path, "pg_tblspc/", 10) == 0 && *name >= '1' && *name <= '9')
        oid = strtoul(name, &end, 10);
    if (!end || *end || oid > UINT32_MAX) {
        ws_log_warning("backup %s: symbolic link \"%s\" of the stream is left out", s->c->m.id,
                       path);
        return 0;
    }
    if ((t = find_tablespace(s, (uint32_t)oid, NULL)) < 0)
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "the stream holds tablespace link \"%s\", but the server announced "
                            "no tablespace %lu",
                            path, oid);
    loc = s->start.tablespaces[t].location;
    if (strncmp(loc, m->linkname, strlen(m->linkname)) != 0 ||
        (strlen(loc) < sizeof(m->linkname) - 1 && strcmp(loc, m->linkname) != 0))
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "tablespace link \"%s\" points to \"%s\", but the server announced "
                            "its location as \"%s\"",
                            path, m->linkname, loc);
    return 0;
}

/* The reference's map object no (borrowed into *buf, *len), loaded unless cached; the least
 * recently used ones go when the cache would pass its bounds. */
static int cached_map(struct stream *s, uint32_t no, uint8_t **buf, size_t *len,
                      struct ws_error *err)
{
    struct create *c = s->c;
    struct cached_map *e;
    size_t i, lru;
    int rc;

    for (i = 0; i < s->nmaps; i++)
        if (s->maps[i].no == no) {
            s->maps[i].used = ++s->tick;
            *buf = s->maps[i].buf;
            *len = s->maps[i].len;
            return 0;
        }
    if ((rc = ws_blockmap_load(&s->pw->repo, &c->kr, c->ref.id, no, buf, len, err)) != 0)
        return rc;
    while (s->nmaps && (s->nmaps == MAP_CACHE_SLOTS || s->map_bytes + *len > MAP_CACHE_BYTES)) {
        for (lru = 0, i = 1; i < s->nmaps; i++)
            if (s->maps[i].used < s->maps[lru].used)
                lru = i;
        s->map_bytes -= s->maps[lru].len;
        free(s->maps[lru].buf);
        s->maps[lru] = s->maps[--s->nmaps];
    }
    e = &s->maps[s->nmaps++];
    e->no = no;
    e->buf = *buf;
    e->len = *len;
    e->used = ++s->tick;
    s->map_bytes += *len;
    return 0;
}

/* A regular file: through the per-file copy into a new result. */
static int member_file(struct stream *s, struct ws_tar *tar, const char *path,
                       const struct ws_tar_member *m, struct ws_error *err)
{
    struct create *c = s->c;
    struct job *j = &c->j;
    struct cworker *cw = &j->workers[0];
    struct entry e = {0};
    const struct ws_bfile *ref = NULL;
    struct ws_bfile *r;
    int rc;

    if ((rc = ws_create_grow((void **)&j->results, &s->cap, j->nresults + 3, sizeof(*j->results),
                             err)) != 0 ||
        (rc = ws_create_grow((void **)&s->crc, &s->capcrc, j->nresults + 1, sizeof(*s->crc),
                             err)) != 0)
        return rc;
    if (!(e.path = strdup(path)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    e.size = m->size;
    e.mode = m->mode;
    e.mtime = m->mtime;
    e.relation = ws_pg_relation_file(path, &e.segno);
    if (s->refindex)
        ref = ws_create_ref_find(s->refindex, c->ref.nfiles, path);
    if (ref && e.relation && ref->has_map &&
        (rc = cached_map(s, ref->map, &cw->refmap, &cw->refmap_len, err)) != 0)
        goto out;
    r = memset(&j->results[j->nresults], 0, sizeof(*r));
    rc = ws_create_copy_member(j, cw, s->pw, &e, ref, tar, r, &s->crc[j->nresults], err);
    if (rc == 0)
        j->nresults++;
    else
        free(r->pieces);
out:
    cw->refmap = NULL; /* the cache's */
    cw->refmap_len = 0;
    if (rc != 0)
        free(e.path);
    return rc;
}

/* One member of the archive at hand. */
static int member(struct stream *s, struct ws_tar *tar, const struct ws_tar_member *m,
                  struct ws_error *err)
{
    struct create *c = s->c;
    char path[512];
    int rc;

    snprintf(path, sizeof(path), "%s%s", s->prefix, m->path);
    if (!s->prefix[0] && m->type == WS_TAR_FILE && strcmp(path, "backup_label") == 0)
        return keep_member(tar, m, &c->labelfile, err);
    if (!s->prefix[0] && m->type == WS_TAR_FILE && strcmp(path, "tablespace_map") == 0 &&
        ((rc = keep_member(tar, m, &c->spcmap, err)) != 0 || *c->spcmap))
        return rc;
    if (member_excluded(path, m->type))
        return m->type == WS_TAR_FILE ? note_excluded(s, path, err) : 0;
    switch (m->type) {
    case WS_TAR_DIR:
        if ((rc = ws_manifest_add_dir(&c->m, path, m->mode, err)) != 0)
            return rc;
        return strcmp(path, "pg_wal") == 0
                   ? ws_manifest_add_dir(&c->m, "pg_wal/archive_status", 0700, err)
                   : 0;
    case WS_TAR_SYMLINK:
        return member_link(s, path, m, err);
    case WS_TAR_FILE:
        break;
    }
    return member_file(s, tar, path, m, err);
}

/* The archive an ARCHIVE message began: the main directory or an announced tablespace, once
 * each; its members until its end. */
static int read_archive(struct stream *s, const struct ws_repl_msg *msg, struct ws_error *err)
{
    struct ws_tar_member m;
    struct ws_tar *tar = NULL;
    const uint8_t *data;
    size_t len;
    long t = -1;
    int end = 0, rc;
    char name[128]; /* msg's strings are the session's until its next message */

    snprintf(name, sizeof(name), "%s", msg->archive_name);
    if (*msg->tablespace_location && (t = find_tablespace(s, 0, msg->tablespace_location)) < 0)
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "the server sent archive \"%s\" of tablespace location \"%s\", which "
                            "it did not announce",
                            msg->archive_name, msg->tablespace_location);
    if (t < 0 ? s->main_seen++ : s->archived[t]++)
        return ws_error_set(err, WS_ERR_CORRUPT, "the server sent archive \"%s\" twice",
                            msg->archive_name);
    s->prefix[0] = '\0';
    if (t >= 0) {
        snprintf(s->prefix, sizeof(s->prefix), "pg_tblspc/%" PRIu32 "/",
                 s->start.tablespaces[t].oid);
        if ((rc = ws_manifest_add_tblspc(&s->c->m, s->start.tablespaces[t].oid,
                                         s->start.tablespaces[t].location, err)) != 0)
            return rc;
    }
    if ((rc = ws_tar_open(&tar, fill, s, err)) != 0)
        return rc;
    while ((rc = ws_tar_next(tar, &m, &end, err)) == 0 && !end)
        if ((rc = member(s, tar, &m, err)) != 0)
            break;
    if (rc)
        ws_error_prefix(err, "archive \"%s\"", name);
    ws_tar_free(tar);
    while (rc == 0 && !s->has_pending && (rc = fill(s, &data, &len, err)) == 0)
        ; /* what follows the tar's end marker */
    return rc;
}

/* The pool's one task: the archives, until the server's manifest begins (left pending). */
static int stream_task(void *arg, struct ws_pool_worker *pw, size_t task, struct ws_error *err)
{
    struct stream *s = arg;
    struct ws_repl_msg msg;
    int rc = 0;

    (void)task;
    s->pw = pw;
    while (rc == 0 && (rc = next_msg(s, &msg, err)) == 0) {
        if (msg.type == WS_REPL_MANIFEST) {
            s->pending = msg;
            s->has_pending = 1;
            break;
        }
        if (msg.type == WS_REPL_ARCHIVE)
            rc = read_archive(s, &msg, err);
        else if (msg.type == WS_REPL_PROGRESS)
            on_progress(s, msg.progress);
        else
            rc = ws_error_set(err, WS_ERR_CORRUPT, "%s before the server's backup_manifest",
                              msg.type == WS_REPL_END ? "BASE_BACKUP ended"
                                                      : "archive data outside an archive");
    }
    s->pw = NULL;
    return rc;
}

static int stream_end(void *arg, struct ws_pool_worker *pw, struct ws_error *err)
{
    struct stream *s = arg;

    return ws_create_copy_end(&s->c->j, pw, err);
}

/* Every announced tablespace came with its archive, and the main directory with its own. */
static int check_tablespaces(const struct stream *s, struct ws_error *err)
{
    if (!s->main_seen)
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "the server sent no archive of the main data directory");
    for (size_t i = 0; i < s->start.ntablespaces; i++)
        if (!s->archived[i])
            return ws_error_set(err, WS_ERR_CORRUPT,
                                "the server announced tablespace %" PRIu32 " at \"%s\" but sent "
                                "no archive of it",
                                s->start.tablespaces[i].oid, s->start.tablespaces[i].location);
    return 0;
}

/* The archives on the pool (one worker, one task), the reference's records by path at hand. */
static int copy_stream(struct stream *s, struct ws_error *err)
{
    struct create *c = s->c;
    struct ws_pool_params pp = {0};
    int rc, parallel;

    if ((c->ref.id[0] && (rc = ws_create_ref_index(&c->ref, &s->refindex, err)) != 0) ||
        (rc = ws_create_job_init(c, 1, err)) != 0)
        return rc;
    /* one worker: every bundle compresses on `parallel` zstd threads */
    parallel = c->o->parallel > 0 ? c->o->parallel : c->cfg->parallel;
    c->j.zstd_workers = parallel > 1 ? parallel : 0;
    c->j.mt_from = 0;
    if (!(s->archived = calloc(s->start.ntablespaces + 1, 1)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    pp.cfg = c->cfg;
    pp.env = c->env;
    pp.repo = &c->repo;
    pp.workers = 1;
    pp.ntasks = 1;
    pp.task = stream_task;
    pp.end = stream_end;
    pp.arg = s;
    pp.progress = c->o->progress;
    pp.total_bytes = s->start.main_size > 0 ? (uint64_t)s->start.main_size : 0;
    for (size_t i = 0; i < s->start.ntablespaces; i++)
        pp.total_bytes +=
            s->start.tablespaces[i].size > 0 ? (uint64_t)s->start.tablespaces[i].size : 0;
    if ((rc = ws_pool_run(&pp, err)) != 0 || (rc = check_tablespaces(s, err)) != 0)
        return rc;
    if (!c->labelfile)
        return ws_error_set(err, WS_ERR_CORRUPT, "the server's main archive holds no backup_label");
    if (!c->spcmap && !(c->spcmap = strdup("")))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    s->nstreamed = c->j.nresults;
    return ws_create_grow((void **)&c->j.results, &s->cap, c->j.nresults + 2, sizeof(*c->j.results),
                          err);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_rec(const void *a, const void *b)
{
    return strcmp((*(const struct ws_bfile *const *)a)->path,
                  (*(const struct ws_bfile *const *)b)->path);
}

/* pg/server_manifest.h's callback: the server's file against our record of its path (size and
 * CRC-32C, in the byte order of a server of either endianness). */
static int cross_check(void *arg, const struct ws_smf_file *f, struct ws_error *err)
{
    struct stream *s = arg;
    struct ws_bfile want = {0}, *wp = &want, **hit;
    const char *p = f->path;
    uint32_t crc;

    want.path = (char *)f->path;
    if (!(hit = bsearch(&wp, s->ours, s->nours, sizeof(*s->ours), cmp_rec))) {
        if (bsearch(&p, s->excluded, s->nexcluded, sizeof(*s->excluded), cmp_str))
            return 0;
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "the server's backup_manifest lists file \"%s\", which the stream "
                            "did not carry",
                            f->path);
    }
    s->seen[hit - s->ours] = 1;
    crc = s->crc[*hit - s->c->m.files];
    if ((*hit)->size != f->size || (crc != f->crc32c && __builtin_bswap32(crc) != f->crc32c))
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "file \"%s\": the server's backup_manifest says %" PRIu64 " bytes "
                            "of CRC-32C %08" PRIx32 ", we stored %" PRIu64 " bytes of CRC-32C "
                            "%08" PRIx32,
                            f->path, f->size, f->crc32c, (*hit)->size, crc);
    return 0;
}

/* Our records by path (and the excluded files sorted), each to be seen in the server's list;
 * the CRC-32C of the records after the copy's (backup_label, tablespace_map: create.c stores
 * them from c's strings). */
static int index_ours(struct stream *s, struct ws_error *err)
{
    struct create *c = s->c;
    struct ws_manifest *m = &c->m;
    int rc;

    s->nours = m->nfiles;
    if ((rc = ws_create_grow((void **)&s->crc, &s->capcrc, m->nfiles + 1, sizeof(*s->crc), err)) !=
        0)
        return rc;
    if (!(s->ours = malloc((m->nfiles + 1) * sizeof(*s->ours))) ||
        !(s->seen = calloc(m->nfiles + 1, 1)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    for (size_t i = 0; i < m->nfiles; i++) {
        const char *text = strcmp(m->files[i].path, "backup_label") == 0 ? c->labelfile : c->spcmap;
        s->ours[i] = &m->files[i];
        if (i >= s->nstreamed)
            s->crc[i] = ws_crc32c(0, text, strlen(text));
    }
    qsort(s->ours, s->nours, sizeof(*s->ours), cmp_rec);
    if (s->nexcluded > 1)
        qsort(s->excluded, s->nexcluded, sizeof(*s->excluded), cmp_str);
    return 0;
}

/* The server's manifest (after MANIFEST), cross-checked line by line and stored, then END. */
static int server_manifest(struct stream *s, struct ws_repl_msg *msg, struct ws_error *err)
{
    struct create *c = s->c;
    struct ws_sink *out = NULL;
    struct ws_smf *smf = NULL;
    char key[256], what[128];
    size_t i;
    int rc;

    snprintf(what, sizeof(what), "the server's backup_manifest of backup %s", c->m.id);
    ws_backup_object_key(&c->repo, c->m.id, WS_BACKUP_SERVER_MANIFEST, key, sizeof(key));
    if ((rc = next_msg(s, msg, err)) != 0 || (rc = index_ours(s, err)) != 0 ||
        (rc = ws_smf_new(what, cross_check, s, &smf, err)) != 0 ||
        (rc = ws_create_object_open(&c->j, &c->repo, key, 1, 0, &out, err)) != 0)
        goto out;
    while ((rc = ws_repl_next(c->repl, msg, err)) == 0 && msg->type != WS_REPL_END) {
        if (msg->type == WS_REPL_DATA && ((rc = ws_smf_feed(smf, msg->data, msg->len, err)) != 0 ||
                                          (rc = ws_sink_write(out, msg->data, msg->len, err)) != 0))
            goto out;
        if (msg->type == WS_REPL_ARCHIVE || msg->type == WS_REPL_MANIFEST) {
            rc = ws_error_set(err, WS_ERR_CORRUPT, "the server sent %s after its backup_manifest",
                              msg->type == WS_REPL_ARCHIVE ? "an archive" : "a second manifest");
            goto out;
        }
    }
    if (rc || (rc = ws_smf_finish(smf, err)) != 0)
        goto out;
    for (i = 0; i < s->nours; i++)
        if (!s->seen[i]) {
            rc = ws_error_set(err, WS_ERR_CORRUPT,
                              "file \"%s\" of the backup is not in the server's backup_manifest",
                              s->ours[i]->path);
            goto out;
        }
    rc = ws_create_object_close(&c->j, &out, 0, err);
out:
    ws_create_object_close(&c->j, &out, 1, err);
    ws_smf_free(smf);
    return rc;
}

/* The end position; bad pages the server found must be ours too. */
static int end_backup(struct stream *s, const struct ws_repl_msg *msg, struct ws_error *err)
{
    struct ws_manifest *m = &s->c->m;
    char l[24];

    if (msg->end_lsn < m->start_lsn)
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "the server ended backup %s before the position it started at", m->id);
    m->stop_lsn = msg->end_lsn;
    m->stop_time = time(NULL);
    if (msg->checksum_failure && !m->nbadpages)
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "the server found page checksum failures that backup %s did not "
                            "find",
                            m->id);
    ws_wal_format_lsn(l, m->stop_lsn);
    ws_log_info("backup %s: the stream ended at %s", m->id, l);
    return 0;
}

/* The server's facts, as the local path has them from its session. */
static int identify(struct create *c, struct ws_error *err)
{
    struct ws_repl_system sys = {0};
    int rc;

    if (!c->env || !c->env->repl)
        return ws_error_set(err, WS_ERR_INTERNAL,
                            "no replication session for backup_method "
                            "stream");
    if ((rc = ws_repl_connect(c->env->repl, c->cfg->pg_conninfo, &c->repl, err)) != 0 ||
        (rc = ws_repl_identify(c->repl, &sys, err)) != 0)
        return rc;
    if (sys.block_size != WS_PG_BLCKSZ)
        return ws_error_set(err, WS_ERR_CONFIG, "the server's block size is %" PRIu32 ", not %d",
                            sys.block_size, WS_PG_BLCKSZ);
    c->info.version = sys.version;
    c->info.system_identifier = sys.system_identifier;
    c->info.wal_segment_size = sys.wal_segment_size;
    c->info.data_checksums = sys.data_checksums;
    c->tli = sys.timeline;
    return 0;
}

/* The announced tablespaces as restore will accept them: a user tablespace's oid, once each, at
 * an absolute normalised location other than "/" (else the backup would be complete and never
 * restorable). */
static int check_announced(const struct ws_repl_bb_start *start, struct ws_error *err)
{
    for (size_t i = 0; i < start->ntablespaces; i++) {
        const struct ws_repl_tablespace *t = &start->tablespaces[i];
        if (t->oid < FIRST_NORMAL_OID || !ws_path_clean_absolute(t->location))
            return ws_error_set(err, WS_ERR_CORRUPT,
                                "the server announced tablespace %" PRIu32 " at \"%s\": not a "
                                "user tablespace at an absolute normalised path",
                                t->oid, t->location);
        for (size_t k = 0; k < i; k++)
            if (start->tablespaces[k].oid == t->oid ||
                strcmp(start->tablespaces[k].location, t->location) == 0)
                return ws_error_set(err, WS_ERR_CORRUPT,
                                    "the server announced tablespace %" PRIu32 " at \"%s\" twice",
                                    t->oid, t->location);
    }
    return 0;
}

static int begin_base_backup(struct stream *s, struct ws_error *err)
{
    struct create *c = s->c;
    struct ws_repl_bb_opts o = {0};
    char l[24];
    int rc;

    o.label = c->m.label;
    o.fast = c->o->fast;
    o.progress = c->o->progress;
    o.max_rate = (uint64_t)c->cfg->max_rate; /* the server's side of max_rate */
    o.verify_checksums = c->info.data_checksums;
    ws_create_note_checkpoint(c);
    if ((rc = ws_repl_base_backup(c->repl, &o, &s->start, err)) != 0 ||
        (rc = check_announced(&s->start, err)) != 0)
        return rc;
    c->m.start_lsn = s->start.start_lsn;
    ws_wal_format_lsn(l, c->m.start_lsn);
    ws_log_info("backup %s started at %s (stream)", c->m.id, l);
    return 0;
}

static void stream_free(struct stream *s)
{
    size_t i;

    for (i = 0; i < s->nexcluded; i++)
        free(s->excluded[i]);
    free(s->excluded);
    for (i = 0; i < s->nmaps; i++)
        free(s->maps[i].buf);
    free(s->refindex);
    free(s->archived);
    free(s->ours);
    free(s->seen);
    free(s->crc);
    ws_repl_bb_start_free(&s->start);
}

int ws_create_stream(struct create *c, struct ws_error *err)
{
    struct stream s = {0};
    struct ws_repl_msg msg;
    int rc;

    s.c = c;
    if ((rc = identify(c, err)) == 0 && (rc = ws_create_begin(c, err)) == 0 &&
        (rc = ws_create_choose_reference(c, err)) == 0 && (rc = begin_base_backup(&s, err)) == 0 &&
        (rc = copy_stream(&s, err)) == 0) {
        free(s.refindex); /* what only the copy needed */
        s.refindex = NULL;
        c->j.ref = NULL;
        ws_manifest_free(&c->ref);
        if ((rc = ws_create_end_records(c, err)) == 0 && (rc = server_manifest(&s, &msg, err)) == 0)
            rc = end_backup(&s, &msg, err);
    }
    if (rc == 0) { /* END was read: the session's max_wal_senders slot back before the wait */
        ws_repl_close(c->repl);
        c->repl = NULL;
    }
    stream_free(&s);
    return rc;
}
