/*
 * storage/sftp.c - a repository on an SFTP server, over libcurl's sftp:// (libssh2).
 *
 * One curl multi handle and one easy handle live as long as the storage: libcurl keeps the SSH
 * session in the multi handle's connection cache, so every operation of a process shares one
 * session, and a session the server dropped is re-established by libcurl on the next request.
 *
 * Host keys are verified strictly: against sftp_known_hosts or the sftp_host_key_sha256 pin. The
 * known_hosts file is read here and matched as OpenSSH matches it (known_hosts.h: "[host]:port"
 * for ports other than 22, hashed names, @revoked keys refused, @cert-authority keys never taken
 * for host keys); libcurl and libssh2 decide nothing (libssh2 also accepts an entry for plain
 * "host" on any port, and ignores @revoked). An unknown, changed or revoked key is refused with
 * the presented SHA-256 fingerprint. There is no trust on first use. A libcurl that does not
 * take the options that make this so (before 7.84, or built on libssh) is refused at open.
 *
 * The identity file must not be accessible by group or others when it is ours, nor readable by
 * others whoever owns it (OpenSSH refuses the first; the second exposes the key to everyone).
 *
 * Publication: upload to "<dir>/.walsafe-tmp.<name>.<pid>.<random>" (0600, parents 0700), then
 * rename. SFTP's rename refuses an existing target, which is exactly the no-replace rule; a
 * killed upload leaves only the temp name, which readers never see. Durability is the server's:
 * SFTP version 3 as libcurl speaks it has no fsync, so the server's file system decides when the
 * renamed file is on disk (documented in README).
 *
 * Every call makes one attempt; failures libcurl reports as transient are flagged retryable and
 * the caller repeats the whole operation (archive.c), so attempts never multiply.
 *
 * Uploads stream: the put sink feeds libcurl's read callback through pause/unpause, so an
 * object is never held whole in memory. An open put sink has its own easy handle, because other
 * operations (and other puts) may run while it waits for data: those get a second session
 * from libcurl while the first is busy with the upload.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/fs.h"
#include "storage/curl_api.h"
#include "storage/known_hosts.h"
#include "storage/params.h"

/* libcurl, loaded by ws_storage_sftp_open() before any other function here runs. */
static const struct ws_curl *cu;

/*
 * The outcome of one transfer on the shared multi handle. Every easy handle points to its own
 * (CURLOPT_PRIVATE), and drive() files each finished transfer's result there, whichever request
 * it was driving: a paused upload can fail while a stat is being driven, and that failure must
 * not be lost (the upload would then look complete).
 */
struct xfer {
    int done, result;
};

#define SFTP_SOCKETS 8 /* connections one storage can have open: one per open put, plus one */

struct sftp_storage {
    struct ws_storage base;
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
    int socks[SFTP_SOCKETS]; /* the connections' sockets (-1: free slot), for ack_now() */
    /* set by the host key callback */
    int key_rejected;             /* 0, or the ws_kh_verdict that refused the key */
    struct ws_kh_result rejected; /* the line that decided, @cert-authority seen */
    char presented[128];
};

/* ---- helpers ---- */

static int url_of(struct sftp_storage *s, const char *key, char *out, size_t outsz)
{
    int n = snprintf(out, outsz, "%s%s/%s", s->origin, s->root, key ? key : "");
    return n > 0 && (size_t)n < outsz ? 0 : -1;
}

static void path_of(struct sftp_storage *s, const char *key, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s/%s", s->root, key);
}

static void b64(const unsigned char *in, int len, char *out)
{
    int n = EVP_EncodeBlock((unsigned char *)out, in, len);
    while (n > 0 && out[n - 1] == '=') /* OpenSSH prints fingerprints unpadded */
        out[--n] = '\0';
}

/* libcurl's host key check: the key the server presented against the known_hosts file, as ssh
 * would match it (known_hosts.h). Anything but a match is refused. */
static int hostkey_cb(void *arg, int keytype, const char *key, size_t keylen)
{
    struct sftp_storage *s = arg;
    unsigned char md[32];
    unsigned int mdlen = 0;
    struct ws_kh_result res = {WS_KH_UNKNOWN, 0, 0};

    (void)keytype;
    s->presented[0] = '\0';
    if (key && keylen > 0 && EVP_Digest(key, keylen, md, &mdlen, EVP_sha256(), NULL) == 1) {
        char fp[64];
        b64(md, (int)mdlen, fp);
        snprintf(s->presented, sizeof(s->presented), "SHA256:%s", fp);
    }
    ws_known_hosts_check(s->kh_text, s->kh_len, s->host, s->port, (const uint8_t *)key, keylen,
                         &res);
    if (res.verdict == WS_KH_MATCH)
        return CURLKHMATCH_OK;
    s->key_rejected = res.verdict == WS_KH_UNKNOWN ? -1 : (int)res.verdict;
    s->rejected = res;
    return CURLKHMATCH_MISMATCH;
}

/*
 * Delayed acknowledgements. After the user is authenticated, OpenSSH's sshd sends a message the
 * client does not answer (hostkeys-00@openssh.com), then the confirmation of the channel the client
 * asked for. The server's socket has Nagle's algorithm on (sshd sets TCP_NODELAY only for
 * interactive sessions), so the confirmation waits for the first message's ACK, and Linux delays
 * that ACK by at least 40 ms when it has nothing to send. Every new SSH session paid it: measured
 * with the curl CLI on loopback, a 1.3 MB upload took 87 ms, 44 ms with the ACKs sent at once.
 * So after every round of libcurl's work the pending ACKs of this storage's connections go out
 * (TCP_QUICKACK sends a pending ACK at once; it is not sticky, hence every round). libcurl tells
 * us its sockets through the open and close callbacks below.
 */
static int sock_opened(void *clientp, curl_socket_t fd, curlsocktype purpose)
{
    struct sftp_storage *s = clientp;

    (void)purpose;
    for (int i = 0; i < SFTP_SOCKETS; i++)
        if (s->socks[i] < 0) {
            s->socks[i] = fd;
            break;
        }
    return CURL_SOCKOPT_OK;
}

static int sock_close(void *clientp, curl_socket_t fd)
{
    struct sftp_storage *s = clientp;

    for (int i = 0; i < SFTP_SOCKETS; i++)
        if (s->socks[i] == fd)
            s->socks[i] = -1;
    return close(fd);
}

static void ack_now(struct sftp_storage *s)
{
    int one = 1;

    for (int i = 0; i < SFTP_SOCKETS; i++)
        if (s->socks[i] >= 0)
            (void)setsockopt(s->socks[i], IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
}

/* Sets the options every request needs, on easy handle e whose result goes to x. */
static void base_opts(struct sftp_storage *s, CURL *e, struct xfer *x, const char *url)
{
    cu->easy_reset(e);
    x->done = 0;
    cu->easy_setopt(e, CURLOPT_PRIVATE, (void *)x);
    cu->easy_setopt(e, CURLOPT_URL, url);
    cu->easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    cu->easy_setopt(e, CURLOPT_PROTOCOLS_STR, "sftp");
    cu->easy_setopt(e, CURLOPT_SSH_AUTH_TYPES, (long)CURLSSH_AUTH_PUBLICKEY);
    cu->easy_setopt(e, CURLOPT_SSH_PRIVATE_KEYFILE, s->identity);
    if (s->passphrase)
        cu->easy_setopt(e, CURLOPT_KEYPASSWD, s->passphrase);
    if (s->pin) {
        cu->easy_setopt(e, CURLOPT_SSH_HOST_PUBLIC_KEY_SHA256, s->pin);
    } else {
        /* Only for libcurl's choice of the host key type to ask for; hostkey_cb decides. */
        cu->easy_setopt(e, CURLOPT_SSH_KNOWNHOSTS, s->kh_curl);
        cu->easy_setopt(e, CURLOPT_SSH_HOSTKEYFUNCTION, hostkey_cb);
        cu->easy_setopt(e, CURLOPT_SSH_HOSTKEYDATA, s);
    }
    cu->easy_setopt(e, CURLOPT_CONNECTTIMEOUT, s->timeout);
    cu->easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    cu->easy_setopt(e, CURLOPT_LOW_SPEED_TIME, s->timeout);
    cu->easy_setopt(e, CURLOPT_NEW_FILE_PERMS, 0600L);
    cu->easy_setopt(e, CURLOPT_NEW_DIRECTORY_PERMS, 0700L);
    cu->easy_setopt(e, CURLOPT_SOCKOPTFUNCTION, sock_opened);
    cu->easy_setopt(e, CURLOPT_SOCKOPTDATA, s);
    cu->easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, sock_close);
    cu->easy_setopt(e, CURLOPT_CLOSESOCKETDATA, s);
}

/* Runs the prepared request whose result goes to x to completion (or until *stop_when becomes
 * true with the transfer paused, for uploads). Returns the CURLcode of the finished transfer,
 * or -1 when stopped. */
static int drive(struct sftp_storage *s, struct xfer *x, const int *stop_when)
{
    for (;;) {
        int running = 0, left = 0;
        CURLMsg *msg;
        CURLMcode mc = cu->multi_perform(s->multi, &running);
        ack_now(s);
        if (mc != CURLM_OK)
            return CURLE_FAILED_INIT;
        while ((msg = cu->multi_info_read(s->multi, &left)) != NULL) {
            char *owner = NULL;
            if (msg->msg != CURLMSG_DONE)
                continue;
            cu->easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &owner);
            if (owner) {
                ((struct xfer *)owner)->done = 1;
                ((struct xfer *)owner)->result = (int)msg->data.result;
            }
        }
        if (x->done)
            return x->result;
        if (stop_when && *stop_when)
            return -1;
        if (!running)
            return CURLE_FAILED_INIT; /* not on the multi handle: never report that as success */
        cu->multi_poll(s->multi, NULL, 0, 100, NULL);
    }
}

static int dropped_connection(int cc)
{
    return cc == CURLE_SSH || cc == CURLE_SEND_ERROR || cc == CURLE_RECV_ERROR ||
           cc == CURLE_GOT_NOTHING;
}

/*
 * libcurl (7.88, libssh2 backend) turns ANY failure to open a file for reading into the SFTP
 * status of the session's last failed request: on a session that once answered "no such file",
 * a connection that dies while a stat or get opens its file reports "no such file" again. Such a
 * "not found" would end a recovery early, so it is believed only while the session's socket is
 * still open with nothing to read; otherwise it counts as a dropped connection (a live session
 * with a keepalive or rekey message waiting just costs a repeat on a fresh session).
 */
static int session_alive(CURL *e)
{
    curl_socket_t fd = CURL_SOCKET_BAD;
    char c;

    if (cu->easy_getinfo(e, CURLINFO_ACTIVESOCKET, &fd) != CURLE_OK || fd == CURL_SOCKET_BAD)
        return 0;
    return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) < 0 &&
           (errno == EAGAIN || errno == EWOULDBLOCK);
}

/*
 * Runs one request. A server may drop a session that sat idle; libcurl finds out only when it
 * reuses it. So a request on a reused session that fails at the connection level, before any
 * byte was delivered (*delivered == 0), is repeated once on a fresh session.
 */
static int run_delivering(struct sftp_storage *s, const uint64_t *delivered)
{
    int rc;

    for (int attempt = 0;; attempt++) {
        int reused, alive;
        s->xfer.done = 0;
        cu->multi_add_handle(s->multi, s->easy);
        rc = drive(s, &s->xfer, NULL);
        alive = rc == CURLE_OK || session_alive(s->easy);
        if (rc == CURLE_REMOTE_FILE_NOT_FOUND && !alive)
            rc = CURLE_RECV_ERROR;
        cu->multi_remove_handle(s->multi, s->easy);
        reused = s->connected;
        s->connected = alive; /* a failed request on a live session leaves it usable */
        if (rc == CURLE_OK)
            return rc;
        if (attempt > 0 || !reused || !dropped_connection(rc) || (delivered && *delivered > 0))
            return rc;
        cu->easy_setopt(s->easy, CURLOPT_FRESH_CONNECT, 1L);
    }
}

static int run(struct sftp_storage *s)
{
    return run_delivering(s, NULL);
}

static int retryable(int cc)
{
    return cc == CURLE_COULDNT_CONNECT || cc == CURLE_OPERATION_TIMEDOUT || cc == CURLE_SSH ||
           cc == CURLE_SEND_ERROR || cc == CURLE_RECV_ERROR || cc == CURLE_PARTIAL_FILE ||
           cc == CURLE_GOT_NOTHING || cc == CURLE_COULDNT_RESOLVE_HOST || cc == CURLE_AGAIN;
}

/* The refusal of the server's host key, naming the key, the file and what to do. */
static int host_key_error(struct sftp_storage *s, struct ws_error *err)
{
    const char *fp = s->presented[0] ? s->presented : "(unknown fingerprint)";
    char entry[600], scan[640];

    if (s->port == 22) {
        snprintf(entry, sizeof(entry), "%s", s->host);
        snprintf(scan, sizeof(scan), "ssh-keyscan %s", s->host);
    } else {
        snprintf(entry, sizeof(entry), "[%s]:%d", s->host, s->port);
        snprintf(scan, sizeof(scan), "ssh-keyscan -p %d %s", s->port, s->host);
    }
    if (s->key_rejected == WS_KH_REVOKED)
        return ws_error_set(err, WS_ERR_STORAGE,
                            "SFTP server of repository \"%s\" presented host key %s, which %s "
                            "marks @revoked (line %u); refusing it",
                            s->base.location, fp, s->known_hosts, s->rejected.line);
    if (s->key_rejected == WS_KH_CHANGED)
        return ws_error_set(err, WS_ERR_STORAGE,
                            "SFTP server of repository \"%s\" presented a CHANGED host key %s "
                            "(%s line %u holds another key of its type for %s); refusing it. If "
                            "it is right, replace that entry (e.g. with %s) or set "
                            "sftp_host_key_sha256",
                            s->base.location, fp, s->known_hosts, s->rejected.line, entry, scan);
    return ws_error_set(err, WS_ERR_STORAGE,
                        "SFTP server of repository \"%s\" presented an unknown host key %s; "
                        "refusing it. If it is right, add the server's key to %s as \"%s\" "
                        "(e.g. with %s) or set sftp_host_key_sha256%s",
                        s->base.location, fp, s->known_hosts, entry, scan,
                        s->rejected.cert_authority
                            ? " (@cert-authority lines match this host, but host certificates "
                              "are not supported)"
                            : "");
}

/* Maps a failed transfer to an error; NOT_FOUND only for a missing remote file. */
static int curl_error(struct sftp_storage *s, int cc, const char *what, const char *key,
                      struct ws_error *err)
{
    if (cc == CURLE_REMOTE_FILE_NOT_FOUND)
        return ws_error_set(err, WS_ERR_NOT_FOUND, "object \"%s\" not found in repository \"%s\"",
                            key, s->base.location);
    if (s->key_rejected)
        return host_key_error(s, err);
    if (cc == CURLE_PEER_FAILED_VERIFICATION && s->pin)
        return ws_error_set(err, WS_ERR_STORAGE,
                            "SFTP server of repository \"%s\" presented a host key that does not "
                            "match sftp_host_key_sha256",
                            s->base.location);
    if (cc == CURLE_LOGIN_DENIED)
        return ws_error_set(err, WS_ERR_STORAGE,
                            "SFTP login to repository \"%s\" was refused with identity file "
                            "\"%s\" (an encrypted key needs WALSAFE_SFTP_PASSPHRASE_FILE or "
                            "WALSAFE_SFTP_PASSPHRASE)",
                            s->base.location, s->identity);
    ws_error_set(err, WS_ERR_STORAGE, "could not %s \"%s\" in repository \"%s\": %s", what, key,
                 s->base.location, cu->easy_strerror((CURLcode)cc));
    err->retryable = retryable(cc);
    return err->code;
}

/* ---- stat ---- */

static size_t discard(char *ptr, size_t size, size_t n, void *arg)
{
    (void)ptr, (void)arg;
    return size * n;
}

/*
 * SFTP opens and stats a directory like a file, and libcurl does not say which it found; but a
 * key that names a directory (a prefix of other keys) is an absent object, as in an object
 * store. Listing "key/" tells: it fails with "no such file" for a file. Returns 1 for a
 * directory, 0 for anything else (a failed probe included: the caller then reports its own
 * error). Only asked after a request succeeded or failed in a way a directory explains.
 */
static int is_directory(struct sftp_storage *s, const char *key)
{
    char url[4096];
    int n = snprintf(url, sizeof(url), "%s%s/%s/", s->origin, s->root, key);

    if (n <= 0 || (size_t)n >= sizeof(url))
        return 0;
    s->key_rejected = 0;
    base_opts(s, s->easy, &s->xfer, url);
    cu->easy_setopt(s->easy, CURLOPT_DIRLISTONLY, 1L);
    cu->easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, discard);
    return run(s) == CURLE_OK;
}

static int sf_stat(struct ws_storage *st, const char *key, struct ws_storage_stat *out,
                   struct ws_error *err)
{
    struct sftp_storage *s = (struct sftp_storage *)st;
    char url[4096];
    curl_off_t len = -1;
    long ftime = -1;
    int cc;

    if (url_of(s, key, url, sizeof(url)) != 0)
        return ws_error_set(err, WS_ERR_STORAGE, "key too long: \"%s\"", key);
    s->key_rejected = 0;
    base_opts(s, s->easy, &s->xfer, url);
    cu->easy_setopt(s->easy, CURLOPT_NOBODY, 1L);
    cu->easy_setopt(s->easy, CURLOPT_FILETIME, 1L);
    cc = run(s);
    if (cc != CURLE_OK)
        return curl_error(s, cc, "stat", key, err);
    cu->easy_getinfo(s->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &len);
    cu->easy_getinfo(s->easy, CURLINFO_FILETIME, &ftime);
    if (is_directory(s, key))
        return curl_error(s, CURLE_REMOTE_FILE_NOT_FOUND, "stat", key, err);
    out->size = len >= 0 ? (uint64_t)len : 0;
    out->mtime = ftime;
    return 0;
}

/* ---- get ---- */

struct get_ctx {
    struct ws_sink *dest;
    struct ws_error *err;
    uint64_t got;
    int failed;
};

static size_t get_write(char *ptr, size_t size, size_t n, void *arg)
{
    struct get_ctx *g = arg;
    if (ws_sink_write(g->dest, ptr, size * n, g->err) != 0) {
        g->failed = 1;
        return 0;
    }
    g->got += size * n;
    return size * n;
}

static int sf_get(struct ws_storage *st, const char *key, uint64_t offset, uint64_t length,
                  struct ws_sink *dest, struct ws_error *err)
{
    struct sftp_storage *s = (struct sftp_storage *)st;
    char url[4096], range[64];
    struct get_ctx g = {dest, err, 0, 0};
    curl_off_t announced = -1;
    int cc;

    if (url_of(s, key, url, sizeof(url)) != 0)
        return ws_error_set(err, WS_ERR_STORAGE, "key too long: \"%s\"", key);
    s->key_rejected = 0;
    base_opts(s, s->easy, &s->xfer, url);
    if (offset || length != WS_STORAGE_TO_END) {
        if (length == 0)
            return 0;
        if (length == WS_STORAGE_TO_END)
            snprintf(range, sizeof(range), "%llu-", (unsigned long long)offset);
        else
            snprintf(range, sizeof(range), "%llu-%llu", (unsigned long long)offset,
                     (unsigned long long)(offset + length - 1));
        cu->easy_setopt(s->easy, CURLOPT_RANGE, range);
    }
    cu->easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, get_write);
    cu->easy_setopt(s->easy, CURLOPT_WRITEDATA, &g);
    cc = run_delivering(s, &g.got);
    if (g.failed)
        return err->code; /* the sink's own error */
    /* a directory opens like a file and fails at the first read */
    if (cc == CURLE_SSH && g.got == 0 && is_directory(s, key))
        cc = CURLE_REMOTE_FILE_NOT_FOUND;
    if (cc != CURLE_OK)
        return curl_error(s, cc, "read", key, err);
    /* A transfer cut by a clean close can look successful: compare with what was announced
     * (for a range, libcurl announces the bytes from offset to the end). */
    cu->easy_getinfo(s->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &announced);
    if ((length != WS_STORAGE_TO_END && g.got != length) ||
        (length == WS_STORAGE_TO_END && announced >= 0 && g.got != (uint64_t)announced)) {
        ws_error_set(err, WS_ERR_STORAGE, "short read of \"%s\" from repository \"%s\": %llu bytes",
                     key, s->base.location, (unsigned long long)g.got);
        err->retryable = 1;
        return err->code;
    }
    return 0;
}

/* ---- quote commands (rename, rm) ---- */

static int quote(struct sftp_storage *s, const char *dir_key, const char *cmd, int *cc_out)
{
    char url[4096];
    struct curl_slist *q = cu->slist_append(NULL, cmd);
    int cc;

    if (!q)
        return CURLE_OUT_OF_MEMORY;
    url_of(s, dir_key, url, sizeof(url));
    s->key_rejected = 0;
    base_opts(s, s->easy, &s->xfer, url);
    cu->easy_setopt(s->easy, CURLOPT_NOBODY, 1L);
    cu->easy_setopt(s->easy, CURLOPT_QUOTE, q);
    cu->easy_setopt(s->easy, CURLOPT_DIRLISTONLY, 1L);
    cc = run(s);
    cu->easy_setopt(s->easy, CURLOPT_QUOTE, NULL);
    cu->slist_free_all(q);
    *cc_out = cc;
    return cc;
}

/* ---- put ---- */

struct sftp_put {
    struct ws_sink base;
    struct sftp_storage *s;
    CURL *easy; /* the upload's own: it stays on the multi handle while paused */
    struct xfer xfer;
    char *key, *tmpkey;
    int replace, started, done, result;
    int reused; /* the upload started on a cached session */
    const uint8_t *pending;
    size_t pending_len;
    int finishing, paused, need_data;
    uint64_t sent;
};

static size_t put_read(char *buf, size_t size, size_t n, void *arg)
{
    struct sftp_put *p = arg;
    size_t room = size * n, take = p->pending_len < room ? p->pending_len : room;

    if (take > 0) {
        memcpy(buf, p->pending, take);
        p->pending += take;
        p->pending_len -= take;
        p->sent += take;
        return take;
    }
    if (p->finishing)
        return 0; /* end of upload */
    p->need_data = 1;
    p->paused = 1;
    return CURL_READFUNC_PAUSE;
}

/* Starts the upload; fresh: on a new session, not a cached one. */
static int put_start(struct sftp_put *p, int fresh, struct ws_error *err)
{
    struct sftp_storage *s = p->s;
    char url[4096];

    if (url_of(s, p->tmpkey, url, sizeof(url)) != 0)
        return ws_error_set(err, WS_ERR_STORAGE, "key too long: \"%s\"", p->key);
    s->key_rejected = 0;
    base_opts(s, p->easy, &p->xfer, url);
    if (fresh)
        cu->easy_setopt(p->easy, CURLOPT_FRESH_CONNECT, 1L);
    p->reused = !fresh && s->connected;
    cu->easy_setopt(p->easy, CURLOPT_UPLOAD, 1L);
    cu->easy_setopt(p->easy, CURLOPT_READFUNCTION, put_read);
    cu->easy_setopt(p->easy, CURLOPT_READDATA, p);
    cu->easy_setopt(p->easy, CURLOPT_FTP_CREATE_MISSING_DIRS, (long)CURLFTP_CREATE_DIR_RETRY);
    cu->multi_add_handle(s->multi, p->easy);
    p->started = 1;
    return 0;
}

/* Lets curl consume p->pending (or reach the end when finishing). */
static int put_pump(struct sftp_put *p, struct ws_error *err)
{
    struct sftp_storage *s = p->s;
    int cc;

    p->need_data = 0;
    if (p->paused) {
        p->paused = 0;
        cu->easy_pause(p->easy, CURLPAUSE_CONT);
    }
    cc = drive(s, &p->xfer, &p->need_data);
    if (cc == -1)
        return 0; /* consumed everything, paused for more */
    s->connected = cc == CURLE_OK || session_alive(p->easy);
    cu->multi_remove_handle(s->multi, p->easy);
    p->started = 0;
    /* run_delivering()'s rule for uploads: a reused session that died before the upload took a
     * byte of ours (all of it is still pending) is given up for a fresh one, once. */
    if (cc != CURLE_OK && p->reused && p->sent == 0 && dropped_connection(cc)) {
        if (put_start(p, 1, err) != 0)
            return err->code;
        return put_pump(p, err);
    }
    p->done = 1;
    p->result = cc;
    if (cc != CURLE_OK)
        return curl_error(s, cc, "write", p->key, err);
    if (!p->finishing)
        return ws_error_set(err, WS_ERR_STORAGE, "upload of \"%s\" ended early", p->key);
    return 0;
}

static int sp_write(struct ws_sink *sink, const void *buf, size_t len, struct ws_error *err)
{
    struct sftp_put *p = (struct sftp_put *)sink;

    if (len == 0)
        return 0;
    if (p->done)
        return ws_error_set(err, WS_ERR_STORAGE, "upload of \"%s\" already ended", p->key);
    if (!p->started && put_start(p, 0, err) != 0)
        return err->code;
    p->pending = buf;
    p->pending_len = len;
    return put_pump(p, err);
}

static int sp_finish(struct ws_sink *sink, struct ws_error *err)
{
    struct sftp_put *p = (struct sftp_put *)sink;
    struct sftp_storage *s = p->s;
    char cmd[8400], from[4096], to[4096];
    struct ws_storage_stat st;
    int cc;

    if (!p->started && !p->done && put_start(p, 0, err) != 0)
        return err->code;
    p->finishing = 1;
    p->pending_len = 0;
    if (!p->done && put_pump(p, err) != 0)
        return err->code;
    path_of(s, p->tmpkey, from, sizeof(from));
    path_of(s, p->key, to, sizeof(to));
    if (p->replace) {
        snprintf(cmd, sizeof(cmd), "*rm \"%s\"", to);
        quote(s, NULL, cmd, &cc);
    }
    snprintf(cmd, sizeof(cmd), "rename \"%s\" \"%s\"", from, to);
    if (quote(s, NULL, cmd, &cc) == CURLE_OK)
        return 0;
    /* SFTP's rename does not replace: find out whether that is why it failed. */
    if (cc == CURLE_QUOTE_ERROR && sf_stat(&s->base, p->key, &st, err) == 0)
        return ws_error_set(err, WS_ERR_EXISTS, "object \"%s\" already exists in repository \"%s\"",
                            p->key, s->base.location);
    return curl_error(s, cc, "publish", p->key, err);
}

static void sp_abort(struct ws_sink *sink)
{
    struct sftp_put *p = (struct sftp_put *)sink;
    struct sftp_storage *s = p->s;
    char cmd[4200], path[4096];
    int cc;

    if (p->started) {
        cu->multi_remove_handle(s->multi, p->easy);
        p->started = 0;
    }
    /* A temp file that cannot be removed now is harmless: never listed, cleaned by age. */
    path_of(s, p->tmpkey, path, sizeof(path));
    snprintf(cmd, sizeof(cmd), "*rm \"%s\"", path);
    quote(s, NULL, cmd, &cc);
}

static void sp_destroy(struct ws_sink *sink)
{
    struct sftp_put *p = (struct sftp_put *)sink;
    cu->easy_cleanup(p->easy);
    free(p->key);
    free(p->tmpkey);
    free(p);
}

static const struct ws_sink_ops sftp_put_ops = {"sftp-put", sp_write, sp_finish, sp_abort,
                                                sp_destroy};

static int sf_open_put(struct ws_storage *st, const char *key, int flags, struct ws_sink **out,
                       struct ws_error *err)
{
    struct sftp_storage *s = (struct sftp_storage *)st;
    struct sftp_put *p = calloc(1, sizeof(*p));
    const char *slash = strrchr(key, '/');
    unsigned char rnd[6];
    char tmp[2048];

    if (!p || !(p->key = strdup(key)) || !(p->easy = cu->easy_init()))
        goto nomem;
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        goto nomem;
    snprintf(tmp, sizeof(tmp), "%.*s.walsafe-tmp.%s.%ld.%02x%02x%02x%02x%02x%02x",
             slash ? (int)(slash - key + 1) : 0, key, slash ? slash + 1 : key, (long)getpid(),
             rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
    if (!(p->tmpkey = strdup(tmp)))
        goto nomem;
    p->base.ops = &sftp_put_ops;
    p->s = s;
    p->replace = (flags & WS_PUT_REPLACE) != 0;
    *out = &p->base;
    return 0;
nomem:
    if (p) {
        if (p->easy)
            cu->easy_cleanup(p->easy);
        free(p->key);
        free(p);
    }
    return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
}

/* ---- list ---- */

static size_t list_write(char *ptr, size_t size, size_t n, void *arg)
{
    struct ws_error e = {0};
    return ws_sink_write(arg, ptr, size * n, &e) == 0 ? size * n : 0;
}

static int list_dir(struct sftp_storage *s, const char *rel, const char *prefix,
                    ws_storage_list_cb cb, void *arg, struct ws_error *err)
{
    char url[4096];
    struct ws_sink *b = NULL;
    char *line, *save = NULL;
    int cc, rc = 0;

    snprintf(url, sizeof(url), "%s%s/%s%s", s->origin, s->root, rel, *rel ? "/" : "");
    if ((rc = ws_buffer_sink_new(64u << 20, &b, err)) != 0)
        return rc;
    s->key_rejected = 0;
    base_opts(s, s->easy, &s->xfer, url);
    cu->easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, list_write);
    cu->easy_setopt(s->easy, CURLOPT_WRITEDATA, b);
    cc = run(s);
    if (cc == CURLE_REMOTE_FILE_NOT_FOUND)
        goto out; /* no such directory: nothing under this prefix */
    if (cc != CURLE_OK) {
        rc = curl_error(s, cc, "list", *rel ? rel : "/", err);
        goto out;
    }
    /* Lines look like "ls -l": perms links owner group size month day time|year name. */
    for (line = strtok_r(ws_buffer_sink_text(b), "\r\n", &save); line && rc == 0;
         line = strtok_r(NULL, "\r\n", &save)) {
        char perms[16], name[1024], child[2048];
        unsigned long long size;
        int consumed = 0;
        size_t plen = strlen(prefix), clen;
        if (sscanf(line, "%15s %*s %*s %*s %llu %*s %*s %*s %n", perms, &size, &consumed) < 2 ||
            consumed == 0)
            continue;
        snprintf(name, sizeof(name), "%s", line + consumed);
        /* dot names are keys too (".hidden"); only ".", ".." and temp files are not */
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
            strncmp(name, ".walsafe-tmp", 12) == 0 || strchr(name, '/'))
            continue;
        snprintf(child, sizeof(child), "%s%s%s", rel, *rel ? "/" : "", name);
        clen = strlen(child);
        if (strncmp(child, prefix, clen < plen ? clen : plen) != 0)
            continue;
        if (perms[0] == 'd') {
            rc = list_dir(s, child, prefix, cb, arg, err);
        } else if (perms[0] == '-' && strncmp(child, prefix, plen) == 0) {
            struct ws_storage_stat st = {size, 0};
            rc = cb(arg, child, &st, err);
        }
    }
out:
    ws_sink_free(b);
    return rc;
}

static int sf_list(struct ws_storage *st, const char *prefix, ws_storage_list_cb cb, void *arg,
                   struct ws_error *err)
{
    char start[2048];
    const char *slash = strrchr(prefix, '/');
    size_t n = slash ? (size_t)(slash - prefix) : 0;

    snprintf(start, sizeof(start), "%.*s", (int)n, prefix);
    return list_dir((struct sftp_storage *)st, start, prefix, cb, arg, err);
}

static int sf_remove(struct ws_storage *st, const char *key, struct ws_error *err)
{
    struct sftp_storage *s = (struct sftp_storage *)st;
    struct ws_storage_stat stt;
    char cmd[4200], path[4096];
    int cc, rc;

    if ((rc = sf_stat(st, key, &stt, err)) != 0)
        return rc;
    path_of(s, key, path, sizeof(path));
    snprintf(cmd, sizeof(cmd), "rm \"%s\"", path);
    if (quote(s, NULL, cmd, &cc) != CURLE_OK)
        return curl_error(s, cc, "remove", key, err);
    return 0;
}

/* An emptied directory (wal-prune): "*" makes a failing rmdir (not empty, absent) no error. */
static int sf_remove_dir(struct ws_storage *st, const char *prefix, struct ws_error *err)
{
    struct sftp_storage *s = (struct sftp_storage *)st;
    char cmd[4200], path[4096], dir[2048];
    int cc;

    snprintf(dir, sizeof(dir), "%.*s", (int)strlen(prefix) - 1, prefix);
    path_of(s, dir, path, sizeof(path));
    snprintf(cmd, sizeof(cmd), "*rmdir \"%s\"", path);
    if (quote(s, NULL, cmd, &cc) != CURLE_OK)
        return curl_error(s, cc, "remove directory", dir, err);
    return 0;
}

struct temp_clean {
    int64_t before;
    int dry_run;
    size_t *count;
    uint64_t *bytes;
    int depth;
};

/* Temp files of killed uploads (wal-prune): in directory rel those of names that start with
 * `start`, and every one in the subdirectories whose name starts with it. */
static int clean_temp_dir(struct sftp_storage *s, const char *rel, const char *start,
                          struct temp_clean *tc, struct ws_error *err)
{
    char url[4096];
    struct ws_sink *b = NULL;
    char *line, *save = NULL;
    size_t sl = strlen(start);
    int cc, rc = 0;

    snprintf(url, sizeof(url), "%s%s/%s%s", s->origin, s->root, rel, *rel ? "/" : "");
    if ((rc = ws_buffer_sink_new(64u << 20, &b, err)) != 0)
        return rc;
    s->key_rejected = 0;
    base_opts(s, s->easy, &s->xfer, url);
    cu->easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, list_write);
    cu->easy_setopt(s->easy, CURLOPT_WRITEDATA, b);
    cc = run(s);
    if (cc == CURLE_REMOTE_FILE_NOT_FOUND)
        goto out;
    if (cc != CURLE_OK) {
        rc = curl_error(s, cc, "list", *rel ? rel : "/", err);
        goto out;
    }
    for (line = strtok_r(ws_buffer_sink_text(b), "\r\n", &save); line && rc == 0;
         line = strtok_r(NULL, "\r\n", &save)) {
        char perms[16], name[1024], child[2048], cmd[4200], path[4096];
        unsigned long long size;
        struct ws_storage_stat st;
        int consumed = 0;
        if (sscanf(line, "%15s %*s %*s %*s %llu %*s %*s %*s %n", perms, &size, &consumed) < 2 ||
            consumed == 0)
            continue;
        snprintf(name, sizeof(name), "%s", line + consumed);
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || strchr(name, '/'))
            continue;
        snprintf(child, sizeof(child), "%s%s%s", rel, *rel ? "/" : "", name);
        if (perms[0] == 'd') {
            if (tc->depth < 16 && strncmp(name, start, sl) == 0) {
                tc->depth++;
                rc = clean_temp_dir(s, child, "", tc, err);
                tc->depth--;
            }
            continue;
        }
        if (perms[0] != '-' || strncmp(name, ".walsafe-tmp.", 13) != 0 ||
            strncmp(name + 13, start, sl) != 0)
            continue;
        /* the listing's times are coarse: ask for this one */
        if (sf_stat(&s->base, child, &st, err) != 0) {
            if (err->code == WS_ERR_NOT_FOUND)
                rc = 0; /* its upload just finished or was cleaned */
            else
                rc = err->code;
            continue;
        }
        if (st.mtime < 0 || st.mtime >= tc->before)
            continue;
        if (!tc->dry_run) {
            path_of(s, child, path, sizeof(path));
            snprintf(cmd, sizeof(cmd), "*rm \"%s\"", path);
            if (quote(s, NULL, cmd, &cc) != CURLE_OK) {
                rc = curl_error(s, cc, "remove temp file", child, err);
                continue;
            }
        }
        (*tc->count)++;
        *tc->bytes += size;
    }
out:
    ws_sink_free(b);
    return rc;
}

static int sf_clean_temp(struct ws_storage *st, const char *prefix, int64_t before, int dry_run,
                         size_t *count, uint64_t *bytes, struct ws_error *err)
{
    struct temp_clean tc = {before, dry_run, count, bytes, 0};
    char start[2048];
    const char *slash = strrchr(prefix, '/');
    size_t n = slash ? (size_t)(slash - prefix) : 0;

    snprintf(start, sizeof(start), "%.*s", (int)n, prefix);
    return clean_temp_dir((struct sftp_storage *)st, start, slash ? slash + 1 : prefix, &tc, err);
}

static void sf_close(struct ws_storage *st)
{
    struct sftp_storage *s = (struct sftp_storage *)st;

    if (s->passphrase)
        memset(s->passphrase, 0, strlen(s->passphrase));
    free(s->passphrase);
    cu->easy_cleanup(s->easy);
    cu->multi_cleanup(s->multi);
    if (s->kh_fd >= 0)
        close(s->kh_fd);
    free(s->kh_text);
    free(s->host);
    free(s->origin);
    free(s->root);
    free(s->identity);
    free(s->known_hosts);
    free(s->pin);
    free(s->base.location);
    free(s);
}

static const struct ws_storage_ops sftp_ops = {"sftp",  sf_stat,   sf_open_put, sf_get,
                                               sf_list, sf_remove, sf_close};
static const struct ws_storage_housekeeping sftp_hk = {sf_remove_dir, sf_clean_temp, NULL};

/* The identity file: readable, not accessible by group or others if it is ours (as OpenSSH
 * requires), not readable by others whoever owns it. */
static int identity_check(const char *path, struct ws_error *err)
{
    struct stat st;

    if (stat(path, &st) != 0 || access(path, R_OK) != 0)
        return ws_error_setsys(err, WS_ERR_CONFIG, errno,
                               "could not read sftp_identity_file \"%s\"", path);
    if ((st.st_uid == geteuid() && (st.st_mode & 077)) || (st.st_mode & 004))
        return ws_error_set(err, WS_ERR_CONFIG,
                            "permissions %04o for sftp_identity_file \"%s\" are too open: a "
                            "private key must not be accessible by group or others; run chmod "
                            "600 on it",
                            (unsigned)(st.st_mode & 07777), path);
    return 0;
}

/*
 * Whether the libcurl loaded at run time takes the options that make the host key check ours
 * (CURLOPT_SSH_HOSTKEYFUNCTION: libcurl >= 7.84) or the pin's (CURLOPT_SSH_HOST_PUBLIC_KEY_SHA256:
 * >= 7.80), both only when built on libssh2. One that does not answers CURLE_UNKNOWN_OPTION and
 * goes on without: with a pin and no known_hosts it would accept any host key.
 */
static int host_key_options(struct sftp_storage *s, const curl_version_info_data *vi,
                            struct ws_error *err)
{
    CURLcode cc = s->pin ? cu->easy_setopt(s->easy, CURLOPT_SSH_HOST_PUBLIC_KEY_SHA256, s->pin)
                         : cu->easy_setopt(s->easy, CURLOPT_SSH_HOSTKEYFUNCTION, hostkey_cb);

    cu->easy_reset(s->easy);
    if (cc == CURLE_OK)
        return 0;
    return ws_error_set(err, WS_ERR_CONFIG,
                        "repo \"%s\": this libcurl (%s, SSH by %s) cannot check the server's host "
                        "key %s; it needs libcurl 7.84 or later built with libssh2",
                        s->base.location, vi->version,
                        vi->libssh_version ? vi->libssh_version : "nothing",
                        s->pin ? "against sftp_host_key_sha256" : "as walsafe checks it");
}

#define KNOWN_HOSTS_MAX (16u << 20)

/*
 * Reads the known_hosts file, and gives libcurl (which uses it only to choose which of the
 * server's host key types to ask for) the usable plain entries for this host in a memfd: it
 * cannot then be misled by hashed names, markers or lines libssh2 cannot parse.
 */
static int known_hosts_load(struct sftp_storage *s, struct ws_error *err)
{
    struct ws_sink *buf = NULL;
    const uint8_t *data;
    char chunk[65536], *plain = NULL;
    size_t len, need;
    ssize_t r;
    int fd = open(s->known_hosts, O_RDONLY | O_CLOEXEC), rc = 0;

    if (fd < 0)
        return ws_error_setsys(err, WS_ERR_CONFIG, errno,
                               "could not read sftp_known_hosts \"%s\" (needed to verify the "
                               "server's host key; or set sftp_host_key_sha256)",
                               s->known_hosts);
    if ((rc = ws_buffer_sink_new(KNOWN_HOSTS_MAX, &buf, err)) != 0)
        goto out;
    while ((r = read(fd, chunk, sizeof(chunk))) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = ws_error_setsys(err, WS_ERR_CONFIG, errno,
                                 "could not read sftp_known_hosts \"%s\"", s->known_hosts);
            goto out;
        }
        if (ws_sink_write(buf, chunk, (size_t)r, err) != 0) {
            rc = ws_error_set(err, WS_ERR_CONFIG, "sftp_known_hosts \"%s\" is larger than %u MB",
                              s->known_hosts, KNOWN_HOSTS_MAX >> 20);
            goto out;
        }
    }
    data = ws_buffer_sink_data(buf, &len);
    if (!(s->kh_text = malloc(len ? len : 1))) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        goto out;
    }
    memcpy(s->kh_text, data, len);
    s->kh_len = len;
    s->kh_curl = s->known_hosts;
    need = ws_known_hosts_plain(s->kh_text, len, s->host, s->port, NULL, 0);
    if ((plain = malloc(need + 1)) != NULL &&
        ws_known_hosts_plain(s->kh_text, len, s->host, s->port, plain, need + 1) == need &&
        (s->kh_fd = memfd_create("walsafe-known-hosts", MFD_CLOEXEC)) >= 0 &&
        ws_write_all(s->kh_fd, plain, need) == 0) {
        snprintf(s->kh_proc, sizeof(s->kh_proc), "/proc/self/fd/%d", s->kh_fd);
        s->kh_curl = s->kh_proc;
    }
out:
    free(plain);
    ws_sink_free(buf);
    close(fd);
    return rc;
}

/*
 * The passphrase of an encrypted identity file: from the file named by
 * WALSAFE_SFTP_PASSPHRASE_FILE (mode 0600 or stricter, first line), else from
 * WALSAFE_SFTP_PASSPHRASE. Neither is a configuration key, so no config file has to hold it.
 */
static int load_passphrase(struct sftp_storage *s, struct ws_error *err)
{
    const char *path = getenv("WALSAFE_SFTP_PASSPHRASE_FILE"), *env;
    char buf[1024];
    struct stat st;
    FILE *f;

    if (path && *path) {
        if (!(f = fopen(path, "re")))
            return ws_error_setsys(err, WS_ERR_CONFIG, errno,
                                   "could not open WALSAFE_SFTP_PASSPHRASE_FILE \"%s\"", path);
        if (fstat(fileno(f), &st) != 0 || (st.st_mode & 077)) {
            fclose(f);
            return ws_error_set(err, WS_ERR_CONFIG,
                                "passphrase file \"%s\" is readable by group or others; run "
                                "chmod 600 on it",
                                path);
        }
        if (!fgets(buf, sizeof(buf), f))
            buf[0] = '\0';
        fclose(f);
        buf[strcspn(buf, "\r\n")] = '\0';
        s->passphrase = strdup(buf);
        memset(buf, 0, sizeof(buf));
    } else if ((env = getenv("WALSAFE_SFTP_PASSPHRASE")) != NULL) {
        s->passphrase = strdup(env);
    } else {
        return 0;
    }
    return s->passphrase ? 0 : ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
}

/* Whether the libcurl loaded at run time speaks SFTP; vi is its version. */
static int curl_has_sftp(const curl_version_info_data *vi)
{
    for (const char *const *p = vi->protocols; p && *p; p++)
        if (strcmp(*p, "sftp") == 0)
            return 1;
    return 0;
}

static char *dup_or_null(const char *v)
{
    return v ? strdup(v) : NULL;
}

int ws_storage_sftp_open(const struct ws_sftp_params *p, struct ws_storage **out,
                         struct ws_error *err)
{
    const curl_version_info_data *vi;
    struct sftp_storage *s;

    if (ws_curl_load(&cu, err) != 0)
        return err->code;
    vi = cu->version_info(CURLVERSION_NOW);
    if (!curl_has_sftp(vi))
        return ws_error_set(err, WS_ERR_CONFIG,
                            "repo \"%s\": this libcurl (%s) was built without SFTP support",
                            p->location, vi->version);
    if (!(s = calloc(1, sizeof(*s))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    s->base.ops = &sftp_ops;
    s->base.hk = &sftp_hk;
    s->base.caps = WS_SFTP_CAPS;
    for (int i = 0; i < SFTP_SOCKETS; i++)
        s->socks[i] = -1;
    s->kh_fd = -1;
    s->timeout = p->timeout;
    s->port = p->port;
    s->base.location = strdup(p->location);
    s->origin = strdup(p->origin);
    s->root = strdup(p->root);
    s->host = strdup(p->host);
    s->identity = strdup(p->identity_file);
    s->known_hosts = strdup(p->known_hosts);
    s->pin = dup_or_null(p->host_key_sha256);
    s->multi = cu->multi_init();
    s->easy = cu->easy_init();
    if (!s->origin || !s->root || !s->host || !s->base.location || !s->identity ||
        !s->known_hosts || (p->host_key_sha256 && !s->pin) || !s->multi || !s->easy) {
        sf_close(&s->base);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    }
    if (host_key_options(s, vi, err) != 0 || identity_check(s->identity, err) != 0 ||
        (!s->pin && known_hosts_load(s, err) != 0) || load_passphrase(s, err) != 0) {
        sf_close(&s->base);
        return err->code;
    }
    *out = &s->base;
    return 0;
}
