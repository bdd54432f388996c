/*
 * backup/restore_int.h - what the units of `basebackup restore` share: restore.c (the command,
 * root and the owner's child), restore_choose.c (which backup), restore_target.c (the target
 * directories, checked before anything is touched), restore_fill.c (directories and bundles),
 * restore_recovery.c (recovery settings, tablespace_map), restore_chain.c (chains),
 * restore_delta.c and restore_patch.c (--delta). Not for other modules: they use
 * backup.h. Every function returns 0 or a ws_code with err set, unless it says otherwise.
 */
#ifndef WS_BACKUP_RESTORE_INT_H
#define WS_BACKUP_RESTORE_INT_H

#include <limits.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "backup/backup.h"
#include "base/fs.h"
#include "repo/bundle.h"
#include "repo/catalog.h"

/* PostgreSQL's FirstNormalObjectId: every tablespace users create has an oid from here on. */
#define FIRST_NORMAL_OID 16384u

struct rdir {
    const char *path;      /* as named: --pgdata (absolute), a location or a map destination */
    uint32_t oid;          /* of a tablespace; 0 for the data directory */
    char link[32];         /* a tablespace's "pg_tblspc/<oid>" */
    int mapped;            /* a --tablespace-map destination */
    int clearable;         /* --force may empty it (also the replaced cluster's own, see
                              ws_restore_inspect_targets) */
    struct ws_dir_ref ref; /* looked up (base/fs.h) */
    int fd;                /* opened for reading, once it exists */
    int empty, has_pid;    /* what it held before the restore */
    char pg[NAME_MAX + 1]; /* a PG_<version>_<catversion> directory in it ("" if none) */
};

struct restore {
    const struct ws_config *cfg;
    const struct ws_backup_env *env;
    const struct ws_restore_opts *o;
    const struct ws_keyring *kr;
    const struct ws_manifest *m;
    char pgdata[PATH_MAX]; /* --pgdata made absolute (lexically), for checks and messages */
    char cmd[8192];        /* restore_command */
    struct rdir data;
    struct rdir *ts; /* one per tablespace of the manifest, in its order */
    int group_access;
    int started; /* something was removed or written: a failure leaves a directory not to start */
    char (*chain)[WS_BACKUP_ID_LEN + 1]; /* the backup's chain, its full backup first, itself
                                            last (ws_restore_resolve_chain) */
    size_t nchain;
    char as_user[64];       /* the user a root-started restore runs as ("" otherwise) */
    char as_home[PATH_MAX]; /* and that user's home */
    double t0;              /* monotonic, when the command started (for the summary) */
};

/* restore_choose.c: the backup --backup and the recovery target select (complete, ending
 * before the target). */
int ws_restore_choose(const struct ws_catalog *cat, const struct ws_restore_opts *o,
                      const struct ws_catalog_backup **out, struct ws_error *err);
/* -1 when s is no time stamp, 1 when it has no zone (local time assumed), else 0. */
int ws_parse_target_time(const char *s, double *out);

/* restore_target.c */
int ws_restore_has_control(const char *s); /* 1 when s holds a control character */
/* p made absolute against the working directory, ".", ".." and "//" resolved lexically. */
int ws_restore_absolute_path(const char *p, char *out, size_t outsz, struct ws_error *err);
int ws_restore_check_target(const struct ws_restore_opts *o, struct ws_error *err);
int ws_restore_check_manifest_paths(const struct ws_manifest *m, struct ws_error *err);
int ws_restore_check_tablespaces(struct restore *r, struct ws_error *err);
int ws_restore_check_root_tablespaces(const struct restore *r, struct ws_error *err);
int ws_restore_manifest_group_access(const struct ws_manifest *m);
mode_t ws_restore_dir_mode(const struct restore *r, uint32_t manifest_mode);
int ws_restore_inspect_dir(struct rdir *d, struct ws_error *err);
int ws_restore_inspect_targets(struct restore *r, struct ws_error *err);
int ws_restore_create_targets(struct restore *r, struct ws_error *err);
/* --delta: the data directory holds something, is ours and no running postmaster's; each
 * tablespace directory is empty, missing, or one the data directory links to. */
int ws_restore_inspect_delta_targets(struct restore *r, struct ws_error *err);
/* unlinkat(d->fd, name) that tolerates its absence; the message names d->path/name. */
int ws_restore_unlink_in(const struct rdir *d, const char *name, struct ws_error *err);
/* --force: empties what may be emptied; first of all the data directory loses recovery.signal,
 * standby.signal and global/pg_control (durably), so that no kill leaves a directory to start. */
int ws_restore_empty_targets(struct restore *r, struct ws_error *err);
void ws_restore_close_rdir(struct rdir *d);

/* restore_fill.c */
/* The data directory with the tablespace directories mounted at their links; the caller frees
 * tree->mounts. */
int ws_restore_tree(const struct restore *r, struct ws_tree *tree, struct ws_error *err);
int ws_restore_make_dirs(struct restore *r, const struct ws_tree *tree, struct ws_error *err);
/* files NULL: every record of r->m */
int ws_restore_split_files(const struct restore *r, const struct ws_tree *tree,
                           const struct ws_bfile *const *files, size_t nfiles, int finish,
                           struct ws_error *err);
/* Every bundle of r->m, in parallel. */
int ws_restore_bundles(const struct restore *r, struct ws_repo *repo,
                       const struct ws_bundle_opts *bo, struct ws_error *err);
/* The bundles of m that hold some of files[0..nfiles) (records of m), those records only. */
int ws_restore_bundles_of(const struct restore *r, struct ws_repo *repo,
                          const struct ws_manifest *m, const struct ws_bfile *const *files,
                          size_t nfiles, const struct ws_bundle_opts *bo, struct ws_error *err);
void ws_restore_report_problem(void *arg, const struct ws_bfile *f, const char *msg);

/* restore_chain.c: a backup of a chain (docs/design/incremental.md). */
/* r->chain of r->m (complete in the catalog) from ws_catalog_chain, each link of the same
 * system, PostgreSQL version and block size; otherwise an error naming the link. */
int ws_restore_resolve_chain(const struct ws_catalog *cat, struct restore *r, struct ws_error *err);
/* Writes the files of r->m that want[i] names (want NULL: all) into tree from r->chain, layer
 * by layer, then cuts each file not stored whole in r->m itself to its size, gives it its mode
 * and mtime and reads it back: a SHA-256 that differs is WS_ERR_CORRUPT naming the file. Files
 * are created exclusively: the caller removed what was there. */
int ws_restore_chain(const struct restore *r, struct ws_repo *repo, const struct ws_tree *tree,
                     const struct ws_bundle_opts *bo, const uint8_t *want, struct ws_error *err);
/* A task of ws_restore_each_file: file i of r->m, with this worker's cursor and 1 MiB buffer. */
typedef int (*ws_restore_file_fn)(void *arg, const struct ws_tree *tree, struct ws_tree_cursor *c,
                                  uint8_t *buf, size_t i, struct ws_error *err);
/* fn for every file of r->m, in parallel (backup/pool.h); the first error wins. */
int ws_restore_each_file(const struct restore *r, struct ws_repo *repo, const struct ws_tree *tree,
                         ws_restore_file_fn fn, void *arg, struct ws_error *err);
/* Whether an existing file of the data directory (st: its fstat) may be kept or changed in place:
 * a regular file with one link, the restoring user's (as a plain restore would have made it). */
int ws_restore_own_file(const struct stat *st);
/* A file kept as it is (fd open on it, st its fstat): given f's mode when it has another. */
int ws_restore_keep_mode(const struct restore *r, int fd, const struct stat *st,
                         const struct ws_bfile *f, const char *dir, struct ws_error *err);
/* *match: the file open at fd has f's size and SHA-256; buf holds 1 MiB. */
int ws_restore_file_matches(int fd, const struct ws_bfile *f, uint8_t *buf, int *match,
                            struct ws_error *err);
/* The same, ctx (an EVP_MD_CTX * holding the SHA-256 of the file's bytes [0, off)) fed from off
 * on; ctx is finished (the caller frees it). */
int ws_restore_sha_rest(int fd, const struct ws_bfile *f, void *ctx, uint64_t off, uint8_t *buf,
                        int *match, struct ws_error *err);
/* File f of r->m written into tree: cut or extended to its size, given its mode, read back
 * (md NULL: from its start; else md holds the SHA-256 of its bytes [0, off), fed on and
 * finished), then its mtime; a SHA-256 that differs is WS_ERR_CORRUPT naming the file and
 * saying "after <after>". */
int ws_restore_settle_file(const struct restore *r, const struct ws_tree *tree,
                           struct ws_tree_cursor *c, const struct ws_bfile *f, void *md,
                           uint64_t off, uint8_t *buf, const char *after, struct ws_error *err);
/* Layer k of r->chain: its manifest (r->m for the last, else loaded: errors name the link),
 * indexed by path. Closing is safe after a failed open. */
struct ws_restore_layer {
    const struct restore *r;
    const struct ws_manifest *m;
    size_t k;
    const struct ws_bfile **by_path; /* m's records sorted by path (older layers) */
    struct ws_manifest own;          /* m, when loaded */
};
int ws_restore_layer_open(const struct restore *r, struct ws_repo *repo, size_t k,
                          struct ws_restore_layer *l, struct ws_error *err);
void ws_restore_layer_close(struct ws_restore_layer *l);
/* *j: the index in r->chain of the layer holding the last whole copy of r->m's file f. */
int ws_restore_base_layer(const struct restore *r, const struct ws_bfile *f, size_t *j,
                          struct ws_error *err);
/* What layer l holds of r->m's file tf whose base is layer j (<= l->k): *out the record to
 * apply (NULL: a REF, nothing); WS_ERR_CORRUPT when it does not fit the chain. */
int ws_restore_layer_part(const struct ws_restore_layer *l, const struct ws_bfile *tf, size_t j,
                          const struct ws_bfile **out, struct ws_error *err);

/* restore_recovery.c */
int ws_restore_command(struct restore *r, struct ws_error *err);
/* restore_summary.c: the lines a successful restore prints on stdout (backup, target,
 * restore_command, the command that starts the copy; a note when it holds no postgresql.conf). */
void ws_restore_print_summary(const struct restore *r);
int ws_restore_write_recovery(struct restore *r, struct ws_error *err);
int ws_restore_write_tablespace_map(struct restore *r, struct ws_error *err);
int ws_restore_sync_fs_of(const struct rdir *d, struct ws_error *err);
/* The end of every restore: tablespace_map, every target synced, the recovery settings. */
int ws_restore_finish(struct restore *r, struct ws_error *err);

/* restore_delta.c: --delta into an existing data directory of the same system. */
int ws_restore_delta(struct restore *r, struct ws_repo *repo, struct ws_error *err);

/* restore_patch.c: --delta's block-level patching of relation files (those with block digests
 * in r->m's map objects), docs/design/incremental.md "Delta restore". */
struct ws_restore_patches;
/* Whether file f of r->m is compared block by block (ws_restore_patch_compare's business). */
int ws_restore_by_blocks(const struct restore *r, const struct ws_bfile *f);
/* Compares each such file of the tree with its digests in r->m's map objects, in parallel (the
 * files in map order, each worker holding the last map object it loaded): a file that matches
 * (every digest, size and SHA-256) is left alone; one with at most half its blocks differing is
 * to be patched (*out holds it); any other (missing, not a regular file, more digests than its
 * map object holds, a map object missing or damaged: a warning) gets want[i] = 1 (the caller
 * removes and rebuilds it). *out is the caller's to free, also after a failure. */
int ws_restore_patch_compare(const struct restore *r, struct ws_repo *repo,
                             const struct ws_tree *tree, uint8_t *want,
                             struct ws_restore_patches **out, struct ws_error *err);
/* Writes the differing blocks of the files of p, each from the newest layer of r->chain that
 * stored it, stopping at the first layer with nothing left to fetch; then each file is cut to
 * its size, its SHA-256 finished and compared with the record (WS_ERR_CORRUPT naming the file),
 * given its mode and mtime. */
int ws_restore_patch(const struct restore *r, struct ws_repo *repo, const struct ws_tree *tree,
                     struct ws_restore_patches *p, struct ws_error *err);
size_t ws_restore_patch_count(const struct ws_restore_patches *p);
void ws_restore_patches_free(struct ws_restore_patches *p);

#endif
