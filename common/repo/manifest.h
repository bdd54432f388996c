/*
 * manifest.h - base backups in the repository: their layout, the manifest, the markers.
 *
 * Layout (keys relative to the repository; every object in the format of object.h):
 *
 *   <cluster>/backup/<ID>/data/<NNNNNN>   bundles: the concatenated contents of many files
 *   <cluster>/backup/<ID>/manifest        the manifest, written last (no replace)
 *   <cluster>/backup/<ID>/keep            pin (basebackup keep); see the end of this file
 *   <cluster>/backup/<ID>.deleting        tombstone of an unfinished wal-prune (prune.h)
 *
 * <ID> is the UTC start time, YYYYMMDDTHHMMSSZ, so ids sort by time. A bundle's content is the
 * plain concatenation of whole files (no framing); the manifest says which file lies at which
 * offset of which bundle. Bundling makes thousands of small files cost a few storage round
 * trips; each worker of `create` fills its own bundle and starts a new one after
 * WS_BUNDLE_TARGET bytes, so a large file is never split and a small one never travels alone.
 *
 * Files larger than WS_PIECE_SIZE are stored in pieces of that size (the worker that reads the
 * file closes its bundle at every piece boundary), so a restore writes one large relation file
 * with several workers. Piece 0 is where the file record points; each later piece has its own
 * record. A bundle never holds two pieces of one file, and a file's pieces are in bundles of
 * increasing number.
 *
 * A backup is complete when its manifest exists AND every WAL segment from its start to its
 * stop segment is in the repository (SPEC.md, Backups). The catalog computes that from the
 * repository alone: a backup whose WAL went missing stops being complete, and wal-prune makes
 * a backup incomplete (manifest first) before it deletes any of its bundles.
 *
 * Manifest: UTF-8 text, one record per line, fields separated by one space. Strings are
 * escaped: every byte outside [A-Za-z0-9._/+:@,=~-] is written %XX, so no field holds a space.
 *
 *   walsafe-manifest 1
 *   id 20261122T101500Z
 *   label Nightly%20backup
 *   start_time 2026-11-22T10:15:00Z          stop_time ...   (ISO 8601 UTC)
 *   start_lsn 0/2000028                       stop_lsn ...
 *   timeline 1
 *   pg_version 150004                         (server_version_num)
 *   system_identifier 7311142436245338543
 *   wal_segment_size 16777216
 *   data_checksums 1
 *   bytes N  stored_bytes N  bundles N
 *   tablespace <oid> <escaped original location>
 *   dir <mode octal> <escaped path>
 *   file <escaped path> <mode octal> <mtime> <size> <sha256 hex> <bundle> <offset>
 *   piece <file offset> <length> <bundle> <offset>   (after its file line, in file order)
 *   badpage <escaped path> <block>
 *   end <number of file records>
 *
 * Each key line appears once, in this order; `tablespace`, `dir`, `file`, `piece` and
 * `badpage` lines repeat. A file with pieces holds bytes [0, first piece's file offset) at its
 * own bundle and offset; its pieces are contiguous and end at its size. The SHA-256 is always
 * of the whole file. Paths are relative to the data directory; a tablespace's files are under
 * pg_tblspc/<oid>/ as PostgreSQL sees them through the link. backup_label (and tablespace_map
 * when there is one) are ordinary file records holding what pg_backup_stop returned.
 *
 * Ownership: a ws_manifest owns all its strings and arrays; ws_manifest_free() releases them.
 */
#ifndef WS_REPO_MANIFEST_H
#define WS_REPO_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "base/config.h"
#include "base/error.h"
#include "base/util.h"
#include "io/key.h"
#include "repo/repo.h"

#define WS_BACKUP_ID_LEN 16
#define WS_BUNDLE_TARGET (64u << 20)
#define WS_PIECE_SIZE (64u << 20)
#define WS_MANIFEST_LIMIT (1u << 30)

struct ws_bpiece {
    uint64_t file_offset; /* > 0 */
    uint64_t length;
    uint32_t bundle;
    uint64_t offset; /* in the bundle's content */
};

struct ws_bfile {
    char *path;
    uint32_t mode;
    int64_t mtime;
    uint64_t size;
    uint8_t sha256[32];
    uint32_t bundle; /* of the file's first bytes (all of them when npieces is 0) */
    uint64_t offset;
    struct ws_bpiece *pieces; /* pieces after the first, owned by the record */
    size_t npieces;
};

struct ws_bdir {
    char *path;
    uint32_t mode;
};

struct ws_btblspc {
    uint32_t oid;
    char *location;
};

struct ws_badpage {
    char *path;
    uint32_t block;
};

struct ws_manifest {
    char id[WS_BACKUP_ID_LEN + 1];
    char *label;
    int64_t start_time, stop_time; /* seconds since the epoch, UTC */
    uint64_t start_lsn, stop_lsn;
    uint32_t timeline;
    int pg_version;
    uint64_t system_identifier;
    uint32_t wal_segment_size;
    int data_checksums;
    uint64_t bytes, stored_bytes;
    uint32_t bundles;
    struct ws_btblspc *tblspc;
    size_t ntblspc;
    struct ws_bdir *dirs;
    size_t ndirs;
    struct ws_bfile *files;
    size_t nfiles;
    struct ws_badpage *badpages;
    size_t nbadpages;
};

void ws_manifest_free(struct ws_manifest *m);
/* Appends a record; the manifest copies the strings and the pieces. */
int ws_manifest_add_file(struct ws_manifest *m, const struct ws_bfile *f, struct ws_error *err);
int ws_manifest_add_dir(struct ws_manifest *m, const char *path, uint32_t mode,
                        struct ws_error *err);
int ws_manifest_add_tblspc(struct ws_manifest *m, uint32_t oid, const char *location,
                           struct ws_error *err);
int ws_manifest_add_badpage(struct ws_manifest *m, const char *path, uint32_t block,
                            struct ws_error *err);
/* Text form; *out is malloc'ed (caller frees). */
int ws_manifest_format(const struct ws_manifest *m, char **out, size_t *outlen,
                       struct ws_error *err);
/* Parses the text form; `what` names it in messages. WS_ERR_CORRUPT on any deviation. */
int ws_manifest_parse(const char *text, size_t len, const char *what, struct ws_manifest *m,
                      struct ws_error *err);

/* The stop segment: the one holding the last byte before stop_lsn. */
uint64_t ws_manifest_start_segno(const struct ws_manifest *m);
uint64_t ws_manifest_stop_segno(const struct ws_manifest *m);

/* Valid backup id (YYYYMMDDTHHMMSSZ). */
int ws_backup_id_valid(const char *id);
void ws_backup_id_from_time(int64_t t, char out[WS_BACKUP_ID_LEN + 1]);

/* Keys. */
void ws_backup_prefix(const struct ws_repo *repo, char *out, size_t outsz); /* "<c>/backup/" */
void ws_backup_manifest_key(const struct ws_repo *repo, const char *id, char *out, size_t outsz);
void ws_backup_bundle_key(const struct ws_repo *repo, const char *id, uint32_t bundle, char *out,
                          size_t outsz);

/* Reads and verifies a backup's manifest. WS_ERR_NOT_FOUND if it has none. */
int ws_manifest_load(struct ws_repo *repo, const struct ws_keyring *kr, const char *id,
                     struct ws_manifest *m, struct ws_error *err);
/*
 * Pins and tombstones: two small objects whose presence is what counts (content: one
 * informative text line, unencrypted, checksummed like the identity).
 *   <cluster>/backup/<ID>/keep      pinned by `basebackup keep ID`: wal-prune keeps it forever
 *   <cluster>/backup/<ID>.deleting  written by wal-prune before it deletes anything of the
 *                                   backup, removed last, after the backup's directory (where
 *                                   the storage has directories), so the tombstone outlives
 *                                   every trace it has to account for (see prune.h)
 */
#define WS_BACKUP_KEEP "keep"
#define WS_BACKUP_DELETING_SUFFIX ".deleting"
/* "<cluster>/backup/<ID>/<name>" ("" gives the prefix of the backup's objects) */
void ws_backup_object_key(const struct ws_repo *repo, const char *id, const char *name, char *out,
                          size_t outsz);
/* "<cluster>/backup/<ID>.deleting" */
void ws_backup_tombstone_key(const struct ws_repo *repo, const char *id, char *out, size_t outsz);
/* Stores a small marker object under key (no replace; an existing one is success). */
int ws_backup_put_marker(struct ws_repo *repo, const char *key, const char *text,
                         struct ws_error *err);

#endif
