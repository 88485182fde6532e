/*
 * htexec.h - the htex executor's manager mode (htexec.c): what
 * cparsl_init does in a process started with CPARSL_HTEX_JOIN.
 */
#ifndef CPARSL_HTEX_HTEXEC_H
#define CPARSL_HTEX_HTEXEC_H

#include <stdbool.h>
#include <stddef.h>

#include <cparsl/config.h>
#include <cparsl/error.h>
#include <cparsl/provider.h>
#include <cparsl/transport.h>

#include "blocks.h"
#include "interchange.h"

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

/* Blocks from a provider for an interchange (htex and extreme_scale with
 * accept_joiners): the keys "provider", "strategy", "strategy_period". */
typedef struct htex_blocks_cfg {
    cparsl_provider_t *provider; /* NULL: no provider configured */
    int strategy;                /* CPARSL_STRATEGY_* */
    double period;
    /* set by the executor before htex_blocks_start */
    const char *label, *addr_path;
    int workers;
    bool isolation;
    double hb_period, hb_threshold, max_idletime;
} htex_blocks_cfg_t;

int htex_blocks_configure(const cparsl_cnode_t *node, htex_blocks_cfg_t *out,
                          cparsl_error_t *err);
/* Start the strategy for 'ix'; takes c->provider. */
int htex_blocks_start(htex_ix_t *ix, htex_blocks_cfg_t *c,
                      cparsl_blocks_t **out, cparsl_error_t *err);

#endif
