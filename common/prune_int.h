/*
 * prune_int.h - what the units of wal-prune share (prune.c, prune_gather.c, prune_plan.c,
 * prune_exec.c, prune_report.c) and what test_prune reaches directly. Not for other modules:
 * they use prune.h.
 */
#ifndef WS_PRUNE_INT_H
#define WS_PRUNE_INT_H

#include <stdint.h>
#include <stdio.h>

#include "prune.h"

/* ---- helpers ---- */

/* The age after which a backup that is not complete is abandoned: in->incomplete_age, at least
 * WS_PRUNE_INCOMPLETE_AGE. */
int64_t ws_prune_age_limit(const struct ws_prune_input *in);
/* Sorts v[0..n) and drops repeats; returns the new count. */
size_t ws_prune_sort_tlis(uint32_t *v, size_t n);
/* Appends to buf (a string of size sz), cutting, never overrunning. */
void ws_prune_append(char *buf, size_t sz, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Keys listed under a prefix (malloc'ed; ws_prune_keys_free). */
struct ws_prune_keys {
    char **keys;
    size_t n, cap;
};
/* A ws_storage_list callback that appends each key to the struct ws_prune_keys at arg. */
int ws_prune_on_key(void *arg, const char *key, const struct ws_storage_stat *st,
                    struct ws_error *err);
void ws_prune_keys_free(struct ws_prune_keys *l);

/* ---- report (prune_report.c) ---- */

/* One line for backup i: verb ("would keep", "deleted"...), id, status, size and why. */
void ws_prune_print_backup(FILE *f, const char *verb, const struct ws_prune_input *in,
                           const struct ws_prune_plan *plan, size_t i);
/* The WAL files of the plan: runs of consecutive segments per timeline, other files by name. */
void ws_prune_print_wal(FILE *f, const char *verb, const struct ws_prune_input *in,
                        const struct ws_prune_plan *plan);
/* The summary line: what was done (dry_run 0, from res), or what would be (from the plan). */
void ws_prune_print_summary(FILE *f, const struct ws_prune_input *in,
                            const struct ws_prune_plan *plan, const struct ws_prune_result *res,
                            int dry_run);
/* The whole run as one JSON object; error: the run's error message, or NULL. */
void ws_prune_print_json(FILE *f, const struct ws_config *cfg, const struct ws_repo *repo,
                         const struct ws_prune_input *in, const struct ws_prune_plan *plan,
                         const struct ws_prune_result *res, int dry_run, const char *error);
/* What a cluster without identity (nothing archived yet) prints, as text or JSON. */
void ws_prune_print_empty(FILE *f, const struct ws_repo *repo, const struct ws_prune_opts *o);

#endif
