/*
 * The library's own worker threads (no OpenMP). A parallel region runs
 * fn(arg, i, n) for i in [0, n) over the caller plus the workers. Workers
 * spin briefly between regions (decode issues hundreds of short regions per
 * token, so wake-up latency matters) and then sleep on a condition variable
 * so they never compete with OpenBLAS's threads or the host's.
 * Regions from different host threads are serialised by a mutex.
 */
#ifndef LLMS_CORE_THREADPOOL_H
#define LLMS_CORE_THREADPOOL_H

#include "alloc.h"
#include "llmserve.h"

typedef struct threadpool threadpool;

/* fn is called with task index i of n; each index exactly once. */
typedef void (*pool_fn)(void *arg, int64_t i, int64_t n);

llms_status pool_create(const lalloc *a, int n_threads, threadpool **out);
void pool_destroy(threadpool *p);
int pool_size(const threadpool *p);

/* Run n tasks; returns when all are done. n may be smaller than the pool. */
void pool_run(threadpool *p, int64_t n, pool_fn fn, void *arg);

/* fn is called on units [begin, end); the ranges cover [0, n) exactly once. */
typedef void (*pool_range_fn)(void *arg, int64_t begin, int64_t end);

/* Run fn over n units in ranges the threads claim as they go: each claim
 * takes 1/(2 x threads) of what is left, at least `grain` units. Why: a
 * memory-bound pass (decode reads every weight once) wants long contiguous
 * stretches per thread, so the hardware prefetchers keep streaming, and
 * small pieces at the end, so no thread waits long for the last one at
 * the region's barrier. Fixed-size tasks give one or the other. */
void pool_run_ranges(threadpool *p, int64_t n, int64_t grain, pool_range_fn fn, void *arg);

#endif
