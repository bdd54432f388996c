/*
 * backup/restore_recovery.c - what a restore writes last: tablespace_map, the recovery settings in
 * postgresql.auto.conf and recovery.signal.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup/restore_int.h"

/* Appends s to out, quoted for the shell (single quotes) unless it needs none; a "%" is doubled
 * (PostgreSQL replaces %f, %p, %r and %% in restore_command). */
static void shell_quote(char *out, size_t outsz, const char *s)
{
    size_t n = strlen(out);
    const char *c;
    int quote;

    for (c = s; *c && (isalnum((unsigned char)*c) || strchr("/._+:@=,-", *c)); c++)
        ;
    quote = !*s || *c;
    if (quote && n + 1 < outsz)
        out[n++] = '\'';
    for (; *s && n + 6 < outsz; s++) {
        if (*s == '\'') {
            memcpy(out + n, "'\\''", 4);
            n += 4;
        } else {
            if (*s == '%')
                out[n++] = '%';
            out[n++] = *s;
        }
    }
    if (quote && n + 1 < outsz)
        out[n++] = '\'';
    out[n] = '\0';
}

/* One postgresql.conf line: key = 'value', quoted as PostgreSQL's configuration file parser
 * reads it (a quote or a backslash doubled). Values hold no control character (checked). */
static void conf_line(FILE *f, const char *key, const char *value)
{
    fprintf(f, "%s = '", key);
    for (; *value; value++) {
        if (*value == '\'' || *value == '\\')
            fputc(*value, f);
        fputc(*value, f);
    }
    fputs("'\n", f);
}

static int find_wal_fetch(char *out, size_t outsz, struct ws_error *err)
{
    char self[PATH_MAX], *slash;
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

    if (n > 0) {
        self[n] = '\0';
        if ((slash = strrchr(self, '/')) != NULL) {
            *slash = '\0';
            if ((size_t)snprintf(out, outsz, "%s/wal-fetch", self) < outsz &&
                access(out, X_OK) == 0)
                return 0;
        }
    }
    return ws_error_set(err, WS_ERR_CONFIG,
                        "could not find wal-fetch next to basebackup (in \"%s\") for "
                        "restore_command",
                        n > 0 ? self : "?");
}

/* restore_command: wal-fetch beside this program, with the configuration in use. */
int ws_restore_command(struct restore *r, struct ws_error *err)
{
    char fetch[PATH_MAX], cfgabs[PATH_MAX];
    char *cmd = r->cmd;
    size_t sz = sizeof(r->cmd);
    int rc;

    cmd[0] = '\0';
    if (r->env && r->env->wal_fetch)
        snprintf(fetch, sizeof(fetch), "%s", r->env->wal_fetch);
    else if ((rc = find_wal_fetch(fetch, sizeof(fetch), err)) != 0)
        return rc;
    shell_quote(cmd, sz, fetch);
    if (r->o->config_path) {
        if (!realpath(r->o->config_path, cfgabs))
            return ws_error_setsys(err, WS_ERR_CONFIG, errno, "could not resolve \"%s\"",
                                   r->o->config_path);
        strncat(cmd, " --config ", sz - strlen(cmd) - 1);
        shell_quote(cmd, sz, cfgabs);
    }
    strncat(cmd, " --repo ", sz - strlen(cmd) - 1);
    shell_quote(cmd, sz, r->cfg->repo);
    strncat(cmd, " --cluster ", sz - strlen(cmd) - 1);
    shell_quote(cmd, sz, r->cfg->cluster);
    strncat(cmd, " %f %p", sz - strlen(cmd) - 1);
    if (strlen(cmd) > sz - 16)
        return ws_error_set(err, WS_ERR_CONFIG, "restore_command would be too long");
    if (ws_restore_has_control(cmd))
        return ws_error_set(err, WS_ERR_CONFIG,
                            "restore_command would hold a control character (from the path of "
                            "wal-fetch or of the configuration file, repo or cluster)");
    return 0;
}

static int recovery_key(const char *line)
{
    static const char *const keys[] = {"restore_command", "recovery_target", "recovery_end_command",
                                       NULL};
    const char *const *k;

    while (*line == ' ' || *line == '\t')
        line++;
    for (k = keys; *k; k++)
        if (strncmp(line, *k, strlen(*k)) == 0)
            return 1; /* also recovery_target_* */
    return 0;
}

/* Opens name in the data directory for reading if it is there: never through a link, only a
 * regular file with one name (*in NULL when there is none). */
static int open_regular(const struct restore *r, const char *name, FILE **in, struct ws_error *err)
{
    int fd = openat(r->data.fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct stat st;

    *in = NULL;
    if (fd < 0 && errno == ELOOP)
        return ws_error_set(err, WS_ERR_INVALID, "\"%s/%s\" is a symbolic link: not read",
                            r->data.path, name);
    if (fd < 0)
        return errno == ENOENT ? 0
                               : ws_error_setsys(err, WS_ERR_IO, errno, "could not open \"%s/%s\"",
                                                 r->data.path, name);
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
        close(fd);
        return ws_error_set(err, WS_ERR_INVALID,
                            "\"%s/%s\" is not a regular file (with one name): not read",
                            r->data.path, name);
    }
    if (!(*in = fdopen(fd, "r"))) {
        close(fd);
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not open \"%s/%s\"", r->data.path,
                               name);
    }
    return 0;
}

/* Writes name in the data directory through name.walsafe: created exclusively (a leftover of
 * an earlier run removed first), never through a link, synced, then renamed over name. */
static int write_small_file(const struct restore *r, const char *name, const char *text, size_t len,
                            struct ws_error *err)
{
    char tmp[NAME_MAX + 1];
    int fd, rc = 0;

    snprintf(tmp, sizeof(tmp), "%s.walsafe", name);
    if (unlinkat(r->data.fd, tmp, 0) != 0 && errno != ENOENT)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not remove \"%s/%s\"", r->data.path,
                               tmp);
    fd = openat(r->data.fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not create file \"%s/%s\"",
                               r->data.path, tmp);
    if (ws_write_all(fd, text, len) != 0 || fsync(fd) != 0)
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not write file \"%s/%s\"", r->data.path,
                             tmp);
    if (close(fd) != 0 && rc == 0)
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not write file \"%s/%s\"", r->data.path,
                             tmp);
    if (rc == 0 && renameat(r->data.fd, tmp, r->data.fd, name) != 0)
        rc =
            ws_error_setsys(err, WS_ERR_IO, errno, "could not rename \"%s/%s\"", r->data.path, tmp);
    return rc;
}

/* Ends a text built with open_memstream; 0 when it is complete. */
static int close_text(FILE *f, struct ws_error *err)
{
    int bad = ferror(f);

    if (fclose(f) != 0 || bad)
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    return 0;
}

int ws_restore_write_recovery(struct restore *r, struct ws_error *err)
{
    const struct ws_restore_opts *o = r->o;
    FILE *in = NULL, *out;
    char *text = NULL, *line = NULL;
    size_t len = 0, cap = 0;
    int rc;

    if (!(out = open_memstream(&text, &len)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    if ((rc = open_regular(r, "postgresql.auto.conf", &in, err)) != 0) {
        fclose(out);
        free(text);
        return rc;
    }
    if (in) {
        while (getline(&line, &cap, in) > 0)
            if (!recovery_key(line))
                fputs(line, out);
        fclose(in);
        free(line);
    }
    fprintf(out, "# recovery settings written by walsafe basebackup restore of backup %s\n",
            r->m->id);
    conf_line(out, "restore_command", r->cmd);
    switch (o->target_kind) {
    case WS_TARGET_TIME:
        conf_line(out, "recovery_target_time", o->target);
        break;
    case WS_TARGET_LSN:
        conf_line(out, "recovery_target_lsn", o->target);
        break;
    case WS_TARGET_XID:
        conf_line(out, "recovery_target_xid", o->target);
        break;
    case WS_TARGET_NAME:
        conf_line(out, "recovery_target_name", o->target);
        break;
    case WS_TARGET_IMMEDIATE:
        conf_line(out, "recovery_target", "immediate");
        break;
    }
    if (o->target_action)
        conf_line(out, "recovery_target_action", o->target_action);
    conf_line(out, "recovery_target_timeline", "latest");
    if ((rc = close_text(out, err)) == 0 &&
        (rc = write_small_file(r, "postgresql.auto.conf", text, len, err)) == 0 &&
        (rc = write_small_file(r, "recovery.signal", "", 0, err)) == 0 && fsync(r->data.fd) != 0)
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not fsync directory \"%s\"",
                             r->data.path);
    free(text);
    return rc;
}

int ws_restore_sync_fs_of(const struct rdir *d, struct ws_error *err)
{
    if (syncfs(d->fd) != 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not sync the file system of \"%s\"",
                               d->path);
    return 0;
}

/* tablespace_map lines are "<oid> <path>", the path with a backslash before any backslash, CR or LF
 * (as PostgreSQL's do_pg_backup_start writes them). */
static void escape_map_path(FILE *f, const char *p)
{
    for (; *p; p++) {
        if (*p == '\\' || *p == '\n' || *p == '\r')
            fputc('\\', f);
        fputc(*p, f);
    }
}

/*
 * PostgreSQL recreates the pg_tblspc links from tablespace_map when it starts from a backup, so
 * that file decides where the restored server's tablespaces are: the one restored from the
 * backup (whatever it says, it is the repository's) is replaced by one that lists exactly the
 * tablespace directories this restore checked and filled, moved ones included. Otherwise the
 * restored server could write into another directory (the live primary's tablespace, say).
 */
int ws_restore_write_tablespace_map(struct restore *r, struct ws_error *err)
{
    FILE *out;
    char *text = NULL;
    size_t len = 0, t;
    struct stat st;
    int rc;

    if (r->m->ntblspc == 0) {
        if (fstatat(r->data.fd, "tablespace_map", &st, AT_SYMLINK_NOFOLLOW) != 0)
            return errno == ENOENT
                       ? 0
                       : ws_error_setsys(err, WS_ERR_IO, errno,
                                         "could not stat \"%s/tablespace_map\"", r->data.path);
    }
    if (!(out = open_memstream(&text, &len)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    for (t = 0; t < r->m->ntblspc; t++) {
        fprintf(out, "%" PRIu32 " ", r->ts[t].oid);
        escape_map_path(out, r->ts[t].path);
        fputc('\n', out);
    }
    if ((rc = close_text(out, err)) == 0)
        rc = write_small_file(r, "tablespace_map", text, len, err);
    free(text);
    return rc;
}

int ws_restore_finish(struct restore *r, struct ws_error *err)
{
    int rc;

    if ((rc = ws_restore_write_tablespace_map(r, err)) != 0 ||
        (rc = ws_restore_sync_fs_of(&r->data, err)) != 0)
        return rc;
    for (size_t i = 0; i < r->m->ntblspc; i++)
        if ((rc = ws_restore_sync_fs_of(&r->ts[i], err)) != 0)
            return rc;
    return ws_restore_write_recovery(r, err);
}
