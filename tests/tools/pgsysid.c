/*
 * pgsysid - gives a freshly copied, never started PostgreSQL data directory a database system
 * identifier of its own, for the integration suite's initdb templates (tests/integration/lib.sh):
 *
 *   pgsysid DATADIR
 *
 * The identifier is made as initdb makes one (seconds, microseconds, 12 bits of the process id)
 * and written into global/pg_control (its CRC-32C, which follows the fields it covers, found and
 * recomputed with base/crc32c.h) and into the long page header of each WAL segment in pg_wal
 * that carries the old one (xlp_sysid at offset 24 when XLP_LONG_HEADER is set). Native byte
 * order, as PostgreSQL writes both. Prints the new identifier. Exit status: 0 done; 1 any error
 * (one line on stderr); 2 usage.
 */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "base/crc32c.h"

#define CONTROL_MAX 8192   /* PG_CONTROL_FILE_SIZE */
#define LONG_HEADER 0x0002 /* XLP_LONG_HEADER in xlp_info */

static int fail(const char *what, const char *path)
{
    fprintf(stderr, "pgsysid: %s \"%s\"\n", what, path);
    return 1;
}

/* The WAL segments' long headers that name old get id instead. */
static int rewrite_wal(const char *dir, uint64_t old, uint64_t id)
{
    char path[4096];
    struct dirent *de;
    DIR *d;
    int rc = 0;

    snprintf(path, sizeof(path), "%s/pg_wal", dir);
    if (!(d = opendir(path)))
        return fail("could not open", path);
    while (rc == 0 && (de = readdir(d))) {
        unsigned char h[32];
        uint16_t info;
        uint64_t sysid;
        int fd;
        if (strlen(de->d_name) != 24 || strspn(de->d_name, "0123456789ABCDEF") != 24)
            continue;
        snprintf(path, sizeof(path), "%s/pg_wal/%s", dir, de->d_name);
        if ((fd = open(path, O_RDWR | O_CLOEXEC)) < 0)
            rc = fail("could not open", path);
        else if (pread(fd, h, sizeof(h), 0) != (ssize_t)sizeof(h))
            rc = fail("could not read the page header of", path);
        else {
            memcpy(&info, h + 2, sizeof(info));
            memcpy(&sysid, h + 24, sizeof(sysid));
            if ((info & LONG_HEADER) && sysid == old &&
                pwrite(fd, &id, sizeof(id), 24) != (ssize_t)sizeof(id))
                rc = fail("could not write", path);
        }
        if (fd >= 0 && close(fd) != 0 && rc == 0)
            rc = fail("could not close", path);
    }
    closedir(d);
    return rc;
}

int main(int argc, char **argv)
{
    unsigned char b[CONTROL_MAX];
    char path[4096];
    struct timeval tv;
    uint64_t old, id;
    uint32_t crc;
    ssize_t n;
    size_t off = 0;
    int fd;

    if (argc != 2) {
        fprintf(stderr, "usage: pgsysid DATADIR\n");
        return 2;
    }
    snprintf(path, sizeof(path), "%s/global/pg_control", argv[1]);
    if ((fd = open(path, O_RDWR | O_CLOEXEC)) < 0)
        return fail("could not open", path);
    if ((n = pread(fd, b, sizeof(b), 0)) < 1024) {
        close(fd);
        return fail("could not read (or too short)", path);
    }
    for (size_t k = 16; k + 4 <= 1024 && !off; k += 4) {
        memcpy(&crc, b + k, sizeof(crc));
        if (ws_crc32c(0, b, k) == crc)
            off = k;
    }
    if (!off) {
        close(fd);
        return fail("no CRC found in", path);
    }
    memcpy(&old, b, sizeof(old));
    gettimeofday(&tv, NULL);
    id = ((uint64_t)tv.tv_sec << 32) | ((uint64_t)tv.tv_usec << 12) | ((uint64_t)getpid() & 0xFFF);
    memcpy(b, &id, sizeof(id));
    crc = ws_crc32c(0, b, off);
    memcpy(b + off, &crc, sizeof(crc));
    if (pwrite(fd, b, (size_t)n, 0) != n || close(fd) != 0)
        return fail("could not write", path);
    if (rewrite_wal(argv[1], old, id) != 0)
        return 1;
    printf("%" PRIu64 "\n", id);
    return 0;
}
