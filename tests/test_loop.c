/*
 * test_loop.c - the in-process loop transport (htex/transport/loop.h) and
 * the idle wait every htex loop uses (htex/backoff.h).
 *
 * Endpoints are driven by threads, as the interchange and managers will
 * be: ping-pong, many senders to one receiver (every payload exactly
 * once, in per-sender order), all-to-all with concurrent destroys, buffer
 * reuse (no malloc in steady state), bad peers, and the backoff's CPU use
 * while idle.
 */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>

#include <cparsl/transport.h>

#include "backoff.h"
#include "check.h"
#include "transport/loop.h"

static double now_s(void)
{
    return (double)htex_now_ns() * 1e-9;
}

/* ---- payloads --------------------------------------------------------------
 * Every message: u32 sender, u32 seq, then bytes that depend on both. */

struct hdr {
    uint32_t from, seq;
};

static size_t payload_len(uint32_t seq)
{
    if (seq % 1000 == 999)
        return 5000; /* now and then a bigger size class */
    return sizeof(struct hdr) + seq % 200;
}

static unsigned char pattern(uint32_t from, uint32_t seq, size_t i)
{
    return (unsigned char)(from * 131u + seq * 7u + i);
}

static void fill(void *buf, uint32_t from, uint32_t seq, size_t len)
{
    struct hdr h = {from, seq};
    memcpy(buf, &h, sizeof(h));
    unsigned char *p = buf;
    for (size_t i = sizeof(h); i < len; i++)
        p[i] = pattern(from, seq, i);
}

/* 1 if buf[0..len) is what sender 'from' sends as number 'seq'. */
static int payload_ok(const void *buf, size_t len, uint32_t from, uint32_t seq)
{
    struct hdr h;
    if (len != payload_len(seq))
        return 0;
    memcpy(&h, buf, sizeof(h));
    if (h.from != from || h.seq != seq)
        return 0;
    const unsigned char *p = buf;
    for (size_t i = sizeof(h); i < len; i++)
        if (p[i] != pattern(from, seq, i))
            return 0;
    return 1;
}

static int send_seq(cparsl_transport_t *t, int peer, uint32_t seq)
{
    size_t len = payload_len(seq);
    void *buf = t->ops->msg_alloc(t, len);
    if (!buf)
        return -ENOMEM;
    fill(buf, (uint32_t)t->ops->self(t), seq, len);
    return t->ops->send(t, peer, buf, len);
}

/* Wait (polling with backoff) for one message; 1, or 0 after 'timeout'. */
static int recv_wait(cparsl_transport_t *t, int *peer, void **buf, size_t *len,
                     double timeout)
{
    htex_backoff_t b = HTEX_BACKOFF_INIT;
    double end = now_s() + timeout;
    for (;;) {
        int rc = t->ops->try_recv(t, peer, buf, len, NULL);
        if (rc != 0)
            return rc;
        if (now_s() > end)
            return 0;
        htex_backoff_wait(&b);
    }
}

/* ---- ping-pong ----------------------------------------------------------- */

struct pp {
    cparsl_transport_t *ep;
    long n;
    int errors;
};

static void *pong_main(void *arg)
{
    struct pp *p = arg;
    cparsl_transport_t *t = p->ep;
    for (long i = 0; i < p->n; i++) {
        int peer;
        void *buf;
        size_t len;
        if (recv_wait(t, &peer, &buf, &len, 30) != 1) {
            p->errors++;
            break;
        }
        uint64_t v;
        memcpy(&v, buf, sizeof(v));
        if (peer != 0 || len != sizeof(v) || v != (uint64_t)i)
            p->errors++;
        v++;
        /* Send the same buffer back: a received buffer is a free one. */
        memcpy(buf, &v, sizeof(v));
        if (t->ops->send(t, 0, buf, sizeof(v)) != 0)
            p->errors++;
    }
    return NULL;
}

/* n round trips from endpoint 0 (this thread) to endpoint 1 (a thread);
 * returns seconds per round trip, or -1 on a failure. */
static double pingpong(cparsl_transport_t **eps, long n)
{
    struct pp p = {eps[1], n, 0};
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, pong_main, &p) == 0, "thread");
    cparsl_transport_t *t = eps[0];
    int bad = 0;
    double t0 = now_s();
    for (long i = 0; i < n && !bad; i++) {
        uint64_t v = (uint64_t)i;
        void *buf = t->ops->msg_alloc(t, sizeof(v));
        memcpy(buf, &v, sizeof(v));
        bad |= t->ops->send(t, 1, buf, sizeof(v)) != 0;
        int peer;
        size_t len;
        if (recv_wait(t, &peer, &buf, &len, 30) != 1) {
            bad = 1;
            break;
        }
        memcpy(&v, buf, sizeof(v));
        bad |= peer != 1 || len != sizeof(v) || v != (uint64_t)i + 1;
        t->ops->msg_free(t, buf);
    }
    double dt = now_s() - t0;
    pthread_join(th, NULL);
    CHECK(!bad && p.errors == 0, "ping-pong: %d errors here, %d there", bad,
          p.errors);
    return bad || p.errors ? -1 : dt / (double)n;
}

TEST_CASE(pingpong)
{
    cparsl_transport_t *eps[2];
    cparsl_error_t err = {0};
    REQUIRE(htex_loop_create(2, eps, &err) == 0, "create: %s", err.text);
    CHECK(eps[0]->ops == &htex_loop_ops, "ops");
    CHECK(strcmp(eps[0]->ops->name, "loop") == 0, "name");
    CHECK(eps[0]->ops->self(eps[0]) == 0 && eps[1]->ops->self(eps[1]) == 1,
          "self");
    CHECK(eps[1]->ops->size(eps[1]) == 2, "size");

    long n = check_scale(100000);
    double rt = pingpong(eps, n);
    fprintf(stderr, "loop ping-pong: %ld round trips, %.2f us per round trip\n",
            n, rt * 1e6);
    /* Two buffers circulate; the pool should not grow with n. */
    size_t allocs = htex_loop_allocs(eps[0]);
    CHECK(allocs < 64, "ping-pong took %zu buffers from malloc", allocs);
    CHECK(eps[0]->ops->progress(eps[0]) == 0, "nothing in flight");
    eps[0]->ops->destroy(eps[0]);
    eps[1]->ops->destroy(eps[1]);
}

/* ---- many senders, one receiver ----------------------------------------- */

#define M2O_SENDERS 8

struct sender {
    cparsl_transport_t *ep;
    long n;
    int errors;
};

static void *sender_main(void *arg)
{
    struct sender *s = arg;
    for (long i = 0; i < s->n; i++)
        if (send_seq(s->ep, 0, (uint32_t)i) != 0)
            s->errors++;
    return NULL;
}

TEST_CASE(many_to_one)
{
    cparsl_transport_t *eps[M2O_SENDERS + 1];
    REQUIRE(htex_loop_create(M2O_SENDERS + 1, eps, NULL) == 0, "create");
    long n = check_scale(10000);
    struct sender s[M2O_SENDERS + 1];
    pthread_t th[M2O_SENDERS + 1];
    double t0 = now_s();
    for (int i = 1; i <= M2O_SENDERS; i++) {
        s[i] = (struct sender){eps[i], n, 0};
        REQUIRE(pthread_create(&th[i], NULL, sender_main, &s[i]) == 0, "th");
    }
    cparsl_transport_t *t = eps[0];
    long next[M2O_SENDERS + 1] = {0};
    long total = 0, bad = 0, want = n * M2O_SENDERS;
    while (total < want) {
        int peer;
        void *buf;
        size_t len;
        if (recv_wait(t, &peer, &buf, &len, 30) != 1)
            break;
        total++;
        if (peer < 1 || peer > M2O_SENDERS ||
            !payload_ok(buf, len, (uint32_t)peer, (uint32_t)next[peer]))
            bad++;
        else
            next[peer]++;
        t->ops->msg_free(t, buf);
    }
    double dt = now_s() - t0;
    for (int i = 1; i <= M2O_SENDERS; i++) {
        pthread_join(th[i], NULL);
        CHECK(s[i].errors == 0, "sender %d: %d send errors", i, s[i].errors);
        CHECK(next[i] == n, "sender %d: %ld of %ld in order", i, next[i], n);
    }
    CHECK(total == want, "received %ld of %ld", total, want);
    CHECK(bad == 0, "%ld messages wrong or out of order", bad);
    int peer;
    void *buf;
    size_t len;
    CHECK(t->ops->try_recv(t, &peer, &buf, &len, NULL) == 0,
          "a message beyond the last");
    fprintf(stderr,
            "loop many-to-one: %d senders x %ld messages in %.3f s, "
            "%.2f M messages/s, %zu buffers from malloc\n",
            M2O_SENDERS, n, dt, (double)want / dt * 1e-6, htex_loop_allocs(t));
    for (int i = 0; i <= M2O_SENDERS; i++)
        eps[i]->ops->destroy(eps[i]);
}

/* ---- all to all, each endpoint its own thread, destroyed by it ----------- */

#define A2A_N 4

struct a2a {
    cparsl_transport_t *ep;
    long n;
    int errors;
};

static void *a2a_main(void *arg)
{
    struct a2a *a = arg;
    cparsl_transport_t *t = a->ep;
    int me = t->ops->self(t);
    long next[A2A_N] = {0}, got = 0, want = a->n * (A2A_N - 1);
    long sent = 0;
    htex_backoff_t b = HTEX_BACKOFF_INIT;
    double end = now_s() + 60;
    while ((got < want || sent < a->n) && now_s() < end) {
        int busy = 0;
        if (sent < a->n) {
            for (int p = 0; p < A2A_N; p++)
                if (p != me && send_seq(t, p, (uint32_t)sent) != 0)
                    a->errors++;
            sent++;
            busy = 1;
        }
        int peer;
        void *buf;
        size_t len;
        while (t->ops->try_recv(t, &peer, &buf, &len, NULL) == 1) {
            if (peer < 0 || peer >= A2A_N || peer == me ||
                !payload_ok(buf, len, (uint32_t)peer, (uint32_t)next[peer]))
                a->errors++;
            else
                next[peer]++;
            got++;
            busy = 1;
            t->ops->msg_free(t, buf);
        }
        if (busy)
            htex_backoff_reset(&b);
        else
            htex_backoff_wait(&b);
    }
    if (got != want)
        a->errors++;
    /* Everything addressed to us has arrived; the others may still be
     * receiving, and the last destroy frees the fabric. */
    t->ops->destroy(t);
    return NULL;
}

TEST_CASE(all_to_all)
{
    cparsl_transport_t *eps[A2A_N];
    REQUIRE(htex_loop_create(A2A_N, eps, NULL) == 0, "create");
    struct a2a a[A2A_N];
    pthread_t th[A2A_N];
    long n = check_scale(20000);
    for (int i = 0; i < A2A_N; i++) {
        a[i] = (struct a2a){eps[i], n, 0};
        REQUIRE(pthread_create(&th[i], NULL, a2a_main, &a[i]) == 0, "th");
    }
    for (int i = 0; i < A2A_N; i++) {
        pthread_join(th[i], NULL);
        CHECK(a[i].errors == 0, "endpoint %d: %d errors", i, a[i].errors);
    }
}

/* ---- buffers ------------------------------------------------------------- */

TEST_CASE(buffer_reuse)
{
    cparsl_transport_t *eps[2];
    REQUIRE(htex_loop_create(2, eps, NULL) == 0, "create");
    cparsl_transport_t *a = eps[0], *b = eps[1];
    int peer;
    void *buf, *got;
    size_t len;

    /* send moves the buffer: the receiver gets the very same bytes. */
    buf = a->ops->msg_alloc(a, 100);
    REQUIRE(buf != NULL, "alloc");
    memset(buf, 0xab, 100);
    CHECK(a->ops->send(a, 1, buf, 100) == 0, "send");
    CHECK(b->ops->try_recv(b, &peer, &got, &len, NULL) == 1, "recv");
    CHECK(got == buf && peer == 0 && len == 100, "moved, not copied");
    CHECK(((unsigned char *)got)[99] == 0xab, "contents");
    b->ops->msg_free(b, got);
    /* ... and a freed buffer is the next one handed out. */
    void *again = b->ops->msg_alloc(b, 200);
    CHECK(again == got, "freed buffer reused");
    b->ops->msg_free(b, again);

    /* Alignment, zero length, sending to oneself. */
    buf = a->ops->msg_alloc(a, 0);
    CHECK(buf && ((uintptr_t)buf % sizeof(max_align_t)) == 0, "aligned");
    CHECK(a->ops->send(a, 0, buf, 0) == 0, "send to self");
    CHECK(a->ops->try_recv(a, &peer, &got, &len, NULL) == 1 && peer == 0 &&
              len == 0 && got == buf,
          "receive from self");
    a->ops->msg_free(a, got);

    /* A buffer over the largest size class (not pooled) works the same. */
    size_t big = (size_t)9 << 20;
    buf = a->ops->msg_alloc(a, big);
    REQUIRE(buf != NULL, "alloc 9 MiB");
    memset(buf, 0x5a, big);
    CHECK(a->ops->send(a, 1, buf, big) == 0, "send big");
    CHECK(b->ops->try_recv(b, &peer, &got, &len, NULL) == 1 && len == big &&
              ((unsigned char *)got)[big - 1] == 0x5a,
          "receive big");
    b->ops->msg_free(b, got);

    /* Steady state allocates nothing: after a warm-up, round trips of every
     * size class leave the malloc count alone. */
    for (int round = 0; round < 2; round++) {
        size_t before = htex_loop_allocs(a);
        for (int i = 0; i < 2000; i++) {
            size_t l = (size_t)1 << (i % 22); /* 1 B .. 2 MiB */
            buf = a->ops->msg_alloc(a, l);
            a->ops->send(a, 1, buf, l);
            b->ops->try_recv(b, &peer, &got, &len, NULL);
            b->ops->send(b, 0, got, len);
            a->ops->try_recv(a, &peer, &got, &len, NULL);
            a->ops->msg_free(a, got);
        }
        if (round == 1)
            CHECK(htex_loop_allocs(a) == before,
                  "steady state took %zu buffers from malloc",
                  htex_loop_allocs(a) - before);
    }
    /* Buffers freed by the receiver come back to the sender in batches. */
    size_t before = htex_loop_allocs(a);
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < 100; i++) {
            buf = a->ops->msg_alloc(a, 64);
            a->ops->send(a, 1, buf, 64);
        }
        for (int i = 0; i < 100; i++) {
            b->ops->try_recv(b, &peer, &got, &len, NULL);
            b->ops->msg_free(b, got);
        }
    }
    CHECK(htex_loop_allocs(a) - before <= 200,
          "one-way traffic took %zu buffers from malloc",
          htex_loop_allocs(a) - before);
    a->ops->destroy(a);
    b->ops->destroy(b);
}

/* ---- errors -------------------------------------------------------------- */

TEST_CASE(bad_peer)
{
    cparsl_transport_t *eps[3];
    cparsl_error_t err = {0};
    CHECK(htex_loop_create(0, eps, &err) == -EINVAL, "n=0");
    CHECK(err.code == -EINVAL && err.text[0], "error text");
    CHECK(htex_loop_create(2, NULL, NULL) == -EINVAL, "no array");

    REQUIRE(htex_loop_create(3, eps, NULL) == 0, "create");
    cparsl_transport_t *t = eps[0];
    /* Each refused send frees its buffer (ASan would see a leak). */
    CHECK(t->ops->send(t, -1, t->ops->msg_alloc(t, 8), 8) == -EINVAL, "-1");
    CHECK(t->ops->send(t, 3, t->ops->msg_alloc(t, 8), 8) == -EINVAL, "n");
    CHECK(t->ops->send(t, 99, t->ops->msg_alloc(t, 8), 8) == -EINVAL, "99");
    CHECK(t->ops->send(t, 1, NULL, 0) == -EINVAL, "NULL buffer");
    CHECK(t->ops->send(t, 1, t->ops->msg_alloc(t, 8), 100000) == -EINVAL,
          "len over the buffer's capacity");
    t->ops->msg_free(t, NULL);
    t->ops->msg_free(t, t->ops->msg_alloc(t, 10)); /* unsent buffer */

    int peer;
    void *buf;
    size_t len;
    for (int i = 0; i < 3; i++)
        CHECK(eps[i]->ops->try_recv(eps[i], &peer, &buf, &len, NULL) == 0,
              "endpoint %d got a message from a refused send", i);

    /* Messages left in an inbox are freed by destroy; a send to a
     * destroyed endpoint fails cleanly. */
    for (int i = 0; i < 10; i++)
        CHECK(send_seq(t, 2, (uint32_t)i) == 0, "send %d", i);
    eps[2]->ops->destroy(eps[2]);
    CHECK(send_seq(t, 2, 0) == -EPIPE, "send to a destroyed endpoint");
    CHECK(send_seq(t, 1, 0) == 0, "send to a live one");
    eps[1]->ops->destroy(eps[1]);
    eps[0]->ops->destroy(eps[0]);
}

/* ---- backoff ------------------------------------------------------------- */

struct idle {
    double seconds;
    double cpu_s;
    long waits, slept;
    int64_t cap_ns;
};

static double thread_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) * 1e-6;
}

static void *idle_main(void *arg)
{
    struct idle *w = arg;
    htex_backoff_t b = HTEX_BACKOFF_INIT;
    if (w->cap_ns)
        htex_backoff_set_cap(&b, w->cap_ns);
    double c0 = thread_cpu_s(), end = now_s() + w->seconds;
    while (now_s() < end) {
        w->slept += htex_backoff_wait(&b);
        w->waits++;
    }
    w->cpu_s = thread_cpu_s() - c0;
    return NULL;
}

TEST_CASE(backoff)
{
    /* Right after a message only yields, then sleeps. */
    htex_backoff_t b = HTEX_BACKOFF_INIT;
    int64_t t0 = htex_now_ns();
    CHECK(htex_backoff_wait(&b) == 0, "first idle turn yields");
    while (htex_backoff_wait(&b) == 0 && htex_now_ns() - t0 < 1000000000)
        ;
    int64_t yielded = htex_now_ns() - t0;
    CHECK(yielded >= HTEX_BACKOFF_WINDOW_NS, "yielded only %lld ns",
          (long long)yielded);
    CHECK(yielded < 1000000000, "never slept");
    /* Sleeps double up to the cap. */
    for (int i = 0; i < 20; i++)
        htex_backoff_wait(&b);
    CHECK(b.sleep_ns == HTEX_BACKOFF_CAP_NS, "sleep %lld ns at the cap",
          (long long)b.sleep_ns);
    /* A message brings it back to yielding. */
    htex_backoff_reset(&b);
    CHECK(htex_backoff_wait(&b) == 0, "yields after reset");

    /* A settable cap. */
    htex_backoff_t c = HTEX_BACKOFF_INIT;
    htex_backoff_set_cap(&c, 40000);
    htex_backoff_set_window(&c, 1000);
    int slept = 0;
    for (int64_t t1 = htex_now_ns();
         slept < 5 && htex_now_ns() - t1 < 1000000000;)
        slept += htex_backoff_wait(&c);
    CHECK(c.sleep_ns == 40000, "cap 40 us: next sleep %lld ns",
          (long long)c.sleep_ns);

    /* Timer slack is per thread and asked for on the first sleep. */
    CHECK(prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0) == HTEX_TIMERSLACK_NS,
          "timer slack %d ns", prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0));

    /* An idle waiter uses little CPU: 0.5 s of waiting, < 20% of a core
     * (it is about 1% here: ~500 wake-ups of a few microseconds). */
    struct idle w = {.seconds = 0.5};
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, idle_main, &w) == 0, "thread");
    pthread_join(th, NULL);
    double frac = w.cpu_s / w.seconds;
    fprintf(stderr,
            "backoff: idle 0.5 s: %.1f%% of a core, %ld waits (%ld slept)\n",
            frac * 100, w.waits, w.slept);
    CHECK(frac < 0.20, "idle waiter used %.1f%% of a core", frac * 100);
    /* With 1 ms sleeps it wakes at most ~500 times, plus the yields. */
    CHECK(w.slept < 2000, "%ld sleeps in 0.5 s", w.slept);
}

static const check_case_t cases[] = {
    TEST_ENTRY(pingpong),   TEST_ENTRY(many_to_one),
    TEST_ENTRY(all_to_all), TEST_ENTRY(buffer_reuse),
    TEST_ENTRY(bad_peer),   TEST_ENTRY(backoff),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return check_main(argc, argv, cases);
}
