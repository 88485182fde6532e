/*
 * blocks_app.c - the workflow tests/check_blocks.py runs against each
 * provider: an htex executor whose only workers come from the provider's
 * blocks (the config file names it), NTASKS tasks of SLEEP_MS each, then
 * HOLD_S seconds idle (so the strategy can give blocks back) before
 * finalize.  Blocks run this same program in manager mode.
 *
 *   blocks_app CONFIG NTASKS SLEEP_MS HOLD_S ok|fail
 *
 * Under mpiexec with an extreme_scale config it is a pilot whose MPI
 * worker ranks serve beside the blocks (block -1 in the answers).
 *
 * Each task answers [i*i, its block (CPARSL_BLOCK_ID), 1 if it ran inside
 * a scheduler's job (SLURM_JOB_ID, PBS_JOBID or COBALT_JOBID set)].
 * Prints "RESULT ok=.. failed=.. wrong=.. in_job=.. blocks=b:n,..", the
 * first error as "ERROR ...", and exits 0 when every task succeeded (ok)
 * or every task failed because the executor gave up (fail).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cparsl/cparsl.h>

static int app_work(const cparsl_args_t *a, cparsl_value_t *r,
                    cparsl_error_t *err)
{
    int64_t i = cparsl_arg_int(a, 0), ms = cparsl_arg_int(a, 1);
    if (ms > 0)
        usleep((useconds_t)ms * 1000);
    cparsl_value_t *v = cparsl_value_new_list(r, 3);
    if (!v)
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    const char *blk = getenv("CPARSL_BLOCK_ID");
    const char *jobvars[] = {"SLURM_JOB_ID", "PBS_JOBID", "COBALT_JOBID"};
    int in_job = 0;
    for (int k = 0; k < 3; k++) {
        const char *s = getenv(jobvars[k]);
        in_job |= s && *s;
    }
    v[0] = cparsl_int(i * i);
    v[1] = cparsl_int(blk ? atoll(blk) : -1);
    v[2] = cparsl_int(in_job);
    return 0;
}
CPARSL_APP(work, app_work, .signature = "ii")

int main(int argc, char **argv)
{
    cparsl_error_t err;
    if (getenv("CPARSL_HTEX_JOIN")) { /* a block's manager */
        int rc = cparsl_init(NULL, NULL, NULL, &err);
        if (rc != CPARSL_SERVED) {
            fprintf(stderr, "manager: %s\n", err.text);
            return 1;
        }
        return cparsl_finalize(NULL) == 0 ? 0 : 1;
    }
    if (argc != 6) {
        fprintf(stderr,
                "usage: blocks_app CONFIG NTASKS SLEEP_MS HOLD_S ok|fail\n");
        return 2;
    }
    int n = atoi(argv[2]), ms = atoi(argv[3]), hold = atoi(argv[4]);
    bool expect_ok = strcmp(argv[5], "ok") == 0;
    cparsl_config_t *cfg = NULL;
    if (cparsl_config_load_file(&cfg, argv[1], &err) < 0) {
        fprintf(stderr, "blocks_app: %s\n", err.text);
        return 2;
    }
    int rc = cparsl_init(NULL, NULL, cfg, &err);
    cparsl_config_destroy(cfg);
    if (rc == CPARSL_SERVED) /* a worker rank of an MPI pilot */
        return cparsl_finalize(NULL) == 0 ? 0 : 1;
    if (rc != CPARSL_CLIENT) {
        fprintf(stderr, "blocks_app: init: %s\n", err.text);
        return 2;
    }
    printf("RUN_DIR %s\n", cparsl_run_dir());
    fflush(stdout);
    cparsl_future_t **fs = calloc((size_t)n, sizeof *fs);
    for (int i = 0; i < n; i++)
        fs[i] = cparsl_submit("work", CPARSL_I(i), CPARSL_I(ms));
    int ok = 0, failed = 0, wrong = 0, in_job = 0, gave_up = 0;
    int per_block[16] = {0};
    char first_error[CPARSL_ERROR_TEXT] = "";
    for (int i = 0; i < n; i++) {
        const cparsl_value_t *v = NULL;
        if (cparsl_future_get(fs[i], &v) != 0) {
            failed++;
            int code = cparsl_future_error(fs[i]);
            const char *text = cparsl_future_errstr(fs[i]);
            if (code == -CPARSL_EEXECUTOR && strstr(text, "gave up"))
                gave_up++;
            if (!*first_error)
                snprintf(first_error, sizeof first_error, "%s", text);
        } else if (v->u.list.p[0].u.i != (int64_t)i * i) {
            wrong++;
        } else {
            ok++;
            int64_t b = v->u.list.p[1].u.i;
            per_block[b >= 0 && b < 16 ? b : 0]++;
            in_job += (int)v->u.list.p[2].u.i;
        }
        cparsl_future_decref(fs[i]);
    }
    free(fs);
    printf("RESULT ok=%d failed=%d wrong=%d in_job=%d gave_up=%d blocks=", ok,
           failed, wrong, in_job, gave_up);
    for (int b = 0, first = 1; b < 16; b++)
        if (per_block[b]) {
            printf("%s%d:%d", first ? "" : ",", b, per_block[b]);
            first = 0;
        }
    printf("\n");
    if (*first_error)
        printf("ERROR %s\n", first_error);
    printf("IDLE\n");
    fflush(stdout);
    sleep((unsigned)hold);
    rc = cparsl_finalize(&err);
    if (rc < 0)
        fprintf(stderr, "blocks_app: finalize: %s\n", err.text);
    bool good = expect_ok ? ok == n && rc == 0 : gave_up == n;
    return good ? 0 : 1;
}
