/*
 * manager.h - an htex manager: pulls tasks for its slots, runs them, and
 * returns results in batches.
 *
 * The same loop serves two roles.  A node's manager talks upstream to the
 * interchange and feeds its own slots plus the node's other ranks (its
 * downstream); each of those ranks runs this loop too, with the node's
 * manager as its upstream and no downstream.  Every message upstream
 * carries 'want': free slots plus a prefetch window, less what is already
 * held or asked for, so work is pulled, never pushed.
 *
 * Slots run on threads of their own, apart from the loop, so a long task
 * never stalls the node: in-rank (the thread runs the app) or isolated
 * (the thread supervises a long-lived child process, see child.h).
 */
#ifndef CPARSL_HTEX_MANAGER_H
#define CPARSL_HTEX_MANAGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cparsl/plugin.h>
#include <cparsl/transport.h>

#include "bell.h"
#include "pin.h"

typedef struct htex_mgr_opts {
    int upstream;          /* endpoint of the interchange / node manager */
    const int *downstream; /* endpoints of ranks this manager feeds */
    size_t ndownstream;
    int nslots;            /* slots run here */
    int prefetch;          /* tasks asked for beyond free slots */
    bool isolation;        /* run tasks in child processes */
    const htex_pin_t *pin; /* NULL: no pinning */
    int slot_base;         /* index of this rank's first slot on the node */
    int node_slots;        /* slots on the whole node */
    int rank, node, manager_id;
    const char *host;
    const char *block_id;
    double heartbeat_period; /* seconds */
    /* Joiners: leave when the upstream is silent this long (0: never),
     * or when no task was held for max_idletime seconds (0: never). */
    double upstream_threshold, max_idletime;
    uint32_t max_batch;
    /* The loop sleeps on this bell, which its slots ring when they finish
     * (NULL: a bell of the manager's own).  When the upstream rings it
     * after every send (a node manager in the same node's shared memory),
     * set upstream_rings: the loop then sleeps up to a second when idle
     * instead of waking every 20 ms to poll. */
    htex_bell_t *bell;
    bool upstream_rings;
    /* Bells of the downstream ranks, in the order of 'downstream' (NULL:
     * none); each is rung after every message sent to that rank. */
    htex_bell_t *const *down_bells;
} htex_mgr_opts_t;

/* Run until the upstream says SHUTDOWN and everything held is finished and
 * reported, then say BYE.  0, or negative with err. */
int htex_manager_run(cparsl_transport_t *t, const htex_mgr_opts_t *o,
                     cparsl_error_t *err);

#endif
