/*
 * objrewrite - rewrites one repository object with one content byte changed, for the integration
 * tests: damage that the object layer cannot see (the object is written anew, authenticated with
 * the configured key), so only the manifest's SHA-256 of the files in it can.
 *
 *   objrewrite CONFIG_FILE KEY OFFSET
 *
 * Reads object KEY (checked as every reader checks it), inverts every bit of content byte OFFSET
 * and stores the result under KEY again (replacing it) with the configuration's compression and
 * write key, without a content digest (as backup bundles are written).
 * Exit status: 0 rewritten; 1 any error (one line on stderr); 2 usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/config.h"
#include "io/key.h"
#include "io/object.h"
#include "repo/repo.h"
#include "storage/storage.h"

#define LIMIT (1u << 30)

int main(int argc, char **argv)
{
    struct ws_config cfg;
    struct ws_keyring kr = {0};
    struct ws_repo repo = {0};
    struct ws_error err = {0};
    struct ws_sink *buf = NULL, *reader = NULL, *put = NULL, *writer = NULL;
    struct ws_object_params p = {0};
    const uint8_t *data;
    uint8_t *copy = NULL;
    unsigned long long off;
    char *end;
    size_t len = 0;
    int rc, repo_open = 0;

    if (argc != 4 || !*argv[3] || (errno = 0, off = strtoull(argv[3], &end, 10), errno || *end)) {
        fprintf(stderr, "usage: objrewrite CONFIG_FILE KEY OFFSET\n");
        return 2;
    }
    ws_config_init(&cfg);
    if ((rc = ws_config_load(&cfg, argv[1], &err)) != 0 ||
        (rc = ws_keyring_load(&cfg, &kr, &err)) != 0 || (rc = ws_repo_open(&cfg, &repo, &err)) != 0)
        goto out;
    repo_open = 1;

    /* read: the reader owns buf */
    if ((rc = ws_buffer_sink_new(LIMIT, &buf, &err)) != 0 ||
        (rc = ws_object_reader_new(buf, argv[2], &kr, 0, &reader, &err)) != 0 ||
        (rc = ws_storage_get(repo.st, argv[2], 0, WS_STORAGE_TO_END, reader, &err)) != 0 ||
        (rc = ws_sink_finish(reader, &err)) != 0)
        goto out;
    data = ws_buffer_sink_data(buf, &len);
    if (off >= len) {
        rc = ws_error_set(&err, WS_ERR_USAGE, "object %s holds %zu bytes, no byte %llu", argv[2],
                          len, off);
        goto out;
    }
    if (!(copy = malloc(len))) {
        rc = ws_error_set(&err, WS_ERR_INTERNAL, "out of memory");
        goto out;
    }
    memcpy(copy, data, len);
    copy[off] ^= 0xFF;

    /* write: the writer owns put */
    p.name = argv[2];
    p.compress = cfg.compress;
    p.level = cfg.compress_level;
    p.content_size = (int64_t)len;
    p.key = ws_keyring_write_key(&kr);
    p.no_digest = 1;
    if ((rc = ws_storage_open_put(repo.st, argv[2], WS_PUT_REPLACE, &put, &err)) != 0)
        goto out;
    if ((rc = ws_object_writer_new(put, &p, &writer, &err)) != 0)
        goto out;
    if ((rc = ws_sink_write(writer, copy, len, &err)) != 0 ||
        (rc = ws_sink_finish(writer, &err)) != 0)
        goto out;
out:
    if (rc)
        fprintf(stderr, "objrewrite: %s\n", err.msg);
    ws_sink_free(writer);
    ws_sink_free(reader);
    free(copy);
    if (repo_open)
        ws_repo_close(&repo);
    ws_keyring_wipe(&kr);
    ws_config_free(&cfg);
    return rc ? 1 : 0;
}
