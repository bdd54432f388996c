/* delta.c - reads a delta extent back, fed in any slices (blockmap.h). */
#include <stdlib.h>
#include <string.h>

#include "repo/blockmap.h"

static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int corrupt(const struct ws_delta_reader *r, const char *what, struct ws_error *err)
{
    return ws_error_set(err, WS_ERR_CORRUPT, "delta extent of \"%s\": %s", r->what, what);
}

void ws_delta_reader_init(struct ws_delta_reader *r, uint32_t block_size, uint64_t length,
                          const char *what)
{
    memset(r, 0, sizeof(*r));
    r->block_size = block_size;
    r->length = length;
    r->what = what;
}

/* The bytes of block idx of the extent (the last block of the file may be partial). */
static uint64_t block_bytes(const struct ws_delta_reader *r, uint32_t idx)
{
    uint64_t start = (uint64_t)r->blocks[idx] * r->block_size;

    return r->size - start < r->block_size ? r->size - start : r->block_size;
}

/* The header is in: its size and count, checked against the extent's length. */
static int parse_header(struct ws_delta_reader *r, struct ws_error *err)
{
    r->size = be64(r->hdr);
    r->count = be32(r->hdr + 8);
    if (r->block_size == 0)
        return corrupt(r, "block size 0", err);
    if (r->count > ws_blockmap_blocks(r->size, r->block_size))
        return corrupt(r, "more blocks than the file has", err);
    if (r->count > (r->length - WS_DELTA_HEADER) / 4)
        return corrupt(r, "block count too large for the extent's length", err);
    return 0;
}

/* Block number r->idx is in: increasing, inside the file; after the last one the length must
 * be exactly what the header and the numbers make. */
static int take_number(struct ws_delta_reader *r, struct ws_error *err)
{
    uint32_t n = be32(r->numbuf);
    uint64_t want = WS_DELTA_HEADER + (uint64_t)r->count * 4;

    if (n >= ws_blockmap_blocks(r->size, r->block_size))
        return corrupt(r, "block number past the end of the file", err);
    if (r->idx > 0 && n <= r->blocks[r->idx - 1])
        return corrupt(r, "block numbers not increasing", err);
    if (r->idx == r->cap) { /* the header's count alone never sizes an allocation */
        uint32_t cap = r->cap ? (r->cap > r->count / 2 ? r->count : r->cap * 2) : 1024;
        uint32_t *p = realloc(r->blocks, (size_t)(cap < r->count ? cap : r->count) * sizeof(*p));
        if (!p)
            return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        r->blocks = p;
        r->cap = cap < r->count ? cap : r->count;
    }
    r->blocks[r->idx++] = n;
    if (r->idx < r->count)
        return 0;
    for (uint32_t i = 0; i < r->count; i++)
        want += block_bytes(r, i);
    if (want != r->length)
        return corrupt(r, "length differs from what its header and block numbers make", err);
    r->idx = 0;
    return 0;
}

/* Where the blocks' bytes begin in the extent. */
static uint64_t data_start(const struct ws_delta_reader *r)
{
    return WS_DELTA_HEADER + (uint64_t)r->count * 4;
}

static int feed_header(struct ws_delta_reader *r, const uint8_t **p, size_t *n,
                       struct ws_error *err)
{
    while (*n > 0 && r->pos < data_start(r)) {
        if (r->pos < WS_DELTA_HEADER) {
            size_t k = WS_DELTA_HEADER - (size_t)r->pos;
            if (k > *n)
                k = *n;
            memcpy(r->hdr + r->pos, *p, k);
            r->pos += k, *p += k, *n -= k;
            if (r->pos == WS_DELTA_HEADER && parse_header(r, err) != 0)
                return err->code;
            if (r->pos == WS_DELTA_HEADER && r->count == 0 && r->length != WS_DELTA_HEADER)
                return corrupt(r, "length differs from what its header and block numbers make",
                               err);
        } else {
            size_t at = (size_t)((r->pos - WS_DELTA_HEADER) % 4), k = 4 - at;
            if (k > *n)
                k = *n;
            memcpy(r->numbuf + at, *p, k);
            r->pos += k, *p += k, *n -= k;
            if (at + k == 4 && take_number(r, err) != 0)
                return err->code;
        }
    }
    return 0;
}

int ws_delta_reader_feed(struct ws_delta_reader *r, const uint8_t *p, size_t n,
                         struct ws_error *err)
{
    if (r->length < WS_DELTA_HEADER)
        return corrupt(r, "shorter than its header", err);
    if (n > r->length - r->pos)
        return corrupt(r, "trailing bytes after its last block", err);
    if (feed_header(r, &p, &n, err) != 0)
        return err->code;
    while (n > 0) {
        /* r->idx: the block being read; every block before it is whole (only the file's last
         * block may be partial, and it comes last) */
        uint64_t done = r->pos - data_start(r) - (uint64_t)r->idx * r->block_size;
        uint64_t len = block_bytes(r, r->idx);
        size_t k;
        int rc;
        k = len - done < n ? (size_t)(len - done) : n;
        if (r->block && (rc = r->block(r->arg, (uint64_t)r->blocks[r->idx] * r->block_size + done,
                                       p, k, err)) != 0)
            return rc;
        r->pos += k, p += k, n -= k;
        if (done + k == len)
            r->idx++;
    }
    return 0;
}

int ws_delta_reader_end(struct ws_delta_reader *r, uint64_t *size, struct ws_error *err)
{
    if (r->length < WS_DELTA_HEADER)
        return corrupt(r, "shorter than its header", err);
    if (r->pos != r->length)
        return corrupt(r, "truncated", err);
    *size = r->size;
    return 0;
}

void ws_delta_reader_free(struct ws_delta_reader *r)
{
    free(r->blocks);
    r->blocks = NULL;
    r->cap = 0;
}
