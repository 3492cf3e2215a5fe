/*
 * Tests of src/quant: half/bfloat16 conversions, dequantization of every
 * weight type, quantization round trips and the dot-product kernels.
 *
 * Expected values are computed here, independently of the library: blocks
 * are packed byte by byte from chosen integer levels and scales following
 * the documented GGUF layouts, and the expected floats come from the
 * per-element formulas written fresh below (indexing by element rather
 * than by the library's loops). The half-precision reference rounds by
 * searching the ordered set of half values, not by bit manipulation.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "llmserve.h"
#include "quant/quant.h"
#include "quant/types.h"

/* ---- utilities ------------------------------------------------------------ */

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static void rng_seed(uint64_t s) { rng_state = s * 0x9E3779B97F4A7C15ULL + 1; }

static uint32_t rng_u32(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1DULL) >> 32);
}

static int rng_int(int lo, int hi) { return lo + (int)(rng_u32() % (uint32_t)(hi - lo + 1)); }

static double rng_unit(void) { return (rng_u32() + 0.5) / 4294967296.0; }

static float rng_gauss(void) {
    return (float)(sqrt(-2.0 * log(rng_unit())) * cos(6.283185307179586 * rng_unit()));
}

static uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v & 0xFF);
    p[1] = (uint8_t)(v >> 8);
}

static void put_f32(uint8_t *p, float f) {
    uint32_t u = f2u(f);
    for (int k = 0; k < 4; k++) p[k] = (uint8_t)(u >> (8 * k));
}

static size_t row_bytes(uint32_t type, int64_t n) {
    const type_traits *t = type_get(type);
    assert_non_null(t);
    assert_int_equal(n % t->block_size, 0);
    return (size_t)type_row_bytes(t, (uint64_t)n);
}

/* ---- independent half / bfloat16 references -------------------------------- */

/* Value of a half by the textbook formula. */
static double ref_half_value(uint16_t h) {
    const int sign = h >> 15, exp = (h >> 10) & 31, man = h & 1023;
    double v;
    if (exp == 31) v = man ? NAN : INFINITY;
    else if (exp == 0) v = ldexp((double)man, -24);
    else v = ldexp(1.0 + man / 1024.0, exp - 15);
    return sign ? -v : v;
}

/* Round to nearest half, ties to even, by binary search over the positive
 * finite halves (ordered like their bit patterns). Past 65504 the next
 * step would be 65536: halfway (65520) and above round to infinity. */
static uint16_t ref_f32_to_half(float f) {
    if (isnan(f)) return 0x7E00;
    const uint16_t sign = signbit(f) ? 0x8000 : 0;
    const double a = fabs((double)f);
    if (a >= 65520.0) return sign | 0x7C00;
    int lo = 0, hi = 0x7BFF; /* largest h with value <= a */
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (ref_half_value((uint16_t)mid) <= a) lo = mid;
        else hi = mid - 1;
    }
    const double below = ref_half_value((uint16_t)lo);
    const double above = lo == 0x7BFF ? 65536.0 : ref_half_value((uint16_t)(lo + 1));
    int r;
    if (a - below < above - a) r = lo;
    else if (a - below > above - a) r = lo + 1;
    else r = (lo & 1) ? lo + 1 : lo;
    return (uint16_t)(sign | r);
}

static double ref_bf16_value(uint16_t b) { return (double)u2f((uint32_t)b << 16); }

/* Nearest bfloat16 by comparing the two candidates around f in double. */
static uint16_t ref_f32_to_bf16(float f) {
    const uint32_t u = f2u(f);
    const uint16_t t = (uint16_t)(u >> 16); /* truncation: toward zero */
    if ((u & 0xFFFF) == 0) return t;
    const double a = fabs((double)f);
    const double lo = fabs(ref_bf16_value(t));
    const uint16_t t1 = (uint16_t)(t + 1); /* next away from zero (may be inf) */
    double hi = fabs(ref_bf16_value(t1));
    if (isinf(hi)) hi = ldexp(1.0, 128); /* where the next step would land */
    if (a - lo < hi - a) return t;
    if (a - lo > hi - a) return t1;
    return (t & 1) ? t1 : t;
}

/* ---- fp16 ------------------------------------------------------------------ */

static void test_fp16_known(void **state) {
    (void)state;
    assert_int_equal(fp32_to_fp16(1.0f), 0x3C00);
    assert_int_equal(fp32_to_fp16(-2.0f), 0xC000);
    assert_int_equal(fp32_to_fp16(65504.0f), 0x7BFF);
    assert_int_equal(fp32_to_fp16(0.0f), 0x0000);
    assert_int_equal(fp32_to_fp16(-0.0f), 0x8000);
    assert_int_equal(fp32_to_fp16(0.5f), 0x3800);
    assert_int_equal(fp32_to_fp16(0.1f), 0x2E66);
    assert_int_equal(fp32_to_fp16(1.0f / 3.0f), 0x3555);
    assert_int_equal(fp32_to_fp16(0x1p-24f), 0x0001); /* smallest subnormal */
    assert_int_equal(fp32_to_fp16(0x1p-14f), 0x0400); /* smallest normal */
    assert_int_equal(fp32_to_fp16(1023 * 0x1p-24f), 0x03FF);
    assert_int_equal(fp32_to_fp16(INFINITY), 0x7C00);
    assert_int_equal(fp32_to_fp16(-INFINITY), 0xFC00);
    assert_int_equal(fp32_to_fp16(1e9f), 0x7C00);
    assert_int_equal(fp32_to_fp16(-1e9f), 0xFC00);
    assert_int_equal(fp32_to_fp16(1e-10f), 0x0000);
    assert_int_equal(fp32_to_fp16(-1e-10f), 0x8000);
    uint16_t hn = fp32_to_fp16(NAN);
    assert_int_equal(hn & 0x7C00, 0x7C00);
    assert_true((hn & 0x03FF) != 0);

    assert_true(fp16_to_fp32(0x3C00) == 1.0f);
    assert_true(fp16_to_fp32(0xC000) == -2.0f);
    assert_true(fp16_to_fp32(0x7BFF) == 65504.0f);
    assert_true(fp16_to_fp32(0x0001) == 0x1p-24f);
    assert_true(fp16_to_fp32(0x03FF) == 1023 * 0x1p-24f);
    assert_true(fp16_to_fp32(0x0400) == 0x1p-14f);
    assert_true(fp16_to_fp32(0x3555) == 0.333251953125f);
    assert_true(fp16_to_fp32(0x8000) == 0.0f && signbit(fp16_to_fp32(0x8000)));
    assert_true(isinf(fp16_to_fp32(0x7C00)) && fp16_to_fp32(0x7C00) > 0);
    assert_true(isinf(fp16_to_fp32(0xFC00)) && fp16_to_fp32(0xFC00) < 0);
    assert_true(isnan(fp16_to_fp32(0x7E00)));
    assert_true(isnan(fp16_to_fp32(0x7C01))); /* signalling NaN stays NaN */
    assert_true(isnan(fp16_to_fp32(0xFE00)));
}

static void test_fp16_rounding_ties(void **state) {
    (void)state;
    /* 1 + 2^-11 is halfway between 1 and 1 + 2^-10: even is 0x3C00. */
    assert_int_equal(fp32_to_fp16(1.0f + 0x1p-11f), 0x3C00);
    /* 1 + 3 * 2^-11: halfway between 0x3C01 and 0x3C02: even is 0x3C02. */
    assert_int_equal(fp32_to_fp16(1.0f + 3 * 0x1p-11f), 0x3C02);
    assert_int_equal(fp32_to_fp16(1.0f + 0x1p-11f + 0x1p-20f), 0x3C01);
    assert_int_equal(fp32_to_fp16(1.0f + 0x1p-11f - 0x1p-20f), 0x3C00);
    /* Subnormal ties: 0.5, 1.5 and 2.5 units of 2^-24. */
    assert_int_equal(fp32_to_fp16(0x1p-25f), 0x0000);
    assert_int_equal(fp32_to_fp16(3 * 0x1p-25f), 0x0002);
    assert_int_equal(fp32_to_fp16(5 * 0x1p-25f), 0x0002);
    assert_int_equal(fp32_to_fp16(0x1p-25f * 1.0001f), 0x0001);
    /* Largest subnormal + half a unit: rounds up to the smallest normal. */
    assert_int_equal(fp32_to_fp16(1023.5f * 0x1p-24f), 0x0400);
    /* Overflow threshold: 65520 is the midpoint to 65536 and goes to inf. */
    assert_int_equal(fp32_to_fp16(65519.99f), 0x7BFF);
    assert_int_equal(fp32_to_fp16(65520.0f), 0x7C00);
    /* Mantissa carry into the exponent: 2047/1024 * 2^k rounds to 2^(k+1). */
    assert_int_equal(fp32_to_fp16(2.0f - 0x1p-12f), 0x4000);
}

static void test_fp16_exhaustive_decode(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        const float got = fp16_to_fp32((uint16_t)h);
        const double want = ref_half_value((uint16_t)h);
        if (isnan(want)) {
            assert_true(isnan(got));
            continue;
        }
        assert_true((double)got == want);
        assert_true((signbit(got) != 0) == ((h >> 15) != 0));
        /* and back, exactly */
        assert_int_equal(fp32_to_fp16(got), h);
    }
}

static void test_fp16_random_rounding(void **state) {
    (void)state;
    rng_seed(1);
    for (int i = 0; i < 200000; i++) {
        /* exponents around the half range, including subnormals and overflow */
        const uint32_t e = (uint32_t)rng_int(127 - 30, 127 + 17);
        const uint32_t u = (rng_u32() & 0x807FFFFFu) | e << 23;
        const float f = u2f(u);
        const uint16_t got = fp32_to_fp16(f), want = ref_f32_to_half(f);
        if (got != want) fail_msg("fp32_to_fp16(%a) = 0x%04x, want 0x%04x", (double)f, got, want);
    }
    /* float subnormals and zero-ish values */
    for (int i = 0; i < 1000; i++) {
        const float f = u2f(rng_u32() & 0x807FFFFFu);
        assert_int_equal(fp32_to_fp16(f), ref_f32_to_half(f));
    }
}

/* ---- bf16 ------------------------------------------------------------------ */

static void test_bf16_known(void **state) {
    (void)state;
    assert_int_equal(fp32_to_bf16(1.0f), 0x3F80);
    assert_int_equal(fp32_to_bf16(-2.0f), 0xC000);
    assert_int_equal(fp32_to_bf16(0.0f), 0x0000);
    assert_int_equal(fp32_to_bf16(-0.0f), 0x8000);
    assert_int_equal(fp32_to_bf16(u2f(0x3F808000)), 0x3F80); /* tie, even below */
    assert_int_equal(fp32_to_bf16(u2f(0x3F818000)), 0x3F82); /* tie, even above */
    assert_int_equal(fp32_to_bf16(u2f(0x3F808001)), 0x3F81);
    assert_int_equal(fp32_to_bf16(u2f(0x3F807FFF)), 0x3F80);
    assert_int_equal(fp32_to_bf16(INFINITY), 0x7F80);
    assert_int_equal(fp32_to_bf16(-INFINITY), 0xFF80);
    assert_int_equal(fp32_to_bf16(u2f(0x7F7FFFFF)), 0x7F80); /* FLT_MAX rounds to inf */
    assert_int_equal(fp32_to_bf16(u2f(0x00000001)), 0x0000); /* tiny subnormal */
    assert_int_equal(fp32_to_bf16(u2f(0x00018000)), 0x0002); /* subnormal tie */
    const uint16_t n = fp32_to_bf16(NAN);
    assert_int_equal(n & 0x7F80, 0x7F80);
    assert_true((n & 0x7F) != 0);
    /* A NaN whose payload sits only in the low half must stay NaN. */
    const uint16_t n2 = fp32_to_bf16(u2f(0x7F800001));
    assert_true((n2 & 0x7F80) == 0x7F80 && (n2 & 0x7F) != 0);

    assert_true(bf16_to_fp32(0x3F80) == 1.0f);
    assert_true(bf16_to_fp32(0xC000) == -2.0f);
    assert_true(bf16_to_fp32(0x4049) == 3.140625f);
    assert_true(isinf(bf16_to_fp32(0x7F80)));
    assert_true(isnan(bf16_to_fp32(0x7FC0)));
}

static void test_bf16_exhaustive_and_random(void **state) {
    (void)state;
    for (uint32_t b = 0; b < 65536; b++) {
        const float f = bf16_to_fp32((uint16_t)b);
        assert_int_equal(f2u(f), b << 16);
        if (!isnan(f)) assert_int_equal(fp32_to_bf16(f), b);
    }
    rng_seed(2);
    for (int i = 0; i < 200000; i++) {
        const float f = u2f(rng_u32());
        if (isnan(f)) continue;
        const uint16_t got = fp32_to_bf16(f), want = ref_f32_to_bf16(f);
        if (got != want) fail_msg("fp32_to_bf16(%a) = 0x%04x, want 0x%04x", (double)f, got, want);
    }
}

/* ---- hand-built blocks: packers and expected values ------------------------- */

/* Scales chosen as small binary fractions make every product exact, so
 * the comparison can be exact whatever the evaluation order. */
static float pick_pow2(int lo_exp, int hi_exp, int allow_negative) {
    float v = ldexpf(1.0f, rng_int(lo_exp, hi_exp)) * (float)rng_int(1, 3);
    return allow_negative && (rng_u32() & 1) ? -v : v;
}

typedef struct {
    uint32_t type;
    int64_t nblocks;
    uint8_t *bytes;
    float *want;
} built_row;

/* Builds nblocks random blocks of the type; want gets the expected floats. */
static void build_row(built_row *r, uint32_t type, int64_t nblocks) {
    const type_traits *t = type_get(type);
    assert_non_null(t);
    r->type = type;
    r->nblocks = nblocks;
    r->bytes = calloc((size_t)nblocks, t->type_size);
    r->want = calloc((size_t)(nblocks * t->block_size), sizeof(float));
    assert_non_null(r->bytes);
    assert_non_null(r->want);
    for (int64_t b = 0; b < nblocks; b++) {
        uint8_t *p = r->bytes + b * t->type_size;
        float *y = r->want + b * t->block_size;
        switch (type) {
        case LLMS_TYPE_Q4_0: {
            const float d = pick_pow2(-6, 2, 1);
            put16(p, fp32_to_fp16(d));
            for (int e = 0; e < 32; e++) {
                const int q = rng_int(0, 15);
                p[2 + e % 16] |= (uint8_t)(e < 16 ? q : q << 4);
                y[e] = (float)(q - 8) * d;
            }
            break;
        }
        case LLMS_TYPE_Q4_1: {
            const float d = pick_pow2(-6, 2, 0), m = pick_pow2(-6, 2, 1);
            put16(p, fp32_to_fp16(d));
            put16(p + 2, fp32_to_fp16(m));
            for (int e = 0; e < 32; e++) {
                const int q = rng_int(0, 15);
                p[4 + e % 16] |= (uint8_t)(e < 16 ? q : q << 4);
                y[e] = (float)q * d + m;
            }
            break;
        }
        case LLMS_TYPE_Q5_0:
        case LLMS_TYPE_Q5_1: {
            const int has_m = type == LLMS_TYPE_Q5_1;
            const float d = pick_pow2(-6, 2, !has_m), m = has_m ? pick_pow2(-6, 2, 1) : 0.0f;
            put16(p, fp32_to_fp16(d));
            if (has_m) put16(p + 2, fp32_to_fp16(m));
            uint8_t *qh = p + 2 + 2 * has_m, *qs = qh + 4;
            for (int e = 0; e < 32; e++) {
                const int q = rng_int(0, 31);
                qs[e % 16] |= (uint8_t)(e < 16 ? (q & 15) : (q & 15) << 4);
                if (q & 16) qh[e / 8] |= (uint8_t)(1 << (e % 8));
                y[e] = has_m ? (float)q * d + m : (float)(q - 16) * d;
            }
            break;
        }
        case LLMS_TYPE_Q8_0: {
            const float d = pick_pow2(-8, 0, 1);
            put16(p, fp32_to_fp16(d));
            for (int e = 0; e < 32; e++) {
                const int q = rng_int(-128, 127);
                p[2 + e] = (uint8_t)(int8_t)q;
                y[e] = (float)q * d;
            }
            break;
        }
        case LLMS_TYPE_Q2_K: {
            const float d = pick_pow2(-8, 0, 1), dmin = pick_pow2(-8, 0, 1);
            int sc[16], mn[16];
            for (int g = 0; g < 16; g++) {
                sc[g] = rng_int(0, 15);
                mn[g] = rng_int(0, 15);
                p[g] = (uint8_t)(sc[g] | mn[g] << 4);
            }
            put16(p + 80, fp32_to_fp16(d));
            put16(p + 82, fp32_to_fp16(dmin));
            for (int e = 0; e < 256; e++) {
                const int q = rng_int(0, 3);
                /* 128-element halves use 32 bytes each; within a half, the
                 * 2-bit field (e % 128) / 32 of byte e % 32 */
                p[16 + 32 * (e / 128) + e % 32] |= (uint8_t)(q << (2 * ((e % 128) / 32)));
                y[e] = d * (float)sc[e / 16] * (float)q - dmin * (float)mn[e / 16];
            }
            break;
        }
        case LLMS_TYPE_Q3_K: {
            const float d = pick_pow2(-8, 0, 1);
            int sc[16];
            for (int g = 0; g < 16; g++) {
                sc[g] = rng_int(-32, 31);
                const int u = sc[g] + 32;
                if (g < 8) p[96 + g] |= (uint8_t)(u & 15);
                else p[96 + g - 8] |= (uint8_t)((u & 15) << 4);
                p[96 + 8 + g % 4] |= (uint8_t)((u >> 4) << (2 * (g / 4)));
            }
            put16(p + 108, fp32_to_fp16(d));
            for (int e = 0; e < 256; e++) {
                const int q = rng_int(-4, 3), u = q + 4;
                p[32 + 32 * (e / 128) + e % 32] |= (uint8_t)((u & 3) << (2 * ((e / 32) % 4)));
                if (u & 4) p[e % 32] |= (uint8_t)(1 << (e / 32)); /* hmask: bit e/32 of byte e%32 */
                y[e] = d * (float)sc[e / 16] * (float)q;
            }
            break;
        }
        case LLMS_TYPE_Q4_K:
        case LLMS_TYPE_Q5_K: {
            const int five = type == LLMS_TYPE_Q5_K;
            const float d = pick_pow2(-8, 0, 1), dmin = pick_pow2(-8, 0, 1);
            int sc[8], mn[8];
            for (int j = 0; j < 8; j++) {
                sc[j] = rng_int(0, 63);
                mn[j] = rng_int(0, 63);
            }
            put16(p, fp32_to_fp16(d));
            put16(p + 2, fp32_to_fp16(dmin));
            uint8_t *s = p + 4;
            /* scales 0..3 and mins 0..3: low 6 bits of bytes 0..3 / 4..7;
             * scales/mins 4..7: low nibble in bytes 8..11 (scale low, min
             * high), top two bits in bits 6..7 of bytes 0..3 / 4..7 */
            for (int j = 0; j < 4; j++) {
                s[j] = (uint8_t)(sc[j] | (sc[j + 4] >> 4) << 6);
                s[4 + j] = (uint8_t)(mn[j] | (mn[j + 4] >> 4) << 6);
                s[8 + j] = (uint8_t)((sc[j + 4] & 15) | (mn[j + 4] & 15) << 4);
            }
            uint8_t *qh = p + 16, *qs = p + 16 + 32 * five;
            for (int e = 0; e < 256; e++) {
                const int q = rng_int(0, five ? 31 : 15);
                qs[32 * (e / 64) + e % 32] |= (uint8_t)((e % 64) < 32 ? (q & 15) : (q & 15) << 4);
                if (q & 16) qh[e % 32] |= (uint8_t)(1 << (e / 32));
                y[e] = d * (float)sc[e / 32] * (float)q - dmin * (float)mn[e / 32];
            }
            break;
        }
        case LLMS_TYPE_Q6_K: {
            const float d = pick_pow2(-10, -2, 1);
            int sc[16];
            for (int g = 0; g < 16; g++) {
                sc[g] = rng_int(-128, 127);
                p[192 + g] = (uint8_t)(int8_t)sc[g];
            }
            put16(p + 208, fp32_to_fp16(d));
            for (int e = 0; e < 256; e++) {
                const int q = rng_int(0, 63);
                const int h = e / 128, g = (e % 128) / 32, l = e % 32;
                p[64 * h + 32 * (g % 2) + l] |= (uint8_t)(g < 2 ? (q & 15) : (q & 15) << 4);
                p[128 + 32 * h + l] |= (uint8_t)((q >> 4) << (2 * g));
                y[e] = d * (float)sc[e / 16] * (float)(q - 32);
            }
            break;
        }
        case LLMS_TYPE_F16: {
            uint16_t h = (uint16_t)rng_u32();
            if ((h & 0x7C00) == 0x7C00) h &= 0xBFFF; /* keep it finite */
            put16(p, h);
            y[0] = (float)ref_half_value(h);
            break;
        }
        case LLMS_TYPE_BF16: {
            uint16_t h = (uint16_t)rng_u32();
            if ((h & 0x7F80) == 0x7F80) h &= 0xBFFF;
            put16(p, h);
            y[0] = (float)ref_bf16_value(h);
            break;
        }
        case LLMS_TYPE_F32: {
            const float f = rng_gauss();
            put_f32(p, f);
            y[0] = f;
            break;
        }
        default: fail_msg("no builder for type %u", type);
        }
    }
}

static void free_row(built_row *r) {
    free(r->bytes);
    free(r->want);
}

static const uint32_t weight_types[] = {
    LLMS_TYPE_F32,  LLMS_TYPE_F16,  LLMS_TYPE_BF16, LLMS_TYPE_Q4_0, LLMS_TYPE_Q4_1,
    LLMS_TYPE_Q5_0, LLMS_TYPE_Q5_1, LLMS_TYPE_Q8_0, LLMS_TYPE_Q2_K, LLMS_TYPE_Q3_K,
    LLMS_TYPE_Q4_K, LLMS_TYPE_Q5_K, LLMS_TYPE_Q6_K,
};
#define N_WEIGHT_TYPES (sizeof weight_types / sizeof weight_types[0])

static void test_dequant_built_blocks(void **state) {
    (void)state;
    rng_seed(3);
    for (size_t t = 0; t < N_WEIGHT_TYPES; t++) {
        const uint32_t type = weight_types[t];
        assert_true(quant_can_dequantize(type));
        const type_traits *tr = type_get(type);
        for (int rep = 0; rep < 20; rep++) {
            built_row r;
            const int64_t nb = tr->block_size == 1 ? 97 : 3;
            build_row(&r, type, nb);
            const int64_t n = nb * tr->block_size;
            /* at an odd address too: weights come from mmapped files */
            uint8_t *odd = malloc(row_bytes(type, n) + 1);
            assert_non_null(odd);
            memcpy(odd + 1, r.bytes, row_bytes(type, n));
            float *got = malloc((size_t)n * sizeof(float));
            assert_non_null(got);
            for (int isa = 0; isa < QUANT_ISA_COUNT; isa++) {
                quant_deq_fn f = quant_dequantize_get(type, isa);
                if (!quant_isa_available(isa)) {
                    assert_null(f);
                    continue;
                }
                assert_non_null(f);
                for (int pass = 0; pass < 3; pass++) {
                    memset(got, 0xFF, (size_t)n * sizeof(float));
                    if (pass < 2) f(pass ? (const void *)(odd + 1) : r.bytes, got, n);
                    else quant_dequantize_row(type, r.bytes, got, n);
                    for (int64_t e = 0; e < n; e++)
                        if (got[e] != r.want[e])
                            fail_msg("%s %s element %lld: got %.9g want %.9g", tr->name, quant_isa_name(isa),
                                     (long long)e, (double)got[e], (double)r.want[e]);
                }
            }
            free(odd);
            free(got);
            free_row(&r);
        }
    }
}

/* A few blocks written out literally, to pin the layouts down in a way a
 * reader can check by eye. */
static void test_dequant_literal_blocks(void **state) {
    (void)state;
    float y[256];

    /* Q4_0: d = 1.0 (0x3C00); qs[0] = 0x21 -> element 0 = 1 - 8,
     * element 16 = 2 - 8; qs[15] = 0xF0 -> element 15 = -8, element 31 = 7. */
    uint8_t q40[18] = {0x00, 0x3C, 0x21, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88,
                       0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0xF0};
    quant_dequantize_row(LLMS_TYPE_Q4_0, q40, y, 32);
    assert_true(y[0] == -7.0f && y[16] == -6.0f && y[15] == -8.0f && y[31] == 7.0f);
    assert_true(y[1] == 0.0f && y[17] == 0.0f);

    /* Q4_1: d = 0.5 (0x3800), m = -1 (0xBC00); qs[3] = 0x5A -> element 3 =
     * 10 * 0.5 - 1 = 4, element 19 = 5 * 0.5 - 1 = 1.5. */
    uint8_t q41[20] = {0x00, 0x38, 0x00, 0xBC};
    q41[4 + 3] = 0x5A;
    quant_dequantize_row(LLMS_TYPE_Q4_1, q41, y, 32);
    assert_true(y[3] == 4.0f && y[19] == 1.5f && y[0] == -1.0f);

    /* Q5_0: d = 2 (0x4000); qh = 0x80000001 (bytes 01 00 00 80): element 0
     * and element 31 have the 5th bit. qs[0] = 0x00, qs[15] = 0xF3. */
    uint8_t q50[22] = {0x00, 0x40, 0x01, 0x00, 0x00, 0x80};
    q50[6 + 15] = 0xF3;
    quant_dequantize_row(LLMS_TYPE_Q5_0, q50, y, 32);
    assert_true(y[0] == 0.0f);         /* (0 | 16) - 16 */
    assert_true(y[16] == -32.0f);      /* (0) - 16, times 2 */
    assert_true(y[15] == -26.0f);      /* (3 - 16) * 2 */
    assert_true(y[31] == 30.0f);       /* (15 | 16) - 16 = 15, times 2 */

    /* Q5_1: d = 1, m = 0.5; qh bit 16 set (byte 2 = 0x01): element 16 = 16.5 */
    uint8_t q51[24] = {0x00, 0x3C, 0x00, 0x38, 0x00, 0x00, 0x01, 0x00};
    quant_dequantize_row(LLMS_TYPE_Q5_1, q51, y, 32);
    assert_true(y[16] == 16.5f && y[0] == 0.5f);

    /* Q8_0: d = 0.25 (0x3400); qs = -128, 127. */
    uint8_t q80[34] = {0x00, 0x34, 0x80, 0x7F};
    quant_dequantize_row(LLMS_TYPE_Q8_0, q80, y, 32);
    assert_true(y[0] == -32.0f && y[1] == 31.75f && y[2] == 0.0f);

    /* Q4_K: d = 1, dmin = 0.5; scale byte 0 = 0x42 -> sc0 = 2 and top bits 1
     * of sc4; byte 4 = 0x03 -> mn0 = 3; byte 8 = 0x51 -> sc4 = 1 | 1 << 4 = 17,
     * mn4 = 5. qs[0] = 0x97: element 0 = 7 * 2 - 1.5 = 12.5, element 32 (high
     * nibble, group 1 with sc1 = mn1 = 0) = 0. qs[64] = 0x0C: element 128
     * (group 4) = 12 * 17 - 5 * 0.5 = 201.5. */
    uint8_t q4k[144] = {0x00, 0x3C, 0x00, 0x38};
    q4k[4 + 0] = 0x42;
    q4k[4 + 4] = 0x03;
    q4k[4 + 8] = 0x51;
    q4k[16 + 0] = 0x97;
    q4k[16 + 64] = 0x0C;
    quant_dequantize_row(LLMS_TYPE_Q4_K, q4k, y, 256);
    assert_true(y[0] == 12.5f);
    assert_true(y[32] == 0.0f);
    assert_true(y[128] == 201.5f);
    assert_true(y[1] == -1.5f);

    /* Q6_K: d = 1; scales[0] = -1, scales[15] = 2; ql[0] = 0x0F, qh[0] = 0x01
     * -> element 0 = (15 | 1 << 4) - 32 = -1, times -1 = 1. Element 255 is
     * h = 1, g = 3, l = 31: high nibble of ql[64 + 32 + 31] and bits 6..7 of
     * qh[32 + 31]: set both to the max -> 63 - 32 = 31, times 2 = 62. */
    uint8_t q6k[210] = {0};
    q6k[0] = 0x0F;
    q6k[128] = 0x01;
    q6k[192] = 0xFF;
    q6k[192 + 15] = 0x02;
    q6k[127] = 0xF0;
    q6k[128 + 63] = 0xC0;
    put16(q6k + 208, 0x3C00);
    quant_dequantize_row(LLMS_TYPE_Q6_K, q6k, y, 256);
    assert_true(y[0] == 1.0f);
    assert_true(y[255] == 62.0f);
    assert_true(y[1] == 32.0f); /* q = 0 -> -32, scale -1 */

    /* Q3_K: d = 1 (bytes 108..109). All scales 0 -> stored 32: low nibbles 0,
     * high bits 2 (binary 10) in every 2-bit field of bytes 104..107. With
     * hmask zero, every value is -4 (or -4 + low bits), times scale 0 = 0.
     * Then scale 0 = 1 (stored 33: byte 96 low nibble 1): element 0 with
     * hmask bit set and low bits 3 -> 3. */
    uint8_t q3k[110] = {0};
    for (int k = 0; k < 4; k++) q3k[104 + k] = 0xAA;
    q3k[96] = 0x01;
    q3k[0] = 0x01;  /* hmask bit 0 of byte 0: element 0 */
    q3k[32] = 0x03; /* low bits of element 0 */
    put16(q3k + 108, 0x3C00);
    quant_dequantize_row(LLMS_TYPE_Q3_K, q3k, y, 256);
    assert_true(y[0] == 3.0f);
    assert_true(y[1] == -4.0f); /* hmask clear, low bits 0 */
    assert_true(y[16] == 0.0f); /* group 1, scale 0 */

    /* Q2_K: scales[0] = 0x21 (sc 1, mn 2), d = 1, dmin = 0.25; qs[0] = 0x03:
     * element 0 = 3 - 0.5; element 32 (bits 2..3 of qs[0]) has group 2. */
    uint8_t q2k[84] = {0x21};
    q2k[16] = 0x03;
    put16(q2k + 80, 0x3C00);
    put16(q2k + 82, 0x3400);
    quant_dequantize_row(LLMS_TYPE_Q2_K, q2k, y, 256);
    assert_true(y[0] == 2.5f && y[1] == -0.5f && y[32] == 0.0f);
}

/* Offsets of the half scale fields of a block (-1: none). */
static void scale_offsets(uint32_t type, int off[2]) {
    off[0] = off[1] = -1;
    switch (type) {
    case LLMS_TYPE_Q4_0: case LLMS_TYPE_Q5_0: case LLMS_TYPE_Q8_0: off[0] = 0; break;
    case LLMS_TYPE_Q4_1: case LLMS_TYPE_Q5_1: case LLMS_TYPE_Q4_K: case LLMS_TYPE_Q5_K: off[0] = 0; off[1] = 2; break;
    case LLMS_TYPE_Q2_K: off[0] = 80; off[1] = 82; break;
    case LLMS_TYPE_Q3_K: off[0] = 108; break;
    case LLMS_TYPE_Q6_K: off[0] = 208; break;
    default: break;
    }
}

static void test_dequant_scale_fields(void **state) {
    (void)state;
    /* Multiplying every half scale field (d, and m / dmin where present) by
     * 1.5 must multiply every output by exactly 1.5: pins the scale offsets
     * and shows no other byte acts as a scale. */
    rng_seed(4);
    for (size_t t = 0; t < N_WEIGHT_TYPES; t++) {
        const uint32_t type = weight_types[t];
        const type_traits *tr = type_get(type);
        if (tr->block_size == 1) continue;
        built_row r;
        build_row(&r, type, 4);
        const int64_t n = 4 * tr->block_size;
        float *base = malloc((size_t)n * sizeof(float)), *got = malloc((size_t)n * sizeof(float));
        assert_non_null(base);
        assert_non_null(got);
        quant_dequantize_row(type, r.bytes, base, n);
        for (int64_t b = 0; b < 4; b++) {
            uint8_t *p = r.bytes + b * tr->type_size;
            int off[2];
            scale_offsets(type, off);
            for (int k = 0; k < 2; k++) {
                if (off[k] < 0) continue;
                const uint16_t h = (uint16_t)(p[off[k]] | p[off[k] + 1] << 8);
                put16(p + off[k], fp32_to_fp16((float)ref_half_value(h) * 1.5f));
            }
        }
        quant_dequantize_row(type, r.bytes, got, n);
        for (int64_t e = 0; e < n; e++) {
            if ((double)got[e] != 1.5 * (double)base[e])
                fail_msg("%s element %lld: %.9g, want 1.5 * %.9g", tr->name, (long long)e, (double)got[e],
                         (double)base[e]);
        }
        free(base);
        free(got);
        free_row(&r);
    }
}

/* Every level's dequantization is bit-identical to the scalar reference on
 * arbitrary bytes: random quants, random finite scales (zero, subnormal,
 * huge), and for F16/BF16 every bit pattern including NaN and inf. */
static void test_dequant_isa_identical(void **state) {
    (void)state;
    rng_seed(12);
    const uint32_t types[] = {LLMS_TYPE_F16,  LLMS_TYPE_BF16, LLMS_TYPE_Q4_0, LLMS_TYPE_Q4_1, LLMS_TYPE_Q5_0,
                              LLMS_TYPE_Q5_1, LLMS_TYPE_Q8_0, LLMS_TYPE_Q2_K, LLMS_TYPE_Q3_K, LLMS_TYPE_Q4_K,
                              LLMS_TYPE_Q5_K, LLMS_TYPE_Q6_K, LLMS_TYPE_F32};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        const uint32_t type = types[t];
        const type_traits *tr = type_get(type);
        const int64_t n = tr->block_size == 1 ? 65536 + 7 : 16 * (int64_t)tr->block_size;
        const size_t nbytes = row_bytes(type, n);
        uint8_t *buf = malloc(nbytes);
        float *ref = malloc((size_t)n * sizeof(float)), *got = malloc((size_t)n * sizeof(float));
        assert_non_null(buf);
        assert_non_null(ref);
        assert_non_null(got);
        for (int rep = 0; rep < 8; rep++) {
            for (size_t k = 0; k < nbytes; k++) buf[k] = (uint8_t)rng_u32();
            if (type == LLMS_TYPE_F16 || type == LLMS_TYPE_BF16)
                for (int64_t i = 0; i < 65536; i++) put16(buf + 2 * i, (uint16_t)i); /* every pattern */
            int off[2];
            scale_offsets(type, off);
            for (int64_t b = 0; b < n / tr->block_size; b++)
                for (int k = 0; k < 2; k++) {
                    if (off[k] < 0) continue;
                    uint8_t *p = buf + b * tr->type_size + off[k];
                    const uint16_t h = (uint16_t)(p[0] | p[1] << 8);
                    if ((h & 0x7C00) == 0x7C00) put16(p, h & 0xBFFF); /* finite */
                }
            quant_dequantize_get(type, QUANT_ISA_SCALAR)(buf, ref, n);
            for (int isa = 1; isa < QUANT_ISA_COUNT; isa++) {
                quant_deq_fn f = quant_dequantize_get(type, isa);
                if (!f) continue;
                f(buf, got, n);
                for (int64_t i = 0; i < n; i++)
                    if (f2u(got[i]) != f2u(ref[i]) && !(isnan(got[i]) && isnan(ref[i])))
                        fail_msg("%s %s element %lld: 0x%08x, scalar 0x%08x", tr->name, quant_isa_name(isa),
                                 (long long)i, f2u(got[i]), f2u(ref[i]));
            }
        }
        free(buf);
        free(ref);
        free(got);
    }
}

/* SIMD activation quantizers are bit-identical to the scalar ones, also
 * on NaN, infinities, zeros, float subnormals and huge values. */
static void test_quantize_isa_identical(void **state) {
    (void)state;
    rng_seed(13);
    const uint32_t types[] = {LLMS_TYPE_Q8_0, LLMS_TYPE_Q8_K};
    const int64_t n = 256 * 24;
    float *x = malloc((size_t)n * sizeof(float));
    uint8_t *ref = malloc(row_bytes(LLMS_TYPE_Q8_K, n)), *got = malloc(row_bytes(LLMS_TYPE_Q8_K, n));
    assert_non_null(x);
    assert_non_null(ref);
    assert_non_null(got);
    for (int rep = 0; rep < 40; rep++) {
        for (int64_t i = 0; i < n; i++) {
            const int kind = rng_int(0, 99);
            if (rep < 20 || kind < 90) x[i] = rng_gauss() * ldexpf(1.0f, rng_int(-20, 20));
            else if (kind < 92) x[i] = NAN;
            else if (kind < 94) x[i] = rng_u32() & 1 ? INFINITY : -INFINITY;
            else if (kind < 96) x[i] = 0.0f;
            else if (kind < 98) x[i] = u2f(rng_u32() & 0x807FFFFFu); /* subnormal */
            else x[i] = rng_gauss() * 1e38f;
        }
        if (rep == 1) memset(x, 0, (size_t)n * sizeof(float));
        for (size_t t = 0; t < 2; t++) {
            const size_t nb = row_bytes(types[t], n);
            quant_quantize_get(types[t], QUANT_ISA_SCALAR)(x, ref, n);
            for (int isa = 1; isa < QUANT_ISA_COUNT; isa++) {
                quant_q_fn f = quant_quantize_get(types[t], isa);
                if (!f) continue;
                memset(got, 0xA5, nb);
                f(x, got, n);
                for (size_t k = 0; k < nb; k++)
                    if (got[k] != ref[k])
                        fail_msg("%s %s rep %d: byte %zu differs (0x%02x vs 0x%02x)", type_get(types[t])->name,
                                 quant_isa_name(isa), rep, k, got[k], ref[k]);
            }
        }
    }
    free(x);
    free(ref);
    free(got);
}

/* ---- quantize -> dequantize round trips ------------------------------------ */

typedef struct {
    uint32_t type;
    double max_rel_rmse; /* sqrt(sum err^2 / sum x^2) on Gaussian data */
} rt_bound;

/* Bounds sit about 15% above what the quantizers measure (see the
 * report printed by test_roundtrip), tight enough to catch a broken
 * search or scale packing, loose enough for platform rounding. */
static const rt_bound rt_bounds[] = {
    {LLMS_TYPE_F32, 0.0},       {LLMS_TYPE_F16, 2.5e-4},    {LLMS_TYPE_BF16, 2e-3},
    {LLMS_TYPE_Q8_0, 0.0062},   {LLMS_TYPE_Q8_K, 0.008},    {LLMS_TYPE_Q6_K, 0.02},
    {LLMS_TYPE_Q5_0, 0.049},    {LLMS_TYPE_Q5_1, 0.044},    {LLMS_TYPE_Q5_K, 0.042},
    {LLMS_TYPE_Q4_0, 0.099},    {LLMS_TYPE_Q4_1, 0.09},     {LLMS_TYPE_Q4_K, 0.082},
    {LLMS_TYPE_Q3_K, 0.166},    {LLMS_TYPE_Q2_K, 0.31},
};

static double roundtrip_rmse(uint32_t type, const float *x, int64_t n) {
    void *q = malloc(row_bytes(type, n));
    float *y = malloc((size_t)n * sizeof(float));
    assert_non_null(q);
    assert_non_null(y);
    quant_quantize_row(type, x, q, n);
    quant_dequantize_row(type, q, y, n);
    double se = 0, sx = 0;
    for (int64_t i = 0; i < n; i++) {
        assert_false(isnan(y[i]));
        se += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        sx += (double)x[i] * x[i];
    }
    free(q);
    free(y);
    return sx > 0 ? sqrt(se / sx) : sqrt(se);
}

static void test_roundtrip(void **state) {
    (void)state;
    const int64_t n = 256 * 64;
    float *x = malloc((size_t)n * sizeof(float));
    assert_non_null(x);
    rng_seed(5);
    for (int64_t i = 0; i < n; i++) x[i] = rng_gauss() * 0.02f; /* weight-like scale */
    int bad = 0;
    for (size_t k = 0; k < sizeof rt_bounds / sizeof rt_bounds[0]; k++) {
        const uint32_t type = rt_bounds[k].type;
        assert_true(quant_can_quantize(type));
        const double e = roundtrip_rmse(type, x, n);
        printf("  round trip %-5s rel rmse %.5f (bound %.5f)%s\n", type_get(type)->name, e,
               rt_bounds[k].max_rel_rmse, e > rt_bounds[k].max_rel_rmse ? " FAIL" : "");
        bad += e > rt_bounds[k].max_rel_rmse;
    }
    free(x);
    assert_int_equal(bad, 0);
}

/* An all-zero row, constant rows, rows with outliers and tiny/huge
 * magnitudes: exact zeros, no NaN, bounded error. */
static void test_roundtrip_special(void **state) {
    (void)state;
    const int64_t n = 512;
    float x[512], y[512];
    uint8_t buf[2048];
    for (size_t k = 0; k < sizeof rt_bounds / sizeof rt_bounds[0]; k++) {
        const uint32_t type = rt_bounds[k].type;
        assert_true(row_bytes(type, n) <= sizeof buf);
        /* zeros */
        memset(x, 0, sizeof x);
        quant_quantize_row(type, x, buf, n);
        quant_dequantize_row(type, buf, y, n);
        for (int i = 0; i < n; i++) assert_true(y[i] == 0.0f);
        /* constants: positive and negative, exactly representable */
        for (int sgn = -1; sgn <= 1; sgn += 2) {
            for (int i = 0; i < n; i++) x[i] = 0.375f * (float)sgn;
            quant_quantize_row(type, x, buf, n);
            quant_dequantize_row(type, buf, y, n);
            for (int i = 0; i < n; i++)
                if (fabsf(y[i] - x[i]) > 0.02f * 0.375f)
                    fail_msg("%s constant %g: got %g", type_get(type)->name, (double)x[i], (double)y[i]);
        }
        /* outliers (one in 97 elements, 30x larger) */
        rng_seed(6 + k);
        for (int i = 0; i < n; i++) x[i] = rng_gauss() * ((i % 97) == 3 ? 30.0f : 1.0f);
        double e = roundtrip_rmse(type, x, n);
        printf("  %-5s outliers %.5f", type_get(type)->name, e);
        /* an outlier widens its whole block's step: a loose sanity bound */
        int bad = e > 4.0 * rt_bounds[k].max_rel_rmse + 1e-6;
        /* small magnitudes (block scales in the half subnormal range) and
         * large ones */
        for (int i = 0; i < n; i++) x[i] = rng_gauss() * 1e-3f;
        e = roundtrip_rmse(type, x, n);
        printf(" small %.5f", e);
        bad += e > 2.0 * rt_bounds[k].max_rel_rmse + 1e-6;
        for (int i = 0; i < n; i++) x[i] = rng_gauss() * 100.0f;
        e = roundtrip_rmse(type, x, n);
        printf(" large %.5f\n", e);
        bad += e > 1.2 * rt_bounds[k].max_rel_rmse + 1e-6;
        if (bad) fail_msg("%s: error above bound", type_get(type)->name);
    }
}

/* Structural checks of blocks the quantizers produce. */
static void test_quantized_blocks_valid(void **state) {
    (void)state;
    float x[256];
    rng_seed(7);
    for (int i = 0; i < 256; i++) x[i] = rng_gauss();

    /* Q8_K: d * qs reproduces, values in -127..127, bsums are group sums. */
    uint8_t q8k[292];
    quant_quantize_row(LLMS_TYPE_Q8_K, x, q8k, 256);
    float d;
    memcpy(&d, q8k, 4);
    float amax = 0;
    for (int i = 0; i < 256; i++) amax = fmaxf(amax, fabsf(x[i]));
    assert_true(fabsf(d - amax / 127.0f) <= 1e-6f * amax);
    for (int g = 0; g < 16; g++) {
        int s = 0;
        for (int l = 0; l < 16; l++) {
            const int v = (int8_t)q8k[4 + 16 * g + l];
            assert_true(v >= -127 && v <= 127);
            assert_true(fabsf((float)v * d - x[16 * g + l]) <= 0.5f * d * 1.0001f);
            s += v;
        }
        const int16_t bs = (int16_t)(q8k[4 + 256 + 2 * g] | q8k[4 + 256 + 2 * g + 1] << 8);
        assert_int_equal(bs, s);
    }

    /* Q8_0: never -128 (the SIMD sign trick needs that), error <= d/2. */
    uint8_t q80[8 * 34];
    quant_quantize_row(LLMS_TYPE_Q8_0, x, q80, 256);
    for (int b = 0; b < 8; b++) {
        const float bd = fp16_to_fp32((uint16_t)(q80[34 * b] | q80[34 * b + 1] << 8));
        for (int l = 0; l < 32; l++) {
            const int v = (int8_t)q80[34 * b + 2 + l];
            assert_true(v >= -127);
            assert_true(fabsf((float)v * bd - x[32 * b + l]) <= 0.5f * bd + 1e-3f * bd);
        }
    }

    /* Legacy formats: every element within half a step (plus the scale's
     * half rounding) of its input. */
    const uint32_t legacy[] = {LLMS_TYPE_Q4_0, LLMS_TYPE_Q4_1, LLMS_TYPE_Q5_0, LLMS_TYPE_Q5_1};
    for (size_t k = 0; k < 4; k++) {
        uint8_t buf[8 * 24];
        float y[256];
        quant_quantize_row(legacy[k], x, buf, 256);
        quant_dequantize_row(legacy[k], buf, y, 256);
        const type_traits *t = type_get(legacy[k]);
        /* Q4_0/Q5_0 map the largest magnitude to -8 / -16 steps; values of
         * the other sign can reach only +7 / +15 steps, so beyond that
         * level the error may grow to one step. */
        const float top = legacy[k] == LLMS_TYPE_Q4_0 ? 7.5f : legacy[k] == LLMS_TYPE_Q5_0 ? 15.5f : INFINITY;
        for (int b = 0; b < 8; b++) {
            const float bd = fabsf(fp16_to_fp32((uint16_t)(buf[t->type_size * b] | buf[t->type_size * b + 1] << 8)));
            for (int l = 0; l < 32; l++)
                if (!(fabsf(y[32 * b + l] - x[32 * b + l]) <=
                      (fabsf(x[32 * b + l]) > top * bd ? 1.01f : 0.51f) * bd))
                    fail_msg("%s block %d element %d: %g from %g (d %g)", t->name, b, l, (double)y[32 * b + l],
                             (double)x[32 * b + l], (double)bd);
        }
    }

    /* K-quant group scales: Q6_K's largest-magnitude scale is -128, Q3_K's
     * stored scales use the full 6-bit range. */
    uint8_t q6k[210];
    quant_quantize_row(LLMS_TYPE_Q6_K, x, q6k, 256);
    int has_m128 = 0;
    for (int g = 0; g < 16; g++) has_m128 |= (int8_t)q6k[192 + g] == -128;
    assert_true(has_m128);
}

/* ---- dot products ----------------------------------------------------------- */

/* dot(dequant(w), dequant(act)) in double, and sum |w_i a_i| for the error
 * scale. */
static double ref_dot(uint32_t wtype, const void *w, const void *act, int64_t n, double *mag) {
    float *wf = malloc((size_t)n * sizeof(float)), *af = malloc((size_t)n * sizeof(float));
    assert_non_null(wf);
    assert_non_null(af);
    quant_dequantize_row(wtype, w, wf, n);
    quant_dequantize_row(quant_act_type(wtype), act, af, n);
    double s = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        s += (double)wf[i] * af[i];
        m += fabs((double)wf[i] * af[i]);
    }
    free(wf);
    free(af);
    *mag = m;
    return s;
}

static void test_act_type(void **state) {
    (void)state;
    assert_int_equal(quant_act_type(LLMS_TYPE_F32), LLMS_TYPE_F32);
    assert_int_equal(quant_act_type(LLMS_TYPE_F16), LLMS_TYPE_F32);
    assert_int_equal(quant_act_type(LLMS_TYPE_BF16), LLMS_TYPE_F32);
    assert_int_equal(quant_act_type(LLMS_TYPE_Q4_0), LLMS_TYPE_Q8_0);
    assert_int_equal(quant_act_type(LLMS_TYPE_Q4_1), LLMS_TYPE_Q8_0);
    assert_int_equal(quant_act_type(LLMS_TYPE_Q5_0), LLMS_TYPE_Q8_0);
    assert_int_equal(quant_act_type(LLMS_TYPE_Q5_1), LLMS_TYPE_Q8_0);
    assert_int_equal(quant_act_type(LLMS_TYPE_Q8_0), LLMS_TYPE_Q8_0);
    for (uint32_t t = LLMS_TYPE_Q2_K; t <= LLMS_TYPE_Q6_K; t++) assert_int_equal(quant_act_type(t), LLMS_TYPE_Q8_K);
    assert_int_equal(quant_act_type(LLMS_TYPE_Q8_K), QUANT_TYPE_NONE);
    assert_int_equal(quant_act_type(LLMS_TYPE_I8), QUANT_TYPE_NONE);
    assert_int_equal(quant_act_type(999), QUANT_TYPE_NONE);
    assert_null(quant_vec_dot_fn(LLMS_TYPE_I32));
    assert_null(quant_vec_dot_get(LLMS_TYPE_Q4_0, QUANT_ISA_COUNT));
    assert_null(quant_vec_dot_get(LLMS_TYPE_Q4_0, -1));
    float out = 42.0f;
    quant_vec_dot(LLMS_TYPE_I32, 32, NULL, NULL, &out); /* unsupported: untouched */
    assert_true(out == 42.0f);
    assert_true(quant_isa_available(QUANT_ISA_SCALAR));
    assert_true(quant_isa_available(quant_isa_best()));
    for (int isa = 0; isa < QUANT_ISA_COUNT; isa++) {
        printf("  isa %-6s %s\n", quant_isa_name(isa), quant_isa_available(isa) ? "available" : "not available");
        if (!quant_isa_available(isa)) assert_null(quant_vec_dot_get(LLMS_TYPE_Q4_0, isa));
    }
    assert_string_equal(quant_isa_name(99), "?");
}

/* Scalar kernels against the float reference; every available SIMD level
 * against the same reference and against scalar. Tolerances: the integer
 * sums are exact, so the only error is float rounding of one product per
 * block plus the accumulation: 2e-6 of sum |w a| (about 16 float ulps of
 * the magnitude), and 1e-6 between two kernels. */
static void check_dot_type(uint32_t wtype, const int64_t *lens, int nlens) {
    const uint32_t at = quant_act_type(wtype);
    for (int li = 0; li < nlens; li++) {
        const int64_t n = lens[li];
        float *xw = malloc((size_t)n * sizeof(float)), *xa = malloc((size_t)n * sizeof(float));
        void *w = malloc(row_bytes(wtype, n) + 1), *a = malloc(row_bytes(at, n));
        assert_non_null(xw);
        assert_non_null(xa);
        assert_non_null(w);
        assert_non_null(a);
        for (int rep = 0; rep < 4; rep++) {
            for (int64_t i = 0; i < n; i++) {
                xw[i] = rng_gauss() * (rep == 3 ? 1000.0f : 0.05f);
                xa[i] = rng_gauss() * (rep == 2 ? 30.0f : 1.0f);
            }
            /* rep 1: weights at an odd address */
            uint8_t *wp = (uint8_t *)w + (rep == 1);
            quant_quantize_row(wtype, xw, wp, n);
            quant_quantize_row(at, xa, a, n);
            double mag;
            const double want = ref_dot(wtype, wp, a, n, &mag);
            const double tol = 2e-6 * mag + 1e-30;
            float scalar = NAN;
            quant_vec_dot_get(wtype, QUANT_ISA_SCALAR)(n, wp, a, &scalar);
            if (!(fabs(scalar - want) <= tol))
                fail_msg("%s scalar n=%lld: %.9g want %.9g (tol %.3g)", type_get(wtype)->name, (long long)n,
                         (double)scalar, want, tol);
            for (int isa = 1; isa < QUANT_ISA_COUNT; isa++) {
                quant_dot_fn f = quant_vec_dot_get(wtype, isa);
                if (!quant_isa_available(isa)) {
                    assert_null(f);
                    continue;
                }
                assert_non_null(f);
                float got = NAN;
                f(n, wp, a, &got);
                if (!(fabs(got - want) <= tol) || !(fabs(got - scalar) <= 1e-6 * mag + 1e-30))
                    fail_msg("%s %s n=%lld: %.9g, scalar %.9g, want %.9g", type_get(wtype)->name,
                             quant_isa_name(isa), (long long)n, (double)got, (double)scalar, want);
            }
            float dispatched = NAN;
            quant_vec_dot(wtype, n, wp, a, &dispatched);
            assert_true(fabs(dispatched - want) <= tol);
        }
        free(xw);
        free(xa);
        free(w);
        free(a);
    }
}

static void test_dot_float_types(void **state) {
    (void)state;
    rng_seed(8);
    const int64_t lens[] = {1, 7, 8, 31, 32, 33, 100, 4096 + 13};
    check_dot_type(LLMS_TYPE_F32, lens, 8);
    check_dot_type(LLMS_TYPE_F16, lens, 8);
    check_dot_type(LLMS_TYPE_BF16, lens, 8);
}

static void test_dot_legacy_types(void **state) {
    (void)state;
    rng_seed(9);
    /* 1..3 blocks exercise the tail loop, 4k + r the unrolled one */
    const int64_t lens[] = {32, 64, 96, 128, 160, 4096, 4096 + 96};
    const uint32_t types[] = {LLMS_TYPE_Q4_0, LLMS_TYPE_Q4_1, LLMS_TYPE_Q5_0, LLMS_TYPE_Q5_1, LLMS_TYPE_Q8_0};
    for (int k = 0; k < 5; k++) check_dot_type(types[k], lens, 7);
}

static void test_dot_k_types(void **state) {
    (void)state;
    rng_seed(10);
    const int64_t lens[] = {256, 512, 768, 4096};
    for (uint32_t t = LLMS_TYPE_Q2_K; t <= LLMS_TYPE_Q6_K; t++) check_dot_type(t, lens, 4);
}

/* Hand-built weight blocks with random (not quantizer-made) contents,
 * including every extreme level and Q8_0's -128, against activations at
 * +-127: kernels must agree with the float reference (no saturation). */
static void test_dot_extremes(void **state) {
    (void)state;
    rng_seed(11);
    for (size_t t = 0; t < N_WEIGHT_TYPES; t++) {
        const uint32_t wtype = weight_types[t];
        const type_traits *tr = type_get(wtype);
        if (tr->block_size == 1) continue;
        const int64_t nb = tr->block_size == 32 ? 12 : 3, n = nb * tr->block_size;
        const uint32_t at = quant_act_type(wtype);
        for (int rep = 0; rep < 30; rep++) {
            built_row r;
            build_row(&r, wtype, nb);
            if (rep % 3 == 0) /* saturate every level byte: all-ones quants */
                for (int64_t b = 0; b < nb; b++) {
                    uint8_t *p = r.bytes + b * tr->type_size;
                    switch (wtype) {
                    case LLMS_TYPE_Q8_0: memset(p + 2, rep % 2 ? 0x80 : 0x7F, 32); break;
                    case LLMS_TYPE_Q6_K: memset(p, 0xFF, 192); break;
                    case LLMS_TYPE_Q5_K: memset(p + 16, 0xFF, 160); break;
                    case LLMS_TYPE_Q4_K: memset(p + 16, 0xFF, 128); break;
                    case LLMS_TYPE_Q3_K: memset(p, 0xFF, 96); break;
                    case LLMS_TYPE_Q2_K: memset(p + 16, 0xFF, 64); break;
                    default: break;
                    }
                }
            float *xa = malloc((size_t)n * sizeof(float));
            void *a = malloc(row_bytes(at, n));
            assert_non_null(xa);
            assert_non_null(a);
            for (int64_t i = 0; i < n; i++) xa[i] = (rng_u32() & 1) ? 1.0f : -1.0f; /* all +-127 */
            quant_quantize_row(at, xa, a, n);
            double mag;
            const double want = ref_dot(wtype, r.bytes, a, n, &mag);
            for (int isa = 0; isa < QUANT_ISA_COUNT; isa++) {
                quant_dot_fn f = quant_vec_dot_get(wtype, isa);
                if (!f) continue;
                float got = NAN;
                f(n, r.bytes, a, &got);
                if (!(fabs(got - want) <= 2e-6 * mag + 1e-30))
                    fail_msg("%s %s extremes: %.9g want %.9g", tr->name, quant_isa_name(isa), (double)got, want);
            }
            free(xa);
            free(a);
            free_row(&r);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fp16_known),
        cmocka_unit_test(test_fp16_rounding_ties),
        cmocka_unit_test(test_fp16_exhaustive_decode),
        cmocka_unit_test(test_fp16_random_rounding),
        cmocka_unit_test(test_bf16_known),
        cmocka_unit_test(test_bf16_exhaustive_and_random),
        cmocka_unit_test(test_dequant_built_blocks),
        cmocka_unit_test(test_dequant_literal_blocks),
        cmocka_unit_test(test_dequant_scale_fields),
        cmocka_unit_test(test_dequant_isa_identical),
        cmocka_unit_test(test_quantize_isa_identical),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_roundtrip_special),
        cmocka_unit_test(test_quantized_blocks_valid),
        cmocka_unit_test(test_act_type),
        cmocka_unit_test(test_dot_float_types),
        cmocka_unit_test(test_dot_legacy_types),
        cmocka_unit_test(test_dot_k_types),
        cmocka_unit_test(test_dot_extremes),
    };
    return cmocka_run_group_tests_name("quant", tests, NULL, NULL);
}
