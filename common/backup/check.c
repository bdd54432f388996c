/*
 * backup/check.c - `basebackup check`: one OK/FAILED line per precondition of a working backup
 * set-up, so an operator (or a monitoring job) sees at once what is wrong:
 *   configuration valid; run as the repository's owner; key file readable; repository reachable
 *   and writable; server reachable; pgdata and spool_dir (check_local.c); identity matches this
 *   cluster; encryption key matches the repository; the role's privileges for the backup method
 *   (local: EXECUTE on the backup functions; stream: REPLICATION, max_wal_senders > 0), each
 *   missing one on its own line ending with the statement that grants it; stream: a replication
 *   connection opens and answers IDENTIFY_SYSTEM (pg_hba.conf's `replication` line); archive_mode
 * on and archive_command calls wal-push (or archive_library is the walsafe_archive module); a
 * forced WAL switch (EXECUTE on pg_switch_wal) reaches the repository within `timeout`. A line
 * whose precondition failed is "SKIPPED <what> (needs: <the failed line>)", never a second
 * diagnosis, and the WAL switch is not tried (no wait of `timeout` for nothing).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backup/backup.h"
#include "backup/check_int.h"
#include "backup/pool.h"
#include "base/util.h"
#include "io/object.h"
#include "pg/pgconn.h"
#include "pg/wal.h"

int ws_check_report(int ok, const char *what, const char *detail)
{
    printf("%-7s %s%s%s\n", ok ? "OK" : "FAILED", what, detail && *detail ? ": " : "",
           detail ? detail : "");
    fflush(stdout);
    return ok ? 0 : 1;
}

void ws_check_skipped(const char *what, const char *needs)
{
    printf("%-7s %s (needs: %s)\n", "SKIPPED", what, needs);
    fflush(stdout);
}

#define report ws_check_report

static int check_writable(struct ws_repo *repo, char *detail, size_t n)
{
    struct ws_error err = {0};
    struct ws_sink *put = NULL;
    char key[128];
    int rc;

    snprintf(key, sizeof(key), "%s/check-%ld-%ld", repo->cluster, (long)getpid(), (long)time(NULL));
    rc = ws_storage_open_put(repo->st, key, WS_PUT_REPLACE, &put, &err);
    if (rc == 0)
        rc = ws_sink_write(put, "walsafe check\n", 14, &err);
    if (rc == 0)
        rc = ws_sink_finish(put, &err);
    ws_sink_free(put);
    if (rc == 0)
        rc = ws_storage_remove(repo->st, key, &err);
    if (rc)
        snprintf(detail, n, "%s", err.msg);
    else
        snprintf(detail, n, "%s", repo->st->location);
    return rc;
}

struct find_obj {
    char key[512];
};

static int first_object(void *arg, const char *key, const struct ws_storage_stat *st,
                        struct ws_error *err)
{
    struct find_obj *f = arg;

    (void)err;
    if (st->size < WS_OBJECT_HEADER_SIZE || f->key[0])
        return 0;
    snprintf(f->key, sizeof(f->key), "%s", key);
    return 0;
}

/* Compares the key id in the header of one stored WAL object with the configured key. */
static int check_key(struct ws_repo *repo, const struct ws_keyring *kr, char *detail, size_t n)
{
    struct ws_error err = {0};
    struct find_obj f = {{0}};
    struct ws_sink *hdr = NULL;
    struct ws_object_info info;
    const uint8_t *h;
    uint32_t chunk;
    size_t len;
    char prefix[128];
    int rc;

    snprintf(prefix, sizeof(prefix), "%s/wal/", repo->cluster);
    if ((rc = ws_storage_list(repo->st, prefix, first_object, &f, &err)) != 0) {
        snprintf(detail, n, "%s", err.msg);
        return 1;
    }
    if (!f.key[0]) {
        snprintf(detail, n, "no WAL archived yet, nothing to compare");
        return 0;
    }
    if ((rc = ws_buffer_sink_new(WS_OBJECT_HEADER_SIZE, &hdr, &err)) != 0 ||
        (rc = ws_storage_get(repo->st, f.key, 0, WS_OBJECT_HEADER_SIZE, hdr, &err)) != 0) {
        snprintf(detail, n, "%s", err.msg);
        ws_sink_free(hdr);
        return 1;
    }
    h = ws_buffer_sink_data(hdr, &len);
    rc = ws_object_parse_header(h, f.key, &info, &chunk, &err);
    ws_sink_free(hdr);
    if (rc) {
        snprintf(detail, n, "%s", err.msg);
        return 1;
    }
    if (info.cipher == 0) {
        if (kr->has_write_key)
            snprintf(detail, n, "object %s is not encrypted, but encrypt_key_file is set", f.key);
        else
            snprintf(detail, n, "no encryption configured, archive unencrypted");
        return kr->has_write_key ? 1 : 0;
    }
    if (!ws_keyring_find(kr, info.key_id)) {
        char hex[2 * WS_KEY_ID_LEN + 1];
        ws_hex(info.key_id, WS_KEY_ID_LEN, hex);
        snprintf(detail, n, "object %s is encrypted with key id %s, which no configured key has",
                 f.key, hex);
        return 1;
    }
    snprintf(detail, n, "archive encrypted with a configured key");
    return 0;
}

/* The repository's identity against the server's system identifier. */
static int check_identity(struct ws_repo *repo, const struct ws_pg_info *info)
{
    struct ws_error err = {0};
    struct ws_identity id;
    char detail[1200];
    int rc;

    rc = ws_repo_identity_load(repo, &id, &err);
    if (rc == WS_ERR_NOT_FOUND)
        return report(1, L_IDENTITY,
                      "nothing archived yet: the first wal-push (the WAL switch below) "
                      "records it");
    if (rc)
        return report(0, L_IDENTITY, err.msg);
    if (id.system_identifier != info->system_identifier) {
        snprintf(detail, sizeof(detail),
                 "repository cluster \"%s\" is database system %" PRIu64
                 ", this server is %" PRIu64,
                 repo->cluster, id.system_identifier, info->system_identifier);
        return report(0, L_IDENTITY, detail);
    }
    snprintf(detail, sizeof(detail), "system %" PRIu64, id.system_identifier);
    return report(1, L_IDENTITY, detail);
}

/* archive_library (PostgreSQL 15+) wins over archive_command when set. */
static int library_set(const struct ws_pg_info *info)
{
    return info->archive_library && info->archive_library[0] != '\0';
}

/* The walsafe_archive module, by name or by a path to it (with or without ".so"). */
static int library_is_walsafe(const struct ws_pg_info *info)
{
    const char *base = library_set(info) ? ws_base_name(info->archive_library) : "";

    return strcmp(base, "walsafe_archive") == 0 || strcmp(base, "walsafe_archive.so") == 0;
}

/* Archiving goes through walsafe: the module, or an archive_command that calls wal-push. */
static int calls_wal_push(const struct ws_pg_info *info)
{
    if (library_set(info))
        return library_is_walsafe(info);
    return info->archive_command && strstr(info->archive_command, "wal-push") != NULL;
}

/* archive_mode and archive_command. */
static int check_archiving(const struct ws_pg_info *info)
{
    char detail[1200];
    int failed = 0, ok;

    ok = info->archive_mode &&
         (strcmp(info->archive_mode, "on") == 0 || strcmp(info->archive_mode, "always") == 0);
    snprintf(detail, sizeof(detail), "archive_mode = %s",
             info->archive_mode ? info->archive_mode : "?");
    failed += report(ok, L_ARCHIVE_MODE, detail);
    if (library_set(info)) {
        snprintf(detail, sizeof(detail), "archive_library = '%s'", info->archive_library);
        failed += report(library_is_walsafe(info), L_ARCHIVE_LIB, detail);
        return failed;
    }
    snprintf(detail, sizeof(detail), "archive_command = '%s'",
             info->archive_command ? info->archive_command : "");
    failed += report(calls_wal_push(info), L_ARCHIVE_CMD, detail);
    return failed;
}

/* One line: may the role call function f? Its detail, when not, is the GRANT that fixes it. */
static int check_execute(const struct ws_pg_access *a, int version, enum ws_pg_func f,
                         const char *why)
{
    const char *fn = ws_pg_function(version, f);
    char what[200], detail[300];

    snprintf(what, sizeof(what), "role %s may call %s (%s)", a->role, fn, why);
    if (a->execute[f])
        return report(1, what, a->superuser ? "superuser" : "");
    snprintf(detail, sizeof(detail), "GRANT EXECUTE ON FUNCTION %s TO %s;", fn, a->role);
    return report(0, what, detail);
}

/* A stream backup: a replication connection must be allowed. */
static int check_replication(const struct ws_pg_access *a)
{
    char what[200], detail[400];
    int failed = 0;

    snprintf(what, sizeof(what), "role %s may open replication connections", a->role);
    snprintf(detail, sizeof(detail),
             "ALTER ROLE %s REPLICATION; (pg_hba.conf also needs a \"host replication %s "
             "<backup host>/32 scram-sha-256\" line)",
             a->role, a->role);
    failed += report(a->replication, what, a->replication ? "" : detail);
    snprintf(detail, sizeof(detail), "max_wal_senders = %d%s", a->max_wal_senders,
             a->max_wal_senders > 0 ? ""
                                    : ": set it (e.g. 10) in postgresql.conf and restart "
                                      "the server");
    failed +=
        report(a->max_wal_senders > 0, "max_wal_senders allows replication connections", detail);
    return failed;
}

/* A stream backup: open a real replication connection as create does (pg_hba.conf must have a
 * `replication` line for the role) and run IDENTIFY_SYSTEM; 0 for OK, 1 for FAILED. */
static int check_repl_connect(const struct ws_config *cfg, const struct ws_backup_env *env)
{
    struct ws_error err = {0};
    struct ws_repl *repl = NULL;
    struct ws_repl_system sys = {0};
    char detail[1200];
    int rc;

    rc = ws_repl_connect(env ? env->repl : NULL, cfg->pg_conninfo, &repl, &err);
    if (rc == 0)
        rc = ws_repl_identify(repl, &sys, &err);
    if (rc == 0)
        snprintf(detail, sizeof(detail), "system identifier %" PRIu64 ", timeline %" PRIu32,
                 sys.system_identifier, sys.timeline);
    else
        snprintf(detail, sizeof(detail), "%s", err.msg);
    ws_repl_close(repl);
    return report(rc == 0, L_REPL_CONN, detail);
}

/* The role's privileges for cfg's backup method; *can_switch: it may call pg_switch_wal. */
static int check_access(const struct ws_config *cfg, const struct ws_backup_env *env,
                        struct ws_pg *pg, const struct ws_pg_info *info, int *can_switch)
{
    struct ws_error err = {0};
    struct ws_pg_access a = {0};
    int failed = 0;

    *can_switch = 0;
    if (ws_pg_get_access(pg, info->version, &a, &err) != 0)
        return report(0, "the role's privileges readable", err.msg);
    if (ws_config_backup_method(cfg) == WS_BACKUP_METHOD_STREAM) {
        char need[200];
        int f = check_replication(&a);
        if (f == 0) {
            f = check_repl_connect(cfg, env);
        } else { /* needs the first of check_replication's lines that failed */
            if (a.replication)
                snprintf(need, sizeof(need), "max_wal_senders allows replication connections");
            else
                snprintf(need, sizeof(need), "role %s may open replication connections", a.role);
            ws_check_skipped(L_REPL_CONN, need);
        }
        failed += f;
    } else {
        failed += check_execute(&a, info->version, WS_PG_BACKUP_START, "local backup");
        failed += check_execute(&a, info->version, WS_PG_BACKUP_STOP, "local backup");
    }
    failed += check_execute(&a, info->version, WS_PG_SWITCH_WAL, "the WAL switch of check");
    *can_switch = a.execute[WS_PG_SWITCH_WAL];
    ws_pg_access_free(&a);
    return failed;
}

/* A forced WAL switch, then the segment it closed must reach the repository within timeout. */
static int check_wal_switch(const struct ws_config *cfg, struct ws_pg *pg, struct ws_repo *repo,
                            struct ws_error *err)
{
    char detail[1200], *seg = NULL;
    int rc;

    rc = ws_pg_switch_wal(pg, &seg, err);
    if (rc == 0 && seg) {
        char key[256];
        struct ws_storage_stat st;
        time_t start = time(NULL);
        ws_repo_wal_key(repo, seg, key, sizeof(key));
        for (;;) {
            rc = ws_storage_stat(repo->st, key, &st, err);
            if (rc != WS_ERR_NOT_FOUND || time(NULL) - start > cfg->timeout)
                break;
            usleep(200 * 1000);
        }
        if (rc == 0)
            snprintf(detail, sizeof(detail), "%s archived in %ld s", seg,
                     (long)(time(NULL) - start));
        else if (rc == WS_ERR_NOT_FOUND)
            snprintf(detail, sizeof(detail),
                     "%s did not reach the repository within %d s (timeout); see "
                     "pg_stat_archiver and the server log",
                     seg, cfg->timeout);
        else
            snprintf(detail, sizeof(detail), "%s", err->msg);
    } else {
        snprintf(detail, sizeof(detail), "%s", rc ? err->msg : "no WAL file name returned");
        rc = rc ? rc : 1;
    }
    free(seg);
    return report(rc == 0, L_SWITCH, detail);
}

/* Lines whose every precondition is known to hold run; the others print SKIPPED naming the first
 * one that failed. needs[] is NULL-terminated; an entry is NULL when its line passed. */
static const char *first_failed(const char *const *needs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (needs[i])
            return needs[i];
    return NULL;
}

/* The lines that need the repository, the server or both; r says which of those passed. */
static void check_dependent(const struct ws_config *cfg, const struct ws_backup_env *env,
                            struct ws_check_run *r, struct ws_repo *repo, struct ws_pg *pg,
                            const struct ws_pg_info *info, const struct ws_keyring *kr,
                            struct ws_error *err)
{
    char detail[1200];
    const char *need_id[] = {r->repo, r->pg}, *need_key[] = {r->key, r->repo}, *why;
    int can_switch = 0, rc;

    if ((why = first_failed(need_id, 2)))
        ws_check_skipped(L_IDENTITY, why);
    else if (check_identity(repo, info))
        r->failed++, r->identity = L_IDENTITY;
    if ((why = first_failed(need_key, 2))) {
        ws_check_skipped(L_KEY_MATCH, why);
    } else {
        rc = check_key(repo, kr, detail, sizeof(detail));
        if (report(rc == 0, L_KEY_MATCH, detail))
            r->failed++, r->key_match = L_KEY_MATCH;
    }
    if (r->pg) {
        ws_check_skipped("the role's privileges for the backup method", r->pg);
        if (ws_config_backup_method(cfg) == WS_BACKUP_METHOD_STREAM)
            ws_check_skipped(L_REPL_CONN, r->pg);
        ws_check_skipped(L_ARCHIVE_MODE, r->pg);
        ws_check_skipped(L_ARCHIVE_CMD, r->pg);
    } else {
        r->failed += check_access(cfg, env, pg, info, &can_switch);
        r->failed += check_archiving(info);
        if (!(info->archive_mode &&
              (strcmp(info->archive_mode, "on") == 0 || strcmp(info->archive_mode, "always") == 0)))
            r->archiving = L_ARCHIVE_MODE;
        else if (!calls_wal_push(info))
            r->archiving = library_set(info) ? L_ARCHIVE_LIB : L_ARCHIVE_CMD;
        if (!can_switch)
            r->switch_grant = "the role may call pg_switch_wal()";
    }
    {
        const char *need_switch[] = {r->user,     r->key,       r->repo,      r->pg,
                                     r->identity, r->key_match, r->archiving, r->switch_grant};
        if ((why = first_failed(need_switch, sizeof(need_switch) / sizeof(need_switch[0]))))
            ws_check_skipped(L_SWITCH, why);
        else if (info->in_recovery)
            r->failed +=
                report(0, L_SWITCH, "the server is in recovery (check runs on the primary)");
        else
            r->failed += check_wal_switch(cfg, pg, repo, err);
    }
}

void ws_backup_check_config_failed(const struct ws_error *cfg_err)
{
    static const char *const rest[] = {
        L_USER,         L_KEY,         L_REPO,
        L_PG,           L_PGDATA,      L_SPOOL,
        L_IDENTITY,     L_KEY_MATCH,   "the role's privileges for the backup method",
        L_ARCHIVE_MODE, L_ARCHIVE_CMD, L_SWITCH};

    report(0, L_CONFIG, cfg_err->msg);
    for (size_t i = 0; i < sizeof(rest) / sizeof(rest[0]); i++)
        ws_check_skipped(rest[i], L_CONFIG);
}

int ws_backup_check(const struct ws_config *cfg, const struct ws_backup_env *env,
                    struct ws_error *err)
{
    struct ws_check_run r = {0};
    struct ws_repo repo = {0};
    struct ws_keyring kr = {0};
    struct ws_pg *pg = NULL;
    struct ws_pg_info info = {0};
    char detail[1200];
    int rc;

    report(1, L_CONFIG,
           cfg->config_file ? cfg->config_file
                            : "no file: the command line and "
                              "the environment");
    rc = ws_repo_check_user(cfg, "basebackup", err);
    if (report(rc == 0, L_USER, rc ? err->msg : ""))
        r.failed++, r.user = L_USER;
    rc = ws_keyring_load(cfg, &kr, err);
    if (report(rc == 0, L_KEY, rc ? err->msg : ""))
        r.failed++, r.key = L_KEY;
    if (r.user) {
        ws_check_skipped(L_REPO, r.user);
        r.repo = L_USER;
    } else if ((rc = ws_backup_repo_open(env, cfg, &repo, err)) != 0) {
        r.failed += report(0, L_REPO, err->msg);
        r.repo = L_REPO;
    } else if ((rc = check_writable(&repo, detail, sizeof(detail))) != 0) {
        r.failed += report(0, L_REPO, detail);
        r.repo = L_REPO;
    } else {
        report(1, L_REPO, detail);
    }
    rc = ws_pg_connect(env ? env->pg : NULL, cfg->pg_conninfo, &pg, err);
    if (rc == 0)
        rc = ws_pg_get_info(pg, &info, err);
    if (report(rc == 0, L_PG, rc ? err->msg : ""))
        r.failed++, r.pg = L_PG;
    r.failed += ws_check_local(cfg, r.pg ? NULL : &info);
    check_dependent(cfg, env, &r, &repo, pg, &info, &kr, err);
    ws_pg_info_free(&info);
    ws_pg_close(pg);
    ws_repo_close(&repo);
    ws_keyring_wipe(&kr);
    if (r.failed)
        return ws_error_set(err, WS_ERR_INVALID, "%d check(s) failed", r.failed);
    return 0;
}
