/*
 * Model loading: GGUF file → hyperparameters, tokenizer and weight views.
 * Everything the graph will rely on is checked here, once, so the forward
 * pass never meets a missing tensor or a shape it cannot handle.
 */
#include "model.h"
#include "../backend/vulkan/vk_ctx.h"
#include "../backend/cpu/cpu.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../core/error.h"
#include "../core/params.h"
#include "../quant/quant.h"

LLMS_API void llms_model_params_init(llms_model_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = sizeof *p;
}

/* "{arch}.suffix" */
static const char *akey(const llms_model *m, const char *suffix, char *buf, size_t cap) {
    snprintf(buf, cap, "%s.%s", m->arch_name, suffix);
    return buf;
}

static llms_status req_u32(const llms_model *m, const char *suffix, uint32_t *out) {
    char k[256];
    llms_status st = gguf_get_u32(m->file, akey(m, suffix, k, sizeof k), out);
    if (st == LLMS_ERR_NOT_FOUND)
        return err_set(LLMS_ERR_MODEL_METADATA, "required metadata key '%s' is missing", k);
    if (st != LLMS_OK) return st;
    return LLMS_OK;
}

static llms_status opt_u32(const llms_model *m, const char *suffix, uint32_t *out, uint32_t def) {
    char k[256];
    llms_status st = gguf_get_u32(m->file, akey(m, suffix, k, sizeof k), out);
    if (st == LLMS_ERR_NOT_FOUND) { *out = def; return LLMS_OK; }
    return st;
}

static llms_status opt_f32(const llms_model *m, const char *suffix, float *out, float def) {
    char k[256];
    double d;
    llms_status st = gguf_get_f64(m->file, akey(m, suffix, k, sizeof k), &d);
    if (st == LLMS_ERR_NOT_FOUND) { *out = def; return LLMS_OK; }
    if (st != LLMS_OK) return st;
    if (!isfinite(d)) return err_set(LLMS_ERR_MODEL_METADATA, "metadata key '%s' is not finite", k);
    *out = (float)d;
    return LLMS_OK;
}

static llms_status load_hparams(llms_model *m) {
    hparams *hp = &m->hp;
    llms_status st;
    if (strcmp(m->arch_name, "llama") == 0) {
        hp->arch = ARCH_LLAMA;
        hp->rope_type = ROPE_NORM;
    } else if (strcmp(m->arch_name, "qwen2") == 0) {
        hp->arch = ARCH_QWEN2;
        hp->rope_type = ROPE_NEOX;
    } else {
        return err_set(LLMS_ERR_UNSUPPORTED, "unsupported model architecture '%s' (supported: llama, qwen2)",
                       m->arch_name);
    }
    if ((st = req_u32(m, "embedding_length", &hp->n_embd)) ||
        (st = req_u32(m, "block_count", &hp->n_layer)) ||
        (st = req_u32(m, "feed_forward_length", &hp->n_ff)) ||
        (st = req_u32(m, "attention.head_count", &hp->n_head)) ||
        (st = opt_u32(m, "attention.head_count_kv", &hp->n_head_kv, hp->n_head)) ||
        (st = opt_u32(m, "context_length", &hp->n_ctx_train, 2048)) ||
        (st = opt_f32(m, "attention.layer_norm_rms_epsilon", &hp->rms_eps, 1e-5f)) ||
        (st = opt_f32(m, "rope.freq_base", &hp->rope_freq_base, 10000.0f)))
        return st;
    if (hp->n_embd == 0 || hp->n_layer == 0 || hp->n_head == 0 || hp->n_head_kv == 0 ||
        hp->n_ff == 0 || hp->n_embd % hp->n_head != 0 || hp->n_head % hp->n_head_kv != 0 ||
        hp->n_embd > (1u << 20) || hp->n_layer > 4096 || hp->n_head > 4096 || hp->n_ff > (1u << 22))
        return err_set(LLMS_ERR_MODEL_METADATA,
                       "inconsistent hyperparameters: n_embd %u, n_layer %u, n_head %u, n_head_kv %u, n_ff %u",
                       hp->n_embd, hp->n_layer, hp->n_head, hp->n_head_kv, hp->n_ff);
    if ((st = opt_u32(m, "attention.key_length", &hp->head_dim, hp->n_embd / hp->n_head))) return st;
    if ((st = opt_u32(m, "rope.dimension_count", &hp->n_rot, hp->head_dim))) return st;
    if (hp->head_dim == 0 || hp->head_dim % 2 || hp->head_dim > 1024 || hp->n_rot > hp->head_dim ||
        hp->n_rot % 2)
        return err_set(LLMS_ERR_MODEL_METADATA, "invalid head size %u / rotary dimensions %u",
                       hp->head_dim, hp->n_rot);
    if (!(hp->rms_eps > 0) || !(hp->rope_freq_base > 0))
        return err_set(LLMS_ERR_MODEL_METADATA, "invalid rms epsilon or rope base");
    if (hp->n_ctx_train == 0) hp->n_ctx_train = 2048;

    /* RoPE scaling: linear is a position divisor; Llama 3 style scaling
     * comes as a rope_freqs tensor (handled with the weights). */
    hp->rope_freq_scale = 1.0f;
    char k[256];
    const gguf_string *stype = NULL;
    st = gguf_get_str(m->file, akey(m, "rope.scaling.type", k, sizeof k), &stype);
    if (st != LLMS_OK && st != LLMS_ERR_NOT_FOUND) return st;
    float factor = 0;
    if ((st = opt_f32(m, "rope.scaling.factor", &factor, 0))) return st;
    if (stype && strcmp(stype->s, "none") != 0) {
        if (strcmp(stype->s, "linear") != 0)
            return err_set(LLMS_ERR_UNSUPPORTED, "unsupported RoPE scaling type '%s'", stype->s);
        if (!(factor > 0))
            return err_set(LLMS_ERR_MODEL_METADATA, "linear RoPE scaling needs a positive factor");
        hp->rope_freq_scale = 1.0f / factor;
    } else if (!stype && factor > 0) {
        /* Older files give only rope.scale_linear-like factors: treat as linear. */
        hp->rope_freq_scale = 1.0f / factor;
    }
    if (!stype) {
        float lin = 0;
        if ((st = opt_f32(m, "rope.scale_linear", &lin, 0))) return st;
        if (lin > 0) hp->rope_freq_scale = 1.0f / lin;
    }
    return LLMS_OK;
}

static const gguf_tensor *find_tensor(const llms_model *m, const char *fmt, int layer, char *name,
                                      size_t cap) {
    snprintf(name, cap, fmt, layer);
    return gguf_find_tensor(m->file, name);
}

/* A required (or optional) 2-D weight of shape [cols, rows]. */
static llms_status get_weight(llms_model *m, weight *w, const char *fmt, int layer, int64_t cols,
                              int64_t rows, int required) {
    char name[128];
    const gguf_tensor *t = find_tensor(m, fmt, layer, name, sizeof name);
    memset(w, 0, sizeof *w);
    if (!t) {
        if (!required) return LLMS_OK;
        return err_set(LLMS_ERR_MODEL_TENSOR, "required tensor '%s' is missing", name);
    }
    if (t->n_dims != 2 || t->ne[0] != cols || t->ne[1] != rows)
        return err_set(LLMS_ERR_MODEL_TENSOR,
                       "tensor '%s' has shape [%lld, %lld, %lld] but [%lld, %lld] is expected", name,
                       (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                       (long long)cols, (long long)rows);
    /* Matrices go through both paths: dequantize (prefill) and the dot
     * kernels (decode). Q8_K dequantizes but has no dot product as a weight. */
    if (!quant_can_dequantize(t->type) || quant_act_type(t->type) == QUANT_TYPE_NONE) {
        const char *tn = llms_type_name((int32_t)t->type);
        return err_set(LLMS_ERR_UNSUPPORTED, "tensor '%s' has unsupported type %s (%u)", name,
                       tn ? tn : "unknown", t->type);
    }
    w->type = t->type;
    w->cols = cols;
    w->rows = rows;
    w->row_bytes = type_row_bytes(type_get(t->type), (uint64_t)cols);
    w->data = t->data;
    w->name = t->name;
    return LLMS_OK;
}

/* A 1-D vector converted to f32 (norms and biases are small). */
static llms_status get_fvec(llms_model *m, fvec *v, const char *fmt, int layer, int64_t n,
                            int required) {
    char name[128];
    const gguf_tensor *t = find_tensor(m, fmt, layer, name, sizeof name);
    memset(v, 0, sizeof *v);
    if (!t) {
        if (!required) return LLMS_OK;
        return err_set(LLMS_ERR_MODEL_TENSOR, "required tensor '%s' is missing", name);
    }
    if (t->n_dims != 1 || t->ne[0] != n)
        return err_set(LLMS_ERR_MODEL_TENSOR, "tensor '%s' has %lld elements but %lld are expected",
                       name, (long long)t->n_elems, (long long)n);
    if (!quant_can_dequantize(t->type)) {
        const char *tn = llms_type_name((int32_t)t->type);
        return err_set(LLMS_ERR_UNSUPPORTED, "tensor '%s' has unsupported type %s (%u)", name,
                       tn ? tn : "unknown", t->type);
    }
    v->data = xmalloc_aligned(m->alloc, (size_t)n * sizeof(float), 64);
    if (!v->data) return ERR_OOM();
    v->n = n;
    quant_dequantize_row(t->type, t->data, v->data, n);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v->data[i]))
            return err_set(LLMS_ERR_MODEL_TENSOR, "tensor '%s' contains a non-finite value", name);
    return LLMS_OK;
}

static llms_status load_weights(llms_model *m) {
    const hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, V = hp->n_vocab, F = hp->n_ff;
    const int64_t Q = (int64_t)hp->n_head * hp->head_dim, KV = (int64_t)hp->n_head_kv * hp->head_dim;
    llms_status st;
    if ((st = get_weight(m, &m->tok_embd, "token_embd.weight", 0, E, V, 1))) return st;
    if ((st = get_fvec(m, &m->output_norm, "output_norm.weight", 0, E, 1))) return st;
    if ((st = get_weight(m, &m->output, "output.weight", 0, E, V, 0))) return st;
    if (!m->output.data) m->output = m->tok_embd;  /* tied embeddings */
    if ((st = get_fvec(m, &m->rope_freqs, "rope_freqs.weight", 0, hp->n_rot / 2, 0))) return st;
    m->layers = xcalloc(m->alloc, hp->n_layer, sizeof *m->layers);
    if (!m->layers) return ERR_OOM();
    const int bias = hp->arch == ARCH_QWEN2;
    for (uint32_t i = 0; i < hp->n_layer; i++) {
        layer_weights *L = &m->layers[i];
        int l = (int)i;
        if ((st = get_fvec(m, &L->attn_norm, "blk.%d.attn_norm.weight", l, E, 1)) ||
            (st = get_fvec(m, &L->ffn_norm, "blk.%d.ffn_norm.weight", l, E, 1)) ||
            (st = get_weight(m, &L->wq, "blk.%d.attn_q.weight", l, E, Q, 1)) ||
            (st = get_weight(m, &L->wk, "blk.%d.attn_k.weight", l, E, KV, 1)) ||
            (st = get_weight(m, &L->wv, "blk.%d.attn_v.weight", l, E, KV, 1)) ||
            (st = get_weight(m, &L->wo, "blk.%d.attn_output.weight", l, Q, E, 1)) ||
            (st = get_weight(m, &L->w_gate, "blk.%d.ffn_gate.weight", l, E, F, 1)) ||
            (st = get_weight(m, &L->w_up, "blk.%d.ffn_up.weight", l, E, F, 1)) ||
            (st = get_weight(m, &L->w_down, "blk.%d.ffn_down.weight", l, F, E, 1)) ||
            (st = get_fvec(m, &L->bq, "blk.%d.attn_q.bias", l, Q, bias)) ||
            (st = get_fvec(m, &L->bk, "blk.%d.attn_k.bias", l, KV, bias)) ||
            (st = get_fvec(m, &L->bv, "blk.%d.attn_v.bias", l, KV, bias)))
            return st;
    }
    return LLMS_OK;
}

/* The context's backend, unless it is a GPU that AUTO chose and the
 * model has something its shaders do not cover (a weight type, a head
 * size): then this model runs on the CPU, and the host is told in the log
 * and by llms_model_backend. An explicit LLMS_BACKEND_VULKAN request gets
 * the error instead. */
static llms_status choose_backend(llms_model *m) {
    m->backend = m->ctx->backend;
    if (m->backend != LLMS_BACKEND_VULKAN) return LLMS_OK;
    llms_status st = vk_model_check(m);
    if (st == LLMS_OK || m->ctx->params.backend == LLMS_BACKEND_VULKAN) return st;
    ctx_log(m->ctx, LLMS_LOG_WARN, "model '%s' runs on the CPU backend: %s", m->name, llms_errmsg());
    err_clear();
    m->backend = LLMS_BACKEND_CPU;
    return LLMS_OK;
}

LLMS_API int32_t llms_model_backend(const llms_model *m) { return m ? m->backend : 0; }

/* Per-model state the forward pass needs: RoPE angles and the KV pool. */
static llms_status prepare_runtime(llms_model *m) {
    const hparams *hp = &m->hp;
    uint32_t half = hp->n_rot / 2;
    m->rope_inv_freq = xcalloc(m->alloc, half ? half : 1, sizeof(float));
    if (!m->rope_inv_freq) return ERR_OOM();
    for (uint32_t i = 0; i < half; i++) {
        double f = hp->rope_freq_scale * pow(hp->rope_freq_base, -2.0 * i / hp->n_rot);
        if (m->rope_freqs.data) {
            if (!(m->rope_freqs.data[i] > 0))
                return err_set(LLMS_ERR_MODEL_TENSOR, "rope_freqs.weight has a non-positive factor");
            f /= m->rope_freqs.data[i];
        }
        m->rope_inv_freq[i] = (float)f;
    }
    llms_status st = kv_pool_init(&m->kv, m->alloc, hp->n_layer, hp->n_head_kv, hp->head_dim, 0);
    if (st) return st;
    m->kv_ready = 1;
    /* On a Vulkan context only the device passes touch KV contents: the
     * blocks live in device memory, with no host copy. */
    if (m->backend == LLMS_BACKEND_VULKAN && (st = vk_kv_attach(m))) return st;
    return LLMS_OK;
}

static void free_fvec(llms_model *m, fvec *v) { xfree_aligned(m->alloc, v->data); }

LLMS_API void llms_model_destroy(llms_model *m) {
    if (!m) return;
    cpu_free_packed(m);   /* before the layer table it walks */
    if (m->layers) {
        for (uint32_t i = 0; i < m->hp.n_layer; i++) {
            layer_weights *L = &m->layers[i];
            free_fvec(m, &L->attn_norm);
            free_fvec(m, &L->ffn_norm);
            free_fvec(m, &L->bq);
            free_fvec(m, &L->bk);
            free_fvec(m, &L->bv);
        }
        xfree(m->alloc, m->layers);
    }
    vk_model_free(m);
    vk_kv_free(m);
    if (m->kv_ready) kv_pool_destroy(&m->kv);
    xfree(m->alloc, m->rope_inv_freq);
    free_fvec(m, &m->output_norm);
    free_fvec(m, &m->rope_freqs);
    tok_free(m->tok);
    gguf_close(m->file);
    xfree(m->alloc, m);
}

static llms_status finish_load(llms_context *ctx, gguf_file *file, const llms_model_params *params,
                               llms_model **out) {
    llms_model_params p;
    llms_model_params_init(&p);
    params_merge(&p, sizeof p, params);
    llms_model *m = xcalloc(&ctx->alloc, 1, sizeof *m);
    if (!m) { gguf_close(file); return ERR_OOM(); }
    m->ctx = ctx;
    m->alloc = &ctx->alloc;
    m->file = file;
    m->flags = p.flags;

    for (uint64_t i = 0; i < gguf_tensor_count(file); i++) {
        const gguf_tensor *t = gguf_tensor_at(file, i);
        m->n_params += t->n_elems;
        m->n_bytes += t->n_bytes;
    }
    const gguf_string *s = NULL;
    llms_status st = gguf_get_str(file, "general.architecture", &s);
    if (st == LLMS_ERR_NOT_FOUND)
        st = err_set(LLMS_ERR_MODEL_METADATA, "required metadata key 'general.architecture' is missing");
    if (st) goto fail;
    m->arch_name = s->s;
    m->name = "";
    if (gguf_get_str(file, "general.name", &s) == LLMS_OK) m->name = s->s;
    if (gguf_get_str(file, "tokenizer.chat_template", &s) == LLMS_OK) m->chat_template = s->s;
    err_clear();

    if ((st = tok_load(m->alloc, file, &m->tok))) goto fail;
    m->hp.n_vocab = (uint32_t)tok_n_vocab(m->tok);
    if (!(p.flags & LLMS_MODEL_VOCAB_ONLY)) {
        if ((st = load_hparams(m))) goto fail;
        if ((st = load_weights(m))) goto fail;
        if ((st = choose_backend(m))) goto fail;
        if ((st = prepare_runtime(m))) goto fail;
        /* Only the CPU backend reads the packed copies. */
        if (m->backend == LLMS_BACKEND_CPU && (st = cpu_pack_weights(m))) goto fail;
    }
    *out = m;
    ctx_log(ctx, LLMS_LOG_INFO, "loaded model '%s' (%s, %u layers, %llu params)", m->name,
            m->arch_name, m->hp.n_layer, (unsigned long long)m->n_params);
    return LLMS_OK;
fail:
    llms_model_destroy(m);
    return st;
}

LLMS_API llms_status llms_model_load(llms_context *ctx, const char *path,
                                     const llms_model_params *params, llms_model **out) {
    if (!out) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_model_load: out is NULL");
    *out = NULL;
    if (!ctx || !path) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_model_load: ctx or path is NULL");
    llms_model_params p;
    llms_model_params_init(&p);
    if (!params_merge(&p, sizeof p, params))
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_model_params: struct_size too small");
    gguf_file *f = NULL;
    llms_status st = gguf_open_file(&ctx->alloc, path, (p.flags & LLMS_MODEL_NO_MMAP) ? GGUF_OPEN_NO_MMAP : 0, &f);
    if (st) return st;
    return finish_load(ctx, f, &p, out);
}

LLMS_API llms_status llms_model_load_from_memory(llms_context *ctx, const void *data, size_t size,
                                                 const llms_model_params *params, llms_model **out) {
    if (!out) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_model_load_from_memory: out is NULL");
    *out = NULL;
    if (!ctx || !data) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_model_load_from_memory: NULL argument");
    llms_model_params p;
    llms_model_params_init(&p);
    if (!params_merge(&p, sizeof p, params))
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_model_params: struct_size too small");
    gguf_file *f = NULL;
    llms_status st = gguf_open_memory(&ctx->alloc, data, size, &f);
    if (st) return st;
    return finish_load(ctx, f, &p, out);
}
