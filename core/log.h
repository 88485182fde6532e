/*
 * log.h - the run log.
 *
 * One log file per run, under the run dir, written by the process that
 * runs the DFK.  The macros check the level before formatting anything,
 * keep errno, and take a subsystem name; CPARSL_LOG_SPARSE logs a given
 * call site at most once a second, for conditions that can repeat per
 * task.  Before a log file is opened messages at warning and above go to
 * stderr; cparsl_log_open moves them to the file.
 */
#ifndef CPARSL_CORE_LOG_H
#define CPARSL_CORE_LOG_H

#include <stdint.h>

enum cparsl_log_level {
    CPARSL_LOG_ERROR = 0,
    CPARSL_LOG_WARN,
    CPARSL_LOG_INFO,
    CPARSL_LOG_DEBUG,
};

extern int cparsl__log_level;

void cparsl__log(int level, const char *subsys, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Open 'path' for appending and make it the log; 0 or -errno. */
int cparsl_log_open(const char *path, int level);
void cparsl_log_close(void);
/* "error", "warn", "info", "debug" -> level; -1 if unknown. */
int cparsl_log_level_parse(const char *s);
/* True at most once a second per 'last' stamp. */
int cparsl__log_sparse_ok(_Atomic int64_t *last);

#define CPARSL_LOG(level, subsys, ...)                                         \
    do {                                                                       \
        if ((level) <= cparsl__log_level)                                      \
            cparsl__log((level), (subsys), __VA_ARGS__);                       \
    } while (0)

#define CPARSL_LOG_SPARSE(level, subsys, ...)                                  \
    do {                                                                       \
        static _Atomic int64_t cparsl__last_;                                  \
        if ((level) <= cparsl__log_level &&                                    \
            cparsl__log_sparse_ok(&cparsl__last_))                             \
            cparsl__log((level), (subsys), __VA_ARGS__);                       \
    } while (0)

#endif
