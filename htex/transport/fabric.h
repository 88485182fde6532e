/*
 * fabric.h - the libfabric transport: htex between processes that share
 * no MPI job (blocks a provider starts later, managers started by hand).
 *
 * Reliable datagram endpoints (FI_EP_RDM, FI_MSG).  A listener (the
 * interchange) opens one endpoint per provider the config names, e.g.
 * "shm" for processes on its host and "tcp;ofi_rxm" for the others
 * (verbs, cxi, efa, psm3 on HPC fabrics), and publishes their addresses
 * as one versioned line of text that names each provider and fabric.  A
 * joiner (a manager, a sub-pilot's rank 0) reads that text, opens an
 * endpoint on the first provider it can use, and knows the listener as
 * peer 0.  Peers are small integers across all of the listener's
 * endpoints.
 *
 * Strangers.  RDM providers report a message's source (FI_SOURCE) only
 * for addresses already in the address vector, and cannot answer anyone
 * else.  So a message from an unknown source comes out of try_recv with
 * peer HTEX_FABRIC_STRANGER; if it carries the sender's endpoint name
 * (htex's HELLO does, from htex_fabric_name), htex_fabric_admit puts that
 * name in the address vector as a peer the listener can answer.  At most
 * max_strangers admitted peers may be untrusted at once (-EBUSY beyond):
 * the caller promotes one with htex_fabric_trust once it proved itself,
 * or drops it with htex_fabric_forget, so strangers cannot fill the
 * address vector.  The transport never interprets messages.
 *
 * Threads: one thread drives an instance (cparsl/transport.h); no call
 * blocks except htex_fabric_wait.
 */
#ifndef CPARSL_HTEX_TRANSPORT_FABRIC_H
#define CPARSL_HTEX_TRANSPORT_FABRIC_H

#include <stddef.h>

#include <cparsl/transport.h>

extern const struct cparsl_transport_ops htex_fabric_ops;

/* try_recv's peer for a message whose source is not in the address
 * vector. */
#define HTEX_FABRIC_STRANGER (-2)

/* The published text's first word: a reader refuses another version. */
#define HTEX_FABRIC_ADDR_VERSION "cparsl-fabric-1"

typedef struct htex_fabric_opts {
    /* Providers as fi_info names them ("shm", "tcp;ofi_rxm", ...): a
     * listener opens every one (each must open), a joiner the first of
     * the published ones that is in this list and works here (NULL: any
     * published provider). */
    const char *const *providers;
    size_t nproviders;
    /* Listener, IP providers: the address to bind (default "127.0.0.1":
     * loopback unless the config says otherwise). */
    const char *bind_node;
    int max_peers;     /* address vector size (default 4096) */
    int max_strangers; /* admitted, not yet trusted (default 16) */
    size_t max_msg;    /* largest message (default 1 MiB) */
} htex_fabric_opts_t;

/* Open a listener on every provider of o.  0 with *out, or a negative
 * code with the provider and libfabric's fi_strerror text in err. */
int htex_fabric_listen(const htex_fabric_opts_t *o, cparsl_transport_t **out,
                       cparsl_error_t *err);

/*
 * The listener's addresses as one NUL-terminated line:
 *   cparsl-fabric-1 <host> <provider>|<fabric>|<hex name> ...
 * (one field per endpoint; a provider name never contains '|' or spaces
 * once ';' is kept as is).  Returns its length, or -ENOSPC (with the
 * size needed, less the NUL, in *need if need is not NULL).
 */
int htex_fabric_published(cparsl_transport_t *t, char *buf, size_t cap,
                          size_t *need);

/*
 * Join: parse 'published', pick the first usable endpoint (a "shm" one
 * only when <host> is this host), open an endpoint on that provider and
 * insert the listener as peer 0.  Malformed text, another version, or no
 * usable provider give -EINVAL / -EPROTONOSUPPORT / -ENOENT with the
 * reason in err.
 */
int htex_fabric_join(const char *published, const htex_fabric_opts_t *o,
                     cparsl_transport_t **out, cparsl_error_t *err);

/* This endpoint's raw name (what a HELLO carries), into buf[0..cap):
 * its length, or -ENOSPC. */
int htex_fabric_name(cparsl_transport_t *t, void *buf, size_t cap);
/* The provider this endpoint (a joiner) or the endpoint the last
 * stranger's message came in on (a listener) uses. */
const char *htex_fabric_provider(cparsl_transport_t *t);

/*
 * Listener: make the endpoint name from the last stranger's message a
 * peer (on the endpoint that message arrived on) so it can be answered.
 * 0 with *peer, -EBUSY when max_strangers are untrusted, -EINVAL for a
 * name the provider refuses (never a crash), -ENOSPC when the address
 * vector is full.  A name already admitted gives its peer again.
 */
int htex_fabric_admit(cparsl_transport_t *t, const void *name, size_t len,
                      int *peer, cparsl_error_t *err);
/* Count an admitted peer as proven (it leaves the strangers' quota). */
void htex_fabric_trust(cparsl_transport_t *t, int peer);
/* Remove a peer from the address vector; its messages become strangers'
 * again, sends to it fail with -EINVAL. */
void htex_fabric_forget(cparsl_transport_t *t, int peer);

/*
 * Sleep until a message may have arrived or a send completed, or
 * timeout_ms passed (libfabric wait objects where the provider has them,
 * else a short sleep).  For loops that have nothing else to wait on.
 */
void htex_fabric_wait(cparsl_transport_t *t, int timeout_ms);

/* Text of the last libfabric failure seen ("" if none). */
const char *htex_fabric_last_error(cparsl_transport_t *t);

#endif /* CPARSL_HTEX_TRANSPORT_FABRIC_H */
