/*
 * value.c - cparsl_value_t: constructors, deep copy and clear, equality,
 * human-readable formatting, and the canonical encoding that
 * docs/encoding.md specifies.
 *
 * The encoding is the identity of a value (memoization keys hash it), so
 * the encoder writes exactly one byte string per value and the decoder
 * accepts only that string: it rejects NaN payloads other than the
 * canonical one, bool bytes other than 0 and 1, and NULs inside strings,
 * so that whatever decodes re-encodes to the same bytes.  The decoder
 * also treats every length as hostile: a length is checked against the
 * bytes left before anything is allocated, so a 20-byte message cannot
 * make it allocate more than about 20 bytes' worth of payload.
 */
#include <cparsl/value.h>

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The one NaN the encoding has: quiet, positive, zero payload. */
#define CANON_NAN UINT64_C(0x7ff8000000000000)
#define EXP_MASK  UINT64_C(0x7ff0000000000000)
#define MANT_MASK UINT64_C(0x000fffffffffffff)

/* Tag byte plus a u64 length or count. */
#define HDR 9

/* ---- doubles and little-endian words ------------------------------------ */

static uint64_t double_bits(double d)
{
    uint64_t u;

    if (isnan(d))
        return CANON_NAN;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double bits_double(uint64_t u)
{
    double d;

    memcpy(&d, &u, sizeof d);
    return d;
}

static int bits_are_nan(uint64_t u)
{
    return (u & EXP_MASK) == EXP_MASK && (u & MANT_MASK) != 0;
}

/* Byte by byte: no alignment needed and no dependence on host order. */
static void put_u64(uint8_t *p, uint64_t x)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(x >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t x = 0;

    for (int i = 0; i < 8; i++)
        x |= (uint64_t)p[i] << (8 * i);
    return x;
}

/* ---- borrowing constructors --------------------------------------------- */

cparsl_value_t cparsl_str(const char *s)
{
    cparsl_value_t v = {.type = CPARSL_T_STRING};

    if (!s)
        s = "";
    v.u.str.p = s;
    v.u.str.len = strlen(s);
    return v;
}

cparsl_value_t cparsl_bytes(const void *p, size_t len)
{
    cparsl_value_t v = {.type = CPARSL_T_BYTES};

    v.u.str.p = p;
    v.u.str.len = len;
    return v;
}

cparsl_value_t cparsl_int_array(const int64_t *p, size_t n)
{
    cparsl_value_t v = {.type = CPARSL_T_INT_ARRAY};

    v.u.ia.p = p;
    v.u.ia.n = n;
    return v;
}

cparsl_value_t cparsl_double_array(const double *p, size_t n)
{
    cparsl_value_t v = {.type = CPARSL_T_DOUBLE_ARRAY};

    v.u.da.p = p;
    v.u.da.n = n;
    return v;
}

cparsl_value_t cparsl_list(const cparsl_value_t *items, size_t n)
{
    cparsl_value_t v = {.type = CPARSL_T_LIST};

    v.u.list.p = items;
    v.u.list.n = n;
    return v;
}

cparsl_value_t cparsl_file(const char *url)
{
    cparsl_value_t v = cparsl_str(url);

    v.type = CPARSL_T_FILE;
    return v;
}

/* ---- owning constructors ------------------------------------------------ */

/*
 * Zeroed room for n elements.  At least one element is allocated so that
 * n == 0 still returns non-NULL and NULL can only mean ENOMEM.
 */
static void *alloc_elems(size_t n, size_t size)
{
    if (n > SIZE_MAX / size)
        return NULL;
    return calloc(n ? n : 1, size);
}

int64_t *cparsl_value_new_int_array(cparsl_value_t *v, size_t n)
{
    int64_t *p;

    if (!v)
        return NULL;
    *v = cparsl_nil();
    p = alloc_elems(n, sizeof *p);
    if (!p)
        return NULL;
    *v = cparsl_int_array(p, n);
    v->owned = 1;
    return p;
}

double *cparsl_value_new_double_array(cparsl_value_t *v, size_t n)
{
    double *p;

    if (!v)
        return NULL;
    *v = cparsl_nil();
    p = alloc_elems(n, sizeof *p);
    if (!p)
        return NULL;
    *v = cparsl_double_array(p, n);
    v->owned = 1;
    return p;
}

/* Items start as nil (all-zero bytes are CPARSL_T_NIL, borrowed). */
cparsl_value_t *cparsl_value_new_list(cparsl_value_t *v, size_t n)
{
    cparsl_value_t *p;

    if (!v)
        return NULL;
    *v = cparsl_nil();
    p = alloc_elems(n, sizeof *p);
    if (!p)
        return NULL;
    *v = cparsl_list(p, n);
    v->owned = 1;
    return p;
}

/*
 * An owned STRING, FILE or BYTES holding a copy of p[0..len), always
 * followed by a NUL so that owned strings can be passed to C calls as is.
 */
static int own_chars(cparsl_value_t *v, cparsl_type_t type, const void *p,
                     size_t len)
{
    char *s;

    *v = cparsl_nil();
    if (len == SIZE_MAX)
        return -ENOMEM;
    s = malloc(len + 1);
    if (!s)
        return -ENOMEM;
    if (len)
        memcpy(s, p, len);
    s[len] = '\0';
    v->type = type;
    v->owned = 1;
    v->u.str.p = s;
    v->u.str.len = len;
    return 0;
}

int cparsl_value_set_string(cparsl_value_t *v, const char *s)
{
    if (!v)
        return -EINVAL;
    if (!s)
        s = "";
    return own_chars(v, CPARSL_T_STRING, s, strlen(s));
}

int cparsl_value_printf(cparsl_value_t *v, const char *fmt, ...)
{
    va_list ap, ap2;
    char *s;
    int n;

    if (!v)
        return -EINVAL;
    *v = cparsl_nil();
    va_start(ap, fmt);
    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        va_end(ap2);
        return -EINVAL;
    }
    s = malloc((size_t)n + 1);
    if (!s) {
        va_end(ap2);
        return -ENOMEM;
    }
    vsnprintf(s, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    v->type = CPARSL_T_STRING;
    v->owned = 1;
    v->u.str.p = s;
    /* strlen, not n: a "%c" of 0 must not leave a NUL inside the string. */
    v->u.str.len = strlen(s);
    return 0;
}

/* ---- copy, clear, equality ---------------------------------------------- */

/*
 * Copy and equality stop at CPARSL_VALUE_MAX_DEPTH: nothing deeper can be
 * encoded anyway, and the bound keeps a list that a caller made contain
 * itself from overflowing the stack.
 */
static int copy_rec(cparsl_value_t *dst, const cparsl_value_t *src, int depth)
{
    const cparsl_value_t *from;
    cparsl_value_t *items;
    size_t n;
    int rc;

    *dst = cparsl_nil();
    switch (src->type) {
    case CPARSL_T_NIL:
    case CPARSL_T_BOOL:
    case CPARSL_T_INT:
    case CPARSL_T_DOUBLE:
        *dst = *src;
        dst->owned = 1;
        return 0;
    case CPARSL_T_STRING:
    case CPARSL_T_FILE:
    case CPARSL_T_BYTES:
        if (!src->u.str.p && src->u.str.len)
            return -EINVAL;
        return own_chars(dst, src->type, src->u.str.p, src->u.str.len);
    case CPARSL_T_INT_ARRAY:
        n = src->u.ia.n;
        if (!src->u.ia.p && n)
            return -EINVAL;
        if (!cparsl_value_new_int_array(dst, n))
            return -ENOMEM;
        if (n)
            memcpy((int64_t *)dst->u.ia.p, src->u.ia.p, n * sizeof(int64_t));
        return 0;
    case CPARSL_T_DOUBLE_ARRAY:
        n = src->u.da.n;
        if (!src->u.da.p && n)
            return -EINVAL;
        if (!cparsl_value_new_double_array(dst, n))
            return -ENOMEM;
        if (n)
            memcpy((double *)dst->u.da.p, src->u.da.p, n * sizeof(double));
        return 0;
    case CPARSL_T_LIST:
        n = src->u.list.n;
        from = src->u.list.p;
        if ((!from && n) || depth >= CPARSL_VALUE_MAX_DEPTH)
            return -EINVAL;
        items = cparsl_value_new_list(dst, n);
        if (!items)
            return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
            rc = copy_rec(&items[i], &from[i], depth + 1);
            if (rc < 0) {
                /* Items not reached yet are still nil. */
                cparsl_value_clear(dst);
                return rc;
            }
        }
        return 0;
    default:
        return -EINVAL;
    }
}

int cparsl_value_copy(cparsl_value_t *dst, const cparsl_value_t *src)
{
    cparsl_value_t tmp;
    int rc;

    if (!dst || !src)
        return -EINVAL;
    /* Through tmp, so that dst == src works. */
    rc = copy_rec(&tmp, src, 0);
    *dst = tmp;
    return rc;
}

void cparsl_value_clear(cparsl_value_t *v)
{
    cparsl_value_t *items;

    if (!v)
        return;
    if (v->owned) {
        /* Owned payloads came from our allocations: casting const off is
         * safe. */
        switch (v->type) {
        case CPARSL_T_STRING:
        case CPARSL_T_FILE:
        case CPARSL_T_BYTES:
            free((void *)v->u.str.p);
            break;
        case CPARSL_T_INT_ARRAY:
            free((void *)v->u.ia.p);
            break;
        case CPARSL_T_DOUBLE_ARRAY:
            free((void *)v->u.da.p);
            break;
        case CPARSL_T_LIST:
            items = (cparsl_value_t *)v->u.list.p;
            for (size_t i = 0; items && i < v->u.list.n; i++)
                cparsl_value_clear(&items[i]);
            free(items);
            break;
        default:
            break;
        }
    }
    *v = cparsl_nil();
}

static bool same_bytes(const void *a, const void *b, size_t n)
{
    /* memcmp must not see NULL, even for n == 0. */
    if (n == 0 || a == b)
        return true;
    return a && b && memcmp(a, b, n) == 0;
}

static bool equal_rec(const cparsl_value_t *a, const cparsl_value_t *b,
                      int depth)
{
    size_t n;

    if (a->type != b->type)
        return false;
    switch (a->type) {
    case CPARSL_T_NIL:
        return true;
    case CPARSL_T_BOOL:
        return a->u.b == b->u.b;
    case CPARSL_T_INT:
        return a->u.i == b->u.i;
    case CPARSL_T_DOUBLE:
        return double_bits(a->u.d) == double_bits(b->u.d);
    case CPARSL_T_STRING:
    case CPARSL_T_FILE:
    case CPARSL_T_BYTES:
        return a->u.str.len == b->u.str.len &&
               same_bytes(a->u.str.p, b->u.str.p, a->u.str.len);
    case CPARSL_T_INT_ARRAY:
        return a->u.ia.n == b->u.ia.n &&
               same_bytes(a->u.ia.p, b->u.ia.p, a->u.ia.n * sizeof(int64_t));
    case CPARSL_T_DOUBLE_ARRAY:
        n = a->u.da.n;
        if (n != b->u.da.n)
            return false;
        for (size_t i = 0; i < n; i++)
            if (double_bits(a->u.da.p[i]) != double_bits(b->u.da.p[i]))
                return false;
        return true;
    case CPARSL_T_LIST:
        n = a->u.list.n;
        if (n != b->u.list.n || depth >= CPARSL_VALUE_MAX_DEPTH)
            return false;
        for (size_t i = 0; i < n; i++)
            if (!equal_rec(&a->u.list.p[i], &b->u.list.p[i], depth + 1))
                return false;
        return true;
    default:
        return false;
    }
}

bool cparsl_value_equal(const cparsl_value_t *a, const cparsl_value_t *b)
{
    if (!a || !b)
        return a == b;
    return equal_rec(a, b, 0);
}

/* ---- names, paths ------------------------------------------------------- */

const char *cparsl_type_name(cparsl_type_t t)
{
    static const char *const names[CPARSL_T_COUNT] = {
        [CPARSL_T_NIL] = "nil",
        [CPARSL_T_BOOL] = "bool",
        [CPARSL_T_INT] = "int",
        [CPARSL_T_DOUBLE] = "double",
        [CPARSL_T_STRING] = "string",
        [CPARSL_T_BYTES] = "bytes",
        [CPARSL_T_INT_ARRAY] = "int_array",
        [CPARSL_T_DOUBLE_ARRAY] = "double_array",
        [CPARSL_T_FILE] = "file",
        [CPARSL_T_LIST] = "list",
    };

    if ((unsigned)t < CPARSL_T_COUNT && names[t])
        return names[t];
    return "unknown";
}

/*
 * file:///p and file://localhost/p give /p.  Other hosts are dropped the
 * way Parsl's File.filepath drops them: the path part is what a worker
 * opens.  Percent-escapes are left alone (this returns a pointer into the
 * value and cannot rewrite it).
 */
const char *cparsl_value_path(const cparsl_value_t *v)
{
    const char *s, *slash;

    if (!v || v->type != CPARSL_T_FILE)
        return NULL;
    s = v->u.str.p ? v->u.str.p : "";
    if (strncmp(s, "file://", 7) == 0) {
        s += 7;
        if (*s == '/')
            return s;
        slash = strchr(s, '/');
        return slash ? slash : s;
    }
    /* RFC 8089 also allows "file:/p". */
    if (strncmp(s, "file:/", 6) == 0)
        return s + 5;
    return s;
}

/* ---- formatting --------------------------------------------------------- */

/*
 * A snprintf-style sink: writes what fits in buf[0..cap-1) and counts
 * everything, so the caller learns the length it would have needed.
 */
struct sink {
    char *buf;
    size_t cap;
    size_t pos;
};

/* Bytes values show at most this many bytes, then "..." and the count. */
#define BYTES_PREVIEW 32

static void put(struct sink *s, const char *p, size_t n)
{
    if (n && s->cap && s->pos < s->cap - 1) {
        size_t room = s->cap - 1 - s->pos;

        memcpy(s->buf + s->pos, p, n < room ? n : room);
    }
    s->pos += n;
}

static void puts_(struct sink *s, const char *p)
{
    put(s, p, strlen(p));
}

static void putf(struct sink *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void putf(struct sink *s, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        put(s, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Quoted, with C escapes; bytes at or above 0x80 pass only in strings. */
static void put_quoted(struct sink *s, const char *p, size_t n, int is_bytes)
{
    put(s, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];

        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            put(s, e, 2);
        } else if (c == '\n') {
            put(s, "\\n", 2);
        } else if (c == '\t') {
            put(s, "\\t", 2);
        } else if (c == '\r') {
            put(s, "\\r", 2);
        } else if (c < 0x20 || c == 0x7f || (is_bytes && c >= 0x80)) {
            putf(s, "\\x%02x", c);
        } else {
            put(s, (const char *)&c, 1);
        }
    }
}

/* The shortest of %.15g..%.17g that reads back to the same double. */
static void put_double(struct sink *s, double d)
{
    char tmp[40];

    if (isnan(d)) {
        puts_(s, "nan");
        return;
    }
    if (isinf(d)) {
        puts_(s, d < 0 ? "-inf" : "inf");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, d);
        if (strtod(tmp, NULL) == d)
            break;
    }
    puts_(s, tmp);
    /* Keep 3.0 from looking like the int 3. */
    if (strspn(tmp, "-0123456789") == strlen(tmp))
        puts_(s, ".0");
}

static void format_rec(struct sink *s, const cparsl_value_t *v, int depth)
{
    const char *p = NULL;
    size_t n = 0;

    /* A malformed value (NULL payload, nonzero length) prints as empty. */
    if (v->type == CPARSL_T_STRING || v->type == CPARSL_T_FILE ||
        v->type == CPARSL_T_BYTES) {
        p = v->u.str.p;
        n = p ? v->u.str.len : 0;
    }
    switch (v->type) {
    case CPARSL_T_NIL:
        puts_(s, "nil");
        break;
    case CPARSL_T_BOOL:
        puts_(s, v->u.b ? "true" : "false");
        break;
    case CPARSL_T_INT:
        putf(s, "%" PRId64, v->u.i);
        break;
    case CPARSL_T_DOUBLE:
        put_double(s, v->u.d);
        break;
    case CPARSL_T_STRING:
        put_quoted(s, p, n, 0);
        put(s, "\"", 1);
        break;
    case CPARSL_T_FILE:
        if (n < 5 || strncmp(p, "file:", 5) != 0)
            puts_(s, "file:");
        put(s, p, n);
        break;
    case CPARSL_T_BYTES:
        put(s, "b", 1);
        put_quoted(s, p, n < BYTES_PREVIEW ? n : BYTES_PREVIEW, 1);
        if (n > BYTES_PREVIEW)
            put(s, "...", 3);
        putf(s, "\" (%zu byte%s)", n, n == 1 ? "" : "s");
        break;
    case CPARSL_T_INT_ARRAY:
        put(s, "[", 1);
        for (size_t i = 0; v->u.ia.p && i < v->u.ia.n; i++)
            putf(s, "%s%" PRId64, i ? ", " : "", v->u.ia.p[i]);
        put(s, "]", 1);
        break;
    case CPARSL_T_DOUBLE_ARRAY:
        put(s, "[", 1);
        for (size_t i = 0; v->u.da.p && i < v->u.da.n; i++) {
            if (i)
                put(s, ", ", 2);
            put_double(s, v->u.da.p[i]);
        }
        put(s, "]", 1);
        break;
    case CPARSL_T_LIST:
        if (depth >= CPARSL_VALUE_MAX_DEPTH) {
            puts_(s, "[...]");
            break;
        }
        put(s, "[", 1);
        for (size_t i = 0; v->u.list.p && i < v->u.list.n; i++) {
            if (i)
                put(s, ", ", 2);
            format_rec(s, &v->u.list.p[i], depth + 1);
        }
        put(s, "]", 1);
        break;
    default:
        putf(s, "<bad type %d>", (int)v->type);
        break;
    }
}

size_t cparsl_value_format(const cparsl_value_t *v, char *buf, size_t cap)
{
    struct sink s = {buf, cap, 0};

    if (v)
        format_rec(&s, v, 0);
    else
        puts_(&s, "(null)");
    if (cap == 0)
        return s.pos;
    if (s.pos < cap) {
        buf[s.pos] = '\0';
    } else {
        buf[cap - 1] = '\0';
        if (cap >= 4)
            memcpy(buf + cap - 4, "...", 3);
    }
    return s.pos;
}

/* ---- encoding ----------------------------------------------------------- */

/* 0 when v cannot be encoded; 'depth' counts the lists around v. */
static size_t size_rec(const cparsl_value_t *v, int depth)
{
    size_t n, total, sz;

    switch (v->type) {
    case CPARSL_T_NIL:
        return 1;
    case CPARSL_T_BOOL:
        return 2;
    case CPARSL_T_INT:
    case CPARSL_T_DOUBLE:
        return 9;
    case CPARSL_T_STRING:
    case CPARSL_T_FILE:
    case CPARSL_T_BYTES:
        n = v->u.str.len;
        if (!v->u.str.p)
            return n ? 0 : HDR;
        if (v->type != CPARSL_T_BYTES && memchr(v->u.str.p, '\0', n))
            return 0;
        return n <= SIZE_MAX - HDR ? HDR + n : 0;
    case CPARSL_T_INT_ARRAY:
    case CPARSL_T_DOUBLE_ARRAY:
        /* ia and da share their layout; check both to be plain about it. */
        n = v->type == CPARSL_T_INT_ARRAY ? v->u.ia.n : v->u.da.n;
        if (n && (v->type == CPARSL_T_INT_ARRAY ? !v->u.ia.p : !v->u.da.p))
            return 0;
        return n <= (SIZE_MAX - HDR) / 8 ? HDR + 8 * n : 0;
    case CPARSL_T_LIST:
        n = v->u.list.n;
        if (depth >= CPARSL_VALUE_MAX_DEPTH || (n && !v->u.list.p))
            return 0;
        total = HDR;
        for (size_t i = 0; i < n; i++) {
            sz = size_rec(&v->u.list.p[i], depth + 1);
            if (sz == 0 || sz > SIZE_MAX - total)
                return 0;
            total += sz;
        }
        return total;
    default:
        return 0;
    }
}

size_t cparsl_value_encoded_size(const cparsl_value_t *v)
{
    return v ? size_rec(v, 0) : 0;
}

/* Writes v, already checked by size_rec; returns the end of what it wrote. */
static uint8_t *write_rec(const cparsl_value_t *v, uint8_t *p)
{
    uint64_t u;

    *p++ = (uint8_t)v->type;
    switch (v->type) {
    case CPARSL_T_BOOL:
        *p++ = v->u.b ? 1 : 0;
        break;
    case CPARSL_T_INT:
        memcpy(&u, &v->u.i, sizeof u);
        put_u64(p, u);
        p += 8;
        break;
    case CPARSL_T_DOUBLE:
        put_u64(p, double_bits(v->u.d));
        p += 8;
        break;
    case CPARSL_T_STRING:
    case CPARSL_T_FILE:
    case CPARSL_T_BYTES:
        put_u64(p, v->u.str.len);
        p += 8;
        if (v->u.str.len)
            memcpy(p, v->u.str.p, v->u.str.len);
        p += v->u.str.len;
        break;
    case CPARSL_T_INT_ARRAY:
        put_u64(p, v->u.ia.n);
        p += 8;
        for (size_t i = 0; i < v->u.ia.n; i++, p += 8) {
            memcpy(&u, &v->u.ia.p[i], sizeof u);
            put_u64(p, u);
        }
        break;
    case CPARSL_T_DOUBLE_ARRAY:
        put_u64(p, v->u.da.n);
        p += 8;
        for (size_t i = 0; i < v->u.da.n; i++, p += 8)
            put_u64(p, double_bits(v->u.da.p[i]));
        break;
    case CPARSL_T_LIST:
        put_u64(p, v->u.list.n);
        p += 8;
        for (size_t i = 0; i < v->u.list.n; i++)
            p = write_rec(&v->u.list.p[i], p);
        break;
    default: /* NIL: the tag is all */
        break;
    }
    return p;
}

int cparsl_value_encode(const cparsl_value_t *v, void *buf, size_t cap,
                        size_t *len)
{
    size_t need = cparsl_value_encoded_size(v);

    if (len)
        *len = need;
    if (need == 0)
        return -EINVAL;
    if (need > cap || !buf)
        return -ENOSPC;
    write_rec(v, buf);
    return 0;
}

/* ---- decoding ----------------------------------------------------------- */

struct dec {
    const uint8_t *buf;
    size_t len;
    size_t pos;
    cparsl_error_t *err;
};

static size_t left(const struct dec *d)
{
    return d->len - d->pos;
}

static int dec_fail(struct dec *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int dec_fail(struct dec *d, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = cparsl_error_vset(d->err, CPARSL_EDECODE, fmt, ap);
    va_end(ap);
    return rc;
}

static int dec_nomem(struct dec *d, const char *what, uint64_t n)
{
    return cparsl_error_set(d->err, -ENOMEM,
                            "out of memory decoding %s of %" PRIu64
                            " at offset %zu",
                            what, n, d->pos);
}

static int dec_u64(struct dec *d, const char *what, uint64_t *x)
{
    if (left(d) < 8)
        return dec_fail(d,
                        "truncated %s at offset %zu: need 8 bytes but %zu "
                        "left",
                        what, d->pos, left(d));
    *x = get_u64(d->buf + d->pos);
    d->pos += 8;
    return 0;
}

static int dec_double(struct dec *d, const char *what, double *out)
{
    uint64_t u = 0;
    int rc = dec_u64(d, what, &u);

    if (rc < 0)
        return rc;
    if (bits_are_nan(u) && u != CANON_NAN)
        return dec_fail(d, "non-canonical NaN 0x%016" PRIx64 " at offset %zu",
                        u, d->pos - 8);
    *out = bits_double(u);
    return 0;
}

/* On failure *out is left nil and nothing is leaked. */
static int decode_rec(struct dec *d, cparsl_value_t *out, int depth)
{
    cparsl_value_t v = {.owned = 1};
    cparsl_value_t *items;
    const char *name;
    size_t start = d->pos;
    uint64_t n = 0, u = 0;
    unsigned tag;
    int64_t *ia;
    double *da;
    int rc;

    *out = cparsl_nil();
    if (left(d) < 1)
        return dec_fail(d, "truncated input at offset %zu: expected a tag",
                        d->pos);
    tag = d->buf[d->pos++];
    /* Only known tags go into the enum. */
    if (tag < CPARSL_T_COUNT)
        v.type = (cparsl_type_t)tag;
    name = cparsl_type_name(v.type);
    switch (tag) {
    case CPARSL_T_NIL:
        break;
    case CPARSL_T_BOOL:
        if (left(d) < 1)
            return dec_fail(d, "truncated bool at offset %zu", d->pos);
        if (d->buf[d->pos] > 1)
            return dec_fail(d, "bad bool byte 0x%02x at offset %zu",
                            d->buf[d->pos], d->pos);
        v.u.b = d->buf[d->pos++];
        break;
    case CPARSL_T_INT:
        rc = dec_u64(d, name, &u);
        if (rc < 0)
            return rc;
        memcpy(&v.u.i, &u, sizeof u);
        break;
    case CPARSL_T_DOUBLE:
        rc = dec_double(d, name, &v.u.d);
        if (rc < 0)
            return rc;
        break;
    case CPARSL_T_STRING:
    case CPARSL_T_FILE:
    case CPARSL_T_BYTES: {
        const uint8_t *p, *nul;

        rc = dec_u64(d, "length", &n);
        if (rc < 0)
            return rc;
        if (n > left(d))
            return dec_fail(d,
                            "truncated %s at offset %zu: length %" PRIu64
                            " but %zu bytes left",
                            name, d->pos, n, left(d));
        p = d->buf + d->pos;
        nul = v.type == CPARSL_T_BYTES ? NULL : memchr(p, '\0', n);
        if (nul)
            return dec_fail(d, "NUL inside %s at offset %zu", name,
                            (size_t)(nul - d->buf));
        if (own_chars(&v, v.type, p, n) < 0)
            return dec_nomem(d, name, n);
        d->pos += n;
        break;
    }
    case CPARSL_T_INT_ARRAY:
        rc = dec_u64(d, "count", &n);
        if (rc < 0)
            return rc;
        /* Divide, not multiply: n * 8 may wrap. */
        if (n > left(d) / 8)
            return dec_fail(d,
                            "truncated %s at offset %zu: count %" PRIu64
                            " but %zu bytes left",
                            name, d->pos, n, left(d));
        ia = cparsl_value_new_int_array(&v, n);
        if (!ia)
            return dec_nomem(d, name, n);
        for (size_t i = 0; i < n; i++) {
            u = get_u64(d->buf + d->pos);
            memcpy(&ia[i], &u, sizeof u);
            d->pos += 8;
        }
        break;
    case CPARSL_T_DOUBLE_ARRAY:
        rc = dec_u64(d, "count", &n);
        if (rc < 0)
            return rc;
        if (n > left(d) / 8)
            return dec_fail(d,
                            "truncated %s at offset %zu: count %" PRIu64
                            " but %zu bytes left",
                            name, d->pos, n, left(d));
        da = cparsl_value_new_double_array(&v, n);
        if (!da)
            return dec_nomem(d, name, n);
        for (size_t i = 0; i < n; i++) {
            rc = dec_double(d, name, &da[i]);
            if (rc < 0) {
                cparsl_value_clear(&v);
                return rc;
            }
        }
        break;
    case CPARSL_T_LIST:
        if (depth >= CPARSL_VALUE_MAX_DEPTH)
            return dec_fail(d, "list nested deeper than %d at offset %zu",
                            CPARSL_VALUE_MAX_DEPTH, start);
        rc = dec_u64(d, "count", &n);
        if (rc < 0)
            return rc;
        /* Every item takes at least its tag byte. */
        if (n > left(d))
            return dec_fail(d,
                            "truncated list at offset %zu: count %" PRIu64
                            " but %zu bytes left",
                            d->pos, n, left(d));
        items = cparsl_value_new_list(&v, n);
        if (!items)
            return dec_nomem(d, name, n);
        for (size_t i = 0; i < n; i++) {
            rc = decode_rec(d, &items[i], depth + 1);
            if (rc < 0) {
                cparsl_value_clear(&v);
                return rc;
            }
        }
        break;
    default:
        return dec_fail(d, "unknown type tag %u at offset %zu", tag, start);
    }
    *out = v;
    return 0;
}

int cparsl_value_decode(const void *buf, size_t len, cparsl_value_t *out,
                        size_t *used, cparsl_error_t *err)
{
    struct dec d = {buf, len, 0, err};
    int rc;

    if (used)
        *used = 0;
    if (!out)
        return cparsl_error_set(err, -EINVAL, "decode: out is NULL");
    *out = cparsl_nil();
    if (!buf && len)
        return cparsl_error_set(err, -EINVAL, "decode: buf is NULL");
    rc = decode_rec(&d, out, 0);
    if (rc < 0)
        return rc;
    if (used)
        *used = d.pos;
    return 0;
}
