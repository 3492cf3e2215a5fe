/*
 * Dot products of a weight row with a quantized activation row: the scalar
 * reference kernels and the run-time choice among the SIMD variants.
 *
 * The integer formats are dotted in the integer domain, block by block, as
 * the SIMD kernels do: sum(q_w * q_a) exactly in int32, then one float
 * multiply by the product of the block scales. For the offset formats the
 * offset term uses the activation's block sum (computed from Q8_0's values,
 * or read from Q8_K's bsums). The float formats accumulate in eight float
 * lanes so compilers can vectorize the loop without reassociation flags.
 */
#include <pthread.h>
#include <string.h>

#include "blocks.h"
#include "kernels.h"
#include "half.h"
#include "llmserve.h"
#include "quant.h"

/* ---- float weights against float activations ---------------------------- */

#define F_LANES 8

/* Weights are read with memcpy: a GGUF file may place a tensor at any
 * offset (general.alignment can be 1), so even F32 rows may be unaligned. */
static inline float load_f32(const uint8_t *p) {
    float v;
    memcpy(&v, p, sizeof v);
    return v;
}

static void dot_f32(int64_t n, const void *w, const void *a, float *out) {
    const uint8_t *x = w;
    const float *y = a;
    float acc[F_LANES] = {0};
    int64_t i = 0;
    for (; i + F_LANES <= n; i += F_LANES)
        for (int k = 0; k < F_LANES; k++) acc[k] += load_f32(x + 4 * (i + k)) * y[i + k];
    float s = 0.0f;
    for (int k = 0; k < F_LANES; k++) s += acc[k];
    for (; i < n; i++) s += load_f32(x + 4 * i) * y[i];
    *out = s;
}

static void dot_f16(int64_t n, const void *w, const void *a, float *out) {
    const uint8_t *x = w;
    const float *y = a;
    float acc[F_LANES] = {0};
    int64_t i = 0;
    for (; i + F_LANES <= n; i += F_LANES)
        for (int k = 0; k < F_LANES; k++) {
            uint16_t h;
            memcpy(&h, x + 2 * (i + k), 2);
            acc[k] += half_to_f32(h) * y[i + k];
        }
    float s = 0.0f;
    for (int k = 0; k < F_LANES; k++) s += acc[k];
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, x + 2 * i, 2);
        s += half_to_f32(h) * y[i];
    }
    *out = s;
}

static void dot_bf16(int64_t n, const void *w, const void *a, float *out) {
    const uint8_t *x = w;
    const float *y = a;
    float acc[F_LANES] = {0};
    int64_t i = 0;
    for (; i + F_LANES <= n; i += F_LANES)
        for (int k = 0; k < F_LANES; k++) {
            uint16_t h;
            memcpy(&h, x + 2 * (i + k), 2);
            acc[k] += bf16_to_f32_inline(h) * y[i + k];
        }
    float s = 0.0f;
    for (int k = 0; k < F_LANES; k++) s += acc[k];
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, x + 2 * i, 2);
        s += bf16_to_f32_inline(h) * y[i];
    }
    *out = s;
}

/* ---- 32-element blocks against Q8_0 ------------------------------------- */

static int sum_q8(const int8_t *q, int n) {
    int s = 0;
    for (int j = 0; j < n; j++) s += q[j];
    return s;
}

static void dot_q4_0(int64_t n, const void *w, const void *a, float *out) {
    const blk_q4_0 *x = w;
    const blk_q8_0 *y = a;
    float s = 0.0f;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        int isum = 0;
        for (int j = 0; j < 16; j++)
            isum += ((x[i].qs[j] & 0xF) - 8) * y[i].qs[j] + ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + 16];
        s += half_to_f32(x[i].d) * half_to_f32(y[i].d) * (float)isum;
    }
    *out = s;
}

static void dot_q4_1(int64_t n, const void *w, const void *a, float *out) {
    const blk_q4_1 *x = w;
    const blk_q8_0 *y = a;
    float s = 0.0f;
    for (int64_t i = 0; i < n / QK4_1; i++) {
        int isum = 0;
        for (int j = 0; j < 16; j++)
            isum += (x[i].qs[j] & 0xF) * y[i].qs[j] + (x[i].qs[j] >> 4) * y[i].qs[j + 16];
        const float dy = half_to_f32(y[i].d);
        s += half_to_f32(x[i].d) * dy * (float)isum + half_to_f32(x[i].m) * dy * (float)sum_q8(y[i].qs, 32);
    }
    *out = s;
}

static uint32_t le32(const uint8_t p[4]) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void dot_q5_0(int64_t n, const void *w, const void *a, float *out) {
    const blk_q5_0 *x = w;
    const blk_q8_0 *y = a;
    float s = 0.0f;
    for (int64_t i = 0; i < n / QK5_0; i++) {
        const uint32_t qh = le32(x[i].qh);
        int isum = 0;
        for (int j = 0; j < 16; j++) {
            const int q0 = ((x[i].qs[j] & 0xF) | (int)((qh >> j) & 1) << 4) - 16;
            const int q1 = ((x[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4) - 16;
            isum += q0 * y[i].qs[j] + q1 * y[i].qs[j + 16];
        }
        s += half_to_f32(x[i].d) * half_to_f32(y[i].d) * (float)isum;
    }
    *out = s;
}

static void dot_q5_1(int64_t n, const void *w, const void *a, float *out) {
    const blk_q5_1 *x = w;
    const blk_q8_0 *y = a;
    float s = 0.0f;
    for (int64_t i = 0; i < n / QK5_1; i++) {
        const uint32_t qh = le32(x[i].qh);
        int isum = 0;
        for (int j = 0; j < 16; j++) {
            const int q0 = (x[i].qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
            const int q1 = (x[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            isum += q0 * y[i].qs[j] + q1 * y[i].qs[j + 16];
        }
        const float dy = half_to_f32(y[i].d);
        s += half_to_f32(x[i].d) * dy * (float)isum + half_to_f32(x[i].m) * dy * (float)sum_q8(y[i].qs, 32);
    }
    *out = s;
}

static void dot_q8_0(int64_t n, const void *w, const void *a, float *out) {
    const blk_q8_0 *x = w;
    const blk_q8_0 *y = a;
    float s = 0.0f;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        int isum = 0;
        for (int j = 0; j < 32; j++) isum += x[i].qs[j] * y[i].qs[j];
        s += half_to_f32(x[i].d) * half_to_f32(y[i].d) * (float)isum;
    }
    *out = s;
}

/* ---- K-quants against Q8_K ---------------------------------------------- */

/* Sum over a group of 16 of q_w * q_a. */
static int dot16(const int8_t *q, const int8_t *y) {
    int s = 0;
    for (int l = 0; l < 16; l++) s += q[l] * y[l];
    return s;
}

static void dot_q2_K(int64_t n, const void *w, const void *a, float *out) {
    const blk_q2_K *x = w;
    const blk_q8_K *y = a;
    float s = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int8_t q[QK_K];
        for (int h = 0; h < 2; h++)
            for (int j = 0; j < 4; j++)
                for (int l = 0; l < 32; l++)
                    q[128 * h + 32 * j + l] = (int8_t)((x[i].qs[32 * h + l] >> (2 * j)) & 3);
        int isum = 0, msum = 0;
        for (int g = 0; g < 16; g++) {
            isum += (x[i].scales[g] & 0xF) * dot16(q + 16 * g, y[i].qs + 16 * g);
            msum += (x[i].scales[g] >> 4) * y[i].bsums[g];
        }
        s += y[i].d * (half_to_f32(x[i].d) * (float)isum - half_to_f32(x[i].dmin) * (float)msum);
    }
    *out = s;
}

static void dot_q3_K(int64_t n, const void *w, const void *a, float *out) {
    const blk_q3_K *x = w;
    const blk_q8_K *y = a;
    float s = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int8_t q[QK_K], sc[16];
        k3_unpack_scales(x[i].scales, sc);
        for (int h = 0; h < 2; h++)
            for (int j = 0; j < 4; j++)
                for (int l = 0; l < 32; l++) {
                    const int lo = (x[i].qs[32 * h + l] >> (2 * j)) & 3;
                    const int hi = (x[i].hmask[l] >> (4 * h + j)) & 1;
                    q[128 * h + 32 * j + l] = (int8_t)(lo + 4 * hi - 4);
                }
        int isum = 0;
        for (int g = 0; g < 16; g++) isum += sc[g] * dot16(q + 16 * g, y[i].qs + 16 * g);
        s += y[i].d * half_to_f32(x[i].d) * (float)isum;
    }
    *out = s;
}

static void dot_q4_K(int64_t n, const void *w, const void *a, float *out) {
    const blk_q4_K *x = w;
    const blk_q8_K *y = a;
    float s = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint8_t sc[8], mn[8];
        k4_unpack_scales(x[i].scales, sc, mn);
        int isum = 0, msum = 0;
        for (int j = 0; j < 8; j++) {
            const uint8_t *qs = x[i].qs + 32 * (j / 2);
            const int shift = 4 * (j & 1);
            const int8_t *ya = y[i].qs + 32 * j;
            int d = 0;
            for (int l = 0; l < 32; l++) d += ((qs[l] >> shift) & 0xF) * ya[l];
            isum += sc[j] * d;
            msum += mn[j] * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        }
        s += y[i].d * (half_to_f32(x[i].d) * (float)isum - half_to_f32(x[i].dmin) * (float)msum);
    }
    *out = s;
}

static void dot_q5_K(int64_t n, const void *w, const void *a, float *out) {
    const blk_q5_K *x = w;
    const blk_q8_K *y = a;
    float s = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint8_t sc[8], mn[8];
        k4_unpack_scales(x[i].scales, sc, mn);
        int isum = 0, msum = 0;
        for (int j = 0; j < 8; j++) {
            const uint8_t *qs = x[i].qs + 32 * (j / 2);
            const int shift = 4 * (j & 1);
            const int8_t *ya = y[i].qs + 32 * j;
            int d = 0;
            for (int l = 0; l < 32; l++) {
                const int v = ((qs[l] >> shift) & 0xF) | ((x[i].qh[l] >> j) & 1) << 4;
                d += v * ya[l];
            }
            isum += sc[j] * d;
            msum += mn[j] * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        }
        s += y[i].d * (half_to_f32(x[i].d) * (float)isum - half_to_f32(x[i].dmin) * (float)msum);
    }
    *out = s;
}

static void dot_q6_K(int64_t n, const void *w, const void *a, float *out) {
    const blk_q6_K *x = w;
    const blk_q8_K *y = a;
    float s = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        int8_t q[QK_K];
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x[i].ql + 64 * h, *qh = x[i].qh + 32 * h;
            int8_t *qq = q + 128 * h;
            for (int l = 0; l < 32; l++) {
                qq[l] = (int8_t)(((ql[l] & 0xF) | (qh[l] & 3) << 4) - 32);
                qq[l + 32] = (int8_t)(((ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4) - 32);
                qq[l + 64] = (int8_t)(((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32);
                qq[l + 96] = (int8_t)(((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32);
            }
        }
        int isum = 0;
        for (int g = 0; g < 16; g++) isum += x[i].scales[g] * dot16(q + 16 * g, y[i].qs + 16 * g);
        s += y[i].d * half_to_f32(x[i].d) * (float)isum;
    }
    *out = s;
}

/* ---- dispatch ------------------------------------------------------------ */

uint32_t quant_act_type(uint32_t wtype) {
    switch (wtype) {
    case LLMS_TYPE_F32:
    case LLMS_TYPE_F16:
    case LLMS_TYPE_BF16: return LLMS_TYPE_F32;
    case LLMS_TYPE_Q4_0:
    case LLMS_TYPE_Q4_1:
    case LLMS_TYPE_Q5_0:
    case LLMS_TYPE_Q5_1:
    case LLMS_TYPE_Q8_0: return LLMS_TYPE_Q8_0;
    case LLMS_TYPE_Q2_K:
    case LLMS_TYPE_Q3_K:
    case LLMS_TYPE_Q4_K:
    case LLMS_TYPE_Q5_K:
    case LLMS_TYPE_Q6_K: return LLMS_TYPE_Q8_K;
    default: return QUANT_TYPE_NONE;
    }
}

const quant_dot_table quant_dot_scalar = {{
    [LLMS_TYPE_F32] = dot_f32, [LLMS_TYPE_F16] = dot_f16, [LLMS_TYPE_BF16] = dot_bf16,
    [LLMS_TYPE_Q4_0] = dot_q4_0, [LLMS_TYPE_Q4_1] = dot_q4_1, [LLMS_TYPE_Q5_0] = dot_q5_0,
    [LLMS_TYPE_Q5_1] = dot_q5_1, [LLMS_TYPE_Q8_0] = dot_q8_0, [LLMS_TYPE_Q2_K] = dot_q2_K,
    [LLMS_TYPE_Q3_K] = dot_q3_K, [LLMS_TYPE_Q4_K] = dot_q4_K, [LLMS_TYPE_Q5_K] = dot_q5_K,
    [LLMS_TYPE_Q6_K] = dot_q6_K,
}};

static const quant_dot_table *dot_table(int isa) {
    switch (isa) {
    case QUANT_ISA_SCALAR: return &quant_dot_scalar;
#if QUANT_HAVE_X86
    case QUANT_ISA_AVX2: return &quant_dot_avx2;
    case QUANT_ISA_AVX512: return &quant_dot_avx512;
#endif
    default: return NULL;
    }
}

/* CPU detection runs once (CPUID is slow, and traps in virtual machines);
 * afterwards the dispatch is a table lookup. */
static pthread_once_t detect_once = PTHREAD_ONCE_INIT;
static int isa_ok[QUANT_ISA_COUNT];
static int isa_top;

static void detect(void) {
    isa_ok[QUANT_ISA_SCALAR] = 1;
#if QUANT_HAVE_X86
    isa_ok[QUANT_ISA_AVX2] = quant_cpu_has_avx2();
    isa_ok[QUANT_ISA_AVX512] = isa_ok[QUANT_ISA_AVX2] && quant_cpu_has_avx512vnni();
#endif
    for (int isa = 0; isa < QUANT_ISA_COUNT; isa++)
        if (isa_ok[isa]) isa_top = isa;
}

int quant_isa_available(int isa) {
    if (isa < 0 || isa >= QUANT_ISA_COUNT) return 0;
    pthread_once(&detect_once, detect);
    return isa_ok[isa];
}

int quant_isa_best(void) {
    pthread_once(&detect_once, detect);
    return isa_top;
}

const char *quant_isa_name(int isa) {
    switch (isa) {
    case QUANT_ISA_SCALAR: return "scalar";
    case QUANT_ISA_AVX2: return "avx2";
    case QUANT_ISA_AVX512: return "avx512";
    default: return "?";
    }
}

quant_dot_fn quant_vec_dot_get(uint32_t wtype, int isa) {
    if (wtype >= QUANT_TYPE_SLOTS || !quant_isa_available(isa)) return NULL;
    /* A level without its own kernel for the type falls back downwards. */
    for (int l = isa; l >= QUANT_ISA_SCALAR; l--) {
        const quant_dot_table *t = dot_table(l);
        if (t && t->fn[wtype]) return t->fn[wtype];
    }
    return NULL;
}

quant_dot_fn quant_vec_dot_fn(uint32_t wtype) { return quant_vec_dot_get(wtype, quant_isa_best()); }

void quant_vec_dot(uint32_t wtype, int64_t n, const void *w_row, const void *act, float *out) {
    quant_dot_fn f = quant_vec_dot_fn(wtype);
    if (f) f(n, w_row, act, out);
}
