/*
 * capp.c - the C app kind: a registered C function called on the worker
 * thread with the resolved arguments.
 */
#include <errno.h>

#include <cparsl/plugin.h>

static int capp_check(const cparsl_app_t *app, cparsl_error_t *err)
{
    if (!app->fn)
        return cparsl_error_set(err, -EINVAL,
                                "C app '%s' has no function (.fn)", app->name);
    return 0;
}

static int capp_run(cparsl_exec_t *e)
{
    const cparsl_app_t *app = e->args.app;
    int rc = app->fn(&e->args, &e->result, &e->error);
    if (rc < 0 && e->error.code == 0)
        cparsl_error_set(&e->error, rc, "app '%s' failed: %s", app->name,
                         cparsl_strerror(rc));
    else if (rc >= 0 && e->error.code != 0)
        rc = e->error.code; /* an error set but 0 returned still fails */
    if (e->error.code) {
        cparsl_value_clear(&e->result);
        if (e->error.text[0] == '\0')
            cparsl_error_set(&e->error, e->error.code, "app '%s' failed: %s",
                             app->name, cparsl_strerror(e->error.code));
    }
    return e->error.code;
}

const struct cparsl_app_kind cparsl_appkind_c = {
    .name = CPARSL_KIND_C,
    .flags = 0,
    .check = capp_check,
    .run = capp_run,
};
