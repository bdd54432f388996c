/*
 * fsutil.h - the few POSIX file-system steps that durability depends on.
 *
 * Durable publication of a file is: write temp, fsync(temp), rename, fsync(directory). Newly
 * created directories need their parent fsynced too, which ws_mkdir_p() does.
 */
#ifndef WS_FSUTIL_H
#define WS_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

#include "error.h"

/* write() all of buf, retrying on EINTR and short writes. Returns 0 or -1 with errno set. */
int ws_write_all(int fd, const void *buf, size_t len);
/* pwrite() all of buf at off, retrying on EINTR and short writes. Returns 0 or -1 with errno. */
int ws_pwrite_all(int fd, const void *buf, size_t len, off_t off);
/* pread() exactly len bytes at off; returns bytes read (short only at EOF) or -1. */
ssize_t ws_pread_full(int fd, void *buf, size_t len, off_t off);
/* fsync the directory that holds path. */
int ws_fsync_parent(const char *path, struct ws_error *err);
int ws_fsync_dir(const char *dir, struct ws_error *err);
/* mkdir -p with mode; each directory it creates is made durable in its parent. */
int ws_mkdir_p(const char *dir, int mode, struct ws_error *err);

#endif
