/*
 * session.h - an archiving session for a long-lived caller (the walsafe_archive module, which
 * PostgreSQL's archiver process loads): the configuration, the keys and one open repository
 * (its storage handle: S3 connection, SFTP session) are kept from one WAL file to the next.
 *
 * ws_archive_session_push(s, config_path, wal_path, ...) gives exactly wal-push's guarantees for
 * wal_path, through the same call (ws_archive_push_in: identity check, duplicate rule, durable
 * before it returns 0, `retries` attempts): 0 only when the file is durably in the repository,
 * or an identical copy already was. Before the push it loads the configuration (from
 * config_path, then WALSAFE_* variables, as wal-push --config does) and the keys when none is
 * loaded, when config_path differs from the last one, when the file's metadata changed (inode,
 * size, mtime or ctime) or after ws_archive_session_reload(). A configuration that cannot be
 * loaded is the call's error (WS_ERR_CONFIG naming the file) and is tried again on the next
 * call; nothing is archived with it. After any failed push the repository is closed and the
 * next call opens it anew (a broken connection is never reused). Every error names the WAL file
 * or the configuration file.
 *
 * Push-ahead (parallel > 1, wal_path "<dir>/X" with <dir>/archive_status/X.ready): while X is
 * pushed, parallel - 1 threads push the next ready files in the archiver's order (pushahead.h),
 * one each, one attempt each, with a storage handle each kept in the session; they block every
 * signal and are joined before the call returns X's result. A file so stored gets a record in
 * memory (pushahead.h's record); the later call for it returns 0 when the file read then
 * matches it (ws_pushahead_record_check), else pushes it as usual (a WARNING). No spool.
 *
 * Memory: malloc'ed and freed by the library; a push allocates nothing that outlives it but
 * bounded session state (at most WS_PUSHAHEAD_MAX_BATCH records), so the footprint does not
 * grow with the number of files. One session per thread. The library never calls its caller.
 */
#ifndef WS_ARCHIVE_SESSION_H
#define WS_ARCHIVE_SESSION_H

#include "archive/archive.h"
#include "base/error.h"

struct ws_archive_session;

/* A new session with nothing loaded; NULL when out of memory. */
struct ws_archive_session *ws_archive_session_new(void);
/* Closes the repository, wipes the keys, frees the configuration and s (NULL is fine). */
void ws_archive_session_free(struct ws_archive_session *s);
/* The next push loads the configuration and keys again (the caller's SIGHUP). */
void ws_archive_session_reload(struct ws_archive_session *s);

int ws_archive_session_push(struct ws_archive_session *s, const char *config_path,
                            const char *wal_path, struct ws_push_result *res, struct ws_error *err);

/* What the session did so far (for the module's log lines and the tests). */
struct ws_archive_session_stats {
    unsigned config_loads; /* configuration loads tried */
    unsigned repo_opens;   /* the main repository handle opened */
    unsigned pushed_ahead; /* files stored by push-ahead threads */
    unsigned ahead_used;   /* calls answered by a verified push-ahead record */
};
void ws_archive_session_stats(const struct ws_archive_session *s,
                              struct ws_archive_session_stats *out);

#endif
