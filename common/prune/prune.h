/*
 * prune.h - wal-prune: which backups and WAL files the retention policies (retain_full,
 * retain_time; retain_logical, retain_logical_time for logical backups, below) let go, and
 * deleting them. The rules in full, and why: docs/design/prune.md.
 *
 * Three parts, each usable alone, and the command that runs them (ws_prune):
 *   - ws_prune_gather() reads a repository into a planner input (struct ws_prune_state);
 *   - ws_prune_plan_make() is the planner: a pure function of its input (no I/O, no clock:
 *     "now" is part of the input); the same input always gives the same plan;
 *   - ws_prune_execute() deletes what a plan says.
 *
 * A plan guarantees (each backup's reasons are bits of enum ws_prune_why; its status is the
 * catalog's, catalog.h):
 *   - the newest complete backup, pinned backups and unreadable (invalid) ones are kept;
 *   - retain_full counts full backups: the N newest complete ones and the diffs and incrs on them;
 *   - the chain of a kept backup is kept (WS_KEEP_REFERENCED), but for links being deleted;
 *   - delete_order puts a backup after every backup to delete that references it;
 *   - "newest" is by start time, then start LSN, then id (plan->order), never by name alone;
 *   - .history files are never deleted; WAL goes only below its timeline's cutoff (plan->tls),
 *     never from a kept backup's start on, and none goes without a complete backup;
 *   - a held plan (plan->hold, hold_msg) deletes no backup by retention: when a needed history
 *     file is missing or unreadable (WS_HOLD_LINEAGE, no WAL of that timeline goes either),
 *     backup times and WAL positions disagree (WS_HOLD_ORDER), or a backup's directory may not
 *     be read by this user (WS_HOLD_UNREADABLE: it is kept, and what it needs is unknown); the
 *     rest of it still stands.
 *
 * The executor guarantees that a kill at any moment leaves no backup the catalog calls complete
 * while an object of it is gone, and that the next run finishes the work: backups first, in
 * plan->delete_order, each as tombstone <cluster>/backup/<ID>.deleting, manifest, other objects,
 * pin, temp files, directories, tombstone (the manifest first when the tombstone cannot be
 * written); then WAL per timeline in ascending order, so an interruption shortens the archive,
 * never holes it.
 *
 * Errors: ws_prune_plan_make() fails with WS_ERR_CONFIG when neither policy is set, else only
 * with WS_ERR_INTERNAL. ws_prune_gather() and ws_prune_execute() pass on the catalog's and the
 * storage's errors (a missing or unreadable history file is no error: the planner holds on it).
 * ws_prune() adds WS_ERR_INVALID for a held plan, after doing (or, dry, showing) the rest.
 *
 * Ownership: the planner borrows its input and keeps nothing of it but indexes; a plan owns its
 * arrays and strings (ws_prune_plan_free(); a failed ws_prune_plan_make() leaves none). A
 * ws_prune_state owns what it gathered (ws_prune_state_free()); an input made from it borrows
 * it. A ws_prune_result owns backup_done (ws_prune_result_free()).
 */
#ifndef WS_PRUNE_H
#define WS_PRUNE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/config.h"
#include "base/error.h"
#include "io/key.h"
#include "pg/timeline.h"
#include "repo/catalog.h"
#include "repo/logical.h"
#include "repo/repo.h"

#define WS_PRUNE_INCOMPLETE_AGE (24 * 3600)

/* Why a backup is kept (low bits) or deleted (high bits); a backup may have several. */
enum ws_prune_why {
    WS_KEEP_NEWEST = 1u << 0,        /* the newest complete backup */
    WS_KEEP_FULL = 1u << 1,          /* one of the retain_full newest complete full backups */
    WS_KEEP_WINDOW = 1u << 2,        /* ended inside the retain_time window */
    WS_KEEP_WINDOW_BASE = 1u << 3,   /* newest that ended before the window opened */
    WS_KEEP_PINNED = 1u << 4,        /* basebackup keep */
    WS_KEEP_TIMELINE = 1u << 5,      /* newest that reaches the latest timeline */
    WS_KEEP_YOUNG = 1u << 6,         /* not complete, written to within the age limit */
    WS_KEEP_PENDING = 1u << 7,       /* incomplete, newer than every complete backup */
    WS_KEEP_UNREADABLE = 1u << 8,    /* invalid: never deleted automatically */
    WS_KEEP_WINDOW_TL = 1u << 9,     /* newest that ended before the window and reaches the latest
                                        timeline (when that is not the WS_KEEP_WINDOW_BASE one) */
    WS_KEEP_HELD = 1u << 10,         /* would go, but the plan is held (WS_HOLD_*) */
    WS_KEEP_FULL_CHAIN = 1u << 11,   /* a diff or incr whose chain ends at a WS_KEEP_FULL backup */
    WS_KEEP_REFERENCED = 1u << 12,   /* in the chain of a kept backup (plan->referenced_by) */
    WS_KEEP_LINK_INVALID = 1u << 13, /* invalid through a link of its chain: never deleted */
    WS_DROP_RETENTION = 1u << 16,    /* complete, kept by no rule */
    WS_DROP_ABANDONED = 1u << 17,    /* not complete, untouched for the age limit */
    WS_DROP_DELETING = 1u << 18,     /* an interrupted prune began deleting it */
};
#define WS_PRUNE_KEEP_MASK 0xffffu

struct ws_prune_backup {
    char id[WS_BACKUP_ID_LEN + 1];
    enum ws_backup_status status;
    int pinned;
    int has_position;              /* start/stop fields below are known (the manifest was read) */
    int64_t start_time, stop_time; /* seconds since the epoch, UTC */
    uint64_t start_lsn, stop_lsn;
    uint32_t timeline;
    int64_t last_write;    /* newest modification time of its objects */
    uint64_t stored_bytes; /* of all its objects */
    const char *problem;   /* invalid: why (borrowed, may be NULL): its manifest cannot be read,
                              or, has_position set, a link of its chain is invalid */
    int type;              /* enum ws_backup_type; full unless has_position says otherwise */
    char reference[WS_BACKUP_ID_LEN + 1]; /* diff/incr: the backup it is relative to; "" */
};

struct ws_prune_wal {
    const char *name; /* bare file name (borrowed) */
    const char *key;  /* its storage key (borrowed); NULL: the canonical key of name */
    int kind;         /* enum ws_wal_kind */
    uint32_t tli;
    uint64_t segno; /* 0 for .history */
    uint64_t size;
    int64_t mtime; /* as the listing says; 0 when the driver's listing has none (SFTP) */
};

/* A timeline's history file: all its ancestors, oldest first. A timeline above 1 without an
 * entry, or whose entry has a problem, has an unknown lineage. */
struct ws_prune_history {
    uint32_t tli;
    const struct ws_timeline_switch *sw;
    size_t nsw;
    const char *problem; /* NULL: read; else why it could not be (e.g. "not in the repository") */
};

/* How a timeline's WAL is treated (docs/design/prune.md, "WAL"). */
enum ws_prune_tl_rule {
    WS_TL_NO_BACKUP = 0, /* no complete backup in the repository: none of it goes */
    WS_TL_REACHED,       /* kept backups need it: below the lowest start of those */
    WS_TL_ANCESTOR,      /* an ancestor of kept backups' timelines only: below the global cutoff */
    WS_TL_UNREACHED,     /* neither: none of it goes (warning) */
    WS_TL_UNKNOWN,       /* its history cannot be read: none of it goes (hold) */
};

struct ws_prune_tl {
    uint32_t tli;
    int rule;        /* enum ws_prune_tl_rule */
    uint64_t cutoff; /* its segments below this number go; 0: none */
    long backup;     /* the backup whose start sets the cutoff, -1 if none */
};

/* Why a plan is held back (deletes no backup by retention; exit 1). */
enum ws_prune_hold {
    WS_HOLD_LINEAGE = 1u << 0,    /* a needed history file is missing or cannot be read */
    WS_HOLD_ORDER = 1u << 1,      /* time order and WAL order of backups on one line disagree */
    WS_HOLD_UNREADABLE = 1u << 2, /* a backup this user may not read (status unreadable) */
};

struct ws_prune_input {
    const struct ws_prune_backup *backups;
    size_t nbackups;
    const struct ws_prune_wal *wal;
    size_t nwal;
    uint32_t wal_segment_size;
    /* history files of the timelines (any order); timeline 1 needs none */
    const struct ws_prune_history *histories;
    size_t nhistories;
    int64_t now;
    int retain_full;        /* 0: not set */
    int64_t retain_time;    /* seconds, 0: not set */
    int64_t incomplete_age; /* seconds; below WS_PRUNE_INCOMPLETE_AGE means that */
    /* wal-receive's streamed chunks (<cluster>/stream/): name is the chunk's, tli and segno its
     * segment's, kind WS_WAL_SEGMENT */
    const struct ws_prune_wal *chunks;
    size_t nchunks;
};

struct ws_prune_plan {
    /* per input backup (same index) */
    int *keep;
    unsigned *why;
    size_t *order;        /* backup indexes, oldest first (start time, start LSN, id) */
    long *ref;            /* the index of its reference (an input backup with an older id), or -1 */
    long *referenced_by;  /* WS_KEEP_REFERENCED: the kept backup whose reference it is; else -1 */
    size_t *delete_order; /* the nbackups_delete backups to delete, in the executor's order */
    size_t nbackups_delete;
    uint64_t backup_bytes; /* stored bytes of the backups to delete */
    /* WAL: indexes into input.wal, sorted by timeline, segment number, name */
    size_t *wal_delete;
    size_t nwal_delete;
    uint64_t wal_bytes;
    /* streamed chunks (indexes into input.chunks) whose segment the repository holds whole, or
     * whose segment is below its timeline's cutoff */
    size_t *chunk_delete;
    size_t nchunk_delete;
    /* the global cutoff: the lowest start segment of the kept backups (or lower, for a kept
     * backup whose position is unknown); 0 when no WAL can go */
    uint64_t wal_cutoff;
    long cutoff_backup; /* index of the backup that sets the cutoff, -1 if none */
    /* per timeline that has WAL other than history files, ascending: its own cutoff */
    struct ws_prune_tl *tls;
    size_t ntls;
    uint32_t latest_tli;
    /* held (WS_HOLD_* bits): no backup deleted by retention (WS_KEEP_HELD); hold_msg says why
     * in one line, and wal-prune exits 1 after doing the rest */
    unsigned hold;
    char *hold_msg;
    /* one line each (no trailing newline); for stderr and the JSON */
    char **warnings;
    size_t nwarnings;
};

int ws_prune_plan_make(const struct ws_prune_input *in, struct ws_prune_plan *plan,
                       struct ws_error *err);
void ws_prune_plan_free(struct ws_prune_plan *plan);

/* Short names of the bits of `why`, e.g. "retain_full", for text and JSON. */
const char *ws_prune_why_name(unsigned bit);
/* One phrase for the reasons `why` of backup i, e.g. "one of the 2 newest complete full backups
 * (retain_full)" or "kept: referenced by <ID>"; the most telling reason first. */
void ws_prune_why_text(const struct ws_prune_input *in, const struct ws_prune_plan *plan, size_t i,
                       unsigned why, char *out, size_t outsz);

/* ---- executor ---- */

/* The planner's input as read from a repository, and what owns it. */
struct ws_prune_state {
    struct ws_catalog cat;
    struct ws_prune_backup *backups;
    size_t nbackups;
    struct ws_prune_wal *wal; /* each key is malloc'ed; name points into it */
    size_t nwal;
    struct ws_prune_wal *chunks; /* as wal */
    size_t nchunks;
    struct ws_prune_history *histories; /* sw and problem malloc'ed */
    size_t nhistories;
    uint32_t latest_tli;
};

/* Reads the catalog, lists the WAL and reads the history file of every timeline above 1 that
 * has WAL, that a backup is on, or that is the latest (a missing or unreadable one is recorded
 * as a problem for the planner; a storage failure fails). An empty cluster (no identity yet)
 * gathers nothing: st->cat.has_identity is 0. */
int ws_prune_gather(struct ws_repo *repo, const struct ws_keyring *kr, struct ws_prune_state *st,
                    struct ws_error *err);
/* The same; with stat_unlisted 0 the objects of backups that are not complete are not stat'ed
 * when the listing has no times (SFTP: one request per object), so their last_write stays 0
 * (basebackup status, which does not judge their age, runs every minute). */
int ws_prune_gather_opts(struct ws_repo *repo, const struct ws_keyring *kr,
                         struct ws_prune_state *st, int stat_unlisted, struct ws_error *err);
void ws_prune_state_free(struct ws_prune_state *st);
/* The planner input over a gathered state (borrows it). */
void ws_prune_input_from_state(const struct ws_prune_state *st, struct ws_prune_input *in);

struct ws_prune_result {
    size_t backups_deleted;
    uint64_t backup_bytes;
    size_t wal_deleted;
    uint64_t wal_bytes;
    size_t chunks_deleted;
    size_t temp_deleted; /* stale temp files of killed uploads (ws_prune; counted in a dry run) */
    uint64_t temp_bytes;
    int *backup_done; /* per input backup: fully deleted (malloc'ed; ws_prune_result_free) */
};
void ws_prune_result_free(struct ws_prune_result *res);

/* Deletes what plan says, in the order above. `report` (may be NULL) gets one line per deleted
 * backup, as each one is gone. On failure res says what was done up to then. */
int ws_prune_execute(struct ws_repo *repo, const struct ws_prune_input *in,
                     const struct ws_prune_plan *plan, FILE *report, struct ws_prune_result *res,
                     struct ws_error *err);

/* ---- logical backups (repo/logical.h): retain_logical, retain_logical_time ----
 *
 * A planner of their own, independent of the physical policies, pure like the one above. A plan
 * guarantees: the newest complete logical backup, pinned ones and invalid ones (a manifest that
 * does not verify) are kept; retain_logical keeps the N newest complete ones, retain_logical_time
 * those that started inside the window (by the time of their id); with both, what either keeps
 * is kept; a backup that is not complete is kept while written to within the age limit
 * (ws_prune_age_limit) and deleted after it; "newest" is by id (the
 * UTC start time). Without either policy the planner refuses (WS_ERR_CONFIG). The executor
 * deletes oldest first, each through ws_logical_delete (its manifest first): a kill at any moment
 * leaves no logical backup listed complete with an object gone; what it leaves is incomplete and
 * goes as abandoned once older than the age limit.
 */
enum ws_prune_lwhy {
    WS_LKEEP_NEWEST = 1u << 0,     /* the newest complete logical backup */
    WS_LKEEP_COUNT = 1u << 1,      /* one of the retain_logical newest complete ones */
    WS_LKEEP_WINDOW = 1u << 2,     /* started inside retain_logical_time */
    WS_LKEEP_PINNED = 1u << 3,     /* logicalbackup keep */
    WS_LKEEP_YOUNG = 1u << 4,      /* not complete, written to within the age limit */
    WS_LKEEP_INVALID = 1u << 5,    /* its manifest does not verify: never deleted automatically */
    WS_LDROP_RETENTION = 1u << 16, /* complete, kept by no rule */
    WS_LDROP_ABANDONED = 1u << 17, /* not complete, untouched for the age limit */
};

struct ws_prune_logical {
    char id[WS_BACKUP_ID_LEN + 1];
    int status; /* enum ws_logical_status */
    int pinned;
    int64_t last_write;    /* newest modification time of its objects */
    uint64_t stored_bytes; /* of all its objects */
    const char *why;       /* not complete: why (borrowed, may be NULL) */
};

struct ws_prune_logical_input {
    const struct ws_prune_logical *backups; /* any order */
    size_t n;
    int64_t now;
    int retain_logical;          /* 0: not set */
    int64_t retain_logical_time; /* seconds, 0: not set */
    int64_t incomplete_age;      /* as ws_prune_input's */
};

struct ws_prune_logical_plan {
    int *keep;       /* per input backup */
    unsigned *why;   /* per input backup: enum ws_prune_lwhy bits */
    size_t *order;   /* input indexes, oldest first (by id) */
    size_t *deletes; /* the ndelete backups to delete, oldest first */
    size_t ndelete;
    uint64_t bytes; /* stored bytes of those */
};

int ws_prune_logical_plan_make(const struct ws_prune_logical_input *in,
                               struct ws_prune_logical_plan *plan, struct ws_error *err);
void ws_prune_logical_plan_free(struct ws_prune_logical_plan *plan);
/* Short name of one bit (e.g. "retain_logical") and one phrase for all of them. */
const char *ws_prune_logical_why_name(unsigned bit);
void ws_prune_logical_why_text(const struct ws_prune_logical_input *in, unsigned why, char *out,
                               size_t outsz);

/* The logical catalog read into planner input (st->backups borrow from st->cat's entries). */
struct ws_prune_logical_state {
    struct ws_logical_catalog cat;
    struct ws_prune_logical *backups;
    size_t n;
};
int ws_prune_logical_gather(struct ws_repo *repo, const struct ws_keyring *kr,
                            struct ws_prune_logical_state *st, struct ws_error *err);
void ws_prune_logical_state_free(struct ws_prune_logical_state *st);
/* Deletes what plan says (ws_logical_delete each, oldest first); report (may be NULL) gets one
 * line per deleted backup. *deleted and *bytes: what was deleted, also after a failure;
 * done[i] (may be NULL, one per input backup) set for each. */
int ws_prune_logical_execute(struct ws_repo *repo, const struct ws_prune_logical_input *in,
                             const struct ws_prune_logical_plan *plan, FILE *report, int *done,
                             size_t *deleted, uint64_t *bytes, struct ws_error *err);

struct ws_prune_opts {
    int dry_run;
    int json;
};
/* The command: gather, plan with cfg's policies and the current time, print (text, or JSON
 * with o->json), execute unless o->dry_run. A held plan (WS_HOLD_*) fails with its message
 * (WS_ERR_INVALID, exit 1) after the rest was done (or printed, with o->dry_run). */
int ws_prune(const struct ws_config *cfg, const struct ws_prune_opts *o, struct ws_error *err);

#endif
