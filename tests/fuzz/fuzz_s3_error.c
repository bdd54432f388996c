/*
 * fuzz_s3_error - S3 <Error> bodies (ws_s3_error_parse) and the XML value reader under them
 * (ws_s3_xml_value), with out buffers of every small size. Whatever the input: no read outside
 * it, no write outside out, results terminated, and no control character in what may reach a
 * message.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "storage/s3_parse.h"

static void printable_or_abort(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);

    if (n == cap)
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const tags[] = {"Code", "Message", "Key", "UploadId", "Error"};
    struct ws_s3_error e;
    size_t pos = 0, outsz;
    char *out, shown[64];

    ws_s3_error_parse((const char *)data, size, &e);
    printable_or_abort(e.code, sizeof(e.code));
    printable_or_abort(e.message, sizeof(e.message));
    ws_s3_printable((const char *)data, size, shown, sizeof(shown));
    printable_or_abort(shown, sizeof(shown));

    /* the first byte picks the out size (1..64) and the tag */
    outsz = size ? (size_t)(data[0] & 63) + 1 : 1;
    if (!(out = malloc(outsz)))
        return 0;
    for (int i = 0; i < 8; i++) {
        const char *tag = tags[(size ? data[0] >> 6 : 0) % 5];
        size_t before = pos;
        int rc = ws_s3_xml_value((const char *)data, size, &pos, tag, out, outsz);
        if (strnlen(out, outsz) == outsz)
            abort();
        if (rc != 0 && rc != WS_S3_ABSENT && rc != WS_S3_TOO_LONG)
            abort();
        if (rc == WS_S3_ABSENT)
            break;
        if (pos <= before || pos > size)
            abort();
    }
    free(out);
    return 0;
}
