/*
 * The kernels as recorded dispatches (between vk_begin and vk_submit).
 * Shapes follow the CPU backend: activations are float rows with a stride
 * in floats; weights are GGUF rows of `row_bytes` at byte offset w_off of
 * their buffer.
 */
#ifndef LLMS_VK_OPS_H
#define LLMS_VK_OPS_H

#include "vk.h"

/* 1 if the matrix kernels dequantize this weight type. */
int vk_weight_type_ok(uint32_t type);

typedef struct vk_mat {
    const vk_buf *buf;
    uint32_t w_off, type, rows, cols, row_bytes;
} vk_mat;

/* y[t][r] = W[r] . x[t] for t < n_tok: one workgroup per output (decode). */
llms_status vk_op_matvec(vk_dev *d, const vk_mat *w, const vk_buf *x, uint32_t x_stride, uint32_t n_tok,
                         const vk_buf *y, uint32_t y_stride);
/* The same with shared-memory tiles (prefill): matmul_coopmat.comp's 64x64
 * cooperative-matrix tiles where d->coopmat, else matmul.comp's 16x16. */
llms_status vk_op_matmul(vk_dev *d, const vk_mat *w, const vk_buf *x, uint32_t x_stride, uint32_t n_tok,
                         const vk_buf *y, uint32_t y_stride);
llms_status vk_op_rmsnorm(vk_dev *d, const vk_buf *x, const vk_buf *g, const vk_buf *out, uint32_t n,
                          uint32_t stride, uint32_t n_rows, float eps);
/* In place on v ([n_tok] rows of `stride` floats holding n_heads heads);
 * cs holds [n_tok][n_rot/2] (cos, sin) pairs. */
llms_status vk_op_rope(vk_dev *d, const vk_buf *v, const vk_buf *cs, uint32_t n_tok, uint32_t n_heads,
                       uint32_t head_dim, uint32_t n_rot, int neox, uint32_t stride);
llms_status vk_op_swiglu(vk_dev *d, const vk_buf *g, const vk_buf *u, const vk_buf *out, uint32_t n);
llms_status vk_op_add(vk_dev *d, const vk_buf *x, const vk_buf *y, uint32_t n);
llms_status vk_op_softmax(vk_dev *d, const vk_buf *x, uint32_t n, uint32_t stride, uint32_t n_rows);

/* Attention over the paged KV cache. tok_info holds [n_tok] (pos, offset
 * of the token's block table in `tables`) pairs; tables hold block indices
 * into `kv`, whose blocks are block_floats apart. */
typedef struct vk_attn_args {
    uint32_t n_tok, n_head, n_head_kv, head_dim, layer, kv_dim, block_floats;
    float scale;
} vk_attn_args;
llms_status vk_op_attention(vk_dev *d, const vk_buf *q, const vk_buf *kv, const vk_buf *tables,
                            const vk_buf *tok_info, const vk_buf *out, const vk_attn_args *a);

/* Stores the pass's K and V rows ([n_tok][kv_dim]) into the paged cache
 * for `layer` (tables and tok_info as for attention). */
llms_status vk_op_kv_store(vk_dev *d, const vk_buf *k, const vk_buf *v, const vk_buf *kv, const vk_buf *tables,
                           const vk_buf *tok_info, uint32_t n_tok, uint32_t kv_dim, uint32_t layer,
                           uint32_t block_floats);
/* y[t][i] += b[i] for n_tok rows of n. */
llms_status vk_op_add_bias(vk_dev *d, const vk_buf *y, const vk_buf *b, uint32_t n, uint32_t n_tok);
/* Row copies inside the command buffer (regions in bytes), then a barrier. */
llms_status vk_op_copy(vk_dev *d, const vk_buf *src, const vk_buf *dst, const VkBufferCopy *regions,
                       uint32_t n_regions);

#endif
