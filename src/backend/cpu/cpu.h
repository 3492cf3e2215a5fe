/*
 * CPU kernels used by the forward pass. Matrix products go through
 * cpu_matmul, which picks a matrix-vector path for decode (one token: each
 * weight byte read once) and a dequantize-tile + OpenBLAS sgemm path for
 * prefill (many tokens: compute-bound, so float GEMM wins).
 */
#ifndef LLMS_BACKEND_CPU_H
#define LLMS_BACKEND_CPU_H

#include <stdint.h>

#include "../../core/threadpool.h"
#include "../../model/model.h"

/* Y[n][w->rows] = X[n][w->cols] * W^T. Scratch comes from the allocator. */
llms_status cpu_matmul(threadpool *pool, const lalloc *a, const weight *w, const float *x,
                       int64_t n, float *y);

/* One row of a weight matrix as floats (embedding lookup). */
void cpu_weight_row(const weight *w, int64_t row, float *out);

void cpu_rmsnorm(float *out, const float *x, const float *g, int64_t n, float eps);

#endif
