/*
 * Private to src/quant: the per-ISA tables of kernels, indexed by GGUF type
 * number. A NULL entry means "no kernel of this level for the type": the
 * dispatchers then take the next level down, ending at the scalar
 * reference, which has every type.
 */
#ifndef LLMS_QUANT_KERNELS_H
#define LLMS_QUANT_KERNELS_H

#include "quant.h"

/* One past the largest type number with a kernel (BF16 = 30). */
#define QUANT_TYPE_SLOTS 31

typedef struct quant_dot_table {
    quant_dot_fn fn[QUANT_TYPE_SLOTS];
} quant_dot_table;

typedef struct quant_deq_table {
    quant_deq_fn fn[QUANT_TYPE_SLOTS];
} quant_deq_table;

typedef struct quant_q_table {
    quant_q_fn fn[QUANT_TYPE_SLOTS];
} quant_q_table;

extern const quant_dot_table quant_dot_scalar; /* dot.c */
extern const quant_q_table quant_q_scalar;     /* quantize.c */
extern const quant_deq_table quant_deq_scalar; /* quant.c */

/* x86 kernels need GCC or Clang (target attributes, cpuid). */
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define QUANT_HAVE_X86 1
extern const quant_dot_table quant_dot_avx2, quant_dot_avx512;
extern const quant_deq_table quant_deq_avx2;
extern const quant_q_table quant_q_avx2;
/* AVX2 + FMA + F16C, with the OS saving YMM state. */
int quant_cpu_has_avx2(void);
/* AVX512F/BW/VL + AVX512_VNNI, with the OS saving ZMM state. */
int quant_cpu_has_avx512vnni(void);
#else
#define QUANT_HAVE_X86 0
#endif

#endif
