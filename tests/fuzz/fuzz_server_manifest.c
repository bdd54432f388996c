/*
 * fuzz_server_manifest: the backup_manifest a PostgreSQL server sends after BASE_BACKUP
 * (pg/server_manifest.h), which create reads from another host.
 *
 * The input is fed whole, then again in chunks whose sizes come from its first byte. Properties:
 * no crash, leak or undefined behaviour; both feedings reach the same verdict with the same files;
 * a refusal is WS_ERR_CORRUPT naming the manifest (or WS_ERR_INTERNAL); every file handed over has
 * a non-empty path without NUL of at most WS_SMF_PATH_MAX - 1 bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pg/server_manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

struct tally {
    uint64_t files, bytes, sum;
};

static int on_file(void *arg, const struct ws_smf_file *f, struct ws_error *err)
{
    struct tally *t = arg;
    size_t n = strlen(f->path);

    (void)err;
    check(n > 0 && n < WS_SMF_PATH_MAX);
    t->files++;
    t->bytes += f->size;
    for (size_t i = 0; i < n; i++)
        t->sum = t->sum * 31 + (uint8_t)f->path[i];
    t->sum += f->crc32c;
    return 0;
}

static int feed(const uint8_t *data, size_t size, size_t chunk, struct tally *t)
{
    struct ws_error err = {0};
    struct ws_smf *r = NULL;
    int rc;

    if (ws_smf_new("fuzz manifest", on_file, t, &r, &err) != 0)
        return WS_ERR_INTERNAL;
    rc = 0;
    for (size_t at = 0; rc == 0 && at < size; at += chunk)
        rc = ws_smf_feed(r, data + at, size - at < chunk ? size - at : chunk, &err);
    if (rc == 0)
        rc = ws_smf_finish(r, &err);
    check(rc == 0 || rc == WS_ERR_INTERNAL ||
          (rc == WS_ERR_CORRUPT && strstr(err.msg, "fuzz manifest") != NULL));
    ws_smf_free(r);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tally a = {0}, b = {0};
    int ra, rb;

    ra = feed(data, size, size ? size : 1, &a);
    rb = feed(data, size, size ? (size_t)data[0] % 17 + 1 : 1, &b);
    check(ra == rb);
    check(a.files == b.files && a.bytes == b.bytes && a.sum == b.sum);
    return 0;
}
