/* bundle.c - splits a bundle's content back into files (see bundle.h). */
#include "bundle.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"

#define WRITEBACK_STEP (8u << 20)

struct splitter {
    struct ws_sink base;
    const struct ws_bfile *const *files;
    size_t nfiles;
    struct ws_bundle_opts o;
    size_t cur;        /* index of the file being filled */
    uint64_t pos;      /* bytes of content consumed */
    uint64_t cur_done; /* bytes of the current file seen */
    int cur_open;      /* the current file has been started */
    int fd;
    uint64_t flushed; /* bytes of the current file handed to writeback */
    EVP_MD_CTX *md;
    size_t good, bad;
};

static void problem(struct splitter *sp, const struct ws_bfile *f, const char *msg)
{
    sp->bad++;
    if (sp->o.problem)
        sp->o.problem(sp->o.arg, f, msg);
}

static int fail(struct splitter *sp, const struct ws_bfile *f, const char *msg,
                struct ws_error *err)
{
    problem(sp, f, msg);
    if (sp->o.root)
        return ws_error_set(err, WS_ERR_CORRUPT, "restored file \"%s\": %s", f->path, msg);
    return 0;
}

static int start_file(struct splitter *sp, struct ws_error *err)
{
    const struct ws_bfile *f = sp->files[sp->cur];
    char path[4096];

    if (EVP_DigestInit_ex(sp->md, EVP_sha256(), NULL) != 1)
        return ws_error_set(err, WS_ERR_INTERNAL, "SHA-256 failed");
    sp->cur_open = 1;
    sp->cur_done = 0;
    if (!sp->o.root)
        return 0;
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", sp->o.root, f->path) >= sizeof(path))
        return ws_error_set(err, WS_ERR_INVALID, "path too long: \"%s/%s\"", sp->o.root, f->path);
    sp->flushed = 0;
    sp->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (sp->fd < 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not create file \"%s\"", path);
    return 0;
}

static int end_file(struct splitter *sp, struct ws_error *err)
{
    const struct ws_bfile *f = sp->files[sp->cur];
    uint8_t digest[32];
    char path[4096];
    int rc = 0;

    sp->cur_open = 0;
    if (EVP_DigestFinal_ex(sp->md, digest, NULL) != 1)
        return ws_error_set(err, WS_ERR_INTERNAL, "SHA-256 failed");
    if (sp->fd >= 0) {
        struct timespec ts[2] = {{f->mtime, 0}, {f->mtime, 0}};
        if (f->size > sp->flushed)
            sync_file_range(sp->fd, (off_t)sp->flushed, 0, SYNC_FILE_RANGE_WRITE);
        snprintf(path, sizeof(path), "%s/%s", sp->o.root, f->path);
        if (fchmod(sp->fd, f->mode & 07777) != 0 ||
            (sp->o.chown_files && fchown(sp->fd, sp->o.uid, sp->o.gid) != 0) ||
            futimens(sp->fd, ts) != 0)
            rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not set attributes of \"%s\"",
                                 path);
        if (close(sp->fd) != 0 && rc == 0)
            rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not write file \"%s\"", path);
        sp->fd = -1;
        if (rc)
            return rc;
    }
    sp->cur++;
    if (memcmp(digest, f->sha256, 32) != 0)
        return fail(sp, f, "SHA-256 differs from the manifest", err);
    sp->good++;
    return 0;
}

static int splitter_write(struct ws_sink *s, const void *buf, size_t len, struct ws_error *err)
{
    struct splitter *sp = (struct splitter *)s;
    const uint8_t *p = buf;
    int rc;

    while (len > 0 || (sp->cur < sp->nfiles && !sp->cur_open &&
                       sp->files[sp->cur]->offset == sp->pos &&
                       sp->files[sp->cur]->size == 0)) {
        const struct ws_bfile *f;
        uint64_t want;
        size_t n;

        if (sp->cur >= sp->nfiles)
            return ws_error_set(err, WS_ERR_CORRUPT, "bundle holds more bytes than its files");
        f = sp->files[sp->cur];
        if (!sp->cur_open) {
            if (f->offset != sp->pos)
                return ws_error_set(err, WS_ERR_CORRUPT,
                                    "bundle offset of \"%s\" does not follow the previous file",
                                    f->path);
            if ((rc = start_file(sp, err)) != 0)
                return rc;
        }
        want = f->size - sp->cur_done;
        n = want < len ? (size_t)want : len;
        if (n > 0) {
            if (EVP_DigestUpdate(sp->md, p, n) != 1)
                return ws_error_set(err, WS_ERR_INTERNAL, "SHA-256 failed");
            if (sp->fd >= 0 && ws_write_all(sp->fd, p, n) != 0)
                return ws_error_setsys(err, WS_ERR_IO, errno, "could not write file \"%s/%s\"",
                                       sp->o.root, f->path);
            p += n;
            len -= n;
            sp->pos += n;
            sp->cur_done += n;
            /* Start writeback as we go: the caller's final sync then waits for little, and
             * the disk works while we decompress. */
            if (sp->fd >= 0 && sp->cur_done - sp->flushed >= WRITEBACK_STEP) {
                sync_file_range(sp->fd, (off_t)sp->flushed, (off_t)(sp->cur_done - sp->flushed),
                                SYNC_FILE_RANGE_WRITE);
                sp->flushed = sp->cur_done;
            }
        }
        if (sp->cur_done == f->size && (rc = end_file(sp, err)) != 0)
            return rc;
    }
    return 0;
}

static int splitter_finish(struct ws_sink *s, struct ws_error *err)
{
    struct splitter *sp = (struct splitter *)s;
    int rc;

    /* trailing empty files */
    if ((rc = splitter_write(s, NULL, 0, err)) != 0)
        return rc;
    if (sp->cur < sp->nfiles) {
        size_t i;
        for (i = sp->cur; i < sp->nfiles; i++)
            problem(sp, sp->files[i], "missing from its bundle (bundle is shorter)");
        return ws_error_set(err, WS_ERR_CORRUPT, "bundle ends before file \"%s\"",
                            sp->files[sp->cur]->path);
    }
    if (sp->bad && sp->o.root)
        return ws_error_set(err, WS_ERR_CORRUPT, "bundle holds damaged files");
    return 0;
}

static void splitter_abort(struct ws_sink *s)
{
    struct splitter *sp = (struct splitter *)s;

    if (sp->fd >= 0) {
        close(sp->fd);
        sp->fd = -1;
    }
}

static void splitter_destroy(struct ws_sink *s)
{
    struct splitter *sp = (struct splitter *)s;

    if (sp->fd >= 0)
        close(sp->fd);
    EVP_MD_CTX_free(sp->md);
    free(sp);
}

static const struct ws_sink_ops splitter_ops = {"bundle", splitter_write, splitter_finish,
                                                splitter_abort, splitter_destroy};

int ws_bundle_splitter_new(const struct ws_bfile *const *files, size_t nfiles,
                           const struct ws_bundle_opts *o, struct ws_sink **out,
                           struct ws_error *err)
{
    struct splitter *sp = calloc(1, sizeof(*sp));

    *out = NULL;
    if (!sp || !(sp->md = EVP_MD_CTX_new())) {
        free(sp);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    }
    sp->base.ops = &splitter_ops;
    sp->files = files;
    sp->nfiles = nfiles;
    sp->o = *o;
    sp->fd = -1;
    *out = &sp->base;
    return 0;
}

size_t ws_bundle_splitter_good(const struct ws_sink *s)
{
    return ((const struct splitter *)s)->good;
}

size_t ws_bundle_splitter_bad(const struct ws_sink *s)
{
    return ((const struct splitter *)s)->bad;
}
