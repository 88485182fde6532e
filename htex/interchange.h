/*
 * interchange.h - the htex interchange: the task queue between the DFK and
 * the managers, in the client process: on a thread of its own, or driven
 * by the DFK thread through the executor's poll entry.
 *
 * The DFK hands it tries (htex_ix_submit); managers pull them: each
 * message a manager sends carries how many more tasks it wants ('want'),
 * and the interchange answers from its queue, so it never scans workers
 * to place a task.  Results come back in batches and go to the DFK with
 * cparsl_exec_complete.  A try in flight is known by a ticket (table
 * index and generation), so a duplicate, stale or forged result is
 * recognised, dropped and counted, never trusted.
 */
#ifndef CPARSL_HTEX_INTERCHANGE_H
#define CPARSL_HTEX_INTERCHANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cparsl/plugin.h>
#include <cparsl/transport.h>

typedef struct htex_ix htex_ix_t;

/* Longest provider block id a joiner may name (CPARSL_BLOCK_ID), with
 * its NUL. */
#define HTEX_BLOCK_LEN 64

typedef struct htex_ix_opts {
    /* Endpoints of the managers this interchange serves. */
    const int *managers;
    size_t nmanagers;
    /* Most task records in one TASKS message. */
    uint32_t max_batch;
    /* Seconds without a message before a manager is reported missing
     * (lost, with lose_silent), and between heartbeats to joiners. */
    double heartbeat_threshold, heartbeat_period;
    /* Joiners (join.h): with a secret (HTEX_SECRET_LEN bytes), managers
     * not in 'managers' may join by the handshake; build_id is what they
     * must run. */
    const unsigned char *secret;
    const char *build_id;
    /* A joined manager silent past the threshold is lost: its tries in
     * flight fail with CPARSL_EWORKER (retried by the DFK). */
    bool lose_silent;
    /* No thread: htex_ix_poll turns the loop (see interchange.c). */
    bool driven;
    /* Optional: the node and host (host_len bytes each, NUL-terminated)
     * of each worker rank a result can name, 0 .. nworkers-1.  Without
     * them a result gets its manager's, as it registered; with tiers the
     * "managers" are sub-interchanges, so the tables are needed. */
    const int *node_of_worker;
    const char *host_of_worker;
    size_t host_len, nworkers;
} htex_ix_opts_t;

typedef struct htex_ix_stats {
    uint64_t dispatched, completed, bad_messages, stale_results;
    /* joiners: accepted, refused (or timed out); managers lost and the
     * tries they held */
    uint64_t joined, refused, lost, requeued;
    /* traffic: messages and bytes received and sent */
    uint64_t msgs_in, msgs_out, bytes_in, bytes_out;
    size_t managers_registered, slots;
} htex_ix_stats_t;

/* Create (not yet running) over transport 't' (not owned). */
int htex_ix_create(cparsl_transport_t *t, const htex_ix_opts_t *opts,
                   htex_ix_t **out, cparsl_error_t *err);
int htex_ix_start(htex_ix_t *ix, cparsl_error_t *err);
/* Driven: one turn of the loop on the caller's thread, unless another
 * thread is in one.  Never blocks; 1 if it did something, else 0. */
int htex_ix_poll(htex_ix_t *ix);
/* From the DFK thread: queue tries.  Never blocks for long. */
int htex_ix_submit(htex_ix_t *ix, cparsl_exec_t *const *batch, size_t n);
size_t htex_ix_outstanding(htex_ix_t *ix);
/* Slots of the managers that registered so far. */
size_t htex_ix_capacity(htex_ix_t *ix);
/* Wait until every manager registered (or the timeout passes): 0 or
 * -ETIMEDOUT. */
int htex_ix_wait_registered(htex_ix_t *ix, double timeout);
void htex_ix_stats(htex_ix_t *ix, htex_ix_stats_t *out);
/*
 * Stop: tries still queued fail with -CPARSL_ESHUTDOWN, managers are told
 * to finish what they hold and leave, and the call returns once every
 * manager said BYE (or 'timeout' seconds passed: -ETIMEDOUT, named in
 * err).  Results that arrive meanwhile are delivered.
 */
int htex_ix_shutdown(htex_ix_t *ix, double timeout, cparsl_error_t *err);
/* Drain n managers (the least loaded first): they take no new tasks and
 * leave once theirs are done; their slots leave the capacity then. */
void htex_ix_drain(htex_ix_t *ix, size_t n);

/* Drain every manager of the provider block 'block' (as its joiners
 * named it in their HELLO).  0 or -ENOMEM. */
int htex_ix_drain_block(htex_ix_t *ix, const char *block);

/* The executor cannot get workers (its blocks keep failing): every try
 * waiting for a manager fails now with CPARSL_EEXECUTOR and 'why'. */
void htex_ix_fail_waiting(htex_ix_t *ix, const char *why);

/* One manager, as the interchange's thread last saw it. */
typedef struct htex_mgr_info {
    char block[HTEX_BLOCK_LEN]; /* "" for managers of no provider block */
    char host[64];
    uint32_t slots; /* 0 until it registered */
    size_t held;    /* tries it holds */
    double idle_s;  /* seconds since it last held one; 0 while busy */
    bool registered, draining;
    bool gone; /* said BYE, or was lost */
    bool lost;
} htex_mgr_info_t;

/* A snapshot of every manager so far (malloc'd array in *out, free it),
 * taken by the interchange's thread within 'timeout' seconds: 0,
 * -ETIMEDOUT, -CPARSL_ESHUTDOWN or -ENOMEM. */
int htex_ix_managers(htex_ix_t *ix, htex_mgr_info_t **out, size_t *n,
                     double timeout);

/* Start the same stop without waiting (from a signal watcher). */
void htex_ix_begin_shutdown(htex_ix_t *ix);
void htex_ix_destroy(htex_ix_t *ix);

#endif
