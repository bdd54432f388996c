/*
 * bindir.h - where PostgreSQL's programs are (postgres, pg_dump, psql, ...).
 *
 * ws_pg_bindir_find puts into out the directory that holds the program `name` as an executable
 * regular file (stat follows links; access X_OK), looking:
 *   1. in pg_bindir when it is set (not NULL, not ""), and then only there: the operator's
 *      choice is never second-guessed;
 *   2. else in each of dirs (a NULL-terminated list, or NULL), in order;
 *   3. else in each absolute directory of PATH, in order ("/usr/bin:/bin" when PATH is unset;
 *      empty and relative entries are skipped: they would depend on the working directory).
 * Errors, WS_ERR_CONFIG, one line each:
 *   pg_bindir "DIR" holds no executable "NAME"
 *   could not find "NAME" [in DIR, DIR or] on PATH; set pg_bindir to the directory of
 *   PostgreSQL's programs
 * out is "" after an error. A directory longer than outsz - 1 is skipped (from pg_bindir: the
 * first error).
 *
 * ws_pg_bindir_has: 1 when dir/name is an executable regular file, else 0.
 */
#ifndef WS_PG_BINDIR_H
#define WS_PG_BINDIR_H

#include <stddef.h>

#include "base/error.h"

int ws_pg_bindir_find(const char *pg_bindir, const char *const dirs[], const char *name, char *out,
                      size_t outsz, struct ws_error *err);
int ws_pg_bindir_has(const char *dir, const char *name);

#endif
