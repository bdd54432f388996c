/* bundle.c - splits a bundle's content back into files (see bundle.h). */
#include "repo/bundle.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"

#define WRITEBACK_STEP (8u << 20)

struct splitter {
    struct ws_sink base;
    struct ws_bextent *ext;
    size_t next;
    struct ws_bundle_opts o;
    size_t cur;        /* index of the extent being filled */
    uint64_t pos;      /* bytes of content consumed */
    uint64_t cur_done; /* bytes of the current extent seen */
    int cur_open;      /* the current extent has been started */
    int fd;
    struct ws_tree_cursor dir; /* the directory of the last file opened */
    uint64_t flushed;          /* bytes of the current extent handed to writeback */
    EVP_MD_CTX *md;            /* whole files */
    struct ws_delta_reader dr; /* a delta extent */
    int dr_bad;                /* verify mode: the delta extent was reported, drop its rest */
    uint8_t *bits;             /* patch mode: the current file's blocks still wanted */
    uint64_t nbits;
    size_t good, bad;
};

static int whole(const struct ws_bextent *e)
{
    return !e->delta && e->file_offset == 0 && e->length == e->file->size;
}

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
    if (sp->o.tree)
        return ws_error_set(err, WS_ERR_CORRUPT, "restored file \"%s\": %s", f->path, msg);
    return 0;
}

unsigned ws_bundle_file_mode(uint32_t manifest_mode, int group_access)
{
    return manifest_mode & (group_access ? 0640u : 0600u);
}

/* Patch mode: of bytes [off, off + n) of file f, those of blocks still wanted go in; a block's
 * bit is cleared with its last byte (end: where the file ends in this layer). */
static int patch_write(struct splitter *sp, const struct ws_bfile *f, const uint8_t *p, size_t n,
                       uint64_t off, uint64_t end, struct ws_error *err)
{
    uint32_t bs = sp->o.block_size;

    while (n > 0) {
        uint64_t b = off / bs, stop = (b + 1) * bs;
        size_t k = stop - off < n ? (size_t)(stop - off) : n;
        if (b < sp->nbits && (sp->bits[b / 8] >> (b % 8)) & 1) {
            if (ws_pwrite_all(sp->fd, p, k, (off_t)off) != 0)
                return ws_error_setsys(err, WS_ERR_IO, errno, "could not write file \"%s/%s\"",
                                       sp->o.tree->name, f->path);
            if (off + k == stop || off + k == end)
                sp->bits[b / 8] &= (uint8_t) ~(1u << (b % 8));
        }
        p += k, n -= k, off += k;
    }
    return 0;
}

/* A block of a delta extent: into the file at its offset. */
static int delta_block(void *arg, uint64_t off, const uint8_t *p, size_t n, struct ws_error *err)
{
    struct splitter *sp = arg;
    const struct ws_bfile *f = sp->ext[sp->cur].file;

    if (sp->fd >= 0 && sp->o.patch)
        return patch_write(sp, f, p, n, off, sp->dr.size, err);
    if (sp->fd >= 0 && ws_pwrite_all(sp->fd, p, n, (off_t)off) != 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not write file \"%s/%s\"",
                               sp->o.tree->name, f->path);
    return 0;
}

static int start_extent(struct splitter *sp, struct ws_error *err)
{
    const struct ws_bextent *e = &sp->ext[sp->cur];

    sp->cur_open = 1;
    sp->cur_done = 0;
    sp->flushed = 0;
    if (e->delta) {
        ws_delta_reader_init(&sp->dr, sp->o.block_size, e->length, e->file->path);
        sp->dr.block = delta_block;
        sp->dr.arg = sp;
        sp->dr_bad = 0;
    } else if (whole(e) && EVP_DigestInit_ex(sp->md, EVP_sha256(), NULL) != 1) {
        return ws_error_set(err, WS_ERR_INTERNAL, "SHA-256 failed");
    }
    if (!sp->o.tree)
        return 0;
    if (sp->o.patch) {
        if (!(sp->bits = sp->o.patch(sp->o.patch_arg, e->file, &sp->nbits)))
            return 0; /* nothing wanted of it any more */
        return ws_tree_open_own(sp->o.tree, &sp->dir, e->file->path, O_WRONLY, &sp->fd, err);
    }
    /* a file in pieces was created by the caller, a delta's file by an earlier layer */
    return ws_tree_open(sp->o.tree, &sp->dir, e->file->path,
                        whole(e) ? O_WRONLY | O_CREAT | O_EXCL : O_WRONLY, 0600, &sp->fd, err);
}

/* A delta extent's bytes: decoded, its blocks written. A malformed extent is a problem of the
 * file: the end of a restore, in verify mode reported once and the rest of it dropped. */
static int feed_delta(struct splitter *sp, const uint8_t *p, size_t n, struct ws_error *err)
{
    int rc;

    if (sp->dr_bad || (rc = ws_delta_reader_feed(&sp->dr, p, n, err)) == 0)
        return 0;
    if (rc != WS_ERR_CORRUPT)
        return rc;
    problem(sp, sp->ext[sp->cur].file, err->msg);
    sp->dr_bad = 1;
    return sp->o.tree ? rc : 0;
}

/* The end of a delta extent: it must record the file's size; the file is cut to it. */
static int end_delta(struct splitter *sp, const struct ws_bextent *e, struct ws_error *err)
{
    const struct ws_bfile *f = e->file;
    uint64_t size = 0;
    int rc = 0;

    if (!sp->dr_bad && (rc = ws_delta_reader_end(&sp->dr, &size, err)) == 0 && size != f->size)
        rc = ws_error_set(err, WS_ERR_CORRUPT,
                          "delta extent of \"%s\": file size %" PRIu64
                          ", the manifest says %" PRIu64,
                          f->path, size, f->size);
    if (rc == WS_ERR_CORRUPT) {
        problem(sp, f, err->msg);
        sp->dr_bad = 1;
        rc = sp->o.tree ? rc : 0;
    }
    if (rc == 0 && !sp->dr_bad && sp->fd >= 0 && !sp->o.patch &&
        ftruncate(sp->fd, (off_t)size) != 0)
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not truncate file \"%s/%s\"",
                             sp->o.tree->name, f->path);
    if (sp->fd >= 0 && close(sp->fd) != 0 && rc == 0)
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not write file \"%s/%s\"",
                             sp->o.tree->name, f->path);
    sp->fd = -1;
    ws_delta_reader_free(&sp->dr);
    sp->cur++;
    if (rc == 0 && !sp->dr_bad)
        sp->good++;
    return rc;
}

static int end_extent(struct splitter *sp, struct ws_error *err)
{
    const struct ws_bextent *e = &sp->ext[sp->cur];
    const struct ws_bfile *f = e->file;
    uint8_t digest[32];
    int rc = 0;

    sp->cur_open = 0;
    if (e->delta)
        return end_delta(sp, e, err);
    if (sp->fd >= 0) {
        if (e->length > sp->flushed)
            sync_file_range(sp->fd, (off_t)(e->file_offset + sp->flushed), 0,
                            SYNC_FILE_RANGE_WRITE);
        if (whole(e) && !sp->o.patch) {
            struct timespec ts[2] = {{f->mtime, 0}, {f->mtime, 0}};
            if (fchmod(sp->fd, ws_bundle_file_mode(f->mode, sp->o.group_access)) != 0 ||
                futimens(sp->fd, ts) != 0)
                rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not set attributes of \"%s/%s\"",
                                     sp->o.tree->name, f->path);
        }
        if (close(sp->fd) != 0 && rc == 0)
            rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not write file \"%s/%s\"",
                                 sp->o.tree->name, f->path);
        sp->fd = -1;
        if (rc)
            return rc;
    }
    sp->cur++;
    if (whole(e)) {
        if (EVP_DigestFinal_ex(sp->md, digest, NULL) != 1)
            return ws_error_set(err, WS_ERR_INTERNAL, "SHA-256 failed");
    } else if (e->md && e->file_offset + e->length == f->size) {
        if (EVP_DigestFinal_ex(e->md, digest, NULL) != 1)
            return ws_error_set(err, WS_ERR_INTERNAL, "SHA-256 failed");
    } else {
        return 0; /* a piece: authenticated with its object, digest not checked here */
    }
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

    while (len > 0 || (sp->cur < sp->next && !sp->cur_open && sp->ext[sp->cur].offset == sp->pos &&
                       sp->ext[sp->cur].length == 0)) {
        const struct ws_bextent *e;
        uint64_t want;
        size_t n;

        if (sp->cur >= sp->next && sp->o.sparse) {
            sp->pos += len; /* after the last extent wanted */
            return 0;
        }
        if (sp->cur >= sp->next)
            return ws_error_set(err, WS_ERR_CORRUPT, "bundle holds more bytes than its files");
        e = &sp->ext[sp->cur];
        if (!sp->cur_open && sp->o.sparse && e->offset > sp->pos) {
            n = e->offset - sp->pos < len ? (size_t)(e->offset - sp->pos) : len;
            p += n;
            len -= n;
            sp->pos += n;
            continue;
        }
        if (!sp->cur_open) {
            if (e->offset != sp->pos)
                return ws_error_set(err, WS_ERR_CORRUPT,
                                    "bundle offset of \"%s\" does not follow the previous file",
                                    e->file->path);
            if ((rc = start_extent(sp, err)) != 0)
                return rc;
        }
        want = e->length - sp->cur_done;
        n = want < len ? (size_t)want : len;
        if (n > 0 && e->delta) {
            if ((rc = feed_delta(sp, p, n, err)) != 0)
                return rc;
            p += n;
            len -= n;
            sp->pos += n;
            sp->cur_done += n;
        } else if (n > 0) {
            EVP_MD_CTX *md = whole(e) ? sp->md : e->md;
            if (md && EVP_DigestUpdate(md, p, n) != 1)
                return ws_error_set(err, WS_ERR_INTERNAL, "SHA-256 failed");
            if (sp->fd >= 0 && sp->o.patch) {
                if ((rc = patch_write(sp, e->file, p, n, e->file_offset + sp->cur_done,
                                      e->file->size, err)) != 0)
                    return rc;
            } else if (sp->fd >= 0) {
                int wrc =
                    whole(e)
                        ? ws_write_all(sp->fd, p, n)
                        : (ws_pwrite_all(sp->fd, p, n, (off_t)(e->file_offset + sp->cur_done)));
                if (wrc != 0)
                    return ws_error_setsys(err, WS_ERR_IO, errno, "could not write file \"%s/%s\"",
                                           sp->o.tree->name, e->file->path);
            }
            p += n;
            len -= n;
            sp->pos += n;
            sp->cur_done += n;
            /* Start writeback as we go: the caller's final sync then waits for little, and
             * the disk works while we decompress. */
            if (sp->fd >= 0 && sp->cur_done - sp->flushed >= WRITEBACK_STEP) {
                sync_file_range(sp->fd, (off_t)(e->file_offset + sp->flushed),
                                (off_t)(sp->cur_done - sp->flushed), SYNC_FILE_RANGE_WRITE);
                sp->flushed = sp->cur_done;
            }
        }
        if (sp->cur_done == e->length && (rc = end_extent(sp, err)) != 0)
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
    if (sp->cur < sp->next) {
        size_t i;
        for (i = sp->cur; i < sp->next; i++)
            problem(sp, sp->ext[i].file, "missing from its bundle (bundle is shorter)");
        return ws_error_set(err, WS_ERR_CORRUPT, "bundle ends before file \"%s\"",
                            sp->ext[sp->cur].file->path);
    }
    if (sp->bad && sp->o.tree)
        return ws_error_set(err, WS_ERR_CORRUPT, "bundle holds damaged files");
    return 0;
}

static void splitter_abort(struct ws_sink *s)
{
    struct splitter *sp = (struct splitter *)s;

    ws_delta_reader_free(&sp->dr);
    if (sp->fd >= 0) {
        close(sp->fd);
        sp->fd = -1;
    }
    ws_tree_cursor_close(&sp->dir);
}

static void splitter_destroy(struct ws_sink *s)
{
    struct splitter *sp = (struct splitter *)s;

    if (sp->fd >= 0)
        close(sp->fd);
    ws_tree_cursor_close(&sp->dir);
    ws_delta_reader_free(&sp->dr);
    EVP_MD_CTX_free(sp->md);
    free(sp->ext);
    free(sp);
}

static const struct ws_sink_ops splitter_ops = {"bundle", splitter_write, splitter_finish,
                                                splitter_abort, splitter_destroy};

int ws_bundle_splitter_new_ext(const struct ws_bextent *ext, size_t next,
                               const struct ws_bundle_opts *o, struct ws_sink **out,
                               struct ws_error *err)
{
    struct splitter *sp = calloc(1, sizeof(*sp));

    *out = NULL;
    if (o->patch && o->block_size == 0) {
        free(sp);
        return ws_error_set(err, WS_ERR_INTERNAL, "bundle splitter: patch mode without block size");
    }
    if (!sp || !(sp->md = EVP_MD_CTX_new()) ||
        !(sp->ext = malloc((next ? next : 1) * sizeof(*ext)))) {
        if (sp)
            EVP_MD_CTX_free(sp->md);
        free(sp);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    }
    if (next)
        memcpy(sp->ext, ext, next * sizeof(*ext));
    sp->base.ops = &splitter_ops;
    sp->next = next;
    sp->o = *o;
    sp->fd = -1;
    sp->dir.fd = -1;
    *out = &sp->base;
    return 0;
}

int ws_bundle_splitter_new(const struct ws_bfile *const *files, size_t nfiles,
                           const struct ws_bundle_opts *o, struct ws_sink **out,
                           struct ws_error *err)
{
    struct ws_bextent *ext = calloc(nfiles ? nfiles : 1, sizeof(*ext));
    size_t i;
    int rc;

    if (!ext)
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    for (i = 0; i < nfiles; i++) {
        ext[i].file = files[i];
        ext[i].length = files[i]->size;
        ext[i].offset = files[i]->offset;
    }
    rc = ws_bundle_splitter_new_ext(ext, nfiles, o, out, err);
    free(ext);
    return rc;
}

size_t ws_bundle_splitter_good(const struct ws_sink *s)
{
    return ((const struct splitter *)s)->good;
}

size_t ws_bundle_splitter_bad(const struct ws_sink *s)
{
    return ((const struct splitter *)s)->bad;
}

struct sortable {
    struct ws_bextent e;
    uint32_t bundle;
};

static int cmp_extent(const void *a, const void *b)
{
    const struct sortable *x = a, *y = b;

    if (x->bundle != y->bundle)
        return x->bundle < y->bundle ? -1 : 1;
    if (x->e.offset != y->e.offset)
        return x->e.offset < y->e.offset ? -1 : 1;
    return x->e.length < y->e.length ? -1 : x->e.length > y->e.length; /* empty files first */
}

/* The extents of record f into s (none for REF); their count. */
static size_t file_extents(const struct ws_bfile *f, struct sortable *s)
{
    size_t x = 0, k;

    if (f->kind == WS_BFILE_REF)
        return 0;
    s[x].e.file = f;
    s[x].e.length = f->kind == WS_BFILE_DELTA ? f->length
                    : f->npieces              ? f->pieces[0].file_offset
                                              : f->size;
    s[x].e.delta = f->kind == WS_BFILE_DELTA;
    s[x].e.offset = f->offset;
    s[x++].bundle = f->bundle;
    for (k = 0; f->kind == WS_BFILE_WHOLE && k < f->npieces; k++) {
        s[x].e.file = f;
        s[x].e.file_offset = f->pieces[k].file_offset;
        s[x].e.length = f->pieces[k].length;
        s[x].e.offset = f->pieces[k].offset;
        s[x++].bundle = f->pieces[k].bundle;
    }
    return x;
}

/* Record i: of the pointers given, or of the manifest's array. */
static const struct ws_bfile *record(const struct ws_bfile *all,
                                     const struct ws_bfile *const *files, size_t i)
{
    return files ? files[i] : all + i;
}

/* The records m->files (files NULL) or files[0..nfiles) in extents sorted by (bundle, offset). */
static int extents(const struct ws_bfile *all, const struct ws_bfile *const *files, size_t nfiles,
                   uint32_t bundles, struct ws_bextent **ext, size_t **first, size_t *next,
                   struct ws_error *err)
{
    struct sortable *s = NULL;
    size_t n = nfiles, i, k, x = 0;

    *ext = NULL;
    *first = NULL;
    for (i = 0; i < nfiles; i++)
        n += record(all, files, i)->npieces;
    if (!(s = calloc(n ? n : 1, sizeof(*s))) || !(*ext = malloc((n ? n : 1) * sizeof(**ext))) ||
        !(*first = calloc((size_t)bundles + 1, sizeof(**first)))) {
        free(s);
        free(*ext);
        *ext = NULL;
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    }
    for (i = 0; i < nfiles; i++)
        x += file_extents(record(all, files, i), s + x);
    n = x;
    if (n > 1)
        qsort(s, n, sizeof(*s), cmp_extent);
    for (i = 0, k = 0; k <= bundles; k++) {
        while (i < n && s[i].bundle < k)
            i++;
        (*first)[k] = i;
    }
    for (i = 0; i < n; i++)
        (*ext)[i] = s[i].e;
    free(s);
    *next = n;
    return 0;
}

int ws_bundle_extents(const struct ws_manifest *m, struct ws_bextent **ext, size_t **first,
                      size_t *next, struct ws_error *err)
{
    return extents(m->files, NULL, m->nfiles, m->bundles, ext, first, next, err);
}

int ws_bundle_extents_of(const struct ws_bfile *const *files, size_t nfiles, uint32_t bundles,
                         struct ws_bextent **ext, size_t **first, size_t *next,
                         struct ws_error *err)
{
    return extents(NULL, files, nfiles, bundles, ext, first, next, err);
}
