/*
 * xs.c - extreme_scale: htex started by an MPI launcher, as one MPI job.
 *
 * Every rank runs the same binary.  Rank 0 is the client: cparsl_init
 * returns to the user's workflow there, with the DFK and, on a thread of
 * its own, the interchange.  Every other rank is a worker rank: it serves
 * tasks until the client finalizes, then cparsl_init returns
 * CPARSL_SERVED.  The lowest non-client rank of each node is also the
 * node's manager; the node's other ranks pull their tasks from it.
 *
 * MPI: cparsl initializes MPI (asking for MPI_THREAD_MULTIPLE, since the
 * interchange's MPI calls come from a thread that is not main) unless the
 * application did, in which case the level is checked.  Worker children
 * are forked from a helper made before MPI_Init when cparsl initializes
 * MPI; otherwise they are forked directly (see htex/child.h).
 */
#include <errno.h>
#include <mpi.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cparsl/mpi.h>
#include <cparsl/plugin.h>

#include "bell.h"
#include "child.h"
#include "emulate.h"
#include "htexec.h"
#include "interchange.h"
#include "join.h"
#include "log.h"
#include "manager.h"
#include "pin.h"
#include "transport/mpi.h"
#include "transport/mux.h"

struct xs {
    cparsl_executor_t base;
    cparsl_launch_t launch;
    /* config */
    int64_t workers_per_rank, prefetch, max_batch;
    int64_t tier_size;      /* node managers per sub-interchange */
    int64_t nodes_per_host; /* emulated nodes per shared-memory node */
    /* Scale emulation (htex/emulate.h): each worker rank plays this many
     * managers of emu_slots slots whose tasks take emu_duration s. */
    int64_t emu_managers, emu_slots;
    double emu_duration;
    bool isolation;
    double heartbeat_period, heartbeat_threshold, start_timeout;
    int manager_log_level; /* -1: worker ranks write no log file */
    /* Blocks from outside the job join over libfabric (docs/htex.md). */
    bool accept_joiners;
    char *join_providers[8];
    size_t njoin_providers;
    char *join_address;
    cparsl_transport_t *fab, *mux;
    unsigned char secret[HTEX_SECRET_LEN];
    /* blocks from a provider join the pilot (providers/blocks.h) */
    htex_blocks_cfg_t bc;
    double max_idletime;
    cparsl_blocks_t *blocks;
    char addr_path[4200];
    htex_pin_t pin;
    /* run */
    bool mpi_inited_by_us;
    htex_mpi_ports_t *ports; /* port 0: the rank's loop; 1: a sub-interchange */
    cparsl_transport_t *t;
    /* rank 0: who ran a result (indexed by rank) */
    int *node_of_rank;
    char *host_of_rank; /* HOST_LEN bytes per rank */
    /* The DFK thread turns the interchange (xs_poll) while finalize's
     * thread shuts it down: ix_mu keeps it alive across each use. */
    pthread_mutex_t ix_mu;
    htex_ix_t *ix;
    int rank, size;
    /* Every node rank's doorbell (bell.h), in node shared memory. */
    MPI_Win bell_win;
    bool have_bells;
    /* The pilot's ranks: a duplicate of the launch's world, or of the
     * communicator an embedding application gave cparsl_init_comm. */
    MPI_Comm world, user_comm;
    bool have_world;
};

/* ---- layout ----------------------------------------------------------------
 */

/* The run dir travels from rank 0 with the layout, so worker ranks asked
 * to log (manager_log_level) write next to the run's own log. */
static int share_run_dir(MPI_Comm world, char *dir, size_t cap)
{
    int len = (int)strnlen(dir, cap - 1);
    if (MPI_Bcast(&len, 1, MPI_INT, 0, world) != MPI_SUCCESS || len < 0 ||
        (size_t)len >= cap)
        return -CPARSL_ETRANSPORT;
    if (MPI_Bcast(dir, len, MPI_CHAR, 0, world) != MPI_SUCCESS)
        return -CPARSL_ETRANSPORT;
    dir[len] = '\0';
    return 0;
}

struct layout {
    int node;    /* dense node id */
    int manager; /* world rank of this node's manager, -1 if none */
    int *peers;  /* non-client world ranks on this node, ascending */
    int npeers;
    int my_index;  /* position of this rank among peers, -1 for rank 0 */
    int *managers; /* all node managers (rank 0 fills it) */
    int nmanagers;
    htex_bell_t *my_bell;
    htex_bell_t **peer_bells; /* parallel to peers */
    /* Tiers (nmanagers > tier_size): node managers in groups of
     * tier_size, each group served by a sub-interchange on a thread of
     * its lowest rank. */
    bool tiers;
    int group_leader; /* this node manager's group's lowest rank */
    int *group;       /* the group's managers, when this rank leads it */
    int ngroup;
    int *leaders; /* rank 0: every group's leader */
    int nleaders;
};

#define HOST_LEN 64

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/*
 * A doorbell per rank in memory the node shares (MPI_Win_allocate_shared
 * over the node communicator), so a node manager can wake a worker rank
 * that sleeps on its bell: worker ranks then sleep long when idle instead
 * of waking every 20 ms to poll MPI.  Collective over 'node'; 'local' is
 * the node's world ranks in node-rank order.  Without shared memory the
 * ranks simply poll (returns 0 with no bells).
 */
static int bells_open(struct xs *x, MPI_Comm node, const int *local, int nsize,
                      struct layout *L)
{
    htex_bell_t *mine = NULL;
    if (MPI_Win_allocate_shared((MPI_Aint)sizeof(htex_bell_t), 1, MPI_INFO_NULL,
                                node, &mine, &x->bell_win) != MPI_SUCCESS)
        return 0;
    x->have_bells = true;
    memset(mine, 0, sizeof *mine);
    L->peer_bells = calloc((size_t)nsize, sizeof *L->peer_bells);
    if (!L->peer_bells)
        return -ENOMEM;
    for (int i = 0; i < nsize; i++) {
        MPI_Aint size;
        int disp;
        htex_bell_t *b = NULL;
        if (MPI_Win_shared_query(x->bell_win, i, &size, &disp, &b) !=
                MPI_SUCCESS ||
            size < (MPI_Aint)sizeof(htex_bell_t))
            b = NULL;
        if (local[i] == x->rank)
            L->my_bell = b;
        for (int k = 0; k < L->npeers; k++)
            if (L->peers[k] == local[i])
                L->peer_bells[k] = b;
    }
    /* Everyone's bell is zeroed before anyone rings. */
    MPI_Barrier(node);
    return 0;
}

/*
 * Group ranks by shared-memory node; the lowest non-client rank of each
 * node manages it.  With emulate_nodes_per_host N > 1 a node's non-client
 * ranks are split, in rank order, into N emulated nodes (each with its
 * own manager), so one host can stand in for several.  With more node
 * managers than tier_size they are grouped, in rank order, tier_size to
 * a group; each group's lowest rank runs its sub-interchange.  Collective
 * over 'world'.
 */
static int layout_compute(struct xs *x, MPI_Comm world, struct layout *L,
                          cparsl_error_t *err)
{
    int rank, size;
    MPI_Comm_rank(world, &rank);
    MPI_Comm_size(world, &size);
    MPI_Comm node;
    if (MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL,
                            &node) != MPI_SUCCESS)
        return cparsl_error_set(err, CPARSL_ETRANSPORT,
                                "MPI_Comm_split_type failed");
    int nsize;
    MPI_Comm_size(node, &nsize);
    int *local = malloc((size_t)nsize * sizeof *local);
    int *all = malloc((size_t)size * sizeof *all);
    L->peers = malloc((size_t)nsize * sizeof *L->peers);
    L->managers = malloc((size_t)size * sizeof *L->managers);
    if (!local || !all || !L->peers || !L->managers) {
        free(local);
        free(all);
        MPI_Comm_free(&node);
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    }
    MPI_Allgather(&rank, 1, MPI_INT, local, 1, MPI_INT, node);
    /* Node ranks follow world ranks (the split's key), so local[] is
     * already ascending and in node-rank order. */
    int n = 0;
    for (int i = 0; i < nsize; i++)
        if (local[i] != 0)
            L->peers[n++] = local[i];
    /* This rank's emulated node: chunk c of N over the node's ranks. */
    int N = (int)x->nodes_per_host, chunk = 0;
    L->npeers = n;
    L->my_index = -1;
    if (N > 1 && n > 0) {
        int lo = 0, hi = n;
        for (int c = 0; c < N; c++) {
            int a = (int)((int64_t)c * n / N),
                b = (int)((int64_t)(c + 1) * n / N);
            for (int i = a; i < b; i++)
                if (L->peers[i] == rank) {
                    chunk = c;
                    lo = a;
                    hi = b;
                }
        }
        if (rank == 0) /* rank 0 serves no node: any chunk will do */
            hi = n ? (int)((int64_t)n / N) : 0;
        memmove(L->peers, L->peers + lo, (size_t)(hi - lo) * sizeof(int));
        L->npeers = hi - lo;
    }
    for (int i = 0; i < L->npeers; i++)
        if (L->peers[i] == rank)
            L->my_index = i;
    L->manager = L->npeers ? L->peers[0] : -1;
    int brc = bells_open(x, node, local, nsize, L);
    MPI_Comm_free(&node);
    if (brc < 0) {
        free(local);
        free(all);
        return cparsl_error_set(err, brc, "out of memory");
    }
    /* Node ids: the real nodes numbered by their lowest rank, each split
     * into N. */
    int lowest = local[0];
    free(local);
    MPI_Allgather(&lowest, 1, MPI_INT, all, 1, MPI_INT, world);
    int *uniq = malloc((size_t)size * sizeof *uniq);
    if (!uniq) {
        free(all);
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    }
    memcpy(uniq, all, (size_t)size * sizeof *uniq);
    qsort(uniq, (size_t)size, sizeof *uniq, cmp_int);
    int id = 0;
    for (int i = 0; i < size; i++) {
        if (i > 0 && uniq[i] == uniq[i - 1])
            continue;
        if (uniq[i] == lowest)
            L->node = id * N + chunk;
        id++;
    }
    free(uniq);
    /* Every node's manager: gather each rank's own manager. */
    int my_mgr = L->manager;
    MPI_Allgather(&my_mgr, 1, MPI_INT, all, 1, MPI_INT, world);
    qsort(all, (size_t)size, sizeof *all, cmp_int);
    L->nmanagers = 0;
    for (int i = 0; i < size; i++)
        if (all[i] > 0 &&
            (L->nmanagers == 0 || L->managers[L->nmanagers - 1] != all[i]))
            L->managers[L->nmanagers++] = all[i];
    free(all);
    /* Tiers. */
    int T = (int)x->tier_size;
    L->tiers = L->nmanagers > T;
    L->group_leader = -1;
    if (L->tiers) {
        int ng = (L->nmanagers + T - 1) / T;
        L->leaders = malloc((size_t)ng * sizeof *L->leaders);
        if (!L->leaders)
            return cparsl_error_set(err, -ENOMEM, "out of memory");
        for (int g = 0; g < ng; g++)
            L->leaders[g] = L->managers[g * T];
        L->nleaders = ng;
        for (int i = 0; i < L->nmanagers; i++) {
            if (L->managers[i] != rank)
                continue;
            int g = i / T;
            L->group_leader = L->leaders[g];
            if (rank == L->group_leader) {
                L->group = L->managers + g * T;
                L->ngroup = L->nmanagers - g * T < T ? L->nmanagers - g * T : T;
            }
        }
    }
    return 0;
}

/* Rank 0: the node and host of every rank, for the results they send
 * (with tiers, rank 0 never hears from the node managers themselves).
 * Collective over 'world'. */
static int rank_tables(struct xs *x, const struct layout *L,
                       cparsl_error_t *err)
{
    char host[HOST_LEN];
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "unknown");
    host[sizeof host - 1] = '\0';
    int root = x->rank == 0;
    int *nodes = root ? malloc((size_t)x->size * sizeof *nodes) : NULL;
    char *hosts = root ? malloc((size_t)x->size * HOST_LEN) : NULL;
    int ok = !root || (nodes && hosts), all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, x->world);
    if (!all_ok) {
        free(nodes);
        free(hosts);
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    }
    MPI_Gather(&L->node, 1, MPI_INT, nodes, 1, MPI_INT, 0, x->world);
    MPI_Gather(host, HOST_LEN, MPI_CHAR, hosts, HOST_LEN, MPI_CHAR, 0,
               x->world);
    x->node_of_rank = nodes;
    x->host_of_rank = hosts;
    return 0;
}

static void layout_free(struct layout *L)
{
    free(L->leaders);
    free(L->peer_bells);
    free(L->peers);
    free(L->managers);
}

/* ---- MPI
 * --------------------------------------------------------------------- */

static int mpi_start(struct xs *x, cparsl_error_t *err)
{
    int inited = 0, provided = 0, finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized)
        return cparsl_error_set(err, CPARSL_ELAUNCH,
                                "MPI was finalized in this process and "
                                "cannot start again: one extreme_scale run "
                                "per process");
    MPI_Initialized(&inited);
    if (!inited) {
        /* Open MPI yields the CPU inside every empty poll when it sees more
         * ranks than cores (mpi_yield_when_idle), which made each probe of
         * a 3-rank pilot on 2 cores cost a context switch (3x the round
         * trip).  cparsl does its own polling and backoff; a value the
         * user set wins. */
        setenv("OMPI_MCA_mpi_yield_when_idle", "0", 0);
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &provided) !=
            MPI_SUCCESS)
            return cparsl_error_set(err, CPARSL_ETRANSPORT,
                                    "MPI_Init_thread failed");
        x->mpi_inited_by_us = true;
    } else {
        MPI_Query_thread(&provided);
    }
    if (provided < MPI_THREAD_MULTIPLE)
        return cparsl_error_set(err, CPARSL_ETRANSPORT,
                                "extreme_scale needs MPI_THREAD_MULTIPLE "
                                "(the DFK thread and the managers' threads "
                                "call MPI), but MPI provides level %d%s",
                                provided,
                                inited ? "; initialize MPI with "
                                         "MPI_Init_thread(..., "
                                         "MPI_THREAD_MULTIPLE, ...)"
                                       : "");
    if (MPI_Comm_dup(x->user_comm, &x->world) != MPI_SUCCESS)
        return cparsl_error_set(err, CPARSL_ETRANSPORT,
                                "extreme_scale: MPI_Comm_dup failed");
    x->have_world = true;
    MPI_Comm_set_errhandler(x->world, MPI_ERRORS_RETURN);
    MPI_Comm_rank(x->world, &x->rank);
    MPI_Comm_size(x->world, &x->size);
    if (x->size < 2 || x->size != x->launch.size)
        return cparsl_error_set(
            err, CPARSL_ELAUNCH,
            "extreme_scale: the launch says %d ranks (%s) but the "
            "communicator has %d; it needs at least 2 (one client, one "
            "worker) started by mpiexec, srun or aprun",
            x->launch.size, x->launch.source ? x->launch.source : "?", x->size);
    return 0;
}

static void mpi_stop(struct xs *x)
{
    if (x->t) {
        x->t->ops->destroy(x->t);
        x->t = NULL;
    }
    if (x->ports) {
        htex_mpi_ports_destroy(x->ports); /* collective */
        x->ports = NULL;
    }
    free(x->node_of_rank);
    free(x->host_of_rank);
    x->node_of_rank = NULL;
    x->host_of_rank = NULL;
    if (x->have_bells) {
        /* Collective over the node: every rank of it gets here once its
         * manager loop or interchange has stopped. */
        MPI_Win_free(&x->bell_win);
        x->have_bells = false;
    }
    if (x->have_world) {
        MPI_Comm_free(&x->world);
        x->have_world = false;
    }
    if (x->mpi_inited_by_us) {
        int fin = 0;
        MPI_Finalized(&fin);
        if (!fin)
            MPI_Finalize();
        x->mpi_inited_by_us = false;
    }
}

/* ---- the vtable
 * ---------------------------------------------------------------- */

static int xs_probe(const cparsl_launch_t *launch)
{
    return launch->size > 1 ? 100 : 0;
}

static const char *const xs_keys[] = {
    "type",
    "label",
    "workers_per_rank",
    "isolation",
    "prefetch",
    "max_batch",
    "cpu_affinity",
    "available_accelerators",
    "heartbeat_period",
    "heartbeat_threshold",
    "start_timeout",
    "manager_log_level",
    "tier_size",
    "emulate_nodes_per_host",
    "emulate_managers",
    "emulate_slots",
    "emulate_task_duration",
    "accept_joiners",
    "join_providers",
    "join_address",
    "provider",
    "strategy",
    "strategy_period",
    "max_idletime",
    NULL,
};

static const char *const mlog_levels[] = {"none", "error", "warn",
                                          "info", "debug", NULL};

static const char *const isolation_modes[] = {"process", "none", NULL};

static void join_config_free(struct xs *x)
{
    for (size_t i = 0; i < x->njoin_providers; i++)
        free(x->join_providers[i]);
    x->njoin_providers = 0;
    free(x->join_address);
    x->join_address = NULL;
    cparsl_provider_destroy(x->bc.provider);
    x->bc.provider = NULL;
}

/* join_providers (default [shm, "tcp;ofi_rxm"]) and join_address
 * (default loopback): where blocks from outside the job reach rank 0. */
static int join_config(const cparsl_cnode_t *node, struct xs *x,
                       cparsl_error_t *err)
{
    const char *addr;
    int rc = cparsl_cnode_string(node, "join_address", "127.0.0.1", &addr, err);
    if (rc < 0)
        return rc;
    x->join_address = strdup(addr);
    const cparsl_cnode_t *pv = cparsl_cnode_get(node, "join_providers");
    if (pv && (cparsl_cnode_type(pv) != CPARSL_CNODE_SEQ ||
               cparsl_cnode_len(pv) == 0 || cparsl_cnode_len(pv) > 8))
        return cparsl_cnode_error(pv, err,
                                  "expected a list of 1 to 8 libfabric "
                                  "providers, e.g. [shm, tcp;ofi_rxm]");
    size_t n = pv ? cparsl_cnode_len(pv) : 2;
    for (size_t i = 0; i < n; i++) {
        const char *name = i ? "tcp;ofi_rxm" : "shm";
        if (pv) {
            name = cparsl_cnode_scalar(cparsl_cnode_at(pv, i));
            if (!name || !*name)
                return cparsl_cnode_error(cparsl_cnode_at(pv, i), err,
                                          "expected a provider name");
        }
        x->join_providers[x->njoin_providers++] = strdup(name);
    }
    if ((pv || cparsl_cnode_get(node, "join_address")) && !x->accept_joiners)
        return cparsl_cnode_error(pv ? pv
                                     : cparsl_cnode_get(node, "join_address"),
                                  err, "only used with accept_joiners: true");
    return 0;
}

static int xs_configure(const cparsl_cnode_t *node,
                        const cparsl_launch_t *launch, cparsl_executor_t **out,
                        cparsl_error_t *err)
{
    struct xs *x = calloc(1, sizeof *x);
    if (!x)
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    int rc, iso;
    if ((rc = cparsl_cnode_check_keys(node, xs_keys, err)) < 0 ||
        (rc = cparsl_cnode_int(node, "workers_per_rank", 1, 1, 4096,
                               &x->workers_per_rank, err)) < 0 ||
        (rc = cparsl_cnode_choice(node, "isolation", isolation_modes, 0, &iso,
                                  err)) < 0 ||
        (rc = cparsl_cnode_int(node, "prefetch", 32, 0, 1 << 20, &x->prefetch,
                               err)) < 0 ||
        (rc = cparsl_cnode_int(node, "max_batch", 256, 1, 512, &x->max_batch,
                               err)) < 0 ||
        (rc = cparsl_cnode_double(node, "heartbeat_period", 10, 0.01, 86400,
                                  &x->heartbeat_period, err)) < 0 ||
        (rc = cparsl_cnode_double(node, "heartbeat_threshold", 120, 0.1,
                                  86400 * 7, &x->heartbeat_threshold, err)) <
            0 ||
        (rc = cparsl_cnode_double(node, "start_timeout", 120, 0.1, 86400,
                                  &x->start_timeout, err)) < 0 ||
        (rc = cparsl_cnode_choice(node, "manager_log_level", mlog_levels, 0,
                                  &x->manager_log_level, err)) < 0 ||
        (rc = cparsl_cnode_int(node, "tier_size", 256, 1, 1 << 20,
                               &x->tier_size, err)) < 0 ||
        (rc = cparsl_cnode_int(node, "emulate_nodes_per_host", 1, 1, 1 << 20,
                               &x->nodes_per_host, err)) < 0 ||
        (rc = cparsl_cnode_int(node, "emulate_managers", 0, 0, 16384,
                               &x->emu_managers, err)) < 0 ||
        (rc = cparsl_cnode_int(node, "emulate_slots", 32, 1, 4096,
                               &x->emu_slots, err)) < 0 ||
        (rc = cparsl_cnode_double(node, "emulate_task_duration", 0.01, 0, 3600,
                                  &x->emu_duration, err)) < 0 ||
        (rc = cparsl_cnode_bool(node, "accept_joiners",
                                cparsl_cnode_get(node, "provider") != NULL,
                                &x->accept_joiners, err)) < 0 ||
        (rc = cparsl_cnode_double(node, "max_idletime", 120, 0, 1e9,
                                  &x->max_idletime, err)) < 0 ||
        (rc = htex_blocks_configure(node, &x->bc, err)) < 0 ||
        (rc = join_config(node, x, err)) < 0 ||
        (rc = htex_pin_configure(node, &x->pin, err)) < 0) {
        htex_pin_free(&x->pin);
        join_config_free(x);
        free(x);
        return rc;
    }
    if (x->bc.provider && !x->accept_joiners) {
        rc = cparsl_cnode_error(cparsl_cnode_get(node, "accept_joiners"), err,
                                "a provider's blocks join over libfabric: "
                                "accept_joiners cannot be false");
        htex_pin_free(&x->pin);
        join_config_free(x);
        free(x);
        return rc;
    }
    pthread_mutex_init(&x->ix_mu, NULL);
    x->manager_log_level -= 1; /* "none" -> -1, "error" -> 0, ... */
    x->isolation = iso == 0;
    x->launch = *launch;
    x->user_comm =
        launch->comm ? *(const MPI_Comm *)launch->comm : MPI_COMM_WORLD;
    x->launch.comm = NULL; /* copied: the caller's may not outlive init */
    if (launch->size < 2) {
        htex_pin_free(&x->pin);
        pthread_mutex_destroy(&x->ix_mu);
        free(x);
        return cparsl_error_set(
            err, CPARSL_ELAUNCH,
            "executor 'extreme_scale' runs under an MPI launcher (mpiexec, "
            "srun, aprun), and none was found (no OMPI_COMM_WORLD_SIZE, "
            "PMI_SIZE or SLURM_STEP_NUM_TASKS above 1)");
    }
    *out = &x->base;
    return 0;
}

/* Port 0 for this rank's loop, and port 1 for sub-interchanges when
 * there are tiers (the same count on every rank: collective). */
static int transports_open(struct xs *x, const struct layout *L,
                           cparsl_error_t *err)
{
    bool emu = x->emu_managers > 0;
    int rc = htex_mpi_ports_create(x->world, L->tiers || emu ? 2 : 1, &x->ports,
                                   err);
    if (rc < 0)
        return rc;
    if (emu && htex_mpi_ports_virtual(x->ports, (int)x->emu_managers) < 0)
        return cparsl_error_set(err, -EINVAL,
                                "emulate_managers %lld: too many ports",
                                (long long)x->emu_managers);
    return htex_mpi_transport_on(x->ports, 0, &x->t, err);
}

/* The interchange has stopped: let it go, out of the DFK thread's way. */
static void drop_ix(struct xs *x)
{
    pthread_mutex_lock(&x->ix_mu);
    htex_ix_t *ix = x->ix;
    x->ix = NULL;
    pthread_mutex_unlock(&x->ix_mu);
    htex_ix_destroy(ix);
}

/* Cancel the provider's blocks still alive (waiting up to timeout s for
 * their final states) and free them. */
static void end_blocks(struct xs *x, double timeout)
{
    if (!x->blocks)
        return;
    cparsl_blocks_stop(x->blocks, timeout);
    cparsl_blocks_destroy(x->blocks);
    x->blocks = NULL;
}

/* Rank 0: MPI, the transport and the interchange. */
static int xs_start(cparsl_executor_t *ex, cparsl_error_t *err)
{
    struct xs *x = cparsl_container_of(ex, struct xs, base);
    int rc;
    struct layout L = {0};
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", cparsl_run_dir());
    if ((rc = mpi_start(x, err)) < 0 ||
        (rc = layout_compute(x, x->world, &L, err)) < 0)
        goto out;
    if ((rc = share_run_dir(x->world, dir, sizeof dir)) < 0) {
        cparsl_error_set(err, rc, "cannot send the run dir to the ranks");
        goto out;
    }
    if ((rc = rank_tables(x, &L, err)) < 0 ||
        (rc = transports_open(x, &L, err)) < 0)
        goto out;
    /* With tiers rank 0 serves the sub-interchanges (port 1 of each
     * group's leader), never the node managers themselves. */
    int *eps = L.managers, neps = L.nmanagers;
    if (x->emu_managers > 0) {
        /* every worker rank runs a sub-interchange for its emulated
         * managers */
        neps = x->size - 1;
        free(L.leaders);
        eps = L.leaders = malloc((size_t)neps * sizeof *eps);
        if (!eps) {
            rc = cparsl_error_set(err, -ENOMEM, "out of memory");
            goto out;
        }
        for (int r = 1; r < x->size; r++)
            eps[r - 1] = x->size + r;
        L.nleaders = neps;
        L.tiers = true;
    } else if (L.tiers) {
        for (int g = 0; g < L.nleaders; g++)
            L.leaders[g] += x->size;
        eps = L.leaders;
        neps = L.nleaders;
    }
    cparsl_transport_t *ixt = x->t;
    if (x->accept_joiners) {
        /* Blocks from outside the job: a libfabric listener beside MPI,
         * its peers numbered after every MPI endpoint. */
        if ((rc = htex_listen_open(
                 ex->label, (const char *const *)x->join_providers,
                 x->njoin_providers, x->join_address, x->secret, &x->fab,
                 x->addr_path, sizeof x->addr_path, err)) < 0)
            goto out;
        if ((rc = htex_mux_create(x->t, x->fab, x->t->ops->size(x->t),
                                  &x->mux)) < 0) {
            cparsl_error_set(err, rc, "out of memory");
            goto out;
        }
        ixt = x->mux;
    }
    htex_ix_opts_t io = {
        .managers = eps,
        .nmanagers = (size_t)neps,
        .max_batch = (uint32_t)x->max_batch,
        .heartbeat_threshold = x->heartbeat_threshold,
        .heartbeat_period = x->heartbeat_period,
        .secret = x->accept_joiners ? x->secret : NULL,
        .build_id = cparsl_program_build_id(),
        .lose_silent = true, /* joiners only: MPI ranks are never lost */
        .driven = true,      /* by the DFK thread: see xs_poll */
        .node_of_worker = x->node_of_rank,
        .host_of_worker = x->host_of_rank,
        .host_len = HOST_LEN,
        .nworkers = (size_t)x->size,
    };
    if ((rc = htex_ix_create(ixt, &io, &x->ix, err)) < 0 ||
        (rc = htex_ix_start(x->ix, err)) < 0)
        goto out;
    if (htex_ix_wait_registered(x->ix, x->start_timeout) < 0) {
        htex_ix_stats_t st;
        htex_ix_stats(x->ix, &st);
        rc = cparsl_error_set(err, -ETIMEDOUT,
                              "extreme_scale: %zu of %d %s registered "
                              "within start_timeout (%g s)",
                              st.managers_registered, neps,
                              L.tiers ? "sub-interchanges" : "managers",
                              x->start_timeout);
        goto out;
    }
    if (x->emu_managers > 0)
        CPARSL_LOG(CPARSL_LOG_INFO, "extreme_scale",
                   "%d ranks, EMULATION: %d sub-interchange(s), each serving "
                   "%lld emulated managers of %lld slots (tasks held %g s), "
                   "%zu slots",
                   x->size, neps, (long long)x->emu_managers,
                   (long long)x->emu_slots, x->emu_duration,
                   htex_ix_capacity(x->ix));
    else
        CPARSL_LOG(CPARSL_LOG_INFO, "extreme_scale",
                   "%d ranks, %d node manager(s), %d sub-interchange(s), %zu "
                   "slots, isolation %s",
                   x->size, L.nmanagers, L.tiers ? L.nleaders : 0,
                   htex_ix_capacity(x->ix), x->isolation ? "process" : "none");
    if (x->bc.provider && x->ix) {
        x->bc.label = ex->label;
        x->bc.addr_path = x->addr_path;
        x->bc.workers = (int)x->workers_per_rank;
        x->bc.isolation = x->isolation;
        x->bc.hb_period = x->heartbeat_period;
        x->bc.hb_threshold = x->heartbeat_threshold;
        x->bc.max_idletime = x->max_idletime;
        rc = htex_blocks_start(x->ix, &x->bc, &x->blocks, err);
    }
out:
    layout_free(&L);
    if (rc < 0) {
        end_blocks(x, 5);
        if (x->ix) {
            cparsl_error_t e2;
            if (htex_ix_shutdown(x->ix, 5, &e2) == 0)
                drop_ix(x);
        }
        if (!x->ix)
            mpi_stop(x);
    }
    return rc;
}

/* Every other rank: serve until the client finalizes. */
/* ---- sub-interchanges ------------------------------------------------------
 */

/*
 * A sub-interchange is a manager with no slots of its own: its downstream
 * is its group's node managers, its upstream rank 0.  Results pass through
 * it as they are (they carry rank 0's tickets); it asks rank 0 for its
 * managers' free slots plus their prefetch windows, and serves them as
 * they ask.  It runs on a thread of the group's lowest rank, on port 1.
 */
struct subix {
    struct xs *x;
    pthread_t th;
    bool started;
    cparsl_transport_t *t;
    htex_mgr_opts_t o;
    int *down;
    char host[256];
    int rc;
    cparsl_error_t err;
};

static void *subix_main(void *arg)
{
    struct subix *sub = arg;
    cparsl_error_clear(&sub->err);
    sub->rc = htex_manager_run(sub->t, &sub->o, &sub->err);
    if (sub->rc < 0)
        CPARSL_LOG(CPARSL_LOG_ERROR, "extreme_scale",
                   "rank %d: sub-interchange: %s", sub->x->rank, sub->err.text);
    free(sub->down);
    sub->down = NULL;
    return NULL;
}

static int subix_start(struct subix *sub, const int *group, int ngroup,
                       int node, const char *host, cparsl_error_t *err)
{
    struct xs *x = sub->x;
    int rc = htex_mpi_transport_on(x->ports, 1, &sub->t, err);
    if (rc < 0)
        return rc;
    sub->down = malloc((size_t)ngroup * sizeof *sub->down);
    if (!sub->down)
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    memcpy(sub->down, group, (size_t)ngroup * sizeof *sub->down);
    snprintf(sub->host, sizeof sub->host, "%s", host);
    sub->o = (htex_mgr_opts_t){
        .upstream = 0,
        .downstream = sub->down,
        .ndownstream = (size_t)ngroup,
        .nslots = 0,
        /* every manager's window, so each can be topped up at once */
        .prefetch = (int)(x->prefetch * ngroup),
        .isolation = x->isolation,
        .rank = x->rank,
        .node = node,
        .manager_id = x->rank,
        .host = sub->host,
        .block_id = "0",
        .heartbeat_period = x->heartbeat_period,
        .max_batch = (uint32_t)x->max_batch,
    };
    rc = pthread_create(&sub->th, NULL, subix_main, sub);
    if (rc) {
        free(sub->down);
        sub->down = NULL;
        return cparsl_error_set(err, -rc, "no sub-interchange thread: %s",
                                strerror(rc));
    }
    sub->started = true;
    return 0;
}

/* Scale emulation: this rank's sub-interchange (port 1) serves its
 * emulated managers (virtual ports 2 ...), which this thread plays. */
static int emulate(struct xs *x, struct subix *sub, const struct layout *L,
                   const char *host, cparsl_error_t *err)
{
    int n = (int)x->emu_managers;
    int *eps = malloc((size_t)n * sizeof *eps);
    if (!eps)
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    for (int i = 0; i < n; i++)
        eps[i] = (2 + i) * x->size + x->rank;
    int rc = subix_start(sub, eps, n, L->node, host, err);
    if (rc == 0) {
        htex_emu_opts_t eo = {
            .upstream = x->size + x->rank,
            .eps = eps,
            .nmanagers = (size_t)n,
            .slots = (uint32_t)x->emu_slots,
            .prefetch = (uint32_t)x->prefetch,
            .duration = x->emu_duration,
            .heartbeat_period = x->heartbeat_period,
            .max_batch = (uint32_t)x->max_batch,
            .rank = x->rank,
            .node = L->node,
            .host = host,
            .send_from = htex_mpi_transport_send_from,
            .last_dst = htex_mpi_transport_last_dst,
        };
        rc = htex_emulate_run(x->t, &eo, err);
    }
    free(eps);
    return rc;
}

static int xs_serve(cparsl_executor_t *ex, cparsl_error_t *err)
{
    struct xs *x = cparsl_container_of(ex, struct xs, base);
    int rc, inited = 0;
    MPI_Initialized(&inited);
    /* The helper must exist before MPI_Init starts threads and maps
     * devices; when the application started MPI, children are forked
     * directly instead. */
    if (x->isolation && !inited && (rc = htex_forkhelper_start(false, err)) < 0)
        return rc;
    if ((rc = mpi_start(x, err)) < 0)
        return rc;
    struct layout L = {0};
    char dir[4096] = "";
    if ((rc = layout_compute(x, x->world, &L, err)) < 0)
        return rc;
    if (share_run_dir(x->world, dir, sizeof dir) < 0) {
        layout_free(&L);
        return cparsl_error_set(err, CPARSL_ETRANSPORT,
                                "cannot learn the run dir from rank 0");
    }
    if (x->manager_log_level >= 0 && dir[0]) {
        char path[4200];
        snprintf(path, sizeof path, "%s/rank.%d.log", dir, x->rank);
        if (cparsl_log_open(path, x->manager_log_level) < 0)
            CPARSL_LOG(CPARSL_LOG_WARN, "extreme_scale",
                       "rank %d: cannot open %s", x->rank, path);
    }
    if ((rc = rank_tables(x, &L, err)) < 0 ||
        (rc = transports_open(x, &L, err)) < 0) {
        layout_free(&L);
        return rc;
    }
    char host[256];
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "unknown");
    host[sizeof host - 1] = '\0';
    bool is_manager = x->rank == L.manager;
    /* A node manager's upstream: its group's sub-interchange (port 1 of
     * the group's leader) with tiers, else rank 0. */
    int up = L.tiers ? x->size + L.group_leader : 0;
    htex_mgr_opts_t mo = {
        .upstream = is_manager ? up : L.manager,
        .downstream = is_manager ? L.peers + 1 : NULL,
        .ndownstream = is_manager ? (size_t)(L.npeers - 1) : 0,
        .nslots = (int)x->workers_per_rank,
        .prefetch = (int)x->prefetch,
        .isolation = x->isolation,
        .pin =
            x->pin.policy != HTEX_PIN_NONE || x->pin.naccels ? &x->pin : NULL,
        .slot_base = L.my_index * (int)x->workers_per_rank,
        .node_slots = L.npeers * (int)x->workers_per_rank,
        .rank = x->rank,
        .node = L.node,
        .manager_id = L.manager,
        .host = host,
        .block_id = "0",
        .heartbeat_period = x->heartbeat_period,
        .max_batch = (uint32_t)x->max_batch,
        .bell = L.my_bell,
        /* A worker rank hears only from its node manager, which rings. */
        .upstream_rings = !is_manager && L.my_bell && L.peer_bells &&
                          L.peer_bells[L.my_index],
        .down_bells = is_manager && L.peer_bells ? L.peer_bells + 1 : NULL,
    };
    struct subix sub = {.x = x};
    if (x->emu_managers > 0) {
        rc = emulate(x, &sub, &L, host, err);
        goto done;
    }
    if (L.group) {
        if ((rc = subix_start(&sub, L.group, L.ngroup, L.node, host, err)) <
            0) {
            layout_free(&L);
            return rc;
        }
    }
    rc = htex_manager_run(x->t, &mo, err);
done:
    if (sub.started) {
        pthread_join(sub.th, NULL);
        if (sub.rc < 0 && rc == 0) {
            rc = sub.rc;
            *err = sub.err;
        }
    }
    if (sub.t)
        sub.t->ops->destroy(sub.t);
    layout_free(&L);
    return rc;
}

static int xs_submit(cparsl_executor_t *ex, cparsl_exec_t *const *batch,
                     size_t n)
{
    struct xs *x = cparsl_container_of(ex, struct xs, base);
    /* Its blocks kept failing and no rank serves: nothing can run. */
    if (cparsl_blocks_refuse(x->blocks, batch, n))
        return 0;
    pthread_mutex_lock(&x->ix_mu);
    int rc = x->ix ? htex_ix_submit(x->ix, batch, n) : -CPARSL_ESHUTDOWN;
    pthread_mutex_unlock(&x->ix_mu);
    return rc;
}

static int xs_poll(cparsl_executor_t *ex)
{
    struct xs *x = cparsl_container_of(ex, struct xs, base);
    pthread_mutex_lock(&x->ix_mu);
    int rc = x->ix ? htex_ix_poll(x->ix) : 0;
    pthread_mutex_unlock(&x->ix_mu);
    return rc;
}

static size_t xs_outstanding(cparsl_executor_t *ex)
{
    struct xs *x = cparsl_container_of(ex, struct xs, base);
    pthread_mutex_lock(&x->ix_mu);
    size_t n = x->ix ? htex_ix_outstanding(x->ix) : 0;
    pthread_mutex_unlock(&x->ix_mu);
    return n;
}

static size_t xs_capacity(cparsl_executor_t *ex)
{
    struct xs *x = cparsl_container_of(ex, struct xs, base);
    pthread_mutex_lock(&x->ix_mu);
    size_t n = x->ix ? htex_ix_capacity(x->ix) : 0;
    pthread_mutex_unlock(&x->ix_mu);
    return n;
}

/* A signal asked the run to stop: queued tries fail, managers finish what
 * they hold and leave; cparsl_finalize then completes the shutdown. */
static int xs_drain(cparsl_executor_t *ex)
{
    struct xs *x = cparsl_container_of(ex, struct xs, base);
    pthread_mutex_lock(&x->ix_mu);
    if (x->ix)
        htex_ix_begin_shutdown(x->ix);
    pthread_mutex_unlock(&x->ix_mu);
    return 0;
}

static int xs_shutdown(cparsl_executor_t *ex, cparsl_error_t *err)
{
    struct xs *x = cparsl_container_of(ex, struct xs, base);
    int rc = 0;
    if (x->blocks)
        cparsl_blocks_halt(x->blocks); /* no block is asked for now */
    /* Only this thread sets x->ix, so reading it here needs no lock. */
    if (x->ix) {
        rc = htex_ix_shutdown(x->ix, 60, err);
        htex_ix_stats_t st;
        htex_ix_stats(x->ix, &st);
        CPARSL_LOG(
            CPARSL_LOG_INFO, "interchange",
            "%llu tasks dispatched, %llu completed; %llu messages in "
            "(%llu bytes), %llu out (%llu bytes)",
            (unsigned long long)st.dispatched, (unsigned long long)st.completed,
            (unsigned long long)st.msgs_in, (unsigned long long)st.bytes_in,
            (unsigned long long)st.msgs_out, (unsigned long long)st.bytes_out);
        if (rc == 0)
            drop_ix(x);
    }
    end_blocks(x, 10);
    if (rc == 0 && x->mux) {
        x->mux->ops->destroy(x->mux);
        x->mux = NULL;
    }
    if (rc == 0 && x->fab) {
        x->fab->ops->destroy(x->fab);
        x->fab = NULL;
    }
    if (htex_forkhelper_running())
        htex_forkhelper_stop();
    if (rc == 0)
        mpi_stop(x);
    return rc;
}

static void xs_destroy(cparsl_executor_t *ex)
{
    struct xs *x = cparsl_container_of(ex, struct xs, base);
    if (x->ix)
        return; /* its thread could not be stopped: leave it */
    htex_pin_free(&x->pin);
    join_config_free(x);
    pthread_mutex_destroy(&x->ix_mu);
    free(x);
}

const struct cparsl_executor_ops cparsl_extreme_scale_ops = {
    .family = "extreme_scale",
    .flags = CPARSL_EXEC_MPI,
    .probe = xs_probe,
    .configure = xs_configure,
    .start = xs_start,
    .submit = xs_submit,
    .outstanding = xs_outstanding,
    .capacity = xs_capacity,
    .scale_out = cparsl_executor_enosys_scale,
    .scale_in = cparsl_executor_enosys_scale,
    .drain = xs_drain,
    .shutdown = xs_shutdown,
    .destroy = xs_destroy,
    .serve = xs_serve,
    .poll = xs_poll,
};

/* ---- embedding (include/cparsl/mpi.h) ---------------------------------- */

int cparsl_init_comm(MPI_Comm comm, int *argc, char ***argv,
                     const cparsl_config_t *cfg, cparsl_error_t *err)
{
    cparsl_error_t local;
    if (!err)
        err = &local;
    cparsl_error_clear(err);
    int inited = 0, finalized = 0, provided = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (!inited || finalized)
        return cparsl_error_set(err, CPARSL_ELAUNCH,
                                "cparsl_init_comm: MPI is %s; initialize it "
                                "with MPI_Init_thread(..., "
                                "MPI_THREAD_MULTIPLE, ...) first",
                                finalized ? "finalized" : "not initialized");
    if (comm == MPI_COMM_NULL)
        return cparsl_error_set(err, -EINVAL,
                                "cparsl_init_comm: the communicator is "
                                "MPI_COMM_NULL (call it only on the ranks "
                                "of the pilot)");
    MPI_Query_thread(&provided);
    if (provided < MPI_THREAD_MULTIPLE)
        return cparsl_error_set(err, CPARSL_ETRANSPORT,
                                "cparsl_init_comm needs MPI_THREAD_MULTIPLE "
                                "(cparsl calls MPI from its own threads "
                                "while the application calls it from "
                                "its), but MPI provides level %d",
                                provided);
    int inter = 0;
    MPI_Comm_test_inter(comm, &inter);
    if (inter)
        return cparsl_error_set(err, -EINVAL,
                                "cparsl_init_comm: an intercommunicator; "
                                "give an intracommunicator");
    cparsl_launch_t launch;
    cparsl_launch_detect(&launch);
    MPI_Comm_size(comm, &launch.size);
    MPI_Comm_rank(comm, &launch.rank);
    if (launch.size < 2)
        return cparsl_error_set(err, CPARSL_ELAUNCH,
                                "cparsl_init_comm: the communicator has one "
                                "rank; a pilot needs at least 2 (a client "
                                "and a worker)");
    launch.source = "the communicator given to cparsl_init_comm";
    launch.comm = &comm;
    return cparsl_init_launch(argc, argv, cfg, &launch, err);
}
