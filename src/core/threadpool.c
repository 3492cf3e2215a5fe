#include "threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#include "error.h"

struct threadpool {
    const lalloc *a;
    int n_threads;                 /* including the caller */
    pthread_t *threads;
    int n_started;
    pthread_mutex_t region_lock;   /* one region at a time */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_cond_t done_cv;
    /* current region */
    pool_fn fn;                    /* a pool_run region, or */
    pool_range_fn range_fn;        /* a pool_run_ranges one */
    void *arg;
    int64_t n_tasks;               /* tasks, or units for range_fn */
    int64_t grain;
    atomic_llong next;             /* next task index to claim */
    atomic_int active;             /* workers still inside the region */
    atomic_uint generation;        /* bumped at each region start */
    atomic_int stop;
    struct range_part *parts;      /* [n_threads]: pool_run_ranges' shares */
    struct worker_arg *args;       /* [n_threads - 1]: each worker's index */
};

/* One thread's share of a pool_run_ranges region (pool_run_ranges in
 * threadpool.h says why), on a cache line of its own: its owner claims
 * from the front, and so do the others once their own share is done. */
typedef struct range_part {
    _Alignas(64) atomic_llong next;
    int64_t end;
} range_part;

typedef struct worker_arg {
    threadpool *p;
    int self;   /* 1.. (the caller is 0) */
} worker_arg;

/* Claims from part pt until it is empty: half of what is left there, at
 * least `grain` units, and all of it when that is under two grains (so
 * only a part's last claim can be short of the grain, and only when the
 * whole region is). */
static void claim_part(threadpool *p, range_part *pt) {
    int64_t cur = atomic_load_explicit(&pt->next, memory_order_relaxed);
    while (cur < pt->end) {
        const int64_t left = pt->end - cur;
        const int64_t size = left < 2 * p->grain ? left : left / 2;
        if (!atomic_compare_exchange_weak_explicit(&pt->next, &cur, cur + size, memory_order_relaxed,
                                                   memory_order_relaxed))
            continue;   /* cur now holds the part's claim point: retry from there */
        p->range_fn(p->arg, cur, cur + size);
        cur = atomic_load_explicit(&pt->next, memory_order_relaxed);
    }
}

/* Thread `self` (0 is the caller) works through its own part, then through
 * the others' in turn, taking what their owners have not claimed yet. */
static void run_ranges(threadpool *p, int self) {
    const int T = p->n_threads;
    claim_part(p, &p->parts[self]);
    for (int k = 1; k < T; k++) claim_part(p, &p->parts[(self + k) % T]);
}

static void run_tasks(threadpool *p, int self) {
    if (p->range_fn) {
        run_ranges(p, self);
        return;
    }
    for (;;) {
        int64_t i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (i >= p->n_tasks) break;
        p->fn(p->arg, i, p->n_tasks);
    }
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *worker_main(void *arg) {
    threadpool *p = ((worker_arg *)arg)->p;
    const int self = ((worker_arg *)arg)->self;
    /* Generation 0 is the state at creation. A worker that starts only after
     * the first region was issued must still take part in it (the caller
     * waits for every worker), so it must not start from the current value. */
    unsigned seen = 0;
    for (;;) {
        /* Spin for a short while: the next region usually follows at once. */
        uint64_t t0 = now_ns();
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen &&
               !atomic_load(&p->stop)) {
            if (++spins % 1024 == 0 && now_ns() - t0 > 200000) break;
            /* On a busy machine, give the core to whoever holds the work. */
            if (spins % 256 == 0) sched_yield();
#if defined(__x86_64__)
            __builtin_ia32_pause();
#endif
        }
        if (g == seen && !atomic_load(&p->stop)) {
            pthread_mutex_lock(&p->lock);
            while ((g = atomic_load(&p->generation)) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->wake, &p->lock);
            pthread_mutex_unlock(&p->lock);
        }
        if (atomic_load(&p->stop)) break;
        seen = g;
        run_tasks(p, self);
        if (atomic_fetch_sub_explicit(&p->active, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->lock);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->lock);
        }
    }
    return NULL;
}

llms_status pool_create(const lalloc *a, int n_threads, threadpool **out) {
    *out = NULL;
    if (n_threads < 1) n_threads = 1;
    threadpool *p = xcalloc(a, 1, sizeof *p);
    if (!p) return ERR_OOM();
    p->a = a;
    p->n_threads = n_threads;
    pthread_mutex_init(&p->region_lock, NULL);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    p->parts = xmalloc_aligned(a, (size_t)n_threads * sizeof *p->parts, 64);
    if (!p->parts) { pool_destroy(p); return ERR_OOM(); }
    for (int i = 0; i < n_threads; i++) {
        atomic_init(&p->parts[i].next, 0);
        p->parts[i].end = 0;
    }
    if (n_threads > 1) {
        p->threads = xcalloc(a, (size_t)n_threads - 1, sizeof *p->threads);
        p->args = xcalloc(a, (size_t)n_threads - 1, sizeof *p->args);
        if (!p->threads || !p->args) { pool_destroy(p); return ERR_OOM(); }
        for (int i = 0; i < n_threads - 1; i++) {
            p->args[i].p = p;
            p->args[i].self = i + 1;
            if (pthread_create(&p->threads[i], NULL, worker_main, &p->args[i]) != 0) {
                pool_destroy(p);
                return err_set(LLMS_ERR_INTERNAL, "could not start worker thread %d", i);
            }
            p->n_started++;
        }
    }
    *out = p;
    return LLMS_OK;
}

void pool_destroy(threadpool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->n_started; i++) pthread_join(p->threads[i], NULL);
    xfree(p->a, p->threads);
    xfree(p->a, p->args);
    xfree_aligned(p->a, p->parts);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done_cv);
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->region_lock);
    xfree(p->a, p);
}

int pool_size(const threadpool *p) { return p ? p->n_threads : 1; }

/* Starts a region (fn or range_fn set), takes part in it and waits for
 * the workers to leave it. */
static void run_region(threadpool *p, int64_t n, int64_t grain, pool_fn fn, pool_range_fn range_fn, void *arg) {
    pthread_mutex_lock(&p->region_lock);
    p->fn = fn;
    p->range_fn = range_fn;
    p->arg = arg;
    p->n_tasks = n;
    p->grain = grain < 1 ? 1 : grain;
    atomic_store(&p->next, 0);
    if (range_fn) {
        /* As many parts as threads, each of a grain at least; threads
         * without one (a short region) start by helping the others. */
        int64_t parts = n / p->grain;
        if (parts > p->n_threads) parts = p->n_threads;
        if (parts < 1) parts = 1;
        for (int i = 0; i < p->n_threads; i++) {
            const int64_t b = i < parts ? n * i / parts : n, e = i < parts ? n * (i + 1) / parts : n;
            atomic_store_explicit(&p->parts[i].next, b, memory_order_relaxed);
            p->parts[i].end = e;
        }
    }
    atomic_store(&p->active, p->n_started);
    pthread_mutex_lock(&p->lock);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    run_tasks(p, 0);
    /* Wait for the workers to leave the region (they may still hold a task). */
    int spins = 0;
    while (atomic_load_explicit(&p->active, memory_order_acquire) > 0) {
        if (++spins > 20000) {
            pthread_mutex_lock(&p->lock);
            while (atomic_load(&p->active) > 0) pthread_cond_wait(&p->done_cv, &p->lock);
            pthread_mutex_unlock(&p->lock);
            break;
        }
        /* A worker still busy (or not yet scheduled): on a machine with
         * more runnable threads than cores, let it run. */
        if (spins % 256 == 0) sched_yield();
#if defined(__x86_64__)
        __builtin_ia32_pause();
#endif
    }
    pthread_mutex_unlock(&p->region_lock);
}

void pool_run(threadpool *p, int64_t n, pool_fn fn, void *arg) {
    if (n <= 0) return;
    if (!p || p->n_started == 0 || n == 1) {
        for (int64_t i = 0; i < n; i++) fn(arg, i, n);
        return;
    }
    run_region(p, n, 1, fn, NULL, arg);
}

void pool_run_ranges(threadpool *p, int64_t n, int64_t grain, pool_range_fn fn, void *arg) {
    if (n <= 0) return;
    if (!p || p->n_started == 0 || n <= grain) {
        fn(arg, 0, n);
        return;
    }
    run_region(p, n, grain, NULL, fn, arg);
}
