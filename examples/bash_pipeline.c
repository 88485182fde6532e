/*
 * bash_pipeline.c - Parsl's bash-app seed workflow: five bash tasks each
 * write a random integer in 1..10 to r0.txt .. r4.txt (in the current
 * directory), and one C task sums the five files.
 *
 * The files are declared as outputs, so each bash task's future hands out
 * a DataFuture per file; passing those as the total task's inputs is what
 * orders it after the writers.  Afterwards the program reads the files
 * again itself and checks the total against them.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <cparsl/cparsl.h>

#define NFILES 5

CPARSL_BASH_APP(random_number, "echo $(( RANDOM % 10 + 1 )) > {outputs[0]}",
                .signature = "")

/* Read the one integer in 'path' into *out: 0, or a negative code with a
 * message naming the file in 'err'. */
static int read_number(const char *path, int64_t *out, cparsl_error_t *err)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return cparsl_error_set(err, -errno, "cannot open %s: %s", path,
                                strerror(errno));
    long long v = 0;
    char extra;
    int n = fscanf(fp, "%lld", &v);
    /* Anything but whitespace after the number means a garbled file. */
    int trailing = n == 1 ? fscanf(fp, " %c", &extra) : 0;
    fclose(fp);
    if (n != 1 || trailing == 1)
        return cparsl_error_set(err, CPARSL_EAPP,
                                "%s does not hold exactly one integer", path);
    *out = v;
    return 0;
}

static int total(const cparsl_args_t *args, cparsl_value_t *result,
                 cparsl_error_t *err)
{
    int64_t sum = 0;
    for (size_t i = 0; i < cparsl_args_ninputs(args); i++) {
        int64_t v = 0;
        int rc = read_number(cparsl_args_input(args, i), &v, err);
        if (rc < 0)
            return rc;
        sum += v;
    }
    *result = cparsl_int(sum);
    return 0;
}
CPARSL_APP(total, total, .signature = "")

/* Submit the writers and the total; 0, or 1 after printing why not. */
static int run(void)
{
    cparsl_future_t *writers[NFILES] = {NULL};
    cparsl_call_t *t = cparsl_call_create("total");
    if (!t) {
        fprintf(stderr, "bash_pipeline: out of memory\n");
        return 1;
    }
    for (int i = 0; i < NFILES; i++) {
        char path[32];
        snprintf(path, sizeof path, "r%d.txt", i);
        cparsl_call_t *c = cparsl_call_create("random_number");
        if (!c) {
            fprintf(stderr, "bash_pipeline: out of memory\n");
            cparsl_call_cancel(t);
            for (int j = 0; j < i; j++)
                cparsl_future_decref(writers[j]);
            return 1;
        }
        cparsl_call_output(c, path);
        writers[i] = cparsl_call_submit(c);
        cparsl_future_t *df = cparsl_future_output(writers[i], 0);
        /* NULL only if the call failed before it had outputs; the total
         * then reports its own error. */
        cparsl_call_input_future(t, df);
        cparsl_future_decref(df); /* the call holds its own reference */
    }
    cparsl_future_t *tf = cparsl_call_submit(t);

    int status = 0;
    int64_t sum = 0;
    if (cparsl_future_get_int(tf, &sum) < 0) {
        fprintf(stderr, "bash_pipeline: total failed: %s\n",
                cparsl_future_errstr(tf));
        status = 1;
    }
    /* The total has waited for every writer; a writer's failure shows up
     * above as a dependency failure, but report each one by name too. */
    for (int i = 0; i < NFILES; i++) {
        if (cparsl_future_error(writers[i]) < 0) {
            fprintf(stderr, "bash_pipeline: writer of r%d.txt failed: %s\n", i,
                    cparsl_future_errstr(writers[i]));
            status = 1;
        }
        cparsl_future_decref(writers[i]);
    }
    cparsl_future_decref(tf);
    if (status)
        return status;

    /* Check the total against the files as they are now. */
    int64_t vals[NFILES], check = 0;
    for (int i = 0; i < NFILES; i++) {
        char path[32];
        snprintf(path, sizeof path, "r%d.txt", i);
        cparsl_error_t err;
        if (read_number(path, &vals[i], &err) < 0) {
            fprintf(stderr, "bash_pipeline: %s\n", err.text);
            return 1;
        }
        if (vals[i] < 1 || vals[i] > 10) {
            fprintf(stderr, "bash_pipeline: %s holds %" PRId64 ", not 1..10\n",
                    path, vals[i]);
            return 1;
        }
        check += vals[i];
    }
    printf("bash_pipeline");
    for (int i = 0; i < NFILES; i++)
        printf(" r%d=%" PRId64, i, vals[i]);
    printf("\n");
    printf("bash_pipeline total=%" PRId64 "\n", sum);
    if (sum != check) {
        fprintf(stderr,
                "bash_pipeline: total %" PRId64 " != %" PRId64
                ", the sum of the files\n",
                sum, check);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    cparsl_error_t err;
    int rc = cparsl_init(&argc, &argv, NULL, &err);
    if (rc < 0) {
        fprintf(stderr, "bash_pipeline: cparsl_init: %s\n", err.text);
        return 1;
    }
    if (rc == CPARSL_SERVED)
        return cparsl_finalize(NULL) ? 1 : 0;

    int status = run();
    if (cparsl_finalize(&err) < 0) {
        fprintf(stderr, "bash_pipeline: cparsl_finalize: %s\n", err.text);
        status = 1;
    }
    return status;
}
