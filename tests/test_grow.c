/*
 * test_grow.c - an MPI pilot that grows: mpiexec -n 2 test_grow starts an
 * extreme_scale pilot with accept_joiners, then rank 0 starts one more
 * manager outside the MPI job (this program again, with CPARSL_HTEX_JOIN
 * and without the launcher's environment), which joins over libfabric.
 * The pilot's capacity grows from 1 slot to 3, tasks run on both the MPI
 * worker rank and the joiner with every answer right, and at finalize the
 * joiner is shut down with the pilot and exits 0.
 *
 * `test_grow block` adds a block that is itself an MPI job instead:
 * mpiexec -n 3 of this program outside the pilot, whose rank 0 joins as
 * a sub-interchange and serves its 2 other ranks (2 slots each) over
 * MPI: the capacity grows from 1 to 5.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cparsl/cparsl.h>

#include "check.h"

extern char **environ;

static int app_where(const cparsl_args_t *a, cparsl_value_t *r,
                     cparsl_error_t *err)
{
    usleep(5000);
    cparsl_value_t *v = cparsl_value_new_list(r, 2);
    if (!v)
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    v[0] = cparsl_int(cparsl_arg_int(a, 0) * 3);
    v[1] = cparsl_int((int64_t)getpid());
    return 0;
}
CPARSL_APP(where, app_where, .signature = "i")

/* The joiner: this program, outside the MPI job (with block, under an
 * mpiexec of its own).  Its environment is built before fork (the child
 * of a process with threads may only exec): ours without the launcher's
 * variables, plus the joiner's settings. */
static pid_t start_joiner(const char *addr, char **argv, bool block)
{
    static char self[4096], join[4300];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    self[len > 0 ? len : 0] = '\0';
    snprintf(join, sizeof join, "CPARSL_HTEX_JOIN=%s", addr);
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 8, sizeof *env);
    if (!env)
        return -1;
    size_t k = 0;
    env[k++] = join;
    env[k++] = "CPARSL_HTEX_WORKERS=2";
    env[k++] = "CPARSL_HTEX_ISOLATION=none";
    env[k++] = "CPARSL_HTEX_HEARTBEAT=0.5";
    env[k++] = "CPARSL_HTEX_THRESHOLD=10";
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "OMPI_", 5) != 0 &&
            strncmp(environ[i], "PMIX_", 5) != 0 &&
            strncmp(environ[i], "PMI_", 4) != 0)
            env[k++] = environ[i];
    /* mpiexec as root needs its permission back for the nested job */
    if (block)
        env[k++] = "OMPI_ALLOW_RUN_AS_ROOT=1";
    if (block)
        env[k++] = "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1";
    const char *mpiexec = getenv("CPARSL_TEST_MPIEXEC");
    char *v[] = {(char *)(mpiexec ? mpiexec : "mpiexec"),
                 "--allow-run-as-root",
                 "--oversubscribe",
                 "--bind-to",
                 "none",
                 "-n",
                 "3",
                 self,
                 "block",
                 NULL};
    pid_t pid = fork();
    if (pid == 0) {
        if (block)
            execvpe(v[0], v, env);
        else
            execve(self, argv, env);
        _exit(127);
    }
    free(env);
    return pid;
}

int main(int argc, char **argv)
{
    cparsl_error_t err;
    bool block = argc > 1 && strcmp(argv[1], "block") == 0;
    size_t grown = block ? 5 : 3;
    if (getenv("CPARSL_HTEX_JOIN")) {
        int rc = cparsl_init(NULL, NULL, NULL, &err);
        if (rc != CPARSL_SERVED) {
            fprintf(stderr, "joiner: %s\n", err.text);
            return 1;
        }
        return cparsl_finalize(NULL) == 0 ? 0 : 1;
    }
    cparsl_config_t *cfg = NULL;
    REQUIRE(cparsl_config_load_string(
                &cfg,
                block ? "run_dir: grow-block.runinfo\n"
                        "executors:\n"
                        "  - {type: extreme_scale, workers_per_rank: 1,"
                        " isolation: none, accept_joiners: true,"
                        " join_providers: [shm], heartbeat_period: 0.5,"
                        " heartbeat_threshold: 10}\n"
                      : "run_dir: grow.runinfo\n"
                        "executors:\n"
                        "  - {type: extreme_scale, workers_per_rank: 1,"
                        " isolation: none, accept_joiners: true,"
                        " join_providers: [shm], heartbeat_period: 0.5,"
                        " heartbeat_threshold: 10}\n",
                "grow.yaml", &err) == 0,
            "config: %s", err.text);
    int rc = cparsl_init(&argc, &argv, cfg, &err);
    cparsl_config_destroy(cfg);
    if (rc == CPARSL_SERVED)
        return cparsl_finalize(NULL) == 0 ? 0 : 1;
    REQUIRE(rc == CPARSL_CLIENT, "init: %s", err.text);
    CHECK(cparsl_capacity() == 1, "one MPI worker slot: %zu",
          cparsl_capacity());

    char addr[4200];
    snprintf(addr, sizeof addr, "%s/htex.extreme_scale.addr", cparsl_run_dir());
    /* The MPI worker rank's pid, from a task it runs alone. */
    cparsl_future_t *f0 = cparsl_submit("where", CPARSL_I(0));
    const cparsl_value_t *v0 = NULL;
    REQUIRE(cparsl_future_get(f0, &v0) == 0, "first task");
    int64_t rank1 = v0->u.list.p[1].u.i;
    cparsl_future_decref(f0);
    pid_t joiner = start_joiner(addr, argv, block);
    REQUIRE(joiner > 0, "fork: %s", strerror(errno));
    for (int i = 0; i < 6000 && cparsl_capacity() < grown; i++)
        usleep(10000);
    CHECK(cparsl_capacity() == grown, "the joiner's slots count: %zu of %zu",
          cparsl_capacity(), grown);

    enum { N = 300 };
    cparsl_future_t *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = cparsl_submit("where", CPARSL_I(i));
    int wrong = 0, on_joiner = 0, elsewhere = 0;
    for (int i = 0; i < N; i++) {
        const cparsl_value_t *v = NULL;
        if (cparsl_future_get(fs[i], &v) != 0 || v->u.list.p[0].u.i != i * 3)
            wrong++;
        else if (v->u.list.p[1].u.i != rank1)
            on_joiner++;
        else
            elsewhere++;
        cparsl_future_decref(fs[i]);
    }
    CHECK(wrong == 0, "%d of %d answers wrong", wrong, N);
    CHECK(on_joiner > 0 && elsewhere > 0,
          "tasks ran on the joiner (%d) and the MPI rank (%d)", on_joiner,
          elsewhere);
    CHECK(cparsl_finalize(&err) == 0, "finalize: %s", err.text);
    int st = 0;
    CHECK(waitpid(joiner, &st, 0) == joiner && WIFEXITED(st) &&
              WEXITSTATUS(st) == 0,
          "the joiner left cleanly (status %d)", st);
    return check_done();
}
