/*
 * Token sampling for one request: logit bias, repetition / frequency /
 * presence penalties over a window, end-of-generation suppression before
 * min_tokens, then greedy or temperature + top-k + top-p + min-p with a
 * seeded generator (same seed and inputs, same output).
 */
#ifndef LLMS_SESSION_SAMPLER_H
#define LLMS_SESSION_SAMPLER_H

#include <stdint.h>

#include "llmserve.h"
#include "../core/alloc.h"

typedef struct sampler {
    const lalloc *a;
    llms_sampling_params p;      /* stop/logit_bias point at the sampler's own copies */
    llms_logit_bias *bias;
    char **stop;
    int32_t *eog_ids;            /* suppressed before min_tokens */
    uint32_t n_eog;
    uint64_t rng[4];
    /* scratch, n_vocab long */
    float *work;
    int32_t *idx;
    int32_t n_vocab;
} sampler;

/* Validates and copies params. */
llms_status sampler_init(sampler *s, const lalloc *a, const llms_sampling_params *p, int32_t n_vocab,
                         const int32_t *eog_ids, uint32_t n_eog);
void sampler_free(sampler *s);

/* Picks a token from `logits` (not modified). `history` is the session's
 * tokens, for the penalty window. Writes the token's log-probability and,
 * if requested, the top-n log-probabilities. */
llms_status sampler_sample(sampler *s, const float *logits, const int32_t *history, uint32_t n_history,
                           uint32_t n_generated, int32_t *token, float *logprob,
                           llms_token_logprob *top, uint32_t *n_top);

#endif
