/*
 * The ABI, pinned: sizeof, alignment and every field's offset and size of
 * each public struct, and the frozen status numbers. A failure here means a
 * change would break compiled programs and bindings (Python ctypes and Go
 * mirror these layouts): append fields instead, or bump the soname's major
 * version. x86_64/aarch64 LP64 layouts. This also guards the frozen array
 * structs (llms_chat_message, llms_logit_bias, llms_token_logprob), whose
 * growth libabigail would see only through a suppressed parent struct.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "llmserve.h"

#define CHECK_STRUCT(T, size, align)                                   \
    do {                                                               \
        assert_int_equal(sizeof(T), size);                             \
        assert_int_equal(_Alignof(T), align);                          \
    } while (0)
#define CHECK_FIELD(T, f, off, size)                                   \
    do {                                                               \
        assert_int_equal(offsetof(T, f), off);                         \
        assert_int_equal(sizeof(((T *)0)->f), size);                   \
    } while (0)

static void test_struct_layouts(void **state) {
    (void)state;
    CHECK_STRUCT(llms_allocator, 40, 8);
    CHECK_FIELD(llms_allocator, struct_size, 0, 4);
    CHECK_FIELD(llms_allocator, user, 8, 8);
    CHECK_FIELD(llms_allocator, malloc_fn, 16, 8);
    CHECK_FIELD(llms_allocator, realloc_fn, 24, 8);
    CHECK_FIELD(llms_allocator, free_fn, 32, 8);
    CHECK_STRUCT(llms_context_params, 56, 8);
    CHECK_FIELD(llms_context_params, struct_size, 0, 4);
    CHECK_FIELD(llms_context_params, backend, 4, 4);
    CHECK_FIELD(llms_context_params, device_index, 8, 4);
    CHECK_FIELD(llms_context_params, n_threads, 12, 4);
    CHECK_FIELD(llms_context_params, flags, 16, 4);
    CHECK_FIELD(llms_context_params, log_level, 20, 4);
    CHECK_FIELD(llms_context_params, log_fn, 24, 8);
    CHECK_FIELD(llms_context_params, log_user, 32, 8);
    CHECK_FIELD(llms_context_params, allocator, 40, 8);
    CHECK_FIELD(llms_context_params, device_memory_budget, 48, 8);
    CHECK_STRUCT(llms_model_params, 8, 4);
    CHECK_FIELD(llms_model_params, struct_size, 0, 4);
    CHECK_FIELD(llms_model_params, flags, 4, 4);
    CHECK_STRUCT(llms_model_info, 96, 8);
    CHECK_FIELD(llms_model_info, struct_size, 0, 4);
    CHECK_FIELD(llms_model_info, gguf_version, 4, 4);
    CHECK_FIELD(llms_model_info, architecture, 8, 8);
    CHECK_FIELD(llms_model_info, name, 16, 8);
    CHECK_FIELD(llms_model_info, n_params, 24, 8);
    CHECK_FIELD(llms_model_info, n_bytes, 32, 8);
    CHECK_FIELD(llms_model_info, n_tensors, 40, 4);
    CHECK_FIELD(llms_model_info, n_metadata, 44, 4);
    CHECK_FIELD(llms_model_info, n_vocab, 48, 4);
    CHECK_FIELD(llms_model_info, n_ctx_train, 52, 4);
    CHECK_FIELD(llms_model_info, n_embd, 56, 4);
    CHECK_FIELD(llms_model_info, n_layer, 60, 4);
    CHECK_FIELD(llms_model_info, n_head, 64, 4);
    CHECK_FIELD(llms_model_info, n_head_kv, 68, 4);
    CHECK_FIELD(llms_model_info, n_ff, 72, 4);
    CHECK_FIELD(llms_model_info, file_type, 76, 4);
    CHECK_FIELD(llms_model_info, rope_freq_base, 80, 8);
    CHECK_FIELD(llms_model_info, rms_norm_eps, 88, 8);
    CHECK_STRUCT(llms_tensor_info, 72, 8);
    CHECK_FIELD(llms_tensor_info, struct_size, 0, 4);
    CHECK_FIELD(llms_tensor_info, type, 4, 4);
    CHECK_FIELD(llms_tensor_info, n_dims, 8, 4);
    CHECK_FIELD(llms_tensor_info, dims, 16, 32);
    CHECK_FIELD(llms_tensor_info, offset, 48, 8);
    CHECK_FIELD(llms_tensor_info, n_bytes, 56, 8);
    CHECK_FIELD(llms_tensor_info, name, 64, 8);
    CHECK_STRUCT(llms_chat_message, 16, 8);
    CHECK_FIELD(llms_chat_message, role, 0, 8);
    CHECK_FIELD(llms_chat_message, content, 8, 8);
    CHECK_STRUCT(llms_session_params, 16, 4);
    CHECK_FIELD(llms_session_params, struct_size, 0, 4);
    CHECK_FIELD(llms_session_params, n_ctx, 4, 4);
    CHECK_FIELD(llms_session_params, flags, 8, 4);
    CHECK_FIELD(llms_session_params, n_keep, 12, 4);
    CHECK_STRUCT(llms_logit_bias, 8, 4);
    CHECK_FIELD(llms_logit_bias, token, 0, 4);
    CHECK_FIELD(llms_logit_bias, bias, 4, 4);
    CHECK_STRUCT(llms_sampling_params, 96, 8);
    CHECK_FIELD(llms_sampling_params, struct_size, 0, 4);
    CHECK_FIELD(llms_sampling_params, temperature, 4, 4);
    CHECK_FIELD(llms_sampling_params, top_k, 8, 4);
    CHECK_FIELD(llms_sampling_params, top_p, 12, 4);
    CHECK_FIELD(llms_sampling_params, min_p, 16, 4);
    CHECK_FIELD(llms_sampling_params, repeat_penalty, 20, 4);
    CHECK_FIELD(llms_sampling_params, frequency_penalty, 24, 4);
    CHECK_FIELD(llms_sampling_params, presence_penalty, 28, 4);
    CHECK_FIELD(llms_sampling_params, penalty_last_n, 32, 4);
    CHECK_FIELD(llms_sampling_params, seed, 40, 8);
    CHECK_FIELD(llms_sampling_params, max_tokens, 48, 4);
    CHECK_FIELD(llms_sampling_params, min_tokens, 52, 4);
    CHECK_FIELD(llms_sampling_params, stop, 56, 8);
    CHECK_FIELD(llms_sampling_params, n_stop, 64, 4);
    CHECK_FIELD(llms_sampling_params, logit_bias, 72, 8);
    CHECK_FIELD(llms_sampling_params, n_logit_bias, 80, 4);
    CHECK_FIELD(llms_sampling_params, n_logprobs, 84, 4);
    CHECK_FIELD(llms_sampling_params, flags, 88, 4);
    CHECK_STRUCT(llms_token_logprob, 8, 4);
    CHECK_FIELD(llms_token_logprob, token, 0, 4);
    CHECK_FIELD(llms_token_logprob, logprob, 4, 4);
    CHECK_STRUCT(llms_step_result, 48, 8);
    CHECK_FIELD(llms_step_result, struct_size, 0, 4);
    CHECK_FIELD(llms_step_result, token, 4, 4);
    CHECK_FIELD(llms_step_result, finish_reason, 8, 4);
    CHECK_FIELD(llms_step_result, logprob, 12, 4);
    CHECK_FIELD(llms_step_result, text, 16, 8);
    CHECK_FIELD(llms_step_result, text_len, 24, 8);
    CHECK_FIELD(llms_step_result, top_logprobs, 32, 8);
    CHECK_FIELD(llms_step_result, n_top_logprobs, 40, 4);
    CHECK_FIELD(llms_step_result, n_generated, 44, 4);
}

static void test_status_numbers_frozen(void **state) {
    (void)state;
    assert_int_equal(LLMS_OK, 0);
    assert_int_equal(LLMS_TOKEN, 1);
    assert_int_equal(LLMS_DONE, 2);
    assert_int_equal(LLMS_AGAIN, 3);
    assert_int_equal(LLMS_ERR_INVALID_ARGUMENT, -1);
    assert_int_equal(LLMS_ERR_NO_MEMORY, -2);
    assert_int_equal(LLMS_ERR_IO, -3);
    assert_int_equal(LLMS_ERR_BUFFER_TOO_SMALL, -4);
    assert_int_equal(LLMS_ERR_NOT_FOUND, -5);
    assert_int_equal(LLMS_ERR_UNSUPPORTED, -6);
    assert_int_equal(LLMS_ERR_INTERNAL, -7);
    assert_int_equal(LLMS_ERR_VERSION, -8);
    assert_int_equal(LLMS_ERR_STATE, -9);
    assert_int_equal(LLMS_ERR_GGUF_MAGIC, -20);
    assert_int_equal(LLMS_ERR_GGUF_VERSION, -21);
    assert_int_equal(LLMS_ERR_GGUF_TRUNCATED, -22);
    assert_int_equal(LLMS_ERR_GGUF_OVERFLOW, -23);
    assert_int_equal(LLMS_ERR_GGUF_LIMIT, -24);
    assert_int_equal(LLMS_ERR_GGUF_TYPE, -25);
    assert_int_equal(LLMS_ERR_GGUF_DUPLICATE, -26);
    assert_int_equal(LLMS_ERR_GGUF_ALIGNMENT, -27);
    assert_int_equal(LLMS_ERR_GGUF_TENSOR_TYPE, -28);
    assert_int_equal(LLMS_ERR_GGUF_SHAPE, -29);
    assert_int_equal(LLMS_ERR_GGUF_BOUNDS, -30);
    assert_int_equal(LLMS_ERR_MODEL_TENSOR, -40);
    assert_int_equal(LLMS_ERR_MODEL_METADATA, -41);
    assert_int_equal(LLMS_ERR_TOKENIZER, -42);
    assert_int_equal(LLMS_ERR_TOKEN_RANGE, -50);
    assert_int_equal(LLMS_ERR_CONTEXT_FULL, -51);
    assert_int_equal(LLMS_ERR_PROMPT_TOO_LONG, -52);
    assert_int_equal(LLMS_ERR_TEMPLATE, -53);
    assert_int_equal(LLMS_ERR_BUSY, -54);
    assert_int_equal(LLMS_ERR_RATE_LIMITED, -55);
    assert_int_equal(LLMS_ERR_CANCELLED, -56);
    assert_int_equal(LLMS_ERR_TIMEOUT, -57);
    assert_int_equal(LLMS_ERR_BACKEND, -70);
    assert_int_equal(LLMS_ERR_DEVICE_LOST, -71);
    assert_int_equal(LLMS_ERR_DEVICE_MEMORY, -72);
    /* Every status has a name; unknown ones say so. */
    for (int s = -100; s <= 10; s++) assert_non_null(llms_status_string(s));
    assert_string_equal(llms_status_string(12345), "unknown status");
    assert_non_null(strstr(llms_status_string(LLMS_ERR_GGUF_TRUNCATED), "LLMS_ERR_GGUF_TRUNCATED"));
}

static void test_version_matches_header(void **state) {
    (void)state;
    assert_int_equal(llms_version_number(), LLMS_VERSION_NUMBER);
    char v[32];
    snprintf(v, sizeof v, "%d.%d.%d", LLMS_VERSION_MAJOR, LLMS_VERSION_MINOR, LLMS_VERSION_PATCH);
    assert_string_equal(llms_version_string(), v);
    assert_non_null(strstr(llms_build_features(), "cpu"));
}

/* An older caller passes a shorter struct: the library reads only
 * struct_size bytes and uses defaults for the rest. A struct_size smaller
 * than the size field itself is rejected. */
static void test_size_prefixed_params(void **state) {
    (void)state;
    llms_context_params p;
    llms_context_params_init(&p);
    assert_int_equal(p.struct_size, sizeof p);
    p.n_threads = 1;
    p.backend = 99;                                  /* beyond the short size: ignored */
    p.struct_size = offsetof(llms_context_params, backend);
    llms_context *ctx = NULL;
    assert_int_equal(llms_context_create(&p, &ctx), LLMS_OK);
    llms_context_destroy(ctx);
    p.struct_size = offsetof(llms_context_params, n_threads);  /* includes backend = 99 */
    assert_int_equal(llms_context_create(&p, &ctx), LLMS_ERR_INVALID_ARGUMENT);
    p.struct_size = 2;
    assert_int_equal(llms_context_create(&p, &ctx), LLMS_ERR_INVALID_ARGUMENT);
    assert_null(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_struct_layouts),
        cmocka_unit_test(test_status_numbers_frozen),
        cmocka_unit_test(test_version_matches_header),
        cmocka_unit_test(test_size_prefixed_params),
    };
    return cmocka_run_group_tests_name("abi_layout", tests, NULL, NULL);
}
