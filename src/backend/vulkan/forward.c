/*
 * The llama-family graph (see src/backend/cpu/forward.c) on a Vulkan
 * device: one command buffer per forward pass, every matrix product and
 * element-wise step on the device, and only the logits read back.
 *
 * Weights are uploaded once per model, on its first pass, to device-local
 * buffers (through staging where the memory is not host-visible).
 *
 * KV cache: the paged cache's blocks live in device memory only
 * (kv_resident.h). The host pool (src/kvcache) still owns their refcounts,
 * copy-on-write and prefix sharing, which the sessions, the scheduler and
 * the prefix cache rely on; through its storage hooks a block is a slot
 * index into one device buffer per layer, with no host copy. A pass
 * uploads only its inputs and each sequence's table of slot indices
 * (a few bytes per block), starts its command buffer with the queued slot
 * zeroing and copy-on-write copies, writes its new K/V rows straight into
 * the resident slots (kv_store) where the attention reads them, and reads
 * back the logits alone.
 *
 * The device, its scratch buffers and the KV storage are shared by all
 * sessions of the context: passes are serialised by the device lock.
 */
#include <math.h>
#include <string.h>

#include "kv_resident.h"
#include "ops.h"
#include "vk_ctx.h"
#include "../backend.h"
#include "../cpu/cpu.h"
#include "../../core/error.h"

typedef struct vk_layer {
    vk_mat wq, wk, wv, wo, wg, wu, wd;
    vk_buf *attn_norm, *ffn_norm, *bq, *bk, *bv;   /* bias NULL if absent */
} vk_layer;

enum { S_X, S_H, S_Q, S_K, S_V, S_ATT, S_GATE, S_UP, S_CS, S_TI, S_XO, S_LOGITS, S_BT, S_COUNT };

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

static llms_status check_weight(const weight *w) {
    if (!vk_weight_type_ok(w->type))
        return err_set(LLMS_ERR_UNSUPPORTED, "Vulkan backend: tensor %s has a type (%s) without a shader",
                       w->name ? w->name : "?", llms_type_name((int32_t)w->type));
    uint64_t bytes = (uint64_t)w->rows * w->row_bytes;
    if (bytes > UINT32_MAX || w->rows > UINT32_MAX || w->cols > UINT32_MAX)
        return err_set(LLMS_ERR_UNSUPPORTED, "Vulkan backend: tensor %s over 4 GiB", w->name ? w->name : "?");
    return LLMS_OK;
}

llms_status vk_model_check(const llms_model *m) {
    const hparams *hp = &m->hp;
    if (hp->head_dim > 256)
        return err_set(LLMS_ERR_UNSUPPORTED, "Vulkan backend: head_dim %u over 256", hp->head_dim);
    llms_status st = check_weight(&m->output);
    for (uint32_t l = 0; st == LLMS_OK && l < hp->n_layer; l++) {
        const layer_weights *L = &m->layers[l];
        const weight *ws[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int k = 0; k < 7 && st == LLMS_OK; k++) st = check_weight(ws[k]);
    }
    return st;
}

static llms_status upload_weight(vk_model *vm, const weight *w, vk_mat *out) {
    llms_status st0 = check_weight(w);
    if (st0 != LLMS_OK) return st0;
    uint64_t bytes = (uint64_t)w->rows * w->row_bytes;
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

llms_status vk_model_ensure(llms_model *m) { return m->vk ? LLMS_OK : model_upload(m, m->ctx->vk); }

/* Grows scratch buffer i to at least `bytes`. Small buffers (block
 * tables, token positions) grow to a power of two: the block table grows
 * by 4 bytes whenever a sequence reaches a new block, and every
 * reallocation is one more chance to meet a full device in the middle of
 * serving. Large ones (activations, logits) take their exact size. */
static llms_status scratch(vk_model *vm, int i, uint64_t bytes, int host_visible) {
    if (vm->s_size[i] >= bytes && vm->s[i].buf) return LLMS_OK;
    uint64_t size = bytes;
    if (bytes < ((uint64_t)1 << 20))
        for (size = 256; size < bytes; size *= 2) {}
    /* The new buffer first: if the device is full, the old one stays and
     * smaller passes still run (the scheduler retries with smaller
     * batches). */
    vk_buf nb;
    llms_status st = vk_buf_create(vm->d, size, host_visible, &nb);
    if (st != LLMS_OK) return st;
    vk_buf_destroy(vm->d, &vm->s[i]);
    vm->s[i] = nb;
    vm->s_size[i] = size;
    return LLMS_OK;
}

/* Decode-sized batches (and the deterministic mode, whose per-token
 * results must not depend on the batch) take the matrix-vector kernel;
 * larger batches the tiled one. */
static llms_status mm(vk_dev *d, const vk_mat *w, const vk_buf *x, uint32_t n, const vk_buf *y, int det) {
    if (det || n <= 2) return vk_op_matvec(d, w, x, w->cols, n, y, w->rows);
    return vk_op_matmul(d, w, x, w->cols, n, y, w->rows);
}

static llms_status record_pass(llms_model *m, vk_model *vm, const fwd_batch *b, uint32_t n_out,
                               const VkBufferCopy *out_rows) {
    vk_dev *d = vm->d;
    const hparams *hp = &m->hp;
    const uint32_t n = b->n_tokens, E = hp->n_embd, F = hp->n_ff;
    const uint32_t Q = hp->n_head * hp->head_dim, KV = hp->n_head_kv * hp->head_dim;
    const int det = (b->flags & FWD_DETERMINISTIC) != 0, neox = hp->rope_type == ROPE_NEOX;
    /* Each layer's KV buffer holds slots of that layer alone: the shaders
     * see it as layer 0 of blocks of 2 * 16 * KV floats. */
    const uint32_t slot_floats = 2 * KV_BLOCK_TOKENS * KV;
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
        const vk_buf *kvl = &m->vk_kv->bufs[l];
        if ((st = vk_op_kv_store(d, &s[S_K], &s[S_V], kvl, &s[S_BT], &s[S_TI], n, KV, 0, slot_floats)))
            return st;
        vk_attn_args aa = {n, hp->n_head, hp->n_head_kv, hp->head_dim, 0, KV, slot_floats,
                           1.0f / sqrtf((float)hp->head_dim)};
        if ((st = vk_op_attention(d, &s[S_Q], kvl, &s[S_BT], &s[S_TI], &s[S_ATT], &aa)) ||
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
    if (n == 0) return LLMS_OK;
    if (!d) return err_set(LLMS_ERR_STATE, "Vulkan forward without a device");
    if (!m->vk_kv) return err_set(LLMS_ERR_STATE, "Vulkan forward on a model without device KV storage");

    pthread_mutex_lock(&d->lock);
    llms_status st = LLMS_OK;
    float *xh = NULL, *cs = NULL;
    uint32_t *ti = NULL, *bt = NULL, *seq_off = NULL, *seq_len = NULL;
    VkBufferCopy *out_rows = NULL;
    if ((st = vk_model_ensure(m)) != LLMS_OK) goto done;
    vk_model *vm = m->vk;

    /* Blocks each sequence reads: up to its largest position in the batch. */
    seq_off = xcalloc(a, b->n_seqs + 1, sizeof *seq_off);
    seq_len = xcalloc(a, b->n_seqs + 1, sizeof *seq_len);
    xh = xmalloc(a, (size_t)n * E * sizeof *xh);
    cs = xcalloc(a, (size_t)n * (half ? half : 1) * 2, sizeof *cs);
    ti = xmalloc(a, (size_t)n * 2 * sizeof *ti);
    out_rows = xcalloc(a, n, sizeof *out_rows);
    if (!seq_off || !seq_len || !xh || !cs || !ti || !out_rows) {
        st = ERR_OOM();
        goto done;
    }
    for (uint32_t t = 0; t < n; t++) {
        uint32_t need = b->pos[t] / T + 1;
        if (need > seq_len[b->seq[t]]) seq_len[b->seq[t]] = need;
    }
    uint32_t n_blocks = 0;
    for (uint32_t i = 0; i < b->n_seqs; i++) {
        if (seq_len[i] > b->seqs[i]->n_blocks) {
            st = err_set(LLMS_ERR_INTERNAL, "Vulkan forward: sequence %u not reserved up to its positions", i);
            goto done;
        }
        seq_off[i] = n_blocks;
        n_blocks += seq_len[i];
    }
    /* The sequences' block tables, as slot indices of the resident storage. */
    bt = xmalloc(a, (size_t)(n_blocks ? n_blocks : 1) * sizeof *bt);
    if (!bt) {
        st = ERR_OOM();
        goto done;
    }
    for (uint32_t i = 0; i < b->n_seqs; i++)
        for (uint32_t j = 0; j < seq_len[i]; j++) bt[seq_off[i] + j] = b->seqs[i]->blocks[j]->slot;
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
        (st = scratch(vm, S_BT, (uint64_t)(n_blocks ? n_blocks : 1) * 4, 0)))
        goto done;
    if ((st = vk_buf_write(d, &vm->s[S_X], 0, xh, (uint64_t)n * E * f4)) ||
        (st = vk_buf_write(d, &vm->s[S_CS], 0, cs, (uint64_t)n * (half ? half : 1) * 2 * f4)) ||
        (st = vk_buf_write(d, &vm->s[S_TI], 0, ti, (uint64_t)n * 2 * 4)) ||
        (st = vk_buf_write(d, &vm->s[S_BT], 0, bt, (uint64_t)(n_blocks ? n_blocks : 1) * 4)))
        goto done;

    if ((st = vk_begin(d)) != LLMS_OK) goto done;
    /* New blocks' zeroing and copy-on-write copies, queued by the pool
     * since the last pass, go first in the same command buffer. */
    uint32_t n_kv_ops = 0;
    st = vk_kv_record_ops(m->vk_kv, &n_kv_ops);
    if (st == LLMS_OK) st = record_pass(m, vm, b, n_out, out_rows);
    llms_status st2 = vk_submit(d);   /* ends the recording even after a failure */
    if (st == LLMS_OK) st = st2;
    /* Once submitted the queued operations have run; after a failed
     * submission they stay queued and run (again) with the next pass. */
    if (st2 == LLMS_OK) vk_kv_retire(m->vk_kv, n_kv_ops);
    if (st != LLMS_OK) goto done;

    if (n_out && (st = vk_buf_read(d, &vm->s[S_LOGITS], 0, logits, (uint64_t)n_out * V * f4))) goto done;
done:
    xfree(a, seq_off);
    xfree(a, seq_len);
    xfree(a, xh);
    xfree(a, cs);
    xfree(a, ti);
    xfree(a, bt);
    xfree(a, out_rows);
    pthread_mutex_unlock(&d->lock);
    return st;
}
