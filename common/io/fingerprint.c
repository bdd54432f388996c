#include "io/fingerprint.h"

#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

struct fp_sink {
    struct ws_sink base;
    XXH3_state_t *state;
    uint64_t len;
    uint8_t fp[WS_FINGERPRINT_SIZE];
};

/* Big-endian, XXH128's canonical form: the same bytes on every machine. */
static void canonical(XXH128_hash_t h, uint8_t fp[WS_FINGERPRINT_SIZE])
{
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, h);
    memcpy(fp, c.digest, WS_FINGERPRINT_SIZE);
}

static int fp_write(struct ws_sink *s, const void *buf, size_t len, struct ws_error *err)
{
    struct fp_sink *f = (struct fp_sink *)s;
    if (len && XXH3_128bits_update(f->state, buf, len) != XXH_OK)
        return ws_error_set(err, WS_ERR_INTERNAL, "XXH3 update failed");
    f->len += len;
    if (s->next)
        return ws_sink_write(s->next, buf, len, err);
    return 0;
}

static int fp_finish(struct ws_sink *s, struct ws_error *err)
{
    struct fp_sink *f = (struct fp_sink *)s;
    (void)err;
    canonical(XXH3_128bits_digest(f->state), f->fp);
    return 0;
}

static void fp_destroy(struct ws_sink *s)
{
    struct fp_sink *f = (struct fp_sink *)s;
    XXH3_freeState(f->state);
    free(f);
}

static const struct ws_sink_ops fp_ops = {"fingerprint", fp_write, fp_finish, NULL, fp_destroy};

int ws_fingerprint_sink_new(struct ws_sink *next, struct ws_sink **out, struct ws_error *err)
{
    struct fp_sink *f = calloc(1, sizeof(*f));

    if (!f || !(f->state = XXH3_createState()) || XXH3_128bits_reset(f->state) != XXH_OK) {
        if (f)
            XXH3_freeState(f->state);
        free(f);
        ws_sink_free(next);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    }
    f->base.ops = &fp_ops;
    f->base.next = next;
    *out = &f->base;
    return 0;
}

void ws_fingerprint_sink_result(const struct ws_sink *s, uint8_t fp[WS_FINGERPRINT_SIZE],
                                uint64_t *len)
{
    const struct fp_sink *f = (const struct fp_sink *)s;
    memcpy(fp, f->fp, WS_FINGERPRINT_SIZE);
    if (len)
        *len = f->len;
}

void ws_fingerprint(const void *buf, size_t len, uint8_t fp[WS_FINGERPRINT_SIZE])
{
    canonical(XXH3_128bits(buf, len), fp);
}

void ws_fingerprint64(const void *buf, size_t len, uint8_t fp[8])
{
    XXH64_canonical_t c;

    XXH64_canonicalFromHash(&c, XXH3_64bits(buf, len));
    memcpy(fp, c.digest, 8);
}
