/* repl.c - the replication session calls, through the session's ops (see repl.h). No libpq here:
 * repl_libpq.c holds the real session. */
#include "pg/repl.h"

#include <stdlib.h>
#include <string.h>

int ws_repl_connect(const struct ws_repl_ops *ops, const char *conninfo, struct ws_repl **out,
                    struct ws_error *err)
{
    int rc;

    *out = NULL;
    if (!ops)
        return ws_error_set(err, WS_ERR_INTERNAL, "no replication session implementation");
    if ((rc = ops->connect(conninfo, out, err)) == 0)
        (*out)->ops = ops;
    return rc;
}

void ws_repl_close(struct ws_repl *r)
{
    if (r)
        r->ops->close(r);
}

int ws_repl_identify(struct ws_repl *r, struct ws_repl_system *sys, struct ws_error *err)
{
    return r->ops->identify(r, sys, err);
}

int ws_repl_base_backup(struct ws_repl *r, const struct ws_repl_bb_opts *o,
                        struct ws_repl_bb_start *start, struct ws_error *err)
{
    return r->ops->base_backup(r, o, start, err);
}

int ws_repl_next(struct ws_repl *r, struct ws_repl_msg *msg, struct ws_error *err)
{
    return r->ops->next(r, msg, err);
}

void ws_repl_bb_start_free(struct ws_repl_bb_start *start)
{
    for (size_t i = 0; i < start->ntablespaces; i++)
        free(start->tablespaces[i].location);
    free(start->tablespaces);
    memset(start, 0, sizeof(*start));
}
