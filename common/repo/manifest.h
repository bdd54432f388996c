/*
 * manifest.h - base backups in the repository: their keys, the manifest, pins and tombstones.
 *
 *   <cluster>/backup/<ID>/data/<NNNNNN>   bundles: whole files back to back, no framing
 *   <cluster>/backup/<ID>/manifest        the manifest: written last, never replaced
 *   <cluster>/backup/<ID>/keep            pin (`basebackup keep ID`): wal-prune never deletes it
 *   <cluster>/backup/<ID>/claim           stored first, without replacing: the id is one create's
 *   <cluster>/backup/<ID>/server_manifest the server's backup_manifest (backup_method stream)
 *   <cluster>/backup/<ID>/extra           the files of backup_extra_paths, back to back
 *   <cluster>/backup/<ID>.deleting        tombstone: wal-prune began deleting the backup; written
 *                                         before anything of it goes, removed last (prune.h)
 *
 * <ID> is the UTC start time, YYYYMMDDTHHMMSSZ, so ids sort by time. Every object is in the
 * object format (io/object.h), bound to its key. Pins and tombstones are small unencrypted
 * objects whose presence is what counts (their content is one informative text line).
 *
 * The manifest says which file lies at which offset of which bundle. Per file: its path
 * (relative to the data directory; a tablespace's files under pg_tblspc/<oid>/), mode, mtime,
 * size, the SHA-256 of the whole file, bundle and offset; also directories, tablespaces (oid and
 * original location) and pages whose checksum failed. backup_label (and tablespace_map) are
 * ordinary file records. A file larger than WS_PIECE_SIZE is stored in pieces: its record holds
 * bytes [0, first piece's file offset); the pieces are contiguous, end at its size, and lie in
 * bundles of increasing number (never two pieces of one file in one bundle).
 *
 * Text form: "walsafe-manifest 2" (version 1, from before incremental backups, is still read:
 * version 1, type full, no maps; version 3 is version 2 plus extra records, written only when
 * there are some), then one record per line, fields separated by one space,
 * strings %XX-escaped; at most WS_MANIFEST_LIMIT bytes. The exact format, what
 * ws_manifest_format() writes and ws_manifest_parse() accepts: docs/design/manifest.md.
 * Whether a backup is complete is the catalog's business (catalog.h).
 *
 * Errors: the parser and loader fail with WS_ERR_CORRUPT on any deviation (naming the manifest,
 * and the line); WS_ERR_INTERNAL when out of memory. Ownership: a ws_manifest owns all its
 * strings and arrays; ws_manifest_free() releases them (and is safe on a zeroed one).
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
#define WS_BUNDLE_TARGET (64u << 20) /* create starts a new bundle past this many bytes */
#define WS_PIECE_SIZE (64u << 20)    /* a file is cut into pieces at every multiple of this */
#define WS_MANIFEST_LIMIT (1u << 30) /* the most a manifest's text may hold */

struct ws_bpiece {
    uint64_t file_offset; /* > 0 */
    uint64_t length;
    uint32_t bundle;
    uint64_t offset; /* in the bundle's content */
};

/* What a backup stores of a file (docs/design/incremental.md). */
enum ws_bfile_kind {
    WS_BFILE_WHOLE = 0, /* "file": all its bytes, at bundle/offset (and its pieces) */
    WS_BFILE_DELTA,     /* "delta": a delta extent (repo/blockmap.h) at bundle/offset, `length`
                           bytes: the blocks that differ from the reference's version */
    WS_BFILE_REF,       /* "ref": nothing; its content is the reference's version */
};

struct ws_bfile {
    char *path;
    uint32_t mode;
    int64_t mtime;
    uint64_t size;
    uint8_t sha256[32]; /* always of the whole file as read from the data directory */
    uint32_t bundle;    /* of the file's first bytes (all of them when npieces is 0) */
    uint64_t offset;
    struct ws_bpiece *pieces; /* pieces after the first, owned by the record */
    size_t npieces;
    int kind;                        /* enum ws_bfile_kind */
    char base[WS_BACKUP_ID_LEN + 1]; /* DELTA and REF: the backup of the chain holding the
                                        file's last whole copy; "" for WHOLE */
    uint64_t length;                 /* DELTA: bytes of the delta extent */
    int has_map;                     /* block digests recorded ("map" line) */
    uint32_t map;                    /* their map object, */
    uint64_t map_index;              /* and the index of the first digest in it */
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

/* A file or directory of backup_extra_paths (outside the data directory, backup/extra.h). Files'
 * contents lie back to back in the backup's object "extra", in the order of their records. */
struct ws_bextra {
    char *path;    /* absolute and normalised (ws_path_clean_absolute) */
    int dir;       /* a directory: no content */
    uint32_t mode; /* permission bits, at most 07777 */
    uint32_t uid, gid;
    int64_t mtime;
    uint64_t size;      /* a file's */
    uint8_t sha256[32]; /* of a file's content */
    uint64_t offset;    /* a file's, in the content of the object "extra" */
};

enum ws_backup_type { WS_BACKUP_FULL = 0, WS_BACKUP_DIFF, WS_BACKUP_INCR };
/* "full", "diff", "incr"; ws_backup_type_parse() returns -1 for anything else. */
const char *ws_backup_type_name(int type);
int ws_backup_type_parse(const char *s);

struct ws_manifest {
    int version; /* 1 (no block maps, always full) or 2 */
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
    uint32_t maps;                        /* map objects, map/000000 .. map/<maps-1> (version 2) */
    uint32_t block_size;                  /* of the block digests and delta extents (version 2) */
    int type;                             /* enum ws_backup_type; version 1: full */
    char reference[WS_BACKUP_ID_LEN + 1]; /* diff/incr: the backup it is relative to */
    struct ws_btblspc *tblspc;
    size_t ntblspc;
    struct ws_bdir *dirs;
    size_t ndirs;
    struct ws_bfile *files;
    size_t nfiles;
    size_t files_cap, dirs_cap; /* room reserved by the parser (0: grown by doubling) */
    struct ws_badpage *badpages;
    size_t nbadpages;
    struct ws_bextra *extra; /* backup_extra_paths (version 3; none before) */
    size_t nextra;
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
/* Copies e (its path too); a file's offset must be where the previous file's content ended. */
int ws_manifest_add_extra(struct ws_manifest *m, const struct ws_bextra *e, struct ws_error *err);
/* Text form; *out is malloc'ed (caller frees). */
int ws_manifest_format(const struct ws_manifest *m, char **out, size_t *outlen,
                       struct ws_error *err);
/* Parses the text form; `what` names it in messages. WS_ERR_CORRUPT on any deviation. */
int ws_manifest_parse(const char *text, size_t len, const char *what, struct ws_manifest *m,
                      struct ws_error *err);
/* The same on a buffer the parser may change (text[len] must be '\0'): no copy of the text, so
 * a manifest in memory costs its text once plus its records (ws_manifest_load uses it). */
int ws_manifest_parse_inplace(char *text, size_t len, const char *what, struct ws_manifest *m,
                              struct ws_error *err);

/* The stop segment: the one holding the last byte before stop_lsn. */
uint64_t ws_manifest_start_segno(const struct ws_manifest *m);
uint64_t ws_manifest_stop_segno(const struct ws_manifest *m);

/* Valid backup id (YYYYMMDDTHHMMSSZ). */
int ws_backup_id_valid(const char *id);
void ws_backup_id_from_time(int64_t t, char out[WS_BACKUP_ID_LEN + 1]);
/* The time an id encodes (seconds since the epoch, UTC), 0 for an invalid id. */
int64_t ws_backup_id_time(const char *id);

/* Keys. */
void ws_backup_prefix(const struct ws_repo *repo, char *out, size_t outsz); /* "<c>/backup/" */
void ws_backup_manifest_key(const struct ws_repo *repo, const char *id, char *out, size_t outsz);
void ws_backup_bundle_key(const struct ws_repo *repo, const char *id, uint32_t bundle, char *out,
                          size_t outsz);

/* Reads and verifies a backup's manifest (ws_repo_get_small); WS_ERR_NOT_FOUND if it has none,
 * WS_ERR_CORRUPT when it does not parse or names another backup, WS_ERR_KEY without its key. */
int ws_manifest_load(struct ws_repo *repo, const struct ws_keyring *kr, const char *id,
                     struct ws_manifest *m, struct ws_error *err);
/* Pins and tombstones (the keys above). */
#define WS_BACKUP_KEEP "keep"
#define WS_BACKUP_CLAIM "claim"
#define WS_BACKUP_SERVER_MANIFEST "server_manifest"
#define WS_BACKUP_EXTRA "extra" /* the contents of the extra files, back to back */
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
