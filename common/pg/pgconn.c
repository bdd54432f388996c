/* pgconn.c - the PostgreSQL session calls, through the session's ops (see pgconn.h). No libpq
 * here: pgconn_libpq.c holds the real session. */
#include "pg/pgconn.h"

#include <stdlib.h>
#include <string.h>

int ws_pg_connect(const struct ws_pg_ops *ops, const char *conninfo, struct ws_pg **out,
                  struct ws_error *err)
{
    int rc;

    *out = NULL;
    if (!ops)
        return ws_error_set(err, WS_ERR_INTERNAL, "no PostgreSQL session implementation");
    if ((rc = ops->connect(conninfo, out, err)) == 0)
        (*out)->ops = ops;
    return rc;
}

void ws_pg_close(struct ws_pg *pg)
{
    if (pg)
        pg->ops->close(pg);
}

int ws_pg_get_info(struct ws_pg *pg, struct ws_pg_info *info, struct ws_error *err)
{
    return pg->ops->get_info(pg, info, err);
}

void ws_pg_info_free(struct ws_pg_info *info)
{
    free(info->data_directory);
    free(info->archive_mode);
    free(info->archive_command);
    free(info->archive_library);
    memset(info, 0, sizeof(*info));
}

int ws_pg_switch_wal(struct ws_pg *pg, char **walfile, struct ws_error *err)
{
    return pg->ops->switch_wal(pg, walfile, err);
}

int ws_pg_backup_start(struct ws_pg *pg, int version, const char *label, int fast,
                       uint64_t *start_lsn, struct ws_error *err)
{
    return pg->ops->backup_start(pg, version, label, fast, start_lsn, err);
}

int ws_pg_backup_stop(struct ws_pg *pg, int version, uint64_t *stop_lsn, char **labelfile,
                      char **spcmap, struct ws_error *err)
{
    return pg->ops->backup_stop(pg, version, stop_lsn, labelfile, spcmap, err);
}

int ws_pg_get_access(struct ws_pg *pg, int version, struct ws_pg_access *access,
                     struct ws_error *err)
{
    return pg->ops->get_access(pg, version, access, err);
}

int ws_pg_get_archiver(struct ws_pg *pg, const char *slot_name, struct ws_pg_archiver *out,
                       struct ws_error *err)
{
    memset(out, 0, sizeof(*out));
    out->ready = -1;
    if (!pg->ops->get_archiver)
        return ws_error_set(err, WS_ERR_INTERNAL, "this session cannot read the archiver's state");
    return pg->ops->get_archiver(pg, slot_name, out, err);
}

void ws_pg_access_free(struct ws_pg_access *access)
{
    free(access->role);
    memset(access, 0, sizeof(*access));
}

const char *ws_pg_function(int version, enum ws_pg_func f)
{
    if (f == WS_PG_BACKUP_START)
        return version >= 150000 ? "pg_backup_start(text, boolean)"
                                 : "pg_start_backup(text, boolean, boolean)";
    if (f == WS_PG_BACKUP_STOP)
        return version >= 150000 ? "pg_backup_stop(boolean)" : "pg_stop_backup(boolean, boolean)";
    return "pg_switch_wal()";
}

void ws_pg_names_free(char **names, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        free(names[i]);
    free(names);
}
