#include "storage/storage.h"

#include <errno.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"

int ws_storage_key_valid(const char *key)
{
    const char *p = key;

    if (!key || !*key || *key == '/' || strlen(key) > 1024)
        return 0;
    while (*p) {
        size_t n = strcspn(p, "/");
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.') ||
            strncmp(p, ".walsafe-tmp", 12) == 0)
            return 0;
        for (size_t i = 0; i < n; i++) {
            char c = p[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-'))
                return 0;
        }
        p += n;
        if (*p == '/') {
            p++;
            if (!*p)
                return 0;
        }
    }
    return 1;
}

static int bad_key(const char *key, struct ws_error *err)
{
    return ws_error_set(err, WS_ERR_INTERNAL, "invalid storage key \"%s\"", key ? key : "(null)");
}

unsigned int ws_storage_retry_delay_ms(int attempt)
{
    unsigned int ms = 500u << (attempt < 5 ? attempt : 5);
    unsigned char r = 0;

    /* Real randomness: unseeded rand() gives every process the same "jitter", and processes
     * that failed together would retry together. */
    (void)RAND_bytes(&r, 1);
    return ms + r;
}

void ws_storage_retry_pause(int attempt)
{
    usleep((useconds_t)ws_storage_retry_delay_ms(attempt) * 1000u);
}

int ws_storage_try_again(struct ws_storage *s, int rc, int attempt, const struct ws_error *err)
{
    if (rc != WS_ERR_STORAGE || !err->retryable || attempt >= s->attempts)
        return 0;
    ws_log_warning("%s (attempt %d of %d, retrying)", err->msg, attempt, s->attempts);
    ws_storage_retry_pause(attempt - 1);
    return 1;
}

void ws_storage_close(struct ws_storage *s)
{
    if (s)
        s->ops->close(s);
}

int ws_storage_stat(struct ws_storage *s, const char *key, struct ws_storage_stat *out,
                    struct ws_error *err)
{
    int rc;

    if (!ws_storage_key_valid(key))
        return bad_key(key, err);
    for (int attempt = 1;; attempt++) {
        rc = s->ops->stat(s, key, out, err);
        if (!ws_storage_try_again(s, rc, attempt, err))
            return rc;
    }
}

int ws_storage_open_put(struct ws_storage *s, const char *key, int flags, struct ws_sink **out,
                        struct ws_error *err)
{
    int rc;

    if (!ws_storage_key_valid(key))
        return bad_key(key, err);
    if ((rc = s->ops->open_put(s, key, flags, out, err)) != 0 || !s->rate)
        return rc;
    return ws_ratelimit_sink_new(s->rate, *out, out, err);
}

/* Between the driver and the caller's sink of a get: charges max_rate's limiter (if any), counts
 * what reached dest, and remembers whether dest itself failed (then the sink is spent and nothing
 * may be repeated). */
struct counting_sink {
    struct ws_sink base;
    struct ws_sink *dest;
    struct ws_ratelimit *rate;
    uint64_t delivered;
    int dest_failed;
};

static int counting_write(struct ws_sink *sink, const void *buf, size_t len, struct ws_error *err)
{
    struct counting_sink *c = (struct counting_sink *)sink;

    ws_ratelimit_take(c->rate, len);
    if (ws_sink_write(c->dest, buf, len, err) != 0) {
        c->dest_failed = 1;
        return err->code;
    }
    c->delivered += len;
    return 0;
}

static const struct ws_sink_ops counting_ops = {"storage-get", counting_write, NULL, NULL, NULL};

#define RESUME_PROGRESS (1u << 20)

int ws_storage_get(struct ws_storage *s, const char *key, uint64_t offset, uint64_t length,
                   struct ws_sink *dest, struct ws_error *err)
{
    struct counting_sink c = {{&counting_ops, NULL, 0}, dest, s->rate, 0, 0};
    int rc;

    if (!ws_storage_key_valid(key))
        return bad_key(key, err);
    if (s->attempts <= 1 && !s->rate)
        return s->ops->get(s, key, offset, length, dest, err);
    for (int attempt = 1;; attempt++) {
        uint64_t before = c.delivered;
        uint64_t left = length == WS_STORAGE_TO_END ? length : length - c.delivered;
        rc = s->ops->get(s, key, offset + c.delivered, left, &c.base, err);
        if (c.dest_failed)
            return rc;
        /* A try that made real progress starts the count again (a server that cuts every
         * few bytes still runs out of tries). */
        if (c.delivered - before >= RESUME_PROGRESS)
            attempt = 1;
        if (!ws_storage_try_again(s, rc, attempt, err))
            return rc;
    }
}

/* Passes keys on to the caller's callback, counting them. */
struct counting_list {
    ws_storage_list_cb cb;
    void *arg;
    size_t delivered;
    int want_denied; /* pass unreadable directories on (ws_storage_list_denied) */
    const char *location;
};

static int counting_cb(void *arg, const char *key, const struct ws_storage_stat *st,
                       struct ws_error *err)
{
    struct counting_list *c = arg;

    if (st->denied && !c->want_denied)
        return ws_error_setsys(err, WS_ERR_STORAGE, EACCES, "could not open directory \"%s/%s\"",
                               c->location, key);
    c->delivered++;
    return c->cb(c->arg, key, st, err);
}

static int list_with(struct ws_storage *s, const char *prefix, int want_denied,
                     ws_storage_list_cb cb, void *arg, struct ws_error *err)
{
    struct counting_list c = {cb, arg, 0, want_denied, s->location};
    int rc;

    for (int attempt = 1;; attempt++) {
        rc = s->ops->list(s, prefix, counting_cb, &c, err);
        /* A listing that already delivered keys cannot start over: the callback would see them
         * twice. (The S3 driver repeats a failed continuation page itself.) */
        if (c.delivered > 0 || !ws_storage_try_again(s, rc, attempt, err))
            return rc;
    }
}

int ws_storage_list(struct ws_storage *s, const char *prefix, ws_storage_list_cb cb, void *arg,
                    struct ws_error *err)
{
    return list_with(s, prefix, 0, cb, arg, err);
}

int ws_storage_list_denied(struct ws_storage *s, const char *prefix, ws_storage_list_cb cb,
                           void *arg, struct ws_error *err)
{
    return list_with(s, prefix, 1, cb, arg, err);
}

/* One delete request (kind: what remove_with_retries does), repeated while it fails transiently. */
enum { DEL_ONE, DEL_DIR, DEL_MANY };

static int remove_with_retries(struct ws_storage *s, int kind, const char *const *keys, size_t n,
                               struct ws_error *err)
{
    for (int attempt = 1;; attempt++) {
        int rc = kind == DEL_ONE   ? s->ops->remove(s, keys[0], err)
                 : kind == DEL_DIR ? s->hk->remove_dir(s, keys[0], err)
                                   : s->hk->remove_many(s, keys, n, err);
        if (!ws_storage_try_again(s, rc, attempt, err))
            return rc;
    }
}

int ws_storage_remove(struct ws_storage *s, const char *key, struct ws_error *err)
{
    if (!ws_storage_key_valid(key))
        return bad_key(key, err);
    return remove_with_retries(s, DEL_ONE, &key, 1, err);
}

/* A prefix of keys: a valid key, followed by one '/' when dir_only is not set, then must be. */
static int prefix_valid(const char *prefix, int need_slash, char *out, size_t outsz)
{
    size_t n = strlen(prefix);

    if (n < 2 || n >= outsz || (need_slash && prefix[n - 1] != '/'))
        return 0;
    memcpy(out, prefix, n);
    out[prefix[n - 1] == '/' ? n - 1 : n] = '\0';
    return ws_storage_key_valid(out);
}

int ws_storage_presign_get(struct ws_storage *s, const char *key, int64_t now, long expires,
                           char *url, size_t urlsz, struct ws_error *err)
{
    if (!ws_storage_key_valid(key))
        return bad_key(key, err);
    if (!(s->caps & WS_STORAGE_PRESIGN) || !s->links || !s->links->presign_get)
        return ws_error_set(err, WS_ERR_CONFIG,
                            "download links need an S3 repository: %s is a %s repository, whose "
                            "objects have no URL to share",
                            s->location, s->ops->name);
    if (expires < 1 || expires > WS_STORAGE_LINK_MAX_SECONDS)
        return ws_error_set(err, WS_ERR_USAGE,
                            "a download link is valid for 1 second to 7 days (the most S3 allows "
                            "for a presigned URL), not %ld seconds",
                            expires);
    return s->links->presign_get(s, key, now, expires, url, urlsz, err);
}

int ws_storage_remove_dir(struct ws_storage *s, const char *prefix, struct ws_error *err)
{
    char dir[1100];

    if (!prefix_valid(prefix, 1, dir, sizeof(dir)))
        return bad_key(prefix, err);
    return s->caps & WS_STORAGE_REMOVE_DIR ? remove_with_retries(s, DEL_DIR, &prefix, 1, err) : 0;
}

int ws_storage_clean_temp(struct ws_storage *s, const char *prefix, int64_t before, int dry_run,
                          size_t *count, uint64_t *bytes, struct ws_error *err)
{
    char dir[1100];

    if (!prefix_valid(prefix, 0, dir, sizeof(dir)))
        return bad_key(prefix, err);
    return s->caps & WS_STORAGE_CLEAN_TEMP
               ? s->hk->clean_temp(s, prefix, before, dry_run, count, bytes, err)
               : 0;
}

int ws_storage_remove_many(struct ws_storage *s, const char *const *keys, size_t n,
                           struct ws_error *err)
{
    for (size_t i = 0; i < n; i++)
        if (!ws_storage_key_valid(keys[i]))
            return bad_key(keys[i], err);
    if (s->caps & WS_STORAGE_REMOVE_MANY) {
        for (size_t i = 0; i < n; i += WS_STORAGE_REMOVE_BATCH) {
            size_t k = n - i < WS_STORAGE_REMOVE_BATCH ? n - i : WS_STORAGE_REMOVE_BATCH;
            int rc = remove_with_retries(s, DEL_MANY, keys + i, k, err);
            if (rc != 0)
                return rc;
        }
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        int rc = remove_with_retries(s, DEL_ONE, keys + i, 1, err);
        if (rc != 0 && rc != WS_ERR_NOT_FOUND)
            return rc;
    }
    return 0;
}

int ws_storage_get_all(struct ws_storage *s, const char *key, size_t limit, uint8_t **data,
                       size_t *len, struct ws_error *err)
{
    struct ws_sink *buf = NULL;
    const uint8_t *p;
    int rc;

    if ((rc = ws_buffer_sink_new(limit, &buf, err)) != 0)
        return rc;
    if ((rc = ws_storage_get(s, key, 0, WS_STORAGE_TO_END, buf, err)) == 0) {
        p = ws_buffer_sink_data(buf, len);
        if (!(*data = malloc(*len ? *len : 1)))
            rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        else if (*len)
            memcpy(*data, p, *len);
    }
    ws_sink_free(buf);
    return rc;
}
