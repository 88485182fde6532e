/*
 * test_child.c - isolated workers (htex/child.c): tries run in a long-lived
 * child and come back typed; a child that segfaults, aborts, exits or runs
 * past its walltime fails the try with a clear text and is replaced; peak
 * memory is per try; the environment drops the launcher's job identity;
 * pinning; bash apps inside a child; children die with their slot; the
 * direct-fork path used when no fork helper runs.
 *
 * No MPI here.  main() starts the fork helper before anything else, while
 * the process has one thread, after setting the launcher-like variables the
 * environment case looks for (the helper's environment is a snapshot).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cparsl/cparsl.h>
#include <cparsl/plugin.h>

#include "check.h"
#include "child.h"

/* ---- apps ---------------------------------------------------------------- */

static int app_add(const cparsl_args_t *a, cparsl_value_t *r,
                   cparsl_error_t *err)
{
    (void)err;
    *r = cparsl_int(cparsl_arg_int(a, 0) + cparsl_arg_int(a, 1));
    return 0;
}
CPARSL_APP(add, app_add, .signature = "ii")

static int app_echo(const cparsl_args_t *a, cparsl_value_t *r,
                    cparsl_error_t *err)
{
    (void)err;
    return cparsl_value_copy(r, cparsl_arg(a, 0));
}
CPARSL_APP(echo, app_echo)

static int app_kwecho(const cparsl_args_t *a, cparsl_value_t *r,
                      cparsl_error_t *err)
{
    const cparsl_value_t *v = cparsl_arg_named(a, "k");
    if (!v)
        return cparsl_error_set(err, CPARSL_EAPP, "no keyword k");
    return cparsl_value_copy(r, v);
}
CPARSL_APP(kwecho, app_kwecho)

static int app_fail(const cparsl_args_t *a, cparsl_value_t *r,
                    cparsl_error_t *err)
{
    (void)r;
    return cparsl_error_set(err, CPARSL_EAPP, "fail on purpose (x=%lld)",
                            (long long)cparsl_arg_int(a, 0));
}
CPARSL_APP(fail, app_fail)

static int app_noop(const cparsl_args_t *a, cparsl_value_t *r,
                    cparsl_error_t *err)
{
    (void)a, (void)r, (void)err;
    return 0;
}
CPARSL_APP(noop, app_noop)

static int app_pid(const cparsl_args_t *a, cparsl_value_t *r,
                   cparsl_error_t *err)
{
    (void)a, (void)err;
    *r = cparsl_int(getpid());
    return 0;
}
CPARSL_APP(pid, app_pid)

static int app_segv(const cparsl_args_t *a, cparsl_value_t *r,
                    cparsl_error_t *err)
{
    (void)a, (void)r, (void)err;
    raise(SIGSEGV);
    return 0;
}
CPARSL_APP(segv, app_segv)

static int app_abrt(const cparsl_args_t *a, cparsl_value_t *r,
                    cparsl_error_t *err)
{
    (void)a, (void)r, (void)err;
    abort();
}
CPARSL_APP(abrt, app_abrt)

static int app_exit3(const cparsl_args_t *a, cparsl_value_t *r,
                     cparsl_error_t *err)
{
    (void)a, (void)r, (void)err;
    exit(3);
}
CPARSL_APP(exit3, app_exit3)

static int app_sleep(const cparsl_args_t *a, cparsl_value_t *r,
                     cparsl_error_t *err)
{
    (void)err;
    struct timespec ts;
    double s = cparsl_arg_double(a, 0);
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
    *r = cparsl_int(1);
    return 0;
}
CPARSL_APP(sleep, app_sleep)

/* 64 MiB, touched page by page.  mmap, not malloc: a sanitizer's
 * quarantine would keep freed memory resident into the next try. */
static int app_big(const cparsl_args_t *a, cparsl_value_t *r,
                   cparsl_error_t *err)
{
    (void)a;
    size_t n = 64u << 20;
    volatile char *p = mmap(NULL, n, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return cparsl_error_set(err, -errno, "mmap failed");
    for (size_t i = 0; i < n; i += 4096)
        p[i] = (char)i;
    munmap((void *)p, n);
    *r = cparsl_int(1);
    return 0;
}
CPARSL_APP(big, app_big)

/* Creates the file its argument names: proof that a try ran. */
static int app_mark(const cparsl_args_t *a, cparsl_value_t *r,
                    cparsl_error_t *err)
{
    const cparsl_value_t *v = cparsl_arg(a, 0);
    if (!v || v->type != CPARSL_T_STRING)
        return cparsl_error_set(err, CPARSL_EAPP, "mark needs a path");
    int fd = open(v->u.str.p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return cparsl_error_set(err, -errno, "cannot create %s", v->u.str.p);
    close(fd);
    *r = cparsl_int(1);
    return 0;
}
CPARSL_APP(mark, app_mark)

/* The variables a worker must not see, must keep, and was given. */
static const char *const env_names[] = {
    "OMPI_COMM_WORLD_SIZE",   "PMIX_RANK",
    "SLURM_PROCID",           "OMPI_MCA_btl",
    "OMPI_ALLOW_RUN_AS_ROOT", "CPARSL_WORKER_RANK",
    "CPARSL_TEST_OVERRIDE",
};
#define NENV (sizeof env_names / sizeof env_names[0])

static int app_env(const cparsl_args_t *a, cparsl_value_t *r,
                   cparsl_error_t *err)
{
    (void)a;
    cparsl_value_t *l = cparsl_value_new_list(r, NENV);
    if (!l)
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    for (size_t i = 0; i < NENV; i++) {
        const char *v = getenv(env_names[i]);
        if (v && cparsl_value_set_string(&l[i], v) < 0)
            return cparsl_error_set(err, -ENOMEM, "out of memory");
    }
    return 0;
}
CPARSL_APP(env, app_env)

static int app_affinity(const cparsl_args_t *a, cparsl_value_t *r,
                        cparsl_error_t *err)
{
    (void)a;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) < 0)
        return cparsl_error_set(err, -errno, "sched_getaffinity");
    int64_t *p = cparsl_value_new_int_array(r, (size_t)CPU_COUNT(&set));
    if (!p && CPU_COUNT(&set))
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    size_t k = 0;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &set))
            p[k++] = c;
    return 0;
}
CPARSL_APP(affinity, app_affinity)

CPARSL_BASH_APP(bash_exit, "exit {0}")
CPARSL_BASH_APP(bash_sleep, "sleep {0}")
CPARSL_BASH_APP(bash_write, "echo from-worker > {outputs[0]}")

/* Registered at run time, after the helper started: its children do not
 * know it. */
static cparsl_app_t late_app = {
    .name = "late", .kind = CPARSL_KIND_C, .fn = app_noop, .retries = -1};

/* ---- helpers ------------------------------------------------------------- */

typedef struct job {
    cparsl_exec_t e;
    cparsl_argslot_t pos[4];
    cparsl_argslot_t named[2];
    cparsl_value_t outputs[1];
} job_t;

/* A job's try error is made when it fails (cparsl_exec_err): reusing or
 * leaving a job frees it.  Jobs are declared JOB(j), zeroed. */
static void job_free(job_t *j)
{
    cparsl_exec_clear_error(&j->e);
}
#define JOB(j) job_t j __attribute__((cleanup(job_free))) = {0}
#define JOBS_FREE(a, n)                                                        \
    for (size_t i_ = 0; i_ < (size_t)(n); i_++)                                \
    job_free(&(a)[i_])

static cparsl_exec_t *job_init(job_t *j, const char *app)
{
    job_free(j);
    memset(j, 0, sizeof *j);
    j->e.args.app = cparsl_app_find(app);
    REQUIRE(j->e.args.app != NULL, "app '%s' is registered", app);
    j->e.args.pos = j->pos;
    j->e.args.named = j->named;
    j->e.result = cparsl_nil();
    j->e.exit_code = -1;
    j->e.cpu_s = -1;
    j->e.maxrss_kib = -1;
    return &j->e;
}

static void job_arg(job_t *j, cparsl_value_t v)
{
    j->pos[j->e.args.npos++].value = v;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static htex_child_t *spawn(const htex_child_opts_t *o)
{
    cparsl_error_t err;
    htex_child_t *c = NULL;
    cparsl_error_clear(&err);
    int rc = htex_child_spawn(o, &c, &err);
    REQUIRE(rc == 0 && c != NULL, "spawn: %d %s", rc, err.text);
    REQUIRE(htex_child_alive(c), "new child alive");
    return c;
}

/* Run 'app' with one int argument (or none when n == 0); returns the
 * error code, the int result in *out. */
static int run_int(htex_child_t *c, const char *app, int n, int64_t x,
                   int64_t *out)
{
    JOB(j);
    cparsl_exec_t *e = job_init(&j, app);
    if (n > 0)
        job_arg(&j, cparsl_int(x));
    if (n > 1)
        job_arg(&j, cparsl_int(x));
    int rc = htex_child_run(c, e);
    if (rc == 0 && out)
        *out = e->result.type == CPARSL_T_INT ? e->result.u.i : -1;
    cparsl_value_clear(&e->result);
    cparsl_exec_clear_error(e);
    return rc;
}

/* Dead (gone, or a zombie nobody reaped yet). */
static bool pid_gone(pid_t pid)
{
    char path[64], buf[256];
    if (kill(pid, 0) < 0 && errno == ESRCH)
        return true;
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return true;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return true;
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}

static bool wait_gone(pid_t pid, double seconds)
{
    double end = now_s() + seconds;
    while (!pid_gone(pid)) {
        if (now_s() > end)
            return false;
        usleep(5000);
    }
    return true;
}

/* Run fn in a forked sub-process (which does not inherit the fork
 * helper) and check that it passed. */
static void in_subprocess(const char *what, void (*fn)(void))
{
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0, "fork");
    if (pid == 0) {
        fn();
        fflush(NULL);
        _exit(check__failed ? 1 : 0);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: sub-process status %#x",
          what, st);
}

/* ---- cases --------------------------------------------------------------- */

TEST_CASE(roundtrip)
{
    htex_child_t *c = spawn(NULL);
    pid_t pid = htex_child_pid(c);
    CHECK(pid > 0 && pid != getpid(), "child pid %ld", (long)pid);

    JOB(j);
    cparsl_exec_t *e = job_init(&j, "add");
    job_arg(&j, cparsl_int(2));
    job_arg(&j, cparsl_int(40));
    int rc = htex_child_run(c, e);
    CHECK(rc == 0, "add: %d %s", rc, cparsl_exec_text(e));
    CHECK(e->result.type == CPARSL_T_INT && e->result.u.i == 42, "2+40");
    CHECK(e->t_start > 0 && e->t_end >= e->t_start, "times %lld %lld",
          (long long)e->t_start, (long long)e->t_end);
    CHECK(e->cpu_s >= 0, "cpu_s %g", e->cpu_s);
    CHECK(e->maxrss_kib > 0 || e->maxrss_kib == -1, "maxrss %lld",
          (long long)e->maxrss_kib);
    CHECK(e->exit_code == -1 && e->term_signal == 0, "no process status");
    cparsl_value_clear(&e->result);
    cparsl_exec_clear_error(e);

    /* Every value type, and a value bigger than a socket buffer. */
    static const int64_t ia[] = {1, -2, INT64_MAX, INT64_MIN};
    static const double da[] = {0.5, -1e300, 3.25};
    static const char bytes[] = {'a', 0, 'b', 0, (char)0xff};
    size_t bign = 4u << 20;
    char *big = malloc(bign);
    REQUIRE(big != NULL, "malloc");
    for (size_t i = 0; i < bign; i++)
        big[i] = (char)(i * 7);
    cparsl_value_t items[] = {cparsl_int(1), cparsl_str("two"),
                              cparsl_double(3.0)};
    cparsl_value_t inner = cparsl_list(items, 3);
    cparsl_value_t outer_items[] = {inner, cparsl_nil(), cparsl_bool(true)};
    cparsl_value_t vals[] = {
        cparsl_nil(),
        cparsl_bool(true),
        cparsl_int(-7),
        cparsl_double(2.5),
        cparsl_str("h\xc3\xa9llo w\xc3\xb6rld"),
        cparsl_str(""),
        cparsl_bytes(bytes, sizeof bytes),
        cparsl_int_array(ia, 4),
        cparsl_double_array(da, 3),
        cparsl_file("file:///tmp/x.dat"),
        cparsl_list(outer_items, 3),
        cparsl_bytes(big, bign),
    };
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        e = job_init(&j, "echo");
        job_arg(&j, vals[i]);
        rc = htex_child_run(c, e);
        CHECK(rc == 0, "echo %s: %d %s", cparsl_type_name(vals[i].type), rc,
              cparsl_exec_text(e));
        CHECK(cparsl_value_equal(&e->result, &vals[i]), "echo %zu (%s)", i,
              cparsl_type_name(vals[i].type));
        cparsl_value_clear(&e->result);
        cparsl_exec_clear_error(e);
    }
    free(big);

    e = job_init(&j, "kwecho");
    j.named[0].name = "k";
    j.named[0].value = cparsl_str("keyword");
    e->args.nnamed = 1;
    rc = htex_child_run(c, e);
    CHECK(rc == 0 && e->result.type == CPARSL_T_STRING &&
              strcmp(e->result.u.str.p, "keyword") == 0,
          "kwecho: %d %s", rc, cparsl_exec_text(e));
    cparsl_value_clear(&e->result);
    cparsl_exec_clear_error(e);

    /* An app's own failure travels back; the child stays. */
    e = job_init(&j, "fail");
    job_arg(&j, cparsl_int(7));
    rc = htex_child_run(c, e);
    CHECK(rc == -CPARSL_EAPP, "fail: %d", rc);
    CHECK(strstr(cparsl_exec_text(e), "fail on purpose (x=7)") != NULL,
          "text '%s'", cparsl_exec_text(e));
    CHECK(e->result.type == CPARSL_T_NIL, "no result on failure");
    CHECK(htex_child_alive(c), "alive after an app failure");

    int64_t p1 = 0, p2 = 0;
    CHECK(run_int(c, "pid", 0, 0, &p1) == 0 && p1 == pid, "pid %lld",
          (long long)p1);
    CHECK(run_int(c, "pid", 0, 0, &p2) == 0 && p2 == pid, "same child");

    htex_child_destroy(c);
    CHECK(wait_gone(pid, 2), "child %ld gone after destroy", (long)pid);
}

TEST_CASE(unknown_app)
{
    if (!cparsl_app_find("late"))
        REQUIRE(cparsl_app_register(&late_app) == 0, "register late");
    htex_child_t *c = spawn(NULL);
    JOB(j);
    cparsl_exec_t *e = job_init(&j, "late");
    int rc = htex_child_run(c, e);
    CHECK(rc == -CPARSL_ENOAPP, "late: %d", rc);
    CHECK(strstr(cparsl_exec_text(e),
                 "no app 'late' registered in this worker") != NULL,
          "text '%s'", cparsl_exec_text(e));
    CHECK(htex_child_alive(c), "alive after an unknown app");
    int64_t v = 0;
    CHECK(run_int(c, "add", 2, 4, &v) == 0 && v == 8, "add after");
    htex_child_destroy(c);
}

static void crash_case(const char *app, const char *expect, int sig, int code)
{
    htex_child_t *c = spawn(NULL);
    pid_t pid = htex_child_pid(c);
    JOB(j);
    cparsl_exec_t *e = job_init(&j, app);
    double t0 = now_s();
    int rc = htex_child_run(c, e);
    double dt = now_s() - t0;
    char want[256];
    snprintf(want, sizeof want,
             "worker process %ld died while running app '%s': %s", (long)pid,
             app, expect);
    CHECK(rc == -CPARSL_EWORKER, "%s: %d %s", app, rc, cparsl_exec_text(e));
    CHECK(strstr(cparsl_exec_text(e), want) != NULL, "text '%s', want '%s'",
          cparsl_exec_text(e), want);
    CHECK(e->term_signal == sig, "term_signal %d", e->term_signal);
    CHECK(sig || e->exit_code == code, "exit_code %d", e->exit_code);
    CHECK(dt < 2.0, "noticed in %.3f s", dt);
    CHECK(!htex_child_alive(c), "dead after a crash");
    CHECK(pid_gone(pid), "pid %ld gone", (long)pid);
    fprintf(stderr, "  %s\n", cparsl_exec_text(e));

    /* The dead child refuses more work; a new one takes it. */
    e = job_init(&j, "noop");
    rc = htex_child_run(c, e);
    CHECK(rc == -CPARSL_EWORKER && strstr(cparsl_exec_text(e), "not running"),
          "run on dead: %d %s", rc, cparsl_exec_text(e));
    htex_child_destroy(c);
    c = spawn(NULL);
    int64_t v = 0;
    CHECK(run_int(c, "add", 2, 5, &v) == 0 && v == 10, "new child works");
    htex_child_destroy(c);
}

TEST_CASE(crash_segv)
{
    crash_case("segv", "killed by signal 11 (Segmentation fault)", SIGSEGV, 0);
}

TEST_CASE(crash_abort)
{
    crash_case("abrt", "killed by signal 6 (Aborted)", SIGABRT, 0);
}

TEST_CASE(crash_exit)
{
    crash_case("exit3", "exited with status 3 (the app called exit())", 0, 3);
}

TEST_CASE(walltime)
{
    htex_child_t *c = spawn(NULL);
    pid_t pid = htex_child_pid(c);
    JOB(j);

    /* Within its walltime: fine. */
    cparsl_exec_t *e = job_init(&j, "sleep");
    job_arg(&j, cparsl_double(0.05));
    e->walltime = 2;
    int rc = htex_child_run(c, e);
    CHECK(rc == 0, "short sleep: %d %s", rc, cparsl_exec_text(e));
    cparsl_value_clear(&e->result);
    cparsl_exec_clear_error(e);

    e = job_init(&j, "sleep");
    job_arg(&j, cparsl_double(30));
    e->walltime = 0.3;
    double t0 = now_s();
    rc = htex_child_run(c, e);
    double dt = now_s() - t0;
    CHECK(rc == -CPARSL_EWALLTIME, "sleep: %d %s", rc, cparsl_exec_text(e));
    CHECK(dt >= 0.29 && dt < 1.5, "killed after %.3f s", dt);
    char want[160];
    snprintf(want, sizeof want,
             "app 'sleep' exceeded its walltime of 0.3 s; worker process %ld "
             "killed",
             (long)pid);
    CHECK(strcmp(cparsl_exec_text(e), want) == 0, "text '%s'",
          cparsl_exec_text(e));
    CHECK(!htex_child_alive(c), "dead after walltime");
    CHECK(pid_gone(pid), "pid gone");
    htex_child_destroy(c);

    c = spawn(NULL);
    int64_t v = 0;
    CHECK(run_int(c, "add", 2, 1, &v) == 0 && v == 2, "new child works");
    htex_child_destroy(c);
}

static bool clear_refs_allowed(void)
{
    int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    bool ok = fd >= 0 && write(fd, "5", 1) == 1;
    if (fd >= 0)
        close(fd);
    return ok;
}

TEST_CASE(maxrss)
{
    htex_child_t *c = spawn(NULL);
    JOB(j);
    cparsl_exec_t *e = job_init(&j, "big");
    int rc = htex_child_run(c, e);
    CHECK(rc == 0, "big: %d %s", rc, cparsl_exec_text(e));
    int64_t big = e->maxrss_kib;
    cparsl_value_clear(&e->result);
    cparsl_exec_clear_error(e);

    e = job_init(&j, "noop");
    rc = htex_child_run(c, e);
    CHECK(rc == 0, "tiny: %d %s", rc, cparsl_exec_text(e));
    int64_t tiny = e->maxrss_kib;
    fprintf(stderr, "  maxrss: 64 MiB task %lld KiB, then a no-op %lld KiB\n",
            (long long)big, (long long)tiny);
    if (clear_refs_allowed()) {
        CHECK(big >= 60000, "big task's peak %lld KiB", (long long)big);
        CHECK(tiny > 0 && tiny < 30000 && tiny < big / 2,
              "tiny task's peak %lld KiB after a big one", (long long)tiny);
    } else {
        fprintf(stderr, "  clear_refs is not permitted here: expect -1\n");
        CHECK(big == -1 && tiny == -1, "unknown peaks: %lld %lld",
              (long long)big, (long long)tiny);
    }
    htex_child_destroy(c);
}

static void check_env_list(const cparsl_value_t *r, const char *rank)
{
    const char *want[NENV] = {NULL, NULL, NULL, "self,vader", "1", rank, "new"};
    REQUIRE(r->type == CPARSL_T_LIST && r->u.list.n == NENV, "env list");
    for (size_t i = 0; i < NENV; i++) {
        const cparsl_value_t *v = &r->u.list.p[i];
        if (want[i] == NULL)
            CHECK(v->type == CPARSL_T_NIL, "%s must be dropped, is '%s'",
                  env_names[i], v->type == CPARSL_T_STRING ? v->u.str.p : "?");
        else
            CHECK(v->type == CPARSL_T_STRING &&
                      strcmp(v->u.str.p, want[i]) == 0,
                  "%s must be '%s', is '%s'", env_names[i], want[i],
                  v->type == CPARSL_T_STRING ? v->u.str.p : "(unset)");
    }
}

TEST_CASE(environment)
{
    static const struct {
        const char *var;
        bool dropped;
    } rules[] = {
        {"OMPI_COMM_WORLD_RANK=1", true},
        {"OMPI_COMM_WORLD_SIZE=4", true},
        {"OMPI_UNIVERSE_SIZE=4", true},
        {"OMPI_UNIVERSE_SIZEX=4", false},
        {"OMPI_MCA_ess_base_vpid=0", true},
        {"OMPI_MCA_orte_hnp_uri=x", true},
        {"OMPI_MCA_pmix=x", true},
        {"OMPI_MCA_btl=self", false},
        {"OMPI_ALLOW_RUN_AS_ROOT=1", false},
        {"PMIX_RANK=0", true},
        {"PMIX_NAMESPACE=x", true},
        {"PMI_RANK=0", true},
        {"SLURM_STEP_ID=3", true},
        {"SLURM_PROCID=0", true},
        {"SLURM_PROCIDX=0", false},
        {"SLURM_LOCALID=0", true},
        {"SLURM_NTASKS=2", true},
        {"SLURM_NPROCS=2", true},
        {"SLURM_JOB_ID=9", false},
        {"CPARSL_SECRET=s", true},
        {"CPARSL_SECRET_FILE=/x", true},
        {"CPARSL_WORKER_RANK=1", false},
        {"HOME=/root", false},
        {"PMIX_RANK", true},
    };
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
        CHECK(htex_env_dropped(rules[i].var) == rules[i].dropped, "%s: %d",
              rules[i].var, rules[i].dropped);

    const char *add[] = {"CPARSL_WORKER_RANK=6", "CPARSL_WORKER_RANK=7",
                         "CPARSL_TEST_OVERRIDE=new"};
    htex_child_opts_t o = {.env = add, .nenv = 3};
    htex_child_t *c = spawn(&o);
    JOB(j);
    cparsl_exec_t *e = job_init(&j, "env");
    int rc = htex_child_run(c, e);
    CHECK(rc == 0, "env: %d %s", rc, cparsl_exec_text(e));
    if (rc == 0)
        check_env_list(&e->result, "7");
    cparsl_value_clear(&e->result);
    cparsl_exec_clear_error(e);
    htex_child_destroy(c);

    /* Bad additions are refused before anything is forked. */
    const char *bad[] = {"NOEQUALS"};
    htex_child_opts_t ob = {.env = bad, .nenv = 1};
    cparsl_error_t err;
    c = NULL;
    rc = htex_child_spawn(&ob, &c, &err);
    CHECK(rc == -EINVAL && c == NULL && strstr(err.text, "NAME=value"),
          "bad env: %d %s", rc, err.text);
}

TEST_CASE(pinning)
{
    cpu_set_t mine;
    REQUIRE(sched_getaffinity(0, sizeof mine, &mine) == 0, "getaffinity");
    int first = -1, second = -1;
    for (int i = 0; i < CPU_SETSIZE && second < 0; i++)
        if (CPU_ISSET(i, &mine)) {
            if (first < 0)
                first = i;
            else
                second = i;
        }
    REQUIRE(first >= 0, "some CPU is allowed");
    char list[32];
    snprintf(list, sizeof list, "%d", first);

    htex_child_opts_t o = {.cpus = list};
    htex_child_t *c = spawn(&o);
    JOB(j);
    cparsl_exec_t *e = job_init(&j, "affinity");
    int rc = htex_child_run(c, e);
    CHECK(rc == 0 && e->result.type == CPARSL_T_INT_ARRAY &&
              e->result.u.ia.n == 1 && e->result.u.ia.p[0] == first,
          "pinned to {%d}: %d %s", first, rc, cparsl_exec_text(e));
    cparsl_value_clear(&e->result);
    cparsl_exec_clear_error(e);
    htex_child_destroy(c);

    if (second >= 0) {
        snprintf(list, sizeof list, "%d,%d", first, second);
        c = spawn(&o);
        e = job_init(&j, "affinity");
        rc = htex_child_run(c, e);
        CHECK(rc == 0 && e->result.type == CPARSL_T_INT_ARRAY &&
                  e->result.u.ia.n == 2 && e->result.u.ia.p[0] == first &&
                  e->result.u.ia.p[1] == second,
              "pinned to {%d,%d}", first, second);
        cparsl_value_clear(&e->result);
        cparsl_exec_clear_error(e);
        htex_child_destroy(c);
    }

    /* Unpinned: the slot's own set. */
    c = spawn(NULL);
    e = job_init(&j, "affinity");
    rc = htex_child_run(c, e);
    CHECK(rc == 0 && e->result.type == CPARSL_T_INT_ARRAY &&
              (int)e->result.u.ia.n == CPU_COUNT(&mine),
          "unpinned child has %d CPUs", CPU_COUNT(&mine));
    cparsl_value_clear(&e->result);
    cparsl_exec_clear_error(e);
    htex_child_destroy(c);

    cparsl_error_t err;
    const char *bad[] = {"abc", "1-", "3-1", "0,,1", "5000", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        htex_child_opts_t ob = {.cpus = bad[i]};
        c = NULL;
        rc = htex_child_spawn(&ob, &c, &err);
        CHECK(rc == -EINVAL && c == NULL, "cpus '%s': %d %s", bad[i], rc,
              err.text);
    }
    /* Well-formed, but no such CPU: the child says so in its hello. */
    htex_child_opts_t on = {.cpus = "1023"};
    c = NULL;
    rc = htex_child_spawn(&on, &c, &err);
    CHECK(rc == -EINVAL && c == NULL && strstr(err.text, "cannot pin"),
          "cpus 1023: %d %s", rc, err.text);
}

TEST_CASE(bash_in_child)
{
    htex_child_t *c = spawn(NULL);
    pid_t pid = htex_child_pid(c);
    int64_t v = -1;
    int rc = run_int(c, "bash_exit", 1, 0, &v);
    CHECK(rc == 0 && v == 0, "exit 0: %d", rc);

    JOB(j);
    cparsl_exec_t *e = job_init(&j, "bash_exit");
    job_arg(&j, cparsl_int(3));
    rc = htex_child_run(c, e);
    CHECK(rc == -CPARSL_EEXIT && e->exit_code == 3, "exit 3: %d %d %s", rc,
          e->exit_code, cparsl_exec_text(e));
    CHECK(htex_child_alive(c), "a command's failure is not the worker's");

    char path[64];
    snprintf(path, sizeof path, "/tmp/cparsl-test-child-%ld.txt",
             (long)getpid());
    unlink(path);
    e = job_init(&j, "bash_write");
    j.outputs[0] = cparsl_file(path);
    e->args.outputs = j.outputs;
    e->args.noutputs = 1;
    rc = htex_child_run(c, e);
    CHECK(rc == 0, "bash_write: %d %s", rc, cparsl_exec_text(e));
    char buf[64] = "";
    FILE *f = fopen(path, "r");
    if (f) {
        if (!fgets(buf, sizeof buf, f))
            buf[0] = '\0';
        fclose(f);
    }
    CHECK(strcmp(buf, "from-worker\n") == 0, "output file '%s'", buf);
    unlink(path);
    cparsl_value_clear(&e->result);
    cparsl_exec_clear_error(e);

    /* The bash kind enforces its walltime inside the child, which lives. */
    e = job_init(&j, "bash_sleep");
    job_arg(&j, cparsl_int(20));
    e->walltime = 0.3;
    double t0 = now_s();
    rc = htex_child_run(c, e);
    double dt = now_s() - t0;
    CHECK(rc == -CPARSL_EWALLTIME &&
              strstr(cparsl_exec_text(e), "process group"),
          "bash walltime: %d %s", rc, cparsl_exec_text(e));
    CHECK(dt < 2.0, "bash walltime after %.3f s", dt);
    CHECK(htex_child_alive(c) && htex_child_pid(c) == pid,
          "child survives its command's walltime");
    CHECK(run_int(c, "add", 2, 3, &v) == 0 && v == 6, "still works");
    htex_child_destroy(c);
}

/* Sub-process: start workers (through a helper or not), report the
 * worker's pid, wait to be killed. */
static void orphan_maker(int wfd, bool use_helper)
{
    cparsl_error_t err;
    if (use_helper && htex_forkhelper_start(false, &err) < 0)
        _exit(3);
    htex_child_t *c = NULL;
    if (htex_child_spawn(NULL, &c, &err) < 0)
        _exit(4);
    pid_t pid = htex_child_pid(c);
    if (write(wfd, &pid, sizeof pid) != sizeof pid)
        _exit(5);
    for (;;)
        pause();
}

static void parent_death_one(bool use_helper)
{
    int fds[2];
    REQUIRE(pipe(fds) == 0, "pipe");
    fflush(NULL);
    pid_t sub = fork();
    REQUIRE(sub >= 0, "fork");
    if (sub == 0) {
        close(fds[0]);
        orphan_maker(fds[1], use_helper);
    }
    close(fds[1]);
    pid_t child = -1;
    ssize_t n = read(fds[0], &child, sizeof child);
    close(fds[0]);
    REQUIRE(n == sizeof child && child > 0, "worker pid from sub-process");
    CHECK(!pid_gone(child), "worker %ld runs", (long)child);
    kill(sub, SIGKILL);
    while (waitpid(sub, NULL, 0) < 0 && errno == EINTR)
        ;
    double t0 = now_s();
    bool gone = wait_gone(child, 2.0);
    CHECK(gone, "worker %ld (%s) outlived its slot", (long)child,
          use_helper ? "helper" : "direct");
    if (!gone)
        kill(child, SIGKILL);
    fprintf(stderr, "  %s: worker gone %.1f ms after its slot\n",
            use_helper ? "helper" : "direct", (now_s() - t0) * 1e3);
}

TEST_CASE(parent_death)
{
    parent_death_one(true);
    parent_death_one(false);
}

/* Runs in a process that never started the helper. */
static void direct_body(void)
{
    CHECK(!htex_forkhelper_running(), "a forked process has no helper");
    const char *add[] = {"CPARSL_WORKER_RANK=3", "CPARSL_TEST_OVERRIDE=new"};
    htex_child_opts_t o = {.env = add, .nenv = 2};
    htex_child_t *c = spawn(&o);
    pid_t pid = htex_child_pid(c);
    int64_t v = 0;
    CHECK(run_int(c, "add", 2, 21, &v) == 0 && v == 42, "add: %lld",
          (long long)v);
    CHECK(run_int(c, "pid", 0, 0, &v) == 0 && v == pid, "pid");

    JOB(j);
    cparsl_exec_t *e = job_init(&j, "env");
    int rc = htex_child_run(c, e);
    CHECK(rc == 0, "env: %d %s", rc, cparsl_exec_text(e));
    if (rc == 0)
        check_env_list(&e->result, "3");
    cparsl_value_clear(&e->result);
    cparsl_exec_clear_error(e);

    e = job_init(&j, "segv");
    rc = htex_child_run(c, e);
    CHECK(rc == -CPARSL_EWORKER &&
              strstr(cparsl_exec_text(e),
                     "killed by signal 11 (Segmentation fault)"),
          "segv: %d %s", rc, cparsl_exec_text(e));
    CHECK(pid_gone(pid), "reaped");
    htex_child_destroy(c);

    c = spawn(NULL);
    e = job_init(&j, "exit3");
    rc = htex_child_run(c, e);
    CHECK(rc == -CPARSL_EWORKER && strstr(cparsl_exec_text(e), "exited with "
                                                               "status 3"),
          "exit3: %d %s", rc, cparsl_exec_text(e));
    htex_child_destroy(c);

    c = spawn(NULL);
    pid = htex_child_pid(c);
    e = job_init(&j, "sleep");
    job_arg(&j, cparsl_double(30));
    e->walltime = 0.2;
    rc = htex_child_run(c, e);
    CHECK(rc == -CPARSL_EWALLTIME, "walltime: %d %s", rc, cparsl_exec_text(e));
    CHECK(pid_gone(pid), "killed and reaped");
    htex_child_destroy(c);

    c = spawn(NULL);
    pid = htex_child_pid(c);
    htex_child_destroy(c);
    CHECK(pid_gone(pid), "destroyed and reaped");
}

TEST_CASE(direct_fork)
{
    in_subprocess("direct fork", direct_body);
}

static void *blocker(void *arg)
{
    char b;
    (void)!read(*(int *)arg, &b, 1);
    return NULL;
}

static void helper_rules_body(void)
{
    int fds[2];
    REQUIRE(pipe(fds) == 0, "pipe");
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, blocker, &fds[0]) == 0, "thread");

    cparsl_error_t err;
    cparsl_error_clear(&err);
    int rc = htex_forkhelper_start(false, &err);
    CHECK(rc == -EBUSY && strstr(err.text, "one thread"), "threads: %d %s", rc,
          err.text);
    CHECK(!htex_forkhelper_running(), "not started");
    rc = htex_forkhelper_start(true, &err);
    CHECK(rc == 0 && htex_forkhelper_running(), "allow_threads: %d %s", rc,
          err.text);
    CHECK(htex_forkhelper_start(false, &err) == 0, "idempotent");

    htex_child_t *c = spawn(NULL);
    pid_t pid = htex_child_pid(c);
    int64_t v = 0;
    CHECK(run_int(c, "add", 2, 2, &v) == 0 && v == 4, "add");

    /* Stopping the helper takes its children with it. */
    htex_forkhelper_stop();
    CHECK(!htex_forkhelper_running(), "stopped");
    CHECK(wait_gone(pid, 2.0), "child %ld died with the helper", (long)pid);
    JOB(j);
    cparsl_exec_t *e = job_init(&j, "noop");
    rc = htex_child_run(c, e);
    CHECK(rc == -CPARSL_EWORKER, "run after stop: %d %s", rc,
          cparsl_exec_text(e));
    htex_child_destroy(c);

    /* And it can start again. */
    CHECK(htex_forkhelper_start(true, &err) == 0, "restart: %s", err.text);
    c = spawn(NULL);
    CHECK(run_int(c, "add", 2, 5, &v) == 0 && v == 10, "add after restart");
    htex_child_destroy(c);
    htex_forkhelper_stop();

    (void)!write(fds[1], "x", 1);
    pthread_join(th, NULL);
    close(fds[0]);
    close(fds[1]);
}

TEST_CASE(helper_rules)
{
    cparsl_error_t err;
    CHECK(htex_forkhelper_running(), "main started the helper");
    CHECK(htex_forkhelper_start(false, &err) == 0, "idempotent");
    in_subprocess("helper rules", helper_rules_body);
}

struct spawner {
    int n;
    int failures;
};

static void *spawner_main(void *arg)
{
    struct spawner *s = arg;
    for (int k = 0; k < 3; k++) {
        htex_child_t *c = NULL;
        cparsl_error_t err;
        if (htex_child_spawn(NULL, &c, &err) < 0) {
            s->failures++;
            continue;
        }
        for (int i = 0; i < s->n; i++) {
            int64_t v = 0;
            JOB(j);
            cparsl_exec_t *e = job_init(&j, "add");
            job_arg(&j, cparsl_int(i));
            job_arg(&j, cparsl_int(1));
            if (htex_child_run(c, e) != 0 || e->result.u.i != i + 1)
                s->failures++;
            (void)v;
        }
        htex_child_destroy(c);
    }
    return NULL;
}

TEST_CASE(threads)
{
    struct spawner s[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        s[i].n = (int)check_scale(300);
        s[i].failures = 0;
        REQUIRE(pthread_create(&th[i], NULL, spawner_main, &s[i]) == 0,
                "thread");
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK(s[i].failures == 0, "thread %d: %d failures", i, s[i].failures);
    }
}

/* ---- batches ------------------------------------------------------------- */

/* Run v[0..n) in batches on *c, replacing a child that died, until every
 * try is finished; returns how many batches it took. */
static int run_all(htex_child_t **c, cparsl_exec_t **v, size_t n)
{
    int batches = 0;
    size_t at = 0;
    while (at < n) {
        size_t done = 0;
        int rc = htex_child_run_batch(*c, v + at, n - at, &done);
        REQUIRE(rc == 0 && done >= 1 && done <= n - at, "batch: %d, %zu of %zu",
                rc, done, n - at);
        at += done;
        batches++;
        if (!htex_child_alive(*c)) {
            htex_child_destroy(*c);
            *c = spawn(NULL);
        }
    }
    return batches;
}

/* A sentinel no result path writes. */
#define UNTOUCHED_T 777

static void mark_untouched(cparsl_exec_t *e)
{
    e->t_start = e->t_end = UNTOUCHED_T;
    e->exit_code = 55;
    e->term_signal = 66;
    e->cpu_s = 7.5;
    e->maxrss_kib = 88;
}

static bool is_untouched(const cparsl_exec_t *e)
{
    return e->t_start == UNTOUCHED_T && e->t_end == UNTOUCHED_T &&
           e->exit_code == 55 && e->term_signal == 66 && e->cpu_s == 7.5 &&
           e->maxrss_kib == 88 && cparsl_exec_code(e) == 0 &&
           e->result.type == CPARSL_T_NIL;
}

TEST_CASE(batch_roundtrip)
{
    enum { N = 100 };
    if (!cparsl_app_find("late"))
        REQUIRE(cparsl_app_register(&late_app) == 0, "register late");
    htex_child_t *c = spawn(NULL);
    pid_t pid = htex_child_pid(c);
    job_t *jobs = calloc(N, sizeof *jobs);
    cparsl_exec_t *v[N];
    REQUIRE(jobs != NULL, "calloc");

    /* Mostly adds, with an app failure, an unknown app, a string and the
     * child's pid along the way. */
    for (int i = 0; i < N; i++) {
        const char *app = i == 10   ? "fail"
                          : i == 20 ? "late"
                          : i == 30 ? "echo"
                          : i == 40 ? "pid"
                                    : "add";
        v[i] = job_init(&jobs[i], app);
        if (i == 30) {
            job_arg(&jobs[i], cparsl_str("batched string"));
        } else if (i != 20 && i != 40) {
            job_arg(&jobs[i], cparsl_int(i));
            job_arg(&jobs[i], cparsl_int(1000 * i));
        }
        v[i]->args.try_no = i % 3;
        mark_untouched(v[i]);
    }
    int64_t before = cparsl_now_ns();
    size_t done = 0;
    int rc = htex_child_run_batch(c, v, N, &done);
    int64_t after = cparsl_now_ns();
    CHECK(rc == 0 && done == N, "batch of %d: %d, done %zu", N, rc, done);
    CHECK(htex_child_alive(c) && htex_child_pid(c) == pid, "same child");
    for (int i = 0; i < N && i < (int)done; i++) {
        cparsl_exec_t *e = v[i];
        if (i == 10) {
            CHECK(cparsl_exec_code(e) == -CPARSL_EAPP &&
                      strstr(cparsl_exec_text(e), "fail on purpose (x=10)"),
                  "fail: %d %s", cparsl_exec_code(e), cparsl_exec_text(e));
        } else if (i == 20) {
            CHECK(cparsl_exec_code(e) == -CPARSL_ENOAPP &&
                      strstr(cparsl_exec_text(e), "no app 'late'"),
                  "late: %d %s", cparsl_exec_code(e), cparsl_exec_text(e));
        } else if (i == 30) {
            CHECK(cparsl_exec_code(e) == 0 &&
                      e->result.type == CPARSL_T_STRING &&
                      strcmp(e->result.u.str.p, "batched string") == 0,
                  "echo: %d %s", cparsl_exec_code(e), cparsl_exec_text(e));
        } else if (i == 40) {
            CHECK(cparsl_exec_code(e) == 0 && e->result.type == CPARSL_T_INT &&
                      e->result.u.i == pid,
                  "pid in a batch");
        } else {
            CHECK(cparsl_exec_code(e) == 0 && e->result.type == CPARSL_T_INT &&
                      e->result.u.i == 1001 * i,
                  "add %d: %d %s", i, cparsl_exec_code(e), cparsl_exec_text(e));
        }
        CHECK(e->t_start >= before - 1000000 && e->t_end >= e->t_start &&
                  e->t_end <= after + 1000000,
              "task %d times %lld %lld", i, (long long)e->t_start,
              (long long)e->t_end);
        CHECK(i == 0 || e->t_start >= v[i - 1]->t_end, "task %d in order", i);
        CHECK(e->exit_code == -1 && e->term_signal == 0, "task %d status", i);
        if (i != 20) {
            CHECK(e->cpu_s >= 0 && e->cpu_s < 1, "task %d cpu_s %g", i,
                  e->cpu_s);
            CHECK(e->maxrss_kib > 0 || e->maxrss_kib == -1,
                  "task %d maxrss %lld", i, (long long)e->maxrss_kib);
        }
        cparsl_value_clear(&e->result);
        cparsl_exec_clear_error(e);
    }

    /* The child goes on, one at a time and in batches. */
    int64_t x = 0;
    CHECK(run_int(c, "add", 2, 4, &x) == 0 && x == 8, "single after batch");
    v[0] = job_init(&jobs[0], "add");
    job_arg(&jobs[0], cparsl_int(3));
    job_arg(&jobs[0], cparsl_int(4));
    rc = htex_child_run_batch(c, v, 1, &done);
    CHECK(rc == 0 && done == 1 && cparsl_exec_code(v[0]) == 0 &&
              v[0]->result.u.i == 7,
          "batch of one: %d %zu %s", rc, done, cparsl_exec_text(v[0]));
    rc = htex_child_run_batch(c, v, 0, &done);
    CHECK(rc == 0 && done == 0, "empty batch: %d %zu", rc, done);

    /* Tries bigger than a message's worth (1 MiB) come back in parts. */
    size_t bign = 300u << 10;
    char *big = malloc(bign);
    REQUIRE(big != NULL, "malloc");
    for (size_t i = 0; i < bign; i++)
        big[i] = (char)(i * 13);
    for (int i = 0; i < 10; i++) {
        v[i] = job_init(&jobs[i], "echo");
        job_arg(&jobs[i], cparsl_bytes(big, bign));
    }
    rc = htex_child_run_batch(c, v, 10, &done);
    CHECK(rc == 0 && done >= 1 && done < 10, "first part: %d %zu", rc, done);
    for (size_t i = done; i < 10; i++)
        CHECK(v[i]->result.type == CPARSL_T_NIL, "%zu not run yet", i);
    int parts = run_all(&c, v + done, 10 - done) + 1;
    CHECK(parts >= 3, "10 x 300 KiB in %d parts", parts);
    for (int i = 0; i < 10; i++) {
        CHECK(cparsl_exec_code(v[i]) == 0 &&
                  v[i]->result.type == CPARSL_T_BYTES &&
                  v[i]->result.u.str.len == bign &&
                  memcmp(v[i]->result.u.str.p, big, bign) == 0,
              "big echo %d", i);
        cparsl_value_clear(&v[i]->result);
        cparsl_exec_clear_error(v[i]);
    }
    free(big);
    CHECK(htex_child_pid(c) == pid, "no new child was needed");
    htex_child_destroy(c);
    JOBS_FREE(jobs, N);
    free(jobs);
}

static void batch_crash_one(const char *app, const char *expect, int sig,
                            int code)
{
    enum { N = 10, AT = 4 };
    char paths[N][96];
    job_t jobs[N];
    memset(jobs, 0, sizeof jobs);
    cparsl_exec_t *v[N];
    htex_child_t *c = spawn(NULL);
    pid_t pid = htex_child_pid(c);

    for (int i = 0; i < N; i++) {
        snprintf(paths[i], sizeof paths[i], "/tmp/cparsl-test-batch-%ld-%d",
                 (long)getpid(), i);
        unlink(paths[i]);
        v[i] = job_init(&jobs[i], i == AT ? app : "mark");
        if (i != AT)
            job_arg(&jobs[i], cparsl_str(paths[i]));
        mark_untouched(v[i]);
    }
    size_t done = 99;
    double t0 = now_s();
    int rc = htex_child_run_batch(c, v, N, &done);
    double dt = now_s() - t0;
    CHECK(rc == 0 && done == AT + 1, "%s: %d, done %zu", app, rc, done);
    CHECK(dt < 2.0, "noticed in %.3f s", dt);
    CHECK(!htex_child_alive(c), "dead after a crash");
    CHECK(pid_gone(pid), "pid %ld gone", (long)pid);
    for (int i = 0; i < AT; i++)
        CHECK(cparsl_exec_code(v[i]) == 0 &&
                  v[i]->result.type == CPARSL_T_INT && v[i]->result.u.i == 1 &&
                  v[i]->t_end >= v[i]->t_start && v[i]->t_start > UNTOUCHED_T &&
                  v[i]->exit_code == -1 && access(paths[i], F_OK) == 0,
              "%s: result %d kept: %d %s", app, i, cparsl_exec_code(v[i]),
              cparsl_exec_text(v[i]));

    cparsl_exec_t *e = v[AT];
    char want[256];
    snprintf(want, sizeof want,
             "worker process %ld died while running app '%s': %s", (long)pid,
             app, expect);
    CHECK(cparsl_exec_code(e) == -CPARSL_EWORKER &&
              strstr(cparsl_exec_text(e), want),
          "text '%s', want '%s'", cparsl_exec_text(e), want);
    CHECK(e->term_signal == sig, "term_signal %d", e->term_signal);
    CHECK(sig || e->exit_code == code, "exit_code %d", e->exit_code);
    CHECK(e->t_start >= v[AT - 1]->t_end && e->t_end >= e->t_start,
          "crash times %lld %lld", (long long)e->t_start, (long long)e->t_end);
    CHECK(e->result.type == CPARSL_T_NIL, "no result");
    fprintf(stderr, "  batch: %s\n", cparsl_exec_text(e));

    for (int i = AT + 1; i < N; i++) {
        CHECK(is_untouched(v[i]), "%s: exec %d untouched", app, i);
        CHECK(access(paths[i], F_OK) != 0, "%s: try %d did not run", app, i);
    }

    /* The dead child refuses a batch; a new one runs the rest. */
    rc = htex_child_run_batch(c, v + AT + 1, N - AT - 1, &done);
    CHECK(rc == 0 && done == 1 &&
              cparsl_exec_code(v[AT + 1]) == -CPARSL_EWORKER &&
              strstr(cparsl_exec_text(v[AT + 1]), "not running"),
          "batch on dead: %d %zu %s", rc, done, cparsl_exec_text(v[AT + 1]));
    htex_child_destroy(c);
    c = spawn(NULL);
    rc = htex_child_run_batch(c, v + AT + 1, N - AT - 1, &done);
    CHECK(rc == 0 && done == N - AT - 1, "the rest: %d %zu", rc, done);
    for (int i = AT + 1; i < N; i++)
        CHECK(cparsl_exec_code(v[i]) == 0 && v[i]->result.u.i == 1 &&
                  access(paths[i], F_OK) == 0,
              "rest %d ran: %s", i, cparsl_exec_text(v[i]));
    htex_child_destroy(c);
    for (int i = 0; i < N; i++)
        unlink(paths[i]);
    JOBS_FREE(jobs, N);
}

TEST_CASE(batch_crash)
{
    batch_crash_one("segv", "killed by signal 11 (Segmentation fault)", SIGSEGV,
                    0);
    batch_crash_one("exit3", "exited with status 3 (the app called exit())", 0,
                    3);
}

TEST_CASE(batch_rejects)
{
    htex_child_t *c = spawn(NULL);
    char path[96];
    snprintf(path, sizeof path, "/tmp/cparsl-test-batch-%ld-rej",
             (long)getpid());
    unlink(path);
    job_t jobs[3];
    memset(jobs, 0, sizeof jobs);
    cparsl_exec_t *v[3];
    for (int i = 0; i < 3; i++) {
        v[i] = job_init(&jobs[i], "mark");
        job_arg(&jobs[i], cparsl_str(path));
        mark_untouched(v[i]);
    }

    /* A walltime anywhere in the batch. */
    v[2]->walltime = 5;
    size_t done = 99;
    int rc = htex_child_run_batch(c, v, 3, &done);
    CHECK(rc == -EINVAL && done == 0, "walltime: %d %zu", rc, done);
    v[2]->walltime = 0;

    /* A kind that enforces walltimes itself, even with none set. */
    JOB(bj);
    cparsl_exec_t *b = job_init(&bj, "bash_exit");
    job_arg(&bj, cparsl_int(0));
    cparsl_exec_t *w[2] = {v[0], b};
    rc = htex_child_run_batch(c, w, 2, &done);
    CHECK(rc == -EINVAL && done == 0, "bash kind: %d %zu", rc, done);
    for (int i = 0; i < 3; i++)
        CHECK(is_untouched(v[i]), "exec %d untouched", i);
    CHECK(access(path, F_OK) != 0, "nothing ran");

    /* The child is fine and runs a good batch. */
    rc = htex_child_run_batch(c, v, 3, &done);
    CHECK(rc == 0 && done == 3 && access(path, F_OK) == 0, "good: %d %zu", rc,
          done);
    unlink(path);
    htex_child_destroy(c);
    JOBS_FREE(jobs, 3);
}

TEST_CASE(overhead)
{
    long n = check_scale(10000);
    htex_child_t *c = spawn(NULL);
    JOB(j);
    int fails = 0;

    /* Warm up, then time one task at a time. */
    for (int i = 0; i < 100; i++)
        fails += run_int(c, "noop", 0, 0, NULL) != 0;
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        cparsl_exec_t *e = job_init(&j, "noop");
        fails += htex_child_run(c, e) != 0;
    }
    double child_us = (now_s() - t0) / (double)n * 1e6;

    t0 = now_s();
    for (long i = 0; i < n; i++) {
        cparsl_exec_t *e = job_init(&j, "noop");
        fails += cparsl_exec_run(e) != 0;
    }
    double inproc_us = (now_s() - t0) / (double)n * 1e6;

    enum { B = 16 };
    job_t bj[B];
    memset(bj, 0, sizeof bj);
    cparsl_exec_t *v[B];
    long nb = (n + B - 1) / B;
    t0 = now_s();
    for (long k = 0; k < nb; k++) {
        size_t done = 0;
        for (int i = 0; i < B; i++)
            v[i] = job_init(&bj[i], "noop");
        fails += htex_child_run_batch(c, v, B, &done) != 0 || done != B;
        for (int i = 0; i < B; i++)
            fails += cparsl_exec_code(v[i]) != 0;
    }
    double batch_us = (now_s() - t0) / (double)(nb * B) * 1e6;
    CHECK(fails == 0, "%d failed", fails);
    htex_child_destroy(c);

    long ns = check_scale(50);
    t0 = now_s();
    for (long i = 0; i < ns; i++) {
        c = spawn(NULL);
        htex_child_destroy(c);
    }
    double spawn_ms = (now_s() - t0) / (double)ns * 1e3;
    fprintf(stderr,
            "  %ld no-op tasks: %.1f us per task through a child, %.1f us in "
            "batches of %d, %.2f us in-process; spawn+destroy %.2f ms\n",
            n, child_us, batch_us, B, inproc_us, spawn_ms);
    JOBS_FREE(bj, B);
}

static const check_case_t cases[] = {
    TEST_ENTRY(roundtrip),
    TEST_ENTRY(unknown_app),
    TEST_ENTRY(crash_segv),
    TEST_ENTRY(crash_abort),
    TEST_ENTRY(crash_exit),
    TEST_ENTRY(walltime),
    TEST_ENTRY(maxrss),
    TEST_ENTRY(environment),
    TEST_ENTRY(pinning),
    TEST_ENTRY(bash_in_child),
    TEST_ENTRY(parent_death),
    TEST_ENTRY(direct_fork),
    TEST_ENTRY(helper_rules),
    TEST_ENTRY(threads),
    TEST_ENTRY(batch_roundtrip),
    TEST_ENTRY(batch_crash),
    TEST_ENTRY(batch_rejects),
    TEST_ENTRY(overhead),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    /* What a launcher would have set; the helper snapshots it. */
    setenv("OMPI_COMM_WORLD_SIZE", "4", 1);
    setenv("PMIX_RANK", "1", 1);
    setenv("SLURM_PROCID", "1", 1);
    setenv("OMPI_MCA_btl", "self,vader", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("CPARSL_TEST_OVERRIDE", "old", 1);
    unsetenv("CPARSL_WORKER_RANK");

    cparsl_error_t err;
    if (htex_forkhelper_start(false, &err) < 0) {
        fprintf(stderr, "cannot start the fork helper: %s\n", err.text);
        return 1;
    }
    int rc = check_main(argc, argv, cases);
    htex_forkhelper_stop(); /* reap it: init may not */
    return rc;
}
