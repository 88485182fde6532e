/*
 * local.c - blocks as local processes: the block's script runs under
 * /bin/sh in a session of its own, on this host.  The provider for a
 * workstation and for tests; its job id is the script's pid.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cparsl/provider.h>

extern char **environ;

struct local_job {
    pid_t pid;
    bool ended, cancelled;
    int status;
};

struct local {
    struct local_job *jobs;
    size_t n, cap;
};

static int local_configure(cparsl_provider_t *p, const cparsl_cnode_t *node,
                           cparsl_error_t *err)
{
    (void)node;
    if (p->nodes_per_block != 1)
        return cparsl_error_set(err, -CPARSL_ECONFIG,
                                "provider 'local': nodes_per_block must be 1 "
                                "(this host is one node)");
    if (!(p->priv = calloc(1, sizeof(struct local))))
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    return 0;
}

static int local_directives(const cparsl_provider_t *p,
                            const cparsl_block_req_t *b, FILE *out,
                            cparsl_error_t *err)
{
    (void)err;
    fprintf(out, "# local block %s, walltime %s (not enforced)\n", b->name,
            p->walltime);
    return 0;
}

static struct local_job *find(struct local *l, const char *id)
{
    long pid = strtol(id, NULL, 10);
    for (size_t i = 0; i < l->n; i++)
        if (l->jobs[i].pid == pid)
            return &l->jobs[i];
    return NULL;
}

static int local_submit(cparsl_provider_t *p, const cparsl_block_req_t *b,
                        char *job_id, size_t cap, cparsl_error_t *err)
{
    struct local *l = p->priv;
    if (l->n == l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 8;
        struct local_job *v = realloc(l->jobs, nc * sizeof *v);
        if (!v)
            return cparsl_error_set(err, -ENOMEM, "out of memory");
        l->jobs = v;
        l->cap = nc;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, b->out,
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, b->err,
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID);
    char *argv[] = {"/bin/sh", (char *)b->script, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, "/bin/sh", &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (rc != 0)
        return cparsl_error_set(err, -rc,
                                "provider 'local': cannot start "
                                "'/bin/sh %s': %s",
                                b->script, strerror(rc));
    l->jobs[l->n++] = (struct local_job){.pid = pid};
    snprintf(job_id, cap, "%ld", (long)pid);
    return 0;
}

static int local_status(cparsl_provider_t *p, const char *const *ids, size_t n,
                        cparsl_block_state_t *states, cparsl_error_t *err)
{
    (void)err;
    struct local *l = p->priv;
    for (size_t i = 0; i < n; i++) {
        struct local_job *j = find(l, ids[i]);
        if (!j) {
            states[i] = CPARSL_BLOCK_MISSING;
            continue;
        }
        if (!j->ended && waitpid(j->pid, &j->status, WNOHANG) == j->pid)
            j->ended = true;
        if (!j->ended)
            states[i] = CPARSL_BLOCK_RUNNING;
        else if (j->cancelled)
            states[i] = CPARSL_BLOCK_CANCELLED;
        else if (WIFEXITED(j->status) && WEXITSTATUS(j->status) == 0)
            states[i] = CPARSL_BLOCK_COMPLETED;
        else
            states[i] = CPARSL_BLOCK_FAILED;
    }
    return 0;
}

static int local_cancel(cparsl_provider_t *p, const char *const *ids, size_t n,
                        cparsl_error_t *err)
{
    (void)err;
    struct local *l = p->priv;
    for (size_t i = 0; i < n; i++) {
        struct local_job *j = find(l, ids[i]);
        if (j && !j->ended) {
            j->cancelled = true;
            kill(-j->pid, SIGTERM); /* its session: the managers too */
        }
    }
    return 0;
}

static void local_destroy(cparsl_provider_t *p)
{
    struct local *l = p->priv;
    if (!l)
        return;
    /* Nothing outlives the run: what is left gets TERM, then KILL. */
    for (size_t i = 0; i < l->n; i++)
        if (!l->jobs[i].ended)
            kill(-l->jobs[i].pid, SIGTERM);
    for (size_t i = 0; i < l->n; i++) {
        struct local_job *j = &l->jobs[i];
        for (int k = 0; k < 300 && !j->ended; k++) {
            if (waitpid(j->pid, &j->status, WNOHANG) == j->pid)
                j->ended = true;
            else
                usleep(10000);
        }
        if (!j->ended) {
            kill(-j->pid, SIGKILL);
            waitpid(j->pid, &j->status, 0);
        }
    }
    free(l->jobs);
    free(l);
}

const struct cparsl_provider_ops cparsl_local_provider = {
    .name = "local",
    .keys = NULL,
    .default_launcher = "single_node",
    .configure = local_configure,
    .directives = local_directives,
    .submit = local_submit,
    .status = local_status,
    .cancel = local_cancel,
    .destroy = local_destroy,
};
