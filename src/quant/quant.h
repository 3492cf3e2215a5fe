/*
 * Quantized weight formats: reference (scalar) dequantization and
 * quantization for every supported type, bit-exact with the GGUF block
 * layouts. Fast SIMD kernels live beside these and are tested against them.
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
 * Q5_0, Q5_1, Q8_0, Q2_K..Q6_K). */
int quant_can_dequantize(uint32_t type);

/* Dequantize n elements (n a multiple of the block size) from src. */
void quant_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);

/* 1 if quant_quantize_row supports the type. */
int quant_can_quantize(uint32_t type);

/* Quantize n elements (n a multiple of the block size) into dst. */
void quant_quantize_row(uint32_t type, const float *src, void *dst, int64_t n);

#endif
