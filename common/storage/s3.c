/*
 * storage/s3.c - a repository in an S3 bucket (AWS or any S3-compatible server), over libcurl
 * with our own SigV4 signer: open and close, stat (HEAD), get (GET with Range), remove (DELETE),
 * remove_many (DeleteObjects) and list (ListObjectsV2). One request is s3_request.c's, the
 * upload sink s3_put.c's.
 *
 * Reading: the body is streamed into the sink and its length checked against Content-Length,
 * because a connection closed cleanly mid-body can look like success, and a 206's Content-Range
 * must be the range asked for. 404 is WS_ERR_NOT_FOUND only for NoSuchKey (or a HEAD), never
 * for a missing bucket.
 *
 * Listing: a listing ends. A continuation token the server already sent in this listing, or
 * WS_S3_LIST_STALL_PAGES pages in a row without a key not seen before, fail it naming bucket
 * and prefix; a key served again is passed on once; a key outside the prefix asked for is
 * never passed on (one warning per listing), since callers take every key for one under it.
 *
 * Retries: stat, get, remove and the first page of a listing are repeated by storage.c; this
 * driver repeats a continuation page itself, up to base.attempts tries.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "base/log.h"
#include "storage/params.h"
#include "storage/s3_int.h"
#include "storage/sigv4.h"

/* ---- stat, get, remove ---- */

int ws_s3_head(struct s3_storage *s, const char *key, struct ws_storage_stat *out, char *etag,
               size_t etagsz, struct ws_error *err)
{
    struct s3_req q = {"HEAD", key, "", NULL, 0, NULL, NULL, 0, 1, NULL};
    struct s3_resp r = {0};
    long ft = -1;
    int rc = ws_s3_perform(s, &q, &r, "stat", err);

    if (rc == 0 && r.h.content_length < 0) {
        rc = ws_error_set(err, WS_ERR_STORAGE,
                          "S3 gave no Content-Length for \"%s%s\" in bucket \"%s\"", s->prefix, key,
                          s->bucket);
    } else if (rc == 0) {
        s->cu->easy_getinfo(s->easy, CURLINFO_FILETIME, &ft);
        out->size = (uint64_t)r.h.content_length;
        out->mtime = ft;
        if (etag)
            snprintf(etag, etagsz, "%s", r.h.etag);
    }
    ws_s3_resp_free(&r);
    return rc;
}

static int s3_stat(struct ws_storage *st, const char *key, struct ws_storage_stat *out,
                   struct ws_error *err)
{
    return ws_s3_head((struct s3_storage *)st, key, out, NULL, 0, err);
}

/* A 206 answer's Content-Range is the range asked for: it starts at offset and, unless the read
 * goes to the end, ends at offset + length - 1. */
static int range_matches(const struct ws_s3_headers *h, uint64_t offset, uint64_t length)
{
    if (!h->has_range || h->range_first != offset)
        return 0;
    return length == WS_STORAGE_TO_END || h->range_last == offset + length - 1;
}

static int s3_get(struct ws_storage *st, const char *key, uint64_t offset, uint64_t length,
                  struct ws_sink *dest, struct ws_error *err)
{
    struct s3_storage *s = (struct s3_storage *)st;
    char range[80];
    struct s3_req q = {"GET", key, "", NULL, 0, NULL, NULL, 0, 0, NULL};
    struct s3_resp r = {0};
    int64_t announced;
    int rc;

    if (length == 0)
        return 0;
    if (offset || length != WS_STORAGE_TO_END) {
        if (length == WS_STORAGE_TO_END)
            snprintf(range, sizeof(range), "bytes=%llu-", (unsigned long long)offset);
        else
            snprintf(range, sizeof(range), "bytes=%llu-%llu", (unsigned long long)offset,
                     (unsigned long long)(offset + length - 1));
        q.range = range;
    }
    r.dest = dest;
    rc = ws_s3_perform(s, &q, &r, "read", err);
    announced = r.h.content_length;
    if (rc == 0 && q.range && r.h.status != 206) {
        /* The whole object instead of the range (a server or proxy that ignores Range): its
         * length could even match what a resumed read expects. */
        rc = ws_error_set(err, WS_ERR_STORAGE,
                          "S3 answered HTTP %ld, not 206, to a range read (%s) of \"%s%s\" in "
                          "bucket \"%s\"",
                          r.h.status, range, s->prefix, key, s->bucket);
    } else if (rc == 0 && q.range && !range_matches(&r.h, offset, length)) {
        /* Another range than the one asked for (a confused proxy or cache): its bytes would
         * land at the wrong offset of what the caller assembles. */
        rc = ws_error_set(err, WS_ERR_STORAGE,
                          "S3 answered a range read (%s) of \"%s%s\" in bucket \"%s\" with "
                          "another range",
                          range, s->prefix, key, s->bucket);
    } else if (rc == 0) {
        if ((announced >= 0 && r.got != (uint64_t)announced) ||
            (length != WS_STORAGE_TO_END && r.got != length)) {
            rc = ws_error_set(
                err, WS_ERR_STORAGE,
                "short read of \"%s%s\" from S3 bucket \"%s\": %llu of %lld bytes", s->prefix, key,
                s->bucket, (unsigned long long)r.got,
                (long long)(length != WS_STORAGE_TO_END ? (int64_t)length : announced));
            err->retryable = 1;
        }
    } else if (rc == WS_ERR_STORAGE && r.h.status == 416) {
        /* S3 refuses an empty range; reading from the very end is the contract's "nothing". */
        struct ws_storage_stat st2;
        if (length == WS_STORAGE_TO_END && s3_stat(st, key, &st2, err) == 0 && st2.size == offset)
            rc = 0;
        else
            rc = ws_error_set(err, WS_ERR_STORAGE,
                              "range %s is outside \"%s%s\" in S3 bucket \"%s\"", range, s->prefix,
                              key, s->bucket);
    }
    ws_s3_resp_free(&r);
    return rc;
}

static int s3_remove(struct ws_storage *st, const char *key, struct ws_error *err)
{
    struct s3_storage *s = (struct s3_storage *)st;
    struct ws_storage_stat stt;
    struct s3_req q = {"DELETE", key, "", NULL, 0, NULL, NULL, 0, 0, NULL};
    struct s3_resp r = {0};
    int rc;

    /* S3 answers 204 for missing keys too; the contract wants NOT_FOUND. */
    if ((rc = s3_stat(st, key, &stt, err)) != 0)
        return rc;
    rc = ws_s3_perform(s, &q, &r, "remove", err);
    ws_s3_resp_free(&r);
    return rc;
}

/* The body of a quiet DeleteObjects for keys[0..n), with its SHA-256 (hex) and MD5 (base64). */
static int delete_body(struct s3_storage *s, const char *const *keys, size_t n,
                       struct ws_s3_text *t, char sha[65], char md5b64[32], struct ws_error *err)
{
    unsigned char md5[16];

    ws_s3_text_add(t, "<Delete><Quiet>true</Quiet>", 0);
    for (size_t i = 0; i < n; i++) {
        ws_s3_text_add(t, "<Object><Key>", 0);
        ws_s3_text_add(t, s->prefix, 1);
        ws_s3_text_add(t, keys[i], 1);
        ws_s3_text_add(t, "</Key></Object>", 0);
    }
    ws_s3_text_add(t, "</Delete>", 0);
    if (t->oom)
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    ws_sha256_hex(t->p, t->len, sha);
    if (!EVP_Digest(t->p, t->len, md5, NULL, EVP_md5(), NULL))
        return ws_error_set(err, WS_ERR_INTERNAL, "could not compute an MD5 digest");
    EVP_EncodeBlock((unsigned char *)md5b64, md5, 16);
    return 0;
}

/* The answer to a DeleteObjects of n keys that ended in rc: a 200 may still name keys that
 * were not deleted, each with its own <Error>, and then the first of them fails the call. */
static int delete_answer(struct s3_storage *s, struct s3_resp *r, int rc, const char *const *keys,
                         size_t n, struct ws_error *err)
{
    const char *text = ws_s3_resp_text(r), *from = NULL;
    char key[WS_S3_KEY_MAX + 1], shown[200], what[600];
    struct ws_s3_error e;

    if (text && strstr(text, "<DeleteResult") && (from = strstr(text, "<Error>")) != NULL) {
        size_t rest = strlen(from);
        (void)ws_s3_xml_value(from, rest, NULL, "Key", key, sizeof(key));
        ws_s3_printable(key, strlen(key), shown, sizeof(shown));
        ws_s3_error_parse(from, rest, &e);
        rc = ws_error_set(err, WS_ERR_STORAGE,
                          "could not delete \"%s\" in S3 bucket \"%s\" (one of %zu in a "
                          "batch): %s%s%s",
                          shown, s->bucket, n, e.code, e.message[0] ? ": " : "", e.message);
        err->retryable = ws_s3_retryable_status(0, e.code);
    } else if (rc == 0 && (!text || !strstr(text, "<DeleteResult"))) {
        rc = ws_error_set(err, WS_ERR_STORAGE,
                          "could not delete %zu objects (\"%s%s\" first) in S3 bucket \"%s\": "
                          "no DeleteResult in the answer",
                          n, s->prefix, keys[0], s->bucket);
    } else if (rc != 0) {
        snprintf(what, sizeof(what), "deleting %zu objects (\"%s%s\" first)", n, s->prefix,
                 keys[0]);
        ws_error_prefix(err, "%s", what);
    }
    return rc;
}

/* DeleteObjects (POST ?delete) for up to WS_STORAGE_REMOVE_BATCH keys, quiet: missing keys
 * count as deleted, as the contract wants here. */
static int s3_remove_many(struct ws_storage *st, const char *const *keys, size_t n,
                          struct ws_error *err)
{
    struct s3_storage *s = (struct s3_storage *)st;
    struct ws_s3_text t = {0};
    char sha[65], md5b64[32];
    int rc;

    if (n == 0)
        return 0;
    if ((rc = delete_body(s, keys, n, &t, sha, md5b64, err)) == 0) {
        struct s3_req q = {"POST", NULL, "delete=", (const uint8_t *)t.p, t.len, sha, NULL,
                           0,      0,    md5b64};
        struct s3_resp r = {0};
        rc = ws_s3_perform(s, &q, &r, "delete a batch of objects under", err);
        rc = delete_answer(s, &r, rc, keys, n, err);
        ws_s3_resp_free(&r);
    }
    free(t.p);
    return rc;
}

/* ---- list ---- */

/* One listing: what its pages are checked against (s3_parse.h's guard) and where keys go. */
struct listing {
    struct s3_storage *s;
    const char *prefix; /* asked for, relative to the repository */
    ws_storage_list_cb cb;
    void *arg;
    struct ws_s3_list_guard guard;
    size_t new_keys; /* of the current page */
    int warned;      /* about a key outside the prefix */
    int cb_failed;   /* the error is the callback's own */
};

/* A key of a page: the caller gets it (relative to the repository) if it lies under the prefix
 * asked for, is no temp file, and was not in an earlier page. */
static int on_listed(void *arg, const char *key, uint64_t size, struct ws_error *err)
{
    struct listing *l = arg;
    struct s3_storage *s = l->s;
    size_t plen = strlen(s->prefix);
    const char *rel = key + plen, *base;
    struct ws_storage_stat st = {.size = size};
    int fresh;

    if (strncmp(key, s->prefix, plen) != 0 || strncmp(rel, l->prefix, strlen(l->prefix)) != 0) {
        /* Never passed on: callers take every key for one under their prefix. */
        if (!l->warned++) {
            char shown[200];
            ws_s3_printable(key, strlen(key), shown, sizeof(shown));
            ws_log_warning("S3 listing of \"%s%s\" in bucket \"%s\" returned key \"%s\", which is "
                           "outside that prefix; ignoring it and any others",
                           s->prefix, l->prefix, s->bucket, shown);
        }
        return 0;
    }
    base = strrchr(rel, '/');
    if (strncmp(base ? base + 1 : rel, ".walsafe-tmp", 12) == 0)
        return 0;
    if ((fresh = ws_s3_list_guard_key(&l->guard, key)) < 0)
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    if (!fresh)
        return 0; /* a page served again: each key reaches the caller once */
    l->new_keys++;
    if (l->cb(l->arg, rel, &st, err) != 0) {
        l->cb_failed = 1;
        return err->code;
    }
    return 0;
}

/* Fetches the page after token ("" for the first) into r; a continuation page is repeated here
 * while it fails transiently (the first page is storage.c's to repeat). */
static int list_page(struct listing *l, const char *enc, const char *token, struct s3_resp *r,
                     struct ws_error *err)
{
    struct s3_storage *s = l->s;
    char query[8320], enctok[4096];
    struct s3_req q = {"GET", NULL, query, NULL, 0, NULL, NULL, 0, 0, NULL};
    int rc;

    if (token[0]) {
        if (ws_uri_encode(token, 0, enctok, sizeof(enctok)) != 0)
            return ws_error_set(err, WS_ERR_STORAGE, "S3 continuation token too long");
        snprintf(query, sizeof(query), "continuation-token=%s&list-type=2&prefix=%s", enctok, enc);
    } else {
        snprintf(query, sizeof(query), "list-type=2&prefix=%s", enc);
    }
    for (int attempt = 1;; attempt++) {
        if ((rc = ws_s3_perform(s, &q, r, "list", err)) == 0)
            return 0;
        ws_s3_resp_free(r);
        memset(r, 0, sizeof(*r));
        if (!token[0])
            return rc;
        if (!ws_storage_try_again(&s->base, rc, attempt, err)) {
            err->retryable = 0; /* tried here already: storage.c must not start over */
            return rc;
        }
    }
}

/*
 * ListObjectsV2, page after page. A listing must end: a continuation token the server sent
 * before in this listing (a server or proxy that serves a page again, or alternates between
 * pages) fails it, and so do WS_S3_LIST_STALL_PAGES pages in a row that bring no new key.
 */
static int s3_list(struct ws_storage *st, const char *prefix, ws_storage_list_cb cb, void *arg,
                   struct ws_error *err)
{
    struct s3_storage *s = (struct s3_storage *)st;
    struct listing l = {s, prefix, cb, arg, {{NULL, 0, 0}, {NULL, 0, 0}, 0, 0}, 0, 0, 0};
    struct ws_s3_list_page *page = NULL;
    char token[WS_S3_TOKEN_MAX + 1] = "", full[2048], enc[4096];
    int rc = 0;

    snprintf(full, sizeof(full), "%s%s", s->prefix, prefix);
    if (ws_uri_encode(full, 0, enc, sizeof(enc)) != 0)
        return ws_error_set(err, WS_ERR_STORAGE, "S3 prefix too long");
    if (!(page = malloc(sizeof(*page))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    do {
        struct s3_resp r = {0};
        const char *body;
        size_t blen;
        if ((rc = list_page(&l, enc, token, &r, err)) != 0)
            break;
        body = ws_s3_resp_body(&r, &blen);
        l.new_keys = 0;
        rc = ws_s3_list_parse(body, blen, on_listed, &l, page, err);
        ws_s3_resp_free(&r);
        if (rc != 0) {
            if (!l.cb_failed)
                ws_error_prefix(err, "S3 listing of \"%s\" in bucket \"%s\", page %zu", full,
                                s->bucket, l.guard.pages + 1);
            break;
        }
        if (page->truncated && (rc = ws_s3_list_guard_token(&l.guard, page->next_token)) != 0) {
            rc = rc < 0 ? ws_error_set(err, WS_ERR_INTERNAL, "out of memory")
                        : ws_error_set(err, WS_ERR_STORAGE,
                                       "S3 listing of \"%s\" in bucket \"%s\" does not end: "
                                       "page %zu repeats a continuation token of an earlier "
                                       "page",
                                       full, s->bucket, l.guard.pages + 1);
            break;
        }
        if (page->truncated && ws_s3_list_guard_page(&l.guard, l.new_keys)) {
            rc = ws_error_set(err, WS_ERR_STORAGE,
                              "S3 listing of \"%s\" in bucket \"%s\" does not end: %d pages in a "
                              "row (up to page %zu) brought no new key",
                              full, s->bucket, WS_S3_LIST_STALL_PAGES, l.guard.pages);
            break;
        }
        snprintf(token, sizeof(token), "%s", page->truncated ? page->next_token : "");
    } while (token[0]);
    ws_s3_list_guard_free(&l.guard);
    free(page);
    return rc;
}

static void s3_close(struct ws_storage *st)
{
    struct s3_storage *s = (struct s3_storage *)st;
    if (s->easy)
        s->cu->easy_cleanup(s->easy);
    if (s->multi)
        s->cu->multi_cleanup(s->multi);
    if (s->secret)
        memset(s->secret, 0, strlen(s->secret));
    if (s->token)
        memset(s->token, 0, strlen(s->token));
    free(s->scheme);
    free(s->host);
    free(s->bucket);
    free(s->prefix);
    free(s->region);
    free(s->akid);
    free(s->secret);
    free(s->token);
    free(s->ca_file);
    free(s->base.location);
    free(s);
}

static const struct ws_storage_housekeeping s3_hk = {NULL, NULL, s3_remove_many};
static const struct ws_storage_links s3_links = {ws_s3_presign_get};
static const struct ws_storage_ops s3_ops = {"s3",    s3_stat,   ws_s3_open_put, s3_get,
                                             s3_list, s3_remove, s3_close};

static char *dup_or_null(const char *v)
{
    return v ? strdup(v) : NULL;
}

int ws_storage_s3_open(const struct ws_s3_params *p, struct ws_storage **out, struct ws_error *err)
{
    struct s3_storage *s;

    const struct ws_curl *cu;

    if (ws_curl_load(&cu, err) != 0)
        return err->code;
    if (!(s = calloc(1, sizeof(*s))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    s->cu = cu;
    s->base.ops = &s3_ops;
    s->base.hk = &s3_hk;
    s->base.links = &s3_links;
    s->base.caps = WS_S3_CAPS;
    s->base.location = strdup(p->location);
    s->scheme = strdup(p->scheme);
    s->host = strdup(p->host);
    s->bucket = strdup(p->bucket);
    s->prefix = strdup(p->prefix);
    s->path_style = p->path_style;
    s->region = strdup(p->region);
    s->akid = dup_or_null(p->access_key_id);
    s->secret = dup_or_null(p->secret_access_key);
    s->token = dup_or_null(p->session_token);
    s->ca_file = dup_or_null(p->ca_file);
    s->verify_tls = p->verify_tls;
    s->timeout = p->timeout;
    s->part_size = p->part_size;
    s->parallel = p->parallel < 1                          ? 1
                  : p->parallel > WS_S3_MAX_PARALLEL_PARTS ? WS_S3_MAX_PARALLEL_PARTS
                                                           : p->parallel;
    s->multi = cu->multi_init();
    s->easy = cu->easy_init();
    if (!s->bucket || !s->prefix || !s->scheme || !s->host || !s->region || !s->base.location ||
        !s->multi || !s->easy || (p->access_key_id && (!s->akid || !s->secret)) ||
        (p->session_token && !s->token) || (p->ca_file && !s->ca_file)) {
        s3_close(&s->base);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    }
    *out = &s->base;
    return 0;
}
