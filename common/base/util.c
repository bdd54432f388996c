#include "base/util.h"

#include <ctype.h>
#include <string.h>
#include <time.h>

void ws_hex(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int ws_unhex(const char *s, uint8_t *out, size_t n)
{
    if (strlen(s) != 2 * n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int hi = hexval((unsigned char)s[2 * i]), lo = hexval((unsigned char)s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

int ws_path_join(char *out, size_t outsz, const char *dir, const char *name)
{
    int n = snprintf(out, outsz, "%s%s%s", dir, *dir ? "/" : "", name);

    return n < 0 || (size_t)n >= outsz ? -1 : 0;
}

int ws_list_next(const char **p, char *out, size_t outsz)
{
    while (**p) {
        size_t n = strcspn(*p, ",");
        const char *s = *p, *e = *p + n;
        *p += n + (s[n] == ',');
        while (s < e && isspace((unsigned char)*s))
            s++;
        while (e > s && isspace((unsigned char)e[-1]))
            e--;
        if (e == s)
            continue;
        if ((size_t)(e - s) >= outsz)
            return -1;
        memcpy(out, s, (size_t)(e - s));
        out[e - s] = '\0';
        return 1;
    }
    return 0;
}

const char *ws_base_name(const char *path)
{
    const char *slash = strrchr(path, '/');

    return slash ? slash + 1 : path;
}

void ws_format_bytes(uint64_t v, char *out, size_t n)
{
    static const char *const u[] = {"B", "kB", "MB", "GB", "TB", "PB"};
    double d = (double)v;
    int i = 0;

    while (d >= 1024 && i < 5) {
        d /= 1024;
        i++;
    }
    snprintf(out, n, i ? "%.1f %s" : "%.0f %s", d, u[i]);
}

void ws_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

int64_t ws_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double ws_now_monotonic(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void ws_format_utc(int64_t t, char out[21])
{
    time_t tt = (time_t)t;
    struct tm tm;

    gmtime_r(&tt, &tm);
    strftime(out, 21, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int ws_parse_utc(const char *s, int64_t *t)
{
    struct tm tm = {0};
    char back[21];
    char *end;

    if (strlen(s) != 20)
        return -1;
    end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (!end || *end)
        return -1;
    *t = (int64_t)timegm(&tm);
    /* strptime takes day 31 in any month and second 61: only dates that exist round-trip */
    ws_format_utc(*t, back);
    return strcmp(back, s) == 0 ? 0 : -1;
}
