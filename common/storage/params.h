/*
 * storage/params.h - what each driver is opened with, and the one place that fills it in from
 * the configuration. A driver sees its own parameters only, never struct ws_config.
 *
 * ws_storage_params_from_config() reads cfg->repo, picks the driver by its form, and takes
 * `retries` (as attempts) and the keys of that driver:
 *   /abs/path, file:///abs/path          posix   root
 *   s3://bucket[/prefix]                 s3      s3_*, timeout, parallel
 *   sftp://user@host[:port]/abs/path     sftp    sftp_*, timeout
 * It checks the form of what it takes and fills in the defaults (s3: region us-east-1, and
 * without s3_endpoint https://s3.<region>.amazonaws.com; path style with s3_endpoint, virtual
 * hosts without, unless s3_uri_style says otherwise. sftp: port 22, and ~/.ssh/id_ed25519 and
 * ~/.ssh/known_hosts in $HOME, /root without it), so a driver's open fails only on what it has
 * to find out itself (a directory, a file, libcurl). A value of the wrong form is WS_ERR_CONFIG
 * naming the key or the repo and the forms allowed; out of memory is WS_ERR_INTERNAL. An empty
 * s3_access_key_id, s3_secret_access_key, s3_session_token or s3_ca_file counts as unset.
 *
 * Ownership: the params own every string in them. ws_storage_params_free() wipes the secrets
 * (secret_access_key, session_token) before it frees them, and takes a zeroed or half-filled
 * struct too. A driver copies what it keeps: the params may be freed as soon as it is open.
 * Nothing here logs.
 *
 *     struct ws_storage_params p;
 *     if ((rc = ws_storage_params_from_config(cfg, &p, err)) == 0)
 *         rc = ws_storage_open_params(&p, &st, err);
 *     ws_storage_params_free(&p);
 *
 * Each driver's capabilities (storage.h) are constants here: the driver sets them in s->caps,
 * and ws_storage_caps_of() answers with them before anything is opened.
 */
#ifndef WS_STORAGE_PARAMS_H
#define WS_STORAGE_PARAMS_H

#include <stddef.h>

#include "storage/storage.h"

enum ws_storage_kind { WS_STORAGE_POSIX = 1, WS_STORAGE_S3, WS_STORAGE_SFTP };

struct ws_posix_params {
    char *root; /* a directory that must exist; an absolute path (the driver refuses others) */
};
/* The directory of a local repository (/abs/path or file:///abs/path) into out: 1; 0 for any
 * other form (or a path that does not fit). */
int ws_storage_local_dir(const char *repo, char *out, size_t outsz);
#define WS_POSIX_CAPS (WS_STORAGE_DIRS | WS_STORAGE_REMOVE_DIR | WS_STORAGE_CLEAN_TEMP)

struct ws_s3_params {
    char *location;          /* the repository URL as configured, for messages */
    char *scheme;            /* "https" or "http" */
    char *host;              /* the endpoint's host[:port] */
    char *bucket;            /* 3 to 63 characters */
    char *prefix;            /* "" or "dir/": every key of the repository is under it */
    int path_style;          /* 1: scheme://host/bucket/key; 0: scheme://bucket.host/key */
    char *region;            /* signed into every request */
    char *access_key_id;     /* NULL: requests go unsigned */
    char *secret_access_key; /* secret; set whenever access_key_id is */
    char *session_token;     /* secret, or NULL */
    char *ca_file;           /* NULL: the system's CAs */
    int verify_tls;
    long timeout;     /* seconds to connect, and without progress */
    size_t part_size; /* bytes buffered per part; an object that fits is one PUT */
    int parallel;     /* parts in flight at most (the driver also caps it) */
};
#define WS_S3_CAPS (WS_STORAGE_REMOTE | WS_STORAGE_REMOVE_MANY | WS_STORAGE_PRESIGN)

struct ws_sftp_params {
    char *location;        /* the repository URL as configured, for messages */
    char *origin;          /* "sftp://user@host[:port]": every request's URL starts with it */
    char *root;            /* the path after origin, no trailing '/' (unless it is "/") */
    char *host;            /* as in the URL, an IPv6 address without its brackets */
    int port;              /* 1 to 65535 */
    char *identity_file;   /* the client's private key */
    char *known_hosts;     /* the server's key is checked against it, unless pinned */
    char *host_key_sha256; /* the pin, base64 without "SHA256:", or NULL */
    long timeout;          /* seconds to connect, and without progress */
};
#define WS_SFTP_CAPS                                                                               \
    (WS_STORAGE_REMOTE | WS_STORAGE_DIRS | WS_STORAGE_REMOVE_DIR | WS_STORAGE_CLEAN_TEMP)

struct ws_storage_params {
    enum ws_storage_kind kind; /* which of the members below is filled in */
    int attempts;              /* s->attempts of the opened storage (storage.h) */
    struct ws_posix_params posix;
    struct ws_s3_params s3;
    struct ws_sftp_params sftp;
};

int ws_storage_params_from_config(const struct ws_config *cfg, struct ws_storage_params *out,
                                  struct ws_error *err);
void ws_storage_params_free(struct ws_storage_params *p);

/* Opens the driver of p->kind (p as ws_storage_params_from_config() filled it in) and sets the
 * storage's attempts. */
int ws_storage_open_params(const struct ws_storage_params *p, struct ws_storage **out,
                           struct ws_error *err);

/* The drivers. Each checks what it must find (the root directory; libcurl, the identity file,
 * known_hosts) and returns WS_ERR_CONFIG or WS_ERR_STORAGE naming it; attempts stay 0 (one
 * try) until the caller sets them. */
int ws_storage_posix_open(const struct ws_posix_params *p, struct ws_storage **out,
                          struct ws_error *err);
int ws_storage_s3_open(const struct ws_s3_params *p, struct ws_storage **out, struct ws_error *err);
int ws_storage_sftp_open(const struct ws_sftp_params *p, struct ws_storage **out,
                         struct ws_error *err);

#endif
