/*
 * fuzz_config: a configuration file's bytes through the parser (config.h), the way
 * ws_config_load() reads a file: parse_text, then the checks on what it accepted. Also the
 * connection-string password detection on the text, and the size and duration parsers.
 *
 * Properties: no crash, leak or undefined behaviour; a parsed configuration holds values within
 * each key's range; a refusal is WS_ERR_CONFIG with a NUL-terminated message. Nothing touches the
 * environment or the file system (ws_config_load is not called), so runs are independent.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/config.h"
#include "base/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    ws_log_set_level(WS_LOG_ERROR); /* "set again" warnings would flood the output */
    return 0;
}

static void check(int ok)
{
    if (!ok)
        abort();
}

/* A message may quote a value with control characters: log.c escapes them on output. */
static void check_message(const struct ws_error *err)
{
    check(strnlen(err->msg, sizeof(err->msg)) < sizeof(err->msg));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ws_config cfg;
    struct ws_error err = {0};
    char *text = malloc(size + 1);
    int64_t v;

    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    ws_config_init(&cfg);
    if (ws_config_parse_text(&cfg, text, "fuzz.conf", &err) == 0) {
        check(cfg.compress == WS_COMPRESS_NONE || cfg.compress == WS_COMPRESS_ZSTD);
        check(cfg.compress_level >= 1 && cfg.compress_level <= 19);
        check(cfg.parallel >= 1 && cfg.parallel <= 256);
        check(cfg.timeout >= 1 && cfg.timeout <= 86400);
        check(cfg.retries >= 1 && cfg.retries <= 100);
        check(cfg.fetch_error >= WS_FETCH_ERROR_AUTO && cfg.fetch_error <= WS_FETCH_ERROR_MISSING);
        check(cfg.retain_time >= 0 && cfg.s3_part_size >= (5 << 20));
        if (cfg.cluster)
            check(strlen(cfg.cluster) >= 1 && strlen(cfg.cluster) <= 64 &&
                  strspn(cfg.cluster, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                      "0123456789._-") == strlen(cfg.cluster));
        if (cfg.pg_conninfo)
            (void)ws_conninfo_has_password(cfg.pg_conninfo);
    } else {
        check(err.code == WS_ERR_CONFIG || err.code == WS_ERR_INTERNAL);
        check_message(&err);
    }
    ws_config_free(&cfg);

    (void)ws_conninfo_has_password(text);
    if (ws_parse_size(text, &v) == 0)
        check(v >= 0);
    if (ws_parse_duration(text, &v) == 0)
        check(v >= 0);
    free(text);
    return 0;
}
