/*
 * AVX-512 float matrix products for prefill on F32/F16/BF16 weights; see
 * fgemm.h.
 *
 * The micro-kernel computes a block of FG_MT tokens x FG_NR weight rows:
 * each of its 24 accumulators holds 16 partial sums of one dot product
 * (k in the vector's lanes), so both operands are read as they lie in
 * memory (activation rows, weight rows widened to float) with no packing,
 * and each 16-column step is FG_NR weight vectors, FG_MT activation
 * vectors and 24 FMAs. The lanes are summed once per dot product at the
 * end (a K = 2048 product is 128 FMAs per accumulator against one
 * reduction).
 *
 * A task is FG_TASK_ROWS weight rows (192 KiB of F16 at K = 2048, kept in
 * L2) against every token, 4 at a time (their activation rows, 32 KiB,
 * stay in L1 across the task's row groups).
 *
 * Measured on the development machine (2 cores of an AMD EPYC Zen 5; a
 * float32 FMA loop on both reads 483-488 GFLOP/s), tinyllama-1.1b F16,
 * 512-token prompt, 2 threads, alternating runs:
 * - dequantized tiles through OpenBLAS 0.3.21 with the Haswell kernels it
 *   picks for this CPU (its sgemm 180-217 GFLOP/s): 80-98 tok/s;
 * - the same with OPENBLAS_CORETYPE=SKYLAKEX (its AVX-512 kernels, sgemm
 *   360-422 GFLOP/s): 148-179 tok/s;
 * - this kernel: 137-174 tok/s (about 350 GFLOP/s in the weight products,
 *   72% of the FMA loop's rate).
 * A first version ran at 62-69 tok/s: GCC kept the 24 accumulators in
 * memory (see the end of micro).
 * For one token it is memory-bound and reads its 6 rows as 6 streams:
 * 67-73% of the bandwidth probe against 95-101% for the matrix-vector
 * kernel (llms-decode-parts, F16, 3 rounds; asking for each row's lines 4
 * or 8 KiB ahead into L2 changed nothing), so cpu_matmul sends it batches
 * only. Small batches ask for the next row group non-temporal (task_rows).
 */
#include "fgemm.h"

#include "../../quant/quant.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FG_X86 1
#include <immintrin.h>
#else
#define FG_X86 0
#endif

#define FG_MT 4           /* tokens per micro-kernel */
#define FG_NR 6           /* weight rows per micro-kernel: 24 accumulators + 6 weight vectors + 1 */
#define FG_TASK_ROWS 48   /* weight rows per task: 8 row groups */

int fgemm_supported(uint32_t wtype) {
#if FG_X86
    if (wtype != LLMS_TYPE_F32 && wtype != LLMS_TYPE_F16 && wtype != LLMS_TYPE_BF16) return 0;
    return quant_isa_best() >= QUANT_ISA_AVX512;
#else
    (void)wtype;
    return 0;
#endif
}

#if FG_X86
#define FG_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,f16c,fma")))

/* 16 weights from column k of a row of type T, as floats; the columns past
 * the mask read as 0. */
static inline __attribute__((always_inline)) FG_TARGET __m512 load_w(const uint8_t *row, int64_t k, __mmask16 m,
                                                                      const uint32_t T) {
    if (T == LLMS_TYPE_F32) return _mm512_maskz_loadu_ps(m, (const float *)row + k);
    const __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)row + k);
    if (T == LLMS_TYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); /* BF16 */
}

/* acc[t][r] += x[t][k..k+15] * w[r][k..k+15], the columns past the mask
 * as 0 (the full mask reads as plain loads). ahead > 0: also asks for the
 * same columns `ahead` bytes on in each row, non-temporal (task_rows). */
static inline __attribute__((always_inline)) FG_TARGET void step(__m512 acc[FG_MT][FG_NR], const uint8_t *const *w,
                                                                 const float *const *x, int64_t k, __mmask16 m,
                                                                 const uint32_t T, size_t ahead) {
    __m512 wv[FG_NR];
    if (ahead) {
        const size_t eb = T == LLMS_TYPE_F32 ? 4 : 2;
#pragma GCC unroll 6
        for (int r = 0; r < FG_NR; r++) _mm_prefetch((const char *)w[r] + ahead + (size_t)k * eb, _MM_HINT_NTA);
    }
#pragma GCC unroll 6
    for (int r = 0; r < FG_NR; r++) wv[r] = load_w(w[r], k, m, T);
#pragma GCC unroll 4
    for (int t = 0; t < FG_MT; t++) {
        const __m512 xv = _mm512_maskz_loadu_ps(m, x[t] + k);
#pragma GCC unroll 6
        for (int r = 0; r < FG_NR; r++) acc[t][r] = _mm512_fmadd_ps(xv, wv[r], acc[t][r]);
    }
}

/* y[t * ldy + r] for the FG_MT tokens x[t] (K floats apart) and FG_NR rows
 * w[r] (row_bytes apart); only the first mt tokens and nr rows are stored
 * (the caller points the others at real rows, so they compute harmlessly). */
static inline __attribute__((always_inline)) FG_TARGET void
micro(const uint8_t *const *w, const float *const *x, int64_t K, float *y, int64_t ldy, int mt, int nr,
      const uint32_t T, size_t ahead) {
    __m512 acc[FG_MT][FG_NR];
#pragma GCC unroll 4
    for (int t = 0; t < FG_MT; t++)
#pragma GCC unroll 6
        for (int r = 0; r < FG_NR; r++) acc[t][r] = _mm512_setzero_ps();
    int64_t k = 0;
    /* Two loops so that the one without read-ahead has none in its body. */
    if (ahead)
        for (; k + 16 <= K; k += 16) step(acc, w, x, k, 0xFFFF, T, ahead);
    else
        for (; k + 16 <= K; k += 16) step(acc, w, x, k, 0xFFFF, T, 0);
    if (k < K) step(acc, w, x, k, (__mmask16)((1u << (K - k)) - 1), T, 0);
    /* Summed with constant indices first: a loop over acc bounded by mt
     * and nr made GCC keep the accumulators in memory, storing all 24 on
     * every step of the loop above. */
    float sum[FG_MT][FG_NR];
#pragma GCC unroll 4
    for (int t = 0; t < FG_MT; t++)
#pragma GCC unroll 6
        for (int r = 0; r < FG_NR; r++) sum[t][r] = _mm512_reduce_add_ps(acc[t][r]);
    for (int t = 0; t < mt; t++)
        for (int r = 0; r < nr; r++) y[t * ldy + r] = sum[t][r];
}

typedef struct fg_job {
    const weight *w;
    const float *x;
    int64_t n;
    float *y;
} fg_job;

/* Where the batch is one group of tokens (sessions decoding together),
 * each weight row is read once: the micro-kernel then asks for the next
 * row group's lines as it reads its own, FG_NR rows on in each of its
 * streams, non-temporal (as decode's other weight streams: qpack.c says
 * why). tinyllama-1.1b F16, sessions decoding together through the
 * scheduler, 2 threads, with and without alternating step by step
 * (medians of 20 steps each, two runs): 2 sessions 72.6 / 69.0 -> 66.2 /
 * 65.1 ms a step, 3 sessions 71.8 / 74.9 -> 64.1 / 68.7, 4 sessions 64.7 /
 * 73.3 -> 61.7 / 67.7. (One token through the matrix-vector kernel takes
 * about 48 ms: a small-batch kernel that streams like it would gain
 * more.) Not for the task's last group: the next task may be another
 * thread's. */
static inline __attribute__((always_inline)) FG_TARGET void task_rows(const fg_job *j, int64_t r0, int64_t r1,
                                                                      const uint32_t T) {
    const weight *w = j->w;
    const int64_t K = w->cols, N = w->rows;
    const int one_group = j->n <= FG_MT;
    for (int64_t t0 = 0; t0 < j->n; t0 += FG_MT) {
        const int mt = j->n - t0 < FG_MT ? (int)(j->n - t0) : FG_MT;
        const float *x[FG_MT];
        for (int t = 0; t < FG_MT; t++) x[t] = j->x + (t0 + (t < mt ? t : mt - 1)) * K;
        for (int64_t g = r0; g < r1; g += FG_NR) {
            const int nr = r1 - g < FG_NR ? (int)(r1 - g) : FG_NR;
            const uint8_t *wr[FG_NR];
            for (int r = 0; r < FG_NR; r++) wr[r] = w->data + (uint64_t)(g + (r < nr ? r : nr - 1)) * w->row_bytes;
            const size_t ahead = one_group && g + 2 * FG_NR <= r1 ? (size_t)FG_NR * w->row_bytes : 0;
            micro(wr, x, K, j->y + t0 * N + g, N, mt, nr, T, ahead);
        }
    }
}

static FG_TARGET void task_f32(const fg_job *j, int64_t r0, int64_t r1) { task_rows(j, r0, r1, LLMS_TYPE_F32); }
static FG_TARGET void task_f16(const fg_job *j, int64_t r0, int64_t r1) { task_rows(j, r0, r1, LLMS_TYPE_F16); }
static FG_TARGET void task_bf16(const fg_job *j, int64_t r0, int64_t r1) { task_rows(j, r0, r1, LLMS_TYPE_BF16); }

static void fg_task(void *arg, int64_t i, int64_t n) {
    (void)n;
    const fg_job *j = arg;
    const int64_t r0 = i * FG_TASK_ROWS, r1 = r0 + FG_TASK_ROWS < j->w->rows ? r0 + FG_TASK_ROWS : j->w->rows;
    switch (j->w->type) {
    case LLMS_TYPE_F32: task_f32(j, r0, r1); break;
    case LLMS_TYPE_F16: task_f16(j, r0, r1); break;
    default: task_bf16(j, r0, r1); break;
    }
}

void fgemm(threadpool *pool, const weight *w, const float *x, int64_t n, float *y) {
    fg_job j = {w, x, n, y};
    pool_run(pool, (w->rows + FG_TASK_ROWS - 1) / FG_TASK_ROWS, fg_task, &j);
}
#else
void fgemm(threadpool *pool, const weight *w, const float *x, int64_t n, float *y) {
    (void)pool; (void)w; (void)x; (void)n; (void)y;
}
#endif
