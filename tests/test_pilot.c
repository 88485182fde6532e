/*
 * test_pilot.c - the MPI pilot end to end, as one MPI job per case:
 *
 *   mpiexec -n 4 test_pilot CASE
 *
 * Rank 0 is the client (cparsl_init returns CPARSL_CLIENT) and runs the
 * case; ranks 1-3 serve as worker slots until the client finalizes
 * (cparsl_init returns CPARSL_SERVED), then finalize and exit.  Every rank
 * works in one scratch directory shared by the job (named after the
 * launcher's job id), which rank 0 removes when the case passed.
 *
 * Cases:
 *   many_tasks_process, many_tasks_inrank   100,000 tasks through a window
 *   crash_one_percent    1% of the tasks die of SIGSEGV; then retries
 *   worker_env           what an isolated child sees; a nested mpiexec
 *   pinning_inrank, pinning_process         cpu_affinity block
 *   walltime_process     a task past its walltime; its worker is replaced
 *   spread_process, spread_inrank           3 long tasks on 3 idle slots
 *                        run at once
 *   signals              SIGTERM to every rank: orderly shutdown
 *   leftovers            a normal run (check_leftovers.sh checks after)
 *   app_mpi_init         the application initializes and finalizes MPI
 *   tiers                3 emulated nodes (emulate_nodes_per_host 3) behind
 *                        2 sub-interchanges (tier_size 2): every answer of
 *                        100,000 tasks, and crashes with retries 0
 */
#include <errno.h>
#include <ftw.h>
#include <mpi.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <cparsl/cparsl.h>

#include "check.h"

/*
 * Under AddressSanitizer, record whole stacks for allocations: Open MPI and
 * PMIx are built without frame pointers (and some of their modules are
 * unloaded before the leak check), so the fast unwinder stops inside them
 * and the library-name suppressions of tests/lsan.supp never see a frame
 * to match.  ASAN_OPTIONS from the environment still wins.
 */
#if defined(__SANITIZE_ADDRESS__)
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "fast_unwind_on_malloc=0";
}
#endif

#define HAS(text, sub) (strstr((text), (sub)) != NULL)

/* The job's shared scratch directory (absolute). */
static char g_dir[4096];
/* Ranks in the job (from the launcher) and worker slots expected. */
#define NRANKS 4
#define NSLOTS (NRANKS - 1)

/* ---- helpers --------------------------------------------------------------
 */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void nap(double seconds)
{
    struct timespec ts = {(time_t)seconds,
                          (long)((seconds - (double)(time_t)seconds) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* This rank's number, read from the launcher's environment. */
static int env_rank(void)
{
    static const char *const names[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK",
                                        "PMI_RANK", "SLURM_PROCID", NULL};
    for (size_t i = 0; names[i]; i++) {
        const char *v = getenv(names[i]);
        if (v && *v)
            return atoi(v);
    }
    return -1;
}

/* A key that every rank of this job shares and another job does not. */
static const char *job_key(char *buf, size_t cap)
{
    static const char *const names[] = {
        "PMIX_NAMESPACE", "OMPI_MCA_ess_base_jobid", "SLURM_JOB_ID", NULL};
    for (size_t i = 0; names[i]; i++) {
        const char *v = getenv(names[i]);
        if (v && *v) {
            snprintf(buf, cap, "%s", v);
            for (char *p = buf; *p; p++)
                if (*p == '/' || *p == '.' || *p == ' ')
                    *p = '_';
            return buf;
        }
    }
    snprintf(buf, cap, "ppid%ld", (long)getppid());
    return buf;
}

/* Every rank: make (or find) the job's directory and work in it. */
static int enter_dir(const char *casename)
{
    const char *tmp = getenv("TMPDIR");
    char key[128];
    if (!tmp || !*tmp)
        tmp = "/tmp";
    snprintf(g_dir, sizeof g_dir, "%s/cparsl-pilot-%s-%s", tmp, casename,
             job_key(key, sizeof key));
    if (mkdir(g_dir, 0700) < 0 && errno != EEXIST) {
        fprintf(stderr, "cannot create %s: %s\n", g_dir, strerror(errno));
        return -1;
    }
    if (chdir(g_dir) < 0) {
        fprintf(stderr, "cannot enter %s: %s\n", g_dir, strerror(errno));
        return -1;
    }
    return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag,
                  struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

static void remove_dir(void)
{
    if (chdir("/") == 0)
        nftw(g_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static cparsl_config_t *make_config(const char *isolation, const char *affinity,
                                    bool tiers)
{
    cparsl_config_t *cfg = cparsl_config_create();
    cparsl_error_t err;
    REQUIRE(cfg != NULL, "out of memory");
    struct {
        const char *path, *value;
    } kv[] = {
        {"executors[0].type", "extreme_scale"},
        {"executors[0].isolation", isolation},
        {"executors[0].cpu_affinity", affinity},
        {"executors[0].start_timeout", "60"},
        {"executors[0].emulate_nodes_per_host", tiers ? "3" : NULL},
        {"executors[0].tier_size", tiers ? "2" : NULL},
    };
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++) {
        if (!kv[i].value)
            continue;
        int rc = cparsl_config_set(cfg, kv[i].path, kv[i].value, &err);
        REQUIRE(rc == 0, "config %s: %s", kv[i].path, err.text);
    }
    return cfg;
}

/* Submit 'app'(i) for i in [0, n) keeping at most 'window' futures in
 * flight; each finished future (oldest first) goes to 'check', which
 * returns false for a wrong answer.  Returns the number of wrong ones and
 * reports the first few. */
typedef bool (*answer_fn)(long i, cparsl_future_t *f, char *why, size_t cap);

static long run_window(const char *app, long n, int retries, size_t window,
                       answer_fn check)
{
    cparsl_future_t **ring = calloc(window, sizeof *ring);
    REQUIRE(ring != NULL, "out of memory");
    long head = 0, next = 0, wrong = 0;
    while (head < n) {
        while (next < n && next - head < (long)window) {
            cparsl_call_t *c = cparsl_call_create(app);
            REQUIRE(c != NULL, "out of memory");
            cparsl_call_arg(c, cparsl_int(next));
            if (retries >= 0)
                cparsl_call_retries(c, retries);
            ring[next % (long)window] = cparsl_call_submit(c);
            next++;
        }
        cparsl_future_t *f = ring[head % (long)window];
        REQUIRE(cparsl_future_wait(f, 120) == 0,
                "%s(%ld) not done after 120 s (task %llu)", app, head,
                (unsigned long long)cparsl_future_id(f));
        char why[600] = "";
        if (!check(head, f, why, sizeof why)) {
            if (wrong < 10)
                fprintf(stderr, "  %s(%ld): %s\n", app, head, why);
            wrong++;
        }
        cparsl_future_decref(f);
        head++;
    }
    free(ring);
    return wrong;
}

static bool answer_f3(long i, cparsl_future_t *f, char *why, size_t cap)
{
    int64_t v = -1;
    int rc = cparsl_future_get_int(f, &v);
    if (rc == 0 && v == 3 * (int64_t)i + 1)
        return true;
    snprintf(why, cap, "rc %d (%s) value %lld, expected %lld", rc,
             cparsl_future_errstr(f), (long long)v, 3 * (long long)i + 1);
    return false;
}

static bool crashes(int64_t i)
{
    return i % 100 == 7;
}

static bool names_segv(const char *text)
{
    return HAS(text, "SIGSEGV") || HAS(text, "signal 11") ||
           HAS(text, "Segmentation");
}

static bool answer_crashy(long i, cparsl_future_t *f, char *why, size_t cap)
{
    if (!crashes(i))
        return answer_f3(i, f, why, cap);
    int rc = cparsl_future_error(f);
    const char *text = cparsl_future_errstr(f);
    if (rc == -CPARSL_EWORKER && names_segv(text))
        return true;
    snprintf(why, cap,
             "expected -CPARSL_EWORKER naming SIGSEGV, got %d (%s): %s", rc,
             cparsl_errname(rc), text);
    return false;
}

static void check_capacity(void)
{
    size_t cap = cparsl_capacity();
    CHECK(cap == NSLOTS,
          "capacity %zu, expected %d (%d ranks, one slot per "
          "non-client rank)",
          cap, NSLOTS, NRANKS);
}

/* ---- apps ------------------------------------------------------------------
 */

static int app_f3(const cparsl_args_t *a, cparsl_value_t *r,
                  cparsl_error_t *err)
{
    (void)err;
    *r = cparsl_int(3 * cparsl_arg_int(a, 0) + 1);
    return 0;
}
CPARSL_APP(f3, app_f3, .signature = "i")

/* f3, except that 1% of the arguments die of SIGSEGV. */
static int app_crashy(const cparsl_args_t *a, cparsl_value_t *r,
                      cparsl_error_t *err)
{
    if (crashes(cparsl_arg_int(a, 0)))
        raise(SIGSEGV);
    return app_f3(a, r, err);
}
CPARSL_APP(crashy, app_crashy, .signature = "i")

/* The same, but only on the first try. */
static int app_crash_first(const cparsl_args_t *a, cparsl_value_t *r,
                           cparsl_error_t *err)
{
    if (crashes(cparsl_arg_int(a, 0)) && cparsl_args_try(a) == 0)
        raise(SIGSEGV);
    return app_f3(a, r, err);
}
CPARSL_APP(crash_first, app_crash_first, .signature = "i")

/* The worker's value of environment variable 'name', or nil. */
static int app_getenv(const cparsl_args_t *a, cparsl_value_t *r,
                      cparsl_error_t *err)
{
    (void)err;
    const char *v = getenv(cparsl_arg_str(a, 0));
    if (!v) {
        *r = cparsl_nil();
        return 0;
    }
    return cparsl_value_set_string(r, v);
}
CPARSL_APP(worker_getenv, app_getenv, .signature = "s")

/* "RANK/COUNT/MANAGER/BLOCK" from the CPARSL_WORKER_* variables. */
static int app_ident(const cparsl_args_t *a, cparsl_value_t *r,
                     cparsl_error_t *err)
{
    (void)a;
    (void)err;
    const char *n[4] = {"CPARSL_WORKER_RANK", "CPARSL_WORKER_COUNT",
                        "CPARSL_MANAGER_ID", "CPARSL_BLOCK_ID"};
    const char *v[4];
    for (int i = 0; i < 4; i++)
        v[i] = getenv(n[i]) ? getenv(n[i]) : "unset";
    usleep(2000);
    return cparsl_value_printf(r, "%s/%s/%s/%s", v[0], v[1], v[2], v[3]);
}
CPARSL_APP(ident, app_ident, .signature = "i")

/* A job of its own from inside a task: each of its 2 ranks prints its
 * world size and rank. */
CPARSL_BASH_APP(nested_mpi, "{0} --allow-run-as-root --oversubscribe "
                            "--bind-to none -n 2 printenv "
                            "OMPI_COMM_WORLD_SIZE OMPI_COMM_WORLD_RANK")

/* The calling thread's CPU affinity as "0,1,...". */
static int app_cpus(const cparsl_args_t *a, cparsl_value_t *r,
                    cparsl_error_t *err)
{
    (void)a;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) < 0)
        return cparsl_error_set(err, -errno, "sched_getaffinity: %s",
                                strerror(errno));
    char buf[1024];
    size_t len = 0;
    buf[0] = '\0';
    for (int c = 0; c < CPU_SETSIZE && len < sizeof buf - 16; c++)
        if (CPU_ISSET(c, &set))
            len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%d",
                                    len ? "," : "", c);
    usleep(3000); /* so that every slot gets some */
    return cparsl_value_set_string(r, buf);
}
CPARSL_APP(cpus, app_cpus, .signature = "i")

/* Sleeps arg 0 seconds, returns the worker's pid. */
static int app_sleep_pid(const cparsl_args_t *a, cparsl_value_t *r,
                         cparsl_error_t *err)
{
    (void)err;
    nap(cparsl_arg_double(a, 0));
    *r = cparsl_int((int64_t)getpid());
    return 0;
}
CPARSL_APP(sleep_pid, app_sleep_pid, .signature = "d")

/* Sleeps 0.5 s; returns {its argument, the time it started}. */
static double real_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int app_slow_id(const cparsl_args_t *a, cparsl_value_t *r,
                       cparsl_error_t *err)
{
    (void)err;
    double v[2] = {(double)cparsl_arg_int(a, 0), real_s()};
    nap(0.5);
    cparsl_value_t arr = cparsl_double_array(v, 2);
    return cparsl_value_copy(r, &arr);
}
CPARSL_APP(slow_id, app_slow_id, .signature = "i")

CPARSL_BASH_APP(echo_to, "echo {0} > {outputs[0]}")

/* ---- cases -----------------------------------------------------------------
 */

static void many_tasks(const char *mode)
{
    check_capacity();
    long n = check_scale(100000);
    double t0 = now_s();
    long wrong = run_window("f3", n, -1, 2048, answer_f3);
    double dt = now_s() - t0;
    CHECK(wrong == 0, "%ld of %ld results wrong", wrong, n);
    fprintf(stderr, "many_tasks_%s: %ld tasks in %.2f s (%.0f tasks/s)\n", mode,
            n, dt, (double)n / dt);
}

static void case_many_tasks_process(void)
{
    many_tasks("process");
}

static void case_many_tasks_inrank(void)
{
    many_tasks("inrank");
}

static void case_crash_one_percent(void)
{
    check_capacity();
    long n = check_scale(20000);
    long expect_crash = 0;
    for (long i = 0; i < n; i++)
        expect_crash += crashes(i);
    double t0 = now_s();
    long wrong = run_window("crashy", n, 0, 1024, answer_crashy);
    double t1 = now_s();
    CHECK(wrong == 0,
          "retries 0: %ld of %ld answers wrong (%ld should "
          "crash)",
          wrong, n, expect_crash);
    wrong = run_window("crash_first", n, 1, 1024, answer_f3);
    double t2 = now_s();
    CHECK(wrong == 0, "retries 1: %ld of %ld answers wrong", wrong, n);
    fprintf(stderr,
            "crash_one_percent: %ld tasks (%ld crashes) in %.2f s; with "
            "retries in %.2f s\n",
            n, expect_crash, t1 - t0, t2 - t1);
    /* The slots replaced their workers: a last batch still runs. */
    CHECK(run_window("f3", 100, -1, 100, answer_f3) == 0, "after crashes");
}

/* The child's value of 'name' (NULL when unset) into buf. */
static const char *child_getenv(const char *name, char *buf, size_t cap,
                                bool *ok)
{
    cparsl_future_t *f = cparsl_submit("worker_getenv", CPARSL_S(name));
    const cparsl_value_t *v = NULL;
    int rc = cparsl_future_get(f, &v);
    *ok =
        rc == 0 && v && (v->type == CPARSL_T_NIL || v->type == CPARSL_T_STRING);
    CHECK(*ok, "getenv(%s) in a worker: %d %s", name, rc,
          cparsl_future_errstr(f));
    const char *out = NULL;
    if (*ok && v->type == CPARSL_T_STRING) {
        snprintf(buf, cap, "%s", v->u.str.p);
        out = buf;
    }
    cparsl_future_decref(f);
    return out;
}

static void case_worker_env(void)
{
    check_capacity();
    char buf[4096];
    bool ok;
    /* The launcher's job identity: set here, dropped in the children. */
    static const char *const dropped[] = {"OMPI_COMM_WORLD_SIZE",
                                          "OMPI_COMM_WORLD_RANK",
                                          "OMPI_COMM_WORLD_LOCAL_RANK",
                                          "OMPI_UNIVERSE_SIZE",
                                          "OMPI_MCA_ess_base_jobid",
                                          "OMPI_MCA_orte_hnp_uri",
                                          "PMIX_RANK",
                                          "PMIX_NAMESPACE",
                                          "PMIX_SERVER_URI2",
                                          "PMI_RANK",
                                          "PMI_SIZE",
                                          "SLURM_PROCID",
                                          "SLURM_STEP_ID",
                                          NULL};
    CHECK(getenv("OMPI_COMM_WORLD_SIZE") && getenv("PMIX_RANK"),
          "the client itself should see the launcher's variables");
    for (size_t i = 0; dropped[i]; i++) {
        const char *v = child_getenv(dropped[i], buf, sizeof buf, &ok);
        CHECK(ok && v == NULL, "%s reached a worker child: '%s'", dropped[i],
              v ? v : "");
    }
    /* The user's own settings (OMPI_MCA_* exported before mpiexec, and
     * what mpiexec's options turned into) are kept as they are. */
    static const char *const kept[] = {"OMPI_ALLOW_RUN_AS_ROOT",
                                       "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM",
                                       "OMPI_MCA_rmaps_base_oversubscribe",
                                       "OMPI_MCA_mpi_warn_on_fork",
                                       "CPARSL_TEST_MPIEXEC",
                                       "PATH",
                                       NULL};
    int seen = 0;
    for (size_t i = 0; kept[i]; i++) {
        const char *mine = getenv(kept[i]);
        if (!mine)
            continue;
        seen++;
        const char *v = child_getenv(kept[i], buf, sizeof buf, &ok);
        CHECK(ok && v && strcmp(v, mine) == 0,
              "%s: the client has '%s', a worker child '%s'", kept[i], mine,
              v ? v : "(unset)");
    }
    CHECK(getenv("OMPI_ALLOW_RUN_AS_ROOT") &&
              getenv("OMPI_MCA_mpi_warn_on_fork"),
          "run this case with OMPI_ALLOW_RUN_AS_ROOT and "
          "OMPI_MCA_mpi_warn_on_fork exported (CTest does), so that kept "
          "variables are checked (%d seen)",
          seen);

    /* CPARSL_WORKER_*: every slot, consistent values. */
    long n = 60;
    cparsl_future_t *fs[60];
    for (long i = 0; i < n; i++)
        fs[i] = cparsl_submit("ident", CPARSL_I(i));
    bool rank_seen[NSLOTS] = {false};
    for (long i = 0; i < n; i++) {
        const char *s = NULL;
        int rc = cparsl_future_get_string(fs[i], &s);
        int wr = -1, wc = -1, mid = -1;
        char block[64] = "";
        int k = rc == 0 ? sscanf(s, "%d/%d/%d/%63s", &wr, &wc, &mid, block) : 0;
        CHECK(k == 4 && wc == NSLOTS && wr >= 0 && wr < wc && mid >= 1 &&
                  mid < NRANKS && strcmp(block, "0") == 0,
              "ident: rc %d '%s' (expected RANK/%d/MANAGER/0)", rc,
              rc == 0 ? s : cparsl_future_errstr(fs[i]), NSLOTS);
        if (k == 4 && wr >= 0 && wr < NSLOTS)
            rank_seen[wr] = true;
        cparsl_future_decref(fs[i]);
    }
    int distinct = 0;
    for (int i = 0; i < NSLOTS; i++)
        distinct += rank_seen[i];
    CHECK(distinct >= 2,
          "only %d distinct CPARSL_WORKER_RANK values in %ld "
          "tasks",
          distinct, n);

    /* A task's own mpiexec starts a job of its own. */
    const char *mpiexec = getenv("CPARSL_TEST_MPIEXEC");
    if (!mpiexec || !*mpiexec)
        mpiexec = "mpiexec";
    char outpath[4200];
    snprintf(outpath, sizeof outpath, "%s/nested.out", g_dir);
    cparsl_call_t *c = cparsl_call_create("nested_mpi");
    cparsl_call_arg(c, cparsl_str(mpiexec));
    cparsl_call_stdout(c, outpath, CPARSL_TRUNCATE);
    double t0 = now_s();
    cparsl_future_t *f = cparsl_call_submit(c);
    int rc = cparsl_future_error(f);
    CHECK(rc == 0, "nested mpiexec: %d %s", rc, cparsl_future_errstr(f));
    cparsl_future_decref(f);
    fprintf(stderr, "worker_env: nested mpiexec took %.2f s\n", now_s() - t0);
    int twos = 0, zeros = 0, ones = 0, other = 0;
    FILE *in = fopen(outpath, "r");
    CHECK(in != NULL, "no %s", outpath);
    char line[256];
    while (in && fgets(line, sizeof line, in)) {
        line[strcspn(line, "\n")] = '\0';
        if (strcmp(line, "2") == 0)
            twos++;
        else if (strcmp(line, "0") == 0)
            zeros++;
        else if (strcmp(line, "1") == 0)
            ones++;
        else {
            other++;
            fprintf(stderr, "  nested: '%s'\n", line);
        }
    }
    if (in)
        fclose(in);
    CHECK(twos == 2 && zeros == 1 && ones == 1 && other == 0,
          "the nested job's ranks should print size 2 and ranks 0 and 1; "
          "got %d x '2', %d x '0', %d x '1', %d other lines",
          twos, zeros, ones, other);
}

static int count_cpus(const char *list, int *first)
{
    int n = 0;
    *first = -1;
    for (const char *p = list; *p;) {
        char *end;
        long c = strtol(p, &end, 10);
        if (end == p)
            return -1;
        if (n == 0)
            *first = (int)c;
        n++;
        p = *end == ',' ? end + 1 : end;
    }
    return n;
}

static void pinning(const char *mode)
{
    check_capacity();
    cpu_set_t mine;
    CPU_ZERO(&mine);
    REQUIRE(sched_getaffinity(0, sizeof mine, &mine) == 0, "affinity");
    int npus = CPU_COUNT(&mine);
    long n = 300;
    cparsl_future_t **fs = calloc((size_t)n, sizeof *fs);
    REQUIRE(fs != NULL, "out of memory");
    for (long i = 0; i < n; i++)
        fs[i] = cparsl_submit("cpus", CPARSL_I(i));
    bool used[CPU_SETSIZE] = {false};
    int bad = 0;
    for (long i = 0; i < n; i++) {
        const char *s = NULL;
        int rc = cparsl_future_get_string(fs[i], &s);
        int first = -1;
        int k = rc == 0 ? count_cpus(s, &first) : -1;
        bool good = k >= 1 && first >= 0 && first < CPU_SETSIZE &&
                    CPU_ISSET(first, &mine);
        /* 3 slots share the PUs round-robin when there are no more PUs
         * than slots: each gets one. */
        if (npus <= NSLOTS)
            good = good && k == 1;
        else
            good = good && k < npus;
        if (!good && bad++ < 10)
            fprintf(stderr, "  cpus(%ld): rc %d '%s'\n", i, rc,
                    rc == 0 ? s : cparsl_future_errstr(fs[i]));
        if (good)
            used[first] = true;
        cparsl_future_decref(fs[i]);
    }
    free(fs);
    int distinct = 0;
    for (int c = 0; c < CPU_SETSIZE; c++)
        distinct += used[c];
    CHECK(bad == 0, "%d of %ld affinities are not one PU of this node's %d",
          bad, n, npus);
    int want = npus < 2 ? npus : 2;
    CHECK(distinct >= want,
          "%s: %d distinct PUs among %ld tasks on %d slots (expected at "
          "least %d of %d PUs)",
          mode, distinct, n, NSLOTS, want, npus);
    fprintf(stderr, "pinning_%s: %d PUs, %d distinct single-PU sets seen\n",
            mode, npus, distinct);
}

static void case_pinning_inrank(void)
{
    pinning("inrank");
}

static void case_pinning_process(void)
{
    pinning("process");
}

/* Worker pids seen by 'n' quick tasks. */
static size_t quick_pids(long n, int64_t *pids, size_t cap)
{
    size_t npids = 0;
    cparsl_future_t **fs = calloc((size_t)n, sizeof *fs);
    REQUIRE(fs != NULL, "out of memory");
    for (long i = 0; i < n; i++)
        fs[i] = cparsl_submit("sleep_pid", CPARSL_D(0.005));
    for (long i = 0; i < n; i++) {
        int64_t pid = 0;
        int rc = cparsl_future_get_int(fs[i], &pid);
        CHECK(rc == 0 && pid > 0, "quick task: %d %s", rc,
              cparsl_future_errstr(fs[i]));
        bool have = false;
        for (size_t k = 0; k < npids; k++)
            have |= pids[k] == pid;
        if (rc == 0 && !have && npids < cap)
            pids[npids++] = pid;
        cparsl_future_decref(fs[i]);
    }
    free(fs);
    return npids;
}

static void case_walltime_process(void)
{
    check_capacity();
    int64_t before[64], after[64];
    size_t nb = quick_pids(30, before, 64);
    CHECK(nb >= 1, "no worker pids");
    cparsl_future_t *fs[NSLOTS];
    double t0 = now_s();
    for (int i = 0; i < NSLOTS; i++) {
        cparsl_call_t *c = cparsl_call_create("sleep_pid");
        cparsl_call_arg(c, cparsl_double(30));
        cparsl_call_walltime(c, 0.5);
        cparsl_call_retries(c, 0);
        fs[i] = cparsl_call_submit(c);
    }
    for (int i = 0; i < NSLOTS; i++) {
        CHECK(cparsl_future_wait(fs[i], 20) == 0, "walltime task not done");
        int rc = cparsl_future_error(fs[i]);
        const char *text = cparsl_future_errstr(fs[i]);
        CHECK(rc == -CPARSL_EWALLTIME && HAS(text, "walltime"),
              "expected -CPARSL_EWALLTIME, got %d (%s): %s", rc,
              cparsl_errname(rc), text);
    }
    double dt = now_s() - t0;
    CHECK(dt < 5, "walltime 0.5 s took %.2f s to fail", dt);
    for (int i = 0; i < NSLOTS; i++)
        cparsl_future_decref(fs[i]);
    size_t na = quick_pids(30, after, 64);
    bool replaced = false;
    for (size_t i = 0; i < na; i++) {
        bool old = false;
        for (size_t k = 0; k < nb; k++)
            old |= after[i] == before[k];
        replaced |= !old;
    }
    CHECK(na >= 1 && replaced,
          "no new worker process after the walltime "
          "kills (%zu pids before, %zu after)",
          nb, na);
    fprintf(stderr, "walltime_process: %d walltime failures in %.2f s\n",
            NSLOTS, dt);
}

/* Each rank leaves its pid for the signals case. */
static void write_pid(int rank)
{
    char path[64];
    snprintf(path, sizeof path, "pid.%d", rank);
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f, "%ld\n", (long)getpid());
        fclose(f);
    }
}

/*
 * SIGTERM to every rank while work is under way, as a batch system does
 * at walltime or scancel.  What the DFK promises (DESIGN "Failure and
 * security model"; its log line "running tasks finish, tasks not started
 * fail"): the tries already running deliver their results, every task
 * not started by then fails with -CPARSL_ESHUTDOWN (wherever it waited:
 * in the DFK, the interchange or a manager's prefetch), nothing new
 * starts, and the run winds down quickly; then cparsl_finalize, every
 * rank's exit and MPI_Finalize are clean (checked by main, mpiexec's exit
 * status and check_leftovers.sh).
 */
static void case_signals(void)
{
    check_capacity();
    long n = 60; /* 0.5 s each: 10 s of work on 3 slots */
    cparsl_future_t *fs[60];
    for (long i = 0; i < n; i++)
        fs[i] = cparsl_submit("slow_id", CPARSL_I(i));
    /* Work is under way: the first results are in. */
    for (long i = 0; i < NSLOTS; i++)
        REQUIRE(cparsl_future_wait(fs[i], 60) == 0, "first tasks not done");
    nap(0.2);
    pid_t pids[NRANKS];
    for (int r = 0; r < NRANKS; r++) {
        char path[64];
        long p = 0;
        snprintf(path, sizeof path, "pid.%d", r);
        FILE *f = fopen(path, "r");
        REQUIRE(f && fscanf(f, "%ld", &p) == 1 && p > 1, "no pid of rank %d",
                r);
        fclose(f);
        pids[r] = (pid_t)p;
    }
    CHECK(pids[0] == getpid(), "pid.0 is not the client");
    /* As a batch system does: every rank at once, this one last. */
    double t0 = now_s(), t0_real = real_s();
    for (int r = NRANKS - 1; r >= 0; r--)
        CHECK(kill(pids[r], SIGTERM) == 0, "kill rank %d (pid %ld): %s", r,
              (long)pids[r], strerror(errno));
    long ok = 0, shut = 0, other = 0, pending = 0, late = 0;
    double last_start = 0;
    for (long i = 0; i < n; i++) {
        if (cparsl_future_wait(fs[i], 30) != 0) {
            pending++;
            continue;
        }
        const cparsl_value_t *v = NULL;
        int rc = cparsl_future_get(fs[i], &v);
        if (rc == 0 && v->type == CPARSL_T_DOUBLE_ARRAY && v->u.da.n == 2 &&
            v->u.da.p[0] == (double)i) {
            ok++;
            double started = v->u.da.p[1] - t0_real;
            if (started > last_start)
                last_start = started;
            /* A try handed to its worker just before the signal may
             * start a moment after it. */
            late += started > 0.25;
        } else if (rc == -CPARSL_ESHUTDOWN) {
            shut++;
        } else if (other++ < 10) {
            fprintf(stderr, "  slow_id(%ld): %d (%s) %s\n", i, rc,
                    cparsl_errname(rc), cparsl_future_errstr(fs[i]));
        }
    }
    double dt = now_s() - t0;
    CHECK(pending == 0, "%ld futures never finished after SIGTERM", pending);
    CHECK(other == 0,
          "%ld futures failed with something else than -CPARSL_ESHUTDOWN",
          other);
    CHECK(ok >= NSLOTS, "only %ld results delivered", ok);
    CHECK(shut >= 1,
          "no pending task failed with -CPARSL_ESHUTDOWN (%ld results "
          "delivered)",
          ok);
    CHECK(late == 0,
          "%ld tasks started after SIGTERM (the last %.2f s after it): "
          "tasks not started should fail with -CPARSL_ESHUTDOWN",
          late, last_start);
    CHECK(dt < 5, "%ld results and %ld failures took %.2f s after SIGTERM", ok,
          shut, dt);
    for (long i = 0; i < n; i++)
        cparsl_future_decref(fs[i]);
    fprintf(stderr,
            "signals: %ld delivered, %ld -CPARSL_ESHUTDOWN, %ld other, in "
            "%.2f s after SIGTERM\n",
            ok, shut, other, dt);
}

/*
 * Work goes to idle slots: NSLOTS tasks of 1 s submitted to NSLOTS idle
 * slots run at the same time, on NSLOTS different workers, whatever
 * prefetch window the managers keep.  (A rank that takes them all into
 * its own queue runs them one after another: 3 s instead of 1.)
 */
static void spread(const char *mode)
{
    check_capacity();
    for (int round = 0; round < 3; round++) {
        cparsl_future_t *fs[NSLOTS];
        int64_t pids[NSLOTS];
        double t0 = now_s();
        for (int i = 0; i < NSLOTS; i++)
            fs[i] = cparsl_submit("sleep_pid", CPARSL_D(2.0));
        int distinct = 0;
        for (int i = 0; i < NSLOTS; i++) {
            pids[i] = 0;
            int rc = cparsl_future_get_int(fs[i], &pids[i]);
            CHECK(rc == 0, "sleep_pid: %d %s", rc, cparsl_future_errstr(fs[i]));
            bool seen = false;
            for (int k = 0; k < i; k++)
                seen |= pids[k] == pids[i];
            distinct += !seen && rc == 0;
            cparsl_future_decref(fs[i]);
        }
        double dt = now_s() - t0;
        /* 2 s each: on fewer workers they would take 4 s or more, so
         * 3.5 s leaves room for a loaded machine. */
        CHECK(dt < 3.5 && distinct == NSLOTS,
              "%s round %d: %d tasks of 2 s on %d idle slots took %.2f s on "
              "%d distinct workers (expected about 2 s on %d)",
              mode, round, NSLOTS, NSLOTS, dt, distinct, NSLOTS);
        fprintf(stderr, "spread_%s: round %d: %.2f s on %d workers\n", mode,
                round, dt, distinct);
    }
}

static void case_spread_process(void)
{
    spread("process");
}

static void case_spread_inrank(void)
{
    spread("inrank");
}

static void case_leftovers(void)
{
    check_capacity();
    long n = check_scale(1000);
    CHECK(run_window("f3", n, -1, 256, answer_f3) == 0, "results");
    /* Some bash apps too (each starts processes of its own). */
    cparsl_future_t *fs[10];
    char paths[10][64];
    for (int i = 0; i < 10; i++) {
        snprintf(paths[i], sizeof paths[i], "echo.%d", i);
        cparsl_call_t *c = cparsl_call_create("echo_to");
        cparsl_call_arg(c, cparsl_int(i));
        cparsl_call_output(c, paths[i]);
        fs[i] = cparsl_call_submit(c);
    }
    for (int i = 0; i < 10; i++) {
        int rc = cparsl_future_error(fs[i]);
        CHECK(rc == 0, "echo_to: %d %s", rc, cparsl_future_errstr(fs[i]));
        cparsl_future_decref(fs[i]);
    }
    /* A worker killed at its walltime is replaced; the replaced one must
     * not linger either. */
    cparsl_call_t *c = cparsl_call_create("sleep_pid");
    cparsl_call_arg(c, cparsl_double(30));
    cparsl_call_walltime(c, 0.3);
    cparsl_future_t *f = cparsl_call_submit(c);
    int rc = cparsl_future_error(f);
    CHECK(rc == -CPARSL_EWALLTIME, "walltime: %d %s", rc,
          cparsl_future_errstr(f));
    cparsl_future_decref(f);
}

static void case_tiers(void)
{
    check_capacity();
    /* The log says how the pilot is laid out: the tiers must be there,
     * or this case tests nothing new. */
    char path[4200], line[512];
    snprintf(path, sizeof path, "%s/cparsl.log", cparsl_run_dir());
    FILE *fp = fopen(path, "r");
    REQUIRE(fp != NULL, "cannot open %s", path);
    int mgrs = -1, subs = -1;
    while (fgets(line, sizeof line, fp)) {
        const char *p = strstr(line, "extreme_scale: ");
        if (p && sscanf(p,
                        "extreme_scale: %*d ranks, %d node manager(s), %d "
                        "sub-interchange(s)",
                        &mgrs, &subs) == 2)
            break;
    }
    fclose(fp);
    CHECK(mgrs == 3 && subs == 2,
          "layout: %d node managers and %d sub-interchanges, expected 3 "
          "and 2",
          mgrs, subs);
    many_tasks("tiers");
    long n = check_scale(4000), expect_crash = 0;
    for (long i = 0; i < n; i++)
        expect_crash += crashes(i);
    long wrong = run_window("crashy", n, 0, 512, answer_crashy);
    CHECK(wrong == 0,
          "crashes through the tiers: %ld of %ld wrong (%ld "
          "crash)",
          wrong, n, expect_crash);
}

static void case_app_mpi_init(void)
{
    check_capacity();
    int inited = 0, fin = 0;
    MPI_Initialized(&inited);
    CHECK(inited, "MPI should be initialized by the application");
    long n = 1000;
    double t0 = now_s();
    CHECK(run_window("f3", n, -1, 256, answer_f3) == 0, "results");
    /* Crashes take the fork-after-MPI_Init path too. */
    CHECK(run_window("crashy", 200, 0, 200, answer_crashy) == 0, "crashes");
    fprintf(stderr, "app_mpi_init: %ld tasks in %.2f s\n", n + 200,
            now_s() - t0);
    MPI_Finalized(&fin);
    CHECK(!fin, "MPI finalized under the application");
}

/* ---- main ------------------------------------------------------------------
 */

struct pcase {
    const char *name;
    void (*fn)(void);
    const char *isolation;
    const char *affinity;
    bool app_mpi; /* the application initializes MPI itself */
    bool pidfile; /* every rank writes its pid */
};

static const struct pcase cases[] = {
    {"many_tasks_process", case_many_tasks_process, "process", NULL, false,
     false},
    {"many_tasks_inrank", case_many_tasks_inrank, "none", NULL, false, false},
    {"crash_one_percent", case_crash_one_percent, "process", NULL, false,
     false},
    {"worker_env", case_worker_env, "process", NULL, false, false},
    {"pinning_inrank", case_pinning_inrank, "none", "block", false, false},
    {"pinning_process", case_pinning_process, "process", "block", false, false},
    {"walltime_process", case_walltime_process, "process", NULL, false, false},
    {"signals", case_signals, "process", NULL, false, true},
    {"spread_process", case_spread_process, "process", NULL, false, false},
    {"spread_inrank", case_spread_inrank, "none", NULL, false, false},
    {"leftovers", case_leftovers, "process", NULL, false, false},
    {"app_mpi_init", case_app_mpi_init, "process", NULL, true, false},
    {"tiers", case_tiers, "process", NULL, false, false},
    {NULL, NULL, NULL, NULL, false, false},
};

int main(int argc, char **argv)
{
    const struct pcase *pc = NULL;
    for (const struct pcase *p = cases; argc > 1 && p->name; p++)
        if (strcmp(argv[1], p->name) == 0)
            pc = p;
    if (!pc) {
        fprintf(stderr, "usage: mpiexec -n %d %s CASE; cases:", NRANKS,
                argv[0]);
        for (const struct pcase *p = cases; p->name; p++)
            fprintf(stderr, " %s", p->name);
        fputc('\n', stderr);
        return 2;
    }
    int rank = env_rank();
    if (pc->app_mpi) {
        int provided = 0;
        if (MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided) !=
                MPI_SUCCESS ||
            provided < MPI_THREAD_MULTIPLE) {
            fprintf(stderr, "rank %d: MPI_Init_thread: level %d\n", rank,
                    provided);
            return 1;
        }
    }
    if (enter_dir(pc->name) < 0)
        return 1;
    if (pc->pidfile)
        write_pid(rank);

    cparsl_config_t *cfg = make_config(pc->isolation, pc->affinity,
                                       strcmp(pc->name, "tiers") == 0);
    cparsl_error_t err;
    int rc = cparsl_init(&argc, &argv, cfg, &err);
    cparsl_config_destroy(cfg);
    if (rc == CPARSL_SERVED) {
        int frc = cparsl_finalize(&err);
        if (frc < 0)
            fprintf(stderr, "rank %d: cparsl_finalize: %d %s\n", rank, frc,
                    err.text);
        if (pc->app_mpi) {
            int fin = 1;
            MPI_Finalized(&fin);
            if (fin) {
                fprintf(stderr,
                        "rank %d: MPI finalized under the "
                        "application\n",
                        rank);
                return 1;
            }
            MPI_Finalize();
        }
        return frc < 0 ? 1 : 0;
    }
    if (rc != CPARSL_CLIENT) {
        fprintf(stderr, "rank %d: cparsl_init: %d %s\n", rank, rc, err.text);
        return 1;
    }
    CHECK(rank == 0, "the client is rank %d", rank);
    fprintf(stderr, "== %s (%d ranks, isolation %s)\n", pc->name, NRANKS,
            pc->isolation);
    double t0 = now_s();
    pc->fn();
    rc = cparsl_finalize(&err);
    CHECK(rc == 0, "cparsl_finalize: %d %s", rc, err.text);
    fprintf(stderr, "%s: %.2f s from init to finalize\n", pc->name,
            now_s() - t0);
    if (pc->app_mpi)
        MPI_Finalize();
    int status = check_done();
    if (status == 0)
        remove_dir();
    else
        fprintf(stderr, "kept %s\n", g_dir);
    return status;
}
