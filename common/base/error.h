/*
 * error.h - errors as values.
 *
 * Every fallible function in libwalsafe returns 0 on success or a negative-free ws_code, and
 * fills a caller-owned struct ws_error with the code, the errno that caused it (0 if none) and
 * one PostgreSQL-style message line ("could not open file \"%s\": %s"). Only main.c prints an
 * error and picks the exit status from its code.
 *
 *     struct ws_error err = {0};
 *     if (ws_config_load(&cfg, path, &err) != 0)
 *         ws_log_error(&err);
 *
 * A function that fails sets the error exactly once, at the place that knows the cause; callers
 * pass it up unchanged or add context with ws_error_prefix().
 */
#ifndef WS_ERROR_H
#define WS_ERROR_H

#include <stddef.h>

enum ws_code {
    WS_OK = 0,
    WS_ERR_INTERNAL,  /* a bug or out of memory */
    WS_ERR_USAGE,     /* bad command line */
    WS_ERR_CONFIG,    /* bad configuration, key file or permissions */
    WS_ERR_IO,        /* local file I/O failed (the WAL file, DEST_PATH, ...) */
    WS_ERR_INVALID,   /* the input is not what it must be (not a WAL file, wrong size) */
    WS_ERR_NOT_FOUND, /* storage was reached and does not hold the object */
    WS_ERR_EXISTS,    /* storage already holds an object under that name */
    WS_ERR_STORAGE,   /* storage could not be reached or failed (after retries) */
    WS_ERR_CORRUPT,   /* an object failed verification: tampered, truncated, foreign */
    WS_ERR_KEY,       /* no key, or the wrong key, for an encrypted object */
    WS_ERR_FOREIGN,   /* the WAL file or cluster belongs to another system */
    WS_ERR_CONFLICT,  /* different content already stored under the name */
};

struct ws_error {
    int code;
    int sys_errno;
    int retryable; /* a network driver's transient failure: worth repeating the operation */
    char msg[1024];
};

/* Sets err (if not NULL) and returns code, so callers can write `return ws_error_set(...)`. */
int ws_error_set(struct ws_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Like ws_error_set, with ": <strerror(errnum)>" appended and sys_errno = errnum. */
int ws_error_setsys(struct ws_error *err, int code, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Prepends "<context>: " to the message, keeping code and errno. Returns err->code. */
int ws_error_prefix(struct ws_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Short name of a code, for tests and debug logs. */
const char *ws_code_name(int code);

#endif
