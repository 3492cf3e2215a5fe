/*
 * Prefill kernels (quant/qgemm.h) against references:
 *  - unpacking: s*u + m per block equals the scalar dequantizer of every
 *    supported type (up to one float rounding of the product);
 *  - activation quantization: the Q8_0 quantizer's values and scales;
 *  - the 16-row tile product, scalar kernel and AVX512-VNNI kernel, against
 *    a double-precision product of the dequantized weights and dequantized
 *    activations, for full and partial tiles and every token-panel width.
 * Decode kernels (quant/qdot512.h) and the repacked Q4_0 kernel
 * (quant/qpack.h) against the scalar reference dot product; the repacked
 * kernels' activation quantizer against the Q8_0 quantizer, bit for bit.
 * The float GEMM for F32/F16/BF16 weights (backend/cpu/fgemm.h) against a
 * double-precision product, and each token's row against the same token
 * computed alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmserve.h"
#include "quant/quant.h"
#include "quant/qgemm.h"
#include "quant/qdot512.h"
#include "quant/qpack.h"
#include "backend/cpu/vec.h"
#include "backend/cpu/fgemm.h"
#include "core/alloc.h"
#include "core/threadpool.h"
#include "quant/types.h"
#include "quant/blocks.h"
#include "quant/half.h"

static const uint32_t TYPES[] = {LLMS_TYPE_Q4_0, LLMS_TYPE_Q4_1, LLMS_TYPE_Q5_0, LLMS_TYPE_Q5_1,
                                 LLMS_TYPE_Q8_0, LLMS_TYPE_Q2_K, LLMS_TYPE_Q3_K, LLMS_TYPE_Q4_K,
                                 LLMS_TYPE_Q5_K, LLMS_TYPE_Q6_K};
#define NTYPES (sizeof TYPES / sizeof TYPES[0])

static uint64_t rng = 88172645463325252ull;
static float frand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static void *xaligned(size_t n) {
    void *p = NULL;
    assert_int_equal(posix_memalign(&p, 64, n ? n : 64), 0);
    memset(p, 0, n);
    return p;
}

static void test_unpack_matches_dequantize(void **state) {
    (void)state;
    const int64_t K = 512;
    float x[512], deq[512], s[64], m[64];
    uint8_t u[512], q[1024];
    for (size_t k = 0; k < NTYPES; k++) {
        assert_true(qgemm_type_supported(TYPES[k]));
        for (int rep = 0; rep < 4; rep++) {
            for (int i = 0; i < K; i++) x[i] = frand() * (rep + 1) + (rep == 3 ? 0.5f : 0.0f);
            quant_quantize_row(TYPES[k], x, q, K);
            quant_dequantize_row(TYPES[k], q, deq, K);
            int bs = qgemm_unpack_row(TYPES[k], q, K, u, s, m);
            assert_true(bs == 16 || bs == 32);
            for (int i = 0; i < K; i++) {
                float w = s[i / bs] * (float)u[i] + m[i / bs];
                float tol = 4e-7f * (fabsf(s[i / bs]) * 255.0f + fabsf(m[i / bs])) + 1e-12f;
                if (fabsf(w - deq[i]) > tol)
                    fail_msg("%s element %d: unpacked %g, dequantized %g", llms_type_name((int32_t)TYPES[k]), i, w,
                             deq[i]);
            }
        }
    }
    assert_false(qgemm_type_supported(LLMS_TYPE_F16));
    assert_int_equal(qgemm_unpack_row(LLMS_TYPE_F32, x, 32, u, s, m), 0);
}

static void run_tile_case(uint32_t type, int64_t K, int rows, int64_t n) {
    const type_traits *tt = type_get(type);
    const uint64_t rb = type_row_bytes(tt, (uint64_t)K);
    uint8_t *w = xaligned(rb * 16);
    float *x = xaligned((size_t)(n * K) * sizeof(float));
    float *row = xaligned((size_t)K * sizeof(float));
    for (int r = 0; r < 16; r++) {
        for (int64_t i = 0; i < K; i++) row[i] = frand() * (1.0f + 0.1f * r);
        quant_quantize_row(type, row, w + r * rb, K);
    }
    for (int64_t i = 0; i < n * K; i++) x[i] = frand() * 2.0f;
    qgemm_act act;
    void *abuf = xaligned(qgemm_act_bytes(n, K));
    qgemm_act_init(&act, abuf, n, K);
    for (int64_t t = 0; t < n; t++) qgemm_act_quantize(&act, t, x + t * K);
    /* The activations are exactly the Q8_0 quantizer's. */
    uint8_t *q8 = xaligned((size_t)(K / 32) * 34);
    float *xd = xaligned((size_t)(n * K) * sizeof(float));
    for (int64_t t = 0; t < n; t++) {
        quant_quantize_row(LLMS_TYPE_Q8_0, x + t * K, q8, K);
        quant_dequantize_row(LLMS_TYPE_Q8_0, q8, xd + t * K, K);
        for (int64_t i = 0; i < K; i++)
            assert_true(xd[t * K + i] == (float)act.q[t * K + i] * act.d32[t * (K / 32) + i / 32]);
    }
    const int64_t ldy = 21;
    float *ys = xaligned((size_t)(n * ldy) * sizeof(float)), *yv = xaligned((size_t)(n * ldy) * sizeof(float));
    for (int64_t i = 0; i < n * ldy; i++) ys[i] = yv[i] = -12345.0f;
    void *tile = xaligned(qgemm_tile_bytes(K));
    qgemm_tile(type, w, rb, rows, &act, ys, ldy, tile, QUANT_ISA_SCALAR);
    qgemm_tile(type, w, rb, rows, &act, yv, ldy, tile, quant_isa_best());
    for (int r = 0; r < rows; r++) {
        quant_dequantize_row(type, w + r * rb, row, K);
        for (int64_t t = 0; t < n; t++) {
            double ref = 0, mag = 0;
            for (int64_t i = 0; i < K; i++) {
                ref += (double)row[i] * xd[t * K + i];
                mag += fabs((double)row[i] * xd[t * K + i]);
            }
            double tol = 1e-5 * mag + 1e-6;
            float a = ys[t * ldy + r], b = yv[t * ldy + r];
            if (fabs(a - ref) > tol || fabs(b - ref) > tol)
                fail_msg("%s K=%lld rows=%d n=%lld: row %d token %lld: scalar %.6g simd %.6g reference %.6g",
                         llms_type_name((int32_t)type), (long long)K, rows, (long long)n, r, (long long)t, a, b, ref);
        }
    }
    /* Nothing written outside the tile's rows. */
    for (int64_t t = 0; t < n; t++)
        for (int64_t c = rows; c < ldy; c++) {
            assert_true(ys[t * ldy + c] == -12345.0f);
            assert_true(yv[t * ldy + c] == -12345.0f);
        }
    free(w); free(x); free(row); free(abuf); free(q8); free(xd); free(ys); free(yv); free(tile);
}

static void test_tile_products(void **state) {
    (void)state;
    printf("# qgemm fast kernel: %s\n", qgemm_available() ? "avx512-vnni" : "none (scalar only)");
    for (size_t k = 0; k < NTYPES; k++) {
        run_tile_case(TYPES[k], 512, 16, 13);  /* 8 + 4 + 1 token panels */
        run_tile_case(TYPES[k], 256, 5, 3);    /* a partial tile */
        if (type_get(TYPES[k])->block_size == 32) run_tile_case(TYPES[k], 96, 16, 9);
    }
}

/* Decode kernels (quant/qdot512.h) against the scalar reference dot product
 * (Q8_0 activations; Q8_K for Q4_K and Q6_K). */
static void test_qdot512(void **state) {
    (void)state;
    const uint32_t types[] = {LLMS_TYPE_Q4_0, LLMS_TYPE_Q8_0, LLMS_TYPE_Q4_K, LLMS_TYPE_Q6_K};
    const int64_t Ks[] = {128, 192, 256, 2048, 5632};
    if (!qdot512_supported(LLMS_TYPE_Q4_0, 128)) {
        printf("# qdot512: not available on this CPU\n");
        assert_false(qdot512_supported(LLMS_TYPE_Q8_0, 64));
        assert_false(qdot512_supported(LLMS_TYPE_Q4_K, 256));
        assert_false(qdot512_supported(LLMS_TYPE_Q6_K, 256));
        return;
    }
    assert_false(qdot512_supported(LLMS_TYPE_Q5_K, 256));
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++)
        for (size_t kk = 0; kk < sizeof Ks / sizeof Ks[0]; kk++) {
            const int64_t K = Ks[kk];
            if (!qdot512_supported(types[k], K)) {
                assert_true((types[k] == LLMS_TYPE_Q4_0 && K % 128 != 0) ||
                            ((types[k] == LLMS_TYPE_Q4_K || types[k] == LLMS_TYPE_Q6_K) && K % 256 != 0));
                continue;
            }
            const int64_t rows = 7;
            const uint64_t rb = type_row_bytes(type_get(types[k]), (uint64_t)K);
            uint8_t *w = xaligned(rb * rows + 64);
            float *x = xaligned((size_t)K * sizeof(float));
            const uint32_t at = quant_act_type(types[k]);
            uint8_t *act = xaligned(type_row_bytes(type_get(at), (uint64_t)K));
            void *prep = xaligned(qdot512_act_bytes(types[k], K));
            float out[7];
            for (int64_t r = 0; r < rows; r++) {
                for (int64_t i = 0; i < K; i++) x[i] = frand() * (1.0f + (float)r);
                quant_quantize_row(types[k], x, w + r * rb, K);
            }
            for (int64_t i = 0; i < K; i++) x[i] = frand() * 3.0f;
            quant_quantize_row(at, x, act, K);
            qdot512_prepare(types[k], K, act, prep);
            qdot512_rows(types[k], K, w, rb, rows, prep, out);
            quant_dot_fn ref = quant_vec_dot_get(types[k], QUANT_ISA_SCALAR);
            for (int64_t r = 0; r < rows; r++) {
                float want;
                ref(K, w + r * rb, act, &want);
                if (fabsf(out[r] - want) > 1e-5f * (fabsf(want) + 1.0f) * sqrtf((float)K))
                    fail_msg("%s K=%lld row %lld: %.7g vs scalar %.7g", llms_type_name((int32_t)types[k]), (long long)K,
                             (long long)r, out[r], want);
            }
            /* Several tokens at once (11: a full group of QD_MAX_TOKENS
             * and a partial one): each bit-identical to its token alone. */
            enum { NT = 11 };
            const size_t pb = qdot512_act_bytes(types[k], K);
            uint8_t *preps = xaligned(pb * NT);
            float many[NT * 7], one[7];
            for (int t = 0; t < NT; t++) {
                for (int64_t i = 0; i < K; i++) x[i] = frand() * (float)(t + 1);
                quant_quantize_row(at, x, act, K);
                qdot512_prepare(types[k], K, act, preps + (size_t)t * pb);
            }
            qdot512_rows_n(types[k], K, w, rb, rows, preps, pb, NT, many, rows);
            for (int t = 0; t < NT; t++) {
                qdot512_rows(types[k], K, w, rb, rows, preps + (size_t)t * pb, one);
                assert_memory_equal(one, many + t * rows, sizeof one);
            }
            free(preps);
            free(w); free(x); free(act); free(prep);
        }
}

/* Repacked Q4_0, Q8_0, Q4_K and Q6_K (quant/qpack.h): every result against the scalar
 * weight x Q8_0 dot product of the original rows; a token's result bit-identical
 * alone and inside any batch; padding rows never written; any split of
 * the tiles gives the same numbers. */
static void test_qpack(void **state) {
    (void)state;
    if (!qpack_supported(LLMS_TYPE_Q4_0, 32)) {
        printf("# qpack: not available on this CPU\n");
        return;
    }
    assert_false(qpack_supported(LLMS_TYPE_Q5_K, 256));
    assert_false(qpack_supported(LLMS_TYPE_Q4_K, 32));
    assert_false(qpack_supported(LLMS_TYPE_Q4_0, 48));
    const int64_t Ks[2][3] = {{32, 96, 2048}, {256, 512, 2048}};  /* Q4_K: whole super-blocks */
    const int64_t Rs[] = {1, 16, 37};
    const int64_t Ns[] = {1, 3, 8, 13, 21};  /* 21: a full 16-token pass and a partial one */
    const uint32_t types[] = {LLMS_TYPE_Q4_0, LLMS_TYPE_Q8_0, LLMS_TYPE_Q4_K, LLMS_TYPE_Q6_K};
    for (size_t c = 0; c < 4 * 3 * 3; c++) {
            const uint32_t T = types[c / 9];
            const size_t ki = c / 3 % 3, ri = c % 3;
            const int kq = T == LLMS_TYPE_Q4_K || T == LLMS_TYPE_Q6_K;
            const int64_t K = Ks[kq][ki], R = Rs[ri], ldy = R + 5;
            assert_true(qpack_supported(T, K));
            quant_dot_fn ref = quant_vec_dot_get(T, QUANT_ISA_SCALAR);
            const uint64_t rb = type_row_bytes(type_get(T), (uint64_t)K);
            uint8_t *w = xaligned(rb * (uint64_t)R);
            float *x = xaligned((size_t)K * 21 * sizeof(float));
            for (int64_t r = 0; r < R; r++) {
                for (int64_t i = 0; i < K; i++) x[i] = frand() * (1.0f + (float)(r % 5));
                quant_quantize_row(T, x, w + r * rb, K);
            }
            uint8_t *pk = xaligned(qpack_bytes(T, R, K));
            const int64_t n_tiles = (R + QPACK_ROWS - 1) / QPACK_ROWS;
            qpack_pack(T, w, rb, R, K, 0, n_tiles, pk);
            for (int64_t i = 0; i < K * 21; i++) x[i] = frand() * 3.0f;
            uint8_t *act = xaligned((size_t)(K / 32) * 34 + (size_t)(K / 256) * 292);
            float *alone = xaligned((size_t)13 * (size_t)ldy * sizeof(float));
            for (size_t ni = 0; ni < 5; ni++) {
                const int64_t n = Ns[ni];
                qpack_act a;
                void *abuf = xaligned(qpack_act_bytes(n, K));
                qpack_act_init(&a, abuf, n, K);
                for (int64_t t = 0; t < n; t++) qpack_act_quantize(T, &a, t, x + t * K);
                float *y = xaligned((size_t)n * (size_t)ldy * sizeof(float));
                for (int64_t i = 0; i < n * ldy; i++) y[i] = -12345.0f;
                /* Tiles in two calls, as two threads would split them. */
                qpack_matmul_tiles(T, pk, R, K, 0, n_tiles / 2, &a, y, ldy);
                qpack_matmul_tiles(T, pk, R, K, n_tiles / 2, n_tiles, &a, y, ldy);
                for (int64_t t = 0; t < n; t++) {
                    quant_quantize_row(kq ? LLMS_TYPE_Q8_K : LLMS_TYPE_Q8_0, x + t * K, act, K);
                    for (int64_t r = 0; r < R; r++) {
                        float want, got = y[t * ldy + r];
                        ref(K, w + r * rb, act, &want);
                        if (fabsf(got - want) > 1e-5f * (fabsf(want) + 1.0f) * sqrtf((float)K))
                            fail_msg("qpack %s K=%lld R=%lld n=%lld token %lld row %lld: %.7g vs scalar %.7g",
                                     llms_type_name((int32_t)T), (long long)K, (long long)R, (long long)n, (long long)t, (long long)r, got,
                                     want);
                        if (n == 1) alone[r] = got;
                        else if (t == 0 && memcmp(&got, &alone[r], sizeof got) != 0)
                            fail_msg("qpack: token 0 differs alone (%.9g) and in a batch of %lld (%.9g)",
                                     alone[r], (long long)n, got);
                    }
                    for (int64_t r = R; r < ldy; r++) assert_true(y[t * ldy + r] == -12345.0f);
                }
                free(y);
                free(abuf);
            }
            free(w); free(x); free(pk); free(act); free(alone);
        }
}

/* Attention helpers: every level against the portable reference (and exp16
 * against libm's expf). Keys and values are half floats, as the KV cache
 * stores them. */
static void test_vec_ops(void **state) {
    (void)state;
    const int Ds[] = {64, 128, 24, 13};
    const size_t stride = 300;
    float *q = xaligned(160 * sizeof(float));
    uint16_t *k = xaligned(stride * 16 * sizeof(uint16_t)), *kt = xaligned(160 * VEC_BLOCK * sizeof(uint16_t));
    float w[16], ref[16], got[16];
    float *acc_ref = xaligned(160 * sizeof(float)), *acc = xaligned(160 * sizeof(float));
    for (size_t i = 0; i < stride * 16; i++) k[i] = fp32_to_fp16(frand());
    for (size_t i = 0; i < 160 * VEC_BLOCK; i++) kt[i] = fp32_to_fp16(frand());
    for (int i = 0; i < 160; i++) q[i] = frand();
    for (int i = 0; i < 16; i++) w[i] = frand();
    const vec_ops *r = vec_get(VEC_ISA_SCALAR);
    for (int isa = 0; isa < VEC_ISA_COUNT; isa++)
        for (size_t di = 0; di < sizeof Ds / sizeof Ds[0]; di++) {
            const int D = Ds[di];
            const vec_ops *o = vec_get(isa);
            r->scores16(q, kt, D, 0.125f, ref);
            o->scores16(q, kt, D, 0.125f, got);
            for (int p = 0; p < VEC_BLOCK; p++) assert_true(fabsf(got[p] - ref[p]) <= 1e-6f * (float)D);
            /* Several queries at once: each exactly its single-query result. */
            for (int nq = 1; nq <= 11; nq += 2) {
                float many[11 * VEC_BLOCK], one[VEC_BLOCK];
                float *qs = xaligned((size_t)nq * (size_t)D * sizeof(float));
                for (int i = 0; i < nq * D; i++) qs[i] = frand();
                o->scores16n(qs, nq, kt, D, 0.25f, many);
                for (int i = 0; i < nq; i++) {
                    o->scores16(qs + (size_t)i * D, kt, D, 0.25f, one);
                    assert_memory_equal(one, many + i * VEC_BLOCK, sizeof one);
                }
                free(qs);
            }
            for (int n = 1; n <= 16; n += 5) {
                for (int d = 0; d < D; d++) acc_ref[d] = acc[d] = q[d];
                r->axpys(acc_ref, k, stride, w, n, D);
                o->axpys(acc, k, stride, w, n, D);
                for (int d = 0; d < D; d++) assert_true(fabsf(acc[d] - acc_ref[d]) <= 1e-5f * (float)n);
            }
        }
    /* exp16: weights exp(s - m) over the range softmax sees, partial blocks,
     * entries past n untouched. */
    for (int isa = 0; isa < VEC_ISA_COUNT; isa++) {
        const vec_ops *o = vec_get(isa);
        for (int n = 1; n <= VEC_BLOCK; n += 3) {
            float s[VEC_BLOCK], want_sum = 0;
            for (int i = 0; i < VEC_BLOCK; i++) s[i] = i < n ? -90.0f * (float)(i * i) / 256.0f + frand() : 777.0f;
            float m = 0.5f, keep[VEC_BLOCK];
            memcpy(keep, s, sizeof s);
            float sum = o->exp16(s, n, m);
            for (int i = 0; i < VEC_BLOCK; i++) {
                if (i >= n) {
                    assert_true(s[i] == 777.0f);
                    continue;
                }
                const float want = expf(keep[i] - m);
                want_sum += want;
                if (fabsf(s[i] - want) > 2e-7f * want + 1e-38f)
                    fail_msg("exp16 isa %d: exp(%g) = %.9g, libm %.9g", isa, keep[i] - m, s[i], want);
            }
            assert_true(fabsf(sum - want_sum) <= 1e-6f * want_sum);
            float mx = keep[0];
            for (int i = 1; i < n; i++) mx = keep[i] > mx ? keep[i] : mx;
            assert_true(o->max16(keep, n) == mx);
        }
    }
    free(q); free(k); free(kt); free(acc_ref); free(acc);
}

/* attn_block over a sequence of blocks (the last one partial; keys and
 * values half floats) against a softmax computed in double over all the
 * scores at once, at every level;
 * and each query's result bit-identical whatever group it is computed in
 * (deterministic mode decodes a token alone and in batches with different
 * groupings). */
static void test_attn_block(void **state) {
    (void)state;
    const int Ds[] = {64, 128, 24};
    const int n_pos[] = {1, 16, 37, 100};
    const size_t stride = 130; /* kv_dim: values of other heads between rows */
    for (int isa = 0; isa < VEC_ISA_COUNT; isa++)
        for (size_t di = 0; di < sizeof Ds / sizeof Ds[0]; di++)
            for (size_t pi = 0; pi < sizeof n_pos / sizeof n_pos[0]; pi++) {
                const vec_ops *o = vec_get(isa);
                const int D = Ds[di], P = n_pos[pi], nb = (P + VEC_BLOCK - 1) / VEC_BLOCK, nq = 7;
                const float scale = 1.0f / sqrtf((float)D);
                float *qs = xaligned((size_t)nq * D * sizeof(float));
                uint16_t *kt = xaligned((size_t)nb * D * VEC_BLOCK * sizeof(uint16_t));
                uint16_t *v = xaligned((size_t)nb * VEC_BLOCK * stride * sizeof(uint16_t));
                float *acc = xaligned((size_t)VEC_MAX_Q * D * sizeof(float));
                float *out = xaligned((size_t)nq * D * sizeof(float)), *one = xaligned((size_t)D * sizeof(float));
                /* Scores up to about +-8 so the maximum moves between blocks. */
                for (int i = 0; i < nq * D; i++) qs[i] = 3.0f * frand();
                for (int i = 0; i < nb * D * VEC_BLOCK; i++) kt[i] = fp32_to_fp16(frand());
                for (size_t i = 0; i < (size_t)nb * VEC_BLOCK * stride; i++) v[i] = fp32_to_fp16(frand());
                attn_state st;
                attn_start(&st, acc, nq, D);
                for (int b = 0; b < nb; b++) {
                    const int cnt = P - b * VEC_BLOCK < VEC_BLOCK ? P - b * VEC_BLOCK : VEC_BLOCK;
                    o->attn_block(qs, nq, kt + (size_t)b * D * VEC_BLOCK, v + (size_t)b * VEC_BLOCK * stride, stride,
                                  cnt, D, scale, &st);
                }
                attn_finish(&st, nq, D, out, (size_t)D);
                for (int i = 0; i < nq; i++) {
                    /* Reference: the full softmax in double. */
                    double sc[128], mx = -1e300, sum = 0;
                    for (int p = 0; p < P; p++) {
                        double d = 0;
                        const uint16_t *kb = kt + (size_t)(p / VEC_BLOCK) * D * VEC_BLOCK + p % VEC_BLOCK;
                        for (int e = 0; e < D; e++) d += (double)qs[i * D + e] * fp16_to_fp32(kb[e * VEC_BLOCK]);
                        sc[p] = d * scale;
                        mx = sc[p] > mx ? sc[p] : mx;
                    }
                    for (int p = 0; p < P; p++) sum += sc[p] = exp(sc[p] - mx);
                    for (int e = 0; e < D; e++) {
                        double want = 0;
                        for (int p = 0; p < P; p++) want += sc[p] / sum * fp16_to_fp32(v[(size_t)p * stride + e]);
                        if (fabs(out[i * D + e] - want) > 2e-5)
                            fail_msg("attn_block isa %d D %d P %d query %d [%d]: %.7g, want %.7g", isa, D, P, i, e,
                                     out[i * D + e], want);
                    }
                    /* The same query alone: the same bits. */
                    attn_start(&st, acc, 1, D);
                    for (int b = 0; b < nb; b++) {
                        const int cnt = P - b * VEC_BLOCK < VEC_BLOCK ? P - b * VEC_BLOCK : VEC_BLOCK;
                        o->attn_block(qs + (size_t)i * D, 1, kt + (size_t)b * D * VEC_BLOCK,
                                      v + (size_t)b * VEC_BLOCK * stride, stride, cnt, D, scale, &st);
                    }
                    attn_finish(&st, 1, D, one, (size_t)D);
                    assert_memory_equal(one, out + (size_t)i * D, (size_t)D * sizeof(float));
                }
                free(qs); free(kt); free(v); free(acc); free(out); free(one);
            }
    /* silu_mul against the formula in double, over the range of gate values
     * a model produces and beyond (exp overflow and underflow). */
    for (int isa = 0; isa < VEC_ISA_COUNT; isa++) {
        const vec_ops *o = vec_get(isa);
        enum { N = 203 };
        float g[N], u[N], g0[N];
        for (int i = 0; i < N; i++) {
            g0[i] = g[i] = i < 8 ? (float)((i - 4) * 40) : 12.0f * frand();
            u[i] = frand();
        }
        o->silu_mul(g, u, N);
        for (int i = 0; i < N; i++) {
            const double x = g0[i], want = x / (1.0 + exp(-x)) * u[i];
            if (fabs(g[i] - want) > 1e-6 * fabs(want) + 1e-30)
                fail_msg("silu_mul isa %d: silu(%g) * %g = %.9g, want %.9g", isa, g0[i], u[i], g[i], want);
        }
    }
}

/* The host-side helpers decode and the sampler lean on (rmsnorm, sum_exp,
 * any_nan, max_first), each level against double-precision formulas, at
 * lengths that leave every tail size. */
static void test_vec_row_ops(void **state) {
    (void)state;
    enum { MAXN = 203 };
    for (int isa = 0; isa < VEC_ISA_COUNT; isa++) {
        const vec_ops *o = vec_get(isa);
        for (int n = 1; n <= MAXN; n += (n < 40 ? 1 : 27)) {
            float x[MAXN], g[MAXN], out[MAXN];
            for (int i = 0; i < n; i++) {
                x[i] = 4.0f * frand();
                g[i] = 0.5f + frand();
            }
            /* rmsnorm: the scale from a double sum; in place equals apart. */
            double ss = 0;
            for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
            const double scale = 1.0 / sqrt(ss / n + 1e-5);
            o->rmsnorm(out, x, g, (size_t)n, 1e-5f);
            for (int i = 0; i < n; i++) {
                const double want = x[i] * scale * g[i];
                if (fabs(out[i] - want) > 4e-7 * fabs(want) + 1e-30)
                    fail_msg("rmsnorm isa %d n %d [%d]: %.9g, want %.9g", isa, n, i, out[i], want);
            }
            float inplace[MAXN];
            memcpy(inplace, x, sizeof inplace);
            o->rmsnorm(inplace, inplace, g, (size_t)n, 1e-5f);
            assert_memory_equal(inplace, out, (size_t)n * sizeof(float));

            /* max_first: ties go to the lowest index; the maximum planted
             * twice, last of all and somewhere before. */
            x[n - 1] = 9.5f;
            const int dup = (n * 7) / 11;
            x[dup] = 9.5f;
            size_t first = (size_t)-1;
            assert_true(o->max_first(x, (size_t)n, &first) == 9.5f);
            assert_int_equal(first, (size_t)dup);

            /* sum_exp, with banned (-inf) entries adding nothing. */
            x[0] = -INFINITY;
            if (n > 2) x[n / 2] = -INFINITY;
            double want = 0;
            for (int i = 0; i < n; i++) want += exp((double)x[i] - 9.5);
            const double got = o->sum_exp(x, (size_t)n, 9.5f);
            if (fabs(got - want) > 3e-7 * want)
                fail_msg("sum_exp isa %d n %d: %.12g, want %.12g", isa, n, got, want);

            /* any_nan finds one wherever it is. */
            assert_false(o->any_nan(x, (size_t)n));
            for (int at = 0; at < n; at += 1 + n / 5) {
                const float keep = x[at];
                x[at] = NAN;
                if (!o->any_nan(x, (size_t)n)) fail_msg("any_nan isa %d n %d missed [%d]", isa, n, at);
                x[at] = keep;
            }
        }
    }
}

/* qpack_act_quantize for Q4_0 / Q8_0 weights: values, scales and
 * corrections bit for bit those of the Q8_0 quantizer (the reference dot
 * product's), on ordinary rows and on blocks of zeros, NaN, infinities,
 * tiny and huge values. */
static void test_qpack_act_quantize(void **state) {
    (void)state;
    const int64_t K = 512, nb = K / 32;
    float x[512];
    blk_q8_0 ref[16];
    void *buf = xaligned(qpack_act_bytes(1, K));
    for (int rep = 0; rep < 40; rep++) {
        for (int64_t i = 0; i < K; i++) x[i] = frand() * (float)(1 + rep % 7) * (rep % 5 == 0 ? 1e-3f : 1.0f);
        if (rep % 4 == 1) {
            for (int i = 0; i < 32; i++) x[32 + i] = 0.0f;        /* a zero block */
            x[70] = NAN;                                          /* NaN among values */
            for (int i = 0; i < 32; i++) x[96 + i] = NAN;         /* an all-NaN block */
            x[130] = INFINITY;                                    /* an infinity */
            for (int i = 0; i < 32; i++) x[160 + i] = 1e-30f * (float)(i - 16); /* tiny: the scale rounds to 0 */
            x[200] = 3e38f;                                       /* the scale overflows half */
            x[230] = -65504.0f * 127.0f;                          /* exactly the largest half scale */
        }
        quant_quantize_row(LLMS_TYPE_Q8_0, x, ref, K);
        for (int z = 0; z < 2; z++) {
            const uint32_t T = z ? LLMS_TYPE_Q8_0 : LLMS_TYPE_Q4_0;
            const int zero = z ? 128 : 8;
            qpack_act a;
            qpack_act_init(&a, buf, 1, K);
            qpack_act_quantize(T, &a, 0, x);
            for (int64_t b = 0; b < nb; b++) {
                assert_memory_equal(a.q + 32 * b, ref[b].qs, 32);
                const float d = half_to_f32(ref[b].d);
                assert_memory_equal(&a.d[b], &d, sizeof d);
                int sum = 0;
                for (int j = 0; j < 32; j++) sum += ref[b].qs[j];
                assert_int_equal(a.corr[b], -zero * sum);
            }
        }
    }
    free(buf);
}

/* fgemm on F32, F16 and BF16 weights: shapes that leave partial token
 * groups (n % 4), partial row groups (N % 6), partial tasks (N % 48) and a
 * partial 16-column step (K % 16), on a 2-thread pool. */
static void test_fgemm(void **state) {
    (void)state;
    if (!fgemm_supported(LLMS_TYPE_F16)) {
        printf("# fgemm: not available on this CPU\n");
        return;
    }
    assert_false(fgemm_supported(LLMS_TYPE_Q4_0));
    threadpool *pool;
    assert_int_equal(pool_create(&lalloc_libc, 2, &pool), LLMS_OK);
    const uint32_t types[] = {LLMS_TYPE_F32, LLMS_TYPE_F16, LLMS_TYPE_BF16};
    const int64_t Ks[] = {16, 37, 2048}, Ns[] = {1, 13, 101}, ns[] = {1, 6, 9};
    for (int ti = 0; ti < 3; ti++)
        for (int c = 0; c < 27; c++) {
            const uint32_t T = types[ti];
            const int64_t K = Ks[c / 9], N = Ns[c / 3 % 3], n = ns[c % 3];
            assert_true(fgemm_supported(T));
            const uint64_t rb = type_row_bytes(type_get(T), (uint64_t)K);
            uint8_t *wd = xaligned(rb * (uint64_t)N);
            float *row = xaligned((size_t)K * sizeof(float)), *wf = xaligned((size_t)(N * K) * sizeof(float));
            for (int64_t r = 0; r < N; r++) {
                for (int64_t k = 0; k < K; k++) row[k] = frand() * (1.0f + (float)(r % 3));
                quant_quantize_row(T, row, wd + r * rb, K);
                quant_dequantize_row(T, wd + r * rb, wf + r * K, K);
                for (int64_t k = 0; k < K; k++) assert_true(fabsf(wf[r * K + k] - row[k]) <= 0.01f * fabsf(row[k]));
            }
            float *x = xaligned((size_t)(n * K) * sizeof(float)), *y = xaligned((size_t)(n * N) * sizeof(float)),
                  *y1 = xaligned((size_t)N * sizeof(float));
            for (int64_t i = 0; i < n * K; i++) x[i] = frand();
            const weight w = {.type = T, .cols = K, .rows = N, .row_bytes = rb, .data = wd, .name = "w"};
            fgemm(pool, &w, x, n, y);
            for (int64_t t = 0; t < n; t++) {
                for (int64_t r = 0; r < N; r++) {
                    double ref = 0, mag = 0;
                    for (int64_t k = 0; k < K; k++) {
                        ref += (double)x[t * K + k] * wf[r * K + k];
                        mag += fabs((double)x[t * K + k] * wf[r * K + k]);
                    }
                    if (fabs(y[t * N + r] - ref) > 1e-5 * mag + 1e-30)
                        fail_msg("%s K %lld N %lld n %lld: y[%lld][%lld] = %.9g, reference %.9g",
                                 llms_type_name((int32_t)T), (long long)K, (long long)N, (long long)n, (long long)t,
                                 (long long)r, y[t * N + r], ref);
                }
                /* The token alone gives the same row, bit for bit. */
                fgemm(pool, &w, x + t * K, 1, y1);
                assert_memory_equal(y1, y + t * N, (size_t)N * sizeof(float));
            }
            free(wd), free(row), free(wf), free(x), free(y), free(y1);
        }
    pool_destroy(pool);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unpack_matches_dequantize),
        cmocka_unit_test(test_attn_block),
        cmocka_unit_test(test_tile_products),
        cmocka_unit_test(test_qdot512),
        cmocka_unit_test(test_qpack),
        cmocka_unit_test(test_qpack_act_quantize),
        cmocka_unit_test(test_fgemm),
        cmocka_unit_test(test_vec_ops),
        cmocka_unit_test(test_vec_row_ops),
    };
    return cmocka_run_group_tests_name("kernels", tests, NULL, NULL);
}
