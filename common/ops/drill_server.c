/*
 * ops/drill_server.c - the PostgreSQL server of a drill and the checks that talk to it.
 *
 * The server is `postgres` from pg_bindir when it is set, else the backup's major version from
 * /usr/lib/postgresql/<major>/bin (Debian), /usr/pgsql-<major>/bin (PGDG packages), else from
 * PATH (pg/bindir.h).
 * It runs as a child of the drill with its settings on the command line, which wins over
 * everything in the restored postgresql.conf and postgresql.auto.conf: no TCP listener, a socket
 * in the work directory (0700), trust for that socket only (the directory lets in no one but the
 * drill's user and root), archiving off, hot_standby off (no connection before recovery ends, so
 * no parameter of the primary needs matching), no external PID file, no log collector.
 * Clients (psql, pg_amcheck) come from the same directory and run as the drill's user; their
 * output is read through pipes, never with a shell.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/log.h"
#include "base/util.h"
#include "ops/drill_int.h"
#include "pg/bindir.h"
#include "pg/timeline.h"
#include "pg/wal.h"

int ws_drill_stopping(const struct drill *d)
{
    return d->o->stop && *d->o->stop;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int ws_drill_find_bindir(struct drill *d, struct ws_error *err)
{
    int major = d->b->m.pg_version >= 100000 ? d->b->m.pg_version / 10000 : d->b->m.pg_version;
    char debian[64], pgdg[64];
    const char *const dirs[] = {debian, pgdg, NULL};

    snprintf(debian, sizeof(debian), "/usr/lib/postgresql/%d/bin", major);
    snprintf(pgdg, sizeof(pgdg), "/usr/pgsql-%d/bin", major);
    if (ws_pg_bindir_find(d->cfg->pg_bindir, dirs, "postgres", d->bindir, sizeof(d->bindir), err) !=
        0)
        return ws_error_prefix(err, "no PostgreSQL %d server for backup %s", major, d->b->id);
    return 0;
}

/* ---- child processes ------------------------------------------------------------------------ */

/* In a child before exec: its own session (a terminal's ^C goes to the drill, which stops the
 * server itself), default signals, killed with the drill, in the work directory. */
static void child_setup(const struct drill *d, int sig_on_parent_death)
{
    setsid();
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    prctl(PR_SET_PDEATHSIG, sig_on_parent_death);
    if (chdir(d->dir) != 0)
        _exit(127);
}

/* Appends what fd has to buf (always NUL-terminated, the rest dropped); 0 at EOF. */
static int drain(int fd, char *buf, size_t sz, size_t *len)
{
    char tmp[4096];
    ssize_t n = read(fd, tmp, sizeof(tmp));

    if (n < 0)
        return errno == EINTR || errno == EAGAIN ? 1 : 0;
    if (n == 0)
        return 0;
    if (*len + 1 < sz) {
        size_t take = (size_t)n < sz - 1 - *len ? (size_t)n : sz - 1 - *len;
        memcpy(buf + *len, tmp, take);
        *len += take;
        buf[*len] = '\0';
    }
    return 1;
}

/*
 * Runs a client program of bindir (argv[0] is its name) against the drill's server, as the
 * drill's user, with PGDATABASE=db (a name is never taken for a connection string this way) and a
 * 10-second connect timeout. Its stdout and stderr go to out and errout (NUL-terminated,
 * truncated). Returns its exit status, -1 when it could not run or died by a signal, -2 when the
 * drill was asked to stop (the client is then ended).
 */
static int run_client(struct drill *d, const char *const *argv, const char *db, char *out,
                      size_t outsz, char *errout, size_t errsz)
{
    int po[2] = {-1, -1}, pe[2] = {-1, -1}, status = 0, open_fds = 2, stopped = 0;
    size_t lo = 0, le = 0;
    char prog[PATH_MAX];
    const char *args[32];
    size_t n;
    pid_t pid;

    out[0] = errout[0] = '\0';
    /* argv[0] as the full path: the programs find their own installation from it */
    for (n = 0; argv[n] && n + 1 < sizeof(args) / sizeof(args[0]); n++)
        args[n] = argv[n];
    args[n] = NULL;
    args[0] = prog;
    if (ws_path_join(prog, sizeof(prog), d->bindir, argv[0]) != 0 || pipe2(po, O_CLOEXEC) != 0)
        return -1;
    if (pipe2(pe, O_CLOEXEC) != 0) {
        close(po[0]);
        close(po[1]);
        return -1;
    }
    if ((pid = fork()) == 0) {
        child_setup(d, SIGKILL);
        if (dup2(po[1], 1) < 0 || dup2(pe[1], 2) < 0 || setenv("PGCONNECT_TIMEOUT", "10", 1) ||
            (db && setenv("PGDATABASE", db, 1)))
            _exit(127);
        execv(prog, (char *const *)args);
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    while (pid > 0 && open_fds > 0) {
        struct pollfd pf[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
        if (ws_drill_stopping(d)) { /* again each time: a signal may beat its handlers */
            kill(pid, SIGTERM);
            stopped = 1;
        }
        if (poll(pf, 2, 250) <= 0)
            continue;
        if (pf[0].fd >= 0 && pf[0].revents && !drain(po[0], out, outsz, &lo)) {
            close(po[0]);
            po[0] = -1;
            open_fds--;
        }
        if (pf[1].fd >= 0 && pf[1].revents && !drain(pe[0], errout, errsz, &le)) {
            close(pe[0]);
            pe[0] = -1;
            open_fds--;
        }
    }
    if (po[0] >= 0)
        close(po[0]);
    if (pe[0] >= 0)
        close(pe[0]);
    if (pid < 0)
        return -1;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (stopped)
        return -2;
    return WIFEXITED(status) && WEXITSTATUS(status) != 127 ? WEXITSTATUS(status) : -1;
}

/* The first line of s into out, with "what failed" when s is empty. */
static void first_line(const char *s, const char *fallback, char *out, size_t outsz)
{
    size_t n = strcspn(s, "\n");

    while (n > 0 && (s[n - 1] == '\r' || s[n - 1] == ' '))
        n--;
    if (n == 0)
        snprintf(out, outsz, "%s", fallback);
    else
        snprintf(out, outsz, "%.*s", (int)(n < 400 ? n : 400), s);
}

/* psql -c query on database db; 0 and its output (unaligned, tuples only, trailing newline
 * removed), else -1 with the reason in why. */
static int psql(struct drill *d, const char *db, const char *query, char *out, size_t outsz,
                char *why, size_t whysz)
{
    char port[16], errout[2048];
    const char *argv[] = {"psql", "-X",   "-A", "-t", "-q", "-v",      "ON_ERROR_STOP=1",
                          "-h",   d->dir, "-p", port, "-U", d->dbuser, "-c",
                          query,  NULL};
    int rc;
    size_t n;

    snprintf(port, sizeof(port), "%d", WS_DRILL_PORT);
    rc = run_client(d, argv, db, out, outsz, errout, sizeof(errout));
    if (rc == 0) {
        n = strlen(out);
        while (n > 0 && out[n - 1] == '\n')
            out[--n] = '\0';
        return 0;
    }
    first_line(errout, rc == -2 ? "interrupted" : "psql failed without a message", why, whysz);
    return -1;
}

/* ---- the server ----------------------------------------------------------------------------- */

/* The drill's own files beside the data directory: the settings file that includes the restored
 * postgresql.conf when there is one, pg_hba.conf (trust, socket only), an empty pg_ident.conf. */
static int write_settings(struct drill *d, struct ws_error *err)
{
    static const char *const names[] = {"drill.conf", "pg_hba.conf", "pg_ident.conf"};
    char path[PATH_MAX], text[PATH_MAX * 2 + 64];
    size_t i, k = 0;
    const char *s;
    int fd;

    k += (size_t)snprintf(text, sizeof(text), "include_if_exists '");
    for (s = d->data; *s && k + 3 < sizeof(text); s++) {
        if (*s == '\'' || *s == '\\')
            text[k++] = *s;
        text[k++] = *s;
    }
    snprintf(text + k, sizeof(text) - k, "/postgresql.conf'\n");
    for (i = 0; i < 3; i++) {
        const char *body = i == 0 ? text : i == 1 ? "local all all trust\n" : "";
        if (ws_path_join(path, sizeof(path), d->dir, names[i]) != 0)
            return ws_error_set(err, WS_ERR_CONFIG, "path too long: \"%s\"", d->dir);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 || ws_write_all(fd, body, strlen(body)) != 0) {
            int e = errno;
            if (fd >= 0)
                close(fd);
            return ws_error_setsys(err, WS_ERR_IO, e, "could not write \"%s\"", path);
        }
        close(fd);
    }
    return 0;
}

int ws_drill_server_start(struct drill *d, struct ws_error *err)
{
    char prog[PATH_MAX], logp[PATH_MAX], set[6][PATH_MAX + 32];
    const char *argv[64];
    static const char *const fixed[] = {
        "listen_addresses=",          "unix_socket_permissions=0700",
        "archive_mode=off",           "archive_command=",
        "archive_library=",           "hot_standby=off",
        "external_pid_file=",         "ssl=off",
        "logging_collector=off",      "log_destination=stderr",
        "synchronous_standby_names=", "recovery_end_command=",
        "shared_buffers=128MB",       "huge_pages=try",
        "cluster_name=walsafe-drill", "default_transaction_read_only=off",
    };
    size_t n = 0, i;
    int fd, rc;

    if ((rc = write_settings(d, err)) != 0)
        return rc;
    if (ws_path_join(prog, sizeof(prog), d->bindir, "postgres") != 0 ||
        ws_path_join(logp, sizeof(logp), d->dir, "server.log") != 0)
        return ws_error_set(err, WS_ERR_CONFIG, "path too long: \"%s\"", d->bindir);
    snprintf(set[0], sizeof(set[0]), "config_file=%s/drill.conf", d->dir);
    snprintf(set[1], sizeof(set[1]), "data_directory=%s", d->data);
    snprintf(set[2], sizeof(set[2]), "hba_file=%s/pg_hba.conf", d->dir);
    snprintf(set[3], sizeof(set[3]), "ident_file=%s/pg_ident.conf", d->dir);
    snprintf(set[4], sizeof(set[4]), "unix_socket_directories=%s", d->dir);
    snprintf(set[5], sizeof(set[5]), "port=%d", WS_DRILL_PORT);
    argv[n++] = "postgres";
    argv[n++] = "-D";
    argv[n++] = d->data;
    for (i = 0; i < 6; i++) {
        argv[n++] = "-c";
        argv[n++] = set[i];
    }
    for (i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        argv[n++] = "-c";
        argv[n++] = fixed[i];
    }
    argv[n] = NULL;
    fd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not create \"%s\"", logp);
    fflush(stdout);
    fflush(stderr);
    if ((d->server = fork()) == 0) {
        int null = open("/dev/null", O_RDONLY);
        /* the drill stops the server itself; SIGQUIT (immediate shutdown) if the drill dies */
        child_setup(d, SIGQUIT);
        if (null < 0 || dup2(null, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(127);
        execv(prog, (char *const *)argv);
        _exit(127);
    }
    close(fd);
    if (d->server < 0) {
        d->server = 0;
        return ws_error_setsys(err, WS_ERR_INTERNAL, errno, "could not start \"%s\"", prog);
    }
    ws_log_info("drill: started %s (pid %d) on \"%s\"", prog, (int)d->server, d->data);
    return 0;
}

/* The last line of the server log that says FATAL or PANIC (else its last line), into out. */
static void server_log_reason(const struct drill *d, char *out, size_t outsz)
{
    char path[PATH_MAX], line[1024];
    FILE *f;

    snprintf(out, outsz, "no message in the server log");
    if (ws_path_join(path, sizeof(path), d->dir, "server.log") != 0 || !(f = fopen(path, "re")))
        return;
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        if (strstr(line, "FATAL:") || strstr(line, "PANIC:") || strstr(line, "ERROR:"))
            snprintf(out, outsz, "%.500s", line);
    }
    fclose(f);
}

static void set_check(struct drill *d, int which, int state, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void set_check(struct drill *d, int which, int state, const char *fmt, ...)
{
    va_list ap;

    d->checks[which].state = state;
    va_start(ap, fmt);
    vsnprintf(d->checks[which].detail, sizeof(d->checks[which].detail), fmt, ap);
    va_end(ap);
}

/* 1 while the postmaster runs; reaps it when it has exited. */
static int server_alive(struct drill *d, int *status)
{
    pid_t w;

    if (d->server <= 0)
        return 0;
    while ((w = waitpid(d->server, status, WNOHANG)) < 0 && errno == EINTR)
        ;
    if (w == 0)
        return 1;
    d->server = 0;
    return 0;
}

/* Until the server accepts connections as one of the candidate roles (the drill's user, then
 * postgres: the bootstrap superuser initdb names after its user), out of recovery. */
int ws_drill_wait_recovery(struct drill *d)
{
    const char *cands[] = {d->user, "postgres"};
    char out[256], why[512] = "", reason[600];
    double t0 = ws_now_monotonic();
    int status = 0, tries = 0;
    size_t c = 0;

    snprintf(d->dbuser, sizeof(d->dbuser), "%s", cands[0]);
    for (;;) {
        if (ws_drill_stopping(d)) {
            set_check(d, CK_RECOVERY, CHECK_FAILED, "interrupted");
            return -1;
        }
        if (!server_alive(d, &status)) {
            server_log_reason(d, reason, sizeof(reason));
            set_check(d, CK_RECOVERY, CHECK_FAILED, "the server stopped (%s %d): %s",
                      WIFSIGNALED(status) ? "signal" : "exit status",
                      WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), reason);
            return -1;
        }
        if (psql(d, "template1", "select pg_is_in_recovery()", out, sizeof(out), why,
                 sizeof(why)) == 0 &&
            strcmp(out, "f") == 0)
            break;
        if (strstr(why, "role \"") && strstr(why, "does not exist") && c + 1 < 2)
            snprintf(d->dbuser, sizeof(d->dbuser), "%s", cands[++c]);
        sleep_ms(++tries < 40 ? 250 : 1000);
    }
    d->t_recover = ws_now_monotonic() - t0;
    set_check(d, CK_RECOVERY, CHECK_PASSED, "recovered and promoted in %.1f s; connected as %s",
              d->t_recover, d->dbuser);
    return 0;
}

/* ---- the checks ----------------------------------------------------------------------------- */

int ws_drill_wal_verdict(const struct ws_catalog *cat, uint32_t seg_size, uint32_t tli,
                         uint64_t end_lsn, char *out, size_t outsz)
{
    char endname[WS_WAL_NAME_LEN + 1], newest[WS_WAL_NAME_LEN + 1], next[WS_WAL_NAME_LEN + 1];
    char lsn[24];
    uint64_t endseg = ws_wal_lsn_to_segno(end_lsn ? end_lsn - 1 : 0, seg_size);
    const struct ws_wal_seg *last;

    ws_wal_format_lsn(lsn, end_lsn);
    ws_wal_format_name(endname, tli, endseg, seg_size);
    if (cat->nsegs == 0) {
        snprintf(out, outsz, "recovery ended at %s in %s; the repository holds no WAL segment", lsn,
                 endname);
        return -1;
    }
    last = &cat->segs[cat->nsegs - 1];
    ws_wal_format_name(newest, last->tli, last->segno, seg_size);
    if (tli == last->tli && endseg >= last->segno) {
        snprintf(out, outsz, "recovery ended at %s in %s, the newest archived segment%s", lsn,
                 endname, endseg > last->segno ? " (or beyond it: archived since)" : "");
        return 0;
    }
    ws_wal_format_name(next, tli, endseg + 1, seg_size);
    if (!ws_catalog_has_seg(cat, tli, endseg + 1))
        snprintf(out, outsz,
                 "WAL segment %s is missing from the repository: recovery ended at %s in %s, "
                 "the newest archived segment is %s",
                 next, lsn, endname, newest);
    else
        snprintf(out, outsz,
                 "recovery ended at %s in %s although the repository holds %s (not readable by "
                 "the server? see server.log); the newest archived segment is %s",
                 lsn, endname, next, newest);
    return -1;
}

/* The new timeline's history file: its last line is where recovery ended and on which timeline. */
static int read_end_of_recovery(struct drill *d, uint32_t now_tli, char *why, size_t whysz)
{
    char path[256], text[65536];
    struct ws_timeline_switch *sw = NULL;
    struct ws_error e = {0};
    size_t n = 0;
    ssize_t len;
    int fd;

    snprintf(path, sizeof(path), "%s/pg_wal/%08X.history", d->data, now_tli);
    if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
        snprintf(why, whysz, "could not open \"%s\": %s", path, strerror(errno));
        return -1;
    }
    len = ws_pread_full(fd, text, sizeof(text), 0);
    close(fd);
    if (len < 0 || ws_timeline_history_parse(text, (size_t)len, path, &sw, &n, &e) != 0 || n == 0) {
        snprintf(why, whysz, "could not read \"%s\": %.300s", path,
                 len < 0 ? strerror(errno) : e.msg);
        free(sw);
        return -1;
    }
    d->end_tli = sw[n - 1].tli;
    d->end_lsn = sw[n - 1].end_lsn;
    free(sw);
    return 0;
}

int ws_drill_check_wal_end(struct drill *d)
{
    char out[64], why[700];
    unsigned int tli = 0;

    if (psql(d, "template1", "select pg_walfile_name(pg_current_wal_lsn())", out, sizeof(out), why,
             sizeof(why)) != 0 ||
        sscanf(out, "%8X", &tli) != 1 || tli < 2) {
        set_check(d, CK_WAL_END, CHECK_FAILED, "could not tell the server's timeline: %s",
                  out[0] ? out : why);
        return -1;
    }
    if (read_end_of_recovery(d, tli, why, sizeof(why)) != 0) {
        set_check(d, CK_WAL_END, CHECK_FAILED, "%s", why);
        return -1;
    }
    if (ws_drill_wal_verdict(&d->cat, d->b->m.wal_segment_size, d->end_tli, d->end_lsn, why,
                             sizeof(why)) != 0) {
        set_check(d, CK_WAL_END, CHECK_FAILED, "%s", why);
        return -1;
    }
    set_check(d, CK_WAL_END, CHECK_PASSED, "%s", why);
    return 0;
}

int ws_drill_check_connect(struct drill *d)
{
    char names[65536], out[64], why[512], failed[700] = "";
    size_t ndb = 0, nbad = 0;
    char *p, *nl;

    if (psql(d, "template1",
             "select string_agg(encode(convert_to(datname, 'UTF8'), 'hex'), ' ' order by datname) "
             "from pg_database where datallowconn",
             names, sizeof(names), why, sizeof(why)) != 0) {
        set_check(d, CK_CONNECT, CHECK_FAILED, "could not list the databases: %s", why);
        return -1;
    }
    for (p = names; *p; p = nl) {
        char hex[256], db[128];
        size_t len = strcspn(p, " ");
        nl = p + len + (p[len] == ' ');
        if (len == 0 || len >= sizeof(hex) || len % 2)
            continue;
        memcpy(hex, p, len);
        hex[len] = '\0';
        if (ws_unhex(hex, (uint8_t *)db, len / 2) != 0)
            continue;
        db[len / 2] = '\0';
        ndb++;
        if (psql(d, db, "select 1", out, sizeof(out), why, sizeof(why)) != 0 ||
            strcmp(out, "1") != 0) {
            if (!nbad++)
                snprintf(failed, sizeof(failed), "database \"%s\": %s", db, why);
        }
    }
    if (nbad || ndb == 0) {
        set_check(d, CK_CONNECT, CHECK_FAILED, "%zu of %zu databases refused a connection%s%s",
                  nbad, ndb, nbad ? "; first: " : "", failed);
        return -1;
    }
    set_check(d, CK_CONNECT, CHECK_PASSED, "%zu databases accept connections", ndb);
    return 0;
}

int ws_drill_check_amcheck(struct drill *d)
{
    char port[16], jobs[16], out[8192], errout[8192], line[500], why[512];
    const char *argv[] = {
        "pg_amcheck",        "-h",     d->dir, "-p", port, "-U", d->dbuser, "--all",
        "--install-missing", "--jobs", jobs,   NULL};
    int rc;

    if (!ws_pg_bindir_has(d->bindir, "pg_amcheck")) {
        set_check(d, CK_AMCHECK, CHECK_SKIPPED, "pg_amcheck is not installed in %s", d->bindir);
        return 0;
    }
    if (psql(d, "template1", "select count(*) from pg_available_extensions where name = 'amcheck'",
             out, sizeof(out), why, sizeof(why)) != 0) {
        set_check(d, CK_AMCHECK, CHECK_FAILED, "%s", why);
        return -1;
    }
    if (strcmp(out, "0") == 0) {
        set_check(d, CK_AMCHECK, CHECK_SKIPPED, "the amcheck extension is not installed");
        return 0;
    }
    snprintf(port, sizeof(port), "%d", WS_DRILL_PORT);
    snprintf(jobs, sizeof(jobs), "%d", d->cfg->parallel > 0 ? d->cfg->parallel : 1);
    rc = run_client(d, argv, NULL, out, sizeof(out), errout, sizeof(errout));
    if (rc != 0) {
        first_line(out[0] ? out : errout, "pg_amcheck failed without a message", line,
                   sizeof(line));
        if (rc == -2)
            set_check(d, CK_AMCHECK, CHECK_FAILED, "interrupted");
        else
            set_check(d, CK_AMCHECK, CHECK_FAILED, "pg_amcheck exit status %d: %s", rc, line);
        return -1;
    }
    set_check(d, CK_AMCHECK, CHECK_PASSED, "pg_amcheck --all found no corruption");
    return 0;
}

void ws_drill_server_stop(struct drill *d)
{
    static const int sigs[] = {SIGINT, SIGQUIT, SIGKILL}; /* fast, immediate, kill */
    static const int waits_ms[] = {60000, 10000, 10000};
    int status, i, t;

    /* each signal again every second: one sent before the postmaster installed its handlers
     * may have been lost */
    for (i = 0; i < 3 && server_alive(d, &status); i++)
        for (t = 0; t < waits_ms[i] && server_alive(d, &status); t += 100) {
            if (t % 1000 == 0)
                kill(d->server, sigs[i]);
            sleep_ms(100);
        }
}
