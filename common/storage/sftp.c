/*
 * storage/sftp.c - a repository on an SFTP server, over libcurl's sftp:// (libssh2): open and
 * close, stat, get, list, remove and wal-prune's housekeeping. Requests and their sessions are
 * sftp_session.c's, the host key sftp_hostkey.c's, the upload sink sftp_put.c's.
 *
 * A key that names a directory (a prefix of other keys) is an absent object, as in an object
 * store. Listing reads directories as "ls -l" lines and descends into those that can hold keys
 * under the prefix; temp files (".walsafe-tmp.*") are never listed.
 *
 * The identity file must not be accessible by group or others when it is ours, nor readable by
 * others whoever owns it. An encrypted one takes its passphrase from the environment
 * (WALSAFE_SFTP_PASSPHRASE_FILE, else WALSAFE_SFTP_PASSPHRASE), read at open, wiped on close.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/params.h"
#include "storage/sftp_int.h"

/* ---- stat ---- */

static size_t discard(char *ptr, size_t size, size_t n, void *arg)
{
    (void)ptr, (void)arg;
    return size * n;
}

/*
 * SFTP opens and stats a directory like a file, and libcurl does not say which it found; but a
 * key that names a directory (a prefix of other keys) is an absent object, as in an object
 * store. Listing "key/" tells: it fails with "no such file" for a file. Returns 1 for a
 * directory, 0 for anything else (a failed probe included: the caller then reports its own
 * error). Only asked after a request succeeded or failed in a way a directory explains.
 */
static int is_directory(struct sftp_storage *s, const char *key)
{
    char url[4096];
    int n = snprintf(url, sizeof(url), "%s%s/%s/", s->origin, s->root, key);

    if (n <= 0 || (size_t)n >= sizeof(url))
        return 0;
    s->key_rejected = 0;
    ws_sftp_base_opts(s, s->easy, &s->xfer, url);
    s->cu->easy_setopt(s->easy, CURLOPT_DIRLISTONLY, 1L);
    s->cu->easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, discard);
    return ws_sftp_run(s) == CURLE_OK;
}

int ws_sftp_stat(struct ws_storage *st, const char *key, struct ws_storage_stat *out,
                 struct ws_error *err)
{
    struct sftp_storage *s = (struct sftp_storage *)st;
    char url[4096];
    curl_off_t len = -1;
    long ftime = -1;
    int cc;

    if (ws_sftp_url_of(s, key, url, sizeof(url)) != 0)
        return ws_error_set(err, WS_ERR_STORAGE, "key too long: \"%s\"", key);
    s->key_rejected = 0;
    ws_sftp_base_opts(s, s->easy, &s->xfer, url);
    s->cu->easy_setopt(s->easy, CURLOPT_NOBODY, 1L);
    s->cu->easy_setopt(s->easy, CURLOPT_FILETIME, 1L);
    cc = ws_sftp_run(s);
    if (cc != CURLE_OK)
        return ws_sftp_curl_error(s, cc, "stat", key, err);
    s->cu->easy_getinfo(s->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &len);
    s->cu->easy_getinfo(s->easy, CURLINFO_FILETIME, &ftime);
    if (is_directory(s, key))
        return ws_sftp_curl_error(s, CURLE_REMOTE_FILE_NOT_FOUND, "stat", key, err);
    out->size = len >= 0 ? (uint64_t)len : 0;
    out->mtime = ftime;
    return 0;
}

/* ---- get ---- */

struct get_ctx {
    struct ws_sink *dest;
    struct ws_error *err;
    uint64_t got;
    int failed;
};

static size_t get_write(char *ptr, size_t size, size_t n, void *arg)
{
    struct get_ctx *g = arg;
    if (ws_sink_write(g->dest, ptr, size * n, g->err) != 0) {
        g->failed = 1;
        return 0;
    }
    g->got += size * n;
    return size * n;
}

static int sf_get(struct ws_storage *st, const char *key, uint64_t offset, uint64_t length,
                  struct ws_sink *dest, struct ws_error *err)
{
    struct sftp_storage *s = (struct sftp_storage *)st;
    char url[4096], range[64];
    struct get_ctx g = {dest, err, 0, 0};
    curl_off_t announced = -1;
    int cc;

    if (ws_sftp_url_of(s, key, url, sizeof(url)) != 0)
        return ws_error_set(err, WS_ERR_STORAGE, "key too long: \"%s\"", key);
    s->key_rejected = 0;
    ws_sftp_base_opts(s, s->easy, &s->xfer, url);
    if (offset || length != WS_STORAGE_TO_END) {
        if (length == 0)
            return 0;
        if (length == WS_STORAGE_TO_END)
            snprintf(range, sizeof(range), "%llu-", (unsigned long long)offset);
        else
            snprintf(range, sizeof(range), "%llu-%llu", (unsigned long long)offset,
                     (unsigned long long)(offset + length - 1));
        s->cu->easy_setopt(s->easy, CURLOPT_RANGE, range);
    }
    s->cu->easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, get_write);
    s->cu->easy_setopt(s->easy, CURLOPT_WRITEDATA, &g);
    cc = ws_sftp_run_delivering(s, &g.got);
    if (g.failed)
        return err->code; /* the sink's own error */
    /* a directory opens like a file and fails at the first read */
    if (cc == CURLE_SSH && g.got == 0 && is_directory(s, key))
        cc = CURLE_REMOTE_FILE_NOT_FOUND;
    if (cc != CURLE_OK)
        return ws_sftp_curl_error(s, cc, "read", key, err);
    /* A transfer cut by a clean close can look successful: compare with what was announced
     * (for a range, libcurl announces the bytes from offset to the end). */
    s->cu->easy_getinfo(s->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &announced);
    if ((length != WS_STORAGE_TO_END && g.got != length) ||
        (length == WS_STORAGE_TO_END && announced >= 0 && g.got != (uint64_t)announced)) {
        ws_error_set(err, WS_ERR_STORAGE, "short read of \"%s\" from repository \"%s\": %llu bytes",
                     key, s->base.location, (unsigned long long)g.got);
        err->retryable = 1;
        return err->code;
    }
    return 0;
}

/* ---- list, remove, housekeeping ---- */

static size_t list_write(char *ptr, size_t size, size_t n, void *arg)
{
    struct ws_error e = {0};
    return ws_sink_write(arg, ptr, size * n, &e) == 0 ? size * n : 0;
}

/* An entry of a directory listing. */
struct dir_entry {
    char type;         /* as "ls -l" shows it: 'd' directory, '-' file, ... */
    uint64_t size;     /* as listed */
    const char *name;  /* in the directory; never ".", ".." or with a '/' */
    const char *child; /* its key: "<dir>/<name>", or name in the root */
};
typedef int (*dir_entry_cb)(struct sftp_storage *s, void *arg, const struct dir_entry *e,
                            struct ws_error *err);

/* Lists directory rel ("" for the root) and calls cb for its entries until one fails; an absent
 * directory holds nothing. */
static int read_dir(struct sftp_storage *s, const char *rel, dir_entry_cb cb, void *arg,
                    struct ws_error *err)
{
    char url[4096];
    struct ws_sink *b = NULL;
    char *line, *save = NULL;
    int cc, rc = 0;

    snprintf(url, sizeof(url), "%s%s/%s%s", s->origin, s->root, rel, *rel ? "/" : "");
    if ((rc = ws_buffer_sink_new(64u << 20, &b, err)) != 0)
        return rc;
    s->key_rejected = 0;
    ws_sftp_base_opts(s, s->easy, &s->xfer, url);
    s->cu->easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, list_write);
    s->cu->easy_setopt(s->easy, CURLOPT_WRITEDATA, b);
    cc = ws_sftp_run(s);
    if (cc == CURLE_REMOTE_FILE_NOT_FOUND)
        goto out; /* no such directory: nothing under this prefix */
    if (cc != CURLE_OK) {
        rc = ws_sftp_curl_error(s, cc, "list", *rel ? rel : "/", err);
        goto out;
    }
    /* Lines look like "ls -l": perms links owner group size month day time|year name. */
    for (line = strtok_r(ws_buffer_sink_text(b), "\r\n", &save); line && rc == 0;
         line = strtok_r(NULL, "\r\n", &save)) {
        char perms[16], name[1024], child[2048];
        unsigned long long size;
        int consumed = 0;
        if (sscanf(line, "%15s %*s %*s %*s %llu %*s %*s %*s %n", perms, &size, &consumed) < 2 ||
            consumed == 0)
            continue;
        snprintf(name, sizeof(name), "%s", line + consumed);
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || strchr(name, '/'))
            continue;
        snprintf(child, sizeof(child), "%s%s%s", rel, *rel ? "/" : "", name);
        rc = cb(s, arg, &(struct dir_entry){perms[0], size, name, child}, err);
    }
out:
    ws_sink_free(b);
    return rc;
}

struct list_walk {
    const char *prefix;
    ws_storage_list_cb cb;
    void *arg;
};

/* Passes on a file whose key starts with the prefix, and descends into the directories that
 * can hold such keys. Dot names are keys too (".hidden"); temp files are not. */
static int list_entry(struct sftp_storage *s, void *arg, const struct dir_entry *e,
                      struct ws_error *err)
{
    struct list_walk *w = arg;
    size_t plen = strlen(w->prefix), clen = strlen(e->child);

    if (strncmp(e->name, ".walsafe-tmp", 12) == 0 ||
        strncmp(e->child, w->prefix, clen < plen ? clen : plen) != 0)
        return 0;
    if (e->type == 'd')
        return read_dir(s, e->child, list_entry, w, err);
    if (e->type == '-' && strncmp(e->child, w->prefix, plen) == 0) {
        struct ws_storage_stat st = {.size = e->size};
        return w->cb(w->arg, e->child, &st, err);
    }
    return 0;
}

/* The deepest directory prefix names ("a/b/c" -> "a/b"), into out. */
static void prefix_dir(const char *prefix, char *out, size_t outsz)
{
    const char *slash = strrchr(prefix, '/');

    snprintf(out, outsz, "%.*s", slash ? (int)(slash - prefix) : 0, prefix);
}

static int sf_list(struct ws_storage *st, const char *prefix, ws_storage_list_cb cb, void *arg,
                   struct ws_error *err)
{
    struct list_walk w = {prefix, cb, arg};
    char start[2048];

    prefix_dir(prefix, start, sizeof(start));
    return read_dir((struct sftp_storage *)st, start, list_entry, &w, err);
}

static int sf_remove(struct ws_storage *st, const char *key, struct ws_error *err)
{
    struct sftp_storage *s = (struct sftp_storage *)st;
    struct ws_storage_stat stt;
    char cmd[4200], path[4096];
    int cc, rc;

    if ((rc = ws_sftp_stat(st, key, &stt, err)) != 0)
        return rc;
    ws_sftp_path_of(s, key, path, sizeof(path));
    snprintf(cmd, sizeof(cmd), "rm \"%s\"", path);
    if (ws_sftp_quote(s, cmd, &cc) != CURLE_OK)
        return ws_sftp_curl_error(s, cc, "remove", key, err);
    return 0;
}

/* An emptied directory (wal-prune): "*" makes a failing rmdir (not empty, absent) no error. */
static int sf_remove_dir(struct ws_storage *st, const char *prefix, struct ws_error *err)
{
    struct sftp_storage *s = (struct sftp_storage *)st;
    char cmd[4200], path[4096], dir[2048];
    int cc;

    snprintf(dir, sizeof(dir), "%.*s", (int)strlen(prefix) - 1, prefix);
    ws_sftp_path_of(s, dir, path, sizeof(path));
    snprintf(cmd, sizeof(cmd), "*rmdir \"%s\"", path);
    if (ws_sftp_quote(s, cmd, &cc) != CURLE_OK)
        return ws_sftp_curl_error(s, cc, "remove directory", dir, err);
    return 0;
}

struct temp_clean {
    int64_t before;
    int dry_run;
    size_t *count;
    uint64_t *bytes;
    int depth;
    const char *start; /* of the names wanted in this directory ("": all) */
};

/* A temp file of a killed upload, older than tc->before: removed (unless dry_run) and
 * counted. The listing's times are coarse: its own is asked for. */
static int clean_temp_file(struct sftp_storage *s, struct temp_clean *tc, const struct dir_entry *e,
                           struct ws_error *err)
{
    char cmd[4200], path[4096];
    struct ws_storage_stat st;
    int cc;

    if (ws_sftp_stat(&s->base, e->child, &st, err) != 0)
        return err->code == WS_ERR_NOT_FOUND ? 0 : err->code; /* gone: finished or cleaned */
    if (st.mtime < 0 || st.mtime >= tc->before)
        return 0;
    if (!tc->dry_run) {
        ws_sftp_path_of(s, e->child, path, sizeof(path));
        snprintf(cmd, sizeof(cmd), "*rm \"%s\"", path);
        if (ws_sftp_quote(s, cmd, &cc) != CURLE_OK)
            return ws_sftp_curl_error(s, cc, "remove temp file", e->child, err);
    }
    (*tc->count)++;
    *tc->bytes += e->size;
    return 0;
}

/* Temp files of killed uploads (wal-prune): in a directory those of names that start with
 * tc->start, and every one in the subdirectories whose name starts with it. */
static int clean_temp_entry(struct sftp_storage *s, void *arg, const struct dir_entry *e,
                            struct ws_error *err)
{
    struct temp_clean *tc = arg;
    const char *start = tc->start;
    size_t sl = strlen(start);
    int rc = 0;

    if (e->type == 'd') {
        if (tc->depth < 16 && strncmp(e->name, start, sl) == 0) {
            tc->depth++;
            tc->start = "";
            rc = read_dir(s, e->child, clean_temp_entry, tc, err);
            tc->start = start;
            tc->depth--;
        }
        return rc;
    }
    if (e->type != '-' || strncmp(e->name, ".walsafe-tmp.", 13) != 0 ||
        strncmp(e->name + 13, start, sl) != 0)
        return 0;
    return clean_temp_file(s, tc, e, err);
}

static int sf_clean_temp(struct ws_storage *st, const char *prefix, int64_t before, int dry_run,
                         size_t *count, uint64_t *bytes, struct ws_error *err)
{
    const char *slash = strrchr(prefix, '/');
    struct temp_clean tc = {before, dry_run, count, bytes, 0, slash ? slash + 1 : prefix};
    char dir[2048];

    prefix_dir(prefix, dir, sizeof(dir));
    return read_dir((struct sftp_storage *)st, dir, clean_temp_entry, &tc, err);
}

static void sf_close(struct ws_storage *st)
{
    struct sftp_storage *s = (struct sftp_storage *)st;

    if (s->passphrase)
        memset(s->passphrase, 0, strlen(s->passphrase));
    free(s->passphrase);
    s->cu->easy_cleanup(s->easy);
    s->cu->multi_cleanup(s->multi);
    if (s->kh_fd >= 0)
        close(s->kh_fd);
    free(s->kh_text);
    free(s->host);
    free(s->origin);
    free(s->root);
    free(s->identity);
    free(s->known_hosts);
    free(s->pin);
    free(s->base.location);
    free(s);
}

static const struct ws_storage_ops sftp_ops = {"sftp",  ws_sftp_stat, ws_sftp_open_put, sf_get,
                                               sf_list, sf_remove,    sf_close};
static const struct ws_storage_housekeeping sftp_hk = {sf_remove_dir, sf_clean_temp, NULL};

/* The identity file: readable, not accessible by group or others if it is ours (as OpenSSH
 * requires), not readable by others whoever owns it. */
static int identity_check(const char *path, struct ws_error *err)
{
    struct stat st;

    if (stat(path, &st) != 0 || access(path, R_OK) != 0)
        return ws_error_setsys(err, WS_ERR_CONFIG, errno,
                               "could not read sftp_identity_file \"%s\"", path);
    if ((st.st_uid == geteuid() && (st.st_mode & 077)) || (st.st_mode & 004))
        return ws_error_set(err, WS_ERR_CONFIG,
                            "permissions %04o for sftp_identity_file \"%s\" are too open: a "
                            "private key must not be accessible by group or others; run chmod "
                            "600 on it",
                            (unsigned)(st.st_mode & 07777), path);
    return 0;
}

/*
 * The passphrase of an encrypted identity file: from the file named by
 * WALSAFE_SFTP_PASSPHRASE_FILE (mode 0600 or stricter, first line), else from
 * WALSAFE_SFTP_PASSPHRASE. Neither is a configuration key, so no config file has to hold it.
 */
static int load_passphrase(struct sftp_storage *s, struct ws_error *err)
{
    const char *path = getenv("WALSAFE_SFTP_PASSPHRASE_FILE"), *env;
    char buf[1024];
    struct stat st;
    FILE *f;

    if (path && *path) {
        if (!(f = fopen(path, "re")))
            return ws_error_setsys(err, WS_ERR_CONFIG, errno,
                                   "could not open WALSAFE_SFTP_PASSPHRASE_FILE \"%s\"", path);
        if (fstat(fileno(f), &st) != 0 || (st.st_mode & 077)) {
            fclose(f);
            return ws_error_set(err, WS_ERR_CONFIG,
                                "passphrase file \"%s\" is readable by group or others; run "
                                "chmod 600 on it",
                                path);
        }
        if (!fgets(buf, sizeof(buf), f))
            buf[0] = '\0';
        fclose(f);
        buf[strcspn(buf, "\r\n")] = '\0';
        s->passphrase = strdup(buf);
        memset(buf, 0, sizeof(buf));
    } else if ((env = getenv("WALSAFE_SFTP_PASSPHRASE")) != NULL) {
        s->passphrase = strdup(env);
    } else {
        return 0;
    }
    return s->passphrase ? 0 : ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
}

/* Whether the libcurl loaded at run time speaks SFTP; vi is its version. */
static int curl_has_sftp(const curl_version_info_data *vi)
{
    for (const char *const *p = vi->protocols; p && *p; p++)
        if (strcmp(*p, "sftp") == 0)
            return 1;
    return 0;
}

static char *dup_or_null(const char *v)
{
    return v ? strdup(v) : NULL;
}

int ws_storage_sftp_open(const struct ws_sftp_params *p, struct ws_storage **out,
                         struct ws_error *err)
{
    const struct ws_curl *cu;
    const curl_version_info_data *vi;
    struct sftp_storage *s;

    if (ws_curl_load(&cu, err) != 0)
        return err->code;
    vi = cu->version_info(CURLVERSION_NOW);
    if (!curl_has_sftp(vi))
        return ws_error_set(err, WS_ERR_CONFIG,
                            "repo \"%s\": this libcurl (%s) was built without SFTP support",
                            p->location, vi->version);
    if (!(s = calloc(1, sizeof(*s))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    s->cu = cu;
    s->base.ops = &sftp_ops;
    s->base.hk = &sftp_hk;
    s->base.caps = WS_SFTP_CAPS;
    for (int i = 0; i < SFTP_SOCKETS; i++)
        s->socks[i] = -1;
    s->kh_fd = -1;
    s->timeout = p->timeout;
    s->port = p->port;
    s->base.location = strdup(p->location);
    s->origin = strdup(p->origin);
    s->root = strdup(p->root);
    s->host = strdup(p->host);
    s->identity = strdup(p->identity_file);
    s->known_hosts = strdup(p->known_hosts);
    s->pin = dup_or_null(p->host_key_sha256);
    s->multi = cu->multi_init();
    s->easy = cu->easy_init();
    if (!s->origin || !s->root || !s->host || !s->base.location || !s->identity ||
        !s->known_hosts || (p->host_key_sha256 && !s->pin) || !s->multi || !s->easy) {
        sf_close(&s->base);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    }
    if (ws_sftp_host_key_options(s, vi, err) != 0 || identity_check(s->identity, err) != 0 ||
        (!s->pin && ws_sftp_known_hosts_load(s, err) != 0) || load_passphrase(s, err) != 0) {
        sf_close(&s->base);
        return err->code;
    }
    *out = &s->base;
    return 0;
}
