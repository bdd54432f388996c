/*
 * sessionpush - the archive module's path without PostgreSQL, for benchmarks and for tracing it
 * (strace, ltrace): zero-filled WAL segments pushed one at a time through one archiving session
 * (archive/session.h: configuration, keys and repository kept, as the walsafe_archive module
 * keeps them), each push timed.
 *
 *   sessionpush CONFIG_FILE DIR COUNT [FIRST_SEGNO [GAP_MS]]
 *
 * Writes segment FIRST_SEGNO (default 1) + i of timeline 1 into DIR for i < COUNT: 16 MiB of
 * zeros behind a valid PostgreSQL 15 long page header of one fixed system identifier (so the
 * repository must be new or hold that cluster), waits GAP_MS (default 0: a trickle's files come
 * apart, and an idle session may answer slower), pushes it, removes it. Prints "push NAME MS" per
 * file, then "median MS over COUNT" (the first push, which opens the repository and records the
 * identity, is printed but left out of the median when COUNT > 1). Exit status: 0 all pushed;
 * 1 any error (one line on stderr); 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "archive/session.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/util.h"
#include "pg/wal.h"

#define SEG_SIZE (16u << 20)
#define SYSID 7400000000000000001ull

/* Segment segno's file in dir, its path in out. */
static int write_segment(const char *dir, uint64_t segno, char *out, size_t outsz)
{
    uint8_t *buf = calloc(1, SEG_SIZE);
    struct ws_wal_long_header h = {.magic = 0xD110, /* PostgreSQL 15 */
                                   .info = WS_XLP_LONG_HEADER,
                                   .tli = 1,
                                   .pageaddr = segno * SEG_SIZE,
                                   .sysid = SYSID,
                                   .seg_size = SEG_SIZE,
                                   .blcksz = 8192};
    char name[WS_WAL_NAME_LEN + 1];
    int fd, rc = -1;

    if (!buf)
        return -1;
    ws_wal_encode_long_header(&h, buf);
    ws_wal_format_name(name, 1, segno, SEG_SIZE);
    snprintf(out, outsz, "%s/%s", dir, name);
    if ((fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) >= 0) {
        rc = ws_write_all(fd, buf, SEG_SIZE) == 0 ? 0 : -1;
        close(fd);
    }
    if (rc != 0)
        fprintf(stderr, "sessionpush: could not write \"%s\": %s\n", out, strerror(errno));
    free(buf);
    return rc;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    struct ws_archive_session *s;
    struct ws_push_result res;
    struct ws_error err = {0};
    char path[PATH_MAX], *end;
    unsigned long count, first = 1, gap_ms = 0;
    double *ms;
    int rc = 0;

    if (argc < 4 || argc > 6 || (count = strtoul(argv[3], &end, 10)) == 0 || *end ||
        (argc >= 5 && ((first = strtoul(argv[4], &end, 10)) == 0 || *end)) ||
        (argc == 6 && ((gap_ms = strtoul(argv[5], &end, 10)) > 60000 || *end))) {
        fprintf(stderr, "usage: sessionpush CONFIG_FILE DIR COUNT [FIRST_SEGNO [GAP_MS]]\n");
        return 2;
    }
    ws_log_set_level(WS_LOG_WARNING);
    if (!(s = ws_archive_session_new()) || !(ms = calloc(count, sizeof(*ms)))) {
        fprintf(stderr, "sessionpush: out of memory\n");
        return 1;
    }
    for (unsigned long i = 0; i < count && rc == 0; i++) {
        double t0;
        if (write_segment(argv[2], first + i, path, sizeof(path)) != 0) {
            rc = 1;
            break;
        }
        if (gap_ms)
            usleep((useconds_t)(gap_ms * 1000));
        t0 = ws_now_monotonic();
        if (ws_archive_session_push(s, argv[1], path, &res, &err) != 0) {
            fprintf(stderr, "sessionpush: %s\n", err.msg);
            rc = 1;
        }
        ms[i] = (ws_now_monotonic() - t0) * 1000.0;
        printf("push %s %.2f\n", ws_base_name(path), ms[i]);
        fflush(stdout);
        unlink(path);
    }
    if (rc == 0) {
        unsigned long n = count > 1 ? count - 1 : 1;
        double *m = count > 1 ? ms + 1 : ms;
        qsort(m, n, sizeof(*m), cmp_double);
        printf("median %.2f over %lu\n", n % 2 ? m[n / 2] : (m[n / 2 - 1] + m[n / 2]) / 2, n);
    }
    ws_archive_session_free(s);
    free(ms);
    return rc;
}
