/*
 * test_fabric.c - the libfabric transport (htex/transport/fabric.h)
 * between real processes.
 *
 * Each case forks its joiners before the listener opens anything (under
 * CTest each case is a process of its own, so no libfabric state crosses
 * a fork) and hands them the published address through a pipe.  Cases: the join
 * handshake (stranger, admit, reply) and 10,000 round trips of 1 byte to
 * max_msg over shm and over tcp;ofi_rxm; the strangers' quota (trust, forget);
 * malformed input (addresses, names, sizes, options); a joiner killed with
 * SIGKILL; the CPU an idle listener uses; round-trip latency and message
 * rate; and that libfabric is loaded only when an endpoint opens, leaving
 * every signal's handler as it was.
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cparsl/transport.h>

#include "backoff.h"
#include "check.h"
#include "transport/fabric.h"

#define ADDR_MAX 4096
#define TCP      "tcp;ofi_rxm"
#define SHM      "shm"

/* Message kinds, first byte of the handshake messages. */
enum { M_HELLO = 'H', M_WELCOME = 'W', M_DONE = 'D' };

static double now_s(void)
{
    return (double)htex_now_ns() * 1e-9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) * 1e-6;
}

/* ---- child processes -------------------------------------------------------
 * A child reads the published address (one line) from a pipe, runs its
 * part and exits 0 when all its checks passed. */

typedef int (*kid_fn)(const char *addr, int arg);

struct kid {
    pid_t pid;
    int wfd; /* the pipe to the child */
};

static struct kid spawn(kid_fn fn, int arg)
{
    int p[2];
    REQUIRE(pipe(p) == 0, "pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        close(p[1]);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        alarm(60); /* never outlive a stuck test */
        char addr[ADDR_MAX];
        size_t n = 0;
        while (n + 1 < sizeof addr) {
            ssize_t k = read(p[0], addr + n, 1);
            if (k <= 0 || addr[n] == '\n')
                break;
            n++;
        }
        addr[n] = '\0';
        close(p[0]);
        int rc = n ? fn(addr, arg) : 3;
        fflush(NULL);
        exit(rc != 0 ? rc : check__failed ? 1 : 0);
    }
    close(p[0]);
    return (struct kid){pid, p[1]};
}

static void tell(struct kid *k, const char *addr)
{
    size_t n = strlen(addr);
    CHECK(write(k->wfd, addr, n) == (ssize_t)n && write(k->wfd, "\n", 1) == 1,
          "write the address to child %d", (int)k->pid);
    close(k->wfd);
    k->wfd = -1;
}

/* Wait for a child (sleeping); its exit status, or -1 after killing it
 * at the deadline. */
static int reap(struct kid *k, double timeout_s)
{
    if (k->wfd >= 0) {
        close(k->wfd);
        k->wfd = -1;
    }
    double end = now_s() + timeout_s;
    struct timespec nap = {0, 5000000};
    int st;
    for (;;) {
        pid_t r = waitpid(k->pid, &st, WNOHANG);
        if (r == k->pid)
            break;
        if (now_s() > end) {
            kill(k->pid, SIGKILL);
            waitpid(k->pid, &st, 0);
            return -1;
        }
        nanosleep(&nap, NULL);
    }
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return WEXITSTATUS(st);
}

/* ---- transport helpers ----------------------------------------------------
 */

static cparsl_transport_t *listen_on(const char *const *provs, size_t n,
                                     size_t max_msg, int max_strangers)
{
    htex_fabric_opts_t o = {.providers = provs,
                            .nproviders = n,
                            .max_msg = max_msg,
                            .max_strangers = max_strangers};
    cparsl_transport_t *t = NULL;
    cparsl_error_t err;
    int rc = htex_fabric_listen(&o, &t, &err);
    REQUIRE(rc == 0, "listen: %d %s", rc, err.text);
    return t;
}

static void publish(cparsl_transport_t *t, char *addr)
{
    int n = htex_fabric_published(t, addr, ADDR_MAX, NULL);
    REQUIRE(n > 0 && (size_t)n == strlen(addr), "published: %d", n);
}

static cparsl_transport_t *join_with(const char *addr, const char *prov,
                                     size_t max_msg)
{
    const char *provs[1] = {prov};
    htex_fabric_opts_t o = {
        .providers = provs, .nproviders = prov ? 1 : 0, .max_msg = max_msg};
    cparsl_transport_t *t = NULL;
    cparsl_error_t err;
    int rc = htex_fabric_join(addr, &o, &t, &err);
    CHECK(rc == 0, "join over %s: %d %s", prov ? prov : "any", rc, err.text);
    return rc == 0 ? t : NULL;
}

/* Send len bytes (a copy of p) to peer; the send's return code. */
static int send_bytes(cparsl_transport_t *t, int peer, const void *p,
                      size_t len)
{
    void *buf = t->ops->msg_alloc(t, len ? len : 1);
    if (!buf)
        return -ENOMEM;
    if (len)
        memcpy(buf, p, len);
    return t->ops->send(t, peer, buf, len);
}

/* The next message (1), or 0 at the deadline.  Polls for a short window
 * (yielding), then sleeps in htex_fabric_wait, which wakes for rxm's
 * protocol steps too (a large send needs its sender's progress). */
static int recv_until(cparsl_transport_t *t, int *peer, void **buf, size_t *len,
                      double timeout_s)
{
    double start = now_s(), end = start + timeout_s;
    for (;;) {
        cparsl_error_t err;
        int rc = t->ops->try_recv(t, peer, buf, len, &err);
        CHECK(rc >= 0, "try_recv: %d %s", rc, err.text);
        if (rc > 0)
            return 1;
        t->ops->progress(t);
        double now = now_s();
        if (now > end)
            return 0;
        if (now - start < 75e-6)
            sched_yield();
        else
            htex_fabric_wait(t, 10);
    }
}

/* Let sends finish (sleeping), at most timeout_s. */
static void drain(cparsl_transport_t *t, double timeout_s)
{
    htex_backoff_t b = HTEX_BACKOFF_INIT;
    double end = now_s() + timeout_s;
    while (t->ops->progress(t) > 0 && now_s() < end)
        htex_backoff_wait(&b);
}

static size_t size_of(uint32_t i, size_t max_msg)
{
    if (i == 0)
        return 1;
    if (i == 1)
        return max_msg;
    if (i % 8 == 7) /* now and then anything up to max_msg */
        return 1 + (size_t)((i * 2654435761u) % max_msg);
    return 1 + (size_t)((i * 37u) % 300);
}

static unsigned char pattern(uint32_t seq, size_t k)
{
    return (unsigned char)(seq * 131u + k * 7u + (k >> 8));
}

/* seq in the first bytes (as many as fit), then the pattern. */
static void fill(unsigned char *p, uint32_t seq, size_t len)
{
    memcpy(p, &seq, len < 4 ? len : 4);
    for (size_t k = 4; k < len; k++)
        p[k] = pattern(seq, k);
}

static int payload_ok(const unsigned char *p, size_t len, uint32_t seq)
{
    unsigned char want[4];
    memcpy(want, &seq, 4);
    if (memcmp(p, want, len < 4 ? len : 4) != 0)
        return 0;
    for (size_t k = 4; k < len; k++)
        if (p[k] != pattern(seq, k))
            return 0;
    return 1;
}

/* ---- the joiner's side ------------------------------------------------------
 * HELLO {kind, pid, endpoint name} to peer 0; the listener admits the name
 * and answers WELCOME {kind, peer number}. */

#define HELLO_HDR 5

/* A HELLO for t into msg (room for HELLO_HDR + 512): its length. */
static size_t make_hello(cparsl_transport_t *t, unsigned char *msg)
{
    msg[0] = M_HELLO;
    int32_t pid = (int32_t)getpid();
    memcpy(msg + 1, &pid, 4);
    int n = htex_fabric_name(t, msg + HELLO_HDR, 512);
    CHECK(n > 0, "htex_fabric_name: %d", n);
    return HELLO_HDR + (size_t)(n > 0 ? n : 0);
}

static int hello(cparsl_transport_t *t, int *assigned)
{
    unsigned char msg[HELLO_HDR + 512];
    size_t n = make_hello(t, msg);
    int rc = send_bytes(t, 0, msg, n);
    CHECK(rc == 0, "send HELLO: %d", rc);
    int peer;
    void *buf;
    size_t len;
    if (!recv_until(t, &peer, &buf, &len, 15)) {
        CHECK(0, "no WELCOME");
        return -1;
    }
    const unsigned char *w = buf;
    int ok = peer == 0 && len == 5 && w[0] == M_WELCOME;
    CHECK(ok, "WELCOME from %d, %zu bytes", peer, len);
    if (ok)
        memcpy(assigned, w + 1, 4);
    t->ops->msg_free(t, buf);
    return ok ? 0 : -1;
}

struct rt_arg {
    const char *prov;
    size_t max_msg;
    uint32_t rounds;
};

static struct rt_arg rt_args[2];

/* A joiner of the round-trip case: HELLO, then rounds echoes of every
 * size, each checked. */
static int roundtrip_kid(const char *addr, int which)
{
    const struct rt_arg *a = &rt_args[which];
    cparsl_transport_t *t = join_with(addr, a->prov, a->max_msg);
    if (!t)
        return 1;
    CHECK(strcmp(htex_fabric_provider(t), a->prov) == 0, "joined over %s",
          htex_fabric_provider(t));
    CHECK(t->ops->self(t) == -1 && t->ops->size(t) == 1,
          "a joiner knows only peer 0 (self %d, size %d)", t->ops->self(t),
          t->ops->size(t));
    int me = -1;
    if (hello(t, &me) < 0) {
        t->ops->destroy(t);
        return 1;
    }
    CHECK(me > 0, "assigned peer %d", me);
    uint32_t bad = 0;
    for (uint32_t i = 0; i < a->rounds; i++) {
        size_t len = size_of(i, a->max_msg);
        unsigned char *buf = t->ops->msg_alloc(t, len);
        REQUIRE(buf, "msg_alloc %zu", len);
        fill(buf, i, len);
        int rc = t->ops->send(t, 0, buf, len);
        CHECK(rc == 0, "send %u: %d", i, rc);
        int peer;
        void *rb;
        size_t rlen;
        if (!recv_until(t, &peer, &rb, &rlen, 10)) {
            CHECK(0, "no echo of %u (%zu bytes)", i, len);
            break;
        }
        if (peer != 0 || rlen != len || !payload_ok(rb, rlen, i))
            bad++;
        t->ops->msg_free(t, rb);
    }
    CHECK(bad == 0, "%u echoes wrong", bad);
    /* DONE, then the listener's last word, so nothing is in flight. */
    unsigned char d = M_DONE;
    CHECK(send_bytes(t, 0, &d, 1) == 0, "send DONE");
    int peer;
    void *rb;
    size_t rlen;
    if (recv_until(t, &peer, &rb, &rlen, 15)) {
        CHECK(rlen == 1 && ((unsigned char *)rb)[0] == M_DONE, "final DONE");
        t->ops->msg_free(t, rb);
    } else {
        CHECK(0, "no final DONE");
    }
    t->ops->destroy(t);
    return 0;
}

/* ---- the listener's side ---------------------------------------------------
 */

/* A stranger's HELLO: admit its name, WELCOME it.  The new peer (and
 * the sender's pid in *pid if not NULL), or -1. */
static int welcome(cparsl_transport_t *t, const unsigned char *msg, size_t len,
                   int *pid)
{
    if (len <= HELLO_HDR || msg[0] != M_HELLO) {
        CHECK(0, "a stranger's message is not a HELLO (%zu bytes)", len);
        return -1;
    }
    if (pid) {
        int32_t p32;
        memcpy(&p32, msg + 1, 4);
        *pid = p32;
    }
    int peer = -1;
    cparsl_error_t err;
    int rc =
        htex_fabric_admit(t, msg + HELLO_HDR, len - HELLO_HDR, &peer, &err);
    CHECK(rc == 0, "admit: %d %s", rc, err.text);
    if (rc < 0)
        return -1;
    unsigned char w[5] = {M_WELCOME};
    memcpy(w + 1, &peer, 4);
    CHECK(send_bytes(t, peer, w, 5) == 0, "send WELCOME to %d", peer);
    return peer;
}

/* Echo a message back to its sender. */
static void echo(cparsl_transport_t *t, int peer, const void *p, size_t len)
{
    int rc = send_bytes(t, peer, p, len);
    CHECK(rc == 0, "echo %zu bytes to %d: %d", len, peer, rc);
}

static void roundtrip(const char *prov)
{
    const char *provs[2] = {SHM, TCP};
    size_t max_msg = 256 * 1024;
    uint32_t rounds = (uint32_t)check_scale(5000);
    for (int k = 0; k < 2; k++)
        rt_args[k] = (struct rt_arg){prov, max_msg, rounds};
    struct kid kids[2] = {spawn(roundtrip_kid, 0), spawn(roundtrip_kid, 1)};

    cparsl_transport_t *t = listen_on(provs, 2, max_msg, 0);
    CHECK(t->ops->self(t) == 0 && t->ops->size(t) == 1,
          "listener: self %d, size %d", t->ops->self(t), t->ops->size(t));
    char addr[ADDR_MAX];
    publish(t, addr);
    fprintf(stderr, "published: %s\n", addr);
    for (int k = 0; k < 2; k++)
        tell(&kids[k], addr);

    int peers[2] = {-1, -1}, nwelcomed = 0, ndone = 0;
    unsigned char *names[2] = {NULL, NULL};
    size_t name_len[2] = {0, 0};
    unsigned long echoes = 0;
    double t0 = 0, t1 = 0;
    double end = now_s() + 30;
    htex_backoff_t b = HTEX_BACKOFF_INIT;
    while (ndone < 2 && now_s() < end) {
        int peer;
        void *buf;
        size_t len;
        cparsl_error_t err;
        int rc = t->ops->try_recv(t, &peer, &buf, &len, &err);
        CHECK(rc >= 0, "try_recv: %d %s", rc, err.text);
        if (rc <= 0) {
            t->ops->progress(t);
            htex_backoff_wait(&b);
            continue;
        }
        htex_backoff_reset(&b);
        const unsigned char *m = buf;
        if (peer == HTEX_FABRIC_STRANGER) {
            CHECK(strcmp(htex_fabric_provider(t), prov) == 0,
                  "stranger came in over %s", htex_fabric_provider(t));
            int p = welcome(t, m, len, NULL);
            if (p > 0 && nwelcomed < 2) {
                peers[nwelcomed] = p;
                name_len[nwelcomed] = len - HELLO_HDR;
                names[nwelcomed] = malloc(name_len[nwelcomed]);
                memcpy(names[nwelcomed], m + HELLO_HDR, name_len[nwelcomed]);
                if (++nwelcomed == 2)
                    t0 = now_s();
            }
        } else if (len == 1 && m[0] == M_DONE) {
            CHECK(peer == peers[0] || peer == peers[1], "DONE from %d", peer);
            if (++ndone == 2)
                t1 = now_s();
            echo(t, peer, m, 1);
        } else {
            CHECK(peer == peers[0] || peer == peers[1], "message from peer %d",
                  peer);
            uint32_t seq = 0;
            memcpy(&seq, m, len < 4 ? len : 4);
            if (len >= 4)
                CHECK(payload_ok(m, len, seq), "payload %u (%zu bytes)", seq,
                      len);
            echo(t, peer, m, len);
            echoes++;
        }
        t->ops->msg_free(t, buf);
    }
    CHECK(ndone == 2, "%d joiners done", ndone);
    CHECK(echoes == 2ul * rounds, "%lu echoes of %u", echoes, 2 * rounds);
    if (t1 > t0)
        fprintf(stderr,
                "%s: %lu round trips of 1 B..%zu KiB in %.2f s "
                "(2 joiners): %.0f msgs/s\n",
                prov, echoes, max_msg / 1024, t1 - t0,
                2.0 * (double)echoes / (t1 - t0));
    drain(t, 5);
    for (int k = 0; k < 2; k++)
        CHECK(reap(&kids[k], 20) == 0, "joiner %d failed", k);

    /* Accounting: trust twice is once; forget frees the number, and the
     * same name admitted again gets it back. */
    CHECK(t->ops->size(t) == 3, "size %d after 2 peers", t->ops->size(t));
    htex_fabric_trust(t, peers[0]);
    htex_fabric_trust(t, peers[0]);
    htex_fabric_forget(t, peers[1]);
    htex_fabric_forget(t, peers[1]); /* a second time: nothing */
    CHECK(send_bytes(t, peers[1], "x", 1) == -EINVAL,
          "send to a forgotten peer");
    int again = -1, same = -1;
    cparsl_error_t err;
    CHECK(htex_fabric_admit(t, names[1], name_len[1], &again, &err) == 0,
          "admit again: %s", err.text);
    CHECK(again == peers[1], "number %d reused as %d", peers[1], again);
    CHECK(htex_fabric_admit(t, names[0], name_len[0], &same, &err) == 0 &&
              same == peers[0],
          "a name admitted already gives its peer (%d, %d)", same, peers[0]);
    htex_fabric_forget(t, again);
    htex_fabric_forget(t, peers[0]);
    CHECK(t->ops->size(t) == 3, "size stays the high-water mark");
    free(names[0]);
    free(names[1]);
    t->ops->destroy(t);
}

TEST_CASE(roundtrip_shm)
{
    roundtrip(SHM);
}

TEST_CASE(roundtrip_tcp)
{
    roundtrip(TCP);
}

/* ---- the strangers' quota ------------------------------------------------ */

/* Three joiners in one process: each says HELLO and waits for its
 * WELCOME (or, for one refused at first, a later one). */
static int quota_kid(const char *addr, int arg)
{
    cparsl_transport_t *t[3];
    for (int k = 0; k < 3; k++) {
        t[k] = join_with(addr, TCP, 0);
        if (!t[k])
            return 1;
    }
    for (int k = 0; k < 3; k++) {
        unsigned char msg[HELLO_HDR + 512];
        size_t n = make_hello(t[k], msg);
        CHECK(send_bytes(t[k], 0, msg, n) == 0, "HELLO %d", k);
        /* One at a time, so the listener sees them in order. */
        int peer;
        void *buf;
        size_t len;
        if (k < 2) {
            CHECK(recv_until(t[k], &peer, &buf, &len, 10), "WELCOME %d", k);
            t[k]->ops->msg_free(t[k], buf);
        }
    }
    int peer;
    void *buf;
    size_t len;
    CHECK(recv_until(t[2], &peer, &buf, &len, 10), "late WELCOME");
    t[2]->ops->msg_free(t[2], buf);
    unsigned char d = M_DONE;
    CHECK(send_bytes(t[0], 0, &d, 1) == 0, "DONE");
    CHECK(recv_until(t[0], &peer, &buf, &len, 10), "final word");
    t[0]->ops->msg_free(t[0], buf);
    for (int k = 0; k < 3; k++)
        t[k]->ops->destroy(t[k]);
    return 0;
}

TEST_CASE(max_strangers)
{
    struct kid kid = spawn(quota_kid, 0);
    const char *provs[1] = {TCP};
    cparsl_transport_t *t = listen_on(provs, 1, 0, 2);
    char addr[ADDR_MAX];
    publish(t, addr);
    tell(&kid, addr);

    unsigned char *names[3] = {NULL, NULL, NULL};
    size_t nl[3] = {0, 0, 0};
    int peers[3] = {-1, -1, -1};
    cparsl_error_t err;
    for (int k = 0; k < 3; k++) {
        int peer;
        void *buf;
        size_t len;
        REQUIRE(recv_until(t, &peer, &buf, &len, 15), "HELLO %d", k);
        CHECK(peer == HTEX_FABRIC_STRANGER, "HELLO %d from a stranger", k);
        nl[k] = len - HELLO_HDR;
        names[k] = malloc(nl[k]);
        memcpy(names[k], (unsigned char *)buf + HELLO_HDR, nl[k]);
        if (k < 2) {
            peers[k] = welcome(t, buf, len, NULL);
        } else {
            int p = -1;
            int rc = htex_fabric_admit(t, names[2], nl[2], &p, &err);
            CHECK(rc == -EBUSY, "third admit: %d (want -EBUSY)", rc);
            /* A name admitted already is no new stranger. */
            CHECK(htex_fabric_admit(t, names[0], nl[0], &p, &err) == 0 &&
                      p == peers[0],
                  "the first name again: %d", p);
            /* Trusting one makes room. */
            htex_fabric_trust(t, peers[0]);
            peers[2] = welcome(t, buf, len, NULL);
        }
        t->ops->msg_free(t, buf);
    }
    CHECK(peers[0] > 0 && peers[1] > 0 && peers[2] > 0, "peers %d %d %d",
          peers[0], peers[1], peers[2]);
    /* p1 and p2 untrusted: full.  A fresh name (any well-formed address
     * will do for admit) waits; trusting p0 a second time frees nothing;
     * forgetting one makes room, and its number comes back. */
    unsigned char fake[2][sizeof(struct sockaddr_in)];
    for (int k = 0; k < 2; k++) {
        struct sockaddr_in sin = {.sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)(9 + k)),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        memcpy(fake[k], &sin, sizeof sin);
    }
    int p = -1, q = -1;
    CHECK(htex_fabric_admit(t, fake[0], sizeof fake[0], &p, &err) == -EBUSY,
          "full: %s", err.text);
    htex_fabric_trust(t, peers[0]);
    CHECK(htex_fabric_admit(t, fake[0], sizeof fake[0], &p, &err) == -EBUSY,
          "trusting twice made room");
    htex_fabric_forget(t, peers[2]);
    CHECK(htex_fabric_admit(t, fake[0], sizeof fake[0], &p, &err) == 0,
          "admit after forget: %s", err.text);
    CHECK(p == peers[2], "the freed number again (%d, %d)", p, peers[2]);
    /* Trust p1, forget the fake: room for two, then full again. */
    htex_fabric_trust(t, peers[1]);
    htex_fabric_forget(t, p);
    CHECK(htex_fabric_admit(t, names[2], nl[2], &p, &err) == 0, "admit: %s",
          err.text);
    CHECK(htex_fabric_admit(t, fake[0], sizeof fake[0], &q, &err) == 0,
          "admit: %s", err.text);
    CHECK(htex_fabric_admit(t, fake[1], sizeof fake[1], &q, &err) == -EBUSY,
          "full again");

    /* The first joiner's DONE comes from a trusted peer. */
    int peer;
    void *buf;
    size_t len;
    REQUIRE(recv_until(t, &peer, &buf, &len, 15), "DONE");
    CHECK(peer == peers[0], "DONE from %d", peer);
    echo(t, peer, buf, len);
    t->ops->msg_free(t, buf);
    drain(t, 5);
    CHECK(reap(&kid, 20) == 0, "joiners failed");
    for (int k = 0; k < 3; k++)
        free(names[k]);
    t->ops->destroy(t);
}

/* ---- malformed input ------------------------------------------------------
 */

static void join_fails(const char *addr, int want, const char *what)
{
    htex_fabric_opts_t o = {0};
    cparsl_transport_t *t = NULL;
    cparsl_error_t err;
    cparsl_error_clear(&err);
    int rc = htex_fabric_join(addr, &o, &t, &err);
    CHECK(rc == want && t == NULL && err.text[0], "%s: %d (want %d) '%s'", what,
          rc, want, err.text);
    if (rc == want)
        fprintf(stderr, "  %s: %s\n", what, err.text);
    if (t)
        t->ops->destroy(t);
}

static void admit_garbage(cparsl_transport_t *t, const char *what)
{
    unsigned seed = 12345;
    unsigned char junk[600];
    cparsl_error_t err;
    int bad = 0;
    for (int i = 0; i < 400; i++) {
        size_t len = (size_t)(rand_r(&seed) % 320);
        for (size_t k = 0; k < len; k++)
            junk[k] = (unsigned char)rand_r(&seed);
        if (i % 3 == 0 && len) /* NUL-terminated junk too */
            junk[len - 1] = 0;
        int p = -1;
        int rc = htex_fabric_admit(t, junk, len, &p, &err);
        if (rc != -EINVAL)
            bad++;
        if (rc == 0)
            htex_fabric_forget(t, p);
    }
    CHECK(bad == 0, "%s: %d garbage names not refused with -EINVAL", what, bad);
    int p;
    CHECK(htex_fabric_admit(t, NULL, 0, &p, &err) == -EINVAL, "NULL name");
    CHECK(htex_fabric_admit(t, junk, sizeof junk, &p, &err) == -EINVAL,
          "a name too long");
}

TEST_CASE(bad_input)
{
    cparsl_transport_t *t = NULL;
    cparsl_error_t err;

    /* Options. */
    CHECK(htex_fabric_listen(NULL, &t, &err) == -EINVAL, "no options");
    const char *none[1] = {"no-such-provider"};
    htex_fabric_opts_t o = {.providers = none, .nproviders = 1};
    int rc = htex_fabric_listen(&o, &t, &err);
    CHECK(rc == -ENOENT && t == NULL, "unknown provider: %d %s", rc, err.text);
    const char *tcp[1] = {TCP}, *shm[1] = {SHM};
    o = (htex_fabric_opts_t){
        .providers = tcp, .nproviders = 1, .max_msg = (size_t)1 << 40};
    CHECK(htex_fabric_listen(&o, &t, &err) == -EINVAL, "max_msg too large");

    /* Published text. */
    cparsl_transport_t *ls = listen_on(shm, 1, 4096, 0);
    cparsl_transport_t *lt = listen_on(tcp, 1, 4096, 0);
    char a_shm[ADDR_MAX], a_tcp[ADDR_MAX], s[2 * ADDR_MAX];
    publish(ls, a_shm);
    publish(lt, a_tcp);
    size_t need = 0;
    CHECK(htex_fabric_published(lt, s, 10, &need) == -ENOSPC &&
              need == strlen(a_tcp),
          "a short buffer: need %zu", need);
    join_fails(NULL, -EINVAL, "no text");
    join_fails("", -EINVAL, "empty text");
    join_fails("hello world", -EINVAL, "garbage");
    join_fails("cparsl-fabric-1", -EINVAL, "no host");
    join_fails("cparsl-fabric-1 host", -EINVAL, "no endpoint");
    snprintf(s, sizeof s, "cparsl-fabric-2%s", a_tcp + 15);
    join_fails(s, -EPROTONOSUPPORT, "another version");
    join_fails("cparsl-fabric-1 h tcp;ofi_rxm|127.0.0.1/32|0g", -EINVAL,
               "not hex");
    join_fails("cparsl-fabric-1 h tcp;ofi_rxm|127.0.0.1/32|abc", -EINVAL,
               "odd hex");
    join_fails("cparsl-fabric-1 h tcp;ofi_rxm|127.0.0.1/32", -EINVAL,
               "two fields");
    join_fails("cparsl-fabric-1 h tcp;ofi_rxm||00", -EINVAL, "empty fabric");
    join_fails("cparsl-fabric-1 h tcp;ofi_rxm|127.0.0.1/32|0a0b0c0d", -ENOENT,
               "a tcp name of 4 bytes");
    join_fails("cparsl-fabric-1 h nonesuch|f|00", -ENOENT, "unknown provider");
    /* shm from another host only. */
    const char *bar = strchr(a_shm + 16, ' ');
    REQUIRE(bar, "shm address has a host");
    snprintf(s, sizeof s, "cparsl-fabric-1 elsewhere.invalid%s", bar);
    join_fails(s, -ENOENT, "shm on another host");
    /* Too long, too many entries. */
    char *big = malloc(20000);
    memset(big, 'a', 19999);
    big[19999] = '\0';
    memcpy(big, "cparsl-fabric-1 ", 16);
    join_fails(big, -EINVAL, "text too long");
    size_t at = (size_t)snprintf(big, 20000, "cparsl-fabric-1 h");
    for (int i = 0; i < 9; i++)
        at += (size_t)snprintf(big + at, 20000 - at, " shm|shm|00");
    join_fails(big, -EINVAL, "nine entries");
    free(big);

    /* Garbage names on both kinds of endpoint. */
    admit_garbage(ls, SHM);
    admit_garbage(lt, TCP);
    /* A sockaddr of the right size and family, but port 0. */
    unsigned char sin[16] = {0};
    sin[0] = 2; /* AF_INET, little-endian sa_family */
    int p;
    rc = htex_fabric_admit(lt, sin, sizeof sin, &p, &err);
    CHECK(rc == -EINVAL, "sockaddr with port 0: %d %s", rc, err.text);
    CHECK(htex_fabric_last_error(lt)[0], "the failure's text is kept");

    /* Sizes and peers: a joiner in this process. */
    cparsl_transport_t *j = join_with(a_tcp, TCP, 4096);
    REQUIRE(j, "join");
    void *buf = j->ops->msg_alloc(j, 4097);
    REQUIRE(buf, "msg_alloc over max_msg still gives a buffer");
    CHECK(j->ops->send(j, 0, buf, 4097) == -EMSGSIZE, "over max_msg");
    buf = j->ops->msg_alloc(j, 16);
    CHECK(j->ops->send(j, 1, buf, 16) == -EINVAL, "peer 1 of a joiner");
    buf = j->ops->msg_alloc(j, 16);
    CHECK(j->ops->send(j, -1, buf, 16) == -EINVAL, "peer -1");
    buf = j->ops->msg_alloc(j, 16);
    CHECK(j->ops->send(j, 0, buf, 4000) == -EINVAL,
          "more than the buffer holds");
    CHECK(j->ops->send(j, 0, NULL, 1) == -EINVAL, "no buffer");
    buf = lt->ops->msg_alloc(lt, 16);
    CHECK(lt->ops->send(lt, 0, buf, 16) == -EINVAL, "a listener to itself");
    j->ops->msg_free(j, j->ops->msg_alloc(j, 100)); /* unsent: freed */
    CHECK(send_bytes(j, 0, "ok", 2) == 0, "a good send");
    /* Both ends live in this process: drive both (rxm connects). */
    int peer, got = 0;
    size_t len;
    htex_backoff_t b = HTEX_BACKOFF_INIT;
    for (double end = now_s() + 10; !got && now_s() < end;) {
        j->ops->progress(j);
        got = lt->ops->try_recv(lt, &peer, &buf, &len, &err);
        if (!got)
            htex_backoff_wait(&b);
    }
    CHECK(got == 1 && len == 2 && peer == HTEX_FABRIC_STRANGER,
          "the good one arrives from a stranger");
    if (got == 1)
        lt->ops->msg_free(lt, buf);
    j->ops->destroy(j);
    ls->ops->destroy(ls);
    lt->ops->destroy(lt);
}

/* ---- a joiner killed ------------------------------------------------------
 */

/* The victim (arg 1) says HELLO and then sleeps until it is killed; the
 * survivor (arg 0) says HELLO and then echoes until DONE. */
static const char *kill_prov;

static int kill_kid(const char *addr, int victim)
{
    cparsl_transport_t *t = join_with(addr, kill_prov, 65536);
    if (!t)
        return 1;
    int me;
    if (hello(t, &me) < 0)
        return 1;
    if (victim) {
        for (;;) /* never reads again: the parent kills it */
            pause();
    }
    for (;;) {
        int peer;
        void *buf;
        size_t len;
        if (!recv_until(t, &peer, &buf, &len, 20)) {
            CHECK(0, "silence");
            break;
        }
        int done = len == 1 && ((unsigned char *)buf)[0] == M_DONE;
        echo(t, peer, buf, len);
        t->ops->msg_free(t, buf);
        if (done)
            break;
    }
    drain(t, 5);
    t->ops->destroy(t);
    return 0;
}

static void killed(const char *prov)
{
    kill_prov = prov;
    struct kid kids[2] = {spawn(kill_kid, 1), spawn(kill_kid, 0)};
    const char *provs[2] = {SHM, TCP};
    cparsl_transport_t *t = listen_on(provs, 2, 65536, 0);
    char addr[ADDR_MAX];
    publish(t, addr);
    tell(&kids[0], addr);
    tell(&kids[1], addr);
    int dead = -1, live = -1;
    char victim_name[300] = "";
    for (int k = 0; k < 2; k++) {
        int peer, pid = 0;
        void *buf;
        size_t len;
        REQUIRE(recv_until(t, &peer, &buf, &len, 15), "HELLO %d", k);
        REQUIRE(peer == HTEX_FABRIC_STRANGER, "HELLO from a stranger");
        int p = welcome(t, buf, len, &pid);
        if (pid == kids[0].pid) {
            dead = p;
            if (len - HELLO_HDR < sizeof victim_name)
                memcpy(victim_name, (char *)buf + HELLO_HDR, len - HELLO_HDR);
        } else {
            live = p;
        }
        t->ops->msg_free(t, buf);
    }
    REQUIRE(dead > 0 && live > 0, "both joined (%d, %d)", dead, live);
    drain(t, 5);
    /* Kill the victim, then keep talking to both: the survivor echoes;
     * sends to the dead one may fail or stay queued, and the listener
     * must neither crash nor hang. */
    kill(kids[0].pid, SIGKILL);
    int st = reap(&kids[0], 10);
    CHECK(st == 128 + SIGKILL, "victim status %d", st);
    static unsigned char big[65536];
    memset(big, 7, sizeof big);
    int rounds = (int)check_scale(500), got = 0;
    double t0 = now_s();
    for (int i = 0; i < rounds; i++) {
        if (i % 10 == 0) { /* the dead one gets some too, small and big */
            send_bytes(t, dead, big, i % 20 ? 16 : sizeof big);
            t->ops->progress(t);
        }
        size_t n = (size_t)(1 + i * 131 % 60000);
        CHECK(send_bytes(t, live, big, n) == 0, "send to the survivor");
        int peer;
        void *buf;
        size_t len;
        if (!recv_until(t, &peer, &buf, &len, 10))
            break;
        if (peer == live && len == n)
            got++;
        t->ops->msg_free(t, buf);
    }
    CHECK(got == rounds, "%d of %d round trips with the survivor", got, rounds);
    fprintf(stderr, "%s: %d round trips beside a dead peer in %.2f s; %s\n",
            prov, got, now_s() - t0, htex_fabric_last_error(t));
    htex_fabric_forget(t, dead);
    unsigned char d = M_DONE;
    CHECK(send_bytes(t, live, &d, 1) == 0, "DONE");
    int peer;
    void *buf;
    size_t len;
    CHECK(recv_until(t, &peer, &buf, &len, 10), "DONE echoed");
    t->ops->msg_free(t, buf);
    CHECK(reap(&kids[1], 20) == 0, "the survivor failed");
    double d0 = now_s();
    t->ops->destroy(t);
    CHECK(now_s() - d0 < 3, "destroy took %.1f s", now_s() - d0);
    /* SIGKILL left the victim's shm region behind (see fabric.c): its
     * file in /dev/shm is the name without the "fi_shm://" prefix. */
    if (strncmp(victim_name, "fi_shm://", 9) == 0)
        shm_unlink(victim_name + 9);
}

TEST_CASE(killed_shm)
{
    killed(SHM);
}

TEST_CASE(killed_tcp)
{
    killed(TCP);
}

/* ---- no busy wait ----------------------------------------------------------
 */

static int late_kid(const char *addr, int delay_ms)
{
    cparsl_transport_t *t = join_with(addr, TCP, 0);
    if (!t)
        return 1;
    struct timespec d = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
    nanosleep(&d, NULL);
    CHECK(send_bytes(t, 0, "late", 4) == 0, "send");
    drain(t, 5);
    t->ops->destroy(t);
    return 0;
}

/* Idle for 1 s in wait(100) turns: the share of a core used. */
static double idle_share(cparsl_transport_t *t, long *turns)
{
    double c0 = cpu_s(), w0 = now_s();
    *turns = 0;
    while (now_s() - w0 < 1.0) {
        int peer;
        void *buf;
        size_t len;
        cparsl_error_t err;
        if (t->ops->try_recv(t, &peer, &buf, &len, &err) > 0)
            t->ops->msg_free(t, buf);
        t->ops->progress(t);
        htex_fabric_wait(t, 100);
        (*turns)++;
    }
    return (cpu_s() - c0) / (now_s() - w0);
}

TEST_CASE(idle)
{
    struct kid kid = spawn(late_kid, 300);
    const char *both[2] = {SHM, TCP}, *tcp[1] = {TCP};

    /* Both providers: shm has no wait fd, so 1 ms naps. */
    cparsl_transport_t *t = listen_on(both, 2, 0, 0);
    long turns;
    double share = idle_share(t, &turns);
    fprintf(stderr, "idle, shm + tcp: %.2f%% of a core, %ld turns in 1 s\n",
            100 * share, turns);
    CHECK(share < 0.05, "idle listener used %.1f%% of a core", 100 * share);
    t->ops->destroy(t);

    /* tcp only: it sleeps on the fd, whole 100 ms turns. */
    t = listen_on(tcp, 1, 0, 0);
    share = idle_share(t, &turns);
    fprintf(stderr, "idle, tcp: %.2f%% of a core, %ld turns in 1 s\n",
            100 * share, turns);
    CHECK(share < 0.05, "idle listener used %.1f%% of a core", 100 * share);
    CHECK(turns <= 20, "%ld wait turns of 100 ms in 1 s", turns);

    /* ... and wakes when a message comes. */
    char addr[ADDR_MAX];
    publish(t, addr);
    tell(&kid, addr);
    double w0 = now_s(), got_at = 0;
    int peer = -1;
    void *buf;
    size_t len;
    while (now_s() - w0 < 10) {
        cparsl_error_t err;
        if (t->ops->try_recv(t, &peer, &buf, &len, &err) > 0) {
            got_at = now_s() - w0;
            break;
        }
        htex_fabric_wait(t, 5000);
    }
    CHECK(got_at > 0, "the late message came");
    if (got_at > 0) {
        fprintf(stderr,
                "woke %.0f ms after the start (the joiner sends after "
                "300 ms, once it has the address)\n",
                got_at * 1e3);
        CHECK(got_at < 4.0, "wait slept through the message");
        t->ops->msg_free(t, buf);
    }
    CHECK(reap(&kid, 15) == 0, "the late joiner failed");
    t->ops->destroy(t);
}

/* ---- latency and rate -------------------------------------------------------
 */

static const char *perf_prov;

static int perf_kid(const char *addr, int arg)
{
    cparsl_transport_t *t = join_with(addr, perf_prov, 0);
    if (!t)
        return 1;
    int me;
    if (hello(t, &me) < 0)
        return 1;
    unsigned char msg[64];
    memset(msg, 1, sizeof msg);
    int rounds = (int)check_scale(5000);
    int peer;
    void *buf;
    size_t len;
    /* Ping-pong. */
    double t0 = now_s();
    for (int i = 0; i < rounds; i++) {
        send_bytes(t, 0, msg, sizeof msg);
        if (!recv_until(t, &peer, &buf, &len, 10)) {
            CHECK(0, "no pong %d", i);
            return 1;
        }
        t->ops->msg_free(t, buf);
    }
    double rtt = (now_s() - t0) / rounds;
    /* Stream: the listener counts and answers at the end. */
    int n = (int)check_scale(50000);
    t0 = now_s();
    for (int i = 0; i < n; i++) {
        uint32_t seq = (uint32_t)i;
        memcpy(msg, &seq, 4);
        int rc = send_bytes(t, 0, msg, sizeof msg);
        CHECK(rc == 0, "stream send %d: %d", i, rc);
        if (i % 64 == 0)
            t->ops->progress(t);
    }
    if (!recv_until(t, &peer, &buf, &len, 30)) {
        CHECK(0, "no end of stream");
        return 1;
    }
    double rate = n / (now_s() - t0);
    t->ops->msg_free(t, buf);
    fprintf(stderr,
            "%s: round trip %.1f us (64 B, %d rounds); stream %.0f "
            "msgs/s (64 B)\n",
            perf_prov, rtt * 1e6, rounds, rate);
    t->ops->destroy(t);
    return 0;
}

static void perf(const char *prov)
{
    perf_prov = prov;
    struct kid kid = spawn(perf_kid, 0);
    const char *provs[2] = {SHM, TCP};
    cparsl_transport_t *t = listen_on(provs, 2, 0, 0);
    char addr[ADDR_MAX];
    publish(t, addr);
    tell(&kid, addr);
    int peer;
    void *buf;
    size_t len;
    REQUIRE(recv_until(t, &peer, &buf, &len, 15), "HELLO");
    int p = welcome(t, buf, len, NULL);
    t->ops->msg_free(t, buf);
    int rounds = (int)check_scale(5000);
    for (int i = 0; i < rounds; i++) {
        if (!recv_until(t, &peer, &buf, &len, 10))
            break;
        CHECK(peer == p, "ping from %d", peer);
        send_bytes(t, peer, buf, len);
        t->ops->msg_free(t, buf);
    }
    /* Every message, once, in order. */
    int n = (int)check_scale(50000), got = 0, disorder = 0;
    while (got < n && recv_until(t, &peer, &buf, &len, 10)) {
        uint32_t seq = UINT32_MAX;
        if (len == 64)
            memcpy(&seq, buf, 4);
        if (seq != (uint32_t)got && disorder++ < 5)
            fprintf(stderr, "message %d: seq %u, %zu bytes\n", got, seq, len);
        got++;
        t->ops->msg_free(t, buf);
    }
    CHECK(got == n && disorder == 0,
          "%d of %d streamed messages, %d out of "
          "order",
          got, n, disorder);
    send_bytes(t, p, "end", 3);
    CHECK(reap(&kid, 30) == 0, "joiner failed");
    t->ops->destroy(t);
}

TEST_CASE(perf_shm)
{
    perf(SHM);
}

TEST_CASE(perf_tcp)
{
    perf(TCP);
}

/* ---- loading ---------------------------------------------------------------
 * libfabric is opened when the first endpoint is (fabric.c): a program
 * that never listens or joins does not load it.  Loading it pulls in, on
 * Debian, libpsm_infinipath, whose constructor installs exit()-calling
 * handlers for SIGTERM and the fault signals: none of them may stay.
 * libfabric's shm provider installs its own, which remove its shared
 * memory and then call the handler that was there before: a SIGTERM
 * still reaches the program's own handler. */

static int term_pipe = -1;

static void on_term(int sig)
{
    (void)sig;
    char c = 'T';
    if (write(term_pipe, &c, 1) != 1)
        _exit(8);
    _exit(7);
}

static bool fabric_loaded(void)
{
    void *h = dlopen("libfabric.so.1", RTLD_LAZY | RTLD_NOLOAD);
    if (h)
        dlclose(h);
    return h != NULL;
}

/* The shared object a handler lives in, or "" (SIG_DFL, SIG_IGN). */
static const char *handler_lib(const struct sigaction *sa)
{
    if (sa->sa_handler == SIG_DFL || sa->sa_handler == SIG_IGN)
        return "";
    void *fn = (sa->sa_flags & SA_SIGINFO) ? (void *)sa->sa_sigaction
                                           : (void *)sa->sa_handler;
    Dl_info di;
    return dladdr(fn, &di) && di.dli_fname ? di.dli_fname : "?";
}

static int lazy_kid(void)
{
    if (fabric_loaded()) {
        fprintf(stderr, "libfabric is loaded before any endpoint\n");
        return 2;
    }
    struct sigaction own = {.sa_handler = on_term};
    sigemptyset(&own.sa_mask);
    if (sigaction(SIGTERM, &own, NULL) != 0)
        return 9;
    bool had[NSIG] = {false};
    struct sigaction before[NSIG];
    for (int s = 1; s < NSIG; s++)
        had[s] = sigaction(s, NULL, &before[s]) == 0;

    const char *provs[2] = {SHM, TCP};
    cparsl_transport_t *t = listen_on(provs, 2, 4096, 4);
    if (!fabric_loaded()) {
        fprintf(stderr, "an endpoint is open, libfabric is not loaded\n");
        return 3;
    }
    int bad = 0;
    for (int s = 1; s < NSIG; s++) {
        struct sigaction now;
        if (!had[s] || sigaction(s, NULL, &now) != 0 ||
            now.sa_handler == before[s].sa_handler)
            continue;
        const char *lib = handler_lib(&now);
        if (!strstr(lib, "libfabric.so")) {
            fprintf(stderr, "signal %d (%s): handler now in %s\n", s,
                    strsignal(s), lib);
            bad++;
        }
    }
    if (bad)
        return 4;
    raise(SIGTERM); /* shm's handler, then ours: exits 7 */
    t->ops->destroy(t);
    return 5;
}

TEST_CASE(lazy_load)
{
    CHECK(!fabric_loaded(), "libfabric is loaded before any endpoint");
    int p[2];
    REQUIRE(pipe(p) == 0, "pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        close(p[0]);
        term_pipe = p[1];
        alarm(30);
        _exit(lazy_kid());
    }
    close(p[1]);
    char c = 0;
    ssize_t n = read(p[0], &c, 1);
    close(p[0]);
    int st = 0;
    REQUIRE(waitpid(pid, &st, 0) == pid, "waitpid: %s", strerror(errno));
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 7,
          "the child ended with %s %d, not 7 from its SIGTERM handler",
          WIFEXITED(st) ? "exit status" : "signal",
          WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    CHECK(n == 1 && c == 'T', "the program's SIGTERM handler did not run");
}

static const check_case_t cases[] = {
    TEST_ENTRY(roundtrip_shm),
    TEST_ENTRY(roundtrip_tcp),
    TEST_ENTRY(max_strangers),
    TEST_ENTRY(bad_input),
    TEST_ENTRY(killed_shm),
    TEST_ENTRY(killed_tcp),
    TEST_ENTRY(idle),
    TEST_ENTRY(perf_shm),
    TEST_ENTRY(perf_tcp),
    TEST_ENTRY(lazy_load),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return check_main(argc, argv, cases);
}
