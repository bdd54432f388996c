/*
 * archive.h - the WAL archive: what wal-push and wal-fetch do, as library calls.
 *
 * ws_archive_push() stores one WAL file durably; it returns 0 only when the object is complete
 * and durable in the repository (or an identical copy already was, then *duplicate = 1). It reads
 * the file once: the content is hashed while it is compressed and encrypted.
 *
 * ws_archive_fetch() restores one WAL file into dest_path: the object is authenticated,
 * decrypted and decompressed into a temp file beside dest_path, which is renamed into place only
 * after the whole object verified. WS_ERR_NOT_FOUND means the repository was reached, holds this
 * cluster, and does not hold the file; every other error leaves dest_path untouched.
 */
#ifndef WS_ARCHIVE_H
#define WS_ARCHIVE_H

#include "config.h"
#include "error.h"

struct ws_push_result {
    int duplicate;
    uint64_t bytes;
    uint64_t stored_bytes;
};

int ws_archive_push(const struct ws_config *cfg, const char *wal_path, struct ws_push_result *res,
                    struct ws_error *err);
int ws_archive_fetch(const struct ws_config *cfg, const char *wal_name, const char *dest_path,
                     struct ws_error *err);

#endif
