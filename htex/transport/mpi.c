/*
 * mpi.c - the MPI transport (see mpi.h).
 *
 * Owns: a duplicate of the caller's communicator (errors return, never
 * abort), the sends in flight, at most one receive still arriving, and a
 * buffer pool.  One thread drives an instance, so nothing here locks.
 *
 * Nothing blocks in MPI (Open MPI spins in blocking calls; DESIGN.md):
 *   - send is MPI_Isend; the request and buffer join a pending array that
 *     progress tests with MPI_Testsome, a bounded window per call (a
 *     rotating cursor), so a burst of thousands of sends does not make
 *     every loop turn cost O(sends in flight).  Sends complete in any
 *     order, so a finished slot is filled from the end of the array.
 *   - try_recv is MPI_Improbe (twice on a miss: see there); a matched
 *     message is received with MPI_Imrecv and tested at once.  A small
 *     message is complete on the spot; a large one (rendezvous) stays as
 *     the one receive in progress, and later try_recv calls test it
 *     before matching anything else, so messages are delivered in the
 *     order they were matched (per-sender order is MPI's non-overtaking
 *     rule).  Unlike MPI_Mrecv this never spins while a sleeping peer
 *     feeds a large message.
 *
 * Buffers: a header in front of the caller's bytes records the size
 * class; free lists per class (256 B << c) hold a bounded number of
 * buffers each; buffers over the largest class are malloc'd one by one.
 */
#include <errno.h>
#include <limits.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cparsl/plugin.h>

#include "backoff.h"
#include "mpi.h"

/* A message's tag is MPI_TR_TAG + the sender's port; the communicator is
 * the receiver's port's own duplicate. */
#define MPI_TR_TAG           1
#define MPI_TR_MIN_SHIFT     8
#define MPI_TR_NCLASS        15           /* 256 B .. 4 MiB */
#define MPI_TR_POOL_BYTES    (1u << 20)   /* kept per class */
#define MPI_TR_POOL_MAX_BUFS 4096u        /* kept per class */
#define MPI_TR_WINDOW        128          /* sends tested per progress call */
#define MPI_TR_DRAIN_NS      5000000000LL /* destroy waits this long for sends */
#define MPI_TR_CANCEL_NS     200000000LL  /* and this long for cancellations */

struct mbuf {
    struct mbuf *next; /* free list */
    size_t cap;        /* bytes the caller may use */
    int cls;           /* size class, or -1 when not pooled */
    alignas(max_align_t) unsigned char data[];
};

/* The communicators of a set of ports (see mpi.h): comms[p] carries the
 * messages addressed to port p. */
struct htex_mpi_ports {
    MPI_Comm *comms;
    int nports, nranks, rank;
    int nvirtual; /* ports past nports: they all arrive on comms[0] */
};

/* Tag of a message from port 'src' to port 'dst': the sender's port in
 * the low 15 bits; a virtual destination port above them (a real one is
 * known from the communicator the message arrives on). */
#define PORT_BITS 15
#define PORT_MAX  ((1 << PORT_BITS) - 1)

static int port_tag(const htex_mpi_ports_t *ps, int src, int dst)
{
    return MPI_TR_TAG + src + (dst >= ps->nports ? dst << PORT_BITS : 0);
}

struct mpi_tr {
    cparsl_transport_t base; /* first: the handle callers hold */
    htex_mpi_ports_t *ports;
    bool own_ports; /* made by htex_mpi_transport_create: freed with it */
    MPI_Comm comm;  /* ports->comms[port]: where messages to us arrive */
    int port;
    int rank, size; /* our endpoint (port * nranks + rank) and the count */
    int rdst;       /* endpoint the message in progress was sent to */

    /* Sends in flight: parallel arrays, the requests contiguous for
     * MPI_Testsome. */
    MPI_Request *sreq;
    struct mbuf **sbuf;
    int nsend, capsend, cursor;
    int idx[MPI_TR_WINDOW];
    MPI_Status st[MPI_TR_WINDOW];

    /* A matched message: not yet received (no buffer: rmsg), or being
     * received (rreq). */
    MPI_Message rmsg;
    MPI_Request rreq;
    struct mbuf *rbuf;
    int rsrc, rcount;

    struct {
        struct mbuf *head;
        unsigned n;
    } pool[MPI_TR_NCLASS];
    size_t allocs;

    char last_error[MPI_MAX_ERROR_STRING + 128];
};

static inline struct mpi_tr *tr_of(cparsl_transport_t *t)
{
    return cparsl_container_of(t, struct mpi_tr, base);
}

static inline struct mbuf *buf_of(void *p)
{
    return cparsl_container_of(p, struct mbuf, data);
}

static inline size_t class_size(int c)
{
    return (size_t)1 << (MPI_TR_MIN_SHIFT + c);
}

static unsigned pool_max(int c)
{
    size_t k = MPI_TR_POOL_BYTES / class_size(c);
    return k < 2                      ? 2
           : k > MPI_TR_POOL_MAX_BUFS ? MPI_TR_POOL_MAX_BUFS
                                      : (unsigned)k;
}

/* Record an MPI failure (text kept, and copied into err) and return
 * -CPARSL_ETRANSPORT. */
static int mpi_fail(struct mpi_tr *tr, cparsl_error_t *err, int rc,
                    const char *what)
{
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, s, &len) != MPI_SUCCESS)
        snprintf(s, sizeof(s), "MPI error %d", rc);
    if (tr)
        snprintf(tr->last_error, sizeof(tr->last_error),
                 "mpi transport: %s: %s", what, s);
    return cparsl_error_set(err, CPARSL_ETRANSPORT, "mpi transport: %s: %s",
                            what, s);
}

/* ---- buffer pool -------------------------------------------------------- */

static struct mbuf *pool_get(struct mpi_tr *tr, size_t len)
{
    int c = 0;
    while (c < MPI_TR_NCLASS && class_size(c) < len)
        c++;
    struct mbuf *m;
    if (c < MPI_TR_NCLASS && (m = tr->pool[c].head)) {
        tr->pool[c].head = m->next;
        tr->pool[c].n--;
        return m;
    }
    size_t cap = c < MPI_TR_NCLASS ? class_size(c) : len;
    if (cap > SIZE_MAX - sizeof(*m))
        return NULL;
    m = malloc(sizeof(*m) + cap);
    if (!m)
        return NULL;
    tr->allocs++;
    m->cap = cap;
    m->cls = c < MPI_TR_NCLASS ? c : -1;
    return m;
}

static void pool_put(struct mpi_tr *tr, struct mbuf *m)
{
    if (m->cls < 0 || tr->pool[m->cls].n >= pool_max(m->cls)) {
        free(m);
        return;
    }
    m->next = tr->pool[m->cls].head;
    tr->pool[m->cls].head = m;
    tr->pool[m->cls].n++;
}

/* ---- ops ---------------------------------------------------------------- */

static void *tr_msg_alloc(cparsl_transport_t *t, size_t len)
{
    struct mbuf *m = pool_get(tr_of(t), len);
    return m ? m->data : NULL;
}

static void tr_msg_free(cparsl_transport_t *t, void *buf)
{
    if (buf)
        pool_put(tr_of(t), buf_of(buf));
}

static int grow_sends(struct mpi_tr *tr)
{
    int cap = tr->capsend ? 2 * tr->capsend : 64;
    MPI_Request *r = realloc(tr->sreq, (size_t)cap * sizeof(*r));
    if (!r)
        return -ENOMEM;
    tr->sreq = r;
    struct mbuf **b = realloc(tr->sbuf, (size_t)cap * sizeof(*b));
    if (!b)
        return -ENOMEM;
    tr->sbuf = b;
    tr->capsend = cap;
    return 0;
}

static int send_from(struct mpi_tr *tr, int src_port, int peer, void *buf,
                     size_t len);

static int tr_send(cparsl_transport_t *t, int peer, void *buf, size_t len)
{
    struct mpi_tr *tr = tr_of(t);
    return send_from(tr, tr->port, peer, buf, len);
}

static int send_from(struct mpi_tr *tr, int src_port, int peer, void *buf,
                     size_t len)
{
    if (!buf)
        return -EINVAL;
    struct mbuf *m = buf_of(buf);
    int rc = 0;
    if (peer < 0 || peer >= tr->size || len > m->cap)
        rc = -EINVAL;
    else if (len > INT_MAX)
        rc = -EMSGSIZE;
    else if (tr->nsend == tr->capsend)
        rc = grow_sends(tr);
    if (rc) {
        pool_put(tr, m);
        return rc;
    }
    MPI_Request req;
    const htex_mpi_ports_t *ps = tr->ports;
    int dport = peer / ps->nranks;
    int mrc = MPI_Isend(m->data, (int)len, MPI_BYTE, peer % ps->nranks,
                        port_tag(ps, src_port, dport),
                        ps->comms[dport < ps->nports ? dport : 0], &req);
    if (mrc != MPI_SUCCESS) {
        pool_put(tr, m);
        return mpi_fail(tr, NULL, mrc, "MPI_Isend");
    }
    tr->sreq[tr->nsend] = req;
    tr->sbuf[tr->nsend] = m;
    tr->nsend++;
    return 0;
}

static int cmp_desc(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x < y) - (x > y);
}

static int tr_progress(cparsl_transport_t *t)
{
    struct mpi_tr *tr = tr_of(t);
    if (tr->nsend == 0)
        return 0;
    if (tr->cursor >= tr->nsend)
        tr->cursor = 0;
    int base = tr->cursor;
    int w = tr->nsend - base;
    if (w > MPI_TR_WINDOW)
        w = MPI_TR_WINDOW;
    int done = 0;
    int mrc = MPI_Testsome(w, tr->sreq + base, &done, tr->idx, tr->st);
    if (mrc != MPI_SUCCESS && mrc != MPI_ERR_IN_STATUS)
        return mpi_fail(tr, NULL, mrc, "MPI_Testsome");
    if (done == MPI_UNDEFINED)
        done = 0;
    int failed = 0;
    if (mrc == MPI_ERR_IN_STATUS)
        for (int k = 0; k < done; k++)
            if (tr->st[k].MPI_ERROR != MPI_SUCCESS && !failed++)
                mpi_fail(tr, NULL, tr->st[k].MPI_ERROR, "send completion");
    /* Fill each finished slot from the end, highest slot first, so the
     * element moved in is always one still in flight. */
    qsort(tr->idx, (size_t)done, sizeof(int), cmp_desc);
    for (int k = 0; k < done; k++) {
        int i = base + tr->idx[k];
        pool_put(tr, tr->sbuf[i]);
        tr->nsend--;
        tr->sreq[i] = tr->sreq[tr->nsend];
        tr->sbuf[i] = tr->sbuf[tr->nsend];
    }
    tr->cursor = base + w;
    return failed ? -CPARSL_ETRANSPORT : tr->nsend;
}

/* Start receiving the matched message tr->rmsg (its size is rcount);
 * 0, or -ENOMEM (the message stays matched for the next try). */
static int start_recv(struct mpi_tr *tr, cparsl_error_t *err)
{
    struct mbuf *m = pool_get(tr, (size_t)tr->rcount);
    if (!m)
        return cparsl_error_set(err, -ENOMEM,
                                "mpi transport: no memory for a %d-byte "
                                "message from rank %d",
                                tr->rcount, tr->rsrc);
    int mrc = MPI_Imrecv(m->data, tr->rcount, MPI_BYTE, &tr->rmsg, &tr->rreq);
    if (mrc != MPI_SUCCESS) {
        pool_put(tr, m);
        tr->rmsg = MPI_MESSAGE_NULL;
        tr->rreq = MPI_REQUEST_NULL;
        return mpi_fail(tr, err, mrc, "MPI_Imrecv");
    }
    tr->rbuf = m;
    return 0;
}

/* Test the receive in progress: 1 when it is complete, 0 if not yet. */
static int test_recv(struct mpi_tr *tr, cparsl_error_t *err)
{
    int flag = 0;
    int mrc = MPI_Test(&tr->rreq, &flag, MPI_STATUS_IGNORE);
    if (mrc != MPI_SUCCESS) {
        /* MPI may still write into the buffer: leak it, never reuse. */
        tr->rreq = MPI_REQUEST_NULL;
        tr->rbuf = NULL;
        return mpi_fail(tr, err, mrc, "MPI_Test (receive)");
    }
    return flag;
}

static int tr_try_recv(cparsl_transport_t *t, int *peer, void **buf,
                       size_t *len, cparsl_error_t *err)
{
    struct mpi_tr *tr = tr_of(t);
    int rc;
    if (tr->rreq == MPI_REQUEST_NULL && tr->rmsg == MPI_MESSAGE_NULL) {
        /* Open MPI's MPI_Improbe matches first and progresses after a
         * miss, without matching again: one probe after a sleep misses
         * what arrived during the sleep (a whole backoff step of latency).
         * The second probe sees what the first one's progress brought. */
        int flag = 0;
        MPI_Status st;
        for (int k = 0; k < 2 && !flag; k++) {
            int mrc = MPI_Improbe(MPI_ANY_SOURCE, MPI_ANY_TAG, tr->comm, &flag,
                                  &tr->rmsg, &st);
            if (mrc != MPI_SUCCESS)
                return mpi_fail(tr, err, mrc, "MPI_Improbe");
        }
        if (!flag)
            return 0;
        if (MPI_Get_count(&st, MPI_BYTE, &tr->rcount) != MPI_SUCCESS ||
            tr->rcount < 0)
            tr->rcount = 0; /* cannot happen for MPI_BYTE */
        /* The sender's endpoint: its rank, on the port its tag names (a
         * tag out of range cannot come from cparsl: it reads as an
         * endpoint no one has, and the caller drops it as unknown). */
        const htex_mpi_ports_t *ps = tr->ports;
        int tag = st.MPI_TAG - MPI_TR_TAG;
        int sport = tag >= 0 ? tag & PORT_MAX : -1;
        int dport = tag >= 0 ? tag >> PORT_BITS : 0;
        int nall = ps->nports + ps->nvirtual;
        tr->rsrc = sport >= 0 && sport < nall
                       ? sport * ps->nranks + st.MPI_SOURCE
                       : tr->size;
        tr->rdst = (dport >= ps->nports && dport < nall ? dport : tr->port) *
                       ps->nranks +
                   ps->rank;
    }
    if (tr->rreq == MPI_REQUEST_NULL && (rc = start_recv(tr, err)) < 0)
        return rc;
    if ((rc = test_recv(tr, err)) <= 0)
        return rc;
    *peer = tr->rsrc;
    *buf = tr->rbuf->data;
    *len = (size_t)tr->rcount;
    tr->rbuf = NULL;
    return 1;
}

static int tr_self(cparsl_transport_t *t)
{
    return tr_of(t)->rank;
}

static int tr_size(cparsl_transport_t *t)
{
    return tr_of(t)->size;
}

/* Receive and drop whatever has arrived; 1 if anything was seen. */
static int drain_incoming(struct mpi_tr *tr)
{
    int seen = 0, peer, rc;
    void *buf = NULL;
    size_t len;
    while ((rc = tr_try_recv(&tr->base, &peer, &buf, &len, NULL)) == 1) {
        tr_msg_free(&tr->base, buf);
        seen = 1;
    }
    return seen || tr->rreq != MPI_REQUEST_NULL;
}

static void tr_destroy(cparsl_transport_t *t)
{
    if (!t)
        return;
    struct mpi_tr *tr = tr_of(t);
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) {
        /* Let sends finish; meanwhile receive and drop what arrives, so
         * peers that are closing too see their sends complete. */
        htex_backoff_t b = HTEX_BACKOFF_INIT;
        int64_t end = htex_now_ns() + MPI_TR_DRAIN_NS;
        int busy = drain_incoming(tr);
        while ((tr->nsend > 0 || busy) && htex_now_ns() < end) {
            int before = tr->nsend;
            if (tr_progress(t) < 0 && tr->nsend == before)
                break;
            busy = drain_incoming(tr);
            if (tr->nsend < before || busy)
                htex_backoff_reset(&b);
            else
                htex_backoff_wait(&b);
        }
        /* Cancel what is left; a buffer MPI may still read or write is
         * leaked rather than reused. */
        for (int i = 0; i < tr->nsend; i++)
            MPI_Cancel(&tr->sreq[i]);
        if (tr->rreq != MPI_REQUEST_NULL)
            MPI_Cancel(&tr->rreq);
        end = htex_now_ns() + MPI_TR_CANCEL_NS;
        while (tr->nsend > 0 && htex_now_ns() < end) {
            int before = tr->nsend;
            tr_progress(t);
            if (tr->nsend == before)
                htex_backoff_wait(&b);
        }
        for (int i = 0; i < tr->nsend; i++)
            MPI_Request_free(&tr->sreq[i]);
        if (tr->rreq != MPI_REQUEST_NULL) {
            int flag = 0;
            if (MPI_Test(&tr->rreq, &flag, MPI_STATUS_IGNORE) == MPI_SUCCESS &&
                flag)
                pool_put(tr, tr->rbuf);
            else
                MPI_Request_free(&tr->rreq);
            tr->rbuf = NULL;
        }
        if (tr->own_ports)
            htex_mpi_ports_destroy(tr->ports);
    } else {
        /* MPI is gone, and with it every request: the buffers are ours. */
        for (int i = 0; i < tr->nsend; i++)
            free(tr->sbuf[i]);
        free(tr->rbuf);
    }
    for (int c = 0; c < MPI_TR_NCLASS; c++) {
        struct mbuf *m = tr->pool[c].head;
        while (m) {
            struct mbuf *next = m->next;
            free(m);
            m = next;
        }
    }
    if (fin && tr->own_ports)
        htex_mpi_ports_destroy(tr->ports);
    free(tr->sreq);
    free(tr->sbuf);
    free(tr);
}

const struct cparsl_transport_ops htex_mpi_ops = {
    .name = "mpi",
    .msg_alloc = tr_msg_alloc,
    .send = tr_send,
    .try_recv = tr_try_recv,
    .msg_free = tr_msg_free,
    .progress = tr_progress,
    .self = tr_self,
    .size = tr_size,
    .destroy = tr_destroy,
};

static int mpi_running(cparsl_error_t *err)
{
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (!init || fin)
        return cparsl_error_set(err, CPARSL_ETRANSPORT,
                                "mpi transport: MPI is %s (the caller "
                                "initializes MPI, the transport never does)",
                                fin ? "finalized" : "not initialized");
    return 0;
}

int htex_mpi_ports_create(MPI_Comm comm, int nports, htex_mpi_ports_t **out,
                          cparsl_error_t *err)
{
    if (!out || comm == MPI_COMM_NULL || nports < 1 || nports > 64)
        return cparsl_error_set(err, -EINVAL,
                                "mpi transport: no communicator or a port "
                                "count out of 1..64");
    *out = NULL;
    int rc = mpi_running(err);
    if (rc < 0)
        return rc;
    htex_mpi_ports_t *ps = calloc(1, sizeof *ps);
    MPI_Comm *comms = calloc((size_t)nports, sizeof *comms);
    if (!ps || !comms) {
        free(ps);
        free(comms);
        return cparsl_error_set(err, -ENOMEM, "mpi transport: no memory");
    }
    ps->comms = comms;
    int mrc = MPI_SUCCESS;
    for (; ps->nports < nports; ps->nports++) {
        MPI_Comm *c = &comms[ps->nports];
        if ((mrc = MPI_Comm_dup(comm, c)) != MPI_SUCCESS)
            break;
        if ((mrc = MPI_Comm_set_errhandler(*c, MPI_ERRORS_RETURN)) !=
            MPI_SUCCESS) {
            MPI_Comm_free(c);
            break;
        }
        MPI_Comm_set_name(*c, "cparsl-htex");
    }
    if (mrc == MPI_SUCCESS &&
        ((mrc = MPI_Comm_rank(comm, &ps->rank)) != MPI_SUCCESS ||
         (mrc = MPI_Comm_size(comm, &ps->nranks)) != MPI_SUCCESS))
        (void)0;
    if (mrc != MPI_SUCCESS) {
        rc = mpi_fail(NULL, err, mrc, "setting up the communicators");
        htex_mpi_ports_destroy(ps);
        return rc;
    }
    *out = ps;
    return 0;
}

void htex_mpi_ports_destroy(htex_mpi_ports_t *ps)
{
    if (!ps)
        return;
    int fin = 0;
    MPI_Finalized(&fin);
    for (int p = 0; !fin && p < ps->nports; p++)
        MPI_Comm_free(&ps->comms[p]);
    free(ps->comms);
    free(ps);
}

int htex_mpi_transport_on(htex_mpi_ports_t *ports, int port,
                          cparsl_transport_t **out, cparsl_error_t *err)
{
    if (!out || !ports || port < 0 || port >= ports->nports)
        return cparsl_error_set(err, -EINVAL,
                                "mpi transport: port %d out of range", port);
    *out = NULL;
    int rc = mpi_running(err);
    if (rc < 0)
        return rc;
    struct mpi_tr *tr = calloc(1, sizeof(*tr));
    if (!tr)
        return cparsl_error_set(err, -ENOMEM, "mpi transport: no memory");
    tr->base.ops = &htex_mpi_ops;
    tr->rmsg = MPI_MESSAGE_NULL;
    tr->rreq = MPI_REQUEST_NULL;
    tr->ports = ports;
    tr->port = port;
    tr->comm = ports->comms[port];
    tr->rank = port * ports->nranks + ports->rank;
    tr->size = (ports->nports + ports->nvirtual) * ports->nranks;
    *out = &tr->base;
    return 0;
}

int htex_mpi_transport_create(MPI_Comm comm, cparsl_transport_t **out,
                              cparsl_error_t *err)
{
    if (!out || comm == MPI_COMM_NULL)
        return cparsl_error_set(err, -EINVAL,
                                "mpi transport: no communicator given");
    *out = NULL;
    htex_mpi_ports_t *ps;
    int rc = htex_mpi_ports_create(comm, 1, &ps, err);
    if (rc < 0)
        return rc;
    if ((rc = htex_mpi_transport_on(ps, 0, out, err)) < 0) {
        htex_mpi_ports_destroy(ps);
        return rc;
    }
    tr_of(*out)->own_ports = true;
    return 0;
}

int htex_mpi_ports_virtual(htex_mpi_ports_t *ports, int nvirtual)
{
    if (!ports || nvirtual < 0 || ports->nports + nvirtual > PORT_MAX)
        return -EINVAL;
    ports->nvirtual = nvirtual;
    return 0;
}

int htex_mpi_transport_send_from(cparsl_transport_t *t, int from, int peer,
                                 void *buf, size_t len)
{
    struct mpi_tr *tr = tr_of(t);
    const htex_mpi_ports_t *ps = tr->ports;
    if (from % ps->nranks != ps->rank || from / ps->nranks < ps->nports ||
        from >= tr->size) {
        tr_msg_free(t, buf);
        return -EINVAL;
    }
    return send_from(tr, from / ps->nranks, peer, buf, len);
}

int htex_mpi_transport_last_dst(cparsl_transport_t *t)
{
    return tr_of(t)->rdst;
}

const char *htex_mpi_transport_last_error(cparsl_transport_t *t)
{
    return tr_of(t)->last_error;
}

size_t htex_mpi_transport_allocs(cparsl_transport_t *t)
{
    return tr_of(t)->allocs;
}
