/*
 * test_mpi_transport.c - the MPI transport (htex/transport/mpi.h) under
 * mpiexec -n 4: streams of small and 1 MiB messages from every rank to
 * rank 0 (payloads checked, per-sender order), ping-pong latency (printed,
 * not asserted: this machine runs 4 ranks on 2 cores), large messages
 * sent both ways at once (a blocking send would deadlock), a transport on
 * a sub-communicator beside one on MPI_COMM_WORLD and beside the
 * application's own traffic, and bad peers.
 *
 * The test itself initializes MPI (MPI_THREAD_MULTIPLE, as cparsl's rank 0
 * needs) and never waits inside a blocking MPI call: Open MPI spins there,
 * and the ranks share cores.  Every rank counts its checks; rank 0 prints
 * the one summary line for all ranks (MPI_Reduce) and the exit status is
 * non-zero on any rank's failure.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mpi.h>

#include <cparsl/transport.h>

#include "backoff.h"
#include "check.h"
#include "transport/mpi.h"

/*
 * Under AddressSanitizer, record whole stacks for allocations: Open MPI is
 * built without frame pointers, so the fast unwinder stops inside it and
 * the library-name suppressions of tests/lsan.supp (libmpi.so, ...) never
 * see a frame to match.  ASAN_OPTIONS from the environment still wins.
 */
#if defined(__SANITIZE_ADDRESS__)
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "fast_unwind_on_malloc=0";
}
#endif

#define TIMEOUT_S 60.0
#define BIG       (1u << 20)

static int rank, nranks;

static double now_s(void)
{
    return (double)htex_now_ns() * 1e-9;
}

static void fatal(const char *what)
{
    fprintf(stderr, "rank %d: FATAL: %s\n", rank, what);
    MPI_Abort(MPI_COMM_WORLD, 1);
}

/* ---- payloads: u32 sender, u32 seq, then bytes depending on both ------- */

struct hdr {
    uint32_t from, seq;
};

static unsigned char pattern(uint32_t from, uint32_t seq, size_t i)
{
    return (unsigned char)(from * 131u + seq * 7u + i * 3u);
}

static void fill(void *buf, uint32_t from, uint32_t seq, size_t len)
{
    struct hdr h = {from, seq};
    memcpy(buf, &h, sizeof(h));
    unsigned char *p = buf;
    for (size_t i = sizeof(h); i < len; i++)
        p[i] = pattern(from, seq, i);
}

static int payload_ok(const void *buf, size_t len, size_t want_len,
                      uint32_t from, uint32_t seq)
{
    struct hdr h;
    if (len != want_len || len < sizeof(h))
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

static int send_msg(cparsl_transport_t *t, int peer, uint32_t seq, size_t len)
{
    void *buf = t->ops->msg_alloc(t, len);
    if (!buf)
        return -ENOMEM;
    fill(buf, (uint32_t)t->ops->self(t), seq, len);
    return t->ops->send(t, peer, buf, len);
}

/* ---- waiting without blocking in MPI ---------------------------------------
 */

/* One message (progressing sends meanwhile); 1, or 0 on timeout. */
static int recv_wait(cparsl_transport_t *t, int *peer, void **buf, size_t *len)
{
    htex_backoff_t b = HTEX_BACKOFF_INIT;
    double end = now_s() + TIMEOUT_S;
    cparsl_error_t err = {0};
    for (;;) {
        t->ops->progress(t);
        int rc = t->ops->try_recv(t, peer, buf, len, &err);
        if (rc == 1)
            return 1;
        if (rc < 0) {
            CHECK(rc == 0, "try_recv: %s", err.text);
            return 0;
        }
        if (now_s() > end)
            return 0;
        htex_backoff_wait(&b);
    }
}

/* Until every send has left; 1, or 0 on timeout. */
static int flush_wait(cparsl_transport_t *t)
{
    htex_backoff_t b = HTEX_BACKOFF_INIT;
    double end = now_s() + TIMEOUT_S;
    int left;
    while ((left = t->ops->progress(t)) != 0) {
        if (left < 0) {
            CHECK(left >= 0, "progress: %s", htex_mpi_transport_last_error(t));
            return 0;
        }
        if (now_s() > end)
            return 0;
        htex_backoff_wait(&b);
    }
    return 1;
}

/* Complete requests by polling, sleeping in between. */
static void wait_all(int n, MPI_Request *reqs)
{
    htex_backoff_t b = HTEX_BACKOFF_INIT;
    double end = now_s() + TIMEOUT_S;
    int done = 0;
    while (MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE) == MPI_SUCCESS &&
           !done) {
        if (now_s() > end)
            fatal("requests did not complete");
        htex_backoff_wait(&b);
    }
}

static void soft_barrier(MPI_Comm comm)
{
    MPI_Request r;
    MPI_Ibarrier(comm, &r);
    wait_all(1, &r);
}

/* ---- cases --------------------------------------------------------------- */

static void test_not_initialized(void)
{
    cparsl_transport_t *t = NULL;
    cparsl_error_t err = {0};
    CHECK(htex_mpi_transport_create(MPI_COMM_WORLD, &t, &err) ==
              -CPARSL_ETRANSPORT,
          "create before MPI_Init");
    CHECK(t == NULL && strstr(err.text, "not initialized"), "text: %s",
          err.text);
}

static void test_basics(cparsl_transport_t *t)
{
    CHECK(t->ops == &htex_mpi_ops && strcmp(t->ops->name, "mpi") == 0, "ops");
    CHECK(t->ops->self(t) == rank, "self %d", t->ops->self(t));
    CHECK(t->ops->size(t) == nranks, "size %d", t->ops->size(t));
    CHECK(t->ops->progress(t) == 0, "nothing in flight");

    /* Refused sends free their buffers (ASan would see a leak). */
    CHECK(t->ops->send(t, -1, t->ops->msg_alloc(t, 8), 8) == -EINVAL, "-1");
    CHECK(t->ops->send(t, nranks, t->ops->msg_alloc(t, 8), 8) == -EINVAL,
          "peer == size");
    CHECK(t->ops->send(t, 0, NULL, 0) == -EINVAL, "NULL buffer");
    CHECK(t->ops->send(t, 0, t->ops->msg_alloc(t, 8), 1000) == -EINVAL,
          "len over capacity");
    void *buf = t->ops->msg_alloc(t, 300);
    CHECK(buf && (uintptr_t)buf % 16 == 0, "aligned buffer");
    t->ops->msg_free(t, buf);
    t->ops->msg_free(t, NULL);

    /* A message to oneself. */
    int peer;
    size_t len;
    CHECK(send_msg(t, rank, 7, 40) == 0, "send to self");
    CHECK(recv_wait(t, &peer, &buf, &len) == 1, "receive from self");
    CHECK(peer == rank && payload_ok(buf, len, 40, (uint32_t)rank, 7),
          "self message");
    t->ops->msg_free(t, buf);
    CHECK(flush_wait(t), "flush");
    soft_barrier(MPI_COMM_WORLD);
}

/* Message i of a stream of n: small, except a few of 1 MiB. */
static size_t stream_len(long i, long n)
{
    if (n >= 8 && i % (n / 4) == n / 8)
        return BIG;
    return sizeof(struct hdr) + 8 + (size_t)(i % 48);
}

static void test_stream(cparsl_transport_t *t)
{
    long n = check_scale(20000);
    double t0 = now_s();
    if (rank != 0) {
        int errors = 0;
        for (long i = 0; i < n; i++) {
            if (send_msg(t, 0, (uint32_t)i, stream_len(i, n)) != 0)
                errors++;
            t->ops->progress(t);
        }
        CHECK(errors == 0, "%d sends failed: %s", errors,
              htex_mpi_transport_last_error(t));
        CHECK(flush_wait(t), "stream: sends did not complete");
    } else {
        long *next = calloc((size_t)nranks, sizeof(long));
        long got = 0, bad = 0, big = 0, want = n * (nranks - 1);
        while (got < want) {
            int peer;
            void *buf;
            size_t len;
            if (recv_wait(t, &peer, &buf, &len) != 1)
                fatal("stream: timed out");
            got++;
            if (peer < 1 || peer >= nranks ||
                !payload_ok(buf, len, stream_len(next[peer], n), (uint32_t)peer,
                            (uint32_t)next[peer])) {
                bad++;
            } else {
                big += len == BIG;
                next[peer]++;
            }
            t->ops->msg_free(t, buf);
        }
        double dt = now_s() - t0;
        CHECK(bad == 0, "stream: %ld messages wrong or out of order", bad);
        for (int r = 1; r < nranks; r++)
            CHECK(next[r] == n, "stream: %ld of %ld from rank %d", next[r], n,
                  r);
        CHECK(n < 8 || big == 4L * (nranks - 1), "stream: %ld large", big);
        fprintf(stderr,
                "mpi stream: %d ranks x %ld messages (%ld of 1 MiB) to rank "
                "0 in %.3f s: %.0f messages/s\n",
                nranks - 1, n, big, dt, (double)want / dt);
        free(next);
    }
    soft_barrier(MPI_COMM_WORLD);
    int peer;
    void *buf;
    size_t len;
    CHECK(t->ops->try_recv(t, &peer, &buf, &len, NULL) == 0,
          "stream: a message beyond the last");
}

/* One ping or pong: only the header is written and checked, so the time
 * measured is the transport's, not the test's (the stream checks every
 * byte). */
static int send_hdr(cparsl_transport_t *t, int peer, uint32_t seq, size_t len)
{
    void *buf = t->ops->msg_alloc(t, len);
    if (!buf)
        return -ENOMEM;
    struct hdr h = {(uint32_t)t->ops->self(t), seq};
    memcpy(buf, &h, sizeof(h));
    return t->ops->send(t, peer, buf, len);
}

static int hdr_ok(const void *buf, size_t len, size_t want_len, uint32_t from,
                  uint32_t seq)
{
    struct hdr h;
    if (len != want_len || len < sizeof(h))
        return 0;
    memcpy(&h, buf, sizeof(h));
    return h.from == from && h.seq == seq;
}

/* n round trips of 'size' bytes between ranks 0 and 1; 'gap_ns' of sleep
 * on rank 0 before each ping lets rank 1 fall asleep in its backoff (the
 * sleep is not counted).  Returns the mean round trip in seconds. */
static double pingpong(cparsl_transport_t *t, size_t size, long n, long gap_ns)
{
    int peer;
    void *buf;
    size_t len;
    double total = 0;
    for (long i = 0; i < n; i++) {
        if (rank == 0) {
            if (gap_ns) {
                struct timespec ts = {0, gap_ns};
                nanosleep(&ts, NULL);
            }
            double t0 = now_s();
            CHECK(send_hdr(t, 1, (uint32_t)i, size) == 0, "ping");
            if (recv_wait(t, &peer, &buf, &len) != 1)
                fatal("ping-pong: timed out");
            total += now_s() - t0;
            CHECK(peer == 1 && hdr_ok(buf, len, size, 1, (uint32_t)i),
                  "pong %ld", i);
            t->ops->msg_free(t, buf);
        } else {
            if (recv_wait(t, &peer, &buf, &len) != 1)
                fatal("ping-pong: timed out");
            CHECK(peer == 0 && hdr_ok(buf, len, size, 0, (uint32_t)i),
                  "ping %ld", i);
            struct hdr h = {1, (uint32_t)i};
            memcpy(buf, &h, sizeof(h));
            CHECK(t->ops->send(t, 0, buf, len) == 0, "pong");
        }
        t->ops->progress(t);
    }
    CHECK(flush_wait(t), "ping-pong: flush");
    return total / (double)n;
}

static void test_pingpong(cparsl_transport_t *t)
{
    soft_barrier(MPI_COMM_WORLD);
    if (rank <= 1) {
        static const struct {
            size_t size;
            long n;
            long gap_ns;
            const char *what;
        } runs[] = {
            {8, 20000, 0, "hot"},
            {65536, 2000, 0, "hot"},
            {8, 200, 2000000, "partner idle 2 ms"},
        };
        for (size_t k = 0; k < sizeof(runs) / sizeof(runs[0]); k++) {
            long n = check_scale(runs[k].n);
            pingpong(t, runs[k].size, 100, 0); /* warm-up */
            size_t allocs = htex_mpi_transport_allocs(t);
            double rt = pingpong(t, runs[k].size, n, runs[k].gap_ns);
            CHECK(htex_mpi_transport_allocs(t) == allocs,
                  "ping-pong of %zu B took %zu buffers from malloc",
                  runs[k].size, htex_mpi_transport_allocs(t) - allocs);
            if (rank == 0)
                fprintf(stderr,
                        "mpi ping-pong %zu B (%s): %ld round trips, %.2f us "
                        "per round trip\n",
                        runs[k].size, runs[k].what, n, rt * 1e6);
        }
    }
    soft_barrier(MPI_COMM_WORLD);
}

/* Both ranks of each pair send K large messages before receiving any. */
static void test_bidirectional(cparsl_transport_t *t)
{
    enum { K = 4 };
    const size_t size = 4u << 20;
    int partner = rank ^ 1;
    if (partner < nranks) {
        for (int i = 0; i < K; i++)
            CHECK(send_msg(t, partner, (uint32_t)i, size) == 0, "send %d", i);
        t->ops->progress(t);
        for (int i = 0; i < K; i++) {
            int peer;
            void *buf;
            size_t len;
            if (recv_wait(t, &peer, &buf, &len) != 1)
                fatal("bidirectional: timed out");
            CHECK(peer == partner && payload_ok(buf, len, size,
                                                (uint32_t)partner, (uint32_t)i),
                  "bidirectional message %d from %d", i, peer);
            t->ops->msg_free(t, buf);
        }
        CHECK(flush_wait(t), "bidirectional: sends did not complete");
    }
    soft_barrier(MPI_COMM_WORLD);
}

/* A transport over a sub-communicator of 2 ranks, beside the world one and
 * beside the application's own messages on that sub-communicator: each
 * sees only its own traffic. */
static void test_split(cparsl_transport_t *world)
{
    MPI_Comm sub;
    REQUIRE(MPI_Comm_split(MPI_COMM_WORLD, rank / 2, rank, &sub) == MPI_SUCCESS,
            "split");
    int srank, ssize;
    MPI_Comm_rank(sub, &srank);
    MPI_Comm_size(sub, &ssize);
    cparsl_transport_t *t = NULL;
    cparsl_error_t err = {0};
    REQUIRE(htex_mpi_transport_create(sub, &t, &err) == 0, "create: %s",
            err.text);
    CHECK(t->ops->self(t) == srank && t->ops->size(t) == ssize,
          "sub transport: %d of %d", t->ops->self(t), t->ops->size(t));
    int partner = ssize > 1 ? srank ^ 1 : srank;
    int wpartner = ssize > 1 ? rank ^ 1 : rank;

    /* The application talks on 'sub' first, with tags that include the
     * transport's; then both transports send. */
    enum { NTAGS = 4 };
    static const int tags[NTAGS] = {0, 1, 2, 77};
    int out[NTAGS], in[NTAGS];
    MPI_Request reqs[2 * NTAGS];
    for (int k = 0; k < NTAGS; k++) {
        out[k] = 1000 * rank + tags[k];
        MPI_Isend(&out[k], 1, MPI_INT, partner, tags[k], sub, &reqs[k]);
    }
    CHECK(send_msg(t, partner, 42, 64) == 0, "sub send");
    CHECK(send_msg(world, wpartner, 43, 96) == 0, "world send");

    int peer;
    void *buf;
    size_t len;
    if (recv_wait(t, &peer, &buf, &len) != 1)
        fatal("split: timed out");
    CHECK(peer == partner && payload_ok(buf, len, 64, (uint32_t)partner, 42),
          "sub transport got its message (len %zu from %d)", len, peer);
    t->ops->msg_free(t, buf);
    if (recv_wait(world, &peer, &buf, &len) != 1)
        fatal("split: timed out (world)");
    CHECK(peer == wpartner && payload_ok(buf, len, 96, (uint32_t)wpartner, 43),
          "world transport got its message (len %zu from %d)", len, peer);
    world->ops->msg_free(world, buf);
    CHECK(t->ops->try_recv(t, &peer, &buf, &len, NULL) == 0,
          "sub transport saw a message not its own");
    CHECK(world->ops->try_recv(world, &peer, &buf, &len, NULL) == 0,
          "world transport saw a message not its own");

    /* The application's messages are all still there for it. */
    for (int k = 0; k < NTAGS; k++)
        MPI_Irecv(&in[k], 1, MPI_INT, partner, tags[k], sub, &reqs[NTAGS + k]);
    wait_all(2 * NTAGS, reqs);
    for (int k = 0; k < NTAGS; k++)
        CHECK(in[k] == 1000 * (ssize > 1 ? rank ^ 1 : rank) + tags[k],
              "application message tag %d: %d", tags[k], in[k]);

    CHECK(flush_wait(t) && flush_wait(world), "split: flush");
    soft_barrier(sub);
    t->ops->destroy(t);
    MPI_Comm_free(&sub);
    soft_barrier(MPI_COMM_WORLD);
}

int main(int argc, char **argv)
{
    test_not_initialized();

    int provided = 0;
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided) !=
        MPI_SUCCESS) {
        fprintf(stderr, "MPI_Init_thread failed\n");
        return 1;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    CHECK(provided == MPI_THREAD_MULTIPLE, "thread level %d", provided);
    if (nranks < 2)
        fatal("run with at least 2 ranks");

    cparsl_transport_t *t = NULL;
    cparsl_error_t err = {0};
    REQUIRE(htex_mpi_transport_create(MPI_COMM_WORLD, &t, &err) == 0,
            "create: %s", err.text);

    static const struct {
        const char *name;
        void (*fn)(cparsl_transport_t *);
    } cases[] = {
        {"basics", test_basics},     {"stream", test_stream},
        {"pingpong", test_pingpong}, {"bidirectional", test_bidirectional},
        {"split", test_split},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        double t0 = now_s();
        cases[k].fn(t);
        if (rank == 0)
            fprintf(stderr, "== %s (%.3f s)\n", cases[k].name, now_s() - t0);
    }

    /* A transport may outlive MPI: destroy after MPI_Finalize only frees
     * memory. */
    cparsl_transport_t *late = NULL;
    REQUIRE(htex_mpi_transport_create(MPI_COMM_WORLD, &late, &err) == 0,
            "create: %s", err.text);

    size_t allocs = htex_mpi_transport_allocs(t);
    double t0 = now_s();
    t->ops->destroy(t);
    if (now_s() - t0 > 1.0)
        fprintf(stderr, "rank %d: destroy took %.3f s\n", rank, now_s() - t0);
    if (rank == 0)
        fprintf(stderr, "rank 0: %zu buffers taken from malloc in all\n",
                allocs);

    long mine[2] = {check__passed, check__failed}, all[2] = {0, 0};
    MPI_Request r;
    MPI_Ireduce(mine, all, 2, MPI_LONG, MPI_SUM, 0, MPI_COMM_WORLD, &r);
    wait_all(1, &r);
    MPI_Finalize();
    late->ops->destroy(late);
    if (rank == 0) {
        printf("%ld passed, %ld failed\n", all[0], all[1]);
        return all[1] == 0 && all[0] > 0 ? 0 : 1;
    }
    return check__failed == 0 ? 0 : 1;
}
