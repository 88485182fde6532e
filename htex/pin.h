/*
 * pin.h - worker pinning with hwloc, and accelerators.
 *
 * A node's worker slots partition the CPUs this process is allowed to run
 * on (the launcher may have bound it; tests and the demo pass
 * --bind-to none).  Policies, as Parsl's htex cpu_affinity:
 *   none            no pinning
 *   block           slot i gets the i-th contiguous block of PUs
 *   block-reverse   the same, counted from the last PU
 *   alternating     slot i gets PUs i, i+n, i+2n, ...
 *   list:A:B:...    slot i gets list entry i (each entry "0,2-3"), cycling
 * Accelerators ("available_accelerators": a list of device ids, or a
 * count n meaning 0..n-1) go round-robin to slots and are exported as
 * CUDA_VISIBLE_DEVICES, ROCR_VISIBLE_DEVICES and ZE_AFFINITY_MASK.
 */
#ifndef CPARSL_HTEX_PIN_H
#define CPARSL_HTEX_PIN_H

#include <stddef.h>

#include <cparsl/config.h>
#include <cparsl/error.h>

enum htex_pin_policy {
    HTEX_PIN_NONE = 0,
    HTEX_PIN_BLOCK,
    HTEX_PIN_BLOCK_REVERSE,
    HTEX_PIN_ALTERNATING,
    HTEX_PIN_LIST,
};

typedef struct htex_pin {
    int policy;
    char **list; /* HTEX_PIN_LIST entries, owned */
    size_t nlist;
    char **accels; /* accelerator ids, owned */
    size_t naccels;
} htex_pin_t;

/* Read the keys "cpu_affinity" and "available_accelerators" from an
 * executor's config map (NULL map: defaults).  Errors name the key. */
int htex_pin_configure(const cparsl_cnode_t *map, htex_pin_t *out,
                       cparsl_error_t *err);
void htex_pin_free(htex_pin_t *p);

/*
 * The CPU list ("0-1,4") for slot 'slot' of 'nslots' on this node, from
 * the CPUs this process may use.  *out is malloc'd, or NULL for policy
 * none.  0 or negative with err (e.g. a list entry naming a CPU outside
 * the allowed set).
 */
int htex_pin_cpus(const htex_pin_t *p, int slot, int nslots, char **out,
                  cparsl_error_t *err);

/* Bind the calling thread to a CPU list (in-rank workers).  0 or -errno. */
int htex_pin_bind_thread(const char *cpus, cparsl_error_t *err);

/* The accelerator for slot 'slot', or NULL if none are configured. */
const char *htex_pin_accel(const htex_pin_t *p, int slot);

#endif
