#include <cblas.h>
#include <math.h>
#include <string.h>

#include "cpu.h"
#include "../../core/error.h"
#include "../../quant/quant.h"

void cpu_weight_row(const weight *w, int64_t row, float *out) {
    quant_dequantize_row(w->type, w->data + (uint64_t)row * w->row_bytes, out, w->cols);
}

void cpu_rmsnorm(float *out, const float *x, const float *g, int64_t n, float eps) {
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / (double)n + eps));
    for (int64_t i = 0; i < n; i++) out[i] = x[i] * scale * g[i];
}

/* ---- decode: matrix-vector, rows split over the pool ---- */

typedef struct matvec_job {
    const weight *w;
    quant_dot_fn dot;       /* the best kernel for w->type, looked up once */
    const void *act;        /* x quantized to the dot kernel's activation type */
    const float *xf;
    float *y;
    int64_t n_tok, rows_per_task;
    size_t act_row_bytes;
    uint32_t act_type;
} matvec_job;

static void matvec_task(void *arg, int64_t task, int64_t n_tasks) {
    (void)n_tasks;
    const matvec_job *j = arg;
    const weight *w = j->w;
    int64_t r0 = task * j->rows_per_task;
    int64_t r1 = r0 + j->rows_per_task < w->rows ? r0 + j->rows_per_task : w->rows;
    for (int64_t t = 0; t < j->n_tok; t++) {
        const void *act = (const char *)j->act + (size_t)t * j->act_row_bytes;
        float *y = j->y + t * w->rows;
        for (int64_t r = r0; r < r1; r++)
            j->dot(w->cols, w->data + (uint64_t)r * w->row_bytes, act, &y[r]);
    }
}

typedef struct quant_act_job {
    const float *x;
    void *act;
    int64_t cols;
    size_t row_bytes;
    uint32_t type;
} quant_act_job;

static void quant_act_task(void *arg, int64_t t, int64_t n) {
    (void)n;
    const quant_act_job *j = arg;
    quant_quantize_row(j->type, j->x + t * j->cols, (char *)j->act + (size_t)t * j->row_bytes, j->cols);
}

static llms_status matvec(threadpool *pool, const lalloc *a, const weight *w, const float *x,
                          int64_t n, float *y) {
    uint32_t at = quant_act_type(w->type);
    matvec_job j = {0};
    j.w = w;
    j.dot = quant_vec_dot_fn(w->type);
    j.y = y;
    j.n_tok = n;
    j.act_type = at;
    void *act_buf = NULL;
    if (at == LLMS_TYPE_F32) {
        j.act = x;
        j.act_row_bytes = (size_t)w->cols * sizeof(float);
    } else {
        j.act_row_bytes = type_row_bytes(type_get(at), (uint64_t)w->cols);
        act_buf = xmalloc_aligned(a, j.act_row_bytes * (size_t)n, 64);
        if (!act_buf) return ERR_OOM();
        quant_act_job q = {x, act_buf, w->cols, j.act_row_bytes, at};
        pool_run(pool, n, quant_act_task, &q);
        j.act = act_buf;
    }
    /* Enough tasks to balance the threads, few enough to amortise dispatch. */
    int64_t tasks = (int64_t)pool_size(pool) * 8;
    j.rows_per_task = (w->rows + tasks - 1) / tasks;
    if (j.rows_per_task < 4) j.rows_per_task = 4;
    tasks = (w->rows + j.rows_per_task - 1) / j.rows_per_task;
    pool_run(pool, tasks, matvec_task, &j);
    xfree_aligned(a, act_buf);
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

/* Below this many tokens the matrix-vector kernels beat dequantize+GEMM. */
#define GEMM_MIN_TOKENS 4

llms_status cpu_matmul(threadpool *pool, const lalloc *a, const weight *w, const float *x, int64_t n,
                       float *y) {
    if (n < GEMM_MIN_TOKENS) return matvec(pool, a, w, x, n, y);
    const int64_t K = w->cols, N = w->rows;
    if (w->type == LLMS_TYPE_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)N, (int)K, 1.0f, x, (int)K,
                    (const float *)w->data, (int)K, 0.0f, y, (int)N);
        return LLMS_OK;
    }
    /* Tiles of ~4 MiB of floats keep the dequantized rows in cache-friendly
     * pieces and bound scratch memory for huge vocabularies. */
    int64_t tile_rows = (1 << 20) / K;
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
