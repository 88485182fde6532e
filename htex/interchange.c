/*
 * interchange.c - the htex interchange (see interchange.h).
 *
 * One thread at a time owns the transport, the task queue, the table of
 * tries in flight and the manager registry.  A turn: take new tries,
 * receive (bounded), dispatch to managers that asked for work, progress
 * sends.
 *
 * Threaded: a thread of its own turns the loop; the DFK reaches it only
 * through a mutex-protected inbox and an eventfd doorbell.  With nothing
 * to do it polls briefly, then sleeps with growing backoff on the
 * doorbell, so an idle client costs no CPU while a new submission still
 * wakes it at once.
 *
 * Driven: no thread; whoever calls htex_ix_poll turns it (the DFK
 * thread, between its batches), and submissions go straight into the
 * queue.  That saves a thread hand-off each way, which on a few cores
 * shared by many ranks is most of a round trip.  Turns are serialised by
 * turn_mu, so start-up and shutdown can turn it from another thread.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "interchange.h"
#include "join.h"
#include "log.h"
#include "wire.h"

#define IX_POLL_NS      60000
#define IX_SLEEP_MIN_NS 10000
#define IX_SLEEP_MAX_NS 1000000
/* After a second with nothing to do, sleep longer: an idle pilot of many
 * ranks on few cores then costs next to no CPU, and the first message
 * after a long pause waits at most this long at each hop. */
#define IX_IDLE_LONG_NS      1000000000
#define IX_SLEEP_IDLE_MAX_NS 20000000
#define IX_RECV_PER_TURN     64
#define NO_SLOT              UINT32_MAX
/* Joiners between HELLO and WELCOME at once, and how long each may take;
 * a refused one is forgotten a little later, so its REFUSE can leave. */
#define JOIN_PENDING_MAX 64
#define JOIN_TIMEOUT_NS  10000000000ll
#define JOIN_LINGER_NS   1000000000ll

struct ix_mgr {
    int ep;
    bool registered, bye, silent, lost, joined, draining;
    uint32_t slots;
    uint64_t credit;
    size_t held;
    bool in_fifo;
    int64_t last_seen;
    int64_t idle_since; /* mono ns it last became idle; 0 while it holds */
    int rank, node;
    char host[256];
    char block[HTEX_BLOCK_LEN]; /* the provider block it came from */
};

/* A joiner between HELLO and WELCOME (or REFUSE). */
struct ix_join {
    int peer;
    bool doomed; /* refused: forget it once JOIN_LINGER_NS passed */
    int64_t since;
    unsigned char nonce[HTEX_NONCE_LEN];
    char build[160];
    char host[256];
    char block[HTEX_BLOCK_LEN];
    unsigned char name[512];
    size_t name_len;
};

/* 16 bytes: rank 0 keeps one per try in flight, up to one per slot. */
struct ix_slot {
    cparsl_exec_t *e; /* NULL: free */
    uint32_t gen;
    union {
        uint32_t next_free; /* free: the next free index */
        int32_t mgr;        /* in use: the manager it went to */
    } u;
};

struct htex_ix {
    cparsl_transport_t *t;
    pthread_t thread;
    bool started; /* the thread runs */
    bool driven;
    pthread_mutex_t turn_mu; /* driven: held for a turn or a submission */

    /* the DFK's side */
    pthread_mutex_t mu;
    pthread_cond_t cv; /* registration and shutdown progress */
    cparsl_exec_t **inbox;
    size_t nin, capin;
    _Atomic bool has_inbox;
    _Atomic bool sleeping;
    int efd;
    bool stop_req, done;
    size_t drain_req; /* managers to drain, asked by htex_ix_drain */
    char (*drain_blocks)[HTEX_BLOCK_LEN]; /* blocks to drain (asked) */
    size_t ndrain_blocks, cap_drain_blocks;
    char *fail_why;    /* fail what waits (htex_ix_fail_waiting) */
    bool snap_req;     /* a snapshot of the managers is wanted */
    uint64_t snap_seq; /* bumped with each snapshot published */
    htex_mgr_info_t *snap;
    size_t nsnap, capsnap;
    size_t nregistered, capacity;
    int stop_rc;

    /* the interchange thread's */
    cparsl_exec_t **swap;
    size_t capswap;
    cparsl_exec_t **q; /* ring */
    size_t qhead, qlen, qcap;
    struct ix_slot *slots;
    uint32_t nslots, free_head;
    struct ix_mgr *mgrs;
    size_t nmgrs, mgr_cap;
    int *ep_to_mgr; /* endpoint -> manager index or -1 */
    int nep;
    int *fifo; /* ring of manager indices with credit, mgr_cap long */
    size_t fhead, flen;
    /* joiners (join.h) */
    bool joinable, lose_silent;
    unsigned char secret[HTEX_SECRET_LEN];
    char build[160];
    struct ix_join joins[JOIN_PENDING_MAX];
    size_t njoins;
    htex_buf_t out;
    cparsl_exec_t scratch;
    uint32_t max_batch;
    const int *node_of_worker;
    const char *host_of_worker;
    size_t host_len, nworkers;
    double hb_threshold;
    int64_t last_hb, hb_period_ns;
    bool stopping;
    size_t nbye;

    _Atomic size_t outstanding;
    _Atomic uint64_t dispatched, completed, bad_messages, stale_results;
    _Atomic uint64_t msgs_in, msgs_out, bytes_in, bytes_out;
    _Atomic uint64_t joined, refused, lost, requeued;
};

/* ---- helpers ------------------------------------------------------------- */

static void fifo_push(htex_ix_t *ix, int m)
{
    struct ix_mgr *g = &ix->mgrs[m];
    if (g->in_fifo || g->bye || g->draining || ix->stopping)
        return;
    ix->fifo[(ix->fhead + ix->flen) % ix->mgr_cap] = m;
    ix->flen++;
    g->in_fifo = true;
}

static int fifo_front(htex_ix_t *ix)
{
    return ix->flen ? ix->fifo[ix->fhead] : -1;
}

static void fifo_pop(htex_ix_t *ix)
{
    ix->mgrs[ix->fifo[ix->fhead]].in_fifo = false;
    ix->fhead = (ix->fhead + 1) % ix->mgr_cap;
    ix->flen--;
}

static int q_push(htex_ix_t *ix, cparsl_exec_t *e)
{
    if (ix->qlen == ix->qcap) {
        size_t cap = ix->qcap ? ix->qcap * 2 : 1024;
        cparsl_exec_t **q = malloc(cap * sizeof *q);
        if (!q)
            return -ENOMEM;
        for (size_t i = 0; i < ix->qlen; i++)
            q[i] = ix->q[(ix->qhead + i) % ix->qcap];
        free(ix->q);
        ix->q = q;
        ix->qcap = cap;
        ix->qhead = 0;
    }
    ix->q[(ix->qhead + ix->qlen) % ix->qcap] = e;
    ix->qlen++;
    return 0;
}

static cparsl_exec_t *q_pop(htex_ix_t *ix)
{
    cparsl_exec_t *e = ix->q[ix->qhead];
    ix->qhead = (ix->qhead + 1) % ix->qcap;
    ix->qlen--;
    return e;
}

/* A ticket for a try in flight: table index in the low half, generation
 * in the high half, so a reused index never matches an old ticket. */
static int slot_take(htex_ix_t *ix, cparsl_exec_t *e, int mgr, uint64_t *t)
{
    if (ix->free_head == NO_SLOT) {
        /* grow by half: the table follows the tries in flight closely */
        uint32_t n = ix->nslots ? ix->nslots + ix->nslots / 2 : 1024;
        struct ix_slot *s = realloc(ix->slots, n * sizeof *s);
        if (!s)
            return -ENOMEM;
        for (uint32_t i = ix->nslots; i < n; i++) {
            s[i].e = NULL;
            s[i].gen = 1;
            s[i].u.next_free = i + 1 < n ? i + 1 : NO_SLOT;
        }
        ix->slots = s;
        ix->free_head = ix->nslots;
        ix->nslots = n;
    }
    uint32_t i = ix->free_head;
    struct ix_slot *s = &ix->slots[i];
    ix->free_head = s->u.next_free;
    s->e = e;
    s->u.mgr = mgr;
    *t = (uint64_t)s->gen << 32 | i;
    return 0;
}

static cparsl_exec_t *slot_find(htex_ix_t *ix, uint64_t ticket, int mgr)
{
    uint32_t i = (uint32_t)ticket, gen = (uint32_t)(ticket >> 32);
    if (i >= ix->nslots)
        return NULL;
    struct ix_slot *s = &ix->slots[i];
    if (!s->e || s->gen != gen || s->u.mgr != mgr)
        return NULL;
    return s->e;
}

static void slot_release(htex_ix_t *ix, uint64_t ticket)
{
    uint32_t i = (uint32_t)ticket;
    struct ix_slot *s = &ix->slots[i];
    s->e = NULL;
    s->gen++;
    s->u.next_free = ix->free_head;
    ix->free_head = i;
}

static void complete(htex_ix_t *ix, cparsl_exec_t *e)
{
    atomic_fetch_sub(&ix->outstanding, 1);
    atomic_fetch_add(&ix->completed, 1);
    cparsl_exec_complete(e);
}

static void bad_message(htex_ix_t *ix, int peer, const char *why)
{
    atomic_fetch_add(&ix->bad_messages, 1);
    CPARSL_LOG_SPARSE(CPARSL_LOG_WARN, "interchange",
                      "dropped a message from endpoint %d: %s", peer, why);
}

static int send_buf(htex_ix_t *ix, int ep, const htex_buf_t *b, size_t len)
{
    atomic_fetch_add_explicit(&ix->msgs_out, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&ix->bytes_out, len, memory_order_relaxed);
    void *m = ix->t->ops->msg_alloc(ix->t, len);
    if (!m)
        return -ENOMEM;
    memcpy(m, b->p, len);
    return ix->t->ops->send(ix->t, ep, m, len);
}

static int send_empty(htex_ix_t *ix, int ep, int type)
{
    htex_msg_begin(&ix->out, type, 0);
    long len = htex_msg_end(&ix->out);
    return len < 0 ? (int)len : send_buf(ix, ep, &ix->out, (size_t)len);
}

/* ---- messages from managers ---------------------------------------------- */

static void on_results(htex_ix_t *ix, int m, htex_reader_t *r)
{
    struct ix_mgr *g = &ix->mgrs[m];
    cparsl_error_t err;
    for (uint32_t k = 0; k < r->hdr.count; k++) {
        uint64_t ticket;
        int try_no, worker, slot;
        cparsl_exec_t *x = &ix->scratch;
        x->result = cparsl_nil();
        if (htex_msg_next_result(r, &ticket, &try_no, x, &worker, &slot, &err) <
            0) {
            bad_message(ix, g->ep, err.text);
            return;
        }
        cparsl_exec_t *e = slot_find(ix, ticket, m);
        if (!e || e->args.try_no != try_no) {
            atomic_fetch_add(&ix->stale_results, 1);
            CPARSL_LOG_SPARSE(CPARSL_LOG_WARN, "interchange",
                              "dropped a result for an unknown ticket %#llx "
                              "from endpoint %d",
                              (unsigned long long)ticket, g->ep);
            cparsl_value_clear(&x->result);
            continue;
        }
        slot_release(ix, ticket);
        e->result = x->result;
        x->result = cparsl_nil();
        if (x->error)
            cparsl_exec_take_error(e, x);
        e->t_start = x->t_start;
        e->t_end = x->t_end;
        e->exit_code = x->exit_code;
        e->term_signal = x->term_signal;
        e->cpu_s = x->cpu_s;
        e->maxrss_kib = x->maxrss_kib;
        e->worker = worker;
        e->slot = slot;
        e->node = g->node;
        e->host = g->host;
        if (ix->node_of_worker && worker >= 0 &&
            (size_t)worker < ix->nworkers) {
            e->node = ix->node_of_worker[worker];
            e->host = ix->host_of_worker + (size_t)worker * ix->host_len;
        }
        if (g->held && --g->held == 0)
            g->idle_since = cparsl_mono_ns();
        complete(ix, e);
    }
}

static void on_register(htex_ix_t *ix, int m, htex_reader_t *r)
{
    struct ix_mgr *g = &ix->mgrs[m];
    htex_register_t reg;
    cparsl_error_t err;
    if (htex_msg_next_register(r, &reg, &err) < 0) {
        bad_message(ix, g->ep, err.text);
        return;
    }
    if (strcmp(reg.build, CPARSL_VERSION_STRING) != 0) {
        CPARSL_LOG(CPARSL_LOG_ERROR, "interchange",
                   "manager on endpoint %d runs cparsl %s, not %s: ignored",
                   g->ep, reg.build, CPARSL_VERSION_STRING);
        return;
    }
    if (g->registered)
        return;
    g->registered = true;
    g->idle_since = cparsl_mono_ns();
    g->slots = reg.slots;
    g->rank = reg.rank;
    g->node = reg.node;
    snprintf(g->host, sizeof g->host, "%s", reg.host);
    pthread_mutex_lock(&ix->mu);
    ix->nregistered++;
    ix->capacity += reg.slots;
    pthread_cond_broadcast(&ix->cv);
    pthread_mutex_unlock(&ix->mu);
    CPARSL_LOG(CPARSL_LOG_INFO, "interchange",
               "manager rank %d (node %d, %s) registered with %u slots",
               reg.rank, reg.node, reg.host, reg.slots);
}

/* ---- joiners (join.h) ------------------------------------------------- */

/* A new manager on endpoint ep: its index, or -1 when out of memory. */
static int add_manager(htex_ix_t *ix, int ep)
{
    if (ep >= ix->nep) {
        int n = ep + 1 > 2 * ix->nep ? ep + 1 : 2 * ix->nep;
        int *v = realloc(ix->ep_to_mgr, (size_t)n * sizeof *v);
        if (!v)
            return -1;
        for (int i = ix->nep; i < n; i++)
            v[i] = -1;
        ix->ep_to_mgr = v;
        ix->nep = n;
    }
    if (ix->nmgrs == ix->mgr_cap) {
        size_t cap = ix->mgr_cap ? 2 * ix->mgr_cap : 16;
        struct ix_mgr *g = realloc(ix->mgrs, cap * sizeof *g);
        int *f = malloc(cap * sizeof *f);
        if (!g || !f) {
            if (g)
                ix->mgrs = g;
            free(f);
            return -1;
        }
        for (size_t i = 0; i < ix->flen; i++) /* the ring, unrolled */
            f[i] = ix->fifo[(ix->fhead + i) % ix->mgr_cap];
        free(ix->fifo);
        ix->mgrs = g;
        ix->fifo = f;
        ix->fhead = 0;
        ix->mgr_cap = cap;
    }
    int m = (int)ix->nmgrs;
    ix->mgrs[m] = (struct ix_mgr){
        .ep = ep, .node = -1, .rank = -1, .last_seen = cparsl_mono_ns()};
    ix->ep_to_mgr[ep] = m;
    pthread_mutex_lock(&ix->mu);
    ix->nmgrs++;
    pthread_mutex_unlock(&ix->mu);
    return m;
}

static struct ix_join *join_find(htex_ix_t *ix, int peer)
{
    for (size_t i = 0; i < ix->njoins; i++)
        if (ix->joins[i].peer == peer)
            return &ix->joins[i];
    return NULL;
}

static void join_drop(htex_ix_t *ix, struct ix_join *j)
{
    if (ix->t->ops->forget)
        ix->t->ops->forget(ix->t, j->peer);
    *j = ix->joins[--ix->njoins];
}

static int send_fields(htex_ix_t *ix, int ep, int type, size_t n,
                       const void *const *p, const size_t *len)
{
    htex_msg_begin(&ix->out, type, 0);
    htex_msg_add_fields(&ix->out, n, p, len);
    long mlen = htex_msg_end(&ix->out);
    return mlen < 0 ? (int)mlen : send_buf(ix, ep, &ix->out, (size_t)mlen);
}

/* Say why, then forget the peer a moment later. */
static void join_refuse(htex_ix_t *ix, struct ix_join *j, const char *why)
{
    atomic_fetch_add(&ix->refused, 1);
    CPARSL_LOG_SPARSE(CPARSL_LOG_WARN, "interchange",
                      "refused a joiner from host '%s' (endpoint %d): %s",
                      j->host, j->peer, why);
    const void *p[1] = {why};
    size_t len[1] = {strlen(why)};
    send_fields(ix, j->peer, HTEX_MSG_REFUSE, 1, p, len);
    j->doomed = true;
    j->since = cparsl_mono_ns();
}

static void copy_field(char *dst, size_t cap, const htex_fields_t *f, size_t i)
{
    size_t n = f->len[i] < cap - 1 ? f->len[i] : cap - 1;
    memcpy(dst, f->p[i], n);
    dst[n] = '\0';
    for (size_t k = 0; k < n; k++) /* printable in logs and messages */
        if ((unsigned char)dst[k] < 32 || (unsigned char)dst[k] > 126)
            dst[k] = '?';
}

static void on_hello(htex_ix_t *ix, int peer, htex_reader_t *r)
{
    htex_fields_t f;
    cparsl_error_t err;
    if (htex_msg_next_fields(r, &f, &err) < 0 || f.n < 3 || f.n > 4 ||
        f.len[0] > sizeof ix->joins[0].name) {
        bad_message(ix, peer, "malformed HELLO");
        return;
    }
    int p = peer;
    if (peer < 0) {
        if (!ix->t->ops->admit) {
            bad_message(ix, peer, "HELLO from an unknown sender");
            return;
        }
        if (ix->njoins == JOIN_PENDING_MAX) {
            bad_message(ix, peer, "too many joiners at once");
            return;
        }
        if (ix->t->ops->admit(ix->t, f.p[0], f.len[0], &p, &err) < 0) {
            atomic_fetch_add(&ix->refused, 1);
            CPARSL_LOG_SPARSE(CPARSL_LOG_WARN, "interchange",
                              "cannot answer a joiner: %s", err.text);
            return;
        }
    }
    struct ix_join *j = join_find(ix, p);
    if (!j) {
        if (ix->njoins == JOIN_PENDING_MAX) {
            bad_message(ix, peer, "too many joiners at once");
            return;
        }
        j = &ix->joins[ix->njoins++];
        *j = (struct ix_join){.peer = p, .since = cparsl_mono_ns()};
        if (htex_random(j->nonce, sizeof j->nonce) < 0) {
            join_drop(ix, j);
            return;
        }
        copy_field(j->build, sizeof j->build, &f, 1);
        copy_field(j->host, sizeof j->host, &f, 2);
        if (f.n > 3)
            copy_field(j->block, sizeof j->block, &f, 3);
        memcpy(j->name, f.p[0], f.len[0]);
        j->name_len = f.len[0];
    }
    if (j->doomed)
        return;
    const void *np[1] = {j->nonce};
    size_t nl[1] = {sizeof j->nonce};
    send_fields(ix, p, HTEX_MSG_CHALLENGE, 1, np, nl);
}

static void on_auth(htex_ix_t *ix, struct ix_join *j, htex_reader_t *r)
{
    htex_fields_t f;
    cparsl_error_t err;
    if (htex_msg_next_fields(r, &f, &err) < 0 || f.n != 1 ||
        f.len[0] != HTEX_MAC_LEN) {
        join_refuse(ix, j, "malformed AUTH");
        return;
    }
    unsigned char mac[HTEX_MAC_LEN];
    htex_join_mac(ix->secret, j->nonce, j->build, j->name, j->name_len, mac);
    char why[512];
    if (!htex_mac_equal(mac, f.p[0])) {
        join_refuse(ix, j, "authentication failed: wrong secret");
        return;
    }
    if (strcmp(j->build, ix->build) != 0) {
        snprintf(why, sizeof why,
                 "build mismatch: this pilot runs build %s, the joiner %s; "
                 "run the same executable",
                 *ix->build ? ix->build : "(none)",
                 *j->build ? j->build : "(none)");
        join_refuse(ix, j, why);
        return;
    }
    if (ix->stopping) {
        join_refuse(ix, j, "the pilot is shutting down");
        return;
    }
    int m = add_manager(ix, j->peer);
    if (m < 0) {
        join_refuse(ix, j, "the interchange is out of memory");
        return;
    }
    if (ix->t->ops->trust)
        ix->t->ops->trust(ix->t, j->peer);
    ix->mgrs[m].joined = true;
    snprintf(ix->mgrs[m].host, sizeof ix->mgrs[m].host, "%s", j->host);
    snprintf(ix->mgrs[m].block, sizeof ix->mgrs[m].block, "%s", j->block);
    char id[16];
    snprintf(id, sizeof id, "%d", m);
    const void *p[1] = {id};
    size_t len[1] = {strlen(id)};
    send_fields(ix, j->peer, HTEX_MSG_WELCOME, 1, p, len);
    atomic_fetch_add(&ix->joined, 1);
    CPARSL_LOG(CPARSL_LOG_INFO, "interchange",
               "manager %d joined from host '%s' (endpoint %d%s%s)", m, j->host,
               j->peer, *j->block ? ", block " : "", j->block);
    *j = ix->joins[--ix->njoins]; /* a manager now: not forgotten */
}

/* A message from a peer that is not a manager: only the handshake. */
static void on_stranger(htex_ix_t *ix, int peer, void *buf, size_t len)
{
    htex_reader_t r;
    cparsl_error_t err;
    if (!ix->joinable) {
        bad_message(ix, peer, "not a manager of this interchange");
        return;
    }
    if (htex_msg_open(&r, buf, len, &err) < 0) {
        bad_message(ix, peer, err.text);
        return;
    }
    struct ix_join *j = peer >= 0 ? join_find(ix, peer) : NULL;
    if (r.hdr.type == HTEX_MSG_HELLO && !j)
        on_hello(ix, peer, &r);
    else if (r.hdr.type == HTEX_MSG_AUTH && j && !j->doomed)
        on_auth(ix, j, &r);
    else
        bad_message(ix, peer, "a message from a peer that has not joined");
}

/* Joiners that took too long, and refused ones whose REFUSE has left. */
static void expire_joins(htex_ix_t *ix, int64_t now)
{
    for (size_t i = 0; i < ix->njoins;) {
        struct ix_join *j = &ix->joins[i];
        if (now - j->since > (j->doomed ? JOIN_LINGER_NS : JOIN_TIMEOUT_NS)) {
            if (!j->doomed) {
                atomic_fetch_add(&ix->refused, 1);
                CPARSL_LOG_SPARSE(CPARSL_LOG_WARN, "interchange",
                                  "a joiner from host '%s' did not finish "
                                  "the handshake: forgotten",
                                  j->host);
            }
            join_drop(ix, j);
            continue;
        }
        i++;
    }
}

/* A manager that stopped answering: its tries in flight fail as retryable
 * (the DFK launches a new try, counted against retries), its late results
 * will match no ticket, and it is forgotten. */
static void lose_manager(htex_ix_t *ix, int m)
{
    struct ix_mgr *g = &ix->mgrs[m];
    g->lost = true;
    if (!g->bye) {
        g->bye = true;
        ix->nbye++;
    }
    size_t n = 0;
    for (uint32_t i = 0; i < ix->nslots; i++) {
        struct ix_slot *s = &ix->slots[i];
        if (!s->e || s->u.mgr != m)
            continue;
        cparsl_exec_t *e = s->e;
        slot_release(ix, (uint64_t)s->gen << 32 | i);
        cparsl_exec_fail(e, CPARSL_EWORKER,
                         "manager %d on host '%s' was lost: nothing heard "
                         "for %g s",
                         m, g->host, ix->hb_threshold);
        complete(ix, e);
        n++;
    }
    g->held = 0;
    g->credit = 0;
    atomic_fetch_add(&ix->lost, 1);
    atomic_fetch_add(&ix->requeued, n);
    pthread_mutex_lock(&ix->mu);
    if (g->registered)
        ix->capacity -= g->slots;
    pthread_cond_broadcast(&ix->cv);
    pthread_mutex_unlock(&ix->mu);
    if (ix->t->ops->forget)
        ix->t->ops->forget(ix->t, g->ep);
    ix->ep_to_mgr[g->ep] = -1;
    CPARSL_LOG(CPARSL_LOG_WARN, "interchange",
               "manager %d on host '%s' lost (nothing heard for %g s); its "
               "%zu tries in flight are tried again",
               m, g->host, ix->hb_threshold, n);
}

static void on_message(htex_ix_t *ix, int peer, void *buf, size_t len)
{
    htex_reader_t r;
    cparsl_error_t err;
    int m = peer >= 0 && peer < ix->nep ? ix->ep_to_mgr[peer] : -1;
    if (m < 0) {
        on_stranger(ix, peer, buf, len);
        return;
    }
    if (htex_msg_open(&r, buf, len, &err) < 0) {
        bad_message(ix, peer, err.text);
        return;
    }
    struct ix_mgr *g = &ix->mgrs[m];
    g->last_seen = cparsl_mono_ns();
    if (g->silent) {
        g->silent = false;
        CPARSL_LOG(CPARSL_LOG_INFO, "interchange",
                   "manager on endpoint %d is heard from again", g->ep);
    }
    switch (r.hdr.type) {
    case HTEX_MSG_REGISTER:
        on_register(ix, m, &r);
        break;
    case HTEX_MSG_RESULTS:
        on_results(ix, m, &r);
        break;
    case HTEX_MSG_HEARTBEAT:
        break;
    case HTEX_MSG_BYE:
        if (!g->bye) {
            g->bye = true;
            ix->nbye++;
            pthread_mutex_lock(&ix->mu);
            if (g->registered)
                ix->capacity -= g->slots; /* its slots are gone */
            pthread_cond_broadcast(&ix->cv);
            pthread_mutex_unlock(&ix->mu);
            if (g->draining)
                CPARSL_LOG(CPARSL_LOG_INFO, "interchange",
                           "manager %d on '%s' drained and left", m, g->host);
        }
        break;
    default:
        bad_message(ix, peer, htex_msg_name(r.hdr.type));
        return;
    }
    if (r.hdr.want && g->registered && !g->bye) {
        g->credit += r.hdr.want;
        fifo_push(ix, m);
    }
}

/* ---- dispatch
 * ---------------------------------------------------------------- */

static void fail_batch(htex_ix_t *ix, cparsl_exec_t **v, size_t n, int rc,
                       const char *why)
{
    for (size_t i = 0; i < n; i++) {
        cparsl_exec_fail(v[i], rc, "%s", why);
        complete(ix, v[i]);
    }
}

/* Send up to k queued tries to manager m in one message.  Returns how many
 * went (0 if the queue was empty or sending failed). */
static size_t send_tasks(htex_ix_t *ix, int m, size_t k)
{
    struct ix_mgr *g = &ix->mgrs[m];
    cparsl_exec_t *batch[512];
    uint64_t tickets[512];
    if (k > ix->qlen)
        k = ix->qlen;
    if (k > ix->max_batch)
        k = ix->max_batch;
    if (k > sizeof batch / sizeof batch[0])
        k = sizeof batch / sizeof batch[0];
    if (k == 0)
        return 0;
    htex_msg_begin(&ix->out, HTEX_MSG_TASKS, 0);
    int64_t now = cparsl_now_ns();
    size_t n = 0;
    for (; n < k; n++) {
        cparsl_exec_t *e = ix->q[ix->qhead];
        if (slot_take(ix, e, m, &tickets[n]) < 0)
            break;
        (void)q_pop(ix);
        batch[n] = e;
        e->t_dispatch = now;
        htex_msg_add_task(&ix->out, tickets[n], e);
    }
    if (n == 0) {
        cparsl_exec_t *e = q_pop(ix);
        fail_batch(ix, &e, 1, -ENOMEM, "interchange: out of memory");
        return 0;
    }
    long len = htex_msg_end(&ix->out);
    int rc = len < 0 ? (int)len : send_buf(ix, g->ep, &ix->out, (size_t)len);
    if (rc < 0) {
        for (size_t i = 0; i < n; i++)
            slot_release(ix, tickets[i]);
        fail_batch(ix, batch, n, rc,
                   "interchange: cannot send tasks to a manager");
        return 0;
    }
    atomic_fetch_add(&ix->dispatched, n);
    g->credit -= n;
    g->held += n;
    g->idle_since = 0;
    return n;
}

/*
 * Send queued tries to managers that asked.  First every manager gets
 * work for its free slots, so idle slots anywhere fill before any
 * manager's prefetch window does (long tasks spread out); then the
 * prefetch credit is served, front of the FIFO first.
 */
static bool dispatch(htex_ix_t *ix)
{
    bool did = false;
    for (size_t i = 0; i < ix->flen && ix->qlen; i++) {
        int m = ix->fifo[(ix->fhead + i) % ix->mgr_cap];
        struct ix_mgr *g = &ix->mgrs[m];
        if (g->bye || g->draining || g->held >= g->slots)
            continue;
        size_t k = g->slots - g->held;
        if (k > g->credit)
            k = g->credit;
        did |= send_tasks(ix, m, k) > 0;
    }
    while (ix->qlen && ix->flen) {
        int m = fifo_front(ix);
        struct ix_mgr *g = &ix->mgrs[m];
        if (g->credit == 0 || g->bye || g->draining) {
            fifo_pop(ix);
            continue;
        }
        if (send_tasks(ix, m, g->credit) == 0 && ix->qlen) {
            fifo_pop(ix); /* could not send: try the next manager */
            continue;
        }
        if (g->credit == 0)
            fifo_pop(ix);
        did = true;
    }
    return did;
}

/* ---- the thread ---------------------------------------------------------- */

static bool take_inbox(htex_ix_t *ix)
{
    if (!atomic_load_explicit(&ix->has_inbox, memory_order_acquire))
        return false;
    pthread_mutex_lock(&ix->mu);
    cparsl_exec_t **v = ix->inbox;
    size_t n = ix->nin;
    ix->inbox = ix->swap;
    size_t cap = ix->capin;
    ix->capin = ix->capswap;
    ix->swap = v;
    ix->capswap = cap;
    ix->nin = 0;
    atomic_store(&ix->has_inbox, false);
    pthread_mutex_unlock(&ix->mu);
    for (size_t i = 0; i < n; i++) {
        if (ix->stopping) {
            cparsl_exec_fail(v[i], CPARSL_ESHUTDOWN,
                             "the pilot is shutting down");
            complete(ix, v[i]);
        } else if (q_push(ix, v[i]) < 0) {
            fail_batch(ix, &v[i], 1, -ENOMEM, "interchange: out of memory");
        }
    }
    return n > 0;
}

static void begin_stop(htex_ix_t *ix)
{
    ix->stopping = true;
    while (ix->qlen) {
        cparsl_exec_t *e = q_pop(ix);
        cparsl_exec_fail(e, CPARSL_ESHUTDOWN,
                         "the pilot shut down before this task was sent to "
                         "a worker");
        complete(ix, e);
    }
    for (size_t m = 0; m < ix->nmgrs; m++)
        if (!ix->mgrs[m].bye)
            send_empty(ix, ix->mgrs[m].ep, HTEX_MSG_SHUTDOWN);
}

static void drain_manager(htex_ix_t *ix, int m)
{
    struct ix_mgr *g = &ix->mgrs[m];
    g->draining = true;
    g->credit = 0;
    send_empty(ix, g->ep, HTEX_MSG_DRAIN);
    CPARSL_LOG(CPARSL_LOG_INFO, "interchange",
               "draining manager %d on '%s'%s%s (%zu tasks held)", m, g->host,
               *g->block ? ", block " : "", g->block, g->held);
}

/* Tell the least loaded manager still taking work to drain: no new
 * tasks, leave when its own are done. */
static void drain_one(htex_ix_t *ix)
{
    int best = -1;
    for (size_t m = 0; m < ix->nmgrs; m++) {
        struct ix_mgr *g = &ix->mgrs[m];
        if (!g->registered || g->bye || g->draining)
            continue;
        if (best < 0 || g->held < ix->mgrs[best].held)
            best = (int)m;
    }
    if (best >= 0)
        drain_manager(ix, best);
}

/* Every manager of a block (joined or not yet registered) drains. */
static void drain_block(htex_ix_t *ix, const char *block)
{
    for (size_t m = 0; m < ix->nmgrs; m++) {
        struct ix_mgr *g = &ix->mgrs[m];
        if (!g->bye && !g->draining && strcmp(g->block, block) == 0)
            drain_manager(ix, (int)m);
    }
}

/* Publish the managers' state for htex_ix_managers (under mu). */
static void publish_snapshot(htex_ix_t *ix, int64_t now)
{
    if (ix->capsnap < ix->nmgrs) {
        size_t cap = ix->nmgrs + 16;
        htex_mgr_info_t *v = realloc(ix->snap, cap * sizeof *v);
        if (!v)
            return; /* the caller times out and tries again */
        ix->snap = v;
        ix->capsnap = cap;
    }
    for (size_t m = 0; m < ix->nmgrs; m++) {
        const struct ix_mgr *g = &ix->mgrs[m];
        htex_mgr_info_t *o = &ix->snap[m];
        snprintf(o->block, sizeof o->block, "%s", g->block);
        snprintf(o->host, sizeof o->host, "%.63s", g->host);
        o->slots = g->registered ? g->slots : 0;
        o->held = g->held;
        o->idle_s =
            g->held || !g->idle_since ? 0 : (double)(now - g->idle_since) / 1e9;
        o->registered = g->registered;
        o->draining = g->draining;
        o->gone = g->bye;
        o->lost = g->lost;
    }
    ix->nsnap = ix->nmgrs;
    ix->snap_seq++;
    ix->snap_req = false;
    pthread_cond_broadcast(&ix->cv);
}

/* The requests htex_ix_drain, _drain_block, _fail_waiting and _managers
 * left for the loop's thread. */
static void take_requests(htex_ix_t *ix)
{
    pthread_mutex_lock(&ix->mu);
    size_t ndrain = ix->drain_req;
    ix->drain_req = 0;
    char *why = ix->fail_why;
    ix->fail_why = NULL;
    if (!ix->stopping) {
        for (size_t i = 0; i < ix->ndrain_blocks; i++)
            drain_block(ix, ix->drain_blocks[i]);
    }
    ix->ndrain_blocks = 0;
    if (ix->snap_req)
        publish_snapshot(ix, cparsl_mono_ns());
    pthread_mutex_unlock(&ix->mu);
    while (ndrain-- && !ix->stopping)
        drain_one(ix);
    if (why) {
        size_t n = 0;
        while (ix->qlen) {
            cparsl_exec_t *e = q_pop(ix);
            cparsl_exec_fail(e, CPARSL_EEXECUTOR, "%s", why);
            complete(ix, e);
            n++;
        }
        CPARSL_LOG(CPARSL_LOG_ERROR, "interchange",
                   "%zu waiting tasks failed: %s", n, why);
        free(why);
    }
}

static void check_heartbeats(htex_ix_t *ix, int64_t now)
{
    for (size_t m = 0; m < ix->nmgrs; m++) {
        struct ix_mgr *g = &ix->mgrs[m];
        if (!g->registered || g->bye || g->silent)
            continue;
        if ((double)(now - g->last_seen) / 1e9 > ix->hb_threshold) {
            if (ix->lose_silent && g->joined) {
                lose_manager(ix, (int)m);
                continue;
            }
            g->silent = true;
            CPARSL_LOG(CPARSL_LOG_WARN, "interchange",
                       "manager rank %d (%s) silent for more than %g s",
                       g->rank, g->host, ix->hb_threshold);
        }
    }
}

/* One turn of the loop.  Returns whether it did anything; sets done (and
 * wakes waiters) once shut down. */
static bool ix_turn(htex_ix_t *ix)
{
    bool did = take_inbox(ix);
    pthread_mutex_lock(&ix->mu);
    bool stop_req = ix->stop_req;
    pthread_mutex_unlock(&ix->mu);
    if (stop_req && !ix->stopping)
        begin_stop(ix);
    take_requests(ix);
    for (int k = 0; k < IX_RECV_PER_TURN; k++) {
        int peer;
        void *buf;
        size_t len;
        cparsl_error_t err;
        int rc = ix->t->ops->try_recv(ix->t, &peer, &buf, &len, &err);
        if (rc < 0) {
            CPARSL_LOG_SPARSE(CPARSL_LOG_ERROR, "interchange", "%s", err.text);
            break;
        }
        if (rc == 0)
            break;
        atomic_fetch_add_explicit(&ix->msgs_in, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&ix->bytes_in, len, memory_order_relaxed);
        on_message(ix, peer, buf, len);
        ix->t->ops->msg_free(ix->t, buf);
        did = true;
    }
    if (!ix->stopping)
        did |= dispatch(ix);
    ix->t->ops->progress(ix->t);
    if (ix->stopping && ix->nbye == ix->nmgrs) {
        /* Let the last sends leave, for a bounded while: a send to a peer
         * that died may never complete (libfabric's shm). */
        for (int i = 0; i < 20000 && ix->t->ops->progress(ix->t) > 0; i++) {
            struct timespec ts = {0, 100000};
            nanosleep(&ts, NULL);
        }
        pthread_mutex_lock(&ix->mu);
        ix->done = true;
        pthread_cond_broadcast(&ix->cv);
        pthread_mutex_unlock(&ix->mu);
        return true;
    }
    int64_t now = cparsl_mono_ns();
    if (now - ix->last_hb > ix->hb_period_ns) {
        check_heartbeats(ix, now);
        if (ix->joinable) {
            expire_joins(ix, now);
            /* Heartbeats the other way: joined managers leave when the
             * interchange goes quiet past their threshold. */
            for (size_t m = 0; m < ix->nmgrs; m++)
                if (ix->mgrs[m].joined && !ix->mgrs[m].bye)
                    send_empty(ix, ix->mgrs[m].ep, HTEX_MSG_HEARTBEAT);
        }
        ix->last_hb = now;
    }
    return did;
}

static void *ix_main(void *arg)
{
    htex_ix_t *ix = arg;
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    int64_t idle_since = 0, sleep_ns = IX_SLEEP_MIN_NS;
    for (;;) {
        bool did = ix_turn(ix);
        pthread_mutex_lock(&ix->mu);
        bool done = ix->done;
        pthread_mutex_unlock(&ix->mu);
        if (done)
            break;
        if (did) {
            idle_since = 0;
            sleep_ns = IX_SLEEP_MIN_NS;
            continue;
        }
        int64_t now = cparsl_mono_ns();
        if (!idle_since)
            idle_since = now;
        if (now - idle_since < IX_POLL_NS) {
            sched_yield();
            continue;
        }
        /* Sleep on the doorbell: a submission wakes us at once, messages
         * from managers are seen at the next turn. */
        atomic_store(&ix->sleeping, true);
        if (!atomic_load(&ix->has_inbox)) {
            struct pollfd p = {.fd = ix->efd, .events = POLLIN};
            struct timespec ts = {0, sleep_ns};
            if (ppoll(&p, 1, &ts, NULL) > 0) {
                uint64_t v;
                if (read(ix->efd, &v, sizeof v) < 0)
                    (void)0;
            }
        }
        atomic_store(&ix->sleeping, false);
        int64_t cap = now - idle_since > IX_IDLE_LONG_NS ? IX_SLEEP_IDLE_MAX_NS
                                                         : IX_SLEEP_MAX_NS;
        if (sleep_ns < cap)
            sleep_ns *= 2;
    }
    return NULL;
}

/* Driven: one turn on the caller's thread, unless another thread is
 * turning it now (wait: block for the turn). */
static bool drive(htex_ix_t *ix, bool wait)
{
    if (wait)
        pthread_mutex_lock(&ix->turn_mu);
    else if (pthread_mutex_trylock(&ix->turn_mu) != 0)
        return false;
    pthread_mutex_lock(&ix->mu);
    bool done = ix->done;
    pthread_mutex_unlock(&ix->mu);
    bool did = !done && ix_turn(ix);
    pthread_mutex_unlock(&ix->turn_mu);
    return did;
}

/* ---- the API ---------------------------------------------------------------
 */

int htex_ix_create(cparsl_transport_t *t, const htex_ix_opts_t *o,
                   htex_ix_t **out, cparsl_error_t *err)
{
    htex_ix_t *ix = calloc(1, sizeof *ix);
    if (!ix)
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    ix->t = t;
    ix->nmgrs = o->nmanagers;
    ix->mgr_cap = o->nmanagers ? o->nmanagers : 1;
    ix->nep = t->ops->size(t);
    ix->mgrs = calloc(ix->mgr_cap, sizeof *ix->mgrs);
    ix->fifo = calloc(ix->mgr_cap, sizeof *ix->fifo);
    ix->ep_to_mgr = malloc((size_t)(ix->nep > 0 ? ix->nep : 1) * sizeof(int));
    ix->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!ix->mgrs || !ix->fifo || !ix->ep_to_mgr || ix->efd < 0) {
        htex_ix_destroy(ix);
        return cparsl_error_set(err, -ENOMEM, "interchange: no memory");
    }
    for (int i = 0; i < ix->nep; i++)
        ix->ep_to_mgr[i] = -1;
    for (size_t m = 0; m < o->nmanagers; m++) {
        int ep = o->managers[m];
        if (ep < 0 || ep >= ix->nep) {
            htex_ix_destroy(ix);
            return cparsl_error_set(err, -EINVAL,
                                    "interchange: manager endpoint %d out of "
                                    "range",
                                    ep);
        }
        ix->mgrs[m].ep = ep;
        ix->mgrs[m].node = -1;
        ix->mgrs[m].last_seen = cparsl_mono_ns();
        ix->ep_to_mgr[ep] = (int)m;
    }
    ix->free_head = NO_SLOT;
    ix->max_batch = o->max_batch ? o->max_batch : 256;
    ix->hb_threshold =
        o->heartbeat_threshold > 0 ? o->heartbeat_threshold : 120;
    ix->driven = o->driven;
    ix->hb_period_ns =
        (int64_t)((o->heartbeat_period > 0 ? o->heartbeat_period : 1.0) * 1e9);
    if (o->secret) {
        ix->joinable = true;
        memcpy(ix->secret, o->secret, HTEX_SECRET_LEN);
        snprintf(ix->build, sizeof ix->build, "%s",
                 o->build_id ? o->build_id : "");
    }
    ix->lose_silent = o->lose_silent;
    if (o->node_of_worker && o->host_of_worker && o->host_len) {
        ix->node_of_worker = o->node_of_worker;
        ix->host_of_worker = o->host_of_worker;
        ix->host_len = o->host_len;
        ix->nworkers = o->nworkers;
    }
    pthread_mutex_init(&ix->mu, NULL);
    pthread_mutex_init(&ix->turn_mu, NULL);
    pthread_cond_init(&ix->cv, NULL);
    *out = ix;
    return 0;
}

int htex_ix_start(htex_ix_t *ix, cparsl_error_t *err)
{
    if (ix->driven)
        return 0; /* turned by htex_ix_poll */
    int rc = pthread_create(&ix->thread, NULL, ix_main, ix);
    if (rc)
        return cparsl_error_set(err, -rc, "interchange: no thread: %s",
                                strerror(rc));
    ix->started = true;
    return 0;
}

int htex_ix_poll(htex_ix_t *ix)
{
    return ix->driven && drive(ix, false) ? 1 : 0;
}

/* Driven: straight into the queue; the next turn sends them. */
static int submit_driven(htex_ix_t *ix, cparsl_exec_t *const *batch, size_t n)
{
    pthread_mutex_lock(&ix->turn_mu);
    atomic_fetch_add(&ix->outstanding, n);
    for (size_t i = 0; i < n; i++) {
        if (ix->stopping) {
            cparsl_exec_fail(batch[i], CPARSL_ESHUTDOWN,
                             "the pilot is shutting down");
            complete(ix, batch[i]);
        } else if (q_push(ix, batch[i]) < 0) {
            cparsl_exec_t *e = batch[i];
            fail_batch(ix, &e, 1, -ENOMEM, "interchange: out of memory");
        }
    }
    pthread_mutex_unlock(&ix->turn_mu);
    return 0;
}

/* Wake the loop's thread from its eventfd wait.  A full counter means it
 * is awake anyway. */
static void wake(htex_ix_t *ix)
{
    uint64_t one = 1;
    if (write(ix->efd, &one, sizeof one) < 0)
        (void)0;
}

int htex_ix_submit(htex_ix_t *ix, cparsl_exec_t *const *batch, size_t n)
{
    if (ix->driven)
        return submit_driven(ix, batch, n);
    pthread_mutex_lock(&ix->mu);
    if (ix->nin + n > ix->capin) {
        size_t cap = ix->capin ? ix->capin : 1024;
        while (cap < ix->nin + n)
            cap *= 2;
        cparsl_exec_t **v = realloc(ix->inbox, cap * sizeof *v);
        if (!v) {
            pthread_mutex_unlock(&ix->mu);
            return -ENOMEM;
        }
        ix->inbox = v;
        ix->capin = cap;
        /* keep the swap buffer as large, so the thread never reallocs */
        cparsl_exec_t **w = realloc(ix->swap, cap * sizeof *w);
        if (w) {
            ix->swap = w;
            ix->capswap = cap;
        }
    }
    memcpy(ix->inbox + ix->nin, batch, n * sizeof *batch);
    ix->nin += n;
    atomic_fetch_add(&ix->outstanding, n);
    atomic_store_explicit(&ix->has_inbox, true, memory_order_release);
    pthread_mutex_unlock(&ix->mu);
    if (atomic_load(&ix->sleeping))
        wake(ix);
    return 0;
}

size_t htex_ix_outstanding(htex_ix_t *ix)
{
    return atomic_load(&ix->outstanding);
}

size_t htex_ix_capacity(htex_ix_t *ix)
{
    pthread_mutex_lock(&ix->mu);
    size_t n = ix->capacity;
    pthread_mutex_unlock(&ix->mu);
    return n;
}

static void deadline_ts(struct timespec *ts, double timeout)
{
    clock_gettime(CLOCK_REALTIME, ts);
    int64_t abs =
        ts->tv_sec * 1000000000ll + ts->tv_nsec + (int64_t)(timeout * 1e9);
    ts->tv_sec = abs / 1000000000ll;
    ts->tv_nsec = abs % 1000000000ll;
}

/* Driven: turn it here until cond holds (checked under ix->mu) or the
 * deadline passes. */
static bool drive_until(htex_ix_t *ix, bool (*cond)(htex_ix_t *),
                        double timeout)
{
    int64_t deadline = cparsl_mono_ns() + (int64_t)(timeout * 1e9);
    int64_t idle_since = 0, sleep_ns = IX_SLEEP_MIN_NS;
    for (;;) {
        pthread_mutex_lock(&ix->mu);
        bool ok = cond(ix);
        pthread_mutex_unlock(&ix->mu);
        if (ok)
            return true;
        int64_t now = cparsl_mono_ns();
        if (now >= deadline)
            return false;
        if (drive(ix, true)) {
            idle_since = 0;
            sleep_ns = IX_SLEEP_MIN_NS;
            continue;
        }
        if (!idle_since)
            idle_since = now;
        if (now - idle_since < IX_POLL_NS) {
            sched_yield();
            continue;
        }
        struct timespec ts = {0, sleep_ns};
        nanosleep(&ts, NULL);
        if (sleep_ns < IX_SLEEP_MAX_NS)
            sleep_ns *= 2;
    }
}

static bool all_registered(htex_ix_t *ix)
{
    return ix->nregistered >= ix->nmgrs;
}

static bool is_done(htex_ix_t *ix)
{
    return ix->done;
}

int htex_ix_wait_registered(htex_ix_t *ix, double timeout)
{
    if (ix->driven)
        return drive_until(ix, all_registered, timeout) ? 0 : -ETIMEDOUT;
    struct timespec ts;
    deadline_ts(&ts, timeout);
    int rc = 0;
    pthread_mutex_lock(&ix->mu);
    while (ix->nregistered < ix->nmgrs && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&ix->cv, &ix->mu, &ts);
    bool all = ix->nregistered >= ix->nmgrs;
    pthread_mutex_unlock(&ix->mu);
    return all ? 0 : -ETIMEDOUT;
}

void htex_ix_stats(htex_ix_t *ix, htex_ix_stats_t *out)
{
    out->dispatched = atomic_load(&ix->dispatched);
    out->completed = atomic_load(&ix->completed);
    out->bad_messages = atomic_load(&ix->bad_messages);
    out->msgs_in = atomic_load(&ix->msgs_in);
    out->msgs_out = atomic_load(&ix->msgs_out);
    out->bytes_in = atomic_load(&ix->bytes_in);
    out->bytes_out = atomic_load(&ix->bytes_out);
    out->stale_results = atomic_load(&ix->stale_results);
    out->joined = atomic_load(&ix->joined);
    out->refused = atomic_load(&ix->refused);
    out->lost = atomic_load(&ix->lost);
    out->requeued = atomic_load(&ix->requeued);
    pthread_mutex_lock(&ix->mu);
    out->managers_registered = ix->nregistered;
    out->slots = ix->capacity;
    pthread_mutex_unlock(&ix->mu);
}

void htex_ix_drain(htex_ix_t *ix, size_t n)
{
    pthread_mutex_lock(&ix->mu);
    ix->drain_req += n;
    pthread_mutex_unlock(&ix->mu);
    wake(ix);
}

int htex_ix_drain_block(htex_ix_t *ix, const char *block)
{
    pthread_mutex_lock(&ix->mu);
    if (ix->ndrain_blocks == ix->cap_drain_blocks) {
        size_t cap = ix->cap_drain_blocks ? 2 * ix->cap_drain_blocks : 8;
        char(*v)[HTEX_BLOCK_LEN] = realloc(ix->drain_blocks, cap * sizeof *v);
        if (!v) {
            pthread_mutex_unlock(&ix->mu);
            return -ENOMEM;
        }
        ix->drain_blocks = v;
        ix->cap_drain_blocks = cap;
    }
    snprintf(ix->drain_blocks[ix->ndrain_blocks++], HTEX_BLOCK_LEN, "%s",
             block);
    pthread_mutex_unlock(&ix->mu);
    wake(ix);
    return 0;
}

void htex_ix_fail_waiting(htex_ix_t *ix, const char *why)
{
    char *w = strdup(why);
    pthread_mutex_lock(&ix->mu);
    if (w) {
        free(ix->fail_why);
        ix->fail_why = w;
    }
    pthread_mutex_unlock(&ix->mu);
    wake(ix);
}

int htex_ix_managers(htex_ix_t *ix, htex_mgr_info_t **out, size_t *n,
                     double timeout)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)timeout;
    ts.tv_nsec += (long)((timeout - (double)(time_t)timeout) * 1e9);
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&ix->mu);
    uint64_t seq = ix->snap_seq;
    ix->snap_req = true;
    pthread_mutex_unlock(&ix->mu);
    wake(ix);
    if (ix->driven)
        drive(ix, false);
    pthread_mutex_lock(&ix->mu);
    int rc = 0;
    while (ix->snap_seq == seq && !ix->done && rc == 0)
        rc = pthread_cond_timedwait(&ix->cv, &ix->mu, &ts);
    if (ix->snap_seq == seq) {
        pthread_mutex_unlock(&ix->mu);
        return ix->done ? -CPARSL_ESHUTDOWN : -ETIMEDOUT;
    }
    htex_mgr_info_t *v = malloc((ix->nsnap ? ix->nsnap : 1) * sizeof *v);
    if (v) {
        if (ix->nsnap)
            memcpy(v, ix->snap, ix->nsnap * sizeof *v);
        *out = v;
        *n = ix->nsnap;
    }
    pthread_mutex_unlock(&ix->mu);
    return v ? 0 : -ENOMEM;
}

void htex_ix_begin_shutdown(htex_ix_t *ix)
{
    pthread_mutex_lock(&ix->mu);
    ix->stop_req = true;
    pthread_mutex_unlock(&ix->mu);
    wake(ix);
}

int htex_ix_shutdown(htex_ix_t *ix, double timeout, cparsl_error_t *err)
{
    if (ix->driven) {
        htex_ix_begin_shutdown(ix);
        if (drive_until(ix, is_done, timeout))
            return 0;
        return cparsl_error_set(err, -ETIMEDOUT,
                                "interchange: %zu of %zu managers did not "
                                "leave within %g s",
                                ix->nmgrs - ix->nbye, ix->nmgrs, timeout);
    }
    if (!ix->started)
        return 0;
    htex_ix_begin_shutdown(ix);
    struct timespec ts;
    deadline_ts(&ts, timeout);
    int rc = 0;
    pthread_mutex_lock(&ix->mu);
    while (!ix->done && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&ix->cv, &ix->mu, &ts);
    bool done = ix->done;
    pthread_mutex_unlock(&ix->mu);
    if (!done)
        return cparsl_error_set(err, -ETIMEDOUT,
                                "interchange: %zu of %zu managers did not "
                                "leave within %g s",
                                ix->nmgrs - ix->nbye, ix->nmgrs, timeout);
    pthread_join(ix->thread, NULL);
    ix->started = false;
    return 0;
}

void htex_ix_destroy(htex_ix_t *ix)
{
    if (!ix)
        return;
    if (ix->started)
        return; /* its thread still runs: leave it (reported at shutdown) */
    free(ix->inbox);
    free(ix->swap);
    free(ix->q);
    free(ix->slots);
    free(ix->mgrs);
    free(ix->fifo);
    free(ix->ep_to_mgr);
    free(ix->drain_blocks);
    free(ix->fail_why);
    free(ix->snap);
    cparsl_exec_clear_error(&ix->scratch);
    htex_buf_free(&ix->out);
    if (ix->efd >= 0)
        close(ix->efd);
    pthread_mutex_destroy(&ix->mu);
    pthread_mutex_destroy(&ix->turn_mu);
    pthread_cond_destroy(&ix->cv);
    free(ix);
}
