/*
 * The public metadata API on real files: summary, typed getters with type
 * checks, formatting, the tensor table, special tokens, vocab-only loading.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "llmserve.h"
#include "support/fixtures.h"

static llms_context *g_ctx;

static int setup(void **s) { (void)s; return llms_context_create(NULL, &g_ctx) ? -1 : 0; }
static int teardown(void **s) { (void)s; llms_context_destroy(g_ctx); return 0; }

static llms_model *load(const char *rel, uint32_t flags) {
    const char *p = fixture_path(rel);
    if (!p) { fixture_missing(rel); return NULL; }
    llms_model_params mp;
    llms_model_params_init(&mp);
    mp.flags = flags;
    llms_model *m = NULL;
    assert_int_equal(llms_model_load(g_ctx, p, &mp, &m), LLMS_OK);
    return m;
}

static void test_info_aidreams(void **state) {
    (void)state;
    llms_model *m = load("models/aidreams260K.gguf", 0);
    llms_model_info i;
    llms_model_info_init(&i);
    assert_int_equal(llms_model_get_info(m, &i), LLMS_OK);
    assert_string_equal(i.architecture, "llama");
    assert_int_equal(i.n_vocab, 512);
    assert_int_equal(i.n_embd, 64);
    assert_int_equal(i.n_layer, 4);
    assert_int_equal(i.n_head, 4);
    assert_int_equal(i.n_ctx_train, 128);
    assert_true(i.gguf_version == 2 || i.gguf_version == 3);
    assert_true(i.n_params > 200000 && i.n_params < 300000);   /* "260K" */
    /* Older, shorter info struct: only its fields are written. */
    llms_model_info small;
    memset(&small, 0xAB, sizeof small);
    small.struct_size = offsetof(llms_model_info, name);
    assert_int_equal(llms_model_get_info(m, &small), LLMS_OK);
    assert_string_equal(small.architecture, "llama");
    const unsigned char *rest = (const unsigned char *)&small + offsetof(llms_model_info, name);
    for (size_t k = 0; k < sizeof small - offsetof(llms_model_info, name); k++) assert_int_equal(rest[k], 0xAB);

    int64_t v;
    assert_int_equal(llms_model_meta_int(m, "llama.embedding_length", &v), LLMS_OK);
    assert_int_equal(v, 64);
    double d;
    assert_int_equal(llms_model_meta_float(m, "llama.attention.layer_norm_rms_epsilon", &d), LLMS_OK);
    assert_true(d > 0 && d < 1e-3);
    const char *str;
    size_t len;
    assert_int_equal(llms_model_meta_string(m, "general.architecture", &str, &len), LLMS_OK);
    assert_string_equal(str, "llama");
    assert_int_equal(len, 5);
    /* Wrong type and missing keys are errors naming the key. */
    assert_int_equal(llms_model_meta_int(m, "general.architecture", &v), LLMS_ERR_GGUF_TYPE);
    assert_int_equal(llms_model_meta_string(m, "llama.embedding_length", &str, NULL), LLMS_ERR_GGUF_TYPE);
    assert_int_equal(llms_model_meta_int(m, "no.such.key", &v), LLMS_ERR_NOT_FOUND);
    assert_non_null(strstr(llms_errmsg(), "no.such.key"));
    int32_t type, et;
    uint64_t n;
    assert_int_equal(llms_model_meta_type(m, "tokenizer.ggml.tokens", &type, &et, &n), LLMS_OK);
    assert_int_equal(type, LLMS_META_ARRAY);
    assert_int_equal(et, LLMS_META_STRING);
    assert_int_equal(n, 512);
    /* Formatting: arrays abbreviated; too small a buffer reports the size. */
    char buf[256];
    assert_int_equal(llms_model_meta_format(m, "tokenizer.ggml.tokens", 3, buf, sizeof buf, &len), LLMS_OK);
    assert_non_null(strstr(buf, "(512 elements)"));
    assert_int_equal(llms_model_meta_format(m, "general.architecture", 3, buf, 4, &len), LLMS_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(len, 7);   /* "llama" with quotes */
    assert_int_equal(llms_model_meta_format(m, "general.architecture", 3, buf, len + 1, &len), LLMS_OK);
    assert_string_equal(buf, "\"llama\"");
    /* Every key can be listed and formatted. */
    for (uint32_t k = 0; k < i.n_metadata; k++) {
        const char *key;
        assert_int_equal(llms_model_meta_key(m, k, &key), LLMS_OK);
        char big[1 << 14];
        assert_int_equal(llms_model_meta_format(m, key, 4, big, sizeof big, &len), LLMS_OK);
    }
    assert_int_equal(llms_model_meta_key(m, i.n_metadata, &str), LLMS_ERR_NOT_FOUND);

    /* Tensor table. */
    uint64_t total = 0;
    int found_embd = 0;
    for (uint32_t k = 0; k < i.n_tensors; k++) {
        llms_tensor_info t;
        llms_tensor_info_init(&t);
        assert_int_equal(llms_model_tensor(m, k, &t), LLMS_OK);
        assert_non_null(llms_type_name(t.type));
        total += t.n_bytes;
        if (!strcmp(t.name, "token_embd.weight")) {
            found_embd = 1;
            assert_int_equal(t.n_dims, 2);
            assert_int_equal(t.dims[0], 64);
            assert_int_equal(t.dims[1], 512);
        }
    }
    assert_true(found_embd);
    assert_int_equal(total, i.n_bytes);
    llms_tensor_info t;
    llms_tensor_info_init(&t);
    assert_int_equal(llms_model_tensor(m, i.n_tensors, &t), LLMS_ERR_NOT_FOUND);
    assert_null(llms_model_chat_template(m));
    assert_int_equal(llms_model_special_token(m, LLMS_SPECIAL_BOS), 1);
    assert_int_equal(llms_model_special_token(m, LLMS_SPECIAL_EOS), 2);
    assert_string_equal(llms_type_name(LLMS_TYPE_Q4_K), "Q4_K");
    assert_null(llms_type_name(4));
    assert_null(llms_type_name(-1));
    llms_model_destroy(m);
}

static void test_vocab_only_and_templates(void **state) {
    (void)state;
    llms_model *m = load("vocab/ggml-vocab-phi-3.gguf", LLMS_MODEL_VOCAB_ONLY);
    assert_non_null(llms_model_chat_template(m));
    assert_int_equal(llms_chat_template_family(llms_model_chat_template(m)), LLMS_CHAT_PHI3);
    /* Sessions need weights. */
    llms_session *s = NULL;
    assert_int_equal(llms_session_create(m, NULL, &s), LLMS_ERR_STATE);
    llms_model_destroy(m);
    /* A vocabulary file loaded as a full model names what is missing. */
    const char *p = fixture_path("vocab/ggml-vocab-llama-spm.gguf");
    if (!p) { fixture_missing("vocab/ggml-vocab-llama-spm.gguf"); return; }
    m = NULL;
    llms_status st = llms_model_load(g_ctx, p, NULL, &m);
    assert_true(st == LLMS_ERR_MODEL_METADATA || st == LLMS_ERR_MODEL_TENSOR);
    assert_null(m);
    assert_true(strlen(llms_errmsg()) > 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_info_aidreams),
        cmocka_unit_test(test_vocab_only_and_templates),
    };
    return cmocka_run_group_tests_name("model_info", tests, setup, teardown);
}
