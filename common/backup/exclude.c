/* backup/exclude.c - what a base backup leaves out (exclude.h). */
#include "backup/exclude.h"

#include <string.h>
#include <sys/stat.h>

/* Directories whose contents are skipped (the directory itself is kept). */
static const char *const skip_contents[] = {
    "pg_wal",       "pg_dynshmem", "pg_notify",   "pg_replslot", "pg_serial",
    "pg_snapshots", "pg_stat_tmp", "pg_subtrans", NULL,
};

/* Files of the top-level directory that are never copied. backup_label and tablespace_map come
 * from pg_backup_stop instead; the signal files are written by restore. */
static const char *const skip_top_files[] = {
    "postmaster.pid",   "postmaster.opts",  "backup_label",       "tablespace_map",
    "backup_manifest",  "backup_label.old", "tablespace_map.old", "postgresql.auto.conf.tmp",
    "current_logfiles", "recovery.signal",  "standby.signal",     NULL,
};

static int in_list(const char *const *list, const char *s)
{
    for (; *list; list++)
        if (strcmp(*list, s) == 0)
            return 1;
    return 0;
}

/* t<digits>_<digits>[...]: a temporary relation. */
static int temp_relation(const char *name)
{
    const char *p = name;

    if (*p++ != 't' || !(*p >= '0' && *p <= '9'))
        return 0;
    while (*p >= '0' && *p <= '9')
        p++;
    return *p == '_' && p[1] >= '0' && p[1] <= '9';
}

/* The relfilenode part of a relation file name ("16384" of "16384_fsm.2"), or 0. */
static size_t relnode_len(const char *name)
{
    size_t n = 0;

    while (name[n] >= '0' && name[n] <= '9')
        n++;
    if (n == 0 || (name[n] != '\0' && name[n] != '_' && name[n] != '.'))
        return 0;
    return n;
}

int ws_exclude_entry(const char *rel, int depth, const char *name, mode_t mode,
                     ws_exclude_init_fn has_init, void *arg)
{
    /* a database directory: base/<oid>, pg_tblspc/<oid>/PG_*\/<oid> */
    int in_db_dir = (strncmp(rel, "base/", 5) == 0 && depth == 2) ||
                    (strncmp(rel, "pg_tblspc/", 10) == 0 && depth == 4);

    if (depth == 0 && S_ISREG(mode) && in_list(skip_top_files, name))
        return 1;
    if (strncmp(name, "pgsql_tmp", 9) == 0 || strcmp(name, "pg_internal.init") == 0 ||
        temp_relation(name))
        return 1;
    if (in_db_dir && S_ISREG(mode)) {
        size_t rl = relnode_len(name);
        if (rl && strcmp(name + rl, "_init") != 0 && has_init(arg, rel, name, rl))
            return 1; /* an unlogged relation's other forks */
    }
    return 0;
}

int ws_exclude_contents(int depth, const char *name)
{
    return depth == 0 && in_list(skip_contents, name);
}
