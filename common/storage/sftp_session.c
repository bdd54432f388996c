/*
 * storage/sftp_session.c - requests on the sftp driver's SSH sessions: the options every
 * request carries, driving the shared multi handle, the rule for a session the server dropped,
 * and the error a failed transfer becomes.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "storage/sftp_int.h"

int ws_sftp_url_of(struct sftp_storage *s, const char *key, char *out, size_t outsz)
{
    int n = snprintf(out, outsz, "%s%s/%s", s->origin, s->root, key ? key : "");
    return n > 0 && (size_t)n < outsz ? 0 : -1;
}

void ws_sftp_path_of(struct sftp_storage *s, const char *key, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s/%s", s->root, key);
}

/*
 * Delayed acknowledgements: after every round of libcurl's work the pending ACKs of this
 * storage's connections go out at once (TCP_QUICKACK is not sticky, hence every round), or a
 * new SSH session waits at least 40 ms for one (docs/design/storage.md, "SFTP sessions").
 * libcurl tells us its sockets through the open and close callbacks below.
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

void ws_sftp_base_opts(struct sftp_storage *s, CURL *e, struct xfer *x, const char *url)
{
    const struct ws_curl *cu = s->cu;

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
        /* Only for libcurl's choice of the host key type to ask for; ws_sftp_hostkey_cb decides. */
        cu->easy_setopt(e, CURLOPT_SSH_KNOWNHOSTS, s->kh_curl);
        cu->easy_setopt(e, CURLOPT_SSH_HOSTKEYFUNCTION, ws_sftp_hostkey_cb);
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

int ws_sftp_step(struct sftp_storage *s, int *running)
{
    const struct ws_curl *cu = s->cu;
    int left = 0;
    CURLMsg *msg;
    CURLMcode mc = cu->multi_perform(s->multi, running);

    ack_now(s);
    if (mc != CURLM_OK)
        return -1;
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
    return 0;
}

int ws_sftp_drive(struct sftp_storage *s, struct xfer *x, const int *stop_when)
{
    for (;;) {
        int running = 0;
        if (ws_sftp_step(s, &running) != 0)
            return CURLE_FAILED_INIT;
        if (x->done)
            return x->result;
        if (stop_when && *stop_when)
            return -1;
        if (!running)
            return CURLE_FAILED_INIT; /* not on the multi handle: never report that as success */
        s->cu->multi_poll(s->multi, NULL, 0, 100, NULL);
    }
}

int ws_sftp_dropped_connection(int cc)
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
int ws_sftp_session_alive(struct sftp_storage *s, CURL *e)
{
    curl_socket_t fd = CURL_SOCKET_BAD;
    char c;

    if (s->cu->easy_getinfo(e, CURLINFO_ACTIVESOCKET, &fd) != CURLE_OK || fd == CURL_SOCKET_BAD)
        return 0;
    return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) < 0 &&
           (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* A server may drop a session that sat idle; libcurl finds out only when it reuses it. */
int ws_sftp_run_delivering(struct sftp_storage *s, const uint64_t *delivered)
{
    int rc;

    for (int attempt = 0;; attempt++) {
        int reused, alive;
        s->xfer.done = 0;
        s->cu->multi_add_handle(s->multi, s->easy);
        rc = ws_sftp_drive(s, &s->xfer, NULL);
        alive = rc == CURLE_OK || ws_sftp_session_alive(s, s->easy);
        if (rc == CURLE_REMOTE_FILE_NOT_FOUND && !alive)
            rc = CURLE_RECV_ERROR;
        s->cu->multi_remove_handle(s->multi, s->easy);
        reused = s->connected;
        s->connected = alive; /* a failed request on a live session leaves it usable */
        if (rc == CURLE_OK)
            return rc;
        if (attempt > 0 || !reused || !ws_sftp_dropped_connection(rc) ||
            (delivered && *delivered > 0))
            return rc;
        s->cu->easy_setopt(s->easy, CURLOPT_FRESH_CONNECT, 1L);
    }
}

int ws_sftp_run(struct sftp_storage *s)
{
    return ws_sftp_run_delivering(s, NULL);
}

static int retryable(int cc)
{
    return cc == CURLE_COULDNT_CONNECT || cc == CURLE_OPERATION_TIMEDOUT || cc == CURLE_SSH ||
           cc == CURLE_SEND_ERROR || cc == CURLE_RECV_ERROR || cc == CURLE_PARTIAL_FILE ||
           cc == CURLE_GOT_NOTHING || cc == CURLE_COULDNT_RESOLVE_HOST || cc == CURLE_AGAIN;
}

int ws_sftp_curl_error(struct sftp_storage *s, int cc, const char *what, const char *key,
                       struct ws_error *err)
{
    if (cc == CURLE_REMOTE_FILE_NOT_FOUND)
        return ws_error_set(err, WS_ERR_NOT_FOUND, "object \"%s\" not found in repository \"%s\"",
                            key, s->base.location);
    if (s->key_rejected)
        return ws_sftp_host_key_error(s, err);
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
                 s->base.location, s->cu->easy_strerror((CURLcode)cc));
    err->retryable = retryable(cc);
    return err->code;
}

int ws_sftp_quote(struct sftp_storage *s, const char *cmd, int *cc_out)
{
    char url[4096];
    struct curl_slist *q = s->cu->slist_append(NULL, cmd);
    int cc;

    if (!q)
        return *cc_out = CURLE_OUT_OF_MEMORY;
    ws_sftp_url_of(s, NULL, url, sizeof(url));
    s->key_rejected = 0;
    ws_sftp_base_opts(s, s->easy, &s->xfer, url);
    s->cu->easy_setopt(s->easy, CURLOPT_NOBODY, 1L);
    s->cu->easy_setopt(s->easy, CURLOPT_QUOTE, q);
    s->cu->easy_setopt(s->easy, CURLOPT_DIRLISTONLY, 1L);
    cc = ws_sftp_run(s);
    s->cu->easy_setopt(s->easy, CURLOPT_QUOTE, NULL);
    s->cu->slist_free_all(q);
    *cc_out = cc;
    return cc;
}
