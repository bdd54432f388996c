/*
 * pg/repl.h - a physical replication session (the walsender protocol of PostgreSQL 15) for a base
 * backup taken from another host, behind an ops table like pgconn.h.
 *
 * ws_repl_libpq (repl_libpq.c, linked only into basebackup, like pgconn_libpq.c) connects with
 * pg_conninfo plus replication=true: libpq's PG* variables, .pgpass / PGPASSFILE, TLS settings
 * (sslmode, sslrootcert, ...) apply exactly as libpq defines them. Messages carry libpq's error
 * text prefixed with what we were doing, on one line (none for a pg_conninfo libpq cannot parse:
 * pg/libpq_int.h's ws_pq_open). Errors: WS_ERR_STORAGE (connection, authentication, protocol or
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
 *
 * Streaming (wal-receive, the calls below the ops table): slots, TIMELINE_HISTORY and
 * START_REPLICATION; the CopyBoth stream then yields WS_REPL_WAL / KEEPALIVE / IDLE /
 * TIMELINE_END messages and takes standby status updates.
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
    uint32_t wal_segment_size; /* bytes; ws_wal_seg_size_valid (pg/wal.h) */
    uint32_t block_size;       /* bytes, as the server says: its user checks it */
    int data_checksums;        /* 1: on */
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

/* READ_REPLICATION_SLOT: exists = 0 when there is no such slot; restart_lsn 0 when it has none. */
struct ws_repl_slot {
    int exists;
    uint64_t restart_lsn;
    uint32_t timeline; /* of restart_lsn; 0 when unknown */
};

enum ws_repl_wal_type {
    WS_REPL_WAL,         /* wal_start, data, len: WAL bytes from wal_start */
    WS_REPL_KEEPALIVE,   /* wal_end, reply_requested */
    WS_REPL_IDLE,        /* nothing within the timeout (or a signal interrupted the wait) */
    WS_REPL_TIMELINE_END /* the stream of this timeline ended: next_timeline from next_start
                          * (0, 0: the server ended streaming without a switch) */
};

struct ws_repl_wal_msg {
    enum ws_repl_wal_type type;
    uint64_t wal_start, wal_end;
    int64_t send_time; /* the server's clock, microseconds since 2000-01-01 */
    const uint8_t *data;
    size_t len;
    int reply_requested;
    uint32_t next_timeline;
    uint64_t next_start;
};

struct ws_repl_ops {
    int (*connect)(const char *conninfo, struct ws_repl **out, struct ws_error *err);
    void (*close)(struct ws_repl *r);
    int (*identify)(struct ws_repl *r, struct ws_repl_system *sys, struct ws_error *err);
    int (*base_backup)(struct ws_repl *r, const struct ws_repl_bb_opts *o,
                       struct ws_repl_bb_start *start, struct ws_error *err);
    int (*next)(struct ws_repl *r, struct ws_repl_msg *msg, struct ws_error *err);
    /* streaming; NULL in a session that has none (WS_ERR_INTERNAL through the calls) */
    int (*connect_as)(const char *conninfo, const char *app_name, struct ws_repl **out,
                      struct ws_error *err);
    int (*slot_command)(struct ws_repl *r, int create, const char *slot, struct ws_error *err);
    int (*read_slot)(struct ws_repl *r, const char *slot, struct ws_repl_slot *out,
                     struct ws_error *err);
    int (*timeline_history)(struct ws_repl *r, uint32_t tli, char **content, size_t *len,
                            struct ws_error *err);
    int (*start_streaming)(struct ws_repl *r, const char *slot, uint64_t lsn, uint32_t tli,
                           struct ws_error *err);
    int (*stream_next)(struct ws_repl *r, int timeout_ms, struct ws_repl_wal_msg *msg,
                       struct ws_error *err);
    int (*send_status)(struct ws_repl *r, uint64_t write_lsn, uint64_t flush_lsn, int64_t now,
                       struct ws_error *err);
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
 * Streaming. ws_repl_connect_as: ws_repl_connect with app_name as the session's
 * application_name unless conninfo sets one (the name synchronous_standby_names lists).
 * Slot names: 1 to 63 of a-z, 0-9, _ (the server's rule; else WS_ERR_CONFIG naming slot_name).
 * ws_repl_create_slot: CREATE_REPLICATION_SLOT s PHYSICAL RESERVE_WAL; a slot of that name
 * already there is WS_ERR_EXISTS. ws_repl_drop_slot: none is WS_ERR_NOT_FOUND; one in use
 * WS_ERR_STORAGE. ws_repl_timeline_history: the history file of tli, malloc'ed (the caller
 * frees *content), its name checked against tli. ws_repl_start_streaming: START_REPLICATION
 * [SLOT s] PHYSICAL lsn TIMELINE tli (slot NULL: none). ws_repl_stream_next: the next message
 * within timeout_ms; WAL data stays valid until the following call; after TIMELINE_END the
 * session takes commands again. ws_repl_send_status: a standby status update (write and flush
 * positions, apply invalid, no reply requested), written out before it returns.
 */
#define WS_REPL_SLOT_MAX 63
int ws_repl_connect_as(const struct ws_repl_ops *ops, const char *conninfo, const char *app_name,
                       struct ws_repl **out, struct ws_error *err);
int ws_repl_create_slot(struct ws_repl *r, const char *slot, struct ws_error *err);
int ws_repl_drop_slot(struct ws_repl *r, const char *slot, struct ws_error *err);
int ws_repl_read_slot(struct ws_repl *r, const char *slot, struct ws_repl_slot *out,
                      struct ws_error *err);
int ws_repl_timeline_history(struct ws_repl *r, uint32_t tli, char **content, size_t *len,
                             struct ws_error *err);
int ws_repl_start_streaming(struct ws_repl *r, const char *slot, uint64_t lsn, uint32_t tli,
                            struct ws_error *err);
int ws_repl_stream_next(struct ws_repl *r, int timeout_ms, struct ws_repl_wal_msg *msg,
                        struct ws_error *err);
int ws_repl_send_status(struct ws_repl *r, uint64_t write_lsn, uint64_t flush_lsn, int64_t now,
                        struct ws_error *err);

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
/*
 * The streaming protocol's rules. ws_repl_slot_name_check: 0 or WS_ERR_CONFIG. ws_repl_parse_xlog:
 * one CopyBoth message ('w' XLogData: 25-byte header then data; 'k' keepalive: 18 bytes) into
 * msg, pointing into buf; anything else is WS_ERR_CORRUPT. ws_repl_format_status: the 34-byte
 * standby status update ('r', write, flush, apply = 0, now, reply = 0). ws_repl_pg_now: the
 * server protocol's clock, microseconds since 2000-01-01 UTC.
 */
#define WS_REPL_STATUS_SIZE 34
int ws_repl_slot_name_check(const char *slot, struct ws_error *err);
int ws_repl_parse_xlog(const uint8_t *buf, size_t len, struct ws_repl_wal_msg *msg,
                       struct ws_error *err);
void ws_repl_format_status(uint8_t out[WS_REPL_STATUS_SIZE], uint64_t write_lsn, uint64_t flush_lsn,
                           int64_t now);
int64_t ws_repl_pg_now(void);

#endif
