#include "repo/repo.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "io/object.h"
#include "pg/wal.h"

#define WS_IDENTITY_MAX 4096 /* an identity is ~130 bytes of text */

int ws_repo_open(const struct ws_config *cfg, struct ws_repo *repo, struct ws_error *err)
{
    memset(repo, 0, sizeof(*repo));
    snprintf(repo->cluster, sizeof(repo->cluster), "%s", cfg->cluster);
    return ws_storage_open(cfg, &repo->st, err);
}

void ws_repo_close(struct ws_repo *repo)
{
    ws_storage_close(repo->st);
    repo->st = NULL;
}

int ws_repo_wal_key(const struct ws_repo *repo, const char *walname, char *out, size_t outsz)
{
    int kind = ws_wal_classify(walname), n;

    if (kind == WS_WAL_INVALID)
        return -1;
    if (kind == WS_WAL_HISTORY)
        n = snprintf(out, outsz, "%s/wal/%s", repo->cluster, walname);
    else
        n = snprintf(out, outsz, "%s/wal/%.16s/%s", repo->cluster, walname, walname);
    return n > 0 && (size_t)n < outsz ? 0 : -1;
}

int ws_repo_stream_prefix(const struct ws_repo *repo, const char *segment, char *out, size_t outsz)
{
    int n;

    if (ws_wal_classify(segment) != WS_WAL_SEGMENT)
        return -1;
    n = snprintf(out, outsz, "%s/stream/%s.", repo->cluster, segment);
    return n > 0 && (size_t)n < outsz ? 0 : -1;
}

int ws_repo_stream_key(const struct ws_repo *repo, const char *segment, uint32_t start,
                       uint32_t end, char *out, size_t outsz)
{
    size_t n;

    if (start >= end || ws_repo_stream_prefix(repo, segment, out, outsz) != 0)
        return -1;
    n = strlen(out);
    return snprintf(out + n, outsz - n, "%08" PRIX32 "-%08" PRIX32, start, end) == 17 &&
                   n + 17 < outsz
               ? 0
               : -1;
}

static int hex8(const char *s, uint32_t *v)
{
    uint8_t b[4];
    char text[9];

    memcpy(text, s, 8);
    text[8] = '\0';
    if (ws_unhex(text, b, 4) != 0)
        return -1;
    *v = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    return 0;
}

int ws_repo_stream_parse(const char *key, char segment[25], uint32_t *start, uint32_t *end)
{
    const char *name = strrchr(key, '/');

    name = name ? name + 1 : key;
    /* <24 hex>.<8 hex>-<8 hex> */
    if (strlen(name) != WS_WAL_NAME_LEN + 18 || name[WS_WAL_NAME_LEN] != '.' ||
        name[WS_WAL_NAME_LEN + 9] != '-')
        return -1;
    memcpy(segment, name, WS_WAL_NAME_LEN);
    segment[WS_WAL_NAME_LEN] = '\0';
    if (ws_wal_classify(segment) != WS_WAL_SEGMENT ||
        hex8(name + WS_WAL_NAME_LEN + 1, start) != 0 ||
        hex8(name + WS_WAL_NAME_LEN + 10, end) != 0 || *start >= *end)
        return -1;
    return 0;
}

void ws_repo_identity_key(const struct ws_repo *repo, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s/identity", repo->cluster);
}

int ws_identity_format(const struct ws_identity *id, char *out, size_t outsz)
{
    int n =
        snprintf(out, outsz,
                 "# walsafe cluster identity\n"
                 "format_version = %d\n"
                 "system_identifier = %" PRIu64 "\n"
                 "pg_version = %d\n"
                 "wal_segment_size = %" PRIu32 "\n",
                 id->format_version, id->system_identifier, id->pg_version, id->wal_segment_size);
    return n > 0 && (size_t)n < outsz ? n : -1;
}

int ws_identity_parse(const char *text, size_t len, struct ws_identity *id)
{
    char buf[1024], *line, *save = NULL;
    int seen = 0;

    if (len >= sizeof(buf))
        return -1;
    memcpy(buf, text, len);
    buf[len] = '\0';
    memset(id, 0, sizeof(*id));
    for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char key[40];
        unsigned long long v;
        if (line[0] == '#')
            continue;
        if (sscanf(line, "%39s = %llu", key, &v) != 2)
            return -1;
        if (strcmp(key, "format_version") == 0)
            id->format_version = (int)v, seen |= 1;
        else if (strcmp(key, "system_identifier") == 0)
            id->system_identifier = v, seen |= 2;
        else if (strcmp(key, "pg_version") == 0)
            id->pg_version = (int)v, seen |= 4;
        else if (strcmp(key, "wal_segment_size") == 0)
            id->wal_segment_size = (uint32_t)v, seen |= 8;
    }
    return seen == 15 ? 0 : -1;
}

int ws_repo_get_small(struct ws_repo *repo, const char *key, const struct ws_keyring *kr,
                      size_t cap, char **data, size_t *len, struct ws_error *err)
{
    struct ws_sink *buf = NULL, *reader = NULL;
    const uint8_t *p;
    int rc;

    *data = NULL;
    *len = 0;
    if ((rc = ws_buffer_sink_new(cap, &buf, err)) != 0)
        return rc;
    if ((rc = ws_object_reader_new(buf, key, kr, 1, &reader, err)) != 0)
        return rc; /* the reader freed buf */
    ws_object_reader_set_limit(reader, cap);
    if ((rc = ws_storage_get(repo->st, key, 0, WS_STORAGE_TO_END, reader, err)) != 0 ||
        (rc = ws_sink_finish(reader, err)) != 0)
        goto out;
    p = ws_buffer_sink_data(buf, len);
    if (!(*data = malloc(*len + 1))) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        *len = 0;
        goto out;
    }
    memcpy(*data, p, *len);
    (*data)[*len] = '\0';
out:
    ws_sink_free(reader); /* frees buf too */
    return rc;
}

int ws_repo_put_small(struct ws_repo *repo, const char *key, const void *data, size_t len,
                      const struct ws_object_params *params, struct ws_error *err)
{
    struct ws_object_params p = {0};
    struct ws_sink *put = NULL, *w = NULL;
    int rc;

    if (params)
        p = *params;
    else
        p.compress = WS_COMPRESS_NONE;
    p.name = key;
    p.content_size = (int64_t)len;
    if ((rc = ws_storage_open_put(repo->st, key, 0, &put, err)) != 0)
        return rc;
    rc = ws_object_writer_new(put, &p, &w, err);
    if (rc == 0)
        rc = ws_sink_write(w, data, len, err);
    if (rc == 0)
        rc = ws_sink_finish(w, err);
    ws_sink_free(w); /* aborts it unless finished; it owned put, even when it failed */
    return rc;
}

int ws_repo_identity_load(struct ws_repo *repo, struct ws_identity *id, struct ws_error *err)
{
    char key[128], *text = NULL;
    size_t len;
    int rc;

    if (repo->have_identity) {
        *id = repo->identity;
        return 0;
    }
    ws_repo_identity_key(repo, key, sizeof(key));
    if ((rc = ws_repo_get_small(repo, key, NULL, WS_IDENTITY_MAX, &text, &len, err)) != 0)
        return rc;
    if (ws_identity_parse(text, len, id) != 0)
        rc = ws_error_set(err, WS_ERR_CORRUPT,
                          "identity of cluster \"%s\" in repository \"%s\" "
                          "cannot be parsed",
                          repo->cluster, repo->st->location);
    else if (id->format_version != WS_REPO_FORMAT)
        rc = ws_error_set(err, WS_ERR_CONFIG,
                          "cluster \"%s\" in repository \"%s\" has repository format %d; this "
                          "walsafe supports format %d",
                          repo->cluster, repo->st->location, id->format_version, WS_REPO_FORMAT);
    else if (repo->keep_identity)
        repo->identity = *id, repo->have_identity = 1;
    free(text);
    return rc;
}

int ws_repo_identity_compare(const struct ws_repo *repo, const struct ws_identity *have,
                             const struct ws_identity *want, const char *what, struct ws_error *err)
{
    if (want->system_identifier && have->system_identifier != want->system_identifier)
        return ws_error_set(err, WS_ERR_FOREIGN,
                            "%s belongs to database system %" PRIu64 ", but cluster \"%s\" in "
                            "repository \"%s\" belongs to database system %" PRIu64,
                            what, want->system_identifier, repo->cluster, repo->st->location,
                            have->system_identifier);
    if (want->wal_segment_size && have->wal_segment_size != want->wal_segment_size)
        return ws_error_set(err, WS_ERR_FOREIGN,
                            "%s has WAL segment size %" PRIu32 ", but cluster \"%s\" in "
                            "repository \"%s\" has WAL segment size %" PRIu32,
                            what, want->wal_segment_size, repo->cluster, repo->st->location,
                            have->wal_segment_size);
    if (want->pg_version && have->pg_version != want->pg_version)
        return ws_error_set(err, WS_ERR_FOREIGN,
                            "%s is from PostgreSQL %d, but cluster \"%s\" in repository \"%s\" is "
                            "PostgreSQL %d",
                            what, want->pg_version, repo->cluster, repo->st->location,
                            have->pg_version);
    return 0;
}

int ws_repo_identity_ensure(struct ws_repo *repo, const struct ws_identity *want, const char *what,
                            struct ws_error *err)
{
    struct ws_identity have;
    char key[128], text[512];
    int rc, n;

    rc = ws_repo_identity_load(repo, &have, err);
    if (rc == 0)
        return ws_repo_identity_compare(repo, &have, want, what, err);
    if (rc != WS_ERR_NOT_FOUND)
        return rc;

    ws_repo_identity_key(repo, key, sizeof(key));
    have = *want;
    have.format_version = WS_REPO_FORMAT;
    if ((n = ws_identity_format(&have, text, sizeof(text))) < 0)
        return ws_error_set(err, WS_ERR_INTERNAL, "identity too long");
    rc = ws_repo_put_small(repo, key, text, (size_t)n, NULL, err);
    if (rc == 0 && repo->keep_identity)
        repo->identity = have, repo->have_identity = 1;
    if (rc == WS_ERR_EXISTS) {
        /* Another process recorded it first: check against what it wrote. */
        if ((rc = ws_repo_identity_load(repo, &have, err)) == 0)
            rc = ws_repo_identity_compare(repo, &have, want, what, err);
    }
    return rc;
}
