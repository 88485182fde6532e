/*
 * child.c - isolated workers: the fork helper, the worker child's task
 * loop, and the slot side that hands a child one try or a batch of them.
 *
 * Three kinds of process meet here (docs/workers.md has the picture):
 *
 *   the slot    a worker rank's thread; owns htex_child_t handles and
 *               talks to its child over a SOCK_STREAM socketpair;
 *   the helper  forked once, while the rank still has one thread; it
 *               forks every child on request over a SOCK_SEQPACKET
 *               control socket, passes the slot's end of the child's
 *               socket back with SCM_RIGHTS, and reaps its children
 *               only when the slot asks (WAIT), so a dead child stays a
 *               zombie until then and its pid cannot be reused while
 *               the slot may still signal it;
 *   the child   runs tasks in a loop until its socket reaches EOF, then
 *               leaves with _exit.  It never calls MPI.
 *
 * Without a helper (the application initialized MPI itself and
 * htex_forkhelper_start was never called) the slot forks children
 * directly and reaps them itself.  Everything a child needs (its
 * environment, its CPU mask) is prepared before fork, so the child does
 * only async-signal-safe work until its loop starts.
 *
 * Frames on a child's socket are a u32 little-endian length and one wire
 * message (wire.h): TASKS with one record (htex_child_run) or a batch
 * (htex_child_run_batch) in, then RESULTS with one record out per try,
 * each sent before the next try starts.
 * Before the first frame the child sends an 8-byte hello: "HELO" and an
 * i32 status (0, or -errno when it could not pin itself).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "child.h"
#include "fdutil.h"
#include "wire.h"

extern char **environ;

/* The child's socket sits at this descriptor; everything above is closed. */
#define CHILD_FD 3
/* The helper's control socket, likewise. */
#define HELPER_FD 3
/* Longest frame either side reads (the wire checks the inside). */
#define CHILD_MAX_FRAME (1u << 30)
/* Room for a spawn request's env additions and CPU list. */
#define HELPER_MAX_DATA   65536
#define CHILD_HELLO_MAGIC 0x4f4c4548u /* "HELO" little-endian */
/* How long a new child may take to say hello. */
#define CHILD_HELLO_NS (10 * 1000000000LL)
/* After EOF on its socket, how long a child may take to finish dying
 * before it is killed (its exit status is what we want to report). */
#define CHILD_DEATH_GRACE_NS 1000000000LL
/* htex_child_destroy: how long an idle child gets to leave on EOF. */
#define CHILD_DESTROY_GRACE_NS 500000000LL
/* Extra time for app kinds that enforce the walltime themselves (bash:
 * SIGTERM, 1 s of grace, SIGKILL), so their own, clearer error wins. */
#define CHILD_KIND_GRACE_S 3.0
/* htex_child_run_batch stops adding tasks to a message past this size. */
#define CHILD_BATCH_BYTES (1u << 20)
/* Walltimes beyond this (about 30 years) are taken as "none". */
#define CHILD_WALLTIME_MAX 1e9
/* Both ends of the socket poll it this long before blocking: back to back
 * tasks then cost no wake-up, and an idle child still sleeps (DESIGN.md:
 * nothing spins while idle). */
#define CHILD_POLL_NS 50000

/* ==== small helpers ===================================================== */

static void put_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* Close every descriptor from 'first' up; async-signal-safe. */
static void close_from(int first)
{
#ifdef SYS_close_range
    if (syscall(SYS_close_range, (unsigned)first, ~0u, 0) == 0)
        return;
#endif
    struct rlimit rl;
    long max = 65536;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur < (rlim_t)max)
        max = (long)rl.rlim_cur;
    for (long fd = first; fd < max; fd++)
        close((int)fd);
}

/* Put 'fd' at 'target' (close-on-exec, so nothing a task execs inherits
 * it), then close everything above 'target'.  Async-signal-safe. */
static int settle_fds(int fd, int target)
{
    if (fd != target) {
        if (dup3(fd, target, O_CLOEXEC) < 0)
            return -1;
    } else if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
        return -1;
    }
    close_from(target + 1);
    /* Tasks must not read the rank's stdin. */
    int nul = open("/dev/null", O_RDONLY);
    if (nul >= 0 && nul != 0) {
        dup2(nul, 0);
        close(nul);
    }
    return 0;
}

/* Default dispositions for every caught signal (a host's SIGSEGV
 * handler, MPI's or a sanitizer's, must not run in a worker: a crash is
 * reported as the signal), SIGCHLD back to default so tasks can wait for
 * their own processes, and an empty mask.  Async-signal-safe. */
static void reset_signals(void)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction old;
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        if (sigaction(sig, NULL, &old) < 0)
            continue; /* glibc's internal signals */
        if (old.sa_handler != SIG_IGN || sig == SIGCHLD)
            sigaction(sig, &dfl, NULL);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Die with the parent.  The parent may already be gone (the race between
 * fork and prctl): then getppid() is no longer 'parent'. */
static void die_with_parent(pid_t parent)
{
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
        _exit(127);
}

/* ==== environment ======================================================= */

/*
 * Variables that carry the launcher's job identity.  A task that runs its
 * own mpiexec or srun must start a job of its own, not join (or confuse)
 * the pilot's.  Beyond child.h's list: the other per-job variables Open
 * MPI 4.1's mpiexec sets, MPICH/Hydra's local rank, HPE PALS and ALPS
 * ranks, and Slurm's per-task ones.
 */
static const struct env_rule {
    const char *name;
    bool prefix;
} env_rules[] = {
    {"OMPI_COMM_WORLD_", true},
    {"OMPI_UNIVERSE_SIZE", false},
    {"OMPI_MCA_ess", true},
    {"OMPI_MCA_orte", true},
    {"OMPI_MCA_pmix", true},
    {"OMPI_APP_CTX_NUM_PROCS", false},
    {"OMPI_NUM_APP_CTX", false},
    {"OMPI_FIRST_RANKS", false},
    {"OMPI_FILE_LOCATION", false},
    {"OMPI_COMMAND", false},
    {"OMPI_ARGV", false},
    {"OMPI_MCA_shmem_RUNTIME_QUERY_hint", false},
    {"PMIX_", true},
    {"PMI_", true},
    {"MPI_LOCALRANKID", false},
    {"MPI_LOCALNRANKS", false},
    {"PALS_", true},
    {"ALPS_APP_PE", false},
    {"SLURM_STEP_", true},
    {"SLURM_STEPID", false},
    {"SLURM_PROCID", false},
    {"SLURM_LOCALID", false},
    {"SLURM_NTASKS", false},
    {"SLURM_NPROCS", false},
    {"SLURM_TASK_PID", false},
    {"SLURM_GTIDS", false},
    {"CPARSL_SECRET", true},
};

static size_t env_name_len(const char *s)
{
    return strcspn(s, "=");
}

bool htex_env_dropped(const char *name_eq_value)
{
    if (name_eq_value == NULL)
        return false;
    size_t n = env_name_len(name_eq_value);
    for (size_t i = 0; i < sizeof env_rules / sizeof env_rules[0]; i++) {
        size_t len = strlen(env_rules[i].name);
        if (env_rules[i].prefix ? n >= len : n == len)
            if (memcmp(name_eq_value, env_rules[i].name, len) == 0)
                return true;
    }
    return false;
}

static bool env_same_name(const char *a, const char *b)
{
    size_t n = env_name_len(a);
    return n == env_name_len(b) && memcmp(a, b, n) == 0;
}

/* The child's environment: ours minus the dropped variables, with 'add'
 * replacing or extending it (a later addition wins over an earlier one).
 * Only the array is allocated; its strings are borrowed. */
static char **env_build(const char *const *add, size_t nadd)
{
    size_t n = 0;
    for (char **p = environ; p && *p; p++)
        n++;
    char **out = malloc((n + nadd + 1) * sizeof *out);
    if (!out)
        return NULL;
    size_t k = 0;
    for (char **p = environ; p && *p; p++) {
        bool skip = htex_env_dropped(*p);
        for (size_t i = 0; i < nadd && !skip; i++)
            skip = env_same_name(*p, add[i]);
        if (!skip)
            out[k++] = *p;
    }
    for (size_t i = 0; i < nadd; i++) {
        bool later = false;
        for (size_t j = i + 1; j < nadd && !later; j++)
            later = env_same_name(add[i], add[j]);
        if (!later)
            out[k++] = (char *)add[i];
    }
    out[k] = NULL;
    return out;
}

static int env_check(const htex_child_opts_t *opts, cparsl_error_t *err)
{
    for (size_t i = 0; i < opts->nenv; i++) {
        const char *s = opts->env[i];
        if (!s || env_name_len(s) == 0 || s[env_name_len(s)] != '=')
            return cparsl_error_set(err, -EINVAL,
                                    "worker environment entry %zu ('%s') "
                                    "is not NAME=value",
                                    i, s ? s : "(null)");
    }
    return 0;
}

/* ==== CPU lists ========================================================= */

/* "0-3,8" into 'set'.  0 or -EINVAL with the reason in err. */
static int cpus_parse(const char *s, cpu_set_t *set, cparsl_error_t *err)
{
    const char *p = s;
    CPU_ZERO(set);
    if (*p == '\0')
        return cparsl_error_set(err, -EINVAL, "empty CPU list");
    for (;;) {
        unsigned long lo, hi;
        char *end;
        if (*p < '0' || *p > '9')
            goto bad;
        errno = 0;
        lo = strtoul(p, &end, 10);
        if (errno)
            goto bad;
        hi = lo;
        p = end;
        if (*p == '-') {
            p++;
            if (*p < '0' || *p > '9')
                goto bad;
            hi = strtoul(p, &end, 10);
            if (errno)
                goto bad;
            p = end;
        }
        if (lo > hi || hi >= CPU_SETSIZE)
            return cparsl_error_set(err, -EINVAL,
                                    "CPU list '%s': range %lu-%lu is empty or "
                                    "beyond CPU %d",
                                    s, lo, hi, CPU_SETSIZE - 1);
        for (unsigned long c = lo; c <= hi; c++)
            CPU_SET(c, set);
        if (*p == '\0')
            return 0;
        if (*p != ',')
            goto bad;
        p++;
    }
bad:
    return cparsl_error_set(err, -EINVAL,
                            "CPU list '%s' is malformed at offset %td "
                            "(expected e.g. \"0-3,8\")",
                            s, p - s);
}

/* ==== framing =========================================================== */

struct frame {
    unsigned char *p;
    size_t len, cap;
};

static int frame_reserve(struct frame *f, size_t need)
{
    if (need <= f->cap)
        return 0;
    size_t cap = f->cap ? f->cap : 4096;
    while (cap < need)
        cap *= 2;
    unsigned char *p = realloc(f->p, cap);
    if (!p)
        return -ENOMEM;
    f->p = p;
    f->cap = cap;
    return 0;
}

static void frame_free(struct frame *f)
{
    free(f->p);
    memset(f, 0, sizeof *f);
}

/* One recv into f: bytes read (> 0), 0 at EOF, or -errno. */
static ssize_t frame_recv(int fd, struct frame *f, int flags)
{
    if (f->cap - f->len < 512 && frame_reserve(f, f->len + 4096) < 0)
        return -ENOMEM;
    for (;;) {
        ssize_t r = recv(fd, f->p + f->len, f->cap - f->len, flags);
        if (r >= 0) {
            f->len += (size_t)r;
            return r;
        }
        if (errno != EINTR)
            return -errno;
    }
}

/* Length of the complete frame at the head of f; -EAGAIN when more bytes
 * are needed (room for them is made), or -CPARSL_EDECODE / -ENOMEM. */
static long frame_ready(struct frame *f)
{
    if (f->len < 4)
        return -EAGAIN;
    uint32_t n = get_le32(f->p);
    if (n < HTEX_HDR_LEN || n > CHILD_MAX_FRAME)
        return -CPARSL_EDECODE;
    if (f->len < 4 + (size_t)n)
        return frame_reserve(f, 4 + (size_t)n) < 0 ? -ENOMEM : -EAGAIN;
    return (long)n;
}

static void frame_consume(struct frame *f, size_t n)
{
    size_t used = 4 + n;
    memmove(f->p, f->p + used, f->len - used);
    f->len -= used;
}

/* Write a length prefix and msg in one go where the socket allows. */
static int frame_send(int fd, const void *msg, size_t len)
{
    unsigned char pfx[4];
    put_le32(pfx, (uint32_t)len);
    struct iovec iov[2] = {{pfx, 4}, {(void *)msg, len}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    while (mh.msg_iovlen > 0) {
        ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        while (w > 0) {
            if ((size_t)w >= mh.msg_iov->iov_len) {
                w -= (ssize_t)mh.msg_iov->iov_len;
                mh.msg_iov++;
                mh.msg_iovlen--;
            } else {
                mh.msg_iov->iov_base = (char *)mh.msg_iov->iov_base + w;
                mh.msg_iov->iov_len -= (size_t)w;
                w = 0;
            }
        }
        while (mh.msg_iovlen > 0 && mh.msg_iov->iov_len == 0) {
            mh.msg_iov++;
            mh.msg_iovlen--;
        }
    }
    return 0;
}

/* ==== the child ========================================================= */

/* Everything a new child needs, prepared before fork. */
struct child_boot {
    int sock;    /* the child's end of its socket */
    char **envp; /* its environment */
    bool pin;
    cpu_set_t cpus;
    pid_t parent; /* what getppid() must say after PR_SET_PDEATHSIG */
};

/*
 * Per-try measurements: peak memory since clear_refs, CPU time.
 *
 * The peak is the mm's high-water mark, which "5" in clear_refs resets.
 * VmHWM in /proc/self/status shows it, but generating that file costs
 * 7-11 us here, as much as the rest of a round trip.  getrusage's
 * ru_maxrss is max(signal->maxrss, the mm's mark), and the kernel folds
 * the mark into signal->maxrss only at exec and when the whole process
 * exits; a forked worker does neither, so ru_maxrss is the mark.  The
 * child checks that once against VmHWM and reads the file every try if
 * the two disagree.
 */
struct meter {
    int clear_fd, status_fd;
    bool hwm;        /* the peak-memory reset worked for this try */
    bool use_status; /* ru_maxrss does not follow the reset here */
    struct rusage self0, kids0;
};

static double tv_s(const struct timeval *tv)
{
    return (double)tv->tv_sec + (double)tv->tv_usec * 1e-6;
}

static double ru_cpu(const struct rusage *a, const struct rusage *b)
{
    return tv_s(&b->ru_utime) - tv_s(&a->ru_utime) + tv_s(&b->ru_stime) -
           tv_s(&a->ru_stime);
}

static void meter_begin(struct meter *m)
{
    /* "5" resets the peak RSS (VmHWM) to the current RSS.  If the kernel
     * refuses, the peak would be the child's lifetime peak: report none
     * rather than a wrong figure. */
    m->hwm = m->clear_fd >= 0 && m->status_fd >= 0 &&
             write(m->clear_fd, "5", 1) == 1;
    getrusage(RUSAGE_SELF, &m->self0);
    getrusage(RUSAGE_CHILDREN, &m->kids0);
}

static int64_t read_hwm_kib(int fd)
{
    char buf[8192];
    /* Reading from offset 0 makes the kernel regenerate the file. */
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    const char *p = strstr(buf, "\nVmHWM:");
    if (!p)
        return -1;
    char *end;
    long long v = strtoll(p + 7, &end, 10);
    return end == p + 7 ? -1 : (int64_t)v;
}

static void meter_open(struct meter *m)
{
    m->clear_fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    m->status_fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    m->use_status = true;
    if (m->clear_fd < 0 || m->status_fd < 0 || write(m->clear_fd, "5", 1) != 1)
        return;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    int64_t hwm = read_hwm_kib(m->status_fd);
    /* Pages touched between the two reads make VmHWM a little larger. */
    m->use_status =
        hwm < 0 || ru.ru_maxrss > hwm + 1024 || ru.ru_maxrss < hwm - 4096;
}

static void meter_end(struct meter *m, cparsl_exec_t *e)
{
    struct rusage self1, kids1;
    getrusage(RUSAGE_SELF, &self1);
    getrusage(RUSAGE_CHILDREN, &kids1);
    /* The child's own time plus that of the processes it waited for
     * (a bash app's command). */
    e->cpu_s = ru_cpu(&m->self0, &self1) + ru_cpu(&m->kids0, &kids1);
    /* A kind that measured its own process (bash) knows better than the
     * worker's peak, which would be the worker's own size. */
    if (e->maxrss_kib >= 0)
        return;
    if (!m->hwm)
        e->maxrss_kib = -1;
    else if (m->use_status)
        e->maxrss_kib = read_hwm_kib(m->status_fd);
    else
        e->maxrss_kib = self1.ru_maxrss; /* KiB on Linux */
}

/* Answer for a task that could not be decoded, so the slot gets a clear
 * failure instead of a dead worker. */
static void child_answer_error(htex_buf_t *out, uint64_t ticket,
                               const cparsl_error_t *why)
{
    cparsl_exec_t e;
    htex_exec_blank(&e);
    cparsl_exec_fail(&e, CPARSL_EWORKER,
                     "worker process %ld could not decode its task: %s",
                     (long)getpid(), why->text);
    htex_msg_begin(out, HTEX_MSG_RESULTS, 0);
    htex_msg_add_result(out, ticket, 0, &e, -1, -1);
    cparsl_exec_clear_error(&e);
}

static void child_run_one(htex_task_t *t, struct meter *m)
{
    cparsl_exec_t *e = &t->exec;
    e->result = cparsl_nil();
    cparsl_exec_clear_error(e);
    e->exit_code = -1;
    e->term_signal = 0;
    e->cpu_s = -1;
    e->maxrss_kib = -1;
    if (e->args.app == NULL) {
        e->t_start = e->t_end = cparsl_now_ns();
        cparsl_exec_fail(e, CPARSL_ENOAPP,
                         "no app '%s' registered in this worker (does every "
                         "rank run the same build?)",
                         t->app_name ? t->app_name : "?");
        return;
    }
    meter_begin(m);
    cparsl_exec_run(e);
    meter_end(m, e);
}

/* Run t and put its RESULTS message in out. */
static void child_answer(htex_buf_t *out, htex_task_t *t, struct meter *m)
{
    child_run_one(t, m);
    /* Output the app buffered must come out before its result, and must
     * not be lost when we _exit. */
    fflush(NULL);
    htex_msg_begin(out, HTEX_MSG_RESULTS, 0);
    htex_msg_add_result(out, t->ticket, t->exec.args.try_no, &t->exec, -1, -1);
    if (out->error < 0) {
        /* A result the wire cannot carry: say so instead. */
        int why = out->error;
        cparsl_value_clear(&t->exec.result);
        cparsl_exec_fail(&t->exec, why,
                         "app '%s' returned a result the worker cannot send "
                         "back: %s",
                         t->app_name ? t->app_name : "?", cparsl_strerror(why));
        htex_msg_begin(out, HTEX_MSG_RESULTS, 0);
        htex_msg_add_result(out, t->ticket, t->exec.args.try_no, &t->exec, -1,
                            -1);
    }
    cparsl_value_clear(&t->exec.result);
}

/* exit() in a task runs the handlers and destructors the child inherited
 * from the rank, which may wait on locks other threads held at fork time.
 * Registered last, this runs first: keep the status, skip the rest. */
static void child_on_exit(int status, void *arg)
{
    (void)arg;
    fflush(NULL);
    _exit(status);
}

static void child_loop(int fd)
{
    on_exit(child_on_exit, NULL);
    struct frame in = {0};
    htex_buf_t out = {0};
    htex_task_t t;
    struct meter m;

    htex_task_init(&t);
    meter_open(&m);

    for (;;) {
        long n;
        int64_t t0 = 0;
        while ((n = frame_ready(&in)) == -EAGAIN) {
            ssize_t r = frame_recv(fd, &in, MSG_DONTWAIT);
            if (r == -EAGAIN) {
                int64_t now = cparsl_mono_ns();
                if (!t0)
                    t0 = now;
                if (now - t0 < CHILD_POLL_NS) {
                    sched_yield();
                    continue;
                }
                r = frame_recv(fd, &in, 0);
            }
            if (r == 0 || r == -ECONNRESET)
                _exit(0); /* the slot closed: we are done */
            if (r < 0)
                _exit(1);
        }
        if (n < 0)
            _exit(1); /* a stream we cannot resynchronize */

        cparsl_error_t err;
        htex_reader_t rd;
        cparsl_error_clear(&err);
        int rc = htex_msg_open(&rd, in.p + 4, (size_t)n, &err);
        if (rc == 0 && (rd.hdr.type != HTEX_MSG_TASKS || rd.hdr.count == 0))
            rc = cparsl_error_set(&err, CPARSL_EDECODE,
                                  "expected TASKS records, got %u %s "
                                  "record(s)",
                                  rd.hdr.count, htex_msg_name(rd.hdr.type));
        /* A batch runs in order, each result sent before the next try
         * starts, so a crash loses none.  After a record that cannot be
         * decoded, the rest cannot be found: each gets the same answer
         * (the header's count is bounded by the frame's size). */
        uint32_t count = rc == 0 ? rd.hdr.count : 1;
        for (uint32_t k = 0; k < count; k++) {
            if (rc == 0)
                rc = htex_msg_next_task(&rd, &t, &err);
            if (rc < 0)
                child_answer_error(&out, k, &err);
            else
                child_answer(&out, &t, &m);
            long len = htex_msg_end(&out);
            if (len < 0)
                _exit(1);
            int src = frame_send(fd, out.p, (size_t)len);
            if (src == -EPIPE || src == -ECONNRESET)
                _exit(0);
            if (src < 0)
                _exit(1);
        }
        frame_consume(&in, (size_t)n);
    }
}

/* The first code a new child runs, in either path.  Only async-signal-
 * safe calls until child_loop. */
__attribute__((noreturn)) static void child_boot(const struct child_boot *b)
{
    unsigned char hello[8];
    int32_t st = 0;

    die_with_parent(b->parent);
    /* A group of its own, so a walltime or crash kill also takes the
     * processes a task started (system(), popen) with it. */
    setpgid(0, 0);
    reset_signals();
    prctl(PR_SET_NAME, "cparsl-worker");
    if (settle_fds(b->sock, CHILD_FD) < 0)
        _exit(126);
    if (b->pin && sched_setaffinity(0, sizeof b->cpus, &b->cpus) < 0)
        st = -errno;
    environ = b->envp;

    put_le32(hello, CHILD_HELLO_MAGIC);
    put_le32(hello + 4, (uint32_t)st);
    if (send(CHILD_FD, hello, sizeof hello, MSG_NOSIGNAL) != sizeof hello ||
        st < 0)
        _exit(1);
    child_loop(CHILD_FD);
    _exit(0);
}

/* ==== the fork helper =================================================== */

enum { HREQ_SPAWN = 1, HREQ_WAIT = 2 };

/* Control requests: this header, then 'datalen' bytes (SPAWN: nenv
 * NUL-terminated strings, then the CPU list if has_cpus). */
struct hreq {
    uint32_t op;
    int32_t pid;       /* WAIT */
    uint32_t grace_ms; /* WAIT: time to exit on its own before SIGKILL */
    uint32_t nenv;     /* SPAWN */
    uint32_t has_cpus; /* SPAWN */
    uint32_t datalen;
};

/* The answer; SPAWN's carries the slot's socket end in SCM_RIGHTS. */
struct hrep {
    int32_t rc; /* 0 or -errno */
    int32_t pid;
    int32_t status; /* WAIT: the wait status */
    char text[CPARSL_ERROR_TEXT];
};

static struct {
    pthread_mutex_t mu; /* serializes requests and start/stop */
    pid_t pid;          /* 0: not running */
    int ctl;            /* our end of the control socket */
    unsigned gen;       /* bumped at every start, so a child knows whose */
} helper = {PTHREAD_MUTEX_INITIALIZER, 0, -1, 0};

static pthread_once_t helper_atfork_once = PTHREAD_ONCE_INIT;

/* A process forked from a rank (by the user, a test, or ourselves) does
 * not inherit the rank's helper: it would interleave requests with the
 * rank's on the same control socket. */
static void helper_forget_in_child(void)
{
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    helper.mu = fresh;
    if (helper.ctl >= 0)
        close(helper.ctl);
    helper.ctl = -1;
    helper.pid = 0;
}

static void helper_atfork_init(void)
{
    pthread_atfork(NULL, NULL, helper_forget_in_child);
}

static void helper_reply(int ctl, struct hrep *rp, int fd)
{
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct iovec iov = {rp, sizeof *rp};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        memset(&u, 0, sizeof u);
        mh.msg_control = u.buf;
        mh.msg_controllen = sizeof u.buf;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    }
    while (sendmsg(ctl, &mh, MSG_NOSIGNAL) < 0 && errno == EINTR)
        ;
}

static void helper_fail(struct hrep *rp, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void helper_fail(struct hrep *rp, int code, const char *fmt, ...)
{
    va_list ap;
    rp->rc = code;
    va_start(ap, fmt);
    vsnprintf(rp->text, sizeof rp->text, fmt, ap);
    va_end(ap);
}

static void helper_spawn(int ctl, const struct hreq *rq, const char *data)
{
    struct hrep rp;
    struct child_boot b;
    const char **add = NULL;
    cparsl_error_t err;
    int sv[2] = {-1, -1};
    size_t off = 0;

    memset(&rp, 0, sizeof rp);
    memset(&b, 0, sizeof b);
    if (rq->nenv > HELPER_MAX_DATA / 2) {
        helper_fail(&rp, -E2BIG, "too many environment entries");
        goto reply;
    }
    add = calloc(rq->nenv + 1, sizeof *add);
    if (!add) {
        helper_fail(&rp, -ENOMEM, "fork helper: out of memory");
        goto reply;
    }
    for (uint32_t i = 0; i < rq->nenv + (rq->has_cpus ? 1 : 0); i++) {
        const char *s = data + off;
        const char *nul =
            off < rq->datalen ? memchr(s, '\0', rq->datalen - off) : NULL;
        if (!nul) {
            helper_fail(&rp, -EPROTO, "fork helper: malformed request");
            goto reply;
        }
        if (i < rq->nenv)
            add[i] = s;
        else if (cpus_parse(s, &b.cpus, &err) < 0) {
            helper_fail(&rp, err.code, "%s", err.text);
            goto reply;
        } else
            b.pin = true;
        off += (size_t)(nul - s) + 1;
    }
    b.envp = env_build(add, rq->nenv);
    if (!b.envp) {
        helper_fail(&rp, -ENOMEM, "fork helper: out of memory");
        goto reply;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ||
        (sv[0] = cparsl__above_stdio(sv[0])) < 0 ||
        (sv[1] = cparsl__above_stdio(sv[1])) < 0) {
        helper_fail(&rp, -errno, "fork helper: socketpair: %s",
                    cparsl_strerror(errno));
        goto reply;
    }
    b.sock = sv[1];
    b.parent = getpid();
    pid_t pid = fork();
    if (pid == 0)
        child_boot(&b);
    if (pid < 0) {
        helper_fail(&rp, -errno, "fork helper: cannot fork a worker: %s",
                    cparsl_strerror(errno));
        goto reply;
    }
    rp.pid = pid;
    cparsl__close_fd(&sv[1]);
reply:
    helper_reply(ctl, &rp, rp.rc == 0 ? sv[0] : -1);
    cparsl__close_fd(&sv[0]);
    cparsl__close_fd(&sv[1]);
    free(b.envp);
    free(add);
}

/* Wait for our child 'pid': up to 'grace_ns' for it to exit on its own,
 * then SIGKILL.  0 with *status, or -errno.  Used by the helper, and by
 * a slot for the children it forked itself. */
static int wait_own(pid_t pid, int64_t grace_ns, int *status)
{
    int64_t deadline = cparsl_mono_ns() + grace_ns;
    long backoff = 20000; /* ns */
    bool killed = false;
    for (;;) {
        pid_t r = waitpid(pid, status, killed ? 0 : WNOHANG);
        if (r == pid)
            return 0;
        if (r < 0 && errno != EINTR)
            return -errno;
        if (r != 0 || killed)
            continue;
        int64_t left = deadline - cparsl_mono_ns();
        if (left <= 0) {
            kill(pid, SIGKILL);
            killed = true;
            continue;
        }
        struct timespec ts = {0, backoff < left ? backoff : (long)left};
        nanosleep(&ts, NULL);
        if (backoff < 10000000)
            backoff *= 2;
    }
}

static void helper_wait(int ctl, const struct hreq *rq)
{
    struct hrep rp;
    int status = 0;
    memset(&rp, 0, sizeof rp);
    rp.pid = rq->pid;
    int rc = rq->pid > 0
                 ? wait_own(rq->pid, (int64_t)rq->grace_ms * 1000000, &status)
                 : -EINVAL;
    if (rc < 0)
        helper_fail(&rp, rc, "fork helper: cannot wait for process %ld: %s",
                    (long)rq->pid, cparsl_strerror(-rc));
    rp.status = status;
    helper_reply(ctl, &rp, -1);
}

__attribute__((noreturn)) static void helper_main(int ctl, pid_t parent)
{
    static char buf[sizeof(struct hreq) + HELPER_MAX_DATA];

    die_with_parent(parent);
    /* Out of the rank's process group: Open MPI forwards SIGUSR1 (and
     * SIGTERM) to each rank's group, and the rank, not its helper, decides
     * what a signal means; the helper still dies with the rank. */
    setpgid(0, 0);
    reset_signals();
    prctl(PR_SET_NAME, "cparsl-forkhelp");
    if (settle_fds(ctl, HELPER_FD) < 0)
        _exit(126);

    for (;;) {
        struct iovec iov = {buf, sizeof buf};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
        ssize_t n = recvmsg(HELPER_FD, &mh, 0);
        if (n == 0)
            _exit(0); /* the rank stopped us (or exited) */
        if (n < 0) {
            if (errno == EINTR)
                continue;
            _exit(1);
        }
        struct hreq rq;
        if ((size_t)n < sizeof rq || (mh.msg_flags & MSG_TRUNC)) {
            struct hrep rp;
            memset(&rp, 0, sizeof rp);
            helper_fail(&rp, -EPROTO, "fork helper: malformed request");
            helper_reply(HELPER_FD, &rp, -1);
            continue;
        }
        memcpy(&rq, buf, sizeof rq);
        if (rq.datalen != (size_t)n - sizeof rq)
            rq.op = 0;
        if (rq.op == HREQ_SPAWN) {
            helper_spawn(HELPER_FD, &rq, buf + sizeof rq);
        } else if (rq.op == HREQ_WAIT) {
            helper_wait(HELPER_FD, &rq);
        } else {
            struct hrep rp;
            memset(&rp, 0, sizeof rp);
            helper_fail(&rp, -EPROTO, "fork helper: malformed request");
            helper_reply(HELPER_FD, &rp, -1);
        }
    }
}

static int count_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -errno;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

int htex_forkhelper_start(bool allow_threads, cparsl_error_t *err)
{
    pthread_once(&helper_atfork_once, helper_atfork_init);
    pthread_mutex_lock(&helper.mu);
    if (helper.pid > 0) {
        pthread_mutex_unlock(&helper.mu);
        return 0;
    }
    int rc = 0, sv[2] = {-1, -1};
    if (!allow_threads) {
        int n = count_threads();
        if (n < 0) {
            rc = cparsl_error_set(err, n,
                                  "cannot count this process's threads in "
                                  "/proc/self/task: %s",
                                  cparsl_strerror(-n));
            goto out;
        }
        if (n > 1) {
            rc = cparsl_error_set(err, -EBUSY,
                                  "the worker fork helper must start while "
                                  "the process has one thread, and it has "
                                  "%d: start it before MPI_Init, cparsl_init "
                                  "and any pthread_create",
                                  n);
            goto out;
        }
    }
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0 ||
        (sv[0] = cparsl__above_stdio(sv[0])) < 0 ||
        (sv[1] = cparsl__above_stdio(sv[1])) < 0) {
        rc = cparsl_error_set(err, -errno,
                              "cannot create the fork helper's socket: %s",
                              cparsl_strerror(errno));
        goto out;
    }
    /* Unwritten stdio buffers would be written again by every child that
     * leaves with exit() (an app calling exit()). */
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0)
        helper_main(sv[1], parent);
    if (pid < 0) {
        rc = cparsl_error_set(err, -errno, "cannot fork the worker helper: %s",
                              cparsl_strerror(errno));
        goto out;
    }
    cparsl__close_fd(&sv[1]);
    helper.pid = pid;
    helper.ctl = sv[0];
    helper.gen++;
    sv[0] = -1;
out:
    cparsl__close_fd(&sv[0]);
    cparsl__close_fd(&sv[1]);
    pthread_mutex_unlock(&helper.mu);
    return rc;
}

/* Called with helper.mu held. */
static void helper_reap_locked(void)
{
    cparsl__close_fd(&helper.ctl);
    if (helper.pid > 0) {
        /* It leaves as soon as it reads EOF (a WAIT in progress is
         * bounded by its grace), and its children die with it. */
        while (waitpid(helper.pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    helper.pid = 0;
}

void htex_forkhelper_stop(void)
{
    pthread_mutex_lock(&helper.mu);
    helper_reap_locked();
    pthread_mutex_unlock(&helper.mu);
}

bool htex_forkhelper_running(void)
{
    pthread_mutex_lock(&helper.mu);
    bool r = helper.pid > 0;
    pthread_mutex_unlock(&helper.mu);
    return r;
}

/* One request and its answer.  *fd_out gets a passed descriptor or -1.
 * -ESRCH when no helper runs (or 'gen' is not the running one), -EPIPE
 * when it died, or -errno. */
static int helper_call(unsigned gen, const struct hreq *rq, const void *data,
                       struct hrep *rp, int *fd_out)
{
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    int rc = 0;

    if (fd_out)
        *fd_out = -1;
    pthread_mutex_lock(&helper.mu);
    if (helper.pid <= 0 || (gen && gen != helper.gen)) {
        pthread_mutex_unlock(&helper.mu);
        return -ESRCH;
    }
    struct iovec iov[2] = {{(void *)rq, sizeof *rq},
                           {(void *)data, rq->datalen}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = rq->datalen ? 2 : 1};
    ssize_t n;
    while ((n = sendmsg(helper.ctl, &mh, MSG_NOSIGNAL)) < 0 && errno == EINTR)
        ;
    if (n < 0) {
        rc = -errno;
        goto out;
    }
    struct iovec riov = {rp, sizeof *rp};
    struct msghdr rmh = {.msg_iov = &riov,
                         .msg_iovlen = 1,
                         .msg_control = u.buf,
                         .msg_controllen = sizeof u.buf};
    while ((n = recvmsg(helper.ctl, &rmh, MSG_CMSG_CLOEXEC)) < 0 &&
           errno == EINTR)
        ;
    if (n < 0) {
        rc = -errno;
        goto out;
    }
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&rmh); cm;
         cm = CMSG_NXTHDR(&rmh, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
            cm->cmsg_len == CMSG_LEN(sizeof(int))) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm), sizeof fd);
            if (fd_out && *fd_out < 0)
                *fd_out = cparsl__above_stdio(fd);
            else
                close(fd);
        }
    }
    if (n == 0) {
        rc = -EPIPE;
    } else if ((size_t)n != sizeof *rp) {
        rc = -EPROTO;
    } else {
        rp->text[sizeof rp->text - 1] = '\0';
    }
out:
    if (rc == -EPIPE || rc == -ECONNRESET) {
        rc = -EPIPE;
        helper_reap_locked(); /* it died: reap it, its children are gone */
    }
    pthread_mutex_unlock(&helper.mu);
    if (rc < 0 && fd_out)
        cparsl__close_fd(fd_out);
    return rc;
}

/* ==== the slot side ===================================================== */

struct htex_child {
    pid_t pid;
    int fd;      /* our end of its socket; -1 once it is dead */
    int pidfd;   /* -1 when the kernel has no pidfd_open */
    bool alive;  /* can take a task */
    bool direct; /* forked by this process (no helper): we reap it */
    bool reaped; /* its status is known, or can never be */
    int status;  /* its wait status, when reaped and status_ok */
    bool status_ok;
    unsigned gen; /* the helper generation that made it */
    struct frame in;
    htex_buf_t out; /* reused for every task */
};

bool htex_child_alive(const htex_child_t *c)
{
    return c && c->alive;
}

pid_t htex_child_pid(const htex_child_t *c)
{
    return c ? c->pid : -1;
}

/*
 * Wait until c's socket is readable, the child exits (its pidfd), or the
 * CLOCK_MONOTONIC 'deadline' (0: none).  1: the socket is readable (or at
 * EOF); 2: the child exited; 0: deadline; -errno.
 */
static int child_wait(htex_child_t *c, int64_t deadline)
{
    /* A short task answers within microseconds: look before sleeping. */
    int64_t t0 = cparsl_mono_ns();
    do {
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        if (poll(&p, 1, 0) > 0)
            return 1;
        sched_yield();
    } while (cparsl_mono_ns() - t0 < CHILD_POLL_NS &&
             (deadline <= 0 || cparsl_mono_ns() < deadline));
    for (;;) {
        struct pollfd fds[2] = {{.fd = c->fd, .events = POLLIN},
                                {.fd = c->pidfd, .events = POLLIN}};
        struct timespec ts, *tsp = NULL;
        if (deadline > 0) {
            int64_t left = deadline - cparsl_mono_ns();
            if (left <= 0)
                return 0;
            ts.tv_sec = (time_t)(left / 1000000000LL);
            ts.tv_nsec = (long)(left % 1000000000LL);
            tsp = &ts;
        }
        int r = ppoll(fds, c->pidfd >= 0 ? 2 : 1, tsp, NULL);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            continue; /* re-check the deadline */
        if (fds[0].revents)
            return 1;
        if (c->pidfd >= 0 && fds[1].revents)
            return 2;
    }
}

/* Signal the child.  Through its pidfd when there is one: if the helper
 * died, init may have reaped the child and its pid may be reused. */
static void child_signal(const htex_child_t *c, int sig)
{
#ifdef SYS_pidfd_send_signal
    if (c->pidfd >= 0) {
        syscall(SYS_pidfd_send_signal, c->pidfd, sig, NULL, 0);
        return;
    }
#endif
    kill(c->pid, sig);
}

/* Collect a child that is dead or dying: up to 'grace_ns' for it to end
 * on its own, then SIGKILL.  Afterwards c->reaped; c->status_ok says
 * whether its status is known. */
static void child_collect(htex_child_t *c, int64_t grace_ns)
{
    if (c->reaped || c->pid <= 0)
        return;
    c->alive = false;
    if (c->pidfd >= 0) {
        /* Wait here rather than in the helper, which serves every slot. */
        struct pollfd p = {.fd = c->pidfd, .events = POLLIN};
        int64_t deadline = cparsl_mono_ns() + grace_ns;
        int r;
        do {
            int64_t left = deadline - cparsl_mono_ns();
            struct timespec ts = {(time_t)(left > 0 ? left / 1000000000LL : 0),
                                  (long)(left > 0 ? left % 1000000000LL : 0)};
            r = ppoll(&p, 1, &ts, NULL);
        } while (r < 0 && errno == EINTR);
        if (r <= 0)
            child_signal(c, SIGKILL);
        grace_ns = 0;
        /* Processes a task left behind go with their worker.  The leader
         * is not reaped yet, so its group id can name no one else. */
        kill(-c->pid, SIGKILL);
    }
    int rc;
    if (c->direct) {
        rc = wait_own(c->pid, grace_ns, &c->status);
    } else {
        struct hreq rq = {.op = HREQ_WAIT,
                          .pid = c->pid,
                          .grace_ms = (uint32_t)(grace_ns / 1000000)};
        struct hrep rp;
        rc = helper_call(c->gen, &rq, NULL, &rp, NULL);
        if (rc == 0)
            rc = rp.rc;
        if (rc == 0)
            c->status = rp.status;
    }
    c->reaped = true;
    c->status_ok = rc == 0;
    cparsl__close_fd(&c->pidfd);
}

/* "killed by signal 11 (Segmentation fault)" or "exited with status 3". */
static void status_text(const htex_child_t *c, char *buf, size_t cap)
{
    if (!c->status_ok) {
        snprintf(buf, cap,
                 "its exit status is unknown (the fork helper "
                 "is gone, or SIGCHLD is ignored)");
    } else if (WIFSIGNALED(c->status)) {
        int sig = WTERMSIG(c->status);
        snprintf(
            buf, cap, "killed by signal %d (%s)%s%s", sig,
            cparsl_strsignal(sig), WCOREDUMP(c->status) ? ", core dumped" : "",
            sig == SIGKILL ? " (out of memory, or killed from outside?)" : "");
    } else if (WIFEXITED(c->status)) {
        snprintf(buf, cap, "exited with status %d (the app called exit())",
                 WEXITSTATUS(c->status));
    } else {
        snprintf(buf, cap, "ended with wait status %#x", c->status);
    }
}

static void child_fill_status(const htex_child_t *c, cparsl_exec_t *e)
{
    if (!c->status_ok)
        return;
    if (WIFEXITED(c->status))
        e->exit_code = WEXITSTATUS(c->status);
    else if (WIFSIGNALED(c->status))
        e->term_signal = WTERMSIG(c->status);
}

/* The child went away while 'what' (e.g. "running app 'x'"). */
static int child_died(htex_child_t *c, cparsl_error_t *err, const char *what)
{
    char why[160];
    c->alive = false;
    cparsl__close_fd(&c->fd);
    child_collect(c, CHILD_DEATH_GRACE_NS);
    status_text(c, why, sizeof why);
    return cparsl_error_set(err, CPARSL_EWORKER,
                            "worker process %ld died while %s: %s",
                            (long)c->pid, what, why);
}

/* Kill a child we can no longer trust (walltime, garbage on its socket). */
static void child_kill(htex_child_t *c)
{
    if (!c->reaped && c->pid > 0) {
        child_signal(c, SIGKILL);
        /* and whatever the task started in the child's group (the leader
         * is not reaped yet, so the id names no one else) */
        kill(-c->pid, SIGKILL);
    }
    c->alive = false;
    cparsl__close_fd(&c->fd);
    child_collect(c, CHILD_DEATH_GRACE_NS);
}

/* Read the 8-byte hello: the child is running and (maybe) pinned. */
static int child_hello(htex_child_t *c, const htex_child_opts_t *opts,
                       cparsl_error_t *err)
{
    int64_t deadline = cparsl_mono_ns() + CHILD_HELLO_NS;
    unsigned char buf[8];
    size_t got = 0;
    while (got < sizeof buf) {
        int w = child_wait(c, deadline);
        if (w == 0) {
            child_kill(c);
            return cparsl_error_set(err, -ETIMEDOUT,
                                    "worker process %ld did not start within "
                                    "%lld s; killed",
                                    (long)c->pid,
                                    CHILD_HELLO_NS / 1000000000LL);
        }
        ssize_t r = w;
        if (w > 0) {
            r = recv(c->fd, buf + got, sizeof buf - got, MSG_DONTWAIT);
            if (r < 0)
                r = -errno;
        }
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (w == 1 && (r == -EAGAIN || r == -EINTR))
            continue;
        return child_died(c, err, "starting");
    }
    int32_t st = (int32_t)get_le32(buf + 4);
    if (get_le32(buf) != CHILD_HELLO_MAGIC) {
        child_kill(c);
        return cparsl_error_set(err, CPARSL_EWORKER,
                                "worker process %ld sent a bad hello",
                                (long)c->pid);
    }
    if (st < 0) {
        c->alive = false;
        cparsl__close_fd(&c->fd);
        child_collect(c, CHILD_DEATH_GRACE_NS);
        return cparsl_error_set(err, st,
                                "worker process %ld cannot pin itself to CPUs "
                                "'%s': %s",
                                (long)c->pid, opts->cpus ? opts->cpus : "",
                                cparsl_strerror(-st));
    }
    return 0;
}

static int spawn_via_helper(htex_child_t *c, const htex_child_opts_t *opts,
                            cparsl_error_t *err)
{
    size_t len = 0;
    for (size_t i = 0; i < opts->nenv; i++)
        len += strlen(opts->env[i]) + 1;
    if (opts->cpus)
        len += strlen(opts->cpus) + 1;
    if (len > HELPER_MAX_DATA)
        return cparsl_error_set(err, -E2BIG,
                                "worker environment and CPU list take %zu "
                                "bytes (at most %d)",
                                len, HELPER_MAX_DATA);
    char *data = malloc(len ? len : 1);
    if (!data)
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    size_t off = 0;
    for (size_t i = 0; i < opts->nenv; i++) {
        size_t n = strlen(opts->env[i]) + 1;
        memcpy(data + off, opts->env[i], n);
        off += n;
    }
    if (opts->cpus)
        memcpy(data + off, opts->cpus, strlen(opts->cpus) + 1);

    struct hreq rq = {.op = HREQ_SPAWN,
                      .nenv = (uint32_t)opts->nenv,
                      .has_cpus = opts->cpus != NULL,
                      .datalen = (uint32_t)len};
    struct hrep rp;
    unsigned gen;
    pthread_mutex_lock(&helper.mu);
    gen = helper.gen;
    pthread_mutex_unlock(&helper.mu);
    int rc = helper_call(gen, &rq, data, &rp, &c->fd);
    free(data);
    if (rc < 0)
        return cparsl_error_set(err, rc == -ESRCH ? -ESRCH : rc,
                                "cannot reach the worker fork helper: %s",
                                rc == -EPIPE ? "it died"
                                             : cparsl_strerror(-rc));
    if (rp.rc < 0)
        return cparsl_error_set(err, rp.rc, "%s", rp.text);
    if (c->fd < 0) {
        /* The helper forked a child but its socket did not arrive. */
        c->pid = rp.pid;
        c->gen = gen;
        child_collect(c, 0);
        return cparsl_error_set(err, -EPROTO,
                                "the fork helper sent no socket for worker "
                                "process %ld",
                                (long)rp.pid);
    }
    c->pid = rp.pid;
    c->gen = gen;
    return 0;
}

static int spawn_direct(htex_child_t *c, const htex_child_opts_t *opts,
                        cparsl_error_t *err)
{
    struct child_boot b;
    int sv[2] = {-1, -1};

    memset(&b, 0, sizeof b);
    if (opts->cpus) {
        if (cpus_parse(opts->cpus, &b.cpus, err) < 0)
            return err ? err->code : -EINVAL;
        b.pin = true;
    }
    b.envp = env_build(opts->env, opts->nenv);
    if (!b.envp)
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ||
        (sv[0] = cparsl__above_stdio(sv[0])) < 0 ||
        (sv[1] = cparsl__above_stdio(sv[1])) < 0) {
        int e = errno;
        cparsl__close_fd(&sv[0]);
        cparsl__close_fd(&sv[1]);
        free(b.envp);
        return cparsl_error_set(err, -e, "cannot create a worker socket: %s",
                                cparsl_strerror(e));
    }
    b.sock = sv[1];
    b.parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0)
        child_boot(&b);
    int e = errno;
    free(b.envp);
    cparsl__close_fd(&sv[1]);
    if (pid < 0) {
        cparsl__close_fd(&sv[0]);
        return cparsl_error_set(err, -e, "cannot fork a worker: %s",
                                cparsl_strerror(e));
    }
    c->pid = pid;
    c->fd = sv[0];
    c->direct = true;
    return 0;
}

int htex_child_spawn(const htex_child_opts_t *opts, htex_child_t **out,
                     cparsl_error_t *err)
{
    static const htex_child_opts_t none = {0};
    cpu_set_t cpus;
    int rc;

    *out = NULL;
    if (!opts)
        opts = &none;
    if ((rc = env_check(opts, err)) < 0)
        return rc;
    if (opts->cpus && (rc = cpus_parse(opts->cpus, &cpus, err)) < 0)
        return rc;

    htex_child_t *c = calloc(1, sizeof *c);
    if (!c)
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    c->fd = c->pidfd = -1;
    if (htex_forkhelper_running()) {
        rc = spawn_via_helper(c, opts, err);
        if (rc == -ESRCH) /* stopped meanwhile */
            rc = spawn_direct(c, opts, err);
    } else {
        rc = spawn_direct(c, opts, err);
    }
    if (rc < 0) {
        free(c);
        return rc;
    }
    /* Safe against pid reuse: nobody reaps the child before we ask. */
    c->pidfd = cparsl__open_pidfd(c->pid);
    c->alive = true;
    if ((rc = child_hello(c, opts, err)) < 0) {
        htex_child_destroy(c);
        return rc;
    }
    *out = c;
    return 0;
}

static const char *exec_app_name(const cparsl_exec_t *e)
{
    const cparsl_app_t *app = e->args.app;
    return app && app->name ? app->name : "?";
}

/* Decode the RESULTS frame of length n at the head of c->in into e. */
static int child_take_result(htex_child_t *c, cparsl_exec_t *e, long n)
{
    htex_reader_t rd;
    cparsl_error_t derr;
    uint64_t ticket;
    int try_no, worker, slot;

    cparsl_error_clear(&derr);
    int rc = htex_msg_open(&rd, c->in.p + 4, (size_t)n, &derr);
    if (rc == 0 && (rd.hdr.type != HTEX_MSG_RESULTS || rd.hdr.count != 1))
        rc = cparsl_error_set(&derr, CPARSL_EDECODE,
                              "expected one RESULTS record, got %u %s "
                              "record(s)",
                              rd.hdr.count, htex_msg_name(rd.hdr.type));
    if (rc == 0)
        rc = htex_msg_next_result(&rd, &ticket, &try_no, e, &worker, &slot,
                                  &derr);
    frame_consume(&c->in, (size_t)n);
    if (rc < 0) {
        child_kill(c);
        return cparsl_exec_fail(e, CPARSL_EWORKER,
                                "worker process %ld sent a malformed result "
                                "for app '%s' and was killed: %s",
                                (long)c->pid, exec_app_name(e), derr.text);
    }
    return cparsl_exec_code(e);
}

bool htex_child_healthy(htex_child_t *c)
{
    if (!htex_child_alive(c))
        return false;
    struct pollfd p[2] = {{.fd = c->fd, .events = POLLIN},
                          {.fd = c->pidfd, .events = POLLIN}};
    /* An idle child has nothing to say: readable means EOF or death. */
    if (poll(p, c->pidfd >= 0 ? 2 : 1, 0) > 0 &&
        ((p[0].revents & (POLLIN | POLLHUP | POLLERR)) ||
         (c->pidfd >= 0 && p[1].revents)))
        return false;
    return true;
}

int htex_child_run(htex_child_t *c, cparsl_exec_t *e)
{
    const char *name = exec_app_name(e);
    char what[128];

    cparsl_exec_clear_error(e);
    e->exit_code = -1;
    e->term_signal = 0;
    e->cpu_s = -1;
    e->maxrss_kib = -1;
    e->t_start = cparsl_now_ns();
    e->t_end = 0;
    if (!htex_child_alive(c)) {
        e->t_end = e->t_start;
        return cparsl_exec_fail(e, CPARSL_EWORKER,
                                "worker process %ld is not running (spawn a "
                                "new one)",
                                (long)htex_child_pid(c));
    }

    htex_msg_begin(&c->out, HTEX_MSG_TASKS, 0);
    htex_msg_add_task(&c->out, 0, e);
    long len = htex_msg_end(&c->out);
    if (len < 0) {
        e->t_end = cparsl_now_ns();
        return cparsl_exec_fail(e, (int)len,
                                "cannot encode the task for app '%s': %s", name,
                                cparsl_strerror((int)len));
    }

    double wt = e->walltime;
    int64_t deadline = 0;
    if (wt > 0 && wt < CHILD_WALLTIME_MAX) {
        const struct cparsl_app_kind *k = cparsl_app_kind_of(e->args.app);
        if (k && (k->flags & CPARSL_APPKIND_WALLTIME))
            wt += CHILD_KIND_GRACE_S;
        deadline = cparsl_mono_ns() + (int64_t)(wt * 1e9);
    }
    snprintf(what, sizeof what, "running app '%s'", name);

    int rc = frame_send(c->fd, c->out.p, (size_t)len);
    if (rc < 0) {
        child_died(c, cparsl_exec_err(e), what);
        e->t_end = cparsl_now_ns();
        child_fill_status(c, e);
        return cparsl_exec_code(e);
    }

    for (;;) {
        long n = frame_ready(&c->in);
        if (n > 0)
            return child_take_result(c, e, n);
        if (n != -EAGAIN) {
            child_kill(c);
            e->t_end = cparsl_now_ns();
            return cparsl_exec_fail(e, CPARSL_EWORKER,
                                    "worker process %ld sent a malformed "
                                    "frame for app '%s' and was killed: %s",
                                    (long)c->pid, name, cparsl_strerror(n));
        }
        int w = child_wait(c, deadline);
        if (w == 0) {
            child_kill(c);
            e->t_end = cparsl_now_ns();
            child_fill_status(c, e);
            return cparsl_exec_fail(e, CPARSL_EWALLTIME,
                                    "app '%s' exceeded its walltime of %g s; "
                                    "worker process %ld killed",
                                    name, e->walltime, (long)c->pid);
        }
        /* When the process is gone (w == 2), what it wrote before dying
         * is still read, so an answer sent just before is taken. */
        ssize_t r = w < 0 ? w : frame_recv(c->fd, &c->in, MSG_DONTWAIT);
        if (r > 0 || (r == -EAGAIN && w == 1))
            continue;
        /* EOF, a reset, or the process is gone with nothing more to say. */
        child_died(c, cparsl_exec_err(e), what);
        e->t_end = cparsl_now_ns();
        child_fill_status(c, e);
        return cparsl_exec_code(e);
    }
}

/* The fields htex_child_run resets before a try. */
static void exec_reset(cparsl_exec_t *e, int64_t t_start)
{
    cparsl_exec_clear_error(e);
    e->exit_code = -1;
    e->term_signal = 0;
    e->cpu_s = -1;
    e->maxrss_kib = -1;
    e->t_start = t_start;
    e->t_end = 0;
}

static bool batchable(const cparsl_exec_t *e)
{
    if (!e || e->walltime > 0)
        return false;
    const struct cparsl_app_kind *k =
        e->args.app ? cparsl_app_kind_of(e->args.app) : NULL;
    return !(k && (k->flags & CPARSL_APPKIND_WALLTIME));
}

/* When v[got] started, near enough: when the one before it ended. */
static int64_t batch_start(cparsl_exec_t *const *v, size_t got, int64_t t_sent)
{
    return got && v[got - 1]->t_end > 0 ? v[got - 1]->t_end : t_sent;
}

/*
 * Take the RESULTS frame of length len at the head of c->in for v[*got],
 * v[*got + 1], ... (fewer than 'n' in all): its records must carry those
 * indices as tickets.  Advances *got; false if the frame was malformed
 * (then the child is killed and v[*got] failed, counted in *got).
 */
static bool child_take_results(htex_child_t *c, cparsl_exec_t *const *v,
                               size_t n, size_t *got, long len, int64_t t_sent)
{
    htex_reader_t rd;
    cparsl_error_t derr;
    cparsl_error_clear(&derr);
    int rc = htex_msg_open(&rd, c->in.p + 4, (size_t)len, &derr);
    if (rc == 0 && (rd.hdr.type != HTEX_MSG_RESULTS || rd.hdr.count == 0 ||
                    rd.hdr.count > n - *got))
        rc = cparsl_error_set(&derr, CPARSL_EDECODE,
                              "expected at most %zu RESULTS records, got %u "
                              "%s record(s)",
                              n - *got, rd.hdr.count,
                              htex_msg_name(rd.hdr.type));
    for (uint32_t k = 0; rc == 0 && k < rd.hdr.count; k++) {
        cparsl_exec_t *e = v[*got];
        uint64_t ticket;
        int try_no, worker, slot;
        /* Every result field comes from the record. */
        rc = htex_msg_next_result(&rd, &ticket, &try_no, e, &worker, &slot,
                                  &derr);
        if (rc == 0 && ticket != *got) {
            cparsl_value_clear(&e->result);
            rc = cparsl_error_set(&derr, CPARSL_EDECODE,
                                  "result for record %llu where record %zu "
                                  "was due",
                                  (unsigned long long)ticket, *got);
        }
        if (rc == 0)
            ++*got;
    }
    frame_consume(&c->in, (size_t)len);
    if (rc == 0)
        return true;
    cparsl_exec_t *e = v[*got];
    child_kill(c);
    exec_reset(e, batch_start(v, *got, t_sent));
    e->t_end = cparsl_now_ns();
    cparsl_exec_fail(e, CPARSL_EWORKER,
                     "worker process %ld sent a malformed result for app '%s' "
                     "and was killed: %s",
                     (long)c->pid, exec_app_name(e), derr.text);
    ++*got;
    return false;
}

int htex_child_run_batch(htex_child_t *c, cparsl_exec_t *const *v, size_t n,
                         size_t *done)
{
    *done = 0;
    for (size_t i = 0; i < n; i++)
        if (!batchable(v[i]))
            return -EINVAL;
    if (n == 0)
        return 0;
    int64_t t0 = cparsl_now_ns();
    if (!htex_child_alive(c)) {
        exec_reset(v[0], t0);
        v[0]->t_end = t0;
        *done = 1;
        cparsl_exec_fail(v[0], CPARSL_EWORKER,
                         "worker process %ld is not running (spawn a new "
                         "one)",
                         (long)htex_child_pid(c));
        return 0;
    }

    /* Encode as many as fit in CHILD_BATCH_BYTES (at least one).  A try
     * the wire cannot carry ends the batch before it; alone, it fails. */
    size_t m = 0;
    htex_msg_begin(&c->out, HTEX_MSG_TASKS, 0);
    while (m < n && (m == 0 || c->out.len < CHILD_BATCH_BYTES) &&
           htex_msg_add_task(&c->out, m, v[m]) == 0)
        m++;
    int why = c->out.error;
    if (why < 0 && m > 0) {
        htex_msg_begin(&c->out, HTEX_MSG_TASKS, 0);
        for (size_t i = 0; i < m; i++)
            htex_msg_add_task(&c->out, i, v[i]);
    }
    long len = m ? htex_msg_end(&c->out) : why;
    if (len < 0) {
        exec_reset(v[0], t0);
        v[0]->t_end = cparsl_now_ns();
        *done = 1;
        cparsl_exec_fail(v[0], (int)len,
                         "cannot encode the task for app '%s': %s",
                         exec_app_name(v[0]), cparsl_strerror((int)len));
        return 0;
    }
    size_t got = 0;
    int rc = frame_send(c->fd, c->out.p, (size_t)len);
    while (rc == 0 && got < m) {
        long fl = frame_ready(&c->in);
        if (fl > 0) {
            if (!child_take_results(c, v, m, &got, fl, t0))
                break;
            continue;
        }
        if (fl != -EAGAIN) {
            cparsl_exec_t *e = v[got];
            child_kill(c);
            exec_reset(e, batch_start(v, got++, t0));
            e->t_end = cparsl_now_ns();
            cparsl_exec_fail(e, CPARSL_EWORKER,
                             "worker process %ld sent a malformed frame for "
                             "app '%s' and was killed: %s",
                             (long)c->pid, exec_app_name(e),
                             cparsl_strerror(fl));
            break;
        }
        int w = child_wait(c, 0);
        ssize_t r = w < 0 ? w : frame_recv(c->fd, &c->in, MSG_DONTWAIT);
        if (r > 0 || (r == -EAGAIN && w == 1))
            continue;
        rc = -1; /* the child is gone: v[got] was running */
    }
    if (rc != 0) {
        cparsl_exec_t *e = v[got];
        char what[128];
        snprintf(what, sizeof what, "running app '%s'", exec_app_name(e));
        exec_reset(e, batch_start(v, got, t0));
        child_died(c, cparsl_exec_err(e), what);
        e->t_end = cparsl_now_ns();
        child_fill_status(c, e);
        got++;
    }
    *done = got;
    return 0;
}

void htex_child_destroy(htex_child_t *c)
{
    if (!c)
        return;
    c->alive = false;
    cparsl__close_fd(&c->fd); /* an idle child reads EOF and leaves */
    child_collect(c, CHILD_DESTROY_GRACE_NS);
    cparsl__close_fd(&c->pidfd);
    frame_free(&c->in);
    htex_buf_free(&c->out);
    free(c);
}
