/*
 * emulate.h - emulated managers, for measuring the interchange and its
 * tiers at a scale one machine cannot run (cparsl-bench scale).
 *
 * One loop on one rank plays many managers.  Each registers with its
 * upstream (a sub-interchange) with 'slots' slots, asks for work exactly
 * as a real manager does (free slots plus a prefetch window, in the
 * 'want' of every message), and "runs" each task by holding it for
 * 'duration' seconds after a slot takes it, with no process, thread or
 * app call; then it reports a nil result.  The messages are real htex
 * messages over the real transport, so everything upstream of the
 * emulated managers (sub-interchanges, rank 0's interchange, the DFK, the
 * futures) does its real work.  Output that comes from an emulation says
 * so (cparsl-bench prints "emulation": true).
 *
 * The managers are virtual endpoints of this rank (htex_mpi_ports_virtual):
 * the loop receives every message on the rank's port and sends as each
 * manager through the two callbacks.
 */
#ifndef CPARSL_HTEX_EMULATE_H
#define CPARSL_HTEX_EMULATE_H

#include <stddef.h>
#include <stdint.h>

#include <cparsl/plugin.h>
#include <cparsl/transport.h>

typedef struct htex_emu_opts {
    int upstream;   /* endpoint every emulated manager registers with */
    const int *eps; /* the managers' endpoints */
    size_t nmanagers;
    uint32_t slots;    /* per manager */
    uint32_t prefetch; /* per manager */
    double duration;   /* seconds a task holds its slot */
    double heartbeat_period;
    uint32_t max_batch;
    int rank, node;
    const char *host;
    /* Send as endpoint 'from' (one of eps); the endpoint the last message
     * received was sent to. */
    int (*send_from)(cparsl_transport_t *t, int from, int peer, void *buf,
                     size_t len);
    int (*last_dst)(cparsl_transport_t *t);
} htex_emu_opts_t;

/* Run until the upstream says SHUTDOWN and every manager said BYE.  Tasks
 * held at SHUTDOWN are reported as finished at once.  0, or negative
 * with err. */
int htex_emulate_run(cparsl_transport_t *t, const htex_emu_opts_t *o,
                     cparsl_error_t *err);

#endif
