/*
 * Writing model files: quantization of a GGUF model (llms_model_quantize)
 * and random-weight models of a given shape (llms_model_write_random).
 * Both stream through the GGUF writer tensor by tensor, converting rows in
 * parallel on the context's threads.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "llmserve.h"
#include "../core/context.h"
#include "../core/error.h"
#include "../core/params.h"
#include "../gguf/gguf.h"
#include "../quant/quant.h"

/* ---- schemes ---------------------------------------------------------- */

static const struct {
    int32_t ftype;
    const char *name;
    uint32_t base;       /* the type of most matrices */
} FTYPES[] = {
    {LLMS_FTYPE_F32, "F32", LLMS_TYPE_F32},       {LLMS_FTYPE_F16, "F16", LLMS_TYPE_F16},
    {LLMS_FTYPE_Q4_0, "Q4_0", LLMS_TYPE_Q4_0},    {LLMS_FTYPE_Q4_1, "Q4_1", LLMS_TYPE_Q4_1},
    {LLMS_FTYPE_Q8_0, "Q8_0", LLMS_TYPE_Q8_0},    {LLMS_FTYPE_Q5_0, "Q5_0", LLMS_TYPE_Q5_0},
    {LLMS_FTYPE_Q5_1, "Q5_1", LLMS_TYPE_Q5_1},    {LLMS_FTYPE_Q2_K, "Q2_K", LLMS_TYPE_Q2_K},
    {LLMS_FTYPE_Q3_K_M, "Q3_K_M", LLMS_TYPE_Q3_K}, {LLMS_FTYPE_Q4_K_M, "Q4_K_M", LLMS_TYPE_Q4_K},
    {LLMS_FTYPE_Q5_K_M, "Q5_K_M", LLMS_TYPE_Q5_K}, {LLMS_FTYPE_Q6_K, "Q6_K", LLMS_TYPE_Q6_K},
};
#define N_FTYPES (sizeof FTYPES / sizeof FTYPES[0])

static int ftype_index(int32_t ftype) {
    for (size_t i = 0; i < N_FTYPES; i++)
        if (FTYPES[i].ftype == ftype) return (int)i;
    return -1;
}

LLMS_API int32_t llms_ftype_from_name(const char *name) {
    if (!name) return -1;
    for (size_t i = 0; i < N_FTYPES; i++)
        if (!strcasecmp(name, FTYPES[i].name)) return FTYPES[i].ftype;
    /* Short names for the mixes. */
    if (!strcasecmp(name, "Q3_K")) return LLMS_FTYPE_Q3_K_M;
    if (!strcasecmp(name, "Q4_K")) return LLMS_FTYPE_Q4_K_M;
    if (!strcasecmp(name, "Q5_K")) return LLMS_FTYPE_Q5_K_M;
    return -1;
}

LLMS_API const char *llms_ftype_name(int32_t ftype) {
    int i = ftype_index(ftype);
    return i < 0 ? NULL : FTYPES[i].name;
}

/* llama.cpp's rule for which layers get more bits: the first and last
 * eighth, and every third layer in between. */
static int use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

static int has_suffix(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* The type a tensor gets under a scheme. */
static uint32_t pick_type(int32_t ftype, const char *name, uint32_t n_dims, int64_t ne0, int n_layer,
                          int tied, int n_gqa) {
    if (n_dims < 2) return LLMS_TYPE_F32;
    uint32_t t = FTYPES[ftype_index(ftype)].base;
    int layer = -1;
    if (sscanf(name, "blk.%d.", &layer) != 1) layer = -1;
    int kmix = ftype == LLMS_FTYPE_Q2_K || ftype == LLMS_FTYPE_Q3_K_M || ftype == LLMS_FTYPE_Q4_K_M ||
               ftype == LLMS_FTYPE_Q5_K_M || ftype == LLMS_FTYPE_Q6_K;
    if (kmix) {
        if (!strcmp(name, "output.weight") || (tied && !strcmp(name, "token_embd.weight"))) {
            t = LLMS_TYPE_Q6_K;
        } else if (has_suffix(name, "attn_v.weight") && layer >= 0) {
            if (ftype == LLMS_FTYPE_Q2_K) t = n_gqa >= 4 ? LLMS_TYPE_Q4_K : LLMS_TYPE_Q3_K;
            else if (ftype == LLMS_FTYPE_Q3_K_M) t = layer < 2 ? LLMS_TYPE_Q5_K : LLMS_TYPE_Q4_K;
            else if ((ftype == LLMS_FTYPE_Q4_K_M || ftype == LLMS_FTYPE_Q5_K_M) && use_more_bits(layer, n_layer))
                t = LLMS_TYPE_Q6_K;
        } else if (has_suffix(name, "ffn_down.weight") && layer >= 0) {
            if (ftype == LLMS_FTYPE_Q2_K) t = LLMS_TYPE_Q3_K;
            else if (ftype == LLMS_FTYPE_Q3_K_M) t = layer < n_layer / 16 ? LLMS_TYPE_Q5_K : LLMS_TYPE_Q4_K;
            else if ((ftype == LLMS_FTYPE_Q4_K_M || ftype == LLMS_FTYPE_Q5_K_M) && use_more_bits(layer, n_layer))
                t = LLMS_TYPE_Q6_K;
        } else if (has_suffix(name, "attn_output.weight")) {
            if (ftype == LLMS_FTYPE_Q2_K) t = LLMS_TYPE_Q3_K;
            else if (ftype == LLMS_FTYPE_Q3_K_M) t = LLMS_TYPE_Q4_K;
        }
    }
    /* K-quants need rows of whole 256-element super-blocks. */
    if (ne0 % 256) {
        switch (t) {
        case LLMS_TYPE_Q2_K: case LLMS_TYPE_Q3_K: t = LLMS_TYPE_Q4_0; break;
        case LLMS_TYPE_Q4_K: t = LLMS_TYPE_Q5_0; break;
        case LLMS_TYPE_Q5_K: t = LLMS_TYPE_Q5_1; break;
        case LLMS_TYPE_Q6_K: t = LLMS_TYPE_Q8_0; break;
        default: break;
        }
    }
    if (ne0 % 32 && t != LLMS_TYPE_F32 && t != LLMS_TYPE_F16) t = LLMS_TYPE_F16;
    return t;
}

/* ---- parallel row conversion ------------------------------------------ */

/* Fills rows [r0, r1) of the output tensor; `tmp` holds one row of floats. */
typedef void (*row_fn)(void *user, int64_t row, float *tmp, void *dst_row);

typedef struct conv_job {
    row_fn fn;
    void *user;
    uint8_t *dst;
    uint64_t dst_row_bytes;
    int64_t rows, rows_per_task, cols;
    float *tmp;          /* [n_tasks][cols] */
} conv_job;

static void conv_task(void *arg, int64_t task, int64_t n) {
    (void)n;
    conv_job *j = arg;
    float *tmp = j->tmp + task * j->cols;
    int64_t r0 = task * j->rows_per_task, r1 = r0 + j->rows_per_task;
    if (r1 > j->rows) r1 = j->rows;
    for (int64_t r = r0; r < r1; r++) j->fn(j->user, r, tmp, j->dst + (uint64_t)r * j->dst_row_bytes);
}

static llms_status convert_rows(llms_context *ctx, row_fn fn, void *user, void *dst, uint32_t type,
                                int64_t cols, int64_t rows) {
    conv_job j = {fn, user, dst, type_row_bytes(type_get(type), (uint64_t)cols), rows, 0, cols, NULL};
    int64_t tasks = (int64_t)pool_size(ctx->pool) * 16;
    if (tasks > rows) tasks = rows;
    j.rows_per_task = (rows + tasks - 1) / tasks;
    tasks = (rows + j.rows_per_task - 1) / j.rows_per_task;
    j.tmp = xmalloc_aligned(&ctx->alloc, (size_t)(tasks * cols) * sizeof(float), 64);
    if (!j.tmp) return ERR_OOM();
    pool_run(ctx->pool, tasks, conv_task, &j);
    xfree_aligned(&ctx->alloc, j.tmp);
    return LLMS_OK;
}

/* ---- quantization ----------------------------------------------------- */

typedef struct qz {
    llms_context *ctx;
    gguf_file *in;
    const gguf_tensor **src;   /* per output tensor */
    uint32_t *type;
    /* the tensor being converted */
    const gguf_tensor *cur;
    uint32_t cur_type;
} qz;

static void qz_row(void *user, int64_t row, float *tmp, void *dst) {
    qz *q = user;
    const gguf_tensor *t = q->cur;
    uint64_t srb = type_row_bytes(type_get(t->type), (uint64_t)t->ne[0]);
    quant_dequantize_row(t->type, (const uint8_t *)t->data + (uint64_t)row * srb, tmp, t->ne[0]);
    quant_quantize_row(q->cur_type, tmp, dst, t->ne[0]);
}

static llms_status qz_fill(void *user, uint64_t i, void *dst, uint64_t n_bytes) {
    qz *q = user;
    const gguf_tensor *t = q->src[i];
    if (q->type[i] == t->type) {
        memcpy(dst, t->data, (size_t)n_bytes);
        return LLMS_OK;
    }
    q->cur = t;
    q->cur_type = q->type[i];
    return convert_rows(q->ctx, qz_row, q, dst, q->type[i], t->ne[0], (int64_t)(t->n_elems / (uint64_t)t->ne[0]));
}

LLMS_API void llms_quantize_params_init(llms_quantize_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->ftype = LLMS_FTYPE_Q8_0;
}

LLMS_API llms_status llms_model_quantize(llms_context *ctx, const char *in_path, const char *out_path,
                                         const llms_quantize_params *params) {
    if (!ctx || !in_path || !out_path)
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_model_quantize: NULL argument");
    llms_quantize_params p;
    llms_quantize_params_init(&p);
    if (!params_merge(&p, sizeof p, params))
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_quantize_params: struct_size too small");
    if (ftype_index(p.ftype) < 0) return err_set(LLMS_ERR_INVALID_ARGUMENT, "unknown file type %d", (int)p.ftype);
    const lalloc *a = &ctx->alloc;
    qz q = {0};
    q.ctx = ctx;
    gguf_wr *w = NULL;
    llms_status st = gguf_open_file(a, in_path, 0, &q.in);
    if (st) return st;
    const uint64_t nt = gguf_tensor_count(q.in);
    q.src = xcalloc(a, nt ? nt : 1, sizeof *q.src);
    q.type = xcalloc(a, nt ? nt : 1, sizeof *q.type);
    if (!q.src || !q.type) { st = ERR_OOM(); goto done; }
    if ((st = gguf_wr_create(a, &w))) goto done;

    /* Key/values: everything but the ones describing the old layout. */
    const gguf_string *arch = NULL;
    (void)gguf_get_str(q.in, "general.architecture", &arch);
    char key[256];
    uint32_t n_layer = 0, n_head = 1, n_head_kv = 1;
    if (arch) {
        snprintf(key, sizeof key, "%s.block_count", arch->s);
        (void)gguf_get_u32(q.in, key, &n_layer);
        snprintf(key, sizeof key, "%s.attention.head_count", arch->s);
        (void)gguf_get_u32(q.in, key, &n_head);
        snprintf(key, sizeof key, "%s.attention.head_count_kv", arch->s);
        if (gguf_get_u32(q.in, key, &n_head_kv)) n_head_kv = n_head;
    }
    for (uint64_t i = 0; i < gguf_kv_count(q.in); i++) {
        const char *k = gguf_kv_key(q.in, i);
        if (!strcmp(k, "general.file_type") || !strcmp(k, "general.quantization_version") ||
            !strcmp(k, "general.alignment"))
            continue;
        if ((st = gguf_wr_set(w, k, gguf_kv_value(q.in, i)))) goto done;
    }
    if ((st = gguf_wr_set_u32(w, "general.file_type", (uint32_t)p.ftype)) ||
        (st = gguf_wr_set_u32(w, "general.quantization_version", 2)))
        goto done;

    int tied = gguf_find_tensor(q.in, "output.weight") == NULL;
    for (uint64_t i = 0; i < nt; i++) {
        const gguf_tensor *t = gguf_tensor_at(q.in, i);
        q.src[i] = t;
        uint32_t ty = t->type;
        if (quant_can_dequantize(t->type) && t->type != LLMS_TYPE_Q8_K) {
            ty = pick_type(p.ftype, t->name, t->n_dims, t->ne[0], (int)n_layer, tied,
                           n_head_kv ? (int)(n_head / n_head_kv) : 1);
            if (!quant_can_quantize(ty)) ty = LLMS_TYPE_F32;
        }
        q.type[i] = ty;
        if ((st = gguf_wr_add_tensor(w, t->name, ty, t->n_dims, t->ne, NULL))) goto done;
    }
    st = gguf_wr_write_file(w, out_path, qz_fill, &q);
done:
    gguf_wr_free(w);
    xfree(a, q.src);
    xfree(a, q.type);
    gguf_close(q.in);
    return st;
}

/* ---- random models ---------------------------------------------------- */

LLMS_API void llms_random_model_params_init(llms_random_model_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
    p->arch = "llama";
    p->name = "random";
    p->n_embd = 64;
    p->n_layer = 2;
    p->n_head = 4;
    p->n_head_kv = 2;
    p->n_ff = 128;
    p->n_vocab = 512;
    p->n_ctx_train = 2048;
    p->rope_freq_base = 10000.0f;
    p->rms_eps = 1e-5f;
    p->ftype = LLMS_FTYPE_F16;
    p->seed = 1;
}

enum { RT_MATRIX, RT_EMBD, RT_ONES, RT_BIAS };

typedef struct rnd {
    llms_context *ctx;
    uint64_t seed;
    uint32_t *type;
    int *kind;
    int64_t (*ne)[2];
    uint64_t cur;
} rnd;

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void rnd_row(void *user, int64_t row, float *tmp, void *dst) {
    rnd *r = user;
    uint64_t i = r->cur;
    int64_t cols = r->ne[i][0];
    uint64_t s = r->seed * 0x2545F4914F6CDD1Dull + i * 0x100000001B3ull + (uint64_t)row * 0x9E3779B97F4A7C15ull;
    float amp;
    switch (r->kind[i]) {
    case RT_EMBD: amp = 1.0f; break;
    case RT_BIAS: amp = 0.1f; break;
    case RT_ONES: amp = 0.0f; break;
    default: amp = sqrtf(3.0f / (float)cols); break;  /* uniform with variance 1/cols */
    }
    for (int64_t c = 0; c < cols; c++) {
        float u = (float)(splitmix(&s) >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f;
        tmp[c] = r->kind[i] == RT_ONES ? 1.0f : amp * u;
    }
    quant_quantize_row(r->type[i], tmp, dst, cols);
}

static llms_status rnd_fill(void *user, uint64_t i, void *dst, uint64_t n_bytes) {
    (void)n_bytes;
    rnd *r = user;
    r->cur = i;
    return convert_rows(r->ctx, rnd_row, r, dst, r->type[i], r->ne[i][0], r->ne[i][1]);
}

LLMS_API llms_status llms_model_write_random(llms_context *ctx, const llms_random_model_params *params,
                                             const char *out_path) {
    if (!ctx || !out_path) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_model_write_random: NULL argument");
    llms_random_model_params p;
    llms_random_model_params_init(&p);
    if (!params_merge(&p, sizeof p, params))
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_random_model_params: struct_size too small");
    if (!p.arch) p.arch = "llama";
    if (!p.name) p.name = "random";
    if (strcmp(p.arch, "llama") && strcmp(p.arch, "qwen2"))
        return err_set(LLMS_ERR_UNSUPPORTED, "llms_model_write_random: architecture '%s'", p.arch);
    if (ftype_index(p.ftype) < 0) return err_set(LLMS_ERR_INVALID_ARGUMENT, "unknown file type %d", (int)p.ftype);
    if (!p.n_embd || !p.n_layer || !p.n_head || !p.n_head_kv || !p.n_ff || p.n_vocab < 259 ||
        p.n_embd % p.n_head || p.n_head % p.n_head_kv || (p.n_embd / p.n_head) % 2 || p.n_embd % 32 ||
        p.n_ff % 32 || p.n_layer > 4096 || p.n_vocab > (1u << 24))
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_model_write_random: inconsistent shape");
    const lalloc *a = &ctx->alloc;
    const uint32_t E = p.n_embd, D = p.n_embd / p.n_head, KV = D * p.n_head_kv, F = p.n_ff, V = p.n_vocab;
    gguf_wr *w = NULL;
    llms_status st = gguf_wr_create(a, &w);
    if (st) return st;
    const uint64_t max_t = 3 + (uint64_t)p.n_layer * 12;
    rnd r = {ctx, p.seed, NULL, NULL, NULL, 0};
    r.type = xcalloc(a, max_t, sizeof *r.type);
    r.kind = xcalloc(a, max_t, sizeof *r.kind);
    r.ne = xcalloc(a, max_t, sizeof *r.ne);
    const char **tokens = xcalloc(a, V, sizeof *tokens);
    char *names = xcalloc(a, V, 16);
    float *scores = xcalloc(a, V, sizeof *scores);
    int32_t *ttype = xcalloc(a, V, sizeof *ttype);
    if (!r.type || !r.kind || !r.ne || !tokens || !names || !scores || !ttype) { st = ERR_OOM(); goto done; }

    char key[128];
#define AK(s) (snprintf(key, sizeof key, "%s.%s", p.arch, s), key)
    if ((st = gguf_wr_set_str(w, "general.architecture", p.arch)) ||
        (st = gguf_wr_set_str(w, "general.name", p.name)) ||
        (st = gguf_wr_set_u32(w, "general.file_type", (uint32_t)p.ftype)) ||
        (st = gguf_wr_set_u32(w, "general.quantization_version", 2)) ||
        (st = gguf_wr_set_u32(w, AK("context_length"), p.n_ctx_train)) ||
        (st = gguf_wr_set_u32(w, AK("embedding_length"), E)) ||
        (st = gguf_wr_set_u32(w, AK("block_count"), p.n_layer)) ||
        (st = gguf_wr_set_u32(w, AK("feed_forward_length"), F)) ||
        (st = gguf_wr_set_u32(w, AK("attention.head_count"), p.n_head)) ||
        (st = gguf_wr_set_u32(w, AK("attention.head_count_kv"), p.n_head_kv)) ||
        (st = gguf_wr_set_u32(w, AK("rope.dimension_count"), D)) ||
        (st = gguf_wr_set_f32(w, AK("rope.freq_base"), p.rope_freq_base)) ||
        (st = gguf_wr_set_f32(w, AK("attention.layer_norm_rms_epsilon"), p.rms_eps)))
        goto done;
#undef AK
    /* SentencePiece vocabulary: specials, byte tokens, filler pieces. */
    for (uint32_t i = 0; i < V; i++) {
        char *nm = names + (size_t)i * 16;
        if (i == 0) { strcpy(nm, "<unk>"); ttype[i] = 2; }
        else if (i == 1) { strcpy(nm, "<s>"); ttype[i] = 3; }
        else if (i == 2) { strcpy(nm, "</s>"); ttype[i] = 3; }
        else if (i < 259) { snprintf(nm, 16, "<0x%02X>", i - 3); ttype[i] = 6; }
        else { snprintf(nm, 16, "\xe2\x96\x81t%u", i - 259); ttype[i] = 1; scores[i] = -(float)(i - 259); }
        tokens[i] = nm;
    }
    if ((st = gguf_wr_set_str(w, "tokenizer.ggml.model", "llama")) ||
        (st = gguf_wr_set_arr(w, "tokenizer.ggml.tokens", GGUF_STRING, V, tokens)) ||
        (st = gguf_wr_set_arr(w, "tokenizer.ggml.scores", GGUF_FLOAT32, V, scores)) ||
        (st = gguf_wr_set_arr(w, "tokenizer.ggml.token_type", GGUF_INT32, V, ttype)) ||
        (st = gguf_wr_set_u32(w, "tokenizer.ggml.bos_token_id", 1)) ||
        (st = gguf_wr_set_u32(w, "tokenizer.ggml.eos_token_id", 2)) ||
        (st = gguf_wr_set_u32(w, "tokenizer.ggml.unknown_token_id", 0)))
        goto done;

    /* Tensors. */
    uint64_t nt = 0;
    const int n_gqa = (int)(p.n_head / p.n_head_kv);
    char name[96];
#define ADD(kind_, dims_, c_, r_)                                                                     \
    do {                                                                                              \
        int64_t ne_[2] = {(c_), (r_)};                                                                \
        uint32_t ty_ = pick_type(p.ftype, name, (dims_), ne_[0], (int)p.n_layer, p.tied, n_gqa);       \
        r.type[nt] = ty_; r.kind[nt] = (kind_); r.ne[nt][0] = ne_[0]; r.ne[nt][1] = (dims_) > 1 ? ne_[1] : 1; \
        if ((st = gguf_wr_add_tensor(w, name, ty_, (dims_), ne_, NULL))) goto done;                   \
        nt++;                                                                                         \
    } while (0)
    strcpy(name, "token_embd.weight");
    ADD(RT_EMBD, 2, E, V);
    strcpy(name, "output_norm.weight");
    ADD(RT_ONES, 1, E, 1);
    if (!p.tied) {
        strcpy(name, "output.weight");
        ADD(RT_MATRIX, 2, E, V);
    }
    for (uint32_t l = 0; l < p.n_layer; l++) {
        static const char *const mats[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
        const int64_t shp[7][2] = {{E, E}, {E, KV}, {E, KV}, {E, E}, {E, F}, {E, F}, {F, E}};
        snprintf(name, sizeof name, "blk.%u.attn_norm.weight", l);
        ADD(RT_ONES, 1, E, 1);
        for (int m = 0; m < 7; m++) {
            snprintf(name, sizeof name, "blk.%u.%s.weight", l, mats[m]);
            ADD(RT_MATRIX, 2, shp[m][0], shp[m][1]);
            if (p.qkv_bias && m < 3) {
                snprintf(name, sizeof name, "blk.%u.%s.bias", l, mats[m]);
                ADD(RT_BIAS, 1, shp[m][1], 1);
            }
        }
        snprintf(name, sizeof name, "blk.%u.ffn_norm.weight", l);
        ADD(RT_ONES, 1, E, 1);
    }
#undef ADD
    st = gguf_wr_write_file(w, out_path, rnd_fill, &r);
done:
    gguf_wr_free(w);
    xfree(a, r.type);
    xfree(a, r.kind);
    xfree(a, r.ne);
    xfree(a, tokens);
    xfree(a, names);
    xfree(a, scores);
    xfree(a, ttype);
    return st;
}
