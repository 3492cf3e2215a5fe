/*
 * Model-file tools: the GGUF writer, llms_model_quantize and
 * llms_model_write_random.
 *
 * Quantizing the F16 fixture to Q8_0 / Q4_0 must give a model whose logits
 * match the llama.cpp references of the fixture's own Q8_0 / Q4_0 files
 * (made by llama.cpp's quantizer from the same F16 weights) within the
 * tolerances test_model.c uses for those files (0.30; see its header):
 * the block quantizers are bit-exact ports, so a wrong layout, a wrong
 * type choice or a writer bug shows up as errors far above that.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "llmserve.h"
#include "gguf/gguf.h"
#include "core/alloc.h"
#include "quant/quant.h"
#include "support/fixtures.h"

static llms_context *g_ctx;

static int setup(void **state) {
    (void)state;
    llms_context_params p;
    llms_context_params_init(&p);
    p.n_threads = 2;
    p.backend = LLMS_BACKEND_CPU;
    return llms_context_create(&p, &g_ctx) == LLMS_OK ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    llms_context_destroy(g_ctx);
    return 0;
}

static void tmp_path(char *buf, size_t n, const char *tag) {
    snprintf(buf, n, "/tmp/llms-test-tools-%ld-%s.gguf", (long)getpid(), tag);
}

/* Max |logit - reference| over each step's reference top-k, prefill and decode. */
static void check_golden(llms_model *m, const char *golden_name, double tol, double tol_decode) {
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s.golden.json", golden_name);
    const char *path = fixture_path(rel);
    if (!path) { fixture_missing(rel); return; }
    char *text = read_file_all(path, NULL);
    assert_non_null(text);
    cJSON *g = cJSON_Parse(text);
    free(text);
    assert_non_null(g);
    const int32_t V = llms_model_n_vocab(m);
    double max_err = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(g, "cases")) {
        const cJSON *pt = cJSON_GetObjectItem(c, "prompt_tokens");
        const cJSON *steps = cJSON_GetObjectItem(c, "steps");
        size_t n_prompt = (size_t)cJSON_GetArraySize(pt), n_steps = (size_t)cJSON_GetArraySize(steps);
        size_t n_all = n_prompt + n_steps - 1;
        int32_t *all = malloc(n_all * sizeof *all);
        for (size_t i = 0; i < n_prompt; i++) all[i] = (int32_t)cJSON_GetArrayItem(pt, (int)i)->valuedouble;
        for (size_t i = 0; i + 1 < n_steps; i++) {
            const cJSON *top = cJSON_GetObjectItem(cJSON_GetArrayItem(steps, (int)i), "top");
            all[n_prompt + i] = (int32_t)cJSON_GetArrayItem(cJSON_GetArrayItem(top, 0), 0)->valuedouble;
        }
        llms_session_params sp;
        llms_session_params_init(&sp);
        sp.n_ctx = (uint32_t)n_all;
        llms_session *s;
        assert_int_equal(llms_session_create(m, &sp, &s), LLMS_OK);
        float *lg = malloc(n_all * (size_t)V * sizeof *lg);
        assert_int_equal(llms_session_feed_tokens_logits(s, all, n_all, lg), LLMS_OK);
        assert_int_equal(llms_session_reset(s), LLMS_OK);
        assert_int_equal(llms_session_feed_tokens(s, all, n_prompt), LLMS_OK);
        for (size_t i = 0; i < n_steps; i++) {
            if (i) assert_int_equal(llms_session_feed_tokens(s, &all[n_prompt + i - 1], 1), LLMS_OK);
            const float *paths[2] = {lg + (n_prompt - 1 + i) * (size_t)V, llms_session_logits(s)};
            const cJSON *top = cJSON_GetObjectItem(cJSON_GetArrayItem(steps, (int)i), "top");
            for (int p = 0; p < 2; p++)
                for (int k = 0; k < cJSON_GetArraySize(top); k++) {
                    const cJSON *pair = cJSON_GetArrayItem(top, k);
                    int id = (int)cJSON_GetArrayItem(pair, 0)->valuedouble;
                    double err = fabs(paths[p][id] - cJSON_GetArrayItem(pair, 1)->valuedouble);
                    if (err > max_err) max_err = err;
                    if (err > (p ? tol_decode : tol))
                        fail_msg("%s %s step %zu token %d: error %.4f > %.2f", golden_name,
                                 p ? "decode" : "prefill", i, id, err, p ? tol_decode : tol);
                }
        }
        llms_session_destroy(s);
        free(lg);
        free(all);
    }
    printf("# quantized vs %-28s max err %.4f (tolerance %.2f)\n", golden_name, max_err, tol);
    cJSON_Delete(g);
}

/* Our weights against llama.cpp's file of the same scheme: same type per
 * tensor, and every dequantized weight within one quantization step (the
 * quantizers may round a few ties differently). Returns the fraction of
 * identical bytes. */
static double compare_weights(const char *ours, const char *ref_rel) {
    const char *ref = fixture_path(ref_rel);
    if (!ref) { fixture_missing(ref_rel); return 1; }
    lalloc a = lalloc_libc;
    gguf_file *x, *y;
    assert_int_equal(gguf_open_file(&a, ours, 0, &x), LLMS_OK);
    assert_int_equal(gguf_open_file(&a, ref, 0, &y), LLMS_OK);
    assert_int_equal(gguf_tensor_count(x), gguf_tensor_count(y));
    uint64_t same = 0, total = 0;
    for (uint64_t i = 0; i < gguf_tensor_count(x); i++) {
        const gguf_tensor *t = gguf_tensor_at(x, i), *u = gguf_find_tensor(y, t->name);
        assert_non_null(u);
        if (t->type != u->type) fail_msg("tensor %s: type %u, llama.cpp chose %u", t->name, t->type, u->type);
        assert_int_equal(t->n_bytes, u->n_bytes);
        for (uint64_t k = 0; k < t->n_bytes; k++) same += ((const uint8_t *)t->data)[k] == ((const uint8_t *)u->data)[k];
        total += t->n_bytes;
        float *f1 = malloc(t->n_elems * sizeof *f1), *f2 = malloc(t->n_elems * sizeof *f2);
        quant_dequantize_row(t->type, t->data, f1, (int64_t)t->n_elems);
        quant_dequantize_row(u->type, u->data, f2, (int64_t)u->n_elems);
        /* One step of the coarsest scheme here (4 bits over the block range)
         * is at most max|w| / 7.5. */
        double md = 0, mx = 0;
        for (uint64_t k = 0; k < t->n_elems; k++) {
            if (fabs(f1[k] - f2[k]) > md) md = fabs(f1[k] - f2[k]);
            if (fabs(f2[k]) > mx) mx = fabs(f2[k]);
        }
        if (md > mx / 7.5 + 1e-6) fail_msg("tensor %s: max difference %.4g over max |w| %.4g", t->name, md, mx);
        free(f1);
        free(f2);
    }
    gguf_close(x);
    gguf_close(y);
    return (double)same / (double)total;
}

static void quantize_and_check(int32_t ftype, const char *golden, const char *type_name, int32_t want_type,
                               double tol_decode) {
    const char *in = fixture_path("models/rand-llama-spm-d128-f16.gguf");
    if (!in) { fixture_missing("models/rand-llama-spm-d128-f16.gguf"); return; }
    char out[256];
    tmp_path(out, sizeof out, type_name);
    llms_quantize_params qp;
    llms_quantize_params_init(&qp);
    qp.ftype = ftype;
    llms_status st = llms_model_quantize(g_ctx, in, out, &qp);
    if (st) fail_msg("quantize: %s (%s)", llms_status_string(st), llms_errmsg());
    llms_model *m = NULL;
    st = llms_model_load(g_ctx, out, NULL, &m);
    if (st) fail_msg("load: %s (%s)", llms_status_string(st), llms_errmsg());
    /* Every matrix has the scheme's type, vectors stay F32. */
    llms_tensor_info ti;
    llms_tensor_info_init(&ti);
    int n_mat = 0;
    for (uint32_t i = 0; llms_model_tensor(m, i, &ti) == LLMS_OK; i++) {
        if (ti.n_dims == 2) { assert_int_equal(ti.type, want_type); n_mat++; }
        else assert_int_equal(ti.type, LLMS_TYPE_F32);
    }
    assert_true(n_mat > 0);
    int64_t ft = 0;
    assert_int_equal(llms_model_meta_int(m, "general.file_type", &ft), LLMS_OK);
    assert_int_equal(ft, ftype);
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s.gguf", golden);
    double same = compare_weights(out, rel);
    printf("# %s: %.4f%% of bytes identical to llama.cpp's file\n", type_name, 100 * same);
    assert_true(same > 0.99);
    check_golden(m, golden, 0.30, tol_decode);
    llms_model_destroy(m);
    unlink(out);
}

static void test_quantize_q8_0(void **s) {
    (void)s;
    quantize_and_check(LLMS_FTYPE_Q8_0, "rand-llama-spm-d128-q8_0", "q8_0", LLMS_TYPE_Q8_0, 0.30);
}

static void test_quantize_q4_0(void **s) {
    (void)s;
    quantize_and_check(LLMS_FTYPE_Q4_0, "rand-llama-spm-d128-q4_0", "q4_0", LLMS_TYPE_Q4_0, 0.30);
}

/* Q4_K_M on the d256 F16 fixture: the mix of llama.cpp's file (same type
 * for every tensor) and each weight within one 4-bit step of its value
 * there. Logits are not compared with that file's reference: our K-quant
 * scale search is simpler than llama.cpp's, so ~25% of the bytes differ and
 * the logits carry different 4-bit noise (measured 1.4 at worst, against
 * the 0.40 that test_model.c allows for llama.cpp's own weights). */
static void test_quantize_q4_k_m(void **s) {
    (void)s;
    const char *in = fixture_path("models/rand-llama-spm-d256-f16.gguf");
    const char *ref = fixture_path("models/rand-llama-spm-d256-q4_k_m.gguf");
    if (!in || !ref) { fixture_missing("models/rand-llama-spm-d256-f16.gguf"); return; }
    char out[256];
    tmp_path(out, sizeof out, "q4_k_m");
    llms_quantize_params qp;
    llms_quantize_params_init(&qp);
    qp.ftype = LLMS_FTYPE_Q4_K_M;
    assert_int_equal(llms_model_quantize(g_ctx, in, out, &qp), LLMS_OK);
    llms_model *m = NULL;
    assert_int_equal(llms_model_load(g_ctx, out, NULL, &m), LLMS_OK);
    double same = compare_weights(out, "models/rand-llama-spm-d256-q4_k_m.gguf");
    printf("# q4_k_m: %.2f%% of bytes identical to llama.cpp's file (simpler K-quant search)\n", 100 * same);
    llms_model_destroy(m);
    unlink(out);
}

/* A tiny custom shape: loads, generates, and is deterministic per seed. */
static void test_write_random(void **s) {
    (void)s;
    const int32_t ftypes[] = {LLMS_FTYPE_F16, LLMS_FTYPE_Q8_0, LLMS_FTYPE_Q4_K_M, LLMS_FTYPE_Q6_K};
    for (size_t k = 0; k < sizeof ftypes / sizeof ftypes[0]; k++) {
        char out[256];
        tmp_path(out, sizeof out, "random");
        llms_random_model_params p;
        llms_random_model_params_init(&p);
        p.n_embd = 256; p.n_layer = 2; p.n_head = 4; p.n_head_kv = 2; p.n_ff = 512; p.n_vocab = 600;
        p.ftype = ftypes[k];
        p.arch = k % 2 ? "qwen2" : "llama";
        p.qkv_bias = k % 2;
        p.tied = k >= 2;
        llms_status st = llms_model_write_random(g_ctx, &p, out);
        if (st) fail_msg("write_random: %s (%s)", llms_status_string(st), llms_errmsg());
        llms_model *m = NULL;
        st = llms_model_load(g_ctx, out, NULL, &m);
        if (st) fail_msg("load: %s (%s)", llms_status_string(st), llms_errmsg());
        assert_int_equal(llms_model_n_vocab(m), 600);
        llms_session *ss;
        assert_int_equal(llms_session_create(m, NULL, &ss), LLMS_OK);
        assert_int_equal(llms_session_feed_text(ss, "hello world", 11, LLMS_TOKENIZE_MODEL_DEFAULTS), LLMS_OK);
        const float *lg = llms_session_logits(ss);
        double sd = 0;
        for (int i = 0; i < 600; i++) { assert_true(isfinite(lg[i])); sd += lg[i] * lg[i]; }
        assert_true(sd > 0);
        llms_sampling_params sp;
        llms_sampling_params_init(&sp);
        sp.temperature = 0;
        sp.max_tokens = 8;
        assert_int_equal(llms_session_generate_begin(ss, &sp), LLMS_OK);
        llms_step_result r;
        llms_step_result_init(&r);
        int steps = 0;
        llms_status rs;
        while ((rs = llms_session_step(ss, &r)) == LLMS_TOKEN) steps++;
        assert_int_equal(rs, LLMS_DONE);
        assert_true(steps >= 1);
        llms_session_destroy(ss);
        llms_model_destroy(m);
        unlink(out);
    }
}

/* The writer round-trips key/values of every kind and tensor data. */
static llms_status fill_pattern(void *user, uint64_t i, void *dst, uint64_t n) {
    (void)user;
    for (uint64_t k = 0; k < n; k++) ((uint8_t *)dst)[k] = (uint8_t)(i * 31 + k);
    return LLMS_OK;
}

static void test_writer_roundtrip(void **s) {
    (void)s;
    lalloc a = lalloc_libc;
    gguf_wr *w;
    assert_int_equal(gguf_wr_create(&a, &w), LLMS_OK);
    const char *strs[] = {"a", "", "ccc"};
    int32_t ints[] = {1, -2, 3};
    assert_int_equal(gguf_wr_set_u32(w, "k.u32", 7), LLMS_OK);
    assert_int_equal(gguf_wr_set_f32(w, "k.f32", 1.5f), LLMS_OK);
    assert_int_equal(gguf_wr_set_bool(w, "k.bool", 1), LLMS_OK);
    assert_int_equal(gguf_wr_set_str(w, "k.str", "hello"), LLMS_OK);
    assert_int_equal(gguf_wr_set_arr(w, "k.strs", GGUF_STRING, 3, strs), LLMS_OK);
    assert_int_equal(gguf_wr_set_arr(w, "k.ints", GGUF_INT32, 3, ints), LLMS_OK);
    int64_t ne1[1] = {64}, ne2[2] = {64, 3};
    assert_int_equal(gguf_wr_add_tensor(w, "t.a", LLMS_TYPE_F32, 1, ne1, NULL), LLMS_OK);
    assert_int_equal(gguf_wr_add_tensor(w, "t.b", LLMS_TYPE_Q8_0, 2, ne2, NULL), LLMS_OK);
    assert_int_equal(gguf_wr_add_tensor(w, "t.bad", LLMS_TYPE_Q8_0, 1, (int64_t[]){33}, NULL), LLMS_ERR_GGUF_SHAPE);
    char out[256];
    tmp_path(out, sizeof out, "writer");
    assert_int_equal(gguf_wr_write_file(w, out, fill_pattern, NULL), LLMS_OK);
    gguf_wr_free(w);

    gguf_file *f;
    assert_int_equal(gguf_open_file(&a, out, 0, &f), LLMS_OK);
    uint32_t u;
    double d;
    int b;
    const gguf_string *str;
    assert_int_equal(gguf_get_u32(f, "k.u32", &u), LLMS_OK);
    assert_int_equal(u, 7);
    assert_int_equal(gguf_get_f64(f, "k.f32", &d), LLMS_OK);
    assert_true(d == 1.5);
    assert_int_equal(gguf_get_bool(f, "k.bool", &b), LLMS_OK);
    assert_int_equal(b, 1);
    assert_int_equal(gguf_get_str(f, "k.str", &str), LLMS_OK);
    assert_string_equal(str->s, "hello");
    uint64_t n;
    const void *data;
    assert_int_equal(gguf_get_arr(f, "k.strs", GGUF_STRING, &n, &data), LLMS_OK);
    assert_int_equal(n, 3);
    assert_string_equal(((const gguf_string *)data)[2].s, "ccc");
    assert_int_equal(gguf_get_arr(f, "k.ints", GGUF_INT32, &n, &data), LLMS_OK);
    assert_memory_equal(data, ints, sizeof ints);
    assert_int_equal(gguf_tensor_count(f), 2);
    const gguf_tensor *t = gguf_find_tensor(f, "t.b");
    assert_non_null(t);
    assert_int_equal(t->type, LLMS_TYPE_Q8_0);
    assert_int_equal(t->ne[1], 3);
    for (uint64_t k = 0; k < t->n_bytes; k++) assert_int_equal(((const uint8_t *)t->data)[k], (uint8_t)(31 + k));
    gguf_close(f);
    unlink(out);
}

static void test_ftype_names(void **s) {
    (void)s;
    assert_int_equal(llms_ftype_from_name("q4_k_m"), LLMS_FTYPE_Q4_K_M);
    assert_int_equal(llms_ftype_from_name("Q3_K"), LLMS_FTYPE_Q3_K_M);
    assert_int_equal(llms_ftype_from_name("nope"), -1);
    assert_string_equal(llms_ftype_name(LLMS_FTYPE_Q8_0), "Q8_0");
    assert_null(llms_ftype_name(99));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ftype_names),
        cmocka_unit_test(test_writer_roundtrip),
        cmocka_unit_test(test_quantize_q8_0),
        cmocka_unit_test(test_quantize_q4_0),
        cmocka_unit_test(test_quantize_q4_k_m),
        cmocka_unit_test(test_write_random),
    };
    return cmocka_run_group_tests_name("tools", tests, setup, teardown);
}
