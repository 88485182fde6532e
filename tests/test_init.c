/*
 * test_init.c - cparsl_init and cparsl_finalize end to end: the default
 * config and its run dirs, the config layers (in code, CPARSL_CONFIG,
 * --cparsl-config) and their precedence, every kind of bad config failing
 * cleanly with key, file, line and problem, the multi-rank launch rule,
 * executors by label, init/finalize misuse, capacity, and a config built
 * in code.  Each case runs in a fresh temporary directory of its own.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cparsl/cparsl.h>

#include "check.h"
#define TEST_TMP_TAG "cparsl-init"
#define TEST_NO_DFK_HELPERS
#include "cparsl_test.h"

#define HAS(text, sub) (strstr((text), (sub)) != NULL)

/* ---- apps --------------------------------------------------------------- */

static int app_seven(const cparsl_args_t *a, cparsl_value_t *r,
                     cparsl_error_t *err)
{
    (void)a;
    (void)err;
    *r = cparsl_int(7);
    return 0;
}
CPARSL_APP(pinned, app_seven)
CPARSL_APP(only_a, app_seven, .executors = "a")
CPARSL_APP(only_b, app_seven, .executors = "b")

/* Fails on its first N tries (N = argument 0). */
static int app_flaky(const cparsl_args_t *a, cparsl_value_t *r,
                     cparsl_error_t *err)
{
    if (cparsl_args_try(a) < cparsl_arg_int(a, 0))
        return cparsl_error_set(err, CPARSL_EAPP, "flaky try %d",
                                cparsl_args_try(a));
    *r = cparsl_int(cparsl_args_try(a));
    return 0;
}
CPARSL_APP(flaky, app_flaky)

/* ---- helpers ------------------------------------------------------------ */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    REQUIRE(f != NULL, "cannot write %s: %s", path, strerror(errno));
    fputs(text, f);
    REQUIRE(fclose(f) == 0, "close %s", path);
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) ? (long)st.st_size : -1;
}

static cparsl_config_t *yaml_cfg(const char *yaml)
{
    cparsl_config_t *cfg = NULL;
    cparsl_error_t err;
    int rc = cparsl_config_load_string(&cfg, yaml, "code.yaml", &err);
    REQUIRE(rc == 0, "config: %s", err.text);
    return cfg;
}

/* Init with 'cfg' (may be NULL) and no argv; REQUIREs CPARSL_CLIENT. */
static void init_ok(const cparsl_config_t *cfg)
{
    cparsl_error_t err;
    int rc = cparsl_init(NULL, NULL, cfg, &err);
    REQUIRE(rc == CPARSL_CLIENT, "init: %d %s", rc, err.text);
    REQUIRE(cparsl_initialized(), "initialized after init");
}

static void init_yaml(const char *yaml)
{
    cparsl_config_t *cfg = yaml ? yaml_cfg(yaml) : NULL;
    init_ok(cfg);
    cparsl_config_destroy(cfg);
}

static void finalize_ok(void)
{
    cparsl_error_t err;
    int rc = cparsl_finalize(&err);
    CHECK(rc == 0, "finalize: %d %s", rc, err.text);
    CHECK(!cparsl_initialized(), "not initialized after finalize");
}

/* Submit 'app' with call options; returns its error code (0 on success).
 * 'text' receives the error text. */
static int run_app(const char *app, const char *labels, char *text, size_t cap)
{
    cparsl_call_t *c = cparsl_call_create(app);
    if (labels)
        cparsl_call_executors(c, labels);
    cparsl_future_t *f = cparsl_call_submit(c);
    int rc = cparsl_future_error(f);
    if (text)
        snprintf(text, cap, "%s", cparsl_future_errstr(f));
    if (rc == 0) {
        int64_t v = 0;
        CHECK(cparsl_future_get_int(f, &v) == 0 && v == 7, "%s value", app);
    }
    cparsl_future_decref(f);
    return rc;
}

/* A default init and finalize must work (after a failed init). */
static void good_init_cycle(const char *after)
{
    cparsl_error_t err;
    int rc = cparsl_init(NULL, NULL, NULL, &err);
    CHECK(rc == CPARSL_CLIENT, "good init after '%s': %d %s", after, rc,
          err.text);
    if (rc == CPARSL_CLIENT) {
        char text[CPARSL_ERROR_TEXT];
        CHECK(run_app("pinned", NULL, text, sizeof text) == 0,
              "a task runs after '%s': %s", after, text);
        finalize_ok();
    }
}

static const char *const launch_vars[] = {
    "OMPI_COMM_WORLD_SIZE",
    "OMPI_COMM_WORLD_RANK",
    "PMI_SIZE",
    "PMI_RANK",
    "SLURM_STEP_NUM_TASKS",
    "SLURM_PROCID",
    "SLURM_STEP_ID",
    "PMIX_RANK",
    NULL,
};

static void clear_launch_env(void)
{
    for (size_t i = 0; launch_vars[i]; i++)
        unsetenv(launch_vars[i]);
}

/* ---- (a) the default config and its run dirs ---------------------------- */

TEST_CASE(default_config_run_dirs)
{
    enter_tmp();
    CHECK(!cparsl_initialized(), "not initialized before init");
    CHECK(strcmp(cparsl_run_dir(), "") == 0, "run dir before init: '%s'",
          cparsl_run_dir());
    cparsl_error_t err;
    int rc = cparsl_init(NULL, NULL, NULL, &err);
    REQUIRE(rc == CPARSL_CLIENT, "init: %d %s", rc, err.text);
    CHECK(err.code == 0 && err.text[0] == '\0', "err cleared: %d '%s'",
          err.code, err.text);
    CHECK(cparsl_initialized(), "initialized");
    CHECK(strcmp(cparsl_run_dir(), "runinfo/000") == 0, "first run dir: %s",
          cparsl_run_dir());
    CHECK(is_dir("runinfo/000"), "runinfo/000 exists");
    CHECK(file_size("runinfo/000/cparsl.log") >= 0, "log in runinfo/000");
    CHECK(run_app("pinned", NULL, NULL, 0) == 0, "a task runs");
    finalize_ok();
    CHECK(file_size("runinfo/000/cparsl.log") > 0, "log written: %ld",
          file_size("runinfo/000/cparsl.log"));

    rc = cparsl_init(NULL, NULL, NULL, &err);
    REQUIRE(rc == CPARSL_CLIENT, "second init: %d %s", rc, err.text);
    CHECK(strcmp(cparsl_run_dir(), "runinfo/001") == 0, "second run dir: %s",
          cparsl_run_dir());
    CHECK(is_dir("runinfo/001"), "runinfo/001 exists");
    CHECK(file_size("runinfo/001/cparsl.log") >= 0, "log in runinfo/001");
    CHECK(is_dir("runinfo/000"), "the first run dir is kept");
    finalize_ok();
    CHECK(file_size("runinfo/001/cparsl.log") > 0, "second log written");
    leave_tmp();
}

/* ---- (b) config files: CPARSL_CONFIG, --cparsl-config, precedence ------- */

static const char *env_yaml = "run_dir: envdir\n"
                              "executors:\n"
                              "  - type: threadpool\n"
                              "    label: envpool\n"
                              "    max_threads: 2\n";

static const char *arg_yaml = "run_dir: argdir\n"
                              "retries: 2\n";

TEST_CASE(config_env_file)
{
    enter_tmp();
    write_file("env.yaml", env_yaml);
    REQUIRE(setenv("CPARSL_CONFIG", "env.yaml", 1) == 0, "setenv");
    init_ok(NULL);
    CHECK(strcmp(cparsl_run_dir(), "envdir/000") == 0, "run dir %s",
          cparsl_run_dir());
    CHECK(file_size("envdir/000/cparsl.log") >= 0, "log in envdir/000");
    CHECK(!is_dir("runinfo"), "the default run dir is not used");
    CHECK(cparsl_capacity() == 2, "capacity %zu", cparsl_capacity());
    char text[CPARSL_ERROR_TEXT];
    CHECK(run_app("pinned", "envpool", text, sizeof text) == 0,
          "label from the file: %s", text);
    CHECK(run_app("pinned", "threadpool", text, sizeof text) ==
                  -CPARSL_EEXECUTOR &&
              HAS(text, "envpool"),
          "only the file's executor exists: %s", text);
    finalize_ok();
    unsetenv("CPARSL_CONFIG");
    leave_tmp();
}

TEST_CASE(config_arg_forms)
{
    enter_tmp();
    write_file("arg.yaml", arg_yaml);

    /* --cparsl-config=FILE in the middle */
    {
        char *v[] = {"prog", "-x", "--cparsl-config=arg.yaml", "tail", NULL};
        int argc = 4;
        char **argv = v;
        cparsl_error_t err;
        int rc = cparsl_init(&argc, &argv, NULL, &err);
        REQUIRE(rc == CPARSL_CLIENT, "init: %d %s", rc, err.text);
        CHECK(argc == 3, "argc %d", argc);
        CHECK(argv == v, "argv array kept");
        CHECK(strcmp(argv[0], "prog") == 0 && strcmp(argv[1], "-x") == 0 &&
                  strcmp(argv[2], "tail") == 0 && argv[3] == NULL,
              "argv after stripping: %s %s %s %p", argv[0], argv[1], argv[2],
              (void *)argv[3]);
        CHECK(strcmp(cparsl_run_dir(), "argdir/000") == 0, "run dir %s",
              cparsl_run_dir());
        /* retries: 2 from the file allows 3 tries */
        cparsl_future_t *f = cparsl_submit("flaky", CPARSL_I(2));
        int64_t t = -1;
        CHECK(cparsl_future_get_int(f, &t) == 0 && t == 2,
              "retries from --cparsl-config: %s", cparsl_future_errstr(f));
        cparsl_future_decref(f);
        finalize_ok();
    }
    /* --cparsl-config FILE (two words), first and last */
    {
        char *v[] = {"prog", "--cparsl-config", "arg.yaml", NULL};
        int argc = 3;
        char **argv = v;
        cparsl_error_t err;
        int rc = cparsl_init(&argc, &argv, NULL, &err);
        REQUIRE(rc == CPARSL_CLIENT, "init: %d %s", rc, err.text);
        CHECK(argc == 1 && strcmp(argv[0], "prog") == 0 && argv[1] == NULL,
              "argv after stripping two words: argc %d", argc);
        CHECK(strcmp(cparsl_run_dir(), "argdir/001") == 0, "run dir %s",
              cparsl_run_dir());
        finalize_ok();
    }
    /* --cparsl-config FILE between other arguments */
    {
        char *v[] = {"prog", "a", "--cparsl-config", "arg.yaml", "b",
                     "c",    NULL};
        int argc = 6;
        char **argv = v;
        cparsl_error_t err;
        int rc = cparsl_init(&argc, &argv, NULL, &err);
        REQUIRE(rc == CPARSL_CLIENT, "init: %d %s", rc, err.text);
        CHECK(argc == 4 && strcmp(argv[0], "prog") == 0 &&
                  strcmp(argv[1], "a") == 0 && strcmp(argv[2], "b") == 0 &&
                  strcmp(argv[3], "c") == 0 && argv[4] == NULL,
              "argv: argc %d", argc);
        CHECK(strcmp(cparsl_run_dir(), "argdir/002") == 0, "run dir %s",
              cparsl_run_dir());
        finalize_ok();
    }
    /* Other arguments are left alone. */
    {
        char *v[] = {"prog", "--cparsl-configure", "x", NULL};
        int argc = 3;
        char **argv = v;
        cparsl_error_t err;
        int rc = cparsl_init(&argc, &argv, NULL, &err);
        REQUIRE(rc == CPARSL_CLIENT, "init: %d %s", rc, err.text);
        CHECK(argc == 3 && strcmp(argv[1], "--cparsl-configure") == 0 &&
                  strcmp(argv[2], "x") == 0 && argv[3] == NULL,
              "a look-alike argument is kept: argc %d", argc);
        CHECK(strcmp(cparsl_run_dir(), "runinfo/000") == 0, "run dir %s",
              cparsl_run_dir());
        finalize_ok();
    }
    /* --cparsl-config with no file name fails cleanly. */
    {
        char *v[] = {"prog", "--cparsl-config", NULL};
        int argc = 2;
        char **argv = v;
        cparsl_error_t err;
        int rc = cparsl_init(&argc, &argv, NULL, &err);
        CHECK(rc < 0 && err.code == rc && HAS(err.text, "--cparsl-config"),
              "missing file name: %d %s", rc, err.text);
        CHECK(!cparsl_initialized(), "not initialized");
        good_init_cycle("--cparsl-config without a file");
    }
    leave_tmp();
}

TEST_CASE(config_precedence)
{
    enter_tmp();
    write_file("env.yaml", env_yaml);
    write_file("arg.yaml", arg_yaml);
    cparsl_config_t *code = yaml_cfg("run_dir: codedir\n"
                                     "executors:\n"
                                     "  - {type: threadpool, label: codepool,"
                                     " max_threads: 3}\n");
    REQUIRE(setenv("CPARSL_CONFIG", "env.yaml", 1) == 0, "setenv");
    cparsl_error_t err;
    char text[CPARSL_ERROR_TEXT];

    /* arg > env > code: run_dir from the arg file, executors from env. */
    char *v[] = {"prog", "--cparsl-config=arg.yaml", NULL};
    int argc = 2;
    char **argv = v;
    int rc = cparsl_init(&argc, &argv, code, &err);
    REQUIRE(rc == CPARSL_CLIENT, "init: %d %s", rc, err.text);
    CHECK(argc == 1 && argv[1] == NULL, "stripped: argc %d", argc);
    CHECK(strcmp(cparsl_run_dir(), "argdir/000") == 0, "arg wins: %s",
          cparsl_run_dir());
    CHECK(cparsl_capacity() == 2, "executors from env: %zu", cparsl_capacity());
    CHECK(run_app("pinned", "envpool", text, sizeof text) == 0,
          "env's executor: %s", text);
    CHECK(run_app("pinned", "codepool", text, sizeof text) == -CPARSL_EEXECUTOR,
          "code's executor replaced: %s", text);
    cparsl_future_t *f = cparsl_submit("flaky", CPARSL_I(2));
    CHECK(cparsl_future_error(f) == 0, "retries from arg: %s",
          cparsl_future_errstr(f));
    cparsl_future_decref(f);
    finalize_ok();

    /* env > code */
    rc = cparsl_init(NULL, NULL, code, &err);
    REQUIRE(rc == CPARSL_CLIENT, "init: %d %s", rc, err.text);
    CHECK(strcmp(cparsl_run_dir(), "envdir/000") == 0, "env wins: %s",
          cparsl_run_dir());
    CHECK(cparsl_capacity() == 2, "capacity %zu", cparsl_capacity());
    f = cparsl_submit("flaky", CPARSL_I(1));
    CHECK(cparsl_future_error(f) == -CPARSL_EAPP,
          "no retries without the arg file: %s", cparsl_future_errstr(f));
    cparsl_future_decref(f);
    finalize_ok();

    /* code alone */
    unsetenv("CPARSL_CONFIG");
    rc = cparsl_init(NULL, NULL, code, &err);
    REQUIRE(rc == CPARSL_CLIENT, "init: %d %s", rc, err.text);
    CHECK(strcmp(cparsl_run_dir(), "codedir/000") == 0, "code: %s",
          cparsl_run_dir());
    CHECK(cparsl_capacity() == 3, "capacity %zu", cparsl_capacity());
    CHECK(run_app("pinned", "codepool", text, sizeof text) == 0,
          "code's executor: %s", text);
    finalize_ok();

    /* The caller's config is borrowed, not changed by the layers. */
    const cparsl_cnode_t *rd =
        cparsl_cnode_get(cparsl_config_root(code), "run_dir");
    CHECK(rd && strcmp(cparsl_cnode_scalar(rd), "codedir") == 0,
          "cfg untouched");
    cparsl_config_destroy(code);
    leave_tmp();
}

/* ---- (c) bad configs ---------------------------------------------------- */

struct bad {
    const char *yaml;
    int line;            /* expected line in "file:LINE:" */
    const char *key;     /* expected "key 'KEY'", NULL: none */
    const char *want[3]; /* further substrings of the message */
};

static const struct bad bads[] = {
    {"run_dir: somewhere\nretires: 2\n",
     2,
     "retires",
     {"unknown key 'retires'", "did you mean 'retries'"}},
    {"retries: -1\n", 1, "retries", {"expected an integer between 0", "'-1'"}},
    {"# retries\n\nretries: abc\n",
     3,
     "retries",
     {"expected an integer", "'abc'"}},
    {"run_dir: \"\"\n", 1, "run_dir", {"must not be empty"}},
    {"executors: threadpool\n",
     1,
     "executors",
     {"expected a list of executors", "threadpool, testexec"}},
    {"executors:\n  - label: x\n    max_threads: 2\n",
     2,
     "executors[0]",
     {"missing 'type'", "threadpool", "testexec"}},
    {"executors:\n  - type: gpu\n",
     2,
     "executors[0].type",
     {"unknown executor type 'gpu'", "threadpool, testexec"}},
    {"executors:\n"
     "  - {type: threadpool, label: a}\n"
     "  - {type: testexec, label: a}\n",
     3,
     "executors[1].label",
     {"label 'a' is used by two executors"}},
    {"executors:\n  - type: threadpool\n    max_thread: 4\n",
     3,
     "executors[0].max_thread",
     {"unknown key 'max_thread'", "did you mean 'max_threads'"}},
    {"executors:\n  - type: threadpool\n    max_threads: 0\n",
     3,
     "executors[0].max_threads",
     {"expected an integer between 1", "got '0'"}},
    {"log_level: loud\n",
     1,
     "log_level",
     {"expected one of", "error", "debug"}},
    {"retries: 1\ncheckpoint_mode: sometimes\n",
     2,
     "checkpoint_mode",
     {"sometimes", "task_exit", "dfk_exit"}},
    {"retries: 1\nexecutors: [ {type: threadpool\n",
     3,
     NULL,
     {"did not find expected", "CPARSL_CONFIG"}},
};

/* Init with 'yaml' written to 'file', passed 'via' the environment or the
 * argument; must fail with the key, file, line and problem. */
static void expect_bad(const struct bad *b, const char *file, bool via_env,
                       int *good_runs)
{
    write_file(file, b->yaml);
    cparsl_error_t err;
    int rc;
    char arg[128];
    snprintf(arg, sizeof arg, "--cparsl-config=%s", file);
    char *v[] = {"prog", arg, NULL};
    int argc = 2;
    char **argv = v;
    if (via_env) {
        REQUIRE(setenv("CPARSL_CONFIG", file, 1) == 0, "setenv");
        rc = cparsl_init(NULL, NULL, NULL, &err);
        unsetenv("CPARSL_CONFIG");
    } else {
        rc = cparsl_init(&argc, &argv, NULL, &err);
    }
    CHECK(rc == -CPARSL_ECONFIG, "rc %d (%s) for:\n%s", rc, err.text, b->yaml);
    CHECK(err.code == rc, "err.code %d rc %d", err.code, rc);
    CHECK(!cparsl_initialized(), "not initialized after a bad config");
    char loc[160];
    snprintf(loc, sizeof loc, "%s:%d:", file, b->line);
    CHECK(HAS(err.text, loc), "names file and line '%s': %s", loc, err.text);
    if (b->key) {
        char key[128];
        snprintf(key, sizeof key, "key '%s'", b->key);
        CHECK(HAS(err.text, key), "names %s: %s", key, err.text);
    }
    for (size_t i = 0; i < 3 && b->want[i]; i++)
        CHECK(HAS(err.text, b->want[i]), "says '%s': %s", b->want[i], err.text);
    if (rc == CPARSL_CLIENT)
        finalize_ok();
    /* Nothing is left behind, and a good init works (and gets the next run
     * dir number: the failure made none). */
    char want_dir[64];
    snprintf(want_dir, sizeof want_dir, "runinfo/%03d", *good_runs);
    cparsl_error_t e2;
    int rc2 = cparsl_init(NULL, NULL, NULL, &e2);
    CHECK(rc2 == CPARSL_CLIENT, "good init after '%s': %d %s", b->yaml, rc2,
          e2.text);
    if (rc2 == CPARSL_CLIENT) {
        CHECK(strcmp(cparsl_run_dir(), want_dir) == 0, "run dir %s, want %s",
              cparsl_run_dir(), want_dir);
        CHECK(run_app("pinned", NULL, NULL, 0) == 0, "a task runs");
        finalize_ok();
        (*good_runs)++;
    }
}

TEST_CASE(bad_configs)
{
    enter_tmp();
    int good_runs = 0;
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
        char file[32];
        snprintf(file, sizeof file, "bad%zu.yaml", i);
        expect_bad(&bads[i], file, i % 2 == 0, &good_runs);
    }
    /* The YAML syntax error's problem is named too. */
    write_file("syntax.yaml", "run_dir: [x\n");
    cparsl_error_t err;
    REQUIRE(setenv("CPARSL_CONFIG", "syntax.yaml", 1) == 0, "setenv");
    int rc = cparsl_init(NULL, NULL, NULL, &err);
    unsetenv("CPARSL_CONFIG");
    CHECK(rc == -CPARSL_ECONFIG && HAS(err.text, "syntax.yaml:") &&
              HAS(err.text, "CPARSL_CONFIG"),
          "syntax error: %d %s", rc, err.text);
    CHECK(!cparsl_initialized(), "not initialized");
    good_init_cycle("a YAML syntax error");
    leave_tmp();
}

TEST_CASE(missing_config_file)
{
    enter_tmp();
    cparsl_error_t err;
    REQUIRE(setenv("CPARSL_CONFIG", "no/such/env.yaml", 1) == 0, "setenv");
    int rc = cparsl_init(NULL, NULL, NULL, &err);
    unsetenv("CPARSL_CONFIG");
    CHECK(rc == -ENOENT && err.code == rc, "env: rc %d %s", rc, err.text);
    CHECK(HAS(err.text, "no/such/env.yaml") && HAS(err.text, "CPARSL_CONFIG"),
          "names the path and where it came from: %s", err.text);
    CHECK(!cparsl_initialized(), "not initialized");
    good_init_cycle("a missing CPARSL_CONFIG file");

    char *v[] = {"prog", "--cparsl-config", "missing-arg.yaml", NULL};
    int argc = 3;
    char **argv = v;
    rc = cparsl_init(&argc, &argv, NULL, &err);
    CHECK(rc == -ENOENT && err.code == rc, "arg: rc %d %s", rc, err.text);
    CHECK(HAS(err.text, "missing-arg.yaml") && HAS(err.text, "--cparsl-config"),
          "names the path: %s", err.text);
    CHECK(!cparsl_initialized(), "not initialized");
    good_init_cycle("a missing --cparsl-config file");
    leave_tmp();
}

TEST_CASE(bad_config_in_code)
{
    enter_tmp();
    cparsl_config_t *cfg = cparsl_config_create();
    cparsl_error_t err;
    REQUIRE(cfg, "create");
    REQUIRE(cparsl_config_set(cfg, "executors[0].type", "threadpool", &err) ==
                0,
            "set: %s", err.text);
    REQUIRE(cparsl_config_set(cfg, "executors[0].max_threads", "0", &err) == 0,
            "set: %s", err.text);
    int rc = cparsl_init(NULL, NULL, cfg, &err);
    CHECK(rc == -CPARSL_ECONFIG, "rc %d %s", rc, err.text);
    CHECK(HAS(err.text, "<code>") &&
              HAS(err.text, "key 'executors[0].max_threads'"),
          "names the key set in code: %s", err.text);
    CHECK(!cparsl_initialized(), "not initialized");
    cparsl_config_destroy(cfg);
    good_init_cycle("a bad config built in code");
    leave_tmp();
}

/* ---- (d) the multi-rank launch rule ------------------------------------- */

static void expect_launch_fail(const char *var, const char *val,
                               const cparsl_config_t *cfg, int ranks)
{
    clear_launch_env();
    REQUIRE(setenv(var, val, 1) == 0, "setenv %s", var);
    cparsl_error_t err;
    int rc = cparsl_init(NULL, NULL, cfg, &err);
    unsetenv(var);
    CHECK(rc == -CPARSL_ELAUNCH && err.code == rc, "%s=%s: rc %d (%s) %s", var,
          val, rc, cparsl_errname(rc), err.text);
    CHECK(HAS(err.text, "key 'executors'"), "names the key: %s", err.text);
    CHECK(HAS(err.text, "MPI-capable executor"), "says why: %s", err.text);
    char n[64];
    snprintf(n, sizeof n, "%d ranks (%s)", ranks, var);
    CHECK(HAS(err.text, n), "names '%s': %s", n, err.text);
    CHECK(!cparsl_initialized(), "not initialized");
    if (rc == CPARSL_CLIENT)
        finalize_ok();
}

static void expect_single(const char *var, const char *val)
{
    clear_launch_env();
    REQUIRE(setenv(var, val, 1) == 0, "setenv %s", var);
    cparsl_error_t err;
    int rc = cparsl_init(NULL, NULL, NULL, &err);
    unsetenv(var);
    CHECK(rc == CPARSL_CLIENT, "%s=%s alone is a single-process run: %d %s",
          var, val, rc, err.text);
    if (rc == CPARSL_CLIENT) {
        CHECK(run_app("pinned", NULL, NULL, 0) == 0, "a task runs");
        finalize_ok();
    }
}

TEST_CASE(launch_rule)
{
    enter_tmp();
    /* With the default config a multi-rank launch gets extreme_scale, which
     * initializes MPI: that needs a real launcher (tests/CMakeLists.txt
     * runs those under mpiexec).  Here: configs without an MPI-capable
     * executor must refuse, whatever variable says the size. */
    cparsl_config_t *tp = yaml_cfg("executors:\n  - type: threadpool\n");
    cparsl_config_t *two = yaml_cfg("executors:\n  - type: threadpool\n"
                                    "  - type: testexec\n");
    expect_launch_fail("OMPI_COMM_WORLD_SIZE", "4", tp, 4);
    expect_launch_fail("PMI_SIZE", "2", tp, 2);
    expect_launch_fail("SLURM_STEP_NUM_TASKS", "3", tp, 3);
    expect_launch_fail("OMPI_COMM_WORLD_SIZE", "4", two, 4);
    expect_launch_fail("SLURM_STEP_NUM_TASKS", "3", two, 3);
    cparsl_config_destroy(tp);
    cparsl_config_destroy(two);
    /* No size variable: one process. */
    expect_single("PMIX_RANK", "1");
    expect_single("SLURM_STEP_ID", "0");
    expect_single("OMPI_COMM_WORLD_SIZE", "1");
    clear_launch_env();
    good_init_cycle("the launch rule");
    CHECK(!is_dir("runinfo/004"), "failed launches made no run dirs");
    leave_tmp();
}

/* ---- (e) two executors, calls and apps pinned by label ------------------ */

TEST_CASE(executors_by_label)
{
    enter_tmp();
    init_yaml("executors:\n"
              "  - {type: threadpool, label: a, max_threads: 2}\n"
              "  - {type: testexec, label: b, fail_apps: 'pinned, only_a, "
              "only_b'}\n");
    CHECK(cparsl_capacity() == 3, "capacity 2 + 1: %zu", cparsl_capacity());
    char text[CPARSL_ERROR_TEXT];
    /* pinned to b: testexec's injected failure proves where it ran */
    int rc = run_app("pinned", "b", text, sizeof text);
    CHECK(rc == -CPARSL_EEXECUTOR, "pinned to b: %d %s", rc, text);
    CHECK(HAS(text, "injected failure (app 'pinned' is in fail_apps)"),
          "testexec's text: %s", text);
    /* pinned to a: runs on the thread pool */
    for (int i = 0; i < 10; i++)
        CHECK(run_app("pinned", "a", text, sizeof text) == 0, "on a: %s", text);
    /* An app whose default is "a" never lands on b (round robin would put
     * every other unpinned task there). */
    for (int i = 0; i < 20; i++)
        CHECK(run_app("only_a", NULL, text, sizeof text) == 0, "only_a #%d: %s",
              i, text);
    /* ... and one whose default is b always does. */
    rc = run_app("only_b", NULL, text, sizeof text);
    CHECK(rc == -CPARSL_EEXECUTOR && HAS(text, "app 'only_b'"),
          "only_b on b: %d %s", rc, text);
    /* The call's labels override the app's default. */
    rc = run_app("only_a", "b", text, sizeof text);
    CHECK(rc == -CPARSL_EEXECUTOR && HAS(text, "app 'only_a'"),
          "call overrides the app: %d %s", rc, text);
    rc = run_app("only_b", "a", text, sizeof text);
    CHECK(rc == 0, "call overrides the app: %d %s", rc, text);
    /* Either label of a list is fine. */
    CHECK(run_app("pinned", "nosuch,a", text, sizeof text) == 0,
          "a list of labels: %s", text);
    finalize_ok();
    leave_tmp();
}

/* ---- (f) init and finalize misuse --------------------------------------- */

TEST_CASE(init_finalize_misuse)
{
    enter_tmp();
    cparsl_error_t err;
    int rc = cparsl_finalize(&err);
    CHECK(rc < 0 && err.code == rc, "finalize without init: %d", rc);
    CHECK(rc == -CPARSL_ESHUTDOWN && HAS(err.text, "without cparsl_init"),
          "says why: %d %s", rc, err.text);
    CHECK(cparsl_finalize(NULL) < 0, "finalize without init, NULL err");

    init_ok(NULL);
    rc = cparsl_init(NULL, NULL, NULL, &err);
    CHECK(rc == -EALREADY && err.code == rc, "second init: %d %s", rc,
          err.text);
    CHECK(HAS(err.text, "twice"), "says why: %s", err.text);
    CHECK(cparsl_initialized(), "the first init still stands");
    CHECK(strcmp(cparsl_run_dir(), "runinfo/000") == 0,
          "the second init made no run dir: %s", cparsl_run_dir());
    CHECK(!is_dir("runinfo/001"), "no runinfo/001");
    CHECK(run_app("pinned", NULL, NULL, 0) == 0, "still works");
    finalize_ok();
    rc = cparsl_finalize(&err);
    CHECK(rc == -CPARSL_ESHUTDOWN, "finalize twice: %d %s", rc, err.text);

    init_ok(NULL);
    CHECK(strcmp(cparsl_run_dir(), "runinfo/001") == 0,
          "init after finalize: %s", cparsl_run_dir());
    CHECK(run_app("pinned", NULL, NULL, 0) == 0, "works again");
    finalize_ok();
    leave_tmp();
}

/* ---- (g) capacity ------------------------------------------------------- */

TEST_CASE(capacity)
{
    enter_tmp();
    CHECK(cparsl_capacity() == 0, "capacity before init: %zu",
          cparsl_capacity());
    init_yaml("executors:\n  - {type: threadpool, max_threads: 5}\n");
    CHECK(cparsl_capacity() == 5, "max_threads 5: %zu", cparsl_capacity());
    finalize_ok();
    CHECK(cparsl_capacity() == 0, "capacity after finalize: %zu",
          cparsl_capacity());
    init_yaml("executors:\n  - {type: threadpool, max_threads: 1}\n");
    CHECK(cparsl_capacity() == 1, "max_threads 1: %zu", cparsl_capacity());
    finalize_ok();
    /* The default thread pool has one thread per available CPU. */
    cpu_set_t set;
    size_t ncpu = 0;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        ncpu = (size_t)CPU_COUNT(&set);
    init_ok(NULL);
    CHECK(ncpu == 0 || cparsl_capacity() == ncpu, "default %zu, cpus %zu",
          cparsl_capacity(), ncpu);
    finalize_ok();
    leave_tmp();
}

/* ---- (h) a config built in code ----------------------------------------- */

TEST_CASE(config_in_code)
{
    enter_tmp();
    cparsl_config_t *cfg = cparsl_config_create();
    cparsl_error_t err;
    REQUIRE(cfg, "create");
    REQUIRE(cparsl_config_set(cfg, "executors[0].type", "threadpool", &err) ==
                0,
            "set: %s", err.text);
    REQUIRE(cparsl_config_set(cfg, "executors[0].max_threads", "3", &err) == 0,
            "set: %s", err.text);
    REQUIRE(cparsl_config_set(cfg, "run_dir", "coderuns/x", &err) == 0,
            "set: %s", err.text);
    REQUIRE(cparsl_config_set(cfg, "retries", "1", &err) == 0, "set: %s",
            err.text);
    init_ok(cfg);
    cparsl_config_destroy(cfg); /* borrowed only during init */
    CHECK(cparsl_capacity() == 3, "max_threads from code: %zu",
          cparsl_capacity());
    CHECK(strcmp(cparsl_run_dir(), "coderuns/x/000") == 0, "run dir %s",
          cparsl_run_dir());
    CHECK(file_size("coderuns/x/000/cparsl.log") >= 0, "log there");
    char text[CPARSL_ERROR_TEXT];
    CHECK(run_app("pinned", "threadpool", text, sizeof text) == 0,
          "the label defaults to the type: %s", text);
    cparsl_future_t *f = cparsl_submit("flaky", CPARSL_I(1));
    int64_t t = -1;
    CHECK(cparsl_future_get_int(f, &t) == 0 && t == 1, "retries from code: %s",
          cparsl_future_errstr(f));
    cparsl_future_decref(f);
    finalize_ok();
    leave_tmp();
}

static const check_case_t cases[] = {
    TEST_ENTRY(default_config_run_dirs),
    TEST_ENTRY(config_env_file),
    TEST_ENTRY(config_arg_forms),
    TEST_ENTRY(config_precedence),
    TEST_ENTRY(bad_configs),
    TEST_ENTRY(missing_config_file),
    TEST_ENTRY(bad_config_in_code),
    TEST_ENTRY(launch_rule),
    TEST_ENTRY(executors_by_label),
    TEST_ENTRY(init_finalize_misuse),
    TEST_ENTRY(capacity),
    TEST_ENTRY(config_in_code),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    /* The environment of the test run must not configure cparsl. */
    unsetenv("CPARSL_CONFIG");
    clear_launch_env();
    atexit(cleanup_at_exit);
    return check_main(argc, argv, cases);
}
