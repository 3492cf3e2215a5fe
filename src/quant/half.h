/*
 * Inline IEEE binary16 and bfloat16 conversions, shared by the scalar
 * kernels (which convert one scale per block, so a call must stay cheap)
 * and by quant.c, which exports them as fp16_to_fp32() and friends.
 * Pure integer code: correct on every target and independent of the FPU
 * rounding mode, so results never depend on compiler flags.
 */
#ifndef LLMS_QUANT_HALF_H
#define LLMS_QUANT_HALF_H

#include <stdint.h>
#include <string.h>

static inline uint32_t half_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float half_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline float half_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t man = h & 0x3FFu;
    if (exp == 0x1F) /* inf; NaN keeps its payload and is made quiet, as
                      * vcvtph2ps does, so scalar and SIMD agree bit for bit */
        return half_bits_f32(sign | 0x7F800000u | (man << 13) | (man ? 0x400000u : 0u));
    if (exp == 0) {
        /* Zero or subnormal: man * 2^-24 is exact in binary32. */
        float v = (float)man * 0x1p-24f;
        return half_bits_f32(sign | half_f32_bits(v));
    }
    return half_bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

/* Round to nearest, ties to even, with gradual underflow and overflow to
 * infinity at 65520 (the midpoint above the largest half, 65504). */
static inline uint16_t half_from_f32(float f) {
    uint32_t u = half_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    u &= 0x7FFFFFFFu;
    if (u > 0x7F800000u) /* NaN: keep the top payload bits, force quiet */
        return (uint16_t)(sign | 0x7E00u | ((u >> 13) & 0x3FFu));
    if (u >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u);
    if (u >= 0x38800000u) {
        /* Normal half. Adding 0xFFF plus the kept LSB rounds to nearest
         * even; a carry out of the mantissa correctly bumps the exponent. */
        u += 0xFFFu + ((u >> 13) & 1u);
        return (uint16_t)(sign | ((u - 0x38000000u) >> 13));
    }
    uint32_t e = u >> 23;
    if (e < 102) return sign; /* below 2^-25 (the half-way point to 2^-24) */
    /* Subnormal half: result = value / 2^-24 = mant * 2^(e-126). */
    uint32_t mant = (u & 0x7FFFFFu) | 0x800000u;
    uint32_t shift = 126 - e; /* 14..24 */
    uint32_t q = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1u);
    uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (q & 1u))) q++;
    return (uint16_t)(sign | q); /* q may reach 0x400: the smallest normal */
}

static inline float bf16_to_f32_inline(uint16_t h) {
    return half_bits_f32((uint32_t)h << 16);
}

static inline uint16_t bf16_from_f32_inline(float f) {
    uint32_t u = half_f32_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) /* NaN: truncate, force quiet */
        return (uint16_t)((u >> 16) | 0x0040u);
    /* Ties to even; overflow past the largest bf16 correctly gives inf. */
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

#endif
