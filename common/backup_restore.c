/*
 * backup_restore.c - `basebackup restore`: picks a backup, fills a data directory from its
 * bundles with `parallel` workers, recreates tablespace links, makes everything durable
 * (syncfs) and writes the recovery settings. The user then starts PostgreSQL.
 *
 * Every byte written comes out of an object reader (authenticated per chunk when encrypted) and
 * through the bundle splitter, which checks each file's size and SHA-256 against the manifest.
 * A failed restore leaves a directory that must not be started: recovery.signal and the
 * recovery settings are written only after every file is in place and synced, and the message
 * says to run the restore again with --force.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backup.h"
#include "bundle.h"
#include "fsutil.h"
#include "log.h"
#include "object.h"
#include "progress.h"
#include "wal.h"

/* ---- choosing the backup ------------------------------------------------------------------ */

/* Parses the forms of recovery_target_time people write: "YYYY-MM-DD[ T]HH:MM[:SS[.frac]]"
 * followed by "Z", "UTC", "GMT", "+HH", "+HH:MM", "+HHMM" (or "-"), with optional spaces before
 * the zone. Without a zone the local time zone of this machine is assumed (PostgreSQL would
 * use its `timezone` setting); that case returns 1 so the caller can warn. */
int ws_parse_target_time(const char *s, double *out);
int ws_parse_target_time(const char *s, double *out)
{
    struct tm tm = {0};
    const char *p;
    double frac = 0;
    long off = 0;
    int no_zone = 0;
    time_t t;

    p = strptime(s, "%Y-%m-%d", &tm);
    if (!p || (*p != ' ' && *p != 'T'))
        return -1;
    p++;
    {
        const char *q = strptime(p, "%H:%M:%S", &tm);
        if (!q)
            q = strptime(p, "%H:%M", &tm);
        if (!q)
            return -1;
        p = q;
    }
    if (*p == '.') {
        double scale = 0.1;
        if (!isdigit((unsigned char)p[1]))
            return -1;
        for (p++; isdigit((unsigned char)*p); p++, scale /= 10)
            frac += (*p - '0') * scale;
    }
    while (*p == ' ')
        p++;
    if (*p == '\0') {
        no_zone = 1;
    } else if (strcmp(p, "Z") == 0 || strcasecmp(p, "UTC") == 0 || strcasecmp(p, "GMT") == 0) {
        off = 0;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1, hh, mm = 0;
        const char *d = p + 1;
        if (!isdigit((unsigned char)d[0]) || !isdigit((unsigned char)d[1]))
            return -1;
        hh = (d[0] - '0') * 10 + (d[1] - '0');
        d += 2;
        if (*d == ':')
            d++;
        if (*d) {
            if (!isdigit((unsigned char)d[0]) || !isdigit((unsigned char)d[1]) || d[2])
                return -1;
            mm = (d[0] - '0') * 10 + (d[1] - '0');
        }
        if (hh > 15 || mm > 59)
            return -1;
        off = sign * (hh * 3600L + mm * 60L);
    } else {
        return -1;
    }
    if (no_zone) {
        tm.tm_isdst = -1;
        t = mktime(&tm);
    } else {
        t = timegm(&tm) - off;
    }
    if (t == (time_t)-1)
        return -1;
    *out = (double)t + frac;
    return no_zone;
}

static int choose_backup(const struct ws_catalog *cat, const struct ws_restore_opts *o,
                         const struct ws_catalog_backup **out, struct ws_error *err)
{
    const struct ws_catalog_backup *b = NULL, *oldest = NULL;
    double ttime = 0;
    uint64_t tlsn = 0;
    size_t i;
    char when[32];

    if (o->target_kind == WS_TARGET_TIME) {
        int r = ws_parse_target_time(o->target, &ttime);
        if (r < 0)
            return ws_error_set(err, WS_ERR_USAGE,
                                "--target-time \"%s\" is not a time stamp like \"2026-11-22 "
                                "10:15:00+00\"",
                                o->target);
        if (r == 1)
            ws_log_warning("--target-time \"%s\" has no time zone: this machine's is assumed "
                           "(PostgreSQL will use its timezone setting)",
                           o->target);
    } else if (o->target_kind == WS_TARGET_LSN && ws_wal_parse_lsn(o->target, &tlsn) != 0) {
        return ws_error_set(err, WS_ERR_USAGE, "--target-lsn \"%s\" is not an LSN like 0/16B3748",
                            o->target);
    } else if (o->target_kind == WS_TARGET_XID) {
        const char *p = o->target;
        while (isdigit((unsigned char)*p))
            p++;
        if (!*o->target || *p)
            return ws_error_set(err, WS_ERR_USAGE, "--target-xid \"%s\" is not a transaction id",
                                o->target);
    } else if (o->target_kind == WS_TARGET_NAME && !*o->target) {
        return ws_error_set(err, WS_ERR_USAGE, "--target-name is empty");
    }

    for (i = 0; i < cat->nbackups; i++)
        if (cat->backups[i].complete && !oldest)
            oldest = &cat->backups[i];

    if (o->backup && strcmp(o->backup, "latest") != 0) {
        for (i = 0; i < cat->nbackups; i++)
            if (strcmp(cat->backups[i].id, o->backup) == 0)
                b = &cat->backups[i];
        if (!b)
            return ws_error_set(err, WS_ERR_NOT_FOUND, "backup %s is not in the repository",
                                o->backup);
        if (b->deleting)
            return ws_error_set(err, WS_ERR_INVALID,
                                "backup %s is being deleted (wal-prune began deleting it; if "
                                "that run was interrupted, the next one finishes): it cannot be "
                                "restored",
                                b->id);
        if (b->bad_manifest)
            return ws_error_set(err, WS_ERR_CORRUPT, "backup %s: %s", b->id, b->manifest_error);
        if (!b->has_manifest)
            return ws_error_set(err, WS_ERR_INVALID,
                                "backup %s has no manifest: it is still running or it failed",
                                b->id);
        if (!b->complete)
            return ws_error_set(err, WS_ERR_INVALID,
                                "backup %s is not complete: WAL file %s is not in the repository",
                                b->id, b->missing_wal);
        if (o->target_kind == WS_TARGET_TIME && (double)b->m.stop_time + 1 > ttime) {
            ws_format_utc(b->m.stop_time, when);
            return ws_error_set(err, WS_ERR_INVALID,
                                "backup %s ends at %s, after --target-time \"%s\"", b->id, when,
                                o->target);
        }
        if (o->target_kind == WS_TARGET_LSN && b->m.stop_lsn > tlsn)
            return ws_error_set(err, WS_ERR_INVALID, "backup %s ends after --target-lsn %s", b->id,
                                o->target);
        *out = b;
        return 0;
    }
    if (!oldest)
        return ws_error_set(err, WS_ERR_NOT_FOUND,
                            "the repository holds no complete backup of this cluster");
    for (i = cat->nbackups; i-- > 0;) {
        const struct ws_catalog_backup *c = &cat->backups[i];
        if (!c->complete)
            continue;
        if (o->target_kind == WS_TARGET_TIME && (double)c->m.stop_time + 1 > ttime)
            continue;
        if (o->target_kind == WS_TARGET_LSN && c->m.stop_lsn > tlsn)
            continue;
        *out = c;
        return 0;
    }
    ws_format_utc(oldest->m.stop_time, when);
    if (o->target_kind == WS_TARGET_TIME)
        return ws_error_set(err, WS_ERR_INVALID,
                            "no complete backup ends before --target-time \"%s\": the oldest, "
                            "%s, ends at %s",
                            o->target, oldest->id, when);
    {
        char l[24];
        ws_wal_format_lsn(l, oldest->m.stop_lsn);
        return ws_error_set(err, WS_ERR_INVALID,
                            "no complete backup ends before --target-lsn %s: the oldest, %s, ends "
                            "at %s",
                            o->target, oldest->id, l);
    }
}

/* ---- the target directories --------------------------------------------------------------- */

static int dir_is_empty(const char *path, int *empty, struct ws_error *err)
{
    DIR *d = opendir(path);
    struct dirent *de;

    *empty = 1;
    if (!d)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not open directory \"%s\"", path);
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            *empty = 0;
            break;
        }
    closedir(d);
    return 0;
}

/* rm -r of what is inside dir (not dir itself); links are removed, never followed. */
static int clear_dir(const char *dir, struct ws_error *err)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[PATH_MAX];
    int rc = 0;

    if (!d)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not open directory \"%s\"", dir);
    while (rc == 0 && (de = readdir(d)) != NULL) {
        struct stat st;
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= sizeof(path)) {
            rc = ws_error_set(err, WS_ERR_IO, "path too long in \"%s\"", dir);
            break;
        }
        if (lstat(path, &st) != 0) {
            rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not stat \"%s\"", path);
            break;
        }
        if (S_ISDIR(st.st_mode)) {
            if ((rc = clear_dir(path, err)) != 0)
                break;
            if (rmdir(path) != 0)
                rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not remove \"%s\"", path);
        } else if (unlink(path) != 0) {
            rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not remove \"%s\"", path);
        }
    }
    closedir(d);
    return rc;
}

/* Makes `dir` an empty directory: created 0700 if missing; refused if it holds anything unless
 * force (then emptied, but never while a postmaster.pid says a server may use it). */
static int prepare_dir(const char *dir, int force, const char *what, struct ws_error *err)
{
    struct stat st;
    char pid[PATH_MAX];
    int empty, rc;

    if (stat(dir, &st) != 0) {
        if (errno != ENOENT)
            return ws_error_setsys(err, WS_ERR_IO, errno, "could not stat %s \"%s\"", what, dir);
        return ws_mkdir_p(dir, 0700, err);
    }
    if (!S_ISDIR(st.st_mode))
        return ws_error_set(err, WS_ERR_INVALID, "%s \"%s\" is not a directory", what, dir);
    if ((rc = dir_is_empty(dir, &empty, err)) != 0)
        return rc;
    if (!empty) {
        if (!force)
            return ws_error_set(err, WS_ERR_INVALID,
                                "%s \"%s\" is not empty; restore into an empty directory or add "
                                "--force to replace its contents",
                                what, dir);
        snprintf(pid, sizeof(pid), "%s/postmaster.pid", dir);
        if (access(pid, F_OK) == 0)
            return ws_error_set(err, WS_ERR_INVALID,
                                "%s \"%s\" holds postmaster.pid: stop the server (or remove a "
                                "stale postmaster.pid) before restoring over it",
                                what, dir);
        ws_log_warning("--force: removing the contents of %s \"%s\"", what, dir);
        if ((rc = clear_dir(dir, err)) != 0)
            return rc;
    }
    if (chmod(dir, 0700) != 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not chmod %s \"%s\"", what, dir);
    return 0;
}

/* ---- parallel restore of bundles ---------------------------------------------------------- */

struct rjob {
    const struct ws_config *cfg;
    const struct ws_keyring *kr;
    const struct ws_manifest *m;
    const char *root;
    struct ws_bextent *ext; /* extents sorted by (bundle, offset) */
    size_t next_count;
    size_t *first; /* first index in ext of each bundle (+1 sentinel) */
    struct ws_bundle_opts bo;
    pthread_mutex_t lock;
    uint32_t next;
    int failed;
    struct ws_error first_err;
    atomic_uint_fast64_t done; /* bytes of the bundles restored so far (for --progress) */
    atomic_int finished_workers;
};

struct rworker {
    struct rjob *job;
    pthread_t thread;
    struct ws_repo repo;
};

static int restore_bundle(struct rworker *w, uint32_t b, struct ws_error *err)
{
    struct rjob *j = w->job;
    struct ws_sink *split = NULL, *reader = NULL;
    char key[256];
    int rc;

    ws_backup_bundle_key(&w->repo, j->m->id, b, key, sizeof(key));
    if ((rc = ws_bundle_splitter_new_ext(j->ext + j->first[b], j->first[b + 1] - j->first[b],
                                         &j->bo, &split, err)) != 0)
        return rc;
    if ((rc = ws_object_reader_new(split, key, j->kr, 0, &reader, err)) != 0)
        return rc;
    if ((rc = ws_storage_get(w->repo.st, key, 0, WS_STORAGE_TO_END, reader, err)) != 0 ||
        (rc = ws_sink_finish(reader, err)) != 0)
        ws_error_prefix(err, "backup %s, bundle %s", j->m->id, key);
    ws_sink_free(reader);
    if (rc == 0) {
        size_t i;
        uint64_t n = 0;
        for (i = j->first[b]; i < j->first[b + 1]; i++)
            n += j->ext[i].length;
        atomic_fetch_add(&j->done, n);
    }
    return rc;
}

static void *rworker_main(void *arg)
{
    struct rworker *w = arg;
    struct rjob *j = w->job;
    struct ws_error err = {0};

    for (;;) {
        uint32_t b;
        pthread_mutex_lock(&j->lock);
        b = j->failed ? j->m->bundles : j->next++;
        pthread_mutex_unlock(&j->lock);
        if (b >= j->m->bundles)
            break;
        if (restore_bundle(w, b, &err) != 0) {
            pthread_mutex_lock(&j->lock);
            if (!j->failed) {
                j->failed = 1;
                j->first_err = err;
            }
            pthread_mutex_unlock(&j->lock);
            break;
        }
    }
    atomic_fetch_add(&j->finished_workers, 1);
    return NULL;
}

/* Paths from a manifest must stay inside the data directory. */
static int safe_relpath(const char *p)
{
    const char *s = p;

    if (!*p || *p == '/')
        return 0;
    while (*s) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
            return 0;
        s += n;
        if (*s == '/')
            s++;
    }
    return 1;
}

static int run_restore_workers(const struct ws_config *cfg, const struct ws_keyring *kr,
                               struct ws_repo *repo, const struct ws_manifest *m,
                               const struct ws_restore_opts *o, const struct ws_bundle_opts *bo,
                               struct ws_error *err)
{
    struct rjob j = {0};
    struct rworker *w = NULL;
    size_t i, nw;
    int rc = 0, started = 0, lock_init = 0;

    j.cfg = cfg;
    j.kr = kr;
    j.m = m;
    j.bo = *bo;
    if ((rc = ws_bundle_extents(m, &j.ext, &j.first, &j.next_count, err)) != 0)
        goto out;
    nw = (size_t)(o->parallel > 0 ? o->parallel : cfg->parallel);
    if (nw < 1)
        nw = 1;
    if (nw > m->bundles)
        nw = m->bundles ? m->bundles : 1;
    if (!(w = calloc(nw, sizeof(*w)))) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        goto out;
    }
    for (i = 0; i < nw; i++) {
        w[i].job = &j;
        w[i].repo = *repo;
        if (i > 0 && (rc = ws_storage_open(cfg, &w[i].repo.st, err)) != 0) {
            w[i].repo.st = NULL;
            goto out;
        }
    }
    pthread_mutex_init(&j.lock, NULL);
    lock_init = 1;
    for (i = 0; i < nw; i++) {
        if (pthread_create(&w[i].thread, NULL, rworker_main, &w[i]) != 0) {
            pthread_mutex_lock(&j.lock);
            if (!j.failed) {
                j.failed = 1;
                ws_error_set(&j.first_err, WS_ERR_INTERNAL, "could not start a worker thread");
            }
            pthread_mutex_unlock(&j.lock);
            break;
        }
        started++;
    }
    if (o->progress && isatty(STDERR_FILENO)) {
        double t0 = ws_now_monotonic();
        while (atomic_load(&j.finished_workers) < started) {
            ws_progress_line(atomic_load(&j.done), m->bytes, ws_now_monotonic() - t0, 0);
            usleep(250 * 1000);
        }
        ws_progress_line(atomic_load(&j.done), m->bytes, ws_now_monotonic() - t0, 1);
    }
    for (i = 0; i < (size_t)started; i++)
        pthread_join(w[i].thread, NULL);
    if (j.failed) {
        *err = j.first_err;
        rc = err->code ? err->code : WS_ERR_INTERNAL;
    }
out:
    if (w)
        for (i = 1; i < nw; i++)
            if (w[i].repo.st)
                ws_storage_close(w[i].repo.st);
    free(w);
    if (lock_init)
        pthread_mutex_destroy(&j.lock);
    free(j.ext);
    free(j.first);
    return rc;
}

/* ---- recovery settings -------------------------------------------------------------------- */

/* Appends s to out, quoted for the shell (single quotes) unless it needs none. */
static void shell_quote(char *out, size_t outsz, const char *s)
{
    size_t n = strlen(out);
    const char *c;

    for (c = s; *c && (isalnum((unsigned char)*c) || strchr("/._+:@=,-", *c)); c++)
        ;
    if (*s && !*c) {
        strncat(out, s, outsz - n - 1);
        return;
    }

    if (n + 1 < outsz)
        out[n++] = '\'';
    for (; *s && n + 5 < outsz; s++) {
        if (*s == '\'') {
            memcpy(out + n, "'\\''", 4);
            n += 4;
        } else {
            out[n++] = *s;
        }
    }
    if (n + 1 < outsz)
        out[n++] = '\'';
    out[n] = '\0';
}

/* One postgresql.conf line: key = 'value' with quotes doubled. */
static void conf_line(FILE *f, const char *key, const char *value)
{
    fprintf(f, "%s = '", key);
    for (; *value; value++) {
        if (*value == '\'')
            fputc('\'', f);
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

static int write_recovery(const struct ws_config *cfg, const struct ws_restore_opts *o,
                          const char *pgdata, const char *id, uid_t uid, gid_t gid, int do_chown,
                          struct ws_error *err)
{
    char path[PATH_MAX], tmp[PATH_MAX], fetch[PATH_MAX], cmd[8192] = "", cfgabs[PATH_MAX];
    FILE *in = NULL, *out = NULL;
    char *line = NULL;
    size_t cap = 0;
    int fd, rc = 0;

    if ((rc = find_wal_fetch(fetch, sizeof(fetch), err)) != 0)
        return rc;
    shell_quote(cmd, sizeof(cmd), fetch);
    if (o->config_path) {
        if (!realpath(o->config_path, cfgabs))
            return ws_error_setsys(err, WS_ERR_CONFIG, errno, "could not resolve \"%s\"",
                                   o->config_path);
        strncat(cmd, " --config ", sizeof(cmd) - strlen(cmd) - 1);
        shell_quote(cmd, sizeof(cmd), cfgabs);
    }
    strncat(cmd, " --repo ", sizeof(cmd) - strlen(cmd) - 1);
    shell_quote(cmd, sizeof(cmd), cfg->repo);
    strncat(cmd, " --cluster ", sizeof(cmd) - strlen(cmd) - 1);
    shell_quote(cmd, sizeof(cmd), cfg->cluster);
    strncat(cmd, " %f %p", sizeof(cmd) - strlen(cmd) - 1);
    if (strlen(cmd) > sizeof(cmd) - 16)
        return ws_error_set(err, WS_ERR_CONFIG, "restore_command would be too long");

    snprintf(path, sizeof(path), "%s/postgresql.auto.conf", pgdata);
    snprintf(tmp, sizeof(tmp), "%s/postgresql.auto.conf.walsafe", pgdata);
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0 ||
        !(out = fdopen(fd, "w")))
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not create file \"%s\"", tmp);
    if ((in = fopen(path, "r")) != NULL) {
        while (getline(&line, &cap, in) > 0)
            if (!recovery_key(line))
                fputs(line, out);
        fclose(in);
    }
    fprintf(out, "# recovery settings written by walsafe basebackup restore of backup %s\n", id);
    conf_line(out, "restore_command", cmd);
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
    free(line);
    if (fflush(out) != 0 || fsync(fileno(out)) != 0 ||
        (do_chown && fchown(fileno(out), uid, gid) != 0)) {
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not write file \"%s\"", tmp);
        fclose(out);
        return rc;
    }
    if (fclose(out) != 0 || rename(tmp, path) != 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not write file \"%s\"", path);

    snprintf(path, sizeof(path), "%s/recovery.signal", pgdata);
    if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not create file \"%s\"", path);
    if ((do_chown && fchown(fd, uid, gid) != 0) || fsync(fd) != 0) {
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not write file \"%s\"", path);
        close(fd);
        return rc;
    }
    close(fd);
    return ws_fsync_dir(pgdata, err);
}

static int sync_fs_of(const char *dir, struct ws_error *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;

    if (fd < 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not open directory \"%s\"", dir);
    if (syncfs(fd) != 0)
        rc =
            ws_error_setsys(err, WS_ERR_IO, errno, "could not sync the file system of \"%s\"", dir);
    close(fd);
    return rc;
}

static const char *mapped_location(const struct ws_restore_opts *o, const char *loc)
{
    size_t i;

    for (i = 0; i < o->nmaps; i++)
        if (strcmp(o->maps[i].from, loc) == 0)
            return o->maps[i].to;
    return loc;
}

/*
 * PostgreSQL recreates the pg_tblspc links from tablespace_map when it starts from a backup,
 * so a moved tablespace must be moved there too: otherwise the restored server would write
 * into the original location (perhaps the live primary's tablespace). Lines are "<oid> <path>".
 */
static int remap_tablespace_map(const char *pgdata, const struct ws_restore_opts *o, uid_t uid,
                                gid_t gid, int do_chown, struct ws_error *err)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    FILE *in, *out;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int fd, rc = 0;

    if (o->nmaps == 0)
        return 0;
    snprintf(path, sizeof(path), "%s/tablespace_map", pgdata);
    snprintf(tmp, sizeof(tmp), "%s/tablespace_map.walsafe", pgdata);
    if (!(in = fopen(path, "r")))
        return errno == ENOENT
                   ? 0
                   : ws_error_setsys(err, WS_ERR_IO, errno, "could not open \"%s\"", path);
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0 ||
        !(out = fdopen(fd, "w"))) {
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not create file \"%s\"", tmp);
        if (fd >= 0)
            close(fd);
        fclose(in);
        return rc;
    }
    while ((n = getline(&line, &cap, in)) > 0) {
        char *sp = strchr(line, ' ');
        if (n > 0 && line[n - 1] == '\n')
            line[--n] = '\0';
        if (sp) {
            *sp = '\0';
            fprintf(out, "%s %s\n", line, mapped_location(o, sp + 1));
        } else {
            fprintf(out, "%s\n", line);
        }
    }
    free(line);
    fclose(in);
    if (fflush(out) != 0 || (do_chown && fchown(fileno(out), uid, gid) != 0) ||
        fsync(fileno(out)) != 0) {
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not write file \"%s\"", tmp);
        fclose(out);
        return rc;
    }
    if (fclose(out) != 0 || rename(tmp, path) != 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not write file \"%s\"", path);
    return 0;
}

/* Files in pieces are written by several workers with pwrite: create them first (exclusively,
 * at their full size) and give them their attributes after every piece is in. */
static int split_files(const char *pgdata, const struct ws_manifest *m,
                       const struct ws_bundle_opts *bo, int finish, struct ws_error *err)
{
    char path[PATH_MAX];
    size_t i;

    for (i = 0; i < m->nfiles; i++) {
        const struct ws_bfile *f = &m->files[i];
        int fd, rc = 0;
        if (!f->npieces)
            continue;
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", pgdata, f->path) >= sizeof(path))
            return ws_error_set(err, WS_ERR_INVALID, "path too long: \"%s/%s\"", pgdata, f->path);
        if (!finish) {
            if ((fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0)
                return ws_error_setsys(err, WS_ERR_IO, errno, "could not create file \"%s\"", path);
            if (ftruncate(fd, (off_t)f->size) != 0)
                rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not extend file \"%s\"", path);
            close(fd);
        } else {
            struct timespec ts[2] = {{f->mtime, 0}, {f->mtime, 0}};
            if (chmod(path, f->mode & 07777) != 0 ||
                (bo->chown_files && chown(path, bo->uid, bo->gid) != 0) ||
                utimensat(AT_FDCWD, path, ts, 0) != 0)
                rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not set attributes of \"%s\"",
                                     path);
        }
        if (rc)
            return rc;
    }
    return 0;
}

static void report_problem(void *arg, const struct ws_bfile *f, const char *msg)
{
    (void)arg;
    ws_log(WS_LOG_ERROR, "file \"%s\": %s", f->path, msg);
}

int ws_backup_restore(const struct ws_config *cfg, const struct ws_restore_opts *o,
                      struct ws_error *err)
{
    struct ws_repo repo = {0};
    struct ws_keyring kr = {0};
    struct ws_catalog cat = {0};
    const struct ws_catalog_backup *b = NULL;
    const struct ws_manifest *m;
    struct ws_bundle_opts bo = {0};
    char *pgdata = NULL, path[PATH_MAX];
    struct stat st;
    size_t i;
    int rc, files_started = 0;

    if ((rc = ws_keyring_load(cfg, &kr, err)) != 0 || (rc = ws_repo_open(cfg, &repo, err)) != 0 ||
        (rc = ws_catalog_load(&repo, &kr, &cat, err)) != 0)
        goto out;
    if (!cat.has_identity) {
        rc = ws_error_set(err, WS_ERR_NOT_FOUND,
                          "the repository %s holds nothing for cluster \"%s\"", repo.st->location,
                          repo.cluster);
        goto out;
    }
    if ((rc = choose_backup(&cat, o, &b, err)) != 0)
        goto out;
    m = &b->m;
    for (i = 0; i < o->nmaps; i++) {
        size_t t;
        for (t = 0; t < m->ntblspc; t++)
            if (strcmp(m->tblspc[t].location, o->maps[i].from) == 0)
                break;
        if (t == m->ntblspc) {
            rc = ws_error_set(err, WS_ERR_USAGE,
                              "--tablespace-map \"%s\": backup %s has no tablespace there",
                              o->maps[i].from, b->id);
            goto out;
        }
    }
    for (i = 0; i < m->nfiles; i++)
        if (!safe_relpath(m->files[i].path)) {
            rc = ws_error_set(err, WS_ERR_CORRUPT, "backup %s: unsafe path \"%s\" in manifest",
                              b->id, m->files[i].path);
            goto out;
        }
    for (i = 0; i < m->ndirs; i++)
        if (!safe_relpath(m->dirs[i].path)) {
            rc = ws_error_set(err, WS_ERR_CORRUPT, "backup %s: unsafe path \"%s\" in manifest",
                              b->id, m->dirs[i].path);
            goto out;
        }

    /* the data directory and the tablespaces */
    if ((rc = prepare_dir(o->pgdata, o->force, "data directory", err)) != 0)
        goto out;
    if (!(pgdata = realpath(o->pgdata, NULL))) {
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not resolve \"%s\"", o->pgdata);
        goto out;
    }
    /* as root, the files belong to whoever owns the target directory (or its parent) */
    if (geteuid() == 0 && stat(pgdata, &st) == 0) {
        struct stat pst;
        char parent[PATH_MAX], *slash;
        snprintf(parent, sizeof(parent), "%s", pgdata);
        slash = strrchr(parent, '/');
        if (slash && slash != parent)
            *slash = '\0';
        if (st.st_uid == 0 && stat(parent, &pst) == 0 && pst.st_uid != 0)
            st = pst;
        bo.uid = st.st_uid;
        bo.gid = st.st_gid;
        bo.chown_files = st.st_uid != 0;
        if (bo.chown_files && chown(pgdata, bo.uid, bo.gid) != 0) {
            rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not chown \"%s\"", pgdata);
            goto out;
        }
    }
    files_started = 1;
    for (i = 0; i < m->ndirs; i++) {
        snprintf(path, sizeof(path), "%s/%s", pgdata, m->dirs[i].path);
        if (mkdir(path, m->dirs[i].mode & 07777) != 0 && errno != EEXIST) {
            rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not create directory \"%s\"", path);
            goto out;
        }
        if (chmod(path, m->dirs[i].mode & 07777) != 0 ||
            (bo.chown_files && chown(path, bo.uid, bo.gid) != 0)) {
            rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not set attributes of \"%s\"", path);
            goto out;
        }
        /* pg_tblspc exists now: link the tablespaces before their contents are created */
        if (strcmp(m->dirs[i].path, "pg_tblspc") == 0) {
            size_t t;
            for (t = 0; t < m->ntblspc; t++) {
                const char *loc = mapped_location(o, m->tblspc[t].location);
                char link[PATH_MAX];
                if ((rc = prepare_dir(loc, o->force, "tablespace directory", err)) != 0)
                    goto out;
                if (bo.chown_files && chown(loc, bo.uid, bo.gid) != 0) {
                    rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not chown \"%s\"", loc);
                    goto out;
                }
                snprintf(link, sizeof(link), "%s/pg_tblspc/%" PRIu32, pgdata, m->tblspc[t].oid);
                if (symlink(loc, link) != 0) {
                    rc = ws_error_setsys(err, WS_ERR_IO, errno,
                                         "could not create tablespace link \"%s\"", link);
                    goto out;
                }
                if (bo.chown_files && lchown(link, bo.uid, bo.gid) != 0) {
                    rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not chown \"%s\"", link);
                    goto out;
                }
            }
        }
    }
    bo.root = pgdata;
    bo.problem = report_problem;
    ws_log_info("restoring backup %s (%" PRIu64 " bytes in %zu files) into \"%s\"", b->id, m->bytes,
                m->nfiles, pgdata);
    if ((rc = split_files(pgdata, m, &bo, 0, err)) != 0 ||
        (rc = run_restore_workers(cfg, &kr, &repo, m, o, &bo, err)) != 0 ||
        (rc = split_files(pgdata, m, &bo, 1, err)) != 0)
        goto out;
    if ((rc = remap_tablespace_map(pgdata, o, bo.uid, bo.gid, bo.chown_files, err)) != 0 ||
        (rc = sync_fs_of(pgdata, err)) != 0)
        goto out;
    for (i = 0; i < m->ntblspc; i++)
        if ((rc = sync_fs_of(mapped_location(o, m->tblspc[i].location), err)) != 0)
            goto out;
    if ((rc = write_recovery(cfg, o, pgdata, b->id, bo.uid, bo.gid, bo.chown_files, err)) != 0)
        goto out;
    ws_log_info("backup %s restored into \"%s\"; start PostgreSQL to recover", b->id, pgdata);
out:
    if (rc && files_started)
        ws_error_prefix(err,
                        "restore into \"%s\" failed, do not start it (run the restore again "
                        "with --force)",
                        pgdata ? pgdata : o->pgdata);
    free(pgdata);
    ws_catalog_free(&cat);
    ws_repo_close(&repo);
    ws_keyring_wipe(&kr);
    return rc;
}
