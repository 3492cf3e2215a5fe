/*
 * 16-row interleaved Q4_0 / Q8_0 tiles and their AVX512-VNNI kernel; see
 * qpack.h.
 */
#include <math.h>
#include <string.h>

#include "qpack.h"
#include "blocks.h"
#include "half.h"
#include "kernels.h"
#include "quant.h"
#include "llmserve.h"

#if QUANT_HAVE_X86
#include <immintrin.h>
#endif

#define SC_BYTES 32   /* 16 fp16 scales per block */

/* Value bytes of one 32-column block of a tile. */
static size_t block_bytes(uint32_t wtype) { return wtype == LLMS_TYPE_Q8_0 ? 512 : 256; }
/* The scales at the head of a Q4_0 / Q8_0 tile, rounded up so that the
 * values start 64-byte aligned. */
static inline size_t sc_header_bytes(int64_t nb) { return ((size_t)nb * SC_BYTES + 63) / 64 * 64; }

/* Q4_K super-block (256 columns) of a tile: 8 blocks of nibbles, then
 * sc [8][16] u8, mn [4][16][2] int16 (pairs of blocks 2p, 2p + 1 per row,
 * for vpdpwssd), d [16] and dmin [16] fp16. */
#define K4_NIB 2048
#define K4_SC 128
#define K4_MN 256
#define K4_D 64
#define K4_BYTES (K4_NIB + K4_SC + K4_MN + K4_D)

/* Q6_K super-block of a tile: per 32-column block 4 nibble vectors (low 4
 * bits, as Q4_0) and 2 vectors of high 2-bit pairs (vector h, byte 4r + c,
 * bits 2m..2m+1: value 4(4h + m) + c of the block), then sc [16][16] int8
 * (16-column groups x rows) and d [16] fp16: the size of the Q6_K data. */
#define K6_BLOCK 384
#define K6_SC 256
#define K6_D 32
#define K6_BYTES (8 * K6_BLOCK + K6_SC + K6_D)

int qpack_supported(uint32_t wtype, int64_t K) {
#if QUANT_HAVE_X86
    if (quant_isa_best() < QUANT_ISA_AVX512 || K <= 0) return 0;
    if (wtype == LLMS_TYPE_Q4_0 || wtype == LLMS_TYPE_Q8_0) return K % 32 == 0;
    return (wtype == LLMS_TYPE_Q4_K || wtype == LLMS_TYPE_Q6_K) && K % 256 == 0;
#else
    (void)wtype;
    (void)K;
    return 0;
#endif
}

size_t qpack_tile_bytes(uint32_t wtype, int64_t K) {
    size_t b = wtype == LLMS_TYPE_Q4_K   ? (size_t)(K / 256) * K4_BYTES
               : wtype == LLMS_TYPE_Q6_K ? (size_t)(K / 256) * K6_BYTES
                                         : sc_header_bytes(K / 32) + (size_t)(K / 32) * block_bytes(wtype);
    return (b + 63) / 64 * 64;  /* every tile starts 64-byte aligned */
}

size_t qpack_bytes(uint32_t wtype, int64_t rows, int64_t K) {
    return (size_t)((rows + QPACK_ROWS - 1) / QPACK_ROWS) * qpack_tile_bytes(wtype, K);
}

static void pack_q4_K_row(const blk_q4_K *blk, int64_t n_super, int r, uint8_t *tile) {
    for (int64_t s = 0; s < n_super; s++) {
        uint8_t *sb = tile + (size_t)s * K4_BYTES;
        uint8_t sc[8], mn[8];
        k4_unpack_scales(blk[s].scales, sc, mn);
        for (int j = 0; j < 8; j++) {
            uint8_t u[32];
            for (int l = 0; l < 32; l++) u[l] = (blk[s].qs[32 * (j / 2) + l] >> (4 * (j & 1))) & 0x0F;
            uint8_t *v = sb + 256 * j;
            for (int i = 0; i < 4; i++)
                for (int c = 0; c < 4; c++) v[64 * i + 4 * r + c] = (uint8_t)(u[8 * i + c] | u[8 * i + 4 + c] << 4);
            sb[K4_NIB + 16 * j + r] = sc[j];
            int16_t m = mn[j];
            memcpy(sb + K4_NIB + K4_SC + 64 * (j / 2) + 4 * r + 2 * (j & 1), &m, 2);
        }
        uint16_t *d = (uint16_t *)(sb + K4_NIB + K4_SC + K4_MN);
        d[r] = blk[s].d;
        d[16 + r] = blk[s].dmin;
    }
}

static void pack_q6_K_row(const blk_q6_K *blk, int64_t n_super, int r, uint8_t *tile) {
    for (int64_t s = 0; s < n_super; s++) {
        uint8_t *sb = tile + (size_t)s * K6_BYTES;
        uint8_t u[256];
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = blk[s].ql + 64 * h, *qh = blk[s].qh + 32 * h;
            uint8_t *uu = u + 128 * h;
            for (int l = 0; l < 32; l++) {
                uu[l] = (uint8_t)((ql[l] & 0xF) | (qh[l] & 3) << 4);
                uu[l + 32] = (uint8_t)((ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4);
                uu[l + 64] = (uint8_t)((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4);
                uu[l + 96] = (uint8_t)((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4);
            }
        }
        for (int b = 0; b < 8; b++) {
            const uint8_t *ub = u + 32 * b;
            uint8_t *v = sb + K6_BLOCK * b;
            for (int c = 0; c < 4; c++) {
                for (int i = 0; i < 4; i++)
                    v[64 * i + 4 * r + c] = (uint8_t)((ub[8 * i + c] & 0xF) | (ub[8 * i + 4 + c] & 0xF) << 4);
                for (int h = 0; h < 2; h++) {
                    uint8_t hb = 0;
                    for (int m = 0; m < 4; m++) hb |= (uint8_t)((ub[4 * (4 * h + m) + c] >> 4) << (2 * m));
                    v[256 + 64 * h + 4 * r + c] = hb;
                }
            }
        }
        for (int g = 0; g < 16; g++) sb[8 * K6_BLOCK + 16 * g + r] = (uint8_t)blk[s].scales[g];
        memcpy(sb + 8 * K6_BLOCK + K6_SC + 2 * r, &blk[s].d, 2);
    }
}

void qpack_pack(uint32_t wtype, const uint8_t *w, uint64_t row_bytes, int64_t rows, int64_t K, int64_t tile0,
                int64_t tile1, uint8_t *packed) {
    if (wtype == LLMS_TYPE_Q4_K || wtype == LLMS_TYPE_Q6_K) {
        const size_t tb = qpack_tile_bytes(wtype, K);
        for (int64_t ti = tile0; ti < tile1; ti++) {
            uint8_t *tile = packed + (size_t)ti * tb;
            memset(tile, 0, tb);  /* padding rows: zero scales */
            for (int r = 0; r < QPACK_ROWS && ti * QPACK_ROWS + r < rows; r++) {
                const uint8_t *row = w + (uint64_t)(ti * QPACK_ROWS + r) * row_bytes;
                if (wtype == LLMS_TYPE_Q4_K) pack_q4_K_row((const blk_q4_K *)row, K / 256, r, tile);
                else pack_q6_K_row((const blk_q6_K *)row, K / 256, r, tile);
            }
        }
        return;
    }
    const int64_t nb = K / 32;
    const size_t tb = qpack_tile_bytes(wtype, K), bb = block_bytes(wtype);
    for (int64_t ti = tile0; ti < tile1; ti++) {
        uint8_t *tile = packed + (size_t)ti * tb;
        memset(tile, 0, tb);
        uint16_t *sc = (uint16_t *)tile;
        uint8_t *vals = tile + sc_header_bytes(nb);
        for (int r = 0; r < QPACK_ROWS; r++) {
            const int64_t row = ti * QPACK_ROWS + r;
            if (row >= rows) break;  /* padding: zero values and scales */
            const uint8_t *src = w + (uint64_t)row * row_bytes;
            for (int64_t b = 0; b < nb; b++) {
                uint8_t *v = vals + (size_t)b * bb;
                if (wtype == LLMS_TYPE_Q4_0) {
                    const blk_q4_0 *blk = (const blk_q4_0 *)src + b;
                    uint8_t u[32];
                    for (int j = 0; j < 16; j++) {
                        u[j] = blk->qs[j] & 0x0F;
                        u[j + 16] = blk->qs[j] >> 4;
                    }
                    for (int i = 0; i < 4; i++)
                        for (int c = 0; c < 4; c++)
                            v[64 * i + 4 * r + c] = (uint8_t)(u[8 * i + c] | u[8 * i + 4 + c] << 4);
                    sc[b * QPACK_ROWS + r] = blk->d;
                } else {
                    const blk_q8_0 *blk = (const blk_q8_0 *)src + b;
                    for (int i = 0; i < 8; i++)
                        for (int c = 0; c < 4; c++) v[64 * i + 4 * r + c] = (uint8_t)(blk->qs[4 * i + c] + 128);
                    sc[b * QPACK_ROWS + r] = blk->d;
                }
            }
        }
    }
}

/* q [n][K], then d [n][K/32], corr [n][K/16], bsum [n][K/32] (int16). */
size_t qpack_act_bytes(int64_t n, int64_t K) {
    size_t q = ((size_t)n * (size_t)K + 63) / 64 * 64;
    size_t s = ((size_t)n * (size_t)(K / 32) * 4 + 63) / 64 * 64;
    return q + 4 * s;
}

void qpack_act_init(qpack_act *a, void *buf, int64_t n, int64_t K) {
    size_t q = ((size_t)n * (size_t)K + 63) / 64 * 64;
    size_t s = ((size_t)n * (size_t)(K / 32) * 4 + 63) / 64 * 64;
    a->n = n;
    a->K = K;
    a->q = buf;
    a->d = (float *)((uint8_t *)buf + q);
    a->corr = (int32_t *)((uint8_t *)buf + q + s);
    a->bsum = (int16_t *)((uint8_t *)buf + q + 3 * s);
}

#if QUANT_HAVE_X86
/* Token t's Q8_0 values, scales and corrections in one pass, bit-identical
 * to quant_quantize_row(LLMS_TYPE_Q8_0) and the loop below: the block
 * maximum of |x| ignoring NaN, the scale rounded to half by the same
 * integer code (half_from_f32), x * (1 / scale) clamped to +-127 in float
 * (NaN to -127: maxps returns its second operand) and rounded by cvtps2dq
 * in the current rounding mode, as lrintf does. Decode quantizes every
 * product's input on the calling thread while the pool waits: through the
 * Q8_0 quantizer and a scalar pass per block this took 1.18-1.20 us for
 * 2048 values (one thread, 20,000 rounds, 3 runs), about 0.8% of a
 * tinyllama Q4_0 token over its 89 products; this way 0.80-0.85 us. What
 * remains is each block's scalar chain (maximum, the scale's half rounding
 * and reciprocal, the sum). */
__attribute__((target("avx512f,avx512bw,avx512vl"))) static void act_q8_0_512(qpack_act *a, int64_t t,
                                                                            const float *x, int zero) {
    const int64_t nb = a->K / 32;
    int8_t *q = a->q + t * a->K;
    float *d = a->d + t * nb;
    int32_t *corr = a->corr + t * nb;
    const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF);
    const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    for (int64_t b = 0; b < nb; b++, x += 32) {
        const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        __m512 a0 = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v0), abs_mask));
        __m512 a1 = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v1), abs_mask));
        a0 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a0, a0, _CMP_ORD_Q), a0);
        a1 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a1, a1, _CMP_ORD_Q), a1);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1));
        const float dr = half_to_f32(half_from_f32(amax / 127.0f));
        const __m512 id = _mm512_set1_ps(dr != 0.0f && isfinite(dr) ? 1.0f / dr : 0.0f);
        const __m512i i0 = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v0, id), lo), hi));
        const __m512i i1 = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v1, id), lo), hi));
        _mm_storeu_si128((__m128i *)(q + 32 * b), _mm512_cvtepi32_epi8(i0));
        _mm_storeu_si128((__m128i *)(q + 32 * b + 16), _mm512_cvtepi32_epi8(i1));
        d[b] = dr;
        corr[b] = -zero * _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
    }
}
#endif

void qpack_act_quantize(uint32_t wtype, qpack_act *a, int64_t t, const float *x) {
    const int64_t nb = a->K / 32;
    if (wtype == LLMS_TYPE_Q6_K) {
        /* Through the Q8_K quantizer, as the reference dot product; the
         * weights' zero point (32) per 16-column group. */
        blk_q8_K blk;
        for (int64_t s = 0; s < a->K / 256; s++) {
            quant_quantize_row(LLMS_TYPE_Q8_K, x + s * 256, &blk, 256);
            memcpy(a->q + t * a->K + s * 256, blk.qs, 256);
            a->d[t * nb + s] = blk.d;
            for (int g = 0; g < 16; g++) a->corr[t * (a->K / 16) + s * 16 + g] = -32 * blk.bsums[g];
        }
        return;
    }
    if (wtype == LLMS_TYPE_Q4_K) {
        /* Through the Q8_K quantizer, as the reference dot product. */
        blk_q8_K blk;
        for (int64_t s = 0; s < a->K / 256; s++) {
            quant_quantize_row(LLMS_TYPE_Q8_K, x + s * 256, &blk, 256);
            memcpy(a->q + t * a->K + s * 256, blk.qs, 256);
            a->d[t * nb + s] = blk.d;
            for (int j = 0; j < 8; j++)
                a->bsum[t * nb + s * 8 + j] = (int16_t)(blk.bsums[2 * j] + blk.bsums[2 * j + 1]);
        }
        return;
    }
    const int zero = wtype == LLMS_TYPE_Q4_0 ? 8 : 128;
#if QUANT_HAVE_X86
    if (quant_isa_best() >= QUANT_ISA_AVX512) {
        act_q8_0_512(a, t, x, zero);
        return;
    }
#endif
    /* Through the Q8_0 quantizer, so the values and scales are exactly
     * those of the reference dot product. */
    blk_q8_0 blk[8];
    for (int64_t b0 = 0; b0 < nb; b0 += 8) {
        int64_t m = nb - b0 < 8 ? nb - b0 : 8;
        quant_quantize_row(LLMS_TYPE_Q8_0, x + b0 * 32, blk, m * 32);
        for (int64_t k = 0; k < m; k++) {
            const int64_t b = b0 + k;
            memcpy(a->q + t * a->K + b * 32, blk[k].qs, 32);
            int sum = 0;
            for (int j = 0; j < 32; j++) sum += blk[k].qs[j];
            a->d[t * nb + b] = half_to_f32(blk[k].d);
            a->corr[t * nb + b] = -zero * sum;
        }
    }
}

#if QUANT_HAVE_X86
#define QPACK_TARGET __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
/* Tokens per pass over a tile: NT float accumulators plus the 8 unpacked
 * weight vectors stay in the 32 vector registers. */
#define QPACK_MAX_TOKENS 8
/* Q4_0 / Q8_0 tiles take up to 16 tokens per pass (16 accumulators plus
 * the 8 weight vectors still fit the 32 registers): a short prompt tail
 * then streams each tile from memory once, with twice the work to hide
 * the stream behind. */
#define QPACK_MAX_TOKENS_Q 16
/* Read-ahead of the K-quants' tile stream (and Q8_0's for batches), to
 * L2, a fixed distance ahead of the values. It was Q4_0's too (measured
 * then, side by side: +10% decode over 2 KiB to L1; one thread from DRAM
 * 12 GB/s without read-ahead, 15-17 at 8 KiB, 17-20 at 32 KiB), until
 * Q4_0 moved to a cursor over the whole tile stream (QPACK_Q4_AHEAD),
 * which covers each tile's scales too. Further ahead gains no more and
 * wastes more at the end of each claimed range. */
#define QPACK_HINT _MM_HINT_T1
#define QPACK_PREFETCH 32768
/* Q4_0's read-ahead (every batch size) and Q8_0's (one token): a cursor
 * that walks the tile stream this far ahead of the block in use, block b
 * asking for its share of the tile's bytes (values and scales) that far
 * on. The tiles of a claimed range are contiguous, and with the scales at
 * the head of each tile (qpack.h) they are one forward stream, so the
 * cursor asks for every line once, scales included. Measured with
 * llms-decode-parts (tinyllama-1.1b, 2 threads, medians of 16 tokens,
 * alternating rounds), the products as a fraction of the probe:
 * - Q8_0, which had read nothing ahead for one token (with the scales at
 *   the end of each tile, 32 bytes a block 32 KiB past the values, a
 *   fixed distance ahead had gained nothing): 87.5-92.7% (mean 91.0%,
 *   8 rounds) before, 92.8-98.1% (94.6%) with the scales first and 4 KiB
 *   ahead; 2 and 8 KiB and a whole tile ahead no better. A pass over the
 *   same tiles with loads alone read 88-92% with the scales at the end and
 *   95-98% with them first: the layout had held the kernel back.
 * - Q4_0, which read the next tile's share (a whole tile ahead; earlier
 *   measured better than half a tile, two tiles, or a distance ahead of
 *   the values, which skipped the scales): 85.7-90.9% (mean 88.5%, 6
 *   rounds) against 90.0-96.9% (92.0%) 8 KiB ahead; 4 KiB 86.4-96.2%
 *   (90.9%), 12 KiB 89.6-91.5%.
 * To L2 (T1) where a tile is read more than once (batches of more tokens
 * than one pass takes): the stream, asked into L1 with T0, competes with
 * the lines still to be read (Q4_0 decode at 80.7% of the bandwidth limit
 * to L1, 85.3% to L2). Where each tile is read once (decode), as
 * non-temporal (NTA): AMD's optimization guides describe such a line as
 * going to L1 and, evicted, not on to L2 and the L3 (which the L2's
 * evictions fill), so the weight stream would stop pushing everything
 * else out of them and stop costing those fills (the likely reason; not
 * measured apart from the speed). Decoding tinyllama-1.1b (2 threads, modes alternating token
 * by token, medians of 24-40 tokens, two alternations each), ms a token
 * T1 -> NTA: Q4_0 15.87 / 15.86 -> 15.13 / 15.24 at 512 positions and
 * 15.72 / 15.82 -> 15.05 / 15.14 at a short context (the products 4-5%
 * faster, attention unchanged); Q8_0 28.86 / 29.00 -> 27.82 / 28.12. The
 * probe's own loop reads no faster with NTA (medians of 30 slices: 42.99
 * -> 42.44 and 44.99 -> 45.98 GB/s), so the limit stands. (The K-quants'
 * row read-ahead in qdot512.c measured slower with NTA and stays T1; the
 * float rows' in kernels_x86.inc take it.) */
#define QPACK_Q4_AHEAD 8192
#define QPACK_Q8_AHEAD 4096

/* Asks for block b's share (`share` bytes) of the tile stream `ahead`
 * bytes past the tile's start, non-temporal where the tile is read `once`
 * (above). A share is 288 (Q4_0) or 544 (Q8_0) bytes, so it starts at 0 or
 * 32 bytes into a line and (share + 63) / 64 prefetches reach all its
 * lines. */
static inline __attribute__((always_inline)) void tile_read_ahead(const uint8_t *tile, int64_t b, size_t share,
                                                                   size_t ahead, int once) {
    const char *p = (const char *)tile + ahead + (size_t)b * share;
    if (once) {
#pragma GCC unroll 9
        for (size_t o = 0; o < share; o += 64) _mm_prefetch(p + o, _MM_HINT_NTA);
    } else {
#pragma GCC unroll 9
        for (size_t o = 0; o < share; o += 64) _mm_prefetch(p + o, QPACK_HINT);
    }
}

/* The 8 weight vectors of a 32-column block stored as 4 vectors of nibble
 * pairs (Q4_K, the low bits of Q6_K), prefetching QPACK_PREFETCH ahead as
 * it goes. (Q4_0 unpacks with unpack_nibbles_x16 and reads ahead with
 * tile_read_ahead: tile_nt.) */
static inline __attribute__((always_inline)) QPACK_TARGET void unpack_nibbles(const uint8_t *v, __m512i w[8]) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        _mm_prefetch((const char *)(v + QPACK_PREFETCH + 64 * i), QPACK_HINT);
        const __m512i p = _mm512_loadu_si512((const void *)(v + 64 * i));
        w[2 * i] = _mm512_and_si512(p, m4);
        w[2 * i + 1] = _mm512_and_si512(_mm512_srli_epi16(p, 4), m4);
    }
}

/* acc += w . broadcast(q[0..3]) (16 rows x 4 columns): vpdpbusd with its
 * broadcast folded in (EVEX m32bcst), one micro-op where the intrinsics
 * give a vpbroadcastd and a vpdpbusd. Fewer micro-ops per weight byte is
 * what lets one core keep more of the stream in flight: its reorder
 * window then spans more bytes. (may_alias: q is int8 data.) */
typedef int32_t __attribute__((may_alias)) qpack_i32_alias;
static inline __attribute__((always_inline)) QPACK_TARGET __m512i dpbusd_bcst(__m512i acc, __m512i w,
                                                                             const int8_t *q) {
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*(const qpack_i32_alias *)(const void *)q));
    return acc;
}

/* init + sum over j of w[j] . broadcast(q[4j..4j+3]) (16 rows x 32 columns) in
 * four independent chains: one chain of 8 vpdpbusd is latency-bound
 * (about 5 cycles each), which made single-token decode compute-bound.
 * Integer sums, so the split does not change the result. */
static inline __attribute__((always_inline)) QPACK_TARGET __m512i dot32(const __m512i w[8], const int8_t *q,
                                                                       __m512i init) {
    __m512i c[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        c[j] = dpbusd_bcst(j == 0 ? init : _mm512_setzero_si512(), w[j], q + 4 * j);
        c[j] = dpbusd_bcst(c[j], w[4 + j], q + 16 + 4 * j);
    }
    return _mm512_add_epi32(_mm512_add_epi32(c[0], c[1]), _mm512_add_epi32(c[2], c[3]));
}

/* Q4_0's block: the nibbles of each 64-byte vector i of pairs are used in
 * place, w[2i] = low nibbles and w[2i + 1] = high nibbles times 16 (p &
 * 0xF0, no shift), the two kinds summed in separate chains and the high
 * sum divided by 16 once (exact: every term is a multiple of 16): 8
 * vector operations a block to unpack instead of 12, and 2 to combine
 * instead of 3. With dpbusd_bcst, about 35 micro-ops a block instead of
 * 47; measured side by side (tinyllama-1.1b, 2 threads, short context):
 * Q4_0 decode 78.7 / 81.5 / 79.9% of the bandwidth limit before, 82.7 /
 * 81.7 / 82.2% after; Q8_0 (dpbusd_bcst alone) 84.4 / 82.2 / 83.6% ->
 * 86.6 / 87.5 / 86.2%. */
static inline __attribute__((always_inline)) QPACK_TARGET void unpack_nibbles_x16(const uint8_t *v, __m512i w[8]) {
    const __m512i lo = _mm512_set1_epi8(0x0F), hi = _mm512_set1_epi8((char)0xF0);
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        const __m512i p = _mm512_loadu_si512((const void *)(v + 64 * i));
        w[2 * i] = _mm512_and_si512(p, lo);
        w[2 * i + 1] = _mm512_and_si512(p, hi);
    }
}

static inline __attribute__((always_inline)) QPACK_TARGET __m512i dot32_x16(const __m512i w[8], const int8_t *q,
                                                                           __m512i init) {
    __m512i lo0 = init, lo1 = _mm512_setzero_si512(), hi0 = _mm512_setzero_si512(), hi1 = _mm512_setzero_si512();
    lo0 = dpbusd_bcst(lo0, w[0], q + 0);
    hi0 = dpbusd_bcst(hi0, w[1], q + 4);
    lo1 = dpbusd_bcst(lo1, w[2], q + 8);
    hi1 = dpbusd_bcst(hi1, w[3], q + 12);
    lo0 = dpbusd_bcst(lo0, w[4], q + 16);
    hi0 = dpbusd_bcst(hi0, w[5], q + 20);
    lo1 = dpbusd_bcst(lo1, w[6], q + 24);
    hi1 = dpbusd_bcst(hi1, w[7], q + 28);
    return _mm512_add_epi32(_mm512_add_epi32(lo0, lo1), _mm512_srai_epi32(_mm512_add_epi32(hi0, hi1), 4));
}

/* One tile against NT tokens (NT and Q4 constants after inlining). Loops
 * are unrolled by pragma: GCC at -O2 otherwise keeps the weight vectors
 * and accumulators in memory (measured 2.4x slower). */
static inline __attribute__((always_inline)) QPACK_TARGET void
tile_nt(const uint8_t *tile, int64_t nb, const qpack_act *a, int64_t t0, float *y, int64_t ldy, __mmask16 mask,
        int once, const int Q4, const int NT) {
    const size_t bb = Q4 ? 256 : 512;
    const uint16_t *sc = (const uint16_t *)tile;
    const uint8_t *vals = tile + sc_header_bytes(nb);
    const int64_t K = a->K;
    __m512 f[QPACK_MAX_TOKENS_Q];
#pragma GCC unroll 16
    for (int t = 0; t < NT; t++) f[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *v = vals + (size_t)b * bb;
        __m512i w[8];
        if (Q4) {
            tile_read_ahead(tile, b, bb + SC_BYTES, QPACK_Q4_AHEAD, once);
            unpack_nibbles_x16(v, w);
        } else {
            /* One token: the cursor over the tile stream; batches, with
             * more arithmetic per byte, read ahead as the K-quants do. */
            if (NT == 1) tile_read_ahead(tile, b, bb + SC_BYTES, QPACK_Q8_AHEAD, once);
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) {
                if (NT > 1) _mm_prefetch((const char *)(v + QPACK_PREFETCH + 64 * i), QPACK_HINT);
                w[i] = _mm512_loadu_si512((const void *)(v + 64 * i));
            }
        }
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sc + b * QPACK_ROWS)));
#pragma GCC unroll 16
        for (int t = 0; t < NT; t++) {
            const int8_t *q = a->q + (t0 + t) * K + b * 32;
            const __m512i corr = _mm512_set1_epi32(a->corr[(t0 + t) * nb + b]);
            const __m512i acc = Q4 ? dot32_x16(w, q, corr) : dot32(w, q, corr);
            f[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), _mm512_mul_ps(dw, _mm512_set1_ps(a->d[(t0 + t) * nb + b])),
                                   f[t]);
        }
    }
#pragma GCC unroll 16
    for (int t = 0; t < NT; t++) _mm512_mask_storeu_ps(y + (t0 + t) * ldy, mask, f[t]);
}

/* Q4_K: w = d * sc * u - dmin * mn per 32-column block, sc and mn 6-bit.
 * Integer sums as in the reference (isum = sum sc * dot, msum = sum mn *
 * block sum of the activations) per super-block, then one float step. */
static inline __attribute__((always_inline)) QPACK_TARGET void
tile_k4_nt(const uint8_t *tile, int64_t ns, const qpack_act *a, int64_t t0, float *y, int64_t ldy, __mmask16 mask,
           const int NT) {
    const int64_t K = a->K, nb = K / 32;
    __m512 f[QPACK_MAX_TOKENS];
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) f[t] = _mm512_setzero_ps();
    for (int64_t s = 0; s < ns; s++) {
        const uint8_t *sb = tile + (size_t)s * K4_BYTES;
        __m512i isum[QPACK_MAX_TOKENS];
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) isum[t] = _mm512_setzero_si512();
        for (int j = 0; j < 8; j++) {
            __m512i w[8];
            unpack_nibbles(sb + 256 * j, w);
            const __m512i sc = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(sb + K4_NIB + 16 * j)));
#pragma GCC unroll 8
            for (int t = 0; t < NT; t++) {
                const int8_t *q = a->q + (t0 + t) * K + s * 256 + j * 32;
                const __m512i acc = dot32(w, q, _mm512_setzero_si512());
                isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(acc, sc));
            }
        }
        const uint16_t *dd = (const uint16_t *)(sb + K4_NIB + K4_SC + K4_MN);
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)dd));
        const __m512 dmw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(dd + 16)));
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            const int16_t *bs = a->bsum + (t0 + t) * nb + s * 8;
            __m512i msum = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int p = 0; p < 4; p++) {
                int32_t pair;
                memcpy(&pair, bs + 2 * p, 4);
                msum = _mm512_dpwssd_epi32(msum, _mm512_loadu_si512((const void *)(sb + K4_NIB + K4_SC + 64 * p)),
                                           _mm512_set1_epi32(pair));
            }
            const __m512 r = _mm512_fmsub_ps(dw, _mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(dmw, _mm512_cvtepi32_ps(msum)));
            f[t] = _mm512_fmadd_ps(_mm512_set1_ps(a->d[(t0 + t) * nb + s]), r, f[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) _mm512_mask_storeu_ps(y + (t0 + t) * ldy, mask, f[t]);
}

/* Q6_K: w = d * sc * (u - 32) per 16-column group, u 6-bit, sc int8;
 * isum = sum sc * (dot(u, a) - 32 * group sum of a) in integers as the
 * reference, the zero point as each group accumulator's start. */
static inline __attribute__((always_inline)) QPACK_TARGET void
tile_k6_nt(const uint8_t *tile, int64_t ns, const qpack_act *a, int64_t t0, float *y, int64_t ldy, __mmask16 mask,
           const int NT) {
    const __m512i m30 = _mm512_set1_epi8(0x30);
    const int64_t K = a->K, nb = K / 32, ng = K / 16;
    __m512 f[QPACK_MAX_TOKENS];
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) f[t] = _mm512_setzero_ps();
    for (int64_t s = 0; s < ns; s++) {
        const uint8_t *sb = tile + (size_t)s * K6_BYTES;
        __m512i isum[QPACK_MAX_TOKENS];
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) isum[t] = _mm512_setzero_si512();
        for (int b = 0; b < 8; b++) {
            const uint8_t *v = sb + K6_BLOCK * b;
            _mm_prefetch((const char *)(v + QPACK_PREFETCH + 256), QPACK_HINT);
            _mm_prefetch((const char *)(v + QPACK_PREFETCH + 320), QPACK_HINT);
            const __m512i h0 = _mm512_loadu_si512((const void *)(v + 256));
            const __m512i h1 = _mm512_loadu_si512((const void *)(v + 320));
            __m512i w[8];
            unpack_nibbles(v, w);
            /* High bits of vector j = 4h + m: bits 2m..2m+1 of h_h, moved
             * to bits 4..5 (16-bit shifts; the 0x30 mask keeps each byte's
             * own bits). */
            w[0] = _mm512_or_si512(w[0], _mm512_and_si512(_mm512_slli_epi16(h0, 4), m30));
            w[1] = _mm512_or_si512(w[1], _mm512_and_si512(_mm512_slli_epi16(h0, 2), m30));
            w[2] = _mm512_or_si512(w[2], _mm512_and_si512(h0, m30));
            w[3] = _mm512_or_si512(w[3], _mm512_and_si512(_mm512_srli_epi16(h0, 2), m30));
            w[4] = _mm512_or_si512(w[4], _mm512_and_si512(_mm512_slli_epi16(h1, 4), m30));
            w[5] = _mm512_or_si512(w[5], _mm512_and_si512(_mm512_slli_epi16(h1, 2), m30));
            w[6] = _mm512_or_si512(w[6], _mm512_and_si512(h1, m30));
            w[7] = _mm512_or_si512(w[7], _mm512_and_si512(_mm512_srli_epi16(h1, 2), m30));
            const int8_t *scp = (const int8_t *)(sb + 8 * K6_BLOCK) + 32 * b;
            const __m512i sc0 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)scp));
            const __m512i sc1 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(scp + 16)));
#pragma GCC unroll 8
            for (int t = 0; t < NT; t++) {
                const int8_t *q = a->q + (t0 + t) * K + s * 256 + b * 32;
                const int32_t *corr = a->corr + (t0 + t) * ng + s * 16 + 2 * b;
                /* Two chains per 16-column group (see dot32). */
                __m512i g0 = _mm512_set1_epi32(corr[0]), g1 = _mm512_set1_epi32(corr[1]);
                __m512i h0 = _mm512_setzero_si512(), h1 = _mm512_setzero_si512();
#pragma GCC unroll 2
                for (int k = 0; k < 4; k += 2) {
                    g0 = dpbusd_bcst(g0, w[k], q + 4 * k);
                    h0 = dpbusd_bcst(h0, w[k + 1], q + 4 * k + 4);
                    g1 = dpbusd_bcst(g1, w[4 + k], q + 16 + 4 * k);
                    h1 = dpbusd_bcst(h1, w[4 + k + 1], q + 16 + 4 * k + 4);
                }
                g0 = _mm512_add_epi32(g0, h0);
                g1 = _mm512_add_epi32(g1, h1);
                isum[t] = _mm512_add_epi32(isum[t], _mm512_add_epi32(_mm512_mullo_epi32(g0, sc0),
                                                                     _mm512_mullo_epi32(g1, sc1)));
            }
        }
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sb + 8 * K6_BLOCK + K6_SC)));
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++)
            f[t] = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(a->d[(t0 + t) * nb + s])),
                                   _mm512_cvtepi32_ps(isum[t]), f[t]);
    }
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) _mm512_mask_storeu_ps(y + (t0 + t) * ldy, mask, f[t]);
}

#define TILE_CASES(Q4)                                                                                  \
    switch (a->n - t0 < QPACK_MAX_TOKENS_Q ? a->n - t0 : QPACK_MAX_TOKENS_Q) {                          \
    case 1: tile_nt(tile, nb, a, t0, yt, ldy, mask, once, Q4, 1); break;                                \
    case 2: tile_nt(tile, nb, a, t0, yt, ldy, mask, once, Q4, 2); break;                                \
    case 3: tile_nt(tile, nb, a, t0, yt, ldy, mask, once, Q4, 3); break;                                \
    case 4: tile_nt(tile, nb, a, t0, yt, ldy, mask, once, Q4, 4); break;                                \
    case 5: tile_nt(tile, nb, a, t0, yt, ldy, mask, once, Q4, 5); break;                                \
    case 6: tile_nt(tile, nb, a, t0, yt, ldy, mask, once, Q4, 6); break;                                \
    case 7: tile_nt(tile, nb, a, t0, yt, ldy, mask, once, Q4, 7); break;                                \
    case 8: tile_nt(tile, nb, a, t0, yt, ldy, mask, once, Q4, 8); break;                                \
    case 9: tile_nt(tile, nb, a, t0, yt, ldy, mask, once, Q4, 9); break;                                \
    case 10: tile_nt(tile, nb, a, t0, yt, ldy, mask, once, Q4, 10); break;                              \
    case 11: tile_nt(tile, nb, a, t0, yt, ldy, mask, once, Q4, 11); break;                              \
    case 12: tile_nt(tile, nb, a, t0, yt, ldy, mask, once, Q4, 12); break;                              \
    case 13: tile_nt(tile, nb, a, t0, yt, ldy, mask, once, Q4, 13); break;                              \
    case 14: tile_nt(tile, nb, a, t0, yt, ldy, mask, once, Q4, 14); break;                              \
    case 15: tile_nt(tile, nb, a, t0, yt, ldy, mask, once, Q4, 15); break;                              \
    default: tile_nt(tile, nb, a, t0, yt, ldy, mask, once, Q4, 16); break;                              \
    }

/* The K-quant kernels, NT a constant per case, 8 tokens at most. */
#define K_TILE_CASES(fn)                                                                                \
    switch (a->n - t0 < QPACK_MAX_TOKENS ? a->n - t0 : QPACK_MAX_TOKENS) {                              \
    case 1: fn(tile, K / 256, a, t0, yt, ldy, mask, 1); break;                                          \
    case 2: fn(tile, K / 256, a, t0, yt, ldy, mask, 2); break;                                          \
    case 3: fn(tile, K / 256, a, t0, yt, ldy, mask, 3); break;                                          \
    case 4: fn(tile, K / 256, a, t0, yt, ldy, mask, 4); break;                                          \
    case 5: fn(tile, K / 256, a, t0, yt, ldy, mask, 5); break;                                          \
    case 6: fn(tile, K / 256, a, t0, yt, ldy, mask, 6); break;                                          \
    case 7: fn(tile, K / 256, a, t0, yt, ldy, mask, 7); break;                                          \
    default: fn(tile, K / 256, a, t0, yt, ldy, mask, 8); break;                                         \
    }

static QPACK_TARGET void matmul_tiles(uint32_t wtype, const uint8_t *packed, int64_t rows, int64_t K,
                                      int64_t tile0, int64_t tile1, const qpack_act *a, float *y, int64_t ldy) {
    const int64_t nb = K / 32;
    const size_t tb = qpack_tile_bytes(wtype, K);
    /* Q4_0 / Q8_0: every token in one pass over each tile. */
    const int once = a->n <= QPACK_MAX_TOKENS_Q;
    for (int64_t ti = tile0; ti < tile1; ti++) {
        const uint8_t *tile = packed + (size_t)ti * tb;
        const int64_t r0 = ti * QPACK_ROWS;
        const int64_t nr = rows - r0 < QPACK_ROWS ? rows - r0 : QPACK_ROWS;
        const __mmask16 mask = (__mmask16)((1u << nr) - 1);
        float *yt = y + r0;
        const int64_t step = wtype == LLMS_TYPE_Q4_K || wtype == LLMS_TYPE_Q6_K ? QPACK_MAX_TOKENS : QPACK_MAX_TOKENS_Q;
        for (int64_t t0 = 0; t0 < a->n; t0 += step) {
            if (wtype == LLMS_TYPE_Q6_K) {
                K_TILE_CASES(tile_k6_nt)
            } else if (wtype == LLMS_TYPE_Q4_K) {
                K_TILE_CASES(tile_k4_nt)
            } else if (wtype == LLMS_TYPE_Q4_0) {
                TILE_CASES(1)
            } else {
                TILE_CASES(0)
            }
        }
    }
}
#endif

void qpack_matmul_tiles(uint32_t wtype, const uint8_t *packed, int64_t rows, int64_t K, int64_t tile0,
                        int64_t tile1, const qpack_act *a, float *y, int64_t ldy) {
#if QUANT_HAVE_X86
    matmul_tiles(wtype, packed, rows, K, tile0, tile1, a, y, ldy);
#else
    (void)wtype; (void)packed; (void)rows; (void)K; (void)tile0; (void)tile1; (void)a; (void)y; (void)ldy;
#endif
}
