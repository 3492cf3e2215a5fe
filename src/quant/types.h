/*
 * Tensor element types: block size and bytes per block, as in GGUF/GGML.
 * Shared by the GGUF reader (to validate tensor sizes) and the kernels.
 */
#ifndef LLMS_QUANT_TYPES_H
#define LLMS_QUANT_TYPES_H

#include <stdint.h>
#include <stddef.h>

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK8_1 32
#define QK_K 256
#define K_SCALE_SIZE 12

typedef struct type_traits {
    const char *name;     /* NULL: unknown or unsupported in files */
    uint32_t block_size;  /* elements per block */
    uint32_t type_size;   /* bytes per block */
} type_traits;

/* Traits of a GGUF type number, or NULL if unknown. */
const type_traits *type_get(uint32_t type);

/* Bytes of a row of n elements (n must be a multiple of the block size). */
static inline uint64_t type_row_bytes(const type_traits *t, uint64_t n) {
    return n / t->block_size * t->type_size;
}

#endif
