/*
 * cparsl/error.h - the one error convention of cparsl.
 *
 * Every call that can fail returns an int: 0 (or a documented non-negative
 * value) on success, a negative code on failure.  Where an errno fits, the
 * code is -errno (-ENOMEM, -EINVAL, -ETIMEDOUT, ...); otherwise it is one of
 * the -CPARSL_E* codes below.  Human-readable text goes into an optional
 * cparsl_error_t; library code never prints.
 */
#ifndef CPARSL_ERROR_H
#define CPARSL_ERROR_H

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

/* cparsl's own codes start above every errno value. */
enum cparsl_errcode {
    CPARSL_EBASE = 4096,
    CPARSL_ECONFIG,    /* configuration key missing, malformed or invalid */
    CPARSL_EAPP,       /* the app itself reported a failure */
    CPARSL_EDEPFAIL,   /* a task this one depends on failed */
    CPARSL_EWALLTIME,  /* the task ran past its walltime */
    CPARSL_ENOAPP,     /* no app registered under that name */
    CPARSL_EARGS,      /* arguments do not match the app's signature */
    CPARSL_ETEMPLATE,  /* bash template invalid or a placeholder unbound */
    CPARSL_EEXIT,      /* command exited with a non-zero status */
    CPARSL_ENOTFOUND,  /* command not found (exit 127) */
    CPARSL_ENOEXEC,    /* command found but not executable (exit 126) */
    CPARSL_EOUTPUT,    /* a declared output file is missing after exit 0 */
    CPARSL_ESIGNAL,    /* command or worker killed by a signal */
    CPARSL_EDECODE,    /* malformed or truncated encoded data */
    CPARSL_ETYPE,      /* value has another type than asked for */
    CPARSL_EEXECUTOR,  /* no usable executor, or executor failed */
    CPARSL_ELAUNCH,    /* launch environment unusable for this config */
    CPARSL_ESHUTDOWN,  /* the DFK is shutting down or not initialized */
    CPARSL_EJOIN,      /* a join app's inner future failed or was bad */
    CPARSL_EWORKER,    /* the worker running the task died */
    CPARSL_ETRANSPORT, /* transport-level failure */
    CPARSL_ENOSYS,     /* operation not supported by this backend */
    CPARSL_EPENDING,   /* the future is not done yet */
    CPARSL_ELAST
};

/* Room for one message; long enough for a config path and a stderr tail. */
#define CPARSL_ERROR_TEXT 512

typedef struct cparsl_error {
    int code;                     /* negative code, 0 when no error */
    char text[CPARSL_ERROR_TEXT]; /* NUL-terminated, "" when no error */
} cparsl_error_t;

/*
 * Fill 'err' (when not NULL) with 'code' and a printf-style message and
 * return the code, negated if it was given positive, so callers can write
 * `return cparsl_error_set(err, CPARSL_EAPP, "x=%d", x);`.
 * errno is preserved.
 */
int cparsl_error_set(cparsl_error_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int cparsl_error_vset(cparsl_error_t *err, int code, const char *fmt,
                      va_list ap);

/* Prefix err->text with "prefix: " (printf-style); keeps the code. */
void cparsl_error_prefix(cparsl_error_t *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Reset to "no error". */
void cparsl_error_clear(cparsl_error_t *err);

/*
 * Static description of a code (positive or negative; errno values go
 * through strerror).  Never NULL.
 */
const char *cparsl_strerror(int code);

/* A constant description of a signal ("Segmentation fault"); never NULL
 * and, unlike strsignal(), thread-safe. */
const char *cparsl_strsignal(int sig);

/* The name of a code, "CPARSL_EAPP" or "ETIMEDOUT"; never NULL. */
const char *cparsl_errname(int code);

#ifdef __cplusplus
}
#endif
#endif /* CPARSL_ERROR_H */
