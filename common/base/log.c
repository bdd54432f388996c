#include "base/log.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *prog = "walsafe";
static int cur_level = WS_LOG_WARNING;
static FILE *log_fp;

static const char *const level_names[] = {"ERROR", "WARNING", "INFO", "DEBUG"};

void ws_log_init(const char *progname)
{
    prog = progname;
}

void ws_log_set_level(int level)
{
    cur_level = level;
}

int ws_log_get_level(void)
{
    return cur_level;
}

char *ws_log_escape(const char *in, char *out, size_t outsz)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    if (outsz == 0)
        return out;
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        char e[4];
        size_t n = 0;
        if (*p == '\n')
            e[n++] = '\\', e[n++] = 'n';
        else if (*p == '\r')
            e[n++] = '\\', e[n++] = 'r';
        else if (*p == '\t')
            e[n++] = '\\', e[n++] = 't';
        else if (*p < 0x20 || *p == 0x7f)
            e[n++] = '\\', e[n++] = 'x', e[n++] = hex[*p >> 4], e[n++] = hex[*p & 15];
        else
            e[n++] = (char)*p;
        if (o + n >= outsz) { /* no room: end in "..." */
            int dots = 0;
            if (outsz >= 4 && o > outsz - 4)
                o = outsz - 4;
            while (o + 1 < outsz && dots++ < 3)
                out[o++] = '.';
            break;
        }
        memcpy(out + o, e, n);
        o += n;
    }
    out[o] = '\0';
    return out;
}

/* Every line goes out here, escaped (log.h). */
static void emit(int level, const char *text)
{
    char line[8192];

    ws_log_escape(text, line, sizeof(line));
    fprintf(stderr, "%s: %s: %s\n", prog, level_names[level], line);
    if (log_fp) {
        char ts[32];
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
        fprintf(log_fp, "%s %s: %s: %s\n", ts, prog, level_names[level], line);
        fflush(log_fp);
    }
}

void ws_log_set_file(const char *path)
{
    if (log_fp) {
        fclose(log_fp);
        log_fp = NULL;
    }
    if (path && *path) {
        log_fp = fopen(path, "ae");
        if (!log_fp) {
            char msg[PATH_MAX + 256];
            snprintf(msg, sizeof(msg), "could not open log file \"%s\": %s", path, strerror(errno));
            emit(WS_LOG_WARNING, msg);
        }
    }
}

void ws_log(int level, const char *fmt, ...)
{
    char line[2048];
    va_list ap;

    if (level > cur_level)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    emit(level, line);
}

void ws_log_error(const struct ws_error *err)
{
    emit(WS_LOG_ERROR, err->msg[0] ? err->msg : "unknown error");
}
