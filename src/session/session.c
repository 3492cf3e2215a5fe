/*
 * Sessions: one conversation's tokens, paged KV cache, logits and the
 * state of the current generation (sampler, streamed-text buffer).
 *
 * Evaluation is lazy: a sampled token is appended at once but evaluated at
 * the start of the next step (or feed), so the last token of a generation
 * costs no forward pass unless the conversation continues.
 *
 * Failure rule: a failing call leaves the session exactly as it was, or, if
 * that is impossible, marks it unusable (llms_session_usable) until reset.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "session.h"
#include "../backend/backend.h"
#include "../core/error.h"
#include "../core/params.h"
#include "../model/model.h"

static llms_status fail(llms_session *s, llms_status st) {
    if (s) snprintf(s->errmsg, sizeof s->errmsg, "%s", err_message());
    return st;
}

LLMS_API void llms_session_params_init(llms_session_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
}

LLMS_API llms_status llms_session_create(llms_model *m, const llms_session_params *params,
                                         llms_session **out) {
    if (!out) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_session_create: out is NULL");
    *out = NULL;
    if (!m) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_session_create: model is NULL");
    if (!m->layers) return err_set(LLMS_ERR_STATE, "the model was loaded without weights (vocab only)");
    llms_session_params p;
    llms_session_params_init(&p);
    if (!params_merge(&p, sizeof p, params))
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_session_params: struct_size too small");
    if (p.n_ctx == 0) p.n_ctx = m->hp.n_ctx_train;
    if (p.n_ctx > (1u << 24)) return err_set(LLMS_ERR_INVALID_ARGUMENT, "n_ctx %u is too large", p.n_ctx);
    if (p.n_keep >= p.n_ctx) return err_set(LLMS_ERR_INVALID_ARGUMENT, "n_keep must be below n_ctx");
    llms_session *s = xcalloc(m->alloc, 1, sizeof *s);
    if (!s) return ERR_OOM();
    s->m = m;
    s->a = m->alloc;
    s->p = p;
    s->usable = 1;
    s->tokens = xcalloc(s->a, p.n_ctx, sizeof *s->tokens);
    s->logits = xcalloc(s->a, m->hp.n_vocab, sizeof(float));
    s->logits_tmp = xcalloc(s->a, m->hp.n_vocab, sizeof(float));
    if (!s->tokens || !s->logits || !s->logits_tmp) {
        llms_session_destroy(s);
        return ERR_OOM();
    }
    *out = s;
    return LLMS_OK;
}

static void end_generation(llms_session *s) {
    sampler_free(&s->smp);
    s->generating = 0;
    s->n_pend = 0;
}

LLMS_API void llms_session_destroy(llms_session *s) {
    if (!s) return;
    end_generation(s);
    kv_seq_free(&s->m->kv, &s->kv);
    xfree(s->a, s->tokens);
    xfree(s->a, s->logits);
    xfree(s->a, s->logits_tmp);
    xfree(s->a, s->pend);
    xfree(s->a, s->out);
    xfree(s->a, s);
}

LLMS_API llms_status llms_session_fork(const llms_session *src, llms_session **out) {
    if (!out) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_session_fork: out is NULL");
    *out = NULL;
    if (!src) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_session_fork: session is NULL");
    if (!src->usable) return err_set(LLMS_ERR_STATE, "cannot fork an unusable session");
    llms_session *s;
    llms_status st = llms_session_create(src->m, &src->p, &s);
    if (st) return st;
    /* The KV blocks are shared, not copied: the first write to a shared
     * block copies it. */
    if ((st = kv_seq_share(&src->m->kv, &s->kv, &src->kv, src->n_eval))) {
        llms_session_destroy(s);
        return st;
    }
    memcpy(s->tokens, src->tokens, src->n_tokens * sizeof *s->tokens);
    s->n_tokens = src->n_tokens;
    s->n_eval = src->n_eval;
    memcpy(s->logits, src->logits, src->m->hp.n_vocab * sizeof(float));
    s->has_logits = src->has_logits;
    if (src->generating) {
        llms_sampling_params p = src->smp.p;
        st = sampler_init(&s->smp, s->a, &p, src->smp.n_vocab, src->smp.eog_ids, src->smp.n_eog);
        if (st) { llms_session_destroy(s); return st; }
        memcpy(s->smp.rng, src->smp.rng, sizeof s->smp.rng);
        s->generating = 1;
        s->n_generated = src->n_generated;
        if (src->n_pend) {
            s->pend = xmalloc(s->a, src->n_pend);
            if (!s->pend) { llms_session_destroy(s); return ERR_OOM(); }
            memcpy(s->pend, src->pend, src->n_pend);
            s->n_pend = s->cap_pend = src->n_pend;
        }
    }
    *out = s;
    return LLMS_OK;
}

LLMS_API llms_status llms_session_reset(llms_session *s) {
    if (!s) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_session_reset: session is NULL");
    end_generation(s);
    kv_seq_truncate(&s->m->kv, &s->kv, 0);
    s->n_tokens = s->n_eval = 0;
    s->has_logits = 0;
    s->usable = 1;
    s->errmsg[0] = 0;
    return LLMS_OK;
}

LLMS_API llms_status llms_session_truncate(llms_session *s, uint32_t n) {
    if (!s) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_session_truncate: session is NULL");
    if (n > s->n_tokens)
        return fail(s, err_set(LLMS_ERR_INVALID_ARGUMENT, "cannot truncate %u tokens to %u", s->n_tokens, n));
    if (n == s->n_tokens) return LLMS_OK;
    end_generation(s);
    s->n_tokens = n;
    if (s->n_eval > n) {
        /* The logits after token n-1 are gone; re-evaluating that token on
         * the next feed or step brings them back. */
        s->n_eval = n ? n - 1 : 0;
        kv_seq_truncate(&s->m->kv, &s->kv, s->n_eval);
        s->has_logits = 0;
    }
    return LLMS_OK;
}

LLMS_API uint32_t llms_session_n_tokens(const llms_session *s) { return s ? s->n_tokens : 0; }
LLMS_API uint32_t llms_session_n_ctx(const llms_session *s) { return s ? s->p.n_ctx : 0; }
LLMS_API const int32_t *llms_session_tokens(const llms_session *s) { return s ? s->tokens : NULL; }
LLMS_API const char *llms_session_errmsg(const llms_session *s) { return s ? s->errmsg : ""; }
LLMS_API int32_t llms_session_usable(const llms_session *s) { return s ? s->usable : 0; }

/* Evaluate tokens [n_eval, n_tokens) in chunks; logits of the last one (and,
 * with all_logits, of every token from all_from on, n_vocab floats each).
 * On failure the evaluated prefix stays valid (n_eval advances per chunk). */
static llms_status evaluate_range(llms_session *s, float *all_logits, uint32_t all_from) {
    llms_model *m = s->m;
    while (s->n_eval < s->n_tokens) {
        uint32_t n = s->n_tokens - s->n_eval;
        if (n > PREFILL_CHUNK) n = PREFILL_CHUNK;
        uint32_t first = s->n_eval;
        llms_status st = kv_seq_reserve(&m->kv, &s->kv, first + n, first);
        if (st) return st;
        uint32_t pos[PREFILL_CHUNK], seq[PREFILL_CHUNK];
        uint8_t want[PREFILL_CHUNK];
        for (uint32_t i = 0; i < n; i++) {
            pos[i] = first + i;
            seq[i] = 0;
            want[i] = all_logits || (first + i + 1 == s->n_tokens);
        }
        kv_seq *seqs[1] = {&s->kv};
        fwd_batch b = {n, s->tokens + first, pos, seq, want, seqs, 1, 0};
        float *dst = all_logits ? all_logits + (size_t)(first - all_from) * m->hp.n_vocab : s->logits_tmp;
        st = backend_forward(m, &b, dst);
        if (st) return st;
        if (all_logits && first + n == s->n_tokens)
            memcpy(s->logits_tmp, dst + (size_t)(n - 1) * m->hp.n_vocab, m->hp.n_vocab * sizeof(float));
        s->n_eval = first + n;
        if (s->n_eval == s->n_tokens) {
            float *t = s->logits;
            s->logits = s->logits_tmp;
            s->logits_tmp = t;
            s->has_logits = 1;
        }
    }
    return LLMS_OK;
}

static llms_status evaluate_pending(llms_session *s) { return evaluate_range(s, NULL, 0); }

/* Context shift: keep the first n_keep tokens, drop the oldest half of the
 * rest, and recompute the cache for what moved (positions change, and a
 * recompute is exact where rotating cached keys is not). */
static llms_status context_shift(llms_session *s) {
    uint32_t keep = s->p.n_keep, rest = s->n_tokens - keep, drop = rest / 2;
    if (drop == 0) return err_set(LLMS_ERR_CONTEXT_FULL, "context full and nothing can be shifted out");
    memmove(s->tokens + keep, s->tokens + keep + drop, (rest - drop) * sizeof *s->tokens);
    s->n_tokens -= drop;
    if (s->n_eval > keep) s->n_eval = keep;
    kv_seq_truncate(&s->m->kv, &s->kv, s->n_eval);
    s->has_logits = 0;
    return LLMS_OK;
}

static llms_status check_tokens(const llms_session *s, const int32_t *t, size_t n) {
    int32_t V = (int32_t)s->m->hp.n_vocab;
    for (size_t i = 0; i < n; i++)
        if (t[i] < 0 || t[i] >= V)
            return err_set(LLMS_ERR_TOKEN_RANGE, "token %d at index %zu is outside the vocabulary (%d)",
                           t[i], i, V);
    return LLMS_OK;
}

/* Append and evaluate; on failure restore the token count (the KV blocks
 * beyond it are simply unused). */
static llms_status append_and_eval(llms_session *s, const int32_t *t, size_t n) {
    if (n > s->p.n_ctx)
        return err_set(LLMS_ERR_PROMPT_TOO_LONG, "%zu tokens cannot fit in a context of %u", n, s->p.n_ctx);
    if (s->n_tokens + n > s->p.n_ctx) {
        if (!(s->p.flags & LLMS_SESSION_CONTEXT_SHIFT))
            return err_set(LLMS_ERR_CONTEXT_FULL, "context full: %u + %zu tokens exceed %u", s->n_tokens, n,
                           s->p.n_ctx);
        while (s->n_tokens + n > s->p.n_ctx) {
            llms_status st = context_shift(s);
            if (st) return st;
        }
    }
    uint32_t old_n = s->n_tokens, old_eval = s->n_eval;
    int old_has = s->has_logits;
    memcpy(s->tokens + s->n_tokens, t, n * sizeof *t);
    s->n_tokens += (uint32_t)n;
    llms_status st = evaluate_pending(s);
    if (st) {
        s->n_tokens = old_n;
        if (s->n_eval > old_eval) {
            /* Part of the new tokens was evaluated: drop them again. */
            s->n_eval = old_eval;
            kv_seq_truncate(&s->m->kv, &s->kv, s->n_eval);
        }
        s->has_logits = old_has && s->n_eval == old_n;
    }
    return st;
}

LLMS_API llms_status llms_session_feed_tokens(llms_session *s, const int32_t *t, size_t n) {
    if (!s) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_session_feed_tokens: session is NULL");
    if (!t && n) return fail(s, err_set(LLMS_ERR_INVALID_ARGUMENT, "tokens is NULL"));
    if (!s->usable) return fail(s, err_set(LLMS_ERR_STATE, "session is unusable; reset it"));
    llms_status st = check_tokens(s, t, n);
    if (st) return fail(s, st);
    end_generation(s);
    if (n == 0) {
        st = evaluate_pending(s);
        return st ? fail(s, st) : LLMS_OK;
    }
    st = append_and_eval(s, t, n);
    return st ? fail(s, st) : LLMS_OK;
}

LLMS_API llms_status llms_session_feed_tokens_logits(llms_session *s, const int32_t *t, size_t n,
                                                     float *logits) {
    if (!s) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_session_feed_tokens_logits: session is NULL");
    if ((!t || !logits) && n) return fail(s, err_set(LLMS_ERR_INVALID_ARGUMENT, "tokens or logits is NULL"));
    if (!s->usable) return fail(s, err_set(LLMS_ERR_STATE, "session is unusable; reset it"));
    llms_status st = check_tokens(s, t, n);
    if (st) return fail(s, st);
    if (s->n_tokens + n > s->p.n_ctx)
        return fail(s, err_set(n > s->p.n_ctx ? LLMS_ERR_PROMPT_TOO_LONG : LLMS_ERR_CONTEXT_FULL,
                               "%u + %zu tokens exceed the context of %u", s->n_tokens, n, s->p.n_ctx));
    end_generation(s);
    /* Earlier tokens not yet evaluated first, so only the new ones remain. */
    if ((st = evaluate_pending(s))) return fail(s, st);
    if (n == 0) return LLMS_OK;
    uint32_t old_n = s->n_tokens;
    memcpy(s->tokens + s->n_tokens, t, n * sizeof *t);
    s->n_tokens += (uint32_t)n;
    st = evaluate_range(s, logits, old_n);
    if (st) {
        s->n_tokens = old_n;
        s->n_eval = old_n;
        kv_seq_truncate(&s->m->kv, &s->kv, old_n);
        s->has_logits = old_n > 0;  /* the session's own logits were not touched */
        return fail(s, st);
    }
    return LLMS_OK;
}

LLMS_API llms_status llms_session_feed_text(llms_session *s, const char *text, size_t len, uint32_t flags) {
    if (!s) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_session_feed_text: session is NULL");
    if (!text && len) return fail(s, err_set(LLMS_ERR_INVALID_ARGUMENT, "text is NULL"));
    tok_vec v = {0};
    llms_status st = tok_encode(s->m->tok, text ? text : "", len, flags, &v);
    if (!st) st = llms_session_feed_tokens(s, v.data, v.n);
    else fail(s, st);
    xfree(s->a, v.data);
    return st;
}

LLMS_API const float *llms_session_logits(const llms_session *s) {
    return s && s->has_logits && s->n_eval == s->n_tokens ? s->logits : NULL;
}

/* ---- generation ---- */

LLMS_API void llms_step_result_init(llms_step_result *r) {
    if (!r) return;
    memset(r, 0, sizeof *r);
    r->struct_size = sizeof *r;
    r->token = -1;
}

LLMS_API llms_status llms_session_generate_begin(llms_session *s, const llms_sampling_params *params) {
    if (!s) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_session_generate_begin: session is NULL");
    if (!s->usable) return fail(s, err_set(LLMS_ERR_STATE, "session is unusable; reset it"));
    if (s->n_tokens == 0) return fail(s, err_set(LLMS_ERR_STATE, "feed a prompt before generating"));
    end_generation(s);
    int32_t V = (int32_t)s->m->hp.n_vocab;
    /* End-of-generation ids, for min_tokens and IGNORE_EOG. */
    uint32_t n_eog = 0;
    for (int32_t i = 0; i < V; i++) n_eog += tok_is_eog(s->m->tok, i) ? 1 : 0;
    int32_t *eog = xcalloc(s->a, n_eog ? n_eog : 1, sizeof *eog);
    if (!eog) return fail(s, ERR_OOM());
    n_eog = 0;
    for (int32_t i = 0; i < V; i++) if (tok_is_eog(s->m->tok, i)) eog[n_eog++] = i;
    llms_status st = sampler_init(&s->smp, s->a, params, V, eog, n_eog);
    xfree(s->a, eog);
    if (st) return fail(s, st);
    s->generating = 1;
    s->n_generated = 0;
    s->n_pend = 0;
    return LLMS_OK;
}

static int utf8_len(unsigned char c) {
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) return 2;
    if ((c & 0xF0) == 0xE0) return 3;
    if ((c & 0xF8) == 0xF0) return 4;
    return 1;  /* a stray continuation or invalid byte stands alone */
}

/* Length of the longest prefix of p[0..n) that does not end inside a
 * UTF-8 character that later bytes could still complete. */
static size_t utf8_complete_prefix(const char *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        int l = utf8_len((unsigned char)p[i]);
        if (l == 1) { i++; continue; }
        if (i + (size_t)l > n) {
            /* Incomplete only if every byte present is a continuation byte. */
            for (size_t j = i + 1; j < n; j++)
                if (((unsigned char)p[j] & 0xC0) != 0x80) { i = j; goto next; }
            return i;
        }
        for (int j = 1; j < l; j++)
            if (((unsigned char)p[i + j] & 0xC0) != 0x80) { i += (size_t)j; goto next; }
        i += (size_t)l;
    next:;
    }
    return n;
}

static llms_status set_out(llms_session *s, const char *p, size_t n) {
    if (n + 1 > s->cap_out) {
        size_t cap = s->cap_out ? s->cap_out : 64;
        while (cap < n + 1) cap *= 2;
        char *o = xrealloc(s->a, s->out, cap);
        if (!o) return ERR_OOM();
        s->out = o;
        s->cap_out = cap;
    }
    if (n) memcpy(s->out, p, n);
    s->out[n] = 0;
    return LLMS_OK;
}

/* Releases what can be shown: stops at a complete stop string (returns 1),
 * holds back an incomplete UTF-8 tail and any suffix that could begin a
 * stop string. With `flush`, releases everything. */
static int release_text(llms_session *s, int flush, size_t *n_release) {
    const sampler *smp = &s->smp;
    size_t best = SIZE_MAX;
    for (uint32_t i = 0; i < smp->p.n_stop; i++) {
        const char *st = smp->stop[i];
        size_t L = strlen(st);
        if (L > s->n_pend) continue;
        for (size_t k = 0; k + L <= s->n_pend && k < best; k++)
            if (memcmp(s->pend + k, st, L) == 0) { best = k; break; }
    }
    if (best != SIZE_MAX) { *n_release = best; return 1; }
    if (flush) { *n_release = s->n_pend; return 0; }
    size_t n = utf8_complete_prefix(s->pend, s->n_pend);
    size_t hold = 0;
    for (uint32_t i = 0; i < smp->p.n_stop; i++) {
        const char *st = smp->stop[i];
        size_t L = strlen(st);
        for (size_t h = (L - 1 < n ? L - 1 : n); h > hold; h--)
            if (memcmp(s->pend + n - h, st, h) == 0) { hold = h; break; }
    }
    *n_release = n - hold;
    return 0;
}

static llms_status finish(llms_session *s, llms_step_result *r, int reason, int32_t token, size_t n_text) {
    llms_status st = set_out(s, s->pend, n_text);
    if (st) return fail(s, st);
    llms_step_result res;
    llms_step_result_init(&res);
    res.token = token;
    res.finish_reason = reason;
    res.text = s->out;
    res.text_len = n_text;
    res.n_generated = s->n_generated;
    end_generation(s);
    params_emit(r, &res, sizeof res);
    return LLMS_DONE;
}

LLMS_API llms_status llms_session_step(llms_session *s, llms_step_result *r) {
    if (!s || !r) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_session_step: NULL argument");
    if (r->struct_size < sizeof(uint32_t))
        return fail(s, err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_step_result: struct_size too small"));
    if (!s->usable) return fail(s, err_set(LLMS_ERR_STATE, "session is unusable; reset it"));
    if (!s->generating) return fail(s, err_set(LLMS_ERR_STATE, "no generation in progress"));
    const llms_sampling_params *p = &s->smp.p;
    if (p->max_tokens >= 0 && s->n_generated >= (uint32_t)p->max_tokens)
        return finish(s, r, LLMS_FINISH_LENGTH, -1, s->n_pend);
    if (s->n_tokens >= s->p.n_ctx && !(s->p.flags & LLMS_SESSION_CONTEXT_SHIFT))
        return finish(s, r, LLMS_FINISH_CONTEXT_FULL, -1, s->n_pend);
    llms_status st = evaluate_pending(s);
    if (st) {
        /* The sampled token could not be evaluated: drop it so the session
         * stays consistent, and end the generation with the error. */
        s->n_tokens = s->n_eval;
        end_generation(s);
        return fail(s, st);
    }
    int32_t tok;
    float lp;
    uint32_t n_top = 0;
    st = sampler_sample(&s->smp, s->logits, s->tokens, s->n_tokens, s->n_generated, &tok, &lp, s->top, &n_top);
    if (st) { end_generation(s); return fail(s, st); }
    if (tok_is_eog(s->m->tok, tok) && !(p->flags & LLMS_SAMPLE_IGNORE_EOG))
        return finish(s, r, LLMS_FINISH_EOG, tok, s->n_pend);

    /* Append now, evaluate at the next step. */
    if (s->n_tokens >= s->p.n_ctx) {
        if ((st = context_shift(s))) { end_generation(s); return fail(s, st); }
    }
    s->tokens[s->n_tokens++] = tok;
    s->n_generated++;
    size_t plen = 0;
    const char *piece = tok_piece(s->m->tok, tok, 0, &plen);
    if (s->n_pend + plen > s->cap_pend) {
        size_t cap = s->cap_pend ? s->cap_pend : 64;
        while (cap < s->n_pend + plen) cap *= 2;
        char *np = xrealloc(s->a, s->pend, cap);
        if (!np) { end_generation(s); return fail(s, ERR_OOM()); }
        s->pend = np;
        s->cap_pend = cap;
    }
    if (plen) memcpy(s->pend + s->n_pend, piece, plen);
    s->n_pend += plen;

    size_t n_rel = 0;
    if (release_text(s, 0, &n_rel)) return finish(s, r, LLMS_FINISH_STOP, tok, n_rel);
    if ((st = set_out(s, s->pend, n_rel))) { end_generation(s); return fail(s, st); }
    memmove(s->pend, s->pend + n_rel, s->n_pend - n_rel);
    s->n_pend -= n_rel;

    llms_step_result res;
    llms_step_result_init(&res);
    res.token = tok;
    res.logprob = lp;
    res.text = s->out;
    res.text_len = n_rel;
    res.top_logprobs = n_top ? s->top : NULL;
    res.n_top_logprobs = n_top;
    res.n_generated = s->n_generated;
    params_emit(r, &res, sizeof res);
    return LLMS_TOKEN;
}
