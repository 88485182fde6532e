/*
 * htexec.c - the htex executor on its own: the DFK and the interchange in
 * the client process, managers in other processes that join over
 * libfabric (transport/fabric.h) and prove themselves with the run's
 * secret (join.h).
 *
 * At start the executor makes the run's secret (a 0600 file in the run
 * dir), opens the listener on the configured providers, and writes the
 * published address next to it:
 *
 *   <run dir>/htex.<label>.addr     the listener's addresses (one line)
 *   <run dir>/htex.<label>.secret   32 random bytes in hex, mode 0600
 *
 * A manager is the same program started with CPARSL_HTEX_JOIN naming the
 * .addr file (the secret is read from the .secret file beside it, or from
 * CPARSL_HTEX_SECRET): its cparsl_init joins, serves tasks until the
 * interchange shuts it down (or goes silent past the threshold, or it
 * is drained), and returns CPARSL_SERVED.  With `managers: N` the
 * executor starts N such processes itself on this host (the "local"
 * block), re-running this program from /proc/self/exe with its own
 * arguments.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cparsl/cparsl.h>
#include <cparsl/plugin.h>
#include <cparsl/provider.h>

#include "blocks.h"
#include "child.h"
#include "htexec.h"
#include "interchange.h"
#include "join.h"
#include "log.h"
#include "manager.h"
#include "transport/fabric.h"
#include "transport/mpi.h"
#include "transport/mux.h"

#include <mpi.h>

#define MAX_PROVIDERS 8

struct htexec {
    cparsl_executor_t base;
    /* config */
    char *providers[MAX_PROVIDERS];
    size_t nproviders;
    char *address;
    int64_t managers, workers, prefetch, max_batch;
    bool isolation;
    double hb_period, hb_threshold, max_idletime, join_timeout;
    /* running */
    unsigned char secret[HTEX_SECRET_LEN];
    char addr_path[PATH_MAX];
    cparsl_transport_t *t;
    htex_ix_t *ix;
    pid_t *pids;
    size_t npids;
    /* blocks from a provider (providers/blocks.h) */
    htex_blocks_cfg_t bc;
    bool idletime_given;
    cparsl_blocks_t *blocks;
};

static const char *const hx_keys[] = {
    "type",
    "label",
    "providers",
    "address",
    "managers",
    "workers_per_manager",
    "isolation",
    "prefetch",
    "max_batch",
    "heartbeat_period",
    "heartbeat_threshold",
    "max_idletime",
    "join_timeout",
    "provider",
    "strategy",
    "strategy_period",
    NULL,
};

static const char *const iso_modes[] = {"process", "none", NULL};

static int hx_probe(const cparsl_launch_t *launch)
{
    (void)launch;
    return 0; /* only when named */
}

static void hx_free_config(struct htexec *h)
{
    cparsl_provider_destroy(h->bc.provider);
    h->bc.provider = NULL;
    for (size_t i = 0; i < h->nproviders; i++)
        free(h->providers[i]);
    free(h->address);
}

static int hx_configure(const cparsl_cnode_t *node,
                        const cparsl_launch_t *launch, cparsl_executor_t **out,
                        cparsl_error_t *err)
{
    (void)launch;
    struct htexec *h = calloc(1, sizeof *h);
    if (!h)
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    int rc, iso;
    const char *address;
    if ((rc = cparsl_cnode_check_keys(node, hx_keys, err)) < 0 ||
        (rc = cparsl_cnode_string(node, "address", "127.0.0.1", &address,
                                  err)) < 0 ||
        (rc = cparsl_cnode_int(node, "managers", 0, 0, 1024, &h->managers,
                               err)) < 0 ||
        (rc = cparsl_cnode_int(node, "workers_per_manager", 2, 1, 4096,
                               &h->workers, err)) < 0 ||
        (rc = cparsl_cnode_choice(node, "isolation", iso_modes, 0, &iso, err)) <
            0 ||
        (rc = cparsl_cnode_int(node, "prefetch", 8, 0, 1 << 20, &h->prefetch,
                               err)) < 0 ||
        (rc = cparsl_cnode_int(node, "max_batch", 256, 1, 512, &h->max_batch,
                               err)) < 0 ||
        (rc = cparsl_cnode_double(node, "heartbeat_period", 5, 0.01, 3600,
                                  &h->hb_period, err)) < 0 ||
        (rc = cparsl_cnode_double(node, "heartbeat_threshold", 30, 0.05, 86400,
                                  &h->hb_threshold, err)) < 0 ||
        (rc = cparsl_cnode_double(node, "max_idletime", 0, 0, 1e9,
                                  &h->max_idletime, err)) < 0 ||
        (rc = cparsl_cnode_double(node, "join_timeout", 30, 0.1, 3600,
                                  &h->join_timeout, err)) < 0 ||
        (rc = htex_blocks_configure(node, &h->bc, err)) < 0)
        goto fail;
    h->idletime_given = cparsl_cnode_get(node, "max_idletime") != NULL;
    if (h->hb_threshold <= h->hb_period) {
        rc = cparsl_cnode_error(
            cparsl_cnode_get(node, "heartbeat_threshold"), err,
            "must be longer than heartbeat_period (%g s)", h->hb_period);
        goto fail;
    }
    h->isolation = iso == 0;
    h->address = strdup(address);
    const cparsl_cnode_t *pv = cparsl_cnode_get(node, "providers");
    if (pv && cparsl_cnode_type(pv) != CPARSL_CNODE_SEQ) {
        rc = cparsl_cnode_error(pv, err,
                                "expected a list of libfabric "
                                "providers, e.g. [shm, tcp;ofi_rxm]");
        goto fail;
    }
    size_t n = pv ? cparsl_cnode_len(pv) : 2;
    if (n == 0 || n > MAX_PROVIDERS) {
        rc = cparsl_cnode_error(pv, err, "expected 1 to %d providers",
                                MAX_PROVIDERS);
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        const char *name = "shm";
        if (pv) {
            const cparsl_cnode_t *it = cparsl_cnode_at(pv, i);
            name = cparsl_cnode_scalar(it);
            if (!name || !*name) {
                rc = cparsl_cnode_error(it, err, "expected a provider name");
                goto fail;
            }
        } else if (i == 1) {
            name = "tcp;ofi_rxm";
        }
        h->providers[h->nproviders++] = strdup(name);
    }
    *out = &h->base;
    return 0;
fail:
    hx_free_config(h);
    free(h);
    return rc;
}

/* This program's arguments, from /proc/self/cmdline (NULL-terminated
 * vector in one allocation). */
static char **own_argv(void)
{
    int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    for (ssize_t n; buf && (n = read(fd, buf + len, cap - len)) > 0;) {
        len += (size_t)n;
        if (len == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                buf = NULL;
            }
            buf = nb;
        }
    }
    close(fd);
    if (!buf || !len) {
        free(buf);
        return NULL;
    }
    size_t argc = 0;
    for (size_t i = 0; i < len; i++)
        argc += buf[i] == '\0';
    char **v = malloc((argc + 1) * sizeof *v + len);
    if (!v) {
        free(buf);
        return NULL;
    }
    char *s = (char *)(v + argc + 1);
    memcpy(s, buf, len);
    free(buf);
    size_t k = 0;
    for (size_t i = 0; i < len && k < argc; i += strlen(s + i) + 1)
        v[k++] = s + i;
    v[k] = NULL;
    return v;
}

/* A manager's CPARSL_HTEX_* settings (docs/htex.md), malloc'd into own. */
enum { NSETTINGS = 6 };
static int join_settings(char *own[NSETTINGS], const char *addr_path,
                         long long workers, bool isolation, double threshold,
                         double heartbeat, double idletime)
{
    int bad = asprintf(&own[0], "CPARSL_HTEX_JOIN=%s", addr_path) < 0;
    bad |= asprintf(&own[1], "CPARSL_HTEX_WORKERS=%lld", workers) < 0;
    bad |= asprintf(&own[2], "CPARSL_HTEX_ISOLATION=%s",
                    isolation ? "process" : "none") < 0;
    bad |= asprintf(&own[3], "CPARSL_HTEX_THRESHOLD=%g", threshold) < 0;
    bad |= asprintf(&own[4], "CPARSL_HTEX_HEARTBEAT=%g", heartbeat) < 0;
    bad |= asprintf(&own[5], "CPARSL_HTEX_MAX_IDLETIME=%g", idletime) < 0;
    if (bad) {
        for (int i = 0; i < NSETTINGS; i++) {
            free(own[i]);
            own[i] = NULL;
        }
        return -ENOMEM;
    }
    return 0;
}

/* The environment of a local manager: ours, with its CPARSL_HTEX_*
 * settings put first (getenv finds the first).  Built before fork: the
 * child of a process with threads may only exec. */
static char **manager_env(const struct htexec *h)
{
    extern char **environ;
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + NSETTINGS + 1, sizeof *env);
    if (!env)
        return NULL;
    /* With a provider, max_idletime is the strategy's unless given. */
    double idle = h->bc.provider || h->blocks
                      ? (h->idletime_given ? h->max_idletime : 0)
                      : h->max_idletime;
    if (join_settings(env, h->addr_path, (long long)h->workers, h->isolation,
                      h->hb_threshold, h->hb_period, idle) < 0) {
        free(env);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        env[NSETTINGS + i] = environ[i];
    return env;
}

static void manager_env_free(char **env)
{
    for (int i = 0; env && i < NSETTINGS; i++)
        free(env[i]);
    free(env);
}

/* n more local managers: this program re-run in manager mode. */
static int start_local(struct htexec *h, int64_t n, cparsl_error_t *err)
{
    if (n <= 0)
        return 0;
    char **argv = own_argv();
    char **env = manager_env(h);
    pid_t *pids = argv && env
                      ? realloc(h->pids, (h->npids + (size_t)n) * sizeof *pids)
                      : NULL;
    if (!argv || !env || !pids) {
        free(argv);
        manager_env_free(env);
        return cparsl_error_set(err, argv ? -ENOMEM : -ENOENT,
                                "htex: cannot start local managers (%s)",
                                argv ? "out of memory"
                                     : "cannot read /proc/self/cmdline");
    }
    h->pids = pids;
    int rc = 0;
    for (int64_t i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            rc = cparsl_error_set(err, -errno, "htex: fork: %s",
                                  strerror(errno));
            break;
        }
        if (pid == 0) {
            execve("/proc/self/exe", argv, env);
            _exit(127);
        }
        h->pids[h->npids++] = pid;
    }
    free(argv);
    manager_env_free(env);
    if (rc == 0)
        CPARSL_LOG(CPARSL_LOG_INFO, "htex",
                   "%s: started %lld local manager process(es)", h->base.label,
                   (long long)n);
    return rc;
}

int htex_listen_open(const char *label, const char *const *providers,
                     size_t nproviders, const char *address,
                     unsigned char *secret, cparsl_transport_t **out,
                     char *addr_path, size_t cap, cparsl_error_t *err)
{
    const char *dir = cparsl_run_dir();
    char secret_path[PATH_MAX];
    snprintf(addr_path, cap, "%s/htex.%s.addr", dir, label);
    snprintf(secret_path, sizeof secret_path, "%s/htex.%s.secret", dir, label);
    int rc = htex_secret_create(secret_path, secret, err);
    if (rc < 0)
        return rc;
    htex_fabric_opts_t fo = {
        .providers = providers,
        .nproviders = nproviders,
        .bind_node = address,
    };
    cparsl_transport_t *t = NULL;
    if ((rc = htex_fabric_listen(&fo, &t, err)) < 0)
        return rc;
    size_t need = 0;
    char small[1];
    htex_fabric_published(t, small, sizeof small, &need);
    char *text = malloc(need + 1);
    if (!text || (rc = htex_fabric_published(t, text, need + 1, NULL)) < 0) {
        free(text);
        t->ops->destroy(t);
        return cparsl_error_set(err, -ENOMEM,
                                "htex: cannot publish the address");
    }
    FILE *fp = fopen(addr_path, "wx");
    if (!fp || fprintf(fp, "%s\n", text) < 0 || fclose(fp) != 0) {
        rc = cparsl_error_set(err, -errno, "htex: cannot write '%s': %s",
                              addr_path, strerror(errno));
        free(text);
        t->ops->destroy(t);
        return rc;
    }
    CPARSL_LOG(CPARSL_LOG_INFO, "htex",
               "%s: listening for joiners at %s (address in %s)", label, text,
               addr_path);
    free(text);
    *out = t;
    return 0;
}

/* ---- blocks from a provider (providers/blocks.h) ---------------------- */

static size_t hk_outstanding(void *arg)
{
    return htex_ix_outstanding(arg);
}

static int hk_managers(void *arg, cparsl_mgr_view_t **out, size_t *n)
{
    htex_mgr_info_t *v = NULL;
    size_t k = 0;
    int rc = htex_ix_managers(arg, &v, &k, 5);
    if (rc < 0)
        return rc;
    cparsl_mgr_view_t *o = calloc(k ? k : 1, sizeof *o);
    if (!o) {
        free(v);
        return -ENOMEM;
    }
    for (size_t i = 0; i < k; i++) {
        snprintf(o[i].block, sizeof o[i].block, "%s", v[i].block);
        o[i].slots = v[i].slots;
        o[i].held = v[i].held;
        o[i].idle_s = v[i].idle_s;
        o[i].registered = v[i].registered;
        o[i].draining = v[i].draining;
        o[i].gone = v[i].gone;
    }
    free(v);
    *out = o;
    *n = k;
    return 0;
}

static int hk_drain_block(void *arg, const char *block)
{
    return htex_ix_drain_block(arg, block);
}

static void hk_fail_waiting(void *arg, const char *why)
{
    htex_ix_fail_waiting(arg, why);
}

int htex_blocks_configure(const cparsl_cnode_t *node, htex_blocks_cfg_t *out,
                          cparsl_error_t *err)
{
    static const char *const strategies[] = {"none", "simple",
                                             "htex_auto_scale", NULL};
    int rc;
    out->provider = NULL;
    if ((rc = cparsl_cnode_choice(node, "strategy", strategies,
                                  CPARSL_STRATEGY_SIMPLE, &out->strategy,
                                  err)) < 0 ||
        (rc = cparsl_cnode_double(node, "strategy_period", 5, 0.05, 3600,
                                  &out->period, err)) < 0)
        return rc;
    const cparsl_cnode_t *prov = cparsl_cnode_get(node, "provider");
    if (prov)
        return cparsl_provider_configure(prov, &out->provider, err);
    return 0;
}

int htex_blocks_start(htex_ix_t *ix, htex_blocks_cfg_t *c,
                      cparsl_blocks_t **out, cparsl_error_t *err)
{
    char exe[PATH_MAX], cwd[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char **argv = own_argv();
    char *env[NSETTINGS + 1] = {NULL};
    /* The strategy decides when a block goes: no max_idletime. */
    int bad = n <= 0 || !argv || !getcwd(cwd, sizeof cwd) ||
              join_settings(env, c->addr_path, c->workers, c->isolation,
                            c->hb_threshold, c->hb_period, 0) < 0;
    int rc = 0;
    if (bad) {
        rc = cparsl_error_set(err, -ENOENT,
                              "%s: cannot name the manager's command for "
                              "the blocks (/proc/self/exe, cmdline, cwd)",
                              c->label);
    } else {
        exe[n] = '\0';
        argv[0] = exe;
        cparsl_blocks_opts_t o = {
            .label = c->label,
            .run_dir = cparsl_run_dir(),
            .cwd = cwd,
            .env = (const char *const *)env,
            .argv = (const char *const *)argv,
            .workers_per_manager = c->workers,
            .strategy = c->strategy,
            .period = c->period,
            .max_idletime = c->max_idletime,
        };
        cparsl_blocks_hooks_t hooks = {
            .arg = ix,
            .outstanding = hk_outstanding,
            .managers = hk_managers,
            .drain_block = hk_drain_block,
            .fail_waiting = hk_fail_waiting,
        };
        cparsl_provider_t *p = c->provider;
        c->provider = NULL; /* the blocks own it now */
        rc = cparsl_blocks_create(p, &o, &hooks, out, err);
        if (rc == 0 && (rc = cparsl_blocks_start(*out, err)) < 0) {
            cparsl_blocks_destroy(*out);
            *out = NULL;
        }
    }
    free(argv);
    for (int i = 0; i < NSETTINGS; i++)
        free(env[i]);
    return rc;
}

static int hx_start(cparsl_executor_t *ex, cparsl_error_t *err)
{
    struct htexec *h = cparsl_container_of(ex, struct htexec, base);
    int rc = htex_listen_open(ex->label, (const char *const *)h->providers,
                              h->nproviders, h->address, h->secret, &h->t,
                              h->addr_path, sizeof h->addr_path, err);
    if (rc < 0)
        return rc;
    htex_ix_opts_t io = {
        .max_batch = (uint32_t)h->max_batch,
        .heartbeat_threshold = h->hb_threshold,
        .heartbeat_period = h->hb_period,
        .secret = h->secret,
        .build_id = cparsl_program_build_id(),
        .lose_silent = true,
    };
    if ((rc = htex_ix_create(h->t, &io, &h->ix, err)) < 0 ||
        (rc = htex_ix_start(h->ix, err)) < 0)
        return rc;
    if ((rc = start_local(h, h->managers, err)) < 0)
        return rc;
    if (h->bc.provider) {
        h->bc.label = ex->label;
        h->bc.addr_path = h->addr_path;
        h->bc.workers = (int)h->workers;
        h->bc.isolation = h->isolation;
        h->bc.hb_period = h->hb_period;
        h->bc.hb_threshold = h->hb_threshold;
        h->bc.max_idletime = h->idletime_given ? h->max_idletime : 120;
        if ((rc = htex_blocks_start(h->ix, &h->bc, &h->blocks, err)) < 0)
            return rc;
    }
    /* The local block's managers count before the first task goes. */
    for (int i = 0;
         i < 100 * h->join_timeout &&
         htex_ix_capacity(h->ix) < (size_t)(h->managers * h->workers);
         i++)
        usleep(10000);
    if (htex_ix_capacity(h->ix) < (size_t)(h->managers * h->workers))
        return cparsl_error_set(err, -ETIMEDOUT,
                                "htex: %lld local managers did not join "
                                "within %g s (see their rank logs)",
                                (long long)h->managers, h->join_timeout);
    return 0;
}

static int hx_submit(cparsl_executor_t *ex, cparsl_exec_t *const *batch,
                     size_t n)
{
    struct htexec *h = cparsl_container_of(ex, struct htexec, base);
    /* Its blocks kept failing (providers/blocks.c): nothing can run. */
    if (cparsl_blocks_refuse(h->blocks, batch, n))
        return 0;
    return htex_ix_submit(h->ix, batch, n);
}

static size_t hx_outstanding(cparsl_executor_t *ex)
{
    struct htexec *h = cparsl_container_of(ex, struct htexec, base);
    return h->ix ? htex_ix_outstanding(h->ix) : 0;
}

static size_t hx_capacity(cparsl_executor_t *ex)
{
    struct htexec *h = cparsl_container_of(ex, struct htexec, base);
    return h->ix ? htex_ix_capacity(h->ix) : 0;
}

/* The local block grows by n managers (issue 7's providers add blocks
 * of their own). */
static int hx_scale_out(cparsl_executor_t *ex, unsigned n)
{
    struct htexec *h = cparsl_container_of(ex, struct htexec, base);
    if (h->blocks) {
        cparsl_blocks_scale_out(h->blocks, n);
        return 0;
    }
    cparsl_error_t err;
    int rc = start_local(h, n, &err);
    if (rc < 0)
        CPARSL_LOG(CPARSL_LOG_ERROR, "htex", "%s: scale out: %s", ex->label,
                   err.text);
    return rc;
}

/* n managers drain and leave (the least loaded first). */
static int hx_scale_in(cparsl_executor_t *ex, unsigned n)
{
    struct htexec *h = cparsl_container_of(ex, struct htexec, base);
    if (h->blocks)
        cparsl_blocks_scale_in(h->blocks, n);
    else if (h->ix)
        htex_ix_drain(h->ix, n);
    return 0;
}

static int hx_drain(cparsl_executor_t *ex)
{
    struct htexec *h = cparsl_container_of(ex, struct htexec, base);
    if (h->ix)
        htex_ix_begin_shutdown(h->ix);
    return 0;
}

/* Reap the local managers: they leave after SHUTDOWN; any left after
 * the grace period are killed. */
static void reap_local(struct htexec *h, double grace)
{
    for (int i = 0; i < (int)(grace * 100); i++) {
        size_t left = 0;
        for (size_t k = 0; k < h->npids; k++)
            if (h->pids[k] > 0 && waitpid(h->pids[k], NULL, WNOHANG) == 0)
                left++;
            else
                h->pids[k] = 0;
        if (!left)
            return;
        usleep(10000);
    }
    for (size_t k = 0; k < h->npids; k++)
        if (h->pids[k] > 0) {
            CPARSL_LOG(CPARSL_LOG_WARN, "htex",
                       "local manager pid %d did not leave: killed",
                       (int)h->pids[k]);
            kill(h->pids[k], SIGKILL);
            waitpid(h->pids[k], NULL, 0);
            h->pids[k] = 0;
        }
}

static int hx_shutdown(cparsl_executor_t *ex, cparsl_error_t *err)
{
    struct htexec *h = cparsl_container_of(ex, struct htexec, base);
    int rc = 0;
    if (h->blocks)
        cparsl_blocks_halt(h->blocks); /* no block is asked for now */
    if (h->ix) {
        rc = htex_ix_shutdown(h->ix, 30, err);
        htex_ix_stats_t st;
        htex_ix_stats(h->ix, &st);
        CPARSL_LOG(CPARSL_LOG_INFO, "htex",
                   "%s: %llu tasks dispatched, %llu completed; joiners: "
                   "%llu joined, %llu refused; %llu managers lost (%llu "
                   "tries retried); %llu bad messages, %llu stale results",
                   ex->label, (unsigned long long)st.dispatched,
                   (unsigned long long)st.completed,
                   (unsigned long long)st.joined,
                   (unsigned long long)st.refused, (unsigned long long)st.lost,
                   (unsigned long long)st.requeued,
                   (unsigned long long)st.bad_messages,
                   (unsigned long long)st.stale_results);
    }
    if (h->blocks)
        cparsl_blocks_stop(h->blocks, 10);
    reap_local(h, 10);
    return rc;
}

static void hx_destroy(cparsl_executor_t *ex)
{
    struct htexec *h = cparsl_container_of(ex, struct htexec, base);
    if (h->blocks)
        cparsl_blocks_stop(h->blocks, 5); /* a start that failed half-way */
    cparsl_blocks_destroy(h->blocks);
    htex_ix_destroy(h->ix);
    if (h->t)
        h->t->ops->destroy(h->t);
    if (h->npids)
        reap_local(h, 0.5);
    free(h->pids);
    hx_free_config(h);
    free(h);
}

const struct cparsl_executor_ops cparsl_htex_ops = {
    .family = "htex",
    .flags = 0,
    .probe = hx_probe,
    .configure = hx_configure,
    .start = hx_start,
    .submit = hx_submit,
    .outstanding = hx_outstanding,
    .capacity = hx_capacity,
    .scale_out = hx_scale_out,
    .scale_in = hx_scale_in,
    .drain = hx_drain,
    .shutdown = hx_shutdown,
    .destroy = hx_destroy,
    .serve = cparsl_executor_enosys_serve,
};

/* ==== manager mode ======================================================= */

/* Settings a manager reads from the environment (docs/htex.md). */
static double env_double(const char *name, double def)
{
    const char *v = getenv(name);
    return v && *v ? atof(v) : def;
}

/*
 * A block that is an MPI job (mpiexec/srun with CPARSL_HTEX_JOIN set):
 * rank 0 joins the interchange over libfabric and serves the block's
 * other ranks over MPI as a sub-interchange (no slots of its own), so
 * the interchange sees one manager with the whole block's slots; every
 * other rank is a manager with its slots, upstream rank 0.
 */
static int join_serve_mpi(const char *published, const unsigned char *secret,
                          int nslots, bool isolation, cparsl_error_t *err)
{
    int provided = 0, inited = 0, rank = 0, size = 0;
    MPI_Initialized(&inited);
    setenv("OMPI_MCA_mpi_yield_when_idle", "0", 0);
    if (!inited && MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE,
                                   &provided) != MPI_SUCCESS)
        return cparsl_error_set(err, CPARSL_ETRANSPORT,
                                "joining block: MPI_Init_thread failed");
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    cparsl_transport_t *mt = NULL, *fab = NULL, *mux = NULL;
    int rc = htex_mpi_transport_create(MPI_COMM_WORLD, &mt, err);
    char host[256] = "?";
    gethostname(host, sizeof host - 1);
    /* Rank 0 joins first; the others wait for its word (one int: 0 or
     * the error), so a refused block leaves as a whole. */
    int id = -1, status = rc;
    if (rc == 0 && rank == 0) {
        htex_fabric_opts_t fo = {0};
        unsigned char name[512];
        int nlen = -1;
        if ((status = htex_fabric_join(published, &fo, &fab, err)) == 0 &&
            (nlen = htex_fabric_name(fab, name, sizeof name)) < 0)
            status = cparsl_error_set(err, nlen, "htex: no endpoint name");
        if (status == 0)
            status = htex_join(fab, 0, secret, name, (size_t)nlen,
                               cparsl_program_build_id(), host, 30, &id, err);
        if (status == 0)
            CPARSL_LOG(CPARSL_LOG_INFO, "htex",
                       "block of %d ranks joined as manager %d over %s", size,
                       id, htex_fabric_provider(fab));
    }
    MPI_Bcast(&status, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (status == 0) {
        double hb = env_double("CPARSL_HTEX_HEARTBEAT", 5);
        htex_mgr_opts_t mo = {
            .prefetch = 8,
            .isolation = isolation,
            .rank = rank,
            .node = -1,
            .manager_id = id,
            .host = host,
            .block_id = "mpi",
            .heartbeat_period = hb,
            .max_batch = 256,
        };
        if (rank == 0) {
            int *down =
                malloc((size_t)(size > 1 ? size - 1 : 1) * sizeof *down);
            if (!down || htex_mux_create(mt, fab, size, &mux) < 0) {
                rc = cparsl_error_set(err, -ENOMEM, "out of memory");
            } else {
                for (int r = 1; r < size; r++)
                    down[r - 1] = r;
                mo.upstream = size; /* the interchange: fabric peer 0 */
                mo.downstream = down;
                mo.ndownstream = (size_t)size - 1;
                mo.nslots = 0;
                mo.upstream_threshold = env_double("CPARSL_HTEX_THRESHOLD", 30);
                mo.max_idletime = env_double("CPARSL_HTEX_MAX_IDLETIME", 0);
                rc = htex_manager_run(mux, &mo, err);
            }
            free(down);
        } else {
            mo.upstream = 0;
            mo.nslots = nslots;
            rc = htex_manager_run(mt, &mo, err);
        }
    } else if (rank != 0) {
        rc = cparsl_error_set(err, status,
                              "joining block: rank 0 could not join");
    } else {
        rc = status;
    }
    if (mux)
        mux->ops->destroy(mux);
    if (fab)
        fab->ops->destroy(fab);
    if (mt)
        mt->ops->destroy(mt); /* collective */
    if (!inited)
        MPI_Finalize();
    return rc;
}

int htex_join_serve(const char *addr_file, cparsl_error_t *err)
{
    char text[8192];
    FILE *fp = fopen(addr_file, "r");
    if (!fp)
        return cparsl_error_set(err, -errno,
                                "CPARSL_HTEX_JOIN: cannot read '%s': %s",
                                addr_file, strerror(errno));
    if (!fgets(text, sizeof text, fp))
        text[0] = '\0';
    fclose(fp);
    text[strcspn(text, "\n")] = '\0';
    /* The secret beside the address: htex.<label>.addr -> .secret */
    char secret_path[PATH_MAX];
    snprintf(secret_path, sizeof secret_path, "%s", addr_file);
    char *dot = strrchr(secret_path, '.');
    if (dot && strcmp(dot, ".addr") == 0)
        snprintf(dot, sizeof secret_path - (size_t)(dot - secret_path),
                 ".secret");
    unsigned char secret[HTEX_SECRET_LEN];
    int rc = htex_secret_load(secret_path, secret, err);
    if (rc < 0)
        return rc;
    char logpath[PATH_MAX];
    snprintf(logpath, sizeof logpath, "%s", addr_file);
    char *slash = strrchr(logpath, '/');
    snprintf(slash ? slash + 1 : logpath,
             sizeof logpath - (size_t)(slash ? slash + 1 - logpath : 0),
             "manager.%ld.log", (long)getpid());
    if ((rc = cparsl_log_open(logpath, CPARSL_LOG_INFO)) < 0)
        return cparsl_error_set(err, rc, "cannot open the log '%s'", logpath);
    const char *iso = getenv("CPARSL_HTEX_ISOLATION");
    bool isolation = !iso || strcmp(iso, "none") != 0;
    bool helper = false;
    if (isolation && !htex_forkhelper_running()) {
        cparsl_error_t e2;
        helper = htex_forkhelper_start(false, &e2) == 0;
    }
    const char *workers = getenv("CPARSL_HTEX_WORKERS");
    int nslots = workers ? atoi(workers) : 2;
    if (nslots < 1)
        nslots = 1;
    cparsl_launch_t launch;
    cparsl_launch_detect(&launch);
    if (launch.size > 1) {
        rc = join_serve_mpi(text, secret, nslots, isolation, err);
        if (rc < 0)
            CPARSL_LOG(CPARSL_LOG_ERROR, "htex", "%s", err->text);
        if (helper)
            htex_forkhelper_stop();
        cparsl_log_close();
        return rc;
    }
    htex_fabric_opts_t fo = {0};
    cparsl_transport_t *t = NULL;
    if ((rc = htex_fabric_join(text, &fo, &t, err)) < 0) {
        CPARSL_LOG(CPARSL_LOG_ERROR, "htex", "%s", err->text);
        if (helper)
            htex_forkhelper_stop();
        cparsl_log_close();
        return rc;
    }
    unsigned char name[512];
    int nlen = htex_fabric_name(t, name, sizeof name);
    char host[256] = "?";
    gethostname(host, sizeof host - 1);
    int id = -1;
    if (nlen < 0)
        rc = cparsl_error_set(err, nlen, "htex: no endpoint name");
    else
        rc = htex_join(t, 0, secret, name, (size_t)nlen,
                       cparsl_program_build_id(), host, 30, &id, err);
    if (rc == 0) {
        CPARSL_LOG(CPARSL_LOG_INFO, "htex",
                   "joined as manager %d over %s, %d slot(s)", id,
                   htex_fabric_provider(t), nslots);
        const char *thr = getenv("CPARSL_HTEX_THRESHOLD");
        const char *hb = getenv("CPARSL_HTEX_HEARTBEAT");
        const char *idle = getenv("CPARSL_HTEX_MAX_IDLETIME");
        htex_mgr_opts_t mo = {
            .upstream = 0,
            .nslots = nslots,
            .prefetch = 8,
            .isolation = isolation,
            .rank = id,
            .node = -1,
            .manager_id = id,
            .host = host,
            .block_id =
                getenv("CPARSL_BLOCK_ID") ? getenv("CPARSL_BLOCK_ID") : "local",
            .heartbeat_period = hb ? atof(hb) : 5,
            .max_batch = 256,
            .upstream_threshold = thr ? atof(thr) : 30,
            .max_idletime = idle ? atof(idle) : 0,
        };
        rc = htex_manager_run(t, &mo, err);
    }
    if (rc < 0)
        CPARSL_LOG(CPARSL_LOG_ERROR, "htex", "%s", err->text);
    t->ops->destroy(t);
    if (helper)
        htex_forkhelper_stop();
    cparsl_log_close();
    return rc;
}
