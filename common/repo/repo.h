/*
 * repo.h - the layout of a repository, the identity of each cluster in it, and reading and
 * writing its small objects.
 *
 *   <repo>/<cluster>/identity                      who this cluster is (written once)
 *   <repo>/<cluster>/wal/<TTTTTTTTXXXXXXXX>/<name> segments, .partial and .backup files,
 *                                                  grouped by timeline and 4 GiB "log" id
 *   <repo>/<cluster>/wal/<TTTTTTTT>.history        timeline history files
 *   <repo>/<cluster>/stream/<segment>.<S>-<E>      streamed bytes [S, E) of a segment in
 *                                                  progress (wal-receive; 8 hex digits each)
 *   <repo>/<cluster>/backup/...                    base backups (manifest.h)
 *
 * Every object is in the object format (io/object.h), bound to its key, so an object copied
 * under another key or into another cluster fails verification.
 *
 * The identity object (unencrypted, checksummed, at most 4 KiB) holds text lines
 * "key = value": format_version, system_identifier, pg_version, wal_segment_size. The first
 * wal-push (or basebackup) writes it with no-replace semantics, so concurrent first writers agree
 * on one. Errors of the identity calls: WS_ERR_NOT_FOUND (none yet), WS_ERR_CORRUPT (it does not
 * parse), WS_ERR_CONFIG (another repository format), WS_ERR_FOREIGN (another system), and the
 * storage's.
 */
#ifndef WS_REPO_H
#define WS_REPO_H

#include <stddef.h>
#include <stdint.h>

#include "base/config.h"
#include "io/key.h"
#include "io/object.h"
#include "storage/storage.h"

#define WS_REPO_FORMAT 1

struct ws_identity {
    int format_version;
    uint64_t system_identifier;
    int pg_version;
    uint32_t wal_segment_size;
};

/*
 * An open repository. The identity object is written once and never replaced, so a handle with
 * keep_identity set (by its owner, after ws_repo_open) keeps the first one it loaded or wrote: a
 * process that pushes many files through one handle (push-ahead's workers) reads it once, not
 * once per file.
 */
struct ws_repo {
    struct ws_storage *st;
    char cluster[65];
    int keep_identity;
    int have_identity;
    struct ws_identity identity;
};

int ws_repo_open(const struct ws_config *cfg, struct ws_repo *repo, struct ws_error *err);

/* May this process write cfg's repository (basebackup create, keep, check; wal-prune; owner.c)?
 * Refused (WS_ERR_INVALID, one line naming the user to run as): root without cfg->allow_root,
 * and, for a local repository, any other user than the owner of its directory. Root with
 * allow_root passes (the posix driver gives what it creates to that owner). Nothing else is
 * checked: a missing directory is left to ws_repo_open. */
int ws_repo_check_user(const struct ws_config *cfg, const char *program, struct ws_error *err);
void ws_repo_close(struct ws_repo *repo);

/* The key of a WAL file (segment, .partial, .history or .backup); -1 for another name. */
int ws_repo_wal_key(const struct ws_repo *repo, const char *walname, char *out, size_t outsz);
void ws_repo_identity_key(const struct ws_repo *repo, char *out, size_t outsz);
/* Streamed chunks: the key of segment's bytes [start, end); the prefix of all its chunks
 * ("<cluster>/stream/<segment>."); -1 when it does not fit. ws_repo_stream_parse: a chunk key's
 * segment name and range (start < end); -1 for another key. */
int ws_repo_stream_key(const struct ws_repo *repo, const char *segment, uint32_t start,
                       uint32_t end, char *out, size_t outsz);
int ws_repo_stream_prefix(const struct ws_repo *repo, const char *segment, char *out, size_t outsz);
int ws_repo_stream_parse(const char *key, char segment[25], uint32_t *start, uint32_t *end);

/* WS_ERR_NOT_FOUND when the cluster has no identity yet. */
int ws_repo_identity_load(struct ws_repo *repo, struct ws_identity *id, struct ws_error *err);
/* Loads the identity, or records `want` if there is none; WS_ERR_FOREIGN on mismatch, with a
 * message naming both systems. `what` names the thing checked, e.g. "WAL file \"...\"". */
int ws_repo_identity_ensure(struct ws_repo *repo, const struct ws_identity *want, const char *what,
                            struct ws_error *err);
/* Compares only the fields set in want (non-zero). */
int ws_repo_identity_compare(const struct ws_repo *repo, const struct ws_identity *have,
                             const struct ws_identity *want, const char *what,
                             struct ws_error *err);

/*
 * Small objects, read or written whole in memory: the identity, manifests, markers, history files.
 * ws_repo_get_small() reads the object at key and verifies it (decrypting with kr; NULL reads
 * unencrypted objects only) into *data: malloc'ed, NUL-terminated after its *len bytes, the
 * caller's to free; NULL after a failure. Content over cap bytes fails with WS_ERR_CORRUPT before
 * more than cap is held. Errors: WS_ERR_NOT_FOUND, the storage's, the object format's
 * (WS_ERR_CORRUPT, WS_ERR_KEY).
 */
int ws_repo_get_small(struct ws_repo *repo, const char *key, const struct ws_keyring *kr,
                      size_t cap, char **data, size_t *len, struct ws_error *err);
/*
 * Stores len bytes as the object at key, never replacing one: WS_ERR_EXISTS (nothing changed)
 * when the key is taken. p sets compression and encryption (NULL: neither); its name and
 * content_size are ignored (key and len).
 */
int ws_repo_put_small(struct ws_repo *repo, const char *key, const void *data, size_t len,
                      const struct ws_object_params *p, struct ws_error *err);

/* Encode/decode of the identity text (exposed for tests). */
int ws_identity_format(const struct ws_identity *id, char *out, size_t outsz);
int ws_identity_parse(const char *text, size_t len, struct ws_identity *id);

#endif
