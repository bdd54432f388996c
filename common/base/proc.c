#include "base/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/fs.h"

int ws_proc_start(struct ws_proc *p, const char *what, ws_proc_fn fn, void *arg, void *rec,
                  size_t size, struct ws_error *err)
{
    int fds[2];
    pid_t self = getpid();

    p->pid = -1;
    p->fd = -1;
    p->what = what;
    if (pipe2(fds, O_CLOEXEC) != 0)
        return ws_error_setsys(err, WS_ERR_INTERNAL, errno, "could not create a pipe");
    fflush(stdout);
    fflush(stderr);
    if ((p->pid = fork()) == 0) {
        close(fds[0]);
        fn(arg, self, rec);
        fflush(stdout);
        _exit(ws_write_all(fds[1], rec, size) == 0 ? 0 : 1);
    }
    close(fds[1]);
    if (p->pid < 0) {
        int e = errno;
        close(fds[0]);
        return ws_error_setsys(err, WS_ERR_INTERNAL, e, "could not start the %s", what);
    }
    p->fd = fds[0];
    return 0;
}

int ws_proc_finish(struct ws_proc *p, void *rec, size_t size, const volatile sig_atomic_t *stop,
                   struct ws_error *err)
{
    size_t got = 0;
    unsigned int polls = 0;
    int status = 0;
    pid_t waited;

    while (got < size) {
        struct pollfd pf = {p->fd, POLLIN, 0};
        ssize_t n;
        if (stop && *stop && polls++ % 4 == 0) /* again every second */
            kill(p->pid, SIGTERM);
        if (poll(&pf, 1, 250) <= 0)
            continue;
        n = read(p->fd, (char *)rec + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(p->fd);
    p->fd = -1;
    while ((waited = waitpid(p->pid, &status, 0)) < 0 && errno == EINTR)
        ;
    if (got == size)
        return 0;
    if (waited != p->pid)
        return ws_error_set(err, WS_ERR_INTERNAL, "the %s ended without saying how it ended",
                            p->what);
    return ws_error_set(err, WS_ERR_INTERNAL, "the %s ended %s %d", p->what,
                        WIFSIGNALED(status) ? "by signal" : "with status",
                        WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}
