/*
 * storage/s3_request.c - one signed S3 request over libcurl: URL and Host for a key in either
 * URI style, the headers (x-amz-content-sha256 always: the body's hash is signed), the SigV4
 * signature (sigv4.c), a deadline for lack of progress (`timeout`), the body streamed into the
 * caller's sink or collected (bounded), and the answer judged (s3_parse.c reads it, bounded by
 * its length) into 0 or an error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "storage/s3_int.h"
#include "storage/sigv4.h"

#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define MAX_ERROR_BODY 16384

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

const char *ws_s3_resp_text(struct s3_resp *r)
{
    return r->body ? ws_buffer_sink_text(r->body) : NULL;
}

const char *ws_s3_resp_body(const struct s3_resp *r, size_t *len)
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

static void amz_date(time_t t, char out[17])
{
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

int ws_s3_presign_get(struct ws_storage *st, const char *key, int64_t now, long expires, char *url,
                      size_t urlsz, struct ws_error *err)
{
    struct s3_storage *s = (struct s3_storage *)st;
    char base[8192], path[4096], host[512], date[17], query[8192];
    struct ws_sigv4_request r = {"GET", path,     "",   host, "UNSIGNED-PAYLOAD",
                                 date,  s->token, NULL, 1};
    struct ws_sigv4_creds c = {s->akid, s->secret, s->region, "s3"};
    int rc, n;

    if (!s->akid || !s->secret)
        return ws_error_set(err, WS_ERR_CONFIG,
                            "a download link is signed with the repository's S3 credentials: set "
                            "s3_access_key_id and s3_secret_access_key");
    if (locate(s, key, base, sizeof(base), path, sizeof(path), host, sizeof(host)) != 0)
        return ws_error_set(err, WS_ERR_INTERNAL, "S3 key too long: %s", key);
    amz_date((time_t)now, date);
    if ((rc = ws_sigv4_presign(&r, &c, expires, query, sizeof(query), err)) != 0)
        return rc;
    n = snprintf(url, urlsz, "%s?%s", base, query);
    memset(query, 0, sizeof(query));
    if (n < 0 || (size_t)n >= urlsz)
        return ws_error_set(err, WS_ERR_INTERNAL, "download link for %s too long", key);
    return 0;
}

/* The options of every request on easy handle e: where, how long, TLS, and where the answer
 * goes. */
static void transfer_opts(struct s3_storage *s, CURL *e, const char *url, struct s3_resp *resp)
{
    const struct ws_curl *cu = s->cu;

    cu->easy_reset(e);
    cu->easy_setopt(e, CURLOPT_URL, url);
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
}

/* Appends the header "name: value" (just "name:" for a NULL value, which keeps libcurl from
 * sending one of its own) to *h; out of memory frees the list and leaves *h NULL for good. */
static void add_header(const struct ws_curl *cu, struct curl_slist **h, int *oom, const char *name,
                       const char *value)
{
    char line[2200];
    struct curl_slist *n;

    if (*oom)
        return;
    snprintf(line, sizeof(line), "%s:%s%s", name, value ? " " : "", value ? value : "");
    if (!(n = cu->slist_append(*h, line))) {
        cu->slist_free_all(*h);
        *oom = 1;
    }
    *h = n;
    memset(line, 0, sizeof(line)); /* it may hold the signature */
}

/* The headers of q, signed when the storage has credentials; *out NULL if out of memory. */
static int request_headers(struct s3_storage *s, const struct s3_req *q, const char *host,
                           const char *path, const char *sha, struct curl_slist **out,
                           struct ws_error *err)
{
    const struct ws_curl *cu = s->cu;
    struct curl_slist *h = NULL;
    char date[17], auth[1024];
    int oom = 0;

    amz_date(time(NULL), date);
    add_header(cu, &h, &oom, "Host", host);
    add_header(cu, &h, &oom, "x-amz-date", date);
    add_header(cu, &h, &oom, "x-amz-content-sha256", sha);
    add_header(cu, &h, &oom, "Expect", NULL);
    if (q->range)
        add_header(cu, &h, &oom, "Range", q->range);
    if (q->if_none_match)
        add_header(cu, &h, &oom, "If-None-Match", "*");
    if (q->content_md5)
        add_header(cu, &h, &oom, "Content-MD5", q->content_md5);
    if (s->token)
        add_header(cu, &h, &oom, "x-amz-security-token", s->token);
    if (s->akid && s->secret) {
        struct ws_sigv4_request r = {
            q->method, path, q->query ? q->query : "", host, sha, date, s->token, q->range, 0};
        struct ws_sigv4_creds c = {s->akid, s->secret, s->region, "s3"};
        if (ws_sigv4_sign(&r, &c, auth, sizeof(auth), err) != 0) {
            cu->slist_free_all(h);
            return err->code;
        }
        add_header(cu, &h, &oom, "Authorization", auth);
        memset(auth, 0, sizeof(auth));
    }
    *out = h;
    return 0;
}

/* The method of q, and its body from memory (src). */
static void request_body(const struct ws_curl *cu, CURL *e, const struct s3_req *q,
                         struct upload_src *src)
{
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
}

int ws_s3_prepare(struct s3_storage *s, CURL *e, const struct s3_req *q, struct s3_resp *resp,
                  struct upload_src *src, struct curl_slist **hdrs, struct ws_error *err)
{
    char url[8192], path[4096], host[512], fullurl[8300];
    const char *sha = q->body ? q->body_sha : EMPTY_SHA256;
    struct curl_slist *h = NULL;

    if (locate(s, q->key, url, sizeof(url), path, sizeof(path), host, sizeof(host)) != 0)
        return ws_error_set(err, WS_ERR_STORAGE, "S3 key too long: \"%s\"", q->key);
    snprintf(fullurl, sizeof(fullurl), "%s%s%s", url, q->query && *q->query ? "?" : "",
             q->query ? q->query : "");
    transfer_opts(s, e, fullurl, resp);
    if (request_headers(s, q, host, path, sha, &h, err) != 0)
        return err->code;
    if (!h)
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    s->cu->easy_setopt(e, CURLOPT_HTTPHEADER, h);
    request_body(s->cu, e, q, src);
    *hdrs = h;
    return 0;
}

int ws_s3_retryable_status(long status, const char *code)
{
    /* InternalError also comes in a 200 answer (CompleteMultipartUpload, DeleteObjects). */
    return status >= 500 || status == 429 || (code && strcmp(code, "SlowDown") == 0) ||
           (code && strcmp(code, "RequestTimeout") == 0) ||
           (code && strcmp(code, "InternalError") == 0);
}

int ws_s3_outcome(struct s3_storage *s, const struct s3_req *q, int cc, struct s3_resp *r,
                  const char *what, struct ws_error *err)
{
    struct ws_s3_error e;
    const char *key = q->key ? q->key : "", *body;
    size_t blen;

    if (r->sink_failed)
        return err->code;
    if (cc != CURLE_OK) {
        ws_error_set(err, WS_ERR_STORAGE, "could not %s \"%s%s\" in S3 bucket \"%s\": %s", what,
                     s->prefix, key, s->bucket, s->cu->easy_strerror((CURLcode)cc));
        err->retryable = cc != CURLE_SSL_CACERT && cc != CURLE_PEER_FAILED_VERIFICATION &&
                         cc != CURLE_URL_MALFORMAT && cc != CURLE_UNSUPPORTED_PROTOCOL;
        return err->code;
    }
    body = ws_s3_resp_body(r, &blen);
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
    err->retryable = ws_s3_retryable_status(r->h.status, e.code);
    return err->code;
}

int ws_s3_perform(struct s3_storage *s, const struct s3_req *q, struct s3_resp *r, const char *what,
                  struct ws_error *err)
{
    const struct ws_curl *cu = s->cu;
    struct curl_slist *h = NULL;
    struct upload_src src;
    int cc, running;

    r->err = err;
    if (ws_s3_prepare(s, s->easy, q, r, &src, &h, err) != 0)
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
    return ws_s3_outcome(s, q, cc, r, what, err);
}

void ws_s3_resp_free(struct s3_resp *r)
{
    ws_sink_free(r->body);
    r->body = NULL;
}

/* ---- request bodies ---- */

void ws_s3_text_add(struct ws_s3_text *t, const char *s, int xml)
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
