/*
 * bash.c - the bash app kind: render the command template and run it as
 * `/bin/bash -c CMD`, as Parsl's @bash_app does, then turn the way it
 * ended into a result or one of the CPARSL_E* codes.
 *
 * run() is called from many executor threads at once in a multi-threaded
 * process, which shapes everything here:
 *   - the child is started with posix_spawn, so nothing that is not
 *     async-signal-safe runs between fork and exec;
 *   - every descriptor is opened O_CLOEXEC, so one thread's child never
 *     inherits another thread's pipe (and never keeps it open);
 *   - we wait for our own pid only, on a pidfd (no SIGCHLD handler, no
 *     waitpid(-1)), and never reap before the last signal to the process
 *     group has been sent, so the group id cannot have been reused;
 *   - all state is on the caller's stack.
 * The child gets its own process group, an empty signal mask and default
 * dispositions, so a walltime kill reaches everything it started and a
 * signal the host program ignores (SIGPIPE, often) is not inherited.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bash.h"
#include "fdutil.h"

extern char **environ;

/* Bytes of stderr kept for error messages. */
#define BASH_TAIL 2048
/* Time a process group gets between SIGTERM and SIGKILL. */
#define BASH_GRACE_NS 1000000000LL
/* Polling steps when the kernel has no pidfd_open (before Linux 5.3). */
#define BASH_BACKOFF_MIN_NS 50000LL
#define BASH_BACKOFF_MAX_NS 10000000LL
/* Walltimes beyond this (about 30 years) are taken as "none". */
#define BASH_WALLTIME_MAX 1e9

/* The child and the descriptors that go with it. */
struct bash_proc {
    pid_t pid;
    int pidfd;       /* -1: fall back to waitid polling */
    int out_fd;      /* the child's stdout, closed once it is spawned */
    int err_fd;      /* the child's stderr (file or pipe write end) */
    int pipe_rd;     /* our end of the stderr pipe, -1 when none or at EOF */
    off_t err_start; /* stderr file size before the run */
    /* The last BASH_TAIL bytes read from the pipe; up to twice that is
     * held between trims so reads stay large. */
    char tail[2 * BASH_TAIL];
    size_t tail_len;
};

static const char *app_name(const cparsl_exec_t *e)
{
    const cparsl_app_t *app = e->args.app;
    return app && app->name ? app->name : "?";
}

static int open_stream(const char *path, int mode)
{
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | O_NOCTTY;
    flags |= mode == CPARSL_TRUNCATE ? O_TRUNC : O_APPEND;
    return cparsl__above_stdio(open(path, flags, 0644));
}

static int open_streams(cparsl_exec_t *e, struct bash_proc *p)
{
    const char *name = app_name(e);

    if (e->stdout_path != NULL)
        p->out_fd = open_stream(e->stdout_path, e->stdout_mode);
    else
        p->out_fd =
            cparsl__above_stdio(open("/dev/null", O_WRONLY | O_CLOEXEC));
    if (p->out_fd < 0)
        return cparsl_exec_fail(e, -errno,
                                "bash app '%s': cannot open stdout file "
                                "'%s': %s",
                                name,
                                e->stdout_path ? e->stdout_path : "/dev/null",
                                cparsl_strerror(errno));

    if (e->stderr_path != NULL) {
        /* One file for both streams must be one open file description,
         * or two offsets would overwrite each other in truncate mode. */
        if (e->stdout_path != NULL &&
            strcmp(e->stdout_path, e->stderr_path) == 0)
            p->err_fd =
                cparsl__above_stdio(fcntl(p->out_fd, F_DUPFD_CLOEXEC, 3));
        else
            p->err_fd = open_stream(e->stderr_path, e->stderr_mode);
        if (p->err_fd < 0)
            return cparsl_exec_fail(e, -errno,
                                    "bash app '%s': cannot open stderr file "
                                    "'%s': %s",
                                    name, e->stderr_path,
                                    cparsl_strerror(errno));
        struct stat st;
        p->err_start = fstat(p->err_fd, &st) == 0 ? st.st_size : 0;
        return 0;
    }

    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return cparsl_exec_fail(e, -errno,
                                "bash app '%s': cannot create the stderr "
                                "pipe: %s",
                                name, cparsl_strerror(errno));
    p->pipe_rd = cparsl__above_stdio(fds[0]);
    p->err_fd = cparsl__above_stdio(fds[1]);
    if (p->pipe_rd < 0 || p->err_fd < 0)
        return cparsl_exec_fail(e, -errno,
                                "bash app '%s': cannot create the stderr "
                                "pipe: %s",
                                name, cparsl_strerror(errno));
    /* Only our end: the child's writes must block, not fail. */
    int fl = fcntl(p->pipe_rd, F_GETFL);
    if (fl < 0 || fcntl(p->pipe_rd, F_SETFL, fl | O_NONBLOCK) < 0)
        return cparsl_exec_fail(e, -errno,
                                "bash app '%s': cannot set up the stderr "
                                "pipe: %s",
                                name, cparsl_strerror(errno));
    return 0;
}

static int spawn_child(cparsl_exec_t *e, struct bash_proc *p, char *cmd)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, all;
    char *argv[] = {"/bin/bash", "-c", cmd, NULL};
    int rc;

    rc = posix_spawn_file_actions_init(&fa);
    if (rc != 0)
        return cparsl_exec_fail(e, -rc, "bash app '%s': %s", app_name(e),
                                cparsl_strerror(rc));
    rc = posix_spawnattr_init(&attr);
    if (rc != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return cparsl_exec_fail(e, -rc, "bash app '%s': %s", app_name(e),
                                cparsl_strerror(rc));
    }

    sigemptyset(&none);
    sigfillset(&all);
    if (rc == 0)
        rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (rc == 0)
        rc = posix_spawn_file_actions_adddup2(&fa, p->out_fd, 1);
    if (rc == 0)
        rc = posix_spawn_file_actions_adddup2(&fa, p->err_fd, 2);
#if defined(__GLIBC__) && __GLIBC_PREREQ(2, 34)
    /* Descriptors the host opened without O_CLOEXEC stay with the host. */
    if (rc == 0)
        rc = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
#endif
    if (rc == 0)
        rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP |
                                                 POSIX_SPAWN_SETSIGMASK |
                                                 POSIX_SPAWN_SETSIGDEF);
    if (rc == 0)
        rc = posix_spawnattr_setpgroup(&attr, 0);
    if (rc == 0)
        rc = posix_spawnattr_setsigmask(&attr, &none);
    if (rc == 0)
        rc = posix_spawnattr_setsigdefault(&attr, &all);
    if (rc == 0)
        rc = posix_spawn(&p->pid, argv[0], &fa, &attr, argv, environ);

    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        p->pid = -1;
        return cparsl_exec_fail(e, -rc,
                                "bash app '%s': cannot spawn /bin/bash: %s",
                                app_name(e), cparsl_strerror(rc));
    }
    return 0;
}

/* Read what the pipe has now, keeping the last BASH_TAIL bytes. */
static void drain_pipe(struct bash_proc *p)
{
    while (p->pipe_rd >= 0) {
        ssize_t n = read(p->pipe_rd, p->tail + p->tail_len,
                         sizeof p->tail - p->tail_len);
        if (n > 0) {
            p->tail_len += (size_t)n;
            if (p->tail_len > BASH_TAIL) {
                memmove(p->tail, p->tail + p->tail_len - BASH_TAIL, BASH_TAIL);
                p->tail_len = BASH_TAIL;
            }
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        cparsl__close_fd(&p->pipe_rd); /* EOF, or an error we cannot fix */
    }
}

/*
 * Wait until the child has exited, without reaping it, or until the
 * CLOCK_MONOTONIC 'deadline' (0: none).  Drains the stderr pipe all the
 * while so the child never blocks on it.  Returns 1 when it exited, 0 at
 * the deadline, or -errno.
 */
static int wait_exit(struct bash_proc *p, int64_t deadline)
{
    int64_t backoff = BASH_BACKOFF_MIN_NS;

    for (;;) {
        struct pollfd fds[2];
        nfds_t n = 0;
        int64_t wait_ns = -1;

        if (deadline > 0) {
            wait_ns = deadline - cparsl_mono_ns();
            if (wait_ns <= 0)
                return 0;
        }
        if (p->pidfd >= 0) {
            fds[n++] = (struct pollfd){.fd = p->pidfd, .events = POLLIN};
        } else {
            siginfo_t si;
            memset(&si, 0, sizeof si);
            if (waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOHANG | WNOWAIT) <
                0) {
                if (errno == EINTR)
                    continue;
                return -errno;
            }
            if (si.si_pid == p->pid)
                return 1;
            if (wait_ns < 0 || wait_ns > backoff)
                wait_ns = backoff;
            backoff = backoff * 2 > BASH_BACKOFF_MAX_NS ? BASH_BACKOFF_MAX_NS
                                                        : backoff * 2;
        }
        if (p->pipe_rd >= 0)
            fds[n++] = (struct pollfd){.fd = p->pipe_rd, .events = POLLIN};

        struct timespec ts = {.tv_sec = (time_t)(wait_ns / 1000000000LL),
                              .tv_nsec = (long)(wait_ns % 1000000000LL)};
        int r = ppoll(fds, n, wait_ns >= 0 ? &ts : NULL, NULL);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (p->pipe_rd >= 0)
            drain_pipe(p);
        if (p->pidfd >= 0 && fds[0].revents != 0)
            return 1;
    }
}

static int reap(struct bash_proc *p, int *status, struct rusage *ru)
{
    for (;;) {
        pid_t r = wait4(p->pid, status, 0, ru);
        if (r == p->pid)
            return 0;
        if (r < 0 && errno != EINTR)
            return -errno;
    }
}

/*
 * Put the last stderr bytes of this run into buf (NUL-terminated), from
 * the pipe or from the end of the stderr file.  Trailing newlines go, and
 * NUL bytes become '?' so the text stays one C string.
 */
static size_t stderr_tail(const cparsl_exec_t *e, struct bash_proc *p,
                          char *buf, size_t cap)
{
    size_t n = 0;

    if (e->stderr_path != NULL) {
        int fd = open(e->stderr_path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size > p->err_start) {
            off_t from = st.st_size - (off_t)(cap - 1);
            if (from < p->err_start)
                from = p->err_start;
            ssize_t r = pread(fd, buf, (size_t)(st.st_size - from), from);
            n = r > 0 ? (size_t)r : 0;
        }
        if (fd >= 0)
            close(fd);
    } else {
        n = p->tail_len < cap - 1 ? p->tail_len : cap - 1;
        memcpy(buf, p->tail + p->tail_len - n, n);
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' ||
                     buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        n--;
    for (size_t i = 0; i < n; i++)
        if (buf[i] == '\0')
            buf[i] = '?';
    buf[n] = '\0';
    return n;
}

/*
 * Fail with a message and then as much of the stderr tail as fits.  The
 * end of stderr is what explains a failure, so a tail that does not fit
 * loses its beginning, never its end.
 */
static int fail_tail(cparsl_exec_t *e, int code, const char *tail,
                     size_t tail_len, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int fail_tail(cparsl_exec_t *e, int code, const char *tail,
                     size_t tail_len, const char *fmt, ...)
{
    va_list ap;
    cparsl_error_t *err = cparsl_exec_err(e);
    va_start(ap, fmt);
    cparsl_error_vset(err, code, fmt, ap);
    va_end(ap);
    if (tail_len == 0)
        return err->code;

    char *text = err->text;
    size_t len = strlen(text);
    if (len + 8 >= sizeof err->text)
        return err->code;
    size_t room = sizeof err->text - len - 3; /* ": " and the NUL */
    memcpy(text + len, ": ", 2);
    len += 2;
    if (tail_len > room) {
        const char *s = tail + tail_len - (room - 3);
        /* Do not start in the middle of a UTF-8 sequence. */
        while (s < tail + tail_len && ((unsigned char)*s & 0xC0) == 0x80)
            s++;
        memcpy(text + len, "...", 3);
        len += 3;
        tail_len = (size_t)(tail + tail_len - s);
        tail = s;
    }
    memcpy(text + len, tail, tail_len);
    text[len + tail_len] = '\0';
    return err->code;
}

/* After exit 0, Parsl's rule: every declared output must exist. */
static int check_outputs(cparsl_exec_t *e)
{
    for (size_t i = 0; i < e->args.noutputs; i++) {
        const cparsl_value_t *v = &e->args.outputs[i];
        const char *path = cparsl_value_path(v);
        if (path == NULL && v->type == CPARSL_T_STRING)
            path = v->u.str.p;
        if (path == NULL)
            continue;
        struct stat st;
        if (stat(path, &st) != 0)
            return cparsl_exec_fail(e, CPARSL_EOUTPUT,
                                    "bash app '%s' exited 0 but did not "
                                    "create its output '%s'",
                                    app_name(e), path);
    }
    return 0;
}

/* Turn the wait status into e's result or error. */
static int classify(cparsl_exec_t *e, struct bash_proc *p, int status)
{
    const char *name = app_name(e);
    char tail[BASH_TAIL + 1];
    size_t tn;

    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        tn = stderr_tail(e, p, tail, sizeof tail);
        return fail_tail(e, CPARSL_ESIGNAL, tail, tn,
                         "bash app '%s' killed by signal %d (%s)", name, sig,
                         cparsl_strsignal(sig));
    }
    int code = WEXITSTATUS(status);
    if (code == 0) {
        if (check_outputs(e) < 0)
            return cparsl_exec_code(e);
        e->result = cparsl_int(0);
        cparsl_exec_clear_error(e);
        return 0;
    }
    tn = stderr_tail(e, p, tail, sizeof tail);
    if (code == 127)
        return fail_tail(e, CPARSL_ENOTFOUND, tail, tn,
                         "bash app '%s': command not found (exit 127)", name);
    if (code == 126)
        return fail_tail(e, CPARSL_ENOEXEC, tail, tn,
                         "bash app '%s': command found but not executable "
                         "(exit 126)",
                         name);
    return fail_tail(e, CPARSL_EEXIT, tail, tn,
                     "bash app '%s' exited with status %d", name, code);
}

/*
 * Wait for the child, enforcing the walltime.  At the deadline the whole
 * group gets SIGTERM, then SIGKILL once the leader exits or the grace
 * ends: the SIGKILL also takes what outlived the leader.  The leader is
 * reaped only after that, so its pid (the group id) is still ours when
 * the signals go out.
 */
static int wait_child(cparsl_exec_t *e, struct bash_proc *p, int *status,
                      struct rusage *ru, bool *timed_out)
{
    int64_t deadline = 0;
    int rc;

    if (e->walltime > 0 && e->walltime < BASH_WALLTIME_MAX)
        deadline = cparsl_mono_ns() + (int64_t)(e->walltime * 1e9);

    rc = wait_exit(p, deadline);
    if (rc == 0) {
        *timed_out = true;
        kill(-p->pid, SIGTERM);
        rc = wait_exit(p, cparsl_mono_ns() + BASH_GRACE_NS);
        kill(-p->pid, SIGKILL);
    }
    if (p->pipe_rd >= 0)
        drain_pipe(p);
    if (rc < 0 && rc != -ECHILD) {
        /* We cannot watch the child any more; do not leave it running. */
        kill(-p->pid, SIGKILL);
    }
    int rrc = reap(p, status, ru);
    if (rrc < 0)
        return cparsl_exec_fail(e, rrc,
                                "bash app '%s': cannot collect the exit "
                                "status of pid %ld: %s (is SIGCHLD "
                                "ignored, or does another thread reap "
                                "every child?)",
                                app_name(e), (long)p->pid,
                                cparsl_strerror(-rrc));
    return 0;
}

static int bash_run(cparsl_exec_t *e)
{
    struct bash_proc p;
    char *cmd = NULL;
    int status = 0;
    struct rusage ru;
    bool timed_out = false;

    memset(&p, 0, sizeof p);
    p.pid = -1;
    p.pidfd = p.out_fd = p.err_fd = p.pipe_rd = -1;
    memset(&ru, 0, sizeof ru);
    e->exit_code = -1;
    e->term_signal = 0;
    cparsl_exec_clear_error(e);

    if (e->args.app == NULL || e->args.app->command == NULL)
        return cparsl_exec_fail(e, -EINVAL, "bash app '%s' has no command",
                                app_name(e));
    cparsl_error_t rerr;
    if (cparsl__bash_render(e->args.app->command, &e->args, &cmd, &rerr) < 0) {
        cparsl_error_prefix(&rerr, "bash app '%s'", app_name(e));
        cparsl_exec_set_error(e, &rerr);
        return rerr.code;
    }
    if (open_streams(e, &p) < 0)
        goto out;

    e->t_start = cparsl_now_ns();
    if (spawn_child(e, &p, cmd) < 0)
        goto out;
    cparsl__close_fd(&p.out_fd);
    cparsl__close_fd(
        &p.err_fd); /* the pipe reaches EOF when the child's goes */
    p.pidfd = cparsl__open_pidfd(p.pid);

    int rc = wait_child(e, &p, &status, &ru, &timed_out);
    e->t_end = cparsl_now_ns();
    if (rc < 0)
        goto out;

    e->cpu_s = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 +
               (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
    e->maxrss_kib = ru.ru_maxrss; /* Linux reports KiB */
    if (WIFEXITED(status))
        e->exit_code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        e->term_signal = WTERMSIG(status);

    if (timed_out)
        cparsl_exec_fail(e, CPARSL_EWALLTIME,
                         "bash app '%s' exceeded its walltime of %g s; "
                         "process group %ld killed",
                         app_name(e), e->walltime, (long)p.pid);
    else
        classify(e, &p, status);

out:
    cparsl__close_fd(&p.pidfd);
    cparsl__close_fd(&p.pipe_rd);
    cparsl__close_fd(&p.out_fd);
    cparsl__close_fd(&p.err_fd);
    free(cmd);
    return cparsl_exec_code(e);
}

static int bash_check(const cparsl_app_t *app, cparsl_error_t *err)
{
    const char *name = app && app->name ? app->name : "?";

    if (app == NULL || app->command == NULL)
        return cparsl_error_set(err, -EINVAL, "bash app '%s' has no command",
                                name);
    int rc = cparsl__bash_check_template(app->command, err);
    if (rc < 0 && err != NULL)
        cparsl_error_prefix(err, "bash app '%s'", name);
    return rc;
}

const struct cparsl_app_kind cparsl_appkind_bash = {
    .name = CPARSL_KIND_BASH,
    .flags = CPARSL_APPKIND_WALLTIME,
    .check = bash_check,
    .run = bash_run,
};
