/*
 * sort_numbers.c - Parsl's file-input seed workflow: an app reads the
 * numbers in an input File and returns them sorted.
 *
 * Usage: sort_numbers FILE
 *
 * FILE holds numbers separated by spaces or newlines.  The path goes to
 * the app as one of its inputs (Parsl's inputs=[File(...)]), not as an
 * argument, so the framework knows the task reads it.  A token that is
 * not a number fails the task with a message naming the file and the
 * token, which is printed, and the program exits 1.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cparsl/cparsl.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* A growable array of the numbers read so far. */
struct numbers {
    double *v;
    size_t n, cap;
};

static int numbers_push(struct numbers *nums, double x)
{
    if (nums->n == nums->cap) {
        size_t cap = nums->cap ? 2 * nums->cap : 64;
        double *v = realloc(nums->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        nums->v = v;
        nums->cap = cap;
    }
    nums->v[nums->n++] = x;
    return 0;
}

/* Read every number in 'path' into 'nums'; 0 or an error in 'err'. */
static int read_numbers(const char *path, struct numbers *nums,
                        cparsl_error_t *err)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return cparsl_error_set(err, -errno, "cannot open %s: %s", path,
                                strerror(errno));
    int rc = 0;
    char tok[64];
    size_t ntok = 0;
    /* The width keeps an absurdly long token from overflowing 'tok'; its
     * first 63 bytes are then not a number on their own either. */
    while (fscanf(fp, "%63s", tok) == 1) {
        ntok++;
        char *end;
        errno = 0;
        double x = strtod(tok, &end);
        /* NaN sorts nowhere, and infinities are more likely typos. */
        if (end == tok || *end || errno == ERANGE || !isfinite(x)) {
            rc = cparsl_error_set(err, CPARSL_EAPP,
                                  "%s: token %zu '%s' is not a number", path,
                                  ntok, tok);
            break;
        }
        if ((rc = numbers_push(nums, x)) < 0) {
            cparsl_error_set(err, rc, "%s: out of memory", path);
            break;
        }
    }
    if (rc == 0 && ferror(fp))
        rc = cparsl_error_set(err, -EIO, "cannot read %s", path);
    fclose(fp);
    return rc;
}

static int sort_numbers(const cparsl_args_t *args, cparsl_value_t *result,
                        cparsl_error_t *err)
{
    if (cparsl_args_ninputs(args) != 1)
        return cparsl_error_set(err, CPARSL_EARGS,
                                "sort_numbers takes one input file, got %zu",
                                cparsl_args_ninputs(args));
    struct numbers nums = {0};
    int rc = read_numbers(cparsl_args_input(args, 0), &nums, err);
    if (rc == 0) {
        qsort(nums.v, nums.n, sizeof *nums.v, cmp_double);
        double *out = cparsl_value_new_double_array(result, nums.n);
        if (out && nums.n)
            memcpy(out, nums.v, nums.n * sizeof *out);
        else if (!out)
            rc = cparsl_error_set(err, -ENOMEM, "out of memory");
    }
    free(nums.v);
    return rc;
}
CPARSL_APP(sort_numbers, sort_numbers, .signature = "")

int main(int argc, char **argv)
{
    cparsl_error_t err;
    int rc = cparsl_init(&argc, &argv, NULL, &err);
    if (rc < 0) {
        fprintf(stderr, "sort_numbers: cparsl_init: %s\n", err.text);
        return 1;
    }
    if (rc == CPARSL_SERVED)
        return cparsl_finalize(NULL) ? 1 : 0;

    int status = 0;
    if (argc != 2) {
        fprintf(stderr, "usage: sort_numbers FILE\n");
        status = 2;
        goto out;
    }
    cparsl_call_t *c = cparsl_call_create("sort_numbers");
    if (!c) {
        fprintf(stderr, "sort_numbers: out of memory\n");
        status = 1;
        goto out;
    }
    cparsl_call_input(c, argv[1]);
    cparsl_future_t *f = cparsl_call_submit(c);
    const cparsl_value_t *v = NULL;
    if (cparsl_future_get(f, &v) < 0) {
        fprintf(stderr, "sort_numbers: %s\n", cparsl_future_errstr(f));
        status = 1;
    } else if (v->type != CPARSL_T_DOUBLE_ARRAY) {
        fprintf(stderr,
                "sort_numbers: the app returned %s, not a double "
                "array\n",
                cparsl_type_name(v->type));
        status = 1;
    } else {
        printf("sort_numbers sorted=");
        for (size_t i = 0; i < v->u.da.n; i++)
            printf(i ? " %g" : "%g", v->u.da.p[i]);
        printf("\n");
    }
    cparsl_future_decref(f);

out:
    if (cparsl_finalize(&err) < 0) {
        fprintf(stderr, "sort_numbers: cparsl_finalize: %s\n", err.text);
        status = 1;
    }
    return status;
}
