/* prune_report.c - what wal-prune says: reasons, the text lines, the summary, the JSON. */
#include "prune_int.h"

#include <inttypes.h>
#include <string.h>

#include "wal.h"

/* "30d", "36h", "90s": the largest unit that divides the value. */
static void format_duration(int64_t s, char *out, size_t outsz)
{
    static const struct {
        int64_t secs;
        char unit;
    } units[] = {{7 * 86400, 'w'}, {86400, 'd'}, {3600, 'h'}, {60, 'm'}};
    size_t i;

    for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (s >= units[i].secs && s % units[i].secs == 0) {
            snprintf(out, outsz, "%" PRId64 "%c", s / units[i].secs, units[i].unit);
            return;
        }
    }
    snprintf(out, outsz, "%" PRId64 "s", s);
}

static void human_bytes(uint64_t v, char *out, size_t n)
{
    static const char *const u[] = {"B", "kB", "MB", "GB", "TB", "PB"};
    double d = (double)v;
    int i = 0;

    while (d >= 1024 && i < 5) {
        d /= 1024;
        i++;
    }
    snprintf(out, n, i ? "%.1f %s" : "%.0f %s", d, u[i]);
}

const char *ws_prune_status_name(int status)
{
    switch (status) {
    case WS_PRUNE_COMPLETE:
        return "complete";
    case WS_PRUNE_INCOMPLETE:
        return "incomplete";
    case WS_PRUNE_RUNNING:
        return "running";
    case WS_PRUNE_INVALID:
        return "invalid";
    default:
        return "deleting";
    }
}

const char *ws_prune_why_name(unsigned bit)
{
    switch (bit) {
    case WS_KEEP_NEWEST:
        return "newest";
    case WS_KEEP_FULL:
        return "retain_full";
    case WS_KEEP_WINDOW:
        return "retain_time";
    case WS_KEEP_WINDOW_BASE:
        return "retain_time_base";
    case WS_KEEP_PINNED:
        return "pinned";
    case WS_KEEP_TIMELINE:
        return "latest_timeline";
    case WS_KEEP_YOUNG:
        return "recent";
    case WS_KEEP_PENDING:
        return "pending_wal";
    case WS_KEEP_UNREADABLE:
        return "unreadable";
    case WS_KEEP_WINDOW_TL:
        return "retain_time_base_timeline";
    case WS_KEEP_HELD:
        return "held";
    case WS_DROP_RETENTION:
        return "expired";
    case WS_DROP_ABANDONED:
        return "abandoned";
    case WS_DROP_DELETING:
        return "interrupted_delete";
    default:
        return "unknown";
    }
}

void ws_prune_why_text(const struct ws_prune_input *in, const struct ws_prune_plan *plan,
                       unsigned why, char *out, size_t outsz)
{
    /* most telling first */
    static const unsigned order[] = {WS_KEEP_PINNED,     WS_KEEP_NEWEST,      WS_KEEP_FULL,
                                     WS_KEEP_WINDOW,     WS_KEEP_WINDOW_BASE, WS_KEEP_WINDOW_TL,
                                     WS_KEEP_TIMELINE,   WS_KEEP_PENDING,     WS_KEEP_YOUNG,
                                     WS_KEEP_UNREADABLE, WS_KEEP_HELD,        WS_DROP_DELETING,
                                     WS_DROP_ABANDONED,  WS_DROP_RETENTION};
    char d[32], age[32], phrase[256];
    size_t i, used = 0;

    format_duration(in->retain_time, d, sizeof(d));
    format_duration(ws_prune_age_limit(in), age, sizeof(age));
    out[0] = '\0';
    for (i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        if (!(why & order[i]))
            continue;
        switch (order[i]) {
        case WS_KEEP_PINNED:
            snprintf(phrase, sizeof(phrase), "pinned (basebackup keep)");
            break;
        case WS_KEEP_NEWEST:
            snprintf(phrase, sizeof(phrase), "the newest complete backup");
            break;
        case WS_KEEP_FULL:
            if (in->retain_full == 1)
                snprintf(phrase, sizeof(phrase), "kept by retain_full = 1");
            else
                snprintf(phrase, sizeof(phrase),
                         "one of the %d newest complete backups (retain_full)", in->retain_full);
            break;
        case WS_KEEP_WINDOW:
            snprintf(phrase, sizeof(phrase), "ended within the last %s (retain_time)", d);
            break;
        case WS_KEEP_WINDOW_BASE:
            snprintf(phrase, sizeof(phrase),
                     "the newest backup that ended before the %s window opened (retain_time): "
                     "restores to the window's first moments start from it",
                     d);
            break;
        case WS_KEEP_WINDOW_TL:
            snprintf(phrase, sizeof(phrase),
                     "the newest backup that ended before the %s window opened and can reach "
                     "timeline %" PRIu32 ", the latest (retain_time): restores along it to the "
                     "window's first moments start from it",
                     d, plan ? plan->latest_tli : 0);
            break;
        case WS_KEEP_HELD:
            snprintf(phrase, sizeof(phrase),
                     "the policy would delete it, but wal-prune deletes "
                     "none while %s",
                     plan && (plan->hold & WS_HOLD_LINEAGE)
                         ? "a timeline's history cannot be read"
                         : "backup times and WAL positions disagree");
            break;
        case WS_KEEP_TIMELINE:
            snprintf(phrase, sizeof(phrase),
                     "the newest backup that can reach timeline %" PRIu32 ", the latest",
                     plan ? plan->latest_tli : 0);
            break;
        case WS_KEEP_PENDING:
            snprintf(phrase, sizeof(phrase),
                     "incomplete but newer than every complete backup: its WAL may still arrive");
            break;
        case WS_KEEP_YOUNG:
            snprintf(phrase, sizeof(phrase),
                     "not complete, but written to within the last %s: it may still be running",
                     age);
            break;
        case WS_KEEP_UNREADABLE:
            snprintf(phrase, sizeof(phrase),
                     "its manifest cannot be read: never deleted automatically");
            break;
        case WS_DROP_DELETING:
            snprintf(phrase, sizeof(phrase), "an interrupted wal-prune had begun deleting it");
            break;
        case WS_DROP_ABANDONED:
            snprintf(phrase, sizeof(phrase), "not complete and untouched for more than %s", age);
            break;
        default: {
            char f[80] = "", t[64] = "";
            if (in->retain_full == 1)
                snprintf(f, sizeof(f), "older than the newest complete backup (retain_full = 1)");
            else if (in->retain_full)
                snprintf(f, sizeof(f), "older than the %d newest complete backups (retain_full)",
                         in->retain_full);
            if (in->retain_time)
                snprintf(t, sizeof(t), "%sended before the last %s", f[0] ? ", and " : "", d);
            snprintf(phrase, sizeof(phrase), "%s%s", f, t);
            break;
        }
        }
        used += (size_t)snprintf(out + used, used < outsz ? outsz - used : 0, "%s%s",
                                 used ? "; " : "", phrase);
        if (used >= outsz)
            break;
    }
}

void ws_prune_print_backup(FILE *f, const char *verb, const struct ws_prune_input *in,
                           const struct ws_prune_plan *plan, size_t i)
{
    const struct ws_prune_backup *b = &in->backups[i];
    char why[1024], when[21], size[32];

    ws_prune_why_text(in, plan, plan->why[i], why, sizeof(why));
    human_bytes(b->stored_bytes, size, sizeof(size));
    if (b->has_position) {
        ws_format_utc(b->start_time, when);
        fprintf(f, "%s backup %s (%s%s, started %s, timeline %" PRIu32 ", %s stored): %s\n", verb,
                b->id, ws_prune_status_name(b->status), b->pinned ? ", pinned" : "", when,
                b->timeline, size, why);
    } else {
        fprintf(f, "%s backup %s (%s%s, %s stored): %s\n", verb, b->id,
                ws_prune_status_name(b->status), b->pinned ? ", pinned" : "", size, why);
    }
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

/* The WAL files of the plan: runs of consecutive segments per timeline, other files by name. */
void ws_prune_print_wal(FILE *f, const char *verb, const struct ws_prune_input *in,
                        const struct ws_prune_plan *plan)
{
    size_t j = 0;

    while (j < plan->nwal_delete) {
        const struct ws_prune_wal *a = &in->wal[plan->wal_delete[j]], *b = a;
        size_t k = j, count = 1;
        if (a->kind != WS_WAL_SEGMENT) {
            fprintf(f, "%s WAL file %s\n", verb, a->name);
            j++;
            continue;
        }
        /* extend over segments that follow without a hole (other kinds in between are listed
         * after the run) */
        while (k + 1 < plan->nwal_delete) {
            const struct ws_prune_wal *c = &in->wal[plan->wal_delete[k + 1]];
            if (c->tli != a->tli || c->kind != WS_WAL_SEGMENT || c->segno != b->segno + 1)
                break;
            b = c;
            k++;
            count++;
        }
        if (count == 1)
            fprintf(f, "%s WAL file %s\n", verb, a->name);
        else
            fprintf(f, "%s WAL files %s to %s (%zu segments of timeline %" PRIu32 ")\n", verb,
                    a->name, b->name, count, a->tli);
        j = k + 1;
    }
}

static void cutoff_text(const struct ws_prune_input *in, const struct ws_prune_plan *plan,
                        char *out, size_t outsz)
{
    size_t i;

    out[0] = '\0';
    if (!plan->ntls) {
        snprintf(out, outsz, "no WAL in the repository");
        return;
    }
    if (plan->tls[0].rule == WS_TL_NO_BACKUP) {
        snprintf(out, outsz, "all WAL kept");
        return;
    }
    ws_prune_append(out, outsz, "WAL kept");
    for (i = 0; i < plan->ntls; i++) {
        const struct ws_prune_tl *t = &plan->tls[i];
        char lsn[24];
        ws_prune_append(out, outsz, "%s timeline %" PRIu32, i ? ";" : ":", t->tli);
        if (!t->cutoff) {
            ws_prune_append(out, outsz, " all%s",
                            t->rule == WS_TL_UNKNOWN     ? " (history unknown)"
                            : t->rule == WS_TL_UNREACHED ? " (no kept backup follows it)"
                                                         : "");
            continue;
        }
        ws_wal_format_lsn(lsn, ws_wal_segno_to_lsn(t->cutoff, in->wal_segment_size));
        ws_prune_append(out, outsz, " from %s", lsn);
        if (t->backup >= 0)
            ws_prune_append(out, outsz, " (the start segment of backup %s)",
                            in->backups[t->backup].id);
    }
}

/* The counts: what was done (dry_run 0), or what would be (from the plan). */
static void totals(const struct ws_prune_plan *plan, const struct ws_prune_result *res, int dry_run,
                   size_t *nb, size_t *nw, uint64_t *bb, uint64_t *wb)
{
    *nb = dry_run ? plan->nbackups_delete : res->backups_deleted;
    *nw = dry_run ? plan->nwal_delete : res->wal_deleted;
    *bb = dry_run ? plan->backup_bytes : res->backup_bytes;
    *wb = (dry_run ? plan->wal_bytes : res->wal_bytes) + res->temp_bytes;
}

/* What stays: of the plan (dry run), or of what was deleted (a failed run deletes fewer). */
static size_t kept_count(const struct ws_prune_input *in, const struct ws_prune_plan *plan,
                         const struct ws_prune_result *res, int dry_run)
{
    return in->nbackups - (dry_run ? plan->nbackups_delete : res->backups_deleted);
}

void ws_prune_print_summary(FILE *f, const struct ws_prune_input *in,
                            const struct ws_prune_plan *plan, const struct ws_prune_result *res,
                            int dry_run)
{
    char b1[32], b2[32], b3[32], cut[1024], temp[96] = "";
    size_t nb, nw;
    uint64_t bb, wb;

    totals(plan, res, dry_run, &nb, &nw, &bb, &wb);
    human_bytes(bb, b1, sizeof(b1));
    human_bytes(wb, b2, sizeof(b2));
    human_bytes(bb + wb, b3, sizeof(b3));
    cutoff_text(in, plan, cut, sizeof(cut));
    if (res->temp_deleted)
        snprintf(temp, sizeof(temp), " and %zu temp file(s) of killed uploads", res->temp_deleted);
    fprintf(f,
            "summary: %s %zu backup(s) (%s), %zu WAL file(s)%s (%s), %s %s; %s %zu "
            "backup(s); %s\n",
            dry_run ? "would delete" : "deleted", nb, b1, nw, temp, b2, b3,
            dry_run ? "would be freed" : "freed", dry_run ? "would keep" : "kept",
            kept_count(in, plan, res, dry_run), cut);
}

void ws_prune_print_json(FILE *f, const struct ws_config *cfg, const struct ws_repo *repo,
                         const struct ws_prune_input *in, const struct ws_prune_plan *plan,
                         const struct ws_prune_result *res, int dry_run, const char *error)
{
    char when[21], why[1024];
    size_t k, j;
    unsigned bit;

    ws_format_utc(in->now, when);
    fprintf(f, "{\"cluster\": ");
    json_string(f, repo->cluster);
    fprintf(f, ", \"dry_run\": %s, \"time\": \"%s\", \"retain_full\": ", dry_run ? "true" : "false",
            when);
    if (cfg->retain_full)
        fprintf(f, "%d", cfg->retain_full);
    else
        fprintf(f, "null");
    fprintf(f, ", \"retain_time_seconds\": ");
    if (cfg->retain_time)
        fprintf(f, "%" PRId64, cfg->retain_time);
    else
        fprintf(f, "null");
    fprintf(f, ", \"backups\": [");
    for (k = 0; k < in->nbackups; k++) {
        size_t i = plan->order[k];
        const struct ws_prune_backup *b = &in->backups[i];
        int first = 1;
        fprintf(f, "%s\n  {\"id\": \"%s\", \"status\": \"%s\", \"pinned\": %s", k ? "," : "", b->id,
                ws_prune_status_name(b->status), b->pinned ? "true" : "false");
        if (b->has_position) {
            char a[21], c[21], l[24];
            ws_format_utc(b->start_time, a);
            ws_format_utc(b->stop_time, c);
            ws_wal_format_lsn(l, b->start_lsn);
            fprintf(f,
                    ", \"start_time\": \"%s\", \"stop_time\": \"%s\", \"start_lsn\": \"%s\", "
                    "\"timeline\": %" PRIu32,
                    a, c, l, b->timeline);
        }
        fprintf(f, ", \"stored_bytes\": %" PRIu64 ", \"action\": \"%s\", \"reasons\": [",
                b->stored_bytes, plan->keep[i] ? "keep" : "delete");
        for (bit = 1; bit; bit <<= 1) {
            if (plan->why[i] & bit) {
                fprintf(f, "%s\"%s\"", first ? "" : ", ", ws_prune_why_name(bit));
                first = 0;
            }
        }
        ws_prune_why_text(in, plan, plan->why[i], why, sizeof(why));
        fprintf(f, "], \"reason\": ");
        json_string(f, why);
        fprintf(f, ", \"deleted\": %s}",
                res->backup_done && res->backup_done[i] ? "true" : "false");
    }
    fprintf(f, "%s], \"wal\": {\"latest_timeline\": %" PRIu32 ", \"keep_from_lsn\": ",
            in->nbackups ? "\n" : "", plan->latest_tli);
    if (plan->wal_cutoff) {
        char l[24];
        ws_wal_format_lsn(l, ws_wal_segno_to_lsn(plan->wal_cutoff, in->wal_segment_size));
        fprintf(f, "\"%s\"", l);
    } else {
        fprintf(f, "null");
    }
    fprintf(f, ", \"keep_from_backup\": ");
    if (plan->cutoff_backup >= 0)
        fprintf(f, "\"%s\"", in->backups[plan->cutoff_backup].id);
    else
        fprintf(f, "null");
    fprintf(f, ", \"timelines\": [");
    for (j = 0; j < plan->ntls; j++) {
        static const char *const rules[] = {"no_backup", "reached", "ancestor", "unreached",
                                            "lineage_unknown"};
        const struct ws_prune_tl *t = &plan->tls[j];
        fprintf(f, "%s{\"timeline\": %" PRIu32 ", \"rule\": \"%s\", \"keep_from_lsn\": ",
                j ? ", " : "", t->tli, rules[t->rule]);
        if (t->cutoff) {
            char l[24];
            ws_wal_format_lsn(l, ws_wal_segno_to_lsn(t->cutoff, in->wal_segment_size));
            fprintf(f, "\"%s\"}", l);
        } else {
            fprintf(f, "null}");
        }
    }
    fprintf(f, "], \"files\": %zu, \"bytes\": %" PRIu64 ", \"deleted_files\": %zu, \"delete\": [",
            plan->nwal_delete, plan->wal_bytes, res->wal_deleted);
    for (j = 0; j < plan->nwal_delete; j++)
        fprintf(f, "%s\"%s\"", j ? ", " : "", in->wal[plan->wal_delete[j]].name);
    fprintf(f, "]}, \"hold\": ");
    if (plan->hold_msg)
        json_string(f, plan->hold_msg);
    else
        fprintf(f, "null");
    fprintf(f, ", \"warnings\": [");
    for (j = 0; j < plan->nwarnings; j++) {
        fprintf(f, "%s", j ? ", " : "");
        json_string(f, plan->warnings[j]);
    }
    {
        size_t nb, nw;
        uint64_t bb, wb;
        totals(plan, res, dry_run, &nb, &nw, &bb, &wb);
        fprintf(f,
                "], \"summary\": {\"backups_deleted\": %zu, \"wal_files_deleted\": %zu, "
                "\"temp_files_deleted\": %zu, \"bytes_freed\": %" PRIu64
                ", \"backups_kept\": %zu}, \"error\": ",
                nb, nw, res->temp_deleted, bb + wb, kept_count(in, plan, res, dry_run));
    }
    if (error)
        json_string(f, error);
    else
        fprintf(f, "null");
    fprintf(f, "}\n");
}

void ws_prune_print_empty(FILE *f, const struct ws_repo *repo, const struct ws_prune_opts *o)
{
    if (o->json) {
        fprintf(f, "{\"cluster\": ");
        json_string(f, repo->cluster);
        fprintf(f,
                ", \"dry_run\": %s, \"backups\": [], \"wal\": null, \"warnings\": [], "
                "\"summary\": {\"backups_deleted\": 0, \"wal_files_deleted\": 0, "
                "\"bytes_freed\": 0, \"backups_kept\": 0}, \"error\": null}\n",
                o->dry_run ? "true" : "false");
    } else {
        fprintf(f, "cluster \"%s\": nothing in repository %s yet\n", repo->cluster,
                repo->st->location);
    }
}
