/*
 * ops/status_prom.c - basebackup status in the Prometheus text exposition format, as
 * node_exporter's textfile collector reads it (status.h): every family once, its HELP and TYPE
 * lines before its samples, the label "cluster" on every sample, times as Unix seconds (an
 * alert computes ages with time(): a file written a minute ago still says the right thing),
 * counters only for pg_stat_archiver's counts (names ending in _total).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/util.h"
#include "ops/status_int.h"

struct prom {
    FILE *f;
    const char *cluster;
};

/* A label value: backslash, double quote and newline escaped. */
static void label_value(FILE *f, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            fprintf(f, "\\%c", *v);
        else if (*v == '\n')
            fprintf(f, "\\n");
        else
            fputc(*v, f);
    }
}

static void family(const struct prom *p, const char *name, const char *type, const char *help)
{
    fprintf(p->f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One sample: {cluster="...", key="val"} (key may be NULL). */
static void sample(const struct prom *p, const char *name, const char *key, const char *val,
                   double v)
{
    fprintf(p->f, "%s{cluster=\"", name);
    label_value(p->f, p->cluster);
    if (key && val) {
        fprintf(p->f, "\",%s=\"", key);
        label_value(p->f, val);
    }
    fprintf(p->f, "\"} %.17g\n", v);
}

static void metric(const struct prom *p, const char *name, const char *type, const char *help,
                   double v)
{
    family(p, name, type, help);
    sample(p, name, NULL, NULL, v);
}

static void prom_repo(const struct prom *p, const struct ws_status *s)
{
    const struct ws_status_repo *r = &s->repo;
    static const char *const kinds[] = {"wal", "stream", "backup", "logical"};
    const uint64_t bytes[] = {r->wal_bytes, r->stream_bytes, r->backup_bytes, r->logical_bytes};
    char tl[16];
    size_t i, gaps = 0;
    uint64_t missing = 0;

    family(p, "walsafe_wal_segments", "gauge", "Archived WAL segments in the repository.");
    for (i = 0; i < r->ntls; i++) {
        snprintf(tl, sizeof(tl), "%" PRIu32, r->tls[i].tli);
        sample(p, "walsafe_wal_segments", "timeline", tl, (double)r->tls[i].segments);
    }
    family(p, "walsafe_wal_newest_timestamp_seconds", "gauge",
           "When the newest archived WAL segment of the timeline was stored (Unix time).");
    for (i = 0; i < r->ntls; i++) {
        snprintf(tl, sizeof(tl), "%" PRIu32, r->tls[i].tli);
        if (r->tls[i].newest_mtime > 0)
            sample(p, "walsafe_wal_newest_timestamp_seconds", "timeline", tl,
                   (double)r->tls[i].newest_mtime);
    }
    for (i = 0; i < r->ngaps; i++)
        if (r->gaps[i].needed && !r->gaps[i].pending) {
            gaps++;
            missing += r->gaps[i].last - r->gaps[i].first + 1;
        }
    metric(p, "walsafe_wal_gaps", "gauge",
           "Gaps in the archived WAL that a restore would need to pass.", (double)gaps);
    metric(p, "walsafe_wal_missing_segments", "gauge", "WAL segments missing in those gaps.",
           (double)missing);
    family(p, "walsafe_backups", "gauge", "Base backups in the repository by status.");
    for (i = 0; i < 5; i++)
        sample(p, "walsafe_backups", "status", ws_backup_status_name((enum ws_backup_status)i),
               (double)r->backups[i]);
    metric(p, "walsafe_backup_newest_complete_timestamp_seconds", "gauge",
           "When the newest complete base backup finished (Unix time; 0: there is none).",
           r->has_latest ? (double)r->latest_stop_time : 0);
    family(p, "walsafe_logical_backups", "gauge", "Logical backups in the repository by status.");
    for (i = 0; i < 3; i++)
        sample(p, "walsafe_logical_backups", "status", ws_logical_status_name((int)i),
               (double)r->logical[i]);
    metric(p, "walsafe_logical_backup_newest_complete_timestamp_seconds", "gauge",
           "When the newest complete logical backup finished (Unix time; 0: there is none).",
           r->has_logical_latest ? (double)r->logical_latest_stop_time : 0);
    family(p, "walsafe_repository_size_bytes", "gauge",
           "Bytes stored in the repository by kind (wal, stream: wal-receive's chunks, backup, "
           "logical).");
    for (i = 0; i < 4; i++)
        sample(p, "walsafe_repository_size_bytes", "kind", kinds[i], (double)bytes[i]);
}

static void prom_server(const struct prom *p, const struct ws_status *s)
{
    const struct ws_status_server *sv = &s->server;
    const struct ws_pg_archiver *a = &sv->a;

    if (!sv->reached || sv->error[0])
        return;
    metric(p, "walsafe_archiver_archived_total", "counter",
           "WAL files the server archived (pg_stat_archiver.archived_count).",
           (double)a->archived_count);
    metric(p, "walsafe_archiver_failed_total", "counter",
           "Failed archiving attempts (pg_stat_archiver.failed_count).", (double)a->failed_count);
    metric(p, "walsafe_archiver_last_archived_timestamp_seconds", "gauge",
           "Last successful archiving (Unix time; 0: none since the statistics reset).",
           (double)(a->last_archived_us / 1000000));
    metric(p, "walsafe_archiver_last_failed_timestamp_seconds", "gauge",
           "Last failed archiving attempt (Unix time; 0: none since the statistics reset).",
           (double)(a->last_failed_us / 1000000));
    if (sv->has_lag) {
        metric(p, "walsafe_archive_lag_segments", "gauge",
               "Complete WAL segments the server has not archived yet.", (double)sv->lag_segments);
        metric(p, "walsafe_archive_lag_bytes", "gauge",
               "WAL bytes written after the last archived segment.", (double)sv->lag_bytes);
    }
    if (a->ready >= 0)
        metric(p, "walsafe_archive_ready_files", "gauge",
               "Files in pg_wal/archive_status waiting for the archiver (.ready).",
               (double)a->ready);
    if (a->slot_exists) {
        family(p, "walsafe_replication_slot_active", "gauge",
               "Whether a receiver is connected to the replication slot.");
        sample(p, "walsafe_replication_slot_active", "slot", s->slot_name, a->slot_active);
        if (sv->has_slot_lag) {
            family(p, "walsafe_replication_slot_lag_bytes", "gauge",
                   "WAL bytes between the server's position and the slot's restart point.");
            sample(p, "walsafe_replication_slot_lag_bytes", "slot", s->slot_name,
                   (double)sv->slot_lag_bytes);
        }
    }
}

static void prom_spool(const struct prom *p, const struct ws_status *s)
{
    const struct ws_status_spool *sp = &s->spool;

    if (!sp->present)
        return;
    if (sp->pushed >= 0 || sp->pushing >= 0) {
        metric(p, "walsafe_pushahead_records", "gauge",
               "Push-ahead records: files stored ahead of the archiver's call.",
               (double)(sp->pushed < 0 ? 0 : sp->pushed));
        metric(p, "walsafe_pushahead_pushing_files", "gauge", "Files push-ahead is storing now.",
               (double)(sp->pushing < 0 ? 0 : sp->pushing));
        metric(p, "walsafe_pushahead_outage_timestamp_seconds", "gauge",
               "When push-ahead last stopped on a storage failure (Unix time; 0: no mark).",
               (double)sp->outage_since);
    }
    metric(p, "walsafe_prefetch_segments", "gauge",
           "Segments fetched ahead, waiting in prefetch spools.", (double)sp->prefetch_entries);
    metric(p, "walsafe_prefetch_processes", "gauge", "Prefetch processes running.",
           (double)sp->prefetch_alive);
    if (sp->receive) {
        int64_t t = 0;
        if (ws_parse_utc(sp->rx_updated, &t) == 0)
            metric(p, "walsafe_receive_updated_timestamp_seconds", "gauge",
                   "When wal-receive last wrote its status file (Unix time).", (double)t);
    }
}

void ws_status_print_prometheus(FILE *f, const struct ws_status *s,
                                const struct ws_status_verdict *v)
{
    struct prom p = {f, s->cluster};
    int repo_ok = !s->repo.error[0];

    metric(&p, "walsafe_status_state", "gauge",
           "Verdict of basebackup status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.", v->state);
    metric(&p, "walsafe_status_run_timestamp_seconds", "gauge",
           "When basebackup status wrote this file (Unix time).", (double)s->now);
    metric(&p, "walsafe_repository_up", "gauge", "Whether the repository could be read.", repo_ok);
    metric(&p, "walsafe_server_up", "gauge",
           "Whether the server of pg_conninfo answered the status queries.",
           s->server.reached && !s->server.error[0]);
    if (repo_ok && s->repo.has_identity)
        prom_repo(&p, s);
    prom_server(&p, s);
    prom_spool(&p, s);
}

int ws_status_write_prometheus(const char *path, const struct ws_status *s,
                               const struct ws_status_verdict *v, struct ws_error *err)
{
    char tmp[PATH_MAX], dir[PATH_MAX];
    const char *base = ws_base_name(path);
    FILE *f = NULL;
    int fd, rc = 0;

    if (!*base || (size_t)(base - path) >= sizeof(dir) ||
        snprintf(tmp, sizeof(tmp), "%.*s.%s.walsafe-tmp.%ld", (int)(base - path), path, base,
                 (long)getpid()) >= (int)sizeof(tmp))
        return ws_error_set(err, WS_ERR_IO, "--prometheus file \"%s\": path too long", path);
    snprintf(dir, sizeof(dir), "%.*s", (int)(base - path), path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not create file \"%s\"", tmp);
    if (fchmod(fd, 0644) != 0 || !(f = fdopen(fd, "w"))) {
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not write file \"%s\"", tmp);
        close(fd);
        goto out;
    }
    ws_status_print_prometheus(f, s, v);
    if (fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0)
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not write file \"%s\"", tmp);
    if (fclose(f) != 0 && rc == 0)
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not write file \"%s\"", tmp);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not rename \"%s\" to \"%s\"", tmp, path);
    if (rc == 0)
        rc = ws_fsync_dir(dir[0] ? dir : ".", err);
out:
    if (rc)
        unlink(tmp);
    return rc;
}
