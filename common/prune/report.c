/* prune/report.c - what wal-prune says: reasons, the text lines, the summary, the JSON. */
#include "prune/prune_int.h"

#include <inttypes.h>
#include <string.h>

#include "base/util.h"
#include "pg/wal.h"

void ws_prune_format_duration(int64_t s, char *out, size_t outsz)
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
    case WS_KEEP_FULL_CHAIN:
        return "retain_full_chain";
    case WS_KEEP_REFERENCED:
        return "referenced";
    case WS_KEEP_LINK_INVALID:
        return "link_invalid";
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

/* The phrase of an expired backup: the policies it falls outside of. */
static void expired_phrase(const struct ws_prune_input *in, const char *window, char *out,
                           size_t outsz)
{
    char f[160] = "", t[64] = "";

    if (in->retain_full == 1)
        snprintf(f, sizeof(f),
                 "older than the newest complete full backup and not of its chain "
                 "(retain_full = 1)");
    else if (in->retain_full)
        snprintf(f, sizeof(f),
                 "older than the %d newest complete full backups and not of their chains "
                 "(retain_full)",
                 in->retain_full);
    if (in->retain_time)
        snprintf(t, sizeof(t), "%sended before the last %s", f[0] ? ", and " : "", window);
    snprintf(out, outsz, "%s%s", f, t);
}

/* The id of backup j of the input, or "?" (j out of range: no plan, or none recorded). */
static const char *id_of(const struct ws_prune_input *in, long j)
{
    return j >= 0 && (size_t)j < in->nbackups ? in->backups[j].id : "?";
}

/* The phrases of the chain rules for backup i. */
static void chain_phrase(const struct ws_prune_input *in, const struct ws_prune_plan *plan,
                         size_t i, unsigned bit, char *out, size_t outsz)
{
    const int have = plan && plan->ref && i < in->nbackups;

    if (bit == WS_KEEP_REFERENCED)
        snprintf(out, outsz, "kept: referenced by %s",
                 id_of(in, have ? plan->referenced_by[i] : -1));
    else if (bit == WS_KEEP_FULL_CHAIN)
        snprintf(out, outsz,
                 "its chain ends at full backup %s, one of the %d newest complete full backups "
                 "(retain_full)",
                 id_of(in, have ? ws_prune_chain_root(in, plan, i) : -1), in->retain_full);
    else
        snprintf(out, outsz,
                 "a backup of its chain is invalid: never deleted automatically, like that one");
}

/* The phrase of one bit of `why` for backup i; window and age are the durations as text. */
static void why_phrase(const struct ws_prune_input *in, const struct ws_prune_plan *plan, size_t i,
                       unsigned bit, const char *window, const char *age, char *out, size_t outsz)
{
    uint32_t latest = plan ? plan->latest_tli : 0;

    switch (bit) {
    case WS_KEEP_REFERENCED:
    case WS_KEEP_FULL_CHAIN:
    case WS_KEEP_LINK_INVALID:
        chain_phrase(in, plan, i, bit, out, outsz);
        break;
    case WS_KEEP_PINNED:
        snprintf(out, outsz, "pinned (basebackup keep)");
        break;
    case WS_KEEP_NEWEST:
        snprintf(out, outsz, "the newest complete backup");
        break;
    case WS_KEEP_FULL:
        if (in->retain_full == 1)
            snprintf(out, outsz, "the newest complete full backup (retain_full = 1)");
        else
            snprintf(out, outsz, "one of the %d newest complete full backups (retain_full)",
                     in->retain_full);
        break;
    case WS_KEEP_WINDOW:
        snprintf(out, outsz, "ended within the last %s (retain_time)", window);
        break;
    case WS_KEEP_WINDOW_BASE:
        snprintf(out, outsz,
                 "the newest backup that ended before the %s window opened (retain_time): "
                 "restores to the window's first moments start from it",
                 window);
        break;
    case WS_KEEP_WINDOW_TL:
        snprintf(out, outsz,
                 "the newest backup that ended before the %s window opened and can reach "
                 "timeline %" PRIu32 ", the latest (retain_time): restores along it to the "
                 "window's first moments start from it",
                 window, latest);
        break;
    case WS_KEEP_HELD:
        snprintf(out, outsz, "the policy would delete it, but wal-prune deletes none while %s",
                 plan && (plan->hold & WS_HOLD_LINEAGE)
                     ? "a timeline's history cannot be read"
                     : "backup times and WAL positions disagree");
        break;
    case WS_KEEP_TIMELINE:
        snprintf(out, outsz, "the newest backup that can reach timeline %" PRIu32 ", the latest",
                 latest);
        break;
    case WS_KEEP_PENDING:
        snprintf(out, outsz,
                 "incomplete but newer than every complete backup: its WAL may still arrive");
        break;
    case WS_KEEP_YOUNG:
        snprintf(out, outsz,
                 "not complete, but written to within the last %s: it may still be running", age);
        break;
    case WS_KEEP_UNREADABLE:
        snprintf(out, outsz, "its manifest cannot be read: never deleted automatically");
        break;
    case WS_DROP_DELETING:
        snprintf(out, outsz, "an interrupted wal-prune had begun deleting it");
        break;
    case WS_DROP_ABANDONED:
        snprintf(out, outsz, "not complete and untouched for more than %s", age);
        break;
    default:
        expired_phrase(in, window, out, outsz);
        break;
    }
}

void ws_prune_why_text(const struct ws_prune_input *in, const struct ws_prune_plan *plan, size_t i,
                       unsigned why, char *out, size_t outsz)
{
    /* most telling first */
    static const unsigned order[] = {WS_KEEP_PINNED,       WS_KEEP_NEWEST,   WS_KEEP_FULL,
                                     WS_KEEP_FULL_CHAIN,   WS_KEEP_WINDOW,   WS_KEEP_WINDOW_BASE,
                                     WS_KEEP_WINDOW_TL,    WS_KEEP_TIMELINE, WS_KEEP_REFERENCED,
                                     WS_KEEP_PENDING,      WS_KEEP_YOUNG,    WS_KEEP_UNREADABLE,
                                     WS_KEEP_LINK_INVALID, WS_KEEP_HELD,     WS_DROP_DELETING,
                                     WS_DROP_ABANDONED,    WS_DROP_RETENTION};
    char window[32], age[32], phrase[256];
    size_t k, used = 0;

    ws_prune_format_duration(in->retain_time, window, sizeof(window));
    ws_prune_format_duration(ws_prune_age_limit(in->incomplete_age), age, sizeof(age));
    out[0] = '\0';
    for (k = 0; k < sizeof(order) / sizeof(order[0]) && used < outsz; k++) {
        if (!(why & order[k]))
            continue;
        why_phrase(in, plan, i, order[k], window, age, phrase, sizeof(phrase));
        used += (size_t)snprintf(out + used, used < outsz ? outsz - used : 0, "%s%s",
                                 used ? "; " : "", phrase);
    }
}

void ws_prune_print_backup(FILE *f, const char *verb, const struct ws_prune_input *in,
                           const struct ws_prune_plan *plan, size_t i)
{
    const struct ws_prune_backup *b = &in->backups[i];
    char why[1024], when[21], size[32];

    ws_prune_why_text(in, plan, i, plan->why[i], why, sizeof(why));
    ws_format_bytes(b->stored_bytes, size, sizeof(size));
    if (b->has_position) {
        ws_format_utc(b->start_time, when);
        fprintf(f, "%s backup %s (%s%s, started %s, timeline %" PRIu32 ", %s stored): %s\n", verb,
                b->id, ws_backup_status_name(b->status), b->pinned ? ", pinned" : "", when,
                b->timeline, size, why);
    } else {
        fprintf(f, "%s backup %s (%s%s, %s stored): %s\n", verb, b->id,
                ws_backup_status_name(b->status), b->pinned ? ", pinned" : "", size, why);
    }
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
    char b1[32], b2[32], b3[32], cut[1024], more[160] = "";
    size_t nb, nw, nc = dry_run ? plan->nchunk_delete : res->chunks_deleted;
    uint64_t bb, wb;

    totals(plan, res, dry_run, &nb, &nw, &bb, &wb);
    ws_format_bytes(bb, b1, sizeof(b1));
    ws_format_bytes(wb, b2, sizeof(b2));
    ws_format_bytes(bb + wb, b3, sizeof(b3));
    cutoff_text(in, plan, cut, sizeof(cut));
    if (res->temp_deleted)
        ws_prune_append(more, sizeof(more), " and %zu temp file(s) of killed uploads",
                        res->temp_deleted);
    if (nc)
        ws_prune_append(more, sizeof(more), " and %zu streamed chunk(s)", nc);
    fprintf(f,
            "summary: %s %zu backup(s) (%s), %zu WAL file(s)%s (%s), %s %s; %s %zu "
            "backup(s); %s\n",
            dry_run ? "would delete" : "deleted", nb, b1, nw, more, b2, b3,
            dry_run ? "would be freed" : "freed", dry_run ? "would keep" : "kept",
            kept_count(in, plan, res, dry_run), cut);
}

/* A JSON string, or null when s is NULL. */
static void json_string_or_null(FILE *f, const char *s)
{
    if (s)
        ws_json_string(f, s);
    else
        fprintf(f, "null");
}

/* The LSN where segment segno begins, as a JSON string; null for 0 (nothing cut). */
static void json_segno_lsn(FILE *f, const struct ws_prune_input *in, uint64_t segno)
{
    char l[24];

    if (!segno) {
        fprintf(f, "null");
        return;
    }
    ws_wal_format_lsn(l, ws_wal_segno_to_lsn(segno, in->wal_segment_size));
    fprintf(f, "\"%s\"", l);
}

/* Backup i as a JSON object. */
static void json_backup(FILE *f, const struct ws_prune_input *in, const struct ws_prune_plan *plan,
                        const struct ws_prune_result *res, size_t i)
{
    const struct ws_prune_backup *b = &in->backups[i];
    char why[1024];
    unsigned bit;
    int first = 1;

    fprintf(f, "{\"id\": \"%s\", \"status\": \"%s\", \"pinned\": %s", b->id,
            ws_backup_status_name(b->status), b->pinned ? "true" : "false");
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
    ws_prune_why_text(in, plan, i, plan->why[i], why, sizeof(why));
    fprintf(f, "], \"reason\": ");
    ws_json_string(f, why);
    if (plan->referenced_by && plan->referenced_by[i] >= 0)
        fprintf(f, ", \"referenced_by\": \"%s\"", in->backups[plan->referenced_by[i]].id);
    fprintf(f, ", \"deleted\": %s}", res->backup_done && res->backup_done[i] ? "true" : "false");
}

/* The "wal" object: cutoffs, per timeline, and the files. */
static void json_wal(FILE *f, const struct ws_prune_input *in, const struct ws_prune_plan *plan,
                     const struct ws_prune_result *res)
{
    static const char *const rules[] = {"no_backup", "reached", "ancestor", "unreached",
                                        "lineage_unknown"};
    size_t j;

    fprintf(f, "{\"latest_timeline\": %" PRIu32 ", \"keep_from_lsn\": ", plan->latest_tli);
    json_segno_lsn(f, in, plan->wal_cutoff);
    fprintf(f, ", \"keep_from_backup\": ");
    if (plan->cutoff_backup >= 0)
        fprintf(f, "\"%s\"", in->backups[plan->cutoff_backup].id);
    else
        fprintf(f, "null");
    fprintf(f, ", \"timelines\": [");
    for (j = 0; j < plan->ntls; j++) {
        const struct ws_prune_tl *t = &plan->tls[j];
        fprintf(f, "%s{\"timeline\": %" PRIu32 ", \"rule\": \"%s\", \"keep_from_lsn\": ",
                j ? ", " : "", t->tli, rules[t->rule]);
        json_segno_lsn(f, in, t->cutoff);
        fprintf(f, "}");
    }
    fprintf(f, "], \"files\": %zu, \"bytes\": %" PRIu64 ", \"deleted_files\": %zu, \"delete\": [",
            plan->nwal_delete, plan->wal_bytes, res->wal_deleted);
    for (j = 0; j < plan->nwal_delete; j++)
        fprintf(f, "%s\"%s\"", j ? ", " : "", in->wal[plan->wal_delete[j]].name);
    fprintf(f, "]}");
}

void ws_prune_print_json(FILE *f, const struct ws_config *cfg, const struct ws_repo *repo,
                         const struct ws_prune_input *in, const struct ws_prune_plan *plan,
                         const struct ws_prune_lrun *lr, const struct ws_prune_result *res,
                         int dry_run, const char *error)
{
    char when[21];
    size_t k, nb, nw;
    uint64_t bb, wb;

    ws_format_utc(in->now, when);
    fprintf(f, "{\"cluster\": ");
    ws_json_string(f, repo->cluster);
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
        fprintf(f, "%s\n  ", k ? "," : "");
        json_backup(f, in, plan, res, plan->order[k]);
    }
    fprintf(f, "%s], \"wal\": ", in->nbackups ? "\n" : "");
    json_wal(f, in, plan, res);
    fprintf(f, ", \"hold\": ");
    json_string_or_null(f, plan->hold_msg);
    fprintf(f, ", \"warnings\": [");
    for (k = 0; k < plan->nwarnings; k++) {
        fprintf(f, "%s", k ? ", " : "");
        ws_json_string(f, plan->warnings[k]);
    }
    totals(plan, res, dry_run, &nb, &nw, &bb, &wb);
    fprintf(f,
            "], \"summary\": {\"backups_deleted\": %zu, \"wal_files_deleted\": %zu, "
            "\"temp_files_deleted\": %zu, \"bytes_freed\": %" PRIu64
            ", \"backups_kept\": %zu}, \"logical\": ",
            nb, nw, res->temp_deleted, bb + wb, kept_count(in, plan, res, dry_run));
    if (lr)
        ws_prune_logical_json(f, lr, dry_run);
    else
        fprintf(f, "null");
    fprintf(f, ", \"error\": ");
    json_string_or_null(f, error);
    fprintf(f, "}\n");
}

void ws_prune_print_logical_json(FILE *f, const struct ws_repo *repo,
                                 const struct ws_prune_lrun *lr, int dry_run, const char *error)
{
    char when[21];

    ws_format_utc(lr->in.now, when);
    fprintf(f, "{\"cluster\": ");
    ws_json_string(f, repo->cluster);
    fprintf(f,
            ", \"dry_run\": %s, \"time\": \"%s\", \"retain_full\": null, "
            "\"retain_time_seconds\": null, \"backups\": [], \"wal\": null, \"hold\": null, "
            "\"warnings\": [], \"summary\": {\"backups_deleted\": 0, \"wal_files_deleted\": 0, "
            "\"temp_files_deleted\": 0, \"bytes_freed\": 0, \"backups_kept\": 0}, \"logical\": ",
            dry_run ? "true" : "false", when);
    ws_prune_logical_json(f, lr, dry_run);
    fprintf(f, ", \"error\": ");
    json_string_or_null(f, error);
    fprintf(f, "}\n");
}

void ws_prune_print_empty(FILE *f, const struct ws_repo *repo, const struct ws_prune_opts *o)
{
    if (o->json) {
        fprintf(f, "{\"cluster\": ");
        ws_json_string(f, repo->cluster);
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
