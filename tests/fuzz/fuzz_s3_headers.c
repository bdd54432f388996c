/*
 * fuzz_s3_headers - response header lines as libcurl hands them over (ws_s3_header_line): the
 * input split at '\n', each line passed without a terminator. Whatever the input: no read
 * outside a line, and the fields keep their contract (a status of 100..999 or 0, a length and
 * a range that fit 63 bits, a range whose first byte is not after its last, an ETag within
 * its limit and without control characters).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "storage/s3_parse.h"

static void check(const struct ws_s3_headers *h)
{
    size_t el = strnlen(h->etag, sizeof(h->etag));

    if (h->status != 0 && (h->status < 100 || h->status > 999))
        abort();
    if (h->content_length < -1)
        abort();
    if (h->has_range && (h->range_first > h->range_last || h->range_last > INT64_MAX ||
                         (h->range_total != -1 && h->range_total <= (int64_t)h->range_last)))
        abort();
    if (el == sizeof(h->etag))
        abort();
    for (size_t i = 0; i < el; i++)
        if ((unsigned char)h->etag[i] < 0x20 || (unsigned char)h->etag[i] >= 0x7f)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ws_s3_headers h;
    size_t i = 0;

    ws_s3_headers_reset(&h);
    while (i < size) {
        const uint8_t *nl = memchr(data + i, '\n', size - i);
        size_t n = nl ? (size_t)(nl - (data + i)) + 1 : size - i;
        ws_s3_header_line(&h, (const char *)data + i, n);
        check(&h);
        i += n;
    }
    return 0;
}
