/*
 * test_config.c - the config tree of cparsl/config.h: loading, every
 * rejection with its file/line/key, the typed helpers, check_keys,
 * config_set paths, merge, the YAML round trip, and random bytes through
 * the loader (which must never crash).
 */
#include <cparsl/config.h>

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

#define HAS(text, sub) (strstr((text), (sub)) != NULL)

/* Load 'yaml' as "cfg.yaml"; REQUIREs success. */
static cparsl_config_t *load(const char *yaml)
{
    cparsl_config_t *cfg = NULL;
    cparsl_error_t err = {0};
    int rc = cparsl_config_load_string(&cfg, yaml, "cfg.yaml", &err);
    REQUIRE(rc == 0 && cfg, "load failed: %d %s\n---\n%s", rc, err.text, yaml);
    return cfg;
}

/* Loading 'yaml' must fail with -CPARSL_ECONFIG and 'want' in the text. */
static void reject(const char *yaml, const char *want)
{
    cparsl_config_t *cfg = (cparsl_config_t *)1;
    cparsl_error_t err = {0};
    int rc = cparsl_config_load_string(&cfg, yaml, "cfg.yaml", &err);
    CHECK(rc == -CPARSL_ECONFIG, "rc %d for:\n%s", rc, yaml);
    CHECK(cfg == NULL, "out not cleared");
    CHECK(err.code == rc, "err.code %d", err.code);
    CHECK(HAS(err.text, want), "got '%s', want '%s'", err.text, want);
    if (rc == 0)
        cparsl_config_destroy(cfg);
}

static void test_load_basic(void)
{
    cparsl_config_t *cfg = load("# comment\n"
                                "retries: 2\n"
                                "run_dir: runinfo\n"
                                "executors:\n"
                                "  - label: htex\n"
                                "    workers: 4\n"
                                "  - label: local\n"
                                "    env: {A: '1', B: \"2\"}\n"
                                "7: seven\n");
    const cparsl_cnode_t *root = cparsl_config_root(cfg);
    CHECK(cparsl_cnode_type(root) == CPARSL_CNODE_MAP, "root type");
    CHECK(strcmp(cparsl_cnode_path(root), "") == 0, "root path");
    CHECK(cparsl_cnode_len(root) == 4, "root len %zu", cparsl_cnode_len(root));
    const cparsl_cnode_t *r = cparsl_cnode_get(root, "retries");
    CHECK(r && strcmp(cparsl_cnode_scalar(r), "2") == 0, "retries");
    CHECK(cparsl_cnode_line(r) == 2, "retries line %d", cparsl_cnode_line(r));
    CHECK(strcmp(cparsl_cnode_file(r), "cfg.yaml") == 0, "file");
    CHECK(strcmp(cparsl_cnode_key(r), "retries") == 0, "key");
    CHECK(cparsl_cnode_key(root) == NULL, "root has no key");

    const cparsl_cnode_t *ex = cparsl_cnode_get(root, "executors");
    CHECK(cparsl_cnode_type(ex) == CPARSL_CNODE_SEQ, "executors seq");
    CHECK(cparsl_cnode_len(ex) == 2, "two executors");
    CHECK(cparsl_cnode_scalar(ex) == NULL, "seq has no scalar");
    const cparsl_cnode_t *e1 = cparsl_cnode_at(ex, 1);
    CHECK(strcmp(cparsl_cnode_path(e1), "executors[1]") == 0, "path %s",
          cparsl_cnode_path(e1));
    CHECK(cparsl_cnode_line(e1) == 7, "e1 line %d", cparsl_cnode_line(e1));
    CHECK(cparsl_cnode_key(e1) == NULL, "seq item has no key");
    CHECK(cparsl_cnode_at(ex, 2) == NULL, "past the end");
    const cparsl_cnode_t *w =
        cparsl_cnode_get(cparsl_cnode_at(ex, 0), "workers");
    CHECK(strcmp(cparsl_cnode_path(w), "executors[0].workers") == 0, "path %s",
          cparsl_cnode_path(w));
    CHECK(cparsl_cnode_line(w) == 6, "workers line");
    const cparsl_cnode_t *b =
        cparsl_cnode_get(cparsl_cnode_get(e1, "env"), "B");
    CHECK(b && strcmp(cparsl_cnode_path(b), "executors[1].env.B") == 0,
          "flow map path");
    CHECK(strcmp(cparsl_cnode_scalar(b), "2") == 0, "quoted text raw");
    const cparsl_cnode_t *seven = cparsl_cnode_get(root, "7");
    CHECK(seven && strcmp(cparsl_cnode_scalar(seven), "seven") == 0,
          "int key as text");
    CHECK(cparsl_cnode_get(root, "nope") == NULL, "missing key");
    CHECK(cparsl_cnode_get(NULL, "x") == NULL, "NULL map");
    CHECK(cparsl_cnode_get(ex, "x") == NULL, "get on a seq");
    CHECK(cparsl_cnode_len(r) == 0, "scalar len");
    cparsl_config_destroy(cfg);

    /* Empty documents are empty maps. */
    const char *empties[] = {"",    "# nothing\n", "---\n",
                             "~\n", "{}\n",        "--- \n...\n"};
    for (size_t i = 0; i < sizeof empties / sizeof *empties; i++) {
        cfg = load(empties[i]);
        CHECK(cparsl_cnode_type(cparsl_config_root(cfg)) == CPARSL_CNODE_MAP &&
                  cparsl_cnode_len(cparsl_config_root(cfg)) == 0,
              "empty doc %zu", i);
        cparsl_config_destroy(cfg);
    }

    cfg = cparsl_config_create();
    REQUIRE(cfg, "create");
    CHECK(cparsl_cnode_len(cparsl_config_root(cfg)) == 0, "created empty");
    CHECK(strcmp(cparsl_cnode_file(cparsl_config_root(cfg)), "<code>") == 0,
          "created file");
    cparsl_config_destroy(cfg);
    cparsl_config_destroy(NULL);
}

static void test_load_file(void)
{
    char path[] = "/tmp/cparsl-test-config-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0, "mkstemp");
    const char *text = "retries: 3\nlabel: x\n\nbad: [1, 2\n";
    /* REQUIRE evaluates its condition twice: no side effects inside. */
    ssize_t wrote = write(fd, text, strlen(text));
    REQUIRE(wrote == (ssize_t)strlen(text), "write");
    close(fd);

    cparsl_config_t *cfg = NULL;
    cparsl_error_t err = {0};
    int rc = cparsl_config_load_file(&cfg, path, &err);
    CHECK(rc == -CPARSL_ECONFIG, "syntax error in file: %d", rc);
    CHECK(HAS(err.text, path), "file name in '%s'", err.text);

    FILE *f = fopen(path, "w");
    REQUIRE(f, "reopen");
    fputs("retries: 3\nlabel: x\n", f);
    fclose(f);
    rc = cparsl_config_load_file(&cfg, path, &err);
    REQUIRE(rc == 0, "load file: %s", err.text);
    const cparsl_cnode_t *l =
        cparsl_cnode_get(cparsl_config_root(cfg), "label");
    CHECK(strcmp(cparsl_cnode_file(l), path) == 0, "node file");
    CHECK(cparsl_cnode_line(l) == 2, "node line");
    int64_t v;
    rc = cparsl_cnode_int(cparsl_config_root(cfg), "label", 0, 0, 10, &v, &err);
    char want[128];
    snprintf(want, sizeof want, "%s:2: key 'label': expected an integer", path);
    CHECK(rc == -CPARSL_ECONFIG && HAS(err.text, want), "got '%s'", err.text);
    cparsl_config_destroy(cfg);
    unlink(path);

    rc = cparsl_config_load_file(&cfg, "/nonexistent/cparsl.yaml", &err);
    CHECK(rc == -ENOENT, "missing file rc %d", rc);
    CHECK(cfg == NULL, "out cleared");
    CHECK(HAS(err.text, "/nonexistent/cparsl.yaml"), "path in '%s'", err.text);
    rc = cparsl_config_load_file(&cfg, "/tmp", &err);
    CHECK(rc == -EISDIR, "directory rc %d (%s)", rc, err.text);
}

static void test_rejections(void)
{
    reject("a: 1\nb: [1, 2\n", "cfg.yaml:3:1: ");
    reject("a: 1\n  b: 2\n", "cfg.yaml:2:4: mapping values are not allowed");
    reject("a: \"x\n", "cfg.yaml:");
    reject("- a\n- b\n", "cfg.yaml:1: the top level must be a mapping, got "
                         "a sequence");
    reject("hello\n", "the top level must be a mapping, got a scalar");
    reject("'~'\n", "the top level must be a mapping");
    reject("x: 1\nretries: 1\nretries: 2\n",
           "cfg.yaml:3: key 'retries': duplicate key (first at line 2)");
    reject("e:\n  - a: 1\n    a: 2\n",
           "cfg.yaml:3: key 'e[0].a': duplicate key (first at line 2)");
    reject("{a: 1, a: 2}", "key 'a': duplicate key");
    reject("a: &x 1\nb: *x\n", "cfg.yaml:1: key 'a': anchors are not "
                               "supported");
    reject("a: 1\nb: *x\n", "cfg.yaml:2: key 'b': aliases are not supported");
    reject("a:\n  b: *x\n", "cfg.yaml:2: key 'a.b': aliases are not supported");
    reject("&r\na: 1\n", "anchors are not supported");
    reject("- 1\n", "the top level must be a mapping");
    reject("a: [x, *y]\n", "cfg.yaml:1: key 'a[1]': aliases are not");
    reject("&k a: 1\n", "cfg.yaml:1: key 'a': anchors are not supported");
    reject("a: 1\n---\nb: 2\n",
           "cfg.yaml:2: multiple documents are not supported");
    reject("? [a, b]\n: 1\n", "cfg.yaml:1: mapping keys must be scalars");
    reject("a: \"x\\0y\"\n", "key 'a': the value holds a NUL character");
    reject("a: \"\\xff\xff\"\n", "cfg.yaml:1:");

    /* Deep nesting is refused, not recursed into. */
    char deep[400];
    memset(deep, '[', 200);
    memset(deep + 200, ']', 199);
    deep[399] = '\0';
    char doc[420];
    snprintf(doc, sizeof doc, "a: %s", deep);
    reject(doc, "nested deeper than");

    /* A NULL err is fine too. */
    cparsl_config_t *cfg = NULL;
    CHECK(cparsl_config_load_string(&cfg, "- x", NULL, NULL) == -CPARSL_ECONFIG,
          "NULL err");
    CHECK(cparsl_config_load_string(&cfg, NULL, "x", NULL) == -EINVAL,
          "NULL yaml");
}

static void test_int(void)
{
    cparsl_config_t *cfg = load("a: 4\n"
                                "neg: -12\n"
                                "plus: +7\n"
                                "hex: 0x1F\n"
                                "nhex: -0x10\n"
                                "big: 9223372036854775807\n"
                                "small: -9223372036854775808\n"
                                "over: 9223372036854775808\n"
                                "frac: 4.5\n"
                                "empty: ''\n"
                                "junk: 12abc\n"
                                "word: abc\n"
                                "nul: ~\n"
                                "nothing:\n"
                                "seq: [1]\n"
                                "quoted: '5'\n");
    const cparsl_cnode_t *r = cparsl_config_root(cfg);
    cparsl_error_t err = {0};
    int64_t v = 0;
    CHECK(cparsl_cnode_int(r, "a", 0, 1, 10, &v, &err) == 0 && v == 4, "a");
    CHECK(cparsl_cnode_int(r, "neg", 0, INT64_MIN, INT64_MAX, &v, &err) == 0 &&
              v == -12,
          "neg");
    CHECK(cparsl_cnode_int(r, "plus", 0, 0, 10, &v, &err) == 0 && v == 7,
          "plus");
    CHECK(cparsl_cnode_int(r, "hex", 0, 0, 100, &v, &err) == 0 && v == 31,
          "hex");
    CHECK(cparsl_cnode_int(r, "nhex", 0, -100, 0, &v, &err) == 0 && v == -16,
          "nhex");
    CHECK(cparsl_cnode_int(r, "big", 0, 0, INT64_MAX, &v, &err) == 0 &&
              v == INT64_MAX,
          "big");
    CHECK(cparsl_cnode_int(r, "small", 0, INT64_MIN, 0, &v, &err) == 0 &&
              v == INT64_MIN,
          "small");
    CHECK(cparsl_cnode_int(r, "quoted", 0, 0, 10, &v, &err) == 0 && v == 5,
          "quoted digits are an int");
    /* Missing and null keys take the default. */
    v = 0;
    CHECK(cparsl_cnode_int(r, "missing", 42, 0, 10, &v, &err) == 0 && v == 42,
          "default (even out of range)");
    CHECK(cparsl_cnode_int(r, "nul", 3, 0, 10, &v, &err) == 0 && v == 3,
          "~ is default");
    CHECK(cparsl_cnode_int(r, "nothing", 5, 0, 10, &v, &err) == 0 && v == 5,
          "empty is default");
    CHECK(cparsl_cnode_int(NULL, "a", 6, 0, 10, &v, &err) == 0 && v == 6,
          "NULL map");

    struct {
        const char *key, *want;
    } bad[] = {
        {"over", "cfg.yaml:8: key 'over': expected an integer >= 0, got "
                 "'9223372036854775808'"},
        {"frac", "cfg.yaml:9: key 'frac': expected an integer >= 0, got "
                 "'4.5'"},
        {"empty", "cfg.yaml:10: key 'empty': expected an integer >= 0, got "
                  "''"},
        {"junk", "cfg.yaml:11: key 'junk': expected an integer >= 0, got "
                 "'12abc'"},
        {"word", "cfg.yaml:12: key 'word': expected an integer >= 0, got "
                 "'abc'"},
        {"seq", "cfg.yaml:15: key 'seq': expected an integer >= 0, got a "
                "sequence"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        v = 99;
        int rc = cparsl_cnode_int(r, bad[i].key, 0, 0, INT64_MAX, &v, &err);
        CHECK(rc == -CPARSL_ECONFIG && err.code == rc, "%s rc %d", bad[i].key,
              rc);
        CHECK(HAS(err.text, bad[i].want), "got '%s'", err.text);
        CHECK(v == 99, "out untouched on error");
    }
    CHECK(cparsl_cnode_int(r, "a", 0, 5, 10, &v, &err) == -CPARSL_ECONFIG &&
              HAS(err.text, "expected an integer between 5 and 10, got '4'"),
          "range: %s", err.text);
    CHECK(cparsl_cnode_int(r, "a", 0, INT64_MIN, 3, &v, &err) ==
                  -CPARSL_ECONFIG &&
              HAS(err.text, "expected an integer <= 3"),
          "max: %s", err.text);
    CHECK(cparsl_cnode_int(r, "word", 0, INT64_MIN, INT64_MAX, &v, &err) ==
                  -CPARSL_ECONFIG &&
              HAS(err.text, "expected an integer, got 'abc'"),
          "unbounded: %s", err.text);
    /* A "map" that is a scalar is itself the error. */
    CHECK(cparsl_cnode_int(cparsl_cnode_get(r, "a"), "x", 0, 0, 1, &v, &err) ==
                  -CPARSL_ECONFIG &&
              HAS(err.text, "cfg.yaml:1: key 'a': expected a mapping"),
          "non-map: %s", err.text);
    cparsl_config_destroy(cfg);
}

static void test_double_bool_string(void)
{
    cparsl_config_t *cfg = load("d: 1.5\n"
                                "i: 3\n"
                                "e: -2e-3\n"
                                "inf: inf\n"
                                "nan: nan\n"
                                "huge: 1e999\n"
                                "word: fast\n"
                                "b1: true\n"
                                "b2: No\n"
                                "b3: ON\n"
                                "b4: off\n"
                                "b5: YES\n"
                                "b6: 1\n"
                                "s: hello world\n"
                                "sq: ''\n"
                                "snull: null\n"
                                "stilde: '~'\n"
                                "smap: {a: 1}\n");
    const cparsl_cnode_t *r = cparsl_config_root(cfg);
    cparsl_error_t err = {0};
    double d = 0;
    CHECK(cparsl_cnode_double(r, "d", 0, 0, 10, &d, &err) == 0 && d == 1.5,
          "d");
    CHECK(cparsl_cnode_double(r, "i", 0, 0, 10, &d, &err) == 0 && d == 3.0,
          "int as double");
    CHECK(cparsl_cnode_double(r, "e", 0, -HUGE_VAL, HUGE_VAL, &d, &err) == 0 &&
              d == -2e-3,
          "exp");
    CHECK(cparsl_cnode_double(r, "missing", 0.25, 0, 10, &d, &err) == 0 &&
              d == 0.25,
          "default");
    const char *bad[] = {"inf", "nan", "huge", "word"};
    for (size_t i = 0; i < 4; i++) {
        int rc =
            cparsl_cnode_double(r, bad[i], 0, -HUGE_VAL, HUGE_VAL, &d, &err);
        CHECK(rc == -CPARSL_ECONFIG && HAS(err.text, "expected a number, got"),
              "%s: %s", bad[i], err.text);
    }
    CHECK(cparsl_cnode_double(r, "d", 0, 2, 10, &d, &err) == -CPARSL_ECONFIG &&
              HAS(err.text, "cfg.yaml:1: key 'd': expected a number between "
                            "2 and 10, got '1.5'"),
          "range: %s", err.text);
    CHECK(cparsl_cnode_double(r, "d", 0, 2, HUGE_VAL, &d, &err) ==
                  -CPARSL_ECONFIG &&
              HAS(err.text, "expected a number >= 2"),
          "min: %s", err.text);

    bool b = false;
    struct {
        const char *key;
        bool want;
    } bools[] = {
        {"b1", true}, {"b2", false}, {"b3", true}, {"b4", false}, {"b5", true}};
    for (size_t i = 0; i < 5; i++) {
        b = !bools[i].want;
        CHECK(cparsl_cnode_bool(r, bools[i].key, !bools[i].want, &b, &err) ==
                      0 &&
                  b == bools[i].want,
              "%s", bools[i].key);
    }
    CHECK(cparsl_cnode_bool(r, "missing", true, &b, &err) == 0 && b,
          "bool default");
    CHECK(cparsl_cnode_bool(r, "b6", true, &b, &err) == -CPARSL_ECONFIG &&
              HAS(err.text, "cfg.yaml:13: key 'b6': expected a boolean") &&
              HAS(err.text, "got '1'"),
          "b6: %s", err.text);

    const char *s = NULL;
    CHECK(cparsl_cnode_string(r, "s", "x", &s, &err) == 0 &&
              strcmp(s, "hello world") == 0,
          "string");
    CHECK(cparsl_cnode_string(r, "i", "x", &s, &err) == 0 &&
              strcmp(s, "3") == 0,
          "number as string");
    CHECK(cparsl_cnode_string(r, "sq", "x", &s, &err) == 0 && !strcmp(s, ""),
          "quoted empty is a value");
    CHECK(cparsl_cnode_string(r, "stilde", "x", &s, &err) == 0 &&
              !strcmp(s, "~"),
          "quoted ~ is a value");
    CHECK(cparsl_cnode_string(r, "snull", "dflt", &s, &err) == 0 &&
              !strcmp(s, "dflt"),
          "null is default");
    CHECK(cparsl_cnode_string(r, "missing", NULL, &s, &err) == 0 && !s,
          "NULL default");
    CHECK(cparsl_cnode_string(r, "smap", "x", &s, &err) == -CPARSL_ECONFIG &&
              HAS(err.text, "cfg.yaml:18: key 'smap': expected a string, got "
                            "a mapping"),
          "map as string: %s", err.text);

    const char *const kinds[] = {"thread", "htex", "mpi", NULL};
    int k = -5;
    cparsl_config_set(cfg, "kind", "htex", NULL);
    CHECK(cparsl_cnode_choice(cparsl_config_root(cfg), "kind", kinds, 0, &k,
                              &err) == 0 &&
              k == 1,
          "choice");
    CHECK(cparsl_cnode_choice(r, "missing", kinds, 2, &k, &err) == 0 && k == 2,
          "choice default");
    CHECK(cparsl_cnode_choice(r, "word", kinds, 0, &k, &err) ==
                  -CPARSL_ECONFIG &&
              HAS(err.text, "cfg.yaml:7: key 'word': expected one of: "
                            "thread, htex, mpi") &&
              HAS(err.text, "'fast'"),
          "bad choice: %s", err.text);
    CHECK(cparsl_cnode_choice(r, "smap", kinds, 0, &k, &err) ==
                  -CPARSL_ECONFIG &&
              HAS(err.text, "key 'smap': expected one of: thread, htex, "
                            "mpi, got a mapping"),
          "choice of a map: %s", err.text);
    cparsl_config_destroy(cfg);
}

static void test_check_keys(void)
{
    cparsl_config_t *cfg = load("label: x\n"
                                "executors:\n"
                                "  - workers: 2\n"
                                "    retires: 3\n"
                                "zzzzzz: 1\n");
    const cparsl_cnode_t *r = cparsl_config_root(cfg);
    cparsl_error_t err = {0};
    const char *const top[] = {"label", "executors", "zzzzzz", NULL};
    const char *const ex[] = {"workers", "retries", "label", NULL};
    const char *const few[] = {"label", "executors", NULL};
    CHECK(cparsl_cnode_check_keys(r, top, &err) == 0, "all allowed");
    CHECK(cparsl_cnode_check_keys(NULL, top, &err) == 0, "NULL map");
    const cparsl_cnode_t *e0 =
        cparsl_cnode_at(cparsl_cnode_get(r, "executors"), 0);
    int rc = cparsl_cnode_check_keys(e0, ex, &err);
    CHECK(rc == -CPARSL_ECONFIG, "unknown key rc");
    CHECK(HAS(err.text, "cfg.yaml:4: key 'executors[0].retires': unknown key "
                        "'retires' (did you mean 'retries'?)"),
          "suggest: %s", err.text);
    rc = cparsl_cnode_check_keys(r, few, &err);
    CHECK(rc == -CPARSL_ECONFIG &&
              HAS(err.text, "cfg.yaml:5: key 'zzzzzz': unknown key 'zzzzzz' "
                            "(allowed: label, executors)"),
          "list: %s", err.text);
    rc = cparsl_cnode_check_keys(cparsl_cnode_get(r, "executors"), ex, &err);
    CHECK(rc == -CPARSL_ECONFIG &&
              HAS(err.text, "key 'executors': expected a mapping, got a "
                            "sequence"),
          "not a map: %s", err.text);
    const char *const none[] = {NULL};
    CHECK(cparsl_cnode_check_keys(r, none, &err) == -CPARSL_ECONFIG &&
              HAS(err.text, "unknown key 'label'"),
          "nothing allowed: %s", err.text);
    cparsl_config_destroy(cfg);
}

static void test_set(void)
{
    cparsl_config_t *cfg = cparsl_config_create();
    REQUIRE(cfg, "create");
    cparsl_error_t err = {0};
    CHECK(cparsl_config_set(cfg, "retries", "3", &err) == 0, "%s", err.text);
    CHECK(cparsl_config_set(cfg, "executors[0].label", "htex", &err) == 0, "%s",
          err.text);
    CHECK(cparsl_config_set(cfg, "executors[0].workers", "8", &err) == 0, "%s",
          err.text);
    CHECK(cparsl_config_set(cfg, "executors[1].label", "local", &err) == 0,
          "append: %s", err.text);
    CHECK(cparsl_config_set(cfg, "a.b.c", "x", &err) == 0, "%s", err.text);
    CHECK(cparsl_config_set(cfg, "m[0][0]", "deep", &err) == 0, "%s", err.text);
    CHECK(cparsl_config_set(cfg, "retries", "4", &err) == 0, "replace");

    const cparsl_cnode_t *r = cparsl_config_root(cfg);
    int64_t v = 0;
    CHECK(cparsl_cnode_int(r, "retries", 0, 0, 10, &v, &err) == 0 && v == 4,
          "retries %lld", (long long)v);
    const cparsl_cnode_t *ex = cparsl_cnode_get(r, "executors");
    CHECK(cparsl_cnode_type(ex) == CPARSL_CNODE_SEQ &&
              cparsl_cnode_len(ex) == 2,
          "executors");
    const cparsl_cnode_t *w =
        cparsl_cnode_get(cparsl_cnode_at(ex, 0), "workers");
    CHECK(w && strcmp(cparsl_cnode_path(w), "executors[0].workers") == 0 &&
              strcmp(cparsl_cnode_file(w), "<code>") == 0 &&
              cparsl_cnode_line(w) == 0,
          "code node");
    const cparsl_cnode_t *c =
        cparsl_cnode_get(cparsl_cnode_get(cparsl_cnode_get(r, "a"), "b"), "c");
    CHECK(c && !strcmp(cparsl_cnode_scalar(c), "x") &&
              !strcmp(cparsl_cnode_path(c), "a.b.c"),
          "a.b.c");
    const cparsl_cnode_t *m =
        cparsl_cnode_at(cparsl_cnode_at(cparsl_cnode_get(r, "m"), 0), 0);
    CHECK(m && !strcmp(cparsl_cnode_path(m), "m[0][0]"), "m[0][0]");

    /* Errors on code nodes leave the line out. */
    CHECK(cparsl_cnode_int(cparsl_cnode_at(ex, 1), "label", 0, 0, 9, &v,
                           &err) == -CPARSL_ECONFIG &&
              HAS(err.text, "<code>: key 'executors[1].label': expected an "
                            "integer between 0 and 9, got 'local'"),
          "code error: %s", err.text);
    cparsl_cnode_error(c, &err, "needs %d things", 2);
    CHECK(err.code == -CPARSL_ECONFIG &&
              !strcmp(err.text, "<code>: key 'a.b.c': needs 2 things"),
          "cnode_error: %s", err.text);

    int rc = cparsl_config_set(cfg, "executors[5].label", "x", &err);
    CHECK(rc == -EINVAL && HAS(err.text, "key 'executors'") &&
              HAS(err.text, "index 5 is past the end (length 2)"),
          "past end: %d %s", rc, err.text);
    rc = cparsl_config_set(cfg, "new[1]", "x", &err);
    CHECK(rc == -EINVAL && HAS(err.text, "past the end"), "new past: %s",
          err.text);
    CHECK(cparsl_cnode_get(cparsl_config_root(cfg), "new") == NULL,
          "failed set leaves nothing behind");
    rc = cparsl_config_set(cfg, "q[0][3]", "x", &err);
    CHECK(rc == -EINVAL &&
              cparsl_cnode_get(cparsl_config_root(cfg), "q") == NULL,
          "nested new past: %s", err.text);
    rc = cparsl_config_set(cfg, "retries.x", "1", &err);
    CHECK(rc == -EINVAL && HAS(err.text, "key 'retries': is a scalar"),
          "through scalar: %s", err.text);
    rc = cparsl_config_set(cfg, "retries[0]", "1", &err);
    CHECK(rc == -EINVAL && HAS(err.text, "not a sequence"), "index scalar");
    rc = cparsl_config_set(cfg, "executors.x", "1", &err);
    CHECK(rc == -EINVAL && HAS(err.text, "is a sequence"), "key on seq");
    const char *badpaths[] = {"",    "a..b", ".a",  "a.",    "a[",  "a[x]",
                              "a[1", "a]b",  "a[]", "a[0]b", "[0]", "a[-1]"};
    for (size_t i = 0; i < sizeof badpaths / sizeof *badpaths; i++) {
        rc = cparsl_config_set(cfg, badpaths[i], "1", &err);
        CHECK(rc == -EINVAL && HAS(err.text, "bad config path"),
              "path '%s': %d %s", badpaths[i], rc, err.text);
    }
    CHECK(cparsl_config_set(cfg, "x", "\xff", &err) == -EINVAL,
          "bad UTF-8 value");
    CHECK(cparsl_config_set(cfg, "x", NULL, &err) == -EINVAL, "NULL value");
    cparsl_config_destroy(cfg);

    /* A null on the way is as good as missing; a whole map is replaced. */
    cfg = load("executors:\nprovider: {a: 1}\n");
    CHECK(cparsl_config_set(cfg, "executors[0].label", "x", &err) == 0,
          "through null: %s", err.text);
    CHECK(cparsl_config_set(cfg, "provider", "slurm", &err) == 0,
          "replace map: %s", err.text);
    const char *s = NULL;
    CHECK(cparsl_cnode_string(cparsl_config_root(cfg), "provider", NULL, &s,
                              &err) == 0 &&
              !strcmp(s, "slurm"),
          "replaced");
    cparsl_config_destroy(cfg);
}

static void test_merge_dup(void)
{
    cparsl_config_t *base = load("retries: 1\n"
                                 "a: {x: 1, y: 2}\n"
                                 "list: [1, 2, 3]\n"
                                 "keep: k\n");
    cparsl_config_t *over = NULL;
    cparsl_error_t err = {0};
    int rc = cparsl_config_load_string(&over,
                                       "a: {y: 20, z: 30}\n"
                                       "list: [9]\n"
                                       "retries: {deep: true}\n"
                                       "new: n\n",
                                       "over.yaml", &err);
    REQUIRE(rc == 0, "%s", err.text);
    CHECK(cparsl_config_merge(base, over, &err) == 0, "merge");
    cparsl_config_destroy(over);

    const cparsl_cnode_t *r = cparsl_config_root(base);
    const cparsl_cnode_t *a = cparsl_cnode_get(r, "a");
    int64_t v;
    CHECK(cparsl_cnode_int(a, "x", 0, 0, 100, &v, &err) == 0 && v == 1, "x");
    CHECK(cparsl_cnode_int(a, "y", 0, 0, 100, &v, &err) == 0 && v == 20, "y");
    CHECK(cparsl_cnode_int(a, "z", 0, 0, 100, &v, &err) == 0 && v == 30, "z");
    const cparsl_cnode_t *list = cparsl_cnode_get(r, "list");
    CHECK(cparsl_cnode_len(list) == 1 &&
              !strcmp(cparsl_cnode_scalar(cparsl_cnode_at(list, 0)), "9"),
          "sequence replaced");
    CHECK(cparsl_cnode_type(cparsl_cnode_get(r, "retries")) == CPARSL_CNODE_MAP,
          "scalar replaced by map");
    const cparsl_cnode_t *y = cparsl_cnode_get(a, "y");
    CHECK(!strcmp(cparsl_cnode_file(y), "over.yaml") &&
              cparsl_cnode_line(y) == 1 && !strcmp(cparsl_cnode_path(y), "a.y"),
          "merged node keeps its origin");
    CHECK(!strcmp(cparsl_cnode_file(cparsl_cnode_get(r, "keep")), "cfg.yaml"),
          "kept node");
    CHECK(cparsl_cnode_get(r, "new") != NULL, "new key");
    CHECK(cparsl_cnode_len(r) == 5, "five keys");

    cparsl_config_t *dup = cparsl_config_dup(base);
    REQUIRE(dup, "dup");
    CHECK(cparsl_config_merge(base, base, &err) == 0, "self merge");
    cparsl_config_destroy(base);
    r = cparsl_config_root(dup);
    y = cparsl_cnode_get(cparsl_cnode_get(r, "a"), "y");
    CHECK(y && !strcmp(cparsl_cnode_file(y), "over.yaml"), "dup survives");
    cparsl_config_destroy(dup);
}

/* Same tree, same text, same quoted-null-ness: a structural compare. */
static bool same(const cparsl_cnode_t *a, const cparsl_cnode_t *b)
{
    if (cparsl_cnode_type(a) != cparsl_cnode_type(b) ||
        cparsl_cnode_len(a) != cparsl_cnode_len(b))
        return false;
    if (cparsl_cnode_type(a) == CPARSL_CNODE_SCALAR)
        return !strcmp(cparsl_cnode_scalar(a), cparsl_cnode_scalar(b));
    for (size_t i = 0; i < cparsl_cnode_len(a); i++) {
        const cparsl_cnode_t *x = cparsl_cnode_at(a, i);
        const cparsl_cnode_t *y = cparsl_cnode_at(b, i);
        const char *kx = cparsl_cnode_key(x), *ky = cparsl_cnode_key(y);
        if ((kx || ky) && (!kx || !ky || strcmp(kx, ky)))
            return false;
        if (strcmp(cparsl_cnode_path(x), cparsl_cnode_path(y)))
            return false;
        if (!same(x, y))
            return false;
    }
    return true;
}

static void round_trip(const char *yaml)
{
    cparsl_config_t *cfg = load(yaml);
    char *text = cparsl_config_to_yaml(cfg);
    REQUIRE(text, "to_yaml");
    cparsl_config_t *back = NULL;
    cparsl_error_t err = {0};
    int rc = cparsl_config_load_string(&back, text, "emitted", &err);
    CHECK(rc == 0, "reload: %s\n---\n%s", err.text, text);
    if (rc == 0) {
        CHECK(same(cparsl_config_root(cfg), cparsl_config_root(back)),
              "round trip differs:\n%s\n---\n%s", yaml, text);
        /* Nulls stay nulls and quoted look-alikes stay strings. */
        const char *s1, *s2;
        const cparsl_cnode_t *r1 = cparsl_config_root(cfg),
                             *r2 = cparsl_config_root(back);
        for (size_t i = 0; i < cparsl_cnode_len(r1); i++) {
            const char *k = cparsl_cnode_key(cparsl_cnode_at(r1, i));
            if (cparsl_cnode_type(cparsl_cnode_at(r1, i)) !=
                CPARSL_CNODE_SCALAR)
                continue;
            cparsl_cnode_string(r1, k, "<def>", &s1, NULL);
            cparsl_cnode_string(r2, k, "<def>", &s2, NULL);
            CHECK(!strcmp(s1, s2), "key %s: '%s' vs '%s'", k, s1, s2);
        }
        cparsl_config_destroy(back);
    }
    free(text);
    cparsl_config_destroy(cfg);
}

static void test_to_yaml(void)
{
    round_trip("{}");
    round_trip("retries: 2\n"
               "label: \"has: colon\"\n"
               "tilde: '~'\n"
               "empty: ''\n"
               "null1: ~\n"
               "null2:\n"
               "truth: 'true'\n"
               "num: '007'\n"
               "multi: \"line1\\nline2\\n\"\n"
               "block: |+\n  kept\n\n"
               "lead2: \"  indented\\nx\"\n"
               "tab: \"a\\tb\"\n"
               "lead: ' spaced '\n"
               "dash: '- x'\n"
               "hash: 'a #b'\n"
               "unicode: \"\\u00e9t\\u00e9\"\n"
               "ctl: \"\\x01\"\n"
               "'': emptykey\n"
               "'key with: colon': v\n"
               "executors:\n"
               "  - label: htex\n"
               "    env: {A: 1}\n"
               "    list: []\n"
               "    map: {}\n"
               "  - - nested\n"
               "    - ''\n"
               "    -\n");
    /* A long key and a long value must not fold or break. */
    char big[1200];
    memset(big, 'k', 300);
    strcpy(big + 300, ": ");
    memset(big + 302, 'v', 800);
    strcpy(big + 1102, "\n");
    round_trip(big);

    /* Built in code, then emitted and read back. */
    cparsl_config_t *cfg = cparsl_config_create();
    cparsl_error_t err = {0};
    cparsl_config_set(cfg, "executors[0].label", "htex", &err);
    cparsl_config_set(cfg, "executors[0].workers", "4", &err);
    cparsl_config_set(cfg, "run_dir", "run info", &err);
    char *text = cparsl_config_to_yaml(cfg);
    REQUIRE(text, "to_yaml");
    CHECK(HAS(text, "label: htex") && HAS(text, "run_dir: run info"),
          "readable:\n%s", text);
    cparsl_config_t *back = NULL;
    CHECK(cparsl_config_load_string(&back, text, "x", &err) == 0 &&
              same(cparsl_config_root(cfg), cparsl_config_root(back)),
          "code round trip:\n%s", text);
    cparsl_config_destroy(back);
    free(text);
    cparsl_config_destroy(cfg);
}

/* xorshift64*: fixed seed, same bytes on every run and platform. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static void test_random(void)
{
    long iters = 2000;
    const char *scale = getenv("CPARSL_TEST_SCALE");
    if (scale && atol(scale) > 1)
        iters /= atol(scale);
    /*
     * Three kinds of input, in turn: pure noise; YAML-ish bytes that get
     * deeper into libyaml; and a valid config with a few bytes changed,
     * which often still loads and so exercises the tree and the emitter.
     */
    static const char yamlish[] = "ab1:- \n\t[]{},'\"&*!?#|>~.\\%@`";
    static const char seed[] = "retries: 2\n"
                               "executors:\n"
                               "  - label: htex\n"
                               "    env: {A: '1', B: \"x\"}\n"
                               "    list: [1, ~, '']\n"
                               "provider:\n"
                               "  nodes: 4\n";
    int loaded = 0;
    for (long it = 0; it < iters; it++) {
        char buf[257];
        size_t len;
        int mode = (int)(it % 3);
        if (mode == 2) {
            len = sizeof seed - 1;
            memcpy(buf, seed, len);
            for (int k = (int)(rng() % 3) + 1; k > 0; k--)
                buf[rng() % len] = yamlish[rng() % (sizeof yamlish - 1)];
        } else {
            len = rng() % 256;
            for (size_t i = 0; i < len; i++)
                buf[i] = mode == 0 ? (char)(rng() % 255 + 1)
                                   : yamlish[rng() % (sizeof yamlish - 1)];
        }
        buf[len] = '\0';
        cparsl_config_t *cfg = NULL;
        cparsl_error_t err = {0};
        int rc = cparsl_config_load_string(&cfg, buf, "fuzz", &err);
        if (rc == 0) {
            loaded++;
            char *text = cparsl_config_to_yaml(cfg);
            cparsl_config_t *back = NULL;
            if (text &&
                cparsl_config_load_string(&back, text, "re", &err) == 0) {
                CHECK(same(cparsl_config_root(cfg), cparsl_config_root(back)),
                      "fuzz round trip:\n%s\n---\n%s", buf, text);
                cparsl_config_destroy(back);
            } else {
                CHECK(0, "fuzz re-emit failed: %s", err.text);
            }
            free(text);
            cparsl_config_destroy(cfg);
        } else {
            CHECK(cfg == NULL && err.code == rc && err.text[0],
                  "failed load has text");
        }
    }
    CHECK(iters < 30 || loaded > 0, "some inputs loaded");
}

int main(void)
{
    test_load_basic();
    test_load_file();
    test_rejections();
    test_int();
    test_double_bool_string();
    test_check_keys();
    test_set();
    test_merge_dup();
    test_to_yaml();
    test_random();
    return check_done();
}
