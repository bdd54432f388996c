/*
 * logical.h - the logicalbackup commands: create, list, restore, verify, keep, link, decode
 * (logicalbackup/main.c is a thin wrapper around these). Each returns a ws_code and fills err;
 * output goes to stdout, one-line messages to the log. The repository side (keys, manifest,
 * status) is repo/logical.h.
 *
 * PostgreSQL's own programs do the dumping and restoring: pg_dump, pg_dumpall, pg_restore and
 * psql from pg_bindir, else from PATH. pg_dump must be of the server's major version or newer.
 * They connect with pg_conninfo (libpq's PG* variables and .pgpass apply) minus its password:
 * a password in pg_conninfo reaches them only through a passfile in memory (a memfd of mode 0600
 * named by PGPASSFILE=/proc/self/fd/N; no file on disk, even after a crash), never through argv
 * or the environment. Their standard error's
 * last line ends up in the error message. A child that fails or is killed fails the command;
 * nothing it wrote is listed complete, and create deletes what it stored.
 *
 * ws_logical_stop: main.c's SIGINT/SIGTERM/SIGHUP handler sets it (the handlers are installed
 * without SA_RESTART); the commands then stop their children, remove their temporary files and
 * return WS_ERR_IO ("interrupted").
 */
#ifndef WS_LOGICAL_H
#define WS_LOGICAL_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "base/config.h"
#include "base/error.h"
#include "pg/pgconn.h"

extern volatile sig_atomic_t ws_logical_stop;

struct ws_logical_opts {
    const char *const *dbs; /* create: --db (ndbs of them); restore: dbs[0] */
    size_t ndbs;
    int all;           /* create --all: every database and the globals; verify --all */
    const char *label; /* create --label */
    int jobs;          /* --jobs N: create -Fd with N jobs; restore with N jobs; 0/1: none */
    const char *id;    /* restore, verify, keep: the backup id */
    const char *to_db, *to_file;
    int create_db, clean, globals; /* restore --create --clean --globals */
    int json;                      /* list --json */
    int unset;                     /* keep --unset */
    const char *key_file;          /* decode --key-file */
    int64_t valid_for;             /* link --valid-for: seconds, 1 to 7 days */
    const struct ws_pg_ops *pg;    /* create and restore: the PostgreSQL session (ws_pg_libpq) */
};

int ws_logical_create(const struct ws_config *cfg, const struct ws_logical_opts *o,
                      struct ws_error *err);
int ws_logical_list(const struct ws_config *cfg, const struct ws_logical_opts *o,
                    struct ws_error *err);
/* restore ID --db NAME [--to-db T | --to-file PATH] [--create] [--clean] [--jobs N]
 * [--globals]: --to-db defaults to NAME; a target that exists is refused without --clean, one
 * that does not without --create. --to-file writes the decrypted dump (a directory for a
 * directory-format dump; the globals' SQL with --globals) and never replaces a file. */
int ws_logical_restore(const struct ws_config *cfg, const struct ws_logical_opts *o,
                       struct ws_error *err);
/* verify [ID | --all]: without either, the newest complete backup. */
int ws_logical_verify(const struct ws_config *cfg, const struct ws_logical_opts *o,
                      struct ws_error *err);
int ws_logical_keep(const struct ws_config *cfg, const struct ws_logical_opts *o,
                    struct ws_error *err);
/* link ID --db NAME|--globals --valid-for DUR (link.c): a presigned GET URL per object of that
 * dump of a complete backup, and the decode command for each; WS_ERR_CONFIG for a repository
 * that is not S3 ("links need an S3 repository"). */
int ws_logical_link(const struct ws_config *cfg, const struct ws_logical_opts *o,
                    struct ws_error *err);
/* decode: one object from fd in to fd out, with the key of key_file (the only input needed). */
int ws_logical_decode(const char *key_file, int in, int out, struct ws_error *err);

#endif
