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
 * Counts are per connection. MODE defaults to pass. With -f, the first line of MODE_FILE
 * ("MODE [N] [first K]") overrides the command line; "first K" damages only the first K
 * connections accepted since the line last changed, and passes the later ones (a fault that
 * hits once, so a client's own retry on a fresh connection goes through): it is read again for every new connection and every
 * 100 ms while the listener is closed by `refuse`, so a test switches faults by rewriting the
 * file between commands (write a temp file and rename it over MODE_FILE). A missing or empty
 * file means the command-line mode. An unparsable file is reported on stderr and treated as
 * `refuse`, so a typo in a test fails closed instead of passing traffic.
 *
 * Once listening it prints "faultproxy pid PID port PORT" on stdout (a readiness line for the
 * caller). Each connection is served by a child process that dies with the parent
 * (PR_SET_PDEATHSIG). SIGTERM or SIGINT ends it.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    M_STALL
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
            "       close-after-down N, reset-request K, stall\n");
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
