/*
 * fuzz_known_hosts - known_hosts files (known_hosts.h). Input: one byte choosing the port (22,
 * 2222 or another), one byte L, L bytes of the key the server presents, then the file. Whatever
 * the input: no read outside it, a verdict of the enum with a line number only when a line
 * decided, and ws_known_hosts_plain()'s length the same whatever the buffer, its text whole
 * lines when it fits.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "storage/known_hosts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int ports[] = {22, 2222, 0, 65535};
    struct ws_kh_result r;
    size_t keylen, need, got;
    const char *text;
    char *out;
    int port;

    if (size < 2)
        return 0;
    port = ports[data[0] & 3];
    keylen = data[1];
    if (size - 2 < keylen)
        return 0;
    text = (const char *)data + 2 + keylen;
    size -= 2 + keylen;
    ws_known_hosts_check(text, size, "127.0.0.1", port, data + 2, keylen, &r);
    if (r.verdict > WS_KH_REVOKED || ((r.verdict == WS_KH_UNKNOWN) != (r.line == 0)))
        abort();
    need = ws_known_hosts_plain(text, size, "127.0.0.1", port, NULL, 0);
    if (!(out = malloc(need + 1)))
        return 0;
    got = ws_known_hosts_plain(text, size, "127.0.0.1", port, out, need + 1);
    if (got != need || strlen(out) != need || (need && out[need - 1] != '\n'))
        abort();
    got = ws_known_hosts_plain(text, size, "127.0.0.1", port, out, need / 2 + 1);
    if (got != need || (strlen(out) && out[strlen(out) - 1] != '\n'))
        abort();
    free(out);
    return 0;
}
