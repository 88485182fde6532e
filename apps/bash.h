/*
 * bash.h - internals of the bash app kind (Parsl's @bash_app), shared by
 * the template renderer (bash_template.c), the runner (bash.c) and their
 * unit test.  Not installed.
 */
#ifndef CPARSL_APPS_BASH_H
#define CPARSL_APPS_BASH_H

#include <cparsl/plugin.h>

/*
 * Render the command template 'tmpl' with the call's arguments.
 *
 *   {name}  {0}  {inputs[i]}  {outputs[i]}   a value, shell-quoted
 *   {name:raw} ...                           the same, not quoted
 *   {{  }}                                   literal braces
 *
 * On success returns 0 and *out is a malloc'd NUL-terminated command the
 * caller frees.  On failure returns -CPARSL_ETEMPLATE (syntax error, a
 * placeholder without a value, a value that cannot be rendered) or
 * -ENOMEM, with the reason in 'err' (optional); *out is then NULL.
 */
int cparsl__bash_render(const char *tmpl, const cparsl_args_t *a, char **out,
                        cparsl_error_t *err);

/*
 * Check only the syntax of 'tmpl' (at app registration, before any call
 * exists).  0 or -CPARSL_ETEMPLATE naming the byte offset.
 */
int cparsl__bash_check_template(const char *tmpl, cparsl_error_t *err);

/* The app kind itself, listed in the built-in table by the build. */
extern const struct cparsl_app_kind cparsl_appkind_bash;

#endif /* CPARSL_APPS_BASH_H */
