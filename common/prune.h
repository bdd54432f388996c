/*
 * prune.h - retention: which backups and WAL files a repository can do without, and removing
 * them in an order that a kill at any moment cannot turn into a backup that looks complete but
 * is not (`wal-prune`, SPEC.md "retain_full", "retain_time").
 *
 * Two halves:
 *   - the planner, ws_prune_plan_make(): a pure function of its input (the catalog's backups,
 *     the WAL files, the timelines' history files, "now" and the policies). No I/O, no clock,
 *     so every rule below is unit-tested with an injected "now";
 *   - the executor, ws_prune_gather() / ws_prune_execute() / ws_prune(): reads the repository
 *     into a planner input, and deletes what the plan says.
 *
 * Rules of the planner (each kept or deleted backup records why, as a bit of enum ws_prune_why):
 *   - Backups are ordered by start time, then start LSN, then id; never by name alone. "Newest"
 *     always means last in that order. When that order and the WAL order disagree for two
 *     backups on one line of history (a server clock was wrong: a backup stamped 2000-01-01
 *     with the highest start LSN), the plan is held (WS_HOLD_ORDER): no backup is deleted, by
 *     retention or as abandoned (only interrupted deletes are finished), and the command exits 1
 *     with one message naming the two backups: which one is oldest is in doubt. Backups on
 *     lines that forked apart are not compared (after a promoted restore, a newer backup can
 *     have a lower LSN than one on the abandoned line).
 *   - retain_full = N keeps the N newest complete backups. retain_time = D keeps what restores
 *     to any moment of the last D, the window: every complete backup that could serve a restore
 *     to a moment inside it (stop_time + 1 > window opening: a restore can only stop after its
 *     backup's end, at stop_time + 1 at the earliest), and the newest one that cannot (ended at
 *     least a second before the window opened): restores to the window's first moments start
 *     from it. So the newest backup that started before the window is always kept, and, when
 *     that one was still running as the window opened, the one before it too. Also kept: the
 *     newest complete backup that ended before the window opened AND reaches the latest
 *     timeline (after a promoted restore, the backup before the window by time may sit on the
 *     abandoned line). Both policies set: the union. Neither set: WS_ERR_CONFIG, nothing is
 *     planned.
 *   - The newest complete backup is never deleted, whatever the policies say.
 *   - Pinned backups (`basebackup keep ID`) are kept, whatever their status, and like any kept
 *     backup they hold the WAL from their start on (a pin keeps restores to any later moment
 *     possible; it also keeps that WAL until `basebackup keep --unset`).
 *   - Timelines: when no kept backup can reach the latest timeline (the highest one in the
 *     archive, which restore follows), the newest complete backup that can is kept as well. A
 *     backup reaches timeline L when it is on L, or on an ancestor of L (from L's history file)
 *     and ended before L's line left that ancestor. After a point-in-time restore of an old
 *     backup that was promoted and became the production server, the newest backup by time can
 *     sit on an abandoned timeline; this rule keeps a base for the timeline that is running.
 *   - Unknown lineage fails closed. Every timeline above 1 that has WAL (other than its history
 *     file), that a backup is on, or that is the latest needs its history file (which names all
 *     its ancestors). When one of them is missing or cannot be read, the plan is held
 *     (WS_HOLD_LINEAGE): no backup is deleted by retention (WS_KEEP_HELD), none of the WAL of
 *     such a timeline goes, and the command exits 1 with one message naming the timelines and
 *     how to repair (archive the history file again with wal-push). Everything the rules still
 *     allow is done: abandoned backups, interrupted deletes, and WAL of timelines whose lineage
 *     is known (by the rules below, with every complete backup kept).
 *   - Backups that are not complete: "running" (no manifest) and "incomplete" (manifest, WAL
 *     missing) are removed once nothing of them has been written for the age limit
 *     (WS_PRUNE_INCOMPLETE_AGE, 24 h, or the `timeout` if that is longer; a live backup writes a
 *     bundle every few seconds and waits at most `timeout` for its WAL). An incomplete backup
 *     newer than every complete one is kept even then: its WAL may still arrive from an archiver
 *     that is behind, and the backup then becomes complete. "invalid" backups (a manifest we
 *     cannot read: damaged, or written with a key this configuration lacks) are never deleted
 *     automatically; a missing decrypt_key_files entry must not cost backups. "deleting" backups
 *     (an earlier prune began to delete them and was interrupted) are finished.
 *   - WAL (segments, .partial and .backup files), with a cutoff per timeline T, from the history
 *     files; segment numbers are compared as numbers with the timeline apart, never as names (a
 *     name sorts by timeline first):
 *       - a kept backup B needs WAL of T when B is on T, or B's timeline is an ancestor of T and
 *         T's line left it at or after B's start. When kept backups need T, its segments below
 *         the lowest start segment of those backups go (WAL replay only moves forward, so none
 *         of them needs a segment before its own start);
 *       - when none needs T but T is a proper ancestor of a kept backup's timeline, its segments
 *         below the global cutoff (the lowest start segment of all kept backups) go;
 *       - otherwise (a stray promoted copy archiving into the repository, or a line that no kept
 *         backup can follow) none of T's WAL goes, with a warning; nor any of a timeline whose
 *         lineage is unknown (above).
 *     A kept backup whose position is unknown (invalid: a manifest that cannot be read; running)
 *     is given no guessed position: every timeline keeps its WAL from the lowest start segment
 *     known of any backup in the repository (also of backups deleted in this run: the next run
 *     releases that WAL), or all of it when no backup with a known position precedes it. Without
 *     a complete backup no WAL is deleted. Everything from the newest complete backup's start on
 *     its timeline and the timelines it reaches is never touched.
 *   - .history files are always kept: they are tiny; recovery asks for every one of them to
 *     find the latest timeline; and PostgreSQL chooses a new timeline id on promotion by probing
 *     the archive for history files, so a deleted one lets a later promotion reuse its id and
 *     write WAL whose names collide with archived segments of the old timeline.
 *
 * Deletion order (executor), so that SIGKILL at any point leaves a consistent repository that
 * the next run finishes:
 *   1. backups, oldest first; for each: the tombstone <cluster>/backup/<ID>.deleting (from then
 *      on the catalog no longer calls it complete and the next prune finishes it), the manifest
 *      (so even a reader that ignores tombstones stops seeing a complete backup), every other
 *      object (bundles), the pin, temp files of killed uploads into it, its empty directories,
 *      and last the tombstone. When the tombstone cannot be written (a full repository:
 *      ENOSPC), the manifest is removed first all the same, with a warning: without it the
 *      backup is not complete either (the catalog sees a backup without manifest, which a
 *      later prune removes as abandoned), and the deletions that follow free the space;
 *   2. then WAL, per timeline in ascending segment order, so an interruption leaves a shorter
 *      archive and never a hole; a kept backup's WAL is never touched; a 4 GiB-range directory
 *      goes with its last file;
 *   3. then (ws_prune) temp files of uploads killed longer ago than the age limit, anywhere under
 *      <cluster>/ (drivers with housekeeping: posix, sftp; S3 needs a lifecycle rule).
 *
 * A new database system, after re-initdb or a major upgrade, under the same cluster name never
 * reaches the planner: the repository identity (repo.c) refuses WAL and backups of another system
 * (or PostgreSQL major version) with a message naming both, so LSNs of two systems are never
 * compared. The operator gives
 * the new system a new `cluster` name; the old one keeps its backups until removed.
 *
 * Ownership: the input is borrowed (the planner copies nothing it keeps beyond the call except
 * indexes); a plan owns its arrays and strings, released by ws_prune_plan_free(). ws_prune_state
 * owns everything it gathered, released by ws_prune_state_free().
 *
 *     struct ws_prune_plan plan;
 *     if (ws_prune_plan_make(&in, &plan, &err) == 0) {
 *         for (i = 0; i < in.nbackups; i++)
 *             if (!plan.keep[i]) ...  plan.why[i] says why
 *         ws_prune_plan_free(&plan);
 *     }
 */
#ifndef WS_PRUNE_H
#define WS_PRUNE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "backup.h"
#include "config.h"
#include "error.h"
#include "key.h"
#include "repo.h"

#define WS_PRUNE_INCOMPLETE_AGE (24 * 3600)

enum ws_prune_status {
    WS_PRUNE_COMPLETE = 0,
    WS_PRUNE_INCOMPLETE, /* manifest, WAL missing */
    WS_PRUNE_RUNNING,    /* no manifest: still being written, or died */
    WS_PRUNE_INVALID,    /* the manifest cannot be read */
    WS_PRUNE_DELETING    /* an interrupted prune began deleting it */
};

/* Why a backup is kept (low bits) or deleted (high bits); a backup may have several. */
enum ws_prune_why {
    WS_KEEP_NEWEST = 1u << 0,      /* the newest complete backup */
    WS_KEEP_FULL = 1u << 1,        /* one of the retain_full newest complete backups */
    WS_KEEP_WINDOW = 1u << 2,      /* ended inside the retain_time window */
    WS_KEEP_WINDOW_BASE = 1u << 3, /* newest that ended before the window opened */
    WS_KEEP_PINNED = 1u << 4,      /* basebackup keep */
    WS_KEEP_TIMELINE = 1u << 5,    /* newest that reaches the latest timeline */
    WS_KEEP_YOUNG = 1u << 6,       /* not complete, written to within the age limit */
    WS_KEEP_PENDING = 1u << 7,     /* incomplete, newer than every complete backup */
    WS_KEEP_UNREADABLE = 1u << 8,  /* invalid: never deleted automatically */
    WS_KEEP_WINDOW_TL = 1u << 9,   /* newest that ended before the window and reaches the latest
                                      timeline (when that is not the WS_KEEP_WINDOW_BASE one) */
    WS_KEEP_HELD = 1u << 10,       /* would go, but the plan is held (WS_HOLD_*) */
    WS_DROP_RETENTION = 1u << 16,  /* complete, kept by no rule */
    WS_DROP_ABANDONED = 1u << 17,  /* not complete, untouched for the age limit */
    WS_DROP_DELETING = 1u << 18,   /* an interrupted prune began deleting it */
};
#define WS_PRUNE_KEEP_MASK 0xffffu

struct ws_prune_backup {
    char id[WS_BACKUP_ID_LEN + 1];
    int status; /* enum ws_prune_status */
    int pinned;
    int has_position;              /* start/stop fields below are known (the manifest was read) */
    int64_t start_time, stop_time; /* seconds since the epoch, UTC */
    uint64_t start_lsn, stop_lsn;
    uint32_t timeline;
    int64_t last_write;    /* newest modification time of its objects */
    uint64_t stored_bytes; /* of all its objects */
    const char *problem;   /* invalid: why the manifest cannot be read (borrowed, may be NULL) */
};

struct ws_prune_wal {
    const char *name; /* bare file name (borrowed) */
    const char *key;  /* its storage key (borrowed); NULL: the canonical key of name */
    int kind;         /* enum ws_wal_kind */
    uint32_t tli;
    uint64_t segno; /* 0 for .history */
    uint64_t size;
};

/* One line of a timeline's history file: the line left its ancestor `tli` at `end_lsn`. */
struct ws_prune_switch {
    uint32_t tli;
    uint64_t end_lsn;
};

/* A timeline's history file: all its ancestors, oldest first. A timeline above 1 without an
 * entry, or whose entry has a problem, has an unknown lineage. */
struct ws_prune_history {
    uint32_t tli;
    const struct ws_prune_switch *sw;
    size_t nsw;
    const char *problem; /* NULL: read; else why it could not be (e.g. "not in the repository") */
};

/* How a timeline's WAL is treated (prune.h, "WAL"). */
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
    WS_HOLD_LINEAGE = 1u << 0, /* a needed history file is missing or cannot be read */
    WS_HOLD_ORDER = 1u << 1,   /* time order and WAL order of backups on one line disagree */
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
};

struct ws_prune_plan {
    /* per input backup (same index) */
    int *keep;
    unsigned *why;
    size_t *order; /* backup indexes, oldest first (start time, start LSN, id) */
    size_t nbackups_delete;
    uint64_t backup_bytes; /* stored bytes of the backups to delete */
    /* WAL: indexes into input.wal, sorted by timeline, segment number, name */
    size_t *wal_delete;
    size_t nwal_delete;
    uint64_t wal_bytes;
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
/* One phrase for a backup's decision, e.g. "one of the 2 newest complete backups
 * (retain_full = 2)"; the most telling reason first. */
void ws_prune_why_text(const struct ws_prune_input *in, const struct ws_prune_plan *plan,
                       unsigned why, char *out, size_t outsz);
const char *ws_prune_status_name(int status);

/* Parses a timeline history file's text ("parent<TAB>lsn<TAB>reason" lines). *out is malloc'ed.
 * WS_ERR_CORRUPT (naming `what`) on a malformed line. */
int ws_prune_parse_history(const char *text, size_t len, const char *what,
                           struct ws_prune_switch **out, size_t *n, struct ws_error *err);

/* ---- executor ---- */

/* The planner's input as read from a repository, and what owns it. */
struct ws_prune_state {
    struct ws_catalog cat;
    struct ws_prune_backup *backups;
    size_t nbackups;
    struct ws_prune_wal *wal; /* each key is malloc'ed; name points into it */
    size_t nwal;
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
void ws_prune_state_free(struct ws_prune_state *st);
/* The planner input over a gathered state (borrows it). */
void ws_prune_input_from_state(const struct ws_prune_state *st, struct ws_prune_input *in);

struct ws_prune_result {
    size_t backups_deleted;
    uint64_t backup_bytes;
    size_t wal_deleted;
    uint64_t wal_bytes;
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

struct ws_prune_opts {
    int dry_run;
    int json;
};
/* The command: gather, plan with cfg's policies and the current time, print (text, or JSON
 * with o->json), execute unless o->dry_run. A held plan (WS_HOLD_*) fails with its message
 * (WS_ERR_INVALID, exit 1) after the rest was done (or printed, with o->dry_run). */
int ws_prune(const struct ws_config *cfg, const struct ws_prune_opts *o, struct ws_error *err);

#endif
