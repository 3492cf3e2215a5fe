#include "kv_resident.h"

#include <stdio.h>
#include <string.h>

#include "vk_ctx.h"
#include "../backend.h"
#include "../../core/error.h"
#include "../../kvcache/kv.h"
#include "../../model/model.h"

static llms_status queue_op(vk_kv *kv, uint32_t dst, uint32_t src) {
    if (kv->n_ops == kv->cap_ops) {
        uint32_t cap = kv->cap_ops ? kv->cap_ops * 2 : 64;
        vk_kv_op *o = xrealloc_array(kv->a, kv->ops, cap, sizeof *o);
        if (!o) return ERR_OOM();
        kv->ops = o;
        kv->cap_ops = cap;
    }
    kv->ops[kv->n_ops++] = (vk_kv_op){dst, src};
    return LLMS_OK;
}

/* The free slots are a binary min-heap: a new block takes the lowest free
 * slot, so live blocks gather at the bottom of the storage and the slots
 * at the top are the first to be all free again, which is what lets
 * vk_kv_trim give memory back by truncating (see there). O(log n) per
 * allocation or release, under the store lock. */
static void heap_push(vk_kv *kv, uint32_t slot) {
    uint32_t *h = kv->free_slots, i = kv->n_free++;
    while (i) {
        uint32_t up = (i - 1) / 2;
        if (h[up] <= slot) break;
        h[i] = h[up];
        i = up;
    }
    h[i] = slot;
}

static uint32_t heap_pop(vk_kv *kv) {
    uint32_t *h = kv->free_slots, top = h[0], last = h[--kv->n_free], n = kv->n_free, i = 0;
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && h[c + 1] < h[c]) c++;
        if (h[c] >= last) break;
        h[i] = h[c];
        i = c;
    }
    if (n) h[i] = last;
    return top;
}

/* Every layer's buffer to at least `target` slots, keeping the contents.
 * Device and store locks held. A failure part-way leaves some layers
 * larger than kv->cap, which is harmless: the next attempt skips them. */
static llms_status grow_to(vk_kv *kv, uint32_t target) {
    vk_dev *d = kv->d;
    uint32_t *fs = xrealloc_array(kv->a, kv->free_slots, target, sizeof *fs);
    if (!fs) return ERR_OOM();
    kv->free_slots = fs;
    for (uint32_t l = 0; l < kv->n_layer; l++) {
        if (kv->layer_cap[l] >= target) continue;
        vk_buf nb;
        llms_status st = vk_buf_create(d, (uint64_t)target * kv->slot_bytes, 0, &nb);
        if (st != LLMS_OK) return st;
        if (kv->layer_cap[l] &&
            (st = vk_buf_copy_now(d, &kv->bufs[l], 0, &nb, 0, (uint64_t)kv->layer_cap[l] * kv->slot_bytes))) {
            vk_buf_destroy(d, &nb);
            return st;
        }
        vk_buf_destroy(d, &kv->bufs[l]);
        kv->bufs[l] = nb;
        kv->layer_cap[l] = target;
    }
    kv->cap = target;
    return LLMS_OK;
}

/* Room for one more slot: double, or near the budget take smaller steps
 * (the old and the new buffer of a layer coexist during its copy). */
static llms_status grow(vk_kv *kv) {
    uint32_t want = kv->cap + 1;
    if (want > kv->max_slots)
        return err_set(LLMS_ERR_DEVICE_MEMORY,
                       "KV cache: %u blocks fill the device's largest storage buffer (%u bytes per layer)",
                       kv->cap, kv->d->props.limits.maxStorageBufferRange);
    uint32_t tries[3] = {kv->cap * 2, kv->cap + kv->cap / 4, want};
    llms_status st = LLMS_OK;
    uint32_t last = UINT32_MAX;
    for (int i = 0; i < 3; i++) {
        uint32_t t = tries[i] > kv->max_slots ? kv->max_slots : tries[i];
        if (t < want || t >= last) continue;
        last = t;
        st = grow_to(kv, t);
        if (st != LLMS_ERR_DEVICE_MEMORY) break;
    }
    if (st == LLMS_ERR_DEVICE_MEMORY) {
        char why[256];
        snprintf(why, sizeof why, "%s", err_message());
        return err_set(st, "KV cache: no device memory for %u more block(s) of %llu bytes (%s)", want - kv->cap,
                       (unsigned long long)(kv->slot_bytes * kv->n_layer), why);
    }
    return st;
}

static llms_status hook_alloc(void *user, uint32_t *slot) {
    vk_kv *kv = user;
    int locked_dev = 0;
    llms_status st = LLMS_OK;
    pthread_mutex_lock(&kv->lock);
    if (!kv->n_free && kv->n_hw == kv->cap) {
        /* Growing needs the device: take its lock first (lock order). The
         * weights go first, without the store lock (uploading them is long). */
        pthread_mutex_unlock(&kv->lock);
        pthread_mutex_lock(&kv->d->lock);
        locked_dev = 1;
        st = vk_model_ensure(kv->m);
        pthread_mutex_lock(&kv->lock);
    }
    if (st == LLMS_OK && !kv->n_free && kv->n_hw == kv->cap) st = grow(kv);
    if (st == LLMS_OK) {
        /* Free slots all lie below n_hw: the lowest free one first. */
        uint32_t s = kv->n_free ? heap_pop(kv) : kv->n_hw++;
        /* A reused slot holds an earlier tenant's rows. */
        if ((st = queue_op(kv, s, VK_KV_ZERO)) != LLMS_OK) heap_push(kv, s);
        else *slot = s;
    }
    pthread_mutex_unlock(&kv->lock);
    if (locked_dev) pthread_mutex_unlock(&kv->d->lock);
    return st;
}

static llms_status hook_copy(void *user, uint32_t dst, uint32_t src) {
    vk_kv *kv = user;
    pthread_mutex_lock(&kv->lock);
    llms_status st = queue_op(kv, dst, src);
    pthread_mutex_unlock(&kv->lock);
    return st;
}

static void hook_release(void *user, uint32_t slot) {
    vk_kv *kv = user;
    pthread_mutex_lock(&kv->lock);
    /* free_slots has room for every slot below cap. */
    heap_push(kv, slot);
    pthread_mutex_unlock(&kv->lock);
}

static const kv_storage_ops k_ops = {sizeof(float), hook_alloc, hook_copy, hook_release};

llms_status vk_kv_attach(llms_model *m) {
    vk_dev *d = m->ctx->vk;
    if (!d) return err_set(LLMS_ERR_STATE, "Vulkan KV cache without a device");
    vk_kv *kv = xcalloc(m->alloc, 1, sizeof *kv);
    if (!kv) return ERR_OOM();
    kv->d = d;
    kv->m = m;
    kv->a = m->alloc;
    kv->n_layer = m->hp.n_layer ? m->hp.n_layer : 1;
    kv->slot_bytes = (uint64_t)2 * KV_BLOCK_TOKENS * m->kv.kv_dim * sizeof(float);
    if (kv->slot_bytes == 0) kv->slot_bytes = 4;
    uint64_t range = d->props.limits.maxStorageBufferRange;
    uint64_t ms = range / kv->slot_bytes;
    kv->max_slots = ms > UINT32_MAX - 1 ? UINT32_MAX - 1 : (uint32_t)ms;
    kv->bufs = xcalloc(m->alloc, kv->n_layer, sizeof *kv->bufs);
    kv->layer_cap = xcalloc(m->alloc, kv->n_layer, sizeof *kv->layer_cap);
    if (!kv->bufs || !kv->layer_cap || pthread_mutex_init(&kv->lock, NULL) != 0) {
        xfree(m->alloc, kv->bufs);
        xfree(m->alloc, kv->layer_cap);
        xfree(m->alloc, kv);
        return err_set(LLMS_ERR_NO_MEMORY, "cannot set up the Vulkan KV cache");
    }
    m->vk_kv = kv;
    kv_pool_set_storage(&m->kv, &k_ops, kv);
    return LLMS_OK;
}

void vk_kv_free(llms_model *m) {
    vk_kv *kv = m->vk_kv;
    if (!kv) return;
    kv_pool_set_storage(&m->kv, NULL, NULL);
    pthread_mutex_lock(&kv->d->lock);
    for (uint32_t l = 0; l < kv->n_layer; l++) vk_buf_destroy(kv->d, &kv->bufs[l]);
    pthread_mutex_unlock(&kv->d->lock);
    pthread_mutex_destroy(&kv->lock);
    xfree(m->alloc, kv->bufs);
    xfree(m->alloc, kv->layer_cap);
    xfree(m->alloc, kv->free_slots);
    xfree(m->alloc, kv->ops);
    xfree(m->alloc, kv);
    m->vk_kv = NULL;
}

/* ---- giving memory back ----------------------------------------------------
 *
 * The storage only grows while blocks are allocated; vk_kv_trim shrinks it
 * at quiet moments (the scheduler going idle, a prefix-cache clear,
 * llms_scheduler_destroy: see backend_kv_trim's callers), and only when at
 * most a quarter of the slots are in use, so a busy model never pays for
 * it and a shrink is not undone by the next few allocations.
 *
 * It truncates a free tail rather than compacting: every slot at or above
 * the new capacity must be free and named by no queued operation. Moving
 * live slots down would mean rewriting kv_block.slot in blocks that only
 * the host pool can reach (the storage hooks never see the blocks), while
 * the pool reads slots without the device lock (copy-on-write queues
 * copy(dst, src) from any thread), and rewriting the slot numbers in the
 * queued operations too. Truncation needs none of that, and the lowest-
 * slot-first allocation (the heap above) keeps live blocks at the bottom,
 * so the tail frees up once the sessions that held it end; a long-lived
 * block high up only delays the shrink until it is released.
 *
 * Under the device lock, as growing: nothing is recording then (a pass
 * records and submits its command buffer under that lock, and the queued
 * operations are recorded at the start of the next pass, against the
 * buffers of that moment), so a layer's buffer can be replaced by a
 * smaller copy (vk_buf_copy_now, one layer at a time so that at most one
 * small buffer is extra) or, with nothing left in use, simply freed. */

/* One past the highest slot in use or named by a queued operation; 0 if
 * none. UINT32_MAX if the scratch bitmap cannot be allocated. Store lock. */
static uint32_t needed_top(vk_kv *kv) {
    uint32_t hi = 0;
    if (kv->n_hw) {
        uint8_t *free_map = xcalloc(kv->a, kv->n_hw, 1);
        if (!free_map) return UINT32_MAX;
        for (uint32_t i = 0; i < kv->n_free; i++) free_map[kv->free_slots[i]] = 1;
        for (uint32_t s = kv->n_hw; s-- > 0;)
            if (!free_map[s]) {
                hi = s + 1;
                break;
            }
        xfree(kv->a, free_map);
    }
    for (uint32_t i = 0; i < kv->n_ops; i++) {
        const vk_kv_op *o = &kv->ops[i];
        if (o->dst + 1 > hi) hi = o->dst + 1;
        if (o->src != VK_KV_ZERO && o->src + 1 > hi) hi = o->src + 1;
    }
    return hi;
}

void vk_kv_trim(vk_kv *kv) {
    vk_dev *d = kv->d;
    /* A failed shrink is no error of the caller's: its message stays. */
    char saved[512];
    snprintf(saved, sizeof saved, "%s", err_message());
    pthread_mutex_lock(&d->lock);
    pthread_mutex_lock(&kv->lock);
    /* A lost device keeps its memory until the context goes: nothing to
     * copy with, and no later pass can use it anyway. */
    if (d->lost) {
        pthread_mutex_unlock(&kv->lock);
        pthread_mutex_unlock(&d->lock);
        return;
    }
    uint32_t live = kv->n_hw - kv->n_free, target = kv->cap;
    if ((uint64_t)live * 4 <= kv->cap) {
        uint32_t hi = needed_top(kv);
        if (hi <= kv->cap / 2) target = hi;
    }
    if (target < kv->cap) {
        /* The allocator first: slots from target up are gone. */
        uint32_t n = 0;
        for (uint32_t i = 0; i < kv->n_free; i++)
            if (kv->free_slots[i] < target) kv->free_slots[n++] = kv->free_slots[i];
        kv->n_free = 0;
        for (uint32_t i = 0; i < n; i++) heap_push(kv, kv->free_slots[i]);
        if (kv->n_hw > target) kv->n_hw = target;
        kv->cap = target;
    }
    /* Then the buffers, including layers an earlier failed grow or trim
     * left larger than cap. A layer that cannot be shrunk now (no memory
     * for its smaller copy, a lost device) keeps its buffer, which is
     * harmless: grow_to skips it and the next trim tries again. */
    for (uint32_t l = 0; l < kv->n_layer; l++) {
        if (kv->layer_cap[l] <= kv->cap) continue;
        if (kv->cap == 0) {
            vk_buf_destroy(d, &kv->bufs[l]);
            kv->layer_cap[l] = 0;
            continue;
        }
        vk_buf nb;
        uint64_t bytes = (uint64_t)kv->cap * kv->slot_bytes;
        if (vk_buf_create(d, bytes, 0, &nb) != LLMS_OK) continue;
        if (vk_buf_copy_now(d, &kv->bufs[l], 0, &nb, 0, bytes) != LLMS_OK) {
            vk_buf_destroy(d, &nb);
            continue;
        }
        vk_buf_destroy(d, &kv->bufs[l]);
        kv->bufs[l] = nb;
        kv->layer_cap[l] = kv->cap;
    }
    if (saved[0]) err_set(LLMS_OK, "%s", saved);
    else err_clear();
    pthread_mutex_unlock(&kv->lock);
    pthread_mutex_unlock(&d->lock);
}

uint64_t vk_kv_device_bytes(vk_kv *kv) {
    pthread_mutex_lock(&kv->lock);
    uint64_t b = 0;
    for (uint32_t l = 0; l < kv->n_layer; l++) b += (uint64_t)kv->layer_cap[l] * kv->slot_bytes;
    pthread_mutex_unlock(&kv->lock);
    return b;
}

uint64_t backend_kv_capacity(llms_model *m) {
    vk_kv *kv = m->vk_kv;
    if (!kv) return UINT64_MAX;
    pthread_mutex_lock(&kv->lock);
    uint64_t slots = kv->cap;
    pthread_mutex_unlock(&kv->lock);
    return slots * kv_block_bytes(&m->kv);
}

uint64_t backend_kv_device_bytes(llms_model *m) { return m->vk_kv ? vk_kv_device_bytes(m->vk_kv) : 0; }

void backend_kv_trim(llms_model *m) {
    if (m->vk_kv) vk_kv_trim(m->vk_kv);
}

static void barrier(vk_dev *d, VkPipelineStageFlags src_stage, VkAccessFlags src, VkPipelineStageFlags dst_stage,
                    VkAccessFlags dst) {
    VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER, .srcAccessMask = src, .dstAccessMask = dst};
    d->vkCmdPipelineBarrier(d->cmd, src_stage, dst_stage, 0, 1, &mb, 0, NULL, 0, NULL);
}

llms_status vk_kv_record_ops(vk_kv *kv, uint32_t *n_taken) {
    vk_dev *d = kv->d;
    *n_taken = 0;
    if (!d->recording) return err_set(LLMS_ERR_INTERNAL, "vk_kv_record_ops outside vk_begin");
    pthread_mutex_lock(&kv->lock);
    uint32_t n = kv->n_ops;
    if (n) {
        const VkPipelineStageFlags xfer = VK_PIPELINE_STAGE_TRANSFER_BIT;
        const VkAccessFlags rw = VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
        /* Earlier passes' shader writes (and reads) of these slots first. */
        barrier(d, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | xfer, VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
                xfer, rw);
        for (uint32_t i = 0; i < n; i++) {
            const vk_kv_op *o = &kv->ops[i];
            for (uint32_t l = 0; l < kv->n_layer; l++) {
                if (o->src == VK_KV_ZERO) {
                    d->vkCmdFillBuffer(d->cmd, kv->bufs[l].buf, (uint64_t)o->dst * kv->slot_bytes, kv->slot_bytes, 0);
                } else {
                    VkBufferCopy c = {(uint64_t)o->src * kv->slot_bytes, (uint64_t)o->dst * kv->slot_bytes,
                                      kv->slot_bytes};
                    d->vkCmdCopyBuffer(d->cmd, kv->bufs[l].buf, kv->bufs[l].buf, 1, &c);
                }
            }
            /* The queue is in program order: a slot may be zeroed, copied
             * from, freed and zeroed again for a new block. */
            if (i + 1 < n) barrier(d, xfer, VK_ACCESS_TRANSFER_WRITE_BIT, xfer, rw);
        }
        barrier(d, xfer, VK_ACCESS_TRANSFER_WRITE_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT);
    }
    pthread_mutex_unlock(&kv->lock);
    *n_taken = n;
    return LLMS_OK;
}

void vk_kv_retire(vk_kv *kv, uint32_t n_taken) {
    if (!n_taken) return;
    pthread_mutex_lock(&kv->lock);
    memmove(kv->ops, kv->ops + n_taken, (kv->n_ops - n_taken) * sizeof *kv->ops);
    kv->n_ops -= n_taken;
    pthread_mutex_unlock(&kv->lock);
}
