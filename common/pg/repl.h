/*
 * pg/repl.h - a physical replication session (the walsender protocol of PostgreSQL 15) for a base
 * backup taken from another host, behind an ops table like pgconn.h.
 *
 * ws_repl_libpq (repl_libpq.c, linked only into basebackup, like pgconn_libpq.c) connects with
 * pg_conninfo plus replication=true: libpq's PG* variables, .pgpass / PGPASSFILE, TLS settings
 * (sslmode, sslrootcert, ...) apply exactly as libpq defines them. Messages carry libpq's error
 * text prefixed with what we were doing, on one line (none for a pg_conninfo libpq cannot parse:
 * ws_pg_libpq_check_conninfo). Errors: WS_ERR_STORAGE (connection, authentication, protocol or
 * server error, a connection cut mid-stream), WS_ERR_CONFIG (pg_conninfo unreadable, a server
 * older than PostgreSQL 15, max_wal_senders = 0, a role without REPLICATION: each said in words
 * an operator can act on), WS_ERR_CORRUPT (a message that does
 * not follow the protocol), WS_ERR_INTERNAL (out of memory).
 *
 * The BASE_BACKUP conversation (PostgreSQL 15 syntax, TARGET 'client'): base_backup sends the
 * command and reads the start position and the tablespace list; then next returns the COPY
 * stream's messages in order: ARCHIVE (a new tar archive begins: one per tablespace, then the main
 * data directory's, last in PostgreSQL 15), DATA (bytes of the current archive, or of the server's
 * backup_manifest after MANIFEST), PROGRESS (bytes the server has sent so far), MANIFEST, and END
 * after the COPY ended and the end position was read. Data returned by next stays valid until the
 * following call. WARNING/NOTICE messages of the server are logged (ws_log_warning) as they arrive;
 * with verify_checksums the server ends a backup that found bad pages with an error (SQLSTATE
 * XX001) after the end position: END then carries checksum_failure = 1 and no error is returned.
 */
#ifndef WS_PG_REPL_H
#define WS_PG_REPL_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

struct ws_repl_ops;

/* A session: an implementation's own struct starts with this one. */
struct ws_repl {
    const struct ws_repl_ops *ops;
};

/* IDENTIFY_SYSTEM and SHOW, after connect. */
struct ws_repl_system {
    uint64_t system_identifier;
    uint32_t timeline;         /* the server's current timeline */
    uint64_t xlogpos;          /* its current WAL flush position */
    int version;               /* server_version_num, e.g. 150004 */
    uint32_t wal_segment_size; /* bytes */
    uint32_t block_size;       /* bytes */
    int data_checksums;        /* 1: on */
    int in_recovery;           /* 1: a hot standby */
};

struct ws_repl_tablespace {
    uint32_t oid;
    char *location; /* malloc'ed; absolute on the server */
    int64_t size;   /* estimate in bytes, -1 without progress */
};

struct ws_repl_bb_opts {
    const char *label;
    int fast;             /* CHECKPOINT 'fast', else 'spread' */
    int progress;         /* PROGRESS: sizes estimated first, PROGRESS messages */
    uint64_t max_rate;    /* bytes per second, 0: unlimited (MAX_RATE is in kB/s, >= 32) */
    int verify_checksums; /* VERIFY_CHECKSUMS */
};

struct ws_repl_bb_start {
    uint64_t start_lsn;
    uint32_t timeline;
    struct ws_repl_tablespace *tablespaces; /* ntablespaces, main directory excluded */
    size_t ntablespaces;
    int64_t main_size; /* the main directory's estimate in bytes, -1 without progress */
};

enum ws_repl_msg_type {
    WS_REPL_ARCHIVE,  /* archive_name, tablespace_location ("" for the main directory) */
    WS_REPL_DATA,     /* data, len: bytes of the current archive, or of the manifest */
    WS_REPL_PROGRESS, /* progress: bytes sent so far */
    WS_REPL_MANIFEST, /* what follows is the server's backup_manifest */
    WS_REPL_END       /* end_lsn, end_timeline, checksum_failure */
};

struct ws_repl_msg {
    enum ws_repl_msg_type type;
    const char *archive_name;
    const char *tablespace_location;
    const uint8_t *data;
    size_t len;
    uint64_t progress;
    uint64_t end_lsn;
    uint32_t end_timeline;
    int checksum_failure;
};

struct ws_repl_ops {
    int (*connect)(const char *conninfo, struct ws_repl **out, struct ws_error *err);
    void (*close)(struct ws_repl *r);
    int (*identify)(struct ws_repl *r, struct ws_repl_system *sys, struct ws_error *err);
    int (*base_backup)(struct ws_repl *r, const struct ws_repl_bb_opts *o,
                       struct ws_repl_bb_start *start, struct ws_error *err);
    int (*next)(struct ws_repl *r, struct ws_repl_msg *msg, struct ws_error *err);
};

extern const struct ws_repl_ops ws_repl_libpq;

/* The calls, through the session's ops. ws_repl_close(NULL) does nothing; closing a session in
 * the middle of a BASE_BACKUP aborts it on the server. */
int ws_repl_connect(const struct ws_repl_ops *ops, const char *conninfo, struct ws_repl **out,
                    struct ws_error *err);
void ws_repl_close(struct ws_repl *r);
int ws_repl_identify(struct ws_repl *r, struct ws_repl_system *sys, struct ws_error *err);
int ws_repl_base_backup(struct ws_repl *r, const struct ws_repl_bb_opts *o,
                        struct ws_repl_bb_start *start, struct ws_error *err);
int ws_repl_next(struct ws_repl *r, struct ws_repl_msg *msg, struct ws_error *err);
void ws_repl_bb_start_free(struct ws_repl_bb_start *start);

/*
 * The protocol's rules without I/O (repl.c; the libpq session uses them, tests call them).
 * ws_repl_bb_command: the BASE_BACKUP command for o into cmd, the label quoted (quotes doubled);
 * a label that is empty, longer than WS_REPL_LABEL_MAX bytes or holds a control character (it
 * becomes a line of backup_label), or a max_rate below 32 kB/s, is WS_ERR_CONFIG.
 * ws_repl_parse_copy: one COPY message (type byte first, len bytes) into msg, which points into
 * buf; a message the stream so far (st, zeroed before the first) does not allow there (a wrong
 * length, an unknown type, data before any archive, an archive after the manifest) is
 * WS_ERR_CORRUPT. ws_repl_parse_size: a size as SHOW prints it ("16MB", "8192"): 0, else -1.
 */
#define WS_REPL_LABEL_MAX 1024 /* the server's MAXPGPATH */
struct ws_repl_stream {
    int have_archive; /* an ARCHIVE came: DATA is archive bytes */
    int in_manifest;  /* MANIFEST came: DATA is the manifest's */
};
int ws_repl_bb_command(const struct ws_repl_bb_opts *o, char *cmd, size_t cmdsz,
                       struct ws_error *err);
int ws_repl_parse_copy(struct ws_repl_stream *st, const uint8_t *buf, size_t len,
                       struct ws_repl_msg *msg, struct ws_error *err);
int ws_repl_parse_size(const char *s, uint64_t *bytes);

#endif
