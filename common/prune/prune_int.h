/*
 * prune_int.h - what the units of wal-prune share (prune.c, prune/gather.c, prune/lineage.c,
 * prune/plan.c, prune/exec.c, prune/report.c) and what test_prune reaches directly. Not for
 * other modules: they use prune.h.
 */
#ifndef WS_PRUNE_INT_H
#define WS_PRUNE_INT_H

#include <stdint.h>
#include <stdio.h>

#include "prune/prune.h"

/* ---- helpers (prune/plan.c, prune/gather.c) ---- */

/* The age after which a backup that is not complete is abandoned: incomplete_age (an input's),
 * at least WS_PRUNE_INCOMPLETE_AGE. */
int64_t ws_prune_age_limit(int64_t incomplete_age);
/* "30d", "36h", "90s": the largest unit that divides s. */
void ws_prune_format_duration(int64_t s, char *out, size_t outsz);
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

/* ---- lineage (prune/lineage.c): what the timelines' history files say ---- */

/* The history entry of timeline tli in the input, or NULL. */
const struct ws_prune_history *ws_prune_history_of(const struct ws_prune_input *in, uint32_t tli);
/* Timeline 1, or one whose history file was read. */
int ws_prune_lineage_known(const struct ws_prune_input *in, uint32_t tli);
/* Is anc a proper ancestor of timeline tli (known from tli's history)? *end: where tli's line
 * left it. */
int ws_prune_left_at(const struct ws_prune_input *in, uint32_t tli, uint32_t anc, uint64_t *end);
/* Can a restore of b follow timeline tli: b is on it, or on an ancestor and ended before the
 * line left that ancestor? */
int ws_prune_restorable_to(const struct ws_prune_input *in, const struct ws_prune_backup *b,
                           uint32_t tli);
/* Does b need WAL of timeline tli: b is on it, or on an ancestor that tli's line left at or after
 * b's start (wider than restorable_to: a backup that ended after the switch keeps it too)? */
int ws_prune_needs_wal_of(const struct ws_prune_input *in, const struct ws_prune_backup *b,
                          uint32_t tli);
/* Do the starts of a and b lie on one line of history, so that their LSNs compare? */
int ws_prune_one_line(const struct ws_prune_input *in, const struct ws_prune_backup *a,
                      const struct ws_prune_backup *b);
/* The latest timeline: the highest of the WAL files (history files included) and of the backups
 * whose position is known; 0 when there is none. */
uint32_t ws_prune_latest_tli(const struct ws_prune_input *in);
/* The timelines of the WAL files other than history files, ascending, each once, into tlv (room
 * for in->nwal); returns the count. */
size_t ws_prune_wal_tlis(const struct ws_prune_input *in, uint32_t *tlv);
/* The timelines whose lineage must be known: those of ws_prune_wal_tlis, of the backups whose
 * position is known, and `latest` (unless 0); ascending, each once, into tlv (room for
 * in->nwal + in->nbackups + 1); returns the count. */
size_t ws_prune_lineage_tlis(const struct ws_prune_input *in, uint32_t latest, uint32_t *tlv);

/* ---- the planner's steps (prune/plan.c), in the order ws_prune_plan_make takes them ----
 * Each reads the input and what the steps before it left in the plan. The ones returning int
 * fail only with WS_ERR_INTERNAL (out of memory). */

/* Clears *plan; refuses (WS_ERR_CONFIG) when no policy is set; allocates the plan's arrays. On
 * failure *plan holds nothing. plan->latest_tli = ws_prune_latest_tli() comes next. */
int ws_prune_plan_init(const struct ws_prune_input *in, struct ws_prune_plan *plan,
                       struct ws_error *err);
/* plan->order: backups oldest first by start time (the one the id encodes when the manifest was
 * not read), start LSN, id. */
int ws_prune_order(const struct ws_prune_input *in, struct ws_prune_plan *plan,
                   struct ws_error *err);
/* plan->ref: each backup's reference, resolved by id among the input backups; a reference that
 * is not there, or whose id is not older (a cycle cannot form), resolves to -1. */
int ws_prune_link_chains(const struct ws_prune_input *in, struct ws_prune_plan *plan,
                         struct ws_error *err);
/* The full backup at the end of backup i's chain (i itself when full); -1 when the chain breaks
 * before one. Reads plan->ref. */
long ws_prune_chain_root(const struct ws_prune_input *in, const struct ws_prune_plan *plan,
                         size_t i);
/* WS_HOLD_LINEAGE, with its message, when a timeline of ws_prune_lineage_tlis has no readable
 * history file. */
int ws_prune_hold_lineage(const struct ws_prune_input *in, struct ws_prune_plan *plan,
                          struct ws_error *err);
/* WS_HOLD_ORDER, naming the first pair, when two backups whose starts lie on one line of history
 * are in one order by time and in the other by start LSN (interrupted deletes do not count). */
int ws_prune_hold_order(const struct ws_prune_input *in, struct ws_prune_plan *plan,
                        struct ws_error *err);
/* WS_HOLD_UNREADABLE, naming the first, when a backup's status is unreadable. */
int ws_prune_hold_unreadable(const struct ws_prune_input *in, struct ws_prune_plan *plan,
                             struct ws_error *err);
/* Position in plan->order of the newest complete backup; -1 when there is none. */
long ws_prune_newest(const struct ws_prune_input *in, const struct ws_prune_plan *plan);
/* The policies; each adds its WS_KEEP_* bit to plan->why of the complete backups it keeps. */
void ws_prune_keep_newest(const struct ws_prune_input *in, struct ws_prune_plan *plan);
/* retain_full: WS_KEEP_FULL on the N newest complete full backups, WS_KEEP_FULL_CHAIN on the
 * complete diffs and incrs whose chain ends at one of them. */
void ws_prune_keep_full(const struct ws_prune_input *in, struct ws_prune_plan *plan);
/* retain_time: WS_KEEP_WINDOW, WS_KEEP_WINDOW_BASE and WS_KEEP_WINDOW_TL (the last reads
 * plan->latest_tli). */
void ws_prune_keep_window(const struct ws_prune_input *in, struct ws_prune_plan *plan);
void ws_prune_keep_pinned(const struct ws_prune_input *in, struct ws_prune_plan *plan);
/* Complete backups that no reason keeps: WS_DROP_RETENTION. */
void ws_prune_expire(const struct ws_prune_input *in, struct ws_prune_plan *plan);
/* Backups that are not complete: recent, pending, abandoned, unreadable or an interrupted
 * delete; any keeping reason (a pin) clears the dropping ones. */
void ws_prune_judge_incomplete(const struct ws_prune_input *in, struct ws_prune_plan *plan);
/* When no kept complete backup can reach plan->latest_tli: the newest that can becomes
 * WS_KEEP_TIMELINE; when none can (and its lineage is known), a warning and *warned = 1. */
int ws_prune_keep_latest_reachable(const struct ws_prune_input *in, struct ws_prune_plan *plan,
                                   int *warned, struct ws_error *err);
/* The chains of the kept backups: every link (not a deleting one) becomes WS_KEEP_REFERENCED,
 * its dropping reasons cleared, plan->referenced_by naming the kept backup that references it. */
void ws_prune_keep_referenced(const struct ws_prune_input *in, struct ws_prune_plan *plan);
/* A held plan: what retention would delete (and, for WS_HOLD_ORDER, abandoned backups) becomes
 * WS_KEEP_HELD. */
void ws_prune_apply_hold(const struct ws_prune_input *in, struct ws_prune_plan *plan);
/* plan->keep, nbackups_delete and backup_bytes from plan->why. */
void ws_prune_tally(const struct ws_prune_input *in, struct ws_prune_plan *plan);
/* plan->delete_order: the backups to delete, grouped by the oldest of them in their chain
 * (oldest group first), deepest in the chain first within a group, then newest first: a backup
 * comes after every backup to delete that references it. */
int ws_prune_delete_order(const struct ws_prune_input *in, struct ws_prune_plan *plan,
                          struct ws_error *err);
/* A warning for each unreadable and each pending backup, oldest first. */
int ws_prune_warn_kept(const struct ws_prune_input *in, struct ws_prune_plan *plan,
                       struct ws_error *err);
/* The lowest segment kept backups whose position is unknown hold on every timeline: the lowest
 * start segment known of any backup, 0 (all) when no backup with a position precedes one of
 * them; UINT64_MAX when there is no such kept backup. *from: the backup that sets it, or -1. */
uint64_t ws_prune_wal_floor(const struct ws_prune_input *in, const struct ws_prune_plan *plan,
                            long *from);
/* plan->wal_cutoff and cutoff_backup: the lowest start segment of the kept backups, or floor if
 * lower; 0 (no WAL goes) without a complete backup. */
void ws_prune_global_cutoff(const struct ws_prune_input *in, struct ws_prune_plan *plan,
                            uint64_t floor, long floor_from);
/* plan->tls: the rule and cutoff of every timeline with WAL, with the warnings that go with them
 * (none for the latest timeline when latest_warned). */
int ws_prune_timeline_cutoffs(const struct ws_prune_input *in, struct ws_prune_plan *plan,
                              uint64_t floor, long floor_from, int latest_warned,
                              struct ws_error *err);
/* plan->wal_delete and wal_bytes: the segments, .partial and .backup files below their
 * timeline's cutoff, by timeline, segment number and name; a warning for each gap in what stays. */
int ws_prune_select_wal(const struct ws_prune_input *in, struct ws_prune_plan *plan,
                        struct ws_error *err);
/* plan->chunk_delete: the streamed chunks of segments stored whole or below their timeline's
 * cutoff. */
int ws_prune_select_chunks(const struct ws_prune_input *in, struct ws_prune_plan *plan,
                           struct ws_error *err);

/* ---- report (prune/report.c) ---- */

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
struct ws_prune_lrun;
/* The whole run as one JSON object; error: the run's error message, or NULL; lr: the logical
 * part ("logical": null when NULL). */
void ws_prune_print_json(FILE *f, const struct ws_config *cfg, const struct ws_repo *repo,
                         const struct ws_prune_input *in, const struct ws_prune_plan *plan,
                         const struct ws_prune_lrun *lr, const struct ws_prune_result *res,
                         int dry_run, const char *error);
/* The same when only logical policies are set: the physical members empty ("wal": null). */
void ws_prune_print_logical_json(FILE *f, const struct ws_repo *repo,
                                 const struct ws_prune_lrun *lr, int dry_run, const char *error);
/* What a cluster without identity (nothing archived yet) prints, as text or JSON. */
void ws_prune_print_empty(FILE *f, const struct ws_repo *repo, const struct ws_prune_opts *o);

/* ---- logical backups (prune/logical.c) ---- */

/* What the logical part of a run did or would do. */
struct ws_prune_lrun {
    struct ws_prune_logical_input in;
    struct ws_prune_logical_plan plan;
    int *done; /* per input backup: deleted */
    size_t deleted;
    uint64_t bytes;
};
/* One line per logical backup, oldest first: kept (keep 1) or deleted (keep 0), with verb. */
void ws_prune_logical_print(FILE *f, const char *verb, const struct ws_prune_lrun *lr, int keep);
/* "logical: would delete N logical backup(s) (size); would keep M" */
void ws_prune_logical_summary(FILE *f, const struct ws_prune_lrun *lr, int dry_run);
/* The "logical" member of the JSON: policies, backups with action and reasons, summary. */
void ws_prune_logical_json(FILE *f, const struct ws_prune_lrun *lr, int dry_run);

#endif
