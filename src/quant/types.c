#include "types.h"

#include "llmserve.h"

/* Block layouts (bytes): Q4_0 = f16 d + 16 nibble bytes; Q4_1 adds f16 m;
 * Q5_* add 4 bytes of high bits; Q8_0 = f16 d + 32 int8; Q8_1 adds f16 s;
 * K-quants are 256-element super-blocks. */
static const type_traits traits[] = {
    [LLMS_TYPE_F32] = {"F32", 1, 4},
    [LLMS_TYPE_F16] = {"F16", 1, 2},
    [LLMS_TYPE_Q4_0] = {"Q4_0", QK4_0, 2 + QK4_0 / 2},
    [LLMS_TYPE_Q4_1] = {"Q4_1", QK4_1, 4 + QK4_1 / 2},
    [LLMS_TYPE_Q5_0] = {"Q5_0", QK5_0, 2 + 4 + QK5_0 / 2},
    [LLMS_TYPE_Q5_1] = {"Q5_1", QK5_1, 4 + 4 + QK5_1 / 2},
    [LLMS_TYPE_Q8_0] = {"Q8_0", QK8_0, 2 + QK8_0},
    [LLMS_TYPE_Q8_1] = {"Q8_1", QK8_1, 4 + QK8_1},
    [LLMS_TYPE_Q2_K] = {"Q2_K", QK_K, QK_K / 16 + QK_K / 4 + 2 + 2},
    [LLMS_TYPE_Q3_K] = {"Q3_K", QK_K, QK_K / 8 + QK_K / 4 + 12 + 2},
    [LLMS_TYPE_Q4_K] = {"Q4_K", QK_K, 2 + 2 + K_SCALE_SIZE + QK_K / 2},
    [LLMS_TYPE_Q5_K] = {"Q5_K", QK_K, 2 + 2 + K_SCALE_SIZE + QK_K / 8 + QK_K / 2},
    [LLMS_TYPE_Q6_K] = {"Q6_K", QK_K, QK_K / 2 + QK_K / 4 + QK_K / 16 + 2},
    [LLMS_TYPE_Q8_K] = {"Q8_K", QK_K, 4 + QK_K + QK_K / 16 * 2},
    [LLMS_TYPE_I8] = {"I8", 1, 1},
    [LLMS_TYPE_I16] = {"I16", 1, 2},
    [LLMS_TYPE_I32] = {"I32", 1, 4},
    [LLMS_TYPE_I64] = {"I64", 1, 8},
    [LLMS_TYPE_F64] = {"F64", 1, 8},
    [LLMS_TYPE_BF16] = {"BF16", 1, 2},
};

const type_traits *type_get(uint32_t type) {
    if (type >= sizeof traits / sizeof traits[0] || !traits[type].name) return NULL;
    return &traits[type];
}

LLMS_API const char *llms_type_name(int32_t type) {
    const type_traits *t = type < 0 ? NULL : type_get((uint32_t)type);
    return t ? t->name : NULL;
}
