/*
 * Quantized matrix-matrix products for prefill: Y[t][r] = sum_k W[r][k] X[t][k]
 * with the weights in their quantized type and the activations quantized to
 * 8 bits per 32-element block (like Q8_0), all in integer arithmetic
 * (AVX512-VNNI vpdpbusd) with one float step per block.
 *
 * Every supported weight type is unpacked, 16 rows at a time, into one
 * common form: blocks of BS = 32 (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K)
 * or 16 (Q2_K, Q3_K, Q6_K) unsigned 8-bit values u with a float scale s and
 * offset m per block, w = s*u + m, exactly the dequantized value up to
 * float rounding. The 16 rows are interleaved four bytes at a time so that
 * one 64-byte vector holds four consecutive values of each of 16 rows and
 * vpdpbusd with a broadcast activation dword advances 16 dot products. Per
 * block and token: y += da * (s * sum(u*a)) + m * (da * sum(a)).
 *
 * The scalar kernel is the reference (same integer sums, same float
 * formula); the AVX512-VNNI kernel is used when the CPU has it, and
 * qgemm_available() is 0 otherwise (callers then use dequantize + sgemm,
 * which beats scalar integer code).
 */
#ifndef LLMS_QUANT_QGEMM_H
#define LLMS_QUANT_QGEMM_H

#include <stddef.h>
#include <stdint.h>

/* 1 if the type has an unpacker (K a multiple of its block size). */
int qgemm_type_supported(uint32_t wtype);
/* 1 if the fast (AVX512-VNNI) kernel runs on this CPU. */
int qgemm_available(void);

/* Unpacks one row (n elements) into u[n], s[n/bs], m[n/bs]; returns bs
 * (16 or 32), or 0 for an unsupported type. For tests and packing. */
int qgemm_unpack_row(uint32_t wtype, const void *row, int64_t n, uint8_t *u, float *s, float *m);

/* Quantized activations of n tokens of K values (K a multiple of 32). */
typedef struct qgemm_act {
    int64_t n, K;
    int8_t *q;        /* [n][K] */
    float *d32;       /* [n][K/32] block scales */
    float *ms32;      /* [n][K/32] d * sum of the block's values */
    float *ms16;      /* [n][K/16] d * sum of each half block's values */
} qgemm_act;

/* Bytes qgemm_act_init needs in `buf` (64-byte aligned). */
size_t qgemm_act_bytes(int64_t n, int64_t K);
void qgemm_act_init(qgemm_act *a, void *buf, int64_t n, int64_t K);
/* Quantize token t's row x[K] (can run in parallel over t). */
void qgemm_act_quantize(qgemm_act *a, int64_t t, const float *x);

/* Bytes of one packed 16-row tile of a weight with K columns. */
size_t qgemm_tile_bytes(int64_t K);

/* Y[t][r0 + i] for t in [0, a->n), i in [0, rows) (rows <= 16) from weight
 * rows r0.. (row_bytes apart starting at w_rows). tile: scratch of
 * qgemm_tile_bytes, 64-byte aligned. isa: QUANT_ISA_SCALAR or the best. */
void qgemm_tile(uint32_t wtype, const uint8_t *w_rows, uint64_t row_bytes, int rows, const qgemm_act *a,
                float *y, int64_t ldy, void *tile, int isa);

#endif
