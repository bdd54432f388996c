#include "io/sink.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"

int ws_sink_write(struct ws_sink *s, const void *buf, size_t len, struct ws_error *err)
{
    return s->ops->write(s, buf, len, err);
}

int ws_sink_finish(struct ws_sink *s, struct ws_error *err)
{
    int rc = 0;

    if (s->ops->finish)
        rc = s->ops->finish(s, err);
    if (rc == 0 && s->next)
        rc = ws_sink_finish(s->next, err);
    if (rc == 0)
        s->finished = 1;
    return rc;
}

void ws_sink_free(struct ws_sink *s)
{
    while (s) {
        struct ws_sink *next = s->next;
        if (!s->finished && s->ops->abort)
            s->ops->abort(s);
        s->ops->destroy(s);
        s = next;
    }
}

/* ---- buffer sink ---- */

struct buffer_sink {
    struct ws_sink base;
    uint8_t *data;
    size_t len, cap, limit;
};

static int buffer_write(struct ws_sink *s, const void *buf, size_t len, struct ws_error *err)
{
    struct buffer_sink *b = (struct buffer_sink *)s;

    if (len > b->limit - b->len)
        return ws_error_set(err, WS_ERR_INVALID, "data exceeds the limit of %zu bytes", b->limit);
    /* one spare byte keeps the content NUL-terminated for ws_buffer_sink_text() */
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        uint8_t *p;
        while (cap < b->len + len + 1)
            cap *= 2;
        p = realloc(b->data, cap);
        if (!p)
            return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        b->data = p;
        b->cap = cap;
    }
    if (len)
        memcpy(b->data + b->len, buf, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

static void buffer_destroy(struct ws_sink *s)
{
    struct buffer_sink *b = (struct buffer_sink *)s;
    free(b->data);
    free(b);
}

static const struct ws_sink_ops buffer_ops = {"buffer", buffer_write, NULL, NULL, buffer_destroy};

int ws_buffer_sink_new(size_t limit, struct ws_sink **out, struct ws_error *err)
{
    struct buffer_sink *b = calloc(1, sizeof(*b));
    if (!b)
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    b->base.ops = &buffer_ops;
    b->limit = limit;
    if (!(b->data = calloc(1, 1))) {
        free(b);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    }
    b->cap = 1;
    *out = &b->base;
    return 0;
}

char *ws_buffer_sink_text(struct ws_sink *s)
{
    return (char *)((struct buffer_sink *)s)->data;
}

const uint8_t *ws_buffer_sink_data(const struct ws_sink *s, size_t *len)
{
    const struct buffer_sink *b = (const struct buffer_sink *)s;
    *len = b->len;
    return b->data;
}

/* ---- null sink ---- */

static int null_write(struct ws_sink *s, const void *buf, size_t len, struct ws_error *err)
{
    (void)s, (void)buf, (void)len, (void)err;
    return 0;
}

static void null_destroy(struct ws_sink *s)
{
    free(s);
}

static const struct ws_sink_ops null_ops = {"null", null_write, NULL, NULL, null_destroy};

int ws_null_sink_new(struct ws_sink **out, struct ws_error *err)
{
    struct ws_sink *s = calloc(1, sizeof(*s));
    if (!s)
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    s->ops = &null_ops;
    *out = s;
    return 0;
}

/* ---- file sink ---- */

struct file_sink {
    struct ws_sink base;
    int fd;
    int derived_tmp; /* the temp name is ours (derived from path and pid) */
    int created;     /* the temp file exists (abort must remove it) */
    uint64_t written;
    struct ws_file_opts o;
    char *path;
    char *tmp;
};

static int file_create(struct file_sink *f, struct ws_error *err)
{
    f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, f->o.mode);
    if (f->fd < 0 && errno == EEXIST && f->derived_tmp) {
        /* a leftover of a killed earlier run of this pid: ours to replace */
        unlink(f->tmp);
        f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, f->o.mode);
    }
    if (f->fd < 0)
        return ws_error_setsys(err, f->o.err_code, errno, "could not create file \"%s\"", f->tmp);
    f->created = 1;
    if (f->o.give && fchown(f->fd, f->o.uid, f->o.gid) != 0)
        return ws_error_setsys(err, f->o.err_code, errno, "could not give file \"%s\" to user %ld",
                               f->tmp, (long)f->o.uid);
    /* best effort: a file system without it allocates as the writes come */
    if (f->o.preallocate)
        (void)fallocate(f->fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)f->o.preallocate);
    return 0;
}

static int file_write(struct ws_sink *s, const void *buf, size_t len, struct ws_error *err)
{
    struct file_sink *f = (struct file_sink *)s;
    if (f->fd < 0 && file_create(f, err) != 0)
        return err->code;
    if (ws_write_all(f->fd, buf, len) != 0)
        return ws_error_setsys(err, f->o.err_code, errno, "could not write file \"%s\"", f->tmp);
    f->written += len;
    return 0;
}

/* rename without replacing: RENAME_NOREPLACE, or link() where the file system lacks it (link
 * also refuses an existing target). WS_ERR_EXISTS when the name is taken. */
static int rename_noreplace(const char *from, const char *to, int code, struct ws_error *err)
{
    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno == EEXIST)
        return ws_error_set(err, WS_ERR_EXISTS, "file \"%s\" already exists", to);
    if (errno != EINVAL && errno != ENOSYS)
        return ws_error_setsys(err, code, errno, "could not rename file \"%s\" to \"%s\"", from,
                               to);
    if (link(from, to) != 0) {
        if (errno == EEXIST)
            return ws_error_set(err, WS_ERR_EXISTS, "file \"%s\" already exists", to);
        return ws_error_setsys(err, code, errno, "could not link file \"%s\" to \"%s\"", from, to);
    }
    unlink(from);
    return 0;
}

static int file_finish(struct ws_sink *s, struct ws_error *err)
{
    struct file_sink *f = (struct file_sink *)s;
    int fd, code = f->o.err_code, rc;

    if (f->fd < 0 && file_create(f, err) != 0) /* empty content: the file still appears */
        return err->code;
    fd = f->fd;
    f->fd = -1;
    /* releases what was reserved beyond the content (best effort) */
    if (f->o.preallocate > f->written)
        (void)ftruncate(fd, (off_t)f->written);
    if (f->o.fsync && fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return ws_error_setsys(err, code, e, "could not fsync file \"%s\"", f->tmp);
    }
    if (close(fd) != 0)
        return ws_error_setsys(err, code, errno, "could not close file \"%s\"", f->tmp);
    if (f->o.no_replace) {
        if ((rc = rename_noreplace(f->tmp, f->path, code, err)) != 0)
            return rc;
    } else if (rename(f->tmp, f->path) != 0) {
        return ws_error_setsys(err, code, errno, "could not rename file \"%s\" to \"%s\"", f->tmp,
                               f->path);
    }
    if (f->o.fsync && ws_fsync_parent(f->path, err) != 0)
        return err->code = code;
    return 0;
}

static void file_abort(struct ws_sink *s)
{
    struct file_sink *f = (struct file_sink *)s;
    if (!f->created)
        return; /* nothing was created: nothing to remove */
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    unlink(f->tmp);
}

static void file_destroy(struct ws_sink *s)
{
    struct file_sink *f = (struct file_sink *)s;
    free(f->path);
    free(f->tmp);
    free(f);
}

static const struct ws_sink_ops file_ops = {"file", file_write, file_finish, file_abort,
                                            file_destroy};

int ws_file_sink_open(const char *path, const struct ws_file_opts *o, struct ws_sink **out,
                      struct ws_error *err)
{
    struct file_sink *f = calloc(1, sizeof(*f));
    const char *slash = strrchr(path, '/');
    size_t dirlen = slash ? (size_t)(slash - path + 1) : 0;
    size_t tmplen = strlen(path) + 64;

    if (!f)
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    f->base.ops = &file_ops;
    f->fd = -1;
    f->o = *o;
    if (!f->o.err_code)
        f->o.err_code = WS_ERR_IO;
    f->path = strdup(path);
    f->tmp = o->tmp_path ? strdup(o->tmp_path) : malloc(tmplen);
    if (!f->path || !f->tmp) {
        file_destroy(&f->base);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    }
    f->o.tmp_path = NULL; /* not ours to keep */
    if (!o->tmp_path)
        snprintf(f->tmp, tmplen, "%.*s.%s.walsafe.%ld", (int)dirlen, path, path + dirlen,
                 (long)getpid());
    f->derived_tmp = !o->tmp_path;
    if (!o->create_on_write && file_create(f, err) != 0) {
        file_destroy(&f->base);
        return err->code;
    }
    *out = &f->base;
    return 0;
}

int ws_file_sink_new(const char *path, int mode, int do_fsync, struct ws_sink **out,
                     struct ws_error *err)
{
    struct ws_file_opts o = {
        .mode = mode, .fsync = do_fsync, .err_code = WS_ERR_IO, .create_on_write = 1};
    return ws_file_sink_open(path, &o, out, err);
}

int ws_sink_write_file(struct ws_sink *s, int fd, const char *path, struct ws_error *err)
{
    enum { BLOCK = 1 << 20 };
    uint8_t *buf = malloc(BLOCK);
    int rc = 0;

    if (!buf)
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    for (;;) {
        ssize_t n = read(fd, buf, BLOCK);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not read file \"%s\"", path);
            break;
        }
        if (n == 0)
            break;
        if ((rc = ws_sink_write(s, buf, (size_t)n, err)) != 0)
            break;
    }
    free(buf);
    return rc;
}
