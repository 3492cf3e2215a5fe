/*
 * Small float vector helpers for attention, with run-time dispatch:
 * AVX-512F, AVX2+FMA, or portable C (the reference; tests/test_kernels.c
 * checks the SIMD versions against it).
 */
#include <pthread.h>

#include "vec.h"

static void dots_c(const float *q, const float *k, size_t stride, int n, int D, float *out) {
    for (int i = 0; i < n; i++, k += stride) {
        float s = 0;
        for (int d = 0; d < D; d++) s += q[d] * k[d];
        out[i] = s;
    }
}

static void axpys_c(float *acc, const float *v, size_t stride, const float *w, int n, int D) {
    for (int i = 0; i < n; i++, v += stride)
        for (int d = 0; d < D; d++) acc[d] += w[i] * v[d];
}

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_X86 1

__attribute__((target("avx512f"))) static void dots_512(const float *q, const float *k, size_t stride, int n,
                                                        int D, float *out) {
    for (int i = 0; i < n; i++, k += stride) {
        __m512 s = _mm512_setzero_ps();
        int d = 0;
        for (; d + 16 <= D; d += 16) s = _mm512_fmadd_ps(_mm512_loadu_ps(q + d), _mm512_loadu_ps(k + d), s);
        float r = _mm512_reduce_add_ps(s);
        for (; d < D; d++) r += q[d] * k[d];
        out[i] = r;
    }
}

__attribute__((target("avx512f"))) static void axpys_512(float *acc, const float *v, size_t stride, const float *w,
                                                         int n, int D) {
    int d = 0;
    for (; d + 16 <= D; d += 16) {
        __m512 a = _mm512_loadu_ps(acc + d);
        const float *vv = v + d;
        for (int i = 0; i < n; i++, vv += stride) a = _mm512_fmadd_ps(_mm512_set1_ps(w[i]), _mm512_loadu_ps(vv), a);
        _mm512_storeu_ps(acc + d, a);
    }
    for (; d < D; d++) {
        const float *vv = v + d;
        for (int i = 0; i < n; i++, vv += stride) acc[d] += w[i] * *vv;
    }
}

__attribute__((target("avx2,fma"))) static void dots_256(const float *q, const float *k, size_t stride, int n, int D,
                                                         float *out) {
    for (int i = 0; i < n; i++, k += stride) {
        __m256 s = _mm256_setzero_ps();
        int d = 0;
        for (; d + 8 <= D; d += 8) s = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), _mm256_loadu_ps(k + d), s);
        __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
        h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        h = _mm_add_ss(h, _mm_movehdup_ps(h));
        float r = _mm_cvtss_f32(h);
        for (; d < D; d++) r += q[d] * k[d];
        out[i] = r;
    }
}

__attribute__((target("avx2,fma"))) static void axpys_256(float *acc, const float *v, size_t stride, const float *w,
                                                          int n, int D) {
    int d = 0;
    for (; d + 8 <= D; d += 8) {
        __m256 a = _mm256_loadu_ps(acc + d);
        const float *vv = v + d;
        for (int i = 0; i < n; i++, vv += stride) a = _mm256_fmadd_ps(_mm256_set1_ps(w[i]), _mm256_loadu_ps(vv), a);
        _mm256_storeu_ps(acc + d, a);
    }
    for (; d < D; d++) {
        const float *vv = v + d;
        for (int i = 0; i < n; i++, vv += stride) acc[d] += w[i] * *vv;
    }
}
#else
#define HAVE_X86 0
#endif

static vec_ops g_ops[VEC_ISA_COUNT];
static int g_best;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void init_ops(void) {
    g_ops[VEC_ISA_SCALAR] = (vec_ops){dots_c, axpys_c};
    g_ops[VEC_ISA_AVX2] = g_ops[VEC_ISA_AVX512] = g_ops[VEC_ISA_SCALAR];
    g_best = VEC_ISA_SCALAR;
#if HAVE_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        g_ops[VEC_ISA_AVX2] = g_ops[VEC_ISA_AVX512] = (vec_ops){dots_256, axpys_256};
        g_best = VEC_ISA_AVX2;
    }
    if (__builtin_cpu_supports("avx512f")) {
        g_ops[VEC_ISA_AVX512] = (vec_ops){dots_512, axpys_512};
        g_best = VEC_ISA_AVX512;
    }
#endif
}

const vec_ops *vec_get(int isa) {
    pthread_once(&g_once, init_ops);
    if (isa < 0 || isa >= VEC_ISA_COUNT || isa > g_best) isa = g_best;
    return &g_ops[isa];
}

const vec_ops *vec_best(void) { return vec_get(VEC_ISA_COUNT); }
