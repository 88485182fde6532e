/*
 * mux.c - two transports as one (see mux.h).
 *
 * The second transport's received buffers are remembered in a small
 * open-addressed set of pointers, so msg_free can give each back to the
 * transport it came from; everything else is the first's.  Receives
 * alternate between the two, so neither starves the other.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mux.h"

struct mux {
    cparsl_transport_t base;
    cparsl_transport_t *a, *b;
    int off;   /* b's peers start here */
    bool turn; /* which one try_recv polls first */
    void **held;
    size_t cap, n;
};

static size_t slot_of(const struct mux *m, const void *p)
{
    uintptr_t h = (uintptr_t)p;
    h ^= h >> 17;
    h *= (uintptr_t)0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 20) & (m->cap - 1);
}

static bool held_grow(struct mux *m)
{
    if ((m->n + 1) * 2 <= m->cap)
        return true;
    size_t cap = m->cap ? m->cap * 2 : 64;
    void **v = calloc(cap, sizeof *v);
    if (!v)
        return false;
    void **old = m->held;
    size_t ocap = m->cap;
    m->held = v;
    m->cap = cap;
    for (size_t i = 0; i < ocap; i++)
        if (old[i]) {
            size_t j = slot_of(m, old[i]);
            while (m->held[j])
                j = (j + 1) & (cap - 1);
            m->held[j] = old[i];
        }
    free(old);
    return true;
}

/* Remove p from the set: true if it was there (a b buffer). */
static bool held_take(struct mux *m, void *p)
{
    if (!m->n)
        return false;
    size_t j = slot_of(m, p);
    while (m->held[j] && m->held[j] != p)
        j = (j + 1) & (m->cap - 1);
    if (!m->held[j])
        return false;
    m->held[j] = NULL;
    m->n--;
    /* Re-seat the run after the hole (linear probing). */
    for (size_t k = (j + 1) & (m->cap - 1); m->held[k];
         k = (k + 1) & (m->cap - 1)) {
        void *q = m->held[k];
        m->held[k] = NULL;
        size_t s = slot_of(m, q);
        while (m->held[s])
            s = (s + 1) & (m->cap - 1);
        m->held[s] = q;
    }
    return true;
}

static void *mx_alloc(cparsl_transport_t *t, size_t len)
{
    struct mux *m = (struct mux *)t;
    return m->a->ops->msg_alloc(m->a, len);
}

static void mx_free(cparsl_transport_t *t, void *buf)
{
    struct mux *m = (struct mux *)t;
    if (held_take(m, buf))
        m->b->ops->msg_free(m->b, buf);
    else
        m->a->ops->msg_free(m->a, buf);
}

static int mx_send(cparsl_transport_t *t, int peer, void *buf, size_t len)
{
    struct mux *m = (struct mux *)t;
    if (peer < m->off)
        return m->a->ops->send(m->a, peer, buf, len);
    void *copy = m->b->ops->msg_alloc(m->b, len);
    if (copy)
        memcpy(copy, buf, len);
    m->a->ops->msg_free(m->a, buf);
    if (!copy)
        return -ENOMEM;
    return m->b->ops->send(m->b, peer - m->off, copy, len);
}

static int recv_b(struct mux *m, int *peer, void **buf, size_t *len,
                  cparsl_error_t *err)
{
    if (!held_grow(m))
        return 0; /* try again later: the messages wait in b */
    int rc = m->b->ops->try_recv(m->b, peer, buf, len, err);
    if (rc <= 0)
        return rc;
    if (*peer >= 0)
        *peer += m->off;
    size_t j = slot_of(m, *buf);
    while (m->held[j])
        j = (j + 1) & (m->cap - 1);
    m->held[j] = *buf;
    m->n++;
    return 1;
}

static int mx_recv(cparsl_transport_t *t, int *peer, void **buf, size_t *len,
                   cparsl_error_t *err)
{
    struct mux *m = (struct mux *)t;
    m->turn = !m->turn;
    int rc;
    if (m->turn) {
        if ((rc = recv_b(m, peer, buf, len, err)) != 0)
            return rc;
        return m->a->ops->try_recv(m->a, peer, buf, len, err);
    }
    if ((rc = m->a->ops->try_recv(m->a, peer, buf, len, err)) != 0)
        return rc;
    return recv_b(m, peer, buf, len, err);
}

static int mx_progress(cparsl_transport_t *t)
{
    struct mux *m = (struct mux *)t;
    int ra = m->a->ops->progress(m->a), rb = m->b->ops->progress(m->b);
    if (ra < 0)
        return ra;
    if (rb < 0)
        return rb;
    return ra + rb;
}

static int mx_self(cparsl_transport_t *t)
{
    struct mux *m = (struct mux *)t;
    return m->a->ops->self(m->a);
}

static int mx_size(cparsl_transport_t *t)
{
    struct mux *m = (struct mux *)t;
    return m->off + m->b->ops->size(m->b);
}

static int mx_admit(cparsl_transport_t *t, const void *name, size_t len,
                    int *peer, cparsl_error_t *err)
{
    struct mux *m = (struct mux *)t;
    if (!m->b->ops->admit)
        return cparsl_error_set(err, -ENOSYS, "no strangers on this transport");
    int rc = m->b->ops->admit(m->b, name, len, peer, err);
    if (rc == 0)
        *peer += m->off;
    return rc;
}

static void mx_trust(cparsl_transport_t *t, int peer)
{
    struct mux *m = (struct mux *)t;
    if (peer >= m->off && m->b->ops->trust)
        m->b->ops->trust(m->b, peer - m->off);
}

static void mx_forget(cparsl_transport_t *t, int peer)
{
    struct mux *m = (struct mux *)t;
    if (peer >= m->off && m->b->ops->forget)
        m->b->ops->forget(m->b, peer - m->off);
}

static void mx_destroy(cparsl_transport_t *t)
{
    struct mux *m = (struct mux *)t;
    /* Buffers still held are the caller's leak; the transports free
     * their pools when they are destroyed. */
    free(m->held);
    free(m);
}

static const struct cparsl_transport_ops mux_ops = {
    .name = "mux",
    .msg_alloc = mx_alloc,
    .send = mx_send,
    .try_recv = mx_recv,
    .msg_free = mx_free,
    .progress = mx_progress,
    .self = mx_self,
    .size = mx_size,
    .destroy = mx_destroy,
    .admit = mx_admit,
    .trust = mx_trust,
    .forget = mx_forget,
};

int htex_mux_create(cparsl_transport_t *a, cparsl_transport_t *b, int base,
                    cparsl_transport_t **out)
{
    if (base < a->ops->size(a))
        return -EINVAL;
    struct mux *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    m->base.ops = &mux_ops;
    m->a = a;
    m->b = b;
    m->off = base;
    *out = &m->base;
    return 0;
}
