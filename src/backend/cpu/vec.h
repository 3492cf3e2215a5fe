/*
 * Float vector helpers (vec.c): run-time dispatched SIMD with a portable
 * reference. Attention: keys and values come from the KV cache as IEEE
 * binary16 bits (uint16_t, kvcache/kv.h: kv_half) and are widened to float
 * as they are loaded; its sums are float32. Also the other per-token steps
 * on the calling thread: SwiGLU, RMSNorm and the sampler's passes over the
 * vocabulary (those two sum in double).
 */
#ifndef LLMS_BACKEND_CPU_VEC_H
#define LLMS_BACKEND_CPU_VEC_H

#include <stddef.h>
#include <stdint.h>

/* Positions per K block (KV_BLOCK_TOKENS): one 512-bit vector of scores. */
#define VEC_BLOCK 16
#define VEC_MAX_Q 8

/* Online-softmax state of a group of queries walking the KV blocks
 * (attn_block): per query its running maximum, its sum of weights kept per
 * lane (reduced once at the end: attn_finish), and acc, nq rows of D
 * floats. Start with attn_start. */
typedef struct attn_state {
    float mx[VEC_MAX_Q];
    float sum[VEC_MAX_Q][VEC_BLOCK];
    float *acc;
} attn_state;

typedef struct vec_ops {
    /* out[p] = scale * sum_d q[d] * kt[d * VEC_BLOCK + p] for p < VEC_BLOCK:
     * the scores of one block of keys stored transposed ([D][16]). */
    void (*scores16)(const float *q, const uint16_t *kt, int D, float scale, float *out);
    /* The same for nq (<= VEC_MAX_Q) queries q + i*D at once, into
     * out + i*VEC_BLOCK: each key row is loaded once for all of them (the
     * query heads that share a KV head), and their sums are independent
     * chains. Each query's result equals scores16's for it. */
    void (*scores16n)(const float *q, int nq, const uint16_t *kt, int D, float scale, float *out);
    /* s[i] = exp(s[i] - m) for i < n (n <= VEC_BLOCK, every s[i] <= m);
     * returns their sum. Relative error of each exp under 2e-7. */
    float (*exp16)(float *s, int n, float m);
    /* max of s[0..n) (1 <= n <= VEC_BLOCK) */
    float (*max16)(const float *s, int n);
    /* acc += sum_i w[i] * (v + i*stride), over D */
    void (*axpys)(float *acc, const uint16_t *v, size_t stride, const float *w, int n, int D);
    /* One step of attention for nq (<= VEC_MAX_Q) queries q + i*D over one
     * block of cnt (1..VEC_BLOCK) positions: keys kt as for scores16n,
     * values v + p*stride. Raises each query's maximum when the block's
     * scores exceed it (rescaling its acc and sum), then adds the block's
     * weights exp(score - max) to its sum and weighted values to its acc.
     * One call per block instead of four per query: the scores stay in
     * registers and nothing is reduced but the maximum. A query's result
     * does not depend on nq (deterministic mode relies on this). */
    void (*attn_block)(const float *q, int nq, const uint16_t *kt, const uint16_t *v, size_t stride, int cnt,
                       int D, float scale, attn_state *st);
    /* g[i] = silu(g[i]) * u[i] for i < n (SwiGLU) */
    void (*silu_mul)(float *g, const float *u, size_t n);
    /* out[i] = x[i] * scale * g[i], scale = 1 / sqrt(mean of x^2 + eps),
     * the mean summed in double (RMSNorm; out may be x). */
    void (*rmsnorm)(float *out, const float *x, const float *g, size_t n, float eps);
    /* sum over i < n of exp(x[i] - m), every x[i] <= m or -infinity (which
     * adds 0), summed in double: the log-sum-exp of a sampler's logits.
     * Relative error of each exp under 2e-7. */
    double (*sum_exp)(const float *x, size_t n, float m);
    /* Whether any of x[0..n) is a NaN. */
    int (*any_nan)(const float *x, size_t n);
    /* The largest of x[0..n) (n >= 1, no NaN) and in *first the lowest
     * index holding it: a greedy sampler's pick. */
    float (*max_first)(const float *x, size_t n, size_t *first);
} vec_ops;

/* attn_state for nq queries of D floats, acc pointing at nq * D floats. */
void attn_start(attn_state *st, float *acc, int nq, int D);
/* out + i*D = query i's attention output (acc / sum). */
void attn_finish(const attn_state *st, int nq, int D, float *out, size_t out_stride);

enum { VEC_ISA_SCALAR = 0, VEC_ISA_AVX2 = 1, VEC_ISA_AVX512 = 2, VEC_ISA_COUNT = 3 };

/* The helpers of a level (the best available at or below it). */
const vec_ops *vec_get(int isa);
const vec_ops *vec_best(void);

#endif
