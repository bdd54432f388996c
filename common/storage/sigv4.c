#include "storage/sigv4.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "io/key.h"

void ws_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int n = 0;
    EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
    ws_hex(md, 32, out);
}

int ws_uri_encode(const char *in, int keep_slash, char *out, size_t outsz)
{
    static const char hexd[] = "0123456789ABCDEF";
    size_t o = 0;

    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        int plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' || *p == '~' ||
                    (keep_slash && *p == '/');
        if (o + (plain ? 1 : 3) >= outsz) {
            if (outsz > 0)
                out[o] = '\0'; /* what fitted, terminated: never an unterminated buffer */
            return -1;
        }
        if (plain) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hexd[*p >> 4];
            out[o++] = hexd[*p & 15];
        }
    }
    out[o] = '\0';
    return 0;
}

static int cmp_param(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorts "k=v&k2=v2" by parameter (values are already encoded); a bare "k" becomes "k=". */
static int canonical_query(const char *q, char *out, size_t outsz)
{
    char *copy = strdup(q ? q : ""), *save = NULL, *tok;
    const char *parts[64];
    size_t n = 0, o = 0;

    if (!copy)
        return -1;
    for (tok = strtok_r(copy, "&", &save); tok && n < 64; tok = strtok_r(NULL, "&", &save))
        parts[n++] = tok;
    qsort(parts, n, sizeof(parts[0]), cmp_param);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        int w = snprintf(out + o, outsz - o, "%s%s%s", i ? "&" : "", parts[i],
                         strchr(parts[i], '=') ? "" : "=");
        if (w < 0 || (size_t)w >= outsz - o) {
            free(copy);
            return -1;
        }
        o += (size_t)w;
    }
    free(copy);
    return 0;
}

static const char *signed_headers(const struct ws_sigv4_request *r)
{
    if (r->query_auth)
        return "host";
    if (r->range)
        return r->session_token ? "host;range;x-amz-content-sha256;x-amz-date;x-amz-security-token"
                                : "host;range;x-amz-content-sha256;x-amz-date";
    return r->session_token ? "host;x-amz-content-sha256;x-amz-date;x-amz-security-token"
                            : "host;x-amz-content-sha256;x-amz-date";
}

int ws_sigv4_canonical_request(const struct ws_sigv4_request *r, char *out, size_t outsz)
{
    char query[4096];
    int n;

    if (canonical_query(r->query, query, sizeof(query)) != 0)
        return -1;
    if (r->query_auth)
        n = snprintf(out, outsz, "%s\n%s\n%s\nhost:%s\n\n%s\nUNSIGNED-PAYLOAD", r->method, r->path,
                     query, r->host, signed_headers(r));
    else
        n = snprintf(out, outsz,
                     "%s\n%s\n%s\n"
                     "host:%s\n%s%s%sx-amz-content-sha256:%s\nx-amz-date:%s\n%s%s%s"
                     "\n%s\n%s",
                     r->method, r->path, query, r->host, r->range ? "range:" : "",
                     r->range ? r->range : "", r->range ? "\n" : "", r->payload_hash, r->amz_date,
                     r->session_token ? "x-amz-security-token:" : "",
                     r->session_token ? r->session_token : "", r->session_token ? "\n" : "",
                     signed_headers(r), r->payload_hash);
    return n > 0 && (size_t)n < outsz ? 0 : -1;
}

int ws_sigv4_string_to_sign(const struct ws_sigv4_request *r, const struct ws_sigv4_creds *c,
                            const char *canonical, char *out, size_t outsz)
{
    char hash[65];
    int n;

    ws_sha256_hex(canonical, strlen(canonical), hash);
    n = snprintf(out, outsz, "AWS4-HMAC-SHA256\n%s\n%.8s/%s/%s/aws4_request\n%s", r->amz_date,
                 r->amz_date, c->region, c->service, hash);
    return n > 0 && (size_t)n < outsz ? 0 : -1;
}

static int hmac(const void *key, size_t keylen, const char *msg, unsigned char out[32])
{
    unsigned int n = 0;
    return HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg, strlen(msg), out, &n) !=
                       NULL &&
                   n == 32
               ? 0
               : -1;
}

int ws_sigv4_signature(const struct ws_sigv4_creds *c, const char *date8, const char *sts,
                       char out[65])
{
    unsigned char k1[32], k2[32], k3[32], k4[32], sig[32];
    char secret[256], date[9];
    int rc;

    if ((size_t)snprintf(secret, sizeof(secret), "AWS4%s", c->secret_access_key) >= sizeof(secret))
        return -1;
    snprintf(date, sizeof(date), "%.8s", date8);
    rc = hmac(secret, strlen(secret), date, k1) || hmac(k1, 32, c->region, k2) ||
         hmac(k2, 32, c->service, k3) || hmac(k3, 32, "aws4_request", k4) || hmac(k4, 32, sts, sig);
    OPENSSL_cleanse(secret, sizeof(secret));
    OPENSSL_cleanse(k1, 32), OPENSSL_cleanse(k2, 32), OPENSSL_cleanse(k3, 32);
    OPENSSL_cleanse(k4, 32);
    if (rc)
        return -1;
    ws_hex(sig, 32, out);
    return 0;
}

int ws_sigv4_sign(const struct ws_sigv4_request *r, const struct ws_sigv4_creds *c, char *auth,
                  size_t authsz, struct ws_error *err)
{
    char canonical[8192], sts[512], sig[65];
    int n;

    if (ws_sigv4_canonical_request(r, canonical, sizeof(canonical)) != 0 ||
        ws_sigv4_string_to_sign(r, c, canonical, sts, sizeof(sts)) != 0 ||
        ws_sigv4_signature(c, r->amz_date, sts, sig) != 0)
        return ws_error_set(err, WS_ERR_INTERNAL, "could not sign the S3 request");
    n = snprintf(auth, authsz,
                 "AWS4-HMAC-SHA256 Credential=%s/%.8s/%s/%s/aws4_request, SignedHeaders=%s, "
                 "Signature=%s",
                 c->access_key_id, r->amz_date, c->region, c->service, signed_headers(r), sig);
    if (n < 0 || (size_t)n >= authsz)
        return ws_error_set(err, WS_ERR_INTERNAL, "S3 authorization header too long");
    return 0;
}

/* The query of r plus the authentication parameters but the signature (r->query_auth). */
static int presign_query(const struct ws_sigv4_request *r, const struct ws_sigv4_creds *c,
                         long expires, char *out, size_t outsz)
{
    char cred[512], cred_enc[1024], token_enc[4096] = "";
    int n;

    if ((size_t)snprintf(cred, sizeof(cred), "%s/%.8s/%s/%s/aws4_request", c->access_key_id,
                         r->amz_date, c->region, c->service) >= sizeof(cred) ||
        ws_uri_encode(cred, 0, cred_enc, sizeof(cred_enc)) != 0 ||
        (r->session_token && ws_uri_encode(r->session_token, 0, token_enc, sizeof(token_enc)) != 0))
        return -1;
    n = snprintf(out, outsz,
                 "%s%sX-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=%s&X-Amz-Date=%s&"
                 "X-Amz-Expires=%ld&X-Amz-SignedHeaders=host%s%s",
                 r->query ? r->query : "", r->query && *r->query ? "&" : "", cred_enc, r->amz_date,
                 expires, r->session_token ? "&X-Amz-Security-Token=" : "", token_enc);
    return n > 0 && (size_t)n < outsz ? 0 : -1;
}

int ws_sigv4_presign(const struct ws_sigv4_request *r, const struct ws_sigv4_creds *c, long expires,
                     char *query, size_t querysz, struct ws_error *err)
{
    struct ws_sigv4_request q = *r;
    char params[6144], canonical[8192], sts[512], sig[65];
    int n;

    if (expires < 1 || expires > WS_SIGV4_MAX_EXPIRES)
        return ws_error_set(err, WS_ERR_USAGE,
                            "a presigned URL is valid for 1 second to 7 days (AWS's limit), not "
                            "%ld seconds",
                            expires);
    q.query_auth = 1;
    q.range = NULL;
    if (presign_query(r, c, expires, params, sizeof(params)) != 0)
        return ws_error_set(err, WS_ERR_INTERNAL, "presigned URL too long");
    q.query = params;
    if (ws_sigv4_canonical_request(&q, canonical, sizeof(canonical)) != 0 ||
        ws_sigv4_string_to_sign(&q, c, canonical, sts, sizeof(sts)) != 0 ||
        ws_sigv4_signature(c, q.amz_date, sts, sig) != 0)
        return ws_error_set(err, WS_ERR_INTERNAL, "could not sign the presigned URL");
    n = snprintf(query, querysz, "%s&X-Amz-Signature=%s", params, sig);
    if (n < 0 || (size_t)n >= querysz)
        return ws_error_set(err, WS_ERR_INTERNAL, "presigned URL too long");
    return 0;
}
