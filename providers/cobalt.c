/*
 * cobalt.c - blocks from Cobalt (ALCF): qsub, qstat, qdel, as its
 * man pages (ido/cobalt man/POSIX/qsub.1, qstat.1) describe them.
 *
 *   submit   qsub -n NODES -t HH:MM:SS [-q QUEUE] [-A PROJECT]
 *                 [--attrs CONSTRAINT] -O PREFIX --mode script SCRIPT
 *            -> the job id alone on stdout
 *   status   qstat --header JobID:State ID ...
 *            -> "JobID  State", a line of '=', then one row per job
 *   cancel   qdel ID ...
 *
 * Cobalt takes the request on qsub's command line (the script's head
 * only names it in a comment); its output goes to PREFIX.output,
 * PREFIX.error and PREFIX.cobaltlog.  A finished job leaves qstat at
 * once, so it reads as missing; the strategy tells a block that worked
 * from one that never joined.  Cobalt always gives whole nodes
 * (`exclusive` changes nothing) and has no qos.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cparsl/provider.h>

#include "cmd.h"

static int cobalt_configure(cparsl_provider_t *p, const cparsl_cnode_t *node,
                            cparsl_error_t *err)
{
    if (p->qos)
        return cparsl_cnode_error(cparsl_cnode_get(node, "qos"), err,
                                  "Cobalt has no qos; give the queue");
    if (p->constraint && strpbrk(p->constraint, " \t"))
        return cparsl_cnode_error(cparsl_cnode_get(node, "constraint"), err,
                                  "a Cobalt constraint is node attributes "
                                  "for --attrs, as key=value[:key=value]");
    return 0;
}

static int cobalt_directives(const cparsl_provider_t *p,
                             const cparsl_block_req_t *b, FILE *out,
                             cparsl_error_t *err)
{
    (void)err;
    fprintf(out,
            "# Cobalt block %s: qsub -n %d -t %s%s%s%s%s%s%s -O %s --mode "
            "script\n",
            b->name, p->nodes_per_block, p->walltime, p->queue ? " -q " : "",
            p->queue ? p->queue : "", p->account ? " -A " : "",
            p->account ? p->account : "", p->constraint ? " --attrs " : "",
            p->constraint ? p->constraint : "", b->prefix);
    return 0;
}

static int cobalt_submit(cparsl_provider_t *p, const cparsl_block_req_t *b,
                         char *job_id, size_t cap, cparsl_error_t *err)
{
    char nodes[16];
    snprintf(nodes, sizeof nodes, "%d", p->nodes_per_block);
    const char *argv[20];
    size_t a = 0;
    argv[a++] = "qsub";
    argv[a++] = "-n";
    argv[a++] = nodes;
    argv[a++] = "-t";
    argv[a++] = p->walltime;
    if (p->queue) {
        argv[a++] = "-q";
        argv[a++] = p->queue;
    }
    if (p->account) {
        argv[a++] = "-A";
        argv[a++] = p->account;
    }
    if (p->constraint) {
        argv[a++] = "--attrs";
        argv[a++] = p->constraint;
    }
    argv[a++] = "-O";
    argv[a++] = b->prefix;
    argv[a++] = "--mode";
    argv[a++] = "script";
    argv[a++] = b->script;
    argv[a] = NULL;
    cparsl_cmd_result_t r;
    int rc = cparsl_cmd_check(argv, NULL, p->cmd_timeout, &r, err);
    if (rc == 0) {
        /* "The only thing printed to STDOUT is the jobid." */
        size_t d = strspn(r.out, "0123456789");
        if (d == 0 || d >= cap || r.out[d + strspn(r.out + d, " \r\n")])
            rc = cparsl_error_set(err, -CPARSL_EEXECUTOR,
                                  "'qsub ... %s' answered in an unexpected "
                                  "format: '%.200s'",
                                  b->script, r.out);
        else
            snprintf(job_id, cap, "%.*s", (int)d, r.out);
    }
    cparsl_cmd_result_free(&r);
    return rc;
}

static int cobalt_state(const char *w, cparsl_block_state_t *st)
{
    static const char *const pending[] = {"queued", "starting", "hold", NULL};
    static const char *const running[] = {"running", "exiting", "killing",
                                          "cleanup", NULL};
    size_t n = strlen(w);
    for (size_t i = 0; pending[i]; i++)
        if (strcmp(w, pending[i]) == 0) {
            *st = CPARSL_BLOCK_PENDING;
            return 0;
        }
    if (n > 5 && strcmp(w + n - 5, "_hold") == 0) { /* user_hold, ... */
        *st = CPARSL_BLOCK_PENDING;
        return 0;
    }
    for (size_t i = 0; running[i]; i++)
        if (strcmp(w, running[i]) == 0) {
            *st = CPARSL_BLOCK_RUNNING;
            return 0;
        }
    return -1;
}

static int cobalt_status(cparsl_provider_t *p, const char *const *ids, size_t n,
                         cparsl_block_state_t *states, cparsl_error_t *err)
{
    const char **argv = calloc(n + 4, sizeof *argv);
    if (!argv)
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    argv[0] = "qstat";
    argv[1] = "--header";
    argv[2] = "JobID:State";
    for (size_t i = 0; i < n; i++) {
        argv[3 + i] = ids[i];
        states[i] = CPARSL_BLOCK_MISSING;
    }
    cparsl_cmd_result_t r;
    int rc = cparsl_cmd_check(argv, NULL, p->cmd_timeout, &r, err);
    if (rc < 0)
        goto out;
    int row = 0; /* 0: header next, 1: rule next, 2: rows */
    for (char *line = r.out, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        char id[64], state[64], extra;
        int k = sscanf(line, "%63s %63s %c", id, state, &extra);
        if (row == 0 && k >= 1 && strcasecmp(id, "JobID") == 0) {
            row = 1;
            continue;
        }
        if (row == 1 && line[strspn(line, "= ")] == '\0' && *line == '=') {
            row = 2;
            continue;
        }
        cparsl_block_state_t st;
        if (row != 2 || k != 2 || cobalt_state(state, &st) < 0) {
            rc = cparsl_error_set(err, -CPARSL_EEXECUTOR,
                                  "'qstat --header JobID:State' answered in "
                                  "an unexpected format: '%.200s'",
                                  line);
            goto out;
        }
        for (size_t i = 0; i < n; i++)
            if (strcmp(ids[i], id) == 0)
                states[i] = st;
    }
out:
    cparsl_cmd_result_free(&r);
    free(argv);
    return rc;
}

static int cobalt_cancel(cparsl_provider_t *p, const char *const *ids, size_t n,
                         cparsl_error_t *err)
{
    cparsl_cmd_result_t r;
    int rc = cparsl_cmd_check_ids("qdel", ids, n, p->cmd_timeout, &r, err);
    cparsl_cmd_result_free(&r);
    return rc;
}

const struct cparsl_provider_ops cparsl_cobalt_provider = {
    .name = "cobalt",
    .keys = NULL,
    .default_launcher = "aprun",
    .configure = cobalt_configure,
    .directives = cobalt_directives,
    .submit = cobalt_submit,
    .status = cobalt_status,
    .cancel = cobalt_cancel,
};
