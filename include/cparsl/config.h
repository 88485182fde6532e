/*
 * cparsl/config.h - the configuration tree.
 *
 * A config is a generic tree of maps, sequences and scalars, read from YAML
 * (libyaml) or built in code.  Every node remembers where it came from
 * (file and line, or "<code>") and its path ("executors[0].label"), so a
 * problem found anywhere - by the core or by a plugin's configure entry -
 * can be reported with the key, the file, the line and what is wrong.
 *
 * The core validates its own top-level keys; each executor, provider or
 * launcher gets its own sub-tree through its vtable's configure entry and
 * validates that with the cparsl_cnode_* helpers.
 */
#ifndef CPARSL_CONFIG_H
#define CPARSL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cparsl/error.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cparsl_config cparsl_config_t;
typedef struct cparsl_cnode cparsl_cnode_t;

typedef enum cparsl_cnode_type {
    CPARSL_CNODE_MAP,
    CPARSL_CNODE_SEQ,
    CPARSL_CNODE_SCALAR
} cparsl_cnode_type_t;

/* ---- building a config ----------------------------------------------------
 */

/* An empty config (a map with no keys).  NULL on ENOMEM. */
cparsl_config_t *cparsl_config_create(void);

/*
 * Parse a YAML file.  On success *out owns a new config.  Syntax errors,
 * a top level that is not a mapping, duplicate keys, anchors/aliases and
 * unreadable files return -CPARSL_ECONFIG (or -errno) with the file, line
 * and problem in 'err'.
 */
int cparsl_config_load_file(cparsl_config_t **out, const char *path,
                            cparsl_error_t *err);

/* Same for a YAML document in memory; 'name' is used as the file name. */
int cparsl_config_load_string(cparsl_config_t **out, const char *yaml,
                              const char *name, cparsl_error_t *err);

/*
 * Set a scalar at 'path', creating maps and sequence entries on the way.
 * Path syntax: keys separated by '.', sequence indices as "[i]"; an index
 * equal to the current length appends: "executors[0].label".
 * 'value' is scalar text as YAML would read it ("4", "true", "1.5",
 * "runinfo").  Returns 0, -EINVAL (bad path, or the path crosses a
 * scalar) or -ENOMEM.
 */
int cparsl_config_set(cparsl_config_t *cfg, const char *path, const char *value,
                      cparsl_error_t *err);

/*
 * Overlay 'over' onto 'base': maps merge key by key, anything else
 * replaces.  'over' is not modified.  0 or -ENOMEM.
 */
int cparsl_config_merge(cparsl_config_t *base, const cparsl_config_t *over,
                        cparsl_error_t *err);

/* Deep copy; NULL on ENOMEM. */
cparsl_config_t *cparsl_config_dup(const cparsl_config_t *cfg);

/* Render as YAML text into a malloc'd string (caller frees); NULL on ENOMEM.*/
char *cparsl_config_to_yaml(const cparsl_config_t *cfg);
/* The same for one node and what is under it (a store records the config
 * it was opened with this way); NULL on ENOMEM or a NULL node. */
char *cparsl_cnode_to_yaml(const cparsl_cnode_t *node);

void cparsl_config_destroy(cparsl_config_t *cfg);

/* The root node (a map).  Valid as long as the config. */
const cparsl_cnode_t *cparsl_config_root(const cparsl_config_t *cfg);

/* ---- reading nodes ------------------------------------------------------ */

cparsl_cnode_type_t cparsl_cnode_type(const cparsl_cnode_t *n);
/* "executors[0].label"; "" for the root. */
const char *cparsl_cnode_path(const cparsl_cnode_t *n);
/* File name ("<code>" for nodes set in code) and 1-based line (0: none). */
const char *cparsl_cnode_file(const cparsl_cnode_t *n);
int cparsl_cnode_line(const cparsl_cnode_t *n);

/* Map: child under 'key' or NULL.  NULL map gives NULL. */
const cparsl_cnode_t *cparsl_cnode_get(const cparsl_cnode_t *map,
                                       const char *key);
/* Map or sequence: number of children; scalar: 0. */
size_t cparsl_cnode_len(const cparsl_cnode_t *n);
/* i-th child of a map or sequence (NULL past the end). */
const cparsl_cnode_t *cparsl_cnode_at(const cparsl_cnode_t *n, size_t i);
/* For a map child: its key; NULL otherwise. */
const char *cparsl_cnode_key(const cparsl_cnode_t *n);
/* Scalar text; NULL for maps and sequences. */
const char *cparsl_cnode_scalar(const cparsl_cnode_t *n);

/* ---- validating helpers (for the core and every plugin) --------------- */

/*
 * Each reads 'key' from 'map'.  A missing key (or a NULL map) stores
 * 'def' and returns 0.  A present key of the wrong type or out of range
 * returns -CPARSL_ECONFIG with "file:line: key 'path': problem" in err.
 */
int cparsl_cnode_int(const cparsl_cnode_t *map, const char *key, int64_t def,
                     int64_t min, int64_t max, int64_t *out,
                     cparsl_error_t *err);
int cparsl_cnode_double(const cparsl_cnode_t *map, const char *key, double def,
                        double min, double max, double *out,
                        cparsl_error_t *err);
int cparsl_cnode_bool(const cparsl_cnode_t *map, const char *key, bool def,
                      bool *out, cparsl_error_t *err);
/* The string stays owned by the tree. */
int cparsl_cnode_string(const cparsl_cnode_t *map, const char *key,
                        const char *def, const char **out, cparsl_error_t *err);
/* Like cparsl_cnode_string, but the value must be one of 'choices'
 * (NULL-terminated); stores its index. */
int cparsl_cnode_choice(const cparsl_cnode_t *map, const char *key,
                        const char *const *choices, int def, int *out,
                        cparsl_error_t *err);

/*
 * Fail with -CPARSL_ECONFIG naming the first key of 'map' not in
 * 'allowed' (NULL-terminated), suggesting a close allowed key if any.
 * A 'map' that is not a map is an error too; NULL is fine.
 */
int cparsl_cnode_check_keys(const cparsl_cnode_t *map,
                            const char *const *allowed, cparsl_error_t *err);

/* Format an error located at node 'n': "file:line: key 'path': <fmt>". */
int cparsl_cnode_error(const cparsl_cnode_t *n, cparsl_error_t *err,
                       const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#ifdef __cplusplus
}
#endif
#endif /* CPARSL_CONFIG_H */
