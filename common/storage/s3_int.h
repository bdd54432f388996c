/*
 * storage/s3_int.h - what the units of the s3 driver share: s3.c (open, close, stat, get,
 * remove, list), s3_request.c (one signed request, and the text of request bodies) and
 * s3_put.c (the upload sink). Not for other modules: they use storage.h and params.h.
 *
 * Every function here runs on a handle ws_storage_s3_open() made, whose `cu` is the loaded
 * libcurl. Errors name bucket, key, HTTP status and S3 error code, never a credential or a
 * signature, and are flagged retryable for what a later try may cure (transport failures, 5xx,
 * 429, SlowDown, RequestTimeout, InternalError, a body cut short).
 */
#ifndef WS_S3_INT_H
#define WS_S3_INT_H

#include <stddef.h>
#include <stdint.h>

#include "storage/curl_api.h"
#include "storage/s3_parse.h"
#include "storage/storage.h"

#define WS_S3_MAX_PARALLEL_PARTS 16
#define WS_S3_UPLOAD_ID_ENC_MAX 1100 /* an UploadId URL-encoded, with its NUL (AWS's: ~100) */

struct s3_storage {
    struct ws_storage base;
    const struct ws_curl *cu;
    CURLM *multi;
    CURL *easy;   /* for every request but the parts of an upload */
    char *scheme; /* "https" or "http" */
    char *host;   /* endpoint host[:port] */
    char *bucket;
    char *prefix; /* "" or "dir/" */
    int path_style;
    char *region, *akid, *secret, *token, *ca_file; /* secret and token wiped on close */
    int verify_tls;
    long timeout;
    size_t part_size;
    int parallel; /* 1 to WS_S3_MAX_PARALLEL_PARTS */
};

/* One request. */
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

/* Its answer. Zero-initialise (dest set for a GET into a sink); ws_s3_resp_free() after. */
struct s3_resp {
    struct ws_s3_headers h; /* the answer's status line and the headers we use */
    struct ws_sink *dest;   /* 2xx body goes here when set */
    struct ws_error *err;
    int sink_failed;
    uint64_t got;
    struct ws_sink *body; /* otherwise (and for errors) collected here; NULL until data comes */
};

/* A body in memory that libcurl reads (and rewinds, to resend on a fresh connection). */
struct upload_src {
    const uint8_t *start, *p;
    size_t len, left;
};

/* Runs q on the storage's own handle to completion; 0 for a 2xx answer without an error body,
 * else the error (WS_ERR_NOT_FOUND for NoSuchKey, or a HEAD of a key; WS_ERR_EXISTS for a 412 to
 * If-None-Match). what ("read", "list", ...) goes into the message. */
int ws_s3_perform(struct s3_storage *s, const struct s3_req *q, struct s3_resp *r, const char *what,
                  struct ws_error *err);
/* The two halves of ws_s3_perform(), for transfers driven elsewhere (an upload's parts):
 * prepare sets up easy handle e (the headers, in *hdrs, are the caller's to free once the
 * transfer is off the handle; src must live as long); outcome judges libcurl's result cc. */
int ws_s3_prepare(struct s3_storage *s, CURL *e, const struct s3_req *q, struct s3_resp *resp,
                  struct upload_src *src, struct curl_slist **hdrs, struct ws_error *err);
int ws_s3_outcome(struct s3_storage *s, const struct s3_req *q, int cc, struct s3_resp *r,
                  const char *what, struct ws_error *err);
/* Whether an answer's status or S3 error code says a later try may succeed. */
int ws_s3_retryable_status(long status, const char *code);
/* The collected body (NULL, and 0, if there was none); as text, NUL-terminated. */
const char *ws_s3_resp_body(const struct s3_resp *r, size_t *len);
const char *ws_s3_resp_text(struct s3_resp *r);
void ws_s3_resp_free(struct s3_resp *r);

/* A growing text for request bodies: zero-initialise, append, free(t.p). On out of memory it
 * stops growing and sets oom. */
struct ws_s3_text {
    char *p;
    size_t len, cap;
    int oom;
};
/* Appends s; with xml set, XML's five special characters escaped. */
void ws_s3_text_add(struct ws_s3_text *t, const char *s, int xml);

/* HEAD of key (s3.c); etag (may be NULL) gets the object's ETag as sent, quotes included. */
int ws_s3_head(struct s3_storage *s, const char *key, struct ws_storage_stat *out, char *etag,
               size_t etagsz, struct ws_error *err);

/* The storage's presign_get (s3_request.c): the key's URL (either addressing style) with a
 * query-string signature (storage/sigv4.h); WS_ERR_CONFIG without credentials. */
int ws_s3_presign_get(struct ws_storage *st, const char *key, int64_t now, long expires, char *url,
                      size_t urlsz, struct ws_error *err);

/* The storage's open_put (s3_put.c). */
int ws_s3_open_put(struct ws_storage *st, const char *key, int flags, struct ws_sink **out,
                   struct ws_error *err);

#endif
