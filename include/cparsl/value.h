/*
 * cparsl/value.h - typed values and their canonical encoding.
 *
 * A cparsl_value_t is what an app receives as an argument and returns as a
 * result, what a future holds, and what crosses the wire or goes to the
 * store.  It is a small tagged struct passed by value.  Scalars live inside
 * it; strings, bytes and arrays point at a payload that is either borrowed
 * (owned == 0: the caller keeps it alive) or owned (owned != 0: freed by
 * cparsl_value_clear).  The constructors below borrow and never allocate;
 * cparsl_value_copy and the *_new functions allocate and own.
 *
 * The encoding is canonical: one value has exactly one byte string, so
 * encodings can be compared and hashed (memoization keys).  A decoder
 * checks every length against the bytes it was given.
 */
#ifndef CPARSL_VALUE_H
#define CPARSL_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cparsl/error.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cparsl_type {
    CPARSL_T_NIL = 0,
    CPARSL_T_BOOL = 1,
    CPARSL_T_INT = 2, /* int64_t */
    CPARSL_T_DOUBLE = 3,
    CPARSL_T_STRING = 4,       /* UTF-8 or any bytes but NUL */
    CPARSL_T_BYTES = 5,        /* any bytes */
    CPARSL_T_INT_ARRAY = 6,    /* int64_t[] */
    CPARSL_T_DOUBLE_ARRAY = 7, /* double[] */
    CPARSL_T_FILE = 8,         /* a file reference: "file:///p" or "p" */
    CPARSL_T_LIST = 9,         /* cparsl_value_t[] (e.g. a join's list) */
    CPARSL_T_COUNT
} cparsl_type_t;

typedef struct cparsl_value {
    cparsl_type_t type;
    unsigned owned; /* nonzero: the payload below belongs to this value */
    union {
        bool b;
        int64_t i;
        double d;
        struct {
            const char *p; /* STRING/FILE: NUL-terminated; BYTES: not */
            size_t len;    /* bytes, without the NUL */
        } str;
        struct {
            const int64_t *p;
            size_t n;
        } ia;
        struct {
            const double *p;
            size_t n;
        } da;
        struct {
            const struct cparsl_value *p;
            size_t n;
        } list;
    } u;
} cparsl_value_t;

/* Deepest LIST nesting the encoder accepts and the decoder will read. */
#define CPARSL_VALUE_MAX_DEPTH 32

/* ---- borrowing constructors (no allocation) ---------------------------- */

static inline cparsl_value_t cparsl_nil(void)
{
    cparsl_value_t v = {.type = CPARSL_T_NIL};
    return v;
}
static inline cparsl_value_t cparsl_bool(bool b)
{
    cparsl_value_t v = {.type = CPARSL_T_BOOL, .u.b = b};
    return v;
}
static inline cparsl_value_t cparsl_int(int64_t i)
{
    cparsl_value_t v = {.type = CPARSL_T_INT, .u.i = i};
    return v;
}
static inline cparsl_value_t cparsl_double(double d)
{
    cparsl_value_t v = {.type = CPARSL_T_DOUBLE, .u.d = d};
    return v;
}
/* 's' must stay valid while the value is used; NULL is taken as "". */
cparsl_value_t cparsl_str(const char *s);
cparsl_value_t cparsl_bytes(const void *p, size_t len);
cparsl_value_t cparsl_int_array(const int64_t *p, size_t n);
cparsl_value_t cparsl_double_array(const double *p, size_t n);
cparsl_value_t cparsl_list(const cparsl_value_t *items, size_t n);
/* A file reference: a plain path or a file:// URL, kept as given. */
cparsl_value_t cparsl_file(const char *url);

/* ---- owning constructors ------------------------------------------------ */

/*
 * Each makes 'v' own a fresh payload and returns a writable pointer to it
 * (NULL with 'v' set to nil on ENOMEM).  Any payload 'v' owned before is
 * NOT freed: pass a cleared or fresh value.
 */
int64_t *cparsl_value_new_int_array(cparsl_value_t *v, size_t n);
double *cparsl_value_new_double_array(cparsl_value_t *v, size_t n);
cparsl_value_t *cparsl_value_new_list(cparsl_value_t *v, size_t n);
/* Copies 's'; returns 0 or -ENOMEM. */
int cparsl_value_set_string(cparsl_value_t *v, const char *s);
/* printf into an owned string; returns 0 or -ENOMEM. */
int cparsl_value_printf(cparsl_value_t *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Deep copy of 'src' into 'dst', which then owns everything: 0 or -ENOMEM. */
int cparsl_value_copy(cparsl_value_t *dst, const cparsl_value_t *src);

/* Free what 'v' owns (recursively) and set it to nil.  NULL is fine. */
void cparsl_value_clear(cparsl_value_t *v);

/* Deep equality (doubles compared by canonical bit pattern). */
bool cparsl_value_equal(const cparsl_value_t *a, const cparsl_value_t *b);

/* "nil", "int", ...; never NULL. */
const char *cparsl_type_name(cparsl_type_t t);

/* For FILE values: the path without a "file://" prefix. NULL if not FILE. */
const char *cparsl_value_path(const cparsl_value_t *v);

/*
 * Human-readable rendering into buf (always NUL-terminated, truncated
 * with "..." when it does not fit).  Returns the length it wanted.
 */
size_t cparsl_value_format(const cparsl_value_t *v, char *buf, size_t cap);

/* ---- canonical encoding ----------------------------------------------- */

/*
 * Exact encoded size of 'v', or 0 if 'v' cannot be encoded (bad type,
 * too deep).
 */
size_t cparsl_value_encoded_size(const cparsl_value_t *v);

/*
 * Encode 'v' into buf[0..cap).  On success returns 0 and stores the
 * number of bytes written in *len.  If cap is too small returns
 * -ENOSPC and stores the size needed in *len.  -EINVAL for a value that
 * cannot be encoded.
 */
int cparsl_value_encode(const cparsl_value_t *v, void *buf, size_t cap,
                        size_t *len);

/*
 * Decode one value from buf[0..len).  On success returns 0, *out owns a
 * deep copy, and *used (if not NULL) is the number of bytes consumed.
 * Malformed, truncated or over-deep input returns -CPARSL_EDECODE with a
 * reason in 'err'; *out is then nil.
 */
int cparsl_value_decode(const void *buf, size_t len, cparsl_value_t *out,
                        size_t *used, cparsl_error_t *err);

#ifdef __cplusplus
}
#endif
#endif /* CPARSL_VALUE_H */
