/*
 * Small float vector helpers (attention, SwiGLU, RMSNorm, the sampler's
 * passes), with run-time dispatch: AVX-512F, AVX2+FMA, or portable C (the
 * reference; tests/test_kernels.c checks the SIMD versions against it).
 */
#include <math.h>
#include <pthread.h>

#include "vec.h"
#include "../../quant/half.h"
#include "../../quant/kernels.h"

static void scores16_c(const float *q, const uint16_t *kt, int D, float scale, float *out) {
    float s[VEC_BLOCK] = {0};
    for (int d = 0; d < D; d++)
        for (int p = 0; p < VEC_BLOCK; p++) s[p] += q[d] * half_to_f32(kt[d * VEC_BLOCK + p]);
    for (int p = 0; p < VEC_BLOCK; p++) out[p] = s[p] * scale;
}

static void scores16n_c(const float *q, int nq, const uint16_t *kt, int D, float scale, float *out) {
    for (int i = 0; i < nq; i++) scores16_c(q + (size_t)i * D, kt, D, scale, out + i * VEC_BLOCK);
}

static float max16_c(const float *s, int n) {
    float m = s[0];
    for (int i = 1; i < n; i++) m = s[i] > m ? s[i] : m;
    return m;
}

static float exp16_c(float *s, int n, float m) {
    float sum = 0;
    for (int i = 0; i < n; i++) sum += s[i] = expf(s[i] - m);
    return sum;
}

static void axpys_c(float *acc, const uint16_t *v, size_t stride, const float *w, int n, int D) {
    for (int i = 0; i < n; i++, v += stride)
        for (int d = 0; d < D; d++) acc[d] += w[i] * half_to_f32(v[d]);
}

/* attn_block from a level's four primitives: the reference, and the AVX2
 * level (eight lanes: no register holds a block's scores). */
#define ATTN_BLOCK_FROM(NAME, SCORESN, MAX16, EXP16, AXPYS)                                                      \
    static void NAME(const float *q, int nq, const uint16_t *kt, const uint16_t *v, size_t stride, int cnt,     \
                     int D, float scale, attn_state *st) {                                                     \
        float sc[VEC_MAX_Q * VEC_BLOCK];                                                                       \
        SCORESN(q, nq, kt, D, scale, sc);                                                                      \
        for (int i = 0; i < nq; i++) {                                                                         \
            float *s = sc + i * VEC_BLOCK, *acc = st->acc + (size_t)i * D;                                     \
            const float bm = MAX16(s, cnt);                                                                    \
            if (bm > st->mx[i]) {                                                                              \
                const float corr = expf(st->mx[i] - bm);                                                       \
                for (int p = 0; p < VEC_BLOCK; p++) st->sum[i][p] *= corr;                                     \
                for (int d = 0; d < D; d++) acc[d] *= corr;                                                    \
                st->mx[i] = bm;                                                                                \
            }                                                                                                  \
            EXP16(s, cnt, st->mx[i]);                                                                          \
            for (int p = 0; p < cnt; p++) st->sum[i][p] += s[p];                                               \
            AXPYS(acc, v, stride, s, cnt, D);                                                                  \
        }                                                                                                      \
    }

ATTN_BLOCK_FROM(attn_block_c, scores16n_c, max16_c, exp16_c, axpys_c)

static void silu_mul_c(float *g, const float *u, size_t n) {
    for (size_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* The products x[i]^2 are exact in double, so only the order of the sum
 * differs between levels. */
static void rmsnorm_c(float *out, const float *x, const float *g, size_t n, float eps) {
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    const float scale = (float)(1.0 / sqrt(ss / (double)n + eps));
    for (size_t i = 0; i < n; i++) out[i] = x[i] * scale * g[i];
}

static double sum_exp_c(const float *x, size_t n, float m) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += exp((double)(x[i] - m));
    return s;
}

static int any_nan_c(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (isnan(x[i])) return 1;
    return 0;
}

static float max_first_c(const float *x, size_t n, size_t *first) {
    size_t k = 0;
    for (size_t i = 1; i < n; i++)
        if (x[i] > x[k]) k = i;
    *first = k;
    return x[k];
}

void attn_start(attn_state *st, float *acc, int nq, int D) {
    for (int i = 0; i < VEC_MAX_Q; i++) {
        st->mx[i] = -INFINITY;
        for (int p = 0; p < VEC_BLOCK; p++) st->sum[i][p] = 0;
    }
    for (size_t i = 0; i < (size_t)nq * (size_t)D; i++) acc[i] = 0;
    st->acc = acc;
}

void attn_finish(const attn_state *st, int nq, int D, float *out, size_t out_stride) {
    for (int i = 0; i < nq; i++) {
        float sum = 0;
        for (int p = 0; p < VEC_BLOCK; p++) sum += st->sum[i][p];
        const float *acc = st->acc + (size_t)i * D;
        for (int d = 0; d < D; d++) out[(size_t)i * out_stride + d] = acc[d] / sum;
    }
}

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_X86 1

/* exp(x) for x <= 0 (softmax weights): x = n ln2 + r, |r| <= ln2/2, e^r by
 * its Taylor polynomial to degree 6 (truncation under 1.3e-7 relative),
 * times 2^n; below -87 the result flushes to 0. */
__attribute__((target("avx512f"))) static inline __m512 exp_512(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860677e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* NQ queries against one block of keys, into s[0..NQ): one FMA chain per
 * query, each key row loaded once. A single query's chain is bound by the
 * FMA latency, which is why attention passes all the heads that share a
 * KV head. (Unscaled: the callers scale.) */
/* 16 halves from p, widened. */
__attribute__((target("avx512f"), always_inline)) static inline __m512 load_h16(const uint16_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

__attribute__((target("avx512f"), always_inline)) static inline void block_scores_512(const float *q,
                                                                                     const uint16_t *kt, int D,
                                                                                     __m512 *s, const int NQ) {
#pragma GCC unroll 8
    for (int i = 0; i < NQ; i++) s[i] = _mm512_setzero_ps();
    for (int d = 0; d < D; d++) {
        const __m512 k = load_h16(kt + d * VEC_BLOCK);
#pragma GCC unroll 8
        for (int i = 0; i < NQ; i++) s[i] = _mm512_fmadd_ps(_mm512_set1_ps(q[(size_t)i * D + d]), k, s[i]);
    }
}

__attribute__((target("avx512f"), always_inline)) static inline void scores_nq_512(const float *q, const uint16_t *kt,
                                                                                  int D, float scale, float *out,
                                                                                  const int NQ) {
    __m512 s[VEC_MAX_Q];
    block_scores_512(q, kt, D, s, NQ);
#pragma GCC unroll 8
    for (int i = 0; i < NQ; i++) _mm512_storeu_ps(out + i * VEC_BLOCK, _mm512_mul_ps(s[i], _mm512_set1_ps(scale)));
}

__attribute__((target("avx512f"))) static void scores16_512(const float *q, const uint16_t *kt, int D, float scale,
                                                            float *out) {
    scores_nq_512(q, kt, D, scale, out, 1);
}

__attribute__((target("avx512f"))) static void scores16n_512(const float *q, int nq, const uint16_t *kt, int D,
                                                             float scale, float *out) {
    for (; nq >= 8; nq -= 8, q += (size_t)8 * D, out += 8 * VEC_BLOCK) scores_nq_512(q, kt, D, scale, out, 8);
    switch (nq) {
    case 7: scores_nq_512(q, kt, D, scale, out, 7); break;
    case 6: scores_nq_512(q, kt, D, scale, out, 6); break;
    case 5: scores_nq_512(q, kt, D, scale, out, 5); break;
    case 4: scores_nq_512(q, kt, D, scale, out, 4); break;
    case 3: scores_nq_512(q, kt, D, scale, out, 3); break;
    case 2: scores_nq_512(q, kt, D, scale, out, 2); break;
    case 1: scores_nq_512(q, kt, D, scale, out, 1); break;
    default: break;
    }
}

__attribute__((target("avx512f"))) static float max16_512(const float *s, int n) {
    const __mmask16 k = (__mmask16)((1u << n) - 1);
    return _mm512_mask_reduce_max_ps(k, _mm512_maskz_loadu_ps(k, s));
}

__attribute__((target("avx512f"))) static float exp16_512(float *s, int n, float m) {
    const __mmask16 k = (__mmask16)((1u << n) - 1);
    const __m512 e = exp_512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s), _mm512_set1_ps(m)));
    _mm512_mask_storeu_ps(s, k, e);
    return _mm512_mask_reduce_add_ps(k, e);
}

/* 64 columns at a time with even and odd rows in separate accumulators:
 * eight independent FMA chains instead of one per 16 columns. */
__attribute__((target("avx512f"))) static void axpys_512(float *acc, const uint16_t *v, size_t stride,
                                                         const float *w, int n, int D) {
    int d = 0;
    for (; d + 64 <= D; d += 64) {
        __m512 a[4], b[4];
        #pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            a[c] = _mm512_loadu_ps(acc + d + 16 * c);
            b[c] = _mm512_setzero_ps();
        }
        const uint16_t *vv = v + d;
        int i = 0;
        for (; i + 2 <= n; i += 2, vv += 2 * stride) {
            const __m512 w0 = _mm512_set1_ps(w[i]), w1 = _mm512_set1_ps(w[i + 1]);
            #pragma GCC unroll 4
            for (int c = 0; c < 4; c++) {
                a[c] = _mm512_fmadd_ps(w0, load_h16(vv + 16 * c), a[c]);
                b[c] = _mm512_fmadd_ps(w1, load_h16(vv + stride + 16 * c), b[c]);
            }
        }
        if (i < n)
            #pragma GCC unroll 4
            for (int c = 0; c < 4; c++) a[c] = _mm512_fmadd_ps(_mm512_set1_ps(w[i]), load_h16(vv + 16 * c), a[c]);
        #pragma GCC unroll 4
        for (int c = 0; c < 4; c++) _mm512_storeu_ps(acc + d + 16 * c, _mm512_add_ps(a[c], b[c]));
    }
    for (; d + 16 <= D; d += 16) {
        __m512 a = _mm512_loadu_ps(acc + d);
        const uint16_t *vv = v + d;
        for (int i = 0; i < n; i++, vv += stride) a = _mm512_fmadd_ps(_mm512_set1_ps(w[i]), load_h16(vv), a);
        _mm512_storeu_ps(acc + d, a);
    }
    for (; d < D; d++) {
        const uint16_t *vv = v + d;
        for (int i = 0; i < n; i++, vv += stride) acc[d] += w[i] * half_to_f32(*vv);
    }
}

/* acc_i += sum_p w_i[p] * v[p] for NQ queries at once (the values of the
 * query heads that share a KV head are the same rows): each value vector
 * is loaded once for all of them. One query at a time (axpys) needs a load
 * per FMA, which bound it to two thirds of the FMA rate. Query i's sums
 * run over p in order whatever NQ is. */
__attribute__((target("avx512f"), always_inline)) static inline void attn_pv_nq_512(
    const float *w, const uint16_t *v, size_t stride, int cnt, int D, float *acc, const int NQ) {
    int d = 0;
    for (; d + 32 <= D; d += 32) {
        __m512 a[VEC_MAX_Q][2];
#pragma GCC unroll 8
        for (int i = 0; i < NQ; i++) {
            a[i][0] = _mm512_loadu_ps(acc + (size_t)i * D + d);
            a[i][1] = _mm512_loadu_ps(acc + (size_t)i * D + d + 16);
        }
        const uint16_t *vv = v + d;
        for (int p = 0; p < cnt; p++, vv += stride) {
            const __m512 v0 = load_h16(vv), v1 = load_h16(vv + 16);
#pragma GCC unroll 8
            for (int i = 0; i < NQ; i++) {
                const __m512 wi = _mm512_set1_ps(w[i * VEC_BLOCK + p]);
                a[i][0] = _mm512_fmadd_ps(wi, v0, a[i][0]);
                a[i][1] = _mm512_fmadd_ps(wi, v1, a[i][1]);
            }
        }
#pragma GCC unroll 8
        for (int i = 0; i < NQ; i++) {
            _mm512_storeu_ps(acc + (size_t)i * D + d, a[i][0]);
            _mm512_storeu_ps(acc + (size_t)i * D + d + 16, a[i][1]);
        }
    }
    for (; d + 16 <= D; d += 16) {
        __m512 a[VEC_MAX_Q];
#pragma GCC unroll 8
        for (int i = 0; i < NQ; i++) a[i] = _mm512_loadu_ps(acc + (size_t)i * D + d);
        const uint16_t *vv = v + d;
        for (int p = 0; p < cnt; p++, vv += stride) {
            const __m512 v0 = load_h16(vv);
#pragma GCC unroll 8
            for (int i = 0; i < NQ; i++) a[i] = _mm512_fmadd_ps(_mm512_set1_ps(w[i * VEC_BLOCK + p]), v0, a[i]);
        }
#pragma GCC unroll 8
        for (int i = 0; i < NQ; i++) _mm512_storeu_ps(acc + (size_t)i * D + d, a[i]);
    }
    for (; d < D; d++)
        for (int i = 0; i < NQ; i++) {
            const uint16_t *vv = v + d;
            for (int p = 0; p < cnt; p++, vv += stride)
                acc[(size_t)i * D + d] += w[i * VEC_BLOCK + p] * half_to_f32(*vv);
        }
}

/* attn_block for NQ queries: the scores of the block stay in registers
 * (block_scores_512), each query's sum of weights
 * is a vector of lane sums, so a block costs one reduction per query at
 * most (the maximum, when it grows), and the weighted values of all NQ
 * queries come from one pass over the block's values. Query i's
 * arithmetic is the same for every NQ. */
__attribute__((target("avx512f"), always_inline)) static inline void attn_block_nq_512(
    const float *q, const uint16_t *kt, const uint16_t *v, size_t stride, int cnt, int D, float scale,
    attn_state *st, int i0, const int NQ) {
    __m512 s[VEC_MAX_Q];
    block_scores_512(q, kt, D, s, NQ);
    const __mmask16 live = (__mmask16)((1u << cnt) - 1);
    float w[VEC_MAX_Q * VEC_BLOCK] __attribute__((aligned(64)));
#pragma GCC unroll 8
    for (int i = 0; i < NQ; i++) {
        const int g = i0 + i;
        float *acc = st->acc + (size_t)g * D;
        const __m512 si = _mm512_mul_ps(s[i], _mm512_set1_ps(scale));
        __m512 sum = _mm512_loadu_ps(st->sum[g]);
        /* The maximum rarely grows after the first blocks: one compare
         * finds out, and only then the reduction (same result as always
         * reducing: the new maximum exceeds the old). */
        if (_mm512_mask_cmp_ps_mask(live, si, _mm512_set1_ps(st->mx[g]), _CMP_GT_OQ)) {
            const float bm = _mm512_mask_reduce_max_ps(live, si);
            const float c = expf(st->mx[g] - bm);
            const __m512 corr = _mm512_set1_ps(c);
            sum = _mm512_mul_ps(sum, corr);
            int d = 0;
            for (; d + 16 <= D; d += 16) _mm512_storeu_ps(acc + d, _mm512_mul_ps(_mm512_loadu_ps(acc + d), corr));
            for (; d < D; d++) acc[d] *= c;
            st->mx[g] = bm;
        }
        const __m512 e = _mm512_maskz_mov_ps(live, exp_512(_mm512_sub_ps(si, _mm512_set1_ps(st->mx[g]))));
        _mm512_storeu_ps(st->sum[g], _mm512_add_ps(sum, e));
        _mm512_store_ps(w + i * VEC_BLOCK, e);
    }
    attn_pv_nq_512(w, v, stride, cnt, D, st->acc + (size_t)i0 * D, NQ);
}

__attribute__((target("avx512f"))) static void attn_block_512(const float *q, int nq, const uint16_t *kt,
                                                              const uint16_t *v, size_t stride, int cnt, int D,
                                                              float scale, attn_state *st) {
    /* Groups of 8, then 4, 2, 1: any split gives each query the same result. */
    int i0 = 0;
    for (; nq - i0 >= 8; i0 += 8) attn_block_nq_512(q + (size_t)i0 * D, kt, v, stride, cnt, D, scale, st, i0, 8);
    if (nq - i0 >= 4) {
        attn_block_nq_512(q + (size_t)i0 * D, kt, v, stride, cnt, D, scale, st, i0, 4);
        i0 += 4;
    }
    if (nq - i0 >= 2) {
        attn_block_nq_512(q + (size_t)i0 * D, kt, v, stride, cnt, D, scale, st, i0, 2);
        i0 += 2;
    }
    if (nq - i0 >= 1) attn_block_nq_512(q + (size_t)i0 * D, kt, v, stride, cnt, D, scale, st, i0, 1);
}

/* silu(x) = x * sigmoid(x), with t = exp(-|x|) <= 1 (the range exp_512
 * covers): sigmoid is 1 / (1 + t) for x >= 0 and t / (1 + t) below. */
__attribute__((target("avx512f"))) static void silu_mul_512(float *g, const float *u, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 x = _mm512_loadu_ps(g + i);
        const __m512 t = exp_512(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_abs_ps(x)));
        const __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
        const __m512 num = _mm512_mask_blend_ps(neg, _mm512_set1_ps(1.0f), t);
        const __m512 sig = _mm512_div_ps(num, _mm512_add_ps(_mm512_set1_ps(1.0f), t));
        _mm512_storeu_ps(g + i, _mm512_mul_ps(_mm512_mul_ps(x, sig), _mm512_loadu_ps(u + i)));
    }
    silu_mul_c(g + i, u + i, n - i);
}

/* RMSNorm: the squares summed in double, 16 floats at a time; then the
 * scaling as rmsnorm_c does it. */
__attribute__((target("avx512f"))) static void rmsnorm_512(float *out, const float *x, const float *g, size_t n,
                                                           float eps) {
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_loadu_ps(x + i);
        const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
        const __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
        s0 = _mm512_fmadd_pd(lo, lo, s0);
        s1 = _mm512_fmadd_pd(hi, hi, s1);
    }
    double ss = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
    for (; i < n; i++) ss += (double)x[i] * x[i];
    const __m512 scale = _mm512_set1_ps((float)(1.0 / sqrt(ss / (double)n + eps)));
    i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), scale), _mm512_loadu_ps(g + i)));
    const float sc = _mm512_cvtss_f32(scale);
    for (; i < n; i++) out[i] = x[i] * sc * g[i];
}

/* exp(x - m) 16 at a time (exp_512), -infinity masked to 0 (exp_512
 * would flush it to exp(-87)), summed in double. */
__attribute__((target("avx512f"))) static double sum_exp_512(const float *x, size_t n, float m) {
    const __m512 mv = _mm512_set1_ps(m), ninf = _mm512_set1_ps(-INFINITY);
    __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 in = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        const __m512 v = _mm512_mask_loadu_ps(ninf, in, x + i);
        const __mmask16 live = _mm512_cmp_ps_mask(v, ninf, _CMP_NEQ_OQ);
        const __m512 e = _mm512_maskz_mov_ps(live, exp_512(_mm512_sub_ps(v, mv)));
        a0 = _mm512_add_pd(a0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        a1 = _mm512_add_pd(a1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
}

__attribute__((target("avx512f"))) static int any_nan_512(const float *x, size_t n) {
    __mmask16 bad = 0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_loadu_ps(x + i);
        bad |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    }
    return bad || any_nan_c(x + i, n - i);
}

/* The maximum by lanes, then the first lane equal to it. */
__attribute__((target("avx512f"))) static float max_first_512(const float *x, size_t n, size_t *first) {
    if (n < 16) return max_first_c(x, n, first);
    __m512 m = _mm512_loadu_ps(x);
    size_t i = 16;
    for (; i + 16 <= n; i += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(x + i));
    float mx = _mm512_reduce_max_ps(m);
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    const __m512 mv = _mm512_set1_ps(mx);
    for (i = 0; i + 16 <= n; i += 16) {
        const __mmask16 eq = _mm512_cmp_ps_mask(_mm512_loadu_ps(x + i), mv, _CMP_EQ_OQ);
        if (eq) {
            *first = i + (size_t)__builtin_ctz(eq);
            return mx;
        }
    }
    for (; x[i] != mx; i++) {}
    *first = i;
    return mx;
}

__attribute__((target("avx2,fma"))) static inline __m256 exp_256(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860677e-06f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    /* 2^n through the exponent field (n >= -126 here). */
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* 8 halves from p, widened (F16C). */
__attribute__((target("avx2,fma,f16c"), always_inline)) static inline __m256 load_h8(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

__attribute__((target("avx2,fma,f16c"))) static void scores16_256(const float *q, const uint16_t *kt, int D,
                                                                  float scale, float *out) {
    __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
    for (int d = 0; d < D; d++) {
        const __m256 qd = _mm256_set1_ps(q[d]);
        a = _mm256_fmadd_ps(qd, load_h8(kt + d * VEC_BLOCK), a);
        b = _mm256_fmadd_ps(qd, load_h8(kt + d * VEC_BLOCK + 8), b);
    }
    _mm256_storeu_ps(out, _mm256_mul_ps(a, _mm256_set1_ps(scale)));
    _mm256_storeu_ps(out + 8, _mm256_mul_ps(b, _mm256_set1_ps(scale)));
}

__attribute__((target("avx2,fma,f16c"))) static void scores16n_256(const float *q, int nq, const uint16_t *kt,
                                                                   int D, float scale, float *out) {
    for (int i = 0; i < nq; i++) scores16_256(q + (size_t)i * D, kt, D, scale, out + i * VEC_BLOCK);
}

__attribute__((target("avx2,fma"))) static float exp16_256(float *s, int n, float m) {
    float buf[VEC_BLOCK];
    for (int i = 0; i < VEC_BLOCK; i++) buf[i] = i < n ? s[i] - m : -100.0f;
    const __m256 e0 = exp_256(_mm256_loadu_ps(buf)), e1 = exp_256(_mm256_loadu_ps(buf + 8));
    _mm256_storeu_ps(buf, e0);
    _mm256_storeu_ps(buf + 8, e1);
    float sum = 0;
    for (int i = 0; i < n; i++) sum += s[i] = buf[i];
    return sum;
}

__attribute__((target("avx2,fma,f16c"))) static void axpys_256(float *acc, const uint16_t *v, size_t stride,
                                                               const float *w, int n, int D) {
    int d = 0;
    for (; d + 8 <= D; d += 8) {
        __m256 a = _mm256_loadu_ps(acc + d);
        const uint16_t *vv = v + d;
        for (int i = 0; i < n; i++, vv += stride) a = _mm256_fmadd_ps(_mm256_set1_ps(w[i]), load_h8(vv), a);
        _mm256_storeu_ps(acc + d, a);
    }
    for (; d < D; d++) {
        const uint16_t *vv = v + d;
        for (int i = 0; i < n; i++, vv += stride) acc[d] += w[i] * half_to_f32(*vv);
    }
}
ATTN_BLOCK_FROM(attn_block_256, scores16n_256, max16_c, exp16_256, axpys_256)

__attribute__((target("avx2,fma"))) static void silu_mul_256(float *g, const float *u, size_t n) {
    size_t i = 0;
    const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(g + i);
        const __m256 t = exp_256(_mm256_or_ps(x, sign)); /* exp(-|x|) */
        const __m256 neg = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
        const __m256 sig = _mm256_div_ps(_mm256_blendv_ps(one, t, neg), _mm256_add_ps(one, t));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(_mm256_mul_ps(x, sig), _mm256_loadu_ps(u + i)));
    }
    silu_mul_c(g + i, u + i, n - i);
}
__attribute__((target("avx2,fma"))) static void rmsnorm_256(float *out, const float *x, const float *g, size_t n,
                                                             float eps) {
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256d lo = _mm256_cvtps_pd(_mm_loadu_ps(x + i)), hi = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4));
        s0 = _mm256_fmadd_pd(lo, lo, s0);
        s1 = _mm256_fmadd_pd(hi, hi, s1);
    }
    double lanes[4];
    _mm256_storeu_pd(lanes, _mm256_add_pd(s0, s1));
    double ss = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
    for (; i < n; i++) ss += (double)x[i] * x[i];
    const float sc = (float)(1.0 / sqrt(ss / (double)n + eps));
    const __m256 scale = _mm256_set1_ps(sc);
    i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), scale), _mm256_loadu_ps(g + i)));
    for (; i < n; i++) out[i] = x[i] * sc * g[i];
}

__attribute__((target("avx2,fma"))) static double sum_exp_256(const float *x, size_t n, float m) {
    const __m256 mv = _mm256_set1_ps(m), ninf = _mm256_set1_ps(-INFINITY);
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 e = _mm256_and_ps(_mm256_cmp_ps(v, ninf, _CMP_NEQ_OQ), exp_256(_mm256_sub_ps(v, mv)));
        a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double lanes[4];
    _mm256_storeu_pd(lanes, _mm256_add_pd(a0, a1));
    return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]) + sum_exp_c(x + i, n - i, m);
}
#else
#define HAVE_X86 0
#endif

static vec_ops g_ops[VEC_ISA_COUNT];
static int g_best;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void init_ops(void) {
    g_ops[VEC_ISA_SCALAR] = (vec_ops){scores16_c, scores16n_c,  exp16_c,   max16_c,
                                        axpys_c,    attn_block_c, silu_mul_c, rmsnorm_c,
                                        sum_exp_c,  any_nan_c,    max_first_c};
    g_ops[VEC_ISA_AVX2] = g_ops[VEC_ISA_AVX512] = g_ops[VEC_ISA_SCALAR];
    g_best = VEC_ISA_SCALAR;
#if HAVE_X86
    __builtin_cpu_init();
    if (quant_cpu_has_avx2()) { /* AVX2, FMA and F16C */
        g_ops[VEC_ISA_AVX2] = g_ops[VEC_ISA_AVX512] = (vec_ops){scores16_256, scores16n_256, exp16_256, max16_c, axpys_256,
                                                                attn_block_256, silu_mul_256, rmsnorm_256, sum_exp_256,
                                                                any_nan_c, max_first_c};
        g_best = VEC_ISA_AVX2;
    }
    if (__builtin_cpu_supports("avx512f")) {
        g_ops[VEC_ISA_AVX512] = (vec_ops){scores16_512, scores16n_512, exp16_512, max16_512, axpys_512,
                                            attn_block_512, silu_mul_512, rmsnorm_512, sum_exp_512,
                                            any_nan_512, max_first_512};
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
