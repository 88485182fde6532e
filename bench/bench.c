/*
 * bench.c - cparsl-bench: the numbers for docs/performance.md.
 *
 *   throughput  no-op C-app tasks through the DFK with a bounded window of
 *               futures in flight; also counts allocations per task
 *   latency     sequential submit -> result round trips
 *   dag         a chain (each task depends on the previous one) or a
 *               fan-in (N leaves summed by one task), answer checked
 *
 * Every timed run prints one JSON object on one line of stdout; --repeat
 * adds a summary line with the medians.  Only the client prints: a rank
 * that cparsl_init makes a server just finalizes.  Usage errors exit 2
 * with one line on stderr, failed or wrong runs exit 1.
 *
 * The executor is configured in code (executors[0]); a --config file is
 * handed to cparsl_init as --cparsl-config and, as always, wins over it.
 */
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <cparsl/cparsl.h>
#include <cparsl/plugin.h>

#include "alloc_count.h"

#ifndef CPARSL_BENCH_BUILD
#define CPARSL_BENCH_BUILD "unknown"
#endif

/* ---- apps ---------------------------------------------------------------- */

static int app_noop(const cparsl_args_t *a, cparsl_value_t *r,
                    cparsl_error_t *err)
{
    (void)a;
    (void)r;
    (void)err;
    return 0;
}
CPARSL_APP(bench_noop, app_noop, .data = NULL)

static int app_ident(const cparsl_args_t *a, cparsl_value_t *r,
                     cparsl_error_t *err)
{
    (void)err;
    *r = cparsl_int(cparsl_arg_int(a, 0));
    return 0;
}
CPARSL_APP(bench_ident, app_ident, .signature = "i")

static int app_inc(const cparsl_args_t *a, cparsl_value_t *r,
                   cparsl_error_t *err)
{
    (void)err;
    *r = cparsl_int(cparsl_arg_int(a, 0) + 1);
    return 0;
}
CPARSL_APP(bench_inc, app_inc, .signature = "i")

static int app_sum(const cparsl_args_t *a, cparsl_value_t *r,
                   cparsl_error_t *err)
{
    uint64_t s = 0; /* wraps, as the expected sum does */
    for (size_t i = 0; i < cparsl_args_count(a); i++) {
        const cparsl_value_t *v = cparsl_arg(a, i);
        if (v->type != CPARSL_T_INT)
            return cparsl_error_set(err, CPARSL_EAPP,
                                    "argument %zu is not an int", i);
        s += (uint64_t)v->u.i;
    }
    *r = cparsl_int((int64_t)s);
    return 0;
}
CPARSL_APP(bench_sum, app_sum, .data = NULL)

/* ---- options ------------------------------------------------------------- */

enum mode {
    MODE_THROUGHPUT = 1,
    MODE_LATENCY = 2,
    MODE_DAG = 4,
    MODE_SCALE = 8
};
#define MODE_ALL (MODE_THROUGHPUT | MODE_LATENCY | MODE_DAG | MODE_SCALE)

static const char *const mode_names[] = {
    [MODE_THROUGHPUT] = "throughput",
    [MODE_LATENCY] = "latency",
    [MODE_DAG] = "dag",
    [MODE_SCALE] = "scale",
};

enum shape { SHAPE_CHAIN, SHAPE_FANIN };
static const char *const shape_names[] = {"chain", "fanin"};

/* Executors the bench can configure by itself: one line each. */
struct exec_kind {
    const char *name;        /* --executor NAME, and its label */
    const char *type;        /* executors[0].type */
    const char *isolation;   /* "thread", or NULL: --isolation decides */
    const char *workers_key; /* key that sets the number of workers */
};

static const struct exec_kind exec_kinds[] = {
    {"threadpool", "threadpool", "thread", "max_threads"},
    /* the MPI pilot: run as mpiexec -n N cparsl-bench ... */
    {"extreme_scale", "extreme_scale", NULL, "workers_per_rank"},
    /* the same htex code in one process (loop transport) */
    {"htex_loop", "htex_loop", NULL, "workers_per_manager"},
    /* htex on its own: 2 local manager processes joining over libfabric */
    {"htex", "htex", NULL, "workers_per_manager"},
};
#define NKINDS (sizeof exec_kinds / sizeof exec_kinds[0])

/* Above this a count is a typo, and the ring or latency arrays would not
 * fit in memory anyway. */
#define COUNT_MAX   ((uint64_t)1 << 40)
#define WORKERS_MAX 65536

struct opts {
    enum mode mode;
    const struct exec_kind *ex;
    enum shape shape;
    uint64_t tasks, workers, window, repeat, warmup;
    bool warmup_set, repeat_set, shape_set;
    const char *config;
    const char *isolation; /* htex executors: "process" or "none" */
    const char *store;     /* store.type, or NULL: the config's */
    const char *transport; /* htex: "shm" (the default) or "tcp" */
    uint64_t idle;         /* seconds to stay idle after the runs */
    /* scale: emulated slots, each task's duration, managers' prefetch */
    uint64_t slots, prefetch;
    double duration;
    bool window_set, duration_set;
};

#define EMU_SLOTS_PER_MANAGER 32

static const char usage_text[] =
    "usage: cparsl-bench MODE [options]\n"
    "\n"
    "modes:\n"
    "  throughput   no-op C-app tasks, a bounded window of futures in "
    "flight\n"
    "  latency      sequential submit -> result round trips\n"
    "  dag          --shape chain (each task depends on the previous) or\n"
    "               --shape fanin (N independent tasks summed by one)\n"
    "  scale        EMULATION: mpiexec -n R cparsl-bench scale --slots K\n"
    "               --duration D: every rank but 0 runs a sub-interchange\n"
    "               and plays K/32/(R-1) managers of 32 slots that hold\n"
    "               each task D seconds (no processes); reports the\n"
    "               dispatch rate and rank 0's memory per slot\n"
    "\n"
    "options:\n"
    "  --executor NAME  threadpool (the default), extreme_scale (the MPI\n"
    "                   pilot: mpiexec -n N cparsl-bench ...), htex_loop\n"
    "                   or htex (2 local managers join over libfabric)\n"
    "  --isolation I    htex executors: process (the default) or none\n"
    "  --transport T    htex: shm (the default) or tcp (tcp;ofi_rxm on\n"
    "                   loopback); the bench starts 2 local managers\n"
    "  --idle S         latency: then stay idle S seconds and time one more\n"
    "                   round trip (bench/idle-cpu samples every rank)\n"
    "  --tasks N        tasks per timed run (default: throughput 200000,\n"
    "                   latency 20000, dag 100000)\n"
    "  --workers W      workers of the executor (default: the executor's)\n"
    "  --window K       throughput: futures in flight (default 10000);\n"
    "                   scale: default the slots (one task each)\n"
    "  --slots K        scale: emulated slots (default 1024), a multiple of\n"
    "                   32 x (ranks - 1)\n"
    "  --duration D     scale: seconds each task holds its slot (required)\n"
    "  --prefetch P     scale: each emulated manager's prefetch (default 0)\n"
    "  --shape S        dag: chain or fanin (default chain)\n"
    "  --repeat R       timed runs in this process; adds a summary line\n"
    "  --warmup M       untimed tasks first (default min(N, 20000))\n"
    "  --config FILE    a cparsl YAML config, passed as --cparsl-config\n"
    "  --store S        record the run in store S (hdf5, tasklog or null);\n"
    "                   each timed run then ends when the store has flushed\n"
    "                   its last record (cparsl_flush)\n"
    "  --help           this text\n"
    "\n"
    "Each timed run prints one JSON object on one line of stdout.  Exit 0 "
    "on\n"
    "success, 1 if a run failed or computed a wrong answer, 2 on bad "
    "arguments.\n";

static void usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

static void usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs("cparsl-bench: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs(" (see cparsl-bench --help)\n", stderr);
    exit(2);
}

/* A decimal count: digits only, no sign, at most COUNT_MAX. */
static uint64_t parse_count(const char *opt, const char *s, bool zero_ok)
{
    if (!*s)
        usage_error("%s needs a number, got ''", opt);
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            usage_error("%s needs a whole number, got '%s'", opt, s);
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > COUNT_MAX)
            usage_error("%s: '%s' is too large (at most %" PRIu64 ")", opt, s,
                        COUNT_MAX);
    }
    if (v == 0 && !zero_ok)
        usage_error("%s must be at least 1, got '%s'", opt, s);
    return v;
}

enum opt_id {
    OPT_EXECUTOR,
    OPT_TASKS,
    OPT_WORKERS,
    OPT_WINDOW,
    OPT_SHAPE,
    OPT_REPEAT,
    OPT_WARMUP,
    OPT_CONFIG,
    OPT_CPARSL_CONFIG,
    OPT_ISOLATION,
    OPT_IDLE,
    OPT_SLOTS,
    OPT_DURATION,
    OPT_PREFETCH,
    OPT_STORE,
    OPT_TRANSPORT
};

static const struct {
    const char *name;
    enum opt_id id;
    int modes; /* where it applies */
} opt_table[] = {
    {"--executor", OPT_EXECUTOR, MODE_ALL & ~MODE_SCALE},
    {"--tasks", OPT_TASKS, MODE_ALL},
    {"--workers", OPT_WORKERS, MODE_ALL & ~MODE_SCALE},
    {"--window", OPT_WINDOW, MODE_THROUGHPUT | MODE_SCALE},
    {"--slots", OPT_SLOTS, MODE_SCALE},
    {"--duration", OPT_DURATION, MODE_SCALE},
    {"--prefetch", OPT_PREFETCH, MODE_SCALE},
    {"--shape", OPT_SHAPE, MODE_DAG},
    {"--repeat", OPT_REPEAT, MODE_ALL},
    {"--warmup", OPT_WARMUP, MODE_ALL},
    {"--config", OPT_CONFIG, MODE_ALL},
    {"--cparsl-config", OPT_CPARSL_CONFIG, MODE_ALL},
    {"--isolation", OPT_ISOLATION, MODE_ALL & ~MODE_SCALE},
    {"--idle", OPT_IDLE, MODE_LATENCY},
    {"--store", OPT_STORE, MODE_ALL},
    {"--transport", OPT_TRANSPORT, MODE_ALL & ~MODE_SCALE},
};
#define NOPTS (sizeof opt_table / sizeof opt_table[0])

static void set_option(struct opts *o, enum opt_id id, const char *name,
                       const char *val)
{
    switch (id) {
    case OPT_EXECUTOR:
        o->ex = NULL;
        for (size_t k = 0; k < NKINDS; k++)
            if (strcmp(exec_kinds[k].name, val) == 0)
                o->ex = &exec_kinds[k];
        if (!o->ex)
            usage_error("unknown executor '%s' (expected threadpool, "
                        "extreme_scale, htex_loop or htex)",
                        val);
        break;
    case OPT_TRANSPORT:
        if (strcmp(val, "shm") != 0 && strcmp(val, "tcp") != 0)
            usage_error("%s: '%s' (expected shm or tcp)", name, val);
        o->transport = val;
        break;
    case OPT_IDLE:
        o->idle = parse_count(name, val, false);
        break;
    case OPT_STORE:
        if (strcmp(val, "hdf5") != 0 && strcmp(val, "tasklog") != 0 &&
            strcmp(val, "null") != 0)
            usage_error("unknown store '%s' (expected hdf5, tasklog or null)",
                        val);
        o->store = val;
        break;
    case OPT_ISOLATION:
        if (strcmp(val, "process") != 0 && strcmp(val, "none") != 0)
            usage_error("%s: '%s' (expected process or none)", name, val);
        o->isolation = val;
        break;
    case OPT_TASKS:
        o->tasks = parse_count(name, val, false);
        break;
    case OPT_WORKERS:
        o->workers = parse_count(name, val, false);
        if (o->workers > WORKERS_MAX)
            usage_error("%s: '%s' is too large (at most %d)", name, val,
                        WORKERS_MAX);
        break;
    case OPT_WINDOW:
        o->window = parse_count(name, val, false);
        o->window_set = true;
        break;
    case OPT_SLOTS:
        o->slots = parse_count(name, val, false);
        break;
    case OPT_PREFETCH:
        o->prefetch = parse_count(name, val, true);
        if (o->prefetch > 4096)
            usage_error("%s: '%s' is too large (at most 4096)", name, val);
        break;
    case OPT_DURATION: {
        char *end;
        errno = 0;
        o->duration = strtod(val, &end);
        if (errno || end == val || *end || !(o->duration >= 0) ||
            o->duration > 3600)
            usage_error("%s needs seconds between 0 and 3600, got '%s'", name,
                        val);
        o->duration_set = true;
        break;
    }
    case OPT_SHAPE:
        if (strcmp(val, "chain") == 0)
            o->shape = SHAPE_CHAIN;
        else if (strcmp(val, "fanin") == 0)
            o->shape = SHAPE_FANIN;
        else
            usage_error("unknown shape '%s' (expected chain or fanin)", val);
        o->shape_set = true;
        break;
    case OPT_REPEAT:
        o->repeat = parse_count(name, val, false);
        o->repeat_set = true;
        break;
    case OPT_WARMUP:
        o->warmup = parse_count(name, val, true);
        o->warmup_set = true;
        break;
    case OPT_CONFIG:
    case OPT_CPARSL_CONFIG:
        if (!*val)
            usage_error("%s needs a file name", name);
        if (access(val, R_OK) != 0)
            usage_error("%s: cannot read '%s': %s", name, val, strerror(errno));
        o->config = val;
        break;
    }
}

/* Index in opt_table of the option spelled by the first len chars of a,
 * or NOPTS. */
static size_t opt_find(const char *a, size_t len)
{
    size_t k = 0;
    while (k < NOPTS && !(strlen(opt_table[k].name) == len &&
                          strncmp(a, opt_table[k].name, len) == 0))
        k++;
    return k;
}

static void parse_args(int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof *o);
    o->ex = &exec_kinds[0];
    o->isolation = "process";
    o->window = 10000;
    o->repeat = 1;

    /* The mode first, so an option can be checked against it. */
    const char *mode = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage_text, stdout);
            exit(0);
        }
        if (a[0] == '-') {
            const char *eq = strchr(a, '=');
            size_t k = opt_find(a, eq ? (size_t)(eq - a) : strlen(a));
            if (k == NOPTS)
                usage_error("unknown option '%.*s'",
                            (int)(eq ? eq - a : (ptrdiff_t)strlen(a)), a);
            if (!eq)
                i++; /* its value */
            continue;
        }
        if (mode)
            usage_error("unexpected argument '%s'", a);
        mode = a;
    }
    if (!mode)
        usage_error("no mode given (expected throughput, latency, dag or "
                    "scale)");
    for (int m = MODE_THROUGHPUT; m <= MODE_SCALE; m <<= 1)
        if (strcmp(mode, mode_names[m]) == 0)
            o->mode = (enum mode)m;
    if (!o->mode)
        usage_error("unknown mode '%s' (expected throughput, latency, dag or "
                    "scale)",
                    mode);

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-')
            continue; /* the mode */
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        size_t k = opt_find(a, len);
        if (!(opt_table[k].modes & (int)o->mode))
            usage_error("option %s does not apply to mode %s",
                        opt_table[k].name, mode_names[o->mode]);
        const char *val;
        if (eq) {
            val = eq + 1;
        } else {
            if (i + 1 >= argc)
                usage_error("option %s needs a value", opt_table[k].name);
            val = argv[++i];
        }
        set_option(o, opt_table[k].id, opt_table[k].name, val);
    }

    if (o->mode == MODE_SCALE) {
        if (!o->duration_set)
            usage_error("scale needs --duration D (seconds a task holds its "
                        "slot)");
        if (!o->slots)
            o->slots = 1024;
        if (!o->window_set) /* one task per slot: all a busy slot needs */
            o->window = o->slots;
        if (!o->tasks)
            o->tasks = 4 * o->slots > 100000 ? 4 * o->slots : 100000;
        o->ex = &exec_kinds[1]; /* extreme_scale */
        o->isolation = "none";
    }
    if (!o->tasks)
        o->tasks = o->mode == MODE_THROUGHPUT ? 200000
                   : o->mode == MODE_LATENCY  ? 20000
                                              : 100000;
    if (!o->warmup_set)
        o->warmup = o->tasks < 20000 ? o->tasks : 20000;
}

/* ---- timing and results -------------------------------------------------- */

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct result {
    bool ok;
    uint64_t executed; /* tasks the run executed (fan-in: N + 1) */
    double seconds;
    double tasks_per_s;
    uint64_t allocs, frees;
    double allocs_per_task;
    double p50_us, p99_us, mean_us, min_us, max_us;
    double cpu_s; /* scale: rank 0's CPU time (every thread) */
    int64_t answer, expected;
    char error[CPARSL_ERROR_TEXT];
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts v. */
static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Nearest-rank percentile (pct of 100) of a sorted array of n > 0. */
static double percentile(const double *sorted, size_t n, unsigned pct)
{
    size_t rank = (pct * n + 99) / 100; /* ceil(pct / 100 * n) */
    if (rank < 1)
        rank = 1;
    return sorted[(rank > n ? n : rank) - 1];
}

/* Wait for f, note its first failure in r, release it. */
static void retire(cparsl_future_t *f, struct result *r)
{
    cparsl_future_wait(f, -1);
    if (cparsl_future_error(f) != 0 && r->ok) {
        r->ok = false;
        snprintf(r->error, sizeof r->error, "task %" PRIu64 " failed: %s",
                 cparsl_future_id(f), cparsl_future_errstr(f));
    }
    cparsl_future_decref(f);
}

/* ---- the modes ----------------------------------------------------------- */

/* n no-op tasks, at most k (the ring's size) in flight. */
static void pipeline(uint64_t n, cparsl_future_t **ring, size_t k,
                     struct result *r)
{
    size_t slot = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (i >= k)
            retire(ring[slot], r);
        ring[slot] = cparsl_submitv("bench_noop", 0, NULL);
        if (++slot == k)
            slot = 0;
    }
    /* the last min(n, k) submitted, oldest first */
    uint64_t left = n < k ? n : k;
    slot = n < k ? 0 : slot;
    for (uint64_t i = 0; i < left; i++) {
        retire(ring[slot], r);
        if (++slot == k)
            slot = 0;
    }
}

static void latency_run(uint64_t n, double *lat_us, struct result *r)
{
    for (uint64_t i = 0; i < n; i++) {
        int64_t t0 = mono_ns();
        cparsl_future_t *f = cparsl_submitv("bench_noop", 0, NULL);
        retire(f, r);
        lat_us[i] = (double)(mono_ns() - t0) / 1e3;
    }
}

/* Returns the final future (one reference); r->expected set. */
static cparsl_future_t *dag_build(enum shape shape, uint64_t n,
                                  struct result *r)
{
    if (shape == SHAPE_CHAIN) {
        cparsl_future_t *f = cparsl_submit("bench_inc", CPARSL_I(0));
        for (uint64_t i = 1; i < n; i++) {
            cparsl_future_t *g = cparsl_submit("bench_inc", CPARSL_F(f));
            cparsl_future_decref(f); /* the next call holds its own */
            f = g;
        }
        r->expected = (int64_t)n;
        r->executed = n;
        return f;
    }
    cparsl_call_t *sum = cparsl_call_create("bench_sum");
    for (uint64_t i = 1; i <= n; i++) {
        cparsl_future_t *leaf =
            cparsl_submit("bench_ident", CPARSL_I((int64_t)i));
        cparsl_call_arg_future(sum, leaf);
        cparsl_future_decref(leaf);
    }
    /* 1 + 2 + ... + n, modulo 2^64 like bench_sum */
    uint64_t sum_n = n % 2 ? n * ((n + 1) / 2) : (n / 2) * (n + 1);
    r->expected = (int64_t)sum_n;
    r->executed = n + 1;
    return cparsl_call_submit(sum);
}

static void dag_run(enum shape shape, uint64_t n, struct result *r)
{
    cparsl_future_t *f = dag_build(shape, n, r);
    int rc = cparsl_future_get_int(f, &r->answer);
    if (rc != 0 && r->ok) {
        r->ok = false;
        snprintf(r->error, sizeof r->error, "dag %s: %s", shape_names[shape],
                 cparsl_future_errstr(f));
    } else if (r->answer != r->expected && r->ok) {
        r->ok = false;
        snprintf(r->error, sizeof r->error,
                 "dag %s: wrong answer %" PRId64 ", expected %" PRId64,
                 shape_names[shape], r->answer, r->expected);
    }
    cparsl_future_decref(f);
}

/* ---- output -------------------------------------------------------------- */

/* scale: rank 0's resident memory after cparsl_init and its peak since,
 * from /proc/self/status (kB). */
static struct {
    long base_kib, hwm_kib;
    int ranks;
} mem;

static double process_cpu_s(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

static long status_kib(const char *field)
{
    FILE *fp = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (fp && fgets(line, sizeof line, fp))
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            v = strtol(line + n + 1, NULL, 10);
    if (fp)
        fclose(fp);
    return v;
}

static void print_common(const struct opts *o, size_t workers)
{
    printf("{\"mode\":\"%s\",\"executor\":\"%s\",\"isolation\":\"%s\","
           "\"tasks\":%" PRIu64 ",\"workers\":%zu",
           mode_names[o->mode], o->ex->name,
           o->ex->isolation ? o->ex->isolation : o->isolation, o->tasks,
           workers);
    if (o->mode == MODE_THROUGHPUT || o->mode == MODE_SCALE)
        printf(",\"window\":%" PRIu64, o->window);
    if (o->store)
        printf(",\"store\":\"%s\"", o->store);
    if (o->mode == MODE_SCALE)
        printf(",\"emulation\":true,\"slots\":%" PRIu64 ",\"managers\":%" PRIu64
               ",\"slots_per_manager\":%d"
               ",\"sub_interchanges\":%d,\"duration_s\":%.6g"
               ",\"offered_load_per_s\":%.1f,\"prefetch\":%" PRIu64
               ",\"rank0_rss_base_kib\":%ld,\"rank0_hwm_kib\":%ld"
               ",\"rank0_bytes_per_slot\":%.1f",
               o->slots, o->slots / EMU_SLOTS_PER_MANAGER,
               EMU_SLOTS_PER_MANAGER, mem.ranks - 1, o->duration,
               o->duration > 0 ? (double)o->slots / o->duration : 0.0,
               o->prefetch, mem.base_kib, mem.hwm_kib,
               (double)(mem.hwm_kib - mem.base_kib) * 1024.0 /
                   (double)o->slots);
    if (o->mode == MODE_DAG)
        printf(",\"shape\":\"%s\"", shape_names[o->shape]);
}

static void print_run(const struct opts *o, size_t workers, uint64_t run,
                      const struct result *r)
{
    print_common(o, workers);
    printf(",\"run\":%" PRIu64 ",\"ok\":%s,\"seconds\":%.6f,"
           "\"tasks_per_s\":%.1f",
           run, r->ok ? "true" : "false", r->seconds, r->tasks_per_s);
    if (o->mode == MODE_LATENCY)
        printf(",\"p50_us\":%.2f,\"p99_us\":%.2f,\"mean_us\":%.2f,"
               "\"min_us\":%.2f,\"max_us\":%.2f",
               r->p50_us, r->p99_us, r->mean_us, r->min_us, r->max_us);
    if (o->mode == MODE_SCALE)
        printf(",\"rank0_cpu_s\":%.3f", r->cpu_s);
    if (o->mode == MODE_DAG)
        printf(",\"tasks_executed\":%" PRIu64 ",\"answer\":%" PRId64
               ",\"expected\":%" PRId64,
               r->executed, r->answer, r->expected);
    if (bench_alloc_counting())
        printf(",\"allocs\":%" PRIu64 ",\"frees\":%" PRIu64
               ",\"allocs_per_task\":%.6f",
               r->allocs, r->frees, r->allocs_per_task);
    else
        printf(",\"allocs\":null,\"frees\":null,\"allocs_per_task\":null");
    printf(",\"warmup\":%" PRIu64 ",\"cparsl\":\"%s\",\"build\":\"%s\"}\n",
           o->warmup, CPARSL_VERSION_STRING, CPARSL_BENCH_BUILD);
    fflush(stdout);
}

/* Median over the runs of one field; sorts scratch, so scratch[0] and
 * scratch[n - 1] are then the smallest and largest. */
#define RUNS_MEDIAN(rs, n, scratch, expr)                                      \
    (fill_runs(rs, n, scratch, offsetof(struct result, expr)),                 \
     median(scratch, n))

static void fill_runs(const struct result *rs, size_t n, double *scratch,
                      size_t off)
{
    for (size_t i = 0; i < n; i++)
        memcpy(&scratch[i], (const char *)&rs[i] + off, sizeof(double));
}

/* The --repeat summary: medians over the runs under the run lines' own
 * names, so a reader can treat it like a run line, plus median_* names. */
static void print_summary(const struct opts *o, size_t workers,
                          const struct result *rs, double *scratch)
{
    size_t n = (size_t)o->repeat;
    bool ok = true;
    for (size_t i = 0; i < n; i++)
        ok = ok && rs[i].ok;
    print_common(o, workers);
    printf(",\"summary\":true,\"runs\":%zu,\"ok\":%s", n,
           ok ? "true" : "false");
    double sec = RUNS_MEDIAN(rs, n, scratch, seconds);
    printf(",\"seconds\":%.6f,\"median_seconds\":%.6f", sec, sec);
    double tps = RUNS_MEDIAN(rs, n, scratch, tasks_per_s);
    printf(",\"tasks_per_s\":%.1f,\"median_tasks_per_s\":%.1f"
           ",\"min_tasks_per_s\":%.1f,\"max_tasks_per_s\":%.1f",
           tps, tps, scratch[0], scratch[n - 1]);
    if (o->mode == MODE_LATENCY) {
        double p50 = RUNS_MEDIAN(rs, n, scratch, p50_us);
        double p99 = RUNS_MEDIAN(rs, n, scratch, p99_us);
        double mean = RUNS_MEDIAN(rs, n, scratch, mean_us);
        printf(",\"p50_us\":%.2f,\"p99_us\":%.2f,\"mean_us\":%.2f"
               ",\"median_p50_us\":%.2f,\"median_p99_us\":%.2f"
               ",\"median_mean_us\":%.2f",
               p50, p99, mean, p50, p99, mean);
    }
    if (bench_alloc_counting()) {
        double a = RUNS_MEDIAN(rs, n, scratch, allocs_per_task);
        printf(",\"allocs_per_task\":%.6f,\"median_allocs_per_task\":%.6f"
               ",\"max_allocs_per_task\":%.6f",
               a, a, scratch[n - 1]);
    } else {
        printf(",\"allocs_per_task\":null,\"median_allocs_per_task\":null"
               ",\"max_allocs_per_task\":null");
    }
    printf("}\n");
    fflush(stdout);
}

/* ---- main ---------------------------------------------------------------- */

static int set_key(cparsl_config_t *cfg, const char *key, const char *val,
                   cparsl_error_t *err)
{
    int rc = cparsl_config_set(cfg, key, val, err);
    if (rc < 0)
        fprintf(stderr, "cparsl-bench: config %s=%s: %s\n", key, val,
                err->text);
    return rc;
}

static cparsl_config_t *make_config(const struct opts *o)
{
    cparsl_error_t err;
    cparsl_config_t *cfg = cparsl_config_create();
    if (!cfg) {
        fprintf(stderr, "cparsl-bench: out of memory\n");
        return NULL;
    }
    char key[128], num[32];
    int rc = set_key(cfg, "executors[0].type", o->ex->type, &err);
    if (rc == 0)
        rc = set_key(cfg, "executors[0].label", o->ex->name, &err);
    if (rc == 0 && o->workers) {
        snprintf(key, sizeof key, "executors[0].%s", o->ex->workers_key);
        snprintf(num, sizeof num, "%" PRIu64, o->workers);
        rc = set_key(cfg, key, num, &err);
    }
    if (rc == 0 && !o->ex->isolation)
        rc = set_key(cfg, "executors[0].isolation", o->isolation, &err);
    if (rc == 0 && o->store)
        rc = set_key(cfg, "store.type", o->store, &err);
    if (rc == 0 && strcmp(o->ex->type, "htex") == 0) {
        bool tcp = o->transport && strcmp(o->transport, "tcp") == 0;
        rc = set_key(cfg, "executors[0].providers[0]",
                     tcp ? "tcp;ofi_rxm" : "shm", &err);
        if (rc == 0)
            rc = set_key(cfg, "executors[0].managers", "2", &err);
    }
    if (rc == 0 && o->mode == MODE_SCALE) {
        /* Every rank but 0 plays slots / 32 / (ranks - 1) managers. */
        cparsl_launch_t l;
        cparsl_launch_detect(&l);
        uint64_t per = (uint64_t)EMU_SLOTS_PER_MANAGER * (uint64_t)(l.size - 1);
        if (l.size < 2 || o->slots % per != 0) {
            fprintf(stderr,
                    "cparsl-bench: scale runs under mpiexec with at least 2 "
                    "ranks, and --slots must be a multiple of 32 x (ranks - "
                    "1) = %" PRIu64 " (got %" PRIu64 " on %d ranks)\n",
                    per, o->slots, l.size);
            cparsl_config_destroy(cfg);
            exit(2);
        }
        struct {
            const char *key;
            char val[32];
        } kv[5] = {{"executors[0].emulate_managers", ""},
                   {"executors[0].emulate_slots", ""},
                   {"executors[0].emulate_task_duration", ""},
                   {"executors[0].prefetch", ""},
                   /* the sub-interchanges' traffic, in rank.N.log */
                   {"executors[0].manager_log_level", "info"}};
        snprintf(kv[0].val, sizeof kv[0].val, "%" PRIu64, o->slots / per);
        snprintf(kv[1].val, sizeof kv[1].val, "%d", EMU_SLOTS_PER_MANAGER);
        snprintf(kv[2].val, sizeof kv[2].val, "%.9g", o->duration);
        snprintf(kv[3].val, sizeof kv[3].val, "%" PRIu64, o->prefetch);
        for (int i = 0; i < 5 && rc == 0; i++)
            rc = set_key(cfg, kv[i].key, kv[i].val, &err);
    }
    if (rc < 0) {
        cparsl_config_destroy(cfg);
        return NULL;
    }
    return cfg;
}

int main(int argc, char **argv)
{
    struct opts o;
    parse_args(argc, argv, &o);

    /* cparsl_init finds (and strips) the config file argument itself. */
    char cfgarg[4200];
    char *iargv[3] = {argv[0], NULL, NULL};
    int iargc = 1;
    if (o.config) {
        if (snprintf(cfgarg, sizeof cfgarg, "--cparsl-config=%s", o.config) >=
            (int)sizeof cfgarg)
            usage_error("--config: file name too long");
        iargv[iargc++] = cfgarg;
    }
    cparsl_config_t *cfg = make_config(&o);
    if (!cfg)
        return 1;
    char **iargvp = iargv;
    cparsl_error_t err;
    int role = cparsl_init(&iargc, &iargvp, cfg, &err);
    cparsl_config_destroy(cfg);
    if (role < 0) {
        fprintf(stderr, "cparsl-bench: cparsl_init: %s\n", err.text);
        return role == -CPARSL_ECONFIG ? 2 : 1;
    }
    if (role == CPARSL_SERVED)
        return cparsl_finalize(NULL) ? 1 : 0;

    size_t workers = cparsl_capacity();
    if (o.mode == MODE_SCALE) {
        cparsl_launch_t l;
        cparsl_launch_detect(&l);
        mem.ranks = l.size;
        mem.base_kib = status_kib("VmRSS");
    }
    /* The ring of futures in flight: never more than the tasks of a run. */
    size_t ring_n = (size_t)(o.window < o.tasks ? o.window : o.tasks);
    size_t warm_n = (size_t)(o.window < o.warmup ? o.window : o.warmup);
    size_t nres = (size_t)o.repeat;
    struct result *rs = calloc(nres, sizeof *rs);
    double *scratch = calloc(nres, sizeof *scratch);
    cparsl_future_t **ring = NULL;
    double *lat = NULL;
    struct result warm = {.ok = true};
    int status = 0;
    if (o.mode == MODE_THROUGHPUT || o.mode == MODE_SCALE)
        ring = calloc(ring_n > warm_n ? ring_n : warm_n, sizeof *ring);
    if (o.mode == MODE_LATENCY)
        lat = calloc((size_t)(o.tasks > o.warmup ? o.tasks : o.warmup),
                     sizeof *lat);
    if (!rs || !scratch ||
        ((o.mode == MODE_THROUGHPUT || o.mode == MODE_SCALE) && !ring) ||
        (o.mode == MODE_LATENCY && !lat)) {
        fprintf(stderr, "cparsl-bench: out of memory for %" PRIu64 " tasks\n",
                o.tasks);
        status = 1;
        goto done;
    }

    /* Warm-up: fills the task free list, grows the queues to the window
     * and starts every thread, so the timed runs see the steady state. */
    if (o.warmup) {
        if (o.mode == MODE_THROUGHPUT || o.mode == MODE_SCALE)
            pipeline(o.warmup, ring, warm_n, &warm);
        else if (o.mode == MODE_LATENCY)
            latency_run(o.warmup, lat, &warm);
        else
            dag_run(o.shape, o.warmup, &warm);
    }
    /* The warm-up's records must not be written on a timed run's clock. */
    if (warm.ok && o.store && cparsl_flush(&err) < 0) {
        warm.ok = false;
        snprintf(warm.error, sizeof warm.error, "store flush: %.400s",
                 err.text);
    }
    if (!warm.ok) {
        fprintf(stderr, "cparsl-bench: warm-up: %s\n", warm.error);
        status = 1;
        goto done;
    }

    for (size_t run = 0; run < nres; run++) {
        struct result *r = &rs[run];
        r->ok = true;
        r->executed = o.tasks;
        uint64_t a0 = bench_alloc_count(), f0 = bench_free_count();
        double c0 = process_cpu_s();
        int64_t t0 = mono_ns();
        if (o.mode == MODE_THROUGHPUT || o.mode == MODE_SCALE)
            pipeline(o.tasks, ring, ring_n, r);
        else if (o.mode == MODE_LATENCY)
            latency_run(o.tasks, lat, r);
        else
            dag_run(o.shape, o.tasks, r);
        /* With a store, the run ends when its last record is on disk. */
        if (o.store && cparsl_flush(&err) < 0 && r->ok) {
            r->ok = false;
            snprintf(r->error, sizeof r->error, "store flush: %.400s",
                     err.text);
        }
        int64_t t1 = mono_ns();
        r->cpu_s = process_cpu_s() - c0;
        r->allocs = bench_alloc_count() - a0;
        r->frees = bench_free_count() - f0;
        r->allocs_per_task = (double)r->allocs / (double)o.tasks;
        r->seconds = (double)(t1 - t0) / 1e9;
        r->tasks_per_s = r->seconds > 0 ? (double)r->executed / r->seconds : 0;
        if (o.mode == MODE_LATENCY) {
            double sum = 0;
            for (uint64_t i = 0; i < o.tasks; i++)
                sum += lat[i];
            r->mean_us = sum / (double)o.tasks;
            qsort(lat, (size_t)o.tasks, sizeof *lat, cmp_double);
            r->p50_us = percentile(lat, (size_t)o.tasks, 50);
            r->p99_us = percentile(lat, (size_t)o.tasks, 99);
            r->min_us = lat[0];
            r->max_us = lat[o.tasks - 1];
        }
        if (o.mode == MODE_SCALE)
            mem.hwm_kib = status_kib("VmHWM");
        print_run(&o, workers, run + 1, r);
        if (!r->ok) {
            fprintf(stderr, "cparsl-bench: run %zu: %s\n", run + 1, r->error);
            status = 1;
        }
    }
    if (o.repeat_set)
        print_summary(&o, workers, rs, scratch);
    if (o.idle > 0) {
        /* Leave the executor idle (an outside tool samples every process's
         * CPU meanwhile), then time one round trip out of the idle state. */
        struct rusage a, b;
        getrusage(RUSAGE_SELF, &a);
        int64_t i0 = mono_ns();
        struct timespec ts = {(time_t)o.idle, 0};
        nanosleep(&ts, NULL);
        getrusage(RUSAGE_SELF, &b);
        double cpu = (double)(b.ru_utime.tv_sec - a.ru_utime.tv_sec +
                              b.ru_stime.tv_sec - a.ru_stime.tv_sec) +
                     (double)(b.ru_utime.tv_usec - a.ru_utime.tv_usec +
                              b.ru_stime.tv_usec - a.ru_stime.tv_usec) /
                         1e6;
        double wall = (double)(mono_ns() - i0) / 1e9;
        int64_t t0 = mono_ns();
        cparsl_future_t *f = cparsl_submitv("bench_noop", 0, NULL);
        int frc = cparsl_future_error(f);
        cparsl_future_decref(f);
        double wake_us = (double)(mono_ns() - t0) / 1e3;
        printf("{\"mode\":\"idle\",\"executor\":\"%s\",\"seconds\":%.3f,"
               "\"client_cpu_pct\":%.3f,\"first_round_trip_us\":%.1f,"
               "\"ok\":%s}\n",
               o.ex->name, wall, 100.0 * cpu / wall, wake_us,
               frc == 0 ? "true" : "false");
        if (frc)
            status = 1;
    }

done:
    free(ring);
    free(lat);
    free(rs);
    free(scratch);
    if (cparsl_finalize(&err) < 0) {
        fprintf(stderr, "cparsl-bench: cparsl_finalize: %s\n", err.text);
        status = 1;
    }
    return status;
}
