/* prune.c - the retention planner and the executor of wal-prune (see prune.h). */
#include "prune.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "object.h"
#include "wal.h"

/* ---- small helpers ------------------------------------------------------------------------ */

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

static int64_t effective_age(const struct ws_prune_input *in)
{
    return in->incomplete_age > WS_PRUNE_INCOMPLETE_AGE ? in->incomplete_age
                                                        : WS_PRUNE_INCOMPLETE_AGE;
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
    format_duration(effective_age(in), age, sizeof(age));
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

/* ---- the planner -------------------------------------------------------------------------- */

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

/* Sorts v[0..n) and drops repeats; returns the new count. */
static size_t sort_unique(uint32_t *v, size_t n)
{
    size_t i, m = 0;

    if (n > 1)
        qsort(v, n, sizeof(*v), cmp_u32);
    for (i = 0; i < n; i++)
        if (m == 0 || v[m - 1] != v[i])
            v[m++] = v[i];
    return m;
}

/* Appends to a fixed buffer, cutting (never overrunning). */
static void cat(char *buf, size_t sz, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void cat(char *buf, size_t sz, const char *fmt, ...)
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
    int64_t age = effective_age(in), window_open = in->now - in->retain_time;
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
    ntl = sort_unique(tlv, ntl);
    {
        char list[256] = "", why[1024] = "", first[16] = "", msg[1024];
        size_t nunknown = 0;
        for (i = 0; i < ntl; i++) {
            const struct ws_prune_history *h;
            if (lineage_known(in, tlv[i]))
                continue;
            h = history_of(in, tlv[i]);
            cat(list, sizeof(list), "%s%" PRIu32, nunknown ? ", " : "", tlv[i]);
            cat(why, sizeof(why), "%s%08" PRIX32 ".history: %.200s", nunknown ? "; " : "", tlv[i],
                h ? h->problem : "not in the repository");
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
    ntl = sort_unique(tlv, ntl);
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

/* ---- timeline history files --------------------------------------------------------------- */

int ws_prune_parse_history(const char *text, size_t len, const char *what,
                           struct ws_prune_switch **out, size_t *n, struct ws_error *err)
{
    struct ws_prune_switch *v = NULL;
    size_t cap = 0, cnt = 0, pos = 0, lineno = 0;
    int rc = 0;

    *out = NULL;
    *n = 0;
    while (pos < len) {
        const char *line = text + pos, *nl = memchr(line, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - line) : len - pos;
        char buf[128], lsn[64];
        unsigned long tli;
        char *p = buf, *end;
        uint64_t l;

        pos += ll + (nl ? 1 : 0);
        lineno++;
        while (ll && (line[0] == ' ' || line[0] == '\t'))
            line++, ll--;
        if (ll == 0 || line[0] == '#')
            continue;
        if (ll >= sizeof(buf))
            ll = sizeof(buf) - 1; /* the reason may be long; only the first fields count */
        memcpy(buf, line, ll);
        buf[ll] = '\0';
        tli = strtoul(p, &end, 10);
        if (end == p || (*end != '\t' && *end != ' ') || tli == 0 || tli > UINT32_MAX)
            goto bad;
        p = end + strspn(end, " \t");
        ll = strcspn(p, " \t");
        if (ll == 0 || ll >= sizeof(lsn))
            goto bad;
        memcpy(lsn, p, ll);
        lsn[ll] = '\0';
        if (ws_wal_parse_lsn(lsn, &l) != 0)
            goto bad;
        if (cnt && tli <= v[cnt - 1].tli)
            goto bad; /* PostgreSQL: timeline IDs must be in increasing sequence */
        if (cnt == cap) {
            size_t nc = cap ? cap * 2 : 8;
            void *q = realloc(v, nc * sizeof(*v));
            if (!q) {
                rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
                goto out;
            }
            v = q;
            cap = nc;
        }
        v[cnt].tli = (uint32_t)tli;
        v[cnt].end_lsn = l;
        cnt++;
        continue;
    bad:
        rc = ws_error_set(err, WS_ERR_CORRUPT, "invalid data in history file %s, line %zu", what,
                          lineno);
        goto out;
    }
    *out = v;
    *n = cnt;
    v = NULL;
out:
    free(v);
    return rc;
}

/* ---- gathering the input from a repository ------------------------------------------------ */

struct wal_scan {
    struct ws_prune_state *st;
    size_t cap;
    uint32_t seg_size;
};

static int on_wal_object(void *arg, const char *key, const struct ws_storage_stat *sst,
                         struct ws_error *err)
{
    struct wal_scan *sc = arg;
    struct ws_prune_state *st = sc->st;
    struct ws_prune_wal w = {0};
    const char *name = strrchr(key, '/');
    char *copy;

    name = name ? name + 1 : key;
    w.kind = ws_wal_classify(name);
    if (w.kind == WS_WAL_INVALID)
        return 0; /* not ours to judge */
    if (w.kind == WS_WAL_HISTORY)
        w.tli = (uint32_t)strtoul(name, NULL, 16);
    else if (ws_wal_parse_name(name, sc->seg_size, &w.tli, &w.segno) != 0)
        return 0;
    if (st->nwal == sc->cap) {
        size_t cap = sc->cap ? sc->cap * 2 : 256;
        void *p = realloc(st->wal, cap * sizeof(*st->wal));
        if (!p)
            return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        st->wal = p;
        sc->cap = cap;
    }
    if (!(copy = strdup(key)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    w.key = copy;
    w.name = copy + (name - key);
    w.size = sst->size;
    st->wal[st->nwal++] = w;
    return 0;
}

/* Reads the history file of timeline tli into a new entry of st->histories. Problems other than
 * storage failures (missing, damaged, a key we lack, malformed) are recorded as the entry's
 * problem: the planner then treats the timeline's lineage as unknown and holds (prune.h). */
static int read_history(struct ws_repo *repo, const struct ws_keyring *kr,
                        struct ws_prune_state *st, uint32_t tli, struct ws_error *err)
{
    struct ws_sink *buf = NULL, *reader = NULL;
    const struct ws_prune_wal *h = NULL;
    struct ws_prune_history *e = &st->histories[st->nhistories];
    struct ws_prune_switch *sw = NULL;
    const uint8_t *data;
    struct ws_error e2 = {0};
    size_t i, len, nsw = 0;
    int rc;

    memset(e, 0, sizeof(*e));
    e->tli = tli;
    for (i = 0; i < st->nwal; i++)
        if (st->wal[i].kind == WS_WAL_HISTORY && st->wal[i].tli == tli)
            h = &st->wal[i];
    if (!h) {
        if (!(e->problem = strdup("not in the repository")))
            return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        st->nhistories++;
        return 0;
    }
    if ((rc = ws_buffer_sink_new(1u << 20, &buf, err)) != 0)
        return rc;
    if ((rc = ws_object_reader_new(buf, h->key, kr, 1, &reader, err)) != 0)
        return rc; /* the reader freed buf */
    rc = ws_storage_get(repo->st, h->key, 0, WS_STORAGE_TO_END, reader, &e2);
    if (rc == 0)
        rc = ws_sink_finish(reader, &e2);
    if (rc == 0) {
        data = ws_buffer_sink_data(buf, &len);
        rc = ws_prune_parse_history((const char *)data, len, h->name, &sw, &nsw, &e2);
    }
    ws_sink_free(reader);
    if (rc == WS_ERR_STORAGE || rc == WS_ERR_INTERNAL) {
        *err = e2;
        return rc;
    }
    if (rc) {
        if (!(e->problem = strdup(e2.msg)))
            return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    } else {
        e->sw = sw;
        e->nsw = nsw;
    }
    st->nhistories++;
    return 0;
}

struct key_list {
    char **keys;
    size_t n, cap;
};

static int on_backup_object(void *arg, const char *key, const struct ws_storage_stat *st,
                            struct ws_error *err)
{
    struct key_list *l = arg;

    (void)st;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        void *p = realloc(l->keys, cap * sizeof(*l->keys));
        if (!p)
            return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        l->keys = p;
        l->cap = cap;
    }
    if (!(l->keys[l->n] = strdup(key)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    l->n++;
    return 0;
}

static void key_list_free(struct key_list *l)
{
    size_t i;

    for (i = 0; i < l->n; i++)
        free(l->keys[i]);
    free(l->keys);
    memset(l, 0, sizeof(*l));
}

/* The age of a backup that is not complete decides whether it is abandoned. Listings of some
 * drivers carry no modification times (SFTP): ask each of its objects. */
static int last_write_by_stat(struct ws_repo *repo, struct ws_prune_backup *b, struct ws_error *err)
{
    struct key_list l = {0};
    char prefix[128];
    size_t i;
    int rc;

    ws_backup_object_key(repo, b->id, "", prefix, sizeof(prefix));
    if ((rc = ws_storage_list(repo->st, prefix, on_backup_object, &l, err)) != 0)
        goto out;
    for (i = 0; i < l.n; i++) {
        struct ws_storage_stat sst;
        rc = ws_storage_stat(repo->st, l.keys[i], &sst, err);
        if (rc == WS_ERR_NOT_FOUND) {
            rc = 0;
            continue;
        }
        if (rc)
            goto out;
        if (sst.mtime > b->last_write)
            b->last_write = sst.mtime;
    }
out:
    key_list_free(&l);
    return rc;
}

int ws_prune_gather(struct ws_repo *repo, const struct ws_keyring *kr, struct ws_prune_state *st,
                    struct ws_error *err)
{
    struct wal_scan sc = {0};
    char prefix[128];
    size_t i;
    int rc;

    memset(st, 0, sizeof(*st));
    if ((rc = ws_catalog_load(repo, kr, &st->cat, err)) != 0 || !st->cat.has_identity)
        return rc;
    sc.st = st;
    sc.seg_size = st->cat.identity.wal_segment_size;
    snprintf(prefix, sizeof(prefix), "%s/wal/", repo->cluster);
    if ((rc = ws_storage_list(repo->st, prefix, on_wal_object, &sc, err)) != 0)
        goto out;
    if (!(st->backups = calloc(st->cat.nbackups + 1, sizeof(*st->backups)))) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        goto out;
    }
    st->nbackups = st->cat.nbackups;
    for (i = 0; i < st->cat.nbackups; i++) {
        const struct ws_catalog_backup *c = &st->cat.backups[i];
        struct ws_prune_backup *b = &st->backups[i];
        memcpy(b->id, c->id, sizeof(b->id));
        b->status = c->deleting       ? WS_PRUNE_DELETING
                    : c->complete     ? WS_PRUNE_COMPLETE
                    : c->has_manifest ? WS_PRUNE_INCOMPLETE
                    : c->bad_manifest ? WS_PRUNE_INVALID
                                      : WS_PRUNE_RUNNING;
        b->pinned = c->pinned;
        b->has_position = c->has_manifest;
        if (c->has_manifest) {
            b->start_time = c->m.start_time;
            b->stop_time = c->m.stop_time;
            b->start_lsn = c->m.start_lsn;
            b->stop_lsn = c->m.stop_lsn;
            b->timeline = c->m.timeline;
        }
        b->last_write = c->newest_mtime;
        b->stored_bytes = c->stored_objects;
        b->problem = c->bad_manifest ? c->manifest_error : NULL;
    }
    for (i = 0; i < st->nbackups; i++) {
        struct ws_prune_backup *b = &st->backups[i];
        if (b->status != WS_PRUNE_COMPLETE && b->last_write <= 0 &&
            (rc = last_write_by_stat(repo, b, err)) != 0)
            goto out;
    }
    /* the history files the planner needs: of every timeline above 1 with WAL, with a backup
     * on it, or the latest (the planner's rule, prune.h "Unknown lineage") */
    {
        size_t ntl = 0;
        uint32_t *tlv = calloc(st->nwal + st->nbackups + 2, sizeof(*tlv));
        if (!tlv) {
            rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
            goto out;
        }
        for (i = 0; i < st->nwal; i++) {
            if (st->wal[i].tli > st->latest_tli)
                st->latest_tli = st->wal[i].tli;
            if (st->wal[i].kind != WS_WAL_HISTORY)
                tlv[ntl++] = st->wal[i].tli;
        }
        for (i = 0; i < st->nbackups; i++) {
            if (!st->backups[i].has_position)
                continue;
            if (st->backups[i].timeline > st->latest_tli)
                st->latest_tli = st->backups[i].timeline;
            tlv[ntl++] = st->backups[i].timeline;
        }
        tlv[ntl++] = st->latest_tli;
        ntl = sort_unique(tlv, ntl);
        st->histories = calloc(ntl + 1, sizeof(*st->histories));
        if (!st->histories)
            rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        for (i = 0; i < ntl && rc == 0; i++)
            if (tlv[i] > 1)
                rc = read_history(repo, kr, st, tlv[i], err);
        free(tlv);
    }
out:
    if (rc)
        ws_prune_state_free(st);
    return rc;
}

void ws_prune_state_free(struct ws_prune_state *st)
{
    size_t i;

    for (i = 0; i < st->nwal; i++)
        free((char *)st->wal[i].key);
    free(st->wal);
    free(st->backups);
    for (i = 0; i < st->nhistories; i++) {
        free((struct ws_prune_switch *)st->histories[i].sw);
        free((char *)st->histories[i].problem);
    }
    free(st->histories);
    ws_catalog_free(&st->cat);
    memset(st, 0, sizeof(*st));
}

void ws_prune_input_from_state(const struct ws_prune_state *st, struct ws_prune_input *in)
{
    memset(in, 0, sizeof(*in));
    in->backups = st->backups;
    in->nbackups = st->nbackups;
    in->wal = st->wal;
    in->nwal = st->nwal;
    in->wal_segment_size = st->cat.identity.wal_segment_size;
    in->histories = st->histories;
    in->nhistories = st->nhistories;
}

/* ---- deleting ----------------------------------------------------------------------------- */

static int remove_object(struct ws_repo *repo, const char *key, struct ws_error *err)
{
    int rc = ws_storage_remove(repo->st, key, err);

    return rc == WS_ERR_NOT_FOUND ? 0 : rc; /* gone already: a concurrent or earlier prune */
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);

    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Tombstone, manifest, everything else, pin, tombstone (prune.h). */
static int delete_backup(struct ws_repo *repo, const struct ws_prune_backup *b,
                         struct ws_error *err)
{
    struct key_list l = {0};
    char key[256], prefix[256], tomb[256], text[96], when[21];
    size_t i;
    int rc = 0;

    ws_backup_tombstone_key(repo, b->id, tomb, sizeof(tomb));
    if (b->status != WS_PRUNE_DELETING) {
        ws_format_utc(time(NULL), when);
        snprintf(text, sizeof(text), "wal-prune began deleting this backup at %s\n", when);
        if ((rc = ws_backup_put_marker(repo, tomb, text, err)) != 0) {
            /* A full repository (ENOSPC) refuses even this small object. Removing the manifest
             * alone also ends the backup's being complete (the catalog then sees a backup
             * without manifest, which a later prune removes as abandoned), and what follows
             * frees space: go on without the tombstone. If the manifest cannot go either,
             * stop with the first error. */
            struct ws_error e2 = {0};
            ws_backup_manifest_key(repo, b->id, key, sizeof(key));
            if (remove_object(repo, key, &e2) != 0)
                goto out;
            ws_log_warning("backup %s: could not write its tombstone (%s); its manifest was "
                           "deleted first instead",
                           b->id, err->msg);
            rc = 0;
        }
    }
    ws_backup_manifest_key(repo, b->id, key, sizeof(key));
    if ((rc = remove_object(repo, key, err)) != 0)
        goto out;
    ws_backup_object_key(repo, b->id, "", prefix, sizeof(prefix));
    if ((rc = ws_storage_list(repo->st, prefix, on_backup_object, &l, err)) != 0)
        goto out;
    if (l.n > 1)
        qsort(l.keys, l.n, sizeof(*l.keys), cmp_str);
    {
        /* the bundles (and anything else but the pin), in batches where the storage can */
        size_t n = 0;
        for (i = 0; i < l.n; i++)
            if (!ends_with(l.keys[i], "/" WS_BACKUP_KEEP))
                l.keys[n++] = l.keys[i];
            else
                free(l.keys[i]);
        l.n = n;
        if ((rc = ws_storage_remove_many(repo->st, (const char *const *)l.keys, l.n, err)) != 0)
            goto out;
    }
    ws_backup_object_key(repo, b->id, WS_BACKUP_KEEP, key, sizeof(key));
    if ((rc = remove_object(repo, key, err)) != 0)
        goto out;
    /* temp files of uploads into it that were killed (a backup's, or this tombstone's): nothing
     * writes into a backup that is being deleted; then its empty directories */
    {
        size_t ntemp = 0;
        uint64_t tbytes = 0;
        char start[128]; /* "<cluster>/backup/<ID>": its directory and its tombstone */
        snprintf(start, sizeof(start), "%.*s", (int)strlen(prefix) - 1, prefix);
        if ((rc = ws_storage_clean_temp(repo->st, start, INT64_MAX, 0, &ntemp, &tbytes, err)) != 0)
            goto out;
    }
    ws_backup_object_key(repo, b->id, "data/", key, sizeof(key));
    if ((rc = ws_storage_remove_dir(repo->st, key, err)) != 0 ||
        (rc = ws_storage_remove_dir(repo->st, prefix, err)) != 0)
        goto out;
    /* last: with the tombstone gone, nothing of the backup is left to account for */
    rc = remove_object(repo, tomb, err);
out:
    key_list_free(&l);
    if (rc)
        ws_error_prefix(err, "could not delete backup %s", b->id);
    return rc;
}

static void backup_line(FILE *f, const char *verb, const struct ws_prune_input *in,
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

void ws_prune_result_free(struct ws_prune_result *res)
{
    free(res->backup_done);
    memset(res, 0, sizeof(*res));
}

/* Does the next WAL file to delete after plan->wal_delete[j] live in the same directory? */
static int is_same_dir(const struct ws_prune_input *in, const struct ws_prune_plan *plan, size_t j)
{
    const struct ws_prune_wal *a = &in->wal[plan->wal_delete[j]], *b;

    if (j + 1 >= plan->nwal_delete)
        return 0;
    b = &in->wal[plan->wal_delete[j + 1]];
    if (a->key && b->key) {
        const char *x = strrchr(a->key, '/'), *y = strrchr(b->key, '/');
        return x - a->key == y - b->key && strncmp(a->key, b->key, (size_t)(x - a->key)) == 0;
    }
    return strncmp(a->name, b->name, 16) == 0; /* canonical layout: by the first 16 digits */
}

int ws_prune_execute(struct ws_repo *repo, const struct ws_prune_input *in,
                     const struct ws_prune_plan *plan, FILE *report, struct ws_prune_result *res,
                     struct ws_error *err)
{
    size_t k, j;
    int rc = 0;
    char(*keybuf)[256] = NULL;
    const char **keys = NULL;

    memset(res, 0, sizeof(*res));
    if (!(res->backup_done = calloc(in->nbackups + 1, sizeof(*res->backup_done))) ||
        !(keybuf = calloc(WS_STORAGE_REMOVE_BATCH, sizeof(*keybuf))) ||
        !(keys = calloc(WS_STORAGE_REMOVE_BATCH, sizeof(*keys)))) {
        free(keybuf);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    }
    /* backups first, oldest first: a kill leaves at most one of them half-deleted, and its
     * tombstone tells the catalog and the next run */
    for (k = 0; k < in->nbackups; k++) {
        size_t i = plan->order[k];
        if (plan->keep[i])
            continue;
        if ((rc = delete_backup(repo, &in->backups[i], err)) != 0)
            goto out;
        res->backup_done[i] = 1;
        res->backups_deleted++;
        res->backup_bytes += in->backups[i].stored_bytes;
        if (report) {
            backup_line(report, "deleted", in, plan, i);
            fflush(report);
        }
    }
    /* then WAL, oldest first per timeline, one directory (a 4 GiB range of 16 MiB segments) at
     * a time: its files in batches (one request each on S3: DeleteObjects), then the directory.
     * An interruption leaves gaps at most in the one batch it hit, all of it older than what is
     * kept; the archive is shortened, never holed where it is still needed, and the next run
     * removes the rest. */
    for (j = 0; j < plan->nwal_delete;) {
        size_t n = 0, first = j;
        char dir[256];
        for (;;) {
            const struct ws_prune_wal *w = &in->wal[plan->wal_delete[j]];
            if (w->key)
                snprintf(keybuf[n], sizeof(keybuf[n]), "%s", w->key);
            else if (ws_repo_wal_key(repo, w->name, keybuf[n], sizeof(keybuf[n])) != 0)
                keybuf[n][0] = '\0'; /* not a WAL name (cannot happen: the catalog parsed it) */
            if (keybuf[n][0]) {
                keys[n] = keybuf[n];
                n++;
            }
            j++;
            if (n == WS_STORAGE_REMOVE_BATCH || !is_same_dir(in, plan, j - 1))
                break;
        }
        if (n > 0 && (rc = ws_storage_remove_many(repo->st, keys, n, err)) != 0) {
            ws_error_prefix(err, "could not delete WAL files %s .. %s",
                            in->wal[plan->wal_delete[first]].name,
                            in->wal[plan->wal_delete[j - 1]].name);
            goto out;
        }
        for (size_t m = first; m < j; m++) {
            res->wal_deleted++;
            res->wal_bytes += in->wal[plan->wal_delete[m]].size;
        }
        /* the directory, once its last file went (the next file in deletion order lives
         * elsewhere) */
        if (n > 0 && !is_same_dir(in, plan, j - 1)) {
            const char *slash = strrchr(keys[n - 1], '/');
            snprintf(dir, sizeof(dir), "%.*s", (int)(slash - keys[n - 1] + 1), keys[n - 1]);
            if (strcmp(dir + strlen(repo->cluster), "/wal/") != 0 &&
                (rc = ws_storage_remove_dir(repo->st, dir, err)) != 0)
                goto out;
        }
    }
out:
    free(keybuf);
    free(keys);
    return rc;
}

/* ---- the command -------------------------------------------------------------------------- */

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
static void print_wal(FILE *f, const char *verb, const struct ws_prune_input *in,
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
    cat(out, outsz, "WAL kept");
    for (i = 0; i < plan->ntls; i++) {
        const struct ws_prune_tl *t = &plan->tls[i];
        char lsn[24];
        cat(out, outsz, "%s timeline %" PRIu32, i ? ";" : ":", t->tli);
        if (!t->cutoff) {
            cat(out, outsz, " all%s",
                t->rule == WS_TL_UNKNOWN     ? " (history unknown)"
                : t->rule == WS_TL_UNREACHED ? " (no kept backup follows it)"
                                             : "");
            continue;
        }
        ws_wal_format_lsn(lsn, ws_wal_segno_to_lsn(t->cutoff, in->wal_segment_size));
        cat(out, outsz, " from %s", lsn);
        if (t->backup >= 0)
            cat(out, outsz, " (the start segment of backup %s)", in->backups[t->backup].id);
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

static void print_summary(FILE *f, const struct ws_prune_input *in,
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

static void print_json(FILE *f, const struct ws_config *cfg, const struct ws_repo *repo,
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

int ws_prune(const struct ws_config *cfg, const struct ws_prune_opts *o, struct ws_error *err)
{
    struct ws_repo repo = {0};
    struct ws_keyring kr = {0};
    struct ws_prune_state st = {0};
    struct ws_prune_input in;
    struct ws_prune_plan plan = {0};
    struct ws_prune_result res = {0};
    int rc, tty = isatty(STDOUT_FILENO);
    char prefix[128];
    size_t k, j;

    if (!cfg->retain_full && !cfg->retain_time) {
        memset(&in, 0, sizeof(in));
        return ws_prune_plan_make(&in, &plan, err); /* the refusal, with its message */
    }
    if ((rc = ws_keyring_load(cfg, &kr, err)) != 0 || (rc = ws_repo_open(cfg, &repo, err)) != 0 ||
        (rc = ws_prune_gather(&repo, &kr, &st, err)) != 0)
        goto out;
    if (!st.cat.has_identity) {
        if (o->json) {
            printf("{\"cluster\": ");
            json_string(stdout, repo.cluster);
            printf(", \"dry_run\": %s, \"backups\": [], \"wal\": null, \"warnings\": [], "
                   "\"summary\": {\"backups_deleted\": 0, \"wal_files_deleted\": 0, "
                   "\"bytes_freed\": 0, \"backups_kept\": 0}, \"error\": null}\n",
                   o->dry_run ? "true" : "false");
        } else {
            printf("cluster \"%s\": nothing in repository %s yet\n", repo.cluster,
                   repo.st->location);
        }
        goto out;
    }
    ws_prune_input_from_state(&st, &in);
    in.now = time(NULL);
    in.retain_full = cfg->retain_full;
    in.retain_time = cfg->retain_time;
    in.incomplete_age = cfg->timeout;
    if ((rc = ws_prune_plan_make(&in, &plan, err)) != 0)
        goto out;
    for (j = 0; j < plan.nwarnings; j++)
        ws_log_warning("%s", plan.warnings[j]);

    if (!o->json && (o->dry_run || tty)) {
        for (k = 0; k < in.nbackups; k++)
            if (plan.keep[plan.order[k]])
                backup_line(stdout, o->dry_run ? "would keep" : "keeping", &in, &plan,
                            plan.order[k]);
    }
    snprintf(prefix, sizeof(prefix), "%s/", repo.cluster);
    if (o->dry_run) {
        if ((rc = ws_storage_clean_temp(repo.st, prefix, in.now - effective_age(&in), 1,
                                        &res.temp_deleted, &res.temp_bytes, err)) != 0)
            goto out;
        if (o->json) {
            print_json(stdout, cfg, &repo, &in, &plan, &res, 1, plan.hold_msg);
        } else {
            for (k = 0; k < in.nbackups; k++)
                if (!plan.keep[plan.order[k]])
                    backup_line(stdout, "would delete", &in, &plan, plan.order[k]);
            print_wal(stdout, "would delete", &in, &plan);
            print_summary(stdout, &in, &plan, &res, 1);
        }
        goto held;
    }
    rc = ws_prune_execute(&repo, &in, &plan, o->json ? NULL : stdout, &res, err);
    /* temp files of uploads killed more than the age limit ago: none of them can finish */
    if (rc == 0)
        rc = ws_storage_clean_temp(repo.st, prefix, in.now - effective_age(&in), 0,
                                   &res.temp_deleted, &res.temp_bytes, err);
    if (o->json) {
        print_json(stdout, cfg, &repo, &in, &plan, &res, 0, rc ? err->msg : plan.hold_msg);
    } else {
        if (tty && rc == 0)
            print_wal(stdout, "deleted", &in, &plan);
        print_summary(stdout, &in, &plan, &res, 0);
    }
held:
    /* a held plan: what could be done is done (or, in a dry run, shown); say why the rest is
     * not, and fail, so that monitoring sees it */
    if (rc == 0 && plan.hold_msg)
        rc = ws_error_set(err, WS_ERR_INVALID, "%s", plan.hold_msg);
out:
    if (fflush(stdout) != 0 && rc == 0)
        rc = ws_error_set(err, WS_ERR_IO, "could not write to standard output");
    ws_prune_result_free(&res);
    ws_prune_plan_free(&plan);
    ws_prune_state_free(&st);
    ws_repo_close(&repo);
    ws_keyring_wipe(&kr);
    return rc;
}
