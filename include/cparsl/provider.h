/*
 * provider.h - how blocks (batch jobs) are obtained from a scheduler.
 *
 * A provider is one .c file under providers/ with a
 * struct cparsl_provider_ops, and one line in the table in
 * providers/provider.c.  The common part (providers/provider.c) reads the
 * keys every provider shares, writes each block's submit script (the
 * provider's directives, scheduler_options, the manager's environment,
 * worker_init and the launcher's command line) and calls the provider's
 * submit, status and cancel, which run the scheduler's commands with
 * providers/cmd.h.  The strategy (providers/blocks.c) decides when.
 */
#ifndef CPARSL_PROVIDER_H
#define CPARSL_PROVIDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cparsl/config.h>
#include <cparsl/error.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A block as the scheduler reports it. */
typedef enum cparsl_block_state {
    CPARSL_BLOCK_PENDING = 0, /* queued, held, configuring */
    CPARSL_BLOCK_RUNNING,
    CPARSL_BLOCK_COMPLETED, /* its script ended with status 0 */
    CPARSL_BLOCK_FAILED,    /* ended otherwise (status, node failure) */
    CPARSL_BLOCK_CANCELLED, /* cancelled (by us, or by someone else) */
    CPARSL_BLOCK_TIMEOUT,   /* killed at its walltime */
    CPARSL_BLOCK_MISSING,   /* the scheduler no longer knows it */
    CPARSL_BLOCK_STATE_COUNT
} cparsl_block_state_t;

const char *cparsl_block_state_name(cparsl_block_state_t s);
/* Whether a block in state s has ended. */
bool cparsl_block_state_final(cparsl_block_state_t s);

typedef struct cparsl_provider cparsl_provider_t;

/* One block to submit: its script is written before submit is called. */
typedef struct cparsl_block_req {
    const char *label; /* the executor's label */
    int64_t block;     /* the executor's block number */
    const char *name;  /* the job's name: cparsl.<label>.<block> */
    const char *script;
    const char *out, *err; /* where the job's output goes */
    const char *prefix;    /* <run dir>/block.<label>.<block> */
} cparsl_block_req_t;

struct cparsl_provider_ops {
    const char *name;             /* "type" in the provider's map */
    const char *const *keys;      /* its own keys beyond the common ones */
    const char *default_launcher; /* launchers/launchers.h */
    /* Optional: read its own keys (after the common ones were read). */
    int (*configure)(cparsl_provider_t *p, const cparsl_cnode_t *node,
                     cparsl_error_t *err);
    /* The scheduler's directive lines for the script's head (each ends in
     * a newline); the common part adds scheduler_options after them. */
    int (*directives)(const cparsl_provider_t *p, const cparsl_block_req_t *b,
                      FILE *out, cparsl_error_t *err);
    /* Submit the written script; the scheduler's job id in job_id. */
    int (*submit)(cparsl_provider_t *p, const cparsl_block_req_t *b,
                  char *job_id, size_t cap, cparsl_error_t *err);
    /* The state of each of n jobs.  A job the scheduler does not know
     * (any more) is CPARSL_BLOCK_MISSING; an error means no state was
     * learned at all (the command failed, or answered in a form not
     * understood: the message names the command and quotes it). */
    int (*status)(cparsl_provider_t *p, const char *const *ids, size_t n,
                  cparsl_block_state_t *states, cparsl_error_t *err);
    int (*cancel)(cparsl_provider_t *p, const char *const *ids, size_t n,
                  cparsl_error_t *err);
    /* Optional: free priv (and stop anything still running). */
    void (*destroy)(cparsl_provider_t *p);
};

/* A provider: the keys every provider shares (docs/providers.md). */
struct cparsl_provider {
    const struct cparsl_provider_ops *ops;
    int nodes_per_block, cpus_per_node;
    int init_blocks, min_blocks, max_blocks;
    double parallelism;
    long walltime_s;
    char walltime[32]; /* HH:MM:SS */
    char *queue;       /* "queue" or "partition" */
    char *account, *qos, *constraint;
    bool exclusive;
    char *scheduler_options, *worker_init;
    double cmd_timeout;
    /* A running block with no manager joined after this long has failed. */
    double connect_timeout;
    /* Drain a block this long before its walltime ends. */
    double drain_margin;
    /* This many block failures in a row (and none working) make the
     * executor unusable; 0: never. */
    int block_error_threshold;
    char *launcher, *launcher_overrides, *launcher_prefix;
    int tasks_per_node;
    void *priv;
};

/*
 * Read a provider's map (the executor's "provider" key): its type, the
 * common keys and its own.  Unknown keys, malformed walltimes and values
 * a scheduler cannot express are refused, naming the key.
 */
int cparsl_provider_configure(const cparsl_cnode_t *node,
                              cparsl_provider_t **out, cparsl_error_t *err);
void cparsl_provider_destroy(cparsl_provider_t *p);

/*
 * Write block b's script to b->script (mode 0700): the provider's
 * directives, scheduler_options, a cd to 'cwd', the manager's
 * environment 'env' (NAME=value strings, each exported), worker_init,
 * then the launcher running 'argv' on the block's nodes.
 */
int cparsl_provider_write_script(const cparsl_provider_t *p,
                                 const cparsl_block_req_t *b, const char *cwd,
                                 const char *const *env,
                                 const char *const *argv, cparsl_error_t *err);

/* The provider types, NULL-terminated. */
const char *const *cparsl_provider_names(void);

#ifdef __cplusplus
}
#endif
#endif
