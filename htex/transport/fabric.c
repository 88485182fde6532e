/*
 * fabric.c - the libfabric transport (see fabric.h).
 *
 * Owns, per endpoint (a listener has one per provider, a joiner one):
 * the fi_info, fabric, domain, completion queue, address vector and
 * FI_EP_RDM endpoint, its pre-posted receives and its fi_addr -> peer
 * table; and, for the whole transport, the peer table, the buffer pool
 * and the messages received but not yet handed out.  One thread drives
 * an instance (FI_THREAD_DOMAIN), so nothing here locks.
 *
 * Design.
 *   - Peers.  peers[i] is (endpoint index, fi_addr_t) plus the name it
 *     was admitted with; each endpoint maps its fi_addr_t values (table
 *     indices: we ask for FI_AV_TABLE) back to peers.  A listener is peer
 *     0 of itself and numbers the others from 1 (size is the high-water
 *     mark); a joiner knows only the listener, as peer 0, and not its own
 *     number (self is -1, size 1).  A forgotten peer's number goes to a
 *     free list and its generation changes, so completions of sends to
 *     the old peer are not counted against the new one.
 *   - Strangers.  With FI_SOURCE, a receive from an address not in the
 *     address vector completes with FI_ADDR_NOTAVAIL; try_recv reports it
 *     as HTEX_FABRIC_STRANGER and notes the endpoint it arrived on, which
 *     is where admit inserts the stranger's name.  Names are checked
 *     against the endpoint's address format before libfabric sees them
 *     (shm reads a string up to its NUL, tcp a sockaddr of the AV's
 *     length): a malformed one is -EINVAL, never a read past the buffer.
 *     rxm knows a sender by the address its connection comes from plus
 *     the port in its name, so a joiner opens its endpoint on the
 *     listener's published fabric (same subnet) where it can: bound
 *     elsewhere, its name would not match and it would stay a stranger.
 *     shm needs a second opinion (see the shm notes): every message
 *     carries its sending endpoint's random 32-bit ident as remote CQ
 *     data, admit binds the stranger's ident to the new peer, and on shm
 *     a message counts as the peer's only if both agree.
 *   - Receives.  Every endpoint keeps FAB_RX_POSTED receives of max_msg
 *     bytes posted.  A completed one joins the ready queue (try_recv hands
 *     them out in order) and a fresh buffer is posted in its place at
 *     once, so a caller holding many messages never starves the endpoint;
 *     msg_free returns a buffer to the pool.  FI_ORDER_SAS keeps each
 *     peer's messages in the order sent.
 *   - Sends.  Up to the provider's inject size, fi_injectdata (no
 *     completion: the buffer goes back to the pool at once); above it,
 *     fi_senddata, and the completion returns the buffer.  -FI_EAGAIN (no
 *     resources yet, rxm still connecting) queues the message on its
 *     peer, in order; progress and try_recv retry the queued peers after
 *     reading the completion queues, so send never spins and a peer that
 *     cannot take messages (a dead shm peer's full queue) holds up only
 *     itself.  rxm moves a message over 16 KiB in steps that need the
 *     sender's progress, so a sender that sleeps long between progress
 *     calls slows it down; htex_fabric_wait wakes for those steps.
 *   - Failures.  A send that fails (at once or in its completion) is a
 *     peer's problem: the buffer is freed, the text kept for
 *     htex_fabric_last_error, and progress returns -CPARSL_ETRANSPORT once
 *     (as the MPI transport does); a failed receive is counted and its
 *     buffer reused.  Only a failure of the endpoint itself (reading the
 *     completion queue, posting receives) comes out of try_recv.
 *   - Buffers.  A header in front of the caller's bytes holds the
 *     fi_context2 the provider may use (FI_CONTEXT/FI_CONTEXT2 modes), the
 *     size class and the state.  Classes are 256 B << c up to max_msg (the
 *     last class is max_msg itself, the receive size); free lists per
 *     class are bounded.  Every buffer is on one list of all buffers, so
 *     destroy frees also those a provider still held.  No memory is
 *     registered: we ask for mr_mode 0, which providers that need
 *     FI_MR_LOCAL (verbs without rxm) refuse at fi_getinfo.
 *   - Waiting.  Providers whose completion queue takes FI_WAIT_FD
 *     (tcp;ofi_rxm) are waited on with fi_trywait and poll, and the poll
 *     that follows a quiet wait skips them.  shm has no wait object, so
 *     with shm open the wait naps: 10 us after activity, doubling up to
 *     FAB_NAP_MAX_NS.  A trywait that keeps saying "not now" with no
 *     completion in between is not believed twice, so wait never spins.
 *
 * shm notes (libfabric 1.17, as in Debian 12).
 *   - Its FI_SOURCE is wrong for strangers: smr_peer_cq_write skips the
 *     source slot for FI_ADDR_NOTAVAIL, so the message reports whatever
 *     address that completion slot held last, often a known peer's
 *     (hence the idents above).  And its tagged receive path loses
 *     unexpected messages under load, so this file uses FI_MSG only.
 *   - Each endpoint is a 16 MiB file in /dev/shm named after its process
 *     ("<pid>:<uid>:<n>").  The provider unlinks it on close and from its
 *     SIGINT/SIGTERM/SIGSEGV handlers, but SIGKILL leaves it behind (it
 *     can be removed once the process is gone).  Docker's default
 *     /dev/shm of 64 MiB holds only about four: give containers
 *     --shm-size or --ipc=host.
 *   - Large messages use cross-memory attach (process_vm_readv) where
 *     ptrace rules allow it (a container's seccomp profile often does
 *     not); shm checks at startup and otherwise copies through its own
 *     buffers.  FI_SHM_DISABLE_CMA=1 forces the copies.  Running as root
 *     needs nothing special.  At most 256 peers per endpoint.
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>

#include <cparsl/plugin.h>

#include "backoff.h"
#include "fabric.h"

#define FAB_API            FI_VERSION(1, 9)
#define FAB_MAX_EPS        8   /* providers a listener opens */
#define FAB_NAME_MAX       256 /* an endpoint name (shm's is a string) */
#define FAB_PROV_MAX       64  /* "tcp;ofi_rxm" */
#define FAB_FABRIC_MAX     256 /* "127.0.0.1/32" */
#define FAB_HOST_MAX       256
#define FAB_TEXT_MAX       8192 /* longest published text we read */
#define FAB_RX_POSTED      16   /* receives kept posted per endpoint */
#define FAB_CQ_BATCH       32   /* completions read at once */
#define FAB_CQ_ROUNDS      4    /* batches per endpoint per call */
#define FAB_MIN_SHIFT      8
#define FAB_NCLASS_MAX     32
#define FAB_POOL_BYTES     (1u << 20) /* kept per class */
#define FAB_POOL_MAX_BUFS  4096u      /* kept per class */
#define FAB_MAX_MSG_LIMIT  (1u << 30)
#define FAB_DEFAULT_PEERS  4096
#define FAB_DEFAULT_STRANG 16
#define FAB_DEFAULT_MSG    (1u << 20)
#define FAB_DRAIN_NS       2000000000LL /* destroy waits this long for sends */
/* Longest sleep without a wait fd.  A wake-up costs ~35 us of CPU on a
 * small VM, so 1 ms naps alone take 3.5% of a core; 2 ms halves that, and
 * an idle shm listener still answers within 2 ms. */
#define FAB_NAP_MAX_NS 2000000

enum fbuf_state {
    FB_FREE,  /* in the pool */
    FB_USER,  /* the caller's (msg_alloc, or handed out by try_recv) */
    FB_RX,    /* a posted receive */
    FB_READY, /* received, in the ready queue */
    FB_TXQ,   /* a send queued on its peer (the provider said EAGAIN) */
    FB_TX,    /* a send the provider holds */
};

struct fbuf {
    struct fi_context2 ctx; /* the provider's, for the FI_CONTEXT modes */
    struct fbuf *next;      /* pool, ready queue or peer's send queue */
    struct fbuf *all_prev;  /* every buffer we own, for destroy */
    struct fbuf *all_next;
    size_t cap;     /* bytes the caller may use */
    size_t len;     /* bytes received or to send */
    int cls;        /* size class, or -1 when not pooled */
    int ep;         /* endpoint received on */
    int peer;       /* sender, or destination */
    uint32_t gen;   /* destination's generation when sent */
    uint64_t ident; /* received: the sender's ident (CQ data) */
    enum fbuf_state state;
    alignas(max_align_t) unsigned char data[];
};

struct fab_ep {
    struct fi_info *info;
    struct fid_fabric *fabric;
    struct fid_domain *domain;
    struct fid_cq *cq;
    struct fid_av *av;
    struct fid_ep *ep;
    uint64_t ident;   /* our CQ data on every message sent (nonzero) */
    bool use_data;    /* the provider carries CQ data: send ident */
    bool check_ident; /* FI_SOURCE alone is not to be believed (shm) */
    int wait_fd;      /* the CQ's wait fd, or -1 */
    bool quiet;       /* the last wait saw its fd idle: one poll may skip it */
    size_t inject;    /* sends up to this size are injected */
    int nrx;          /* receives posted */
    int av_cap;       /* addresses the AV was opened for */
    int npeers;       /* of ours in the AV */
    int *peer_of;     /* fi_addr -> peer, -1 for none */
    size_t npeer_of;
    unsigned char name[FAB_NAME_MAX];
    size_t name_len;
};

struct fab_peer {
    int ep; /* endpoint index; -1 when the slot is free */
    fi_addr_t addr;
    uint32_t gen;   /* changes when the slot is freed */
    uint64_t ident; /* its messages' CQ data, where checked (0: learn) */
    bool trusted;
    bool blocked;        /* on the list of peers with queued sends */
    int next_free;       /* free list of slots */
    int posted, queued;  /* sends the provider holds, and sends waiting */
    struct fbuf *q_head; /* sends waiting for the provider (EAGAIN) */
    struct fbuf *q_tail;
    unsigned char *name; /* what admit was given (NULL for peer 0) */
    size_t name_len;
};

struct fab_tr {
    cparsl_transport_t base; /* first: the handle callers hold */
    bool listener;
    struct fab_ep eps[FAB_MAX_EPS];
    int neps;

    struct fab_peer *peers;
    int npeers, cappeers; /* slots in use (high-water mark), allocated */
    int free_head;        /* free slot list, -1 when empty */
    int max_peers, max_strangers, nstrangers;

    int *blocked; /* peers with queued sends */
    int nblocked, capblocked;

    int ntx;       /* sends to live peers, posted or queued */
    int norphan;   /* posted sends to forgotten peers */
    int tx_failed; /* send failures since progress last said so */
    unsigned long send_errors, recv_errors;
    unsigned long events; /* completions seen, for wait's spin guard */
    unsigned long trywait_events;
    bool trywait_busy;
    /* wait's naps where no fd can wake it: 10 us after activity, doubling
     * up to FAB_NAP_MAX_NS while nothing happens (as htex/backoff.h). */
    int64_t nap_ns;
    unsigned long nap_events;

    size_t max_msg;
    int nclass;
    struct {
        struct fbuf *head;
        unsigned n;
    } pool[FAB_NCLASS_MAX];
    struct fbuf *all; /* every buffer, through all_next */
    struct fbuf *ready_head, *ready_tail;

    int last_stranger_ep;
    uint64_t last_stranger_ident;
    char host[FAB_HOST_MAX];
    char last_error[CPARSL_ERROR_TEXT];
};

/*
 * libfabric is opened with dlopen when the first endpoint is, not linked:
 * Debian's libfabric.so.1 needs libpsm_infinipath and libpsm2, whose
 * constructors spend about 200 ms calibrating a clock (pinned to one CPU,
 * sleeping) and install handlers for SIGINT, SIGTERM and the fault
 * signals that call exit().  A program that never uses this transport
 * (the thread pool, the core's tests) pays for neither; Debian's Open MPI
 * loads the same libraries at MPI_Init through its own components.  The
 * handlers would turn a batch system's SIGTERM landing in a fork or a malloc
 * into a deadlock and hide ASan's reports, so every handler that loading
 * libfabric or its providers changes is put back. Only these five functions are
 * exported; the rest of the API is inline calls through the objects' ops
 * tables.
 */
static struct {
    int (*getinfo)(uint32_t, const char *, const char *, uint64_t,
                   const struct fi_info *, struct fi_info **);
    void (*freeinfo)(struct fi_info *);
    struct fi_info *(*dupinfo)(const struct fi_info *);
    int (*fabric)(struct fi_fabric_attr *, struct fid_fabric **, void *);
    const char *(*strerror)(int);
} fab;
static pthread_once_t fab_once = PTHREAD_ONCE_INIT;
static char fab_why[512]; /* empty once loaded */

#define FAB_LIB "libfabric.so.1"

/* Run fn with every signal's disposition kept as it was before. */
static void keep_signals(void (*fn)(void *), void *arg)
{
    struct sigaction old[NSIG];
    bool had[NSIG];
    for (int s = 1; s < NSIG; s++)
        had[s] =
            s != SIGKILL && s != SIGSTOP && sigaction(s, NULL, &old[s]) == 0;
    fn(arg);
    for (int s = 1; s < NSIG; s++) {
        struct sigaction now;
        if (had[s] && sigaction(s, NULL, &now) == 0 &&
            (now.sa_handler != old[s].sa_handler ||
             now.sa_flags != old[s].sa_flags))
            sigaction(s, &old[s], NULL);
    }
}

static void fab_dlopen(void *arg)
{
    *(void **)arg = dlopen(FAB_LIB, RTLD_NOW | RTLD_LOCAL);
}

static void fab_load_once(void)
{
    void *h = NULL;
    keep_signals(fab_dlopen, &h);
    if (!h) {
        const char *e = dlerror();
        snprintf(fab_why, sizeof fab_why,
                 "cannot load " FAB_LIB " (install libfabric1): %s",
                 e ? e : "unknown error");
        return;
    }
    static const char *const names[] = {
        "fi_getinfo", "fi_freeinfo", "fi_dupinfo", "fi_fabric", "fi_strerror"};
    void *fns[5];
    for (int i = 0; i < 5; i++) {
        fns[i] = dlsym(h, names[i]);
        if (!fns[i]) {
            snprintf(fab_why, sizeof fab_why, FAB_LIB " has no %s", names[i]);
            return; /* h stays open: unloading providers is not safe */
        }
    }
    /* POSIX allows converting dlsym's result to a function pointer. */
    memcpy(&fab.getinfo, &fns[0], sizeof fns[0]);
    memcpy(&fab.freeinfo, &fns[1], sizeof fns[1]);
    memcpy(&fab.dupinfo, &fns[2], sizeof fns[2]);
    memcpy(&fab.fabric, &fns[3], sizeof fns[3]);
    memcpy(&fab.strerror, &fns[4], sizeof fns[4]);
}

/* 0 once libfabric is loaded; -CPARSL_ETRANSPORT and why otherwise. */
static int fab_load(cparsl_error_t *err)
{
    pthread_once(&fab_once, fab_load_once);
    if (!fab.strerror) {
        cparsl_error_set(err, -CPARSL_ETRANSPORT, "%s", fab_why);
        return -CPARSL_ETRANSPORT;
    }
    return 0;
}

/* Only called once an endpoint exists, so libfabric is loaded. */
static const char *fab_strerror(int code)
{
    return fab.strerror ? fab.strerror(code) : "libfabric not loaded";
}

struct getinfo_args {
    const char *node;
    uint64_t flags;
    const struct fi_info *hints;
    struct fi_info **info;
    int rc;
};

static void getinfo_call(void *arg)
{
    struct getinfo_args *a = arg;
    a->rc = fab.getinfo(FAB_API, a->node, NULL, a->flags, a->hints, a->info);
}

/* fi_getinfo loads the providers on its first call: they may install
 * handlers too. */
static int getinfo_keep_signals(const char *node, uint64_t flags,
                                struct fi_info *hints, struct fi_info **info)
{
    struct getinfo_args a = {node, flags, hints, info, 0};
    keep_signals(getinfo_call, &a);
    return a.rc;
}

static inline struct fab_tr *tr_of(cparsl_transport_t *t)
{
    return cparsl_container_of(t, struct fab_tr, base);
}

static inline struct fbuf *buf_of(void *p)
{
    return cparsl_container_of(p, struct fbuf, data);
}

static inline struct fbuf *buf_of_ctx(void *ctx)
{
    return cparsl_container_of(ctx, struct fbuf, ctx);
}

static const char *prov_of(const struct fab_ep *e)
{
    return e->info->fabric_attr->prov_name;
}

/* Keep a failure's text for htex_fabric_last_error (and copy it into err
 * when there is one); returns code. */
__attribute__((format(printf, 4, 5))) static int
fab_fail(struct fab_tr *t, cparsl_error_t *err, int code, const char *fmt, ...)
{
    static const char prefix[] = "fabric transport: ";
    char s[CPARSL_ERROR_TEXT];
    memcpy(s, prefix, sizeof prefix);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s + sizeof prefix - 1, sizeof s - (sizeof prefix - 1), fmt, ap);
    va_end(ap);
    if (t)
        memcpy(t->last_error, s, sizeof s);
    return cparsl_error_set(err, code, "%s", s);
}

/* A libfabric return code (negative) as one of ours. */
static int fab_code(long rc)
{
    switch (-rc) {
    case FI_ENOMEM:
        return -ENOMEM;
    case FI_ENODATA:
        return -ENOENT;
    case FI_EINVAL:
        return -EINVAL;
    default:
        return -CPARSL_ETRANSPORT;
    }
}

/* ---- buffer pool -------------------------------------------------------- */

static size_t class_size(const struct fab_tr *t, int c)
{
    if (c == t->nclass - 1)
        return t->max_msg;
    return (size_t)1 << (FAB_MIN_SHIFT + c);
}

static unsigned pool_max(const struct fab_tr *t, int c)
{
    size_t k = FAB_POOL_BYTES / class_size(t, c);
    return k < 8 ? 8 : k > FAB_POOL_MAX_BUFS ? FAB_POOL_MAX_BUFS : (unsigned)k;
}

static void all_unlink(struct fab_tr *t, struct fbuf *b)
{
    if (b->all_prev)
        b->all_prev->all_next = b->all_next;
    else
        t->all = b->all_next;
    if (b->all_next)
        b->all_next->all_prev = b->all_prev;
}

/* A buffer of at least len bytes; len over max_msg gives an unpooled one
 * (send refuses it with -EMSGSIZE). */
static struct fbuf *pool_get(struct fab_tr *t, size_t len)
{
    int c = 0;
    while (c < t->nclass && class_size(t, c) < len)
        c++;
    struct fbuf *b;
    if (c < t->nclass && (b = t->pool[c].head)) {
        t->pool[c].head = b->next;
        t->pool[c].n--;
        b->state = FB_USER;
        return b;
    }
    size_t cap = c < t->nclass ? class_size(t, c) : len;
    if (cap > SIZE_MAX - sizeof(*b))
        return NULL;
    b = malloc(sizeof(*b) + cap);
    if (!b)
        return NULL;
    memset(b, 0, sizeof(*b));
    b->cap = cap;
    b->cls = c < t->nclass ? c : -1;
    b->state = FB_USER;
    b->all_next = t->all;
    if (t->all)
        t->all->all_prev = b;
    t->all = b;
    return b;
}

static void pool_put(struct fab_tr *t, struct fbuf *b)
{
    if (b->cls < 0 || t->pool[b->cls].n >= pool_max(t, b->cls)) {
        all_unlink(t, b);
        free(b);
        return;
    }
    b->state = FB_FREE;
    b->next = t->pool[b->cls].head;
    t->pool[b->cls].head = b;
    t->pool[b->cls].n++;
}

/* ---- receives ----------------------------------------------------------- */

/* Keep FAB_RX_POSTED receives posted on endpoint i.  0, or a negative
 * code for a failure of the endpoint. */
static int post_recvs(struct fab_tr *t, int i, cparsl_error_t *err)
{
    struct fab_ep *e = &t->eps[i];
    while (e->nrx < FAB_RX_POSTED) {
        struct fbuf *b = pool_get(t, t->max_msg);
        if (!b)
            return fab_fail(t, err, -ENOMEM,
                            "no memory for a receive buffer (%s)", prov_of(e));
        b->state = FB_RX;
        b->ep = i;
        ssize_t rc =
            fi_recv(e->ep, b->data, t->max_msg, NULL, FI_ADDR_UNSPEC, &b->ctx);
        if (rc == -FI_EAGAIN) {
            pool_put(t, b);
            return 0; /* the next call posts it */
        }
        if (rc) {
            pool_put(t, b);
            return fab_fail(t, err, fab_code(rc), "fi_recv (%s): %s",
                            prov_of(e), fab_strerror((int)-rc));
        }
        e->nrx++;
    }
    return 0;
}

/* The peer a message from src with CQ data 'ident' came from.  Where the
 * provider's FI_SOURCE cannot be believed for strangers (shm 1.17 leaves
 * the previous completion's address in place of FI_ADDR_NOTAVAIL), the
 * sender's ident must match the one the peer was admitted with too. */
static int peer_from(struct fab_tr *t, const struct fab_ep *e, fi_addr_t src,
                     uint64_t ident)
{
    if (src == FI_ADDR_NOTAVAIL || src >= e->npeer_of)
        return HTEX_FABRIC_STRANGER;
    int n = e->peer_of[src];
    if (n < 0)
        return HTEX_FABRIC_STRANGER;
    struct fab_peer *p = &t->peers[n];
    if (e->check_ident) {
        if (p->ident == 0)
            p->ident = ident; /* a joiner's listener: its first word */
        else if (p->ident != ident)
            return HTEX_FABRIC_STRANGER;
    }
    return n;
}

/* ---- sends -------------------------------------------------------------- */

static bool peer_live(const struct fab_tr *t, int peer)
{
    return peer >= 0 && peer < t->npeers && t->peers[peer].ep >= 0 &&
           !(t->listener && peer == 0);
}

/* A send the provider held is done (ok or not). */
static void tx_done(struct fab_tr *t, struct fbuf *b)
{
    struct fab_peer *p = b->peer < t->npeers ? &t->peers[b->peer] : NULL;
    if (p && p->ep >= 0 && p->gen == b->gen) {
        p->posted--;
        t->ntx--;
    } else {
        t->norphan--;
    }
    pool_put(t, b);
}

static void tx_error(struct fab_tr *t, int peer, const char *what,
                     const char *why)
{
    t->send_errors++;
    t->tx_failed++;
    fab_fail(t, NULL, -CPARSL_ETRANSPORT, "%s to peer %d: %s (%lu so far)",
             what, peer, why, t->send_errors);
}

/* Hand b (to peer p) to the provider: 0 when it was injected (b is back
 * in the pool: done), 1 when the provider holds it until its completion,
 * else the libfabric code (-FI_EAGAIN: try again later) with b still
 * ours. */
static ssize_t post_send(struct fab_tr *t, struct fab_peer *p, struct fbuf *b)
{
    struct fab_ep *e = &t->eps[p->ep];
    ssize_t rc;
    if (b->len <= e->inject) {
        rc = e->use_data
                 ? fi_injectdata(e->ep, b->data, b->len, e->ident, p->addr)
                 : fi_inject(e->ep, b->data, b->len, p->addr);
        if (rc == 0)
            pool_put(t, b);
        return rc;
    }
    b->state = FB_TX;
    rc = e->use_data ? fi_senddata(e->ep, b->data, b->len, NULL, e->ident,
                                   p->addr, &b->ctx)
                     : fi_send(e->ep, b->data, b->len, NULL, p->addr, &b->ctx);
    if (rc == 0) {
        p->posted++;
        return 1;
    }
    b->state = FB_USER;
    return rc;
}

static int add_blocked(struct fab_tr *t, int peer)
{
    if (t->nblocked == t->capblocked) {
        int cap = t->capblocked ? 2 * t->capblocked : 16;
        int *nb = realloc(t->blocked, (size_t)cap * sizeof(*nb));
        if (!nb)
            return -ENOMEM;
        t->blocked = nb;
        t->capblocked = cap;
    }
    t->blocked[t->nblocked++] = peer;
    t->peers[peer].blocked = true;
    return 0;
}

/* Post what peer p has queued, in order, until the provider says EAGAIN;
 * 1 if something left the queue. */
static int flush_peer(struct fab_tr *t, int peer)
{
    struct fab_peer *p = &t->peers[peer];
    int moved = 0;
    while (p->q_head) {
        struct fbuf *b = p->q_head;
        struct fbuf *next = b->next;
        ssize_t rc = post_send(t, p, b);
        if (rc == -FI_EAGAIN) {
            b->state = FB_TXQ;
            break;
        }
        p->q_head = next;
        if (!next)
            p->q_tail = NULL;
        p->queued--;
        moved = 1;
        if (rc == 1) /* still in flight, still counted */
            continue;
        t->ntx--;
        if (rc < 0) {
            tx_error(t, peer, "fi_send", fab_strerror((int)-rc));
            pool_put(t, b);
        }
    }
    return moved;
}

/* Retry every peer with queued sends; drop the ones done from the list. */
static int flush_blocked(struct fab_tr *t)
{
    int moved = 0, k = 0;
    for (int i = 0; i < t->nblocked; i++) {
        int peer = t->blocked[i];
        struct fab_peer *p = &t->peers[peer];
        if (p->ep >= 0 && p->q_head)
            moved |= flush_peer(t, peer);
        if (p->ep >= 0 && p->q_head)
            t->blocked[k++] = peer;
        else
            p->blocked = false;
    }
    t->nblocked = k;
    return moved;
}

/* ---- completions -------------------------------------------------------- */

static void on_completion(struct fab_tr *t, int i, void *ctx, size_t len,
                          fi_addr_t src, uint64_t ident)
{
    struct fbuf *b = buf_of_ctx(ctx);
    t->events++;
    if (b->state == FB_RX) {
        struct fab_ep *e = &t->eps[i];
        e->nrx--;
        b->state = FB_READY;
        b->len = len;
        b->ep = i;
        b->ident = ident;
        b->peer = peer_from(t, e, src, ident);
        b->next = NULL;
        if (t->ready_tail)
            t->ready_tail->next = b;
        else
            t->ready_head = b;
        t->ready_tail = b;
    } else if (b->state == FB_TX) {
        tx_done(t, b);
    }
}

static void on_cq_error(struct fab_tr *t, int i)
{
    struct fab_ep *e = &t->eps[i];
    struct fi_cq_err_entry ee;
    memset(&ee, 0, sizeof ee);
    if (fi_cq_readerr(e->cq, &ee, 0) <= 0)
        return;
    t->events++;
    char why[256];
    snprintf(why, sizeof why, "%s (%s)", fab_strerror(ee.err),
             fi_cq_strerror(e->cq, ee.prov_errno, ee.err_data, NULL, 0));
    struct fbuf *b = ee.op_context ? buf_of_ctx(ee.op_context) : NULL;
    if (b && b->state == FB_RX) {
        e->nrx--;
        if (ee.err != FI_ECANCELED) {
            t->recv_errors++;
            fab_fail(t, NULL, -CPARSL_ETRANSPORT,
                     "a receive on %s failed: %s (%lu so far)", prov_of(e), why,
                     t->recv_errors);
        }
        pool_put(t, b);
    } else if (b && b->state == FB_TX) {
        tx_error(t, b->peer, "a send", why);
        tx_done(t, b);
    } else {
        fab_fail(t, NULL, -CPARSL_ETRANSPORT, "completion error on %s: %s",
                 prov_of(e), why);
    }
}

/* Read endpoint i's completions (a bounded number of batches) and post
 * receives again.  0, or a negative code for a failure of the endpoint. */
static int poll_ep(struct fab_tr *t, int i, cparsl_error_t *err)
{
    struct fab_ep *e = &t->eps[i];
    struct fi_cq_data_entry ent[FAB_CQ_BATCH];
    fi_addr_t src[FAB_CQ_BATCH];
    int rc = 0;
    for (int round = 0; round < FAB_CQ_ROUNDS; round++) {
        ssize_t n = fi_cq_readfrom(e->cq, ent, FAB_CQ_BATCH, src);
        if (n == -FI_EAGAIN)
            break;
        if (n == -FI_EAVAIL) {
            on_cq_error(t, i);
            continue;
        }
        if (n < 0) {
            rc = fab_fail(t, err, -CPARSL_ETRANSPORT,
                          "reading the completion queue (%s): %s", prov_of(e),
                          fab_strerror((int)-n));
            break;
        }
        for (ssize_t k = 0; k < n; k++)
            on_completion(t, i, ent[k].op_context, ent[k].len, src[k],
                          ent[k].flags & FI_REMOTE_CQ_DATA ? ent[k].data : 0);
        if (n < FAB_CQ_BATCH)
            break;
    }
    if (e->nrx < FAB_RX_POSTED) {
        int prc = post_recvs(t, i, err);
        if (prc < 0 && rc == 0)
            rc = prc;
    }
    return rc;
}

static int poll_all(struct fab_tr *t, cparsl_error_t *err)
{
    int rc = 0;
    for (int i = 0; i < t->neps; i++) {
        /* Reading rxm's queue costs system calls even when idle; right
         * after a wait that saw its fd quiet there is nothing to read
         * (anything later wakes the next wait at once). */
        if (t->eps[i].quiet) {
            t->eps[i].quiet = false;
            continue;
        }
        int r = poll_ep(t, i, rc ? NULL : err);
        if (r < 0 && rc == 0)
            rc = r;
    }
    if (t->nblocked)
        flush_blocked(t);
    return rc;
}

/* ---- ops ---------------------------------------------------------------- */

static void *fab_msg_alloc(cparsl_transport_t *tt, size_t len)
{
    struct fbuf *b = pool_get(tr_of(tt), len);
    return b ? b->data : NULL;
}

static void fab_msg_free(cparsl_transport_t *tt, void *buf)
{
    if (buf)
        pool_put(tr_of(tt), buf_of(buf));
}

static int fab_send(cparsl_transport_t *tt, int peer, void *buf, size_t len)
{
    struct fab_tr *t = tr_of(tt);
    if (!buf)
        return -EINVAL;
    struct fbuf *b = buf_of(buf);
    int rc = 0;
    if (!peer_live(t, peer) || len > b->cap)
        rc = -EINVAL;
    else if (len > t->max_msg)
        rc = -EMSGSIZE;
    if (rc) {
        pool_put(t, b);
        return rc;
    }
    struct fab_peer *p = &t->peers[peer];
    b->len = len;
    b->peer = peer;
    b->gen = p->gen;
    b->next = NULL;
    if (!p->q_head) {
        ssize_t frc = post_send(t, p, b);
        if (frc >= 0) {
            t->ntx += (int)frc; /* 1: in flight; 0: injected, done */
            return 0;
        }
        if (frc != -FI_EAGAIN) {
            pool_put(t, b);
            t->send_errors++;
            return fab_fail(t, NULL,
                            fab_code(frc) == -EINVAL ? -EINVAL
                                                     : -CPARSL_ETRANSPORT,
                            "fi_send to peer %d (%s): %s", peer,
                            prov_of(&t->eps[p->ep]), fab_strerror((int)-frc));
        }
    }
    /* The provider cannot take it yet, or earlier ones wait: queue it
     * behind them, so the peer sees its messages in order. */
    if (!p->blocked && add_blocked(t, peer) < 0) {
        pool_put(t, b);
        return -ENOMEM;
    }
    b->state = FB_TXQ;
    if (p->q_tail)
        p->q_tail->next = b;
    else
        p->q_head = b;
    p->q_tail = b;
    p->queued++;
    t->ntx++;
    return 0;
}

static int fab_try_recv(cparsl_transport_t *tt, int *peer, void **buf,
                        size_t *len, cparsl_error_t *err)
{
    struct fab_tr *t = tr_of(tt);
    int rc = 0;
    if (!t->ready_head)
        rc = poll_all(t, err);
    struct fbuf *b = t->ready_head;
    if (!b)
        return rc < 0 ? rc : 0;
    t->ready_head = b->next;
    if (!t->ready_head)
        t->ready_tail = NULL;
    b->state = FB_USER;
    if (b->peer == HTEX_FABRIC_STRANGER) {
        t->last_stranger_ep = b->ep;
        t->last_stranger_ident = b->ident;
    }
    *peer = b->peer;
    *buf = b->data;
    *len = b->len;
    return 1;
}

static int fab_progress(cparsl_transport_t *tt)
{
    struct fab_tr *t = tr_of(tt);
    if (t->ntx == 0 && !t->tx_failed)
        return 0; /* nothing to complete: try_recv drives the rest */
    poll_all(t, NULL);
    if (t->tx_failed) {
        t->tx_failed = 0;
        return -CPARSL_ETRANSPORT;
    }
    return t->ntx;
}

static int fab_self(cparsl_transport_t *tt)
{
    return tr_of(tt)->listener ? 0 : -1;
}

static int fab_size(cparsl_transport_t *tt)
{
    return tr_of(tt)->npeers;
}

/* Close endpoint i (whatever of it was opened).  Its posted receives
 * are ours again afterwards: back to the pool. */
static void ep_close(struct fab_tr *t, int i)
{
    struct fab_ep *e = &t->eps[i];
    if (e->ep)
        fi_close(&e->ep->fid);
    if (e->av)
        fi_close(&e->av->fid);
    if (e->cq)
        fi_close(&e->cq->fid);
    if (e->domain)
        fi_close(&e->domain->fid);
    if (e->fabric)
        fi_close(&e->fabric->fid);
    if (e->info)
        fab.freeinfo(e->info);
    free(e->peer_of);
    memset(e, 0, sizeof *e);
    e->wait_fd = -1;
    for (struct fbuf *b = t->all, *next; b; b = next) {
        next = b->all_next;
        if (b->state == FB_RX && b->ep == i)
            pool_put(t, b);
    }
}

static void fab_destroy(cparsl_transport_t *tt)
{
    if (!tt)
        return;
    struct fab_tr *t = tr_of(tt);
    /* Let sends finish (sleeping, not spinning); what arrives meanwhile
     * waits in the ready queue and is freed below. */
    htex_backoff_t bo = HTEX_BACKOFF_INIT;
    int64_t end = htex_now_ns() + FAB_DRAIN_NS;
    while (t->ntx > 0 && htex_now_ns() < end) {
        unsigned long before = t->events;
        int ntx = t->ntx;
        poll_all(t, NULL);
        if (t->events != before || t->ntx != ntx)
            htex_backoff_reset(&bo);
        else
            htex_backoff_wait(&bo);
    }
    /* Closing the endpoints ends every operation, so every buffer is
     * ours again. */
    for (int i = 0; i < t->neps; i++)
        ep_close(t, i);
    while (t->all) {
        struct fbuf *b = t->all;
        t->all = b->all_next;
        free(b);
    }
    for (int i = 0; i < t->npeers; i++)
        free(t->peers[i].name);
    free(t->peers);
    free(t->blocked);
    free(t);
}

/* ---- endpoint names ----------------------------------------------------- */

/* Whether name[0..len) can be an address of endpoint e's format, checked
 * before a provider reads it: shm takes a string up to its NUL, the IP
 * providers a sockaddr of the AV's length. */
static bool name_ok(const struct fab_ep *e, const unsigned char *name,
                    size_t len)
{
    if (!name || len == 0 || len > FAB_NAME_MAX)
        return false;
    switch (e->info->addr_format) {
    case FI_SOCKADDR_IN:
    case FI_SOCKADDR_IN6:
    case FI_SOCKADDR: {
        sa_family_t fam;
        if (len < sizeof(struct sockaddr_in))
            return false;
        memcpy(&fam, name + offsetof(struct sockaddr, sa_family), sizeof fam);
        if (fam == AF_INET && len == sizeof(struct sockaddr_in))
            return e->info->addr_format != FI_SOCKADDR_IN6;
        if (fam == AF_INET6 && len == sizeof(struct sockaddr_in6))
            return e->info->addr_format != FI_SOCKADDR_IN;
        return false;
    }
    case FI_ADDR_STR:
        if (len < 2 || name[len - 1] != '\0')
            return false;
        for (size_t i = 0; i + 1 < len; i++)
            if (name[i] < 0x21 || name[i] > 0x7e)
                return false;
        return true;
    default: /* fixed-size binary formats */
        return len == e->name_len;
    }
}

static void to_hex(const unsigned char *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hex_val(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* A word of text (printable, no '|' or spaces): what may go in the
 * published line. */
static bool word_ok(const char *s, size_t max)
{
    size_t n = strnlen(s, max);
    if (n == 0 || n == max)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e ||
            s[i] == '|')
            return false;
    return true;
}

static void this_host(char *buf, size_t cap)
{
    if (gethostname(buf, cap - 1) != 0)
        snprintf(buf, cap, "localhost");
    buf[cap - 1] = '\0';
    if (!word_ok(buf, cap))
        snprintf(buf, cap, "localhost");
}

/* ---- opening endpoints -------------------------------------------------- */

struct fab_cfg {
    const char *bind_node;
    int max_peers, max_strangers;
    size_t max_msg;
};

static int cfg_of(const htex_fabric_opts_t *o, struct fab_cfg *c,
                  cparsl_error_t *err)
{
    c->bind_node = o && o->bind_node ? o->bind_node : "127.0.0.1";
    c->max_peers = o && o->max_peers ? o->max_peers : FAB_DEFAULT_PEERS;
    c->max_strangers =
        o && o->max_strangers ? o->max_strangers : FAB_DEFAULT_STRANG;
    c->max_msg = o && o->max_msg ? o->max_msg : FAB_DEFAULT_MSG;
    if (c->max_peers < 1 || c->max_peers > (1 << 20) || c->max_strangers < 0 ||
        c->max_msg > FAB_MAX_MSG_LIMIT)
        return fab_fail(NULL, err, -EINVAL,
                        "options out of range (max_peers %d: 1..%d, "
                        "max_strangers %d, max_msg %zu: up to %u)",
                        c->max_peers, 1 << 20, c->max_strangers, c->max_msg,
                        FAB_MAX_MSG_LIMIT);
    return 0;
}

static struct fab_tr *tr_new(const struct fab_cfg *c, bool listener)
{
    struct fab_tr *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->base.ops = &htex_fabric_ops;
    t->listener = listener;
    t->free_head = -1;
    t->last_stranger_ep = -1;
    t->max_peers = c->max_peers;
    t->max_strangers = c->max_strangers;
    t->max_msg = c->max_msg;
    t->nclass = 1;
    while (t->nclass < FAB_NCLASS_MAX &&
           ((size_t)1 << (FAB_MIN_SHIFT + t->nclass - 1)) < c->max_msg)
        t->nclass++;
    for (int i = 0; i < FAB_MAX_EPS; i++)
        t->eps[i].wait_fd = -1;
    this_host(t->host, sizeof t->host);
    return t;
}

/* A new peer slot (its number), or -ENOSPC. */
static int peer_new(struct fab_tr *t)
{
    int n;
    if (t->free_head >= 0) {
        n = t->free_head;
        t->free_head = t->peers[n].next_free;
    } else {
        int limit = t->max_peers + (t->listener ? 1 : 0);
        if (t->npeers >= limit)
            return -ENOSPC;
        if (t->npeers == t->cappeers) {
            int cap = t->cappeers ? 2 * t->cappeers : 16;
            if (cap > limit)
                cap = limit;
            struct fab_peer *np = realloc(t->peers, (size_t)cap * sizeof(*np));
            if (!np)
                return -ENOMEM;
            t->peers = np;
            t->cappeers = cap;
        }
        n = t->npeers++;
        t->peers[n].gen = 0;
    }
    uint32_t gen = t->peers[n].gen;
    memset(&t->peers[n], 0, sizeof t->peers[n]);
    t->peers[n].gen = gen;
    t->peers[n].ep = -1;
    t->peers[n].next_free = -1;
    return n;
}

static void peer_release(struct fab_tr *t, int n)
{
    struct fab_peer *p = &t->peers[n];
    free(p->name);
    p->name = NULL;
    p->ep = -1;
    p->gen++;
    p->next_free = t->free_head;
    t->free_head = n;
}

/* Record that fi_addr a on endpoint i is peer n. */
static int map_addr(struct fab_ep *e, fi_addr_t a, int n)
{
    if (a >= (fi_addr_t)INT_MAX)
        return -ENOSPC;
    if (a >= e->npeer_of) {
        size_t cap = e->npeer_of ? e->npeer_of : 64;
        while (cap <= a)
            cap *= 2;
        int *np = realloc(e->peer_of, cap * sizeof(*np));
        if (!np)
            return -ENOMEM;
        for (size_t k = e->npeer_of; k < cap; k++)
            np[k] = -1;
        e->peer_of = np;
        e->npeer_of = cap;
    }
    e->peer_of[a] = n;
    return 0;
}

static bool is_shm(const char *prov)
{
    return strcmp(prov, "shm") == 0;
}

/*
 * Open endpoint e on provider prov (fabric: preferred fabric name, or
 * NULL; node: the address to bind, or NULL) and post its receives.  0,
 * or a negative code with the reason in err (e is then closed).
 */

static int ep_open(struct fab_tr *t, int i, const char *prov,
                   const char *fabric, const char *node,
                   const struct fab_cfg *c, cparsl_error_t *err)
{
    struct fab_ep *e = &t->eps[i];
    int lrc = fab_load(err);
    if (lrc < 0)
        return lrc;
    struct fi_info *hints = fab.dupinfo(NULL); /* fi_allocinfo() */
    if (!hints)
        return fab_fail(NULL, err, -ENOMEM, "no memory");
    hints->ep_attr->type = FI_EP_RDM;
    hints->caps = FI_MSG | FI_SOURCE;
    hints->mode = FI_CONTEXT | FI_CONTEXT2;
    hints->domain_attr->threading = FI_THREAD_DOMAIN;
    hints->domain_attr->av_type = FI_AV_TABLE;
    hints->domain_attr->mr_mode = 0; /* we register nothing */
    /* A peer's messages arrive in the order sent (RDM does not promise
     * it unless asked). */
    hints->tx_attr->msg_order = FI_ORDER_SAS;
    hints->rx_attr->msg_order = FI_ORDER_SAS;
    hints->fabric_attr->prov_name = strdup(prov);
    if (fabric)
        hints->fabric_attr->name = strdup(fabric);
    if (!hints->fabric_attr->prov_name ||
        (fabric && !hints->fabric_attr->name)) {
        fab.freeinfo(hints);
        return fab_fail(NULL, err, -ENOMEM, "no memory");
    }
    struct fi_info *info = NULL;
    int rc = getinfo_keep_signals(node, node ? FI_SOURCE : 0, hints, &info);
    if (rc == -FI_ENODATA && fabric) {
        /* Not on that fabric here: any of the provider's. */
        free(hints->fabric_attr->name);
        hints->fabric_attr->name = NULL;
        rc = getinfo_keep_signals(node, node ? FI_SOURCE : 0, hints, &info);
    }
    fab.freeinfo(hints);
    if (rc)
        return fab_fail(
            NULL, err, fab_code(rc), "provider '%s'%s%s: fi_getinfo: %s", prov,
            node ? " bound to " : "", node ? node : "", fab_strerror(-rc));
    /* Keep only the first match (the list's rest would leak into e). */
    if (info->next) {
        struct fi_info *rest = info->next;
        info->next = NULL;
        fab.freeinfo(rest);
    }
    e->info = info;
    const char *bad = NULL; /* our own reason to refuse it */
    if (!info->fabric_attr->name ||
        !word_ok(info->fabric_attr->prov_name, FAB_PROV_MAX) ||
        !word_ok(info->fabric_attr->name, FAB_FABRIC_MAX))
        bad = "provider or fabric name cannot be published";
    else if (info->ep_attr->max_msg_size < c->max_msg)
        bad = "max_msg is over the provider's largest message";
    if (bad) {
        fab_fail(NULL, err, -EINVAL, "provider '%s': %s", prov, bad);
        ep_close(t, i);
        return -EINVAL;
    }
    const char *what;
    if ((rc = fab.fabric(info->fabric_attr, &e->fabric, NULL))) {
        what = "fi_fabric";
        goto fail;
    }
    if ((rc = fi_domain(e->fabric, info, &e->domain, NULL))) {
        what = "fi_domain";
        goto fail;
    }
    struct fi_cq_attr cq_attr;
    memset(&cq_attr, 0, sizeof cq_attr);
    cq_attr.format = FI_CQ_FORMAT_DATA;
    cq_attr.wait_obj = FI_WAIT_FD;
    if (fi_cq_open(e->domain, &cq_attr, &e->cq, NULL)) {
        /* No fd to wait on (shm): htex_fabric_wait sleeps briefly. */
        cq_attr.wait_obj = FI_WAIT_NONE;
        if ((rc = fi_cq_open(e->domain, &cq_attr, &e->cq, NULL))) {
            what = "fi_cq_open";
            goto fail;
        }
    }
    if (cq_attr.wait_obj == FI_WAIT_FD &&
        fi_control(&e->cq->fid, FI_GETWAIT, &e->wait_fd) != 0)
        e->wait_fd = -1;
    /* shm's address vector holds at most 256; others take any count. */
    struct fi_av_attr av_attr;
    memset(&av_attr, 0, sizeof av_attr);
    av_attr.type = FI_AV_TABLE;
    av_attr.count = (size_t)c->max_peers;
    while ((rc = fi_av_open(e->domain, &av_attr, &e->av, NULL)) &&
           av_attr.count > 16)
        av_attr.count /= 2;
    if (rc) {
        what = "fi_av_open";
        goto fail;
    }
    e->av_cap = (int)av_attr.count;
    if ((rc = fi_endpoint(e->domain, info, &e->ep, NULL))) {
        what = "fi_endpoint";
        goto fail;
    }
    if ((rc = fi_ep_bind(e->ep, &e->av->fid, 0)) ||
        (rc = fi_ep_bind(e->ep, &e->cq->fid, FI_TRANSMIT | FI_RECV))) {
        what = "fi_ep_bind";
        goto fail;
    }
    if ((rc = fi_enable(e->ep))) {
        what = "fi_enable";
        goto fail;
    }
    size_t nlen = sizeof e->name;
    if ((rc = fi_getname(&e->ep->fid, e->name, &nlen))) {
        what = "fi_getname";
        goto fail;
    }
    e->name_len = nlen;
    e->inject = info->tx_attr->inject_size;
    /* shm's FI_SOURCE needs a second opinion (see peer_from): the
     * sender's ident, 32 random bits (never 0) as remote CQ data. */
    e->use_data = info->domain_attr->cq_data_size >= 4;
    e->check_ident = is_shm(prov) && e->use_data;
    uint32_t r = 0;
    while (r == 0)
        if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
            r = (uint32_t)htex_now_ns() ^ (uint32_t)getpid() << 16;
    e->ident = r;
    if ((rc = post_recvs(t, i, err)) < 0) {
        ep_close(t, i);
        return rc;
    }
    return 0;

fail:
    fab_fail(NULL, err, fab_code(rc), "provider '%s' (fabric %s): %s: %s", prov,
             info->fabric_attr->name, what, fab_strerror(-rc));
    ep_close(t, i);
    return fab_code(rc);
}

/* ---- the API ------------------------------------------------------------ */

int htex_fabric_listen(const htex_fabric_opts_t *o, cparsl_transport_t **out,
                       cparsl_error_t *err)
{
    if (!out || !o || !o->providers || o->nproviders == 0 ||
        o->nproviders > FAB_MAX_EPS)
        return fab_fail(NULL, err, -EINVAL, "a listener needs 1..%d providers",
                        FAB_MAX_EPS);
    *out = NULL;
    struct fab_cfg c;
    int rc = cfg_of(o, &c, err);
    if (rc < 0)
        return rc;
    struct fab_tr *t = tr_new(&c, true);
    if (!t || peer_new(t) != 0) { /* peer 0: the listener itself */
        if (t)
            fab_destroy(&t->base);
        return fab_fail(NULL, err, -ENOMEM, "no memory");
    }
    for (size_t k = 0; k < o->nproviders; k++) {
        const char *prov = o->providers[k];
        if (!prov || !word_ok(prov, FAB_PROV_MAX)) {
            fab_destroy(&t->base);
            return fab_fail(NULL, err, -EINVAL, "bad provider name");
        }
        const char *node = is_shm(prov) ? NULL : c.bind_node;
        rc = ep_open(t, t->neps, prov, NULL, node, &c, err);
        if (rc == -ENOENT && node && !o->bind_node)
            /* No address to bind by default (not an IP provider). */
            rc = ep_open(t, t->neps, prov, NULL, NULL, &c, err);
        if (rc < 0) {
            fab_destroy(&t->base);
            return rc;
        }
        t->neps++;
    }
    *out = &t->base;
    return 0;
}

int htex_fabric_published(cparsl_transport_t *tt, char *buf, size_t cap,
                          size_t *need)
{
    struct fab_tr *t = tr_of(tt);
    size_t n = strlen(HTEX_FABRIC_ADDR_VERSION) + 1 + strlen(t->host);
    for (int i = 0; i < t->neps; i++) {
        const struct fab_ep *e = &t->eps[i];
        n += 1 + strlen(prov_of(e)) + 1 + strlen(e->info->fabric_attr->name) +
             1 + 2 * e->name_len;
    }
    if (need)
        *need = n;
    if (!buf || cap < n + 1)
        return -ENOSPC;
    size_t at =
        (size_t)snprintf(buf, cap, "%s %s", HTEX_FABRIC_ADDR_VERSION, t->host);
    for (int i = 0; i < t->neps; i++) {
        const struct fab_ep *e = &t->eps[i];
        at += (size_t)snprintf(buf + at, cap - at, " %s|%s|", prov_of(e),
                               e->info->fabric_attr->name);
        to_hex(e->name, e->name_len, buf + at);
        at += 2 * e->name_len;
    }
    return (int)at;
}

struct pub_ent {
    char prov[FAB_PROV_MAX];
    char fabric[FAB_FABRIC_MAX];
    unsigned char name[FAB_NAME_MAX];
    size_t name_len;
};

struct pub {
    char host[FAB_HOST_MAX];
    int n;
    struct pub_ent ent[FAB_MAX_EPS];
};

/* Copy s[0..n) into dst (cap) if it is a word; false if not. */
static bool take_word(char *dst, size_t cap, const char *s, size_t n)
{
    if (n == 0 || n >= cap)
        return false;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return word_ok(dst, cap);
}

static int parse_entry(struct pub_ent *pe, const char *s, size_t n,
                       cparsl_error_t *err)
{
    const char *bar1 = memchr(s, '|', n);
    const char *bar2 =
        bar1 ? memchr(bar1 + 1, '|', n - (size_t)(bar1 + 1 - s)) : NULL;
    if (!bar2)
        return fab_fail(NULL, err, -EINVAL,
                        "published address: an entry is not "
                        "provider|fabric|name");
    const char *hex = bar2 + 1;
    size_t hlen = n - (size_t)(hex - s);
    if (!take_word(pe->prov, sizeof pe->prov, s, (size_t)(bar1 - s)) ||
        !take_word(pe->fabric, sizeof pe->fabric, bar1 + 1,
                   (size_t)(bar2 - bar1 - 1)))
        return fab_fail(NULL, err, -EINVAL,
                        "published address: bad provider or fabric name");
    if (hlen == 0 || hlen % 2 || hlen / 2 > FAB_NAME_MAX)
        return fab_fail(NULL, err, -EINVAL,
                        "published address: endpoint name of %zu hex digits "
                        "(an even number up to %d)",
                        hlen, 2 * FAB_NAME_MAX);
    for (size_t k = 0; k < hlen / 2; k++) {
        int hi = hex_val(hex[2 * k]), lo = hex_val(hex[2 * k + 1]);
        if (hi < 0 || lo < 0)
            return fab_fail(NULL, err, -EINVAL,
                            "published address: endpoint name is not hex");
        pe->name[k] = (unsigned char)(hi << 4 | lo);
    }
    pe->name_len = hlen / 2;
    return 0;
}

static int parse_published(const char *s, struct pub *p, cparsl_error_t *err)
{
    if (!s)
        return fab_fail(NULL, err, -EINVAL, "no published address");
    size_t len = strnlen(s, FAB_TEXT_MAX + 1);
    if (len > FAB_TEXT_MAX)
        return fab_fail(NULL, err, -EINVAL,
                        "published address longer than %d bytes", FAB_TEXT_MAX);
    memset(p, 0, sizeof *p);
    size_t vlen = strlen(HTEX_FABRIC_ADDR_VERSION);
    const char *prefix = "cparsl-fabric-";
    int word = 0;
    const char *at = s, *end = s + len;
    while (at < end) {
        while (at < end &&
               (*at == ' ' || *at == '\t' || *at == '\n' || *at == '\r'))
            at++;
        if (at == end)
            break;
        const char *w = at;
        while (at < end &&
               !(*at == ' ' || *at == '\t' || *at == '\n' || *at == '\r'))
            at++;
        size_t n = (size_t)(at - w);
        if (word == 0) {
            if (n == vlen && memcmp(w, HTEX_FABRIC_ADDR_VERSION, n) == 0) {
                /* ours */
            } else if (n > strlen(prefix) &&
                       memcmp(w, prefix, strlen(prefix)) == 0) {
                return fab_fail(NULL, err, -EPROTONOSUPPORT,
                                "published address is version '%.*s'; "
                                "this build reads %s only",
                                (int)(n < 40 ? n : 40), w,
                                HTEX_FABRIC_ADDR_VERSION);
            } else {
                return fab_fail(NULL, err, -EINVAL,
                                "not a cparsl fabric address (it does not "
                                "start with %s)",
                                HTEX_FABRIC_ADDR_VERSION);
            }
        } else if (word == 1) {
            if (!take_word(p->host, sizeof p->host, w, n))
                return fab_fail(NULL, err, -EINVAL,
                                "published address: bad host name");
        } else {
            if (p->n == FAB_MAX_EPS)
                return fab_fail(NULL, err, -EINVAL,
                                "published address: more than %d endpoints",
                                FAB_MAX_EPS);
            int rc = parse_entry(&p->ent[p->n], w, n, err);
            if (rc < 0)
                return rc;
            p->n++;
        }
        word++;
    }
    if (word == 0)
        return fab_fail(NULL, err, -EINVAL, "empty published address");
    if (p->n == 0)
        return fab_fail(NULL, err, -EINVAL,
                        "published address names no endpoint");
    return 0;
}

static bool prov_wanted(const htex_fabric_opts_t *o, const char *prov)
{
    if (!o || !o->providers || o->nproviders == 0)
        return true;
    for (size_t k = 0; k < o->nproviders; k++)
        if (o->providers[k] && strcmp(o->providers[k], prov) == 0)
            return true;
    return false;
}

/* Insert name as a new peer on endpoint i: its number, or a negative
 * code with the reason in err. */
static int insert_peer(struct fab_tr *t, int i, const unsigned char *name,
                       size_t len, cparsl_error_t *err)
{
    struct fab_ep *e = &t->eps[i];
    if (!name_ok(e, name, len))
        return fab_fail(t, err, -EINVAL,
                        "a %zu-byte endpoint name that %s cannot use", len,
                        prov_of(e));
    if (e->npeers >= e->av_cap)
        return fab_fail(t, err, -ENOSPC,
                        "the address vector of %s is full (%d)", prov_of(e),
                        e->av_cap);
    int n = peer_new(t);
    if (n < 0)
        return fab_fail(t, err, n,
                        n == -ENOSPC ? "all %d peers in use" : "no memory (%d)",
                        t->max_peers);
    struct fab_peer *p = &t->peers[n];
    p->name = malloc(len);
    if (!p->name) {
        peer_release(t, n);
        return fab_fail(t, err, -ENOMEM, "no memory");
    }
    memcpy(p->name, name, len);
    p->name_len = len;
    /* shm reads the name as a string: name_ok made sure it ends in NUL. */
    fi_addr_t a = FI_ADDR_NOTAVAIL;
    int rc = fi_av_insert(e->av, p->name, 1, &a, 0, NULL);
    if (rc != 1 || a == FI_ADDR_NOTAVAIL) {
        peer_release(t, n);
        return fab_fail(t, err, rc == -FI_ENOMEM ? -ENOSPC : -EINVAL,
                        "%s refuses the endpoint name (fi_av_insert: %s)",
                        prov_of(e),
                        rc < 0 ? fab_strerror(-rc) : "not inserted");
    }
    if ((rc = map_addr(e, a, n)) < 0) {
        fi_av_remove(e->av, &a, 1, 0);
        peer_release(t, n);
        return fab_fail(t, err, rc, "no room for fi_addr %llu",
                        (unsigned long long)a);
    }
    p->ep = i;
    p->addr = a;
    p->ident = 0;
    e->npeers++;
    return n;
}

int htex_fabric_join(const char *published, const htex_fabric_opts_t *o,
                     cparsl_transport_t **out, cparsl_error_t *err)
{
    if (!out)
        return fab_fail(NULL, err, -EINVAL, "no place for the transport");
    *out = NULL;
    struct fab_cfg c;
    int rc = cfg_of(o, &c, err);
    if (rc < 0)
        return rc;
    struct pub *p = malloc(sizeof *p);
    if (!p)
        return fab_fail(NULL, err, -ENOMEM, "no memory");
    if ((rc = parse_published(published, p, err)) < 0) {
        free(p);
        return rc;
    }
    struct fab_tr *t = tr_new(&c, false);
    if (!t) {
        free(p);
        return fab_fail(NULL, err, -ENOMEM, "no memory");
    }
    /* Why each entry was passed over, for the error. */
    char why[CPARSL_ERROR_TEXT] = "";
    size_t wl = 0;
    for (int k = 0; k < p->n; k++) {
        const struct pub_ent *pe = &p->ent[k];
        cparsl_error_t e2;
        cparsl_error_clear(&e2);
        if (!prov_wanted(o, pe->prov)) {
            snprintf(e2.text, sizeof e2.text, "%s: not in this config",
                     pe->prov);
        } else if (is_shm(pe->prov) && strcmp(p->host, t->host) != 0) {
            snprintf(e2.text, sizeof e2.text,
                     "%s: the listener is on host %.100s, this is %.100s",
                     pe->prov, p->host, t->host);
        } else if (ep_open(t, 0, pe->prov, pe->fabric, NULL, &c, &e2) == 0) {
            t->neps = 1;
            int n = insert_peer(t, 0, pe->name, pe->name_len, &e2);
            if (n == 0) {
                t->peers[0].trusted = true;
                free(p);
                *out = &t->base;
                return 0;
            }
            ep_close(t, 0);
            t->neps = 0;
            t->npeers = 0;
            t->free_head = -1;
        }
        const char *reason = e2.text;
        if (strncmp(reason, "fabric transport: ", 18) == 0)
            reason += 18;
        if (wl < sizeof why)
            wl += (size_t)snprintf(why + wl, sizeof why - wl, "%s%s",
                                   wl ? "; " : "", reason);
    }
    free(p);
    fab_destroy(&t->base);
    return fab_fail(NULL, err, -ENOENT, "no usable endpoint to join (%s)", why);
}

int htex_fabric_name(cparsl_transport_t *tt, void *buf, size_t cap)
{
    struct fab_tr *t = tr_of(tt);
    int i = t->last_stranger_ep >= 0 ? t->last_stranger_ep : 0;
    const struct fab_ep *e = &t->eps[i];
    if (!buf || cap < e->name_len)
        return -ENOSPC;
    memcpy(buf, e->name, e->name_len);
    return (int)e->name_len;
}

const char *htex_fabric_provider(cparsl_transport_t *tt)
{
    struct fab_tr *t = tr_of(tt);
    int i = t->last_stranger_ep >= 0 ? t->last_stranger_ep : 0;
    return prov_of(&t->eps[i]);
}

int htex_fabric_admit(cparsl_transport_t *tt, const void *name, size_t len,
                      int *peer, cparsl_error_t *err)
{
    struct fab_tr *t = tr_of(tt);
    int i = t->last_stranger_ep >= 0 ? t->last_stranger_ep : 0;
    if (!peer || !name)
        return fab_fail(t, err, -EINVAL,
                        "admit: no name or no place for "
                        "the peer");
    /* Already a peer on that endpoint: the same number again. */
    for (int n = 0; n < t->npeers; n++) {
        const struct fab_peer *p = &t->peers[n];
        if (p->ep == i && p->name && p->name_len == len &&
            memcmp(p->name, name, len) == 0) {
            *peer = n;
            return 0;
        }
    }
    if (t->nstrangers >= t->max_strangers)
        return fab_fail(t, err, -EBUSY,
                        "%d admitted peers are not trusted yet (the most "
                        "allowed)",
                        t->nstrangers);
    int n = insert_peer(t, i, name, len, err);
    if (n < 0)
        return n;
    /* The sender of the last stranger's message is who speaks for it. */
    if (t->last_stranger_ep == i)
        t->peers[n].ident = t->last_stranger_ident;
    t->nstrangers++;
    *peer = n;
    return 0;
}

void htex_fabric_trust(cparsl_transport_t *tt, int peer)
{
    struct fab_tr *t = tr_of(tt);
    if (!peer_live(t, peer) || t->peers[peer].trusted)
        return;
    t->peers[peer].trusted = true;
    t->nstrangers--;
}

void htex_fabric_forget(cparsl_transport_t *tt, int peer)
{
    struct fab_tr *t = tr_of(tt);
    if (!peer_live(t, peer))
        return;
    struct fab_peer *p = &t->peers[peer];
    struct fab_ep *e = &t->eps[p->ep];
    /* Sends still waiting are dropped; those the provider holds complete
     * (or not, for a dead peer) as orphans, freed by destroy at worst. */
    while (p->q_head) {
        struct fbuf *b = p->q_head;
        p->q_head = b->next;
        pool_put(t, b);
    }
    p->q_tail = NULL;
    if (p->blocked) {
        int k = 0;
        for (int j = 0; j < t->nblocked; j++)
            if (t->blocked[j] != peer)
                t->blocked[k++] = t->blocked[j];
        t->nblocked = k;
        p->blocked = false;
    }
    t->ntx -= p->queued + p->posted;
    t->norphan += p->posted;
    p->queued = p->posted = 0;
    if (!p->trusted)
        t->nstrangers--;
    fi_addr_t a = p->addr;
    fi_av_remove(e->av, &a, 1, 0);
    if (a < e->npeer_of)
        e->peer_of[a] = -1;
    e->npeers--;
    peer_release(t, peer);
}

void htex_fabric_wait(cparsl_transport_t *tt, int timeout_ms)
{
    struct fab_tr *t = tr_of(tt);
    if (timeout_ms <= 0 || t->ready_head)
        return;
    struct pollfd pfd[FAB_MAX_EPS];
    int idx[FAB_MAX_EPS];
    int n = 0;
    bool all_fds = true;
    for (int i = 0; i < t->neps; i++) {
        struct fab_ep *e = &t->eps[i];
        e->quiet = false;
        if (e->wait_fd < 0) {
            all_fds = false;
            continue;
        }
        struct fid *f = &e->cq->fid;
        int rc = fi_trywait(e->fabric, &f, 1);
        if (rc == -FI_EAGAIN) {
            /* Something to read: return, unless nothing came of the last
             * such answer (then it is no reason not to sleep). */
            if (!t->trywait_busy || t->trywait_events != t->events) {
                t->trywait_busy = true;
                t->trywait_events = t->events;
                return;
            }
            all_fds = false;
            continue;
        }
        if (rc != 0) {
            all_fds = false;
            continue;
        }
        pfd[n].fd = e->wait_fd;
        pfd[n].events = POLLIN;
        pfd[n].revents = 0;
        idx[n] = i;
        n++;
    }
    t->trywait_busy = false;
    int64_t ns = (int64_t)timeout_ms * 1000000;
    if (!all_fds || t->nblocked) {
        /* Something only polling notices (shm, sends waiting for the
         * provider): nap, briefly right after activity. */
        if (t->nap_events != t->events || t->nap_ns == 0) {
            t->nap_events = t->events;
            t->nap_ns = HTEX_BACKOFF_MIN_NS;
        }
        if (ns > t->nap_ns)
            ns = t->nap_ns;
        t->nap_ns =
            2 * t->nap_ns < FAB_NAP_MAX_NS ? 2 * t->nap_ns : FAB_NAP_MAX_NS;
    }
    struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    htex_timerslack_low();
    if (ppoll(pfd, (nfds_t)n, &ts, NULL) < 0)
        return;
    for (int k = 0; k < n; k++)
        t->eps[idx[k]].quiet = !(pfd[k].revents & (POLLIN | POLLERR));
}

const char *htex_fabric_last_error(cparsl_transport_t *tt)
{
    return tr_of(tt)->last_error;
}

static int fab_admit_op(cparsl_transport_t *tt, const void *name, size_t len,
                        int *peer, cparsl_error_t *err)
{
    return htex_fabric_admit(tt, name, len, peer, err);
}

const struct cparsl_transport_ops htex_fabric_ops = {
    .name = "fabric",
    .msg_alloc = fab_msg_alloc,
    .send = fab_send,
    .try_recv = fab_try_recv,
    .msg_free = fab_msg_free,
    .progress = fab_progress,
    .self = fab_self,
    .size = fab_size,
    .destroy = fab_destroy,
    .admit = fab_admit_op,
    .trust = htex_fabric_trust,
    .forget = htex_fabric_forget,
};
