/*
 * log.c - the run log (see log.h).  A mutex keeps lines whole; logging is
 * never on the per-task path at the default level.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <cparsl/plugin.h>

#include "log.h"

int cparsl__log_level = CPARSL_LOG_WARN;

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static FILE *log_fp;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int cparsl_log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcasecmp(s, level_names[i]) == 0)
            return i;
    if (strcasecmp(s, "warning") == 0)
        return CPARSL_LOG_WARN;
    return -1;
}

int cparsl_log_open(const char *path, int level)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    FILE *fp = fdopen(fd, "a");
    if (!fp) {
        int e = errno;
        close(fd);
        return -e;
    }
    setvbuf(fp, NULL, _IOLBF, 0);
    pthread_mutex_lock(&log_mu);
    if (log_fp)
        fclose(log_fp);
    log_fp = fp;
    cparsl__log_level = level;
    pthread_mutex_unlock(&log_mu);
    return 0;
}

void cparsl_log_close(void)
{
    pthread_mutex_lock(&log_mu);
    if (log_fp)
        fclose(log_fp);
    log_fp = NULL;
    cparsl__log_level = CPARSL_LOG_WARN;
    pthread_mutex_unlock(&log_mu);
}

void cparsl__log(int level, const char *subsys, const char *fmt, ...)
{
    int saved = errno;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    localtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);

    pthread_mutex_lock(&log_mu);
    FILE *fp = log_fp ? log_fp : stderr;
    if (log_fp || level <= CPARSL_LOG_WARN)
        fprintf(fp, "%s.%03ld %s %s: %s\n", when, ts.tv_nsec / 1000000,
                level_names[level < 0   ? 0
                            : level > 3 ? 3
                                        : level],
                subsys, msg);
    pthread_mutex_unlock(&log_mu);
    errno = saved;
}

int cparsl__log_sparse_ok(_Atomic int64_t *last)
{
    int64_t now = cparsl_mono_ns();
    int64_t prev = atomic_load_explicit(last, memory_order_relaxed);
    if (prev != 0 && now - prev < 1000000000)
        return 0;
    return atomic_compare_exchange_strong(last, &prev, now);
}
