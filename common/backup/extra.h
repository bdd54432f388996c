/*
 * backup/extra.h - backup_extra_paths: configuration and key files outside the data directory,
 * stored with a base backup and restored only on request (`basebackup restore --extra-to DIR`).
 *
 * The config key is a comma-separated list of absolute paths, each a regular file or a directory
 * (taken with everything below it: regular files and directories; a symbolic link, socket or
 * device below one is skipped with a warning naming it). Their records are the manifest's extra
 * section (repo/manifest.h: path, mode, owner, mtime, size, SHA-256) and the files' contents lie
 * back to back in the backup's object "extra" (compressed and encrypted like its bundles).
 *
 * Refused, with WS_ERR_CONFIG and a line naming the path (nothing is stored):
 *   - a path that is not absolute and normalised, that does not exist, or that is neither a
 *     regular file nor a directory (a symbolic link included: list what it points to);
 *   - a path inside the data directory, or one that holds it (its files are the backup proper);
 *   - a path that is or holds encrypt_key_file or one of decrypt_key_files (by name, and by
 *     device and inode while reading, so a hard link or another name of the key is caught too):
 *     a key stored only inside the backups it encrypts is lost with them.
 *
 * Restore (ws_backup_restore_extra): into DIR, empty or missing, each path below DIR with its
 * original absolute path ("/etc/walsafe.conf" -> DIR/etc/walsafe.conf), through directory
 * descriptors that never follow a link (base/fs.h); every file checked against its size and
 * SHA-256; modes and mtimes as recorded, owners too when run as root. DIR must not be or lie in
 * the data directory (--pgdata, else pgdata). With --pgdata as well, the same backup's data
 * directory is restored after the extra paths (ws_backup_restore).
 */
#ifndef WS_BACKUP_EXTRA_H
#define WS_BACKUP_EXTRA_H

#include <stdio.h>

#include "base/config.h"
#include "base/error.h"
#include "io/key.h"
#include "io/sink.h"
#include "repo/bundle.h"
#include "repo/manifest.h"
#include "repo/repo.h"

/* The checks above that need no reading: every path exists and is allowed. pgdata (absolute,
 * resolved) may be NULL when no data directory is known here (backup_method stream). */
int ws_extra_check(const struct ws_config *cfg, const char *pgdata, struct ws_error *err);

/* Walks every path of cfg->backup_extra_paths (ws_extra_check first), writes each file's content
 * into dest (the writer of the object "extra") and appends its record to m (m->extra). */
int ws_extra_store(const struct ws_config *cfg, const char *pgdata, struct ws_sink *dest,
                   struct ws_manifest *m, struct ws_error *err);

/* The object "extra" of m's backup through the bundle splitter (repo/bundle.h) with bo: each file
 * checked against its size and SHA-256, and written below bo->tree at its path without the
 * leading '/' when bo->tree is set (restore); with bo->tree NULL (verify) every bad file is
 * reported to bo->problem and the object read to its end. Errors name the backup and the object. */
int ws_extra_split(struct ws_repo *repo, const struct ws_keyring *kr, const struct ws_manifest *m,
                   const struct ws_bundle_opts *bo, struct ws_error *err);

/* The extra records of m as a JSON array (list --json): path, type ("file" or "dir"), mode (octal
 * string), uid, gid, mtime (UTC); files also size and sha256. */
void ws_extra_json(FILE *f, const struct ws_manifest *m);

#endif
