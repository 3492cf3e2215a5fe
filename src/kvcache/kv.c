#include "kv.h"

#include <string.h>

#include "../core/error.h"

llms_status kv_pool_init(kv_pool *p, const lalloc *a, uint32_t n_layer, uint32_t kv_dim,
                         uint64_t budget_bytes) {
    memset(p, 0, sizeof *p);
    p->a = a;
    p->n_layer = n_layer;
    p->kv_dim = kv_dim;
    p->block_floats = (size_t)n_layer * 2 * KV_BLOCK_TOKENS * kv_dim;
    p->budget_bytes = budget_bytes;
    if (pthread_mutex_init(&p->lock, NULL) != 0) return err_set(LLMS_ERR_INTERNAL, "mutex init failed");
    return LLMS_OK;
}

void kv_pool_destroy(kv_pool *p) { pthread_mutex_destroy(&p->lock); }

static size_t block_bytes(const kv_pool *p) { return p->block_floats * sizeof(float); }

void kv_pool_set_storage(kv_pool *p, const kv_storage_ops *ops, void *user) {
    p->ops = ops;
    p->ops_user = user;
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
    b->data = NULL;
    if (p->ops) {
        llms_status st = p->ops->alloc(p->ops_user, &b->slot);
        if (st != LLMS_OK) {
            xfree(p->a, b);
            unaccount(p);
            return st;
        }
        *out = b;
        return LLMS_OK;
    }
    float *d = xmalloc_aligned(p->a, block_bytes(p), 64);
    if (!d) {
        xfree(p->a, b);
        unaccount(p);
        return ERR_OOM();
    }
    /* Fresh blocks are zeroed so no earlier tenant's data can ever be read. */
    memset(d, 0, block_bytes(p));
    b->data = d;
    *out = b;
    return LLMS_OK;
}

static void block_release(kv_pool *p, kv_block *b) {
    if (!b) return;
    pthread_mutex_lock(&p->lock);
    int last = --b->refcount == 0;
    if (last) p->used_bytes -= block_bytes(p);
    pthread_mutex_unlock(&p->lock);
    if (last) {
        if (p->ops) p->ops->release(p->ops_user, b->slot);
        else xfree_aligned(p->a, b->data);
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
            memcpy(c->data, b->data, block_bytes(p));
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

uint64_t kv_pool_used_bytes(kv_pool *p) {
    pthread_mutex_lock(&p->lock);
    uint64_t u = p->used_bytes;
    pthread_mutex_unlock(&p->lock);
    return u;
}
