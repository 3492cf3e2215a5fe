#include <string.h>

#include "session_batch.h"
#include "../core/error.h"

llms_status session_batch_load(llms_session *s, const int32_t *tokens, uint32_t n) {
    if (n == 0 || n > s->p.n_ctx)
        return err_set(LLMS_ERR_PROMPT_TOO_LONG, "%u prompt tokens do not fit a context of %u", n, s->p.n_ctx);
    memcpy(s->tokens, tokens, n * sizeof *tokens);
    s->n_tokens = n;
    s->n_eval = 0;
    s->has_logits = 0;
    return LLMS_OK;
}

int session_batch_needs_eval(const llms_session *s) {
    if (!s->generating || s->n_eval >= s->n_tokens) return 0;
    const llms_sampling_params *p = &s->smp.p;
    if (p->max_tokens >= 0 && s->n_generated >= (uint32_t)p->max_tokens) return 0;
    if (s->n_tokens >= s->p.n_ctx && !(s->p.flags & LLMS_SESSION_CONTEXT_SHIFT)) return 0;
    return 1;
}

llms_status session_batch_attach(llms_session *s, kv_block *const *blocks, uint32_t n, uint32_t n_tok) {
    kv_pool *pool = &s->m->kv;
    if (n_tok > n * KV_BLOCK_TOKENS || n_tok + KV_BLOCK_TOKENS <= n * KV_BLOCK_TOKENS || n_tok > s->n_tokens)
        return err_set(LLMS_ERR_INTERNAL, "session_batch_attach: %u tokens in %u blocks", n_tok, n);
    kv_seq tmp = {(kv_block **)blocks, n, n};
    /* kv_seq_share takes the references under the pool lock. */
    llms_status st = kv_seq_share(pool, &s->kv, &tmp, n_tok);
    if (st) return st;
    s->n_eval = n_tok;
    return LLMS_OK;
}

void session_batch_commit(llms_session *s, uint32_t n, const float *logits) {
    s->n_eval += n;
    if (logits) {
        memcpy(s->logits, logits, s->m->hp.n_vocab * sizeof(float));
        s->has_logits = 1;
    } else {
        s->has_logits = 0;
    }
}

void session_batch_drop_kv(llms_session *s) {
    kv_seq_truncate(&s->m->kv, &s->kv, 0);
    s->n_eval = 0;
    s->has_logits = 0;
}
