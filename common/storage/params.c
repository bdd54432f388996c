#include "storage/params.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/config.h"

/* The forms of a repo, by their start ("/" is a plain absolute path). */
static const struct {
    const char *start;
    enum ws_storage_kind kind;
    unsigned int caps;
} forms[] = {
    {"/", WS_STORAGE_POSIX, WS_POSIX_CAPS},
    {"file://", WS_STORAGE_POSIX, WS_POSIX_CAPS},
    {"s3://", WS_STORAGE_S3, WS_S3_CAPS},
    {"sftp://", WS_STORAGE_SFTP, WS_SFTP_CAPS},
};
#define NFORMS (sizeof(forms) / sizeof(forms[0]))

/* The index in forms[] of repo's form, or -1. */
static int form_of(const char *repo)
{
    for (size_t i = 0; repo && i < NFORMS; i++)
        if (strncmp(repo, forms[i].start, strlen(forms[i].start)) == 0)
            return (int)i;
    return -1;
}

unsigned int ws_storage_caps_of(const char *repo)
{
    int f = form_of(repo);
    return f < 0 ? 0 : forms[f].caps;
}

static int nonempty(const char *v)
{
    return v && *v;
}

/* A copy of v, or NULL for NULL (and for "" when empty_is_unset); *oom is set when a copy
 * that was wanted failed. */
static char *copy(const char *v, int empty_is_unset, int *oom)
{
    char *c;

    if (!v || (empty_is_unset && !*v))
        return NULL;
    if (!(c = strdup(v)))
        *oom = 1;
    return c;
}

static char *copy_n(const char *v, size_t n, int *oom)
{
    char *c = strndup(v, n);
    if (!c)
        *oom = 1;
    return c;
}

static int out_of_memory(struct ws_error *err)
{
    return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
}

/* ---- posix ---- */

int ws_storage_local_dir(const char *repo, char *out, size_t outsz)
{
    int f = form_of(repo);

    if (f < 0 || forms[f].kind != WS_STORAGE_POSIX)
        return 0;
    if (strncmp(repo, "file://", 7) == 0)
        repo += 7;
    return repo[0] == '/' && (size_t)snprintf(out, outsz, "%s", repo) < outsz;
}

static int posix_params(const char *repo, struct ws_posix_params *p, struct ws_error *err)
{
    int oom = 0;

    if (strncmp(repo, "file://", 7) == 0) {
        if (repo[7] != '/')
            return ws_error_set(err, WS_ERR_CONFIG,
                                "invalid repo \"%s\": a file:// URL needs an absolute path "
                                "(file:///path)",
                                repo);
        repo += 7;
    }
    p->root = copy(repo, 0, &oom);
    return oom ? out_of_memory(err) : 0;
}

/* ---- s3 ---- */

/* The values the s3 driver takes, in the order they are checked. */
static int s3_check(const struct ws_config *cfg, size_t bucket_len, struct ws_error *err)
{
    const char *ep = cfg->s3_endpoint, *style = cfg->s3_uri_style;

    if (bucket_len < 3 || bucket_len > 63)
        return ws_error_set(err, WS_ERR_CONFIG,
                            "invalid repo \"%s\": bucket names have 3 to 63 characters", cfg->repo);
    if (nonempty(cfg->s3_access_key_id) && !nonempty(cfg->s3_secret_access_key))
        return ws_error_set(err, WS_ERR_CONFIG,
                            "s3_access_key_id is set but s3_secret_access_key is not");
    if (ep && strncmp(ep, "https://", 8) != 0 && strncmp(ep, "http://", 7) != 0)
        return ws_error_set(err, WS_ERR_CONFIG,
                            "invalid s3_endpoint \"%s\": expected https://host[:port] or "
                            "http://host[:port]",
                            ep);
    if (style && strcmp(style, "virtual") != 0 && strcmp(style, "path") != 0)
        return ws_error_set(err, WS_ERR_CONFIG,
                            "invalid s3_uri_style \"%s\": expected virtual or path", style);
    return 0;
}

/* "" or the prefix after the bucket with its trailing slashes dropped, then "/". */
static char *s3_prefix(const char *slash, int *oom)
{
    char buf[512];
    size_t n;

    if (!slash || !slash[1])
        return copy("", 0, oom);
    for (n = strlen(slash + 1); n > 0 && slash[n] == '/'; n--)
        ;
    snprintf(buf, sizeof(buf), "%.*s/", (int)n, slash + 1);
    return copy(n ? buf : "", 0, oom);
}

/* Scheme, host and URI style: of s3_endpoint when set, else of AWS's endpoint for the region. */
static void s3_endpoint(const struct ws_config *cfg, struct ws_s3_params *p, int *oom)
{
    const char *ep = cfg->s3_endpoint, *style = cfg->s3_uri_style;
    char buf[512];

    if (ep) {
        const char *sep = strstr(ep, "://"), *h = sep + 3;
        p->scheme = copy_n(ep, (size_t)(sep - ep), oom);
        p->host = copy_n(h, strcspn(h, "/"), oom);
        p->path_style = !style || strcmp(style, "path") == 0;
    } else {
        snprintf(buf, sizeof(buf), "s3.%s.amazonaws.com", p->region ? p->region : "");
        p->scheme = copy("https", 0, oom);
        p->host = copy(buf, 0, oom);
        p->path_style = style && strcmp(style, "path") == 0;
    }
}

static int s3_params(const struct ws_config *cfg, struct ws_s3_params *p, struct ws_error *err)
{
    const char *bucket = cfg->repo + 5, *slash = strchr(bucket, '/');
    size_t bucket_len = slash ? (size_t)(slash - bucket) : strlen(bucket);
    int oom = 0, rc;

    if ((rc = s3_check(cfg, bucket_len, err)) != 0)
        return rc;
    p->location = copy(cfg->repo, 0, &oom);
    p->bucket = copy_n(bucket, bucket_len, &oom);
    p->prefix = s3_prefix(slash, &oom);
    p->region = copy(cfg->s3_region ? cfg->s3_region : "us-east-1", 0, &oom);
    s3_endpoint(cfg, p, &oom);
    p->access_key_id = copy(cfg->s3_access_key_id, 1, &oom);
    p->secret_access_key = p->access_key_id ? copy(cfg->s3_secret_access_key, 1, &oom) : NULL;
    p->session_token = copy(cfg->s3_session_token, 1, &oom);
    p->ca_file = copy(cfg->s3_ca_file, 1, &oom);
    p->verify_tls = cfg->s3_verify_tls;
    p->timeout = cfg->timeout;
    p->part_size = (size_t)cfg->s3_part_size;
    p->parallel = cfg->parallel;
    return oom ? out_of_memory(err) : 0;
}

/* ---- sftp ---- */

static int sftp_bad_url(const char *url, struct ws_error *err)
{
    return ws_error_set(err, WS_ERR_CONFIG,
                        "invalid repo \"%s\": expected sftp://user@host[:port]/abs/path", url);
}

/* host and port of "user@host[:port]" (hostpart up to path); "[v6]" brackets are dropped. */
static int sftp_host(const char *url, const char *hostpart, const char *path,
                     struct ws_sftp_params *p, struct ws_error *err)
{
    const char *h = strchr(hostpart, '@') + 1, *end = path, *colon = NULL;
    char *num_end;
    long port = 22;
    int oom = 0;

    if (*h == '[') {
        const char *close = memchr(h, ']', (size_t)(path - h));
        if (!close)
            return sftp_bad_url(url, err);
        colon = close[1] == ':' ? close + 1 : NULL;
        if (close + 1 != path && !colon)
            return sftp_bad_url(url, err);
        end = close;
        h++;
    } else if ((colon = memchr(h, ':', (size_t)(path - h))) != NULL) {
        end = colon;
    }
    if (colon) {
        errno = 0;
        port = strtol(colon + 1, &num_end, 10);
        if (num_end != path || errno || port < 1 || port > 65535)
            return sftp_bad_url(url, err);
    }
    if (end == h)
        return sftp_bad_url(url, err);
    if (!(p->host = copy_n(h, (size_t)(end - h), &oom)))
        return out_of_memory(err);
    p->port = (int)port;
    return 0;
}

/* ~/.ssh/<name>: in $HOME, or /root without it. */
static char *home_file(const char *name, int *oom)
{
    const char *home = getenv("HOME");
    char buf[4096];

    snprintf(buf, sizeof(buf), "%s/.ssh/%s", home && *home ? home : "/root", name);
    return copy(buf, 0, oom);
}

static int sftp_params(const struct ws_config *cfg, struct ws_sftp_params *p, struct ws_error *err)
{
    const char *url = cfg->repo, *hostpart = url + 7, *path = strchr(hostpart, '/');
    const char *at = strchr(hostpart, '@'), *pin = cfg->sftp_host_key_sha256;
    int oom = 0;
    size_t n;

    if (!at || !path || at > path || path[1] == '\0')
        return sftp_bad_url(url, err);
    p->location = copy(url, 0, &oom);
    p->origin = copy_n(url, (size_t)(path - url), &oom);
    p->root = copy(path, 0, &oom);
    p->identity_file = cfg->sftp_identity_file ? copy(cfg->sftp_identity_file, 0, &oom)
                                               : home_file("id_ed25519", &oom);
    p->known_hosts = cfg->sftp_known_hosts ? copy(cfg->sftp_known_hosts, 0, &oom)
                                           : home_file("known_hosts", &oom);
    if (pin && strncmp(pin, "SHA256:", 7) == 0)
        pin += 7;
    p->host_key_sha256 = copy(pin, 0, &oom);
    p->timeout = cfg->timeout;
    if (oom)
        return out_of_memory(err);
    for (n = strlen(p->root); n > 1 && p->root[n - 1] == '/'; n--)
        p->root[n - 1] = '\0';
    return sftp_host(url, hostpart, path, p, err);
}

/* ---- all ---- */

int ws_storage_params_from_config(const struct ws_config *cfg, struct ws_storage_params *out,
                                  struct ws_error *err)
{
    int f = form_of(cfg->repo), rc;

    memset(out, 0, sizeof(*out));
    if (f < 0)
        return ws_error_set(err, WS_ERR_CONFIG,
                            "invalid repo \"%s\": expected /abs/path, file:///abs/path, "
                            "s3://bucket[/prefix] or sftp://user@host[:port]/abs/path",
                            cfg->repo ? cfg->repo : "");
    out->kind = forms[f].kind;
    out->attempts = cfg->retries;
    rc = out->kind == WS_STORAGE_POSIX ? posix_params(cfg->repo, &out->posix, err)
         : out->kind == WS_STORAGE_S3  ? s3_params(cfg, &out->s3, err)
                                       : sftp_params(cfg, &out->sftp, err);
    if (rc != 0)
        ws_storage_params_free(out);
    return rc;
}

static void wipe(char *secret)
{
    if (secret)
        memset(secret, 0, strlen(secret));
    free(secret);
}

void ws_storage_params_free(struct ws_storage_params *p)
{
    struct ws_s3_params *s3 = &p->s3;
    struct ws_sftp_params *sf = &p->sftp;

    free(p->posix.root);
    free(s3->location);
    free(s3->scheme);
    free(s3->host);
    free(s3->bucket);
    free(s3->prefix);
    free(s3->region);
    free(s3->access_key_id);
    wipe(s3->secret_access_key);
    wipe(s3->session_token);
    free(s3->ca_file);
    free(sf->location);
    free(sf->origin);
    free(sf->root);
    free(sf->host);
    free(sf->identity_file);
    free(sf->known_hosts);
    free(sf->host_key_sha256);
    memset(p, 0, sizeof(*p));
}

int ws_storage_open_params(const struct ws_storage_params *p, struct ws_storage **out,
                           struct ws_error *err)
{
    int rc = p->kind == WS_STORAGE_POSIX ? ws_storage_posix_open(&p->posix, out, err)
             : p->kind == WS_STORAGE_S3  ? ws_storage_s3_open(&p->s3, out, err)
                                         : ws_storage_sftp_open(&p->sftp, out, err);
    if (rc == 0)
        (*out)->attempts = p->attempts;
    return rc;
}

int ws_storage_open(const struct ws_config *cfg, struct ws_storage **out, struct ws_error *err)
{
    struct ws_storage_params p;
    int rc = ws_storage_params_from_config(cfg, &p, err);

    if (rc == 0)
        rc = ws_storage_open_params(&p, out, err);
    ws_storage_params_free(&p);
    return rc;
}
