/*
 * The paged KV cache of a model on a Vulkan context, resident in device
 * memory. The host pool (src/kvcache) keeps the refcounts and block tables;
 * through its storage hooks each block is a slot here, and its floats exist
 * only on the device.
 *
 * Layout: one storage buffer per layer, each an array of slots of
 * 2 * KV_BLOCK_TOKENS * kv_dim floats (K rows, then V rows): a block's
 * layer-l part of the host layout of src/kvcache/kv.h. Per-layer buffers
 * keep each binding under the device's maxStorageBufferRange (often 4 GiB)
 * and each allocation under its maxMemoryAllocationSize for large models,
 * and let the shaders address one layer as if it were layer 0.
 *
 * Capacity starts at what the first reservation needs and grows by
 * doubling (falling back to smaller steps near the device memory budget)
 * with a device-side copy, under the device lock. The model's weights are
 * uploaded before the first KV storage, so that a budget that fits the
 * weights never loses to a session's first reservation.
 * Zeroing a new slot and copying a slot (copy-on-write) are queued and
 * recorded at the start of the next forward pass's command buffer, so
 * neither costs a submission of its own.
 *
 * At quiet moments (vk_kv_trim) the storage shrinks again, by truncating
 * a free tail, when at most a quarter of its slots are in use; new blocks
 * take the lowest free slot so that the tail frees up.
 *
 * Threads: the hooks may be called from any thread; a store lock guards the
 * slot lists and the queue, the device lock guards the buffers. Lock order:
 * device lock, then store lock.
 */
#ifndef LLMS_VK_KV_RESIDENT_H
#define LLMS_VK_KV_RESIDENT_H

#include "vk.h"

typedef struct vk_kv_op {
    uint32_t dst, src;             /* src == VK_KV_ZERO: fill dst with zeros */
} vk_kv_op;
#define VK_KV_ZERO UINT32_MAX

struct llms_model;

typedef struct vk_kv {
    vk_dev *d;
    struct llms_model *m;
    const lalloc *a;
    uint32_t n_layer;
    uint64_t slot_bytes;           /* one slot of one layer's buffer */
    uint32_t max_slots;            /* the device's storage-buffer range allows */
    vk_buf *bufs;                  /* [n_layer] */
    uint32_t *layer_cap;           /* [n_layer] slots each buffer holds */
    uint32_t cap;                  /* slots every layer holds */
    uint32_t n_hw;                 /* slots handed out at least once */
    uint32_t *free_slots;          /* [cap] a min-heap of the free slots below n_hw */
    uint32_t n_free;
    vk_kv_op *ops;                 /* queued for the next pass, in order */
    uint32_t n_ops, cap_ops;
    pthread_mutex_t lock;
} vk_kv;

/* Records the queued zero/copy operations into the recording command
 * buffer, followed by a barrier for the shaders. Device lock held.
 * *n_taken is how many were recorded: pass it to vk_kv_retire once the
 * submission succeeded (on failure they stay queued for the next pass). */
llms_status vk_kv_record_ops(vk_kv *kv, uint32_t *n_taken);
void vk_kv_retire(vk_kv *kv, uint32_t n_taken);

/* Gives device memory back: if at most a quarter of the slots are in use
 * and every slot from some index up to the capacity, at most half of it,
 * is free and named by no queued operation, the buffers shrink to that
 * index (to nothing if no slot is in use). Takes the device lock, then the
 * store lock; never call it with either held (or while recording). Best
 * effort: a shrink that fails leaves the storage as it was. */
void vk_kv_trim(vk_kv *kv);
/* Device memory the storage holds now (bytes, every layer). */
uint64_t vk_kv_device_bytes(vk_kv *kv);

/* Uploads the model's weights if they are not on the device yet (forward.c).
 * Device lock held. */
llms_status vk_model_ensure(struct llms_model *m);

#endif
