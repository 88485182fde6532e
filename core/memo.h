/*
 * memo.h - in-run memoization table (DFK thread only); see memo.c.
 */
#ifndef CPARSL_CORE_MEMO_H
#define CPARSL_CORE_MEMO_H

#include <stddef.h>
#include <stdint.h>

#include <cparsl/cparsl.h>

struct cparsl__task;

struct cparsl__memo_entry {
    uint64_t hash;
    unsigned char *key;
    size_t len;
    cparsl_future_t *f; /* the first call's future (a reference) */
};

typedef struct cparsl__memo {
    struct cparsl__memo_entry *v;
    size_t cap, n;
    uint64_t hits;
} cparsl__memo_t;

/* The canonical key of a task whose arguments are resolved (malloc'd). */
int cparsl__memo_key(const struct cparsl__task *t, unsigned char **out,
                     size_t *len);
/* The future of an earlier identical call, or NULL after recording 'f'
 * under 'key'.  Takes ownership of 'key' either way. */
cparsl_future_t *cparsl__memo_find_or_add(cparsl__memo_t *m, unsigned char *key,
                                          size_t len, cparsl_future_t *f);
void cparsl__memo_clear(cparsl__memo_t *m);

#endif
