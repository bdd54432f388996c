/*
 * The archive module's session (archive/session.h) against a posix repository in the scratch
 * directory, with synthetic 1 MiB WAL segments: the configuration and the repository are loaded
 * once for many files and again when the file changes or a reload is asked for; a configuration
 * that cannot be loaded fails every call, naming the file, archives nothing, and is tried again;
 * the push keeps wal-push's rules (identical duplicate accepted, different content refused); a
 * storage failure closes the repository so the next file opens it anew. Under ASan the many-file
 * case is the leak check: nothing a push allocates may outlive it.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "archive/archive.h"
#include "archive/session.h"
#include "pg/wal.h"
#include "fixture.h"
#include "unit.h"

struct env {
    char dir[512], repo[600], wal[600], conf[600], key[600];
};

static int setup(struct env *e, const char *name)
{
    char text[2048];

    if (unit_path(e->dir, sizeof(e->dir), "%s", name) != 0 || unit_mkdir(e->dir) != 0)
        return -1;
    snprintf(e->repo, sizeof(e->repo), "%s/repo", e->dir);
    snprintf(e->wal, sizeof(e->wal), "%s/pg_wal", e->dir);
    snprintf(e->conf, sizeof(e->conf), "%s/walsafe.conf", e->dir);
    snprintf(e->key, sizeof(e->key), "%s/walsafe.key", e->dir);
    if (unit_mkdir(e->repo) != 0 || unit_mkdir(e->wal) != 0 || unit_key_file(e->key, NULL) != 0)
        return -1;
    snprintf(text, sizeof(text), "repo = '%s'\nencrypt_key_file = '%s'\nretries = 1\n", e->repo,
             e->key);
    return unit_write(e->conf, text, strlen(text), 0600);
}

static int stored(const struct env *e, uint64_t segno)
{
    char name[WS_WAL_NAME_LEN + 1], path[800];

    ws_wal_format_name(name, 1, segno, UNIT_SEG);
    snprintf(path, sizeof(path), "%s/main/wal/%.16s/%s", e->repo, name, name);
    return unit_exists(path);
}

static int push(struct ws_archive_session *s, const char *conf, const char *seg,
                struct ws_error *err)
{
    struct ws_push_result res;

    memset(err, 0, sizeof(*err));
    return ws_archive_session_push(s, conf, seg, &res, err);
}

/* Many files through one session: one configuration load, one repository opened. */
static void test_session_kept(void)
{
    struct ws_archive_session *s = ws_archive_session_new();
    struct ws_error err;
    struct env e;
    char seg[800];
    struct ws_archive_session_stats st;

    REQUIRE(s != NULL && setup(&e, "kept") == 0);
    for (uint64_t n = 1; n <= 40; n++) {
        REQUIRE(unit_wal_segment(e.wal, n, UNIT_SYSID, (uint32_t)n, seg, sizeof(seg)) == 0);
        CHECK(push(s, e.conf, seg, &err) == 0);
        CHECK(stored(&e, n));
    }
    ws_archive_session_stats(s, &st);
    CHECK(st.config_loads == 1);
    CHECK(st.repo_opens == 1);

    /* wal-push's duplicate rule, through the same call */
    CHECK(push(s, e.conf, seg, &err) == 0);
    REQUIRE(unit_wal_segment(e.wal, 40, UNIT_SYSID, 999, seg, sizeof(seg)) == 0);
    CHECK(push(s, e.conf, seg, &err) == WS_ERR_CONFLICT);
    CHECK(strstr(err.msg, seg) != NULL);

    /* a reload (SIGHUP) and a changed file load the configuration again */
    ws_archive_session_reload(s);
    REQUIRE(unit_wal_segment(e.wal, 41, UNIT_SYSID, 41, seg, sizeof(seg)) == 0);
    CHECK(push(s, e.conf, seg, &err) == 0);
    ws_archive_session_stats(s, &st);
    CHECK(st.config_loads == 2 && st.repo_opens == 2);
    REQUIRE(unit_write(e.conf, "repo = '/nonexistent/walsafe-session'\n", 38, 0600) == 0);
    REQUIRE(unit_wal_segment(e.wal, 42, UNIT_SYSID, 42, seg, sizeof(seg)) == 0);
    CHECK(push(s, e.conf, seg, &err) != 0);
    CHECK(!stored(&e, 42));
    ws_archive_session_stats(s, &st);
    CHECK(st.config_loads == 3);
    ws_archive_session_free(s);
}

/* A configuration that cannot be loaded: every call fails naming the file, nothing is archived;
 * once the file is right, the next call archives. */
static void test_session_bad_config(void)
{
    struct ws_archive_session *s = ws_archive_session_new();
    struct ws_error err;
    struct env e;
    char seg[800], missing[700], text[2048];
    struct ws_archive_session_stats st;

    REQUIRE(s != NULL && setup(&e, "badconf") == 0);
    snprintf(missing, sizeof(missing), "%s/missing.conf", e.dir);
    REQUIRE(unit_wal_segment(e.wal, 1, UNIT_SYSID, 1, seg, sizeof(seg)) == 0);
    for (int i = 0; i < 3; i++) {
        CHECK(push(s, missing, seg, &err) == WS_ERR_CONFIG);
        CHECK(strstr(err.msg, "missing.conf") != NULL);
        CHECK(strstr(err.msg, seg) != NULL);
        CHECK(strchr(err.msg, '\n') == NULL);
    }
    ws_archive_session_stats(s, &st);
    CHECK(st.config_loads == 3 && st.repo_opens == 0);
    REQUIRE(unit_write(missing, "repo = 'x'\nno_such_key = 1\n", 27, 0600) == 0);
    CHECK(push(s, missing, seg, &err) == WS_ERR_CONFIG);
    CHECK(strstr(err.msg, "no_such_key") != NULL);
    CHECK(!stored(&e, 1));
    snprintf(text, sizeof(text), "repo = '%s'\nencrypt_key_file = '%s'\n", e.repo, e.key);
    REQUIRE(unit_write(missing, text, strlen(text), 0600) == 0);
    CHECK(push(s, missing, seg, &err) == 0);
    CHECK(stored(&e, 1));
    ws_archive_session_free(s);
}

/* A storage failure closes the repository: the next file opens it again. */
static void test_session_storage_failure(void)
{
    struct ws_archive_session *s = ws_archive_session_new();
    struct ws_error err;
    struct env e;
    char seg[800], moved[700];
    struct ws_archive_session_stats st;

    REQUIRE(s != NULL && setup(&e, "failure") == 0);
    REQUIRE(unit_wal_segment(e.wal, 1, UNIT_SYSID, 1, seg, sizeof(seg)) == 0);
    REQUIRE(push(s, e.conf, seg, &err) == 0);
    snprintf(moved, sizeof(moved), "%s/repo-away", e.dir);
    /* a file where the repository was: every request fails */
    REQUIRE(rename(e.repo, moved) == 0 && unit_write(e.repo, "x", 1, 0600) == 0);
    REQUIRE(unit_wal_segment(e.wal, 2, UNIT_SYSID, 2, seg, sizeof(seg)) == 0);
    CHECK(push(s, e.conf, seg, &err) != 0);
    CHECK(strstr(err.msg, seg) != NULL);
    CHECK(unlink(e.repo) == 0 && rename(moved, e.repo) == 0);
    CHECK(push(s, e.conf, seg, &err) == 0);
    CHECK(stored(&e, 2));
    ws_archive_session_stats(s, &st);
    CHECK(st.config_loads == 1);
    CHECK(st.repo_opens == 2);
    ws_archive_session_free(s);
}

/* parallel = 3 and the archiver's layout: the call for X also stores the next two ready files;
 * their own calls are answered by the records (no push); a file that changed since it was pushed
 * ahead is pushed as usual, which wal-push's duplicate rule refuses. */
static void test_session_ahead(void)
{
    struct ws_archive_session *s = ws_archive_session_new();
    struct ws_archive_session_stats st;
    struct ws_error err;
    struct env e;
    char status[700], names[7][WS_WAL_NAME_LEN + 1], path[800], text[2048];

    REQUIRE(s != NULL && setup(&e, "ahead") == 0);
    snprintf(text, sizeof(text), "repo = '%s'\nencrypt_key_file = '%s'\nparallel = 3\n", e.repo,
             e.key);
    REQUIRE(unit_write(e.conf, text, strlen(text), 0600) == 0);
    snprintf(status, sizeof(status), "%s/archive_status", e.wal);
    REQUIRE(unit_mkdir(status) == 0);
    for (uint64_t n = 1; n <= 6; n++)
        REQUIRE(unit_wal_ready(e.wal, n, (uint32_t)n, names[n]) == 0);

    snprintf(path, sizeof(path), "%s/%s", e.wal, names[1]);
    CHECK(push(s, e.conf, path, &err) == 0);
    ws_archive_session_stats(s, &st);
    CHECK(st.pushed_ahead == 2 && st.ahead_used == 0);
    CHECK(stored(&e, 1) && stored(&e, 2) && stored(&e, 3));
    CHECK(!stored(&e, 4));

    snprintf(path, sizeof(path), "%s/%s", e.wal, names[2]);
    CHECK(push(s, e.conf, path, &err) == 0);
    ws_archive_session_stats(s, &st);
    CHECK(st.ahead_used == 1);

    /* segment 3 is not what was pushed ahead any more: pushed as usual (and refused); its call
     * pushes 4 and 5 ahead */
    REQUIRE(unit_wal_segment(e.wal, 3, UNIT_SYSID, 333, path, sizeof(path)) == 0);
    CHECK(push(s, e.conf, path, &err) == WS_ERR_CONFLICT);
    ws_archive_session_stats(s, &st);
    CHECK(st.ahead_used == 1 && st.pushed_ahead == 4);
    CHECK(stored(&e, 4) && stored(&e, 5));
    CHECK(!stored(&e, 6));

    for (int n = 4; n <= 6; n++) {
        snprintf(path, sizeof(path), "%s/%s", e.wal, names[n]);
        CHECK(push(s, e.conf, path, &err) == 0);
    }
    ws_archive_session_stats(s, &st);
    CHECK(st.ahead_used == 3);
    CHECK(stored(&e, 6));
    CHECK(st.repo_opens == 2 && st.config_loads == 1); /* reopened after the conflict */
    ws_archive_session_free(s);
}

const struct unit_test unit_tests[] = {
    {"session_ahead", test_session_ahead},
    {"session_kept", test_session_kept},
    {"session_bad_config", test_session_bad_config},
    {"session_storage_failure", test_session_storage_failure},
    {NULL, NULL},
};
