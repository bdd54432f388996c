/*
 * fixture.h - the set-up the unit tests share: files and directories in the scratch directory
 * (unit_tmpdir()), a key file, a configuration, synthetic WAL segments with their .ready files,
 * keys, and an in-memory repository (storage_mem.c, with its fault injection; objects go in with
 * ws_repo_put_small, as the programs write them). Names are unit_* as in unit.h.
 *
 * A call that makes something returns 0, or -1 after recording the failure with unit_fail() (so
 * a test may REQUIRE() the result or go on); the readers and predicates record nothing. Paths are
 * caller-owned buffers; a path that does not fit is a failure, never a truncated path. Nothing
 * here removes files: the scratch directory goes at exit.
 */
#ifndef UNIT_FIXTURE_H
#define UNIT_FIXTURE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/config.h"
#include "io/key.h"
#include "pg/wal.h"
#include "repo/repo.h"
#include "storage/storage.h"

/* The fixture's encryption key (unit_key_file()), as hex. */
#define UNIT_KEYHEX "3c1f5e0a9b8d7c6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e"
/* Synthetic WAL: 1 MiB segments of this system (PostgreSQL 15 page magic 0xD110). */
#define UNIT_SEG (1u << 20)
#define UNIT_SYSID UINT64_C(7000000000000000001)
#define UNIT_WAL_MAGIC 0xD110

/* "<scratch>/" followed by fmt (printf-style) into out; nothing is created. */
int unit_path(char *out, size_t outsz, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Creates dir and its missing parents, 0700 (an existing directory is fine). */
int unit_mkdir(const char *dir);
/* Creates or truncates path and writes data; the file ends with exactly `mode`. */
int unit_write(const char *path, const void *data, size_t len, mode_t mode);
/* The whole file in *data (malloc'ed, the caller frees it; NULL after a failure), its length in
 * *len; -1 when it cannot be read. */
int unit_read(const char *path, uint8_t **data, size_t *len);
/* 1 when both files can be read and hold the same bytes, else 0. */
int unit_same_file(const char *a, const char *b);
/* 1 when path exists (lstat: a dangling link exists), else 0. */
int unit_exists(const char *path);
/* Entries of dir other than "." and ".." (not recursive); -1 when it cannot be read. */
int unit_entries(const char *dir);
/* Entries whose name contains `part`, in dir and below (links not followed); 0 when unreadable. */
int unit_count_named(const char *dir, const char *part);

/* A key file at path: hex (NULL: UNIT_KEYHEX) and a newline, mode 0600. */
int unit_key_file(const char *path, const char *hex);
/* A key with pseudo-random bytes from seed and its id derived. */
int unit_key(struct ws_key *key, uint32_t seed);
/* A keyring of keys[0..n) (n <= WS_KEYRING_MAX), keys[0] the write key when n > 0. */
void unit_keyring(struct ws_keyring *kr, const struct ws_key *keys, size_t n);

/*
 * ws_config_init(cfg), then ws_config_set(key, value, source "test") for each pair of the
 * NULL-terminated list; a pair whose value is NULL is left out:
 *     unit_config(&cfg, "repo", repo, "cluster", "main", "encrypt_key_file", keyfile, NULL)
 * On failure the message is recorded and cfg is left initialised and empty. The caller frees cfg.
 */
int unit_config(struct ws_config *cfg, ...) __attribute__((sentinel));

/* The long header of a WAL file's first page (WS_WAL_LONG_HEADER_SIZE bytes at b), timeline 1. */
void unit_wal_header(uint8_t *b, uint16_t magic, uint16_t info, uint64_t pageaddr, uint64_t sysid,
                     uint32_t seg_size, uint32_t blcksz);
/* A synthetic WAL segment file: the first page's long header (magic, timeline 1, page address,
 * system identifier, segment size in the header, block size 8192), the rest pseudo-random. */
struct unit_seg {
    uint16_t magic;          /* UNIT_WAL_MAGIC for a valid one */
    uint32_t seg_size_hdr;   /* segment size the header states */
    size_t file_size;        /* bytes written */
    uint64_t pageaddr_segno; /* segment number the page address claims */
    uint64_t sysid;
};
/* Writes segment `segno` of timeline 1 (named for UNIT_SEG) into dir as `o` says, content from
 * seed; its path in out. */
int unit_wal_segment_ex(const char *dir, uint64_t segno, uint32_t seed, const struct unit_seg *o,
                        char *out, size_t outsz);
/* The valid UNIT_SEG segment `segno` of system sysid. */
int unit_wal_segment(const char *dir, uint64_t segno, uint64_t sysid, uint32_t seed, char *out,
                     size_t outsz);
/* Segment `segno` of UNIT_SYSID (content from seed) in pg_wal and its archive_status/<name>.ready
 * (archive_status must exist), as PostgreSQL leaves a file for the archiver; name may be NULL. */
int unit_wal_ready(const char *pg_wal, uint64_t segno, uint32_t seed,
                   char name[WS_WAL_NAME_LEN + 1]);

/* An empty in-memory repository for `cluster`; with id (not NULL) its identity recorded as the
 * programs record it. Close it with ws_storage_close(repo->st). */
int unit_mem_repo(struct ws_repo *repo, const char *cluster, const struct ws_identity *id);

#endif
