/*
 * launchers.h - how a block's command runs across the block's nodes:
 * pure functions from a launch spec to a POSIX sh fragment, which a
 * provider puts in the block's submit script (docs/launchers.md).
 */
#ifndef CPARSL_LAUNCHERS_H
#define CPARSL_LAUNCHERS_H

#include <cparsl/error.h>

typedef struct cparsl_launch_spec {
    /* The command to run, as words: each is quoted for sh. */
    const char *const *argv;
    int nodes_per_block; /* >= 1 */
    int tasks_per_node;  /* >= 1 */
    /* Extra launcher options, put in verbatim (NULL: none; one line). */
    const char *overrides;
    /* wrapped only: a prefix such as "apptainer exec img.sif", verbatim */
    const char *prefix;
} cparsl_launch_spec_t;

/*
 * The launcher 'name' for 'spec' as a malloc'd, NUL-terminated sh
 * fragment (ending in a newline).  0; -CPARSL_ECONFIG for an unknown
 * launcher (the message lists the known ones) or a bad spec (the message
 * names the field); -ENOMEM.
 */
int cparsl_launcher_build(const char *name, const cparsl_launch_spec_t *spec,
                          char **out, cparsl_error_t *err);

/* The launchers' names, NULL-terminated. */
const char *const *cparsl_launcher_names(void);

/* One word quoted for POSIX sh: 'word', with each ' as '\''
 * (malloc'd; NULL on ENOMEM). */
char *cparsl_sh_quote(const char *word);

#endif
