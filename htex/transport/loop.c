/*
 * loop.c - the in-process transport (see loop.h).
 *
 * Owns the fabric: n endpoints in one cache-aligned array, their inboxes
 * and the buffer pool.  A message is one buffer with a small header in
 * front of the caller's bytes; send links it into the peer's inbox and
 * the receiver gives it back to the pool.
 *
 * Threads.  Shared between threads: each inbox (its own mutex) and the
 * pool's depot (one mutex per size class).  Private to the thread driving
 * an endpoint: its receive list and its buffer cache.  A receiver takes
 * its whole inbox at once, so a burst costs one lock, not one per
 * message.  Buffers flow from senders to receivers, so caches trade with
 * the depot in batches (the magazine scheme): a receiver's cache spills
 * a batch into the depot, a sender's empty cache takes one; both sides
 * pay one lock per batch.
 *
 * Lifetime.  Each endpoint holds a reference on the fabric; the last
 * destroy frees it.  An endpoint's inbox stays valid until then, marked
 * closed, so a late send to it fails cleanly (-EPIPE).
 */
#include <errno.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cparsl/plugin.h>

#include "loop.h"

/* Size classes: 256 B << c for c in [0, LOOP_NCLASS); larger buffers are
 * malloc'd and freed one by one (they are rare and large anyway). */
#define LOOP_MIN_SHIFT      8
#define LOOP_NCLASS         15          /* up to 4 MiB */
#define LOOP_CACHE_BYTES    (1u << 20)  /* per endpoint and class */
#define LOOP_DEPOT_BYTES    (16u << 20) /* per fabric and class */
#define LOOP_CACHE_MAX_BUFS 64u         /* per endpoint and class */
#define LOOP_DEPOT_MAX_BUFS 65536u      /* per fabric and class */
#define LOOP_CACHELINE      64

struct lmsg {
    struct lmsg *next; /* inbox, receive list or free list */
    size_t len;        /* bytes sent */
    size_t cap;        /* bytes the caller may use */
    int from;          /* sender's endpoint number */
    int cls;           /* size class, or -1 when not pooled */
    alignas(max_align_t) unsigned char data[];
};

struct lcache {
    struct lmsg *head;
    unsigned n;
};

struct ldepot {
    pthread_mutex_t mu;
    struct lmsg *head;
    unsigned n;
};

struct loop_fabric;

struct loop_ep {
    cparsl_transport_t base; /* first: the handle callers hold */
    struct loop_fabric *fab;
    int self;
    /* Inbox: written by every sender, under mu. */
    alignas(LOOP_CACHELINE) pthread_mutex_t mu;
    struct lmsg *in_head, *in_tail;
    atomic_size_t in_n; /* read without mu as a hint */
    bool closed;
    /* Private to the thread driving this endpoint. */
    alignas(LOOP_CACHELINE) struct lmsg *rx;
    struct lcache cache[LOOP_NCLASS];
};

struct loop_fabric {
    atomic_int refs;
    int n;
    atomic_size_t allocs;
    struct ldepot depot[LOOP_NCLASS];
    struct loop_ep *eps; /* n, cache-aligned */
};

static inline struct loop_ep *ep_of(cparsl_transport_t *t)
{
    return cparsl_container_of(t, struct loop_ep, base);
}

static inline struct lmsg *msg_of(void *buf)
{
    return cparsl_container_of(buf, struct lmsg, data);
}

static inline size_t class_size(int c)
{
    return (size_t)1 << (LOOP_MIN_SHIFT + c);
}

/* Smallest class holding len bytes, or -1 if none does. */
static int class_of(size_t len)
{
    int c = 0;
    while (c < LOOP_NCLASS && class_size(c) < len)
        c++;
    return c < LOOP_NCLASS ? c : -1;
}

static unsigned clamp_bufs(size_t bytes, size_t each, unsigned lo, unsigned hi)
{
    size_t k = bytes / each;
    return k < lo ? lo : k > hi ? hi : (unsigned)k;
}

static unsigned cache_max(int c)
{
    return clamp_bufs(LOOP_CACHE_BYTES, class_size(c), 2, LOOP_CACHE_MAX_BUFS);
}

static unsigned depot_max(int c)
{
    return clamp_bufs(LOOP_DEPOT_BYTES, class_size(c), 4, LOOP_DEPOT_MAX_BUFS);
}

static void free_chain(struct lmsg *m)
{
    while (m) {
        struct lmsg *next = m->next;
        free(m);
        m = next;
    }
}

/* ---- buffer pool -------------------------------------------------------- */

static struct lmsg *pool_get(struct loop_ep *ep, size_t len)
{
    struct loop_fabric *fab = ep->fab;
    int c = class_of(len);
    if (c < 0) {
        if (len > SIZE_MAX - sizeof(struct lmsg))
            return NULL;
        struct lmsg *m = malloc(sizeof(*m) + len);
        if (!m)
            return NULL;
        atomic_fetch_add_explicit(&fab->allocs, 1, memory_order_relaxed);
        m->cap = len;
        m->cls = -1;
        return m;
    }
    struct lcache *lc = &ep->cache[c];
    if (!lc->head) {
        /* Refill half a cache from the depot in one lock. */
        struct ldepot *d = &fab->depot[c];
        unsigned want = cache_max(c) / 2;
        pthread_mutex_lock(&d->mu);
        struct lmsg *head = d->head, *last = NULL;
        unsigned k = 0;
        for (struct lmsg *m = head; m && k < want; m = m->next, k++)
            last = m;
        if (last) {
            d->head = last->next;
            d->n -= k;
            last->next = NULL;
            lc->head = head;
            lc->n = k;
        }
        pthread_mutex_unlock(&d->mu);
    }
    struct lmsg *m = lc->head;
    if (m) {
        lc->head = m->next;
        lc->n--;
        return m;
    }
    m = malloc(sizeof(*m) + class_size(c));
    if (!m)
        return NULL;
    atomic_fetch_add_explicit(&fab->allocs, 1, memory_order_relaxed);
    m->cap = class_size(c);
    m->cls = c;
    return m;
}

/* Move the whole cache of class c to the depot (or free what it refuses). */
static void cache_spill(struct loop_ep *ep, int c, unsigned keep)
{
    struct lcache *lc = &ep->cache[c];
    if (lc->n <= keep)
        return;
    /* Detach all but the first 'keep' buffers. */
    struct lmsg *last_kept = NULL, *chain = lc->head;
    for (unsigned i = 0; i < keep; i++) {
        last_kept = chain;
        chain = chain->next;
    }
    unsigned k = lc->n - keep;
    if (last_kept)
        last_kept->next = NULL;
    else
        lc->head = NULL;
    lc->n = keep;

    struct ldepot *d = &ep->fab->depot[c];
    pthread_mutex_lock(&d->mu);
    if (d->n + k <= depot_max(c)) {
        struct lmsg *tail = chain;
        while (tail->next)
            tail = tail->next;
        tail->next = d->head;
        d->head = chain;
        d->n += k;
        chain = NULL;
    }
    pthread_mutex_unlock(&d->mu);
    free_chain(chain);
}

static void pool_put(struct loop_ep *ep, struct lmsg *m)
{
    if (m->cls < 0) {
        free(m);
        return;
    }
    struct lcache *lc = &ep->cache[m->cls];
    m->next = lc->head;
    lc->head = m;
    if (++lc->n > cache_max(m->cls))
        cache_spill(ep, m->cls, cache_max(m->cls) / 2);
}

/* ---- ops ---------------------------------------------------------------- */

static void *loop_msg_alloc(cparsl_transport_t *t, size_t len)
{
    struct lmsg *m = pool_get(ep_of(t), len);
    return m ? m->data : NULL;
}

static void loop_msg_free(cparsl_transport_t *t, void *buf)
{
    if (buf)
        pool_put(ep_of(t), msg_of(buf));
}

static int loop_send(cparsl_transport_t *t, int peer, void *buf, size_t len)
{
    struct loop_ep *ep = ep_of(t);
    if (!buf)
        return -EINVAL;
    struct lmsg *m = msg_of(buf);
    if (peer < 0 || peer >= ep->fab->n || len > m->cap) {
        pool_put(ep, m);
        return -EINVAL;
    }
    m->len = len;
    m->from = ep->self;
    m->next = NULL;

    struct loop_ep *dst = &ep->fab->eps[peer];
    pthread_mutex_lock(&dst->mu);
    if (dst->closed) {
        pthread_mutex_unlock(&dst->mu);
        pool_put(ep, m);
        return -EPIPE;
    }
    if (dst->in_tail)
        dst->in_tail->next = m;
    else
        dst->in_head = m;
    dst->in_tail = m;
    atomic_fetch_add_explicit(&dst->in_n, 1, memory_order_relaxed);
    pthread_mutex_unlock(&dst->mu);
    return 0;
}

static int loop_try_recv(cparsl_transport_t *t, int *peer, void **buf,
                         size_t *len, cparsl_error_t *err)
{
    struct loop_ep *ep = ep_of(t);
    (void)err;
    if (!ep->rx) {
        /* The count is only a hint; the mutex orders the contents. */
        if (atomic_load_explicit(&ep->in_n, memory_order_relaxed) == 0)
            return 0;
        pthread_mutex_lock(&ep->mu);
        ep->rx = ep->in_head;
        ep->in_head = ep->in_tail = NULL;
        atomic_store_explicit(&ep->in_n, 0, memory_order_relaxed);
        pthread_mutex_unlock(&ep->mu);
        if (!ep->rx)
            return 0;
    }
    struct lmsg *m = ep->rx;
    ep->rx = m->next;
    *peer = m->from;
    *buf = m->data;
    *len = m->len;
    return 1;
}

static int loop_progress(cparsl_transport_t *t)
{
    (void)t;
    return 0;
}

static int loop_self(cparsl_transport_t *t)
{
    return ep_of(t)->self;
}

static int loop_size(cparsl_transport_t *t)
{
    return ep_of(t)->fab->n;
}

static void fabric_free(struct loop_fabric *fab)
{
    for (int c = 0; c < LOOP_NCLASS; c++) {
        free_chain(fab->depot[c].head);
        pthread_mutex_destroy(&fab->depot[c].mu);
    }
    for (int i = 0; i < fab->n; i++)
        pthread_mutex_destroy(&fab->eps[i].mu);
    free(fab->eps);
    free(fab);
}

static void loop_destroy(cparsl_transport_t *t)
{
    if (!t)
        return;
    struct loop_ep *ep = ep_of(t);
    struct loop_fabric *fab = ep->fab;

    pthread_mutex_lock(&ep->mu);
    ep->closed = true;
    struct lmsg *left = ep->in_head;
    ep->in_head = ep->in_tail = NULL;
    atomic_store_explicit(&ep->in_n, 0, memory_order_relaxed);
    pthread_mutex_unlock(&ep->mu);

    /* Undelivered messages go back to the pool, then the cache to the
     * depot, so the endpoints still running can reuse them. */
    while (left) {
        struct lmsg *next = left->next;
        pool_put(ep, left);
        left = next;
    }
    while (ep->rx) {
        struct lmsg *next = ep->rx->next;
        pool_put(ep, ep->rx);
        ep->rx = next;
    }
    for (int c = 0; c < LOOP_NCLASS; c++)
        cache_spill(ep, c, 0);

    if (atomic_fetch_sub_explicit(&fab->refs, 1, memory_order_acq_rel) == 1)
        fabric_free(fab);
}

const struct cparsl_transport_ops htex_loop_ops = {
    .name = "loop",
    .msg_alloc = loop_msg_alloc,
    .send = loop_send,
    .try_recv = loop_try_recv,
    .msg_free = loop_msg_free,
    .progress = loop_progress,
    .self = loop_self,
    .size = loop_size,
    .destroy = loop_destroy,
};

int htex_loop_create(int n, cparsl_transport_t **eps, cparsl_error_t *err)
{
    if (n < 1 || !eps)
        return cparsl_error_set(err, -EINVAL,
                                "loop transport: need n >= 1 endpoints "
                                "and an array for them (n=%d)",
                                n);
    struct loop_fabric *fab = calloc(1, sizeof(*fab));
    size_t bytes = (size_t)n * sizeof(struct loop_ep);
    struct loop_ep *arr =
        fab ? aligned_alloc(alignof(struct loop_ep), bytes) : NULL;
    if (!arr) {
        free(fab);
        return cparsl_error_set(
            err, -ENOMEM, "loop transport: no memory for %d endpoints", n);
    }
    memset(arr, 0, bytes);
    fab->n = n;
    fab->eps = arr;
    atomic_init(&fab->refs, n);
    atomic_init(&fab->allocs, 0);
    for (int c = 0; c < LOOP_NCLASS; c++)
        pthread_mutex_init(&fab->depot[c].mu, NULL);
    for (int i = 0; i < n; i++) {
        struct loop_ep *ep = &arr[i];
        ep->base.ops = &htex_loop_ops;
        ep->fab = fab;
        ep->self = i;
        pthread_mutex_init(&ep->mu, NULL);
        atomic_init(&ep->in_n, 0);
        eps[i] = &ep->base;
    }
    return 0;
}

size_t htex_loop_allocs(cparsl_transport_t *ep)
{
    return atomic_load_explicit(&ep_of(ep)->fab->allocs, memory_order_relaxed);
}
