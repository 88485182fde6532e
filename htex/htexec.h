/*
 * htexec.h - the htex executor's manager mode (htexec.c): what
 * cparsl_init does in a process started with CPARSL_HTEX_JOIN.
 */
#ifndef CPARSL_HTEX_HTEXEC_H
#define CPARSL_HTEX_HTEXEC_H

#include <cparsl/error.h>

/* Join the interchange published in 'addr_file' and serve tasks until it
 * shuts this manager down (0), refuses it, or goes silent (negative, with
 * err).  Logs to manager.<pid>.log beside addr_file. */
int htex_join_serve(const char *addr_file, cparsl_error_t *err);

#endif
