/*
 * emulate.c - emulated managers (see emulate.h).
 *
 * Every task a manager holds is an entry in one pool.  A task that has a
 * slot sits in the running FIFO, which is ordered by start time (each
 * holds its slot the same 'duration', so the front finishes first); one
 * that arrived beyond the free slots waits in its manager's list until a
 * slot frees.  Finished entries collect per manager and go upstream in one
 * RESULTS message per manager and turn; only managers with something to
 * say are visited, so a turn costs what happened in it, not the number of
 * managers.
 */
#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "emulate.h"
#include "log.h"
#include "wire.h"

#define EMU_RECV_PER_TURN 256
#define EMU_POLL_NS       50000
#define EMU_SLEEP_MIN_NS  10000
#define EMU_SLEEP_MAX_NS  1000000
#define NONE              (-1)

struct entry {
    uint64_t ticket;
    int64_t t_start; /* CLOCK_MONOTONIC ns; 0 while waiting */
    int32_t try_no;
    int32_t mgr;
    int32_t next; /* wait list, done list or free list */
};

struct emgr {
    int ep;
    uint32_t running, waiting;
    uint64_t asked;
    int32_t wait_head, wait_tail, done_head;
    uint32_t ndone;
    int64_t last_sent;
    bool dirty, stopping, bye;
};

struct emu {
    const htex_emu_opts_t *o;
    cparsl_transport_t *t;
    struct emgr *m;
    struct entry *e;
    int32_t nentries, capentries, free_head;
    int32_t *fifo; /* running entries, ring */
    size_t fhead, flen, fcap;
    int32_t *dirty; /* managers with results or a BYE to send */
    size_t ndirty;
    int *hkeys, *hvals; /* endpoint -> manager, open addressing */
    size_t hcap;
    size_t nbye;
    int64_t hold_ns, real_offset;
    htex_buf_t out;
    htex_task_t scratch;
    uint64_t bad;
};

static int entry_get(struct emu *u)
{
    if (u->free_head != NONE) {
        int32_t i = u->free_head;
        u->free_head = u->e[i].next;
        return i;
    }
    if (u->nentries == u->capentries) {
        int32_t cap = u->capentries ? u->capentries * 2 : 4096;
        struct entry *e = realloc(u->e, (size_t)cap * sizeof *e);
        if (!e)
            return NONE;
        u->e = e;
        u->capentries = cap;
    }
    return u->nentries++;
}

static int fifo_push(struct emu *u, int32_t i)
{
    if (u->flen == u->fcap) {
        size_t cap = u->fcap ? u->fcap * 2 : 4096;
        int32_t *f = malloc(cap * sizeof *f);
        if (!f)
            return -ENOMEM;
        for (size_t k = 0; k < u->flen; k++)
            f[k] = u->fifo[(u->fhead + k) % u->fcap];
        free(u->fifo);
        u->fifo = f;
        u->fcap = cap;
        u->fhead = 0;
    }
    u->fifo[(u->fhead + u->flen) % u->fcap] = i;
    u->flen++;
    return 0;
}

static int find_mgr(const struct emu *u, int ep)
{
    size_t h = (size_t)(unsigned)ep * 2654435761u & (u->hcap - 1);
    while (u->hkeys[h] != NONE) {
        if (u->hkeys[h] == ep)
            return u->hvals[h];
        h = (h + 1) & (u->hcap - 1);
    }
    return NONE;
}

static void mark_dirty(struct emu *u, int mi)
{
    if (!u->m[mi].dirty) {
        u->m[mi].dirty = true;
        u->dirty[u->ndirty++] = mi;
    }
}

/* Give entry i a slot of its manager now. */
static int start(struct emu *u, int32_t i, int64_t now)
{
    u->e[i].t_start = now;
    u->m[u->e[i].mgr].running++;
    return fifo_push(u, i);
}

static void finish(struct emu *u, int32_t i)
{
    struct emgr *g = &u->m[u->e[i].mgr];
    u->e[i].next = g->done_head;
    g->done_head = i;
    g->ndone++;
    mark_dirty(u, u->e[i].mgr);
}

static uint32_t want_of(const struct emu *u, struct emgr *g)
{
    uint64_t goal = (uint64_t)u->o->slots + u->o->prefetch;
    uint64_t have = (uint64_t)g->running + g->waiting + g->asked;
    if (g->stopping || have >= goal)
        return 0;
    g->asked += goal - have;
    return (uint32_t)(goal - have);
}

static int send_buf(struct emu *u, struct emgr *g, long len)
{
    if (len < 0)
        return (int)len;
    void *b = u->t->ops->msg_alloc(u->t, (size_t)len);
    if (!b)
        return -ENOMEM;
    memcpy(b, u->out.p, (size_t)len);
    int rc = u->o->send_from(u->t, g->ep, u->o->upstream, b, (size_t)len);
    if (rc == 0)
        g->last_sent = cparsl_mono_ns();
    return rc;
}

static int send_simple(struct emu *u, struct emgr *g, int type, uint32_t want)
{
    htex_msg_begin(&u->out, type, want);
    return send_buf(u, g, htex_msg_end(&u->out));
}

static void on_tasks(struct emu *u, int mi, htex_reader_t *r, int64_t now)
{
    struct emgr *g = &u->m[mi];
    cparsl_error_t err;
    for (uint32_t k = 0; k < r->hdr.count; k++) {
        if (htex_msg_next_task(r, &u->scratch, &err) < 0) {
            u->bad++;
            CPARSL_LOG_SPARSE(CPARSL_LOG_WARN, "emulate", "bad TASKS: %s",
                              err.text);
            return;
        }
        int32_t i = entry_get(u);
        if (i == NONE) {
            u->bad++;
            return;
        }
        u->e[i] = (struct entry){.ticket = u->scratch.ticket,
                                 .try_no = u->scratch.exec.args.try_no,
                                 .mgr = mi,
                                 .next = NONE};
        htex_task_clear(&u->scratch);
        if (g->asked)
            g->asked--;
        if (g->stopping) {
            finish(u, i);
        } else if (g->running < u->o->slots) {
            if (start(u, i, now) < 0)
                u->bad++;
        } else {
            if (g->wait_tail != NONE)
                u->e[g->wait_tail].next = i;
            else
                g->wait_head = i;
            g->wait_tail = i;
            g->waiting++;
        }
    }
}

/* SHUTDOWN: what a manager holds is reported as finished at once. */
static void on_shutdown(struct emu *u, int mi)
{
    struct emgr *g = &u->m[mi];
    if (g->stopping)
        return;
    g->stopping = true;
    while (g->wait_head != NONE) {
        int32_t i = g->wait_head;
        g->wait_head = u->e[i].next;
        finish(u, i);
    }
    g->wait_tail = NONE;
    g->waiting = 0;
    mark_dirty(u, mi); /* running ones finish from the FIFO; then BYE */
}

static bool receive(struct emu *u, int64_t now)
{
    bool did = false;
    for (int k = 0; k < EMU_RECV_PER_TURN; k++) {
        int peer;
        void *buf;
        size_t len;
        cparsl_error_t err;
        int rc = u->t->ops->try_recv(u->t, &peer, &buf, &len, &err);
        if (rc < 0) {
            CPARSL_LOG_SPARSE(CPARSL_LOG_ERROR, "emulate", "%s", err.text);
            break;
        }
        if (rc == 0)
            break;
        did = true;
        int mi = find_mgr(u, u->o->last_dst(u->t));
        htex_reader_t r;
        if (mi == NONE || peer != u->o->upstream ||
            htex_msg_open(&r, buf, len, &err) < 0) {
            u->bad++;
        } else if (r.hdr.type == HTEX_MSG_TASKS) {
            on_tasks(u, mi, &r, now);
        } else if (r.hdr.type == HTEX_MSG_SHUTDOWN) {
            on_shutdown(u, mi);
        } else if (r.hdr.type != HTEX_MSG_HEARTBEAT) {
            u->bad++;
        }
        u->t->ops->msg_free(u->t, buf);
    }
    return did;
}

/* Tasks whose time is up finish; their slots take waiting tasks. */
static bool expire(struct emu *u, int64_t now)
{
    bool did = false;
    while (u->flen) {
        int32_t i = u->fifo[u->fhead];
        struct emgr *g = &u->m[u->e[i].mgr];
        if (!g->stopping && u->e[i].t_start + u->hold_ns > now)
            break;
        u->fhead = (u->fhead + 1) % u->fcap;
        u->flen--;
        g->running--;
        finish(u, i);
        if (g->wait_head != NONE) {
            int32_t w = g->wait_head;
            g->wait_head = u->e[w].next;
            if (g->wait_head == NONE)
                g->wait_tail = NONE;
            g->waiting--;
            start(u, w, now);
        }
        did = true;
    }
    return did;
}

/* One RESULTS message (or more, max_batch each) per manager with news;
 * a stopping manager that holds nothing says BYE. */
static bool report(struct emu *u, int64_t now)
{
    bool did = u->ndirty > 0;
    for (size_t k = 0; k < u->ndirty; k++) {
        int mi = u->dirty[k];
        struct emgr *g = &u->m[mi];
        g->dirty = false;
        while (g->done_head != NONE) {
            htex_msg_begin(&u->out, HTEX_MSG_RESULTS, 0);
            uint32_t n = 0;
            while (g->done_head != NONE && n < u->o->max_batch) {
                int32_t i = g->done_head;
                struct entry *en = &u->e[i];
                cparsl_exec_t x;
                htex_exec_blank(&x);
                int64_t t0 = en->t_start ? en->t_start : now;
                x.t_start = t0 + u->real_offset;
                x.t_end = now + u->real_offset;
                htex_msg_add_result(&u->out, en->ticket, en->try_no, &x,
                                    u->o->rank, mi);
                g->done_head = en->next;
                en->next = u->free_head;
                u->free_head = i;
                n++;
            }
            g->ndone -= n;
            htex_msg_set_want(&u->out, want_of(u, g));
            if (send_buf(u, g, htex_msg_end(&u->out)) < 0)
                u->bad++;
        }
        if (g->stopping && !g->bye && g->running == 0 && g->waiting == 0) {
            g->bye = true;
            u->nbye++;
            send_simple(u, g, HTEX_MSG_BYE, 0);
        }
    }
    u->ndirty = 0;
    return did;
}

static void heartbeats(struct emu *u, int64_t now)
{
    int64_t hb = (int64_t)(u->o->heartbeat_period * 1e9);
    for (size_t i = 0; i < u->o->nmanagers; i++) {
        struct emgr *g = &u->m[i];
        if (!g->bye && now - g->last_sent > hb)
            send_simple(u, g, HTEX_MSG_HEARTBEAT, want_of(u, g));
    }
}

static int setup(struct emu *u, cparsl_error_t *err)
{
    const htex_emu_opts_t *o = u->o;
    size_t n = o->nmanagers;
    u->hcap = 16;
    while (u->hcap < 2 * n)
        u->hcap *= 2;
    u->m = calloc(n ? n : 1, sizeof *u->m);
    u->dirty = malloc((n ? n : 1) * sizeof *u->dirty);
    u->hkeys = malloc(u->hcap * sizeof *u->hkeys);
    u->hvals = malloc(u->hcap * sizeof *u->hvals);
    if (!u->m || !u->dirty || !u->hkeys || !u->hvals)
        return cparsl_error_set(err, -ENOMEM, "emulate: out of memory");
    for (size_t h = 0; h < u->hcap; h++)
        u->hkeys[h] = NONE;
    for (size_t i = 0; i < n; i++) {
        u->m[i] = (struct emgr){.ep = o->eps[i],
                                .wait_head = NONE,
                                .wait_tail = NONE,
                                .done_head = NONE};
        size_t h = (size_t)(unsigned)o->eps[i] * 2654435761u & (u->hcap - 1);
        while (u->hkeys[h] != NONE)
            h = (h + 1) & (u->hcap - 1);
        u->hkeys[h] = o->eps[i];
        u->hvals[h] = (int)i;
    }
    u->free_head = NONE;
    u->hold_ns = (int64_t)(o->duration * 1e9);
    u->real_offset = cparsl_now_ns() - cparsl_mono_ns();
    htex_task_init(&u->scratch);
    return 0;
}

int htex_emulate_run(cparsl_transport_t *t, const htex_emu_opts_t *o,
                     cparsl_error_t *err)
{
    struct emu uu, *u = &uu;
    memset(u, 0, sizeof *u);
    u->o = o;
    u->t = t;
    int rc = setup(u, err);
    for (size_t i = 0; rc == 0 && i < o->nmanagers; i++) {
        struct emgr *g = &u->m[i];
        htex_msg_begin(&u->out, HTEX_MSG_REGISTER, 0);
        htex_msg_add_register(&u->out, o->rank, o->node, o->slots,
                              o->host ? o->host : "?", CPARSL_VERSION_STRING);
        htex_msg_set_want(&u->out, want_of(u, g));
        if ((rc = send_buf(u, g, htex_msg_end(&u->out))) < 0)
            cparsl_error_set(err, rc, "emulate: cannot register manager %zu",
                             i);
    }
    int64_t idle_since = 0, sleep_ns = EMU_SLEEP_MIN_NS, last_hb = 0;
    while (rc == 0 && u->nbye < o->nmanagers) {
        int64_t now = cparsl_mono_ns();
        bool did = receive(u, now);
        did |= expire(u, now);
        did |= report(u, now);
        t->ops->progress(t);
        if (now - last_hb > 1000000000) {
            heartbeats(u, now);
            last_hb = now;
        }
        if (did) {
            idle_since = 0;
            sleep_ns = EMU_SLEEP_MIN_NS;
            continue;
        }
        if (!idle_since)
            idle_since = now;
        if (now - idle_since < EMU_POLL_NS) {
            sched_yield();
            continue;
        }
        /* Sleep, but not past the next task's end. */
        int64_t ns = sleep_ns;
        if (u->flen) {
            int64_t due = u->e[u->fifo[u->fhead]].t_start + u->hold_ns - now;
            if (due < ns)
                ns = due > 1000 ? due : 1000;
        }
        struct timespec ts = {0, (long)ns};
        nanosleep(&ts, NULL);
        if (sleep_ns < EMU_SLEEP_MAX_NS)
            sleep_ns *= 2;
    }
    for (int i = 0; i < 100000 && t->ops->progress(t) > 0; i++) {
        struct timespec ts = {0, 50000};
        nanosleep(&ts, NULL);
    }
    if (u->bad)
        CPARSL_LOG(CPARSL_LOG_WARN, "emulate",
                   "rank %d dropped %llu bad messages or records", o->rank,
                   (unsigned long long)u->bad);
    htex_task_free(&u->scratch);
    htex_buf_free(&u->out);
    free(u->m);
    free(u->e);
    free(u->fifo);
    free(u->dirty);
    free(u->hkeys);
    free(u->hvals);
    return rc;
}
