#include "log.h"

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

void ws_log_set_file(const char *path)
{
    if (log_fp) {
        fclose(log_fp);
        log_fp = NULL;
    }
    if (path && *path) {
        log_fp = fopen(path, "ae");
        if (!log_fp)
            fprintf(stderr, "%s: WARNING: could not open log file \"%s\": %m\n", prog, path);
    }
}

static void emit(int level, const char *line)
{
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
