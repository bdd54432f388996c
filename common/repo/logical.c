/* logical.c - logical backups in the repository: manifest, catalog, delete (logical.h). */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/util.h"
#include "repo/logical.h"

#define MANIFEST_MAGIC "walsafe-logical 1"

static const char *const status_names[] = {"incomplete", "complete", "invalid"};
static const char *const kind_names[] = {"custom", "directory", "globals"};

const char *ws_logical_status_name(int status)
{
    return status >= 0 && status <= WS_LOGICAL_INVALID ? status_names[status] : "?";
}

const char *ws_logical_kind_name(int kind)
{
    return kind >= 0 && kind <= WS_LOGICAL_GLOBALS_SQL ? kind_names[kind] : "?";
}

static void free_dump(struct ws_logical_dump *d)
{
    size_t i;

    for (i = 0; i < d->nobjects; i++)
        free(d->objects[i].name);
    free(d->objects);
    free(d->db);
}

void ws_logical_manifest_free(struct ws_logical_manifest *m)
{
    size_t i;

    for (i = 0; i < m->ndumps; i++)
        free_dump(&m->dumps[i]);
    free(m->dumps);
    free(m->label);
    memset(m, 0, sizeof(*m));
}

/* A name inside a backup: key components, at most one '/' (DIR dumps), not a marker's name. */
static int object_name_valid(const char *name)
{
    char key[WS_LOGICAL_NAME_MAX + 32];

    if (!*name || strlen(name) > WS_LOGICAL_NAME_MAX || strcmp(name, WS_LOGICAL_MANIFEST) == 0 ||
        strcmp(name, WS_LOGICAL_CLAIM) == 0 || strcmp(name, WS_LOGICAL_KEEP) == 0)
        return 0;
    snprintf(key, sizeof(key), "x/%s", name);
    return ws_storage_key_valid(key);
}

int ws_logical_add_dump(struct ws_logical_manifest *m, const char *db, int kind,
                        struct ws_error *err)
{
    struct ws_logical_dump *d;
    void *p = realloc(m->dumps, (m->ndumps + 1) * sizeof(*m->dumps));

    if (!p)
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    m->dumps = p;
    d = &m->dumps[m->ndumps];
    memset(d, 0, sizeof(*d));
    d->kind = kind;
    if (!(d->db = strdup(db)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    m->ndumps++;
    if (kind == WS_LOGICAL_GLOBALS_SQL)
        m->globals = 1;
    return 0;
}

int ws_logical_add_object(struct ws_logical_manifest *m, const struct ws_logical_object *o,
                          struct ws_error *err)
{
    struct ws_logical_dump *d;
    void *p;

    if (m->ndumps == 0)
        return ws_error_set(err, WS_ERR_INTERNAL, "logical manifest: an object before any dump");
    if (!object_name_valid(o->name))
        return ws_error_set(err, WS_ERR_INVALID, "\"%s\" cannot name an object of a logical backup",
                            o->name);
    d = &m->dumps[m->ndumps - 1];
    if (!(p = realloc(d->objects, (d->nobjects + 1) * sizeof(*d->objects))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    d->objects = p;
    d->objects[d->nobjects] = *o;
    if (!(d->objects[d->nobjects].name = strdup(o->name)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    d->nobjects++;
    d->bytes += o->bytes;
    d->stored_bytes += o->stored_bytes;
    m->bytes += o->bytes;
    m->stored_bytes += o->stored_bytes;
    return 0;
}

const struct ws_logical_dump *ws_logical_find_dump(const struct ws_logical_manifest *m,
                                                   const char *db)
{
    size_t i;

    for (i = 0; i < m->ndumps; i++) {
        const struct ws_logical_dump *d = &m->dumps[i];
        if (db ? d->kind != WS_LOGICAL_GLOBALS_SQL && strcmp(d->db, db) == 0
               : d->kind == WS_LOGICAL_GLOBALS_SQL)
            return d;
    }
    return NULL;
}

/* ---- text form: one record a line; strings as hex ("-" for the empty string) -------------- */

struct text {
    char *buf;
    size_t len, cap;
    int failed;
};

static void putf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct text *t, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (t->failed)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = 1;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = (t->cap + (size_t)n + 1) * 2;
        char *p = realloc(t->buf, cap);
        if (!p || cap > WS_LOGICAL_MANIFEST_LIMIT) {
            free(p);
            t->buf = NULL;
            t->failed = 1;
            return;
        }
        t->buf = p;
        t->cap = cap;
    }
}

static void put_string(struct text *t, const char *s)
{
    size_t n = strlen(s), i;
    char h[3];

    if (n == 0) {
        putf(t, " -");
        return;
    }
    putf(t, " ");
    for (i = 0; i < n; i++) {
        ws_hex((const uint8_t *)s + i, 1, h);
        putf(t, "%s", h);
    }
}

int ws_logical_manifest_format(const struct ws_logical_manifest *m, char **out, size_t *len,
                               struct ws_error *err)
{
    struct text t = {0};
    char hex[65];
    size_t i, k;

    *out = NULL;
    putf(&t, "%s\nid %s\nlabel", MANIFEST_MAGIC, m->id);
    put_string(&t, m->label ? m->label : "");
    putf(&t, "\ntime %" PRId64 " %" PRId64 " %" PRId64 "\nversion %d %d\n", m->start_time,
         m->stop_time, m->duration_ms, m->pg_version, m->pg_dump_version);
    for (i = 0; i < m->ndumps; i++) {
        putf(&t, "dump %s", ws_logical_kind_name(m->dumps[i].kind));
        put_string(&t, m->dumps[i].db);
        putf(&t, "\n");
        for (k = 0; k < m->dumps[i].nobjects; k++) {
            const struct ws_logical_object *o = &m->dumps[i].objects[k];
            ws_hex(o->sha256, 32, hex);
            putf(&t, "object %s %" PRIu64 " %" PRIu64 " %s\n", o->name, o->bytes, o->stored_bytes,
                 hex);
        }
    }
    putf(&t, "end\n");
    if (t.failed) {
        free(t.buf);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory formatting a logical manifest");
    }
    *out = t.buf;
    *len = t.len;
    return 0;
}

/* ---- parsing ------------------------------------------------------------------------------ */

static int parse_string(const char *s, char **out)
{
    size_t n = strlen(s), i;
    char *r;

    if (strcmp(s, "-") == 0)
        return (*out = strdup("")) ? 0 : -1;
    if (n == 0 || n % 2 || !(r = malloc(n / 2 + 1)))
        return -1;
    if (ws_unhex(s, (uint8_t *)r, n / 2) != 0) {
        free(r);
        return -1;
    }
    r[n / 2] = '\0';
    for (i = 0; i < n / 2; i++)
        if (r[i] == '\0') {
            free(r);
            return -1;
        }
    *out = r;
    return 0;
}

static int parse_u64(const char *s, uint64_t *v)
{
    char *end;

    if (*s < '0' || *s > '9')
        return -1;
    *v = strtoull(s, &end, 10);
    return *end ? -1 : 0;
}

static int parse_i64(const char *s, int64_t *v)
{
    char *end;

    if (!*s)
        return -1;
    *v = strtoll(s, &end, 10);
    return *end ? -1 : 0;
}

static int kind_parse(const char *s)
{
    int k;

    for (k = 0; k <= WS_LOGICAL_GLOBALS_SQL; k++)
        if (strcmp(s, kind_names[k]) == 0)
            return k;
    return -1;
}

/* Splits line (changed in place) into at most max fields separated by one space. */
static size_t split(char *line, char **f, size_t max)
{
    size_t n = 0;
    char *p = line;

    while (n < max) {
        f[n++] = p;
        if (!(p = strchr(p, ' ')))
            break;
        *p++ = '\0';
    }
    return p ? max + 1 : n;
}

static int parse_line(struct ws_logical_manifest *m, char *line, int *ended, struct ws_error *err)
{
    char *f[6], *s = NULL;
    size_t n = split(line, f, 5);
    uint64_t a, b;
    int64_t x, y, z;
    struct ws_logical_object o = {0};
    int k, rc;

    if (*ended)
        return -1;
    if (n == 1 && strcmp(f[0], "end") == 0)
        return *ended = 1, 0;
    if (n == 2 && strcmp(f[0], "id") == 0 && ws_backup_id_valid(f[1]) && !m->id[0]) {
        memcpy(m->id, f[1], WS_BACKUP_ID_LEN + 1);
        return 0;
    }
    if (n == 2 && strcmp(f[0], "label") == 0 && !m->label)
        return parse_string(f[1], &m->label);
    if (n == 4 && strcmp(f[0], "time") == 0 && !parse_i64(f[1], &x) && !parse_i64(f[2], &y) &&
        !parse_i64(f[3], &z)) {
        m->start_time = x, m->stop_time = y, m->duration_ms = z;
        return 0;
    }
    if (n == 3 && strcmp(f[0], "version") == 0 && !parse_u64(f[1], &a) && !parse_u64(f[2], &b) &&
        a < 10000000 && b < 10000000) {
        m->pg_version = (int)a, m->pg_dump_version = (int)b;
        return 0;
    }
    if (n == 3 && strcmp(f[0], "dump") == 0 && (k = kind_parse(f[1])) >= 0 &&
        parse_string(f[2], &s) == 0) {
        rc = ws_logical_add_dump(m, s, k, err);
        free(s);
        return rc ? -1 : 0;
    }
    if (n == 5 && strcmp(f[0], "object") == 0 && !parse_u64(f[2], &o.bytes) &&
        !parse_u64(f[3], &o.stored_bytes) && ws_unhex(f[4], o.sha256, 32) == 0) {
        o.name = f[1];
        return ws_logical_add_object(m, &o, err) ? -1 : 0;
    }
    return -1;
}

int ws_logical_manifest_parse(const char *text, size_t len, const char *what,
                              struct ws_logical_manifest *m, struct ws_error *err)
{
    char *copy = NULL, *line, *next;
    size_t lineno = 1;
    int ended = 0, rc = 0;

    memset(m, 0, sizeof(*m));
    if (len < sizeof(MANIFEST_MAGIC) || memcmp(text, MANIFEST_MAGIC "\n", sizeof(MANIFEST_MAGIC)))
        return ws_error_set(err, WS_ERR_CORRUPT, "%s is not a logical backup manifest", what);
    if (memchr(text, '\0', len) || text[len - 1] != '\n')
        return ws_error_set(err, WS_ERR_CORRUPT, "%s is not a logical backup manifest", what);
    if (!(copy = malloc(len + 1)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    memcpy(copy, text, len);
    copy[len] = '\0';
    m->version = 1;
    for (line = copy + sizeof(MANIFEST_MAGIC); *line; line = next) {
        struct ws_error perr = {0};
        lineno++;
        next = strchr(line, '\n');
        *next++ = '\0';
        if (parse_line(m, line, &ended, &perr) != 0) {
            rc = perr.code == WS_ERR_INTERNAL
                     ? ws_error_set(err, WS_ERR_INTERNAL, "%s", perr.msg)
                     : ws_error_set(err, WS_ERR_CORRUPT, "%s: line %zu is invalid", what, lineno);
            goto out;
        }
    }
    if (!ended || !m->id[0] || !m->label)
        rc = ws_error_set(err, WS_ERR_CORRUPT, "%s is incomplete (no id, label or end line)", what);
out:
    free(copy);
    if (rc)
        ws_logical_manifest_free(m);
    return rc;
}

/* ---- keys, claim, store, load --------------------------------------------------------------- */

void ws_logical_prefix(const struct ws_repo *repo, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s/logical/", repo->cluster);
}

void ws_logical_key(const struct ws_repo *repo, const char *id, const char *name, char *out,
                    size_t outsz)
{
    snprintf(out, outsz, "%s/logical/%s/%s", repo->cluster, id, name);
}

int ws_logical_claim(struct ws_repo *repo, const char *id, struct ws_error *err)
{
    char key[256], when[21], text[64];

    ws_logical_key(repo, id, WS_LOGICAL_CLAIM, key, sizeof(key));
    ws_format_utc(time(NULL), when);
    snprintf(text, sizeof(text), "claimed by logicalbackup create at %s\n", when);
    return ws_repo_put_small(repo, key, text, strlen(text), NULL, err);
}

int ws_logical_manifest_store(struct ws_repo *repo, const struct ws_logical_manifest *m,
                              const struct ws_config *cfg, const struct ws_key *key,
                              struct ws_error *err)
{
    struct ws_object_params p = {0};
    char k[256], *text = NULL;
    size_t len;
    int rc;

    if ((rc = ws_logical_manifest_format(m, &text, &len, err)) != 0)
        return rc;
    ws_logical_key(repo, m->id, WS_LOGICAL_MANIFEST, k, sizeof(k));
    p.compress = cfg->compress;
    p.level = cfg->compress_level;
    p.key = key;
    rc = ws_repo_put_small(repo, k, text, len, &p, err);
    free(text);
    return rc;
}

int ws_logical_manifest_load(struct ws_repo *repo, const struct ws_keyring *kr, const char *id,
                             struct ws_logical_manifest *m, struct ws_error *err)
{
    char key[256], what[320], *text = NULL;
    size_t len;
    int rc;

    memset(m, 0, sizeof(*m));
    ws_logical_key(repo, id, WS_LOGICAL_MANIFEST, key, sizeof(key));
    if ((rc = ws_repo_get_small(repo, key, kr, WS_LOGICAL_MANIFEST_LIMIT, &text, &len, err)) != 0)
        return rc;
    snprintf(what, sizeof(what), "manifest \"%s\"", key);
    rc = ws_logical_manifest_parse(text, len, what, m, err);
    if (rc == 0 && strcmp(m->id, id) != 0) {
        rc = ws_error_set(err, WS_ERR_CORRUPT, "%s names logical backup %s", what, m->id);
        ws_logical_manifest_free(m);
    }
    free(text);
    return rc;
}

/* ---- dump objects ------------------------------------------------------------------------------
 */

int ws_logical_object_open(struct ws_repo *repo, const char *id, const char *name,
                           const struct ws_config *cfg, const struct ws_key *key,
                           struct ws_sink **out, struct ws_error *err)
{
    struct ws_object_params p = {0};
    struct ws_sink *put = NULL;
    char k[512];
    int rc;

    *out = NULL;
    if (!object_name_valid(name))
        return ws_error_set(err, WS_ERR_INVALID, "\"%s\" cannot name an object of a logical backup",
                            name);
    ws_logical_key(repo, id, name, k, sizeof(k));
    if ((rc = ws_storage_open_put(repo->st, k, 0, &put, err)) != 0)
        return rc;
    p.name = WS_LOGICAL_OBJECT_NAME;
    p.compress = cfg->compress;
    p.level = cfg->compress_level;
    p.content_size = -1;
    p.key = key;
    p.digest = WS_DIGEST_SHA256;
    return ws_object_writer_new(put, &p, out, err);
}

void ws_logical_object_done(const struct ws_sink *writer, struct ws_logical_object *o)
{
    struct ws_object_info info;

    ws_object_writer_info(writer, &info);
    o->bytes = info.content_len;
    o->stored_bytes = info.stored_len;
    memcpy(o->sha256, info.content_digest, 32);
}

int ws_logical_reader_new(struct ws_sink *dest, const struct ws_keyring *kr, struct ws_sink **out,
                          struct ws_error *err)
{
    return ws_object_reader_new(dest, WS_LOGICAL_OBJECT_NAME, kr, 1, out, err);
}

int ws_logical_object_check(const struct ws_sink *reader, const char *id,
                            const struct ws_logical_object *o, struct ws_error *err)
{
    struct ws_object_info info;

    ws_object_reader_info(reader, &info);
    if (info.digest != WS_DIGEST_SHA256 || info.content_len != o->bytes ||
        memcmp(info.content_digest, o->sha256, 32) != 0)
        return ws_error_set(err, WS_ERR_CORRUPT,
                            "object %s of logical backup %s is not the one its manifest names "
                            "(size or SHA-256 differs)",
                            o->name, id);
    return 0;
}
