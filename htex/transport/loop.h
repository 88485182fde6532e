/*
 * loop.h - the in-process transport: N endpoints of one process, for tests
 * that run the interchange and several managers as threads (the loop fake
 * every plugin family has; see flux's connector_loop.c).
 *
 * Endpoint i of a fabric sends to endpoint j by linking the buffer into
 * j's inbox (a mutex-protected FIFO): no copy, per-sender order kept.
 * Each endpoint is driven by one thread; different endpoints may be driven
 * by different threads at once.  Buffers come from a pool shared by the
 * fabric, so steady-state traffic calls malloc nothing.
 *
 * Beyond cparsl/transport.h: send to a peer out of range returns -EINVAL,
 * send to an endpoint already destroyed returns -EPIPE (the buffer is
 * freed either way); progress always returns 0 (a send is delivered when
 * send returns).
 */
#ifndef CPARSL_HTEX_TRANSPORT_LOOP_H
#define CPARSL_HTEX_TRANSPORT_LOOP_H

#include <stddef.h>

#include <cparsl/transport.h>

extern const struct cparsl_transport_ops htex_loop_ops;

/*
 * Create a fabric of n >= 1 endpoints: eps[i] (caller's array of n) is
 * endpoint i.  The caller owns every endpoint and destroys each one with
 * its ops->destroy; destroying the last frees the fabric.  Messages left
 * in an endpoint's inbox are freed when it is destroyed.
 * 0, -EINVAL (bad n or NULL eps) or -ENOMEM, with text in err.
 */
int htex_loop_create(int n, cparsl_transport_t **eps, cparsl_error_t *err);

/* How many buffers the fabric of 'ep' has taken from malloc so far (for
 * tests and benchmarks that check the steady state allocates nothing). */
size_t htex_loop_allocs(cparsl_transport_t *ep);

#endif /* CPARSL_HTEX_TRANSPORT_LOOP_H */
