/*
 * ops/status_spool.c - basebackup status: what <spool_dir>/<cluster>/ shows of push-ahead,
 * prefetch and wal-receive (status.h). Read only: nothing is created, locked or removed; below
 * spool_dir every directory and file is opened with O_NOFOLLOW, files only when regular and
 * small, so a planted link or FIFO is skipped, never followed or waited on.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archive/prefetch.h"
#include "archive/receive.h"
#include "archive/spool.h"
#include "base/fs.h"
#include "ops/status_int.h"

static int open_dir(int at, const char *name)
{
    return openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/* Up to sz - 1 bytes of regular file `name` in dir into buf (NUL-terminated), its mtime in
 * *mtime (may be NULL): 0, or -1 when it is absent or no regular file. */
static int read_small(int dir, const char *name, char *buf, size_t sz, int64_t *mtime)
{
    struct stat st;
    ssize_t n;
    int fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

    buf[0] = '\0';
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return -1;
    }
    n = ws_pread_full(fd, buf, sz - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    if (mtime)
        *mtime = st.st_mtime;
    close(fd);
    return 0;
}

/* Regular files in dir whose names do not start with '.' and, with len > 0, are len long. */
static long count_files(int dir, size_t len)
{
    DIR *d = fdopendir(dup(dir));
    struct dirent *de;
    long n = 0;

    if (!d)
        return -1;
    while ((de = readdir(d)) != NULL) {
        struct stat st;
        if (de->d_name[0] == '.' || (len && strlen(de->d_name) != len))
            continue;
        if (fstatat(dir, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
            n++;
    }
    closedir(d);
    return n;
}

static void pushahead(int cl, struct ws_status_spool *sp)
{
    struct stat st;
    int d;

    sp->pushed = sp->pushing = -1;
    if ((d = open_dir(cl, "pushed")) >= 0) {
        sp->pushed = count_files(d, 0);
        close(d);
    }
    if ((d = open_dir(cl, "pushing")) >= 0) {
        sp->pushing = count_files(d, 0);
        if (fstatat(d, ".stopped", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
            sp->outage_since = st.st_mtime;
        close(d);
    }
}

/* One prefetch-<tag> spool: its entries, its last request, its process (the PID in `lock`). */
static void prefetch_one(int d, struct ws_status_spool *sp)
{
    char buf[64];
    int64_t t = 0;
    long pid, n = count_files(d, WS_PREFETCH_ENTRY_LEN);

    sp->prefetch_spools++;
    sp->prefetch_entries += n > 0 ? (size_t)n : 0;
    if (read_small(d, "wanted", buf, sizeof(buf), &t) == 0 && t > sp->prefetch_wanted_time) {
        buf[strcspn(buf, "\n")] = '\0';
        snprintf(sp->prefetch_wanted, sizeof(sp->prefetch_wanted), "%.24s", buf);
        sp->prefetch_wanted_time = t;
    }
    if (read_small(d, "lock", buf, sizeof(buf), NULL) == 0 && (pid = strtol(buf, NULL, 10)) > 1 &&
        (kill((pid_t)pid, 0) == 0 || errno == EPERM))
        sp->prefetch_alive++;
}

static void prefetch(int cl, struct ws_status_spool *sp)
{
    DIR *d = fdopendir(dup(cl));
    struct dirent *de;

    if (!d)
        return;
    while ((de = readdir(d)) != NULL) {
        int fd;
        if (strncmp(de->d_name, "prefetch-", 9) != 0 || (fd = open_dir(cl, de->d_name)) < 0)
            continue;
        prefetch_one(fd, sp);
        close(fd);
    }
    closedir(d);
}

static void receive(int cl, struct ws_status_spool *sp)
{
    char text[4096];
    int d = open_dir(cl, "receive");

    if (d < 0)
        return;
    if (read_small(d, "status", text, sizeof(text), NULL) == 0) {
        sp->receive = 1;
        ws_receive_status_field(text, "slot", sp->rx_slot, sizeof(sp->rx_slot));
        ws_receive_status_field(text, "received", sp->rx_received, sizeof(sp->rx_received));
        ws_receive_status_field(text, "flushed", sp->rx_flushed, sizeof(sp->rx_flushed));
        ws_receive_status_field(text, "stored", sp->rx_stored, sizeof(sp->rx_stored));
        ws_receive_status_field(text, "updated", sp->rx_updated, sizeof(sp->rx_updated));
        ws_receive_status_field(text, "last_error", sp->rx_last_error, sizeof(sp->rx_last_error));
    }
    close(d);
}

void ws_status_gather_spool(const struct ws_config *cfg, struct ws_status *s)
{
    struct ws_status_spool *sp = &s->spool;
    struct ws_dir_ref ref = {-1, ""};
    struct ws_error e = {0};
    char path[PATH_MAX];
    int cl = -1;

    sp->pushed = sp->pushing = -1;
    if (!cfg->spool_dir || !cfg->spool_dir[0] || !cfg->cluster)
        return;
    if (ws_spool_normalise(cfg->spool_dir, path) != 0) {
        snprintf(sp->error, sizeof(sp->error), "spool_dir \"%s\" is not an absolute path",
                 cfg->spool_dir);
        return;
    }
    if (ws_dir_lookup(path, &ref, &e) != 0) {
        snprintf(sp->error, sizeof(sp->error), "%s", e.msg);
        goto out;
    }
    if (ref.missing[0] || (cl = open_dir(ref.fd, cfg->cluster)) < 0)
        goto out; /* no spool: nothing ran with one yet */
    sp->present = 1;
    pushahead(cl, sp);
    prefetch(cl, sp);
    receive(cl, sp);
out:
    if (cl >= 0)
        close(cl);
    ws_dir_ref_close(&ref);
}
