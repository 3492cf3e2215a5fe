/*
 * Paged KV cache. Keys and values live in fixed-size blocks of
 * KV_BLOCK_TOKENS positions; one block holds every layer's K and V for its
 * positions, so a sequence is described by a block table alone. Blocks are
 * reference-counted: forking a session shares its blocks, and a shared
 * block is copied before it is written (copy-on-write). The scheduler's
 * prefix cache builds on the same refcounts.
 *
 * A block's contents are addressed by its slot. The rest of the library
 * (sessions, scheduler, prefix cache) only moves refcounted block
 * pointers; only the forward passes read or write contents.
 *
 * Host storage (the CPU backend): slots live in slabs of KV_SLAB_BLOCKS
 * blocks, laid out piece by piece. A piece is one layer's K and V of one
 * KV head for one block's positions, T = KV_BLOCK_TOKENS, D = head_dim:
 *   K as [D][T] (transposed: a block's T scores for one query are one
 *   vector of FMAs, no horizontal sums), then V as [T][D].
 * A slab stores piece (layer l, head h) of its 16 slots side by side:
 *   slab + ((l * n_head_kv + h) * KV_SLAB_BLOCKS + slot % 16) * piece.
 * Why: decoding reads, for every cached position, one piece per layer and
 * head, in position order. With a block per allocation those reads were
 * 4 KB islands 360 KB apart (tinyllama), and the hardware prefetchers
 * never started: decode attention at 1,500 positions ran at 5 GB/s and
 * took a quarter of each token. Slots are handed out lowest first, so a
 * growing sequence gets consecutive slots and its pieces form 64 KB runs
 * (measured alone: 2.6x less time per block than the islands).
 * A slab's memory is taken when its first slot is and given back when its
 * last one is, so resident memory is the live blocks rounded up to slabs
 * (the budget counts blocks).
 *
 * Element type: host pieces hold IEEE binary16 (kv_half), as llama.cpp's
 * cache does by default. Decoding reads every cached position's K and V
 * once per token and layer, on top of the weights: at 512 positions of
 * tinyllama-1.1b that was 25 MB a token in float32, 4% of the Q4_0
 * weights; half precision halves it, and halves the memory a session's
 * context costs (the KV budget goes twice as far). Rounding to 11
 * significant bits moves logits by ~1e-4 (tests/test_arch.c measures it).
 *
 * Device storage: a backend that keeps the cache elsewhere (the Vulkan
 * backend: device memory, float32) sets storage hooks on the pool before
 * any block exists; slots then index the backend's storage and the pool
 * calls the hooks where it would zero or copy host memory.
 */
#ifndef LLMS_KVCACHE_H
#define LLMS_KVCACHE_H

#include <pthread.h>
#include <stdint.h>

#include "llmserve.h"
#include "../core/alloc.h"

#define KV_BLOCK_TOKENS 16
#define KV_SLAB_BLOCKS 16
/* The slab table: chunks of KV_SLAB_CHUNK slabs, created on demand and
 * never moved (forward passes read it without the lock), up to
 * KV_SLAB_CHUNKS chunks: 2^24 blocks, 268M positions. */
#define KV_SLAB_CHUNK 256
#define KV_SLAB_CHUNKS 4096

/* One host cache element: IEEE binary16 bits (src/quant/half.h converts). */
typedef uint16_t kv_half;

typedef struct kv_block {
    int32_t refcount;
    uint32_t slot;             /* where its contents live (host slab or backend storage) */
} kv_block;

/* Storage hooks. Called without the pool lock, from any thread that uses
 * the pool; they must be thread-safe. Errors go through err_set. */
typedef struct kv_storage_ops {
    /* Bytes of one element in the backend's blocks (budgets count them). */
    uint32_t elem_bytes;
    /* A free slot whose contents read as zeros by the next forward pass:
     * a new tenant must never see an earlier one's keys and values. */
    llms_status (*alloc)(void *user, uint32_t *slot);
    /* Slot dst gets src's contents (copy-on-write), as seen by the next pass. */
    llms_status (*copy)(void *user, uint32_t dst, uint32_t src);
    void (*release)(void *user, uint32_t slot);
} kv_storage_ops;

typedef struct kv_slab {
    kv_half *data;             /* NULL while none of its slots is in use */
    uint16_t used;             /* bit i: slot i of the slab is in use */
} kv_slab;

typedef struct kv_pool {
    const lalloc *a;
    uint32_t n_layer, n_head_kv, head_dim, kv_dim;
    size_t block_elems;        /* elements of one block: n_layer * 2 * T * kv_dim */
    size_t piece_elems;        /* 2 * T * head_dim */
    uint32_t elem_bytes;       /* sizeof(kv_half), or the storage hooks' */
    uint64_t budget_bytes;     /* 0 = unlimited */
    uint64_t used_bytes;
    const kv_storage_ops *ops; /* NULL: host slabs */
    void *ops_user;
    /* Host slabs (under lock, except reading a live block's slab). */
    kv_slab **slab_chunks;     /* [KV_SLAB_CHUNKS] */
    uint32_t n_slabs;          /* table entries ever used */
    uint32_t free_hint;        /* no slab below this has a free slot */
    uint32_t n_slabs_live;     /* slabs holding memory */
    pthread_mutex_t lock;
} kv_pool;

llms_status kv_pool_init(kv_pool *p, const lalloc *a, uint32_t n_layer, uint32_t n_head_kv, uint32_t head_dim,
                         uint64_t budget_bytes);
/* Frees the slabs; every block must have been released. */
void kv_pool_destroy(kv_pool *p);
/* Moves block storage to the backend (see above). Only while no block is
 * alive (model load); ops == NULL goes back to host slabs. */
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
/* Host memory the slabs hold (live blocks rounded up to slabs). */
uint64_t kv_pool_slab_bytes(kv_pool *p);

/* Host pools only (CPU forward pass). */
/* The piece of `layer` and KV head `kvh` in block b: K [head_dim][T], then
 * V [T][head_dim]. */
static inline kv_half *kv_piece(const kv_pool *p, const kv_block *b, uint32_t layer, uint32_t kvh) {
    const uint32_t slab = b->slot / KV_SLAB_BLOCKS;
    const kv_slab *sl = &p->slab_chunks[slab / KV_SLAB_CHUNK][slab % KV_SLAB_CHUNK];
    return sl->data + (((size_t)layer * p->n_head_kv + kvh) * KV_SLAB_BLOCKS + b->slot % KV_SLAB_BLOCKS) *
                          p->piece_elems;
}
/* Store position pos's K and V rows (kv_dim floats each, heads in order)
 * into its block, rounded to half. */
void kv_put(const kv_pool *p, const kv_seq *s, uint32_t layer, uint32_t pos, const float *k, const float *v);

#endif
