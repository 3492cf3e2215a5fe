/*
 * The context's side of the Vulkan backend, kept apart from vk.h so core
 * code need not see the Vulkan headers.
 */
#ifndef LLMS_VK_CTX_H
#define LLMS_VK_CTX_H

#include "llmserve.h"

struct vk_dev;

/* Chooses and opens the device for a context being created
 * (ctx->params.backend, device_index, device_memory_budget). On success
 * ctx->backend and ctx->vk are set; for LLMS_BACKEND_AUTO any failure or
 * the lack of a GPU leaves them at the CPU and returns LLMS_OK. An explicit
 * LLMS_BACKEND_VULKAN request returns the failure (LLMS_ERR_BACKEND,
 * LLMS_ERR_NOT_FOUND, LLMS_ERR_UNSUPPORTED, LLMS_ERR_DEVICE_MEMORY...). */
llms_status vk_ctx_open(llms_context *ctx);
void vk_ctx_close(struct vk_dev *d);

/* 1 once the whole forward pass runs on the device; until then AUTO never
 * picks Vulkan, so no default path depends on unfinished code. */
int vk_forward_ready(void);

struct llms_model;
struct fwd_batch;
/* backend_forward for a context on the Vulkan backend (see backend.h).
 * Uploads the model's weights on its first pass. */
llms_status vk_forward(struct llms_model *m, const struct fwd_batch *b, float *logits);
/* Frees a model's device buffers (model destruction). */
void vk_model_free(struct llms_model *m);
/* Keeps the model's KV blocks in device memory only (model load on a
 * Vulkan context, right after kv_pool_init: sets the pool's storage hooks,
 * see kv_resident.h), and frees them (model destruction, after every
 * block is released). */
llms_status vk_kv_attach(struct llms_model *m);
void vk_kv_free(struct llms_model *m);

#endif
