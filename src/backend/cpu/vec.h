/*
 * Float vector helpers for attention (vec.c): run-time dispatched SIMD with
 * a portable reference.
 */
#ifndef LLMS_BACKEND_CPU_VEC_H
#define LLMS_BACKEND_CPU_VEC_H

#include <stddef.h>

typedef struct vec_ops {
    /* out[i] = dot(q, k + i*stride) over D, for i < n */
    void (*dots)(const float *q, const float *k, size_t stride, int n, int D, float *out);
    /* acc += sum_i w[i] * (v + i*stride), over D */
    void (*axpys)(float *acc, const float *v, size_t stride, const float *w, int n, int D);
} vec_ops;

enum { VEC_ISA_SCALAR = 0, VEC_ISA_AVX2 = 1, VEC_ISA_AVX512 = 2, VEC_ISA_COUNT = 3 };

/* The helpers of a level (the best available at or below it). */
const vec_ops *vec_get(int isa);
const vec_ops *vec_best(void);

#endif
