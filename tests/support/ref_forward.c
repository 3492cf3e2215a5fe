#include "ref_forward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* y[r] = W[r] . x (+ b[r]) */
static void matvec(const float *W, const float *b, const float *x, int rows, int cols, float *y) {
    for (int r = 0; r < rows; r++) {
        double acc = 0;
        for (int c = 0; c < cols; c++) acc += (double)W[(size_t)r * cols + c] * x[c];
        if (b) acc += b[r];
        y[r] = (float)acc;
    }
}

static void rmsnorm(const float *x, const float *g, int n, double eps, float *out) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    double scale = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) out[i] = (float)(x[i] * scale * g[i]);
}

/* Rotates the first n_rot dimensions of one head vector at position pos. */
static void rope(const ref_model *m, float *v, int pos) {
    int half = m->n_rot / 2;
    for (int i = 0; i < half; i++) {
        double theta = pos * m->freq_scale * pow(m->freq_base, -2.0 * i / m->n_rot);
        if (m->rope_freqs) theta /= m->rope_freqs[i];
        double c = cos(theta), s = sin(theta);
        int i0 = m->neox ? i : 2 * i;
        int i1 = m->neox ? i + half : 2 * i + 1;
        double a = v[i0], b = v[i1];
        v[i0] = (float)(a * c - b * s);
        v[i1] = (float)(a * s + b * c);
    }
}

int ref_forward(const ref_model *m, const int32_t *tokens, int n, float *logits) {
    const int E = m->n_embd, H = m->n_head, HKV = m->n_head_kv, D = m->head_dim, F = m->n_ff;
    const int Q = H * D, KV = HKV * D, V = m->n_vocab;
    float *x = calloc((size_t)n * E, sizeof *x);
    float *h = calloc((size_t)E, sizeof *h);
    float *q = calloc((size_t)n * Q, sizeof *q);
    float *k = calloc((size_t)n * KV, sizeof *k);
    float *v = calloc((size_t)n * KV, sizeof *v);
    float *att = calloc((size_t)n * Q, sizeof *att);
    float *S = calloc((size_t)n * n, sizeof *S);
    float *gate = calloc((size_t)F, sizeof *gate);
    float *up = calloc((size_t)F, sizeof *up);
    float *tmp = calloc((size_t)E, sizeof *tmp);
    int rc = -1;
    if (!x || !h || !q || !k || !v || !att || !S || !gate || !up || !tmp) goto out;

    for (int t = 0; t < n; t++) memcpy(x + (size_t)t * E, m->tok_embd + (size_t)tokens[t] * E, E * sizeof *x);

    for (int l = 0; l < m->n_layer; l++) {
        const ref_layer *L = &m->layers[l];
        /* Projections and RoPE for every position. */
        for (int t = 0; t < n; t++) {
            rmsnorm(x + (size_t)t * E, L->attn_norm, E, m->rms_eps, h);
            matvec(L->wq, L->bq, h, Q, E, q + (size_t)t * Q);
            matvec(L->wk, L->bk, h, KV, E, k + (size_t)t * KV);
            matvec(L->wv, L->bv, h, KV, E, v + (size_t)t * KV);
            for (int hh = 0; hh < H; hh++) rope(m, q + (size_t)t * Q + hh * D, t);
            for (int hh = 0; hh < HKV; hh++) rope(m, k + (size_t)t * KV + hh * D, t);
            if (m->kv_f16)
                for (int c = 0; c < KV; c++) {
                    k[(size_t)t * KV + c] = ref_f16_to_f32(ref_f32_to_f16(k[(size_t)t * KV + c]));
                    v[(size_t)t * KV + c] = ref_f16_to_f32(ref_f32_to_f16(v[(size_t)t * KV + c]));
                }
        }
        /* Attention, one head at a time, with the whole score matrix. */
        for (int hh = 0; hh < H; hh++) {
            int kvh = m->wrong_gqa_map ? hh % HKV : hh / (H / HKV);
            for (int i = 0; i < n; i++) {
                for (int j = 0; j < n; j++) {
                    if (j > i) { S[(size_t)i * n + j] = -INFINITY; continue; }
                    double d = 0;
                    for (int c = 0; c < D; c++)
                        d += (double)q[(size_t)i * Q + hh * D + c] * k[(size_t)j * KV + kvh * D + c];
                    S[(size_t)i * n + j] = (float)(d / sqrt((double)D));
                }
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < n; j++) if (S[(size_t)i * n + j] > mx) mx = S[(size_t)i * n + j];
                for (int j = 0; j < n; j++) {
                    double e = j > i ? 0.0 : exp(S[(size_t)i * n + j] - mx);
                    S[(size_t)i * n + j] = (float)e;
                    sum += e;
                }
                for (int j = 0; j < n; j++) S[(size_t)i * n + j] = (float)(S[(size_t)i * n + j] / sum);
            }
            for (int i = 0; i < n; i++)
                for (int c = 0; c < D; c++) {
                    double acc = 0;
                    for (int j = 0; j < n; j++)
                        acc += (double)S[(size_t)i * n + j] * v[(size_t)j * KV + kvh * D + c];
                    att[(size_t)i * Q + hh * D + c] = (float)acc;
                }
        }
        for (int t = 0; t < n; t++) {
            float *xt = x + (size_t)t * E;
            matvec(L->wo, NULL, att + (size_t)t * Q, E, Q, tmp);
            for (int i = 0; i < E; i++) xt[i] += tmp[i];
            rmsnorm(xt, L->ffn_norm, E, m->rms_eps, h);
            matvec(L->w_gate, NULL, h, F, E, gate);
            matvec(L->w_up, NULL, h, F, E, up);
            for (int i = 0; i < F; i++) {
                double g = gate[i];
                gate[i] = (float)(g / (1.0 + exp(-g)) * up[i]);
            }
            matvec(L->w_down, NULL, gate, E, F, tmp);
            for (int i = 0; i < E; i++) xt[i] += tmp[i];
        }
    }
    for (int t = 0; t < n; t++) {
        rmsnorm(x + (size_t)t * E, m->output_norm, E, m->rms_eps, h);
        matvec(m->output, NULL, h, V, E, logits + (size_t)t * V);
    }
    rc = 0;
out:
    free(x); free(h); free(q); free(k); free(v); free(att); free(S); free(gate); free(up); free(tmp);
    return rc;
}

uint16_t ref_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t a = x & 0x7fffffffu;
    if (a >= 0x7f800000u) return sign | (a > 0x7f800000u ? 0x7e00 : 0x7c00);  /* NaN, Inf */
    if (a >= 0x477ff000u) return sign | 0x7c00;        /* rounds to >= 65520: Inf */
    if (a < 0x38800000u) {                            /* below 2^-14: subnormal (or 0) */
        float af;
        memcpy(&af, &a, 4);
        return sign | (uint16_t)lrintf(af * 16777216.0f);  /* units of 2^-24, ties to even */
    }
    uint32_t mant = a & 0x7fffffu;
    uint32_t h = ((a >> 23) - 127 + 15) << 10 | mant >> 13;
    uint32_t rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++;  /* a carry moves into the exponent */
    return sign | (uint16_t)h;
}

float ref_f16_to_f32(uint16_t h) {
    int e = (h >> 10) & 0x1f, mant = h & 0x3ff;
    float v;
    if (e == 0) v = ldexpf((float)mant, -24);
    else if (e == 31) v = mant ? NAN : INFINITY;
    else v = ldexpf((float)(mant | 0x400), e - 25);
    return (h & 0x8000) ? -v : v;
}
