/* prune/lineage.c - what the timelines' history files say about backups and WAL, for the
 * planner and for what gather reads (docs/design/prune.md, "Timelines"). */
#include "prune/prune_int.h"

#include <stdlib.h>

#include "pg/wal.h"

const struct ws_prune_history *ws_prune_history_of(const struct ws_prune_input *in, uint32_t tli)
{
    size_t i;

    for (i = 0; i < in->nhistories; i++)
        if (in->histories[i].tli == tli)
            return &in->histories[i];
    return NULL;
}

int ws_prune_lineage_known(const struct ws_prune_input *in, uint32_t tli)
{
    const struct ws_prune_history *h;

    if (tli <= 1)
        return 1;
    h = ws_prune_history_of(in, tli);
    return h && !h->problem;
}

int ws_prune_left_at(const struct ws_prune_input *in, uint32_t tli, uint32_t anc, uint64_t *end)
{
    const struct ws_prune_history *h;
    size_t i;

    if (tli <= 1 || anc == tli || !ws_prune_lineage_known(in, tli))
        return 0;
    h = ws_prune_history_of(in, tli);
    for (i = 0; i < h->nsw; i++) {
        if (h->sw[i].tli == anc) {
            *end = h->sw[i].end_lsn;
            return 1;
        }
    }
    return 0;
}

/* b is on timeline tli, or on an ancestor of it that tli's line left at or after `at` (a
 * position of b's). */
static int on_line_at(const struct ws_prune_input *in, const struct ws_prune_backup *b,
                      uint32_t tli, uint64_t at)
{
    uint64_t end;

    if (!b->has_position)
        return 0;
    if (b->timeline == tli)
        return 1;
    return ws_prune_left_at(in, tli, b->timeline, &end) && at <= end;
}

int ws_prune_restorable_to(const struct ws_prune_input *in, const struct ws_prune_backup *b,
                           uint32_t tli)
{
    return on_line_at(in, b, tli, b->stop_lsn);
}

int ws_prune_needs_wal_of(const struct ws_prune_input *in, const struct ws_prune_backup *b,
                          uint32_t tli)
{
    return on_line_at(in, b, tli, b->start_lsn);
}

int ws_prune_one_line(const struct ws_prune_input *in, const struct ws_prune_backup *a,
                      const struct ws_prune_backup *b)
{
    uint64_t end;

    if (a->timeline == b->timeline)
        return 1;
    if (ws_prune_left_at(in, b->timeline, a->timeline, &end) && a->start_lsn <= end)
        return 1;
    return ws_prune_left_at(in, a->timeline, b->timeline, &end) && b->start_lsn <= end;
}

uint32_t ws_prune_latest_tli(const struct ws_prune_input *in)
{
    uint32_t latest = 0;
    size_t i;

    for (i = 0; i < in->nwal; i++)
        if (in->wal[i].tli > latest)
            latest = in->wal[i].tli;
    for (i = 0; i < in->nbackups; i++)
        if (in->backups[i].has_position && in->backups[i].timeline > latest)
            latest = in->backups[i].timeline;
    return latest;
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

/* Appends the timelines of the WAL files other than history files to tlv; returns the count. */
static size_t add_wal_tlis(const struct ws_prune_input *in, uint32_t *tlv)
{
    size_t i, n = 0;

    for (i = 0; i < in->nwal; i++)
        if (in->wal[i].kind != WS_WAL_HISTORY && in->wal[i].kind != WS_WAL_INVALID)
            tlv[n++] = in->wal[i].tli;
    return n;
}

size_t ws_prune_wal_tlis(const struct ws_prune_input *in, uint32_t *tlv)
{
    return sort_unique(tlv, add_wal_tlis(in, tlv));
}

size_t ws_prune_lineage_tlis(const struct ws_prune_input *in, uint32_t latest, uint32_t *tlv)
{
    size_t i, n = add_wal_tlis(in, tlv);

    for (i = 0; i < in->nbackups; i++)
        if (in->backups[i].has_position)
            tlv[n++] = in->backups[i].timeline;
    if (latest)
        tlv[n++] = latest;
    return sort_unique(tlv, n);
}
