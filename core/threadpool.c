/*
 * threadpool.c - the thread-pool executor: single-process mode.
 *
 * Worker threads pull tries from one ring buffer (no allocation per task),
 * run them through the app's kind and hand them back to the DFK.  An idle
 * worker polls for a short window, then sleeps; the DFK signals only
 * sleeping workers.
 *
 * Walltime: a C function on a thread cannot be stopped.  A watchdog thread
 * fails a try at its deadline, the worker running it is written off as a
 * "zombie" (it keeps its thread, a copy of the try and a hold on the task,
 * and throws its late result away), and a replacement worker starts
 * while no more than max_replacements threads are stuck at once; a stuck
 * thread that returns rejoins the pool if it is short.  App kinds that
 * enforce walltime themselves (bash) are not watched.  Shutdown waits for
 * zombies only up to zombie_wait seconds and reports those still running.
 * Process isolation (a later executor) is the answer for an enforced walltime.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cparsl/plugin.h>

#include "log.h"

#define TP_POLL_NS 50000

struct tp;

struct tp_worker {
    struct tp *tp;
    cparsl_exec_t *cur; /* the try being run (tp->mu) */
    int64_t deadline;   /* CLOCK_MONOTONIC ns; 0: none */
    _Atomic int claim;  /* 0 running, 1 finished, 2 timed out */
    int id;             /* the thread's number, recorded as tries' worker */
    bool zombie;
    struct tp_worker *next, *prev;
};

struct tp {
    cparsl_executor_t base;
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* idle workers */
    pthread_cond_t wd_cv;   /* the watchdog */
    pthread_cond_t exit_cv; /* shutdown waits for workers here */
    cparsl_exec_t **q;      /* ring buffer */
    size_t qhead, qlen, qcap;
    _Atomic size_t qlen_hint; /* lock-free peek for polling workers */
    struct tp_worker *workers;
    size_t nworkers; /* configured */
    size_t nlive;    /* running, not zombies */
    size_t nzombies;
    size_t nsleeping;
    size_t replacements, max_replacements;
    int next_worker_id;
    double zombie_wait;
    bool stop, watchdog_on;
    pthread_t watchdog;
    _Atomic size_t outstanding;
    _Atomic uint64_t timedout;
};

static void *worker_main(void *arg);

static int spawn_worker(struct tp *tp)
{
    struct tp_worker *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->tp = tp;
    w->id = tp->next_worker_id++;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t th;
    int rc = pthread_create(&th, &attr, worker_main, w);
    pthread_attr_destroy(&attr);
    if (rc) {
        free(w);
        return -rc;
    }
    w->next = tp->workers;
    if (tp->workers)
        tp->workers->prev = w;
    tp->workers = w;
    tp->nlive++;
    return 0;
}

static void unlink_worker(struct tp *tp, struct tp_worker *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else if (tp->workers == w)
        tp->workers = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->next = w->prev = NULL;
}

/* Called with tp->mu held.  Waits for a try; NULL when stopping. */
static cparsl_exec_t *next_try(struct tp *tp)
{
    while (tp->qlen == 0 && !tp->stop) {
        /* Poll briefly without the lock: under load the next batch is
         * usually microseconds away. */
        pthread_mutex_unlock(&tp->mu);
        int64_t start = cparsl_mono_ns();
        while (atomic_load_explicit(&tp->qlen_hint, memory_order_acquire) ==
                   0 &&
               cparsl_mono_ns() - start < TP_POLL_NS)
            sched_yield();
        pthread_mutex_lock(&tp->mu);
        if (tp->qlen || tp->stop)
            break;
        tp->nsleeping++;
        pthread_cond_wait(&tp->cv, &tp->mu);
        tp->nsleeping--;
    }
    if (tp->qlen == 0)
        return NULL;
    cparsl_exec_t *e = tp->q[tp->qhead];
    tp->qhead = (tp->qhead + 1) % tp->qcap;
    tp->qlen--;
    atomic_store_explicit(&tp->qlen_hint, tp->qlen, memory_order_release);
    return e;
}

static bool kind_enforces_walltime(const cparsl_exec_t *e)
{
    const struct cparsl_app_kind *k = cparsl_app_kind_of(e->args.app);
    return k && (k->flags & CPARSL_APPKIND_WALLTIME);
}

static void *worker_main(void *arg)
{
    struct tp_worker *w = arg;
    struct tp *tp = w->tp;
    cparsl_exec_t local;
    pthread_setname_np(pthread_self(), "cparsl-worker");

    pthread_mutex_lock(&tp->mu);
    for (;;) {
        cparsl_exec_t *e = next_try(tp);
        if (!e)
            break;
        w->cur = e;
        w->deadline = 0;
        atomic_store_explicit(&w->claim, 0, memory_order_relaxed);
        if (e->walltime > 0 && !kind_enforces_walltime(e)) {
            w->deadline = cparsl_mono_ns() + (int64_t)(e->walltime * 1e9);
            cparsl_exec_hold(e);
            pthread_cond_signal(&tp->wd_cv);
        }
        pthread_mutex_unlock(&tp->mu);

        /* Run on a private copy: if the watchdog gives up on this try,
         * the late result lands here and not in the task. */
        local.args = e->args;
        local.walltime = e->walltime;
        local.stdout_path = e->stdout_path;
        local.stderr_path = e->stderr_path;
        local.stdout_mode = e->stdout_mode;
        local.stderr_mode = e->stderr_mode;
        local.result = cparsl_nil();
        local.error = NULL;
        local.exit_code = -1;
        local.term_signal = 0;
        local.cpu_s = -1;
        local.maxrss_kib = -1;
        cparsl_exec_run(&local);

        int expect = 0;
        bool won = w->deadline == 0 ||
                   atomic_compare_exchange_strong(&w->claim, &expect, 1);
        if (!won) {
            /* The watchdog already failed this try.  Throw the late result
             * away; rejoin the pool if it is short of threads. */
            cparsl_value_clear(&local.result);
            cparsl_exec_clear_error(&local);
            cparsl_exec_release(e);
            pthread_mutex_lock(&tp->mu);
            tp->nzombies--;
            w->zombie = false;
            w->cur = NULL;
            w->deadline = 0;
            pthread_cond_broadcast(&tp->exit_cv);
            if (tp->stop || tp->nlive >= tp->nworkers) {
                pthread_mutex_unlock(&tp->mu);
                free(w);
                return NULL;
            }
            w->next = tp->workers;
            w->prev = NULL;
            if (tp->workers)
                tp->workers->prev = w;
            tp->workers = w;
            tp->nlive++;
            continue;
        }
        e->result = local.result;
        if (local.error)
            cparsl_exec_take_error(e, &local);
        e->t_start = local.t_start;
        e->t_end = local.t_end;
        e->exit_code = local.exit_code;
        e->term_signal = local.term_signal;
        e->cpu_s = local.cpu_s;
        e->maxrss_kib = local.maxrss_kib;
        e->worker = w->id;
        bool held = w->deadline != 0;
        pthread_mutex_lock(&tp->mu);
        w->cur = NULL;
        w->deadline = 0;
        pthread_mutex_unlock(&tp->mu);
        atomic_fetch_sub(&tp->outstanding, 1);
        cparsl_exec_complete(e);
        if (held)
            cparsl_exec_release(e);
        pthread_mutex_lock(&tp->mu);
    }
    unlink_worker(tp, w);
    tp->nlive--;
    pthread_cond_broadcast(&tp->exit_cv);
    pthread_mutex_unlock(&tp->mu);
    free(w);
    return NULL;
}

static void *watchdog_main(void *arg)
{
    struct tp *tp = arg;
    pthread_mutex_lock(&tp->mu);
    while (!tp->stop) {
        int64_t now = cparsl_mono_ns(), next = 0;
        for (struct tp_worker *w = tp->workers; w;) {
            struct tp_worker *wnext = w->next;
            if (w->cur && w->deadline && w->deadline <= now) {
                int expect = 0;
                if (atomic_compare_exchange_strong(&w->claim, &expect, 2)) {
                    cparsl_exec_t *e = w->cur;
                    w->cur = NULL;
                    w->zombie = true;
                    unlink_worker(tp, w);
                    tp->nlive--;
                    tp->nzombies++;
                    atomic_fetch_add(&tp->timedout, 1);
                    cparsl_exec_fail(
                        e, CPARSL_EWALLTIME,
                        "app '%s' exceeded its walltime of %g s; its "
                        "thread cannot be stopped and was left running "
                        "(%zu such threads); use process isolation for an "
                        "enforced walltime",
                        e->args.app->name, e->walltime, tp->nzombies);
                    e->t_end = cparsl_now_ns();
                    if (tp->nzombies <= tp->max_replacements) {
                        tp->replacements++;
                        if (spawn_worker(tp) < 0)
                            CPARSL_LOG(CPARSL_LOG_WARN, "threadpool",
                                       "cannot start a replacement worker");
                    } else {
                        CPARSL_LOG_SPARSE(
                            CPARSL_LOG_WARN, "threadpool",
                            "executor '%s': %zu stuck threads, more than "
                            "max_replacements; %zu workers left until they "
                            "return",
                            tp->base.label, tp->nzombies, tp->nlive);
                    }
                    pthread_mutex_unlock(&tp->mu);
                    atomic_fetch_sub(&tp->outstanding, 1);
                    cparsl_exec_complete(e);
                    pthread_mutex_lock(&tp->mu);
                    /* the list changed: start over */
                    wnext = tp->workers;
                    now = cparsl_mono_ns();
                    next = 0;
                }
            } else if (w->cur && w->deadline &&
                       (next == 0 || w->deadline < next)) {
                next = w->deadline;
            }
            w = wnext;
        }
        if (tp->stop)
            break;
        if (next) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            int64_t wait = next - cparsl_mono_ns();
            if (wait < 0)
                wait = 0;
            int64_t abs = ts.tv_sec * 1000000000ll + ts.tv_nsec + wait;
            ts.tv_sec = abs / 1000000000ll;
            ts.tv_nsec = abs % 1000000000ll;
            pthread_cond_timedwait(&tp->wd_cv, &tp->mu, &ts);
        } else {
            pthread_cond_wait(&tp->wd_cv, &tp->mu);
        }
    }
    pthread_mutex_unlock(&tp->mu);
    return NULL;
}

/* ---- the vtable ---------------------------------------------------------- */

static size_t cpus_available(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return (size_t)CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (size_t)n : 1;
}

static int tp_probe(const cparsl_launch_t *launch)
{
    return launch->size <= 1 ? 10 : 0;
}

static const char *const tp_keys[] = {
    "type", "label", "max_threads", "max_replacements", "zombie_wait", NULL,
};

static int tp_configure(const cparsl_cnode_t *node,
                        const cparsl_launch_t *launch, cparsl_executor_t **out,
                        cparsl_error_t *err)
{
    (void)launch;
    int64_t nthreads, maxrep;
    double zwait;
    int rc;
    if ((rc = cparsl_cnode_check_keys(node, tp_keys, err)) < 0 ||
        (rc = cparsl_cnode_int(node, "max_threads", (int64_t)cpus_available(),
                               1, 65536, &nthreads, err)) < 0 ||
        (rc = cparsl_cnode_int(node, "max_replacements", nthreads, 0, 1 << 20,
                               &maxrep, err)) < 0 ||
        (rc = cparsl_cnode_double(node, "zombie_wait", 5.0, 0, 86400, &zwait,
                                  err)) < 0)
        return rc;
    struct tp *tp = calloc(1, sizeof *tp);
    if (!tp)
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    tp->nworkers = (size_t)nthreads;
    tp->max_replacements = (size_t)maxrep;
    tp->zombie_wait = zwait;
    tp->qcap = 1024;
    tp->q = malloc(tp->qcap * sizeof *tp->q);
    if (!tp->q) {
        free(tp);
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    }
    pthread_mutex_init(&tp->mu, NULL);
    pthread_cond_init(&tp->cv, NULL);
    pthread_cond_init(&tp->wd_cv, NULL);
    pthread_cond_init(&tp->exit_cv, NULL);
    *out = &tp->base;
    return 0;
}

static int tp_start(cparsl_executor_t *ex, cparsl_error_t *err)
{
    struct tp *tp = cparsl_container_of(ex, struct tp, base);
    pthread_mutex_lock(&tp->mu);
    int rc = 0;
    for (size_t i = 0; i < tp->nworkers && rc == 0; i++)
        rc = spawn_worker(tp);
    if (rc == 0) {
        rc = -pthread_create(&tp->watchdog, NULL, watchdog_main, tp);
        tp->watchdog_on = rc == 0;
    }
    pthread_mutex_unlock(&tp->mu);
    if (rc < 0)
        return cparsl_error_set(err, rc,
                                "executor '%s': cannot start "
                                "threads: %s",
                                ex->label, cparsl_strerror(rc));
    return 0;
}

static int tp_submit(cparsl_executor_t *ex, cparsl_exec_t *const *batch,
                     size_t n)
{
    struct tp *tp = cparsl_container_of(ex, struct tp, base);
    pthread_mutex_lock(&tp->mu);
    if (tp->stop) {
        pthread_mutex_unlock(&tp->mu);
        return -CPARSL_ESHUTDOWN;
    }
    if (tp->qlen + n > tp->qcap) {
        size_t cap = tp->qcap;
        while (cap < tp->qlen + n)
            cap *= 2;
        cparsl_exec_t **q = malloc(cap * sizeof *q);
        if (!q) {
            pthread_mutex_unlock(&tp->mu);
            return -ENOMEM;
        }
        for (size_t i = 0; i < tp->qlen; i++)
            q[i] = tp->q[(tp->qhead + i) % tp->qcap];
        free(tp->q);
        tp->q = q;
        tp->qcap = cap;
        tp->qhead = 0;
    }
    for (size_t i = 0; i < n; i++)
        tp->q[(tp->qhead + tp->qlen + i) % tp->qcap] = batch[i];
    tp->qlen += n;
    atomic_fetch_add(&tp->outstanding, n);
    atomic_store_explicit(&tp->qlen_hint, tp->qlen, memory_order_release);
    if (tp->nsleeping) {
        if (n >= tp->nsleeping)
            pthread_cond_broadcast(&tp->cv);
        else
            for (size_t i = 0; i < n; i++)
                pthread_cond_signal(&tp->cv);
    }
    pthread_mutex_unlock(&tp->mu);
    return 0;
}

static size_t tp_outstanding(cparsl_executor_t *ex)
{
    struct tp *tp = cparsl_container_of(ex, struct tp, base);
    return atomic_load(&tp->outstanding);
}

static size_t tp_capacity(cparsl_executor_t *ex)
{
    struct tp *tp = cparsl_container_of(ex, struct tp, base);
    pthread_mutex_lock(&tp->mu);
    size_t n = tp->nlive;
    pthread_mutex_unlock(&tp->mu);
    return n;
}

/* Tries not yet started fail; running ones finish. */
static int tp_drain(cparsl_executor_t *ex)
{
    struct tp *tp = cparsl_container_of(ex, struct tp, base);
    pthread_mutex_lock(&tp->mu);
    size_t n = tp->qlen;
    cparsl_exec_t **v = malloc((n ? n : 1) * sizeof *v);
    if (!v) {
        pthread_mutex_unlock(&tp->mu);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        v[i] = tp->q[(tp->qhead + i) % tp->qcap];
    tp->qlen = 0;
    atomic_store(&tp->qlen_hint, 0);
    pthread_mutex_unlock(&tp->mu);
    for (size_t i = 0; i < n; i++) {
        cparsl_exec_fail(v[i], CPARSL_ESHUTDOWN,
                         "the run is shutting down; this task had not "
                         "started");
        atomic_fetch_sub(&tp->outstanding, 1);
        cparsl_exec_complete(v[i]);
    }
    free(v);
    return 0;
}

static int tp_shutdown(cparsl_executor_t *ex, cparsl_error_t *err)
{
    struct tp *tp = cparsl_container_of(ex, struct tp, base);
    pthread_mutex_lock(&tp->mu);
    tp->stop = true;
    pthread_cond_broadcast(&tp->cv);
    pthread_cond_broadcast(&tp->wd_cv);
    while (tp->nlive > 0)
        pthread_cond_wait(&tp->exit_cv, &tp->mu);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t abs = ts.tv_sec * 1000000000ll + ts.tv_nsec +
                  (int64_t)(tp->zombie_wait * 1e9);
    ts.tv_sec = abs / 1000000000ll;
    ts.tv_nsec = abs % 1000000000ll;
    while (tp->nzombies > 0 &&
           pthread_cond_timedwait(&tp->exit_cv, &tp->mu, &ts) != ETIMEDOUT)
        ;
    size_t left = tp->nzombies;
    pthread_mutex_unlock(&tp->mu);
    if (tp->watchdog_on)
        pthread_join(tp->watchdog, NULL);
    tp->watchdog_on = false;
    if (left)
        return cparsl_error_set(
            err, CPARSL_EWALLTIME,
            "executor '%s': %zu C-app thread%s still running %g s after "
            "finalize, past their walltime (%llu timed out in all)",
            ex->label, left, left == 1 ? " is" : "s are", tp->zombie_wait,
            (unsigned long long)atomic_load(&tp->timedout));
    return 0;
}

static void tp_destroy(cparsl_executor_t *ex)
{
    struct tp *tp = cparsl_container_of(ex, struct tp, base);
    pthread_mutex_lock(&tp->mu);
    bool zombies = tp->nzombies > 0;
    pthread_mutex_unlock(&tp->mu);
    if (zombies)
        return; /* they still use tp: leave it (reported at shutdown) */
    free(tp->q);
    pthread_mutex_destroy(&tp->mu);
    pthread_cond_destroy(&tp->cv);
    pthread_cond_destroy(&tp->wd_cv);
    pthread_cond_destroy(&tp->exit_cv);
    free(tp);
}

const struct cparsl_executor_ops cparsl_threadpool_ops = {
    .family = "threadpool",
    .flags = 0,
    .probe = tp_probe,
    .configure = tp_configure,
    .start = tp_start,
    .submit = tp_submit,
    .outstanding = tp_outstanding,
    .capacity = tp_capacity,
    .scale_out = cparsl_executor_enosys_scale,
    .scale_in = cparsl_executor_enosys_scale,
    .drain = tp_drain,
    .shutdown = tp_shutdown,
    .destroy = tp_destroy,
    .serve = cparsl_executor_enosys_serve,
};
