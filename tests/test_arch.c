/*
 * Architecture coverage of the model runtime on small models crafted in
 * memory (tests/support/gguf_writer) and checked against an independent,
 * naive float32 forward pass (tests/support/ref_forward, no code shared
 * with src/):
 *   llama MHA untied, GQA, MQA tied, Llama 3 rope_freqs + base 500000,
 *   linear RoPE scaling, partial rotary, key_length != n_embd / n_head,
 *   qwen2 (NEOX RoPE, Q/K/V biases, tied; also with partial rotary),
 *   and F16 weights (rounded here with our own converter, the reference
 *   using the same rounded values). The reference rounds K and V to half
 *   as the CPU KV cache stores them (ref_model.kv_f16); the GQA test shows
 *   that rounding is visible at this tolerance.
 * Every position is compared, through the prefill path (one pass, GEMM),
 * the decode path (one token per pass, matrix-vector kernels) and uneven
 * chunks (3 tokens: matrix-vector with several tokens; then 5, 1, rest).
 * Each feature is also shown to matter: the reference with the feature
 * switched off (or done the wrong way) must differ from our logits by far
 * more than the tolerance, so a runtime ignoring it could not pass.
 *
 * Tolerance: 1e-3 absolute on logits of standard deviation ~1. Weights are
 * uniform with variance 1/fan_in, so activations stay O(1); float32
 * summation-order differences are ~1e-5 here (printed by each test).
 *
 * Then load errors: every required tensor missing in turn, wrong shapes,
 * unsupported architecture / tensor types / RoPE scaling, missing or
 * inconsistent hyperparameters: each the exact status and a message naming
 * the culprit, and after each the context still loads and runs a valid model.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmserve.h"
#include "support/gguf_writer.h"
#include "support/ref_forward.h"

#define TOL 1e-3
#define N_TOK 24
#define MAX_TENSORS 128
#define MAX_LAYERS 4

/* GGUF value and tensor type numbers (spelled out: the writer is independent). */
enum { V_INT32 = 5, V_FLOAT32 = 6, V_STRING = 8 };
enum { T_F32 = 0, T_F16 = 1, T_Q8_1 = 9, T_Q8_K = 15, T_I8 = 24 };

/* ------------------------------------------------------------------------ */
/* Crafting models                                                           */
/* ------------------------------------------------------------------------ */

typedef struct arch_cfg {
    const char *arch;           /* general.architecture; also the key prefix */
    uint32_t n_embd, n_layer, n_head, n_head_kv, n_ff;
    uint32_t key_length;        /* 0: no key (head_dim = n_embd / n_head) */
    uint32_t n_rot;             /* 0: no rope.dimension_count key (= head_dim) */
    float freq_base;            /* 0: no key (10000) */
    const char *scaling_type;   /* NULL: no rope.scaling.type key */
    float scaling_factor;       /* 0: no rope.scaling.factor key */
    int tied;                   /* no output.weight */
    int bias;                   /* Q/K/V biases */
    int rope_freqs;             /* a Llama 3 style rope_freqs.weight */
    int f16;                    /* 2-D weights stored as F16 */
    int unaligned;              /* general.alignment 1, every tensor at an odd offset */
    uint32_t seed;
    /* Faults. */
    const char *omit_tensor;
    const char *omit_key;       /* full key name */
    const char *reshape_tensor;
    int reshape_mode;           /* 1: last dim + 1; 2: swap the two dims; 3: one more (unit) dim */
    const char *retype_tensor;
    uint32_t retype;            /* T_Q8_1, T_I8, T_Q8_K: written as zero bytes of the right size */
    const char *poison_tensor;  /* its first element becomes poison_value */
    float poison_value;
} arch_cfg;

typedef struct tensor_def {
    char name[64];
    uint32_t n_dims;
    uint64_t ne[2];
    float *data;
    int matrix;                 /* a 2-D weight (F16 when cfg.f16) */
} tensor_def;

typedef struct crafted {
    arch_cfg cfg;
    uint32_t head_dim, n_rot, n_vocab;
    tensor_def t[MAX_TENSORS];
    int n_t;
    ref_layer layers[MAX_LAYERS];
    ref_model ref;
    uint8_t *image;             /* an allocation of exactly `size` bytes (ASan sees overreads) */
    size_t size;
} crafted;

static uint64_t rng_state;
static double urand(void) {    /* splitmix64 → [0, 1) */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}
static float uni(double a) { return (float)((2 * urand() - 1) * a); }

/* The vocabulary: <unk>, <s>, </s>, 256 byte tokens, a few words. */
static const char *const WORDS[] = {"\xe2\x96\x81the", "\xe2\x96\x81" "a", "\xe2\x96\x81" "cat", "\xe2\x96\x81sat",
                                    "\xe2\x96\x81on", "\xe2\x96\x81mat", "\xe2\x96\x81" "dog", "\xe2\x96\x81ran"};
#define N_WORDS (sizeof WORDS / sizeof WORDS[0])
#define N_VOCAB (3 + 256 + (uint32_t)N_WORDS)

static float *add_tensor(crafted *c, const char *name, uint32_t n_dims, uint64_t ne0, uint64_t ne1,
                         int matrix) {
    assert_true(c->n_t < MAX_TENSORS);
    tensor_def *t = &c->t[c->n_t++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n_dims = n_dims;
    t->ne[0] = ne0;
    t->ne[1] = n_dims > 1 ? ne1 : 1;
    t->matrix = matrix;
    t->data = malloc(t->ne[0] * t->ne[1] * sizeof(float));
    assert_non_null(t->data);
    return t->data;
}

static float *mat(crafted *c, const char *name, uint64_t cols, uint64_t rows) {
    float *d = add_tensor(c, name, 2, cols, rows, 1);
    double a = sqrt(3.0 / (double)cols);   /* variance 1/cols */
    for (uint64_t i = 0; i < cols * rows; i++) d[i] = uni(a);
    return d;
}

static float *vec(crafted *c, const char *name, uint64_t n, float center, double spread) {
    float *d = add_tensor(c, name, 1, n, 1, 0);
    for (uint64_t i = 0; i < n; i++) d[i] = center + uni(spread);
    return d;
}

static const float *find_data(const crafted *c, const char *name) {
    for (int i = 0; i < c->n_t; i++)
        if (strcmp(c->t[i].name, name) == 0) return c->t[i].data;
    return NULL;
}

/* Llama 3 frequency factors (factor 8, low/high frequency factors 1 and 4),
 * with an original context of 64 instead of 8192 so that the factors fall
 * on dimensions that actually rotate within a short test sequence. */
static void llama3_factors(float *f, uint32_t n_rot, double base) {
    const double factor = 8, lo = 1, hi = 4, orig = 64;
    const double lo_wl = orig / lo, hi_wl = orig / hi;
    for (uint32_t i = 0; i < n_rot / 2; i++) {
        double freq = pow(base, -2.0 * i / n_rot), wl = 2 * M_PI / freq;
        if (wl < hi_wl) f[i] = 1.0f;
        else if (wl > lo_wl) f[i] = (float)factor;
        else {
            double smooth = (orig / wl - lo) / (hi - lo);
            f[i] = (float)(1.0 / ((1 - smooth) / factor + smooth));
        }
    }
}

static size_t type_bytes(uint32_t type, uint64_t n) {
    switch (type) {
    case T_F32: return n * 4;
    case T_F16: return n * 2;
    case T_Q8_1: return n / 32 * 36;
    case T_Q8_K: return n / 256 * 292;
    case T_I8: return n;
    default: fail_msg("type %u", type); return 0;
    }
}

/* Metadata, counted as written (the header needs the count first). */
typedef struct kvw {
    gguf_writer w;
    uint64_t n;
    const crafted *c;
} kvw;

static int kv_skip(kvw *k, const char *key) {
    if (k->c->cfg.omit_key && strcmp(k->c->cfg.omit_key, key) == 0) return 1;
    k->n++;
    return 0;
}
static void kv_u32(kvw *k, const char *key, uint32_t v) { if (!kv_skip(k, key)) gw_kv_u32(&k->w, key, v); }
static void kv_f32(kvw *k, const char *key, float v) { if (!kv_skip(k, key)) gw_kv_f32(&k->w, key, v); }
static void kv_str(kvw *k, const char *key, const char *v) { if (!kv_skip(k, key)) gw_kv_str(&k->w, key, v); }
static const char *akey(const crafted *c, const char *suffix) {
    static char buf[4][128];
    static int slot;
    char *b = buf[slot++ % 4];
    snprintf(b, sizeof buf[0], "%s.%s", c->cfg.arch, suffix);
    return b;
}

static void write_metadata(kvw *k) {
    const crafted *c = k->c;
    const arch_cfg *g = &c->cfg;
    kv_str(k, "general.architecture", g->arch);
    kv_str(k, "general.name", "crafted");
    if (g->unaligned) kv_u32(k, "general.alignment", 1);
    kv_u32(k, akey(c, "context_length"), 256);
    kv_u32(k, akey(c, "embedding_length"), g->n_embd);
    kv_u32(k, akey(c, "block_count"), g->n_layer);
    kv_u32(k, akey(c, "feed_forward_length"), g->n_ff);
    kv_u32(k, akey(c, "attention.head_count"), g->n_head);
    kv_u32(k, akey(c, "attention.head_count_kv"), g->n_head_kv);
    kv_f32(k, akey(c, "attention.layer_norm_rms_epsilon"), 1e-5f);
    if (g->key_length) {
        kv_u32(k, akey(c, "attention.key_length"), g->key_length);
        kv_u32(k, akey(c, "attention.value_length"), g->key_length);
    }
    if (g->n_rot) kv_u32(k, akey(c, "rope.dimension_count"), g->n_rot);
    if (g->freq_base > 0) kv_f32(k, akey(c, "rope.freq_base"), g->freq_base);
    if (g->scaling_type) kv_str(k, akey(c, "rope.scaling.type"), g->scaling_type);
    if (g->scaling_factor > 0) kv_f32(k, akey(c, "rope.scaling.factor"), g->scaling_factor);

    /* A minimal SentencePiece vocabulary. */
    kv_str(k, "tokenizer.ggml.model", "llama");
    if (!kv_skip(k, "tokenizer.ggml.tokens")) {
        gw_kv_arr(&k->w, "tokenizer.ggml.tokens", V_STRING, N_VOCAB);
        gw_str(&k->w, "<unk>");
        gw_str(&k->w, "<s>");
        gw_str(&k->w, "</s>");
        for (int b = 0; b < 256; b++) {
            char s[8];
            snprintf(s, sizeof s, "<0x%02X>", b);
            gw_str(&k->w, s);
        }
        for (size_t i = 0; i < N_WORDS; i++) gw_str(&k->w, WORDS[i]);
    }
    if (!kv_skip(k, "tokenizer.ggml.scores")) {
        gw_kv_arr(&k->w, "tokenizer.ggml.scores", V_FLOAT32, N_VOCAB);
        for (uint32_t i = 0; i < 3 + 256; i++) gw_f32(&k->w, 0.0f);
        for (size_t i = 0; i < N_WORDS; i++) gw_f32(&k->w, -1.0f - (float)i);
    }
    if (!kv_skip(k, "tokenizer.ggml.token_type")) {
        gw_kv_arr(&k->w, "tokenizer.ggml.token_type", V_INT32, N_VOCAB);
        gw_u32(&k->w, 2);  /* unknown */
        gw_u32(&k->w, 3);  /* control */
        gw_u32(&k->w, 3);
        for (int b = 0; b < 256; b++) gw_u32(&k->w, 6);  /* byte */
        for (size_t i = 0; i < N_WORDS; i++) gw_u32(&k->w, 1);  /* normal */
    }
    kv_u32(k, "tokenizer.ggml.unknown_token_id", 0);
    kv_u32(k, "tokenizer.ggml.bos_token_id", 1);
    kv_u32(k, "tokenizer.ggml.eos_token_id", 2);
}

/* Serialises the tensors (with the configured faults) after the metadata. */
static void write_image(crafted *c) {
    const arch_cfg *g = &c->cfg;
    kvw k = {.c = c};
    gw_init(&k.w);
    write_metadata(&k);

    typedef struct out_t {
        const tensor_def *t;
        uint32_t n_dims, type;
        uint64_t ne[3], n, offset;
    } out_t;
    out_t o[MAX_TENSORS];
    int n_o = 0;
    uint64_t off = 0;
    for (int i = 0; i < c->n_t; i++) {
        const tensor_def *t = &c->t[i];
        if (g->omit_tensor && strcmp(g->omit_tensor, t->name) == 0) continue;
        out_t *x = &o[n_o++];
        x->t = t;
        x->n_dims = t->n_dims;
        x->ne[0] = t->ne[0];
        x->ne[1] = t->ne[1];
        x->ne[2] = 1;
        x->type = t->matrix && g->f16 ? T_F16 : T_F32;
        if (g->reshape_tensor && strcmp(g->reshape_tensor, t->name) == 0) {
            if (g->reshape_mode == 1) x->ne[t->n_dims - 1]++;
            else if (g->reshape_mode == 2) { x->ne[0] = t->ne[1]; x->ne[1] = t->ne[0]; }
            else x->n_dims++;
        }
        if (g->retype_tensor && strcmp(g->retype_tensor, t->name) == 0) x->type = g->retype;
        x->n = x->ne[0] * x->ne[1] * x->ne[2];
        if (g->unaligned) {
            x->offset = off + 1;
            off = x->offset + type_bytes(x->type, x->n);
        } else {
            x->offset = off;
            off = (off + type_bytes(x->type, x->n) + 31) & ~(uint64_t)31;
        }
    }

    gguf_writer w;
    gw_init(&w);
    gw_header(&w, 3, (uint64_t)n_o, k.n);
    gw_bytes(&w, k.w.buf, k.w.len);
    for (int i = 0; i < n_o; i++) gw_tensor(&w, o[i].t->name, o[i].n_dims, o[i].ne, o[i].type, o[i].offset);
    if (!g->unaligned) gw_pad(&w, 32);
    size_t data0 = w.len;
    for (int i = 0; i < n_o; i++) {
        const out_t *x = &o[i];
        gw_zeros(&w, data0 + x->offset - w.len);
        uint64_t have = x->t->ne[0] * x->t->ne[1];
        const int poison = g->poison_tensor && strcmp(g->poison_tensor, x->t->name) == 0;
        if (x->type == T_F32) {
            for (uint64_t j = 0; j < x->n; j++)
                gw_f32(&w, poison && j == 0 ? g->poison_value : j < have ? x->t->data[j] : 0.0f);
        } else if (x->type == T_F16) {
            for (uint64_t j = 0; j < x->n; j++) gw_u16(&w, ref_f32_to_f16(j < have ? x->t->data[j] : 0.0f));
        } else {
            gw_zeros(&w, type_bytes(x->type, x->n));
        }
    }
    if (!g->unaligned) gw_pad(&w, 32);
    assert_false(k.w.oom);
    assert_false(w.oom);
    c->size = w.len;
    c->image = malloc(w.len);
    assert_non_null(c->image);
    memcpy(c->image, w.buf, w.len);
    gw_free(&w);
    gw_free(&k.w);
}

static void craft(const arch_cfg *cfg, crafted *c) {
    memset(c, 0, sizeof *c);
    c->cfg = *cfg;
    const arch_cfg *g = &c->cfg;
    assert_true(g->n_layer <= MAX_LAYERS);
    rng_state = 0x5eed0000ull + g->seed;
    const uint32_t E = g->n_embd, F = g->n_ff, V = N_VOCAB;
    c->n_vocab = V;
    c->head_dim = g->key_length ? g->key_length : E / g->n_head;
    c->n_rot = g->n_rot ? g->n_rot : c->head_dim;
    const uint32_t Q = g->n_head * c->head_dim, KV = g->n_head_kv * c->head_dim;
    const double base = g->freq_base > 0 ? g->freq_base : 10000.0;
    char name[64];

    /* Embeddings of unit scale; the output projection like any matrix. */
    float *emb = add_tensor(c, "token_embd.weight", 2, E, V, 1);
    for (uint64_t i = 0; i < (uint64_t)E * V; i++) emb[i] = uni(1.0);
    vec(c, "output_norm.weight", E, 1.0f, 0.2);
    if (!g->tied) mat(c, "output.weight", E, V);
    if (g->rope_freqs) llama3_factors(add_tensor(c, "rope_freqs.weight", 1, c->n_rot / 2, 1, 0), c->n_rot, base);
    for (uint32_t l = 0; l < g->n_layer; l++) {
#define NM(s) (snprintf(name, sizeof name, "blk.%u." s, l), name)
        vec(c, NM("attn_norm.weight"), E, 1.0f, 0.2);
        mat(c, NM("attn_q.weight"), E, Q);
        mat(c, NM("attn_k.weight"), E, KV);
        mat(c, NM("attn_v.weight"), E, KV);
        if (g->bias) {
            vec(c, NM("attn_q.bias"), Q, 0.0f, 0.5);
            vec(c, NM("attn_k.bias"), KV, 0.0f, 0.5);
            vec(c, NM("attn_v.bias"), KV, 0.0f, 0.5);
        }
        mat(c, NM("attn_output.weight"), Q, E);
        vec(c, NM("ffn_norm.weight"), E, 1.0f, 0.2);
        mat(c, NM("ffn_gate.weight"), E, F);
        mat(c, NM("ffn_up.weight"), E, F);
        mat(c, NM("ffn_down.weight"), F, E);
#undef NM
    }
    /* F16 files: the reference uses the rounded weights. */
    if (g->f16)
        for (int i = 0; i < c->n_t; i++)
            if (c->t[i].matrix)
                for (uint64_t j = 0; j < c->t[i].ne[0] * c->t[i].ne[1]; j++)
                    c->t[i].data[j] = ref_f16_to_f32(ref_f32_to_f16(c->t[i].data[j]));

    ref_model *r = &c->ref;
    r->n_vocab = (int)V;
    r->n_embd = (int)E;
    r->n_layer = (int)g->n_layer;
    r->n_head = (int)g->n_head;
    r->n_head_kv = (int)g->n_head_kv;
    r->head_dim = (int)c->head_dim;
    r->n_rot = (int)c->n_rot;
    r->n_ff = (int)F;
    r->neox = strcmp(g->arch, "qwen2") == 0;
    r->kv_f16 = 1; /* the CPU backend's KV cache (kvcache/kv.h) */
    r->rms_eps = 1e-5f;
    r->freq_base = base;
    r->freq_scale = g->scaling_factor > 0 ? 1.0 / g->scaling_factor : 1.0;
    r->rope_freqs = find_data(c, "rope_freqs.weight");
    r->tok_embd = find_data(c, "token_embd.weight");
    r->output = g->tied ? r->tok_embd : find_data(c, "output.weight");
    r->output_norm = find_data(c, "output_norm.weight");
    for (uint32_t l = 0; l < g->n_layer; l++) {
        ref_layer *L = &c->layers[l];
#define GET(s) (snprintf(name, sizeof name, "blk.%u." s, l), find_data(c, name))
        L->attn_norm = GET("attn_norm.weight");
        L->ffn_norm = GET("ffn_norm.weight");
        L->wq = GET("attn_q.weight");
        L->wk = GET("attn_k.weight");
        L->wv = GET("attn_v.weight");
        L->bq = GET("attn_q.bias");
        L->bk = GET("attn_k.bias");
        L->bv = GET("attn_v.bias");
        L->wo = GET("attn_output.weight");
        L->w_gate = GET("ffn_gate.weight");
        L->w_up = GET("ffn_up.weight");
        L->w_down = GET("ffn_down.weight");
#undef GET
    }
    r->layers = c->layers;
    write_image(c);
}

static void crafted_free(crafted *c) {
    for (int i = 0; i < c->n_t; i++) free(c->t[i].data);
    free(c->image);
    memset(c, 0, sizeof *c);
}

/* ------------------------------------------------------------------------ */
/* Fixtures                                                                  */
/* ------------------------------------------------------------------------ */

static llms_context *g_ctx;

/* The context's allocator counts live blocks, so a failed load can be
 * shown to release everything it took. */
static _Atomic long g_live;
static void *c_malloc(void *u, size_t n) {
    (void)u;
    void *p = malloc(n);
    if (p) g_live++;
    return p;
}
static void *c_realloc(void *u, void *p, size_t n) {
    (void)u;
    void *q = realloc(p, n);
    if (q && !p) g_live++;
    return q;
}
static void c_free(void *u, void *p) {
    (void)u;
    if (p) g_live--;
    free(p);
}

static int setup(void **state) {
    (void)state;
    static const llms_allocator counting = {sizeof(llms_allocator), NULL, c_malloc, c_realloc, c_free};
    llms_context_params p;
    llms_context_params_init(&p);
    p.backend = LLMS_BACKEND_CPU;
    p.n_threads = 2;
    p.allocator = &counting;
    return llms_context_create(&p, &g_ctx) == LLMS_OK ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    llms_context_destroy(g_ctx);
    return g_live == 0 ? 0 : -1;
}

/* The base configurations. */
static arch_cfg llama_cfg(void) {
    arch_cfg g = {0};
    g.arch = "llama";
    g.n_embd = 64;
    g.n_layer = 2;
    g.n_head = 4;
    g.n_head_kv = 4;
    g.n_ff = 96;
    g.seed = 1;
    return g;
}

static arch_cfg qwen2_cfg(void) {
    arch_cfg g = llama_cfg();
    g.arch = "qwen2";
    g.n_head_kv = 2;
    g.bias = 1;
    g.tied = 1;
    g.freq_base = 1000000.0f;
    g.seed = 7;
    return g;
}

static llms_model *load_crafted(const crafted *c) {
    llms_model *m = NULL;
    llms_status st = llms_model_load_from_memory(g_ctx, c->image, c->size, NULL, &m);
    if (st != LLMS_OK) fail_msg("loading the crafted %s model: %s (%s)", c->cfg.arch, llms_status_string(st), llms_errmsg());
    assert_non_null(m);
    return m;
}

/* BOS, then ids spread over the whole vocabulary. */
static void test_tokens(int32_t *toks, int n, uint32_t seed) {
    uint64_t save = rng_state;
    rng_state = 0xabcdef00ull + seed;
    toks[0] = 1;
    for (int i = 1; i < n; i++) toks[i] = (int32_t)(urand() * N_VOCAB);
    rng_state = save;
}

static double max_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (isnan(d)) return NAN;
        if (d > m) m = d;
    }
    return m;
}

typedef struct run_result {
    crafted c;
    int32_t toks[N_TOK];
    float *ref;                 /* [N_TOK][V] */
    float *ours;                /* prefill logits */
    double err_prefill, err_decode, err_chunks, ref_sd;
} run_result;

/* Our logits through three feeding patterns, each against the reference at
 * every position. */
static void run_and_compare(const arch_cfg *cfg, const char *label, run_result *r) {
    memset(r, 0, sizeof *r);
    craft(cfg, &r->c);
    const size_t V = r->c.n_vocab;
    test_tokens(r->toks, N_TOK, cfg->seed);
    r->ref = malloc(N_TOK * V * sizeof(float));
    r->ours = malloc(N_TOK * V * sizeof(float));
    float *step = malloc(N_TOK * V * sizeof(float));
    assert_true(r->ref && r->ours && step);
    assert_int_equal(ref_forward(&r->c.ref, r->toks, N_TOK, r->ref), 0);
    double mean = 0, sq = 0;
    for (size_t i = 0; i < N_TOK * V; i++) mean += r->ref[i];
    mean /= (double)(N_TOK * V);
    for (size_t i = 0; i < N_TOK * V; i++) sq += (r->ref[i] - mean) * (r->ref[i] - mean);
    r->ref_sd = sqrt(sq / (double)(N_TOK * V));
    assert_true(isfinite(r->ref_sd) && r->ref_sd > 0.3 && r->ref_sd < 10);

    const long live0 = g_live;
    llms_model *m = load_crafted(&r->c);
    assert_true(g_live > live0);   /* the model's memory comes from the context's allocator */
    assert_int_equal(llms_model_n_vocab(m), (int32_t)V);
    llms_model_info info;
    llms_model_info_init(&info);
    assert_int_equal(llms_model_get_info(m, &info), LLMS_OK);
    assert_string_equal(info.architecture, cfg->arch);
    assert_int_equal(info.n_embd, cfg->n_embd);
    assert_int_equal(info.n_layer, cfg->n_layer);
    assert_int_equal(info.n_head, cfg->n_head);
    assert_int_equal(info.n_head_kv, cfg->n_head_kv);
    assert_int_equal(info.n_ff, cfg->n_ff);

    llms_session_params sp;
    llms_session_params_init(&sp);
    sp.n_ctx = 64;
    llms_session *s;
    assert_int_equal(llms_session_create(m, &sp, &s), LLMS_OK);

    /* Prefill: everything in one call. */
    assert_int_equal(llms_session_feed_tokens_logits(s, r->toks, N_TOK, r->ours), LLMS_OK);
    r->err_prefill = max_diff(r->ours, r->ref, N_TOK * V);
    const float *last = llms_session_logits(s);
    assert_non_null(last);
    assert_memory_equal(last, r->ours + (N_TOK - 1) * V, V * sizeof(float));

    /* Decode: one token per call. */
    assert_int_equal(llms_session_reset(s), LLMS_OK);
    for (int t = 0; t < N_TOK; t++)
        assert_int_equal(llms_session_feed_tokens_logits(s, &r->toks[t], 1, step + t * V), LLMS_OK);
    r->err_decode = max_diff(step, r->ref, N_TOK * V);

    /* Uneven chunks: 3 (matrix-vector, several tokens), 5 (GEMM at an
     * offset), 1, then the rest. */
    assert_int_equal(llms_session_reset(s), LLMS_OK);
    const int chunks[] = {3, 5, 1, N_TOK - 9};
    for (int i = 0, at = 0; i < 4; at += chunks[i], i++)
        assert_int_equal(llms_session_feed_tokens_logits(s, r->toks + at, (size_t)chunks[i], step + at * V), LLMS_OK);
    r->err_chunks = max_diff(step, r->ref, N_TOK * V);
    assert_int_equal(llms_session_n_tokens(s), N_TOK);

    printf("# %-34s logit sd %.2f | max |ours - ref|: prefill %.2e, decode %.2e, chunks %.2e\n", label,
           r->ref_sd, r->err_prefill, r->err_decode, r->err_chunks);
    if (!(r->err_prefill <= TOL) || !(r->err_decode <= TOL) || !(r->err_chunks <= TOL))
        fail_msg("%s: logits differ from the reference: prefill %.3e, decode %.3e, chunks %.3e (tolerance %.0e)",
                 label, r->err_prefill, r->err_decode, r->err_chunks, TOL);
    llms_session_destroy(s);
    llms_model_destroy(m);
    assert_int_equal(g_live, live0);
    free(step);
}

static void run_free(run_result *r) {
    free(r->ref);
    free(r->ours);
    crafted_free(&r->c);
}

/* The reference with one feature changed must be far from our logits:
 * the comparison could not pass with that feature ignored. */
static void must_matter(const run_result *r, const ref_model *variant, const char *what) {
    const size_t V = r->c.n_vocab;
    float *alt = malloc(N_TOK * V * sizeof(float));
    assert_non_null(alt);
    assert_int_equal(ref_forward(variant, r->toks, N_TOK, alt), 0);
    double d = max_diff(alt, r->ours, N_TOK * V);
    printf("#   without %-28s the reference moves by %.3f\n", what, d);
    if (!(d > 50 * TOL)) fail_msg("%s changes the reference by only %.2e: the test cannot see it", what, d);
    free(alt);
}

static void must_matter_rope_style(const run_result *r) {
    ref_model v = r->c.ref;
    v.neox = !v.neox;
    must_matter(r, &v, v.neox ? "NORM pairs (NEOX instead):" : "NEOX pairs (NORM instead):");
}

/* ------------------------------------------------------------------------ */
/* Forward-pass comparisons                                                  */
/* ------------------------------------------------------------------------ */

static void test_llama_mha_untied(void **state) {
    (void)state;
    arch_cfg g = llama_cfg();
    run_result r;
    run_and_compare(&g, "llama MHA untied", &r);
    must_matter_rope_style(&r);
    ref_model v = r.c.ref;
    v.output = v.tok_embd;
    must_matter(&r, &v, "output.weight (tied instead):");
    run_free(&r);
}

static void test_llama_gqa(void **state) {
    (void)state;
    arch_cfg g = llama_cfg();
    g.n_head_kv = 2;
    g.seed = 2;
    run_result r;
    run_and_compare(&g, "llama GQA (4 heads, 2 KV)", &r);
    ref_model v = r.c.ref;
    v.wrong_gqa_map = 1;
    must_matter(&r, &v, "grouped KV heads (h % n_kv):");
    /* The cache's half precision, modelled above, is itself visible: the
     * reference in float32 misses our logits by more than the tolerance. */
    v = r.c.ref;
    v.kv_f16 = 0;
    float *f32 = malloc(N_TOK * r.c.n_vocab * sizeof(float));
    assert_non_null(f32);
    assert_int_equal(ref_forward(&v, r.toks, N_TOK, f32), 0);
    const double d = max_diff(f32, r.ours, N_TOK * r.c.n_vocab);
    printf("#   with a float32 KV cache            the reference moves by %.2e\n", d);
    assert_true(d > TOL);
    free(f32);
    run_free(&r);
}

static void test_llama_mqa_tied(void **state) {
    (void)state;
    arch_cfg g = llama_cfg();
    g.n_head_kv = 1;
    g.tied = 1;
    g.seed = 3;
    run_result r;
    run_and_compare(&g, "llama MQA (4 heads, 1 KV) tied", &r);
    must_matter_rope_style(&r);
    run_free(&r);
}

static void test_llama3_rope_freqs(void **state) {
    (void)state;
    arch_cfg g = llama_cfg();
    g.n_head_kv = 2;
    g.freq_base = 500000.0f;
    g.rope_freqs = 1;
    g.seed = 4;
    run_result r;
    run_and_compare(&g, "llama rope_freqs, base 500000", &r);
    ref_model v = r.c.ref;
    v.rope_freqs = NULL;
    must_matter(&r, &v, "rope_freqs.weight:");
    v = r.c.ref;
    v.freq_base = 10000.0;
    must_matter(&r, &v, "rope.freq_base (10000):");
    run_free(&r);
}

static void test_llama_linear_scaling(void **state) {
    (void)state;
    arch_cfg g = llama_cfg();
    g.scaling_type = "linear";
    g.scaling_factor = 4.0f;
    g.seed = 5;
    run_result r;
    run_and_compare(&g, "llama linear RoPE scaling x4", &r);
    ref_model v = r.c.ref;
    v.freq_scale = 1.0;
    must_matter(&r, &v, "linear scaling:");
    run_free(&r);
}

static void test_llama_partial_rotary(void **state) {
    (void)state;
    arch_cfg g = llama_cfg();
    g.n_rot = 64 / 4 / 2;   /* head_dim / 2 */
    g.seed = 6;
    run_result r;
    run_and_compare(&g, "llama rotary dims = head_dim / 2", &r);
    ref_model v = r.c.ref;
    v.n_rot = v.head_dim;
    must_matter(&r, &v, "partial rotary (all dims):");
    run_free(&r);
}

static void test_llama_key_length(void **state) {
    (void)state;
    arch_cfg g = llama_cfg();
    g.key_length = 32;      /* n_head * head_dim = 128 != n_embd = 64 */
    g.n_head_kv = 2;
    g.seed = 8;
    run_result r;
    run_and_compare(&g, "llama head_dim 32, n_embd 64", &r);
    run_free(&r);
}

static void test_qwen2_bias(void **state) {
    (void)state;
    arch_cfg g = qwen2_cfg();
    run_result r;
    run_and_compare(&g, "qwen2 biases, GQA, tied", &r);
    must_matter_rope_style(&r);
    ref_model v = r.c.ref;
    ref_layer L[MAX_LAYERS];
    memcpy(L, r.c.layers, sizeof L);
    for (int l = 0; l < v.n_layer; l++) L[l].bq = L[l].bk = L[l].bv = NULL;
    v.layers = L;
    must_matter(&r, &v, "Q/K/V biases:");
    run_free(&r);
}

static void test_qwen2_partial_rotary(void **state) {
    (void)state;
    arch_cfg g = qwen2_cfg();
    g.n_rot = 8;
    g.freq_base = 10000.0f;
    g.seed = 9;
    run_result r;
    run_and_compare(&g, "qwen2 NEOX, rotary dims 8 of 16", &r);
    must_matter_rope_style(&r);
    ref_model v = r.c.ref;
    v.n_rot = v.head_dim;
    must_matter(&r, &v, "partial rotary (all dims):");
    run_free(&r);
}

static void test_llama_f16(void **state) {
    (void)state;
    arch_cfg g = llama_cfg();
    g.n_head_kv = 2;
    g.f16 = 1;
    g.seed = 10;
    run_result r;
    run_and_compare(&g, "llama GQA, F16 weights", &r);
    run_free(&r);
}

static void test_qwen2_f16(void **state) {
    (void)state;
    arch_cfg g = qwen2_cfg();
    g.f16 = 1;
    g.seed = 11;
    run_result r;
    run_and_compare(&g, "qwen2, F16 weights", &r);
    run_free(&r);
}

/* general.alignment 1 and odd tensor offsets: every weight, norm and
 * embedding row is misaligned for float access (UBSan checks the loads). */
static void test_unaligned_tensors(void **state) {
    (void)state;
    arch_cfg g = qwen2_cfg();
    g.unaligned = 1;
    g.seed = 12;
    run_result r;
    run_and_compare(&g, "qwen2 F32, tensors at odd offsets", &r);
    run_free(&r);
    g = llama_cfg();
    g.unaligned = 1;
    g.f16 = 1;
    g.seed = 13;
    run_and_compare(&g, "llama F16, tensors at odd offsets", &r);
    run_free(&r);
}

/* Our own fp16 converter against known encodings (the F16 tests rely on it). */
static void test_f16_converter(void **state) {
    (void)state;
    static const struct { float f; uint16_t h; } cases[] = {
        {0.0f, 0x0000}, {-0.0f, 0x8000}, {1.0f, 0x3c00}, {-2.0f, 0xc000}, {0.5f, 0x3800},
        {65504.0f, 0x7bff}, {65520.0f, 0x7c00}, {1e9f, 0x7c00}, {6.103515625e-05f, 0x0400},
        {5.960464477539063e-08f, 0x0001}, {2.98023223876953125e-08f, 0x0000}, /* tie to even: 0 */
        {8.940696716308594e-08f, 0x0002},  /* 1.5 units: tie to even 2 */
        {1.0009765625f, 0x3c01}, {1.00048828125f, 0x3c00},  /* halfway 1 → 1.0009765625: even is 0x3c00 */
        {1.00146484375f, 0x3c02}, /* halfway between 0x3c01 and 0x3c02: even 0x3c02 */
        {0.333333343f, 0x3555},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t h = ref_f32_to_f16(cases[i].f);
        if (h != cases[i].h) fail_msg("f16(%.9g) = 0x%04x, expected 0x%04x", cases[i].f, h, cases[i].h);
    }
    /* Round trip of every finite half. */
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00) continue;
        assert_int_equal(ref_f32_to_f16(ref_f16_to_f32((uint16_t)h)), h);
    }
    assert_true(isinf(ref_f16_to_f32(0x7c00)));
    assert_true(isnan(ref_f16_to_f32(0x7e00)));
}

/* ------------------------------------------------------------------------ */
/* Load errors                                                               */
/* ------------------------------------------------------------------------ */

/* After a failure the context must still load and run a valid model. */
static void context_still_works(void) {
    arch_cfg g = llama_cfg();
    g.n_layer = 1;
    crafted c;
    craft(&g, &c);
    llms_model *m = load_crafted(&c);
    int32_t toks[4] = {1, 100, 260, 7};
    float ours[4 * N_VOCAB], ref[4 * N_VOCAB];
    llms_session *s;
    assert_int_equal(llms_session_create(m, NULL, &s), LLMS_OK);
    assert_int_equal(llms_session_feed_tokens_logits(s, toks, 4, ours), LLMS_OK);
    assert_int_equal(ref_forward(&c.ref, toks, 4, ref), 0);
    assert_true(max_diff(ours, ref, 4 * N_VOCAB) <= TOL);
    llms_session_destroy(s);
    llms_model_destroy(m);
    crafted_free(&c);
}

/* Loads cfg, expects `status` and a message holding every fragment
 * (NULL-terminated), then checks the context still works. */
static void expect_load_error(const arch_cfg *cfg, llms_status status, ...) {
    crafted c;
    craft(cfg, &c);
    llms_model *m = (llms_model *)&c;   /* must be overwritten with NULL */
    const long live0 = g_live;
    llms_status st = llms_model_load_from_memory(g_ctx, c.image, c.size, NULL, &m);
    if (st != status) {
        if (st == LLMS_OK) llms_model_destroy(m);
        fail_msg("expected %s, got %s (\"%s\")", llms_status_string(status), llms_status_string(st), llms_errmsg());
    }
    assert_null(m);
    if (g_live != live0) fail_msg("a failed load left %ld allocations behind", g_live - live0);
    const char *msg = llms_errmsg();
    va_list ap;
    va_start(ap, status);
    for (const char *frag; (frag = va_arg(ap, const char *)) != NULL;) {
        if (!strstr(msg, frag)) {
            va_end(ap);
            fail_msg("message \"%s\" lacks \"%s\"", msg, frag);
        }
    }
    va_end(ap);
    crafted_free(&c);
    context_still_works();
}

static int is_optional(const char *name) {
    return strcmp(name, "output.weight") == 0 || strcmp(name, "rope_freqs.weight") == 0;
}

/* Every tensor of a complete model, except the optional ones, omitted in turn. */
static void each_required_tensor_missing(arch_cfg g) {
    crafted full;
    craft(&g, &full);
    int n = 0;
    for (int i = 0; i < full.n_t; i++) {
        if (is_optional(full.t[i].name)) continue;
        arch_cfg e = g;
        e.omit_tensor = full.t[i].name;
        expect_load_error(&e, LLMS_ERR_MODEL_TENSOR, full.t[i].name, "missing", NULL);
        n++;
    }
    printf("# %s: %d required tensors, each missing in turn: LLMS_ERR_MODEL_TENSOR naming it\n", g.arch, n);
    crafted_free(&full);
}

static void test_missing_tensors_llama(void **state) {
    (void)state;
    arch_cfg g = llama_cfg();
    g.n_head_kv = 2;
    each_required_tensor_missing(g);
}

static void test_missing_tensors_qwen2(void **state) {
    (void)state;
    each_required_tensor_missing(qwen2_cfg());
}

/* Optional tensors: output.weight (tied) and rope_freqs.weight may be absent. */
static void test_optional_tensors(void **state) {
    (void)state;
    arch_cfg g = llama_cfg();
    g.rope_freqs = 1;
    const char *names[] = {"output.weight", "rope_freqs.weight"};
    for (int i = 0; i < 2; i++) {
        arch_cfg e = g;
        e.omit_tensor = names[i];
        crafted c;
        craft(&e, &c);
        llms_model *m = load_crafted(&c);
        llms_model_destroy(m);
        crafted_free(&c);
    }
}

static void test_wrong_shapes(void **state) {
    (void)state;
    static const struct { const char *name; int mode; } cases[] = {
        {"token_embd.weight", 1},        /* one row more than the vocabulary */
        {"token_embd.weight", 2},        /* transposed */
        {"output.weight", 1},
        {"output_norm.weight", 1},
        {"output_norm.weight", 3},       /* 2-D [n_embd, 1] */
        {"blk.0.attn_norm.weight", 1},
        {"blk.0.attn_q.weight", 1},
        {"blk.0.attn_q.weight", 3},      /* 3-D [64, 64, 1] */
        {"blk.0.attn_k.weight", 2},      /* [32, 64] instead of [64, 32] */
        {"blk.1.attn_v.weight", 1},
        {"blk.1.attn_output.weight", 1},
        {"blk.1.ffn_gate.weight", 2},
        {"blk.1.ffn_up.weight", 1},
        {"blk.1.ffn_down.weight", 2},
        {"blk.1.ffn_norm.weight", 1},
        {"rope_freqs.weight", 1},
    };
    arch_cfg g = llama_cfg();
    g.n_head_kv = 2;
    g.rope_freqs = 1;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        arch_cfg e = g;
        e.reshape_tensor = cases[i].name;
        e.reshape_mode = cases[i].mode;
        expect_load_error(&e, LLMS_ERR_MODEL_TENSOR, cases[i].name, NULL);
    }
    static const char *const qwen[] = {"blk.0.attn_q.bias", "blk.0.attn_k.bias", "blk.1.attn_v.bias"};
    for (size_t i = 0; i < 3; i++) {
        arch_cfg e = qwen2_cfg();
        e.reshape_tensor = qwen[i];
        e.reshape_mode = 1;
        expect_load_error(&e, LLMS_ERR_MODEL_TENSOR, qwen[i], NULL);
    }
}

/* Values the loader must reject: a non-positive RoPE frequency factor and
 * non-finite norm weights or biases. */
static void test_bad_values(void **state) {
    (void)state;
    arch_cfg g = llama_cfg();
    g.rope_freqs = 1;
    g.poison_tensor = "rope_freqs.weight";
    g.poison_value = 0.0f;
    expect_load_error(&g, LLMS_ERR_MODEL_TENSOR, "rope_freqs.weight", NULL);
    g.poison_value = -1.0f;
    expect_load_error(&g, LLMS_ERR_MODEL_TENSOR, "rope_freqs.weight", NULL);
    g.poison_value = NAN;
    expect_load_error(&g, LLMS_ERR_MODEL_TENSOR, "rope_freqs.weight", NULL);
    g = llama_cfg();
    g.poison_tensor = "blk.1.ffn_norm.weight";
    g.poison_value = INFINITY;
    expect_load_error(&g, LLMS_ERR_MODEL_TENSOR, "blk.1.ffn_norm.weight", "non-finite", NULL);
    g = qwen2_cfg();
    g.poison_tensor = "blk.0.attn_k.bias";
    g.poison_value = NAN;
    expect_load_error(&g, LLMS_ERR_MODEL_TENSOR, "blk.0.attn_k.bias", "non-finite", NULL);
}

static void test_unsupported_arch(void **state) {
    (void)state;
    arch_cfg g = llama_cfg();
    g.arch = "gptneox";
    expect_load_error(&g, LLMS_ERR_UNSUPPORTED, "gptneox", NULL);
}

static void test_unsupported_tensor_types(void **state) {
    (void)state;
    arch_cfg g = llama_cfg();
    g.retype_tensor = "blk.0.attn_q.weight";
    g.retype = T_Q8_1;
    expect_load_error(&g, LLMS_ERR_UNSUPPORTED, "blk.0.attn_q.weight", "Q8_1", NULL);
    g.retype_tensor = "blk.1.ffn_down.weight";
    g.retype = T_I8;
    expect_load_error(&g, LLMS_ERR_UNSUPPORTED, "blk.1.ffn_down.weight", "I8", NULL);
    g.retype_tensor = "token_embd.weight";
    g.retype = T_Q8_1;
    expect_load_error(&g, LLMS_ERR_UNSUPPORTED, "token_embd.weight", "Q8_1", NULL);
    /* 1-D tensors (converted to f32 at load) name the type as well. */
    g.retype_tensor = "blk.0.attn_norm.weight";
    g.retype = T_I8;
    expect_load_error(&g, LLMS_ERR_UNSUPPORTED, "blk.0.attn_norm.weight", "I8", NULL);
    /* Q8_K is an activation format: it dequantizes, but has no dot product
     * as a weight, so the matrix-vector path could not use it. */
    arch_cfg k = llama_cfg();
    k.n_embd = 256;
    k.n_ff = 256;
    k.n_layer = 1;
    k.retype_tensor = "blk.0.attn_q.weight";
    k.retype = T_Q8_K;
    expect_load_error(&k, LLMS_ERR_UNSUPPORTED, "blk.0.attn_q.weight", "Q8_K", NULL);
}

static void test_missing_metadata(void **state) {
    (void)state;
    static const char *const keys[] = {"llama.embedding_length", "llama.block_count",
                                       "llama.feed_forward_length", "llama.attention.head_count"};
    for (size_t i = 0; i < 4; i++) {
        arch_cfg g = llama_cfg();
        g.omit_key = keys[i];
        expect_load_error(&g, LLMS_ERR_MODEL_METADATA, keys[i], NULL);
    }
    arch_cfg q = qwen2_cfg();
    q.omit_key = "qwen2.embedding_length";
    expect_load_error(&q, LLMS_ERR_MODEL_METADATA, "qwen2.embedding_length", NULL);
    arch_cfg a = llama_cfg();
    a.omit_key = "general.architecture";
    expect_load_error(&a, LLMS_ERR_MODEL_METADATA, "general.architecture", NULL);
}

static void test_inconsistent_metadata(void **state) {
    (void)state;
    arch_cfg g = llama_cfg();
    g.n_head = 3;              /* does not divide n_embd 64 */
    g.n_head_kv = 3;
    expect_load_error(&g, LLMS_ERR_MODEL_METADATA, "n_head 3", NULL);
    g = llama_cfg();
    g.n_head_kv = 3;           /* does not divide n_head 4 */
    expect_load_error(&g, LLMS_ERR_MODEL_METADATA, "n_head_kv 3", NULL);
    g = llama_cfg();
    g.n_rot = 32;              /* more rotary dims than head_dim 16 */
    expect_load_error(&g, LLMS_ERR_MODEL_METADATA, "32", NULL);
    g = llama_cfg();
    g.n_rot = 7;               /* odd */
    expect_load_error(&g, LLMS_ERR_MODEL_METADATA, "7", NULL);
    g = llama_cfg();
    g.scaling_type = "linear"; /* without a factor */
    expect_load_error(&g, LLMS_ERR_MODEL_METADATA, "linear", NULL);
}

static void test_unsupported_rope_scaling(void **state) {
    (void)state;
    arch_cfg g = llama_cfg();
    g.scaling_type = "yarn";
    g.scaling_factor = 4.0f;
    expect_load_error(&g, LLMS_ERR_UNSUPPORTED, "yarn", NULL);
    /* "none" (without a factor) is no scaling at all. */
    g.scaling_type = "none";
    g.scaling_factor = 0;
    run_result r;
    run_and_compare(&g, "llama rope.scaling.type none", &r);
    run_free(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_converter),
        cmocka_unit_test(test_llama_mha_untied),
        cmocka_unit_test(test_llama_gqa),
        cmocka_unit_test(test_llama_mqa_tied),
        cmocka_unit_test(test_llama3_rope_freqs),
        cmocka_unit_test(test_llama_linear_scaling),
        cmocka_unit_test(test_llama_partial_rotary),
        cmocka_unit_test(test_llama_key_length),
        cmocka_unit_test(test_qwen2_bias),
        cmocka_unit_test(test_qwen2_partial_rotary),
        cmocka_unit_test(test_llama_f16),
        cmocka_unit_test(test_qwen2_f16),
        cmocka_unit_test(test_unaligned_tensors),
        cmocka_unit_test(test_missing_tensors_llama),
        cmocka_unit_test(test_missing_tensors_qwen2),
        cmocka_unit_test(test_optional_tensors),
        cmocka_unit_test(test_wrong_shapes),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_unsupported_arch),
        cmocka_unit_test(test_unsupported_tensor_types),
        cmocka_unit_test(test_missing_metadata),
        cmocka_unit_test(test_inconsistent_metadata),
        cmocka_unit_test(test_unsupported_rope_scaling),
    };
    return cmocka_run_group_tests_name("arch", tests, setup, teardown);
}
