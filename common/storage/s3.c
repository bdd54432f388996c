/*
 * storage/s3.c - a repository in an S3 bucket (AWS or any S3-compatible server), over libcurl
 * with our own SigV4 signer (sigv4.c).
 *
 * Requests: HEAD (stat), GET with Range (get; the body is streamed into the sink and its length
 * checked against Content-Length, because a connection closed cleanly mid-body can look like
 * success, and a 206's Content-Range must be the range asked for), ListObjectsV2 with
 * continuation (list), DELETE (remove), PUT or multipart upload (put). Every request carries
 * x-amz-content-sha256 (the body's hash, which is signed) and has a deadline for lack of
 * progress (`timeout`). What servers send back is read by s3_parse.c, bounded by length.
 *
 * Listing: a listing ends. A continuation token the server already sent in this listing, or
 * WS_S3_LIST_STALL_PAGES pages in a row without a key not seen before, fail it naming bucket
 * and prefix; a key served again is passed on once; a key outside the prefix asked for is
 * never passed on (one warning per listing), since callers take every key for one under it.
 *
 * Writing: the put sink buffers up to s3_part_size. An object that fits is one signed PUT. A
 * larger one becomes a multipart upload whose parts (each buffered, hashed and signed) are sent
 * up to `parallel` at a time, so memory stays near part size x parallel. Nothing is visible
 * before the single PUT or the CompleteMultipartUpload succeeds; a failed or abandoned multipart
 * upload is aborted so no parts stay behind. Without WS_PUT_REPLACE the object must not exist: a
 * HEAD just before the commit, plus If-None-Match: * (honoured by AWS, ignored by servers that do
 * not know it), turn an existing key into WS_ERR_EXISTS.
 *
 * Errors name bucket, key, HTTP status and S3 error code; never credentials or signatures.
 * Transport failures, 5xx, 429, SlowDown and a body cut short are flagged retryable. stat, get,
 * remove and the first page of a listing are repeated by storage.c; this driver repeats what
 * only it can, up to base.attempts tries: a continuation page, the single PUT and every
 * multipart part from the memory that holds them (a part waits out its backoff while the other
 * parts go on), the start and the completion of a multipart upload. A PUT or completion whose
 * outcome is unknown (the answer was lost) may have landed: before it is repeated, and once
 * more if it still fails, a HEAD compares the stored ETag with the one the content implies
 * (the MD5 of a single PUT; for multipart the MD5 of the parts' MD5s with "-N", or of the
 * whole content, as some S3-compatible servers give it). Only a match counts
 * as success; a server whose ETags are not MD5s (SSE-KMS) then gets an error, never an
 * unverified success. 404 is WS_ERR_NOT_FOUND only for NoSuchKey (or a HEAD), never for a
 * missing bucket.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>

#include "base/log.h"
#include "base/util.h"
#include "io/key.h"
#include "storage/curl_api.h"
#include "storage/s3_parse.h"
#include "storage/sigv4.h"
#include "storage/params.h"

static const struct ws_curl *cu;

#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define MAX_PARALLEL_PARTS 16
#define MAX_ERROR_BODY 16384
#define UPLOAD_ID_ENC_MAX 1100 /* an UploadId URL-encoded, with its NUL (AWS's are ~100 bytes) */

struct s3_storage {
    struct ws_storage base;
    CURLM *multi;
    CURL *easy;
    char *scheme; /* "https" or "http" */
    char *host;   /* endpoint host[:port] */
    char *bucket;
    char *prefix; /* "" or "dir/" */
    int path_style;
    char *region, *akid, *secret, *token, *ca_file;
    int verify_tls;
    long timeout;
    size_t part_size;
    int parallel;
};

/* ---- one request ---- */

struct s3_resp {
    struct ws_s3_headers h; /* the answer's status line and the headers we use */
    struct ws_sink *dest;   /* 2xx body goes here when set */
    struct ws_error *err;
    int sink_failed;
    uint64_t got;
    struct ws_sink *body; /* otherwise (and for errors) collected here; NULL until data comes */
};

struct s3_req {
    const char *method;
    const char *key;   /* object key under the prefix, or NULL for the bucket */
    const char *query; /* "a=b&c=d" already encoded, or "" */
    const uint8_t *body;
    size_t bodylen;
    const char *body_sha; /* hex, for body */
    const char *range;
    int if_none_match;
    int nobody;              /* HEAD */
    const char *content_md5; /* base64, for body (DeleteObjects requires it), or NULL */
};

struct upload_src {
    const uint8_t *start, *p;
    size_t len, left;
};

static size_t read_mem(char *buf, size_t size, size_t n, void *arg)
{
    struct upload_src *u = arg;
    size_t take = size * n < u->left ? size * n : u->left;
    memcpy(buf, u->p, take);
    u->p += take;
    u->left -= take;
    return take;
}

/* Lets libcurl rewind a body in memory. When a reused keep-alive connection turns out dead
 * before any answer (the server closed it just as the request went out), libcurl resends the
 * request on a fresh connection, but only if it can rewind the body; without this it fails the
 * transfer with CURLE_SEND_FAIL_REWIND and the whole operation has to be retried. */
static int seek_mem(void *arg, curl_off_t offset, int origin)
{
    struct upload_src *u = arg;

    if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > u->len)
        return CURL_SEEKFUNC_CANTSEEK;
    u->p = u->start + offset;
    u->left = u->len - (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

/* The collected body as text, or NULL if there was none. */
static const char *resp_text(struct s3_resp *r)
{
    return r->body ? ws_buffer_sink_text(r->body) : NULL;
}

/* The collected body and its length (NULL and 0 if there was none). */
static const char *resp_body(const struct s3_resp *r, size_t *len)
{
    *len = 0;
    return r->body ? (const char *)ws_buffer_sink_data(r->body, len) : NULL;
}

static size_t write_resp(char *p, size_t size, size_t n, void *arg)
{
    struct s3_resp *r = arg;
    struct ws_error e = {0};
    size_t len = size * n;

    if (r->dest && r->h.status >= 200 && r->h.status < 300) {
        if (ws_sink_write(r->dest, p, len, r->err) != 0) {
            r->sink_failed = 1;
            return 0;
        }
        r->got += len;
        return len;
    }
    /* Responses we parse (listings, upload ids) may be large; an error body that replaces a
     * GET's content only needs its first bytes for the code and message. */
    if (!r->body && ws_buffer_sink_new(r->dest ? MAX_ERROR_BODY : (64u << 20), &r->body, &e) != 0)
        return 0;
    if (ws_sink_write(r->body, p, len, &e) != 0 && !r->dest)
        return 0;
    return len;
}

static size_t header_resp(char *p, size_t size, size_t n, void *arg)
{
    struct s3_resp *r = arg;

    ws_s3_header_line(&r->h, p, size * n);
    return size * n;
}

static void amz_now(char out[17])
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

/* Builds URL, canonical path and Host for key (NULL: the bucket). */
static int locate(struct s3_storage *s, const char *key, char *url, size_t urlsz, char *path,
                  size_t pathsz, char *host, size_t hostsz)
{
    char full[2048], enc[4096];
    int n;

    if (key) {
        if ((size_t)snprintf(full, sizeof(full), "%s%s", s->prefix, key) >= sizeof(full) ||
            ws_uri_encode(full, 1, enc, sizeof(enc)) != 0)
            return -1;
    } else {
        enc[0] = '\0';
    }
    if (s->path_style) {
        snprintf(host, hostsz, "%s", s->host);
        /* bucket-level requests without a trailing slash: some servers sign "/bucket/" wrong */
        n = snprintf(path, pathsz, "/%s%s%s", s->bucket, key ? "/" : "", enc);
    } else {
        snprintf(host, hostsz, "%s.%s", s->bucket, s->host);
        n = snprintf(path, pathsz, "/%s", enc);
    }
    if (n < 0 || (size_t)n >= pathsz)
        return -1;
    n = snprintf(url, urlsz, "%s://%s%s", s->scheme, host, path);
    return n > 0 && (size_t)n < urlsz ? 0 : -1;
}

/* Prepares easy handle e for request q; headers returned for the caller to free after. */
static int prepare(struct s3_storage *s, CURL *e, const struct s3_req *q, struct s3_resp *resp,
                   struct upload_src *src, struct curl_slist **hdrs, struct ws_error *err)
{
    char url[8192], path[4096], host[512], date[17], auth[1024], line[2200], fullurl[8300];
    const char *sha = q->body ? q->body_sha : EMPTY_SHA256;
    struct curl_slist *h = NULL;

    if (locate(s, q->key, url, sizeof(url), path, sizeof(path), host, sizeof(host)) != 0)
        return ws_error_set(err, WS_ERR_STORAGE, "S3 key too long: \"%s\"", q->key);
    snprintf(fullurl, sizeof(fullurl), "%s%s%s", url, q->query && *q->query ? "?" : "",
             q->query ? q->query : "");
    amz_now(date);
    cu->easy_reset(e);
    cu->easy_setopt(e, CURLOPT_URL, fullurl);
    cu->easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    cu->easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    cu->easy_setopt(e, CURLOPT_CONNECTTIMEOUT, s->timeout);
    cu->easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    cu->easy_setopt(e, CURLOPT_LOW_SPEED_TIME, s->timeout);
    cu->easy_setopt(e, CURLOPT_SSL_VERIFYPEER, s->verify_tls ? 1L : 0L);
    cu->easy_setopt(e, CURLOPT_SSL_VERIFYHOST, s->verify_tls ? 2L : 0L);
    if (s->ca_file)
        cu->easy_setopt(e, CURLOPT_CAINFO, s->ca_file);
    cu->easy_setopt(e, CURLOPT_WRITEFUNCTION, write_resp);
    cu->easy_setopt(e, CURLOPT_WRITEDATA, resp);
    cu->easy_setopt(e, CURLOPT_HEADERFUNCTION, header_resp);
    cu->easy_setopt(e, CURLOPT_HEADERDATA, resp);
    cu->easy_setopt(e, CURLOPT_FILETIME, 1L);

    snprintf(line, sizeof(line), "Host: %s", host);
    h = cu->slist_append(h, line);
    snprintf(line, sizeof(line), "x-amz-date: %s", date);
    h = cu->slist_append(h, line);
    snprintf(line, sizeof(line), "x-amz-content-sha256: %s", sha);
    h = cu->slist_append(h, line);
    h = cu->slist_append(h, "Expect:");
    if (q->range) {
        snprintf(line, sizeof(line), "Range: %s", q->range);
        h = cu->slist_append(h, line);
    }
    if (q->if_none_match)
        h = cu->slist_append(h, "If-None-Match: *");
    if (q->content_md5) {
        snprintf(line, sizeof(line), "Content-MD5: %s", q->content_md5);
        h = cu->slist_append(h, line);
    }
    if (s->token) {
        snprintf(line, sizeof(line), "x-amz-security-token: %s", s->token);
        h = cu->slist_append(h, line);
    }
    if (s->akid && s->secret) {
        struct ws_sigv4_request r = {q->method, path,    q->query ? q->query : "", host, sha, date,
                                     s->token,  q->range};
        struct ws_sigv4_creds c = {s->akid, s->secret, s->region, "s3"};
        if (ws_sigv4_sign(&r, &c, auth, sizeof(auth), err) != 0) {
            cu->slist_free_all(h);
            return err->code;
        }
        snprintf(line, sizeof(line), "Authorization: %s", auth);
        h = cu->slist_append(h, line);
        memset(auth, 0, sizeof(auth));
        memset(line, 0, sizeof(line));
    }
    if (!h)
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    cu->easy_setopt(e, CURLOPT_HTTPHEADER, h);
    if (q->nobody) {
        cu->easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (strcmp(q->method, "PUT") == 0) {
        src->start = src->p = q->body;
        src->len = src->left = q->bodylen;
        cu->easy_setopt(e, CURLOPT_UPLOAD, 1L);
        cu->easy_setopt(e, CURLOPT_READFUNCTION, read_mem);
        cu->easy_setopt(e, CURLOPT_READDATA, src);
        cu->easy_setopt(e, CURLOPT_SEEKFUNCTION, seek_mem);
        cu->easy_setopt(e, CURLOPT_SEEKDATA, src);
        cu->easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)q->bodylen);
    } else if (strcmp(q->method, "POST") == 0) {
        cu->easy_setopt(e, CURLOPT_POST, 1L);
        cu->easy_setopt(e, CURLOPT_POSTFIELDS, q->body ? (const char *)q->body : "");
        cu->easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->bodylen);
    } else if (strcmp(q->method, "GET") != 0) {
        cu->easy_setopt(e, CURLOPT_CUSTOMREQUEST, q->method);
    }
    *hdrs = h;
    return 0;
}

static int retryable_status(long status, const char *code)
{
    /* InternalError also comes in a 200 answer (CompleteMultipartUpload, DeleteObjects). */
    return status >= 500 || status == 429 || (code && strcmp(code, "SlowDown") == 0) ||
           (code && strcmp(code, "RequestTimeout") == 0) ||
           (code && strcmp(code, "InternalError") == 0);
}

/* Turns a finished transfer into 0 or an error naming bucket, key, status and S3 code. */
static int outcome(struct s3_storage *s, const struct s3_req *q, int cc, struct s3_resp *r,
                   const char *what, struct ws_error *err)
{
    struct ws_s3_error e;
    const char *key = q->key ? q->key : "", *body;
    size_t blen;

    if (r->sink_failed)
        return err->code;
    if (cc != CURLE_OK) {
        ws_error_set(err, WS_ERR_STORAGE, "could not %s \"%s%s\" in S3 bucket \"%s\": %s", what,
                     s->prefix, key, s->bucket, cu->easy_strerror((CURLcode)cc));
        err->retryable = cc != CURLE_SSL_CACERT && cc != CURLE_PEER_FAILED_VERIFICATION &&
                         cc != CURLE_URL_MALFORMAT && cc != CURLE_UNSUPPORTED_PROTOCOL;
        return err->code;
    }
    body = resp_body(r, &blen);
    ws_s3_error_parse(body, blen, &e);
    if (r->h.status >= 200 && r->h.status < 300 && !e.code[0] && r->h.bad)
        return ws_error_set(err, WS_ERR_STORAGE,
                            "could not %s \"%s%s\" in S3 bucket \"%s\": the answer has an "
                            "invalid %s header",
                            what, s->prefix, key, s->bucket, r->h.bad);
    if (r->h.status >= 200 && r->h.status < 300 && !e.code[0])
        return 0;
    if (r->h.status == 404 && (strcmp(e.code, "NoSuchKey") == 0 || (q->nobody && q->key)))
        return ws_error_set(err, WS_ERR_NOT_FOUND, "object \"%s%s\" not found in S3 bucket \"%s\"",
                            s->prefix, key, s->bucket);
    if (r->h.status == 412 && q->if_none_match)
        return ws_error_set(err, WS_ERR_EXISTS,
                            "object \"%s%s\" already exists in S3 bucket "
                            "\"%s\"",
                            s->prefix, key, s->bucket);
    ws_error_set(err, WS_ERR_STORAGE, "could not %s \"%s%s\" in S3 bucket \"%s\": HTTP %ld%s%s%s%s",
                 what, s->prefix, key, s->bucket, r->h.status, e.code[0] ? " " : "", e.code,
                 e.message[0] ? ": " : "", e.message);
    err->retryable = retryable_status(r->h.status, e.code);
    return err->code;
}

/* Runs q on the storage's own handle to completion. */
static int perform(struct s3_storage *s, const struct s3_req *q, struct s3_resp *r,
                   const char *what, struct ws_error *err)
{
    struct curl_slist *h = NULL;
    struct upload_src src;
    int cc, running;

    r->err = err;
    if (prepare(s, s->easy, q, r, &src, &h, err) != 0)
        return err->code;
    cu->multi_add_handle(s->multi, s->easy);
    cc = CURLE_OK;
    for (;;) {
        CURLMsg *m;
        int left;
        if (cu->multi_perform(s->multi, &running) != CURLM_OK) {
            cc = CURLE_FAILED_INIT;
            break;
        }
        if ((m = cu->multi_info_read(s->multi, &left)) != NULL && m->msg == CURLMSG_DONE &&
            m->easy_handle == s->easy) {
            cc = (int)m->data.result;
            break;
        }
        if (!running)
            break;
        cu->multi_poll(s->multi, NULL, 0, 100, NULL);
    }
    cu->multi_remove_handle(s->multi, s->easy);
    cu->easy_setopt(s->easy, CURLOPT_HTTPHEADER, NULL);
    cu->slist_free_all(h);
    return outcome(s, q, cc, r, what, err);
}

static void resp_free(struct s3_resp *r)
{
    ws_sink_free(r->body);
    r->body = NULL;
}

/* ---- stat, get, remove ---- */

/* HEAD; etag (may be NULL) gets the object's ETag as sent, quotes included. */
static int head(struct s3_storage *s, const char *key, struct ws_storage_stat *out, char *etag,
                size_t etagsz, struct ws_error *err)
{
    struct s3_req q = {"HEAD", key, "", NULL, 0, NULL, NULL, 0, 1, NULL};
    struct s3_resp r = {0};
    long ft = -1;
    int rc = perform(s, &q, &r, "stat", err);

    if (rc == 0 && r.h.content_length < 0) {
        rc = ws_error_set(err, WS_ERR_STORAGE,
                          "S3 gave no Content-Length for \"%s%s\" in bucket \"%s\"", s->prefix, key,
                          s->bucket);
    } else if (rc == 0) {
        cu->easy_getinfo(s->easy, CURLINFO_FILETIME, &ft);
        out->size = (uint64_t)r.h.content_length;
        out->mtime = ft;
        if (etag)
            snprintf(etag, etagsz, "%s", r.h.etag);
    }
    resp_free(&r);
    return rc;
}

static int s3_stat(struct ws_storage *st, const char *key, struct ws_storage_stat *out,
                   struct ws_error *err)
{
    return head((struct s3_storage *)st, key, out, NULL, 0, err);
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
    rc = perform(s, &q, &r, "read", err);
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
    resp_free(&r);
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
    rc = perform(s, &q, &r, "remove", err);
    resp_free(&r);
    return rc;
}

/* A growing text buffer for request bodies. */
struct text {
    char *p;
    size_t len, cap;
    int oom;
};

/* Appends s; with xml set, XML's five special characters escaped. */
static void text_add(struct text *t, const char *s, int xml)
{
    for (; *s && !t->oom; s++) {
        const char *rep = NULL;
        size_t n = 1;
        if (xml) {
            switch (*s) {
            case '&':
                rep = "&amp;";
                break;
            case '<':
                rep = "&lt;";
                break;
            case '>':
                rep = "&gt;";
                break;
            case '"':
                rep = "&quot;";
                break;
            case '\'':
                rep = "&apos;";
                break;
            default:
                break;
            }
        }
        if (rep)
            n = strlen(rep);
        if (t->len + n + 1 > t->cap) {
            size_t nc = t->cap ? t->cap * 2 : 16384;
            char *b = realloc(t->p, nc);
            if (!b) {
                t->oom = 1;
                return;
            }
            t->p = b;
            t->cap = nc;
        }
        memcpy(t->p + t->len, rep ? rep : s, n);
        t->len += n;
        t->p[t->len] = '\0';
    }
}

/*
 * DeleteObjects (POST ?delete) for up to WS_STORAGE_REMOVE_BATCH keys, quiet: the answer lists
 * only the keys S3 could not delete, each with its own <Error>; any of them fails the call with
 * the first such key and code. Missing keys count as deleted, as the contract wants here.
 */
static int s3_remove_many(struct ws_storage *st, const char *const *keys, size_t n,
                          struct ws_error *err)
{
    struct s3_storage *s = (struct s3_storage *)st;
    struct text t = {0};
    char sha[65], md5b64[32], what[600];
    unsigned char md5[16];
    const char *xml;
    size_t len;
    int rc = 0;

    if (n == 0)
        return 0;
    text_add(&t, "<Delete><Quiet>true</Quiet>", 0);
    for (size_t i = 0; i < n; i++) {
        text_add(&t, "<Object><Key>", 0);
        text_add(&t, s->prefix, 1);
        text_add(&t, keys[i], 1);
        text_add(&t, "</Key></Object>", 0);
    }
    text_add(&t, "</Delete>", 0);
    if (t.oom) {
        free(t.p);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    }
    xml = t.p;
    len = t.len;
    ws_sha256_hex(xml, len, sha);
    if (!EVP_Digest(xml, len, md5, NULL, EVP_md5(), NULL)) {
        free(t.p);
        return ws_error_set(err, WS_ERR_INTERNAL, "could not compute an MD5 digest");
    }
    EVP_EncodeBlock((unsigned char *)md5b64, md5, 16);
    {
        struct s3_req q = {"POST", NULL, "delete=", (const uint8_t *)xml, len, sha, NULL,
                           0,      0,    md5b64};
        struct s3_resp r = {0};
        const char *text, *from = NULL;
        char key[WS_S3_KEY_MAX + 1], shown[200];
        struct ws_s3_error e;
        rc = perform(s, &q, &r, "delete a batch of objects under", err);
        text = resp_text(&r);
        if (text && strstr(text, "<DeleteResult") && (from = strstr(text, "<Error>")) != NULL) {
            /* 200, but some keys were not deleted: name the first */
            size_t rest = strlen(from);
            (void)ws_s3_xml_value(from, rest, NULL, "Key", key, sizeof(key));
            ws_s3_printable(key, strlen(key), shown, sizeof(shown));
            ws_s3_error_parse(from, rest, &e);
            rc = ws_error_set(err, WS_ERR_STORAGE,
                              "could not delete \"%s\" in S3 bucket \"%s\" (one of %zu in a "
                              "batch): %s%s%s",
                              shown, s->bucket, n, e.code, e.message[0] ? ": " : "", e.message);
            err->retryable = retryable_status(0, e.code);
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
        resp_free(&r);
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
    struct ws_storage_stat st = {size, 0};
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
        if ((rc = perform(s, &q, r, "list", err)) == 0)
            return 0;
        resp_free(r);
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
        body = resp_body(&r, &blen);
        l.new_keys = 0;
        rc = ws_s3_list_parse(body, blen, on_listed, &l, page, err);
        resp_free(&r);
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

/* ---- put ---- */

struct part {
    CURL *easy;
    struct curl_slist *hdrs;
    struct upload_src src;
    struct s3_resp resp;
    uint8_t *buf;
    size_t len;
    int number, busy; /* busy: in flight, or waiting to be sent again */
    int tries;        /* sends of this part so far */
    int64_t retry_at; /* > 0: not in flight; send again at this time (mono_ms) */
    char sha[65];
};

struct s3_put {
    struct ws_sink base;
    struct s3_storage *s;
    char *key;
    int replace;
    uint8_t *buf; /* filling part */
    size_t fill;
    char upload_id[1024];
    int next_part;
    struct part parts[MAX_PARALLEL_PARTS];
    int nparts;
    char (*etags)[128]; /* by part number - 1 */
    int etag_cap;
    struct ws_error part_err;
    int part_failed;
    EVP_MD_CTX *md5;    /* MD5 of all parts, for verifying a lost completion (with retries) */
    char whole_md5[33]; /* its hex, once the last part is sent */
};

static int put_etag(struct s3_put *p, int number, const char *etag)
{
    if (number > p->etag_cap) {
        int cap = p->etag_cap ? p->etag_cap * 2 : 64;
        char(*e)[128];
        while (cap < number)
            cap *= 2;
        if (!(e = realloc(p->etags, (size_t)cap * sizeof(*e))))
            return -1;
        p->etags = e;
        p->etag_cap = cap;
    }
    snprintf(p->etags[number - 1], 128, "%s", etag);
    return 0;
}

/* Puts part pt (buffer, length, number and hash set) on the wire. */
static int part_send(struct s3_put *p, struct part *pt, struct ws_error *err)
{
    char query[UPLOAD_ID_ENC_MAX + 100], encid[UPLOAD_ID_ENC_MAX];
    struct s3_req q = {"PUT", p->key, query, pt->buf, pt->len, pt->sha, NULL, 0, 0, NULL};

    if (ws_uri_encode(p->upload_id, 0, encid, sizeof(encid)) != 0)
        return ws_error_set(err, WS_ERR_INTERNAL, "UploadId of \"%s\" too long", p->key);
    snprintf(query, sizeof(query), "partNumber=%d&uploadId=%s", pt->number, encid);
    memset(&pt->resp, 0, sizeof(pt->resp));
    pt->resp.err = &p->part_err;
    if (prepare(p->s, pt->easy, &q, &pt->resp, &pt->src, &pt->hdrs, err) != 0)
        return err->code;
    cu->multi_add_handle(p->s->multi, pt->easy);
    pt->busy = 1;
    pt->retry_at = 0;
    pt->tries++;
    return 0;
}

/* A part transfer ended with libcurl's result cc: records its ETag, or schedules it again when it
 * failed transiently and tries are left, or fails the upload. */
static void part_done(struct s3_put *p, struct part *pt, int cc)
{
    struct s3_storage *s = p->s;
    struct s3_req q = {"PUT", p->key, "", NULL, 0, NULL, NULL, 0, 0, NULL};
    struct ws_error e = {0};
    int rc;

    cu->multi_remove_handle(s->multi, pt->easy);
    cu->slist_free_all(pt->hdrs);
    pt->hdrs = NULL;
    pt->busy = 0;
    rc = outcome(s, &q, cc, &pt->resp, "upload a part of", &e);
    if (rc == 0 && !pt->resp.h.etag[0])
        rc = ws_error_set(&e, WS_ERR_STORAGE, "S3 gave no ETag for part %d of \"%s%s\"", pt->number,
                          s->prefix, p->key);
    else if (rc == 0 && put_etag(p, pt->number, pt->resp.h.etag) != 0)
        rc = ws_error_set(&e, WS_ERR_INTERNAL, "out of memory");
    resp_free(&pt->resp);
    if (rc == 0 || p->part_failed)
        return;
    if (rc == WS_ERR_STORAGE && e.retryable && pt->tries < s->base.attempts) {
        ws_log_warning("%s (part %d, attempt %d of %d, retrying)", e.msg, pt->number, pt->tries,
                       s->base.attempts);
        pt->busy = 1;
        pt->retry_at = ws_mono_ms() + ws_storage_retry_delay_ms(pt->tries - 1);
        return;
    }
    p->part_err = e;
    p->part_failed = 1;
}

/* Drives the part transfers; waits for one to finish when wait_one, else for all. */
static int parts_drive(struct s3_put *p, int wait_one, struct ws_error *err)
{
    struct s3_storage *s = p->s;

    for (;;) {
        int running = 0, left, busy = 0;
        int64_t now;
        CURLMsg *m;
        if (cu->multi_perform(s->multi, &running) != CURLM_OK)
            return ws_error_set(err, WS_ERR_STORAGE, "S3 transfer engine failed");
        while ((m = cu->multi_info_read(s->multi, &left)) != NULL) {
            if (m->msg != CURLMSG_DONE)
                continue;
            for (int i = 0; i < p->nparts; i++) {
                struct part *pt = &p->parts[i];
                if (pt->busy && !pt->retry_at && pt->easy == m->easy_handle) {
                    part_done(p, pt, (int)m->data.result);
                    break;
                }
            }
        }
        if (p->part_failed) {
            *err = p->part_err;
            return err->code;
        }
        now = ws_mono_ms();
        for (int i = 0; i < p->nparts; i++) {
            struct part *pt = &p->parts[i];
            if (pt->busy && pt->retry_at && now >= pt->retry_at && part_send(p, pt, err) != 0)
                return err->code;
            busy += pt->busy;
        }
        if (busy == 0 || (wait_one && busy < p->nparts))
            return 0;
        cu->multi_poll(s->multi, NULL, 0, 100, NULL);
    }
}

/* Repeating a start whose answer was lost leaves an empty upload behind, which holds no parts
 * and is never read (a bucket lifecycle rule for incomplete uploads removes it). */
static int start_multipart(struct s3_put *p, struct ws_error *err)
{
    struct s3_req q = {"POST", p->key, "uploads=", NULL, 0, NULL, NULL, 0, 0, NULL};
    char encid[UPLOAD_ID_ENC_MAX];
    int rc;

    for (int attempt = 1;; attempt++) {
        struct s3_resp r = {0};
        const char *body;
        size_t blen;
        rc = perform(p->s, &q, &r, "start a multipart upload of", err);
        body = resp_body(&r, &blen);
        /* Every later request of the upload carries it URL-encoded: it must fit encoded too. */
        if (rc == 0 &&
            (ws_s3_xml_value(body, blen, NULL, "UploadId", p->upload_id, sizeof(p->upload_id)) !=
                 0 ||
             !p->upload_id[0] || ws_uri_encode(p->upload_id, 0, encid, sizeof(encid)) != 0)) {
            p->upload_id[0] = '\0'; /* nothing to abort or complete */
            rc = ws_error_set(err, WS_ERR_STORAGE, "S3 gave no valid UploadId for \"%s\"", p->key);
        }
        resp_free(&r);
        if (!ws_storage_try_again(&p->s->base, rc, attempt, err))
            return rc;
    }
}

/* Sends the filled buffer as the next part (in the background). */
static int send_part(struct s3_put *p, struct ws_error *err)
{
    struct s3_storage *s = p->s;
    struct part *pt = NULL;
    uint8_t *swap;

    if (!p->upload_id[0] && start_multipart(p, err) != 0)
        return err->code;
    for (int i = 0; i < p->nparts && !pt; i++)
        if (!p->parts[i].busy)
            pt = &p->parts[i];
    if (!pt) {
        if (parts_drive(p, 1, err) != 0)
            return err->code;
        for (int i = 0; i < p->nparts && !pt; i++)
            if (!p->parts[i].busy)
                pt = &p->parts[i];
    }
    if (!pt->easy && !(pt->easy = cu->easy_init()))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    if (!pt->buf && !(pt->buf = malloc(s->part_size)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    /* The filled buffer becomes the part's; the part's old buffer is filled next. */
    swap = pt->buf;
    pt->buf = p->buf;
    p->buf = swap;
    pt->len = p->fill;
    p->fill = 0;
    pt->number = ++p->next_part;
    pt->tries = 0;
    ws_sha256_hex(pt->buf, pt->len, pt->sha);
    if (s->base.attempts > 1) {
        if (!p->md5 &&
            (!(p->md5 = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(p->md5, EVP_md5(), NULL)))
            return ws_error_set(err, WS_ERR_INTERNAL, "could not set up MD5");
        EVP_DigestUpdate(p->md5, pt->buf, pt->len);
    }
    if (part_send(p, pt, err) != 0)
        return err->code;
    return parts_drive(p, 1, err) != 0 ? err->code : 0;
}

static int s3p_write(struct ws_sink *sink, const void *buf, size_t len, struct ws_error *err)
{
    struct s3_put *p = (struct s3_put *)sink;
    const uint8_t *in = buf;

    while (len > 0) {
        size_t take = p->s->part_size - p->fill;
        if (take > len)
            take = len;
        memcpy(p->buf + p->fill, in, take);
        p->fill += take;
        in += take;
        len -= take;
        /* Only send a full part once more data shows it is not the last one. */
        if (p->fill == p->s->part_size && len > 0 && send_part(p, err) != 0)
            return err->code;
    }
    return 0;
}

static int exists_check(struct s3_put *p, struct ws_error *err)
{
    struct ws_storage_stat st;
    int rc;

    if (p->replace)
        return 0;
    rc = ws_storage_stat(&p->s->base, p->key, &st, err); /* with its retries */
    if (rc == 0)
        return ws_error_set(err, WS_ERR_EXISTS,
                            "object \"%s%s\" already exists in S3 bucket "
                            "\"%s\"",
                            p->s->prefix, p->key, p->s->bucket);
    return rc == WS_ERR_NOT_FOUND ? 0 : rc;
}

/* etag without its quotes into out (ETags come quoted: "\"abc\""). */
static void unquote(const char *etag, char *out, size_t outsz)
{
    size_t n = 0;

    for (; *etag && n + 1 < outsz; etag++)
        if (*etag != '"')
            out[n++] = *etag;
    out[n] = '\0';
}

/* Whether etag (as S3 sends it, quoted) is the one the object has if it holds what this sink
 * uploaded: the MD5 of a single PUT's body; for multipart AWS's MD5 of the parts' MD5s with
 * "-N", or the MD5 of the whole content, which some S3-compatible servers (s3rver) give. */
static int etag_matches(struct s3_put *p, const char *etag)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    char want[64], got[128], hex[33];
    EVP_MD_CTX *c;
    int ok;

    unquote(etag, got, sizeof(got));
    if (!p->next_part) {
        if (!EVP_Digest(p->buf, p->fill, md, NULL, EVP_md5(), NULL))
            return 0;
        ws_hex(md, 16, want);
        return strcasecmp(want, got) == 0;
    }
    if (p->whole_md5[0] && strcasecmp(p->whole_md5, got) == 0)
        return 1;
    ok = (c = EVP_MD_CTX_new()) != NULL && EVP_DigestInit_ex(c, EVP_md5(), NULL);
    for (int i = 0; ok && i < p->next_part; i++) {
        uint8_t part[16];
        char e[128];
        unquote(p->etags[i], e, sizeof(e));
        ok = ws_unhex(e, part, sizeof(part)) == 0 && EVP_DigestUpdate(c, part, sizeof(part));
    }
    ok = ok && EVP_DigestFinal_ex(c, md, NULL);
    EVP_MD_CTX_free(c);
    if (!ok)
        return 0;
    ws_hex(md, 16, hex);
    snprintf(want, sizeof(want), "%s-%d", hex, p->next_part);
    return strcasecmp(want, got) == 0;
}

/*
 * After a failed PUT or completion, which may have landed all the same (the answer was lost):
 * 1 if the object now holds this upload (verified by its ETag), 0 if it is worth sending again
 * (absent; or, replacing, not ours), else an error: the object exists with other content and
 * may not be replaced, or the HEAD failed.
 */
static int landed(struct s3_put *p, struct ws_error *err)
{
    struct ws_storage_stat st;
    char etag[128] = "";
    int rc = head(p->s, p->key, &st, etag, sizeof(etag), err);

    if (rc == WS_ERR_NOT_FOUND)
        return 0;
    if (rc != 0)
        return -1;
    if (etag_matches(p, etag))
        return 1;
    if (p->replace)
        return 0;
    ws_error_set(err, WS_ERR_EXISTS,
                 "object \"%s%s\" in S3 bucket \"%s\" appeared during a failed upload and could "
                 "not be verified as its content (ETag %s is not the MD5 of what was sent)",
                 p->s->prefix, p->key, p->s->bucket, etag);
    return -1;
}

/* Best effort: an upload that cannot be aborted now is invisible and expires by the bucket's
 * lifecycle rules; nothing of it is ever read. */
static void abort_upload(struct s3_put *p)
{
    char encid[UPLOAD_ID_ENC_MAX], query[UPLOAD_ID_ENC_MAX + 100];
    struct ws_error e2 = {0};
    struct s3_req q = {"DELETE", p->key, query, NULL, 0, NULL, NULL, 0, 0, NULL};
    struct s3_resp r = {0};

    if (!p->upload_id[0] || ws_uri_encode(p->upload_id, 0, encid, sizeof(encid)) != 0)
        return;
    snprintf(query, sizeof(query), "uploadId=%s", encid);
    perform(p->s, &q, &r, "abort the multipart upload of", &e2);
    resp_free(&r);
    p->upload_id[0] = '\0';
}

/* landed() found the object holding this upload's content. For a completion, with `replace` an
 * identical older object matches too, and then the upload is still open: abort it (one that
 * did complete answers NoSuchUpload). */
static int found_by_head(struct s3_put *p, int complete)
{
    if (complete)
        abort_upload(p);
    return 0;
}

/* Sends q (a single PUT, or a completion when complete) until it succeeds or the tries are
 * spent; before a repeat, and once more at the end, landed() checks whether an earlier try
 * took effect after all. A HEAD that fails leaves the request's own error in place and the
 * request is sent again. */
static int commit(struct s3_put *p, const struct s3_req *q, int complete, struct ws_error *err)
{
    struct s3_storage *s = p->s;
    const char *what = complete ? "complete the multipart upload of" : "write";
    int rc, attempt;

    for (attempt = 1;; attempt++) {
        struct s3_resp r = {0};
        struct ws_error e2 = {0};
        int l;
        rc = perform(s, q, &r, what, err);
        /* S3 may answer 200 and still report an error in the body (outcome() checks <Code>). */
        if (rc == 0 && complete &&
            (!resp_text(&r) || !strstr(resp_text(&r), "CompleteMultipartUploadResult"))) {
            rc = ws_error_set(err, WS_ERR_STORAGE,
                              "S3 did not confirm the multipart upload of \"%s%s\" in bucket "
                              "\"%s\"",
                              s->prefix, p->key, s->bucket);
            err->retryable = 1;
        }
        resp_free(&r);
        if (rc == 0 || !ws_storage_try_again(&s->base, rc, attempt, err))
            break;
        if ((l = landed(p, &e2)) > 0)
            return found_by_head(p, complete);
        if (l < 0 && e2.code == WS_ERR_EXISTS) {
            *err = e2;
            return err->code;
        }
    }
    if (rc != 0 && attempt > 1) {
        /* A repeat may fail only because an earlier try succeeded (a completed upload id is
         * gone; a PUT that landed after the last HEAD meets If-None-Match): the object tells. */
        struct ws_error e2 = {0};
        if (landed(p, &e2) > 0)
            return found_by_head(p, complete);
    }
    return rc;
}

static int s3p_finish(struct ws_sink *sink, struct ws_error *err)
{
    struct s3_put *p = (struct s3_put *)sink;
    char sha[65], encid[UPLOAD_ID_ENC_MAX], query[UPLOAD_ID_ENC_MAX + 100];
    char *xml = NULL;
    size_t xlen = 0, xcap = 0;
    int rc;

    if (!p->upload_id[0]) {
        struct s3_req q = {"PUT", p->key, "", p->buf, p->fill, sha, NULL, !p->replace, 0, NULL};
        if ((rc = exists_check(p, err)) != 0)
            return rc;
        ws_sha256_hex(p->buf, p->fill, sha);
        return commit(p, &q, 0, err);
    }
    if (p->fill > 0 && send_part(p, err) != 0)
        return err->code;
    if (parts_drive(p, 0, err) != 0)
        return err->code;
    if (p->md5) {
        unsigned char md[EVP_MAX_MD_SIZE];
        if (EVP_DigestFinal_ex(p->md5, md, NULL))
            ws_hex(md, 16, p->whole_md5);
    }
    if ((rc = exists_check(p, err)) != 0)
        return rc;
    for (int i = 0; i <= p->next_part; i++) {
        char item[256];
        int n = i == 0 ? snprintf(item, sizeof(item), "<CompleteMultipartUpload>")
                       : snprintf(item, sizeof(item),
                                  "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>", i,
                                  p->etags[i - 1]);
        if (xlen + (size_t)n + 64 > xcap) {
            char *x = realloc(xml, xcap = (xcap ? xcap * 2 : 8192) + (size_t)n + 64);
            if (!x) {
                free(xml);
                return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
            }
            xml = x;
        }
        memcpy(xml + xlen, item, (size_t)n);
        xlen += (size_t)n;
    }
    memcpy(xml + xlen, "</CompleteMultipartUpload>", 26);
    xlen += 26;
    xml[xlen] = '\0';
    ws_sha256_hex(xml, xlen, sha);
    if (ws_uri_encode(p->upload_id, 0, encid, sizeof(encid)) != 0) {
        free(xml);
        return ws_error_set(err, WS_ERR_INTERNAL, "UploadId of \"%s\" too long", p->key);
    }
    snprintf(query, sizeof(query), "uploadId=%s", encid);
    {
        struct s3_req q = {"POST",      p->key, query, (uint8_t *)xml, xlen, sha, NULL,
                           !p->replace, 0,      NULL};
        rc = commit(p, &q, 1, err);
    }
    free(xml);
    if (rc == 0)
        p->upload_id[0] = '\0'; /* completed or aborted: nothing to abort */
    return rc;
}

static void s3p_abort(struct ws_sink *sink)
{
    struct s3_put *p = (struct s3_put *)sink;
    struct s3_storage *s = p->s;

    for (int i = 0; i < p->nparts; i++) {
        if (p->parts[i].busy) {
            cu->multi_remove_handle(s->multi, p->parts[i].easy);
            p->parts[i].busy = 0;
        }
    }
    abort_upload(p);
}

static void s3p_destroy(struct ws_sink *sink)
{
    struct s3_put *p = (struct s3_put *)sink;
    for (int i = 0; i < p->nparts; i++) {
        cu->slist_free_all(p->parts[i].hdrs);
        if (p->parts[i].easy)
            cu->easy_cleanup(p->parts[i].easy);
        free(p->parts[i].buf);
        resp_free(&p->parts[i].resp);
    }
    EVP_MD_CTX_free(p->md5);
    free(p->etags);
    free(p->buf);
    free(p->key);
    free(p);
}

static const struct ws_sink_ops s3_put_ops = {"s3-put", s3p_write, s3p_finish, s3p_abort,
                                              s3p_destroy};

static int s3_open_put(struct ws_storage *st, const char *key, int flags, struct ws_sink **out,
                       struct ws_error *err)
{
    struct s3_storage *s = (struct s3_storage *)st;
    struct s3_put *p = calloc(1, sizeof(*p));

    if (!p || !(p->key = strdup(key)) || !(p->buf = malloc(s->part_size))) {
        if (p)
            free(p->key);
        free(p);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    }
    p->base.ops = &s3_put_ops;
    p->s = s;
    p->replace = (flags & WS_PUT_REPLACE) != 0;
    p->nparts = s->parallel;
    *out = &p->base;
    return 0;
}

static void s3_close(struct ws_storage *st)
{
    struct s3_storage *s = (struct s3_storage *)st;
    if (s->easy)
        cu->easy_cleanup(s->easy);
    if (s->multi)
        cu->multi_cleanup(s->multi);
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
static const struct ws_storage_ops s3_ops = {"s3",    s3_stat,   s3_open_put, s3_get,
                                             s3_list, s3_remove, s3_close};

static char *dup_or_null(const char *v)
{
    return v ? strdup(v) : NULL;
}

int ws_storage_s3_open(const struct ws_s3_params *p, struct ws_storage **out, struct ws_error *err)
{
    struct s3_storage *s;

    if (ws_curl_load(&cu, err) != 0)
        return err->code;
    if (!(s = calloc(1, sizeof(*s))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    s->base.ops = &s3_ops;
    s->base.hk = &s3_hk;
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
    s->parallel = p->parallel < 1                    ? 1
                  : p->parallel > MAX_PARALLEL_PARTS ? MAX_PARALLEL_PARTS
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
