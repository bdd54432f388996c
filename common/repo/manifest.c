/* manifest.c - the backup manifest: records, text form, keys and loading (manifest.h). */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/fs.h"
#include "base/util.h"
#include "io/key.h"
#include "pg/wal.h"
#include "repo/blockmap.h"
#include "repo/manifest.h"

#define MANIFEST_MAGIC "walsafe-manifest 2"
#define MANIFEST_MAGIC_V1 "walsafe-manifest 1"
#define MANIFEST_MAGIC_V3 "walsafe-manifest 3" /* version 2 with extra records */
#define MAX_FIELDS 10                          /* a delta record */

/* The names are the config key backup_type's choices (base/config.h): one list. */
const char *ws_backup_type_name(int type)
{
    return type >= WS_BACKUP_FULL && type <= WS_BACKUP_INCR ? ws_backup_type_choices[type] : "?";
}

int ws_backup_type_parse(const char *s)
{
    int t;

    for (t = WS_BACKUP_FULL; t <= WS_BACKUP_INCR; t++)
        if (strcmp(s, ws_backup_type_choices[t]) == 0)
            return t;
    return -1;
}

void ws_manifest_free(struct ws_manifest *m)
{
    size_t i;

    free(m->label);
    for (i = 0; i < m->ntblspc; i++)
        free(m->tblspc[i].location);
    for (i = 0; i < m->ndirs; i++)
        free(m->dirs[i].path);
    for (i = 0; i < m->nfiles; i++) {
        free(m->files[i].path);
        free(m->files[i].pieces);
    }
    for (i = 0; i < m->nbadpages; i++)
        free(m->badpages[i].path);
    for (i = 0; i < m->nextra; i++)
        free(m->extra[i].path);
    free(m->extra);
    free(m->tblspc);
    free(m->dirs);
    free(m->files);
    free(m->badpages);
    memset(m, 0, sizeof(*m));
}

/* Makes room for element n of *arr (elements of size sz). With a capacity (*cap above 0: room the
 * parser reserved, ws_manifest_parse_inplace) it doubles that when full; without one, capacity is
 * implicit: 8 after the first element, doubled whenever n reaches a power of two from 8 on (the
 * rule arrays filled by ws_manifest_add_* and arrays handed over by create rely on). */
static int grow(void **arr, size_t n, size_t *cap, size_t sz, struct ws_error *err)
{
    size_t want;
    void *p;

    if (cap && *cap) {
        if (n < *cap)
            return 0;
        want = *cap * 2;
    } else if (n != 0 && (n < 8 || (n & (n - 1)) != 0))
        return 0;
    else
        want = n == 0 ? 8 : n * 2;
    if (!(p = realloc(*arr, want * sz)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    *arr = p;
    if (cap && *cap)
        *cap = want;
    return 0;
}

static int dup_str(const char *s, char **out, struct ws_error *err)
{
    if (!(*out = strdup(s)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    return 0;
}

int ws_manifest_add_file(struct ws_manifest *m, const struct ws_bfile *f, struct ws_error *err)
{
    int rc;

    if ((rc = grow((void **)&m->files, m->nfiles, &m->files_cap, sizeof(*m->files), err)) != 0)
        return rc;
    m->files[m->nfiles] = *f;
    m->files[m->nfiles].pieces = NULL;
    m->files[m->nfiles].npieces = 0;
    if ((rc = dup_str(f->path, &m->files[m->nfiles].path, err)) != 0)
        return rc;
    if (f->npieces) {
        struct ws_bpiece *p = malloc(f->npieces * sizeof(*p));
        if (!p) {
            free(m->files[m->nfiles].path);
            return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        }
        memcpy(p, f->pieces, f->npieces * sizeof(*p));
        m->files[m->nfiles].pieces = p;
        m->files[m->nfiles].npieces = f->npieces;
    }
    m->nfiles++;
    return 0;
}

int ws_manifest_add_dir(struct ws_manifest *m, const char *path, uint32_t mode,
                        struct ws_error *err)
{
    int rc;

    if ((rc = grow((void **)&m->dirs, m->ndirs, &m->dirs_cap, sizeof(*m->dirs), err)) != 0)
        return rc;
    m->dirs[m->ndirs].mode = mode;
    if ((rc = dup_str(path, &m->dirs[m->ndirs].path, err)) != 0)
        return rc;
    m->ndirs++;
    return 0;
}

int ws_manifest_add_tblspc(struct ws_manifest *m, uint32_t oid, const char *location,
                           struct ws_error *err)
{
    int rc;

    if ((rc = grow((void **)&m->tblspc, m->ntblspc, NULL, sizeof(*m->tblspc), err)) != 0)
        return rc;
    m->tblspc[m->ntblspc].oid = oid;
    if ((rc = dup_str(location, &m->tblspc[m->ntblspc].location, err)) != 0)
        return rc;
    m->ntblspc++;
    return 0;
}

int ws_manifest_add_badpage(struct ws_manifest *m, const char *path, uint32_t block,
                            struct ws_error *err)
{
    int rc;

    if ((rc = grow((void **)&m->badpages, m->nbadpages, NULL, sizeof(*m->badpages), err)) != 0)
        return rc;
    m->badpages[m->nbadpages].block = block;
    if ((rc = dup_str(path, &m->badpages[m->nbadpages].path, err)) != 0)
        return rc;
    m->nbadpages++;
    return 0;
}

/* Where the next extra file's content starts: after the last extra file's. */
static uint64_t extra_end(const struct ws_manifest *m)
{
    size_t i = m->nextra;

    while (i > 0 && m->extra[i - 1].dir)
        i--;
    return i ? m->extra[i - 1].offset + m->extra[i - 1].size : 0;
}

int ws_manifest_add_extra(struct ws_manifest *m, const struct ws_bextra *e, struct ws_error *err)
{
    int rc;

    if (!ws_path_clean_absolute(e->path) || e->mode > 07777 ||
        (!e->dir && e->offset != extra_end(m)) || (e->dir && (e->size || e->offset)))
        return ws_error_set(err, WS_ERR_INVALID, "invalid extra path record \"%s\"", e->path);
    if ((rc = grow((void **)&m->extra, m->nextra, NULL, sizeof(*m->extra), err)) != 0)
        return rc;
    m->extra[m->nextra] = *e;
    if ((rc = dup_str(e->path, &m->extra[m->nextra].path, err)) != 0)
        return rc;
    m->nextra++;
    return 0;
}

/* ---- text form ---------------------------------------------------------------------------- */

struct out {
    char *buf;
    size_t len, cap;
    int failed;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->failed)
        return;
    if (o->len + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 4096;
        char *p;
        while (cap < o->len + n + 1)
            cap *= 2;
        if (!(p = realloc(o->buf, cap))) {
            o->failed = 1;
            return;
        }
        o->buf = p;
        o->cap = cap;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

static void putf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct out *o, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        o->failed = 1;
        return;
    }
    put(o, tmp, (size_t)n);
}

static int plain_char(unsigned char c)
{
    return isalnum(c) || strchr("._/+:@,=~-", c) != NULL;
}

static void put_escaped(struct out *o, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = (const unsigned char *)s;

    if (!*p) {
        put(o, "%", 1); /* the empty string: a lone '%' */
        return;
    }
    for (; *p; p++) {
        if (plain_char(*p) && *p != 0) {
            put(o, (const char *)p, 1);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            put(o, e, 3);
        }
    }
}

static const char *const kind_names[] = {"file", "delta", "ref"};

/* extra_dir <path> <mode> <uid> <gid> <mtime>
 * extra_file <path> <mode> <uid> <gid> <mtime> <size> <sha256> <offset> */
static void put_extra(struct out *o, const struct ws_bextra *e)
{
    char hex[65];

    put(o, e->dir ? "extra_dir " : "extra_file ", e->dir ? 10 : 11);
    put_escaped(o, e->path);
    putf(o, " %o %" PRIu32 " %" PRIu32 " %" PRId64, (unsigned)e->mode, e->uid, e->gid, e->mtime);
    if (!e->dir) {
        ws_hex(e->sha256, 32, hex);
        putf(o, " %" PRIu64 " %s %" PRIu64, e->size, hex, e->offset);
    }
    put(o, "\n", 1);
}

/* A file, delta or ref line, its pieces and its map line. */
static void put_record(struct out *o, const struct ws_bfile *f)
{
    char hex[65];
    size_t k;

    put(o, kind_names[f->kind], strlen(kind_names[f->kind]));
    put(o, " ", 1);
    put_escaped(o, f->path);
    ws_hex(f->sha256, 32, hex);
    putf(o, " %o %" PRId64 " %" PRIu64 " %s", (unsigned)f->mode, f->mtime, f->size, hex);
    if (f->kind != WS_BFILE_WHOLE)
        putf(o, " %s", f->base);
    if (f->kind != WS_BFILE_REF)
        putf(o, " %" PRIu32 " %" PRIu64, f->bundle, f->offset);
    if (f->kind == WS_BFILE_DELTA)
        putf(o, " %" PRIu64, f->length);
    put(o, "\n", 1);
    for (k = 0; k < f->npieces; k++)
        putf(o, "piece %" PRIu64 " %" PRIu64 " %" PRIu32 " %" PRIu64 "\n", f->pieces[k].file_offset,
             f->pieces[k].length, f->pieces[k].bundle, f->pieces[k].offset);
    if (f->has_map)
        putf(o, "map %" PRIu32 " %" PRIu64 "\n", f->map, f->map_index);
}

int ws_manifest_format(const struct ws_manifest *m, char **out, size_t *outlen,
                       struct ws_error *err)
{
    struct out o = {0};
    char t1[21], t2[21], l1[24], l2[24];
    size_t i;

    ws_format_utc(m->start_time, t1);
    ws_format_utc(m->stop_time, t2);
    ws_wal_format_lsn(l1, m->start_lsn);
    ws_wal_format_lsn(l2, m->stop_lsn);
    putf(&o, "%s\nid %s\nlabel ", m->nextra ? MANIFEST_MAGIC_V3 : MANIFEST_MAGIC, m->id);
    put_escaped(&o, m->label ? m->label : "");
    putf(&o, "\nstart_time %s\nstop_time %s\nstart_lsn %s\nstop_lsn %s\n", t1, t2, l1, l2);
    putf(&o, "timeline %" PRIu32 "\npg_version %d\nsystem_identifier %" PRIu64 "\n", m->timeline,
         m->pg_version, m->system_identifier);
    putf(&o, "wal_segment_size %" PRIu32 "\ndata_checksums %d\n", m->wal_segment_size,
         m->data_checksums);
    putf(&o, "bytes %" PRIu64 "\nstored_bytes %" PRIu64 "\nbundles %" PRIu32 "\n", m->bytes,
         m->stored_bytes, m->bundles);
    putf(&o, "maps %" PRIu32 "\nblock_size %" PRIu32 "\ntype %s\n", m->maps, m->block_size,
         ws_backup_type_name(m->type));
    if (m->type != WS_BACKUP_FULL)
        putf(&o, "reference %s\n", m->reference);
    for (i = 0; i < m->ntblspc; i++) {
        putf(&o, "tablespace %" PRIu32 " ", m->tblspc[i].oid);
        put_escaped(&o, m->tblspc[i].location);
        put(&o, "\n", 1);
    }
    for (i = 0; i < m->ndirs; i++) {
        putf(&o, "dir %o ", (unsigned)m->dirs[i].mode);
        put_escaped(&o, m->dirs[i].path);
        put(&o, "\n", 1);
    }
    for (i = 0; i < m->nfiles; i++)
        put_record(&o, &m->files[i]);
    for (i = 0; i < m->nbadpages; i++) {
        put(&o, "badpage ", 8);
        put_escaped(&o, m->badpages[i].path);
        putf(&o, " %" PRIu32 "\n", m->badpages[i].block);
    }
    for (i = 0; i < m->nextra; i++)
        put_extra(&o, &m->extra[i]);
    putf(&o, "end %zu\n", m->nfiles);
    if (o.failed) {
        free(o.buf);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory formatting a manifest");
    }
    *out = o.buf;
    *outlen = o.len;
    return 0;
}

/* ---- parsing ------------------------------------------------------------------------------ */

static int unescape(const char *s, char **out)
{
    size_t n = strlen(s), i, j = 0;
    char *r;

    if (strcmp(s, "%") == 0)
        return (*out = strdup("")) ? 0 : -1;
    if (!(r = malloc(n + 1)))
        return -1;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            unsigned v;
            if (i + 2 >= n) {
                free(r);
                return -1;
            }
            if (!isxdigit((unsigned char)s[i + 1]) || !isxdigit((unsigned char)s[i + 2]) ||
                sscanf(s + i + 1, "%2x", &v) != 1 || v == 0) {
                free(r);
                return -1;
            }
            r[j++] = (char)v;
            i += 2;
        } else if (plain_char(c)) {
            r[j++] = (char)c;
        } else {
            free(r);
            return -1;
        }
    }
    r[j] = '\0';
    *out = r;
    return 0;
}

static int parse_u64(const char *s, int base, uint64_t *v)
{
    char *end;

    if (!*s || *s == '-' || *s == '+' || isspace((unsigned char)*s))
        return -1;
    errno = 0;
    *v = strtoull(s, &end, base);
    return errno || *end ? -1 : 0;
}

static int parse_i64(const char *s, int64_t *v)
{
    char *end;

    if (!*s || isspace((unsigned char)*s))
        return -1;
    errno = 0;
    *v = strtoll(s, &end, 10);
    return errno || *end ? -1 : 0;
}

/* Splits line (modified) at single spaces into at most max fields; returns the count, or
 * max + 1 for too many fields or an empty one (two spaces, a leading or trailing space). */
static int split(char *line, char **f, int max)
{
    int n = 0;
    char *p = line;

    for (;;) {
        char *sp = strchr(p, ' ');
        if (n == max || (sp ? sp == p : *p == '\0'))
            return max + 1;
        f[n++] = p;
        if (!sp)
            return n;
        *sp = '\0';
        p = sp + 1;
    }
}

static const char *const header_keys[] = {
    "id",
    "label",
    "start_time",
    "stop_time",
    "start_lsn",
    "stop_lsn",
    "timeline",
    "pg_version",
    "system_identifier",
    "wal_segment_size",
    "data_checksums",
    "bytes",
    "stored_bytes",
    "bundles",
    "maps",
    "block_size",
    "type",
    "reference",
};
#define NHEADER_V1 14 /* up to bundles */
#define NHEADER_V2 17 /* up to type; reference follows when the type is not full */

static int parse_u32(const char *s, uint32_t *v)
{
    uint64_t u;

    if (parse_u64(s, 10, &u) || u > UINT32_MAX)
        return -1;
    *v = (uint32_t)u;
    return 0;
}

static int set_header_v2(struct ws_manifest *m, size_t k, const char *v)
{
    switch (k) {
    case 14:
        return parse_u32(v, &m->maps);
    case 15:
        /* PostgreSQL's block sizes: a power of two from 1 kB to 32 kB; 0 for no block digests
         * (a version-1 manifest formatted again), only with no maps in a full backup */
        if (parse_u32(v, &m->block_size) ||
            (m->block_size != 0 && (m->block_size < 1024 || m->block_size > 32768 ||
                                    (m->block_size & (m->block_size - 1)) != 0)) ||
            (m->block_size == 0 && m->maps != 0))
            return -1;
        return 0;
    case 16:
        if ((m->type = ws_backup_type_parse(v)) < 0 ||
            (m->type != WS_BACKUP_FULL && m->block_size == 0))
            return -1;
        return 0;
    case 17:
        if (!ws_backup_id_valid(v) || strcmp(v, m->id) >= 0)
            return -1; /* an earlier backup */
        memcpy(m->reference, v, WS_BACKUP_ID_LEN + 1);
        return 0;
    }
    return -1;
}

static int set_header(struct ws_manifest *m, size_t k, const char *v)
{
    uint64_t u;

    switch (k) {
    case 0:
        if (!ws_backup_id_valid(v))
            return -1;
        memcpy(m->id, v, WS_BACKUP_ID_LEN + 1);
        return 0;
    case 1:
        return unescape(v, &m->label);
    case 2:
        return ws_parse_utc(v, &m->start_time);
    case 3:
        return ws_parse_utc(v, &m->stop_time);
    case 4:
        return ws_wal_parse_lsn(v, &m->start_lsn);
    case 5:
        return ws_wal_parse_lsn(v, &m->stop_lsn);
    case 6:
        return parse_u32(v, &m->timeline) || m->timeline == 0 ? -1 : 0;
    case 7:
        if (parse_u64(v, 10, &u) || u < 90000 || u > 9999999)
            return -1;
        m->pg_version = (int)u;
        return 0;
    case 8:
        return parse_u64(v, 10, &m->system_identifier);
    case 9:
        if (parse_u64(v, 10, &u) || !ws_wal_seg_size_valid(u))
            return -1;
        m->wal_segment_size = (uint32_t)u;
        return 0;
    case 10:
        if (strcmp(v, "0") && strcmp(v, "1"))
            return -1;
        m->data_checksums = v[0] == '1';
        return 0;
    case 11:
        return parse_u64(v, 10, &m->bytes);
    case 12:
        return parse_u64(v, 10, &m->stored_bytes);
    case 13:
        return parse_u32(v, &m->bundles);
    }
    return set_header_v2(m, k, v);
}

/* Where the parser is: header lines read, and what the line before was (piece and map lines
 * belong to the record just before them). */
struct parse_state {
    size_t nheader;
    enum { AFTER_OTHER, AFTER_RECORD, AFTER_PIECE, AFTER_MAP } last;
    int ended;
};

/* The header lines a manifest has: version 1 up to bundles; version 2 up to type, and
 * reference when the type (once read) is not full. */
static size_t nheader_of(const struct ws_manifest *m)
{
    if (m->version == 1)
        return NHEADER_V1;
    return m->type == WS_BACKUP_FULL ? NHEADER_V2 : NHEADER_V2 + 1;
}

/* base of a delta or ref record: a backup before this one, not after its reference. */
static int parse_base(const struct ws_manifest *m, const char *v, char base[WS_BACKUP_ID_LEN + 1])
{
    if (m->type == WS_BACKUP_FULL || !ws_backup_id_valid(v) || strcmp(v, m->id) >= 0 ||
        strcmp(v, m->reference) > 0)
        return -1;
    memcpy(base, v, WS_BACKUP_ID_LEN + 1);
    return 0;
}

static int parse_bundle(const struct ws_manifest *m, const char *v, uint32_t *bundle)
{
    return parse_u32(v, bundle) || *bundle >= m->bundles ? -1 : 0;
}

/* file <path> <mode> <mtime> <size> <sha256> <bundle> <offset>
 * delta <path> <mode> <mtime> <size> <sha256> <base> <bundle> <offset> <length>
 * ref <path> <mode> <mtime> <size> <sha256> <base> */
static int parse_record(struct ws_manifest *m, char **f, int n, int kind, struct ws_error *err)
{
    static const int nfields[] = {8, 10, 7};
    struct ws_bfile bf = {0};
    uint64_t mode;
    char **rest = f + 6;
    int rc;

    if (n != nfields[kind] || parse_u64(f[2], 8, &mode) || mode > 07777 ||
        parse_i64(f[3], &bf.mtime) || parse_u64(f[4], 10, &bf.size) ||
        ws_unhex(f[5], bf.sha256, 32))
        return -1;
    bf.kind = kind;
    bf.mode = (uint32_t)mode;
    if (kind != WS_BFILE_WHOLE && parse_base(m, *rest++, bf.base))
        return -1;
    if (kind != WS_BFILE_REF &&
        (parse_bundle(m, rest[0], &bf.bundle) || parse_u64(rest[1], 10, &bf.offset)))
        return -1;
    if (kind == WS_BFILE_DELTA &&
        (parse_u64(rest[2], 10, &bf.length) || bf.length < WS_DELTA_HEADER))
        return -1;
    if (unescape(f[1], &bf.path))
        return -1;
    rc = ws_manifest_add_file(m, &bf, err);
    free(bf.path);
    return rc ? -2 : 0;
}

/* piece <file offset> <length> <bundle> <offset>, after a file line or its pieces. */
static int parse_piece(struct ws_manifest *m, char **f, int n, const struct parse_state *st,
                       struct ws_error *err)
{
    struct ws_bfile *last = m->nfiles ? &m->files[m->nfiles - 1] : NULL;
    struct ws_bpiece pc;
    uint64_t want;
    void *p;

    if (n != 5 || !last || (st->last != AFTER_RECORD && st->last != AFTER_PIECE) ||
        last->kind != WS_BFILE_WHOLE || m->nbadpages || parse_u64(f[1], 10, &pc.file_offset) ||
        parse_u64(f[2], 10, &pc.length) || parse_bundle(m, f[3], &pc.bundle) ||
        parse_u64(f[4], 10, &pc.offset) || pc.length == 0)
        return -1;
    want = last->npieces ? last->pieces[last->npieces - 1].file_offset +
                               last->pieces[last->npieces - 1].length
                         : pc.file_offset;
    /* contiguous, inside the file, and never at offset 0 (that is the file record); each
     * piece in a later bundle than the file's bytes before it (verify relies on it) */
    if (pc.file_offset == 0 || pc.file_offset != want || pc.file_offset >= last->size ||
        pc.length > last->size - pc.file_offset ||
        pc.bundle <= (last->npieces ? last->pieces[last->npieces - 1].bundle : last->bundle))
        return -1;
    if (!(p = realloc(last->pieces, (last->npieces + 1) * sizeof(pc))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory"), -2;
    last->pieces = p;
    last->pieces[last->npieces++] = pc;
    return 0;
}

/* map <map> <index>, once after a record (and its pieces). */
static int parse_map(struct ws_manifest *m, char **f, int n, const struct parse_state *st)
{
    struct ws_bfile *last = m->nfiles ? &m->files[m->nfiles - 1] : NULL;

    if (n != 3 || !last || (st->last != AFTER_RECORD && st->last != AFTER_PIECE) ||
        parse_u32(f[1], &last->map) || last->map >= m->maps ||
        parse_u64(f[2], 10, &last->map_index))
        return -1;
    last->has_map = 1;
    return 0;
}

/* end <number of file, delta and ref lines> */
static int parse_end(struct ws_manifest *m, char **f, int n, struct parse_state *st)
{
    uint64_t u;
    size_t i;

    if (n != 2 || parse_u64(f[1], 10, &u) || u != m->nfiles || (m->version == 3 && !m->nextra))
        return -1; /* version 3 is written only for extra records */
    for (i = 0; i < m->nfiles; i++) {
        const struct ws_bfile *bf = &m->files[i];
        const struct ws_bpiece *lp = bf->npieces ? &bf->pieces[bf->npieces - 1] : NULL;
        if (lp && lp->file_offset + lp->length != bf->size)
            return -1; /* the pieces must end at the file's size */
    }
    st->ended = 1;
    return 0;
}

/* tablespace <oid> <location>, dir <mode> <path>, badpage <path> <block> */
static int parse_other(struct ws_manifest *m, char **f, int n, struct ws_error *err)
{
    uint64_t u;
    char *s;
    int rc;

    if (n != 3)
        return -1;
    if (strcmp(f[0], "tablespace") == 0) {
        if (parse_u64(f[1], 10, &u) || u == 0 || u > UINT32_MAX || unescape(f[2], &s))
            return -1;
        rc = ws_manifest_add_tblspc(m, (uint32_t)u, s, err);
    } else if (strcmp(f[0], "dir") == 0) {
        if (parse_u64(f[1], 8, &u) || u > 07777 || unescape(f[2], &s))
            return -1;
        rc = ws_manifest_add_dir(m, s, (uint32_t)u, err);
    } else if (strcmp(f[0], "badpage") == 0) {
        if (parse_u64(f[2], 10, &u) || u > UINT32_MAX || unescape(f[1], &s))
            return -1;
        rc = ws_manifest_add_badpage(m, s, (uint32_t)u, err);
    } else {
        return -1;
    }
    free(s);
    return rc ? -2 : 0;
}

/* extra_dir and extra_file lines (put_extra), version 3 only. */
static int parse_extra(struct ws_manifest *m, char **f, int n, struct ws_error *err)
{
    struct ws_bextra e = {0};
    uint64_t mode;
    int rc;

    e.dir = strcmp(f[0], "extra_dir") == 0;
    if (m->version < 3 || n != (e.dir ? 6 : 9) || parse_u64(f[2], 8, &mode) || mode > 07777 ||
        parse_u32(f[3], &e.uid) || parse_u32(f[4], &e.gid) || parse_i64(f[5], &e.mtime))
        return -1;
    if (!e.dir && (parse_u64(f[6], 10, &e.size) || ws_unhex(f[7], e.sha256, 32) ||
                   parse_u64(f[8], 10, &e.offset) || e.offset != extra_end(m)))
        return -1;
    e.mode = (uint32_t)mode;
    if (unescape(f[1], &e.path))
        return -1;
    if (!ws_path_clean_absolute(e.path)) {
        free(e.path);
        return -1;
    }
    rc = ws_manifest_add_extra(m, &e, err);
    free(e.path);
    return rc ? -2 : 0;
}

/* One line after the magic: 0, -1 (invalid) or -2 (err set). */
static int parse_line(struct ws_manifest *m, char *line, struct parse_state *st,
                      struct ws_error *err)
{
    char *f[MAX_FIELDS + 1];
    int n = split(line, f, MAX_FIELDS), kind, rc;

    if (n < 2 || n > MAX_FIELDS || st->ended)
        return -1;
    if (st->nheader < nheader_of(m)) {
        if (n != 2 || strcmp(f[0], header_keys[st->nheader]) != 0 ||
            set_header(m, st->nheader, f[1]))
            return -1;
        st->nheader++;
        return 0;
    }
    for (kind = WS_BFILE_WHOLE; kind <= WS_BFILE_REF; kind++)
        if (strcmp(f[0], kind_names[kind]) == 0)
            break;
    if (kind <= WS_BFILE_REF) {
        rc = parse_record(m, f, n, kind, err);
        st->last = AFTER_RECORD;
    } else if (strcmp(f[0], "piece") == 0) {
        rc = parse_piece(m, f, n, st, err);
        st->last = AFTER_PIECE;
    } else if (strcmp(f[0], "map") == 0) {
        rc = parse_map(m, f, n, st);
        st->last = AFTER_MAP;
    } else if (strcmp(f[0], "end") == 0) {
        rc = parse_end(m, f, n, st);
    } else if (strcmp(f[0], "extra_dir") == 0 || strcmp(f[0], "extra_file") == 0) {
        rc = parse_extra(m, f, n, err);
        st->last = AFTER_OTHER;
    } else {
        rc = parse_other(m, f, n, err);
        st->last = AFTER_OTHER;
    }
    return rc;
}

/* Room for every record line of text (file, delta, ref; dir) before the parse: the arrays are
 * allocated once at their size instead of doubling past it. */
static int reserve(struct ws_manifest *m, const char *text, struct ws_error *err)
{
    size_t nf = 0, nd = 0;

    for (const char *l = text; *l; l = strchr(l, '\n') + 1) {
        if (strncmp(l, "file ", 5) == 0 || strncmp(l, "delta ", 6) == 0 ||
            strncmp(l, "ref ", 4) == 0)
            nf++;
        else if (strncmp(l, "dir ", 4) == 0)
            nd++;
    }
    if ((nf && !(m->files = malloc(nf * sizeof(*m->files)))) ||
        (nd && !(m->dirs = malloc(nd * sizeof(*m->dirs)))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    m->files_cap = nf;
    m->dirs_cap = nd;
    return 0;
}

int ws_manifest_parse_inplace(char *text, size_t len, const char *what, struct ws_manifest *m,
                              struct ws_error *err)
{
    struct parse_state st = {0};
    char *line, *nl;
    size_t lineno = 1;
    int rc = 0;

    memset(m, 0, sizeof(*m));
    if (memchr(text, '\0', len) || text[len] != '\0')
        return ws_error_set(err, WS_ERR_CORRUPT, "manifest %s holds a NUL byte", what);
    if (len == 0 || text[len - 1] != '\n')
        return ws_error_set(err, WS_ERR_CORRUPT, "manifest %s does not end with a newline", what);
    if ((rc = reserve(m, text, err)) != 0)
        goto out;
    line = text;
    nl = strchr(line, '\n');
    *nl = '\0';
    if (strcmp(line, MANIFEST_MAGIC) == 0)
        m->version = 2;
    else if (strcmp(line, MANIFEST_MAGIC_V3) == 0)
        m->version = 3;
    else if (strcmp(line, MANIFEST_MAGIC_V1) == 0)
        m->version = 1;
    else {
        rc = ws_error_set(err, WS_ERR_CORRUPT,
                          "manifest %s: not a walsafe manifest (version 1 to 3)", what);
        goto out;
    }
    for (line = nl + 1; *line; line = nl + 1) {
        int r;
        lineno++;
        nl = strchr(line, '\n');
        *nl = '\0';
        if ((r = parse_line(m, line, &st, err)) != 0) {
            rc = r == -2 ? err->code
                         : ws_error_set(err, WS_ERR_CORRUPT, "manifest %s: invalid line %zu", what,
                                        lineno);
            goto out;
        }
    }
    if (!st.ended)
        rc = ws_error_set(err, WS_ERR_CORRUPT, "manifest %s is incomplete (no end line)", what);
out:
    if (rc)
        ws_manifest_free(m);
    return rc;
}

int ws_manifest_parse(const char *text, size_t len, const char *what, struct ws_manifest *m,
                      struct ws_error *err)
{
    char *copy;
    int rc;

    memset(m, 0, sizeof(*m));
    if (!(copy = malloc(len + 1)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    memcpy(copy, text, len);
    copy[len] = '\0';
    rc = ws_manifest_parse_inplace(copy, len, what, m, err);
    free(copy);
    return rc;
}

uint64_t ws_manifest_start_segno(const struct ws_manifest *m)
{
    return ws_wal_lsn_to_segno(m->start_lsn, m->wal_segment_size);
}

uint64_t ws_manifest_stop_segno(const struct ws_manifest *m)
{
    uint64_t s = ws_wal_lsn_to_segno(m->stop_lsn, m->wal_segment_size);

    /* stop_lsn is the end of the backup-end record: exactly at a boundary, that record ended
     * in the previous segment. */
    if (m->stop_lsn % m->wal_segment_size == 0 && s > 0)
        s--;
    return s < ws_manifest_start_segno(m) ? ws_manifest_start_segno(m) : s;
}

/* ---- time and ids ------------------------------------------------------------------------- */

int ws_backup_id_valid(const char *id)
{
    int i;

    if (strlen(id) != WS_BACKUP_ID_LEN)
        return 0;
    for (i = 0; i < WS_BACKUP_ID_LEN; i++) {
        char c = id[i];
        if (i == 8 ? c != 'T' : i == 15 ? c != 'Z' : !isdigit((unsigned char)c))
            return 0;
    }
    return 1;
}

int64_t ws_backup_id_time(const char *id)
{
    struct tm tm = {0};
    char *end;

    if (!ws_backup_id_valid(id))
        return 0;
    end = strptime(id, "%Y%m%dT%H%M%SZ", &tm);
    if (!end || *end)
        return 0;
    return (int64_t)timegm(&tm);
}

void ws_backup_id_from_time(int64_t t, char out[WS_BACKUP_ID_LEN + 1])
{
    time_t tt = (time_t)t;
    struct tm tm;

    gmtime_r(&tt, &tm);
    strftime(out, WS_BACKUP_ID_LEN + 1, "%Y%m%dT%H%M%SZ", &tm);
}

/* ---- keys and loading --------------------------------------------------------------------- */

void ws_backup_prefix(const struct ws_repo *repo, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s/backup/", repo->cluster);
}

void ws_backup_manifest_key(const struct ws_repo *repo, const char *id, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s/backup/%s/manifest", repo->cluster, id);
}

void ws_backup_bundle_key(const struct ws_repo *repo, const char *id, uint32_t bundle, char *out,
                          size_t outsz)
{
    snprintf(out, outsz, "%s/backup/%s/data/%06" PRIu32, repo->cluster, id, bundle);
}

int ws_manifest_load(struct ws_repo *repo, const struct ws_keyring *kr, const char *id,
                     struct ws_manifest *m, struct ws_error *err)
{
    char key[256], *text = NULL;
    size_t len;
    int rc;

    memset(m, 0, sizeof(*m));
    ws_backup_manifest_key(repo, id, key, sizeof(key));
    if ((rc = ws_repo_get_small(repo, key, kr, WS_MANIFEST_LIMIT, &text, &len, err)) != 0)
        return rc;
    if ((rc = ws_manifest_parse_inplace(text, len, key, m, err)) == 0 && strcmp(m->id, id) != 0) {
        rc = ws_error_set(err, WS_ERR_CORRUPT, "manifest %s names backup %s", key, m->id);
        ws_manifest_free(m);
    }
    free(text);
    return rc;
}
