/*
 * test_value.c - values, their canonical encoding, and the error helpers.
 *
 * The decoder reads bytes from other processes and the store, so most of
 * this file attacks it: every truncation of valid encodings, hand-made
 * corruptions, and a fixed-seed mutation loop whose successful decodes
 * must re-encode to exactly the bytes they consumed (canonicality).
 * Buffers handed to the decoder are heap blocks of exactly their length
 * so that ASan sees any over-read.  CPARSL_TEST_SCALE divides the loop
 * counts (sanitizer runs use 10).
 */
#include <cparsl/error.h>
#include <cparsl/value.h>

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static int scale = 1;

/* REQUIRE evaluates its condition twice: calls with effects go through
 * here. */
#define REQUIRE_OK(call, ...)                                                  \
    do {                                                                       \
        int require_rc_ = (call);                                              \
        REQUIRE(require_rc_ == 0, __VA_ARGS__);                                \
    } while (0)

/* ---- helpers ------------------------------------------------------------ */

static uint64_t rng_state = UINT64_C(0x9e3779b97f4a7c15);

static uint64_t xorshift64(void)
{
    uint64_t x = rng_state;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x;
}

static size_t rnd(size_t n)
{
    return n ? (size_t)(xorshift64() % n) : 0;
}

static double bits_to_double(uint64_t u)
{
    double d;

    memcpy(&d, &u, sizeof d);
    return d;
}

/* Encode into a fresh heap block of exactly the encoded size. */
static uint8_t *encode_alloc(const cparsl_value_t *v, size_t *len)
{
    size_t need = cparsl_value_encoded_size(v);
    uint8_t *buf;
    int rc;

    *len = 0;
    if (need == 0)
        return NULL;
    buf = malloc(need);
    REQUIRE(buf != NULL, "malloc %zu", need);
    rc = cparsl_value_encode(v, buf, need, len);
    CHECK(rc == 0, "encode rc %d", rc);
    CHECK(*len == need, "encode wrote %zu, size said %zu", *len, need);
    return buf;
}

/* Decode from a heap copy of exactly len bytes (ASan catches over-reads). */
static int decode_exact(const void *bytes, size_t len, cparsl_value_t *out,
                        size_t *used, cparsl_error_t *err)
{
    uint8_t *copy = malloc(len ? len : 1);
    int rc;

    REQUIRE(copy != NULL, "malloc %zu", len);
    if (len)
        memcpy(copy, bytes, len);
    rc = cparsl_value_decode(len ? copy : NULL, len, out, used, err);
    free(copy);
    return rc;
}

static int bytes_eq(const uint8_t *a, size_t alen, const uint8_t *b,
                    size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

/* Every owned STRING/FILE in v (recursively) is NUL-terminated. */
static int owned_strings_terminated(const cparsl_value_t *v)
{
    switch (v->type) {
    case CPARSL_T_STRING:
    case CPARSL_T_FILE:
        return v->u.str.p[v->u.str.len] == '\0';
    case CPARSL_T_LIST:
        for (size_t i = 0; i < v->u.list.n; i++)
            if (!owned_strings_terminated(&v->u.list.p[i]))
                return 0;
        return 1;
    default:
        return 1;
    }
}

/* ---- sample values ------------------------------------------------------ */

static const int64_t ia3[] = {1, -2, INT64_MAX};
static const double da4[] = {0.5, -0.0, INFINITY, NAN};
static const uint8_t raw[] = {0, 1, 0xff, 0x7f, '"', 0};
static cparsl_value_t inner2[3], inner1[4], nested[5];

#define NSAMPLES 32
static cparsl_value_t samples[NSAMPLES];
static size_t nsamples;

static void build_samples(void)
{
    cparsl_value_t *s = samples;
    size_t n = 0;

    inner2[0] = cparsl_double(2.5);
    inner2[1] = cparsl_list(NULL, 0);
    inner2[2] = cparsl_bytes("", 0);
    inner1[0] = cparsl_str("a");
    inner1[1] = cparsl_list(inner2, 3);
    inner1[2] = cparsl_file("file:///tmp/x");
    inner1[3] = cparsl_nil();
    nested[0] = cparsl_int(1);
    nested[1] = cparsl_list(inner1, 4);
    nested[2] = cparsl_int_array(ia3, 3);
    nested[3] = cparsl_double_array(da4, 4);
    nested[4] = cparsl_bool(true);

    s[n++] = cparsl_nil();
    s[n++] = cparsl_bool(true);
    s[n++] = cparsl_bool(false);
    s[n++] = cparsl_int(0);
    s[n++] = cparsl_int(-1);
    s[n++] = cparsl_int(INT64_MIN);
    s[n++] = cparsl_int(INT64_MAX);
    s[n++] = cparsl_double(0.0);
    s[n++] = cparsl_double(-0.0);
    s[n++] = cparsl_double(3.5);
    s[n++] = cparsl_double(-INFINITY);
    s[n++] = cparsl_double(NAN);
    s[n++] = cparsl_double(DBL_MIN / 4); /* subnormal */
    s[n++] = cparsl_str("");
    s[n++] = cparsl_str("hello, world");
    s[n++] = cparsl_str("h\xc3\xa9llo \xe2\x82\xac");
    s[n++] = cparsl_file("file:///tmp/x");
    s[n++] = cparsl_file("relative/path");
    s[n++] = cparsl_bytes(NULL, 0);
    s[n++] = cparsl_bytes(raw, sizeof raw);
    s[n++] = cparsl_int_array(NULL, 0);
    s[n++] = cparsl_int_array(ia3, 3);
    s[n++] = cparsl_double_array(NULL, 0);
    s[n++] = cparsl_double_array(da4, 4);
    s[n++] = cparsl_list(NULL, 0);
    s[n++] = cparsl_list(nested, 5);
    nsamples = n;
}

/* A chain of 'levels' lists, one inside the next, around an int. */
static cparsl_value_t chain[CPARSL_VALUE_MAX_DEPTH + 2];

static cparsl_value_t deep_list(int levels)
{
    chain[levels] = cparsl_int(7);
    for (int i = levels - 1; i >= 0; i--)
        chain[i] = cparsl_list(&chain[i + 1], 1);
    return chain[0];
}

/* ---- error.c ------------------------------------------------------------ */

static void test_error(void)
{
    cparsl_error_t err;
    char big[2 * CPARSL_ERROR_TEXT];
    int rc;

    cparsl_error_clear(&err);
    CHECK(err.code == 0 && err.text[0] == '\0', "clear");

    rc = cparsl_error_set(&err, CPARSL_EAPP, "x=%d", 3);
    CHECK(rc == -CPARSL_EAPP, "positive code returns negative: %d", rc);
    CHECK(err.code == -CPARSL_EAPP, "code stored negative: %d", err.code);
    CHECK(strcmp(err.text, "x=3") == 0, "text '%s'", err.text);

    rc = cparsl_error_set(&err, -ENOMEM, "no room");
    CHECK(rc == -ENOMEM && err.code == -ENOMEM, "negative code kept: %d", rc);
    CHECK(cparsl_error_set(NULL, ETIMEDOUT, "t") == -ETIMEDOUT, "NULL err");

    errno = EAGAIN;
    cparsl_error_set(&err, CPARSL_EDECODE, "%s", "keeps errno");
    CHECK(errno == EAGAIN, "set preserves errno (%d)", errno);
    cparsl_error_prefix(&err, "ctx");
    CHECK(errno == EAGAIN, "prefix preserves errno (%d)", errno);
    CHECK(strcmp(err.text, "ctx: keeps errno") == 0, "prefix '%s'", err.text);
    CHECK(err.code == -CPARSL_EDECODE, "prefix keeps code %d", err.code);

    cparsl_error_prefix(&err, "open %s", "/etc/x");
    CHECK(strcmp(err.text, "open /etc/x: ctx: keeps errno") == 0,
          "prefix fmt '%s'", err.text);
    cparsl_error_prefix(NULL, "nothing");

    cparsl_error_clear(&err);
    cparsl_error_prefix(&err, "only");
    CHECK(strcmp(err.text, "only") == 0, "prefix of empty '%s'", err.text);
    cparsl_error_clear(NULL);

    /* Long messages are cut, not overrun. */
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    cparsl_error_set(&err, EINVAL, "%s", big);
    CHECK(strlen(err.text) == CPARSL_ERROR_TEXT - 1, "long text %zu",
          strlen(err.text));
    cparsl_error_prefix(&err, "%s", big);
    CHECK(strlen(err.text) == CPARSL_ERROR_TEXT - 1, "long prefix %zu",
          strlen(err.text));
    cparsl_error_set(&err, EINVAL, "%s", "short");
    cparsl_error_prefix(&err, "%s", big);
    CHECK(strlen(err.text) == CPARSL_ERROR_TEXT - 1, "long prefix 2 %zu",
          strlen(err.text));

    /* No format: the code's description. */
    cparsl_error_set(&err, CPARSL_ETYPE, NULL);
    CHECK(strcmp(err.text, cparsl_strerror(CPARSL_ETYPE)) == 0, "NULL fmt '%s'",
          err.text);

    for (int c = CPARSL_EBASE + 1; c < CPARSL_ELAST; c++) {
        const char *d = cparsl_strerror(-c), *n = cparsl_errname(-c);

        CHECK(d && *d && strcmp(d, "Unknown error") != 0, "strerror %d", c);
        CHECK(d == cparsl_strerror(c), "strerror sign %d", c);
        CHECK(n && strncmp(n, "CPARSL_E", 8) == 0, "errname %d: %s", c,
              n ? n : "(null)");
        CHECK(n == cparsl_errname(c), "errname sign %d", c);
        for (int o = CPARSL_EBASE + 1; o < c; o++)
            CHECK(strcmp(cparsl_errname(o), n) != 0 &&
                      strcmp(cparsl_strerror(o), d) != 0,
                  "codes %d and %d share text", o, c);
    }
    CHECK(strcmp(cparsl_errname(-CPARSL_EAPP), "CPARSL_EAPP") == 0,
          "EAPP name");
    CHECK(strcmp(cparsl_errname(-CPARSL_EPENDING), "CPARSL_EPENDING") == 0,
          "EPENDING name");
    CHECK(strcmp(cparsl_errname(ETIMEDOUT), "ETIMEDOUT") == 0, "ETIMEDOUT");
    CHECK(strcmp(cparsl_errname(-ENOMEM), "ENOMEM") == 0, "ENOMEM");
    CHECK(strcmp(cparsl_strerror(-ENOMEM), "Cannot allocate memory") == 0,
          "ENOMEM text '%s'", cparsl_strerror(-ENOMEM));
    CHECK(strcmp(cparsl_strerror(ENOENT), cparsl_strerror(-ENOENT)) == 0,
          "errno sign");

    {
        const int odd[] = {0,
                           INT_MIN,
                           INT_MAX,
                           -INT_MAX,
                           CPARSL_EBASE,
                           -CPARSL_EBASE,
                           CPARSL_ELAST,
                           -CPARSL_ELAST,
                           4095,
                           -4095,
                           5000,
                           -999999};

        for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++)
            CHECK(cparsl_strerror(odd[i]) && cparsl_errname(odd[i]),
                  "NULL for %d", odd[i]);
    }
    for (int i = 0; i < 100000 / scale; i++) {
        int c = (int)(uint32_t)xorshift64();

        if (!cparsl_strerror(c) || !cparsl_errname(c)) {
            CHECK(0, "NULL text for %d", c);
            break;
        }
    }
    for (int c = -200; c <= 200; c++)
        CHECK(*cparsl_strerror(c) && *cparsl_errname(c), "empty for %d", c);
}

/* ---- constructors, copy, clear, equal ----------------------------------- */

static void test_basics(void)
{
    cparsl_value_t v, w, *items;
    int64_t *ip;
    double *dp;
    char buf[32];

    v = cparsl_str(NULL);
    CHECK(v.type == CPARSL_T_STRING && v.u.str.len == 0 && v.u.str.p &&
              v.u.str.p[0] == '\0' && !v.owned,
          "str(NULL)");
    v = cparsl_file("file:///a");
    CHECK(v.type == CPARSL_T_FILE && strcmp(v.u.str.p, "file:///a") == 0,
          "file keeps url");

    /* Path. */
    v = cparsl_file("file:///tmp/x");
    CHECK(strcmp(cparsl_value_path(&v), "/tmp/x") == 0, "path 1");
    v = cparsl_file("file://localhost/tmp/x");
    CHECK(strcmp(cparsl_value_path(&v), "/tmp/x") == 0, "path localhost");
    v = cparsl_file("rel/p");
    CHECK(strcmp(cparsl_value_path(&v), "rel/p") == 0, "path rel");
    v = cparsl_file("/abs");
    CHECK(strcmp(cparsl_value_path(&v), "/abs") == 0, "path abs");
    v = cparsl_file("file:/abs");
    CHECK(strcmp(cparsl_value_path(&v), "/abs") == 0, "path file:/");
    v = cparsl_str("file:///tmp/x");
    CHECK(cparsl_value_path(&v) == NULL, "path of string");
    CHECK(cparsl_value_path(NULL) == NULL, "path of NULL");

    /* Type names. */
    for (int t = 0; t < CPARSL_T_COUNT; t++)
        CHECK(strcmp(cparsl_type_name((cparsl_type_t)t), "unknown") != 0,
              "type name %d", t);
    CHECK(strcmp(cparsl_type_name(CPARSL_T_INT_ARRAY), "int_array") == 0,
          "int_array");
    CHECK(strcmp(cparsl_type_name((cparsl_type_t)77), "unknown") == 0,
          "bad type name");

    /* Owning constructors. */
    ip = cparsl_value_new_int_array(&v, 0);
    CHECK(ip != NULL && v.owned && v.u.ia.n == 0, "new_int_array(0)");
    cparsl_value_clear(&v);
    CHECK(v.type == CPARSL_T_NIL && !v.owned, "clear resets");
    ip = cparsl_value_new_int_array(&v, 3);
    REQUIRE(ip, "new_int_array");
    CHECK(ip[0] == 0 && ip[2] == 0, "zeroed");
    ip[1] = 42;
    CHECK(v.u.ia.p[1] == 42, "writable");
    cparsl_value_clear(&v);
    CHECK(cparsl_value_new_int_array(&v, SIZE_MAX / 2) == NULL &&
              v.type == CPARSL_T_NIL,
          "huge array fails to nil");
    dp = cparsl_value_new_double_array(&w, 2);
    REQUIRE(dp, "new_double_array");
    dp[0] = 1.5;
    dp[1] = NAN;

    items = cparsl_value_new_list(&v, 4);
    REQUIRE(items, "new_list");
    CHECK(items[3].type == CPARSL_T_NIL, "items start nil");
    items[0] = cparsl_str("borrowed");
    REQUIRE_OK(cparsl_value_set_string(&items[1], "owned"), "set_string");
    REQUIRE_OK(cparsl_value_printf(&items[2], "n=%d %s", 5, "x"), "printf");
    CHECK(strcmp(items[2].u.str.p, "n=5 x") == 0 && items[2].u.str.len == 5,
          "printf text");
    items[3] = w; /* the list now owns the double array */
    REQUIRE_OK(cparsl_value_set_string(&w, NULL), "set_string(NULL)");
    CHECK(w.u.str.len == 0 && w.u.str.p[0] == '\0' && w.owned,
          "owned empty string");
    cparsl_value_clear(&w);
    CHECK(cparsl_value_format(&v, buf, sizeof buf) > 0, "format list");

    /* Copy is deep and owned; equal compares contents. */
    REQUIRE_OK(cparsl_value_copy(&w, &v), "copy");
    CHECK(w.owned && w.u.list.p != v.u.list.p, "copy owns");
    CHECK(cparsl_value_equal(&v, &w), "copy equal");
    CHECK(w.u.list.p[0].owned && w.u.list.p[0].u.str.p != items[0].u.str.p,
          "borrowed item copied");
    cparsl_value_clear(&v);
    cparsl_value_clear(&w);

    /* Copy of a borrowed value survives the original's storage. */
    {
        char text[] = "mutable";
        cparsl_value_t orig = cparsl_list(nested, 5), b = cparsl_str(text);
        cparsl_value_t c;

        REQUIRE_OK(cparsl_value_copy(&c, &b), "copy str");
        text[0] = 'M';
        CHECK(strcmp(c.u.str.p, "mutable") == 0, "copy independent");
        CHECK(!cparsl_value_equal(&c, &b), "now differ");
        cparsl_value_clear(&c);

        REQUIRE_OK(cparsl_value_copy(&c, &orig), "copy nested");
        CHECK(cparsl_value_equal(&c, &orig), "nested copy equal");
        CHECK(owned_strings_terminated(&c), "copied strings terminated");
        cparsl_value_clear(&c);

        /* dst == src turns a borrowed value into an owned one. */
        c = cparsl_list(nested, 5);
        REQUIRE_OK(cparsl_value_copy(&c, &c), "copy onto itself");
        CHECK(c.owned && c.u.list.p != nested, "self copy owns");
        CHECK(cparsl_value_equal(&c, &orig), "self copy equal");
        cparsl_value_clear(&c);

        /* Clear of a borrowed value frees nothing. */
        c = cparsl_list(nested, 5);
        cparsl_value_clear(&c);
        CHECK(c.type == CPARSL_T_NIL && nested[0].type == CPARSL_T_INT,
              "borrowed clear");
        cparsl_value_clear(NULL);

        /* Too deep to copy. */
        c = deep_list(CPARSL_VALUE_MAX_DEPTH + 1);
        CHECK(cparsl_value_copy(&w, &c) < 0 && w.type == CPARSL_T_NIL,
              "deep copy refused");
        c = deep_list(CPARSL_VALUE_MAX_DEPTH);
        REQUIRE_OK(cparsl_value_copy(&w, &c), "max-depth copy");
        CHECK(cparsl_value_equal(&w, &c), "max-depth equal");
        cparsl_value_clear(&w);
    }

    /* Equality details. */
    {
        cparsl_value_t a = cparsl_double(0.0), b = cparsl_double(-0.0);
        cparsl_value_t n1 =
            cparsl_double(bits_to_double(UINT64_C(0x7ff8000000000001)));
        cparsl_value_t n2 =
            cparsl_double(bits_to_double(UINT64_C(0xfff0000000000010)));
        cparsl_value_t s = cparsl_str("x"), f = cparsl_file("x");
        cparsl_value_t e1 = cparsl_int_array(NULL, 0);
        int64_t one = 1;
        cparsl_value_t e2 = cparsl_int_array(&one, 0);

        CHECK(!cparsl_value_equal(&a, &b), "0.0 != -0.0");
        CHECK(cparsl_value_equal(&n1, &n2), "NaN == NaN");
        CHECK(!cparsl_value_equal(&s, &f), "string != file");
        CHECK(cparsl_value_equal(&e1, &e2), "empty arrays equal");
        CHECK(cparsl_value_equal(NULL, NULL) && !cparsl_value_equal(&a, NULL),
              "NULL equality");
        for (size_t i = 0; i < nsamples; i++)
            for (size_t j = 0; j < nsamples; j++)
                CHECK(cparsl_value_equal(&samples[i], &samples[j]) == (i == j),
                      "samples %zu and %zu", i, j);
    }
}

/* ---- format ------------------------------------------------------------- */

static void check_format(const cparsl_value_t *v, const char *want)
{
    char buf[256];
    size_t n = cparsl_value_format(v, buf, sizeof buf);

    CHECK(strcmp(buf, want) == 0 && n == strlen(want),
          "format: got '%s' (%zu), want '%s'", buf, n, want);
}

static void test_format(void)
{
    static const int64_t i3[] = {1, 2, 3};
    static const int64_t i5[] = {1, 2, 3, 4, 5};
    static const double d3[] = {0.1, 3.0, -0.0};
    cparsl_value_t items[3], v;
    char buf[8];
    size_t n;

    check_format(&(cparsl_value_t){.type = CPARSL_T_NIL}, "nil");
    v = cparsl_bool(true);
    check_format(&v, "true");
    v = cparsl_int(42);
    check_format(&v, "42");
    v = cparsl_int(INT64_MIN);
    check_format(&v, "-9223372036854775808");
    v = cparsl_double(3.5);
    check_format(&v, "3.5");
    v = cparsl_double(0.1);
    check_format(&v, "0.1");
    v = cparsl_double(0.1 + 0.2);
    check_format(&v, "0.30000000000000004");
    v = cparsl_double(1.0 / 3);
    check_format(&v, "0.3333333333333333");
    v = cparsl_double(2.0);
    check_format(&v, "2.0");
    v = cparsl_double(NAN);
    check_format(&v, "nan");
    v = cparsl_double(-INFINITY);
    check_format(&v, "-inf");
    v = cparsl_str("text");
    check_format(&v, "\"text\"");
    v = cparsl_str("a\"b\\\n\x01");
    check_format(&v, "\"a\\\"b\\\\\\n\\x01\"");
    v = cparsl_int_array(i3, 3);
    check_format(&v, "[1, 2, 3]");
    v = cparsl_int_array(NULL, 0);
    check_format(&v, "[]");
    v = cparsl_double_array(d3, 3);
    check_format(&v, "[0.1, 3.0, -0.0]");
    v = cparsl_file("data/in.txt");
    check_format(&v, "file:data/in.txt");
    v = cparsl_file("file:///tmp/x");
    check_format(&v, "file:///tmp/x");
    v = cparsl_bytes("ab\0\xff", 4);
    check_format(&v, "b\"ab\\x00\\xff\" (4 bytes)");
    v = cparsl_bytes("0123456789abcdef0123456789abcdefXYZ", 35);
    check_format(&v, "b\"0123456789abcdef0123456789abcdef...\" (35 bytes)");
    items[0] = cparsl_int(1);
    items[1] = cparsl_str("a");
    items[2] = cparsl_list(items, 0);
    v = cparsl_list(items, 3);
    check_format(&v, "[1, \"a\", []]");
    v = deep_list(CPARSL_VALUE_MAX_DEPTH + 1);
    n = cparsl_value_format(&v, NULL, 0);
    CHECK(n == 2 * CPARSL_VALUE_MAX_DEPTH + 5, "deep format length %zu", n);

    /* Truncation: "..." at the end, the wanted length returned. */
    v = cparsl_int_array(i5, 5);
    n = cparsl_value_format(&v, buf, sizeof buf);
    CHECK(n == 15 && strcmp(buf, "[1, ...") == 0, "truncated '%s' %zu", buf, n);
    n = cparsl_value_format(&v, NULL, 0);
    CHECK(n == 15, "cap 0 gives length %zu", n);
    buf[0] = 'z';
    n = cparsl_value_format(&v, buf, 1);
    CHECK(n == 15 && buf[0] == '\0', "cap 1");
    n = cparsl_value_format(&v, buf, 3);
    CHECK(n == 15 && strcmp(buf, "[1") == 0, "cap 3 '%s'", buf);
    n = cparsl_value_format(&v, buf, 4);
    CHECK(strcmp(buf, "...") == 0, "cap 4 '%s'", buf);
    {
        char exact[16];

        n = cparsl_value_format(&v, exact, sizeof exact);
        CHECK(n == 15 && strcmp(exact, "[1, 2, 3, 4, 5]") == 0,
              "exact fit '%s'", exact);
    }
}

/* ---- encoding ----------------------------------------------------------- */

static void check_bytes(const cparsl_value_t *v, const uint8_t *want,
                        size_t wlen, const char *what)
{
    size_t len;
    uint8_t *got = encode_alloc(v, &len);

    CHECK(got && bytes_eq(got, len, want, wlen), "bytes of %s", what);
    free(got);
}

static void test_canonical_bytes(void)
{
    static const uint8_t nil[] = {0};
    static const uint8_t t[] = {1, 1};
    static const uint8_t one[] = {2, 1, 0, 0, 0, 0, 0, 0, 0};
    static const uint8_t m1[] = {2,    0xff, 0xff, 0xff, 0xff,
                                 0xff, 0xff, 0xff, 0xff};
    static const uint8_t d1[] = {3, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f};
    static const uint8_t dnan[] = {3, 0, 0, 0, 0, 0, 0, 0xf8, 0x7f};
    static const uint8_t hi[] = {4, 2, 0, 0, 0, 0, 0, 0, 0, 'h', 'i'};
    static const uint8_t fhi[] = {8, 2, 0, 0, 0, 0, 0, 0, 0, 'h', 'i'};
    static const uint8_t empty_ia[] = {6, 0, 0, 0, 0, 0, 0, 0, 0};
    /* clang-format off */
    static const uint8_t l1a[] = {
        9, 2, 0, 0, 0, 0, 0, 0, 0,
        2, 1, 0, 0, 0, 0, 0, 0, 0,
        4, 1, 0, 0, 0, 0, 0, 0, 0, 'a'};
    static const uint8_t da[] = {
        7, 2, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0x80,
        0, 0, 0, 0, 0, 0, 0xf8, 0x7f};
    /* clang-format on */
    const uint64_t nans[] = {
        UINT64_C(0x7ff8000000000000), UINT64_C(0x7ff8000000000001),
        UINT64_C(0xfff8000000000000), UINT64_C(0x7ff0000000000001),
        UINT64_C(0xffffffffffffffff), UINT64_C(0x7fffffffffffffff)};
    cparsl_value_t items[2], v;
    double dd[2];
    size_t len;

    v = cparsl_nil();
    check_bytes(&v, nil, sizeof nil, "nil");
    v = cparsl_bool(true);
    check_bytes(&v, t, sizeof t, "true");
    v = cparsl_int(1);
    check_bytes(&v, one, sizeof one, "int 1");
    v = cparsl_int(-1);
    check_bytes(&v, m1, sizeof m1, "int -1");
    v = cparsl_double(1.0);
    check_bytes(&v, d1, sizeof d1, "double 1.0");
    v = cparsl_str("hi");
    check_bytes(&v, hi, sizeof hi, "\"hi\"");
    v = cparsl_file("hi");
    check_bytes(&v, fhi, sizeof fhi, "file hi");
    v = cparsl_int_array(NULL, 0);
    check_bytes(&v, empty_ia, sizeof empty_ia, "int_array []");
    items[0] = cparsl_int(1);
    items[1] = cparsl_str("a");
    v = cparsl_list(items, 2);
    check_bytes(&v, l1a, sizeof l1a, "[1, \"a\"]");

    /* Every NaN payload and sign encodes as the one canonical NaN. */
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        v = cparsl_double(bits_to_double(nans[i]));
        check_bytes(&v, dnan, sizeof dnan, "NaN");
    }
    dd[0] = -0.0;
    dd[1] = bits_to_double(UINT64_C(0xfff4000000000abc));
    v = cparsl_double_array(dd, 2);
    check_bytes(&v, da, sizeof da, "double_array [-0.0, NaN]");

    /* Equal values, built differently, give identical bytes. */
    {
        cparsl_value_t a = cparsl_list(nested, 5), b;
        uint8_t *ea, *eb;
        size_t la, lb;

        REQUIRE_OK(cparsl_value_copy(&b, &a), "copy");
        ea = encode_alloc(&a, &la);
        eb = encode_alloc(&b, &lb);
        CHECK(ea && eb && bytes_eq(ea, la, eb, lb), "copy encodes same");
        free(ea);
        free(eb);
        cparsl_value_clear(&b);
    }

    /* -ENOSPC reports the size needed and writes nothing past cap. */
    {
        cparsl_value_t a = cparsl_list(nested, 5);
        size_t need = cparsl_value_encoded_size(&a);
        uint8_t *buf = malloc(need + 8);
        int rc;

        REQUIRE(buf && need > 0, "size");
        for (size_t cap = 0; cap < need; cap++) {
            memset(buf, 0xaa, need + 8);
            len = 0;
            rc = cparsl_value_encode(&a, buf, cap, &len);
            CHECK(rc == -ENOSPC && len == need, "cap %zu: rc %d len %zu", cap,
                  rc, len);
            CHECK(buf[cap] == 0xaa && buf[need - 1] == 0xaa,
                  "cap %zu: wrote anyway", cap);
        }
        rc = cparsl_value_encode(&a, NULL, 0, &len);
        CHECK(rc == -ENOSPC && len == need, "NULL buf: rc %d", rc);
        memset(buf, 0xaa, need + 8);
        rc = cparsl_value_encode(&a, buf, need + 8, &len);
        CHECK(rc == 0 && len == need && buf[need] == 0xaa,
              "roomy buffer: rc %d len %zu", rc, len);
        free(buf);
    }

    /* Values that cannot be encoded. */
    {
        cparsl_value_t bad[6];
        uint8_t buf[64];
        int rc;

        bad[0] = cparsl_str("ab");
        bad[0].u.str.p = "a\0b";
        bad[0].u.str.len = 3; /* embedded NUL */
        bad[1] = bad[0];
        bad[1].type = CPARSL_T_FILE;
        bad[2] = cparsl_bytes(NULL, 5);
        bad[3] = cparsl_int_array(NULL, 2);
        bad[4] = (cparsl_value_t){.type = (cparsl_type_t)42};
        bad[5] = deep_list(CPARSL_VALUE_MAX_DEPTH + 1);
        for (int i = 0; i < 6; i++) {
            len = 1;
            rc = cparsl_value_encode(&bad[i], buf, sizeof buf, &len);
            CHECK(rc == -EINVAL && cparsl_value_encoded_size(&bad[i]) == 0,
                  "bad value %d: rc %d", i, rc);
        }
        items[0] = bad[0];
        v = cparsl_list(items, 1);
        CHECK(cparsl_value_encoded_size(&v) == 0, "bad item in list");
        v = cparsl_bytes("a\0b", 3);
        CHECK(cparsl_value_encoded_size(&v) == 12, "NUL fine in bytes");
        CHECK(cparsl_value_encoded_size(NULL) == 0, "NULL value");
    }

    /* Exactly the deepest allowed nesting round-trips. */
    {
        cparsl_value_t d = deep_list(CPARSL_VALUE_MAX_DEPTH), out;
        cparsl_error_t err;
        uint8_t *e = encode_alloc(&d, &len);
        size_t used;
        int rc;

        REQUIRE(e, "max depth encodes");
        CHECK(len == CPARSL_VALUE_MAX_DEPTH * 9 + 9, "depth len %zu", len);
        rc = decode_exact(e, len, &out, &used, &err);
        CHECK(rc == 0 && used == len && cparsl_value_equal(&out, &d),
              "max depth decodes: %d %s", rc, rc ? err.text : "");
        cparsl_value_clear(&out);
        free(e);
    }
}

static void test_round_trips(void)
{
    for (size_t i = 0; i < nsamples; i++) {
        const cparsl_value_t *v = &samples[i];
        cparsl_value_t out, again;
        cparsl_error_t err;
        uint8_t *e, *e2;
        size_t len, len2, used;
        int rc;

        e = encode_alloc(v, &len);
        REQUIRE(e, "sample %zu encodes", i);
        rc = decode_exact(e, len, &out, &used, &err);
        CHECK(rc == 0, "sample %zu decodes: %s", i, err.text);
        if (rc != 0) {
            free(e);
            continue;
        }
        CHECK(used == len, "sample %zu used %zu of %zu", i, used, len);
        CHECK(out.owned, "sample %zu owned", i);
        CHECK(out.type == v->type, "sample %zu type", i);
        CHECK(cparsl_value_equal(&out, v), "sample %zu equal", i);
        CHECK(owned_strings_terminated(&out), "sample %zu NUL", i);
        e2 = encode_alloc(&out, &len2);
        CHECK(e2 && bytes_eq(e, len, e2, len2), "sample %zu re-encodes", i);

        /* Decoding is a deep copy: the input may go away. */
        memset(e, 0, len);
        CHECK(cparsl_value_equal(&out, v), "sample %zu independent", i);
        REQUIRE_OK(cparsl_value_copy(&again, &out), "copy");
        CHECK(cparsl_value_equal(&again, &out), "copy of decoded");
        cparsl_value_clear(&again);
        cparsl_value_clear(&out);
        CHECK(out.type == CPARSL_T_NIL, "cleared");
        free(e);
        free(e2);
    }

    /* Trailing bytes are the caller's: decode reads one value. */
    {
        const uint8_t two[] = {2, 5, 0, 0, 0, 0, 0, 0, 0, 1, 1};
        cparsl_value_t out;
        size_t used;
        int rc = decode_exact(two, sizeof two, &out, &used, NULL);

        CHECK(rc == 0 && used == 9 && out.u.i == 5, "first of two");
        rc = decode_exact(two + used, sizeof two - used, &out, &used, NULL);
        CHECK(rc == 0 && used == 2 && out.u.b, "second of two");
        rc = decode_exact(two, sizeof two, &out, NULL, NULL);
        CHECK(rc == 0, "used may be NULL");
    }
}

/* Decoding must fail with EDECODE, leave nil, and explain. */
static void expect_reject(const uint8_t *b, size_t n, const char *what,
                          const char *needle)
{
    cparsl_value_t out = cparsl_int(99);
    cparsl_error_t err;
    size_t used = 77;
    int rc;

    cparsl_error_clear(&err);
    rc = decode_exact(b, n, &out, &used, &err);
    CHECK(rc == -CPARSL_EDECODE, "%s: rc %d", what, rc);
    CHECK(out.type == CPARSL_T_NIL && used == 0, "%s: out not reset", what);
    CHECK(err.code == -CPARSL_EDECODE && err.text[0], "%s: err", what);
    if (needle)
        CHECK(strstr(err.text, needle) != NULL, "%s: '%s' lacks '%s'", what,
              err.text, needle);
    if (rc == 0)
        cparsl_value_clear(&out);
}

static void test_truncation(void)
{
    size_t prefixes = 0;

    for (size_t i = 0; i < nsamples; i++) {
        size_t len;
        uint8_t *e = encode_alloc(&samples[i], &len);

        REQUIRE(e, "encode");
        for (size_t cut = 0; cut < len; cut++, prefixes++)
            expect_reject(e, cut, "truncated prefix", "truncated");
        free(e);
    }
    CHECK(prefixes > 300, "only %zu prefixes", prefixes);
}

static void test_corruption(void)
{
    uint8_t b[64];
    cparsl_error_t err;
    cparsl_value_t out;
    int rc;

    b[0] = 10;
    expect_reject(b, 1, "tag 10", "unknown type tag 10 at offset 0");
    b[0] = 0xff;
    expect_reject(b, 9, "tag 255", "unknown type tag");
    b[0] = 1;
    b[1] = 2;
    expect_reject(b, 2, "bool 2", "bool");
    b[1] = 0xff;
    expect_reject(b, 2, "bool ff", "bool");

    /* The reason and offset, word for word. */
    memset(b, 0, sizeof b);
    b[0] = CPARSL_T_STRING;
    b[1] = 100;
    memcpy(b + 9, "abc", 3);
    rc = decode_exact(b, 12, &out, NULL, &err);
    CHECK(rc == -CPARSL_EDECODE &&
              strcmp(err.text, "truncated string at offset 9: length 100 "
                               "but 3 bytes left") == 0,
          "message '%s'", err.text);

    /* Huge lengths and counts, each with some bytes after them. */
    for (int t = CPARSL_T_STRING; t <= CPARSL_T_LIST; t++) {
        memset(b, 0x41, sizeof b);
        b[0] = (uint8_t)t;
        memset(b + 1, 0xff, 8);
        expect_reject(b, sizeof b, "length 2^64-1", "truncated");
        memset(b + 1, 0, 8);
        b[8] = 0x80; /* 2^63 */
        expect_reject(b, sizeof b, "length 2^63", "truncated");
    }
    /* count * 8 wraps to 8 when count = 2^61 + 1. */
    for (int t = CPARSL_T_INT_ARRAY; t <= CPARSL_T_DOUBLE_ARRAY; t++) {
        memset(b, 0, sizeof b);
        b[0] = (uint8_t)t;
        b[1] = 1;
        b[8] = 0x20;
        expect_reject(b, 17, "count*8 overflow", "truncated");
        /* count 2 with 15 bytes: one short. */
        memset(b + 1, 0, 8);
        b[1] = 2;
        expect_reject(b, 9 + 15, "array one byte short", "truncated");
    }

    /* NUL inside strings and file names; fine inside bytes. */
    {
        const uint8_t s[] = {4, 3, 0, 0, 0, 0, 0, 0, 0, 'a', 0, 'b'};
        uint8_t f[sizeof s];
        size_t used;

        expect_reject(s, sizeof s, "NUL in string", "NUL inside string");
        memcpy(f, s, sizeof s);
        f[0] = CPARSL_T_FILE;
        expect_reject(f, sizeof f, "NUL in file", "NUL inside file");
        f[0] = CPARSL_T_BYTES;
        rc = decode_exact(f, sizeof f, &out, &used, &err);
        CHECK(rc == 0 && out.u.str.len == 3 && out.u.str.p[1] == 0,
              "NUL in bytes ok");
        cparsl_value_clear(&out);
    }

    /* Non-canonical NaN and a NaN inside an array. */
    {
        const uint8_t d[] = {3, 1, 0, 0, 0, 0, 0, 0xf8, 0x7f};
        const uint8_t da[] = {7, 1, 0, 0, 0, 0, 0,    0,   0,
                              0, 0, 0, 0, 0, 0, 0xf8, 0xff};
        const uint8_t inf[] = {3, 0, 0, 0, 0, 0, 0, 0xf0, 0x7f};

        expect_reject(d, sizeof d, "NaN payload", "NaN");
        expect_reject(da, sizeof da, "negative NaN in array", "NaN");
        rc = decode_exact(inf, sizeof inf, &out, NULL, &err);
        CHECK(rc == 0 && isinf(out.u.d), "inf decodes");
    }

    /* A list whose items run out, and a bad item deep inside. */
    {
        uint8_t l[] = {9, 3, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2};

        expect_reject(l, sizeof l, "list items run out", "truncated int");
        l[11] = 5;
        expect_reject(l, sizeof l, "list bad item", "bool");
        l[11] = 1;
        l[12] = 0;
        rc = decode_exact(l, sizeof l, &out, NULL, &err);
        CHECK(rc == 0 && out.u.list.n == 3, "list ok: %s", err.text);
        cparsl_value_clear(&out);
    }

    /* Nesting one past the limit, built directly as bytes. */
    {
        size_t levels = CPARSL_VALUE_MAX_DEPTH + 1, n = levels * 9 + 1;
        uint8_t *d = calloc(n, 1);

        REQUIRE(d, "calloc");
        for (size_t i = 0; i < levels; i++) {
            d[i * 9] = CPARSL_T_LIST;
            d[i * 9 + 1] = 1;
        }
        expect_reject(d, n, "too deep", "deeper than");
        /* Drop the outermost list: exactly at the limit, accepted. */
        rc = decode_exact(d + 9, n - 9, &out, NULL, &err);
        CHECK(rc == 0, "at the limit: %s", err.text);
        cparsl_value_clear(&out);
        free(d);
    }

    /* API misuse. */
    CHECK(cparsl_value_decode(b, 1, NULL, NULL, NULL) == -EINVAL, "NULL out");
    CHECK(cparsl_value_decode(NULL, 5, &out, NULL, NULL) == -EINVAL,
          "NULL buf");
    CHECK(cparsl_value_decode(NULL, 0, &out, NULL, &err) == -CPARSL_EDECODE,
          "empty input");
}

/* ---- mutation loop ------------------------------------------------------ */

static const uint64_t interesting[] = {
    0,
    1,
    2,
    7,
    8,
    9,
    0x7f,
    0xff,
    UINT64_C(0x100000000),
    UINT64_C(0x2000000000000001),
    UINT64_C(0x7fffffffffffffff),
    UINT64_C(0x8000000000000000),
    UINT64_C(0xffffffffffffffff),
    UINT64_C(0x7ff8000000000001),
};

static size_t mutate(uint8_t *b, size_t len, size_t cap)
{
    size_t pos = rnd(len + 1);

    switch (rnd(6)) {
    case 0: /* flip a bit */
        if (len)
            b[rnd(len)] ^= (uint8_t)(1u << rnd(8));
        break;
    case 1: /* set a byte */
        if (len)
            b[rnd(len)] = (uint8_t)xorshift64();
        break;
    case 2: /* insert a byte */
        if (len < cap) {
            memmove(b + pos + 1, b + pos, len - pos);
            b[pos] = (uint8_t)rnd(12); /* tags and small values */
            len++;
        }
        break;
    case 3: /* delete a byte */
        if (pos < len) {
            memmove(b + pos, b + pos + 1, len - pos - 1);
            len--;
        }
        break;
    case 4: /* overwrite a word with an edge value */
        if (len >= 8) {
            uint64_t x =
                interesting[rnd(sizeof interesting / sizeof interesting[0])];
            pos = rnd(len - 7);
            for (int i = 0; i < 8; i++)
                b[pos + i] = (uint8_t)(x >> (8 * i));
        }
        break;
    default: /* truncate */
        len = rnd(len + 1);
        break;
    }
    return len;
}

static void test_mutations(void)
{
    int iters = 20000 / scale, ok = 0, bad_canon = 0, bad_rc = 0;
    uint8_t *enc[NSAMPLES];
    size_t elen[NSAMPLES];

    rng_state = UINT64_C(0x0123456789abcdef);
    for (size_t i = 0; i < nsamples; i++) {
        enc[i] = encode_alloc(&samples[i], &elen[i]);
        REQUIRE(enc[i], "encode sample %zu", i);
    }
    for (int it = 0; it < iters; it++) {
        size_t s = rnd(nsamples), cap = elen[s] + 16, len = elen[s], used;
        uint8_t *work = malloc(cap), *exact, *re;
        cparsl_value_t out;
        cparsl_error_t err;
        size_t relen;
        int rc;

        REQUIRE(work, "malloc");
        memcpy(work, enc[s], len);
        for (size_t m = 1 + rnd(4); m > 0; m--)
            len = mutate(work, len, cap);
        /* An exact-size block, so ASan flags any read past the end. */
        exact = malloc(len ? len : 1);
        REQUIRE(exact, "malloc");
        if (len)
            memcpy(exact, work, len);
        rc = cparsl_value_decode(exact, len, &out, &used, &err);
        if (rc == 0) {
            ok++;
            re = encode_alloc(&out, &relen);
            if (!re || used > len || !bytes_eq(re, relen, exact, used))
                bad_canon++;
            if (!cparsl_value_equal(&out, &out))
                bad_canon++;
            free(re);
            cparsl_value_clear(&out);
        } else if (rc != -CPARSL_EDECODE || out.type != CPARSL_T_NIL ||
                   err.code != rc) {
            bad_rc++;
        }
        free(exact);
        free(work);
    }
    CHECK(bad_canon == 0, "%d decodes did not re-encode to their input",
          bad_canon);
    CHECK(bad_rc == 0, "%d failures with the wrong code", bad_rc);
    /* Both paths must be exercised for the loop to mean anything. */
    CHECK(ok > iters / 20 && ok < iters, "%d of %d mutants decoded", ok, iters);
    for (size_t i = 0; i < nsamples; i++)
        free(enc[i]);
}

int main(void)
{
    const char *sc = getenv("CPARSL_TEST_SCALE");

    if (sc && atoi(sc) > 1)
        scale = atoi(sc);
    build_samples();
    test_error();
    test_basics();
    test_format();
    test_canonical_bytes();
    test_round_trips();
    test_truncation();
    test_corruption();
    test_mutations();
    return check_done();
}
