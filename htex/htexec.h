/*
 * htexec.h - the htex executor's manager mode (htexec.c): what
 * cparsl_init does in a process started with CPARSL_HTEX_JOIN.
 */
#ifndef CPARSL_HTEX_HTEXEC_H
#define CPARSL_HTEX_HTEXEC_H

#include <stddef.h>

#include <cparsl/error.h>
#include <cparsl/transport.h>

/* A listener for joiners (an htex executor, or an MPI pilot that grows):
 * make the run's secret (<run dir>/htex.<label>.secret, 0600), open the
 * providers, and publish the address to <run dir>/htex.<label>.addr
 * (its path into addr_path).  0 with *out, or negative with err. */
int htex_listen_open(const char *label, const char *const *providers,
                     size_t nproviders, const char *address,
                     unsigned char *secret, cparsl_transport_t **out,
                     char *addr_path, size_t cap, cparsl_error_t *err);

/* Join the interchange published in 'addr_file' and serve tasks until it
 * shuts this manager down (0), refuses it, or goes silent (negative, with
 * err).  Logs to manager.<pid>.log beside addr_file. */
int htex_join_serve(const char *addr_file, cparsl_error_t *err);

#endif
