/* ops/status_out.c - basebackup status as text, JSON and the Prometheus textfile (status.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/util.h"
#include "ops/status_int.h"
#include "pg/wal.h"

/* "45 s", "12 min", "3 h 5 min", "2 d 4 h". */
static const char *age(int64_t s, char *out, size_t n)
{
    if (s < 0)
        s = 0;
    if (s < 120)
        snprintf(out, n, "%" PRId64 " s", s);
    else if (s < 7200)
        snprintf(out, n, "%" PRId64 " min", s / 60);
    else if (s < 2 * 86400)
        snprintf(out, n, "%" PRId64 " h %" PRId64 " min", s / 3600, s % 3600 / 60);
    else
        snprintf(out, n, "%" PRId64 " d %" PRId64 " h", s / 86400, s % 86400 / 3600);
    return out;
}

/* ---- text ---- */

static void text_verdict(FILE *f, const struct ws_status_verdict *v)
{
    size_t i;

    fprintf(f, "%s: ", ws_status_state_name(v->state));
    for (i = 0; i < v->n; i++)
        fprintf(f, "%s%s", i ? "; " : "", v->reasons[i].msg);
    if (v->dropped)
        fprintf(f, "; and %zu more", v->dropped);
    fprintf(f, "%s\n", v->n ? "" : "no problem found");
}

static void text_repo(FILE *f, const struct ws_status *s)
{
    const struct ws_status_repo *r = &s->repo;
    char a[WS_WAL_NAME_LEN + 1], b[WS_WAL_NAME_LEN + 1], t[24], x[32], y[32];
    size_t i;

    if (r->error[0]) {
        fprintf(f, "repository: could not be read: %s\n", r->error);
        return;
    }
    if (!r->has_identity) {
        fprintf(f, "repository: nothing archived for this cluster yet\n");
        return;
    }
    for (i = 0; i < r->ntls; i++) {
        const struct ws_status_timeline *tl = &r->tls[i];
        ws_wal_format_name(a, tl->tli, tl->first, r->seg_size);
        ws_wal_format_name(b, tl->tli, tl->last, r->seg_size);
        ws_format_bytes(tl->bytes, x, sizeof(x));
        fprintf(f, "WAL timeline %" PRIu32 ": %s - %s, %zu segments (%s)", tl->tli, a, b,
                tl->segments, x);
        if (tl->newest_mtime > 0) {
            ws_format_utc(tl->newest_mtime, t);
            fprintf(f, ", newest stored %s (%s ago)", t, age(s->now - tl->newest_mtime, y, 32));
        }
        fprintf(f, "\n");
    }
    if (!r->ntls)
        fprintf(f, "WAL: no segment archived\n");
    for (i = 0; i < r->ngaps; i++) {
        const struct ws_status_gap *g = &r->gaps[i];
        ws_wal_format_name(a, g->tli, g->first, r->seg_size);
        ws_wal_format_name(b, g->tli, g->last, r->seg_size);
        fprintf(f, "WAL gap on timeline %" PRIu32 ": %s - %s missing%s\n", g->tli, a, b,
                g->pending   ? " (not archived yet by the server)"
                : !g->needed ? " (older than every complete backup on it: not needed)"
                             : "");
    }
    fprintf(f, "backups: %zu complete, %zu incomplete, %zu invalid, %zu running, %zu deleting",
            r->backups[WS_BACKUP_COMPLETE], r->backups[WS_BACKUP_INCOMPLETE],
            r->backups[WS_BACKUP_INVALID], r->backups[WS_BACKUP_RUNNING],
            r->backups[WS_BACKUP_DELETING]);
    if (r->has_latest) {
        ws_format_utc(r->latest_stop_time, t);
        fprintf(f, "; newest complete %s (%s), finished %s (%s ago)", r->latest_id,
                ws_backup_type_name(r->latest_type), t, age(s->now - r->latest_stop_time, y, 32));
    }
    fprintf(f, "\nlogical backups: %zu complete, %zu incomplete, %zu invalid",
            r->logical[WS_LOGICAL_COMPLETE], r->logical[WS_LOGICAL_INCOMPLETE],
            r->logical[WS_LOGICAL_INVALID]);
    if (r->has_logical_latest) {
        ws_format_utc(r->logical_latest_stop_time, t);
        fprintf(f, "; newest complete %s, finished %s (%s ago)", r->logical_latest_id, t,
                age(s->now - r->logical_latest_stop_time, y, 32));
    }
    ws_format_bytes(r->wal_bytes, a, sizeof(a));
    ws_format_bytes(r->stream_bytes, b, sizeof(b));
    ws_format_bytes(r->backup_bytes, x, sizeof(x));
    ws_format_bytes(r->logical_bytes, y, sizeof(y));
    fprintf(f, "\nstored: WAL %s, streamed WAL chunks %s, base backups %s, logical backups %s\n", a,
            b, x, y);
}

static void text_server(FILE *f, const struct ws_status *s)
{
    const struct ws_status_server *sv = &s->server;
    const struct ws_pg_archiver *a = &sv->a;
    char t[24], y[32];

    if (!sv->reached || sv->error[0]) {
        fprintf(f, "server: %s: %s\n", sv->reached ? "not read" : "not reached", sv->error);
        return;
    }
    fprintf(f, "server: archive_mode %s; archived %" PRId64 ", failed %" PRId64, a->archive_mode,
            a->archived_count, a->failed_count);
    if (a->last_archived_wal[0]) {
        ws_format_utc(a->last_archived_us / 1000000, t);
        fprintf(f, "; last archived %s at %s (%s ago)", a->last_archived_wal, t,
                age(s->now - a->last_archived_us / 1000000, y, sizeof(y)));
    }
    if (a->last_failed_wal[0]) {
        ws_format_utc(a->last_failed_us / 1000000, t);
        fprintf(f, "; last failure %s at %s (%s ago)", a->last_failed_wal, t,
                age(s->now - a->last_failed_us / 1000000, y, sizeof(y)));
    }
    fprintf(f, "\n");
    if (sv->has_lag)
        fprintf(f, "archive lag: %" PRIu64 " segments, %" PRIu64 " bytes", sv->lag_segments,
                sv->lag_bytes);
    else
        fprintf(f, "archive lag: unknown (%s)",
                a->in_recovery ? "in recovery" : "nothing archived since the statistics reset");
    if (a->ready >= 0)
        fprintf(f, "; %ld .ready files\n", a->ready);
    else
        fprintf(f, "; .ready files: %s\n", a->ready_error);
    if (a->slot_exists) {
        fprintf(f, "replication slot \"%s\": %s, wal_status %s", s->slot_name,
                a->slot_active ? "active" : "inactive",
                a->slot_wal_status[0] ? a->slot_wal_status : "-");
        if (sv->has_slot_lag)
            fprintf(f, ", %" PRIu64 " bytes behind", sv->slot_lag_bytes);
        fprintf(f, "\n");
    }
}

static void text_spool(FILE *f, const struct ws_status *s)
{
    const struct ws_status_spool *sp = &s->spool;
    char t[24], y[32];

    if (sp->error[0])
        fprintf(f, "spool: %s\n", sp->error);
    if (!sp->present)
        return;
    if (sp->pushed >= 0 || sp->pushing >= 0) {
        fprintf(f, "push-ahead: %ld records, %ld files being pushed",
                sp->pushed < 0 ? 0 : sp->pushed, sp->pushing < 0 ? 0 : sp->pushing);
        if (sp->outage_since > 0) {
            ws_format_utc(sp->outage_since, t);
            fprintf(f, "; stopped on a storage failure at %s (%s ago)", t,
                    age(s->now - sp->outage_since, y, sizeof(y)));
        }
        fprintf(f, "\n");
    }
    if (sp->prefetch_spools)
        fprintf(f, "prefetch: %zu spool(s), %zu segments ready, %zu process(es) running%s%s\n",
                sp->prefetch_spools, sp->prefetch_entries, sp->prefetch_alive,
                sp->prefetch_wanted[0] ? ", last request " : "", sp->prefetch_wanted);
    if (sp->receive)
        fprintf(f,
                "wal-receive: slot %s, received %s, flushed %s, stored %s, updated %s, last "
                "error: %s\n",
                sp->rx_slot[0] ? sp->rx_slot : "-", sp->rx_received[0] ? sp->rx_received : "-",
                sp->rx_flushed[0] ? sp->rx_flushed : "-", sp->rx_stored[0] ? sp->rx_stored : "-",
                sp->rx_updated[0] ? sp->rx_updated : "-",
                sp->rx_last_error[0] ? sp->rx_last_error : "none");
}

void ws_status_print_text(FILE *f, const struct ws_status *s, const struct ws_status_verdict *v)
{
    text_verdict(f, v);
    fprintf(f, "cluster \"%s\", repository %s", s->cluster, s->location);
    if (s->repo.has_identity)
        fprintf(f, ", database system %" PRIu64, s->repo.system_identifier);
    fprintf(f, "\n");
    text_repo(f, s);
    text_server(f, s);
    text_spool(f, s);
}

/* ---- JSON ---- */

static void json_str_or_null(FILE *f, const char *s)
{
    if (s && *s)
        ws_json_string(f, s);
    else
        fprintf(f, "null");
}

/* , "name": "value" (null when value is empty). */
static void json_field(FILE *f, const char *name, const char *value)
{
    fprintf(f, ", \"%s\": ", name);
    json_str_or_null(f, value);
}

static void json_time(FILE *f, int64_t t)
{
    char b[24];

    if (t <= 0) {
        fprintf(f, "null");
        return;
    }
    ws_format_utc(t, b);
    fprintf(f, "\"%s\"", b);
}

/* [sep]{"timeline": T, "first": NAME, "last": NAME  (the caller closes the object) */
static void json_range(FILE *f, int sep, uint32_t tli, uint64_t first, uint64_t last,
                       uint32_t seg_size)
{
    char a[WS_WAL_NAME_LEN + 1], b[WS_WAL_NAME_LEN + 1];

    ws_wal_format_name(a, tli, first, seg_size);
    ws_wal_format_name(b, tli, last, seg_size);
    fprintf(f, "%s{\"timeline\": %" PRIu32 ", \"first\": \"%s\", \"last\": \"%s\"", sep ? ", " : "",
            tli, a, b);
}

static void json_repo(FILE *f, const struct ws_status *s)
{
    const struct ws_status_repo *r = &s->repo;
    size_t i;

    fprintf(f, "\"repository\": {\"location\": ");
    ws_json_string(f, s->location);
    json_field(f, "error", r->error);
    if (r->has_identity)
        fprintf(f, ", \"system_identifier\": \"%" PRIu64 "\", \"latest_timeline\": %" PRIu32,
                r->system_identifier, r->latest_tli);
    fprintf(f, ", \"timelines\": [");
    for (i = 0; i < r->ntls; i++) {
        const struct ws_status_timeline *t = &r->tls[i];
        json_range(f, i > 0, t->tli, t->first, t->last, r->seg_size);
        fprintf(f, ", \"segments\": %zu, \"bytes\": %" PRIu64 ", \"newest_stored\": ", t->segments,
                t->bytes);
        json_time(f, t->newest_mtime);
        if (t->newest_mtime > 0)
            fprintf(f, ", \"newest_age_seconds\": %" PRId64 "}", s->now - t->newest_mtime);
        else
            fprintf(f, ", \"newest_age_seconds\": null}");
    }
    fprintf(f, "], \"gaps\": [");
    for (i = 0; i < r->ngaps; i++) {
        const struct ws_status_gap *g = &r->gaps[i];
        json_range(f, i > 0, g->tli, g->first, g->last, r->seg_size);
        fprintf(f, ", \"needed\": %s, \"pending\": %s}", g->needed ? "true" : "false",
                g->pending ? "true" : "false");
    }
    fprintf(f, "], \"backups\": {");
    for (i = 0; i < 5; i++)
        fprintf(f, "%s\"%s\": %zu", i ? ", " : "", ws_backup_status_name((enum ws_backup_status)i),
                r->backups[i]);
    fprintf(f, ", \"newest_complete\": ");
    if (r->has_latest) {
        fprintf(f, "{\"id\": \"%s\", \"type\": \"%s\", \"stop_time\": ", r->latest_id,
                ws_backup_type_name(r->latest_type));
        json_time(f, r->latest_stop_time);
        fprintf(f, ", \"age_seconds\": %" PRId64 "}", s->now - r->latest_stop_time);
    } else {
        fprintf(f, "null");
    }
    fprintf(f, "}, \"logical_backups\": {");
    for (i = 0; i < 3; i++)
        fprintf(f, "%s\"%s\": %zu", i ? ", " : "", ws_logical_status_name((int)i), r->logical[i]);
    fprintf(f, ", \"newest_complete\": ");
    if (r->has_logical_latest) {
        fprintf(f, "{\"id\": \"%s\", \"stop_time\": ", r->logical_latest_id);
        json_time(f, r->logical_latest_stop_time);
        fprintf(f, ", \"age_seconds\": %" PRId64 "}", s->now - r->logical_latest_stop_time);
    } else {
        fprintf(f, "null");
    }
    fprintf(f,
            "}, \"bytes\": {\"wal\": %" PRIu64 ", \"stream\": %" PRIu64 ", \"backup\": %" PRIu64
            ", \"logical\": %" PRIu64 "}}",
            r->wal_bytes, r->stream_bytes, r->backup_bytes, r->logical_bytes);
}

static void json_server(FILE *f, const struct ws_status *s)
{
    const struct ws_status_server *sv = &s->server;
    const struct ws_pg_archiver *a = &sv->a;
    int ok = sv->reached && !sv->error[0];

    fprintf(f, "\"server\": {\"reached\": %s", sv->reached ? "true" : "false");
    json_field(f, "error", sv->error);
    if (ok) {
        json_field(f, "archive_mode", a->archive_mode);
        fprintf(
            f, ", \"in_recovery\": %s, \"archived_count\": %" PRId64 ", \"failed_count\": %" PRId64,
            a->in_recovery ? "true" : "false", a->archived_count, a->failed_count);
        json_field(f, "last_archived_wal", a->last_archived_wal);
        fprintf(f, ", \"last_archived_time\": ");
        json_time(f, a->last_archived_us / 1000000);
        json_field(f, "last_failed_wal", a->last_failed_wal);
        fprintf(f, ", \"last_failed_time\": ");
        json_time(f, a->last_failed_us / 1000000);
        if (sv->has_lag)
            fprintf(f, ", \"archive_lag\": {\"segments\": %" PRIu64 ", \"bytes\": %" PRIu64 "}",
                    sv->lag_segments, sv->lag_bytes);
        else
            fprintf(f, ", \"archive_lag\": null");
        if (a->ready >= 0)
            fprintf(f, ", \"ready_files\": %ld, \"ready_error\": null", a->ready);
        else {
            fprintf(f, ", \"ready_files\": null, \"ready_error\": ");
            ws_json_string(f, a->ready_error);
        }
        fprintf(f, ", \"slot\": ");
        if (a->slot_exists) {
            fprintf(f, "{\"name\": ");
            ws_json_string(f, s->slot_name);
            fprintf(f, ", \"active\": %s", a->slot_active ? "true" : "false");
            json_field(f, "wal_status", a->slot_wal_status);
            if (sv->has_slot_lag)
                fprintf(f, ", \"lag_bytes\": %" PRIu64 "}", sv->slot_lag_bytes);
            else
                fprintf(f, ", \"lag_bytes\": null}");
        } else {
            fprintf(f, "null");
        }
    }
    fprintf(f, "}");
}

static void json_spool(FILE *f, const struct ws_status *s)
{
    const struct ws_status_spool *sp = &s->spool;

    fprintf(f, "\"spool\": {\"present\": %s", sp->present ? "true" : "false");
    json_field(f, "error", sp->error);
    fprintf(f, ", \"pushahead\": ");
    if (sp->pushed >= 0 || sp->pushing >= 0) {
        fprintf(f, "{\"records\": %ld, \"pushing\": %ld, \"outage_since\": ",
                sp->pushed < 0 ? 0 : sp->pushed, sp->pushing < 0 ? 0 : sp->pushing);
        json_time(f, sp->outage_since);
        fprintf(f, "}");
    } else {
        fprintf(f, "null");
    }
    fprintf(f, ", \"prefetch\": {\"spools\": %zu, \"entries\": %zu, \"processes\": %zu",
            sp->prefetch_spools, sp->prefetch_entries, sp->prefetch_alive);
    json_field(f, "last_request", sp->prefetch_wanted);
    fprintf(f, "}, \"receive\": ");
    if (sp->receive) {
        fprintf(f, "{\"slot\": ");
        json_str_or_null(f, sp->rx_slot);
        json_field(f, "received", sp->rx_received);
        json_field(f, "flushed", sp->rx_flushed);
        json_field(f, "stored", sp->rx_stored);
        json_field(f, "updated", sp->rx_updated);
        json_field(f, "last_error", sp->rx_last_error);
        fprintf(f, "}");
    } else {
        fprintf(f, "null");
    }
    fprintf(f, "}");
}

void ws_status_print_json(FILE *f, const struct ws_status *s, const struct ws_status_verdict *v)
{
    size_t i;

    fprintf(f, "{\"cluster\": ");
    ws_json_string(f, s->cluster);
    fprintf(f, ", \"time\": ");
    json_time(f, s->now);
    fprintf(f, ", \"state\": \"%s\", \"exit_status\": %d, \"reasons\": [",
            ws_status_state_name(v->state), v->state);
    for (i = 0; i < v->n; i++) {
        fprintf(f, "%s{\"state\": \"%s\", \"check\": \"%s\", \"message\": ", i ? ", " : "",
                ws_status_state_name(v->reasons[i].state), v->reasons[i].check);
        ws_json_string(f, v->reasons[i].msg);
        fprintf(f, "}");
    }
    fprintf(f, "], ");
    json_repo(f, s);
    fprintf(f, ", ");
    json_server(f, s);
    fprintf(f, ", ");
    json_spool(f, s);
    fprintf(f, "}\n");
}
