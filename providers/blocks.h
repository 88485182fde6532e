/*
 * blocks.h - an executor's blocks and the scaling strategy (rank 0).
 *
 * Every strategy period a thread of its own (cparsl-strategy):
 *
 *  1. asks the provider for the state of every block not yet ended, and
 *     records each change in the run's /blocks table;
 *  2. looks at the executor's managers (hooks.managers), grouped by the
 *     block each joined from: a block is "joined" when its first manager
 *     registers; a running block with no manager after connect_timeout
 *     has failed and is cancelled;
 *  3. drains a block drain_margin seconds before its walltime ends;
 *  4. after block_error_threshold block failures in a row while no
 *     manager serves, marks the executor bad: every waiting task fails
 *     with the reason (hooks.fail_waiting), and no block is asked for
 *     again;
 *  5. scales: at least min_blocks; while tasks wait and the slots of
 *     the blocks asked for fall short of outstanding x parallelism, more
 *     blocks (at most max_blocks); idle blocks are given back:
 *     "simple" gives back all but min_blocks once the executor has been
 *     idle for max_idletime, "htex_auto_scale" gives back each block
 *     whose managers have all been idle that long, as far as the slots
 *     left still cover the tasks.  A block given back drains first (its
 *     managers finish what they hold and leave), then is cancelled if
 *     its job has not ended on its own.
 *
 * Everything touching the blocks runs on that thread; the calls below
 * only leave requests for it.
 */
#ifndef CPARSL_PROVIDERS_BLOCKS_H
#define CPARSL_PROVIDERS_BLOCKS_H

#include <stdbool.h>
#include <stddef.h>

#include <cparsl/provider.h>

typedef struct cparsl_blocks cparsl_blocks_t;

/* One manager, as the executor sees it. */
typedef struct cparsl_mgr_view {
    char block[64]; /* "" for a manager of no provider block */
    unsigned slots; /* 0 until it registered */
    size_t held;
    double idle_s; /* 0 while it holds tasks */
    bool registered, draining, gone;
} cparsl_mgr_view_t;

typedef struct cparsl_blocks_hooks {
    void *arg;
    size_t (*outstanding)(void *arg);
    /* Every manager so far (a malloc'd array the caller frees). */
    int (*managers)(void *arg, cparsl_mgr_view_t **out, size_t *n);
    int (*drain_block)(void *arg, const char *block);
    void (*fail_waiting)(void *arg, const char *why);
} cparsl_blocks_hooks_t;

enum { CPARSL_STRATEGY_NONE, CPARSL_STRATEGY_SIMPLE, CPARSL_STRATEGY_AUTO };

typedef struct cparsl_blocks_opts {
    const char *label;
    const char *run_dir;
    const char *cwd;         /* where the blocks' scripts cd to */
    const char *const *env;  /* the managers' NAME=value settings */
    const char *const *argv; /* the manager's command */
    int workers_per_manager; /* slots of one manager */
    int strategy;            /* CPARSL_STRATEGY_* */
    double period;           /* seconds between turns */
    double max_idletime;     /* seconds idle before a block goes back */
} cparsl_blocks_opts_t;

/* Takes 'provider' (destroyed with the blocks, also on failure). */
int cparsl_blocks_create(cparsl_provider_t *provider,
                         const cparsl_blocks_opts_t *opts,
                         const cparsl_blocks_hooks_t *hooks,
                         cparsl_blocks_t **out, cparsl_error_t *err);
/* Start the strategy thread; init_blocks are asked for on its first
 * turn. */
int cparsl_blocks_start(cparsl_blocks_t *b, cparsl_error_t *err);
/* Ask for n more blocks / give n back, on the next turn (which comes at
 * once). */
void cparsl_blocks_scale_out(cparsl_blocks_t *b, unsigned n);
void cparsl_blocks_scale_in(cparsl_blocks_t *b, unsigned n);
/* Blocks asked for and not yet ended. */
size_t cparsl_blocks_active(cparsl_blocks_t *b);
/* Whether the executor was marked bad (the reason in why). */
bool cparsl_blocks_bad(cparsl_blocks_t *b, char *why, size_t cap);
/* For an executor's submit: when b (may be NULL) was marked bad, fail and
 * complete every try of the batch with the reason, and return true. */
struct cparsl_exec;
bool cparsl_blocks_refuse(cparsl_blocks_t *b, struct cparsl_exec *const *batch,
                          size_t n);
/* Stop the strategy thread (no block is asked for after it returns). */
void cparsl_blocks_halt(cparsl_blocks_t *b);
/* Cancel every block not yet ended and record the final states (waits
 * up to 'timeout' seconds for the scheduler to report them). */
void cparsl_blocks_stop(cparsl_blocks_t *b, double timeout);
void cparsl_blocks_destroy(cparsl_blocks_t *b);

#endif
