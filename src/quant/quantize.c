/*
 * Reference quantization: float rows into GGUF blocks.
 *
 * Legacy types (Q4_0..Q8_0) follow ggml's simple formulas (the value of
 * largest magnitude maps to the most negative level, or min/max for the
 * offset types). The K-quants search a few candidate scales per group and
 * refit each candidate by least squares, then quantize the group scales
 * against a super-block scale; they are sound rather than identical to
 * llama.cpp's search. Quantized values are always computed against the
 * scales as stored (after rounding to half precision), so the rounding of
 * a scale never leaks into the reconstruction error more than necessary.
 *
 * Every float-to-int conversion goes through qround(), which clamps in
 * float first: NaN or huge inputs give garbage blocks, never undefined
 * behaviour.
 */
#include <math.h>
#include <string.h>

#include "blocks.h"
#include "half.h"
#include "kernels.h"
#include "llmserve.h"
#include "quant.h"

static inline int qround(float x, int lo, int hi) {
    if (!(x >= (float)lo)) return lo; /* also catches NaN */
    if (x > (float)hi) return hi;
    return (int)lrintf(x);
}

/* Largest |x[i]| and the signed value that attains it. */
static float signed_absmax(const float *x, int n, float *amax_out) {
    float amax = 0.0f, vmax = 0.0f;
    for (int i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > amax) {
            amax = a;
            vmax = x[i];
        }
    }
    if (amax_out) *amax_out = amax;
    return vmax;
}

/* Stores a scale as half and returns the value actually stored. */
static float store_half(uint16_t *dst, float v) {
    uint16_t h = half_from_f32(v);
    *dst = h;
    return half_to_f32(h);
}

static float inv_or_zero(float v) { return v != 0.0f && isfinite(v) ? 1.0f / v : 0.0f; }

/* ---- plain float formats ------------------------------------------------ */

static void q_f32(const float *x, void *dst, int64_t n) { memcpy(dst, x, (size_t)n * sizeof(float)); }

static void q_f16(const float *x, void *dst, int64_t n) {
    uint8_t *p = dst;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = half_from_f32(x[i]);
        memcpy(p + 2 * i, &h, 2);
    }
}

static void q_bf16(const float *x, void *dst, int64_t n) {
    uint8_t *p = dst;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = bf16_from_f32_inline(x[i]);
        memcpy(p + 2 * i, &h, 2);
    }
}

/* ---- 32-element blocks -------------------------------------------------- */

static void q_q8_0(const float *x, void *dst, int64_t n) {
    blk_q8_0 *y = dst;
    for (int64_t i = 0; i < n / QK8_0; i++, x += QK8_0) {
        float amax;
        signed_absmax(x, QK8_0, &amax);
        uint16_t hd;
        const float id = inv_or_zero(store_half(&hd, amax / 127.0f));
        y[i].d = hd;
        /* -128 is never produced: the SIMD dot kernels negate values. */
        for (int j = 0; j < QK8_0; j++) y[i].qs[j] = (int8_t)qround(x[j] * id, -127, 127);
    }
}

static void q_q4_0(const float *x, void *dst, int64_t n) {
    blk_q4_0 *y = dst;
    for (int64_t i = 0; i < n / QK4_0; i++, x += QK4_0) {
        const float vmax = signed_absmax(x, QK4_0, NULL);
        uint16_t hd;
        const float id = inv_or_zero(store_half(&hd, vmax / -8.0f));
        y[i].d = hd;
        for (int j = 0; j < QK4_0 / 2; j++) {
            int q0 = qround(x[j] * id, -8, 7) + 8;
            int q1 = qround(x[j + QK4_0 / 2] * id, -8, 7) + 8;
            y[i].qs[j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

static void minmax(const float *x, int n, float *mn, float *mx) {
    float lo = x[0], hi = x[0];
    for (int j = 1; j < n; j++) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
    }
    *mn = lo;
    *mx = hi;
}

static void q_q4_1(const float *x, void *dst, int64_t n) {
    blk_q4_1 *y = dst;
    for (int64_t i = 0; i < n / QK4_1; i++, x += QK4_1) {
        float lo, hi;
        minmax(x, QK4_1, &lo, &hi);
        uint16_t hd, hm;
        const float id = inv_or_zero(store_half(&hd, (hi - lo) / 15.0f));
        const float m = store_half(&hm, lo);
        y[i].d = hd;
        y[i].m = hm;
        for (int j = 0; j < QK4_1 / 2; j++) {
            int q0 = qround((x[j] - m) * id, 0, 15);
            int q1 = qround((x[j + QK4_1 / 2] - m) * id, 0, 15);
            y[i].qs[j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

/* Packs 32 five-bit values: low nibbles as Q4, bit 4 of element j into
 * bit j of qh. */
static void pack5(const int q[32], uint8_t qs[16], uint8_t qh[4]) {
    uint32_t h = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 0xF) | (q[j + 16] & 0xF) << 4);
        h |= (uint32_t)((q[j] >> 4) & 1) << j;
        h |= (uint32_t)((q[j + 16] >> 4) & 1) << (j + 16);
    }
    for (int k = 0; k < 4; k++) qh[k] = (uint8_t)(h >> (8 * k));
}

static void q_q5_0(const float *x, void *dst, int64_t n) {
    blk_q5_0 *y = dst;
    for (int64_t i = 0; i < n / QK5_0; i++, x += QK5_0) {
        const float vmax = signed_absmax(x, QK5_0, NULL);
        uint16_t hd;
        const float id = inv_or_zero(store_half(&hd, vmax / -16.0f));
        y[i].d = hd;
        int q[QK5_0];
        for (int j = 0; j < QK5_0; j++) q[j] = qround(x[j] * id, -16, 15) + 16;
        pack5(q, y[i].qs, y[i].qh);
    }
}

static void q_q5_1(const float *x, void *dst, int64_t n) {
    blk_q5_1 *y = dst;
    for (int64_t i = 0; i < n / QK5_1; i++, x += QK5_1) {
        float lo, hi;
        minmax(x, QK5_1, &lo, &hi);
        uint16_t hd, hm;
        const float id = inv_or_zero(store_half(&hd, (hi - lo) / 31.0f));
        const float m = store_half(&hm, lo);
        y[i].d = hd;
        y[i].m = hm;
        int q[QK5_1];
        for (int j = 0; j < QK5_1; j++) q[j] = qround((x[j] - m) * id, 0, 31);
        pack5(q, y[i].qs, y[i].qh);
    }
}

/* ---- K-quant group fitting ---------------------------------------------- */

/* Fits x[0..n) ~ s * q - m with q in 0..nmax, s >= 0 and m >= 0 (the
 * offset is never positive: the formats store the min as a subtraction).
 * Tries nstep + 1 candidate inverse scales around nmax / range, refits
 * (s, m) of each by least squares over its q, and keeps the pair with the
 * smallest squared error after requantizing. Returns s; *m_out gets m. */
static float fit_asym(const float *x, int n, int nmax, float rmin, float rdelta, int nstep,
                      float *m_out) {
    float lo, hi;
    minmax(x, n, &lo, &hi);
    if (lo > 0.0f) lo = 0.0f;
    if (!(hi > lo) || !isfinite(hi - lo)) { /* constant, or non-finite data */
        *m_out = isfinite(lo) ? -lo : 0.0f;
        return 0.0f;
    }
    float best_s = (hi - lo) / (float)nmax, best_b = lo, best_err = INFINITY;
    int q[32];
    for (int k = -1; k <= nstep; k++) {
        float s, b;
        if (k < 0) { /* the plain min/max fit */
            s = best_s;
            b = best_b;
        } else {
            const float iscale = (rmin + rdelta * (float)k + (float)nmax) / (hi - lo);
            float sw = 0, sq = 0, sqq = 0, sx = 0, sqx = 0;
            for (int i = 0; i < n; i++) {
                q[i] = qround(iscale * (x[i] - lo), 0, nmax);
                sw += 1.0f;
                sq += (float)q[i];
                sqq += (float)(q[i] * q[i]);
                sx += x[i];
                sqx += (float)q[i] * x[i];
            }
            const float det = sw * sqq - sq * sq;
            if (!(det > 0.0f)) continue;
            s = (sw * sqx - sq * sx) / det;
            b = (sqq * sx - sq * sqx) / det;
            if (b > 0.0f) {
                b = 0.0f;
                s = sqx / sqq;
            }
            if (!(s > 0.0f)) continue;
        }
        const float is = 1.0f / s;
        float err = 0.0f;
        for (int i = 0; i < n; i++) {
            const float r = s * (float)qround((x[i] - b) * is, 0, nmax) + b - x[i];
            err += r * r;
        }
        if (err < best_err) {
            best_err = err;
            best_s = s;
            best_b = b;
        }
    }
    *m_out = -best_b;
    return best_s;
}

/* Fits x[0..n) ~ s * q with q in -nmax..nmax-1 and s of either sign, so
 * that the value of largest magnitude can use the extra negative level.
 * Candidates as in fit_asym; the least-squares s of a fixed q is
 * sum(x q) / sum(q q). */
static float fit_sym(const float *x, int n, int nmax, int nstep) {
    const float vmax = signed_absmax(x, n, NULL);
    if (vmax == 0.0f || !isfinite(vmax)) return 0.0f;
    float best_s = vmax / (float)-nmax, best_err = INFINITY;
    for (int k = -nstep - 1; k <= nstep; k++) {
        float s;
        if (k < -nstep) {
            s = best_s;
        } else {
            const float iscale = -((float)nmax + 0.1f * (float)k) / vmax;
            float sxq = 0, sqq = 0;
            for (int i = 0; i < n; i++) {
                const int q = qround(iscale * x[i], -nmax, nmax - 1);
                sxq += x[i] * (float)q;
                sqq += (float)(q * q);
            }
            if (!(sqq > 0.0f)) continue;
            s = sxq / sqq;
            if (s == 0.0f) continue;
        }
        const float is = 1.0f / s;
        float err = 0.0f;
        for (int i = 0; i < n; i++) {
            const float r = s * (float)qround(x[i] * is, -nmax, nmax - 1) - x[i];
            err += r * r;
        }
        if (err < best_err) {
            best_err = err;
            best_s = s;
        }
    }
    return best_s;
}

/* Quantizes group scales (all >= 0) to 0..lmax against a half-precision
 * super scale; returns the stored super scale. */
static float quantize_scales_unsigned(const float *s, int ng, int lmax, uint16_t *hdst, int *ls) {
    float smax = 0.0f;
    for (int g = 0; g < ng; g++)
        if (s[g] > smax) smax = s[g];
    const float d = store_half(hdst, smax / (float)lmax);
    const float id = inv_or_zero(d);
    for (int g = 0; g < ng; g++) ls[g] = qround(s[g] * id, 0, lmax);
    return d;
}

/* Signed group scales to -lmax..lmax-1, the largest magnitude mapping to
 * -lmax; returns the stored (possibly negative) super scale. */
static float quantize_scales_signed(const float *s, int ng, int lmax, uint16_t *hdst, int *ls) {
    const float vmax = signed_absmax(s, ng, NULL);
    const float d = store_half(hdst, vmax / (float)-lmax);
    const float id = inv_or_zero(d);
    for (int g = 0; g < ng; g++) ls[g] = qround(s[g] * id, -lmax, lmax - 1);
    return d;
}

/* Final levels of an asymmetric group given its stored scale and min. */
static void requant_asym(const float *x, int n, float dl, float ml, int nmax, int *q) {
    const float id = inv_or_zero(dl);
    for (int i = 0; i < n; i++) q[i] = id != 0.0f ? qround((x[i] + ml) * id, 0, nmax) : 0;
}

static void requant_sym(const float *x, int n, float dl, int nmax, int *q) {
    const float id = inv_or_zero(dl);
    for (int i = 0; i < n; i++) q[i] = id != 0.0f ? qround(x[i] * id, -nmax, nmax - 1) : 0;
}

/* Q4_K / Q5_K share the scale search and the 12-byte scale packing; q gets
 * the 256 levels (0..nmax). */
static void k45_quantize(const float *x, int nmax, float rmin, int nstep, uint16_t *hd,
                         uint16_t *hdmin, uint8_t scales[K_SCALE_SIZE], int q[QK_K]) {
    float s[8], m[8];
    int ls[8], lm[8];
    for (int j = 0; j < 8; j++) s[j] = fit_asym(x + 32 * j, 32, nmax, rmin, 0.1f, nstep, &m[j]);
    const float d = quantize_scales_unsigned(s, 8, 63, hd, ls);
    const float dmin = quantize_scales_unsigned(m, 8, 63, hdmin, lm);
    for (int j = 0; j < 4; j++) {
        scales[j] = (uint8_t)(ls[j] | (ls[j + 4] >> 4) << 6);
        scales[j + 4] = (uint8_t)(lm[j] | (lm[j + 4] >> 4) << 6);
        scales[j + 8] = (uint8_t)((ls[j + 4] & 0xF) | (lm[j + 4] & 0xF) << 4);
    }
    for (int j = 0; j < 8; j++)
        requant_asym(x + 32 * j, 32, d * (float)ls[j], dmin * (float)lm[j], nmax, q + 32 * j);
}

static void q_q4_K(const float *x, void *dst, int64_t n) {
    blk_q4_K *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        int q[QK_K];
        uint16_t hd, hdm;
        k45_quantize(x, 15, -1.0f, 20, &hd, &hdm, y[i].scales, q);
        y[i].d = hd;
        y[i].dmin = hdm;
        for (int p = 0; p < 4; p++)
            for (int l = 0; l < 32; l++)
                y[i].qs[32 * p + l] = (uint8_t)(q[64 * p + l] | q[64 * p + 32 + l] << 4);
    }
}

static void q_q5_K(const float *x, void *dst, int64_t n) {
    blk_q5_K *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        int q[QK_K];
        uint16_t hd, hdm;
        k45_quantize(x, 31, -0.5f, 15, &hd, &hdm, y[i].scales, q);
        y[i].d = hd;
        y[i].dmin = hdm;
        memset(y[i].qh, 0, sizeof y[i].qh);
        for (int p = 0; p < 4; p++)
            for (int l = 0; l < 32; l++) {
                const int a = q[64 * p + l], b = q[64 * p + 32 + l];
                y[i].qs[32 * p + l] = (uint8_t)((a & 0xF) | (b & 0xF) << 4);
                y[i].qh[l] |= (uint8_t)(((a >> 4) & 1) << (2 * p) | ((b >> 4) & 1) << (2 * p + 1));
            }
    }
}

static void q_q2_K(const float *x, void *dst, int64_t n) {
    blk_q2_K *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float s[16], m[16];
        int ls[16], lm[16], q[QK_K];
        for (int g = 0; g < 16; g++) s[g] = fit_asym(x + 16 * g, 16, 3, -0.5f, 0.1f, 15, &m[g]);
        uint16_t hd, hdm;
        const float d = quantize_scales_unsigned(s, 16, 15, &hd, ls);
        const float dmin = quantize_scales_unsigned(m, 16, 15, &hdm, lm);
        y[i].d = hd;
        y[i].dmin = hdm;
        for (int g = 0; g < 16; g++) {
            y[i].scales[g] = (uint8_t)(ls[g] | lm[g] << 4);
            requant_asym(x + 16 * g, 16, d * (float)ls[g], dmin * (float)lm[g], 3, q + 16 * g);
        }
        memset(y[i].qs, 0, sizeof y[i].qs);
        for (int e = 0; e < QK_K; e++) {
            const int h = e / 128, j = (e % 128) / 32, l = e % 32;
            y[i].qs[32 * h + l] |= (uint8_t)(q[e] << (2 * j));
        }
    }
}

static void q_q3_K(const float *x, void *dst, int64_t n) {
    blk_q3_K *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float s[16];
        int ls[16], q[QK_K];
        for (int g = 0; g < 16; g++) s[g] = fit_sym(x + 16 * g, 16, 4, 9);
        uint16_t hd;
        const float d = quantize_scales_signed(s, 16, 32, &hd, ls);
        y[i].d = hd;
        memset(y[i].scales, 0, sizeof y[i].scales);
        for (int g = 0; g < 16; g++) {
            const int u = ls[g] + 32; /* 0..63 */
            if (g < 8)
                y[i].scales[g] |= (uint8_t)(u & 0xF);
            else
                y[i].scales[g - 8] |= (uint8_t)((u & 0xF) << 4);
            y[i].scales[8 + (g & 3)] |= (uint8_t)((u >> 4) << (2 * (g >> 2)));
            requant_sym(x + 16 * g, 16, d * (float)ls[g], 4, q + 16 * g);
        }
        memset(y[i].qs, 0, sizeof y[i].qs);
        memset(y[i].hmask, 0, sizeof y[i].hmask);
        for (int e = 0; e < QK_K; e++) {
            const int h = e / 128, j = (e % 128) / 32, l = e % 32;
            const int u = q[e] + 4; /* 0..7 */
            y[i].qs[32 * h + l] |= (uint8_t)((u & 3) << (2 * j));
            if (u & 4) y[i].hmask[l] |= (uint8_t)(1u << (4 * h + j));
        }
    }
}

static void q_q6_K(const float *x, void *dst, int64_t n) {
    blk_q6_K *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float s[16];
        int ls[16], q[QK_K];
        for (int g = 0; g < 16; g++) s[g] = fit_sym(x + 16 * g, 16, 32, 9);
        uint16_t hd;
        const float d = quantize_scales_signed(s, 16, 128, &hd, ls);
        y[i].d = hd;
        for (int g = 0; g < 16; g++) {
            y[i].scales[g] = (int8_t)ls[g];
            requant_sym(x + 16 * g, 16, d * (float)ls[g], 32, q + 16 * g);
        }
        memset(y[i].ql, 0, sizeof y[i].ql);
        memset(y[i].qh, 0, sizeof y[i].qh);
        for (int e = 0; e < QK_K; e++) {
            const int h = e / 128, g = (e % 128) / 32, l = e % 32;
            const int u = q[e] + 32; /* 0..63 */
            y[i].ql[64 * h + 32 * (g & 1) + l] |= (uint8_t)((u & 0xF) << (g < 2 ? 0 : 4));
            y[i].qh[32 * h + l] |= (uint8_t)((u >> 4) << (2 * g));
        }
    }
}

static void q_q8_K(const float *x, void *dst, int64_t n) {
    blk_q8_K *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float amax;
        signed_absmax(x, QK_K, &amax);
        if (!(amax > 0.0f) || !isfinite(amax)) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float id = 127.0f / amax;
        y[i].d = amax / 127.0f;
        for (int g = 0; g < QK_K / 16; g++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) {
                const int v = qround(x[16 * g + l] * id, -127, 127);
                y[i].qs[16 * g + l] = (int8_t)v;
                sum += v;
            }
            y[i].bsums[g] = (int16_t)sum;
        }
    }
}

const quant_q_table quant_q_scalar = {{
    [LLMS_TYPE_F32] = q_f32, [LLMS_TYPE_F16] = q_f16, [LLMS_TYPE_BF16] = q_bf16,
    [LLMS_TYPE_Q4_0] = q_q4_0, [LLMS_TYPE_Q4_1] = q_q4_1, [LLMS_TYPE_Q5_0] = q_q5_0,
    [LLMS_TYPE_Q5_1] = q_q5_1, [LLMS_TYPE_Q8_0] = q_q8_0, [LLMS_TYPE_Q2_K] = q_q2_K,
    [LLMS_TYPE_Q3_K] = q_q3_K, [LLMS_TYPE_Q4_K] = q_q4_K, [LLMS_TYPE_Q5_K] = q_q5_K,
    [LLMS_TYPE_Q6_K] = q_q6_K, [LLMS_TYPE_Q8_K] = q_q8_K,
}};

static const quant_q_table *q_table(int isa) {
    switch (isa) {
    case QUANT_ISA_SCALAR: return &quant_q_scalar;
#if QUANT_HAVE_X86
    case QUANT_ISA_AVX2: return &quant_q_avx2;
#endif
    default: return NULL;
    }
}

quant_q_fn quant_quantize_get(uint32_t type, int isa) {
    if (type >= QUANT_TYPE_SLOTS || !quant_isa_available(isa)) return NULL;
    for (int l = isa; l >= QUANT_ISA_SCALAR; l--) {
        const quant_q_table *t = q_table(l);
        if (t && t->fn[type]) return t->fn[type];
    }
    return NULL;
}

int quant_can_quantize(uint32_t type) { return type < QUANT_TYPE_SLOTS && quant_q_scalar.fn[type] != NULL; }

void quant_quantize_row(uint32_t type, const float *src, void *dst, int64_t n) {
    quant_q_fn f = quant_quantize_get(type, quant_isa_best());
    if (f && n > 0) f(src, dst, n);
}
