/*
 * Decode (matrix-vector) dot products for Q4_0, Q8_0, Q4_K and Q6_K
 * weights on AVX512-VNNI, several blocks per step on 512-bit vectors (the
 * K-quants: see k4_row and k6_row in qdot512.c).
 *
 * The Q8_0 activation row is first rearranged once per matrix product
 * ("prepared") to match the weights' in-register layout: for Q4_0, the
 * first and second halves of four blocks side by side (low / high
 * nibbles), for Q8_0, two blocks side by side; with the activation scales
 * spread over the lanes and the weights' zero-point correction
 * (-8 or -128 times each block's activation sum) as the accumulator's start,
 * so each step is: 16-byte or 32-byte loads, one nibble split, two or one
 * vpdpbusd, one convert, one multiply-add. The results equal the scalar
 * reference dot product (quant_vec_dot at QUANT_ISA_SCALAR) up to float
 * summation order; tests/test_kernels.c checks them against it.
 */
#ifndef LLMS_QUANT_QDOT512_H
#define LLMS_QUANT_QDOT512_H

#include <stddef.h>
#include <stdint.h>

/* 1 if this CPU runs the kernels and the type/row length has one. */
int qdot512_supported(uint32_t wtype, int64_t K);
/* Bytes of a prepared activation row (64-byte aligned buffer). */
size_t qdot512_act_bytes(uint32_t wtype, int64_t K);
/* Rearrange one activation row (K values, in quant_act_type(wtype)'s
 * format: Q8_0, or Q8_K for Q4_K and Q6_K) for wtype's kernel. */
void qdot512_prepare(uint32_t wtype, int64_t K, const void *act, void *prepared);
/* out[i] = dot(row i, act) for `rows` consecutive weight rows, row_bytes apart. */
void qdot512_rows(uint32_t wtype, int64_t K, const uint8_t *w, uint64_t row_bytes, int64_t rows,
                  const void *prepared, float *out);

/* Tokens per pass over a row in qdot512_rows_n (register-bound). */
#define QD_MAX_TOKENS 8
/* Several tokens at once: out[t * ldo + i] = dot(row i, token t) for
 * t < n_tok, token t's prepared row at prepared + t * prep_stride. Each
 * weight group is unpacked once for all tokens; every result is
 * bit-identical to what qdot512_rows gives for that token alone. */
void qdot512_rows_n(uint32_t wtype, int64_t K, const uint8_t *w, uint64_t row_bytes, int64_t rows,
                    const void *prepared, size_t prep_stride, int64_t n_tok, float *out, int64_t ldo);

#endif
