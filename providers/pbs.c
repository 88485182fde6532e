/*
 * pbs.c - blocks from PBS Pro / OpenPBS, or from Torque with
 * `dialect: torque`: qsub, qstat, qdel (openpbs doc/man1/qsub.1B,
 * qstat.1B, qdel.1B; Torque's qsub(1), qstat(1)).
 *
 *   submit   qsub SCRIPT                 -> "<seq>.<server>"
 *   status   qstat -f -x ID ...          (Torque: qstat -f ID ...)
 *   cancel   qdel ID ...
 *
 * The script's directives:
 *   PBS Pro   #PBS -l select=N:ncpus=C[:mpiprocs=T][:constraint]
 *             #PBS -l place=scatter[:excl]
 *   Torque    #PBS -l nodes=N:ppn=C[:constraint]   (#PBS -n: exclusive)
 *   both      #PBS -N, -o, -e, -l walltime=HH:MM:SS, -q, -A
 *
 * qstat -f prints "Job Id: <id>" and then "    attr = value" lines; an id
 * it does not know gets "qstat: Unknown Job Id <id>" on stderr (exit
 * status 153 in PBS Pro) while the others are still listed.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cparsl/provider.h>

#include "cmd.h"

struct pbs {
    bool torque;
};

static const char *const pbs_keys[] = {"dialect", NULL};
static const char *const dialects[] = {"pro", "torque", NULL};

static int pbs_configure(cparsl_provider_t *p, const cparsl_cnode_t *node,
                         cparsl_error_t *err)
{
    int d, rc;
    if ((rc = cparsl_cnode_choice(node, "dialect", dialects, 0, &d, err)) < 0)
        return rc;
    if (p->qos)
        return cparsl_cnode_error(cparsl_cnode_get(node, "qos"), err,
                                  "PBS has no qos; give the queue, or put a "
                                  "'#PBS' line in scheduler_options");
    if (p->constraint && strpbrk(p->constraint, " +#"))
        return cparsl_cnode_error(cparsl_cnode_get(node, "constraint"), err,
                                  "a PBS constraint is resources added to "
                                  "each chunk, as res=value[:res=value]");
    struct pbs *s = calloc(1, sizeof *s);
    if (!s)
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    s->torque = d == 1;
    p->priv = s;
    return 0;
}

static void pbs_destroy(cparsl_provider_t *p)
{
    free(p->priv);
}

static int pbs_directives(const cparsl_provider_t *p,
                          const cparsl_block_req_t *b, FILE *out,
                          cparsl_error_t *err)
{
    (void)err;
    const struct pbs *s = p->priv;
    fprintf(out, "#PBS -N %s\n", b->name);
    fprintf(out, "#PBS -o %s\n", b->out);
    fprintf(out, "#PBS -e %s\n", b->err);
    if (s->torque) {
        fprintf(out, "#PBS -l nodes=%d:ppn=%d%s%s\n", p->nodes_per_block,
                p->cpus_per_node, p->constraint ? ":" : "",
                p->constraint ? p->constraint : "");
        if (p->exclusive)
            fputs("#PBS -n\n", out);
    } else {
        fprintf(out, "#PBS -l select=%d:ncpus=%d", p->nodes_per_block,
                p->cpus_per_node);
        if (p->tasks_per_node > 1)
            fprintf(out, ":mpiprocs=%d", p->tasks_per_node);
        if (p->constraint)
            fprintf(out, ":%s", p->constraint);
        fprintf(out, "\n#PBS -l place=scatter%s\n",
                p->exclusive ? ":excl" : "");
    }
    fprintf(out, "#PBS -l walltime=%s\n", p->walltime);
    if (p->queue)
        fprintf(out, "#PBS -q %s\n", p->queue);
    if (p->account)
        fprintf(out, "#PBS -A %s\n", p->account);
    return 0;
}

static int pbs_submit(cparsl_provider_t *p, const cparsl_block_req_t *b,
                      char *job_id, size_t cap, cparsl_error_t *err)
{
    const char *argv[] = {"qsub", b->script, NULL};
    cparsl_cmd_result_t r;
    int rc = cparsl_cmd_check(argv, NULL, p->cmd_timeout, &r, err);
    if (rc == 0) {
        /* One word, "<seq>[.<server>]", and a newline. */
        size_t n = strcspn(r.out, " \t\r\n");
        bool ok = n > 0 && n < cap && isdigit((unsigned char)r.out[0]) &&
                  r.out[n + strspn(r.out + n, " \t\r\n")] == '\0';
        if (!ok)
            rc = cparsl_error_set(err, -CPARSL_EEXECUTOR,
                                  "'qsub %s' answered in an unexpected "
                                  "format: '%.200s'",
                                  b->script, r.out);
        else
            snprintf(job_id, cap, "%.*s", (int)n, r.out);
    }
    cparsl_cmd_result_free(&r);
    return rc;
}

/* A finished job's exit status: PBS Pro's Exit_status, Torque's
 * exit_status.  Negative values are the server's JOB_EXEC_* codes:
 * -29 (PBS Pro) and -11 (Torque) mean killed at the walltime; values
 * above 256 are 256 + the signal that ended the job (qdel: SIGTERM). */
static cparsl_block_state_t finished(bool have, long status, bool torque)
{
    if (!have)
        return CPARSL_BLOCK_FAILED;
    if (status == 0)
        return CPARSL_BLOCK_COMPLETED;
    if (status == (torque ? -11 : -29))
        return CPARSL_BLOCK_TIMEOUT;
    if (status > 256)
        return CPARSL_BLOCK_CANCELLED;
    return CPARSL_BLOCK_FAILED;
}

/* One job's state letter (PBS Pro: B E F H M Q R S T U W X; Torque adds
 * C for completed).  -1 for a letter neither documents. */
static int letter(char c, bool *done)
{
    *done = false;
    switch (c) {
    case 'Q':
    case 'H':
    case 'W':
    case 'T':
    case 'S':
    case 'U':
    case 'M':
        return CPARSL_BLOCK_PENDING;
    case 'R':
    case 'E':
    case 'B':
        return CPARSL_BLOCK_RUNNING;
    case 'F':
    case 'X':
    case 'C':
        *done = true;
        return CPARSL_BLOCK_COMPLETED;
    default:
        return -1;
    }
}

struct pjob {
    char id[128];
    int state; /* -1: not seen yet */
    bool done, have_exit;
    long exit_status;
};

static int pbs_status(cparsl_provider_t *p, const char *const *ids, size_t n,
                      cparsl_block_state_t *states, cparsl_error_t *err)
{
    const struct pbs *s = p->priv;
    const char **argv = calloc(n + 4, sizeof *argv);
    if (!argv)
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    size_t a = 0;
    argv[a++] = "qstat";
    argv[a++] = "-f";
    if (!s->torque)
        argv[a++] = "-x"; /* finished jobs too */
    for (size_t i = 0; i < n; i++) {
        argv[a++] = ids[i];
        states[i] = CPARSL_BLOCK_MISSING;
    }
    cparsl_cmd_result_t r;
    int rc = cparsl_cmd_run(argv, NULL, p->cmd_timeout, &r, err);
    if (rc < 0)
        goto out;
    /* A non-zero status is expected when some id is unknown; anything
     * else on stderr is a failure of the command. */
    if (r.status != 0) {
        for (char *line = r.err, *next; line && *line; line = next) {
            next = strchr(line, '\n');
            if (next)
                *next++ = '\0';
            if (*line && !strstr(line, "Unknown Job Id") &&
                !strstr(line, "Job has finished")) {
                rc = cparsl_error_set(err, -CPARSL_EEXECUTOR,
                                      "'qstat -f' failed (exit status %d): "
                                      "%.300s",
                                      r.status, line);
                goto out;
            }
        }
    }
    struct pjob cur = {.state = -1};
    bool in_job = false;
    for (char *line = r.out, *next;; line = next) {
        next = line ? strchr(line, '\n') : NULL;
        if (next)
            *next++ = '\0';
        bool start = line && strncmp(line, "Job Id: ", 8) == 0;
        if ((start || !line) && in_job) {
            if (cur.state < 0) {
                rc = cparsl_error_set(err, -CPARSL_EEXECUTOR,
                                      "'qstat -f' answered in an unexpected "
                                      "format: no job_state for job %s",
                                      cur.id);
                goto out;
            }
            cparsl_block_state_t st =
                cur.done ? finished(cur.have_exit, cur.exit_status, s->torque)
                         : (cparsl_block_state_t)cur.state;
            for (size_t i = 0; i < n; i++)
                if (strcmp(ids[i], cur.id) == 0)
                    states[i] = st;
            in_job = false;
        }
        if (!line)
            break;
        if (start) {
            cur = (struct pjob){.state = -1};
            snprintf(cur.id, sizeof cur.id, "%s", line + 8);
            cur.id[strcspn(cur.id, " \r")] = '\0';
            in_job = true;
            continue;
        }
        while (*line == ' ' || *line == '\t')
            line++;
        if (!*line)
            continue;
        if (!in_job) {
            rc = cparsl_error_set(err, -CPARSL_EEXECUTOR,
                                  "'qstat -f' answered in an unexpected "
                                  "format: '%.200s'",
                                  line);
            goto out;
        }
        if (strncmp(line, "job_state = ", 12) == 0) {
            cur.state = line[12] && (line[13] == '\0' || line[13] == '\r')
                            ? letter(line[12], &cur.done)
                            : -1;
            if (cur.state < 0) {
                rc = cparsl_error_set(err, -CPARSL_EEXECUTOR,
                                      "'qstat -f': job %s in an unknown "
                                      "state '%s'",
                                      cur.id, line + 12);
                goto out;
            }
        } else if (strncasecmp(line, "exit_status = ", 14) == 0) {
            char *end;
            cur.exit_status = strtol(line + 14, &end, 10);
            cur.have_exit = end != line + 14;
        }
    }
out:
    cparsl_cmd_result_free(&r);
    free(argv);
    return rc;
}

static int pbs_cancel(cparsl_provider_t *p, const char *const *ids, size_t n,
                      cparsl_error_t *err)
{
    cparsl_cmd_result_t r;
    int rc = cparsl_cmd_check_ids("qdel", ids, n, p->cmd_timeout, &r, err);
    /* A job that ended meanwhile is "Unknown Job Id": nothing to do. */
    if (rc < 0 && !r.signal && r.status > 0 && r.err_len) {
        bool only_gone = true;
        for (char *line = r.err, *next; line && *line; line = next) {
            next = strchr(line, '\n');
            if (next)
                *next++ = '\0';
            if (*line && !strstr(line, "Unknown Job Id") &&
                !strstr(line, "Job has finished"))
                only_gone = false;
        }
        if (only_gone)
            rc = 0;
    }
    cparsl_cmd_result_free(&r);
    return rc;
}

const struct cparsl_provider_ops cparsl_pbs_provider = {
    .name = "pbs",
    .keys = pbs_keys,
    .default_launcher = "single_node",
    .configure = pbs_configure,
    .directives = pbs_directives,
    .submit = pbs_submit,
    .status = pbs_status,
    .cancel = pbs_cancel,
    .destroy = pbs_destroy,
};
