/*
 * objforge - stores a valid but hostile object, for the integration tests: a few KiB that
 * decode to far more than any WAL file holds (what someone who can write to an unencrypted
 * repository could plant).
 *
 *   objforge CONFIG_FILE KEY BYTES
 *
 * Stores under KEY (replacing it) an unencrypted, zstd-compressed object (level 3, the
 * checksum bound to KEY as every reader checks it) whose content is BYTES zero bytes. Prints
 * the stored size on stdout. Exit status: 0 stored; 1 any error (one line on stderr); 2 usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/config.h"
#include "io/object.h"
#include "storage/storage.h"

int main(int argc, char **argv)
{
    static const uint8_t zeros[1 << 20];
    struct ws_config cfg;
    struct ws_storage *st = NULL;
    struct ws_error err = {0};
    struct ws_sink *put = NULL, *writer = NULL;
    struct ws_object_params p = {0};
    struct ws_object_info info;
    unsigned long long bytes;
    char *end;
    int rc;

    if (argc != 4 || !*argv[3] || (errno = 0, bytes = strtoull(argv[3], &end, 10), errno || *end)) {
        fprintf(stderr, "usage: objforge CONFIG_FILE KEY BYTES\n");
        return 2;
    }
    ws_config_init(&cfg);
    if ((rc = ws_config_load(&cfg, argv[1], &err)) != 0 ||
        (rc = ws_storage_open(&cfg, &st, &err)) != 0)
        goto out;
    p.name = argv[2];
    p.compress = WS_COMPRESS_ZSTD;
    p.level = 3;
    p.content_size = (int64_t)bytes;
    if ((rc = ws_storage_open_put(st, argv[2], WS_PUT_REPLACE, &put, &err)) != 0)
        goto out;
    rc = ws_object_writer_new(put, &p, &writer, &err);
    put = NULL; /* owned by the writer */
    if (rc != 0)
        goto out;
    for (unsigned long long done = 0; rc == 0 && done < bytes;) {
        size_t n = bytes - done < sizeof(zeros) ? (size_t)(bytes - done) : sizeof(zeros);
        rc = ws_sink_write(writer, zeros, n, &err);
        done += n;
    }
    if (rc == 0 && (rc = ws_sink_finish(writer, &err)) == 0) {
        ws_object_writer_info(writer, &info);
        printf("%llu\n", (unsigned long long)info.stored_len);
    }
out:
    if (rc)
        fprintf(stderr, "objforge: %s\n", err.msg);
    ws_sink_free(writer);
    ws_storage_close(st);
    ws_config_free(&cfg);
    return rc ? 1 : 0;
}
