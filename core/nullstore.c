/*
 * nullstore.c - the store that records nothing: the default until a real
 * store is configured, and the fake for tests.
 */
#include <cparsl/plugin.h>

extern const struct cparsl_store_ops cparsl_store_null_ops;
static cparsl_store_t null_store = {.ops = &cparsl_store_null_ops};

static int null_open(const cparsl_cnode_t *root, const char *run_dir,
                     cparsl_store_t **out, cparsl_error_t *err)
{
    static const char *const keys[] = {"type", NULL};
    (void)run_dir;
    int rc =
        cparsl_cnode_check_keys(cparsl_cnode_get(root, "store"), keys, err);
    if (rc < 0)
        return rc;
    *out = &null_store;
    return 0;
}

static void null_task_event(cparsl_store_t *s, const cparsl_task_event_t *ev)
{
    (void)s;
    (void)ev;
}

static void null_dependency(cparsl_store_t *s, uint64_t child, uint64_t parent)
{
    (void)s;
    (void)child;
    (void)parent;
}

static int null_flush(cparsl_store_t *s, cparsl_error_t *err)
{
    (void)s;
    (void)err;
    return 0;
}

const struct cparsl_store_ops cparsl_store_null_ops = {
    .name = "null",
    .flags = CPARSL_STORE_DISCARDS,
    .open = null_open,
    .task_event = null_task_event,
    .dependency = null_dependency,
    .flush = null_flush,
    .close = null_flush,
};
