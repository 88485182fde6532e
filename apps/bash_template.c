/*
 * bash_template.c - parse and render bash app command templates.
 *
 * The syntax is the subset of Python's str.format that Parsl's bash apps
 * use: {name}, {0}, {inputs[i]}, {outputs[i]}, with {{ and }} for literal
 * braces.  Unlike Parsl, values are shell-quoted unless the placeholder
 * says ":raw", so a string argument can never inject shell code; the
 * quoted word is exactly the value's text once bash has parsed it.
 *
 * One walker serves both entry points: with no arguments it only checks
 * the syntax (at registration, when no call exists yet), with arguments
 * it also renders.  Everything lives in the caller's buffers: no state.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bash.h"

/* A placeholder text longer than this is cut in messages, which must fit
 * CPARSL_ERROR_TEXT with room for the explanation. */
#define PH_ECHO_MAX 96

/* Indices past this are surely typos; it also keeps the parse from
 * overflowing. */
#define PH_INDEX_MAX 100000000u

enum ph_kind { PH_NAMED, PH_POS, PH_INPUT, PH_OUTPUT };

/* One parsed placeholder: pointers into the template. */
struct ph {
    enum ph_kind kind;
    const char *name; /* PH_NAMED */
    size_t name_len;
    size_t index; /* PH_POS, PH_INPUT, PH_OUTPUT */
    bool raw;
    const char *text; /* the whole "{...}", for messages */
    size_t text_len;
};

/* A growing output string.  'failed' latches ENOMEM so that callers can
 * append unchecked and test once. */
struct sbuf {
    char *p;
    size_t len, cap;
    bool failed;
};

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
    if (b == NULL || b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->len + n + 1 > cap)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_putc(struct sbuf *b, char c)
{
    sb_put(b, &c, 1);
}

static int syntax_error(cparsl_error_t *err, size_t off, const char *what)
{
    return cparsl_error_set(err, CPARSL_ETEMPLATE,
                            "template syntax error at byte %zu: %s", off, what);
}

/* Same, quoting the offending placeholder. */
static int ph_syntax_error(cparsl_error_t *err, size_t off, const char *text,
                           size_t len, const char *what)
{
    int n = len > PH_ECHO_MAX ? PH_ECHO_MAX : (int)len;
    return cparsl_error_set(err, CPARSL_ETEMPLATE,
                            "template syntax error at byte %zu: "
                            "placeholder '%.*s%s': %s",
                            off, n, text, len > PH_ECHO_MAX ? "..." : "", what);
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_ident_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_ident(char c)
{
    return is_ident_start(c) || is_digit(c);
}

/* Parse decimal digits s[0..n) into *out.  False if empty, not all
 * digits, or too large. */
static bool parse_index(const char *s, size_t n, size_t *out)
{
    size_t v = 0;

    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return false;
        v = v * 10 + (size_t)(s[i] - '0');
        if (v > PH_INDEX_MAX)
            return false;
    }
    *out = v;
    return true;
}

/*
 * Parse the placeholder whose '{' is at tmpl[off] (not followed by '{').
 * On success fills *ph and returns the offset just past its '}'; on
 * failure returns a negative code.  Offsets fit in a long: a template is
 * a C string in memory.
 */
static long parse_ph(const char *tmpl, size_t off, struct ph *ph,
                     cparsl_error_t *err)
{
    const char *open = tmpl + off;
    const char *c = open + 1;
    const char *close = c;

    while (*close != '\0' && *close != '}' && *close != '{')
        close++;
    if (*close != '}')
        return syntax_error(err, off,
                            "'{' is never closed (write {{ for a literal "
                            "brace)");

    size_t text_len = (size_t)(close - open) + 1;
    size_t clen = (size_t)(close - c);
    const char *colon = memchr(c, ':', clen);
    size_t flen = colon ? (size_t)(colon - c) : clen;

    memset(ph, 0, sizeof *ph);
    ph->text = open;
    ph->text_len = text_len;

    if (clen == 0)
        return ph_syntax_error(err, off, open, text_len,
                               "empty placeholder (positional arguments "
                               "are numbered: {0}; write {{}} for literal "
                               "braces)");
    if (colon != NULL) {
        size_t mlen = clen - flen - 1;
        if (mlen != 3 || memcmp(colon + 1, "raw", 3) != 0)
            return ph_syntax_error(err, off, open, text_len,
                                   "unknown modifier (only ':raw' is "
                                   "known)");
        ph->raw = true;
    }
    if (flen == 0)
        return ph_syntax_error(err, off, open, text_len,
                               "missing argument name or number");

    if (is_digit(c[0])) {
        if (!parse_index(c, flen, &ph->index))
            return ph_syntax_error(err, off, open, text_len,
                                   "bad positional index");
        ph->kind = PH_POS;
        return (long)(off + text_len);
    }
    if (!is_ident_start(c[0]))
        return ph_syntax_error(err, off, open, text_len,
                               "not a name, a number, inputs[i] or "
                               "outputs[i] (write {{ and }} for literal "
                               "braces)");

    size_t ilen = 1;
    while (ilen < flen && is_ident(c[ilen]))
        ilen++;
    if (ilen == flen) {
        ph->kind = PH_NAMED;
        ph->name = c;
        ph->name_len = ilen;
        return (long)(off + text_len);
    }
    if (c[ilen] != '[')
        return ph_syntax_error(err, off, open, text_len,
                               "not a name, a number, inputs[i] or "
                               "outputs[i] (write {{ and }} for literal "
                               "braces)");
    if (ilen == 6 && memcmp(c, "inputs", 6) == 0)
        ph->kind = PH_INPUT;
    else if (ilen == 7 && memcmp(c, "outputs", 7) == 0)
        ph->kind = PH_OUTPUT;
    else
        return ph_syntax_error(err, off, open, text_len,
                               "only inputs[i] and outputs[i] take an "
                               "index");
    if (c[flen - 1] != ']' ||
        !parse_index(c + ilen + 1, flen - ilen - 2, &ph->index))
        return ph_syntax_error(err, off, open, text_len,
                               "bad index (expected a number in [])");
    return (long)(off + text_len);
}

/* Characters that never need quoting in a bash word (Python's shlex). */
static bool is_safe_word(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!is_ident(ch) && strchr("@%+=:,./-", ch) == NULL)
            return false;
    }
    return true;
}

/* Append one word, quoted unless raw or safe.  Inside single quotes bash
 * interprets nothing, so only the quote itself needs the '\'' dance. */
static void put_word(struct sbuf *b, const char *s, size_t n, bool raw)
{
    if (raw || is_safe_word(s, n)) {
        sb_put(b, s, n);
        return;
    }
    sb_putc(b, '\'');
    const char *end = s + n;
    while (s < end) {
        const char *q = memchr(s, '\'', (size_t)(end - s));
        size_t span = q ? (size_t)(q - s) : (size_t)(end - s);
        sb_put(b, s, span);
        if (q == NULL)
            break;
        sb_put(b, "'\\''", 4);
        s = q + 1;
    }
    sb_putc(b, '\'');
}

/* The shortest %g form that reads back as the same double. */
static int format_double(char *buf, size_t cap, double d)
{
    int n = 0;
    for (int prec = 1; prec <= 17; prec++) {
        n = snprintf(buf, cap, "%.*g", prec, d);
        if (strtod(buf, NULL) == d || d != d)
            break;
    }
    return n;
}

static int render_value(struct sbuf *b, const struct ph *ph,
                        const cparsl_value_t *v, cparsl_error_t *err)
{
    char num[40];
    int n;
    int tlen = ph->text_len > PH_ECHO_MAX ? PH_ECHO_MAX : (int)ph->text_len;

    switch (v->type) {
    case CPARSL_T_NIL:
        put_word(b, "", 0, ph->raw);
        return 0;
    case CPARSL_T_BOOL:
        put_word(b, v->u.b ? "true" : "false", v->u.b ? 4 : 5, ph->raw);
        return 0;
    case CPARSL_T_INT:
        n = snprintf(num, sizeof num, "%lld", (long long)v->u.i);
        put_word(b, num, (size_t)n, ph->raw);
        return 0;
    case CPARSL_T_DOUBLE:
        n = format_double(num, sizeof num, v->u.d);
        put_word(b, num, (size_t)n, ph->raw);
        return 0;
    case CPARSL_T_STRING: {
        const char *s = v->u.str.p ? v->u.str.p : "";
        size_t len = v->u.str.p ? v->u.str.len : 0;
        /* A NUL would silently cut the command short, closing quote
         * included. */
        if (memchr(s, '\0', len) != NULL)
            return cparsl_error_set(err, CPARSL_ETEMPLATE,
                                    "template placeholder %.*s: the string "
                                    "contains a NUL byte",
                                    tlen, ph->text);
        put_word(b, s, len, ph->raw);
        return 0;
    }
    case CPARSL_T_FILE: {
        const char *path = cparsl_value_path(v);
        if (path == NULL)
            path = "";
        put_word(b, path, strlen(path), ph->raw);
        return 0;
    }
    case CPARSL_T_INT_ARRAY:
        for (size_t i = 0; i < v->u.ia.n; i++) {
            if (i > 0)
                sb_putc(b, ' ');
            n = snprintf(num, sizeof num, "%lld", (long long)v->u.ia.p[i]);
            put_word(b, num, (size_t)n, ph->raw);
        }
        return 0;
    case CPARSL_T_DOUBLE_ARRAY:
        for (size_t i = 0; i < v->u.da.n; i++) {
            if (i > 0)
                sb_putc(b, ' ');
            n = format_double(num, sizeof num, v->u.da.p[i]);
            put_word(b, num, (size_t)n, ph->raw);
        }
        return 0;
    default:
        return cparsl_error_set(err, CPARSL_ETEMPLATE,
                                "template placeholder %.*s has type %s; only "
                                "scalars, strings, files and number arrays "
                                "can be rendered",
                                tlen, ph->text, cparsl_type_name(v->type));
    }
}

static const char *plural(size_t n)
{
    return n == 1 ? "" : "s";
}

/* The value a placeholder names, or NULL with the reason in err. */
static const cparsl_value_t *lookup(const struct ph *ph, const cparsl_args_t *a,
                                    cparsl_error_t *err)
{
    int tlen = ph->text_len > PH_ECHO_MAX ? PH_ECHO_MAX : (int)ph->text_len;

    switch (ph->kind) {
    case PH_NAMED:
        for (size_t i = 0; i < a->nnamed; i++) {
            const char *nm = a->named[i].name;
            if (nm != NULL && strncmp(nm, ph->name, ph->name_len) == 0 &&
                nm[ph->name_len] == '\0')
                return &a->named[i].value;
        }
        bool framework =
            (ph->name_len == 6 && memcmp(ph->name, "inputs", 6) == 0) ||
            (ph->name_len == 7 && memcmp(ph->name, "outputs", 7) == 0);
        cparsl_error_set(err, CPARSL_ETEMPLATE,
                         "template placeholder %.*s has no value (no keyword "
                         "argument '%.*s')%s",
                         tlen, ph->text, (int)ph->name_len, ph->name,
                         framework ? "; write {inputs[0]} or {outputs[0]} "
                                     "for the call's files"
                                   : "");
        return NULL;
    case PH_POS:
        if (ph->index < a->npos)
            return &a->pos[ph->index].value;
        cparsl_error_set(err, CPARSL_ETEMPLATE,
                         "template placeholder %.*s has no value (the call "
                         "has %zu positional argument%s)",
                         tlen, ph->text, a->npos, plural(a->npos));
        return NULL;
    case PH_INPUT:
        if (ph->index < a->ninputs)
            return &a->inputs[ph->index];
        cparsl_error_set(err, CPARSL_ETEMPLATE,
                         "template placeholder %.*s has no value (the call "
                         "has %zu input%s)",
                         tlen, ph->text, a->ninputs, plural(a->ninputs));
        return NULL;
    case PH_OUTPUT:
        if (ph->index < a->noutputs)
            return &a->outputs[ph->index];
        cparsl_error_set(err, CPARSL_ETEMPLATE,
                         "template placeholder %.*s has no value (the call "
                         "has %zu output%s)",
                         tlen, ph->text, a->noutputs, plural(a->noutputs));
        return NULL;
    }
    return NULL;
}

/* Check (a == NULL) or render into b. */
static int walk(const char *tmpl, const cparsl_args_t *a, struct sbuf *b,
                cparsl_error_t *err)
{
    size_t off = 0;

    for (;;) {
        size_t lit = strcspn(tmpl + off, "{}");
        sb_put(b, tmpl + off, lit);
        off += lit;
        char ch = tmpl[off];
        if (ch == '\0')
            return 0;
        if (tmpl[off + 1] == ch) { /* {{ or }} */
            sb_putc(b, ch);
            off += 2;
            continue;
        }
        if (ch == '}')
            return syntax_error(err, off,
                                "lone '}' (write }} for a literal brace)");

        struct ph ph;
        long next = parse_ph(tmpl, off, &ph, err);
        if (next < 0)
            return (int)next;
        if (a != NULL) {
            const cparsl_value_t *v = lookup(&ph, a, err);
            if (v == NULL)
                return -CPARSL_ETEMPLATE;
            int rc = render_value(b, &ph, v, err);
            if (rc < 0)
                return rc;
        }
        off = (size_t)next;
    }
}

int cparsl__bash_check_template(const char *tmpl, cparsl_error_t *err)
{
    if (tmpl == NULL)
        return cparsl_error_set(err, CPARSL_ETEMPLATE, "no template");
    return walk(tmpl, NULL, NULL, err);
}

int cparsl__bash_render(const char *tmpl, const cparsl_args_t *a, char **out,
                        cparsl_error_t *err)
{
    struct sbuf b = {0};
    int rc;

    *out = NULL;
    if (tmpl == NULL || a == NULL)
        return cparsl_error_set(err, CPARSL_ETEMPLATE, "no template");
    rc = walk(tmpl, a, &b, err);
    if (rc == 0) {
        sb_put(&b, "", 0); /* an empty template still gets its NUL */
        if (b.failed)
            rc = cparsl_error_set(err, -ENOMEM,
                                  "out of memory rendering the template");
    }
    if (rc < 0) {
        free(b.p);
        return rc;
    }
    *out = b.p;
    return 0;
}
