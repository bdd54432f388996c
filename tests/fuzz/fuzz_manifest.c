/*
 * fuzz_manifest: the repository's text formats read back from storage: a backup manifest
 * (backup.h) and a cluster identity (repo.h), plus the UTC time stamps and backup ids they hold.
 *
 * Properties: no crash, leak or undefined behaviour; a manifest that parses formats to a text
 * that parses again and formats to the very same text (parse -> format -> parse -> format is
 * stable), with the same records; likewise an identity; a time stamp that parses formats back to
 * itself.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "repo/manifest.h"
#include "repo/repo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

static void same_manifest(const struct ws_manifest *a, const struct ws_manifest *b)
{
    check(strcmp(a->id, b->id) == 0 && a->start_time == b->start_time &&
          a->stop_time == b->stop_time && a->start_lsn == b->start_lsn &&
          a->stop_lsn == b->stop_lsn && a->timeline == b->timeline &&
          a->system_identifier == b->system_identifier &&
          a->wal_segment_size == b->wal_segment_size && a->bytes == b->bytes);
    check(a->nfiles == b->nfiles && a->ndirs == b->ndirs && a->ntblspc == b->ntblspc &&
          a->nbadpages == b->nbadpages);
    for (size_t i = 0; i < a->nfiles; i++) {
        check(strcmp(a->files[i].path, b->files[i].path) == 0);
        check(a->files[i].size == b->files[i].size && a->files[i].npieces == b->files[i].npieces);
        check(memcmp(a->files[i].sha256, b->files[i].sha256, 32) == 0);
    }
    for (size_t i = 0; i < a->ntblspc; i++)
        check(strcmp(a->tblspc[i].location, b->tblspc[i].location) == 0);
    check(a->nextra == b->nextra);
    for (size_t i = 0; i < a->nextra; i++) {
        check(strcmp(a->extra[i].path, b->extra[i].path) == 0 &&
              a->extra[i].dir == b->extra[i].dir);
        check(a->extra[i].offset == b->extra[i].offset && a->extra[i].size == b->extra[i].size);
        check(memcmp(a->extra[i].sha256, b->extra[i].sha256, 32) == 0);
    }
}

static void fuzz_manifest(const char *text, size_t len)
{
    struct ws_manifest m1, m2;
    struct ws_error err = {0};
    char *t1 = NULL, *t2 = NULL;
    size_t n1, n2;

    memset(&m1, 0, sizeof(m1));
    memset(&m2, 0, sizeof(m2));
    if (ws_manifest_parse(text, len, "fuzz", &m1, &err) != 0) {
        check(err.code == WS_ERR_CORRUPT || err.code == WS_ERR_INTERNAL);
        ws_manifest_free(&m1);
        return;
    }
    check(ws_manifest_format(&m1, &t1, &n1, &err) == 0);
    check(ws_manifest_parse(t1, n1, "fuzz (formatted)", &m2, &err) == 0);
    same_manifest(&m1, &m2);
    check(ws_manifest_format(&m2, &t2, &n2, &err) == 0);
    check(n1 == n2 && memcmp(t1, t2, n1) == 0);
    (void)ws_manifest_start_segno(&m1);
    (void)ws_manifest_stop_segno(&m1);
    free(t1);
    free(t2);
    ws_manifest_free(&m1);
    ws_manifest_free(&m2);
}

static void fuzz_identity(const char *text, size_t len)
{
    struct ws_identity a, b;
    char out[512];
    int n;

    if (ws_identity_parse(text, len, &a) != 0)
        return;
    n = ws_identity_format(&a, out, sizeof(out));
    check(n > 0);
    check(ws_identity_parse(out, (size_t)n, &b) == 0);
    check(a.format_version == b.format_version && a.system_identifier == b.system_identifier &&
          a.pg_version == b.pg_version && a.wal_segment_size == b.wal_segment_size);
}

static void fuzz_times(const char *text)
{
    int64_t t;
    char out[21];

    if (ws_parse_utc(text, &t) == 0) {
        ws_format_utc(t, out);
        check(strcmp(out, text) == 0);
    }
    (void)ws_backup_id_valid(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);

    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    fuzz_manifest(text, size);
    fuzz_identity(text, size);
    fuzz_times(text);
    free(text);
    return 0;
}
