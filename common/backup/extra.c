/* backup/extra.c - backup_extra_paths at create: checks, the walk, the object "extra" (extra.h). */
#include "backup/extra.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/log.h"
#include "base/util.h"
#include "io/object.h"

#define MAX_KEYS 64
#define MAX_PATHS 64
#define READ_SIZE (256u << 10)

/* The key files of the configuration: resolved names and identities (those that exist). */
struct keys {
    char path[MAX_KEYS][PATH_MAX];
    dev_t dev[MAX_KEYS];
    ino_t ino[MAX_KEYS];
    size_t n;
};

struct walk {
    const struct keys *keys;
    struct ws_sink *dest;
    struct ws_manifest *m;
    EVP_MD_CTX *md;
    uint8_t *buf;
    uint64_t off; /* content written so far */
};

/* a is b or lies below it */
static int within(const char *a, const char *b)
{
    size_t n = strlen(b);

    return strncmp(a, b, n) == 0 && (a[n] == '\0' || a[n] == '/');
}

static void add_key(struct keys *k, const char *path)
{
    struct stat st;

    if (k->n == MAX_KEYS || !realpath(path, k->path[k->n]) || stat(k->path[k->n], &st) != 0)
        return; /* a key file that cannot be resolved fails the keyring's load anyway */
    k->dev[k->n] = st.st_dev;
    k->ino[k->n] = st.st_ino;
    k->n++;
}

static void load_keys(const struct ws_config *cfg, struct keys *k)
{
    const char *p = cfg->decrypt_key_files ? cfg->decrypt_key_files : "";
    char path[PATH_MAX];

    k->n = 0;
    if (cfg->encrypt_key_file && *cfg->encrypt_key_file)
        add_key(k, cfg->encrypt_key_file);
    while (ws_list_next(&p, path, sizeof(path)) > 0)
        add_key(k, path);
}

static int key_refused(const char *path, const char *key, struct ws_error *err)
{
    return ws_error_set(err, WS_ERR_CONFIG,
                        "backup_extra_paths: \"%s\" is or holds the key file \"%s\": a key stored "
                        "only inside the backups it encrypts is lost with them; keep it apart "
                        "(and a copy offline) and take it out of backup_extra_paths",
                        path, key);
}

/* One listed path: clean, existing, a file or directory, apart from the data directory and the
 * key files. */
static int check_path(const char *path, const char *pgdata, const struct keys *k,
                      struct ws_error *err)
{
    char real[PATH_MAX];
    struct stat st;
    size_t i;

    if (!ws_path_clean_absolute(path))
        return ws_error_set(err, WS_ERR_CONFIG,
                            "backup_extra_paths: \"%s\" is not an absolute path without \".\", "
                            "\"..\", \"//\" or a trailing slash (or it is \"/\")",
                            path);
    if (lstat(path, &st) != 0)
        return ws_error_setsys(err, WS_ERR_CONFIG, errno, "backup_extra_paths: \"%s\"", path);
    if (S_ISLNK(st.st_mode))
        return ws_error_set(err, WS_ERR_CONFIG,
                            "backup_extra_paths: \"%s\" is a symbolic link: list the file or "
                            "directory it points to",
                            path);
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
        return ws_error_set(err, WS_ERR_CONFIG,
                            "backup_extra_paths: \"%s\" is neither a regular file nor a directory",
                            path);
    if (!realpath(path, real))
        return ws_error_setsys(err, WS_ERR_CONFIG, errno, "backup_extra_paths: \"%s\"", path);
    if (pgdata && (within(real, pgdata) || within(pgdata, real)))
        return ws_error_set(err, WS_ERR_CONFIG,
                            "backup_extra_paths: \"%s\" is or holds the data directory \"%s\", "
                            "which the backup itself stores",
                            path, pgdata);
    for (i = 0; i < k->n; i++)
        if (within(k->path[i], real) || within(k->path[i], path))
            return key_refused(path, k->path[i], err);
    return 0;
}

/* Every listed path through fn (ws_extra_check's and the walk's loop). */
static int each_path(const struct ws_config *cfg,
                     int (*fn)(void *, const char *, struct ws_error *), void *arg,
                     struct ws_error *err)
{
    const char *p = cfg->backup_extra_paths ? cfg->backup_extra_paths : "";
    char path[PATH_MAX];
    int more, rc;

    while ((more = ws_list_next(&p, path, sizeof(path))) > 0)
        if ((rc = fn(arg, path, err)) != 0)
            return rc;
    if (more < 0)
        return ws_error_set(err, WS_ERR_CONFIG, "backup_extra_paths: a path is too long");
    return 0;
}

struct check_arg {
    const char *pgdata;
    struct keys keys;
    char seen[MAX_PATHS][PATH_MAX]; /* the paths before, resolved */
    size_t nseen;
};

/* A path, also apart from every path listed before it (a file would be stored twice). */
static int check_one(void *arg, const char *path, struct ws_error *err)
{
    struct check_arg *a = arg;
    char *real = a->seen[a->nseen];
    size_t i;
    int rc;

    if ((rc = check_path(path, a->pgdata, &a->keys, err)) != 0)
        return rc;
    if (a->nseen == MAX_PATHS)
        return ws_error_set(err, WS_ERR_CONFIG, "backup_extra_paths: more than %d paths",
                            MAX_PATHS);
    if (!realpath(path, real))
        return ws_error_setsys(err, WS_ERR_CONFIG, errno, "backup_extra_paths: \"%s\"", path);
    for (i = 0; i < a->nseen; i++)
        if (within(real, a->seen[i]) || within(a->seen[i], real))
            return ws_error_set(err, WS_ERR_CONFIG,
                                "backup_extra_paths: \"%s\" overlaps \"%s\", listed before it",
                                path, a->seen[i]);
    a->nseen++;
    return 0;
}

int ws_extra_check(const struct ws_config *cfg, const char *pgdata, struct ws_error *err)
{
    struct check_arg *a = malloc(sizeof(*a));
    int rc;

    if (!a)
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    a->pgdata = pgdata;
    a->nseen = 0;
    load_keys(cfg, &a->keys);
    rc = each_path(cfg, check_one, a, err);
    free(a);
    return rc;
}

/* ---- the walk ----------------------------------------------------------------------------- */

static struct ws_bextra record_of(const char *path, const struct stat *st)
{
    struct ws_bextra e = {0};

    e.path = (char *)path;
    e.dir = S_ISDIR(st->st_mode);
    e.mode = (uint32_t)(st->st_mode & 07777);
    e.uid = (uint32_t)st->st_uid;
    e.gid = (uint32_t)st->st_gid;
    e.mtime = (int64_t)st->st_mtime;
    return e;
}

/* The file open at fd (st: its fstat) into dest, and its record. */
static int store_file(struct walk *w, int fd, const char *path, const struct stat *st,
                      struct ws_error *err)
{
    struct ws_bextra e = record_of(path, st);
    size_t i;
    ssize_t n;
    int rc;

    for (i = 0; i < w->keys->n; i++)
        if (st->st_dev == w->keys->dev[i] && st->st_ino == w->keys->ino[i])
            return key_refused(path, w->keys->path[i], err);
    if (EVP_DigestInit_ex(w->md, EVP_sha256(), NULL) != 1)
        return ws_error_set(err, WS_ERR_INTERNAL, "SHA-256 failed");
    e.offset = w->off;
    while ((n = read(fd, w->buf, READ_SIZE)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return ws_error_setsys(err, WS_ERR_IO, errno, "could not read \"%s\"", path);
        if (EVP_DigestUpdate(w->md, w->buf, (size_t)n) != 1)
            return ws_error_set(err, WS_ERR_INTERNAL, "SHA-256 failed");
        if ((rc = ws_sink_write(w->dest, w->buf, (size_t)n, err)) != 0)
            return rc;
        e.size += (uint64_t)n;
    }
    if (EVP_DigestFinal_ex(w->md, e.sha256, NULL) != 1)
        return ws_error_set(err, WS_ERR_INTERNAL, "SHA-256 failed");
    w->off += e.size;
    return ws_manifest_add_extra(w->m, &e, err);
}

static int walk_at(struct walk *w, int dirfd, const char *name, const char *path, int top,
                   struct ws_error *err);

static int name_order(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* The directory open at fd: its record, then its entries in name order. */
static int walk_dir(struct walk *w, int fd, const char *path, const struct stat *st,
                    struct ws_error *err)
{
    struct ws_bextra e = record_of(path, st);
    struct dirent **names = NULL;
    char child[PATH_MAX];
    int n, i, rc;

    if ((rc = ws_manifest_add_extra(w->m, &e, err)) != 0)
        return rc;
    /* scandirat reads a duplicate of fd: the walk's own descriptor stays where it is */
    if ((n = scandirat(fd, ".", &names, NULL, name_order)) < 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not read directory \"%s\"", path);
    for (i = 0; i < n && rc == 0; i++) {
        const char *nm = names[i]->d_name;
        if (strcmp(nm, ".") == 0 || strcmp(nm, "..") == 0)
            continue;
        if (ws_path_join(child, sizeof(child), path, nm) != 0)
            rc = ws_error_set(err, WS_ERR_INVALID, "path too long below \"%s\"", path);
        else
            rc = walk_at(w, fd, nm, child, 0, err);
    }
    for (i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* name in dirfd (path for records and messages): a regular file or directory, never followed
 * through a link; anything else below a listed directory is skipped with a warning, unopened. */
static int walk_at(struct walk *w, int dirfd, const char *name, const char *path, int top,
                   struct ws_error *err)
{
    struct stat st;
    int fd, rc;

    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return ws_error_setsys(err, top ? WS_ERR_CONFIG : WS_ERR_IO, errno,
                               "backup_extra_paths: could not stat \"%s\"", path);
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
        ws_log_warning("backup_extra_paths: skipping \"%s\": not a regular file or directory",
                       path);
        return 0; /* ws_extra_check refused such a listed path itself */
    }
    if ((fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)) < 0)
        return ws_error_setsys(err, top ? WS_ERR_CONFIG : WS_ERR_IO, errno,
                               "backup_extra_paths: could not open \"%s\"", path);
    if (fstat(fd, &st) != 0)
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not stat \"%s\"", path);
    else if (S_ISDIR(st.st_mode))
        rc = walk_dir(w, fd, path, &st, err);
    else if (S_ISREG(st.st_mode))
        rc = store_file(w, fd, path, &st, err);
    else
        rc = ws_error_set(err, WS_ERR_IO, "\"%s\" changed while it was read", path);
    close(fd);
    return rc;
}

static int walk_one(void *arg, const char *path, struct ws_error *err)
{
    return walk_at(arg, AT_FDCWD, path, path, 1, err);
}

int ws_extra_store(const struct ws_config *cfg, const char *pgdata, struct ws_sink *dest,
                   struct ws_manifest *m, struct ws_error *err)
{
    struct walk w = {0};
    struct keys *k = NULL;
    int rc;

    if ((rc = ws_extra_check(cfg, pgdata, err)) != 0)
        return rc;
    if (!(k = malloc(sizeof(*k))) || !(w.buf = malloc(READ_SIZE)) || !(w.md = EVP_MD_CTX_new())) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        goto out;
    }
    load_keys(cfg, k);
    w.keys = k;
    w.dest = dest;
    w.m = m;
    rc = each_path(cfg, walk_one, &w, err);
out:
    EVP_MD_CTX_free(w.md);
    free(w.buf);
    free(k);
    return rc;
}

/* ---- reading back --------------------------------------------------------------------------- */

int ws_extra_split(struct ws_repo *repo, const struct ws_keyring *kr, const struct ws_manifest *m,
                   const struct ws_bundle_opts *bo, struct ws_error *err)
{
    struct ws_bfile *files = NULL;
    const struct ws_bfile **ptrs = NULL;
    struct ws_sink *split = NULL, *reader = NULL;
    size_t i, n = 0;
    char key[256];
    int rc;

    if (!m->nextra)
        return 0;
    if (!(files = calloc(m->nextra, sizeof(*files))) ||
        !(ptrs = calloc(m->nextra, sizeof(*ptrs)))) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        goto out;
    }
    for (i = 0; i < m->nextra; i++) {
        const struct ws_bextra *e = &m->extra[i];
        if (e->dir)
            continue;
        files[n].path = e->path + 1;
        files[n].mode = e->mode;
        files[n].mtime = e->mtime;
        files[n].size = e->size;
        files[n].offset = e->offset;
        memcpy(files[n].sha256, e->sha256, 32);
        ptrs[n] = &files[n];
        n++;
    }
    ws_backup_object_key(repo, m->id, WS_BACKUP_EXTRA, key, sizeof(key));
    if ((rc = ws_bundle_splitter_new(ptrs, n, bo, &split, err)) != 0 ||
        (rc = ws_object_reader_new(split, key, kr, 0, &reader, err)) != 0)
        goto out;
    if ((rc = ws_storage_get(repo->st, key, 0, WS_STORAGE_TO_END, reader, err)) != 0 ||
        (rc = ws_sink_finish(reader, err)) != 0)
        ws_error_prefix(err, "backup %s, extra paths %s", m->id, key);
out:
    ws_sink_free(reader);
    free(ptrs);
    free(files);
    return rc;
}

void ws_extra_json(FILE *f, const struct ws_manifest *m)
{
    char hex[65], when[21];
    size_t i;

    fprintf(f, "[");
    for (i = 0; i < m->nextra; i++) {
        const struct ws_bextra *e = &m->extra[i];
        ws_format_utc(e->mtime, when);
        fprintf(f, "%s{\"path\": ", i ? ", " : "");
        ws_json_string(f, e->path);
        fprintf(f,
                ", \"type\": \"%s\", \"mode\": \"%04o\", \"uid\": %" PRIu32 ", \"gid\": %" PRIu32
                ", \"mtime\": \"%s\"",
                e->dir ? "dir" : "file", (unsigned)e->mode, e->uid, e->gid, when);
        if (!e->dir) {
            ws_hex(e->sha256, 32, hex);
            fprintf(f, ", \"size\": %" PRIu64 ", \"sha256\": \"%s\"", e->size, hex);
        }
        fprintf(f, "}");
    }
    fprintf(f, "]");
}
