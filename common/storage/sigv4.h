/*
 * storage/sigv4.h - AWS Signature Version 4 for S3 requests, on OpenSSL's HMAC-SHA256.
 *
 * Three stages, each its own function (and each checked against AWS's published examples):
 * canonical request -> string to sign -> signature; ws_sigv4_sign() does all three and produces
 * the Authorization header's value. Secrets are only read; nothing here logs.
 *
 * Signed headers are host, range (when given), x-amz-content-sha256, x-amz-date and, when a
 * session token is given, x-amz-security-token: callers send exactly these with the request.
 * With query_auth (a presigned URL, ws_sigv4_presign) host is the only signed header, the
 * authentication goes into the query and the payload is UNSIGNED-PAYLOAD; the canonical request
 * is the same function's.
 * The functions that fill a buffer return 0, or -1 when the result does not fit (or OpenSSL
 * fails); ws_sigv4_sign() says WS_ERR_INTERNAL instead.
 */
#ifndef WS_SIGV4_H
#define WS_SIGV4_H

#include <stddef.h>

#include "base/error.h"

struct ws_sigv4_request {
    const char *method;        /* "GET", "PUT", ... */
    const char *path;          /* already URI-encoded absolute path, e.g. "/bucket/a%20b" */
    const char *query;         /* raw "k=v&k2=v2" with encoded values, or "" (sorted here) */
    const char *host;          /* "host" or "host:port" as sent */
    const char *payload_hash;  /* hex SHA-256 of the body, or "UNSIGNED-PAYLOAD" */
    const char *amz_date;      /* "20130524T000000Z" */
    const char *session_token; /* NULL if none */
    const char *range;         /* "bytes=0-9" to sign a Range header, NULL if none */
    int query_auth;            /* presigned: host the only signed header (ws_sigv4_presign) */
};

struct ws_sigv4_creds {
    const char *access_key_id;
    const char *secret_access_key;
    const char *region;
    const char *service; /* "s3" */
};

/* out receives the canonical request (sorted query, canonical headers). */
int ws_sigv4_canonical_request(const struct ws_sigv4_request *r, char *out, size_t outsz);
int ws_sigv4_string_to_sign(const struct ws_sigv4_request *r, const struct ws_sigv4_creds *c,
                            const char *canonical, char *out, size_t outsz);
/* 64 hex digits + NUL. */
int ws_sigv4_signature(const struct ws_sigv4_creds *c, const char *date8, const char *sts,
                       char out[65]);
/* "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=..." */
int ws_sigv4_sign(const struct ws_sigv4_request *r, const struct ws_sigv4_creds *c, char *auth,
                  size_t authsz, struct ws_error *err);

/* Query-string authentication (a presigned URL) for r (method, path, host, amz_date; query and
 * session_token as for a request; payload_hash and range are ignored): the whole query to append
 * after '?' (r->query's parameters, X-Amz-Algorithm, -Credential, -Date, -Expires, -SignedHeaders,
 * -Security-Token when a session token is given, and X-Amz-Signature last). expires: seconds,
 * 1 to 604800 (AWS's limit, 7 days), else WS_ERR_USAGE; WS_ERR_INTERNAL when it does not fit. */
int ws_sigv4_presign(const struct ws_sigv4_request *r, const struct ws_sigv4_creds *c, long expires,
                     char *query, size_t querysz, struct ws_error *err);
#define WS_SIGV4_MAX_EXPIRES 604800L

/* Percent-encodes per RFC 3986 (unreserved kept); '/' kept when keep_slash. 0, or -1 when the
 * result does not fit outsz (out then holds what fitted, NUL-terminated). */
int ws_uri_encode(const char *in, int keep_slash, char *out, size_t outsz);
/* Lower-case hex SHA-256 of data. */
void ws_sha256_hex(const void *data, size_t len, char out[65]);

#endif
