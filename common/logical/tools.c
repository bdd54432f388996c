/* tools.c - PostgreSQL's client programs: where, which version, how they connect
 * (logical_int.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/util.h"
#include "logical/logical_int.h"
#include "pg/bindir.h"
#include "pg/pgconn.h"

static const char *temp_base(const struct ws_tools *t)
{
    struct stat st;
    const char *tmp = getenv("TMPDIR");

    if (t->cfg->spool_dir && stat(t->cfg->spool_dir, &st) == 0 && S_ISDIR(st.st_mode))
        return t->cfg->spool_dir;
    return tmp && *tmp == '/' ? tmp : "/tmp";
}

/* The passfile line for password: every field a wildcard, ':' and '\' escaped. */
static int write_passfile(int fd, const char *password)
{
    char buf[2048];
    size_t n = 0;
    const char *p;
    int rc;

    memcpy(buf, "*:*:*:*:", 8);
    n = 8;
    for (p = password; *p && n < sizeof(buf) - 3; p++) {
        if (*p == ':' || *p == '\\')
            buf[n++] = '\\';
        buf[n++] = *p;
    }
    buf[n++] = '\n';
    rc = *p ? -1 : ws_write_all(fd, buf, n);
    memset(buf, 0, sizeof(buf));
    return rc;
}

int ws_tools_open(struct ws_tools *t, const struct ws_config *cfg, struct ws_error *err)
{
    char *conninfo = NULL, *password = NULL;
    int rc;

    memset(t, 0, sizeof(*t));
    t->cfg = cfg;
    t->passfd = -1;
    if ((rc = ws_pg_libpq_tool_conninfo(cfg->pg_conninfo, "postgres", &conninfo, &password, err)) !=
        0)
        return rc;
    free(conninfo);
    if (!password)
        return 0;
    /* in memory only: no name in any directory, gone with the last process that holds it */
    if ((t->passfd = memfd_create("walsafe-pgpass", MFD_CLOEXEC)) < 0)
        rc = ws_error_setsys(err, WS_ERR_IO, errno,
                             "could not create a memory file for the password of pg_conninfo");
    else if (fchmod(t->passfd, 0600) != 0 || write_passfile(t->passfd, password) != 0)
        rc = ws_error_setsys(err, WS_ERR_IO, errno,
                             "could not write the password of pg_conninfo to a memory file");
    memset(password, 0, strlen(password));
    free(password);
    if (rc)
        ws_tools_close(t);
    return rc;
}

void ws_tools_close(struct ws_tools *t)
{
    if (t->cfg && t->passfd >= 0) /* a zeroed ws_tools was never opened: its 0 is not ours */
        close(t->passfd);
    t->passfd = -1;
}

int ws_tools_find(const struct ws_tools *t, const char *name, char *out, size_t outsz,
                  struct ws_error *err)
{
    char dir[4096];
    int rc;

    if ((rc = ws_pg_bindir_find(t->cfg->pg_bindir, NULL, name, dir, sizeof(dir), err)) != 0)
        return rc;
    if (ws_path_join(out, outsz, dir, name) != 0)
        return ws_error_set(err, WS_ERR_CONFIG, "path too long: \"%s/%s\"", dir, name);
    return 0;
}

/* "pg_dump (PostgreSQL) 15.4 (Debian 15.4-1.pgdg120+1)" -> 150004; 9.6.24 -> 90624. */
static int parse_version(const char *text, int *version)
{
    const char *p = strstr(text, ") ");
    unsigned a = 0, b = 0, c = 0;
    int n;

    if (!p || (n = sscanf(p + 2, "%u.%u.%u", &a, &b, &c)) < 1 || a == 0 || a > 99)
        return -1;
    *version = a >= 10 ? (int)(a * 10000 + (n >= 2 ? b : 0)) : (int)(a * 10000 + b * 100 + c);
    return 0;
}

int ws_tools_version(const struct ws_tools *t, const char *path, int *version, struct ws_error *err)
{
    struct ws_child c;
    struct ws_sink *buf = NULL;
    char *argv[] = {(char *)path, "--version", NULL}, what[300];
    int rc;

    (void)t;
    snprintf(what, sizeof(what), "\"%s --version\"", path);
    if ((rc = ws_buffer_sink_new(4096, &buf, err)) != 0)
        return rc;
    if ((rc = ws_child_start(&c, what, argv, -1, WS_CHILD_NULL, WS_CHILD_PIPE, err)) == 0) {
        rc = ws_child_pump(&c, buf, err);
        if (rc == 0)
            rc = ws_child_wait(&c, err);
        ws_child_kill(&c);
    }
    if (rc == 0 && parse_version(ws_buffer_sink_text(buf), version) != 0)
        rc = ws_error_set(err, WS_ERR_CONFIG, "%s printed no version", what);
    ws_sink_free(buf);
    return rc;
}

int ws_tools_conninfo(const struct ws_tools *t, const char *dbname, char **out,
                      struct ws_error *err)
{
    char *password = NULL;
    int rc = ws_pg_libpq_tool_conninfo(t->cfg->pg_conninfo, dbname, out, &password, err);

    if (password) {
        memset(password, 0, strlen(password));
        free(password);
    }
    return rc;
}

int ws_tools_run(const struct ws_tools *t, const char *what, char *const argv[],
                 struct ws_error *err)
{
    struct ws_child c;
    int rc;

    if ((rc = ws_child_start(&c, what, argv, t->passfd, WS_CHILD_NULL, WS_CHILD_NULL, err)) != 0)
        return rc;
    rc = ws_child_wait(&c, err);
    ws_child_kill(&c);
    return rc;
}

int ws_tools_tempdir(const struct ws_tools *t, const char *tag, char *out, size_t outsz,
                     struct ws_error *err)
{
    snprintf(out, outsz, "%s/walsafe-%s.XXXXXX", temp_base(t), tag);
    if (!mkdtemp(out)) {
        int e = errno;
        out[0] = '\0';
        return ws_error_setsys(err, WS_ERR_IO, e, "could not create a directory in \"%s\"",
                               temp_base(t));
    }
    return 0;
}

void ws_tools_rmtree(const char *dir)
{
    int fd;

    if (!dir || !*dir)
        return;
    if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) >= 0) {
        struct ws_error err = {0};
        ws_dir_clear(fd, dir, &err);
        close(fd);
    }
    rmdir(dir);
}
