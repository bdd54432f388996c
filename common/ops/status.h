/*
 * status.h - `basebackup status`: is this cluster safe? One gather, three outputs (text, JSON,
 * the Prometheus textfile), and a verdict with Nagios's states. Reasons: docs/design/status.md.
 *
 * Gathered (ws_status_gather): from the repository alone (prune's gather: the catalog, the WAL
 * listing with sizes and times) each timeline's archived segments, the newest one and when it was
 * stored, the gaps, the base and logical backups by status, the newest complete one of each, the
 * bytes per kind; from the
 * server of pg_conninfo, when it answers, pg_stat_archiver, the archive lag, the .ready files and
 * the replication slot slot_name; from <spool_dir>/<cluster>/, read only (never created, links
 * never followed below spool_dir), push-ahead's records and locks, prefetch spools and
 * wal-receive's status file. A part that cannot be read says why in its `error` and the others
 * are still filled: ws_status_gather fails only when out of memory (WS_ERR_INTERNAL).
 *
 * The verdict (ws_status_evaluate, pure: no I/O, "now" is an argument) is the worst of:
 *   CRITICAL  archive lag above max_archive_lag segments; newest complete backup older than
 *             max_backup_age, or none (the same for logical backups and max_logical_age);
 *             newest archived segment of the latest timeline older than
 *             max_wal_age, or none; a gap that a restore needs (not wholly below the oldest
 *             complete backup's start on its timeline, not beyond what the server has archived);
 *             the slot's WAL lost (wal_status "lost")
 *   WARNING   the archiver's latest attempt failed (pg_stat_archiver's last_failed_time after
 *             its last_archived_time, to the microsecond);
 *             an invalid backup, base or logical (unreadable manifest); the slot's WAL
 *             "unreserved"
 *   UNKNOWN   the repository could not be read; max_archive_lag set and no lag known (server not
 *             reached, in recovery, or nothing archived since its statistics were reset)
 *   OK        none of these
 * in that order of precedence (CRITICAL > WARNING > UNKNOWN > OK). A limit below 0 is not set.
 * The state's number is Nagios's exit status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
 *
 * Ownership: a ws_status owns its arrays (ws_status_free); a verdict has fixed room for
 * WS_STATUS_MAX_REASONS reasons (more are counted in `dropped`).
 */
#ifndef WS_OPS_STATUS_H
#define WS_OPS_STATUS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/config.h"
#include "base/error.h"
#include "pg/pgconn.h"
#include "repo/catalog.h"
#include "repo/logical.h"

enum ws_status_state {
    WS_STATUS_OK = 0,
    WS_STATUS_WARNING = 1,
    WS_STATUS_CRITICAL = 2,
    WS_STATUS_UNKNOWN = 3,
};
/* "OK", "WARNING", "CRITICAL", "UNKNOWN". */
const char *ws_status_state_name(int state);

struct ws_status_timeline {
    uint32_t tli;
    uint64_t first, last; /* segment numbers of its oldest and newest archived segment */
    size_t segments;
    uint64_t bytes;       /* stored bytes of its segments */
    int64_t newest_mtime; /* when `last` was stored; 0: unknown */
};

struct ws_status_gap {
    uint32_t tli;
    uint64_t first, last; /* the missing segments */
    int needed;           /* not wholly below the oldest complete backup's start on tli */
    int pending;          /* beyond the server's last archived segment: not archived yet */
};

struct ws_status_repo {
    char error[1024]; /* "" when read */
    int has_identity; /* 0: nothing archived yet */
    uint64_t system_identifier;
    uint32_t seg_size;
    uint32_t latest_tli;
    struct ws_status_timeline *tls; /* ascending */
    size_t ntls;
    struct ws_status_gap *gaps; /* by timeline, ascending */
    size_t ngaps;
    size_t backups[5]; /* by enum ws_backup_status */
    int has_latest;    /* the newest complete backup: */
    char latest_id[WS_BACKUP_ID_LEN + 1];
    int latest_type;
    int64_t latest_stop_time;
    uint64_t wal_bytes, stream_bytes, backup_bytes; /* WAL objects, streamed chunks, backups */
    size_t logical[3];                              /* logical backups by enum ws_logical_status */
    int has_logical_latest;                         /* the newest complete logical backup: */
    char logical_latest_id[WS_BACKUP_ID_LEN + 1];
    int64_t logical_latest_stop_time;
    uint64_t logical_bytes;
};

struct ws_status_server {
    int reached;
    char error[1024]; /* why not reached or not read; "" */
    struct ws_pg_archiver a;
    int has_lag; /* lag_segments and lag_bytes are known */
    uint64_t lag_segments, lag_bytes;
    int has_slot_lag;
    uint64_t slot_lag_bytes;
};

struct ws_status_spool {
    char error[1024];     /* why the spool could not be read; "" (also when there is none) */
    int present;          /* <spool_dir>/<cluster> exists */
    long pushed, pushing; /* push-ahead: records; files being pushed; -1 no such folder */
    int64_t outage_since; /* push-ahead's mark of a storage failure (mtime); 0: none */
    size_t prefetch_spools, prefetch_entries, prefetch_alive;
    char prefetch_wanted[32]; /* the newest request of any prefetch spool; "" */
    int64_t prefetch_wanted_time;
    int receive; /* wal-receive's status file exists: */
    char rx_slot[64], rx_received[32], rx_flushed[32], rx_stored[32], rx_updated[32];
    char rx_last_error[1024];
};

struct ws_status {
    char cluster[65];
    char location[512]; /* the repository, as storage names it */
    char slot_name[64];
    int64_t now;
    struct ws_status_repo repo;
    struct ws_status_server server;
    struct ws_status_spool spool;
};

struct ws_status_limits {
    long max_archive_lag;    /* segments */
    int64_t max_backup_age;  /* seconds */
    int64_t max_wal_age;     /* seconds */
    int64_t max_logical_age; /* seconds */
};

#define WS_STATUS_MAX_REASONS 16
struct ws_status_verdict {
    int state;
    struct {
        int state;
        const char *check; /* a static name: archive_lag, backup_age, wal_age, wal_gap, ... */
        char msg[256];
    } reasons[WS_STATUS_MAX_REASONS];
    size_t n, dropped;
};

int ws_status_gather(const struct ws_config *cfg, const struct ws_pg_ops *pg_ops,
                     struct ws_status *s, struct ws_error *err);
void ws_status_free(struct ws_status *s);

/* ---- pure parts (exposed for tests) ---- */

/* The gaps of cat's segments into s->repo.gaps, with `needed` from cat's complete backups. */
int ws_status_find_gaps(const struct ws_catalog *cat, struct ws_status_repo *r,
                        struct ws_error *err);
/* Marks the gaps the server has not archived up to yet as pending (reached, on its timeline). */
void ws_status_mark_pending(struct ws_status *s);
/* Complete segments between the segment named by last_archived (a segment, .partial or .backup
 * name) and current_lsn, and the bytes from the end of that segment: 0, or -1 when
 * last_archived names no segment. */
int ws_status_archive_lag(uint64_t current_lsn, const char *last_archived, uint32_t seg_size,
                          uint64_t *segments, uint64_t *bytes);
void ws_status_evaluate(const struct ws_status *s, const struct ws_status_limits *l,
                        struct ws_status_verdict *v);

/* ---- output (ops/status_out.c, ops/status_prom.c) ---- */

void ws_status_print_text(FILE *f, const struct ws_status *s, const struct ws_status_verdict *v);
void ws_status_print_json(FILE *f, const struct ws_status *s, const struct ws_status_verdict *v);
/* The node_exporter textfile format: walsafe_* families, HELP and TYPE first, label "cluster". */
void ws_status_print_prometheus(FILE *f, const struct ws_status *s,
                                const struct ws_status_verdict *v);
/* ws_status_print_prometheus into path atomically: a temp file beside it (".<name>.walsafe-tmp"
 * + pid, never matched by node_exporter's *.prom), fsync, mode 0644 (node_exporter runs as
 * another user), rename, directory fsync. WS_ERR_IO naming the file. */
int ws_status_write_prometheus(const char *path, const struct ws_status *s,
                               const struct ws_status_verdict *v, struct ws_error *err);

/* The command: gather, evaluate, print (text or JSON), write the Prometheus file when prom_path
 * is set. Returns the state (0..3); a failure to write the file is logged and makes it UNKNOWN
 * unless it is worse. */
struct ws_status_opts {
    int json;
    const char *prom_path;
    struct ws_status_limits limits;
};
int ws_status(const struct ws_config *cfg, const struct ws_pg_ops *pg_ops,
              const struct ws_status_opts *o);

#endif
