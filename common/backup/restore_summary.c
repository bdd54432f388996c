/*
 * backup/restore_summary.c - what a successful restore tells the operator, on stdout: the backup
 * and its stop time, the recovery target and what happens there, the restore_command written,
 * and the command that starts the copy; and, when the backup holds no postgresql.conf (Debian's
 * clusters keep it in /etc/postgresql/<version>/<name>), that the configuration must come from
 * elsewhere (README, "Restoring on Debian").
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup/restore_int.h"
#include "base/util.h"

/* "time '...'", "the end of the archived WAL", ...: what recovery stops at, then what it does. */
static void describe_target(const struct ws_restore_opts *o, char *out, size_t outsz)
{
    static const char *const kind[] = {"", "time", "LSN", "transaction", "restore point"};
    const char *action = o->target_action ? o->target_action : "pause";

    if (o->target_kind == WS_TARGET_NONE)
        snprintf(out, outsz, "the end of the archived WAL, then it promotes");
    else if (o->target_kind == WS_TARGET_IMMEDIATE)
        snprintf(out, outsz, "the end of the backup (--target-immediate), then %s%s", action,
                 o->target_action ? ""
                                  : " (the default: a paused server accepts read-only "
                                    "queries; SELECT pg_wal_replay_resume() promotes it)");
    else
        snprintf(out, outsz, "%s '%s', then %s%s", kind[o->target_kind], o->target, action,
                 o->target_action ? ""
                                  : " (the default: a paused server accepts read-only "
                                    "queries; SELECT pg_wal_replay_resume() promotes it)");
}

void ws_restore_print_summary(const struct restore *r)
{
    const struct ws_manifest *m = r->m;
    char stop[21], target[600], pg_ctl[64];
    struct stat st;
    int major = m->pg_version >= 100000 ? m->pg_version / 10000 : m->pg_version / 100;
    int has_conf = fstatat(r->data.fd, "postgresql.conf", &st, AT_SYMLINK_NOFOLLOW) == 0;

    ws_format_utc(m->stop_time, stop);
    describe_target(r->o, target, sizeof(target));
    snprintf(pg_ctl, sizeof(pg_ctl), "/usr/lib/postgresql/%d/bin/pg_ctl", major);
    printf("restored backup %s (stopped %s) into %s\n", m->id, stop, r->data.path);
    printf("recovery target: %s\n", target);
    printf("restore_command = '%s' (in postgresql.auto.conf)\n", r->cmd);
    if (!has_conf) {
        printf("note: the backup holds no postgresql.conf (Debian keeps a cluster's configuration "
               "in /etc/postgresql/%d/<name>): copy the configuration files and register the copy "
               "(pg_createcluster %d NAME -d %s) before starting it; see README, \"Restoring on "
               "Debian\"\n",
               major, major, r->data.path);
        printf("next: pg_ctlcluster %d NAME start\n", major);
    } else {
        printf("next: %s%s%s%s -D %s -l %s.log start\n", r->as_user[0] ? "runuser -u " : "",
               r->as_user, r->as_user[0] ? " -- " : "",
               access(pg_ctl, X_OK) == 0 ? pg_ctl : "pg_ctl", r->data.path, r->data.path);
    }
    fflush(stdout);
}
