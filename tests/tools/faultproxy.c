/*
 * faultproxy - a TCP proxy on 127.0.0.1 that injects network faults, for the integration tests.
 *
 *   faultproxy [-f MODE_FILE] LISTEN_PORT TARGET_PORT [MODE [N]]
 *
 * Listens on 127.0.0.1:LISTEN_PORT (0: any free port) and forwards each connection to
 * 127.0.0.1:TARGET_PORT, damaged according to the mode in force when the connection is accepted:
 *
 *   pass                  forward both ways unchanged
 *   refuse                close the listening socket: connects are refused (ECONNREFUSED)
 *   reset                 accept, then reset the connection at once
 *   reset-after N         forward N bytes client -> server, then reset the client connection
 *                         (SO_LINGER 0: RST) and drop the server connection
 *   close-after N         the same with a clean close (FIN) instead of a reset
 *   reset-after-down N    forward N bytes server -> client, then reset the client connection
 *   reset-request K       swallow the client's K-th request on a connection (a request starts
 *                         with client bytes after the server has spoken), and once the client
 *                         has sent nothing for 300 ms, reset the connection: the server never
 *                         sees the request, the client sees its connection die without an answer
 *                         (a keep-alive connection that the server dropped as it was reused)
 *   close-after-down N    forward N bytes server -> client, then close both cleanly
 *   stall                 accept and forward nothing (read and discard what the client sends)
 *
 * S3 listing modes: the proxy reads the HTTP requests (and, for list-repeat-token, the answers)
 * and rewrites every ListObjectsV2 request (GET with list-type=2) to ask for pages of 2 keys
 * (max-keys=2); the requests must be unsigned (a config without S3 credentials), since a
 * signature would no longer match. On each connection:
 *   list-repeat-token K   the answers' NextContinuationToken becomes "walsafe-fake-<n mod K>"
 *                         for the n-th list answer (n from 0): a server that repeats one token
 *                         (K = 1) or cycles between K; a fake token the client sends back goes
 *                         to the server as the first real token of the connection, so page 2
 *                         comes back again and again
 *   list-replay-page      every continuation token but the first the client sends is replaced
 *                         by that first one: page 2 again and again, each time with the fresh
 *                         token the server makes (s3rver's tokens are random)
 *   list-widen N          the prefix parameter loses its last N '/'-separated components, so
 *                         the server also lists keys outside the prefix the client asked for
 * And an S3 answer mode (requests pass unchanged, so they may be signed):
 *   upload-id N           the <UploadId> of every answer to a CreateMultipartUpload request
 *                         (POST ...?uploads) becomes N '+' characters
 *
 * Counts are per connection. MODE defaults to pass. With -f, the first line of MODE_FILE
 * ("MODE [N] [first K]") overrides the command line; "first K" damages only the first K
 * connections accepted since the line last changed, and passes the later ones (a fault that
 * hits once, so a client's own retry on a fresh connection goes through): it is read again for
 * every new connection and every 100 ms while the listener is closed by `refuse`, so a test
 * switches faults by rewriting the file between commands (write a temp file and rename it over
 * MODE_FILE). A missing or empty file means the command-line mode. An unparsable file is reported
 * on stderr and treated as `refuse`, so a typo in a test fails closed instead of passing traffic.
 *
 * Once listening it prints "faultproxy pid PID port PORT" on stdout (a readiness line for the
 * caller). Each connection is served by a child process that dies with the parent
 * (PR_SET_PDEATHSIG). SIGTERM or SIGINT ends it.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

enum mode {
    M_PASS,
    M_REFUSE,
    M_RESET,
    M_RESET_AFTER,
    M_CLOSE_AFTER,
    M_RESET_AFTER_DOWN,
    M_CLOSE_AFTER_DOWN,
    M_RESET_REQUEST,
    M_STALL,
    M_LIST_REPEAT_TOKEN,
    M_LIST_REPLAY_PAGE,
    M_LIST_WIDEN,
    M_UPLOAD_ID
};

static const struct {
    const char *name;
    enum mode mode;
    int needs_n;
} modes[] = {
    {"pass", M_PASS, 0},
    {"refuse", M_REFUSE, 0},
    {"reset", M_RESET, 0},
    {"reset-after", M_RESET_AFTER, 1},
    {"close-after", M_CLOSE_AFTER, 1},
    {"reset-after-down", M_RESET_AFTER_DOWN, 1},
    {"close-after-down", M_CLOSE_AFTER_DOWN, 1},
    {"reset-request", M_RESET_REQUEST, 1},
    {"stall", M_STALL, 0},
    {"list-repeat-token", M_LIST_REPEAT_TOKEN, 1},
    {"list-replay-page", M_LIST_REPLAY_PAGE, 0},
    {"list-widen", M_LIST_WIDEN, 1},
    {"upload-id", M_UPLOAD_ID, 1},
};

struct setting {
    enum mode mode;
    unsigned long long n;
    unsigned long long first; /* 0: every connection */
};

static volatile sig_atomic_t stop;

static void on_stop(int sig)
{
    (void)sig;
    stop = 1;
}

static int parse_count(const char *s, unsigned long long *out)
{
    char *end;
    errno = 0;
    if (!s || !*s || *s == '-')
        return -1;
    *out = strtoull(s, &end, 10);
    return errno || *end ? -1 : 0;
}

/* "MODE" or "MODE N" (words already split). */
static int parse_mode(const char *name, const char *count, struct setting *out)
{
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        if (strcmp(name, modes[i].name) != 0)
            continue;
        out->mode = modes[i].mode;
        out->n = 0;
        out->first = 0;
        if (modes[i].needs_n)
            return parse_count(count, &out->n);
        return count ? -1 : 0;
    }
    return -1;
}

/* The mode in force: the file's, if there is one, else the command line's. */
static struct setting current(const char *file, const struct setting *cmdline)
{
    char line[256], *save = NULL, *name, *count, *extra, *k = NULL;
    struct setting s;
    FILE *f;

    if (!file || !(f = fopen(file, "r")))
        return *cmdline;
    if (!fgets(line, sizeof(line), f)) {
        fclose(f);
        return *cmdline;
    }
    fclose(f);
    name = strtok_r(line, " \t\r\n", &save);
    if (!name)
        return *cmdline;
    count = strtok_r(NULL, " \t\r\n", &save);
    if (count && strcmp(count, "first") == 0) {
        extra = count;
        count = NULL;
    } else {
        extra = strtok_r(NULL, " \t\r\n", &save);
    }
    if (extra && strcmp(extra, "first") == 0) {
        k = strtok_r(NULL, " \t\r\n", &save);
        extra = k ? strtok_r(NULL, " \t\r\n", &save) : extra; /* "first" alone: unparsable */
    }
    s.first = 0;
    if (extra || parse_mode(name, count, &s) != 0 ||
        (k && (parse_count(k, &s.first) != 0 || s.first == 0))) {
        static char reported[256]; /* once per bad line, not every 100 ms */
        if (strcmp(reported, name) != 0) {
            fprintf(stderr, "faultproxy: %s: cannot parse mode \"%s\"; refusing connections\n",
                    file, name);
            snprintf(reported, sizeof(reported), "%s", name);
        }
        s.mode = M_REFUSE;
        s.n = 0;
        s.first = 0;
    }
    return s;
}

static int open_listener(int port, int *bound_port)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 64) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) != 0) {
        close(fd);
        return -1;
    }
    *bound_port = ntohs(a.sin_port);
    return fd;
}

static int connect_target(int port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Closes fd with a TCP reset instead of a FIN. */
static void reset_close(int fd)
{
    struct linger l = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    close(fd);
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* ---- the S3 listing modes: HTTP/1.1 with Content-Length framing ---- */

#define HTTP_BUF (1u << 20)
#define FIFO 16

struct http_relay {
    struct setting s;
    char *cbuf, *sbuf; /* bytes from the client / the server not yet forwarded */
    size_t clen, slen;
    unsigned long long cbody, sbody; /* body bytes still to forward as they are */
    int raw; /* framing lost (chunked, no length): forward everything unchanged from now on */
    struct {
        int head, list, uploads;
    } fifo[FIFO]; /* requests whose answers are due, oldest first */
    int nfifo;
    char first_token[4096]; /* list-repeat-token: decoded; list-replay-page: as sent */
    unsigned long long answers;
};

/* The end of the head (after "\r\n\r\n") in buf[0..len), or 0. */
static size_t head_end(const char *buf, size_t len)
{
    const char *e = memmem(buf, len, "\r\n\r\n", 4);
    return e ? (size_t)(e - buf) + 4 : 0;
}

/* Value of header name in head[0..len) as a number: 0 found, -1 absent or not a number. */
static int header_num(const char *head, size_t len, const char *name, unsigned long long *out)
{
    size_t nl = strlen(name);

    for (const char *p = head; p < head + len;) {
        const char *eol = memmem(p, (size_t)(head + len - p), "\r\n", 2);
        if (!eol)
            break;
        if ((size_t)(eol - p) > nl + 1 && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            char num[32];
            size_t vl = (size_t)(eol - p) - nl - 1;
            const char *v = p + nl + 1;
            while (vl > 0 && *v == ' ')
                v++, vl--;
            if (vl == 0 || vl >= sizeof(num))
                return -1;
            memcpy(num, v, vl);
            num[vl] = '\0';
            return parse_count(num, out);
        }
        p = eol + 2;
    }
    return -1;
}

static int has_header(const char *head, size_t len, const char *name)
{
    unsigned long long v;
    char lower[64];
    snprintf(lower, sizeof(lower), "\r\n%s:", name);
    return header_num(head, len, name, &v) == 0 || memmem(head, len, lower, strlen(lower));
}

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                  : -1;
}

static void url_decode(const char *in, size_t n, char *out, size_t outsz)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < outsz; i++) {
        if (in[i] == '%' && i + 2 < n && hexval(in[i + 1]) >= 0 && hexval(in[i + 2]) >= 0) {
            out[o++] = (char)(hexval(in[i + 1]) * 16 + hexval(in[i + 2]));
            i += 2;
        } else {
            out[o++] = in[i];
        }
    }
    out[o] = '\0';
}

static void url_encode(const char *in, char *out, size_t outsz)
{
    size_t o = 0;
    for (; *in && o + 4 < outsz; in++) {
        unsigned char c = (unsigned char)*in;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            out[o++] = (char)c;
        } else {
            snprintf(out + o, outsz - o, "%%%02X", c);
            o += 3;
        }
    }
    out[o] = '\0';
}

/* Rewrites the query of a ListObjectsV2 request line into out (see the list modes above). */
static void rewrite_list_query(struct http_relay *h, const char *q, size_t qn, char *out,
                               size_t outsz)
{
    size_t o = 0;
    int has_max = 0;

    out[0] = '\0';
    for (size_t i = 0; i < qn;) {
        size_t j = i, nl;
        char val[8192], dec[4096], enc[8192];
        const char *eq;
        while (j < qn && q[j] != '&')
            j++;
        eq = memchr(q + i, '=', j - i);
        nl = eq ? (size_t)(eq - q - i) : j - i;
        snprintf(val, sizeof(val), "%.*s", eq ? (int)(j - i - nl - 1) : 0, eq ? eq + 1 : "");
        if (nl == 18 && strncmp(q + i, "continuation-token", 18) == 0 &&
            h->s.mode == M_LIST_REPEAT_TOKEN && strncmp(val, "walsafe-fake-", 13) == 0) {
            url_encode(h->first_token, enc, sizeof(enc));
            snprintf(val, sizeof(val), "%s", enc);
        } else if (nl == 18 && strncmp(q + i, "continuation-token", 18) == 0 &&
                   h->s.mode == M_LIST_REPLAY_PAGE) {
            if (!h->first_token[0])
                snprintf(h->first_token, sizeof(h->first_token), "%s", val);
            snprintf(val, sizeof(val), "%s", h->first_token);
        } else if (nl == 6 && strncmp(q + i, "prefix", 6) == 0 && h->s.mode == M_LIST_WIDEN) {
            size_t dl;
            url_decode(val, strlen(val), dec, sizeof(dec));
            dl = strlen(dec);
            for (unsigned long long k = 0; k <= h->s.n && dl > 0; k++) {
                while (dl > 0 && dec[dl - 1] == '/')
                    dl--; /* the trailing slash, then one component per round */
                if (k < h->s.n)
                    while (dl > 0 && dec[dl - 1] != '/')
                        dl--;
            }
            dec[dl] = '\0';
            if (dl > 0)
                snprintf(dec + dl, sizeof(dec) - dl, "/");
            url_encode(dec, enc, sizeof(enc));
            snprintf(val, sizeof(val), "%s", enc);
        }
        if (nl == 8 && strncmp(q + i, "max-keys", 8) == 0)
            has_max = 1;
        o += (size_t)snprintf(out + o, o < outsz ? outsz - o : 0, "%s%.*s=%s", o ? "&" : "",
                              (int)nl, q + i, val);
        i = j + 1;
        if (o >= outsz)
            return;
    }
    if (!has_max && o < outsz)
        snprintf(out + o, outsz - o, "%smax-keys=2", o ? "&" : "");
}

/* Forwards the request heads (rewritten) and bodies in h->cbuf to the server. */
static int relay_requests(struct http_relay *h, int server)
{
    while (h->clen > 0) {
        size_t end, take;
        char line[16384], query[16384], out[40000];
        const char *eol, *sp1, *sp2, *qm;
        unsigned long long cl = 0;
        int is_list = 0;
        if (h->raw || h->cbody > 0) {
            take = h->raw || h->cbody >= h->clen ? h->clen : (size_t)h->cbody;
            if (write_all(server, h->cbuf, take) != 0)
                return -1;
            if (!h->raw)
                h->cbody -= take;
            memmove(h->cbuf, h->cbuf + take, h->clen - take);
            h->clen -= take;
            continue;
        }
        if (!(end = head_end(h->cbuf, h->clen)))
            return h->clen >= HTTP_BUF ? -1 : 0; /* the rest of the head is still to come */
        eol = memmem(h->cbuf, end, "\r\n", 2);
        snprintf(line, sizeof(line), "%.*s", (int)(eol - h->cbuf), h->cbuf);
        sp1 = strchr(line, ' ');
        sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
        qm = sp1 && sp2 ? memchr(sp1, '?', (size_t)(sp2 - sp1)) : NULL;
        if (has_header(h->cbuf, end, "Transfer-Encoding"))
            h->raw = 1;
        else if (header_num(h->cbuf, end, "Content-Length", &cl) != 0)
            cl = 0;
        if (h->s.mode != M_UPLOAD_ID && strncmp(line, "GET ", 4) == 0 && qm &&
            memmem(qm, (size_t)(sp2 - qm), "list-type=2", 11)) {
            is_list = 1;
            rewrite_list_query(h, qm + 1, (size_t)(sp2 - qm - 1), query, sizeof(query));
            snprintf(out, sizeof(out), "%.*s?%s%s%.*s", (int)(qm - line), line, query, sp2,
                     (int)(end - (size_t)(eol - h->cbuf)), eol);
        } else {
            snprintf(out, sizeof(out), "%.*s", (int)end, h->cbuf);
        }
        if (write_all(server, out, strlen(out)) != 0)
            return -1;
        if (h->nfifo < FIFO) {
            h->fifo[h->nfifo].head = strncmp(line, "HEAD ", 5) == 0;
            h->fifo[h->nfifo].list = is_list;
            h->fifo[h->nfifo].uploads = strncmp(line, "POST ", 5) == 0 && qm &&
                                        memmem(qm, (size_t)(sp2 - qm), "uploads", 7);
            h->nfifo++;
        } else {
            h->raw = 1;
        }
        h->cbody = cl;
        memmove(h->cbuf, h->cbuf + end, h->clen - end);
        h->clen -= end;
    }
    return 0;
}

/* An answer with the text of its first <tag> replaced (list-repeat-token: the
 * NextContinuationToken by a fake one; upload-id: the UploadId by N '+') and Content-Length
 * fixed. */
static int send_rewritten_answer(struct http_relay *h, int client, size_t end,
                                 unsigned long long cl)
{
    const char *tag = h->s.mode == M_UPLOAD_ID ? "UploadId" : "NextContinuationToken";
    char *body = h->sbuf + end, *a, *b, fake[4096], *out, open_tag[64], close_tag[64];
    size_t n = 0, cap;
    const char *p;
    int rc;

    snprintf(open_tag, sizeof(open_tag), "<%s>", tag);
    snprintf(close_tag, sizeof(close_tag), "</%s>", tag);
    a = memmem(body, (size_t)cl, open_tag, strlen(open_tag));
    b = a ? memmem(a, (size_t)cl - (size_t)(a - body), close_tag, strlen(close_tag)) : NULL;
    if (!a || !b)
        return write_all(client, h->sbuf, end + (size_t)cl);
    a += strlen(open_tag);
    if (h->s.mode == M_UPLOAD_ID) {
        size_t k = h->s.n < sizeof(fake) ? (size_t)h->s.n : sizeof(fake) - 1;
        memset(fake, '+', k);
        fake[k] = '\0';
    } else {
        if (!h->first_token[0])
            snprintf(h->first_token, sizeof(h->first_token), "%.*s", (int)(b - a), a);
        snprintf(fake, sizeof(fake), "walsafe-fake-%llu", h->answers++ % (h->s.n ? h->s.n : 1));
    }
    cap = end + (size_t)cl + strlen(fake) + 256;
    if (!(out = malloc(cap)))
        return -1;
    /* the head without its Content-Length line, then ours */
    for (p = h->sbuf; p < h->sbuf + end - 2;) {
        const char *eol = memmem(p, (size_t)(h->sbuf + end - p), "\r\n", 2);
        size_t ll = (size_t)(eol - p) + 2;
        if (strncasecmp(p, "Content-Length:", 15) != 0) {
            memcpy(out + n, p, ll);
            n += ll;
        }
        p = eol + 2;
    }
    n += (size_t)snprintf(out + n, cap - n, "Content-Length: %zu\r\n\r\n",
                          (size_t)cl - (size_t)(b - a) + strlen(fake));
    memcpy(out + n, body, (size_t)(a - body));
    n += (size_t)(a - body);
    memcpy(out + n, fake, strlen(fake));
    n += strlen(fake);
    memcpy(out + n, b, (size_t)cl - (size_t)(b - body));
    n += (size_t)cl - (size_t)(b - body);
    rc = write_all(client, out, n);
    free(out);
    return rc;
}

/* Forwards the answers in h->sbuf to the client, rewriting list answers when asked to. */
static int relay_answers(struct http_relay *h, int client)
{
    while (h->slen > 0) {
        size_t end, take;
        unsigned long long cl = 0;
        long status;
        int no_body;
        if (h->raw || h->sbody > 0) {
            take = h->raw || h->sbody >= h->slen ? h->slen : (size_t)h->sbody;
            if (write_all(client, h->sbuf, take) != 0)
                return -1;
            if (!h->raw)
                h->sbody -= take;
            memmove(h->sbuf, h->sbuf + take, h->slen - take);
            h->slen -= take;
            continue;
        }
        if (!(end = head_end(h->sbuf, h->slen)))
            return h->slen >= HTTP_BUF ? -1 : 0;
        status = h->slen > 12 ? strtol(h->sbuf + 9, NULL, 10) : 0;
        no_body =
            (h->nfifo > 0 && h->fifo[0].head) || status < 200 || status == 204 || status == 304;
        if (!no_body && header_num(h->sbuf, end, "Content-Length", &cl) != 0) {
            h->raw = 1; /* chunked or until close: no rewriting on this connection */
            continue;
        }
        if (no_body)
            cl = 0;
        if (h->nfifo > 0 && status == 200 &&
            ((h->s.mode == M_LIST_REPEAT_TOKEN && h->fifo[0].list) ||
             (h->s.mode == M_UPLOAD_ID && h->fifo[0].uploads))) {
            if (h->slen < end + cl) {
                if (end + cl > HTTP_BUF)
                    h->raw = 1;
                return 0; /* the whole answer first */
            }
            if (send_rewritten_answer(h, client, end, cl) != 0)
                return -1;
            take = end + (size_t)cl;
        } else {
            if (write_all(client, h->sbuf, end) != 0)
                return -1;
            h->sbody = cl;
            take = end;
        }
        memmove(h->sbuf, h->sbuf + take, h->slen - take);
        h->slen -= take;
        if (status >= 200 && h->nfifo > 0)
            memmove(h->fifo, h->fifo + 1, (size_t)--h->nfifo * sizeof(h->fifo[0]));
    }
    return 0;
}

/* Serves one connection in a list mode (see the top of this file). */
static int serve_http(int client, int server, struct setting s)
{
    struct http_relay *h = calloc(1, sizeof(*h));
    int client_eof = 0, server_eof = 0, rc = 0, one = 1;

    if (!h || !(h->cbuf = malloc(HTTP_BUF)) || !(h->sbuf = malloc(HTTP_BUF))) {
        reset_close(client);
        reset_close(server);
        return 1;
    }
    h->s = s;
    /* Heads and bodies go out in separate writes: no Nagle wait between them. */
    (void)setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    (void)setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    while (!client_eof || !server_eof) {
        struct pollfd p[2] = {{client, client_eof ? 0 : POLLIN, 0},
                              {server, server_eof ? 0 : POLLIN, 0}};
        ssize_t r;
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (!client_eof && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            r = read(client, h->cbuf + h->clen, HTTP_BUF - h->clen);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                client_eof = 1;
                shutdown(server, SHUT_WR);
            } else {
                h->clen += (size_t)r;
                if (relay_requests(h, server) != 0)
                    break;
            }
        }
        if (!server_eof && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            r = read(server, h->sbuf + h->slen, HTTP_BUF - h->slen);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                server_eof = 1;
                if (h->slen > 0)
                    (void)write_all(client, h->sbuf, h->slen);
                shutdown(client, SHUT_WR);
            } else {
                h->slen += (size_t)r;
                if (relay_answers(h, client) != 0)
                    break;
            }
        }
    }
    close(client);
    close(server);
    free(h->cbuf);
    free(h->sbuf);
    free(h);
    return rc;
}

/* Serves one accepted connection (in a child process); returns the exit status. */
static int serve(int client, int target_port, struct setting s)
{
    char buf[65536];
    unsigned long long up = 0, down = 0, requests = 0;
    int server, client_eof = 0, server_eof = 0, server_spoke = 1, swallowing = 0;

    if (s.mode == M_RESET) {
        reset_close(client);
        return 0;
    }
    if (s.mode == M_STALL) {
        /* Hold the connection open until the client gives up. */
        for (;;) {
            ssize_t r = read(client, buf, sizeof(buf));
            if (r == 0 || (r < 0 && errno != EINTR))
                break;
        }
        close(client);
        return 0;
    }
    if ((server = connect_target(target_port)) < 0) {
        fprintf(stderr, "faultproxy: cannot connect to 127.0.0.1:%d: %s\n", target_port,
                strerror(errno));
        reset_close(client);
        return 1;
    }
    if (s.mode == M_LIST_REPEAT_TOKEN || s.mode == M_LIST_REPLAY_PAGE || s.mode == M_LIST_WIDEN ||
        s.mode == M_UPLOAD_ID)
        return serve_http(client, server, s);
    while (!client_eof || !server_eof) {
        struct pollfd p[2] = {{client, client_eof ? 0 : POLLIN, 0},
                              {server, server_eof ? 0 : POLLIN, 0}};
        int ready = poll(p, 2, swallowing ? 300 : -1);
        if (ready < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (ready == 0 && swallowing) {
            reset_close(client);
            reset_close(server);
            return 0;
        }
        if (!client_eof && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            size_t want = sizeof(buf);
            ssize_t r;
            if ((s.mode == M_RESET_AFTER || s.mode == M_CLOSE_AFTER) && s.n - up < want)
                want = (size_t)(s.n - up);
            r = want ? read(client, buf, want) : 0;
            if (r < 0 && errno == EINTR)
                continue;
            if (r > 0 && server_spoke) {
                server_spoke = 0;
                if (++requests == s.n && s.mode == M_RESET_REQUEST)
                    swallowing = 1;
            }
            if (r > 0 && swallowing)
                continue;
            if (r > 0 && write_all(server, buf, (size_t)r) != 0)
                break;
            if (r > 0)
                up += (unsigned long long)r;
            if ((s.mode == M_RESET_AFTER || s.mode == M_CLOSE_AFTER) && up >= s.n) {
                /* The cut: the client sees it; the server sees its request end early. */
                if (s.mode == M_RESET_AFTER) {
                    reset_close(client);
                    reset_close(server);
                } else {
                    close(client);
                    close(server);
                }
                return 0;
            }
            if (r <= 0) {
                client_eof = 1;
                shutdown(server, SHUT_WR);
            }
        }
        if (!server_eof && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            size_t want = sizeof(buf);
            ssize_t r;
            if ((s.mode == M_RESET_AFTER_DOWN || s.mode == M_CLOSE_AFTER_DOWN) && s.n - down < want)
                want = (size_t)(s.n - down);
            r = want ? read(server, buf, want) : 0;
            if (r < 0 && errno == EINTR)
                continue;
            if (r > 0 && write_all(client, buf, (size_t)r) != 0)
                break;
            if (r > 0) {
                down += (unsigned long long)r;
                server_spoke = 1;
            }
            if ((s.mode == M_RESET_AFTER_DOWN || s.mode == M_CLOSE_AFTER_DOWN) && down >= s.n) {
                if (s.mode == M_RESET_AFTER_DOWN)
                    reset_close(client);
                else
                    close(client);
                close(server);
                return 0;
            }
            if (r <= 0) {
                server_eof = 1;
                shutdown(client, SHUT_WR);
            }
        }
    }
    close(client);
    close(server);
    return 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: faultproxy [-f MODE_FILE] LISTEN_PORT TARGET_PORT [MODE [N]]\n"
            "modes: pass, refuse, reset, reset-after N, close-after N, reset-after-down N,\n"
            "       close-after-down N, reset-request K, stall,\n"
            "       list-repeat-token K, list-replay-page, list-widen N, upload-id N\n");
}

int main(int argc, char **argv)
{
    const char *file = NULL;
    struct setting cmdline = {M_PASS, 0, 0}, s, last = {M_PASS, 0, 0};
    unsigned long long accepted = 0; /* connections under `last` so far */
    struct sigaction sa;
    unsigned long long v;
    int listen_port, target_port, port = 0, lfd = -1, opt;
    pid_t parent = getpid();

    while ((opt = getopt(argc, argv, "f:h")) != -1) {
        if (opt == 'f') {
            file = optarg;
        } else {
            usage();
            return 2;
        }
    }
    if (argc - optind < 2 || argc - optind > 4 || parse_count(argv[optind], &v) != 0 || v > 65535) {
        usage();
        return 2;
    }
    listen_port = (int)v;
    if (parse_count(argv[optind + 1], &v) != 0 || v == 0 || v > 65535) {
        usage();
        return 2;
    }
    target_port = (int)v;
    if (argc - optind >= 3 &&
        parse_mode(argv[optind + 2], argc - optind == 4 ? argv[optind + 3] : NULL, &cmdline) != 0) {
        fprintf(stderr, "faultproxy: invalid mode\n");
        usage();
        return 2;
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop; /* no SA_RESTART: poll() returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sigaction(SIGCHLD, &sa, NULL); /* ignored: children are reaped by the kernel, no zombies */

    /* Bind first (also in refuse mode) so the port is known and reserved for later. */
    if ((lfd = open_listener(listen_port, &port)) < 0) {
        fprintf(stderr, "faultproxy: cannot listen on 127.0.0.1:%d: %s\n", listen_port,
                strerror(errno));
        return 1;
    }
    printf("faultproxy pid %ld port %d\n", (long)getpid(), port);
    fflush(stdout);

    while (!stop) {
        struct pollfd p = {lfd, POLLIN, 0};
        int cfd;
        pid_t child;

        s = current(file, &cmdline);
        if (s.mode == M_REFUSE) {
            if (lfd >= 0) {
                close(lfd);
                lfd = -1;
            }
            usleep(100 * 1000);
            continue;
        }
        if (lfd < 0 && (lfd = open_listener(port, &port)) < 0) {
            fprintf(stderr, "faultproxy: cannot listen on 127.0.0.1:%d again: %s\n", port,
                    strerror(errno));
            usleep(100 * 1000);
            continue;
        }
        /* Wake up now and then so that a switch to refuse closes the listener promptly. */
        if (poll(&p, 1, 100) <= 0)
            continue;
        if ((cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0)
            continue;
        /* The mode as of this connection (the file may have changed during the poll). */
        s = current(file, &cmdline);
        if (s.mode == M_REFUSE) {
            reset_close(cfd);
            continue;
        }
        if (s.mode != last.mode || s.n != last.n || s.first != last.first)
            accepted = 0;
        last = s;
        if (s.first && ++accepted > s.first)
            s.mode = M_PASS;
        child = fork();
        if (child == 0) {
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() != parent)
                _exit(0);
            sa.sa_handler = SIG_DFL;
            sa.sa_flags = 0;
            sigaction(SIGTERM, &sa, NULL);
            sigaction(SIGINT, &sa, NULL);
            close(lfd);
            _exit(serve(cfd, target_port, s));
        }
        if (child < 0)
            fprintf(stderr, "faultproxy: fork: %s\n", strerror(errno));
        close(cfd);
    }
    if (lfd >= 0)
        close(lfd);
    return 0;
}
