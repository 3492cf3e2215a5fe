/*
 * The llama-family graph (see src/backend/cpu/forward.c) on a Vulkan
 * device: one command buffer per forward pass, every matrix product and
 * element-wise step on the device, and only the logits (and the pass's new
 * K/V rows, see below) read back.
 *
 * Weights are uploaded once per model, on its first pass, to device-local
 * buffers (through staging where the memory is not host-visible).
 *
 * KV cache: the paged cache's blocks stay owned by the host pool
 * (src/kvcache), whose refcounts, copy-on-write and prefix sharing every
 * other part of the library relies on. Each pass therefore stages the
 * blocks its sequences read into a device block pool, and writes the K/V
 * rows it computes back into the host blocks. Keeping the blocks resident
 * on the device needs the pool to track device copies; until then this
 * costs one upload of the context per pass (a memcpy where device memory is
 * host-visible, as on lavapipe and integrated GPUs).
 *
 * The device and its scratch buffers are shared by all sessions of the
 * context: passes are serialised by the device lock.
 */
#include <math.h>
#include <string.h>

#include "ops.h"
#include "vk_ctx.h"
#include "../backend.h"
#include "../cpu/cpu.h"
#include "../../core/error.h"

typedef struct vk_layer {
    vk_mat wq, wk, wv, wo, wg, wu, wd;
    vk_buf *attn_norm, *ffn_norm, *bq, *bk, *bv;   /* bias NULL if absent */
} vk_layer;

enum { S_X, S_H, S_Q, S_K, S_V, S_ATT, S_GATE, S_UP, S_CS, S_TI, S_XO, S_LOGITS, S_KVNEW, S_KV, S_BT, S_COUNT };

typedef struct vk_model {
    vk_dev *d;
    vk_buf *bufs;          /* weights and norms, freed together */
    uint32_t n_bufs, cap_bufs;
    vk_layer *layers;
    vk_mat output;
    vk_buf *out_norm;
    vk_buf s[S_COUNT];     /* scratch, grown on demand */
    uint64_t s_size[S_COUNT];
} vk_model;

static vk_buf *next_buf(vk_model *vm) { return vm->n_bufs < vm->cap_bufs ? &vm->bufs[vm->n_bufs++] : NULL; }

static llms_status upload(vk_model *vm, const void *data, uint64_t bytes, vk_buf **out) {
    vk_buf *b = next_buf(vm);
    if (!b) return err_set(LLMS_ERR_INTERNAL, "vk model: buffer table full");
    llms_status st = vk_buf_create(vm->d, bytes, 0, b);
    if (st != LLMS_OK) {
        vm->n_bufs--;
        return st;
    }
    *out = b;
    return vk_buf_write(vm->d, b, 0, data, bytes);
}

static llms_status upload_weight(vk_model *vm, const weight *w, vk_mat *out) {
    if (!vk_weight_type_ok(w->type))
        return err_set(LLMS_ERR_UNSUPPORTED, "Vulkan backend: tensor %s has a type (%u) without a shader",
                       w->name ? w->name : "?", w->type);
    uint64_t bytes = (uint64_t)w->rows * w->row_bytes;
    if (bytes > UINT32_MAX || w->rows > UINT32_MAX || w->cols > UINT32_MAX)
        return err_set(LLMS_ERR_UNSUPPORTED, "Vulkan backend: tensor %s over 4 GiB", w->name ? w->name : "?");
    vk_buf *b = NULL;
    llms_status st = upload(vm, w->data, bytes, &b);
    if (st != LLMS_OK) return st;
    *out = (vk_mat){b, 0, w->type, (uint32_t)w->rows, (uint32_t)w->cols, (uint32_t)w->row_bytes};
    return LLMS_OK;
}

static llms_status upload_vec(vk_model *vm, const fvec *v, vk_buf **out) {
    *out = NULL;
    if (!v->data) return LLMS_OK;
    return upload(vm, v->data, (uint64_t)v->n * sizeof(float), out);
}

void vk_model_free(llms_model *m) {
    vk_model *vm = m->vk;
    if (!vm) return;
    for (uint32_t i = 0; i < vm->n_bufs; i++) vk_buf_destroy(vm->d, &vm->bufs[i]);
    for (int i = 0; i < S_COUNT; i++) vk_buf_destroy(vm->d, &vm->s[i]);
    xfree(m->alloc, vm->bufs);
    xfree(m->alloc, vm->layers);
    xfree(m->alloc, vm);
    m->vk = NULL;
}

static llms_status model_upload(llms_model *m, vk_dev *d) {
    const hparams *hp = &m->hp;
    if (hp->head_dim > 256)
        return err_set(LLMS_ERR_UNSUPPORTED, "Vulkan backend: head_dim %u over 256", hp->head_dim);
    vk_model *vm = xcalloc(m->alloc, 1, sizeof *vm);
    if (!vm) return ERR_OOM();
    m->vk = vm;
    vm->d = d;
    vm->cap_bufs = hp->n_layer * 12 + 4;
    vm->bufs = xcalloc(m->alloc, vm->cap_bufs, sizeof *vm->bufs);
    vm->layers = xcalloc(m->alloc, hp->n_layer ? hp->n_layer : 1, sizeof *vm->layers);
    llms_status st = LLMS_OK;
    if (!vm->bufs || !vm->layers) {
        st = ERR_OOM();
        goto fail;
    }
    for (uint32_t l = 0; l < hp->n_layer && st == LLMS_OK; l++) {
        const layer_weights *L = &m->layers[l];
        vk_layer *V = &vm->layers[l];
        if ((st = upload_weight(vm, &L->wq, &V->wq)) || (st = upload_weight(vm, &L->wk, &V->wk)) ||
            (st = upload_weight(vm, &L->wv, &V->wv)) || (st = upload_weight(vm, &L->wo, &V->wo)) ||
            (st = upload_weight(vm, &L->w_gate, &V->wg)) || (st = upload_weight(vm, &L->w_up, &V->wu)) ||
            (st = upload_weight(vm, &L->w_down, &V->wd)) || (st = upload_vec(vm, &L->attn_norm, &V->attn_norm)) ||
            (st = upload_vec(vm, &L->ffn_norm, &V->ffn_norm)) || (st = upload_vec(vm, &L->bq, &V->bq)) ||
            (st = upload_vec(vm, &L->bk, &V->bk)) || (st = upload_vec(vm, &L->bv, &V->bv)))
            break;
    }
    if (st == LLMS_OK && (st = upload_weight(vm, &m->output, &vm->output)) == LLMS_OK)
        st = upload_vec(vm, &m->output_norm, &vm->out_norm);
    if (st == LLMS_OK) return LLMS_OK;
fail:
    vk_model_free(m);
    return st;
}

/* Grows scratch buffer i to at least `bytes`. */
static llms_status scratch(vk_model *vm, int i, uint64_t bytes, int host_visible) {
    if (vm->s_size[i] >= bytes && vm->s[i].buf) return LLMS_OK;
    vk_buf_destroy(vm->d, &vm->s[i]);
    vm->s_size[i] = 0;
    llms_status st = vk_buf_create(vm->d, bytes, host_visible, &vm->s[i]);
    if (st == LLMS_OK) vm->s_size[i] = bytes;
    return st;
}

/* Decode-sized batches (and the deterministic mode, whose per-token
 * results must not depend on the batch) take the matrix-vector kernel;
 * larger batches the tiled one. */
static llms_status mm(vk_dev *d, const vk_mat *w, const vk_buf *x, uint32_t n, const vk_buf *y, int det) {
    if (det || n <= 2) return vk_op_matvec(d, w, x, w->cols, n, y, w->rows);
    return vk_op_matmul(d, w, x, w->cols, n, y, w->rows);
}

static llms_status record_pass(llms_model *m, vk_model *vm, const fwd_batch *b, uint32_t block_floats,
                               uint32_t n_out, const VkBufferCopy *out_rows) {
    vk_dev *d = vm->d;
    const hparams *hp = &m->hp;
    const uint32_t n = b->n_tokens, E = hp->n_embd, F = hp->n_ff;
    const uint32_t Q = hp->n_head * hp->head_dim, KV = hp->n_head_kv * hp->head_dim;
    const int det = (b->flags & FWD_DETERMINISTIC) != 0, neox = hp->rope_type == ROPE_NEOX;
    vk_buf *s = vm->s;
    llms_status st;
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        const vk_layer *L = &vm->layers[l];
        if ((st = vk_op_rmsnorm(d, &s[S_X], L->attn_norm, &s[S_H], E, E, n, hp->rms_eps)) ||
            (st = mm(d, &L->wq, &s[S_H], n, &s[S_Q], det)) || (st = mm(d, &L->wk, &s[S_H], n, &s[S_K], det)) ||
            (st = mm(d, &L->wv, &s[S_H], n, &s[S_V], det)))
            return st;
        if ((L->bq && (st = vk_op_add_bias(d, &s[S_Q], L->bq, Q, n))) ||
            (L->bk && (st = vk_op_add_bias(d, &s[S_K], L->bk, KV, n))) ||
            (L->bv && (st = vk_op_add_bias(d, &s[S_V], L->bv, KV, n))))
            return st;
        if (hp->n_rot &&
            ((st = vk_op_rope(d, &s[S_Q], &s[S_CS], n, hp->n_head, hp->head_dim, hp->n_rot, neox, Q)) ||
             (st = vk_op_rope(d, &s[S_K], &s[S_CS], n, hp->n_head_kv, hp->head_dim, hp->n_rot, neox, KV))))
            return st;
        if ((st = vk_op_kv_store(d, &s[S_K], &s[S_V], &s[S_KV], &s[S_BT], &s[S_TI], n, KV, l, block_floats)))
            return st;
        /* Keep this layer's new rows for the write-back to the host cache. */
        uint64_t rb = (uint64_t)n * KV * sizeof(float);
        VkBufferCopy ck = {0, (uint64_t)(2 * l) * rb, rb}, cv = {0, (uint64_t)(2 * l + 1) * rb, rb};
        if ((st = vk_op_copy(d, &s[S_K], &s[S_KVNEW], &ck, 1)) || (st = vk_op_copy(d, &s[S_V], &s[S_KVNEW], &cv, 1)))
            return st;
        vk_attn_args aa = {n, hp->n_head, hp->n_head_kv, hp->head_dim, l, KV, block_floats,
                           1.0f / sqrtf((float)hp->head_dim)};
        if ((st = vk_op_attention(d, &s[S_Q], &s[S_KV], &s[S_BT], &s[S_TI], &s[S_ATT], &aa)) ||
            (st = mm(d, &L->wo, &s[S_ATT], n, &s[S_H], det)) || (st = vk_op_add(d, &s[S_X], &s[S_H], n * E)) ||
            (st = vk_op_rmsnorm(d, &s[S_X], L->ffn_norm, &s[S_H], E, E, n, hp->rms_eps)) ||
            (st = mm(d, &L->wg, &s[S_H], n, &s[S_GATE], det)) || (st = mm(d, &L->wu, &s[S_H], n, &s[S_UP], det)) ||
            (st = vk_op_swiglu(d, &s[S_GATE], &s[S_UP], &s[S_GATE], n * F)) ||
            (st = mm(d, &L->wd, &s[S_GATE], n, &s[S_H], det)) || (st = vk_op_add(d, &s[S_X], &s[S_H], n * E)))
            return st;
    }
    if (n_out == 0) return LLMS_OK;
    if ((st = vk_op_copy(d, &s[S_X], &s[S_XO], out_rows, n_out)) ||
        (st = vk_op_rmsnorm(d, &s[S_XO], vm->out_norm, &s[S_H], E, E, n_out, hp->rms_eps)))
        return st;
    return mm(d, &vm->output, &s[S_H], n_out, &s[S_LOGITS], det);
}

llms_status vk_forward(llms_model *m, const struct fwd_batch *b, float *logits) {
    const hparams *hp = &m->hp;
    const lalloc *a = m->alloc;
    vk_dev *d = m->ctx->vk;
    const uint32_t n = b->n_tokens, E = hp->n_embd, F = hp->n_ff, V = hp->n_vocab;
    const uint32_t Q = hp->n_head * hp->head_dim, KV = hp->n_head_kv * hp->head_dim;
    const uint32_t half = hp->n_rot / 2, T = KV_BLOCK_TOKENS;
    const uint32_t block_floats = (uint32_t)m->kv.block_floats;
    if (n == 0) return LLMS_OK;
    if (!d) return err_set(LLMS_ERR_STATE, "Vulkan forward without a device");

    pthread_mutex_lock(&d->lock);
    llms_status st = LLMS_OK;
    float *xh = NULL, *cs = NULL, *kvnew = NULL;
    uint32_t *ti = NULL, *bt = NULL, *seq_off = NULL, *seq_len = NULL;
    VkBufferCopy *out_rows = NULL;
    if (!m->vk && (st = model_upload(m, d)) != LLMS_OK) goto done;
    vk_model *vm = m->vk;

    /* Blocks each sequence reads: up to its largest position in the batch. */
    seq_off = xcalloc(a, b->n_seqs + 1, sizeof *seq_off);
    seq_len = xcalloc(a, b->n_seqs + 1, sizeof *seq_len);
    xh = xmalloc(a, (size_t)n * E * sizeof *xh);
    cs = xcalloc(a, (size_t)n * (half ? half : 1) * 2, sizeof *cs);
    ti = xmalloc(a, (size_t)n * 2 * sizeof *ti);
    out_rows = xcalloc(a, n, sizeof *out_rows);
    kvnew = xmalloc(a, (size_t)hp->n_layer * 2 * n * KV * sizeof *kvnew);
    if (!seq_off || !seq_len || !xh || !cs || !ti || !out_rows || !kvnew) {
        st = ERR_OOM();
        goto done;
    }
    for (uint32_t t = 0; t < n; t++) {
        uint32_t need = b->pos[t] / T + 1;
        if (need > seq_len[b->seq[t]]) seq_len[b->seq[t]] = need;
    }
    uint32_t n_blocks = 0;
    for (uint32_t i = 0; i < b->n_seqs; i++) {
        seq_off[i] = n_blocks;
        n_blocks += seq_len[i];
    }
    bt = xmalloc(a, (size_t)(n_blocks ? n_blocks : 1) * sizeof *bt);
    if (!bt) {
        st = ERR_OOM();
        goto done;
    }
    for (uint32_t i = 0; i < n_blocks; i++) bt[i] = i;
    uint32_t n_out = 0;
    for (uint32_t t = 0; t < n; t++) {
        cpu_weight_row(&m->tok_embd, b->tokens[t], xh + (size_t)t * E);
        for (uint32_t i = 0; i < half; i++) {
            /* Angles in double, as on the CPU: positions reach 10^5. */
            double ang = (double)b->pos[t] * m->rope_inv_freq[i];
            cs[((size_t)t * half + i) * 2] = (float)cos(ang);
            cs[((size_t)t * half + i) * 2 + 1] = (float)sin(ang);
        }
        ti[2 * t] = b->pos[t];
        ti[2 * t + 1] = seq_off[b->seq[t]];
        if (b->want_logits[t]) {
            uint64_t rb = (uint64_t)E * sizeof(float);
            out_rows[n_out] = (VkBufferCopy){t * rb, n_out * rb, rb};
            n_out++;
        }
    }
    const uint64_t f4 = sizeof(float);
    if ((st = scratch(vm, S_X, (uint64_t)n * E * f4, 0)) || (st = scratch(vm, S_H, (uint64_t)n * E * f4, 0)) ||
        (st = scratch(vm, S_Q, (uint64_t)n * Q * f4, 0)) || (st = scratch(vm, S_K, (uint64_t)n * KV * f4, 0)) ||
        (st = scratch(vm, S_V, (uint64_t)n * KV * f4, 0)) || (st = scratch(vm, S_ATT, (uint64_t)n * Q * f4, 0)) ||
        (st = scratch(vm, S_GATE, (uint64_t)n * F * f4, 0)) || (st = scratch(vm, S_UP, (uint64_t)n * F * f4, 0)) ||
        (st = scratch(vm, S_CS, (uint64_t)n * (half ? half : 1) * 2 * f4, 0)) ||
        (st = scratch(vm, S_TI, (uint64_t)n * 2 * 4, 0)) || (st = scratch(vm, S_XO, (uint64_t)n * E * f4, 0)) ||
        (st = scratch(vm, S_LOGITS, (uint64_t)n * V * f4, 0)) ||
        (st = scratch(vm, S_KVNEW, (uint64_t)hp->n_layer * 2 * n * KV * f4, 0)) ||
        (st = scratch(vm, S_KV, (uint64_t)(n_blocks ? n_blocks : 1) * block_floats * f4, 0)) ||
        (st = scratch(vm, S_BT, (uint64_t)(n_blocks ? n_blocks : 1) * 4, 0)))
        goto done;
    if ((st = vk_buf_write(d, &vm->s[S_X], 0, xh, (uint64_t)n * E * f4)) ||
        (st = vk_buf_write(d, &vm->s[S_CS], 0, cs, (uint64_t)n * (half ? half : 1) * 2 * f4)) ||
        (st = vk_buf_write(d, &vm->s[S_TI], 0, ti, (uint64_t)n * 2 * 4)) ||
        (st = vk_buf_write(d, &vm->s[S_BT], 0, bt, (uint64_t)(n_blocks ? n_blocks : 1) * 4)))
        goto done;
    for (uint32_t i = 0; i < b->n_seqs && st == LLMS_OK; i++)
        for (uint32_t j = 0; j < seq_len[i] && st == LLMS_OK; j++)
            st = vk_buf_write(d, &vm->s[S_KV], (uint64_t)(seq_off[i] + j) * block_floats * f4,
                              b->seqs[i]->blocks[j]->data, (uint64_t)block_floats * f4);
    if (st != LLMS_OK) goto done;

    if ((st = vk_begin(d)) != LLMS_OK) goto done;
    st = record_pass(m, vm, b, block_floats, n_out, out_rows);
    llms_status st2 = vk_submit(d);   /* ends the recording even after a failure */
    if (st == LLMS_OK) st = st2;
    if (st != LLMS_OK) goto done;

    if (n_out && (st = vk_buf_read(d, &vm->s[S_LOGITS], 0, logits, (uint64_t)n_out * V * f4))) goto done;
    if ((st = vk_buf_read(d, &vm->s[S_KVNEW], 0, kvnew, (uint64_t)hp->n_layer * 2 * n * KV * f4))) goto done;
    for (uint32_t l = 0; l < hp->n_layer; l++)
        for (uint32_t t = 0; t < n; t++) {
            const kv_seq *sq = b->seqs[b->seq[t]];
            memcpy(kv_k(&m->kv, sq, l, b->pos[t]), kvnew + ((size_t)(2 * l) * n + t) * KV, KV * f4);
            memcpy(kv_v(&m->kv, sq, l, b->pos[t]), kvnew + ((size_t)(2 * l + 1) * n + t) * KV, KV * f4);
        }
done:
    xfree(a, seq_off);
    xfree(a, seq_len);
    xfree(a, xh);
    xfree(a, cs);
    xfree(a, ti);
    xfree(a, bt);
    xfree(a, out_rows);
    xfree(a, kvnew);
    pthread_mutex_unlock(&d->lock);
    return st;
}
