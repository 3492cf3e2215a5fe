/*
 * Core: the thread pool (every task exactly once, regions issued before the
 * workers have even started, many short regions in a row; claimed ranges
 * cover every unit once, in long then shrinking pieces, each thread from
 * its own part first, a slow thread's part finished by the others), the context's
 * parameters, and the log callback (silent by default, never sees prompt or
 * output text unless the host opts in).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmserve.h"
#include "core/threadpool.h"
#include "support/fixtures.h"

typedef struct count_job {
    atomic_int *hits;
} count_job;

static void count_task(void *arg, int64_t i, int64_t n) {
    (void)n;
    count_job *j = arg;
    atomic_fetch_add(&j->hits[i], 1);
}

static void test_pool_each_task_once(void **state) {
    (void)state;
    for (int threads = 1; threads <= 4; threads++) {
        /* Create and use at once, many times: workers may not have started. */
        for (int rep = 0; rep < 50; rep++) {
            threadpool *p;
            assert_int_equal(pool_create(&lalloc_libc, threads, &p), LLMS_OK);
            atomic_int hits[97];
            for (int i = 0; i < 97; i++) atomic_init(&hits[i], 0);
            count_job j = {hits};
            pool_run(p, 97, count_task, &j);
            for (int i = 0; i < 97; i++) assert_int_equal(atomic_load(&hits[i]), 1);
            pool_destroy(p);
        }
        /* Thousands of short regions back to back, as decode issues them. */
        threadpool *p;
        assert_int_equal(pool_create(&lalloc_libc, threads, &p), LLMS_OK);
        atomic_int hits[7];
        for (int r = 0; r < 5000; r++) {
            int n = 1 + r % 7;
            for (int i = 0; i < n; i++) atomic_init(&hits[i], 0);
            count_job j = {hits};
            pool_run(p, n, count_task, &j);
            for (int i = 0; i < n; i++) assert_int_equal(atomic_load(&hits[i]), 1);
        }
        pool_destroy(p);
    }
}

typedef struct range_job {
    atomic_int *hits;
    atomic_int n_ranges;
    atomic_llong largest;
    int64_t n, grain;
} range_job;

static void range_task(void *arg, int64_t b, int64_t e) {
    range_job *j = arg;
    assert_true(b >= 0 && b < e && e <= j->n);
    /* Only the range that ends the units may be under the grain. */
    assert_true(e - b >= j->grain || e == j->n);
    for (int64_t i = b; i < e; i++) atomic_fetch_add(&j->hits[i], 1);
    atomic_fetch_add(&j->n_ranges, 1);
    long long cur = atomic_load(&j->largest);
    while (e - b > cur && !atomic_compare_exchange_weak(&j->largest, &cur, e - b)) {}
}

/* pool_run_ranges (decode's matrix products): each unit exactly once, in
 * ranges of at least the grain, the first ones long (half a thread's part:
 * a quarter of the units with two threads) and the count small,
 * interleaved with pool_run regions. */
static void test_pool_ranges(void **state) {
    (void)state;
    enum { N = 1000 };
    static atomic_int hits[N];
    for (int threads = 1; threads <= 4; threads++) {
        threadpool *p;
        assert_int_equal(pool_create(&lalloc_libc, threads, &p), LLMS_OK);
        for (int rep = 0; rep < 300; rep++) {
            int64_t n = 1 + (rep * 37) % N, grain = 1 + rep % 9;
            for (int64_t i = 0; i < n; i++) atomic_init(&hits[i], 0);
            range_job j = {hits, 0, 0, n, grain};
            pool_run_ranges(p, n, grain, range_task, &j);
            for (int64_t i = 0; i < n; i++) assert_int_equal(atomic_load(&hits[i]), 1);
            int64_t first = n / (2 * threads) > grain ? n / (2 * threads) : (grain < n ? grain : n);
            assert_true(atomic_load(&j.largest) >= first);
            /* Geometric shrinking: far fewer claims than units. */
            if (n >= 500 && grain == 1) assert_true(atomic_load(&j.n_ranges) < 20 * threads + 40);
            atomic_int one[3];
            for (int i = 0; i < 3; i++) atomic_init(&one[i], 0);
            count_job cj = {one};
            pool_run(p, 3, count_task, &cj);
            for (int i = 0; i < 3; i++) assert_int_equal(atomic_load(&one[i]), 1);
        }
        pool_destroy(p);
    }
}

/* Who claimed what, for the test below: the caller's first claim is slow
 * (as a thread descheduled by a busy machine). */
typedef struct part_job {
    atomic_int *hits;
    pthread_t caller;
    atomic_int caller_claims;
    atomic_llong worker_first_begin, worker_first_end;
    atomic_int worker_in_caller_part;
    int64_t n;
} part_job;

static void part_task(void *arg, int64_t b, int64_t e) {
    part_job *j = arg;
    if (pthread_equal(pthread_self(), j->caller)) {
        if (atomic_fetch_add(&j->caller_claims, 1) == 0) {
            struct timespec ts = {0, 30 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    } else {
        long long none = -1;
        if (atomic_compare_exchange_strong(&j->worker_first_begin, &none, b)) atomic_store(&j->worker_first_end, e);
        if (b < j->n / 2) atomic_store(&j->worker_in_caller_part, 1);
    }
    for (int64_t i = b; i < e; i++) atomic_fetch_add(&j->hits[i], 1);
}

/* Two threads: the worker's first claim is the front half of its own part
 * (units n/2 .. 3n/4: each thread one forward stream), and while the
 * caller sleeps in its first claim the worker takes what the caller has
 * not claimed of the caller's part. Timing-dependent (the worker must run
 * within the caller's 30 ms), so a few tries; the coverage is checked on
 * every one. */
static void test_pool_ranges_parts(void **state) {
    (void)state;
    enum { N = 4000 };
    static atomic_int hits[N];
    threadpool *p;
    assert_int_equal(pool_create(&lalloc_libc, 2, &p), LLMS_OK);
    int seen = 0;
    for (int attempt = 0; attempt < 5 && !seen; attempt++) {
        for (int i = 0; i < N; i++) atomic_init(&hits[i], 0);
        part_job j;
        memset(&j, 0, sizeof j);
        j.hits = hits;
        j.caller = pthread_self();
        j.n = N;
        atomic_init(&j.worker_first_begin, -1);
        pool_run_ranges(p, N, 4, part_task, &j);
        for (int i = 0; i < N; i++) assert_int_equal(atomic_load(&hits[i]), 1);
        seen = atomic_load(&j.worker_first_begin) == N / 2 && atomic_load(&j.worker_first_end) == N / 2 + N / 4 &&
               atomic_load(&j.worker_in_caller_part);
    }
    assert_true(seen);
    pool_destroy(p);
}

static void test_context_params(void **state) {
    (void)state;
    llms_context *ctx = NULL;
    assert_int_equal(llms_context_create(NULL, &ctx), LLMS_OK);
    assert_int_equal(llms_context_backend(ctx), LLMS_BACKEND_CPU);
    assert_true(llms_context_n_threads(ctx) >= 1);
    llms_context_destroy(ctx);
    llms_context_params p;
    llms_context_params_init(&p);
    p.n_threads = -1;
    assert_int_equal(llms_context_create(&p, &ctx), LLMS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(llms_errmsg(), "n_threads"));
    llms_context_params_init(&p);
    p.backend = 7;
    assert_int_equal(llms_context_create(&p, &ctx), LLMS_ERR_INVALID_ARGUMENT);
    llms_allocator bad = {sizeof bad, NULL, NULL, NULL, NULL};
    llms_context_params_init(&p);
    p.allocator = &bad;
    assert_int_equal(llms_context_create(&p, &ctx), LLMS_ERR_INVALID_ARGUMENT);
    assert_int_equal(llms_context_create(NULL, NULL), LLMS_ERR_INVALID_ARGUMENT);
}

typedef struct log_capture {
    int n;
    int saw_prompt;
    char all[8192];
} log_capture;

static void capture(void *user, int32_t level, const char *msg) {
    log_capture *c = user;
    assert_true(level >= LLMS_LOG_ERROR && level <= LLMS_LOG_DEBUG);
    c->n++;
    if (strstr(msg, "zebra")) c->saw_prompt = 1;
    strncat(c->all, msg, sizeof c->all - strlen(c->all) - 2);
    strcat(c->all, "\n");
}

static void test_log_callback(void **state) {
    (void)state;
    const char *path = fixture_path("models/aidreams260K.gguf");
    if (!path) { fixture_missing("models/aidreams260K.gguf"); return; }
    log_capture c;
    memset(&c, 0, sizeof c);
    llms_context_params p;
    llms_context_params_init(&p);
    p.log_fn = capture;
    p.log_user = &c;
    p.log_level = LLMS_LOG_DEBUG;
    llms_context *ctx;
    assert_int_equal(llms_context_create(&p, &ctx), LLMS_OK);
    llms_model *m;
    assert_int_equal(llms_model_load(ctx, path, NULL, &m), LLMS_OK);
    llms_session *s;
    assert_int_equal(llms_session_create(m, NULL, &s), LLMS_OK);
    assert_int_equal(llms_session_feed_text(s, "The zebra", 9, LLMS_TOKENIZE_MODEL_DEFAULTS), LLMS_OK);
    llms_sampling_params sp;
    llms_sampling_params_init(&sp);
    sp.max_tokens = 5;
    assert_int_equal(llms_session_generate_begin(s, &sp), LLMS_OK);
    llms_step_result r;
    llms_step_result_init(&r);
    while (llms_session_step(s, &r) == LLMS_TOKEN) {}
    assert_true(c.n >= 1);                       /* the load was reported */
    assert_non_null(strstr(c.all, "loaded model"));
    assert_false(c.saw_prompt);                  /* but never the prompt */
    llms_session_destroy(s);
    llms_model_destroy(m);
    llms_context_destroy(ctx);

    /* At the default level (warnings) a normal run logs nothing. */
    memset(&c, 0, sizeof c);
    llms_context_params_init(&p);
    p.log_fn = capture;
    p.log_user = &c;
    assert_int_equal(llms_context_create(&p, &ctx), LLMS_OK);
    assert_int_equal(llms_model_load(ctx, path, NULL, &m), LLMS_OK);
    assert_int_equal(c.n, 0);
    llms_model_destroy(m);
    llms_context_destroy(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_each_task_once),
        cmocka_unit_test(test_pool_ranges),
        cmocka_unit_test(test_pool_ranges_parts),
        cmocka_unit_test(test_context_params),
        cmocka_unit_test(test_log_callback),
    };
    return cmocka_run_group_tests_name("core", tests, NULL, NULL);
}
