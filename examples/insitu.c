/*
 * insitu.c - cparsl embedded in an MPI simulation: in-situ analysis tasks
 * run on a group of ranks of their own while the simulation steps on.
 *
 * The world (at least 4 ranks) is split in two communicators that share
 * world rank 0:
 *
 *   simulation  world ranks 0 .. S-1       (S = size / 2, at least 2)
 *   pilot       world rank 0 and S .. N-1  (cparsl_init_comm: rank 0 is
 *                                           the client, the rest serve)
 *
 * The simulation is 1-D heat diffusion on a ring of S * CELLS cells, each
 * simulation rank holding CELLS of them and trading halo cells with its
 * neighbours.  Every step each rank updates its cells, and MPI_Allreduce
 * on the simulation communicator sums the heat, which the scheme
 * conserves: the final sum must equal the first.  After every step, rank
 * 0 gathers the whole field and submits one analysis task for it (min,
 * max, mean and the variance, which diffusion only lowers), then steps on
 * without waiting: the tasks run on the pilot's ranks while the
 * simulation ranks are in their next MPI_Allreduce.  At the end rank 0
 * checks every analysis result against its own computation of the same
 * field, and prints one summary line.
 *
 * Usage: mpiexec -n 4 insitu [STEPS]   (STEPS defaults to 50)
 * Exits 0 when the simulation and every analysis check out, 1 otherwise.
 */
#include <errno.h>
#include <math.h>
#include <mpi.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cparsl/cparsl.h>
#include <cparsl/mpi.h>

#define CELLS     64   /* per simulation rank */
#define ALPHA     0.25 /* diffusion number; below 0.5 for stability */
#define NSTATS    4    /* min, max, mean, variance */
#define MAX_STEPS 10000

/* The statistics of a field: what the analysis task computes on a worker
 * and what rank 0 computes again to check it. */
static void field_stats(const double *u, size_t n, double out[NSTATS])
{
    double lo = u[0], hi = u[0], sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        lo = u[i] < lo ? u[i] : lo;
        hi = u[i] > hi ? u[i] : hi;
        sum += u[i];
    }
    double mean = sum / (double)n, var = 0.0;
    for (size_t i = 0; i < n; i++)
        var += (u[i] - mean) * (u[i] - mean);
    out[0] = lo;
    out[1] = hi;
    out[2] = mean;
    out[3] = var / (double)n;
}

/* analyze(step, field): [min, max, mean, variance]. */
static int analyze(const cparsl_args_t *args, cparsl_value_t *result,
                   cparsl_error_t *err)
{
    const cparsl_value_t *f = cparsl_arg(args, 1);
    if (f->u.da.n == 0)
        return cparsl_error_set(err, CPARSL_EARGS, "step %lld: empty field",
                                (long long)cparsl_arg_int(args, 0));
    double *out = cparsl_value_new_double_array(result, NSTATS);
    if (!out)
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    field_stats(f->u.da.p, f->u.da.n, out);
    return 0;
}
CPARSL_APP(analyze, analyze, .signature = "iD")

/* One explicit step of u_t = u_xx on this rank's cells, with halos from
 * the neighbours on the ring. */
static void step(MPI_Comm sim, double *u, double *next)
{
    int r, n;
    MPI_Comm_rank(sim, &r);
    MPI_Comm_size(sim, &n);
    int left = (r + n - 1) % n, right = (r + 1) % n;
    double halo_l, halo_r;
    MPI_Sendrecv(&u[CELLS - 1], 1, MPI_DOUBLE, right, 0, &halo_l, 1, MPI_DOUBLE,
                 left, 0, sim, MPI_STATUS_IGNORE);
    MPI_Sendrecv(&u[0], 1, MPI_DOUBLE, left, 1, &halo_r, 1, MPI_DOUBLE, right,
                 1, sim, MPI_STATUS_IGNORE);
    for (int i = 0; i < CELLS; i++) {
        double l = i ? u[i - 1] : halo_l,
               rr = i < CELLS - 1 ? u[i + 1] : halo_r;
        next[i] = u[i] + ALPHA * (l - 2.0 * u[i] + rr);
    }
    memcpy(u, next, sizeof(double) * CELLS);
}

static double local_sum(const double *u)
{
    double s = 0.0;
    for (int i = 0; i < CELLS; i++)
        s += u[i];
    return s;
}

static long parse_steps(int argc, char **argv)
{
    if (argc < 2)
        return 50;
    char *end;
    errno = 0;
    long v = strtol(argv[1], &end, 10);
    if (errno || end == argv[1] || *end || v <= 0 || v > MAX_STEPS)
        return -1;
    return v;
}

int main(int argc, char **argv)
{
    int provided, rank, size;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    long steps = parse_steps(argc, argv);
    if (size < 4 || steps < 0 || provided < MPI_THREAD_MULTIPLE) {
        if (rank == 0)
            fprintf(stderr,
                    "insitu: %s\nusage: mpiexec -n N insitu [STEPS]  (N >= 4, "
                    "1 <= STEPS <= %d)\n",
                    provided < MPI_THREAD_MULTIPLE
                        ? "MPI does not provide MPI_THREAD_MULTIPLE"
                    : size < 4 ? "needs at least 4 ranks"
                               : "STEPS must be a whole number",
                    MAX_STEPS);
        MPI_Finalize();
        return 2;
    }
    int nsim = size / 2;
    bool in_sim = rank < nsim, in_pilot = rank == 0 || rank >= nsim;
    MPI_Comm sim, pilot;
    MPI_Comm_split(MPI_COMM_WORLD, in_sim ? 0 : MPI_UNDEFINED, rank, &sim);
    MPI_Comm_split(MPI_COMM_WORLD, in_pilot ? 0 : MPI_UNDEFINED, rank, &pilot);

    cparsl_error_t err;
    int status = 0;
    if (in_pilot) {
        int role = cparsl_init_comm(pilot, &argc, &argv, NULL, &err);
        if (role < 0) {
            fprintf(stderr, "insitu: rank %d: cparsl_init_comm: %s\n", rank,
                    err.text);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        if (role == CPARSL_SERVED) {
            /* A pilot rank: it served analysis tasks until rank 0
             * finalized. */
            if (cparsl_finalize(&err) < 0) {
                fprintf(stderr, "insitu: rank %d: %s\n", rank, err.text);
                status = 1;
            }
            goto done;
        }
    }

    /* The simulation ranks (rank 0 among them). */
    int srank;
    MPI_Comm_rank(sim, &srank);
    double u[CELLS], next[CELLS];
    for (int i = 0; i < CELLS; i++) /* a hot spot on rank 0's cells */
        u[i] = srank == 0 && i >= CELLS / 4 && i < CELLS / 2 ? 100.0 : 0.0;
    double first = 0.0, total = 0.0, mine = local_sum(u);
    MPI_Allreduce(&mine, &first, 1, MPI_DOUBLE, MPI_SUM, sim);

    size_t ncells = (size_t)nsim * CELLS;
    double *field = rank == 0 ? malloc(sizeof(double) * ncells * steps) : NULL;
    cparsl_future_t **fut = rank == 0 ? calloc(steps, sizeof *fut) : NULL;
    if (rank == 0 && (!field || !fut)) {
        fprintf(stderr, "insitu: out of memory\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    for (long s = 0; s < steps; s++) {
        step(sim, u, next);
        mine = local_sum(u);
        MPI_Allreduce(&mine, &total, 1, MPI_DOUBLE, MPI_SUM, sim);
        double *f = rank == 0 ? field + (size_t)s * ncells : NULL;
        MPI_Gather(u, CELLS, MPI_DOUBLE, f, CELLS, MPI_DOUBLE, 0, sim);
        if (rank == 0) /* and step on while it runs */
            fut[s] = cparsl_submit("analyze", CPARSL_I(s),
                                   CPARSL_V(cparsl_double_array(f, ncells)));
    }

    if (rank == 0) {
        /* The simulation: diffusion conserves the heat. */
        bool sim_ok = fabs(total - first) <= 1e-9 * fabs(first);
        if (!sim_ok) {
            fprintf(stderr,
                    "insitu: heat %.12g after %ld steps, %.12g at "
                    "the start\n",
                    total, steps, first);
            status = 1;
        }
        /* Every analysis against rank 0's own. */
        long good = 0;
        double prev_var = INFINITY;
        for (long s = 0; s < steps; s++) {
            const cparsl_value_t *v;
            double want[NSTATS];
            field_stats(field + (size_t)s * ncells, ncells, want);
            if (cparsl_future_get(fut[s], &v) < 0) {
                fprintf(stderr, "insitu: step %ld: analysis failed: %s\n", s,
                        cparsl_future_errstr(fut[s]));
            } else if (v->type != CPARSL_T_DOUBLE_ARRAY ||
                       v->u.da.n != NSTATS ||
                       memcmp(v->u.da.p, want, sizeof want) != 0) {
                fprintf(stderr,
                        "insitu: step %ld: analysis differs from "
                        "rank 0's\n",
                        s);
            } else if (want[3] > prev_var * (1 + 1e-12)) {
                fprintf(stderr, "insitu: step %ld: variance grew\n", s);
            } else {
                good++;
                prev_var = want[3];
            }
            cparsl_future_decref(fut[s]);
        }
        if (good != steps)
            status = 1;
        printf("insitu simulation_ranks=%d pilot_ranks=%d steps=%ld "
               "heat=%.6f conserved=%s analyses_ok=%ld/%ld\n",
               nsim, size - nsim + 1, steps, total, sim_ok ? "yes" : "no", good,
               steps);
        free(field);
        free(fut);
        if (cparsl_finalize(&err) < 0) {
            fprintf(stderr, "insitu: cparsl_finalize: %s\n", err.text);
            status = 1;
        }
    }
    MPI_Comm_free(&sim);

done:
    if (pilot != MPI_COMM_NULL)
        MPI_Comm_free(&pilot);
    MPI_Finalize();
    return status;
}
