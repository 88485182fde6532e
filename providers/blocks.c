/*
 * blocks.c - an executor's blocks and the scaling strategy (blocks.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <cparsl/plugin.h>
#include <cparsl/provider.h>

#include "blocks.h"
#include "log.h"

/* A block whose managers all left after it was drained gets this long to
 * end on its own before it is cancelled. */
#define DRAIN_GRACE_S 10.0

struct block {
    int64_t id;
    char name[16]; /* its id as text: CPARSL_BLOCK_ID */
    char job[128];
    char out[PATH_MAX], err[PATH_MAX];
    cparsl_block_state_t state;
    bool ended, joined, draining, cancelled;
    int64_t t_submit, t_running, t_drain, t_gone;
    /* from the last look at the managers */
    int live;
    unsigned slots;
    size_t held;
    double idle_s; /* the least idle of its live managers */
};

struct cparsl_blocks {
    cparsl_provider_t *p;
    cparsl_blocks_hooks_t h;
    char *label, *run_dir, *cwd;
    char **env, **argv;
    size_t nenv;
    int workers, strategy;
    double period, max_idletime;

    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop, kicked;
    unsigned want_out, want_in;
    _Atomic bool bad; /* set under mu; read without it on submit */
    char why[CPARSL_ERROR_TEXT];
    size_t nactive;

    /* the strategy thread's */
    struct block *blocks;
    size_t n, cap;
    int64_t next_id;
    int failures; /* in a row */
    bool no_more; /* too many failures while others served */
    char last_failure[384];
    int64_t idle_since; /* executor idle (no outstanding tasks) since */
    bool first_turn;
};

static double secs(int64_t ns)
{
    return (double)ns / 1e9;
}

static void record(cparsl_blocks_t *b, const struct block *k, const char *event)
{
    cparsl_store_block_event(&(cparsl_block_event_t){
        .executor = b->label,
        .block = k->id,
        .event = event,
        .job_id = *k->job ? k->job : NULL,
        .nodes = b->p->nodes_per_block,
        .workers = (int32_t)k->slots,
        .t_ns = cparsl_now_ns(),
    });
}

/* The last line of a block's error output, for the failure message. */
static void tail_of(const char *path, char *out, size_t cap)
{
    *out = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    char buf[512];
    off_t end = lseek(fd, 0, SEEK_END);
    off_t from = end > (off_t)sizeof buf - 1 ? end - (off_t)sizeof buf + 1 : 0;
    ssize_t n = pread(fd, buf, sizeof buf - 1, from);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    char *nl = strrchr(buf, '\n');
    snprintf(out, cap, "%.199s", nl ? nl + 1 : buf);
}

static void count_failure(cparsl_blocks_t *b, struct block *k, const char *what)
{
    char tail[200];
    tail_of(k->err, tail, sizeof tail);
    snprintf(b->last_failure, sizeof b->last_failure,
             "block %lld (job %.40s) %.80s%s%.60s%s; see %.140s",
             (long long)k->id, *k->job ? k->job : "none", what,
             *tail ? " (last error line: '" : "", tail, *tail ? "')" : "",
             k->err);
    b->failures++;
    CPARSL_LOG(CPARSL_LOG_ERROR, "blocks", "%s: %s (%d in a row)", b->label,
               b->last_failure, b->failures);
}

/* ---- actions ------------------------------------------------------------ */

static struct block *new_block(cparsl_blocks_t *b)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 8;
        struct block *v = realloc(b->blocks, cap * sizeof *v);
        if (!v)
            return NULL;
        b->blocks = v;
        b->cap = cap;
    }
    struct block *k = &b->blocks[b->n++];
    *k = (struct block){.id = b->next_id++, .state = CPARSL_BLOCK_PENDING};
    snprintf(k->name, sizeof k->name, "%lld", (long long)k->id);
    return k;
}

static void submit_one(cparsl_blocks_t *b)
{
    struct block *k = new_block(b);
    if (!k)
        return;
    char script[PATH_MAX], prefix[PATH_MAX - 16], jobname[128], idvar[64];
    snprintf(prefix, sizeof prefix, "%s/block.%s.%lld", b->run_dir, b->label,
             (long long)k->id);
    snprintf(script, sizeof script, "%s.sh", prefix);
    snprintf(k->out, sizeof k->out, "%s.out", prefix);
    snprintf(k->err, sizeof k->err, "%s.err", prefix);
    snprintf(jobname, sizeof jobname, "cparsl.%s.%lld", b->label,
             (long long)k->id);
    snprintf(idvar, sizeof idvar, "CPARSL_BLOCK_ID=%s", k->name);
    b->env[b->nenv] = idvar; /* the slot kept for it */
    cparsl_block_req_t req = {
        .label = b->label,
        .block = k->id,
        .name = jobname,
        .script = script,
        .out = k->out,
        .err = k->err,
        .prefix = prefix,
    };
    if (strcmp(b->p->ops->name, "cobalt") == 0) {
        /* Cobalt names its files itself. */
        snprintf(k->out, sizeof k->out, "%s.output", prefix);
        snprintf(k->err, sizeof k->err, "%s.error", prefix);
    }
    cparsl_error_t err;
    k->t_submit = cparsl_mono_ns();
    int rc = cparsl_provider_write_script(b->p, &req, b->cwd,
                                          (const char *const *)b->env,
                                          (const char *const *)b->argv, &err);
    b->env[b->nenv] = NULL;
    if (rc == 0)
        rc = b->p->ops->submit(b->p, &req, k->job, sizeof k->job, &err);
    if (rc < 0) {
        k->ended = true;
        k->state = CPARSL_BLOCK_FAILED;
        record(b, k, "failed");
        snprintf(b->last_failure, sizeof b->last_failure,
                 "block %lld could not be submitted: %.200s", (long long)k->id,
                 err.text);
        b->failures++;
        CPARSL_LOG(CPARSL_LOG_ERROR, "blocks", "%s: %s (%d in a row)", b->label,
                   b->last_failure, b->failures);
        return;
    }
    record(b, k, "requested");
    CPARSL_LOG(CPARSL_LOG_INFO, "blocks",
               "%s: block %lld submitted to %s as job %s (%s)", b->label,
               (long long)k->id, b->p->ops->name, k->job, script);
}

static void cancel_block(cparsl_blocks_t *b, struct block *k, const char *why)
{
    if (k->ended || k->cancelled)
        return;
    cparsl_error_t err;
    const char *ids[1] = {k->job};
    k->cancelled = true;
    if (b->p->ops->cancel(b->p, ids, 1, &err) < 0)
        CPARSL_LOG(CPARSL_LOG_ERROR, "blocks", "%s: cancelling block %lld: %s",
                   b->label, (long long)k->id, err.text);
    else
        CPARSL_LOG(CPARSL_LOG_INFO, "blocks",
                   "%s: block %lld (job %s) cancelled: %s", b->label,
                   (long long)k->id, k->job, why);
    record(b, k, "cancel");
}

/* Give a block back: a pending one is cancelled, a running one drains. */
static void release_block(cparsl_blocks_t *b, struct block *k, const char *why)
{
    if (k->ended || k->draining)
        return;
    k->draining = true;
    k->t_drain = cparsl_mono_ns();
    if (!k->joined) {
        cancel_block(b, k, why);
        return;
    }
    if (b->h.drain_block(b->h.arg, k->name) < 0) {
        cancel_block(b, k, why);
        return;
    }
    record(b, k, "draining");
    CPARSL_LOG(CPARSL_LOG_INFO, "blocks",
               "%s: draining block %lld (job %s): %s", b->label,
               (long long)k->id, k->job, why);
}

/* ---- the turn ----------------------------------------------------------- */

static void block_ended(cparsl_blocks_t *b, struct block *k,
                        cparsl_block_state_t st)
{
    k->ended = true;
    k->state = st;
    record(b, k, cparsl_block_state_name(st));
    bool ours = k->cancelled || k->draining;
    const char *what = NULL;
    if (st == CPARSL_BLOCK_FAILED && !ours)
        what = "failed";
    else if (!k->joined && !ours)
        what = st == CPARSL_BLOCK_TIMEOUT ? "reached its walltime before a "
                                            "manager joined"
                                          : "ended before any manager joined";
    if (what)
        count_failure(b, k, what);
    else
        CPARSL_LOG(CPARSL_LOG_INFO, "blocks", "%s: block %lld (job %s) %s",
                   b->label, (long long)k->id, k->job,
                   cparsl_block_state_name(st));
}

static void poll_states(cparsl_blocks_t *b)
{
    size_t n = 0;
    for (size_t i = 0; i < b->n; i++)
        n += !b->blocks[i].ended;
    if (!n)
        return;
    const char **ids = malloc(n * sizeof *ids);
    size_t *idx = malloc(n * sizeof *idx);
    cparsl_block_state_t *st = malloc(n * sizeof *st);
    if (ids && idx && st) {
        size_t j = 0;
        for (size_t i = 0; i < b->n; i++)
            if (!b->blocks[i].ended) {
                idx[j] = i;
                ids[j++] = b->blocks[i].job;
            }
        cparsl_error_t err;
        if (b->p->ops->status(b->p, ids, n, st, &err) < 0) {
            CPARSL_LOG_SPARSE(CPARSL_LOG_ERROR, "blocks",
                              "%s: block states unknown this turn: %s",
                              b->label, err.text);
        } else {
            for (size_t i = 0; i < n; i++) {
                struct block *k = &b->blocks[idx[i]];
                if (cparsl_block_state_final(st[i])) {
                    block_ended(b, k, st[i]);
                } else if (st[i] != k->state) {
                    k->state = st[i];
                    if (st[i] == CPARSL_BLOCK_RUNNING && !k->t_running)
                        k->t_running = cparsl_mono_ns();
                    record(b, k, cparsl_block_state_name(st[i]));
                }
            }
        }
    }
    free(ids);
    free(idx);
    free(st);
}

static struct block *find(cparsl_blocks_t *b, const char *name)
{
    for (size_t i = 0; i < b->n; i++)
        if (strcmp(b->blocks[i].name, name) == 0)
            return &b->blocks[i];
    return NULL;
}

/* Count each block's managers now, and note the blocks whose first
 * manager joined.  Returns the slots of managers of no block. */
static unsigned refresh_managers(cparsl_blocks_t *b, bool *ok)
{
    cparsl_mgr_view_t *v = NULL;
    size_t n = 0;
    *ok = b->h.managers(b->h.arg, &v, &n) == 0;
    if (!*ok)
        return 0;
    for (size_t i = 0; i < b->n; i++) {
        struct block *k = &b->blocks[i];
        k->live = 0;
        k->slots = 0;
        k->held = 0;
        k->idle_s = 1e30;
    }
    unsigned other = 0;
    for (size_t i = 0; i < n; i++) {
        const cparsl_mgr_view_t *m = &v[i];
        if (!m->registered || m->gone)
            continue;
        struct block *k = *m->block ? find(b, m->block) : NULL;
        if (!k) {
            other += m->slots;
            continue;
        }
        k->live++;
        k->slots += m->slots;
        k->held += m->held;
        if (m->idle_s < k->idle_s)
            k->idle_s = m->idle_s;
    }
    free(v);
    int64_t now = cparsl_mono_ns();
    for (size_t i = 0; i < b->n; i++) {
        struct block *k = &b->blocks[i];
        if (k->live && !k->joined) {
            k->joined = true;
            if (!k->t_running)
                k->t_running = now;
            b->failures = 0;
            b->no_more = false;
            record(b, k, "joined");
            CPARSL_LOG(CPARSL_LOG_INFO, "blocks",
                       "%s: block %lld (job %s) joined with %u slots, %.2f s "
                       "after it was requested",
                       b->label, (long long)k->id, k->job, k->slots,
                       secs(now - k->t_submit));
        }
    }
    return other;
}

/* Look at the managers: blocks that joined, lost their managers, never
 * connected, or near their walltime.  Returns the slots of managers of
 * no block. */
static unsigned look_at_managers(cparsl_blocks_t *b, bool *ok)
{
    unsigned other = refresh_managers(b, ok);
    if (!*ok)
        return 0;
    int64_t now = cparsl_mono_ns();
    for (size_t i = 0; i < b->n; i++) {
        struct block *k = &b->blocks[i];
        if (k->ended)
            continue;
        if (k->joined && !k->live) {
            if (!k->t_gone) {
                k->t_gone = now;
                record(b, k, "left");
                if (!k->draining)
                    count_failure(b, k, "lost its managers");
            }
            if (secs(now - k->t_gone) > (k->draining ? DRAIN_GRACE_S : 0))
                cancel_block(b, k, "its managers left");
        }
        if (!k->joined && k->state == CPARSL_BLOCK_RUNNING && !k->cancelled &&
            k->t_running && secs(now - k->t_running) > b->p->connect_timeout) {
            char what[128];
            snprintf(what, sizeof what,
                     "ran for %.0f s and no manager joined (connect_timeout)",
                     secs(now - k->t_running));
            count_failure(b, k, what);
            cancel_block(b, k, "no manager joined");
        }
        if (k->joined && k->live && !k->draining &&
            secs(now - k->t_running) >=
                (double)b->p->walltime_s - b->p->drain_margin)
            release_block(b, k, "its walltime is near");
    }
    return other;
}

/* Blocks not ended and not draining. */
static size_t count_active(const cparsl_blocks_t *b)
{
    size_t active = 0;
    for (size_t i = 0; i < b->n; i++)
        active += !b->blocks[i].ended && !b->blocks[i].draining;
    return active;
}

/* The block error handler: after block_error_threshold failures in a row,
 * stop asking for blocks if other workers serve, or else give up (cancel
 * every block, fail what waits).  Returns whether the executor is bad. */
static bool handle_failures(cparsl_blocks_t *b, bool bad, bool ok,
                            unsigned other)
{
    size_t live = 0;
    for (size_t i = 0; i < b->n; i++)
        live += !b->blocks[i].ended && b->blocks[i].live;
    bool give_up = !bad && ok && b->p->block_error_threshold > 0 &&
                   b->failures >= b->p->block_error_threshold;
    if (!give_up)
        return bad;
    if (live || other) {
        /* Workers of the executor's own still serve: no more blocks,
         * but nothing fails. */
        if (!b->no_more) {
            b->no_more = true;
            CPARSL_LOG(CPARSL_LOG_ERROR, "blocks",
                       "%s: no more blocks are asked for: %d in a row "
                       "failed (the last: %s); the run goes on with the "
                       "workers it has",
                       b->label, b->failures, b->last_failure);
        }
        return bad;
    }
    char why[CPARSL_ERROR_TEXT];
    snprintf(why, sizeof why,
             "executor '%.40s' gave up: %d blocks in a row failed; the "
             "last: %.380s",
             b->label, b->failures, b->last_failure);
    CPARSL_LOG(CPARSL_LOG_ERROR, "blocks", "%s", why);
    pthread_mutex_lock(&b->mu);
    b->bad = true;
    snprintf(b->why, sizeof b->why, "%s", why);
    pthread_mutex_unlock(&b->mu);
    for (size_t i = 0; i < b->n; i++)
        cancel_block(b, &b->blocks[i], "the executor gave up");
    b->h.fail_waiting(b->h.arg, why);
    return true;
}

/* Ask for blocks: init_blocks on the first turn, scale_out requests,
 * min_blocks, and (unless strategy none) enough for the outstanding tasks
 * times parallelism; never past max_blocks.  Returns the active count. */
static size_t scale_out(cparsl_blocks_t *b, size_t active, unsigned want_out,
                        size_t outstanding, unsigned other, bool ok, size_t spb)
{
    const cparsl_provider_t *p = b->p;
    size_t add = b->first_turn ? (size_t)p->init_blocks : 0;
    add += want_out;
    if (active + add < (size_t)p->min_blocks)
        add = (size_t)p->min_blocks - active;
    if (b->strategy != CPARSL_STRATEGY_NONE && ok && outstanding) {
        size_t need = (size_t)ceil((double)outstanding * p->parallelism);
        size_t have = other + (active + add) * spb;
        if (need > have) {
            size_t more = (need - have + spb - 1) / spb;
            if (more > add)
                add = more;
        }
    }
    size_t max = (size_t)p->max_blocks;
    if (active + add > max)
        add = max > active ? max - active : 0;
    for (size_t i = 0; i < add; i++)
        submit_one(b);
    return active + add;
}

/* scale_in(n): blocks not joined yet go first, then blocks holding no
 * task.  Returns the active count. */
static size_t give_back(cparsl_blocks_t *b, size_t active, unsigned want_in)
{
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < b->n && want_in && active > 0; i++) {
            struct block *k = &b->blocks[i];
            if (k->ended || k->draining ||
                (pass == 0 ? k->joined : k->held != 0))
                continue;
            release_block(b, k, "scale_in");
            active--;
            want_in--;
        }
    return active;
}

/* Give back idle blocks, down to min_blocks.  simple: all of them once
 * the executor has been idle max_idletime.  htex_auto_scale: each block
 * idle past max_idletime, as long as the slots left cover the tasks. */
static void scale_in_idle(cparsl_blocks_t *b, size_t active, size_t outstanding,
                          unsigned other, size_t spb, int64_t now)
{
    const cparsl_provider_t *p = b->p;
    size_t min = (size_t)p->min_blocks;
    double idle = b->idle_since ? secs(now - b->idle_since) : 0;
    if (b->strategy == CPARSL_STRATEGY_SIMPLE) {
        if (idle < b->max_idletime)
            return;
        for (size_t i = 0; i < b->n && active > min; i++) {
            struct block *k = &b->blocks[i];
            if (!k->ended && !k->draining) {
                release_block(b, k, "the executor is idle");
                active--;
            }
        }
        return;
    }
    size_t need = (size_t)ceil((double)outstanding * p->parallelism);
    size_t have = other + active * spb;
    for (size_t i = 0; i < b->n && active > min; i++) {
        struct block *k = &b->blocks[i];
        if (k->ended || k->draining || have < need + spb)
            continue;
        bool idle_block =
            k->joined ? k->live && k->held == 0 && k->idle_s >= b->max_idletime
                      : idle >= b->max_idletime;
        if (idle_block) {
            release_block(b, k,
                          k->joined ? "idle past max_idletime" : "not needed");
            active--;
            have -= spb;
        }
    }
}

static void turn(cparsl_blocks_t *b)
{
    pthread_mutex_lock(&b->mu);
    unsigned want_out = b->want_out, want_in = b->want_in;
    b->want_out = b->want_in = 0;
    bool bad = b->bad;
    pthread_mutex_unlock(&b->mu);

    poll_states(b);
    bool ok;
    unsigned other = look_at_managers(b, &ok);
    size_t outstanding = b->h.outstanding(b->h.arg);
    int64_t now = cparsl_mono_ns();
    if (outstanding)
        b->idle_since = 0;
    else if (!b->idle_since)
        b->idle_since = now;

    bad = handle_failures(b, bad, ok, other);
    const cparsl_provider_t *p = b->p;
    size_t spb = (size_t)p->nodes_per_block * (size_t)p->tasks_per_node *
                 (size_t)b->workers;
    size_t active = count_active(b);
    if (!bad && !b->no_more)
        active = scale_out(b, active, want_out, outstanding, other, ok, spb);
    b->first_turn = false;
    active = give_back(b, active, want_in);
    if (b->strategy != CPARSL_STRATEGY_NONE && ok)
        scale_in_idle(b, active, outstanding, other, spb, now);
}

static void *strategy_main(void *arg)
{
    cparsl_blocks_t *b = arg;
    prctl(PR_SET_NAME, "cparsl-strategy", 0, 0, 0);
    pthread_mutex_lock(&b->mu);
    while (!b->stop) {
        b->kicked = false;
        pthread_mutex_unlock(&b->mu);
        turn(b);
        pthread_mutex_lock(&b->mu);
        size_t active = 0;
        for (size_t i = 0; i < b->n; i++)
            active += !b->blocks[i].ended;
        b->nactive = active;
        if (b->stop || b->kicked)
            continue;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double t = (double)ts.tv_sec + ts.tv_nsec / 1e9 + b->period;
        ts.tv_sec = (time_t)t;
        ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
        while (!b->stop && !b->kicked &&
               pthread_cond_timedwait(&b->cv, &b->mu, &ts) == 0)
            ;
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

/* ---- the API ------------------------------------------------------------ */

static char **copy_vec(const char *const *v, size_t extra, size_t *n)
{
    size_t k = 0;
    while (v && v[k])
        k++;
    char **c = calloc(k + extra + 1, sizeof *c);
    if (!c)
        return NULL;
    for (size_t i = 0; i < k; i++)
        if (!(c[i] = strdup(v[i]))) {
            for (size_t j = 0; j < i; j++)
                free(c[j]);
            free(c);
            return NULL;
        }
    if (n)
        *n = k;
    return c;
}

static void free_vec(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

int cparsl_blocks_create(cparsl_provider_t *provider,
                         const cparsl_blocks_opts_t *o,
                         const cparsl_blocks_hooks_t *hooks,
                         cparsl_blocks_t **out, cparsl_error_t *err)
{
    cparsl_blocks_t *b = calloc(1, sizeof *b);
    if (!b) {
        cparsl_provider_destroy(provider);
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    }
    b->p = provider;
    b->h = *hooks;
    b->workers = o->workers_per_manager;
    b->strategy = o->strategy;
    b->period = o->period;
    b->max_idletime = o->max_idletime;
    b->next_id = 1; /* block 0 is the executor's own */
    b->first_turn = true;
    size_t nargv = 0;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    b->label = strdup(o->label);
    b->run_dir = strdup(o->run_dir);
    b->cwd = strdup(o->cwd);
    b->env = copy_vec(o->env, 1, &b->nenv); /* +1: CPARSL_BLOCK_ID */
    b->argv = copy_vec(o->argv, 0, &nargv);
    if (!b->label || !b->run_dir || !b->cwd || !b->env || !b->argv) {
        cparsl_blocks_destroy(b);
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    }
    *out = b;
    return 0;
}

int cparsl_blocks_start(cparsl_blocks_t *b, cparsl_error_t *err)
{
    int rc = pthread_create(&b->thread, NULL, strategy_main, b);
    if (rc != 0)
        return cparsl_error_set(err, -rc,
                                "cannot start the strategy "
                                "thread: %s",
                                strerror(rc));
    b->started = true;
    return 0;
}

static void kick(cparsl_blocks_t *b)
{
    b->kicked = true;
    pthread_cond_broadcast(&b->cv);
}

void cparsl_blocks_scale_out(cparsl_blocks_t *b, unsigned n)
{
    pthread_mutex_lock(&b->mu);
    b->want_out += n;
    kick(b);
    pthread_mutex_unlock(&b->mu);
}

void cparsl_blocks_scale_in(cparsl_blocks_t *b, unsigned n)
{
    pthread_mutex_lock(&b->mu);
    b->want_in += n;
    kick(b);
    pthread_mutex_unlock(&b->mu);
}

size_t cparsl_blocks_active(cparsl_blocks_t *b)
{
    pthread_mutex_lock(&b->mu);
    size_t n = b->nactive;
    pthread_mutex_unlock(&b->mu);
    return n;
}

bool cparsl_blocks_bad(cparsl_blocks_t *b, char *why, size_t cap)
{
    pthread_mutex_lock(&b->mu);
    bool bad = b->bad;
    if (bad && why)
        snprintf(why, cap, "%s", b->why);
    pthread_mutex_unlock(&b->mu);
    return bad;
}

bool cparsl_blocks_refuse(cparsl_blocks_t *b, cparsl_exec_t *const *batch,
                          size_t n)
{
    char why[CPARSL_ERROR_TEXT];
    /* Every submit comes here: no lock until the executor is bad. */
    if (!b || !atomic_load_explicit(&b->bad, memory_order_relaxed) ||
        !cparsl_blocks_bad(b, why, sizeof why))
        return false;
    for (size_t i = 0; i < n; i++) {
        cparsl_exec_fail(batch[i], CPARSL_EEXECUTOR, "%s", why);
        cparsl_exec_complete(batch[i]);
    }
    return true;
}

void cparsl_blocks_halt(cparsl_blocks_t *b)
{
    if (!b->started)
        return;
    pthread_mutex_lock(&b->mu);
    b->stop = true;
    kick(b);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->thread, NULL);
    b->started = false;
    /* A block that joined since the last turn is recorded as such. */
    bool ok;
    refresh_managers(b, &ok);
}

void cparsl_blocks_stop(cparsl_blocks_t *b, double timeout)
{
    cparsl_blocks_halt(b);
    /* Pending blocks, and running ones whose job outlived its managers. */
    for (size_t i = 0; i < b->n; i++) {
        struct block *k = &b->blocks[i];
        if (!k->ended && !k->cancelled)
            cancel_block(b, k, "the run is over");
    }
    int64_t deadline = cparsl_mono_ns() + (int64_t)(timeout * 1e9);
    for (;;) {
        poll_states(b);
        size_t left = 0;
        for (size_t i = 0; i < b->n; i++)
            left += !b->blocks[i].ended;
        if (!left || cparsl_mono_ns() > deadline) {
            if (left)
                CPARSL_LOG(CPARSL_LOG_WARN, "blocks",
                           "%s: %zu block(s) cancelled but not yet reported "
                           "ended by %s",
                           b->label, left, b->p->ops->name);
            break;
        }
        usleep(200000);
    }
}

void cparsl_blocks_destroy(cparsl_blocks_t *b)
{
    if (!b)
        return;
    cparsl_blocks_halt(b);
    cparsl_provider_destroy(b->p);
    free(b->blocks);
    free(b->label);
    free(b->run_dir);
    free(b->cwd);
    free_vec(b->env, b->nenv);
    if (b->argv) {
        size_t n = 0;
        while (b->argv[n])
            n++;
        free_vec(b->argv, n);
    }
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    free(b);
}
