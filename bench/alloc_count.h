/*
 * alloc_count.h - how many times the process called the allocator.
 *
 * alloc_count.c defines the malloc family in the cparsl-bench executable
 * itself, so every allocation in the process (the library, libc, other
 * threads) goes through it and is counted before being forwarded to
 * glibc.  Under AddressSanitizer, or off glibc, nothing is replaced and
 * counting is reported as unavailable.
 */
#ifndef CPARSL_BENCH_ALLOC_COUNT_H
#define CPARSL_BENCH_ALLOC_COUNT_H

#include <stdbool.h>
#include <stdint.h>

/* True when the counters below are live. */
bool bench_alloc_counting(void);

/* malloc, calloc, realloc and the aligned forms called so far (0 when
 * not counting).  Relaxed: exact once the threads that allocated are
 * synchronized with the caller (a future wait does that). */
uint64_t bench_alloc_count(void);

/* free calls so far (non-NULL pointers only). */
uint64_t bench_free_count(void);

#endif /* CPARSL_BENCH_ALLOC_COUNT_H */
