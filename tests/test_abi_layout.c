/*
 * The ABI, pinned: sizeof, alignment and every field's offset and size of
 * each public struct, and the frozen status numbers. A failure here means a
 * change would break compiled programs and bindings (Python ctypes and Go
 * mirror these layouts): append fields instead, or bump the soname's major
 * version. x86_64/aarch64 LP64 layouts. This also guards the frozen array
 * structs (llms_chat_message, llms_logit_bias, llms_token_logprob), whose
 * growth libabigail would see only through a suppressed parent struct.
 * Regenerate the expected values only together with a soname major bump,
 * or for structs that are new in this version.
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
    CHECK_STRUCT(llms_quantize_params, 8, 4);
    CHECK_FIELD(llms_quantize_params, struct_size, 0, 4);
    CHECK_FIELD(llms_quantize_params, ftype, 4, 4);
    CHECK_STRUCT(llms_random_model_params, 80, 8);
    CHECK_FIELD(llms_random_model_params, struct_size, 0, 4);
    CHECK_FIELD(llms_random_model_params, arch, 8, 8);
    CHECK_FIELD(llms_random_model_params, name, 16, 8);
    CHECK_FIELD(llms_random_model_params, n_vocab, 44, 4);
    CHECK_FIELD(llms_random_model_params, n_ctx_train, 48, 4);
    CHECK_FIELD(llms_random_model_params, rope_freq_base, 52, 4);
    CHECK_FIELD(llms_random_model_params, rms_eps, 56, 4);
    CHECK_FIELD(llms_random_model_params, tied, 60, 4);
    CHECK_FIELD(llms_random_model_params, qkv_bias, 64, 4);
    CHECK_FIELD(llms_random_model_params, ftype, 68, 4);
    CHECK_FIELD(llms_random_model_params, seed, 72, 8);
    CHECK_STRUCT(llms_cache_params, 16, 8);
    CHECK_FIELD(llms_cache_params, struct_size, 0, 4);
    CHECK_FIELD(llms_cache_params, budget_bytes, 8, 8);
    CHECK_STRUCT(llms_cache_stats, 64, 8);
    CHECK_FIELD(llms_cache_stats, struct_size, 0, 4);
    CHECK_FIELD(llms_cache_stats, blocks_used, 8, 8);
    CHECK_FIELD(llms_cache_stats, blocks_pinned, 16, 8);
    CHECK_FIELD(llms_cache_stats, bytes_used, 24, 8);
    CHECK_FIELD(llms_cache_stats, hit_tokens, 32, 8);
    CHECK_FIELD(llms_cache_stats, miss_tokens, 40, 8);
    CHECK_FIELD(llms_cache_stats, evictions, 48, 8);
    CHECK_FIELD(llms_cache_stats, inserts, 56, 8);
    CHECK_STRUCT(llms_event, 80, 8);
    CHECK_FIELD(llms_event, struct_size, 0, 4);
    CHECK_FIELD(llms_event, type, 4, 4);
    CHECK_FIELD(llms_event, request_id, 8, 8);
    CHECK_FIELD(llms_event, user_tag, 16, 8);
    CHECK_FIELD(llms_event, finish_reason, 24, 4);
    CHECK_FIELD(llms_event, status, 28, 4);
    CHECK_FIELD(llms_event, token, 32, 4);
    CHECK_FIELD(llms_event, n_generated, 36, 4);
    CHECK_FIELD(llms_event, text_buf, 40, 8);
    CHECK_FIELD(llms_event, text_cap, 48, 8);
    CHECK_FIELD(llms_event, text_len, 56, 8);
    CHECK_FIELD(llms_event, prompt_tokens, 64, 4);
    CHECK_FIELD(llms_event, cached_tokens, 68, 4);
    CHECK_FIELD(llms_event, completion_tokens, 72, 4);
    CHECK_STRUCT(llms_scheduler_params, 64, 8);
    CHECK_FIELD(llms_scheduler_params, struct_size, 0, 4);
    CHECK_FIELD(llms_scheduler_params, flags, 4, 4);
    CHECK_FIELD(llms_scheduler_params, max_batch_tokens, 8, 4);
    CHECK_FIELD(llms_scheduler_params, max_running, 12, 4);
    CHECK_FIELD(llms_scheduler_params, queue_capacity, 16, 4);
    CHECK_FIELD(llms_scheduler_params, n_ctx, 20, 4);
    CHECK_FIELD(llms_scheduler_params, kv_budget_bytes, 24, 8);
    CHECK_FIELD(llms_scheduler_params, event_fn, 32, 8);
    CHECK_FIELD(llms_scheduler_params, event_user, 40, 8);
    CHECK_FIELD(llms_scheduler_params, cache, 48, 8);
    CHECK_FIELD(llms_scheduler_params, aging_ms, 56, 4);
    CHECK_STRUCT(llms_request_params, 72, 8);
    CHECK_FIELD(llms_request_params, struct_size, 0, 4);
    CHECK_FIELD(llms_request_params, flags, 4, 4);
    CHECK_FIELD(llms_request_params, prompt, 8, 8);
    CHECK_FIELD(llms_request_params, prompt_len, 16, 8);
    CHECK_FIELD(llms_request_params, tokens, 24, 8);
    CHECK_FIELD(llms_request_params, n_tokens, 32, 8);
    CHECK_FIELD(llms_request_params, sampling, 40, 8);
    CHECK_FIELD(llms_request_params, tenant, 48, 8);
    CHECK_FIELD(llms_request_params, priority, 56, 4);
    CHECK_FIELD(llms_request_params, deadline_ms, 60, 4);
    CHECK_FIELD(llms_request_params, user_tag, 64, 8);
    CHECK_STRUCT(llms_tenant_params, 48, 8);
    CHECK_FIELD(llms_tenant_params, struct_size, 0, 4);
    CHECK_FIELD(llms_tenant_params, name, 8, 8);
    CHECK_FIELD(llms_tenant_params, max_concurrent, 16, 4);
    CHECK_FIELD(llms_tenant_params, tokens_per_minute, 20, 4);
    CHECK_FIELD(llms_tenant_params, max_prompt_tokens, 24, 4);
    CHECK_FIELD(llms_tenant_params, max_output_tokens, 28, 4);
    CHECK_FIELD(llms_tenant_params, weight, 32, 4);
    CHECK_FIELD(llms_tenant_params, sharing_group, 40, 8);
    CHECK_STRUCT(llms_scheduler_stats, 152, 8);
    CHECK_FIELD(llms_scheduler_stats, struct_size, 0, 4);
    CHECK_FIELD(llms_scheduler_stats, requests_submitted, 8, 8);
    CHECK_FIELD(llms_scheduler_stats, requests_finished, 16, 8);
    CHECK_FIELD(llms_scheduler_stats, requests_cancelled, 24, 8);
    CHECK_FIELD(llms_scheduler_stats, requests_timed_out, 32, 8);
    CHECK_FIELD(llms_scheduler_stats, requests_rejected, 40, 8);
    CHECK_FIELD(llms_scheduler_stats, requests_failed, 48, 8);
    CHECK_FIELD(llms_scheduler_stats, prompt_tokens, 56, 8);
    CHECK_FIELD(llms_scheduler_stats, cached_tokens, 64, 8);
    CHECK_FIELD(llms_scheduler_stats, generated_tokens, 72, 8);
    CHECK_FIELD(llms_scheduler_stats, preemptions, 80, 8);
    CHECK_FIELD(llms_scheduler_stats, steps, 88, 8);
    CHECK_FIELD(llms_scheduler_stats, queue_depth, 96, 4);
    CHECK_FIELD(llms_scheduler_stats, running, 100, 4);
    CHECK_FIELD(llms_scheduler_stats, last_batch_tokens, 104, 4);
    CHECK_FIELD(llms_scheduler_stats, kv_blocks_used, 108, 4);
    CHECK_FIELD(llms_scheduler_stats, kv_blocks_free, 112, 4);
    CHECK_FIELD(llms_scheduler_stats, ttft_count, 120, 8);
    CHECK_FIELD(llms_scheduler_stats, ttft_sum_s, 128, 8);
    CHECK_FIELD(llms_scheduler_stats, e2e_count, 136, 8);
    CHECK_FIELD(llms_scheduler_stats, e2e_sum_s, 144, 8);
    CHECK_STRUCT(llms_device_info, 296, 8);
    CHECK_FIELD(llms_device_info, struct_size, 0, 4);
    CHECK_FIELD(llms_device_info, type, 4, 4);
    CHECK_FIELD(llms_device_info, name, 8, 256);
    CHECK_FIELD(llms_device_info, device_id, 268, 4);
    CHECK_FIELD(llms_device_info, api_version, 272, 4);
    CHECK_FIELD(llms_device_info, subgroup_size, 276, 4);
    CHECK_FIELD(llms_device_info, memory_bytes, 280, 8);
    CHECK_FIELD(llms_device_info, features, 288, 4);
    CHECK_FIELD(llms_device_info, max_workgroup_size, 292, 4);
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
