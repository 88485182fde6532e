/*
 * wire.c - the htex wire protocol (format in wire.h): a writer that builds
 * messages into a reusable buffer and a reader that decodes them.
 *
 * The writer owns nothing but its buffer, which grows geometrically and is
 * kept from message to message, so a warm sender does no allocation per
 * message.  A record either goes in whole or not at all: a failed write
 * rolls the buffer back to the end of the previous record and leaves the
 * error sticky in b->error, so htex_msg_end refuses the message.
 *
 * The reader treats every byte as hostile (DESIGN.md, "Failure and
 * security model"): every length and count is checked against the bytes
 * left before anything is allocated, every error names what was wrong and
 * at which byte offset of the message, and a failed decode frees what it
 * had decoded and leaves the reader where the record started.  A record
 * is decoded into locals (or into a cleared htex_task_t) and only moved
 * into the caller's structures once the whole record, and the end of the
 * message after the last one, checked out.
 */
#include "wire.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Header field offsets. */
#define OFF_MAGIC    0
#define OFF_VERSION  4
#define OFF_TYPE     6
#define OFF_COUNT    8
#define OFF_WANT     12
#define OFF_BODY_LEN 16
#define OFF_RESERVED 24

/* Smallest possible record of each type: what a count is checked against
 * before anything is read.  TASKS: fixed fields and four empty strings;
 * RESULTS: fixed fields, an empty string and a nil value; REGISTER: three
 * words and two empty strings. */
#define MIN_TASK     56
#define MIN_RESULT   69
#define MIN_REGISTER 20

/* Smallest encoded value (a nil), a FILE value (tag and length) and a
 * keyword argument (empty name and a nil). */
#define MIN_VALUE 1
#define MIN_FILE  9
#define MIN_NAMED 5

/* Longest REGISTER strings: what the reader's fixed arrays hold. */
#define REG_HOST_MAX  (sizeof(((htex_register_t *)0)->host) - 1)
#define REG_BUILD_MAX (sizeof(((htex_register_t *)0)->build) - 1)

static size_t min_record(int type);

/* First buffer size: a heartbeat and a handful of small tasks. */
#define BUF_MIN 256

const char *htex_msg_name(int type)
{
    static const char *const names[HTEX_MSG_LAST] = {
        [HTEX_MSG_REGISTER] = "REGISTER", [HTEX_MSG_TASKS] = "TASKS",
        [HTEX_MSG_RESULTS] = "RESULTS",   [HTEX_MSG_HEARTBEAT] = "HEARTBEAT",
        [HTEX_MSG_SHUTDOWN] = "SHUTDOWN", [HTEX_MSG_BYE] = "BYE",
        [HTEX_MSG_HELLO] = "HELLO",       [HTEX_MSG_CHALLENGE] = "CHALLENGE",
        [HTEX_MSG_AUTH] = "AUTH",         [HTEX_MSG_WELCOME] = "WELCOME",
        [HTEX_MSG_REFUSE] = "REFUSE",     [HTEX_MSG_DRAIN] = "DRAIN",
    };

    if (type > 0 && type < HTEX_MSG_LAST && names[type])
        return names[type];
    return "UNKNOWN";
}

/* ---- little-endian fields (memcpy: any alignment) ------------------------ */

static void put16(unsigned char *p, uint16_t x)
{
    x = htole16(x);
    memcpy(p, &x, sizeof x);
}

static void put32(unsigned char *p, uint32_t x)
{
    x = htole32(x);
    memcpy(p, &x, sizeof x);
}

static void put64(unsigned char *p, uint64_t x)
{
    x = htole64(x);
    memcpy(p, &x, sizeof x);
}

static uint16_t get16(const unsigned char *p)
{
    uint16_t x;

    memcpy(&x, p, sizeof x);
    return le16toh(x);
}

static uint32_t get32(const unsigned char *p)
{
    uint32_t x;

    memcpy(&x, p, sizeof x);
    return le32toh(x);
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t x;

    memcpy(&x, p, sizeof x);
    return le64toh(x);
}

static uint64_t dbl_bits(double d)
{
    uint64_t u;

    memcpy(&u, &d, sizeof u);
    return u;
}

static double bits_dbl(uint64_t u)
{
    double d;

    memcpy(&d, &u, sizeof d);
    return d;
}

/* ---- writing --------------------------------------------------------------
 */

void htex_buf_free(htex_buf_t *b)
{
    if (!b)
        return;
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
    b->error = 0;
}

static void wr_fail(htex_buf_t *b, int code)
{
    if (!b->error)
        b->error = code;
}

/* Room for n more bytes at the end; returns where they start and counts
 * them in b->len, or NULL (sticky error) when the buffer cannot grow. */
static unsigned char *wr_room(htex_buf_t *b, size_t n)
{
    unsigned char *p;
    size_t need, cap;

    if (b->error)
        return NULL;
    if (n > SIZE_MAX - b->len || b->len + n > (size_t)LONG_MAX) {
        wr_fail(b, -ENOMEM);
        return NULL;
    }
    need = b->len + n;
    if (need > b->cap) {
        cap = b->cap ? b->cap : BUF_MIN;
        while (cap < need)
            cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        p = realloc(b->p, cap);
        if (!p) {
            wr_fail(b, -ENOMEM);
            return NULL;
        }
        b->p = p;
        b->cap = cap;
    }
    p = b->p + b->len;
    b->len = need;
    return p;
}

static void wr_u32(htex_buf_t *b, uint32_t x)
{
    unsigned char *p = wr_room(b, 4);

    if (p)
        put32(p, x);
}

static void wr_u64(htex_buf_t *b, uint64_t x)
{
    unsigned char *p = wr_room(b, 8);

    if (p)
        put64(p, x);
}

static void wr_f64(htex_buf_t *b, double d)
{
    wr_u64(b, dbl_bits(d));
}

/* A string of 'len' bytes (NULL is ""), at most 'max' and without NULs. */
static void wr_strn(htex_buf_t *b, const char *s, size_t len, size_t max)
{
    unsigned char *p;

    if (!s)
        len = 0;
    if (len > max || (len && memchr(s, '\0', len))) {
        wr_fail(b, -EINVAL);
        return;
    }
    p = wr_room(b, 4 + len);
    if (!p)
        return;
    put32(p, (uint32_t)len);
    if (len)
        memcpy(p + 4, s, len);
}

static void wr_str(htex_buf_t *b, const char *s, size_t max)
{
    wr_strn(b, s, s ? strlen(s) : 0, max);
}

static void wr_value(htex_buf_t *b, const cparsl_value_t *v)
{
    size_t n = cparsl_value_encoded_size(v), used = 0;
    unsigned char *p;

    if (n == 0) {
        wr_fail(b, -EINVAL);
        return;
    }
    p = wr_room(b, n);
    if (p && (cparsl_value_encode(v, p, n, &used) < 0 || used != n))
        wr_fail(b, -EINVAL);
}

void htex_msg_begin(htex_buf_t *b, int type, uint32_t want)
{
    unsigned char *p;

    b->len = 0;
    b->error = 0;
    p = wr_room(b, HTEX_HDR_LEN);
    if (!p)
        return;
    memset(p, 0, HTEX_HDR_LEN);
    put32(p + OFF_MAGIC, HTEX_MAGIC);
    put16(p + OFF_VERSION, HTEX_VERSION);
    put16(p + OFF_TYPE, (uint16_t)type);
    put32(p + OFF_WANT, want);
    if (type <= 0 || type >= HTEX_MSG_LAST)
        wr_fail(b, -EINVAL);
}

uint32_t htex_msg_count(const htex_buf_t *b)
{
    return b->len >= HTEX_HDR_LEN ? get32(b->p + OFF_COUNT) : 0;
}

void htex_msg_set_want(htex_buf_t *b, uint32_t want)
{
    if (b->len >= HTEX_HDR_LEN)
        put32(b->p + OFF_WANT, want);
}

/* A record of 'type' may start: the message was begun as that type, no
 * write failed, and the count has room. */
static int rec_open(htex_buf_t *b, int type, size_t *start)
{
    if (b->error)
        return b->error;
    if (b->len < HTEX_HDR_LEN || get16(b->p + OFF_TYPE) != type ||
        htex_msg_count(b) == UINT32_MAX) {
        wr_fail(b, -EINVAL);
        return b->error;
    }
    *start = b->len;
    return 0;
}

/* The record is in whole, or rolled back. */
static int rec_close(htex_buf_t *b, size_t start)
{
    if (b->error) {
        b->len = start;
        return b->error;
    }
    put32(b->p + OFF_COUNT, htex_msg_count(b) + 1);
    return 0;
}

static int stream_mode_ok(int mode)
{
    return mode == CPARSL_APPEND || mode == CPARSL_TRUNCATE;
}

int htex_msg_add_task(htex_buf_t *b, uint64_t ticket, const cparsl_exec_t *e)
{
    const cparsl_args_t *a = &e->args;
    size_t start = 0;
    int rc = rec_open(b, HTEX_MSG_TASKS, &start);

    if (rc < 0)
        return rc;
    if (!a->app || !a->app->name || !*a->app->name || a->try_no < 0 ||
        !(e->walltime >= 0) || isinf(e->walltime) ||
        !stream_mode_ok(e->stdout_mode) || !stream_mode_ok(e->stderr_mode) ||
        a->npos > UINT32_MAX || a->nnamed > UINT32_MAX ||
        a->ninputs > UINT32_MAX || a->noutputs > UINT32_MAX ||
        (a->npos && !a->pos) || (a->nnamed && !a->named) ||
        (a->ninputs && !a->inputs) || (a->noutputs && !a->outputs)) {
        wr_fail(b, -EINVAL);
        return b->error;
    }
    wr_u64(b, ticket);
    wr_u32(b, (uint32_t)a->try_no);
    wr_f64(b, e->walltime);
    wr_str(b, a->app->name, HTEX_MAX_STR);
    wr_u32(b, (uint32_t)e->stdout_mode);
    wr_str(b, e->stdout_path, HTEX_MAX_STR);
    wr_u32(b, (uint32_t)e->stderr_mode);
    wr_str(b, e->stderr_path, HTEX_MAX_STR);
    wr_u32(b, (uint32_t)a->npos);
    wr_u32(b, (uint32_t)a->nnamed);
    wr_u32(b, (uint32_t)a->ninputs);
    wr_u32(b, (uint32_t)a->noutputs);
    for (size_t i = 0; i < a->npos; i++)
        wr_value(b, &a->pos[i].value);
    for (size_t i = 0; i < a->nnamed; i++) {
        if (!a->named[i].name)
            wr_fail(b, -EINVAL);
        wr_str(b, a->named[i].name, HTEX_MAX_STR);
        wr_value(b, &a->named[i].value);
    }
    /* Readers take only FILE values here: refuse to send anything else. */
    for (size_t i = 0; i < a->ninputs; i++) {
        if (a->inputs[i].type != CPARSL_T_FILE)
            wr_fail(b, -EINVAL);
        wr_value(b, &a->inputs[i]);
    }
    for (size_t i = 0; i < a->noutputs; i++) {
        if (a->outputs[i].type != CPARSL_T_FILE)
            wr_fail(b, -EINVAL);
        wr_value(b, &a->outputs[i]);
    }
    return rec_close(b, start);
}

int htex_msg_add_result(htex_buf_t *b, uint64_t ticket, int try_no,
                        const cparsl_exec_t *e, int worker, int slot)
{
    const cparsl_value_t nil = cparsl_nil();
    int code = cparsl_exec_code(e);
    const char *text = cparsl_exec_text(e);
    size_t start = 0;
    int rc = rec_open(b, HTEX_MSG_RESULTS, &start);

    if (rc < 0)
        return rc;
    if (try_no < 0 || code > 0) {
        wr_fail(b, -EINVAL);
        return b->error;
    }
    wr_u64(b, ticket);
    wr_u32(b, (uint32_t)try_no);
    wr_u32(b, (uint32_t)code);
    /* The text need not be terminated if an app wrote it by hand. */
    wr_strn(b, text, code ? strnlen(text, CPARSL_ERROR_TEXT) : 0, HTEX_MAX_STR);
    wr_value(b, code ? &nil : &e->result);
    wr_u64(b, (uint64_t)e->t_start);
    wr_u64(b, (uint64_t)e->t_end);
    wr_u32(b, (uint32_t)e->exit_code);
    wr_u32(b, (uint32_t)e->term_signal);
    /* A NaN CPU time means nothing more than "unknown". */
    wr_f64(b, isnan(e->cpu_s) ? -1.0 : e->cpu_s);
    wr_u64(b, (uint64_t)e->maxrss_kib);
    wr_u32(b, (uint32_t)worker);
    wr_u32(b, (uint32_t)slot);
    return rec_close(b, start);
}

int htex_msg_add_register(htex_buf_t *b, int rank, int node, uint32_t slots,
                          const char *host, const char *build)
{
    size_t start = 0;
    int rc = rec_open(b, HTEX_MSG_REGISTER, &start);

    if (rc < 0)
        return rc;
    wr_u32(b, (uint32_t)rank);
    wr_u32(b, (uint32_t)node);
    wr_u32(b, slots);
    wr_str(b, host, REG_HOST_MAX);
    wr_str(b, build, REG_BUILD_MAX);
    return rec_close(b, start);
}

int htex_msg_add_fields(htex_buf_t *b, size_t n, const void *const *p,
                        const size_t *len)
{
    size_t start = 0;
    int type = b->len >= HTEX_HDR_LEN ? get16(b->p + OFF_TYPE) : 0;
    int rc = min_record(type) == 4 ? rec_open(b, type, &start) : -EINVAL;
    if (rc < 0)
        return rc;
    if (n > HTEX_MAX_FIELDS) {
        wr_fail(b, -EINVAL);
        return -EINVAL;
    }
    wr_u32(b, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        if (len[i] > HTEX_FIELD_MAX) {
            wr_fail(b, -EINVAL);
            return -EINVAL;
        }
        wr_u32(b, (uint32_t)len[i]);
        unsigned char *q = wr_room(b, len[i]);
        if (q && len[i])
            memcpy(q, p[i], len[i]);
    }
    return rec_close(b, start);
}

int htex_msg_add_records(htex_buf_t *b, const htex_reader_t *r)
{
    size_t start = 0;
    int rc = rec_open(b, (int)r->hdr.type, &start);
    if (rc < 0)
        return rc;
    uint32_t have = htex_msg_count(b);
    if (r->hdr.count > UINT32_MAX - have) {
        wr_fail(b, -EINVAL);
        return b->error;
    }
    size_t n = r->len - HTEX_HDR_LEN;
    unsigned char *p = wr_room(b, n);
    if (!p)
        return b->error;
    memcpy(p, r->p + HTEX_HDR_LEN, n);
    put32(b->p + OFF_COUNT, have + r->hdr.count);
    return 0;
}

long htex_msg_end(htex_buf_t *b)
{
    if (b->error)
        return b->error;
    if (b->len < HTEX_HDR_LEN)
        return -EINVAL;
    put64(b->p + OFF_BODY_LEN, (uint64_t)(b->len - HTEX_HDR_LEN));
    return (long)b->len;
}

/* ---- reading: primitives --------------------------------------------------
 */

static size_t rd_left(const htex_reader_t *r)
{
    return r->len - r->pos;
}

static int rd_need(htex_reader_t *r, size_t n, const char *what,
                   cparsl_error_t *err)
{
    if (rd_left(r) >= n)
        return 0;
    return cparsl_error_set(err, CPARSL_EDECODE,
                            "truncated %s at offset %zu: need %zu bytes, "
                            "%zu left",
                            what, r->pos, n, rd_left(r));
}

static int rd_u32(htex_reader_t *r, const char *what, uint32_t *x,
                  cparsl_error_t *err)
{
    int rc = rd_need(r, 4, what, err);

    if (rc < 0)
        return rc;
    *x = get32(r->p + r->pos);
    r->pos += 4;
    return 0;
}

static int rd_i32(htex_reader_t *r, const char *what, int *x,
                  cparsl_error_t *err)
{
    uint32_t u = 0;
    int32_t s;
    int rc = rd_u32(r, what, &u, err);

    if (rc < 0)
        return rc;
    memcpy(&s, &u, sizeof s);
    *x = s;
    return 0;
}

static int rd_u64(htex_reader_t *r, const char *what, uint64_t *x,
                  cparsl_error_t *err)
{
    int rc = rd_need(r, 8, what, err);

    if (rc < 0)
        return rc;
    *x = get64(r->p + r->pos);
    r->pos += 8;
    return 0;
}

static int rd_i64(htex_reader_t *r, const char *what, int64_t *x,
                  cparsl_error_t *err)
{
    uint64_t u = 0;
    int rc = rd_u64(r, what, &u, err);

    if (rc < 0)
        return rc;
    memcpy(x, &u, sizeof *x);
    return 0;
}

static int rd_f64(htex_reader_t *r, const char *what, double *x,
                  cparsl_error_t *err)
{
    uint64_t u = 0;
    int rc = rd_u64(r, what, &u, err);

    if (rc < 0)
        return rc;
    *x = bits_dbl(u);
    if (isnan(*x))
        return cparsl_error_set(err, CPARSL_EDECODE,
                                "%s at offset %zu is not a number", what,
                                r->pos - 8);
    return 0;
}

/* A try number: a u32 that must fit an int. */
static int rd_try(htex_reader_t *r, int *try_no, cparsl_error_t *err)
{
    uint32_t u = 0;
    int rc = rd_u32(r, "try", &u, err);

    if (rc < 0)
        return rc;
    if (u > INT_MAX)
        return cparsl_error_set(err, CPARSL_EDECODE,
                                "try %" PRIu32 " at offset %zu is too large", u,
                                r->pos - 4);
    *try_no = (int)u;
    return 0;
}

/*
 * A string, left in place: *s points into the message and is NOT
 * terminated.  Checked against 'max' and the bytes left before the caller
 * allocates anything for it.
 */
static int rd_str(htex_reader_t *r, const char *what, size_t max,
                  const unsigned char **s, uint32_t *len, cparsl_error_t *err)
{
    const unsigned char *nul;
    size_t at = r->pos;
    uint32_t n = 0;
    int rc = rd_u32(r, what, &n, err);

    if (rc < 0)
        return rc;
    if (n > max)
        return cparsl_error_set(err, CPARSL_EDECODE,
                                "%s at offset %zu: length %" PRIu32
                                " is over the limit of %zu",
                                what, at, n, max);
    if (n > rd_left(r))
        return cparsl_error_set(err, CPARSL_EDECODE,
                                "truncated %s at offset %zu: length %" PRIu32
                                " but %zu bytes left",
                                what, at, n, rd_left(r));
    nul = n ? memchr(r->p + r->pos, '\0', n) : NULL;
    if (nul)
        return cparsl_error_set(err, CPARSL_EDECODE,
                                "NUL inside %s at offset %zu", what,
                                (size_t)(nul - r->p));
    *s = r->p + r->pos;
    *len = n;
    r->pos += n;
    return 0;
}

/* A copy of a string from rd_str, terminated; NULL for an empty one when
 * 'empty_null'. */
static int dup_str(const unsigned char *s, uint32_t n, int empty_null,
                   char **out, const char *what, cparsl_error_t *err)
{
    char *p;

    *out = NULL;
    if (n == 0 && empty_null)
        return 0;
    p = malloc((size_t)n + 1);
    if (!p)
        return cparsl_error_set(
            err, -ENOMEM, "out of memory for %s of %" PRIu32 " bytes", what, n);
    if (n)
        memcpy(p, s, n);
    p[n] = '\0';
    *out = p;
    return 0;
}

/* One value; 'what' and 'i' name it in an error ("argument 2"). */
static int rd_value(htex_reader_t *r, const char *what, size_t i,
                    cparsl_value_t *v, cparsl_error_t *err)
{
    size_t at = r->pos, used = 0;
    int rc = cparsl_value_decode(r->p + r->pos, rd_left(r), v, &used, err);

    if (rc < 0) {
        /* The value decoder counts offsets from the value's start. */
        cparsl_error_prefix(err, "%s %zu at offset %zu", what, i, at);
        return rc;
    }
    r->pos += used;
    return 0;
}

/* ---- reading: messages ----------------------------------------------------
 */

static size_t min_record(int type)
{
    switch (type) {
    case HTEX_MSG_TASKS:
        return MIN_TASK;
    case HTEX_MSG_RESULTS:
        return MIN_RESULT;
    case HTEX_MSG_REGISTER:
        return MIN_REGISTER;
    case HTEX_MSG_HELLO:
    case HTEX_MSG_CHALLENGE:
    case HTEX_MSG_AUTH:
    case HTEX_MSG_WELCOME:
    case HTEX_MSG_REFUSE:
        return 4; /* the field count */
    default:
        return 0; /* no records */
    }
}

int htex_msg_open(htex_reader_t *r, const void *buf, size_t len,
                  cparsl_error_t *err)
{
    const unsigned char *p = buf;
    htex_hdr_t h;
    uint64_t reserved;
    size_t min;

    /* A reader that failed to open reads nothing. */
    memset(r, 0, sizeof *r);
    if (!p && len)
        return cparsl_error_set(err, -EINVAL, "message buffer is NULL");
    if (len < HTEX_HDR_LEN)
        return cparsl_error_set(err, CPARSL_EDECODE,
                                "message of %zu bytes is shorter than the "
                                "%d-byte header",
                                len, HTEX_HDR_LEN);
    h.magic = get32(p + OFF_MAGIC);
    h.version = get16(p + OFF_VERSION);
    h.type = get16(p + OFF_TYPE);
    h.count = get32(p + OFF_COUNT);
    h.want = get32(p + OFF_WANT);
    h.body_len = get64(p + OFF_BODY_LEN);
    reserved = get64(p + OFF_RESERVED);
    if (h.magic != HTEX_MAGIC)
        return cparsl_error_set(err, CPARSL_EDECODE,
                                "bad magic 0x%08" PRIx32 ", expected 0x%08x",
                                h.magic, HTEX_MAGIC);
    if (h.version != HTEX_VERSION)
        return cparsl_error_set(err, CPARSL_EDECODE,
                                "protocol version %u, expected %d",
                                (unsigned)h.version, HTEX_VERSION);
    if (h.type == 0 || h.type >= HTEX_MSG_LAST)
        return cparsl_error_set(err, CPARSL_EDECODE,
                                "unknown message type %u at offset %d",
                                (unsigned)h.type, OFF_TYPE);
    if (h.body_len != len - HTEX_HDR_LEN)
        return cparsl_error_set(
            err, CPARSL_EDECODE,
            "%s message: body_len %" PRIu64 " but %zu bytes follow the header",
            htex_msg_name(h.type), h.body_len, len - HTEX_HDR_LEN);
    if (reserved != 0)
        return cparsl_error_set(err, CPARSL_EDECODE,
                                "reserved header field at offset %d is "
                                "0x%" PRIx64 ", expected 0",
                                OFF_RESERVED, reserved);
    min = min_record(h.type);
    if (min == 0 && (h.count != 0 || h.body_len != 0))
        return cparsl_error_set(err, CPARSL_EDECODE,
                                "%s message has %" PRIu32
                                " records and %" PRIu64
                                " body bytes, expected none",
                                htex_msg_name(h.type), h.count, h.body_len);
    /* Bytes after the last record are refused by the record readers;
     * with no records at all, they are refused here. */
    if (h.count == 0 && h.body_len != 0)
        return cparsl_error_set(err, CPARSL_EDECODE,
                                "%s message has no records but %" PRIu64
                                " body bytes",
                                htex_msg_name(h.type), h.body_len);
    if ((uint64_t)h.count * min > h.body_len)
        return cparsl_error_set(err, CPARSL_EDECODE,
                                "%s message: %" PRIu32
                                " records cannot fit in %" PRIu64 " body bytes",
                                htex_msg_name(h.type), h.count, h.body_len);
    r->p = p;
    r->len = len;
    r->pos = HTEX_HDR_LEN;
    r->hdr = h;
    r->next = 0;
    return 0;
}

/* The reader holds one more record of 'type'. */
static int rec_begin(const htex_reader_t *r, int type, cparsl_error_t *err)
{
    if (!r->p)
        return cparsl_error_set(err, CPARSL_EDECODE, "no message is open");
    if (r->hdr.type != type)
        return cparsl_error_set(
            err, CPARSL_EDECODE, "reading a %s record from a %s message",
            htex_msg_name(type), htex_msg_name(r->hdr.type));
    if (r->next >= r->hdr.count)
        return cparsl_error_set(err, CPARSL_EDECODE,
                                "no record %" PRIu32 " at offset %zu: the %s "
                                "message has %" PRIu32,
                                r->next, r->pos, htex_msg_name(type),
                                r->hdr.count);
    return 0;
}

/* After the record just read: nothing may follow the last one. */
static int rec_end(const htex_reader_t *r, cparsl_error_t *err)
{
    if (r->next + 1 == r->hdr.count && r->pos != r->len)
        return cparsl_error_set(err, CPARSL_EDECODE,
                                "%zu trailing bytes at offset %zu after the "
                                "last of %" PRIu32 " records",
                                r->len - r->pos, r->pos, r->hdr.count);
    return 0;
}

/* ---- TASKS ----------------------------------------------------------------
 */

/* Everything of exec but executor_data, which belongs to its user.  The
 * error is freed: e must be initialized (htex_task_init zeroes it). */
void htex_exec_blank(cparsl_exec_t *e)
{
    memset(e, 0, sizeof *e);
    e->result = cparsl_nil();
    e->exit_code = -1;
    e->cpu_s = -1;
    e->maxrss_kib = -1;
    e->worker = e->slot = e->node = -1;
}

static void exec_reset(cparsl_exec_t *e)
{
    void *keep = e->executor_data;

    cparsl_exec_clear_error(e);
    htex_exec_blank(e);
    e->executor_data = keep;
}

void htex_task_init(htex_task_t *t)
{
    memset(t, 0, sizeof *t);
    exec_reset(&t->exec);
}

/*
 * The counts in t->exec.args say how much was decoded: the decoder raises
 * them one argument at a time, so a record that fails halfway is freed
 * exactly.  The result is cleared too: whoever ran the task has sent it
 * by the time the struct is reused.
 */
void htex_task_clear(htex_task_t *t)
{
    cparsl_args_t *a = &t->exec.args;
    size_t nslots = a->npos + a->nnamed, nfiles = a->ninputs + a->noutputs;

    for (size_t i = 0; i < nslots; i++) {
        cparsl_value_clear(&t->slots[i].value);
        t->slots[i].name = NULL;
    }
    for (size_t i = 0; i < a->nnamed; i++) {
        free(t->names[i]);
        t->names[i] = NULL;
    }
    for (size_t i = 0; i < nfiles; i++)
        cparsl_value_clear(&t->files[i]);
    free(t->app_name);
    free(t->stdout_path);
    free(t->stderr_path);
    t->app_name = t->stdout_path = t->stderr_path = NULL;
    cparsl_value_clear(&t->exec.result);
    exec_reset(&t->exec);
    t->ticket = 0;
}

void htex_task_free(htex_task_t *t)
{
    if (!t)
        return;
    htex_task_clear(t);
    free(t->slots);
    free(t->names);
    free(t->files);
    htex_task_init(t);
}

/* Room for n argument slots (and as many names), n FILE values. */
static int grow_slots(htex_task_t *t, size_t n, cparsl_error_t *err)
{
    cparsl_argslot_t *s;
    char **names;
    size_t cap;

    if (n <= t->nslots_cap)
        return 0;
    cap = t->nslots_cap * 2 > n ? t->nslots_cap * 2 : n;
    if (cap > SIZE_MAX / sizeof *s)
        cap = n;
    s = cap <= SIZE_MAX / sizeof *s ? realloc(t->slots, cap * sizeof *s) : NULL;
    if (!s)
        goto nomem;
    t->slots = s;
    names = realloc(t->names, cap * sizeof *names);
    if (!names)
        goto nomem;
    t->names = names;
    t->nslots_cap = cap;
    return 0;
nomem:
    return cparsl_error_set(err, -ENOMEM, "out of memory for %zu arguments", n);
}

static int grow_files(htex_task_t *t, size_t n, cparsl_error_t *err)
{
    cparsl_value_t *f;
    size_t cap;

    if (n <= t->nfiles_cap)
        return 0;
    cap = t->nfiles_cap * 2 > n ? t->nfiles_cap * 2 : n;
    f = cap <= SIZE_MAX / sizeof *f ? realloc(t->files, cap * sizeof *f) : NULL;
    if (!f)
        return cparsl_error_set(err, -ENOMEM, "out of memory for %zu files", n);
    t->files = f;
    t->nfiles_cap = cap;
    return 0;
}

static int rd_mode(htex_reader_t *r, const char *what, int *mode,
                   cparsl_error_t *err)
{
    uint32_t u = 0;
    int rc = rd_u32(r, what, &u, err);

    if (rc < 0)
        return rc;
    if (u != CPARSL_APPEND && u != CPARSL_TRUNCATE)
        return cparsl_error_set(err, CPARSL_EDECODE,
                                "%s %" PRIu32 " at offset %zu is unknown", what,
                                u, r->pos - 4);
    *mode = (int)u;
    return 0;
}

/* One of the inputs or outputs: FILE values only. */
static int rd_file(htex_reader_t *r, const char *what, size_t i,
                   cparsl_value_t *v, cparsl_error_t *err)
{
    size_t at = r->pos;
    int rc = rd_value(r, what, i, v, err);

    if (rc < 0)
        return rc;
    if (v->type != CPARSL_T_FILE) {
        rc = cparsl_error_set(err, CPARSL_EDECODE,
                              "%s %zu at offset %zu is a %s, not a file", what,
                              i, at, cparsl_type_name(v->type));
        cparsl_value_clear(v);
    }
    return rc;
}

/* The body of htex_msg_next_task; on failure t holds what it decoded so
 * far, counted, for htex_task_clear. */
static int decode_task(htex_reader_t *r, htex_task_t *t, cparsl_error_t *err)
{
    cparsl_exec_t *e = &t->exec;
    cparsl_args_t *a = &e->args;
    const unsigned char *s;
    uint32_t slen = 0, npos = 0, nnamed = 0, nin = 0, nout = 0;
    uint64_t need;
    size_t at;
    int rc;

    if ((rc = rd_u64(r, "ticket", &t->ticket, err)) < 0 ||
        (rc = rd_try(r, &a->try_no, err)) < 0 ||
        (rc = rd_f64(r, "walltime", &e->walltime, err)) < 0)
        return rc;
    if (e->walltime < 0 || isinf(e->walltime))
        return cparsl_error_set(err, CPARSL_EDECODE,
                                "walltime %g at offset %zu is not a duration",
                                e->walltime, r->pos - 8);
    at = r->pos;
    if ((rc = rd_str(r, "app name", HTEX_MAX_STR, &s, &slen, err)) < 0)
        return rc;
    if (slen == 0)
        return cparsl_error_set(err, CPARSL_EDECODE,
                                "empty app name at offset %zu", at);
    if ((rc = dup_str(s, slen, 0, &t->app_name, "app name", err)) < 0 ||
        (rc = rd_mode(r, "stdout mode", &e->stdout_mode, err)) < 0 ||
        (rc = rd_str(r, "stdout path", HTEX_MAX_STR, &s, &slen, err)) < 0 ||
        (rc = dup_str(s, slen, 1, &t->stdout_path, "stdout path", err)) < 0 ||
        (rc = rd_mode(r, "stderr mode", &e->stderr_mode, err)) < 0 ||
        (rc = rd_str(r, "stderr path", HTEX_MAX_STR, &s, &slen, err)) < 0 ||
        (rc = dup_str(s, slen, 1, &t->stderr_path, "stderr path", err)) < 0)
        return rc;
    at = r->pos;
    if ((rc = rd_u32(r, "npos", &npos, err)) < 0 ||
        (rc = rd_u32(r, "nnamed", &nnamed, err)) < 0 ||
        (rc = rd_u32(r, "ninputs", &nin, err)) < 0 ||
        (rc = rd_u32(r, "noutputs", &nout, err)) < 0)
        return rc;
    /* Before allocating: every argument takes some bytes.  In 64 bits,
     * nothing here can wrap. */
    need = (uint64_t)npos * MIN_VALUE + (uint64_t)nnamed * MIN_NAMED +
           ((uint64_t)nin + nout) * MIN_FILE;
    if (need > rd_left(r))
        return cparsl_error_set(err, CPARSL_EDECODE,
                                "argument counts at offset %zu (npos %" PRIu32
                                ", nnamed %" PRIu32 ", ninputs %" PRIu32
                                ", noutputs %" PRIu32 ") need at least %" PRIu64
                                " bytes but %zu are left",
                                at, npos, nnamed, nin, nout, need, rd_left(r));
    if ((rc = grow_slots(t, (size_t)npos + nnamed, err)) < 0 ||
        (rc = grow_files(t, (size_t)nin + nout, err)) < 0)
        return rc;
    for (uint32_t i = 0; i < npos; i++) {
        t->slots[i].name = NULL;
        if ((rc = rd_value(r, "argument", i, &t->slots[i].value, err)) < 0)
            return rc;
        a->npos = i + 1;
    }
    for (uint32_t i = 0; i < nnamed; i++) {
        cparsl_argslot_t *slot = &t->slots[npos + i];

        if ((rc = rd_str(r, "keyword name", HTEX_MAX_STR, &s, &slen, err)) <
                0 ||
            (rc = dup_str(s, slen, 0, &t->names[i], "keyword name", err)) < 0)
            return rc;
        slot->name = t->names[i];
        slot->value = cparsl_nil();
        a->nnamed = i + 1;
        if ((rc = rd_value(r, "keyword argument", i, &slot->value, err)) < 0)
            return rc;
    }
    for (uint32_t i = 0; i < nin; i++) {
        if ((rc = rd_file(r, "input", i, &t->files[i], err)) < 0)
            return rc;
        a->ninputs = i + 1;
    }
    for (uint32_t i = 0; i < nout; i++) {
        if ((rc = rd_file(r, "output", i, &t->files[nin + i], err)) < 0)
            return rc;
        a->noutputs = i + 1;
    }
    return rec_end(r, err);
}

int htex_msg_next_task(htex_reader_t *r, htex_task_t *t, cparsl_error_t *err)
{
    cparsl_exec_t *e = &t->exec;
    cparsl_args_t *a = &e->args;
    size_t start = r->pos;
    int rc;

    htex_task_clear(t);
    rc = rec_begin(r, HTEX_MSG_TASKS, err);
    if (rc < 0)
        return rc;
    rc = decode_task(r, t, err);
    if (rc < 0) {
        htex_task_clear(t);
        r->pos = start;
        return rc;
    }
    r->next++;
    /* Not on the wire: the DFK's task id stays with the interchange. */
    a->task_id = 0;
    a->app = cparsl_app_find(t->app_name);
    a->pos = t->slots;
    a->named = t->slots ? t->slots + a->npos : NULL;
    a->inputs = t->files;
    a->outputs = t->files ? t->files + a->ninputs : NULL;
    e->stdout_path = t->stdout_path;
    e->stderr_path = t->stderr_path;
    return 0;
}

/* ---- RESULTS --------------------------------------------------------------
 */

/* Copy at most CPARSL_ERROR_TEXT - 1 bytes, not splitting a UTF-8
 * sequence where the text is cut. */
static void set_error_text(char *dst, const unsigned char *s, size_t n)
{
    if (n > CPARSL_ERROR_TEXT - 1) {
        n = CPARSL_ERROR_TEXT - 1;
        while (n > 0 && (s[n] & 0xc0) == 0x80)
            n--;
    }
    if (n)
        memcpy(dst, s, n);
    dst[n] = '\0';
}

int htex_msg_next_result(htex_reader_t *r, uint64_t *ticket, int *try_no,
                         cparsl_exec_t *e, int *worker, int *slot,
                         cparsl_error_t *err)
{
    cparsl_value_t result = cparsl_nil();
    const unsigned char *text = NULL;
    uint32_t tlen = 0;
    uint64_t tk = 0;
    int64_t t_start = 0, t_end = 0, rss = 0;
    int tr = 0, code = 0, exit_code = 0, sig = 0, wk = 0, sl = 0;
    double cpu = 0;
    size_t start = r->pos, at;
    int rc = rec_begin(r, HTEX_MSG_RESULTS, err);

    if (rc < 0)
        return rc;
    if ((rc = rd_u64(r, "ticket", &tk, err)) < 0 ||
        (rc = rd_try(r, &tr, err)) < 0 ||
        (rc = rd_i32(r, "error code", &code, err)) < 0)
        goto fail;
    if (code > 0) {
        rc = cparsl_error_set(err, CPARSL_EDECODE,
                              "error code %d at offset %zu is positive", code,
                              r->pos - 4);
        goto fail;
    }
    at = r->pos;
    if ((rc = rd_str(r, "error text", HTEX_MAX_STR, &text, &tlen, err)) < 0)
        goto fail;
    if (code == 0 && tlen != 0) {
        rc = cparsl_error_set(err, CPARSL_EDECODE,
                              "error text at offset %zu on a success", at);
        goto fail;
    }
    at = r->pos;
    if ((rc = rd_value(r, "result", 0, &result, err)) < 0)
        goto fail;
    if (code != 0 && result.type != CPARSL_T_NIL) {
        rc = cparsl_error_set(err, CPARSL_EDECODE,
                              "failed result has a %s value at offset %zu",
                              cparsl_type_name(result.type), at);
        goto fail;
    }
    if ((rc = rd_i64(r, "t_start", &t_start, err)) < 0 ||
        (rc = rd_i64(r, "t_end", &t_end, err)) < 0 ||
        (rc = rd_i32(r, "exit_code", &exit_code, err)) < 0 ||
        (rc = rd_i32(r, "term_signal", &sig, err)) < 0 ||
        (rc = rd_f64(r, "cpu_s", &cpu, err)) < 0 ||
        (rc = rd_i64(r, "maxrss_kib", &rss, err)) < 0 ||
        (rc = rd_i32(r, "worker", &wk, err)) < 0 ||
        (rc = rd_i32(r, "slot", &sl, err)) < 0 || (rc = rec_end(r, err)) < 0)
        goto fail;

    r->next++;
    cparsl_value_clear(&e->result);
    e->result = result;
    if (code) {
        cparsl_error_t *ee = cparsl_exec_err(e);
        ee->code = code;
        set_error_text(ee->text, text, tlen);
    } else {
        cparsl_exec_clear_error(e);
    }
    e->t_start = t_start;
    e->t_end = t_end;
    e->exit_code = exit_code;
    e->term_signal = sig;
    e->cpu_s = cpu;
    e->maxrss_kib = rss;
    if (ticket)
        *ticket = tk;
    if (try_no)
        *try_no = tr;
    if (worker)
        *worker = wk;
    if (slot)
        *slot = sl;
    return 0;
fail:
    cparsl_value_clear(&result);
    r->pos = start;
    return rc;
}

/* ---- REGISTER -------------------------------------------------------------
 */

int htex_msg_next_register(htex_reader_t *r, htex_register_t *out,
                           cparsl_error_t *err)
{
    const unsigned char *host = NULL, *build = NULL;
    uint32_t hlen = 0, blen = 0, slots = 0;
    int rank = 0, node = 0;
    size_t start = r->pos;
    int rc = rec_begin(r, HTEX_MSG_REGISTER, err);

    if (rc < 0)
        return rc;
    if ((rc = rd_i32(r, "rank", &rank, err)) < 0 ||
        (rc = rd_i32(r, "node", &node, err)) < 0 ||
        (rc = rd_u32(r, "slots", &slots, err)) < 0 ||
        (rc = rd_str(r, "host", REG_HOST_MAX, &host, &hlen, err)) < 0 ||
        (rc = rd_str(r, "build", REG_BUILD_MAX, &build, &blen, err)) < 0 ||
        (rc = rec_end(r, err)) < 0) {
        r->pos = start;
        return rc;
    }
    r->next++;
    out->rank = rank;
    out->node = node;
    out->slots = slots;
    if (hlen)
        memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    if (blen)
        memcpy(out->build, build, blen);
    out->build[blen] = '\0';
    return 0;
}

/* ---- the handshake's FIELDS -------------------------------------------- */

int htex_msg_next_fields(htex_reader_t *r, htex_fields_t *out,
                         cparsl_error_t *err)
{
    size_t start = r->pos;
    uint32_t n = 0;
    int rc = rec_begin(r, (int)r->hdr.type, err);
    if (rc == 0 && min_record((int)r->hdr.type) != 4)
        rc = cparsl_error_set(err, CPARSL_EDECODE, "a %s message has no fields",
                              htex_msg_name(r->hdr.type));
    if (rc == 0 && (rc = rd_u32(r, "field count", &n, err)) == 0 &&
        n > HTEX_MAX_FIELDS)
        rc = cparsl_error_set(err, CPARSL_EDECODE,
                              "%" PRIu32 " fields, at most %d", n,
                              HTEX_MAX_FIELDS);
    for (uint32_t i = 0; rc == 0 && i < n; i++) {
        uint32_t len = 0;
        size_t at = r->pos;
        if ((rc = rd_u32(r, "field length", &len, err)) < 0)
            break;
        if (len > HTEX_FIELD_MAX || len > rd_left(r)) {
            rc = cparsl_error_set(err, CPARSL_EDECODE,
                                  "field %" PRIu32 " at offset %zu: length "
                                  "%" PRIu32 " (limit %d, %zu bytes left)",
                                  i, at, len, HTEX_FIELD_MAX, rd_left(r));
            break;
        }
        out->p[i] = r->p + r->pos;
        out->len[i] = len;
        r->pos += len;
    }
    if (rc == 0)
        rc = rec_end(r, err);
    if (rc < 0) {
        r->pos = start;
        return rc;
    }
    out->n = n;
    r->next++;
    return 0;
}
