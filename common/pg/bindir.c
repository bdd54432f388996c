/* bindir.c - where PostgreSQL's programs are (bindir.h). */
#include "pg/bindir.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/util.h"

int ws_pg_bindir_has(const char *dir, const char *name)
{
    char p[PATH_MAX];
    struct stat st;

    return ws_path_join(p, sizeof(p), dir, name) == 0 && stat(p, &st) == 0 && S_ISREG(st.st_mode) &&
           access(p, X_OK) == 0;
}

/* dir (len bytes, not terminated) into out when it holds name: 1, else 0. */
static int try_dir(const char *dir, size_t len, const char *name, char *out, size_t outsz)
{
    if (len == 0 || len >= outsz || dir[0] != '/')
        return 0;
    memcpy(out, dir, len);
    out[len] = '\0';
    return ws_pg_bindir_has(out, name);
}

int ws_pg_bindir_find(const char *pg_bindir, const char *const dirs[], const char *name, char *out,
                      size_t outsz, struct ws_error *err)
{
    const char *path = getenv("PATH");
    char looked[1024] = "";
    size_t i, n;

    if (pg_bindir && *pg_bindir) {
        if (strlen(pg_bindir) < outsz && ws_pg_bindir_has(pg_bindir, name)) {
            snprintf(out, outsz, "%s", pg_bindir);
            return 0;
        }
        out[0] = '\0';
        return ws_error_set(err, WS_ERR_CONFIG, "pg_bindir \"%s\" holds no executable \"%s\"",
                            pg_bindir, name);
    }
    for (i = 0; dirs && dirs[i]; i++) {
        if (try_dir(dirs[i], strlen(dirs[i]), name, out, outsz))
            return 0;
        n = strlen(looked);
        snprintf(looked + n, sizeof(looked) - n, "%s%s", n ? ", " : "in ", dirs[i]);
    }
    for (path = path ? path : "/usr/bin:/bin"; *path;) {
        n = strcspn(path, ":");
        if (try_dir(path, n, name, out, outsz))
            return 0;
        path += n + (path[n] == ':');
    }
    out[0] = '\0';
    return ws_error_set(err, WS_ERR_CONFIG,
                        "could not find \"%s\" %s%son PATH; set pg_bindir to the directory of "
                        "PostgreSQL's programs",
                        name, looked, looked[0] ? " or " : "");
}
