/*
 * fuzz_timeline: a timeline history file (pg/timeline.h) as wal-prune reads it back from a
 * repository, where a damaged or foreign file may hold anything.
 *
 * The whole input is the file's text (not NUL-terminated: the parser must read len bytes only).
 * Properties: no crash, leak or undefined behaviour; a refusal is WS_ERR_CORRUPT naming the file
 * (or WS_ERR_INTERNAL, out of memory) and returns nothing; an accepted file gives non-zero,
 * strictly increasing timelines, and the text PostgreSQL would write for them parses back to the
 * very same switches.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg/timeline.h"
#include "pg/wal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

/* The switches as PostgreSQL writes them: "<tli>\t<lsn>\t<reason>\n". */
static char *format(const struct ws_timeline_switch *v, size_t n, size_t *len)
{
    char *text = malloc(n * 64 + 1), lsn[24];
    size_t i;

    if (!text)
        return NULL;
    *len = 0;
    for (i = 0; i < n; i++) {
        ws_wal_format_lsn(lsn, v[i].end_lsn);
        *len += (size_t)snprintf(text + *len, 64, "%u\t%s\tno recovery target specified\n",
                                 (unsigned)v[i].tli, lsn);
    }
    return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ws_timeline_switch *v = NULL, *v2 = NULL;
    struct ws_error err = {0};
    size_t n = 0, n2 = 0, len, i;
    char *text;

    if (ws_timeline_history_parse((const char *)data, size, "fuzz.history", &v, &n, &err) != 0) {
        check(v == NULL && n == 0);
        check((err.code == WS_ERR_CORRUPT && strstr(err.msg, "fuzz.history")) ||
              err.code == WS_ERR_INTERNAL);
        return 0;
    }
    check((n == 0) == (v == NULL));
    for (i = 0; i < n; i++)
        check(v[i].tli != 0 && (i == 0 || v[i].tli > v[i - 1].tli));
    if ((text = format(v, n, &len)) != NULL) {
        if (ws_timeline_history_parse(text, len, "fuzz (formatted)", &v2, &n2, &err) == 0) {
            check(n2 == n);
            for (i = 0; i < n; i++)
                check(v2[i].tli == v[i].tli && v2[i].end_lsn == v[i].end_lsn);
        } else {
            check(err.code == WS_ERR_INTERNAL);
        }
        free(text);
    }
    free(v2);
    free(v);
    return 0;
}
