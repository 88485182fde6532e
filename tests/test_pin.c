/*
 * test_pin.c - htex worker pinning (htex/pin.c): the cpu_affinity and
 * available_accelerators keys, each policy over the CPUs this process may
 * use, more slots than PUs, list entries outside the allowed set, thread
 * binding read back through hwloc and sched_getcpu, and a process that
 * the "launcher" restricted to one PU (in a forked child, so this process
 * stays unrestricted).
 *
 * The expectations adapt to the machine: they are written against the
 * PUs sched_getaffinity reports, so a 2-PU CI runner and a 128-PU node
 * both check the same properties.  Cases needing two PUs say so and skip
 * on one.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hwloc.h>

#include <cparsl/config.h>

#include "check.h"
#include "pin.h"

/* ---- helpers ------------------------------------------------------------ */

/* The PUs this process may use, in OS-index order (at most 1024). */
static int pus[CPU_SETSIZE];
static int npus;

static void read_pus(void)
{
    cpu_set_t s;
    CPU_ZERO(&s);
    REQUIRE(sched_getaffinity(0, sizeof s, &s) == 0, "sched_getaffinity: %s",
            strerror(errno));
    npus = 0;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &s))
            pus[npus++] = c;
    REQUIRE(npus > 0, "no CPUs");
}

/* Two or more PUs, or a printed note and false. */
static bool need_two_pus(const char *what)
{
    read_pus();
    if (npus >= 2)
        return true;
    printf("skip %s: this machine gives the test %d PU\n", what, npus);
    check__passed++; /* a skip is not a failure */
    return false;
}

/* "0-3,8" into a cpu_set_t; false for anything else. */
static bool parse_list(const char *s, cpu_set_t *set)
{
    CPU_ZERO(set);
    if (!s || !*s)
        return false;
    while (*s) {
        char *end;
        long lo = strtol(s, &end, 10), hi = lo;
        if (end == s)
            return false;
        if (*end == '-') {
            s = end + 1;
            hi = strtol(s, &end, 10);
            if (end == s)
                return false;
        }
        if (lo < 0 || hi < lo || hi >= CPU_SETSIZE)
            return false;
        for (long c = lo; c <= hi; c++)
            CPU_SET((int)c, set);
        s = end;
        if (*s == ',')
            s++;
        else if (*s)
            return false;
    }
    return true;
}

/* A config "pin.yaml" whose map "htex" is the executor map. */
static cparsl_config_t *load(const char *yaml)
{
    cparsl_config_t *cfg = NULL;
    cparsl_error_t err = {0};
    int rc = cparsl_config_load_string(&cfg, yaml, "pin.yaml", &err);
    REQUIRE(rc == 0, "load: %s", err.text);
    return cfg;
}

static const cparsl_cnode_t *htex_map(cparsl_config_t *cfg)
{
    return cparsl_cnode_get(cparsl_config_root(cfg), "htex");
}

/* Configure from YAML text, expecting success. */
static void configure_ok(const char *yaml, htex_pin_t *p)
{
    cparsl_config_t *cfg = load(yaml);
    cparsl_error_t err = {0};
    int rc = htex_pin_configure(htex_map(cfg), p, &err);
    CHECK(rc == 0, "configure '%s': %d %s", yaml, rc, err.text);
    cparsl_config_destroy(cfg);
}

/* Configure from YAML text, expecting a config error whose text holds
 * every one of the NULL-terminated 'want' strings. */
static void configure_bad(const char *yaml, const char *const *want)
{
    cparsl_config_t *cfg = load(yaml);
    cparsl_error_t err = {0};
    htex_pin_t p = {.policy = HTEX_PIN_BLOCK};
    int rc = htex_pin_configure(htex_map(cfg), &p, &err);
    CHECK(rc == -CPARSL_ECONFIG, "configure '%s' gave %d", yaml, rc);
    CHECK(err.code == -CPARSL_ECONFIG, "err.code %d", err.code);
    for (size_t i = 0; want[i]; i++)
        CHECK(strstr(err.text, want[i]), "'%s': error '%s' lacks '%s'", yaml,
              err.text, want[i]);
    CHECK(p.policy == HTEX_PIN_NONE && !p.list && !p.accels,
          "a failed configure leaves defaults");
    cparsl_config_destroy(cfg);
}

/* htex_pin_cpus for one slot, expecting success. */
static char *cpus(const htex_pin_t *p, int slot, int nslots)
{
    cparsl_error_t err = {0};
    char *s = (char *)"unset";
    int rc = htex_pin_cpus(p, slot, nslots, &s, &err);
    CHECK(rc == 0, "cpus(%d of %d): %d %s", slot, nslots, rc, err.text);
    return rc == 0 ? s : NULL;
}

/* Slot 'slot' of 'nslots' under 'p' is exactly the PUs pus[j] for j in
 * 'idx' (n of them). */
static void expect_slot(const htex_pin_t *p, int slot, int nslots,
                        const int *idx, int n)
{
    char *s = cpus(p, slot, nslots);
    cpu_set_t got, want;
    CPU_ZERO(&want);
    for (int j = 0; j < n; j++)
        CPU_SET(pus[idx[j]], &want);
    CHECK(s && parse_list(s, &got) && CPU_EQUAL(&got, &want),
          "policy %d slot %d of %d: got '%s', want %d PUs from index %d",
          p->policy, slot, nslots, s ? s : "(null)", n, n ? idx[0] : -1);
    free(s);
}

static void expect_single(const htex_pin_t *p, int slot, int nslots, int j)
{
    expect_slot(p, slot, nslots, &j, 1);
}

/* ---- configure ---------------------------------------------------------- */

TEST_CASE(configure_defaults)
{
    htex_pin_t p;
    cparsl_error_t err = {0};
    CHECK(htex_pin_configure(NULL, &p, &err) == 0, "NULL map: %s", err.text);
    CHECK(p.policy == HTEX_PIN_NONE && p.nlist == 0 && p.naccels == 0,
          "NULL map gives none and no accelerators");
    htex_pin_free(&p);

    configure_ok("htex: {label: x}\n", &p);
    CHECK(p.policy == HTEX_PIN_NONE && p.naccels == 0, "empty map defaults");
    htex_pin_free(&p);

    configure_ok("htex:\n  cpu_affinity:\n  available_accelerators: ~\n", &p);
    CHECK(p.policy == HTEX_PIN_NONE && p.naccels == 0, "nulls take defaults");
    htex_pin_free(&p);

    configure_ok("htex: {available_accelerators: 0}\n", &p);
    CHECK(p.naccels == 0 && htex_pin_accel(&p, 0) == NULL, "count 0");
    htex_pin_free(&p);

    configure_ok("htex: {available_accelerators: []}\n", &p);
    CHECK(p.naccels == 0 && htex_pin_accel(&p, 3) == NULL, "empty list");
    htex_pin_free(&p);
    htex_pin_free(&p); /* twice is harmless */
    htex_pin_free(NULL);

    char *s = (char *)"unset";
    CHECK(htex_pin_cpus(&p, 0, 4, &s, &err) == 0 && s == NULL,
          "policy none gives NULL");
}

TEST_CASE(configure_policies)
{
    static const struct {
        const char *name;
        int policy;
    } cases[] = {
        {"none", HTEX_PIN_NONE},
        {"block", HTEX_PIN_BLOCK},
        {"block-reverse", HTEX_PIN_BLOCK_REVERSE},
        {"alternating", HTEX_PIN_ALTERNATING},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char yaml[128];
        snprintf(yaml, sizeof yaml, "htex: {cpu_affinity: %s}\n",
                 cases[i].name);
        htex_pin_t p;
        configure_ok(yaml, &p);
        CHECK(p.policy == cases[i].policy, "%s gave %d", cases[i].name,
              p.policy);
        CHECK(p.nlist == 0 && p.list == NULL, "%s has no list", cases[i].name);
        htex_pin_free(&p);
    }

    htex_pin_t p;
    configure_ok("htex: {cpu_affinity: 'list:0,2-3:1:4-7,9'}\n", &p);
    CHECK(p.policy == HTEX_PIN_LIST && p.nlist == 3, "list: %d %zu", p.policy,
          p.nlist);
    if (p.nlist == 3) {
        CHECK(strcmp(p.list[0], "0,2-3") == 0, "entry 0 '%s'", p.list[0]);
        CHECK(strcmp(p.list[1], "1") == 0, "entry 1 '%s'", p.list[1]);
        CHECK(strcmp(p.list[2], "4-7,9") == 0, "entry 2 '%s'", p.list[2]);
    }
    htex_pin_free(&p);
    CHECK(p.list == NULL && p.nlist == 0, "free resets");

    configure_ok("htex: {cpu_affinity: 'list:5'}\n", &p);
    CHECK(p.policy == HTEX_PIN_LIST && p.nlist == 1 &&
              strcmp(p.list[0], "5") == 0,
          "one entry");
    htex_pin_free(&p);

    /* Built in code, as a driver would. */
    cparsl_config_t *cfg = cparsl_config_create();
    cparsl_error_t err = {0};
    REQUIRE(cfg, "config_create");
    CHECK(cparsl_config_set(cfg, "htex.cpu_affinity", "alternating", &err) == 0,
          "set: %s", err.text);
    CHECK(cparsl_config_set(cfg, "htex.available_accelerators", "2", &err) == 0,
          "set: %s", err.text);
    CHECK(htex_pin_configure(htex_map(cfg), &p, &err) == 0, "configure: %s",
          err.text);
    CHECK(p.policy == HTEX_PIN_ALTERNATING && p.naccels == 2, "from code");
    htex_pin_free(&p);
    cparsl_config_destroy(cfg);
}

TEST_CASE(configure_errors)
{
    configure_bad("htex:\n  cpu_affinity: blocks\n",
                  (const char *const[]){"pin.yaml:2", "htex.cpu_affinity",
                                        "'blocks'", "block-reverse", NULL});
    configure_bad("htex:\n  label: a\n  cpu_affinity: 'list:0:3-x'\n",
                  (const char *const[]){"pin.yaml:3", "htex.cpu_affinity",
                                        "list entry 2 '3-x' is not a CPU list",
                                        NULL});
    configure_bad("htex: {cpu_affinity: 'list:'}\n",
                  (const char *const[]){"htex.cpu_affinity",
                                        "list entry 1 is empty", NULL});
    configure_bad("htex: {cpu_affinity: 'list:0::1'}\n",
                  (const char *const[]){"htex.cpu_affinity",
                                        "list entry 2 is empty", NULL});
    configure_bad("htex: {cpu_affinity: 'list:0:1:'}\n",
                  (const char *const[]){"list entry 3 is empty", NULL});
    static const char *const bad_lists[] = {
        "3-1", "0-", "-1", "1a", "0,,1", "0,", " 0", "0x1", "99999999", "a",
    };
    for (size_t i = 0; i < sizeof bad_lists / sizeof *bad_lists; i++) {
        char yaml[128], want[64];
        snprintf(yaml, sizeof yaml, "htex: {cpu_affinity: 'list:0:%s'}\n",
                 bad_lists[i]);
        snprintf(want, sizeof want, "list entry 2 '%s' is not a CPU list",
                 bad_lists[i]);
        configure_bad(yaml,
                      (const char *const[]){"htex.cpu_affinity", want, NULL});
    }
    configure_bad(
        "htex:\n  cpu_affinity: [block]\n",
        (const char *const[]){"htex.cpu_affinity", "pin.yaml:2", NULL});
    configure_bad("htex: {cpu_affinity: 'List:0'}\n",
                  (const char *const[]){"htex.cpu_affinity", "'List:0'", NULL});

    configure_bad("htex:\n  available_accelerators: -1\n",
                  (const char *const[]){"pin.yaml:2",
                                        "htex.available_accelerators", "'-1'",
                                        NULL});
    configure_bad("htex: {available_accelerators: gpu0}\n",
                  (const char *const[]){"htex.available_accelerators",
                                        "list of device ids", "'gpu0'", NULL});
    configure_bad(
        "htex: {available_accelerators: {a: 1}}\n",
        (const char *const[]){"htex.available_accelerators", "mapping", NULL});
    configure_bad("htex:\n  available_accelerators:\n    - 0\n    - [1]\n",
                  (const char *const[]){"pin.yaml:4",
                                        "htex.available_accelerators[1]",
                                        "accelerator 1", NULL});
    configure_bad(
        "htex: {available_accelerators: ['0', '']}\n",
        (const char *const[]){"htex.available_accelerators[1]", "empty", NULL});
    /* A bad second key after a good first one frees the first. */
    configure_bad("htex: {cpu_affinity: 'list:0:1', available_accelerators: "
                  "x}\n",
                  (const char *const[]){"htex.available_accelerators", NULL});
}

TEST_CASE(accelerators)
{
    htex_pin_t p;
    configure_ok("htex:\n  available_accelerators: ['0', 1, GPU-abc]\n", &p);
    CHECK(p.naccels == 3, "3 accelerators, got %zu", p.naccels);
    static const char *const want[] = {"0", "1", "GPU-abc"};
    for (int slot = 0; slot < 7; slot++) {
        const char *a = htex_pin_accel(&p, slot);
        CHECK(a && strcmp(a, want[slot % 3]) == 0, "slot %d got '%s'", slot,
              a ? a : "(null)");
    }
    CHECK(htex_pin_accel(&p, -1) == NULL, "negative slot");
    htex_pin_free(&p);
    CHECK(htex_pin_accel(&p, 0) == NULL, "freed: no accelerators");

    configure_ok("htex: {available_accelerators: 4}\n", &p);
    CHECK(p.naccels == 4, "count 4 gave %zu", p.naccels);
    for (int slot = 0; slot < 9; slot++) {
        char w[8];
        snprintf(w, sizeof w, "%d", slot % 4);
        const char *a = htex_pin_accel(&p, slot);
        CHECK(a && strcmp(a, w) == 0, "slot %d got '%s'", slot,
              a ? a : "(null)");
    }
    htex_pin_free(&p);

    /* Parsl users give a worker two devices as one "0,1" entry. */
    configure_ok("htex: {available_accelerators: ['0,1', '2,3']}\n", &p);
    CHECK(p.naccels == 2 && strcmp(htex_pin_accel(&p, 1), "2,3") == 0,
          "multi-device entries");
    htex_pin_free(&p);

    configure_ok("htex: {}\n", &p);
    CHECK(htex_pin_accel(&p, 0) == NULL, "none configured");
    htex_pin_free(&p);
}

/* ---- policies ----------------------------------------------------------- */

TEST_CASE(block_two_slots)
{
    if (!need_two_pus("block_two_slots"))
        return;
    htex_pin_t p = {.policy = HTEX_PIN_BLOCK};
    char *a = cpus(&p, 0, 2), *b = cpus(&p, 1, 2);
    cpu_set_t sa, sb, both, all;
    REQUIRE(a && b && parse_list(a, &sa) && parse_list(b, &sb),
            "two lists: '%s' '%s'", a ? a : "", b ? b : "");
    CPU_AND(&both, &sa, &sb);
    CHECK(CPU_COUNT(&both) == 0, "slots overlap: '%s' '%s'", a, b);
    CPU_OR(&both, &sa, &sb);
    CPU_ZERO(&all);
    for (int j = 0; j < npus; j++)
        CPU_SET(pus[j], &all);
    CHECK(CPU_EQUAL(&both, &all), "slots '%s' '%s' do not cover all %d PUs", a,
          b, npus);
    CHECK(abs(CPU_COUNT(&sa) - CPU_COUNT(&sb)) <= 1, "uneven: '%s' '%s'", a, b);
    if (npus == 2) {
        char w0[16], w1[16];
        snprintf(w0, sizeof w0, "%d", pus[0]);
        snprintf(w1, sizeof w1, "%d", pus[1]);
        CHECK(strcmp(a, w0) == 0 && strcmp(b, w1) == 0,
              "2 PUs: got '%s' '%s', want '%s' '%s'", a, b, w0, w1);
    }
    printf("block, 2 slots over %d PUs: '%s' '%s'\n", npus, a, b);
    free(a);
    free(b);
}

/* Every policy for every slot count from 1 to npus, against the rule in
 * pin.h written out again here by index. */
TEST_CASE(policies_by_index)
{
    read_pus();
    int idx[CPU_SETSIZE];
    for (int n = 1; n <= npus; n++) {
        for (int i = 0; i < n; i++) {
            int lo = i * npus / n, hi = (i + 1) * npus / n, m = 0;
            for (int j = lo; j < hi; j++)
                idx[m++] = j;
            expect_slot(&(htex_pin_t){.policy = HTEX_PIN_BLOCK}, i, n, idx, m);
            for (int j = 0; j < m; j++)
                idx[j] = npus - 1 - idx[j];
            expect_slot(&(htex_pin_t){.policy = HTEX_PIN_BLOCK_REVERSE}, i, n,
                        idx, m);
            m = 0;
            for (int j = i; j < npus; j += n)
                idx[m++] = j;
            expect_slot(&(htex_pin_t){.policy = HTEX_PIN_ALTERNATING}, i, n,
                        idx, m);
        }
    }
}

TEST_CASE(alternating_and_reverse)
{
    if (!need_two_pus("alternating_and_reverse"))
        return;
    htex_pin_t rev = {.policy = HTEX_PIN_BLOCK_REVERSE};
    htex_pin_t alt = {.policy = HTEX_PIN_ALTERNATING};
    /* One slot per PU: reverse counts from the last PU, alternating is
     * one PU each in order. */
    for (int i = 0; i < npus; i++) {
        expect_single(&rev, i, npus, npus - 1 - i);
        expect_single(&alt, i, npus, i);
    }
    /* Two slots: alternating gives the even and the odd positions. */
    int even[CPU_SETSIZE], odd[CPU_SETSIZE], ne = 0, no = 0;
    for (int j = 0; j < npus; j++) {
        if (j % 2)
            odd[no++] = j;
        else
            even[ne++] = j;
    }
    expect_slot(&alt, 0, 2, even, ne);
    expect_slot(&alt, 1, 2, odd, no);
    /* Two slots under block-reverse: slot 0 holds the last PU. */
    char *s = cpus(&rev, 0, 2);
    cpu_set_t got;
    CHECK(s && parse_list(s, &got) && CPU_ISSET(pus[npus - 1], &got) &&
              !CPU_ISSET(pus[0], &got),
          "block-reverse slot 0 of 2: '%s'", s ? s : "(null)");
    free(s);
}

TEST_CASE(more_slots_than_pus)
{
    read_pus();
    int n = 2 * npus + 1;
    for (int i = 0; i < n; i++) {
        expect_single(&(htex_pin_t){.policy = HTEX_PIN_BLOCK}, i, n, i % npus);
        expect_single(&(htex_pin_t){.policy = HTEX_PIN_ALTERNATING}, i, n,
                      i % npus);
        expect_single(&(htex_pin_t){.policy = HTEX_PIN_BLOCK_REVERSE}, i, n,
                      npus - 1 - i % npus);
    }
}

TEST_CASE(list_policy)
{
    if (!need_two_pus("list_policy"))
        return;
    char yaml[256];
    snprintf(yaml, sizeof yaml, "htex: {cpu_affinity: 'list:%d:%d:%d,%d'}\n",
             pus[1], pus[0], pus[0], pus[1]);
    htex_pin_t p;
    configure_ok(yaml, &p);
    int both[] = {0, 1};
    for (int round = 0; round < 2; round++) {
        expect_single(&p, 3 * round + 0, 6, 1);
        expect_single(&p, 3 * round + 1, 6, 0);
        expect_slot(&p, 3 * round + 2, 6, both, 2);
    }
    htex_pin_free(&p);

    /* A CPU this process may not use: the first number past the last. */
    int off = pus[npus - 1] + 1;
    snprintf(yaml, sizeof yaml, "htex: {cpu_affinity: 'list:%d:%d-%d'}\n",
             pus[0], pus[0], off);
    configure_ok(yaml, &p);
    expect_single(&p, 0, 2, 0);
    cparsl_error_t err = {0};
    char *s = (char *)"unset";
    int rc = htex_pin_cpus(&p, 1, 2, &s, &err);
    char want[64];
    snprintf(want, sizeof want, "names CPUs %d outside", off);
    CHECK(rc == -CPARSL_ECONFIG && s == NULL, "outside: rc %d", rc);
    CHECK(strstr(err.text, "cpu_affinity") &&
              strstr(err.text, "list entry 2") && strstr(err.text, want),
          "error text '%s'", err.text);
    printf("%s\n", err.text);
    htex_pin_free(&p);
}

TEST_CASE(bad_arguments)
{
    htex_pin_t p = {.policy = HTEX_PIN_BLOCK};
    static const int args[][2] = {{0, 0}, {-1, 2}, {2, 2}, {0, -1}};
    for (size_t i = 0; i < sizeof args / sizeof *args; i++) {
        cparsl_error_t err = {0};
        char *s = (char *)"unset";
        int rc = htex_pin_cpus(&p, args[i][0], args[i][1], &s, &err);
        CHECK(rc == -EINVAL && s == NULL && err.code == -EINVAL,
              "slot %d of %d: rc %d", args[i][0], args[i][1], rc);
    }
    /* A list policy with no entries is a caller bug, not a crash. */
    cparsl_error_t err = {0};
    char *s = NULL;
    CHECK(htex_pin_cpus(&(htex_pin_t){.policy = HTEX_PIN_LIST}, 0, 1, &s,
                        &err) == -EINVAL,
          "empty list policy");
    CHECK(htex_pin_bind_thread(NULL, &err) == -EINVAL, "NULL list");
}

/* ---- binding ------------------------------------------------------------ */

struct bind_arg {
    const char *cpus;
    int rc;
    char err[CPARSL_ERROR_TEXT];
    char *readback; /* hwloc_get_cpubind(THREAD), as a list */
    int affinity;   /* sched_getaffinity: the one CPU, or -1 */
    int ran_on;     /* sched_getcpu after yields, or -1 */
};

static void *bind_thread(void *v)
{
    struct bind_arg *a = v;
    cparsl_error_t err = {0};
    a->rc = htex_pin_bind_thread(a->cpus, &err);
    snprintf(a->err, sizeof a->err, "%s", err.text);
    a->affinity = a->ran_on = -1;
    if (a->rc < 0)
        return NULL;

    hwloc_topology_t t;
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    if (set && hwloc_topology_init(&t) == 0) {
        if (hwloc_topology_load(t) == 0 &&
            hwloc_get_cpubind(t, set, HWLOC_CPUBIND_THREAD) == 0)
            hwloc_bitmap_list_asprintf(&a->readback, set);
        hwloc_topology_destroy(t);
    }
    hwloc_bitmap_free(set);

    cpu_set_t s;
    if (sched_getaffinity(0, sizeof s, &s) == 0 && CPU_COUNT(&s) == 1)
        for (int c = 0; c < CPU_SETSIZE; c++)
            if (CPU_ISSET(c, &s))
                a->affinity = c;
    /* The kernel migrates a thread off a CPU it may no longer use at the
     * next scheduling point; every sample after a yield must agree. */
    for (int i = 0; i < 20; i++) {
        sched_yield();
        int c = sched_getcpu();
        if (i == 0 || c != a->ran_on)
            a->ran_on = i == 0 ? c : -2;
    }
    return NULL;
}

/* Bind a fresh thread (so this process's own threads stay unbound, and
 * later cases see every PU) and report what it saw. */
static void run_bound(struct bind_arg *a)
{
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, bind_thread, a) == 0, "pthread_create");
    pthread_join(th, NULL);
}

TEST_CASE(bind_thread_readback)
{
    read_pus();
    for (int j = 0; j < npus && j < 4; j++) {
        char list[16];
        snprintf(list, sizeof list, "%d", pus[j]);
        struct bind_arg a = {.cpus = list};
        run_bound(&a);
        CHECK(a.rc == 0, "bind '%s': %d %s", list, a.rc, a.err);
        CHECK(a.readback && strcmp(a.readback, list) == 0,
              "hwloc reads back '%s' for '%s'",
              a.readback ? a.readback : "(null)", list);
        CHECK(a.affinity == pus[j], "sched_getaffinity says %d, want %d",
              a.affinity, pus[j]);
        free(a.readback);
    }

    /* A range: the list htex_pin_cpus gives for one slot of all PUs. */
    char *all = cpus(&(htex_pin_t){.policy = HTEX_PIN_BLOCK}, 0, 1);
    struct bind_arg a = {.cpus = all};
    run_bound(&a);
    CHECK(a.rc == 0 && a.readback && strcmp(a.readback, all) == 0,
          "bind '%s' read back '%s'", all ? all : "",
          a.readback ? a.readback : "(null)");
    free(a.readback);
    free(all);

    /* This process, after all that, is still unbound. */
    int before = npus;
    read_pus();
    CHECK(npus == before, "process affinity changed: %d -> %d PUs", before,
          npus);
}

TEST_CASE(bind_thread_errors)
{
    cparsl_error_t err = {0};
    static const char *const bad[] = {"", "x", "0-", "1a", "2-1", "0,,1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = htex_pin_bind_thread(bad[i], &err);
        char want[32];
        snprintf(want, sizeof want, "'%s'", bad[i]);
        CHECK(rc == -EINVAL && strstr(err.text, want) &&
                  strstr(err.text, "not a CPU list"),
              "bind '%s': %d '%s'", bad[i], rc, err.text);
    }
    /* Well formed, but no such CPU here: the kernel refuses it. */
    struct bind_arg a = {.cpus = "1000000"};
    run_bound(&a);
    CHECK(a.rc < 0 && strstr(a.err, "'1000000'"), "bind to CPU 1000000: %d %s",
          a.rc, a.err);
    printf("%s\n", a.err);
}

TEST_CASE(bound_thread_runs_there)
{
    if (!need_two_pus("bound_thread_runs_there"))
        return;
    /* PU 0 (the first PU we may use), then the last: a thread that was
     * running elsewhere must move. */
    int want[] = {pus[0], pus[npus - 1]};
    for (int k = 0; k < 2; k++) {
        char list[16];
        snprintf(list, sizeof list, "%d", want[k]);
        struct bind_arg a = {.cpus = list};
        run_bound(&a);
        CHECK(a.rc == 0, "bind '%s': %s", list, a.err);
        CHECK(a.ran_on == want[k], "bound to %d, sched_getcpu says %d", want[k],
              a.ran_on);
        free(a.readback);
    }
}

/* ---- the launcher's binding --------------------------------------------- */

TEST_CASE(restricted_process)
{
    if (!need_two_pus("restricted_process"))
        return;
    /* Load the topology here first, as a manager would before forking, so
     * the child proves the binding is read per call, not cached. */
    char *s = cpus(&(htex_pin_t){.policy = HTEX_PIN_BLOCK}, 0, 1);
    free(s);

    int only = pus[1];
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(only, &one);
        CHECK(sched_setaffinity(0, sizeof one, &one) == 0,
              "sched_setaffinity: %s", strerror(errno));
        char want[16];
        snprintf(want, sizeof want, "%d", only);
        static const int policies[] = {HTEX_PIN_BLOCK, HTEX_PIN_BLOCK_REVERSE,
                                       HTEX_PIN_ALTERNATING};
        for (size_t k = 0; k < 3; k++) {
            htex_pin_t p = {.policy = policies[k]};
            for (int slot = 0; slot < 2; slot++) {
                char *got = cpus(&p, slot, 2);
                CHECK(got && strcmp(got, want) == 0,
                      "restricted to %s: policy %d slot %d got '%s'", want,
                      policies[k], slot, got ? got : "(null)");
                free(got);
            }
        }
        /* A list naming the PU now outside the set. */
        char list[32];
        snprintf(list, sizeof list, "%d", pus[0]);
        htex_pin_t p = {
            .policy = HTEX_PIN_LIST, .list = (char *[]){list}, .nlist = 1};
        cparsl_error_t err = {0};
        char *got = NULL;
        int rc = htex_pin_cpus(&p, 0, 2, &got, &err);
        char need[48];
        snprintf(need, sizeof need, "names CPUs %d outside", pus[0]);
        CHECK(rc == -CPARSL_ECONFIG && !got && strstr(err.text, need),
              "list outside the restricted set: %d '%s'", rc, err.text);
        fflush(NULL);
        _exit(check__failed ? 1 : 0);
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid, "waitpid");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "child (restricted to PU %d) failed: status 0x%x", only, status);
    /* This process kept all its PUs. */
    int before = npus;
    read_pus();
    CHECK(npus == before, "parent affinity changed");
}

/* First use from many threads at once: the topology loads once. */
static void *first_use(void *v)
{
    char **out = v;
    cparsl_error_t err = {0};
    htex_pin_cpus(&(htex_pin_t){.policy = HTEX_PIN_BLOCK}, 0, 1, out, &err);
    return NULL;
}

TEST_CASE(concurrent_first_use)
{
    enum { N = 8 };
    pthread_t th[N];
    char *out[N] = {0};
    for (int i = 0; i < N; i++)
        REQUIRE(pthread_create(&th[i], NULL, first_use, &out[i]) == 0,
                "pthread_create");
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < N; i++)
        CHECK(out[i] && out[0] && strcmp(out[i], out[0]) == 0,
              "thread %d got '%s'", i, out[i] ? out[i] : "(null)");
    for (int i = 0; i < N; i++)
        free(out[i]);
}

/* What hwloc sees here, for the log. */
TEST_CASE(report_topology)
{
    hwloc_topology_t t;
    REQUIRE(hwloc_topology_init(&t) == 0 && hwloc_topology_load(t) == 0,
            "hwloc load");
    char *all = NULL, *allowed = NULL, *bound = NULL;
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    hwloc_bitmap_list_asprintf(&all, hwloc_topology_get_topology_cpuset(t));
    hwloc_bitmap_list_asprintf(&allowed, hwloc_topology_get_allowed_cpuset(t));
    if (hwloc_get_cpubind(t, set, HWLOC_CPUBIND_PROCESS) == 0)
        hwloc_bitmap_list_asprintf(&bound, set);
    printf("hwloc %s: %d packages, %d cores, %d PUs; cpuset %s, allowed %s, "
           "process bound to %s\n",
           HWLOC_VERSION, hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PACKAGE),
           hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_CORE),
           hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PU), all ? all : "?",
           allowed ? allowed : "?", bound ? bound : "?");
    read_pus();
    CHECK(hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PU) >= npus,
          "hwloc sees fewer PUs than sched_getaffinity");
    free(all);
    free(allowed);
    free(bound);
    hwloc_bitmap_free(set);
    hwloc_topology_destroy(t);
}

static const check_case_t cases[] = {
    TEST_ENTRY(configure_defaults),
    TEST_ENTRY(configure_policies),
    TEST_ENTRY(configure_errors),
    TEST_ENTRY(accelerators),
    TEST_ENTRY(block_two_slots),
    TEST_ENTRY(policies_by_index),
    TEST_ENTRY(alternating_and_reverse),
    TEST_ENTRY(more_slots_than_pus),
    TEST_ENTRY(list_policy),
    TEST_ENTRY(bad_arguments),
    TEST_ENTRY(bind_thread_readback),
    TEST_ENTRY(bind_thread_errors),
    TEST_ENTRY(bound_thread_runs_there),
    TEST_ENTRY(restricted_process),
    TEST_ENTRY(concurrent_first_use),
    TEST_ENTRY(report_topology),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return check_main(argc, argv, cases);
}
