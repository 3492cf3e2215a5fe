/*
 * Cooperative-matrix prefill matmul: whether a device uses it.
 *
 * matmul_coopmat.comp cannot run in CI (lavapipe has no cooperative
 * matrices), so it is never trusted blindly: where a device has what it
 * takes (vk_coopmat_lack), vk_dev_create ends with a self-check that runs
 * it and the portable matmul.comp on the same random products, one per
 * weight type, with sizes off the tiles' multiples (partial tiles in rows,
 * tokens and K, strides wider than the rows). Any difference beyond f16
 * rounding, or any error on the way, keeps matmul.comp for that device, and
 * the context's log says why.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vk.h"
#include "../../core/error.h"
#include "../../quant/quant.h"
#include "../../quant/types.h"

/* ---- test hooks ---------------------------------------------------------- */

static pthread_mutex_t g_cm_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_cm_force, g_cm_corrupt;

void vk_debug_coopmat(int force, int corrupt) {
    pthread_mutex_lock(&g_cm_lock);
    g_cm_force = force;
    g_cm_corrupt = corrupt;
    pthread_mutex_unlock(&g_cm_lock);
}

void vk_debug_coopmat_get(int *force, int *corrupt) {
    pthread_mutex_lock(&g_cm_lock);
    if (force) *force = g_cm_force;
    if (corrupt) *corrupt = g_cm_corrupt;
    pthread_mutex_unlock(&g_cm_lock);
}

int vk_env_flag(const char *name) {
    const char *v = getenv(name);
    return v && v[0] == '1';
}

/* ---- comparison ---------------------------------------------------------- */

int vk_matmul_compare(const float *got, const float *want, const double *mag, size_t n, double rel,
                      double abs_tol, char *why, size_t why_len) {
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - (double)want[i]);
        /* Written so that a NaN anywhere fails. */
        if (!(err <= rel * mag[i] + abs_tol)) {
            if (why && why_len)
                snprintf(why, why_len, "element %zu: %.7g, matmul.comp gives %.7g (tolerance %.3g)", i,
                         (double)got[i], (double)want[i], rel * mag[i] + abs_tol);
            return 0;
        }
    }
    return 1;
}

/* ---- self-check ---------------------------------------------------------- */

static uint32_t next_rand(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (uint32_t)(*s >> 16);
}

static float rand_unit(uint64_t *s) { return (float)(next_rand(s) % 2000001) / 1000000.0f - 1.0f; }

/* 64 rows + 3 and 64 tokens + 6: two tiles each way, the second partial
 * (and 5 and 5 16x16 tiles of matmul.comp, the last partial). */
#define SC_ROWS 67u
#define SC_TOK 70u

typedef struct sc_case {
    uint32_t type, cols;
} sc_case;

/* K: 83 and 91 leave a partial 32-wide slice; the block types take whole
 * blocks (5 of 32, 1 of 256). */
static const sc_case k_cases[] = {{LLMS_TYPE_F32, 83},   {LLMS_TYPE_F16, 91},  {LLMS_TYPE_Q8_0, 160},
                                  {LLMS_TYPE_Q4_0, 160}, {LLMS_TYPE_Q4_K, 256}, {LLMS_TYPE_Q6_K, 256}};

typedef struct sc_bufs {
    vk_buf w, x, ref, cand;
} sc_bufs;

static void sc_free(vk_dev *d, sc_bufs *b) {
    vk_buf_destroy(d, &b->w);
    vk_buf_destroy(d, &b->x);
    vk_buf_destroy(d, &b->ref);
    vk_buf_destroy(d, &b->cand);
}

/* One weight type: 0 and LLMS_OK if the outputs agree, 1 and LLMS_OK if
 * they differ (reason in why), an error status otherwise. */
static llms_status check_case(vk_dev *d, const sc_case *c, const char *shader, uint32_t tile, int corrupt,
                              uint64_t *seed, int *differ, char *why, size_t why_len) {
    *differ = 0;
    const type_traits *tt = type_get(c->type);
    if (!tt) return err_set(LLMS_ERR_INTERNAL, "self-check: no type %u", c->type);
    const uint32_t rows = SC_ROWS, n_tok = SC_TOK, cols = c->cols;
    const uint32_t row_bytes = (uint32_t)type_row_bytes(tt, cols);
    const uint32_t w_off = 12, x_stride = cols + 5, y_stride = rows + 3;
    const size_t wbytes = (size_t)w_off + (size_t)rows * row_bytes;
    const size_t ny = (size_t)n_tok * y_stride;
    uint8_t *wb = xcalloc(d->a, 1, wbytes);
    float *src = xcalloc(d->a, cols, sizeof *src);
    float *deq = xcalloc(d->a, (size_t)rows * cols, sizeof *deq);
    float *x = xcalloc(d->a, (size_t)n_tok * x_stride, sizeof *x);
    float *ref = xcalloc(d->a, ny, sizeof *ref);
    float *got = xcalloc(d->a, ny, sizeof *got);
    double *mag = xcalloc(d->a, ny, sizeof *mag);
    sc_bufs b;
    memset(&b, 0, sizeof b);
    llms_status st = LLMS_OK;
    if (!wb || !src || !deq || !x || !ref || !got || !mag) {
        st = ERR_OOM();
        goto done;
    }
    for (uint32_t r = 0; r < rows; r++) {
        for (uint32_t k = 0; k < cols; k++) src[k] = rand_unit(seed);
        uint8_t *row = wb + w_off + (size_t)r * row_bytes;
        if (c->type == LLMS_TYPE_F32) {
            memcpy(row, src, (size_t)cols * sizeof *src);
        } else if (c->type == LLMS_TYPE_F16) {
            for (uint32_t k = 0; k < cols; k++) {
                uint16_t h = fp32_to_fp16(src[k]);
                memcpy(row + 2 * k, &h, 2);
            }
        } else {
            quant_quantize_row(c->type, src, row, cols);
        }
        quant_dequantize_row(c->type, row, deq + (size_t)r * cols, cols);
    }
    for (size_t i = 0; i < (size_t)n_tok * x_stride; i++) x[i] = rand_unit(seed);
    /* The tolerance's scale: sum_c |w_c x_c| per element (0 in the stride's
     * padding, which neither shader may write). */
    for (uint32_t t = 0; t < n_tok; t++)
        for (uint32_t r = 0; r < rows; r++) {
            double m = 0;
            for (uint32_t k = 0; k < cols; k++)
                m += fabs((double)deq[(size_t)r * cols + k] * x[(size_t)t * x_stride + k]);
            mag[(size_t)t * y_stride + r] = m;
        }
    if ((st = vk_buf_create(d, wbytes, 1, &b.w)) != LLMS_OK || (st = vk_buf_create(d, (uint64_t)n_tok * x_stride * 4, 1, &b.x)) != LLMS_OK ||
        (st = vk_buf_create(d, ny * 4, 1, &b.ref)) != LLMS_OK || (st = vk_buf_create(d, ny * 4, 1, &b.cand)) != LLMS_OK)
        goto done;
    if ((st = vk_buf_write(d, &b.w, 0, wb, wbytes)) != LLMS_OK ||
        (st = vk_buf_write(d, &b.x, 0, x, (uint64_t)n_tok * x_stride * 4)) != LLMS_OK ||
        (st = vk_buf_write(d, &b.ref, 0, ref, ny * 4)) != LLMS_OK ||
        (st = vk_buf_write(d, &b.cand, 0, got, ny * 4)) != LLMS_OK)
        goto done;
    struct { uint32_t rows, cols, row_bytes, w_off, x_stride, y_stride, n_tok; } pc = {
        rows, cols, row_bytes, w_off, x_stride, y_stride, n_tok};
    const vk_buf *br[3] = {&b.w, &b.x, &b.ref}, *bc[3] = {&b.w, &b.x, &b.cand};
    if ((st = vk_begin(d)) != LLMS_OK) goto done;
    st = vk_dispatch(d, "matmul", c->type, br, 3, &pc, sizeof pc, (rows + 15) / 16, (n_tok + 15) / 16, 1);
    if (st == LLMS_OK)
        st = vk_dispatch(d, shader, c->type, bc, 3, &pc, sizeof pc, (rows + tile - 1) / tile,
                         (n_tok + tile - 1) / tile, 1);
    llms_status st2 = vk_submit(d);   /* also ends a recording a dispatch failed in */
    if (st == LLMS_OK) st = st2;
    if (st != LLMS_OK) goto done;
    if ((st = vk_buf_read(d, &b.ref, 0, ref, ny * 4)) != LLMS_OK || (st = vk_buf_read(d, &b.cand, 0, got, ny * 4)) != LLMS_OK)
        goto done;
    if (corrupt) {
        /* Test hook: one element off by a quarter of its scale. */
        size_t i = (size_t)(n_tok / 2) * y_stride + rows / 2;
        got[i] += (float)(0.25 * mag[i] + 1.0);
    }
    char cmp[160];
    if (!vk_matmul_compare(got, ref, mag, ny, VK_COOPMAT_REL, VK_COOPMAT_ABS, cmp, sizeof cmp)) {
        *differ = 1;
        snprintf(why, why_len, "%s differs from matmul on %s weights (%u rows x %u tokens x %u): %s", shader,
                 tt->name ? tt->name : "?", rows, n_tok, cols, cmp);
    }
done:
    sc_free(d, &b);
    xfree(d->a, wb);
    xfree(d->a, src);
    xfree(d->a, deq);
    xfree(d->a, x);
    xfree(d->a, ref);
    xfree(d->a, got);
    xfree(d->a, mag);
    return st;
}

llms_status vk_matmul_selfcheck(vk_dev *d, const char *shader, uint32_t tile, char *why, size_t why_len) {
    int corrupt;
    vk_debug_coopmat_get(NULL, &corrupt);
    uint64_t seed = 0x2545F4914F6CDD1Dull;   /* fixed: a failure reproduces */
    if (why && why_len) why[0] = 0;
    for (size_t i = 0; i < sizeof k_cases / sizeof k_cases[0]; i++) {
        int differ;
        char reason[384];
        reason[0] = 0;
        llms_status st = check_case(d, &k_cases[i], shader, tile, corrupt, &seed, &differ, reason, sizeof reason);
        if (st != LLMS_OK) {
            if (why && why_len) snprintf(why, why_len, "%s", err_message());
            return st;
        }
        if (differ) {
            if (why && why_len) snprintf(why, why_len, "%s", reason);
            return err_set(LLMS_ERR_BACKEND, "cooperative-matrix self-check: %s", reason);
        }
    }
    return LLMS_OK;
}

/* ---- decision ------------------------------------------------------------ */

llms_status vk_coopmat_setup(vk_dev *d, const char *lack, int env_off) {
    d->coopmat = 0;
    d->coopmat_failed = 0;
    if (lack) {
        snprintf(d->coopmat_note, sizeof d->coopmat_note, "no cooperative matrices (%s): portable matmul", lack);
        return LLMS_OK;
    }
    if (env_off) {
        snprintf(d->coopmat_note, sizeof d->coopmat_note,
                 "cooperative matrices disabled by LLMS_VK_NO_COOPMAT: portable matmul");
        return LLMS_OK;
    }
    char why[256];
    llms_status st = vk_matmul_selfcheck(d, d->coopmat_shader, d->coopmat_tile, why, sizeof why);
    if (st == LLMS_OK) {
        d->coopmat = 1;
        snprintf(d->coopmat_note, sizeof d->coopmat_note, "cooperative-matrix matmul (%s, self-check passed)",
                 d->coopmat_shader);
        return LLMS_OK;
    }
    /* A lost device stays lost: nothing is left to fall back on. */
    if (d->lost) return st;
    d->coopmat_failed = 1;
    snprintf(d->coopmat_note, sizeof d->coopmat_note,
             "cooperative matrices disabled, the start-up self-check failed (%.180s): portable matmul", why);
    err_clear();
    return LLMS_OK;
}
