/*
 * replcat - takes a base backup over a replication connection (pg/repl.h, io/tar.h) and prints
 * what arrives, for the integration tests; nothing is stored.
 *
 *   replcat [--fast] [--no-verify] [--max-rate BYTES] [--label LABEL] [--manifest FILE] CONNINFO
 *
 * stdout, one line each:
 *   system SYSID TLI XLOGPOS VERSION SEGSIZE BLOCKSIZE CHECKSUMS
 *   start LSN TLI MAINSIZE                   (the main directory's estimate, -1 without one)
 *   tablespace OID LOCATION SIZE
 *   archive NAME LOCATION                    ("-" for an empty location)
 *   file PATH SIZE SHA256 CRC32C | dir PATH | link PATH TARGET
 *                                            (CRC32C as a backup_manifest shows it, crc32c.h)
 *   manifest BYTES                           (its text written to FILE with --manifest)
 *   end LSN TLI CHECKSUM_FAILURE PROGRESS    (PROGRESS: the last PROGRESS value, or -1)
 * Exit status: 0 done; 1 an error (one line on stderr: "replcat: CODE: message"); 2 usage.
 */
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/crc32c.h"
#include "base/util.h"
#include "io/tar.h"
#include "pg/repl.h"
#include "pg/wal.h"

struct stream {
    struct ws_repl *r;
    struct ws_repl_msg msg; /* the message that ended the archive (ARCHIVE, MANIFEST, END) */
    int pending;
    int64_t progress;
};

/* The next message that is not PROGRESS. */
static int next(struct stream *s, struct ws_error *err)
{
    int rc;

    if (s->pending) {
        s->pending = 0;
        return 0;
    }
    while ((rc = ws_repl_next(s->r, &s->msg, err)) == 0 && s->msg.type == WS_REPL_PROGRESS)
        s->progress = (int64_t)s->msg.progress;
    return rc;
}

/* The tar reader's source: DATA messages until another kind arrives (kept for the caller). */
static int fill(void *arg, const uint8_t **data, size_t *len, struct ws_error *err)
{
    struct stream *s = arg;
    int rc;

    *len = 0;
    if (s->pending)
        return 0;
    if ((rc = next(s, err)) != 0)
        return rc;
    if (s->msg.type != WS_REPL_DATA) {
        s->pending = 1;
        return 0;
    }
    *data = s->msg.data;
    *len = s->msg.len;
    return 0;
}

static int print_file(struct ws_tar *t, const struct ws_tar_member *m, struct ws_error *err)
{
    static uint8_t buf[1 << 16];
    uint8_t md[32];
    uint32_t crc = 0;
    char hex[65], crchex[9];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t got;
    int rc;

    if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(ctx);
        return ws_error_set(err, WS_ERR_INTERNAL, "SHA-256 failed");
    }
    while ((rc = ws_tar_read(t, buf, sizeof(buf), &got, err)) == 0 && got > 0) {
        EVP_DigestUpdate(ctx, buf, got);
        crc = ws_crc32c(crc, buf, got);
    }
    EVP_DigestFinal_ex(ctx, md, NULL);
    EVP_MD_CTX_free(ctx);
    ws_hex(md, sizeof(md), hex);
    ws_crc32c_manifest_hex(crc, crchex);
    if (rc == 0)
        printf("file %s %" PRIu64 " %s %s\n", m->path, m->size, hex, crchex);
    return rc;
}

static int print_archive(struct stream *s, struct ws_error *err)
{
    struct ws_tar *t = NULL;
    struct ws_tar_member m;
    const uint8_t *rest;
    size_t len;
    int rc, end = 0;

    printf("archive %s %s\n", s->msg.archive_name,
           *s->msg.tablespace_location ? s->msg.tablespace_location : "-");
    if ((rc = ws_tar_open(&t, fill, s, err)) != 0)
        return rc;
    while ((rc = ws_tar_next(t, &m, &end, err)) == 0 && !end) {
        if (m.type == WS_TAR_FILE)
            rc = print_file(t, &m, err);
        else if (m.type == WS_TAR_DIR)
            printf("dir %s\n", m.path);
        else
            printf("link %s %s\n", m.path, m.linkname);
        if (rc)
            break;
    }
    ws_tar_free(t);
    if (rc == 0 && (rc = fill(s, &rest, &len, err)) == 0 && len > 0)
        rc = ws_error_set(err, WS_ERR_CORRUPT, "data after the end of archive %s",
                          s->msg.archive_name);
    return rc;
}

static int save_manifest(struct stream *s, const char *path, struct ws_error *err)
{
    FILE *f = path ? fopen(path, "w") : NULL;
    uint64_t bytes = 0;
    int rc;

    if (path && !f)
        return ws_error_set(err, WS_ERR_IO, "could not open \"%s\"", path);
    while ((rc = next(s, err)) == 0 && s->msg.type == WS_REPL_DATA) {
        bytes += s->msg.len;
        if (f && fwrite(s->msg.data, 1, s->msg.len, f) != s->msg.len)
            rc = ws_error_set(err, WS_ERR_IO, "could not write \"%s\"", path);
        if (rc)
            break;
    }
    if (f && fclose(f) != 0 && rc == 0)
        rc = ws_error_set(err, WS_ERR_IO, "could not write \"%s\"", path);
    if (rc == 0) {
        printf("manifest %" PRIu64 "\n", bytes);
        s->pending = 1;
    }
    return rc;
}

static int backup(struct ws_repl *r, const struct ws_repl_bb_opts *o, const char *manifest,
                  struct ws_error *err)
{
    struct ws_repl_bb_start start = {0};
    struct stream s = {r, {0}, 0, -1};
    char lsn[24];
    int rc;

    if ((rc = ws_repl_base_backup(r, o, &start, err)) != 0)
        return rc;
    ws_wal_format_lsn(lsn, start.start_lsn);
    printf("start %s %u %" PRId64 "\n", lsn, start.timeline, start.main_size);
    for (size_t i = 0; i < start.ntablespaces; i++)
        printf("tablespace %u %s %" PRId64 "\n", start.tablespaces[i].oid,
               start.tablespaces[i].location, start.tablespaces[i].size);
    ws_repl_bb_start_free(&start);
    while ((rc = next(&s, err)) == 0 && s.msg.type != WS_REPL_END) {
        if (s.msg.type == WS_REPL_ARCHIVE)
            rc = print_archive(&s, err);
        else if (s.msg.type == WS_REPL_MANIFEST)
            rc = save_manifest(&s, manifest, err);
        else
            rc = ws_error_set(err, WS_ERR_CORRUPT, "unexpected message %d", (int)s.msg.type);
        if (rc)
            return rc;
    }
    if (rc == 0) {
        ws_wal_format_lsn(lsn, s.msg.end_lsn);
        printf("end %s %u %d %" PRId64 "\n", lsn, s.msg.end_timeline, s.msg.checksum_failure,
               s.progress);
    }
    return rc;
}

int main(int argc, char **argv)
{
    struct ws_repl_bb_opts o = {.label = "replcat", .verify_checksums = 1, .progress = 1};
    const char *manifest = NULL;
    struct ws_repl_system sys;
    struct ws_repl *r = NULL;
    struct ws_error err = {0};
    char lsn[24];
    int i, rc;

    for (i = 1; i < argc - 1; i++) {
        if (strcmp(argv[i], "--fast") == 0)
            o.fast = 1;
        else if (strcmp(argv[i], "--no-verify") == 0)
            o.verify_checksums = 0;
        else if (strcmp(argv[i], "--label") == 0 && i + 2 < argc)
            o.label = argv[++i];
        else if (strcmp(argv[i], "--max-rate") == 0 && i + 2 < argc)
            o.max_rate = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--manifest") == 0 && i + 2 < argc)
            manifest = argv[++i];
        else
            break;
    }
    if (i != argc - 1) {
        fprintf(stderr, "usage: replcat [--fast] [--no-verify] [--max-rate BYTES] [--label LABEL] "
                        "[--manifest FILE] CONNINFO\n");
        return 2;
    }
    if ((rc = ws_repl_connect(&ws_repl_libpq, argv[i], &r, &err)) == 0 &&
        (rc = ws_repl_identify(r, &sys, &err)) == 0) {
        ws_wal_format_lsn(lsn, sys.xlogpos);
        printf("system %" PRIu64 " %u %s %d %u %u %d\n", sys.system_identifier, sys.timeline,
               lsn, sys.version, sys.wal_segment_size, sys.block_size, sys.data_checksums);
        rc = backup(r, &o, manifest, &err);
    }
    ws_repl_close(r);
    if (fflush(stdout) != 0 && rc == 0)
        rc = ws_error_set(&err, WS_ERR_IO, "could not write to stdout");
    if (rc)
        fprintf(stderr, "replcat: %s: %s\n", ws_code_name(rc), err.msg);
    return rc ? 1 : 0;
}
