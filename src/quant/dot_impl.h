/*
 * Private to src/quant: the per-ISA tables of dot kernels. A NULL entry
 * means "no kernel of this level for the type": the dispatcher in dot.c
 * then takes the next level down.
 */
#ifndef LLMS_QUANT_DOT_IMPL_H
#define LLMS_QUANT_DOT_IMPL_H

#include "quant.h"

typedef struct quant_dot_table {
    quant_dot_fn f32, f16, bf16;
    quant_dot_fn q4_0, q4_1, q5_0, q5_1, q8_0;
    quant_dot_fn q2_K, q3_K, q4_K, q5_K, q6_K;
} quant_dot_table;

extern const quant_dot_table quant_dot_scalar;

/* x86 kernels need GCC or Clang (target attributes, cpuid). */
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define QUANT_HAVE_X86 1
extern const quant_dot_table quant_dot_avx2;
extern const quant_dot_table quant_dot_avx512;
/* AVX2 + FMA + F16C, with the OS saving YMM state. */
int quant_cpu_has_avx2(void);
/* AVX512F/BW/VL + AVX512_VNNI, with the OS saving ZMM state. */
int quant_cpu_has_avx512vnni(void);
#else
#define QUANT_HAVE_X86 0
#endif

#endif
