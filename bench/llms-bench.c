/*
 * llms-bench --model FILE [--threads N] [--prompt N] [--gen N] [--reps N]
 *            [--backend auto|cpu|vulkan] [--json]
 *            [--concurrency 1,4,16,32] [--shared-prefix N] [--overload X]
 *
 * Measures, in one run on one machine:
 *   - prompt processing: tokens/s for an N-token prompt in one feed;
 *   - generation: tokens/s for N greedy tokens after that prompt;
 *   - the bytes of weights read per generated token (every weight matrix
 *     once, plus one embedding row);
 *   - the machine's memory read bandwidth (a multi-threaded streaming sum
 *     over a buffer far larger than the caches),
 * and prints generation speed as a fraction of the bandwidth limit
 * (bandwidth / bytes per token). Speeds are the best of --reps runs. The
 * bandwidth is read between stretches of GEN_STRETCH generated tokens
 * (each step timed alone, a 128 MiB read after the stretch); a run's
 * fraction is the time its tokens would take at the bandwidth read around
 * each stretch over the time they took; the fraction printed is the
 * median over the runs, the bandwidth the median of the runs' readings.
 * Bandwidth on this shared machine swings between about 30 and 58 GB/s
 * within seconds, so a reading taken at another moment says little.
 *
 * With --concurrency and/or --shared-prefix it measures the scheduler
 * instead:
 *   - per concurrency level C: C requests (--prompt tokens each, distinct,
 *     --gen new tokens) submitted at once and served by continuous
 *     batching: aggregate generation tokens/s (generated tokens over the
 *     wall time from submission to the last token) and the time to first
 *     token percentiles;
 *   - --shared-prefix N: time to first token for an N-token prefix plus a
 *     4-token tail, cold, and then from other requests with the same
 *     prefix and another tail each, served from the prefix cache: tails
 *     of 16 tokens (the headline figure, the goal's worst case), 4 and 1
 *     (medians over three prefixes, five cached requests per tail each);
 *   - --overload X: a scheduler on its own thread with 4 running slots, a
 *     queue of 4 and a KV budget for those 8 requests' blocks; first the
 *     sustainable rate (requests/s with the slots full) and the latency of
 *     requests that find the slots free, then X times that rate offered for
 *     10 s: how many are rejected (LLMS_ERR_BUSY) and how long a rejected
 *     submit takes, the peak KV memory against the budget, and the latency
 *     of the accepted requests.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>

#include <cblas.h>

#include "../examples/common/cli.h"
#include "bwprobe.h"

/* Generated tokens between two bandwidth readings. Decode runs its tokens
 * back to back, and so does a host streaming them; a token right after a
 * reading starts with the 128 MiB read through the caches and the workers
 * asleep, which a streamed token never sees. Reading after every token
 * (as before) measured each token that way: side by side in one run,
 * tokens right after a reading against tokens right after another token
 * (tinyllama-1.1b at 512-672 positions, 2 threads, medians of 53 each, 4
 * runs a type): F16 89.7 / 88.8 / 93.1 / 85.3% of the limit against 92.2
 * / 90.2 / 94.8 / 85.8%, Q4_0 92.0 / 83.5 / 92.5 / 78.9% against 92.0 /
 * 85.5 / 93.0 / 86.1%. Now one token in GEN_STRETCH follows a reading,
 * and the readings (4 ms each) stay close enough to follow the drift. */
#define GEN_STRETCH 8

/* Per token, from the model's tensor table: the weight bytes a generated
 * token reads (every tensor, but one row of the token embedding table
 * unless the output reuses it, tied) and the multiply-adds a prompt token
 * costs in weight matrices (every 2-D tensor but an untied embedding
 * table, a lookup). */
typedef struct weight_totals {
    double bytes_per_token, macs_per_token;
} weight_totals;

static weight_totals model_totals(const llms_model *m) {
    llms_model_info info;
    llms_model_info_init(&info);
    llms_model_get_info(m, &info);
    weight_totals w = {0, 0};
    int tied = 1;
    llms_tensor_info t;
    for (uint32_t i = 0; i < info.n_tensors; i++) {
        llms_tensor_info_init(&t);
        llms_model_tensor(m, i, &t);
        if (!strcmp(t.name, "output.weight")) tied = 0;
    }
    for (uint32_t i = 0; i < info.n_tensors; i++) {
        llms_tensor_info_init(&t);
        llms_model_tensor(m, i, &t);
        int lookup = !strcmp(t.name, "token_embd.weight") && !tied;
        w.bytes_per_token += lookup ? (double)t.n_bytes / (double)t.dims[1] : (double)t.n_bytes;
        if (t.n_dims == 2 && !lookup) w.macs_per_token += (double)t.dims[0] * (double)t.dims[1];
    }
    return w;
}

static void usage(const char *p) {
    fprintf(stderr, "usage: %s --model FILE [--threads N] [--prompt N] [--gen N] [--reps N] "
                    "[--backend auto|cpu|vulkan] [--json] [--concurrency 1,4,16,32] [--shared-prefix N]\n"
                    "       [--overload X]\n", p);
    exit(2);
}

/* GFLOP/s of OpenBLAS sgemm (the library's own BLAS, with the thread
 * count the library gave it) on a prompt-shaped product: n_tok x 2048
 * activations times a 2048 x 2048 weight matrix, best of 3. Float weights
 * (F16, F32) are multiplied this way at prefill on CPUs without AVX-512;
 * with it the library uses its own kernel (src/backend/cpu/fgemm.h),
 * which this figure does not bound: OpenBLAS's speed depends on the
 * kernels it picks for the CPU (printed beside it; OPENBLAS_CORETYPE
 * overrides them). */
char *openblas_get_corename(void);
static double sgemm_gflops(long n_tok) {
    const int M = n_tok < 64 ? 64 : (int)n_tok, K = 2048, N = 2048;
    float *x = malloc((size_t)M * K * sizeof(float)), *w = malloc((size_t)N * K * sizeof(float)),
          *y = malloc((size_t)M * N * sizeof(float));
    double best = 0;
    if (x && w && y) {
        for (size_t i = 0; i < (size_t)M * K; i++) x[i] = (float)(i % 7) * 0.25f;
        for (size_t i = 0; i < (size_t)N * K; i++) w[i] = (float)(i % 5) * 0.125f;
        for (int r = 0; r < 4; r++) {
            double t0 = now_s();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, K, w, K, 0.0f, y, N);
            double g = 2.0 * M * N * K / (now_s() - t0) / 1e9;
            if (r > 0 && g > best) best = g;  /* the first warms up the threads */
        }
    }
    free(x);
    free(w);
    free(y);
    return best;
}

/* ---- scheduler benchmarks ---- */

static double pct(const double *sorted, int n, double p) {
    if (n == 0) return 0;
    int i = (int)(p * (n - 1) + 0.5);
    return sorted[i];
}

static void fill_prompt(int32_t *t, long n, uint64_t seed, int32_t V, int32_t bos) {
    uint64_t x = seed;
    for (long i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        t[i] = (int32_t)((x >> 33) % (uint64_t)V);
    }
    if (bos >= 0 && n) t[0] = bos;
}

typedef struct conc_result {
    int level;
    double gen_tok_s, total_tok_s, wall_s, ttft_p50, ttft_p90, ttft_p99;
    long tokens;
} conc_result;

/* Submit `c` requests and step until all end; TTFT per request. */
static int run_level(llms_model *m, int c, long n_prompt, long n_gen, conc_result *out) {
    int32_t V = llms_model_n_vocab(m), bos = llms_model_special_token(m, LLMS_SPECIAL_BOS);
    llms_scheduler_params p;
    llms_scheduler_params_init(&p);
    p.max_running = (uint32_t)c;
    p.queue_capacity = (uint32_t)c;
    p.max_batch_tokens = 512;
    p.n_ctx = (uint32_t)(n_prompt + n_gen + 1);
    llms_scheduler *S;
    if (llms_scheduler_create(m, &p, &S)) return -1;
    int32_t *prompt = malloc((size_t)n_prompt * sizeof *prompt);
    double *ttft = calloc((size_t)c, sizeof *ttft);
    uint64_t *ids = calloc((size_t)c, sizeof *ids);
    llms_sampling_params smp;
    llms_sampling_params_init(&smp);
    smp.temperature = 0;
    smp.max_tokens = (int32_t)n_gen;
    smp.flags = LLMS_SAMPLE_IGNORE_EOG;
    double t0 = now_s();
    for (int i = 0; i < c; i++) {
        fill_prompt(prompt, n_prompt, 1000 + (uint64_t)i, V, bos);
        llms_request_params rp;
        llms_request_params_init(&rp);
        rp.tokens = prompt;
        rp.n_tokens = (size_t)n_prompt;
        rp.sampling = &smp;
        if (llms_scheduler_submit(S, &rp, &ids[i])) return -1;
    }
    int done = 0, firsts = 0;
    long tokens = 0, tokens_at_all_first = 0;
    double t_all_first = 0;
    char buf[4096];
    while (done < c) {
        if (llms_scheduler_step(S, NULL) < 0) return -1;
        llms_event ev;
        memset(&ev, 0, sizeof ev);
        ev.struct_size = sizeof ev;
        ev.text_buf = buf;
        ev.text_cap = sizeof buf;
        while (llms_scheduler_poll(S, &ev, 0) == LLMS_OK) {
            int i = (int)(ev.request_id - ids[0]);
            if (ev.type == LLMS_EVENT_TOKEN) {
                tokens++;
                if (ttft[i] == 0) {
                    ttft[i] = now_s() - t0;
                    if (++firsts == c) {
                        t_all_first = now_s();
                        tokens_at_all_first = tokens;
                    }
                }
            } else {
                done++;
            }
        }
    }
    double wall = now_s() - t0;
    qsort(ttft, (size_t)c, sizeof *ttft, cmp_double);
    out->level = c;
    out->tokens = tokens;
    out->wall_s = wall;
    /* Generation speed as llama.cpp's batched bench counts it: the decode
     * phase, once every prompt is in; total_tok_s includes the prefill. */
    double t_end = t0 + wall;
    out->gen_tok_s = t_end > t_all_first && tokens > tokens_at_all_first
                         ? (tokens - tokens_at_all_first) / (t_end - t_all_first) : 0;
    out->total_tok_s = tokens / wall;
    out->ttft_p50 = pct(ttft, c, 0.5);
    out->ttft_p90 = pct(ttft, c, 0.9);
    out->ttft_p99 = pct(ttft, c, 0.99);
    llms_scheduler_destroy(S);
    free(prompt);
    free(ttft);
    free(ids);
    return 0;
}

/* TTFT of one request with `prompt` through S. */
static double ttft_one(llms_scheduler *S, const int32_t *prompt, long n, uint32_t *cached) {
    llms_sampling_params smp;
    llms_sampling_params_init(&smp);
    smp.temperature = 0;
    smp.max_tokens = 1;
    smp.flags = LLMS_SAMPLE_IGNORE_EOG;
    llms_request_params rp;
    llms_request_params_init(&rp);
    rp.tokens = prompt;
    rp.n_tokens = (size_t)n;
    rp.sampling = &smp;
    uint64_t id;
    double t0 = now_s(), t = -1;
    if (llms_scheduler_submit(S, &rp, &id)) return -1;
    char buf[4096];
    for (;;) {
        if (llms_scheduler_step(S, NULL) < 0) return -1;
        llms_event ev;
        memset(&ev, 0, sizeof ev);
        ev.struct_size = sizeof ev;
        ev.text_buf = buf;
        ev.text_cap = sizeof buf;
        while (llms_scheduler_poll(S, &ev, 0) == LLMS_OK) {
            if (ev.type == LLMS_EVENT_TOKEN && t < 0) t = now_s() - t0;
            if (ev.type != LLMS_EVENT_TOKEN) {
                *cached = ev.cached_tokens;
                return t;
            }
        }
    }
}

/* Tails of the cached requests: the goal's worst case (16) and shorter. */
enum { N_TAILS = 3 };
static const int k_tails[N_TAILS] = {16, 4, 1};

typedef struct prefix_result {
    long prefix;
    double cold_s, cached_s;         /* cached_s: the 16-token tail */
    double cached_tail_s[N_TAILS];   /* by k_tails */
    uint32_t cached_tokens;
} prefix_result;

static int run_shared_prefix(llms_model *m, long n_prefix, prefix_result *out) {
    int32_t V = llms_model_n_vocab(m), bos = llms_model_special_token(m, LLMS_SPECIAL_BOS);
    llms_cache *C;
    if (llms_cache_create(m, NULL, &C)) return -1;
    llms_scheduler_params p;
    llms_scheduler_params_init(&p);
    p.cache = C;
    p.max_batch_tokens = 512;
    p.n_ctx = (uint32_t)(n_prefix + 32);
    llms_scheduler *S;
    if (llms_scheduler_create(m, &p, &S)) return -1;
    int32_t *a = malloc((size_t)(n_prefix + 16) * sizeof *a);
    out->prefix = n_prefix;
    /* Three rounds, each with its own prefix: the cold request (prefix and
     * a 4-token tail), then for each tail length five other requests with
     * the same prefix and another tail each, served from the prefix cache.
     * Medians of the 3 cold and 15 cached times per tail: single requests
     * are at the mercy of this shared machine's noise. */
    enum { ROUNDS = 3, CACHED = 5 };
    double cold[ROUNDS], cached[N_TAILS][ROUNDS * CACHED];
    uint64_t x = 99;
    int ok = 1;
    for (int r = 0; r < ROUNDS && ok; r++) {
        fill_prompt(a, n_prefix + 16, 777 + (uint64_t)r, V, bos);
        uint32_t n_cached = 0;
        cold[r] = ttft_one(S, a, n_prefix + 4, &n_cached);
        ok = cold[r] >= 0;
        for (int ti = 0; ti < N_TAILS && ok; ti++)
            for (int k = 0; k < CACHED && ok; k++) {
                for (long i = n_prefix; i < n_prefix + k_tails[ti]; i++) {
                    x = x * 6364136223846793005ull + 1442695040888963407ull;
                    a[i] = (int32_t)((x >> 33) % (uint64_t)V);
                }
                uint32_t got = 0;
                cached[ti][r * CACHED + k] = ttft_one(S, a, n_prefix + k_tails[ti], &got);
                if (ti == 0) out->cached_tokens = got;
                ok = cached[ti][r * CACHED + k] >= 0;
            }
    }
    if (ok) {
        qsort(cold, ROUNDS, sizeof *cold, cmp_double);
        out->cold_s = cold[ROUNDS / 2];
        for (int ti = 0; ti < N_TAILS; ti++) {
            qsort(cached[ti], ROUNDS * CACHED, sizeof cached[ti][0], cmp_double);
            out->cached_tail_s[ti] = cached[ti][ROUNDS * CACHED / 2];
        }
        out->cached_s = out->cached_tail_s[0];
    }
    llms_scheduler_destroy(S);
    llms_cache_destroy(C);
    free(a);
    return ok ? 0 : -1;
}

/* ---- overload ---- */

typedef struct overload_result {
    double offered_rate, sustainable_rate;
    long offered, accepted, rejected, failed;
    double reject_p99_us, reject_max_us;
    double base_ttft_p50, base_e2e_p50, ttft_p50, ttft_p99, e2e_p50, e2e_p99;
    uint64_t peak_kv_bytes, budget_bytes;
} overload_result;

typedef struct ov_req {
    double t_submit, t_first, t_end;
} ov_req;

/* Submits one request; its id, or 0 with *st set. */
static uint64_t ov_submit(llms_scheduler *S, const int32_t *prompt, long n_prompt, long n_gen, llms_status *st) {
    llms_sampling_params smp;
    llms_sampling_params_init(&smp);
    smp.temperature = 0;
    smp.max_tokens = (int32_t)n_gen;
    smp.flags = LLMS_SAMPLE_IGNORE_EOG;
    llms_request_params rp;
    llms_request_params_init(&rp);
    rp.tokens = prompt;
    rp.n_tokens = (size_t)n_prompt;
    rp.sampling = &smp;
    uint64_t id = 0;
    *st = llms_scheduler_submit(S, &rp, &id);
    return *st == LLMS_OK ? id : 0;
}

/* Drains events into reqs (indexed by id - 1); returns terminal events seen. */
static int ov_drain(llms_scheduler *S, ov_req *reqs, long n_reqs, int32_t timeout_ms, long *failed) {
    int ended = 0;
    char buf[4096];
    llms_event ev;
    memset(&ev, 0, sizeof ev);
    ev.struct_size = sizeof ev;
    ev.text_buf = buf;
    ev.text_cap = sizeof buf;
    while (llms_scheduler_poll(S, &ev, timeout_ms) == LLMS_OK) {
        timeout_ms = 0;
        long i = (long)ev.request_id - 1;
        if (i < 0 || i >= n_reqs) continue;
        if (ev.type == LLMS_EVENT_TOKEN) {
            if (reqs[i].t_first == 0) reqs[i].t_first = now_s();
        } else {
            reqs[i].t_end = now_s();
            if (ev.type != LLMS_EVENT_FINISHED) (*failed)++;
            ended++;
        }
    }
    return ended;
}

static uint64_t ov_kv_bytes(llms_scheduler *S, uint64_t block) {
    llms_scheduler_stats st;
    llms_scheduler_stats_init(&st);
    llms_scheduler_get_stats(S, &st);
    return (uint64_t)st.kv_blocks_used * block;
}

static int run_overload(llms_model *m, double factor, long n_prompt, long n_gen, overload_result *out) {
    enum { RUNNING = 4, QUEUE = 4, MAX_REQS = 100000 };
    const double offer_s = 10.0;
    int32_t V = llms_model_n_vocab(m), bos = llms_model_special_token(m, LLMS_SPECIAL_BOS);
    llms_scheduler_params p;
    llms_scheduler_params_init(&p);
    p.max_running = RUNNING;
    p.queue_capacity = QUEUE;
    p.max_batch_tokens = 512;
    p.n_ctx = (uint32_t)(n_prompt + n_gen + 1);
    /* One KV block's bytes: an unlimited pool reports budget / blocks. */
    p.kv_budget_bytes = 1ull << 40;
    llms_scheduler *S;
    if (llms_scheduler_create(m, &p, &S)) return -1;
    llms_scheduler_stats st;
    llms_scheduler_stats_init(&st);
    llms_scheduler_get_stats(S, &st);
    const uint64_t block = (1ull << 40) / ((uint64_t)st.kv_blocks_free + st.kv_blocks_used);
    llms_scheduler_destroy(S);
    const uint64_t per_req = (uint64_t)((n_prompt + n_gen + 15) / 16 + 1);
    p.kv_budget_bytes = per_req * (RUNNING + QUEUE) * block;
    p.flags = LLMS_SCHEDULER_OWN_THREAD;
    if (llms_scheduler_create(m, &p, &S)) return -1;
    int32_t *prompt = malloc((size_t)n_prompt * sizeof *prompt);
    ov_req *reqs = calloc(MAX_REQS, sizeof *reqs);
    double *lat = calloc(MAX_REQS, sizeof *lat), *lat2 = calloc(MAX_REQS, sizeof *lat2);
    double *rej = calloc(MAX_REQS, sizeof *rej);
    if (!prompt || !reqs || !lat || !lat2 || !rej) return -1;
    long n_ids = 0, failed = 0;
    llms_status sst;

    /* 1. Sustainable rate and unloaded latency: waves of RUNNING requests. */
    long base_n = 0;
    double t0 = now_s();
    for (int wave = 0; wave < 3; wave++) {
        for (int i = 0; i < RUNNING; i++) {
            fill_prompt(prompt, n_prompt, 5000 + (uint64_t)n_ids, V, bos);
            double ts = now_s();
            uint64_t id = ov_submit(S, prompt, n_prompt, n_gen, &sst);
            if (!id || (long)id != n_ids + 1) return -1;
            reqs[n_ids++].t_submit = ts;
        }
        for (int ended = 0; ended < RUNNING;) ended += ov_drain(S, reqs, MAX_REQS, 100, &failed);
    }
    const double base_wall = now_s() - t0;
    for (long i = 0; i < n_ids; i++) {
        lat[base_n] = reqs[i].t_first - reqs[i].t_submit;
        lat2[base_n++] = reqs[i].t_end - reqs[i].t_submit;
    }
    qsort(lat, (size_t)base_n, sizeof *lat, cmp_double);
    qsort(lat2, (size_t)base_n, sizeof *lat2, cmp_double);
    out->base_ttft_p50 = pct(lat, (int)base_n, 0.5);
    out->base_e2e_p50 = pct(lat2, (int)base_n, 0.5);
    out->sustainable_rate = (double)n_ids / base_wall;
    out->offered_rate = factor * out->sustainable_rate;
    out->budget_bytes = p.kv_budget_bytes;

    /* 2. factor x that rate for offer_s seconds. */
    const long first = n_ids;
    long n_rej = 0, outstanding = 0;
    const double interval = 1.0 / out->offered_rate;
    double next = now_s(), end = next + offer_s;
    uint64_t peak = 0;
    while (now_s() < end || outstanding > 0) {
        double now = now_s();
        if (now < end && now >= next && n_ids < MAX_REQS - 1) {
            next += interval;
            fill_prompt(prompt, n_prompt, 5000 + (uint64_t)(n_ids + n_rej), V, bos);
            double ts = now_s();
            uint64_t id = ov_submit(S, prompt, n_prompt, n_gen, &sst);
            double dt = now_s() - ts;
            out->offered++;
            if (id) {
                if ((long)id != n_ids + 1) return -1;
                reqs[n_ids++].t_submit = ts;
                outstanding++;
            } else if (sst == LLMS_ERR_BUSY) {
                if (n_rej < MAX_REQS) rej[n_rej++] = dt;
            } else {
                return -1;
            }
            continue;
        }
        uint64_t kvb = ov_kv_bytes(S, block);
        if (kvb > peak) peak = kvb;
        double wait = now < end ? next - now : 0.05;
        outstanding -= ov_drain(S, reqs, MAX_REQS, wait > 0 ? (int32_t)(wait * 1000) : 0, &failed);
    }
    long n_acc = n_ids - first;
    for (long i = 0; i < n_acc; i++) {
        lat[i] = reqs[first + i].t_first - reqs[first + i].t_submit;
        lat2[i] = reqs[first + i].t_end - reqs[first + i].t_submit;
    }
    qsort(lat, (size_t)n_acc, sizeof *lat, cmp_double);
    qsort(lat2, (size_t)n_acc, sizeof *lat2, cmp_double);
    qsort(rej, (size_t)n_rej, sizeof *rej, cmp_double);
    out->accepted = n_acc;
    out->rejected = n_rej;
    out->failed = failed;
    out->ttft_p50 = pct(lat, (int)n_acc, 0.5);
    out->ttft_p99 = pct(lat, (int)n_acc, 0.99);
    out->e2e_p50 = pct(lat2, (int)n_acc, 0.5);
    out->e2e_p99 = pct(lat2, (int)n_acc, 0.99);
    out->reject_p99_us = n_rej ? pct(rej, (int)n_rej, 0.99) * 1e6 : 0;
    out->reject_max_us = n_rej ? rej[n_rej - 1] * 1e6 : 0;
    out->peak_kv_bytes = peak;
    llms_scheduler_destroy(S);
    free(prompt);
    free(reqs);
    free(lat);
    free(lat2);
    free(rej);
    return 0;
}

static int sched_bench(const char *prog, const char *path, llms_context *ctx, llms_model *m, const char *levels,
                       long n_prompt, long n_gen, long n_prefix, double overload, int json) {
    conc_result res[32];
    int n_res = 0;
    if (levels) {
        char *copy = strdup(levels), *save = NULL;
        for (char *tok = strtok_r(copy, ",", &save); tok && n_res < 32; tok = strtok_r(NULL, ",", &save)) {
            long c;
            if (!cli_long(tok, 1, 4096, &c)) { free(copy); usage(prog); }
            if (run_level(m, (int)c, n_prompt, n_gen, &res[n_res])) {
                fprintf(stderr, "%s: concurrency %ld failed: %s\n", prog, c, llms_errmsg());
                free(copy);
                return 1;
            }
            n_res++;
        }
        free(copy);
    }
    prefix_result pr = {0};
    if (n_prefix > 0 && run_shared_prefix(m, n_prefix, &pr)) {
        fprintf(stderr, "%s: shared prefix failed: %s\n", prog, llms_errmsg());
        return 1;
    }
    overload_result ov;
    memset(&ov, 0, sizeof ov);
    if (overload > 0 && run_overload(m, overload, n_prompt, n_gen, &ov)) {
        fprintf(stderr, "%s: overload run failed: %s\n", prog, llms_errmsg());
        return 1;
    }
    int threads = llms_context_n_threads(ctx);
    if (json) {
        printf("{\"model\": \"%s\", \"threads\": %d, \"prompt_tokens\": %ld, \"gen_tokens\": %ld", path, threads,
               n_prompt, n_gen);
        if (levels) {
            printf(", \"concurrency\": [");
            for (int i = 0; i < n_res; i++)
                printf("%s{\"level\": %d, \"gen_tok_s\": %.2f, \"total_gen_tok_s\": %.2f, \"tokens\": %ld, "
                       "\"wall_s\": %.3f, \"ttft_p50_s\": %.4f, \"ttft_p90_s\": %.4f, \"ttft_p99_s\": %.4f}",
                       i ? ", " : "", res[i].level, res[i].gen_tok_s, res[i].total_tok_s, res[i].tokens, res[i].wall_s,
                       res[i].ttft_p50, res[i].ttft_p90, res[i].ttft_p99);
            printf("]");
        }
        if (n_prefix > 0)
        {
            printf(", \"shared_prefix\": {\"prefix_tokens\": %ld, \"ttft_cold_s\": %.4f, \"ttft_cached_s\": %.4f, "
                   "\"cached_tokens\": %u, \"speedup\": %.1f, \"by_tail\": [",
                   pr.prefix, pr.cold_s, pr.cached_s, pr.cached_tokens, pr.cold_s / pr.cached_s);
            for (int ti = 0; ti < N_TAILS; ti++)
                printf("%s{\"tail_tokens\": %d, \"ttft_cached_s\": %.4f, \"speedup\": %.1f}", ti ? ", " : "",
                       k_tails[ti], pr.cached_tail_s[ti], pr.cold_s / pr.cached_tail_s[ti]);
            printf("]}");
        }
        if (overload > 0)
            printf(", \"overload\": {\"factor\": %.1f, \"sustainable_req_s\": %.3f, \"offered_req_s\": %.3f, "
                   "\"offered\": %ld, \"accepted\": %ld, \"rejected\": %ld, \"failed\": %ld, "
                   "\"reject_p99_us\": %.1f, \"reject_max_us\": %.1f, \"peak_kv_bytes\": %llu, "
                   "\"kv_budget_bytes\": %llu, \"baseline_ttft_p50_s\": %.4f, \"baseline_e2e_p50_s\": %.4f, "
                   "\"ttft_p50_s\": %.4f, \"ttft_p99_s\": %.4f, \"e2e_p50_s\": %.4f, \"e2e_p99_s\": %.4f}",
                   overload, ov.sustainable_rate, ov.offered_rate, ov.offered, ov.accepted, ov.rejected, ov.failed,
                   ov.reject_p99_us, ov.reject_max_us, (unsigned long long)ov.peak_kv_bytes,
                   (unsigned long long)ov.budget_bytes, ov.base_ttft_p50, ov.base_e2e_p50, ov.ttft_p50, ov.ttft_p99,
                   ov.e2e_p50, ov.e2e_p99);
        printf("}\n");
    } else {
        printf("model %s, %d threads; prompt %ld, gen %ld per request\n", path, threads, n_prompt, n_gen);
        for (int i = 0; i < n_res; i++)
            printf("concurrency %3d: %8.2f gen tok/s aggregate in the decode phase, %.2f over the whole run "
                   "(%ld tokens in %.2f s); TTFT p50 %.3f s, p90 %.3f s, p99 %.3f s\n",
                   res[i].level, res[i].gen_tok_s, res[i].total_tok_s, res[i].tokens, res[i].wall_s, res[i].ttft_p50,
                   res[i].ttft_p90, res[i].ttft_p99);
        if (n_prefix > 0) {
            printf("shared prefix %ld tokens: TTFT cold %.4f s, cached %.4f s (%u tokens from the cache), "
                   "%.1fx (medians, 16-token tail)\n", pr.prefix, pr.cold_s, pr.cached_s, pr.cached_tokens,
                   pr.cold_s / pr.cached_s);
            for (int ti = 0; ti < N_TAILS; ti++)
                printf("  cached with a %2d-token tail: %.4f s, %.1fx\n", k_tails[ti], pr.cached_tail_s[ti],
                       pr.cold_s / pr.cached_tail_s[ti]);
        }
        if (overload > 0) {
            printf("overload %.1fx: sustainable %.2f req/s, offered %.2f req/s for 10 s: %ld offered, %ld accepted, "
                   "%ld rejected (BUSY in p99 %.1f us, max %.1f us), %ld failed\n",
                   overload, ov.sustainable_rate, ov.offered_rate, ov.offered, ov.accepted, ov.rejected,
                   ov.reject_p99_us, ov.reject_max_us, ov.failed);
            printf("  KV peak %.2f MB of a %.2f MB budget; accepted: TTFT p50 %.3f s p99 %.3f s, end-to-end p50 "
                   "%.3f s p99 %.3f s (unloaded: TTFT p50 %.3f s, end-to-end p50 %.3f s)\n",
                   ov.peak_kv_bytes / 1e6, ov.budget_bytes / 1e6, ov.ttft_p50, ov.ttft_p99, ov.e2e_p50, ov.e2e_p99,
                   ov.base_ttft_p50, ov.base_e2e_p50);
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *path = NULL;
    long n_prompt = 512, n_gen = 64, reps = 2;
    int json = 0;
    const char *levels = NULL;
    long n_prefix = 0;
    double overload = 0;
    llms_context_params cp;
    llms_context_params_init(&cp);
    for (int i = 1; i < argc; i++) {
        const char *v;
        long l;
        if ((v = cli_opt(argc, argv, &i, "--model"))) path = v;
        else if ((v = cli_opt(argc, argv, &i, "--threads"))) {
            if (!cli_long(v, 0, 1024, &l)) usage(argv[0]);
            cp.n_threads = (int32_t)l;
        } else if ((v = cli_opt(argc, argv, &i, "--prompt"))) { if (!cli_long(v, 1, 1 << 20, &n_prompt)) usage(argv[0]); }
        else if ((v = cli_opt(argc, argv, &i, "--gen"))) { if (!cli_long(v, 1, 1 << 20, &n_gen)) usage(argv[0]); }
        else if ((v = cli_opt(argc, argv, &i, "--reps"))) { if (!cli_long(v, 1, 100, &reps)) usage(argv[0]); }
        else if ((v = cli_opt(argc, argv, &i, "--backend"))) { if ((cp.backend = cli_backend(v)) < 0) usage(argv[0]); }
        else if ((v = cli_opt(argc, argv, &i, "--concurrency"))) levels = v;
        else if ((v = cli_opt(argc, argv, &i, "--shared-prefix"))) { if (!cli_long(v, 1, 1 << 20, &n_prefix)) usage(argv[0]); }
        else if ((v = cli_opt(argc, argv, &i, "--overload"))) {
            char *e;
            overload = strtod(v, &e);
            if (*e || !(overload >= 1 && overload <= 100)) usage(argv[0]);
        } else if (!strcmp(argv[i], "--json")) json = 1;
        else usage(argv[0]);
    }
    if (!path) usage(argv[0]);

    llms_context *ctx = NULL;
    llms_model *m = NULL;
    llms_status st;
    if ((st = llms_context_create(&cp, &ctx))) { cli_report(argv[0], "context", st); return 1; }
    if ((st = llms_model_load(ctx, path, NULL, &m))) { cli_report(argv[0], path, st); llms_context_destroy(ctx); return 1; }
    if (levels || n_prefix || overload > 0) {
        int rc = sched_bench(argv[0], path, ctx, m, levels, n_prompt, n_gen, n_prefix, overload, json);
        llms_model_destroy(m);
        llms_context_destroy(ctx);
        return rc;
    }
    int threads = llms_context_n_threads(ctx);
    int32_t V = llms_model_n_vocab(m);
    int32_t *prompt = malloc((size_t)n_prompt * sizeof *prompt);
    /* Arbitrary ids, fixed so runs compare; BOS first as real prompts have. */
    uint64_t x = 12345;
    for (long i = 0; i < n_prompt; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        prompt[i] = (int32_t)((x >> 33) % (uint64_t)V);
    }
    int32_t bos = llms_model_special_token(m, LLMS_SPECIAL_BOS);
    if (bos >= 0) prompt[0] = bos;

    llms_session_params sp;
    llms_session_params_init(&sp);
    sp.n_ctx = (uint32_t)(n_prompt + n_gen + 1);
    const weight_totals totals = model_totals(m);
    const double bpt = totals.bytes_per_token;
    bw_probe probe;
    if (!bw_probe_init(&probe, threads)) { fprintf(stderr, "%s: no memory for the bandwidth probe\n", argv[0]); return 1; }
    double best_pp = 0, best_tg = 0, *rep_bw = calloc((size_t)reps, sizeof(double)),
           *rep_frac = calloc((size_t)reps, sizeof(double)), *slice_bw = calloc((size_t)n_gen + 1, sizeof(double)),
           *rep_tok_frac = calloc((size_t)reps, sizeof(double)), *tok_frac = calloc((size_t)n_gen + 1, sizeof(double)),
           *tok_time = calloc((size_t)n_gen + 1, sizeof(double));
    if (!rep_bw || !rep_frac || !slice_bw || !rep_tok_frac || !tok_frac || !tok_time) { fprintf(stderr, "%s: out of memory\n", argv[0]); return 1; }
    for (long r = 0; r < reps; r++) {
        llms_session *s;
        if ((st = llms_session_create(m, &sp, &s))) { cli_report(argv[0], "session", st); return 1; }
        double t0 = now_s();
        if ((st = llms_session_feed_tokens(s, prompt, (size_t)n_prompt))) { cli_report(argv[0], "prompt", st); return 1; }
        double t1 = now_s();
        llms_sampling_params smp;
        llms_sampling_params_init(&smp);
        smp.temperature = 0;
        smp.max_tokens = (int32_t)n_gen;
        smp.flags = LLMS_SAMPLE_IGNORE_EOG;
        llms_session_generate_begin(s, &smp);
        llms_step_result res;
        llms_step_result_init(&res);
        long got = 0;
        /* The first step only samples (its token is evaluated by the next
         * step), so only the later steps are timed: n_gen - 1 forward passes.
         * Before them and after each stretch of GEN_STRETCH the probe reads
         * a slice, and each stretch is set against the mean of the readings
         * before and after it: the time its tokens' bytes take at that
         * bandwidth. The run's fraction is the sum of those times over the
         * run's time, every token counted; each token's own fraction too,
         * and the median of those is printed beside it ("token by token").
         * (The run's fraction was its mean speed over the median reading,
         * which a spell of slow memory pulls down, slowing the tokens in
         * it, while the median ignores the spell: F16 runs read 84.4 and
         * 91.9% so, 95.0 and 99.8% token by token.) The run's bandwidth
         * printed is the median of its readings. */
        const size_t slice = (size_t)128 << 20;
        double step_time = 0, limit_time = 0;
        long n_read = 0, stretch_first = 1;
        if (llms_session_step(s, &res) == LLMS_TOKEN) got = 1;
        /* The library's workers spin for up to 0.2 ms after a pass before
         * they sleep: let them, or the probe shares the cores. */
        const struct timespec settle = {0, 2000000};
        nanosleep(&settle, NULL);
        double bw_before = bw_probe_slice(&probe, 0, slice);
        slice_bw[n_read++] = bw_before;
        for (;;) {
            double t2 = now_s();
            const int more = llms_session_step(s, &res) == LLMS_TOKEN;
            if (more) {
                tok_time[got - 1] = now_s() - t2;
                step_time += tok_time[got - 1];
                got++;
            }
            if (got - stretch_first == GEN_STRETCH || (!more && got > stretch_first)) {
                nanosleep(&settle, NULL);
                const double bw_after = bw_probe_slice(&probe, slice * (size_t)n_read, slice);
                slice_bw[n_read++] = bw_after;
                const double token_at_limit = bpt / ((bw_before + bw_after) / 2 * 1e9);
                for (long i = stretch_first; i < got; i++) {
                    tok_frac[i - 1] = token_at_limit / tok_time[i - 1];
                    limit_time += token_at_limit;
                }
                bw_before = bw_after;
                stretch_first = got;
            }
            if (!more) break;
        }
        llms_session_destroy(s);
        double pp = n_prompt / (t1 - t0), tg = got > 1 ? (got - 1) / step_time : 0;
        if (pp > best_pp) best_pp = pp;
        if (tg > best_tg) best_tg = tg;
        if (got > 1) {
            rep_bw[r] = median(slice_bw, (int)n_read);
            rep_tok_frac[r] = median(tok_frac, (int)(got - 1));
        }
        rep_frac[r] = step_time > 0 ? limit_time / step_time : 0;
        if (!json)
            printf("run %ld: generation %.2f tok/s; bandwidth read between its stretches of tokens %.2f GB/s: "
                   "%.1f%% of the limit; token by token: median %.1f%%\n", r + 1, tg, rep_bw[r], 100 * rep_frac[r],
                   100 * rep_tok_frac[r]);
    }
    free(probe.buf);
    double bw = median(rep_bw, (int)reps), frac = median(rep_frac, (int)reps),
           tok_frac_med = median(rep_tok_frac, (int)reps);
    free(rep_bw);
    free(rep_frac);
    free(slice_bw);
    free(rep_tok_frac);
    free(tok_frac);
    free(tok_time);
    double limit = bw * 1e9 / bpt;
    /* Prompt speed against the float32 ceiling (meaningful for F16/F32
     * weights; quantized ones use integer products that can exceed it). */
    double gflops = llms_context_backend(ctx) == LLMS_BACKEND_CPU ? sgemm_gflops(n_prompt) : 0;
    double pp_limit = gflops > 0 ? gflops * 1e9 / (2 * totals.macs_per_token) : 0;
    llms_model_info info;
    llms_model_info_init(&info);
    llms_model_get_info(m, &info);
    if (json) {
        printf("{\"model\": \"%s\", \"backend\": \"%s\", \"threads\": %d, \"n_params\": %llu, "
               "\"prompt_tokens\": %ld, \"gen_tokens\": %ld, \"prompt_tok_s\": %.2f, \"gen_tok_s\": %.2f, "
               "\"bytes_per_token\": %.0f, \"mem_read_gb_s\": %.2f, \"gen_limit_tok_s\": %.2f, "
               "\"gen_fraction_of_bandwidth_limit\": %.3f, \"gen_fraction_token_median\": %.3f, \"sgemm_gflop_s\": %.1f, \"prompt_f32_limit_tok_s\": %.2f}\n",
               path, llms_context_backend(ctx) == LLMS_BACKEND_VULKAN ? "vulkan" : "cpu", threads,
               (unsigned long long)info.n_params, n_prompt, n_gen, best_pp, best_tg, bpt, bw, limit, frac,
               tok_frac_med, gflops, pp_limit);
    } else {
        printf("model %s (%llu params), %d threads\n", path, (unsigned long long)info.n_params, threads);
        printf("prompt processing: %ld tokens: %.2f tok/s\n", n_prompt, best_pp);
        printf("generation: %ld tokens: %.2f tok/s\n", n_gen, best_tg);
        printf("weights read per token: %.1f MB; memory read bandwidth: %.2f GB/s; limit %.2f tok/s; "
               "generation at %.1f%% of the limit (median of the runs, each run's time against the time its "
               "tokens take at the bandwidth read around them); token by token %.1f%% (median of each "
               "token's speed against the readings before and after its stretch of %d)\n", bpt / 1e6, bw, limit, 100 * frac, 100 * tok_frac_med, GEN_STRETCH);
        if (pp_limit > 0)
            printf("OpenBLAS float32 sgemm (%s kernels): %.1f GFLOP/s; a prompt token costs %.2f GFLOP in weight "
                   "products, so prefill through it would reach at most %.1f tok/s (prompt at %.1f%% of that)\n",
                   openblas_get_corename(), gflops, 2 * totals.macs_per_token / 1e9, pp_limit,
                   100 * best_pp / pp_limit);
    }
    free(prompt);
    llms_model_destroy(m);
    llms_context_destroy(ctx);
    return 0;
}
