/*
 * config.c - the configuration tree of cparsl/config.h: YAML in, YAML out,
 * and errors that say which key, file and line are wrong.
 *
 * Owns every node of a config.  Scalars keep the raw text they were
 * written with and get a type only when a cparsl_cnode_* helper reads
 * them, so the same text can be an int for one plugin and a string for
 * another.  Each node carries its path, file and line so a check made
 * long after loading can still point at the source.
 *
 * File names are interned per config rather than shared between configs,
 * so two configs never touch common state and may live on different
 * threads.  Nothing here is on a hot path: lookups are linear scans and
 * clarity wins over speed.
 */
#include <cparsl/config.h>

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <yaml.h>

/*
 * Real configs are a few levels deep.  The limit bounds every recursive
 * walk (free, copy, merge, emit), so no input can exhaust the stack.
 */
#define MAX_DEPTH 64

/* Longest scalar text quoted back in a message; the rest is cut. */
#define QUOTE_MAX 80

static const char code_file[] = "<code>";

struct cparsl_cnode {
    cparsl_cnode_type_t type;
    char *key;        /* map children only, else NULL */
    char *path;       /* "" for the root */
    const char *file; /* code_file, or interned in the owning config */
    int line;         /* 1-based; 0 when set in code */
    char *text;       /* scalars only */
    bool quoted;      /* quoted or block scalar: never a YAML null */
    cparsl_cnode_t **kids;
    size_t len, cap;
};

struct cparsl_config {
    cparsl_cnode_t *root; /* always a map */
    char **files;         /* interned file names the nodes point at */
    size_t nfiles;
};

/* ---- small helpers ----------------------------------------------------- */

static char *str_dup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static char *str_printf(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static char *str_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static char *path_key(const char *parent, const char *key)
{
    return *parent ? str_printf("%s.%s", parent, key) : str_dup(key);
}

static char *path_index(const char *parent, size_t i)
{
    return str_printf("%s[%zu]", parent, i);
}

static int clamp_line(size_t line0)
{
    return line0 >= (size_t)INT_MAX ? INT_MAX : (int)line0 + 1;
}

/* libyaml's emitter refuses text that is not UTF-8, so reject it early. */
static bool utf8_valid(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    while (*s) {
        unsigned c = *s;
        size_t n;
        uint32_t v;
        if (c < 0x80) {
            s++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 2, v = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 3, v = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 4, v = c & 0x07;
        } else {
            return false;
        }
        for (size_t i = 1; i < n; i++) {
            if ((s[i] & 0xC0) != 0x80)
                return false;
            v = v << 6 | (s[i] & 0x3F);
        }
        /* Overlong forms, surrogates and values past Unicode. */
        if ((n == 2 && v < 0x80) || (n == 3 && v < 0x800) ||
            (n == 4 && v < 0x10000) || (v >= 0xD800 && v <= 0xDFFF) ||
            v > 0x10FFFF)
            return false;
        s += n;
    }
    return true;
}

static const char *type_name(const cparsl_cnode_t *n)
{
    switch (n->type) {
    case CPARSL_CNODE_MAP:
        return "a mapping";
    case CPARSL_CNODE_SEQ:
        return "a sequence";
    default:
        return "a scalar";
    }
}

/* ---- located errors ---------------------------------------------------- */

/* "file:line: key 'path': msg", leaving out what is unknown. */
static int locate(cparsl_error_t *err, int code, const char *file, int line,
                  const char *path, const char *msg)
{
    if (!file)
        return cparsl_error_set(err, code, "%s", msg);
    if (path && *path) {
        if (line > 0)
            return cparsl_error_set(err, code, "%s:%d: key '%s': %s", file,
                                    line, path, msg);
        return cparsl_error_set(err, code, "%s: key '%s': %s", file, path, msg);
    }
    if (line > 0)
        return cparsl_error_set(err, code, "%s:%d: %s", file, line, msg);
    return cparsl_error_set(err, code, "%s: %s", file, msg);
}

static int at_error(cparsl_error_t *err, int code, const char *file, int line,
                    const char *path, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static int at_error(cparsl_error_t *err, int code, const char *file, int line,
                    const char *path, const char *fmt, ...)
{
    char msg[CPARSL_ERROR_TEXT];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return locate(err, code, file, line, path, msg);
}

static int node_verror(const cparsl_cnode_t *n, cparsl_error_t *err, int code,
                       const char *fmt, va_list ap)
{
    char msg[CPARSL_ERROR_TEXT];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (!n)
        return locate(err, code, NULL, 0, NULL, msg);
    return locate(err, code, n->file, n->line, n->path, msg);
}

static int node_error(const cparsl_cnode_t *n, cparsl_error_t *err, int code,
                      const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int node_error(const cparsl_cnode_t *n, cparsl_error_t *err, int code,
                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = node_verror(n, err, code, fmt, ap);
    va_end(ap);
    return rc;
}

int cparsl_cnode_error(const cparsl_cnode_t *n, cparsl_error_t *err,
                       const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = node_verror(n, err, -CPARSL_ECONFIG, fmt, ap);
    va_end(ap);
    return rc;
}

/* ---- nodes and configs ------------------------------------------------- */

static cparsl_cnode_t *node_new(cparsl_cnode_type_t type, const char *file,
                                int line)
{
    cparsl_cnode_t *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->type = type;
    n->file = file;
    n->line = line;
    return n;
}

static void node_free(cparsl_cnode_t *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->len; i++)
        node_free(n->kids[i]);
    free(n->kids);
    free(n->key);
    free(n->path);
    free(n->text);
    free(n);
}

static int node_append(cparsl_cnode_t *parent, cparsl_cnode_t *kid)
{
    if (parent->len == parent->cap) {
        size_t cap = parent->cap ? parent->cap * 2 : 4;
        cparsl_cnode_t **k = realloc(parent->kids, cap * sizeof *k);
        if (!k)
            return -ENOMEM;
        parent->kids = k;
        parent->cap = cap;
    }
    parent->kids[parent->len++] = kid;
    return 0;
}

/* The child slot under 'key' in a map, or NULL. */
static cparsl_cnode_t **map_slot(const cparsl_cnode_t *map, const char *key)
{
    for (size_t i = 0; i < map->len; i++)
        if (strcmp(map->kids[i]->key, key) == 0)
            return &map->kids[i];
    return NULL;
}

/* Text that YAML 1.1 reads as null when it is not quoted. */
static bool looks_null(const char *t)
{
    return !*t || !strcmp(t, "~") || !strcmp(t, "null") || !strcmp(t, "Null") ||
           !strcmp(t, "NULL");
}

static bool is_null(const cparsl_cnode_t *n)
{
    return n->type == CPARSL_CNODE_SCALAR && !n->quoted && looks_null(n->text);
}

static const char *cfg_intern(cparsl_config_t *cfg, const char *name)
{
    if (name == code_file)
        return code_file;
    for (size_t i = 0; i < cfg->nfiles; i++)
        if (strcmp(cfg->files[i], name) == 0)
            return cfg->files[i];
    char **f = realloc(cfg->files, (cfg->nfiles + 1) * sizeof *f);
    if (!f)
        return NULL;
    cfg->files = f;
    f[cfg->nfiles] = str_dup(name);
    if (!f[cfg->nfiles])
        return NULL;
    return f[cfg->nfiles++];
}

/* A config with no root yet. */
static cparsl_config_t *cfg_alloc(void)
{
    return calloc(1, sizeof(cparsl_config_t));
}

static cparsl_cnode_t *root_new(const char *file, int line)
{
    cparsl_cnode_t *root = node_new(CPARSL_CNODE_MAP, file, line);
    if (root && !(root->path = str_dup(""))) {
        node_free(root);
        return NULL;
    }
    return root;
}

cparsl_config_t *cparsl_config_create(void)
{
    cparsl_config_t *cfg = cfg_alloc();
    if (!cfg)
        return NULL;
    if (!(cfg->root = root_new(code_file, 0))) {
        free(cfg);
        return NULL;
    }
    return cfg;
}

void cparsl_config_destroy(cparsl_config_t *cfg)
{
    if (!cfg)
        return;
    node_free(cfg->root);
    for (size_t i = 0; i < cfg->nfiles; i++)
        free(cfg->files[i]);
    free(cfg->files);
    free(cfg);
}

/* Deep copy of 'n' whose file names live in 'dst'. */
static cparsl_cnode_t *node_copy(cparsl_config_t *dst, const cparsl_cnode_t *n)
{
    const char *file = cfg_intern(dst, n->file);
    if (!file)
        return NULL;
    cparsl_cnode_t *c = node_new(n->type, file, n->line);
    if (!c)
        return NULL;
    c->quoted = n->quoted;
    if ((n->key && !(c->key = str_dup(n->key))) ||
        !(c->path = str_dup(n->path)) ||
        (n->text && !(c->text = str_dup(n->text))))
        goto fail;
    if (n->len) {
        c->kids = malloc(n->len * sizeof *c->kids);
        if (!c->kids)
            goto fail;
        c->cap = n->len;
        for (size_t i = 0; i < n->len; i++) {
            c->kids[i] = node_copy(dst, n->kids[i]);
            if (!c->kids[i])
                goto fail;
            c->len++;
        }
    }
    return c;
fail:
    node_free(c);
    return NULL;
}

cparsl_config_t *cparsl_config_dup(const cparsl_config_t *cfg)
{
    if (!cfg)
        return NULL;
    cparsl_config_t *d = cfg_alloc();
    if (!d)
        return NULL;
    if (!(d->root = node_copy(d, cfg->root))) {
        cparsl_config_destroy(d);
        return NULL;
    }
    return d;
}

const cparsl_cnode_t *cparsl_config_root(const cparsl_config_t *cfg)
{
    return cfg ? cfg->root : NULL;
}

/* ---- reading nodes ----------------------------------------------------- */

/* A NULL node reads as an empty map, as the helpers treat it. */
cparsl_cnode_type_t cparsl_cnode_type(const cparsl_cnode_t *n)
{
    return n ? n->type : CPARSL_CNODE_MAP;
}

const char *cparsl_cnode_path(const cparsl_cnode_t *n)
{
    return n ? n->path : NULL;
}

const char *cparsl_cnode_file(const cparsl_cnode_t *n)
{
    return n ? n->file : NULL;
}

int cparsl_cnode_line(const cparsl_cnode_t *n)
{
    return n ? n->line : 0;
}

const cparsl_cnode_t *cparsl_cnode_get(const cparsl_cnode_t *map,
                                       const char *key)
{
    if (!map || !key || map->type != CPARSL_CNODE_MAP)
        return NULL;
    cparsl_cnode_t **slot = map_slot(map, key);
    return slot ? *slot : NULL;
}

size_t cparsl_cnode_len(const cparsl_cnode_t *n)
{
    return n ? n->len : 0;
}

const cparsl_cnode_t *cparsl_cnode_at(const cparsl_cnode_t *n, size_t i)
{
    return n && i < n->len ? n->kids[i] : NULL;
}

const char *cparsl_cnode_key(const cparsl_cnode_t *n)
{
    return n ? n->key : NULL;
}

const char *cparsl_cnode_scalar(const cparsl_cnode_t *n)
{
    return n ? n->text : NULL;
}

/* ---- loading YAML ------------------------------------------------------ */

struct frame {
    cparsl_cnode_t *node;
    char *key; /* map: the key read, waiting for its value */
    int key_line;
};

struct loader {
    cparsl_config_t *cfg;
    const char *file; /* interned in cfg */
    cparsl_error_t *err;
    struct frame stack[MAX_DEPTH];
    int depth;
    int ndocs;
    bool seen_root;
};

/* libyaml's own message, located as file:line:column. */
static int syntax_error(struct loader *ld, const yaml_parser_t *p,
                        const char *buf, size_t len)
{
    const char *problem = p->problem ? p->problem : "invalid YAML";
    if (p->error == YAML_MEMORY_ERROR)
        return cparsl_error_set(ld->err, -ENOMEM,
                                "%s: out of memory reading YAML", ld->file);
    if (p->error == YAML_READER_ERROR) {
        /* Reader errors carry a byte offset, not a mark. */
        size_t off = p->problem_offset < len ? p->problem_offset : len;
        size_t line = 1, col = 1;
        for (size_t i = 0; i < off; i++) {
            if (buf[i] == '\n')
                line++, col = 1;
            else
                col++;
        }
        return cparsl_error_set(ld->err, -CPARSL_ECONFIG,
                                "%s:%zu:%zu: %s (value %#x)", ld->file, line,
                                col, problem, (unsigned)p->problem_value);
    }
    size_t line = p->problem_mark.line + 1, col = p->problem_mark.column + 1;
    if (p->context)
        return cparsl_error_set(
            ld->err, -CPARSL_ECONFIG, "%s:%zu:%zu: %s (%s at line %zu)",
            ld->file, line, col, problem, p->context, p->context_mark.line + 1);
    return cparsl_error_set(ld->err, -CPARSL_ECONFIG, "%s:%zu:%zu: %s",
                            ld->file, line, col, problem);
}

static const char *event_anchor(const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        return (const char *)ev->data.scalar.anchor;
    case YAML_SEQUENCE_START_EVENT:
        return (const char *)ev->data.sequence_start.anchor;
    case YAML_MAPPING_START_EVENT:
        return (const char *)ev->data.mapping_start.anchor;
    default:
        return NULL;
    }
}

/* A map key: must be a scalar and new in its map. */
static int load_key(struct loader *ld, struct frame *top,
                    const yaml_event_t *ev, int line)
{
    cparsl_cnode_t *map = top->node;
    if (ev->type != YAML_SCALAR_EVENT)
        return at_error(ld->err, -CPARSL_ECONFIG, ld->file, line, map->path,
                        "mapping keys must be scalars");
    const char *text = (const char *)ev->data.scalar.value;
    if (strlen(text) != ev->data.scalar.length)
        return at_error(ld->err, -CPARSL_ECONFIG, ld->file, line, map->path,
                        "a key holds a NUL character");
    char *key = str_dup(text);
    if (!key)
        return -ENOMEM;
    cparsl_cnode_t **first = map_slot(map, key);
    if (first || event_anchor(ev)) {
        char *path = path_key(map->path, key);
        free(key);
        if (!path)
            return -ENOMEM;
        int rc =
            first ? at_error(ld->err, -CPARSL_ECONFIG, ld->file, line, path,
                             "duplicate key (first at line %d)", (*first)->line)
                  : at_error(ld->err, -CPARSL_ECONFIG, ld->file, line, path,
                             "anchors are not supported");
        free(path);
        return rc;
    }
    top->key = key;
    top->key_line = line;
    return 0;
}

/* The top-level node: a mapping, or a null that reads as an empty one. */
static int load_root(struct loader *ld, const yaml_event_t *ev, int line)
{
    ld->seen_root = true;
    if (event_anchor(ev))
        return at_error(ld->err, -CPARSL_ECONFIG, ld->file, line, NULL,
                        "anchors are not supported");
    if (ev->type == YAML_MAPPING_START_EVENT) {
        ld->cfg->root->line = line;
        ld->stack[ld->depth++] = (struct frame){.node = ld->cfg->root};
        return 0;
    }
    if (ev->type == YAML_SCALAR_EVENT &&
        ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        if (looks_null((const char *)ev->data.scalar.value))
            return 0;
    }
    return at_error(ld->err, -CPARSL_ECONFIG, ld->file, line, NULL,
                    "the top level must be a mapping, got %s",
                    ev->type == YAML_SEQUENCE_START_EVENT ? "a sequence"
                                                          : "a scalar");
}

/* A scalar, sequence or mapping event: a key, a value, or the root. */
static int load_node(struct loader *ld, const yaml_event_t *ev)
{
    int line = clamp_line(ev->start_mark.line);
    if (ld->depth == 0) {
        if (ld->seen_root) /* libyaml never sends this; be safe */
            return at_error(ld->err, -CPARSL_ECONFIG, ld->file, line, NULL,
                            "unexpected node after the top level");
        return load_root(ld, ev, line);
    }
    struct frame *top = &ld->stack[ld->depth - 1];
    cparsl_cnode_t *parent = top->node;
    if (parent->type == CPARSL_CNODE_MAP && !top->key)
        return load_key(ld, top, ev, line);

    cparsl_cnode_type_t type =
        ev->type == YAML_SCALAR_EVENT           ? CPARSL_CNODE_SCALAR
        : ev->type == YAML_SEQUENCE_START_EVENT ? CPARSL_CNODE_SEQ
                                                : CPARSL_CNODE_MAP;
    cparsl_cnode_t *n = node_new(type, ld->file, line);
    if (!n)
        return -ENOMEM;
    if (parent->type == CPARSL_CNODE_MAP) {
        /* A map entry is where its key is, not where the value starts. */
        n->key = top->key;
        n->line = top->key_line;
        top->key = NULL;
        n->path = path_key(parent->path, n->key);
    } else {
        n->path = path_index(parent->path, parent->len);
    }
    int rc = 0;
    if (!n->path) {
        rc = -ENOMEM;
        goto fail;
    }
    if (event_anchor(ev)) {
        rc = node_error(n, ld->err, -CPARSL_ECONFIG,
                        "anchors are not supported");
        goto fail;
    }
    if (type == CPARSL_CNODE_SCALAR) {
        const char *text = (const char *)ev->data.scalar.value;
        if (strlen(text) != ev->data.scalar.length) {
            rc = node_error(n, ld->err, -CPARSL_ECONFIG,
                            "the value holds a NUL character");
            goto fail;
        }
        if (!(n->text = str_dup(text))) {
            rc = -ENOMEM;
            goto fail;
        }
        n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
    } else if (ld->depth == MAX_DEPTH) {
        rc = node_error(n, ld->err, -CPARSL_ECONFIG,
                        "nested deeper than %d levels", MAX_DEPTH);
        goto fail;
    }
    if ((rc = node_append(parent, n)) < 0)
        goto fail;
    if (type != CPARSL_CNODE_SCALAR)
        ld->stack[ld->depth++] = (struct frame){.node = n};
    return 0;
fail:
    node_free(n);
    return rc;
}

/* Located where the aliased node would have gone. */
static int alias_error(struct loader *ld, const yaml_event_t *ev)
{
    int line = clamp_line(ev->start_mark.line);
    char *path = NULL;
    if (ld->depth > 0) {
        const struct frame *top = &ld->stack[ld->depth - 1];
        const cparsl_cnode_t *p = top->node;
        if (p->type == CPARSL_CNODE_SEQ)
            path = path_index(p->path, p->len);
        else if (top->key)
            path = path_key(p->path, top->key);
        else
            path = str_dup(p->path);
        if (!path)
            return -ENOMEM;
    }
    int rc = at_error(ld->err, -CPARSL_ECONFIG, ld->file, line, path,
                      "aliases are not supported (alias '%.*s')", QUOTE_MAX,
                      (const char *)ev->data.alias.anchor);
    free(path);
    return rc;
}

static int load_event(struct loader *ld, const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (++ld->ndocs > 1)
            return at_error(ld->err, -CPARSL_ECONFIG, ld->file,
                            clamp_line(ev->start_mark.line), NULL,
                            "multiple documents are not supported");
        return 0;
    case YAML_ALIAS_EVENT:
        return alias_error(ld, ev);
    case YAML_SCALAR_EVENT:
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT:
        return load_node(ld, ev);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        if (ld->depth > 0)
            ld->depth--;
        return 0;
    default:
        return 0;
    }
}

static int load_buf(cparsl_config_t **out, const char *buf, size_t len,
                    const char *name, cparsl_error_t *err)
{
    *out = NULL;
    struct loader ld = {.err = err};
    if (!(ld.cfg = cfg_alloc()))
        return cparsl_error_set(err, -ENOMEM, "%s: out of memory", name);
    int rc = -ENOMEM;
    if (!(ld.file = cfg_intern(ld.cfg, name)) ||
        !(ld.cfg->root = root_new(ld.file, 0))) {
        cparsl_config_destroy(ld.cfg);
        return cparsl_error_set(err, rc, "%s: out of memory", name);
    }

    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        cparsl_config_destroy(ld.cfg);
        return cparsl_error_set(err, rc, "%s: out of memory", name);
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            rc = syntax_error(&ld, &parser, buf, len);
            break;
        }
        bool end = ev.type == YAML_STREAM_END_EVENT;
        rc = load_event(&ld, &ev);
        yaml_event_delete(&ev);
        if (rc < 0 || end)
            break;
    }
    yaml_parser_delete(&parser);
    for (int i = 0; i < ld.depth; i++)
        free(ld.stack[i].key);
    if (rc < 0) {
        if (rc == -ENOMEM)
            cparsl_error_set(err, rc, "%s: out of memory", name);
        cparsl_config_destroy(ld.cfg);
        return rc;
    }
    *out = ld.cfg;
    return 0;
}

int cparsl_config_load_string(cparsl_config_t **out, const char *yaml,
                              const char *name, cparsl_error_t *err)
{
    if (!out || !yaml)
        return cparsl_error_set(err, -EINVAL,
                                "config_load_string: NULL argument");
    return load_buf(out, yaml, strlen(yaml), name ? name : "<string>", err);
}

int cparsl_config_load_file(cparsl_config_t **out, const char *path,
                            cparsl_error_t *err)
{
    if (!out || !path)
        return cparsl_error_set(err, -EINVAL,
                                "config_load_file: NULL argument");
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        return cparsl_error_set(err, -e, "%s: cannot open: %s", path,
                                cparsl_strerror(e));
    }
    /* Read it whole: the parser then gets exact offsets, and a read error
     * (a directory, say) keeps its errno instead of libyaml's text. */
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int e = 0;
    for (;;) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 4096;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                e = ENOMEM;
                break;
            }
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f))
                e = errno ? errno : EIO;
            break;
        }
    }
    fclose(f);
    if (e) {
        free(buf);
        return cparsl_error_set(err, -e, "%s: cannot read: %s", path,
                                cparsl_strerror(e));
    }
    int rc = load_buf(out, buf ? buf : "", len, path, err);
    free(buf);
    return rc;
}

/* ---- validating helpers ------------------------------------------------ */

/*
 * The scalar under 'key' into *out, or NULL when it is missing or a YAML
 * null (the caller then takes its default).  Returns 0 or the error for a
 * 'map' that is not a map or a value that is not a scalar; 'what' names
 * the expected value in that message.
 */
static int lookup(const cparsl_cnode_t *map, const char *key, const char *what,
                  const cparsl_cnode_t **out, cparsl_error_t *err)
{
    *out = NULL;
    if (!map)
        return 0;
    if (map->type != CPARSL_CNODE_MAP)
        return node_error(map, err, -CPARSL_ECONFIG,
                          "expected a mapping, got %s", type_name(map));
    const cparsl_cnode_t *n = cparsl_cnode_get(map, key);
    if (!n || is_null(n))
        return 0;
    if (n->type != CPARSL_CNODE_SCALAR)
        return node_error(n, err, -CPARSL_ECONFIG, "expected %s, got %s", what,
                          type_name(n));
    *out = n;
    return 0;
}

static int bad_value(const cparsl_cnode_t *n, const char *what,
                     cparsl_error_t *err)
{
    return node_error(n, err, -CPARSL_ECONFIG, "expected %s, got '%.*s'%s",
                      what, QUOTE_MAX, n->text,
                      strlen(n->text) > QUOTE_MAX ? "..." : "");
}

/* Decimal or 0x hex with an optional sign; no spaces, no overflow. */
static bool parse_int(const char *s, int64_t *out)
{
    bool neg = false;
    if (*s == '+' || *s == '-')
        neg = *s++ == '-';
    unsigned base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    }
    if (!*s)
        return false;
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t v = 0;
    for (; *s; s++) {
        unsigned d;
        if (*s >= '0' && *s <= '9')
            d = (unsigned)(*s - '0');
        else if (base == 16 && *s >= 'a' && *s <= 'f')
            d = (unsigned)(*s - 'a' + 10);
        else if (base == 16 && *s >= 'A' && *s <= 'F')
            d = (unsigned)(*s - 'A' + 10);
        else
            return false;
        if (v > (limit - d) / base)
            return false;
        v = v * base + d;
    }
    if (!neg)
        *out = (int64_t)v;
    else if (v == (uint64_t)INT64_MAX + 1)
        *out = INT64_MIN;
    else
        *out = -(int64_t)v;
    return true;
}

int cparsl_cnode_int(const cparsl_cnode_t *map, const char *key, int64_t def,
                     int64_t min, int64_t max, int64_t *out,
                     cparsl_error_t *err)
{
    char what[96];
    if (min == INT64_MIN && max == INT64_MAX)
        snprintf(what, sizeof what, "an integer");
    else if (max == INT64_MAX)
        snprintf(what, sizeof what, "an integer >= %" PRId64, min);
    else if (min == INT64_MIN)
        snprintf(what, sizeof what, "an integer <= %" PRId64, max);
    else
        snprintf(what, sizeof what,
                 "an integer between %" PRId64 " and %" PRId64, min, max);

    const cparsl_cnode_t *n;
    int rc = lookup(map, key, what, &n, err);
    if (rc < 0)
        return rc;
    if (!n) {
        *out = def;
        return 0;
    }
    int64_t v;
    if (!parse_int(n->text, &v) || v < min || v > max)
        return bad_value(n, what, err);
    *out = v;
    return 0;
}

int cparsl_cnode_double(const cparsl_cnode_t *map, const char *key, double def,
                        double min, double max, double *out,
                        cparsl_error_t *err)
{
    /* Bounds at or past +-DBL_MAX (or NaN) mean "no bound". */
    bool lo = min > -DBL_MAX, hi = max < DBL_MAX;
    char what[96];
    if (lo && hi)
        snprintf(what, sizeof what, "a number between %g and %g", min, max);
    else if (lo)
        snprintf(what, sizeof what, "a number >= %g", min);
    else if (hi)
        snprintf(what, sizeof what, "a number <= %g", max);
    else
        snprintf(what, sizeof what, "a number");

    const cparsl_cnode_t *n;
    int rc = lookup(map, key, what, &n, err);
    if (rc < 0)
        return rc;
    if (!n) {
        *out = def;
        return 0;
    }
    /* strtod follows LC_NUMERIC; cparsl never calls setlocale itself. */
    const char *s = n->text;
    char *end = (char *)s;
    double v = 0.0;
    if (*s && !isspace((unsigned char)*s)) { /* strtod skips spaces */
        int saved = errno;
        v = strtod(s, &end);
        errno = saved;
    }
    if (end == s || *end || !isfinite(v) || (lo && v < min) || (hi && v > max))
        return bad_value(n, what, err);
    *out = v;
    return 0;
}

int cparsl_cnode_bool(const cparsl_cnode_t *map, const char *key, bool def,
                      bool *out, cparsl_error_t *err)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    const char *what = "a boolean (true/false, yes/no, on/off)";
    const cparsl_cnode_t *n;
    int rc = lookup(map, key, what, &n, err);
    if (rc < 0)
        return rc;
    if (!n) {
        *out = def;
        return 0;
    }
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(n->text, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(n->text, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return bad_value(n, what, err);
}

int cparsl_cnode_string(const cparsl_cnode_t *map, const char *key,
                        const char *def, const char **out, cparsl_error_t *err)
{
    const cparsl_cnode_t *n;
    int rc = lookup(map, key, "a string", &n, err);
    if (rc < 0)
        return rc;
    *out = n ? n->text : def;
    return 0;
}

/* "a, b, c" into buf, ending in "..." when it does not fit. */
static void join_list(char *buf, size_t cap, const char *const *items)
{
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; items && items[i]; i++) {
        int w = snprintf(buf + n, cap - n, "%s%s", i ? ", " : "", items[i]);
        if (w < 0 || (size_t)w >= cap - n) {
            memcpy(buf + cap - 4, "...", 4);
            return;
        }
        n += (size_t)w;
    }
}

int cparsl_cnode_choice(const cparsl_cnode_t *map, const char *key,
                        const char *const *choices, int def, int *out,
                        cparsl_error_t *err)
{
    char list[256], what[288];
    join_list(list, sizeof list, choices);
    snprintf(what, sizeof what, "one of: %s", list);
    const cparsl_cnode_t *n;
    int rc = lookup(map, key, what, &n, err);
    if (rc < 0)
        return rc;
    if (!n) {
        *out = def;
        return 0;
    }
    for (int i = 0; choices && choices[i]; i++) {
        if (strcmp(n->text, choices[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    return node_error(n, err, -CPARSL_ECONFIG,
                      "expected one of: %s; got '%.*s'%s", list, QUOTE_MAX,
                      n->text, strlen(n->text) > QUOTE_MAX ? "..." : "");
}

/*
 * Edit distance with adjacent transpositions counted as one edit
 * ("retires" -> "retries" is 1), ignoring ASCII case.  Only short words
 * are compared; a key longer than SUGGEST_MAX gets no suggestion.
 */
#define SUGGEST_MAX 64

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

static size_t edit_distance(const char *a, size_t la, const char *b, size_t lb)
{
    size_t rows[3][SUGGEST_MAX + 1];
    size_t *pp = rows[0], *prev = rows[1], *cur = rows[2];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = lower(a[i - 1]) != lower(b[j - 1]);
            size_t v = prev[j - 1] + cost;
            if (prev[j] + 1 < v)
                v = prev[j] + 1;
            if (cur[j - 1] + 1 < v)
                v = cur[j - 1] + 1;
            if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) &&
                lower(a[i - 2]) == lower(b[j - 1]) && pp[j - 2] + 1 < v)
                v = pp[j - 2] + 1;
            cur[j] = v;
        }
        size_t *t = pp;
        pp = prev;
        prev = cur;
        cur = t;
    }
    return prev[lb];
}

/* The allowed key closest to 'key', if it is close enough to be a typo. */
static const char *suggest(const char *key, const char *const *allowed)
{
    size_t lk = strlen(key);
    if (lk > SUGGEST_MAX || !allowed)
        return NULL;
    size_t limit = (lk + 2) / 4;
    limit = limit < 1 ? 1 : limit > 3 ? 3 : limit;
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    for (size_t i = 0; allowed[i]; i++) {
        size_t la = strlen(allowed[i]);
        if (la > SUGGEST_MAX)
            continue;
        size_t d = edit_distance(key, lk, allowed[i], la);
        /* A distance as long as either word is a rewrite, not a typo. */
        if (d <= limit && d < lk && d < la && d < best_d) {
            best = allowed[i];
            best_d = d;
        }
    }
    return best;
}

int cparsl_cnode_check_keys(const cparsl_cnode_t *map,
                            const char *const *allowed, cparsl_error_t *err)
{
    if (!map)
        return 0;
    if (map->type != CPARSL_CNODE_MAP)
        return node_error(map, err, -CPARSL_ECONFIG,
                          "expected a mapping, got %s", type_name(map));
    for (size_t i = 0; i < map->len; i++) {
        const cparsl_cnode_t *kid = map->kids[i];
        bool known = false;
        for (size_t j = 0; allowed && allowed[j] && !known; j++)
            known = strcmp(kid->key, allowed[j]) == 0;
        if (known)
            continue;
        const char *near = suggest(kid->key, allowed);
        if (near)
            return node_error(kid, err, -CPARSL_ECONFIG,
                              "unknown key '%s' (did you mean '%s'?)", kid->key,
                              near);
        if (!allowed || !allowed[0])
            return node_error(kid, err, -CPARSL_ECONFIG,
                              "unknown key '%s' (no keys are allowed here)",
                              kid->key);
        char list[256];
        join_list(list, sizeof list, allowed);
        return node_error(kid, err, -CPARSL_ECONFIG,
                          "unknown key '%s' (allowed: %s)", kid->key, list);
    }
    return 0;
}

/* ---- setting and merging ----------------------------------------------- */

struct step {
    char *key;    /* NULL for an index step */
    size_t index; /* index steps only */
};

static void steps_free(struct step *steps, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(steps[i].key);
    free(steps);
}

/* "a.b[2].c" into steps; -EINVAL with the reason for a malformed path. */
static int path_parse(const char *path, struct step **out, size_t *nout,
                      cparsl_error_t *err)
{
    struct step *steps = calloc(MAX_DEPTH, sizeof *steps);
    if (!steps)
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    size_t n = 0, pos = 0;
    const char *why = NULL;
    for (;;) {
        size_t k = strcspn(path + pos, ".[]");
        if (k == 0) {
            why = "empty key";
            goto bad;
        }
        if (n == MAX_DEPTH - 1) {
            why = "nested too deep";
            goto bad;
        }
        if (!(steps[n].key = malloc(k + 1)))
            goto nomem;
        memcpy(steps[n].key, path + pos, k);
        steps[n++].key[k] = '\0';
        pos += k;
        while (path[pos] == '[') {
            size_t v = 0, digits = 0;
            for (pos++; path[pos] >= '0' && path[pos] <= '9'; pos++) {
                size_t d = (size_t)(path[pos] - '0');
                if (v > (SIZE_MAX - d) / 10) {
                    why = "index too large";
                    goto bad;
                }
                v = v * 10 + d;
                digits++;
            }
            if (!digits || path[pos] != ']') {
                why = "expected a number and ']' after '['";
                goto bad;
            }
            pos++;
            if (n == MAX_DEPTH - 1) {
                why = "nested too deep";
                goto bad;
            }
            steps[n++].index = v;
        }
        if (!path[pos])
            break;
        if (path[pos] != '.') {
            why = "expected '.' or '[' after a key";
            goto bad;
        }
        pos++;
    }
    *out = steps;
    *nout = n;
    return 0;
bad:
    steps_free(steps, n);
    return cparsl_error_set(
        err, -EINVAL, "bad config path '%s': %s at offset %zu", path, why, pos);
nomem:
    steps_free(steps, n);
    return cparsl_error_set(err, -ENOMEM, "out of memory");
}

/*
 * Nodes for steps[i..n) hanging below 'parent': maps and sequences on the
 * way, the scalar 'value' at the end.  Built detached, so a failure leaves
 * the config as it was.  New sequences are empty, so any index after the
 * first must be 0.
 */
static int chain_build(const cparsl_cnode_t *parent, const struct step *steps,
                       size_t i, size_t n, const char *value,
                       cparsl_cnode_t **out, cparsl_error_t *err)
{
    cparsl_cnode_t *head = NULL, *tail = NULL;
    const char *ppath = parent->path;
    for (; i < n; i++) {
        if (!steps[i].key && tail && steps[i].index != 0) {
            int rc = at_error(err, -EINVAL, code_file, 0, tail->path,
                              "index %zu is past the end (length 0)",
                              steps[i].index);
            node_free(head); /* tail is part of head */
            return rc;
        }
        cparsl_cnode_type_t type = i + 1 == n         ? CPARSL_CNODE_SCALAR
                                   : steps[i + 1].key ? CPARSL_CNODE_MAP
                                                      : CPARSL_CNODE_SEQ;
        cparsl_cnode_t *c = node_new(type, code_file, 0);
        if (!c)
            goto nomem;
        if (steps[i].key) {
            c->key = str_dup(steps[i].key);
            c->path = c->key ? path_key(ppath, c->key) : NULL;
        } else {
            c->path = path_index(ppath, steps[i].index);
        }
        if (!c->path ||
            (type == CPARSL_CNODE_SCALAR && !(c->text = str_dup(value)))) {
            node_free(c);
            goto nomem;
        }
        if (!tail) {
            head = c;
        } else if (node_append(tail, c) < 0) {
            node_free(c);
            goto nomem;
        }
        tail = c;
        ppath = c->path;
    }
    *out = head;
    return 0;
nomem:
    node_free(head);
    return cparsl_error_set(err, -ENOMEM, "out of memory");
}

int cparsl_config_set(cparsl_config_t *cfg, const char *path, const char *value,
                      cparsl_error_t *err)
{
    if (!cfg || !path || !value)
        return cparsl_error_set(err, -EINVAL, "config_set: NULL argument");
    if (!utf8_valid(path) || !utf8_valid(value))
        return cparsl_error_set(err, -EINVAL,
                                "config_set: '%s' is not valid UTF-8",
                                utf8_valid(path) ? value : path);
    struct step *steps = NULL;
    size_t n = 0;
    int rc = path_parse(path, &steps, &n, err);
    if (rc < 0)
        return rc;

    /* Walk what exists; a YAML null on the way counts as missing. */
    cparsl_cnode_t *cur = cfg->root, **slot = NULL;
    size_t i;
    for (i = 0; i < n; i++) {
        const struct step *s = &steps[i];
        if (s->key && cur->type != CPARSL_CNODE_MAP) {
            rc =
                node_error(cur, err, -EINVAL, "is %s, cannot set '%s' under it",
                           type_name(cur), path);
            goto out;
        }
        if (!s->key && cur->type != CPARSL_CNODE_SEQ) {
            rc = node_error(cur, err, -EINVAL,
                            "is %s, not a sequence; cannot set '%s'",
                            type_name(cur), path);
            goto out;
        }
        if (s->key) {
            slot = map_slot(cur, s->key);
        } else if (s->index < cur->len) {
            slot = &cur->kids[s->index];
        } else if (s->index == cur->len) {
            slot = NULL;
        } else {
            rc = node_error(cur, err, -EINVAL,
                            "index %zu is past the end (length %zu)", s->index,
                            cur->len);
            goto out;
        }
        if (!slot || i + 1 == n || is_null(*slot))
            break;
        cur = *slot;
    }

    cparsl_cnode_t *chain = NULL;
    if ((rc = chain_build(cur, steps, i, n, value, &chain, err)) < 0)
        goto out;
    if (slot) {
        node_free(*slot);
        *slot = chain;
    } else if (node_append(cur, chain) < 0) {
        node_free(chain);
        rc = cparsl_error_set(err, -ENOMEM, "out of memory");
    }
out:
    steps_free(steps, n);
    return rc;
}

/* Overlay 'over' (a map) onto 'base' (a map) in place. */
static int node_merge(cparsl_config_t *dst, cparsl_cnode_t *base,
                      const cparsl_cnode_t *over)
{
    for (size_t i = 0; i < over->len; i++) {
        const cparsl_cnode_t *o = over->kids[i];
        cparsl_cnode_t **slot = map_slot(base, o->key);
        if (slot && (*slot)->type == CPARSL_CNODE_MAP &&
            o->type == CPARSL_CNODE_MAP) {
            int rc = node_merge(dst, *slot, o);
            if (rc < 0)
                return rc;
            continue;
        }
        /* Paths agree: both trees are rooted at "" and keyed alike. */
        cparsl_cnode_t *c = node_copy(dst, o);
        if (!c)
            return -ENOMEM;
        if (slot) {
            node_free(*slot);
            *slot = c;
        } else if (node_append(base, c) < 0) {
            node_free(c);
            return -ENOMEM;
        }
    }
    return 0;
}

int cparsl_config_merge(cparsl_config_t *base, const cparsl_config_t *over,
                        cparsl_error_t *err)
{
    if (!base || !over)
        return cparsl_error_set(err, -EINVAL, "config_merge: NULL argument");
    /* Merge into a copy so that running out of memory halfway leaves
     * 'base' untouched (and 'base == over' works). */
    cparsl_cnode_t *root = node_copy(base, base->root);
    if (!root || node_merge(base, root, over->root) < 0) {
        node_free(root);
        return cparsl_error_set(err, -ENOMEM, "config_merge: out of memory");
    }
    node_free(base->root);
    base->root = root;
    return 0;
}

/* ---- emitting YAML ----------------------------------------------------- */

struct outbuf {
    char *data;
    size_t len, cap;
};

static int out_write(void *ctx, unsigned char *bytes, size_t size)
{
    struct outbuf *o = ctx;
    if (o->len + size + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 256;
        while (cap < o->len + size + 1)
            cap *= 2;
        char *d = realloc(o->data, cap);
        if (!d)
            return 0;
        o->data = d;
        o->cap = cap;
    }
    memcpy(o->data + o->len, bytes, size);
    o->len += size;
    o->data[o->len] = '\0';
    return 1;
}

/*
 * libyaml picks plain or quoted by the characters, but it does not know
 * that "~" or "" read back as null: such text that was quoted must stay
 * quoted.  Multi-line values read best as literal blocks; libyaml falls
 * back to double quotes where a block cannot hold the text exactly.
 */
static bool emit_scalar(yaml_emitter_t *em, const char *text, bool value,
                        bool quoted)
{
    yaml_scalar_style_t style = YAML_ANY_SCALAR_STYLE;
    if (quoted && looks_null(text))
        style = YAML_DOUBLE_QUOTED_SCALAR_STYLE;
    else if (value && strchr(text, '\n'))
        style = YAML_LITERAL_SCALAR_STYLE;
    yaml_event_t ev;
    if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)text,
                                      (int)strlen(text), 1, 1, style))
        return false;
    return yaml_emitter_emit(em, &ev);
}

static bool emit_node(yaml_emitter_t *em, const cparsl_cnode_t *n)
{
    yaml_event_t ev;
    switch (n->type) {
    case CPARSL_CNODE_SCALAR:
        return emit_scalar(em, n->text, true, n->quoted);
    case CPARSL_CNODE_SEQ:
        if (!yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
                                                  YAML_ANY_SEQUENCE_STYLE) ||
            !yaml_emitter_emit(em, &ev))
            return false;
        for (size_t i = 0; i < n->len; i++)
            if (!emit_node(em, n->kids[i]))
                return false;
        if (!yaml_sequence_end_event_initialize(&ev))
            return false;
        return yaml_emitter_emit(em, &ev);
    case CPARSL_CNODE_MAP:
        if (!yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1,
                                                 YAML_ANY_MAPPING_STYLE) ||
            !yaml_emitter_emit(em, &ev))
            return false;
        for (size_t i = 0; i < n->len; i++)
            if (!emit_scalar(em, n->kids[i]->key, false, false) ||
                !emit_node(em, n->kids[i]))
                return false;
        if (!yaml_mapping_end_event_initialize(&ev))
            return false;
        return yaml_emitter_emit(em, &ev);
    }
    return false;
}

char *cparsl_config_to_yaml(const cparsl_config_t *cfg)
{
    return cfg ? cparsl_cnode_to_yaml(cfg->root) : NULL;
}

char *cparsl_cnode_to_yaml(const cparsl_cnode_t *node)
{
    if (!node)
        return NULL;
    struct outbuf o = {0};
    yaml_emitter_t em;
    if (!yaml_emitter_initialize(&em))
        return NULL;
    yaml_emitter_set_output(&em, out_write, &o);
    yaml_emitter_set_unicode(&em, 1);
    yaml_emitter_set_width(&em, -1); /* no folding of long values */
    yaml_event_t ev;
    bool ok = yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING) &&
              yaml_emitter_emit(&em, &ev) &&
              yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1) &&
              yaml_emitter_emit(&em, &ev) && emit_node(&em, node) &&
              yaml_document_end_event_initialize(&ev, 1) &&
              yaml_emitter_emit(&em, &ev) &&
              yaml_stream_end_event_initialize(&ev) &&
              yaml_emitter_emit(&em, &ev) && yaml_emitter_flush(&em);
    yaml_emitter_delete(&em);
    if (!ok || !o.data) {
        free(o.data);
        return NULL;
    }
    return o.data;
}
