/*
 * logical_int.h - inside logical/: PostgreSQL's client programs as children (child.c) and
 * where they are, their versions and their connection (tools.c).
 *
 * A ws_child runs one program with posix_spawn: its stdin and stdout are pipes to us or
 * /dev/null, its stderr always a pipe whose last 4 KiB we keep. ws_child_pump copies its stdout
 * into a sink; ws_child_sink_new makes a sink that feeds its stdin (finish: close stdin, wait,
 * check the exit status; abort: kill and reap). ws_child_wait reaps it and turns anything but
 * exit status 0 into an error naming `what` with the last line of its stderr. ws_child_kill
 * stops it (SIGTERM, then SIGKILL) and reaps it; safe on a child that never started.
 */
#ifndef WS_LOGICAL_INT_H
#define WS_LOGICAL_INT_H

#include <sys/types.h>

#include "base/config.h"
#include "io/sink.h"
#include "logical/logical.h"

enum { WS_CHILD_NULL = 0, WS_CHILD_PIPE = 1 };

struct ws_child {
    pid_t pid; /* 0: none */
    char what[160];
    int in_fd, out_fd, err_fd; /* our ends; -1 when closed */
    char tail[4096];           /* the end of its stderr */
    size_t tail_len;
};

/* passfd >= 0: the child inherits that descriptor (ours stays close-on-exec) and PGPASSFILE
 * names it as /proc/self/fd/N; -1: the environment as it is. */
int ws_child_start(struct ws_child *c, const char *what, char *const argv[], int passfd,
                   int in_mode, int out_mode, struct ws_error *err);
int ws_child_pump(struct ws_child *c, struct ws_sink *dest, struct ws_error *err);
int ws_child_wait(struct ws_child *c, struct ws_error *err);
void ws_child_kill(struct ws_child *c);
/* Takes over c (started with in_mode PIPE); the sink owns it from then on. */
int ws_child_sink_new(struct ws_child *c, struct ws_sink **out, struct ws_error *err);

/* The client programs and their connection. */
struct ws_tools {
    const struct ws_config *cfg;
    int passfd; /* the passfile, -1 when pg_conninfo holds no password */
};
/* When pg_conninfo holds a password, writes it as a passfile ("*:*:*:*:password") into a memory
 * file (memfd, mode 0600, close-on-exec) that has no name in any directory: nothing of it is
 * left on disk however the process ends. ws_tools_close closes it; safe on a zeroed ws_tools. */
int ws_tools_open(struct ws_tools *t, const struct ws_config *cfg, struct ws_error *err);
void ws_tools_close(struct ws_tools *t);
/* The path of program name (pg/bindir.h: pg_bindir/name, else the first on PATH) into out. */
int ws_tools_find(const struct ws_tools *t, const char *name, char *out, size_t outsz,
                  struct ws_error *err);
/* Its version as server_version_num counts (15.4 -> 150004) from "name --version". */
int ws_tools_version(const struct ws_tools *t, const char *path, int *version,
                     struct ws_error *err);
/* pg_conninfo for dbname without its password (malloc'ed). */
int ws_tools_conninfo(const struct ws_tools *t, const char *dbname, char **out,
                      struct ws_error *err);
/* Runs argv with its stdout discarded and waits: 0, or its error. */
int ws_tools_run(const struct ws_tools *t, const char *what, char *const argv[],
                 struct ws_error *err);
/* A temporary directory under spool_dir (else TMPDIR, else /tmp), mode 0700, into out. */
int ws_tools_tempdir(const struct ws_tools *t, const char *tag, char *out, size_t outsz,
                     struct ws_error *err);
/* Removes a directory made by ws_tools_tempdir and everything in it (links not followed). */
void ws_tools_rmtree(const char *dir);

/* fetch.c: reads object o of backup id, authenticated, into dest (which it owns and finishes:
 * dest commits only when the object verified and matches its manifest record). */
struct ws_repo;
struct ws_keyring;
struct ws_logical_object;
int ws_logical_fetch(struct ws_repo *repo, const struct ws_keyring *kr, const char *id,
                     const struct ws_logical_object *o, struct ws_sink *dest, struct ws_error *err);
/* Fetches every object of dump d into directory dir (made, 0700) under their names' last
 * component (a DIR dump's files; a CUSTOM dump's one object as "dump"); only toc.dat when
 * toc_only (the others are fetched and verified, not kept). */
struct ws_logical_dump;
int ws_logical_fetch_dir(struct ws_repo *repo, const struct ws_keyring *kr, const char *id,
                         const struct ws_logical_dump *d, const char *dir, int toc_only,
                         struct ws_error *err);
/* The complete backup id of cat (WS_ERR_NOT_FOUND, or WS_ERR_INVALID saying why it is not
 * complete). */
struct ws_logical_catalog;
struct ws_logical_entry;
int ws_logical_complete(const struct ws_repo *repo, const struct ws_logical_catalog *cat,
                        const char *id, const struct ws_logical_entry **out, struct ws_error *err);

#endif
