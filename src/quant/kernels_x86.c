/*
 * x86 SIMD kernels: dot products and dequantization. The library is built
 * without -march flags, so each kernel carries a target attribute and the
 * dispatchers call it only after checking the CPU at run time. The kernel
 * bodies live in kernels_x86.inc, compiled here twice: once for AVX2 (+FMA,
 * F16C) and once more with AVX512-VNNI, where vpdpbusd on 256-bit vectors
 * replaces the maddubs + madd pair of the int8 dot products. Kernels that
 * gain nothing from VNNI exist only at the AVX2 level (the dispatchers fall
 * back to them). 512-bit vectors are not used: the decode loop is bound by
 * memory, and on current AMD cores they split into two 256-bit halves.
 */
/* The scalar and SIMD dequantizers promise bit-identical results, so a
 * multiply followed by an add must never become one fused operation, even
 * when the library is built with -march=native or in GNU C mode. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "kernels.h"

#if QUANT_HAVE_X86

#include <cpuid.h>
#include <immintrin.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "blocks.h"
#include "half.h"
#include "llmserve.h"

static int cpu_has_f16c(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    return (c >> 29) & 1;
}

/* __builtin_cpu_supports also checks that the OS saves the wide registers
 * (XGETBV), which a bare CPUID test would miss. Clang lacks "f16c" there,
 * so F16C comes from CPUID; it needs no OS state beyond AVX's. */
int quant_cpu_has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
}

int quant_cpu_has_avx512vnni(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
}

/* pshufb controls that spread two int16 scales over a 256-bit vector: for
 * group j, the low lane gets word 2j everywhere and the high lane word
 * 2j + 1 (the source holds the same 8 words in both lanes). The K-quants
 * with 16-element groups then scale the 16 maddubs pair sums of a
 * 32-element group with one vpmaddwd. */
#define QX_W2(w) (uint8_t)(2 * (w)), (uint8_t)(2 * (w) + 1)
#define QX_W8(w) QX_W2(w), QX_W2(w), QX_W2(w), QX_W2(w), QX_W2(w), QX_W2(w), QX_W2(w), QX_W2(w)
static const uint8_t qx_scale_shuf[4][32] __attribute__((aligned(32))) = {
    {QX_W8(0), QX_W8(1)},
    {QX_W8(2), QX_W8(3)},
    {QX_W8(4), QX_W8(5)},
    {QX_W8(6), QX_W8(7)},
};

/* pshufb controls that copy int16 word k to every position of both lanes:
 * the per-32 scales of Q4_K/Q5_K. */
#define QX_W16(w) QX_W8(w), QX_W8(w)
static const uint8_t qx_word_shuf[8][32] __attribute__((aligned(32))) = {
    {QX_W16(0)}, {QX_W16(1)}, {QX_W16(2)}, {QX_W16(3)},
    {QX_W16(4)}, {QX_W16(5)}, {QX_W16(6)}, {QX_W16(7)},
};

#define QX_CAT2(a, b) a##_##b
#define QX_CAT(a, b) QX_CAT2(a, b)
#define QX(name) QX_CAT(name, QX_SUFFIX)

#define QX_SUFFIX avx2
#define QX_TARGET __attribute__((target("avx2,fma,f16c")))
#define QX_VNNI 0
#include "kernels_x86.inc"
#undef QX_SUFFIX
#undef QX_TARGET
#undef QX_VNNI

#define QX_SUFFIX avx512
#define QX_TARGET __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define QX_VNNI 1
#include "kernels_x86.inc"
#undef QX_SUFFIX
#undef QX_TARGET
#undef QX_VNNI

#endif
