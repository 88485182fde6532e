/*
 * test_embed.c - cparsl on a communicator an MPI application gives it
 * (include/cparsl/mpi.h), as one MPI job per case:
 *
 *   mpiexec -n 2 test_embed errors
 *   mpiexec -n 4 test_embed private_comm
 *
 *   errors        what cparsl_init_comm refuses, each with a clear error:
 *                 a thread level below MPI_THREAD_MULTIPLE, MPI_COMM_NULL,
 *                 a one-rank communicator
 *   private_comm  world rank 1 stays out of the pilot {0, 2, 3}; while
 *                 tasks run, rank 0 sends itself messages on the very
 *                 communicator it gave cparsl, with cparsl's own tag, and
 *                 gets every one back (cparsl works on a duplicate); every
 *                 task's answer is checked
 *
 * (examples/insitu.c is the full embedding: a simulation beside a pilot.)
 */
#include <errno.h>
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#include <cparsl/cparsl.h>
#include <cparsl/mpi.h>

#include "check.h"

static int triple(const cparsl_args_t *args, cparsl_value_t *result,
                  cparsl_error_t *err)
{
    (void)err;
    *result = cparsl_int(3 * cparsl_arg_int(args, 0));
    return 0;
}
CPARSL_APP(triple, triple, .signature = "i")

TEST_CASE(errors)
{
    int provided = 0, rank;
    MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    cparsl_error_t err;
    int rc;
    if (provided < MPI_THREAD_MULTIPLE) {
        rc = cparsl_init_comm(MPI_COMM_WORLD, NULL, NULL, NULL, &err);
        CHECK(rc == -CPARSL_ETRANSPORT, "thread level: %d %s", rc, err.text);
        CHECK(strstr(err.text, "MPI_THREAD_MULTIPLE") != NULL,
              "the error does not name the level: %s", err.text);
    }
    rc = cparsl_init_comm(MPI_COMM_NULL, NULL, NULL, NULL, &err);
    CHECK(rc == -EINVAL, "MPI_COMM_NULL: %d %s", rc, err.text);
    CHECK(strstr(err.text, "MPI_COMM_NULL") != NULL, "%s", err.text);
    CHECK(!cparsl_initialized(), "cparsl runs after a refused init");
    MPI_Finalize();
    /* After MPI_Finalize: refused, not a crash. */
    rc = cparsl_init_comm(MPI_COMM_SELF, NULL, NULL, NULL, &err);
    CHECK(rc == -CPARSL_ELAUNCH, "after MPI_Finalize: %d %s", rc, err.text);
    (void)rank;
}

TEST_CASE(one_rank)
{
    int provided = 0;
    MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &provided);
    cparsl_error_t err;
    int rc = cparsl_init_comm(MPI_COMM_SELF, NULL, NULL, NULL, &err);
    CHECK(rc == -CPARSL_ELAUNCH, "one rank: %d %s", rc, err.text);
    CHECK(strstr(err.text, "one rank") != NULL, "%s", err.text);
    MPI_Finalize();
}

TEST_CASE(private_comm)
{
    int provided = 0, rank, size;
    MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &provided);
    REQUIRE(provided >= MPI_THREAD_MULTIPLE, "no MPI_THREAD_MULTIPLE");
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    REQUIRE(size == 4, "run with 4 ranks");
    MPI_Comm pilot;
    MPI_Comm_split(MPI_COMM_WORLD, rank == 1 ? MPI_UNDEFINED : 0, rank, &pilot);
    if (rank == 1) { /* not in the pilot: cparsl never sees this rank */
        CHECK(pilot == MPI_COMM_NULL, "rank 1 got a communicator");
        MPI_Barrier(MPI_COMM_WORLD);
        MPI_Finalize();
        return;
    }
    cparsl_error_t err;
    int role = cparsl_init_comm(pilot, NULL, NULL, NULL, &err);
    REQUIRE(role > 0, "rank %d: cparsl_init_comm: %d %s", rank, role, err.text);
    if (role == CPARSL_SERVED) {
        CHECK(rank == 2 || rank == 3, "world rank %d served", rank);
        CHECK(cparsl_finalize(&err) == 0, "%s", err.text);
    } else {
        CHECK(rank == 0, "the client is world rank %d", rank);
        CHECK(cparsl_capacity() == 2, "capacity %zu, expected 2",
              cparsl_capacity());
        enum { N = 2000, MSGS = 200 };
        static cparsl_future_t *f[N];
        for (int i = 0; i < N; i++)
            f[i] = cparsl_submit("triple", CPARSL_I(i));
        /* Our own traffic on the communicator we gave away, with the tag
         * cparsl's transport uses (1), while the tasks run. */
        int got = 0;
        for (int k = 0; k < MSGS; k++) {
            int out = k, in = -1;
            MPI_Sendrecv(&out, 1, MPI_INT, 0, 1, &in, 1, MPI_INT, 0, 1, pilot,
                         MPI_STATUS_IGNORE);
            got += in == k;
        }
        CHECK(got == MSGS, "%d of %d of our own messages came back", got, MSGS);
        int bad = 0;
        for (int i = 0; i < N; i++) {
            int64_t v = -1;
            if (cparsl_future_get_int(f[i], &v) < 0 || v != 3 * i)
                bad++;
            cparsl_future_decref(f[i]);
        }
        CHECK(bad == 0, "%d of %d answers wrong", bad, N);
        CHECK(cparsl_finalize(&err) == 0, "%s", err.text);
    }
    MPI_Comm_free(&pilot);
    MPI_Barrier(MPI_COMM_WORLD);
    MPI_Finalize();
}

static const check_case_t cases[] = {
    TEST_ENTRY(errors),
    TEST_ENTRY(one_rank),
    TEST_ENTRY(private_comm),
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return check_main(argc, argv, cases);
}
