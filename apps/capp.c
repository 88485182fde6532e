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
    /* The app writes a full cparsl_error_t; the try keeps one only when it
     * failed (cparsl_exec_t.error). */
    cparsl_error_t err;
    err.code = 0;
    err.text[0] = '\0';
    int rc = app->fn(&e->args, &e->result, &err);
    if (rc < 0 && err.code == 0)
        cparsl_error_set(&err, rc, "app '%s' failed: %s", app->name,
                         cparsl_strerror(rc));
    if (err.code) { /* an error set but 0 returned still fails */
        cparsl_value_clear(&e->result);
        if (err.text[0] == '\0')
            cparsl_error_set(&err, err.code, "app '%s' failed: %s", app->name,
                             cparsl_strerror(err.code));
        cparsl_exec_set_error(e, &err);
    }
    return err.code;
}

const struct cparsl_app_kind cparsl_appkind_c = {
    .name = CPARSL_KIND_C,
    .flags = 0,
    .check = capp_check,
    .run = capp_run,
};
