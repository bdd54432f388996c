/* s3_parse.c - S3 answers as pure functions over bounded buffers (see s3_parse.h). */
#include "storage/s3_parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "io/fingerprint.h"

/* ---- XML ---- */

static const char *find(const char *hay, size_t haylen, const char *needle, size_t nlen)
{
    return memmem(hay, haylen, needle, nlen);
}

int ws_s3_xml_value(const char *xml, size_t len, size_t *pos, const char *tag, char *out,
                    size_t outsz)
{
    static const struct {
        const char *ent;
        size_t len;
        char c;
    } ents[] = {{"&amp;", 5, '&'},
                {"&lt;", 4, '<'},
                {"&gt;", 4, '>'},
                {"&quot;", 6, '"'},
                {"&apos;", 6, '\''}};
    char open[64], close[64];
    const char *a, *b, *end;
    size_t start = pos ? *pos : 0, o = 0;
    int olen = snprintf(open, sizeof(open), "<%s>", tag);
    int clen = snprintf(close, sizeof(close), "</%s>", tag);

    if (outsz > 0)
        out[0] = '\0';
    if (!xml || olen <= 0 || (size_t)olen >= sizeof(open) || clen <= 0 ||
        (size_t)clen >= sizeof(close) || start > len)
        return WS_S3_ABSENT;
    end = xml + len;
    if (!(a = find(xml + start, len - start, open, (size_t)olen)))
        return WS_S3_ABSENT;
    a += olen;
    if (!(b = find(a, (size_t)(end - a), close, (size_t)clen)))
        return WS_S3_ABSENT;
    if (pos)
        *pos = (size_t)(b - xml) + (size_t)clen;
    while (a < b) {
        char c = *a;
        size_t step = 1;
        if (c == '&') {
            for (size_t i = 0; i < sizeof(ents) / sizeof(ents[0]); i++) {
                if ((size_t)(b - a) >= ents[i].len && memcmp(a, ents[i].ent, ents[i].len) == 0) {
                    c = ents[i].c;
                    step = ents[i].len;
                    break;
                }
            }
        }
        if (o + 1 >= outsz) {
            if (outsz > 0)
                out[o] = '\0';
            return WS_S3_TOO_LONG;
        }
        out[o++] = c;
        a += step;
    }
    if (outsz > 0)
        out[o] = '\0';
    return 0;
}

static char printable(char c)
{
    return (unsigned char)c < 0x20 || (unsigned char)c >= 0x7f ? '?' : c;
}

void ws_s3_printable(const char *text, size_t len, char *out, size_t outsz)
{
    size_t o = 0, i;

    if (outsz == 0)
        return;
    for (i = 0; i < len && o + 1 < outsz; i++)
        out[o++] = printable(text[i]);
    if (i < len && outsz > 4) {
        memcpy(out + outsz - 4, "...", 3);
        o = outsz - 1;
    }
    out[o] = '\0';
}

/* In place: control characters (and the non-ASCII bytes a message has no use for) become '?'. */
static void make_printable(char *s)
{
    for (; *s; s++)
        *s = printable(*s);
}

void ws_s3_error_parse(const char *body, size_t len, struct ws_s3_error *out)
{
    const char *e = body ? find(body, len, "<Error>", 7) : NULL;
    size_t elen = e ? len - (size_t)(e - body) : 0;

    out->code[0] = out->message[0] = '\0';
    if (!e)
        return;
    /* Too long: keep what fitted (a message is for people; a code that long matches nothing). */
    (void)ws_s3_xml_value(e, elen, NULL, "Code", out->code, sizeof(out->code));
    (void)ws_s3_xml_value(e, elen, NULL, "Message", out->message, sizeof(out->message));
    make_printable(out->code);
    make_printable(out->message);
}

/* ---- numbers ---- */

/* Decimal digits only (no sign, no space), at most max: 0, else -1. */
static int parse_u64(const char *s, size_t n, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;

    if (n == 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned d;
        if (s[i] < '0' || s[i] > '9')
            return -1;
        d = (unsigned)(s[i] - '0');
        if (v > (max - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* ---- ListObjectsV2 ---- */

int ws_s3_list_parse(const char *xml, size_t len, ws_s3_list_key_cb cb, void *arg,
                     struct ws_s3_list_page *page, struct ws_error *err)
{
    static const char copen[] = "<Contents>", cclose[] = "</Contents>";
    char key[WS_S3_KEY_MAX + 1], num[32], truncated[8];
    size_t pos = 0;
    int rc;

    memset(page, 0, sizeof(*page));
    if (!xml || !find(xml, len, "<ListBucketResult", 17))
        return ws_error_set(err, WS_ERR_STORAGE, "the answer is not a ListBucketResult");
    for (;;) {
        const char *a = find(xml + pos, len - pos, copen, sizeof(copen) - 1), *b;
        size_t blen;
        uint64_t size;
        if (!a)
            break;
        a += sizeof(copen) - 1;
        if (!(b = find(a, len - (size_t)(a - xml), cclose, sizeof(cclose) - 1)))
            return ws_error_set(err, WS_ERR_STORAGE, "the answer has an unterminated <Contents>");
        blen = (size_t)(b - a);
        pos = (size_t)(b - xml) + sizeof(cclose) - 1;
        page->keys++;
        rc = ws_s3_xml_value(a, blen, NULL, "Key", key, sizeof(key));
        if (rc == WS_S3_TOO_LONG)
            return ws_error_set(err, WS_ERR_STORAGE,
                                "the answer has a key longer than %d bytes (entry %zu)",
                                WS_S3_KEY_MAX, page->keys);
        if (rc != 0 || !key[0])
            return ws_error_set(err, WS_ERR_STORAGE,
                                "the answer has an entry without a key "
                                "(entry %zu)",
                                page->keys);
        if (ws_s3_xml_value(a, blen, NULL, "Size", num, sizeof(num)) != 0 ||
            parse_u64(num, strlen(num), INT64_MAX, &size) != 0)
            return ws_error_set(err, WS_ERR_STORAGE,
                                "the answer has an entry without a valid size (entry %zu)",
                                page->keys);
        if ((rc = cb(arg, key, size, err)) != 0)
            return rc;
    }
    rc = ws_s3_xml_value(xml, len, NULL, "IsTruncated", truncated, sizeof(truncated));
    if (rc == 0 && strcmp(truncated, "true") == 0)
        page->truncated = 1;
    else if ((rc == 0 && strcmp(truncated, "false") != 0) || rc == WS_S3_TOO_LONG)
        return ws_error_set(err, WS_ERR_STORAGE,
                            "the answer's IsTruncated is neither true nor "
                            "false");
    if (!page->truncated)
        return 0;
    rc = ws_s3_xml_value(xml, len, NULL, "NextContinuationToken", page->next_token,
                         sizeof(page->next_token));
    if (rc == WS_S3_TOO_LONG)
        return ws_error_set(err, WS_ERR_STORAGE,
                            "the answer's continuation token is longer than %d bytes",
                            WS_S3_TOKEN_MAX);
    if (rc != 0 || !page->next_token[0])
        return ws_error_set(err, WS_ERR_STORAGE,
                            "the answer is truncated without a continuation token");
    return 0;
}

/* ---- the listing guard ---- */

/* Where h's probe sequence starts in a table of cap (a power of two) slots: h is a good hash
 * already, any 8 of its bytes will do. */
static size_t slot_of(const uint8_t h[16], size_t cap)
{
    uint64_t v;

    memcpy(&v, h, sizeof(v));
    return (size_t)(v & (cap - 1));
}

/* Adds h; 1 if it was new, 0 if present, -1 out of memory. The all-zero slot means empty. */
static int hashset_add(struct ws_s3_hashset *set, const uint8_t h[16])
{
    static const uint8_t zero[16];
    uint8_t v[16];
    size_t i;

    memcpy(v, h, 16);
    if (memcmp(v, zero, 16) == 0)
        v[15] = 1; /* the one value that cannot be stored as is */
    if ((set->used + 1) * 2 > set->cap) {
        size_t ncap = set->cap ? set->cap * 2 : 256;
        uint8_t(*ns)[16] = calloc(ncap, 16);
        if (!ns)
            return -1;
        for (size_t j = 0; j < set->cap; j++) {
            if (memcmp(set->slots[j], zero, 16) == 0)
                continue;
            for (i = slot_of(set->slots[j], ncap); memcmp(ns[i], zero, 16) != 0;
                 i = (i + 1) & (ncap - 1))
                ;
            memcpy(ns[i], set->slots[j], 16);
        }
        free(set->slots);
        set->slots = ns;
        set->cap = ncap;
    }
    for (i = slot_of(v, set->cap); memcmp(set->slots[i], zero, 16) != 0;
         i = (i + 1) & (set->cap - 1))
        if (memcmp(set->slots[i], v, 16) == 0)
            return 0;
    memcpy(set->slots[i], v, 16);
    set->used++;
    return 1;
}

int ws_s3_list_guard_key(struct ws_s3_list_guard *g, const char *key)
{
    uint8_t h[16];

    ws_fingerprint(key, strlen(key), h);
    return hashset_add(&g->keys, h);
}

int ws_s3_list_guard_token(struct ws_s3_list_guard *g, const char *token)
{
    uint8_t h[16];
    int rc;

    ws_fingerprint(token, strlen(token), h);
    rc = hashset_add(&g->tokens, h);
    return rc < 0 ? -1 : !rc;
}

int ws_s3_list_guard_page(struct ws_s3_list_guard *g, size_t new_keys)
{
    g->pages++;
    g->stalled = new_keys ? 0 : g->stalled + 1;
    return g->stalled >= WS_S3_LIST_STALL_PAGES;
}

void ws_s3_list_guard_free(struct ws_s3_list_guard *g)
{
    free(g->tokens.slots);
    free(g->keys.slots);
    memset(g, 0, sizeof(*g));
}

/* ---- response headers ---- */

void ws_s3_headers_reset(struct ws_s3_headers *h)
{
    memset(h, 0, sizeof(*h));
    h->content_length = -1;
}

/* line[0..n) without its line end and the spaces around it. */
static void trim(const char **line, size_t *n)
{
    while (*n > 0 && ((*line)[*n - 1] == '\r' || (*line)[*n - 1] == '\n' ||
                      (*line)[*n - 1] == ' ' || (*line)[*n - 1] == '\t'))
        (*n)--;
    while (*n > 0 && (**line == ' ' || **line == '\t')) {
        (*line)++;
        (*n)--;
    }
}

/* "HTTP/<version> <3 digits>[ <reason>]": the status, or -1. */
static long status_of(const char *p, size_t n)
{
    const char *sp = memchr(p, ' ', n);
    uint64_t v;

    if (!sp || (size_t)(p + n - sp) < 4)
        return -1;
    sp++;
    if (parse_u64(sp, 3, 999, &v) != 0 || v < 100 || ((size_t)(p + n - sp) > 3 && sp[3] != ' '))
        return -1;
    return (long)v;
}

/* "bytes FIRST-LAST/TOTAL", TOTAL possibly "*": 0, else -1. */
static int range_of(struct ws_s3_headers *h, const char *v, size_t n)
{
    const char *dash, *slash;
    uint64_t total;

    if (n < 6 || strncasecmp(v, "bytes ", 6) != 0)
        return -1;
    v += 6;
    n -= 6;
    while (n > 0 && *v == ' ')
        v++, n--;
    dash = memchr(v, '-', n);
    slash = memchr(v, '/', n);
    if (!dash || !slash || dash > slash ||
        parse_u64(v, (size_t)(dash - v), INT64_MAX, &h->range_first) != 0 ||
        parse_u64(dash + 1, (size_t)(slash - dash - 1), INT64_MAX, &h->range_last) != 0 ||
        h->range_last < h->range_first)
        return -1;
    if ((size_t)(v + n - slash) == 2 && slash[1] == '*')
        h->range_total = -1;
    else if (parse_u64(slash + 1, (size_t)(v + n - slash - 1), INT64_MAX, &total) == 0 &&
             total > h->range_last)
        h->range_total = (int64_t)total;
    else
        return -1;
    h->has_range = 1;
    return 0;
}

void ws_s3_header_line(struct ws_s3_headers *h, const char *line, size_t len)
{
    const char *colon, *v;
    size_t nlen, vlen;

    if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        long st;
        trim(&line, &len);
        st = status_of(line, len);
        ws_s3_headers_reset(h);
        h->status = st > 0 ? st : 0;
        return;
    }
    if (!(colon = memchr(line, ':', len)))
        return;
    nlen = (size_t)(colon - line);
    v = colon + 1;
    vlen = len - nlen - 1;
    trim(&v, &vlen);
    if (nlen == 14 && strncasecmp(line, "Content-Length", 14) == 0) {
        uint64_t cl;
        if (parse_u64(v, vlen, INT64_MAX, &cl) != 0 ||
            (h->content_length >= 0 && (uint64_t)h->content_length != cl))
            h->bad = "Content-Length";
        else
            h->content_length = (int64_t)cl;
    } else if (nlen == 13 && strncasecmp(line, "Content-Range", 13) == 0) {
        if (range_of(h, v, vlen) != 0) {
            h->has_range = 0;
            h->bad = "Content-Range";
        }
    } else if (nlen == 4 && strncasecmp(line, "ETag", 4) == 0) {
        if (vlen > WS_S3_ETAG_MAX) {
            h->etag[0] = '\0';
            h->bad = "ETag";
        } else {
            memcpy(h->etag, v, vlen);
            h->etag[vlen] = '\0';
            make_printable(h->etag);
        }
    }
}
