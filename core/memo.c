/*
 * memo.c - in-run memoization (Parsl's app_cache / cache=True).
 *
 * The key of a call is the canonical encoding of (app name, app version,
 * positional arguments, keyword arguments, inputs, outputs) after its
 * dependencies resolved; a 64-bit hash finds candidates and the full
 * bytes are compared, so a hash collision can never return another
 * call's result.  The table lives on the DFK thread only.  An identical
 * call that arrives while the first still runs waits for it instead of
 * running again.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "memo.h"

static uint64_t hash_bytes(const unsigned char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

int cparsl__memo_key(const cparsl__task_t *t, unsigned char **out, size_t *len)
{
    const cparsl_exec_t *e = &t->exec;
    size_t nnamed = e->args.nnamed;
    size_t n = e->args.npos + 2 * nnamed + e->args.ninputs + e->args.noutputs;
    cparsl_value_t *items = malloc((n ? n : 1) * sizeof *items);
    if (!items)
        return -ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < e->args.npos; i++)
        items[k++] = e->args.pos[i].value;
    size_t named_at = k;
    for (size_t i = 0; i < nnamed; i++) {
        items[k++] = cparsl_str(e->args.named[i].name);
        items[k++] = e->args.named[i].value;
    }
    size_t files_at = k;
    for (size_t i = 0; i < e->args.ninputs; i++)
        items[k++] = e->args.inputs[i];
    size_t outs_at = k;
    for (size_t i = 0; i < e->args.noutputs; i++)
        items[k++] = e->args.outputs[i];
    const cparsl_app_t *app = t->app;
    cparsl_value_t parts[6] = {
        cparsl_str(app->name),
        cparsl_str(app->version ? app->version : ""),
        cparsl_list(items, named_at),
        cparsl_list(items + named_at, files_at - named_at),
        cparsl_list(items + files_at, outs_at - files_at),
        cparsl_list(items + outs_at, k - outs_at),
    };
    cparsl_value_t key = cparsl_list(parts, 6);
    size_t need = cparsl_value_encoded_size(&key);
    int rc = -EINVAL;
    unsigned char *buf = need ? malloc(need) : NULL;
    if (need && !buf)
        rc = -ENOMEM;
    else if (buf && (rc = cparsl_value_encode(&key, buf, need, len)) < 0) {
        free(buf);
        buf = NULL;
    }
    free(items);
    *out = buf;
    return buf ? 0 : rc;
}

cparsl_future_t *cparsl__memo_find_or_add(cparsl__memo_t *m, unsigned char *key,
                                          size_t len, cparsl_future_t *f)
{
    uint64_t h = hash_bytes(key, len);
    if (m->n * 2 >= m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 256;
        struct cparsl__memo_entry *v = calloc(cap, sizeof *v);
        if (!v) {
            free(key);
            return NULL; /* no room: run the call, uncached */
        }
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->v[i].key)
                continue;
            size_t j = m->v[i].hash & (cap - 1);
            while (v[j].key)
                j = (j + 1) & (cap - 1);
            v[j] = m->v[i];
        }
        free(m->v);
        m->v = v;
        m->cap = cap;
    }
    size_t j = h & (m->cap - 1);
    for (; m->v[j].key; j = (j + 1) & (m->cap - 1)) {
        struct cparsl__memo_entry *x = &m->v[j];
        if (x->hash == h && x->len == len && memcmp(x->key, key, len) == 0) {
            free(key);
            m->hits++;
            return x->f;
        }
    }
    m->v[j] = (struct cparsl__memo_entry){
        .hash = h, .key = key, .len = len, .f = cparsl_future_incref(f)};
    m->n++;
    return NULL;
}

void cparsl__memo_clear(cparsl__memo_t *m)
{
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->v[i].key)
            continue;
        free(m->v[i].key);
        cparsl_future_decref(m->v[i].f);
    }
    free(m->v);
    memset(m, 0, sizeof *m);
}
