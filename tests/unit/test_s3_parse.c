/*
 * What the S3 driver reads from servers (s3_parse.h): ListObjectsV2 pages, <Error> bodies,
 * response headers and the guard that keeps a listing finite. Inputs are copied into heap
 * buffers of exactly their length (no terminating NUL), so that a read past the end is an
 * AddressSanitizer report, not a lucky string terminator.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/s3_parse.h"
#include "unit.h"

/* text without its NUL, in a buffer of exactly its length (freed by the caller). */
static char *exact(const char *text, size_t *len)
{
    char *p;

    *len = strlen(text);
    p = malloc(*len ? *len : 1);
    if (p)
        memcpy(p, text, *len);
    return p;
}

/* ---- XML values and errors ---- */

static void test_xml_value(void)
{
    size_t len, pos = 0;
    char out[16], *x = exact("<A>one</A><B>x &amp; &lt;y&gt; &quot;&apos; &#10;</B><A>two</A>"
                             "<C>unterminated",
                             &len);

    REQUIRE(x);
    CHECK(ws_s3_xml_value(x, len, &pos, "A", out, sizeof(out)) == 0 && strcmp(out, "one") == 0);
    CHECK(ws_s3_xml_value(x, len, &pos, "A", out, sizeof(out)) == 0 && strcmp(out, "two") == 0);
    CHECK(ws_s3_xml_value(x, len, &pos, "A", out, sizeof(out)) == WS_S3_ABSENT && !out[0]);
    {
        char big[64];
        /* five named entities decoded, a numeric one kept as written */
        CHECK(ws_s3_xml_value(x, len, NULL, "B", big, sizeof(big)) == 0);
        CHECK(strcmp(big, "x & <y> \"' &#10;") == 0);
        /* too long for out: WS_S3_TOO_LONG, what fitted terminated */
        CHECK(ws_s3_xml_value(x, len, NULL, "B", out, 5) == WS_S3_TOO_LONG);
        CHECK(strcmp(out, "x & ") == 0);
    }
    CHECK(ws_s3_xml_value(x, len, NULL, "C", out, sizeof(out)) == WS_S3_ABSENT);
    CHECK(ws_s3_xml_value(x, len, NULL, "D", out, sizeof(out)) == WS_S3_ABSENT);
    /* a closing tag cut off at the end of the buffer */
    CHECK(ws_s3_xml_value(x, len - 3, NULL, "C", out, sizeof(out)) == WS_S3_ABSENT);
    pos = len + 1;
    CHECK(ws_s3_xml_value(x, len, &pos, "A", out, sizeof(out)) == WS_S3_ABSENT);
    CHECK(ws_s3_xml_value(NULL, 0, NULL, "A", out, sizeof(out)) == WS_S3_ABSENT);
    free(x);
}

static void test_error_parse(void)
{
    struct ws_s3_error e;
    size_t len;
    char *x = exact("<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>Please "
                    "reduce\r\nwal-push: LOG:  forged\x1b[0m</Message></Error>",
                    &len);

    REQUIRE(x);
    ws_s3_error_parse(x, len, &e);
    CHECK(strcmp(e.code, "SlowDown") == 0);
    /* no control character reaches a message */
    CHECK(strcmp(e.message, "Please reduce??wal-push: LOG:  forged?[0m") == 0);
    free(x);
    /* a <Code> outside an <Error> is not an error (a listing's key could say anything) */
    x = exact("<ListBucketResult><Code>NoSuchKey</Code></ListBucketResult>", &len);
    REQUIRE(x);
    ws_s3_error_parse(x, len, &e);
    CHECK(!e.code[0] && !e.message[0]);
    free(x);
    ws_s3_error_parse(NULL, 0, &e);
    CHECK(!e.code[0] && !e.message[0]);
    /* a message longer than the field is shortened, not refused */
    {
        char long_body[2000];
        int n =
            snprintf(long_body, sizeof(long_body), "<Error><Code>InternalError</Code><Message>");
        memset(long_body + n, 'm', 1000);
        snprintf(long_body + n + 1000, sizeof(long_body) - (size_t)n - 1000, "</Message></Error>");
        x = exact(long_body, &len);
        REQUIRE(x);
        ws_s3_error_parse(x, len, &e);
        CHECK(strcmp(e.code, "InternalError") == 0 && strlen(e.message) == sizeof(e.message) - 1);
        free(x);
    }
}

static void test_printable(void)
{
    char out[12];

    ws_s3_printable("a\nb\tc\x7f", 6, out, sizeof(out));
    CHECK(strcmp(out, "a?b?c?") == 0);
    ws_s3_printable("0123456789abcdef", 16, out, sizeof(out));
    CHECK(strcmp(out, "01234567...") == 0);
    ws_s3_printable("0123456789a", 11, out, sizeof(out));
    CHECK(strcmp(out, "0123456789a") == 0);
}

/* ---- listing pages ---- */

struct keys {
    char key[8][WS_S3_KEY_MAX + 1];
    uint64_t size[8];
    int n, stop_at;
};

static int on_key(void *arg, const char *key, uint64_t size, struct ws_error *err)
{
    struct keys *k = arg;

    if (k->n == k->stop_at)
        return ws_error_set(err, WS_ERR_IO, "stopped at %s", key);
    if (k->n < 8) {
        snprintf(k->key[k->n], sizeof(k->key[0]), "%s", key);
        k->size[k->n] = size;
    }
    k->n++;
    return 0;
}

/* Parses text as one page; the return code, with k and page filled. */
static int parse(const char *text, struct keys *k, struct ws_s3_list_page *page,
                 struct ws_error *err)
{
    size_t len;
    char *x = exact(text, &len);
    int rc;

    memset(k, 0, sizeof(*k));
    k->stop_at = -1;
    memset(err, 0, sizeof(*err));
    if (!x)
        return -1;
    rc = ws_s3_list_parse(x, len, on_key, k, page, err);
    free(x);
    return rc;
}

static void test_list_page(void)
{
    struct ws_s3_list_page page;
    struct ws_error err;
    struct keys k;

    CHECK(parse("<?xml version=\"1.0\"?><ListBucketResult xmlns=\"x\"><Name>b</Name>"
                "<IsTruncated>true</IsTruncated>"
                "<Contents><Key>p/a&amp;b</Key><LastModified>2024</LastModified>"
                "<Size>18446744073709551615</Size></Contents>"
                "<Contents><Size>0</Size><Key>p/c</Key></Contents>"
                "<NextContinuationToken>1/abc+=</NextContinuationToken></ListBucketResult>",
                &k, &page, &err) == WS_ERR_STORAGE); /* 2^64-1 is no size */
    CHECK(strstr(err.msg, "size") != NULL);

    CHECK(parse("<ListBucketResult><IsTruncated>true</IsTruncated>"
                "<Contents><Key>p/a&amp;b</Key><Size>9223372036854775807</Size></Contents>"
                "<Contents><Size>0</Size><Key>p/c</Key></Contents>"
                "<NextContinuationToken>1/abc+=</NextContinuationToken></ListBucketResult>",
                &k, &page, &err) == 0);
    CHECK(k.n == 2 && page.keys == 2 && page.truncated);
    CHECK(strcmp(k.key[0], "p/a&b") == 0 && k.size[0] == UINT64_C(9223372036854775807));
    CHECK(strcmp(k.key[1], "p/c") == 0 && k.size[1] == 0);
    CHECK(strcmp(page.next_token, "1/abc+=") == 0);

    /* the last page, and an empty listing */
    CHECK(parse("<ListBucketResult><IsTruncated>false</IsTruncated>"
                "<Contents><Key>k</Key><Size>1</Size></Contents></ListBucketResult>",
                &k, &page, &err) == 0);
    CHECK(k.n == 1 && !page.truncated && !page.next_token[0]);
    CHECK(parse("<ListBucketResult><KeyCount>0</KeyCount></ListBucketResult>", &k, &page, &err) ==
          0);
    CHECK(k.n == 0 && !page.truncated);

    /* the callback's error stops the page and is returned as it is */
    {
        size_t len;
        char *x = exact("<ListBucketResult><Contents><Key>a</Key><Size>1</Size></Contents>"
                        "<Contents><Key>b</Key><Size>1</Size></Contents></ListBucketResult>",
                        &len);
        REQUIRE(x);
        memset(&k, 0, sizeof(k));
        k.stop_at = 1;
        CHECK(ws_s3_list_parse(x, len, on_key, &k, &page, &err) == WS_ERR_IO);
        CHECK(strcmp(err.msg, "stopped at b") == 0 && k.n == 1);
        free(x);
    }

    static const struct {
        const char *body, *says;
    } bad[] = {
        {"<html>502 Bad Gateway</html>", "not a ListBucketResult"},
        {"<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",
         "without a continuation token"},
        {"<ListBucketResult><IsTruncated>true</IsTruncated><NextContinuationToken>"
         "</NextContinuationToken></ListBucketResult>",
         "without a continuation token"},
        {"<ListBucketResult><IsTruncated>yes</IsTruncated></ListBucketResult>", "IsTruncated"},
        {"<ListBucketResult><IsTruncated>truetruetrue</IsTruncated></ListBucketResult>",
         "IsTruncated"},
        {"<ListBucketResult><Contents><Size>1</Size></Contents></ListBucketResult>",
         "without a key"},
        {"<ListBucketResult><Contents><Key></Key><Size>1</Size></Contents></ListBucketResult>",
         "without a key"},
        {"<ListBucketResult><Contents><Key>a</Key></Contents></ListBucketResult>", "size"},
        {"<ListBucketResult><Contents><Key>a</Key><Size>-1</Size></Contents></ListBucketResult>",
         "size"},
        {"<ListBucketResult><Contents><Key>a</Key><Size>1x</Size></Contents></ListBucketResult>",
         "size"},
        {"<ListBucketResult><Contents><Key>a</Key><Size>1</Size>", "unterminated"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = parse(bad[i].body, &k, &page, &err);
        CHECK(rc == WS_ERR_STORAGE && strstr(err.msg, bad[i].says) != NULL);
        if (rc != WS_ERR_STORAGE || !strstr(err.msg, bad[i].says))
            fprintf(stderr, "    %s: rc %d, \"%s\"\n", bad[i].body, rc, err.msg);
    }

    /* a key or a token longer than the limits: refused, never cut short */
    {
        size_t n = WS_S3_TOKEN_MAX + 200;
        char *body = malloc(n + 200);
        REQUIRE(body);
        snprintf(body, n + 200, "<ListBucketResult><Contents><Key>");
        memset(body + strlen(body), 'k', WS_S3_KEY_MAX + 1);
        snprintf(body + 33 + WS_S3_KEY_MAX + 1, 100,
                 "</Key><Size>1</Size></Contents>"
                 "</ListBucketResult>");
        CHECK(parse(body, &k, &page, &err) == WS_ERR_STORAGE && k.n == 0 &&
              strstr(err.msg, "longer than"));
        snprintf(body, n + 200, "<ListBucketResult><Contents><Key>");
        memset(body + 33, 'k', WS_S3_KEY_MAX);
        snprintf(body + 33 + WS_S3_KEY_MAX, 100,
                 "</Key><Size>1</Size></Contents>"
                 "</ListBucketResult>");
        CHECK(parse(body, &k, &page, &err) == 0 && k.n == 1 && strlen(k.key[0]) == WS_S3_KEY_MAX);
        snprintf(body, n + 200,
                 "<ListBucketResult><IsTruncated>true</IsTruncated>"
                 "<NextContinuationToken>");
        memset(body + strlen(body), 't', WS_S3_TOKEN_MAX + 1);
        snprintf(body + 72 + WS_S3_TOKEN_MAX + 1, 100,
                 "</NextContinuationToken></ListBucketResult>");
        CHECK(parse(body, &k, &page, &err) == WS_ERR_STORAGE && strstr(err.msg, "longer than"));
        free(body);
    }
}

/* ---- the guard ---- */

static void test_guard_tokens(void)
{
    struct ws_s3_list_guard g = {0};
    char t[32];

    /* one token twice */
    CHECK(ws_s3_list_guard_token(&g, "A") == 0);
    CHECK(ws_s3_list_guard_token(&g, "A") == 1);
    ws_s3_list_guard_free(&g);
    /* two tokens in turn: the third page repeats the first */
    CHECK(ws_s3_list_guard_token(&g, "A") == 0);
    CHECK(ws_s3_list_guard_token(&g, "B") == 0);
    CHECK(ws_s3_list_guard_token(&g, "A") == 1);
    ws_s3_list_guard_free(&g);
    /* many distinct tokens (the table grows), then an early one again */
    for (int i = 0; i < 5000; i++) {
        snprintf(t, sizeof(t), "token-%d", i);
        if (ws_s3_list_guard_token(&g, t) != 0) {
            CHECK(!"a new token taken for a repeat");
            break;
        }
    }
    CHECK(ws_s3_list_guard_token(&g, "token-17") == 1);
    CHECK(ws_s3_list_guard_token(&g, "token-4999") == 1);
    CHECK(ws_s3_list_guard_token(&g, "token-5000") == 0);
    ws_s3_list_guard_free(&g);
    CHECK(g.tokens.slots == NULL && g.pages == 0);
}

static void test_guard_progress(void)
{
    struct ws_s3_list_guard g = {0};
    char k[32];
    int stopped = 0, i;

    /* keys: each once */
    CHECK(ws_s3_list_guard_key(&g, "main/wal/a") == 1);
    CHECK(ws_s3_list_guard_key(&g, "main/wal/a") == 0);
    CHECK(ws_s3_list_guard_key(&g, "main/wal/b") == 1);
    for (i = 0; i < 100000; i++) {
        snprintf(k, sizeof(k), "k%d", i);
        if (ws_s3_list_guard_key(&g, k) != 1)
            break;
    }
    CHECK(i == 100000);
    snprintf(k, sizeof(k), "k%d", 99999);
    CHECK(ws_s3_list_guard_key(&g, k) == 0);
    /* pages without a new key: the listing ends after WS_S3_LIST_STALL_PAGES in a row, and a
     * page with a new key starts the count again */
    for (i = 1; i < WS_S3_LIST_STALL_PAGES; i++)
        stopped |= ws_s3_list_guard_page(&g, 0);
    CHECK(!stopped);
    CHECK(ws_s3_list_guard_page(&g, 1) == 0);
    for (i = 1; i < WS_S3_LIST_STALL_PAGES; i++)
        stopped |= ws_s3_list_guard_page(&g, 0);
    CHECK(!stopped);
    CHECK(ws_s3_list_guard_page(&g, 0) == 1);
    CHECK(g.pages == 2 * WS_S3_LIST_STALL_PAGES);
    ws_s3_list_guard_free(&g);
}

/* ---- headers ---- */

/* Feeds text line by line ("\n"-separated, each passed with "\r\n" and no NUL). */
static void feed(struct ws_s3_headers *h, const char *text)
{
    while (*text) {
        const char *nl = strchr(text, '\n');
        size_t n = nl ? (size_t)(nl - text) : strlen(text), len;
        char line[512], *x;
        snprintf(line, sizeof(line), "%.*s\r\n", (int)n, text);
        x = exact(line, &len);
        if (x)
            ws_s3_header_line(h, x, len);
        free(x);
        text += n + (nl ? 1 : 0);
    }
}

static void test_headers(void)
{
    struct ws_s3_headers h;

    ws_s3_headers_reset(&h);
    CHECK(h.status == 0 && h.content_length == -1 && !h.has_range && !h.etag[0] && !h.bad);
    feed(&h, "HTTP/1.1 206 Partial Content\nContent-Length: 100\n"
             "content-range:   bytes 100-199/1000\nETag: \"abc\"\nX-Other: 1\n");
    CHECK(h.status == 206 && h.content_length == 100 && !h.bad);
    CHECK(h.has_range && h.range_first == 100 && h.range_last == 199 && h.range_total == 1000);
    CHECK(strcmp(h.etag, "\"abc\"") == 0);
    /* a new status line (an interim answer, a retried request) starts over */
    feed(&h, "HTTP/2 200\n");
    CHECK(h.status == 200 && h.content_length == -1 && !h.has_range && !h.etag[0]);
    feed(&h, "HTTP/1.1 100 Continue\n\nHTTP/1.1 404 Not Found\nContent-Length: 0\n");
    CHECK(h.status == 404 && h.content_length == 0);
    feed(&h, "HTTP/1.1 206 OK\nContent-Range: bytes 0-0/*\n");
    CHECK(h.has_range && h.range_first == 0 && h.range_last == 0 && h.range_total == -1);
    /* an identical repeat is fine */
    feed(&h, "HTTP/1.1 200 OK\nContent-Length: 7\ncontent-length: 7\n");
    CHECK(h.content_length == 7 && !h.bad);

    static const struct {
        const char *lines, *bad;
    } bad[] = {
        {"Content-Length: 7\nContent-Length: 8", "Content-Length"},
        {"Content-Length: 99999999999999999999", "Content-Length"},
        {"Content-Length: 9223372036854775808", "Content-Length"},
        {"Content-Length: -1", "Content-Length"},
        {"Content-Length: 12 34", "Content-Length"},
        {"Content-Length:", "Content-Length"},
        {"Content-Range: bytes 5-4/10", "Content-Range"},
        {"Content-Range: bytes 0-9/5", "Content-Range"},
        {"Content-Range: bytes */10", "Content-Range"},
        {"Content-Range: items 0-9/10", "Content-Range"},
        {"Content-Range: bytes 0-99999999999999999999/*", "Content-Range"},
        {"ETag: \"0123456789012345678901234567890123456789012345678901234567890123456789"
         "0123456789012345678901234567890123456789012345678901234567890123456789\"",
         "ETag"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        feed(&h, "HTTP/1.1 200 OK\n");
        feed(&h, bad[i].lines);
        CHECK(h.bad && strcmp(h.bad, bad[i].bad) == 0);
        if (!h.bad || strcmp(h.bad, bad[i].bad) != 0)
            fprintf(stderr, "    not flagged: %s\n", bad[i].lines);
    }
    feed(&h, "HTTP/1.1 200 OK\nContent-Range: bytes 0-9/10\nContent-Range: junk\n");
    CHECK(!h.has_range);

    /* status lines that are not */
    static const char *const statuses[] = {"HTTP/1.1",     "HTTP/1.1 ",        "HTTP/1.1 2",
                                           "HTTP/1.1 20x", "HTTP/1.1 2000 OK", "HTTP/1.1 099 x"};
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        feed(&h, "HTTP/1.1 200 OK\n");
        feed(&h, statuses[i]);
        CHECK(h.status == 0);
    }
    /* a line without its end, and lines without a colon */
    {
        size_t len;
        char *x = exact("Content-Length: 42", &len);
        feed(&h, "HTTP/1.1 200 OK\nno colon here\n\n");
        REQUIRE(x);
        ws_s3_header_line(&h, x, len);
        CHECK(h.content_length == 42);
        free(x);
    }
}

const struct unit_test unit_tests[] = {
    {"xml_value", test_xml_value},       {"error_parse", test_error_parse},
    {"printable", test_printable},       {"list_page", test_list_page},
    {"guard_tokens", test_guard_tokens}, {"guard_progress", test_guard_progress},
    {"headers", test_headers},           {NULL, NULL},
};
