/*
 * backup/exclude.h - what a base backup leaves out of a data directory (PostgreSQL's
 * documentation, "Backing Up the Data Directory"), decided in one place: create does not copy
 * it, a delta restore does not remove it.
 *
 * Left out: postmaster.pid, postmaster.opts, backup_label, tablespace_map (create stores the
 * ones pg_backup_stop returns), backup_manifest, backup_label.old, tablespace_map.old,
 * postgresql.auto.conf.tmp, current_logfiles, recovery.signal and standby.signal at the top;
 * the contents (not the directory) of pg_wal, pg_dynshmem, pg_notify, pg_replslot, pg_serial,
 * pg_snapshots, pg_stat_tmp and pg_subtrans at the top; pgsql_tmp*, pg_internal.init and
 * temporary relations (t<digits>_<digits>...) anywhere; in a database directory (base/<oid>,
 * pg_tblspc/<oid>/PG_*\/<oid>) every fork of an unlogged relation except its init fork.
 */
#ifndef WS_BACKUP_EXCLUDE_H
#define WS_BACKUP_EXCLUDE_H

#include <stddef.h>
#include <sys/types.h>

/* Whether the relation whose file `name` is in directory `rel` has an init fork there: the
 * relfilenode is the first `relnode_len` characters of name ("<relnode>_init" is the fork). */
typedef int (*ws_exclude_init_fn)(void *arg, const char *rel, const char *name, size_t relnode_len);

/* 1 when entry `name` of directory `rel` ("" for the data directory; depth: 0 for its entries,
 * 1 for theirs, ...), of type `mode` (st_mode, a link not followed), is left out of backups. */
int ws_exclude_entry(const char *rel, int depth, const char *name, mode_t mode,
                     ws_exclude_init_fn has_init, void *arg);
/* 1 when the contents of directory `name` at depth `depth` are left out (the directory is kept). */
int ws_exclude_contents(int depth, const char *name);

#endif
