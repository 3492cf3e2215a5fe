/*
 * The batch scheduler, prefix cache and metrics through the public API, on
 * aidreams260K (trained, so greedy text is meaningful) and rand-llama d128.
 * Reference outputs come from the same request run alone through a plain
 * session (or, for determinism, alone through the scheduler).
 * LLMS_SOAK_SECONDS sets the soak's duration (default 20).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static const char *const PROMPTS[] = {
    "The robot",
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends",
    "Tom had a big red ball.",
    "One day, a cat and a dog went to the market to buy some food for their mother, who was very hungry and tired after a long day at work",
    "The sun",
    "Sara and Ben were best friends. They liked to",
    "In the quiet",
    "A bird sat on a tree and sang a happy song. A boy heard it and",
};
#define N_PROMPTS (sizeof PROMPTS / sizeof PROMPTS[0])

/* ---- references ---- */

typedef struct ref {
    char text[4096];
    size_t len;
    int32_t toks[256];
    int ntok;
    int reason;
} ref;

static void plain_generate(llms_model *m, const char *prompt, int32_t max_tokens, ref *o) {
    memset(o, 0, sizeof *o);
    llms_session *s;
    assert_int_equal(llms_session_create(m, NULL, &s), LLMS_OK);
    assert_int_equal(llms_session_feed_text(s, prompt, strlen(prompt), LLMS_TOKENIZE_MODEL_DEFAULTS), LLMS_OK);
    llms_sampling_params p;
    llms_sampling_params_init(&p);
    p.temperature = 0;
    p.max_tokens = max_tokens;
    assert_int_equal(llms_session_generate_begin(s, &p), LLMS_OK);
    llms_step_result r;
    llms_step_result_init(&r);
    for (;;) {
        llms_status st = llms_session_step(s, &r);
        assert_true(st == LLMS_TOKEN || st == LLMS_DONE);
        memcpy(o->text + o->len, r.text, r.text_len);
        o->len += r.text_len;
        if (st == LLMS_DONE) { o->reason = r.finish_reason; break; }
        o->toks[o->ntok++] = r.token;
    }
    llms_session_destroy(s);
}

/* ---- collecting events ---- */

typedef struct rec {
    uint64_t id;
    char text[4096];
    size_t len;
    int32_t toks[256];
    int ntok;
    int n_terminal;
    int type, reason;
    llms_status status;
    uint32_t prompt, cached, completion;
    int cancelled_by_us;
    int prompt_idx;
    int32_t max_tokens;
    uint64_t tag;
} rec;

static rec *find_rec(rec *recs, int n, uint64_t id) {
    for (int i = 0; i < n; i++)
        if (recs[i].id == id) return &recs[i];
    return NULL;
}

static void record(rec *r, const llms_event *ev, const char *text) {
    assert_non_null(r);
    assert_int_equal(r->n_terminal, 0);  /* nothing after the terminal event */
    if (ev->type == LLMS_EVENT_TOKEN) {
        assert_true(r->ntok < 256);
        r->toks[r->ntok++] = ev->token;
    } else {
        r->n_terminal++;
        r->tag = ev->user_tag;
        r->type = ev->type;
        r->reason = ev->finish_reason;
        r->status = ev->status;
        r->prompt = ev->prompt_tokens;
        r->cached = ev->cached_tokens;
        r->completion = ev->completion_tokens;
    }
    assert_true(r->len + ev->text_len < sizeof r->text);
    memcpy(r->text + r->len, text, ev->text_len);
    r->len += ev->text_len;
    r->text[r->len] = 0;
}

/* Drain queued events into recs. Returns the number of terminal events. */
static int drain(llms_scheduler *S, rec *recs, int n) {
    int terms = 0;
    char buf[4096];
    llms_event ev;
    memset(&ev, 0, sizeof ev);
    ev.struct_size = sizeof ev;
    ev.text_buf = buf;
    ev.text_cap = sizeof buf;
    while (llms_scheduler_poll(S, &ev, 0) == LLMS_OK) {
        record(find_rec(recs, n, ev.request_id), &ev, buf);
        if (ev.type != LLMS_EVENT_TOKEN) terms++;
    }
    return terms;
}

static uint64_t submit(llms_scheduler *S, const char *prompt, int32_t max_tokens, const char *tenant,
                       int32_t priority) {
    llms_sampling_params sp;
    llms_sampling_params_init(&sp);
    sp.temperature = 0;
    sp.max_tokens = max_tokens;
    llms_request_params rp;
    llms_request_params_init(&rp);
    rp.prompt = prompt;
    rp.prompt_len = strlen(prompt);
    rp.flags = LLMS_REQUEST_MODEL_DEFAULTS;
    rp.sampling = &sp;
    rp.tenant = tenant;
    rp.priority = priority;
    uint64_t id = 0;
    assert_int_equal(llms_scheduler_submit(S, &rp, &id), LLMS_OK);
    assert_true(id != 0);
    return id;
}

/* Host-driven loop until every rec has its terminal event. */
static void run_until_done(llms_scheduler *S, rec *recs, int n) {
    int done = 0;
    for (int guard = 0; done < n && guard < 100000; guard++) {
        llms_status st = llms_scheduler_step(S, NULL);
        assert_true(st == LLMS_OK || st == LLMS_AGAIN);
        done += drain(S, recs, n);
    }
    assert_int_equal(done, n);
}

static llms_scheduler *make_sched(uint32_t flags, uint64_t kv_budget, llms_cache *cache, uint32_t batch) {
    llms_scheduler_params p;
    llms_scheduler_params_init(&p);
    p.flags = flags;
    p.kv_budget_bytes = kv_budget;
    p.cache = cache;
    if (batch) p.max_batch_tokens = batch;
    llms_scheduler *S;
    assert_int_equal(llms_scheduler_create(g_model, &p, &S), LLMS_OK);
    return S;
}

/* ---- tests ---- */

static void test_params_and_errors(void **state) {
    (void)state;
    NEED_MODEL();
    llms_scheduler *S = NULL;
    assert_int_equal(llms_scheduler_create(NULL, NULL, &S), LLMS_ERR_INVALID_ARGUMENT);
    assert_int_equal(llms_scheduler_create(g_model, NULL, NULL), LLMS_ERR_INVALID_ARGUMENT);
    llms_scheduler_destroy(NULL);
    llms_cache_destroy(NULL);
    S = make_sched(0, 0, NULL, 0);
    uint64_t id;
    llms_request_params rp;
    llms_request_params_init(&rp);
    assert_int_equal(llms_scheduler_submit(S, &rp, &id), LLMS_ERR_INVALID_ARGUMENT);  /* no prompt */
    rp.prompt = "hi";
    rp.prompt_len = 2;
    rp.tenant = "nobody";
    assert_int_equal(llms_scheduler_submit(S, &rp, &id), LLMS_ERR_NOT_FOUND);
    assert_int_equal(llms_scheduler_cancel(S, 12345), LLMS_ERR_NOT_FOUND);
    int32_t ne = -1;
    assert_int_equal(llms_scheduler_step(S, &ne), LLMS_AGAIN);
    assert_int_equal(ne, 0);
    llms_event ev;
    memset(&ev, 0, sizeof ev);
    ev.struct_size = sizeof ev;
    assert_int_equal(llms_scheduler_poll(S, &ev, 0), LLMS_AGAIN);
    /* Poll with too small a buffer: the size needed, and the event stays. */
    uint64_t rid = submit(S, PROMPTS[0], 8, NULL, 0);
    int seen = 0;
    for (int k = 0; k < 50 && !seen; k++) {
        llms_scheduler_step(S, NULL);
        llms_event e2;
        memset(&e2, 0, sizeof e2);
        e2.struct_size = sizeof e2;
        llms_status st;
        while ((st = llms_scheduler_poll(S, &e2, 0)) == LLMS_OK) assert_int_equal(e2.request_id, rid);
        if (st == LLMS_ERR_BUFFER_TOO_SMALL) {
            size_t need = e2.text_len;
            assert_true(need > 0);
            char b2[64];
            e2.text_buf = b2;
            e2.text_cap = need;  /* no room for the NUL */
            assert_int_equal(llms_scheduler_poll(S, &e2, 0), LLMS_ERR_BUFFER_TOO_SMALL);
            e2.text_cap = need + 1;
            assert_int_equal(llms_scheduler_poll(S, &e2, 0), LLMS_OK);
            assert_int_equal(e2.text_len, need);
            assert_int_equal(strlen(b2), need);
            seen = 1;
        }
    }
    assert_true(seen);
    llms_scheduler_destroy(S);
    /* A worker-thread scheduler refuses host steps. */
    S = make_sched(LLMS_SCHEDULER_OWN_THREAD, 0, NULL, 0);
    assert_int_equal(llms_scheduler_step(S, NULL), LLMS_ERR_STATE);
    llms_scheduler_destroy(S);
}

/* Several requests batched together give exactly what each gives alone
 * through a plain session: nothing lost, duplicated or reordered. */
static void check_batched_vs_plain(uint32_t flags, uint32_t batch) {
    llms_scheduler *S = make_sched(flags, 0, NULL, batch);
    rec recs[N_PROMPTS];
    memset(recs, 0, sizeof recs);
    for (size_t i = 0; i < N_PROMPTS; i++) {
        recs[i].id = submit(S, PROMPTS[i], 24 + (int32_t)i * 3, NULL, 0);
        recs[i].max_tokens = 24 + (int32_t)i * 3;
    }
    run_until_done(S, recs, N_PROMPTS);
    for (size_t i = 0; i < N_PROMPTS; i++) {
        ref r;
        plain_generate(g_model, PROMPTS[i], recs[i].max_tokens, &r);
        assert_int_equal(recs[i].n_terminal, 1);
        assert_int_equal(recs[i].type, LLMS_EVENT_FINISHED);
        assert_int_equal(recs[i].reason, r.reason);
        assert_int_equal(recs[i].ntok, r.ntok);
        assert_memory_equal(recs[i].toks, r.toks, r.ntok * sizeof(int32_t));
        assert_string_equal(recs[i].text, r.text);
        assert_int_equal(recs[i].completion, (uint32_t)r.ntok);
    }
    llms_scheduler_stats st;
    llms_scheduler_stats_init(&st);
    assert_int_equal(llms_scheduler_get_stats(S, &st), LLMS_OK);
    assert_int_equal(st.requests_submitted, N_PROMPTS);
    assert_int_equal(st.requests_finished, N_PROMPTS);
    assert_int_equal(st.running, 0);
    assert_int_equal(st.queue_depth, 0);
    llms_scheduler_destroy(S);
}

static void test_batched_matches_plain(void **state) {
    (void)state;
    NEED_MODEL();
    check_batched_vs_plain(0, 0);
    /* A tiny token budget forces chunked prefill alongside decodes. */
    check_batched_vs_plain(0, 9);
    check_batched_vs_plain(LLMS_SCHEDULER_DETERMINISTIC, 16);
}

/* Stop strings and UTF-8 streaming behave as in llms_session_step. */
static void test_stop_string(void **state) {
    (void)state;
    NEED_MODEL();
    ref full;
    plain_generate(g_model, PROMPTS[1], 40, &full);
    assert_true(full.len > 12);
    char stop[8];
    memcpy(stop, full.text + full.len / 2, 3);
    stop[3] = 0;
    const char *stops[1] = {stop};
    llms_scheduler *S = make_sched(0, 0, NULL, 0);
    llms_sampling_params sp;
    llms_sampling_params_init(&sp);
    sp.temperature = 0;
    sp.max_tokens = 40;
    sp.stop = stops;
    sp.n_stop = 1;
    llms_request_params rp;
    llms_request_params_init(&rp);
    rp.prompt = PROMPTS[1];
    rp.prompt_len = strlen(PROMPTS[1]);
    rp.flags = LLMS_REQUEST_MODEL_DEFAULTS;
    rp.sampling = &sp;
    rec r;
    memset(&r, 0, sizeof r);
    assert_int_equal(llms_scheduler_submit(S, &rp, &r.id), LLMS_OK);
    stop[0] = 0;  /* the scheduler copied the stop strings at submit */
    stop[0] = full.text[full.len / 2];
    run_until_done(S, &r, 1);
    assert_int_equal(r.reason, LLMS_FINISH_STOP);
    const char *hit = strstr(full.text, stop);
    assert_non_null(hit);
    assert_int_equal(r.len, (size_t)(hit - full.text));
    assert_memory_equal(r.text, full.text, r.len);
    llms_scheduler_destroy(S);
}

static void test_busy_when_full(void **state) {
    (void)state;
    NEED_MODEL();
    llms_scheduler_params p;
    llms_scheduler_params_init(&p);
    p.queue_capacity = 4;
    llms_scheduler *S;
    assert_int_equal(llms_scheduler_create(g_model, &p, &S), LLMS_OK);
    rec recs[4];
    memset(recs, 0, sizeof recs);
    for (int i = 0; i < 4; i++) recs[i].id = submit(S, PROMPTS[i], 5, NULL, 0);
    llms_request_params rp;
    llms_request_params_init(&rp);
    rp.prompt = PROMPTS[0];
    rp.prompt_len = strlen(PROMPTS[0]);
    uint64_t id = 99;
    double t0 = now_s();
    for (int i = 0; i < 1000; i++) assert_int_equal(llms_scheduler_submit(S, &rp, &id), LLMS_ERR_BUSY);
    double per = (now_s() - t0) / 1000;
    assert_int_equal(id, 0);
    assert_true(per < 1e-3);  /* a rejection is answered at once */
    printf("BUSY rejection: %.2f us each\n", per * 1e6);
    run_until_done(S, recs, 4);
    llms_scheduler_stats st;
    llms_scheduler_stats_init(&st);
    llms_scheduler_get_stats(S, &st);
    assert_int_equal(st.requests_rejected, 1000);
    assert_int_equal(st.requests_finished, 4);
    llms_scheduler_destroy(S);
}

/* Cancellation and deadlines: one terminal event, and every KV block of
 * the request released within the step that reports it. */
static void test_cancel_and_deadline(void **state) {
    (void)state;
    NEED_MODEL();
    llms_scheduler *S = make_sched(0, 0, NULL, 0);
    llms_scheduler_stats st;
    llms_scheduler_stats_init(&st);
    llms_scheduler_get_stats(S, &st);
    uint32_t base = st.kv_blocks_used;
    rec r[3];
    memset(r, 0, sizeof r);
    r[0].id = submit(S, PROMPTS[1], 200, NULL, 0);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(llms_scheduler_step(S, NULL), LLMS_OK);
        drain(S, r, 3);
    }
    llms_scheduler_get_stats(S, &st);
    assert_true(st.kv_blocks_used > base);
    assert_int_equal(llms_scheduler_cancel(S, r[0].id), LLMS_OK);
    llms_scheduler_step(S, NULL);
    assert_int_equal(drain(S, r, 3), 1);
    assert_int_equal(r[0].reason, LLMS_FINISH_CANCELLED);
    assert_int_equal(r[0].status, LLMS_ERR_CANCELLED);
    llms_scheduler_get_stats(S, &st);
    assert_int_equal(st.kv_blocks_used, base);
    assert_int_equal(st.running, 0);
    assert_int_equal(llms_scheduler_cancel(S, r[0].id), LLMS_ERR_NOT_FOUND);

    /* Deadline: a running request and a queued one. */
    llms_request_params rp;
    llms_request_params_init(&rp);
    rp.prompt = PROMPTS[3];
    rp.prompt_len = strlen(PROMPTS[3]);
    rp.deadline_ms = 500;  /* ample for two steps, even under ThreadSanitizer */
    rp.user_tag = 77;
    assert_int_equal(llms_scheduler_submit(S, &rp, &r[1].id), LLMS_OK);
    llms_scheduler_step(S, NULL);
    llms_scheduler_step(S, NULL);
    drain(S, r, 3);
    assert_int_equal(r[1].n_terminal, 0);
    rp.deadline_ms = 1;
    assert_int_equal(llms_scheduler_submit(S, &rp, &r[2].id), LLMS_OK);
    usleep(520000);
    llms_scheduler_step(S, NULL);
    assert_int_equal(drain(S, r, 3), 2);
    assert_int_equal(r[1].reason, LLMS_FINISH_TIMEOUT);
    assert_int_equal(r[1].status, LLMS_ERR_TIMEOUT);
    assert_int_equal(r[1].tag, 77);
    assert_int_equal(r[2].reason, LLMS_FINISH_TIMEOUT);
    llms_scheduler_get_stats(S, &st);
    assert_int_equal(st.kv_blocks_used, base);
    assert_int_equal(st.requests_timed_out, 2);
    assert_int_equal(st.requests_cancelled, 1);
    llms_scheduler_destroy(S);
}

/* Determinism: greedy output bit-identical alone, batched, and preempted
 * (on g_model). */
static void deterministic_preemption(void) {
    const int N = 6;
    rec alone[6], mixed[6];
    memset(alone, 0, sizeof alone);
    for (int i = 0; i < N; i++) {
        llms_scheduler *S = make_sched(LLMS_SCHEDULER_DETERMINISTIC, 0, NULL, 0);
        alone[i].id = submit(S, PROMPTS[i], 60, NULL, 0);
        run_until_done(S, &alone[i], 1);
        llms_scheduler_destroy(S);
    }
    /* A budget for about one and a half requests' KV: the others are preempted
     * and recomputed. Block size from an empty scheduler's free count. */
    llms_scheduler *S = make_sched(LLMS_SCHEDULER_DETERMINISTIC, 1ull << 40, NULL, 0);
    llms_scheduler_stats st;
    llms_scheduler_stats_init(&st);
    llms_scheduler_get_stats(S, &st);
    uint64_t block = (1ull << 40) / ((uint64_t)st.kv_blocks_free + st.kv_blocks_used);
    llms_scheduler_destroy(S);
    S = make_sched(LLMS_SCHEDULER_DETERMINISTIC, block * 14, NULL, 0);
    memset(mixed, 0, sizeof mixed);
    for (int i = 0; i < N; i++) mixed[i].id = submit(S, PROMPTS[i], 60, NULL, i % 3);
    run_until_done(S, mixed, N);
    llms_scheduler_get_stats(S, &st);
    printf("deterministic: %llu preemptions over %d requests\n", (unsigned long long)st.preemptions, N);
    assert_true(st.preemptions > 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(mixed[i].type, LLMS_EVENT_FINISHED);
        assert_int_equal(mixed[i].ntok, alone[i].ntok);
        assert_memory_equal(mixed[i].toks, alone[i].toks, alone[i].ntok * sizeof(int32_t));
        assert_string_equal(mixed[i].text, alone[i].text);
    }
    llms_scheduler_destroy(S);
}

static void test_deterministic_preemption(void **state) {
    (void)state;
    NEED_MODEL();
    deterministic_preemption();
}

/* The same on models whose matrices the CPU backend repacks (Q4_0; Q4_K
 * and Q6_K, whose single-token products otherwise take another kernel). */
static void test_deterministic_packed(void **state) {
    (void)state;
    NEED_MODEL();
    static const char *const models[] = {"models/rand-llama-spm-d128-q4_0.gguf",
                                          "models/rand-llama-spm-d256-q4_k_m.gguf"};
    llms_model *saved = g_model;
    for (int i = 0; i < 2; i++) {
        const char *path = fixture_path(models[i]);
        if (!path) fixture_missing(models[i]);
        llms_model *m = NULL;
        assert_int_equal(llms_model_load(g_ctx, path, NULL, &m), LLMS_OK);
        g_model = m;
        deterministic_preemption();
        g_model = saved;
        llms_model_destroy(m);
    }
}

/* Tenant isolation in the prefix cache, sharing groups, and cache hits that
 * change nothing in the output. */
static void test_prefix_cache_tenants(void **state) {
    (void)state;
    NEED_MODEL();
    llms_cache *C;
    assert_int_equal(llms_cache_create(g_model, NULL, &C), LLMS_OK);
    llms_scheduler *S = make_sched(0, 0, C, 0);
    llms_tenant_params tp;
    const char *names[4] = {"alice", "bob", "carol", "dave"};
    for (int i = 0; i < 4; i++) {
        llms_tenant_params_init(&tp);
        tp.name = names[i];
        tp.sharing_group = i >= 2 ? "team" : NULL;
        assert_int_equal(llms_scheduler_set_tenant(S, &tp), LLMS_OK);
    }
    const char *P = PROMPTS[3];  /* > 32 tokens: at least two full blocks */
    ref want;
    plain_generate(g_model, P, 20, &want);
    rec r[6];
    memset(r, 0, sizeof r);
    llms_cache_stats cs;
    llms_cache_stats_init(&cs);

    r[0].id = submit(S, P, 20, "alice", 0);
    run_until_done(S, &r[0], 1);
    assert_int_equal(r[0].cached, 0);
    llms_cache_get_stats(C, &cs);
    uint64_t blocks_a = cs.blocks_used, hits0 = cs.hit_tokens;
    assert_true(blocks_a >= 2);

    /* Bob: same prompt, another tenant: no hit, no shared block. */
    r[1].id = submit(S, P, 20, "bob", 0);
    run_until_done(S, &r[1], 1);
    assert_int_equal(r[1].cached, 0);
    llms_cache_get_stats(C, &cs);
    assert_int_equal(cs.hit_tokens, hits0);
    assert_int_equal(cs.blocks_used, 2 * blocks_a);  /* bob's own copies */

    /* Alice again: hits her own blocks. */
    r[2].id = submit(S, P, 20, "alice", 0);
    run_until_done(S, &r[2], 1);
    assert_true(r[2].cached >= 32);
    /* Everything but the last prompt token: the partial last block hits too. */
    assert_int_equal(r[2].cached, r[2].prompt - 1);

    /* Carol and Dave share a group. */
    r[3].id = submit(S, P, 20, "carol", 0);
    run_until_done(S, &r[3], 1);
    assert_int_equal(r[3].cached, 0);
    r[4].id = submit(S, P, 20, "dave", 0);
    run_until_done(S, &r[4], 1);
    assert_int_equal(r[4].cached, r[2].cached);
    /* The default tenant sees none of them. */
    r[5].id = submit(S, P, 20, NULL, 0);
    run_until_done(S, &r[5], 1);
    assert_int_equal(r[5].cached, 0);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(r[i].ntok, want.ntok);
        assert_string_equal(r[i].text, want.text);
    }

    /* Pin, clear (pinned blocks go too), stats. */
    int32_t toks[256];
    size_t nt;
    assert_int_equal(llms_tokenize(g_model, P, strlen(P), LLMS_TOKENIZE_MODEL_DEFAULTS, toks, 256, &nt), LLMS_OK);
    size_t pinned = 0;
    assert_int_equal(llms_cache_pin(C, "t:alice", toks, nt, &pinned), LLMS_OK);
    assert_int_equal(pinned, 0);  /* groups are named as the host names them */
    llms_scheduler_destroy(S);
    llms_cache_get_stats(C, &cs);
    assert_true(cs.blocks_used > 0);
    assert_int_equal(llms_cache_clear(C), LLMS_OK);
    llms_cache_get_stats(C, &cs);
    assert_int_equal(cs.blocks_used, 0);
    assert_true(cs.evictions > 0);
    llms_cache_destroy(C);
}

/* One request with explicit tokens, greedy; returns its id. */
static uint64_t submit_tokens(llms_scheduler *S, const int32_t *toks, size_t n, int32_t max_tokens,
                              const char *tenant) {
    llms_sampling_params sp;
    llms_sampling_params_init(&sp);
    sp.temperature = 0;
    sp.max_tokens = max_tokens;
    sp.flags = LLMS_SAMPLE_IGNORE_EOG;
    llms_request_params rp;
    llms_request_params_init(&rp);
    rp.tokens = toks;
    rp.n_tokens = n;
    rp.sampling = &sp;
    rp.tenant = tenant;
    uint64_t id = 0;
    assert_int_equal(llms_scheduler_submit(S, &rp, &id), LLMS_OK);
    return id;
}

/* The last, partial block of a prompt is cached too: a later request that
 * extends the prompt (or shares part of that block) reuses all it can, the
 * first request's own generation (written into a copy of the shared block)
 * does not disturb it, the output is that of an uncached run, and another
 * tenant gets nothing of it. */
static void test_prefix_cache_partial_blocks(void **state) {
    (void)state;
    NEED_MODEL();
    int32_t V = llms_model_n_vocab(g_model);
    int32_t base[64], alt[64];
    uint64_t x = 12345;
    for (int i = 0; i < 64; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        base[i] = (int32_t)(3 + (x >> 33) % (uint64_t)(V - 3));
        alt[i] = base[i];
    }
    for (int i = 35; i < 64; i++) alt[i] = base[63 - i];
    /* prompt lengths: A = 37 (2 blocks + 5), B = A + 6, C = first 35 of A
     * then other tokens, D = B under another tenant, E = A again. */
    struct { const int32_t *t; size_t n; const char *tenant; uint32_t want_cached; } q[] = {
        {base, 37, "alice", 0}, {base, 43, "alice", 37}, {alt, 41, "alice", 35},
        {base, 43, "bob", 0},   {base, 37, "alice", 36},
    };
    enum { NQ = 5 };
    llms_cache *C;
    assert_int_equal(llms_cache_create(g_model, NULL, &C), LLMS_OK);
    llms_scheduler *S = make_sched(LLMS_SCHEDULER_DETERMINISTIC, 0, C, 0);
    llms_scheduler *R = make_sched(LLMS_SCHEDULER_DETERMINISTIC, 0, NULL, 0);  /* the uncached reference */
    llms_tenant_params tp;
    const char *names[2] = {"alice", "bob"};
    for (int i = 0; i < 2; i++) {
        llms_tenant_params_init(&tp);
        tp.name = names[i];
        assert_int_equal(llms_scheduler_set_tenant(S, &tp), LLMS_OK);
        assert_int_equal(llms_scheduler_set_tenant(R, &tp), LLMS_OK);
    }
    rec r[NQ], ref[NQ];
    memset(r, 0, sizeof r);
    memset(ref, 0, sizeof ref);
    llms_cache_stats cs;
    llms_cache_stats_init(&cs);
    for (int i = 0; i < NQ; i++) {
        ref[i].id = submit_tokens(R, q[i].t, q[i].n, 6, q[i].tenant);
        run_until_done(R, &ref[i], 1);
        uint64_t hits_before = 0;
        llms_cache_get_stats(C, &cs);
        hits_before = cs.hit_tokens;
        r[i].id = submit_tokens(S, q[i].t, q[i].n, 6, q[i].tenant);
        run_until_done(S, &r[i], 1);
        assert_int_equal(r[i].type, LLMS_EVENT_FINISHED);
        assert_int_equal(r[i].cached, q[i].want_cached);
        llms_cache_get_stats(C, &cs);
        assert_int_equal(cs.hit_tokens - hits_before, q[i].want_cached);
        assert_int_equal(r[i].ntok, 6);
        assert_int_equal(r[i].ntok, ref[i].ntok);
        assert_memory_equal(r[i].toks, ref[i].toks, sizeof(int32_t) * 6);
    }
    llms_cache_get_stats(C, &cs);
    /* alice: 2 full blocks + partials of 5 (A), 11 (B) and 9 (C) tokens (E
     * adds nothing: A's covers it); bob: his own 2 + 1 for B's prompt.
     * Nothing shared across tenants. */
    assert_int_equal(cs.blocks_used, (2 + 3) + (2 + 1));
    llms_scheduler_stats ss;
    llms_scheduler_stats_init(&ss);
    llms_scheduler_get_stats(S, &ss);
    assert_int_equal(ss.running, 0);
    /* Only the cache holds blocks now; clearing frees every one of them. */
    llms_scheduler_destroy(S);
    llms_scheduler_destroy(R);
    assert_int_equal(llms_cache_clear(C), LLMS_OK);
    llms_cache_get_stats(C, &cs);
    assert_int_equal(cs.blocks_used, 0);
    S = make_sched(0, 0, NULL, 0);
    llms_scheduler_get_stats(S, &ss);
    assert_int_equal(ss.kv_blocks_used, 0);
    llms_scheduler_destroy(S);
    llms_cache_destroy(C);
}

/* The cache honours its budget by LRU eviction, and pinning protects. */
static void test_cache_budget_and_pin(void **state) {
    (void)state;
    NEED_MODEL();
    llms_scheduler *S0 = make_sched(0, 1ull << 40, NULL, 0);
    llms_scheduler_stats st;
    llms_scheduler_stats_init(&st);
    llms_scheduler_get_stats(S0, &st);
    uint64_t block = (1ull << 40) / ((uint64_t)st.kv_blocks_free + st.kv_blocks_used);
    llms_scheduler_destroy(S0);
    llms_cache_params cp;
    llms_cache_params_init(&cp);
    cp.budget_bytes = block * 3;
    llms_cache *C;
    assert_int_equal(llms_cache_create(g_model, &cp, &C), LLMS_OK);
    llms_scheduler *S = make_sched(0, 0, C, 0);
    rec r[3];
    memset(r, 0, sizeof r);
    r[0].id = submit(S, PROMPTS[3], 2, NULL, 0);
    run_until_done(S, &r[0], 1);
    int32_t toks[256];
    size_t nt, pinned;
    assert_int_equal(llms_tokenize(g_model, PROMPTS[3], strlen(PROMPTS[3]), LLMS_TOKENIZE_MODEL_DEFAULTS, toks, 256,
                                   &nt), LLMS_OK);
    assert_int_equal(llms_cache_pin(C, NULL, toks, nt, &pinned), LLMS_OK);
    assert_true(pinned >= 32);
    r[1].id = submit(S, PROMPTS[1], 2, NULL, 0);
    run_until_done(S, &r[1], 1);
    llms_cache_stats cs;
    llms_cache_stats_init(&cs);
    llms_cache_get_stats(C, &cs);
    assert_true(cs.bytes_used <= cp.budget_bytes);
    assert_int_equal(cs.blocks_pinned, pinned / 16);
    /* The pinned prefix still hits. */
    r[2].id = submit(S, PROMPTS[3], 2, NULL, 0);
    run_until_done(S, &r[2], 1);
    assert_int_equal(r[2].cached, pinned < (nt - 1) / 16 * 16 ? pinned : (nt - 1) / 16 * 16);
    assert_int_equal(llms_cache_unpin(C, NULL, toks, nt), LLMS_OK);
    llms_scheduler_destroy(S);
    llms_cache_destroy(C);
}

/* Prometheus text: every line a comment or `name{labels} value`. */
static void test_metrics_prometheus(void **state) {
    (void)state;
    NEED_MODEL();
    llms_scheduler *S = make_sched(0, 0, NULL, 0);
    llms_tenant_params tp;
    llms_tenant_params_init(&tp);
    tp.name = "we\"ird\\name";
    assert_int_equal(llms_scheduler_set_tenant(S, &tp), LLMS_OK);
    rec r[2];
    memset(r, 0, sizeof r);
    r[0].id = submit(S, PROMPTS[0], 8, NULL, 0);
    r[1].id = submit(S, PROMPTS[2], 8, tp.name, 0);
    run_until_done(S, r, 2);
    size_t len = 0;
    assert_int_equal(llms_scheduler_metrics_prometheus(S, NULL, 0, &len), LLMS_ERR_BUFFER_TOO_SMALL);
    assert_true(len > 100);
    char *buf = malloc(len + 1);
    size_t len2;
    assert_int_equal(llms_scheduler_metrics_prometheus(S, buf, len + 1, &len2), LLMS_OK);
    assert_int_equal(len2, len);
    assert_int_equal(strlen(buf), len);
    int n_samples = 0, saw_ttft = 0, saw_tenant = 0, saw_kv_host = 0;
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#') {
            assert_true(!strncmp(line, "# HELP ", 7) || !strncmp(line, "# TYPE ", 7));
            if (!strncmp(line, "# TYPE ", 7)) {
                const char *t = strrchr(line, ' ') + 1;
                assert_true(!strcmp(t, "counter") || !strcmp(t, "gauge") || !strcmp(t, "histogram"));
            }
            continue;
        }
        /* metric name */
        char *p = line;
        assert_true((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' || *p == ':');
        while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
               *p == ':')
            p++;
        if (*p == '{') {
            /* labels: name="value" with \\ \" \n escapes */
            p++;
            while (*p != '}') {
                while ((*p >= 'a' && *p <= 'z') || *p == '_') p++;
                assert_int_equal(*p++, '=');
                assert_int_equal(*p++, '"');
                while (*p != '"') {
                    assert_true(*p != 0);
                    if (*p == '\\') p++;
                    p++;
                }
                p++;
                if (*p == ',') p++;
                else assert_int_equal(*p, '}');
            }
            p++;
        }
        assert_int_equal(*p++, ' ');
        char *end;
        strtod(p, &end);
        assert_true(end != p && *end == 0);
        n_samples++;
        if (strstr(line, "llms_time_to_first_token_seconds_count 2")) saw_ttft = 1;
        if (strstr(line, "tenant=\"we\\\"ird\\\\name\"")) saw_tenant = 1;
        /* Both requests are done and nothing caches their blocks: the
         * KV cache's slabs have given their memory back. */
        if (!strcmp(line, "llms_kv_host_bytes 0")) saw_kv_host = 1;
    }
    assert_true(n_samples > 50);
    assert_true(saw_kv_host);
    assert_true(saw_ttft);
    assert_true(saw_tenant);
    free(buf);
    llms_scheduler_destroy(S);
}

/* Tenant limits: prompt length, output length, token rate, concurrency. */
static void test_tenant_limits(void **state) {
    (void)state;
    NEED_MODEL();
    llms_scheduler *S = make_sched(0, 0, NULL, 0);
    llms_tenant_params tp;
    llms_tenant_params_init(&tp);
    tp.name = "small";
    tp.max_prompt_tokens = 16;
    tp.max_output_tokens = 5;
    tp.tokens_per_minute = 20;
    tp.max_concurrent = 1;
    assert_int_equal(llms_scheduler_set_tenant(S, &tp), LLMS_OK);
    llms_request_params rp;
    llms_request_params_init(&rp);
    rp.tenant = "small";
    rp.prompt = PROMPTS[1];
    rp.prompt_len = strlen(PROMPTS[1]);
    uint64_t id;
    assert_int_equal(llms_scheduler_submit(S, &rp, &id), LLMS_ERR_PROMPT_TOO_LONG);
    rec r[2];
    memset(r, 0, sizeof r);
    r[0].id = submit(S, PROMPTS[0], 50, "small", 0);
    r[1].id = submit(S, PROMPTS[2], 50, "small", 0);
    llms_scheduler_step(S, NULL);
    llms_scheduler_stats st;
    llms_scheduler_stats_init(&st);
    llms_scheduler_get_stats(S, &st);
    assert_int_equal(st.running, 1);  /* max_concurrent */
    run_until_done(S, r, 2);
    assert_int_equal(r[0].reason, LLMS_FINISH_LENGTH);
    assert_int_equal(r[0].ntok, 5);
    /* About 22 tokens used of 20 per minute: the bucket is empty now. */
    rp.prompt = PROMPTS[0];
    rp.prompt_len = strlen(PROMPTS[0]);
    llms_status s1 = llms_scheduler_submit(S, &rp, &id);
    llms_status s2 = s1 ? s1 : llms_scheduler_submit(S, &rp, &id);
    assert_int_equal(s2, LLMS_ERR_RATE_LIMITED);
    llms_scheduler_destroy(S);
}

/* Weighted fair share: a tenant flooding the queue does not delay another
 * tenant's request behind its backlog; priorities order admission. */
static void test_fair_share_and_priority(void **state) {
    (void)state;
    NEED_MODEL();
    llms_scheduler_params p;
    llms_scheduler_params_init(&p);
    p.max_running = 2;
    llms_scheduler *S;
    assert_int_equal(llms_scheduler_create(g_model, &p, &S), LLMS_OK);
    const char *names[2] = {"flood", "quiet"};
    for (int i = 0; i < 2; i++) {
        llms_tenant_params tp;
        llms_tenant_params_init(&tp);
        tp.name = names[i];
        assert_int_equal(llms_scheduler_set_tenant(S, &tp), LLMS_OK);
    }
    enum { NF = 20 };
    rec r[NF + 2];
    memset(r, 0, sizeof r);
    for (int i = 0; i < NF; i++) r[i].id = submit(S, PROMPTS[i % N_PROMPTS], 6, "flood", 0);
    /* Let the flood get served a little first. */
    for (int i = 0; i < 6; i++) { llms_scheduler_step(S, NULL); drain(S, r, NF + 2); }
    r[NF].id = submit(S, PROMPTS[0], 6, "quiet", 0);
    r[NF + 1].id = submit(S, PROMPTS[2], 6, "flood", 5);  /* high priority */
    int order = 0, pos_quiet = -1, pos_prio = -1, done_before = 0;
    for (int guard = 0; guard < 10000 && order < NF + 2; guard++) {
        llms_scheduler_step(S, NULL);
        char buf[4096];
        llms_event ev;
        memset(&ev, 0, sizeof ev);
        ev.struct_size = sizeof ev;
        ev.text_buf = buf;
        ev.text_cap = sizeof buf;
        while (llms_scheduler_poll(S, &ev, 0) == LLMS_OK) {
            record(find_rec(r, NF + 2, ev.request_id), &ev, buf);
            if (ev.type == LLMS_EVENT_TOKEN) continue;
            if (ev.request_id == r[NF].id) pos_quiet = order;
            if (ev.request_id == r[NF + 1].id) pos_prio = order;
            order++;
        }
        if (pos_quiet < 0) done_before = order;
    }
    assert_int_equal(order, NF + 2);
    printf("fair share: quiet tenant finished %d of %d, high priority %d\n", pos_quiet + 1, NF + 2, pos_prio + 1);
    /* Ahead of most of the backlog (2 running + the 2 newcomers at most). */
    assert_true(pos_quiet >= 0 && pos_quiet < 8);
    assert_true(pos_prio >= 0 && pos_prio < 8);
    (void)done_before;
    llms_scheduler_destroy(S);
}

/* ---- weighted fair sharing of prefill between tenants ---- */

/* Scheduler with an explicit token budget, running limit and ageing (0 =
 * default), and tenants "A" and "B" (weights wa, wb). */
static llms_scheduler *make_fair_sched(uint32_t flags, uint32_t batch, uint32_t max_running, uint32_t aging_ms,
                                       uint32_t wa, uint32_t wb) {
    llms_scheduler_params p;
    llms_scheduler_params_init(&p);
    p.flags = flags;
    p.max_batch_tokens = batch;
    p.max_running = max_running;
    if (aging_ms) p.aging_ms = aging_ms;
    llms_scheduler *S;
    assert_int_equal(llms_scheduler_create(g_model, &p, &S), LLMS_OK);
    const char *names[2] = {"A", "B"};
    uint32_t w[2] = {wa, wb};
    for (int i = 0; i < 2; i++) {
        llms_tenant_params tp;
        llms_tenant_params_init(&tp);
        tp.name = names[i];
        tp.weight = w[i];
        assert_int_equal(llms_scheduler_set_tenant(S, &tp), LLMS_OK);
    }
    return S;
}

/* A prompt of n tokens, different for each seed. */
static void fair_prompt(int32_t *toks, uint32_t n, uint32_t seed) {
    int32_t V = llms_model_n_vocab(g_model);
    for (uint32_t k = 0; k < n; k++) toks[k] = (int32_t)((seed * 131u + k * 17u + 3u) % (uint32_t)(V - 8)) + 4;
}

/* Step until request `id` has produced its first token; returns the steps
 * taken (each llms_scheduler_step is one forward pass). The tokens of `id`
 * go to *out (up to 8) as they come, until it ends. Events of other
 * requests are dropped. */
static int steps_to_first_token(llms_scheduler *S, uint64_t id, int32_t *out, int *n_out) {
    char buf[4096];
    llms_event ev;
    memset(&ev, 0, sizeof ev);
    ev.struct_size = sizeof ev;
    ev.text_buf = buf;
    ev.text_cap = sizeof buf;
    int steps = 0, first = -1, ended = 0;
    *n_out = 0;
    while (!ended && steps < 1000) {
        llms_status st = llms_scheduler_step(S, NULL);
        assert_true(st == LLMS_OK || st == LLMS_AGAIN);
        steps++;
        while (llms_scheduler_poll(S, &ev, 0) == LLMS_OK) {
            if (ev.request_id != id) continue;
            if (ev.type == LLMS_EVENT_TOKEN) {
                if (first < 0) first = steps;
                if (*n_out < 8) out[(*n_out)++] = ev.token;
            } else {
                assert_int_equal(ev.type, LLMS_EVENT_FINISHED);
                ended = 1;
            }
        }
    }
    assert_true(first > 0);
    return first;
}

enum { FAIR_BATCH = 32, FAIR_NA = 8, FAIR_LA = 100 };

typedef struct fair_case {
    uint32_t max_running, aging_ms, lb;  /* B's prompt length */
    int32_t prio_b;
    int flood;                           /* A floods first */
    int sleep_flood_ms, sleep_b_ms;      /* after A's submissions; after B's */
} fair_case;

/* B's steps to its first token (4 new tokens, deterministic mode), alone or
 * after A submitted FAIR_NA prompts of FAIR_LA tokens and ran 3 steps. */
static int fair_ttft(const fair_case *c, int32_t *tok, int *n_tok, uint64_t *preemptions) {
    llms_scheduler *S =
        make_fair_sched(LLMS_SCHEDULER_DETERMINISTIC, FAIR_BATCH, c->max_running, c->aging_ms, 1, 1);
    int32_t pa[FAIR_LA], pb[64];
    if (c->flood) {
        for (uint32_t i = 0; i < FAIR_NA; i++) {
            fair_prompt(pa, FAIR_LA, i);
            submit_tokens(S, pa, FAIR_LA, 8, "A");
        }
        /* A is well under way when B arrives. */
        for (int i = 0; i < 3; i++) assert_int_equal(llms_scheduler_step(S, NULL), LLMS_OK);
        if (c->sleep_flood_ms) usleep((useconds_t)c->sleep_flood_ms * 1000);
    }
    fair_prompt(pb, c->lb, 999);
    llms_sampling_params sp;
    llms_sampling_params_init(&sp);
    sp.temperature = 0;
    sp.max_tokens = 4;
    sp.flags = LLMS_SAMPLE_IGNORE_EOG;
    llms_request_params rp;
    llms_request_params_init(&rp);
    rp.tokens = pb;
    rp.n_tokens = c->lb;
    rp.sampling = &sp;
    rp.tenant = "B";
    rp.priority = c->prio_b;
    uint64_t id = 0;
    assert_int_equal(llms_scheduler_submit(S, &rp, &id), LLMS_OK);
    if (c->sleep_b_ms) usleep((useconds_t)c->sleep_b_ms * 1000);
    int steps = steps_to_first_token(S, id, tok, n_tok);
    llms_scheduler_stats st;
    llms_scheduler_stats_init(&st);
    assert_int_equal(llms_scheduler_get_stats(S, &st), LLMS_OK);
    *preemptions = st.preemptions;
    llms_scheduler_destroy(S);
    return steps;
}

/* Latency isolation: tenant B's request gets its first token about as fast
 * with tenant A flooding the scheduler with long prompts as alone. With
 * equal weights B gets at least half of every step's prompt budget (A's
 * decode tokens count against A), so its prompt of L tokens takes at most
 * ceil(L / (budget / 2)) steps: 1 step for 16 tokens (as alone), 3 for 48
 * (2 alone). Also with a running limit A alone fills (B takes a slot in its
 * fair share), and with A's requests aged far above B's (ageing stops at
 * the top priority, so age does not outrank the fair share). Then
 * priorities: B at a higher priority takes the whole budget (as alone); at
 * a lower one it waits for A's prompts, unless it aged up to A's level,
 * where it gets its fair share again. */
static void test_fair_prefill_latency(void **state) {
    (void)state;
    NEED_MODEL();
    const fair_case cases[] = {
        {64, 0, 16, 0, 1, 0, 0},  {4, 0, 16, 0, 1, 0, 0},  {64, 0, 48, 0, 1, 0, 0},
        {64, 1, 16, 0, 1, 30, 0}, {64, 0, 48, 1, 1, 0, 0}, {64, 0, 16, -1, 1, 0, 0},
        {64, 1, 16, -1, 1, 0, 30},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const fair_case *c = &cases[i];
        int32_t base_tok[8], tok[8];
        int n_base, n_tok;
        fair_case alone = *c;
        alone.flood = 0;
        uint64_t pre;
        int base = fair_ttft(&alone, base_tok, &n_base, &pre);
        int flooded = fair_ttft(c, tok, &n_tok, &pre);
        /* One of A's 4 slots goes to B, once; with slots to spare, none. */
        assert_int_equal(pre, c->max_running == 4 && c->prio_b >= 0 ? 1 : 0);
        printf("fair prefill: B (%u-token prompt, priority %d, max_running %u%s) steps to first token: alone %d, "
               "under A's flood of %d x %d tokens %d\n",
               c->lb, c->prio_b, c->max_running, c->aging_ms ? ", aged" : "", base, FAIR_NA, FAIR_LA, flooded);
        assert_int_equal(base, (int)((c->lb + FAIR_BATCH - 1) / FAIR_BATCH));
        int half = (int)((c->lb + FAIR_BATCH / 2 - 1) / (FAIR_BATCH / 2));
        if (c->prio_b > 0) assert_int_equal(flooded, base);
        else if (c->prio_b < 0 && !c->aging_ms) assert_true(flooded > 10);  /* behind A's 800 prompt tokens */
        else assert_true(flooded <= half);
        /* Deterministic mode: the same greedy tokens whatever the batch. */
        assert_int_equal(n_tok, n_base);
        assert_memory_equal(tok, base_tok, (size_t)n_tok * sizeof *tok);
    }
}

/* Weights: two tenants flooding with prompts at weights 3:1 get prefill
 * tokens in about that proportion. Prompts of 10 tokens with one new token
 * each, so every first token marks 10 prompt tokens evaluated and nothing
 * else competes for the budget (no decode tokens). */
static void test_fair_prefill_weights(void **state) {
    (void)state;
    NEED_MODEL();
    enum { BATCH = 32, N = 24, L = 10, WINDOW = 8 };
    llms_scheduler *S = make_fair_sched(0, BATCH, 64, 0, 3, 1);
    int32_t p[L];
    uint64_t ida[N], idb[N];
    /* A's whole flood first, so submission order alone would favour A. */
    for (int i = 0; i < N; i++) { fair_prompt(p, L, (uint32_t)i); ida[i] = submit_tokens(S, p, L, 1, "A"); }
    for (int i = 0; i < N; i++) { fair_prompt(p, L, 100u + (uint32_t)i); idb[i] = submit_tokens(S, p, L, 1, "B"); }
    int firsts[2] = {0, 0};
    char buf[4096];
    llms_event ev;
    memset(&ev, 0, sizeof ev);
    ev.struct_size = sizeof ev;
    ev.text_buf = buf;
    ev.text_cap = sizeof buf;
    for (int step = 0; step < WINDOW; step++) {
        assert_int_equal(llms_scheduler_step(S, NULL), LLMS_OK);
        llms_scheduler_stats st;
        llms_scheduler_stats_init(&st);
        assert_int_equal(llms_scheduler_get_stats(S, &st), LLMS_OK);
        assert_int_equal(st.last_batch_tokens, BATCH);  /* no throughput lost to the sharing */
        while (llms_scheduler_poll(S, &ev, 0) == LLMS_OK) {
            if (ev.type != LLMS_EVENT_TOKEN) continue;
            for (int i = 0; i < N; i++) {
                if (ev.request_id == ida[i]) firsts[0]++;
                if (ev.request_id == idb[i]) firsts[1]++;
            }
        }
    }
    /* Both were backlogged the whole window (A needs 24 x 10 > 8 x 24). */
    assert_true(firsts[0] < N && firsts[1] < N);
    double ratio = firsts[1] ? (double)firsts[0] / firsts[1] : 1e9;
    printf("fair prefill weights 3:1: prompts evaluated in %d steps A %d, B %d (ratio %.2f)\n", WINDOW, firsts[0],
           firsts[1], ratio);
    /* Each tenant may have up to one prompt part-done at the end of the
     * window: 3 +- 0.6 covers that rounding (exact share: A 19.2, B 6.4). */
    assert_true(ratio >= 2.4 && ratio <= 3.6);
    llms_scheduler_destroy(S);
}

/* Idle time earns no credit: B, idle while A was served alone for 10
 * steps, then flooding too, shares the prompt budget with A at once instead
 * of taking all of it until its service caught up with A's. Both A's prompt
 * in progress (80 tokens left) and B's first (100) get their first token
 * within 8 steps: each gets at least 13 tokens a step (half the budget, A's
 * decode tokens counting against A). */
static void test_fair_prefill_no_credit(void **state) {
    (void)state;
    NEED_MODEL();
    enum { BATCH = 32, NA = 8, LA = 100 };
    llms_scheduler *S = make_fair_sched(0, BATCH, 64, 0, 1, 1);
    int32_t p[LA];
    uint64_t ida[NA], idb[NA];
    for (uint32_t i = 0; i < NA; i++) { fair_prompt(p, LA, i); ida[i] = submit_tokens(S, p, LA, 8, "A"); }
    char buf[4096];
    llms_event ev;
    memset(&ev, 0, sizeof ev);
    ev.struct_size = sizeof ev;
    ev.text_buf = buf;
    ev.text_cap = sizeof buf;
    int first_a = 0;
    for (int step = 0; step < 10; step++) {
        assert_int_equal(llms_scheduler_step(S, NULL), LLMS_OK);
        while (llms_scheduler_poll(S, &ev, 0) == LLMS_OK)
            if (ev.type == LLMS_EVENT_TOKEN && ev.n_generated == 1) first_a++;
    }
    assert_int_equal(first_a, 3);  /* 320 tokens: 3 prompts done, the 4th at 20 */
    for (uint32_t i = 0; i < NA; i++) { fair_prompt(p, LA, 50 + i); idb[i] = submit_tokens(S, p, LA, 8, "B"); }
    int a4 = -1, b1 = -1;
    for (int step = 1; step <= 12 && (a4 < 0 || b1 < 0); step++) {
        assert_int_equal(llms_scheduler_step(S, NULL), LLMS_OK);
        while (llms_scheduler_poll(S, &ev, 0) == LLMS_OK) {
            if (ev.type != LLMS_EVENT_TOKEN || ev.n_generated != 1) continue;
            if (ev.request_id == ida[3]) a4 = step;
            if (ev.request_id == idb[0]) b1 = step;
        }
    }
    printf("fair prefill after B wakes: A's 4th prompt done in %d steps, B's first in %d\n", a4, b1);
    assert_true(a4 > 0 && a4 <= 8);
    assert_true(b1 > 0 && b1 <= 8);
    llms_scheduler_destroy(S);
}

/* An unused share earns no credit either: B, asking for less than its
 * share every step (a 4-token prompt a step) while A floods, then flooding
 * too, shares with A at once rather than taking the whole budget until
 * the shares it left unused were made up (about 24 tokens a step for 20
 * steps). A still finishes a prompt in the next 12 steps (it has at least
 * 13 tokens a step; its prompt in progress needs at most 100). */
static void test_fair_prefill_unused_share(void **state) {
    (void)state;
    NEED_MODEL();
    enum { BATCH = 32, NA = 8, LA = 100 };
    llms_scheduler *S = make_fair_sched(0, BATCH, 64, 0, 1, 1);
    int32_t p[LA];
    uint64_t ida[NA];
    for (uint32_t i = 0; i < NA; i++) { fair_prompt(p, LA, i); ida[i] = submit_tokens(S, p, LA, 8, "A"); }
    char buf[4096];
    llms_event ev;
    memset(&ev, 0, sizeof ev);
    ev.struct_size = sizeof ev;
    ev.text_buf = buf;
    ev.text_cap = sizeof buf;
    for (int step = 0; step < 20; step++) {
        fair_prompt(p, 4, 200u + (uint32_t)step);
        submit_tokens(S, p, 4, 1, "B");
        assert_int_equal(llms_scheduler_step(S, NULL), LLMS_OK);
        while (llms_scheduler_poll(S, &ev, 0) == LLMS_OK) {}
    }
    for (uint32_t i = 0; i < NA; i++) { fair_prompt(p, LA, 50 + i); submit_tokens(S, p, LA, 8, "B"); }
    int first_a = 0;
    for (int step = 0; step < 12; step++) {
        assert_int_equal(llms_scheduler_step(S, NULL), LLMS_OK);
        while (llms_scheduler_poll(S, &ev, 0) == LLMS_OK)
            for (uint32_t i = 0; i < NA; i++)
                if (ev.type == LLMS_EVENT_TOKEN && ev.n_generated == 1 && ev.request_id == ida[i]) first_a++;
    }
    printf("fair prefill after B's small requests: A's prompts done in the next 12 steps: %d\n", first_a);
    assert_true(first_a >= 1);
    llms_scheduler_destroy(S);
}

/* A lone tenant still fills the whole token budget every step while its
 * prompts last: the sharing costs no throughput without contention. */
static void test_fair_prefill_lone_tenant(void **state) {
    (void)state;
    NEED_MODEL();
    enum { BATCH = 32, NA = 8, LA = 100 };
    llms_scheduler *S = make_fair_sched(0, BATCH, 64, 0, 1, 1);
    int32_t pa[LA];
    for (uint32_t i = 0; i < NA; i++) {
        fair_prompt(pa, LA, i);
        submit_tokens(S, pa, LA, 4, "A");
    }
    /* 800 prompt tokens: the first 24 steps have at least 32 to do. */
    for (int step = 0; step < NA * LA / BATCH - 1; step++) {
        assert_int_equal(llms_scheduler_step(S, NULL), LLMS_OK);
        llms_scheduler_stats st;
        llms_scheduler_stats_init(&st);
        assert_int_equal(llms_scheduler_get_stats(S, &st), LLMS_OK);
        assert_int_equal(st.last_batch_tokens, BATCH);
    }
    llms_scheduler_destroy(S);
}

/* Callback delivery with the worker thread. */
typedef struct cb_state {
    pthread_mutex_t mu;
    rec recs[8];
    int terms;
} cb_state;

static void on_event(void *user, const llms_event *ev) {
    cb_state *c = user;
    pthread_mutex_lock(&c->mu);
    rec *r = find_rec(c->recs, 8, ev->request_id);
    if (r) {
        if (ev->type == LLMS_EVENT_TOKEN) r->toks[r->ntok++] = ev->token;
        else { r->n_terminal++; r->reason = ev->finish_reason; c->terms++; }
        memcpy(r->text + r->len, ev->text_buf, ev->text_len);
        r->len += ev->text_len;
    }
    pthread_mutex_unlock(&c->mu);
}

static void test_worker_thread_callback(void **state) {
    (void)state;
    NEED_MODEL();
    cb_state *c = calloc(1, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    llms_scheduler_params p;
    llms_scheduler_params_init(&p);
    p.flags = LLMS_SCHEDULER_OWN_THREAD;
    p.event_fn = on_event;
    p.event_user = c;
    llms_scheduler *S;
    assert_int_equal(llms_scheduler_create(g_model, &p, &S), LLMS_OK);
    /* Ids are assigned in submission order from 1, so the records can be
     * keyed before the ids are returned (events may arrive first). */
    for (int i = 0; i < 8; i++) c->recs[i].id = (uint64_t)i + 1;
    for (int i = 0; i < 8; i++) assert_int_equal(submit(S, PROMPTS[i], 16, NULL, 0), (uint64_t)i + 1);
    for (int k = 0; k < 5000; k++) {
        pthread_mutex_lock(&c->mu);
        int t = c->terms;
        pthread_mutex_unlock(&c->mu);
        if (t == 8) break;
        usleep(2000);
    }
    llms_scheduler_destroy(S);
    assert_int_equal(c->terms, 8);
    for (int i = 0; i < 8; i++) {
        ref r;
        plain_generate(g_model, PROMPTS[i], 16, &r);
        assert_int_equal(c->recs[i].n_terminal, 1);
        c->recs[i].text[c->recs[i].len] = 0;
        assert_string_equal(c->recs[i].text, r.text);
    }
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* ---- allocation failure ---- */

typedef struct counting {
    long n_calls, fail_at, live;
    int failed;
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

/* Cache, scheduler, three requests to the end, with allocation number
 * `fail_after` (counted after the model load) failing. Returns the
 * allocations made after the load. */
static long sched_alloc_run(const char *path, long fail_after) {
    counting c = {0};
    llms_allocator al = {sizeof al, &c, c_malloc, c_realloc, c_free};
    llms_context_params cp;
    llms_context_params_init(&cp);
    cp.allocator = &al;
    cp.n_threads = 1;
    llms_context *ctx;
    llms_model *m;
    assert_int_equal(llms_context_create(&cp, &ctx), LLMS_OK);
    assert_int_equal(llms_model_load(ctx, path, NULL, &m), LLMS_OK);
    long base = c.n_calls;
    if (fail_after) c.fail_at = base + fail_after;
    llms_cache *C = NULL;
    llms_scheduler *S = NULL;
    llms_status st = llms_cache_create(m, NULL, &C);
    if (!st) {
        llms_scheduler_params p;
        llms_scheduler_params_init(&p);
        p.cache = C;
        p.max_batch_tokens = 16;
        st = llms_scheduler_create(m, &p, &S);
    }
    if (!st) {
        uint64_t ids[3] = {0};
        int accepted = 0, terms = 0;
        for (int i = 0; i < 3; i++) {
            llms_sampling_params sp;
            llms_sampling_params_init(&sp);
            sp.temperature = 0;
            sp.max_tokens = 4;
            llms_request_params rp;
            llms_request_params_init(&rp);
            rp.prompt = PROMPTS[i == 2 ? 3 : 1];
            rp.prompt_len = strlen(rp.prompt);
            rp.sampling = &sp;
            st = llms_scheduler_submit(S, &rp, &ids[i]);
            if (st == LLMS_OK) accepted++;
            else assert_int_equal(st, LLMS_ERR_NO_MEMORY);
        }
        char buf[512];
        for (int guard = 0; terms < accepted && guard < 1000; guard++) {
            llms_scheduler_step(S, NULL);
            llms_event ev;
            memset(&ev, 0, sizeof ev);
            ev.struct_size = sizeof ev;
            ev.text_buf = buf;
            ev.text_cap = sizeof buf;
            while (llms_scheduler_poll(S, &ev, 0) == LLMS_OK)
                if (ev.type != LLMS_EVENT_TOKEN) {
                    terms++;
                    if (ev.type == LLMS_EVENT_ERROR) assert_int_equal(ev.status, LLMS_ERR_NO_MEMORY);
                }
        }
        assert_int_equal(terms, accepted);  /* exactly one terminal event each, even so */
        size_t len;
        llms_scheduler_metrics_prometheus(S, buf, sizeof buf, &len);
    } else {
        assert_int_equal(st, LLMS_ERR_NO_MEMORY);
    }
    llms_scheduler_destroy(S);
    llms_cache_destroy(C);
    long used = c.n_calls - base;
    llms_model_destroy(m);
    llms_context_destroy(ctx);
    if (c.live != 0) fail_msg("failing allocation %ld leaked %ld blocks", fail_after, c.live);
    if (fail_after && !c.failed) return -1;
    return used;
}

static void test_allocation_failures(void **state) {
    (void)state;
    NEED_MODEL();
    const char *path = fixture_path("models/aidreams260K.gguf");
    long total = sched_alloc_run(path, 0);
    assert_true(total > 10);
    for (long n = 1; n <= total; n++) sched_alloc_run(path, n);
    printf("# scheduler: failed each of %ld allocations in turn: all clean\n", total);
}

/* ---- soak ---- */

/* Records are recycled: the consumer checks each request when its terminal
 * event arrives, so the soak can run for as long as CI asks. Checks run off
 * the main thread, so failures are counted there and asserted at the end. */
#define SOAK_SLOTS 256
typedef struct soak {
    llms_scheduler *S;
    pthread_mutex_t mu;
    rec *recs;                  /* SOAK_SLOTS; id 0 = free */
    ref (*refs)[49];            /* [prompt][max_tokens] plain-session references */
    int outstanding, stop;
    double until;
    uint64_t busy, accepted, cancels, finished, cancelled, bad;
    char bad_msg[256];
} soak;

static rec *soak_slot(soak *k, uint64_t id) {
    for (int i = 0; i < SOAK_SLOTS; i++)
        if (k->recs[i].id == id) return &k->recs[i];
    return NULL;
}

static void soak_bad(soak *k, const rec *r, const char *what) {
    if (!k->bad++)
        snprintf(k->bad_msg, sizeof k->bad_msg, "request %llu (prompt %d, max %d): %s", (unsigned long long)r->id,
                 r->prompt_idx, r->max_tokens, what);
}

/* The request ended: compare with the same request alone. Caller holds mu. */
static void soak_check(soak *k, rec *r) {
    const ref *full = &k->refs[r->prompt_idx][48];
    if (r->n_terminal != 1) soak_bad(k, r, "terminal events != 1");
    else if (r->type != LLMS_EVENT_FINISHED) soak_bad(k, r, "error event");
    else if (r->ntok > full->ntok || memcmp(r->toks, full->toks, r->ntok * sizeof(int32_t)))
        soak_bad(k, r, "tokens lost, duplicated or reordered");
    else if (r->reason == LLMS_FINISH_CANCELLED) {
        if (!r->cancelled_by_us) soak_bad(k, r, "cancelled by nobody");
        k->cancelled++;
    } else {
        const ref *want = &k->refs[r->prompt_idx][r->max_tokens];
        if (r->reason != want->reason || r->ntok != want->ntok || strcmp(r->text, want->text))
            soak_bad(k, r, "output differs from the request run alone");
        k->finished++;
    }
    memset(r, 0, sizeof *r);  /* free the slot */
    k->outstanding--;
}

static void *soak_submitter(void *arg) {
    soak *k = arg;
    unsigned seed = (unsigned)(uintptr_t)pthread_self();
    while (now_s() < k->until) {
        int pi = rand_r(&seed) % N_PROMPTS;
        int32_t mt = 1 + rand_r(&seed) % 48;
        llms_sampling_params sp;
        llms_sampling_params_init(&sp);
        sp.temperature = 0;
        sp.max_tokens = mt;
        llms_request_params rp;
        llms_request_params_init(&rp);
        rp.prompt = PROMPTS[pi];
        rp.prompt_len = strlen(PROMPTS[pi]);
        rp.flags = LLMS_REQUEST_MODEL_DEFAULTS;
        rp.sampling = &sp;
        rp.priority = rand_r(&seed) % 3;
        /* Hold the lock across submit so the record exists before events. */
        pthread_mutex_lock(&k->mu);
        rec *r = k->outstanding < 64 ? soak_slot(k, 0) : NULL;
        llms_status st = LLMS_ERR_BUSY;
        if (r) {
            uint64_t id;
            st = llms_scheduler_submit(k->S, &rp, &id);
            if (st == LLMS_OK) {
                r->id = id;
                r->prompt_idx = pi;
                r->max_tokens = mt;
                k->outstanding++;
                k->accepted++;
            } else {
                k->busy++;
            }
        }
        pthread_mutex_unlock(&k->mu);
        if (!r) usleep(1000);
        else if (st == LLMS_ERR_BUSY) usleep(200);
        else if (st != LLMS_OK) {
            pthread_mutex_lock(&k->mu);
            k->bad++;
            snprintf(k->bad_msg, sizeof k->bad_msg, "submit: %d", st);
            pthread_mutex_unlock(&k->mu);
        }
    }
    return NULL;
}

static void *soak_canceller(void *arg) {
    soak *k = arg;
    unsigned seed = 12345;
    while (now_s() < k->until) {
        usleep(2000 + rand_r(&seed) % 5000);
        pthread_mutex_lock(&k->mu);
        rec *r = &k->recs[rand_r(&seed) % SOAK_SLOTS];
        uint64_t id = r->id;
        /* Marked before cancelling: the terminal event may be checked
         * before this thread gets the lock back. */
        if (id) r->cancelled_by_us = 1;
        pthread_mutex_unlock(&k->mu);
        if (id && llms_scheduler_cancel(k->S, id) == LLMS_OK) {
            pthread_mutex_lock(&k->mu);
            k->cancels++;
            pthread_mutex_unlock(&k->mu);
        }
    }
    return NULL;
}

static void *soak_consumer(void *arg) {
    soak *k = arg;
    char buf[4096];
    for (;;) {
        llms_event ev;
        memset(&ev, 0, sizeof ev);
        ev.struct_size = sizeof ev;
        ev.text_buf = buf;
        ev.text_cap = sizeof buf;
        llms_status st = llms_scheduler_poll(k->S, &ev, 20);
        pthread_mutex_lock(&k->mu);
        if (st == LLMS_OK) {
            rec *r = soak_slot(k, ev.request_id);
            if (!r) {
                k->bad++;
                snprintf(k->bad_msg, sizeof k->bad_msg, "event for unknown request %llu",
                         (unsigned long long)ev.request_id);
            } else if (r->n_terminal) {
                soak_bad(k, r, "event after the terminal event");
            } else {
                if (ev.type == LLMS_EVENT_TOKEN) {
                    if (r->ntok < 256) r->toks[r->ntok++] = ev.token;
                } else {
                    r->n_terminal++;
                    r->type = ev.type;
                    r->reason = ev.finish_reason;
                }
                if (r->len + ev.text_len < sizeof r->text) {
                    memcpy(r->text + r->len, buf, ev.text_len);
                    r->len += ev.text_len;
                    r->text[r->len] = 0;
                }
                if (ev.type != LLMS_EVENT_TOKEN) soak_check(k, r);
            }
        }
        int stop = k->stop && k->outstanding == 0;
        pthread_mutex_unlock(&k->mu);
        if (stop) break;
    }
    return NULL;
}

static void test_soak(void **state) {
    (void)state;
    NEED_MODEL();
    double secs = getenv("LLMS_SOAK_SECONDS") ? atof(getenv("LLMS_SOAK_SECONDS")) : 20;
    soak *k = calloc(1, sizeof *k);
    k->recs = calloc(SOAK_SLOTS, sizeof *k->recs);
    k->refs = calloc(N_PROMPTS, sizeof *k->refs);
    pthread_mutex_init(&k->mu, NULL);
    for (size_t p = 0; p < N_PROMPTS; p++)
        for (int32_t mt = 1; mt <= 48; mt++) plain_generate(g_model, PROMPTS[p], mt, &k->refs[p][mt]);
    /* A small KV budget, so preemption happens too. */
    llms_scheduler *S0 = make_sched(0, 1ull << 40, NULL, 0);
    llms_scheduler_stats st;
    llms_scheduler_stats_init(&st);
    llms_scheduler_get_stats(S0, &st);
    uint64_t block = (1ull << 40) / ((uint64_t)st.kv_blocks_free + st.kv_blocks_used);
    llms_scheduler_destroy(S0);
    llms_cache *C;
    assert_int_equal(llms_cache_create(g_model, NULL, &C), LLMS_OK);
    llms_scheduler_params p;
    llms_scheduler_params_init(&p);
    p.flags = LLMS_SCHEDULER_OWN_THREAD | LLMS_SCHEDULER_DETERMINISTIC;
    p.queue_capacity = 48;
    p.max_running = 32;
    p.kv_budget_bytes = block * 48;
    p.cache = C;
    assert_int_equal(llms_scheduler_create(g_model, &p, &k->S), LLMS_OK);
    k->until = now_s() + secs;
    pthread_t sub[3], can, con;
    pthread_create(&con, NULL, soak_consumer, k);
    for (int i = 0; i < 3; i++) pthread_create(&sub[i], NULL, soak_submitter, k);
    pthread_create(&can, NULL, soak_canceller, k);
    for (int i = 0; i < 3; i++) pthread_join(sub[i], NULL);
    pthread_join(can, NULL);
    pthread_mutex_lock(&k->mu);
    k->stop = 1;
    pthread_mutex_unlock(&k->mu);
    pthread_join(con, NULL);
    llms_scheduler_get_stats(k->S, &st);
    llms_scheduler_destroy(k->S);
    printf("soak %.0f s: %llu requests (%llu finished, %llu cancelled), %llu BUSY, %llu tokens, %llu preemptions, "
           "%llu cached prompt tokens, %llu steps\n",
           secs, (unsigned long long)k->accepted, (unsigned long long)k->finished,
           (unsigned long long)k->cancelled, (unsigned long long)k->busy, (unsigned long long)st.generated_tokens,
           (unsigned long long)st.preemptions, (unsigned long long)st.cached_tokens, (unsigned long long)st.steps);
    if (k->bad) fail_msg("%llu bad requests; first: %s", (unsigned long long)k->bad, k->bad_msg);
    assert_int_equal(k->finished + k->cancelled, k->accepted);
    assert_int_equal(st.requests_submitted, k->accepted);
    assert_true(k->finished > 0);
    llms_cache_destroy(C);
    pthread_mutex_destroy(&k->mu);
    free(k->refs);
    free(k->recs);
    free(k);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params_and_errors),
        cmocka_unit_test(test_batched_matches_plain),
        cmocka_unit_test(test_stop_string),
        cmocka_unit_test(test_busy_when_full),
        cmocka_unit_test(test_cancel_and_deadline),
        cmocka_unit_test(test_deterministic_preemption),
        cmocka_unit_test(test_deterministic_packed),
        cmocka_unit_test(test_prefix_cache_tenants),
        cmocka_unit_test(test_prefix_cache_partial_blocks),
        cmocka_unit_test(test_cache_budget_and_pin),
        cmocka_unit_test(test_metrics_prometheus),
        cmocka_unit_test(test_tenant_limits),
        cmocka_unit_test(test_fair_share_and_priority),
        cmocka_unit_test(test_fair_prefill_latency),
        cmocka_unit_test(test_fair_prefill_weights),
        cmocka_unit_test(test_fair_prefill_no_credit),
        cmocka_unit_test(test_fair_prefill_unused_share),
        cmocka_unit_test(test_fair_prefill_lone_tenant),
        cmocka_unit_test(test_worker_thread_callback),
        cmocka_unit_test(test_allocation_failures),
        cmocka_unit_test(test_soak),
    };
    /* LLMS_TEST_FILTER=test_soak runs one test (cmocka's glob pattern). */
    if (getenv("LLMS_TEST_FILTER")) cmocka_set_test_filter(getenv("LLMS_TEST_FILTER"));
    return cmocka_run_group_tests(tests, setup, teardown);
}
