/*
 * ops/drill.c - `basebackup drill`: its steps, its work directory, the user it runs as, and the
 * report. The server and the checks are in drill_server.c; the reasons in docs/design/drill.md.
 *
 * Where: <spool_dir>/walsafe-drill.<cluster>.<random> when spool_dir names an existing directory
 * (the operator's local working area, on disk, sized for WAL), else under $TMPDIR, else /tmp. The
 * directory is made 0700 with mkdirat from a descriptor of its parent, never through a link of
 * another user, and removed through descriptors (base/fs.h ws_dir_clear).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backup/pool.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/proc.h"
#include "base/user.h"
#include "base/util.h"
#include "io/key.h"
#include "ops/drill_int.h"
#include "pg/wal.h"

static const char *const check_names[CK_N] = {"restore", "recovery", "wal_end", "connect",
                                              "amcheck"};
static const char *const state_names[] = {"not run", "passed", "FAILED", "skipped"};

/* ---- the user: root runs the drill as the server's user ------------------------------------ */

/* The owner of cfg->pgdata when it exists and is not root (the user who runs this cluster's
 * server and its restore_command), else "postgres". */
static int choose_user(const struct ws_config *cfg, struct ws_user *u, struct ws_error *err)
{
    struct stat st;
    int rc;

    if (cfg->pgdata && stat(cfg->pgdata, &st) == 0 && st.st_uid != 0)
        rc = ws_user_lookup(st.st_uid, NULL, u, err);
    else
        rc = ws_user_lookup(0, "postgres", u, err);
    if (rc == WS_ERR_NOT_FOUND)
        return ws_error_set(err, WS_ERR_CONFIG,
                            "the drill runs PostgreSQL, which refuses to run as root, and found no "
                            "user to run it as: neither pgdata (\"%s\") owned by a user other "
                            "than root nor a user \"postgres\"",
                            cfg->pgdata ? cfg->pgdata : "");
    return rc;
}

/* ---- a step in a child process ------------------------------------------------------------- */

struct child_out {
    int rc;
    struct ws_error err;
    struct ws_drill_result res;
};
typedef int (*child_fn)(void *arg, pid_t parent, struct ws_drill_result *res, struct ws_error *err);

struct child_call {
    child_fn fn;
    void *arg;
    int default_signals;
};

static void child_body(void *arg, pid_t parent, void *rec)
{
    const struct child_call *c = arg;
    struct child_out *co = rec;

    if (c->default_signals) {
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
    }
    co->rc = c->fn(c->arg, parent, &co->res, &co->err);
}

/*
 * Runs fn in a child process and returns its result. default_signals: the child dies of SIGINT
 * and SIGTERM and of the parent's death (a restore); else it keeps the caller's handlers. While
 * waiting, a set stop flag sends the child SIGTERM (once a second).
 */
static int in_child(child_fn fn, void *arg, int default_signals, const volatile sig_atomic_t *stop,
                    struct ws_drill_result *res, struct ws_error *err)
{
    struct child_call call = {fn, arg, default_signals};
    struct child_out co;
    struct ws_proc p;
    int rc;

    memset(&co, 0, sizeof(co));
    if (res)
        co.res = *res;
    if ((rc = ws_proc_start(&p, default_signals ? "restore process" : "drill process", child_body,
                            &call, &co, sizeof(co), err)) != 0 ||
        (rc = ws_proc_finish(&p, &co, sizeof(co), stop, err)) != 0)
        return rc;
    co.err.msg[sizeof(co.err.msg) - 1] = '\0';
    *err = co.err;
    if (res)
        *res = co.res;
    return co.rc;
}

/* ---- the work directory --------------------------------------------------------------------- */

struct workdir {
    int base_fd, fd;
    char name[96];
};

/* Opens base and makes walsafe-drill.<cluster>.<random> in it, 0700; *made_errno: mkdirat's errno
 * when that failed. */
static int workdir_try(struct drill *d, const char *base, struct workdir *w, int *made_errno,
                       struct ws_error *err)
{
    struct ws_dir_ref ref = {-1, ""};
    unsigned char rnd[6];
    char hex[13];
    int rc, i;

    *made_errno = 0;
    if ((rc = ws_dir_lookup(base, &ref, err)) != 0)
        goto out;
    if (ref.missing[0]) {
        rc = ws_error_set(err, WS_ERR_CONFIG, "directory \"%s\" does not exist", base);
        goto out;
    }
    if ((w->base_fd = openat(ref.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not open directory \"%s\"", base);
        goto out;
    }
    for (i = 0; i < 10; i++) {
        if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
            rc = ws_error_setsys(err, WS_ERR_INTERNAL, errno, "getrandom failed");
            goto out;
        }
        ws_hex(rnd, sizeof(rnd), hex);
        snprintf(w->name, sizeof(w->name), "walsafe-drill.%s.%s", d->cfg->cluster, hex);
        if (mkdirat(w->base_fd, w->name, 0700) == 0)
            break;
        if (errno != EEXIST || i == 9) {
            *made_errno = errno;
            rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not create a directory in \"%s\"",
                                 base);
            w->name[0] = '\0';
            close(w->base_fd);
            w->base_fd = -1;
            goto out;
        }
    }
    snprintf(d->dir, sizeof(d->dir), "%s/%s", strcmp(base, "/") ? base : "", w->name);
    snprintf(d->data, sizeof(d->data), "%s/data", d->dir);
out:
    ws_dir_ref_close(&ref);
    return rc;
}

/* Whether the socket's path under a work directory in base fits in sun_path (108 bytes). */
static int socket_fits(const struct drill *d, const char *base)
{
    size_t n = strlen(base) + sizeof("/walsafe-drill.") + strlen(d->cfg->cluster) +
               sizeof(".0123456789ab") + sizeof("/.s.PGSQL.5432.lock");

    return n <= 108 && n <= sizeof(d->dir);
}

/*
 * Creates the work directory (0700; given to ow when not NULL) and fills d->dir and d->data: in
 * spool_dir when it is an existing directory (falling back, with a WARNING, when this user may
 * not write there), else in $TMPDIR, else in /tmp.
 */
static int workdir_make(struct drill *d, const struct ws_user *ow, struct workdir *w,
                        struct ws_error *err)
{
    const char *tmp = getenv("TMPDIR"), *base;
    const char *spool = d->cfg->spool_dir;
    struct stat st;
    int rc, e;

    base = tmp && tmp[0] == '/' ? tmp : "/tmp";
    d->where = tmp && tmp[0] == '/' ? "TMPDIR" : "/tmp";
    if (spool && spool[0] == '/' && stat(spool, &st) == 0 && S_ISDIR(st.st_mode)) {
        if (socket_fits(d, spool)) {
            d->where = "spool_dir";
            rc = workdir_try(d, spool, w, &e, err);
            if (rc == 0 || (e != EACCES && e != EPERM && e != EROFS))
                goto made;
            ws_log_warning("%s; the drill works under %s instead", err->msg, base);
            d->where = tmp && tmp[0] == '/' ? "TMPDIR" : "/tmp";
        }
    }
    /* the socket's path must fit in sun_path (107 bytes) */
    if (!socket_fits(d, base))
        return ws_error_set(err, WS_ERR_CONFIG,
                            "the drill's socket path would be too long under \"%s\": choose a "
                            "shorter spool_dir or TMPDIR",
                            base);
    rc = workdir_try(d, base, w, &e, err);
made:
    if (rc != 0)
        return rc;
    w->fd = openat(w->base_fd, w->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (w->fd < 0 || fchmod(w->fd, 0700) != 0 || (ow && fchown(w->fd, ow->uid, ow->gid) != 0))
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not set up directory \"%s\"", d->dir);
    return 0;
}

static int workdir_remove(struct drill *d, struct workdir *w, struct ws_error *err)
{
    int rc = 0;

    if (w->fd >= 0 && (rc = ws_dir_clear(w->fd, d->dir, err)) == 0 &&
        unlinkat(w->base_fd, w->name, AT_REMOVEDIR) != 0)
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not remove \"%s\"", d->dir);
    return rc;
}

/* ---- the report ----------------------------------------------------------------------------- */

static int first_failed(const struct drill *d)
{
    int i;

    for (i = 0; i < CK_N; i++)
        if (d->checks[i].state == CHECK_FAILED)
            return i;
    return -1;
}

static void wal_replayed(const struct drill *d, uint64_t *segs, uint64_t *bytes)
{
    uint32_t sz = d->b->m.wal_segment_size;

    *segs = *bytes = 0;
    if (!d->end_lsn || d->end_lsn < d->b->m.start_lsn || !sz)
        return;
    *bytes = d->end_lsn - d->b->m.start_lsn;
    *segs =
        ws_wal_lsn_to_segno(d->end_lsn - 1, sz) - ws_wal_lsn_to_segno(d->b->m.start_lsn, sz) + 1;
}

static void report_json(const struct drill *d, FILE *f)
{
    uint64_t segs, bytes;
    char a[24], b[24];
    int i;

    wal_replayed(d, &segs, &bytes);
    ws_wal_format_lsn(a, d->b->m.start_lsn);
    ws_wal_format_lsn(b, d->end_lsn);
    fprintf(f, "{\"cluster\": ");
    ws_json_string(f, d->cfg->cluster);
    fprintf(f, ", \"backup\": ");
    ws_json_string(f, d->b->id);
    fprintf(f, ", \"work_directory\": ");
    ws_json_string(f, d->dir);
    fprintf(f, ", \"kept\": %s, \"bindir\": ", d->o->keep ? "true" : "false");
    ws_json_string(f, d->bindir);
    fprintf(f,
            ", \"wal_replayed\": {\"segments\": %" PRIu64 ", \"bytes\": %" PRIu64
            ", \"from_lsn\": \"%s\", \"to_lsn\": \"%s\"}",
            segs, bytes, a, d->end_lsn ? b : "");
    fprintf(f, ", \"restore_seconds\": %.3f, \"recover_seconds\": %.3f, \"checks\": [",
            d->t_restore, d->t_recover);
    for (i = 0; i < CK_N; i++) {
        fprintf(f, "%s{\"name\": \"%s\", \"result\": \"%s\", \"detail\": ", i ? ", " : "",
                check_names[i],
                d->checks[i].state == CHECK_FAILED ? "failed" : state_names[d->checks[i].state]);
        ws_json_string(f, d->checks[i].detail);
        fprintf(f, "}");
    }
    fprintf(f, "], \"result\": \"%s\"}\n", first_failed(d) < 0 ? "passed" : "failed");
}

static void report_text(const struct drill *d, FILE *f)
{
    uint64_t segs, bytes;
    char a[24], b[24], sz[32], line[900];
    int i, bad = first_failed(d);

    wal_replayed(d, &segs, &bytes);
    ws_wal_format_lsn(a, d->b->m.start_lsn);
    ws_wal_format_lsn(b, d->end_lsn);
    ws_format_bytes(bytes, sz, sizeof(sz));
    fprintf(f, "drill of backup %s (cluster %s)\n", d->b->id, d->cfg->cluster);
    fprintf(f, "  work directory  %s (under %s; %s)\n", d->dir, d->where,
            d->o->keep ? "kept, server stopped" : "removed");
    fprintf(f, "  server          %s/postgres\n", d->bindir);
    if (d->end_lsn)
        fprintf(f, "  WAL replayed    %" PRIu64 " segments, %s (%s .. %s)\n", segs, sz, a, b);
    fprintf(f, "  restore         %.1f s\n  recovery        %.1f s\n", d->t_restore, d->t_recover);
    for (i = 0; i < CK_N; i++) {
        ws_log_escape(d->checks[i].detail, line, sizeof(line));
        fprintf(f, "  check %-9s %-8s %s\n", check_names[i], state_names[d->checks[i].state], line);
    }
    fprintf(f, "result: %s%s%s\n", bad < 0 ? "passed" : "FAILED (", bad < 0 ? "" : check_names[bad],
            bad < 0 ? "" : ")");
}

/* ---- the steps ------------------------------------------------------------------------------ */

/* The catalog, and the backup: the one named (it must be complete; else why it is not) or the
 * newest complete one. */
static int choose_backup(struct drill *d, struct ws_error *err)
{
    struct ws_keyring kr = {0};
    struct ws_repo repo = {0};
    char why[400];
    int rc;

    if ((rc = ws_keyring_load(d->cfg, &kr, err)) != 0 ||
        (rc = ws_backup_repo_open(d->env, d->cfg, &repo, err)) != 0 ||
        (rc = ws_catalog_load(&repo, &kr, &d->cat, err)) != 0)
        goto out;
    if (d->o->backup && strcmp(d->o->backup, "latest") != 0) {
        if (!(d->b = ws_catalog_find(&d->cat, d->o->backup)))
            rc = ws_error_set(err, WS_ERR_NOT_FOUND, "backup %s is not in the repository",
                              d->o->backup);
        else if (d->b->status != WS_BACKUP_COMPLETE) {
            ws_catalog_why(d->b, why, sizeof(why));
            rc = ws_error_set(err, WS_ERR_INVALID, "backup %s is %s: %s", d->b->id,
                              ws_backup_status_name(d->b->status), why);
            d->b = NULL;
        }
    } else if (!(d->b = ws_catalog_latest(&d->cat))) {
        rc = ws_error_set(err, WS_ERR_NOT_FOUND,
                          "the repository holds no complete backup of cluster \"%s\"",
                          d->cfg->cluster);
    }
out:
    if (repo.st)
        ws_repo_close(&repo);
    ws_keyring_wipe(&kr);
    return rc;
}

static int restore_step(void *arg, pid_t parent, struct ws_drill_result *res, struct ws_error *err)
{
    struct drill *d = arg;
    struct ws_restore_opts ro = {0};

    (void)parent;
    (void)res;
    ro.pgdata = d->data;
    ro.backup = d->b->id;
    ro.config_path = d->o->config_path;
    ro.quiet = 1; /* the drill's report is its output: restore's summary would break --json */
    return ws_backup_restore(d->cfg, d->env, &ro, err);
}

/* Restore, server, checks, stop: each check after a failed one is skipped. */
static void run_checks(struct drill *d)
{
    struct ws_error e = {0};
    double t0 = ws_now_monotonic();
    int i, ok;

    ok = in_child(restore_step, d, 1, d->o->stop, NULL, &e) == 0 && !ws_drill_stopping(d);
    d->t_restore = ws_now_monotonic() - t0;
    d->checks[CK_RESTORE].state = ok ? CHECK_PASSED : CHECK_FAILED;
    snprintf(d->checks[CK_RESTORE].detail, sizeof(d->checks[0].detail), "%s",
             ok                     ? "restored"
             : ws_drill_stopping(d) ? "interrupted"
                                    : e.msg);
    if (ok && ws_drill_server_start(d, &e) != 0) {
        d->checks[CK_RECOVERY].state = CHECK_FAILED;
        snprintf(d->checks[CK_RECOVERY].detail, sizeof(d->checks[0].detail), "%s", e.msg);
        ok = 0;
    }
    ok = ok && ws_drill_wait_recovery(d) == 0;
    ok = ok && ws_drill_check_wal_end(d) == 0;
    ok = ok && ws_drill_check_connect(d) == 0;
    ok = ok && ws_drill_check_amcheck(d) == 0;
    ws_drill_server_stop(d);
    for (i = 0; i < CK_N; i++)
        if (d->checks[i].state == CHECK_NOT_RUN) {
            d->checks[i].state = CHECK_SKIPPED;
            snprintf(d->checks[i].detail, sizeof(d->checks[i].detail), "after a failed check");
        }
}

/* Everything that reads the repository or runs PostgreSQL, as the drill's user. */
static int drill_body(struct drill *d, struct ws_drill_result *res, struct ws_error *err)
{
    int rc, bad;

    if ((rc = choose_backup(d, err)) != 0)
        goto out;
    snprintf(res->id, sizeof(res->id), "%s", d->b->id);
    res->bytes = d->b->m.bytes;
    if ((rc = ws_drill_find_bindir(d, err)) != 0)
        goto out;
    ws_log_info("drill: backup %s into \"%s\" with %s", d->b->id, d->dir, d->bindir);
    run_checks(d);
    (d->o->json ? report_json : report_text)(d, stdout);
    fflush(stdout);
    if ((bad = first_failed(d)) >= 0) {
        snprintf(res->failed_check, sizeof(res->failed_check), "%s", check_names[bad]);
        rc = ws_error_set(err, WS_ERR_INVALID, "drill of backup %s failed: check %s: %s", d->b->id,
                          check_names[bad], d->checks[bad].detail);
    }
    if (!rc && ws_drill_stopping(d))
        rc = ws_error_set(err, WS_ERR_INTERNAL, "drill of backup %s interrupted", d->b->id);
out:
    ws_catalog_free(&d->cat);
    return rc;
}

struct as_user {
    struct drill *d;
    const struct ws_user *ow;
};

static int body_as_user(void *arg, pid_t parent, struct ws_drill_result *res, struct ws_error *err)
{
    struct as_user *a = arg;
    int rc;

    /* SIGTERM when root's parent dies: the drill then stops its server and returns */
    if ((rc = ws_user_become(a->ow, parent, SIGTERM, "the drill", err)) != 0)
        return rc;
    return drill_body(a->d, res, err);
}

int ws_drill_run(const struct ws_config *cfg, const struct ws_backup_env *env,
                 const struct ws_drill_opts *o, struct ws_drill_result *res, struct ws_error *err)
{
    struct drill d;
    struct ws_user ow = {0};
    struct workdir w = {-1, -1, ""};
    struct ws_drill_result local = {0};
    struct ws_error rerr = {0};
    double t0 = ws_now_monotonic();
    int rc, root = geteuid() == 0;

    memset(&d, 0, sizeof(d));
    d.cfg = cfg;
    d.env = env;
    d.o = o;
    if (!res)
        res = &local;
    memset(res, 0, sizeof(*res));
    if (root) {
        if ((rc = choose_user(cfg, &ow, err)) != 0)
            goto out;
    } else {
        struct passwd *pw = getpwuid(geteuid());
        snprintf(ow.name, sizeof(ow.name), "%s", pw ? pw->pw_name : "postgres");
    }
    snprintf(d.user, sizeof(d.user), "%s", ow.name);
    if ((rc = workdir_make(&d, root ? &ow : NULL, &w, err)) != 0)
        goto out;
    if (root) {
        struct as_user a = {&d, &ow};
        rc = in_child(body_as_user, &a, 0, o->stop, res, err);
    } else {
        rc = drill_body(&d, res, err);
    }
out:
    if (w.name[0] && !o->keep && workdir_remove(&d, &w, &rerr) != 0) {
        ws_log_error(&rerr);
        if (!rc)
            rc = ws_error_set(err, rerr.code, "%s", rerr.msg);
    } else if (w.name[0] && o->keep) {
        ws_log_info("drill: kept \"%s\"", d.dir);
    }
    ws_user_free(&ow);
    if (w.fd >= 0)
        close(w.fd);
    if (w.base_fd >= 0)
        close(w.base_fd);
    res->seconds = ws_now_monotonic() - t0;
    return rc;
}
