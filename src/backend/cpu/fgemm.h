/*
 * Float matrix products for batches (prefill, and sessions decoding
 * together) on F32, F16 and BF16 weights with AVX-512: Y[n][N] = X[n][K] *
 * W^T, W's rows read in their own type and widened to float as they are
 * used (no dequantized copy of the matrix). A single token stays on the
 * matrix-vector kernel, which reads ahead (see fgemm.c).
 *
 * Why not OpenBLAS sgemm alone: the OpenBLAS a distribution ships picks
 * its kernels by CPU model, and on a CPU newer than itself it falls back
 * to 256-bit ones. On the development machine (AMD EPYC, Zen 5, Debian
 * 12's OpenBLAS 0.3.21) that is its Haswell kernel, at half the FMA rate
 * the cores have (see fgemm.c for the figures). This kernel's speed does
 * not depend on which CPUs the BLAS build knows.
 *
 * Each element of Y is one dot product over k in a fixed order, whatever
 * n and whatever the other tokens: a token's row does not depend on the
 * batch it was computed in.
 */
#ifndef LLMS_BACKEND_CPU_FGEMM_H
#define LLMS_BACKEND_CPU_FGEMM_H

#include <stdint.h>

#include "../../core/threadpool.h"
#include "../../model/model.h"

/* 1 if fgemm serves this weight type on this CPU (the library's AVX-512
 * level, quant_isa_best()). */
int fgemm_supported(uint32_t wtype);

/* Y[t * N + r] = sum_k X[t * K + k] * W[r][k], N = w->rows, K = w->cols. */
void fgemm(threadpool *pool, const weight *w, const float *x, int64_t n, float *y);

#endif
