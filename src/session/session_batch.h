/*
 * What the scheduler needs from a session beyond the public API: load a
 * prompt without evaluating it, attach cached KV blocks, evaluate a session's
 * pending tokens as part of a shared batch, and drop its KV (preemption).
 * Generation itself stays llms_session_step, called once the batch has
 * evaluated everything, so sampling, stop strings and UTF-8 streaming behave
 * exactly as for a session driven alone.
 */
#ifndef LLMS_SESSION_BATCH_H
#define LLMS_SESSION_BATCH_H

#include "session.h"

/* Put `n` prompt tokens (already range-checked) into an empty session,
 * unevaluated. */
llms_status session_batch_load(llms_session *s, const int32_t *tokens, uint32_t n);

/* 1 if the next llms_session_step needs the pending tokens evaluated first;
 * 0 if it will end the generation without a forward pass (max_tokens
 * reached, context full) or nothing is pending. */
int session_batch_needs_eval(const llms_session *s);

/* Attach `n` blocks (one reference each taken) holding the KV of the
 * session's first `n_tok` tokens (the last block may be partial: n_tok need
 * not be a multiple of KV_BLOCK_TOKENS); the session must have no KV yet.
 * A shared block is copied before it is written (kv_seq_reserve). */
llms_status session_batch_attach(llms_session *s, kv_block *const *blocks, uint32_t n, uint32_t n_tok);

/* Tokens [n_eval, n_eval + n) were written to the KV cache by a batched
 * forward pass; `logits` (may be NULL) are those after the last of them. */
void session_batch_commit(llms_session *s, uint32_t n, const float *logits);

/* Free the session's KV blocks; its tokens, sampler and streamed text stay,
 * so re-evaluating them later resumes the generation where it was. */
void session_batch_drop_kv(llms_session *s);

#endif
