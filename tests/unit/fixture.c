#include "fixture.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "pg/wal.h"
#include "unit.h"

/* Records "<what>: <detail>" as a failure of the running test; returns -1. */
static int fixture_fail(const char *what, const char *detail)
{
    char msg[1200];
    snprintf(msg, sizeof(msg), "fixture: %s: %s", what, detail);
    unit_fail(__FILE__, __LINE__, msg);
    return -1;
}

int unit_path(char *out, size_t outsz, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(out, outsz, "%s/", unit_tmpdir()), m;

    if (n < 0 || (size_t)n >= outsz)
        return fixture_fail("path too long", unit_tmpdir());
    va_start(ap, fmt);
    m = vsnprintf(out + n, outsz - (size_t)n, fmt, ap);
    va_end(ap);
    if (m < 0 || (size_t)m >= outsz - (size_t)n)
        return fixture_fail("path too long", out);
    return 0;
}

int unit_mkdir(const char *dir)
{
    char buf[PATH_MAX];
    size_t len = strlen(dir);

    if (len == 0 || len >= sizeof(buf))
        return fixture_fail("mkdir: invalid path", dir);
    memcpy(buf, dir, len + 1);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0700) != 0 && errno != EEXIST)
                return fixture_fail("mkdir", strerror(errno));
            *p = c;
            if (c == '\0')
                break;
        }
    }
    return 0;
}

int unit_write(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600), ok;

    if (fd < 0)
        return fixture_fail(path, strerror(errno));
    ok = ws_write_all(fd, data, len) == 0 && fchmod(fd, mode) == 0;
    close(fd);
    return ok ? 0 : fixture_fail(path, "write failed");
}

int unit_read(const char *path, uint8_t **data, size_t *len)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC), ok;

    *data = NULL;
    *len = 0;
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return -1;
    }
    *len = (size_t)st.st_size;
    *data = malloc(*len ? *len : 1);
    ok = *data && ws_pread_full(fd, *data, *len, 0) == (ssize_t)*len;
    close(fd);
    if (ok)
        return 0;
    free(*data);
    *data = NULL;
    *len = 0;
    return -1;
}

int unit_same_file(const char *a, const char *b)
{
    uint8_t *da = NULL, *db = NULL;
    size_t la = 0, lb = 0;
    int same = unit_read(a, &da, &la) == 0 && unit_read(b, &db, &lb) == 0 && la == lb &&
               memcmp(da, db, la) == 0;

    free(da);
    free(db);
    return same;
}

int unit_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

int unit_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;

    if (!d)
        return -1;
    while ((de = readdir(d)) != NULL)
        n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    return n;
}

int unit_count_named(const char *dir, const char *part)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;

    if (!d)
        return 0;
    while ((de = readdir(d)) != NULL) {
        char path[PATH_MAX];
        struct stat st;
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (strstr(de->d_name, part))
            n++;
        if (snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) < (int)sizeof(path) &&
            lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
            n += unit_count_named(path, part);
    }
    closedir(d);
    return n;
}

int unit_key_file(const char *path, const char *hex)
{
    char text[2 * WS_KEY_LEN + 2];
    int n = snprintf(text, sizeof(text), "%s\n", hex ? hex : UNIT_KEYHEX);

    if (n < 0 || (size_t)n >= sizeof(text))
        return fixture_fail("key file: hex too long", path);
    return unit_write(path, text, (size_t)n, 0600);
}

int unit_key(struct ws_key *key, uint32_t seed)
{
    struct ws_error err = {0};

    unit_random(key->key, WS_KEY_LEN, seed);
    return ws_key_derive_id(key, &err) == 0 ? 0 : fixture_fail("ws_key_derive_id", err.msg);
}

void unit_keyring(struct ws_keyring *kr, const struct ws_key *keys, size_t n)
{
    memset(kr, 0, sizeof(*kr));
    for (size_t i = 0; i < n && i < WS_KEYRING_MAX; i++)
        kr->keys[i] = keys[i];
    kr->n = n < WS_KEYRING_MAX ? n : WS_KEYRING_MAX;
    kr->has_write_key = n > 0;
}

int unit_config(struct ws_config *cfg, ...)
{
    struct ws_error err = {0};
    const char *key, *value;
    va_list ap;
    int rc = 0;

    ws_config_init(cfg);
    va_start(ap, cfg);
    while (rc == 0 && (key = va_arg(ap, const char *)) != NULL) {
        value = va_arg(ap, const char *);
        if (value)
            rc = ws_config_set(cfg, key, value, "test", &err);
    }
    va_end(ap);
    if (rc == 0)
        return 0;
    ws_config_free(cfg);
    ws_config_init(cfg);
    return fixture_fail("configuration", err.msg);
}

void unit_wal_header(uint8_t *b, uint16_t magic, uint16_t info, uint64_t pageaddr, uint64_t sysid,
                     uint32_t seg_size, uint32_t blcksz)
{
    struct ws_wal_long_header h = {.magic = magic,
                                   .info = info,
                                   .tli = 1,
                                   .pageaddr = pageaddr,
                                   .sysid = sysid,
                                   .seg_size = seg_size,
                                   .blcksz = blcksz};

    ws_wal_encode_long_header(&h, b);
}

int unit_wal_segment_ex(const char *dir, uint64_t segno, uint32_t seed, const struct unit_seg *o,
                        char *out, size_t outsz)
{
    char name[WS_WAL_NAME_LEN + 1];
    uint8_t *buf = malloc(o->file_size ? o->file_size : 1);
    int rc = -1, n;

    if (!buf)
        return fixture_fail("segment", "out of memory");
    unit_random(buf, o->file_size, seed);
    if (o->file_size >= WS_WAL_LONG_HEADER_SIZE)
        unit_wal_header(buf, o->magic, WS_XLP_LONG_HEADER, o->pageaddr_segno * o->seg_size_hdr,
                        o->sysid, o->seg_size_hdr, 8192);
    ws_wal_format_name(name, 1, segno, UNIT_SEG);
    n = snprintf(out, outsz, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= outsz)
        fixture_fail("segment path too long", dir);
    else
        rc = unit_write(out, buf, o->file_size, 0600);
    free(buf);
    return rc;
}

int unit_wal_segment(const char *dir, uint64_t segno, uint64_t sysid, uint32_t seed, char *out,
                     size_t outsz)
{
    struct unit_seg o = {UNIT_WAL_MAGIC, UNIT_SEG, UNIT_SEG, segno, sysid};
    return unit_wal_segment_ex(dir, segno, seed, &o, out, outsz);
}

int unit_wal_ready(const char *pg_wal, uint64_t segno, uint32_t seed,
                   char name[WS_WAL_NAME_LEN + 1])
{
    char seg[PATH_MAX], ready[PATH_MAX], own[WS_WAL_NAME_LEN + 1];

    if (unit_wal_segment(pg_wal, segno, UNIT_SYSID, seed, seg, sizeof(seg)) != 0)
        return -1;
    ws_wal_format_name(own, 1, segno, UNIT_SEG);
    if (name)
        memcpy(name, own, sizeof(own));
    if (snprintf(ready, sizeof(ready), "%s/archive_status/%s.ready", pg_wal, own) >=
        (int)sizeof(ready))
        return fixture_fail(".ready path too long", pg_wal);
    return unit_write(ready, "", 0, 0600);
}

int unit_mem_repo(struct ws_repo *repo, const char *cluster, const struct ws_identity *id)
{
    struct ws_error err = {0};

    memset(repo, 0, sizeof(*repo));
    if (snprintf(repo->cluster, sizeof(repo->cluster), "%s", cluster) >= (int)sizeof(repo->cluster))
        return fixture_fail("cluster name too long", cluster);
    if (ws_storage_mem_open(&repo->st, &err) != 0)
        return fixture_fail("ws_storage_mem_open", err.msg);
    if (id && ws_repo_identity_ensure(repo, id, "test", &err) != 0)
        return fixture_fail("ws_repo_identity_ensure", err.msg);
    return 0;
}
