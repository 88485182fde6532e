/*
 * cparsl/transport.h - the transport interface htex is written against.
 *
 * The interchange, managers and workers of htex/ are written once and move
 * messages through this small table: MPI inside one MPI job, an in-process
 * loop for tests, libfabric for blocks that join later.  A transport
 * connects numbered endpoints (MPI: the ranks of its communicator) and
 * moves whole messages; it never interprets them.
 *
 * Buffers: a sender gets a buffer from the transport (msg_alloc), fills
 * it and hands it back with send, which takes ownership; a receiver gets
 * a buffer from try_recv and gives it back with msg_free.  Transports pool
 * buffers, so steady-state traffic allocates nothing.
 *
 * Threads: one thread per process drives a transport instance (the
 * interchange thread on rank 0, the manager loop elsewhere); the calls are
 * not required to be thread-safe.
 *
 * Waiting: no transport call blocks.  Callers poll for a short window after
 * their last message and then sleep with growing backoff (see
 * htex/backoff.h): Open MPI spins inside blocking calls, so blocking in
 * MPI would steal the core a worker needs.
 */
#ifndef CPARSL_TRANSPORT_H
#define CPARSL_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include <cparsl/error.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cparsl_transport cparsl_transport_t;

struct cparsl_transport_ops {
    const char *name; /* "mpi", "loop", ... */
    /* A buffer of at least 'len' bytes to send; NULL on ENOMEM. */
    void *(*msg_alloc)(cparsl_transport_t *t, size_t len);
    /* Send buf[0..len) to endpoint 'peer'.  Takes ownership of 'buf'
     * (from msg_alloc) whatever the outcome.  Never blocks: the message
     * leaves in the background (progress).  0 or a negative code. */
    int (*send)(cparsl_transport_t *t, int peer, void *buf, size_t len);
    /* If a message has arrived: 1, with its sender, buffer and length
     * (the buffer is the caller's until msg_free).  0 if none; negative
     * on a transport failure (text in err). */
    int (*try_recv)(cparsl_transport_t *t, int *peer, void **buf, size_t *len,
                    cparsl_error_t *err);
    /* Give back a buffer from try_recv (or an unsent one from msg_alloc). */
    void (*msg_free)(cparsl_transport_t *t, void *buf);
    /* Complete sends in the background; returns the number still in
     * flight.  Cheap; call it in every loop turn. */
    int (*progress)(cparsl_transport_t *t);
    /* This endpoint's number, and how many endpoints there are. */
    int (*self)(cparsl_transport_t *t);
    int (*size)(cparsl_transport_t *t);
    /* Wait (up to a bound) for sends in flight, then release everything. */
    void (*destroy)(cparsl_transport_t *t);
    /*
     * Optional: transports whose peers can arrive from outside (libfabric;
     * NULL for MPI and the loop, where every peer is known).  try_recv
     * gives a message from an unknown sender with a negative peer; admit
     * makes the endpoint name such a sender announced a peer that can be
     * answered (at most a few untrusted at once: -EBUSY beyond), trust
     * counts it as proven, forget removes it.
     */
    int (*admit)(cparsl_transport_t *t, const void *name, size_t len, int *peer,
                 cparsl_error_t *err);
    void (*trust)(cparsl_transport_t *t, int peer);
    void (*forget)(cparsl_transport_t *t, int peer);
};

struct cparsl_transport {
    const struct cparsl_transport_ops *ops;
};

#ifdef __cplusplus
}
#endif
#endif /* CPARSL_TRANSPORT_H */
