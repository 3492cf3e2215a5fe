/*
 * Allocation failure: load a fixture model (and run a short generation)
 * while failing the N-th allocation, for every N until the whole run needs
 * no more; each run must return LLMS_ERR_NO_MEMORY (never crash) and leak
 * nothing: the host allocator counts live blocks. Also checks that every
 * allocation goes through the host allocator at all.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmserve.h"
#include "support/fixtures.h"

typedef struct counting {
    long n_calls;     /* allocations attempted */
    long fail_at;     /* fail the allocation with this number (1-based); 0 = never */
    long live;        /* blocks currently allocated */
    int failed;       /* an allocation was failed */
} counting;

static void *c_malloc(void *u, size_t n) {
    counting *c = u;
    if (++c->n_calls == c->fail_at) { c->failed = 1; return NULL; }
    void *p = malloc(n);
    if (p) c->live++;
    return p;
}

static void *c_realloc(void *u, void *ptr, size_t n) {
    counting *c = u;
    if (++c->n_calls == c->fail_at) { c->failed = 1; return NULL; }
    void *p = realloc(ptr, n);
    if (p && !ptr) c->live++;
    return p;
}

static void c_free(void *u, void *ptr) {
    counting *c = u;
    if (ptr) c->live--;
    free(ptr);
}

/* One complete run: context, model, session, prompt, 3 greedy tokens. */
static llms_status run_once(counting *c, const char *path, uint32_t model_flags) {
    llms_allocator al = {sizeof al, c, c_malloc, c_realloc, c_free};
    llms_context_params cp;
    llms_context_params_init(&cp);
    cp.allocator = &al;
    cp.n_threads = 1;
    llms_context *ctx = NULL;
    llms_model *m = NULL;
    llms_session *s = NULL;
    llms_status st = llms_context_create(&cp, &ctx);
    if (st) return st;
    llms_model_params mp;
    llms_model_params_init(&mp);
    mp.flags = model_flags;
    if ((st = llms_model_load(ctx, path, &mp, &m))) goto out;
    if (model_flags & LLMS_MODEL_VOCAB_ONLY) {
        int32_t toks[64];
        size_t n;
        st = llms_tokenize(m, "Hello world, this is a test", 27, LLMS_TOKENIZE_ADD_BOS, toks, 64, &n);
        goto out;
    }
    if ((st = llms_session_create(m, NULL, &s))) goto out;
    if ((st = llms_session_feed_text(s, "The robot", 9, LLMS_TOKENIZE_MODEL_DEFAULTS))) goto out;
    llms_sampling_params sp;
    llms_sampling_params_init(&sp);
    sp.temperature = 0;
    sp.max_tokens = 3;
    if ((st = llms_session_generate_begin(s, &sp))) goto out;
    llms_step_result r;
    llms_step_result_init(&r);
    while ((st = llms_session_step(s, &r)) == LLMS_TOKEN) {}
    if (st == LLMS_DONE) st = LLMS_OK;
out:
    llms_session_destroy(s);
    llms_model_destroy(m);
    llms_context_destroy(ctx);
    return st;
}

static void fail_every_allocation(const char *rel, uint32_t flags) {
    const char *path = fixture_path(rel);
    if (!path) { fixture_missing(rel); return; }
    counting c = {0};
    assert_int_equal(run_once(&c, path, flags), LLMS_OK);
    assert_int_equal(c.live, 0);
    long total = c.n_calls;
    assert_true(total > 10);
    for (long n = 1; n <= total; n++) {
        counting f = {0};
        f.fail_at = n;
        llms_status st = run_once(&f, path, flags);
        if (!f.failed) fail_msg("allocation %ld was never made", n);
        if (st != LLMS_ERR_NO_MEMORY)
            fail_msg("failing allocation %ld of %ld gave %s (%s), not LLMS_ERR_NO_MEMORY", n, total,
                     llms_status_string(st), llms_errmsg());
        if (f.live != 0) fail_msg("failing allocation %ld of %ld leaked %ld blocks", n, total, f.live);
    }
    printf("# %s: failed each of %ld allocations in turn: all clean\n", rel, total);
}

static void test_model_run_every_allocation(void **state) {
    (void)state;
    fail_every_allocation("models/aidreams260K.gguf", 0);
}

static void test_vocab_every_allocation(void **state) {
    (void)state;
    fail_every_allocation("vocab/ggml-vocab-llama-spm.gguf", LLMS_MODEL_VOCAB_ONLY);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_run_every_allocation),
        cmocka_unit_test(test_vocab_every_allocation),
    };
    return cmocka_run_group_tests_name("alloc", tests, NULL, NULL);
}
