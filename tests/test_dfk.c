/*
 * test_dfk.c - the dataflow kernel through the public API: dependencies,
 * big graphs, failures, retries, join apps, callbacks, waits, DataFutures,
 * executors by label, walltime on threads, concurrent submitters.
 * Every case initializes and finalizes cparsl itself; finalize runs the
 * DFK's invariant checker (CPARSL_DEBUG_CHECK=1, set by CTest).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cparsl/cparsl.h>
#include <cparsl/plugin.h>

#include "check.h"
#include "cparsl_test.h"

/* ---- apps ------------------------------------------------------------------
 */

static int app_add(const cparsl_args_t *a, cparsl_value_t *r,
                   cparsl_error_t *err)
{
    (void)err;
    *r = cparsl_int(cparsl_arg_int(a, 0) + cparsl_arg_int(a, 1));
    return 0;
}
CPARSL_APP(add, app_add, .signature = "ii")

static int app_inc(const cparsl_args_t *a, cparsl_value_t *r,
                   cparsl_error_t *err)
{
    (void)err;
    *r = cparsl_int(cparsl_arg_int(a, 0) + 1);
    return 0;
}
CPARSL_APP(inc, app_inc)

static int app_sum(const cparsl_args_t *a, cparsl_value_t *r,
                   cparsl_error_t *err)
{
    (void)err;
    int64_t s = 0;
    for (size_t i = 0; i < cparsl_args_count(a); i++)
        s += cparsl_arg_int(a, i);
    *r = cparsl_int(s);
    return 0;
}
CPARSL_APP(sum, app_sum)

static int app_fail(const cparsl_args_t *a, cparsl_value_t *r,
                    cparsl_error_t *err)
{
    (void)r;
    return cparsl_error_set(err, CPARSL_EAPP, "fail on purpose (x=%lld)",
                            (long long)cparsl_arg_int(a, 0));
}
CPARSL_APP(fail, app_fail)

/* Fails on its first N tries (N = argument 0). */
static int app_flaky(const cparsl_args_t *a, cparsl_value_t *r,
                     cparsl_error_t *err)
{
    if (cparsl_args_try(a) < cparsl_arg_int(a, 0))
        return cparsl_error_set(err, CPARSL_EAPP, "flaky try %d",
                                cparsl_args_try(a));
    *r = cparsl_int(cparsl_args_try(a));
    return 0;
}
CPARSL_APP(flaky, app_flaky)

static int app_sleep(const cparsl_args_t *a, cparsl_value_t *r,
                     cparsl_error_t *err)
{
    (void)err;
    usleep((useconds_t)(cparsl_arg_double(a, 0) * 1e6));
    *r = cparsl_str("slept");
    return cparsl_value_set_string(r, "slept");
}
CPARSL_APP(nap, app_sleep, .signature = "d")

/* Reads both namespaces: a keyword argument named "outputs" is an app
 * argument, not the framework's outputs. */
static int app_kw(const cparsl_args_t *a, cparsl_value_t *r,
                  cparsl_error_t *err)
{
    const cparsl_value_t *o = cparsl_arg_named(a, "outputs");
    if (!o || o->type != CPARSL_T_INT)
        return cparsl_error_set(err, CPARSL_EAPP, "no kwarg 'outputs'");
    return cparsl_value_printf(r, "kw=%lld files=%zu", (long long)o->u.i,
                               cparsl_args_noutputs(a));
}
CPARSL_APP(kw, app_kw)

static int app_touch(const cparsl_args_t *a, cparsl_value_t *r,
                     cparsl_error_t *err)
{
    (void)r;
    for (size_t i = 0; i < cparsl_args_noutputs(a); i++) {
        FILE *f = fopen(cparsl_args_output(a, i), "w");
        if (!f)
            return cparsl_error_set(err, -errno, "cannot write %s",
                                    cparsl_args_output(a, i));
        fprintf(f, "%zu\n", i);
        fclose(f);
    }
    return 0;
}
CPARSL_APP(touch, app_touch)

static int app_catlen(const cparsl_args_t *a, cparsl_value_t *r,
                      cparsl_error_t *err)
{
    int64_t total = 0;
    for (size_t i = 0; i < cparsl_args_ninputs(a); i++) {
        FILE *f = fopen(cparsl_args_input(a, i), "r");
        if (!f)
            return cparsl_error_set(err, -errno, "cannot read %s",
                                    cparsl_args_input(a, i));
        fseek(f, 0, SEEK_END);
        total += ftell(f);
        fclose(f);
    }
    *r = cparsl_int(total);
    return 0;
}
CPARSL_APP(catlen, app_catlen)

/* fib as a join app whose bodies wait on their children. */
static int join_fib(const cparsl_args_t *a, cparsl_join_t *ret,
                    cparsl_error_t *err)
{
    int64_t n = cparsl_arg_int(a, 0);
    if (n < 2)
        return cparsl_join_return(ret, cparsl_submit("inc", CPARSL_I(n - 1)));
    cparsl_future_t *x = cparsl_submit("fib", CPARSL_I(n - 1));
    cparsl_future_t *y = cparsl_submit("fib", CPARSL_I(n - 2));
    int64_t vx = 0, vy = 0;
    /* Waiting inside a join body must not deadlock the pool. */
    if (cparsl_future_get_int(x, &vx) || cparsl_future_get_int(y, &vy)) {
        cparsl_future_decref(x);
        cparsl_future_decref(y);
        return cparsl_error_set(err, CPARSL_EAPP, "child failed");
    }
    cparsl_future_t *s = cparsl_submit("add", CPARSL_F(x), CPARSL_F(y));
    cparsl_future_decref(x);
    cparsl_future_decref(y);
    return cparsl_join_return(ret, s);
}
CPARSL_JOIN_APP(fib, join_fib)

static int join_list(const cparsl_args_t *a, cparsl_join_t *ret,
                     cparsl_error_t *err)
{
    (void)err;
    int64_t n = cparsl_arg_int(a, 0);
    cparsl_join_list(ret);
    for (int64_t i = 0; i < n; i++)
        cparsl_join_append(ret, cparsl_submit("inc", CPARSL_I(i)));
    return 0;
}
CPARSL_JOIN_APP(many, join_list)

static int join_bad(const cparsl_args_t *a, cparsl_join_t *ret,
                    cparsl_error_t *err)
{
    (void)err;
    cparsl_join_append(ret, cparsl_submit("inc", CPARSL_I(1)));
    cparsl_join_append(ret, cparsl_submit("fail", CPARSL_I(7)));
    (void)a;
    return 0;
}
CPARSL_JOIN_APP(joinbad, join_bad)

static int join_none(const cparsl_args_t *a, cparsl_join_t *ret,
                     cparsl_error_t *err)
{
    (void)a;
    (void)ret;
    (void)err;
    return 0;
}
CPARSL_JOIN_APP(joinnone, join_none)

static int runs_counted;
static int app_counted(const cparsl_args_t *a, cparsl_value_t *r,
                       cparsl_error_t *err)
{
    (void)err;
    __atomic_add_fetch(&runs_counted, 1, __ATOMIC_SEQ_CST);
    usleep(20000);
    if (cparsl_arg_int(a, 0) < 0)
        return cparsl_error_set(err, CPARSL_EAPP, "negative");
    return cparsl_value_printf(r, "n=%lld", (long long)cparsl_arg_int(a, 0));
}
CPARSL_APP(counted, app_counted, .cache = 1)

/* ---- helpers ------------------------------------------------------------- */

/* ---- cases
 * ------------------------------------------------------------------- */

TEST_CASE(dependency_order)
{
    init_yaml(NULL);
    cparsl_future_t *a = cparsl_submit("add", CPARSL_I(1), CPARSL_I(2));
    cparsl_future_t *b = cparsl_submit("add", CPARSL_F(a), CPARSL_I(10));
    cparsl_future_t *c = cparsl_submit("add", CPARSL_F(b), CPARSL_F(a));
    CHECK(get_int(c) == 16, "c");
    CHECK(cparsl_future_done(a) && cparsl_future_done(b), "parents done");
    CHECK(cparsl_future_id(a) < cparsl_future_id(b), "ids grow");
    cparsl_future_decref(a);
    cparsl_future_decref(b);
    cparsl_future_decref(c);
    finalize_ok();
}

TEST_CASE(diamond)
{
    init_yaml(NULL);
    cparsl_future_t *top = cparsl_submit("inc", CPARSL_I(0));
    cparsl_future_t *l = cparsl_submit("inc", CPARSL_F(top));
    cparsl_future_t *r = cparsl_submit("add", CPARSL_F(top), CPARSL_I(5));
    cparsl_future_t *bot = cparsl_submit("add", CPARSL_F(l), CPARSL_F(r));
    CHECK(get_int(bot) == 2 + 6, "diamond");
    cparsl_future_decref(top);
    cparsl_future_decref(l);
    cparsl_future_decref(r);
    cparsl_future_decref(bot);
    finalize_ok();
}

TEST_CASE(fanin_10000)
{
    init_yaml(NULL);
    long n = check_scale(10000);
    cparsl_call_t *c = cparsl_call_create("sum");
    for (long i = 0; i < n; i++) {
        cparsl_future_t *f = cparsl_submit("inc", CPARSL_I(i));
        cparsl_call_arg_future(c, f);
        cparsl_future_decref(f); /* the call holds its own reference */
    }
    cparsl_future_t *s = cparsl_call_submit(c);
    CHECK(get_int(s) == n * (n + 1) / 2, "sum of 1..%ld", n);
    cparsl_future_decref(s);
    finalize_ok();
}

TEST_CASE(chain_100000)
{
    init_yaml(NULL);
    long n = check_scale(100000);
    cparsl_future_t *f = cparsl_submit("inc", CPARSL_I(0));
    for (long i = 1; i < n; i++) {
        cparsl_future_t *g = cparsl_submit("inc", CPARSL_F(f));
        cparsl_future_decref(f);
        f = g;
    }
    CHECK(get_int(f) == n, "chain end");
    cparsl_future_decref(f);
    finalize_ok();
}

TEST_CASE(chain_dep_fail)
{
    /* A failure at the root of a long chain unwinds without recursion. */
    init_yaml(NULL);
    long n = check_scale(100000);
    cparsl_future_t *root = cparsl_submit("fail", CPARSL_I(1));
    cparsl_future_t *f = cparsl_future_incref(root);
    for (long i = 1; i < n; i++) {
        cparsl_future_t *g = cparsl_submit("inc", CPARSL_F(f));
        cparsl_future_decref(f);
        f = g;
    }
    CHECK(cparsl_future_error(f) == -CPARSL_EDEPFAIL, "dep fail: %s",
          cparsl_future_errstr(f));
    CHECK(cparsl_future_error(root) == -CPARSL_EAPP, "root");
    cparsl_future_decref(f);
    cparsl_future_decref(root);
    finalize_ok();
}

TEST_CASE(failure_propagation)
{
    init_yaml(NULL);
    cparsl_future_t *bad = cparsl_submit("fail", CPARSL_I(42));
    cparsl_future_t *ok = cparsl_submit("inc", CPARSL_I(1));
    cparsl_future_t *child = cparsl_submit("add", CPARSL_F(ok), CPARSL_F(bad));
    cparsl_future_t *grand = cparsl_submit("inc", CPARSL_F(child));
    CHECK(cparsl_future_error(bad) == -CPARSL_EAPP, "bad");
    CHECK(strstr(cparsl_future_errstr(bad), "fail on purpose (x=42)"),
          "text: %s", cparsl_future_errstr(bad));
    CHECK(cparsl_future_error(child) == -CPARSL_EDEPFAIL, "child");
    char want[64];
    snprintf(want, sizeof want, "task %llu (app 'fail')",
             (unsigned long long)cparsl_future_id(bad));
    CHECK(strstr(cparsl_future_errstr(child), want), "names parent: %s",
          cparsl_future_errstr(child));
    CHECK(strstr(cparsl_future_errstr(child), "fail on purpose"),
          "carries the first error: %s", cparsl_future_errstr(child));
    CHECK(cparsl_future_error(grand) == -CPARSL_EDEPFAIL, "grandchild");
    snprintf(want, sizeof want, "task %llu (app 'add')",
             (unsigned long long)cparsl_future_id(child));
    CHECK(strstr(cparsl_future_errstr(grand), want), "names child: %s",
          cparsl_future_errstr(grand));
    const cparsl_value_t *v;
    CHECK(cparsl_future_get(child, &v) == -CPARSL_EDEPFAIL, "get fails");
    int64_t x;
    CHECK(cparsl_future_get_int(ok, &x) == 0 && x == 2, "ok unaffected");
    const char *s;
    CHECK(cparsl_future_get_string(ok, &s) == -CPARSL_ETYPE, "type check");
    cparsl_future_decref(bad);
    cparsl_future_decref(ok);
    cparsl_future_decref(child);
    cparsl_future_decref(grand);
    finalize_ok();
}

static int handler_calls;
static double retry_cost(uint64_t id, const char *app, int try_no, int code,
                         const char *text, void *arg)
{
    (void)id;
    (void)try_no;
    (void)code;
    (void)arg;
    __atomic_add_fetch(&handler_calls, 1, __ATOMIC_SEQ_CST);
    CHECK(strcmp(app, "flaky") == 0 && strstr(text, "flaky try"),
          "handler sees the failure: %s %s", app, text);
    return 0.5; /* two failures cost one retry */
}

TEST_CASE(retries)
{
    init_yaml("retries: 2\n");
    /* Fails twice, then succeeds: retries 2 from the config allow 3 tries */
    cparsl_future_t *a = cparsl_submit("flaky", CPARSL_I(2));
    CHECK(get_int(a) == 2, "third try succeeded");
    /* Fails 3 times: one too many. */
    cparsl_future_t *b = cparsl_submit("flaky", CPARSL_I(3));
    CHECK(cparsl_future_error(b) == -CPARSL_EAPP, "b fails");
    CHECK(strstr(cparsl_future_errstr(b), "after 3 tries"), "b text: %s",
          cparsl_future_errstr(b));
    /* Per call: retries 0 overrides the config. */
    cparsl_call_t *c = cparsl_call_create("flaky");
    cparsl_call_arg(c, cparsl_int(1));
    cparsl_call_retries(c, 0);
    cparsl_future_t *fc = cparsl_call_submit(c);
    CHECK(cparsl_future_error(fc) == -CPARSL_EAPP, "per-call retries 0");
    /* A handler that weighs each failure at 0.5: 4 failures fit in 2. */
    CHECK(cparsl_set_retry_handler(retry_cost, NULL) == 0, "handler");
    cparsl_future_t *d = cparsl_submit("flaky", CPARSL_I(4));
    CHECK(get_int(d) == 4, "handler allowed 5 tries");
    CHECK(handler_calls == 4, "handler called per failure: %d", handler_calls);
    cparsl_future_decref(a);
    cparsl_future_decref(b);
    cparsl_future_decref(fc);
    cparsl_future_decref(d);
    finalize_ok();
}

TEST_CASE(testexec_failures)
{
    init_yaml("executors:\n"
              "  - {type: testexec, label: flaky, fail_tries: 1}\n"
              "  - {type: testexec, label: broken, fail_apps: inc}\n"
              "  - {type: testexec, label: refusing, refuse: true}\n");
    cparsl_call_t *c = cparsl_call_create("add");
    cparsl_call_arg(c, cparsl_int(2));
    cparsl_call_arg(c, cparsl_int(3));
    cparsl_call_executors(c, "flaky");
    cparsl_call_retries(c, 1);
    cparsl_future_t *a = cparsl_call_submit(c);
    CHECK(get_int(a) == 5, "retry after an injected failure");

    c = cparsl_call_create("inc");
    cparsl_call_arg(c, cparsl_int(1));
    cparsl_call_executors(c, "broken");
    cparsl_future_t *b = cparsl_call_submit(c);
    CHECK(cparsl_future_error(b) == -CPARSL_EEXECUTOR, "injected");
    CHECK(strstr(cparsl_future_errstr(b), "injected failure"), "text %s",
          cparsl_future_errstr(b));

    c = cparsl_call_create("inc");
    cparsl_call_arg(c, cparsl_int(1));
    cparsl_call_executors(c, "refusing");
    cparsl_future_t *r = cparsl_call_submit(c);
    CHECK(cparsl_future_error(r) == -CPARSL_EEXECUTOR, "refused");
    CHECK(strstr(cparsl_future_errstr(r), "refusing"), "names it: %s",
          cparsl_future_errstr(r));

    c = cparsl_call_create("inc");
    cparsl_call_arg(c, cparsl_int(1));
    cparsl_call_executors(c, "nosuch");
    cparsl_future_t *n = cparsl_call_submit(c);
    CHECK(cparsl_future_error(n) == -CPARSL_EEXECUTOR, "unknown label");
    CHECK(strstr(cparsl_future_errstr(n), "no executor labelled 'nosuch'"),
          "text: %s", cparsl_future_errstr(n));
    cparsl_future_decref(a);
    cparsl_future_decref(b);
    cparsl_future_decref(r);
    cparsl_future_decref(n);
    finalize_ok();
}

TEST_CASE(join_fib15)
{
    init_yaml(NULL);
    cparsl_future_t *f = cparsl_submit("fib", CPARSL_I(15));
    CHECK(get_int(f) == 610, "fib(15)");
    cparsl_future_decref(f);
    finalize_ok();
}

TEST_CASE(join_lists)
{
    init_yaml(NULL);
    cparsl_future_t *e = cparsl_submit("many", CPARSL_I(0));
    const cparsl_value_t *v = NULL;
    CHECK(cparsl_future_get(e, &v) == 0 && v->type == CPARSL_T_LIST &&
              v->u.list.n == 0,
          "empty list");
    cparsl_future_t *m = cparsl_submit("many", CPARSL_I(5));
    REQUIRE(cparsl_future_get(m, &v) == 0 && v->type == CPARSL_T_LIST &&
                v->u.list.n == 5,
            "list of 5: %s", cparsl_future_errstr(m));
    for (size_t i = 0; i < 5; i++)
        CHECK(v->u.list.p[i].u.i == (int64_t)i + 1, "item %zu", i);
    cparsl_future_t *bad = cparsl_submit("joinbad", CPARSL_I(0));
    CHECK(cparsl_future_error(bad) == -CPARSL_EJOIN, "inner failure");
    CHECK(strstr(cparsl_future_errstr(bad), "app 'fail'") &&
              strstr(cparsl_future_errstr(bad), "fail on purpose (x=7)"),
          "names the inner task: %s", cparsl_future_errstr(bad));
    cparsl_future_t *none = cparsl_submit("joinnone", CPARSL_I(0));
    CHECK(cparsl_future_error(none) == -CPARSL_EJOIN, "no future returned");
    CHECK(strstr(cparsl_future_errstr(none), "returned no future"), "%s",
          cparsl_future_errstr(none));
    cparsl_future_decref(e);
    cparsl_future_decref(m);
    cparsl_future_decref(bad);
    cparsl_future_decref(none);
    finalize_ok();
}

struct cb_state {
    pthread_mutex_t mu;
    int calls;
    int order[8];
    pthread_t thread;
};

static void cb_record(cparsl_future_t *f, void *arg)
{
    struct cb_state *s = arg;
    int64_t v = 0;
    cparsl_future_get_int(f, &v);
    pthread_mutex_lock(&s->mu);
    if (s->calls < 8)
        s->order[s->calls] = (int)v;
    s->calls++;
    s->thread = pthread_self();
    pthread_mutex_unlock(&s->mu);
}

static void cb_submit(cparsl_future_t *f, void *arg)
{
    /* A callback may submit more work and wait on it. */
    cparsl_future_t *g = cparsl_submit("inc", CPARSL_F(f));
    int64_t v = 0;
    cparsl_future_get_int(g, &v);
    *(int64_t *)arg = v;
    cparsl_future_decref(g);
}

TEST_CASE(callbacks)
{
    init_yaml(NULL);
    struct cb_state s = {.mu = PTHREAD_MUTEX_INITIALIZER};
    cparsl_future_t *slow = cparsl_submit("nap", CPARSL_D(0.1));
    cparsl_future_t *f =
        cparsl_submit("add", CPARSL_F(slow) /* string! */, CPARSL_I(1));
    cparsl_future_t *g = cparsl_submit("inc", CPARSL_I(41));
    CHECK(cparsl_future_then(g, cb_record, &s) == 0, "then");
    CHECK(cparsl_future_wait(g, -1) == 0, "wait");
    /* Added after completion: still queued, never run inline. */
    CHECK(cparsl_future_then(g, cb_record, &s) == 0, "then after done");
    int64_t got = 0;
    CHECK(cparsl_future_then(g, cb_submit, &got) == 0, "then submit");
    finalize_ok(); /* waits for the callbacks and what they submitted */
    CHECK(s.calls == 2 && s.order[0] == 42 && s.order[1] == 42, "calls %d",
          s.calls);
    CHECK(!pthread_equal(s.thread, pthread_self()), "not on my thread");
    CHECK(got == 43, "callback's own task: %lld", (long long)got);
    /* The signature "ii" rejects a string argument from a future. */
    CHECK(cparsl_future_error(f) == -CPARSL_EARGS, "signature: %s",
          cparsl_future_errstr(f));
    CHECK(strstr(cparsl_future_errstr(f), "argument 0 is string"), "%s",
          cparsl_future_errstr(f));
    cparsl_future_decref(slow);
    cparsl_future_decref(f);
    cparsl_future_decref(g);
}

TEST_CASE(wait_timeout_all_any)
{
    init_yaml(NULL);
    cparsl_future_t *slow = cparsl_submit("nap", CPARSL_D(0.5));
    int64_t t0 = cparsl_mono_ns();
    CHECK(cparsl_future_wait(slow, 0.05) == -ETIMEDOUT, "times out");
    int64_t dt = cparsl_mono_ns() - t0;
    CHECK(dt >= 40000000 && dt < 400000000, "waited ~50 ms: %lld ns",
          (long long)dt);
    CHECK(!cparsl_future_done(slow), "not done yet");
    cparsl_future_t *fast = cparsl_submit("inc", CPARSL_I(1));
    cparsl_future_t *fs[2] = {slow, fast};
    size_t idx = 9;
    CHECK(cparsl_future_wait_any(fs, 2, 5, &idx) == 0 && idx == 1,
          "any picks the fast one: %zu", idx);
    CHECK(cparsl_future_wait_all(fs, 2, 0.01) == -ETIMEDOUT ||
              cparsl_future_done(slow),
          "all times out while slow runs");
    cparsl_future_t *all = cparsl_future_all(fs, 2);
    CHECK(cparsl_future_wait(all, 5) == 0 && cparsl_future_error(all) == 0,
          "all done");
    CHECK(cparsl_future_done(slow), "slow done after all");
    cparsl_future_t *bad = cparsl_submit("fail", CPARSL_I(3));
    cparsl_future_t *fs2[3] = {fast, bad, slow};
    cparsl_future_t *all2 = cparsl_future_all(fs2, 3);
    CHECK(cparsl_future_error(all2) == -CPARSL_EAPP, "all fails: %s",
          cparsl_future_errstr(all2));
    CHECK(strstr(cparsl_future_errstr(all2), "future 1 of 3"), "%s",
          cparsl_future_errstr(all2));
    cparsl_future_t *none = cparsl_future_all(NULL, 0);
    CHECK(cparsl_future_wait(none, 1) == 0 && !cparsl_future_error(none),
          "empty all");
    cparsl_future_decref(none);
    cparsl_future_decref(all);
    cparsl_future_decref(all2);
    cparsl_future_decref(bad);
    cparsl_future_decref(slow);
    cparsl_future_decref(fast);
    finalize_ok();
}

TEST_CASE(datafutures)
{
    char dir[] = "/tmp/cparsl-dfXXXXXX";
    REQUIRE(mkdtemp(dir), "mkdtemp");
    char o0[128], o1[128];
    snprintf(o0, sizeof o0, "%s/a.txt", dir);
    snprintf(o1, sizeof o1, "file://%s/b.txt", dir);
    init_yaml(NULL);
    cparsl_call_t *c = cparsl_call_create("touch");
    cparsl_call_output(c, o0);
    cparsl_call_output(c, o1);
    cparsl_future_t *t = cparsl_call_submit(c);
    cparsl_future_t *d0 = cparsl_future_output(t, 0);
    cparsl_future_t *d1 = cparsl_future_output(t, 1);
    CHECK(cparsl_future_output(t, 2) == NULL, "no third output");
    c = cparsl_call_create("catlen");
    cparsl_call_input_future(c, d0);
    cparsl_call_input_future(c, d1);
    cparsl_future_t *n = cparsl_call_submit(c);
    CHECK(get_int(n) == 4, "read both outputs after the producer");
    const char *p = NULL;
    CHECK(cparsl_future_get_string(d1, &p) == 0 && strstr(p, "b.txt"),
          "DataFuture value is the file");
    /* keyword "outputs" is an app argument, apart from the framework's */
    c = cparsl_call_create("kw");
    cparsl_call_kwarg(c, "outputs", cparsl_int(7));
    cparsl_call_output(c, o0);
    cparsl_future_t *k = cparsl_call_submit(c);
    const char *s = NULL;
    CHECK(cparsl_future_get_string(k, &s) == 0 &&
              strcmp(s, "kw=7 files=1") == 0,
          "namespaces apart: %s", s ? s : cparsl_future_errstr(k));
    /* A DataFuture of a failed producer fails and names it. */
    c = cparsl_call_create("fail");
    cparsl_call_arg(c, cparsl_int(5));
    cparsl_call_output(c, o0);
    cparsl_future_t *bad = cparsl_call_submit(c);
    cparsl_future_t *dbad = cparsl_future_output(bad, 0);
    CHECK(cparsl_future_error(dbad) == -CPARSL_EDEPFAIL, "bad output: %s",
          cparsl_future_errstr(dbad));
    c = cparsl_call_create("catlen");
    cparsl_call_input_future(c, dbad);
    cparsl_future_t *nbad = cparsl_call_submit(c);
    CHECK(cparsl_future_error(nbad) == -CPARSL_EDEPFAIL &&
              strstr(cparsl_future_errstr(nbad), "app 'fail'"),
          "consumer names the producer: %s", cparsl_future_errstr(nbad));
    cparsl_future_t *all[] = {t, d0, d1, n, k, bad, dbad, nbad};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        cparsl_future_decref(all[i]);
    finalize_ok();
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
}

TEST_CASE(bad_calls)
{
    init_yaml(NULL);
    cparsl_future_t *u = cparsl_submit("no_such_app", CPARSL_I(1));
    CHECK(cparsl_future_error(u) == -CPARSL_ENOAPP, "unknown app");
    CHECK(strstr(cparsl_future_errstr(u), "no_such_app"), "%s",
          cparsl_future_errstr(u));
    cparsl_future_t *few = cparsl_submit("add", CPARSL_I(1));
    CHECK(cparsl_future_error(few) == -CPARSL_EARGS &&
              strstr(cparsl_future_errstr(few), "1 argument given, 2"),
          "%s", cparsl_future_errstr(few));
    cparsl_future_t *many =
        cparsl_submit("add", CPARSL_I(1), CPARSL_I(2), CPARSL_I(3));
    CHECK(cparsl_future_error(many) == -CPARSL_EARGS, "too many");
    cparsl_call_t *c = cparsl_call_create("inc");
    cparsl_call_arg(c, cparsl_int(1));
    CHECK(cparsl_call_walltime(c, -1) < 0, "negative walltime refused");
    cparsl_future_t *w = cparsl_call_submit(c);
    CHECK(cparsl_future_error(w) == -EINVAL &&
              strstr(cparsl_future_errstr(w), "walltime"),
          "bad call fails its future: %s", cparsl_future_errstr(w));
    /* A double where an int is asked, with the signature "d" for nap. */
    cparsl_future_t *conv = cparsl_submit("nap", CPARSL_I(0));
    CHECK(cparsl_future_error(conv) == 0, "int accepted for d");
    cparsl_future_decref(u);
    cparsl_future_decref(few);
    cparsl_future_decref(many);
    cparsl_future_decref(w);
    cparsl_future_decref(conv);
    finalize_ok();
    /* After finalize, a submission fails cleanly. */
    cparsl_future_t *late = cparsl_submit("inc", CPARSL_I(1));
    CHECK(cparsl_future_error(late) == -CPARSL_ESHUTDOWN, "late");
    cparsl_future_decref(late);
}

TEST_CASE(walltime_thread)
{
    init_yaml("executors:\n"
              "  - {type: threadpool, max_threads: 2, zombie_wait: 10}\n");
    cparsl_call_t *c = cparsl_call_create("nap");
    cparsl_call_arg(c, cparsl_double(1.0));
    cparsl_call_walltime(c, 0.1);
    int64_t t0 = cparsl_mono_ns();
    cparsl_future_t *f = cparsl_call_submit(c);
    CHECK(cparsl_future_error(f) == -CPARSL_EWALLTIME, "timed out: %s",
          cparsl_future_errstr(f));
    int64_t dt = cparsl_mono_ns() - t0;
    CHECK(dt < 800000000, "failed at the deadline, not at the end: %lld",
          (long long)dt);
    CHECK(strstr(cparsl_future_errstr(f), "process isolation"), "%s",
          cparsl_future_errstr(f));
    /* The pool still has its capacity: a replacement took the slot. */
    CHECK(cparsl_capacity() == 2, "capacity %zu", cparsl_capacity());
    cparsl_future_t *g = cparsl_submit("inc", CPARSL_I(1));
    CHECK(get_int(g) == 2, "pool still works");
    cparsl_future_decref(f);
    cparsl_future_decref(g);
    finalize_ok(); /* waits for the zombie (1 s) within zombie_wait */
}

TEST_CASE(walltime_zombie_reported)
{
    init_yaml("executors:\n"
              "  - {type: threadpool, max_threads: 1, zombie_wait: 0.2}\n");
    cparsl_call_t *c = cparsl_call_create("nap");
    cparsl_call_arg(c, cparsl_double(1.5));
    cparsl_call_walltime(c, 0.05);
    cparsl_future_t *f = cparsl_call_submit(c);
    CHECK(cparsl_future_error(f) == -CPARSL_EWALLTIME, "timed out");
    cparsl_future_decref(f);
    cparsl_error_t err;
    int rc = cparsl_finalize(&err);
    CHECK(rc == -CPARSL_EWALLTIME && strstr(err.text, "still running"),
          "finalize reports the thread: %d %s", rc, err.text);
    sleep(2); /* let it finish before exit, so nothing is reported leaked */
}

struct submitter {
    int base;
    int64_t total;
};

static void *submit_thread(void *arg)
{
    struct submitter *s = arg;
    cparsl_future_t *fs[500];
    for (int i = 0; i < 500; i++)
        fs[i] = cparsl_submit("add", CPARSL_I(s->base), CPARSL_I(i));
    for (int i = 0; i < 500; i++) {
        int64_t v = 0;
        if (cparsl_future_get_int(fs[i], &v) == 0)
            s->total += v;
        cparsl_future_decref(fs[i]);
    }
    return NULL;
}

TEST_CASE(threaded_submit)
{
    init_yaml(NULL);
    pthread_t th[4];
    struct submitter s[4];
    for (int i = 0; i < 4; i++) {
        s[i] = (struct submitter){.base = i * 1000};
        pthread_create(&th[i], NULL, submit_thread, &s[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK(s[i].total == 500LL * i * 1000 + 499 * 500 / 2, "thread %d", i);
    }
    finalize_ok();
}

TEST_CASE(memoization)
{
    init_yaml(NULL);
    runs_counted = 0;
    cparsl_future_t *f[6];
    f[0] = cparsl_submit("counted", CPARSL_I(5));
    f[1] = cparsl_submit("counted", CPARSL_I(5)); /* while f[0] runs */
    CHECK(cparsl_future_wait(f[0], -1) == 0, "first");
    f[2] = cparsl_submit("counted", CPARSL_I(5)); /* after it finished */
    f[3] = cparsl_submit("counted", CPARSL_I(6)); /* other arguments */
    cparsl_call_t *c = cparsl_call_create("counted");
    cparsl_call_arg(c, cparsl_int(5));
    cparsl_call_cache(c, false); /* this call opts out */
    f[4] = cparsl_call_submit(c);
    f[5] = cparsl_submit("counted", CPARSL_I(-1));
    cparsl_future_t *again = cparsl_submit("counted", CPARSL_I(-1));
    const char *s;
    for (int i = 0; i < 5; i++)
        CHECK(cparsl_future_get_string(f[i], &s) == 0 &&
                  strcmp(s, i == 3 ? "n=6" : "n=5") == 0,
              "result %d", i);
    CHECK(cparsl_future_error(again) == -CPARSL_EAPP &&
              strstr(cparsl_future_errstr(again), "memoized from task"),
          "errors are memoized in a run: %s", cparsl_future_errstr(again));
    CHECK(runs_counted == 4, "ran 4 times (5, 6, uncached 5, -1): %d",
          runs_counted);
    for (int i = 0; i < 6; i++)
        cparsl_future_decref(f[i]);
    cparsl_future_decref(again);
    finalize_ok();
    /* app_cache: false turns memoization off everywhere. */
    init_yaml("app_cache: false\n");
    runs_counted = 0;
    f[0] = cparsl_submit("counted", CPARSL_I(5));
    f[1] = cparsl_submit("counted", CPARSL_I(5));
    cparsl_future_wait_all(f, 2, -1);
    CHECK(runs_counted == 2, "no memo with app_cache false: %d", runs_counted);
    cparsl_future_decref(f[0]);
    cparsl_future_decref(f[1]);
    finalize_ok();
}

/* The states one task went through, from the tasklog store's trace. */
static void task_states(const char *log, uint64_t id, char *out, size_t cap)
{
    FILE *f = fopen(log, "r");
    char line[512], pat[64];
    size_t len = 0;
    out[0] = '\0';
    snprintf(pat, sizeof pat, " task %llu app ", (unsigned long long)id);
    while (f && fgets(line, sizeof line, f)) {
        if (!strstr(line, pat))
            continue;
        char *arrow = strstr(line, "-> ");
        if (!arrow)
            continue;
        char to[32] = "";
        sscanf(arrow + 3, "%31s", to);
        len +=
            (size_t)snprintf(out + len, cap - len, "%s%s", len ? "," : "", to);
    }
    if (f)
        fclose(f);
}

TEST_CASE(store_sees_states)
{
    init_yaml("store: {type: tasklog}\n");
    cparsl_future_t *ok = cparsl_submit("inc", CPARSL_I(1));
    cparsl_call_t *c = cparsl_call_create("flaky");
    cparsl_call_arg(c, cparsl_int(1));
    cparsl_call_retries(c, 1);
    cparsl_future_t *retried = cparsl_call_submit(c);
    cparsl_future_t *bad = cparsl_submit("fail", CPARSL_I(1));
    cparsl_future_t *dep = cparsl_submit("inc", CPARSL_F(bad));
    cparsl_future_t *m1 = cparsl_submit("counted", CPARSL_I(9));
    cparsl_future_wait(m1, -1);
    cparsl_future_t *m2 = cparsl_submit("counted", CPARSL_I(9));
    cparsl_future_t *j = cparsl_submit("many", CPARSL_I(1));
    cparsl_future_t *all[] = {ok, retried, bad, dep, m1, m2, j};
    cparsl_future_wait_all(all, 7, -1);
    finalize_ok();
    char log[4200], got[512];
    snprintf(log, sizeof log, "%s/tasks.log", cparsl_run_dir());
    struct {
        cparsl_future_t *f;
        const char *want;
    } exp[] = {
        {ok, "pending,launched,running,running_ended,exec_done"},
        {retried, "pending,launched,running,fail_retryable,launched,running,"
                  "running_ended,exec_done"},
        {bad, "pending,launched,running,failed"},
        {dep, "pending,dep_fail"},
        {m2, "pending,memo_done"},
        {j, "pending,launched,running,joining,exec_done"},
    };
    for (size_t i = 0; i < sizeof exp / sizeof exp[0]; i++) {
        task_states(log, cparsl_future_id(exp[i].f), got, sizeof got);
        CHECK(strcmp(got, exp[i].want) == 0, "task %llu: %s, want %s",
              (unsigned long long)cparsl_future_id(exp[i].f), got, exp[i].want);
    }
    FILE *f = fopen(log, "r");
    char line[512], want[64];
    bool edge = false;
    snprintf(want, sizeof want, " dep %llu <- %llu\n",
             (unsigned long long)cparsl_future_id(dep),
             (unsigned long long)cparsl_future_id(bad));
    while (f && fgets(line, sizeof line, f))
        edge |= strstr(line, want) != NULL;
    if (f)
        fclose(f);
    CHECK(edge, "dependency edge recorded");
    for (size_t i = 0; i < 7; i++)
        cparsl_future_decref(all[i]);
}

static int app_nofn_dummy;
TEST_CASE(offline_and_misuse)
{
    /* Before init: composites and DataFutures of failed futures resolve. */
    cparsl_future_t *early = cparsl_submit("inc", CPARSL_I(1));
    CHECK(cparsl_future_error(early) == -CPARSL_ESHUTDOWN, "before init");
    cparsl_future_t *eall = cparsl_future_all(&early, 1);
    CHECK(cparsl_future_error(eall) == -CPARSL_ESHUTDOWN, "all of failed");
    CHECK(cparsl_future_output(early, 0) == NULL, "no outputs");
    CHECK(cparsl_wait_all_tasks(1) == -CPARSL_ESHUTDOWN, "wait_all_tasks");
    cparsl_future_decref(eall);
    cparsl_future_decref(early);

    /* An incomplete descriptor is refused at registration. */
    static cparsl_app_t nofn = {.name = "nofn", .kind = CPARSL_KIND_C};
    CHECK(cparsl_app_register(&nofn) == -EINVAL, "C app without .fn");
    CHECK(cparsl_app_find("nofn") == NULL, "not registered");
    (void)app_nofn_dummy;

    init_yaml(NULL);
    cparsl_call_t *c = cparsl_call_create("touch");
    cparsl_call_output(c, "/tmp/cparsl-offline-test.txt");
    cparsl_future_t *t = cparsl_call_submit(c);
    cparsl_future_t *slow[3];
    for (int i = 0; i < 3; i++)
        slow[i] = cparsl_submit("nap", CPARSL_D(0.05));
    CHECK(cparsl_wait_all_tasks(0.001) == -ETIMEDOUT, "not yet");
    CHECK(cparsl_wait_all_tasks(-1) == 0, "all done");
    for (int i = 0; i < 3; i++) {
        CHECK(cparsl_future_done(slow[i]), "done %d", i);
        cparsl_future_decref(slow[i]);
    }
    /* A join app refuses a walltime it could not enforce. */
    c = cparsl_call_create("many");
    cparsl_call_arg(c, cparsl_int(1));
    cparsl_call_walltime(c, 1);
    cparsl_future_t *jw = cparsl_call_submit(c);
    CHECK(cparsl_future_error(jw) == -EINVAL &&
              strstr(cparsl_future_errstr(jw), "walltime does not apply"),
          "%s", cparsl_future_errstr(jw));
    cparsl_future_decref(jw);
    finalize_ok();
    /* After finalize: DataFutures and composites of done futures work. */
    cparsl_future_t *d0 = cparsl_future_output(t, 0);
    const char *p = NULL;
    CHECK(cparsl_future_get_string(d0, &p) == 0 &&
              strstr(p, "cparsl-offline-test.txt"),
          "DataFuture after finalize: %s", cparsl_future_errstr(d0));
    cparsl_future_t *pair[2] = {t, d0};
    cparsl_future_t *all = cparsl_future_all(pair, 2);
    cparsl_future_t *any = cparsl_future_any(pair, 2);
    int64_t idx = -1;
    CHECK(cparsl_future_error(all) == 0, "all after finalize");
    CHECK(cparsl_future_get_int(any, &idx) == 0 && idx == 0, "any: %lld",
          (long long)idx);
    cparsl_future_decref(all);
    cparsl_future_decref(any);
    cparsl_future_decref(d0);
    cparsl_future_decref(t);
    unlink("/tmp/cparsl-offline-test.txt");
}

static const check_case_t cases[] = {
    TEST_ENTRY(offline_and_misuse),
    TEST_ENTRY(store_sees_states),
    TEST_ENTRY(memoization),
    TEST_ENTRY(dependency_order),
    TEST_ENTRY(diamond),
    TEST_ENTRY(fanin_10000),
    TEST_ENTRY(chain_100000),
    TEST_ENTRY(chain_dep_fail),
    TEST_ENTRY(failure_propagation),
    TEST_ENTRY(retries),
    TEST_ENTRY(testexec_failures),
    TEST_ENTRY(join_fib15),
    TEST_ENTRY(join_lists),
    TEST_ENTRY(callbacks),
    TEST_ENTRY(wait_timeout_all_any),
    TEST_ENTRY(datafutures),
    TEST_ENTRY(bad_calls),
    TEST_ENTRY(walltime_thread),
    TEST_ENTRY(walltime_zombie_reported),
    TEST_ENTRY(threaded_submit),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    /* Each case makes its own run dir: keep them out of the source tree,
     * in a directory removed at exit. */
    atexit(cleanup_at_exit);
    enter_tmp();
    return check_main(argc, argv, cases);
}
