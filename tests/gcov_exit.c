/*
 * gcov_exit.c - in the coverage build's library only (make coverage, tests/coverage.sh): a
 * process that ends with _exit() writes its gcov counts first, as one that calls exit() does.
 * Without it the detached push-ahead and prefetch processes and restore's child (running as the
 * target's owner) would count as never run.
 */
#include <sys/syscall.h>
#include <unistd.h>

void __gcov_dump(void);

void _exit(int status)
{
    __gcov_dump();
    syscall(SYS_exit_group, status);
    __builtin_unreachable();
}
