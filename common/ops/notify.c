/*
 * ops/notify.c - notify_command (notify.h; why a shell, a memory file and a process group:
 * docs/design/notify.md).
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/log.h"
#include "base/util.h"
#include "ops/notify.h"

static void json_or_null(FILE *f, const char *s)
{
    if (s)
        ws_json_string(f, s);
    else
        fputs("null", f);
}

void ws_notify_json(FILE *f, const char *cluster, const struct ws_notify_event *ev,
                    const char *host, int64_t now)
{
    char when[21];

    ws_format_utc(now, when);
    fputs("{\"event\": ", f);
    ws_json_string(f, ev->event);
    fputs(", \"cluster\": ", f);
    json_or_null(f, cluster);
    fputs(", \"id\": ", f);
    json_or_null(f, ev->id && ev->id[0] ? ev->id : NULL);
    fprintf(f, ", \"status\": \"%s\"", ev->ok ? "success" : "failure");
    if (ev->has_sizes)
        fprintf(f, ", \"bytes\": %" PRIu64 ", \"stored_bytes\": %" PRIu64, ev->bytes,
                ev->stored_bytes);
    else
        fputs(", \"bytes\": null, \"stored_bytes\": null", f);
    fprintf(f, ", \"duration_seconds\": %.3f, \"error\": ", ev->seconds);
    json_or_null(f, ev->ok ? NULL : ev->error && ev->error[0] ? ev->error : "failed");
    fputs(", \"host\": ", f);
    ws_json_string(f, host);
    fputs(", \"time\": ", f);
    ws_json_string(f, when);
    fputs("}\n", f);
}

/* The document in a memory file, at offset 0; -1 on failure. */
static int document(const struct ws_config *cfg, const struct ws_notify_event *ev)
{
    char host[256] = "";
    char *buf = NULL;
    size_t len = 0;
    FILE *f;
    int fd;

    if (gethostname(host, sizeof(host) - 1) != 0)
        snprintf(host, sizeof(host), "unknown");
    if (!(f = open_memstream(&buf, &len)))
        return -1;
    ws_notify_json(f, cfg->cluster, ev, host, (int64_t)time(NULL));
    if (fclose(f) != 0) {
        free(buf);
        return -1;
    }
    fd = memfd_create("walsafe-notify", MFD_CLOEXEC);
    if (fd >= 0 && (ws_write_all(fd, buf, len) != 0 || lseek(fd, 0, SEEK_SET) != 0)) {
        close(fd);
        fd = -1;
    }
    free(buf);
    return fd;
}

/* Waits for pid up to timeout_s; kills its process group then. */
static void wait_notifier(pid_t pid, int64_t timeout_s)
{
    int64_t deadline = ws_mono_ms() + timeout_s * 1000;
    struct timespec ts = {0, 20 * 1000000L};
    int status = 0;
    pid_t w;

    while ((w = waitpid(pid, &status, WNOHANG)) == 0 || (w < 0 && errno == EINTR)) {
        if (ws_mono_ms() >= deadline) {
            kill(-pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
            ws_log_warning("notify_command did not finish within notify_timeout (%" PRId64
                           " s): killed it",
                           timeout_s);
            return;
        }
        nanosleep(&ts, NULL);
    }
    if (w < 0)
        ws_log_warning("could not wait for notify_command: %s", strerror(errno));
    else if (WIFSIGNALED(status))
        ws_log_warning("notify_command was ended by signal %d", WTERMSIG(status));
    else if (WEXITSTATUS(status) != 0)
        ws_log_warning("notify_command failed with exit status %d", WEXITSTATUS(status));
}

void ws_notify(const struct ws_config *cfg, const struct ws_notify_event *ev)
{
    int fd;
    pid_t pid;

    if (!cfg->notify_command || !cfg->notify_command[0])
        return;
    if ((fd = document(cfg, ev)) < 0) {
        ws_log_warning("could not prepare the notify_command document: %s", strerror(errno));
        return;
    }
    fflush(stdout);
    fflush(stderr);
    if ((pid = fork()) == 0) {
        setpgid(0, 0);
        signal(SIGPIPE, SIG_DFL);
        if (dup2(fd, 0) < 0 || dup2(2, 1) < 0)
            _exit(127);
        execl("/bin/sh", "sh", "-c", cfg->notify_command, (char *)NULL);
        _exit(127);
    }
    close(fd);
    if (pid < 0) {
        ws_log_warning("could not start notify_command: %s", strerror(errno));
        return;
    }
    setpgid(pid, pid); /* also here: no race with the kill of the group */
    wait_notifier(pid, cfg->notify_timeout > 0 ? cfg->notify_timeout : 60);
}

void ws_notify_outcome(const struct ws_config *cfg, struct ws_notify_event *ev, double t0, int rc,
                       const struct ws_error *err)
{
    ev->ok = rc == 0;
    ev->error = rc ? err->msg : NULL;
    ev->seconds = ws_now_monotonic() - t0;
    ws_notify(cfg, ev);
}
