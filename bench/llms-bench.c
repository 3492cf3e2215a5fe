/*
 * llms-bench --model FILE [--threads N] [--prompt N] [--gen N] [--reps N]
 *            [--backend auto|cpu|vulkan] [--json]
 *
 * Measures, in one run on one machine:
 *   - prompt processing: tokens/s for an N-token prompt in one feed;
 *   - generation: tokens/s for N greedy tokens after that prompt;
 *   - the bytes of weights read per generated token (every weight matrix
 *     once, plus one embedding row);
 *   - the machine's memory read bandwidth (a multi-threaded streaming sum
 *     over a buffer far larger than the caches),
 * and prints generation speed as a fraction of the bandwidth limit
 * (bandwidth / bytes per token). Best of --reps repetitions for each figure.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../examples/common/cli.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- memory read bandwidth ---- */

typedef struct bw_job {
    const uint64_t *p;
    size_t n;
    uint64_t sum;
} bw_job;

static void *bw_thread(void *arg) {
    bw_job *j = arg;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i + 4 <= j->n; i += 4) {
        s0 += j->p[i];
        s1 += j->p[i + 1];
        s2 += j->p[i + 2];
        s3 += j->p[i + 3];
    }
    j->sum = s0 + s1 + s2 + s3;
    return NULL;
}

/* GB/s of reading a 1 GiB buffer with n threads, best of `reps`. */
static double read_bandwidth(int n_threads, int reps) {
    size_t bytes = (size_t)1 << 30, n = bytes / sizeof(uint64_t);
    uint64_t *buf = malloc(bytes);
    if (!buf) return 0;
    for (size_t i = 0; i < n; i++) buf[i] = i;
    double best = 0;
    pthread_t th[256];
    bw_job jobs[256];
    if (n_threads > 256) n_threads = 256;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        size_t per = n / (size_t)n_threads;
        for (int t = 0; t < n_threads; t++) {
            jobs[t].p = buf + per * (size_t)t;
            jobs[t].n = per;
            pthread_create(&th[t], NULL, bw_thread, &jobs[t]);
        }
        uint64_t total = 0;
        for (int t = 0; t < n_threads; t++) {
            pthread_join(th[t], NULL);
            total += jobs[t].sum;
        }
        double dt = now_s() - t0;
        if (total == 42) fprintf(stderr, " ");  /* keeps the sums alive */
        double gbs = (double)per * n_threads * sizeof(uint64_t) / dt / 1e9;
        if (gbs > best) best = gbs;
    }
    free(buf);
    return best;
}

/* Weight bytes read per generated token: every tensor except the token
 * embedding table (one row of it), unless the output reuses it (tied). */
static double bytes_per_token(const llms_model *m) {
    llms_model_info info;
    llms_model_info_init(&info);
    llms_model_get_info(m, &info);
    double total = 0;
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
        if (!strcmp(t.name, "token_embd.weight") && !tied) total += (double)t.n_bytes / (double)t.dims[1];
        else total += (double)t.n_bytes;
    }
    return total;
}

static void usage(const char *p) {
    fprintf(stderr, "usage: %s --model FILE [--threads N] [--prompt N] [--gen N] [--reps N] "
                    "[--backend auto|cpu|vulkan] [--json]\n", p);
    exit(2);
}

int main(int argc, char **argv) {
    const char *path = NULL;
    long n_prompt = 512, n_gen = 64, reps = 2;
    int json = 0;
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
        else if (!strcmp(argv[i], "--json")) json = 1;
        else usage(argv[0]);
    }
    if (!path) usage(argv[0]);

    llms_context *ctx = NULL;
    llms_model *m = NULL;
    llms_status st;
    if ((st = llms_context_create(&cp, &ctx))) { cli_report(argv[0], "context", st); return 1; }
    if ((st = llms_model_load(ctx, path, NULL, &m))) { cli_report(argv[0], path, st); llms_context_destroy(ctx); return 1; }
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
    double best_pp = 0, best_tg = 0;
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
         * step), so time from the first step's end: n_gen - 1 forward passes. */
        if (llms_session_step(s, &res) == LLMS_TOKEN) got = 1;
        double t2 = now_s();
        while (llms_session_step(s, &res) == LLMS_TOKEN) got++;
        double t3 = now_s();
        llms_session_destroy(s);
        double pp = n_prompt / (t1 - t0), tg = got > 1 ? (got - 1) / (t3 - t2) : 0;
        if (pp > best_pp) best_pp = pp;
        if (tg > best_tg) best_tg = tg;
    }
    double bpt = bytes_per_token(m);
    double bw = read_bandwidth(threads, 3);
    double limit = bw * 1e9 / bpt;
    llms_model_info info;
    llms_model_info_init(&info);
    llms_model_get_info(m, &info);
    if (json) {
        printf("{\"model\": \"%s\", \"backend\": \"%s\", \"threads\": %d, \"n_params\": %llu, "
               "\"prompt_tokens\": %ld, \"gen_tokens\": %ld, \"prompt_tok_s\": %.2f, \"gen_tok_s\": %.2f, "
               "\"bytes_per_token\": %.0f, \"mem_read_gb_s\": %.2f, \"gen_limit_tok_s\": %.2f, "
               "\"gen_fraction_of_bandwidth_limit\": %.3f}\n",
               path, llms_context_backend(ctx) == LLMS_BACKEND_VULKAN ? "vulkan" : "cpu", threads,
               (unsigned long long)info.n_params, n_prompt, n_gen, best_pp, best_tg, bpt, bw, limit, best_tg / limit);
    } else {
        printf("model %s (%llu params), %d threads\n", path, (unsigned long long)info.n_params, threads);
        printf("prompt processing: %ld tokens: %.2f tok/s\n", n_prompt, best_pp);
        printf("generation: %ld tokens: %.2f tok/s\n", n_gen, best_tg);
        printf("weights read per token: %.1f MB; memory read bandwidth: %.2f GB/s; limit %.2f tok/s; "
               "generation at %.1f%% of the limit\n", bpt / 1e6, bw, limit, 100 * best_tg / limit);
    }
    free(prompt);
    llms_model_destroy(m);
    llms_context_destroy(ctx);
    return 0;
}
