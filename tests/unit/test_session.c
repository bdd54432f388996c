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
    unsigned loads, opens;

    REQUIRE(s != NULL && setup(&e, "kept") == 0);
    for (uint64_t n = 1; n <= 40; n++) {
        REQUIRE(unit_wal_segment(e.wal, n, UNIT_SYSID, (uint32_t)n, seg, sizeof(seg)) == 0);
        CHECK(push(s, e.conf, seg, &err) == 0);
        CHECK(stored(&e, n));
    }
    ws_archive_session_counts(s, &loads, &opens);
    CHECK(loads == 1);
    CHECK(opens == 1);

    /* wal-push's duplicate rule, through the same call */
    CHECK(push(s, e.conf, seg, &err) == 0);
    REQUIRE(unit_wal_segment(e.wal, 40, UNIT_SYSID, 999, seg, sizeof(seg)) == 0);
    CHECK(push(s, e.conf, seg, &err) == WS_ERR_CONFLICT);
    CHECK(strstr(err.msg, seg) != NULL);

    /* a reload (SIGHUP) and a changed file load the configuration again */
    ws_archive_session_reload(s);
    REQUIRE(unit_wal_segment(e.wal, 41, UNIT_SYSID, 41, seg, sizeof(seg)) == 0);
    CHECK(push(s, e.conf, seg, &err) == 0);
    ws_archive_session_counts(s, &loads, &opens);
    CHECK(loads == 2 && opens == 2);
    REQUIRE(unit_write(e.conf, "repo = '/nonexistent/walsafe-session'\n", 38, 0600) == 0);
    REQUIRE(unit_wal_segment(e.wal, 42, UNIT_SYSID, 42, seg, sizeof(seg)) == 0);
    CHECK(push(s, e.conf, seg, &err) != 0);
    CHECK(!stored(&e, 42));
    ws_archive_session_counts(s, &loads, &opens);
    CHECK(loads == 3);
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
    unsigned loads, opens;

    REQUIRE(s != NULL && setup(&e, "badconf") == 0);
    snprintf(missing, sizeof(missing), "%s/missing.conf", e.dir);
    REQUIRE(unit_wal_segment(e.wal, 1, UNIT_SYSID, 1, seg, sizeof(seg)) == 0);
    for (int i = 0; i < 3; i++) {
        CHECK(push(s, missing, seg, &err) == WS_ERR_CONFIG);
        CHECK(strstr(err.msg, "missing.conf") != NULL);
        CHECK(strstr(err.msg, seg) != NULL);
        CHECK(strchr(err.msg, '\n') == NULL);
    }
    ws_archive_session_counts(s, &loads, &opens);
    CHECK(loads == 3 && opens == 0);
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
    unsigned loads, opens;

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
    ws_archive_session_counts(s, &loads, &opens);
    CHECK(loads == 1);
    CHECK(opens == 2);
    ws_archive_session_free(s);
}

const struct unit_test unit_tests[] = {
    {"session_kept", test_session_kept},
    {"session_bad_config", test_session_bad_config},
    {"session_storage_failure", test_session_storage_failure},
    {NULL, NULL},
};
