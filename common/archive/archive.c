#include "archive/archive.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/log.h"
#include "base/util.h"
#include "io/key.h"
#include "io/object.h"
#include "pg/wal.h"
#include "repo/repo.h"

/* Reads header and trailer of a stored object and fills its content length and digest. */
static int stored_digest(struct ws_repo *repo, const char *key, const struct ws_keyring *kr,
                         struct ws_object_info *info, struct ws_error *err)
{
    struct ws_storage_stat st;
    struct ws_sink *hdr = NULL, *trl = NULL;
    const uint8_t *h, *t;
    size_t hlen, tlen, tsize;
    uint32_t chunk;
    int rc;

    if ((rc = ws_storage_stat(repo->st, key, &st, err)) != 0)
        return rc;
    if (st.size < WS_OBJECT_HEADER_SIZE)
        return ws_error_set(err, WS_ERR_CORRUPT, "object \"%s\" is truncated (%llu bytes)", key,
                            (unsigned long long)st.size);
    if ((rc = ws_buffer_sink_new(WS_OBJECT_HEADER_SIZE, &hdr, err)) != 0)
        return rc;
    if ((rc = ws_storage_get(repo->st, key, 0, WS_OBJECT_HEADER_SIZE, hdr, err)) != 0)
        goto out;
    h = ws_buffer_sink_data(hdr, &hlen);
    if (hlen != WS_OBJECT_HEADER_SIZE) {
        rc = ws_error_set(err, WS_ERR_CORRUPT, "object \"%s\" is truncated", key);
        goto out;
    }
    if ((rc = ws_object_parse_header(h, key, info, &chunk, err)) != 0)
        goto out;
    tsize = ws_object_trailer_size(info->cipher);
    if (st.size < WS_OBJECT_HEADER_SIZE + tsize) {
        rc = ws_error_set(err, WS_ERR_CORRUPT, "object \"%s\" is truncated", key);
        goto out;
    }
    if ((rc = ws_buffer_sink_new(tsize, &trl, err)) != 0 ||
        (rc = ws_storage_get(repo->st, key, st.size - tsize, tsize, trl, err)) != 0)
        goto out;
    t = ws_buffer_sink_data(trl, &tlen);
    rc = ws_object_read_footer(h, t, tlen, st.size, key, kr, info, err);
out:
    ws_sink_free(hdr);
    ws_sink_free(trl);
    return rc;
}

/*
 * The duplicate policy: identical content is success (with a warning), different is refused.
 * `here` is what the writer computed for the file (fd): its length and content digest. An object
 * stored with the other digest (object.h: SHA-256 before WAL objects used XXH3-128) is compared
 * with the file's digest of that kind, read again from fd.
 */
static int compare_with_stored(struct ws_repo *repo, const char *key, const char *path, int fd,
                               const struct ws_keyring *kr, const struct ws_object_info *here,
                               struct ws_push_result *res, struct ws_error *err)
{
    struct ws_object_info stored;
    uint8_t digest[WS_OBJECT_DIGEST_SIZE];
    uint64_t len = here->content_len;
    char what[PATH_MAX + 32];
    int rc;

    if ((rc = stored_digest(repo, key, kr, &stored, err)) != 0)
        return ws_error_prefix(err,
                               "WAL file \"%s\" is already archived as \"%s\" and could not "
                               "be compared",
                               path, key);
    memcpy(digest, here->content_digest, sizeof(digest));
    if (stored.digest != here->digest) {
        uint64_t again = 0;
        snprintf(what, sizeof(what), "WAL file \"%s\"", path);
        if ((rc = ws_object_digest_fd(fd, stored.digest, what, digest, &again, err)) != 0)
            return rc;
        if (again != len)
            return ws_error_set(err, WS_ERR_IO, "WAL file \"%s\" changed while it was archived",
                                path);
    }
    if (stored.content_len != len ||
        CRYPTO_memcmp(stored.content_digest, digest, WS_OBJECT_DIGEST_SIZE) != 0)
        return ws_error_set(err, WS_ERR_CONFLICT,
                            "WAL file \"%s\" is already archived as \"%s\" with different content "
                            "(%" PRIu64 " bytes stored, %" PRIu64
                            " bytes here); the stored copy is "
                            "kept",
                            path, key, stored.content_len, len);
    ws_log_warning("WAL file \"%s\" was already archived with identical content; not stored "
                   "again",
                   path);
    res->duplicate = 1;
    res->bytes = len;
    res->stored_bytes = stored.stored_len;
    return 0;
}

/*
 * The repository refused to take the file (read-only, no permission: the temp file cannot even
 * be created). If an identical copy is already stored there is nothing to do, as for any
 * duplicate; if the object is not there (or cannot be compared), the refusal stands. Asked only
 * after a refusal: the normal path pays no extra round trip.
 */
static int refused_but_stored(struct ws_repo *repo, const char *key, const char *path, int fd,
                              const struct ws_keyring *kr, uint64_t size,
                              struct ws_push_result *res, struct ws_error *err)
{
    struct ws_object_info here = {0};
    struct ws_storage_stat sst;
    struct ws_error e2 = {0};
    int refused = err->code;

    if (err->sys_errno != EACCES && err->sys_errno != EROFS && err->sys_errno != EPERM)
        return refused;
    if (ws_storage_stat(repo->st, key, &sst, &e2) != 0)
        return refused;
    here.digest = WS_DIGEST_NONE; /* none computed: compare_with_stored reads the file's */
    here.content_len = size;
    return compare_with_stored(repo, key, path, fd, kr, &here, res, err);
}

/* For .history and .backup files, which carry no system identifier: when PostgreSQL runs us
 * (cwd = data directory), global/pg_control starts with the system identifier. */
static int check_side_file(struct ws_repo *repo, const char *path, struct ws_error *err)
{
    struct ws_identity have, want = {0};
    char what[PATH_MAX + 64];
    int fd = open("global/pg_control", O_RDONLY | O_CLOEXEC), rc;

    rc = ws_repo_identity_load(repo, &have, err);
    if (rc == WS_ERR_NOT_FOUND) {
        if (fd >= 0)
            close(fd);
        return 0; /* nothing to check against yet; the first segment records the identity */
    }
    if (rc != 0 || fd < 0) {
        if (fd >= 0)
            close(fd);
        return rc;
    }
    if (ws_pread_full(fd, &want.system_identifier, 8, 0) != 8)
        want.system_identifier = 0;
    close(fd);
    snprintf(what, sizeof(what), "WAL file \"%s\" (by the data directory it is archived from)",
             path);
    return ws_repo_identity_compare(repo, &have, &want, what, err);
}

/*
 * What the file's own bytes say about its cluster, against the repository's identity: a segment
 * (or .partial) by its long page header (checked against its name and size first), which also
 * gives res->system_identifier; a .history or .backup file by the data directory's pg_control.
 */
static int check_origin(struct ws_repo *repo, const char *wal_path, int kind, int fd, uint64_t size,
                        struct ws_push_result *res, struct ws_error *err)
{
    const char *name = ws_base_name(wal_path);
    uint8_t hdr[WS_WAL_LONG_HEADER_SIZE];
    struct ws_wal_long_header h;
    struct ws_identity want = {0};
    char what[PATH_MAX + 32];
    ssize_t n;
    int rc;

    if (kind != WS_WAL_SEGMENT && kind != WS_WAL_PARTIAL)
        return check_side_file(repo, wal_path, err);
    if ((n = ws_pread_full(fd, hdr, sizeof(hdr), 0)) < 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not read WAL file \"%s\"", wal_path);
    if ((rc = ws_wal_check_segment(wal_path, name, hdr, (size_t)n, size, &h, err)) != 0)
        return rc;
    want.system_identifier = h.sysid;
    want.pg_version = ws_wal_magic_to_major(h.magic);
    want.wal_segment_size = h.seg_size;
    res->system_identifier = h.sysid;
    snprintf(what, sizeof(what), "WAL file \"%s\"", wal_path);
    return ws_repo_identity_ensure(repo, &want, what, err);
}

/* zstd threads for one WAL file (PostgreSQL archives and restores one file at a time: threads put
 * the other cores to work on its frames, io/zstd_frames.h; figures: object-format.md). */
static int file_threads(const struct ws_config *cfg)
{
    return cfg->parallel > 1 ? (cfg->parallel > 4 ? 4 : cfg->parallel) : 0;
}

/* How the object of a file of `size` bytes is written (key: its repository key). */
static void object_params(const struct ws_config *cfg, const struct ws_keyring *kr, const char *key,
                          int zstd_workers, uint64_t size, struct ws_object_params *p)
{
    memset(p, 0, sizeof(*p));
    p->name = key;
    p->compress = cfg->compress;
    p->level = cfg->compress_level;
    p->workers = file_threads(cfg);
    /* independent frames: wal-fetch decompresses them on several threads (object.h, version 3) */
    p->frames = 1;
    if (zstd_workers >= 0)
        p->workers = zstd_workers;
    p->content_size = (int64_t)size;
    /* XXH3-128: what duplicate detection compares, and push-ahead's fingerprint (object.h). */
    p->digest = WS_DIGEST_XXH3_128;
    p->key = ws_keyring_write_key(kr);
}

/*
 * The push proper, in one read of fd: file -> object writer -> storage writer, committed without
 * replacing. No existence check first: the storage writer refuses to replace (WS_ERR_EXISTS at
 * commit), and then the digest computed on the way is compared with the stored footer. That
 * saves a round trip on every push; only the rare re-archive pays for a wasted compression.
 */
static int store(const struct ws_config *cfg, struct ws_repo *repo, const struct ws_keyring *kr,
                 int zstd_workers, const char *wal_path, const char *key, int fd, uint64_t size,
                 struct ws_push_result *res, struct ws_error *err)
{
    struct ws_sink *put = NULL, *w = NULL;
    struct ws_object_params p;
    struct ws_object_info info;
    int rc;

    object_params(cfg, kr, key, zstd_workers, size, &p);
    if ((rc = ws_storage_open_put(repo->st, key, 0, &put, err)) != 0)
        return refused_but_stored(repo, key, wal_path, fd, kr, size, res, err);
    if ((rc = ws_object_writer_new(put, &p, &w, err)) != 0) /* owns put now */
        return rc;
    if ((rc = ws_sink_write_file(w, fd, wal_path, err)) != 0)
        goto out;
    /* The writer checks the length against content_size before anything is committed. */
    rc = ws_sink_finish(w, err);
    ws_object_writer_info(w, &info);
    /* The digest of the very bytes the writer stored, taken in the same pass (for push-ahead's
     * records: fingerprint.h). */
    if ((rc == 0 || rc == WS_ERR_EXISTS) && info.content_len == size) {
        res->digest = info.digest;
        memcpy(res->content_digest, info.content_digest, sizeof(res->content_digest));
    }
    if (rc == WS_ERR_EXISTS) {
        /* Already archived (by an earlier call, or a concurrent one): same content or not? */
        ws_sink_free(w);
        w = NULL;
        rc = compare_with_stored(repo, key, wal_path, fd, kr, &info, res, err);
        goto out;
    }
    if (rc != 0)
        goto out;
    res->bytes = info.content_len;
    res->stored_bytes = info.stored_len;
    ws_log_info("archived \"%s\" as \"%s\" (%" PRIu64 " bytes, %" PRIu64 " stored)", wal_path, key,
                info.content_len, info.stored_len);
out:
    ws_sink_free(w);
    return rc;
}

/*
 * One attempt. repo_in and kr_in are the caller's (push-ahead workers share a keyring and keep one
 * storage handle each) or NULL: then they are opened here, after the file, and closed again.
 * zstd_workers < 0 picks the default for one file at a time.
 */
static int push_once(const struct ws_config *cfg, struct ws_repo *repo_in,
                     const struct ws_keyring *kr_in, int zstd_workers, const char *wal_path,
                     struct ws_push_result *res, struct ws_error *err)
{
    const char *name = ws_base_name(wal_path);
    int kind = ws_wal_classify(name), fd = -1, rc;
    struct ws_keyring own_kr = {0};
    struct ws_repo own_repo = {0};
    struct ws_repo *repo = repo_in ? repo_in : &own_repo;
    const struct ws_keyring *kr = kr_in ? kr_in : &own_kr;
    struct stat st;
    char key[256];

    memset(res, 0, sizeof(*res));
    res->digest = WS_DIGEST_NONE;
    if (kind == WS_WAL_INVALID)
        return ws_error_set(err, WS_ERR_INVALID,
                            "\"%s\" is not the name of a WAL segment, .partial, .history or "
                            ".backup file",
                            wal_path);
    if ((fd = open(wal_path, O_RDONLY | O_CLOEXEC)) < 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not open WAL file \"%s\"", wal_path);
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = ws_error_set(err, WS_ERR_IO, "WAL file \"%s\" is not a regular file", wal_path);
        goto out;
    }
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    if ((!kr_in && (rc = ws_keyring_load(cfg, &own_kr, err)) != 0) ||
        (!repo_in && (rc = ws_repo_open(cfg, &own_repo, err)) != 0))
        goto out;
    if (!repo_in)
        own_repo.st->attempts = 1; /* the whole push is what repeats (with_retries) */
    if (ws_repo_wal_key(repo, name, key, sizeof(key)) != 0) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "could not build the key for \"%s\"", name);
        goto out;
    }
    if ((rc = check_origin(repo, wal_path, kind, fd, (uint64_t)st.st_size, res, err)) != 0)
        goto out;
    rc = store(cfg, repo, kr, zstd_workers, wal_path, key, fd, (uint64_t)st.st_size, res, err);
out:
    /* Every failure line names the WAL file (it lands in PostgreSQL's log). */
    if (rc != 0 && strstr(err->msg, wal_path) == NULL)
        ws_error_prefix(err, "could not archive WAL file \"%s\"", wal_path);
    ws_repo_close(&own_repo);
    ws_keyring_wipe(&own_kr);
    if (fd >= 0)
        close(fd);
    return rc;
}

int ws_archive_wal_reader_new(struct ws_sink *dest, const char *key, const char *wal_name,
                              const struct ws_keyring *kr, uint64_t seg_size, struct ws_sink **out,
                              struct ws_error *err)
{
    int kind = ws_wal_classify(wal_name), rc;

    if (kind == WS_WAL_INVALID ||
        ((kind == WS_WAL_SEGMENT || kind == WS_WAL_PARTIAL) && !ws_wal_seg_size_valid(seg_size))) {
        ws_sink_free(dest);
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "cannot bound WAL file \"%s\": segment size %llu is not valid",
                            wal_name, (unsigned long long)seg_size);
    }
    if ((rc = ws_object_reader_new(dest, key, kr, 0, out, err)) != 0)
        return rc;
    ws_object_reader_set_limit(*out, ws_wal_max_size(kind, seg_size));
    return 0;
}

/*
 * The cluster's identity, for wal-fetch. None at all means a wrong repo or cluster, which must
 * never pass for "not in the archive" (WS_ERR_CONFIG); a damaged or unreadable one is an error
 * of its own, never "not found" either.
 */
static int fetch_identity(struct ws_repo *repo, struct ws_identity *id, struct ws_error *err)
{
    int rc = ws_repo_identity_load(repo, id, err);

    if (rc == WS_ERR_NOT_FOUND)
        return ws_error_set(err, WS_ERR_CONFIG,
                            "repository \"%s\" holds no cluster \"%s\" (no identity object); "
                            "check repo and cluster",
                            repo->st->location, repo->cluster);
    if (rc == 0 && !ws_wal_seg_size_valid(id->wal_segment_size))
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "identity of cluster \"%s\" in repository \"%s\" names an invalid WAL "
                            "segment size %" PRIu32,
                            repo->cluster, repo->st->location, id->wal_segment_size);
    return rc;
}

static int fetch_once(const struct ws_config *cfg, const char *wal_name, const char *dest_path,
                      struct ws_error *err)
{
    struct ws_keyring kr;
    struct ws_repo repo = {0};
    struct ws_identity id = {0};
    struct ws_sink *out_file = NULL, *reader = NULL;
    struct ws_file_opts fo = {.mode = 0600, .err_code = WS_ERR_IO, .create_on_write = 1};
    int kind = ws_wal_classify(wal_name), have_id = 0, rc;
    char key[256];

    memset(&kr, 0, sizeof(kr));
    if (kind == WS_WAL_INVALID || strchr(wal_name, '/'))
        return ws_error_set(err, WS_ERR_USAGE,
                            "\"%s\" is not the name of a WAL segment, .partial, .history or "
                            ".backup file",
                            wal_name);
    if ((rc = ws_keyring_load(cfg, &kr, err)) != 0 || (rc = ws_repo_open(cfg, &repo, err)) != 0)
        goto out;
    repo.st->attempts = 1; /* the whole fetch is what repeats (with_retries) */
    if (ws_repo_wal_key(&repo, wal_name, key, sizeof(key)) != 0) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "could not build the key for \"%s\"", wal_name);
        goto out;
    }
    /* A segment (or .partial) is never written beyond the cluster's segment size, so its identity
     * comes first; .history and .backup files have a fixed cap and need it only when missing. */
    if (kind == WS_WAL_SEGMENT || kind == WS_WAL_PARTIAL) {
        if ((rc = fetch_identity(&repo, &id, err)) != 0)
            goto out;
        have_id = 1;
    }
    /* PostgreSQL's restore directory needs no fsync: after a crash recovery fetches again. A
     * segment's blocks are reserved up front: the writes then allocate none (object-format.md). */
    fo.preallocate = have_id ? id.wal_segment_size : 0;
    if ((rc = ws_file_sink_open(dest_path, &fo, &out_file, err)) != 0)
        goto out;
    rc = ws_archive_wal_reader_new(out_file, key, wal_name, &kr, id.wal_segment_size, &reader, err);
    out_file = NULL;
    if (rc != 0)
        goto out;
    ws_object_reader_set_workers(reader, file_threads(cfg));
    rc = ws_storage_get(repo.st, key, 0, WS_STORAGE_TO_END, reader, err);
    if (rc == WS_ERR_NOT_FOUND) {
        /* "Not in the archive" only counts if the archive of this cluster is really there. */
        struct ws_error e2 = {0};
        int rc2 = have_id ? 0 : fetch_identity(&repo, &id, &e2);
        if (rc2 != 0) {
            *err = e2, rc = rc2; /* keeps its retryable flag */
            goto out;
        }
        /* wal-receive's streamed bytes of a segment in progress; never on a standby. The
         * reader's temporary file goes first: the streamed segment writes its own. */
        ws_sink_free(reader);
        reader = NULL;
        if (kind == WS_WAL_SEGMENT && access("standby.signal", F_OK) != 0 &&
            (rc = ws_archive_fetch_streamed(&repo, &kr, id.wal_segment_size, wal_name, dest_path,
                                            err)) != WS_ERR_NOT_FOUND)
            goto out;
        rc = ws_error_set(err, WS_ERR_NOT_FOUND, "WAL file \"%s\" is not in the archive (\"%s\")",
                          wal_name, key);
        goto out;
    }
    if (rc != 0)
        goto out;
    rc = ws_sink_finish(reader, err);
out:
    if (rc != 0 && rc != WS_ERR_NOT_FOUND && strstr(err->msg, wal_name) == NULL)
        ws_error_prefix(err, "could not fetch WAL file \"%s\"", wal_name);
    ws_sink_free(reader);
    ws_sink_free(out_file);
    ws_repo_close(&repo);
    ws_keyring_wipe(&kr);
    return rc;
}

/* Between whole-operation attempts: exponential backoff with jitter. */
static void retry_pause(int attempt)
{
    ws_storage_retry_pause(attempt);
}

struct attempt {
    const struct ws_config *cfg;
    const char *a, *b; /* push: wal_path; fetch: wal_name, dest_path */
    struct ws_push_result *res;
};

static int push_attempt(const struct attempt *t, struct ws_error *err)
{
    return push_once(t->cfg, NULL, NULL, -1, t->a, t->res, err);
}

static int fetch_attempt(const struct attempt *t, struct ws_error *err)
{
    return fetch_once(t->cfg, t->a, t->b, err);
}

/*
 * Transient network failures (flagged retryable by the driver) repeat the whole operation, with
 * fresh sinks: a failed attempt made nothing visible, so a repeat is always safe. Local errors,
 * verification failures and "not found" are final at once.
 */
static int with_retries(const struct attempt *t,
                        int (*fn)(const struct attempt *, struct ws_error *), struct ws_error *err)
{
    for (int n = 1;; n++) {
        int rc = fn(t, err);
        if (rc != WS_ERR_STORAGE || !err->retryable || n >= t->cfg->retries)
            return rc;
        ws_log_warning("%s (attempt %d of %d, retrying)", err->msg, n, t->cfg->retries);
        retry_pause(n - 1);
    }
}

int ws_archive_push(const struct ws_config *cfg, const char *wal_path, struct ws_push_result *res,
                    struct ws_error *err)
{
    struct attempt t = {cfg, wal_path, NULL, res};
    return with_retries(&t, push_attempt, err);
}

int ws_archive_fetch(const struct ws_config *cfg, const char *wal_name, const char *dest_path,
                     struct ws_error *err)
{
    struct attempt t = {cfg, wal_name, dest_path, NULL};
    return with_retries(&t, fetch_attempt, err);
}

/*
 * Push-ahead (pushahead.h) pushes many files with one storage handle per worker thread. Its own
 * retry loop instead of with_retries(): the handle is the caller's and stays open between
 * attempts (a failed attempt made nothing visible, as above).
 */
int ws_archive_push_in(const struct ws_config *cfg, struct ws_repo *repo,
                       const struct ws_keyring *kr, int zstd_workers, int attempts,
                       const char *wal_path, struct ws_push_result *res, struct ws_error *err)
{
    for (int n = 1;; n++) {
        int rc = push_once(cfg, repo, kr, zstd_workers, wal_path, res, err);
        if (rc != WS_ERR_STORAGE || !err->retryable || n >= attempts)
            return rc;
        ws_log_warning("%s (attempt %d of %d, retrying)", err->msg, n, attempts);
        retry_pause(n - 1);
    }
}
