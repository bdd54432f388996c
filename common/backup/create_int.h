/*
 * backup/create_int.h - what the units of `basebackup create` share: create.c (the command, its
 * shared phases and the local path), create_walk.c (the data directory's files), create_stream.c
 * (backup_method stream: BASE_BACKUP's archives), create_ref.c (the reference of a diff or incr
 * backup), create_copy.c (the copy: bundles, map objects, read passes, deltas). Not for other
 * modules: they use backup.h. Every function returns 0 or a ws_code with err set.
 */
#ifndef WS_BACKUP_CREATE_INT_H
#define WS_BACKUP_CREATE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "backup/backup.h"
#include "backup/pool.h"
#include "io/key.h"
#include "io/ratelimit.h"
#include "io/sink.h"
#include "io/tar.h"
#include "pg/pgconn.h"
#include "pg/repl.h"
#include "repo/manifest.h"
#include "repo/repo.h"

#define READ_BLOCK (1u << 20)

struct entry {
    char *path; /* relative to the data directory */
    uint64_t size;
    uint32_t mode;
    int64_t mtime;
    int relation; /* a relation file (pgpage.h): pages with checksums, digested block by block */
    uint32_t segno;
};

struct walk {
    const char *pgdata;
    struct entry *files;
    size_t nfiles, cap;
    uint64_t total;
    struct ws_manifest *m;
};

/* The bundle a worker is writing (or ws_create_store_small_file). */
struct bundle_out {
    const struct ws_repo *repo; /* with the worker's storage handle */
    struct ws_sink *sink;       /* the object writer at the bundle's front; NULL: none open */
    uint32_t no;
    uint64_t len;
    int mt; /* compressing on the job's zstd_workers threads (a bundle of a large file) */
};

/* The map object a worker is writing (blockmap.h): whole files' digests, streamed. */
struct map_out {
    struct ws_sink *sink; /* NULL: none open */
    uint32_t no;
    uint64_t count; /* digests in it */
};

struct cworker {
    struct bundle_out out;
    struct map_out map;
    uint8_t *buf;     /* READ_BLOCK bytes */
    uint8_t *digests; /* of the file at hand, before they go to the map object */
    size_t ndigests, capdigests;
    uint32_t *changed; /* its blocks that differ from the reference's version */
    size_t nchanged, capchanged;
    int spill; /* those blocks' bytes (a temporary file), -1: none yet */
    uint64_t spill_len;
    uint8_t *refmap; /* the reference's map object of the task at hand */
    size_t refmap_len;
};

/* A pool task: files order[first .. first+n) (several: the relation files whose reference
 * digests lie in map object ref_map, in their order there; else one file, ref_map -1). */
struct ctask {
    size_t first, n;
    int64_t ref_map;
    uint64_t bytes;
};

struct job {
    const struct ws_config *cfg;
    const struct ws_key *key;
    const struct ws_keyring *kr;
    const char *id;
    const char *pgdata;
    uint64_t start_lsn;
    int checksums;
    int zstd_workers; /* threads of a large file's bundles (create_copy.c) */
    uint64_t mt_from; /* the size from which a file's bundle compresses on them */
    struct entry *files;
    size_t nfiles;
    const struct ws_manifest *ref;  /* the reference (diff, incr), or NULL */
    const struct ws_bfile **ref_of; /* per file: the reference's record of its path, or NULL */
    size_t *order;
    struct ctask *tasks;
    size_t ntasks;
    struct ws_bfile *results; /* one per file (path: the walk entry's), then backup_label and
                                 tablespace_map; path NULL when the file vanished */
    size_t nresults;
    struct cworker *workers; /* one per pool worker */
    size_t nworkers;
    atomic_uint_fast32_t next_bundle, next_map;
    atomic_uint_fast64_t stored_bytes;
    pthread_mutex_t lock; /* bad pages are added to m under it */
    struct ws_manifest *m;
};

/* Everything one create holds (create_free releases it). */
struct create {
    const struct ws_config *cfg;
    const struct ws_backup_env *env;
    const struct ws_backup_opts *o;
    struct ws_repo repo;
    struct ws_keyring kr;
    struct ws_pg *pg;       /* local */
    struct ws_repl *repl;   /* stream */
    struct ws_pg_info info; /* the server's facts (stream: from IDENTIFY_SYSTEM and SHOW) */
    uint32_t tli;           /* the server's current timeline, for the reference's choice */
    char *pgdata;           /* resolved (local) */
    struct ws_manifest m;
    struct ws_manifest ref; /* the reference (diff, incr); ref.id "" when none */
    struct walk w;
    struct job j;
    int lock_init;
    int in_backup;      /* between backup_start and backup_stop */
    int claimed;        /* this run stored the claim of m.id (create.c) */
    int manifest_tried; /* its put began: the manifest may be stored, even after a failure */
    char *labelfile, *spcmap;
    struct ws_ratelimit *rate; /* max_rate, on every handle of the run (pool.h) */
};

/* Offsets in global/pg_control (ControlFileData, the same from PostgreSQL 9.3 to 17), native
 * byte order: the system identifier, and the timeline of the latest checkpoint
 * (checkPointCopy.ThisTimeLineID). */
#define CONTROL_SYSID 0
#define CONTROL_TIMELINE 48

/* create.c, the phases both paths share: the repository's identity checked against c->info and
 * the id claimed and named (c->m); after the copy, backup_label and tablespace_map (c->labelfile,
 * c->spcmap; an empty map is not stored) stored and every result moved into c->m with the totals
 * (c->m.timeline from backup_label's START TIMELINE). */
int ws_create_begin(struct create *c, struct ws_error *err);
int ws_create_end_records(struct create *c, struct ws_error *err);
/* Says, before a backup starts without --fast, that the spread checkpoint may take long: on
 * stderr when progress is shown, else at level info. */
void ws_create_note_checkpoint(const struct create *c);

/* create_stream.c: backup_method stream, from the connection to the stop position: c->m holds
 * every record when it returns 0, and the session is closed (c->repl NULL: its max_wal_senders
 * slot free while create.c stores the manifest and waits for the WAL). */
int ws_create_stream(struct create *c, struct ws_error *err);

/* create_walk.c: c->w, the files to copy (largest first), and the directories and tablespaces
 * into c->m. */
int ws_create_walk(struct create *c, struct ws_error *err);
/* len bytes of global/pg_control at off (CONTROL_SYSID, CONTROL_TIMELINE). */
int ws_create_read_control(const char *pgdata, void *buf, size_t len, off_t off,
                           struct ws_error *err);

/* create_ref.c: diff and incr: the reference (into c->ref, c->m.type and c->m.reference), or a
 * full backup and one line saying why; c->info and c->tli are the server's facts. */
int ws_create_choose_reference(struct create *c, struct ws_error *err);
/* The reference's records sorted by path (*out, n = c->ref.nfiles, malloc'ed) and the lookup of
 * one path in them (NULL: none). */
int ws_create_ref_index(const struct ws_manifest *ref, struct ws_bfile ***out,
                        struct ws_error *err);
struct ws_bfile *ws_create_ref_find(struct ws_bfile *const *index, size_t n, const char *path);
/* Per file, the reference's record of the same path (j->ref_of). c->ref keeps only those records,
 * in the walk's order, without their paths (the walk's entry has the same). */
int ws_create_match_reference(struct create *c, struct ws_error *err);
/* After the manifest: a diff or incr's reference is still in the repository (neither its
 * manifest gone nor its tombstone there), else WS_ERR_INVALID naming both backups. */
int ws_create_check_reference(struct create *c, struct ws_error *err);

/* create_copy.c: every file of c->w into bundles with the worker pool (results in c->j). */
int ws_create_copy_files(struct create *c, struct ws_error *err);
/* The job of c with n workers (their buffers), no results yet. */
int ws_create_job_init(struct create *c, size_t n, struct ws_error *err);
/* One tar member as file e (stream), read once, through the same copy as a local file into the
 * worker's bundle: r its record (r->path = e->path on success); ref the reference's record of
 * its path or NULL, and for a relation file with digests cw->refmap the reference's map object
 * holding them. An incremental relation file is a REF or DELTA record however much changed;
 * another file is stored whole. *crc32c: the CRC-32C (base/crc32c.h) of the member's bytes. */
int ws_create_copy_member(struct job *j, struct cworker *cw, struct ws_pool_worker *pw,
                          const struct entry *e, const struct ws_bfile *ref, struct ws_tar *tar,
                          struct ws_bfile *r, uint32_t *crc32c, struct ws_error *err);
/* Room for need elements of sz bytes in *p (capacity *cap, doubled from 64 as needed). */
int ws_create_grow(void **p, size_t *cap, size_t need, size_t sz, struct ws_error *err);
/* A pool worker's end (pool.h, arg the job): its bundle and map object finished, or aborted after
 * a failure. */
int ws_create_copy_end(void *arg, struct ws_pool_worker *pw, struct ws_error *err);
/* An object writer for key (compressed as configured when compress, encrypted with the job's
 * key), and its end: finished (its stored bytes counted) unless failed, then freed. */
int ws_create_object_open(struct job *j, const struct ws_repo *repo, const char *key, int compress,
                          int workers, struct ws_sink **out, struct ws_error *err);
int ws_create_object_close(struct job *j, struct ws_sink **s, int failed, struct ws_error *err);
/* text stored as file `name` (mode 0600) in a bundle of its own; *out is its record (path is
 * name, not copied). */
int ws_create_store_small_file(struct job *j, const struct ws_repo *repo, const char *name,
                               const char *text, struct ws_bfile *out, struct ws_error *err);

#endif
