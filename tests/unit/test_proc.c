/*
 * base/proc.h: the child's record comes back whole (the caller's record as the child's starting
 * point), a child that ends without one is named with its status or signal, and a set stop flag
 * ends a child that would wait forever.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/proc.h"
#include "unit.h"

struct rec {
    int n;
    char text[5000]; /* more than a pipe's atomic write */
};

static void add_one(void *arg, pid_t parent, void *r)
{
    struct rec *rec = r;

    rec->n += *(const int *)arg;
    snprintf(rec->text, sizeof(rec->text), "parent %ld", (long)parent);
    memset(rec->text + 100, 'x', sizeof(rec->text) - 101);
}

static void exit_3(void *arg, pid_t parent, void *r)
{
    (void)arg, (void)parent, (void)r;
    _exit(3);
}

static void killed(void *arg, pid_t parent, void *r)
{
    (void)arg, (void)parent, (void)r;
    raise(SIGKILL);
}

static void waits(void *arg, pid_t parent, void *r)
{
    (void)arg, (void)parent, (void)r;
    for (;;)
        pause();
}

static void test_record(void)
{
    struct rec rec;
    struct ws_error err = {0};
    struct ws_proc p;
    char want[64];
    int one = 1;

    memset(&rec, 0, sizeof(rec));
    rec.n = 41;
    REQUIRE(ws_proc_start(&p, "test process", add_one, &one, &rec, sizeof(rec), &err) == 0);
    REQUIRE(ws_proc_finish(&p, &rec, sizeof(rec), NULL, &err) == 0);
    CHECK(rec.n == 42);
    snprintf(want, sizeof(want), "parent %ld", (long)getpid());
    CHECK(strcmp(rec.text, want) == 0);
    CHECK(rec.text[100] == 'x' && rec.text[sizeof(rec.text) - 2] == 'x');
}

static void test_no_record(void)
{
    struct rec rec = {0};
    struct ws_error err = {0};
    struct ws_proc p;

    REQUIRE(ws_proc_start(&p, "test process", exit_3, NULL, &rec, sizeof(rec), &err) == 0);
    CHECK(ws_proc_finish(&p, &rec, sizeof(rec), NULL, &err) == WS_ERR_INTERNAL);
    CHECK(strcmp(err.msg, "the test process ended with status 3") == 0);
    REQUIRE(ws_proc_start(&p, "test process", killed, NULL, &rec, sizeof(rec), &err) == 0);
    CHECK(ws_proc_finish(&p, &rec, sizeof(rec), NULL, &err) == WS_ERR_INTERNAL);
    CHECK(strcmp(err.msg, "the test process ended by signal 9") == 0);
}

static void test_stop(void)
{
    static volatile sig_atomic_t stop = 1;
    struct rec rec = {0};
    struct ws_error err = {0};
    struct ws_proc p;

    REQUIRE(ws_proc_start(&p, "test process", waits, NULL, &rec, sizeof(rec), &err) == 0);
    CHECK(ws_proc_finish(&p, &rec, sizeof(rec), &stop, &err) == WS_ERR_INTERNAL);
    CHECK(strcmp(err.msg, "the test process ended by signal 15") == 0);
}

const struct unit_test unit_tests[] = {
    {"record", test_record},
    {"no_record", test_no_record},
    {"stop", test_stop},
    {NULL, NULL},
};
