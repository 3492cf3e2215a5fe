/*
 * CPU kernels used by the forward pass. Matrix products go through
 * cpu_matmul, which picks, by the number of tokens:
 *  - Q4_0 and Q8_0 weights repacked at load (quant/qpack.h, AVX512-VNNI):
 *    one kernel for every batch size, decode included;
 *  - decode (< 4 tokens): matrix-vector products, each weight byte read
 *    once, activations quantized to 8 bits (Q4_0/Q8_0 on AVX512-VNNI use
 *    quant/qdot512.h, the other types quant_vec_dot_fn);
 *  - prefill on quantized weights with AVX512-VNNI: the integer GEMM of
 *    quant/qgemm.h (8-bit activations, 16-row tiles);
 *  - prefill on F32/F16/BF16 weights with AVX-512: the float GEMM of
 *    fgemm.h, reading the weights in their own type;
 *  - otherwise (other types without VNNI, or no AVX-512): dequantize a
 *    tile of rows and multiply with OpenBLAS sgemm.
 */
#ifndef LLMS_BACKEND_CPU_H
#define LLMS_BACKEND_CPU_H

#include <stdint.h>

#include "../../core/threadpool.h"
#include "../../model/model.h"

/* Y[n][w->rows] = X[n][w->cols] * W^T. Scratch comes from the allocator. */
llms_status cpu_matmul(threadpool *pool, const lalloc *a, const weight *w, const float *x,
                       int64_t n, float *y);

/* Y_k = X * W_k^T for nw (<= 4) matrices with the same input, in one
 * parallel region when decoding; each Y_k is exactly what cpu_matmul gives. */
llms_status cpu_matmul_n(threadpool *pool, const lalloc *a, const weight *const *ws, int nw, const float *x,
                         int64_t n, float *const *ys);

/* At load, on the CPU backend: repack the matrices whose type has a
 * faster interleaved layout (Q4_0, Q8_0 with AVX512-VNNI, quant/qpack.h) into
 * w->packed; cpu_free_packed frees them (safe after a partial pack). */
llms_status cpu_pack_weights(llms_model *m);
void cpu_free_packed(llms_model *m);

/* 1 if the matrix has a kernel that computes each token's row of Y on its
 * own (the same result whatever the other tokens and their number), for
 * the deterministic mode: cpu_matmul_tokenwise_n then runs it for whole
 * batches, single tokens included (cpu_matmul picks the GGUF layout for a
 * single token of some types, and the matrix-vector kernel for a single
 * token of float weights, which would round differently). The repacked
 * matrices and, with AVX-512, float weights (fgemm.h) have one. */
int cpu_matmul_tokenwise(const weight *w);
llms_status cpu_matmul_tokenwise_n(threadpool *pool, const lalloc *a, const weight *const *ws, int nw,
                                   const float *x, int64_t n, float *const *ys);

/* The bytes cpu_matmul streams from w for n tokens (the repacked tiles or
 * the GGUF rows); *bytes 0 where it reads dequantized tiles instead.
 * For measurement (bench/llms-decode-parts.c). */
const uint8_t *cpu_matmul_stream(const weight *w, int64_t n, size_t *bytes);

/* One row of a weight matrix as floats (embedding lookup). */
void cpu_weight_row(const weight *w, int64_t row, float *out);

void cpu_rmsnorm(float *out, const float *x, const float *g, int64_t n, float eps);

#endif
