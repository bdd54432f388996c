/* timeline.c - parsing PostgreSQL's timeline history files (timeline.h). */
#include "pg/timeline.h"

#include <stdlib.h>
#include <string.h>

#include "pg/wal.h"

/* One line without its newline, leading blanks skipped, not a comment: its parent timeline and
 * switch LSN; -1 when it is malformed. Only the first fields count: a long reason is cut. */
static int parse_line(const char *line, size_t ll, struct ws_timeline_switch *sw)
{
    char buf[128], lsn[64];
    char *p = buf, *end;
    unsigned long tli;

    if (ll >= sizeof(buf))
        ll = sizeof(buf) - 1;
    memcpy(buf, line, ll);
    buf[ll] = '\0';
    tli = strtoul(p, &end, 10);
    if (end == p || (*end != '\t' && *end != ' ') || tli == 0 || tli > UINT32_MAX)
        return -1;
    p = end + strspn(end, " \t");
    ll = strcspn(p, " \t");
    if (ll == 0 || ll >= sizeof(lsn))
        return -1;
    memcpy(lsn, p, ll);
    lsn[ll] = '\0';
    if (ws_wal_parse_lsn(lsn, &sw->end_lsn) != 0)
        return -1;
    sw->tli = (uint32_t)tli;
    return 0;
}

int ws_timeline_history_parse(const char *text, size_t len, const char *what,
                              struct ws_timeline_switch **out, size_t *n, struct ws_error *err)
{
    struct ws_timeline_switch *v = NULL, sw;
    size_t cap = 0, cnt = 0, pos = 0, lineno = 0;
    int rc = 0;

    *out = NULL;
    *n = 0;
    while (pos < len) {
        const char *line = text + pos, *nl = memchr(line, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - line) : len - pos;

        pos += ll + (nl ? 1 : 0);
        lineno++;
        while (ll && (line[0] == ' ' || line[0] == '\t'))
            line++, ll--;
        if (ll == 0 || line[0] == '#')
            continue;
        /* PostgreSQL: timeline IDs must be in increasing sequence */
        if (parse_line(line, ll, &sw) != 0 || (cnt && sw.tli <= v[cnt - 1].tli)) {
            rc = ws_error_set(err, WS_ERR_CORRUPT, "invalid data in history file %s, line %zu",
                              what, lineno);
            goto out;
        }
        if (cnt == cap) {
            size_t nc = cap ? cap * 2 : 8;
            void *q = realloc(v, nc * sizeof(*v));
            if (!q) {
                rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
                goto out;
            }
            v = q;
            cap = nc;
        }
        v[cnt++] = sw;
    }
    *out = v;
    *n = cnt;
    v = NULL;
out:
    free(v);
    return rc;
}
