/*
 * future.c - task objects, their free list and reference counts, and the
 * user-facing future calls: wait, typed results, then, all/any and
 * DataFutures.
 *
 * A future's state word is the futex its waiters sleep on, so waking costs
 * a syscall only when someone actually sleeps.  Destroying a task drops
 * its references on the futures it depended on; for a long chain that
 * would recurse once per link, so destruction is driven by a per-thread
 * work list instead.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* ---- free list ------------------------------------------------------------
 */

/* Keep at most this many idle task objects; beyond it, free() them. */
#define FREELIST_MAX 65536

static pthread_mutex_t free_mu = PTHREAD_MUTEX_INITIALIZER;
static cparsl__task_t *free_head;
static size_t free_count;

cparsl__task_t *cparsl__task_alloc(void)
{
    cparsl__task_t *t = NULL;
    pthread_mutex_lock(&free_mu);
    if (free_head) {
        t = free_head;
        free_head = t->qnext;
        free_count--;
    }
    pthread_mutex_unlock(&free_mu);
    if (!t) {
        t = malloc(sizeof *t);
        if (!t)
            return NULL;
    }
    memset(t, 0, sizeof *t);
    atomic_init(&t->fut.refs, 1);
    atomic_init(&t->fut.state, FUT_PENDING);
    atomic_init(&t->fut.thens, NULL);
    t->argv = t->argv_inline;
    t->argcap = TASK_INLINE_ARGS;
    t->files = t->files_inline;
    t->filecap = TASK_INLINE_FILES;
    t->deps = t->deps_inline;
    t->depcap = TASK_INLINE_DEPS;
    t->call_retries = -1;
    t->call_walltime = -1;
    t->cache = -1;
    t->any_index = -1;
    t->exec.exit_code = -1;
    t->exec.cpu_s = -1;
    t->exec.maxrss_kib = -1;
    t->exec.worker = t->exec.slot = t->exec.node = -1;
    return t;
}

static void task_release_memory(cparsl__task_t *t)
{
    pthread_mutex_lock(&free_mu);
    if (free_count < FREELIST_MAX) {
        t->qnext = free_head;
        free_head = t;
        free_count++;
        t = NULL;
    }
    pthread_mutex_unlock(&free_mu);
    free(t);
}

void cparsl__freelist_trim(void)
{
    pthread_mutex_lock(&free_mu);
    cparsl__task_t *t = free_head;
    free_head = NULL;
    free_count = 0;
    pthread_mutex_unlock(&free_mu);
    while (t) {
        cparsl__task_t *next = t->qnext;
        free(t);
        t = next;
    }
}

/* ---- destruction ------------------------------------------------------- */

/* Tasks whose last reference this thread dropped, still to be torn down. */
static _Thread_local cparsl__task_t *destroy_list;
static _Thread_local bool destroying;

static void task_teardown(cparsl__task_t *t)
{
    cparsl_value_clear(&t->fut.value);
    cparsl_value_clear(&t->exec.result);
    cparsl_exec_clear_error(&t->exec);
    free(t->fut.errtext);
    /* Values filled from a dependency borrow from it (owned == 0), so
     * clearing every slot frees exactly what the call copied. */
    for (uint32_t i = 0; i < t->nargs; i++) {
        if (i >= t->npos)
            free((char *)t->argv[i].name);
        cparsl_value_clear(&t->argv[i].value);
    }
    for (uint32_t i = 0; i < t->nfiles; i++)
        cparsl_value_clear(&t->files[i]);
    for (uint32_t i = 0; i < t->ndeps; i++)
        cparsl_future_decref(t->deps[i].on); /* NULL once released */
    for (size_t i = 0; i < t->exec.join.n; i++)
        cparsl_future_decref(t->exec.join.fs[i]);
    free(t->exec.join.fs);
    if (t->argv != t->argv_inline)
        free(t->argv);
    if (t->files != t->files_inline)
        free(t->files);
    if (t->deps != t->deps_inline)
        free(t->deps);
    free(t->executors);
    free((char *)t->exec.stdout_path); /* the call's own copies */
    free((char *)t->exec.stderr_path);
    free(t->call_errtext);
    task_release_memory(t);
}

void cparsl__task_ref(cparsl__task_t *t)
{
    atomic_fetch_add_explicit(&t->fut.refs, 1, memory_order_relaxed);
}

void cparsl__task_unref(cparsl__task_t *t)
{
    if (atomic_fetch_sub_explicit(&t->fut.refs, 1, memory_order_acq_rel) != 1)
        return;
    t->qnext = destroy_list;
    destroy_list = t;
    if (destroying)
        return;
    destroying = true;
    while (destroy_list) {
        cparsl__task_t *d = destroy_list;
        destroy_list = d->qnext;
        task_teardown(d);
    }
    destroying = false;
}

cparsl_future_t *cparsl_future_incref(cparsl_future_t *f)
{
    if (f)
        cparsl__task_ref(task_of(f));
    return f;
}

void cparsl_future_decref(cparsl_future_t *f)
{
    if (f)
        cparsl__task_unref(task_of(f));
}

/* ---- outcome and waking ----------------------------------------------- */

static long futex(_Atomic uint32_t *w, int op, uint32_t val,
                  const struct timespec *ts)
{
    return syscall(SYS_futex, (uint32_t *)w, op | FUTEX_PRIVATE_FLAG, val, ts,
                   NULL, 0);
}

cparsl__then_t *cparsl__future_publish(cparsl_future_t *f)
{
    uint32_t old =
        atomic_exchange_explicit(&f->state, FUT_DONE, memory_order_acq_rel);
    if (old == FUT_WAITERS)
        futex(&f->state, FUTEX_WAKE, INT_MAX, NULL);
    cparsl__then_t *stack =
        atomic_exchange_explicit(&f->thens, THEN_CLOSED, memory_order_acq_rel);
    return stack == THEN_CLOSED ? NULL : stack;
}

void cparsl__future_set_error(cparsl_future_t *f, int code, const char *text)
{
    f->errcode = code < 0 ? code : -code;
    free(f->errtext);
    f->errtext = strdup(text && *text ? text : cparsl_strerror(code));
    cparsl_value_clear(&f->value);
}

cparsl_future_t *cparsl__future_failed(int code, const char *fmt, ...)
{
    cparsl__task_t *t = cparsl__task_alloc();
    if (!t)
        return NULL;
    char buf[CPARSL_ERROR_TEXT];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    t->fut.kind = TK_DONE;
    t->state = CPARSL_FAILED;
    cparsl__future_set_error(&t->fut, code, buf);
    (void)cparsl__future_publish(&t->fut);
    return &t->fut;
}

bool cparsl_future_done(const cparsl_future_t *f)
{
    return f && atomic_load_explicit(&((cparsl_future_t *)f)->state,
                                     memory_order_acquire) == FUT_DONE;
}

/* A short spin before sleeping catches the common case of a result that
 * is a few microseconds away, without a futex round trip. */
#define WAIT_SPIN_NS 20000

int cparsl_future_wait(cparsl_future_t *f, double timeout)
{
    if (!f)
        return -EINVAL;
    if (cparsl_future_done(f))
        return 0;
    int64_t start = cparsl_mono_ns();
    int64_t deadline =
        timeout < 0 ? INT64_MAX : start + (int64_t)(timeout * 1e9);
    for (int i = 0;; i++) {
        if (cparsl_future_done(f))
            return 0;
        if ((i & 15) == 15) {
            int64_t now = cparsl_mono_ns();
            if (now - start > WAIT_SPIN_NS || now >= deadline)
                break;
            sched_yield();
        }
    }
    bool blocked = cparsl__clientpool_block_begin();
    int rc = 0;
    for (;;) {
        uint32_t s = atomic_load_explicit(&f->state, memory_order_acquire);
        if (s == FUT_DONE)
            break;
        if (s == FUT_PENDING &&
            !atomic_compare_exchange_weak(&f->state, &s, FUT_WAITERS))
            continue;
        struct timespec ts, *tsp = NULL;
        if (deadline != INT64_MAX) {
            int64_t left = deadline - cparsl_mono_ns();
            if (left <= 0) {
                rc = -ETIMEDOUT;
                break;
            }
            ts.tv_sec = left / 1000000000;
            ts.tv_nsec = left % 1000000000;
            tsp = &ts;
        }
        futex(&f->state, FUTEX_WAIT, FUT_WAITERS, tsp);
    }
    if (blocked)
        cparsl__clientpool_block_end();
    return rc;
}

int cparsl_future_error(cparsl_future_t *f)
{
    if (!f)
        return -EINVAL;
    cparsl_future_wait(f, -1);
    return f->errcode;
}

const char *cparsl_future_errstr(cparsl_future_t *f)
{
    if (!f)
        return "invalid future (NULL)";
    cparsl_future_wait(f, -1);
    return f->errtext ? f->errtext : "";
}

int cparsl_future_get(cparsl_future_t *f, const cparsl_value_t **out)
{
    if (!f)
        return -EINVAL;
    cparsl_future_wait(f, -1);
    if (f->errcode)
        return f->errcode;
    if (out)
        *out = &f->value;
    return 0;
}

int cparsl_future_get_int(cparsl_future_t *f, int64_t *out)
{
    const cparsl_value_t *v;
    int rc = cparsl_future_get(f, &v);
    if (rc)
        return rc;
    if (v->type != CPARSL_T_INT)
        return -CPARSL_ETYPE;
    *out = v->u.i;
    return 0;
}

int cparsl_future_get_double(cparsl_future_t *f, double *out)
{
    const cparsl_value_t *v;
    int rc = cparsl_future_get(f, &v);
    if (rc)
        return rc;
    if (v->type == CPARSL_T_DOUBLE)
        *out = v->u.d;
    else if (v->type == CPARSL_T_INT)
        *out = (double)v->u.i;
    else
        return -CPARSL_ETYPE;
    return 0;
}

int cparsl_future_get_bool(cparsl_future_t *f, bool *out)
{
    const cparsl_value_t *v;
    int rc = cparsl_future_get(f, &v);
    if (rc)
        return rc;
    if (v->type != CPARSL_T_BOOL)
        return -CPARSL_ETYPE;
    *out = v->u.b;
    return 0;
}

int cparsl_future_get_string(cparsl_future_t *f, const char **out)
{
    const cparsl_value_t *v;
    int rc = cparsl_future_get(f, &v);
    if (rc)
        return rc;
    if (v->type != CPARSL_T_STRING && v->type != CPARSL_T_FILE)
        return -CPARSL_ETYPE;
    *out = v->u.str.p;
    return 0;
}

uint64_t cparsl_future_id(const cparsl_future_t *f)
{
    return f ? f->id : 0;
}

/* ---- then ---------------------------------------------------------------- */

static void then_run(cparsl__work_t *w)
{
    cparsl__then_t *n = (cparsl__then_t *)w;
    n->fn(n->f, n->arg);
    cparsl_future_decref(n->f);
    free(n);
}

int cparsl_future_then(cparsl_future_t *f, cparsl_then_fn cb, void *arg)
{
    if (!f || !cb)
        return -EINVAL;
    if (!cparsl_initialized())
        return -CPARSL_ESHUTDOWN;
    cparsl__then_t *n = calloc(1, sizeof *n);
    if (!n)
        return -ENOMEM;
    n->work.fn = then_run;
    n->f = cparsl_future_incref(f);
    n->fn = cb;
    n->arg = arg;
    cparsl__then_t *head = atomic_load(&f->thens);
    for (;;) {
        if (head == THEN_CLOSED) {
            cparsl__clientpool_post(&n->work);
            return 0;
        }
        n->next = head;
        if (atomic_compare_exchange_weak(&f->thens, &head, n))
            return 0;
    }
}

void cparsl__thens_dispatch(cparsl__then_t *stack)
{
    /* The stack holds the newest first; callbacks run oldest first. */
    cparsl__work_t *list = NULL;
    while (stack) {
        cparsl__then_t *next = stack->next;
        stack->work.next = list;
        list = &stack->work;
        stack = next;
    }
    if (list)
        cparsl__clientpool_post_list(list);
}

/* ---- DataFutures and composites ------------------------------------------ */

int cparsl__task_add_dep(cparsl__task_t *t, cparsl_future_t *on, uint8_t where,
                         uint32_t index)
{
    if (t->ndeps == t->depcap) {
        uint32_t cap = t->depcap * 2;
        cparsl__dep_t *d = malloc(cap * sizeof *d);
        if (!d)
            return -ENOMEM;
        memcpy(d, t->deps, t->ndeps * sizeof *d);
        if (t->deps != t->deps_inline)
            free(t->deps);
        t->deps = d;
        t->depcap = cap;
    }
    cparsl__dep_t *d = &t->deps[t->ndeps++];
    memset(d, 0, sizeof *d);
    d->on = cparsl_future_incref(on);
    d->where = where;
    d->index = index;
    return 0;
}

cparsl_future_t *cparsl_future_output(cparsl_future_t *f, size_t i)
{
    if (!f || f->kind != TK_APP)
        return NULL;
    cparsl__task_t *p = task_of(f);
    if (i >= p->nfiles - p->ninputs)
        return NULL;
    cparsl__task_t *t = cparsl__task_alloc();
    if (!t)
        return NULL;
    t->fut.kind = TK_DATA;
    t->data_index = (uint32_t)i;
    if (cparsl__task_add_dep(t, f, DEP_SET, 0) < 0) {
        cparsl__task_unref(t);
        return NULL;
    }
    cparsl__task_ref(t); /* the reference returned to the caller */
    cparsl__dfk_post(cparsl__dfk, t, EV_SUBMIT);
    return &t->fut;
}

static cparsl_future_t *composite(cparsl_future_t *const *fs, size_t n,
                                  uint8_t kind)
{
    cparsl__task_t *t = cparsl__task_alloc();
    if (!t)
        return NULL;
    t->fut.kind = kind;
    for (size_t i = 0; i < n; i++) {
        if (!fs[i] ||
            cparsl__task_add_dep(t, fs[i], DEP_SET, (uint32_t)i) < 0) {
            cparsl__task_unref(t);
            return cparsl__future_failed(
                fs[i] ? -ENOMEM : -EINVAL, "future_%s: %s at index %zu",
                kind == TK_ALL ? "all" : "any",
                fs[i] ? "out of memory" : "NULL future", i);
        }
    }
    cparsl__task_ref(t);
    cparsl__dfk_post(cparsl__dfk, t, EV_SUBMIT);
    return &t->fut;
}

cparsl_future_t *cparsl_future_all(cparsl_future_t *const *fs, size_t n)
{
    return composite(fs, n, TK_ALL);
}

cparsl_future_t *cparsl_future_any(cparsl_future_t *const *fs, size_t n)
{
    return composite(fs, n, TK_ANY);
}

int cparsl_future_wait_all(cparsl_future_t *const *fs, size_t n, double timeout)
{
    int64_t deadline =
        timeout < 0 ? INT64_MAX : cparsl_mono_ns() + (int64_t)(timeout * 1e9);
    for (size_t i = 0; i < n; i++) {
        double left = -1;
        if (deadline != INT64_MAX) {
            left = (double)(deadline - cparsl_mono_ns()) / 1e9;
            if (left < 0)
                left = 0;
        }
        int rc = cparsl_future_wait(fs[i], left);
        if (rc)
            return rc;
    }
    return 0;
}

int cparsl_future_wait_any(cparsl_future_t *const *fs, size_t n, double timeout,
                           size_t *index)
{
    for (size_t i = 0; i < n; i++)
        if (cparsl_future_done(fs[i])) {
            if (index)
                *index = i;
            return 0;
        }
    if (n == 0)
        return -EINVAL;
    cparsl_future_t *any = cparsl_future_any(fs, n);
    if (!any)
        return -ENOMEM;
    int rc = cparsl_future_wait(any, timeout);
    if (rc == 0) {
        int64_t i = 0;
        rc = cparsl_future_get_int(any, &i);
        if (rc == 0 && index)
            *index = (size_t)i;
    }
    cparsl_future_decref(any);
    return rc;
}
