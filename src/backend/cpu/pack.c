/*
 * Load-time repacking of weight matrices for the CPU kernels. The GGUF
 * data stays as it is (mmapped; the Vulkan backend, the embedding lookup
 * and the tools read it); the packed copy costs the matrices' size again in
 * anonymous memory. For Q4_0 and Q8_0 the file pages behind it go cold and
 * the OS can drop them; single-token decode of the K-quants still reads
 * the GGUF data (see use_packed in matmul.c), so for those both copies stay
 * in use.
 */
#include <stdlib.h>

#include "cpu.h"
#include "../../core/context.h"
#include "../../core/error.h"
#include "../../quant/qpack.h"

typedef struct pack_job {
    const weight *w;
    int64_t tiles_per_task, n_tiles;
} pack_job;

static void pack_task(void *arg, int64_t task, int64_t n) {
    (void)n;
    const pack_job *j = arg;
    int64_t t0 = task * j->tiles_per_task, t1 = t0 + j->tiles_per_task;
    if (t1 > j->n_tiles) t1 = j->n_tiles;
    qpack_pack(j->w->type, j->w->data, j->w->row_bytes, j->w->rows, j->w->cols, t0, t1, j->w->packed);
}

static llms_status pack_one(llms_model *m, weight *w) {
    if (w->packed || !w->data || !qpack_supported(w->type, w->cols)) return LLMS_OK;
    w->packed = xmalloc_aligned(m->alloc, qpack_bytes(w->type, w->rows, w->cols), 64);
    if (!w->packed) return ERR_OOM();
    pack_job j = {w, 0, (w->rows + QPACK_ROWS - 1) / QPACK_ROWS};
    int64_t tasks = (int64_t)pool_size(m->ctx->pool) * 4;
    j.tiles_per_task = (j.n_tiles + tasks - 1) / tasks;
    pool_run(m->ctx->pool, (j.n_tiles + j.tiles_per_task - 1) / j.tiles_per_task, pack_task, &j);
    return LLMS_OK;
}

/* The matrices the forward pass multiplies with, by index: the output
 * projection, then each layer's seven (not the embedding table, which is
 * only read a row at a time). */
static int64_t n_matrices(const llms_model *m) { return m->layers ? 1 + 7 * (int64_t)m->hp.n_layer : 1; }

static weight *matrix_at(llms_model *m, int64_t i) {
    if (i == 0) return &m->output;
    layer_weights *L = &m->layers[(i - 1) / 7];
    weight *list[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
    return list[(i - 1) % 7];
}

llms_status cpu_pack_weights(llms_model *m) {
    /* For side-by-side measurements (README, "CPU performance"): the
     * environment variable turns repacking off, leaving the kernels that
     * read the GGUF layout. */
    if (getenv("LLMS_CPU_NO_REPACK")) return LLMS_OK;
    for (int64_t i = 0; i < n_matrices(m); i++) {
        llms_status st = pack_one(m, matrix_at(m, i));
        if (st) return st;
    }
    return LLMS_OK;
}

void cpu_free_packed(llms_model *m) {
    for (int64_t i = 0; i < n_matrices(m); i++) {
        weight *w = matrix_at(m, i);
        xfree_aligned(m->alloc, w->packed);
        w->packed = NULL;
    }
}
