/* child.c - PostgreSQL's client programs as child processes (logical_int.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/fs.h"
#include "logical/logical_int.h"

extern char **environ;

volatile sig_atomic_t ws_logical_stop;

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* The environment with PGPASSFILE naming passfd (malloc'ed array; the strings are environ's and
 * *own). */
static char **child_env(int passfd, char **own)
{
    size_t n = 0, i, k = 0;
    char **env;

    *own = NULL;
    while (environ[n])
        n++;
    if (!(env = calloc(n + 2, sizeof(*env))))
        return NULL;
    for (i = 0; i < n; i++)
        if (passfd < 0 || strncmp(environ[i], "PGPASSFILE=", 11) != 0)
            env[k++] = environ[i];
    if (passfd >= 0) {
        if (!(*own = malloc(64))) {
            free(env);
            return NULL;
        }
        snprintf(*own, 64, "PGPASSFILE=/proc/self/fd/%d", passfd);
        env[k++] = *own;
    }
    return env;
}

int ws_child_start(struct ws_child *c, const char *what, char *const argv[], int passfd,
                   int in_mode, int out_mode, struct ws_error *err)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t def;
    int in[2] = {-1, -1}, out[2] = {-1, -1}, er[2] = {-1, -1}, rc = 0, e;
    char **env = NULL, *own = NULL;

    memset(c, 0, sizeof(*c));
    c->in_fd = c->out_fd = c->err_fd = -1;
    snprintf(c->what, sizeof(c->what), "%s", what);
    if ((in_mode == WS_CHILD_PIPE && pipe2(in, O_CLOEXEC) != 0) ||
        (out_mode == WS_CHILD_PIPE && pipe2(out, O_CLOEXEC) != 0) || pipe2(er, O_CLOEXEC) != 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not create a pipe for %s", what);
    if (!(env = child_env(passfd, &own))) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        goto out;
    }
    posix_spawn_file_actions_init(&fa);
    if (in_mode == WS_CHILD_PIPE)
        posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    else
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (out_mode == WS_CHILD_PIPE)
        posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    else
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, er[1], 2);
    if (passfd >= 0) /* onto itself: that clears its FD_CLOEXEC in the child only (glibc >= 2.29) */
        posix_spawn_file_actions_adddup2(&fa, passfd, passfd);
    /* the child gets SIGPIPE back (main.c ignores it; an ignored signal stays ignored across
     * exec) */
    posix_spawnattr_init(&attr);
    sigemptyset(&def);
    sigaddset(&def, SIGPIPE);
    posix_spawnattr_setsigdefault(&attr, &def);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);
    e = posix_spawn(&c->pid, argv[0], &fa, &attr, argv, env);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    if (e != 0) {
        c->pid = 0;
        rc = ws_error_setsys(err, WS_ERR_CONFIG, e, "could not run \"%s\" for %s", argv[0], what);
        goto out;
    }
    if (in[1] >= 0)
        fcntl(in[1], F_SETFL, fcntl(in[1], F_GETFL) | O_NONBLOCK);
    c->in_fd = in[1], in[1] = -1;
    c->out_fd = out[0], out[0] = -1;
    c->err_fd = er[0], er[0] = -1;
out:
    close_fd(&in[0]), close_fd(&in[1]), close_fd(&out[0]), close_fd(&out[1]);
    close_fd(&er[0]), close_fd(&er[1]);
    free(env);
    free(own);
    return rc;
}

/* Reads what stderr has into the tail; 0 at EOF (closed), 1 when more may come. */
static int read_stderr(struct ws_child *c)
{
    char buf[4096];
    ssize_t n = read(c->err_fd, buf, sizeof(buf));

    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return 1;
    if (n <= 0) {
        close_fd(&c->err_fd);
        return 0;
    }
    if ((size_t)n >= sizeof(c->tail)) {
        memcpy(c->tail, buf + n - (sizeof(c->tail) - 1), sizeof(c->tail) - 1);
        c->tail_len = sizeof(c->tail) - 1;
    } else {
        if (c->tail_len + (size_t)n >= sizeof(c->tail)) {
            size_t drop = c->tail_len + (size_t)n - (sizeof(c->tail) - 1);
            memmove(c->tail, c->tail + drop, c->tail_len - drop);
            c->tail_len -= drop;
        }
        memcpy(c->tail + c->tail_len, buf, (size_t)n);
        c->tail_len += (size_t)n;
    }
    c->tail[c->tail_len] = '\0';
    return 1;
}

static int interrupted(const struct ws_child *c, struct ws_error *err)
{
    return ws_error_set(err, WS_ERR_IO, "interrupted while running %s", c->what);
}

/* Waits until fd is ready for `events`, reading stderr meanwhile: 0, or an error. */
static int wait_ready(struct ws_child *c, int fd, short events, struct ws_error *err)
{
    for (;;) {
        struct pollfd p[2] = {{fd, events, 0}, {c->err_fd, POLLIN, 0}};
        int n = c->err_fd >= 0 ? 2 : 1;
        if (ws_logical_stop)
            return interrupted(c, err);
        if (poll(p, (nfds_t)n, -1) < 0) {
            if (errno == EINTR)
                continue;
            return ws_error_setsys(err, WS_ERR_IO, errno, "poll failed for %s", c->what);
        }
        if (n == 2 && p[1].revents)
            read_stderr(c);
        if (p[0].revents)
            return 0;
    }
}

int ws_child_pump(struct ws_child *c, struct ws_sink *dest, struct ws_error *err)
{
    static char buf[256 * 1024];
    int rc;

    for (;;) {
        ssize_t n;
        if ((rc = wait_ready(c, c->out_fd, POLLIN, err)) != 0)
            return rc;
        n = read(c->out_fd, buf, sizeof(buf));
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0)
            return ws_error_setsys(err, WS_ERR_IO, errno, "could not read the output of %s",
                                   c->what);
        if (n == 0)
            break;
        if ((rc = ws_sink_write(dest, buf, (size_t)n, err)) != 0)
            return rc;
    }
    close_fd(&c->out_fd);
    return 0;
}

/* The child's message: the last line of its stderr that says "error:" (PostgreSQL's programs
 * follow it with detail and hint lines), else its last non-empty line; in place. */
static const char *last_line(struct ws_child *c)
{
    char *end = c->tail + c->tail_len, *p, *line = NULL;

    while (end > c->tail && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
        end--;
    *end = '\0';
    for (p = c->tail; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        if (strstr(p, "error:") || strstr(p, "FATAL:") || strstr(p, "ERROR:"))
            line = p;
        if (!nl)
            break;
        *nl = '\n';
    }
    if (line) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        return line;
    }
    for (p = end; p > c->tail && p[-1] != '\n';)
        p--;
    return p;
}

int ws_child_wait(struct ws_child *c, struct ws_error *err)
{
    int status, rc = 0;
    pid_t r;

    close_fd(&c->in_fd);
    while (c->err_fd >= 0) {
        struct pollfd p = {c->err_fd, POLLIN, 0};
        if (ws_logical_stop) {
            ws_child_kill(c);
            return interrupted(c, err);
        }
        if (poll(&p, 1, -1) < 0 && errno != EINTR)
            break;
        if (p.revents)
            read_stderr(c);
    }
    if (c->pid <= 0)
        return 0;
    while ((r = waitpid(c->pid, &status, 0)) < 0 && errno == EINTR)
        ;
    c->pid = 0;
    close_fd(&c->out_fd);
    if (r < 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not wait for %s", c->what);
    if (WIFSIGNALED(status))
        rc = ws_error_set(err, WS_ERR_IO, "%s was terminated by signal %d%s%s", c->what,
                          WTERMSIG(status), c->tail_len ? ": " : "", last_line(c));
    else if (WEXITSTATUS(status) != 0)
        rc = ws_error_set(err, WS_ERR_IO, "%s failed (exit status %d)%s%s", c->what,
                          WEXITSTATUS(status), c->tail_len ? ": " : "", last_line(c));
    return rc;
}

void ws_child_kill(struct ws_child *c)
{
    int status, i;

    close_fd(&c->in_fd);
    close_fd(&c->out_fd);
    close_fd(&c->err_fd);
    if (c->pid <= 0)
        return;
    kill(c->pid, SIGTERM);
    for (i = 0; i < 50; i++) {
        if (waitpid(c->pid, &status, WNOHANG) == c->pid) {
            c->pid = 0;
            return;
        }
        usleep(100 * 1000);
    }
    kill(c->pid, SIGKILL);
    while (waitpid(c->pid, &status, 0) < 0 && errno == EINTR)
        ;
    c->pid = 0;
}

/* ---- a sink that feeds the child's stdin ----------------------------------------------------- */

struct child_sink {
    struct ws_sink base;
    struct ws_child c;
    int closed; /* it stopped reading (pg_restore --list reads the TOC only): the rest is
                   discarded, still read and authenticated upstream; its exit status decides */
};

static int cs_write(struct ws_sink *s, const void *buf, size_t len, struct ws_error *err)
{
    struct child_sink *cs = (struct child_sink *)s;
    const char *p = buf;
    int rc;

    while (len > 0 && !cs->closed) {
        ssize_t n;
        if ((rc = wait_ready(&cs->c, cs->c.in_fd, POLLOUT, err)) != 0)
            return rc;
        n = write(cs->c.in_fd, p, len);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0 && errno == EPIPE) {
            cs->closed = 1;
            return 0;
        }
        if (n < 0)
            return ws_error_setsys(err, WS_ERR_IO, errno, "could not write to %s", cs->c.what);
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int cs_finish(struct ws_sink *s, struct ws_error *err)
{
    return ws_child_wait(&((struct child_sink *)s)->c, err);
}

static void cs_abort(struct ws_sink *s)
{
    ws_child_kill(&((struct child_sink *)s)->c);
}

static void cs_destroy(struct ws_sink *s)
{
    free(s);
}

static const struct ws_sink_ops child_sink_ops = {"child", cs_write, cs_finish, cs_abort,
                                                  cs_destroy};

int ws_child_sink_new(struct ws_child *c, struct ws_sink **out, struct ws_error *err)
{
    struct child_sink *cs = calloc(1, sizeof(*cs));

    *out = NULL;
    if (!cs) {
        ws_child_kill(c);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    }
    cs->base.ops = &child_sink_ops;
    cs->c = *c;
    c->pid = 0;
    c->in_fd = c->out_fd = c->err_fd = -1;
    *out = &cs->base;
    return 0;
}
