/*
 * alloc_count.c - a counting malloc family for cparsl-bench.
 *
 * Defining malloc & co. in the executable interposes them for the whole
 * process (glibc supports replacing its allocator this way), so the
 * library's own allocations, and libc's, are all counted.  Each call bumps
 * a relaxed atomic counter and forwards to glibc's real implementation
 * through its __libc_* entry points, which needs no dlsym and so is safe
 * from the first allocation on.  The counter is the bench's evidence for
 * "no malloc per task on the hot path" (DESIGN.md).
 *
 * Sanitizers bring their own allocator: there, and off glibc, nothing is
 * replaced and bench_alloc_counting() says so.
 */
#include "alloc_count.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||     \
    __has_feature(memory_sanitizer)
#define BENCH_NO_COUNT 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) ||           \
    !defined(__GLIBC__)
#ifndef BENCH_NO_COUNT
#define BENCH_NO_COUNT 1
#endif
#endif

#ifdef BENCH_NO_COUNT

bool bench_alloc_counting(void)
{
    return false;
}

uint64_t bench_alloc_count(void)
{
    return 0;
}

uint64_t bench_free_count(void)
{
    return 0;
}

#else

#include <errno.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdlib.h>

/* glibc's own allocator; exported for exactly this use. */
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void __libc_free(void *p);
extern void *__libc_memalign(size_t align, size_t size);
extern void *__libc_valloc(size_t size);
extern void *__libc_pvalloc(size_t size);

static _Atomic uint64_t nalloc, nfree;

static inline void count_alloc(void)
{
    atomic_fetch_add_explicit(&nalloc, 1, memory_order_relaxed);
}

bool bench_alloc_counting(void)
{
    return true;
}

uint64_t bench_alloc_count(void)
{
    return atomic_load_explicit(&nalloc, memory_order_relaxed);
}

uint64_t bench_free_count(void)
{
    return atomic_load_explicit(&nfree, memory_order_relaxed);
}

void *malloc(size_t size)
{
    count_alloc();
    return __libc_malloc(size);
}

void *calloc(size_t n, size_t size)
{
    count_alloc();
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t size)
{
    count_alloc();
    return __libc_realloc(p, size);
}

void free(void *p)
{
    if (p)
        atomic_fetch_add_explicit(&nfree, 1, memory_order_relaxed);
    __libc_free(p);
}

void *memalign(size_t align, size_t size)
{
    count_alloc();
    return __libc_memalign(align, size);
}

void *aligned_alloc(size_t align, size_t size)
{
    count_alloc();
    return __libc_memalign(align, size);
}

int posix_memalign(void **out, size_t align, size_t size)
{
    count_alloc();
    if (align < sizeof(void *) || (align & (align - 1)) != 0)
        return EINVAL;
    void *p = __libc_memalign(align, size);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

void *valloc(size_t size)
{
    count_alloc();
    return __libc_valloc(size);
}

void *pvalloc(size_t size)
{
    count_alloc();
    return __libc_pvalloc(size);
}

#endif /* BENCH_NO_COUNT */
