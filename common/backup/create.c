/*
 * backup/create.c - `basebackup create`: a non-exclusive base backup streamed into bundles.
 *
 * Steps (local): connect (the PostgreSQL session of the env), check the data directory and the
 * repository identity, claim an id (manifest.h: no other run can take it), pg_backup_start, choose
 * the reference of a diff or incr backup (create_ref.c), walk the data directory (create_walk.c),
 * copy files on the worker pool (create_copy.c), pg_backup_stop, store backup_label and
 * tablespace_map, write the manifest last, then wait until every WAL segment from start to stop is
 * in the repository and check that a diff or incr's reference was not pruned meanwhile. Only then
 * is the id printed. With backup_method stream, create_stream.c takes the place of everything
 * from the connection to the stop, through the same identity check, claim, reference and records.
 *
 * On failure the objects already written (bundles, map objects, the server's manifest, the claim)
 * are removed (best effort: wal-prune removes what remains, since a backup without a manifest is
 * never listed as complete), and backup mode on the server is ended.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backup/create_int.h"
#include "backup/extra.h"
#include "backup/pool.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/progress.h"
#include "base/util.h"
#include "pg/pgpage.h"
#include "pg/wal.h"
#include "repo/blockmap.h"

/* Removes what a failed backup wrote (best effort), only when this run holds the id's claim
 * (else the id, and what is under it, is another run's): the manifest first when its put was
 * tried (a put can fail after storing the object: an fsync of the directory after the rename, an
 * answer lost), then its bundles and map objects, then the claim. A manifest that may be there
 * and cannot be removed keeps everything else: a listed backup never loses its data. */
static void remove_backup_objects(struct create *c, uint32_t nbundles, uint32_t nmaps)
{
    struct ws_error e = {0};
    char key[256];
    uint32_t b;
    int rc;

    if (!c->claimed)
        return;
    if (c->manifest_tried) {
        ws_backup_manifest_key(&c->repo, c->m.id, key, sizeof(key));
        if ((rc = ws_storage_remove(c->repo.st, key, &e)) != 0 && rc != WS_ERR_NOT_FOUND) {
            ws_log_warning("backup %s: its objects are kept: its manifest may be stored and "
                           "could not be removed (%s)",
                           c->m.id, e.msg);
            return;
        }
    }
    for (b = 0; b < nbundles; b++) {
        ws_backup_bundle_key(&c->repo, c->m.id, b, key, sizeof(key));
        ws_storage_remove(c->repo.st, key, &e);
    }
    for (b = 0; b < nmaps; b++) {
        ws_backup_map_key(&c->repo, c->m.id, b, key, sizeof(key));
        ws_storage_remove(c->repo.st, key, &e);
    }
    ws_backup_object_key(&c->repo, c->m.id, WS_BACKUP_SERVER_MANIFEST, key, sizeof(key));
    ws_storage_remove(c->repo.st, key, &e);
    ws_backup_object_key(&c->repo, c->m.id, WS_BACKUP_EXTRA, key, sizeof(key));
    ws_storage_remove(c->repo.st, key, &e);
    ws_backup_object_key(&c->repo, c->m.id, WS_BACKUP_CLAIM, key, sizeof(key));
    ws_storage_remove(c->repo.st, key, &e);
}

static int note_object(void *arg, const char *key, const struct ws_storage_stat *st,
                       struct ws_error *err)
{
    (void)key;
    (void)st;
    (void)err;
    *(int *)arg = 1;
    return 0;
}

/* Does any object of backup `id` exist: a bundle, the manifest, the pin or a tombstone? A run
 * killed between the renames of its bundles can leave bundle 1 stored and bundle 0 not, so
 * looking for bundle 0 and the manifest alone is not enough: a new backup under that id would
 * fail on the dead run's bundle (and remove it as its own). */
static int id_taken(struct ws_repo *repo, const char *id, int *taken, struct ws_error *err)
{
    char base[128], prefix[160];

    ws_backup_prefix(repo, base, sizeof(base));
    snprintf(prefix, sizeof(prefix), "%s%s", base, id); /* "<cluster>/backup/<ID>" */
    *taken = 0;
    return ws_storage_list(repo->st, prefix, note_object, taken, err);
}

static int wait_for_wal(struct ws_repo *repo, const struct ws_manifest *m, int timeout,
                        struct ws_error *err)
{
    uint64_t s = ws_manifest_start_segno(m), last = ws_manifest_stop_segno(m);
    double since = ws_now_monotonic();
    char name[WS_WAL_NAME_LEN + 1], key[256];
    useconds_t pause = 10 * 1000; /* doubled up to 100 ms: the segment is often there at once */
    int rc;

    while (s <= last) {
        struct ws_storage_stat st;
        ws_wal_format_name(name, m->timeline, s, m->wal_segment_size);
        ws_repo_wal_key(repo, name, key, sizeof(key));
        rc = ws_storage_stat(repo->st, key, &st, err);
        if (rc == 0) {
            s++;
            since = ws_now_monotonic();
            continue;
        }
        if (rc != WS_ERR_NOT_FOUND)
            return rc;
        if (ws_now_monotonic() - since > timeout)
            return ws_error_set(err, WS_ERR_STORAGE,
                                "WAL file %s needed by backup %s did not reach the repository "
                                "within %d s (timeout); check archive_command and "
                                "pg_stat_archiver; the backup is not complete",
                                name, m->id, timeout);
        usleep(pause);
        pause = pause < 50 * 1000 ? 2 * pause : 100 * 1000;
    }
    return 0;
}

static int parse_label_timeline(const char *label, uint32_t *tli)
{
    const char *p = strstr(label, "START TIMELINE: ");
    unsigned long v;

    if (!p)
        return -1;
    v = strtoul(p + 16, NULL, 10);
    if (v == 0 || v > UINT32_MAX)
        return -1;
    *tli = (uint32_t)v;
    return 0;
}

/* len bytes of global/pg_control at off. */
int ws_create_read_control(const char *pgdata, void *buf, size_t len, off_t off,
                           struct ws_error *err)
{
    char path[4096];
    int fd;
    ssize_t n;

    snprintf(path, sizeof(path), "%s/global/pg_control", pgdata);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return ws_error_setsys(err, WS_ERR_CONFIG, errno,
                               "could not open file \"%s\" (is pgdata a data directory?)", path);
    n = ws_pread_full(fd, buf, len, off);
    close(fd);
    if (n != (ssize_t)len)
        return ws_error_set(err, WS_ERR_CONFIG, "could not read file \"%s\"", path);
    return 0;
}

/* The data directory: pgdata, else the server's. It must be the server's: the same system
 * identifier in global/pg_control. */
static int open_data_dir(struct create *c, struct ws_error *err)
{
    const struct ws_config *cfg = c->cfg;
    uint64_t sysid;
    int rc;

    if (cfg->pgdata && *cfg->pgdata)
        c->pgdata = realpath(cfg->pgdata, NULL);
    else if (c->info.data_directory)
        c->pgdata = realpath(c->info.data_directory, NULL);
    else
        return ws_error_set(err, WS_ERR_CONFIG,
                            "pgdata is not set and the server did not tell its "
                            "data directory: set pgdata (or PGDATA)");
    if (!c->pgdata)
        return ws_error_setsys(err, WS_ERR_CONFIG, errno, "could not resolve data directory \"%s\"",
                               cfg->pgdata && *cfg->pgdata ? cfg->pgdata : c->info.data_directory);
    if ((rc = ws_create_read_control(c->pgdata, &sysid, sizeof(sysid), CONTROL_SYSID, err)) != 0)
        return rc;
    if (sysid != c->info.system_identifier)
        return ws_error_set(err, WS_ERR_FOREIGN,
                            "data directory \"%s\" belongs to database system %" PRIu64
                            ", but the server we are connected to is system %" PRIu64,
                            c->pgdata, sysid, c->info.system_identifier);
    return 0;
}

/* The repository holds this cluster, or nothing yet (then its identity is recorded). */
static int claim_repo(struct create *c, struct ws_error *err)
{
    struct ws_identity want = {0};
    char what[4200];

    want.format_version = WS_REPO_FORMAT;
    want.system_identifier = c->info.system_identifier;
    want.pg_version = c->info.version / 10000;
    want.wal_segment_size = c->info.wal_segment_size;
    if (c->pgdata)
        snprintf(what, sizeof(what), "data directory \"%s\"", c->pgdata);
    else
        snprintf(what, sizeof(what), "the server of pg_conninfo");
    return ws_repo_identity_ensure(&c->repo, &want, what, err);
}

/* Stores the claim of id m.id (manifest.h) without replacing: *claimed = 0 when another run
 * stored it first. Listing the id's objects (id_taken) is not enough: two creates started in the
 * same second both find none before either stores a bundle, and the one that then fails on a
 * bundle name the other took would remove the other's objects as its own. */
static int claim_id(struct create *c, int *claimed, struct ws_error *err)
{
    char key[256], text[64];
    int rc;

    ws_backup_object_key(&c->repo, c->m.id, WS_BACKUP_CLAIM, key, sizeof(key));
    snprintf(text, sizeof(text), "basebackup create, process %ld\n", (long)getpid());
    rc = ws_repo_put_small(&c->repo, key, text, strlen(text), NULL, err);
    *claimed = rc == 0;
    return rc == WS_ERR_EXISTS ? 0 : rc;
}

/* Sleeps until just past the next whole second of the real-time clock, where a taken id (its
 * start second) gives way to a new one: on average half a second, where sleep(1) took one. */
static void sleep_to_next_second(void)
{
    struct timespec now, pause = {1, 0};

    if (clock_gettime(CLOCK_REALTIME, &now) == 0) {
        long ns = 1000000000L - now.tv_nsec + 1000000L; /* + 1 ms: past the boundary */
        pause.tv_sec = ns / 1000000000L;
        pause.tv_nsec = ns % 1000000000L;
    }
    while (nanosleep(&pause, &pause) != 0 && errno == EINTR)
        ;
}

/* The id (the start time, made unique in the repository and claimed), the label and the
 * server's facts. */
static int name_backup(struct create *c, struct ws_error *err)
{
    struct ws_manifest *m = &c->m;
    char deflabel[64];
    int rc;

    m->start_time = time(NULL);
    for (;;) {
        int taken = 0;
        ws_backup_id_from_time(m->start_time, m->id);
        if ((rc = id_taken(&c->repo, m->id, &taken, err)) != 0 ||
            (!taken && (rc = claim_id(c, &c->claimed, err)) != 0))
            return rc;
        if (c->claimed)
            break;
        sleep_to_next_second();
        m->start_time = time(NULL);
    }
    snprintf(deflabel, sizeof(deflabel), "walsafe %s", m->id);
    if (!(m->label = strdup(c->o->label ? c->o->label : deflabel)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    m->pg_version = c->info.version;
    m->system_identifier = c->info.system_identifier;
    m->wal_segment_size = c->info.wal_segment_size;
    m->data_checksums = c->info.data_checksums;
    return 0;
}

int ws_create_begin(struct create *c, struct ws_error *err)
{
    int rc = claim_repo(c, err);

    return rc ? rc : name_backup(c, err);
}

void ws_create_note_checkpoint(const struct create *c)
{
    static const char note[] = "waiting for the checkpoint (spread, checkpoint_completion_target): "
                               "--fast avoids the wait; an idle server can take minutes";

    if (c->o->fast)
        return;
    if (c->o->progress) {
        fprintf(stderr, "%s\n", note);
        fflush(stderr);
    } else {
        ws_log_info("%s", note);
    }
}

static int start_backup(struct create *c, struct ws_error *err)
{
    char l[24];
    int rc;

    ws_create_note_checkpoint(c);
    if ((rc = ws_pg_backup_start(c->pg, c->info.version, c->m.label, c->o->fast, &c->m.start_lsn,
                                 err)) != 0)
        return rc;
    c->in_backup = 1;
    ws_wal_format_lsn(l, c->m.start_lsn);
    ws_log_info("backup %s started at %s", c->m.id, l);
    /* the timeline of the checkpoint pg_backup_start waited for */
    return ws_create_read_control(c->pgdata, &c->tli, sizeof(c->tli), CONTROL_TIMELINE, err);
}

/* After the copy: what only the copy needed (the walk's entries but for their paths, which the
 * results share, the task plan, the reference's records) goes before the manifest is built. */
static void free_copy_plan(struct create *c)
{
    struct job *j = &c->j;
    size_t i;

    for (i = 0; i < c->w.nfiles; i++)
        if (!j->results[i].path)
            free(c->w.files[i].path); /* vanished: no result shares it */
    free(c->w.files);
    c->w.files = NULL;
    c->w.nfiles = 0;
    j->files = NULL;
    free(j->ref_of);
    j->ref_of = NULL;
    free(j->order);
    j->order = NULL;
    free(j->tasks);
    j->tasks = NULL;
    j->ref = NULL;
    ws_manifest_free(&c->ref);
}

/* Appends a small file's record (its path a constant: duplicated) to the results, which have room
 * for two (create_copy.c). */
static int add_result(struct create *c, const struct ws_bfile *bf, struct ws_error *err)
{
    struct ws_bfile *r = &c->j.results[c->j.nresults];

    *r = *bf;
    if (!(r->path = strdup(bf->path)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    c->j.nresults++;
    return 0;
}

/* The results become m's file records, moved, not copied: vanished files (path NULL) dropped, in
 * the walk's order. Nothing is appended to m->files after this (ws_manifest_add_file grows only
 * arrays it allocated itself). */
static void move_results(struct create *c)
{
    struct ws_bfile *r = c->j.results;
    size_t i, n = 0;

    for (i = 0; i < c->j.nresults; i++)
        if (r[i].path)
            r[n++] = r[i];
    c->m.files = r;
    c->m.nfiles = n;
    c->j.results = NULL;
    c->j.nresults = 0;
}

int ws_create_end_records(struct create *c, struct ws_error *err)
{
    struct ws_manifest *m = &c->m;
    struct ws_bfile bf;
    size_t i;
    int rc;

    if (parse_label_timeline(c->labelfile, &m->timeline) != 0)
        return ws_error_set(err, WS_ERR_INVALID,
                            "backup_label from the server has no START "
                            "TIMELINE line");
    if ((rc = ws_create_store_small_file(&c->j, &c->repo, "backup_label", c->labelfile, &bf,
                                         err)) != 0 ||
        (rc = add_result(c, &bf, err)) != 0)
        return rc;
    if (*c->spcmap && ((rc = ws_create_store_small_file(&c->j, &c->repo, "tablespace_map",
                                                        c->spcmap, &bf, err)) != 0 ||
                       (rc = add_result(c, &bf, err)) != 0))
        return rc;
    move_results(c);
    m->bundles = (uint32_t)atomic_load(&c->j.next_bundle);
    m->maps = (uint32_t)atomic_load(&c->j.next_map);
    m->block_size = WS_PG_BLCKSZ;
    m->bytes = 0;
    for (i = 0; i < m->nfiles; i++)
        m->bytes += m->files[i].size;
    m->stored_bytes = atomic_load(&c->j.stored_bytes);
    if (m->nbadpages)
        ws_log_warning("backup %s: %zu page(s) failed checksum verification; they are listed in "
                       "its manifest",
                       m->id, m->nbadpages);
    return 0;
}

/* pg_backup_stop, then the manifest's records. */
static int stop_backup(struct create *c, struct ws_error *err)
{
    int rc;

    if ((rc = ws_pg_backup_stop(c->pg, c->info.version, &c->m.stop_lsn, &c->labelfile, &c->spcmap,
                                err)) != 0)
        return rc;
    c->in_backup = 0;
    c->m.stop_time = time(NULL);
    free_copy_plan(c);
    return ws_create_end_records(c, err);
}

/* backup_extra_paths (extra.h), after the data directory: the object "extra" and the manifest's
 * extra records. */
static int store_extra(struct create *c, struct ws_error *err)
{
    struct ws_sink *s = NULL;
    uint64_t before = atomic_load(&c->j.stored_bytes);
    char key[256];
    int rc;

    if (!c->cfg->backup_extra_paths || !*c->cfg->backup_extra_paths)
        return 0;
    ws_backup_object_key(&c->repo, c->m.id, WS_BACKUP_EXTRA, key, sizeof(key));
    if ((rc = ws_create_object_open(&c->j, &c->repo, key, 1, 0, &s, err)) != 0)
        return rc;
    if ((rc = ws_extra_store(c->cfg, c->pgdata, s, &c->m, err)) == 0 &&
        (rc = ws_create_object_close(&c->j, &s, 0, err)) == 0)
        c->m.stored_bytes += atomic_load(&c->j.stored_bytes) - before;
    ws_create_object_close(&c->j, &s, 1, err); /* after a failure: abandoned, nothing stored */
    return rc;
}

/* The manifest, last: its presence makes the backup listed (complete once its WAL is in). */
static int store_manifest(struct create *c, struct ws_error *err)
{
    struct ws_object_params p = {0};
    char *text = NULL, key[256];
    size_t textlen;
    int rc;

    if ((rc = ws_manifest_format(&c->m, &text, &textlen, err)) != 0)
        return rc;
    c->manifest_tried = 1;
    ws_backup_manifest_key(&c->repo, c->m.id, key, sizeof(key));
    p.compress = c->cfg->compress;
    p.level = c->cfg->compress_level;
    p.key = c->j.key;
    rc = ws_repo_put_small(&c->repo, key, text, textlen, &p, err);
    free(text);
    return rc;
}

/* Ends backup mode on the server after a failure (closing the session would too). */
static void abort_backup(struct create *c)
{
    struct ws_error e = {0};
    uint64_t l;
    char *a = NULL, *b = NULL;

    if (ws_pg_backup_stop(c->pg, c->info.version, &l, &a, &b, &e) == 0) {
        free(a);
        free(b);
    }
}

static void create_free(struct create *c)
{
    struct job *j = &c->j;
    size_t i;

    for (i = 0; j->workers && i < j->nworkers; i++) {
        struct cworker *cw = &j->workers[i];
        free(cw->buf);
        free(cw->digests);
        free(cw->changed);
        free(cw->refmap);
        if (cw->spill >= 0)
            close(cw->spill);
    }
    free(j->workers);
    free(j->ref_of);
    free(j->order);
    free(j->tasks);
    if (c->lock_init)
        pthread_mutex_destroy(&j->lock);
    for (i = 0; j->results && i < j->nresults; i++) {
        free(j->results[i].pieces);
        if (!c->w.files) /* the walk is gone: the results own their paths (free_copy_plan) */
            free(j->results[i].path);
    }
    free(j->results);
    for (i = 0; c->w.files && i < c->w.nfiles; i++)
        free(c->w.files[i].path);
    free(c->w.files);
    free(c->labelfile);
    free(c->spcmap);
    free(c->pgdata);
    ws_manifest_free(&c->m);
    ws_manifest_free(&c->ref);
    ws_pg_info_free(&c->info);
    ws_pg_close(c->pg);
    ws_repl_close(c->repl);
    ws_repo_close(&c->repo);
    ws_ratelimit_free(c->rate);
    ws_keyring_wipe(&c->kr);
}

/* backup_method local: from the connection to pg_backup_stop and the records. */
static int take_local(struct create *c, struct ws_error *err)
{
    int rc;

    if ((rc = ws_pg_connect(c->env ? c->env->pg : NULL, c->cfg->pg_conninfo, &c->pg, err)) != 0 ||
        (rc = ws_pg_get_info(c->pg, &c->info, err)) != 0 || (rc = open_data_dir(c, err)) != 0 ||
        (rc = ws_create_begin(c, err)) != 0 || (rc = start_backup(c, err)) != 0 ||
        (rc = ws_create_choose_reference(c, err)) != 0 || (rc = ws_create_walk(c, err)) != 0 ||
        (rc = ws_create_copy_files(c, err)) != 0)
        return rc;
    return stop_backup(c, err);
}

/* The closing line on stderr: what was read and stored, in how long. */
static void print_summary(const struct create *c, double seconds)
{
    char head[64];

    snprintf(head, sizeof(head), "backup %s complete", c->m.id);
    ws_progress_summary(head, c->m.bytes, "read", c->m.stored_bytes, "stored", 1, seconds);
}

int ws_backup_create(const struct ws_config *cfg, const struct ws_backup_env *env,
                     const struct ws_backup_opts *o, struct ws_error *err)
{
    struct create c = {0};
    double t0 = ws_now_monotonic();
    int rc;

    c.cfg = cfg;
    c.env = env;
    c.o = o;
    if ((rc = ws_extra_check(cfg, NULL, err)) != 0 ||
        (rc = ws_keyring_load(cfg, &c.kr, err)) != 0 ||
        (rc = ws_backup_repo_open_rated(env, cfg, &c.repo, &c.rate, err)) != 0 ||
        (rc = ws_config_backup_method(cfg) == WS_BACKUP_METHOD_STREAM ? ws_create_stream(&c, err)
                                                                      : take_local(&c, err)) != 0 ||
        (rc = store_extra(&c, err)) != 0 || (rc = store_manifest(&c, err)) != 0)
        goto out;
    ws_log_info("backup %s: files stored, waiting for its WAL to be archived", c.m.id);
    if ((rc = wait_for_wal(&c.repo, &c.m, cfg->timeout, err)) != 0 ||
        (rc = ws_create_check_reference(&c, err)) != 0)
        goto done; /* the backup stays, incomplete until its WAL arrives or for good */
    printf("%s\n", c.m.id);
    fflush(stdout);
    print_summary(&c, ws_now_monotonic() - t0);
    if (o->done) {
        snprintf(o->done->id, sizeof(o->done->id), "%s", c.m.id);
        o->done->bytes = c.m.bytes;
        o->done->stored_bytes = c.m.stored_bytes;
    }
    goto done;
out:
    if (c.in_backup)
        abort_backup(&c);
    remove_backup_objects(&c, (uint32_t)atomic_load(&c.j.next_bundle),
                          (uint32_t)atomic_load(&c.j.next_map));
done:
    create_free(&c);
    return rc;
}
