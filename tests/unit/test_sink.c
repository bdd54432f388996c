/*
 * The file sink (io/sink.h): publication by rename at finish only, and a preallocated file
 * (wal-fetch reserves a segment's blocks) that ends with exactly its content's length and without
 * the blocks the content did not use, whether the content is shorter than reserved or empty;
 * abort leaves nothing.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"
#include "io/sink.h"
#include "unit.h"

enum { RESERVE = 4 << 20 };

/* Writes len bytes of 'x' through a file sink reserving RESERVE bytes; finish or abort. */
static int write_through(const char *path, size_t len, int finish, struct stat *tmp_st)
{
    struct ws_file_opts o = {.mode = 0600,
                             .err_code = WS_ERR_IO,
                             .create_on_write = 1,
                             .tmp_path = NULL,
                             .preallocate = RESERVE};
    struct ws_error err = {0};
    struct ws_sink *s = NULL;
    char *buf = malloc(len ? len : 1), tmp[600];
    int rc;

    if (!buf)
        return -1;
    memset(buf, 'x', len ? len : 1);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    o.tmp_path = tmp;
    if ((rc = ws_file_sink_open(path, &o, &s, &err)) == 0 && len)
        rc = ws_sink_write(s, buf, len, &err);
    if (rc == 0 && tmp_st && stat(tmp, tmp_st) != 0)
        rc = -1;
    if (rc == 0 && finish)
        rc = ws_sink_finish(s, &err);
    ws_sink_free(s);
    free(buf);
    return rc;
}

static void test_preallocate(void)
{
    static const size_t lens[] = {5000, 0, RESERVE, RESERVE + 4097};
    char dir[512], path[600];
    struct stat st, tmp_st;

    snprintf(dir, sizeof(dir), "%s/prealloc", unit_tmpdir());
    REQUIRE(mkdir(dir, 0700) == 0);
    snprintf(path, sizeof(path), "%s/seg", dir);
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        memset(&tmp_st, 0, sizeof(tmp_st));
        REQUIRE(write_through(path, lens[i], 1, lens[i] ? &tmp_st : NULL) == 0);
        REQUIRE(stat(path, &st) == 0);
        CHECK((size_t)st.st_size == lens[i]);
        /* what was reserved beyond the content is released (ext4, xfs, tmpfs: all reserve) */
        CHECK((uint64_t)st.st_blocks * 512 < lens[i] + (1 << 20));
        if (lens[i] == 5000 && (uint64_t)tmp_st.st_blocks * 512 < RESERVE)
            fprintf(stderr, "    note: the file system did not reserve blocks\n");
        CHECK(unit_entries(dir) == 1); /* published, no temp file left */
        REQUIRE(unlink(path) == 0);
    }
    /* abort: neither the file nor the temp file */
    CHECK(write_through(path, 5000, 0, NULL) == 0);
    CHECK(unit_entries(dir) == 0);
}

const struct unit_test unit_tests[] = {
    {"preallocate", test_preallocate},
    {NULL, NULL},
};
