/* prune_plan.c - the retention planner: a pure function of its input (no I/O, no clock). */
#include "prune_int.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wal.h"

/* The start time a backup id encodes (YYYYMMDDTHHMMSSZ), or 0. */
static int64_t id_time(const char *id)
{
    struct tm tm = {0};
    char *end;

    if (!ws_backup_id_valid(id))
        return 0;
    end = strptime(id, "%Y%m%dT%H%M%SZ", &tm);
    if (!end || *end)
        return 0;
    return (int64_t)timegm(&tm);
}

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

int64_t ws_prune_age_limit(const struct ws_prune_input *in)
{
    return in->incomplete_age > WS_PRUNE_INCOMPLETE_AGE ? in->incomplete_age
                                                        : WS_PRUNE_INCOMPLETE_AGE;
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

/* ---- timelines (prune.h, "Timelines", "Unknown lineage", "WAL") ---- */

static const struct ws_prune_history *history_of(const struct ws_prune_input *in, uint32_t tli)
{
    size_t i;

    for (i = 0; i < in->nhistories; i++)
        if (in->histories[i].tli == tli)
            return &in->histories[i];
    return NULL;
}

/* Timeline 1, or one whose history file was read. */
static int lineage_known(const struct ws_prune_input *in, uint32_t tli)
{
    const struct ws_prune_history *h;

    if (tli <= 1)
        return 1;
    h = history_of(in, tli);
    return h && !h->problem;
}

/* Is `anc` a proper ancestor of timeline `tli` (known from tli's history)? *end: where tli's
 * line left it. */
static int left_at(const struct ws_prune_input *in, uint32_t tli, uint32_t anc, uint64_t *end)
{
    const struct ws_prune_history *h;
    size_t i;

    if (tli <= 1 || anc == tli || !lineage_known(in, tli))
        return 0;
    h = history_of(in, tli);
    for (i = 0; i < h->nsw; i++) {
        if (h->sw[i].tli == anc) {
            *end = h->sw[i].end_lsn;
            return 1;
        }
    }
    return 0;
}

/* Can a restore of b follow timeline tli: b is on it, or on an ancestor and ended before the
 * line left that ancestor? */
static int restorable_to(const struct ws_prune_input *in, const struct ws_prune_backup *b,
                         uint32_t tli)
{
    uint64_t end;

    if (!b->has_position)
        return 0;
    if (b->timeline == tli)
        return 1;
    return left_at(in, tli, b->timeline, &end) && b->stop_lsn <= end;
}

/* Does b need WAL of timeline tli: b is on it, or on an ancestor that tli's line left at or
 * after b's start (wider than restorable_to: a backup that ended after the switch keeps it too)? */
static int needs_wal_of(const struct ws_prune_input *in, const struct ws_prune_backup *b,
                        uint32_t tli)
{
    uint64_t end;

    if (!b->has_position)
        return 0;
    if (b->timeline == tli)
        return 1;
    return left_at(in, tli, b->timeline, &end) && b->start_lsn <= end;
}

/* Do the starts of a and b lie on one line of history, so that their LSNs compare? */
static int one_line(const struct ws_prune_input *in, const struct ws_prune_backup *a,
                    const struct ws_prune_backup *b)
{
    uint64_t end;

    if (a->timeline == b->timeline)
        return 1;
    if (left_at(in, b->timeline, a->timeline, &end) && a->start_lsn <= end)
        return 1;
    return left_at(in, a->timeline, b->timeline, &end) && b->start_lsn <= end;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

size_t ws_prune_sort_tlis(uint32_t *v, size_t n)
{
    size_t i, m = 0;

    if (n > 1)
        qsort(v, n, sizeof(*v), cmp_u32);
    for (i = 0; i < n; i++)
        if (m == 0 || v[m - 1] != v[i])
            v[m++] = v[i];
    return m;
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

static int64_t order_time(const struct ws_prune_backup *b)
{
    return b->has_position ? b->start_time : id_time(b->id);
}

static struct ws_prune_tl *tl_of(const struct ws_prune_plan *plan, uint32_t tli)
{
    size_t i;

    for (i = 0; i < plan->ntls; i++)
        if (plan->tls[i].tli == tli)
            return &plan->tls[i];
    return NULL;
}

int ws_prune_plan_make(const struct ws_prune_input *in, struct ws_prune_plan *plan,
                       struct ws_error *err)
{
    const size_t n = in->nbackups;
    struct okey *ok = NULL;
    struct wkey *wk = NULL;
    uint32_t *tlv = NULL;
    size_t i, k, nw = 0, ntl = 0;
    long newest = -1; /* position in order of the newest complete backup */
    long base = -1, base_tl = -1;
    long global_from = -1, lowest_from = -1, floor_from = -1;
    int nfull = 0, rc = 0, latest_warned = 0;
    int64_t age = ws_prune_age_limit(in), window_open = in->now - in->retain_time;
    uint64_t ss = in->wal_segment_size;
    uint64_t global = UINT64_MAX, lowest_known = UINT64_MAX, floor = UINT64_MAX;

    memset(plan, 0, sizeof(*plan));
    plan->cutoff_backup = -1;
    if (!in->retain_full && !in->retain_time)
        return ws_error_set(err, WS_ERR_CONFIG,
                            "no retention policy is set: set retain_full (keep this many newest "
                            "complete backups) or retain_time (keep what restores to any moment "
                            "of this period), or both; wal-prune deletes nothing without one");
    if (!ws_wal_seg_size_valid(ss))
        return ws_error_set(err, WS_ERR_INTERNAL, "invalid WAL segment size %" PRIu64, ss);
    plan->keep = calloc(n + 1, sizeof(*plan->keep));
    plan->why = calloc(n + 1, sizeof(*plan->why));
    plan->order = calloc(n + 1, sizeof(*plan->order));
    plan->wal_delete = calloc(in->nwal + 1, sizeof(*plan->wal_delete));
    plan->tls = calloc(in->nwal + 1, sizeof(*plan->tls));
    ok = calloc(n + 1, sizeof(*ok));
    wk = calloc(in->nwal + 1, sizeof(*wk));
    tlv = calloc(in->nwal + n + 2, sizeof(*tlv));
    if (!plan->keep || !plan->why || !plan->order || !plan->wal_delete || !plan->tls || !ok ||
        !wk || !tlv) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        goto out;
    }

    /* order: start time, start LSN, id */
    for (i = 0; i < n; i++) {
        const struct ws_prune_backup *b = &in->backups[i];
        ok[i].t = order_time(b);
        ok[i].lsn = b->has_position ? b->start_lsn : 0;
        ok[i].id = b->id;
        ok[i].index = i;
    }
    if (n > 1)
        qsort(ok, n, sizeof(*ok), cmp_okey);
    for (k = 0; k < n; k++)
        plan->order[k] = ok[k].index;

    /* the latest timeline: the highest of the archive (history files included) and the backups */
    for (i = 0; i < in->nwal; i++)
        if (in->wal[i].tli > plan->latest_tli)
            plan->latest_tli = in->wal[i].tli;
    for (i = 0; i < n; i++)
        if (in->backups[i].has_position && in->backups[i].timeline > plan->latest_tli)
            plan->latest_tli = in->backups[i].timeline;

    /* unknown lineage: every timeline with WAL, with a backup on it, and the latest */
    for (i = 0; i < in->nwal; i++)
        if (in->wal[i].kind != WS_WAL_HISTORY && in->wal[i].kind != WS_WAL_INVALID)
            tlv[ntl++] = in->wal[i].tli;
    for (i = 0; i < n; i++)
        if (in->backups[i].has_position)
            tlv[ntl++] = in->backups[i].timeline;
    if (plan->latest_tli)
        tlv[ntl++] = plan->latest_tli;
    ntl = ws_prune_sort_tlis(tlv, ntl);
    {
        char list[256] = "", why[1024] = "", first[16] = "", msg[1024];
        size_t nunknown = 0;
        for (i = 0; i < ntl; i++) {
            const struct ws_prune_history *h;
            if (lineage_known(in, tlv[i]))
                continue;
            h = history_of(in, tlv[i]);
            ws_prune_append(list, sizeof(list), "%s%" PRIu32, nunknown ? ", " : "", tlv[i]);
            ws_prune_append(why, sizeof(why), "%s%08" PRIX32 ".history: %.200s",
                            nunknown ? "; " : "", tlv[i], h ? h->problem : "not in the repository");
            if (!nunknown)
                snprintf(first, sizeof(first), "%08" PRIX32, tlv[i]);
            nunknown++;
        }
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
            if ((rc = set_hold(plan, WS_HOLD_LINEAGE, msg, err)) != 0)
                goto out;
        }
    }

    /* time order against WAL order, for backups whose starts lie on one line of history */
    for (k = 0; k < n && !(plan->hold & WS_HOLD_ORDER); k++) {
        const struct ws_prune_backup *a = &in->backups[plan->order[k]];
        size_t m;
        if (!a->has_position || a->status == WS_PRUNE_DELETING)
            continue;
        for (m = k + 1; m < n; m++) {
            const struct ws_prune_backup *b = &in->backups[plan->order[m]];
            char ta[21], tb[21], la[24], lb[24], msg[1024];
            if (!b->has_position || b->status == WS_PRUNE_DELETING ||
                a->start_lsn <= b->start_lsn || !one_line(in, a, b))
                continue;
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
            if ((rc = set_hold(plan, WS_HOLD_ORDER, msg, err)) != 0)
                goto out;
            break;
        }
    }

    /* complete backups, newest first: the policies */
    for (k = n; k-- > 0;) {
        size_t bi = plan->order[k];
        const struct ws_prune_backup *b = &in->backups[bi];
        unsigned *why = &plan->why[bi];
        if (b->status != WS_PRUNE_COMPLETE)
            continue;
        if (newest < 0) {
            newest = (long)k;
            *why |= WS_KEEP_NEWEST;
        }
        if (in->retain_full && nfull < in->retain_full) {
            *why |= WS_KEEP_FULL;
            nfull++;
        }
        if (in->retain_time) {
            /* a restore to the moment T can start from b when b->stop_time + 1 <= T */
            if (b->stop_time + 1 > window_open) {
                *why |= WS_KEEP_WINDOW;
                continue;
            }
            if (base < 0) {
                *why |= WS_KEEP_WINDOW_BASE;
                base = (long)bi;
            }
            if (base_tl < 0 && restorable_to(in, b, plan->latest_tli)) {
                if (base != (long)bi)
                    *why |= WS_KEEP_WINDOW_TL;
                base_tl = (long)bi;
            }
        }
    }

    /* pins, and what is not complete */
    for (k = 0; k < n; k++) {
        size_t bi = plan->order[k];
        const struct ws_prune_backup *b = &in->backups[bi];
        unsigned *why = &plan->why[bi];
        int64_t last = b->last_write;

        if (b->pinned)
            *why |= WS_KEEP_PINNED;
        switch (b->status) {
        case WS_PRUNE_COMPLETE:
            if (!(*why & WS_PRUNE_KEEP_MASK))
                *why |= WS_DROP_RETENTION;
            break;
        case WS_PRUNE_INCOMPLETE:
            if (b->stop_time > last)
                last = b->stop_time;
            if (in->now - last < age)
                *why |= WS_KEEP_YOUNG;
            else if (newest < 0 || (long)k > newest)
                *why |= WS_KEEP_PENDING;
            else
                *why |= WS_DROP_ABANDONED;
            break;
        case WS_PRUNE_RUNNING:
            if (id_time(b->id) > last)
                last = id_time(b->id);
            *why |= in->now - last < age ? WS_KEEP_YOUNG : WS_DROP_ABANDONED;
            break;
        case WS_PRUNE_INVALID:
            *why |= WS_KEEP_UNREADABLE;
            break;
        default:
            *why |= WS_DROP_DELETING;
            break;
        }
        if (*why & WS_PRUNE_KEEP_MASK)
            *why &= WS_PRUNE_KEEP_MASK; /* a keeping reason wins */
    }

    /* the latest timeline must stay reachable from some kept backup */
    if (plan->latest_tli && newest >= 0) {
        long found = -1;
        for (k = 0; k < n; k++) {
            size_t bi = plan->order[k];
            if (in->backups[bi].status != WS_PRUNE_COMPLETE ||
                !restorable_to(in, &in->backups[bi], plan->latest_tli))
                continue;
            if (plan->why[bi] & WS_PRUNE_KEEP_MASK) {
                found = -2; /* a kept one reaches it */
                break;
            }
            found = (long)bi; /* the newest so far */
        }
        if (found >= 0) {
            plan->why[found] = WS_KEEP_TIMELINE;
        } else if (found == -1 && lineage_known(in, plan->latest_tli)) {
            latest_warned = 1;
            if ((rc = add_warning(plan, err,
                                  "no complete backup can reach timeline %" PRIu32
                                  ", the latest in the archive: recovery to its newest WAL is "
                                  "impossible until a base backup of it is taken "
                                  "(basebackup create); none of its WAL is deleted",
                                  plan->latest_tli)) != 0)
                goto out;
        }
    }

    /* a held plan deletes no backup by retention (and, when the order is in doubt, no
     * incomplete one either: "newer than every complete backup" depends on it) */
    if (plan->hold) {
        for (i = 0; i < n; i++) {
            if ((plan->why[i] & WS_DROP_RETENTION) ||
                ((plan->hold & WS_HOLD_ORDER) && (plan->why[i] & WS_DROP_ABANDONED)))
                plan->why[i] = WS_KEEP_HELD;
        }
    }

    for (i = 0; i < n; i++) {
        plan->keep[i] = (plan->why[i] & WS_PRUNE_KEEP_MASK) != 0;
        if (!plan->keep[i]) {
            plan->nbackups_delete++;
            plan->backup_bytes += in->backups[i].stored_bytes;
        }
    }

    /* the lowest start segment known of any backup; a kept backup whose position is unknown
     * keeps every timeline's WAL from there (or all of it when nothing known precedes it) */
    for (k = 0; k < n; k++) {
        size_t bi = plan->order[k];
        const struct ws_prune_backup *b = &in->backups[bi];
        if (b->has_position && ws_wal_lsn_to_segno(b->start_lsn, ss) < lowest_known) {
            lowest_known = ws_wal_lsn_to_segno(b->start_lsn, ss);
            lowest_from = (long)bi;
        }
    }

    /* warnings about what is kept against the rules' grain */
    for (k = 0; k < n; k++) {
        size_t bi = plan->order[k];
        const struct ws_prune_backup *b = &in->backups[bi];
        if (plan->why[bi] & WS_KEEP_UNREADABLE)
            rc = add_warning(plan, err,
                             "backup %s: its manifest cannot be read (%s); wal-prune never deletes "
                             "it, and keeps the WAL of every timeline from the oldest start known "
                             "of any backup. Add the key it was written with to decrypt_key_files, "
                             "or, if it is damaged and not needed, remove %s/ from the repository "
                             "by hand",
                             b->id, b->problem ? b->problem : "invalid", b->id);
        else if (plan->why[bi] & WS_KEEP_PENDING)
            rc = add_warning(plan, err,
                             "backup %s has been incomplete for more than a day (WAL missing); "
                             "it is kept because no complete backup is newer, in case the "
                             "archiver is behind: check pg_stat_archiver",
                             b->id);
        if (rc)
            goto out;
    }

    /* WAL: the global cutoff, and the floor set by kept backups whose position is unknown */
    if (newest < 0) {
        if (in->nwal && (rc = add_warning(plan, err,
                                          "the repository holds no complete backup: no WAL is "
                                          "deleted")) != 0)
            goto out;
    }
    for (k = 0; k < n; k++) {
        size_t bi = plan->order[k], j;
        const struct ws_prune_backup *b = &in->backups[bi];
        if (!plan->keep[bi])
            continue;
        if (b->has_position) {
            uint64_t s = ws_wal_lsn_to_segno(b->start_lsn, ss);
            if (s < global) {
                global = s;
                global_from = (long)bi;
            }
            continue;
        }
        /* never a guessed position: the lowest start known, or everything when no backup with
         * a position precedes it */
        for (j = 0; j < k; j++)
            if (in->backups[plan->order[j]].has_position)
                break;
        if (j == k) {
            floor = 0;
            floor_from = -1;
        } else if (lowest_known < floor) {
            floor = lowest_known;
            floor_from = lowest_from;
        }
    }
    if (floor < global) {
        global = floor;
        global_from = floor_from;
    }
    if (newest < 0 || global == UINT64_MAX) {
        global = 0;
        global_from = -1;
    }
    plan->wal_cutoff = global;
    plan->cutoff_backup = global ? global_from : -1;

    /* per timeline with WAL */
    ntl = 0;
    for (i = 0; i < in->nwal; i++)
        if (in->wal[i].kind != WS_WAL_HISTORY && in->wal[i].kind != WS_WAL_INVALID)
            tlv[ntl++] = in->wal[i].tli;
    ntl = ws_prune_sort_tlis(tlv, ntl);
    for (i = 0; i < ntl; i++) {
        struct ws_prune_tl *t = &plan->tls[plan->ntls++];
        uint64_t c = UINT64_MAX;
        long from = -1;
        t->tli = tlv[i];
        t->backup = -1;
        if (newest < 0) {
            t->rule = WS_TL_NO_BACKUP;
            continue;
        }
        if (!lineage_known(in, t->tli)) {
            t->rule = WS_TL_UNKNOWN;
            continue;
        }
        for (k = 0; k < n; k++) {
            size_t bi = plan->order[k];
            const struct ws_prune_backup *b = &in->backups[bi];
            if (plan->keep[bi] && needs_wal_of(in, b, t->tli) &&
                ws_wal_lsn_to_segno(b->start_lsn, ss) < c) {
                c = ws_wal_lsn_to_segno(b->start_lsn, ss);
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
            continue;
        }
        for (k = 0; k < n; k++) {
            const struct ws_prune_backup *b = &in->backups[k];
            uint64_t end;
            if (plan->keep[k] && b->has_position && left_at(in, b->timeline, t->tli, &end))
                break;
        }
        if (k < n) {
            t->rule = WS_TL_ANCESTOR;
            t->cutoff = global;
            t->backup = plan->cutoff_backup;
            continue;
        }
        t->rule = WS_TL_UNREACHED;
        if (!(t->tli == plan->latest_tli && latest_warned) && !(plan->hold & WS_HOLD_LINEAGE) &&
            (rc = add_warning(plan, err,
                              "timeline %" PRIu32 ": no kept backup restores along it and it is "
                              "no ancestor of a kept backup's timeline, so none of its WAL is "
                              "deleted; if nothing needs it (a stray promoted copy that archived "
                              "into this repository, or a line abandoned by a point-in-time "
                              "restore), remove its WAL from the repository by hand",
                              t->tli)) != 0)
            goto out;
    }

    for (i = 0; i < in->nwal; i++) {
        const struct ws_prune_wal *w = &in->wal[i];
        if (w->kind == WS_WAL_HISTORY || w->kind == WS_WAL_INVALID)
            continue; /* history files are always kept (prune.h) */
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

    /* holes in what is kept: moments in them cannot be restored */
    {
        size_t prev = SIZE_MAX;
        for (i = 0; i < nw; i++) {
            const struct ws_prune_wal *w = &in->wal[wk[i].index];
            const struct ws_prune_tl *t = tl_of(plan, w->tli);
            if (w->kind != WS_WAL_SEGMENT || (t && w->segno < t->cutoff))
                continue;
            if (prev != SIZE_MAX && in->wal[prev].tli == w->tli &&
                w->segno > in->wal[prev].segno + 1) {
                char a[WS_WAL_NAME_LEN + 1], b[WS_WAL_NAME_LEN + 1];
                ws_wal_format_name(a, w->tli, in->wal[prev].segno + 1, ss);
                ws_wal_format_name(b, w->tli, w->segno - 1, ss);
                if ((rc = add_warning(plan, err,
                                      "WAL gap on timeline %" PRIu32 ": %s to %s are missing; no "
                                      "restore can pass through them",
                                      w->tli, a, b)) != 0)
                    goto out;
            }
            prev = wk[i].index;
        }
    }
out:
    free(ok);
    free(wk);
    free(tlv);
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
    free(plan->tls);
    free(plan->hold_msg);
    for (i = 0; i < plan->nwarnings; i++)
        free(plan->warnings[i]);
    free(plan->warnings);
    memset(plan, 0, sizeof(*plan));
    plan->cutoff_backup = -1;
}
