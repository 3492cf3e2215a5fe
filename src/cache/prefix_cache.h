/*
 * The prefix cache (llms_cache): full KV blocks of prompt tokens, keyed by a
 * chain (parent entry, sharing group, the block's 16 tokens). The key holds
 * the tokens themselves, not only a hash, so a lookup can never return a
 * block computed from other tokens or for another sharing group: isolation
 * does not rest on the absence of hash collisions.
 *
 * A prompt's last, partial block is cached too, as a leaf of its chain keyed
 * by its exact tokens (fewer than 16); a later request may use the leading
 * tokens it shares with one. Such a block is shared read-only: every holder
 * writing into it (the request that computed it included) copies it first
 * (kv_seq_reserve's copy-on-write), so its first tokens stay valid.
 *
 * The cache holds one reference on each block; a block is in use when
 * others hold references too (a running request), and only unused, unpinned
 * blocks are evicted (least recently used first).
 */
#ifndef LLMS_CACHE_PREFIX_H
#define LLMS_CACHE_PREFIX_H

#include "llmserve.h"
#include "../session/session.h"

/* Attach the longest cached prefix of tokens[0..n) in `group` to the empty
 * session `s`, at most `max_tokens` tokens: whole blocks, then possibly a
 * leading part of a cached partial block (shared; the session copies it
 * before writing into it). Counts hits and misses over n. Writes the number
 * of tokens attached. */
llms_status pcache_acquire(llms_cache *c, const char *group, const int32_t *tokens, uint32_t n,
                           uint32_t max_tokens, llms_session *s, uint32_t *n_cached);

/* Offer the session's evaluated full blocks covering tokens[0..n) to the
 * cache; with `partial`, the last partial block (n % KV_BLOCK_TOKENS tokens)
 * too, keyed by its exact tokens. The session must not have written past
 * n in that block yet. */
void pcache_insert(llms_cache *c, const char *group, const int32_t *tokens, uint32_t n,
                   const kv_seq *seq, int partial);

/* Evict unused blocks until the cache is within its budget (blocks in use
 * and pinned ones may keep it above: they cannot be freed). */
void pcache_trim(llms_cache *c);

/* Evict up to `n` unused blocks; returns how many were freed. */
uint32_t pcache_evict(llms_cache *c, uint32_t n);

llms_model *pcache_model(const llms_cache *c);

#endif
