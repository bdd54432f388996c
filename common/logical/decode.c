/*
 * decode.c - `logicalbackup decode --key-file F < object > dump`: one object of a logical backup
 * (downloaded by any means, e.g. through a link) back into the dump pg_dump wrote, with the key
 * file and nothing else (dump objects are bound to one fixed name: repo/logical.h).
 *
 * An encrypted object reaches the output only in authenticated chunks; an unencrypted one is
 * checked at its end, so after a failure the output may hold bytes: the command then fails.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fs.h"
#include "logical/logical_int.h"
#include "repo/logical.h"

struct fd_sink {
    struct ws_sink base;
    int fd;
};

static int fd_write(struct ws_sink *s, const void *buf, size_t len, struct ws_error *err)
{
    if (ws_write_all(((struct fd_sink *)s)->fd, buf, len) != 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not write to standard output");
    return 0;
}

static void fd_destroy(struct ws_sink *s)
{
    free(s);
}

static const struct ws_sink_ops fd_sink_ops = {"fd", fd_write, NULL, NULL, fd_destroy};

int ws_logical_decode(const char *key_file, int in, int out, struct ws_error *err)
{
    static uint8_t buf[256 * 1024];
    struct ws_keyring kr = {0};
    struct fd_sink *fs = NULL;
    struct ws_sink *r = NULL;
    int rc;

    if ((rc = ws_key_load(key_file, "--key-file", &kr.keys[0], err)) != 0)
        goto out;
    kr.n = 1;
    if (!(fs = calloc(1, sizeof(*fs)))) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        goto out;
    }
    fs->base.ops = &fd_sink_ops;
    fs->fd = out;
    if ((rc = ws_logical_reader_new(&fs->base, &kr, &r, err)) != 0)
        goto out;
    for (;;) {
        ssize_t n = read(in, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not read standard input");
            goto out;
        }
        if (n == 0)
            break;
        if ((rc = ws_sink_write(r, buf, (size_t)n, err)) != 0)
            goto out;
    }
    rc = ws_sink_finish(r, err);
out:
    if (rc)
        ws_error_prefix(err, "could not decode the object on standard input");
    ws_sink_free(r);
    ws_keyring_wipe(&kr);
    return rc;
}
