/*
 * drill.h - `basebackup drill`: a restore test. A backup (the newest complete one, or the one
 * named) is restored through ws_backup_restore into a fresh private directory, PostgreSQL is
 * started on it with no network listener (a unix socket in that directory), archiving off, and
 * left to recover to the end of the archived WAL and promote; then the checks run and everything
 * is removed unless o->keep (docs/design/drill.md says why each choice).
 *
 * Checks, in order (a check after a failed one is reported "skipped"):
 *   restore     the restore succeeded
 *   recovery    the server recovered, promoted and accepts connections
 *   wal_end     recovery ended in the newest WAL segment the repository held when the drill
 *               began (or later); else the message names the first missing segment
 *   connect     every database that allows connections accepts one
 *   amcheck     pg_amcheck --all (heap and B-tree, without --heapallindexed) finds nothing;
 *               "skipped" when pg_amcheck or the amcheck extension is not installed
 * The report goes to stdout (text, or one JSON object with o->json): backup id, work directory,
 * WAL replayed (segments, bytes), seconds to restore and to recover, each check and its result.
 *
 * Run as root, the drill runs as the server's user (the owner of cfg->pgdata when that is not
 * root, else "postgres") in a child process; only the work directory is made, given to that
 * user and removed as root. The server is stopped by its PID (fast shutdown) in every case:
 * checks failed, error, or *o->stop set by the caller's SIGINT/SIGTERM handler (the library
 * installs none; wait loops look at the flag at least every 250 ms).
 *
 * Returns 0 when every check passed; WS_ERR_INVALID when a check failed (err names it and its
 * finding; a check cut short by *o->stop fails as "interrupted"); other codes for errors before
 * the checks (config, repository, work directory), WS_ERR_INTERNAL when *o->stop came after the
 * last check. *res (may be NULL) is filled in every case, for notify.
 */
#ifndef WS_OPS_DRILL_H
#define WS_OPS_DRILL_H

#include <signal.h>
#include <stdint.h>

#include "backup/backup.h"
#include "base/config.h"
#include "base/error.h"
#include "repo/catalog.h"

struct ws_drill_opts {
    const char *backup; /* a backup id, or NULL / "latest": the newest complete one */
    int keep;           /* leave the work directory and the stopped server */
    int json;
    const char *config_path;           /* the config in use, for restore_command (may be NULL) */
    const volatile sig_atomic_t *stop; /* non-zero: stop now and clean up (may be NULL) */
};

/* What notify reports of a drill. */
struct ws_drill_result {
    char id[32];           /* the backup drilled, "" when none was chosen */
    uint64_t bytes;        /* of the restored backup */
    double seconds;        /* the whole drill */
    char failed_check[16]; /* "" when all passed */
};

/*
 * The wal_end check, a pure function of the catalog: recovery ended at end_lsn, leaving timeline
 * tli. 0 when it ended in the newest segment of cat (the last of cat->segs: highest timeline,
 * then segment) or beyond it on that timeline; -1 otherwise. out: one line either way; a failure
 * names the first segment after the end that the repository does not hold (or says that it
 * holds it, so recovery could not read it).
 */
int ws_drill_wal_verdict(const struct ws_catalog *cat, uint32_t seg_size, uint32_t tli,
                         uint64_t end_lsn, char *out, size_t outsz);

int ws_drill_run(const struct ws_config *cfg, const struct ws_backup_env *env,
                 const struct ws_drill_opts *o, struct ws_drill_result *res, struct ws_error *err);

#endif
