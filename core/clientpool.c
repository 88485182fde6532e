/*
 * clientpool.c - client-side threads for join bodies and 'then' callbacks.
 *
 * User code runs here, never on the DFK's thread and never on a worker.
 * Such code may wait on futures (a join body waiting on its children); a
 * waiting thread tells the pool (cparsl__clientpool_block_begin), and the
 * pool starts another thread if work is queued and too few threads are
 * left running, so a tree of waiting join bodies cannot starve the bodies
 * it waits for.  Threads beyond the base count leave after a short idle
 * time.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define POOL_STACK       (1u << 20)
#define POOL_IDLE_EXIT_S 2

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;    /* idle threads wait for work */
    pthread_cond_t quiet; /* quiesce / stop wait here */
    cparsl__work_t *head, *tail;
    size_t nthreads, nidle, nblocked, nrunning;
    size_t target; /* threads that may run at once unblocked */
    size_t max;
    bool stop, started;
} pool = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .cv = PTHREAD_COND_INITIALIZER,
    .quiet = PTHREAD_COND_INITIALIZER,
};

static _Thread_local bool in_pool;

static void *pool_main(void *arg);

/* Called with pool.mu held. */
static void maybe_spawn(void)
{
    if (!pool.head || pool.nidle > 0 || pool.stop)
        return;
    if (pool.nthreads - pool.nblocked >= pool.target ||
        pool.nthreads >= pool.max)
        return;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, POOL_STACK);
    pthread_t th;
    if (pthread_create(&th, &attr, pool_main, NULL) == 0)
        pool.nthreads++;
    else
        CPARSL_LOG_SPARSE(CPARSL_LOG_WARN, "clientpool",
                          "cannot start a client thread (%zu running): %s",
                          pool.nthreads, strerror(errno));
    pthread_attr_destroy(&attr);
}

static void *pool_main(void *arg)
{
    (void)arg;
    in_pool = true;
    pthread_mutex_lock(&pool.mu);
    for (;;) {
        while (!pool.head && !pool.stop) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += POOL_IDLE_EXIT_S;
            pool.nidle++;
            int rc = pthread_cond_timedwait(&pool.cv, &pool.mu, &ts);
            pool.nidle--;
            if (rc == ETIMEDOUT && !pool.head && pool.nthreads > 1)
                goto leave;
        }
        if (!pool.head)
            break; /* stopping */
        cparsl__work_t *w = pool.head;
        pool.head = w->next;
        if (!pool.head)
            pool.tail = NULL;
        pool.nrunning++;
        maybe_spawn(); /* more queued work than idle threads */
        pthread_mutex_unlock(&pool.mu);
        w->fn(w);
        pthread_mutex_lock(&pool.mu);
        pool.nrunning--;
        if (!pool.head && pool.nrunning == 0)
            pthread_cond_broadcast(&pool.quiet);
    }
leave:
    pool.nthreads--;
    pthread_cond_broadcast(&pool.quiet);
    pthread_mutex_unlock(&pool.mu);
    return NULL;
}

int cparsl__clientpool_start(size_t max_threads, cparsl_error_t *err)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    pthread_mutex_lock(&pool.mu);
    pool.stop = false;
    pool.started = true;
    pool.target = ncpu > 1 ? (size_t)ncpu : 2;
    pool.max = max_threads ? max_threads : 4096;
    if (pool.target > pool.max)
        pool.target = pool.max;
    pthread_mutex_unlock(&pool.mu);
    (void)err;
    return 0;
}

void cparsl__clientpool_post_list(cparsl__work_t *head)
{
    cparsl__work_t *last = head;
    while (last->next)
        last = last->next;
    pthread_mutex_lock(&pool.mu);
    if (pool.tail)
        pool.tail->next = head;
    else
        pool.head = head;
    pool.tail = last;
    if (pool.nidle)
        pthread_cond_signal(&pool.cv);
    maybe_spawn();
    pthread_mutex_unlock(&pool.mu);
}

void cparsl__clientpool_post(cparsl__work_t *w)
{
    w->next = NULL;
    cparsl__clientpool_post_list(w);
}

bool cparsl__clientpool_block_begin(void)
{
    if (!in_pool)
        return false;
    pthread_mutex_lock(&pool.mu);
    pool.nblocked++;
    maybe_spawn();
    pthread_mutex_unlock(&pool.mu);
    return true;
}

void cparsl__clientpool_block_end(void)
{
    pthread_mutex_lock(&pool.mu);
    pool.nblocked--;
    pthread_mutex_unlock(&pool.mu);
}

bool cparsl__clientpool_busy(void)
{
    pthread_mutex_lock(&pool.mu);
    bool busy = pool.head || pool.nrunning;
    pthread_mutex_unlock(&pool.mu);
    return busy;
}

void cparsl__clientpool_quiesce(void)
{
    pthread_mutex_lock(&pool.mu);
    while (pool.head || pool.nrunning)
        pthread_cond_wait(&pool.quiet, &pool.mu);
    pthread_mutex_unlock(&pool.mu);
}

void cparsl__clientpool_stop(void)
{
    pthread_mutex_lock(&pool.mu);
    pool.stop = true;
    pthread_cond_broadcast(&pool.cv);
    while (pool.nthreads > 0)
        pthread_cond_wait(&pool.quiet, &pool.mu);
    pool.started = false;
    pthread_mutex_unlock(&pool.mu);
}
