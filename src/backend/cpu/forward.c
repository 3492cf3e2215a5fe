/*
 * The llama-family graph on the CPU (llama, qwen2):
 *   x = embed(token)
 *   per layer:  h = rmsnorm(x)·g;  q,k,v = Wq h (+b), Wk h (+b), Wv h (+b)
 *               rope(q, k);  store k, v in the paged cache
 *               x += Wo · attention(q, cache)
 *               h = rmsnorm(x)·g;  x += Wdown (silu(Wgate h) * Wup h)
 *   logits = Wout · rmsnorm(x)·g   (only for tokens that want them)
 * Activations are float32; weights stay in their file type.
 */
#include <math.h>
#include <string.h>

#include "cpu.h"
#include "vec.h"
#include "../backend.h"
#include "../vulkan/vk_ctx.h"
#include "../../core/error.h"

typedef struct scratch {
    float *x, *h, *q, *k, *v, *att, *gate, *up, *rope_cs;
} scratch;

/* Rotate pairs: NORM style pairs (2i, 2i+1); NEOX style pairs (i, i+n_rot/2). */
static void rope_apply(float *vec, const float *cs, uint32_t n_rot, int neox) {
    uint32_t half = n_rot / 2;
    for (uint32_t i = 0; i < half; i++) {
        float c = cs[2 * i], s = cs[2 * i + 1];
        uint32_t i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
        float a = vec[i0], b = vec[i1];
        vec[i0] = a * c - b * s;
        vec[i1] = a * s + b * c;
    }
}

typedef struct attn_job {
    const llms_model *m;
    const fwd_batch *b;
    uint32_t layer;
    uint32_t heads_per_task;   /* query heads sharing one KV head, handled together */
    uint32_t n_runs;           /* runs of tokens of one sequence (see attn_runs) */
    const uint32_t *run_start; /* [n_runs + 1] first token of each run */
    const float *q;
    float *out;
} attn_job;

/* Query heads per attention task at most (state on the stack: acc[G][D]). */
#define ATTN_MAX_GROUP VEC_MAX_Q
/* Tokens per attention task at most, and the floats of their accumulators
 * (tokens x heads x head_dim) on a task's stack. */
#define ATTN_MAX_RUN 8
#define ATTN_ACC_FLOATS 8192
/* KV blocks asked for ahead of the one in use, into L1: a piece (4 KiB
 * for tinyllama) is a page of its own to the hardware prefetchers, which
 * do not cross pages, so without this each block began with misses to
 * memory. Decoding tinyllama-1.1b Q4_0 at 512-560 positions (2 threads,
 * alternating token by token, 40 tokens each, medians): attention 1.03 -
 * 1.22 ms a token without, 0.71 - 0.83 with the next two blocks (the next
 * one alone 0.79 - 0.83; two ahead to L2 no better; asking for the next
 * block again although it was asked for one block earlier measured better
 * than asking once). Run twice over the same blocks (the second pass from
 * cache) it took 0.36 ms more: that is its arithmetic. */
#define ATTN_READ_AHEAD 2

/* A run of tokens of one sequence and a group of query heads that share a
 * KV head (GQA): online softmax over each token's positions 0..pos,
 * streaming K/V block by block without a score matrix.
 * - The head group walks the blocks together: each block is read once for
 *   all its heads (one task per head read the KV 8x for tinyllama).
 * - So does the run of tokens: each K/V block is read once per run rather
 *   than once per token (a 16-token tail over 1,000 cached positions read
 *   each layer's 256 KB of K/V sixteen times). On the 2-core development
 *   machine the FMA rate bounds attention and this measured level; it
 *   spares cache traffic where more cores share it.
 * Each token's and head's arithmetic is the same whatever the grouping
 * (deterministic mode depends on it). */
static void attn_task(void *arg, int64_t idx, int64_t n) {
    (void)n;
    const attn_job *j = arg;
    const hparams *hp = &j->m->hp;
    const kv_pool *kv = &j->m->kv;
    const uint32_t D = hp->head_dim, H = hp->n_head, G = j->heads_per_task;
    const uint32_t run = (uint32_t)(idx / (H / G)), h0 = (uint32_t)(idx % (H / G)) * G;
    const uint32_t t0 = j->run_start[run], nt = j->run_start[run + 1] - t0;
    const uint32_t kvh = h0 / (H / hp->n_head_kv);
    const kv_seq *s = j->b->seqs[j->b->seq[t0]];
    const float scale = 1.0f / sqrtf((float)D);
    const vec_ops *vo = vec_best();
    float acc[ATTN_ACC_FLOATS];
    attn_state st[ATTN_MAX_RUN];
    uint32_t last = 0;
    for (uint32_t i = 0; i < nt; i++) {
        attn_start(&st[i], acc + (size_t)i * G * D, (int)G, (int)D);
        if (j->b->pos[t0 + i] > last) last = j->b->pos[t0 + i];
    }
    _Static_assert(KV_BLOCK_TOKENS == VEC_BLOCK, "one score vector per KV block");
    /* One KV block (its piece for this layer and KV head: kvcache/kv.h) at a
     * time, for every token of the run that sees it: the group's scores,
     * each head's online-softmax update and its weighted values. */
    const size_t piece_bytes = kv->piece_elems * sizeof(kv_half);
    for (uint32_t p0 = 0; p0 <= last; p0 += KV_BLOCK_TOKENS) {
        const uint32_t bi = p0 / KV_BLOCK_TOKENS;
        for (uint32_t ahead = 1; ahead <= ATTN_READ_AHEAD && p0 + ahead * KV_BLOCK_TOKENS <= last; ahead++) {
            const char *piece = (const char *)kv_piece(kv, s->blocks[bi + ahead], j->layer, kvh);
            for (size_t o = 0; o < piece_bytes; o += 64) __builtin_prefetch(piece + o, 0, 3);
        }
        const kv_half *kt = kv_piece(kv, s->blocks[bi], j->layer, kvh);
        const kv_half *v = kt + (size_t)KV_BLOCK_TOKENS * D;
        for (uint32_t i = 0; i < nt; i++) {
            const uint32_t pos = j->b->pos[t0 + i];
            if (p0 > pos) continue;
            const uint32_t cnt = pos + 1 - p0 < KV_BLOCK_TOKENS ? pos + 1 - p0 : KV_BLOCK_TOKENS;
            const float *q = j->q + ((size_t)(t0 + i) * H + h0) * D;
            vo->attn_block(q, (int)G, kt, v, D, (int)cnt, (int)D, scale, &st[i]);
        }
    }
    for (uint32_t i = 0; i < nt; i++)
        attn_finish(&st[i], (int)G, (int)D, j->out + ((size_t)(t0 + i) * H + h0) * D, D);
}

/* Splits the batch into runs of consecutive tokens of one sequence, at most
 * max_run long; run_start gets n_runs + 1 entries. Returns n_runs. */
static uint32_t attn_runs(const fwd_batch *b, uint32_t max_run, uint32_t *run_start) {
    uint32_t n = 0;
    for (uint32_t t = 0; t < b->n_tokens; t++)
        if (t == 0 || b->seq[t] != b->seq[t - 1] || t - run_start[n - 1] >= max_run) run_start[n++] = t;
    run_start[n] = b->n_tokens;
    return n;
}

/* The task shape: heads per task, the whole group sharing a KV head, and
 * tokens per run, as many as the accumulators allow; both halved (tokens
 * first) while that leaves fewer than 2 tasks per thread, so that a short
 * batch still spreads over the threads. Not more: a halved group reads
 * its KV pieces twice (decoding tinyllama at 1,000 positions on 2 threads,
 * 4 tasks of 8 heads took 1.41-1.63 ms of attention a token against
 * 1.72-1.74 for 8 tasks of 4). Fills run_start (attn_runs). */
static void attn_shape(const hparams *hp, const fwd_batch *b, int threads, uint32_t *heads, uint32_t *run_start,
                       uint32_t *n_runs) {
    uint32_t G = hp->n_head / hp->n_head_kv;
    while (G > 1 && (G > ATTN_MAX_GROUP || (size_t)G * hp->head_dim > ATTN_ACC_FLOATS) && G % 2 == 0) G /= 2;
    if (G > ATTN_MAX_GROUP || (size_t)G * hp->head_dim > ATTN_ACC_FLOATS) G = 1;
    uint32_t R = ATTN_MAX_RUN;
    while (R > 1 && (size_t)R * G * hp->head_dim > ATTN_ACC_FLOATS) R /= 2;
    const int64_t want = 2 * (int64_t)threads;
    for (;;) {
        *n_runs = attn_runs(b, R, run_start);
        if ((int64_t)*n_runs * (hp->n_head / G) >= want) break;
        if (R > 1) R /= 2;
        else if (G > 1 && G % 2 == 0) G /= 2;
        else break;
    }
    *heads = G;
}

/* cpu_matmul, or in deterministic mode in groups of at most
 * FWD_ROWWISE_TOKENS tokens: below that cpu_matmul uses the matrix-vector
 * kernels, which compute each token's products on their own (quantized
 * activations and dot products per token), so a token's result does not
 * depend on its neighbours in the batch. Groups rather than single tokens
 * cut the thread-pool dispatches threefold. Keep in step with
 * GEMM_MIN_TOKENS in matmul.c. */
#define FWD_ROWWISE_TOKENS 3
static llms_status mm(const fwd_batch *b, threadpool *pool, const lalloc *a, const weight *w,
                      const float *x, int64_t n, float *y) {
    if ((b->flags & FWD_DETERMINISTIC) && cpu_matmul_tokenwise(w))
        return cpu_matmul_tokenwise_n(pool, a, &w, 1, x, n, &y);
    if (!(b->flags & FWD_DETERMINISTIC) || n <= FWD_ROWWISE_TOKENS) return cpu_matmul(pool, a, w, x, n, y);
    for (int64_t t = 0; t < n; t += FWD_ROWWISE_TOKENS) {
        int64_t k = n - t < FWD_ROWWISE_TOKENS ? n - t : FWD_ROWWISE_TOKENS;
        llms_status st = cpu_matmul(pool, a, w, x + t * w->cols, k, y + t * w->rows);
        if (st) return st;
    }
    return LLMS_OK;
}

/* Several matrices on one input (Q/K/V, gate/up): one parallel region when
 * decoding, each result exactly what mm gives. */
static llms_status mm_n(const fwd_batch *b, threadpool *pool, const lalloc *a, const weight *const *ws, int nw,
                        const float *x, int64_t n, float *const *ys) {
    int tokenwise = 1;
    for (int k = 0; k < nw; k++) tokenwise &= cpu_matmul_tokenwise(ws[k]);
    if ((b->flags & FWD_DETERMINISTIC) && tokenwise) return cpu_matmul_tokenwise_n(pool, a, ws, nw, x, n, ys);
    if (!(b->flags & FWD_DETERMINISTIC) || n <= FWD_ROWWISE_TOKENS) return cpu_matmul_n(pool, a, ws, nw, x, n, ys);
    for (int k = 0; k < nw; k++) {
        llms_status st = mm(b, pool, a, ws[k], x, n, ys[k]);
        if (st) return st;
    }
    return LLMS_OK;
}

static void add_bias(float *y, const fvec *b, int64_t n_tok) {
    if (!b->data) return;
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t i = 0; i < b->n; i++) y[t * b->n + i] += b->data[i];
}

static void free_scratch(const lalloc *a, scratch *s) {
    float **p = (float **)s;
    for (size_t i = 0; i < sizeof *s / sizeof(float *); i++) xfree_aligned(a, p[i]);
}

llms_status backend_forward(llms_model *m, const fwd_batch *b, float *logits) {
    const hparams *hp = &m->hp;
    const lalloc *a = m->alloc;
    threadpool *pool = m->ctx->pool;
    const int64_t n = b->n_tokens, E = hp->n_embd, F = hp->n_ff, V = hp->n_vocab;
    const int64_t Q = (int64_t)hp->n_head * hp->head_dim, KV = (int64_t)hp->n_head_kv * hp->head_dim;
    const uint32_t half = hp->n_rot / 2;
    if (n == 0) return LLMS_OK;
    if (m->backend == LLMS_BACKEND_VULKAN) return vk_forward(m, b, logits);
    if (m->backend != LLMS_BACKEND_CPU)
        return err_set(LLMS_ERR_BACKEND, "backend %d has no forward pass", (int)m->backend);

    scratch s = {0};
    s.x = xmalloc_aligned(a, (size_t)(n * E) * sizeof(float), 64);
    s.h = xmalloc_aligned(a, (size_t)(n * (E > Q ? E : Q)) * sizeof(float), 64);
    s.q = xmalloc_aligned(a, (size_t)(n * Q) * sizeof(float), 64);
    s.k = xmalloc_aligned(a, (size_t)(n * KV) * sizeof(float), 64);
    s.v = xmalloc_aligned(a, (size_t)(n * KV) * sizeof(float), 64);
    s.att = xmalloc_aligned(a, (size_t)(n * Q) * sizeof(float), 64);
    s.gate = xmalloc_aligned(a, (size_t)(n * F) * sizeof(float), 64);
    s.up = xmalloc_aligned(a, (size_t)(n * F) * sizeof(float), 64);
    s.rope_cs = xmalloc_aligned(a, (size_t)(n * (half ? half : 1) * 2) * sizeof(float), 64);
    uint32_t *run_start = xmalloc_aligned(a, (size_t)(n + 1) * sizeof(uint32_t), 64);
    llms_status st = LLMS_OK;
    if (!s.x || !s.h || !s.q || !s.k || !s.v || !s.att || !s.gate || !s.up || !s.rope_cs || !run_start) {
        st = ERR_OOM();
        goto done;
    }

    for (int64_t t = 0; t < n; t++) {
        cpu_weight_row(&m->tok_embd, b->tokens[t], s.x + t * E);
        for (uint32_t i = 0; i < half; i++) {
            /* Angles in double: positions reach 10^5 and float loses the phase. */
            double ang = (double)b->pos[t] * m->rope_inv_freq[i];
            s.rope_cs[(t * half + i) * 2] = (float)cos(ang);
            s.rope_cs[(t * half + i) * 2 + 1] = (float)sin(ang);
        }
    }

    /* The attention tasks' shape is the same for every layer. */
    uint32_t attn_g, n_runs;
    attn_shape(hp, b, pool_size(pool), &attn_g, run_start, &n_runs);

    for (uint32_t l = 0; l < hp->n_layer; l++) {
        const layer_weights *L = &m->layers[l];
        for (int64_t t = 0; t < n; t++)
            cpu_rmsnorm(s.h + t * E, s.x + t * E, L->attn_norm.data, E, hp->rms_eps);
        const weight *qkv_w[3] = {&L->wq, &L->wk, &L->wv};
        float *const qkv_y[3] = {s.q, s.k, s.v};
        if ((st = mm_n(b, pool, a, qkv_w, 3, s.h, n, qkv_y))) goto done;
        add_bias(s.q, &L->bq, n);
        add_bias(s.k, &L->bk, n);
        add_bias(s.v, &L->bv, n);
        for (int64_t t = 0; t < n; t++) {
            const float *cs = s.rope_cs + t * half * 2;
            for (uint32_t h = 0; h < hp->n_head; h++)
                rope_apply(s.q + t * Q + (int64_t)h * hp->head_dim, cs, hp->n_rot, hp->rope_type == ROPE_NEOX);
            for (uint32_t h = 0; h < hp->n_head_kv; h++)
                rope_apply(s.k + t * KV + (int64_t)h * hp->head_dim, cs, hp->n_rot, hp->rope_type == ROPE_NEOX);
            const kv_seq *seq = b->seqs[b->seq[t]];
            kv_put(&m->kv, seq, l, b->pos[t], s.k + t * KV, s.v + t * KV);
        }
        attn_job aj = {m, b, l, attn_g, n_runs, run_start, s.q, s.att};
        pool_run(pool, (int64_t)n_runs * (hp->n_head / attn_g), attn_task, &aj);
        if ((st = mm(b, pool, a, &L->wo, s.att, n, s.h))) goto done;
        for (int64_t i = 0; i < n * E; i++) s.x[i] += s.h[i];

        for (int64_t t = 0; t < n; t++)
            cpu_rmsnorm(s.h + t * E, s.x + t * E, L->ffn_norm.data, E, hp->rms_eps);
        const weight *ffn_w[2] = {&L->w_gate, &L->w_up};
        float *const ffn_y[2] = {s.gate, s.up};
        if ((st = mm_n(b, pool, a, ffn_w, 2, s.h, n, ffn_y))) goto done;
        vec_best()->silu_mul(s.gate, s.up, (size_t)(n * F));
        if ((st = mm(b, pool, a, &L->w_down, s.gate, n, s.h))) goto done;
        for (int64_t i = 0; i < n * E; i++) s.x[i] += s.h[i];
    }

    /* Final norm and output projection only for the tokens that need logits. */
    int64_t n_out = 0;
    for (int64_t t = 0; t < n; t++) {
        if (!b->want_logits[t]) continue;
        cpu_rmsnorm(s.h + n_out * E, s.x + t * E, m->output_norm.data, E, hp->rms_eps);
        n_out++;
    }
    if (n_out) st = mm(b, pool, a, &m->output, s.h, n_out, logits);
    (void)V;
done:
    free_scratch(a, &s);
    xfree_aligned(a, run_start);
    return st;
}
