/*
 * backoff.h - the idle wait every htex loop uses (header-only).
 *
 * Why: Open MPI spins inside its blocking calls (MPI_Recv, MPI_Wait; the
 * mpi_yield_when_idle parameter does not bring an idle rank's CPU down),
 * and MPI_Improbe / MPI_Test are polls.  So no htex loop ever blocks in a
 * transport: it polls.  But these machines run many ranks per core (a
 * manager beside its workers, rank 0 beside a worker), and a rank that
 * keeps polling while idle steals the core its worker needs.  The
 * compromise, as ADLB's serve loop does:
 *
 *   - right after a message more are likely (the rest of a batch, a
 *     reply), so for a short window (HTEX_BACKOFF_WINDOW_NS, 75 us) an
 *     idle turn only yields the core (sched_yield) and polls again;
 *   - after that it sleeps with nanosleep, starting at 10 us and doubling
 *     up to a cap (1 ms by default), which bounds the latency an idle rank
 *     adds while its CPU stays near zero;
 *   - a low timer slack (PR_SET_TIMERSLACK 1 us instead of Linux's default
 *     50 us, per thread) keeps those short sleeps short.
 *
 * Usage, one htex_backoff_t per loop (it is not shared between threads):
 *
 *     htex_backoff_t b = HTEX_BACKOFF_INIT;
 *     for (;;) {
 *         if (poll_everything() > 0)
 *             htex_backoff_reset(&b);   // after any message
 *         else
 *             htex_backoff_wait(&b);    // a turn that found nothing
 *     }
 *
 * The window is measured from the first idle turn after a reset (reset is
 * two stores, cheap enough to call per message); a zeroed struct is valid
 * and uses the defaults.
 */
#ifndef CPARSL_HTEX_BACKOFF_H
#define CPARSL_HTEX_BACKOFF_H

#include <sched.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <time.h>

#define HTEX_BACKOFF_WINDOW_NS 75000   /* yield-only window after a message */
#define HTEX_BACKOFF_MIN_NS    10000   /* first sleep */
#define HTEX_BACKOFF_CAP_NS    1000000 /* default longest sleep */
#define HTEX_TIMERSLACK_NS     1000    /* per-thread timer slack we ask for */

typedef struct htex_backoff {
    int64_t idle_since_ns; /* first idle turn since reset; 0: none yet */
    int64_t sleep_ns;      /* next sleep; 0: HTEX_BACKOFF_MIN_NS */
    int64_t cap_ns;        /* longest sleep; 0: HTEX_BACKOFF_CAP_NS */
    int64_t window_ns;     /* yield-only window; 0: HTEX_BACKOFF_WINDOW_NS */
} htex_backoff_t;

#define HTEX_BACKOFF_INIT                                                      \
    {                                                                          \
        0, 0, 0, 0                                                             \
    }

static inline int64_t htex_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * Ask for a 1 us timer slack on the calling thread (once per thread; the
 * slack is a per-thread setting).  htex_backoff_wait calls it before its
 * first sleep, so loops need not; a thread may call it up front too.
 */
static inline void htex_timerslack_low(void)
{
    static _Thread_local int done;
    if (!done) {
        (void)prctl(PR_SET_TIMERSLACK, (unsigned long)HTEX_TIMERSLACK_NS, 0UL,
                    0UL, 0UL);
        done = 1;
    }
}

static inline void htex_backoff_init(htex_backoff_t *b)
{
    b->idle_since_ns = 0;
    b->sleep_ns = 0;
    b->cap_ns = 0;
    b->window_ns = 0;
}

/* Longest sleep, in nanoseconds (<= 0: the default, 1 ms). */
static inline void htex_backoff_set_cap(htex_backoff_t *b, int64_t cap_ns)
{
    b->cap_ns = cap_ns > 0 ? cap_ns : 0;
}

/* Yield-only window after a message, in nanoseconds (<= 0: default). */
static inline void htex_backoff_set_window(htex_backoff_t *b, int64_t ns)
{
    b->window_ns = ns > 0 ? ns : 0;
}

/* A message arrived (or was sent): back to polling. */
static inline void htex_backoff_reset(htex_backoff_t *b)
{
    b->idle_since_ns = 0;
    b->sleep_ns = 0;
}

/*
 * A loop turn found nothing: yield (inside the window) or sleep (after
 * it, each sleep twice the last, up to the cap).  Returns 0 if it only
 * yielded, 1 if it slept.
 */
static inline int htex_backoff_wait(htex_backoff_t *b)
{
    int64_t now = htex_now_ns();
    int64_t window = b->window_ns ? b->window_ns : HTEX_BACKOFF_WINDOW_NS;
    if (b->idle_since_ns == 0)
        b->idle_since_ns = now;
    if (now - b->idle_since_ns < window) {
        sched_yield();
        return 0;
    }
    int64_t cap = b->cap_ns ? b->cap_ns : HTEX_BACKOFF_CAP_NS;
    int64_t d = b->sleep_ns ? b->sleep_ns : HTEX_BACKOFF_MIN_NS;
    if (d > cap)
        d = cap;
    htex_timerslack_low();
    struct timespec ts = {(time_t)(d / 1000000000), (long)(d % 1000000000)};
    nanosleep(&ts, NULL);
    b->sleep_ns = d * 2 < cap ? d * 2 : cap;
    return 1;
}

#endif /* CPARSL_HTEX_BACKOFF_H */
