/*
 * memo.h - the memoization table (DFK thread only); see memo.c.
 */
#ifndef CPARSL_CORE_MEMO_H
#define CPARSL_CORE_MEMO_H

#include <stddef.h>
#include <stdint.h>

#include <cparsl/cparsl.h>

struct cparsl__task;

/*
 * An entry is answered either by a future of this run (the first call
 * with the key) or by a result loaded from an earlier run's checkpoint
 * (its canonical encoding, in the same allocation as the key).
 */
struct cparsl__memo_entry {
    uint64_t hash;
    unsigned char *key;
    size_t len;
    cparsl_future_t *f;         /* a reference, or NULL */
    const unsigned char *saved; /* f == NULL: the encoded result */
    size_t saved_len;
    uint64_t saved_id; /* the task that computed it, in its run */
};

typedef struct cparsl__memo {
    struct cparsl__memo_entry *v;
    size_t cap, n;
    uint64_t hits, saved_hits, loaded;
} cparsl__memo_t;

/* The hash every memo and checkpoint key is filed under (XXH3, 64 bits). */
uint64_t cparsl__memo_hash(const void *key, size_t len);

/* The canonical key of a task whose arguments are resolved (malloc'd). */
int cparsl__memo_key(const struct cparsl__task *t, unsigned char **out,
                     size_t *len);

/*
 * The entry of an earlier identical call, or NULL after recording 'f'
 * under 'key' (NULL too when there is no memory to record it: the call
 * then runs uncached).  Takes ownership of 'key' either way.
 */
const struct cparsl__memo_entry *cparsl__memo_find_or_add(cparsl__memo_t *m,
                                                          unsigned char *key,
                                                          size_t len,
                                                          cparsl_future_t *f);

/* The entry filed under exactly this key, or NULL. */
const struct cparsl__memo_entry *cparsl__memo_find(const cparsl__memo_t *m,
                                                   const void *key, size_t len);

/*
 * Add a checkpointed result of an earlier run: key and encoded result
 * are copied.  An entry already there for the key wins (the first file
 * named, or this run's call).  0, or -ENOMEM.
 */
int cparsl__memo_add_saved(cparsl__memo_t *m, const void *key, size_t len,
                           const void *result, size_t rlen, uint64_t task_id);

void cparsl__memo_clear(cparsl__memo_t *m);

#endif
