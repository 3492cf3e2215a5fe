/*
 * Sessions, generation, sampling and streaming through the public API, on
 * the real aidreams260K model (trained, so its greedy text is meaningful).
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
#include "support/fixtures.h"

static llms_context *g_ctx;
static llms_model *g_model;

static int setup(void **state) {
    (void)state;
    return fixture_setup_model("models/aidreams260K.gguf", &g_ctx, &g_model);
}

static int teardown(void **state) {
    (void)state;
    fixture_teardown_model(g_ctx, g_model);
    return 0;
}

#define NEED_MODEL() do { if (!g_model) fixture_missing("models/aidreams260K.gguf"); } while (0)

typedef struct gen_out {
    char text[8192];
    size_t len;
    int32_t tokens[512];
    uint32_t n_tokens;
    int finish;
    int n_steps;
} gen_out;

static llms_session *new_session(const char *prompt, uint32_t n_ctx, uint32_t flags) {
    llms_session_params sp;
    llms_session_params_init(&sp);
    sp.n_ctx = n_ctx;
    sp.flags = flags;
    llms_session *s;
    assert_int_equal(llms_session_create(g_model, &sp, &s), LLMS_OK);
    assert_int_equal(llms_session_feed_text(s, prompt, strlen(prompt), LLMS_TOKENIZE_MODEL_DEFAULTS), LLMS_OK);
    return s;
}

static void generate(llms_session *s, const llms_sampling_params *p, gen_out *o) {
    memset(o, 0, sizeof *o);
    assert_int_equal(llms_session_generate_begin(s, p), LLMS_OK);
    llms_step_result r;
    llms_step_result_init(&r);
    llms_status st;
    while ((st = llms_session_step(s, &r)) == LLMS_TOKEN || st == LLMS_DONE) {
        assert_true(o->len + r.text_len < sizeof o->text);
        memcpy(o->text + o->len, r.text, r.text_len);
        o->len += r.text_len;
        o->n_steps++;
        if (st == LLMS_DONE) { o->finish = r.finish_reason; break; }
        o->tokens[o->n_tokens++] = r.token;
    }
    assert_true(st == LLMS_DONE);
    o->text[o->len] = 0;
}

static llms_sampling_params greedy(int32_t max_tokens) {
    llms_sampling_params p;
    llms_sampling_params_init(&p);
    p.temperature = 0;
    p.max_tokens = max_tokens;
    return p;
}

static void test_max_tokens_and_detokenize(void **state) {
    (void)state;
    NEED_MODEL();
    llms_session *s = new_session("The robot", 0, 0);
    uint32_t n_prompt = llms_session_n_tokens(s);
    llms_sampling_params p = greedy(40);
    gen_out o;
    generate(s, &p, &o);
    assert_int_equal(o.finish, LLMS_FINISH_LENGTH);
    assert_int_equal(o.n_tokens, 40);
    assert_int_equal(llms_session_n_tokens(s), n_prompt + 40);
    /* The streamed pieces are exactly the generated tokens' text. */
    char buf[8192];
    size_t len;
    assert_int_equal(llms_detokenize(g_model, o.tokens, o.n_tokens, LLMS_DETOKENIZE_KEEP_LEADING_SPACE, buf,
                                     sizeof buf, &len), LLMS_OK);
    assert_int_equal(len, o.len);
    assert_memory_equal(buf, o.text, len);
    llms_session_destroy(s);
}

static void test_seed_determinism(void **state) {
    (void)state;
    NEED_MODEL();
    llms_sampling_params p;
    llms_sampling_params_init(&p);
    p.temperature = 1.5f;
    p.top_k = 0;
    p.top_p = 1;
    p.min_p = 0;
    p.max_tokens = 30;
    gen_out a, b, c;
    p.seed = 42;
    llms_session *s = new_session("In the quiet", 0, 0);
    generate(s, &p, &a);
    llms_session_destroy(s);
    s = new_session("In the quiet", 0, 0);
    generate(s, &p, &b);
    llms_session_destroy(s);
    p.seed = 43;
    s = new_session("In the quiet", 0, 0);
    generate(s, &p, &c);
    llms_session_destroy(s);
    assert_int_equal(a.n_tokens, b.n_tokens);
    assert_memory_equal(a.tokens, b.tokens, a.n_tokens * sizeof(int32_t));
    /* At temperature 1.5 over the whole vocabulary two seeds agreeing on 30
     * tokens would be astronomically unlikely. */
    assert_false(a.n_tokens == c.n_tokens && !memcmp(a.tokens, c.tokens, a.n_tokens * sizeof(int32_t)));
}

static void test_top_k_1_is_greedy(void **state) {
    (void)state;
    NEED_MODEL();
    llms_sampling_params g = greedy(25), k;
    llms_sampling_params_init(&k);
    k.temperature = 2.0f;
    k.top_k = 1;
    k.max_tokens = 25;
    k.seed = 7;
    gen_out a, b;
    llms_session *s = new_session("The robot", 0, 0);
    generate(s, &g, &a);
    llms_session_destroy(s);
    s = new_session("The robot", 0, 0);
    generate(s, &k, &b);
    llms_session_destroy(s);
    assert_string_equal(a.text, b.text);
}

static void test_stop_string(void **state) {
    (void)state;
    NEED_MODEL();
    llms_sampling_params p = greedy(60);
    gen_out full, cut;
    llms_session *s = new_session("The robot", 0, 0);
    generate(s, &p, &full);
    llms_session_destroy(s);
    assert_true(full.len > 40);
    /* Stop at a piece of the greedy text that starts mid-way: the output is
     * exactly what came before it, and the stop text is not included. */
    char stop[16];
    memcpy(stop, full.text + 30, 6);
    stop[6] = 0;
    const char *first = strstr(full.text, stop);
    const char *stops[] = {"#never#", stop};
    p.stop = stops;
    p.n_stop = 2;
    s = new_session("The robot", 0, 0);
    generate(s, &p, &cut);
    llms_session_destroy(s);
    assert_int_equal(cut.finish, LLMS_FINISH_STOP);
    assert_int_equal(cut.len, (size_t)(first - full.text));
    assert_memory_equal(cut.text, full.text, cut.len);
}

static void test_logit_bias_and_logprobs(void **state) {
    (void)state;
    NEED_MODEL();
    llms_session *s = new_session("The robot", 0, 0);
    llms_sampling_params p = greedy(1);
    p.n_logprobs = 5;
    assert_int_equal(llms_session_generate_begin(s, &p), LLMS_OK);
    llms_step_result r;
    llms_step_result_init(&r);
    assert_int_equal(llms_session_step(s, &r), LLMS_TOKEN);
    int32_t best = r.token;
    assert_int_equal(r.n_top_logprobs, 5);
    assert_int_equal(r.top_logprobs[0].token, best);
    assert_float_equal(r.top_logprobs[0].logprob, r.logprob, 1e-6);
    assert_true(r.logprob <= 0);
    double mass = 0;
    for (uint32_t i = 0; i < 5; i++) {
        if (i) assert_true(r.top_logprobs[i].logprob <= r.top_logprobs[i - 1].logprob);
        mass += exp(r.top_logprobs[i].logprob);
    }
    assert_true(mass <= 1.0 + 1e-5);
    llms_session_destroy(s);

    /* Banning the greedy token changes the first token. */
    s = new_session("The robot", 0, 0);
    llms_logit_bias ban = {best, -INFINITY};
    p.logit_bias = &ban;
    p.n_logit_bias = 1;
    assert_int_equal(llms_session_generate_begin(s, &p), LLMS_OK);
    llms_step_result_init(&r);
    assert_int_equal(llms_session_step(s, &r), LLMS_TOKEN);
    assert_int_not_equal(r.token, best);
    llms_session_destroy(s);
}

static void test_min_tokens_and_eog(void **state) {
    (void)state;
    NEED_MODEL();
    /* Force end-of-generation by biasing EOS up: it ends at once, unless
     * min_tokens holds it back. */
    int32_t eos = llms_model_special_token(g_model, LLMS_SPECIAL_EOS);
    assert_true(eos >= 0);
    assert_true(llms_model_token_is_eog(g_model, eos));
    llms_logit_bias up = {eos, 100.0f};
    llms_sampling_params p = greedy(20);
    p.logit_bias = &up;
    p.n_logit_bias = 1;
    gen_out o;
    llms_session *s = new_session("The robot", 0, 0);
    generate(s, &p, &o);
    assert_int_equal(o.finish, LLMS_FINISH_EOG);
    assert_int_equal(o.n_tokens, 0);
    llms_session_destroy(s);
    p.min_tokens = 5;
    s = new_session("The robot", 0, 0);
    generate(s, &p, &o);
    assert_int_equal(o.finish, LLMS_FINISH_EOG);
    assert_int_equal(o.n_tokens, 5);
    llms_session_destroy(s);
}

/* A huge presence penalty over the whole context forbids any token that
 * already occurred, prompt included: no repeats in the output. */
static void test_presence_penalty(void **state) {
    (void)state;
    NEED_MODEL();
    llms_sampling_params p = greedy(40);
    gen_out plain, pen;
    llms_session *s = new_session("The robot", 0, 0);
    generate(s, &p, &plain);
    llms_session_destroy(s);
    p.presence_penalty = 1000;
    p.penalty_last_n = -1;
    s = new_session("The robot", 0, 0);
    uint32_t n_prompt = llms_session_n_tokens(s);
    generate(s, &p, &pen);
    const int32_t *all = llms_session_tokens(s);
    for (uint32_t i = 0; i < pen.n_tokens; i++)
        for (uint32_t j = 0; j < n_prompt + i; j++) assert_int_not_equal(all[j], pen.tokens[i]);
    llms_session_destroy(s);
    /* The plain greedy text does repeat tokens (so the check above bites). */
    int repeats = 0;
    for (uint32_t i = 0; i < plain.n_tokens; i++)
        for (uint32_t j = 0; j < i; j++) repeats += plain.tokens[i] == plain.tokens[j];
    assert_true(repeats > 0);
}

static void test_fork_truncate_reset(void **state) {
    (void)state;
    NEED_MODEL();
    llms_sampling_params p = greedy(30);
    llms_session *a = new_session("In the quiet", 0, 0), *b;
    uint32_t n_prompt = llms_session_n_tokens(a);
    assert_int_equal(llms_session_fork(a, &b), LLMS_OK);
    gen_out oa, ob, oc;
    generate(a, &p, &oa);
    generate(b, &p, &ob);
    assert_string_equal(oa.text, ob.text);
    /* Truncating back to the prompt and generating again repeats the text. */
    assert_int_equal(llms_session_truncate(a, n_prompt), LLMS_OK);
    generate(a, &p, &oc);
    assert_string_equal(oa.text, oc.text);
    assert_int_equal(llms_session_reset(a), LLMS_OK);
    assert_int_equal(llms_session_n_tokens(a), 0);
    assert_null(llms_session_logits(a));
    assert_int_equal(llms_session_generate_begin(a, &p), LLMS_ERR_STATE);
    llms_session_destroy(a);
    llms_session_destroy(b);
}

static void test_context_full_and_shift(void **state) {
    (void)state;
    NEED_MODEL();
    llms_sampling_params p = greedy(100);
    gen_out o;
    llms_session *s = new_session("The robot", 32, 0);
    uint32_t n_prompt = llms_session_n_tokens(s);
    generate(s, &p, &o);
    assert_int_equal(o.finish, LLMS_FINISH_CONTEXT_FULL);
    assert_int_equal(o.n_tokens, 32 - n_prompt);
    llms_session_destroy(s);

    llms_session_params sp;
    llms_session_params_init(&sp);
    sp.n_ctx = 32;
    sp.flags = LLMS_SESSION_CONTEXT_SHIFT;
    sp.n_keep = 4;
    assert_int_equal(llms_session_create(g_model, &sp, &s), LLMS_OK);
    assert_int_equal(llms_session_feed_text(s, "The robot", 9, LLMS_TOKENIZE_MODEL_DEFAULTS), LLMS_OK);
    generate(s, &p, &o);
    assert_int_equal(o.finish, LLMS_FINISH_LENGTH);
    assert_int_equal(o.n_tokens, 100);
    assert_true(llms_session_n_tokens(s) <= 32);
    llms_session_destroy(s);
}

static void test_bad_input(void **state) {
    (void)state;
    NEED_MODEL();
    llms_session_params sp;
    llms_session_params_init(&sp);
    sp.n_ctx = 16;
    llms_session *s;
    assert_int_equal(llms_session_create(g_model, &sp, &s), LLMS_OK);
    int32_t many[17] = {1};
    for (int i = 1; i < 17; i++) many[i] = 300;
    assert_int_equal(llms_session_feed_tokens(s, many, 17), LLMS_ERR_PROMPT_TOO_LONG);
    assert_true(strlen(llms_session_errmsg(s)) > 0);
    assert_int_equal(llms_session_n_tokens(s), 0);
    assert_int_equal(llms_session_feed_tokens(s, many, 4), LLMS_OK);
    int32_t bad[2] = {5, 512};
    assert_int_equal(llms_session_feed_tokens(s, bad, 2), LLMS_ERR_TOKEN_RANGE);
    bad[1] = -1;
    assert_int_equal(llms_session_feed_tokens(s, bad, 2), LLMS_ERR_TOKEN_RANGE);
    /* Nothing of a rejected feed was added; the session works on. */
    assert_int_equal(llms_session_n_tokens(s), 4);
    assert_true(llms_session_usable(s));
    assert_int_equal(llms_session_feed_tokens(s, many, 13), LLMS_ERR_CONTEXT_FULL);
    assert_int_equal(llms_session_n_tokens(s), 4);

    llms_sampling_params p = greedy(4);
    p.temperature = NAN;
    assert_int_equal(llms_session_generate_begin(s, &p), LLMS_ERR_INVALID_ARGUMENT);
    p = greedy(-5);
    assert_int_equal(llms_session_generate_begin(s, &p), LLMS_ERR_INVALID_ARGUMENT);
    p = greedy(4);
    p.min_tokens = -1;
    assert_int_equal(llms_session_generate_begin(s, &p), LLMS_ERR_INVALID_ARGUMENT);
    p = greedy(4);
    p.top_k = -3;
    assert_int_equal(llms_session_generate_begin(s, &p), LLMS_ERR_INVALID_ARGUMENT);
    p = greedy(4);
    p.top_p = 0;
    assert_int_equal(llms_session_generate_begin(s, &p), LLMS_ERR_INVALID_ARGUMENT);
    llms_logit_bias lb = {9999, 1};
    p = greedy(4);
    p.logit_bias = &lb;
    p.n_logit_bias = 1;
    assert_int_equal(llms_session_generate_begin(s, &p), LLMS_ERR_TOKEN_RANGE);
    llms_step_result r;
    llms_step_result_init(&r);
    assert_int_equal(llms_session_step(s, &r), LLMS_ERR_STATE);

    /* After all that, generation still works. */
    p = greedy(4);
    gen_out o;
    generate(s, &p, &o);
    assert_int_equal(o.n_tokens, 4);
    llms_session_destroy(s);

    /* NULL handles are errors, not crashes; destroy(NULL) is a no-op. */
    assert_int_equal(llms_session_feed_tokens(NULL, many, 1), LLMS_ERR_INVALID_ARGUMENT);
    assert_int_equal(llms_session_create(NULL, NULL, &s), LLMS_ERR_INVALID_ARGUMENT);
    llms_session_destroy(NULL);
    llms_model_destroy(NULL);
    llms_context_destroy(NULL);
}

/* Streaming never splits a UTF-8 character, even when the model emits a
 * character as several byte tokens. */
static void test_utf8_streaming(void **state) {
    (void)state;
    NEED_MODEL();
    /* Find byte tokens for the two bytes of "é" (C3 A9) and force them in
     * turn with logit bias. */
    int32_t V = llms_model_n_vocab(g_model), b1 = -1, b2 = -1;
    for (int32_t t = 0; t < V; t++) {
        char piece[16];
        size_t len;
        if (llms_token_to_piece(g_model, t, piece, sizeof piece, &len) == LLMS_OK && len == 1) {
            if ((unsigned char)piece[0] == 0xC3) b1 = t;
            if ((unsigned char)piece[0] == 0xA9) b2 = t;
        }
    }
    assert_true(b1 >= 0 && b2 >= 0);  /* llama2.c vocabularies have all 256 byte tokens */
    /* Step 1 must pick C3 (bias 1000), step 2 A9: once C3 has been used the
     * frequency penalty pushes it far below A9's bias of 500. */
    llms_logit_bias lb[2] = {{b1, 1000}, {b2, 500}};
    llms_sampling_params p = greedy(2);
    p.logit_bias = lb;
    p.n_logit_bias = 2;
    p.frequency_penalty = 5000;
    llms_session *s = new_session("The robot", 0, 0);
    assert_int_equal(llms_session_generate_begin(s, &p), LLMS_OK);
    llms_step_result r;
    llms_step_result_init(&r);
    assert_int_equal(llms_session_step(s, &r), LLMS_TOKEN);
    assert_int_equal(r.token, b1);
    assert_int_equal(r.text_len, 0);          /* half a character is held back */
    assert_int_equal(llms_session_step(s, &r), LLMS_TOKEN);
    assert_int_equal(r.token, b2);
    assert_int_equal(r.text_len, 2);          /* the whole character at once */
    assert_memory_equal(r.text, "\xc3\xa9", 2);
    assert_int_equal(llms_session_step(s, &r), LLMS_DONE);
    assert_int_equal(r.finish_reason, LLMS_FINISH_LENGTH);
    assert_int_equal(r.text_len, 0);

    /* A character cut off by the token limit is released at the end as is. */
    p.max_tokens = 1;
    assert_int_equal(llms_session_truncate(s, llms_session_n_tokens(s) - 2), LLMS_OK);
    assert_int_equal(llms_session_generate_begin(s, &p), LLMS_OK);
    assert_int_equal(llms_session_step(s, &r), LLMS_TOKEN);
    assert_int_equal(r.text_len, 0);
    assert_int_equal(llms_session_step(s, &r), LLMS_DONE);
    assert_int_equal(r.text_len, 1);
    llms_session_destroy(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_max_tokens_and_detokenize),
        cmocka_unit_test(test_seed_determinism),
        cmocka_unit_test(test_top_k_1_is_greedy),
        cmocka_unit_test(test_stop_string),
        cmocka_unit_test(test_logit_bias_and_logprobs),
        cmocka_unit_test(test_min_tokens_and_eog),
        cmocka_unit_test(test_presence_penalty),
        cmocka_unit_test(test_fork_truncate_reset),
        cmocka_unit_test(test_context_full_and_shift),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_utf8_streaming),
    };
    return cmocka_run_group_tests_name("session", tests, setup, teardown);
}
