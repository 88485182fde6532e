/*
 * loopexec.c - the htex_loop executor: the interchange and N managers as
 * threads of one process, over the in-process loop transport.
 *
 * It runs the same interchange, manager and worker code as an MPI job,
 * without MPI: the fake that lets tests (and ASan) exercise dispatch,
 * batching, isolated workers, crashes and shutdown in one process, in the
 * spirit of flux's loop connector.  Not meant for production use.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cparsl/plugin.h>

#include "child.h"
#include "interchange.h"
#include "log.h"
#include "manager.h"
#include "transport/loop.h"

struct loopexec;

struct lmgr {
    struct loopexec *le;
    int idx;
    pthread_t th;
    bool started;
    htex_mgr_opts_t o;
    int rc;
    cparsl_error_t err;
};

struct loopexec {
    cparsl_executor_t base;
    int64_t managers, workers, prefetch, max_batch;
    bool isolation, started_helper;
    htex_pin_t pin;
    cparsl_transport_t **eps;
    htex_ix_t *ix;
    struct lmgr *m;
    int *mgr_eps;
};

static const char *const le_keys[] = {
    "type",
    "label",
    "managers",
    "workers_per_manager",
    "isolation",
    "prefetch",
    "max_batch",
    "cpu_affinity",
    "available_accelerators",
    NULL,
};

static const char *const iso_modes[] = {"process", "none", NULL};

static int le_probe(const cparsl_launch_t *launch)
{
    (void)launch;
    return 0; /* only when named */
}

static int le_configure(const cparsl_cnode_t *node,
                        const cparsl_launch_t *launch, cparsl_executor_t **out,
                        cparsl_error_t *err)
{
    (void)launch;
    struct loopexec *le = calloc(1, sizeof *le);
    if (!le)
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    int rc, iso;
    if ((rc = cparsl_cnode_check_keys(node, le_keys, err)) < 0 ||
        (rc = cparsl_cnode_int(node, "managers", 2, 1, 1024, &le->managers,
                               err)) < 0 ||
        (rc = cparsl_cnode_int(node, "workers_per_manager", 2, 1, 1024,
                               &le->workers, err)) < 0 ||
        (rc = cparsl_cnode_choice(node, "isolation", iso_modes, 0, &iso, err)) <
            0 ||
        (rc = cparsl_cnode_int(node, "prefetch", 8, 0, 1 << 20, &le->prefetch,
                               err)) < 0 ||
        (rc = cparsl_cnode_int(node, "max_batch", 256, 1, 512, &le->max_batch,
                               err)) < 0 ||
        (rc = htex_pin_configure(node, &le->pin, err)) < 0) {
        htex_pin_free(&le->pin);
        free(le);
        return rc;
    }
    le->isolation = iso == 0;
    *out = &le->base;
    return 0;
}

static void *mgr_main(void *arg)
{
    struct lmgr *m = arg;
    cparsl_error_clear(&m->err);
    m->rc = htex_manager_run(m->le->eps[m->idx + 1], &m->o, &m->err);
    if (m->rc < 0)
        CPARSL_LOG(CPARSL_LOG_ERROR, "htex_loop", "manager %d: %s", m->idx,
                   m->err.text);
    return NULL;
}

static int le_start(cparsl_executor_t *ex, cparsl_error_t *err)
{
    struct loopexec *le = cparsl_container_of(ex, struct loopexec, base);
    int n = (int)le->managers;
    int rc;
    if (le->isolation && !htex_forkhelper_running()) {
        /* Best effort: a process that already runs threads forks its
         * workers directly (see child.h). */
        cparsl_error_t e2;
        le->started_helper = htex_forkhelper_start(false, &e2) == 0;
    }
    le->eps = calloc((size_t)n + 1, sizeof *le->eps);
    le->m = calloc((size_t)n, sizeof *le->m);
    le->mgr_eps = calloc((size_t)n, sizeof *le->mgr_eps);
    if (!le->eps || !le->m || !le->mgr_eps)
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    if ((rc = htex_loop_create(n + 1, le->eps, err)) < 0)
        return rc;
    for (int i = 0; i < n; i++)
        le->mgr_eps[i] = i + 1;
    htex_ix_opts_t io = {
        .managers = le->mgr_eps,
        .nmanagers = (size_t)n,
        .max_batch = (uint32_t)le->max_batch,
        .heartbeat_threshold = 120,
    };
    if ((rc = htex_ix_create(le->eps[0], &io, &le->ix, err)) < 0 ||
        (rc = htex_ix_start(le->ix, err)) < 0)
        return rc;
    for (int i = 0; i < n; i++) {
        struct lmgr *m = &le->m[i];
        m->le = le;
        m->idx = i;
        m->o = (htex_mgr_opts_t){
            .upstream = 0,
            .nslots = (int)le->workers,
            .prefetch = (int)le->prefetch,
            .isolation = le->isolation,
            .pin = le->pin.policy != HTEX_PIN_NONE || le->pin.naccels ? &le->pin
                                                                      : NULL,
            .slot_base = i * (int)le->workers,
            .node_slots = n * (int)le->workers,
            .rank = i + 1,
            .node = 0,
            .manager_id = i + 1,
            .host = "localhost",
            .block_id = "0",
            .heartbeat_period = 10,
            .max_batch = (uint32_t)le->max_batch,
        };
        if ((rc = pthread_create(&m->th, NULL, mgr_main, m)) != 0)
            return cparsl_error_set(err, -rc, "htex_loop: no thread");
        m->started = true;
    }
    if (htex_ix_wait_registered(le->ix, 60) < 0)
        return cparsl_error_set(err, -ETIMEDOUT,
                                "htex_loop: managers did not register");
    return 0;
}

static int le_submit(cparsl_executor_t *ex, cparsl_exec_t *const *batch,
                     size_t n)
{
    struct loopexec *le = cparsl_container_of(ex, struct loopexec, base);
    return htex_ix_submit(le->ix, batch, n);
}

static size_t le_outstanding(cparsl_executor_t *ex)
{
    struct loopexec *le = cparsl_container_of(ex, struct loopexec, base);
    return le->ix ? htex_ix_outstanding(le->ix) : 0;
}

static size_t le_capacity(cparsl_executor_t *ex)
{
    struct loopexec *le = cparsl_container_of(ex, struct loopexec, base);
    return le->ix ? htex_ix_capacity(le->ix) : 0;
}

static int le_drain(cparsl_executor_t *ex)
{
    struct loopexec *le = cparsl_container_of(ex, struct loopexec, base);
    if (le->ix)
        htex_ix_begin_shutdown(le->ix);
    return 0;
}

static int le_shutdown(cparsl_executor_t *ex, cparsl_error_t *err)
{
    struct loopexec *le = cparsl_container_of(ex, struct loopexec, base);
    int rc = 0;
    if (le->ix && (rc = htex_ix_shutdown(le->ix, 60, err)) < 0)
        return rc;
    for (int i = 0; le->m && i < le->managers; i++)
        if (le->m[i].started) {
            pthread_join(le->m[i].th, NULL);
            le->m[i].started = false;
            if (le->m[i].rc < 0 && rc == 0) {
                rc = le->m[i].rc;
                if (err)
                    *err = le->m[i].err;
            }
        }
    if (le->started_helper) {
        htex_forkhelper_stop();
        le->started_helper = false;
    }
    return rc;
}

static void le_destroy(cparsl_executor_t *ex)
{
    struct loopexec *le = cparsl_container_of(ex, struct loopexec, base);
    htex_ix_destroy(le->ix);
    for (int i = 0; le->eps && i <= le->managers; i++)
        if (le->eps[i])
            le->eps[i]->ops->destroy(le->eps[i]);
    free(le->eps);
    free(le->m);
    free(le->mgr_eps);
    htex_pin_free(&le->pin);
    free(le);
}

const struct cparsl_executor_ops cparsl_htex_loop_ops = {
    .family = "htex_loop",
    .flags = 0,
    .probe = le_probe,
    .configure = le_configure,
    .start = le_start,
    .submit = le_submit,
    .outstanding = le_outstanding,
    .capacity = le_capacity,
    .scale_out = cparsl_executor_enosys_scale,
    .scale_in = cparsl_executor_enosys_scale,
    .drain = le_drain,
    .shutdown = le_shutdown,
    .destroy = le_destroy,
    .serve = cparsl_executor_enosys_serve,
};
