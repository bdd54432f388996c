/*
 * The log writer (log.h): every line on stderr and in log_file is escaped, so text from outside
 * (a file name, an S3 error message) with a newline cannot forge a line of its own, and
 * ws_log_escape's bounds.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "unit.h"

static const char FORGED[] = "LOG:  database system is ready to accept connections";

/* Runs fn with stderr redirected into a file; returns what was written (caller frees). */
static char *capture_stderr(void (*fn)(const char *), const char *arg)
{
    char path[512], *text = NULL;
    int fd, saved;
    long n;
    FILE *f;

    snprintf(path, sizeof(path), "%s/stderr.%d", unit_tmpdir(), getpid());
    fflush(stderr);
    saved = dup(2);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (saved < 0 || fd < 0 || dup2(fd, 2) < 0)
        return NULL;
    close(fd);
    fn(arg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    if (!(f = fopen(path, "r")))
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    if (n >= 0 && (text = calloc(1, (size_t)n + 1)) && fread(text, 1, (size_t)n, f) != (size_t)n) {
        free(text);
        text = NULL;
    }
    fclose(f);
    return text;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void log_warning(const char *name)
{
    ws_log_warning("could not open file \"%s\": No such file or directory", name);
}

static void log_error(const char *msg)
{
    struct ws_error err = {0};
    ws_error_set(&err, WS_ERR_STORAGE, "S3 request failed: %s", msg);
    ws_log_error(&err);
}

static void test_lines_escaped(void)
{
    char name[256], *out;

    ws_log_init("test_log");
    snprintf(name, sizeof(name), "/tmp/x\n%s\r\x1b[2J\t\x7f", FORGED);
    out = capture_stderr(log_warning, name);
    REQUIRE(out != NULL);
    CHECK(count_lines(out) == 1);
    CHECK(strstr(out, "\\nLOG:  database system is ready") != NULL);
    CHECK(strstr(out, "\\r\\x1b[2J\\t\\x7f\"") != NULL);
    CHECK(strchr(out, '\x1b') == NULL && strchr(out, '\r') == NULL);
    free(out);

    out = capture_stderr(log_error, "Access Denied\nLOG:  forged");
    REQUIRE(out != NULL);
    CHECK(count_lines(out) == 1);
    CHECK(strcmp(out, "test_log: ERROR: S3 request failed: Access Denied\\nLOG:  forged\n") == 0);
    free(out);
}

static void test_log_file_escaped(void)
{
    char path[512], name[128], text[1024];
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "%s/walsafe.log", unit_tmpdir());
    ws_log_set_file(path);
    snprintf(name, sizeof(name), "a\n%s", FORGED);
    free(capture_stderr(log_warning, name));
    ws_log_set_file(NULL);
    REQUIRE((f = fopen(path, "r")) != NULL);
    n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    CHECK(count_lines(text) == 1);
    CHECK(strstr(text, "a\\nLOG:") != NULL);
}

static void test_escape_bounds(void)
{
    char out[16];

    CHECK(strcmp(ws_log_escape("plain ascii", out, sizeof(out)), "plain ascii") == 0);
    CHECK(strcmp(ws_log_escape("caf\xc3\xa9", out, sizeof(out)), "caf\xc3\xa9") == 0);
    CHECK(strcmp(ws_log_escape("\x01\x1f", out, sizeof(out)), "\\x01\\x1f") == 0);
    /* too long: cut, and the cut is visible */
    CHECK(strcmp(ws_log_escape("0123456789abcdefghij", out, sizeof(out)), "0123456789ab...") == 0);
    /* an escape is never cut in half */
    CHECK(strcmp(ws_log_escape("0123456789abcd\n", out, sizeof(out)), "0123456789ab...") == 0);
    CHECK(strcmp(ws_log_escape("0123456789abc\n", out, sizeof(out)), "0123456789abc\\n") == 0);
    CHECK(strcmp(ws_log_escape("\n\n\n\n\n\n\n\n", out, sizeof(out)), "\\n\\n\\n\\n\\n\\n...") ==
          0);
    CHECK(strcmp(ws_log_escape("abcdef", out, 4), "...") == 0);
    CHECK(strcmp(ws_log_escape("abcdef", out, 2), "a") == 0); /* too small for "..." */
    CHECK(strcmp(ws_log_escape("ab", out, 3), "ab") == 0);
    out[0] = 'x';
    ws_log_escape("abc", out, 0); /* writes nothing */
    CHECK(out[0] == 'x');
}

const struct unit_test unit_tests[] = {
    {"lines_escaped", test_lines_escaped},
    {"log_file_escaped", test_log_file_escaped},
    {"escape_bounds", test_escape_bounds},
    {NULL, NULL},
};
