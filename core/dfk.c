/*
 * dfk.c - the dataflow kernel: one thread that owns every task's state.
 *
 * Users, executors and client threads post tasks to one inbound queue
 * (EV_SUBMIT for a new task, EV_DONE for a finished try).  The DFK thread
 * takes the whole queue at once, links each new task into the futures it
 * waits on, launches the tasks whose dependencies are met in one batch per
 * executor, and turns finished tries into results, retries or failures.
 *
 * Completing a future can make other tasks ready or failed, which can
 * complete more futures: that is a work list here, never recursion, so a
 * 100,000-link chain that fails at its root unwinds in a loop.
 *
 * When the queue is empty the thread polls a flag for a short window and
 * then sleeps on a condition variable; producers signal only a sleeping
 * DFK, so a busy pipeline costs no syscalls.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#include "internal.h"

cparsl__dfk_t *cparsl__dfk;

/* How long the DFK thread polls for new work before it sleeps. */
#define DFK_POLL_NS 50000
/* With an executor to poll, the DFK sleeps in steps from SLEEP_MIN up to
 * SLEEP_MAX, and up to SLEEP_IDLE_MAX after a second of quiet: messages
 * from the network have no descriptor to wake it (DESIGN.md). */
#define DFK_SLEEP_MIN_NS      10000
#define DFK_SLEEP_MAX_NS      1000000
#define DFK_IDLE_LONG_NS      1000000000
#define DFK_SLEEP_IDLE_MAX_NS 20000000
/* ...and up to this with no task out at all: only heartbeats come then,
 * and a submission wakes the DFK at once. */
#define DFK_SLEEP_EMPTY_MAX_NS 200000000

static const char *const state_names[CPARSL_STATE_COUNT] = {
    [CPARSL_UNSCHED] = "unsched",
    [CPARSL_PENDING] = "pending",
    [CPARSL_LAUNCHED] = "launched",
    [CPARSL_RUNNING] = "running",
    [CPARSL_RUNNING_ENDED] = "running_ended",
    [CPARSL_JOINING] = "joining",
    [CPARSL_EXEC_DONE] = "exec_done",
    [CPARSL_MEMO_DONE] = "memo_done",
    [CPARSL_FAILED] = "failed",
    [CPARSL_DEP_FAIL] = "dep_fail",
    [CPARSL_FAIL_RETRYABLE] = "fail_retryable",
};

const char *cparsl_state_name(cparsl_state_t s)
{
    return (unsigned)s < CPARSL_STATE_COUNT ? state_names[s] : "unknown";
}

static bool state_final(cparsl_state_t s)
{
    return s == CPARSL_EXEC_DONE || s == CPARSL_MEMO_DONE ||
           s == CPARSL_FAILED || s == CPARSL_DEP_FAIL;
}

/* ---- per-batch scratch (DFK thread only) ------------------------------- */

static struct {
    cparsl__task_t **v;
    size_t n, cap;
} releases;
static size_t finals_in_batch;

static void vec_push(void ***v, size_t *n, size_t *cap, void *p)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 256;
        void **nv = realloc(*v, ncap * sizeof *nv);
        if (!nv) {
            /* Out of memory on the DFK thread leaves no way to go on
             * safely; say so before stopping. */
            CPARSL_LOG(CPARSL_LOG_ERROR, "dfk", "out of memory");
            abort();
        }
        *v = nv;
        *cap = ncap;
    }
    (*v)[(*n)++] = p;
}

/* ---- states and the store ---------------------------------------------- */

static void set_state(cparsl__dfk_t *d, cparsl__task_t *t, cparsl_state_t to)
{
    cparsl_state_t from = t->state;
    t->state = to;
    atomic_fetch_add_explicit(&d->counts[to], 1, memory_order_relaxed);
    if (t->fut.kind != TK_APP || !d->store_ops ||
        (d->store_ops->flags & CPARSL_STORE_DISCARDS))
        return;
    if (to == CPARSL_PENDING)
        t->t_pending = d->batch_ns ? d->batch_ns : cparsl_now_ns();
    if ((d->store_ops->flags & CPARSL_STORE_FINALS) &&
        (to == CPARSL_PENDING || to == CPARSL_LAUNCHED ||
         to == CPARSL_RUNNING || to == CPARSL_RUNNING_ENDED))
        return; /* the final event carries these */
    /* Where the try already stamped the moment, use it: it is the same
     * instant (launch) or closer to the truth than when the DFK heard of
     * it (the body's start and end, stamped where it ran), and it spares
     * a clock read per state change on the DFK thread. */
    int64_t when = to == CPARSL_LAUNCHED        ? t->exec.t_launch
                   : to == CPARSL_RUNNING       ? t->exec.t_start
                   : to == CPARSL_RUNNING_ENDED ? t->exec.t_end
                                                : 0;
    cparsl_task_event_t ev = {
        .task_id = t->fut.id,
        .app = t->app ? t->app->name : NULL,
        .executor = t->executor ? t->executor->label : NULL,
        .from = from,
        .to = to,
        .try_no = t->exec.args.try_no,
        .t_ns = when          ? when
                : d->batch_ns ? d->batch_ns
                              : cparsl_now_ns(),
        .exec = state_final(to) ? &t->exec : NULL,
        .result = to == CPARSL_EXEC_DONE || to == CPARSL_MEMO_DONE
                      ? &t->fut.value
                      : NULL,
        .t_pending = t->t_pending,
        .error_code =
            to == CPARSL_FAILED || to == CPARSL_DEP_FAIL ? t->fut.errcode : 0,
        .error_text = to == CPARSL_FAILED || to == CPARSL_DEP_FAIL
                          ? t->fut.errtext
                          : NULL,
    };
    d->store_ops->task_event(d->store, &ev);
}

static void live_add(cparsl__dfk_t *d, cparsl__task_t *t)
{
    t->live_prev = NULL;
    t->live_next = d->live;
    if (d->live)
        d->live->live_prev = t;
    d->live = t;
    t->on_live = true;
    d->nlive++;
}

static void live_remove(cparsl__dfk_t *d, cparsl__task_t *t)
{
    if (!t->on_live)
        return;
    if (t->live_prev)
        t->live_prev->live_next = t->live_next;
    else
        d->live = t->live_next;
    if (t->live_next)
        t->live_next->live_prev = t->live_prev;
    t->on_live = false;
    d->nlive--;
}

/* The DFK lets go of a task once it is final and no dependency node of it
 * is still linked into another future (an 'any' finishes early). */
/*
 * A finished app task no longer needs its arguments: drop them, and the
 * references on the futures they came from, so a long chain or a big
 * fan-in does not keep every ancestor alive.  Outputs stay (DataFutures
 * borrow them), and so do join and memo dependencies (the result borrows
 * from them).  A try an executor still holds (a thread past its walltime)
 * may still read the arguments: then they go with the task.
 */
static void release_inputs(cparsl__task_t *t)
{
    if (atomic_load_explicit(&t->holds, memory_order_acquire) > 0)
        return;
    for (uint32_t i = 0; i < t->ndeps; i++) {
        cparsl__dep_t *dep = &t->deps[i];
        if (dep->where != DEP_ARG && dep->where != DEP_FILE)
            continue;
        cparsl_value_t *v = dep->where == DEP_ARG ? &t->argv[dep->index].value
                                                  : &t->files[dep->index];
        *v = cparsl_nil(); /* borrowed from dep->on */
        vec_push((void ***)&releases.v, &releases.n, &releases.cap,
                 task_of(dep->on));
        dep->on = NULL;
    }
    for (uint32_t i = 0; i < t->nargs; i++)
        cparsl_value_clear(&t->argv[i].value);
    for (uint32_t i = 0; i < t->ninputs; i++)
        cparsl_value_clear(&t->files[i]);
}

static void maybe_release(cparsl__dfk_t *d, cparsl__task_t *t)
{
    if (!t->dfk_ref || !state_final(t->state) || t->pending > 0)
        return;
    if (atomic_load_explicit(&t->fut.state, memory_order_relaxed) != FUT_DONE)
        return; /* still on the work list; released after publishing */
    if (t->fut.kind == TK_APP)
        release_inputs(t);
    t->dfk_ref = false;
    live_remove(d, t);
    vec_push((void ***)&releases.v, &releases.n, &releases.cap, t);
}

/* Record the outcome and queue the future for publishing. */
static void ckpt_first(cparsl__dfk_t *d, cparsl__task_t *t);

static void complete(cparsl__dfk_t *d, cparsl__task_t *t, cparsl_state_t to)
{
    set_state(d, t, to);
    if (d->ckpt_mode && to == CPARSL_EXEC_DONE && t->fut.kind == TK_APP &&
        !t->memo_hit)
        ckpt_first(d, t);
    finals_in_batch++;
    if (d->nwork == d->capwork) {
        size_t cap = d->capwork ? d->capwork * 2 : 1024;
        cparsl_future_t **w = realloc(d->work, cap * sizeof *w);
        if (!w) {
            CPARSL_LOG(CPARSL_LOG_ERROR, "dfk", "out of memory");
            abort();
        }
        d->work = w;
        d->capwork = cap;
    }
    d->work[d->nwork++] = &t->fut;
}

static void fail_task(cparsl__dfk_t *d, cparsl__task_t *t, cparsl_state_t to,
                      int code, const char *text)
{
    cparsl__future_set_error(&t->fut, code, text);
    complete(d, t, to);
}

/* ---- naming tasks in messages -------------------------------------------- */

/* The app task behind a future: itself, or a DataFuture's producer. */
static cparsl__task_t *producer(cparsl_future_t *f)
{
    cparsl__task_t *t = task_of(f);
    if (f->kind == TK_DATA && t->ndeps == 1)
        return task_of(t->deps[0].on);
    return t;
}

static int describe(cparsl_future_t *f, char *buf, size_t cap)
{
    cparsl__task_t *p = producer(f);
    if (p->fut.kind == TK_APP)
        return snprintf(buf, cap, "task %llu (app '%s')",
                        (unsigned long long)p->fut.id,
                        p->app ? p->app->name : "?");
    return snprintf(buf, cap, "a %s future",
                    p->fut.kind == TK_ALL ? "future_all" : "composite");
}

/* "task 3 (app 'f'), task 9 (app 'g') and 2 more; first error: ..." */
static void failed_deps_text(cparsl__task_t *t, uint8_t where, char *buf,
                             size_t cap)
{
    size_t len = 0, shown = 0, more = 0;
    cparsl_future_t *first = NULL;
    buf[0] = '\0';
    for (uint32_t i = 0; i < t->ndeps; i++) {
        cparsl__dep_t *dep = &t->deps[i];
        if ((where != 0xff && dep->where != where) || !dep->on->errcode)
            continue;
        if (!first)
            first = dep->on;
        if (shown == 4) {
            more++;
            continue;
        }
        if (len < cap)
            len += snprintf(buf + len, cap - len, "%s", shown ? ", " : "");
        if (len < cap)
            len += describe(dep->on, buf + len, cap - len);
        shown++;
    }
    if (more && len < cap)
        len += snprintf(buf + len, cap - len, " and %zu more", more);
    if (first && len < cap)
        snprintf(buf + len, cap - len, "; first error: %s",
                 first->errtext ? first->errtext : "?");
}

/* ---- dependencies ----------------------------------------------------------
 */

static void deps_ready(cparsl__dfk_t *d, cparsl__task_t *t);

static void dep_fire(cparsl__dfk_t *d, cparsl__dep_t *dep)
{
    cparsl__task_t *t = dep->task;
    cparsl_future_t *on = dep->on;
    dep->fired = 1;
    if (on->errcode) {
        t->failed_deps++;
    } else if (dep->where == DEP_ARG) {
        /* Borrow: the task holds a reference on 'on' until it dies. */
        t->argv[dep->index].value = on->value;
        t->argv[dep->index].value.owned = 0;
    } else if (dep->where == DEP_FILE) {
        t->files[dep->index] = on->value;
        t->files[dep->index].owned = 0;
    }
    if (t->fut.kind == TK_ANY && t->any_index < 0) {
        t->any_index = dep->index;
        t->fut.value = cparsl_int(dep->index);
        complete(d, t, CPARSL_EXEC_DONE);
    }
    if (--t->pending == 0)
        deps_ready(d, t);
}

/* Link 'from'..ndeps of t into the futures they wait on; fire those that
 * are already done.  Returns true if some were left pending. */
static void deps_link(cparsl__dfk_t *d, cparsl__task_t *t, uint32_t from)
{
    /* Count first so a dependency that fires at once cannot bring the
     * counter to zero while others are still being linked. */
    t->pending += t->ndeps - from + 1;
    for (uint32_t i = from; i < t->ndeps; i++) {
        cparsl__dep_t *dep = &t->deps[i];
        dep->task = t;
        if (atomic_load_explicit(&dep->on->state, memory_order_acquire) ==
            FUT_DONE) {
            dep_fire(d, dep);
        } else {
            dep->next = dep->on->dependents;
            dep->on->dependents = dep;
        }
    }
    if (--t->pending == 0)
        deps_ready(d, t);
}

/* ---- launching ------------------------------------------------------------
 */

static void client_run(cparsl__work_t *w);

static bool label_allowed(const char *labels, const char *label)
{
    if (!labels || !*labels || strcmp(labels, "all") == 0)
        return true;
    size_t n = strlen(label);
    for (const char *p = labels; *p;) {
        while (*p == ',' || *p == ' ')
            p++;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ')
            e++;
        if ((size_t)(e - p) == n && strncmp(p, label, n) == 0)
            return true;
        p = e;
    }
    return false;
}

static cparsl_executor_t *pick_executor(cparsl__dfk_t *d, cparsl__task_t *t,
                                        size_t *idx)
{
    const char *labels = t->executors ? t->executors : t->app->executors;
    for (size_t k = 0; k < d->nexecutors; k++) {
        size_t i = (d->rr + k) % d->nexecutors;
        if (label_allowed(labels, d->executors[i]->label)) {
            d->rr = i + 1;
            *idx = i;
            return d->executors[i];
        }
    }
    return NULL;
}

static void launch(cparsl__dfk_t *d, cparsl__task_t *t)
{
    cparsl_exec_t *e = &t->exec;
    int sig = atomic_load_explicit(&d->stopping, memory_order_relaxed);
    if (sig) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "the run is shutting down (signal %d, %s); this task had "
                 "not started",
                 sig, strsignal(sig));
        fail_task(d, t, CPARSL_FAILED, CPARSL_ESHUTDOWN, msg);
        return;
    }
    e->t_launch = cparsl_now_ns();
    if (t->appkind->flags & CPARSL_APPKIND_CLIENT) {
        set_state(d, t, CPARSL_LAUNCHED);
        t->work.fn = client_run;
        cparsl__clientpool_post(&t->work);
        return;
    }
    size_t idx = 0;
    cparsl_executor_t *ex = pick_executor(d, t, &idx);
    if (!ex) {
        char have[256];
        size_t len = 0;
        have[0] = '\0';
        for (size_t i = 0; i < d->nexecutors && len < sizeof have; i++)
            len += snprintf(have + len, sizeof have - len, "%s%s",
                            i ? ", " : "", d->executors[i]->label);
        char msg[512];
        snprintf(msg, sizeof msg,
                 "no executor labelled '%s' for app '%s' (have: %s)",
                 t->executors ? t->executors : t->app->executors, t->app->name,
                 have);
        fail_task(d, t, CPARSL_FAILED, CPARSL_EEXECUTOR, msg);
        return;
    }
    t->executor = ex;
    set_state(d, t, CPARSL_LAUNCHED);
    struct launch_batch *b = &d->batches[idx];
    vec_push((void ***)&b->v, &b->n, &b->cap, e);
}

static void flush_launches(cparsl__dfk_t *d)
{
    for (size_t i = 0; i < d->nexecutors; i++) {
        struct launch_batch *b = &d->batches[i];
        if (b->n == 0)
            continue;
        cparsl_executor_t *ex = d->executors[i];
        int rc = ex->ops->submit(ex, b->v, b->n);
        if (rc < 0) {
            /* The executor took none of them: each try fails (and may be
             * retried, perhaps elsewhere). */
            for (size_t k = 0; k < b->n; k++) {
                cparsl_exec_t *e = b->v[k];
                cparsl_exec_fail(e, rc, "executor '%s' refused the task: %s",
                                 ex->label, cparsl_strerror(rc));
                cparsl__dfk_post(d, task_of_exec(e), EV_DONE);
            }
        }
        b->n = 0;
    }
}

static void prepare_exec(cparsl__task_t *t)
{
    cparsl_exec_t *e = &t->exec;
    e->args.app = t->app;
    e->args.task_id = t->fut.id;
    e->args.npos = t->npos;
    e->args.pos = t->argv;
    e->args.nnamed = t->nargs - t->npos;
    e->args.named = t->argv + t->npos;
    e->args.ninputs = t->ninputs;
    e->args.inputs = t->files;
    e->args.noutputs = t->nfiles - t->ninputs;
    e->args.outputs = t->files + t->ninputs;
    e->walltime = t->call_walltime >= 0 ? t->call_walltime : t->app->walltime;
}

/* ---- memoization --------------------------------------------------------- */

static bool memo_wanted(cparsl__dfk_t *d, cparsl__task_t *t)
{
    if (!d->app_cache || (t->appkind->flags & CPARSL_APPKIND_CLIENT))
        return false;
    return t->cache >= 0 ? t->cache != 0 : t->app->cache != 0;
}

/* ---- checkpoints ----------------------------------------------------------
 */

static void ckpt_send(cparsl__dfk_t *d, const struct cparsl__ckpt_wait *w)
{
    cparsl_ckpt_t e = {
        .task_id = w->f->id,
        .hash = w->hash,
        .key = w->key,
        .key_len = w->len,
        .result = &w->f->value,
    };
    d->store_ops->checkpoint(d->store, &e);
    d->ckpt_written++;
}

/* Hand every waiting entry to the store (periodic, manual, at exit). */
static void ckpt_write(cparsl__dfk_t *d)
{
    for (size_t i = 0; i < d->ckpt_n; i++) {
        ckpt_send(d, &d->ckpt_v[i]);
        cparsl_future_decref(d->ckpt_v[i].f);
    }
    d->ckpt_n = 0;
    if (d->ckpt_mode == CPARSL__CKPT_PERIODIC)
        d->ckpt_next = cparsl_mono_ns() + d->ckpt_period_ns;
}

/* Nanoseconds until a periodic checkpoint is due (<= 0: now), or
 * INT64_MAX when none waits. */
static int64_t ckpt_due_in(const cparsl__dfk_t *d)
{
    if (d->ckpt_mode != CPARSL__CKPT_PERIODIC || !d->ckpt_n)
        return INT64_MAX;
    return d->ckpt_next - cparsl_mono_ns();
}

/* A memoized task has its result: its entry goes out now (task_exit) or
 * waits for the mode's moment. */
static void ckpt_note(cparsl__dfk_t *d, const unsigned char *key, size_t len,
                      uint64_t hash, cparsl__task_t *t)
{
    struct cparsl__ckpt_wait w = {key, len, hash, &t->fut};
    if (d->ckpt_mode == CPARSL__CKPT_TASK_EXIT) {
        ckpt_send(d, &w);
        return;
    }
    if (d->ckpt_n == d->ckpt_cap) {
        size_t cap = d->ckpt_cap ? d->ckpt_cap * 2 : 1024;
        void *v = realloc(d->ckpt_v, cap * sizeof *d->ckpt_v);
        if (!v) {
            /* No room to keep it waiting: better early than lost. */
            ckpt_send(d, &w);
            return;
        }
        d->ckpt_v = v;
        d->ckpt_cap = cap;
    }
    w.f = cparsl_future_incref(&t->fut);
    d->ckpt_v[d->ckpt_n++] = w;
}

/* The first call of its key finished: checkpoint it if it is memoized. */
static void ckpt_first(cparsl__dfk_t *d, cparsl__task_t *t)
{
    if (!memo_wanted(d, t))
        return;
    unsigned char *key;
    size_t len;
    if (cparsl__memo_key(t, &key, &len) < 0)
        return;
    const struct cparsl__memo_entry *e = cparsl__memo_find(&d->memo, key, len);
    free(key);
    if (e && e->f == &t->fut)
        ckpt_note(d, e->key, e->len, e->hash, t);
}

/* An earlier run's checkpoint answers t: no launch. */
static bool memo_saved(cparsl__dfk_t *d, cparsl__task_t *t,
                       const struct cparsl__memo_entry *e)
{
    cparsl_error_t err;
    if (cparsl_value_decode(e->saved, e->saved_len, &t->fut.value, NULL, &err) <
        0) {
        CPARSL_LOG(CPARSL_LOG_WARN, "memo",
                   "task %llu: the checkpointed result of app '%s' (task "
                   "%llu of an earlier run) cannot be decoded, so it runs "
                   "again: %s",
                   (unsigned long long)t->fut.id, t->app->name,
                   (unsigned long long)e->saved_id, err.text);
        return false;
    }
    complete(d, t, CPARSL_MEMO_DONE);
    if (d->ckpt_mode)
        ckpt_note(d, e->key, e->len, e->hash, t);
    return true;
}

/* True if t is answered by an earlier identical call (now or later), or
 * by an earlier run's checkpoint. */
static bool memo_lookup(cparsl__dfk_t *d, cparsl__task_t *t)
{
    unsigned char *key;
    size_t len;
    if (cparsl__memo_key(t, &key, &len) < 0)
        return false; /* cannot key it: just run it */
    const struct cparsl__memo_entry *e =
        cparsl__memo_find_or_add(&d->memo, key, len, &t->fut);
    if (!e)
        return false;
    if (!e->f)
        return memo_saved(d, t, e);
    uint32_t from = t->ndeps;
    if (cparsl__task_add_dep(t, e->f, DEP_MEMO, 0) < 0)
        return false;
    t->memo_hit = true;
    deps_link(d, t, from);
    return true;
}

/* An identical earlier call finished: take its outcome, no launch. */
static void memo_finish(cparsl__dfk_t *d, cparsl__task_t *t)
{
    cparsl_future_t *first = t->deps[t->ndeps - 1].on;
    if (first->errcode) {
        char msg[CPARSL_ERROR_TEXT];
        snprintf(msg, sizeof msg, "%.400s (memoized from task %llu)",
                 first->errtext ? first->errtext : "?",
                 (unsigned long long)first->id);
        cparsl__future_set_error(&t->fut, first->errcode, msg);
    } else {
        t->fut.value = first->value; /* borrowed; we hold 'first' */
        t->fut.value.owned = 0;
    }
    complete(d, t, CPARSL_MEMO_DONE);
}

/* An app task whose dependencies have all fired. */
static void app_ready(cparsl__dfk_t *d, cparsl__task_t *t)
{
    char msg[CPARSL_ERROR_TEXT];
    if (t->failed_deps) {
        char what[400];
        failed_deps_text(t, 0xff, what, sizeof what);
        snprintf(msg, sizeof msg, "dependency failure: %s", what);
        fail_task(d, t, CPARSL_DEP_FAIL, CPARSL_EDEPFAIL, msg);
        return;
    }
    for (uint32_t i = 0; i < t->ninputs; i++) {
        cparsl_value_t *v = &t->files[i];
        if (v->type == CPARSL_T_STRING)
            v->type = CPARSL_T_FILE;
        if (v->type != CPARSL_T_FILE) {
            snprintf(msg, sizeof msg,
                     "input %u of app '%s' is a future whose value is %s, "
                     "not a file",
                     i, t->app->name, cparsl_type_name(v->type));
            fail_task(d, t, CPARSL_FAILED, CPARSL_EARGS, msg);
            return;
        }
    }
    prepare_exec(t);
    if (cparsl_exec_check_signature(&t->exec) < 0) {
        /* A type mismatch is the same on every try: no retry. */
        fail_task(d, t, CPARSL_FAILED, cparsl_exec_code(&t->exec),
                  cparsl_exec_text(&t->exec));
        return;
    }
    if (memo_wanted(d, t) && memo_lookup(d, t))
        return;
    launch(d, t);
}

static void join_finish(cparsl__dfk_t *d, cparsl__task_t *t)
{
    cparsl_join_t *j = &t->exec.join;
    if (t->failed_deps) {
        char what[400], msg[CPARSL_ERROR_TEXT];
        failed_deps_text(t, DEP_JOIN, what, sizeof what);
        snprintf(msg, sizeof msg, "join app '%s' (task %llu): inner %s failed",
                 t->app->name, (unsigned long long)t->fut.id, what);
        fail_task(d, t, CPARSL_FAILED, CPARSL_EJOIN, msg);
        return;
    }
    if (j->mode == 1) {
        t->fut.value = j->fs[0]->value; /* borrowed; we hold fs[0] */
        t->fut.value.owned = 0;
    } else if (j->n == 0) {
        t->fut.value = cparsl_list(NULL, 0);
    } else {
        cparsl_value_t *items = cparsl_value_new_list(&t->fut.value, j->n);
        if (!items) {
            fail_task(d, t, CPARSL_FAILED, -ENOMEM,
                      "out of memory building a join's list");
            return;
        }
        for (size_t i = 0; i < j->n; i++) {
            items[i] = j->fs[i]->value;
            items[i].owned = 0;
        }
    }
    complete(d, t, CPARSL_EXEC_DONE);
}

static void deps_ready(cparsl__dfk_t *d, cparsl__task_t *t)
{
    switch (t->fut.kind) {
    case TK_APP:
        if (t->memo_hit)
            memo_finish(d, t);
        else if (t->state == CPARSL_JOINING)
            join_finish(d, t);
        else
            app_ready(d, t);
        break;
    case TK_DATA: {
        cparsl_future_t *on = t->deps[0].on;
        if (on->errcode) {
            char what[128], msg[CPARSL_ERROR_TEXT];
            describe(on, what, sizeof what);
            snprintf(msg, sizeof msg,
                     "output %u of %s was not produced (the task failed): %s",
                     t->data_index, what, on->errtext ? on->errtext : "?");
            fail_task(d, t, CPARSL_DEP_FAIL, CPARSL_EDEPFAIL, msg);
        } else {
            cparsl__task_t *p = task_of(on);
            t->fut.value = p->files[p->ninputs + t->data_index];
            t->fut.value.owned = 0;
            complete(d, t, CPARSL_EXEC_DONE);
        }
        break;
    }
    case TK_ALL:
        if (t->failed_deps) {
            for (uint32_t i = 0; i < t->ndeps; i++) {
                cparsl_future_t *on = t->deps[i].on;
                if (!on->errcode)
                    continue;
                char what[128], msg[CPARSL_ERROR_TEXT];
                describe(on, what, sizeof what);
                snprintf(msg, sizeof msg, "future %u of %u (%s) failed: %s", i,
                         t->ndeps, what, on->errtext ? on->errtext : "?");
                fail_task(d, t, CPARSL_DEP_FAIL, on->errcode, msg);
                break;
            }
        } else {
            complete(d, t, CPARSL_EXEC_DONE);
        }
        break;
    case TK_ANY:
        if (t->ndeps == 0)
            complete(d, t, CPARSL_EXEC_DONE);
        /* otherwise completed by the first dep_fire; now fully unlinked */
        maybe_release(d, t);
        break;
    default:
        break;
    }
}

/* ---- finished tries --------------------------------------------------- */

static void reset_try(cparsl__task_t *t)
{
    cparsl_exec_t *e = &t->exec;
    cparsl_value_clear(&e->result);
    cparsl_exec_clear_error(e);
    for (size_t i = 0; i < e->join.n; i++)
        cparsl_future_decref(e->join.fs[i]);
    e->join.n = 0;
    e->join.mode = 0;
    e->join.error = 0;
    e->t_start = e->t_end = 0;
    e->exit_code = -1;
    e->term_signal = 0;
    e->cpu_s = -1;
    e->maxrss_kib = -1;
    e->t_dispatch = 0;
    e->worker = e->slot = e->node = -1;
    e->host = NULL;
}

static void try_failed(cparsl__dfk_t *d, cparsl__task_t *t)
{
    cparsl_exec_t *e = &t->exec;
    int code = cparsl_exec_code(e) ? cparsl_exec_code(e) : -CPARSL_EAPP;
    double cost = 1.0;
    if (d->retry_fn)
        cost = d->retry_fn(t->fut.id, t->app->name, e->args.try_no, code,
                           cparsl_exec_text(e), d->retry_arg);
    t->fail_cost += cost;
    if (t->fail_cost <= (double)t->retries) {
        set_state(d, t, CPARSL_FAIL_RETRYABLE);
        CPARSL_LOG(CPARSL_LOG_INFO, "dfk",
                   "task %llu (app '%s') try %d failed, retrying: %s",
                   (unsigned long long)t->fut.id, t->app->name, e->args.try_no,
                   cparsl_exec_text(e));
        reset_try(t);
        e->args.try_no++;
        launch(d, t);
        return;
    }
    char msg[CPARSL_ERROR_TEXT];
    if (e->args.try_no > 0)
        snprintf(msg, sizeof msg, "%.480s (after %d tries)",
                 cparsl_exec_text(e), e->args.try_no + 1);
    else
        snprintf(msg, sizeof msg, "%s", cparsl_exec_text(e));
    fail_task(d, t, CPARSL_FAILED, code, msg);
}

static void on_exec_done(cparsl__dfk_t *d, cparsl__task_t *t)
{
    cparsl_exec_t *e = &t->exec;
    if (t->state == CPARSL_LAUNCHED && e->t_start)
        set_state(d, t, CPARSL_RUNNING);
    if (cparsl_exec_code(e)) {
        try_failed(d, t);
        return;
    }
    if (t->appkind->flags & CPARSL_APPKIND_CLIENT) {
        cparsl_join_t *j = &e->join;
        if (j->error || j->mode == 0) {
            cparsl_exec_fail(e, CPARSL_EJOIN,
                             j->error ? "join app '%s' returned a bad future"
                                      : "join app '%s' returned no future (use "
                                        "cparsl_join_return, _append or _list)",
                             t->app->name);
            try_failed(d, t);
            return;
        }
        set_state(d, t, CPARSL_JOINING);
        uint32_t from = t->ndeps;
        for (size_t i = 0; i < j->n; i++)
            if (cparsl__task_add_dep(t, j->fs[i], DEP_JOIN, (uint32_t)i)) {
                fail_task(d, t, CPARSL_FAILED, -ENOMEM, "out of memory");
                return;
            }
        deps_link(d, t, from);
        return;
    }
    set_state(d, t, CPARSL_RUNNING_ENDED);
    t->fut.value = e->result;
    e->result = cparsl_nil();
    complete(d, t, CPARSL_EXEC_DONE);
}

static void on_submit(cparsl__dfk_t *d, cparsl__task_t *t)
{
    t->dfk = d;
    t->dfk_ref = true;
    live_add(d, t);
    if (t->fut.kind == TK_APP) {
        set_state(d, t, CPARSL_PENDING);
        if (t->call_err) {
            fail_task(d, t, CPARSL_FAILED, t->call_err,
                      t->call_errtext ? t->call_errtext : "bad call");
            return;
        }
        if ((t->appkind->flags & CPARSL_APPKIND_CLIENT) &&
            t->call_walltime > 0) {
            char msg[CPARSL_ERROR_TEXT];
            snprintf(msg, sizeof msg,
                     "join app '%s': walltime does not apply to join apps "
                     "(their bodies run on the client)",
                     t->app->name);
            fail_task(d, t, CPARSL_FAILED, -EINVAL, msg);
            return;
        }
        t->retries = t->call_retries >= 0   ? t->call_retries
                     : t->app->retries >= 0 ? t->app->retries
                                            : d->default_retries;
        for (uint32_t i = 0; i < t->ndeps; i++) {
            cparsl__task_t *p = producer(t->deps[i].on);
            if (p->fut.kind == TK_APP)
                d->store_ops->dependency(d->store, t->fut.id, p->fut.id);
        }
    }
    deps_link(d, t, 0);
}

/* Publish completed futures and fire their dependents until none is left. */
static void drain_work(cparsl__dfk_t *d)
{
    for (size_t k = 0; k < d->nwork; k++) {
        cparsl_future_t *f = d->work[k];
        cparsl__then_t *thens = cparsl__future_publish(f);
        if (thens)
            cparsl__thens_dispatch(thens);
        cparsl__dep_t *dep = f->dependents;
        f->dependents = NULL;
        while (dep) {
            cparsl__dep_t *next = dep->next;
            dep_fire(d, dep);
            dep = next;
        }
        maybe_release(d, task_of(f));
    }
    d->nwork = 0;
}

/* ---- the invariant checker ----------------------------------------------- */

static int check_task(cparsl__dfk_t *d, cparsl__task_t *t, cparsl_error_t *e)
{
    unsigned long long id = (unsigned long long)t->fut.id;
    if (atomic_load(&t->fut.refs) < 1)
        return cparsl_error_set(e, -EPROTO, "task %llu: no reference", id);
    bool done = atomic_load(&t->fut.state) == FUT_DONE;
    if (done != state_final(t->state))
        return cparsl_error_set(e, -EPROTO, "task %llu: state %s but future %s",
                                id, cparsl_state_name(t->state),
                                done ? "done" : "pending");
    uint32_t unfired = 0;
    for (uint32_t i = 0; i < t->ndeps; i++) {
        cparsl__dep_t *dep = &t->deps[i];
        if (dep->fired || !dep->on)
            continue;
        if (dep->task != t) {
            /* A join's nodes are linked only once the body returned. */
            if (t->state == CPARSL_JOINING || dep->where != DEP_JOIN)
                return cparsl_error_set(
                    e, -EPROTO, "task %llu: dep %u never linked", id, i);
            continue;
        }
        unfired++;
        if (atomic_load(&dep->on->state) == FUT_DONE)
            return cparsl_error_set(e, -EPROTO,
                                    "task %llu: dep %u on a done future "
                                    "never fired",
                                    id, i);
        bool found = false;
        for (cparsl__dep_t *x = dep->on->dependents; x; x = x->next)
            found |= x == dep;
        if (!found)
            return cparsl_error_set(e, -EPROTO,
                                    "task %llu: dep %u not in its "
                                    "future's list",
                                    id, i);
    }
    if (unfired != t->pending)
        return cparsl_error_set(e, -EPROTO,
                                "task %llu: %u unfired deps but pending=%u", id,
                                unfired, t->pending);
    (void)d;
    return 0;
}

static void run_check(cparsl__dfk_t *d)
{
    int rc = 0;
    size_t n = 0;
    cparsl_error_clear(&d->check_err);
    for (cparsl__task_t *t = d->live; t && rc == 0; t = t->live_next, n++)
        rc = check_task(d, t, &d->check_err);
    if (rc == 0 && n != d->nlive)
        rc = cparsl_error_set(&d->check_err, -EPROTO,
                              "live list has %zu tasks, count says %zu", n,
                              d->nlive);
    pthread_mutex_lock(&d->mu);
    d->check_rc = rc;
    d->check_req = false;
    d->check_done_flag = true;
    pthread_cond_broadcast(&d->check_cv);
    pthread_mutex_unlock(&d->mu);
}

int cparsl__dfk_check(cparsl__dfk_t *d, cparsl_error_t *err)
{
    if (!d)
        return -CPARSL_ESHUTDOWN;
    pthread_mutex_lock(&d->mu);
    d->check_req = true;
    d->check_done_flag = false;
    atomic_store(&d->has_work, true);
    if (d->sleeping)
        pthread_cond_signal(&d->cv);
    while (!d->check_done_flag)
        pthread_cond_wait(&d->check_cv, &d->mu);
    int rc = d->check_rc;
    if (rc && err)
        *err = d->check_err;
    pthread_mutex_unlock(&d->mu);
    return rc;
}

int cparsl__dfk_flush(cparsl__dfk_t *d, cparsl_error_t *err)
{
    if (!d)
        return -CPARSL_ESHUTDOWN;
    pthread_mutex_lock(&d->mu);
    uint64_t mine = ++d->flush_asked;
    atomic_store(&d->flush_req, true);
    atomic_store(&d->has_work, true);
    if (d->sleeping)
        pthread_cond_signal(&d->cv);
    while (d->flush_done < mine)
        pthread_cond_wait(&d->flush_cv, &d->mu);
    int rc = d->flush_rc;
    if (rc < 0 && err)
        *err = d->flush_err;
    pthread_mutex_unlock(&d->mu);
    return rc;
}

/* ---- the thread --------------------------------------------------------- */

static void client_run(cparsl__work_t *w)
{
    cparsl__task_t *t = cparsl_container_of(w, cparsl__task_t, work);
    cparsl_exec_t *e = &t->exec;
    e->t_start = cparsl_now_ns();
    t->appkind->run(e);
    e->t_end = cparsl_now_ns();
    cparsl_exec_complete(e);
}

void cparsl_exec_complete(cparsl_exec_t *e)
{
    cparsl__task_t *t = task_of_exec(e);
    cparsl__dfk_post(t->dfk, t, EV_DONE);
}

/*
 * With no DFK running (before cparsl_init, after cparsl_finalize) every
 * future that exists is done, so a DataFuture or a composite resolves at
 * once, on the caller's thread, through the same code under a lock.
 */
static void offline_submit(cparsl__task_t *t)
{
    static pthread_mutex_t offline_mu = PTHREAD_MUTEX_INITIALIZER;
    static cparsl__dfk_t off;
    pthread_mutex_lock(&offline_mu);
    if (t->fut.kind == TK_APP) {
        cparsl__future_set_error(&t->fut, CPARSL_ESHUTDOWN,
                                 "cparsl is not running");
        t->state = CPARSL_FAILED;
        t->fut.kind = TK_DONE;
        cparsl__then_t *thens = cparsl__future_publish(&t->fut);
        (void)thens; /* cparsl_future_then refuses without a DFK */
        cparsl__task_unref(t);
    } else {
        on_submit(&off, t);
        drain_work(&off);
        for (size_t i = 0; i < releases.n; i++)
            cparsl__task_unref(releases.v[i]);
        free(releases.v);
        memset(&releases, 0, sizeof releases);
        finals_in_batch = 0;
        free(off.work);
        off.work = NULL;
        off.nwork = off.capwork = 0;
    }
    pthread_mutex_unlock(&offline_mu);
}

void cparsl__dfk_post(cparsl__dfk_t *d, cparsl__task_t *t, int event)
{
    if (!d) {
        offline_submit(t);
        return;
    }
    t->event = (uint8_t)event;
    t->qnext = NULL;
    pthread_mutex_lock(&d->mu);
    if (d->in_tail)
        d->in_tail->qnext = t;
    else
        d->in_head = t;
    d->in_tail = t;
    if (event == EV_SUBMIT)
        d->unfinished++;
    atomic_store_explicit(&d->has_work, true, memory_order_release);
    bool wake = d->sleeping;
    pthread_mutex_unlock(&d->mu);
    if (wake)
        pthread_cond_signal(&d->cv);
}

/* Let the executors that want it do their work on this thread. */
static bool poll_executors(cparsl__dfk_t *d)
{
    bool did = false;
    for (size_t i = 0; i < d->nexecutors; i++) {
        cparsl_executor_t *ex = d->executors[i];
        if (ex->ops->poll && ex->ops->poll(ex) > 0)
            did = true;
    }
    return did;
}

static bool none_outstanding(cparsl__dfk_t *d)
{
    for (size_t i = 0; i < d->nexecutors; i++) {
        cparsl_executor_t *ex = d->executors[i];
        if (ex->ops->poll && ex->ops->outstanding(ex) > 0)
            return false;
    }
    return true;
}

static bool any_polled(const cparsl__dfk_t *d)
{
    for (size_t i = 0; i < d->nexecutors; i++)
        if (d->executors[i]->ops->poll)
            return true;
    return false;
}

/* With d->mu held: sleep until posted to, or for at most ns. */
static void sleep_timed(cparsl__dfk_t *d, int64_t ns)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t abs = ts.tv_sec * 1000000000ll + ts.tv_nsec + ns;
    ts.tv_sec = abs / 1000000000ll;
    ts.tv_nsec = abs % 1000000000ll;
    d->sleeping = true;
    pthread_cond_timedwait(&d->cv, &d->mu, &ts);
    d->sleeping = false;
}

static cparsl__task_t *take_batch(cparsl__dfk_t *d)
{
    bool polled = any_polled(d);
    int64_t start = 0, quiet_since = 0, sleep_ns = DFK_SLEEP_MIN_NS;
    for (;;) {
        if (atomic_load_explicit(&d->has_work, memory_order_acquire)) {
            pthread_mutex_lock(&d->mu);
            cparsl__task_t *head = d->in_head;
            d->in_head = d->in_tail = NULL;
            atomic_store_explicit(&d->has_work, false, memory_order_relaxed);
            pthread_mutex_unlock(&d->mu);
            if (head || d->check_req || d->stop || atomic_load(&d->flush_req))
                return head;
        }
        if (d->stop || d->check_req || atomic_load(&d->flush_req))
            return NULL;
        if (polled && poll_executors(d)) {
            start = quiet_since = 0;
            sleep_ns = DFK_SLEEP_MIN_NS;
            continue;
        }
        int64_t now = cparsl_mono_ns();
        if (!start)
            start = now;
        if (now - start < DFK_POLL_NS) {
            sched_yield();
            continue;
        }
        if (polled) {
            if (!quiet_since)
                quiet_since = now;
            int64_t cap = DFK_SLEEP_MAX_NS;
            if (now - quiet_since > DFK_IDLE_LONG_NS)
                cap = none_outstanding(d) ? DFK_SLEEP_EMPTY_MAX_NS
                                          : DFK_SLEEP_IDLE_MAX_NS;
            if (sleep_ns > cap)
                sleep_ns = cap;
            pthread_mutex_lock(&d->mu);
            if (!d->in_head && !d->stop && !d->check_req &&
                !atomic_load(&d->flush_req))
                sleep_timed(d, sleep_ns);
            pthread_mutex_unlock(&d->mu);
            sleep_ns *= 2;
            continue;
        }
        int64_t due = ckpt_due_in(d);
        if (due <= 0)
            return NULL;
        pthread_mutex_lock(&d->mu);
        while (!d->in_head && !d->stop && !d->check_req &&
               !atomic_load(&d->flush_req)) {
            if (due != INT64_MAX) {
                sleep_timed(d, due); /* a periodic checkpoint waits */
                break;
            }
            d->sleeping = true;
            pthread_cond_wait(&d->cv, &d->mu);
            d->sleeping = false;
        }
        pthread_mutex_unlock(&d->mu);
        start = 0;
    }
}

/* A store that takes only final events still gets a row for every task
 * that never reached one (a drain left it behind). */
static void report_unfinished(cparsl__dfk_t *d)
{
    if (!d->store_ops || !(d->store_ops->flags & CPARSL_STORE_FINALS))
        return;
    int64_t now = cparsl_now_ns();
    for (cparsl__task_t *t = d->live; t; t = t->live_next) {
        if (t->fut.kind != TK_APP || state_final(t->state))
            continue;
        cparsl_task_event_t ev = {
            .task_id = t->fut.id,
            .app = t->app ? t->app->name : NULL,
            .executor = t->executor ? t->executor->label : NULL,
            .from = t->state,
            .to = t->state,
            .try_no = t->exec.args.try_no,
            .t_ns = now,
            .exec = &t->exec,
            .t_pending = t->t_pending,
            .unfinished = true,
        };
        d->store_ops->task_event(d->store, &ev);
    }
}

static void *dfk_main(void *arg)
{
    cparsl__dfk_t *d = arg;
    pthread_setname_np(pthread_self(), "cparsl-dfk");
    if (any_polled(d))
        prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0); /* short sleeps stay short */
    for (;;) {
        cparsl__task_t *t = take_batch(d);
        /* One clock read stamps every state change of the batch (to
         * within the batch's few microseconds): a read per change was a
         * tenth of the DFK's time with a store that records them. */
        d->batch_ns = cparsl_now_ns();
        while (t) {
            cparsl__task_t *next = t->qnext;
            if (t->event == EV_SUBMIT)
                on_submit(d, t);
            else
                on_exec_done(d, t);
            drain_work(d);
            t = next;
        }
        flush_launches(d);
        /* Under load the queue is never empty: send what was launched and
         * take in results here too. */
        poll_executors(d);
        /* Launch failures come back through the queue; nothing else to
         * drain here.  Hand back the tasks we let go of. */
        for (size_t i = 0; i < releases.n; i++)
            cparsl__task_unref(releases.v[i]);
        releases.n = 0;
        if (finals_in_batch) {
            pthread_mutex_lock(&d->mu);
            d->unfinished -= finals_in_batch;
            if (d->unfinished == 0)
                pthread_cond_broadcast(&d->idle_cv);
            pthread_mutex_unlock(&d->mu);
            finals_in_batch = 0;
        }
        if (d->check_req)
            run_check(d);
        if (ckpt_due_in(d) <= 0) {
            /* periodic: the entries are on disk when this returns */
            ckpt_write(d);
            cparsl_error_t e2;
            if (d->store_ops->flush(d->store, &e2) < 0)
                CPARSL_LOG(CPARSL_LOG_ERROR, "dfk", "checkpoint: %s", e2.text);
        }
        if (atomic_exchange(&d->flush_req, false)) {
            /* cparsl_checkpoint() and a stop signal come with a flush. */
            if (atomic_exchange(&d->ckpt_now, false))
                ckpt_write(d);
            /* Every request made before this point is answered by this
             * flush: the events it must cover were all sent already. */
            pthread_mutex_lock(&d->mu);
            uint64_t asked = d->flush_asked;
            pthread_mutex_unlock(&d->mu);
            cparsl_error_t e2;
            cparsl_error_clear(&e2);
            int frc = d->store_ops->flush(d->store, &e2);
            if (frc < 0)
                CPARSL_LOG(CPARSL_LOG_ERROR, "dfk", "store flush: %s", e2.text);
            pthread_mutex_lock(&d->mu);
            d->flush_done = asked;
            d->flush_rc = frc;
            d->flush_err = e2;
            pthread_cond_broadcast(&d->flush_cv);
            pthread_mutex_unlock(&d->mu);
        }
        pthread_mutex_lock(&d->mu);
        bool stop = d->stop && !d->in_head;
        pthread_mutex_unlock(&d->mu);
        if (stop)
            break;
    }
    /* Every mode but none writes what still waits at the end, as Parsl
     * does at cleanup; the store's close flushes it. */
    if (d->ckpt_mode)
        ckpt_write(d);
    report_unfinished(d);
    return NULL;
}

int cparsl__dfk_start(cparsl__dfk_t *d, cparsl_error_t *err)
{
    pthread_mutex_init(&d->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&d->idle_cv, NULL);
    pthread_cond_init(&d->check_cv, NULL);
    pthread_cond_init(&d->flush_cv, NULL);
    d->batches = calloc(d->nexecutors ? d->nexecutors : 1, sizeof *d->batches);
    if (!d->batches)
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    int rc = pthread_create(&d->thread, NULL, dfk_main, d);
    if (rc)
        return cparsl_error_set(err, -rc, "cannot start the DFK thread: %s",
                                cparsl_strerror(-rc));
    return 0;
}

void cparsl__dfk_wait_idle(cparsl__dfk_t *d)
{
    pthread_mutex_lock(&d->mu);
    while (d->unfinished > 0)
        pthread_cond_wait(&d->idle_cv, &d->mu);
    pthread_mutex_unlock(&d->mu);
}

int cparsl__dfk_wait_idle_until(cparsl__dfk_t *d, int64_t deadline_mono)
{
    int rc = 0;
    pthread_mutex_lock(&d->mu);
    while (d->unfinished > 0 && rc == 0) {
        if (deadline_mono == INT64_MAX) {
            pthread_cond_wait(&d->idle_cv, &d->mu);
            continue;
        }
        int64_t left = deadline_mono - cparsl_mono_ns();
        if (left <= 0) {
            rc = -ETIMEDOUT;
            break;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t abs = ts.tv_sec * 1000000000ll + ts.tv_nsec + left;
        ts.tv_sec = abs / 1000000000ll;
        ts.tv_nsec = abs % 1000000000ll;
        pthread_cond_timedwait(&d->idle_cv, &d->mu, &ts);
    }
    pthread_mutex_unlock(&d->mu);
    return rc;
}

void cparsl__dfk_stop(cparsl__dfk_t *d)
{
    pthread_mutex_lock(&d->mu);
    d->stop = true;
    atomic_store(&d->has_work, true);
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->thread, NULL);
    for (size_t i = 0; i < d->nexecutors; i++)
        free(d->batches[i].v);
    free(d->batches);
    free(d->work);
    if (d->memo.loaded || d->memo.saved_hits || d->ckpt_written)
        CPARSL_LOG(CPARSL_LOG_INFO, "memo",
                   "checkpoints: %llu entries loaded from earlier runs, "
                   "%llu tasks answered by them, %llu entries written",
                   (unsigned long long)d->memo.loaded,
                   (unsigned long long)d->memo.saved_hits,
                   (unsigned long long)d->ckpt_written);
    for (size_t i = 0; i < d->ckpt_n; i++)
        cparsl_future_decref(d->ckpt_v[i].f);
    free(d->ckpt_v);
    cparsl__memo_clear(&d->memo);
    free(releases.v);
    releases.v = NULL;
    releases.cap = 0;
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv);
    pthread_cond_destroy(&d->idle_cv);
    pthread_cond_destroy(&d->check_cv);
    pthread_cond_destroy(&d->flush_cv);
}

cparsl_executor_t *cparsl__dfk_find_executor(cparsl__dfk_t *d,
                                             const char *label)
{
    for (size_t i = 0; d && i < d->nexecutors; i++)
        if (strcmp(d->executors[i]->label, label) == 0)
            return d->executors[i];
    return NULL;
}

cparsl_error_t *cparsl_exec_err(cparsl_exec_t *e)
{
    if (!e->error) {
        e->error = calloc(1, sizeof *e->error);
        if (!e->error) {
            fputs("cparsl: out of memory for a task's error\n", stderr);
            abort();
        }
    }
    return e->error;
}

void cparsl_exec_clear_error(cparsl_exec_t *e)
{
    free(e->error);
    e->error = NULL;
}

void cparsl_exec_take_error(cparsl_exec_t *dst, cparsl_exec_t *src)
{
    if (dst == src)
        return;
    free(dst->error);
    dst->error = src->error;
    src->error = NULL;
}

void cparsl_exec_set_error(cparsl_exec_t *e, const cparsl_error_t *err)
{
    if (!err || !err->code) {
        cparsl_exec_clear_error(e);
        return;
    }
    *cparsl_exec_err(e) = *err;
}

int cparsl_exec_run(cparsl_exec_t *e)
{
    const struct cparsl_app_kind *k =
        e->args.app ? cparsl__appkind_find(e->args.app->kind) : NULL;
    e->t_start = cparsl_now_ns();
    if (!k)
        cparsl_exec_fail(e, CPARSL_ENOAPP, "app '%s' has no runnable kind",
                         e->args.app ? e->args.app->name : "?");
    else
        k->run(e);
    e->t_end = cparsl_now_ns();
    return cparsl_exec_code(e);
}

void cparsl_exec_hold(cparsl_exec_t *e)
{
    cparsl__task_t *t = task_of_exec(e);
    atomic_fetch_add_explicit(&t->holds, 1, memory_order_acq_rel);
    cparsl__task_ref(t);
}

void cparsl_exec_release(cparsl_exec_t *e)
{
    cparsl__task_t *t = task_of_exec(e);
    atomic_fetch_sub_explicit(&t->holds, 1, memory_order_acq_rel);
    cparsl__task_unref(t);
}
