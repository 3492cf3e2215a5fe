/*
 * Model runtime against references no one here wrote: every fixture model
 * against its llama.cpp golden file, by teacher forcing, through both the
 * prefill path (all tokens in one pass: dequantize + sgemm) and the decode
 * path (one token per pass: matrix-vector kernels).
 *
 * Tolerances (max |our logit - reference logit| over each step's reference
 * top-10), justified from the fixtures README, which measured an
 * independent float32 forward pass against these references:
 *   F32 (aidreams260K)  0.01  README: 0.003 for an independent f32 pass;
 *                             x3 for summation-order differences.
 *   F16                 0.05  README: 0.02; our activations are f32 like
 *                             that pass, x2.5 margin for order effects.
 *   Q8_0                0.30  README: 0.17, because llama.cpp quantizes the
 *                             activations to 8 bits and an f32 pass does not;
 *                             our decode path quantizes them too (differently
 *                             blocked), so allow ~1.75x.
 *   Q4_0                0.30  README: 0.13; same reasoning as Q8_0.
 *   Q4_K_M              0.40  Q4_K/Q6_K weights against Q8_K activations in
 *                             llama.cpp (README gives no figure). Measured
 *                             here: max 0.32, 99th percentile 0.22, mean
 *                             signed error -0.005 over all top-10 logits:
 *                             unbiased noise from 8-bit activations meeting
 *                             4-bit weights (the F16 models, same graph, stay
 *                             under 0.02). A dequantization bug would shift
 *                             logits systematically by about their spread (3).
 * A step whose reference top-two gap is below the tolerance is a tie: only
 * the logits are compared there, not which token is best.
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

#include "llmserve.h"
#include "support/fixtures.h"
#include "backend/backend.h"

typedef struct golden_model {
    const char *name;
    double tol;
} golden_model;

static const golden_model MODELS[] = {
    {"aidreams260K", 0.01},
    {"rand-llama-spm-d128-f16", 0.05},
    {"rand-llama-spm-d128-q8_0", 0.30},
    {"rand-llama-spm-d128-q4_0", 0.30},
    {"rand-llama-spm-d256-f16", 0.05},
    {"rand-llama-spm-d256-q4_k_m", 0.40},
};

static llms_context *g_ctx;

static int setup(void **state) {
    (void)state;
    llms_context_params p;
    llms_context_params_init(&p);
    p.n_threads = 2;
    return llms_context_create(&p, &g_ctx) == LLMS_OK ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    llms_context_destroy(g_ctx);
    return 0;
}

static llms_model *load_fixture(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s.gguf", name);
    const char *path = fixture_path(rel);
    if (!path) { fixture_missing(rel); return NULL; }
    llms_model *m = NULL;
    llms_status st = llms_model_load(g_ctx, path, NULL, &m);
    if (st) fail_msg("loading %s: %s (%s)", name, llms_status_string(st), llms_errmsg());
    return m;
}

static cJSON *load_golden(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s.golden.json", name);
    const char *path = fixture_path(rel);
    if (!path) { fixture_missing(rel); return NULL; }
    char *text = read_file_all(path, NULL);
    assert_non_null(text);
    cJSON *j = cJSON_Parse(text);
    free(text);
    assert_non_null(j);
    return j;
}

static int32_t *json_ints(const cJSON *arr, size_t *n) {
    *n = (size_t)cJSON_GetArraySize(arr);
    int32_t *v = malloc((*n ? *n : 1) * sizeof *v);
    for (size_t i = 0; i < *n; i++) v[i] = (int32_t)cJSON_GetArrayItem(arr, (int)i)->valuedouble;
    return v;
}

typedef struct check_stats {
    double max_err;
    int steps, ties, argmax_ok;
} check_stats;

/* Compares our logits after one step with the reference step. */
static void check_step(const char *what, const float *lg, int32_t V, const cJSON *step, double tol,
                       check_stats *cs) {
    const cJSON *top = cJSON_GetObjectItem(step, "top");
    int n = cJSON_GetArraySize(top);
    assert_true(n >= 2);
    for (int k = 0; k < n; k++) {
        const cJSON *pair = cJSON_GetArrayItem(top, k);
        int id = (int)cJSON_GetArrayItem(pair, 0)->valuedouble;
        double ref = cJSON_GetArrayItem(pair, 1)->valuedouble;
        assert_true(id >= 0 && id < V);
        double err = fabs(lg[id] - ref);
        if (err > cs->max_err) cs->max_err = err;
        if (err > tol)
            fail_msg("%s step %d: token %d logit %.5f vs reference %.5f (tolerance %.3f)", what, cs->steps,
                     id, lg[id], ref, tol);
    }
    double g0 = cJSON_GetArrayItem(cJSON_GetArrayItem(top, 0), 1)->valuedouble;
    double g1 = cJSON_GetArrayItem(cJSON_GetArrayItem(top, 1), 1)->valuedouble;
    int ref_best = (int)cJSON_GetArrayItem(cJSON_GetArrayItem(top, 0), 0)->valuedouble;
    int best = 0;
    for (int32_t t = 1; t < V; t++) if (lg[t] > lg[best]) best = t;
    if (g0 - g1 < tol) cs->ties++;
    else if (best != ref_best)
        fail_msg("%s step %d: best token %d but reference %d (gap %.4f)", what, cs->steps, best, ref_best, g0 - g1);
    else cs->argmax_ok++;
    /* The whole distribution, not just the top: mean and spread. */
    double mean = 0, sq = 0;
    for (int32_t t = 0; t < V; t++) mean += lg[t];
    mean /= V;
    for (int32_t t = 0; t < V; t++) sq += (lg[t] - mean) * (lg[t] - mean);
    double sd = sqrt(sq / V);
    double ref_mean = cJSON_GetObjectItem(step, "logit_mean")->valuedouble;
    double ref_sd = cJSON_GetObjectItem(step, "logit_std")->valuedouble;
    if (fabs(mean - ref_mean) > tol || fabs(sd - ref_sd) > tol + 0.02 * ref_sd)
        fail_msg("%s step %d: logit mean/std %.4f/%.4f vs reference %.4f/%.4f", what, cs->steps, mean, sd,
                 ref_mean, ref_sd);
    cs->steps++;
}

static void run_golden(const golden_model *gm) {
    llms_model *m = load_fixture(gm->name);
    cJSON *g = load_golden(gm->name);
    const int32_t V = llms_model_n_vocab(m);
    assert_int_equal(V, (int)cJSON_GetObjectItem(g, "n_vocab")->valuedouble);
    check_stats prefill = {0}, decode = {0};
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(g, "cases")) {
        const char *prompt = cJSON_GetObjectItem(c, "prompt")->valuestring;
        size_t n_prompt;
        int32_t *ptoks = json_ints(cJSON_GetObjectItem(c, "prompt_tokens"), &n_prompt);
        /* Our tokenizer gives the reference prompt tokens. */
        int32_t got[4096];
        size_t n_got = 0;
        assert_int_equal(llms_tokenize(m, prompt, strlen(prompt), LLMS_TOKENIZE_MODEL_DEFAULTS, got, 4096, &n_got),
                         LLMS_OK);
        assert_int_equal(n_got, n_prompt);
        assert_memory_equal(got, ptoks, n_prompt * sizeof *got);

        const cJSON *steps = cJSON_GetObjectItem(c, "steps");
        size_t n_steps = (size_t)cJSON_GetArraySize(steps);
        size_t n_all = n_prompt + n_steps - 1;
        int32_t *all = malloc(n_all * sizeof *all);
        memcpy(all, ptoks, n_prompt * sizeof *all);
        for (size_t i = 0; i + 1 < n_steps; i++) {
            const cJSON *top = cJSON_GetObjectItem(cJSON_GetArrayItem(steps, (int)i), "top");
            all[n_prompt + i] = (int32_t)cJSON_GetArrayItem(cJSON_GetArrayItem(top, 0), 0)->valuedouble;
        }
        llms_session_params sp;
        llms_session_params_init(&sp);
        sp.n_ctx = (uint32_t)n_all;

        /* Prefill path: everything in one call. */
        llms_session *s;
        assert_int_equal(llms_session_create(m, &sp, &s), LLMS_OK);
        float *lg = malloc(n_all * (size_t)V * sizeof *lg);
        assert_int_equal(llms_session_feed_tokens_logits(s, all, n_all, lg), LLMS_OK);
        for (size_t i = 0; i < n_steps; i++)
            check_step("prefill", lg + (n_prompt - 1 + i) * (size_t)V, V, cJSON_GetArrayItem(steps, (int)i),
                       gm->tol, &prefill);

        /* Decode path: the prompt, then one token per forward pass. */
        assert_int_equal(llms_session_reset(s), LLMS_OK);
        assert_int_equal(llms_session_feed_tokens(s, all, n_prompt), LLMS_OK);
        for (size_t i = 0; i < n_steps; i++) {
            if (i) assert_int_equal(llms_session_feed_tokens(s, &all[n_prompt + i - 1], 1), LLMS_OK);
            check_step("decode", llms_session_logits(s), V, cJSON_GetArrayItem(steps, (int)i), gm->tol, &decode);
        }
        llms_session_destroy(s);
        free(lg);
        free(all);
        free(ptoks);
    }
    printf("# %-28s prefill: %3d steps, max err %.4f, %d ties | decode: %3d steps, max err %.4f, %d ties"
           " (tolerance %.2f)\n",
           gm->name, prefill.steps, prefill.max_err, prefill.ties, decode.steps, decode.max_err, decode.ties,
           gm->tol);
    cJSON_Delete(g);
    llms_model_destroy(m);
}

static void test_golden_aidreams(void **s) { (void)s; run_golden(&MODELS[0]); }
static void test_golden_d128_f16(void **s) { (void)s; run_golden(&MODELS[1]); }
static void test_golden_d128_q8_0(void **s) { (void)s; run_golden(&MODELS[2]); }
static void test_golden_d128_q4_0(void **s) { (void)s; run_golden(&MODELS[3]); }
static void test_golden_d256_f16(void **s) { (void)s; run_golden(&MODELS[4]); }
static void test_golden_d256_q4_k_m(void **s) { (void)s; run_golden(&MODELS[5]); }

/* The same prompt as one prefill and token by token: same logits within
 * float tolerance (different summation order only; F16 weights so both
 * paths use float activations). */
static void test_prefill_equals_token_by_token(void **state) {
    (void)state;
    llms_model *m = load_fixture("rand-llama-spm-d128-f16");
    const int32_t V = llms_model_n_vocab(m);
    const char *text = "The library keeps every request in a queue and the scheduler packs them together";
    int32_t toks[128];
    size_t n;
    assert_int_equal(llms_tokenize(m, text, strlen(text), LLMS_TOKENIZE_ADD_BOS, toks, 128, &n), LLMS_OK);
    llms_session *a, *b;
    assert_int_equal(llms_session_create(m, NULL, &a), LLMS_OK);
    assert_int_equal(llms_session_create(m, NULL, &b), LLMS_OK);
    float *all = malloc(n * (size_t)V * sizeof *all);
    assert_int_equal(llms_session_feed_tokens_logits(a, toks, n, all), LLMS_OK);
    double max_err = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(llms_session_feed_tokens(b, &toks[i], 1), LLMS_OK);
        const float *lb = llms_session_logits(b);
        for (int32_t t = 0; t < V; t++) {
            double e = fabs(lb[t] - all[i * (size_t)V + t]);
            if (e > max_err) max_err = e;
        }
    }
    printf("# prefill vs token-by-token: %zu positions, max |diff| %.2e\n", n, max_err);
    assert_true(max_err < 2e-3);
    free(all);
    llms_session_destroy(a);
    llms_session_destroy(b);
    llms_model_destroy(m);
}

/* Deterministic mode (the scheduler's flag): a token's logits are
 * bit-identical decoded alone and inside a batch with another sequence's
 * prompt, on every weight type, including those whose single-token
 * products otherwise take another kernel than batches (Q4_K, Q6_K). */
static float *decode_logits(llms_model *m, int with_other) {
    kv_seq s[2];
    memset(s, 0, sizeof s);
    enum { P = 7, Q = 5 };
    const uint32_t V = m->hp.n_vocab;
    assert_int_equal(kv_seq_reserve(&m->kv, &s[0], P + 1, 0), LLMS_OK);
    assert_int_equal(kv_seq_reserve(&m->kv, &s[1], Q, 0), LLMS_OK);
    kv_seq *seqs[2] = {&s[0], &s[1]};
    int32_t tok[P + Q];
    uint32_t pos[P + Q], seq[P + Q];
    uint8_t want[P + Q];
    for (uint32_t i = 0; i < P; i++) {
        tok[i] = (int32_t)(i == 0 ? 1 : 3 + (i * 11) % 90);
        pos[i] = i;
        seq[i] = 0;
        want[i] = 0;
    }
    float *out = malloc((size_t)(Q + 1) * V * sizeof *out);
    assert_non_null(out);
    fwd_batch pre = {P, tok, pos, seq, want, seqs, 1, FWD_DETERMINISTIC};
    assert_int_equal(backend_forward(m, &pre, out), LLMS_OK);
    /* The decode token first, then (with_other) the other sequence's prompt. */
    uint32_t n = 1;
    tok[0] = 42;
    pos[0] = P;
    seq[0] = 0;
    want[0] = 1;
    for (uint32_t i = 0; with_other && i < Q; i++, n++) {
        tok[n] = (int32_t)(i == 0 ? 1 : 5 + i * 13);
        pos[n] = i;
        seq[n] = 1;
        want[n] = 1;
    }
    fwd_batch dec = {n, tok, pos, seq, want, seqs, 2, FWD_DETERMINISTIC};
    assert_int_equal(backend_forward(m, &dec, out), LLMS_OK);
    kv_seq_free(&m->kv, &s[0]);
    kv_seq_free(&m->kv, &s[1]);
    return out;
}

/* A context on the CPU backend, two threads. */
static llms_context *cpu_context(void) {
    llms_context_params cp;
    llms_context_params_init(&cp);
    cp.backend = LLMS_BACKEND_CPU;
    cp.n_threads = 2;
    llms_context *ctx;
    assert_int_equal(llms_context_create(&cp, &ctx), LLMS_OK);
    return ctx;
}

static void test_deterministic_bitwise(void **state) {
    (void)state;
    static const char *const models[] = {"models/rand-llama-spm-d128-q4_0.gguf", "models/rand-llama-spm-d128-q8_0.gguf",
                                         "models/rand-llama-spm-d256-q4_k_m.gguf", "models/rand-llama-spm-d128-f16.gguf"};
    llms_context *ctx = cpu_context();
    for (size_t k = 0; k < sizeof models / sizeof models[0]; k++) {
        const char *path = fixture_path(models[k]);
        if (!path) fixture_missing(models[k]);
        llms_model *m;
        assert_int_equal(llms_model_load(ctx, path, NULL, &m), LLMS_OK);
        float *alone = decode_logits(m, 0), *batched = decode_logits(m, 1);
        if (memcmp(alone, batched, m->hp.n_vocab * sizeof(float)) != 0)
            fail_msg("%s: logits differ alone and batched in deterministic mode", models[k]);
        free(alone);
        free(batched);
        llms_model_destroy(m);
    }
    llms_context_destroy(ctx);
}

/* The CPU backend's private huge-page copies of the GGUF-layout matrices
 * (the default, for a mapped file), LLMS_MODEL_MAPPED_WEIGHTS (read from
 * the mapping) and LLMS_MODEL_NO_MMAP (read from the library's buffer of
 * the file, never copied a second time) give the same logits bit for bit,
 * and each mode reads where it says. */
static void test_mapped_weights_flag(void **state) {
    (void)state;
    static const char *const models[] = {"models/rand-llama-spm-d256-q4_k_m.gguf", "models/rand-llama-spm-d128-f16.gguf"};
    static const uint32_t flags[3] = {0, LLMS_MODEL_MAPPED_WEIGHTS, LLMS_MODEL_NO_MMAP};
    llms_context *ctx = cpu_context();
    for (size_t k = 0; k < sizeof models / sizeof models[0]; k++) {
        const char *path = fixture_path(models[k]);
        if (!path) fixture_missing(models[k]);
        float *logits[3];
        for (int mode = 0; mode < 3; mode++) {
            llms_model_params mp;
            llms_model_params_init(&mp);
            mp.flags = flags[mode];
            llms_model *m;
            assert_int_equal(llms_model_load(ctx, path, &mp, &m), LLMS_OK);
            const gguf_tensor *t = gguf_find_tensor(m->file, "blk.0.ffn_down.weight");
            assert_non_null(t);
            const weight *w = &m->layers[0].w_down;
            const int in_file = (const void *)w->data == t->data;
            if (in_file != (mode != 0))
                fail_msg("%s: w_down read from %s with flags %u", models[k], in_file ? "the file" : "a copy",
                         flags[mode]);
            logits[mode] = decode_logits(m, 0);
            llms_model_destroy(m);
        }
        for (int mode = 1; mode < 3; mode++)
            if (memcmp(logits[0], logits[mode], 256 * sizeof(float)) != 0)
                fail_msg("%s: logits differ between the huge-page copy and flags %u", models[k], flags[mode]);
        for (int mode = 0; mode < 3; mode++) free(logits[mode]);
    }
    llms_context_destroy(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deterministic_bitwise),
        cmocka_unit_test(test_mapped_weights_flag),
        cmocka_unit_test(test_golden_aidreams),
        cmocka_unit_test(test_golden_d128_f16),
        cmocka_unit_test(test_golden_d128_q8_0),
        cmocka_unit_test(test_golden_d128_q4_0),
        cmocka_unit_test(test_golden_d256_f16),
        cmocka_unit_test(test_golden_d256_q4_k_m),
        cmocka_unit_test(test_prefill_equals_token_by_token),
    };
    return cmocka_run_group_tests_name("model", tests, setup, teardown);
}
