/*
 * cparsl/cparsl.h - the user API: Parsl's programming model in C.
 *
 *   apps     C functions, bash command templates and join apps, registered
 *            by name before main on every rank (CPARSL_APP & co.)
 *   calls    submitting an app returns a future at once; arguments may be
 *            values or futures, and a future argument is a dependency
 *   futures  done / wait / typed results / error / then / wait_all / any
 *   files    FILE values; an app's outputs are DataFutures
 *
 * A program looks like:
 *
 *     int rc = cparsl_init(&argc, &argv, NULL, &err);
 *     if (rc < 0) { fprintf(stderr, "%s\n", err.text); return 1; }
 *     if (rc == CPARSL_SERVED) return cparsl_finalize(NULL) ? 1 : 0;
 *     ... submit apps, wait for futures ...
 *     return cparsl_finalize(&err) ? 1 : 0;
 *
 * Unless said otherwise, calls are thread-safe and may be made from any
 * user thread between cparsl_init and cparsl_finalize.
 */
#ifndef CPARSL_CPARSL_H
#define CPARSL_CPARSL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cparsl/config.h>
#include <cparsl/error.h>
#include <cparsl/value.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CPARSL_VERSION_MAJOR  0
#define CPARSL_VERSION_MINOR  1
#define CPARSL_VERSION_STRING "0.1.0"

typedef struct cparsl_future cparsl_future_t;
typedef struct cparsl_call cparsl_call_t;
typedef struct cparsl_args cparsl_args_t;
typedef struct cparsl_join cparsl_join_t;

/* ==== init / finalize =================================================== */

/* Roles cparsl_init returns. */
enum cparsl_role {
    CPARSL_CLIENT = 1, /* go on with the workflow, then cparsl_finalize */
    CPARSL_SERVED = 2  /* this rank served workers until the client
                          finished: call cparsl_finalize and exit */
};

/*
 * Start cparsl.  The configuration is, in increasing precedence: the
 * defaults, 'cfg' (may be NULL; borrowed, may be destroyed after the
 * call), the YAML file named by the CPARSL_CONFIG environment variable,
 * and the file named by a "--cparsl-config=PATH" (or "--cparsl-config
 * PATH") argument, which is removed from argc and argv (both may be NULL).
 *
 * Returns CPARSL_CLIENT or CPARSL_SERVED, or a negative code with the
 * reason in 'err' (a bad config names the key, file and line).  After a
 * failure nothing is left running and cparsl_init may be called again.
 */
int cparsl_init(int *argc, char ***argv, const cparsl_config_t *cfg,
                cparsl_error_t *err);

/*
 * Wait for every submitted task to finish, run the last callbacks, shut
 * the executors down, flush the store and release everything.  Futures the
 * user still holds stay readable (their values were copied out) but must
 * still be released with cparsl_future_decref.  Returns 0, or a negative
 * code if something could not be shut down cleanly (the reason in err;
 * for example C-app threads that outlived their walltime).
 */
int cparsl_finalize(cparsl_error_t *err);

/*
 * Parsl's wait_for_current_tasks: wait until every task submitted so far
 * (and any they or their callbacks submitted) is finished, or 'timeout'
 * seconds pass (< 0: forever).  0, -ETIMEDOUT, or -CPARSL_ESHUTDOWN when
 * cparsl is not running.
 */
int cparsl_wait_all_tasks(double timeout);

/*
 * Write everything the store was told so far (every state change of every
 * task that reached one before the call) to disk, and wait until it is
 * there: with the hdf5 store, a reader then sees those tasks' rows, and a
 * SIGKILL after this keeps them.  0, the store's error (a negative code,
 * the reason in err), or -CPARSL_ESHUTDOWN when cparsl is not running.
 * The store also flushes on its own timer, on SIGTERM/SIGUSR1 and at
 * cparsl_finalize; this is for a workflow that wants a known point.
 */
int cparsl_flush(cparsl_error_t *err);

/*
 * Checkpoint now (Parsl's dfk.checkpoint()): the results of memoized
 * tasks finished since the last checkpoint go to the run file's
 * /checkpoint table, which is then flushed; a later run that names this
 * file (or run dir) in checkpoint_files answers those calls from it
 * instead of running them.  Any checkpoint_mode but none; with manual,
 * this is the only checkpoint besides the one at finalize.  0, the
 * store's error, -EINVAL with checkpoint_mode none, or -CPARSL_ESHUTDOWN.
 */
int cparsl_checkpoint(cparsl_error_t *err);

/*
 * The signal (SIGTERM or SIGUSR1) that asked this run to stop, or 0.  On
 * such a signal cparsl drains: tasks already running finish and their
 * results are delivered, tasks not yet started fail with
 * -CPARSL_ESHUTDOWN, and so do new submissions.  A workflow loop can test
 * this to stop submitting and go to cparsl_finalize.
 */
int cparsl_stop_requested(void);

/* True between a successful cparsl_init and cparsl_finalize. */
bool cparsl_initialized(void);

/* The run's directory ("runinfo/000", ...); "" before cparsl_init. */
const char *cparsl_run_dir(void);

/* Number of worker slots the executors currently have (all executors). */
size_t cparsl_capacity(void);

/* ==== apps ============================================================== */

/*
 * A C app.  'args' holds the resolved argument values (futures already
 * replaced by their results); they are valid only during the call.
 * On success, store the result in *result (nil if left alone) and return
 * 0; it may borrow nothing from 'args' (copy with cparsl_value_copy).
 * On failure return cparsl_error_set(err, CPARSL_EAPP, "...") (any
 * negative code); the future then fails with that code and text.
 */
typedef int (*cparsl_app_fn)(const cparsl_args_t *args, cparsl_value_t *result,
                             cparsl_error_t *err);

/*
 * A join app's body.  It runs on a client-side thread (never on a worker,
 * never on the DFK's own thread) and may wait on other futures.  It
 * returns futures through 'ret': one with cparsl_join_return (the join's
 * value is that future's value) or several with cparsl_join_append
 * (the value is a LIST of their values; cparsl_join_list with none
 * appended gives an empty list).
 */
typedef int (*cparsl_join_fn)(const cparsl_args_t *args, cparsl_join_t *ret,
                              cparsl_error_t *err);

/* The kind names the built-in app kinds register under. */
#define CPARSL_KIND_C    "c"
#define CPARSL_KIND_BASH "bash"
#define CPARSL_KIND_JOIN "join"

/*
 * An app descriptor.  Fill it with designated initializers (the macros
 * below do) and register it; it must stay valid for the whole run (a
 * static object is the usual case).
 */
typedef struct cparsl_app {
    const char *name;    /* unique; the same on every rank */
    const char *kind;    /* CPARSL_KIND_C / _BASH / _JOIN or a plugin's */
    cparsl_app_fn fn;    /* C apps */
    cparsl_join_fn join; /* join apps */
    const char *command; /* bash apps: the command template */
    /*
     * Optional positional signature checked before the app runs, one
     * letter per argument: n nil, b bool, i int, d double (an int is
     * accepted and converted), s string, y bytes, I int array, D double
     * array, f file, l list, '?' anything; a trailing '*' allows more
     * arguments of any type.  NULL: unchecked.
     */
    const char *signature;
    const char *executors;   /* default executor labels, comma-separated */
    const char *version;     /* for memo keys; NULL: the build's id */
    int retries;             /* default retries for calls; <0: config's */
    double walltime;         /* default walltime in seconds; 0: none */
    int cache;               /* 1: memoize calls by default (app_cache) */
    void *data;              /* user pointer, see cparsl_args_app() */
    struct cparsl_app *next; /* registry link; leave NULL */
} cparsl_app_t;

/*
 * Register an app at run time.  Returns 0, or -EEXIST for a second app of
 * the same name, -EINVAL for a descriptor that is incomplete or invalid
 * for its kind (a bash template with a syntax error).  The app must be
 * registered the same way on every rank.
 */
int cparsl_app_register(cparsl_app_t *app);

/* What the CPARSL_*APP macros call before main: a problem is kept and
 * makes cparsl_init fail with it, since a constructor cannot report. */
void cparsl__app_register_static(cparsl_app_t *app);

/* The app registered under 'name', or NULL. */
const cparsl_app_t *cparsl_app_find(const char *name);

/* Options given to the macros override their defaults on purpose. */
#define CPARSL__APP_DEFINE(id, ...)                                            \
    _Pragma("GCC diagnostic push") _Pragma(                                    \
        "GCC diagnostic ignored \"-Woverride-init\"") static cparsl_app_t      \
        cparsl__app_##id = {__VA_ARGS__};                                      \
    _Pragma("GCC diagnostic pop")                                              \
        __attribute__((constructor)) static void cparsl__register_##id(void)   \
    {                                                                          \
        cparsl__app_register_static(&cparsl__app_##id);                        \
    }

/*
 * CPARSL_APP(name, fn, ...options): a C app named "name".  Options are
 * designated initializers of cparsl_app_t, e.g. .signature = "ii".
 */
#define CPARSL_APP(id, func, ...)                                              \
    CPARSL__APP_DEFINE(id, .name = #id, .kind = CPARSL_KIND_C, .fn = (func),   \
                       .retries = -1, __VA_ARGS__)
/* CPARSL_BASH_APP(name, "command {0} > {outputs[0]}", ...options) */
#define CPARSL_BASH_APP(id, cmd, ...)                                          \
    CPARSL__APP_DEFINE(id, .name = #id, .kind = CPARSL_KIND_BASH,              \
                       .command = (cmd), .retries = -1, __VA_ARGS__)
/* CPARSL_JOIN_APP(name, fn, ...options) */
#define CPARSL_JOIN_APP(id, func, ...)                                         \
    CPARSL__APP_DEFINE(id, .name = #id, .kind = CPARSL_KIND_JOIN,              \
                       .join = (func), .retries = -1, __VA_ARGS__)

/* ---- inside an app: reading arguments -------------------------------- */

/* Number of positional arguments. */
size_t cparsl_args_count(const cparsl_args_t *a);
/* Positional argument i, or NULL past the end. */
const cparsl_value_t *cparsl_arg(const cparsl_args_t *a, size_t i);
/* Keyword argument 'name', or NULL. */
const cparsl_value_t *cparsl_arg_named(const cparsl_args_t *a,
                                       const char *name);
/* Typed shortcuts for positional arguments: 0 / 0.0 / NULL / false when
 * absent or of another type (use a signature to make that impossible).
 * cparsl_arg_double accepts an int. */
int64_t cparsl_arg_int(const cparsl_args_t *a, size_t i);
double cparsl_arg_double(const cparsl_args_t *a, size_t i);
const char *cparsl_arg_str(const cparsl_args_t *a, size_t i);
bool cparsl_arg_bool(const cparsl_args_t *a, size_t i);
/* The framework's inputs and outputs (Parsl's inputs=/outputs=), as
 * local paths.  NULL past the end. */
size_t cparsl_args_ninputs(const cparsl_args_t *a);
const char *cparsl_args_input(const cparsl_args_t *a, size_t i);
size_t cparsl_args_noutputs(const cparsl_args_t *a);
const char *cparsl_args_output(const cparsl_args_t *a, size_t i);
/* The app being run, for its .data pointer. */
const cparsl_app_t *cparsl_args_app(const cparsl_args_t *a);
/* Id of the task and its try number (0 for the first try). */
uint64_t cparsl_args_task_id(const cparsl_args_t *a);
int cparsl_args_try(const cparsl_args_t *a);

/* ---- inside a join app: returning futures ---------------------------- */

/* The join resolves to f's value.  Steals the caller's reference to f. */
int cparsl_join_return(cparsl_join_t *ret, cparsl_future_t *f);
/* The join resolves to a LIST of these futures' values, in order.
 * Steals the caller's reference to f. */
int cparsl_join_append(cparsl_join_t *ret, cparsl_future_t *f);
/* Declare a list result even if nothing is appended (an empty list). */
int cparsl_join_list(cparsl_join_t *ret);

/* ==== calls ============================================================= */

/* Stream modes for stdout/stderr files. */
enum cparsl_stream_mode {
    CPARSL_APPEND = 0,  /* Parsl's default: open with O_APPEND */
    CPARSL_TRUNCATE = 1 /* start the file afresh */
};

/*
 * Start a call of app 'app' (by name).  Never NULL unless out of memory.
 * Argument and option setters record the first error in the call; the
 * future from cparsl_call_submit then fails with it.  A call is used by
 * one thread and ends with cparsl_call_submit or cparsl_call_cancel.
 * App arguments (positional and keyword) and framework options (inputs,
 * outputs, stdout, stderr, walltime, executors, retries, cache) never
 * share a namespace: a keyword argument named "outputs" is just that.
 */
cparsl_call_t *cparsl_call_create(const char *app);

/* Positional argument: a value (copied) or a future (a dependency; the
 * call takes its own reference). */
int cparsl_call_arg(cparsl_call_t *c, cparsl_value_t v);
int cparsl_call_arg_future(cparsl_call_t *c, cparsl_future_t *f);
/* Keyword argument. */
int cparsl_call_kwarg(cparsl_call_t *c, const char *name, cparsl_value_t v);
int cparsl_call_kwarg_future(cparsl_call_t *c, const char *name,
                             cparsl_future_t *f);
/* inputs: a path / file:// URL, or a future (usually a DataFuture) whose
 * value is a FILE; the task waits for it. */
int cparsl_call_input(cparsl_call_t *c, const char *path);
int cparsl_call_input_future(cparsl_call_t *c, cparsl_future_t *f);
/* outputs: each becomes a DataFuture (cparsl_future_output). */
int cparsl_call_output(cparsl_call_t *c, const char *path);
/* Files the app's stdout / stderr go to (bash apps; C apps ignore). */
int cparsl_call_stdout(cparsl_call_t *c, const char *path, int mode);
int cparsl_call_stderr(cparsl_call_t *c, const char *path, int mode);
/* Seconds; 0 for none.  Overrides the app's default. */
int cparsl_call_walltime(cparsl_call_t *c, double seconds);
/* retries=N allows N+1 tries.  Overrides the app's and config's. */
int cparsl_call_retries(cparsl_call_t *c, int retries);
/* Executor labels allowed, comma-separated ("all" or NULL: any). */
int cparsl_call_executors(cparsl_call_t *c, const char *labels);
/* Memoize this call (Parsl's cache=True). */
int cparsl_call_cache(cparsl_call_t *c, bool on);

/*
 * Submit the call and return its future (one reference, the caller's).
 * Consumes 'c'.  Never NULL: a call with a recorded error, an unknown
 * app or a DFK that is not running yields a future already failed with
 * the reason.
 */
cparsl_future_t *cparsl_call_submit(cparsl_call_t *c);

/* Drop a call without submitting it. */
void cparsl_call_cancel(cparsl_call_t *c);

/* ---- the short form -------------------------------------------------- */

/* One argument of cparsl_submit: a value, or a future when 'future' is
 * set. */
typedef struct cparsl_arg {
    cparsl_future_t *future;
    cparsl_value_t value;
} cparsl_arg_t;

#define CPARSL_V(v) ((cparsl_arg_t){.future = NULL, .value = (v)})
#define CPARSL_I(x) CPARSL_V(cparsl_int(x))
#define CPARSL_D(x) CPARSL_V(cparsl_double(x))
#define CPARSL_S(x) CPARSL_V(cparsl_str(x))
#define CPARSL_F(f) ((cparsl_arg_t){.future = (f)})

/* Submit 'app' with n positional arguments and no options. */
cparsl_future_t *cparsl_submitv(const char *app, size_t n,
                                const cparsl_arg_t *args);
/* cparsl_submit("add", CPARSL_I(1), CPARSL_F(f)) */
#define cparsl_submit(app, ...)                                                \
    cparsl_submitv(                                                            \
        (app), sizeof((cparsl_arg_t[]){__VA_ARGS__}) / sizeof(cparsl_arg_t),   \
        (cparsl_arg_t[]){__VA_ARGS__})

/* ==== futures =========================================================== */

/* Reference counting: every future returned to you carries one reference
 * that you release with cparsl_future_decref.  NULL is ignored. */
cparsl_future_t *cparsl_future_incref(cparsl_future_t *f);
void cparsl_future_decref(cparsl_future_t *f);

/* True once the future has a value or an error. */
bool cparsl_future_done(const cparsl_future_t *f);

/*
 * Wait until done or 'timeout' seconds pass (timeout < 0: forever).
 * Returns 0 when done (whatever the outcome), -ETIMEDOUT otherwise.
 * On a client-side thread (a join body or a then callback) the wait
 * lets the client pool grow, so nested waits do not deadlock.
 */
int cparsl_future_wait(cparsl_future_t *f, double timeout);

/* Wait, then: 0 if the future succeeded, else its negative error code. */
int cparsl_future_error(cparsl_future_t *f);
/* Wait, then: the error text ("" on success).  Valid while f is held. */
const char *cparsl_future_errstr(cparsl_future_t *f);

/*
 * Wait, then read the result.  Each returns 0, the future's own error
 * code if it failed, or -CPARSL_ETYPE if the value has another type.
 * Pointers stored through 'out' stay valid while the future is held.
 * cparsl_future_get_double accepts an int result.
 */
int cparsl_future_get(cparsl_future_t *f, const cparsl_value_t **out);
int cparsl_future_get_int(cparsl_future_t *f, int64_t *out);
int cparsl_future_get_double(cparsl_future_t *f, double *out);
int cparsl_future_get_bool(cparsl_future_t *f, bool *out);
int cparsl_future_get_string(cparsl_future_t *f, const char **out);

/* Task id (1, 2, ...) of an app future; 0 for other futures. */
uint64_t cparsl_future_id(const cparsl_future_t *f);

/*
 * The DataFuture for the i-th output of an app future: done when the task
 * is, its value a FILE.  New reference; NULL if there is no such output.
 */
cparsl_future_t *cparsl_future_output(cparsl_future_t *f, size_t i);

/*
 * Run cb(f, arg) once f is done, on a client-side thread (never on a
 * worker or the DFK's thread).  Callbacks of one future run in the order
 * they were added.  If f is already done the callback is still queued,
 * never run on the caller's stack.  0 or -ENOMEM.
 */
typedef void (*cparsl_then_fn)(cparsl_future_t *f, void *arg);
int cparsl_future_then(cparsl_future_t *f, cparsl_then_fn cb, void *arg);

/*
 * Composite futures (new references; they hold references on 'fs').
 * all: done when every future is done; fails with the first (lowest
 * index) failure's code and a text naming that task, else its value is
 * nil.  any: done when one is; its value is the INT index of the first to
 * finish.  An empty array gives a future that is done at once.
 */
cparsl_future_t *cparsl_future_all(cparsl_future_t *const *fs, size_t n);
cparsl_future_t *cparsl_future_any(cparsl_future_t *const *fs, size_t n);

/* Blocking forms: 0 when all (resp. one, its index in *index) are done,
 * -ETIMEDOUT otherwise. */
int cparsl_future_wait_all(cparsl_future_t *const *fs, size_t n,
                           double timeout);
int cparsl_future_wait_any(cparsl_future_t *const *fs, size_t n, double timeout,
                           size_t *index);

/* ==== retries =========================================================== */

/*
 * Parsl's retry_handler: called on the DFK's thread after each failed
 * try; returns the cost of this failure.  The task is tried again while
 * the costs so far stay <= its retries.  With no handler each failure
 * costs 1.  Must be quick and must not wait on futures.
 */
typedef double (*cparsl_retry_fn)(uint64_t task_id, const char *app, int try_no,
                                  int errcode, const char *errtext, void *arg);
/* Install (or with NULL remove) the handler. Call after cparsl_init. */
int cparsl_set_retry_handler(cparsl_retry_fn fn, void *arg);

#ifdef __cplusplus
}
#endif
#endif /* CPARSL_CPARSL_H */
