/*
 * cparsl_test.h - helpers the DFK-level tests share: start and stop cparsl
 * with a YAML config, read an int result, and run a case in a temporary
 * directory that is removed afterwards (also when a REQUIRE stops the
 * case).  Define TEST_TMP_TAG first to name the directories
 * ("/tmp/<tag>-XXXXXX"), TEST_NO_DFK_HELPERS to get only those.
 */
#ifndef CPARSL_TESTS_CPARSL_TEST_H
#define CPARSL_TESTS_CPARSL_TEST_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cparsl/cparsl.h>

#include "check.h"

#ifndef TEST_TMP_TAG
#define TEST_TMP_TAG "cparsl-test"
#endif

#ifndef TEST_NO_DFK_HELPERS /* test_init.c has stricter ones of its own */
/* cparsl_init with this YAML (NULL: the defaults); the case stops if it
 * is not the client. */
static inline void init_yaml(const char *yaml)
{
    cparsl_config_t *cfg = NULL;
    cparsl_error_t err;
    if (yaml) {
        int rc = cparsl_config_load_string(&cfg, yaml, "test.yaml", &err);
        REQUIRE(rc == 0, "config: %s", err.text);
    }
    int rc = cparsl_init(NULL, NULL, cfg, &err);
    cparsl_config_destroy(cfg);
    REQUIRE(rc == CPARSL_CLIENT, "init: %d %s", rc, err.text);
}

static inline void finalize_ok(void)
{
    cparsl_error_t err;
    int rc = cparsl_finalize(&err);
    CHECK(rc == 0, "finalize: %d %s", rc, err.text);
}

/* The int result of f, or -999 (and a failed check). */
static inline int64_t get_int(cparsl_future_t *f)
{
    int64_t v = -999;
    int rc = cparsl_future_get_int(f, &v);
    CHECK(rc == 0, "get_int: %d %s", rc, cparsl_future_errstr(f));
    return v;
}

#endif

static char test__case_dir[128];

/* A fresh temporary directory as the cwd of this case. */
static inline void enter_tmp(void)
{
    snprintf(test__case_dir, sizeof test__case_dir, "/tmp/%s-XXXXXX",
             TEST_TMP_TAG);
    REQUIRE(mkdtemp(test__case_dir) != NULL, "mkdtemp: %s", strerror(errno));
    REQUIRE(chdir(test__case_dir) == 0, "chdir %s", test__case_dir);
}

static inline void leave_tmp(void)
{
    REQUIRE(chdir("/tmp") == 0, "chdir /tmp");
    char cmd[192];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", test__case_dir);
    CHECK(system(cmd) == 0, "cleanup of %s", test__case_dir);
    test__case_dir[0] = '\0';
}

/* For atexit: a case stopped by REQUIRE still removes its directory. */
static inline void cleanup_at_exit(void)
{
    if (test__case_dir[0] && chdir("/tmp") == 0) {
        char cmd[192];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", test__case_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", test__case_dir);
    }
}

#endif
