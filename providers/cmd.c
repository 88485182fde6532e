/*
 * cmd.c - scheduler commands and walltimes (see cmd.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"

extern char **environ;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct sink {
    char *p;
    size_t len, cap;
};

static bool sink_add(struct sink *s, const char *p, size_t n)
{
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + n + 1)
            cap *= 2;
        char *np = realloc(s->p, cap);
        if (!np)
            return false;
        s->p = np;
        s->cap = cap;
    }
    memcpy(s->p + s->len, p, n);
    s->len += n;
    s->p[s->len] = '\0';
    return true;
}

void cparsl_cmd_result_free(cparsl_cmd_result_t *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof *r);
}

int cparsl_cmd_run(const char *const *argv, const char *input, double timeout,
                   cparsl_cmd_result_t *r, cparsl_error_t *err)
{
    memset(r, 0, sizeof *r);
    r->status = -1;
    if (!argv || !argv[0] || !*argv[0])
        return cparsl_error_set(err, -EINVAL, "no command to run");
    int in[2] = {-1, -1}, out[2] = {-1, -1}, er[2] = {-1, -1};
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 ||
        pipe2(er, O_CLOEXEC) < 0) {
        int e = errno;
        for (int i = 0; i < 2; i++) {
            if (in[i] >= 0)
                close(in[i]);
            if (out[i] >= 0)
                close(out[i]);
            if (er[i] >= 0)
                close(er[i]);
        }
        return cparsl_error_set(err, -e, "%s: no pipe: %s", argv[0],
                                strerror(e));
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, er[1], 2);
    posix_spawnattr_init(&at);
    /* Its own group, to be killed whole at the timeout; default signal
     * handling whatever ours is. */
    sigset_t all;
    sigfillset(&all);
    posix_spawnattr_setsigdefault(&at, &all);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP |
                                      POSIX_SPAWN_SETSIGDEF |
                                      POSIX_SPAWN_SETSIGMASK);
    pid_t pid;
    int rc =
        posix_spawnp(&pid, argv[0], &fa, &at, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(in[0]);
    close(out[1]);
    close(er[1]);
    if (rc != 0) {
        close(in[1]);
        close(out[0]);
        close(er[0]);
        return cparsl_error_set(err, rc == ENOENT ? -ENOENT : -rc,
                                "cannot run '%s': %s", argv[0], strerror(rc));
    }
    /* Feed the input, read both outputs, until both close or time is up. */
    struct sink so = {0}, se = {0};
    size_t in_len = input ? strlen(input) : 0, in_done = 0;
    if (!in_len) {
        close(in[1]);
        in[1] = -1;
    } else {
        fcntl(in[1], F_SETFL, O_NONBLOCK);
    }
    double deadline = now_s() + timeout;
    bool timed_out = false, oom = false;
    int open_fds = 2;
    while (open_fds > 0) {
        struct pollfd p[3] = {
            {.fd = out[0], .events = POLLIN},
            {.fd = er[0], .events = POLLIN},
            {.fd = in[1], .events = POLLOUT},
        };
        double left = deadline - now_s();
        if (left <= 0) {
            timed_out = true;
            break;
        }
        int n = poll(p, in[1] >= 0 ? 3 : 2, (int)(left * 1000) + 1);
        if (n < 0 && errno != EINTR)
            break;
        for (int k = 0; k < 2; k++) {
            if (p[k].fd < 0 || !(p[k].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            char buf[65536];
            ssize_t got = read(p[k].fd, buf, sizeof buf);
            if (got > 0) {
                oom |= !sink_add(k ? &se : &so, buf, (size_t)got);
            } else if (got == 0 || errno != EINTR) {
                close(p[k].fd);
                if (k)
                    er[0] = -1;
                else
                    out[0] = -1;
                open_fds--;
            }
        }
        if (in[1] >= 0 && (p[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t put = write(in[1], input + in_done, in_len - in_done);
            if (put > 0)
                in_done += (size_t)put;
            if (put < 0 || in_done == in_len) {
                close(in[1]);
                in[1] = -1;
            }
        }
    }
    if (timed_out)
        kill(-pid, SIGKILL);
    if (in[1] >= 0)
        close(in[1]);
    if (out[0] >= 0)
        close(out[0]);
    if (er[0] >= 0)
        close(er[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    r->signal = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
    r->status = WIFEXITED(st)     ? WEXITSTATUS(st)
                : WIFSIGNALED(st) ? 128 + WTERMSIG(st)
                                  : -1;
    r->out = so.p ? so.p : strdup("");
    r->err = se.p ? se.p : strdup("");
    r->out_len = so.len;
    r->err_len = se.len;
    if (oom || !r->out || !r->err)
        return cparsl_error_set(err, -ENOMEM,
                                "%s: out of memory for its output", argv[0]);
    if (timed_out)
        return cparsl_error_set(err, -ETIMEDOUT,
                                "'%s' did not finish within %g s and was "
                                "killed",
                                argv[0], timeout);
    return 0;
}

int cparsl_cmd_check(const char *const *argv, const char *input, double timeout,
                     cparsl_cmd_result_t *r, cparsl_error_t *err)
{
    int rc = cparsl_cmd_run(argv, input, timeout, r, err);
    if (rc < 0)
        return rc;
    if (r->status == 0)
        return 0;
    const char *said = r->err_len ? r->err : r->out;
    /* One line for the log and the error: its lines joined by " | ". */
    char one[320];
    size_t k = 0;
    for (const char *p = said; *p && k < sizeof one - 4; p++) {
        if (*p == '\n' || *p == '\r') {
            while (p[1] == '\n' || p[1] == '\r')
                p++;
            if (p[1] && k)
                k += (size_t)snprintf(one + k, sizeof one - k, " | ");
        } else {
            one[k++] = *p;
        }
    }
    one[k < sizeof one ? k : sizeof one - 1] = '\0';
    return cparsl_error_set(err, CPARSL_EEXECUTOR, "'%s' failed (%s %d): %s",
                            argv[0], r->signal ? "signal" : "exit status",
                            r->signal ? r->signal : r->status, one);
}

/* An unsigned decimal field of the text at *p, at most 'max'; -1 if
 * none. */
static long field(const char **p, long max)
{
    const char *s = *p;
    long v = 0;
    int digits = 0;
    while (*s >= '0' && *s <= '9' && digits < 9) {
        v = v * 10 + (*s++ - '0');
        digits++;
    }
    if (!digits || v > max)
        return -1;
    *p = s;
    return v;
}

long cparsl_walltime_parse(const char *text)
{
    if (!text)
        return -1;
    const char *p = text;
    long days = 0, f[3] = {0, 0, 0};
    int n = 0;
    const char *dash = strchr(text, '-');
    if (dash) {
        if ((days = field(&p, 10000)) < 0 || *p != '-')
            return -1;
        p++;
    }
    for (;;) {
        long v = field(&p, n == 0 ? (dash ? 23 : 1000000) : 59);
        if (v < 0 || n == 3)
            return -1;
        f[n++] = v;
        if (*p == ':') {
            p++;
            continue;
        }
        break;
    }
    if (*p)
        return -1;
    long s;
    if (dash) /* D-HH, D-HH:MM, D-HH:MM:SS */
        s = f[0] * 3600 + f[1] * 60 + f[2];
    else if (n == 1) /* M: minutes, as Slurm's --time reads one number */
        s = f[0] * 60;
    else if (n == 2) /* MM:SS */
        s = f[0] * 60 + f[1];
    else /* HH:MM:SS */
        s = f[0] * 3600 + f[1] * 60 + f[2];
    if (!dash && n >= 2 && f[n - 1] > 59)
        return -1;
    return days * 86400 + s;
}

int cparsl_cmd_check_ids(const char *cmd, const char *const *ids, size_t n,
                         double timeout, cparsl_cmd_result_t *r,
                         cparsl_error_t *err)
{
    memset(r, 0, sizeof *r);
    const char **argv = calloc(n + 2, sizeof *argv);
    if (!argv)
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    argv[0] = cmd;
    for (size_t i = 0; i < n; i++)
        argv[i + 1] = ids[i];
    int rc = cparsl_cmd_check(argv, NULL, timeout, r, err);
    free(argv);
    return rc;
}
