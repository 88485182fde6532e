/*
 * monte_carlo.c - Parsl's Monte Carlo seed workflow: estimate the integral
 * of f(x) = sin x / (x + cos^2 x) over [0, 1] (about 0.363582) as the mean
 * of f over N uniform draws.
 *
 * Each draw is its own task and makes its own random number from its
 * index, so the run is reproducible whatever order the workers take the
 * tasks in.  One "mean" task takes all N futures as arguments: the DFK
 * runs it once every draw is done.
 *
 * Usage: monte_carlo [N]   (N defaults to 100000)
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <cparsl/cparsl.h>

/*
 * splitmix64: a full-period mix of its 64-bit input, good enough to turn
 * consecutive task indices into independent-looking seeds.  A PRNG state
 * per task (rather than one shared rand()) is what keeps draws reproducible
 * and lock-free across worker threads.
 */
static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* Uniform on [0, 1): the top 53 bits fill a double's mantissa exactly. */
static double uniform01(uint64_t *state)
{
    return (double)(splitmix64(state) >> 11) * 0x1.0p-53;
}

static double f(double x)
{
    double c = cos(x);
    return sin(x) / (x + c * c);
}

static int draw(const cparsl_args_t *args, cparsl_value_t *result,
                cparsl_error_t *err)
{
    (void)err;
    uint64_t state = (uint64_t)cparsl_arg_int(args, 0);
    *result = cparsl_double(f(uniform01(&state)));
    return 0;
}
CPARSL_APP(draw, draw, .signature = "i")

static int mean(const cparsl_args_t *args, cparsl_value_t *result,
                cparsl_error_t *err)
{
    size_t n = cparsl_args_count(args);
    if (n == 0)
        return cparsl_error_set(err, CPARSL_EAPP, "mean of no values");
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        const cparsl_value_t *v = cparsl_arg(args, i);
        if (v->type != CPARSL_T_DOUBLE)
            return cparsl_error_set(err, CPARSL_EARGS,
                                    "argument %zu is %s, expected double", i,
                                    cparsl_type_name(v->type));
        sum += v->u.d;
    }
    *result = cparsl_double(sum / (double)n);
    return 0;
}
/* Every argument must be a double; the app checks them itself because a
 * signature cannot say "any number of doubles". */
CPARSL_APP(mean, mean, .signature = "d*")

/* N from argv[1]: a positive integer, else -1. */
static long parse_n(int argc, char **argv)
{
    if (argc < 2)
        return 100000;
    char *end;
    errno = 0;
    long n = strtol(argv[1], &end, 10);
    if (errno || end == argv[1] || *end || n <= 0)
        return -1;
    return n;
}

int main(int argc, char **argv)
{
    cparsl_error_t err;
    int rc = cparsl_init(&argc, &argv, NULL, &err);
    if (rc < 0) {
        fprintf(stderr, "monte_carlo: cparsl_init: %s\n", err.text);
        return 1;
    }
    if (rc == CPARSL_SERVED)
        return cparsl_finalize(NULL) ? 1 : 0;

    int status = 0;
    long n = parse_n(argc, argv);
    if (n < 0) {
        fprintf(stderr,
                "monte_carlo: N must be a positive integer, got "
                "'%s'\nusage: monte_carlo [N]\n",
                argv[1]);
        status = 2;
        goto out;
    }

    cparsl_call_t *c = cparsl_call_create("mean");
    if (!c) {
        fprintf(stderr, "monte_carlo: out of memory\n");
        status = 1;
        goto out;
    }
    for (long i = 0; i < n; i++) {
        cparsl_future_t *d = cparsl_submit("draw", CPARSL_I(i));
        /* A failure here is recorded in the call and fails its future. */
        cparsl_call_arg_future(c, d);
        cparsl_future_decref(d); /* the call holds its own reference */
    }
    cparsl_future_t *m = cparsl_call_submit(c);
    double v = 0.0;
    if (cparsl_future_get_double(m, &v) < 0) {
        fprintf(stderr, "monte_carlo: mean failed: %s\n",
                cparsl_future_errstr(m));
        status = 1;
    } else {
        printf("monte_carlo mean=%.6f\n", v);
        printf("monte_carlo n=%ld\n", n);
    }
    cparsl_future_decref(m);

out:
    if (cparsl_finalize(&err) < 0) {
        fprintf(stderr, "monte_carlo: cparsl_finalize: %s\n", err.text);
        status = 1;
    }
    return status;
}
