/*
 * storage/s3_parse.h - what the S3 driver reads from a server, as pure functions over a buffer and
 * its length: ListObjectsV2 pages, <Error> bodies, response header lines, and the guard that keeps
 * a listing finite. No I/O. Nothing here needs its input to be terminated, well formed or honest:
 * every read is bounded by the length given, every number is checked for overflow, and text
 * that may reach a message (an error's code and message, a key) comes out with control
 * characters replaced by '?'.
 *
 *     struct ws_s3_list_page page;
 *     if (ws_s3_list_parse(body, len, on_key, arg, &page, err) != 0) ...;   // err says why
 *     if (page.truncated && ws_s3_list_guard_token(&guard, page.next_token) ...) ...;
 */
#ifndef WS_S3_PARSE_H
#define WS_S3_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

#define WS_S3_KEY_MAX 1024   /* S3's own limit on a key, in bytes */
#define WS_S3_TOKEN_MAX 2047 /* a continuation token longer than this is refused */
#define WS_S3_ETAG_MAX 127
#define WS_S3_LIST_STALL_PAGES 100 /* pages in a row without a new key end a listing */

/* ws_s3_xml_value: results besides 0. */
#define WS_S3_ABSENT 1
#define WS_S3_TOO_LONG 2

/*
 * The text of the first <tag>...</tag> that starts at or after *pos (0 when pos is NULL) in
 * xml[0..len), with XML's five named entities decoded (others are kept as written), into out
 * (always NUL-terminated when outsz > 0). 0 found, and then *pos (if given) is just after the
 * closing tag; WS_S3_ABSENT if there is no such element (or it is not closed); WS_S3_TOO_LONG if
 * the text does not fit outsz (out then holds what fitted). tag has at most 60 characters.
 */
int ws_s3_xml_value(const char *xml, size_t len, size_t *pos, const char *tag, char *out,
                    size_t outsz);

/* The <Code> and <Message> of the first <Error> element of body (empty when there is none),
 * shortened to fit, control characters replaced. */
struct ws_s3_error {
    char code[128];
    char message[256];
};
void ws_s3_error_parse(const char *body, size_t len, struct ws_s3_error *out);

/*
 * One ListObjectsV2 answer. ws_s3_list_parse() calls cb for every <Contents> element, in the
 * order of the answer, with its <Key> (decoded, at most WS_S3_KEY_MAX bytes, NUL-terminated) and
 * <Size>; a non-zero return from cb stops it and is returned. It then fills page. An answer that
 * is not a ListBucketResult, a <Contents> without a key or a decimal size that fits 64 bits, a
 * key longer than WS_S3_KEY_MAX, an <IsTruncated> other than true/false, or a truncated answer
 * without a continuation token (or one longer than WS_S3_TOKEN_MAX) is WS_ERR_STORAGE with a
 * message saying which (the caller prefixes bucket and prefix).
 */
typedef int (*ws_s3_list_key_cb)(void *arg, const char *key, uint64_t size, struct ws_error *err);
struct ws_s3_list_page {
    size_t keys;   /* <Contents> elements seen */
    int truncated; /* IsTruncated: another page follows */
    char next_token[WS_S3_TOKEN_MAX + 1];
};
int ws_s3_list_parse(const char *xml, size_t len, ws_s3_list_key_cb cb, void *arg,
                     struct ws_s3_list_page *page, struct ws_error *err);

/*
 * What a listing has seen, so that it ends: every continuation token and every key so far
 * (as 128-bit hashes), and how many pages in a row brought no new key. Zero-initialise; free
 * with ws_s3_list_guard_free().
 */
struct ws_s3_hashset {
    uint8_t (*slots)[16];
    size_t cap, used;
};
struct ws_s3_list_guard {
    struct ws_s3_hashset tokens, keys;
    size_t pages;         /* pages ended so far */
    unsigned int stalled; /* of them, the latest in a row without a new key */
};
/* 1 if key is new to this listing (it is remembered), 0 if it was seen, -1 out of memory. */
int ws_s3_list_guard_key(struct ws_s3_list_guard *g, const char *key);
/* 1 if the server sent this continuation token before in this listing, 0 if not (it is
 * remembered), -1 out of memory. */
int ws_s3_list_guard_token(struct ws_s3_list_guard *g, const char *token);
/* Ends a page that brought new_keys new keys: 1 when WS_S3_LIST_STALL_PAGES pages in a row
 * brought none (the listing must fail), else 0. */
int ws_s3_list_guard_page(struct ws_s3_list_guard *g, size_t new_keys);
void ws_s3_list_guard_free(struct ws_s3_list_guard *g);

/*
 * Response headers, fed one line at a time as libcurl hands them over (not terminated, CRLF
 * included or not). A status line ("HTTP/1.1 206 ...", "HTTP/2 200") starts a new response and
 * forgets the previous one's headers (interim 1xx answers, a retried request). Fields:
 *   status            the status code, 0 before a valid status line
 *   content_length    Content-Length, -1 if absent
 *   range_*           Content-Range "bytes FIRST-LAST/TOTAL" (TOTAL -1 for "*"), has_range set
 *   etag              ETag as sent (quotes included), "" if absent
 *   bad               a header this driver relies on is malformed: a Content-Length or
 *                     Content-Range that is not numbers that fit 63 bits, two different
 *                     Content-Lengths, an ETag longer than WS_S3_ETAG_MAX; bad names it
 */
struct ws_s3_headers {
    long status;
    int64_t content_length;
    int has_range;
    uint64_t range_first, range_last;
    int64_t range_total;
    char etag[WS_S3_ETAG_MAX + 1];
    const char *bad; /* NULL, or the name of the malformed header */
};
void ws_s3_headers_reset(struct ws_s3_headers *h);
void ws_s3_header_line(struct ws_s3_headers *h, const char *line, size_t len);

/* Copies text[0..len) into out for a message: control characters and bytes >= 0x7f become
 * '?', and a text that does not fit ends in "...". out is always NUL-terminated (outsz > 4). */
void ws_s3_printable(const char *text, size_t len, char *out, size_t outsz);

#endif
