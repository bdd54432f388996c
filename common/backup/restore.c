/*
 * backup/restore.c - `basebackup restore`: picks a backup, fills a data directory from its
 * bundles with `parallel` workers, recreates tablespace links, makes everything durable
 * (syncfs) and writes the recovery settings. The user then starts PostgreSQL.
 *
 * Every byte written comes out of an object reader (authenticated per chunk when encrypted) and
 * through the bundle splitter, which checks each file's size and SHA-256 against the manifest.
 * A failed restore leaves a directory that must not be started: recovery.signal and the
 * recovery settings are written only after every file is in place and synced, and the message
 * says to run the restore again with --force.
 *
 * Writing safely into a directory another user owns (docs/design/restore-safety.md): run as
 * root, the restore itself runs in a child process with the target owner's user and groups;
 * every directory, file and link is created through directory descriptors, never following a
 * link (base/fs.h); manifest paths, tablespace locations and modes are checked or masked
 * before anything is touched; --force empties only the data directory and --tablespace-map
 * destinations, never a tablespace's original location.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backup/backup.h"
#include "backup/pool.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/util.h"
#include "io/object.h"
#include "pg/wal.h"
#include "repo/bundle.h"

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

/* The recovery target as given: *ttime for --target-time, *tlsn for --target-lsn. */
static int parse_target(const struct ws_restore_opts *o, double *ttime, uint64_t *tlsn,
                        struct ws_error *err)
{
    if (o->target_kind == WS_TARGET_TIME) {
        int r = ws_parse_target_time(o->target, ttime);
        if (r < 0)
            return ws_error_set(err, WS_ERR_USAGE,
                                "--target-time \"%s\" is not a time stamp like \"2026-11-22 "
                                "10:15:00+00\"",
                                o->target);
        if (r == 1)
            ws_log_warning("--target-time \"%s\" has no time zone: this machine's is assumed "
                           "(PostgreSQL will use its timezone setting)",
                           o->target);
    } else if (o->target_kind == WS_TARGET_LSN && ws_wal_parse_lsn(o->target, tlsn) != 0) {
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
    return 0;
}

/* --backup ID: that backup, if it can be restored and ends before the target. */
static int named_backup(const struct ws_catalog *cat, const struct ws_restore_opts *o, double ttime,
                        uint64_t tlsn, const struct ws_catalog_backup **out, struct ws_error *err)
{
    const struct ws_catalog_backup *b = NULL;
    size_t i;
    char when[32];

    for (i = 0; i < cat->nbackups; i++)
        if (strcmp(cat->backups[i].id, o->backup) == 0)
            b = &cat->backups[i];
    if (!b)
        return ws_error_set(err, WS_ERR_NOT_FOUND, "backup %s is not in the repository", o->backup);
    if (b->status == WS_BACKUP_DELETING)
        return ws_error_set(err, WS_ERR_INVALID,
                            "backup %s is being deleted (wal-prune began deleting it; if "
                            "that run was interrupted, the next one finishes): it cannot be "
                            "restored",
                            b->id);
    if (b->bad_manifest)
        return ws_error_set(err, WS_ERR_CORRUPT, "backup %s: %s", b->id, b->manifest_error);
    if (!b->has_manifest)
        return ws_error_set(err, WS_ERR_INVALID,
                            "backup %s has no manifest: it is still running or it failed", b->id);
    if (b->status != WS_BACKUP_COMPLETE)
        return ws_error_set(err, WS_ERR_INVALID,
                            "backup %s is not complete: WAL file %s is not in the repository",
                            b->id, b->missing_wal);
    if (o->target_kind == WS_TARGET_TIME && (double)b->m.stop_time + 1 > ttime) {
        ws_format_utc(b->m.stop_time, when);
        return ws_error_set(err, WS_ERR_INVALID, "backup %s ends at %s, after --target-time \"%s\"",
                            b->id, when, o->target);
    }
    if (o->target_kind == WS_TARGET_LSN && b->m.stop_lsn > tlsn)
        return ws_error_set(err, WS_ERR_INVALID, "backup %s ends after --target-lsn %s", b->id,
                            o->target);
    *out = b;
    return 0;
}

static int choose_backup(const struct ws_catalog *cat, const struct ws_restore_opts *o,
                         const struct ws_catalog_backup **out, struct ws_error *err)
{
    const struct ws_catalog_backup *oldest = NULL;
    double ttime = 0;
    uint64_t tlsn = 0;
    size_t i;
    char when[32];
    int rc;

    if ((rc = parse_target(o, &ttime, &tlsn, err)) != 0)
        return rc;
    for (i = 0; i < cat->nbackups; i++)
        if (cat->backups[i].status == WS_BACKUP_COMPLETE && !oldest)
            oldest = &cat->backups[i];
    if (o->backup && strcmp(o->backup, "latest") != 0)
        return named_backup(cat, o, ttime, tlsn, out, err);
    if (!oldest)
        return ws_error_set(err, WS_ERR_NOT_FOUND,
                            "the repository holds no complete backup of this cluster");
    for (i = cat->nbackups; i-- > 0;) {
        const struct ws_catalog_backup *c = &cat->backups[i];
        if (c->status != WS_BACKUP_COMPLETE)
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

/* ---- what the restore may write: checked before anything is touched ----------------------- */

/* PostgreSQL's FirstNormalObjectId: every tablespace users create has an oid from here on. */
#define FIRST_NORMAL_OID 16384u

struct rdir {
    const char *path;      /* as named: --pgdata (absolute), a location or a map destination */
    uint32_t oid;          /* of a tablespace; 0 for the data directory */
    char link[32];         /* a tablespace's "pg_tblspc/<oid>" */
    int mapped;            /* a --tablespace-map destination */
    int clearable;         /* --force may empty it (also the replaced cluster's own, see
                              inspect_targets) */
    struct ws_dir_ref ref; /* looked up (base/fs.h) */
    int fd;                /* opened for reading, once it exists */
    int empty, has_pid;    /* what it held before the restore */
    char pg[NAME_MAX + 1]; /* a PG_<version>_<catversion> directory in it ("" if none) */
};

struct restore {
    const struct ws_config *cfg;
    const struct ws_backup_env *env;
    const struct ws_restore_opts *o;
    const struct ws_keyring *kr;
    const struct ws_manifest *m;
    char pgdata[PATH_MAX]; /* --pgdata made absolute (lexically), for checks and messages */
    char cmd[8192];        /* restore_command */
    struct rdir data;
    struct rdir *ts; /* one per tablespace of the manifest, in its order */
    int group_access;
    int started; /* something was removed or written: a failure leaves a directory not to start */
    char as_user[64];       /* the user a root-started restore runs as ("" otherwise) */
    char as_home[PATH_MAX]; /* and that user's home */
};

static int has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

/* inner is outer or lies below it (both clean absolute paths). */
static int path_within(const char *inner, const char *outer)
{
    size_t n = strlen(outer);

    return strncmp(inner, outer, n) == 0 && (inner[n] == '\0' || inner[n] == '/');
}

/* p made absolute against the working directory, with ".", ".." and "//" resolved lexically. */
static int absolute_path(const char *p, char *out, size_t outsz, struct ws_error *err)
{
    char buf[PATH_MAX * 2], cwd[PATH_MAX];
    const char *s;
    size_t n = 0;

    if (p[0] == '/') {
        if ((size_t)snprintf(buf, sizeof(buf), "%s", p) >= sizeof(buf))
            return ws_error_set(err, WS_ERR_USAGE, "--pgdata is too long");
    } else {
        if (!getcwd(cwd, sizeof(cwd)))
            return ws_error_setsys(err, WS_ERR_IO, errno, "could not get the working directory");
        if ((size_t)snprintf(buf, sizeof(buf), "%s/%s", cwd, p) >= sizeof(buf))
            return ws_error_set(err, WS_ERR_USAGE, "--pgdata is too long");
    }
    out[0] = '\0';
    for (s = buf; *s;) {
        const char *e = strchr(s, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len == 2 && s[0] == '.' && s[1] == '.') {
            while (n > 0 && out[n - 1] != '/')
                n--;
            if (n > 0)
                n--;
            out[n] = '\0';
        } else if (len > 0 && !(len == 1 && s[0] == '.')) {
            if (n + 1 + len >= outsz)
                return ws_error_set(err, WS_ERR_USAGE, "--pgdata is too long");
            out[n++] = '/';
            memcpy(out + n, s, len);
            n += len;
            out[n] = '\0';
        }
        s += len;
        if (*s == '/')
            s++;
    }
    if (n == 0)
        snprintf(out, outsz, "/");
    return 0;
}

static const char *mapped_location(const struct ws_restore_opts *o, const char *loc)
{
    size_t i;

    for (i = 0; i < o->nmaps; i++)
        if (strcmp(o->maps[i].from, loc) == 0)
            return o->maps[i].to;
    return loc;
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

/* Recovery targets end up in postgresql.auto.conf: a line break there would end the setting. */
static int check_target(const struct ws_restore_opts *o, struct ws_error *err)
{
    static const char *const names[] = {
        "", "--target-time", "--target-lsn", "--target-xid", "--target-name", "--target-immediate"};

    if (o->target && has_control(o->target))
        return ws_error_set(err, WS_ERR_USAGE, "%s must not contain control characters",
                            o->target_kind >= 0 && o->target_kind <= WS_TARGET_IMMEDIATE
                                ? names[o->target_kind]
                                : "the recovery target");
    return 0;
}

static int check_manifest_paths(const struct ws_manifest *m, struct ws_error *err)
{
    size_t i;

    for (i = 0; i < m->nfiles; i++)
        if (!safe_relpath(m->files[i].path))
            return ws_error_set(err, WS_ERR_CORRUPT, "backup %s: unsafe path \"%s\" in manifest",
                                m->id, m->files[i].path);
    for (i = 0; i < m->ndirs; i++)
        if (!safe_relpath(m->dirs[i].path))
            return ws_error_set(err, WS_ERR_CORRUPT, "backup %s: unsafe path \"%s\" in manifest",
                                m->id, m->dirs[i].path);
    return 0;
}

/* The tablespaces of the manifest and the --tablespace-map options: sane oids and locations,
 * and where each tablespace goes (r->ts), which must lie apart from the data directory and
 * from the others. */
static int check_tablespaces(struct restore *r, struct ws_error *err)
{
    const struct ws_manifest *m = r->m;
    const struct ws_restore_opts *o = r->o;
    size_t t, u, i;

    for (t = 0; t < m->ntblspc; t++) {
        const struct ws_btblspc *b = &m->tblspc[t];
        if (b->oid < FIRST_NORMAL_OID)
            return ws_error_set(err, WS_ERR_CORRUPT,
                                "backup %s: tablespace oid %" PRIu32 " is not a user tablespace's",
                                m->id, b->oid);
        for (u = 0; u < t; u++)
            if (m->tblspc[u].oid == b->oid)
                return ws_error_set(err, WS_ERR_CORRUPT,
                                    "backup %s: tablespace %" PRIu32 " is listed twice", m->id,
                                    b->oid);
        if (!ws_path_clean_absolute(b->location))
            return ws_error_set(err, WS_ERR_CORRUPT,
                                "backup %s: tablespace %" PRIu32
                                " has location \"%s\", which is not an absolute normalised path",
                                m->id, b->oid, b->location);
    }
    for (i = 0; i < o->nmaps; i++) {
        const struct ws_tblspc_map *mp = &o->maps[i];
        for (t = 0; t < m->ntblspc && strcmp(m->tblspc[t].location, mp->from) != 0; t++)
            ;
        if (t == m->ntblspc)
            return ws_error_set(err, WS_ERR_USAGE,
                                "--tablespace-map \"%s\": backup %s has no tablespace there",
                                mp->from, m->id);
        for (u = 0; u < i; u++)
            if (strcmp(o->maps[u].from, mp->from) == 0)
                return ws_error_set(err, WS_ERR_USAGE, "--tablespace-map \"%s\" is given twice",
                                    mp->from);
        if (!ws_path_clean_absolute(mp->to))
            return ws_error_set(err, WS_ERR_USAGE,
                                "--tablespace-map \"%s\": NEWDIR must be an absolute path without "
                                "\".\", \"..\", \"//\" or a trailing slash, and not \"/\"",
                                mp->to);
    }
    for (t = 0; t < m->ntblspc; t++) {
        struct rdir *d = &r->ts[t];
        d->oid = m->tblspc[t].oid;
        snprintf(d->link, sizeof(d->link), "pg_tblspc/%" PRIu32, d->oid);
        d->path = mapped_location(o, m->tblspc[t].location);
        d->mapped = d->path != m->tblspc[t].location;
        /* --force empties a destination named on this command line that is no tablespace's
         * original location (the primary may be using that one); an original location only
         * when the replaced data directory links to it (inspect_targets) */
        d->clearable = d->mapped;
        for (u = 0; u < m->ntblspc; u++)
            if (path_within(d->path, m->tblspc[u].location) ||
                path_within(m->tblspc[u].location, d->path))
                d->clearable = 0;
        if (path_within(d->path, r->pgdata) || path_within(r->pgdata, d->path))
            return ws_error_set(err, d->mapped ? WS_ERR_USAGE : WS_ERR_INVALID,
                                "tablespace directory \"%s\" (tablespace %" PRIu32
                                ") and the data directory \"%s\" must lie apart%s",
                                d->path, d->oid, r->pgdata,
                                d->mapped ? "" : "; move the tablespace with --tablespace-map");
        for (u = 0; u < t; u++)
            if (path_within(d->path, r->ts[u].path) || path_within(r->ts[u].path, d->path))
                return ws_error_set(err, WS_ERR_USAGE,
                                    "tablespaces %" PRIu32 " and %" PRIu32
                                    " would share the directory \"%s\"",
                                    r->ts[u].oid, d->oid, d->path);
    }
    return 0;
}

/* Root restoring into a root-owned target (no privilege drop) creates and fills each
 * tablespace directory as root: a location from the manifest, which whoever writes the
 * repository chooses ("/root/.ssh"), is not enough; the command line must name it. */
static int check_root_tablespaces(const struct restore *r, struct ws_error *err)
{
    size_t t;

    if (geteuid() != 0)
        return 0;
    for (t = 0; t < r->m->ntblspc; t++)
        if (!r->ts[t].mapped)
            return ws_error_set(err, WS_ERR_INVALID,
                                "tablespace %" PRIu32 ": the restore runs as root (root owns "
                                "\"%s\" or what holds it), and the location \"%s\" comes from "
                                "the backup's manifest, which whoever writes the repository "
                                "chooses: name the directory with --tablespace-map %s=DIR (DIR "
                                "may be that location), or restore into a directory the database "
                                "user owns",
                                r->ts[t].oid, r->pgdata, r->m->tblspc[t].location,
                                r->m->tblspc[t].location);
    return 0;
}

/* PostgreSQL decides on group access from the data directory's mode; the manifest has the
 * mode of "global", which it creates alike. */
static int manifest_group_access(const struct ws_manifest *m)
{
    size_t i;

    for (i = 0; i < m->ndirs; i++)
        if (strcmp(m->dirs[i].path, "global") == 0)
            return (m->dirs[i].mode & 0050) == 0050;
    return 0;
}

/* What a restored directory gets: the manifest's mode masked to 0700 (0750 with group
 * access), and always 0700 for its owner (the restore writes into it). */
static mode_t dir_mode(const struct restore *r, uint32_t manifest_mode)
{
    return (mode_t)((manifest_mode & (r->group_access ? 0750u : 0700u)) | 0700u);
}

/* ---- the target directories --------------------------------------------------------------- */

/* What directory fd holds: anything at all, a postmaster.pid, a PG_* directory. */
static int scan_dir(struct rdir *d, struct ws_error *err)
{
    int fd = openat(d->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *dir;
    struct dirent *de;

    d->empty = 1;
    d->has_pid = 0;
    d->pg[0] = '\0';
    if (fd < 0 || !(dir = fdopendir(fd))) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return ws_error_setsys(err, WS_ERR_IO, e, "could not open directory \"%s\"", d->path);
    }
    while ((de = readdir(dir)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        d->empty = 0;
        if (strcmp(de->d_name, "postmaster.pid") == 0)
            d->has_pid = 1;
        if (strncmp(de->d_name, "PG_", 3) == 0 && !d->pg[0])
            snprintf(d->pg, sizeof(d->pg), "%s", de->d_name);
    }
    closedir(dir);
    return 0;
}

/* Opens a directory that exists (d->ref found it) for reading and looks at what it holds. */
static int inspect_dir(struct rdir *d, struct ws_error *err)
{
    d->empty = 1;
    if (d->ref.missing[0])
        return 0;
    if ((d->fd = openat(d->ref.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not open directory \"%s\"", d->path);
    return scan_dir(d, err);
}

/* A directory the restore fills must be ours (PostgreSQL wants its directories so, and we
 * change nothing that belongs to someone else). */
static int check_mine(const struct rdir *d, const char *what, struct ws_error *err)
{
    struct stat st;

    if (d->fd < 0)
        return 0;
    if (fstat(d->fd, &st) != 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not stat \"%s\"", d->path);
    if (st.st_uid != geteuid())
        return ws_error_set(err, WS_ERR_INVALID,
                            "%s \"%s\" belongs to user %u, not to user %u who restores into it",
                            what, d->path, (unsigned)st.st_uid, (unsigned)geteuid());
    return 0;
}

/* A link in the data directory's pg_tblspc (as it was before the restore) leads to d: d is a
 * tablespace of the cluster that --force replaces. */
static int linked_from_data(const struct restore *r, const struct rdir *d)
{
    struct stat want, st;
    struct dirent *de;
    DIR *dir;
    int fd, found = 0;

    if (r->data.fd < 0 || fstat(d->fd, &want) != 0)
        return 0;
    if ((fd = openat(r->data.fd, "pg_tblspc", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
        return 0;
    if (!(dir = fdopendir(fd))) {
        close(fd);
        return 0;
    }
    while (!found && (de = readdir(dir)) != NULL)
        found = strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 &&
                fstatat(fd, de->d_name, &st, 0) == 0 && st.st_dev == want.st_dev &&
                st.st_ino == want.st_ino;
    closedir(dir);
    return found;
}

/* The data directory and every tablespace directory: refused unless each is empty, missing,
 * or one --force may empty. Nothing is changed yet. */
static int inspect_targets(struct restore *r, struct ws_error *err)
{
    struct rdir *d = &r->data;
    size_t t;
    int rc, ours;

    if ((rc = inspect_dir(d, err)) != 0 || (rc = check_mine(d, "data directory", err)) != 0)
        return rc;
    if (!d->empty && !r->o->force)
        return ws_error_set(err, WS_ERR_INVALID,
                            "data directory \"%s\" is not empty; restore into an empty directory "
                            "or add --force to replace its contents",
                            d->path);
    if (d->has_pid)
        return ws_error_set(err, WS_ERR_INVALID,
                            "data directory \"%s\" holds postmaster.pid: stop the server (or "
                            "remove a stale postmaster.pid) before restoring over it",
                            d->path);
    for (t = 0; t < r->m->ntblspc; t++) {
        d = &r->ts[t];
        if ((rc = ws_dir_lookup(d->path, &d->ref, err)) != 0 || (rc = inspect_dir(d, err)) != 0 ||
            (rc = check_mine(d, "tablespace directory", err)) != 0)
            return ws_error_prefix(err, "tablespace %" PRIu32, d->oid);
        if (d->empty)
            continue;
        /* the data directory --force replaces links to it: that cluster's own tablespace */
        ours = r->o->force && linked_from_data(r, d);
        if (!d->clearable && !(ours && strcmp(d->path, r->m->tblspc[t].location) == 0)) {
            char held[NAME_MAX + 80] = "";
            if (d->pg[0])
                snprintf(held, sizeof(held),
                         " (it holds \"%s\": a tablespace of a cluster, perhaps the one backed up)",
                         d->pg);
            return ws_error_set(err, WS_ERR_INVALID,
                                "tablespace directory \"%s\" of tablespace %" PRIu32
                                " is not empty%s; --force empties a tablespace's original "
                                "location only when the data directory it replaces links to it: "
                                "restore the tablespace elsewhere with --tablespace-map %s=NEWDIR",
                                d->path, d->oid, held, r->m->tblspc[t].location);
        }
        if (!r->o->force)
            return ws_error_set(err, WS_ERR_INVALID,
                                "tablespace directory \"%s\" (--tablespace-map) is not empty; use "
                                "an empty directory or add --force to replace its contents",
                                d->path);
        if (d->has_pid)
            return ws_error_set(err, WS_ERR_INVALID,
                                "tablespace directory \"%s\" holds postmaster.pid: it is a data "
                                "directory, not emptied",
                                d->path);
        if (d->pg[0] && !ours)
            return ws_error_set(err, WS_ERR_INVALID,
                                "tablespace directory \"%s\" (--tablespace-map) holds \"%s\", a "
                                "tablespace that no link in \"%s/pg_tblspc\" points to (another "
                                "cluster's?): --force empties only the tablespaces of the data "
                                "directory it replaces; choose another directory",
                                d->path, d->pg, r->data.path);
    }
    return 0;
}

/* inner is outer or lies below it, by device and inode (links and mounts make paths lie). */
static int dir_within(int inner, int outer, int *within, struct ws_error *err)
{
    struct stat o, st, pst;
    int fd = openat(inner, ".", O_PATH | O_DIRECTORY | O_CLOEXEC), depth, rc = 0;

    *within = 0;
    if (fd < 0 || fstat(outer, &o) != 0) {
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not stat a target directory");
        goto out;
    }
    for (depth = 0; depth < 4096; depth++) {
        int up;
        if (fstat(fd, &st) != 0) {
            rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not stat a target directory");
            goto out;
        }
        if (st.st_dev == o.st_dev && st.st_ino == o.st_ino) {
            *within = 1;
            goto out;
        }
        if ((up = openat(fd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0 || fstat(up, &pst) != 0) {
            rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not open a parent directory");
            if (up >= 0)
                close(up);
            goto out;
        }
        close(fd);
        fd = up;
        if (pst.st_dev == st.st_dev && pst.st_ino == st.st_ino)
            goto out; /* "/" */
    }
out:
    if (fd >= 0)
        close(fd);
    return rc;
}

static int apart(const struct rdir *a, const struct rdir *b, struct ws_error *err)
{
    int in1, in2, rc;

    if ((rc = dir_within(a->fd, b->fd, &in1, err)) != 0 ||
        (rc = dir_within(b->fd, a->fd, &in2, err)) != 0)
        return rc;
    if (in1 || in2)
        return ws_error_set(err, WS_ERR_INVALID,
                            "\"%s\" and \"%s\" are the same directory or one holds the other: a "
                            "data directory and its tablespaces must lie apart",
                            a->path, b->path);
    return 0;
}

/* Creates what is missing (each directory as it is named, links of others refused) and checks
 * by inode that the directories lie apart. The "/" of the file system is never a target. */
static int create_targets(struct restore *r, struct ws_error *err)
{
    size_t t, u;
    int rc, top;

    for (t = 0; t <= r->m->ntblspc; t++) {
        struct rdir *d = t == 0 ? &r->data : &r->ts[t - 1];
        if (!d->ref.missing[0])
            continue;
        if ((rc = ws_dir_create(&d->ref, d->path, 0700, err)) != 0)
            return rc;
        if ((d->fd = openat(d->ref.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
            return ws_error_setsys(err, WS_ERR_IO, errno, "could not open directory \"%s\"",
                                   d->path);
        /* someone else may have made it first */
        if ((rc = check_mine(d, t == 0 ? "data directory" : "tablespace directory", err)) != 0)
            return rc;
    }
    {
        int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (root < 0)
            return ws_error_setsys(err, WS_ERR_IO, errno, "could not open \"/\"");
        rc = dir_within(root, r->data.fd, &top, err);
        close(root);
        if (rc == 0 && top)
            rc = ws_error_set(err, WS_ERR_INVALID, "data directory \"%s\" is the root directory",
                              r->data.path);
        if (rc)
            return rc;
    }
    for (t = 0; t < r->m->ntblspc; t++) {
        if ((rc = apart(&r->ts[t], &r->data, err)) != 0)
            return rc;
        for (u = 0; u < t; u++)
            if ((rc = apart(&r->ts[t], &r->ts[u], err)) != 0)
                return rc;
    }
    return 0;
}

/* --force: empties what inspect_targets allowed; then the modes PostgreSQL wants. The
 * tablespace directories go first: while the data directory keeps its pg_tblspc links, a
 * restore killed meanwhile can be repeated (see linked_from_data). */
static int empty_targets(struct restore *r, struct ws_error *err)
{
    mode_t mode = r->group_access ? 0750 : 0700;
    size_t t, n = r->m->ntblspc;
    int rc;

    for (t = 0; t <= n; t++) {
        struct rdir *d = t == n ? &r->data : &r->ts[t];
        if (!d->empty) {
            ws_log_warning("--force: removing the contents of %s \"%s\"",
                           t == n ? "data directory" : "tablespace directory", d->path);
            if ((rc = ws_dir_clear(d->fd, d->path, err)) != 0)
                return rc;
        }
        if (fchmod(d->fd, mode) != 0)
            return ws_error_setsys(err, WS_ERR_IO, errno, "could not chmod \"%s\"", d->path);
    }
    return 0;
}

static void close_rdir(struct rdir *d)
{
    if (d->fd >= 0)
        close(d->fd);
    d->fd = -1;
    ws_dir_ref_close(&d->ref);
}
/* ---- parallel restore of bundles ---------------------------------------------------------- */

struct rjob {
    const struct ws_keyring *kr;
    const struct ws_manifest *m;
    struct ws_bextent *ext; /* extents sorted by (bundle, offset) */
    size_t *first;          /* first index in ext of each bundle (+1 sentinel) */
    struct ws_bundle_opts bo;
};

/* A pool task: bundle b through its reader and splitter into the tree. */
static int restore_bundle(void *arg, struct ws_pool_worker *w, size_t b, struct ws_error *err)
{
    struct rjob *j = arg;
    struct ws_sink *split = NULL, *reader = NULL;
    char key[256];
    int rc;

    ws_backup_bundle_key(&w->repo, j->m->id, (uint32_t)b, key, sizeof(key));
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
        ws_pool_progress(w, n);
    }
    return rc;
}

static int run_restore_workers(const struct restore *r, struct ws_repo *repo,
                               const struct ws_bundle_opts *bo, struct ws_error *err)
{
    struct rjob j = {0};
    struct ws_pool_params pp = {0};
    size_t next_count = 0;
    int rc;

    j.kr = r->kr;
    j.m = r->m;
    j.bo = *bo;
    if ((rc = ws_bundle_extents(r->m, &j.ext, &j.first, &next_count, err)) != 0)
        goto out;
    pp.cfg = r->cfg;
    pp.env = r->env;
    pp.repo = repo;
    pp.workers =
        ws_pool_size(r->o->parallel > 0 ? r->o->parallel : r->cfg->parallel, r->m->bundles);
    pp.ntasks = r->m->bundles;
    pp.task = restore_bundle;
    pp.arg = &j;
    pp.progress = r->o->progress;
    pp.total_bytes = r->m->bytes;
    rc = ws_pool_run(&pp, err);
out:
    free(j.ext);
    free(j.first);
    return rc;
}

/* ---- recovery settings -------------------------------------------------------------------- */

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
static int make_restore_command(struct restore *r, struct ws_error *err)
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
    if (has_control(cmd))
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

static int write_recovery(struct restore *r, struct ws_error *err)
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

static int sync_fs_of(const struct rdir *d, struct ws_error *err)
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
static int write_tablespace_map(struct restore *r, struct ws_error *err)
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
/* ---- filling the data directory ----------------------------------------------------------- */

/* Every directory of the manifest, and the pg_tblspc links to the tablespace directories as
 * soon as pg_tblspc is there: before anything is written into a tablespace directory, the data
 * directory says it is its own (what a --force after a killed restore relies on). */
static int make_dirs(struct restore *r, const struct ws_tree *tree, struct ws_error *err)
{
    struct ws_tree_cursor c = WS_TREE_CURSOR_INIT;
    size_t i, t;
    int rc = 0, linked = 0;

    for (i = 0; i < r->m->ndirs && rc == 0; i++) {
        rc = ws_tree_mkdir(tree, &c, r->m->dirs[i].path, dir_mode(r, r->m->dirs[i].mode), err);
        if (rc || linked || strcmp(r->m->dirs[i].path, "pg_tblspc") != 0)
            continue;
        for (t = 0; t < r->m->ntblspc && rc == 0; t++)
            rc = ws_tree_symlink(tree, &c, r->ts[t].path, r->ts[t].link, err);
        linked = 1;
    }
    if (rc == 0 && !linked && r->m->ntblspc)
        rc = ws_error_set(err, WS_ERR_CORRUPT,
                          "backup %s has tablespaces but no pg_tblspc directory in its manifest",
                          r->m->id);
    ws_tree_cursor_close(&c);
    return rc;
}

/* Files in pieces are written by several workers with pwrite: create them first (exclusively,
 * at their full size) and give them their attributes after every piece is in. */
static int split_files(struct restore *r, const struct ws_tree *tree, int finish,
                       struct ws_error *err)
{
    struct ws_tree_cursor c = WS_TREE_CURSOR_INIT;
    size_t i;
    int rc = 0;

    for (i = 0; i < r->m->nfiles && rc == 0; i++) {
        const struct ws_bfile *f = &r->m->files[i];
        struct timespec ts[2] = {{f->mtime, 0}, {f->mtime, 0}};
        int fd;
        if (!f->npieces)
            continue;
        if (!finish) {
            if ((rc = ws_tree_open(tree, &c, f->path, O_WRONLY | O_CREAT | O_EXCL, 0600, &fd,
                                   err)) != 0)
                break;
            if (ftruncate(fd, (off_t)f->size) != 0)
                rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not extend file \"%s/%s\"",
                                     tree->name, f->path);
        } else {
            if ((rc = ws_tree_open(tree, &c, f->path, O_RDONLY | O_NONBLOCK, 0, &fd, err)) != 0)
                break;
            if (fchmod(fd, ws_bundle_file_mode(f->mode, r->group_access)) != 0 ||
                futimens(fd, ts) != 0)
                rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not set attributes of \"%s/%s\"",
                                     tree->name, f->path);
        }
        close(fd);
    }
    ws_tree_cursor_close(&c);
    return rc;
}

static void report_problem(void *arg, const struct ws_bfile *f, const char *msg)
{
    (void)arg;
    ws_log(WS_LOG_ERROR, "file \"%s\": %s", f->path, msg);
}

/*
 * The restore proper, with the privileges it runs with (the target owner's, see
 * ws_backup_restore): checks the target directories, empties what --force allows, then writes
 * every directory, link and file through descriptors (base/fs.h), syncs, and writes the recovery
 * settings last.
 */
static int restore_into(struct restore *r, struct ws_repo *repo, struct ws_error *err)
{
    const struct ws_manifest *m = r->m;
    struct ws_bundle_opts bo = {0};
    struct ws_tree tree = {0};
    struct ws_tree_mount *mounts = NULL;
    size_t i;
    int rc;

    if ((rc = inspect_targets(r, err)) != 0 || (rc = create_targets(r, err)) != 0)
        goto out;
    r->started = 1;
    if ((rc = empty_targets(r, err)) != 0)
        goto out;
    if (m->ntblspc && !(mounts = calloc(m->ntblspc, sizeof(*mounts)))) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        goto out;
    }
    for (i = 0; i < m->ntblspc; i++) {
        mounts[i].prefix = r->ts[i].link;
        mounts[i].fd = r->ts[i].fd;
    }
    tree.fd = r->data.fd;
    tree.name = r->data.path;
    tree.mounts = mounts;
    tree.nmounts = m->ntblspc;
    bo.tree = &tree;
    bo.group_access = r->group_access;
    bo.problem = report_problem;
    ws_log_info("restoring backup %s (%" PRIu64 " bytes in %zu files) into \"%s\"", m->id, m->bytes,
                m->nfiles, r->data.path);
    if ((rc = make_dirs(r, &tree, err)) != 0 || (rc = split_files(r, &tree, 0, err)) != 0 ||
        (rc = run_restore_workers(r, repo, &bo, err)) != 0 ||
        (rc = split_files(r, &tree, 1, err)) != 0 || (rc = write_tablespace_map(r, err)) != 0 ||
        (rc = sync_fs_of(&r->data, err)) != 0)
        goto out;
    for (i = 0; i < m->ntblspc; i++)
        if ((rc = sync_fs_of(&r->ts[i], err)) != 0)
            goto out;
    if ((rc = write_recovery(r, err)) != 0)
        goto out;
    ws_log_info("backup %s restored into \"%s\"; start PostgreSQL to recover", m->id, r->data.path);
out:
    if (rc && r->started)
        ws_error_prefix(err,
                        "restore into \"%s\" failed, do not start it (run the restore again "
                        "with --force)",
                        r->data.path);
    free(mounts);
    return rc;
}

/*
 * Everything that reads the repository, run by the process that restores (as the target's owner
 * when root started it, so that no repository content is parsed with root's rights): the
 * catalog, the backup to restore, the checks of its manifest against the options, then the
 * restore itself.
 */
static int plan_and_restore(struct restore *r, struct ws_error *err)
{
    const struct ws_config *cfg = r->cfg;
    struct ws_repo repo = {0};
    struct ws_catalog cat = {0};
    const struct ws_catalog_backup *b = NULL;
    size_t i;
    int rc;

    if ((rc = ws_backup_repo_open(r->env, cfg, &repo, err)) != 0) {
        if (r->as_user[0])
            ws_error_prefix(err,
                            "the restore runs as user \"%s\" (the owner of \"%s\"; HOME=%s) and "
                            "could not open the repository",
                            r->as_user, r->data.path, r->as_home);
        goto out;
    }
    if ((rc = ws_catalog_load(&repo, r->kr, &cat, err)) != 0)
        goto out;
    if (!cat.has_identity) {
        rc = ws_error_set(err, WS_ERR_NOT_FOUND,
                          "the repository %s holds nothing for cluster \"%s\"", repo.st->location,
                          repo.cluster);
        goto out;
    }
    if ((rc = choose_backup(&cat, r->o, &b, err)) != 0)
        goto out;
    r->m = &b->m;
    r->group_access = manifest_group_access(r->m);
    if (r->m->ntblspc && !(r->ts = calloc(r->m->ntblspc, sizeof(*r->ts)))) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        goto out;
    }
    for (i = 0; i < r->m->ntblspc; i++)
        r->ts[i].fd = r->ts[i].ref.fd = -1;
    if ((rc = check_manifest_paths(r->m, err)) != 0 || (rc = check_tablespaces(r, err)) != 0 ||
        (rc = check_root_tablespaces(r, err)) != 0)
        goto out;
    rc = restore_into(r, &repo, err);
out:
    if (r->ts)
        for (i = 0; i < r->m->ntblspc; i++)
            close_rdir(&r->ts[i]);
    free(r->ts);
    r->ts = NULL;
    ws_catalog_free(&cat);
    if (repo.st)
        ws_repo_close(&repo);
    return rc;
}

/* ---- as root: the restore runs as the target's owner -------------------------------------- */

/* Whom the restore runs as: a user with their own group, supplementary groups and home. */
struct owner {
    uid_t uid;
    gid_t gid;
    gid_t *groups;
    int ngroups;
    char name[64];
    char home[PATH_MAX];
};

/*
 * Whose the data directory is: the owner of the data directory; of its parent when root owns it
 * (an empty root-owned data directory is then given to that user, see give_data_dir); of its
 * deepest existing ancestor when it does not exist yet. *give is set when the data directory
 * must be given to *uid.
 */
static int target_owner(struct restore *r, uid_t *uid, gid_t *gid, int *give, struct ws_error *err)
{
    struct rdir *d = &r->data;
    struct stat st, pst;
    int pfd;

    *give = 0;
    if (fstat(d->ref.fd, &st) != 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not stat \"%s\"", d->path);
    *uid = st.st_uid;
    *gid = st.st_gid;
    if (d->ref.missing[0] || st.st_uid != 0)
        return 0;
    if ((pfd = openat(d->ref.fd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0 ||
        fstat(pfd, &pst) != 0) {
        int e = errno;
        if (pfd >= 0)
            close(pfd);
        return ws_error_setsys(err, WS_ERR_IO, e, "could not stat the parent of \"%s\"", d->path);
    }
    close(pfd);
    if (pst.st_uid == 0)
        return 0;
    if (inspect_dir(d, err) != 0)
        return err->code;
    if (d->empty) {
        *uid = pst.st_uid;
        *gid = pst.st_gid;
        *give = 1; /* give_data_dir closes d->fd */
    } else {
        close(d->fd);
        d->fd = -1;
    }
    return 0;
}

/* The one write done as root: the empty root-owned data directory goes to its new owner. */
static int give_data_dir(struct restore *r, const struct owner *ow, struct ws_error *err)
{
    int rc = 0;

    if (fchown(r->data.fd, ow->uid, ow->gid) != 0)
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not chown \"%s\"", r->data.path);
    close(r->data.fd);
    r->data.fd = -1;
    return rc;
}

/*
 * Whom uid is, from the user database: its own group (not the directory's, which may be a group
 * the user is not in, root's say), supplementary groups and home. A uid without an entry gets
 * the directory's group, unless that is root's, and no supplementary group.
 */
static int owner_of(uid_t uid, gid_t dir_gid, const char *dir, struct owner *ow,
                    struct ws_error *err)
{
    struct passwd pw, *res = NULL;
    char buf[4096];
    int want = 0;

    ow->uid = uid;
    if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) != 0 || !res) {
        if (dir_gid == 0)
            return ws_error_set(err, WS_ERR_INVALID,
                                "\"%s\" belongs to user %u, who has no entry in the user "
                                "database, and to group 0: the restore runs with the owner's "
                                "group; give the directory the owner's group",
                                dir, (unsigned)uid);
        snprintf(ow->name, sizeof(ow->name), "%u", (unsigned)uid);
        snprintf(ow->home, sizeof(ow->home), "/");
        ow->gid = dir_gid;
        if (!(ow->groups = calloc(1, sizeof(*ow->groups))))
            return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        ow->groups[0] = dir_gid;
        ow->ngroups = 1;
        return 0;
    }
    ow->gid = res->pw_gid;
    snprintf(ow->name, sizeof(ow->name), "%s", res->pw_name);
    snprintf(ow->home, sizeof(ow->home), "%s", res->pw_dir);
    getgrouplist(res->pw_name, ow->gid, NULL, &want); /* only counts */
    if (want < 1)
        want = 1;
    if (!(ow->groups = calloc((size_t)want, sizeof(*ow->groups))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    ow->ngroups = want;
    if (getgrouplist(res->pw_name, ow->gid, ow->groups, &ow->ngroups) < 0) {
        ow->groups[0] = ow->gid;
        ow->ngroups = 1;
    }
    return 0;
}

static void child_main(struct restore *r, const struct owner *ow, pid_t parent, int report)
{
    struct ws_error cerr = {0};
    int rc;

    if (setgroups((size_t)ow->ngroups, ow->groups) != 0 ||
        setresgid(ow->gid, ow->gid, ow->gid) != 0 || setresuid(ow->uid, ow->uid, ow->uid) != 0)
        rc = ws_error_setsys(&cerr, WS_ERR_INTERNAL, errno,
                             "could not become user \"%s\" (%u, group %u) for the restore",
                             ow->name, (unsigned)ow->uid, (unsigned)ow->gid);
    /* changing uids reset dumpability to fs.suid_dumpable (1 would let the owner ptrace the
     * keyring and whatever root read out of this process): non-dumpable again, as cli.c made
     * it; and the parent-death signal, which the change cleared, is set only now */
    else if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        rc = ws_error_setsys(&cerr, WS_ERR_INTERNAL, errno,
                             "could not make the restore process "
                             "non-dumpable");
    else if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        rc = ws_error_set(&cerr, WS_ERR_INTERNAL, "the restore's parent process ended");
    else if (setenv("HOME", ow->home, 1) != 0 || setenv("USER", ow->name, 1) != 0 ||
             setenv("LOGNAME", ow->name, 1) != 0)
        rc = ws_error_set(&cerr, WS_ERR_INTERNAL, "out of memory");
    else if ((rc = plan_and_restore(r, &cerr)) != 0 &&
             (cerr.sys_errno == EACCES || cerr.sys_errno == EPERM))
        ws_error_prefix(&cerr, "restoring as user \"%s\" (the target's owner)", ow->name);
    /* always a whole record, code 0 for success: a child that ends without one failed */
    if (rc && !cerr.code)
        cerr.code = rc;
    if (!rc)
        memset(&cerr, 0, sizeof(cerr));
    if (ws_write_all(report, &cerr, sizeof(cerr)) != 0)
        rc = WS_ERR_INTERNAL;
    _exit(rc ? 1 : 0);
}

/* Runs plan_and_restore in a child process with the owner's user, group, supplementary groups
 * and HOME (USER, LOGNAME), and returns its error. */
static int restore_as(struct restore *r, const struct owner *ow, struct ws_error *err)
{
    int p[2] = {-1, -1}, status = 0, rc;
    pid_t pid, waited, self = getpid();
    ssize_t got = 0;

    snprintf(r->as_user, sizeof(r->as_user), "%s", ow->name);
    snprintf(r->as_home, sizeof(r->as_home), "%s", ow->home);
    if (pipe2(p, O_CLOEXEC) != 0)
        return ws_error_setsys(err, WS_ERR_INTERNAL, errno, "could not create a pipe");
    fflush(stdout);
    fflush(stderr);
    if ((pid = fork()) < 0) {
        rc = ws_error_setsys(err, WS_ERR_INTERNAL, errno, "could not start the restore process");
        goto out;
    }
    if (pid == 0) {
        close(p[0]);
        child_main(r, ow, self, p[1]);
    }
    close(p[1]);
    p[1] = -1;
    memset(err, 0, sizeof(*err));
    while ((size_t)got < sizeof(*err)) {
        ssize_t n = read(p[0], (char *)err + got, sizeof(*err) - (size_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += n;
    }
    /* (with SIGCHLD ignored, as a caller may leave it, waitpid fails with ECHILD: the record
     * alone then tells how the child ended) */
    while ((waited = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
        ;
    if ((size_t)got == sizeof(*err)) {
        err->msg[sizeof(err->msg) - 1] = '\0';
        rc = err->code;
    } else {
        char how[64] = "without saying how it ended";
        if (waited == pid)
            snprintf(how, sizeof(how), "%s %d", WIFSIGNALED(status) ? "by signal" : "with status",
                     WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        memset(err, 0, sizeof(*err));
        rc = ws_error_set(err, WS_ERR_INTERNAL,
                          "restore into \"%s\" failed, do not start it (run the restore again "
                          "with --force): the restore process (user \"%s\") ended %s",
                          r->data.path, ow->name, how);
    }
out:
    if (p[0] >= 0)
        close(p[0]);
    if (p[1] >= 0)
        close(p[1]);
    return rc;
}

/*
 * As root, only what needs root happens here: the data directory is looked up and its owner
 * decided; the key is loaded (its file may be root's: the keyring goes to the child in memory);
 * restore_command is built (from the paths of wal-fetch and of the configuration in use).
 * Everything that reads the repository happens in plan_and_restore, in the child.
 */
int ws_backup_restore(const struct ws_config *cfg, const struct ws_backup_env *env,
                      const struct ws_restore_opts *o, struct ws_error *err)
{
    struct ws_keyring kr = {0};
    struct restore r = {0};
    struct owner ow = {0};
    uid_t uid = 0;
    gid_t gid = 0;
    int rc, give = 0;

    r.cfg = cfg;
    r.env = env;
    r.o = o;
    r.kr = &kr;
    r.data.fd = -1;
    r.data.ref.fd = -1;
    if ((rc = check_target(o, err)) != 0 ||
        (rc = absolute_path(o->pgdata, r.pgdata, sizeof(r.pgdata), err)) != 0)
        goto out;
    if (strcmp(r.pgdata, "/") == 0) {
        rc = ws_error_set(err, WS_ERR_USAGE, "--pgdata must not be the root directory");
        goto out;
    }
    r.data.path = r.pgdata;
    if ((rc = ws_keyring_load(cfg, &kr, err)) != 0 || (rc = make_restore_command(&r, err)) != 0 ||
        (rc = ws_dir_lookup(o->pgdata, &r.data.ref, err)) != 0)
        goto out;
    if (geteuid() == 0 && (rc = target_owner(&r, &uid, &gid, &give, err)) != 0)
        goto out;
    if (geteuid() == 0 && uid != 0) {
        if ((rc = owner_of(uid, gid, r.pgdata, &ow, err)) != 0 ||
            (give && (rc = give_data_dir(&r, &ow, err)) != 0))
            goto out;
        rc = restore_as(&r, &ow, err);
    } else {
        rc = plan_and_restore(&r, err);
    }
out:
    close_rdir(&r.data);
    free(ow.groups);
    ws_keyring_wipe(&kr);
    return rc;
}
