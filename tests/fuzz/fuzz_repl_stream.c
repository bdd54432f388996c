/*
 * fuzz_repl_stream: the CopyBoth messages of START_REPLICATION as a hostile or broken server may
 * send them (ws_repl_parse_xlog, pg/repl.h).
 *
 * The input is one message. Properties: no crash or undefined behaviour, and nothing read
 * outside the message; a refusal is WS_ERR_CORRUPT naming the streaming of WAL; accepted XLogData
 * ('w') has its data inside the message, right after the 25-byte header, and a start position
 * that does not wrap with its length; an accepted keepalive ('k') is exactly 18 bytes with a reply
 * flag of 0 or 1.
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
    struct ws_error err = {0};
    struct ws_repl_wal_msg m;
    uint8_t *msg = malloc(size ? size : 1);

    if (!msg)
        return 0;
    memcpy(msg, data, size); /* exactly size bytes: ASan sees any read past the message */
    if (ws_repl_parse_xlog(msg, size, &m, &err) != 0) {
        check(err.code == WS_ERR_CORRUPT && strstr(err.msg, "streaming WAL") != NULL);
    } else if (m.type == WS_REPL_WAL) {
        check(size >= 25 && msg[0] == 'w' && m.data == msg + 25 && m.len == size - 25);
        check(m.wal_start + m.len >= m.wal_start);
    } else {
        check(m.type == WS_REPL_KEEPALIVE && size == 18 && msg[0] == 'k');
        check(m.reply_requested == 0 || m.reply_requested == 1);
    }
    free(msg);
    return 0;
}
