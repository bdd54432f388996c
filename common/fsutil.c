#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ws_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

ssize_t ws_pread_full(int fd, void *buf, size_t len, off_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (char *)buf + done, len - done, off + (off_t)done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            break;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

int ws_fsync_dir(const char *dir, struct ws_error *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not open directory \"%s\"", dir);
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return ws_error_setsys(err, WS_ERR_IO, e, "could not fsync directory \"%s\"", dir);
    }
    close(fd);
    return 0;
}

int ws_fsync_parent(const char *path, struct ws_error *err)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');

    if (!slash)
        return ws_fsync_dir(".", err);
    if (slash == path)
        return ws_fsync_dir("/", err);
    if ((size_t)(slash - path) >= sizeof(dir))
        return ws_error_set(err, WS_ERR_IO, "path too long: \"%s\"", path);
    memcpy(dir, path, (size_t)(slash - path));
    dir[slash - path] = '\0';
    return ws_fsync_dir(dir, err);
}

int ws_mkdir_p(const char *dir, int mode, struct ws_error *err)
{
    char buf[PATH_MAX];
    size_t len = strlen(dir);
    struct stat st;

    if (len == 0 || len >= sizeof(buf))
        return ws_error_set(err, WS_ERR_IO, "invalid directory path \"%s\"", dir);
    if (stat(dir, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return 0;
        return ws_error_set(err, WS_ERR_IO, "\"%s\" exists and is not a directory", dir);
    }
    memcpy(buf, dir, len + 1);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, (mode_t)mode) == 0) {
                if (ws_fsync_parent(buf, err) != 0)
                    return err ? err->code : WS_ERR_IO;
            } else if (errno != EEXIST) {
                return ws_error_setsys(err, WS_ERR_IO, errno, "could not create directory \"%s\"",
                                       buf);
            }
            *p = c;
            if (c == '\0')
                break;
        }
    }
    return 0;
}

int ws_pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}
