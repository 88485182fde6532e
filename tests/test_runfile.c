/*
 * test_runfile.c - the workflow side of the HDF5 run file tests.
 *
 * As a driver, run by tests/check_runfile.py, which reads the file it
 * writes with h5py (during the run, after SIGKILL, after a clean close)
 * and with h5dump:
 *
 *   test_runfile write FILE             a known set of tasks, then finalize
 *   test_runfile live FILE READY GO     20 tasks, wait past two flush
 *                                       intervals, create READY, wait for
 *                                       GO to exist, 20 more, finalize
 *   test_runfile kill FILE READY        30 tasks, cparsl_flush, create
 *                                       READY, then hang (to be SIGKILLed)
 *
 * As its own test: `test_runfile bad_config` (every bad store key gives a
 * clear error naming it) and `test_runfile default_path` (the file lands
 * at <run dir>/results.h5).
 *
 * Every task's result is known to the checker: rf_square(i) = i * i,
 * rf_text() = "hello run file", rf_half() = 2.5, rf_nothing() = nil,
 * rf_fail() fails with "boom: on purpose".
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cparsl/cparsl.h>

#define TEST_TMP_TAG "cparsl-runfile"
#include "cparsl_test.h"

static int rf_square(const cparsl_args_t *a, cparsl_value_t *out,
                     cparsl_error_t *err)
{
    int64_t i = cparsl_arg_int(a, 0);
    *out = cparsl_int(i * i);
    return 0;
}
CPARSL_APP(rf_square, rf_square, .signature = "i")

static int rf_add(const cparsl_args_t *a, cparsl_value_t *out,
                  cparsl_error_t *err)
{
    *out = cparsl_int(cparsl_arg_int(a, 0) + cparsl_arg_int(a, 1));
    return 0;
}
CPARSL_APP(rf_add, rf_add, .signature = "ii")

static int rf_text(const cparsl_args_t *a, cparsl_value_t *out,
                   cparsl_error_t *err)
{
    int rc = cparsl_value_set_string(out, "hello run file");
    return rc < 0 ? cparsl_error_set(err, rc, "out of memory") : 0;
}
CPARSL_APP(rf_text, rf_text, .signature = "")

static int rf_half(const cparsl_args_t *a, cparsl_value_t *out,
                   cparsl_error_t *err)
{
    *out = cparsl_double(2.5);
    return 0;
}
CPARSL_APP(rf_half, rf_half, .signature = "")

static int rf_nothing(const cparsl_args_t *a, cparsl_value_t *out,
                      cparsl_error_t *err)
{
    return 0;
}
CPARSL_APP(rf_nothing, rf_nothing, .signature = "")

static int rf_fail(const cparsl_args_t *a, cparsl_value_t *out,
                   cparsl_error_t *err)
{
    return cparsl_error_set(err, CPARSL_EAPP, "boom: on purpose");
}
CPARSL_APP(rf_fail, rf_fail, .signature = "", .retries = 0)

/* A result larger than the store's byte queue: copied on its own. */
static int rf_big(const cparsl_args_t *a, cparsl_value_t *out,
                  cparsl_error_t *err)
{
    size_t n = (size_t)cparsl_arg_int(a, 0);
    char *s = malloc(n + 1);
    if (!s)
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    memset(s, 'x', n);
    s[n] = '\0';
    int rc = cparsl_value_set_string(out, s);
    free(s);
    return rc < 0 ? cparsl_error_set(err, rc, "out of memory") : 0;
}
CPARSL_APP(rf_big, rf_big, .signature = "i")

static int rf_sleep(const cparsl_args_t *a, cparsl_value_t *out,
                    cparsl_error_t *err)
{
    sleep((unsigned)cparsl_arg_int(a, 0));
    return 0;
}
CPARSL_APP(rf_sleep, rf_sleep, .signature = "i")

static void start(const char *path, const char *extra)
{
    char yaml[8192];
    snprintf(yaml, sizeof yaml,
             "run_dir: %s.runinfo\n"
             "executors: [{type: threadpool, max_threads: 2}]\n"
             "store: {type: hdf5, path: '%s', flush_interval: 0.2%s}\n",
             path, path, extra ? extra : "");
    init_yaml(yaml);
}

static void squares(int from, int to)
{
    for (int i = from; i < to; i++) {
        cparsl_future_t *f = cparsl_submit("rf_square", CPARSL_I(i));
        CHECK(get_int(f) == (int64_t)i * i, "square(%d)", i);
        cparsl_future_decref(f);
    }
}

static void touch(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    REQUIRE(fd >= 0, "create %s: %s", path, strerror(errno));
    close(fd);
}

static void nap(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* 50 squares, a sum of two of them, a string, a double, a nil, a failure
 * and a task that depends on it, and a 300,000-byte string: 59 tasks, 3
 * dependency edges.  The smallest queue (64 records, 1 MiB of bytes)
 * makes the DFK wait for the writer and the big result go on its own. */
static int run_write(const char *path)
{
    start(path, ", queue: 64");
    squares(0, 50);
    cparsl_future_t *a = cparsl_submit("rf_square", CPARSL_I(3));
    cparsl_future_t *b = cparsl_submit("rf_square", CPARSL_I(4));
    cparsl_future_t *sum = cparsl_submit("rf_add", CPARSL_F(a), CPARSL_F(b));
    CHECK(get_int(sum) == 25, "3*3 + 4*4");
    cparsl_future_t *fs[] = {
        a,
        b,
        sum,
        cparsl_submit("rf_text"),
        cparsl_submit("rf_half"),
        cparsl_submit("rf_nothing"),
        cparsl_submit("rf_fail"),
        cparsl_submit("rf_big", CPARSL_I(300000)),
    };
    cparsl_future_t *dep =
        cparsl_submit("rf_add", CPARSL_F(fs[6]), CPARSL_I(1));
    CHECK(cparsl_future_wait(dep, 30) == 0, "dep_fail task done");
    CHECK(cparsl_future_error(dep) != 0, "the dependent task failed");
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++)
        cparsl_future_decref(fs[i]);
    cparsl_future_decref(dep);
    finalize_ok();
    return check_done();
}

static int run_live(const char *path, const char *ready, const char *go)
{
    start(path, NULL);
    squares(0, 20);
    cparsl_wait_all_tasks(-1);
    nap(0.6); /* three flush intervals: the timer, not cparsl_flush */
    touch(ready);
    for (int i = 0; i < 1500 && access(go, F_OK) != 0; i++)
        nap(0.02);
    CHECK(access(go, F_OK) == 0, "the checker said go");
    squares(20, 40);
    finalize_ok();
    return check_done();
}

static int run_kill(const char *path, const char *ready)
{
    start(path, NULL);
    squares(0, 30);
    cparsl_wait_all_tasks(-1);
    cparsl_error_t err;
    REQUIRE(cparsl_flush(&err) == 0, "flush: %s", err.text);
    /* Tasks still running when the kill comes: never final, never rows. */
    cparsl_future_t *f = cparsl_submit("rf_sleep", CPARSL_I(60));
    touch(ready);
    nap(60);
    cparsl_future_decref(f);
    return 1; /* the checker kills us first */
}

/* ---- cases of their own ------------------------------------------------ */

static void expect_bad(const char *store, const char *needle, int code)
{
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "executors: [{type: threadpool, max_threads: 1}]\n"
             "store: %s\n",
             store);
    cparsl_config_t *cfg = NULL;
    cparsl_error_t err;
    REQUIRE(cparsl_config_load_string(&cfg, yaml, "bad.yaml", &err) == 0, "%s",
            err.text);
    int rc = cparsl_init(NULL, NULL, cfg, &err);
    cparsl_config_destroy(cfg);
    CHECK(rc == code, "store %s: rc %d, expected %d (%s)", store, rc, code,
          err.text);
    CHECK(strstr(err.text, needle) != NULL,
          "store %s: error '%s' does not name '%s'", store, err.text, needle);
    if (rc == CPARSL_CLIENT)
        finalize_ok();
}

TEST_CASE(bad_config)
{
    enter_tmp();
    expect_bad("{type: hdf5, flush_intreval: 1}", "flush_intreval",
               -CPARSL_ECONFIG);
    expect_bad("{type: hdf5, flush_interval: 0}", "store.flush_interval",
               -CPARSL_ECONFIG);
    expect_bad("{type: hdf5, flush_interval: -1}", "store.flush_interval",
               -CPARSL_ECONFIG);
    expect_bad("{type: hdf5, flush_interval: soon}", "store.flush_interval",
               -CPARSL_ECONFIG);
    expect_bad("{type: hdf5, queue: 0}", "store.queue", -CPARSL_ECONFIG);
    expect_bad("{type: hdf5, queue: many}", "store.queue", -CPARSL_ECONFIG);
    expect_bad("{type: hdf5, path: ''}", "store.path", -CPARSL_ECONFIG);
    expect_bad("{type: hdf5, path: [a, b]}", "store.path", -CPARSL_ECONFIG);
    expect_bad("{type: hdf5, path: /nonexistent-dir/x.h5}",
               "cannot create '/nonexistent-dir/x.h5'", -EIO);
    /* After all those failures a good config still works. */
    expect_bad("{type: hdf5}", "", CPARSL_CLIENT);
    leave_tmp();
}

TEST_CASE(default_path)
{
    enter_tmp();
    init_yaml("executors: [{type: threadpool, max_threads: 2}]\n"
              "store: {type: hdf5}\n");
    char path[4200];
    snprintf(path, sizeof path, "%s/results.h5", cparsl_run_dir());
    squares(0, 10);
    cparsl_error_t err;
    CHECK(cparsl_flush(&err) == 0, "flush: %s", err.text);
    struct stat st;
    CHECK(stat(path, &st) == 0 && st.st_size > 0, "%s exists", path);
    finalize_ok();
    CHECK(cparsl_flush(&err) == -CPARSL_ESHUTDOWN, "flush after finalize");
    leave_tmp();
}

static const check_case_t cases[] = {
    TEST_ENTRY(bad_config),
    TEST_ENTRY(default_path),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    atexit(cleanup_at_exit);
    if (argc == 3 && strcmp(argv[1], "write") == 0)
        return run_write(argv[2]);
    if (argc == 5 && strcmp(argv[1], "live") == 0)
        return run_live(argv[2], argv[3], argv[4]);
    if (argc == 4 && strcmp(argv[1], "kill") == 0)
        return run_kill(argv[2], argv[3]);
    return check_main(argc, argv, cases);
}
