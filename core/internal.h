/*
 * internal.h - the core's private structures: tasks, futures, the DFK.
 *
 * A task *is* its future (the future is its first member), so one object
 * from one free list carries a submission from call to result: no malloc
 * per task in steady state.  DataFutures and the all/any composites are
 * task objects too, of other kinds, so every "wait for these futures"
 * goes through one mechanism: dependency nodes linked into the futures
 * they wait on, walked by the DFK thread when a future completes.
 *
 * Threads and ownership:
 *   - Only the DFK thread changes a task's state, completes a future, or
 *     walks or links dependency lists.  Users, workers and client threads
 *     talk to it through one inbound queue.
 *   - A future's outcome (value, error) is written once before its state
 *     word becomes DONE (release) and read only after seeing DONE
 *     (acquire); the state word doubles as the futex waiters sleep on.
 *   - 'then' callbacks are a lock-free stack closed by the DFK at
 *     completion; a callback added after that goes straight to the client
 *     pool.
 */
#ifndef CPARSL_CORE_INTERNAL_H
#define CPARSL_CORE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <cparsl/cparsl.h>
#include <cparsl/plugin.h>

#include "log.h"
#include "memo.h"

/* ---- small intrusive work items (client pool) ------------------------- */

typedef struct cparsl__work cparsl__work_t;
struct cparsl__work {
    cparsl__work_t *next;
    void (*fn)(cparsl__work_t *w);
};

/* ---- futures ------------------------------------------------------------ */

enum { FUT_PENDING = 0, FUT_WAITERS = 1, FUT_DONE = 2 };

enum cparsl__kind {
    TK_APP = 0, /* an app call */
    TK_DATA,    /* a DataFuture: an output file of an app call */
    TK_ALL,     /* cparsl_future_all */
    TK_ANY,     /* cparsl_future_any */
    TK_DONE,    /* created complete (errors before the DFK saw it) */
};

typedef struct cparsl__then cparsl__then_t;
struct cparsl__then {
    cparsl__work_t work; /* first: queued on the client pool */
    cparsl__then_t *next;
    cparsl_future_t *f;
    cparsl_then_fn fn;
    void *arg;
};

/* Marks a then-stack as closed (the future completed). */
#define THEN_CLOSED ((cparsl__then_t *)(uintptr_t)1)

typedef struct cparsl__dep cparsl__dep_t;

struct cparsl_future {
    _Atomic uint32_t state; /* FUT_*, also the futex word */
    _Atomic int32_t refs;
    uint8_t kind; /* enum cparsl__kind */
    /* outcome: written by the DFK thread before state becomes DONE */
    int errcode;
    uint64_t id; /* task id; 0 for non-app futures */
    cparsl_value_t value;
    char *errtext; /* malloc'd on failure, NULL on success */
    /* DFK thread only: the dependency nodes waiting on this future */
    cparsl__dep_t *dependents;
    _Atomic(cparsl__then_t *) thens;
};

/* A waiter's link into one future it depends on. */
struct cparsl__dep {
    cparsl__dep_t *next;       /* in on->dependents */
    struct cparsl__task *task; /* the waiter */
    cparsl_future_t *on;       /* holds a reference, dropped at destroy */
    uint32_t index;            /* slot index in the waiter's table */
    uint8_t where;             /* DEP_ARG, DEP_FILE, DEP_JOIN, DEP_SET */
    uint8_t fired;
};

enum { DEP_ARG = 0, DEP_FILE, DEP_JOIN, DEP_SET, DEP_MEMO };

/* ---- tasks --------------------------------------------------------------- */

/* Arguments, files and dependencies a task holds without a malloc: most
 * calls have a few.  Each inline slot costs every task in flight 24-32
 * bytes (rank 0 holds one per busy worker: docs/performance.md). */
#define TASK_INLINE_ARGS  3
#define TASK_INLINE_FILES 2
#define TASK_INLINE_DEPS  2

/* Inbound-queue events. */
enum { EV_SUBMIT = 1, EV_DONE = 2 };

typedef struct cparsl__task {
    cparsl_future_t fut; /* first: a task is its future */
    struct cparsl__dfk *dfk;
    const cparsl_app_t *app;
    const struct cparsl_app_kind *appkind;
    cparsl_exec_t exec;
    cparsl__work_t work; /* client-pool item (join bodies) */

    /* queue link (what the queued entry means: 'event' below) */
    struct cparsl__task *qnext;

    /* DFK thread only.  Small fields together: rank 0 holds one task per
     * busy worker, so padding costs memory at scale. */
    cparsl_state_t state;
    int retries;
    uint32_t pending; /* dependencies not yet fired */
    uint32_t failed_deps;
    double fail_cost;
    int64_t t_pending; /* when the DFK took it in (for the store) */
    cparsl_executor_t *executor;
    struct cparsl__task *live_prev, *live_next; /* for the checker */
    uint8_t event;
    bool on_live;
    bool dfk_ref;      /* the DFK holds a reference */
    bool memo_hit;     /* waiting on an identical earlier call */
    _Atomic int holds; /* cparsl_exec_hold by an executor */

    /* arguments: positional then keyword slots; inputs then outputs */
    cparsl_argslot_t *argv;
    uint32_t nargs, npos, argcap;
    uint32_t nfiles, ninputs, filecap;
    cparsl_value_t *files;
    uint32_t nowned_names;
    uint32_t ndeps, depcap;
    cparsl__dep_t *deps;
    cparsl_argslot_t argv_inline[TASK_INLINE_ARGS];
    cparsl_value_t files_inline[TASK_INLINE_FILES];
    cparsl__dep_t deps_inline[TASK_INLINE_DEPS];

    /* options given on the call (NULL/negative: the app's default); the
     * stream paths are owned through exec.stdout_path/stderr_path */
    char *executors;  /* labels, owned */
    int call_retries; /* -1: default */
    int cache;        /* -1: default */
    /* the first error found while building the call */
    int call_err;
    /* TK_DATA: the output index in the producer */
    uint32_t data_index;
    double call_walltime; /* <0: default */
    char *call_errtext;
    /* TK_ANY: index of the first dependency to finish */
    int64_t any_index;
} cparsl__task_t;

static inline cparsl__task_t *task_of(cparsl_future_t *f)
{
    return (cparsl__task_t *)f;
}
static inline cparsl__task_t *task_of_exec(cparsl_exec_t *e)
{
    return cparsl_container_of(e, cparsl__task_t, exec);
}

/* future.c */
cparsl__task_t *cparsl__task_alloc(void);
void cparsl__task_ref(cparsl__task_t *t);
void cparsl__task_unref(cparsl__task_t *t);
void cparsl__freelist_trim(void);
/* Add a dependency node on 'on' (takes a reference). 0 or -ENOMEM. */
int cparsl__task_add_dep(cparsl__task_t *t, cparsl_future_t *on, uint8_t where,
                         uint32_t index);
/* Publish the outcome: wakes waiters, returns the closed then-stack. */
cparsl__then_t *cparsl__future_publish(cparsl_future_t *f);
/* Set a failure outcome (does not publish). */
void cparsl__future_set_error(cparsl_future_t *f, int code, const char *text);
/* A future that is already failed, outside any DFK. */
cparsl_future_t *cparsl__future_failed(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Queue a closed then-stack on the client pool, in the order added. */
void cparsl__thens_dispatch(cparsl__then_t *stack);

/* ---- the client pool (join bodies, then callbacks) -------------------- */

int cparsl__clientpool_start(size_t max_threads, cparsl_error_t *err);
void cparsl__clientpool_post(cparsl__work_t *w);
void cparsl__clientpool_post_list(cparsl__work_t *head);
/* Wait until the pool has no queued or running work. */
void cparsl__clientpool_quiesce(void);
void cparsl__clientpool_stop(void);
bool cparsl__clientpool_busy(void);
/* Around a blocking wait on a client thread: lets the pool grow. */
bool cparsl__clientpool_block_begin(void);
void cparsl__clientpool_block_end(void);

/* ---- the DFK ------------------------------------------------------------- */

typedef struct cparsl__dfk cparsl__dfk_t;

struct cparsl__dfk {
    int64_t batch_ns; /* DFK thread: when its current batch began (0: none) */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* the DFK thread sleeps here */
    pthread_cond_t idle_cv; /* finalize waits here for quiescence */
    cparsl__task_t *in_head, *in_tail;
    bool sleeping;
    bool stop;
    _Atomic bool has_work;

    /* DFK thread only */
    cparsl__task_t *live; /* all tasks not yet destroyed-by-DFK */
    size_t nlive;
    size_t unfinished;      /* submitted and not final (under mu) */
    cparsl_future_t **work; /* completed futures to propagate */
    size_t nwork, capwork;

    cparsl_executor_t **executors;
    size_t nexecutors;
    size_t rr; /* round-robin cursor */
    struct launch_batch {
        cparsl_exec_t **v;
        size_t n, cap;
    } * batches; /* one per executor */

    cparsl_store_t *store;
    const struct cparsl_store_ops *store_ops;

    int default_retries;
    bool app_cache;
    cparsl__memo_t memo;
    cparsl_retry_fn retry_fn;
    void *retry_arg;

    /* invariant check requests */
    bool check_req, check_done_flag;
    int check_rc;
    cparsl_error_t check_err;
    pthread_cond_t check_cv;

    _Atomic int stopping; /* a signal asked for an orderly shutdown */
    _Atomic bool flush_req;
    /* cparsl_flush: requests counted under mu, answered on flush_cv */
    uint64_t flush_asked, flush_done;
    int flush_rc;
    cparsl_error_t flush_err;
    pthread_cond_t flush_cv;
    _Atomic uint64_t next_id;
    _Atomic uint64_t counts[CPARSL_STATE_COUNT];

    /* checkpoints: memoized results handed to the store per the mode
     * (DFK thread only, but ckpt_now) */
    int ckpt_mode; /* CPARSL__CKPT_* */
    int64_t ckpt_period_ns, ckpt_next;
    struct cparsl__ckpt_wait {
        const unsigned char *key; /* owned by the memo table */
        size_t len;
        uint64_t hash;
        cparsl_future_t *f; /* a reference */
    } * ckpt_v;
    size_t ckpt_n, ckpt_cap;
    uint64_t ckpt_written;
    _Atomic bool ckpt_now; /* cparsl_checkpoint() asked */
};

enum {
    CPARSL__CKPT_NONE = 0,
    CPARSL__CKPT_TASK_EXIT,
    CPARSL__CKPT_PERIODIC,
    CPARSL__CKPT_DFK_EXIT,
    CPARSL__CKPT_MANUAL,
};

extern cparsl__dfk_t *cparsl__dfk;

int cparsl__dfk_start(cparsl__dfk_t *d, cparsl_error_t *err);
void cparsl__dfk_post(cparsl__dfk_t *d, cparsl__task_t *t, int event);
/* Block until every submitted task is final. */
void cparsl__dfk_wait_idle(cparsl__dfk_t *d);
/* Same, up to a CLOCK_MONOTONIC deadline (INT64_MAX: none). */
int cparsl__dfk_wait_idle_until(cparsl__dfk_t *d, int64_t deadline_mono);
void cparsl__dfk_stop(cparsl__dfk_t *d);
/* Have the DFK thread flush the store and wait for it; 0 or its error. */
int cparsl__dfk_flush(cparsl__dfk_t *d, cparsl_error_t *err);
/* Run the invariant checker on the DFK thread; 0 or -EPROTO with why. */
int cparsl__dfk_check(cparsl__dfk_t *d, cparsl_error_t *err);
cparsl_executor_t *cparsl__dfk_find_executor(cparsl__dfk_t *d,
                                             const char *label);

/* app.c */
void cparsl__apps_resolve_kinds(void);
int cparsl__apps_check(cparsl_error_t *err);
const struct cparsl_app_kind *cparsl__appkind_find(const char *name);

/* signals.c: cb runs on a watcher thread (NULL: just record). */
int cparsl__signals_install(void (*cb)(int sig), cparsl_error_t *err);
void cparsl__signals_remove(void);

/* init.c */
int cparsl__debug_check_enabled(void);

#endif
