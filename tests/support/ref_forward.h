/*
 * A deliberately naive reference forward pass for the llama family (llama,
 * qwen2), written for tests and sharing no code with src/: plain loops,
 * float32 weights and activations (dot products accumulated in double), the
 * whole causal score matrix materialised and softmaxed row by row. It
 * recomputes the full sequence on every call, so it is only for small
 * models and short sequences.
 *
 * Weights are row-major [rows][cols] (GGUF ne[0] = cols): y[r] = sum_c W[r][c] x[c].
 */
#ifndef LLMS_TEST_REF_FORWARD_H
#define LLMS_TEST_REF_FORWARD_H

#include <stdint.h>

typedef struct ref_layer {
    const float *attn_norm, *ffn_norm;   /* [n_embd] */
    const float *wq;                     /* [n_head * head_dim][n_embd] */
    const float *wk, *wv;                /* [n_head_kv * head_dim][n_embd] */
    const float *bq, *bk, *bv;           /* biases or NULL */
    const float *wo;                     /* [n_embd][n_head * head_dim] */
    const float *w_gate, *w_up;          /* [n_ff][n_embd] */
    const float *w_down;                 /* [n_embd][n_ff] */
} ref_layer;

typedef struct ref_model {
    int n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_rot, n_ff;
    int neox;              /* 0: rotate pairs (2i, 2i+1); 1: pairs (i, i + n_rot/2) */
    double rms_eps;
    double freq_base;      /* theta_i = pos * freq_scale * base^(-2i/n_rot) / rope_freqs[i] */
    double freq_scale;     /* 1 / linear scaling factor */
    const float *rope_freqs;  /* [n_rot/2] or NULL */
    const float *tok_embd;    /* [n_vocab][n_embd] */
    const float *output;      /* [n_vocab][n_embd]; the same pointer when tied */
    const float *output_norm; /* [n_embd] */
    const ref_layer *layers;  /* [n_layer] */
    /* 1: each K (after RoPE) and V element rounded to IEEE binary16 before
     * attention, the precision the runtime's CPU KV cache stores. */
    int kv_f16;
    /* For sensitivity checks only: map query head h to KV head h % n_head_kv
     * instead of the correct h / (n_head / n_head_kv). */
    int wrong_gqa_map;
} ref_model;

/* logits[t * n_vocab + v] for every position t of tokens[0..n) (positions
 * 0..n-1). Returns 0, or -1 if memory ran out. */
int ref_forward(const ref_model *m, const int32_t *tokens, int n, float *logits);

/* IEEE binary16, round to nearest even (written here, not taken from src/). */
uint16_t ref_f32_to_f16(float f);
float ref_f16_to_f32(uint16_t h);

#endif
