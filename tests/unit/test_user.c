/*
 * base/user.h: looking a user up by uid and by name (root exists everywhere; a made-up name
 * does not), with its groups; ws_user_become is exercised by the restore and drill integration
 * tests (t_restore_trust, t_privileges, t_drill), which run as root.
 */
#include <string.h>

#include "base/user.h"
#include "unit.h"

static void test_lookup(void)
{
    struct ws_user u;
    struct ws_error err = {0};

    REQUIRE(ws_user_lookup(0, NULL, &u, &err) == 0);
    CHECK(strcmp(u.name, "root") == 0 && u.uid == 0 && u.gid == 0 && u.home[0] == '/');
    CHECK(u.ngroups >= 1 && u.groups && u.groups[0] == 0);
    ws_user_free(&u);
    CHECK(u.groups == NULL && u.ngroups == 0);
    REQUIRE(ws_user_lookup(12345, "root", &u, &err) == 0);
    CHECK(u.uid == 0 && strcmp(u.name, "root") == 0);
    ws_user_free(&u);
}

static void test_not_found(void)
{
    struct ws_user u;
    struct ws_error err = {0};

    CHECK(ws_user_lookup(0, "no-such-user-walsafe", &u, &err) == WS_ERR_NOT_FOUND);
    CHECK(strstr(err.msg, "no-such-user-walsafe") != NULL && u.groups == NULL);
    CHECK(ws_user_lookup(3999999999u, NULL, &u, &err) == WS_ERR_NOT_FOUND);
    CHECK(strstr(err.msg, "3999999999") != NULL);
    ws_user_free(&u);
}

const struct unit_test unit_tests[] = {
    {"lookup", test_lookup},
    {"not_found", test_not_found},
    {NULL, NULL},
};
