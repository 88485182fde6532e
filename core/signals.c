/*
 * signals.c - orderly shutdown on SIGTERM and SIGUSR1.
 *
 * Batch systems say "your time is up" with SIGTERM to every rank
 * (slurmstepd at walltime or scancel), and Open MPI forwards SIGUSR1 sent
 * to mpiexec; SIGTERM sent to mpiexec itself reaches the ranks about a
 * second before SIGKILL.  The handler only records the signal and writes a
 * byte to a pipe (both async-signal-safe); on the client a watcher thread
 * reads the pipe and starts the drain outside signal context.  Worker
 * ranks keep serving until the client tells them to stop, so their
 * results are not lost.  A handler the application installed itself is
 * left alone.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static const int watched[] = {SIGTERM, SIGUSR1};
#define NWATCHED (sizeof watched / sizeof watched[0])

static int sig_pipe[2] = {-1, -1};
static volatile sig_atomic_t sig_last;
static struct sigaction old_act[NWATCHED];
static bool ours[NWATCHED];
static pthread_t watcher;
static bool watching;
static void (*on_signal)(int sig);

static void handler(int sig)
{
    int saved = errno;
    sig_last = sig;
    if (sig_pipe[1] >= 0) {
        char c = (char)sig;
        ssize_t n = write(sig_pipe[1], &c, 1);
        (void)n; /* a full pipe already holds a wake-up */
    }
    errno = saved;
}

static void *watch_main(void *arg)
{
    (void)arg;
    for (;;) {
        char c;
        ssize_t n = read(sig_pipe[0], &c, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || c == 0)
            break;
        if (on_signal)
            on_signal((unsigned char)c);
    }
    return NULL;
}

int cparsl__signals_install(void (*cb)(int sig), cparsl_error_t *err)
{
    if (pipe2(sig_pipe, O_CLOEXEC) < 0)
        return cparsl_error_set(err, -errno, "cannot make a pipe: %s",
                                strerror(errno));
    /* The handler must never block. */
    fcntl(sig_pipe[1], F_SETFL, O_NONBLOCK);
    sig_last = 0;
    on_signal = cb;
    for (size_t i = 0; i < NWATCHED; i++) {
        struct sigaction cur;
        ours[i] = false;
        if (sigaction(watched[i], NULL, &cur) < 0 ||
            cur.sa_handler != SIG_DFL || (cur.sa_flags & SA_SIGINFO))
            continue; /* the application handles it */
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = handler;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART;
        if (sigaction(watched[i], &sa, &old_act[i]) == 0)
            ours[i] = true;
    }
    if (cb) {
        int rc = pthread_create(&watcher, NULL, watch_main, NULL);
        if (rc)
            return cparsl_error_set(err, -rc, "no signal watcher thread");
        watching = true;
    }
    return 0;
}

void cparsl__signals_remove(void)
{
    for (size_t i = 0; i < NWATCHED; i++)
        if (ours[i]) {
            sigaction(watched[i], &old_act[i], NULL);
            ours[i] = false;
        }
    if (watching) {
        char zero = 0;
        ssize_t n = write(sig_pipe[1], &zero, 1);
        (void)n;
        pthread_join(watcher, NULL);
        watching = false;
    }
    for (int i = 0; i < 2; i++)
        if (sig_pipe[i] >= 0) {
            close(sig_pipe[i]);
            sig_pipe[i] = -1;
        }
    on_signal = NULL;
}

int cparsl_stop_requested(void)
{
    return sig_last;
}
