/*
 * The streaming tar reader (io/tar.h): archives GNU tar writes with --format=ustar and archives
 * built here the way PostgreSQL's tar code writes them (trailing "/" on directories and symbolic
 * links, octal fields ending in NUL, base-256 sizes, "./pg_wal/archive_status"), read through fill
 * callbacks that hand out 1 byte, odd sizes and the whole archive at once, with members read whole,
 * in small pieces or skipped; an 8 GiB member skipped; every malformed header, path and truncation
 * refused.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"
#include "io/tar.h"
#include "unit.h"

#define BLK 512

/* ---- a source over a buffer, chunk bytes per fill ---- */

struct src {
    const uint8_t *data;
    size_t len, pos, chunk;
    size_t fail_after; /* a fill error once pos reaches it (0: never) */
};

static int fill_buf(void *arg, const uint8_t **data, size_t *len, struct ws_error *err)
{
    struct src *s = arg;
    size_t n = s->len - s->pos < s->chunk ? s->len - s->pos : s->chunk;

    if (s->fail_after && s->pos >= s->fail_after)
        return ws_error_set(err, WS_ERR_STORAGE, "connection lost");
    *data = s->data + s->pos;
    *len = n;
    s->pos += n;
    return 0;
}

/* ---- archives as PostgreSQL writes them (src/port/tar.c) ---- */

struct arc {
    uint8_t *data;
    size_t len;
};

static void put_octal(uint8_t *f, size_t len, uint64_t v)
{
    f[len - 1] = '\0';
    for (size_t i = len - 1; i > 0; i--, v >>= 3)
        f[i - 1] = (uint8_t)('0' + (v & 7));
}

static void put_number(uint8_t *f, size_t len, uint64_t v)
{
    if (v >> (3 * (len - 1)) == 0) {
        put_octal(f, len, v);
        return;
    }
    f[0] = 0x80;
    for (size_t i = len - 1; i > 0; i--, v >>= 8)
        f[i] = (uint8_t)v;
}

static void set_checksum(uint8_t *h)
{
    uint64_t sum = 0;

    memset(h + 148, ' ', 8);
    for (size_t i = 0; i < BLK; i++)
        sum += h[i];
    put_octal(h + 148, 8, sum);
}

static void header(uint8_t *h, const char *name, char type, uint64_t size, const char *link)
{
    size_t n = strlen(name);

    memset(h, 0, BLK);
    memcpy(h, name, n < 100 ? n : 100);
    if ((type == '5' || type == '2') && n < 99)
        h[n] = '/';
    put_number(h + 100, 8, type == '5' || type == '2' ? 0700 : 0600);
    put_number(h + 108, 8, 26);
    put_number(h + 116, 8, 26);
    put_number(h + 124, 12, size);
    put_number(h + 136, 12, 1765100000);
    h[156] = (uint8_t)type;
    if (link)
        memcpy(h + 157, link, strlen(link));
    memcpy(h + 257,
           "ustar\0"
           "00",
           8);
    memcpy(h + 265, "postgres", 8);
    memcpy(h + 297, "postgres", 8);
    set_checksum(h);
}

static void arc_add(struct arc *a, const void *p, size_t n)
{
    uint8_t *d;

    if (n == 0)
        return;
    if (!(d = realloc(a->data, a->len + n)))
        abort();
    a->data = d;
    memcpy(a->data + a->len, p, n);
    a->len += n;
}

/* A member: its header, data and padding. */
static void arc_member(struct arc *a, const char *name, char type, const void *data, size_t size,
                       const char *link)
{
    uint8_t h[BLK], zero[BLK] = {0};

    header(h, name, type, size, link);
    arc_add(a, h, BLK);
    arc_add(a, data, size);
    arc_add(a, zero, (BLK - size % BLK) % BLK);
}

static void arc_trailer(struct arc *a)
{
    uint8_t zero[2 * BLK] = {0};

    arc_add(a, zero, sizeof(zero));
}

/* ---- reading a whole archive ---- */

struct member {
    struct ws_tar_member m;
    uint8_t *data; /* what ws_tar_read returned (NULL when skipped) */
};

struct listing {
    struct member v[64];
    size_t n;
    int rc;
    struct ws_error err;
    uint64_t offset;
};

static void listing_free(struct listing *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].data);
    memset(l, 0, sizeof(*l));
}

/* Reads every member of a through `chunk`-byte fills, data in `piece`-byte reads (0: skipped).
 * After the end, ws_tar_next keeps saying end. */
static void list(const struct arc *a, size_t chunk, size_t piece, struct listing *l)
{
    struct src s = {a->data, a->len, 0, chunk, 0};
    struct ws_tar *t = NULL;
    int end = 0;

    memset(l, 0, sizeof(*l));
    if ((l->rc = ws_tar_open(&t, fill_buf, &s, &l->err)) != 0)
        return;
    while ((l->rc = ws_tar_next(t, &l->v[l->n].m, &end, &l->err)) == 0 && !end) {
        struct member *m = &l->v[l->n++];
        size_t off = 0, got = 0;
        if (piece == 0)
            continue;
        if (!(m->data = malloc(m->m.size + 1)))
            abort();
        do {
            size_t want = piece < m->m.size + 1 - off ? piece : m->m.size + 1 - off;
            if ((l->rc = ws_tar_read(t, m->data + off, want, &got, &l->err)) != 0)
                break;
            off += got;
        } while (got > 0);
        if (l->rc != 0)
            break;
        if (off != m->m.size)
            unit_fail(__FILE__, __LINE__, "member data length");
        if (l->n == 64)
            break;
    }
    if (l->rc == 0 && end) {
        struct ws_tar_member again;
        if (ws_tar_next(t, &again, &end, &l->err) != 0 || !end)
            unit_fail(__FILE__, __LINE__, "end is not repeated");
    }
    l->offset = ws_tar_offset(t);
    ws_tar_free(t);
}

static const size_t CHUNKS[] = {1, 7, 511, 512, 513, 4096, 1 << 20};
static const size_t PIECES[] = {0, 1, 100, 8192};
#define NCHUNKS (sizeof(CHUNKS) / sizeof(CHUNKS[0]))
#define NPIECES (sizeof(PIECES) / sizeof(PIECES[0]))

/* ---- GNU tar --format=ustar ---- */

static int run_tar(const char *dir, const char *out)
{
    int status;
    pid_t pid;

    fflush(stdout);
    fflush(stderr);
    if ((pid = fork()) < 0)
        return -1;
    if (pid == 0) {
        execlp("tar", "tar", "--format=ustar", "--sort=name", "-cf", out, "-C", dir, "PG_VERSION",
               "base", "global", "pg_tblspc", "empty", (char *)NULL);
        _exit(127);
    }
    if (waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

struct expect {
    const char *path;
    enum ws_tar_type type;
    size_t size;
    const char *link;
};

/* The members GNU tar writes for the tree test_gnu_tar makes, in name order. */
static const struct expect GNU[] = {
    {"PG_VERSION", WS_TAR_FILE, 3, NULL},
    {"base", WS_TAR_DIR, 0, NULL},
    {"base/1", WS_TAR_DIR, 0, NULL},
    {"base/1/1259", WS_TAR_FILE, 3 * 8192, NULL},
    {"base/1/1259_fsm", WS_TAR_FILE, 513, NULL},
    {"base/1/PG_VERSION", WS_TAR_FILE, 511, NULL},
    {"base/1/"
     "a_name_that_needs_the_ustar_prefix_field_because_it_is_longer_than_one_hundred_bytes_in_"
     "total_length",
     WS_TAR_FILE, 512, NULL},
    {"global", WS_TAR_DIR, 0, NULL},
    {"global/pg_control", WS_TAR_FILE, 8192, NULL},
    {"pg_tblspc", WS_TAR_DIR, 0, NULL},
    {"pg_tblspc/16384", WS_TAR_SYMLINK, 0, "/srv/pg/ts1"},
    {"empty", WS_TAR_FILE, 0, NULL},
};
#define NGNU (sizeof(GNU) / sizeof(GNU[0]))

static int make_tree(const char *dir)
{
    char p[600];
    uint8_t buf[3 * 8192];

    for (size_t i = 0; i < NGNU; i++) {
        if (unit_path(p, sizeof(p), "gnu/%s", GNU[i].path) != 0)
            return -1;
        if (GNU[i].type == WS_TAR_DIR && unit_mkdir(p) != 0)
            return -1;
        if (GNU[i].type == WS_TAR_SYMLINK && symlink(GNU[i].link, p) != 0)
            return -1;
        unit_random(buf, GNU[i].size, (uint32_t)i);
        if (GNU[i].type == WS_TAR_FILE && unit_write(p, buf, GNU[i].size, 0640) != 0)
            return -1;
    }
    return unit_path(p, sizeof(p), "gnu") != 0 || strcmp(p, dir) != 0 ? -1 : 0;
}

static void check_gnu(const struct listing *l, size_t piece)
{
    uint8_t buf[3 * 8192];

    REQUIRE(l->rc == 0);
    REQUIRE(l->n == NGNU);
    for (size_t i = 0; i < NGNU; i++) {
        const struct ws_tar_member *m = &l->v[i].m;
        CHECK(strcmp(m->path, GNU[i].path) == 0);
        CHECK(m->type == GNU[i].type);
        CHECK(m->size == GNU[i].size);
        CHECK(strcmp(m->linkname, GNU[i].link ? GNU[i].link : "") == 0);
        CHECK(m->type != WS_TAR_FILE || m->mode == 0640);
        CHECK(m->mtime > 1000000000);
        unit_random(buf, GNU[i].size, (uint32_t)i);
        CHECK(piece == 0 || memcmp(l->v[i].data, buf, GNU[i].size) == 0);
    }
    CHECK(l->offset % BLK == 0);
}

static void test_gnu_tar(void)
{
    char dir[512], file[512];
    struct arc a = {0};
    struct listing l;

    REQUIRE(unit_path(dir, sizeof(dir), "gnu") == 0 && unit_mkdir(dir) == 0);
    REQUIRE(make_tree(dir) == 0);
    REQUIRE(unit_path(file, sizeof(file), "gnu.tar") == 0);
    REQUIRE(run_tar(dir, file) == 0);
    REQUIRE(unit_read(file, &a.data, &a.len) == 0);
    for (size_t c = 0; c < NCHUNKS; c++)
        for (size_t p = 0; p < NPIECES; p++) {
            list(&a, CHUNKS[c], PIECES[p], &l);
            check_gnu(&l, PIECES[p]);
            listing_free(&l);
        }
    free(a.data);
}

/* ---- archives as PostgreSQL 15 sends them ---- */

static void pg_archive(struct arc *a, int trailer)
{
    uint8_t page[8192 + 3];

    unit_random(page, sizeof(page), 7);
    memset(a, 0, sizeof(*a));
    arc_member(a, "backup_label", '0', "START WAL LOCATION: 0/2000028\n", 30, NULL);
    arc_member(a, "base", '5', NULL, 0, NULL);
    arc_member(a, "base/5/16384", '0', page, sizeof(page), NULL);
    arc_member(a, "pg_tblspc/16385", '2', NULL, 0, "/srv/ts");
    arc_member(a, "global/pg_filenode.map", '\0', page, 512, NULL);
    arc_member(a, "empty", '0', NULL, 0, NULL);
    arc_member(a, "./pg_wal/archive_status", '5', NULL, 0, NULL); /* as PostgreSQL 15 sends it */
    if (trailer)
        arc_trailer(a);
}

static void check_pg(const struct listing *l, size_t piece, size_t len)
{
    uint8_t page[8192 + 3];

    unit_random(page, sizeof(page), 7);
    REQUIRE(l->rc == 0);
    REQUIRE(l->n == 7);
    CHECK(strcmp(l->v[0].m.path, "backup_label") == 0 && l->v[0].m.size == 30);
    CHECK(strcmp(l->v[1].m.path, "base") == 0 && l->v[1].m.type == WS_TAR_DIR);
    CHECK(l->v[1].m.mode == 0700 && l->v[1].m.mtime == 1765100000);
    CHECK(strcmp(l->v[2].m.path, "base/5/16384") == 0 && l->v[2].m.size == sizeof(page));
    CHECK(strcmp(l->v[3].m.path, "pg_tblspc/16385") == 0 && l->v[3].m.type == WS_TAR_SYMLINK);
    CHECK(strcmp(l->v[3].m.linkname, "/srv/ts") == 0 && l->v[3].m.size == 0);
    CHECK(l->v[4].m.type == WS_TAR_FILE && l->v[4].m.size == 512 && l->v[4].m.mode == 0600);
    CHECK(strcmp(l->v[5].m.path, "empty") == 0 && l->v[5].m.size == 0);
    CHECK(strcmp(l->v[6].m.path, "pg_wal/archive_status") == 0 && l->v[6].m.type == WS_TAR_DIR);
    if (piece) {
        CHECK(memcmp(l->v[0].data, "START WAL LOCATION: 0/2000028\n", 30) == 0);
        CHECK(memcmp(l->v[2].data, page, sizeof(page)) == 0);
        CHECK(memcmp(l->v[4].data, page, 512) == 0);
    }
    CHECK(l->offset == len);
}

static void test_pg_archive(void)
{
    struct arc a;
    struct listing l;

    for (int trailer = 0; trailer <= 1; trailer++) {
        pg_archive(&a, trailer);
        for (size_t c = 0; c < NCHUNKS; c++)
            for (size_t p = 0; p < NPIECES; p++) {
                list(&a, CHUNKS[c], PIECES[p], &l);
                check_pg(&l, PIECES[p], a.len);
                listing_free(&l);
            }
        free(a.data);
    }
    /* one zero block, then the source ends */
    pg_archive(&a, 0);
    arc_add(&a, (uint8_t[BLK]){0}, BLK);
    list(&a, 3, 1, &l);
    check_pg(&l, 1, a.len);
    listing_free(&l);
    free(a.data);
    /* an empty archive: no member, or only the trailer */
    a.data = NULL, a.len = 0;
    list(&a, 1, 1, &l);
    CHECK(l.rc == 0 && l.n == 0);
    arc_trailer(&a);
    list(&a, 1, 1, &l);
    CHECK(l.rc == 0 && l.n == 0 && l.offset == 2 * BLK);
    free(a.data);
}

/* ---- base-256 sizes ---- */

/* An 8 GiB + 5 file (its data generated, never stored), then a small one. */
struct big_src {
    uint8_t head[BLK], tail[3 * BLK];
    uint64_t size, pos;
    size_t chunk;
};

static int fill_big(void *arg, const uint8_t **data, size_t *len, struct ws_error *err)
{
    static const uint8_t zero[1 << 20];
    struct big_src *s = arg;
    uint64_t body = BLK + s->size + (BLK - s->size % BLK) % BLK, total = body + sizeof(s->tail);
    uint64_t left;

    (void)err;
    if (s->pos < BLK) {
        *data = s->head + s->pos;
        left = BLK - s->pos;
    } else if (s->pos < body) {
        *data = zero;
        left = body - s->pos < sizeof(zero) ? body - s->pos : sizeof(zero);
    } else {
        *data = s->tail + (s->pos - body);
        left = total - s->pos;
    }
    *len = left < s->chunk ? (size_t)left : s->chunk;
    s->pos += *len;
    return 0;
}

static void test_base256(void)
{
    struct big_src s = {.size = (UINT64_C(8) << 30) + 5, .chunk = 1 << 20};
    struct ws_tar_member m;
    struct ws_error err = {0};
    struct ws_tar *t = NULL;
    struct listing l;
    struct arc a = {0};
    uint8_t tail_data[4] = "abc";
    int end = 0;

    header(s.head, "base/5/16384.1", '0', s.size, NULL);
    CHECK(s.head[124] == 0x80); /* PostgreSQL's form of a size of 8 GiB or more */
    header(s.tail, "after", '0', 3, NULL);
    memcpy(s.tail + BLK, tail_data, 3);
    REQUIRE(ws_tar_open(&t, fill_big, &s, &err) == 0);
    REQUIRE(ws_tar_next(t, &m, &end, &err) == 0 && !end);
    CHECK(strcmp(m.path, "base/5/16384.1") == 0 && m.size == s.size);
    REQUIRE(ws_tar_next(t, &m, &end, &err) == 0 && !end); /* 8 GiB skipped */
    CHECK(strcmp(m.path, "after") == 0 && m.size == 3);
    CHECK(ws_tar_offset(t) == 2 * BLK + s.size + (BLK - 5));
    REQUIRE(ws_tar_next(t, &m, &end, &err) == 0);
    CHECK(end == 1);
    ws_tar_free(t);

    /* a small size in base-256 is a size too */
    arc_member(&a, "f", '0', tail_data, 3, NULL);
    memset(a.data + 124, 0, 12);
    a.data[124] = 0x80;
    a.data[135] = 3;
    set_checksum(a.data);
    list(&a, 1, 1, &l);
    CHECK(l.rc == 0 && l.n == 1 && l.v[0].m.size == 3 && memcmp(l.v[0].data, "abc", 3) == 0);
    listing_free(&l);
    free(a.data);
}

/* ---- refusals ---- */

/* One valid member "base/1/2" of 600 bytes with `n` bytes at `off` replaced by `bytes` (the
 * header's checksum then made right again, unless raw), or changed by `edit`, must be refused
 * with a message holding in_msg. */
struct bad_case {
    const char *what;
    size_t off, n;
    char bytes[100];
    int raw;
    void (*edit)(struct arc *a);
    const char *in_msg;
};

static void e_path_long(struct arc *a)
{
    memset(a->data, 'n', 100);
    memset(a->data + 345, 'p', 155); /* 155 + "/" + 100 = 256 bytes */
    set_checksum(a->data);
}
static void e_link_empty(struct arc *a)
{
    a->data[156] = '2';
    put_octal(a->data + 124, 12, 0);
    set_checksum(a->data);
}
static void e_link_nul(struct arc *a)
{
    memcpy(a->data + 157, "/srv\0x", 6);
    e_link_empty(a);
}
static void e_cut_header(struct arc *a)
{
    a->len = 300;
}
static void e_cut_data(struct arc *a)
{
    a->len = BLK + 599;
}
static void e_cut_padding(struct arc *a)
{
    a->len = 2 * BLK + 100;
}
static void e_zero_then_header(struct arc *a)
{
    uint8_t zero[BLK] = {0}, h[BLK];

    a->len = 3 * BLK; /* the trailer dropped */
    arc_add(a, zero, BLK);
    header(h, "late", '0', 0, NULL);
    arc_add(a, h, BLK);
}
static void e_garbage(struct arc *a)
{
    unit_random(a->data, BLK, 3);
}

#define FF "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"
static const struct bad_case BAD[] = {
    {"checksum", 265, 1, "x", 1, NULL, "checksum"},
    {"checksum field", 148, 8, "0x12345", 1, NULL, "checksum"},
    {"magic", 257, 5, "ustaR", 0, NULL, "ustar"},
    {"size text", 124, 12, "0000000012x", 0, NULL, "base/1/2"},
    {"size empty", 124, 12, "", 0, NULL, "base/1/2"},
    {"size negative", 124, 12, "\xff" FF, 0, NULL, "base/1/2"},
    {"size above int64", 124, 12, "\x80" FF, 0, NULL, "base/1/2"},
    {"size digit 8", 124, 12, "00800001130 ", 0, NULL, "base/1/2"},
    {"mode text", 100, 8, "rw-r--r", 0, NULL, "base/1/2"},
    {"mtime text", 136, 12, "yesterday", 0, NULL, "base/1/2"},
    {"hard link", 156, 1, "1", 0, NULL, "type '1'"},
    {"GNU long name", 156, 1, "L", 0, NULL, "type 'L'"},
    {"pax header", 156, 1, "x", 0, NULL, "type 'x'"},
    {"device", 156, 1, "3", 0, NULL, "type '3'"},
    {"directory with data", 156, 1, "5", 0, NULL, "base/1/2"},
    {"empty name", 0, 100, "", 0, NULL, "invalid path"},
    {"absolute", 0, 100, "/etc/passwd", 0, NULL, "invalid path"},
    {"dot", 0, 100, "base/./2", 0, NULL, "invalid path"},
    {"dot-dot", 0, 100, "base/../../2", 0, NULL, "invalid path"},
    {"only dot-dot", 0, 100, "..", 0, NULL, "invalid path"},
    /* one leading "./" goes (PostgreSQL sends one), not two */
    {"leading dots", 0, 100, "././base", 0, NULL, "invalid path"},
    {"double slash", 0, 100, "base//2", 0, NULL, "invalid path"},
    {"file with trailing slash", 0, 100, "base/2/", 0, NULL, "invalid path"},
    {"NUL in name", 0, 100, "base\0/etc", 0, NULL, "invalid path"},
    {"absolute prefix", 345, 4, "/srv", 0, NULL, "invalid path"},
    {"NUL in prefix", 345, 3, "a\0b", 0, NULL, "invalid path"},
    {"path of 256 bytes", 0, 0, "", 0, e_path_long, "invalid path"},
    {"link without target", 0, 0, "", 0, e_link_empty, "base/1/2"},
    {"NUL in link target", 0, 0, "", 0, e_link_nul, "base/1/2"},
    {"cut in header", 0, 0, "", 0, e_cut_header, "offset 0"},
    {"cut in data", 0, 0, "", 0, e_cut_data, "base/1/2"},
    {"cut in padding", 0, 0, "", 0, e_cut_padding, "base/1/2"},
    {"header after a zero block", 0, 0, "", 0, e_zero_then_header, "zero block"},
    {"garbage", 0, 0, "", 0, e_garbage, "offset 0"},
};

static void bad_edit(const struct bad_case *b, struct arc *a)
{
    if (b->edit) {
        b->edit(a);
        return;
    }
    memcpy(a->data + b->off, b->bytes, b->n);
    if (!b->raw)
        set_checksum(a->data);
}

static void test_bad(void)
{
    uint8_t data[600];
    struct arc good = {0};
    struct listing l;

    unit_random(data, sizeof(data), 9);
    /* unedited, the archive reads: each refusal below is the edit's */
    arc_member(&good, "base/1/2", '0', data, sizeof(data), NULL);
    arc_trailer(&good);
    list(&good, 1, 1, &l);
    CHECK(l.rc == 0 && l.n == 1 && memcmp(l.v[0].data, data, sizeof(data)) == 0);
    listing_free(&l);
    free(good.data);
    for (size_t i = 0; i < sizeof(BAD) / sizeof(BAD[0]); i++)
        for (size_t c = 0; c < NCHUNKS; c++) {
            struct arc a = {0};
            arc_member(&a, "base/1/2", '0', data, sizeof(data), NULL);
            arc_trailer(&a);
            bad_edit(&BAD[i], &a);
            list(&a, CHUNKS[c], c % 2 ? 0 : 64, &l);
            if (l.rc != WS_ERR_CORRUPT || !strstr(l.err.msg, BAD[i].in_msg))
                fprintf(stderr, "    %s, chunk %zu: %s (%s)\n", BAD[i].what, CHUNKS[c],
                        ws_code_name(l.rc), l.err.msg);
            CHECK(l.rc == WS_ERR_CORRUPT);
            CHECK(strstr(l.err.msg, BAD[i].in_msg) != NULL);
            CHECK(strncmp(l.err.msg, "tar ", 4) == 0);
            listing_free(&l);
            free(a.data);
        }
}

/* After an error the reader refuses to go on; a fill error is passed through. */
static void test_errors_stick(void)
{
    uint8_t data[2000];
    struct arc a = {0};
    struct src s;
    struct ws_tar *t = NULL;
    struct ws_tar_member m;
    struct ws_error err = {0};
    uint8_t buf[4096];
    size_t got = 1;
    int end = 0;

    unit_random(data, sizeof(data), 1);
    arc_member(&a, "a", '0', data, sizeof(data), NULL);
    arc_member(&a, "b", '0', data, 10, NULL);
    arc_trailer(&a);
    s = (struct src){a.data, a.len, 0, 100, BLK + 1000};
    REQUIRE(ws_tar_open(&t, fill_buf, &s, &err) == 0);
    REQUIRE(ws_tar_next(t, &m, &end, &err) == 0 && !end);
    CHECK(ws_tar_read(t, buf, sizeof(buf), &got, &err) == WS_ERR_STORAGE);
    CHECK(strcmp(err.msg, "connection lost") == 0);
    CHECK(ws_tar_next(t, &m, &end, &err) == WS_ERR_STORAGE && !end);
    CHECK(ws_tar_read(t, buf, sizeof(buf), &got, &err) == WS_ERR_STORAGE && got == 0);
    ws_tar_free(t);

    /* a corrupt second header: the first member stays readable up to it */
    a.data[BLK + 2048] ^= 0x20; /* the name of "b", at offset 2560 */
    s = (struct src){a.data, a.len, 0, 1, 0};
    REQUIRE(ws_tar_open(&t, fill_buf, &s, &err) == 0);
    REQUIRE(ws_tar_next(t, &m, &end, &err) == 0 && !end);
    CHECK(ws_tar_read(t, buf, sizeof(buf), &got, &err) == 0 && got == sizeof(data));
    CHECK(memcmp(buf, data, sizeof(data)) == 0);
    CHECK(ws_tar_next(t, &m, &end, &err) == WS_ERR_CORRUPT);
    CHECK(strstr(err.msg, "offset 2560") != NULL);
    CHECK(ws_tar_next(t, &m, &end, &err) == WS_ERR_CORRUPT);
    ws_tar_free(t);
    free(a.data);
}

const struct unit_test unit_tests[] = {
    {"gnu_tar", test_gnu_tar}, {"pg_archive", test_pg_archive},     {"base256", test_base256},
    {"bad", test_bad},         {"errors_stick", test_errors_stick}, {NULL, NULL},
};
