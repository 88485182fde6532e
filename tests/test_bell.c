/*
 * test_bell.c - the doorbell (htex/bell.h) that lets an idle worker rank
 * sleep until its node manager or a slot rings: across threads, and across
 * processes through a shared mapping (as the node-shared MPI window is).
 *
 * The timing checks are one-sided with wide margins: a rung sleeper must
 * wake long before its 10 s timeout, an unrung one must not wake before
 * its own.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bell.h"
#include "check.h"

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#define LONG_NS (10 * 1000000000LL)

TEST_CASE(unrung_times_out)
{
    htex_bell_t b;
    memset(&b, 0, sizeof b);
    uint32_t seen = htex_bell_seq(&b);
    int64_t t0 = mono_ns();
    int rung = htex_bell_wait(&b, seen, 20000000); /* 20 ms */
    int64_t dt = mono_ns() - t0;
    CHECK(!rung, "an unrung bell reported a ring");
    CHECK(dt >= 19000000, "the wait returned after %lld ns, before 20 ms",
          (long long)dt);
    CHECK(atomic_load(&b.sleeping) == 0, "the sleeping flag stayed set");
}

TEST_CASE(ring_before_wait_is_not_lost)
{
    htex_bell_t b;
    memset(&b, 0, sizeof b);
    uint32_t seen = htex_bell_seq(&b);
    htex_bell_ring(&b); /* after 'seen', before the wait */
    int64_t t0 = mono_ns();
    int rung = htex_bell_wait(&b, seen, LONG_NS);
    int64_t dt = mono_ns() - t0;
    CHECK(rung, "a ring between reading the bell and waiting was lost");
    CHECK(dt < 1000000000, "the wait took %lld ns", (long long)dt);
}

struct ringer {
    htex_bell_t *b;
    int64_t delay_ns;
};

static void *ring_later(void *arg)
{
    struct ringer *r = arg;
    struct timespec ts = {0, (long)r->delay_ns};
    nanosleep(&ts, NULL);
    htex_bell_ring(r->b);
    return NULL;
}

TEST_CASE(thread_rings_sleeper)
{
    htex_bell_t b;
    memset(&b, 0, sizeof b);
    for (int i = 0; i < 20; i++) {
        uint32_t seen = htex_bell_seq(&b);
        struct ringer r = {&b, 2000000};
        pthread_t th;
        REQUIRE(pthread_create(&th, NULL, ring_later, &r) == 0,
                "pthread_create");
        int64_t t0 = mono_ns();
        int rung = htex_bell_wait(&b, seen, LONG_NS);
        int64_t dt = mono_ns() - t0;
        pthread_join(th, NULL);
        CHECK(rung, "round %d: the sleeper did not see the ring", i);
        CHECK(dt < 5000000000LL, "round %d: woke after %lld ns", i,
              (long long)dt);
    }
}

TEST_CASE(process_rings_sleeper)
{
    /* The node-shared window is a shared file mapping; MAP_SHARED
     * anonymous memory across fork is the same kind of futex. */
    htex_bell_t *b = mmap(NULL, sizeof *b, PROT_READ | PROT_WRITE,
                          MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(b != MAP_FAILED, "mmap");
    memset(b, 0, sizeof *b);
    uint32_t seen = htex_bell_seq(b);
    pid_t pid = fork();
    REQUIRE(pid >= 0, "fork");
    if (pid == 0) {
        /* Ring once the parent is asleep (or about to be). */
        for (int i = 0; i < 2000 && !atomic_load(&b->sleeping); i++)
            usleep(1000);
        usleep(2000);
        htex_bell_ring(b);
        _exit(0);
    }
    int64_t t0 = mono_ns();
    int rung = htex_bell_wait(b, seen, LONG_NS);
    int64_t dt = mono_ns() - t0;
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(rung, "a ring from another process was not seen");
    CHECK(dt < 5000000000LL, "woke after %lld ns", (long long)dt);
    CHECK(htex_bell_seq(b) == seen + 1, "the sequence is %u, expected %u",
          htex_bell_seq(b), seen + 1);
    munmap(b, sizeof *b);
}

static const check_case_t cases[] = {
    TEST_ENTRY(unrung_times_out),
    TEST_ENTRY(ring_before_wait_is_not_lost),
    TEST_ENTRY(thread_rings_sleeper),
    TEST_ENTRY(process_rings_sleeper),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return check_main(argc, argv, cases);
}
