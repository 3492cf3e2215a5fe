#include <cblas.h>
#include <string.h>

#include "cpu.h"
#include "fgemm.h"
#include "vec.h"
#include "../../core/error.h"
#include "../../quant/quant.h"
#include "../../quant/qgemm.h"
#include "../../quant/qdot512.h"
#include "../../quant/qpack.h"

void cpu_weight_row(const weight *w, int64_t row, float *out) {
    quant_dequantize_row(w->type, w->data + (uint64_t)row * w->row_bytes, out, w->cols);
}

/* Vectorized (vec.h): decode runs it on the calling thread, twice a layer,
 * while the pool's other threads wait (scalar, it was 2.3 us of 2048
 * values, 0.1 ms of a tinyllama token). */
void cpu_rmsnorm(float *out, const float *x, const float *g, int64_t n, float eps) {
    vec_best()->rmsnorm(out, x, g, (size_t)n, eps);
}

/* Below this many tokens the matrix-vector kernels beat the GEMM paths;
 * the AVX512 ones (quant/qdot512.h), which unpack each weight group once
 * for all tokens, up to QD_MATVEC_MAX tokens (measured on Q8_0, K 2048:
 * 2.0x faster than the GEMM at 4 tokens, even at 8). */
#define GEMM_MIN_TOKENS 4
#define QD_MATVEC_MAX 8

/* The packed layout (quant/qpack.h) serves every batch size, except one
 * token of the K-quants: from memory their GGUF layout decodes faster
 * (tinyllama-1.1b Q4_K_M, 2 threads, side by side: 40.0 tok/s vs 31.4
 * packed; the packed Q4_K is 8% larger and Q6_K's bit planes cost more to
 * unpack than the memory stream hides). Measured again with the 512-bit
 * row kernels (qdot512.c): 45 tok/s rows, 38 packed. */
static int use_packed(const weight *w, int64_t n) {
    if (!w->packed) return 0;
    return n > 1 || (w->type != LLMS_TYPE_Q4_K && w->type != LLMS_TYPE_Q6_K);
}

/* Float weights (F32/F16/BF16) go through fgemm from 2 tokens on: it reads
 * each weight row once for every 4 tokens, where the matrix-vector kernel
 * reads its rows once per token (tinyllama-1.1b F16, 2 threads, side by
 * side, 2 rounds: 2 sessions decoding together 29.2-29.5 -> 32.6 tok/s, 3
 * sessions 31.2-34.6 -> 46.4-47.3). One token stays on the matrix-vector
 * kernel, which reads ahead. */
static int use_matvec(const weight *w, int64_t n) {
    if (n > 1 && fgemm_supported(w->type)) return 0;
    return n < GEMM_MIN_TOKENS || (n <= QD_MATVEC_MAX && qdot512_supported(w->type, w->cols));
}

/* ---- decode: matrix-vector, rows split over the pool ---- */

typedef struct matvec_job {
    const weight *w;
    quant_dot_fn dot;       /* the best kernel for w->type, looked up once */
    const void *act;        /* x quantized to the dot kernel's activation type */
    const float *xf;
    float *y;
    int64_t n_tok;
    size_t act_row_bytes;
    uint32_t act_type;
    const uint8_t *prep;    /* qdot512 activations, or NULL */
    size_t prep_row_bytes;
} matvec_job;

/* Rows are handed out in units of 16: whole cache lines of output per
 * claim (no false sharing). */
#define MV_UNIT 16

/* The smallest claim worth making: about 32 KiB of weights, so claiming
 * (one atomic) stays well under the time the claim's rows take. */
static int64_t claim_grain(size_t unit_bytes) {
    int64_t g = (int64_t)((32u << 10) / (unit_bytes ? unit_bytes : 1));
    return g < 1 ? 1 : g;
}

static void matvec_rows(const matvec_job *j, int64_t r0, int64_t r1) {
    const weight *w = j->w;
    if (r1 > w->rows) r1 = w->rows;
    if (r1 <= r0) return;
    if (j->prep) {
        qdot512_rows_n(w->type, w->cols, w->data + (uint64_t)r0 * w->row_bytes, w->row_bytes, r1 - r0, j->prep,
                       j->prep_row_bytes, j->n_tok, j->y + r0, w->rows);
        return;
    }
    for (int64_t t = 0; t < j->n_tok; t++) {
        const void *act = (const char *)j->act + (size_t)t * j->act_row_bytes;
        float *y = j->y + t * w->rows;
        for (int64_t r = r0; r < r1; r++)
            j->dot(w->cols, w->data + (uint64_t)r * w->row_bytes, act, &y[r]);
    }
}

static void matvec_range(void *arg, int64_t u0, int64_t u1) {
    matvec_rows(arg, u0 * MV_UNIT, u1 * MV_UNIT);
}

/* Quantizes the activations; *units_out gets the matrix's row units.
 * Buffers are freed by matvec_done. */
static llms_status matvec_setup(const lalloc *a, const weight *w, const float *x, int64_t n, float *y,
                                matvec_job *j, int64_t *units_out) {
    uint32_t at = quant_act_type(w->type);
    memset(j, 0, sizeof *j);
    j->w = w;
    j->dot = quant_vec_dot_fn(w->type);
    j->y = y;
    j->n_tok = n;
    j->act_type = at;
    if (at == LLMS_TYPE_F32) {
        j->act = x;
        j->act_row_bytes = (size_t)w->cols * sizeof(float);
    } else {
        j->act_row_bytes = type_row_bytes(type_get(at), (uint64_t)w->cols);
        void *act_buf = xmalloc_aligned(a, j->act_row_bytes * (size_t)n, 64);
        if (!act_buf) return ERR_OOM();
        /* A few thousand values per token: the calling thread is quicker
         * than a parallel region. */
        for (int64_t t = 0; t < n; t++)
            quant_quantize_row(at, x + t * w->cols, (char *)act_buf + (size_t)t * j->act_row_bytes, w->cols);
        j->act = act_buf;
        if (qdot512_supported(w->type, w->cols)) {
            j->prep_row_bytes = qdot512_act_bytes(w->type, w->cols);
            uint8_t *prep = xmalloc_aligned(a, j->prep_row_bytes * (size_t)n, 64);
            if (!prep) {
                xfree_aligned(a, act_buf);
                j->act = NULL;
                return ERR_OOM();
            }
            for (int64_t t = 0; t < n; t++)
                qdot512_prepare(w->type, w->cols, (const char *)act_buf + (size_t)t * j->act_row_bytes,
                                prep + (size_t)t * j->prep_row_bytes);
            j->prep = prep;
        }
    }
    *units_out = (w->rows + MV_UNIT - 1) / MV_UNIT;
    return LLMS_OK;
}

static void matvec_done(const lalloc *a, matvec_job *j) {
    xfree_aligned(a, (void *)j->prep);
    if (j->act_type != LLMS_TYPE_F32) xfree_aligned(a, (void *)j->act);
    j->prep = NULL;
    j->act = NULL;
}

static llms_status matvec(threadpool *pool, const lalloc *a, const weight *w, const float *x,
                          int64_t n, float *y) {
    matvec_job j;
    int64_t units;
    llms_status st = matvec_setup(a, w, x, n, y, &j, &units);
    if (st) return st;
    pool_run_ranges(pool, units, claim_grain(MV_UNIT * w->row_bytes), matvec_range, &j);
    matvec_done(a, &j);
    return LLMS_OK;
}

/* Several matrices on the same input in one parallel region (Q/K/V,
 * gate/up): one wake-up of the workers instead of several. */
#define MV_MAX 4
static llms_status packed_matmul(threadpool *pool, const lalloc *a, const weight *const *ws, int nw,
                                 const float *x, int64_t n, float *const *ys);
typedef struct matvec_group {
    matvec_job j[MV_MAX];
    int64_t first[MV_MAX + 1];  /* first row unit of each matrix */
    int n;
} matvec_group;

static void matvec_group_range(void *arg, int64_t u0, int64_t u1) {
    const matvec_group *g = arg;
    for (int k = 0; k < g->n; k++) {
        int64_t b = u0 > g->first[k] ? u0 : g->first[k], e = u1 < g->first[k + 1] ? u1 : g->first[k + 1];
        if (b < e) matvec_rows(&g->j[k], (b - g->first[k]) * MV_UNIT, (e - g->first[k]) * MV_UNIT);
    }
}

llms_status cpu_matmul_n(threadpool *pool, const lalloc *a, const weight *const *ws, int nw, const float *x,
                         int64_t n, float *const *ys) {
    int packed = nw <= MV_MAX;
    for (int k = 0; k < nw; k++) packed &= use_packed(ws[k], n) && ws[k]->cols == ws[0]->cols &&
                  ws[k]->type == ws[0]->type;
    if (packed) return packed_matmul(pool, a, ws, nw, x, n, ys);
    int mv = nw <= MV_MAX;
    for (int k = 0; k < nw; k++) mv &= use_matvec(ws[k], n);
    if (!mv) {
        for (int k = 0; k < nw; k++) {
            llms_status st = cpu_matmul(pool, a, ws[k], x, n, ys[k]);
            if (st) return st;
        }
        return LLMS_OK;
    }
    matvec_group g;
    g.n = 0;
    g.first[0] = 0;
    llms_status st = LLMS_OK;
    for (int k = 0; k < nw; k++) {
        int64_t units;
        if ((st = matvec_setup(a, ws[k], x, n, ys[k], &g.j[k], &units))) break;
        g.first[k + 1] = g.first[k] + units;
        g.n++;
    }
    if (!st) pool_run_ranges(pool, g.first[g.n], claim_grain(MV_UNIT * ws[0]->row_bytes), matvec_group_range, &g);
    for (int k = 0; k < g.n; k++) matvec_done(a, &g.j[k]);
    return st;
}

/* ---- repacked weights (quant/qpack.h): every batch size ---- */

typedef struct packed_job {
    const weight *const *ws;
    float *const *ys;
    int nw;
    int64_t first[MV_MAX + 1];      /* first tile of each matrix */
    qpack_act act;
    const float *x;
} packed_job;

static void packed_act_task(void *arg, int64_t t, int64_t n) {
    (void)n;
    packed_job *j = arg;
    qpack_act_quantize(j->ws[0]->type, &j->act, t, j->x + t * j->act.K);
}

static void packed_range(void *arg, int64_t u0, int64_t u1) {
    const packed_job *j = arg;
    for (int k = 0; k < j->nw; k++) {
        int64_t b = u0 > j->first[k] ? u0 : j->first[k], e = u1 < j->first[k + 1] ? u1 : j->first[k + 1];
        const weight *w = j->ws[k];
        if (b < e)
            qpack_matmul_tiles(w->type, w->packed, w->rows, w->cols, b - j->first[k], e - j->first[k], &j->act,
                               j->ys[k], w->rows);
    }
}

/* Y_k = X W_k^T for nw (<= MV_MAX) packed matrices of one type and K: the
 * activations are quantized once and all products share one parallel
 * region. */
static llms_status packed_matmul(threadpool *pool, const lalloc *a, const weight *const *ws, int nw,
                                 const float *x, int64_t n, float *const *ys) {
    packed_job j;
    memset(&j, 0, sizeof j);
    j.ws = ws;
    j.ys = ys;
    j.nw = nw;
    j.x = x;
    const int64_t K = ws[0]->cols;
    void *buf = xmalloc_aligned(a, qpack_act_bytes(n, K), 64);
    if (!buf) return ERR_OOM();
    qpack_act_init(&j.act, buf, n, K);
    /* A few thousand values per token: for a handful of tokens the calling
     * thread is quicker than waking the pool. */
    if (n < 8)
        for (int64_t t = 0; t < n; t++) qpack_act_quantize(ws[0]->type, &j.act, t, x + t * K);
    else
        pool_run(pool, n, packed_act_task, &j);
    for (int k = 0; k < nw; k++) j.first[k + 1] = j.first[k] + (ws[k]->rows + QPACK_ROWS - 1) / QPACK_ROWS;
    pool_run_ranges(pool, j.first[nw], claim_grain(qpack_tile_bytes(ws[0]->type, K)), packed_range, &j);
    xfree_aligned(a, buf);
    return LLMS_OK;
}

int cpu_matmul_tokenwise(const weight *w) { return w->packed != NULL || fgemm_supported(w->type); }

llms_status cpu_matmul_tokenwise_n(threadpool *pool, const lalloc *a, const weight *const *ws, int nw,
                                   const float *x, int64_t n, float *const *ys) {
    int group = nw <= MV_MAX;
    for (int k = 0; k < nw; k++) {
        if (!cpu_matmul_tokenwise(ws[k]))
            return err_set(LLMS_ERR_INTERNAL, "cpu_matmul_tokenwise_n on a matrix without a tokenwise kernel");
        group &= ws[k]->packed && ws[k]->cols == ws[0]->cols && ws[k]->type == ws[0]->type;
    }
    if (group) return packed_matmul(pool, a, ws, nw, x, n, ys);
    for (int k = 0; k < nw; k++) {
        if (!ws[k]->packed) {
            fgemm(pool, ws[k], x, n, ys[k]);
            continue;
        }
        llms_status st = packed_matmul(pool, a, &ws[k], 1, x, n, &ys[k]);
        if (st) return st;
    }
    return LLMS_OK;
}

/* ---- prefill: dequantize a tile of rows, multiply with sgemm ---- */

typedef struct deq_job {
    const weight *w;
    int64_t r0;
    float *tile;
} deq_job;

static void deq_task(void *arg, int64_t i, int64_t n) {
    (void)n;
    const deq_job *j = arg;
    cpu_weight_row(j->w, j->r0 + i, j->tile + i * j->w->cols);
}

/* ---- prefill on quantized weights: integer GEMM (quant/qgemm.h) ---- */

typedef struct qg_job {
    const weight *w;
    qgemm_act act;
    const float *x;
    float *y;
    int64_t n_tiles, tiles_per_task;
    uint8_t *tiles;
    size_t tile_bytes;
    int isa;
} qg_job;

static void qg_act_task(void *arg, int64_t t, int64_t n) {
    (void)n;
    qg_job *j = arg;
    qgemm_act_quantize(&j->act, t, j->x + t * j->w->cols);
}

static void qg_task(void *arg, int64_t task, int64_t n) {
    (void)n;
    const qg_job *j = arg;
    const weight *w = j->w;
    int64_t i0 = task * j->tiles_per_task, i1 = i0 + j->tiles_per_task;
    if (i1 > j->n_tiles) i1 = j->n_tiles;
    for (int64_t i = i0; i < i1; i++) {
        int64_t r0 = i * 16;
        int rows = (int)(w->rows - r0 < 16 ? w->rows - r0 : 16);
        qgemm_tile(w->type, w->data + (uint64_t)r0 * w->row_bytes, w->row_bytes, rows, &j->act, j->y + r0,
                   w->rows, j->tiles + (size_t)task * j->tile_bytes, j->isa);
    }
}

static llms_status qgemm(threadpool *pool, const lalloc *a, const weight *w, const float *x, int64_t n,
                         float *y) {
    qg_job j;
    memset(&j, 0, sizeof j);
    j.w = w;
    j.x = x;
    j.y = y;
    j.isa = quant_isa_best();
    j.n_tiles = (w->rows + 15) / 16;
    /* Tiles are independent: a few tasks per thread balance the load. */
    int64_t tasks = (int64_t)pool_size(pool) * 4;
    if (tasks > j.n_tiles) tasks = j.n_tiles;
    j.tiles_per_task = (j.n_tiles + tasks - 1) / tasks;
    tasks = (j.n_tiles + j.tiles_per_task - 1) / j.tiles_per_task;
    j.tile_bytes = qgemm_tile_bytes(w->cols);
    size_t act_bytes = qgemm_act_bytes(n, w->cols);
    uint8_t *buf = xmalloc_aligned(a, act_bytes + j.tile_bytes * (size_t)tasks, 64);
    if (!buf) return ERR_OOM();
    qgemm_act_init(&j.act, buf, n, w->cols);
    j.tiles = buf + act_bytes;
    pool_run(pool, n, qg_act_task, &j);
    pool_run(pool, tasks, qg_task, &j);
    xfree_aligned(a, buf);
    return LLMS_OK;
}


const uint8_t *cpu_matmul_stream(const weight *w, int64_t n, size_t *bytes) {
    if (use_packed(w, n)) {
        *bytes = qpack_bytes(w->type, w->rows, w->cols);
        return w->packed;
    }
    *bytes = use_matvec(w, n) && w->data ? (size_t)w->rows * (size_t)w->row_bytes : 0;
    return w->data;
}

llms_status cpu_matmul(threadpool *pool, const lalloc *a, const weight *w, const float *x, int64_t n,
                       float *y) {
    if (use_packed(w, n)) return packed_matmul(pool, a, &w, 1, x, n, &y);
    if (use_matvec(w, n)) return matvec(pool, a, w, x, n, y);
    const int64_t K = w->cols, N = w->rows;
    if (qgemm_available() && qgemm_type_supported(w->type) && K % 32 == 0)
        return qgemm(pool, a, w, x, n, y);
    if (fgemm_supported(w->type)) {
        fgemm(pool, w, x, n, y);
        return LLMS_OK;
    }
    if (w->type == LLMS_TYPE_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)N, (int)K, 1.0f, x, (int)K,
                    (const float *)w->data, (int)K, 0.0f, y, (int)N);
        return LLMS_OK;
    }
    /* Tiles of 16 MiB of floats (2048 rows at K = 2048) bound scratch
     * memory for huge vocabularies. Smaller tiles cost more than they
     * save: each tile hands the cores from our pool (dequantizing) to
     * OpenBLAS's threads (sgemm) and back, and a 186-row tile of a
     * K = 5632 matrix is an awkward sgemm. Measured side by side
     * (tinyllama-1.1b F16, 512-token prompt, 2 threads, 7 rounds):
     * 4 MiB tiles 83.8 tok/s, 16 MiB 91.0, 32 MiB no better. */
    int64_t tile_rows = (1 << 22) / K;
    if (tile_rows < 16) tile_rows = 16;
    if (tile_rows > N) tile_rows = N;
    float *tile = xmalloc_aligned(a, (size_t)tile_rows * (size_t)K * sizeof(float), 64);
    if (!tile) return ERR_OOM();
    for (int64_t r0 = 0; r0 < N; r0 += tile_rows) {
        int64_t rows = N - r0 < tile_rows ? N - r0 : tile_rows;
        deq_job j = {w, r0, tile};
        pool_run(pool, rows, deq_task, &j);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)rows, (int)K, 1.0f, x, (int)K,
                    tile, (int)K, 0.0f, y + r0, (int)N);
    }
    xfree_aligned(a, tile);
    return LLMS_OK;
}
