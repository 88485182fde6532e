/*
 * launch.c - what the launcher's environment says about this process, and
 * small clock helpers.
 *
 * The size of a launch is read only from variables that carry it
 * (OMPI_COMM_WORLD_SIZE, PMI_SIZE, SLURM_STEP_NUM_TASKS): PMIX_RANK or
 * SLURM_STEP_ID alone say nothing about size.  MPI is never initialized
 * here; calling MPI_Init without a launcher forks an orted, which fails on
 * some login nodes.
 */
#include <stdlib.h>
#include <time.h>

#include <cparsl/plugin.h>

static int env_int(const char *name, int *out)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < 0 || v > 1 << 30)
        return 0;
    *out = (int)v;
    return 1;
}

void cparsl_launch_detect(cparsl_launch_t *out)
{
    static const struct {
        const char *size, *rank;
    } vars[] = {
        {"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"},
        {"PMI_SIZE", "PMI_RANK"},
        {"SLURM_STEP_NUM_TASKS", "SLURM_PROCID"},
    };
    out->size = 1;
    out->rank = 0;
    out->source = NULL;
    out->comm = NULL;
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        int size;
        if (env_int(vars[i].size, &size) && size >= 1) {
            out->size = size;
            out->source = vars[i].size;
            if (!env_int(vars[i].rank, &out->rank))
                out->rank = 0;
            return;
        }
    }
}

int64_t cparsl_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t cparsl_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int cparsl_executor_enosys_scale(cparsl_executor_t *ex, unsigned blocks)
{
    (void)ex;
    (void)blocks;
    return -CPARSL_ENOSYS;
}

int cparsl_executor_enosys_drain(cparsl_executor_t *ex)
{
    (void)ex;
    return -CPARSL_ENOSYS;
}

int cparsl_executor_enosys_serve(cparsl_executor_t *ex, cparsl_error_t *err)
{
    (void)ex;
    return cparsl_error_set(err, CPARSL_ENOSYS,
                            "this executor has no serving ranks");
}
