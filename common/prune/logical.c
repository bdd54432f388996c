/* prune/logical.c - retention of logical backups: gather, the planner, execute, report
 * (prune.h, "logical backups"; docs/design/prune.md). */
#include "prune/prune_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

/* ---- the planner: a pure function of its input ---- */

static int by_id(const void *a, const void *b, void *arg)
{
    const struct ws_prune_logical *v = arg;

    return strcmp(v[*(const size_t *)a].id, v[*(const size_t *)b].id);
}

static int plan_init(const struct ws_prune_logical_input *in, struct ws_prune_logical_plan *plan,
                     struct ws_error *err)
{
    size_t i;

    memset(plan, 0, sizeof(*plan));
    if (!in->retain_logical && !in->retain_logical_time)
        return ws_error_set(err, WS_ERR_CONFIG,
                            "no retention policy for logical backups is set: set retain_logical "
                            "or retain_logical_time");
    plan->keep = calloc(in->n + 1, sizeof(*plan->keep));
    plan->why = calloc(in->n + 1, sizeof(*plan->why));
    plan->order = calloc(in->n + 1, sizeof(*plan->order));
    plan->deletes = calloc(in->n + 1, sizeof(*plan->deletes));
    if (!plan->keep || !plan->why || !plan->order || !plan->deletes) {
        ws_prune_logical_plan_free(plan);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    }
    for (i = 0; i < in->n; i++)
        plan->order[i] = i;
    qsort_r(plan->order, in->n, sizeof(*plan->order), by_id, (void *)in->backups);
    return 0;
}

/* The complete backups, newest first: the newest, retain_logical's N, retain_logical_time's. */
static void keep_complete(const struct ws_prune_logical_input *in,
                          struct ws_prune_logical_plan *plan)
{
    int64_t opens = in->now - in->retain_logical_time;
    size_t k, i;
    int count = 0;

    for (k = in->n; k-- > 0;) {
        i = plan->order[k];
        if (in->backups[i].status != WS_LOGICAL_COMPLETE)
            continue;
        if (++count == 1)
            plan->why[i] |= WS_LKEEP_NEWEST;
        if (in->retain_logical && count <= in->retain_logical)
            plan->why[i] |= WS_LKEEP_COUNT;
        if (in->retain_logical_time && ws_backup_id_time(in->backups[i].id) >= opens)
            plan->why[i] |= WS_LKEEP_WINDOW;
    }
}

/* Pins, invalid backups, and the rest: not complete is young or abandoned, complete goes. */
static void judge(const struct ws_prune_logical_input *in, struct ws_prune_logical_plan *plan)
{
    int64_t limit = ws_prune_age_limit(in->incomplete_age);
    size_t i;

    for (i = 0; i < in->n; i++) {
        const struct ws_prune_logical *b = &in->backups[i];
        int64_t last =
            b->last_write > ws_backup_id_time(b->id) ? b->last_write : ws_backup_id_time(b->id);
        if (b->pinned)
            plan->why[i] |= WS_LKEEP_PINNED;
        if (b->status == WS_LOGICAL_INVALID)
            plan->why[i] |= WS_LKEEP_INVALID;
        else if (b->status == WS_LOGICAL_INCOMPLETE)
            plan->why[i] |= in->now - last < limit ? WS_LKEEP_YOUNG : WS_LDROP_ABANDONED;
        if (plan->why[i] & 0xffffu)
            plan->why[i] &= 0xffffu; /* any reason to keep wins */
        else if (b->status == WS_LOGICAL_COMPLETE)
            plan->why[i] |= WS_LDROP_RETENTION;
    }
}

/* keep, and the backups to delete, oldest first, with their bytes. */
static void tally(const struct ws_prune_logical_input *in, struct ws_prune_logical_plan *plan)
{
    size_t k;

    for (k = 0; k < in->n; k++) {
        size_t i = plan->order[k];
        plan->keep[i] = (plan->why[i] & 0xffffu) != 0;
        if (!plan->keep[i]) {
            plan->deletes[plan->ndelete++] = i;
            plan->bytes += in->backups[i].stored_bytes;
        }
    }
}

int ws_prune_logical_plan_make(const struct ws_prune_logical_input *in,
                               struct ws_prune_logical_plan *plan, struct ws_error *err)
{
    int rc;

    if ((rc = plan_init(in, plan, err)) != 0)
        return rc;
    keep_complete(in, plan);
    judge(in, plan);
    tally(in, plan);
    return 0;
}

void ws_prune_logical_plan_free(struct ws_prune_logical_plan *plan)
{
    free(plan->keep);
    free(plan->why);
    free(plan->order);
    free(plan->deletes);
    memset(plan, 0, sizeof(*plan));
}

const char *ws_prune_logical_why_name(unsigned bit)
{
    switch (bit) {
    case WS_LKEEP_NEWEST:
        return "newest";
    case WS_LKEEP_COUNT:
        return "retain_logical";
    case WS_LKEEP_WINDOW:
        return "retain_logical_time";
    case WS_LKEEP_PINNED:
        return "pinned";
    case WS_LKEEP_YOUNG:
        return "recent_incomplete";
    case WS_LKEEP_INVALID:
        return "invalid";
    case WS_LDROP_RETENTION:
        return "expired";
    case WS_LDROP_ABANDONED:
        return "abandoned";
    }
    return "?";
}

void ws_prune_logical_why_text(const struct ws_prune_logical_input *in, unsigned why, char *out,
                               size_t outsz)
{
    char window[32], age[32];

    ws_prune_format_duration(in->retain_logical_time, window, sizeof(window));
    ws_prune_format_duration(ws_prune_age_limit(in->incomplete_age), age, sizeof(age));
    out[0] = '\0';
    if (why & WS_LKEEP_PINNED)
        ws_prune_append(out, outsz, "%spinned (logicalbackup keep)", *out ? "; " : "");
    if (why & WS_LKEEP_COUNT)
        ws_prune_append(out, outsz, "%sone of the %d newest complete (retain_logical)",
                        *out ? "; " : "", in->retain_logical);
    if (why & WS_LKEEP_WINDOW)
        ws_prune_append(out, outsz, "%sstarted within the last %s (retain_logical_time)",
                        *out ? "; " : "", window);
    if (why & WS_LKEEP_NEWEST)
        ws_prune_append(out, outsz, "%sthe newest complete logical backup", *out ? "; " : "");
    if (why & WS_LKEEP_INVALID)
        ws_prune_append(out, outsz, "%sinvalid: never deleted automatically", *out ? "; " : "");
    if (why & WS_LKEEP_YOUNG)
        ws_prune_append(out, outsz,
                        "%snot complete, written to within %s (a create may be "
                        "running)",
                        *out ? "; " : "", age);
    if (why & WS_LDROP_RETENTION)
        ws_prune_append(out, outsz, "kept by no policy");
    if (why & WS_LDROP_ABANDONED)
        ws_prune_append(out, outsz, "not complete and untouched for %s", age);
}

/* ---- gather and execute ---- */

int ws_prune_logical_gather(struct ws_repo *repo, const struct ws_keyring *kr,
                            struct ws_prune_logical_state *st, struct ws_error *err)
{
    size_t i;
    int rc;

    memset(st, 0, sizeof(*st));
    if ((rc = ws_logical_catalog_load(repo, kr, &st->cat, err)) != 0)
        return rc;
    if (!(st->backups = calloc(st->cat.n + 1, sizeof(*st->backups)))) {
        ws_logical_catalog_free(&st->cat);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    }
    for (i = 0; i < st->cat.n; i++) {
        const struct ws_logical_entry *e = &st->cat.backups[i];
        struct ws_prune_logical *b = &st->backups[i];
        memcpy(b->id, e->id, sizeof(b->id));
        b->status = e->status;
        b->pinned = e->pinned;
        b->last_write = e->newest_mtime;
        b->stored_bytes = e->stored_total;
        b->why = e->why[0] ? e->why : NULL;
    }
    st->n = st->cat.n;
    return 0;
}

void ws_prune_logical_state_free(struct ws_prune_logical_state *st)
{
    free(st->backups);
    ws_logical_catalog_free(&st->cat);
    memset(st, 0, sizeof(*st));
}

int ws_prune_logical_execute(struct ws_repo *repo, const struct ws_prune_logical_input *in,
                             const struct ws_prune_logical_plan *plan, FILE *report, int *done,
                             size_t *deleted, uint64_t *bytes, struct ws_error *err)
{
    char why[512], size[32];
    size_t k;
    int rc;

    for (k = 0; k < plan->ndelete; k++) {
        const struct ws_prune_logical *b = &in->backups[plan->deletes[k]];
        if ((rc = ws_logical_delete(repo, b->id, err)) != 0)
            return ws_error_prefix(err, "could not delete logical backup %s", b->id);
        if (done)
            done[plan->deletes[k]] = 1;
        (*deleted)++;
        *bytes += b->stored_bytes;
        if (report) {
            ws_prune_logical_why_text(in, plan->why[plan->deletes[k]], why, sizeof(why));
            ws_format_bytes(b->stored_bytes, size, sizeof(size));
            fprintf(report, "deleted logical backup %s (%s): %s\n", b->id, size, why);
            fflush(report);
        }
    }
    return 0;
}

/* ---- report ---- */

void ws_prune_logical_print(FILE *f, const char *verb, const struct ws_prune_lrun *lr, int keep)
{
    char why[512], size[32];
    size_t k;

    for (k = 0; k < lr->in.n; k++) {
        size_t i = lr->plan.order[k];
        const struct ws_prune_logical *b = &lr->in.backups[i];
        if (lr->plan.keep[i] != keep)
            continue;
        ws_prune_logical_why_text(&lr->in, lr->plan.why[i], why, sizeof(why));
        ws_format_bytes(b->stored_bytes, size, sizeof(size));
        fprintf(f, "%s logical backup %s (%s%s, %s stored): %s\n", verb, b->id,
                ws_logical_status_name(b->status), b->pinned ? ", pinned" : "", size, why);
    }
}

void ws_prune_logical_summary(FILE *f, const struct ws_prune_lrun *lr, int dry_run)
{
    char size[32];
    size_t n = dry_run ? lr->plan.ndelete : lr->deleted;

    ws_format_bytes(dry_run ? lr->plan.bytes : lr->bytes, size, sizeof(size));
    fprintf(f, "logical: %s %zu logical backup(s) (%s); %s %zu\n",
            dry_run ? "would delete" : "deleted", n, size, dry_run ? "would keep" : "kept",
            lr->in.n - n);
}

void ws_prune_logical_json(FILE *f, const struct ws_prune_lrun *lr, int dry_run)
{
    char why[512];
    size_t k;
    unsigned bit;

    fprintf(f, "{\"retain_logical\": ");
    if (lr->in.retain_logical)
        fprintf(f, "%d", lr->in.retain_logical);
    else
        fprintf(f, "null");
    fprintf(f, ", \"retain_logical_time_seconds\": ");
    if (lr->in.retain_logical_time)
        fprintf(f, "%" PRId64, lr->in.retain_logical_time);
    else
        fprintf(f, "null");
    fprintf(f, ", \"backups\": [");
    for (k = 0; k < lr->in.n; k++) {
        size_t i = lr->plan.order[k];
        const struct ws_prune_logical *b = &lr->in.backups[i];
        int first = 1;
        fprintf(
            f,
            "%s\n  {\"id\": \"%s\", \"status\": \"%s\", \"pinned\": %s, \"stored_bytes\": %" PRIu64
            ", \"action\": \"%s\", \"reasons\": [",
            k ? "," : "", b->id, ws_logical_status_name(b->status), b->pinned ? "true" : "false",
            b->stored_bytes, lr->plan.keep[i] ? "keep" : "delete");
        for (bit = 1; bit; bit <<= 1)
            if (lr->plan.why[i] & bit) {
                fprintf(f, "%s\"%s\"", first ? "" : ", ", ws_prune_logical_why_name(bit));
                first = 0;
            }
        ws_prune_logical_why_text(&lr->in, lr->plan.why[i], why, sizeof(why));
        fprintf(f, "], \"reason\": ");
        ws_json_string(f, why);
        fprintf(f, ", \"deleted\": %s}", lr->done && lr->done[i] ? "true" : "false");
    }
    fprintf(f,
            "%s], \"summary\": {\"backups_deleted\": %zu, \"bytes_freed\": %" PRIu64
            ", \"backups_kept\": %zu}}",
            lr->in.n ? "\n" : "", dry_run ? lr->plan.ndelete : lr->deleted,
            dry_run ? lr->plan.bytes : lr->bytes,
            lr->in.n - (dry_run ? lr->plan.ndelete : lr->deleted));
}
