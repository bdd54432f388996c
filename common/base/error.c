#include "base/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

__attribute__((format(printf, 2, 0))) static void set_msg(struct ws_error *err, const char *fmt,
                                                          va_list ap)
{
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
}

int ws_error_set(struct ws_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        err->sys_errno = 0;
        err->retryable = 0;
        set_msg(err, fmt, ap);
        va_end(ap);
    }
    return code;
}

int ws_error_setsys(struct ws_error *err, int code, int errnum, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        size_t len;
        va_start(ap, fmt);
        err->code = code;
        err->sys_errno = errnum;
        err->retryable = 0;
        set_msg(err, fmt, ap);
        va_end(ap);
        len = strlen(err->msg);
        snprintf(err->msg + len, sizeof(err->msg) - len, ": %s", strerror(errnum));
    }
    return code;
}

int ws_error_prefix(struct ws_error *err, const char *fmt, ...)
{
    char old[sizeof(err->msg)];
    size_t len;
    va_list ap;

    memcpy(old, err->msg, sizeof(old));
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    len = strlen(err->msg);
    snprintf(err->msg + len, sizeof(err->msg) - len, ": %s", old);
    return err->code;
}

const char *ws_code_name(int code)
{
    static const char *const names[] = {
        "OK",     "INTERNAL", "USAGE",   "CONFIG", "IO",      "INVALID",  "NOT_FOUND",
        "EXISTS", "STORAGE",  "CORRUPT", "KEY",    "FOREIGN", "CONFLICT",
    };
    if (code < 0 || (size_t)code >= sizeof(names) / sizeof(names[0]))
        return "?";
    return names[code];
}
