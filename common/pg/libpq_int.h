/*
 * pg/libpq_int.h - what the two libpq sessions share (pgconn_libpq.c, repl_libpq.c; defined in
 * pgconn_libpq.c). Only those two files include it: everything else stays free of libpq.
 *
 * ws_pq_open: connects with conninfo (the whole string as expand_dbname takes it; empty: libpq's
 * PG* variables), as a replication connection when `replication`, with app_name as
 * fallback_application_name; 0 and *out connected, else *out NULL and the error:
 * WS_ERR_CONFIG for a conninfo libpq cannot parse (without libpq's reason: it would quote a
 * piece of it, which may be a password) and for a replication connection the server refuses
 * for max_wal_senders = 0 or a role without REPLICATION; WS_ERR_STORAGE otherwise, naming
 * libpq's reason and pg_conninfo; WS_ERR_INTERNAL out of memory.
 * ws_pq_one_line: text on one line into buf (each run of white space one blank, none at the
 * ends; "unknown error" when empty or NULL); returns buf.
 * ws_pq_result_message: the server's primary message of a failed result, else libpq's message
 * of conn (conn may be NULL only with res holding one), through ws_pq_one_line.
 */
#ifndef WS_PG_LIBPQ_INT_H
#define WS_PG_LIBPQ_INT_H

#include <libpq-fe.h>
#include <stddef.h>

#include "base/error.h"

int ws_pq_open(const char *conninfo, int replication, const char *app_name, PGconn **out,
               struct ws_error *err);
const char *ws_pq_one_line(const char *text, char *buf, size_t bufsz);
const char *ws_pq_result_message(PGconn *conn, const PGresult *res, char *buf, size_t bufsz);

#endif
