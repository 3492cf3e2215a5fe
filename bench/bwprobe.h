/*
 * The memory read bandwidth probe shared by the benchmark programs
 * (llms-bench, llms-decode-parts): a 1 GiB buffer read in slices by n
 * threads, each a contiguous share, as decode's threads read the weights;
 * and the median both take of readings on a noisy machine.
 */
#ifndef LLMS_BENCH_BWPROBE_H
#define LLMS_BENCH_BWPROBE_H

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- memory read bandwidth ---- */

typedef struct bw_job {
    const uint64_t *p;
    size_t n;
    uint64_t sum;
    double t0, t1;   /* when this thread started and finished reading */
} bw_job;

/* The plain reader: every word, four chains. */
static inline uint64_t bw_read_plain(const uint64_t *p, size_t n) {
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i + 4 <= n; i += 4) {
        s0 += p[i];
        s1 += p[i + 1];
        s2 += p[i + 2];
        s3 += p[i + 3];
    }
    return s0 + s1 + s2 + s3;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#include <string.h>
/* 256-bit loads, each 64-byte line asked for 4 KiB ahead into L2. */
__attribute__((target("avx2"))) static inline uint64_t bw_read_ahead(const uint64_t *p, size_t n) {
    __m256i a = _mm256_setzero_si256(), b = a;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm_prefetch((const char *)(p + i) + 4096, _MM_HINT_T1);
        a = _mm256_add_epi64(a, _mm256_loadu_si256((const __m256i *)(const void *)(p + i)));
        b = _mm256_add_epi64(b, _mm256_loadu_si256((const __m256i *)(const void *)(p + i + 4)));
    }
    uint64_t t[4];
    a = _mm256_add_epi64(a, b);
    memcpy(t, &a, sizeof t);
    return t[0] + t[1] + t[2] + t[3] + bw_read_plain(p + i, n - i);
}
#endif

/* Sums n words from p the fastest way found to stream memory here, which
 * is what the limit has to be: the kernels' own read-ahead (F16 rows, Q4_0
 * tiles) made F16 decode run at 104-112% of a probe of plain loads. 256-bit
 * loads with a read-ahead of 4 KiB into L2 read 1.12-1.15x what the plain
 * loop of four scalar chains reads (2 threads, 128 MiB slices, alternating,
 * medians of 30; 2 KiB ahead 1.00-1.04x, 8 KiB 1.09-1.12x, into L1
 * 1.11-1.12x). The plain loop where AVX2 is missing. */
static inline uint64_t bw_read_words(const uint64_t *p, size_t n) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("avx2")) return bw_read_ahead(p, n);
#endif
    return bw_read_plain(p, n);
}

static inline void *bw_thread(void *arg) {
    bw_job *j = arg;
    j->t0 = now_s();
    j->sum = bw_read_words(j->p, j->n);
    j->t1 = now_s();
    return NULL;
}

/* The bandwidth probe: a 1 GiB buffer read by n threads, each a
 * contiguous share, as decode's threads read the weights. The buffer is on
 * transparent huge pages where the kernel gives them, as the library's CPU
 * weights are (src/backend/cpu/pack.c): the limit is what this machine's
 * memory delivers at best, and 4 KiB pages read slower (measured here:
 * 26-31 GB/s against 32-34). Allocated once, read many times: bandwidth
 * drifts on a shared machine, so llms-bench reads 128 MiB of it (four
 * times the last-level cache, a fresh part each time) after every few
 * generated tokens, and llms-decode-parts after each round of its parts:
 * every token has a bandwidth measured beside it. */
typedef struct bw_probe {
    uint64_t *buf;
    size_t n;
    int threads;
} bw_probe;

static inline int bw_probe_init(bw_probe *p, int n_threads) {
    size_t bytes = (size_t)1 << 30;
    p->n = bytes / sizeof(uint64_t);
    p->threads = n_threads < 1 ? 1 : n_threads > 256 ? 256 : n_threads;
    p->buf = NULL;
    if (posix_memalign((void **)&p->buf, (size_t)2 << 20, bytes) != 0) return 0;
#ifdef MADV_HUGEPAGE
    (void)madvise(p->buf, bytes, MADV_HUGEPAGE);
#endif
    for (size_t i = 0; i < p->n; i++) p->buf[i] = i;
    return 1;
}

/* GB/s of one read of `bytes` of the buffer from byte `off` (modulo the
 * buffer; from its start where the slice would run past the end), each
 * thread a contiguous share. */
static inline double bw_probe_slice(const bw_probe *p, size_t off, size_t bytes) {
    pthread_t th[256];
    bw_job jobs[256];
    size_t n = bytes / sizeof(uint64_t), first = (off / sizeof(uint64_t)) % p->n;
    if (n > p->n) n = p->n;
    if (first + n > p->n) first = 0;
    size_t per = n / (size_t)p->threads;
    for (int t = 0; t < p->threads; t++) {
        jobs[t].p = p->buf + first + per * (size_t)t;
        jobs[t].n = per;
        pthread_create(&th[t], NULL, bw_thread, &jobs[t]);
    }
    uint64_t total = 0;
    for (int t = 0; t < p->threads; t++) {
        pthread_join(th[t], NULL);
        total += jobs[t].sum;
    }
    /* From the first thread's start to the last one's end: creating and
     * joining the threads (50-100 us of a 4 ms slice) is not memory time,
     * and counting it understated the limit by about 3% (measured side by
     * side: 33.4 / 32.8 / 34.6 GB/s against 32.3 / 31.9 / 33.5). */
    double start = jobs[0].t0, end = jobs[0].t1;
    for (int t = 1; t < p->threads; t++) {
        if (jobs[t].t0 < start) start = jobs[t].t0;
        if (jobs[t].t1 > end) end = jobs[t].t1;
    }
    double dt = end - start;
    if (total == 42) fprintf(stderr, " ");  /* keeps the sums alive */
    return (double)per * p->threads * sizeof(uint64_t) / dt / 1e9;
}

static inline int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median of v[0..n) (n >= 1; the mean of the middle two for an even n).
 * Sorts v. */
static inline double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return (v[(n - 1) / 2] + v[n / 2]) / 2;
}

#endif
