/*
 * bundle.h - reading a backup bundle back into the files it holds.
 *
 * A bundle's content is whole files back to back (backup.h). The splitter is a sink that takes
 * that content (from an object reader, so it is already authenticated chunk by chunk when
 * encrypted) and cuts it at the offsets the manifest gives. For every file it recomputes the
 * SHA-256 and compares size and digest with the manifest; in restore mode it also writes the
 * file under `root` (created exclusively, with the recorded mode and mtime).
 *
 * Problems are reported through `problem` (one call per file, message names the file) and
 * counted; in restore mode the first problem also fails the sink (WS_ERR_CORRUPT). In verify
 * mode the splitter continues so that one run lists everything that is wrong.
 *
 * Ownership: the splitter does not own `files` (pointers into a manifest, sorted by offset).
 */
#ifndef WS_BUNDLE_H
#define WS_BUNDLE_H

#include <sys/types.h>

#include "backup.h"
#include "sink.h"

typedef void (*ws_bundle_problem_fn)(void *arg, const struct ws_bfile *f, const char *msg);

struct ws_bundle_opts {
    const char *root;  /* NULL: verify only, write nothing */
    uid_t uid;         /* chown restored files when chown_files */
    gid_t gid;
    int chown_files;
    ws_bundle_problem_fn problem;
    void *arg;
};

int ws_bundle_splitter_new(const struct ws_bfile *const *files, size_t nfiles,
                           const struct ws_bundle_opts *o, struct ws_sink **out,
                           struct ws_error *err);
/* Files whose size and SHA-256 matched (valid after finish or failure). */
size_t ws_bundle_splitter_good(const struct ws_sink *s);
size_t ws_bundle_splitter_bad(const struct ws_sink *s);

#endif
