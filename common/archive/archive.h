/*
 * archive.h - the WAL archive: what wal-push and wal-fetch do, as library calls.
 *
 * ws_archive_push() stores one WAL file (segment, .partial, .history, .backup) durably: it
 * returns 0 only when the object is complete and durable in the repository, or an identical
 * copy already was (res->duplicate). It reads the file once: the content digest is taken while
 * the content is compressed and encrypted. A segment's page header must match its name and size
 * (else WS_ERR_INVALID) and the cluster identity (else WS_ERR_FOREIGN); different content already
 * stored under the name is WS_ERR_CONFLICT, and the stored copy is kept. A transient storage
 * failure repeats the whole push, `retries` attempts in all (then WS_ERR_STORAGE); a failed
 * attempt leaves nothing visible. Every error message names the WAL file.
 *
 * ws_archive_fetch() restores one WAL file into dest_path: the object is authenticated,
 * decrypted and decompressed into a temp file beside dest_path, which is renamed into place only
 * after the whole object verified. WS_ERR_NOT_FOUND means the repository was reached, holds this
 * cluster, and does not hold the file (a repository without this cluster is WS_ERR_CONFIG);
 * every other error leaves dest_path untouched. Retries as for a push.
 * A segment the repository does not hold is served from wal-receive's streamed chunks when the
 * working directory has no standby.signal, chunks cover it from offset 0 and the repository holds
 * no later segment of its timeline: the covered bytes, then zeros up to the segment size
 * (ws_archive_fetch_streamed; WS_ERR_NOT_FOUND when it does not apply; a chunk listed and gone
 * before it is read is a retryable WS_ERR_STORAGE: the receiver has just stored the segment).
 */
#ifndef WS_ARCHIVE_H
#define WS_ARCHIVE_H

#include "base/config.h"
#include "base/error.h"
#include "io/object.h"
#include "io/sink.h"

/* What a push did. */
struct ws_push_result {
    int duplicate;              /* an identical copy was already stored: nothing was written */
    uint64_t bytes;             /* the file's length */
    uint64_t stored_bytes;      /* the length of the object in the repository */
    uint64_t system_identifier; /* from a segment's page header; 0 for other files */
    int digest;                 /* enum ws_digest of content_digest; WS_DIGEST_NONE: not known */
    uint8_t content_digest[WS_OBJECT_DIGEST_SIZE]; /* of the file's `bytes` bytes, as read */
};

int ws_archive_push(const struct ws_config *cfg, const char *wal_path, struct ws_push_result *res,
                    struct ws_error *err);
int ws_archive_fetch(const struct ws_config *cfg, const char *wal_name, const char *dest_path,
                     struct ws_error *err);
struct ws_repo;
struct ws_keyring;
int ws_archive_fetch_streamed(struct ws_repo *repo, const struct ws_keyring *kr, uint32_t seg_size,
                              const char *wal_name, const char *dest_path, struct ws_error *err);

/*
 * The reader of WAL file wal_name's object `key`, for wal-fetch and the prefetcher: an object
 * reader (object.h, taking ownership of dest) whose content is capped at ws_wal_max_size() for
 * the name's kind, seg_size being the cluster's (its identity): a small object that decodes to
 * more fails with WS_ERR_CORRUPT before a byte beyond the cap reaches dest. A segment or
 * .partial name with an invalid seg_size is WS_ERR_CORRUPT (dest freed).
 */
struct ws_keyring;
int ws_archive_wal_reader_new(struct ws_sink *dest, const char *key, const char *wal_name,
                              const struct ws_keyring *kr, uint64_t seg_size, struct ws_sink **out,
                              struct ws_error *err);

/*
 * For push-ahead (pushahead.h). ws_archive_push_in() is ws_archive_push() with the caller's open
 * repository and keyring (one storage handle per thread; the keyring may be shared; NULL for
 * both: opened per attempt, as ws_archive_push() does), zstd_workers threads for this file (-1:
 * the default) and at most `attempts` attempts.
 */
struct ws_repo;
int ws_archive_push_in(const struct ws_config *cfg, struct ws_repo *repo,
                       const struct ws_keyring *kr, int zstd_workers, int attempts,
                       const char *wal_path, struct ws_push_result *res, struct ws_error *err);

#endif
