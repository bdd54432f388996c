/*
 * backup/list.c - `basebackup list [--json]`: the backups and the archived WAL of a cluster, from
 * the repository alone (the catalog). The WAL range is shown per timeline, with gaps. With
 * cluster "all": every cluster of the repository (ws_catalog_clusters), one after the other; in
 * JSON {"clusters": [...]} of the objects a one-cluster list prints, a cluster that could not be
 * read as {"cluster": NAME, "error": MESSAGE} (and the command fails after printing the others).
 * A backup's stored size (STORED, stored_bytes) is what its objects take in the repository,
 * manifest and block maps included, from the listing: the number wal-prune reports for it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backup/backup.h"
#include "backup/extra.h"
#include "base/log.h"
#include "base/util.h"
#include "pg/wal.h"

struct json_tl {
    FILE *f;
    uint32_t seg_size;
    uint64_t prev_last;
    int ngaps;
};

static void json_gap(void *arg, uint32_t tli, uint64_t first, uint64_t last, int is_first)
{
    struct json_tl *j = arg;
    char a[32], b[32];

    (void)last;
    if (is_first) {
        j->prev_last = last;
        return;
    }
    ws_wal_format_name(a, tli, j->prev_last + 1, j->seg_size);
    ws_wal_format_name(b, tli, first - 1, j->seg_size);
    fprintf(j->f, "%s{\"first\": \"%s\", \"last\": \"%s\"}", j->ngaps++ ? ", " : "", a, b);
    j->prev_last = last;
}

static void text_run(void *arg, uint32_t tli, uint64_t first, uint64_t last, int is_first)
{
    const uint32_t *seg_size = arg;
    char a[32], b[32];

    ws_wal_format_name(a, tli, first, *seg_size);
    ws_wal_format_name(b, tli, last, *seg_size);
    printf("%s%s - %s", is_first ? "" : ", ", a, b);
}

static void print_json(const struct ws_repo *repo, const struct ws_catalog *cat)
{
    size_t i, t;
    char a[32], b[32];

    printf("{\"cluster\": ");
    ws_json_string(stdout, repo->cluster);
    printf(", \"system_identifier\": \"%" PRIu64 "\", \"backups\": [",
           cat->identity.system_identifier);
    for (i = 0; i < cat->nbackups; i++) {
        const struct ws_catalog_backup *bk = &cat->backups[i];
        const struct ws_manifest *m = &bk->m;
        printf("%s\n  {\"id\": \"%s\", \"status\": \"%s\", \"pinned\": %s", i ? "," : "", bk->id,
               ws_backup_status_name(bk->status), bk->pinned ? "true" : "false");
        if (bk->has_manifest) {
            char l1[24], l2[24];
            ws_format_utc(m->start_time, a);
            ws_format_utc(m->stop_time, b);
            ws_wal_format_lsn(l1, m->start_lsn);
            ws_wal_format_lsn(l2, m->stop_lsn);
            printf(", \"type\": \"%s\", \"reference\": ", ws_backup_type_name(m->type));
            if (m->type == WS_BACKUP_FULL)
                printf("null");
            else
                printf("\"%s\"", m->reference);
            printf(", \"label\": ");
            ws_json_string(stdout, m->label ? m->label : "");
            printf(", \"start_time\": \"%s\", \"stop_time\": \"%s\", \"start_lsn\": \"%s\", "
                   "\"stop_lsn\": \"%s\", \"timeline\": %" PRIu32 ", \"bytes\": %" PRIu64
                   ", \"stored_bytes\": %" PRIu64 ", \"files\": %zu, \"pg_version\": %d",
                   a, b, l1, l2, m->timeline, m->bytes, bk->stored_objects, bk->nfiles,
                   m->pg_version);
            ws_wal_format_name(a, m->timeline, ws_manifest_start_segno(m), m->wal_segment_size);
            ws_wal_format_name(b, m->timeline, ws_manifest_stop_segno(m), m->wal_segment_size);
            printf(", \"wal_start\": \"%s\", \"wal_stop\": \"%s\", \"bad_pages\": %zu", a, b,
                   bk->nbadpages);
            printf(", \"extra\": ");
            ws_extra_json(stdout, m);
            if (bk->missing_wal[0])
                printf(", \"missing_wal\": \"%s\"", bk->missing_wal);
            if (bk->chain_error[0]) {
                printf(", \"error\": ");
                ws_json_string(stdout, bk->chain_error);
            }
        } else {
            printf(", \"stored_bytes\": %" PRIu64, bk->stored_objects);
            if (bk->bad_manifest) {
                printf(", \"error\": ");
                ws_json_string(stdout, bk->manifest_error);
            }
        }
        printf("}");
    }
    printf("%s], \"wal\": {", cat->nbackups ? "\n" : "");
    if (cat->nsegs) {
        const struct ws_wal_seg *f = &cat->segs[0], *l = &cat->segs[cat->nsegs - 1];
        uint32_t ss = cat->identity.wal_segment_size;
        ws_wal_format_name(a, f->tli, f->segno, ss);
        ws_wal_format_name(b, l->tli, l->segno, ss);
        printf("\"first\": \"%s\", \"last\": \"%s\", \"timelines\": [", a, b);
        for (i = 0, t = 0; i < cat->nsegs; t++) {
            uint32_t tli = cat->segs[i].tli;
            size_t k = i;
            struct json_tl j = {stdout, ss, 0, 0};
            while (k + 1 < cat->nsegs && cat->segs[k + 1].tli == tli)
                k++;
            ws_wal_format_name(a, tli, cat->segs[i].segno, ss);
            ws_wal_format_name(b, tli, cat->segs[k].segno, ss);
            printf("%s\n  {\"timeline\": %" PRIu32 ", \"first\": \"%s\", \"last\": \"%s\", "
                   "\"segments\": %zu, \"gaps\": [",
                   t ? "," : "", tli, a, b, k - i + 1);
            ws_catalog_wal_runs(cat, tli, json_gap, &j);
            printf("]}");
            i = k + 1;
        }
        printf("\n]");
    } else {
        printf("\"first\": null, \"last\": null, \"timelines\": []");
    }
    printf("}}\n");
}

/* The LABEL column of a backup without a readable manifest. */
static const char *no_manifest_note(const struct ws_catalog_backup *bk)
{
    if (bk->bad_manifest || bk->status == WS_BACKUP_UNREADABLE)
        return bk->manifest_error;
    if (bk->status == WS_BACKUP_DELETING)
        return "(wal-prune began deleting it; the next run finishes)";
    return "(no manifest: still running, or failed)";
}

static void print_text(const struct ws_repo *repo, const struct ws_catalog *cat)
{
    size_t i;
    char a[32], b[32], sz[16], st[16];

    printf("cluster \"%s\", database system %" PRIu64 ", repository %s\n\n", repo->cluster,
           cat->identity.system_identifier, repo->st->location);
    if (!cat->nbackups)
        printf("no backups\n");
    else
        printf("%-16s  %-10s  %-4s  %-16s  %-6s  %-20s  %-20s  %8s  %9s  %9s  %-49s  %s\n", "ID",
               "STATUS", "TYPE", "REFERENCE", "PINNED", "START (UTC)", "STOP (UTC)", "DURATION",
               "SIZE", "STORED", "WAL", "LABEL");
    for (i = 0; i < cat->nbackups; i++) {
        const struct ws_catalog_backup *bk = &cat->backups[i];
        const struct ws_manifest *m = &bk->m;
        char wal[64], dur[16];
        if (!bk->has_manifest) {
            ws_format_bytes(bk->stored_objects, st, sizeof(st));
            printf("%-16s  %-10s  %-4s  %-16s  %-6s  %-20s  %-20s  %8s  %9s  %9s  %-49s  %s\n",
                   bk->id, ws_backup_status_name(bk->status), "-", "-", bk->pinned ? "yes" : "",
                   "-", "-", "-", "-", st, "-", no_manifest_note(bk));
            continue;
        }
        ws_format_utc(m->start_time, a);
        ws_format_utc(m->stop_time, b);
        ws_format_bytes(m->bytes, sz, sizeof(sz));
        ws_format_bytes(bk->stored_objects, st, sizeof(st)); /* as wal-prune counts it */
        snprintf(dur, sizeof(dur), "%" PRId64 "s", m->stop_time - m->start_time);
        {
            char w1[32], w2[32];
            ws_wal_format_name(w1, m->timeline, ws_manifest_start_segno(m), m->wal_segment_size);
            ws_wal_format_name(w2, m->timeline, ws_manifest_stop_segno(m), m->wal_segment_size);
            snprintf(wal, sizeof(wal), "%s-%s", w1, w2 + 16);
        }
        printf("%-16s  %-10s  %-4s  %-16s  %-6s  %-20s  %-20s  %8s  %9s  %9s  %-49s  %s\n", bk->id,
               ws_backup_status_name(bk->status), ws_backup_type_name(m->type),
               m->type == WS_BACKUP_FULL ? "-" : m->reference, bk->pinned ? "yes" : "", a, b, dur,
               sz, st, wal, m->label ? m->label : "");
        if (bk->missing_wal[0])
            printf("%16s  WAL file %s is missing\n", "", bk->missing_wal);
        if (bk->chain_error[0])
            printf("%16s  %s\n", "", bk->chain_error);
        else if (bk->status == WS_BACKUP_DELETING)
            printf("%16s  wal-prune began deleting it; the next run finishes\n", "");
    }
    printf("\nWAL archive:");
    if (!cat->nsegs)
        printf(" empty\n");
    for (i = 0; i < cat->nsegs;) {
        uint32_t tli = cat->segs[i].tli, ss = cat->identity.wal_segment_size;
        printf("\n  timeline %" PRIu32 ": ", tli);
        ws_catalog_wal_runs(cat, tli, text_run, &ss);
        while (i < cat->nsegs && cat->segs[i].tli == tli)
            i++;
    }
    if (cat->nsegs)
        printf("\n");
}

/* A warning for each backup this user may not read (listed as "unreadable"). */
static void warn_unreadable(const struct ws_repo *repo, const struct ws_catalog *cat)
{
    char dir[256];

    for (size_t i = 0; i < cat->nbackups; i++) {
        if (cat->backups[i].status != WS_BACKUP_UNREADABLE)
            continue;
        ws_backup_prefix(repo, dir, sizeof(dir));
        ws_log_warning("backup %s is unreadable: this user may not read \"%s/%s%s\" "
                       "(permission denied); run as the owner of the repository",
                       cat->backups[i].id, repo->st->location, dir, cat->backups[i].id);
    }
}

/* One cluster: repo->cluster of the open repository. */
static int list_cluster(struct ws_repo *repo, const struct ws_keyring *kr, int json,
                        struct ws_error *err)
{
    struct ws_catalog cat = {0};
    int rc;

    if ((rc = ws_catalog_load(repo, kr, &cat, err)) != 0)
        return rc;
    warn_unreadable(repo, &cat);
    if (!cat.has_identity) {
        if (json) {
            printf("{\"cluster\": ");
            ws_json_string(stdout, repo->cluster);
            printf(", \"system_identifier\": null, \"backups\": [], \"wal\": {\"first\": null, "
                   "\"last\": null, \"timelines\": []}}\n");
        } else {
            printf("cluster \"%s\": nothing in repository %s yet\n", repo->cluster,
                   repo->st->location);
        }
    } else if (json) {
        print_json(repo, &cat);
    } else {
        print_text(repo, &cat);
    }
    ws_catalog_free(&cat);
    return 0;
}

/* Every cluster of the repository; a cluster that cannot be read is reported in its place. */
static int list_all(struct ws_repo *repo, const struct ws_keyring *kr, int json,
                    struct ws_error *err)
{
    char **names = NULL;
    size_t n = 0, i, failed = 0;
    int rc;

    if ((rc = ws_catalog_clusters(repo->st, &names, &n, err)) != 0)
        return rc;
    if (json)
        printf("{\"clusters\": [");
    else if (!n)
        printf("no clusters in repository %s\n", repo->st->location);
    for (i = 0; i < n; i++) {
        struct ws_error e = {0};
        snprintf(repo->cluster, sizeof(repo->cluster), "%s", names[i]);
        printf("%s", i == 0 ? (json ? "\n" : "") : (json ? ",\n" : "\n"));
        if (list_cluster(repo, kr, json, &e) == 0)
            continue;
        failed++;
        if (json) {
            printf("{\"cluster\": ");
            ws_json_string(stdout, names[i]);
            printf(", \"error\": ");
            ws_json_string(stdout, e.msg);
            printf("}\n");
        } else {
            printf("cluster \"%s\": %s\n", names[i], e.msg);
        }
    }
    if (json)
        printf("]}\n");
    ws_catalog_clusters_free(names, n);
    if (failed)
        return ws_error_set(err, WS_ERR_STORAGE,
                            "%zu of the %zu clusters in repository %s could "
                            "not be listed",
                            failed, n, repo->st->location);
    return 0;
}

int ws_backup_list(const struct ws_config *cfg, int json, struct ws_error *err)
{
    struct ws_repo repo = {0};
    struct ws_keyring kr = {0};
    int rc;

    if ((rc = ws_keyring_load(cfg, &kr, err)) != 0 || (rc = ws_repo_open(cfg, &repo, err)) != 0)
        goto out;
    if (strcmp(cfg->cluster, WS_LIST_ALL_CLUSTERS) == 0)
        rc = list_all(&repo, &kr, json, err);
    else
        rc = list_cluster(&repo, &kr, json, err);
    if (fflush(stdout) != 0 && rc == 0)
        rc = ws_error_set(err, WS_ERR_IO, "could not write to standard output");
out:
    ws_repo_close(&repo);
    ws_keyring_wipe(&kr);
    return rc;
}
