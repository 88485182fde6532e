/*
 * error.c - the error convention of cparsl/error.h: filling a
 * cparsl_error_t, and the static name and description of every code.
 *
 * Codes come in either sign (callers hold -ENOMEM, logs print ENOMEM), so
 * every lookup folds the sign first.  Descriptions must be static strings
 * that are safe from any thread: strerror() may reuse a buffer, so errno
 * values go through glibc's strerrordesc_np()/strerrorname_np(), which
 * return pointers into constant tables.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strerrordesc_np, strerrorname_np (glibc 2.32+) */
#endif

#include <cparsl/error.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

struct code_info {
    const char *name;
    const char *desc;
};

#define CODE(c, d) [c - CPARSL_EBASE - 1] = {#c, d}

static const struct code_info cparsl_codes[] = {
    CODE(CPARSL_ECONFIG, "Invalid configuration"),
    CODE(CPARSL_EAPP, "App failed"),
    CODE(CPARSL_EDEPFAIL, "Dependency failed"),
    CODE(CPARSL_EWALLTIME, "Walltime exceeded"),
    CODE(CPARSL_ENOAPP, "No such app"),
    CODE(CPARSL_EARGS, "Arguments do not match the app"),
    CODE(CPARSL_ETEMPLATE, "Invalid command template"),
    CODE(CPARSL_EEXIT, "Command exited with non-zero status"),
    CODE(CPARSL_ENOTFOUND, "Command not found"),
    CODE(CPARSL_ENOEXEC, "Command not executable"),
    CODE(CPARSL_EOUTPUT, "Output file missing"),
    CODE(CPARSL_ESIGNAL, "Killed by a signal"),
    CODE(CPARSL_EDECODE, "Malformed encoded data"),
    CODE(CPARSL_ETYPE, "Wrong value type"),
    CODE(CPARSL_EEXECUTOR, "Executor failed"),
    CODE(CPARSL_ELAUNCH, "Unusable launch environment"),
    CODE(CPARSL_ESHUTDOWN, "Shutting down or not initialized"),
    CODE(CPARSL_EJOIN, "Joined future failed"),
    CODE(CPARSL_EWORKER, "Worker died"),
    CODE(CPARSL_ETRANSPORT, "Transport failure"),
    CODE(CPARSL_ENOSYS, "Not supported by this backend"),
    CODE(CPARSL_EPENDING, "Future not done yet"),
};

#undef CODE

/* A new code in error.h without a row here would print as unknown. */
_Static_assert(sizeof cparsl_codes / sizeof cparsl_codes[0] ==
                   CPARSL_ELAST - CPARSL_EBASE - 1,
               "every CPARSL_E* code needs a row in cparsl_codes");

/* The code as a positive number, or -1 for one with no positive form. */
static int fold(int code)
{
    if (code == INT_MIN)
        return -1;
    return code < 0 ? -code : code;
}

static const struct code_info *own_code(int c)
{
    if (c > CPARSL_EBASE && c < CPARSL_ELAST)
        return &cparsl_codes[c - CPARSL_EBASE - 1];
    return NULL;
}

int cparsl_error_vset(cparsl_error_t *err, int code, const char *fmt,
                      va_list ap)
{
    int saved = errno;

    if (code > 0)
        code = -code;
    if (err) {
        err->code = code;
        if (fmt)
            vsnprintf(err->text, sizeof err->text, fmt, ap);
        else
            snprintf(err->text, sizeof err->text, "%s", cparsl_strerror(code));
    }
    errno = saved;
    return code;
}

int cparsl_error_set(cparsl_error_t *err, int code, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = cparsl_error_vset(err, code, fmt, ap);
    va_end(ap);
    return rc;
}

/* Append s to the NUL-terminated dst[0..cap), cutting what does not fit. */
static size_t append(char *dst, size_t cap, size_t pos, const char *s)
{
    size_t n = strlen(s);

    if (n > cap - 1 - pos)
        n = cap - 1 - pos;
    memcpy(dst + pos, s, n);
    dst[pos + n] = '\0';
    return pos + n;
}

void cparsl_error_prefix(cparsl_error_t *err, const char *fmt, ...)
{
    char out[CPARSL_ERROR_TEXT];
    int saved = errno;
    va_list ap;
    size_t n;

    if (!err || !fmt)
        return;
    va_start(ap, fmt);
    vsnprintf(out, sizeof out, fmt, ap);
    va_end(ap);
    /* An empty message gets no dangling ": ". */
    n = strlen(out);
    if (err->text[0] != '\0') {
        n = append(out, sizeof out, n, ": ");
        append(out, sizeof out, n, err->text);
    }
    memcpy(err->text, out, strlen(out) + 1);
    errno = saved;
}

void cparsl_error_clear(cparsl_error_t *err)
{
    if (!err)
        return;
    err->code = 0;
    err->text[0] = '\0';
}

const char *cparsl_strerror(int code)
{
    int c = fold(code);
    const struct code_info *ci;
    const char *s;

    if (c == 0)
        return "Success";
    ci = own_code(c);
    if (ci)
        return ci->desc;
    if (c > 0 && c < CPARSL_EBASE) {
        s = strerrordesc_np(c);
        if (s)
            return s;
    }
    return "Unknown error";
}

const char *cparsl_errname(int code)
{
    int c = fold(code);
    const struct code_info *ci;
    const char *s;

    if (c == 0)
        return "OK";
    ci = own_code(c);
    if (ci)
        return ci->name;
    if (c > 0 && c < CPARSL_EBASE) {
        s = strerrorname_np(c);
        if (s)
            return s;
    }
    return "UNKNOWN";
}

const char *cparsl_strsignal(int sig)
{
#if defined(__GLIBC__) && __GLIBC_PREREQ(2, 32)
    const char *s = sigdescr_np(sig);
    return s ? s : "unknown signal";
#else
    return strsignal(sig);
#endif
}
