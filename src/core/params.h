/*
 * Size-prefixed parameter structs: the caller's struct may be older (shorter)
 * or newer (longer) than ours. Copy only the fields both know about, over the
 * defaults; a struct_size smaller than the leading size field is invalid.
 */
#ifndef LLMS_CORE_PARAMS_H
#define LLMS_CORE_PARAMS_H

#include <string.h>
#include <stdint.h>

/* dst must already hold the defaults. Returns 0 if src is invalid. */
static inline int params_merge(void *dst, size_t dst_size, const void *src) {
    if (!src) return 1;
    uint32_t n;
    memcpy(&n, src, sizeof n);
    if (n < sizeof(uint32_t)) return 0;
    size_t copy = n < dst_size ? n : dst_size;
    memcpy((char *)dst + sizeof(uint32_t), (const char *)src + sizeof(uint32_t),
           copy - sizeof(uint32_t));
    return 1;
}

/* Output structs: write only the first struct_size bytes the caller owns. */
static inline int params_emit(void *dst, const void *full, size_t full_size) {
    uint32_t n;
    memcpy(&n, dst, sizeof n);
    if (n < sizeof(uint32_t)) return 0;
    size_t copy = n < full_size ? n : full_size;
    memcpy((char *)dst + sizeof(uint32_t), (const char *)full + sizeof(uint32_t),
           copy - sizeof(uint32_t));
    return 1;
}

#endif
