/*
 * Timeline history files (pg/timeline.h): the lines PostgreSQL writes, comments, blanks and
 * leading blanks, a reason longer than the line buffer, CRLF and a missing final newline; and the
 * malformed lines a damaged file holds, each refused with the file's name and the line number.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg/timeline.h"
#include "unit.h"

static void test_parse(void)
{
    static const char good[] = "# comment\n"
                               "1\t0/3000158\tno recovery target specified\n"
                               "\n"
                               "2\t1/A0000000\tat restore point \"x\"\n"
                               "  5 2/0 before 2000-01-01 00:00:00+00";
    struct ws_timeline_switch *v = NULL;
    struct ws_error err = {0};
    size_t n = 0;

    REQUIRE(ws_timeline_history_parse(good, strlen(good), "00000006.history", &v, &n, &err) == 0);
    REQUIRE(n == 3);
    CHECK(v[0].tli == 1 && v[0].end_lsn == 0x3000158);
    CHECK(v[1].tli == 2 && v[1].end_lsn == UINT64_C(0x1A0000000));
    CHECK(v[2].tli == 5 && v[2].end_lsn == UINT64_C(0x200000000));
    free(v);
    REQUIRE(ws_timeline_history_parse("", 0, "e", &v, &n, &err) == 0);
    CHECK(n == 0 && v == NULL);
    REQUIRE(ws_timeline_history_parse("# only\n\n  \t\n", 12, "e", &v, &n, &err) == 0);
    CHECK(n == 0 && v == NULL);
}

/* What PostgreSQL writes after many switches, reasons of every length, CRLF line ends. */
static void test_parse_long(void)
{
    char text[64 * 1024], reason[300];
    struct ws_timeline_switch *v = NULL;
    struct ws_error err = {0};
    size_t len = 0, n = 0, i;

    memset(reason, 'r', sizeof(reason) - 1);
    reason[sizeof(reason) - 1] = '\0';
    for (i = 1; i <= 100; i++) {
        int k = snprintf(text + len, sizeof(text) - len, "%zu\t%zX/%zX\t%.*s\r\n", i, i, i * 40,
                         (int)(i * 3), reason);
        REQUIRE(k > 0 && (size_t)k < sizeof(text) - len);
        len += (size_t)k;
    }
    REQUIRE(ws_timeline_history_parse(text, len, "00000065.history", &v, &n, &err) == 0);
    REQUIRE(n == 100);
    for (i = 0; i < n; i++)
        CHECK(v[i].tli == i + 1 && v[i].end_lsn == ((uint64_t)(i + 1) << 32 | (i + 1) * 40));
    free(v);
    /* not NUL-terminated: the parser reads len bytes, no more */
    REQUIRE(ws_timeline_history_parse("1\t0/10\tx2\t0/20", 7, "x", &v, &n, &err) == 0);
    CHECK(n == 1 && v[0].tli == 1 && v[0].end_lsn == 0x10);
    free(v);
}

static void test_parse_bad(void)
{
    static const struct {
        const char *text;
        size_t line;
    } bad[] = {
        {"1 0/3000158\n0 1/0\n", 2},      /* timeline 0 */
        {"2\t0/1\tx\n1\t0/2\tx\n", 2},    /* not increasing */
        {"2\t0/1\tx\n2\t0/2\tx\n", 2},    /* repeated */
        {"1\tnot-an-lsn\tx\n", 1},        /* LSN */
        {"x\t0/1\n", 1},                  /* no number */
        {"1\n", 1},                       /* no LSN */
        {"1\t0/1\tok\n3\t\n", 2},         /* second line without LSN */
        {"1\t0/1\tok\n\n# c\n3x 0/2", 4}, /* junk after the number, comments counted */
        {"-1\t0/1\n", 1},                 /* negative */
        {"4294967296\t0/1\n", 1},         /* above UINT32_MAX */
        {"1\t0/1/2\tx\n", 1},             /* not an LSN either */
    };
    struct ws_timeline_switch *v;
    struct ws_error err;
    size_t n, i;
    char want[64];

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        v = (struct ws_timeline_switch *)&err; /* must be reset */
        n = 42;
        memset(&err, 0, sizeof(err));
        CHECK(ws_timeline_history_parse(bad[i].text, strlen(bad[i].text), "00000009.history", &v,
                                        &n, &err) == WS_ERR_CORRUPT);
        snprintf(want, sizeof(want), "history file 00000009.history, line %zu", bad[i].line);
        if (!strstr(err.msg, want))
            unit_fail(__FILE__, __LINE__, bad[i].text);
        CHECK(v == NULL && n == 0);
    }
}

const struct unit_test unit_tests[] = {
    {"parse", test_parse},
    {"parse_long", test_parse_long},
    {"parse_bad", test_parse_bad},
    {NULL, NULL},
};
