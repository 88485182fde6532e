/*
 * cmd.h - running a scheduler's command (sbatch, squeue, qsub, ...) from
 * rank 0, where the DFK and interchange threads run.
 *
 * The command is started with posix_spawn (nothing runs in the child
 * before exec, as a process with threads requires), in a process group
 * of its own; its standard output and error are captured whole; a
 * command that runs past its timeout is killed with its group.  A
 * failure is described for the user: which command, how it ended, and
 * what it printed.
 */
#ifndef CPARSL_PROVIDERS_CMD_H
#define CPARSL_PROVIDERS_CMD_H

#include <stddef.h>

#include <cparsl/error.h>

typedef struct cparsl_cmd_result {
    int status;      /* exit status, or 128 + the signal that ended it */
    int signal;      /* the signal that ended it; 0 when it exited */
    char *out, *err; /* what it printed (NUL-terminated, malloc'd) */
    size_t out_len, err_len;
} cparsl_cmd_result_t;

/*
 * Run argv (argv[0] looked up in PATH) with 'input' (may be NULL) on its
 * standard input, for at most 'timeout' seconds.  0 when it ran to its
 * end, whatever its status (look at r->status); -ENOENT when it cannot
 * be started, -ETIMEDOUT when it was killed at the timeout, -ENOMEM;
 * each with a message naming the command in err.  r is filled (and
 * must be freed with cparsl_cmd_result_free) whenever the call returns.
 */
int cparsl_cmd_run(const char *const *argv, const char *input, double timeout,
                   cparsl_cmd_result_t *r, cparsl_error_t *err);

/* 0 when the command ran and exited 0; else an error naming the command,
 * its status and the start of what it printed on stderr (or stdout). */
int cparsl_cmd_check(const char *const *argv, const char *input, double timeout,
                     cparsl_cmd_result_t *r, cparsl_error_t *err);

/* cparsl_cmd_check of "cmd id1 id2 ...", as qdel and scancel are run. */
int cparsl_cmd_check_ids(const char *cmd, const char *const *ids, size_t n,
                         double timeout, cparsl_cmd_result_t *r,
                         cparsl_error_t *err);

void cparsl_cmd_result_free(cparsl_cmd_result_t *r);

/*
 * A walltime as the schedulers write it, in seconds: "M" (minutes, as
 * Slurm's --time reads one number), "MM:SS", "HH:MM:SS", "D-HH",
 * "D-HH:MM", "D-HH:MM:SS" (Slurm's forms; PBS and Cobalt use HH:MM:SS).
 * -1 for anything else (minutes or seconds over 59 after the first
 * field, a sign, empty fields, trailing text).
 */
long cparsl_walltime_parse(const char *text);

#endif
