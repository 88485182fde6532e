/*
 * provider.c - what every provider shares: the table of providers, the
 * common keys, and the block's submit script (see cparsl/provider.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cparsl/provider.h>

#include "cmd.h"
#include "launchers.h"

extern const struct cparsl_provider_ops cparsl_local_provider;
extern const struct cparsl_provider_ops cparsl_slurm_provider;
extern const struct cparsl_provider_ops cparsl_pbs_provider;
extern const struct cparsl_provider_ops cparsl_cobalt_provider;

/* One line per provider. */
static const struct cparsl_provider_ops *const providers[] = {
    &cparsl_local_provider,
    &cparsl_slurm_provider,
    &cparsl_pbs_provider,
    &cparsl_cobalt_provider,
    NULL,
};

const char *const *cparsl_provider_names(void)
{
    static const char *names[sizeof providers / sizeof providers[0]];
    for (size_t i = 0; providers[i]; i++)
        names[i] = providers[i]->name;
    return names;
}

static const char *const state_names[CPARSL_BLOCK_STATE_COUNT] = {
    "pending",   "running", "completed", "failed",
    "cancelled", "timeout", "missing",
};

const char *cparsl_block_state_name(cparsl_block_state_t s)
{
    return (unsigned)s < CPARSL_BLOCK_STATE_COUNT ? state_names[s] : "?";
}

bool cparsl_block_state_final(cparsl_block_state_t s)
{
    return s >= CPARSL_BLOCK_COMPLETED && s < CPARSL_BLOCK_STATE_COUNT;
}

static const char *const common_keys[] = {
    "type",
    "nodes_per_block",
    "cpus_per_node",
    "init_blocks",
    "min_blocks",
    "max_blocks",
    "parallelism",
    "walltime",
    "queue",
    "partition",
    "account",
    "qos",
    "constraint",
    "exclusive",
    "scheduler_options",
    "worker_init",
    "cmd_timeout",
    "connect_timeout",
    "drain_margin",
    "block_error_threshold",
    "launcher",
    NULL,
};

static const char *const launcher_keys[] = {
    "type", "overrides", "prefix", "tasks_per_node", NULL,
};

void cparsl_provider_destroy(cparsl_provider_t *p)
{
    if (!p)
        return;
    if (p->ops && p->ops->destroy)
        p->ops->destroy(p);
    free(p->queue);
    free(p->account);
    free(p->qos);
    free(p->constraint);
    free(p->scheduler_options);
    free(p->worker_init);
    free(p->launcher);
    free(p->launcher_overrides);
    free(p->launcher_prefix);
    free(p);
}

/* An optional string key, copied (NULL when absent or empty). */
static int opt_string(const cparsl_cnode_t *node, const char *key, char **out,
                      cparsl_error_t *err)
{
    const char *v = NULL;
    int rc = cparsl_cnode_string(node, key, NULL, &v, err);
    if (rc < 0)
        return rc;
    if (v && *v && !(*out = strdup(v)))
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    return 0;
}

/* What the launcher is given for this provider's blocks. */
static cparsl_launch_spec_t launch_spec(const cparsl_provider_t *p,
                                        const char *const *argv)
{
    return (cparsl_launch_spec_t){
        .argv = argv,
        .nodes_per_block = p->nodes_per_block,
        .tasks_per_node = p->tasks_per_node,
        .overrides = p->launcher_overrides,
        .prefix = p->launcher_prefix,
    };
}

static int read_launcher(cparsl_provider_t *p, const cparsl_cnode_t *node,
                         cparsl_error_t *err)
{
    const cparsl_cnode_t *l = cparsl_cnode_get(node, "launcher");
    const char *name = p->ops->default_launcher;
    int64_t tpn = 1;
    int rc;
    if (l && cparsl_cnode_type(l) == CPARSL_CNODE_MAP) {
        if ((rc = cparsl_cnode_check_keys(l, launcher_keys, err)) < 0 ||
            (rc = cparsl_cnode_string(l, "type", name, &name, err)) < 0 ||
            (rc = opt_string(l, "overrides", &p->launcher_overrides, err)) <
                0 ||
            (rc = opt_string(l, "prefix", &p->launcher_prefix, err)) < 0 ||
            (rc = cparsl_cnode_int(l, "tasks_per_node", 1, 1, 4096, &tpn,
                                   err)) < 0)
            return rc;
    } else if (l) {
        name = cparsl_cnode_scalar(l);
        if (!name || !*name)
            return cparsl_cnode_error(l, err,
                                      "expected a launcher name or a map "
                                      "with its type");
    }
    p->tasks_per_node = (int)tpn;
    /* Check the name and the spec now, not when the first block goes. */
    const char *argv[] = {"true", NULL};
    cparsl_launch_spec_t spec = launch_spec(p, argv);
    char *text = NULL;
    cparsl_error_t e2;
    if ((rc = cparsl_launcher_build(name, &spec, &text, &e2)) < 0)
        return cparsl_cnode_error(l, err, "%s", e2.text);
    free(text);
    if (!(p->launcher = strdup(name)))
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    return 0;
}

int cparsl_provider_configure(const cparsl_cnode_t *node,
                              cparsl_provider_t **out, cparsl_error_t *err)
{
    *out = NULL;
    if (!node || cparsl_cnode_type(node) != CPARSL_CNODE_MAP)
        return cparsl_cnode_error(node, err,
                                  "expected a map with the provider's type "
                                  "(local, slurm, pbs or cobalt) and keys");
    const char *type = NULL;
    int rc = cparsl_cnode_string(node, "type", NULL, &type, err);
    if (rc < 0)
        return rc;
    if (!type)
        return cparsl_cnode_error(node, err,
                                  "the provider needs a type: local, slurm, "
                                  "pbs or cobalt");
    const struct cparsl_provider_ops *ops = NULL;
    for (size_t i = 0; providers[i]; i++)
        if (strcmp(providers[i]->name, type) == 0)
            ops = providers[i];
    if (!ops)
        return cparsl_cnode_error(cparsl_cnode_get(node, "type"), err,
                                  "unknown provider '%s' (known: local, "
                                  "slurm, pbs, cobalt)",
                                  type);
    /* Its keys: the common ones and its own. */
    const char *keys[64];
    size_t nk = 0;
    for (size_t i = 0; common_keys[i]; i++)
        keys[nk++] = common_keys[i];
    for (size_t i = 0; ops->keys && ops->keys[i] && nk < 63; i++)
        keys[nk++] = ops->keys[i];
    keys[nk] = NULL;
    if ((rc = cparsl_cnode_check_keys(node, keys, err)) < 0)
        return rc;

    cparsl_provider_t *p = calloc(1, sizeof *p);
    if (!p)
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    p->ops = ops;
    int64_t npb, cpn, init, min, max, thr;
    const char *wt = NULL;
    if ((rc = cparsl_cnode_int(node, "nodes_per_block", 1, 1, 1 << 20, &npb,
                               err)) < 0 ||
        (rc = cparsl_cnode_int(node, "cpus_per_node", 1, 1, 1 << 16, &cpn,
                               err)) < 0 ||
        (rc = cparsl_cnode_int(node, "init_blocks", 1, 0, 1 << 20, &init,
                               err)) < 0 ||
        (rc = cparsl_cnode_int(node, "min_blocks", 0, 0, 1 << 20, &min, err)) <
            0 ||
        (rc = cparsl_cnode_int(node, "max_blocks", 1, 0, 1 << 20, &max, err)) <
            0 ||
        (rc = cparsl_cnode_double(node, "parallelism", 1, 0, 1, &p->parallelism,
                                  err)) < 0 ||
        (rc = cparsl_cnode_string(node, "walltime", "00:30:00", &wt, err)) <
            0 ||
        (rc = cparsl_cnode_bool(node, "exclusive", true, &p->exclusive, err)) <
            0 ||
        (rc = cparsl_cnode_double(node, "cmd_timeout", 10, 0.1, 3600,
                                  &p->cmd_timeout, err)) < 0 ||
        (rc = cparsl_cnode_double(node, "connect_timeout", 300, 0.1, 1e6,
                                  &p->connect_timeout, err)) < 0 ||
        (rc = cparsl_cnode_double(node, "drain_margin", -1, 0, 1e7,
                                  &p->drain_margin, err)) < 0 ||
        (rc = cparsl_cnode_int(node, "block_error_threshold", 3, 0, 1 << 20,
                               &thr, err)) < 0 ||
        (rc = opt_string(node, "account", &p->account, err)) < 0 ||
        (rc = opt_string(node, "qos", &p->qos, err)) < 0 ||
        (rc = opt_string(node, "constraint", &p->constraint, err)) < 0 ||
        (rc = opt_string(node, "scheduler_options", &p->scheduler_options,
                         err)) < 0 ||
        (rc = opt_string(node, "worker_init", &p->worker_init, err)) < 0)
        goto fail;
    p->nodes_per_block = (int)npb;
    p->cpus_per_node = (int)cpn;
    p->init_blocks = (int)init;
    p->min_blocks = (int)min;
    p->max_blocks = (int)max;
    p->block_error_threshold = (int)thr;
    if (min > max || init > max) {
        rc =
            cparsl_cnode_error(cparsl_cnode_get(node, "max_blocks"), err,
                               "max_blocks (%lld) must be at least "
                               "min_blocks (%lld) and init_blocks (%lld)",
                               (long long)max, (long long)min, (long long)init);
        goto fail;
    }
    /* queue and partition are one key under two names (Slurm says
     * partition). */
    const cparsl_cnode_t *qn = cparsl_cnode_get(node, "queue");
    const cparsl_cnode_t *pn = cparsl_cnode_get(node, "partition");
    if (qn && pn) {
        rc = cparsl_cnode_error(pn, err,
                                "give either queue or partition, not both");
        goto fail;
    }
    if ((rc = opt_string(node, qn ? "queue" : "partition", &p->queue, err)) < 0)
        goto fail;
    p->walltime_s = cparsl_walltime_parse(wt);
    if (p->walltime_s <= 0) {
        rc = cparsl_cnode_error(cparsl_cnode_get(node, "walltime"), err,
                                "malformed walltime '%s' (expected HH:MM:SS, "
                                "MM:SS, minutes, or D-HH:MM:SS)",
                                wt);
        goto fail;
    }
    snprintf(p->walltime, sizeof p->walltime, "%02ld:%02ld:%02ld",
             p->walltime_s / 3600, p->walltime_s / 60 % 60, p->walltime_s % 60);
    if (p->drain_margin < 0) /* default: a tenth of it, at most 5 min */
        p->drain_margin =
            p->walltime_s / 10.0 < 300 ? p->walltime_s / 10.0 : 300;
    /* Each option must stay on its line of the script. */
    const char *one_line[] = {"queue", "partition", "account", "qos",
                              "constraint"};
    for (size_t i = 0; i < sizeof one_line / sizeof one_line[0]; i++) {
        const char *v = NULL;
        cparsl_cnode_string(node, one_line[i], NULL, &v, err);
        if (v && strpbrk(v, "\n\r")) {
            rc = cparsl_cnode_error(cparsl_cnode_get(node, one_line[i]), err,
                                    "must be one line");
            goto fail;
        }
    }
    if ((rc = read_launcher(p, node, err)) < 0)
        goto fail;
    if (ops->configure && (rc = ops->configure(p, node, err)) < 0)
        goto fail;
    *out = p;
    return 0;
fail:
    cparsl_provider_destroy(p);
    return rc;
}

/* Write one word quoted for sh; 0 or -ENOMEM. */
static int put_quoted(FILE *fp, const char *word)
{
    char *q = cparsl_sh_quote(word);
    if (!q)
        return -ENOMEM;
    fputs(q, fp);
    free(q);
    return 0;
}

int cparsl_provider_write_script(const cparsl_provider_t *p,
                                 const cparsl_block_req_t *b, const char *cwd,
                                 const char *const *env,
                                 const char *const *argv, cparsl_error_t *err)
{
    cparsl_launch_spec_t spec = launch_spec(p, argv);
    char *launch = NULL;
    int rc = cparsl_launcher_build(p->launcher, &spec, &launch, err);
    if (rc < 0)
        return rc;
    /* A fresh file, 0700, written whole before it is renamed in place. */
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", b->script);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0700);
    FILE *fp = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!fp) {
        rc = cparsl_error_set(err, -errno, "cannot write '%s': %s", tmp,
                              strerror(errno));
        if (fd >= 0)
            close(fd);
        free(launch);
        return rc;
    }
    fchmod(fd, 0700);
    fputs("#!/bin/sh\n", fp);
    rc = p->ops->directives(p, b, fp, err);
    if (rc == 0 && p->scheduler_options) {
        fputs(p->scheduler_options, fp);
        if (p->scheduler_options[strlen(p->scheduler_options) - 1] != '\n')
            fputc('\n', fp);
    }
    if (rc == 0) {
        fprintf(fp,
                "# cparsl block %lld of executor '%s' (%s provider, %s "
                "launcher).\n"
                "# The run's secret is not in this file: the managers read "
                "it from the\n"
                "# 0600 file beside CPARSL_HTEX_JOIN's address file.\n",
                (long long)b->block, b->label, p->ops->name, p->launcher);
        fputs("cd ", fp);
        rc = put_quoted(fp, cwd);
        fputs(" || exit 1\n", fp);
        /* A run started under mpiexec/srun passes its launch's variables
         * on (sbatch exports the environment): they are not this
         * block's, and a manager would take itself for an MPI rank. */
        fputs("for cparsl_v in $(env | sed -n -e "
              "'s/^\\(OMPI_[A-Za-z0-9_]*\\)=.*/\\1/p' -e "
              "'s/^\\(PMIX_[A-Za-z0-9_]*\\)=.*/\\1/p' -e "
              "'s/^\\(PMI_[A-Za-z0-9_]*\\)=.*/\\1/p'); do\n"
              "    unset \"$cparsl_v\"\n"
              "done\n",
              fp);
        for (size_t i = 0; rc == 0 && env && env[i]; i++) {
            const char *eq = strchr(env[i], '=');
            if (!eq)
                continue;
            fprintf(fp, "%.*s=", (int)(eq - env[i]), env[i]);
            rc = put_quoted(fp, eq + 1);
            fprintf(fp, "\nexport %.*s\n", (int)(eq - env[i]), env[i]);
        }
        if (p->worker_init) {
            fputs("# worker_init\n", fp);
            fputs(p->worker_init, fp);
            if (p->worker_init[strlen(p->worker_init) - 1] != '\n')
                fputc('\n', fp);
        }
        fputs(launch, fp);
        if (rc < 0)
            cparsl_error_set(err, rc, "out of memory");
    }
    free(launch);
    if (fclose(fp) != 0 && rc == 0)
        rc = cparsl_error_set(err, -errno, "cannot write '%s': %s", tmp,
                              strerror(errno));
    if (rc == 0 && rename(tmp, b->script) != 0)
        rc = cparsl_error_set(err, -errno, "cannot rename '%s': %s", tmp,
                              strerror(errno));
    if (rc < 0)
        unlink(tmp);
    return rc;
}
