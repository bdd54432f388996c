/*
 * fuzz_repl: the COPY stream of BASE_BACKUP as a hostile or broken server may send it
 * (ws_repl_parse_copy, pg/repl.h).
 *
 * The input is a sequence of messages, each a length byte and that many bytes (the last one cut
 * short by the end of the input), read with one stream state as the libpq session reads them.
 * Properties: no crash or undefined behaviour, and nothing read outside a message; a refusal is
 * WS_ERR_CORRUPT about the base backup's COPY stream; an accepted ARCHIVE has a non-empty name
 * and a location, both NUL-terminated inside the message, and never follows MANIFEST; DATA is the
 * message after its type byte and never comes before an ARCHIVE or MANIFEST; PROGRESS is a
 * 9-byte message; MANIFEST comes once.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pg/repl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ws_repl_stream st = {0};
    int archives = 0, manifests = 0;
    size_t pos = 0;

    while (pos < size) {
        size_t len = data[pos++];
        struct ws_error err = {0};
        struct ws_repl_msg m;
        uint8_t *msg;

        if (len > size - pos)
            len = size - pos;
        /* a copy of exactly len bytes: ASan sees any read past the message */
        if (!(msg = malloc(len ? len : 1)))
            return 0;
        memcpy(msg, data + pos, len);
        pos += len;
        if (ws_repl_parse_copy(&st, msg, len, &m, &err) != 0) {
            check(err.code == WS_ERR_CORRUPT && strstr(err.msg, "base backup") != NULL);
            free(msg);
            continue;
        }
        switch (m.type) {
        case WS_REPL_ARCHIVE:
            check(!manifests && *m.archive_name);
            check(m.archive_name == (const char *)msg + 1);
            check(m.tablespace_location + strlen(m.tablespace_location) + 1 ==
                  (const char *)msg + len);
            archives++;
            break;
        case WS_REPL_DATA:
            check((archives || manifests) && m.data == msg + 1 && m.len == len - 1);
            break;
        case WS_REPL_PROGRESS:
            check(len == 9);
            break;
        case WS_REPL_MANIFEST:
            check(++manifests == 1 && len == 1);
            break;
        default:
            check(0);
        }
        free(msg);
    }
    return 0;
}
