/*
 * Paged KV cache. Keys and values live in fixed-size blocks of
 * KV_BLOCK_TOKENS positions; one block holds every layer's K and V for its
 * positions, so a sequence is described by a block table alone. Blocks are
 * reference-counted: forking a session shares its blocks, and a shared
 * block is copied before it is written (copy-on-write). The scheduler's
 * prefix cache builds on the same refcounts.
 *
 * Block layout (floats): for layer l, K at l*2*T*D and V at (l*2+1)*T*D,
 * each [T positions][D = n_head_kv * head_dim].
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
    float *data;
} kv_block;

typedef struct kv_pool {
    const lalloc *a;
    uint32_t n_layer, kv_dim;
    size_t block_floats;
    uint64_t budget_bytes;     /* 0 = unlimited */
    uint64_t used_bytes;
    pthread_mutex_t lock;
} kv_pool;

llms_status kv_pool_init(kv_pool *p, const lalloc *a, uint32_t n_layer, uint32_t kv_dim,
                         uint64_t budget_bytes);
void kv_pool_destroy(kv_pool *p);

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

static inline float *kv_k(const kv_pool *p, const kv_seq *s, uint32_t layer, uint32_t pos) {
    float *b = s->blocks[pos / KV_BLOCK_TOKENS]->data;
    return b + ((size_t)layer * 2 * KV_BLOCK_TOKENS + pos % KV_BLOCK_TOKENS) * p->kv_dim;
}
static inline float *kv_v(const kv_pool *p, const kv_seq *s, uint32_t layer, uint32_t pos) {
    float *b = s->blocks[pos / KV_BLOCK_TOKENS]->data;
    return b + (((size_t)layer * 2 + 1) * KV_BLOCK_TOKENS + pos % KV_BLOCK_TOKENS) * p->kv_dim;
}

#endif
