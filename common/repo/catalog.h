/*
 * catalog.h - what the repository holds for a cluster (backups, WAL per timeline), read from
 * listings and manifests alone, every time: the repository is the catalog.
 *
 * Each backup gets one status, computed once by ws_catalog_load() from these facts, in this
 * order (the first that applies):
 *   deleting    <ID>.deleting exists: wal-prune began deleting it; whatever is left of it, it
 *               is never complete (its manifest and missing_wal are still read and reported)
 *   complete    its manifest verifies AND every WAL segment from its start to its stop segment
 *               is in the repository (lost WAL makes a backup incomplete instead of silently
 *               unrestorable) AND, for a diff or incr, every link of its chain is complete
 *   invalid     a manifest is there but does not verify (damaged, misnamed, or encrypted with a
 *               key we do not have): manifest_error says why; or a diff/incr whose chain has
 *               an invalid link, or names no older reference: chain_error says why
 *   incomplete  its manifest verifies, WAL is missing: missing_wal names the first segment;
 *               or a diff/incr whose chain has a link missing, incomplete, running or being
 *               deleted: chain_error names it ("its reference <ID> is missing")
 *   running     no manifest: a backup still being written, or one that died
 *   unreadable  its directory (or manifest) may not be read by this user (permission denied, a
 *               local repository): nothing is known of it; manifest_error says why. list, verify
 *               --all, wal-prune (which keeps it and all it may need) and restore of another
 *               backup go on past it
 * The chain of a backup is itself, its reference (manifest.h), that one's reference, ... down to
 * a full backup; a reference is always older (a smaller id).
 * `pinned` (<ID>/keep exists) is independent of the status.
 *
 * Errors of ws_catalog_load(): the storage's and the identity's; WS_ERR_FOREIGN for a manifest of
 * another database system. A manifest that does not verify is no error (the backup is invalid:
 * one damaged manifest must not hide the others); a cluster without identity is empty, no error.
 * On failure nothing is left to free.
 *
 * Memory: the catalog holds each backup's manifest header only (`m`: its record arrays are
 * empty but for the extra paths, nfiles and the other counts 0; the file and bad-page counts are
 * in nfiles/nbadpages):
 * while loading, one manifest's records at a time. ws_catalog_manifest() loads a backup's whole
 * manifest when a command needs its records.
 *
 * Ownership: a ws_catalog owns its arrays and manifest headers; ws_catalog_free().
 */
#ifndef WS_REPO_CATALOG_H
#define WS_REPO_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "io/key.h"
#include "repo/manifest.h"
#include "repo/repo.h"

enum ws_backup_status {
    WS_BACKUP_RUNNING = 0,
    WS_BACKUP_COMPLETE,
    WS_BACKUP_INCOMPLETE,
    WS_BACKUP_INVALID,
    WS_BACKUP_DELETING,
    WS_BACKUP_UNREADABLE,
};

/* "complete", "incomplete", "invalid", "running", "deleting" or "unreadable": what list and
 * wal-prune print. */
const char *ws_backup_status_name(enum ws_backup_status status);

struct ws_catalog_backup {
    char id[WS_BACKUP_ID_LEN + 1];
    enum ws_backup_status status;
    int has_manifest; /* present and valid: m is loaded */
    int bad_manifest; /* present but unreadable: manifest_error says why */
    int denied;       /* its directory or manifest: permission denied (status unreadable) */
    char manifest_error[300];
    struct ws_manifest m;    /* its header: no records (ws_catalog_manifest for those) */
    size_t nfiles;           /* its file records */
    size_t nbadpages;        /* and bad-page records */
    char missing_wal[32];    /* first missing segment of its WAL range; "" when none is */
    char chain_error[300];   /* why its chain does not resolve, naming the link; "" when it
                                does (or it is full, or has no manifest) */
    uint64_t stored_objects; /* bytes of its objects in storage (from the listing) */
    int64_t newest_mtime;    /* of its objects */
    int pinned; /* <ID>/keep exists: `basebackup keep ID`; wal-prune never deletes it */
};

struct ws_wal_seg {
    uint32_t tli;
    uint64_t segno;
};

struct ws_catalog {
    struct ws_identity identity;
    int has_identity;
    struct ws_catalog_backup *backups; /* sorted by id */
    size_t nbackups;
    struct ws_wal_seg *segs; /* sorted by (tli, segno) */
    size_t nsegs;
    uint32_t *histories; /* timelines with a .history file, sorted */
    size_t nhistories;
};

/* Lists and loads everything (manifests need the keyring when encrypted). */
int ws_catalog_load(struct ws_repo *repo, const struct ws_keyring *kr, struct ws_catalog *cat,
                    struct ws_error *err);
void ws_catalog_free(struct ws_catalog *cat);
int ws_catalog_has_seg(const struct ws_catalog *cat, uint32_t tli, uint64_t segno);
/* Calls fn for each run of consecutive segments [first, last] of timeline tli, in ascending
 * order; is_first_run is 1 for the first one. A gap lies between two runs. */
typedef void (*ws_catalog_run_fn)(void *arg, uint32_t tli, uint64_t first, uint64_t last,
                                  int is_first_run);
void ws_catalog_wal_runs(const struct ws_catalog *cat, uint32_t tli, ws_catalog_run_fn fn,
                         void *arg);
/* b's whole manifest, records included, into *m (the caller frees it: ws_manifest_free): the
 * errors of ws_manifest_load(); WS_ERR_NOT_FOUND when b has no readable manifest, WS_ERR_CORRUPT
 * when what is read now is not what the catalog read. */
int ws_catalog_manifest(struct ws_repo *repo, const struct ws_keyring *kr,
                        const struct ws_catalog_backup *b, struct ws_manifest *m,
                        struct ws_error *err);
/* The newest complete backup, or NULL. */
const struct ws_catalog_backup *ws_catalog_latest(const struct ws_catalog *cat);
/* Why b is not complete, as one phrase into out: its tombstone, its manifest_error, no manifest,
 * its missing_wal or its chain_error (in that order); "" when it is complete. */
void ws_catalog_why(const struct ws_catalog_backup *b, char *out, size_t outsz);
/* The backup with this id, or NULL. */
const struct ws_catalog_backup *ws_catalog_find(const struct ws_catalog *cat, const char *id);
/* The chain of b, newest first: *out[0] is b, the last its full backup; pointers into cat (the
 * array is malloc'ed: free it, not the entries). Statuses are not checked (a complete b has a
 * complete chain). WS_ERR_NOT_FOUND naming the first link not in the catalog, WS_ERR_CORRUPT when
 * a link has no readable manifest or a reference is not older than its backup. */
int ws_catalog_chain(const struct ws_catalog *cat, const struct ws_catalog_backup *b,
                     const struct ws_catalog_backup ***out, size_t *n, struct ws_error *err);
/* The clusters of the repository st: its top-level folders that hold an identity object (repo.h)
 * and whose names the option `cluster` accepts (ws_config_cluster_valid), sorted by name, into
 * *names (n of them; malloc'ed, with their strings: ws_catalog_clusters_free). Lists every object
 * of the repository; the storage's errors. */
int ws_catalog_clusters(struct ws_storage *st, char ***names, size_t *n, struct ws_error *err);
void ws_catalog_clusters_free(char **names, size_t n);

#endif
