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
 * ctx->backend and ctx->vk are set.
 *   CPU: no Vulkan call at all.
 *   AUTO, device_index -1: the device vk_select picks (a discrete, then an
 *     integrated, then a virtual GPU that has what the shaders need; never
 *     a CPU driver such as lavapipe), else the CPU. The choice is probed
 *     once per process (vk_auto_device).
 *   AUTO, device_index >= 0: that device whatever its type, else the CPU.
 *   AUTO falls back to the CPU after any failure but the host allocator's
 *     (LLMS_ERR_NO_MEMORY), logging the reason at LLMS_LOG_WARN.
 *   VULKAN: the same choice with CPU drivers allowed last, and every
 *     failure returned: LLMS_ERR_BACKEND (no loader, driver or device, or
 *     vkCreateDevice failed), LLMS_ERR_NOT_FOUND (device_index out of
 *     range), LLMS_ERR_UNSUPPORTED (the device lacks a VK_REQ_*, named in
 *     the message), LLMS_ERR_DEVICE_MEMORY, LLMS_ERR_DEVICE_LOST. */
llms_status vk_ctx_open(llms_context *ctx);
void vk_ctx_close(struct vk_dev *d);

/* 1: the whole forward pass runs on the device, so AUTO may pick a GPU.
 * Kept as the one switch to take AUTO off Vulkan should that be needed. */
int vk_forward_ready(void);

struct llms_model;
struct fwd_batch;
/* backend_forward for a context on the Vulkan backend (see backend.h).
 * Uploads the model's weights on its first pass. */
llms_status vk_forward(struct llms_model *m, const struct fwd_batch *b, float *logits);
/* LLMS_OK if the shaders cover the whole model (weight types, sizes, head
 * size), else LLMS_ERR_UNSUPPORTED naming what they do not (model load). */
llms_status vk_model_check(const struct llms_model *m);
/* Frees a model's device buffers (model destruction). */
void vk_model_free(struct llms_model *m);
/* Keeps the model's KV blocks in device memory only (model load on a
 * Vulkan context, right after kv_pool_init: sets the pool's storage hooks,
 * see kv_resident.h), and frees them (model destruction, after every
 * block is released). */
llms_status vk_kv_attach(struct llms_model *m);
void vk_kv_free(struct llms_model *m);

#endif
