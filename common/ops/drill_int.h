/*
 * drill_int.h - what drill.c (the drill's steps, its work directory, its user, the report) and
 * drill_server.c (the PostgreSQL server of a drill, its clients and the checks that use them)
 * share. Not for use outside ops/drill*.c.
 */
#ifndef WS_OPS_DRILL_INT_H
#define WS_OPS_DRILL_INT_H

#include <limits.h>
#include <stdint.h>
#include <sys/types.h>

#include "ops/drill.h"
#include "repo/catalog.h"

enum { CK_RESTORE = 0, CK_RECOVERY, CK_WAL_END, CK_CONNECT, CK_AMCHECK, CK_N };
enum { CHECK_NOT_RUN = 0, CHECK_PASSED, CHECK_FAILED, CHECK_SKIPPED };

struct drill_check {
    int state;
    char detail[1200];
};

struct drill {
    const struct ws_config *cfg;
    const struct ws_backup_env *env;
    const struct ws_drill_opts *o;
    char dir[128];     /* the work directory: socket, logs, settings (a socket path is short) */
    char data[160];    /* <dir>/data, the restored data directory */
    const char *where; /* which setting chose dir's parent, for the report */
    char user[64];     /* the user the drill runs as */
    char bindir[PATH_MAX];
    char dbuser[64]; /* the role the checks connect as */
    pid_t server;    /* the postmaster (a child of ours), 0 when none runs */
    /* the backup and the WAL the repository held when the drill began */
    struct ws_catalog cat;
    const struct ws_catalog_backup *b;
    double t_restore, t_recover;
    uint32_t end_tli;
    uint64_t end_lsn; /* where recovery ended (the new timeline's switch point) */
    struct drill_check checks[CK_N];
};

#define WS_DRILL_PORT 5432 /* only names the socket file in the private directory */

/* drill_server.c */
int ws_drill_find_bindir(struct drill *d, struct ws_error *err);
int ws_drill_server_start(struct drill *d, struct ws_error *err);
/* Each sets its check; 0 when it passed (or was skipped), -1 otherwise. */
int ws_drill_wait_recovery(struct drill *d);
int ws_drill_check_wal_end(struct drill *d);
int ws_drill_check_connect(struct drill *d);
int ws_drill_check_amcheck(struct drill *d);
/* Fast shutdown by PID, then immediate, then SIGKILL; waits for the postmaster to exit. */
void ws_drill_server_stop(struct drill *d);
/* 1 once the caller asked the drill to stop. */
int ws_drill_stopping(const struct drill *d);

#endif
