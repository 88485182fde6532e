/*
 * slurm.c - blocks from Slurm: sbatch, squeue, scancel.
 *
 *   submit   sbatch --parsable SCRIPT        -> "<id>" or "<id>;<cluster>"
 *   status   squeue --noheader --states=all --format="%i %T" --jobs=ID,...
 *   cancel   scancel ID ...
 *
 * squeue lists finished jobs for MinJobAge seconds (300 by default);
 * after that, and for ids it never knew, a job is missing.  When none of
 * the ids is known squeue exits 1 with "Invalid job id specified".
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cparsl/provider.h>

#include "cmd.h"

static int slurm_directives(const cparsl_provider_t *p,
                            const cparsl_block_req_t *b, FILE *out,
                            cparsl_error_t *err)
{
    (void)err;
    fprintf(out, "#SBATCH --job-name=%s\n", b->name);
    fprintf(out, "#SBATCH --output=%s\n", b->out);
    fprintf(out, "#SBATCH --error=%s\n", b->err);
    fprintf(out, "#SBATCH --nodes=%d\n", p->nodes_per_block);
    fprintf(out, "#SBATCH --ntasks-per-node=%d\n", p->tasks_per_node);
    if (p->cpus_per_node > 1)
        fprintf(out, "#SBATCH --cpus-per-task=%d\n",
                (p->cpus_per_node + p->tasks_per_node - 1) / p->tasks_per_node);
    fprintf(out, "#SBATCH --time=%s\n", p->walltime);
    if (p->exclusive)
        fputs("#SBATCH --exclusive\n", out);
    if (p->queue)
        fprintf(out, "#SBATCH --partition=%s\n", p->queue);
    if (p->account)
        fprintf(out, "#SBATCH --account=%s\n", p->account);
    if (p->qos)
        fprintf(out, "#SBATCH --qos=%s\n", p->qos);
    if (p->constraint)
        fprintf(out, "#SBATCH --constraint=%s\n", p->constraint);
    return 0;
}

static int slurm_submit(cparsl_provider_t *p, const cparsl_block_req_t *b,
                        char *job_id, size_t cap, cparsl_error_t *err)
{
    const char *argv[] = {"sbatch", "--parsable", b->script, NULL};
    cparsl_cmd_result_t r;
    int rc = cparsl_cmd_check(argv, NULL, p->cmd_timeout, &r, err);
    if (rc == 0) {
        /* "<digits>[;cluster]\n" and nothing else */
        const char *s = r.out;
        size_t d = 0;
        while (isdigit((unsigned char)s[d]))
            d++;
        size_t rest = d + strcspn(s + d, "\n");
        if (d == 0 || d >= cap || (s[d] != ';' && s[d] != '\n') ||
            s[rest + (s[rest] == '\n')] != '\0')
            rc = cparsl_error_set(err, -CPARSL_EEXECUTOR,
                                  "'sbatch --parsable %s' answered in an "
                                  "unexpected format: '%.200s'",
                                  b->script, r.out);
        else
            snprintf(job_id, cap, "%.*s", (int)d, s);
    }
    cparsl_cmd_result_free(&r);
    return rc;
}

static const struct {
    const char *word;
    cparsl_block_state_t state;
} slurm_states[] = {
    {"PENDING", CPARSL_BLOCK_PENDING},
    {"CONFIGURING", CPARSL_BLOCK_PENDING},
    {"REQUEUED", CPARSL_BLOCK_PENDING},
    {"REQUEUE_FED", CPARSL_BLOCK_PENDING},
    {"REQUEUE_HOLD", CPARSL_BLOCK_PENDING},
    {"RESIZING", CPARSL_BLOCK_PENDING},
    {"SUSPENDED", CPARSL_BLOCK_PENDING},
    {"STOPPED", CPARSL_BLOCK_PENDING},
    {"RESV_DEL_HOLD", CPARSL_BLOCK_PENDING},
    {"RUNNING", CPARSL_BLOCK_RUNNING},
    {"COMPLETING", CPARSL_BLOCK_RUNNING},
    {"SIGNALING", CPARSL_BLOCK_RUNNING},
    {"STAGE_OUT", CPARSL_BLOCK_RUNNING},
    {"COMPLETED", CPARSL_BLOCK_COMPLETED},
    {"FAILED", CPARSL_BLOCK_FAILED},
    {"NODE_FAIL", CPARSL_BLOCK_FAILED},
    {"BOOT_FAIL", CPARSL_BLOCK_FAILED},
    {"OUT_OF_MEMORY", CPARSL_BLOCK_FAILED},
    {"DEADLINE", CPARSL_BLOCK_FAILED},
    {"SPECIAL_EXIT", CPARSL_BLOCK_FAILED},
    {"REVOKED", CPARSL_BLOCK_FAILED},
    {"PREEMPTED", CPARSL_BLOCK_CANCELLED},
    {"CANCELLED", CPARSL_BLOCK_CANCELLED},
    {"TIMEOUT", CPARSL_BLOCK_TIMEOUT},
};

static int slurm_state(const char *word, size_t len, cparsl_block_state_t *st)
{
    for (size_t i = 0; i < sizeof slurm_states / sizeof slurm_states[0]; i++)
        if (strlen(slurm_states[i].word) == len &&
            memcmp(slurm_states[i].word, word, len) == 0) {
            *st = slurm_states[i].state;
            return 0;
        }
    return -1;
}

static int slurm_status(cparsl_provider_t *p, const char *const *ids, size_t n,
                        cparsl_block_state_t *states, cparsl_error_t *err)
{
    size_t len = 8;
    for (size_t i = 0; i < n; i++) {
        len += strlen(ids[i]) + 1;
        states[i] = CPARSL_BLOCK_MISSING;
    }
    char *jobs = malloc(len);
    if (!jobs)
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    char *q = jobs + sprintf(jobs, "--jobs=");
    for (size_t i = 0; i < n; i++)
        q += sprintf(q, "%s%s", i ? "," : "", ids[i]);
    const char *argv[] = {"squeue",         "--noheader", "--states=all",
                          "--format=%i %T", jobs,         NULL};
    cparsl_cmd_result_t r;
    int rc = cparsl_cmd_run(argv, NULL, p->cmd_timeout, &r, err);
    if (rc == 0 && r.status != 0) {
        /* None of them is known any more: all missing. */
        if (r.status == 1 && r.out_len == 0 &&
            strstr(r.err, "Invalid job id specified"))
            goto out;
        rc = cparsl_error_set(err, -CPARSL_EEXECUTOR,
                              "'squeue %s' failed (exit status %d): %.300s",
                              jobs, r.status, *r.err ? r.err : r.out);
        goto out;
    }
    if (rc < 0)
        goto out;
    /* Lines "<id> <STATE>"; array and het jobs never arise here. */
    for (char *line = r.out, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (!*line)
            continue;
        char *sp = strchr(line, ' ');
        cparsl_block_state_t st;
        if (!sp || slurm_state(sp + 1, strlen(sp + 1), &st) < 0) {
            rc = cparsl_error_set(err, -CPARSL_EEXECUTOR,
                                  "'squeue %s' answered in an unexpected "
                                  "format: '%.200s'",
                                  jobs, line);
            goto out;
        }
        *sp = '\0';
        for (size_t i = 0; i < n; i++)
            if (strcmp(ids[i], line) == 0)
                states[i] = st;
    }
out:
    cparsl_cmd_result_free(&r);
    free(jobs);
    return rc;
}

static int slurm_cancel(cparsl_provider_t *p, const char *const *ids, size_t n,
                        cparsl_error_t *err)
{
    cparsl_cmd_result_t r;
    int rc = cparsl_cmd_check_ids("scancel", ids, n, p->cmd_timeout, &r, err);
    cparsl_cmd_result_free(&r);
    return rc;
}

const struct cparsl_provider_ops cparsl_slurm_provider = {
    .name = "slurm",
    .keys = NULL,
    .default_launcher = "single_node",
    .directives = slurm_directives,
    .submit = slurm_submit,
    .status = slurm_status,
    .cancel = slurm_cancel,
};
