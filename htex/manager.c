/*
 * manager.c - an htex manager (see manager.h).
 *
 * The loop thread owns the transport and the tasks it holds; slot threads
 * share only a ready queue and a done list with it, under one mutex.  A
 * slot that finishes rings the loop's bell (bell.h), so results go out at
 * once; messages from the network are seen by polling with growing
 * backoff (MPI has no descriptor to wait on), unless the upstream rings
 * the bell too.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "child.h"
#include "log.h"
#include "manager.h"
#include "wire.h"

#define MGR_POLL_NS      60000
#define MGR_SLEEP_MIN_NS 10000
#define MGR_SLEEP_MAX_NS 1000000
/* After a second with nothing to do, sleep longer: an idle pilot of many
 * ranks on few cores then costs next to no CPU, and the first message
 * after a long pause waits at most this long at each hop. */
#define MGR_IDLE_LONG_NS      1000000000
#define MGR_SLEEP_IDLE_MAX_NS 20000000
/* ...or this long when every input rings the bell (upstream_rings). */
#define MGR_SLEEP_RUNG_MAX_NS 1000000000
#define MGR_RECV_PER_TURN     64
/* Results from downstream are merged into one message upstream for at
 * most this long (or max_batch records, or until the loop would idle):
 * a sub-interchange then sends rank 0 few large messages instead of one
 * per manager. */
#define MGR_FWD_HOLD_NS 100000
#define SLOT_POLL_NS    50000
/* Tasks queued per local slot, so a slot that finishes finds its next. */
#define LOCAL_DEPTH 4
/* An isolated slot takes up to this many tasks without a walltime at once
 * and runs them in one round trip to its child (and this many are queued
 * per slot)... */
#define SLOT_BATCH 16
/* ...while its recent tasks took less than this each: behind a long task,
 * the rest of a batch would wait while another slot may be free. */
#define SLOT_BATCH_SHORT_NS 1000000

struct mtask {
    htex_task_t t;
    struct mtask *next;
    bool discard; /* already failed at its walltime: drop the late result */
};

struct mgr;

struct mslot {
    struct mgr *m;
    int idx;
    pthread_t th;
    bool started;
    htex_child_t *child;
    size_t batch; /* how many tasks the next batch may take */
    /* in-rank walltime, under m->mu: the task running and its deadline */
    struct mtask *cur;
    int64_t deadline;
    bool abandoned;
    char *cpus;
    char *env[8];
    size_t nenv;
};

struct mdown {
    int ep;
    uint64_t credit;
    size_t held;
    uint32_t slots; /* as it registered (a sub-interchange's vary) */
    bool registered, bye;
};

struct mgr {
    const htex_mgr_opts_t *o;
    cparsl_transport_t *t;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct mtask *ready_head, *ready_tail;
    size_t nready;
    size_t busy;             /* slots running a task */
    _Atomic bool ready_hint; /* nready > 0, read without the lock */
    int idle;
    bool stop;
    struct mtask *done_head;
    size_t ndone;
    int64_t last_report;
    _Atomic bool has_done;
    htex_bell_t *bell, own_bell;

    /* loop thread only */
    struct mtask *pend_head, *pend_tail;
    size_t npend;
    struct mtask *pool;
    size_t held, asked, capacity;
    struct mdown *down;
    size_t down_bye, down_registered;
    struct mslot *slots;
    htex_buf_t out;
    htex_buf_t fwd; /* downstream results being merged */
    uint32_t fwd_n;
    int64_t fwd_since;
    bool stopping;
    bool draining;         /* DRAIN or max_idletime: no new tasks, then BYE */
    int64_t last_upstream; /* when the upstream was last heard from */
    uint64_t bad_messages;
    uint64_t msgs_in, msgs_out, bytes_in, bytes_out;
};

/* ---- task objects ----------------------------------------------------------
 */

static struct mtask *task_get(struct mgr *m)
{
    struct mtask *mt = m->pool;
    if (mt) {
        m->pool = mt->next;
        return mt;
    }
    mt = calloc(1, sizeof *mt);
    if (mt)
        htex_task_init(&mt->t);
    return mt;
}

static void task_put(struct mgr *m, struct mtask *mt)
{
    mt->discard = false;
    htex_task_clear(&mt->t);
    mt->next = m->pool;
    m->pool = mt;
}

static void pend_push(struct mgr *m, struct mtask *mt)
{
    mt->next = NULL;
    if (m->pend_tail)
        m->pend_tail->next = mt;
    else
        m->pend_head = mt;
    m->pend_tail = mt;
    m->npend++;
}

static struct mtask *pend_pop(struct mgr *m)
{
    struct mtask *mt = m->pend_head;
    m->pend_head = mt->next;
    if (!m->pend_head)
        m->pend_tail = NULL;
    m->npend--;
    return mt;
}

/* ---- slots
 * ------------------------------------------------------------------- */

/* A live child for s, or false with e failed when none can start. */
static bool slot_child(struct mslot *s, cparsl_exec_t *e)
{
    struct mgr *m = s->m;
    if (s->child && !htex_child_healthy(s->child)) {
        htex_child_destroy(s->child); /* it died between tasks */
        s->child = NULL;
    }
    if (!s->child) {
        cparsl_error_t err;
        htex_child_opts_t co = {
            .env = (const char *const *)s->env,
            .nenv = s->nenv,
            .cpus = s->cpus,
        };
        if (htex_child_spawn(&co, &s->child, &err) < 0) {
            s->child = NULL;
            cparsl_exec_fail(e, CPARSL_EWORKER,
                             "rank %d slot %d: cannot start a worker "
                             "process: %s",
                             m->o->rank, s->idx, err.text);
            return false;
        }
    }
    return true;
}

static void slot_run_task(struct mslot *s, struct mtask *mt)
{
    struct mgr *m = s->m;
    cparsl_exec_t *e = &mt->t.exec;
    if (!e->args.app) {
        cparsl_exec_fail(e, CPARSL_ENOAPP,
                         "no app '%s' registered on rank %d (does every "
                         "rank run the same build?)",
                         mt->t.app_name ? mt->t.app_name : "?", m->o->rank);
        return;
    }
    if (!m->o->isolation) {
        struct timespec a, b;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
        cparsl_exec_run(e);
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
        e->cpu_s = (double)(b.tv_sec - a.tv_sec) +
                   (double)(b.tv_nsec - a.tv_nsec) / 1e9;
        e->maxrss_kib = -1; /* a thread has no peak of its own */
        return;
    }
    if (!slot_child(s, e))
        return;
    htex_child_run(s->child, e);
    if (!htex_child_alive(s->child)) {
        htex_child_destroy(s->child);
        s->child = NULL; /* a new one starts with the next task */
    }
}

static bool kind_enforces_walltime(const struct mtask *mt)
{
    const struct cparsl_app_kind *k = cparsl_app_kind_of(mt->t.exec.args.app);
    return k && (k->flags & CPARSL_APPKIND_WALLTIME);
}

/* Whether a task may share a round trip to the child with others. */
static bool batchable(const struct mtask *mt)
{
    return mt->t.exec.args.app && !(mt->t.exec.walltime > 0) &&
           !kind_enforces_walltime(mt);
}

/* With m->mu held and a task ready: take it, and in an isolated slot as
 * many batchable ones after it as s->batch and a fair share of the queue
 * allow.  Returns how many are in b. */
static size_t slot_take(struct mslot *s, struct mtask **b)
{
    struct mgr *m = s->m;
    size_t want = 1;
    if (m->o->isolation && batchable(m->ready_head)) {
        size_t nslots = (size_t)m->o->nslots;
        size_t share = (m->nready + nslots - 1) / nslots;
        want = s->batch < share ? s->batch : share;
    }
    size_t n = 0;
    do {
        b[n++] = m->ready_head;
        m->ready_head = m->ready_head->next;
        m->nready--;
    } while (n < want && m->ready_head && batchable(m->ready_head));
    if (!m->ready_head)
        m->ready_tail = NULL;
    return n;
}

/* Run b[0..n) in s's child in one round trip.  Returns how many finished;
 * the rest never started. */
static size_t slot_run_batch(struct mslot *s, struct mtask **b, size_t n)
{
    cparsl_exec_t *v[SLOT_BATCH];
    size_t done = 0;
    for (size_t i = 0; i < n; i++)
        v[i] = &b[i]->t.exec;
    if (!slot_child(s, v[0]))
        return 1;
    if (htex_child_run_batch(s->child, v, n, &done) < 0 || done == 0) {
        done = 1; /* cannot happen: slot_take checked them */
        cparsl_exec_fail(v[0], CPARSL_EWORKER,
                         "rank %d slot %d: the worker refused a batch",
                         s->m->o->rank, s->idx);
    }
    if (!htex_child_alive(s->child)) {
        htex_child_destroy(s->child);
        s->child = NULL; /* a new one starts with the next task */
    }
    return done;
}

/* Batch while tasks are short (see SLOT_BATCH_SHORT_NS). */
static void slot_adapt(struct mslot *s, struct mtask **b, size_t done)
{
    int64_t t = 0;
    for (size_t i = 0; i < done; i++)
        t += b[i]->t.exec.t_end - b[i]->t.exec.t_start;
    if (t < (int64_t)done * SLOT_BATCH_SHORT_NS)
        s->batch = s->batch * 2 < SLOT_BATCH ? s->batch * 2 : SLOT_BATCH;
    else
        s->batch = 1;
}

/* With m->mu held: tasks of a batch that never started go back to the
 * front of the queue, in order. */
static void slot_requeue(struct mgr *m, struct mtask **b, size_t n)
{
    if (!n)
        return;
    for (size_t i = n; i-- > 0;) {
        b[i]->next = m->ready_head;
        m->ready_head = b[i];
        if (!m->ready_tail)
            m->ready_tail = b[i];
    }
    m->nready += n;
    atomic_store_explicit(&m->ready_hint, true, memory_order_release);
    if (m->idle)
        pthread_cond_signal(&m->cv);
}

static void *slot_main(void *arg)
{
    struct mslot *s = arg;
    struct mgr *m = s->m;
    cparsl_error_t err;
    if (s->cpus && !m->o->isolation && htex_pin_bind_thread(s->cpus, &err) < 0)
        CPARSL_LOG(CPARSL_LOG_WARN, "manager", "rank %d slot %d: %s",
                   m->o->rank, s->idx, err.text);
    pthread_mutex_lock(&m->mu);
    for (;;) {
        if (!m->ready_head && !m->stop) {
            /* Poll a short while before sleeping: under load the next task
             * is microseconds away, and a condition-variable wake-up costs
             * more than the task. */
            pthread_mutex_unlock(&m->mu);
            int64_t t0 = cparsl_mono_ns();
            while (
                !atomic_load_explicit(&m->ready_hint, memory_order_acquire) &&
                cparsl_mono_ns() - t0 < SLOT_POLL_NS)
                sched_yield();
            pthread_mutex_lock(&m->mu);
        }
        while (!m->ready_head && !m->stop) {
            m->idle++;
            pthread_cond_wait(&m->cv, &m->mu);
            m->idle--;
        }
        if (!m->ready_head)
            break;
        struct mtask *b[SLOT_BATCH];
        size_t nb = slot_take(s, b), done = 1;
        struct mtask *mt = b[0];
        m->busy++;
        atomic_store_explicit(&m->ready_hint, m->nready > 0,
                              memory_order_relaxed);
        pthread_mutex_unlock(&m->mu);

        bool watch = !m->o->isolation && mt->t.exec.walltime > 0 &&
                     mt->t.exec.args.app && !kind_enforces_walltime(mt);
        if (watch) {
            pthread_mutex_lock(&m->mu);
            s->cur = mt;
            s->deadline =
                cparsl_mono_ns() + (int64_t)(mt->t.exec.walltime * 1e9);
            s->abandoned = false;
            pthread_mutex_unlock(&m->mu);
        }
        if (nb > 1)
            done = slot_run_batch(s, b, nb);
        else
            slot_run_task(s, mt);
        if (m->o->isolation)
            slot_adapt(s, b, done);
        for (size_t i = 0; i < done; i++)
            b[i]->t.exec.slot = s->idx;

        pthread_mutex_lock(&m->mu);
        if (watch) {
            mt->discard = s->abandoned;
            s->cur = NULL;
            s->deadline = 0;
        }
        for (size_t i = 0; i < done; i++) {
            b[i]->next = m->done_head;
            m->done_head = b[i];
        }
        m->ndone += done;
        slot_requeue(m, b + done, nb - done);
        m->busy--;
        atomic_store_explicit(&m->has_done, true, memory_order_release);
        htex_bell_ring(m->bell);
    }
    pthread_mutex_unlock(&m->mu);
    if (s->child)
        htex_child_destroy(s->child);
    s->child = NULL;
    return NULL;
}

static int slot_env(struct mslot *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int slot_env(struct mslot *s, const char *fmt, ...)
{
    if (s->nenv >= sizeof s->env / sizeof s->env[0])
        return -ENOSPC;
    va_list ap;
    va_start(ap, fmt);
    int rc = vasprintf(&s->env[s->nenv], fmt, ap);
    va_end(ap);
    if (rc < 0)
        return -ENOMEM;
    s->nenv++;
    return 0;
}

static int slots_start(struct mgr *m, cparsl_error_t *err)
{
    const htex_mgr_opts_t *o = m->o;
    m->slots =
        calloc((size_t)(o->nslots > 0 ? o->nslots : 1), sizeof *m->slots);
    if (!m->slots)
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    for (int i = 0; i < o->nslots; i++) {
        struct mslot *s = &m->slots[i];
        s->m = m;
        s->idx = i;
        s->batch = 1;
        int node_slot = o->slot_base + i;
        int rc;
        if (o->pin && (rc = htex_pin_cpus(o->pin, node_slot, o->node_slots,
                                          &s->cpus, err)) < 0)
            return rc;
        slot_env(s, "CPARSL_WORKER_RANK=%d", node_slot);
        slot_env(s, "CPARSL_WORKER_COUNT=%d", o->node_slots);
        slot_env(s, "CPARSL_MANAGER_ID=%d", o->manager_id);
        slot_env(s, "CPARSL_BLOCK_ID=%s", o->block_id ? o->block_id : "0");
        const char *acc = o->pin ? htex_pin_accel(o->pin, node_slot) : NULL;
        if (acc) {
            slot_env(s, "CUDA_VISIBLE_DEVICES=%s", acc);
            slot_env(s, "ROCR_VISIBLE_DEVICES=%s", acc);
            slot_env(s, "ZE_AFFINITY_MASK=%s", acc);
        }
        if (o->isolation) {
            /* Start the child now: the first task should not pay for it. */
            htex_child_opts_t co = {
                .env = (const char *const *)s->env,
                .nenv = s->nenv,
                .cpus = s->cpus,
            };
            if ((rc = htex_child_spawn(&co, &s->child, err)) < 0) {
                cparsl_error_prefix(err, "rank %d slot %d", o->rank, i);
                return rc;
            }
        }
        rc = pthread_create(&s->th, NULL, slot_main, s);
        if (rc)
            return cparsl_error_set(err, -rc, "rank %d: no slot thread: %s",
                                    o->rank, strerror(rc));
        s->started = true;
    }
    return 0;
}

static void slots_stop(struct mgr *m)
{
    pthread_mutex_lock(&m->mu);
    m->stop = true;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
    for (int i = 0; m->slots && i < m->o->nslots; i++) {
        struct mslot *s = &m->slots[i];
        if (s->started)
            pthread_join(s->th, NULL);
        else if (s->child)
            htex_child_destroy(s->child);
        free(s->cpus);
        for (size_t k = 0; k < s->nenv; k++)
            free(s->env[k]);
    }
    free(m->slots);
    m->slots = NULL;
}

/* ---- messages -------------------------------------------------------------
 */

static size_t want_now(struct mgr *m)
{
    size_t goal = m->capacity + (size_t)m->o->prefetch;
    size_t have = m->held + m->asked;
    return m->stopping || m->draining || have >= goal ? 0 : goal - have;
}

static int send_copy(struct mgr *m, int ep, const void *p, size_t len)
{
    m->msgs_out++;
    m->bytes_out += len;
    void *buf = m->t->ops->msg_alloc(m->t, len);
    if (!buf)
        return -ENOMEM;
    memcpy(buf, p, len);
    return m->t->ops->send(m->t, ep, buf, len);
}

static int send_simple(struct mgr *m, int ep, int type, uint32_t want)
{
    htex_msg_begin(&m->out, type, want);
    long len = htex_msg_end(&m->out);
    return len < 0 ? (int)len : send_copy(m, ep, m->out.p, (size_t)len);
}

/* After a message to downstream rank i: wake it if it sleeps. */
static void ring_down(struct mgr *m, size_t i)
{
    if (m->o->down_bells && m->o->down_bells[i])
        htex_bell_ring(m->o->down_bells[i]);
}

/* Upstream gets 'want' with every message; remember what was asked. */
static uint32_t take_want(struct mgr *m)
{
    size_t w = want_now(m);
    m->asked += w;
    return (uint32_t)w;
}

static void bad(struct mgr *m, int peer, const char *why)
{
    m->bad_messages++;
    CPARSL_LOG_SPARSE(CPARSL_LOG_WARN, "manager",
                      "rank %d dropped a message from endpoint %d: %s",
                      m->o->rank, peer, why);
}

static struct mdown *find_down(struct mgr *m, int ep)
{
    for (size_t i = 0; i < m->o->ndownstream; i++)
        if (m->down[i].ep == ep)
            return &m->down[i];
    return NULL;
}

/* Shutting down: tasks held here but not started (prefetched, or queued
 * for a slot) fail now instead of running; started ones finish. */
static void fail_unstarted(struct mgr *m)
{
    pthread_mutex_lock(&m->mu);
    struct mtask *ready = m->ready_head;
    m->ready_head = m->ready_tail = NULL;
    m->nready = 0;
    atomic_store(&m->ready_hint, false);
    pthread_mutex_unlock(&m->mu);
    while (ready) {
        struct mtask *next = ready->next;
        pend_push(m, ready);
        ready = next;
    }
    while (m->npend) {
        htex_msg_begin(&m->out, HTEX_MSG_RESULTS, 0);
        uint32_t n = 0;
        while (m->npend && n < m->o->max_batch) {
            struct mtask *mt = pend_pop(m);
            cparsl_exec_fail(&mt->t.exec, CPARSL_ESHUTDOWN,
                             "the pilot is shutting down; this task had not "
                             "started (rank %d)",
                             m->o->rank);
            cparsl_value_clear(&mt->t.exec.result);
            htex_msg_add_result(&m->out, mt->t.ticket, mt->t.exec.args.try_no,
                                &mt->t.exec, m->o->rank, -1);
            task_put(m, mt);
            n++;
        }
        m->held = m->held >= n ? m->held - n : 0;
        long len = htex_msg_end(&m->out);
        if (len > 0)
            send_copy(m, m->o->upstream, m->out.p, (size_t)len);
    }
}

static void on_upstream(struct mgr *m, htex_reader_t *r)
{
    cparsl_error_t err;
    switch (r->hdr.type) {
    case HTEX_MSG_TASKS:
        for (uint32_t k = 0; k < r->hdr.count; k++) {
            struct mtask *mt = task_get(m);
            if (!mt) {
                bad(m, m->o->upstream, "out of memory for tasks");
                return;
            }
            if (htex_msg_next_task(r, &mt->t, &err) < 0) {
                task_put(m, mt);
                bad(m, m->o->upstream, err.text);
                return;
            }
            pend_push(m, mt);
            m->held++;
            if (m->asked)
                m->asked--;
        }
        if (m->stopping)
            fail_unstarted(m); /* sent before upstream knew */
        break;
    case HTEX_MSG_SHUTDOWN:
        if (!m->stopping) {
            m->stopping = true;
            for (size_t i = 0; i < m->o->ndownstream; i++) {
                send_simple(m, m->down[i].ep, HTEX_MSG_SHUTDOWN, 0);
                ring_down(m, i);
            }
            fail_unstarted(m);
        }
        break;
    case HTEX_MSG_HEARTBEAT:
        break;
    case HTEX_MSG_DRAIN:
        if (!m->draining)
            CPARSL_LOG(CPARSL_LOG_INFO, "manager",
                       "rank %d: draining: no new tasks; leaving when the "
                       "%zu held are done",
                       m->o->rank, m->held);
        m->draining = true;
        break;
    default:
        bad(m, m->o->upstream, htex_msg_name(r->hdr.type));
    }
}

static bool flush_fwd(struct mgr *m, bool now);

static void on_downstream(struct mgr *m, struct mdown *d, htex_reader_t *r)
{
    switch (r->hdr.type) {
    case HTEX_MSG_RESULTS: {
        /* Merged into one message upstream (flush_fwd): the records carry
         * their tickets, and our own want rides along. */
        uint32_t n = r->hdr.count;
        d->held = d->held >= n ? d->held - n : 0;
        m->held = m->held >= n ? m->held - n : 0;
        d->credit += r->hdr.want;
        if (!n)
            return;
        if (m->fwd_n && m->fwd_n + n > m->o->max_batch)
            flush_fwd(m, true); /* keep messages within max_batch */
        if (!m->fwd_n) {
            htex_msg_begin(&m->fwd, HTEX_MSG_RESULTS, 0);
            m->fwd_since = cparsl_mono_ns();
        }
        if (htex_msg_add_records(&m->fwd, r) < 0) {
            bad(m, d->ep, "cannot merge its results");
            m->fwd.error = 0; /* the records before stay good */
            return;
        }
        m->fwd_n += n;
        return;
    }
    case HTEX_MSG_REGISTER: {
        htex_register_t reg;
        cparsl_error_t err;
        if (htex_msg_next_register(r, &reg, &err) < 0) {
            bad(m, d->ep, err.text);
            return;
        }
        if (strcmp(reg.build, CPARSL_VERSION_STRING) != 0) {
            bad(m, d->ep, "a rank of another cparsl version");
            return;
        }
        if (!d->registered) {
            d->registered = true;
            d->slots = reg.slots;
            m->down_registered++;
        }
        d->credit += r->hdr.want;
        return;
    }
    case HTEX_MSG_HEARTBEAT:
        d->credit += r->hdr.want;
        return;
    case HTEX_MSG_BYE:
        if (!d->bye) {
            d->bye = true;
            m->down_bye++;
        }
        return;
    default:
        bad(m, d->ep, htex_msg_name(r->hdr.type));
    }
}

static bool receive(struct mgr *m)
{
    bool did = false;
    for (int k = 0; k < MGR_RECV_PER_TURN; k++) {
        int peer;
        void *buf;
        size_t len;
        cparsl_error_t err;
        int rc = m->t->ops->try_recv(m->t, &peer, &buf, &len, &err);
        if (rc < 0) {
            CPARSL_LOG_SPARSE(CPARSL_LOG_ERROR, "manager", "%s", err.text);
            break;
        }
        if (rc == 0)
            break;
        did = true;
        m->msgs_in++;
        m->bytes_in += len;
        htex_reader_t r;
        if (htex_msg_open(&r, buf, len, &err) < 0) {
            bad(m, peer, err.text);
        } else if (peer == m->o->upstream) {
            m->last_upstream = cparsl_mono_ns();
            on_upstream(m, &r);
        } else {
            struct mdown *d = find_down(m, peer);
            if (d)
                on_downstream(m, d, &r);
            else
                bad(m, peer, "not a peer of this manager");
        }
        m->t->ops->msg_free(m->t, buf);
    }
    return did;
}

static bool assign_downstream(struct mgr *m, bool free_only);

/* Downstream ranks get what they asked for; local slots then get a
 * queue a few tasks deep each, so a slot that finishes takes its next task
 * without waiting for this loop to turn. */
/* Queue pending tasks for local slots until 'limit' are queued. */
static bool assign_local(struct mgr *m, size_t limit)
{
    if (!m->npend || m->o->nslots <= 0)
        return false;
    pthread_mutex_lock(&m->mu);
    size_t n = 0;
    while (m->npend && m->nready < limit) {
        struct mtask *mt = pend_pop(m);
        mt->next = NULL;
        if (m->ready_tail)
            m->ready_tail->next = mt;
        else
            m->ready_head = mt;
        m->ready_tail = mt;
        m->nready++;
        n++;
    }
    if (n)
        atomic_store_explicit(&m->ready_hint, true, memory_order_release);
    if (n == 1)
        pthread_cond_signal(&m->cv);
    else if (n > 1)
        pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
    return n > 0;
}

static bool assign(struct mgr *m)
{
    bool did = false;
    /* A free slot here first: it saves the hop to another rank, which is
     * what a lone task's round trip feels. */
    pthread_mutex_lock(&m->mu);
    size_t nbusy = m->busy;
    pthread_mutex_unlock(&m->mu);
    size_t free_here =
        (size_t)m->o->nslots > nbusy ? (size_t)m->o->nslots - nbusy : 0;
    did |= assign_local(m, free_here);
    /* Then free slots on the other ranks, before anyone's prefetch: long
     * tasks spread over idle slots instead of queueing on one rank. */
    did |= assign_downstream(m, true);
    did |= assign_downstream(m, false);
    did |= assign_local(m, (size_t)m->o->nslots *
                               (m->o->isolation ? SLOT_BATCH : LOCAL_DEPTH));
    return did;
}

static bool assign_downstream(struct mgr *m, bool free_only)
{
    bool did = false;
    for (size_t i = 0; i < m->o->ndownstream && m->npend; i++) {
        struct mdown *d = &m->down[i];
        if (!d->credit || d->bye)
            continue;
        size_t limit = d->credit;
        if (free_only) {
            size_t slots = d->slots;
            limit = d->held < slots ? slots - d->held : 0;
            if (limit > d->credit)
                limit = d->credit;
            if (!limit)
                continue;
        }
        htex_msg_begin(&m->out, HTEX_MSG_TASKS, 0);
        struct mtask *sent = NULL;
        uint32_t n = 0;
        while (m->npend && n < limit && n < m->o->max_batch) {
            struct mtask *mt = pend_pop(m);
            htex_msg_add_task(&m->out, mt->t.ticket, &mt->t.exec);
            mt->next = sent;
            sent = mt;
            n++;
        }
        long len = htex_msg_end(&m->out);
        int rc =
            len < 0 ? (int)len : send_copy(m, d->ep, m->out.p, (size_t)len);
        if (rc < 0) {
            /* Keep them: they go to a slot here instead. */
            while (sent) {
                struct mtask *next = sent->next;
                pend_push(m, sent);
                sent = next;
            }
            CPARSL_LOG_SPARSE(CPARSL_LOG_WARN, "manager",
                              "rank %d: cannot send to rank %d: %s", m->o->rank,
                              d->ep, cparsl_strerror(rc));
            continue;
        }
        while (sent) {
            struct mtask *next = sent->next;
            task_put(m, sent);
            sent = next;
        }
        ring_down(m, i);
        d->credit -= n;
        d->held += n;
        did = true;
    }
    return did;
}

/* Send the merged downstream results: when the batch is full, it waited
 * long enough, or 'now' says the loop is about to idle. */
static bool flush_fwd(struct mgr *m, bool now)
{
    if (!m->fwd_n)
        return false;
    if (!now && m->fwd_n < m->o->max_batch &&
        cparsl_mono_ns() - m->fwd_since < MGR_FWD_HOLD_NS)
        return false;
    htex_msg_set_want(&m->fwd, take_want(m));
    long len = htex_msg_end(&m->fwd);
    int rc = len < 0 ? (int)len
                     : send_copy(m, m->o->upstream, m->fwd.p, (size_t)len);
    if (rc < 0)
        CPARSL_LOG(CPARSL_LOG_ERROR, "manager",
                   "rank %d: cannot forward %u results: %s", m->o->rank,
                   m->fwd_n, cparsl_strerror(rc));
    m->fwd_n = 0;
    return true;
}

/* Send what the slots finished, in one message. */
static bool report(struct mgr *m)
{
    if (!atomic_load_explicit(&m->has_done, memory_order_acquire))
        return false;
    /* While the slots still have queued work, let results gather a little
     * (a few dozen, or 100 us) so one message carries many; when the
     * queue runs dry, report at once so more work comes. */
    int64_t now = cparsl_mono_ns();
    pthread_mutex_lock(&m->mu);
    bool hold = m->nready > 0 && m->ndone < 32 &&
                now - m->last_report < 100000 && !m->stopping;
    pthread_mutex_unlock(&m->mu);
    if (hold)
        return false;
    m->last_report = now;
    pthread_mutex_lock(&m->mu);
    m->ndone = 0;
    struct mtask *done = m->done_head;
    m->done_head = NULL;
    atomic_store(&m->has_done, false);
    pthread_mutex_unlock(&m->mu);
    if (!done)
        return false;
    /* The list is newest first; order does not matter to the tickets. */
    while (done) {
        htex_msg_begin(&m->out, HTEX_MSG_RESULTS, 0);
        uint32_t n = 0;
        struct mtask *batch = done;
        while (done && n < m->o->max_batch) {
            if (!done->discard) {
                htex_msg_add_result(&m->out, done->t.ticket,
                                    done->t.exec.args.try_no, &done->t.exec,
                                    m->o->rank, done->t.exec.slot);
                n++;
            }
            done = done->next;
        }
        m->held = m->held >= n ? m->held - n : 0;
        htex_msg_set_want(&m->out, take_want(m));
        long len = htex_msg_end(&m->out);
        int rc = len < 0 ? (int)len
                         : send_copy(m, m->o->upstream, m->out.p, (size_t)len);
        if (rc < 0)
            CPARSL_LOG(CPARSL_LOG_ERROR, "manager",
                       "rank %d: cannot send %u results: %s", m->o->rank, n,
                       cparsl_strerror(rc));
        while (batch != done) {
            struct mtask *next = batch->next;
            task_put(m, batch);
            batch = next;
        }
    }
    return true;
}

/*
 * In-rank slots cannot stop a C function at its walltime.  Fail the try at
 * the deadline all the same (as the thread pool does): report it now, and
 * drop the late result when the slot's thread returns.  The slot stays
 * busy until then; process isolation kills instead.
 */
static bool expire(struct mgr *m, int64_t now)
{
    if (m->o->isolation)
        return false;
    bool did = false;
    for (int i = 0; i < m->o->nslots; i++) {
        struct mslot *s = &m->slots[i];
        pthread_mutex_lock(&m->mu);
        struct mtask *mt = s->cur;
        bool due = mt && !s->abandoned && s->deadline && now >= s->deadline;
        if (due)
            s->abandoned = true;
        uint64_t ticket = due ? mt->t.ticket : 0;
        int try_no = due ? mt->t.exec.args.try_no : 0;
        double wt = due ? mt->t.exec.walltime : 0;
        const char *app = due ? mt->t.exec.args.app->name : NULL;
        pthread_mutex_unlock(&m->mu);
        if (!due)
            continue;
        cparsl_exec_t x;
        htex_exec_blank(&x);
        x.args.try_no = try_no;
        x.t_start = x.t_end = cparsl_now_ns();
        cparsl_exec_fail(&x, CPARSL_EWALLTIME,
                         "app '%s' exceeded its walltime of %g s on rank %d; "
                         "an in-rank worker thread cannot be stopped and was "
                         "left running (use isolation: process for an "
                         "enforced walltime)",
                         app, wt, m->o->rank);
        htex_msg_begin(&m->out, HTEX_MSG_RESULTS, 0);
        htex_msg_add_result(&m->out, ticket, try_no, &x, m->o->rank, i);
        cparsl_exec_clear_error(&x);
        m->held = m->held ? m->held - 1 : 0;
        htex_msg_set_want(&m->out, take_want(m));
        long len = htex_msg_end(&m->out);
        if (len > 0)
            send_copy(m, m->o->upstream, m->out.p, (size_t)len);
        did = true;
    }
    return did;
}

int htex_manager_run(cparsl_transport_t *t, const htex_mgr_opts_t *o,
                     cparsl_error_t *err)
{
    struct mgr mm, *m = &mm;
    memset(m, 0, sizeof *m);
    m->o = o;
    m->t = t;
    m->capacity = (size_t)(o->nslots > 0 ? o->nslots : 0); /* + registered */
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    m->bell = o->bell ? o->bell : &m->own_bell;
    m->down = calloc(o->ndownstream ? o->ndownstream : 1, sizeof *m->down);
    int rc = 0;
    if (!m->down) {
        rc = cparsl_error_set(err, -ENOMEM, "manager: out of resources");
        goto out;
    }
    for (size_t i = 0; i < o->ndownstream; i++)
        m->down[i].ep = o->downstream[i];
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    if ((rc = slots_start(m, err)) < 0)
        goto out;

    /* A node's manager says hello only once its ranks have: the client
     * then starts with every slot of the node known, so the first tasks
     * spread over all of them. */
    int64_t reg_t0 = cparsl_mono_ns();
    while (m->down_registered < o->ndownstream) {
        if (!receive(m)) {
            struct timespec ts = {0, 100000};
            nanosleep(&ts, NULL);
        }
        if (cparsl_mono_ns() - reg_t0 > (int64_t)600 * 1000000000) {
            rc = cparsl_error_set(err, -ETIMEDOUT,
                                  "rank %d: %zu of %zu node ranks did not "
                                  "register",
                                  o->rank, o->ndownstream - m->down_registered,
                                  o->ndownstream);
            goto out;
        }
    }
    /* What the node (or the group) has, as its ranks registered. */
    m->capacity = (size_t)(o->nslots > 0 ? o->nslots : 0);
    for (size_t i = 0; i < o->ndownstream; i++)
        m->capacity += m->down[i].slots;
    htex_msg_begin(&m->out, HTEX_MSG_REGISTER, 0);
    htex_msg_add_register(&m->out, o->rank, o->node, (uint32_t)m->capacity,
                          o->host ? o->host : "?", CPARSL_VERSION_STRING);
    htex_msg_set_want(&m->out, take_want(m));
    long len = htex_msg_end(&m->out);
    if (len < 0 ||
        (rc = send_copy(m, o->upstream, m->out.p, (size_t)len)) < 0) {
        rc = cparsl_error_set(err, len < 0 ? (int)len : rc,
                              "rank %d: cannot register with endpoint %d",
                              o->rank, o->upstream);
        goto out;
    }

    CPARSL_LOG(CPARSL_LOG_INFO, "manager",
               "rank %d on %s (node %d): %d slot(s), %zu downstream rank(s), "
               "upstream %d, isolation %s",
               o->rank, o->host ? o->host : "?", o->node, o->nslots,
               o->ndownstream, o->upstream, o->isolation ? "process" : "none");
    int64_t idle_since = 0, sleep_ns = MGR_SLEEP_MIN_NS;
    int64_t hb_ns =
        (int64_t)((o->heartbeat_period > 0 ? o->heartbeat_period : 10) * 1e9);
    int64_t last_sent = cparsl_mono_ns(), idle_work_since = 0;
    bool orphaned = false;
    m->last_upstream = last_sent;
    int64_t long_cap =
        o->upstream_rings ? MGR_SLEEP_RUNG_MAX_NS : MGR_SLEEP_IDLE_MAX_NS;
    if (long_cap > hb_ns / 2)
        long_cap = hb_ns / 2; /* heartbeats go out on time */
    for (;;) {
        /* Read before looking for work (bell.h). */
        uint32_t seen = htex_bell_seq(m->bell);
        bool did = receive(m);
        did |= assign(m);
        if (report(m)) {
            did = true;
            last_sent = cparsl_mono_ns();
        }
        did |= expire(m, cparsl_mono_ns());
        if (flush_fwd(m, !did || m->stopping))
            did = true;
        t->ops->progress(t);
        if ((m->stopping || m->draining) && m->held == 0 && m->npend == 0 &&
            m->down_bye == o->ndownstream && !m->fwd_n)
            break;
        int64_t now = cparsl_mono_ns();
        if (m->held || m->npend)
            idle_work_since = 0;
        else if (!idle_work_since)
            idle_work_since = now;
        if (o->max_idletime > 0 && idle_work_since && !m->draining &&
            (double)(now - idle_work_since) / 1e9 > o->max_idletime) {
            CPARSL_LOG(CPARSL_LOG_INFO, "manager",
                       "rank %d: idle for more than max_idletime %g s: "
                       "leaving",
                       o->rank, o->max_idletime);
            m->draining = true;
            continue;
        }
        if (o->upstream_threshold > 0 &&
            (double)(now - m->last_upstream) / 1e9 > o->upstream_threshold) {
            rc = cparsl_error_set(err, -ETIMEDOUT,
                                  "rank %d: nothing from the interchange "
                                  "(endpoint %d) for %g s: leaving",
                                  o->rank, o->upstream, o->upstream_threshold);
            CPARSL_LOG(CPARSL_LOG_ERROR, "manager", "%s", err->text);
            m->stopping = true;
            fail_unstarted(m);
            orphaned = true;
            break;
        }
        if (now - last_sent > hb_ns) {
            send_simple(m, o->upstream, HTEX_MSG_HEARTBEAT, take_want(m));
            last_sent = now;
        }
        if (did) {
            idle_since = 0;
            sleep_ns = MGR_SLEEP_MIN_NS;
            continue;
        }
        if (!idle_since)
            idle_since = now;
        if (now - idle_since < MGR_POLL_NS) {
            sched_yield();
            continue;
        }
        /* A ring (a slot finished, or the upstream sent) ends the sleep;
         * the backoff starts over, in case the message is not yet in. */
        if (!atomic_load(&m->has_done) &&
            htex_bell_wait(m->bell, seen, sleep_ns)) {
            sleep_ns = MGR_SLEEP_MIN_NS;
            continue;
        }
        int64_t cap =
            now - idle_since > MGR_IDLE_LONG_NS ? long_cap : MGR_SLEEP_MAX_NS;
        if (sleep_ns < cap)
            sleep_ns *= 2;
        if (sleep_ns > cap)
            sleep_ns = cap;
    }
    slots_stop(m);
    if (!orphaned)
        send_simple(m, o->upstream, HTEX_MSG_BYE, 0);
    CPARSL_LOG(CPARSL_LOG_INFO, "manager", "rank %d: shut down, said BYE",
               o->rank);
    for (int i = 0; i < 100000 && t->ops->progress(t) > 0; i++) {
        struct timespec ts = {0, 50000};
        nanosleep(&ts, NULL);
    }
    CPARSL_LOG(CPARSL_LOG_INFO, "manager",
               "rank %d (%s): %llu messages in (%llu bytes), %llu out (%llu "
               "bytes)",
               o->rank, o->nslots > 0 ? "manager" : "sub-interchange",
               (unsigned long long)m->msgs_in, (unsigned long long)m->bytes_in,
               (unsigned long long)m->msgs_out,
               (unsigned long long)m->bytes_out);
    if (m->bad_messages)
        CPARSL_LOG(CPARSL_LOG_WARN, "manager",
                   "rank %d dropped %llu bad messages", o->rank,
                   (unsigned long long)m->bad_messages);
out:
    if (m->slots)
        slots_stop(m);
    while (m->pend_head)
        task_put(m, pend_pop(m));
    /* Tries that ended after their walltime failed them (in-rank), and
     * came back while the slots stopped: already reported. */
    while (m->done_head) {
        struct mtask *next = m->done_head->next;
        task_put(m, m->done_head);
        m->done_head = next;
    }
    while (m->pool) {
        struct mtask *next = m->pool->next;
        htex_task_free(&m->pool->t);
        free(m->pool);
        m->pool = next;
    }
    htex_buf_free(&m->out);
    htex_buf_free(&m->fwd);
    free(m->down);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cv);
    return rc;
}
