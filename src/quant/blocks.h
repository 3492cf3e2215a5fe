/*
 * Byte layouts of the GGUF/GGML quantized blocks, private to src/quant.
 *
 * The structs are packed (alignment 1) because weights come straight from
 * a memory-mapped file whose tensor offsets need not be aligned for a
 * uint16_t (general.alignment may be 1): member access then compiles to
 * unaligned loads, which are free on x86 and defined behaviour everywhere.
 * Scales are stored as raw IEEE half bits (uint16_t). Multi-byte fields are
 * little-endian, as GGUF is; big-endian hosts are rejected at build time.
 */
#ifndef LLMS_QUANT_BLOCKS_H
#define LLMS_QUANT_BLOCKS_H

#include <stdint.h>

#include "types.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "src/quant assumes a little-endian host (GGUF data is little-endian)"
#endif

#define QPACKED __attribute__((packed))

/* 32 weights: w = d * (q - 8), q in qs: low nibbles are elements 0..15,
 * high nibbles elements 16..31. */
typedef struct QPACKED { uint16_t d; uint8_t qs[QK4_0 / 2]; } blk_q4_0;
/* w = d * q + m. */
typedef struct QPACKED { uint16_t d, m; uint8_t qs[QK4_1 / 2]; } blk_q4_1;
/* 5th bit of element j is bit j of qh (read as little-endian uint32);
 * w = d * (q - 16). */
typedef struct QPACKED { uint16_t d; uint8_t qh[4]; uint8_t qs[QK5_0 / 2]; } blk_q5_0;
/* w = d * q + m. */
typedef struct QPACKED { uint16_t d, m; uint8_t qh[4]; uint8_t qs[QK5_1 / 2]; } blk_q5_1;
/* w = d * q. */
typedef struct QPACKED { uint16_t d; int8_t qs[QK8_0]; } blk_q8_0;
/* s = d * sum(qs). */
typedef struct QPACKED { uint16_t d, s; int8_t qs[QK8_1]; } blk_q8_1;

/* 16 groups of 16: scales[g] = 4-bit scale | 4-bit min << 4;
 * w = d * sc * q - dmin * mn with 2-bit q. Element 128h + 32j + l has its
 * q in bits 2j..2j+1 of qs[32h + l] and group 8h + 2j + l/16. */
typedef struct QPACKED {
    uint8_t scales[QK_K / 16];
    uint8_t qs[QK_K / 4];
    uint16_t d, dmin;
} blk_q2_K;

/* 16 groups of 16 with signed 6-bit scales (stored + 32, packed in 12
 * bytes); q = low 2 bits (as Q2_K) + 4 * high bit - 4, the high bit of
 * element 128h + 32j + l being bit 4h + j of hmask[l]. w = d * sc * q. */
typedef struct QPACKED {
    uint8_t hmask[QK_K / 8];
    uint8_t qs[QK_K / 4];
    uint8_t scales[12];
    uint16_t d;
} blk_q3_K;

/* 8 groups of 32 with 6-bit scale and min packed in 12 bytes;
 * w = d * sc * q - dmin * mn. Element 64p + l (l < 32) is the low nibble
 * of qs[32p + l], element 64p + 32 + l its high nibble. */
typedef struct QPACKED {
    uint16_t d, dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qs[QK_K / 2];
} blk_q4_K;

/* Q4_K plus a 5th bit: bit 2p of qh[l] for element 64p + l, bit 2p + 1
 * for element 64p + 32 + l. */
typedef struct QPACKED {
    uint16_t d, dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} blk_q5_K;

/* 16 groups of 16 with int8 scales; q in 0..63, w = d * sc * (q - 32).
 * Element 128h + 32g + l: low 4 bits from ql[64h + 32(g & 1) + l]
 * (low nibble for g < 2, high for g >= 2), high 2 bits from bits 2g..2g+1
 * of qh[32h + l]. */
typedef struct QPACKED {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    uint16_t d;
} blk_q6_K;

/* Activations for the K-quant dot products: float scale, int8 values and
 * the sum of each group of 16 values (for the mins / offsets). */
typedef struct QPACKED {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
} blk_q8_K;

_Static_assert(sizeof(blk_q4_0) == 18, "q4_0");
_Static_assert(sizeof(blk_q4_1) == 20, "q4_1");
_Static_assert(sizeof(blk_q5_0) == 22, "q5_0");
_Static_assert(sizeof(blk_q5_1) == 24, "q5_1");
_Static_assert(sizeof(blk_q8_0) == 34, "q8_0");
_Static_assert(sizeof(blk_q8_1) == 36, "q8_1");
_Static_assert(sizeof(blk_q2_K) == 84, "q2_K");
_Static_assert(sizeof(blk_q3_K) == 110, "q3_K");
_Static_assert(sizeof(blk_q4_K) == 144, "q4_K");
_Static_assert(sizeof(blk_q5_K) == 176, "q5_K");
_Static_assert(sizeof(blk_q6_K) == 210, "q6_K");
_Static_assert(sizeof(blk_q8_K) == 292, "q8_K");

static inline uint32_t blk_le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void blk_put_le32(uint8_t *p, uint32_t v) {
    for (int k = 0; k < 4; k++) p[k] = (uint8_t)(v >> (8 * k));
}

/* Unpacks the 12-byte Q4_K/Q5_K scale field into 8 scales and 8 mins, as
 * little-endian words of four bytes (sc[0] holds sc0..3, sc[1] sc4..7):
 * bytes 0..3 hold sc0..3 (low 6 bits) and the top 2 bits of sc4..7,
 * bytes 4..7 hold mn0..3 and the top 2 bits of mn4..7, bytes 8..11 hold the
 * low nibbles of sc4..7 (low half) and mn4..7 (high half). Word-wide
 * because the SIMD kernels need it once per super-block and can move
 * words into vector registers without a store-to-load round trip. */
static inline void k4_scale_words(const uint8_t s[K_SCALE_SIZE], uint32_t sc[2], uint32_t mn[2]) {
    const uint32_t a = blk_le32(s), b = blk_le32(s + 4), c = blk_le32(s + 8);
    sc[0] = a & 0x3F3F3F3Fu;
    mn[0] = b & 0x3F3F3F3Fu;
    sc[1] = (c & 0x0F0F0F0Fu) | ((a >> 2) & 0x30303030u);
    mn[1] = ((c >> 4) & 0x0F0F0F0Fu) | ((b >> 2) & 0x30303030u);
}

static inline void k4_unpack_scales(const uint8_t s[K_SCALE_SIZE], uint8_t sc[8], uint8_t mn[8]) {
    uint32_t ws[2], wm[2];
    k4_scale_words(s, ws, wm);
    for (int k = 0; k < 2; k++) {
        blk_put_le32(sc + 4 * k, ws[k]);
        blk_put_le32(mn + 4 * k, wm[k]);
    }
}

/* Unpacks the 12-byte Q3_K scale field into 16 scales stored + 32 (0..63),
 * as four little-endian words: the low nibble of scale i is in byte i
 * (i < 8) or the high nibble of byte i - 8; its top 2 bits are bits
 * 2(i/4).. of byte 8 + i % 4. */
static inline void k3_scale_words(const uint8_t s[12], uint32_t u[4]) {
    const uint32_t a = blk_le32(s), b = blk_le32(s + 4), c = blk_le32(s + 8);
    const uint32_t lo4 = 0x0F0F0F0Fu, hi2 = 0x03030303u;
    u[0] = (a & lo4) | (c & hi2) << 4;
    u[1] = (b & lo4) | ((c >> 2) & hi2) << 4;
    u[2] = ((a >> 4) & lo4) | ((c >> 4) & hi2) << 4;
    u[3] = ((b >> 4) & lo4) | ((c >> 6) & hi2) << 4;
}

/* The same as signed scales (-32..31). */
static inline void k3_unpack_scales(const uint8_t s[12], int8_t sc[16]) {
    uint32_t u[4];
    k3_scale_words(s, u);
    for (int i = 0; i < 16; i++) sc[i] = (int8_t)((int)((u[i / 4] >> (8 * (i % 4))) & 0xFF) - 32);
}

#endif
