/*
 * Kernel wrappers: push-constant blocks laid out exactly as the shaders
 * declare them (std430 push blocks of 32-bit scalars), and grid sizes.
 */
#include "ops.h"
#include "../../core/error.h"

#define MAX_GROUPS 65535u   /* the Vulkan minimum for maxComputeWorkGroupCount */
#define MAX_HEAD_DIM 256u   /* attention.comp's MAXD */

int vk_weight_type_ok(uint32_t type) {
    return type == LLMS_TYPE_F32 || type == LLMS_TYPE_F16 || type == LLMS_TYPE_Q4_0 ||
           type == LLMS_TYPE_Q8_0 || type == LLMS_TYPE_Q4_K || type == LLMS_TYPE_Q6_K;
}

/* Element-wise grids: 64 per group, spilling into y past MAX_GROUPS. */
static void grid_1d(uint64_t n, uint32_t *gx, uint32_t *gy) {
    uint64_t groups = (n + 63) / 64;
    if (groups == 0) groups = 1;
    *gx = groups < MAX_GROUPS ? (uint32_t)groups : MAX_GROUPS;
    *gy = (uint32_t)((groups + *gx - 1) / *gx);
}

static llms_status check_mat(const vk_mat *w) {
    if (!vk_weight_type_ok(w->type))
        return err_set(LLMS_ERR_UNSUPPORTED, "Vulkan: weight type %u not supported", w->type);
    return LLMS_OK;
}

llms_status vk_op_matvec(vk_dev *d, const vk_mat *w, const vk_buf *x, uint32_t x_stride, uint32_t n_tok,
                         const vk_buf *y, uint32_t y_stride) {
    llms_status st = check_mat(w);
    if (st != LLMS_OK) return st;
    struct { uint32_t rows, cols, row_bytes, w_off, x_stride, y_stride; } pc = {
        w->rows, w->cols, w->row_bytes, w->w_off, x_stride, y_stride};
    const vk_buf *b[3] = {w->buf, x, y};
    uint32_t gx = w->rows < MAX_GROUPS ? w->rows : MAX_GROUPS;
    uint32_t gy = (w->rows + gx - 1) / gx;
    /* The subgroup reduction where the device has it, else shared memory. */
    return vk_dispatch(d, d->subgroup_arith ? "matvec_sg" : "matvec", w->type, b, 3, &pc, sizeof pc, gx, gy, n_tok);
}

llms_status vk_op_matmul(vk_dev *d, const vk_mat *w, const vk_buf *x, uint32_t x_stride, uint32_t n_tok,
                         const vk_buf *y, uint32_t y_stride) {
    llms_status st = check_mat(w);
    if (st != LLMS_OK) return st;
    struct { uint32_t rows, cols, row_bytes, w_off, x_stride, y_stride, n_tok; } pc = {
        w->rows, w->cols, w->row_bytes, w->w_off, x_stride, y_stride, n_tok};
    const vk_buf *b[3] = {w->buf, x, y};
    /* Cooperative matrices where the device passed the self-check
     * (coopmat.c), else the portable 16x16 tiles. */
    const char *shader = d->coopmat ? d->coopmat_shader : "matmul";
    uint32_t tile = d->coopmat ? d->coopmat_tile : 16;
    return vk_dispatch(d, shader, w->type, b, 3, &pc, sizeof pc, (w->rows + tile - 1) / tile,
                       (n_tok + tile - 1) / tile, 1);
}

llms_status vk_op_rmsnorm(vk_dev *d, const vk_buf *x, const vk_buf *g, const vk_buf *out, uint32_t n,
                          uint32_t stride, uint32_t n_rows, float eps) {
    struct { uint32_t n, stride; float eps; } pc = {n, stride, eps};
    const vk_buf *b[3] = {x, g, out};
    return vk_dispatch(d, "rmsnorm", 0, b, 3, &pc, sizeof pc, n_rows, 1, 1);
}

llms_status vk_op_rope(vk_dev *d, const vk_buf *v, const vk_buf *cs, uint32_t n_tok, uint32_t n_heads,
                       uint32_t head_dim, uint32_t n_rot, int neox, uint32_t stride) {
    if (n_rot > head_dim || n_rot % 2) return err_set(LLMS_ERR_INVALID_ARGUMENT, "rope: bad n_rot %u", n_rot);
    struct { uint32_t n_heads, head_dim, n_rot, neox, stride; } pc = {n_heads, head_dim, n_rot, neox ? 1u : 0u,
                                                                     stride};
    const vk_buf *b[2] = {v, cs};
    uint32_t pairs = n_rot / 2 * n_heads;
    return vk_dispatch(d, "rope", 0, b, 2, &pc, sizeof pc, (pairs + 63) / 64, n_tok, 1);
}

llms_status vk_op_swiglu(vk_dev *d, const vk_buf *g, const vk_buf *u, const vk_buf *out, uint32_t n) {
    struct { uint32_t n; } pc = {n};
    const vk_buf *b[3] = {g, u, out};
    uint32_t gx, gy;
    grid_1d(n, &gx, &gy);
    return vk_dispatch(d, "swiglu", 0, b, 3, &pc, sizeof pc, gx, gy, 1);
}

llms_status vk_op_add(vk_dev *d, const vk_buf *x, const vk_buf *y, uint32_t n) {
    struct { uint32_t n; } pc = {n};
    const vk_buf *b[2] = {x, y};
    uint32_t gx, gy;
    grid_1d(n, &gx, &gy);
    return vk_dispatch(d, "add", 0, b, 2, &pc, sizeof pc, gx, gy, 1);
}

llms_status vk_op_softmax(vk_dev *d, const vk_buf *x, uint32_t n, uint32_t stride, uint32_t n_rows) {
    struct { uint32_t n, stride; } pc = {n, stride};
    const vk_buf *b[1] = {x};
    return vk_dispatch(d, "softmax", 0, b, 1, &pc, sizeof pc, n_rows, 1, 1);
}

llms_status vk_op_attention(vk_dev *d, const vk_buf *q, const vk_buf *kv, const vk_buf *tables,
                            const vk_buf *tok_info, const vk_buf *out, const vk_attn_args *a) {
    if (a->head_dim > MAX_HEAD_DIM || a->n_head_kv == 0 || a->n_head % a->n_head_kv)
        return err_set(LLMS_ERR_UNSUPPORTED, "Vulkan attention: head_dim %u / heads %u:%u not supported",
                       a->head_dim, a->n_head, a->n_head_kv);
    struct { uint32_t n_head, n_head_kv, head_dim, layer, kv_dim, block_floats; float scale; } pc = {
        a->n_head, a->n_head_kv, a->head_dim, a->layer, a->kv_dim, a->block_floats, a->scale};
    const vk_buf *b[5] = {q, kv, tables, tok_info, out};
    return vk_dispatch(d, "attention", 0, b, 5, &pc, sizeof pc, a->n_head, a->n_tok, 1);
}

llms_status vk_op_kv_store(vk_dev *d, const vk_buf *k, const vk_buf *v, const vk_buf *kv, const vk_buf *tables,
                           const vk_buf *tok_info, uint32_t n_tok, uint32_t kv_dim, uint32_t layer,
                           uint32_t block_floats) {
    struct { uint32_t kv_dim, layer, block_floats, n_tok; } pc = {kv_dim, layer, block_floats, n_tok};
    const vk_buf *b[5] = {k, v, kv, tables, tok_info};
    return vk_dispatch(d, "kv_store", 0, b, 5, &pc, sizeof pc, (kv_dim + 63) / 64, n_tok, 1);
}

llms_status vk_op_add_bias(vk_dev *d, const vk_buf *y, const vk_buf *bias, uint32_t n, uint32_t n_tok) {
    struct { uint32_t n; } pc = {n};
    const vk_buf *b[2] = {y, bias};
    return vk_dispatch(d, "add_bias", 0, b, 2, &pc, sizeof pc, (n + 63) / 64, n_tok, 1);
}

llms_status vk_op_copy(vk_dev *d, const vk_buf *src, const vk_buf *dst, const VkBufferCopy *regions,
                       uint32_t n_regions) {
    if (!d->recording) return err_set(LLMS_ERR_INTERNAL, "vk_op_copy outside vk_begin");
    if (n_regions == 0) return LLMS_OK;
    d->vkCmdCopyBuffer(d->cmd, src->buf, dst->buf, n_regions, regions);
    VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                          .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT,
                          .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT};
    d->vkCmdPipelineBarrier(d->cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1,
                            &mb, 0, NULL, 0, NULL);
    return LLMS_OK;
}
