/*
 * call.c - building and submitting an app call.
 *
 * A call is the task object itself, taken from the free list by
 * cparsl_call_create and handed to the DFK by cparsl_call_submit, so
 * submitting a no-op with scalar arguments allocates nothing once the
 * free list is warm.  Positional arguments stay in front of keyword ones
 * and inputs in front of outputs, whatever order the setters came in,
 * because the app sees them as contiguous arrays.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int call_fail(cparsl_call_t *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int call_fail(cparsl_call_t *c, int code, const char *fmt, ...)
{
    cparsl__task_t *t = (cparsl__task_t *)c;
    code = code < 0 ? code : -code;
    if (t->call_err)
        return code; /* keep the first */
    char buf[CPARSL_ERROR_TEXT];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    t->call_err = code;
    t->call_errtext = strdup(buf);
    return code;
}

static const char *call_app_name(cparsl__task_t *t)
{
    return t->app ? t->app->name : "?";
}

cparsl_call_t *cparsl_call_create(const char *app)
{
    cparsl__task_t *t = cparsl__task_alloc();
    if (!t)
        return NULL;
    t->fut.kind = TK_APP;
    cparsl__dfk_t *d = cparsl__dfk;
    if (d)
        t->fut.id =
            atomic_fetch_add_explicit(&d->next_id, 1, memory_order_relaxed);
    t->app = app ? cparsl_app_find(app) : NULL;
    cparsl_call_t *c = (cparsl_call_t *)t;
    if (!t->app) {
        call_fail(c, CPARSL_ENOAPP, "no app registered as '%s'",
                  app ? app : "(null)");
        return c;
    }
    t->appkind = cparsl__appkind_find(t->app->kind);
    if (!t->appkind)
        call_fail(c, CPARSL_ENOAPP, "app '%s' has unknown kind '%s'",
                  t->app->name, t->app->kind ? t->app->kind : "(null)");
    return c;
}

/* Make room for one more argument slot at 'at', shifting later ones. */
static cparsl_argslot_t *arg_insert(cparsl__task_t *t, uint32_t at)
{
    if (t->nargs == t->argcap) {
        uint32_t cap = t->argcap * 2;
        cparsl_argslot_t *v = malloc(cap * sizeof *v);
        if (!v)
            return NULL;
        memcpy(v, t->argv, t->nargs * sizeof *v);
        if (t->argv != t->argv_inline)
            free(t->argv);
        t->argv = v;
        t->argcap = cap;
    }
    if (at < t->nargs) {
        memmove(&t->argv[at + 1], &t->argv[at],
                (t->nargs - at) * sizeof *t->argv);
        for (uint32_t i = 0; i < t->ndeps; i++)
            if (t->deps[i].where == DEP_ARG && t->deps[i].index >= at)
                t->deps[i].index++;
    }
    t->nargs++;
    cparsl_argslot_t *s = &t->argv[at];
    s->name = NULL;
    s->value = cparsl_nil();
    return s;
}

static cparsl_value_t *file_insert(cparsl__task_t *t, uint32_t at)
{
    if (t->nfiles == t->filecap) {
        uint32_t cap = t->filecap * 2;
        cparsl_value_t *v = malloc(cap * sizeof *v);
        if (!v)
            return NULL;
        memcpy(v, t->files, t->nfiles * sizeof *v);
        if (t->files != t->files_inline)
            free(t->files);
        t->files = v;
        t->filecap = cap;
    }
    if (at < t->nfiles) {
        memmove(&t->files[at + 1], &t->files[at],
                (t->nfiles - at) * sizeof *t->files);
        for (uint32_t i = 0; i < t->ndeps; i++)
            if (t->deps[i].where == DEP_FILE && t->deps[i].index >= at)
                t->deps[i].index++;
    }
    t->nfiles++;
    t->files[at] = cparsl_nil();
    return &t->files[at];
}

static int add_arg(cparsl_call_t *c, const char *name, cparsl_value_t v,
                   cparsl_future_t *f)
{
    cparsl__task_t *t = (cparsl__task_t *)c;
    if (!c)
        return -EINVAL;
    char *nm = NULL;
    if (name && !(nm = strdup(name)))
        return call_fail(c, -ENOMEM, "out of memory");
    uint32_t at = name ? t->nargs : t->npos;
    cparsl_argslot_t *s = arg_insert(t, at);
    if (!s) {
        free(nm);
        return call_fail(c, -ENOMEM, "out of memory");
    }
    s->name = nm;
    if (!name)
        t->npos++;
    if (f)
        return cparsl__task_add_dep(t, f, DEP_ARG, at) < 0
                   ? call_fail(c, -ENOMEM, "out of memory")
                   : 0;
    int rc = cparsl_value_copy(&s->value, &v);
    if (rc < 0)
        return call_fail(c, rc, "app '%s': cannot copy %s argument %u: %s",
                         call_app_name(t), name ? "keyword" : "positional",
                         name ? t->nargs - 1 : at, cparsl_strerror(rc));
    return 0;
}

int cparsl_call_arg(cparsl_call_t *c, cparsl_value_t v)
{
    return add_arg(c, NULL, v, NULL);
}

int cparsl_call_arg_future(cparsl_call_t *c, cparsl_future_t *f)
{
    if (!f)
        return call_fail(c, -EINVAL, "app '%s': argument %u is a NULL future",
                         call_app_name((cparsl__task_t *)c),
                         ((cparsl__task_t *)c)->npos);
    return add_arg(c, NULL, cparsl_nil(), f);
}

int cparsl_call_kwarg(cparsl_call_t *c, const char *name, cparsl_value_t v)
{
    if (!name || !*name)
        return call_fail(c, -EINVAL, "keyword argument with an empty name");
    return add_arg(c, name, v, NULL);
}

int cparsl_call_kwarg_future(cparsl_call_t *c, const char *name,
                             cparsl_future_t *f)
{
    if (!name || !*name)
        return call_fail(c, -EINVAL, "keyword argument with an empty name");
    if (!f)
        return call_fail(c, -EINVAL, "keyword argument '%s' is a NULL future",
                         name);
    return add_arg(c, name, cparsl_nil(), f);
}

int cparsl_call_input(cparsl_call_t *c, const char *path)
{
    cparsl__task_t *t = (cparsl__task_t *)c;
    if (!path || !*path)
        return call_fail(c, -EINVAL, "input %u: empty path", t->ninputs);
    cparsl_value_t *v = file_insert(t, t->ninputs);
    if (!v)
        return call_fail(c, -ENOMEM, "out of memory");
    t->ninputs++;
    cparsl_value_t f = cparsl_file(path);
    return cparsl_value_copy(v, &f) < 0 ? call_fail(c, -ENOMEM, "no memory")
                                        : 0;
}

int cparsl_call_input_future(cparsl_call_t *c, cparsl_future_t *f)
{
    cparsl__task_t *t = (cparsl__task_t *)c;
    if (!f)
        return call_fail(c, -EINVAL, "input %u is a NULL future", t->ninputs);
    uint32_t at = t->ninputs;
    if (!file_insert(t, at))
        return call_fail(c, -ENOMEM, "out of memory");
    t->ninputs++;
    return cparsl__task_add_dep(t, f, DEP_FILE, at) < 0
               ? call_fail(c, -ENOMEM, "out of memory")
               : 0;
}

int cparsl_call_output(cparsl_call_t *c, const char *path)
{
    cparsl__task_t *t = (cparsl__task_t *)c;
    if (!path || !*path)
        return call_fail(c, -EINVAL, "output %u: empty path",
                         t->nfiles - t->ninputs);
    cparsl_value_t *v = file_insert(t, t->nfiles);
    if (!v)
        return call_fail(c, -ENOMEM, "out of memory");
    cparsl_value_t f = cparsl_file(path);
    return cparsl_value_copy(v, &f) < 0 ? call_fail(c, -ENOMEM, "no memory")
                                        : 0;
}

/* *slot is the task's own copy (freed with the task). */
static int set_stream(cparsl_call_t *c, const char **slot, int *mode,
                      const char *path, int m, const char *which)
{
    if (m != CPARSL_APPEND && m != CPARSL_TRUNCATE)
        return call_fail(c, -EINVAL,
                         "%s mode %d: use CPARSL_APPEND or CPARSL_TRUNCATE",
                         which, m);
    free((char *)*slot);
    *slot = NULL;
    if (path && !(*slot = strdup(path)))
        return call_fail(c, -ENOMEM, "out of memory");
    *mode = m;
    return 0;
}

int cparsl_call_stdout(cparsl_call_t *c, const char *path, int mode)
{
    cparsl__task_t *t = (cparsl__task_t *)c;
    return set_stream(c, &t->exec.stdout_path, &t->exec.stdout_mode, path, mode,
                      "stdout");
}

int cparsl_call_stderr(cparsl_call_t *c, const char *path, int mode)
{
    cparsl__task_t *t = (cparsl__task_t *)c;
    return set_stream(c, &t->exec.stderr_path, &t->exec.stderr_mode, path, mode,
                      "stderr");
}

int cparsl_call_walltime(cparsl_call_t *c, double seconds)
{
    if (!(seconds >= 0) || seconds > 1e9)
        return call_fail(c, -EINVAL, "walltime %g s: must be >= 0", seconds);
    ((cparsl__task_t *)c)->call_walltime = seconds;
    return 0;
}

int cparsl_call_retries(cparsl_call_t *c, int retries)
{
    if (retries < 0)
        return call_fail(c, -EINVAL, "retries %d: must be >= 0", retries);
    ((cparsl__task_t *)c)->call_retries = retries;
    return 0;
}

int cparsl_call_executors(cparsl_call_t *c, const char *labels)
{
    cparsl__task_t *t = (cparsl__task_t *)c;
    free(t->executors);
    t->executors = NULL;
    if (labels && !(t->executors = strdup(labels)))
        return call_fail(c, -ENOMEM, "out of memory");
    return 0;
}

int cparsl_call_cache(cparsl_call_t *c, bool on)
{
    ((cparsl__task_t *)c)->cache = on;
    return 0;
}

cparsl_future_t *cparsl_call_submit(cparsl_call_t *c)
{
    if (!c)
        return cparsl__future_failed(-ENOMEM, "out of memory");
    cparsl__task_t *t = (cparsl__task_t *)c;
    cparsl__dfk_t *d = cparsl__dfk;
    if (!d) {
        /* Nobody else has seen this task: complete it right here. */
        t->fut.kind = TK_DONE;
        t->state = CPARSL_FAILED;
        cparsl__future_set_error(&t->fut, CPARSL_ESHUTDOWN,
                                 "cparsl is not initialized (call "
                                 "cparsl_init first)");
        (void)cparsl__future_publish(&t->fut);
        return &t->fut;
    }
    cparsl__task_ref(t); /* the DFK's reference */
    cparsl__dfk_post(d, t, EV_SUBMIT);
    return &t->fut;
}

void cparsl_call_cancel(cparsl_call_t *c)
{
    if (c)
        cparsl__task_unref((cparsl__task_t *)c);
}

cparsl_future_t *cparsl_submitv(const char *app, size_t n,
                                const cparsl_arg_t *args)
{
    cparsl_call_t *c = cparsl_call_create(app);
    for (size_t i = 0; c && i < n; i++) {
        if (args[i].future)
            cparsl_call_arg_future(c, args[i].future);
        else
            cparsl_call_arg(c, args[i].value);
    }
    return cparsl_call_submit(c);
}
