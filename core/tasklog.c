/*
 * tasklog.c - a store that writes every task state change as one text
 * line to <run dir>/tasks.log: a readable trace for debugging a workflow,
 * and the recording fake the tests use to check the DFK's state sequences
 * through the store interface.
 *
 *   <t_ns> task <id> app <name> <from> -> <to> try <n> [executor <label>]
 *          [error <code>] [value <text>]
 *   <t_ns> dep <child> <- <parent>
 *
 * Lines are buffered and written by the DFK thread; flush and close write
 * them out.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cparsl/plugin.h>

struct tasklog {
    cparsl_store_t base;
    FILE *fp;
};

extern const struct cparsl_store_ops cparsl_store_tasklog_ops;

static int tl_open(const cparsl_cnode_t *root, const char *run_dir,
                   cparsl_store_t **out, cparsl_error_t *err)
{
    static const char *const keys[] = {"type", NULL};
    int rc =
        cparsl_cnode_check_keys(cparsl_cnode_get(root, "store"), keys, err);
    if (rc < 0)
        return rc;
    char path[4200];
    snprintf(path, sizeof path, "%s/tasks.log", run_dir);
    struct tasklog *tl = calloc(1, sizeof *tl);
    if (!tl)
        return cparsl_error_set(err, -ENOMEM, "out of memory");
    tl->fp = fopen(path, "we");
    if (!tl->fp) {
        rc = -errno;
        free(tl);
        return cparsl_error_set(err, rc, "tasklog store: cannot create %s: %s",
                                path, cparsl_strerror(rc));
    }
    tl->base.ops = &cparsl_store_tasklog_ops;
    *out = &tl->base;
    return 0;
}

static void tl_task_event(cparsl_store_t *s, const cparsl_task_event_t *ev)
{
    struct tasklog *tl = cparsl_container_of(s, struct tasklog, base);
    fprintf(tl->fp, "%lld task %llu app %s %s -> %s try %d",
            (long long)ev->t_ns, (unsigned long long)ev->task_id,
            ev->app ? ev->app : "?", cparsl_state_name(ev->from),
            cparsl_state_name(ev->to), ev->try_no);
    if (ev->executor)
        fprintf(tl->fp, " executor %s", ev->executor);
    if (ev->exec && cparsl_exec_code(ev->exec))
        fprintf(tl->fp, " error %s",
                cparsl_errname(cparsl_exec_code(ev->exec)));
    fputc('\n', tl->fp);
}

static void tl_dependency(cparsl_store_t *s, uint64_t child, uint64_t parent)
{
    struct tasklog *tl = cparsl_container_of(s, struct tasklog, base);
    fprintf(tl->fp, "%lld dep %llu <- %llu\n", (long long)cparsl_now_ns(),
            (unsigned long long)child, (unsigned long long)parent);
}

static int tl_flush(cparsl_store_t *s, cparsl_error_t *err)
{
    struct tasklog *tl = cparsl_container_of(s, struct tasklog, base);
    if (fflush(tl->fp) != 0)
        return cparsl_error_set(err, -errno, "tasklog store: write failed");
    return 0;
}

static int tl_close(cparsl_store_t *s, cparsl_error_t *err)
{
    struct tasklog *tl = cparsl_container_of(s, struct tasklog, base);
    int rc = 0;
    if (fclose(tl->fp) != 0)
        rc = cparsl_error_set(err, -errno, "tasklog store: write failed");
    free(tl);
    return rc;
}

const struct cparsl_store_ops cparsl_store_tasklog_ops = {
    .name = "tasklog",
    .open = tl_open,
    .task_event = tl_task_event,
    .dependency = tl_dependency,
    .flush = tl_flush,
    .close = tl_close,
};
