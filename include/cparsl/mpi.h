/*
 * cparsl/mpi.h - cparsl inside an MPI application (embedding).
 *
 * A simulation that already runs under MPI can give cparsl a communicator
 * of its own instead of the whole launch: the ranks of 'comm' form the
 * pilot (its rank 0 is the client, the others serve tasks), and the rest
 * of the world never calls cparsl.  A rank may be in both, typically
 * world rank 0, which then steps the simulation on its communicator while
 * its tasks run.
 *
 *     MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
 *     MPI_Comm_split(MPI_COMM_WORLD, in_pilot ? 1 : MPI_UNDEFINED, rank,
 *                    &pilot);
 *     if (pilot != MPI_COMM_NULL) {
 *         int role = cparsl_init_comm(pilot, &argc, &argv, NULL, &err);
 *         if (role == CPARSL_SERVED) { cparsl_finalize(&err); ... }
 *     }
 *
 * The application must have initialized MPI with MPI_THREAD_MULTIPLE
 * (cparsl calls MPI from its DFK thread while the application calls it
 * from its own), and finalizes MPI itself after cparsl_finalize.  cparsl
 * duplicates 'comm', so its messages never mix with the application's;
 * 'comm' must stay valid until cparsl_finalize.  Only the extreme_scale
 * executor runs on a communicator (it is the default for one of more
 * than one rank).
 */
#ifndef CPARSL_MPI_H
#define CPARSL_MPI_H

#include <mpi.h>

#include <cparsl/cparsl.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * cparsl_init on the ranks of 'comm' (collective over it): returns
 * CPARSL_CLIENT on its rank 0 and CPARSL_SERVED on the others once the
 * client finalized, or a negative code with the reason in err (MPI not
 * initialized, a thread level below MPI_THREAD_MULTIPLE, a communicator of
 * one rank, or anything cparsl_init can report).
 */
int cparsl_init_comm(MPI_Comm comm, int *argc, char ***argv,
                     const cparsl_config_t *cfg, cparsl_error_t *err);

#ifdef __cplusplus
}
#endif

#endif
