/*
 * log.h - one line per event on stderr (which PostgreSQL puts in its log), optionally also
 * appended with a UTC timestamp to log_file.
 *
 * Lines look like "wal-push: WARNING: ..." so an operator can grep the server log. Messages
 * never contain secrets: callers pass file names, object keys and causes only.
 *
 * Every line is written through ws_log_escape() at this one output point, so text from outside
 * (file names, S3 error messages, manifest paths) can never start a line of its own: a newline
 * in a file name cannot forge a PostgreSQL log line, an ESC cannot drive the operator's
 * terminal. Our own format strings hold no control characters, so escaping the whole line
 * changes only what came from outside.
 */
#ifndef WS_LOG_H
#define WS_LOG_H

#include "base/error.h"

enum ws_log_level { WS_LOG_ERROR = 0, WS_LOG_WARNING, WS_LOG_INFO, WS_LOG_DEBUG };

/* Sets the program name used as prefix; call once from main(). */
void ws_log_init(const char *progname);
void ws_log_set_level(int level);
int ws_log_get_level(void);
/* Also append to this file (NULL stops). Failure to open it is reported once on stderr. */
void ws_log_set_file(const char *path);

void ws_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define ws_log_warning(...) ws_log(WS_LOG_WARNING, __VA_ARGS__)
#define ws_log_info(...) ws_log(WS_LOG_INFO, __VA_ARGS__)
#define ws_log_debug(...) ws_log(WS_LOG_DEBUG, __VA_ARGS__)
/* Logs err->msg at ERROR level. */
void ws_log_error(const struct ws_error *err);

/*
 * Copies `in` into out[outsz] (always NUL-terminated) with every control character (bytes below
 * 0x20, and 0x7f) written as an escape: \n, \r, \t, else \xHH (ESC is \x1b). Other bytes,
 * UTF-8 included, pass unchanged. Output that does not fit ends in "..." instead. Returns out.
 */
char *ws_log_escape(const char *in, char *out, size_t outsz);

#endif
