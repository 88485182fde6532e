/*
 * hello.c - Parsl's first example: an app that returns "Hello World!".
 *
 * Submitting returns a future at once; whether it is done by the time we
 * look depends on how fast a worker picked the task up, so the done state
 * is printed as found, the way Parsl prints it (False / True).
 */
#include <stdio.h>

#include <cparsl/cparsl.h>

static int hello_world(const cparsl_args_t *args, cparsl_value_t *result,
                       cparsl_error_t *err)
{
    (void)args;
    /* The result must own its text: it outlives this call. */
    int rc = cparsl_value_set_string(result, "Hello World!");
    if (rc < 0)
        return cparsl_error_set(err, rc, "out of memory");
    return 0;
}
CPARSL_APP(hello_world, hello_world, .signature = "")

int main(int argc, char **argv)
{
    cparsl_error_t err;
    int rc = cparsl_init(&argc, &argv, NULL, &err);
    if (rc < 0) {
        fprintf(stderr, "hello: cparsl_init: %s\n", err.text);
        return 1;
    }
    /* Under MPI the other ranks serve workers and end here. */
    if (rc == CPARSL_SERVED)
        return cparsl_finalize(NULL) ? 1 : 0;

    int status = 0;
    cparsl_future_t *f = cparsl_submitv("hello_world", 0, NULL);
    printf("hello done=%s\n", cparsl_future_done(f) ? "True" : "False");

    const char *text = NULL;
    rc = cparsl_future_get_string(f, &text);
    if (rc < 0) {
        fprintf(stderr, "hello: task failed: %s\n", cparsl_future_errstr(f));
        status = 1;
    } else {
        printf("hello result=%s\n", text);
    }
    cparsl_future_decref(f);

    if (cparsl_finalize(&err) < 0) {
        fprintf(stderr, "hello: cparsl_finalize: %s\n", err.text);
        status = 1;
    }
    return status;
}
