/*
 * launchers.c - a block's command across its nodes (see launchers.h).
 *
 * Each launcher writes the same command, quoted word by word, into the
 * launch line of its tool; N is nodes_per_block x tasks_per_node.  The
 * fragments are plain POSIX sh, pinned by the golden files in
 * tests/golden/launchers/.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launchers.h"

static const char *const names[] = {
    "simple", "single_node",  "srun",    "srun_mpi", "aprun", "mpiexec",
    "mpirun", "gnu_parallel", "wrapped", "jsrun",    NULL,
};

const char *const *cparsl_launcher_names(void)
{
    return names;
}

char *cparsl_sh_quote(const char *word)
{
    size_t n = 2;
    for (const char *p = word; *p; p++)
        n += *p == '\'' ? 4 : 1;
    char *out = malloc(n + 1), *q = out;
    if (!out)
        return NULL;
    *q++ = '\'';
    for (const char *p = word; *p; p++) {
        if (*p == '\'') {
            memcpy(q, "'\\''", 4);
            q += 4;
        } else {
            *q++ = *p;
        }
    }
    *q++ = '\'';
    *q = '\0';
    return out;
}

/* A growing string; sticky failure. */
struct text {
    char *p;
    size_t len, cap;
    bool oom;
};

static void add(struct text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void add(struct text *t, const char *fmt, ...)
{
    if (t->oom)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || t->len + (size_t)n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (n >= 0 && cap < t->len + (size_t)n + 1)
            cap *= 2;
        char *p = n < 0 ? NULL : realloc(t->p, cap);
        if (!p) {
            t->oom = true;
            return;
        }
        t->p = p;
        t->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

/* The command, quoted word by word. */
static void add_cmd(struct text *t, const char *const *argv)
{
    for (size_t i = 0; argv[i]; i++) {
        char *q = cparsl_sh_quote(argv[i]);
        if (!q) {
            t->oom = true;
            return;
        }
        add(t, "%s%s", i ? " " : "", q);
        free(q);
    }
}

/* " OVERRIDES" when there are some. */
static void add_over(struct text *t, const cparsl_launch_spec_t *s)
{
    if (s->overrides && *s->overrides)
        add(t, " %s", s->overrides);
}

static int check_spec(const char *name, const cparsl_launch_spec_t *s,
                      cparsl_error_t *err)
{
    if (!s || !s->argv || !s->argv[0] || !*s->argv[0])
        return cparsl_error_set(err, CPARSL_ECONFIG,
                                "launcher '%s': no command to launch", name);
    if (s->nodes_per_block < 1 || s->nodes_per_block > 1000000)
        return cparsl_error_set(err, CPARSL_ECONFIG,
                                "launcher '%s': nodes_per_block %d, expected "
                                "1 to 1000000",
                                name, s->nodes_per_block);
    if (s->tasks_per_node < 1 || s->tasks_per_node > 100000)
        return cparsl_error_set(err, CPARSL_ECONFIG,
                                "launcher '%s': tasks_per_node %d, expected 1 "
                                "to 100000",
                                name, s->tasks_per_node);
    if (s->overrides && strpbrk(s->overrides, "\n\r"))
        return cparsl_error_set(err, CPARSL_ECONFIG,
                                "launcher '%s': overrides must be one line",
                                name);
    if (strcmp(name, "wrapped") == 0 &&
        (!s->prefix || !*s->prefix || strpbrk(s->prefix, "\n\r")))
        return cparsl_error_set(err, CPARSL_ECONFIG,
                                "launcher 'wrapped' needs a prefix (one "
                                "line), e.g. \"apptainer exec image.sif\"");
    return 0;
}

int cparsl_launcher_build(const char *name, const cparsl_launch_spec_t *s,
                          char **out, cparsl_error_t *err)
{
    *out = NULL;
    int known = -1;
    for (int i = 0; name && names[i]; i++)
        if (strcmp(name, names[i]) == 0)
            known = i;
    if (known < 0) {
        char list[256] = "";
        for (int i = 0; names[i]; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
                     i ? ", " : "", names[i]);
        return cparsl_error_set(err, CPARSL_ECONFIG,
                                "unknown launcher '%s' (known: %s)",
                                name ? name : "(none)", list);
    }
    int rc = check_spec(name, s, err);
    if (rc < 0)
        return rc;
    long nodes = s->nodes_per_block, tpn = s->tasks_per_node;
    long n = nodes * tpn;
    struct text t = {0};
    add(&t, "# cparsl launcher '%s': %ld node(s) x %ld task(s)\n", name, nodes,
        tpn);
    if (!strcmp(name, "simple")) {
        add_cmd(&t, s->argv);
        add(&t, "\n");
    } else if (!strcmp(name, "single_node")) {
        /* tpn copies here, each told its rank; fail if any fails */
        add(&t,
            "CPARSL_WORKER_COUNT=%ld\nexport CPARSL_WORKER_COUNT\n"
            "cparsl_pids=\"\"\n"
            "CPARSL_WORKER_RANK=0\n"
            "while [ \"$CPARSL_WORKER_RANK\" -lt %ld ]; do\n"
            "    export CPARSL_WORKER_RANK\n    ",
            tpn, tpn);
        add_cmd(&t, s->argv);
        add(&t, " &\n"
                "    cparsl_pids=\"$cparsl_pids $!\"\n"
                "    CPARSL_WORKER_RANK=$((CPARSL_WORKER_RANK + 1))\n"
                "done\n"
                "cparsl_status=0\n"
                "for cparsl_pid in $cparsl_pids; do\n"
                "    wait \"$cparsl_pid\" || cparsl_status=1\n"
                "done\n"
                "exit \"$cparsl_status\"\n");
    } else if (!strcmp(name, "srun") || !strcmp(name, "srun_mpi")) {
        add(&t, "srun --ntasks=%ld --ntasks-per-node=%ld --nodes=%ld%s", n, tpn,
            nodes, strcmp(name, "srun_mpi") ? "" : " --mpi=pmix");
        add_over(&t, s);
        add(&t, " ");
        add_cmd(&t, s->argv);
        add(&t, "\n");
    } else if (!strcmp(name, "aprun")) {
        add(&t, "aprun -n %ld -N %ld", n, tpn);
        add_over(&t, s);
        add(&t, " ");
        add_cmd(&t, s->argv);
        add(&t, "\n");
    } else if (!strcmp(name, "mpiexec")) {
        /* Open MPI's syntax (Debian's MPI) */
        add(&t, "mpiexec -n %ld --map-by ppr:%ld:node", n, tpn);
        add_over(&t, s);
        add(&t, " ");
        add_cmd(&t, s->argv);
        add(&t, "\n");
    } else if (!strcmp(name, "mpirun")) {
        add(&t, "mpirun -np %ld", n);
        add_over(&t, s);
        add(&t, " ");
        add_cmd(&t, s->argv);
        add(&t, "\n");
    } else if (!strcmp(name, "jsrun")) {
        add(&t, "jsrun -n %ld -r %ld", n, tpn);
        add_over(&t, s);
        add(&t, " ");
        add_cmd(&t, s->argv);
        add(&t, "\n");
    } else if (!strcmp(name, "wrapped")) {
        add(&t, "%s ", s->prefix);
        add_cmd(&t, s->argv);
        add(&t, "\n");
    } else { /* gnu_parallel */
        /* The block's hosts: PBS's node file, or Slurm's list expanded;
         * tpn copies per host, each copy's number in $1 (ignored). */
        add(&t,
            "cparsl_nodefile=${PBS_NODEFILE:-}\n"
            "if [ -z \"$cparsl_nodefile\" ] && "
            "[ -n \"${SLURM_JOB_NODELIST:-}\" ]; then\n"
            "    cparsl_nodefile=$(mktemp)\n"
            "    scontrol show hostnames \"$SLURM_JOB_NODELIST\" "
            "> \"$cparsl_nodefile\"\n"
            "fi\n"
            "[ -n \"$cparsl_nodefile\" ] || "
            "{ echo 'gnu_parallel: no PBS_NODEFILE or "
            "SLURM_JOB_NODELIST' >&2; exit 1; }\n"
            "seq 1 %ld | parallel --no-notice -q -j %ld "
            "--sshloginfile \"$cparsl_nodefile\"",
            n, tpn);
        add_over(&t, s);
        add(&t, " sh -c ");
        /* the command as one sh -c word: quote the quoted command */
        struct text inner = {0};
        add_cmd(&inner, s->argv);
        char *q = inner.oom ? NULL : cparsl_sh_quote(inner.p ? inner.p : "");
        free(inner.p);
        if (!q)
            t.oom = true;
        else
            add(&t, "%s _ {}\n", q);
        free(q);
    }
    if (t.oom) {
        free(t.p);
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    }
    *out = t.p;
    return 0;
}
