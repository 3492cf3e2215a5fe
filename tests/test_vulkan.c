/*
 * Vulkan backend: device listing and context selection, and every shader
 * against the CPU reference on random shapes (odd sizes, sizes that are not
 * multiples of the 16x16 tiles or of the 64-wide workgroups).
 *
 * Needs a Vulkan 1.2 device; lavapipe (mesa-vulkan-drivers) serves. Without
 * one the tests skip, except in CI (CI set), where they fail.
 * The Khronos validation layer is on (LLMS_VK_VALIDATION=1, the default here
 * when the layer is installed; set it to 0 to turn it off), and any error
 * it reports fails the test that caused it.
 *
 * Tolerances (float32 on both sides; the device sums in another order and
 * may fuse multiply-adds):
 *   matrix products: |y - ref| <= 1e-4 * sum_c |w_c x_c| + 1e-5, against a
 *     double-precision dot of the CPU's own dequantized weights (the shader's
 *     dequantization is then exact up to that rounding); the
 *     cooperative-matrix matmul (f16 inputs) VK_COOPMAT_REL instead of 1e-4;
 *   rmsnorm, rope, swiglu, add: 1e-5 relative + 1e-6 absolute;
 *   softmax: 1e-5 relative + 1e-7 absolute;
 *   attention: 1e-4 relative + 1e-5 absolute against a double softmax.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "llmserve.h"
#include "backend/backend.h"
#include "backend/vulkan/kv_resident.h"
#include "backend/vulkan/ops.h"
#include "backend/vulkan/shaders.h"
#include "backend/vulkan/vk.h"
#include "backend/vulkan/vk_ctx.h"
#include "model/model.h"
#include "quant/quant.h"
#include "quant/types.h"
#include "session/session.h"
#include "support/fixtures.h"

static vk_dev *g_dev;
static const char *g_skip_reason;

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 16);
}
static float frand(void) { return (float)(rnd() % 2000001) / 1000000.0f - 1.0f; }  /* [-1, 1] */
static uint32_t urange(uint32_t lo, uint32_t hi) { return lo + rnd() % (hi - lo + 1); }

/* Mesa's drivers allocate some state once per process (under
 * pthread_once) and keep it in globals; the loader unloads them with the
 * last instance, after which LeakSanitizer sees that state as leaked.
 * Keeping the drivers resident keeps it reachable. Missing ones are
 * simply not there. */
static void pin_mesa_drivers(void) {
    static const char *libs[] = {"libvulkan_lvp.so", "libvulkan_intel.so", "libvulkan_intel_hasvk.so",
                                 "libvulkan_radeon.so"};
    for (size_t i = 0; i < sizeof libs / sizeof libs[0]; i++) dlopen(libs[i], RTLD_LAZY | RTLD_NODELETE);
}

static int group_setup(void **state) {
    (void)state;
    pin_mesa_drivers();
    vk_inst *vi;
    if (vk_inst_create(&lalloc_libc, &vi) != LLMS_OK) {
        g_skip_reason = llms_errmsg();
        return 0;
    }
    int32_t idx = vk_inst_pick(vi, 1);
    if (idx < 0) {
        vk_inst_destroy(vi);
        g_skip_reason = "no Vulkan 1.2 device";
        return 0;
    }
    if (vk_dev_create(vi, (uint32_t)idx, 0, &g_dev) != LLMS_OK) {
        g_skip_reason = llms_errmsg();
        g_dev = NULL;
    }
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    vk_dev_destroy(g_dev);
    return 0;
}

/* Skips (or fails in CI) without a device. */
static void need_device(void) {
    if (g_dev) return;
    if (getenv("CI")) fail_msg("no Vulkan device in CI: %s", g_skip_reason ? g_skip_reason : "?");
    print_message("skipping: no Vulkan device (%s)\n", g_skip_reason ? g_skip_reason : "?");
    skip();
}

static uint64_t g_val_allowed;   /* errors provoked on purpose */

static void check_validation(void) {
    if (vk_validation_errors() > g_val_allowed)
        fail_msg("validation layer reported %llu error(s); last: %s",
                 (unsigned long long)vk_validation_errors(), vk_validation_last());
}

static vk_buf make_buf(const void *data, uint64_t bytes) {
    vk_buf b;
    assert_int_equal(vk_buf_create(g_dev, bytes, 1, &b), LLMS_OK);
    if (data) assert_int_equal(vk_buf_write(g_dev, &b, 0, data, bytes), LLMS_OK);
    else memset(b.map, 0, bytes);
    return b;
}

static float *rand_vec(size_t n) {
    float *v = malloc(n * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) v[i] = frand();
    return v;
}

static void close_rel(const float *got, const float *want, size_t n, double rel, double abs_tol,
                      const char *what) {
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - want[i]);
        if (!(err <= rel * fabs(want[i]) + abs_tol))
            fail_msg("%s: element %zu: got %.9g want %.9g", what, i, got[i], want[i]);
    }
}

/* ---- device listing and context selection -------------------------- */

static void test_device_api(void **state) {
    (void)state;
    need_device();
    int32_t n = -1;
    assert_int_equal(llms_device_count(&n), LLMS_OK);
    assert_true(n >= 1);
    for (int32_t i = 0; i < n; i++) {
        llms_device_info info;
        llms_device_info_init(&info);
        assert_int_equal(llms_device_get_info(i, &info), LLMS_OK);
        assert_true(info.name[0] != 0);
        assert_true(info.type >= LLMS_DEVICE_OTHER && info.type <= LLMS_DEVICE_CPU);
        assert_true(info.api_version >= ((1u << 22) | (2u << 12)));
        assert_true(info.max_workgroup_size >= 128);
        print_message("device %d: %s type %d subgroup %u memory %llu MiB features 0x%x\n", (int)i, info.name,
                      (int)info.type, info.subgroup_size, (unsigned long long)(info.memory_bytes >> 20),
                      info.features);
    }
    llms_device_info info;
    llms_device_info_init(&info);
    assert_int_equal(llms_device_get_info(n, &info), LLMS_ERR_NOT_FOUND);
    assert_int_equal(llms_device_get_info(-1, &info), LLMS_ERR_NOT_FOUND);
    assert_int_equal(llms_device_count(NULL), LLMS_ERR_INVALID_ARGUMENT);
    /* A short (older) output struct gets only the fields that fit. */
    struct { uint32_t struct_size; int32_t type; char c; } small = {8, -5, 'x'};
    assert_int_equal(llms_device_get_info(0, (llms_device_info *)&small), LLMS_OK);
    assert_true(small.type >= 0);
    assert_int_equal(small.c, 'x');

    /* An explicit request gets the device, lavapipe included. */
    llms_context_params p;
    llms_context_params_init(&p);
    p.backend = LLMS_BACKEND_VULKAN;
    llms_context *ctx;
    assert_int_equal(llms_context_create(&p, &ctx), LLMS_OK);
    assert_int_equal(llms_context_backend(ctx), LLMS_BACKEND_VULKAN);
    llms_context_destroy(ctx);
    /* A bad index is an error, and the CPU backend stays usable. */
    p.device_index = n + 3;
    assert_int_equal(llms_context_create(&p, &ctx), LLMS_ERR_NOT_FOUND);
    assert_null(ctx);
    assert_non_null(strstr(llms_errmsg(), "device_index"));
    p.device_index = 0;
    assert_int_equal(llms_context_create(&p, &ctx), LLMS_OK);
    llms_context_destroy(ctx);
    llms_context_params_init(&p);
    p.backend = LLMS_BACKEND_CPU;
    assert_int_equal(llms_context_create(&p, &ctx), LLMS_OK);
    assert_int_equal(llms_context_backend(ctx), LLMS_BACKEND_CPU);
    llms_context_destroy(ctx);
    /* AUTO never lands on unfinished code or on a CPU driver. */
    llms_context_params_init(&p);
    assert_int_equal(llms_context_create(&p, &ctx), LLMS_OK);
    if (!vk_forward_ready()) assert_int_equal(llms_context_backend(ctx), LLMS_BACKEND_CPU);
    llms_context_destroy(ctx);
    check_validation();
}

static void test_memory_budget(void **state) {
    (void)state;
    need_device();
    vk_inst *vi;
    assert_int_equal(vk_inst_create(&lalloc_libc, &vi), LLMS_OK);
    vk_dev *d;
    assert_int_equal(vk_dev_create(vi, (uint32_t)vk_inst_pick(vi, 1), 1 << 20, &d), LLMS_OK);
    vk_buf a, b;
    assert_int_equal(vk_buf_create(d, 768 << 10, 0, &a), LLMS_OK);
    assert_int_equal(vk_buf_create(d, 512 << 10, 0, &b), LLMS_ERR_DEVICE_MEMORY);
    assert_non_null(strstr(llms_errmsg(), "budget"));
    /* Device-local round trip, through staging where not host-visible. */
    uint8_t src[1001], dst[1001];
    for (int i = 0; i < 1001; i++) src[i] = (uint8_t)(i * 7);
    assert_int_equal(vk_buf_write(d, &a, 12, src, sizeof src), LLMS_OK);
    assert_int_equal(vk_buf_read(d, &a, 12, dst, sizeof dst), LLMS_OK);
    assert_memory_equal(src, dst, sizeof src);
    vk_buf_destroy(d, &a);
    assert_int_equal(vk_buf_create(d, 512 << 10, 0, &b), LLMS_OK);
    vk_buf_destroy(d, &b);
    vk_dev_destroy(d);
    check_validation();
}

/* ---- matrix products --------------------------------------------------- */

static const uint32_t k_types[] = {LLMS_TYPE_F32, LLMS_TYPE_F16, LLMS_TYPE_Q8_0,
                                   LLMS_TYPE_Q4_0, LLMS_TYPE_Q4_K, LLMS_TYPE_Q6_K};

/* Random weights of `type` as stored in a file, and the CPU's dequantized
 * view of the same bytes. */
static uint8_t *make_weights(uint32_t type, uint32_t rows, uint32_t cols, uint32_t *row_bytes, float **deq) {
    const type_traits *tt = type_get(type);
    assert_non_null(tt);
    *row_bytes = (uint32_t)type_row_bytes(tt, cols);
    uint8_t *w = malloc((size_t)rows * *row_bytes + 4);
    float *f = malloc((size_t)rows * cols * sizeof *f);
    assert_true(w && f);
    float *src = rand_vec(cols);
    for (uint32_t r = 0; r < rows; r++) {
        for (uint32_t c = 0; c < cols; c++) src[c] = frand();
        uint8_t *row = w + (size_t)r * *row_bytes;
        if (type == LLMS_TYPE_F32) memcpy(row, src, (size_t)cols * 4);
        else if (type == LLMS_TYPE_F16)
            for (uint32_t c = 0; c < cols; c++) {
                uint16_t h = fp32_to_fp16(src[c]);
                memcpy(row + 2 * c, &h, 2);
            }
        else {
            assert_true(quant_can_quantize(type));
            quant_quantize_row(type, src, row, cols);
        }
        quant_dequantize_row(type, row, f + (size_t)r * cols, cols);
    }
    free(src);
    *deq = f;
    return w;
}

/* The matrix products' relative tolerance (see the top). */
static double g_mat_rel = 1e-4;

static void check_matrix(int tiled) {
    for (size_t ti = 0; ti < sizeof k_types / sizeof k_types[0]; ti++) {
        uint32_t type = k_types[ti];
        uint32_t bs = type_get(type)->block_size;
        for (int rep = 0; rep < 3; rep++) {
            uint32_t rows = urange(1, 70);
            uint32_t cols = bs == 1 ? urange(1, 300) : bs * urange(1, bs == 256 ? 3 : 9);
            uint32_t n_tok = tiled ? urange(1, 37) : urange(1, 4);
            uint32_t row_bytes;
            float *deq;
            uint8_t *w = make_weights(type, rows, cols, &row_bytes, &deq);
            /* The weights sit at an offset in their buffer, as tensors in a
             * shared upload would. */
            uint32_t w_off = 4 * urange(0, 5);
            uint8_t *wb = calloc(1, (size_t)w_off + (size_t)rows * row_bytes + 4);
            memcpy(wb + w_off, w, (size_t)rows * row_bytes);
            uint32_t x_stride = cols + urange(0, 3), y_stride = rows + urange(0, 3);
            float *x = rand_vec((size_t)n_tok * x_stride);
            vk_buf bw = make_buf(wb, (uint64_t)w_off + (uint64_t)rows * row_bytes);
            vk_buf bx = make_buf(x, (uint64_t)n_tok * x_stride * 4);
            vk_buf by = make_buf(NULL, (uint64_t)n_tok * y_stride * 4);
            vk_mat m = {&bw, w_off, type, rows, cols, row_bytes};
            assert_int_equal(vk_begin(g_dev), LLMS_OK);
            assert_int_equal(tiled ? vk_op_matmul(g_dev, &m, &bx, x_stride, n_tok, &by, y_stride)
                                   : vk_op_matvec(g_dev, &m, &bx, x_stride, n_tok, &by, y_stride),
                             LLMS_OK);
            assert_int_equal(vk_submit(g_dev), LLMS_OK);
            const float *y = by.map;
            for (uint32_t t = 0; t < n_tok; t++)
                for (uint32_t r = 0; r < rows; r++) {
                    double ref = 0, mag = 0;
                    for (uint32_t c = 0; c < cols; c++) {
                        double p = (double)deq[(size_t)r * cols + c] * x[(size_t)t * x_stride + c];
                        ref += p;
                        mag += fabs(p);
                    }
                    double err = fabs(y[(size_t)t * y_stride + r] - ref);
                    if (!(err <= g_mat_rel * mag + 1e-5))
                        fail_msg("%s type %u rows %u cols %u n_tok %u: y[%u][%u] = %.7g, want %.7g",
                                 tiled ? "matmul" : "matvec", type, rows, cols, n_tok, t, r,
                                 y[(size_t)t * y_stride + r], ref);
                }
            vk_buf_destroy(g_dev, &bw);
            vk_buf_destroy(g_dev, &bx);
            vk_buf_destroy(g_dev, &by);
            free(w);
            free(wb);
            free(deq);
            free(x);
        }
    }
    check_validation();
}

/* Both reductions: portable, and subgroup where the device has it. */
static void test_matvec(void **state) {
    (void)state;
    need_device();
    const int sg = g_dev->subgroup_arith;
    g_dev->subgroup_arith = 0;
    check_matrix(0);
    if (sg) {
        g_dev->subgroup_arith = 1;
        check_matrix(0);
    } else {
        print_message("no subgroup arithmetic: portable matvec only\n");
    }
    g_dev->subgroup_arith = sg;
}

/* The portable tiles always, and the cooperative-matrix ones where the
 * device passed the self-check (never on lavapipe). */
static void test_matmul_tiled(void **state) {
    (void)state;
    need_device();
    const int cm = g_dev->coopmat;
    g_dev->coopmat = 0;
    check_matrix(1);
    if (cm) {
        g_dev->coopmat = 1;
        g_mat_rel = VK_COOPMAT_REL;
        check_matrix(1);
        g_mat_rel = 1e-4;
    } else {
        print_message("%s\n", g_dev->coopmat_note);
    }
    /* vk_op_matmul really dispatches the selected shader: a made-up name
     * there must fail (nothing is recorded for it). */
    const char *shader = g_dev->coopmat_shader;
    g_dev->coopmat = 1;
    g_dev->coopmat_shader = "no_such_shader";
    float one = 1;
    vk_buf bw = make_buf(&one, 4), bx = make_buf(&one, 4), by = make_buf(NULL, 4);
    vk_mat m = {&bw, 0, LLMS_TYPE_F32, 1, 1, 4};
    assert_int_equal(vk_begin(g_dev), LLMS_OK);
    assert_int_equal(vk_op_matmul(g_dev, &m, &bx, 1, 1, &by, 1), LLMS_ERR_INTERNAL);
    assert_non_null(strstr(llms_errmsg(), "no_such_shader"));
    g_dev->coopmat = 0;
    assert_int_equal(vk_op_matmul(g_dev, &m, &bx, 1, 1, &by, 1), LLMS_OK);
    assert_int_equal(vk_submit(g_dev), LLMS_OK);
    assert_true(((const float *)by.map)[0] == 1.0f);
    vk_buf_destroy(g_dev, &bw);
    vk_buf_destroy(g_dev, &bx);
    vk_buf_destroy(g_dev, &by);
    g_dev->coopmat_shader = shader;
    g_dev->coopmat = cm;
    check_validation();
}

/* ---- cooperative matrices ------------------------------------------------ */

/* SPIR-V words: OpCapability (opcode 17, 2 words) with CooperativeMatrixNV. */
#define SPV_OP_CAPABILITY ((2u << 16) | 17u)
#define SPV_CAP_COOPMAT_NV 5357u

static const vk_shader_blob *blob(const char *name) {
    for (unsigned i = 0; i < vk_shader_blob_count; i++)
        if (!strcmp(vk_shader_blobs[i].name, name)) return &vk_shader_blobs[i];
    return NULL;
}

static int declares_coopmat(const vk_shader_blob *b) {
    size_t n = b->size / 4;
    /* After the 5-word header, instructions by their word counts. */
    for (size_t i = 5; i + 1 < n;) {
        uint32_t wc = b->code[i] >> 16;
        if (b->code[i] == SPV_OP_CAPABILITY && b->code[i + 1] == SPV_CAP_COOPMAT_NV) return 1;
        if (wc == 0) return 0;
        i += wc;
    }
    return 0;
}

/* matmul_coopmat.comp is embedded (spirv-val passed on it at build time)
 * as SPIR-V 1.5 declaring cooperative matrices, which the portable
 * modules must not. */
static void test_coopmat_shader_embedded(void **state) {
    (void)state;
    const vk_shader_blob *cm = blob("matmul_coopmat"), *mm = blob("matmul");
    assert_non_null(cm);
    assert_non_null(mm);
    assert_true(cm->size > 20 && cm->size % 4 == 0);
    assert_int_equal(cm->code[0], 0x07230203u);   /* SPIR-V magic */
    assert_int_equal(cm->code[1], 0x00010500u);   /* version 1.5 (Vulkan 1.2) */
    assert_true(declares_coopmat(cm));
    for (unsigned i = 0; i < vk_shader_blob_count; i++)
        if (strcmp(vk_shader_blobs[i].name, "matmul_coopmat"))
            if (declares_coopmat(&vk_shader_blobs[i]))
                fail_msg("%s declares cooperative matrices", vk_shader_blobs[i].name);
}

/* The self-check's comparison: f16 rounding passes, a wrong element, a
 * NaN or an infinity does not. */
static void test_coopmat_compare(void **state) {
    (void)state;
    enum { T = 5, R = 7, K = 200 };
    float w[R * K], x[T * K], exact[T * R], half[T * R];
    double mag[T * R];
    for (int i = 0; i < R * K; i++) w[i] = frand() * 3.0f;
    for (int i = 0; i < T * K; i++) x[i] = frand();
    for (int t = 0; t < T; t++)
        for (int r = 0; r < R; r++) {
            double e = 0, m = 0;
            float h = 0;   /* what the tensor cores do: f16 inputs, f32 sums */
            for (int k = 0; k < K; k++) {
                e += (double)w[r * K + k] * x[t * K + k];
                m += fabs((double)w[r * K + k] * x[t * K + k]);
                h += fp16_to_fp32(fp32_to_fp16(w[r * K + k])) * fp16_to_fp32(fp32_to_fp16(x[t * K + k]));
            }
            exact[t * R + r] = (float)e;
            half[t * R + r] = h;
            mag[t * R + r] = m;
        }
    char why[256];
    assert_true(vk_matmul_compare(exact, exact, mag, T * R, VK_COOPMAT_REL, VK_COOPMAT_ABS, why, sizeof why));
    /* f16 rounding of the inputs differs from f32 ... */
    assert_false(vk_matmul_compare(half, exact, mag, T * R, 1e-6, 0, why, sizeof why));
    /* ... within the self-check's tolerance */
    if (!vk_matmul_compare(half, exact, mag, T * R, VK_COOPMAT_REL, VK_COOPMAT_ABS, why, sizeof why))
        fail_msg("f16 rounding rejected: %s", why);
    /* One element off by 2% of its scale: rejected, and named. */
    float bad[T * R];
    memcpy(bad, half, sizeof bad);
    bad[3 * R + 4] += (float)(0.02 * mag[3 * R + 4]);
    why[0] = 0;
    assert_false(vk_matmul_compare(bad, exact, mag, T * R, VK_COOPMAT_REL, VK_COOPMAT_ABS, why, sizeof why));
    assert_non_null(strstr(why, "element 25"));
    memcpy(bad, half, sizeof bad);
    bad[T * R - 1] = NAN;
    assert_false(vk_matmul_compare(bad, exact, mag, T * R, VK_COOPMAT_REL, VK_COOPMAT_ABS, why, sizeof why));
    bad[T * R - 1] = INFINITY;
    assert_false(vk_matmul_compare(bad, exact, mag, T * R, VK_COOPMAT_REL, VK_COOPMAT_ABS, why, sizeof why));
    /* A write into the stride's padding (scale 0) is caught too. */
    float pad_want[2] = {0, 0}, pad_got[2] = {0, 0.001f};
    double pad_mag[2] = {0, 0};
    assert_false(vk_matmul_compare(pad_got, pad_want, pad_mag, 2, VK_COOPMAT_REL, VK_COOPMAT_ABS, why, sizeof why));
}

/* What the device reports and what the context uses agree: lavapipe (and
 * any device lacking something) reports no cooperative matrices, runs the
 * portable matmul and says why. */
static void test_coopmat_detection(void **state) {
    (void)state;
    need_device();
    vk_inst *vi = g_dev->vi;
    uint32_t idx = UINT32_MAX;
    for (uint32_t i = 0; i < vi->n_phys; i++)
        if (vi->phys[i] == g_dev->phys) idx = i;
    assert_true(idx != UINT32_MAX);
    const char *lack = vk_coopmat_lack(vi, g_dev->phys);
    vk_dev_desc dd;
    vk_inst_desc(vi, idx, &dd);
    assert_int_equal(!!(dd.missing & VK_OPT_COOPMAT), lack != NULL);
    llms_device_info info;
    llms_device_info_init(&info);
    assert_int_equal(llms_device_get_info((int32_t)idx, &info), LLMS_OK);
    assert_int_equal(!!(info.features & LLMS_DEVICE_FEATURE_COOPMAT), lack == NULL);
    print_message("%s: %s\n", info.name, g_dev->coopmat_note);
    if (strstr(info.name, "llvmpipe")) {
        assert_non_null(lack);
        assert_non_null(strstr(lack, "VK_NV_cooperative_matrix"));
    }
    if (lack) {
        assert_int_equal(g_dev->coopmat, 0);
        assert_int_equal(g_dev->coopmat_failed, 0);
        assert_non_null(strstr(g_dev->coopmat_note, lack));
    } else if (!vk_env_flag("LLMS_VK_NO_COOPMAT")) {
        /* Available: used unless the self-check said no (then a warning). */
        assert_int_equal(g_dev->coopmat, !g_dev->coopmat_failed);
        assert_string_equal(g_dev->coopmat_shader, "matmul_coopmat");
    }
    check_validation();
}

/* ---- element-wise and row kernels ------------------------------------- */

static void test_rmsnorm(void **state) {
    (void)state;
    need_device();
    for (int rep = 0; rep < 4; rep++) {
        uint32_t n = urange(1, 333), rows = urange(1, 9), stride = n + urange(0, 5);
        float *x = rand_vec((size_t)rows * stride), *g = rand_vec(n);
        float *ref = calloc((size_t)rows * stride, sizeof *ref);
        const float eps = 1e-5f;
        for (uint32_t t = 0; t < rows; t++) {
            double ss = 0;
            for (uint32_t i = 0; i < n; i++) ss += (double)x[t * stride + i] * x[t * stride + i];
            double sc = 1.0 / sqrt(ss / n + eps);
            for (uint32_t i = 0; i < n; i++) ref[t * stride + i] = (float)(x[t * stride + i] * sc * g[i]);
        }
        vk_buf bx = make_buf(x, (uint64_t)rows * stride * 4), bg = make_buf(g, n * 4);
        vk_buf bo = make_buf(NULL, (uint64_t)rows * stride * 4);
        assert_int_equal(vk_begin(g_dev), LLMS_OK);
        assert_int_equal(vk_op_rmsnorm(g_dev, &bx, &bg, &bo, n, stride, rows, eps), LLMS_OK);
        assert_int_equal(vk_submit(g_dev), LLMS_OK);
        for (uint32_t t = 0; t < rows; t++)
            close_rel((float *)bo.map + t * stride, ref + t * stride, n, 1e-5, 1e-6, "rmsnorm");
        vk_buf_destroy(g_dev, &bx);
        vk_buf_destroy(g_dev, &bg);
        vk_buf_destroy(g_dev, &bo);
        free(x);
        free(g);
        free(ref);
    }
    check_validation();
}

static void test_rope(void **state) {
    (void)state;
    need_device();
    for (int neox = 0; neox <= 1; neox++)
        for (int rep = 0; rep < 3; rep++) {
            uint32_t head_dim = 2 * urange(1, 40), n_rot = 2 * urange(1, head_dim / 2);
            uint32_t n_heads = urange(1, 5), n_tok = urange(1, 7), stride = n_heads * head_dim + urange(0, 3);
            uint32_t half = n_rot / 2;
            float *v = rand_vec((size_t)n_tok * stride), *ref = malloc((size_t)n_tok * stride * 4);
            float *cs = malloc((size_t)n_tok * half * 2 * 4);
            memcpy(ref, v, (size_t)n_tok * stride * 4);
            for (uint32_t t = 0; t < n_tok; t++)
                for (uint32_t i = 0; i < half; i++) {
                    double ang = (double)urange(0, 5000) * pow(10000.0, -2.0 * i / n_rot);
                    cs[(t * half + i) * 2] = (float)cos(ang);
                    cs[(t * half + i) * 2 + 1] = (float)sin(ang);
                }
            for (uint32_t t = 0; t < n_tok; t++)
                for (uint32_t h = 0; h < n_heads; h++) {
                    float *vec = ref + t * stride + h * head_dim;
                    for (uint32_t i = 0; i < half; i++) {
                        float c = cs[(t * half + i) * 2], s = cs[(t * half + i) * 2 + 1];
                        uint32_t i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
                        float a = vec[i0], b = vec[i1];
                        vec[i0] = a * c - b * s;
                        vec[i1] = a * s + b * c;
                    }
                }
            vk_buf bv = make_buf(v, (uint64_t)n_tok * stride * 4), bc = make_buf(cs, (uint64_t)n_tok * half * 8);
            assert_int_equal(vk_begin(g_dev), LLMS_OK);
            assert_int_equal(vk_op_rope(g_dev, &bv, &bc, n_tok, n_heads, head_dim, n_rot, neox, stride), LLMS_OK);
            assert_int_equal(vk_submit(g_dev), LLMS_OK);
            close_rel(bv.map, ref, (size_t)n_tok * stride, 1e-5, 1e-6, neox ? "rope neox" : "rope norm");
            vk_buf_destroy(g_dev, &bv);
            vk_buf_destroy(g_dev, &bc);
            free(v);
            free(ref);
            free(cs);
        }
    check_validation();
}

static void test_swiglu_add(void **state) {
    (void)state;
    need_device();
    /* 70001 spans more than one 64-wide group row and ends mid-group. */
    const uint32_t sizes[] = {1, 63, 65, 1000, 70001};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        uint32_t n = sizes[k];
        float *g = rand_vec(n), *u = rand_vec(n), *ref = malloc(n * 4), *ref2 = malloc(n * 4);
        for (uint32_t i = 0; i < n; i++) {
            g[i] *= 8;
            ref[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
            ref2[i] = ref[i] + g[i];
        }
        vk_buf bg = make_buf(g, n * 4), bu = make_buf(u, n * 4), bo = make_buf(NULL, n * 4);
        assert_int_equal(vk_begin(g_dev), LLMS_OK);
        assert_int_equal(vk_op_swiglu(g_dev, &bg, &bu, &bo, n), LLMS_OK);
        assert_int_equal(vk_submit(g_dev), LLMS_OK);
        close_rel(bo.map, ref, n, 1e-5, 1e-6, "swiglu");
        /* Residual add, chained in one command buffer after a second swiglu:
         * checks the barrier between dependent dispatches too. */
        memset(bo.map, 0, n * 4);
        assert_int_equal(vk_begin(g_dev), LLMS_OK);
        assert_int_equal(vk_op_swiglu(g_dev, &bg, &bu, &bo, n), LLMS_OK);
        assert_int_equal(vk_op_add(g_dev, &bo, &bg, n), LLMS_OK);
        assert_int_equal(vk_submit(g_dev), LLMS_OK);
        close_rel(bo.map, ref2, n, 1e-5, 1e-6, "add");
        vk_buf_destroy(g_dev, &bg);
        vk_buf_destroy(g_dev, &bu);
        vk_buf_destroy(g_dev, &bo);
        free(g);
        free(u);
        free(ref);
        free(ref2);
    }
    check_validation();
}

static void test_softmax(void **state) {
    (void)state;
    need_device();
    for (int rep = 0; rep < 4; rep++) {
        uint32_t n = urange(1, 2000), rows = urange(1, 5), stride = n + urange(0, 4);
        float *x = rand_vec((size_t)rows * stride), *ref = malloc((size_t)rows * stride * 4);
        for (size_t i = 0; i < (size_t)rows * stride; i++) x[i] *= 30;  /* large logits: needs the max shift */
        for (uint32_t t = 0; t < rows; t++) {
            double m = -INFINITY, s = 0;
            for (uint32_t i = 0; i < n; i++) m = fmax(m, x[t * stride + i]);
            for (uint32_t i = 0; i < n; i++) s += exp(x[t * stride + i] - m);
            for (uint32_t i = 0; i < n; i++) ref[t * stride + i] = (float)(exp(x[t * stride + i] - m) / s);
        }
        vk_buf bx = make_buf(x, (uint64_t)rows * stride * 4);
        assert_int_equal(vk_begin(g_dev), LLMS_OK);
        assert_int_equal(vk_op_softmax(g_dev, &bx, n, stride, rows), LLMS_OK);
        assert_int_equal(vk_submit(g_dev), LLMS_OK);
        for (uint32_t t = 0; t < rows; t++)
            close_rel((float *)bx.map + t * stride, ref + t * stride, n, 1e-5, 1e-7, "softmax");
        vk_buf_destroy(g_dev, &bx);
        free(x);
        free(ref);
    }
    check_validation();
}

/* ---- attention over the paged KV cache ------------------------------- */

static void test_attention(void **state) {
    (void)state;
    need_device();
    const uint32_t T = 16;  /* KV_BLOCK_TOKENS */
    for (int rep = 0; rep < 4; rep++) {
        uint32_t n_head_kv = urange(1, 3), group = urange(1, 3), n_head = n_head_kv * group;
        uint32_t head_dim = rep == 0 ? 256 : urange(1, 100), kv_dim = n_head_kv * head_dim;
        uint32_t n_layer = urange(1, 3), layer = urange(0, n_layer - 1);
        uint32_t n_seq = urange(1, 3), max_pos = rep == 1 ? 200 : urange(0, 80);
        uint32_t per_seq = max_pos / T + 1, n_blocks = n_seq * per_seq + 2;
        uint32_t block_floats = n_layer * 2 * T * kv_dim;
        float *kv = rand_vec((size_t)n_blocks * block_floats);
        /* Block tables: a shuffled assignment of blocks to sequences, as a
         * pool that has been churning would have. */
        uint32_t *perm = malloc(n_blocks * 4);
        for (uint32_t i = 0; i < n_blocks; i++) perm[i] = i;
        for (uint32_t i = n_blocks - 1; i > 0; i--) {
            uint32_t j = rnd() % (i + 1), tmp = perm[i];
            perm[i] = perm[j];
            perm[j] = tmp;
        }
        uint32_t n_tok = urange(1, 6);
        uint32_t *ti = malloc(n_tok * 8);
        for (uint32_t t = 0; t < n_tok; t++) {
            ti[2 * t] = t == 0 ? max_pos : urange(0, max_pos);
            ti[2 * t + 1] = urange(0, n_seq - 1) * per_seq;
        }
        float *q = rand_vec((size_t)n_tok * n_head * head_dim), *ref = malloc((size_t)n_tok * n_head * head_dim * 4);
        float scale = 1.0f / sqrtf((float)head_dim);
        for (uint32_t t = 0; t < n_tok; t++)
            for (uint32_t h = 0; h < n_head; h++) {
                uint32_t kvh = h / group, pos = ti[2 * t], tab = ti[2 * t + 1];
                double *sc = malloc((pos + 1) * sizeof *sc), m = -INFINITY, s = 0;
                for (uint32_t p = 0; p <= pos; p++) {
                    const float *k = kv + (size_t)perm[tab + p / T] * block_floats +
                                     ((size_t)layer * 2 * T + p % T) * kv_dim + kvh * head_dim;
                    double dot = 0;
                    for (uint32_t dd = 0; dd < head_dim; dd++)
                        dot += (double)q[(t * n_head + h) * head_dim + dd] * k[dd];
                    sc[p] = dot * scale;
                    m = fmax(m, sc[p]);
                }
                for (uint32_t p = 0; p <= pos; p++) s += (sc[p] = exp(sc[p] - m));
                for (uint32_t dd = 0; dd < head_dim; dd++) {
                    double acc = 0;
                    for (uint32_t p = 0; p <= pos; p++) {
                        const float *v = kv + (size_t)perm[tab + p / T] * block_floats +
                                         (((size_t)layer * 2 + 1) * T + p % T) * kv_dim + kvh * head_dim;
                        acc += sc[p] * v[dd];
                    }
                    ref[(t * n_head + h) * head_dim + dd] = (float)(acc / s);
                }
                free(sc);
            }
        vk_buf bq = make_buf(q, (uint64_t)n_tok * n_head * head_dim * 4);
        vk_buf bkv = make_buf(kv, (uint64_t)n_blocks * block_floats * 4);
        vk_buf bt = make_buf(perm, n_blocks * 4), bti = make_buf(ti, n_tok * 8);
        vk_buf bo = make_buf(NULL, (uint64_t)n_tok * n_head * head_dim * 4);
        vk_attn_args a = {n_tok, n_head, n_head_kv, head_dim, layer, kv_dim, block_floats, scale};
        assert_int_equal(vk_begin(g_dev), LLMS_OK);
        assert_int_equal(vk_op_attention(g_dev, &bq, &bkv, &bt, &bti, &bo, &a), LLMS_OK);
        assert_int_equal(vk_submit(g_dev), LLMS_OK);
        close_rel(bo.map, ref, (size_t)n_tok * n_head * head_dim, 1e-4, 1e-5, "attention");
        vk_buf_destroy(g_dev, &bq);
        vk_buf_destroy(g_dev, &bkv);
        vk_buf_destroy(g_dev, &bt);
        vk_buf_destroy(g_dev, &bti);
        vk_buf_destroy(g_dev, &bo);
        free(kv);
        free(perm);
        free(ti);
        free(q);
        free(ref);
    }
    check_validation();
}

/* ---- whole model ---------------------------------------------------- */

static const char *k_models[] = {
    "models/aidreams260K.gguf",          "models/rand-llama-spm-d128-f16.gguf",
    "models/rand-llama-spm-d128-q4_0.gguf", "models/rand-llama-spm-d128-q8_0.gguf",
    "models/rand-llama-spm-d256-f16.gguf", "models/rand-llama-spm-d256-q4_k_m.gguf",
};

/* All logits of one token sequence, fed as a prompt chunk (tiled matrix
 * kernel), one decode token (matrix-vector kernel) and another chunk. */
static float *model_logits(const char *path, int32_t backend, const int32_t *toks, size_t n, int32_t *n_vocab) {
    llms_context_params cp;
    llms_context_params_init(&cp);
    cp.backend = backend;
    cp.n_threads = 2;
    llms_context *ctx;
    assert_int_equal(llms_context_create(&cp, &ctx), LLMS_OK);
    assert_int_equal(llms_context_backend(ctx), backend);
    llms_model *m;
    if (llms_model_load(ctx, path, NULL, &m) != LLMS_OK) fail_msg("load %s: %s", path, llms_errmsg());
    llms_session_params sp;
    llms_session_params_init(&sp);
    llms_session *s;
    assert_int_equal(llms_session_create(m, &sp, &s), LLMS_OK);
    int32_t V = llms_model_n_vocab(m);
    float *all = malloc(n * (size_t)V * sizeof *all);
    size_t cuts[4] = {0, n - 8, n - 7, n};
    for (int k = 0; k < 3; k++) {
        llms_status st = llms_session_feed_tokens_logits(s, toks + cuts[k], cuts[k + 1] - cuts[k],
                                                         all + cuts[k] * (size_t)V);
        if (st != LLMS_OK) fail_msg("%s backend %d: %s", path, (int)backend, llms_errmsg());
    }
    llms_session_destroy(s);
    llms_model_destroy(m);
    llms_context_destroy(ctx);
    *n_vocab = V;
    return all;
}

/* The device forward pass against the CPU backend, per fixture model.
 * Tolerance, max |vk - cpu| over every logit of every position:
 *   float weights: 2e-3 * max(1, max |cpu|) (summation order only);
 *   Q8_0, Q4_0: 0.30 and Q4_K_M: 0.70 absolute (logits spread about 3):
 *   the CPU quantizes activations to 8 bits for its dot products and the
 *   device keeps them in float32, the same gap tests/test_model.c allows
 *   between llama.cpp and a float32 pass (0.30 / 0.40 over the top 10;
 *   here the maximum over the whole vocabulary and 37 positions). For the
 *   K-quants the CPU, like llama.cpp, scales activations per 256 values
 *   (Q8_K), coarser than Q8_0's 32: measured worst gap 0.50 on
 *   d256-q4_k_m, against 0.26 over the top 10 from llama.cpp's logits. 
 * The greedy token (argmax) must agree whenever the CPU's top two logits
 * are apart by more than the tolerance. */
static void test_model_logits(void **state) {
    (void)state;
    need_device();
    for (size_t k = 0; k < sizeof k_models / sizeof k_models[0]; k++) {
        const char *path = fixture_path(k_models[k]);
        if (!path) {
            fixture_missing(k_models[k]);
            continue;
        }
        enum { N = 37 };   /* crosses two KV blocks, not a multiple of anything */
        int32_t toks[N];
        toks[0] = 1;
        for (int i = 1; i < N; i++) toks[i] = (int32_t)(3 + rnd() % 250);
        int32_t V, V2;
        float *cpu = model_logits(path, LLMS_BACKEND_CPU, toks, N, &V);
        float *vk = model_logits(path, LLMS_BACKEND_VULKAN, toks, N, &V2);
        assert_int_equal(V, V2);
        int quant = strstr(path, "q4_") || strstr(path, "q8_");
        double worst = 0;
        for (int t = 0; t < N; t++) {
            const float *c = cpu + (size_t)t * V, *g = vk + (size_t)t * V;
            double mx = 0, err = 0;
            int ac = 0, ag = 0;
            for (int i = 0; i < V; i++) {
                mx = fmax(mx, fabs(c[i]));
                err = fmax(err, fabs((double)c[i] - g[i]));
                if (c[i] > c[ac]) ac = i;
                if (g[i] > g[ag]) ag = i;
            }
            double tol = !quant ? 2e-3 * fmax(1, mx) : strstr(path, "q4_k") ? 0.70 : 0.30;
            worst = fmax(worst, err / tol);
            if (err > tol) fail_msg("%s pos %d: max |vk - cpu| = %g > %g", k_models[k], t, err, tol);
            double second = -INFINITY;
            for (int i = 0; i < V; i++)
                if (i != ac) second = fmax(second, c[i]);
            if (ac != ag && c[ac] - second > tol)
                fail_msg("%s pos %d: argmax %d on the device, %d on the CPU", k_models[k], t, ag, ac);
        }
        print_message("%s: worst error %.3f of the tolerance\n", k_models[k], worst);
        free(cpu);
        free(vk);
    }
    check_validation();
}

/* The same with device-local memory never mapped, so weights, inputs and
 * results go through staging buffers as on a discrete GPU. */
static void test_model_logits_staging(void **state) {
    need_device();
    setenv("LLMS_VK_NO_HOST_MAP", "1", 1);
    test_model_logits(state);
    unsetenv("LLMS_VK_NO_HOST_MAP");
}

/* One multi-sequence batch, as the scheduler builds them: two sequences
 * of different lengths interleaved in one prefill pass, then one decode
 * token each in a second pass (per-sequence block tables on the device),
 * and the same in the deterministic mode. Against the CPU backend. */
static float *batch_logits(int32_t backend, const char *path, uint32_t flags, int32_t *n_vocab) {
    llms_context_params cp;
    llms_context_params_init(&cp);
    cp.backend = backend;
    cp.n_threads = 2;
    llms_context *ctx;
    assert_int_equal(llms_context_create(&cp, &ctx), LLMS_OK);
    llms_model *m;
    assert_int_equal(llms_model_load(ctx, path, NULL, &m), LLMS_OK);
    kv_seq s[2];
    memset(s, 0, sizeof s);
    enum { L0 = 21, L1 = 12, N = L0 + L1 };
    assert_int_equal(kv_seq_reserve(&m->kv, &s[0], L0 + 1, 0), LLMS_OK);
    assert_int_equal(kv_seq_reserve(&m->kv, &s[1], L1 + 1, 0), LLMS_OK);
    int32_t tok[N];
    uint32_t pos[N], seq[N];
    uint8_t want[N];
    uint32_t n0 = 0, n1 = 0;
    for (uint32_t i = 0; i < N; i++) {
        /* Interleave the two prompts: 0, 1, 0, 1 ... then the rest of 0. */
        uint32_t q = (i % 2 && n1 < L1) || n0 == L0 ? 1 : 0;
        seq[i] = q;
        pos[i] = q ? n1++ : n0++;
        tok[i] = (int32_t)(pos[i] == 0 ? 1 : 3 + (pos[i] * 7 + q * 13) % 200);
        want[i] = 1;
    }
    kv_seq *seqs[2] = {&s[0], &s[1]};
    fwd_batch b = {N, tok, pos, seq, want, seqs, 2, flags};
    int32_t V = (int32_t)m->hp.n_vocab;
    float *out = malloc((size_t)(N + 2) * V * sizeof *out);
    assert_non_null(out);
    assert_int_equal(backend_forward(m, &b, out), LLMS_OK);
    int32_t tok2[2] = {5, 6};
    uint32_t pos2[2] = {L0, L1}, seq2[2] = {0, 1};
    uint8_t want2[2] = {1, 1};
    fwd_batch b2 = {2, tok2, pos2, seq2, want2, seqs, 2, flags};
    if (backend_forward(m, &b2, out + (size_t)N * V) != LLMS_OK) fail_msg("decode pass: %s", llms_errmsg());
    kv_seq_free(&m->kv, &s[0]);
    kv_seq_free(&m->kv, &s[1]);
    llms_model_destroy(m);
    llms_context_destroy(ctx);
    *n_vocab = V;
    return out;
}

static void test_multi_sequence_batch(void **state) {
    (void)state;
    need_device();
    const char *path = fixture_path("models/rand-llama-spm-d128-f16.gguf");
    if (!path) {
        fixture_missing("models/rand-llama-spm-d128-f16.gguf");
        return;
    }
    for (uint32_t flags = 0; flags <= FWD_DETERMINISTIC; flags += FWD_DETERMINISTIC) {
        enum { ROWS = 33 + 2 };
        int32_t V;
        float *cpu = batch_logits(LLMS_BACKEND_CPU, path, flags, &V);
        float *vk = batch_logits(LLMS_BACKEND_VULKAN, path, flags, &V);
        for (int r = 0; r < ROWS; r++) {
            double mx = 0, err = 0;
            for (int i = 0; i < V; i++) {
                mx = fmax(mx, fabs(cpu[(size_t)r * V + i]));
                err = fmax(err, fabs((double)cpu[(size_t)r * V + i] - vk[(size_t)r * V + i]));
            }
            if (err > 2e-3 * fmax(1, mx)) fail_msg("flags %u row %d: max |vk - cpu| = %g", flags, r, err);
        }
        free(cpu);
        free(vk);
    }
    check_validation();
}

/* A model over the device memory budget: a clear error from the pass that
 * needs the weights, and the host carries on (the CPU backend works). */
static void test_model_over_budget(void **state) {
    (void)state;
    need_device();
    const char *path = fixture_path("models/aidreams260K.gguf");
    if (!path) {
        fixture_missing("models/aidreams260K.gguf");
        return;
    }
    for (int backend = LLMS_BACKEND_VULKAN; backend >= LLMS_BACKEND_CPU; backend--) {
        llms_context_params cp;
        llms_context_params_init(&cp);
        cp.backend = backend;
        cp.device_memory_budget = 64 << 10;   /* the model has about 1 MB of weights */
        llms_context *ctx;
        assert_int_equal(llms_context_create(&cp, &ctx), LLMS_OK);
        llms_model *m;
        assert_int_equal(llms_model_load(ctx, path, NULL, &m), LLMS_OK);
        llms_session_params sp;
        llms_session_params_init(&sp);
        llms_session *s;
        assert_int_equal(llms_session_create(m, &sp, &s), LLMS_OK);
        int32_t toks[3] = {1, 50, 60};
        float *lg = malloc(3 * (size_t)llms_model_n_vocab(m) * sizeof *lg);
        llms_status st = llms_session_feed_tokens_logits(s, toks, 3, lg);
        if (backend == LLMS_BACKEND_VULKAN) {
            assert_int_equal(st, LLMS_ERR_DEVICE_MEMORY);
            assert_non_null(strstr(llms_errmsg(), "budget"));
        } else {
            assert_int_equal(st, LLMS_OK);
        }
        free(lg);
        llms_session_destroy(s);
        llms_model_destroy(m);
        llms_context_destroy(ctx);
    }
    check_validation();
}

/* ---- KV cache resident on the device -------------------------------- */

/* A context, model and session on one backend. */
typedef struct rig {
    llms_context *ctx;
    llms_model *m;
    llms_session *s;
    int32_t V;
} rig;

static void rig_open(rig *r, const char *path, int32_t backend, uint64_t dev_budget) {
    llms_context_params cp;
    llms_context_params_init(&cp);
    cp.backend = backend;
    cp.n_threads = 2;
    cp.device_memory_budget = dev_budget;
    assert_int_equal(llms_context_create(&cp, &r->ctx), LLMS_OK);
    assert_int_equal(llms_context_backend(r->ctx), backend);
    if (llms_model_load(r->ctx, path, NULL, &r->m) != LLMS_OK) fail_msg("load %s: %s", path, llms_errmsg());
    /* On a Vulkan context the blocks have no host copy. */
    if (backend == LLMS_BACKEND_VULKAN) assert_non_null(r->m->vk_kv);
    else assert_null(r->m->vk_kv);
    r->s = NULL;
    if (llms_session_create(r->m, NULL, &r->s) != LLMS_OK) fail_msg("session: %s", llms_errmsg());
    r->V = llms_model_n_vocab(r->m);
}

static void rig_close(rig *r) {
    llms_session_destroy(r->s);
    llms_model_destroy(r->m);
    llms_context_destroy(r->ctx);
}

/* Feeds toks to a session and returns its last logits (static buffer per call site). */
static void feed(llms_session *s, const int32_t *toks, size_t n, float *last, int32_t V, const char *what) {
    float *all = malloc(n * (size_t)V * sizeof *all);
    assert_non_null(all);
    if (llms_session_feed_tokens_logits(s, toks, n, all) != LLMS_OK) fail_msg("%s: %s", what, llms_errmsg());
    memcpy(last, all + (n - 1) * (size_t)V, (size_t)V * sizeof *last);
    free(all);
}

static int argmax(const float *x, int32_t n) {
    int a = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[a]) a = i;
    return a;
}

/* Float-weight models only: the tolerance of test_model_logits. */
static void same_logits(const float *cpu, const float *vk, int32_t V, const char *what, int step) {
    double mx = 0, err = 0;
    for (int i = 0; i < V; i++) {
        mx = fmax(mx, fabs(cpu[i]));
        err = fmax(err, fabs((double)cpu[i] - vk[i]));
    }
    if (err > 2e-3 * fmax(1, mx)) fail_msg("%s step %d: max |vk - cpu| = %g", what, step, err);
}

/* A freshly reserved block reads as zeros apart from the rows a pass wrote:
 * slots are reused (LIFO), so this one held another session's rows. Reads
 * the resident storage of `s`'s block `blk` and checks rows [rows, 16). */
static void check_block_zero_from(llms_model *m, llms_session *s, uint32_t blk, uint32_t rows) {
    vk_kv *kv = m->vk_kv;
    vk_dev *d = m->ctx->vk;
    uint32_t slot = s->kv.blocks[blk]->slot;
    size_t nf = kv->slot_bytes / sizeof(float);
    float *buf = malloc(kv->slot_bytes);
    uint32_t kvd = (uint32_t)(nf / (2 * KV_BLOCK_TOKENS));
    for (uint32_t l = 0; l < kv->n_layer; l++) {
        pthread_mutex_lock(&d->lock);
        llms_status st = vk_buf_read(d, &kv->bufs[l], (uint64_t)slot * kv->slot_bytes, buf, kv->slot_bytes);
        pthread_mutex_unlock(&d->lock);
        assert_int_equal(st, LLMS_OK);
        for (uint32_t w = 0; w < 2; w++)
            for (uint32_t r = 0; r < KV_BLOCK_TOKENS; r++) {
                double sum = 0;
                for (uint32_t i = 0; i < kvd; i++) sum += fabs(buf[(w * KV_BLOCK_TOKENS + r) * kvd + i]);
                if (r < rows && sum == 0) fail_msg("layer %u %s row %u: not written", l, w ? "V" : "K", r);
                if (r >= rows && sum != 0) fail_msg("layer %u %s row %u: stale data in a fresh block", l, w ? "V" : "K", r);
            }
    }
    free(buf);
}

/* A long token-by-token generation on the device with the KV cache
 * resident there: logits as on the CPU at every step (each step reads
 * every earlier step's K/V from device memory, across 10 blocks), the
 * greedy token fed to both (the CPU's, so a near-tie cannot make them
 * part). Before it, another session fills and frees blocks, so the run
 * reuses slots, and a reused slot reads as zeros past what was written. */
static void test_kv_resident_long_generation(void **state) {
    (void)state;
    need_device();
    static const char *models[] = {"models/rand-llama-spm-d128-f16.gguf", "models/aidreams260K.gguf"};
    for (size_t k = 0; k < 2; k++) {
        const char *path = fixture_path(models[k]);
        if (!path) {
            fixture_missing(models[k]);
            continue;
        }
        rig c, g;
        rig_open(&c, path, LLMS_BACKEND_CPU, 0);
        rig_open(&g, path, LLMS_BACKEND_VULKAN, 0);
        int32_t V = c.V;
        float *lc = malloc((size_t)V * sizeof *lc), *lg = malloc((size_t)V * sizeof *lg);
        /* Another tenant's rows in 3 blocks, then freed. */
        llms_session *other;
        assert_int_equal(llms_session_create(g.m, NULL, &other), LLMS_OK);
        int32_t junk[40];
        for (int i = 0; i < 40; i++) junk[i] = 3 + (i * 37) % 200;
        feed(other, junk, 40, lg, V, "other");
        llms_session_destroy(other);

        int32_t prompt[5] = {1, 42, 17, 99, 7};
        feed(c.s, prompt, 5, lc, V, "cpu prompt");
        feed(g.s, prompt, 5, lg, V, "vk prompt");
        same_logits(lc, lg, V, models[k], 0);
        check_block_zero_from(g.m, g.s, 0, 5);
        int steps = k == 0 ? 150 : 110;   /* aidreams' context is 128 */
        for (int t = 1; t <= steps; t++) {
            int32_t tok = argmax(lc, V);
            feed(c.s, &tok, 1, lc, V, "cpu step");
            feed(g.s, &tok, 1, lg, V, "vk step");
            same_logits(lc, lg, V, models[k], t);
            if (t == 16 - 5 + 1) check_block_zero_from(g.m, g.s, 1, 1);   /* first row of block 1 */
        }
        print_message("%s: %d steps on the device match the CPU\n", models[k], steps);
        free(lc);
        free(lg);
        rig_close(&c);
        rig_close(&g);
    }
    check_validation();
}

/* Fork mid-block on the device, then continue parent and child with
 * different tokens, interleaved: the shared partial block is copied on
 * write (on the device), and neither side sees the other's rows. Against
 * the same on the CPU. */
static void test_kv_resident_fork(void **state) {
    (void)state;
    need_device();
    const char *path = fixture_path("models/rand-llama-spm-d128-f16.gguf");
    if (!path) {
        fixture_missing("models/rand-llama-spm-d128-f16.gguf");
        return;
    }
    rig r[2];
    rig_open(&r[0], path, LLMS_BACKEND_CPU, 0);
    rig_open(&r[1], path, LLMS_BACKEND_VULKAN, 0);
    int32_t V = r[0].V;
    llms_session *child[2];
    float *lg[2][2];
    int32_t prompt[21];
    for (int i = 0; i < 21; i++) prompt[i] = i ? 3 + (i * 11) % 300 : 1;
    for (int b = 0; b < 2; b++) {
        lg[b][0] = malloc((size_t)V * sizeof(float));
        lg[b][1] = malloc((size_t)V * sizeof(float));
        feed(r[b].s, prompt, 21, lg[b][0], V, "prompt");   /* block 1 holds 5 of 16 rows */
        assert_int_equal(llms_session_fork(r[b].s, &child[b]), LLMS_OK);
    }
    /* The device fork shares both blocks. */
    assert_ptr_equal(r[1].s->kv.blocks[1], child[1]->kv.blocks[1]);
    for (int t = 0; t < 24; t++) {
        /* parent and child alternate which goes first */
        for (int w = 0; w < 2; w++) {
            int who = (t + w) % 2;
            int32_t tok = who ? 500 + t * 7 : 100 + t * 3;
            for (int b = 0; b < 2; b++) feed(who ? child[b] : r[b].s, &tok, 1, lg[b][who], V, who ? "child" : "parent");
            same_logits(lg[0][who], lg[1][who], V, who ? "fork child" : "fork parent", t);
        }
        if (t == 0) assert_ptr_not_equal(r[1].s->kv.blocks[1], child[1]->kv.blocks[1]);
    }
    /* The first block stayed shared (never written after the fork). */
    assert_ptr_equal(r[1].s->kv.blocks[0], child[1]->kv.blocks[0]);
    for (int b = 0; b < 2; b++) {
        llms_session_destroy(child[b]);
        free(lg[b][0]);
        free(lg[b][1]);
        rig_close(&r[b]);
    }
    check_validation();
}

/* Scheduler with a prefix cache on the device, with and without a KV
 * budget (eviction, preemption): requests that share a
 * prompt prefix share its blocks (including the last partial one, copied
 * on write), batched with each other, and their greedy text is the CPU's.
 * aidreams260K is a trained model: its greedy choices are not near-ties. */
typedef struct sched_out {
    int32_t toks[4][32];
    int ntok[4];
    uint32_t cached[4];
    int done[4];
    uint64_t preemptions;
} sched_out;

static void run_sched(const char *path, int32_t backend, uint64_t kv_budget_blocks, sched_out *o) {
    memset(o, 0, sizeof *o);
    rig r;
    rig_open(&r, path, backend, 0);
    llms_cache *C;
    assert_int_equal(llms_cache_create(r.m, NULL, &C), LLMS_OK);
    llms_scheduler_params p;
    llms_scheduler_params_init(&p);
    p.cache = C;
    p.max_batch_tokens = 48;
    p.kv_budget_bytes = kv_budget_blocks * kv_block_bytes(&r.m->kv);
    p.aging_ms = 1u << 30;   /* order by submission alone: the backends differ in speed */
    llms_scheduler *S;
    assert_int_equal(llms_scheduler_create(r.m, &p, &S), LLMS_OK);
    int32_t base[45];
    base[0] = 1;
    for (int i = 1; i < 45; i++) base[i] = 3 + (i * 29) % 400;
    uint64_t ids[4];
    for (int q = 0; q < 4; q++) {
        int32_t toks[45];
        memcpy(toks, base, sizeof toks);
        /* 0: the prefix alone; 1-3: 37 shared tokens (2 blocks + 5) and their own tail */
        size_t n = q == 0 ? 37 : 45;
        if (q) for (int i = 37; i < 45; i++) toks[i] = 3 + (i * 13 + q * 101) % 400;
        llms_sampling_params sp;
        llms_sampling_params_init(&sp);
        sp.temperature = 0;
        sp.max_tokens = 20;
        llms_request_params rp;
        llms_request_params_init(&rp);
        rp.tokens = toks;
        rp.n_tokens = n;
        rp.sampling = &sp;
        assert_int_equal(llms_scheduler_submit(S, &rp, &ids[q]), LLMS_OK);
        /* The first runs alone to fill the cache; the others together. */
        int n_done = 0;
        for (int guard = 0; guard < 10000 && (q == 0 || q == 3) && n_done < (q ? 3 : 1); guard++) {
            llms_status st = llms_scheduler_step(S, NULL);
            assert_true(st == LLMS_OK || st == LLMS_AGAIN);
            llms_event ev;
            char buf[512];
            memset(&ev, 0, sizeof ev);
            ev.struct_size = sizeof ev;
            ev.text_buf = buf;
            ev.text_cap = sizeof buf;
            while (llms_scheduler_poll(S, &ev, 0) == LLMS_OK) {
                int k = -1;
                for (int j = 0; j <= q; j++)
                    if (ids[j] == ev.request_id) k = j;
                assert_true(k >= 0);
                if (ev.type == LLMS_EVENT_TOKEN) {
                    assert_true(o->ntok[k] < 32);
                    o->toks[k][o->ntok[k]++] = ev.token;
                } else {
                    if (ev.type != LLMS_EVENT_FINISHED)
                        fail_msg("request %d: event %d status %d", k, ev.type, (int)ev.status);
                    o->cached[k] = ev.cached_tokens;
                    o->done[k] = 1;
                    n_done++;
                }
            }
        }
    }
    for (int q = 0; q < 4; q++) assert_true(o->done[q]);
    llms_scheduler_stats ss;
    llms_scheduler_stats_init(&ss);
    assert_int_equal(llms_scheduler_get_stats(S, &ss), LLMS_OK);
    o->preemptions = ss.preemptions;
    llms_scheduler_destroy(S);
    llms_cache_destroy(C);
    rig_close(&r);
}

static void test_kv_resident_prefix_cache(void **state) {
    (void)state;
    need_device();
    const char *path = fixture_path("models/aidreams260K.gguf");
    if (!path) {
        fixture_missing("models/aidreams260K.gguf");
        return;
    }
    /* Without a KV budget, then with budgets of 5 blocks (cache blocks
     * evicted: 32 of 37 prompt tokens cached) and 6 blocks (a request
     * preempted, its blocks freed and their slots reused, then recomputed):
     * the same scheduling on both backends, the same tokens. */
    static const int budgets[3] = {0, 5, 6};
    for (int bi = 0; bi < 3; bi++) {
        int budget = budgets[bi];
        sched_out cpu, vk;
        run_sched(path, LLMS_BACKEND_CPU, (uint64_t)budget, &cpu);
        run_sched(path, LLMS_BACKEND_VULKAN, (uint64_t)budget, &vk);
        for (int q = 0; q < 4; q++) {
            assert_int_equal(vk.ntok[q], cpu.ntok[q]);
            assert_true(vk.ntok[q] > 0);
            assert_memory_equal(vk.toks[q], cpu.toks[q], (size_t)cpu.ntok[q] * sizeof(int32_t));
            assert_int_equal(vk.cached[q], cpu.cached[q]);
        }
        assert_int_equal(vk.preemptions, cpu.preemptions);
        if (budget == 6) assert_true(vk.preemptions > 0);
        /* the shared prefix came from the cache, partial block included */
        if (!budget) for (int q = 1; q < 4; q++) assert_true(vk.cached[q] >= 36);
        print_message("KV budget %d blocks: %llu preemptions, cached %u/%u/%u, generated %d/%d/%d/%d\n", budget,
                      (unsigned long long)vk.preemptions, vk.cached[1], vk.cached[2], vk.cached[3], vk.ntok[0],
                      vk.ntok[1], vk.ntok[2], vk.ntok[3]);
    }
    check_validation();
}

/* Sessions of one Vulkan model on several threads at once: block
 * allocation (and storage growth under the device lock), release, forks
 * and the queued zero/copy operations race with other threads' passes.
 * Each thread's logits must be bit-identical to the same session run
 * alone (a pass computes one session's tokens the same way either way). */
enum { THR = 3, THR_STEPS = 40 };
typedef struct thr_job {
    llms_model *m;
    int id;
    float *out;        /* [THR_STEPS] argmax, then the max logit of each step */
    const char *err;
    char msg[256];     /* the thread's llms_errmsg() */
} thr_job;

static void *thr_run(void *arg) {
    thr_job *j = arg;
    llms_session *s = NULL, *f = NULL;
    int32_t V = llms_model_n_vocab(j->m);
    float *lg = malloc((size_t)V * 20 * sizeof *lg);
    int32_t prompt[20];
    for (int i = 0; i < 20; i++) prompt[i] = i ? 3 + (i * 7 + j->id * 31) % 400 : 1;
    if (llms_session_create(j->m, NULL, &s) || llms_session_feed_tokens_logits(s, prompt, 20, lg)) {
        j->err = "prompt";
        goto out;
    }
    for (int t = 0; t < THR_STEPS; t++) {
        const float *last = lg + (t == 0 ? 19 * (size_t)V : 0);
        int32_t tok = argmax(last, V);
        j->out[2 * t] = (float)tok;
        j->out[2 * t + 1] = last[tok];
        /* a fork that writes into the shared partial block, then goes away */
        if (t % 10 == 5) {
            float *fl = malloc((size_t)V * sizeof *fl);
            int32_t other = 77;
            if (llms_session_fork(s, &f) || llms_session_feed_tokens_logits(f, &other, 1, fl)) j->err = "fork";
            llms_session_destroy(f);
            f = NULL;
            free(fl);
            if (j->err) goto out;
        }
        if (llms_session_feed_tokens_logits(s, &tok, 1, lg)) {
            j->err = "step";
            goto out;
        }
    }
out:
    if (j->err) snprintf(j->msg, sizeof j->msg, "%s", llms_errmsg());
    llms_session_destroy(s);
    free(lg);
    return NULL;
}

static void test_kv_resident_threads(void **state) {
    (void)state;
    need_device();
    const char *path = fixture_path("models/aidreams260K.gguf");
    if (!path) {
        fixture_missing("models/aidreams260K.gguf");
        return;
    }
    float alone[THR][2 * THR_STEPS], together[THR][2 * THR_STEPS];
    for (int pass = 0; pass < 2; pass++) {
        rig r;
        rig_open(&r, path, LLMS_BACKEND_VULKAN, 0);
        thr_job jobs[THR];
        pthread_t th[THR];
        for (int i = 0; i < THR; i++) {
            memset(&jobs[i], 0, sizeof jobs[i]);
            jobs[i].m = r.m;
            jobs[i].id = i;
            jobs[i].out = pass ? together[i] : alone[i];
            if (!pass) thr_run(&jobs[i]);
            else assert_int_equal(pthread_create(&th[i], NULL, thr_run, &jobs[i]), 0);
        }
        for (int i = 0; pass && i < THR; i++) pthread_join(th[i], NULL);
        for (int i = 0; i < THR; i++)
            if (jobs[i].err) fail_msg("thread %d: %s failed: %s", i, jobs[i].err, jobs[i].msg);
        rig_close(&r);
    }
    for (int i = 0; i < THR; i++) assert_memory_equal(alone[i], together[i], sizeof alone[i]);
    check_validation();
}

/* KV blocks beyond the device memory budget: a clear error from the feed
 * that needs them, the session unchanged and usable (truncate or reset
 * and go on, with the CPU's logits), and the CPU context unaffected. */
static void test_kv_resident_out_of_device_memory(void **state) {
    (void)state;
    need_device();
    const char *path = fixture_path("models/rand-llama-spm-d128-f16.gguf");
    if (!path) {
        fixture_missing("models/rand-llama-spm-d128-f16.gguf");
        return;
    }
    int32_t prompt[8] = {1, 20, 30, 40, 50, 60, 70, 80};
    /* What the weights and one-token scratch take: a run without a budget,
     * less its KV storage. */
    rig g;
    rig_open(&g, path, LLMS_BACKEND_VULKAN, 0);
    float *lg = malloc((size_t)g.V * sizeof *lg), *lc = malloc((size_t)g.V * sizeof *lc);
    feed(g.s, prompt, 8, lg, g.V, "sizing");
    uint64_t kv_dev = 0;
    for (uint32_t l = 0; l < g.m->vk_kv->n_layer; l++) kv_dev += g.m->vk_kv->bufs[l].size;
    uint64_t fixed = g.m->ctx->vk->used - kv_dev;
    uint64_t block = kv_block_bytes(&g.m->kv);
    rig_close(&g);

    /* Room for about 4 blocks (64 positions) on top. */
    rig_open(&g, path, LLMS_BACKEND_VULKAN, fixed + 4 * block + block / 2);
    rig c;
    rig_open(&c, path, LLMS_BACKEND_CPU, 0);
    feed(g.s, prompt, 8, lg, g.V, "prompt under budget");
    feed(c.s, prompt, 8, lc, c.V, "cpu prompt");
    same_logits(lc, lg, g.V, "budget prompt", 0);
    llms_status st = LLMS_OK;
    uint32_t n = 8;
    for (; n < 1000 && st == LLMS_OK; n++) {
        int32_t tok = 3 + (int32_t)(n * 17 % 300);
        st = llms_session_feed_tokens_logits(g.s, &tok, 1, lg);
    }
    n--;   /* the position that failed */
    if (st != LLMS_ERR_DEVICE_MEMORY) fail_msg("expected LLMS_ERR_DEVICE_MEMORY, got %d: %s", (int)st, llms_errmsg());
    assert_non_null(strstr(llms_errmsg(), "KV cache"));
    assert_non_null(strstr(llms_session_errmsg(g.s), "KV cache"));
    print_message("KV out of device memory at position %u: %s\n", n, llms_errmsg());
    assert_true(n >= 32 && n <= 16 * 6);
    assert_int_equal(llms_session_n_tokens(g.s), n);
    assert_true(llms_session_usable(g.s));
    /* truncate back to the prompt and go on: as on the CPU */
    assert_int_equal(llms_session_truncate(g.s, 8), LLMS_OK);
    int32_t tok = 123;
    feed(g.s, &tok, 1, lg, g.V, "after truncate");
    feed(c.s, &tok, 1, lc, c.V, "cpu after prompt");
    same_logits(lc, lg, g.V, "after truncate", 1);
    /* reset and start over */
    assert_int_equal(llms_session_reset(g.s), LLMS_OK);
    assert_int_equal(llms_session_reset(c.s), LLMS_OK);
    feed(g.s, prompt, 8, lg, g.V, "after reset");
    feed(c.s, prompt, 8, lc, c.V, "cpu after reset");
    same_logits(lc, lg, g.V, "after reset", 0);
    /* the CPU context carries on past the device's limit */
    int32_t many[120];
    for (int i = 0; i < 120; i++) many[i] = 3 + i;
    feed(c.s, many, 120, lc, c.V, "cpu long");
    free(lg);
    free(lc);
    rig_close(&g);
    rig_close(&c);
    check_validation();
}

/* llms-generate --backend vulkan reproduces the reference completions. */
static void test_generate_reference_text(void **state) {
    (void)state;
    need_device();
    const char *model = fixture_path("models/aidreams260K.gguf");
    const char *gpath = fixture_path("models/aidreams260K.golden.json");
    if (!model || !gpath) {
        fixture_missing("models/aidreams260K.gguf");
        return;
    }
    const char *bin = getenv("LLMS_BIN");
    if (!bin) bin = "build/bin";
    char *text = read_file_all(gpath, NULL);
    cJSON *g = cJSON_Parse(text);
    free(text);
    assert_non_null(g);
    const cJSON *c;
    int n_cases = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(g, "cases")) {
        const char *prompt = cJSON_GetObjectItem(c, "prompt")->valuestring;
        const char *expect = cJSON_GetObjectItem(c, "completion")->valuestring;
        int n_steps = cJSON_GetArraySize(cJSON_GetObjectItem(c, "steps"));
        assert_true(!strchr(prompt, '\'') && !strchr(model, '\''));
        char cmd[4096], outp[64];
        snprintf(outp, sizeof outp, "/tmp/llms_vk_gen.%d", (int)getpid());
        snprintf(cmd, sizeof cmd,
                 "%s/llms-generate --backend vulkan --model '%s' --prompt '%s' --max-tokens %d "
                 "--temperature 0 > %s 2>/dev/null",
                 bin, model, prompt, n_steps, outp);
        int rc = system(cmd);
        char *out = read_file_all(outp, NULL);
        remove(outp);
        assert_int_equal(rc, 0);
        assert_non_null(out);
        if (strcmp(out, expect) != 0) fail_msg("prompt '%s':\n  got      '%s'\n  expected '%s'", prompt, out, expect);
        free(out);
        n_cases++;
    }
    assert_true(n_cases >= 1);
    cJSON_Delete(g);
}

/* With LLMS_VK_VALIDATION=1 the layer is really on and its errors really
 * reach the counter: provoke one (a zero-sized buffer) and see it counted. */
static void test_validation_catches_errors(void **state) {
    (void)state;
    need_device();
    const char *v = getenv("LLMS_VK_VALIDATION");
    if (!v || v[0] != '1') {
        print_message("skipping: LLMS_VK_VALIDATION is not 1\n");
        skip();
    }
    assert_true(g_dev->vi->validation);
    uint64_t before = vk_validation_errors();
    VkBufferCreateInfo bci = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                              .size = 0,
                              .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT};
    VkBuffer buf = VK_NULL_HANDLE;
    VkResult r = g_dev->vkCreateBuffer(g_dev->dev, &bci, NULL, &buf);
    if (r == VK_SUCCESS) g_dev->vkDestroyBuffer(g_dev->dev, buf, NULL);
    assert_true(vk_validation_errors() > before);
    print_message("validation layer caught: %.120s\n", vk_validation_last());
    g_val_allowed = vk_validation_errors();
}

/* The public output struct's layout is ABI. */
static void test_device_info_layout(void **state) {
    (void)state;
    assert_int_equal(offsetof(llms_device_info, type), 4);
    assert_int_equal(offsetof(llms_device_info, name), 8);
    assert_int_equal(offsetof(llms_device_info, vendor_id), 264);
    assert_int_equal(offsetof(llms_device_info, subgroup_size), 276);
    assert_int_equal(offsetof(llms_device_info, memory_bytes), 280);
    assert_int_equal(offsetof(llms_device_info, features), 288);
    assert_int_equal(offsetof(llms_device_info, max_workgroup_size), 292);
    assert_int_equal(sizeof(llms_device_info), 296);
}

int main(void) {
    /* Validation is on by default wherever the layer is installed (as in
     * CI, with Debian's vulkan-validationlayers); LLMS_VK_VALIDATION=0
     * turns it off. */
    if (!getenv("LLMS_VK_VALIDATION") &&
        access("/usr/share/vulkan/explicit_layer.d/VkLayer_khronos_validation.json", R_OK) == 0)
        setenv("LLMS_VK_VALIDATION", "1", 0);
    /* LLMS_TEST_FILTER=test_kv_* runs the matching tests alone. */
    if (getenv("LLMS_TEST_FILTER")) cmocka_set_test_filter(getenv("LLMS_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_device_api),
        cmocka_unit_test(test_memory_budget),
        cmocka_unit_test(test_matvec),
        cmocka_unit_test(test_matmul_tiled),
        cmocka_unit_test(test_coopmat_shader_embedded),
        cmocka_unit_test(test_coopmat_compare),
        cmocka_unit_test(test_coopmat_detection),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_swiglu_add),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_model_logits),
        cmocka_unit_test(test_model_logits_staging),
        cmocka_unit_test(test_multi_sequence_batch),
        cmocka_unit_test(test_model_over_budget),
        cmocka_unit_test(test_kv_resident_long_generation),
        cmocka_unit_test(test_kv_resident_fork),
        cmocka_unit_test(test_kv_resident_prefix_cache),
        cmocka_unit_test(test_kv_resident_threads),
        cmocka_unit_test(test_kv_resident_out_of_device_memory),
        cmocka_unit_test(test_generate_reference_text),
        cmocka_unit_test(test_device_info_layout),
        cmocka_unit_test(test_validation_catches_errors),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
