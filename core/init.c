/*
 * init.c - cparsl_init and cparsl_finalize: the configuration, the choice
 * of executors, the run dir and log, and an orderly start and stop.
 *
 * The core validates only its own top-level keys.  Each executor's map is
 * handed to its family's configure entry, and the whole tree to the
 * store's open entry, so plugins add keys without touching this file.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../htex/htexec.h"
#include "internal.h"

static pthread_mutex_t init_mu = PTHREAD_MUTEX_INITIALIZER;
static cparsl_config_t *run_config;
/* On a rank that served (CPARSL_SERVED): its executors, for finalize. */
static cparsl_executor_t **served;
static size_t nserved;
static bool joined; /* this process served as an htex manager */
/* Where block events go: the DFK from init until its store closes (the
 * executors' shutdown, after cparsl__dfk is cleared, still reports the
 * blocks it cancels). */
static cparsl__dfk_t *_Atomic block_events_to;
static char run_dir[4096];

static const char *const core_keys[] = {
    "executors",
    "retries",
    "run_dir",
    "app_cache",
    "checkpoint_mode",
    "checkpoint_files",
    "checkpoint_period",
    "log_level",
    "client_threads_max",
    "store",
    NULL,
};

static const char *const checkpoint_modes[] = {
    "none", "task_exit", "periodic", "dfk_exit", "manual", NULL,
};

int cparsl__debug_check_enabled(void)
{
    const char *s = getenv("CPARSL_DEBUG_CHECK");
    return s && *s && strcmp(s, "0") != 0;
}

bool cparsl_initialized(void)
{
    return cparsl__dfk != NULL;
}

/* ---- configuration ---------------------------------------------------------
 */

/* Remove argv[i] .. argv[i+n-1], keeping argv NULL-terminated. */
static void argv_remove(int *argc, char **argv, int i, int n)
{
    for (int k = i; k + n <= *argc; k++)
        argv[k] = argv[k + n];
    *argc -= n;
}

static int load_layers(int *argc, char ***argv, const cparsl_config_t *cfg,
                       cparsl_config_t **out, cparsl_error_t *err)
{
    cparsl_config_t *base =
        cfg ? cparsl_config_dup(cfg) : cparsl_config_create();
    if (!base)
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    const char *files[2] = {getenv("CPARSL_CONFIG"), NULL};
    char *argpath = NULL;
    if (argc && argv && *argv) {
        for (int i = 1; i < *argc; i++) {
            const char *a = (*argv)[i];
            const char *opt = "--cparsl-config";
            size_t n = strlen(opt);
            if (strncmp(a, opt, n) != 0)
                continue;
            if (a[n] == '=') {
                argpath = strdup(a + n + 1);
                argv_remove(argc, *argv, i, 1);
            } else if (a[n] == '\0') {
                if (i + 1 >= *argc) {
                    cparsl_config_destroy(base);
                    return cparsl_error_set(err, CPARSL_ECONFIG,
                                            "--cparsl-config needs a file "
                                            "name");
                }
                argpath = strdup((*argv)[i + 1]);
                argv_remove(argc, *argv, i, 2);
            } else {
                continue;
            }
            break;
        }
    }
    files[1] = argpath;
    for (int k = 0; k < 2; k++) {
        if (!files[k] || !*files[k])
            continue;
        cparsl_config_t *layer = NULL;
        int rc = cparsl_config_load_file(&layer, files[k], err);
        if (rc == 0) {
            rc = cparsl_config_merge(base, layer, err);
            cparsl_config_destroy(layer);
        } else {
            cparsl_error_prefix(err, "config file from %s",
                                k == 0 ? "CPARSL_CONFIG" : "--cparsl-config");
        }
        if (rc < 0) {
            free(argpath);
            cparsl_config_destroy(base);
            return rc;
        }
    }
    free(argpath);
    *out = base;
    return 0;
}

struct core_opts {
    int64_t retries;
    const char *run_dir;
    bool app_cache;
    int log_level;
    int64_t client_threads_max;
    int ckpt_mode;
    int64_t ckpt_period_ns;
    const cparsl_cnode_t *ckpt_files;
};

static int check_core_keys(const cparsl_cnode_t *root, struct core_opts *o,
                           cparsl_error_t *err)
{
    int rc;
    const char *level;
    double unused_d;
    (void)unused_d;
    if ((rc = cparsl_cnode_check_keys(root, core_keys, err)) < 0 ||
        (rc = cparsl_cnode_int(root, "retries", 0, 0, 1000000, &o->retries,
                               err)) < 0 ||
        (rc = cparsl_cnode_string(root, "run_dir", "runinfo", &o->run_dir,
                                  err)) < 0 ||
        (rc = cparsl_cnode_bool(root, "app_cache", true, &o->app_cache, err)) <
            0 ||
        (rc = cparsl_cnode_string(root, "log_level", "info", &level, err)) <
            0 ||
        (rc = cparsl_cnode_int(root, "client_threads_max", 4096, 1, 1 << 20,
                               &o->client_threads_max, err)) < 0 ||
        (rc = cparsl_cnode_choice(root, "checkpoint_mode", checkpoint_modes, 0,
                                  &o->ckpt_mode, err)) < 0)
        return rc;
    o->log_level = cparsl_log_level_parse(level);
    if (o->log_level < 0)
        return cparsl_cnode_error(cparsl_cnode_get(root, "log_level"), err,
                                  "expected one of: error, warn, info, "
                                  "debug; got '%s'",
                                  level);
    if (!*o->run_dir)
        return cparsl_cnode_error(cparsl_cnode_get(root, "run_dir"), err,
                                  "must not be empty");
    /* checkpoint_files: a list of files or run dirs, or latest / all. */
    const cparsl_cnode_t *cf = cparsl_cnode_get(root, "checkpoint_files");
    o->ckpt_files = cf;
    if (cf && cparsl_cnode_type(cf) == CPARSL_CNODE_MAP)
        return cparsl_cnode_error(cf, err,
                                  "expected a list of files or run dirs, "
                                  "or 'latest' or 'all'");
    if (cf && cparsl_cnode_type(cf) == CPARSL_CNODE_SCALAR) {
        const char *v = cparsl_cnode_scalar(cf);
        if (strcmp(v, "latest") != 0 && strcmp(v, "all") != 0)
            return cparsl_cnode_error(cf, err,
                                      "expected a list of files or run "
                                      "dirs, or 'latest' or 'all'; got '%s'",
                                      v);
    }
    for (size_t i = 0; cf && cparsl_cnode_type(cf) == CPARSL_CNODE_SEQ &&
                       i < cparsl_cnode_len(cf);
         i++)
        if (cparsl_cnode_type(cparsl_cnode_at(cf, i)) != CPARSL_CNODE_SCALAR ||
            !*cparsl_cnode_scalar(cparsl_cnode_at(cf, i)))
            return cparsl_cnode_error(cparsl_cnode_at(cf, i), err,
                                      "expected a file or run dir name");
    const char *period;
    if ((rc = cparsl_cnode_string(root, "checkpoint_period", NULL, &period,
                                  err)) < 0)
        return rc;
    unsigned h, m, sec;
    char tail;
    if (period && (sscanf(period, "%u:%u:%u%c", &h, &m, &sec, &tail) != 3 ||
                   m > 59 || sec > 59 || h > 100000 || h + m + sec == 0))
        return cparsl_cnode_error(cparsl_cnode_get(root, "checkpoint_period"),
                                  err,
                                  "expected a duration HH:MM:SS of at least "
                                  "1 s, got '%s'",
                                  period);
    if (o->ckpt_mode == CPARSL__CKPT_PERIODIC && !period)
        return cparsl_cnode_error(cparsl_cnode_get(root, "checkpoint_mode"),
                                  err,
                                  "'periodic' needs checkpoint_period "
                                  "(HH:MM:SS)");
    if (period && o->ckpt_mode != CPARSL__CKPT_PERIODIC)
        return cparsl_cnode_error(cparsl_cnode_get(root, "checkpoint_period"),
                                  err,
                                  "only used with checkpoint_mode: periodic");
    o->ckpt_period_ns =
        period ? ((int64_t)h * 3600 + m * 60 + sec) * 1000000000ll : 0;
    if ((o->ckpt_mode || cf) && !o->app_cache)
        return cparsl_cnode_error(
            cparsl_cnode_get(root, o->ckpt_mode ? "checkpoint_mode"
                                                : "checkpoint_files"),
            err, "checkpoints are memoized results: needs app_cache: true");
    return 0;
}

/* ---- executors --------------------------------------------------------------
 */

static const struct cparsl_executor_ops *family_find(const char *name)
{
    for (size_t i = 0; cparsl_builtin_executors[i]; i++)
        if (strcmp(cparsl_builtin_executors[i]->family, name) == 0)
            return cparsl_builtin_executors[i];
    return NULL;
}

static void families_list(char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; cparsl_builtin_executors[i] && len < cap; i++)
        len += snprintf(buf + len, cap - len, "%s%s", i ? ", " : "",
                        cparsl_builtin_executors[i]->family);
}

static void executors_destroy(cparsl_executor_t **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        v[i]->ops->destroy(v[i]);
    free(v);
}

static int make_executors(const cparsl_cnode_t *root,
                          const cparsl_launch_t *launch,
                          cparsl_executor_t ***out, size_t *nout,
                          cparsl_error_t *err)
{
    const cparsl_cnode_t *list = cparsl_cnode_get(root, "executors");
    char fams[256];
    families_list(fams, sizeof fams);
    if (list && cparsl_cnode_type(list) != CPARSL_CNODE_SEQ)
        return cparsl_cnode_error(list, err,
                                  "expected a list of executors, each "
                                  "with a 'type' (one of: %s)",
                                  fams);
    size_t n = list ? cparsl_cnode_len(list) : 0;
    cparsl_executor_t **v = calloc(n ? n : 1, sizeof *v);
    if (!v)
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    size_t made = 0;
    int rc = 0;
    if (n == 0) {
        /* No executor named: the family whose probe claims this launch. */
        const struct cparsl_executor_ops *best = NULL;
        int best_score = 0;
        for (size_t i = 0; cparsl_builtin_executors[i]; i++) {
            int s = cparsl_builtin_executors[i]->probe(launch);
            if (s > best_score) {
                best_score = s;
                best = cparsl_builtin_executors[i];
            }
        }
        if (!best) {
            rc = cparsl_error_set(
                err, CPARSL_ELAUNCH,
                "key 'executors': none configured, and no executor in this "
                "build (%s) can serve a launch of %d ranks (%s); configure "
                "an MPI-capable executor, or start the program without an "
                "MPI launcher",
                fams, launch->size, launch->source ? launch->source : "?");
            goto fail;
        }
        if ((rc = best->configure(NULL, launch, &v[0], err)) < 0)
            goto fail;
        v[0]->ops = best;
        snprintf(v[0]->label, sizeof v[0]->label, "%s", best->family);
        made = 1;
    }
    for (size_t i = 0; i < n; i++) {
        const cparsl_cnode_t *node = cparsl_cnode_at(list, i);
        if (cparsl_cnode_type(node) != CPARSL_CNODE_MAP) {
            rc = cparsl_cnode_error(node, err,
                                    "expected a map with a 'type' (one of: "
                                    "%s)",
                                    fams);
            goto fail;
        }
        const cparsl_cnode_t *tnode = cparsl_cnode_get(node, "type");
        const char *type = tnode ? cparsl_cnode_scalar(tnode) : NULL;
        if (!type || !*type) {
            rc = cparsl_cnode_error(node, err, "missing 'type' (one of: %s)",
                                    fams);
            goto fail;
        }
        const struct cparsl_executor_ops *ops = family_find(type);
        if (!ops) {
            rc = cparsl_cnode_error(tnode, err,
                                    "unknown executor type '%s' (this "
                                    "build has: %s)",
                                    type, fams);
            goto fail;
        }
        const char *label;
        if ((rc = cparsl_cnode_string(node, "label", type, &label, err)) < 0)
            goto fail;
        if (strlen(label) >= sizeof v[0]->label || !*label) {
            rc = cparsl_cnode_error(cparsl_cnode_get(node, "label"), err,
                                    "a label must be 1 to %zu characters",
                                    sizeof v[0]->label - 1);
            goto fail;
        }
        for (size_t k = 0; k < made; k++)
            if (strcmp(v[k]->label, label) == 0) {
                rc = cparsl_cnode_error(
                    cparsl_cnode_get(node, "label")
                        ? cparsl_cnode_get(node, "label")
                        : node,
                    err, "label '%s' is used by two executors", label);
                goto fail;
            }
        if ((rc = ops->configure(node, launch, &v[made], err)) < 0)
            goto fail;
        v[made]->ops = ops;
        snprintf(v[made]->label, sizeof v[made]->label, "%s", label);
        made++;
    }
    size_t nmpi = 0;
    for (size_t i = 0; i < made; i++)
        nmpi += (v[i]->ops->flags & CPARSL_EXEC_MPI) != 0;
    if (nmpi > 1) {
        rc = cparsl_cnode_error(list, err,
                                "%zu executors use MPI ranks; a launch can "
                                "serve only one",
                                nmpi);
        goto fail;
    }
    if (launch->size > 1) {
        bool mpi = false;
        for (size_t i = 0; i < made; i++)
            mpi |= (v[i]->ops->flags & CPARSL_EXEC_MPI) != 0;
        if (!mpi) {
            bool built = false;
            for (size_t i = 0; cparsl_builtin_executors[i]; i++)
                built |=
                    (cparsl_builtin_executors[i]->flags & CPARSL_EXEC_MPI) != 0;
            const char *why = built ? "add an MPI-capable executor to it"
                                    : "this build has no MPI-capable "
                                      "executor yet, so start the program "
                                      "without an MPI launcher";
            if (list)
                rc = cparsl_cnode_error(
                    list, err,
                    "launched as %d ranks (%s) but no executor here uses "
                    "MPI ranks, so every rank would run the workflow: %s",
                    launch->size, launch->source, why);
            if (list) {
                err->code = -CPARSL_ELAUNCH;
                rc = -CPARSL_ELAUNCH;
            } else
                rc = cparsl_error_set(
                    err, CPARSL_ELAUNCH,
                    "key 'executors': launched as %d ranks (%s) but no "
                    "executor uses MPI ranks, so every rank would run the "
                    "workflow: %s",
                    launch->size, launch->source, why);
            goto fail;
        }
    }
    *out = v;
    *nout = made;
    return 0;
fail:
    executors_destroy(v, made);
    return rc;
}

/* ---- the run dir --------------------------------------------------------- */

static int mkdir_p(const char *path)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return -ENAMETOOLONG;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* runinfo/000, runinfo/001, ... as Parsl numbers its run dirs. */
static int make_run_dir(const char *base, char *out, size_t cap,
                        cparsl_error_t *err)
{
    int rc = mkdir_p(base);
    if (rc < 0)
        return cparsl_error_set(err, rc,
                                "key 'run_dir': cannot create "
                                "'%s': %s",
                                base, cparsl_strerror(rc));
    for (int attempt = 0; attempt < 100; attempt++) {
        long next = 0;
        DIR *dir = opendir(base);
        if (!dir)
            return cparsl_error_set(err, -errno, "cannot read run_dir '%s'",
                                    base);
        struct dirent *de;
        while ((de = readdir(dir))) {
            char *end;
            long v = strtol(de->d_name, &end, 10);
            if (*end == '\0' && end != de->d_name && v >= next)
                next = v + 1;
        }
        closedir(dir);
        if (snprintf(out, cap, "%s/%03ld", base, next) >= (int)cap)
            return cparsl_error_set(err, -ENAMETOOLONG,
                                    "run_dir '%s' is too long", base);
        if (mkdir(out, 0755) == 0)
            return 0;
        if (errno != EEXIST)
            return cparsl_error_set(err, -errno, "cannot create '%s': %s", out,
                                    strerror(errno));
        /* another run took that number at the same moment: try again */
    }
    return cparsl_error_set(err, -EEXIST, "cannot pick a run dir in '%s'",
                            base);
}

/* ---- the store -------------------------------------------------------------
 */

static int open_store(const cparsl_cnode_t *root, const char *dir,
                      cparsl__dfk_t *d, cparsl_error_t *err)
{
    const cparsl_cnode_t *snode = cparsl_cnode_get(root, "store");
    const char *type = "null";
    int rc;
    if (snode &&
        (rc = cparsl_cnode_string(snode, "type", "null", &type, err)) < 0)
        return rc;
    for (size_t i = 0; cparsl_builtin_stores[i]; i++) {
        if (strcmp(cparsl_builtin_stores[i]->name, type) != 0)
            continue;
        d->store_ops = cparsl_builtin_stores[i];
        return d->store_ops->open(root, dir, &d->store, err);
    }
    return cparsl_cnode_error(cparsl_cnode_get(snode, "type"), err,
                              "unknown store type '%s'", type);
}

/* ---- checkpoints of earlier runs ------------------------------------------
 */

struct paths {
    char **v;
    size_t n, cap;
};

static int paths_add(struct paths *p, const char *path)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 8;
        char **v = realloc(p->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        p->v = v;
        p->cap = cap;
    }
    if (!(p->v[p->n] = strdup(path)))
        return -ENOMEM;
    p->n++;
    return 0;
}

static void paths_free(struct paths *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->v[i]);
    free(p->v);
}

/* NNN of ".../NNN/results.h5". */
static long run_number(const char *path)
{
    const char *end = strrchr(path, '/'), *p = end;
    while (p > path && p[-1] != '/')
        p--;
    return end ? strtol(p, NULL, 10) : 0;
}

static int by_number(const void *a, const void *b)
{
    long x = run_number(*(char *const *)a), y = run_number(*(char *const *)b);
    return (x > y) - (x < y);
}

/* The earlier runs' files under 'base' (runinfo/NNN/results.h5, NNN
 * below this run's), oldest first. */
static int earlier_runs(const char *base, const char *this_dir,
                        struct paths *out, cparsl_error_t *err)
{
    const char *slash = strrchr(this_dir, '/');
    long self = strtol(slash ? slash + 1 : this_dir, NULL, 10);
    DIR *dir = opendir(base);
    if (!dir)
        return cparsl_error_set(err, -errno, "cannot read run_dir '%s': %s",
                                base, strerror(errno));
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(dir))) {
        char *end;
        long v = strtol(de->d_name, &end, 10);
        if (*end || end == de->d_name || v >= self)
            continue;
        char path[4300];
        snprintf(path, sizeof path, "%s/%s/results.h5", base, de->d_name);
        if (access(path, R_OK) == 0)
            rc = paths_add(out, path);
    }
    closedir(dir);
    if (rc < 0)
        return cparsl_error_set(err, rc, "out of memory");
    if (out->n > 1)
        qsort(out->v, out->n, sizeof *out->v, by_number);
    return 0;
}

/* checkpoint_files as paths to run files: a run dir means its
 * results.h5; 'latest' and 'all' look through run_dir's earlier runs. */
static int checkpoint_paths(const struct core_opts *o, const char *this_dir,
                            struct paths *out, cparsl_error_t *err)
{
    const cparsl_cnode_t *cf = o->ckpt_files;
    if (!cf)
        return 0;
    if (cparsl_cnode_type(cf) == CPARSL_CNODE_SCALAR) {
        int rc = earlier_runs(o->run_dir, this_dir, out, err);
        if (rc < 0 || strcmp(cparsl_cnode_scalar(cf), "all") == 0 || !out->n)
            return rc;
        /* latest: the newest only */
        for (size_t i = 0; i + 1 < out->n; i++)
            free(out->v[i]);
        out->v[0] = out->v[out->n - 1];
        out->n = 1;
        return 0;
    }
    for (size_t i = 0; i < cparsl_cnode_len(cf); i++) {
        const cparsl_cnode_t *item = cparsl_cnode_at(cf, i);
        const char *name = cparsl_cnode_scalar(item);
        char path[4300];
        struct stat st;
        if (stat(name, &st) < 0)
            return cparsl_cnode_error(item, err, "cannot read '%s': %s", name,
                                      strerror(errno));
        snprintf(path, sizeof path,
                 S_ISDIR(st.st_mode) ? "%s/results.h5" : "%s", name);
        if (access(path, R_OK) < 0)
            return cparsl_cnode_error(item, err, "cannot read '%s': %s", path,
                                      strerror(errno));
        if (paths_add(out, path) < 0)
            return cparsl_error_set(err, -ENOMEM, "out of memory");
    }
    return 0;
}

static int add_saved(void *arg, const cparsl_ckpt_t *e)
{
    cparsl__dfk_t *d = arg;
    return cparsl__memo_add_saved(&d->memo, e->key, e->key_len, e->encoded,
                                  e->encoded_len, e->task_id);
}

/* Check the store can keep what the checkpoint keys ask for, and load
 * the earlier runs' entries into the memo table. */
static int checkpoints_setup(const cparsl_cnode_t *root,
                             const struct core_opts *o, const char *this_dir,
                             cparsl__dfk_t *d, cparsl_error_t *err)
{
    d->ckpt_mode = o->ckpt_mode;
    d->ckpt_period_ns = o->ckpt_period_ns;
    d->ckpt_next = cparsl_mono_ns() + o->ckpt_period_ns;
    if (o->ckpt_mode && !d->store_ops->checkpoint)
        return cparsl_cnode_error(cparsl_cnode_get(root, "checkpoint_mode"),
                                  err,
                                  "the '%s' store keeps no checkpoints; use "
                                  "store: {type: hdf5}",
                                  d->store_ops->name);
    if (o->ckpt_files && !d->store_ops->resume)
        return cparsl_cnode_error(o->ckpt_files, err,
                                  "the '%s' store cannot read checkpoints; "
                                  "use store: {type: hdf5}",
                                  d->store_ops->name);
    struct paths p = {0};
    int rc = checkpoint_paths(o, this_dir, &p, err);
    if (rc == 0 && p.n) {
        rc = d->store_ops->resume(d->store, (const char *const *)p.v, p.n,
                                  add_saved, d, err);
        if (rc == 0)
            CPARSL_LOG(CPARSL_LOG_INFO, "init",
                       "resuming: %llu checkpoint entries from %zu file(s), "
                       "the newest %s",
                       (unsigned long long)d->memo.loaded, p.n, p.v[p.n - 1]);
    } else if (rc == 0 && o->ckpt_files) {
        CPARSL_LOG(CPARSL_LOG_INFO, "init",
                   "checkpoint_files: no earlier run to resume from");
    }
    paths_free(&p);
    return rc;
}

/* ---- signals ------------------------------------------------------------ */

/* On the client's watcher thread, after SIGTERM or SIGUSR1. */
static void on_stop_signal(int sig)
{
    cparsl__dfk_t *d = cparsl__dfk;
    if (!d)
        return;
    int none = 0;
    if (!atomic_compare_exchange_strong(&d->stopping, &none, sig))
        return;
    CPARSL_LOG(CPARSL_LOG_WARN, "signal",
               "received signal %d (%s): draining; running tasks finish, "
               "tasks not started fail",
               sig, strsignal(sig));
    for (size_t i = 0; i < d->nexecutors; i++)
        d->executors[i]->ops->drain(d->executors[i]);
    pthread_mutex_lock(&d->mu);
    if (d->ckpt_mode)
        atomic_store(&d->ckpt_now, true);
    atomic_store(&d->flush_req, true);
    if (d->sleeping)
        pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

/* ---- init and finalize ----------------------------------------------------
 */

static void teardown(cparsl__dfk_t *d, size_t started)
{
    for (size_t i = 0; i < started; i++)
        d->executors[i]->ops->shutdown(d->executors[i], NULL);
    executors_destroy(d->executors, d->nexecutors);
    free(d);
}

int cparsl_init(int *argc, char ***argv, const cparsl_config_t *cfg,
                cparsl_error_t *err)
{
    cparsl_launch_t launch;
    cparsl_launch_detect(&launch);
    return cparsl_init_launch(argc, argv, cfg, &launch, err);
}

int cparsl_init_launch(int *argc, char ***argv, const cparsl_config_t *cfg,
                       const cparsl_launch_t *given, cparsl_error_t *err)
{
    cparsl_error_t local;
    if (!err)
        err = &local;
    cparsl_error_clear(err);
    pthread_mutex_lock(&init_mu);
    int rc;
    cparsl_config_t *conf = NULL;
    cparsl__dfk_t *d = NULL;
    size_t started = 0;
    const char *join = getenv("CPARSL_HTEX_JOIN");
    if (join && *join && !cparsl__dfk && !served && !joined) {
        /* An htex manager (htex/htexec.c): join, serve, and return as a
         * worker rank does. */
        if ((rc = cparsl__apps_check(err)) == 0 &&
            (rc = htex_join_serve(join, err)) == 0) {
            joined = true;
            rc = CPARSL_SERVED;
        }
        pthread_mutex_unlock(&init_mu);
        return rc;
    }
    if (cparsl__dfk || served) {
        rc = cparsl_error_set(err, -EALREADY,
                              "cparsl_init called twice without "
                              "cparsl_finalize");
        goto out;
    }
    if ((rc = cparsl__apps_check(err)) < 0)
        goto out;
    if ((rc = load_layers(argc, argv, cfg, &conf, err)) < 0)
        goto out;
    const cparsl_cnode_t *root = cparsl_config_root(conf);
    struct core_opts o;
    if ((rc = check_core_keys(root, &o, err)) < 0)
        goto out;
    cparsl_launch_t launch = *given;

    d = calloc(1, sizeof *d);
    if (!d) {
        rc = cparsl_error_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = make_executors(root, &launch, &d->executors, &d->nexecutors,
                             err)) < 0) {
        free(d);
        d = NULL;
        goto out;
    }
    cparsl_executor_t *mpi_ex = NULL;
    for (size_t i = 0; i < d->nexecutors; i++)
        if (d->executors[i]->ops->flags & CPARSL_EXEC_MPI)
            mpi_ex = d->executors[i];
    if (mpi_ex && launch.rank != 0) {
        /* A worker rank: no run dir, DFK or store here; serve tasks until
         * the client finalizes.  SIGTERM/SIGUSR1 are noted, not fatal:
         * the client decides when the pilot stops. */
        if ((rc = cparsl__signals_install(NULL, err)) < 0) {
            executors_destroy(d->executors, d->nexecutors);
            free(d);
            d = NULL;
            goto out;
        }
        rc = mpi_ex->ops->serve(mpi_ex, err);
        if (rc < 0) {
            cparsl_error_prefix(err, "rank %d", launch.rank);
            cparsl_error_t e2;
            mpi_ex->ops->shutdown(mpi_ex, &e2);
            cparsl__signals_remove();
            executors_destroy(d->executors, d->nexecutors);
            free(d);
            d = NULL;
            goto out;
        }
        served = d->executors;
        nserved = d->nexecutors;
        free(d);
        d = NULL;
        rc = CPARSL_SERVED;
        goto out;
    }
    if ((rc = make_run_dir(o.run_dir, run_dir, sizeof run_dir, err)) < 0)
        goto fail;
    char logpath[4200];
    snprintf(logpath, sizeof logpath, "%s/cparsl.log", run_dir);
    if ((rc = cparsl_log_open(logpath, o.log_level)) < 0) {
        cparsl_error_set(err, rc, "cannot open the log '%s': %s", logpath,
                         cparsl_strerror(rc));
        goto fail;
    }
    if ((rc = open_store(root, run_dir, d, err)) < 0)
        goto fail;
    d->default_retries = (int)o.retries;
    d->app_cache = o.app_cache;
    if ((rc = checkpoints_setup(root, &o, run_dir, d, err)) < 0)
        goto fail;
    atomic_init(&d->next_id, 1);
    for (; started < d->nexecutors; started++) {
        cparsl_executor_t *ex = d->executors[started];
        if ((rc = ex->ops->start(ex, err)) < 0) {
            cparsl_error_prefix(err, "executor '%s'", ex->label);
            goto fail;
        }
    }
    if ((rc = cparsl__clientpool_start((size_t)o.client_threads_max, err)) < 0)
        goto fail;
    if ((rc = cparsl__dfk_start(d, err)) < 0) {
        cparsl__clientpool_stop();
        goto fail;
    }
    cparsl__dfk = d;
    atomic_store(&block_events_to, d);
    /* Each executor starts with its first block: this process's threads,
     * or the MPI job.  Providers record the blocks they add. */
    for (size_t i = 0; i < d->nexecutors; i++) {
        cparsl_executor_t *ex = d->executors[i];
        size_t cap = ex->ops->capacity ? ex->ops->capacity(ex) : 0;
        cparsl_store_block_event(&(cparsl_block_event_t){
            .executor = ex->label,
            .block = 0,
            .event = "running",
            .nodes = -1,
            .workers = cap > INT32_MAX ? INT32_MAX : (int32_t)cap,
        });
    }
    if ((rc = cparsl__signals_install(on_stop_signal, err)) < 0)
        CPARSL_LOG(CPARSL_LOG_WARN, "init", "no signal handling: %s",
                   err->text);
    run_config = conf;
    conf = NULL;
    CPARSL_LOG(CPARSL_LOG_INFO, "init",
               "cparsl %s started: run dir %s, %zu executor(s), %d rank(s)",
               CPARSL_VERSION_STRING, run_dir, d->nexecutors, launch.size);
    rc = CPARSL_CLIENT;
    goto out;
fail:
    if (d->store)
        d->store_ops->close(d->store, NULL);
    teardown(d, started);
    cparsl_log_close();
out:
    cparsl_config_destroy(conf);
    pthread_mutex_unlock(&init_mu);
    return rc;
}

int cparsl_finalize(cparsl_error_t *err)
{
    cparsl_error_t local;
    if (!err)
        err = &local;
    cparsl_error_clear(err);
    pthread_mutex_lock(&init_mu);
    cparsl__dfk_t *d = cparsl__dfk;
    if (!d && joined) {
        joined = false;
        pthread_mutex_unlock(&init_mu);
        return 0;
    }
    if (!d && served) {
        int rc = 0;
        for (size_t i = 0; i < nserved; i++) {
            cparsl_error_t e2;
            cparsl_error_clear(&e2);
            int r = served[i]->ops->shutdown(served[i], &e2);
            if (r < 0 && rc == 0) {
                rc = r;
                *err = e2;
            }
        }
        executors_destroy(served, nserved);
        served = NULL;
        nserved = 0;
        cparsl__signals_remove();
        cparsl_log_close();
        pthread_mutex_unlock(&init_mu);
        return rc;
    }
    if (!d) {
        pthread_mutex_unlock(&init_mu);
        return cparsl_error_set(err, CPARSL_ESHUTDOWN,
                                "cparsl_finalize without cparsl_init");
    }
    /* Callbacks can submit more work and tasks can queue callbacks: wait
     * until both sides are quiet at the same time. */
    do {
        cparsl__dfk_wait_idle(d);
        cparsl__clientpool_quiesce();
        pthread_mutex_lock(&d->mu);
        bool idle = d->unfinished == 0;
        pthread_mutex_unlock(&d->mu);
        if (idle && !cparsl__clientpool_busy())
            break;
    } while (1);

    cparsl__signals_remove();
    int rc = 0;
    if (cparsl__debug_check_enabled())
        rc = cparsl__dfk_check(d, err);
    cparsl__dfk = NULL;
    for (size_t i = 0; i < d->nexecutors; i++) {
        cparsl_executor_t *ex = d->executors[i];
        cparsl_error_t e2;
        cparsl_error_clear(&e2);
        int r = ex->ops->shutdown(ex, &e2);
        if (r < 0 && rc == 0) {
            rc = r;
            *err = e2;
        }
    }
    cparsl__dfk_stop(d);
    atomic_store(&block_events_to, NULL);
    cparsl_error_t e3;
    cparsl_error_clear(&e3);
    int r = d->store_ops->close(d->store, &e3);
    if (r < 0 && rc == 0) {
        rc = r;
        *err = e3;
    }
    cparsl__clientpool_stop();
    if (rc < 0)
        CPARSL_LOG(CPARSL_LOG_WARN, "finalize", "%s", err->text);
    CPARSL_LOG(CPARSL_LOG_INFO, "finalize", "cparsl stopped");
    cparsl_log_close();
    executors_destroy(d->executors, d->nexecutors);
    free(d);
    cparsl_config_destroy(run_config);
    run_config = NULL;
    cparsl__freelist_trim();
    pthread_mutex_unlock(&init_mu);
    return rc;
}

size_t cparsl_capacity(void)
{
    cparsl__dfk_t *d = cparsl__dfk;
    size_t n = 0;
    for (size_t i = 0; d && i < d->nexecutors; i++)
        n += d->executors[i]->ops->capacity(d->executors[i]);
    return n;
}

int cparsl_set_retry_handler(cparsl_retry_fn fn, void *arg)
{
    cparsl__dfk_t *d = cparsl__dfk;
    if (!d)
        return -CPARSL_ESHUTDOWN;
    pthread_mutex_lock(&d->mu);
    d->retry_fn = fn;
    d->retry_arg = arg;
    pthread_mutex_unlock(&d->mu);
    return 0;
}

const char *cparsl_run_dir(void)
{
    return run_dir;
}

int cparsl_flush(cparsl_error_t *err)
{
    cparsl__dfk_t *d = cparsl__dfk;
    if (!d)
        return cparsl_error_set(err, CPARSL_ESHUTDOWN,
                                "cparsl_flush without cparsl_init");
    return cparsl__dfk_flush(d, err);
}

int cparsl_checkpoint(cparsl_error_t *err)
{
    cparsl__dfk_t *d = cparsl__dfk;
    if (!d)
        return cparsl_error_set(err, CPARSL_ESHUTDOWN,
                                "cparsl_checkpoint without cparsl_init");
    if (!d->ckpt_mode)
        return cparsl_error_set(err, -EINVAL,
                                "cparsl_checkpoint: checkpoint_mode is none");
    atomic_store(&d->ckpt_now, true);
    return cparsl__dfk_flush(d, err);
}

void cparsl_store_block_event(const cparsl_block_event_t *ev)
{
    cparsl__dfk_t *d = atomic_load(&block_events_to);
    if (d && d->store_ops->block_event)
        d->store_ops->block_event(d->store, ev);
}

int cparsl_wait_all_tasks(double timeout)
{
    cparsl__dfk_t *d = cparsl__dfk;
    if (!d)
        return -CPARSL_ESHUTDOWN;
    int64_t deadline =
        timeout < 0 ? INT64_MAX : cparsl_mono_ns() + (int64_t)(timeout * 1e9);
    /* Callbacks may submit more tasks, so both sides must be quiet. */
    for (;;) {
        int rc = cparsl__dfk_wait_idle_until(d, deadline);
        if (rc < 0)
            return rc;
        if (!cparsl__clientpool_busy()) {
            pthread_mutex_lock(&d->mu);
            bool idle = d->unfinished == 0;
            pthread_mutex_unlock(&d->mu);
            if (idle)
                return 0;
        }
        if (cparsl_mono_ns() >= deadline)
            return -ETIMEDOUT;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}
