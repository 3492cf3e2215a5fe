#include <pthread.h>
#include <string.h>

#include "prefix_cache.h"
#include "../backend/backend.h"
#include "../core/error.h"
#include "../core/params.h"
#include "../session/session_batch.h"

#define N_BUCKETS 4096u

typedef struct pc_entry {
    struct pc_entry *next;      /* bucket chain */
    uint64_t id, parent;        /* parent = 0 for a group's first block */
    uint32_t group;
    int32_t tokens[KV_BLOCK_TOKENS];
    kv_block *block;
    uint64_t stamp;             /* last use, for LRU */
    uint32_t depth;             /* position in the chain: deeper blocks go first on a tie */
    uint32_t pinned;
    uint32_t n_tok;             /* valid tokens: KV_BLOCK_TOKENS, or fewer for a prompt's last,
                                 * partial block (a leaf: never a parent) */
} pc_entry;

struct llms_cache {
    llms_model *m;
    const lalloc *a;
    llms_cache_params p;
    pthread_mutex_t lock;
    pc_entry *buckets[N_BUCKETS];
    uint64_t next_id, clock;
    char **groups;              /* interned sharing-group names; index = id */
    uint32_t n_groups, cap_groups;
    uint64_t n_entries, n_pinned, hits, misses, evictions, inserts;
};

LLMS_API void llms_cache_params_init(llms_cache_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->budget_bytes = 256u << 20;
}

LLMS_API void llms_cache_stats_init(llms_cache_stats *s) {
    if (!s) return;
    memset(s, 0, sizeof *s);
    s->struct_size = sizeof *s;
}

LLMS_API llms_status llms_cache_create(llms_model *m, const llms_cache_params *params, llms_cache **out) {
    if (!out) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_cache_create: out is NULL");
    *out = NULL;
    if (!m) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_cache_create: model is NULL");
    if (!m->kv_ready) return err_set(LLMS_ERR_STATE, "the model was loaded without weights (vocab only)");
    llms_cache_params p;
    llms_cache_params_init(&p);
    if (!params_merge(&p, sizeof p, params))
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_cache_params: struct_size too small");
    if (p.budget_bytes == 0) p.budget_bytes = 256u << 20;
    llms_cache *c = xcalloc(m->alloc, 1, sizeof *c);
    if (!c) return ERR_OOM();
    c->m = m;
    c->a = m->alloc;
    c->p = p;
    c->next_id = 1;
    if (pthread_mutex_init(&c->lock, NULL)) {
        xfree(c->a, c);
        return err_set(LLMS_ERR_INTERNAL, "mutex init failed");
    }
    *out = c;
    return LLMS_OK;
}

static void drop_entry(llms_cache *c, pc_entry **link) {
    pc_entry *e = *link;
    *link = e->next;
    if (e->pinned) c->n_pinned--;
    kv_block_release(&c->m->kv, e->block);
    xfree(c->a, e);
    c->n_entries--;
}

LLMS_API void llms_cache_destroy(llms_cache *c) {
    if (!c) return;
    llms_model *m = c->m;
    int had = c->n_entries > 0;
    for (uint32_t b = 0; b < N_BUCKETS; b++)
        while (c->buckets[b]) drop_entry(c, &c->buckets[b]);
    for (uint32_t i = 0; i < c->n_groups; i++) xfree(c->a, c->groups[i]);
    xfree(c->a, c->groups);
    pthread_mutex_destroy(&c->lock);
    xfree(c->a, c);
    /* Device memory the blocks held goes back where little else is used. */
    if (had) backend_kv_trim(m);
}

llms_model *pcache_model(const llms_cache *c) { return c->m; }

/* Interned id of a group name, or -1 (only when adding fails). With
 * add = 0, an unknown name gives -1: nothing of it can be cached. */
static int64_t group_id(llms_cache *c, const char *g, int add) {
    if (!g) g = "";
    for (uint32_t i = 0; i < c->n_groups; i++)
        if (strcmp(c->groups[i], g) == 0) return i;
    if (!add) return -1;
    if (c->n_groups == c->cap_groups) {
        uint32_t cap = c->cap_groups ? c->cap_groups * 2 : 8;
        char **ng = xrealloc_array(c->a, c->groups, cap, sizeof *ng);
        if (!ng) return -1;
        c->groups = ng;
        c->cap_groups = cap;
    }
    char *d = xstrndup(c->a, g, strlen(g));
    if (!d) return -1;
    c->groups[c->n_groups] = d;
    return c->n_groups++;
}

static uint32_t key_hash(uint64_t parent, uint32_t group, const int32_t *t) {
    uint64_t h = 1469598103934665603ull;
    h = (h ^ parent) * 1099511628211ull;
    h = (h ^ group) * 1099511628211ull;
    for (int i = 0; i < KV_BLOCK_TOKENS; i++) h = (h ^ (uint32_t)t[i]) * 1099511628211ull;
    return (uint32_t)(h ^ (h >> 32)) % N_BUCKETS;
}

static pc_entry **find(llms_cache *c, uint64_t parent, uint32_t group, const int32_t *t) {
    pc_entry **l = &c->buckets[key_hash(parent, group, t)];
    for (; *l; l = &(*l)->next) {
        pc_entry *e = *l;
        if (e->n_tok == KV_BLOCK_TOKENS && e->parent == parent && e->group == group &&
            memcmp(e->tokens, t, sizeof e->tokens) == 0)
            return l;
    }
    return l;
}

/* Partial blocks of one (parent, group) all go to one bucket, so a lookup
 * can compare the tokens of each and take the longest common prefix. */
static uint32_t partial_hash(uint64_t parent, uint32_t group) {
    uint64_t h = 1469598103934665603ull ^ 0x9e3779b97f4a7c15ull;
    h = (h ^ parent) * 1099511628211ull;
    h = (h ^ group) * 1099511628211ull;
    return (uint32_t)(h ^ (h >> 32)) % N_BUCKETS;
}

static uint32_t common_prefix(const int32_t *a, const int32_t *b, uint32_t n) {
    uint32_t k = 0;
    while (k < n && a[k] == b[k]) k++;
    return k;
}

/* The partial entry under (parent, group) sharing the longest prefix with
 * t[0..n) (n < KV_BLOCK_TOKENS); *len gets that prefix's length. Only
 * positions below *len of its block may be used: the rest belongs to other
 * tokens (of the same group) or is zero. */
static pc_entry *find_partial(llms_cache *c, uint64_t parent, uint32_t group, const int32_t *t, uint32_t n,
                              uint32_t *len) {
    pc_entry *best = NULL;
    uint32_t bl = 0;
    for (pc_entry *e = c->buckets[partial_hash(parent, group)]; e; e = e->next) {
        if (e->n_tok == KV_BLOCK_TOKENS || e->parent != parent || e->group != group) continue;
        uint32_t k = common_prefix(e->tokens, t, n < e->n_tok ? n : e->n_tok);
        if (k > bl) { best = e; bl = k; }
    }
    *len = bl;
    return best;
}

llms_status pcache_acquire(llms_cache *c, const char *group, const int32_t *tokens, uint32_t n,
                           uint32_t max_tokens, llms_session *s, uint32_t *n_cached) {
    *n_cached = 0;
    uint32_t lim = n < max_tokens ? n : max_tokens;
    uint32_t want = lim / KV_BLOCK_TOKENS;
    kv_block **found = xcalloc(c->a, want + 1, sizeof *found);
    if (!found) return ERR_OOM();
    uint32_t nf = 0;
    llms_status st = LLMS_OK;
    pthread_mutex_lock(&c->lock);
    int64_t g = group_id(c, group, 0);
    uint64_t parent = 0;
    c->clock++;
    while (g >= 0 && nf < want) {
        pc_entry *e = *find(c, parent, (uint32_t)g, tokens + (size_t)nf * KV_BLOCK_TOKENS);
        if (!e) break;
        e->stamp = c->clock;
        found[nf++] = e->block;
        parent = e->id;
    }
    /* Then the best partial block after the full ones: its first `part`
     * tokens are ours (fewer than a block, and within max_tokens). */
    uint32_t part = 0, rem = lim - nf * KV_BLOCK_TOKENS;
    if (g >= 0 && rem) {
        pc_entry *e = find_partial(c, parent, (uint32_t)g, tokens + (size_t)nf * KV_BLOCK_TOKENS,
                                   rem < KV_BLOCK_TOKENS ? rem : KV_BLOCK_TOKENS - 1, &part);
        if (e) {
            e->stamp = c->clock;
            found[nf] = e->block;
        }
    }
    /* Attach under the cache lock so no block is evicted in between. The
     * session copies a shared partial block before writing to it (COW). */
    if (nf || part) st = session_batch_attach(s, found, nf + (part > 0), nf * KV_BLOCK_TOKENS + part);
    if (!st) {
        *n_cached = nf * KV_BLOCK_TOKENS + part;
        c->hits += *n_cached;
        c->misses += n - *n_cached;
    }
    pthread_mutex_unlock(&c->lock);
    xfree(c->a, found);
    return st;
}

static void evict_over_budget(llms_cache *c);

void pcache_insert(llms_cache *c, const char *group, const int32_t *tokens, uint32_t n, const kv_seq *seq,
                   int partial) {
    uint32_t nb = n / KV_BLOCK_TOKENS;
    if (nb > seq->n_blocks) nb = seq->n_blocks;
    uint32_t rest = n - nb * KV_BLOCK_TOKENS;
    if (!partial || rest >= KV_BLOCK_TOKENS || nb >= seq->n_blocks) rest = 0;
    pthread_mutex_lock(&c->lock);
    int64_t g = group_id(c, group, 1);
    uint64_t parent = 0;
    c->clock++;
    uint32_t i = 0;
    for (; g >= 0 && i < nb; i++) {
        const int32_t *t = tokens + (size_t)i * KV_BLOCK_TOKENS;
        pc_entry **l = find(c, parent, (uint32_t)g, t);
        if (*l) {
            (*l)->stamp = c->clock;
            parent = (*l)->id;
            continue;
        }
        pc_entry *e = xcalloc(c->a, 1, sizeof *e);
        if (!e) break;  /* caching is an optimisation: skip on failure */
        e->id = c->next_id++;
        e->parent = parent;
        e->depth = i;
        e->group = (uint32_t)g;
        memcpy(e->tokens, t, sizeof e->tokens);
        e->block = seq->blocks[i];
        e->n_tok = KV_BLOCK_TOKENS;
        kv_block_retain(&c->m->kv, e->block);
        e->stamp = c->clock;
        *l = e;
        c->n_entries++;
        c->inserts++;
        parent = e->id;
    }
    /* The last, partial block: shared read-only from now on (the session
     * and later users copy it before writing past its tokens). Skipped if
     * an entry already covers these tokens. */
    if (g >= 0 && i == nb && rest) {
        const int32_t *t = tokens + (size_t)nb * KV_BLOCK_TOKENS;
        uint32_t have = 0;
        pc_entry *old = find_partial(c, parent, (uint32_t)g, t, rest, &have);
        if (old && have == rest) {
            old->stamp = c->clock;
        } else {
            pc_entry *e = xcalloc(c->a, 1, sizeof *e);
            if (e) {
                e->id = c->next_id++;
                e->parent = parent;
                e->depth = nb;
                e->group = (uint32_t)g;
                e->n_tok = rest;
                memcpy(e->tokens, t, rest * sizeof *t);
                e->block = seq->blocks[nb];
                kv_block_retain(&c->m->kv, e->block);
                e->stamp = c->clock;
                pc_entry **l = &c->buckets[partial_hash(parent, (uint32_t)g)];
                e->next = *l;
                *l = e;
                c->n_entries++;
                c->inserts++;
            }
        }
    }
    evict_over_budget(c);
    pthread_mutex_unlock(&c->lock);
}

/* The least recently used entry no request uses and nobody pinned. */
static pc_entry **lru_victim(llms_cache *c) {
    pc_entry **best = NULL;
    for (uint32_t b = 0; b < N_BUCKETS; b++)
        for (pc_entry **l = &c->buckets[b]; *l; l = &(*l)->next) {
            pc_entry *e = *l;
            if (e->pinned || kv_block_refcount(&c->m->kv, e->block) > 1) continue;
            /* Blocks of one prompt share a stamp; evicting the deepest first
             * keeps the rest of the chain reachable. */
            if (!best || e->stamp < (*best)->stamp || (e->stamp == (*best)->stamp && e->depth > (*best)->depth))
                best = l;
        }
    return best;
}

static uint32_t evict_locked(llms_cache *c, uint32_t n) {
    uint32_t done = 0;
    while (done < n) {
        pc_entry **v = lru_victim(c);
        if (!v) break;
        drop_entry(c, v);
        c->evictions++;
        done++;
    }
    return done;
}

static void evict_over_budget(llms_cache *c) {
    uint64_t bb = kv_block_bytes(&c->m->kv);
    while (c->n_entries * bb > c->p.budget_bytes)
        if (!evict_locked(c, 1)) break;
}

void pcache_trim(llms_cache *c) {
    pthread_mutex_lock(&c->lock);
    evict_over_budget(c);
    pthread_mutex_unlock(&c->lock);
}

uint32_t pcache_evict(llms_cache *c, uint32_t n) {
    pthread_mutex_lock(&c->lock);
    uint32_t d = evict_locked(c, n);
    pthread_mutex_unlock(&c->lock);
    return d;
}

LLMS_API llms_status llms_cache_get_stats(llms_cache *c, llms_cache_stats *out) {
    if (!c || !out) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_cache_get_stats: NULL argument");
    llms_cache_stats s;
    llms_cache_stats_init(&s);
    pthread_mutex_lock(&c->lock);
    s.blocks_used = c->n_entries;
    s.blocks_pinned = c->n_pinned;
    s.bytes_used = c->n_entries * kv_block_bytes(&c->m->kv);
    s.hit_tokens = c->hits;
    s.miss_tokens = c->misses;
    s.evictions = c->evictions;
    s.inserts = c->inserts;
    pthread_mutex_unlock(&c->lock);
    if (!params_emit(out, &s, sizeof s))
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_cache_stats: struct_size too small");
    return LLMS_OK;
}

/* Walk the chain of tokens in group; apply delta to each entry's pin count. */
static size_t pin_walk(llms_cache *c, const char *group, const int32_t *tokens, size_t n, int delta) {
    int64_t g = group_id(c, group, 0);
    if (g < 0) return 0;
    uint64_t parent = 0;
    size_t i = 0;
    for (; (i + 1) * KV_BLOCK_TOKENS <= n; i++) {
        pc_entry *e = *find(c, parent, (uint32_t)g, tokens + i * KV_BLOCK_TOKENS);
        if (!e) break;
        if (delta > 0) {
            if (e->pinned++ == 0) c->n_pinned++;
        } else if (e->pinned) {
            if (--e->pinned == 0) c->n_pinned--;
        }
        parent = e->id;
    }
    return i * KV_BLOCK_TOKENS;
}

/* The host names a group by the tenant name or the sharing group; the
 * scheduler keys them as "t:<tenant>" and "g:<group>" (see
 * llms_scheduler_set_tenant), so both are tried. */
static size_t pin_both(llms_cache *c, const char *name, const int32_t *tokens, size_t n, int delta) {
    if (!name) name = "";
    size_t len = strlen(name), best = 0;
    char *key = xmalloc(c->a, len + 3);
    if (!key) return 0;
    memcpy(key + 2, name, len + 1);
    for (int i = 0; i < 2; i++) {
        memcpy(key, i ? "g:" : "t:", 2);
        size_t k = pin_walk(c, key, tokens, n, delta);
        if (k > best) best = k;
    }
    xfree(c->a, key);
    return best;
}

LLMS_API llms_status llms_cache_pin(llms_cache *c, const char *group, const int32_t *tokens, size_t n,
                                    size_t *n_pinned) {
    if (n_pinned) *n_pinned = 0;
    if (!c || (!tokens && n)) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_cache_pin: NULL argument");
    pthread_mutex_lock(&c->lock);
    size_t k = pin_both(c, group, tokens, n, 1);
    pthread_mutex_unlock(&c->lock);
    if (n_pinned) *n_pinned = k;
    return LLMS_OK;
}

LLMS_API llms_status llms_cache_unpin(llms_cache *c, const char *group, const int32_t *tokens, size_t n) {
    if (!c || (!tokens && n)) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_cache_unpin: NULL argument");
    pthread_mutex_lock(&c->lock);
    pin_both(c, group, tokens, n, -1);
    evict_over_budget(c);
    pthread_mutex_unlock(&c->lock);
    return LLMS_OK;
}

LLMS_API llms_status llms_cache_clear(llms_cache *c) {
    if (!c) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_cache_clear: cache is NULL");
    pthread_mutex_lock(&c->lock);
    for (uint32_t b = 0; b < N_BUCKETS; b++) {
        pc_entry **l = &c->buckets[b];
        while (*l) {
            if (kv_block_refcount(&c->m->kv, (*l)->block) > 1) { l = &(*l)->next; continue; }
            drop_entry(c, l);
            c->evictions++;
        }
    }
    pthread_mutex_unlock(&c->lock);
    /* Outside the cache lock (trimming takes the device lock and waits
     * for the device): device memory the dropped blocks held goes back,
     * where little else is in use (vk_kv_trim). */
    backend_kv_trim(c->m);
    return LLMS_OK;
}
