/*
 * logical.h - logical backups (pg_dump) in the repository: keys, the manifest, the catalog with
 * one status per backup, pins, and deleting one backup.
 *
 *   <cluster>/logical/<ID>/claim          stored first, without replacing: the id is one create's
 *   <cluster>/logical/<ID>/<NNN>.dump     database NNN (000, 001, ... in manifest order): pg_dump
 * -Fc <cluster>/logical/<ID>/<NNN>.d/<file> or pg_dump -Fd (create --jobs > 1): one object per file
 *   <cluster>/logical/<ID>/globals.sql    pg_dumpall --globals-only (create --all)
 *   <cluster>/logical/<ID>/manifest       written LAST, never replaced
 *   <cluster>/logical/<ID>/keep           pin (`logicalbackup keep ID`): retention never deletes it
 *
 * <ID> is the UTC start time, YYYYMMDDTHHMMSSZ (repo/manifest.h: ws_backup_id_valid). All are in
 * the object format (io/object.h). The manifest is bound to its key and encrypted with the write
 * key; the dump objects are bound to the fixed name WS_LOGICAL_OBJECT_NAME instead of their key,
 * so `logicalbackup decode` needs the key file and nothing else; the manifest records each
 * object's content SHA-256 and stored size, which restore and verify compare, so an object
 * swapped with another is still caught. claim and keep are markers (ws_backup_put_marker).
 *
 * Status (computed by ws_logical_catalog_load, the first that applies):
 *   complete    the manifest verifies AND every object it names is listed with its stored size
 *   invalid     a manifest is there but does not verify (damaged, foreign, no key): why says so
 *   incomplete  no manifest (a create running or killed, a delete cut short) or an object it
 *               names is missing or of another size: why names it
 * `pinned` (keep exists) is independent of the status. A complete backup stays complete until
 * ws_logical_delete() removes its manifest, which it does first: a killed delete leaves an
 * incomplete backup, never a complete one with an object missing.
 *
 * Errors: the storage's; the manifest's WS_ERR_CORRUPT (naming the manifest and the line),
 * WS_ERR_KEY; WS_ERR_INTERNAL when out of memory. A manifest that does not verify is no error
 * of ws_logical_catalog_load (the backup is invalid). On failure nothing is left to free.
 * Ownership: a catalog owns its entries and their manifests (ws_logical_catalog_free); a
 * manifest owns its strings and arrays (ws_logical_manifest_free, safe on a zeroed one).
 * Text form of the manifest and the reasons: docs/design/logical.md.
 */
#ifndef WS_REPO_LOGICAL_H
#define WS_REPO_LOGICAL_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "io/key.h"
#include "repo/manifest.h"
#include "repo/repo.h"

#define WS_LOGICAL_OBJECT_NAME "walsafe-logical-dump"
#define WS_LOGICAL_MANIFEST "manifest"
#define WS_LOGICAL_CLAIM "claim"
#define WS_LOGICAL_KEEP "keep"
#define WS_LOGICAL_GLOBALS "globals.sql"
#define WS_LOGICAL_MANIFEST_LIMIT (64u << 20)
#define WS_LOGICAL_NAME_MAX 200 /* of an object name inside a backup */

enum ws_logical_status { WS_LOGICAL_INCOMPLETE = 0, WS_LOGICAL_COMPLETE, WS_LOGICAL_INVALID };
/* "incomplete", "complete", "invalid" */
const char *ws_logical_status_name(int status);

enum ws_logical_kind {
    WS_LOGICAL_CUSTOM = 0, /* one object, pg_dump -Fc; "custom" */
    WS_LOGICAL_DIR,        /* one object per file, pg_dump -Fd; "directory" */
    WS_LOGICAL_GLOBALS_SQL /* one object, pg_dumpall --globals-only (db is ""); "globals" */
};
const char *ws_logical_kind_name(int kind);

struct ws_logical_object {
    char *name;            /* inside the backup: "000.dump", "001.d/toc.dat", "globals.sql" */
    uint64_t bytes;        /* content (as pg_dump wrote it) */
    uint64_t stored_bytes; /* the object in storage */
    uint8_t sha256[32];    /* of the content */
};

struct ws_logical_dump {
    char *db; /* database name ("" for globals) */
    int kind; /* enum ws_logical_kind */
    uint64_t bytes, stored_bytes;
    struct ws_logical_object *objects;
    size_t nobjects;
};

struct ws_logical_manifest {
    int version; /* 1 */
    char id[WS_BACKUP_ID_LEN + 1];
    char *label;                   /* "" when none */
    int64_t start_time, stop_time; /* seconds since the epoch, UTC */
    int64_t duration_ms;
    int pg_version;               /* the server's server_version_num, e.g. 150004 */
    int pg_dump_version;          /* pg_dump's, same form */
    int globals;                  /* a WS_LOGICAL_GLOBALS_SQL dump is among dumps */
    uint64_t bytes, stored_bytes; /* sums over all dumps */
    struct ws_logical_dump *dumps;
    size_t ndumps;
};

void ws_logical_manifest_free(struct ws_logical_manifest *m);
/* Appends a dump (copying db) / an object to the last dump (copying name, adding its sizes to the
 * dump's and the manifest's). Names must be valid key components ("/" allowed inside DIR). */
int ws_logical_add_dump(struct ws_logical_manifest *m, const char *db, int kind,
                        struct ws_error *err);
int ws_logical_add_object(struct ws_logical_manifest *m, const struct ws_logical_object *o,
                          struct ws_error *err);
/* The dump of database db (kind != globals), or of the globals with db NULL; NULL if none. */
const struct ws_logical_dump *ws_logical_find_dump(const struct ws_logical_manifest *m,
                                                   const char *db);
/* Text form (*out malloc'ed, the caller frees) and its parser; `what` names it in messages. */
int ws_logical_manifest_format(const struct ws_logical_manifest *m, char **out, size_t *len,
                               struct ws_error *err);
int ws_logical_manifest_parse(const char *text, size_t len, const char *what,
                              struct ws_logical_manifest *m, struct ws_error *err);

/* Keys: "<cluster>/logical/" and "<cluster>/logical/<ID>/<name>" ("" gives the backup's prefix). */
void ws_logical_prefix(const struct ws_repo *repo, char *out, size_t outsz);
void ws_logical_key(const struct ws_repo *repo, const char *id, const char *name, char *out,
                    size_t outsz);

/* A writer of the object `name` of backup id (an object sink into the storage, compressed and
 * encrypted as cfg and key say, bound to WS_LOGICAL_OBJECT_NAME) into *out; after its finish,
 * ws_logical_object_done() fills o's sizes and digest (o->name is not set). */
int ws_logical_object_open(struct ws_repo *repo, const char *id, const char *name,
                           const struct ws_config *cfg, const struct ws_key *key,
                           struct ws_sink **out, struct ws_error *err);
void ws_logical_object_done(const struct ws_sink *writer, struct ws_logical_object *o);
/* A reader of backup id's object o into dest (which it owns, as sinks do): after ws_storage_get
 * and its finish succeed, ws_logical_object_check() compares what was read with o (content size
 * and SHA-256): WS_ERR_CORRUPT naming the object when they differ. */
int ws_logical_reader_new(struct ws_sink *dest, const struct ws_keyring *kr, struct ws_sink **out,
                          struct ws_error *err);
int ws_logical_object_check(const struct ws_sink *reader, const char *id,
                            const struct ws_logical_object *o, struct ws_error *err);
/* Stores the claim of id without replacing: WS_ERR_EXISTS when another create has it. */
int ws_logical_claim(struct ws_repo *repo, const char *id, struct ws_error *err);
/* Stores the manifest (never replacing; compressed as cfg says, encrypted with key if not NULL):
 * from then on the backup is complete. */
int ws_logical_manifest_store(struct ws_repo *repo, const struct ws_logical_manifest *m,
                              const struct ws_config *cfg, const struct ws_key *key,
                              struct ws_error *err);
/* Reads and verifies id's manifest: WS_ERR_NOT_FOUND, WS_ERR_CORRUPT (also when it names another
 * id), WS_ERR_KEY, the storage's. */
int ws_logical_manifest_load(struct ws_repo *repo, const struct ws_keyring *kr, const char *id,
                             struct ws_logical_manifest *m, struct ws_error *err);

struct ws_logical_entry {
    char id[WS_BACKUP_ID_LEN + 1];
    int status;    /* enum ws_logical_status */
    char why[320]; /* why it is not complete; "" when it is */
    int has_manifest;
    struct ws_logical_manifest m; /* when has_manifest */
    int pinned;
    size_t nobjects;       /* listed under its prefix (markers and manifest included) */
    uint64_t stored_total; /* their bytes */
    int64_t newest_mtime;  /* of them */
};

struct ws_logical_catalog {
    struct ws_logical_entry *backups; /* sorted by id, oldest first */
    size_t n;
};

/* One listing of <cluster>/logical/ plus every manifest. */
int ws_logical_catalog_load(struct ws_repo *repo, const struct ws_keyring *kr,
                            struct ws_logical_catalog *cat, struct ws_error *err);
void ws_logical_catalog_free(struct ws_logical_catalog *cat);
const struct ws_logical_entry *ws_logical_catalog_find(const struct ws_logical_catalog *cat,
                                                       const char *id);
/* The newest complete backup, or NULL. */
const struct ws_logical_entry *ws_logical_catalog_latest(const struct ws_logical_catalog *cat);

/* Deletes backup id: its manifest first, then every other object under its prefix (the pin
 * included: the caller decides whether a pinned backup may go), then its directory where the
 * storage has them. An absent object is no error; deleting an absent backup succeeds. On failure
 * the backup is incomplete (or untouched), never complete with an object missing. */
int ws_logical_delete(struct ws_repo *repo, const char *id, struct ws_error *err);

#endif
