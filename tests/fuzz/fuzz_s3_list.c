/*
 * fuzz_s3_list - ListObjectsV2 answers (s3_parse.h: ws_s3_list_parse) and the listing guard.
 * Whatever the input: no read outside it, every key handed on is terminated, non-empty and at
 * most WS_S3_KEY_MAX bytes, a truncated page has a token within WS_S3_TOKEN_MAX, a refused
 * page says why, and the guard recognises every key and token it was given.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "storage/s3_parse.h"

struct seen {
    struct ws_s3_list_guard guard;
    size_t keys;
};

static int on_key(void *arg, const char *key, uint64_t size, struct ws_error *err)
{
    struct seen *s = arg;
    size_t len = strlen(key);
    int fresh;

    (void)err;
    if (len == 0 || len > WS_S3_KEY_MAX || size > INT64_MAX)
        abort();
    fresh = ws_s3_list_guard_key(&s->guard, key);
    if (fresh < 0 || ws_s3_list_guard_key(&s->guard, key) != 0)
        abort();
    s->keys++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ws_s3_list_page page;
    struct seen s = {{{NULL, 0, 0}, {NULL, 0, 0}, 0, 0}, 0};
    struct ws_error err = {0};
    int rc = ws_s3_list_parse((const char *)data, size, on_key, &s, &page, &err);

    if (rc == 0) {
        if (page.keys != s.keys)
            abort();
        if (page.truncated) {
            size_t tl = strlen(page.next_token);
            if (tl == 0 || tl > WS_S3_TOKEN_MAX ||
                ws_s3_list_guard_token(&s.guard, page.next_token) != 0 ||
                ws_s3_list_guard_token(&s.guard, page.next_token) != 1)
                abort();
        }
        (void)ws_s3_list_guard_page(&s.guard, s.keys);
    } else if (rc != WS_ERR_STORAGE || !err.msg[0]) {
        abort();
    }
    ws_s3_list_guard_free(&s.guard);
    return 0;
}
