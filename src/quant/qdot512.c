/*
 * AVX512-VNNI decode dot products for Q4_0, Q8_0, Q4_K and Q6_K; see
 * qdot512.h.
 */
#include <string.h>

#include "qdot512.h"
#include "blocks.h"
#include "half.h"
#include "kernels.h"
#include "llmserve.h"

/* Q4_0: groups of 4 blocks (128 values): lo[64] hi[64] scale[16] corr[16]. */
#define G4_BYTES 256
/* Q8_0: groups of 2 blocks (64 values): a[64] scale[16] corr[16]. */
#define G8_BYTES 192
/* Q4_K: per 256-value super-block, the Q8_K values in the order the
 * weights' nibble vectors hold them (sub-blocks 0|2, 1|3, 4|6, 5|7), the
 * 8 sub-block sums (int16, for the mins) and the float scale. */
#define K4P_BYTES 320
#define K4P_SUMS 256
#define K4P_D 272
/* Q6_K: per super-block the Q8_K values in their own order (the weights'
 * vectors hold elements in order too), the 16 group sums (int16, for the
 * weights' zero point 32) and the float scale. */
#define K6P_BYTES 320
#define K6P_SUMS 256
#define K6P_D 288
/* Q4_0 rows are read with a software prefetch this far ahead: measured
 * (one core, 37 MB matrix) 16 GB/s without, 25 GB/s with 2 KiB; the
 * hardware prefetcher alone keeps up with the Q8_0 kernel (28 GB/s), where
 * a prefetch made it slower. Two rows per step were slower from memory
 * than one (8.7 vs 16 GB/s), so one row at a time. */
#define QD_PREFETCH 2048
/* The K-quant rows ask for every line of their super-block 4 KiB ahead
 * into L2 (as the F16 rows and Q4_0 tiles do). Two threads from memory,
 * alternating with the kernels without it, against a load-only loop
 * beside them, 6 and 5 runs: Q4_K 84-95% -> 94-103%, Q6_K 80-95% ->
 * 96-101% of it (8 KiB ahead about the same, 2 KiB less). With the earlier
 * 70-instruction Q4_K kernel the same read-ahead had gained nothing: that
 * kernel was computing, not waiting for memory. Prefetches 64 bytes
 * apart from the block's start, and the next block starting less than 64
 * bytes after the last, reach every line of the stream. */
#define QD_K_AHEAD 4096

int qdot512_supported(uint32_t wtype, int64_t K) {
#if QUANT_HAVE_X86
    if (quant_isa_best() < QUANT_ISA_AVX512) return 0;
    if (wtype == LLMS_TYPE_Q4_0) return K % 128 == 0;
    if (wtype == LLMS_TYPE_Q8_0) return K % 64 == 0;
    if (wtype == LLMS_TYPE_Q4_K || wtype == LLMS_TYPE_Q6_K) return K % 256 == 0;
#else
    (void)wtype;
    (void)K;
#endif
    return 0;
}

size_t qdot512_act_bytes(uint32_t wtype, int64_t K) {
    if (wtype == LLMS_TYPE_Q4_K) return (size_t)(K / 256) * K4P_BYTES;
    if (wtype == LLMS_TYPE_Q6_K) return (size_t)(K / 256) * K6P_BYTES;
    return wtype == LLMS_TYPE_Q4_0 ? (size_t)(K / 128) * G4_BYTES : (size_t)(K / 64) * G8_BYTES;
}

void qdot512_prepare(uint32_t wtype, int64_t K, const void *act, void *prepared) {
    const blk_q8_0 *a = act;
    uint8_t *p = prepared;
    if (wtype == LLMS_TYPE_Q4_K) {
        const blk_q8_K *y = act;
        /* Vector v's two halves are sub-blocks lo[v] and lo[v] + 2. */
        static const int lo[4] = {0, 1, 4, 5};
        for (int64_t s = 0; s < K / 256; s++, p += K4P_BYTES) {
            memset(p, 0, K4P_BYTES);
            for (int v = 0; v < 4; v++) {
                memcpy(p + 64 * v, y[s].qs + 32 * lo[v], 32);
                memcpy(p + 64 * v + 32, y[s].qs + 32 * (lo[v] + 2), 32);
            }
            int16_t sums[8];
            for (int j = 0; j < 8; j++) sums[j] = (int16_t)(y[s].bsums[2 * j] + y[s].bsums[2 * j + 1]);
            memcpy(p + K4P_SUMS, sums, sizeof sums);
            memcpy(p + K4P_D, &y[s].d, sizeof(float));
        }
        return;
    }
    if (wtype == LLMS_TYPE_Q6_K) {
        const blk_q8_K *y = act;
        for (int64_t s = 0; s < K / 256; s++, p += K6P_BYTES) {
            memset(p, 0, K6P_BYTES);
            memcpy(p, y[s].qs, 256);
            memcpy(p + K6P_SUMS, y[s].bsums, 32);
            memcpy(p + K6P_D, &y[s].d, sizeof(float));
        }
        return;
    }
    if (wtype == LLMS_TYPE_Q4_0) {
        for (int64_t g = 0; g < K / 128; g++, p += G4_BYTES) {
            float *sc = (float *)(p + 128);
            int32_t *corr = (int32_t *)(p + 192);
            for (int k = 0; k < 4; k++) {
                const blk_q8_0 *b = &a[4 * g + k];
                memcpy(p + 16 * k, b->qs, 16);
                memcpy(p + 64 + 16 * k, b->qs + 16, 16);
                int sum = 0;
                for (int j = 0; j < 32; j++) sum += b->qs[j];
                const float d = half_to_f32(b->d);
                #pragma GCC unroll 8
                for (int j = 0; j < 4; j++) {
                    sc[4 * k + j] = d;
                    corr[4 * k + j] = j == 0 ? -8 * sum : 0;
                }
            }
        }
    } else {
        for (int64_t g = 0; g < K / 64; g++, p += G8_BYTES) {
            float *sc = (float *)(p + 64);
            int32_t *corr = (int32_t *)(p + 128);
            for (int k = 0; k < 2; k++) {
                const blk_q8_0 *b = &a[2 * g + k];
                memcpy(p + 32 * k, b->qs, 32);
                int sum = 0;
                for (int j = 0; j < 32; j++) sum += b->qs[j];
                const float d = half_to_f32(b->d);
                #pragma GCC unroll 8
                for (int j = 0; j < 8; j++) {
                    sc[8 * k + j] = d;
                    corr[8 * k + j] = j == 0 ? -128 * sum : 0;
                }
            }
        }
    }
}

#if QUANT_HAVE_X86
#include <immintrin.h>

#define QD_TARGET __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

static inline QD_TARGET float hsum512(__m512 v) { return _mm512_reduce_add_ps(v); }

/* Asks for the lines of a `bytes`-long block QD_K_AHEAD ahead, into L2. */
static inline __attribute__((always_inline)) void qd_k_read_ahead(const uint8_t *block, const int bytes) {
    #pragma GCC unroll 4
    for (int l = 0; l < bytes; l += 64) _mm_prefetch((const char *)block + QD_K_AHEAD + l, _MM_HINT_T1);
}

/* One Q4_0 row against NT tokens' prepared activations (NT a constant
 * after inlining, 1..QD_MAX_TOKENS): each 72-byte group of four blocks is
 * split into nibbles once and then used for every token, which is what
 * makes small batches (a few decoding sessions, a short prompt tail)
 * cheaper per token than one token at a time. Each token's sum is formed
 * by exactly the same operations in the same order whatever NT is, so a
 * token's result does not depend on the others in the batch. */
static inline __attribute__((always_inline)) QD_TARGET void
q4_row(int64_t ng, const uint8_t *p0, const uint8_t *pa, size_t ps, float *out, int64_t ldo, const int NT) {
    /* Words 0, 9, 18, 27 of a 72-byte group are the four block scales. */
    const __m512i widx = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 27, 27, 27, 27, 18, 18,
                                          18, 18, 9, 9, 9, 9, 0, 0, 0, 0);
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512 s[QD_MAX_TOKENS];
    #pragma GCC unroll 8
    for (int t = 0; t < NT; t++) s[t] = _mm512_setzero_ps();
    const uint8_t *q = pa;
    for (int64_t g = 0; g < ng; g++, p0 += 72, q += G4_BYTES) {
#if QD_PREFETCH
        _mm_prefetch((const char *)(p0 + QD_PREFETCH), _MM_HINT_T0);
#endif
        __m512i v0 = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(p0 + 2)));
        v0 = _mm512_inserti32x4(v0, _mm_loadu_si128((const __m128i *)(p0 + 20)), 1);
        v0 = _mm512_inserti32x4(v0, _mm_loadu_si128((const __m128i *)(p0 + 38)), 2);
        v0 = _mm512_inserti32x4(v0, _mm_loadu_si128((const __m128i *)(p0 + 56)), 3);
        const __m512i lo = _mm512_and_si512(v0, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v0, 4), m4);
        const __m512 d0 = _mm512_cvtph_ps(
            _mm512_castsi512_si256(_mm512_permutexvar_epi16(widx, _mm512_loadu_si512((const void *)p0))));
        #pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            const uint8_t *qt = q + (size_t)t * ps;
            __m512i a0 = _mm512_dpbusd_epi32(_mm512_load_si512((const void *)(qt + 192)), lo,
                                             _mm512_load_si512((const void *)qt));
            a0 = _mm512_dpbusd_epi32(a0, hi, _mm512_load_si512((const void *)(qt + 64)));
            s[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a0), _mm512_mul_ps(d0, _mm512_load_ps((const float *)(qt + 128))),
                                   s[t]);
        }
    }
    #pragma GCC unroll 8
    for (int t = 0; t < NT; t++) out[t * ldo] = hsum512(s[t]);
}

static inline QD_TARGET __m512i q8_pair(const uint8_t *p) {
    /* qs of two 34-byte blocks, flipped to unsigned (q + 128). */
    __m512i v = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(p + 2)));
    v = _mm512_inserti64x4(v, _mm256_loadu_si256((const __m256i *)(p + 36)), 1);
    return _mm512_xor_si512(v, _mm512_set1_epi8((char)0x80));
}

/* One Q8_0 row against NT tokens, as q4_row: two accumulators per token
 * (even and odd pairs of blocks), each formed the same way whatever NT. */
static inline __attribute__((always_inline)) QD_TARGET void
q8_row(int64_t ng, const uint8_t *p0, const uint8_t *pa, size_t ps, float *out, int64_t ldo, const int NT) {
    /* Words 0 and 17 of a 68-byte pair are the two block scales. */
    const __m512i widx = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 17, 17, 17, 17, 17, 17,
                                          17, 17, 0, 0, 0, 0, 0, 0, 0, 0);
    __m512 s0[QD_MAX_TOKENS], s1[QD_MAX_TOKENS];
    #pragma GCC unroll 8
    for (int t = 0; t < NT; t++) s0[t] = s1[t] = _mm512_setzero_ps();
    const uint8_t *q = pa;
    int64_t g = 0;
    /* Scales are read 64 bytes at a time: stop the wide reads 64 bytes
     * before the row's end (the last pair reads them narrowly). */
    for (; g + 1 < ng; g += 2, p0 += 136, q += 2 * G8_BYTES) {
        const __m512i w0 = q8_pair(p0), w1 = q8_pair(p0 + 68);
        const __m512 d0 = _mm512_cvtph_ps(
            _mm512_castsi512_si256(_mm512_permutexvar_epi16(widx, _mm512_loadu_si512((const void *)p0))));
        const __m512 d1 = _mm512_cvtph_ps(
            _mm512_castsi512_si256(_mm512_permutexvar_epi16(widx, _mm512_loadu_si512((const void *)(p0 + 68)))));
        #pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            const uint8_t *qt = q + (size_t)t * ps;
            __m512i a0 = _mm512_dpbusd_epi32(_mm512_load_si512((const void *)(qt + 128)), w0,
                                             _mm512_load_si512((const void *)qt));
            __m512i a1 = _mm512_dpbusd_epi32(_mm512_load_si512((const void *)(qt + G8_BYTES + 128)), w1,
                                             _mm512_load_si512((const void *)(qt + G8_BYTES)));
            s0[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a0), _mm512_mul_ps(d0, _mm512_load_ps((const float *)(qt + 64))),
                                    s0[t]);
            s1[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a1),
                                    _mm512_mul_ps(d1, _mm512_load_ps((const float *)(qt + G8_BYTES + 64))), s1[t]);
        }
    }
    for (; g < ng; g++, p0 += 68, q += G8_BYTES) {
        const __m512i w0 = q8_pair(p0);
        uint16_t h0, h1;
        memcpy(&h0, p0, 2);
        memcpy(&h1, p0 + 34, 2);
        const __m512 d0 = _mm512_castsi512_ps(_mm512_inserti64x4(_mm512_castps_si512(_mm512_set1_ps(half_to_f32(h0))),
                                                                 _mm256_castps_si256(_mm256_set1_ps(half_to_f32(h1))), 1));
        #pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            const uint8_t *qt = q + (size_t)t * ps;
            __m512i a0 = _mm512_dpbusd_epi32(_mm512_load_si512((const void *)(qt + 128)), w0,
                                             _mm512_load_si512((const void *)qt));
            s0[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a0), _mm512_mul_ps(d0, _mm512_load_ps((const float *)(qt + 64))),
                                    s0[t]);
        }
    }
    #pragma GCC unroll 8
    for (int t = 0; t < NT; t++) out[t * ldo] = hsum512(_mm512_add_ps(s0[t], s1[t]));
}

/* One Q4_K row against NT tokens, as q4_row. A 64-byte load of the
 * nibbles holds sub-blocks 0 and 2 (low nibbles) and 1 and 3 (high), so
 * each super-block is two loads and four nibble splits, then per token
 * four vpmaddubsw and one vpmaddwd plus three vpdpwssd with the 6-bit
 * scales spread over the matching lanes, which sum the four vectors as
 * they scale them. Integer sums exactly as the reference (products of a
 * nibble and an int8 fit vpmaddubsw's int16), then one float step per
 * super-block.
 *
 * The kernel is bound by its instruction count, not by any one port: the
 * earlier form (scale field unpacked with ~20 scalar operations, four
 * vpermw for the scale vectors, vpmaddwd + vpaddd per vector, d and dmin
 * converted one by one) ran 70 instructions a super-block. Now the scale
 * field is unpacked in one 16-byte vector (two vpshufb gather the bytes
 * each half needs, a variable shift and masks place the 2-bit tops), the
 * scale vectors are vpshufb of its broadcast, and d and dmin convert
 * together: 41 instructions. One thread, 2048-wide rows, alternating
 * with the earlier form: from cache 1.21x (28-40 against 23-33 GB/s),
 * from memory 1.07x; two threads from memory, against a load-only loop
 * beside them: 85-94% of it against 84-94%, about 1 point more on average
 * (6 alternating runs). Results are bit-identical to the earlier form's. */
static inline __attribute__((always_inline)) QD_TARGET void
k4_row(int64_t ns, const uint8_t *p0, const uint8_t *pa, size_t ps, float *out, int64_t ldo, const int NT) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    /* Scale field s[0..11] -> bytes [sc0-3 | sc4-7 | mn0-3 | mn4-7]:
     * sc0-3 = s0-3 & 63, sc4-7 = s8-11 & 15 | (s0-3 >> 6) << 4,
     * mn0-3 = s4-7 & 63, mn4-7 = s8-11 >> 4 | (s4-7 >> 6) << 4. */
    const __m128i c_lo = _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11);
    const __m128i c_hi = _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7);
    const __m128i sh_lo = _mm_setr_epi32(0, 0, 0, 4);
    const __m128i m_lo = _mm_setr_epi32(0x3F3F3F3F, 0x0F0F0F0F, 0x3F3F3F3F, 0x0F0F0F0F);
    const __m128i m30 = _mm_set1_epi8(0x30);
    /* The 8 mins (bytes 8-15) as int16, for the activations' sub-block sums. */
    const __m128i c_mn = _mm_setr_epi8(8, -1, 9, -1, 10, -1, 11, -1, 12, -1, 13, -1, 14, -1, 15, -1);
    /* Scale vector of nibble vector v: its words 0-15 are sub-block a,
     * 16-31 sub-block b (128-bit lanes 0-1 and 2-3), each the scale byte
     * zero-extended. Vectors hold sub-blocks 0|2, 1|3, 4|6, 5|7. */
#define K4_W8(k) k, -1, k, -1, k, -1, k, -1, k, -1, k, -1, k, -1, k, -1
    static const int8_t k4_sidx[4][64] __attribute__((aligned(64))) = {
        {K4_W8(0), K4_W8(0), K4_W8(2), K4_W8(2)},
        {K4_W8(1), K4_W8(1), K4_W8(3), K4_W8(3)},
        {K4_W8(4), K4_W8(4), K4_W8(6), K4_W8(6)},
        {K4_W8(5), K4_W8(5), K4_W8(7), K4_W8(7)},
    };
#undef K4_W8
    __m512i sidx[4];
    #pragma GCC unroll 4
    for (int v = 0; v < 4; v++) sidx[v] = _mm512_load_si512((const void *)k4_sidx[v]);
    __m512 s[QD_MAX_TOKENS];
    __m128 m[QD_MAX_TOKENS];
    #pragma GCC unroll 8
    for (int t = 0; t < NT; t++) {
        s[t] = _mm512_setzero_ps();
        m[t] = _mm_setzero_ps();
    }
    const uint8_t *q = pa;
    for (int64_t i = 0; i < ns; i++, p0 += sizeof(blk_q4_K), q += K4P_BYTES) {
        const blk_q4_K *x = (const blk_q4_K *)(const void *)p0;
        qd_k_read_ahead(p0, (int)sizeof(blk_q4_K));
        /* 16 bytes from the scale field on: its 12 and 4 of qs (unused). */
        const __m128i raw = _mm_loadu_si128((const __m128i *)(const void *)x->scales);
        const __m128i lo = _mm_and_si128(_mm_srlv_epi32(_mm_shuffle_epi8(raw, c_lo), sh_lo), m_lo);
        const __m128i hi = _mm_and_si128(_mm_srli_epi32(_mm_shuffle_epi8(raw, c_hi), 2), m30);
        const __m128i scmn = _mm_or_si128(lo, hi);
        const __m512i scmn4 = _mm512_broadcast_i32x4(scmn);
        __m512i scv[4];
        #pragma GCC unroll 4
        for (int v = 0; v < 4; v++) scv[v] = _mm512_shuffle_epi8(scmn4, sidx[v]);
        const __m128i mins = _mm_shuffle_epi8(scmn, c_mn);
        const __m512i q0 = _mm512_loadu_si512((const void *)x->qs), q1 = _mm512_loadu_si512((const void *)(x->qs + 64));
        const __m512i l0 = _mm512_and_si512(q0, m4), h0 = _mm512_and_si512(_mm512_srli_epi16(q0, 4), m4);
        const __m512i l1 = _mm512_and_si512(q1, m4), h1 = _mm512_and_si512(_mm512_srli_epi16(q1, 4), m4);
        uint32_t dword;
        memcpy(&dword, p0, sizeof dword); /* d, dmin: the block's first 4 bytes */
        const __m128 xdm = _mm_cvtph_ps(_mm_cvtsi32_si128((int)dword));
        #pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            const uint8_t *qt = q + (size_t)t * ps;
            __m512i isum = _mm512_madd_epi16(_mm512_maddubs_epi16(l0, _mm512_load_si512((const void *)qt)), scv[0]);
            isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(h0, _mm512_load_si512((const void *)(qt + 64))),
                                       scv[1]);
            isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(l1, _mm512_load_si512((const void *)(qt + 128))),
                                       scv[2]);
            isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(h1, _mm512_load_si512((const void *)(qt + 192))),
                                       scv[3]);
            /* [d, dmin] x the activations' scale */
            const __m128 dm = _mm_mul_ps(xdm, _mm_broadcast_ss((const float *)(const void *)(qt + K4P_D)));
            s[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_broadcastss_ps(dm), s[t]);
            const __m128i msum = _mm_madd_epi16(mins, _mm_loadu_si128((const __m128i *)(qt + K4P_SUMS)));
            m[t] = _mm_fmadd_ps(_mm_cvtepi32_ps(msum), _mm_permute_ps(dm, 0x55), m[t]);
        }
    }
    #pragma GCC unroll 8
    for (int t = 0; t < NT; t++) {
        __m128 h = _mm_add_ps(m[t], _mm_movehl_ps(m[t], m[t]));
        h = _mm_add_ss(h, _mm_movehdup_ps(h));
        out[t * ldo] = hsum512(s[t]) - _mm_cvtss_f32(h);
    }
}

/* One Q6_K row against NT tokens. Per 128-value half of a super-block, one
 * 64-byte load of ql holds elements 0-63 in its low nibbles and 64-127 in
 * its high ones, in order; the 32 bytes of qh, loaded into both halves of a
 * vector, give their top two bits with one variable word shift each
 * (bits 0-1 / 2-3 / 4-5 / 6-7 of qh[l] for elements l / l + 32 / l + 64 /
 * l + 96, moved to bits 4-5; the 0x30 mask drops what a word shift carries
 * over from the neighbouring byte). Then vpmaddubsw (values 0-63 times
 * int8 fit int16) and vpmaddwd with each 16-value group's scale spread over
 * its 8 words, the zero point 32 taken off once per super-block through
 * the activations' group sums. Integer sums exactly as the reference
 * (dot_q6_K), one float step per super-block. One thread, 2048-wide rows:
 * 28.6-31.2 GB/s from cache and 20.2-20.4 from memory, against 14.8-17.2
 * and 14.8-16.8 for the 256-bit kernel, which was compute-bound under what
 * a core has to read (tinyllama-1.1b Q4_K_M reads a quarter of its bytes
 * as Q6_K: decode side by side 74.2 / 80.9 / 81.8 / 83.3% of the
 * bandwidth limit before, 84.3 / 83.8 / 83.2 / 84.8% after). */
static inline __attribute__((always_inline)) QD_TARGET void
k6_row(int64_t ns, const uint8_t *p0, const uint8_t *pa, size_t ps, float *out, int64_t ldo, const int NT) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    /* word shifts: lower 16 words (elements l) / upper 16 (elements l + 32) */
    const __m512i shl = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i shr = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    /* Word k of 64-value vector v covers values 2k, 2k + 1: group 4v + k / 8. */
#define K6_G8(g) g, g, g, g, g, g, g, g
    static const int16_t k6_gidx[4][32] __attribute__((aligned(64))) = {
        {K6_G8(0), K6_G8(1), K6_G8(2), K6_G8(3)},
        {K6_G8(4), K6_G8(5), K6_G8(6), K6_G8(7)},
        {K6_G8(8), K6_G8(9), K6_G8(10), K6_G8(11)},
        {K6_G8(12), K6_G8(13), K6_G8(14), K6_G8(15)},
    };
#undef K6_G8
    __m512i gidx[4];
    #pragma GCC unroll 4
    for (int v = 0; v < 4; v++) gidx[v] = _mm512_load_si512((const void *)k6_gidx[v]);
    __m512 s[QD_MAX_TOKENS];
    #pragma GCC unroll 8
    for (int t = 0; t < NT; t++) s[t] = _mm512_setzero_ps();
    const uint8_t *q = pa;
    for (int64_t i = 0; i < ns; i++, p0 += sizeof(blk_q6_K), q += K6P_BYTES) {
        const blk_q6_K *x = (const blk_q6_K *)(const void *)p0;
        qd_k_read_ahead(p0, (int)sizeof(blk_q6_K));
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)x->scales));
        const __m512i sc5 = _mm512_castsi256_si512(sc16);
        __m512i w[4], scv[4];
        #pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)(x->qh + 32 * h)));
            const __m512i ql = _mm512_loadu_si512((const void *)(x->ql + 64 * h));
            w[2 * h] = _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_and_si512(_mm512_sllv_epi16(qh, shl), m30));
            w[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                           _mm512_and_si512(_mm512_srlv_epi16(qh, shr), m30));
            scv[2 * h] = _mm512_permutexvar_epi16(gidx[2 * h], sc5);
            scv[2 * h + 1] = _mm512_permutexvar_epi16(gidx[2 * h + 1], sc5);
        }
        const float xd = _cvtsh_ss(x->d);
        #pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            const uint8_t *qt = q + (size_t)t * ps;
            __m512i isum = _mm512_madd_epi16(_mm512_maddubs_epi16(w[0], _mm512_load_si512((const void *)qt)), scv[0]);
            #pragma GCC unroll 3
            for (int v = 1; v < 4; v++)
                isum = _mm512_add_epi32(
                    isum, _mm512_madd_epi16(_mm512_maddubs_epi16(w[v], _mm512_load_si512((const void *)(qt + 64 * v))),
                                            scv[v]));
            /* 32 x sum over groups of scale x group sum, in 8 lanes */
            const __m256i zp = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)(qt + K6P_SUMS)));
            isum = _mm512_sub_epi32(isum, _mm512_castsi256_si512(_mm256_slli_epi32(zp, 5)));
            float yd;
            memcpy(&yd, qt + K6P_D, sizeof yd);
            s[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(yd * xd), s[t]);
        }
    }
    #pragma GCC unroll 8
    for (int t = 0; t < NT; t++) out[t * ldo] = hsum512(s[t]);
}

/* Rows outer, tokens inner: a row is read from memory once and stays in
 * L1 for the later token groups. */
#define QD_ROWS_FN(name, rowfn, group)                                                                        \
    static QD_TARGET void name(int64_t K, const uint8_t *w, uint64_t rb, int64_t rows, const uint8_t *pa,      \
                               size_t ps, int64_t n_tok, float *out, int64_t ldo) {                            \
        const int64_t ng = K / (group);                                                                        \
        for (int64_t r = 0; r < rows; r++) {                                                                   \
            const uint8_t *p0 = w + (uint64_t)r * rb;                                                          \
            for (int64_t t0 = 0; t0 < n_tok; t0 += QD_MAX_TOKENS) {                                            \
                const uint8_t *q = pa + (size_t)t0 * ps;                                                       \
                float *o = out + t0 * ldo + r;                                                                 \
                switch (n_tok - t0 < QD_MAX_TOKENS ? n_tok - t0 : QD_MAX_TOKENS) {                             \
                case 1: rowfn(ng, p0, q, ps, o, ldo, 1); break;                                                \
                case 2: rowfn(ng, p0, q, ps, o, ldo, 2); break;                                                \
                case 3: rowfn(ng, p0, q, ps, o, ldo, 3); break;                                                \
                case 4: rowfn(ng, p0, q, ps, o, ldo, 4); break;                                                \
                case 5: rowfn(ng, p0, q, ps, o, ldo, 5); break;                                                \
                case 6: rowfn(ng, p0, q, ps, o, ldo, 6); break;                                                \
                case 7: rowfn(ng, p0, q, ps, o, ldo, 7); break;                                                \
                default: rowfn(ng, p0, q, ps, o, ldo, 8); break;                                               \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
    }
QD_ROWS_FN(rows_q4_0, q4_row, 128)
QD_ROWS_FN(rows_q8_0, q8_row, 64)
QD_ROWS_FN(rows_q4_K, k4_row, 256)
QD_ROWS_FN(rows_q6_K, k6_row, 256)
#endif

void qdot512_rows_n(uint32_t wtype, int64_t K, const uint8_t *w, uint64_t row_bytes, int64_t rows,
                     const void *prepared, size_t prep_stride, int64_t n_tok, float *out, int64_t ldo) {
#if QUANT_HAVE_X86
    if (wtype == LLMS_TYPE_Q4_0) rows_q4_0(K, w, row_bytes, rows, prepared, prep_stride, n_tok, out, ldo);
    else if (wtype == LLMS_TYPE_Q8_0) rows_q8_0(K, w, row_bytes, rows, prepared, prep_stride, n_tok, out, ldo);
    else if (wtype == LLMS_TYPE_Q4_K) rows_q4_K(K, w, row_bytes, rows, prepared, prep_stride, n_tok, out, ldo);
    else if (wtype == LLMS_TYPE_Q6_K) rows_q6_K(K, w, row_bytes, rows, prepared, prep_stride, n_tok, out, ldo);
#else
    (void)wtype; (void)K; (void)w; (void)row_bytes; (void)rows; (void)prepared; (void)prep_stride; (void)n_tok;
    (void)out; (void)ldo;
#endif
}

void qdot512_rows(uint32_t wtype, int64_t K, const uint8_t *w, uint64_t row_bytes, int64_t rows,
                  const void *prepared, float *out) {
    qdot512_rows_n(wtype, K, w, row_bytes, rows, prepared, 0, 1, out, 0);
}
