/*
 * status_int.h - what the units of `basebackup status` share (ops/status.c, status_pg.c,
 * status_spool.c, status_out.c). Not for other modules: they use status.h.
 *
 * Each gather fills its part of s and records in that part's `error` why it could not (never
 * an error return but for out of memory, WS_ERR_INTERNAL).
 */
#ifndef WS_OPS_STATUS_INT_H
#define WS_OPS_STATUS_INT_H

#include "ops/status.h"

/* The server of cfg->pg_conninfo: s->server (ops/status_pg.c). */
void ws_status_gather_server(const struct ws_config *cfg, const struct ws_pg_ops *ops,
                             struct ws_status *s);
/* <spool_dir>/<cluster>/, read only: s->spool (ops/status_spool.c). */
void ws_status_gather_spool(const struct ws_config *cfg, struct ws_status *s);

#endif
