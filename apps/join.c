/*
 * join.c - the join app kind: the body runs on a client-side thread and
 * hands back futures; the DFK resolves the join when they are done.
 */
#include <errno.h>

#include <cparsl/plugin.h>

static int join_check(const cparsl_app_t *app, cparsl_error_t *err)
{
    if (!app->join)
        return cparsl_error_set(err, -EINVAL,
                                "join app '%s' has no body (.join)", app->name);
    if (app->walltime > 0)
        return cparsl_error_set(err, -EINVAL,
                                "join app '%s': walltime does not apply to "
                                "join apps (their bodies run on the client)",
                                app->name);
    return 0;
}

static int join_run(cparsl_exec_t *e)
{
    const cparsl_app_t *app = e->args.app;
    cparsl_error_t err;
    err.code = 0;
    err.text[0] = '\0';
    int rc = app->join(&e->args, &e->join, &err);
    if (rc < 0 && err.code == 0)
        cparsl_error_set(&err, rc, "join app '%s' failed: %s", app->name,
                         cparsl_strerror(rc));
    if (err.code)
        cparsl_exec_set_error(e, &err);
    return err.code;
}

const struct cparsl_app_kind cparsl_appkind_join = {
    .name = CPARSL_KIND_JOIN,
    .flags = CPARSL_APPKIND_CLIENT,
    .check = join_check,
    .run = join_run,
};
