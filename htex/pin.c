/*
 * pin.c - worker pinning policies over hwloc, and accelerator assignment.
 *
 * Owns the process's one hwloc topology: loaded on first use under
 * pthread_once and kept for the life of the process (never modified after
 * load, so concurrent readers and binders need no lock; hwloc allows
 * that).  The slots of a node partition the CPUs the launcher left to this
 * process, read at each call with hwloc_get_cpubind(HWLOC_CPUBIND_PROCESS)
 * so a rank bound by mpiexec or srun splits only its own share.
 *
 * CPU lists are parsed here, strictly, rather than with
 * hwloc_bitmap_list_sscanf, which takes "0-" as "every CPU from 0 on"
 * and silently drops trailing junk ("1a" reads as the empty set).
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <hwloc.h>

#include "pin.h"

/* Largest CPU number a list may name: far above any real node, and small
 * enough that a typo ("1000000000") cannot make hwloc allocate a huge
 * bitmap. */
#define PIN_CPU_MAX 1048575

/* Most accelerators a count may name. */
#define PIN_ACCEL_MAX 4096

/* Longest list text quoted in an error message. */
#define PIN_QUOTE_MAX 64

/* ---- the topology ------------------------------------------------------ */

static pthread_once_t topo_once = PTHREAD_ONCE_INIT;
static hwloc_topology_t topo; /* kept until exit; LSan sees it as reachable */
static int topo_rc;           /* 0 or -errno from the one load */

static void topo_load(void)
{
    hwloc_topology_t t;
    if (hwloc_topology_init(&t) < 0) {
        topo_rc = errno ? -errno : -ENOMEM;
        return;
    }
    if (hwloc_topology_load(t) < 0) {
        topo_rc = errno ? -errno : -EIO;
        hwloc_topology_destroy(t);
        return;
    }
    topo = t;
}

static int topo_get(hwloc_topology_t *out, cparsl_error_t *err)
{
    pthread_once(&topo_once, topo_load);
    if (topo_rc < 0)
        return cparsl_error_set(err, topo_rc, "loading the hwloc topology: %s",
                                cparsl_strerror(topo_rc));
    *out = topo;
    return 0;
}

/* ---- CPU lists --------------------------------------------------------- */

/* A decimal CPU number at *sp, advancing it; false if none or too big. */
static bool parse_cpu(const char **sp, unsigned *out)
{
    const char *s = *sp;
    unsigned v = 0;
    if (*s < '0' || *s > '9')
        return false;
    for (; *s >= '0' && *s <= '9'; s++) {
        v = v * 10 + (unsigned)(*s - '0');
        if (v > PIN_CPU_MAX)
            return false;
    }
    *sp = s;
    *out = v;
    return true;
}

/*
 * "0,2-3,8" into 'set' (when not NULL): comma-separated CPU numbers and
 * ascending ranges, nothing else, not empty.  0 or -EINVAL; on -ENOMEM
 * (hwloc could not grow the bitmap) 'set' is left partial.
 */
static int cpulist_parse(const char *s, hwloc_bitmap_t set)
{
    if (set)
        hwloc_bitmap_zero(set);
    if (!s || !*s)
        return -EINVAL;
    for (;;) {
        unsigned lo, hi;
        if (!parse_cpu(&s, &lo))
            return -EINVAL;
        hi = lo;
        if (*s == '-') {
            s++;
            if (!parse_cpu(&s, &hi) || hi < lo)
                return -EINVAL;
        }
        if (set && hwloc_bitmap_set_range(set, lo, (int)hi) < 0)
            return -ENOMEM;
        if (!*s)
            return 0;
        if (*s++ != ',')
            return -EINVAL;
    }
}

/* Length of 's' to quote in a message, and the "..." that says it was cut. */
#define QUOTE(s)                                                               \
    (int)strnlen(s, PIN_QUOTE_MAX), (s),                                       \
        (strlen(s) > PIN_QUOTE_MAX ? "..." : "")

/* ---- configure --------------------------------------------------------- */

static const char *const policy_names[] = {
    [HTEX_PIN_NONE] = "none",
    [HTEX_PIN_BLOCK] = "block",
    [HTEX_PIN_BLOCK_REVERSE] = "block-reverse",
    [HTEX_PIN_ALTERNATING] = "alternating",
};

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* "list:A:B:..." after the "list:" into p->list. */
static int parse_list_policy(const cparsl_cnode_t *n, const char *spec,
                             htex_pin_t *p, cparsl_error_t *err)
{
    size_t count = 1;
    for (const char *c = spec; *c; c++)
        count += *c == ':';
    p->list = calloc(count, sizeof *p->list);
    if (!p->list)
        return cparsl_error_set(err, -ENOMEM, "cpu_affinity: out of memory");

    const char *s = spec;
    for (size_t i = 0; i < count; i++) {
        size_t len = strcspn(s, ":");
        char *e = strndup(s, len);
        if (!e)
            return cparsl_error_set(err, -ENOMEM,
                                    "cpu_affinity: out of memory");
        p->list[p->nlist++] = e;
        if (!*e)
            return cparsl_cnode_error(
                n, err,
                "list entry %zu is empty (expected list:A:B:... "
                "with a CPU list such as '0,2-3' in each entry)",
                i + 1);
        if (cpulist_parse(e, NULL) < 0)
            return cparsl_cnode_error(
                n, err,
                "list entry %zu '%.*s%s' is not a CPU list (such as '0,2-3', "
                "CPU numbers up to %d, ranges ascending)",
                i + 1, QUOTE(e), PIN_CPU_MAX);
        s += len + (s[len] == ':');
    }
    return 0;
}

static int configure_affinity(const cparsl_cnode_t *map, htex_pin_t *p,
                              cparsl_error_t *err)
{
    const char *v;
    int rc = cparsl_cnode_string(map, "cpu_affinity", "none", &v, err);
    if (rc < 0)
        return rc;
    for (int i = 0; i < (int)(sizeof policy_names / sizeof *policy_names);
         i++) {
        if (policy_names[i] && strcmp(v, policy_names[i]) == 0) {
            p->policy = i;
            return 0;
        }
    }
    const cparsl_cnode_t *n = cparsl_cnode_get(map, "cpu_affinity");
    if (strncmp(v, "list:", 5) == 0) {
        p->policy = HTEX_PIN_LIST;
        return parse_list_policy(n, v + 5, p, err);
    }
    return cparsl_cnode_error(n, err,
                              "expected none, block, block-reverse, "
                              "alternating or list:A:B:...; got '%.*s%s'",
                              QUOTE(v));
}

static int configure_accels(const cparsl_cnode_t *map, htex_pin_t *p,
                            cparsl_error_t *err)
{
    const cparsl_cnode_t *n = cparsl_cnode_get(map, "available_accelerators");
    if (!n || cparsl_cnode_type(n) == CPARSL_CNODE_SCALAR) {
        /* A count; a missing key or a YAML null is "no accelerators". */
        int64_t count;
        if (cparsl_cnode_int(map, "available_accelerators", 0, 0, PIN_ACCEL_MAX,
                             &count, NULL) < 0) {
            const char *v = cparsl_cnode_scalar(n);
            return cparsl_cnode_error(n, err,
                                      "expected a list of device ids or a "
                                      "count between 0 and %d, got '%.*s%s'",
                                      PIN_ACCEL_MAX, QUOTE(v));
        }
        if (count == 0)
            return 0;
        p->accels = calloc((size_t)count, sizeof *p->accels);
        if (!p->accels)
            return cparsl_error_set(err, -ENOMEM,
                                    "available_accelerators: out of memory");
        for (int64_t i = 0; i < count; i++) {
            char buf[24];
            snprintf(buf, sizeof buf, "%lld", (long long)i);
            if (!(p->accels[p->naccels] = strdup(buf)))
                return cparsl_error_set(
                    err, -ENOMEM, "available_accelerators: out of memory");
            p->naccels++;
        }
        return 0;
    }
    if (cparsl_cnode_type(n) != CPARSL_CNODE_SEQ)
        return cparsl_cnode_error(
            n, err, "expected a list of device ids or a count, got a mapping");

    size_t len = cparsl_cnode_len(n);
    if (len == 0)
        return 0;
    p->accels = calloc(len, sizeof *p->accels);
    if (!p->accels)
        return cparsl_error_set(err, -ENOMEM,
                                "available_accelerators: out of memory");
    for (size_t i = 0; i < len; i++) {
        const cparsl_cnode_t *e = cparsl_cnode_at(n, i);
        const char *id = cparsl_cnode_scalar(e);
        if (!id)
            return cparsl_cnode_error(e, err,
                                      "accelerator %zu: expected a device id "
                                      "(a string or an integer)",
                                      i);
        if (!*id)
            return cparsl_cnode_error(
                e, err, "accelerator %zu: the device id is empty", i);
        if (!(p->accels[p->naccels] = strdup(id)))
            return cparsl_error_set(err, -ENOMEM,
                                    "available_accelerators: out of memory");
        p->naccels++;
    }
    return 0;
}

int htex_pin_configure(const cparsl_cnode_t *map, htex_pin_t *out,
                       cparsl_error_t *err)
{
    htex_pin_t p = {.policy = HTEX_PIN_NONE};
    int rc = configure_affinity(map, &p, err);
    if (rc == 0)
        rc = configure_accels(map, &p, err);
    if (rc < 0) {
        htex_pin_free(&p);
        *out = (htex_pin_t){.policy = HTEX_PIN_NONE};
        return rc;
    }
    *out = p;
    return 0;
}

void htex_pin_free(htex_pin_t *p)
{
    if (!p)
        return;
    strv_free(p->list, p->nlist);
    strv_free(p->accels, p->naccels);
    *p = (htex_pin_t){.policy = HTEX_PIN_NONE};
}

/* ---- slots to CPUs ----------------------------------------------------- */

/*
 * The CPUs this process may use: its binding (the union over its threads,
 * which is what the launcher gave it unless workers narrowed their own
 * threads inside it) within the PUs hwloc knows.  Falls back to the
 * topology's allowed set when the binding cannot be read.
 */
static int allowed_cpus(hwloc_topology_t t, hwloc_bitmap_t set,
                        cparsl_error_t *err)
{
    hwloc_const_bitmap_t all = hwloc_topology_get_allowed_cpuset(t);
    if (hwloc_get_cpubind(t, set, HWLOC_CPUBIND_PROCESS) == 0) {
        hwloc_bitmap_and(set, set, all);
        if (!hwloc_bitmap_iszero(set))
            return 0;
    }
    if (hwloc_bitmap_copy(set, all) < 0)
        return cparsl_error_set(err, -ENOMEM, "pinning: out of memory");
    if (hwloc_bitmap_iszero(set))
        return cparsl_error_set(err, -ENODEV,
                                "pinning: hwloc reports no "
                                "CPUs this process may use");
    return 0;
}

/* Block [lo, hi) of the k allowed PUs (in 'pus', OS-index order) into
 * 'set', counted from the end when 'reverse'. */
static void set_block(hwloc_bitmap_t set, const unsigned *pus, size_t k,
                      size_t lo, size_t hi, bool reverse)
{
    for (size_t j = lo; j < hi; j++)
        hwloc_bitmap_set(set, pus[reverse ? k - 1 - j : j]);
}

static int policy_cpus(const htex_pin_t *p, hwloc_bitmap_t allowed, int slot,
                       int nslots, hwloc_bitmap_t set, cparsl_error_t *err)
{
    int w = hwloc_bitmap_weight(allowed);
    size_t k = (size_t)w, n = (size_t)nslots, i = (size_t)slot;
    unsigned *pus = malloc(k * sizeof *pus);
    if (!pus)
        return cparsl_error_set(err, -ENOMEM, "pinning: out of memory");
    size_t j = 0;
    unsigned cpu;
    hwloc_bitmap_foreach_begin(cpu, allowed)
    {
        pus[j++] = cpu;
    }
    hwloc_bitmap_foreach_end();

    hwloc_bitmap_zero(set);
    bool reverse = p->policy == HTEX_PIN_BLOCK_REVERSE;
    if (n > k) {
        /* More slots than PUs: the slots share them, one PU each. */
        set_block(set, pus, k, i % k, i % k + 1, reverse);
    } else if (p->policy == HTEX_PIN_ALTERNATING) {
        for (j = i; j < k; j += n)
            hwloc_bitmap_set(set, pus[j]);
    } else {
        /* Blocks as even as possible: sizes differ by at most one. */
        set_block(set, pus, k, i * k / n, (i + 1) * k / n, reverse);
    }
    free(pus);
    return 0;
}

static int list_cpus(const htex_pin_t *p, hwloc_bitmap_t allowed, int slot,
                     hwloc_bitmap_t set, cparsl_error_t *err)
{
    size_t e = (size_t)slot % p->nlist;
    const char *entry = p->list[e];
    int rc = cpulist_parse(entry, set);
    if (rc < 0)
        return cparsl_error_set(err, rc == -ENOMEM ? rc : -CPARSL_ECONFIG,
                                "cpu_affinity: list entry %zu '%.*s%s' is "
                                "not a CPU list",
                                e + 1, QUOTE(entry));
    if (hwloc_bitmap_isincluded(set, allowed))
        return 0;

    char *out = NULL, *ok = NULL;
    hwloc_bitmap_t outside = hwloc_bitmap_alloc();
    if (outside) {
        hwloc_bitmap_andnot(outside, set, allowed);
        hwloc_bitmap_list_asprintf(&out, outside);
        hwloc_bitmap_list_asprintf(&ok, allowed);
        hwloc_bitmap_free(outside);
    }
    rc = cparsl_error_set(err, -CPARSL_ECONFIG,
                          "cpu_affinity: list entry %zu '%.*s%s' names CPUs "
                          "%s outside the set this process may use (%s)",
                          e + 1, QUOTE(entry), out ? out : "?", ok ? ok : "?");
    free(out);
    free(ok);
    return rc;
}

int htex_pin_cpus(const htex_pin_t *p, int slot, int nslots, char **out,
                  cparsl_error_t *err)
{
    *out = NULL;
    if (!p || nslots < 1 || slot < 0 || slot >= nslots)
        return cparsl_error_set(
            err, -EINVAL, "pinning: slot %d of %d is not a slot", slot, nslots);
    if (p->policy == HTEX_PIN_NONE)
        return 0;
    if (p->policy < HTEX_PIN_NONE || p->policy > HTEX_PIN_LIST ||
        (p->policy == HTEX_PIN_LIST && p->nlist == 0))
        return cparsl_error_set(err, -EINVAL, "pinning: bad policy %d",
                                p->policy);

    hwloc_topology_t t = NULL;
    int rc = topo_get(&t, err);
    if (rc < 0)
        return rc;
    hwloc_bitmap_t allowed = hwloc_bitmap_alloc();
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    if (!allowed || !set) {
        rc = cparsl_error_set(err, -ENOMEM, "pinning: out of memory");
        goto done;
    }
    rc = allowed_cpus(t, allowed, err);
    if (rc < 0)
        goto done;
    if (p->policy == HTEX_PIN_LIST)
        rc = list_cpus(p, allowed, slot, set, err);
    else
        rc = policy_cpus(p, allowed, slot, nslots, set, err);
    if (rc < 0)
        goto done;
    if (hwloc_bitmap_list_asprintf(out, set) < 0 || !*out) {
        *out = NULL;
        rc = cparsl_error_set(err, -ENOMEM, "pinning: out of memory");
    }
done:
    hwloc_bitmap_free(allowed);
    hwloc_bitmap_free(set);
    return rc;
}

/* ---- binding and accelerators ------------------------------------------ */

int htex_pin_bind_thread(const char *cpus, cparsl_error_t *err)
{
    if (!cpus)
        return cparsl_error_set(err, -EINVAL, "binding thread: no CPU list");
    hwloc_topology_t t = NULL;
    int rc = topo_get(&t, err);
    if (rc < 0)
        return rc;
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    if (!set)
        return cparsl_error_set(err, -ENOMEM, "binding thread: out of memory");
    rc = cpulist_parse(cpus, set);
    if (rc < 0) {
        rc = cparsl_error_set(
            err, rc, "binding thread to CPUs '%.*s%s': %s", QUOTE(cpus),
            rc == -EINVAL ? "not a CPU list" : cparsl_strerror(rc));
    } else if (hwloc_set_cpubind(t, set, HWLOC_CPUBIND_THREAD) < 0) {
        rc = errno ? -errno : -EINVAL;
        rc = cparsl_error_set(err, rc, "binding thread to CPUs '%.*s%s': %s",
                              QUOTE(cpus), cparsl_strerror(rc));
    }
    hwloc_bitmap_free(set);
    return rc;
}

const char *htex_pin_accel(const htex_pin_t *p, int slot)
{
    if (!p || p->naccels == 0 || slot < 0)
        return NULL;
    return p->accels[(size_t)slot % p->naccels];
}
