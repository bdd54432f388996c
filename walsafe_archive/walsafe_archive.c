/*
 * walsafe_archive - PostgreSQL 15+ archive module: archive_library = 'walsafe_archive'
 *
 * The archiver process loads it once and calls archive_file_cb for each WAL file; every call
 * archives the file through one kept session (archive/session.h: wal-push's push, with the
 * configuration, keys and repository connection kept between files). true only when the file is
 * durably in the repository (or an identical copy already was); else one WARNING line with the
 * library's message and false, so PostgreSQL keeps the file and retries. With parallel > 1 the
 * call also pushes the next ready files on threads that are joined before it returns (session.h).
 *
 * GUC walsafe.config (PGC_SIGHUP): the walsafe configuration file, default /etc/walsafe.conf.
 * The library never calls PostgreSQL: no ereport or palloc happens inside its frames, so no
 * longjmp crosses them. Design: docs/design/archive-module.md.
 */
#include "postgres.h"

#include "fmgr.h"
#include "postmaster/pgarch.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "archive/session.h"
#include "base/config.h"
#include "base/log.h"

PG_MODULE_MAGIC;

void _PG_init(void);
void _PG_archive_module_init(ArchiveModuleCallbacks *cb);

static char *walsafe_config = NULL;
static struct ws_archive_session *session = NULL;
static MemoryContext file_context = NULL; /* reset after every file */

/* A new value (a reload that changed it): the next file loads the configuration again. */
static void walsafe_config_assign(const char *newval, void *extra)
{
    (void)newval;
    (void)extra;
    if (session)
        ws_archive_session_reload(session);
}

void _PG_init(void)
{
    DefineCustomStringVariable("walsafe.config", "Path of the walsafe configuration file.",
                               "Read by the walsafe_archive module in the archiver process; "
                               "reloaded when it or this setting changes.",
                               &walsafe_config, WS_DEFAULT_CONFIG, PGC_SIGHUP, 0, NULL,
                               walsafe_config_assign, NULL);
    MarkGUCPrefixReserved("walsafe");
    ws_log_init("walsafe_archive");
}

static bool walsafe_check_configured(void)
{
    return walsafe_config != NULL && walsafe_config[0] != '\0';
}

static bool walsafe_archive_file(const char *file, const char *path)
{
    struct ws_push_result res;
    struct ws_error err = {0};
    char line[sizeof(err.msg) + 64];
    MemoryContext old;
    struct ws_archive_session_stats before, after;
    int rc;

    if (!session && !(session = ws_archive_session_new())) {
        ereport(WARNING, (errmsg("could not archive WAL file \"%s\": out of memory", file)));
        return false;
    }
    if (!file_context)
        file_context =
            AllocSetContextCreate(TopMemoryContext, "walsafe_archive", ALLOCSET_SMALL_SIZES);
    old = MemoryContextSwitchTo(file_context);
    ws_archive_session_stats(session, &before);
    rc = ws_archive_session_push(session, walsafe_config, path, &res, &err);
    ws_archive_session_stats(session, &after);
    if (rc != 0) /* escaped as the library's own log lines are: text from outside stays one line */
        ereport(WARNING, (errmsg("%s", ws_log_escape(err.msg, line, sizeof(line)))));
    else if (after.config_loads != before.config_loads || after.repo_opens != before.repo_opens)
        ereport(LOG, (errmsg("walsafe_archive: %s \"%s\", repository session opened",
                             after.config_loads != before.config_loads ? "configuration loaded from"
                                                                       : "configuration kept from",
                             ws_log_escape(walsafe_config, line, sizeof(line)))));
    else if (res.duplicate)
        ereport(DEBUG1,
                (errmsg("WAL file \"%s\" was already archived with identical content", file)));
    MemoryContextSwitchTo(old);
    MemoryContextReset(file_context);
    return rc == 0;
}

/* The archiver exits: close the repository, wipe the keys. */
static void walsafe_shutdown(void)
{
    ws_archive_session_free(session);
    session = NULL;
}

void _PG_archive_module_init(ArchiveModuleCallbacks *cb)
{
    AssertVariableIsOfType(&_PG_archive_module_init, ArchiveModuleInit);
    cb->check_configured_cb = walsafe_check_configured;
    cb->archive_file_cb = walsafe_archive_file;
    cb->shutdown_cb = walsafe_shutdown;
}
