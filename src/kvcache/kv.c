#include "kv.h"

#include <string.h>

#include "../core/error.h"
#include "../quant/half.h"

llms_status kv_pool_init(kv_pool *p, const lalloc *a, uint32_t n_layer, uint32_t n_head_kv, uint32_t head_dim,
                         uint64_t budget_bytes) {
    memset(p, 0, sizeof *p);
    p->a = a;
    p->n_layer = n_layer;
    p->n_head_kv = n_head_kv;
    p->head_dim = head_dim;
    p->kv_dim = n_head_kv * head_dim;
    p->block_elems = (size_t)n_layer * 2 * KV_BLOCK_TOKENS * p->kv_dim;
    p->piece_elems = (size_t)2 * KV_BLOCK_TOKENS * head_dim;
    p->elem_bytes = sizeof(kv_half);
    p->budget_bytes = budget_bytes;
    p->slab_chunks = xcalloc(a, KV_SLAB_CHUNKS, sizeof *p->slab_chunks);
    if (!p->slab_chunks) return ERR_OOM();
    if (pthread_mutex_init(&p->lock, NULL) != 0) {
        xfree(a, p->slab_chunks);
        p->slab_chunks = NULL;
        return err_set(LLMS_ERR_INTERNAL, "mutex init failed");
    }
    return LLMS_OK;
}

void kv_pool_destroy(kv_pool *p) {
    for (uint32_t c = 0; c < KV_SLAB_CHUNKS && p->slab_chunks; c++) {
        if (!p->slab_chunks[c]) continue;
        for (uint32_t i = 0; i < KV_SLAB_CHUNK; i++) xfree_aligned(p->a, p->slab_chunks[c][i].data);
        xfree(p->a, p->slab_chunks[c]);
    }
    xfree(p->a, p->slab_chunks);
    p->slab_chunks = NULL;
    pthread_mutex_destroy(&p->lock);
}

static size_t block_bytes(const kv_pool *p) { return p->block_elems * p->elem_bytes; }
static size_t slab_bytes(const kv_pool *p) { return block_bytes(p) * KV_SLAB_BLOCKS; }

void kv_pool_set_storage(kv_pool *p, const kv_storage_ops *ops, void *user) {
    p->ops = ops;
    p->ops_user = user;
    p->elem_bytes = ops ? ops->elem_bytes : sizeof(kv_half);
}

static llms_status budget_error(const kv_pool *p) {
    return p->budget_bytes ? err_set(LLMS_ERR_NO_MEMORY, "KV cache budget of %llu bytes exhausted",
                                     (unsigned long long)p->budget_bytes)
                           : ERR_OOM();
}

static void unaccount(kv_pool *p) {
    pthread_mutex_lock(&p->lock);
    p->used_bytes -= block_bytes(p);
    pthread_mutex_unlock(&p->lock);
}

static kv_slab *slab_at(const kv_pool *p, uint32_t i) {
    return &p->slab_chunks[i / KV_SLAB_CHUNK][i % KV_SLAB_CHUNK];
}

/* The lowest free host slot, its slab given memory if it had none. Under
 * the lock; the slab's memory is allocated with the lock held (rare: once
 * per KV_SLAB_BLOCKS blocks at most). */
static llms_status host_slot_alloc(kv_pool *p, uint32_t *slot) {
    uint32_t i = p->free_hint, empty = UINT32_MAX;
    /* A live slab with room first (no new memory), else an emptied entry. */
    for (; i < p->n_slabs; i++) {
        kv_slab *sl = slab_at(p, i);
        if (sl->data) {
            if (sl->used != 0xFFFFu) break;
        } else if (empty == UINT32_MAX) {
            empty = i;
        }
    }
    p->free_hint = empty < i ? empty : i;
    if (i == p->n_slabs) {
        /* Every slab is full: a fresh one, in the first emptied entry or
         * a new one at the end. */
        if (empty != UINT32_MAX) {
            i = empty;
        } else {
            if (i / KV_SLAB_CHUNK >= KV_SLAB_CHUNKS)
                return err_set(LLMS_ERR_NO_MEMORY, "KV cache holds its maximum of %u blocks",
                               KV_SLAB_CHUNKS * KV_SLAB_CHUNK * KV_SLAB_BLOCKS);
            kv_slab **chunk = &p->slab_chunks[i / KV_SLAB_CHUNK];
            if (!*chunk && !(*chunk = xcalloc(p->a, KV_SLAB_CHUNK, sizeof **chunk))) return ERR_OOM();
        }
        kv_slab *sl = slab_at(p, i);
        const size_t huge = (size_t)2 << 20;
        sl->data = xmalloc_aligned(p->a, slab_bytes(p), slab_bytes(p) >= huge ? huge : 64);
        if (!sl->data) return ERR_OOM();
        alloc_advise_huge_pages(sl->data, slab_bytes(p));
        sl->used = 0;
        if (i == p->n_slabs) p->n_slabs++;
        p->n_slabs_live++;
        if (i < p->free_hint) p->free_hint = i;
    }
    kv_slab *sl = slab_at(p, i);
    const uint32_t bit = (uint32_t)__builtin_ctz(~(uint32_t)sl->used);
    sl->used |= (uint16_t)(1u << bit);
    *slot = i * KV_SLAB_BLOCKS + bit;
    return LLMS_OK;
}

/* Returns the slab's memory to free once its last slot goes (NULL if it
 * keeps others). Under the lock. */
static kv_half *host_slot_release(kv_pool *p, uint32_t slot) {
    const uint32_t i = slot / KV_SLAB_BLOCKS;
    kv_slab *sl = slab_at(p, i);
    sl->used &= (uint16_t)~(1u << (slot % KV_SLAB_BLOCKS));
    if (i < p->free_hint) p->free_hint = i;
    if (sl->used) return NULL;
    kv_half *d = sl->data;
    sl->data = NULL;
    p->n_slabs_live--;
    return d;
}

/* Zero (fresh) or copy (copy-on-write) a host slot's pieces. */
static void host_slot_fill(kv_pool *p, const kv_block *dst, const kv_block *src) {
    const size_t bytes = p->piece_elems * sizeof(kv_half);
    for (uint32_t l = 0; l < p->n_layer; l++)
        for (uint32_t h = 0; h < p->n_head_kv; h++) {
            kv_half *d = kv_piece(p, dst, l, h);
            if (src) memcpy(d, kv_piece(p, src, l, h), bytes);
            else memset(d, 0, bytes);
        }
}

/* A new block with refcount 1 and zeroed contents. Slot hooks run outside
 * the pool lock: they may wait for the device (growing its storage). */
static llms_status block_new(kv_pool *p, kv_block **out) {
    *out = NULL;
    pthread_mutex_lock(&p->lock);
    int over = p->budget_bytes && p->used_bytes + block_bytes(p) > p->budget_bytes;
    if (!over) p->used_bytes += block_bytes(p);
    pthread_mutex_unlock(&p->lock);
    if (over) return budget_error(p);
    kv_block *b = xmalloc(p->a, sizeof *b);
    if (!b) {
        unaccount(p);
        return ERR_OOM();
    }
    b->refcount = 1;
    b->slot = 0;
    llms_status st;
    if (p->ops) {
        st = p->ops->alloc(p->ops_user, &b->slot);
    } else {
        pthread_mutex_lock(&p->lock);
        st = host_slot_alloc(p, &b->slot);
        pthread_mutex_unlock(&p->lock);
        /* Fresh blocks are zeroed so no earlier tenant's data can ever be read. */
        if (st == LLMS_OK) host_slot_fill(p, b, NULL);
    }
    if (st != LLMS_OK) {
        xfree(p->a, b);
        unaccount(p);
        return st;
    }
    *out = b;
    return LLMS_OK;
}

static void block_release(kv_pool *p, kv_block *b) {
    if (!b) return;
    pthread_mutex_lock(&p->lock);
    int last = --b->refcount == 0;
    if (last) p->used_bytes -= block_bytes(p);
    kv_half *slab = last && !p->ops ? host_slot_release(p, b->slot) : NULL;
    pthread_mutex_unlock(&p->lock);
    if (last) {
        if (p->ops) p->ops->release(p->ops_user, b->slot);
        xfree_aligned(p->a, slab);
        xfree(p->a, b);
    }
}

static llms_status grow_table(kv_pool *p, kv_seq *s, uint32_t n) {
    if (n <= s->cap_blocks) return LLMS_OK;
    uint32_t cap = s->cap_blocks ? s->cap_blocks : 8;
    while (cap < n) cap *= 2;
    kv_block **t = xrealloc_array(p->a, s->blocks, cap, sizeof *t);
    if (!t) return ERR_OOM();
    s->blocks = t;
    s->cap_blocks = cap;
    return LLMS_OK;
}

llms_status kv_seq_reserve(kv_pool *p, kv_seq *s, uint32_t n_pos, uint32_t first_write) {
    uint32_t need = (n_pos + KV_BLOCK_TOKENS - 1) / KV_BLOCK_TOKENS;
    llms_status st = grow_table(p, s, need);
    if (st) return st;
    uint32_t old = s->n_blocks;
    for (uint32_t i = old; i < need; i++) {
        kv_block *b;
        st = block_new(p, &b);
        if (st != LLMS_OK) {
            for (uint32_t j = old; j < i; j++) block_release(p, s->blocks[j]);
            s->n_blocks = old;
            return st;
        }
        s->blocks[i] = b;
    }
    s->n_blocks = need > old ? need : old;
    /* Copy-on-write for shared blocks that will be written. */
    for (uint32_t i = first_write / KV_BLOCK_TOKENS; i < need && i < old; i++) {
        kv_block *b = s->blocks[i];
        pthread_mutex_lock(&p->lock);
        int shared = b->refcount > 1;
        pthread_mutex_unlock(&p->lock);
        if (!shared) continue;
        kv_block *c;
        if ((st = block_new(p, &c)) != LLMS_OK) return st;
        if (p->ops) {
            if ((st = p->ops->copy(p->ops_user, c->slot, b->slot)) != LLMS_OK) {
                block_release(p, c);
                return st;
            }
        } else {
            host_slot_fill(p, c, b);
        }
        s->blocks[i] = c;
        block_release(p, b);
    }
    return LLMS_OK;
}

void kv_seq_truncate(kv_pool *p, kv_seq *s, uint32_t n_pos) {
    uint32_t keep = (n_pos + KV_BLOCK_TOKENS - 1) / KV_BLOCK_TOKENS;
    while (s->n_blocks > keep) block_release(p, s->blocks[--s->n_blocks]);
}

void kv_seq_free(kv_pool *p, kv_seq *s) {
    kv_seq_truncate(p, s, 0);
    xfree(p->a, s->blocks);
    memset(s, 0, sizeof *s);
}

llms_status kv_seq_share(kv_pool *p, kv_seq *dst, const kv_seq *src, uint32_t n_pos) {
    uint32_t need = (n_pos + KV_BLOCK_TOKENS - 1) / KV_BLOCK_TOKENS;
    if (need > src->n_blocks) need = src->n_blocks;
    llms_status st = grow_table(p, dst, need);
    if (st) return st;
    pthread_mutex_lock(&p->lock);
    for (uint32_t i = 0; i < need; i++) {
        dst->blocks[i] = src->blocks[i];
        src->blocks[i]->refcount++;
    }
    pthread_mutex_unlock(&p->lock);
    dst->n_blocks = need;
    return LLMS_OK;
}

void kv_block_retain(kv_pool *p, kv_block *b) {
    pthread_mutex_lock(&p->lock);
    b->refcount++;
    pthread_mutex_unlock(&p->lock);
}

void kv_block_release(kv_pool *p, kv_block *b) { block_release(p, b); }

int32_t kv_block_refcount(kv_pool *p, const kv_block *b) {
    pthread_mutex_lock(&p->lock);
    int32_t r = b->refcount;
    pthread_mutex_unlock(&p->lock);
    return r;
}

uint64_t kv_block_bytes(const kv_pool *p) { return block_bytes(p); }

uint64_t kv_pool_slab_bytes(kv_pool *p) {
    pthread_mutex_lock(&p->lock);
    uint64_t u = (uint64_t)p->n_slabs_live * slab_bytes(p);
    pthread_mutex_unlock(&p->lock);
    return u;
}

uint64_t kv_pool_used_bytes(kv_pool *p) {
    pthread_mutex_lock(&p->lock);
    uint64_t u = p->used_bytes;
    pthread_mutex_unlock(&p->lock);
    return u;
}

void kv_put(const kv_pool *p, const kv_seq *s, uint32_t layer, uint32_t pos, const float *k, const float *v) {
    const kv_block *b = s->blocks[pos / KV_BLOCK_TOKENS];
    const uint32_t D = p->head_dim, t = pos % KV_BLOCK_TOKENS;
    for (uint32_t h = 0; h < p->n_head_kv; h++, k += D, v += D) {
        kv_half *kp = kv_piece(p, b, layer, h), *vr = kp + (size_t)KV_BLOCK_TOKENS * D + (size_t)t * D;
        for (uint32_t d = 0; d < D; d++) {
            kp[(size_t)d * KV_BLOCK_TOKENS + t] = half_from_f32(k[d]);
            vr[d] = half_from_f32(v[d]);
        }
    }
}
