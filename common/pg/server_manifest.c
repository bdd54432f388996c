/* pg/server_manifest.c - PostgreSQL 15's backup_manifest read one line at a time
 * (server_manifest.h). */
#include "pg/server_manifest.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

enum state {
    S_VERSION,    /* { "PostgreSQL-Backup-Manifest-Version": 1, */
    S_FILES,      /* "Files": [ */
    S_FILE,       /* a file entry */
    S_FILES_END,  /* ], */
    S_WAL,        /* "WAL-Ranges": [ */
    S_RANGE,      /* a WAL range */
    S_RANGES_END, /* ], */
    S_CHECKSUM,   /* "Manifest-Checksum": "<hex>"} */
    S_DONE
};

struct ws_smf {
    char *what;
    ws_smf_file_fn on_file;
    void *arg;
    enum state state;
    char line[WS_SMF_LINE_MAX + 1];
    size_t len;
    uint64_t lineno;
    EVP_MD_CTX *md; /* of every byte before the Manifest-Checksum line */
    char path[WS_SMF_PATH_MAX];
};

/* A cursor over one line. */
struct cur {
    const char *p, *end;
};

static int lit(struct cur *c, const char *s)
{
    size_t n = strlen(s);

    if ((size_t)(c->end - c->p) < n || memcmp(c->p, s, n) != 0)
        return -1;
    c->p += n;
    return 0;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Decimal digits (at most 19) into *v. */
static int number(struct cur *c, uint64_t *v)
{
    int n = 0;

    *v = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9' && n < 19) {
        *v = *v * 10 + (uint64_t)(*c->p++ - '0');
        n++;
    }
    return n > 0 && !(c->p < c->end && *c->p >= '0' && *c->p <= '9') ? 0 : -1;
}

/* The rest of a JSON string as PostgreSQL's escape_json writes it (the opening quote read), with
 * its closing quote, decoded into out (NUL-terminated, no NUL inside). */
static int json_string(struct cur *c, char *out, size_t outsz)
{
    size_t n = 0;

    while (c->p < c->end && *c->p != '"') {
        char ch = *c->p++;
        if ((unsigned char)ch < 0x20)
            return -1;
        if (ch == '\\') {
            static const char esc[] = "\"\"\\\\b\bf\fn\nr\rt\t";
            const char *e;
            if (c->p >= c->end)
                return -1;
            ch = *c->p++;
            if (ch == 'u') {
                int h[4], k;
                for (k = 0; k < 4; k++)
                    if (c->p >= c->end || (h[k] = hexval(*c->p++)) < 0)
                        return -1;
                /* escape_json writes \u00XX for control characters only */
                if (h[0] || h[1] || (h[2] == 0 && h[3] == 0) || h[2] > 1)
                    return -1;
                ch = (char)(h[2] * 16 + h[3]);
            } else {
                for (e = esc; *e && *e != ch; e += 2)
                    ;
                if (!*e)
                    return -1;
                ch = e[1];
            }
        }
        if (n + 1 >= outsz)
            return -1;
        out[n++] = ch;
    }
    if (c->p >= c->end || n == 0)
        return -1;
    c->p++;
    out[n] = '\0';
    return 0;
}

/* Hex digits up to the closing quote (the opening one read), decoded into out as a path. */
static int hex_path(struct cur *c, char *out, size_t outsz)
{
    size_t n = 0;
    int hi, lo;

    while (c->p + 1 < c->end && *c->p != '"') {
        if ((hi = hexval(c->p[0])) < 0 || (lo = hexval(c->p[1])) < 0 || (hi == 0 && lo == 0) ||
            n + 1 >= outsz)
            return -1;
        out[n++] = (char)(hi * 16 + lo);
        c->p += 2;
    }
    if (n == 0 || lit(c, "\"") != 0)
        return -1;
    out[n] = '\0';
    return 0;
}

/* exactly 2n hex digits and a closing quote */
static int hex_field(struct cur *c, uint8_t *out, size_t n)
{
    char buf[129];

    if ((size_t)(c->end - c->p) < 2 * n + 1 || c->p[2 * n] != '"' || 2 * n >= sizeof(buf))
        return -1;
    memcpy(buf, c->p, 2 * n);
    buf[2 * n] = '\0';
    if (ws_unhex(buf, out, n) != 0)
        return -1;
    c->p += 2 * n + 1;
    return 0;
}

/* A trailing comma: *more = 1. Then the line must end. */
static int line_end(struct cur *c, int *more)
{
    *more = lit(c, ",") == 0;
    return c->p == c->end ? 0 : -1;
}

static int file_line(struct ws_smf *r, struct cur *c, int *more, struct ws_error *err)
{
    struct ws_smf_file f = {0};
    uint8_t crc[4];

    if (lit(c, "{ \"Path\": \"") == 0) {
        if (json_string(c, r->path, sizeof(r->path)) != 0)
            return -1;
    } else if (lit(c, "{ \"Encoded-Path\": \"") != 0 || hex_path(c, r->path, sizeof(r->path)) != 0)
        return -1;
    if (lit(c, ", \"Size\": ") != 0 || number(c, &f.size) != 0 ||
        lit(c, ", \"Last-Modified\": \"") != 0)
        return -1;
    while (c->p < c->end && *c->p != '"' && *c->p != '\\')
        c->p++;
    if (lit(c, "\", \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"") != 0 ||
        hex_field(c, crc, sizeof(crc)) != 0 || lit(c, " }") != 0 || line_end(c, more) != 0)
        return -1;
    f.path = r->path;
    f.crc32c =
        (uint32_t)crc[0] | (uint32_t)crc[1] << 8 | (uint32_t)crc[2] << 16 | (uint32_t)crc[3] << 24;
    return r->on_file(r->arg, &f, err) ? 1 : 0;
}

/* <hex>/<hex> and the closing quote */
static int lsn(struct cur *c)
{
    int n = 0, m = 0;

    while (c->p < c->end && hexval(*c->p) >= 0 && n < 8)
        c->p++, n++;
    if (lit(c, "/") != 0)
        return -1;
    while (c->p < c->end && hexval(*c->p) >= 0 && m < 8)
        c->p++, m++;
    return n && m && lit(c, "\"") == 0 ? 0 : -1;
}

static int range_line(struct cur *c, int *more)
{
    uint64_t tli;

    if (lit(c, "{ \"Timeline\": ") != 0 || number(c, &tli) != 0 || tli == 0 || tli > UINT32_MAX ||
        lit(c, ", \"Start-LSN\": \"") != 0 || lsn(c) != 0 || lit(c, ", \"End-LSN\": \"") != 0 ||
        lsn(c) != 0 || lit(c, " }") != 0)
        return -1;
    return line_end(c, more);
}

static int checksum_line(struct ws_smf *r, struct cur *c, struct ws_error *err)
{
    uint8_t want[32], got[32];
    unsigned int n = 0;

    if (lit(c, "\"Manifest-Checksum\": \"") != 0 || hex_field(c, want, sizeof(want)) != 0 ||
        lit(c, "}") != 0 || c->p != c->end)
        return -1;
    if (EVP_DigestFinal_ex(r->md, got, &n) != 1 || n != sizeof(got))
        return ws_error_set(err, WS_ERR_INTERNAL, "SHA-256 failed");
    if (memcmp(want, got, sizeof(got)) != 0)
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "%s: its Manifest-Checksum does not match its contents", r->what);
    return 0;
}

/* One line (without its newline): -1 when it is not what the state wants, else 0 or an error
 * code with err set. */
static int one_line(struct ws_smf *r, struct cur *c, struct ws_error *err)
{
    int more = 0, rc;

    switch (r->state) {
    case S_VERSION:
        if (lit(c, "{ \"PostgreSQL-Backup-Manifest-Version\": 1,") != 0 || c->p != c->end)
            return -1;
        r->state = S_FILES;
        return 0;
    case S_FILES:
    case S_WAL:
        if (lit(c, r->state == S_FILES ? "\"Files\": [" : "\"WAL-Ranges\": [") != 0 ||
            c->p != c->end)
            return -1;
        r->state = r->state == S_FILES ? S_FILE : S_RANGE;
        return 0;
    case S_FILE:
        if ((rc = file_line(r, c, &more, err)) != 0)
            return rc < 0 ? -1 : err->code;
        r->state = more ? S_FILE : S_FILES_END;
        return 0;
    case S_RANGE:
        if (range_line(c, &more) != 0)
            return -1;
        r->state = more ? S_RANGE : S_RANGES_END;
        return 0;
    case S_FILES_END:
    case S_RANGES_END:
        if (lit(c, "],") != 0 || c->p != c->end)
            return -1;
        r->state = r->state == S_FILES_END ? S_WAL : S_CHECKSUM;
        return 0;
    case S_CHECKSUM:
        if ((rc = checksum_line(r, c, err)) != 0)
            return rc;
        r->state = S_DONE;
        return 0;
    case S_DONE:
        break;
    }
    return -1;
}

static int take_line(struct ws_smf *r, struct ws_error *err)
{
    struct cur c = {r->line, r->line + r->len};
    int rc;

    r->lineno++;
    if (r->state != S_CHECKSUM && r->state != S_DONE &&
        (EVP_DigestUpdate(r->md, r->line, r->len) != 1 || EVP_DigestUpdate(r->md, "\n", 1) != 1))
        return ws_error_set(err, WS_ERR_INTERNAL, "SHA-256 failed");
    rc = one_line(r, &c, err);
    if (rc < 0)
        return ws_error_set(err, WS_ERR_CORRUPT, "%s, line %llu: not what PostgreSQL 15 writes",
                            r->what, (unsigned long long)r->lineno);
    r->len = 0;
    return rc;
}

int ws_smf_new(const char *what, ws_smf_file_fn on_file, void *arg, struct ws_smf **out,
               struct ws_error *err)
{
    struct ws_smf *r = calloc(1, sizeof(*r));

    *out = NULL;
    if (!r || !(r->what = strdup(what)) || !(r->md = EVP_MD_CTX_new()) ||
        EVP_DigestInit_ex(r->md, EVP_sha256(), NULL) != 1) {
        ws_smf_free(r);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    }
    r->on_file = on_file;
    r->arg = arg;
    *out = r;
    return 0;
}

void ws_smf_free(struct ws_smf *r)
{
    if (!r)
        return;
    EVP_MD_CTX_free(r->md);
    free(r->what);
    free(r);
}

int ws_smf_feed(struct ws_smf *r, const uint8_t *data, size_t len, struct ws_error *err)
{
    int rc;

    for (size_t i = 0; i < len; i++) {
        if (r->state == S_DONE)
            return ws_error_set(err, WS_ERR_CORRUPT, "%s: bytes after its last line", r->what);
        if (data[i] == '\n') {
            if ((rc = take_line(r, err)) != 0)
                return rc;
            continue;
        }
        if (r->len == WS_SMF_LINE_MAX)
            return ws_error_set(err, WS_ERR_CORRUPT, "%s, line %llu: longer than %d bytes", r->what,
                                (unsigned long long)r->lineno + 1, WS_SMF_LINE_MAX);
        r->line[r->len++] = (char)data[i];
    }
    return 0;
}

int ws_smf_finish(struct ws_smf *r, struct ws_error *err)
{
    if (r->state != S_DONE || r->len)
        return ws_error_set(err, WS_ERR_CORRUPT, "%s ends early, after line %llu", r->what,
                            (unsigned long long)r->lineno);
    return 0;
}
