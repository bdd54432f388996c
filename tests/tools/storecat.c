/*
 * storecat - raw storage operations from the shell, for the integration tests: the storage layer
 * (common/storage/storage.h) of a configured repository with its retries (`retries` of the config),
 * without the object format, so a test can drive one request kind through a fault and compare
 * bytes with an independent client.
 *
 *   storecat CONFIG_FILE put [--replace] KEY   stores standard input under KEY (relative to the
 *                                              repository, as the programs' keys are)
 *   storecat CONFIG_FILE get KEY               writes the object to standard output
 *
 * Warnings (one per retry) and errors go to stderr. Exit status: 0 done; 1 any error (one line
 * on stderr); 2 usage.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/config.h"
#include "base/log.h"
#include "storage/storage.h"

static int stdout_write(struct ws_sink *s, const void *buf, size_t len, struct ws_error *err)
{
    (void)s;
    if (len && fwrite(buf, 1, len, stdout) != len)
        return ws_error_set(err, WS_ERR_IO, "could not write standard output");
    return 0;
}

static const struct ws_sink_ops stdout_ops = {"stdout", stdout_write, NULL, NULL, NULL};

int main(int argc, char **argv)
{
    struct ws_config cfg;
    struct ws_storage *st = NULL;
    struct ws_error err = {0};
    struct ws_sink *put = NULL, out = {&stdout_ops, NULL, 0};
    int replace = argc == 5 && strcmp(argv[3], "--replace") == 0, rc;
    const char *key = argv[argc - 1];
    static char buf[1 << 16];

    if (argc < 4 || argc > 5 || (argc == 5 && !replace) ||
        (strcmp(argv[2], "put") != 0 && strcmp(argv[2], "get") != 0) ||
        (strcmp(argv[2], "get") == 0 && argc != 4)) {
        fprintf(stderr, "usage: storecat CONFIG_FILE put [--replace] KEY < data\n"
                        "       storecat CONFIG_FILE get KEY > data\n");
        return 2;
    }
    ws_log_init("storecat");
    ws_config_init(&cfg);
    if ((rc = ws_config_load(&cfg, argv[1], &err)) != 0 ||
        (rc = ws_storage_open(&cfg, &st, &err)) != 0)
        goto out;
    if (strcmp(argv[2], "get") == 0) {
        if ((rc = ws_storage_get(st, key, 0, WS_STORAGE_TO_END, &out, &err)) == 0 &&
            fflush(stdout) != 0)
            rc = ws_error_set(&err, WS_ERR_IO, "could not write standard output");
        goto out;
    }
    if ((rc = ws_storage_open_put(st, key, replace ? WS_PUT_REPLACE : 0, &put, &err)) != 0)
        goto out;
    for (;;) {
        ssize_t n = read(0, buf, sizeof(buf));
        if (n < 0) {
            rc = ws_error_setsys(&err, WS_ERR_IO, errno, "could not read standard input");
            goto out;
        }
        if (n == 0)
            break;
        if ((rc = ws_sink_write(put, buf, (size_t)n, &err)) != 0)
            goto out;
    }
    rc = ws_sink_finish(put, &err);
out:
    if (rc)
        fprintf(stderr, "storecat: %s\n", err.msg);
    ws_sink_free(put);
    ws_storage_close(st);
    ws_config_free(&cfg);
    return rc ? 1 : 0;
}
