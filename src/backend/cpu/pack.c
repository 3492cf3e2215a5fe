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
#include <string.h>

#include <stdint.h>

#include "cpu.h"
#include "../../core/context.h"
#include "../../core/error.h"
#include "../../gguf/gguf.h"
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

/* The weights a CPU forward pass streams live in one block on transparent
 * huge pages where the kernel offers them (Debian's default is "madvise":
 * only for regions that ask): the repacked matrices, and a copy of the
 * GGUF-layout rows still read (matrices without a packed form, and the
 * K-quants, which decode single tokens from that layout). Decode streams
 * every weight once per token: with the file mapping's 4 KiB pages that is
 * a TLB miss every 4 KiB, and the hardware prefetchers stop at each page
 * edge. Measured side by side on tinyllama: +1-9% Q4_0 and +0-14% Q8_0
 * decode, each of six alternating pairs in favour. One block rather than
 * one per matrix: 2 MiB alignment per matrix would reserve 2 MiB more for
 * each of them. The file's pages are then no longer touched after load
 * (page cache the kernel may drop), so resident memory does not grow. */
#define HUGE_PAGE ((size_t)2 << 20)
#define PACK_ALIGN 64

static int packable(const weight *w) { return !w->packed && w->data && qpack_supported(w->type, w->cols); }

/* GGUF-layout rows the forward pass reads (see use_packed in matmul.c),
 * copied from a file mapping unless the host asked to keep reading it.
 * Data already in a buffer (LLMS_MODEL_NO_MMAP, or the host's memory) is
 * not copied: that would hold the weights twice. */
static int needs_copy(const llms_model *m, const weight *w) {
    if (!w->data || (m->flags & LLMS_MODEL_MAPPED_WEIGHTS) || !gguf_is_mapped(m->file)) return 0;
    if (!packable(w)) return 1;
    return w->type == LLMS_TYPE_Q4_K || w->type == LLMS_TYPE_Q6_K;
}

static size_t data_size(const weight *w) {
    return ((size_t)w->rows * (size_t)w->row_bytes + PACK_ALIGN - 1) & ~(size_t)(PACK_ALIGN - 1);
}

static size_t packed_size(const weight *w) {
    return (qpack_bytes(w->type, w->rows, w->cols) + PACK_ALIGN - 1) & ~(size_t)(PACK_ALIGN - 1);
}

/* Repacks w into `dst` (packed_size(w) bytes). */
static void pack_one(llms_model *m, weight *w, uint8_t *dst) {
    w->packed = dst;
    pack_job j = {w, 0, (w->rows + QPACK_ROWS - 1) / QPACK_ROWS};
    int64_t tasks = (int64_t)pool_size(m->ctx->pool) * 4;
    j.tiles_per_task = (j.n_tiles + tasks - 1) / tasks;
    pool_run(m->ctx->pool, (j.n_tiles + j.tiles_per_task - 1) / j.tiles_per_task, pack_task, &j);
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
     * environment variable turns repacking (and the huge-page copies) off,
     * leaving the kernels that read the GGUF layout from the file. */
    if (getenv("LLMS_CPU_NO_REPACK") || m->cpu_packed) return LLMS_OK;
    size_t total = 0;
    for (int64_t i = 0; i < n_matrices(m); i++) {
        const weight *w = matrix_at(m, i);
        if (packable(w)) total += packed_size(w);
        if (needs_copy(m, w)) total += data_size(w);
    }
    if (!total) return LLMS_OK;
    uint8_t *block = xmalloc_aligned(m->alloc, total, HUGE_PAGE);
    if (!block) return ERR_OOM();
    alloc_advise_huge_pages(block, total);
    m->cpu_packed = block;
    for (int64_t i = 0; i < n_matrices(m); i++) {
        weight *w = matrix_at(m, i);
        const int pack = packable(w), copy = needs_copy(m, w);
        if (copy) {
            memcpy(block, w->data, (size_t)w->rows * (size_t)w->row_bytes);
            w->data = block;
            block += data_size(w);
        }
        if (pack) {
            pack_one(m, w, block);
            block += packed_size(w);
        }
    }
    return LLMS_OK;
}

/* At model destruction only: the copied matrices' data points into the
 * block too. */
void cpu_free_packed(llms_model *m) {
    for (int64_t i = 0; i < n_matrices(m); i++) matrix_at(m, i)->packed = NULL;
    xfree_aligned(m->alloc, m->cpu_packed);
    m->cpu_packed = NULL;
}
