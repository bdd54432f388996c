/* prune/plan.c - the retention planner: a pure function of its input (no I/O, no clock). Its
 * rules, and why they are what they are: docs/design/prune.md. */
#include "prune/prune_int.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pg/wal.h"

/* ---- helpers ---- */

static int add_warning(struct ws_prune_plan *plan, struct ws_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int add_warning(struct ws_prune_plan *plan, struct ws_error *err, const char *fmt, ...)
{
    char line[1024], **p;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (!(p = realloc(plan->warnings, (plan->nwarnings + 1) * sizeof(*p))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    plan->warnings = p;
    if (!(p[plan->nwarnings] = strdup(line)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    plan->nwarnings++;
    return 0;
}

void ws_prune_append(char *buf, size_t sz, const char *fmt, ...)
{
    size_t used = strlen(buf);
    va_list ap;

    if (used + 1 >= sz)
        return;
    va_start(ap, fmt);
    vsnprintf(buf + used, sz - used, fmt, ap);
    va_end(ap);
}

int64_t ws_prune_age_limit(int64_t incomplete_age)
{
    return incomplete_age > WS_PRUNE_INCOMPLETE_AGE ? incomplete_age : WS_PRUNE_INCOMPLETE_AGE;
}

static int set_hold(struct ws_prune_plan *plan, unsigned bit, const char *msg, struct ws_error *err)
{
    char *m;
    size_t a = plan->hold_msg ? strlen(plan->hold_msg) : 0, b = strlen(msg);

    if (!(m = malloc(a + b + 16)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    if (plan->hold_msg)
        snprintf(m, a + b + 16, "%s; also, %s", plan->hold_msg, msg);
    else
        snprintf(m, a + b + 16, "%s", msg);
    free(plan->hold_msg);
    plan->hold_msg = m;
    plan->hold |= bit;
    return 0;
}

static uint64_t start_segno(const struct ws_prune_input *in, const struct ws_prune_backup *b)
{
    return ws_wal_lsn_to_segno(b->start_lsn, in->wal_segment_size);
}

static struct ws_prune_tl *tl_of(const struct ws_prune_plan *plan, uint32_t tli)
{
    size_t i;

    for (i = 0; i < plan->ntls; i++)
        if (plan->tls[i].tli == tli)
            return &plan->tls[i];
    return NULL;
}

/* ---- setting up ---- */

int ws_prune_plan_init(const struct ws_prune_input *in, struct ws_prune_plan *plan,
                       struct ws_error *err)
{
    const size_t n = in->nbackups;

    memset(plan, 0, sizeof(*plan));
    plan->cutoff_backup = -1;
    if (!in->retain_full && !in->retain_time)
        return ws_error_set(err, WS_ERR_CONFIG,
                            "no retention policy is set: set retain_full (keep this many newest "
                            "complete backups) or retain_time (keep what restores to any moment "
                            "of this period), or both (and for logical backups retain_logical or "
                            "retain_logical_time); wal-prune deletes nothing without one");
    if (!ws_wal_seg_size_valid(in->wal_segment_size))
        return ws_error_set(err, WS_ERR_INTERNAL, "invalid WAL segment size %" PRIu32,
                            in->wal_segment_size);
    plan->keep = calloc(n + 1, sizeof(*plan->keep));
    plan->why = calloc(n + 1, sizeof(*plan->why));
    plan->order = calloc(n + 1, sizeof(*plan->order));
    plan->wal_delete = calloc(in->nwal + 1, sizeof(*plan->wal_delete));
    plan->tls = calloc(in->nwal + 1, sizeof(*plan->tls));
    plan->ref = calloc(n + 1, sizeof(*plan->ref));
    plan->referenced_by = calloc(n + 1, sizeof(*plan->referenced_by));
    plan->delete_order = calloc(n + 1, sizeof(*plan->delete_order));
    if (!plan->keep || !plan->why || !plan->order || !plan->wal_delete || !plan->tls ||
        !plan->ref || !plan->referenced_by || !plan->delete_order) {
        ws_prune_plan_free(plan);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        plan->ref[i] = plan->referenced_by[i] = -1;
    return 0;
}

struct okey {
    int64_t t;
    uint64_t lsn;
    const char *id;
    size_t index;
};

static int cmp_okey(const void *a, const void *b)
{
    const struct okey *x = a, *y = b;

    if (x->t != y->t)
        return x->t < y->t ? -1 : 1;
    if (x->lsn != y->lsn)
        return x->lsn < y->lsn ? -1 : 1;
    return strcmp(x->id, y->id);
}

int ws_prune_order(const struct ws_prune_input *in, struct ws_prune_plan *plan,
                   struct ws_error *err)
{
    const size_t n = in->nbackups;
    struct okey *ok = calloc(n + 1, sizeof(*ok));
    size_t i;

    if (!ok)
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    for (i = 0; i < n; i++) {
        const struct ws_prune_backup *b = &in->backups[i];
        ok[i].t = b->has_position ? b->start_time : ws_backup_id_time(b->id);
        ok[i].lsn = b->has_position ? b->start_lsn : 0;
        ok[i].id = b->id;
        ok[i].index = i;
    }
    if (n > 1)
        qsort(ok, n, sizeof(*ok), cmp_okey);
    for (i = 0; i < n; i++)
        plan->order[i] = ok[i].index;
    free(ok);
    return 0;
}

/* ---- chains ---- */

struct idkey {
    const char *id;
    size_t index;
};

static int cmp_idkey(const void *a, const void *b)
{
    return strcmp(((const struct idkey *)a)->id, ((const struct idkey *)b)->id);
}

int ws_prune_link_chains(const struct ws_prune_input *in, struct ws_prune_plan *plan,
                         struct ws_error *err)
{
    struct idkey *byid = calloc(in->nbackups + 1, sizeof(*byid));
    size_t i;

    if (!byid)
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    for (i = 0; i < in->nbackups; i++) {
        byid[i].id = in->backups[i].id;
        byid[i].index = i;
    }
    if (in->nbackups > 1)
        qsort(byid, in->nbackups, sizeof(*byid), cmp_idkey);
    for (i = 0; i < in->nbackups; i++) {
        const struct ws_prune_backup *b = &in->backups[i];
        struct idkey key = {b->reference, 0};
        const struct idkey *r;
        if (!b->has_position || b->type == WS_BACKUP_FULL || !b->reference[0] || !in->nbackups)
            continue;
        r = bsearch(&key, byid, in->nbackups, sizeof(*byid), cmp_idkey);
        if (r && strcmp(r->id, b->id) < 0)
            plan->ref[i] = (long)r->index;
    }
    free(byid);
    return 0;
}

long ws_prune_chain_root(const struct ws_prune_input *in, const struct ws_prune_plan *plan,
                         size_t i)
{
    long cur = (long)i;

    while (plan->ref[cur] >= 0)
        cur = plan->ref[cur]; /* ids strictly decrease along ref: it ends */
    if (!in->backups[cur].has_position || in->backups[cur].type != WS_BACKUP_FULL)
        return -1;
    return cur;
}

long ws_prune_newest(const struct ws_prune_input *in, const struct ws_prune_plan *plan)
{
    size_t k;

    for (k = in->nbackups; k-- > 0;)
        if (in->backups[plan->order[k]].status == WS_BACKUP_COMPLETE)
            return (long)k;
    return -1;
}

/* ---- holds ---- */

int ws_prune_hold_lineage(const struct ws_prune_input *in, struct ws_prune_plan *plan,
                          struct ws_error *err)
{
    char list[256] = "", why[1024] = "", first[16] = "", msg[1024];
    uint32_t *tlv = calloc(in->nwal + in->nbackups + 2, sizeof(*tlv));
    size_t i, ntl, nunknown = 0;
    int rc = 0;

    if (!tlv)
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    ntl = ws_prune_lineage_tlis(in, plan->latest_tli, tlv);
    for (i = 0; i < ntl; i++) {
        const struct ws_prune_history *h;
        if (ws_prune_lineage_known(in, tlv[i]))
            continue;
        h = ws_prune_history_of(in, tlv[i]);
        ws_prune_append(list, sizeof(list), "%s%" PRIu32, nunknown ? ", " : "", tlv[i]);
        ws_prune_append(why, sizeof(why), "%s%08" PRIX32 ".history: %.200s", nunknown ? "; " : "",
                        tlv[i], h ? h->problem : "not in the repository");
        if (!nunknown)
            snprintf(first, sizeof(first), "%08" PRIX32, tlv[i]);
        nunknown++;
    }
    free(tlv);
    if (nunknown) {
        snprintf(msg, sizeof(msg),
                 "wal-prune deletes no backups by retention and no WAL of timeline%s %s: %s "
                 "history file%s cannot be read (%s), so which backups can restore along %s "
                 "is unknown; archive %s again from the server (as postgres: wal-push "
                 "<data directory>/pg_wal/%s.history, after removing a damaged copy from the "
                 "repository), or remove the WAL of a stray timeline from the repository by "
                 "hand",
                 nunknown > 1 ? "s" : "", list, nunknown > 1 ? "their" : "its",
                 nunknown > 1 ? "s" : "", why, nunknown > 1 ? "them" : "it",
                 nunknown > 1 ? "each" : "it", first);
        rc = set_hold(plan, WS_HOLD_LINEAGE, msg, err);
    }
    return rc;
}

/* a is before b in time order but after it in WAL order, on one line of history. */
static int out_of_order(const struct ws_prune_input *in, const struct ws_prune_backup *a,
                        const struct ws_prune_backup *b)
{
    return b->has_position && b->status != WS_BACKUP_DELETING && a->start_lsn > b->start_lsn &&
           ws_prune_one_line(in, a, b);
}

static int hold_order_on(struct ws_prune_plan *plan, const struct ws_prune_backup *a,
                         const struct ws_prune_backup *b, struct ws_error *err)
{
    char ta[21], tb[21], la[24], lb[24], msg[1024];

    ws_format_utc(a->start_time, ta);
    ws_format_utc(b->start_time, tb);
    ws_wal_format_lsn(la, a->start_lsn);
    ws_wal_format_lsn(lb, b->start_lsn);
    snprintf(msg, sizeof(msg),
             "wal-prune deletes no backups: backup %s (started %s, timeline %" PRIu32
             ", start LSN %s) is older than backup %s (started %s, timeline %" PRIu32
             ", start LSN %s) by its time but newer by its WAL position on the same line "
             "of history, so a clock was wrong and which backups are oldest is in doubt; "
             "check the database server's clock, and remove the backup whose time is "
             "wrong from the repository by hand once it is not needed",
             a->id, ta, a->timeline, la, b->id, tb, b->timeline, lb);
    return set_hold(plan, WS_HOLD_ORDER, msg, err);
}

int ws_prune_hold_unreadable(const struct ws_prune_input *in, struct ws_prune_plan *plan,
                             struct ws_error *err)
{
    char msg[512];

    for (size_t k = 0; k < in->nbackups; k++) {
        const struct ws_prune_backup *b = &in->backups[plan->order[k]];
        if (b->status != WS_BACKUP_UNREADABLE)
            continue;
        snprintf(msg, sizeof(msg),
                 "wal-prune deletes no backups: backup %s cannot be read by this user, so what "
                 "it needs is unknown; run wal-prune as the owner of the repository",
                 b->id);
        return set_hold(plan, WS_HOLD_UNREADABLE, msg, err);
    }
    return 0;
}

int ws_prune_hold_order(const struct ws_prune_input *in, struct ws_prune_plan *plan,
                        struct ws_error *err)
{
    const size_t n = in->nbackups;
    size_t k, m;

    for (k = 0; k < n; k++) {
        const struct ws_prune_backup *a = &in->backups[plan->order[k]];
        if (!a->has_position || a->status == WS_BACKUP_DELETING)
            continue;
        for (m = k + 1; m < n; m++)
            if (out_of_order(in, a, &in->backups[plan->order[m]]))
                return hold_order_on(plan, a, &in->backups[plan->order[m]], err);
    }
    return 0;
}

/* ---- the policies, on complete backups ---- */

void ws_prune_keep_newest(const struct ws_prune_input *in, struct ws_prune_plan *plan)
{
    long newest = ws_prune_newest(in, plan);

    if (newest >= 0)
        plan->why[plan->order[newest]] |= WS_KEEP_NEWEST;
}

void ws_prune_keep_full(const struct ws_prune_input *in, struct ws_prune_plan *plan)
{
    size_t k, i;
    int nfull = 0;

    for (k = in->nbackups; k-- > 0 && nfull < in->retain_full;) {
        size_t bi = plan->order[k];
        if (in->backups[bi].status != WS_BACKUP_COMPLETE || in->backups[bi].type != WS_BACKUP_FULL)
            continue;
        plan->why[bi] |= WS_KEEP_FULL;
        nfull++;
    }
    for (i = 0; i < in->nbackups; i++) {
        long root;
        if (in->backups[i].status != WS_BACKUP_COMPLETE || in->backups[i].type == WS_BACKUP_FULL)
            continue;
        root = ws_prune_chain_root(in, plan, i);
        if (root >= 0 && (plan->why[root] & WS_KEEP_FULL))
            plan->why[i] |= WS_KEEP_FULL_CHAIN;
    }
}

void ws_prune_keep_window(const struct ws_prune_input *in, struct ws_prune_plan *plan)
{
    const int64_t window_open = in->now - in->retain_time;
    long base = -1, base_tl = -1;
    size_t k;

    if (!in->retain_time)
        return;
    for (k = in->nbackups; k-- > 0;) {
        size_t bi = plan->order[k];
        const struct ws_prune_backup *b = &in->backups[bi];
        if (b->status != WS_BACKUP_COMPLETE)
            continue;
        /* a restore to the moment T can start from b when b->stop_time + 1 <= T */
        if (b->stop_time + 1 > window_open) {
            plan->why[bi] |= WS_KEEP_WINDOW;
            continue;
        }
        if (base < 0) {
            plan->why[bi] |= WS_KEEP_WINDOW_BASE;
            base = (long)bi;
        }
        if (base_tl < 0 && ws_prune_restorable_to(in, b, plan->latest_tli)) {
            if (base != (long)bi)
                plan->why[bi] |= WS_KEEP_WINDOW_TL;
            base_tl = (long)bi;
        }
    }
}

void ws_prune_keep_pinned(const struct ws_prune_input *in, struct ws_prune_plan *plan)
{
    size_t i;

    for (i = 0; i < in->nbackups; i++)
        if (in->backups[i].pinned)
            plan->why[i] |= WS_KEEP_PINNED;
}

void ws_prune_expire(const struct ws_prune_input *in, struct ws_prune_plan *plan)
{
    size_t i;

    for (i = 0; i < in->nbackups; i++)
        if (in->backups[i].status == WS_BACKUP_COMPLETE && !(plan->why[i] & WS_PRUNE_KEEP_MASK))
            plan->why[i] |= WS_DROP_RETENTION;
}

/* What becomes of a backup that is not complete, at position k of the order. */
static unsigned judge_one(const struct ws_prune_input *in, const struct ws_prune_backup *b, long k,
                          long newest)
{
    int64_t last = b->last_write, age = ws_prune_age_limit(in->incomplete_age);

    switch (b->status) {
    case WS_BACKUP_INCOMPLETE:
        if (b->stop_time > last)
            last = b->stop_time;
        if (in->now - last < age)
            return WS_KEEP_YOUNG;
        return newest < 0 || k > newest ? WS_KEEP_PENDING : WS_DROP_ABANDONED;
    case WS_BACKUP_RUNNING:
        if (ws_backup_id_time(b->id) > last)
            last = ws_backup_id_time(b->id);
        return in->now - last < age ? WS_KEEP_YOUNG : WS_DROP_ABANDONED;
    case WS_BACKUP_INVALID:
        return b->has_position ? WS_KEEP_LINK_INVALID : WS_KEEP_UNREADABLE;
    case WS_BACKUP_UNREADABLE:
        return WS_KEEP_UNREADABLE;
    default:
        return WS_DROP_DELETING;
    }
}

void ws_prune_judge_incomplete(const struct ws_prune_input *in, struct ws_prune_plan *plan)
{
    long newest = ws_prune_newest(in, plan);
    size_t k;

    for (k = 0; k < in->nbackups; k++) {
        size_t bi = plan->order[k];
        unsigned *why = &plan->why[bi];
        if (in->backups[bi].status == WS_BACKUP_COMPLETE)
            continue;
        *why |= judge_one(in, &in->backups[bi], (long)k, newest);
        if (*why & WS_PRUNE_KEEP_MASK)
            *why &= WS_PRUNE_KEEP_MASK; /* a keeping reason (a pin) wins */
    }
}

int ws_prune_keep_latest_reachable(const struct ws_prune_input *in, struct ws_prune_plan *plan,
                                   int *warned, struct ws_error *err)
{
    long found = -1;
    size_t k;

    *warned = 0;
    if (!plan->latest_tli || ws_prune_newest(in, plan) < 0)
        return 0;
    for (k = 0; k < in->nbackups; k++) {
        size_t bi = plan->order[k];
        if (in->backups[bi].status != WS_BACKUP_COMPLETE ||
            !ws_prune_restorable_to(in, &in->backups[bi], plan->latest_tli))
            continue;
        if (plan->why[bi] & WS_PRUNE_KEEP_MASK)
            return 0;     /* a kept one reaches it */
        found = (long)bi; /* the newest so far */
    }
    if (found >= 0) {
        plan->why[found] = WS_KEEP_TIMELINE;
        return 0;
    }
    if (!ws_prune_lineage_known(in, plan->latest_tli))
        return 0; /* held instead (ws_prune_hold_lineage) */
    *warned = 1;
    return add_warning(plan, err,
                       "no complete backup can reach timeline %" PRIu32
                       ", the latest in the archive: recovery to its newest WAL is "
                       "impossible until a base backup of it is taken "
                       "(basebackup create); none of its WAL is deleted",
                       plan->latest_tli);
}

void ws_prune_keep_referenced(const struct ws_prune_input *in, struct ws_prune_plan *plan)
{
    size_t k;

    for (k = in->nbackups; k-- > 0;) {
        size_t bi = plan->order[k];
        long by = (long)bi, r;
        if (!(plan->why[bi] & WS_PRUNE_KEEP_MASK))
            continue;
        /* a link already referenced had its own chain walked */
        for (r = plan->ref[bi]; r >= 0 && !(plan->why[r] & WS_KEEP_REFERENCED); r = plan->ref[r]) {
            if (in->backups[r].status == WS_BACKUP_DELETING)
                break; /* partly gone already: nothing to keep */
            plan->why[r] = (plan->why[r] & WS_PRUNE_KEEP_MASK) | WS_KEEP_REFERENCED;
            plan->referenced_by[r] = by;
            by = r;
        }
    }
}

void ws_prune_apply_hold(const struct ws_prune_input *in, struct ws_prune_plan *plan)
{
    size_t i;

    if (!plan->hold)
        return;
    for (i = 0; i < in->nbackups; i++) {
        if ((plan->why[i] & WS_DROP_RETENTION) ||
            ((plan->hold & WS_HOLD_ORDER) && (plan->why[i] & WS_DROP_ABANDONED)))
            plan->why[i] = WS_KEEP_HELD;
    }
}

void ws_prune_tally(const struct ws_prune_input *in, struct ws_prune_plan *plan)
{
    size_t i;

    for (i = 0; i < in->nbackups; i++) {
        plan->keep[i] = (plan->why[i] & WS_PRUNE_KEEP_MASK) != 0;
        if (!plan->keep[i]) {
            plan->nbackups_delete++;
            plan->backup_bytes += in->backups[i].stored_bytes;
        }
    }
}

struct dkey {
    size_t group; /* position in plan->order of the oldest backup to delete in its chain */
    size_t depth; /* links to delete between it and that one */
    size_t pos;   /* its own position in plan->order */
    size_t index;
};

static int cmp_dkey(const void *a, const void *b)
{
    const struct dkey *x = a, *y = b;

    if (x->group != y->group)
        return x->group < y->group ? -1 : 1;
    if (x->depth != y->depth)
        return x->depth > y->depth ? -1 : 1;
    return x->pos > y->pos ? -1 : x->pos < y->pos;
}

int ws_prune_delete_order(const struct ws_prune_input *in, struct ws_prune_plan *plan,
                          struct ws_error *err)
{
    struct dkey *dk = calloc(in->nbackups + 1, sizeof(*dk));
    size_t *pos = calloc(in->nbackups + 1, sizeof(*pos));
    size_t k, n = 0;

    if (!dk || !pos) {
        free(dk);
        free(pos);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    }
    for (k = 0; k < in->nbackups; k++)
        pos[plan->order[k]] = k;
    for (k = 0; k < in->nbackups; k++) {
        size_t bi = plan->order[k], g = bi, depth = 0;
        if (plan->keep[bi])
            continue;
        while (plan->ref[g] >= 0 && !plan->keep[plan->ref[g]]) {
            g = (size_t)plan->ref[g];
            depth++;
        }
        dk[n].group = pos[g];
        dk[n].depth = depth;
        dk[n].pos = k;
        dk[n].index = bi;
        n++;
    }
    if (n > 1)
        qsort(dk, n, sizeof(*dk), cmp_dkey);
    for (k = 0; k < n; k++)
        plan->delete_order[k] = dk[k].index;
    free(dk);
    free(pos);
    return 0;
}

int ws_prune_warn_kept(const struct ws_prune_input *in, struct ws_prune_plan *plan,
                       struct ws_error *err)
{
    size_t k;
    int rc = 0;

    for (k = 0; k < in->nbackups && rc == 0; k++) {
        size_t bi = plan->order[k];
        const struct ws_prune_backup *b = &in->backups[bi];
        if (b->status == WS_BACKUP_UNREADABLE)
            rc = add_warning(plan, err,
                             "backup %s is unreadable: %s; wal-prune keeps it, deletes no backup "
                             "by retention (it may need any older one) and keeps the WAL of "
                             "every timeline from the oldest start known of any backup",
                             b->id, b->problem ? b->problem : "permission denied");
        else if (plan->why[bi] & WS_KEEP_UNREADABLE)
            rc = add_warning(plan, err,
                             "backup %s: its manifest cannot be read (%s); wal-prune never deletes "
                             "it, and keeps the WAL of every timeline from the oldest start known "
                             "of any backup. Add the key it was written with to decrypt_key_files, "
                             "or, if it is damaged and not needed, remove %s/ from the repository "
                             "by hand",
                             b->id, b->problem ? b->problem : "invalid", b->id);
        else if (plan->why[bi] & WS_KEEP_LINK_INVALID)
            rc = add_warning(plan, err,
                             "backup %s is invalid (%s); wal-prune never deletes it while that "
                             "link may become readable again (the key it was written with added "
                             "to decrypt_key_files); if it is not needed, remove %s/ from the "
                             "repository by hand",
                             b->id, b->problem ? b->problem : "a link of its chain is invalid",
                             b->id);
        else if ((plan->why[bi] & WS_KEEP_PENDING) && b->problem)
            rc = add_warning(plan, err,
                             "backup %s has been incomplete for more than a day (%s); it is kept "
                             "because no complete backup is newer: take a full backup "
                             "(basebackup create --type full)",
                             b->id, b->problem);
        else if (plan->why[bi] & WS_KEEP_PENDING)
            rc = add_warning(plan, err,
                             "backup %s has been incomplete for more than a day (WAL missing); "
                             "it is kept because no complete backup is newer, in case the "
                             "archiver is behind: check pg_stat_archiver",
                             b->id);
    }
    return rc;
}

/* ---- WAL ---- */

uint64_t ws_prune_wal_floor(const struct ws_prune_input *in, const struct ws_prune_plan *plan,
                            long *from)
{
    uint64_t floor = UINT64_MAX, lowest_known = UINT64_MAX;
    long lowest_from = -1;
    size_t k, j;

    *from = -1;
    for (k = 0; k < in->nbackups; k++) {
        size_t bi = plan->order[k];
        if (in->backups[bi].has_position && start_segno(in, &in->backups[bi]) < lowest_known) {
            lowest_known = start_segno(in, &in->backups[bi]);
            lowest_from = (long)bi;
        }
    }
    for (k = 0; k < in->nbackups; k++) {
        size_t bi = plan->order[k];
        if (!plan->keep[bi] || in->backups[bi].has_position)
            continue;
        /* never a guessed position: the lowest start known, or everything when no backup with
         * a position precedes it */
        for (j = 0; j < k; j++)
            if (in->backups[plan->order[j]].has_position)
                break;
        if (j == k) {
            floor = 0;
            *from = -1;
        } else if (lowest_known < floor) {
            floor = lowest_known;
            *from = lowest_from;
        }
    }
    return floor;
}

void ws_prune_global_cutoff(const struct ws_prune_input *in, struct ws_prune_plan *plan,
                            uint64_t floor, long floor_from)
{
    uint64_t global = UINT64_MAX;
    long from = -1;
    size_t k;

    for (k = 0; k < in->nbackups; k++) {
        size_t bi = plan->order[k];
        const struct ws_prune_backup *b = &in->backups[bi];
        if (plan->keep[bi] && b->has_position && start_segno(in, b) < global) {
            global = start_segno(in, b);
            from = (long)bi;
        }
    }
    if (floor < global) {
        global = floor;
        from = floor_from;
    }
    if (ws_prune_newest(in, plan) < 0 || global == UINT64_MAX) {
        global = 0;
        from = -1;
    }
    plan->wal_cutoff = global;
    plan->cutoff_backup = global ? from : -1;
}

/* The rule and cutoff of timeline t->tli (docs/design/prune.md, "WAL"). */
static void timeline_rule(const struct ws_prune_input *in, const struct ws_prune_plan *plan,
                          uint64_t floor, long floor_from, struct ws_prune_tl *t)
{
    uint64_t c = UINT64_MAX, end;
    long from = -1;
    size_t k;

    if (!ws_prune_lineage_known(in, t->tli)) {
        t->rule = WS_TL_UNKNOWN;
        return;
    }
    for (k = 0; k < in->nbackups; k++) {
        size_t bi = plan->order[k];
        const struct ws_prune_backup *b = &in->backups[bi];
        if (plan->keep[bi] && ws_prune_needs_wal_of(in, b, t->tli) && start_segno(in, b) < c) {
            c = start_segno(in, b);
            from = (long)bi;
        }
    }
    if (c != UINT64_MAX) {
        t->rule = WS_TL_REACHED;
        if (floor < c) {
            c = floor;
            from = floor_from;
        }
        t->cutoff = c;
        t->backup = c ? from : -1;
        return;
    }
    for (k = 0; k < in->nbackups; k++) {
        const struct ws_prune_backup *b = &in->backups[k];
        if (plan->keep[k] && b->has_position && ws_prune_left_at(in, b->timeline, t->tli, &end)) {
            t->rule = WS_TL_ANCESTOR;
            t->cutoff = plan->wal_cutoff;
            t->backup = plan->cutoff_backup;
            return;
        }
    }
    t->rule = WS_TL_UNREACHED;
}

int ws_prune_timeline_cutoffs(const struct ws_prune_input *in, struct ws_prune_plan *plan,
                              uint64_t floor, long floor_from, int latest_warned,
                              struct ws_error *err)
{
    const int no_backup = ws_prune_newest(in, plan) < 0;
    uint32_t *tlv = calloc(in->nwal + 1, sizeof(*tlv));
    size_t i, ntl;
    int rc = 0;

    if (!tlv)
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    if (no_backup && in->nwal)
        rc = add_warning(plan, err, "the repository holds no complete backup: no WAL is deleted");
    ntl = ws_prune_wal_tlis(in, tlv);
    for (i = 0; i < ntl && rc == 0; i++) {
        struct ws_prune_tl *t = &plan->tls[plan->ntls++];
        t->tli = tlv[i];
        t->backup = -1;
        if (no_backup) {
            t->rule = WS_TL_NO_BACKUP;
            continue;
        }
        timeline_rule(in, plan, floor, floor_from, t);
        if (t->rule == WS_TL_UNREACHED && !(t->tli == plan->latest_tli && latest_warned) &&
            !(plan->hold & WS_HOLD_LINEAGE))
            rc = add_warning(plan, err,
                             "timeline %" PRIu32 ": no kept backup restores along it and it is "
                             "no ancestor of a kept backup's timeline, so none of its WAL is "
                             "deleted; if nothing needs it (a stray promoted copy that archived "
                             "into this repository, or a line abandoned by a point-in-time "
                             "restore), remove its WAL from the repository by hand",
                             t->tli);
    }
    free(tlv);
    return rc;
}

struct wkey {
    uint32_t tli;
    uint64_t segno;
    const char *name;
    size_t index;
};

static int cmp_wkey(const void *a, const void *b)
{
    const struct wkey *x = a, *y = b;

    if (x->tli != y->tli)
        return x->tli < y->tli ? -1 : 1;
    if (x->segno != y->segno)
        return x->segno < y->segno ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Holes in the segments that are kept (wk: sorted): moments in them cannot be restored. */
static int warn_gaps(const struct ws_prune_input *in, struct ws_prune_plan *plan,
                     const struct wkey *wk, size_t nw, struct ws_error *err)
{
    size_t i, prev = SIZE_MAX;
    int rc = 0;

    for (i = 0; i < nw && rc == 0; i++) {
        const struct ws_prune_wal *w = &in->wal[wk[i].index];
        const struct ws_prune_tl *t = tl_of(plan, w->tli);
        if (w->kind != WS_WAL_SEGMENT || (t && w->segno < t->cutoff))
            continue;
        if (prev != SIZE_MAX && in->wal[prev].tli == w->tli && w->segno > in->wal[prev].segno + 1) {
            char a[WS_WAL_NAME_LEN + 1], b[WS_WAL_NAME_LEN + 1];
            ws_wal_format_name(a, w->tli, in->wal[prev].segno + 1, in->wal_segment_size);
            ws_wal_format_name(b, w->tli, w->segno - 1, in->wal_segment_size);
            rc = add_warning(plan, err,
                             "WAL gap on timeline %" PRIu32 ": %s to %s are missing; no "
                             "restore can pass through them",
                             w->tli, a, b);
        }
        prev = wk[i].index;
    }
    return rc;
}

int ws_prune_select_wal(const struct ws_prune_input *in, struct ws_prune_plan *plan,
                        struct ws_error *err)
{
    struct wkey *wk = calloc(in->nwal + 1, sizeof(*wk));
    size_t i, nw = 0;
    int rc;

    if (!wk)
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    for (i = 0; i < in->nwal; i++) {
        const struct ws_prune_wal *w = &in->wal[i];
        if (w->kind == WS_WAL_HISTORY || w->kind == WS_WAL_INVALID)
            continue; /* history files are always kept */
        wk[nw].tli = w->tli;
        wk[nw].segno = w->segno;
        wk[nw].name = w->name;
        wk[nw].index = i;
        nw++;
    }
    if (nw > 1)
        qsort(wk, nw, sizeof(*wk), cmp_wkey);
    for (i = 0; i < nw; i++) {
        const struct ws_prune_tl *t = tl_of(plan, wk[i].tli);
        if (t && wk[i].segno < t->cutoff) {
            plan->wal_delete[plan->nwal_delete++] = wk[i].index;
            plan->wal_bytes += in->wal[wk[i].index].size;
        }
    }
    rc = warn_gaps(in, plan, wk, nw, err);
    free(wk);
    return rc;
}

static int segment_stored(const struct ws_prune_input *in, uint32_t tli, uint64_t segno)
{
    for (size_t i = 0; i < in->nwal; i++)
        if (in->wal[i].kind == WS_WAL_SEGMENT && in->wal[i].tli == tli && in->wal[i].segno == segno)
            return 1;
    return 0;
}

int ws_prune_select_chunks(const struct ws_prune_input *in, struct ws_prune_plan *plan,
                           struct ws_error *err)
{
    if (!(plan->chunk_delete = calloc(in->nchunks + 1, sizeof(*plan->chunk_delete))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    for (size_t i = 0; i < in->nchunks; i++) {
        const struct ws_prune_wal *c = &in->chunks[i];
        const struct ws_prune_tl *t = tl_of(plan, c->tli);
        if (segment_stored(in, c->tli, c->segno) || (t && c->segno < t->cutoff))
            plan->chunk_delete[plan->nchunk_delete++] = i;
    }
    return 0;
}

/* ---- the planner ---- */

int ws_prune_plan_make(const struct ws_prune_input *in, struct ws_prune_plan *plan,
                       struct ws_error *err)
{
    uint64_t floor;
    long floor_from;
    int rc, latest_warned = 0;

    if ((rc = ws_prune_plan_init(in, plan, err)) != 0)
        return rc;
    plan->latest_tli = ws_prune_latest_tli(in);
    if ((rc = ws_prune_order(in, plan, err)) != 0 ||
        (rc = ws_prune_link_chains(in, plan, err)) != 0 ||
        (rc = ws_prune_hold_lineage(in, plan, err)) != 0 ||
        (rc = ws_prune_hold_order(in, plan, err)) != 0 ||
        (rc = ws_prune_hold_unreadable(in, plan, err)) != 0)
        goto out;
    ws_prune_keep_newest(in, plan);
    ws_prune_keep_full(in, plan);
    ws_prune_keep_window(in, plan);
    ws_prune_keep_pinned(in, plan);
    ws_prune_expire(in, plan);
    ws_prune_judge_incomplete(in, plan);
    if ((rc = ws_prune_keep_latest_reachable(in, plan, &latest_warned, err)) != 0)
        goto out;
    ws_prune_keep_referenced(in, plan);
    ws_prune_apply_hold(in, plan);
    ws_prune_tally(in, plan);
    if ((rc = ws_prune_delete_order(in, plan, err)) != 0 ||
        (rc = ws_prune_warn_kept(in, plan, err)) != 0)
        goto out;
    floor = ws_prune_wal_floor(in, plan, &floor_from);
    ws_prune_global_cutoff(in, plan, floor, floor_from);
    if ((rc = ws_prune_timeline_cutoffs(in, plan, floor, floor_from, latest_warned, err)) != 0 ||
        (rc = ws_prune_select_wal(in, plan, err)) != 0 ||
        (rc = ws_prune_select_chunks(in, plan, err)) != 0)
        goto out;
out:
    if (rc)
        ws_prune_plan_free(plan);
    return rc;
}

void ws_prune_plan_free(struct ws_prune_plan *plan)
{
    size_t i;

    free(plan->keep);
    free(plan->why);
    free(plan->order);
    free(plan->wal_delete);
    free(plan->chunk_delete);
    free(plan->tls);
    free(plan->ref);
    free(plan->referenced_by);
    free(plan->delete_order);
    free(plan->hold_msg);
    for (i = 0; i < plan->nwarnings; i++)
        free(plan->warnings[i]);
    free(plan->warnings);
    memset(plan, 0, sizeof(*plan));
    plan->cutoff_backup = -1;
}
