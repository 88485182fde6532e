/*
 * bell.h - a doorbell: a futex word another thread or another process on
 * the node rings, so an idle loop can sleep long without missing work
 * (header-only).
 *
 * MPI gives no descriptor to sleep on, so a loop that waits for messages
 * must wake now and then to poll; on a node of many ranks those wake-ups
 * are most of an idle pilot's CPU.  A rank whose every input can ring its
 * bell (a worker rank hears only from its node manager, which shares its
 * memory, and from its own slot threads) sleeps on the bell instead and
 * wakes when rung.
 *
 * The bell lives in memory the ringers can write: a node-shared MPI window
 * between processes (the futex is then a shared one, not FUTEX_PRIVATE),
 * or a plain struct within a process.  The protocol, which cannot lose a
 * ring:
 *
 *     sleeper                              ringer
 *     v = htex_bell_seq(b)                 make the work visible (send)
 *     look for work; if none:              htex_bell_ring(b)
 *     htex_bell_wait(b, v, timeout)
 *
 * A ring after the sleeper read v changes the word, so the wait returns at
 * once; a ring before it came after the work was visible, which the
 * sleeper's look then finds.  The ringer makes the futex call only when a
 * sleeper is flagged, so a busy pipeline costs no syscall.
 */
#ifndef CPARSL_HTEX_BELL_H
#define CPARSL_HTEX_BELL_H

#include <errno.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

typedef struct htex_bell {
    _Atomic uint32_t seq;      /* bumped by every ring */
    _Atomic uint32_t sleeping; /* a sleeper is (about to be) in the wait */
    char pad[56];              /* a cache line of its own */
} htex_bell_t;

static inline uint32_t htex_bell_seq(htex_bell_t *b)
{
    return atomic_load(&b->seq);
}

static inline void htex_bell_ring(htex_bell_t *b)
{
    atomic_fetch_add(&b->seq, 1);
    if (atomic_load(&b->sleeping))
        syscall(SYS_futex, &b->seq, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/* Sleep until rung after 'seen' was read, or for at most ns.  Returns
 * whether the bell was rung (or a signal came: callers look anyway). */
static inline int htex_bell_wait(htex_bell_t *b, uint32_t seen, int64_t ns)
{
    atomic_store(&b->sleeping, 1);
    int rung = atomic_load(&b->seq) != seen;
    if (!rung) {
        struct timespec ts = {(time_t)(ns / 1000000000),
                              (long)(ns % 1000000000)};
        long r = syscall(SYS_futex, &b->seq, FUTEX_WAIT, seen, &ts, NULL, 0);
        rung = r == 0 || (r < 0 && errno != ETIMEDOUT);
    }
    atomic_store(&b->sleeping, 0);
    return rung;
}

#endif
