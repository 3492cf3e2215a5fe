/*
 * A loaded model: the GGUF file, its tokenizer, hyperparameters and views
 * of the weight tensors, organised for the llama-family graph. Immutable
 * after load, so any number of sessions and threads may share it.
 */
#ifndef LLMS_MODEL_H
#define LLMS_MODEL_H

#include "llmserve.h"
#include "../core/context.h"
#include "../gguf/gguf.h"
#include "../tokenizer/tokenizer.h"
#include "../kvcache/kv.h"

/* A 2-D weight view: rows of `cols` elements of `type`, row-major. */
typedef struct weight {
    uint32_t type;
    int64_t cols;        /* ne[0]: input features */
    int64_t rows;        /* ne[1]: output features */
    uint64_t row_bytes;
    const uint8_t *data;
    const char *name;
    /* The CPU backend's repacked copy (quant/q4pack.h) or NULL; owned by
     * the model, see cpu_pack_weights. */
    uint8_t *packed;
} weight;

/* A 1-D float vector (norm weights, biases), converted to f32 at load. */
typedef struct fvec {
    int64_t n;
    float *data;         /* NULL if absent */
} fvec;

typedef struct layer_weights {
    fvec attn_norm, ffn_norm;
    weight wq, wk, wv, wo;
    fvec bq, bk, bv;     /* qwen2 */
    weight w_gate, w_up, w_down;
} layer_weights;

enum { ARCH_LLAMA = 1, ARCH_QWEN2 = 2 };
enum { ROPE_NORM = 0, ROPE_NEOX = 1 };

typedef struct hparams {
    int arch;
    uint32_t n_vocab, n_ctx_train, n_embd, n_layer, n_head, n_head_kv, n_ff;
    uint32_t head_dim;       /* per-head width of Q/K/V */
    uint32_t n_rot;          /* rotated dimensions per head */
    int rope_type;           /* ROPE_NORM (interleaved pairs) or ROPE_NEOX (halves) */
    float rope_freq_base;
    float rope_freq_scale;   /* 1 / linear scaling factor */
    float rms_eps;
} hparams;

struct llms_model {
    llms_context *ctx;
    const lalloc *alloc;
    gguf_file *file;
    tokenizer *tok;
    hparams hp;
    uint32_t flags;
    const char *arch_name;
    const char *name;
    const char *chat_template;
    uint64_t n_params, n_bytes;
    /* weights (absent with LLMS_MODEL_VOCAB_ONLY) */
    weight tok_embd;
    weight output;           /* == tok_embd when the output is tied */
    fvec output_norm;
    fvec rope_freqs;         /* Llama 3 style per-dimension frequency factors */
    layer_weights *layers;
    float *rope_inv_freq;    /* [n_rot/2] angle per position, scaling applied */
    int32_t backend;         /* LLMS_BACKEND_CPU or _VULKAN: where this model's passes run */
    kv_pool kv;              /* KV blocks of this model's sessions */
    int kv_ready;
    struct vk_model *vk;     /* device copies of the weights (Vulkan backend), or NULL */
    struct vk_kv *vk_kv;     /* device storage of the KV blocks (Vulkan backend), or NULL */
    void *cpu_packed;        /* one block holding every repacked matrix (CPU backend, pack.c), or NULL */
};

#endif
