/*
 * fuzz_tar: a tar archive as BASE_BACKUP sends it from another host (io/tar.h), where a hostile
 * or broken server may send anything.
 *
 * The first byte chooses how the source is cut (fills of 1 + byte % 61 bytes) and how members
 * are read (byte >= 128: skipped, else in pieces of 1 + byte % 13 bytes); the rest is the archive.
 * Properties: no crash, leak or undefined behaviour; a refusal is WS_ERR_CORRUPT with a message
 * about the tar archive (or WS_ERR_INTERNAL, out of memory); every member has a relative path of
 * at most 255 bytes without an empty, "." or ".." component, one of the three types, data only
 * for files, mode bits only, a link target for links; a member's data is exactly its size; the
 * offset only grows and stays within the input; and the verdict and the member list do not
 * depend on how the source is cut or whether data is read.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/tar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

struct src {
    const uint8_t *data;
    size_t len, pos, chunk;
};

static int fill(void *arg, const uint8_t **data, size_t *len, struct ws_error *err)
{
    struct src *s = arg;

    (void)err;
    *data = s->data + s->pos;
    *len = s->len - s->pos < s->chunk ? s->len - s->pos : s->chunk;
    s->pos += *len;
    return 0;
}

static void check_member(const struct ws_tar_member *m)
{
    size_t n = strlen(m->path);

    check(n > 0 && n <= 255 && m->path[0] != '/' && m->path[n - 1] != '/');
    check(strstr(m->path, "//") == NULL && strcmp(m->path, ".") != 0 &&
          strcmp(m->path, "..") != 0 && strncmp(m->path, "./", 2) != 0 &&
          strncmp(m->path, "../", 3) != 0 && strstr(m->path, "/./") == NULL &&
          strstr(m->path, "/../") == NULL);
    check(n < 2 || strcmp(m->path + n - 2, "/.") != 0);
    check(n < 3 || strcmp(m->path + n - 3, "/..") != 0);
    check(m->type == WS_TAR_FILE || m->type == WS_TAR_DIR || m->type == WS_TAR_SYMLINK);
    check(m->type == WS_TAR_FILE || m->size == 0);
    check((m->type == WS_TAR_SYMLINK) == (m->linkname[0] != '\0'));
    check(m->mode <= 07777);
}

/* Reads the archive; the members' paths and sizes go into sig (a running hash). */
static int read_all(const uint8_t *data, size_t size, size_t chunk, size_t piece, uint64_t *sig,
                    size_t *count)
{
    struct src s = {data, size, 0, chunk};
    struct ws_error err = {0};
    struct ws_tar_member m;
    struct ws_tar *t = NULL;
    uint8_t buf[16];
    uint64_t last = 0;
    int rc, end = 0;

    *sig = 1469598103934665603u;
    *count = 0;
    if ((rc = ws_tar_open(&t, fill, &s, &err)) != 0)
        return rc;
    while ((rc = ws_tar_next(t, &m, &end, &err)) == 0 && !end) {
        uint64_t total = 0;
        size_t got = 0;
        check_member(&m);
        for (const char *c = m.path; *c; c++)
            *sig = (*sig ^ (uint8_t)*c) * 1099511628211u;
        *sig = (*sig ^ m.size ^ (uint64_t)m.type << 62) * 1099511628211u;
        ++*count;
        while (piece && (rc = ws_tar_read(t, buf, piece, &got, &err)) == 0 && got > 0)
            total += got;
        if (rc != 0)
            break;
        check(!piece || total == m.size);
        check(ws_tar_offset(t) >= last && ws_tar_offset(t) <= size);
        last = ws_tar_offset(t);
    }
    check(ws_tar_offset(t) <= size);
    if (rc != 0)
        check((rc == WS_ERR_CORRUPT && strncmp(err.msg, "tar ", 4) == 0) || rc == WS_ERR_INTERNAL);
    ws_tar_free(t);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t sig1, sig2;
    size_t n1, n2, chunk, piece;
    int rc1, rc2;

    if (size < 1)
        return 0;
    chunk = 1 + data[0] % 61;
    piece = data[0] >= 128 ? 0 : 1 + data[0] % 13;
    rc1 = read_all(data + 1, size - 1, chunk, piece, &sig1, &n1);
    rc2 = read_all(data + 1, size - 1, size, 16, &sig2, &n2);
    check(rc1 == rc2);
    check(rc1 != 0 || (sig1 == sig2 && n1 == n2));
    return 0;
}
