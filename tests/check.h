/*
 * check.h - the tiny assertion harness every cparsl unit test uses.
 *
 * CHECK(cond, fmt, ...) records a pass or a failure (with file, line and
 * message) and goes on; REQUIRE stops the test at the first failure.
 * check_done() prints "N passed, N failed" (a closing line CI reads) and
 * returns the exit status.  Each test is its own process with a CTest
 * timeout, so a hang or crash fails that test only.
 */
#ifndef CPARSL_TESTS_CHECK_H
#define CPARSL_TESTS_CHECK_H

#include <stdio.h>
#include <stdlib.h>

static int check__passed, check__failed;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (cond) {                                                            \
            check__passed++;                                                   \
        } else {                                                               \
            check__failed++;                                                   \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);    \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
        }                                                                      \
    } while (0)

#define REQUIRE(cond, ...)                                                     \
    do {                                                                       \
        int check__ok = !!(cond);                                              \
        CHECK(check__ok, __VA_ARGS__);                                         \
        if (!check__ok) {                                                      \
            fprintf(stderr, "stopping: a required check failed\n");            \
            printf("%d passed, %d failed\n", check__passed, check__failed);    \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

static inline int check_done(void)
{
    printf("%d passed, %d failed\n", check__passed, check__failed);
    return check__failed == 0 && check__passed > 0 ? 0 : 1;
}

/*
 * Multi-case test programs: define cases with TEST_CASE(name) { ... } and
 * list them in a TEST_LIST; `prog NAME` runs one case (CTest registers
 * every case as its own test, so each runs in its own process), `prog`
 * with no argument runs them all in sequence.
 */
typedef struct check_case {
    const char *name;
    void (*fn)(void);
} check_case_t;

#define TEST_CASE(name) static void test_##name(void)
#define TEST_ENTRY(name)                                                       \
    {                                                                          \
#name, test_##name                                                     \
    }

#include <string.h>
static inline int check_main(int argc, char **argv, const check_case_t *cases)
{
    int ran = 0;
    for (const check_case_t *c = cases; c->name; c++) {
        if (argc > 1 && strcmp(argv[1], c->name) != 0)
            continue;
        fprintf(stderr, "== %s\n", c->name);
        c->fn();
        ran++;
    }
    if (!ran) {
        fprintf(stderr, "no test case named '%s'\n", argc > 1 ? argv[1] : "");
        return 2;
    }
    return check_done();
}

/* Scale a task count down under sanitizers (CPARSL_TEST_SCALE=10). */
static inline long check_scale(long n)
{
    const char *s = getenv("CPARSL_TEST_SCALE");
    long k = s ? atol(s) : 1;
    return k > 1 ? (n / k > 0 ? n / k : 1) : n;
}

#endif
