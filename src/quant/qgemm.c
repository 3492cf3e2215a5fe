/*
 * Quantized GEMM for prefill; see qgemm.h.
 */
#include <string.h>

#include "qgemm.h"
#include "blocks.h"
#include "half.h"
#include "kernels.h"
#include "llmserve.h"

#define TR 16  /* rows per tile */

/* ---- unpacking: w = s*u + m per block -------------------------------- */

static void up_q4_0(const void *src, int64_t n, uint8_t *u, float *s, float *m) {
    const blk_q4_0 *b = src;
    for (int64_t i = 0; i < n / 32; i++, u += 32) {
        const float d = half_to_f32(b[i].d);
        s[i] = d;
        m[i] = -8.0f * d;
        for (int j = 0; j < 16; j++) {
            u[j] = b[i].qs[j] & 0xF;
            u[j + 16] = b[i].qs[j] >> 4;
        }
    }
}

static void up_q4_1(const void *src, int64_t n, uint8_t *u, float *s, float *m) {
    const blk_q4_1 *b = src;
    for (int64_t i = 0; i < n / 32; i++, u += 32) {
        s[i] = half_to_f32(b[i].d);
        m[i] = half_to_f32(b[i].m);
        for (int j = 0; j < 16; j++) {
            u[j] = b[i].qs[j] & 0xF;
            u[j + 16] = b[i].qs[j] >> 4;
        }
    }
}

static void up_q5_0(const void *src, int64_t n, uint8_t *u, float *s, float *m) {
    const blk_q5_0 *b = src;
    for (int64_t i = 0; i < n / 32; i++, u += 32) {
        const float d = half_to_f32(b[i].d);
        const uint32_t qh = blk_le32(b[i].qh);
        s[i] = d;
        m[i] = -16.0f * d;
        for (int j = 0; j < 16; j++) {
            u[j] = (uint8_t)((b[i].qs[j] & 0xF) | ((qh >> j) & 1) << 4);
            u[j + 16] = (uint8_t)((b[i].qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4);
        }
    }
}

static void up_q5_1(const void *src, int64_t n, uint8_t *u, float *s, float *m) {
    const blk_q5_1 *b = src;
    for (int64_t i = 0; i < n / 32; i++, u += 32) {
        const uint32_t qh = blk_le32(b[i].qh);
        s[i] = half_to_f32(b[i].d);
        m[i] = half_to_f32(b[i].m);
        for (int j = 0; j < 16; j++) {
            u[j] = (uint8_t)((b[i].qs[j] & 0xF) | ((qh >> j) & 1) << 4);
            u[j + 16] = (uint8_t)((b[i].qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4);
        }
    }
}

static void up_q8_0(const void *src, int64_t n, uint8_t *u, float *s, float *m) {
    const blk_q8_0 *b = src;
    for (int64_t i = 0; i < n / 32; i++, u += 32) {
        const float d = half_to_f32(b[i].d);
        s[i] = d;
        m[i] = -128.0f * d;
        for (int j = 0; j < 32; j++) u[j] = (uint8_t)(b[i].qs[j] + 128);
    }
}

static void up_q4_K(const void *src, int64_t n, uint8_t *u, float *s, float *m) {
    const blk_q4_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = half_to_f32(b[i].d), dmin = half_to_f32(b[i].dmin);
        uint8_t sc[8], mn[8];
        k4_unpack_scales(b[i].scales, sc, mn);
        for (int p = 0; p < 4; p++, u += 64) {
            const uint8_t *q = b[i].qs + 32 * p;
            *s++ = d * (float)sc[2 * p];
            *m++ = -(dmin * (float)mn[2 * p]);
            *s++ = d * (float)sc[2 * p + 1];
            *m++ = -(dmin * (float)mn[2 * p + 1]);
            for (int l = 0; l < 32; l++) {
                u[l] = q[l] & 0xF;
                u[l + 32] = q[l] >> 4;
            }
        }
    }
}

static void up_q5_K(const void *src, int64_t n, uint8_t *u, float *s, float *m) {
    const blk_q5_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = half_to_f32(b[i].d), dmin = half_to_f32(b[i].dmin);
        uint8_t sc[8], mn[8];
        k4_unpack_scales(b[i].scales, sc, mn);
        for (int p = 0; p < 4; p++, u += 64) {
            const uint8_t *q = b[i].qs + 32 * p;
            *s++ = d * (float)sc[2 * p];
            *m++ = -(dmin * (float)mn[2 * p]);
            *s++ = d * (float)sc[2 * p + 1];
            *m++ = -(dmin * (float)mn[2 * p + 1]);
            for (int l = 0; l < 32; l++) {
                u[l] = (uint8_t)((q[l] & 0xF) | ((b[i].qh[l] >> (2 * p)) & 1) << 4);
                u[l + 32] = (uint8_t)((q[l] >> 4) | ((b[i].qh[l] >> (2 * p + 1)) & 1) << 4);
            }
        }
    }
}

static void up_q2_K(const void *src, int64_t n, uint8_t *u, float *s, float *m) {
    const blk_q2_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = half_to_f32(b[i].d), dmin = half_to_f32(b[i].dmin);
        for (int h = 0; h < 2; h++) {
            const uint8_t *q = b[i].qs + 32 * h;
            for (int j = 0; j < 4; j++)
                for (int half16 = 0; half16 < 2; half16++) {
                    const uint8_t sc = b[i].scales[8 * h + 2 * j + half16];
                    *s++ = d * (float)(sc & 0xF);
                    *m++ = -(dmin * (float)(sc >> 4));
                    for (int l = 16 * half16; l < 16 * half16 + 16; l++) *u++ = (q[l] >> (2 * j)) & 3;
                }
        }
    }
}

static void up_q3_K(const void *src, int64_t n, uint8_t *u, float *s, float *m) {
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
                    *s++ = dl;
                    *m++ = -4.0f * dl;
                    for (int l = 16 * half16; l < 16 * half16 + 16; l++)
                        *u++ = (uint8_t)(((q[l] >> (2 * j)) & 3) + ((b[i].hmask[l] & hbit) ? 4 : 0));
                }
            }
        }
    }
}

static void up_q6_K(const void *src, int64_t n, uint8_t *u, float *s, float *m) {
    const blk_q6_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = half_to_f32(b[i].d);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = b[i].ql + 64 * h, *qh = b[i].qh + 32 * h;
            const int8_t *sc = b[i].scales + 8 * h;
            for (int g = 0; g < 4; g++) {
                const uint8_t *lo = ql + 32 * (g & 1);
                const int nib_shift = g < 2 ? 0 : 4;
                for (int half16 = 0; half16 < 2; half16++) {
                    const float dl = d * (float)sc[2 * g + half16];
                    *s++ = dl;
                    *m++ = -32.0f * dl;
                    for (int l = 16 * half16; l < 16 * half16 + 16; l++)
                        *u++ = (uint8_t)(((lo[l] >> nib_shift) & 0xF) | ((qh[l] >> (2 * g)) & 3) << 4);
                }
            }
        }
    }
}

typedef void (*up_fn)(const void *, int64_t, uint8_t *, float *, float *);

#if QUANT_HAVE_X86
#include <immintrin.h>
/* SIMD unpackers for the common types: the same values as the scalar ones
 * (integer operations only; the scales are computed by the same scalar
 * expressions). */
#define UP_TARGET __attribute__((target("avx2,f16c")))

UP_TARGET static void up_q4_0_v(const void *src, int64_t n, uint8_t *u, float *s, float *m) {
    const blk_q4_0 *b = src;
    const __m128i m4 = _mm_set1_epi8(0x0F);
    for (int64_t i = 0; i < n / 32; i++, u += 32) {
        const float d = half_to_f32(b[i].d);
        s[i] = d;
        m[i] = -8.0f * d;
        const __m128i v = _mm_loadu_si128((const __m128i *)b[i].qs);
        _mm_storeu_si128((__m128i *)u, _mm_and_si128(v, m4));
        _mm_storeu_si128((__m128i *)(u + 16), _mm_and_si128(_mm_srli_epi16(v, 4), m4));
    }
}

UP_TARGET static void up_q8_0_v(const void *src, int64_t n, uint8_t *u, float *s, float *m) {
    const blk_q8_0 *b = src;
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    for (int64_t i = 0; i < n / 32; i++, u += 32) {
        const float d = half_to_f32(b[i].d);
        s[i] = d;
        m[i] = -128.0f * d;
        _mm256_storeu_si256((__m256i *)u, _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)b[i].qs), flip));
    }
}

UP_TARGET static void up_q4_K_v(const void *src, int64_t n, uint8_t *u, float *s, float *m) {
    const blk_q4_K *b = src;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = half_to_f32(b[i].d), dmin = half_to_f32(b[i].dmin);
        uint8_t sc[8], mn[8];
        k4_unpack_scales(b[i].scales, sc, mn);
        for (int p = 0; p < 4; p++, u += 64) {
            *s++ = d * (float)sc[2 * p];
            *m++ = -(dmin * (float)mn[2 * p]);
            *s++ = d * (float)sc[2 * p + 1];
            *m++ = -(dmin * (float)mn[2 * p + 1]);
            const __m256i v = _mm256_loadu_si256((const __m256i *)(b[i].qs + 32 * p));
            _mm256_storeu_si256((__m256i *)u, _mm256_and_si256(v, m4));
            _mm256_storeu_si256((__m256i *)(u + 32), _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
        }
    }
}

UP_TARGET static void up_q6_K_v(const void *src, int64_t n, uint8_t *u, float *s, float *m) {
    const blk_q6_K *b = src;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x03);
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = half_to_f32(b[i].d);
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = b[i].ql + 64 * h, *qh = b[i].qh + 32 * h;
            const int8_t *sc = b[i].scales + 8 * h;
            const __m256i vh = _mm256_loadu_si256((const __m256i *)qh);
            for (int g = 0; g < 4; g++, u += 32) {
                const __m256i lo = _mm256_loadu_si256((const __m256i *)(ql + 32 * (g & 1)));
                const __m256i l4 = g < 2 ? _mm256_and_si256(lo, m4) : _mm256_and_si256(_mm256_srli_epi16(lo, 4), m4);
                const __m256i h2 = _mm256_and_si256(_mm256_srl_epi16(vh, _mm_cvtsi32_si128(2 * g)), m2);
                _mm256_storeu_si256((__m256i *)u, _mm256_or_si256(l4, _mm256_slli_epi16(h2, 4)));
                for (int half16 = 0; half16 < 2; half16++) {
                    const float dl = d * (float)sc[2 * g + half16];
                    *s++ = dl;
                    *m++ = -32.0f * dl;
                }
            }
        }
    }
}
#endif

/* The fastest unpacker for a type at an ISA level (same output). */
static up_fn up_get(uint32_t t, int *bs);
static up_fn up_get_isa(uint32_t t, int *bs, int isa) {
    up_fn f = up_get(t, bs);
#if QUANT_HAVE_X86
    if (f && isa >= QUANT_ISA_AVX2 && quant_isa_available(QUANT_ISA_AVX2)) {
        switch (t) {
        case LLMS_TYPE_Q4_0: return up_q4_0_v;
        case LLMS_TYPE_Q8_0: return up_q8_0_v;
        case LLMS_TYPE_Q4_K: return up_q4_K_v;
        case LLMS_TYPE_Q6_K: return up_q6_K_v;
        }
    }
#endif
    (void)isa;
    return f;
}

static up_fn up_get(uint32_t t, int *bs) {
    *bs = 32;
    switch (t) {
    case LLMS_TYPE_Q4_0: return up_q4_0;
    case LLMS_TYPE_Q4_1: return up_q4_1;
    case LLMS_TYPE_Q5_0: return up_q5_0;
    case LLMS_TYPE_Q5_1: return up_q5_1;
    case LLMS_TYPE_Q8_0: return up_q8_0;
    case LLMS_TYPE_Q4_K: return up_q4_K;
    case LLMS_TYPE_Q5_K: return up_q5_K;
    }
    *bs = 16;
    switch (t) {
    case LLMS_TYPE_Q2_K: return up_q2_K;
    case LLMS_TYPE_Q3_K: return up_q3_K;
    case LLMS_TYPE_Q6_K: return up_q6_K;
    }
    *bs = 0;
    return NULL;
}

int qgemm_type_supported(uint32_t wtype) {
    int bs;
    return up_get(wtype, &bs) != NULL;
}

int qgemm_unpack_row(uint32_t wtype, const void *row, int64_t n, uint8_t *u, float *s, float *m) {
    int bs;
    up_fn f = up_get(wtype, &bs);
    if (!f) return 0;
    f(row, n, u, s, m);
    return bs;
}

int qgemm_available(void) { return quant_isa_best() >= QUANT_ISA_AVX512; }

/* ---- activations ------------------------------------------------------ */

static size_t al64(size_t x) { return (x + 63) & ~(size_t)63; }

size_t qgemm_act_bytes(int64_t n, int64_t K) {
    return al64((size_t)(n * K)) + 2 * al64((size_t)(n * (K / 32)) * sizeof(float)) +
           al64((size_t)(n * (K / 16)) * sizeof(float));
}

void qgemm_act_init(qgemm_act *a, void *buf, int64_t n, int64_t K) {
    uint8_t *p = buf;
    a->n = n;
    a->K = K;
    a->q = (int8_t *)p;
    p += al64((size_t)(n * K));
    a->d32 = (float *)p;
    p += al64((size_t)(n * (K / 32)) * sizeof(float));
    a->ms32 = (float *)p;
    p += al64((size_t)(n * (K / 32)) * sizeof(float));
    a->ms16 = (float *)p;
}

void qgemm_act_quantize(qgemm_act *a, int64_t t, const float *x) {
    const int64_t K = a->K;
    blk_q8_0 blk[8];
    int8_t *q = a->q + t * K;
    float *d32 = a->d32 + t * (K / 32), *ms32 = a->ms32 + t * (K / 32), *ms16 = a->ms16 + t * (K / 16);
    for (int64_t j0 = 0; j0 < K; j0 += 256) {
        int64_t len = K - j0 < 256 ? K - j0 : 256;
        quant_quantize_row(LLMS_TYPE_Q8_0, x + j0, blk, len);
        for (int64_t b = 0; b < len / 32; b++) {
            const int64_t j = j0 / 32 + b;
            const float d = half_to_f32(blk[b].d);
            int s0 = 0, s1 = 0;
            for (int k = 0; k < 16; k++) s0 += blk[b].qs[k];
            for (int k = 16; k < 32; k++) s1 += blk[b].qs[k];
            memcpy(q + 32 * j, blk[b].qs, 32);
            d32[j] = d;
            ms32[j] = d * (float)(s0 + s1);
            ms16[2 * j] = d * (float)s0;
            ms16[2 * j + 1] = d * (float)s1;
        }
    }
}

/* ---- packing ---------------------------------------------------------- */

size_t qgemm_tile_bytes(int64_t K) {
    /* interleaved values, s and m of up to K/16 blocks, the rows unpacked */
    return al64((size_t)K * TR) + 2 * al64((size_t)(K / 16) * TR * sizeof(float)) + al64((size_t)K * TR) +
           2 * al64((size_t)(K / 16) * TR * sizeof(float));
}

typedef struct tile_view {
    uint8_t *q;   /* [nb][bs/4][TR][4] */
    float *s, *m; /* [nb][TR] */
    int bs;
    int64_t nb;
} tile_view;

/* Interleave: q[(b*G + g)*TR + r] (dwords) = dword g of block b of row r. */
static void interleave_scalar(const uint8_t *u, int64_t K, uint32_t *q) {
    for (int r = 0; r < TR; r++)
        for (int64_t k4 = 0; k4 < K / 4; k4++) memcpy(&q[k4 * TR + r], u + (size_t)r * K + 4 * k4, 4);
}

#if QUANT_HAVE_X86
__attribute__((target("avx512f"))) static void interleave_avx512(const uint8_t *u, int64_t K, uint32_t *q) {
    const __m512i rows = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                            _mm512_set1_epi32((int)K));
    for (int64_t k4 = 0; k4 < K / 4; k4++)
        _mm512_store_si512((void *)(q + k4 * TR), _mm512_i32gather_epi32(rows, (const void *)(u + 4 * k4), 1));
}
#endif

static int pack(uint32_t wtype, const uint8_t *w_rows, uint64_t row_bytes, int rows, int64_t K, void *buf,
                tile_view *tv, int isa) {
    int bs;
    up_fn f = up_get_isa(wtype, &bs, isa);
    if (!f) return 0;
    uint8_t *p = buf;
    tv->q = p;
    p += al64((size_t)K * TR);
    tv->s = (float *)p;
    p += al64((size_t)(K / 16) * TR * sizeof(float));
    tv->m = (float *)p;
    p += al64((size_t)(K / 16) * TR * sizeof(float));
    uint8_t *u = p;
    p += al64((size_t)K * TR);
    float *rs = (float *)p;
    p += al64((size_t)(K / 16) * TR * sizeof(float));
    float *rm = (float *)p;
    const int64_t nb = K / bs;
    tv->bs = bs;
    tv->nb = nb;
    for (int r = 0; r < TR; r++) {
        if (r < rows) {
            f(w_rows + (uint64_t)r * row_bytes, K, u + (size_t)r * K, rs + r * nb, rm + r * nb);
        } else {
            memset(u + (size_t)r * K, 0, (size_t)K);
            memset(rs + r * nb, 0, (size_t)nb * sizeof(float));
            memset(rm + r * nb, 0, (size_t)nb * sizeof(float));
        }
    }
    for (int64_t b = 0; b < nb; b++)
        for (int r = 0; r < TR; r++) {
            tv->s[b * TR + r] = rs[r * nb + b];
            tv->m[b * TR + r] = rm[r * nb + b];
        }
#if QUANT_HAVE_X86
    if (isa >= QUANT_ISA_AVX512 && quant_isa_available(QUANT_ISA_AVX512)) {
        interleave_avx512(u, K, (uint32_t *)tv->q);
        return 1;
    }
#endif
    (void)isa;
    interleave_scalar(u, K, (uint32_t *)tv->q);
    return 1;
}

/* ---- kernels ---------------------------------------------------------- */

static void kern_scalar(const tile_view *tv, const qgemm_act *a, int rows, float *y, int64_t ldy) {
    const int bs = tv->bs, G = bs / 4;
    const int64_t K = a->K;
    for (int64_t t = 0; t < a->n; t++) {
        const int8_t *aq = a->q + t * K;
        const float *ms = bs == 32 ? a->ms32 + t * (K / 32) : a->ms16 + t * (K / 16);
        const float *d32 = a->d32 + t * (K / 32);
        for (int r = 0; r < rows; r++) {
            float acc = 0;
            for (int64_t b = 0; b < tv->nb; b++) {
                int32_t isum = 0;
                for (int g = 0; g < G; g++) {
                    const uint8_t *w = tv->q + ((b * G + g) * TR + r) * 4;
                    const int8_t *x = aq + b * bs + 4 * g;
                    for (int k = 0; k < 4; k++) isum += (int32_t)w[k] * x[k];
                }
                const float da = d32[b * bs / 32];
                acc += (float)isum * (tv->s[b * TR + r] * da);
                acc += tv->m[b * TR + r] * ms[b];
            }
            y[t * ldy + r] = acc;
        }
    }
}

#if QUANT_HAVE_X86
#define QG_TARGET __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

static inline QG_TARGET __attribute__((always_inline)) void
mk_avx512(const tile_view *tv, const qgemm_act *a, int64_t t0, const int NT, const int BS, float *y, int64_t ldy,
          __mmask16 mask) {
    const int G = BS / 4;
    const int64_t K = a->K;
    __m512 f[8];
    const int8_t *aq[8];
    const float *ms[8], *d32[8];
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) {
        f[t] = _mm512_setzero_ps();
        aq[t] = a->q + (t0 + t) * K;
        ms[t] = BS == 32 ? a->ms32 + (t0 + t) * (K / 32) : a->ms16 + (t0 + t) * (K / 16);
        d32[t] = a->d32 + (t0 + t) * (K / 32);
    }
    const uint8_t *wq = tv->q;
    for (int64_t b = 0; b < tv->nb; b++) {
        __m512i acc[8];
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) acc[t] = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int g = 0; g < G; g++) {
            const __m512i w = _mm512_load_si512((const void *)(wq + g * 64));
#pragma GCC unroll 8
            for (int t = 0; t < NT; t++) {
                int32_t x;
                memcpy(&x, aq[t] + b * BS + 4 * g, 4);
                acc[t] = _mm512_dpbusd_epi32(acc[t], w, _mm512_set1_epi32(x));
            }
        }
        wq += G * 64;
        const __m512 s = _mm512_load_ps(tv->s + b * TR), m = _mm512_load_ps(tv->m + b * TR);
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            const __m512 sd = _mm512_mul_ps(s, _mm512_set1_ps(d32[t][b * BS / 32]));
            f[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[t]), sd, f[t]);
            f[t] = _mm512_fmadd_ps(m, _mm512_set1_ps(ms[t][b]), f[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) _mm512_mask_storeu_ps(y + (t0 + t) * ldy, mask, f[t]);
}

#define QG_MK(NT, BS)                                                                                  \
    static QG_TARGET void mk_##NT##_##BS(const tile_view *tv, const qgemm_act *a, int64_t t0, float *y, \
                                         int64_t ldy, __mmask16 mask) {                               \
        mk_avx512(tv, a, t0, NT, BS, y, ldy, mask);                                                   \
    }
QG_MK(8, 32)
QG_MK(4, 32)
QG_MK(1, 32)
QG_MK(8, 16)
QG_MK(4, 16)
QG_MK(1, 16)

static void kern_avx512(const tile_view *tv, const qgemm_act *a, int rows, float *y, int64_t ldy) {
    const __mmask16 mask = (__mmask16)(rows >= 16 ? 0xFFFF : (1u << rows) - 1);
    int64_t t = 0;
    if (tv->bs == 32) {
        for (; t + 8 <= a->n; t += 8) mk_8_32(tv, a, t, y, ldy, mask);
        for (; t + 4 <= a->n; t += 4) mk_4_32(tv, a, t, y, ldy, mask);
        for (; t < a->n; t++) mk_1_32(tv, a, t, y, ldy, mask);
    } else {
        for (; t + 8 <= a->n; t += 8) mk_8_16(tv, a, t, y, ldy, mask);
        for (; t + 4 <= a->n; t += 4) mk_4_16(tv, a, t, y, ldy, mask);
        for (; t < a->n; t++) mk_1_16(tv, a, t, y, ldy, mask);
    }
}
#endif

void qgemm_tile(uint32_t wtype, const uint8_t *w_rows, uint64_t row_bytes, int rows, const qgemm_act *a,
                float *y, int64_t ldy, void *tile, int isa) {
    tile_view tv;
    if (!pack(wtype, w_rows, row_bytes, rows, a->K, tile, &tv, isa)) return;
#if QUANT_HAVE_X86
    if (isa >= QUANT_ISA_AVX512 && quant_isa_available(QUANT_ISA_AVX512)) {
        kern_avx512(&tv, a, rows, y, ldy);
        return;
    }
#endif
    (void)isa;
    kern_scalar(&tv, a, rows, y, ldy);
}
