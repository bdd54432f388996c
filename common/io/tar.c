/* tar.c - the streaming reader of BASE_BACKUP's tar archives (see tar.h). */
#include "io/tar.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 512u

/* ustar header fields: offset, length */
#define F_NAME 0, 100
#define F_MODE 100, 8
#define F_SIZE 124, 12
#define F_MTIME 136, 12
#define F_CHKSUM 148, 8
#define O_TYPE 156
#define F_LINK 157, 100
#define O_MAGIC 257
#define F_PREFIX 345, 155

struct ws_tar {
    ws_tar_fill_fn fill;
    void *arg;
    const uint8_t *chunk; /* the fill's current chunk, chunk[pos..len) not consumed yet */
    size_t len, pos;
    uint64_t offset;    /* bytes consumed */
    uint64_t remaining; /* of the current member's data */
    uint64_t padding;   /* after its data, to the next block */
    int ended;
    int failed; /* the code of an earlier error: the archive cannot be read further */
    char path[256];
    uint8_t block[BLOCK];
};

int ws_tar_open(struct ws_tar **out, ws_tar_fill_fn fill, void *arg, struct ws_error *err)
{
    if (!(*out = calloc(1, sizeof(**out))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    (*out)->fill = fill;
    (*out)->arg = arg;
    return 0;
}

void ws_tar_free(struct ws_tar *t)
{
    free(t);
}

uint64_t ws_tar_offset(const struct ws_tar *t)
{
    return t->offset;
}

/* Up to want bytes of the source at *p (*n of them, 0 at its end), consumed. */
static int take(struct ws_tar *t, size_t want, const uint8_t **p, size_t *n, struct ws_error *err)
{
    int rc;

    *n = 0;
    while (t->pos == t->len) {
        t->pos = t->len = 0;
        if ((rc = t->fill(t->arg, &t->chunk, &t->len, err)) != 0)
            return rc;
        if (t->len == 0)
            return 0;
    }
    *p = t->chunk + t->pos;
    *n = t->len - t->pos < want ? t->len - t->pos : want;
    t->pos += *n;
    t->offset += *n;
    return 0;
}

/* The next block into t->block: *got 0 at the end of the source, else BLOCK. */
static int take_block(struct ws_tar *t, size_t *got, struct ws_error *err)
{
    uint64_t start = t->offset;
    const uint8_t *p;
    size_t n;
    int rc;

    for (*got = 0; *got < BLOCK; *got += n) {
        if ((rc = take(t, BLOCK - *got, &p, &n, err)) != 0)
            return rc;
        if (n == 0)
            break;
        memcpy(t->block + *got, p, n);
    }
    if (*got != 0 && *got != BLOCK)
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "tar archive ends inside a header block at offset %" PRIu64, start);
    return 0;
}

/* A number field: octal digits (leading spaces, then NULs or spaces to its end), or base-256
 * (first byte 0x80, big-endian) for values that do not fit in octal. */
static int parse_number(const uint8_t *h, size_t off, size_t len, uint64_t *v)
{
    const uint8_t *f = h + off;
    size_t i = 0;

    *v = 0;
    if (f[0] == 0x80) {
        for (i = 1; i < len; i++) {
            if (*v >> 55)
                return -1; /* above INT64_MAX */
            *v = *v << 8 | f[i];
        }
        return 0;
    }
    while (i < len && f[i] == ' ')
        i++;
    if (i == len || f[i] < '0' || f[i] > '7')
        return -1;
    for (; i < len && f[i] >= '0' && f[i] <= '7'; i++)
        *v = *v << 3 | (uint64_t)(f[i] - '0'); /* at most 12 digits: no overflow */
    for (; i < len; i++)
        if (f[i] != '\0' && f[i] != ' ')
            return -1;
    return 0;
}

/* A text field: its bytes up to the first NUL (all of them without one), NULs only after it. */
static int parse_text(const uint8_t *h, size_t off, size_t len, char *out)
{
    const uint8_t *f = h + off;
    size_t n = strnlen((const char *)f, len), i;

    for (i = n; i < len; i++)
        if (f[i] != '\0')
            return -1;
    memcpy(out, f, n);
    out[n] = '\0';
    return 0;
}

static int checksum_ok(const uint8_t *h)
{
    uint64_t want, sum = 0;
    size_t i;

    if (parse_number(h, F_CHKSUM, &want) != 0)
        return 0;
    for (i = 0; i < BLOCK; i++)
        sum += i >= 148 && i < 156 ? ' ' : h[i];
    return sum == want;
}

/* A relative path: not empty, not absolute, no empty, "." or ".." component. */
static int path_ok(const char *path)
{
    const char *c = path, *slash;
    size_t n;

    if (!*path)
        return 0;
    for (;; c = slash + 1) {
        slash = strchr(c, '/');
        n = slash ? (size_t)(slash - c) : strlen(c);
        if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
            return 0;
        if (!slash)
            return 1;
    }
}

/* prefix "/" name, a trailing "/" removed from directories and symbolic links, a leading "./"
 * removed. */
static int member_path(const uint8_t *h, enum ws_tar_type type, char *path)
{
    char name[101], prefix[156];
    size_t n;

    if (parse_text(h, F_NAME, name) != 0 || parse_text(h, F_PREFIX, prefix) != 0)
        return -1;
    n = strlen(prefix) + strlen(name) + (*prefix ? 1 : 0);
    if (n > 255)
        return -1;
    memcpy(path, prefix, strlen(prefix));
    if (*prefix)
        path[strlen(prefix)] = '/';
    memcpy(path + n - strlen(name), name, strlen(name) + 1);
    if (type != WS_TAR_FILE && n > 1 && path[n - 1] == '/')
        path[--n] = '\0';
    if (n > 2 && path[0] == '.' && path[1] == '/') /* "./pg_wal/archive_status" */
        memmove(path, path + 2, n - 1);
    return 0;
}

static int member_type(uint8_t flag, enum ws_tar_type *type)
{
    switch (flag) {
    case '0':
    case '\0':
        *type = WS_TAR_FILE;
        return 0;
    case '5':
        *type = WS_TAR_DIR;
        return 0;
    case '2':
        *type = WS_TAR_SYMLINK;
        return 0;
    default:
        return -1;
    }
}

static int parse_header(struct ws_tar *t, struct ws_tar_member *m, struct ws_error *err)
{
    const uint8_t *h = t->block;
    uint64_t at = t->offset - BLOCK, mode, mtime;

    memset(m, 0, sizeof(*m));
    if (memcmp(h + O_MAGIC, "ustar", 5) != 0 || (h[O_MAGIC + 5] != '\0' && h[O_MAGIC + 5] != ' '))
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "tar archive has no ustar header at offset %" PRIu64, at);
    if (!checksum_ok(h))
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "tar header at offset %" PRIu64 " has a wrong checksum", at);
    if (member_type(h[O_TYPE], &m->type) != 0)
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "tar member at offset %" PRIu64 " has unsupported type '%c' (0x%02x)",
                            at, h[O_TYPE] >= 0x20 && h[O_TYPE] < 0x7f ? h[O_TYPE] : '?', h[O_TYPE]);
    if (member_path(h, m->type, m->path) != 0 || !path_ok(m->path))
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "tar member at offset %" PRIu64 " has an invalid path", at);
    if (parse_number(h, F_MODE, &mode) != 0 || parse_number(h, F_SIZE, &m->size) != 0 ||
        parse_number(h, F_MTIME, &mtime) != 0)
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "tar member \"%s\" has an invalid mode, size or modification time",
                            m->path);
    if (m->type != WS_TAR_FILE && m->size != 0)
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "tar member \"%s\" is not a regular file but has data", m->path);
    if (m->type == WS_TAR_SYMLINK && (parse_text(h, F_LINK, m->linkname) != 0 || !*m->linkname))
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "tar member \"%s\" is a symbolic link with an invalid target", m->path);
    m->mode = (uint32_t)(mode & 07777);
    m->mtime = (int64_t)mtime;
    return 0;
}

/* Past what is left of the current member: its data and padding. */
static int skip_member(struct ws_tar *t, struct ws_error *err)
{
    const uint8_t *p;
    size_t n;
    int rc;

    while (t->remaining + t->padding > 0) {
        uint64_t left = t->remaining + t->padding;
        if ((rc = take(t, left < SIZE_MAX ? (size_t)left : SIZE_MAX, &p, &n, err)) != 0)
            return rc;
        if (n == 0)
            return ws_error_set(err, WS_ERR_CORRUPT,
                                "tar archive ends inside member \"%s\" at offset %" PRIu64, t->path,
                                t->offset);
        if (n <= t->remaining) {
            t->remaining -= n;
        } else {
            t->padding -= n - t->remaining;
            t->remaining = 0;
        }
    }
    return 0;
}

/* After a zero block: a second one or the end of the source ends the archive. */
static int end_of_archive(struct ws_tar *t, struct ws_error *err)
{
    static const uint8_t zero[BLOCK];
    size_t got;
    int rc;

    if ((rc = take_block(t, &got, err)) != 0)
        return rc;
    if (got && memcmp(t->block, zero, BLOCK) != 0)
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "tar archive has a header after a zero block at offset %" PRIu64,
                            t->offset - BLOCK);
    t->ended = 1;
    return 0;
}

static int next_member(struct ws_tar *t, struct ws_tar_member *m, int *end, struct ws_error *err)
{
    static const uint8_t zero[BLOCK];
    size_t got;
    int rc;

    if (!t->ended && (rc = skip_member(t, err)) != 0)
        return rc;
    if (!t->ended && (rc = take_block(t, &got, err)) != 0)
        return rc;
    if (!t->ended && got == 0)
        t->ended = 1;
    if (!t->ended && memcmp(t->block, zero, BLOCK) == 0 && (rc = end_of_archive(t, err)) != 0)
        return rc;
    if ((*end = t->ended) != 0) {
        memset(m, 0, sizeof(*m));
        return 0;
    }
    if ((rc = parse_header(t, m, err)) != 0)
        return rc;
    memcpy(t->path, m->path, sizeof(t->path));
    t->remaining = m->size;
    t->padding = (BLOCK - m->size % BLOCK) % BLOCK;
    return 0;
}

int ws_tar_next(struct ws_tar *t, struct ws_tar_member *m, int *end, struct ws_error *err)
{
    *end = 0;
    if (t->failed)
        return ws_error_set(err, t->failed, "tar archive cannot be read after an error");
    return t->failed = next_member(t, m, end, err);
}

static int read_data(struct ws_tar *t, uint8_t *buf, size_t want, size_t *got, struct ws_error *err)
{
    const uint8_t *p;
    size_t n;
    int rc;

    while (*got < want && t->remaining > 0) {
        size_t room = want - *got;
        if ((rc = take(t, t->remaining < room ? (size_t)t->remaining : room, &p, &n, err)) != 0)
            return rc;
        if (n == 0)
            return ws_error_set(err, WS_ERR_CORRUPT,
                                "tar archive ends inside member \"%s\" at offset %" PRIu64, t->path,
                                t->offset);
        memcpy(buf + *got, p, n);
        *got += n;
        t->remaining -= n;
    }
    return 0;
}

int ws_tar_read(struct ws_tar *t, uint8_t *buf, size_t want, size_t *got, struct ws_error *err)
{
    *got = 0;
    if (t->failed)
        return ws_error_set(err, t->failed, "tar archive cannot be read after an error");
    return t->failed = read_data(t, buf, want, got, err);
}
