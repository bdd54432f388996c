/*
 * storage/sftp_int.h - what the units of the sftp driver share: sftp.c (open, close, stat, get,
 * list, remove, housekeeping), sftp_session.c (requests on the storage's SSH sessions),
 * sftp_hostkey.c (the server's host key) and sftp_put.c (the upload sink). Not for other
 * modules: they use storage.h and params.h.
 *
 * One curl multi handle and one easy handle live as long as the storage: libcurl keeps the SSH
 * session in the multi handle's connection cache, so the operations of a handle share one
 * session, and one the server dropped is set up again on the next request. An open put sink
 * has its own easy handle (it stays on the multi handle while it waits for data), and so its
 * own session while the other is busy.
 *
 * Every call makes one attempt; failures libcurl reports as transient are flagged retryable,
 * and the caller repeats the whole operation (archive.c), so attempts never multiply.
 */
#ifndef WS_SFTP_INT_H
#define WS_SFTP_INT_H

#include <stddef.h>
#include <stdint.h>

#include "storage/curl_api.h"
#include "storage/known_hosts.h"
#include "storage/storage.h"

/*
 * The outcome of one transfer on the shared multi handle. Every easy handle points to its own
 * (CURLOPT_PRIVATE), and ws_sftp_drive() files each finished transfer's result there, whichever
 * request it was driving: a paused upload can fail while a stat is being driven, and that
 * failure must not be lost (the upload would then look complete).
 */
struct xfer {
    int done, result;
};

#define SFTP_SOCKETS 8 /* connections one storage can have open: one per open put, plus one */

struct sftp_storage {
    struct ws_storage base;
    const struct ws_curl *cu;
    CURLM *multi;
    CURL *easy; /* for every request but uploads */
    struct xfer xfer;
    char *origin; /* sftp://user@host:port */
    char *root;   /* /abs/path, no trailing slash */
    char *host;   /* as in the URL, IPv6 without brackets */
    int port;
    char *identity, *known_hosts, *pin;
    char *kh_text; /* the known_hosts file, read at open */
    size_t kh_len;
    int kh_fd;           /* memfd with the host's plain entries, for libcurl's key type choice */
    char kh_proc[40];    /* /proc/self/fd/<kh_fd> */
    const char *kh_curl; /* what libcurl reads: kh_proc, or known_hosts without a memfd */
    char *passphrase;    /* of an encrypted identity file, or NULL; wiped on close */
    long timeout;
    int connected;           /* the last request succeeded, so the next one reuses its session */
    int socks[SFTP_SOCKETS]; /* the connections' sockets (-1: free slot) */
    /* set by the host key callback */
    int key_rejected;             /* 0, or the ws_kh_verdict that refused the key (-1 unknown) */
    struct ws_kh_result rejected; /* the line that decided, @cert-authority seen */
    char presented[128];          /* "SHA256:..." of the key the server presented */
};

/* ---- sftp_session.c ---- */

/* The URL of key (NULL: the root directory); -1 if it does not fit. */
int ws_sftp_url_of(struct sftp_storage *s, const char *key, char *out, size_t outsz);
/* The server's path of key. */
void ws_sftp_path_of(struct sftp_storage *s, const char *key, char *out, size_t outsz);
/* Resets easy handle e to a request for url whose result goes to x, with the options every
 * request needs (authentication, host key check, deadlines, modes of what it creates). */
void ws_sftp_base_opts(struct sftp_storage *s, CURL *e, struct xfer *x, const char *url);
/* One round of the multi handle's work without waiting (what is ready is sent and read; finished
 * transfers get their results); *running as curl_multi_perform sets it; -1 on a multi error. */
int ws_sftp_step(struct sftp_storage *s, int *running);
/* Drives the multi handle until the transfer of x is done (its CURLcode), or until *stop_when
 * is true with it paused (-1; uploads). */
int ws_sftp_drive(struct sftp_storage *s, struct xfer *x, const int *stop_when);
/* Whether libcurl's result cc says the connection died. */
int ws_sftp_dropped_connection(int cc);
/* Whether the session of e (one of s's handles) still stands: its socket open, nothing to read. */
int ws_sftp_session_alive(struct sftp_storage *s, CURL *e);
/* Runs the request prepared on s->easy; repeats it once on a fresh session when a reused one
 * turns out dead before *delivered (NULL: 0) bytes were delivered. Returns the CURLcode. */
int ws_sftp_run_delivering(struct sftp_storage *s, const uint64_t *delivered);
int ws_sftp_run(struct sftp_storage *s);
/* The error for a failed transfer (cc) of what on key: NOT_FOUND only for a missing remote file,
 * the host key's refusal, a refused login; else WS_ERR_STORAGE, retryable when transient. */
int ws_sftp_curl_error(struct sftp_storage *s, int cc, const char *what, const char *key,
                       struct ws_error *err);
/* Runs the SFTP command cmd ("rename \"a\" \"b\"", "*rm \"p\"": a leading '*' makes a failure
 * no error) on the session; its CURLcode, also in *cc_out. */
int ws_sftp_quote(struct sftp_storage *s, const char *cmd, int *cc_out);

/* ---- sftp_hostkey.c ---- */

/* libcurl's host key callback (CURLOPT_SSH_HOSTKEYFUNCTION, data: the storage). */
int ws_sftp_hostkey_cb(void *arg, int keytype, const char *key, size_t keylen);
/* The refusal of the key the callback turned down, naming the key, the file and what to do. */
int ws_sftp_host_key_error(struct sftp_storage *s, struct ws_error *err);
/* WS_ERR_CONFIG when the loaded libcurl (vi) cannot have the host key checked our way. */
int ws_sftp_host_key_options(struct sftp_storage *s, const curl_version_info_data *vi,
                             struct ws_error *err);
/* Reads s->known_hosts, and the entries libcurl may see into a memfd (s->kh_curl). */
int ws_sftp_known_hosts_load(struct sftp_storage *s, struct ws_error *err);

/* ---- sftp.c, sftp_put.c ---- */

int ws_sftp_stat(struct ws_storage *st, const char *key, struct ws_storage_stat *out,
                 struct ws_error *err);
int ws_sftp_open_put(struct ws_storage *st, const char *key, int flags, struct ws_sink **out,
                     struct ws_error *err);

#endif
