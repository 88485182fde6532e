/*
 * cparsl/plugin.h - the implementer API: app kinds, executors and stores.
 *
 * The core (DFK) reaches every plugin through these small const tables of
 * function pointers; the build generates the list of built-in ones
 * (core/backends.c.in), so a new executor or store is one .c file plus one
 * line in CMake.  Kept apart from cparsl.h as hwloc keeps plugins.h apart
 * from hwloc.h: users of the library never need it.
 *
 * An implementation embeds the base struct (cparsl_executor_t,
 * cparsl_store_t) as its first member and recovers itself with
 * cparsl_container_of.  Unsupported slots point at cparsl_*_enosys stubs,
 * never NULL.
 */
#ifndef CPARSL_PLUGIN_H
#define CPARSL_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include <cparsl/cparsl.h>

#ifdef __cplusplus
extern "C" {
#endif

#define cparsl_container_of(ptr, type, member)                                 \
    ((type *)((char *)(ptr)-offsetof(type, member)))

/* ==== the launch, as read from the launcher's environment =============== */

typedef struct cparsl_launch {
    int size;           /* ranks in the launch; 1 without a launcher */
    int rank;           /* this process's rank; 0 without a launcher */
    const char *source; /* the variable size was read from, or NULL */
    /* The MPI_Comm an embedding application gave cparsl_init_comm (size
     * and rank are then its own), or NULL: the launch's whole world. */
    const void *comm;
} cparsl_launch_t;

/* Read OMPI_COMM_WORLD_SIZE, PMI_SIZE or SLURM_STEP_NUM_TASKS (and the
 * matching rank).  Never initializes MPI. */
void cparsl_launch_detect(cparsl_launch_t *out);

/* cparsl_init for a launch the caller describes instead of the
 * environment (cparsl_init_comm, include/cparsl/mpi.h, is built on it). */
int cparsl_init_launch(int *argc, char ***argv, const cparsl_config_t *cfg,
                       const cparsl_launch_t *launch, cparsl_error_t *err);

/* ==== arguments and the unit of execution ============================== */

/* One argument slot: a name (NULL for positional) and its value. */
typedef struct cparsl_argslot {
    const char *name;
    cparsl_value_t value;
} cparsl_argslot_t;

/* What an app sees.  Built by the DFK (or decoded by a worker). */
struct cparsl_args {
    const cparsl_app_t *app;
    uint64_t task_id;
    int try_no;
    size_t npos, nnamed;
    const cparsl_argslot_t *pos;   /* npos slots, name NULL */
    const cparsl_argslot_t *named; /* nnamed slots */
    size_t ninputs, noutputs;
    const cparsl_value_t *inputs;  /* FILE values */
    const cparsl_value_t *outputs; /* FILE values */
};

/* A join body's answer (see cparsl_join_return). */
struct cparsl_join {
    cparsl_future_t **fs;
    size_t n, cap;
    int mode; /* 0 none yet, 1 single, 2 list */
    int error;
};

/*
 * One try of one task, as an executor and an app kind see it.  The DFK
 * owns it (it is embedded in the task); an executor may read it and must
 * fill the result fields, then call cparsl_exec_complete exactly once.
 */
typedef struct cparsl_exec {
    cparsl_args_t args;
    /* options */
    double walltime; /* seconds, 0: none */
    const char *stdout_path, *stderr_path;
    int stdout_mode, stderr_mode;
    /* results, filled by the app kind / executor */
    cparsl_value_t result;
    /* The try's error, NULL when it succeeded (or has not ended).  Kept
     * apart, made by the first cparsl_exec_err: a run keeps up to
     * hundreds of thousands of tries in flight, and a 516-byte buffer in
     * each would be most of rank 0's memory. */
    cparsl_error_t *error;
    cparsl_join_t join;               /* join apps only */
    int64_t t_launch, t_start, t_end; /* ns, CLOCK_REALTIME; 0: unknown */
    int64_t t_dispatch;               /* sent to a worker (htex); 0: unknown */
    int worker;                       /* worker rank (htex), -1: unknown */
    int slot;                         /* slot within that rank, -1: unknown */
    int node;                         /* node id (htex), -1: unknown */
    const char *host;                 /* host name (htex), NULL: unknown */
    int exit_code;                    /* process exit status; -1: none */
    int term_signal;                  /* signal that ended it; 0: none */
    double cpu_s;                     /* CPU time; <0: unknown */
    int64_t maxrss_kib;               /* peak memory; <0: unknown */
    void *executor_data;              /* free for the executor's use */
} cparsl_exec_t;

/* Called by an executor when a try is finished (successfully or not).
 * Thread-safe; never blocks for long; may be called from any thread. */
void cparsl_exec_complete(cparsl_exec_t *e);

/*
 * Run one try on the calling thread through the app's kind: sets t_start
 * and t_end around the body and returns cparsl_exec_code(e).  Executors call
 * this (on a copy, if they may give up on a try before it returns).
 */
int cparsl_exec_run(cparsl_exec_t *e);

/* Keep the task behind 'e' (its arguments and app) alive past
 * cparsl_exec_complete, for a try an executor abandoned but cannot stop;
 * every hold is paired with one release. */
void cparsl_exec_hold(cparsl_exec_t *e);
void cparsl_exec_release(cparsl_exec_t *e);

/* e's error, made on first use (a try that fails).  Aborts with a message
 * if even that much memory is gone: a failure must not read as success. */
cparsl_error_t *cparsl_exec_err(cparsl_exec_t *e);
/* Its code (0: no error) and text ("" when none). */
static inline int cparsl_exec_code(const cparsl_exec_t *e)
{
    return e->error ? e->error->code : 0;
}
static inline const char *cparsl_exec_text(const cparsl_exec_t *e)
{
    return e->error ? e->error->text : "";
}
/* Drop e's error (the try is to run again, or its record is reused). */
void cparsl_exec_clear_error(cparsl_exec_t *e);
/* Move src's error into dst (dropping dst's); src has none after. */
void cparsl_exec_take_error(cparsl_exec_t *dst, cparsl_exec_t *src);
/* Copy a cparsl_error_t into e's error (clear it when err->code is 0). */
void cparsl_exec_set_error(cparsl_exec_t *e, const cparsl_error_t *err);

/* Set e's error: a convenience for executors and app kinds. */
#define cparsl_exec_fail(e, code, ...)                                         \
    cparsl_error_set(cparsl_exec_err(e), (code), __VA_ARGS__)

/* Check e's positional arguments against the app's signature (converting
 * ints to doubles where 'd' asks); 0 or -CPARSL_EARGS naming the
 * argument. */
int cparsl_exec_check_signature(cparsl_exec_t *e);

/* Nanoseconds of CLOCK_REALTIME / CLOCK_MONOTONIC. */
int64_t cparsl_now_ns(void);
int64_t cparsl_mono_ns(void);

/* ==== app kinds ========================================================= */

enum {
    /* The body runs on the client (join apps), not on an executor. */
    CPARSL_APPKIND_CLIENT = 1u << 0,
    /* run() enforces e->walltime itself (bash apps kill their process
     * group), so executors need not watch the clock for it. */
    CPARSL_APPKIND_WALLTIME = 1u << 1,
};

struct cparsl_app_kind {
    const char *name;
    unsigned flags;
    /* Validate a descriptor at registration/init (e.g. template syntax). */
    int (*check)(const cparsl_app_t *app, cparsl_error_t *err);
    /* Run one try on the calling thread; fill e->result or e->error (and
     * exit_code, cpu_s, ... where known).  Returns cparsl_exec_code(e). */
    int (*run)(cparsl_exec_t *e);
};

/* The kind an app is of, or NULL for an unknown kind name. */
const struct cparsl_app_kind *cparsl_app_kind_of(const cparsl_app_t *app);

/* ==== executors ========================================================= */

typedef struct cparsl_executor cparsl_executor_t;

enum {
    /* The family can serve a launch of more than one rank (MPI). */
    CPARSL_EXEC_MPI = 1u << 0,
};

struct cparsl_executor_ops {
    const char *family; /* the "type" key in config: "threadpool" */
    unsigned flags;
    /* > 0: this family wants to be the default executor for this launch
     * (the highest wins); 0: no opinion. */
    int (*probe)(const cparsl_launch_t *launch);
    /* Validate 'node' (this executor's map in the config; NULL when the
     * family was picked by probe) and create an instance. */
    int (*configure)(const cparsl_cnode_t *node, const cparsl_launch_t *launch,
                     cparsl_executor_t **out, cparsl_error_t *err);
    int (*start)(cparsl_executor_t *ex, cparsl_error_t *err);
    /* Take n tries.  Must not block on task execution. */
    int (*submit)(cparsl_executor_t *ex, cparsl_exec_t *const *batch, size_t n);
    size_t (*outstanding)(cparsl_executor_t *ex); /* submitted, not done */
    size_t (*capacity)(cparsl_executor_t *ex);    /* connected slots */
    int (*scale_out)(cparsl_executor_t *ex, unsigned blocks);
    int (*scale_in)(cparsl_executor_t *ex, unsigned blocks);
    int (*drain)(cparsl_executor_t *ex);
    /* Stop after the outstanding tries completed (the DFK waits for them
     * first); report anything left behind in err. */
    int (*shutdown)(cparsl_executor_t *ex, cparsl_error_t *err);
    void (*destroy)(cparsl_executor_t *ex);
    /* Non-client ranks of an MPI-capable family: serve tasks until the
     * client finalizes, then return (cparsl_init then returns
     * CPARSL_SERVED; shutdown and destroy follow at cparsl_finalize). */
    int (*serve)(cparsl_executor_t *ex, cparsl_error_t *err);
    /*
     * Optional (NULL: the executor has threads of its own).  The DFK
     * thread calls it between batches and while it waits for work, so an
     * executor can do its client-side work there instead of on a thread
     * of its own: one hand-off fewer each way.  Must not block; returns
     * > 0 when it did something (the DFK then polls again soon), 0 when
     * there was nothing to do (the DFK backs off: polls for a short
     * while, then sleeps up to 1 ms, 20 ms after a second of quiet).  A
     * submit always wakes the DFK at once.
     */
    int (*poll)(cparsl_executor_t *ex);
};

struct cparsl_executor {
    const struct cparsl_executor_ops *ops;
    char label[64];
};

/* Stubs for slots a family does not support. */
int cparsl_executor_enosys_scale(cparsl_executor_t *ex, unsigned blocks);
int cparsl_executor_enosys_drain(cparsl_executor_t *ex);
int cparsl_executor_enosys_serve(cparsl_executor_t *ex, cparsl_error_t *err);

/* ==== stores ============================================================ */

/* Parsl's task states. */
typedef enum cparsl_state {
    CPARSL_UNSCHED = 0,
    CPARSL_PENDING,
    CPARSL_LAUNCHED,
    CPARSL_RUNNING,
    CPARSL_RUNNING_ENDED,
    CPARSL_JOINING,
    CPARSL_EXEC_DONE,
    CPARSL_MEMO_DONE,
    CPARSL_FAILED,
    CPARSL_DEP_FAIL,
    CPARSL_FAIL_RETRYABLE,
    CPARSL_STATE_COUNT
} cparsl_state_t;

const char *cparsl_state_name(cparsl_state_t s);

/* One state change, as the store sees it (valid during the call). */
typedef struct cparsl_task_event {
    uint64_t task_id;
    const char *app;
    const char *executor; /* label, NULL before launch */
    cparsl_state_t from, to;
    int try_no;
    int64_t t_ns;
    const cparsl_exec_t *exec; /* on final states: the try's record */
    /* exec_done and memo_done: the task's result (by then it has moved
     * out of exec into the future); NULL otherwise. */
    const cparsl_value_t *result;
    /* On final states (and unfinished ones): when the task was pending. */
    int64_t t_pending;
    /* failed and dep_fail: the task's error (the try's, or the DFK's when
     * no try ran: a dependency failed, the arguments did not fit). */
    int error_code;
    const char *error_text;
    /* At the DFK's end: a task that never reached a final state, reported
     * once in the state it was left in (exec valid, no result). */
    bool unfinished;
} cparsl_task_event_t;

/*
 * A checkpoint entry: a memoized call's key (the canonical encoding of
 * app, version and arguments) and its result.  checkpoint() gets the
 * result as a value; resume() hands back its canonical encoding.
 */
typedef struct cparsl_ckpt {
    uint64_t task_id; /* the task that computed it, in its own run */
    uint64_t hash;    /* XXH3-64 of the key */
    const void *key;
    size_t key_len;
    const cparsl_value_t *result; /* checkpoint() */
    const void *encoded;          /* resume() */
    size_t encoded_len;
} cparsl_ckpt_t;

/* A block (a batch job or the MPI job itself) changing state. */
typedef struct cparsl_block_event {
    const char *executor; /* label */
    int64_t block;        /* the executor's block number */
    const char *event;    /* "requested", "pending", "running", ... */
    const char *job_id;   /* the scheduler's id; NULL: none */
    int32_t nodes, workers;
    int64_t t_ns;
} cparsl_block_event_t;

typedef struct cparsl_store cparsl_store_t;

enum {
    /* The store records nothing: the DFK need not build events for it. */
    CPARSL_STORE_DISCARDS = 1u << 0,
    /* The store takes pending, launched, running and running_ended from
     * the final event (t_pending, exec's times): the DFK sends it only
     * final states, joining, fail_retryable, and the unfinished ones at
     * its end. */
    CPARSL_STORE_FINALS = 1u << 1,
};

struct cparsl_store_ops {
    const char *name;
    unsigned flags;
    /* Read the store's keys from the whole config and open the store. */
    int (*open)(const cparsl_cnode_t *root, const char *run_dir,
                cparsl_store_t **out, cparsl_error_t *err);
    /* Every state change, on the DFK's thread.  Must not block long. */
    void (*task_event)(cparsl_store_t *s, const cparsl_task_event_t *ev);
    /* A dependency edge, recorded once when the child is submitted. */
    void (*dependency)(cparsl_store_t *s, uint64_t child, uint64_t parent);
    int (*flush)(cparsl_store_t *s, cparsl_error_t *err);
    int (*close)(cparsl_store_t *s, cparsl_error_t *err);
    /* Optional (NULL: the store keeps no checkpoints, and a config that
     * asks for them is refused).  checkpoint() records one entry, on the
     * DFK's thread; resume() reads the entries of the earlier runs'
     * files in 'paths' and hands each to 'fn' (a non-zero return stops
     * it), at init before any task runs. */
    void (*checkpoint)(cparsl_store_t *s, const cparsl_ckpt_t *e);
    int (*resume)(cparsl_store_t *s, const char *const *paths, size_t n,
                  int (*fn)(void *arg, const cparsl_ckpt_t *e), void *arg,
                  cparsl_error_t *err);
    /* Optional: a block's state change; any thread. */
    void (*block_event)(cparsl_store_t *s, const cparsl_block_event_t *ev);
};

struct cparsl_store {
    const struct cparsl_store_ops *ops;
};

/* This executable's GNU build-id in hex ("" when it was linked without
 * one): memo keys default to it, and htex refuses joiners of another. */
const char *cparsl_program_build_id(void);

/* Record a block's state change in the run's store (any thread; nothing
 * when cparsl is not running or the store keeps no blocks). */
void cparsl_store_block_event(const cparsl_block_event_t *ev);

/* ==== the built-in table ================================================ */

/* NULL-terminated arrays generated by the build. */
extern const struct cparsl_executor_ops *const cparsl_builtin_executors[];
extern const struct cparsl_app_kind *const cparsl_builtin_app_kinds[];
extern const struct cparsl_store_ops *const cparsl_builtin_stores[];

#ifdef __cplusplus
}
#endif
#endif /* CPARSL_PLUGIN_H */
