/*
 * Paged KV cache. Keys and values live in fixed-size blocks of
 * KV_BLOCK_TOKENS positions; one block holds every layer's K and V for its
 * positions, so a sequence is described by a block table alone. Blocks are
 * reference-counted: forking a session shares its blocks, and a shared
 * block is copied before it is written (copy-on-write). The scheduler's
 * prefix cache builds on the same refcounts.
 *
 * Block layout (floats), T = KV_BLOCK_TOKENS, D = n_head_kv * head_dim:
 * for layer l, K at l*2*T*D as [D][T] (transposed: a block's T scores for
 * one query are one vector of FMAs, no horizontal sums) and V at
 * (l*2+1)*T*D as [T][D]. The CPU backend reads and writes these; a model
 * on the Vulkan backend keeps its blocks on the device (kv_resident). 
 *
 * Storage: by default a block's floats are host memory (`data`). A backend
 * that keeps the cache elsewhere (the Vulkan backend: device memory) sets
 * storage hooks on the pool before any block exists; blocks then hold a
 * slot index into the backend's storage instead (data == NULL) and the
 * pool calls the hooks where it would zero or copy host memory. The rest
 * of the library (sessions, scheduler, prefix cache) only moves refcounted
 * block pointers, so it works the same either way; only the forward passes
 * read or write block contents.
 */
#ifndef LLMS_KVCACHE_H
#define LLMS_KVCACHE_H

#include <pthread.h>
#include <stdint.h>

#include "llmserve.h"
#include "../core/alloc.h"

#define KV_BLOCK_TOKENS 16

typedef struct kv_block {
    int32_t refcount;
    uint32_t slot;             /* index in the backend's storage (storage hooks only) */
    float *data;               /* host floats, or NULL with storage hooks */
} kv_block;

/* Storage hooks. Called without the pool lock, from any thread that uses
 * the pool; they must be thread-safe. Errors go through err_set. */
typedef struct kv_storage_ops {
    /* A free slot whose contents read as zeros by the next forward pass:
     * a new tenant must never see an earlier one's keys and values. */
    llms_status (*alloc)(void *user, uint32_t *slot);
    /* Slot dst gets src's contents (copy-on-write), as seen by the next pass. */
    llms_status (*copy)(void *user, uint32_t dst, uint32_t src);
    void (*release)(void *user, uint32_t slot);
} kv_storage_ops;

typedef struct kv_pool {
    const lalloc *a;
    uint32_t n_layer, kv_dim;
    size_t block_floats;
    uint64_t budget_bytes;     /* 0 = unlimited */
    uint64_t used_bytes;
    const kv_storage_ops *ops; /* NULL: host blocks */
    void *ops_user;
    pthread_mutex_t lock;
} kv_pool;

llms_status kv_pool_init(kv_pool *p, const lalloc *a, uint32_t n_layer, uint32_t kv_dim,
                         uint64_t budget_bytes);
void kv_pool_destroy(kv_pool *p);
/* Moves block storage to the backend (see above). Only while no block is
 * alive (model load); ops == NULL goes back to host blocks. */
void kv_pool_set_storage(kv_pool *p, const kv_storage_ops *ops, void *user);

/* One sequence's block table. */
typedef struct kv_seq {
    kv_block **blocks;
    uint32_t n_blocks, cap_blocks;
} kv_seq;

/* Make room for positions [0, n_pos): allocates missing blocks and copies
 * shared blocks that positions >= first_write will be written to. */
llms_status kv_seq_reserve(kv_pool *p, kv_seq *s, uint32_t n_pos, uint32_t first_write);
/* Drop blocks wholly beyond n_pos. */
void kv_seq_truncate(kv_pool *p, kv_seq *s, uint32_t n_pos);
void kv_seq_free(kv_pool *p, kv_seq *s);
/* Share src's blocks covering [0, n_pos) into an empty dst. */
llms_status kv_seq_share(kv_pool *p, kv_seq *dst, const kv_seq *src, uint32_t n_pos);

/* Single-block references, for the prefix cache: take or drop one
 * reference, and read the count (under the pool lock). */
void kv_block_retain(kv_pool *p, kv_block *b);
void kv_block_release(kv_pool *p, kv_block *b);
int32_t kv_block_refcount(kv_pool *p, const kv_block *b);
/* Bytes of one block (all layers' K and V for KV_BLOCK_TOKENS positions). */
uint64_t kv_block_bytes(const kv_pool *p);
/* Bytes of blocks alive in the pool. */
uint64_t kv_pool_used_bytes(kv_pool *p);

/* Host pools only (CPU forward pass). */
/* The K of `layer` in the block holding `pos`: [kv_dim][KV_BLOCK_TOKENS]. */
static inline float *kv_k_block(const kv_pool *p, const kv_seq *s, uint32_t layer, uint32_t pos) {
    return s->blocks[pos / KV_BLOCK_TOKENS]->data + (size_t)layer * 2 * KV_BLOCK_TOKENS * p->kv_dim;
}
/* Store position pos's K row (kv_dim values) into its block's column. */
static inline void kv_put_k(const kv_pool *p, const kv_seq *s, uint32_t layer, uint32_t pos, const float *k) {
    float *b = kv_k_block(p, s, layer, pos) + pos % KV_BLOCK_TOKENS;
    for (uint32_t d = 0; d < p->kv_dim; d++) b[(size_t)d * KV_BLOCK_TOKENS] = k[d];
}
static inline float *kv_v(const kv_pool *p, const kv_seq *s, uint32_t layer, uint32_t pos) {
    float *b = s->blocks[pos / KV_BLOCK_TOKENS]->data;
    return b + (((size_t)layer * 2 + 1) * KV_BLOCK_TOKENS + pos % KV_BLOCK_TOKENS) * p->kv_dim;
}

#endif
