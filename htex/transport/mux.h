/*
 * mux.h - two transports as one: an MPI pilot's interchange that also
 * listens on libfabric for blocks that join from outside the job (or a
 * joined block's rank 0, whose upstream is on libfabric and downstream on
 * MPI).
 *
 * Peers 0 .. base-1 are the first transport's, base + p the second's
 * peer p; a stranger of the second (a negative peer) stays negative.
 * admit/trust/forget go to the second.  Buffers: msg_alloc comes from the
 * first (the hot path, MPI, copies nothing); a send to the second copies
 * into one of its buffers.  A message received from the second is handed
 * out as is and given back to it by msg_free (the mux remembers which
 * buffers are the second's).  One thread drives it, as any transport.
 */
#ifndef CPARSL_HTEX_TRANSPORT_MUX_H
#define CPARSL_HTEX_TRANSPORT_MUX_H

#include <cparsl/transport.h>

/* 'a' and 'b' stay owned by the caller (destroy them after the mux);
 * base must be at least a's size.  0 or -ENOMEM. */
int htex_mux_create(cparsl_transport_t *a, cparsl_transport_t *b, int base,
                    cparsl_transport_t **out);

#endif
