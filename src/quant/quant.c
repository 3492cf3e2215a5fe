/*
 * Reference (scalar) dequantization of every weight type, its dispatch,
 * and the public half/bfloat16 conversions. These are the definitions the
 * SIMD kernels and the tests measure against, so they follow the layouts in
 * blocks.h literally and favour clarity over speed. The per-element float
 * expressions use the same operation order as ggml (scale products first),
 * so values match ggml's dequantization bit for bit, and the SIMD versions
 * repeat exactly these operations.
 */
/* The scalar and SIMD dequantizers promise bit-identical results, so a
 * multiply followed by an add must never become one fused operation, even
 * when the library is built with -march=native or in GNU C mode. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "quant.h"

#include <string.h>

#include "blocks.h"
#include "half.h"
#include "kernels.h"
#include "llmserve.h"

float fp16_to_fp32(uint16_t h) { return half_to_f32(h); }
uint16_t fp32_to_fp16(float f) { return half_from_f32(f); }
float bf16_to_fp32(uint16_t h) { return bf16_to_f32_inline(h); }
uint16_t fp32_to_bf16(float f) { return bf16_from_f32_inline(f); }

static void deq_f32(const void *src, float *y, int64_t n) {
    memcpy(y, src, (size_t)n * sizeof(float));
}

static void deq_f16(const void *src, float *y, int64_t n) {
    const uint8_t *p = src;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        y[i] = half_to_f32(h);
    }
}

static void deq_bf16(const void *src, float *y, int64_t n) {
    const uint8_t *p = src;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        y[i] = bf16_to_f32_inline(h);
    }
}

static void deq_q4_0(const void *src, float *y, int64_t n) {
    const blk_q4_0 *b = src;
    for (int64_t i = 0; i < n / QK4_0; i++, y += QK4_0) {
        const float d = half_to_f32(b[i].d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            y[j] = (float)((b[i].qs[j] & 0xF) - 8) * d;
            y[j + QK4_0 / 2] = (float)((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static void deq_q4_1(const void *src, float *y, int64_t n) {
    const blk_q4_1 *b = src;
    for (int64_t i = 0; i < n / QK4_1; i++, y += QK4_1) {
        const float d = half_to_f32(b[i].d), m = half_to_f32(b[i].m);
        for (int j = 0; j < QK4_1 / 2; j++) {
            y[j] = (float)(b[i].qs[j] & 0xF) * d + m;
            y[j + QK4_1 / 2] = (float)(b[i].qs[j] >> 4) * d + m;
        }
    }
}

static uint32_t load_le32(const uint8_t p[4]) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void deq_q5_0(const void *src, float *y, int64_t n) {
    const blk_q5_0 *b = src;
    for (int64_t i = 0; i < n / QK5_0; i++, y += QK5_0) {
        const float d = half_to_f32(b[i].d);
        const uint32_t qh = load_le32(b[i].qh);
        for (int j = 0; j < QK5_0 / 2; j++) {
            int q0 = (b[i].qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
            int q1 = (b[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = (float)(q0 - 16) * d;
            y[j + QK5_0 / 2] = (float)(q1 - 16) * d;
        }
    }
}

static void deq_q5_1(const void *src, float *y, int64_t n) {
    const blk_q5_1 *b = src;
    for (int64_t i = 0; i < n / QK5_1; i++, y += QK5_1) {
        const float d = half_to_f32(b[i].d), m = half_to_f32(b[i].m);
        const uint32_t qh = load_le32(b[i].qh);
        for (int j = 0; j < QK5_1 / 2; j++) {
            int q0 = (b[i].qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
            int q1 = (b[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = (float)q0 * d + m;
            y[j + QK5_1 / 2] = (float)q1 * d + m;
        }
    }
}

static void deq_q8_0(const void *src, float *y, int64_t n) {
    const blk_q8_0 *b = src;
    for (int64_t i = 0; i < n / QK8_0; i++, y += QK8_0) {
        const float d = half_to_f32(b[i].d);
        for (int j = 0; j < QK8_0; j++) y[j] = (float)b[i].qs[j] * d;
    }
}

static void deq_q2_K(const void *src, float *y, int64_t n) {
    const blk_q2_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = half_to_f32(b[i].d), dmin = half_to_f32(b[i].dmin);
        for (int h = 0; h < 2; h++) {
            const uint8_t *q = b[i].qs + 32 * h;
            for (int j = 0; j < 4; j++) {
                for (int half16 = 0; half16 < 2; half16++) {
                    const uint8_t sc = b[i].scales[8 * h + 2 * j + half16];
                    const float dl = d * (float)(sc & 0xF), ml = dmin * (float)(sc >> 4);
                    for (int l = 16 * half16; l < 16 * half16 + 16; l++)
                        *y++ = dl * (float)((q[l] >> (2 * j)) & 3) - ml;
                }
            }
        }
    }
}

static void deq_q3_K(const void *src, float *y, int64_t n) {
    const blk_q3_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = half_to_f32(b[i].d);
        int8_t sc[16];
        k3_unpack_scales(b[i].scales, sc);
        for (int h = 0; h < 2; h++) {
            const uint8_t *q = b[i].qs + 32 * h;
            for (int j = 0; j < 4; j++) {
                const uint8_t hbit = (uint8_t)(1u << (4 * h + j));
                for (int half16 = 0; half16 < 2; half16++) {
                    const float dl = d * (float)sc[8 * h + 2 * j + half16];
                    for (int l = 16 * half16; l < 16 * half16 + 16; l++) {
                        int v = ((q[l] >> (2 * j)) & 3) - ((b[i].hmask[l] & hbit) ? 0 : 4);
                        *y++ = dl * (float)v;
                    }
                }
            }
        }
    }
}

static void deq_q4_K(const void *src, float *y, int64_t n) {
    const blk_q4_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = half_to_f32(b[i].d), dmin = half_to_f32(b[i].dmin);
        uint8_t sc[8], mn[8];
        k4_unpack_scales(b[i].scales, sc, mn);
        for (int p = 0; p < 4; p++) {
            const uint8_t *q = b[i].qs + 32 * p;
            const float d1 = d * (float)sc[2 * p], m1 = dmin * (float)mn[2 * p];
            const float d2 = d * (float)sc[2 * p + 1], m2 = dmin * (float)mn[2 * p + 1];
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

static void deq_q5_K(const void *src, float *y, int64_t n) {
    const blk_q5_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = half_to_f32(b[i].d), dmin = half_to_f32(b[i].dmin);
        uint8_t sc[8], mn[8];
        k4_unpack_scales(b[i].scales, sc, mn);
        for (int p = 0; p < 4; p++) {
            const uint8_t *q = b[i].qs + 32 * p;
            const float d1 = d * (float)sc[2 * p], m1 = dmin * (float)mn[2 * p];
            const float d2 = d * (float)sc[2 * p + 1], m2 = dmin * (float)mn[2 * p + 1];
            for (int l = 0; l < 32; l++) {
                int v = (q[l] & 0xF) | ((b[i].qh[l] >> (2 * p)) & 1) << 4;
                *y++ = d1 * (float)v - m1;
            }
            for (int l = 0; l < 32; l++) {
                int v = (q[l] >> 4) | ((b[i].qh[l] >> (2 * p + 1)) & 1) << 4;
                *y++ = d2 * (float)v - m2;
            }
        }
    }
}

static void deq_q6_K(const void *src, float *y, int64_t n) {
    const blk_q6_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = half_to_f32(b[i].d);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = b[i].ql + 64 * h, *qh = b[i].qh + 32 * h;
            const int8_t *sc = b[i].scales + 8 * h;
            for (int g = 0; g < 4; g++) {
                const uint8_t *lo = ql + 32 * (g & 1);
                const int nib_shift = g < 2 ? 0 : 4;
                for (int l = 0; l < 32; l++) {
                    int v = ((lo[l] >> nib_shift) & 0xF) | ((qh[l] >> (2 * g)) & 3) << 4;
                    *y++ = d * (float)sc[2 * g + l / 16] * (float)(v - 32);
                }
            }
        }
    }
}

static void deq_q8_K(const void *src, float *y, int64_t n) {
    const blk_q8_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, y += QK_K)
        for (int j = 0; j < QK_K; j++) y[j] = b[i].d * (float)b[i].qs[j];
}

const quant_deq_table quant_deq_scalar = {{
    [LLMS_TYPE_F32] = deq_f32, [LLMS_TYPE_F16] = deq_f16, [LLMS_TYPE_BF16] = deq_bf16,
    [LLMS_TYPE_Q4_0] = deq_q4_0, [LLMS_TYPE_Q4_1] = deq_q4_1, [LLMS_TYPE_Q5_0] = deq_q5_0,
    [LLMS_TYPE_Q5_1] = deq_q5_1, [LLMS_TYPE_Q8_0] = deq_q8_0, [LLMS_TYPE_Q2_K] = deq_q2_K,
    [LLMS_TYPE_Q3_K] = deq_q3_K, [LLMS_TYPE_Q4_K] = deq_q4_K, [LLMS_TYPE_Q5_K] = deq_q5_K,
    [LLMS_TYPE_Q6_K] = deq_q6_K, [LLMS_TYPE_Q8_K] = deq_q8_K,
}};

static const quant_deq_table *deq_table(int isa) {
    switch (isa) {
    case QUANT_ISA_SCALAR: return &quant_deq_scalar;
#if QUANT_HAVE_X86
    case QUANT_ISA_AVX2: return &quant_deq_avx2;
#endif
    default: return NULL;
    }
}

quant_deq_fn quant_dequantize_get(uint32_t type, int isa) {
    if (type >= QUANT_TYPE_SLOTS || !quant_isa_available(isa)) return NULL;
    for (int l = isa; l >= QUANT_ISA_SCALAR; l--) {
        const quant_deq_table *t = deq_table(l);
        if (t && t->fn[type]) return t->fn[type];
    }
    return NULL;
}

int quant_can_dequantize(uint32_t type) { return type < QUANT_TYPE_SLOTS && quant_deq_scalar.fn[type] != NULL; }

void quant_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n) {
    quant_deq_fn f = quant_dequantize_get(type, quant_isa_best());
    if (f && n > 0) f(src, dst, n);
}
