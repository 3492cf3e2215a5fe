#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/error.h"
#include "../core/params.h"
#include "../backend/cpu/vec.h"

LLMS_API void llms_sampling_params_init(llms_sampling_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->temperature = 0.8f;
    p->top_k = 40;
    p->top_p = 0.95f;
    p->min_p = 0.05f;
    p->repeat_penalty = 1.0f;
    p->penalty_last_n = 64;
    p->seed = 0;
    p->max_tokens = -1;
}

/* xoshiro256** seeded through splitmix64: fast, and fully determined by the seed. */
static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
static uint64_t rng_next(uint64_t *s) {
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t; s[3] = rotl(s[3], 45);
    return r;
}
static double rng_uniform(uint64_t *s) { return (double)(rng_next(s) >> 11) * 0x1.0p-53; }

static int finite_nonneg(float f) { return isfinite(f) && f >= 0; }

llms_status sampler_init(sampler *s, const lalloc *a, const llms_sampling_params *in, int32_t n_vocab,
                         const int32_t *eog_ids, uint32_t n_eog) {
    memset(s, 0, sizeof *s);
    s->a = a;
    s->n_vocab = n_vocab;
    llms_sampling_params p;
    llms_sampling_params_init(&p);
    if (!params_merge(&p, sizeof p, in))
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_sampling_params: struct_size too small");
    if (!finite_nonneg(p.temperature))
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "temperature must be a finite number >= 0");
    if (p.top_k < 0) return err_set(LLMS_ERR_INVALID_ARGUMENT, "top_k must be >= 0");
    if (!(p.top_p > 0 && p.top_p <= 1)) return err_set(LLMS_ERR_INVALID_ARGUMENT, "top_p must be in (0, 1]");
    if (!(p.min_p >= 0 && p.min_p <= 1)) return err_set(LLMS_ERR_INVALID_ARGUMENT, "min_p must be in [0, 1]");
    if (!(isfinite(p.repeat_penalty) && p.repeat_penalty > 0))
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "repeat_penalty must be a finite number > 0");
    if (!isfinite(p.frequency_penalty) || !isfinite(p.presence_penalty))
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "penalties must be finite");
    if (p.penalty_last_n < -1) return err_set(LLMS_ERR_INVALID_ARGUMENT, "penalty_last_n must be >= -1");
    if (p.max_tokens < -1) return err_set(LLMS_ERR_INVALID_ARGUMENT, "max_tokens must be >= -1");
    if (p.min_tokens < 0) return err_set(LLMS_ERR_INVALID_ARGUMENT, "min_tokens must be >= 0");
    if (p.n_logprobs < 0 || p.n_logprobs > 20)
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "n_logprobs must be in [0, 20]");
    if ((p.n_stop && !p.stop) || (p.n_logit_bias && !p.logit_bias))
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "stop or logit_bias array is NULL");
    if (p.n_stop > 64) return err_set(LLMS_ERR_INVALID_ARGUMENT, "at most 64 stop strings");
    for (uint32_t i = 0; i < p.n_logit_bias; i++) {
        const llms_logit_bias *b = &p.logit_bias[i];
        if (b->token < 0 || b->token >= n_vocab)
            return err_set(LLMS_ERR_TOKEN_RANGE, "logit_bias token %d is outside the vocabulary", b->token);
        if (isnan(b->bias) || b->bias == INFINITY)
            return err_set(LLMS_ERR_INVALID_ARGUMENT, "logit_bias for token %d is not a number or +inf", b->token);
    }
    for (uint32_t i = 0; i < p.n_stop; i++)
        if (!p.stop[i] || !p.stop[i][0] || strlen(p.stop[i]) > 1024)
            return err_set(LLMS_ERR_INVALID_ARGUMENT, "stop string %u is NULL, empty or longer than 1024 bytes", i);

    s->work = xcalloc(a, (size_t)n_vocab, sizeof *s->work);
    s->idx = xcalloc(a, (size_t)n_vocab, sizeof *s->idx);
    s->eog_ids = xcalloc(a, n_eog ? n_eog : 1, sizeof *s->eog_ids);
    s->bias = xcalloc(a, p.n_logit_bias ? p.n_logit_bias : 1, sizeof *s->bias);
    s->stop = xcalloc(a, p.n_stop ? p.n_stop : 1, sizeof *s->stop);
    if (!s->work || !s->idx || !s->eog_ids || !s->bias || !s->stop) goto oom;
    if (n_eog) memcpy(s->eog_ids, eog_ids, n_eog * sizeof *eog_ids);
    s->n_eog = n_eog;
    if (p.n_logit_bias) memcpy(s->bias, p.logit_bias, p.n_logit_bias * sizeof *s->bias);
    for (uint32_t i = 0; i < p.n_stop; i++) {
        s->stop[i] = xstrndup(a, p.stop[i], strlen(p.stop[i]));
        if (!s->stop[i]) goto oom;
    }
    p.logit_bias = s->bias;
    p.stop = (const char *const *)s->stop;
    s->p = p;
    uint64_t seed = p.seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix(&seed);
    return LLMS_OK;
oom:
    sampler_free(s);
    return ERR_OOM();
}

void sampler_free(sampler *s) {
    if (!s->a) return;
    if (s->stop)
        for (uint32_t i = 0; i < s->p.n_stop; i++) xfree(s->a, s->stop[i]);
    xfree(s->a, s->stop);
    xfree(s->a, s->bias);
    xfree(s->a, s->eog_ids);
    xfree(s->a, s->work);
    xfree(s->a, s->idx);
    memset(s, 0, sizeof *s);
}

static int cmp_int(const void *x, const void *y) {
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    return (a > b) - (a < b);
}

/* Penalties need each distinct token's count in the window: sort a copy. */
static void apply_penalties(sampler *s, float *l, const int32_t *hist, uint32_t n_hist) {
    const llms_sampling_params *p = &s->p;
    if (p->repeat_penalty == 1.0f && p->frequency_penalty == 0 && p->presence_penalty == 0) return;
    uint32_t w = p->penalty_last_n < 0 ? n_hist : (uint32_t)p->penalty_last_n;
    if (w > n_hist) w = n_hist;
    if (w == 0 || (uint32_t)s->n_vocab < w) return;
    /* idx is free scratch here (n_vocab >= w). */
    memcpy(s->idx, hist + n_hist - w, w * sizeof(int32_t));
    qsort(s->idx, w, sizeof(int32_t), cmp_int);
    for (uint32_t i = 0; i < w;) {
        uint32_t j = i;
        while (j < w && s->idx[j] == s->idx[i]) j++;
        int32_t tok = s->idx[i];
        if (tok >= 0 && tok < s->n_vocab) {
            float v = l[tok];
            v = v > 0 ? v / p->repeat_penalty : v * p->repeat_penalty;
            v -= (float)(j - i) * p->frequency_penalty + p->presence_penalty;
            l[tok] = v;
        }
        i = j;
    }
}

/* Sorting by value, descending; ties by lower id for determinism. qsort has
 * no context argument, so the key is thread-local (sessions sample on many
 * threads at once). */
static _Thread_local const float *g_sort_vals;
static int cmp_desc(const void *x, const void *y) {
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    float va = g_sort_vals[a], vb = g_sort_vals[b];
    if (va != vb) return va > vb ? -1 : 1;
    return (a > b) - (a < b);
}

/* Top k indices of v (descending) into idx[0..k) via a bounded min-heap. */
static void top_k_indices(const float *v, int32_t n, int32_t k, int32_t *idx) {
    int32_t h = 0;
#define WORSE(a, b) (v[a] < v[b] || (v[a] == v[b] && (a) > (b)))
    for (int32_t i = 0; i < n; i++) {
        if (h < k) {
            int32_t c = h++;
            idx[c] = i;
            while (c > 0) {
                int32_t par = (c - 1) / 2;
                if (!WORSE(idx[c], idx[par])) break;
                int32_t t = idx[c]; idx[c] = idx[par]; idx[par] = t;
                c = par;
            }
        } else if (WORSE(idx[0], i)) {
            idx[0] = i;
            int32_t c = 0;
            for (;;) {
                int32_t lc = 2 * c + 1, rc = lc + 1, m = c;
                if (lc < h && WORSE(idx[lc], idx[m])) m = lc;
                if (rc < h && WORSE(idx[rc], idx[m])) m = rc;
                if (m == c) break;
                int32_t t = idx[c]; idx[c] = idx[m]; idx[m] = t;
                c = m;
            }
        }
    }
#undef WORSE
}

static void sort_desc(const float *v, int32_t *idx, int32_t n) {
    g_sort_vals = v;
    qsort(idx, (size_t)n, sizeof *idx, cmp_desc);
}

llms_status sampler_sample(sampler *s, const float *logits, const int32_t *history, uint32_t n_history,
                           uint32_t n_generated, int32_t *token, float *logprob, llms_token_logprob *top,
                           uint32_t *n_top) {
    const llms_sampling_params *p = &s->p;
    const int32_t V = s->n_vocab;
    /* The passes over the vocabulary are a step's own time, on the thread
     * the pool waits for: SIMD (vec.h), CPU code whichever backend
     * computed the logits. Scalar, they took 0.22 ms of 32000 logits, 1%
     * of a tinyllama token (0.9 ms with a 128k vocabulary); now 0.05. */
    const vec_ops *vo = vec_best();
    float *l = s->work;
    if (vo->any_nan(logits, (size_t)V))
        for (int32_t i = 0; i < V; i++)
            if (isnan(logits[i])) return err_set(LLMS_ERR_INTERNAL, "model produced a NaN logit (token %d)", i);
    memcpy(l, logits, (size_t)V * sizeof *l);
    for (uint32_t i = 0; i < p->n_logit_bias; i++) l[s->bias[i].token] += s->bias[i].bias;
    apply_penalties(s, l, history, n_history);
    if (n_generated < (uint32_t)p->min_tokens || (p->flags & LLMS_SAMPLE_IGNORE_EOG))
        for (uint32_t i = 0; i < s->n_eog; i++) l[s->eog_ids[i]] = -INFINITY;

    /* Log-softmax of the adjusted logits (temperature 1) for the reported
     * log-probabilities. */
    size_t first_max;  /* the lowest id with the largest logit */
    const float mx = vo->max_first(l, (size_t)V, &first_max);
    if (mx == -INFINITY) return err_set(LLMS_ERR_INVALID_ARGUMENT, "every token is banned by logit_bias");
    const double z = vo->sum_exp(l, (size_t)V, mx);
    const float lse = mx + (float)log(z);

    int32_t chosen;
    if (p->temperature == 0) {
        chosen = (int32_t)first_max;
    } else {
        /* Candidates: top-k (or all), sorted by logit. */
        int32_t n = V;
        if (p->top_k > 0 && p->top_k < V) {
            n = p->top_k;
            top_k_indices(l, V, n, s->idx);
        } else {
            for (int32_t i = 0; i < V; i++) s->idx[i] = i;
        }
        sort_desc(l, s->idx, n);
        /* Softmax with temperature over the candidates, into probabilities. */
        double sum = 0;
        float m0 = l[s->idx[0]];
        for (int32_t i = 0; i < n; i++) sum += exp((double)(l[s->idx[i]] - m0) / p->temperature);
        /* top-p: smallest prefix whose mass reaches top_p; min-p: drop
         * candidates below min_p times the best one's probability. */
        double cum = 0;
        int32_t keep = n;
        for (int32_t i = 0; i < n; i++) {
            double pr = exp((double)(l[s->idx[i]] - m0) / p->temperature) / sum;
            if (p->min_p > 0 && i > 0 && pr < p->min_p * (1.0 / sum)) { keep = i; break; }
            cum += pr;
            if (cum >= p->top_p) { keep = i + 1; break; }
        }
        if (keep < 1) keep = 1;
        double tot = 0;
        for (int32_t i = 0; i < keep; i++) tot += exp((double)(l[s->idx[i]] - m0) / p->temperature);
        double r = rng_uniform(s->rng) * tot, acc = 0;
        chosen = s->idx[keep - 1];
        for (int32_t i = 0; i < keep; i++) {
            acc += exp((double)(l[s->idx[i]] - m0) / p->temperature);
            if (r < acc) { chosen = s->idx[i]; break; }
        }
    }
    *token = chosen;
    *logprob = l[chosen] - lse;
    *n_top = 0;
    if (p->n_logprobs > 0 && top) {
        int32_t k = p->n_logprobs < V ? p->n_logprobs : V;
        top_k_indices(l, V, k, s->idx);
        sort_desc(l, s->idx, k);
        for (int32_t i = 0; i < k; i++) {
            top[i].token = s->idx[i];
            top[i].logprob = l[s->idx[i]] - lse;
        }
        *n_top = (uint32_t)k;
    }
    return LLMS_OK;
}
