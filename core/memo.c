/*
 * memo.c - memoization (Parsl's app_cache / cache=True) and the table
 * that checkpoints of earlier runs are loaded into.
 *
 * The key of a call is the canonical encoding of (app name, app version,
 * positional arguments, keyword arguments, inputs, outputs) after its
 * dependencies resolved.  An app's version defaults to the GNU build-id
 * of the object its function lives in (the program itself for bash
 * apps, whose command template joins the key as well), so a rebuilt app
 * does not reuse an earlier build's checkpointed results.  XXH3 finds
 * candidates and the full bytes are compared, so a hash collision can
 * never return another call's result.  The table lives on the DFK thread
 * only.  An identical call that arrives while the first still runs waits
 * for it instead of running again.
 */
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "internal.h"
#include "log.h"
#include "memo.h"

uint64_t cparsl__memo_hash(const void *key, size_t len)
{
    return XXH3_64bits(key, len);
}

/* ---- the default app version: a GNU build-id ------------------------- */

struct buildid_search {
    uintptr_t base; /* the object's load address; 0: the program */
    bool found;
    char hex[2 * 64 + 1];
};

static int buildid_in(struct dl_phdr_info *info, size_t size, void *arg)
{
    struct buildid_search *q = arg;
    (void)size;
    /* The program is the first object dl_iterate_phdr reports. */
    if (q->base ? info->dlpi_addr != q->base : info->dlpi_name[0] != '\0')
        return q->base ? 0 : 1;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE)
            continue;
        const unsigned char *p =
            (const unsigned char *)(info->dlpi_addr + ph->p_vaddr);
        const unsigned char *end = p + ph->p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *n = (const ElfW(Nhdr) *)(const void *)p;
            size_t name_sz = (n->n_namesz + 3u) & ~3u;
            size_t desc_sz = (n->n_descsz + 3u) & ~3u;
            const unsigned char *name = p + sizeof *n;
            const unsigned char *desc = name + name_sz;
            if (desc + desc_sz > end)
                break;
            if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 &&
                memcmp(name, "GNU", 4) == 0 && n->n_descsz <= 64) {
                for (size_t k = 0; k < n->n_descsz; k++)
                    snprintf(q->hex + 2 * k, 3, "%02x", desc[k]);
                q->found = true;
                return 1;
            }
            p = desc + desc_sz;
        }
    }
    return 1;
}

/* The build-id of the object holding 'fn' (NULL: the program), in hex;
 * "" when the object was linked without one. */
static void buildid_of(void (*fn)(void), char *out, size_t cap)
{
    struct buildid_search q = {0};
    Dl_info di;
    void *addr;
    memcpy(&addr, &fn, sizeof addr);
    if (fn && dladdr(addr, &di) && di.dli_fbase)
        q.base = (uintptr_t)di.dli_fbase;
    dl_iterate_phdr(buildid_in, &q);
    if (!q.found && q.base) { /* the main program maps at its own base */
        q.base = 0;
        dl_iterate_phdr(buildid_in, &q);
    }
    snprintf(out, cap, "%s", q.found ? q.hex : "");
}

static char program_build_id[2 * 64 + 1];

static void program_build_id_find(void)
{
    buildid_of(NULL, program_build_id, sizeof program_build_id);
}

const char *cparsl_program_build_id(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, program_build_id_find);
    return program_build_id;
}

/* Apps seen, with their versions: an open-addressed table by pointer. */
#define VERSION_SLOTS 1024
static struct {
    const cparsl_app_t *app;
    char version[2 * 64 + 8];
} versions[VERSION_SLOTS];

static const char *app_version(const cparsl_app_t *app)
{
    if (app->version)
        return app->version;
    size_t h = ((uintptr_t)app >> 4) & (VERSION_SLOTS - 1);
    for (size_t i = 0; i < VERSION_SLOTS; i++) {
        size_t j = (h + i) & (VERSION_SLOTS - 1);
        if (versions[j].app == app)
            return versions[j].version;
        if (versions[j].app)
            continue;
        char hex[2 * 64 + 1];
        void (*fn)(void) = NULL;
        if (app->fn)
            memcpy(&fn, &app->fn, sizeof fn);
        else if (app->join)
            memcpy(&fn, &app->join, sizeof fn);
        buildid_of(fn, hex, sizeof hex);
        if (!*hex)
            CPARSL_LOG(CPARSL_LOG_WARN, "memo",
                       "app '%s' has no version and its program has no "
                       "GNU build-id (linked with --build-id=none?): a "
                       "rebuilt program would reuse its checkpointed "
                       "results; give the app a version",
                       app->name);
        versions[j].app = app;
        snprintf(versions[j].version, sizeof versions[j].version, "build:%s",
                 hex);
        CPARSL_LOG(CPARSL_LOG_INFO, "memo",
                   "app '%s' is memoized under version %s (its object's GNU "
                   "build-id)",
                   app->name, versions[j].version);
        return versions[j].version;
    }
    return ""; /* more than VERSION_SLOTS apps: rare, and still correct */
}

/* ---- keys ---------------------------------------------------------------- */

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
    cparsl_value_t parts[7] = {
        cparsl_str(app->name),
        cparsl_str(app_version(app)),
        cparsl_str(app->command ? app->command : ""),
        cparsl_list(items, named_at),
        cparsl_list(items + named_at, files_at - named_at),
        cparsl_list(items + files_at, outs_at - files_at),
        cparsl_list(items + outs_at, k - outs_at),
    };
    cparsl_value_t key = cparsl_list(parts, 7);
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

/* ---- the table ----------------------------------------------------------- */

static bool grow(cparsl__memo_t *m)
{
    if (m->n * 2 < m->cap)
        return true;
    size_t cap = m->cap ? m->cap * 2 : 256;
    struct cparsl__memo_entry *v = calloc(cap, sizeof *v);
    if (!v)
        return false;
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
    return true;
}

/* The slot holding the key, or the free slot where it would go. */
static size_t slot_of(const cparsl__memo_t *m, uint64_t h, const void *key,
                      size_t len)
{
    size_t j = h & (m->cap - 1);
    for (; m->v[j].key; j = (j + 1) & (m->cap - 1)) {
        const struct cparsl__memo_entry *x = &m->v[j];
        if (x->hash == h && x->len == len && memcmp(x->key, key, len) == 0)
            break;
    }
    return j;
}

const struct cparsl__memo_entry *cparsl__memo_find(const cparsl__memo_t *m,
                                                   const void *key, size_t len)
{
    if (!m->cap)
        return NULL;
    size_t j = slot_of(m, cparsl__memo_hash(key, len), key, len);
    return m->v[j].key ? &m->v[j] : NULL;
}

const struct cparsl__memo_entry *cparsl__memo_find_or_add(cparsl__memo_t *m,
                                                          unsigned char *key,
                                                          size_t len,
                                                          cparsl_future_t *f)
{
    if (!grow(m)) {
        free(key);
        return NULL; /* no room: run the call, uncached */
    }
    uint64_t h = cparsl__memo_hash(key, len);
    size_t j = slot_of(m, h, key, len);
    if (m->v[j].key) {
        free(key);
        if (m->v[j].f)
            m->hits++;
        else
            m->saved_hits++;
        return &m->v[j];
    }
    m->v[j] = (struct cparsl__memo_entry){
        .hash = h, .key = key, .len = len, .f = cparsl_future_incref(f)};
    m->n++;
    return NULL;
}

int cparsl__memo_add_saved(cparsl__memo_t *m, const void *key, size_t len,
                           const void *result, size_t rlen, uint64_t task_id)
{
    if (!grow(m))
        return -ENOMEM;
    uint64_t h = cparsl__memo_hash(key, len);
    size_t j = slot_of(m, h, key, len);
    if (m->v[j].key)
        return 0;
    unsigned char *p = malloc(len + rlen ? len + rlen : 1);
    if (!p)
        return -ENOMEM;
    memcpy(p, key, len);
    if (rlen)
        memcpy(p + len, result, rlen);
    m->v[j] = (struct cparsl__memo_entry){.hash = h,
                                          .key = p,
                                          .len = len,
                                          .saved = p + len,
                                          .saved_len = rlen,
                                          .saved_id = task_id};
    m->n++;
    m->loaded++;
    return 0;
}

void cparsl__memo_clear(cparsl__memo_t *m)
{
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->v[i].key)
            continue;
        free(m->v[i].key);
        if (m->v[i].f)
            cparsl_future_decref(m->v[i].f);
    }
    free(m->v);
    memset(m, 0, sizeof *m);
}
