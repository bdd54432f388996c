/*
 * catalog.h - what the repository holds for a cluster (backups, WAL per timeline), read from
 * listings alone, every time: the repository is the catalog.
 *
 * A backup is complete when its manifest exists AND every WAL segment from its start to its
 * stop segment is in the repository; lost WAL makes a backup incomplete instead of silently
 * unrestorable. Ownership: a ws_catalog owns its arrays and manifests; ws_catalog_free().
 */
#ifndef WS_REPO_CATALOG_H
#define WS_REPO_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "io/key.h"
#include "repo/manifest.h"
#include "repo/repo.h"

/*
 * The catalog: what the repository holds for a cluster, read from listings alone.
 * Backups are sorted by id; `status` is one of "complete", "incomplete" (manifest present,
 * WAL missing; `missing_wal` names the first missing segment), "invalid" (the manifest does not
 * verify: damaged, or written with a key we do not have), "running" (no manifest: a backup
 * still being written or one that died; wal-prune removes old ones) or "deleting" (wal-prune
 * began deleting it: never complete, whatever is left). `pinned` is independent of status.
 */
struct ws_catalog_backup {
    char id[WS_BACKUP_ID_LEN + 1];
    int has_manifest; /* present and valid */
    int bad_manifest; /* present but unreadable: manifest_error says why */
    char manifest_error[300];
    int complete;
    struct ws_manifest m;    /* loaded when has_manifest */
    char missing_wal[32];    /* first missing segment of an incomplete backup */
    uint64_t stored_objects; /* bytes of its objects in storage (from the listing) */
    int64_t newest_mtime;    /* of its objects */
    int pinned;   /* <ID>/keep exists: `basebackup keep ID`; wal-prune never deletes it */
    int deleting; /* <ID>.deleting exists: wal-prune began deleting it; never complete */
};

struct ws_wal_seg {
    uint32_t tli;
    uint64_t segno;
};

struct ws_catalog {
    struct ws_identity identity;
    int has_identity;
    struct ws_catalog_backup *backups;
    size_t nbackups;
    struct ws_wal_seg *segs; /* sorted by (tli, segno) */
    size_t nsegs;
    uint32_t *histories; /* timelines with a .history file, sorted */
    size_t nhistories;
};

/* Lists and loads everything (manifests need the keyring when encrypted). */
int ws_catalog_load(struct ws_repo *repo, const struct ws_keyring *kr, struct ws_catalog *cat,
                    struct ws_error *err);
void ws_catalog_free(struct ws_catalog *cat);
int ws_catalog_has_seg(const struct ws_catalog *cat, uint32_t tli, uint64_t segno);
/* The newest complete backup, or NULL. */
const struct ws_catalog_backup *ws_catalog_latest(const struct ws_catalog *cat);

#endif
