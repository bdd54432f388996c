/* known_hosts.c - OpenSSH's known_hosts matching (see known_hosts.h). */
#include "storage/known_hosts.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#define NAME_MAX_LEN 1100 /* "[host]:port" of the longest host we look up */
#define BLOB_MAX 16384    /* decoded key blob (an RSA key of 16384 bits is ~2 KB) */
#define SHA1_LEN 20
#define PATTERN_MAX 1023 /* match.c's match_pattern_list() takes shorter patterns only */

enum marker { MARK_NONE, MARK_CA, MARK_REVOKED };

/* One line, as pointers into the text. */
struct kh_line {
    unsigned int no;
    enum marker marker;
    const char *hosts, *type, *b64;
    size_t hostslen, typelen, b64len;
};

/* ---- tokens ---- */

static int blank(char c)
{
    return c == ' ' || c == '\t';
}

/* The next blank-separated word of [*p, end): 0 with *w, *wl set and *p after it, -1 if none. */
static int word(const char **p, const char *end, const char **w, size_t *wl)
{
    while (*p < end && blank(**p))
        (*p)++;
    if (*p >= end)
        return -1;
    *w = *p;
    while (*p < end && !blank(**p))
        (*p)++;
    *wl = (size_t)(*p - *w);
    return 0;
}

/*
 * Parses the line [p, end) into l: 0 if it has a marker (optional), hosts, a key type and a
 * key; -1 for blank lines, comments and lines ssh would skip (an unknown marker, a missing
 * field, the old RSA1 format "bits exponent modulus").
 */
static int parse_line(const char *p, const char *end, struct kh_line *l)
{
    const char *w;
    size_t wl;

    if (word(&p, end, &w, &wl) != 0 || *w == '#')
        return -1;
    l->marker = MARK_NONE;
    if (*w == '@') {
        if (wl == 15 && memcmp(w, "@cert-authority", 15) == 0)
            l->marker = MARK_CA;
        else if (wl == 8 && memcmp(w, "@revoked", 8) == 0)
            l->marker = MARK_REVOKED;
        else
            return -1;
        if (word(&p, end, &w, &wl) != 0)
            return -1;
    }
    l->hosts = w;
    l->hostslen = wl;
    if (word(&p, end, &l->type, &l->typelen) != 0 || word(&p, end, &l->b64, &l->b64len) != 0 ||
        isdigit((unsigned char)l->type[0]))
        return -1;
    return 0;
}

/* ---- base64 ---- */

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Strict base64 (padding optional, nothing else): the decoded length, or -1. */
static long b64_decode(const char *in, size_t len, uint8_t *out, size_t outsz)
{
    uint32_t acc = 0;
    size_t o = 0;
    int bits = 0;

    while (len > 0 && in[len - 1] == '=')
        len--;
    if (len % 4 == 1)
        return -1;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value(in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= outsz)
                return -1;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    return (long)o;
}

/* The key type named inside a wire-format blob (a uint32 length, then the name), or -1. */
static int blob_type(const uint8_t *blob, size_t len, const uint8_t **type, size_t *typelen)
{
    uint32_t n;

    if (len < 4)
        return -1;
    n = (uint32_t)blob[0] << 24 | (uint32_t)blob[1] << 16 | (uint32_t)blob[2] << 8 | blob[3];
    if (n == 0 || n > len - 4)
        return -1;
    *type = blob + 4;
    *typelen = n;
    return 0;
}

/* Whether blob[0..len) is what every SSH public key is: length-prefixed fields (the type name,
 * then at least one more) that fill it exactly. */
static int blob_ok(const uint8_t *blob, size_t len)
{
    size_t pos = 0, fields = 0;

    while (pos < len) {
        uint32_t n;
        if (len - pos < 4)
            return 0;
        n = (uint32_t)blob[pos] << 24 | (uint32_t)blob[pos + 1] << 16 |
            (uint32_t)blob[pos + 2] << 8 | blob[pos + 3];
        pos += 4;
        if (n > len - pos)
            return 0;
        pos += n;
        fields++;
    }
    return fields >= 2;
}

/* The line's key, decoded into blob, if it is a well-formed key blob whose type is the line's
 * type field: its length, or -1. */
static long line_key(const struct kh_line *l, uint8_t *blob, size_t blobsz)
{
    const uint8_t *t;
    size_t tl;
    long n = b64_decode(l->b64, l->b64len, blob, blobsz);

    if (n <= 0 || !blob_ok(blob, (size_t)n) || blob_type(blob, (size_t)n, &t, &tl) != 0 ||
        tl != l->typelen || memcmp(t, l->type, tl) != 0)
        return -1;
    return n;
}

/* ---- host names ---- */

/* The host as known_hosts names it: "host" on port 22 (or 0), else "[host]:port". */
static int host_port(const char *host, int port, char *out, size_t outsz)
{
    int n = port == 22 || port == 0 ? snprintf(out, outsz, "%s", host)
                                    : snprintf(out, outsz, "[%s]:%d", host, port);

    return n < 0 || (size_t)n >= outsz ? -1 : 0;
}

/* The name ssh looks up: host_port() in lower case. */
static int lookup_name(const char *host, int port, char *out, size_t outsz)
{
    if (host_port(host, port, out, outsz) != 0)
        return -1;
    for (char *c = out; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    return 0;
}

/* Whether name matches the glob pat[0..plen) (* any run, ? any one character), ignoring case. */
static int glob(const char *name, const char *pat, size_t plen)
{
    const char *n = name, *star_n = NULL;
    size_t p = 0, star_p = 0;
    int star = 0;

    while (*n) {
        if (p < plen && pat[p] == '*') {
            star = 1;
            star_p = ++p;
            star_n = n;
        } else if (p < plen &&
                   (pat[p] == '?' || tolower((unsigned char)pat[p]) == (unsigned char)*n)) {
            p++;
            n++;
        } else if (star) {
            p = star_p;
            n = ++star_n;
        } else {
            return 0;
        }
    }
    while (p < plen && pat[p] == '*')
        p++;
    return p == plen;
}

/* OpenSSH's match_hostname(): 1 if a pattern of the list matches and no negated one does. As
 * there, the list is read from the left and a pattern of PATTERN_MAX or more characters ends it
 * as matching nothing (even after a match: ssh does not use such a line at all). */
static int patterns_match(const char *name, const char *list, size_t len)
{
    int positive = 0;
    size_t i = 0;

    while (i < len) {
        size_t j = i;
        int neg;
        while (j < len && list[j] != ',')
            j++;
        neg = j > i && list[i] == '!';
        if (j - i - (size_t)neg >= PATTERN_MAX)
            return 0;
        if (glob(name, list + i + neg, j - i - (size_t)neg)) {
            if (neg)
                return 0;
            positive = 1;
        }
        i = j + 1;
    }
    return positive;
}

/* The name looked up, and an HMAC-SHA1 for hashed names: SHA-1 fetched once per lookup (at the
 * first hashed name), since OpenSSL's one-shot HMAC() fetches it again for every line (4 us a
 * line, against under 1). */
struct lookup {
    const char *name;
    size_t namelen;
    int fetched;
    EVP_MD *sha1; /* NULL if it could not be fetched: no hashed name matches */
    EVP_MD_CTX *ctx;
};

static void lookup_init(struct lookup *lk, const char *name)
{
    lk->name = name;
    lk->namelen = strlen(name);
}

static void lookup_free(struct lookup *lk)
{
    EVP_MD_CTX_free(lk->ctx);
    EVP_MD_free(lk->sha1);
}

static _Thread_local struct ws_kh_stats stats;

void ws_known_hosts_stats(struct ws_kh_stats *out)
{
    *out = stats;
}

/* HMAC-SHA1(key, name) (RFC 2104; a 20-byte key needs no hashing first): 0, else -1. */
static int hmac_sha1(struct lookup *lk, const uint8_t key[SHA1_LEN], uint8_t out[SHA1_LEN])
{
    uint8_t ipad[64], opad[64], inner[SHA1_LEN];
    unsigned int n = 0;

    stats.hmacs++;
    if (!lk->fetched) {
        lk->fetched = 1;
        stats.sha1_fetches++;
        lk->sha1 = EVP_MD_fetch(NULL, "SHA1", NULL);
        lk->ctx = EVP_MD_CTX_new();
    }
    if (!lk->sha1 || !lk->ctx)
        return -1;
    memset(ipad, 0x36, sizeof(ipad));
    memset(opad, 0x5c, sizeof(opad));
    for (size_t i = 0; i < SHA1_LEN; i++) {
        ipad[i] ^= key[i];
        opad[i] ^= key[i];
    }
    if (EVP_DigestInit_ex(lk->ctx, lk->sha1, NULL) != 1 ||
        EVP_DigestUpdate(lk->ctx, ipad, sizeof(ipad)) != 1 ||
        EVP_DigestUpdate(lk->ctx, lk->name, lk->namelen) != 1 ||
        EVP_DigestFinal_ex(lk->ctx, inner, &n) != 1 || n != SHA1_LEN ||
        EVP_DigestInit_ex(lk->ctx, lk->sha1, NULL) != 1 ||
        EVP_DigestUpdate(lk->ctx, opad, sizeof(opad)) != 1 ||
        EVP_DigestUpdate(lk->ctx, inner, sizeof(inner)) != 1 ||
        EVP_DigestFinal_ex(lk->ctx, out, &n) != 1 || n != SHA1_LEN)
        return -1;
    return 0;
}

/*
 * OpenSSH's match_maybe_hashed() for a host field that starts with '|': it is
 * "|1|" base64(salt) "|" base64(HMAC-SHA1(salt, name)) with a 20-byte salt, compared as a whole
 * with what ssh-keygen -H writes for name. Any other field starting with '|' matches nothing
 * (ssh skips the line), whatever patterns follow.
 */
static int hashed_match(struct lookup *lk, const char *h, size_t len)
{
    const char *bar;
    uint8_t salt[64], mac[SHA1_LEN];
    char want[3 + 4 * ((SHA1_LEN + 2) / 3) + 1 + 4 * ((SHA1_LEN + 2) / 3) + 1];
    size_t n = 3;

    if (len < 3 || memcmp(h, "|1|", 3) != 0 || !(bar = memchr(h + 3, '|', len - 3)) ||
        b64_decode(h + 3, (size_t)(bar - h - 3), salt, sizeof(salt)) != SHA1_LEN ||
        hmac_sha1(lk, salt, mac) != 0)
        return 0;
    memcpy(want, "|1|", 3);
    n += (size_t)EVP_EncodeBlock((unsigned char *)want + n, salt, SHA1_LEN);
    want[n++] = '|';
    n += (size_t)EVP_EncodeBlock((unsigned char *)want + n, mac, SHA1_LEN);
    return n == len && memcmp(want, h, len) == 0;
}

static int host_matches(struct lookup *lk, const struct kh_line *l)
{
    if (l->hosts[0] == '|')
        return hashed_match(lk, l->hosts, l->hostslen);
    return patterns_match(lk->name, l->hosts, l->hostslen);
}

/* ---- the file ---- */

/* Calls fn for every parsed line that names the host looked up; stops when fn returns non-zero.
 * Each line's host field is matched once. */
static void each_line(const char *text, size_t len, struct lookup *lk,
                      int (*fn)(void *arg, const struct kh_line *l), void *arg)
{
    const char *p = text, *end = text + len;
    unsigned int no = 0;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *e = nl ? nl : end, *nul;
        struct kh_line l;
        no++;
        if ((nul = memchr(p, '\0', (size_t)(e - p))) != NULL)
            e = nul; /* ssh reads lines as C strings: a NUL ends the line */
        if (e > p && e[-1] == '\r')
            e--;
        if (parse_line(p, e, &l) == 0) {
            l.no = no;
            if (host_matches(lk, &l) && fn(arg, &l))
                return;
        }
        p = nl ? nl + 1 : end;
    }
}

/* One pass: a @revoked line for the host holding the key decides at once; otherwise the first
 * line holding it is the match, and the first holding another key of its type the change. */
struct check {
    const uint8_t *key;
    size_t keylen;
    const uint8_t *type; /* inside key; NULL if the key has none */
    size_t typelen;
    unsigned int match, changed; /* lines, 0 if none */
    struct ws_kh_result *res;
    uint8_t *blob; /* BLOB_MAX bytes */
};

static int check_line(void *arg, const struct kh_line *l)
{
    struct check *c = arg;
    const uint8_t *t;
    size_t tl;
    long n;
    int same;

    if (l->marker == MARK_CA) {
        c->res->cert_authority = 1;
        return 0;
    }
    if ((n = line_key(l, c->blob, BLOB_MAX)) < 0)
        return 0;
    same = (size_t)n == c->keylen && memcmp(c->blob, c->key, c->keylen) == 0;
    if (l->marker == MARK_REVOKED) {
        if (!same)
            return 0;
        c->res->verdict = WS_KH_REVOKED;
        c->res->line = l->no;
        return 1;
    }
    if (same && !c->match)
        c->match = l->no;
    else if (!same && !c->changed && c->type && blob_type(c->blob, (size_t)n, &t, &tl) == 0 &&
             tl == c->typelen && memcmp(t, c->type, tl) == 0)
        c->changed = l->no;
    return 0;
}

void ws_known_hosts_check(const char *text, size_t len, const char *host, int port,
                          const uint8_t *key, size_t keylen, struct ws_kh_result *res)
{
    char name[NAME_MAX_LEN];
    struct check c = {key, keylen, NULL, 0, 0, 0, res, NULL};
    struct lookup lk = {NULL, 0, 0, NULL, NULL};

    memset(res, 0, sizeof(*res));
    if (!text || !key || !host || lookup_name(host, port, name, sizeof(name)) != 0 ||
        !(c.blob = malloc(BLOB_MAX)))
        goto out; /* unknown: refused */
    lookup_init(&lk, name);
    if (blob_type(key, keylen, &c.type, &c.typelen) != 0)
        c.type = NULL;
    each_line(text, len, &lk, check_line, &c);
    if (res->verdict != WS_KH_REVOKED && (c.match || c.changed)) {
        res->verdict = c.match ? WS_KH_MATCH : WS_KH_CHANGED;
        res->line = c.match ? c.match : c.changed;
    }
out:
    free(c.blob);
    lookup_free(&lk);
}

/* The host's key lines (no @cert-authority), collected in one pass. */
struct host_lines {
    struct kh_line *l;
    size_t n, cap;
    int failed; /* out of memory */
};

static int collect_line(void *arg, const struct kh_line *l)
{
    struct host_lines *h = arg;

    if (l->marker == MARK_CA)
        return 0;
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        struct kh_line *p = realloc(h->l, cap * sizeof(*p));
        if (!p) {
            h->failed = 1;
            return 1;
        }
        h->l = p;
        h->cap = cap;
    }
    h->l[h->n++] = *l;
    return 0;
}

/* Whether key[0..n) is the key of a @revoked line among the host's lines. */
static int revoked(const struct host_lines *h, const uint8_t *key, size_t n, uint8_t *blob)
{
    for (size_t i = 0; i < h->n; i++) {
        long m;
        if (h->l[i].marker == MARK_REVOKED && (m = line_key(&h->l[i], blob, BLOB_MAX)) >= 0 &&
            (size_t)m == n && memcmp(blob, key, n) == 0)
            return 1;
    }
    return 0;
}

size_t ws_known_hosts_plain(const char *text, size_t len, const char *host, int port, char *out,
                            size_t outsz)
{
    char name[NAME_MAX_LEN], shown[NAME_MAX_LEN]; /* looked up; written (case kept, for libcurl) */
    struct host_lines h = {NULL, 0, 0, 0};
    struct lookup lk = {NULL, 0, 0, NULL, NULL};
    uint8_t *key = NULL, *blob = NULL;
    size_t need = 0;

    if (out && outsz > 0)
        out[0] = '\0';
    else
        out = NULL;
    if (!text || !host || lookup_name(host, port, name, sizeof(name)) != 0 ||
        host_port(host, port, shown, sizeof(shown)) != 0 || !(key = malloc(BLOB_MAX)) ||
        !(blob = malloc(BLOB_MAX)))
        goto out;
    lookup_init(&lk, name);
    each_line(text, len, &lk, collect_line, &h);
    if (h.failed)
        goto out;
    for (size_t i = 0; i < h.n; i++) {
        const struct kh_line *l = &h.l[i];
        long n;
        int w;
        if (l->marker != MARK_NONE || (n = line_key(l, key, BLOB_MAX)) < 0 ||
            revoked(&h, key, (size_t)n, blob))
            continue;
        w = snprintf(NULL, 0, "%s %.*s %.*s\n", shown, (int)l->typelen, l->type, (int)l->b64len,
                     l->b64);
        if (w <= 0)
            continue;
        if (out && need + (size_t)w < outsz)
            snprintf(out + need, outsz - need, "%s %.*s %.*s\n", shown, (int)l->typelen, l->type,
                     (int)l->b64len, l->b64);
        else
            out = NULL; /* full: what was written stays whole lines */
        need += (size_t)w;
    }
out:
    free(blob);
    free(key);
    free(h.l);
    lookup_free(&lk);
    return need;
}
