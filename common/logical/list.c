/*
 * list.c - `logicalbackup list [--json]` and `logicalbackup keep ID [--unset]`.
 *
 * list --json prints {"cluster": ..., "logical_backups": [...]}, each backup with id, status,
 * label, start_time, stop_time (ISO 8601 UTC), duration_s, pg_version, pg_dump_version, bytes
 * (dumped), stored_bytes, pinned, globals, databases ([{"name", "format", "bytes",
 * "stored_bytes", "objects"}]) and, when not complete, why.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/util.h"
#include "logical/logical_int.h"
#include "repo/logical.h"

static void print_json_entry(const struct ws_logical_entry *e)
{
    char start[21], stop[21];
    size_t i, n = 0;

    printf("{\"id\": \"%s\", \"status\": \"%s\", \"pinned\": %s", e->id,
           ws_logical_status_name(e->status), e->pinned ? "true" : "false");
    if (e->why[0]) {
        printf(", \"why\": ");
        ws_json_string(stdout, e->why);
    }
    if (!e->has_manifest) {
        printf(", \"stored_bytes\": %" PRIu64 "}", e->stored_total);
        return;
    }
    ws_format_utc(e->m.start_time, start);
    ws_format_utc(e->m.stop_time, stop);
    printf(", \"label\": ");
    ws_json_string(stdout, e->m.label);
    printf(", \"start_time\": \"%s\", \"stop_time\": \"%s\", \"duration_s\": %.3f, "
           "\"pg_version\": %d, \"pg_dump_version\": %d, \"bytes\": %" PRIu64
           ", \"stored_bytes\": %" PRIu64 ", \"globals\": %s, \"databases\": [",
           start, stop, (double)e->m.duration_ms / 1000.0, e->m.pg_version, e->m.pg_dump_version,
           e->m.bytes, e->m.stored_bytes, e->m.globals ? "true" : "false");
    for (i = 0; i < e->m.ndumps; i++) {
        const struct ws_logical_dump *d = &e->m.dumps[i];
        if (d->kind == WS_LOGICAL_GLOBALS_SQL)
            continue;
        printf("%s{\"name\": ", n++ ? ", " : "");
        ws_json_string(stdout, d->db);
        printf(", \"format\": \"%s\", \"bytes\": %" PRIu64 ", \"stored_bytes\": %" PRIu64
               ", \"objects\": %zu}",
               ws_logical_kind_name(d->kind), d->bytes, d->stored_bytes, d->nobjects);
    }
    printf("]}");
}

static void print_text_entry(const struct ws_logical_entry *e)
{
    char bytes[32] = "-", stored[32], dur[32] = "-";
    size_t i, n = 0;

    ws_format_bytes(e->has_manifest ? e->m.stored_bytes : e->stored_total, stored, sizeof(stored));
    if (e->has_manifest) {
        ws_format_bytes(e->m.bytes, bytes, sizeof(bytes));
        snprintf(dur, sizeof(dur), "%.1fs", (double)e->m.duration_ms / 1000.0);
    }
    printf("%-16s  %-10s  %-6s  %10s  %10s  %8s  ", e->id, ws_logical_status_name(e->status),
           e->pinned ? "pinned" : "-", bytes, stored, dur);
    for (i = 0; i < e->m.ndumps; i++) {
        const struct ws_logical_dump *d = &e->m.dumps[i];
        printf("%s%s", n++ ? "," : "", d->kind == WS_LOGICAL_GLOBALS_SQL ? "(globals)" : d->db);
    }
    if (e->has_manifest && e->m.label && e->m.label[0])
        printf("  label: %s", e->m.label);
    if (e->why[0])
        printf("  (%s)", e->why);
    printf("\n");
}

int ws_logical_list(const struct ws_config *cfg, const struct ws_logical_opts *o,
                    struct ws_error *err)
{
    struct ws_repo repo = {0};
    struct ws_keyring kr = {0};
    struct ws_logical_catalog cat = {0};
    size_t i;
    int rc;

    if ((rc = ws_keyring_load(cfg, &kr, err)) != 0 || (rc = ws_repo_open(cfg, &repo, err)) != 0 ||
        (rc = ws_logical_catalog_load(&repo, &kr, &cat, err)) != 0)
        goto out;
    if (o->json) {
        printf("{\"cluster\": ");
        ws_json_string(stdout, repo.cluster);
        printf(", \"logical_backups\": [");
        for (i = 0; i < cat.n; i++) {
            printf("%s", i ? ", " : "");
            print_json_entry(&cat.backups[i]);
        }
        printf("]}\n");
    } else {
        if (cat.n)
            printf("%-16s  %-10s  %-6s  %10s  %10s  %8s  %s\n", "id", "status", "pinned", "dumped",
                   "stored", "duration", "databases");
        for (i = 0; i < cat.n; i++)
            print_text_entry(&cat.backups[i]);
    }
    if (fflush(stdout) != 0)
        rc = ws_error_set(err, WS_ERR_IO, "could not write to standard output");
out:
    ws_logical_catalog_free(&cat);
    ws_repo_close(&repo);
    ws_keyring_wipe(&kr);
    return rc;
}

int ws_logical_keep(const struct ws_config *cfg, const struct ws_logical_opts *o,
                    struct ws_error *err)
{
    struct ws_repo repo = {0};
    struct ws_keyring kr = {0};
    struct ws_logical_catalog cat = {0};
    const struct ws_logical_entry *e = NULL;
    char key[256], text[128], when[21];
    int rc;

    if ((rc = ws_keyring_load(cfg, &kr, err)) != 0 || (rc = ws_repo_open(cfg, &repo, err)) != 0 ||
        (rc = ws_logical_catalog_load(&repo, &kr, &cat, err)) != 0)
        goto out;
    ws_logical_key(&repo, o->id, WS_LOGICAL_KEEP, key, sizeof(key));
    if (o->unset) {
        if (!(e = ws_logical_catalog_find(&cat, o->id)) || !e->pinned) {
            printf("logical backup %s was not pinned\n", o->id);
            goto out;
        }
        if ((rc = ws_storage_remove(repo.st, key, err)) == WS_ERR_NOT_FOUND)
            rc = 0;
        if (rc == 0)
            printf("logical backup %s is no longer pinned: retention applies to it\n", o->id);
        goto out;
    }
    if ((rc = ws_logical_complete(&repo, &cat, o->id, &e, err)) != 0) {
        ws_error_prefix(err, "cannot pin");
        goto out;
    }
    if (e->pinned) {
        printf("logical backup %s is already pinned\n", o->id);
        goto out;
    }
    ws_format_utc(time(NULL), when);
    snprintf(text, sizeof(text), "pinned by logicalbackup keep at %s\n", when);
    if ((rc = ws_backup_put_marker(&repo, key, text, err)) == 0)
        printf("logical backup %s is pinned: retention keeps it until \"logicalbackup keep %s "
               "--unset\"\n",
               o->id, o->id);
out:
    if (rc == 0 && fflush(stdout) != 0)
        rc = ws_error_set(err, WS_ERR_IO, "could not write to standard output");
    ws_logical_catalog_free(&cat);
    ws_repo_close(&repo);
    ws_keyring_wipe(&kr);
    return rc;
}
