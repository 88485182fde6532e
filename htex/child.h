/*
 * child.h - isolated workers: long-lived child processes that run tasks.
 *
 * A worker slot runs its tasks in one child it supervises, so a task that
 * segfaults, aborts, calls exit() or is killed takes down that child and
 * nothing else: the try fails with a text that says how the child died,
 * the slot starts a new child, and retries apply as usual.
 *
 * Children come from a fork helper: a small single-threaded process
 * forked before any thread or transport starts (before MPI_Init when
 * cparsl initializes MPI), because forking a process that already runs
 * threads and MPI is fragile.  When the application initialized MPI
 * itself, the helper is forked after MPI_Init, which works with Open MPI's
 * shared-memory transport; children never call MPI either way.
 *
 * A child:
 *   - dies with its parent (PR_SET_PDEATHSIG) and leaves with _exit;
 *   - runs with an environment that drops the launcher's job identity
 *     (OMPI_COMM_WORLD_*, OMPI_UNIVERSE_SIZE, OMPI_MCA_ess*, OMPI_MCA_orte*,
 *     OMPI_MCA_pmix*, PMIX_*, PMI_*, SLURM_STEP_*, SLURM_PROCID,
 *     SLURM_LOCALID, SLURM_NTASKS, SLURM_NPROCS, CPARSL_SECRET*) and keeps
 *     the user's own settings, so a task's own mpiexec or srun starts a
 *     job of its own; the slot adds CPARSL_WORKER_RANK, CPARSL_WORKER_COUNT,
 *     CPARSL_MANAGER_ID, CPARSL_BLOCK_ID and accelerator variables;
 *   - may be pinned to a CPU list;
 *   - talks to its slot over a socketpair with the messages of wire.h:
 *     one TASKS message in (one try, or a batch of tries without a
 *     walltime), one RESULTS message with one record out per try;
 *   - reports the task's own peak memory (reset with /proc/self/clear_refs
 *     before each task, VmHWM after) and CPU time.
 */
#ifndef CPARSL_HTEX_CHILD_H
#define CPARSL_HTEX_CHILD_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <cparsl/plugin.h>

/* Start the fork helper.  Must be called while the process has a single
 * thread (checked: -EBUSY otherwise, unless 'allow_threads').  Idempotent. */
int htex_forkhelper_start(bool allow_threads, cparsl_error_t *err);
/* Stop the helper (its children die with their slots). */
void htex_forkhelper_stop(void);
bool htex_forkhelper_running(void);

/* True if a variable must not reach a worker child (see above). */
bool htex_env_dropped(const char *name_eq_value);

typedef struct htex_child_opts {
    /* "NAME=value" entries added to (or replacing in) the environment. */
    const char *const *env;
    size_t nenv;
    /* CPU list to pin the child to ("0-3,8"), NULL: no pinning. */
    const char *cpus;
} htex_child_opts_t;

typedef struct htex_child htex_child_t;

/* Start a child through the helper.  0 or negative with err. */
int htex_child_spawn(const htex_child_opts_t *opts, htex_child_t **out,
                     cparsl_error_t *err);

/*
 * Run one try in the child and fill e's result fields (result, error,
 * t_start, t_end, exit_code, term_signal, cpu_s, maxrss_kib).  Enforces
 * e->walltime: past it the child is killed (SIGKILL) and the try fails
 * with -CPARSL_EWALLTIME.  If the child dies, the try fails with
 * -CPARSL_EWORKER and a text naming the signal or exit status.  After
 * either, htex_child_alive() is false and the caller spawns a new one.
 * Returns e->error.code.
 */
int htex_child_run(htex_child_t *c, cparsl_exec_t *e);

/*
 * Run tries v[0..n) in the child, in order, with one TASKS message (the
 * records' tickets are their indices); the child sends each result as it
 * finishes, before it starts the next try, so a crash loses none.  Each
 * finished exec's result fields are filled as htex_child_run fills them.
 * For tries without a walltime only: every v[i] must have walltime 0 and
 * an app whose kind does not enforce the walltime itself (-EINVAL, and
 * nothing runs, otherwise).
 *
 * *done is how many of v, from the front, are finished: with a result,
 * or failed.  If the child dies, the try it was running fails with
 * -CPARSL_EWORKER as in htex_child_run, it is the last one counted, and
 * htex_child_alive() is false.  The tries after *done were not started
 * and their execs are untouched: run them again (with a new child if this
 * one died).  That also happens, with the child alive, when the tries do
 * not fit in one message of about 1 MiB, and when one cannot be encoded
 * (it then fails alone, first of the next batch).  Returns 0, or -EINVAL
 * as above.
 */
int htex_child_run_batch(htex_child_t *c, cparsl_exec_t *const *v, size_t n,
                         size_t *done);

bool htex_child_alive(const htex_child_t *c);
/* Between tasks: false if the child died or closed its socket while idle
 * (then destroy it and spawn another before the next task). */
bool htex_child_healthy(htex_child_t *c);
pid_t htex_child_pid(const htex_child_t *c);

/* Close the child's socket, wait for it a short time, kill it if needed. */
void htex_child_destroy(htex_child_t *c);

#endif
