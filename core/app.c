/*
 * app.c - the app registry, what an app body uses to read its arguments,
 * and the signature check.
 *
 * Apps register from constructors before main, on every rank, so the
 * registry must work before anything is initialized: registration only
 * links the descriptor into a list (under a mutex) and rebuilds a small
 * open-addressing table that lookups read without a lock (the table is
 * replaced, never changed in place).  Problems found before main are
 * remembered and reported by cparsl_init.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct apptab {
    size_t mask; /* capacity - 1, a power of two */
    const cparsl_app_t **slots;
    struct apptab *older; /* kept until exit: readers may still hold it */
};

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static cparsl_app_t *reg_head;
static size_t reg_count;
static _Atomic(struct apptab *) reg_tab;
static char reg_error[CPARSL_ERROR_TEXT];
static int reg_errcode;

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int rebuild_table(void)
{
    size_t cap = 16;
    while (cap < reg_count * 2)
        cap *= 2;
    struct apptab *tab = malloc(sizeof *tab);
    const cparsl_app_t **slots = calloc(cap, sizeof *slots);
    if (!tab || !slots) {
        free(tab);
        free(slots);
        return -ENOMEM;
    }
    tab->mask = cap - 1;
    tab->slots = slots;
    for (cparsl_app_t *a = reg_head; a; a = a->next) {
        size_t i = name_hash(a->name) & tab->mask;
        while (slots[i])
            i = (i + 1) & tab->mask;
        slots[i] = a;
    }
    tab->older = atomic_load(&reg_tab);
    atomic_store_explicit(&reg_tab, tab, memory_order_release);
    return 0;
}

static void remember_error(int code, const char *fmt, const char *name)
{
    if (reg_errcode)
        return;
    reg_errcode = code;
    snprintf(reg_error, sizeof reg_error, fmt, name ? name : "(null)");
}

/* 'remember': the caller cannot see the return value (a constructor),
 * so keep the first problem for cparsl_init to report. */
static int app_register(cparsl_app_t *app, bool remember)
{
    if (!app || !app->name || !*app->name) {
        pthread_mutex_lock(&reg_mu);
        if (remember)
            remember_error(-EINVAL, "an app was registered without a name%s",
                           "");
        pthread_mutex_unlock(&reg_mu);
        return -EINVAL;
    }
    /* The kinds are a static table, usable before main: check the
     * descriptor now so a bad one never reaches a worker. */
    cparsl_error_t err;
    cparsl_error_clear(&err);
    const struct cparsl_app_kind *k = cparsl__appkind_find(app->kind);
    int rc = 0;
    if (!k)
        rc = cparsl_error_set(&err, -EINVAL, "app '%s' has unknown kind '%s'",
                              app->name, app->kind ? app->kind : "(null)");
    else if (k->check(app, &err) < 0)
        rc = -EINVAL;
    pthread_mutex_lock(&reg_mu);
    if (rc < 0) {
        if (remember)
            remember_error(err.code ? err.code : rc, "%s", err.text);
    } else if (cparsl_app_find(app->name)) {
        if (remember)
            remember_error(-EEXIST, "two apps are registered as '%s'",
                           app->name);
        rc = -EEXIST;
    } else {
        app->next = reg_head;
        reg_head = app;
        reg_count++;
        if (rebuild_table() < 0) {
            reg_head = app->next;
            reg_count--;
            rc = -ENOMEM;
        }
    }
    pthread_mutex_unlock(&reg_mu);
    return rc;
}

int cparsl_app_register(cparsl_app_t *app)
{
    return app_register(app, false);
}

void cparsl__app_register_static(cparsl_app_t *app)
{
    (void)app_register(app, true);
}

const cparsl_app_t *cparsl_app_find(const char *name)
{
    struct apptab *tab = atomic_load_explicit(&reg_tab, memory_order_acquire);
    if (!tab || !name)
        return NULL;
    for (size_t i = name_hash(name) & tab->mask; tab->slots[i];
         i = (i + 1) & tab->mask)
        if (strcmp(tab->slots[i]->name, name) == 0)
            return tab->slots[i];
    return NULL;
}

const struct cparsl_app_kind *cparsl__appkind_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; cparsl_builtin_app_kinds[i]; i++)
        if (strcmp(cparsl_builtin_app_kinds[i]->name, name) == 0)
            return cparsl_builtin_app_kinds[i];
    return NULL;
}

const struct cparsl_app_kind *cparsl_app_kind_of(const cparsl_app_t *app)
{
    return app ? cparsl__appkind_find(app->kind) : NULL;
}

int cparsl__apps_check(cparsl_error_t *err)
{
    /* Descriptors were checked as they registered; report the first
     * problem found before main (constructors cannot fail loudly). */
    pthread_mutex_lock(&reg_mu);
    int rc = 0;
    if (reg_errcode)
        rc = cparsl_error_set(err, reg_errcode, "%s", reg_error);
    pthread_mutex_unlock(&reg_mu);
    return rc;
}

/* ---- reading arguments -------------------------------------------------- */

size_t cparsl_args_count(const cparsl_args_t *a)
{
    return a ? a->npos : 0;
}

const cparsl_value_t *cparsl_arg(const cparsl_args_t *a, size_t i)
{
    return a && i < a->npos ? &a->pos[i].value : NULL;
}

const cparsl_value_t *cparsl_arg_named(const cparsl_args_t *a, const char *name)
{
    for (size_t i = 0; a && name && i < a->nnamed; i++)
        if (strcmp(a->named[i].name, name) == 0)
            return &a->named[i].value;
    return NULL;
}

int64_t cparsl_arg_int(const cparsl_args_t *a, size_t i)
{
    const cparsl_value_t *v = cparsl_arg(a, i);
    return v && v->type == CPARSL_T_INT ? v->u.i : 0;
}

double cparsl_arg_double(const cparsl_args_t *a, size_t i)
{
    const cparsl_value_t *v = cparsl_arg(a, i);
    if (v && v->type == CPARSL_T_DOUBLE)
        return v->u.d;
    return v && v->type == CPARSL_T_INT ? (double)v->u.i : 0.0;
}

const char *cparsl_arg_str(const cparsl_args_t *a, size_t i)
{
    const cparsl_value_t *v = cparsl_arg(a, i);
    return v && (v->type == CPARSL_T_STRING || v->type == CPARSL_T_FILE)
               ? v->u.str.p
               : NULL;
}

bool cparsl_arg_bool(const cparsl_args_t *a, size_t i)
{
    const cparsl_value_t *v = cparsl_arg(a, i);
    return v && v->type == CPARSL_T_BOOL && v->u.b;
}

size_t cparsl_args_ninputs(const cparsl_args_t *a)
{
    return a ? a->ninputs : 0;
}

const char *cparsl_args_input(const cparsl_args_t *a, size_t i)
{
    return a && i < a->ninputs ? cparsl_value_path(&a->inputs[i]) : NULL;
}

size_t cparsl_args_noutputs(const cparsl_args_t *a)
{
    return a ? a->noutputs : 0;
}

const char *cparsl_args_output(const cparsl_args_t *a, size_t i)
{
    return a && i < a->noutputs ? cparsl_value_path(&a->outputs[i]) : NULL;
}

const cparsl_app_t *cparsl_args_app(const cparsl_args_t *a)
{
    return a ? a->app : NULL;
}

uint64_t cparsl_args_task_id(const cparsl_args_t *a)
{
    return a ? a->task_id : 0;
}

int cparsl_args_try(const cparsl_args_t *a)
{
    return a ? a->try_no : 0;
}

/* ---- the signature check ------------------------------------------------ */

static const char sig_letters[CPARSL_T_COUNT] = {
    [CPARSL_T_NIL] = 'n',       [CPARSL_T_BOOL] = 'b',
    [CPARSL_T_INT] = 'i',       [CPARSL_T_DOUBLE] = 'd',
    [CPARSL_T_STRING] = 's',    [CPARSL_T_BYTES] = 'y',
    [CPARSL_T_INT_ARRAY] = 'I', [CPARSL_T_DOUBLE_ARRAY] = 'D',
    [CPARSL_T_FILE] = 'f',      [CPARSL_T_LIST] = 'l',
};

static cparsl_type_t sig_type(char c)
{
    for (int t = 0; t < CPARSL_T_COUNT; t++)
        if (sig_letters[t] == c)
            return (cparsl_type_t)t;
    return CPARSL_T_COUNT;
}

int cparsl_exec_check_signature(cparsl_exec_t *e)
{
    const cparsl_app_t *app = e->args.app;
    const char *sig = app ? app->signature : NULL;
    if (!sig)
        return 0;
    size_t n = e->args.npos, i = 0;
    /* The app's own slots: the DFK owns them, so converting an int to a
     * double in place changes nothing anyone else sees. */
    cparsl_argslot_t *pos = (cparsl_argslot_t *)e->args.pos;
    bool rest = false;
    for (; sig[i] && sig[i] != '*'; i++) {
        if (i >= n)
            break;
        cparsl_value_t *v = &pos[i].value;
        if (sig[i] == '?')
            continue;
        cparsl_type_t want = sig_type(sig[i]);
        if (want == CPARSL_T_COUNT)
            return cparsl_exec_fail(e, CPARSL_EARGS,
                                    "app '%s': bad signature letter '%c' in "
                                    "\"%s\"",
                                    app->name, sig[i], sig);
        if (want == CPARSL_T_DOUBLE && v->type == CPARSL_T_INT) {
            v->u.d = (double)v->u.i;
            v->type = CPARSL_T_DOUBLE;
            continue;
        }
        if (want == CPARSL_T_FILE && v->type == CPARSL_T_STRING)
            continue;
        if (v->type != want)
            return cparsl_exec_fail(e, CPARSL_EARGS,
                                    "app '%s': argument %zu is %s, expected "
                                    "%s",
                                    app->name, i, cparsl_type_name(v->type),
                                    cparsl_type_name(want));
    }
    rest = sig[i] == '*';
    size_t want_n = strcspn(sig, "*");
    if (n < want_n)
        return cparsl_exec_fail(e, CPARSL_EARGS,
                                "app '%s': %zu argument%s given, %zu "
                                "expected",
                                app->name, n, n == 1 ? "" : "s", want_n);
    if (n > want_n && !rest)
        return cparsl_exec_fail(e, CPARSL_EARGS,
                                "app '%s': %zu arguments given, at most %zu "
                                "expected",
                                app->name, n, want_n);
    return 0;
}

/* ---- join results -------------------------------------------------------- */

static int join_push(cparsl_join_t *j, cparsl_future_t *f, int mode)
{
    if (!j)
        return -EINVAL;
    if (!f || (j->mode && j->mode != mode) || (mode == 1 && j->n)) {
        j->error = -EINVAL;
        cparsl_future_decref(f);
        return -EINVAL;
    }
    if (j->n == j->cap) {
        size_t cap = j->cap ? j->cap * 2 : 4;
        cparsl_future_t **fs = realloc(j->fs, cap * sizeof *fs);
        if (!fs) {
            j->error = -ENOMEM;
            cparsl_future_decref(f);
            return -ENOMEM;
        }
        j->fs = fs;
        j->cap = cap;
    }
    j->fs[j->n++] = f;
    j->mode = mode;
    return 0;
}

int cparsl_join_return(cparsl_join_t *ret, cparsl_future_t *f)
{
    return join_push(ret, f, 1);
}

int cparsl_join_append(cparsl_join_t *ret, cparsl_future_t *f)
{
    return join_push(ret, f, 2);
}

int cparsl_join_list(cparsl_join_t *ret)
{
    if (!ret)
        return -EINVAL;
    if (ret->mode == 1) {
        ret->error = -EINVAL;
        return -EINVAL;
    }
    ret->mode = 2;
    return 0;
}
