/*
 * io/tar.h - a streaming reader of the tar archives PostgreSQL's BASE_BACKUP sends (ustar, as
 * written by its tar code: regular files, directories, symbolic links; sizes of 8 GiB and more
 * in base-256), pulled a member at a time from a byte source, never buffered whole.
 *
 * The source is a fill callback that hands out the archive's next bytes in chunks of any size
 * (0 bytes: the archive ended). ws_tar_next skips what the caller did not read of the previous
 * member and its padding, then returns the next member's header, or *end = 1 at the end of the
 * archive (two zero blocks, or the source ending exactly at a member boundary). ws_tar_read
 * returns the member's data in order; *got = 0 at its end.
 *
 * The archive comes from another host and is checked as untrusted input: a bad header checksum,
 * a size or mode field that is not a number, a name that is empty, absolute, has a "." or ".."
 * component, "//" or a NUL inside its field, a member type other than the three, or a source
 * that ends inside a member are WS_ERR_CORRUPT naming the member (or the offset); a path is at
 * most 255 bytes (prefix/name). Member paths lose a trailing "/" (directories) and a leading "./"
 * (PostgreSQL 15 sends "./pg_wal/archive_status"). Nothing here touches a file system.
 */
#ifndef WS_IO_TAR_H
#define WS_IO_TAR_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

/* The archive's next bytes into *data (valid until the next call), *len 0 at its end. */
typedef int (*ws_tar_fill_fn)(void *arg, const uint8_t **data, size_t *len, struct ws_error *err);

enum ws_tar_type { WS_TAR_FILE, WS_TAR_DIR, WS_TAR_SYMLINK };

struct ws_tar_member {
    enum ws_tar_type type;
    char path[256];     /* relative, no trailing "/" */
    char linkname[101]; /* symbolic links */
    uint32_t mode;      /* permission bits (07777) */
    int64_t mtime;      /* seconds since the epoch */
    uint64_t size;      /* files; 0 for the others */
};

struct ws_tar;

/* A reader of the archive that fill hands out (fill and arg are kept, not owned). */
int ws_tar_open(struct ws_tar **out, ws_tar_fill_fn fill, void *arg, struct ws_error *err);
void ws_tar_free(struct ws_tar *t);
int ws_tar_next(struct ws_tar *t, struct ws_tar_member *m, int *end, struct ws_error *err);
/* Up to want bytes of the current member's data into buf. */
int ws_tar_read(struct ws_tar *t, uint8_t *buf, size_t want, size_t *got, struct ws_error *err);
/* Bytes of the archive consumed so far (for messages and progress). */
uint64_t ws_tar_offset(const struct ws_tar *t);

#endif
