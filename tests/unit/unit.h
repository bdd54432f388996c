/*
 * unit.h - the smallest test framework that does the job.
 *
 * Each test binary defines `const struct unit_test unit_tests[]` (terminated by {NULL, NULL});
 * CHECK() records a failure with file and line and goes on; REQUIRE() also returns from the
 * test. The binary prints one "ok"/"FAIL" line per test and exits non-zero if any failed.
 */
#ifndef UNIT_H
#define UNIT_H

#include <stddef.h>
#include <stdint.h>

struct unit_test {
    const char *name;
    void (*fn)(void);
};

extern const struct unit_test unit_tests[];
extern int unit_failures;

void unit_fail(const char *file, int line, const char *expr);
/* A scratch directory made for this process (removed at exit). */
const char *unit_tmpdir(void);
/* Deterministic pseudo-random bytes. */
void unit_random(uint8_t *buf, size_t len, uint32_t seed);

#define CHECK(e) ((e) ? (void)0 : unit_fail(__FILE__, __LINE__, #e))
#define REQUIRE(e)                                                                                 \
    do {                                                                                           \
        if (!(e)) {                                                                                \
            unit_fail(__FILE__, __LINE__, #e);                                                     \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#endif
