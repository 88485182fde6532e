/*
 * testexec.c - the test executor: runs tries on one thread of its own and
 * fails them on demand, so the DFK's retry, failure and dependency paths
 * can be tested without a real executor misbehaving.
 *
 * Keys: fail_apps (comma-separated app names whose every try fails),
 * fail_tries (each task's first N tries fail), fail_every (every Nth try
 * it receives fails), refuse (submit itself fails), delay (seconds before
 * each try runs).  An injected failure is -CPARSL_EEXECUTOR with a text
 * that says it was injected.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cparsl/plugin.h>

struct testexec {
    cparsl_executor_t base;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    cparsl_exec_t **q;
    size_t qlen, qcap, qhead;
    bool stop, refuse;
    pthread_t thread;
    bool started;
    char *fail_apps;
    int64_t fail_tries, fail_every;
    double delay;
    uint64_t received;
    _Atomic size_t outstanding;
};

static bool in_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        while (*p == ',' || *p == ' ')
            p++;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ')
            e++;
        if ((size_t)(e - p) == n && strncmp(p, name, n) == 0)
            return true;
        p = e;
    }
    return false;
}

static void *te_main(void *arg)
{
    struct testexec *te = arg;
    pthread_mutex_lock(&te->mu);
    for (;;) {
        while (te->qlen == 0 && !te->stop)
            pthread_cond_wait(&te->cv, &te->mu);
        if (te->qlen == 0)
            break;
        cparsl_exec_t *e = te->q[te->qhead];
        te->qhead = (te->qhead + 1) % te->qcap;
        te->qlen--;
        uint64_t nth = ++te->received;
        pthread_mutex_unlock(&te->mu);

        if (te->delay > 0) {
            struct timespec ts = {
                .tv_sec = (time_t)te->delay,
                .tv_nsec =
                    (long)((te->delay - (double)(time_t)te->delay) * 1e9)};
            nanosleep(&ts, NULL);
        }
        const char *app = e->args.app->name;
        if (in_list(te->fail_apps, app))
            cparsl_exec_fail(e, CPARSL_EEXECUTOR,
                             "testexec: injected failure (app '%s' is in "
                             "fail_apps)",
                             app);
        else if (e->args.try_no < te->fail_tries)
            cparsl_exec_fail(e, CPARSL_EEXECUTOR,
                             "testexec: injected failure (try %d < "
                             "fail_tries %lld)",
                             e->args.try_no, (long long)te->fail_tries);
        else if (te->fail_every > 0 && nth % (uint64_t)te->fail_every == 0)
            cparsl_exec_fail(e, CPARSL_EEXECUTOR,
                             "testexec: injected failure (try number %llu "
                             "of every %lld)",
                             (unsigned long long)nth,
                             (long long)te->fail_every);
        else
            cparsl_exec_run(e);
        atomic_fetch_sub(&te->outstanding, 1);
        cparsl_exec_complete(e);
        pthread_mutex_lock(&te->mu);
    }
    pthread_mutex_unlock(&te->mu);
    return NULL;
}

static int te_probe(const cparsl_launch_t *launch)
{
    (void)launch;
    return 0; /* never the default */
}

static const char *const te_keys[] = {
    "type",       "label",  "fail_apps", "fail_tries",
    "fail_every", "refuse", "delay",     NULL,
};

static int te_configure(const cparsl_cnode_t *node,
                        const cparsl_launch_t *launch, cparsl_executor_t **out,
                        cparsl_error_t *err)
{
    (void)launch;
    const char *apps;
    int64_t tries, every;
    bool refuse;
    double delay;
    int rc;
    if ((rc = cparsl_cnode_check_keys(node, te_keys, err)) < 0 ||
        (rc = cparsl_cnode_string(node, "fail_apps", "", &apps, err)) < 0 ||
        (rc = cparsl_cnode_int(node, "fail_tries", 0, 0, 1000000, &tries,
                               err)) < 0 ||
        (rc = cparsl_cnode_int(node, "fail_every", 0, 0, 1000000000, &every,
                               err)) < 0 ||
        (rc = cparsl_cnode_bool(node, "refuse", false, &refuse, err)) < 0 ||
        (rc = cparsl_cnode_double(node, "delay", 0, 0, 3600, &delay, err)) < 0)
        return rc;
    struct testexec *te = calloc(1, sizeof *te);
    if (!te || !(te->fail_apps = strdup(apps))) {
        free(te);
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    }
    te->fail_tries = tries;
    te->fail_every = every;
    te->refuse = refuse;
    te->delay = delay;
    pthread_mutex_init(&te->mu, NULL);
    pthread_cond_init(&te->cv, NULL);
    *out = &te->base;
    return 0;
}

static int te_start(cparsl_executor_t *ex, cparsl_error_t *err)
{
    struct testexec *te = cparsl_container_of(ex, struct testexec, base);
    int rc = pthread_create(&te->thread, NULL, te_main, te);
    if (rc)
        return cparsl_error_set(err, -rc, "testexec: no thread");
    te->started = true;
    return 0;
}

static int te_submit(cparsl_executor_t *ex, cparsl_exec_t *const *batch,
                     size_t n)
{
    struct testexec *te = cparsl_container_of(ex, struct testexec, base);
    if (te->refuse)
        return -CPARSL_EEXECUTOR;
    pthread_mutex_lock(&te->mu);
    if (te->qlen + n > te->qcap) {
        size_t cap = te->qcap ? te->qcap : 64;
        while (cap < te->qlen + n)
            cap *= 2;
        cparsl_exec_t **q = malloc(cap * sizeof *q);
        if (!q) {
            pthread_mutex_unlock(&te->mu);
            return -ENOMEM;
        }
        for (size_t i = 0; i < te->qlen; i++)
            q[i] = te->q[(te->qhead + i) % te->qcap];
        free(te->q);
        te->q = q;
        te->qcap = cap;
        te->qhead = 0;
    }
    for (size_t i = 0; i < n; i++)
        te->q[(te->qhead + te->qlen + i) % te->qcap] = batch[i];
    te->qlen += n;
    atomic_fetch_add(&te->outstanding, n);
    pthread_cond_signal(&te->cv);
    pthread_mutex_unlock(&te->mu);
    return 0;
}

static size_t te_outstanding(cparsl_executor_t *ex)
{
    struct testexec *te = cparsl_container_of(ex, struct testexec, base);
    return atomic_load(&te->outstanding);
}

static size_t te_capacity(cparsl_executor_t *ex)
{
    (void)ex;
    return 1;
}

static int te_shutdown(cparsl_executor_t *ex, cparsl_error_t *err)
{
    (void)err;
    struct testexec *te = cparsl_container_of(ex, struct testexec, base);
    pthread_mutex_lock(&te->mu);
    te->stop = true;
    pthread_cond_signal(&te->cv);
    pthread_mutex_unlock(&te->mu);
    if (te->started)
        pthread_join(te->thread, NULL);
    te->started = false;
    return 0;
}

static void te_destroy(cparsl_executor_t *ex)
{
    struct testexec *te = cparsl_container_of(ex, struct testexec, base);
    free(te->q);
    free(te->fail_apps);
    pthread_mutex_destroy(&te->mu);
    pthread_cond_destroy(&te->cv);
    free(te);
}

const struct cparsl_executor_ops cparsl_testexec_ops = {
    .family = "testexec",
    .flags = 0,
    .probe = te_probe,
    .configure = te_configure,
    .start = te_start,
    .submit = te_submit,
    .outstanding = te_outstanding,
    .capacity = te_capacity,
    .scale_out = cparsl_executor_enosys_scale,
    .scale_in = cparsl_executor_enosys_scale,
    .drain = cparsl_executor_enosys_drain,
    .shutdown = te_shutdown,
    .destroy = te_destroy,
    .serve = cparsl_executor_enosys_serve,
};
