/*
 * mpi.h - the MPI transport: htex inside one MPI job.
 *
 * Endpoints are the ranks of a communicator the caller gives.  The
 * transport works on its own duplicate of it, so its traffic never mixes
 * with the application's (embedding: cparsl runs beside a solver on the
 * solver's communicator).  Sends are MPI_Isend (they never block, and two
 * ranks sending large messages to each other cannot deadlock); receives
 * are MPI_Improbe polls; buffers come from a pool of power-of-two size
 * classes, so steady-state traffic allocates nothing.
 *
 * MPI must be initialized by the caller (with MPI_THREAD_MULTIPLE when
 * other threads of the process also call MPI) and stay so until the
 * transport is destroyed; the transport never calls MPI_Init or
 * MPI_Finalize.  One thread drives an instance (cparsl/transport.h).
 *
 * Beyond cparsl/transport.h: send to a peer out of range returns -EINVAL
 * and a message over INT_MAX bytes -EMSGSIZE (the buffer is freed either
 * way); an MPI failure is -CPARSL_ETRANSPORT, from send and progress as
 * well, with the MPI_Error_string text kept for
 * htex_mpi_transport_last_error.
 */
#ifndef CPARSL_HTEX_TRANSPORT_MPI_H
#define CPARSL_HTEX_TRANSPORT_MPI_H

#include <stddef.h>

#include <mpi.h>

#include <cparsl/transport.h>

extern const struct cparsl_transport_ops htex_mpi_ops;

/*
 * Create a transport over the ranks of 'comm' (MPI_Comm_dup'd: collective
 * over comm, like destroy's MPI_Comm_free).  The caller keeps 'comm'.
 * 0 with *out set, or -EINVAL, -ENOMEM, -CPARSL_ETRANSPORT (MPI not
 * initialized, or an MPI call failed), with text in err.
 *
 * destroy waits up to about 5 s (sleeping, not spinning) for sends in
 * flight, discarding messages that arrive meanwhile so that peers' sends
 * complete too, then cancels what is left and frees the duplicate.
 */
int htex_mpi_transport_create(MPI_Comm comm, cparsl_transport_t **out,
                              cparsl_error_t *err);

/*
 * Ports: more than one endpoint per rank, each driven by its own thread
 * (a sub-interchange beside its rank's node manager).  Endpoint
 * port * nranks + rank is that rank's port; port 0's endpoints are the
 * ranks themselves.  Each port has its own duplicate of 'comm' where the
 * messages addressed to it arrive, and a message's tag names the port
 * that sent it, so a port's transport probes only its own communicator
 * and still knows every sender's endpoint.
 *
 * htex_mpi_ports_create duplicates 'comm' nports times (collective over
 * comm, with the same nports everywhere); htex_mpi_transport_on makes
 * the transport of one port on this rank (not collective; the ports
 * outlive their transports); htex_mpi_ports_destroy frees the duplicates
 * (collective).  htex_mpi_transport_create is the one-port case, its
 * ports freed with it.
 */
typedef struct htex_mpi_ports htex_mpi_ports_t;

int htex_mpi_ports_create(MPI_Comm comm, int nports, htex_mpi_ports_t **out,
                          cparsl_error_t *err);
int htex_mpi_transport_on(htex_mpi_ports_t *ports, int port,
                          cparsl_transport_t **out, cparsl_error_t *err);
void htex_mpi_ports_destroy(htex_mpi_ports_t *ports);

/*
 * Virtual ports, for the scale emulation (htex/emulate.h): ports nports ..
 * nports+nvirtual-1 of every rank have no communicator of their own; what
 * is sent to them arrives at that rank's port 0, where
 * htex_mpi_transport_last_dst says which of them a message was for, and
 * htex_mpi_transport_send_from sends as one of them.  Set right after
 * htex_mpi_ports_create, to the same count on every rank (it widens the
 * endpoint numbering: (nports + nvirtual) * nranks endpoints); at most
 * 32,767 ports in all.  0 or -EINVAL.
 */
int htex_mpi_ports_virtual(htex_mpi_ports_t *ports, int nvirtual);
/* Send as 'from', a virtual port of this rank (else -EINVAL, buf freed). */
int htex_mpi_transport_send_from(cparsl_transport_t *t, int from, int peer,
                                 void *buf, size_t len);
/* The endpoint the message try_recv returned last was sent to. */
int htex_mpi_transport_last_dst(cparsl_transport_t *t);

/* Text of the last MPI failure seen by send or progress ("" if none). */
const char *htex_mpi_transport_last_error(cparsl_transport_t *t);

/* How many buffers this transport has taken from malloc so far (for tests
 * and benchmarks that check the steady state allocates nothing). */
size_t htex_mpi_transport_allocs(cparsl_transport_t *t);

#endif /* CPARSL_HTEX_TRANSPORT_MPI_H */
