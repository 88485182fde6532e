/*
 * test_htex.c - the htex executor on its own: the DFK and interchange in
 * this process, managers in other processes joining over libfabric.
 *
 * The executor starts its local managers by re-running this program
 * with the same arguments and CPARSL_HTEX_JOIN set: cparsl_init then
 * returns CPARSL_SERVED after serving, and start() exits.  Cases:
 *
 *   seed_shm, seed_tcp  the seed workflows over each provider
 *   manager_kill        SIGKILL of a manager mid-run: every task completes
 *                       once with the right answer, its tries are retried
 *   rogue               a wrong secret, a wrong build id and malformed
 *                       frames through a real endpoint: refused, nothing
 *                       sent but the challenge and the refusal, nothing run
 *   ix_kill             the interchange's process killed: the managers
 *                       leave within the heartbeat threshold
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cparsl/cparsl.h>
#include <cparsl/plugin.h>

#include "check.h"
#include "cparsl_test.h"
#include "internal.h"
#include "join.h"
#include "transport/fabric.h"
#include "wire.h"

/* ---- apps ----------------------------------------------------------------
 */

static int app_inc(const cparsl_args_t *a, cparsl_value_t *r,
                   cparsl_error_t *err)
{
    (void)err;
    *r = cparsl_int(cparsl_arg_int(a, 0) + 1);
    return 0;
}
CPARSL_APP(inc, app_inc, .signature = "i")

static int app_add(const cparsl_args_t *a, cparsl_value_t *r,
                   cparsl_error_t *err)
{
    (void)err;
    *r = cparsl_int(cparsl_arg_int(a, 0) + cparsl_arg_int(a, 1));
    return 0;
}
CPARSL_APP(add, app_add, .signature = "ii")

static int app_sum(const cparsl_args_t *a, cparsl_value_t *r,
                   cparsl_error_t *err)
{
    (void)err;
    int64_t s = 0;
    for (size_t i = 0; i < cparsl_args_count(a); i++)
        s += cparsl_arg_int(a, i);
    *r = cparsl_int(s);
    return 0;
}
CPARSL_APP(sum, app_sum)

/* Sleeps argument 1 seconds; returns [argument 0 * 3, the pid it ran in]. */
static int app_where(const cparsl_args_t *a, cparsl_value_t *r,
                     cparsl_error_t *err)
{
    (void)err;
    usleep((useconds_t)(cparsl_arg_double(a, 1) * 1e6));
    cparsl_value_t *v = cparsl_value_new_list(r, 2);
    if (!v)
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    v[0] = cparsl_int(cparsl_arg_int(a, 0) * 3);
    v[1] = cparsl_int((int64_t)getpid());
    return 0;
}
CPARSL_APP(where, app_where, .signature = "id", .retries = 3)

static int app_mark(const cparsl_args_t *a, cparsl_value_t *r,
                    cparsl_error_t *err)
{
    (void)a;
    (void)r;
    (void)err;
    /* A rogue must never get this far: leave a trace if it does. */
    FILE *fp = fopen("rogue-ran", "a");
    if (fp)
        fclose(fp);
    return 0;
}
CPARSL_APP(mark, app_mark)

/* ---- helpers ----------------------------------------------------------- */

/* Init as the client, or, in a manager this program was re-run as, serve
 * and leave. */
static void start(const char *yaml)
{
    cparsl_config_t *cfg = NULL;
    cparsl_error_t err;
    REQUIRE(cparsl_config_load_string(&cfg, yaml, "test.yaml", &err) == 0,
            "config: %s", err.text);
    int rc = cparsl_init(NULL, NULL, cfg, &err);
    cparsl_config_destroy(cfg);
    if (rc == CPARSL_SERVED || getenv("CPARSL_HTEX_JOIN")) {
        cparsl_finalize(NULL);
        exit(rc == CPARSL_SERVED ? 0 : 3);
    }
    REQUIRE(rc == CPARSL_CLIENT, "init: %d %s", rc, err.text);
}

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return NULL;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

/* The run's log, read after finalize. */
static char *run_log(const char *dir)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/cparsl.log", dir);
    return slurp(path);
}

/* SIGKILL leaves a process's libfabric shm region behind (see
 * transport/fabric.c): remove the files of a process that is gone. */
static void remove_shm_of(pid_t pid)
{
    char prefix[32];
    int n = snprintf(prefix, sizeof prefix, "%d:", (int)pid);
    DIR *d = opendir("/dev/shm");
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (strncmp(de->d_name, prefix, (size_t)n) == 0) {
            char path[512];
            snprintf(path, sizeof path, "/dev/shm/%s", de->d_name);
            unlink(path);
        }
    if (d)
        closedir(d);
}

/* ---- seed workflows -------------------------------------------------------
 */

static void seed(const char *provider)
{
    char yaml[1024];
    snprintf(yaml, sizeof yaml,
             "executors:\n"
             "  - {type: htex, providers: ['%s'], managers: 2,"
             " workers_per_manager: 2, isolation: process}\n",
             provider);
    start(yaml);
    CHECK(cparsl_capacity() == 4, "capacity %zu", cparsl_capacity());
    long nchain = check_scale(100);
    cparsl_future_t *f = cparsl_submit("inc", CPARSL_I(0));
    for (long i = 1; i < nchain; i++) {
        cparsl_future_t *g = cparsl_submit("inc", CPARSL_F(f));
        cparsl_future_decref(f);
        f = g;
    }
    CHECK(get_int(f) == nchain, "chain of %ld", nchain);
    cparsl_future_decref(f);

    cparsl_future_t *top = cparsl_submit("inc", CPARSL_I(0));
    cparsl_future_t *l = cparsl_submit("inc", CPARSL_F(top));
    cparsl_future_t *r = cparsl_submit("add", CPARSL_F(top), CPARSL_I(5));
    cparsl_future_t *bot = cparsl_submit("add", CPARSL_F(l), CPARSL_F(r));
    CHECK(get_int(bot) == 2 + 6, "diamond");
    cparsl_future_decref(top);
    cparsl_future_decref(l);
    cparsl_future_decref(r);
    cparsl_future_decref(bot);

    long n = check_scale(2000);
    cparsl_call_t *c = cparsl_call_create("sum");
    for (long i = 0; i < n; i++) {
        cparsl_future_t *x = cparsl_submit("inc", CPARSL_I(i));
        cparsl_call_arg_future(c, x);
        cparsl_future_decref(x);
    }
    cparsl_future_t *s = cparsl_call_submit(c);
    CHECK(get_int(s) == n * (n + 1) / 2, "fan-in: sum of 1..%ld", n);
    cparsl_future_decref(s);

    /* Tasks ran in other processes. */
    cparsl_future_t *w = cparsl_submit("where", CPARSL_I(1), CPARSL_D(0));
    const cparsl_value_t *v = NULL;
    CHECK(cparsl_future_get(w, &v) == 0 && v->type == CPARSL_T_LIST &&
              v->u.list.n == 2 && v->u.list.p[1].u.i != (int64_t)getpid(),
          "a task ran in another process");
    cparsl_future_decref(w);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", cparsl_run_dir());
    finalize_ok();
    const char *log = run_log(dir);
    CHECK(log && strstr(log, "2 joined, 0 refused"),
          "the log counts 2 joiners:\n%s", log ? log : "(no log)");
}

TEST_CASE(seed_shm)
{
    seed("shm");
}

TEST_CASE(seed_tcp)
{
    seed("tcp;ofi_rxm");
}

/* ---- a manager killed mid-run ------------------------------------------- */

TEST_CASE(manager_kill)
{
    start("executors:\n"
          "  - {type: htex, providers: [shm], managers: 2,"
          " workers_per_manager: 2, isolation: none,"
          " heartbeat_period: 0.2, heartbeat_threshold: 1.5}\n");
    long n = check_scale(200);
    cparsl_future_t **fs = calloc((size_t)n, sizeof *fs);
    REQUIRE(fs, "memory");
    for (long i = 0; i < n; i++)
        fs[i] = cparsl_submit("where", CPARSL_I(i), CPARSL_D(0.02));
    /* The manager that ran the first task dies. */
    const cparsl_value_t *v = NULL;
    REQUIRE(cparsl_future_get(fs[0], &v) == 0, "first task: %s",
            cparsl_future_errstr(fs[0]));
    pid_t victim = (pid_t)v->u.list.p[1].u.i;
    REQUIRE(victim > 0 && victim != getpid(), "victim pid %d", (int)victim);
    REQUIRE(kill(victim, SIGKILL) == 0, "kill %d: %s", (int)victim,
            strerror(errno));
    long wrong = 0, by_victim_after = 0;
    for (long i = 0; i < n; i++) {
        const cparsl_value_t *x = NULL;
        if (cparsl_future_get(fs[i], &x) != 0 || x->u.list.p[0].u.i != i * 3)
            wrong++;
        cparsl_future_decref(fs[i]);
    }
    (void)by_victim_after;
    free(fs);
    CHECK(wrong == 0, "%ld of %ld tasks failed or answered wrong", wrong, n);
    remove_shm_of(victim);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", cparsl_run_dir());
    finalize_ok();
    const char *log = run_log(dir);
    CHECK(log && strstr(log, "1 managers lost"),
          "the log reports the lost manager:\n%s", log ? log : "");
}

/* ---- scaling the local block ------------------------------------------- */

static bool capacity_becomes(size_t want, double timeout)
{
    for (int i = 0; i < (int)(timeout * 100) && cparsl_capacity() != want; i++)
        usleep(10000);
    return cparsl_capacity() == want;
}

static void run_some(long n, const char *what)
{
    long wrong = 0;
    for (long i = 0; i < n; i++) {
        cparsl_future_t *f = cparsl_submit("inc", CPARSL_I(i));
        int64_t v = -1;
        if (cparsl_future_get_int(f, &v) != 0 || v != i + 1)
            wrong++;
        cparsl_future_decref(f);
    }
    CHECK(wrong == 0, "%s: %ld of %ld wrong", what, wrong, n);
}

TEST_CASE(scale)
{
    start("executors:\n"
          "  - {type: htex, providers: [shm], managers: 1,"
          " workers_per_manager: 2, isolation: none}\n");
    cparsl_executor_t *ex = cparsl__dfk_find_executor(cparsl__dfk, "htex");
    REQUIRE(ex, "the htex executor");
    CHECK(cparsl_capacity() == 2, "one manager: %zu", cparsl_capacity());
    CHECK(ex->ops->scale_out(ex, 1) == 0, "scale out by one");
    CHECK(capacity_becomes(4, 30), "a second manager joined: %zu",
          cparsl_capacity());
    run_some(check_scale(500), "with 2 managers");
    CHECK(ex->ops->scale_in(ex, 1) == 0, "scale in by one");
    CHECK(capacity_becomes(2, 30), "one manager drained and left: %zu",
          cparsl_capacity());
    run_some(check_scale(500), "after the drain");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", cparsl_run_dir());
    finalize_ok();
    const char *log = run_log(dir);
    CHECK(log && strstr(log, "drained and left"), "the log says so:\n%s",
          log ? log : "");
}

/* Bad htex configs fail cparsl_init with the key named. */
TEST_CASE(bad_config)
{
    static const struct {
        const char *yaml, *words;
    } bad[] = {
        {"executors: [{type: htex, providrs: [shm]}]", "providrs"},
        {"executors: [{type: htex, providers: shm}]", "providers"},
        {"executors: [{type: htex, providers: []}]", "providers"},
        {"executors: [{type: htex, heartbeat_period: 5,"
         " heartbeat_threshold: 2}]",
         "heartbeat_threshold"},
        {"executors: [{type: htex, providers: [no_such_provider]}]",
         "no_such_provider"},
        {"executors: [{type: htex, managers: -1}]", "managers"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cparsl_config_t *cfg = NULL;
        cparsl_error_t err;
        REQUIRE(
            cparsl_config_load_string(&cfg, bad[i].yaml, "bad.yaml", &err) == 0,
            "yaml %zu", i);
        int rc = cparsl_init(NULL, NULL, cfg, &err);
        cparsl_config_destroy(cfg);
        CHECK(rc < 0 && strstr(err.text, bad[i].words),
              "'%s' fails naming '%s': %d %s", bad[i].yaml, bad[i].words, rc,
              err.text);
        if (rc >= 0)
            cparsl_finalize(NULL);
    }
}

/* An idle manager leaves on its own after max_idletime. */
TEST_CASE(idle)
{
    start("executors:\n"
          "  - {type: htex, providers: [shm], managers: 1,"
          " workers_per_manager: 2, isolation: none, max_idletime: 0.5}\n");
    run_some(10, "before going idle");
    CHECK(capacity_becomes(0, 20), "the idle manager left: %zu slots",
          cparsl_capacity());
    finalize_ok();
}

/* ---- rogue peers --------------------------------------------------------- */

/* In a child: join with these credentials; exit 0 when refused with the
 * expected words and nothing but CHALLENGE and REFUSE came back. */
static int rogue_join(const char *addr_file, const unsigned char *secret,
                      const char *build, const char *expect)
{
    char text[8192] = "";
    FILE *fp = fopen(addr_file, "r");
    if (!fp || !fgets(text, sizeof text, fp))
        return 10;
    fclose(fp);
    text[strcspn(text, "\n")] = '\0';
    htex_fabric_opts_t fo = {0};
    cparsl_transport_t *t = NULL;
    cparsl_error_t err;
    if (htex_fabric_join(text, &fo, &t, &err) < 0) {
        fprintf(stderr, "rogue: %s\n", err.text);
        return 11;
    }
    unsigned char name[512];
    int nlen = htex_fabric_name(t, name, sizeof name);
    int id = -1;
    int rc = htex_join(t, 0, secret, name, (size_t)nlen, build, "rogue", 10,
                       &id, &err);
    int out = rc == -EACCES && strstr(err.text, expect) ? 0 : 12;
    if (out)
        fprintf(stderr, "rogue: expected a refusal with '%s', got %d %s\n",
                expect, rc, err.text);
    /* Anything else that arrives now would be a leak: wait a little. */
    for (int i = 0; i < 50 && out == 0; i++) {
        int peer;
        void *buf;
        size_t len;
        if (t->ops->try_recv(t, &peer, &buf, &len, &err) > 0) {
            htex_reader_t r;
            if (htex_msg_open(&r, buf, len, &err) == 0 &&
                r.hdr.type != HTEX_MSG_REFUSE &&
                r.hdr.type != HTEX_MSG_CHALLENGE) {
                fprintf(stderr, "rogue: was sent a %s\n",
                        htex_msg_name(r.hdr.type));
                out = 13;
            }
            t->ops->msg_free(t, buf);
        }
        usleep(10000);
    }
    t->ops->destroy(t);
    return out;
}

/* In a child: send malformed frames (and a RESULTS message) without
 * joining, as a stranger would. */
static int rogue_frames(const char *addr_file)
{
    char text[8192] = "";
    FILE *fp = fopen(addr_file, "r");
    if (!fp || !fgets(text, sizeof text, fp))
        return 10;
    fclose(fp);
    text[strcspn(text, "\n")] = '\0';
    htex_fabric_opts_t fo = {0};
    cparsl_transport_t *t = NULL;
    cparsl_error_t err;
    if (htex_fabric_join(text, &fo, &t, &err) < 0)
        return 11;
    static const char junk[] = "GET / HTTP/1.1\r\n\r\n";
    htex_buf_t b = {0};
    for (int k = 0; k < 6; k++) {
        size_t len;
        const void *src;
        if (k == 0) {
            src = junk;
            len = sizeof junk;
        } else if (k == 1) {
            htex_msg_begin(&b, HTEX_MSG_RESULTS, 100);
            len = (size_t)htex_msg_end(&b);
            src = b.p;
        } else if (k == 2) { /* a HELLO with a garbage endpoint name */
            htex_msg_begin(&b, HTEX_MSG_HELLO, 0);
            const void *p[3] = {"\x01\x02garbage", "x", "h"};
            size_t l[3] = {9, 1, 1};
            htex_msg_add_fields(&b, 3, p, l);
            len = (size_t)htex_msg_end(&b);
            src = b.p;
        } else if (k == 3) { /* a header that lies about its length */
            htex_msg_begin(&b, HTEX_MSG_TASKS, 0);
            len = (size_t)htex_msg_end(&b);
            b.p[24] = 0xff;
            src = b.p;
        } else { /* truncated */
            htex_msg_begin(&b, HTEX_MSG_HEARTBEAT, 5);
            len = 7;
            src = b.p;
        }
        void *m = t->ops->msg_alloc(t, len);
        if (!m)
            return 12;
        memcpy(m, src, len);
        t->ops->send(t, 0, m, len);
    }
    for (int i = 0; i < 100; i++) {
        t->ops->progress(t);
        usleep(5000);
    }
    htex_buf_free(&b);
    t->ops->destroy(t);
    return 0;
}

/* A rogue runs as a fresh process (this program again, re-executed):
 * forking a process whose threads hold libfabric's and malloc's locks
 * could leave the child stuck on one.  What it does comes in the
 * environment; it exits 0 when it saw what it should. */
static int rogue_main(void)
{
    const char *addr = getenv("ROGUE_ADDR"), *mode = getenv("ROGUE_MODE");
    if (!addr || !mode)
        return 20;
    if (strcmp(mode, "frames") == 0)
        return rogue_frames(addr);
    unsigned char secret[HTEX_SECRET_LEN];
    cparsl_error_t err;
    setenv("CPARSL_HTEX_SECRET", getenv("ROGUE_SECRET"), 1);
    if (htex_secret_load(NULL, secret, &err) < 0)
        return 21;
    return rogue_join(addr, secret, getenv("ROGUE_BUILD"),
                      getenv("ROGUE_EXPECT"));
}

static int run_child(const char *mode, const char *addr,
                     const unsigned char *secret, const char *build,
                     const char *expect)
{
    char hex[2 * HTEX_SECRET_LEN + 1] = "";
    for (int i = 0; secret && i < HTEX_SECRET_LEN; i++)
        snprintf(hex + 2 * i, 3, "%02x", secret[i]);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("ROGUE_MODE", mode, 1);
        setenv("ROGUE_ADDR", addr, 1);
        setenv("ROGUE_SECRET", hex, 1);
        setenv("ROGUE_BUILD", build ? build : "", 1);
        setenv("ROGUE_EXPECT", expect ? expect : "", 1);
        char *argv[] = {"test_htex", "rogue", NULL};
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    int st = 0;
    for (int i = 0; i < 6000; i++) { /* at most a minute */
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return 99;
}

TEST_CASE(rogue)
{
    start("executors:\n"
          "  - {type: htex, providers: ['tcp;ofi_rxm'], managers: 1,"
          " workers_per_manager: 1, isolation: none}\n");
    char dir[1024], addr[1100], spath[1100];
    snprintf(dir, sizeof dir, "%s", cparsl_run_dir());
    snprintf(addr, sizeof addr, "%s/htex.htex.addr", dir);
    snprintf(spath, sizeof spath, "%s/htex.htex.secret", dir);
    struct stat st;
    CHECK(stat(spath, &st) == 0 && (st.st_mode & 0777) == 0600,
          "the secret file is 0600 (%o)", (unsigned)st.st_mode & 0777);
    unsigned char good[HTEX_SECRET_LEN], bad[HTEX_SECRET_LEN];
    cparsl_error_t err;
    REQUIRE(htex_secret_load(spath, good, &err) == 0, "%s", err.text);
    memcpy(bad, good, sizeof bad);
    bad[0] ^= 1;
    unlink("rogue-ran");
    CHECK(run_child("join", addr, bad, cparsl_program_build_id(),
                    "wrong secret") == 0,
          "a wrong secret is refused");
    CHECK(run_child("join", addr, good, "0123456789abcdef", "build mismatch") ==
              0,
          "a wrong build id is refused by name");
    CHECK(run_child("frames", addr, NULL, NULL, NULL) == 0,
          "malformed frames sent");
    /* The run goes on unharmed. */
    cparsl_future_t *f = cparsl_submit("inc", CPARSL_I(41));
    CHECK(get_int(f) == 42, "a task after the rogues");
    cparsl_future_decref(f);
    finalize_ok();
    CHECK(access("rogue-ran", F_OK) != 0, "no rogue got a task to run");
    const char *log = run_log(dir);
    /* Refused: the wrong secret, the wrong build, and the HELLO whose
     * endpoint name the provider cannot use.  (The build mismatch's
     * reason was checked by the rogue itself, from its REFUSE.) */
    CHECK(log && strstr(log, "1 joined, 3 refused"),
          "the log counts 1 joiner and 3 refusals:\n%s", log ? log : "");
    CHECK(log && strstr(log, "wrong secret"), "the log names why");
}

/* ---- the interchange killed --------------------------------------------- */

TEST_CASE(ix_kill)
{
    /* Orphaned managers become our children, so we can reap them. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    char pidfile[] = "ix-kill.pids";
    unlink(pidfile);
    pid_t drv = fork();
    if (drv == 0) {
        start("executors:\n"
              "  - {type: htex, providers: [shm], managers: 2,"
              " workers_per_manager: 1, isolation: none,"
              " heartbeat_period: 0.2, heartbeat_threshold: 1.0}\n");
        /* Tell the parent where the managers log (their pids), then
         * wait to be killed. */
        FILE *fp = fopen(pidfile, "w");
        if (fp) {
            fprintf(fp, "%s\n", cparsl_run_dir());
            fclose(fp);
        }
        pause();
        _exit(0);
    }
    for (int i = 0; i < 3000 && access(pidfile, F_OK) != 0; i++)
        usleep(10000);
    REQUIRE(access(pidfile, F_OK) == 0, "the driver started");
    kill(drv, SIGKILL);
    waitpid(drv, NULL, 0);
    remove_shm_of(drv);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int left = 2;
    while (left > 0) {
        pid_t p = waitpid(-1, NULL, 0);
        if (p < 0)
            break;
        left--;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s =
        (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    CHECK(left == 0, "both managers left (%d did not)", left);
    CHECK(s < 6, "the managers left %.2f s after the interchange died", s);
}

static const check_case_t cases[] = {
    TEST_ENTRY(seed_shm), TEST_ENTRY(seed_tcp),   TEST_ENTRY(manager_kill),
    TEST_ENTRY(rogue),    TEST_ENTRY(ix_kill),    TEST_ENTRY(scale),
    TEST_ENTRY(idle),     TEST_ENTRY(bad_config), {NULL, NULL},
};

int main(int argc, char **argv)
{
    /* Re-run as a local manager: serve, and leave before any case runs
     * (a case forks, unlinks and kills things). */
    if (getenv("CPARSL_HTEX_JOIN"))
        start("{}");
    if (getenv("ROGUE_MODE"))
        return rogue_main();
    return check_main(argc, argv, cases);
}
