/*
 * test_checkpoint.c - the workflow side of the checkpoint and resume tests
 * (tests/check_checkpoint.py drives it and reads the run files with h5py).
 *
 *   test_checkpoint FILE MODE N [options]
 *
 * runs N memoized calls ck_square(i) = i * i + 7 (i = 0 .. N-1, in that
 * order, so task i + 1 is the call with argument i) on two threads, with
 * checkpoint_mode MODE and the run file at FILE ("-": the default
 * <run dir>/results.h5).  It checks every answer, and prints
 * "executed E" (how many bodies ran in this process) before finalizing.
 *
 *   --resume R       checkpoint_files: R (a file, a run dir, latest, all)
 *   --resume-raw Y   checkpoint_files: Y, as YAML text
 *   --run-dir D      run_dir (default FILE.runinfo)
 *   --period P       checkpoint_period (HH:MM:SS)
 *   --store S        store type (default hdf5)
 *   --sleep-ms S     each body sleeps S ms (default 0)
 *   --fail-odd       odd arguments fail (errors are never checkpointed)
 *   --version V      the app's version (default: the build-id)
 *   --kill-after K READY
 *                    once the first K answers are in, wait WAIT seconds,
 *                    create READY and hang until killed
 *   --wait W         that wait (default 0.3)
 *   --manual K       submit K calls, cparsl_checkpoint(), then the rest
 *
 * Exit 0 when every answer is right, 1 when one is not, 3 when cparsl_init
 * fails (its error on stderr: the bad-input cases), 2 on bad usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cparsl/cparsl.h>

static _Atomic long executed;
static int sleep_ms;
static bool fail_odd;

static void nap(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static int ck_square(const cparsl_args_t *a, cparsl_value_t *out,
                     cparsl_error_t *err)
{
    int64_t i = cparsl_arg_int(a, 0);
    atomic_fetch_add(&executed, 1);
    if (sleep_ms)
        nap(sleep_ms / 1000.0);
    if (fail_odd && i % 2)
        return cparsl_error_set(err, CPARSL_EAPP, "odd argument %lld",
                                (long long)i);
    *out = cparsl_int(i * i + 7);
    return 0;
}

static cparsl_app_t app = {
    .name = "ck_square",
    .kind = CPARSL_KIND_C,
    .fn = ck_square,
    .signature = "i",
    .cache = 1,
    .retries = 0,
};

static int usage(void)
{
    fputs(
        "usage: test_checkpoint FILE MODE N [--resume R] [--run-dir D] "
        "[--resume-raw Y] [--period P] [--store S] [--sleep-ms S] [--fail-odd] "
        "[--version V] [--kill-after K READY] [--wait W] [--manual K]\n",
        stderr);
    return 2;
}

/* Wait for f; 0 if its answer is right (an error for odd i with
 * --fail-odd), 1 otherwise. */
static int check(cparsl_future_t *f, long i)
{
    if (cparsl_future_wait(f, 120) != 0) {
        fprintf(stderr, "test_checkpoint: call %ld never finished\n", i);
        return 1;
    }
    if (fail_odd && i % 2) {
        if (cparsl_future_error(f) == 0) {
            fprintf(stderr, "test_checkpoint: call %ld should fail\n", i);
            return 1;
        }
        return 0;
    }
    int64_t v = -1;
    if (cparsl_future_get_int(f, &v) != 0 || v != (int64_t)i * i + 7) {
        fprintf(stderr, "test_checkpoint: call %ld: %lld (%s), want %lld\n", i,
                (long long)v, cparsl_future_errstr(f),
                (long long)((int64_t)i * i + 7));
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4)
        return usage();
    const char *file = argv[1], *mode = argv[2];
    long n = strtol(argv[3], NULL, 10);
    const char *resume = NULL, *resume_raw = NULL, *run_dir = NULL;
    const char *period = NULL;
    const char *store = "hdf5", *ready = NULL;
    long kill_after = -1, manual = -1;
    double wait = 0.3;
    for (int i = 4; i < argc; i++) {
        const char *o = argv[i];
        bool more = i + 1 < argc;
        if (!strcmp(o, "--resume") && more)
            resume = argv[++i];
        else if (!strcmp(o, "--resume-raw") && more)
            resume_raw = argv[++i];
        else if (!strcmp(o, "--run-dir") && more)
            run_dir = argv[++i];
        else if (!strcmp(o, "--period") && more)
            period = argv[++i];
        else if (!strcmp(o, "--store") && more)
            store = argv[++i];
        else if (!strcmp(o, "--sleep-ms") && more)
            sleep_ms = atoi(argv[++i]);
        else if (!strcmp(o, "--fail-odd"))
            fail_odd = true;
        else if (!strcmp(o, "--version") && more)
            app.version = argv[++i];
        else if (!strcmp(o, "--kill-after") && i + 2 < argc) {
            kill_after = strtol(argv[++i], NULL, 10);
            ready = argv[++i];
        } else if (!strcmp(o, "--wait") && more)
            wait = atof(argv[++i]);
        else if (!strcmp(o, "--manual") && more)
            manual = strtol(argv[++i], NULL, 10);
        else
            return usage();
    }
    if (n < 1 || n > 1000000)
        return usage();

    char yaml[16384], rd[4200];
    snprintf(rd, sizeof rd, "%s.runinfo", file);
    int len = snprintf(yaml, sizeof yaml,
                       "run_dir: '%s'\n"
                       "executors: [{type: threadpool, max_threads: 2}]\n"
                       "checkpoint_mode: %s\n",
                       run_dir ? run_dir : rd, mode);
    if (strcmp(store, "hdf5") == 0)
        len += snprintf(yaml + len, sizeof yaml - (size_t)len,
                        "store: {type: hdf5, flush_interval: 30%s%s%s}\n",
                        strcmp(file, "-") ? ", path: '" : "",
                        strcmp(file, "-") ? file : "",
                        strcmp(file, "-") ? "'" : "");
    else
        len += snprintf(yaml + len, sizeof yaml - (size_t)len,
                        "store: {type: %s}\n", store);
    if (period)
        len += snprintf(yaml + len, sizeof yaml - (size_t)len,
                        "checkpoint_period: '%s'\n", period);
    if (resume && (!strcmp(resume, "latest") || !strcmp(resume, "all")))
        len += snprintf(yaml + len, sizeof yaml - (size_t)len,
                        "checkpoint_files: %s\n", resume);
    else if (resume)
        len += snprintf(yaml + len, sizeof yaml - (size_t)len,
                        "checkpoint_files: ['%s']\n", resume);
    if (resume_raw)
        len += snprintf(yaml + len, sizeof yaml - (size_t)len,
                        "checkpoint_files: %s\n", resume_raw);

    cparsl_error_t err;
    cparsl_config_t *cfg = NULL;
    if (cparsl_config_load_string(&cfg, yaml, "test.yaml", &err) < 0) {
        fprintf(stderr, "test_checkpoint: config: %s\n", err.text);
        return 2;
    }
    if (cparsl_app_register(&app) < 0) {
        fprintf(stderr, "test_checkpoint: cannot register the app\n");
        return 2;
    }
    int rc = cparsl_init(NULL, NULL, cfg, &err);
    cparsl_config_destroy(cfg);
    if (rc != CPARSL_CLIENT) {
        fprintf(stderr, "test_checkpoint: init: %s\n", err.text);
        return 3;
    }

    cparsl_future_t **fs = calloc((size_t)n, sizeof *fs);
    if (!fs)
        return 2;
    int bad = 0;
    long first = manual >= 0 && manual < n ? manual : n;
    for (long i = 0; i < first; i++)
        fs[i] = cparsl_submit("ck_square", CPARSL_I(i));
    if (manual >= 0) {
        for (long i = 0; i < first; i++)
            bad |= check(fs[i], i);
        if (cparsl_checkpoint(&err) != 0) {
            fprintf(stderr, "test_checkpoint: checkpoint: %s\n", err.text);
            bad = 1;
        }
        for (long i = first; i < n; i++)
            fs[i] = cparsl_submit("ck_square", CPARSL_I(i));
    }
    for (long i = 0; i < n; i++) {
        bad |= check(fs[i], i);
        if (i + 1 == kill_after || (ready && kill_after >= n && i + 1 == n)) {
            nap(wait);
            int fd =
                open(ready, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            if (fd >= 0)
                close(fd);
            printf("ready after %ld, executed %ld\n", i + 1,
                   atomic_load(&executed));
            fflush(stdout);
            nap(120); /* killed here */
        }
    }
    printf("executed %ld\n", atomic_load(&executed));
    fflush(stdout);
    for (long i = 0; i < n; i++)
        cparsl_future_decref(fs[i]);
    free(fs);
    if (cparsl_finalize(&err) != 0) {
        fprintf(stderr, "test_checkpoint: finalize: %s\n", err.text);
        bad = 1;
    }
    return bad;
}
