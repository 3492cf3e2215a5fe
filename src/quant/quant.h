/*
 * Quantized weight formats: dequantization and quantization for every
 * supported type, bit-exact with the GGUF block layouts, and the dot
 * products of the matrix-vector path. Each operation has a scalar
 * reference; SIMD kernels (chosen at run time from what the CPU supports)
 * live beside it and are tested against it.
 *
 * Threads: every function may be called from any thread at any time (the
 * one-time CPU detection is guarded by pthread_once). Nothing allocates,
 * fails or prints; rows must be whole blocks and buffers large enough
 * (type_row_bytes), which callers check when they validate tensors.
 */
#ifndef LLMS_QUANT_H
#define LLMS_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "types.h"

/* IEEE half and bfloat16 conversions. */
float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);
float bf16_to_fp32(uint16_t h);
uint16_t fp32_to_bf16(float f);

/* 1 if rows of this type can be dequantized (F32, F16, BF16, Q4_0, Q4_1,
 * Q5_0, Q5_1, Q8_0, Q2_K..Q6_K, and the Q8_K activation format). */
int quant_can_dequantize(uint32_t type);

/* Dequantize n elements (n a multiple of the block size) from src (any
 * alignment). Uses the fastest kernel the CPU runs; every kernel gives
 * bit-identical results (same float operations in the same order, no fused
 * multiply-add; a NaN scale gives NaN), so the output never depends on the
 * machine. */
void quant_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);

/* 1 if quant_quantize_row supports the type. */
int quant_can_quantize(uint32_t type);

/* Quantize n elements (n a multiple of the block size) into dst. The
 * activation formats (Q8_0, Q8_K) have SIMD versions, bit-identical to the
 * scalar reference; the others are scalar (used offline and in tests). */
void quant_quantize_row(uint32_t type, const float *src, void *dst, int64_t n);

/* ---- Dot products for the matrix-vector path ------------------------- */

/* Marks "no such type" in the functions below. */
#define QUANT_TYPE_NONE UINT32_MAX

/* The activation format a weight type's dot product wants: LLMS_TYPE_Q8_0
 * for Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0; LLMS_TYPE_Q8_K for Q2_K..Q6_K;
 * LLMS_TYPE_F32 for F32, F16 and BF16; QUANT_TYPE_NONE otherwise.
 * Quantize the activation row once with quant_quantize_row(act_type, ...)
 * and reuse it for every weight row.
 * Q4_1 and Q5_1 need the sum of each activation block (for the offset m);
 * they take plain Q8_0 and sum its 32 int8 values inside the kernel (one
 * extra multiply-add per block, hidden under the memory traffic), so that
 * one Q8_0 activation row serves every legacy type of a model. */
uint32_t quant_act_type(uint32_t wtype);

/* out = dot(dequantize(w_row), dequantize(act)) over n elements (n a
 * multiple of the weight's block size). act must come from
 * quant_quantize_row(quant_act_type(wtype), ...): the SIMD kernels rely on
 * its int8 values lying in -127..127. Does nothing for an unsupported type. */
void quant_vec_dot(uint32_t wtype, int64_t n, const void *w_row, const void *act, float *out);

/* Instruction-set levels of the kernels. Each level includes the ones
 * below it; a level without a kernel of its own for a type uses the best
 * one below. */
enum {
    QUANT_ISA_SCALAR = 0, /* portable C, the reference */
    QUANT_ISA_AVX2 = 1,   /* x86-64 AVX2 + FMA + F16C */
    QUANT_ISA_AVX512 = 2, /* plus AVX512F/BW/VL/VNNI: vpdpbusd on 256-bit vectors */
    QUANT_ISA_COUNT
};

typedef void (*quant_dot_fn)(int64_t n, const void *w_row, const void *act, float *out);

/* 1 if this build has kernels for the level and this CPU (and OS) runs them. */
int quant_isa_available(int isa);
/* The highest available level: the one quant_vec_dot uses. */
int quant_isa_best(void);
/* "scalar", "avx2", "avx512"; "?" for others. */
const char *quant_isa_name(int isa);
/* The dot kernel for a weight type at a level (for tests and benchmarks),
 * or NULL if the type has no dot product or the level is not available. */
quant_dot_fn quant_vec_dot_get(uint32_t wtype, int isa);

typedef void (*quant_deq_fn)(const void *src, float *dst, int64_t n);
/* The dequantization kernel for a type at a level (for tests and
 * benchmarks), or NULL if the type cannot be dequantized or the level is
 * not available. */
quant_deq_fn quant_dequantize_get(uint32_t type, int isa);

typedef void (*quant_q_fn)(const float *src, void *dst, int64_t n);
/* The quantization kernel for a type at a level (for tests and
 * benchmarks), or NULL as for quant_dequantize_get. */
quant_q_fn quant_quantize_get(uint32_t type, int isa);

/* The kernel quant_vec_dot would call: fetch it once per matrix and call it
 * per row to skip the dispatch. NULL for an unsupported type. */
quant_dot_fn quant_vec_dot_fn(uint32_t wtype);

#endif
