/* ops/status_pg.c - basebackup status: what the server says about archiving (status.h). */
#include <stdio.h>
#include <string.h>

#include "ops/status_int.h"
#include "pg/wal.h"

void ws_status_gather_server(const struct ws_config *cfg, const struct ws_pg_ops *ops,
                             struct ws_status *s)
{
    struct ws_status_server *sv = &s->server;
    struct ws_pg_archiver *a = &sv->a;
    struct ws_pg *pg = NULL;
    struct ws_error e = {0};
    uint32_t seg_size;

    if (ws_pg_connect(ops, cfg->pg_conninfo, &pg, &e) != 0) {
        snprintf(sv->error, sizeof(sv->error), "%s", e.msg);
        return;
    }
    sv->reached = 1;
    if (ws_pg_get_archiver(pg, s->slot_name, a, &e) != 0) {
        snprintf(sv->error, sizeof(sv->error), "%s", e.msg);
        goto out;
    }
    seg_size = a->wal_segment_size ? a->wal_segment_size : s->repo.seg_size;
    if (a->has_current && a->last_archived_wal[0])
        sv->has_lag = ws_status_archive_lag(a->current_lsn, a->last_archived_wal, seg_size,
                                            &sv->lag_segments, &sv->lag_bytes) == 0;
    if (a->has_current && a->slot_exists && a->slot_restart_lsn) {
        sv->has_slot_lag = 1;
        sv->slot_lag_bytes =
            a->current_lsn > a->slot_restart_lsn ? a->current_lsn - a->slot_restart_lsn : 0;
    }
out:
    ws_pg_close(pg);
}
