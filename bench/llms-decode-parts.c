/*
 * llms-decode-parts --model FILE [--threads N] [--tokens N] [--context N] [--json]
 *
 * Where a generated token's time goes on the CPU backend. Four
 * measurements, interleaved token by token so that each sees the same
 * moment of a shared machine's memory, reported as medians:
 *   probe     the memory read bandwidth (bwprobe.h), llms-bench's limit;
 *   read      the bytes decode streams (each product's matrix, repacked or
 *             in GGUF layout, as cpu_matmul reads it for one token), in
 *             decode's order and regions (Q/K/V together, the output
 *             projection, gate/up together, down; then the logits)
 *             through the library's thread pool in the same shrinking
 *             ranges, summed with the probe's own loop: what kernels with
 *             free arithmetic would reach under decode's structure;
 *   products  the same regions through the library's matrix products
 *             (cpu_matmul_n) on one token: the kernels with their
 *             arithmetic, without attention, norms or RoPE;
 *   decode    whole forward passes of one token (a session, short context);
 *   at N      with --context N, the same at positions N, N+1, ... (a
 *             second session, prefilled with N tokens once): what the
 *             attention over a long context adds to a token.
 * Each as GB/s of weight bytes per token and as a fraction of the probe.
 * It links the library's objects (like the tests), not the shared
 * library: it walks the model's weights and uses its thread pool.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmserve.h"
#include "backend/cpu/cpu.h"
#include "core/context.h"
#include "core/threadpool.h"
#include "model/model.h"
#include "../examples/common/cli.h"
#include "bwprobe.h"

#define MAX_STREAMS 3
#define CHUNK 4096   /* bytes per unit of the read pass; claims of 8 units, as the products' 32 KiB */

typedef struct region {
    const weight *w[MAX_STREAMS];
    int nw;
    const uint8_t *p[MAX_STREAMS];
    size_t bytes[MAX_STREAMS];
    int64_t first_unit[MAX_STREAMS + 1];
} region;

typedef struct read_job {
    const region *r;
    uint64_t sums[64];   /* per claim slot, so the loads are not dead */
} read_job;

static void read_range(void *arg, int64_t u0, int64_t u1) {
    read_job *j = arg;
    const region *r = j->r;
    uint64_t sum = 0;
    for (int k = 0; k < r->nw; k++) {
        int64_t a = u0 > r->first_unit[k] ? u0 : r->first_unit[k];
        int64_t b = u1 < r->first_unit[k + 1] ? u1 : r->first_unit[k + 1];
        if (a >= b) continue;
        size_t off = (size_t)(a - r->first_unit[k]) * CHUNK, end = (size_t)(b - r->first_unit[k]) * CHUNK;
        if (end > r->bytes[k]) end = r->bytes[k];
        const uint64_t *q = (const uint64_t *)(r->p[k] + off);
        /* The probe's reader (bwprobe.h). */
        sum += bw_read_words(q, (end - off) / 8);
    }
    __atomic_fetch_add(&j->sums[(u0 / 8) % 64], sum, __ATOMIC_RELAXED);
}

static int setup_region(region *r, const weight *const *ws, int nw) {
    memset(r, 0, sizeof *r);
    r->nw = nw;
    for (int k = 0; k < nw; k++) {
        r->w[k] = ws[k];
        r->p[k] = cpu_matmul_stream(ws[k], 1, &r->bytes[k]);
        if (!r->p[k] || !r->bytes[k]) return 0;
        r->first_unit[k + 1] = r->first_unit[k] + (int64_t)((r->bytes[k] + CHUNK - 1) / CHUNK);
    }
    return 1;
}

static void usage(const char *p) {
    fprintf(stderr, "usage: %s --model FILE [--threads N] [--tokens N] [--context N] [--json]\n", p);
    exit(2);
}

int main(int argc, char **argv) {
    const char *path = NULL;
    long n_tok = 32, n_context = 0;
    int json = 0;
    llms_context_params cp;
    llms_context_params_init(&cp);
    cp.backend = LLMS_BACKEND_CPU;
    for (int i = 1; i < argc; i++) {
        const char *v;
        long l;
        if ((v = cli_opt(argc, argv, &i, "--model"))) path = v;
        else if ((v = cli_opt(argc, argv, &i, "--threads"))) {
            if (!cli_long(v, 1, 1024, &l)) usage(argv[0]);
            cp.n_threads = (int32_t)l;
        } else if ((v = cli_opt(argc, argv, &i, "--tokens"))) { if (!cli_long(v, 3, 10000, &n_tok)) usage(argv[0]); }
        else if ((v = cli_opt(argc, argv, &i, "--context"))) { if (!cli_long(v, 0, 1000000, &n_context)) usage(argv[0]); }
        else if (!strcmp(argv[i], "--json")) json = 1;
        else usage(argv[0]);
    }
    if (!path) usage(argv[0]);
    llms_context *ctx;
    llms_model *m;
    llms_status st;
    if ((st = llms_context_create(&cp, &ctx))) { cli_report(argv[0], "context", st); return 1; }
    if ((st = llms_model_load(ctx, path, NULL, &m))) { cli_report(argv[0], path, st); return 1; }
    threadpool *pool = ctx->pool;
    const int threads = llms_context_n_threads(ctx);

    /* Decode's regions, in its order. */
    const uint32_t L = m->hp.n_layer;
    const int n_regions = (int)(4 * L + 1);
    region *regs = calloc((size_t)n_regions, sizeof *regs);
    size_t max_rows = (size_t)m->output.rows;
    double bytes = 0;
    for (uint32_t l = 0; l < L; l++) {
        const layer_weights *Lw = &m->layers[l];
        const weight *qkv[3] = {&Lw->wq, &Lw->wk, &Lw->wv}, *wo[1] = {&Lw->wo}, *gu[2] = {&Lw->w_gate, &Lw->w_up},
                     *dn[1] = {&Lw->w_down};
        if (!setup_region(&regs[4 * l], qkv, 3) || !setup_region(&regs[4 * l + 1], wo, 1) ||
            !setup_region(&regs[4 * l + 2], gu, 2) || !setup_region(&regs[4 * l + 3], dn, 1)) {
            fprintf(stderr, "%s: a matrix of layer %u is not streamed by the decode products (dequantized "
                    "tiles): nothing to measure\n", argv[0], l);
            return 1;
        }
        if ((size_t)Lw->w_gate.rows > max_rows) max_rows = (size_t)Lw->w_gate.rows;
    }
    const weight *out[1] = {&m->output};
    if (!setup_region(&regs[4 * L], out, 1)) { fprintf(stderr, "%s: output not streamed\n", argv[0]); return 1; }
    for (int r = 0; r < n_regions; r++)
        for (int k = 0; k < regs[r].nw; k++) bytes += (double)regs[r].bytes[k];

    /* Inputs and outputs of the products (values do not matter for time). */
    size_t max_cols = (size_t)(m->hp.n_ff > m->hp.n_embd ? m->hp.n_ff : m->hp.n_embd);
    if ((size_t)m->hp.n_head * m->hp.head_dim > max_cols) max_cols = (size_t)m->hp.n_head * m->hp.head_dim;
    float *x = malloc(max_cols * sizeof *x), *y[MAX_STREAMS];
    for (size_t i = 0; i < max_cols; i++) x[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    for (int k = 0; k < MAX_STREAMS; k++) y[k] = malloc(max_rows * sizeof(float));

    llms_session *s;
    llms_session_params sp;
    llms_session_params_init(&sp);
    sp.n_ctx = 256;
    if ((st = llms_session_create(m, &sp, &s))) { cli_report(argv[0], "session", st); return 1; }
    int32_t tok = llms_model_special_token(m, LLMS_SPECIAL_BOS);
    if (tok < 0) tok = 1;
    /* --context: a session holding n_context tokens, decoding on from there
     * (room for every measured token, so it is filled once). */
    llms_session *sl = NULL;
    if (n_context > 0) {
        llms_session_params lp = sp;
        lp.n_ctx = (uint32_t)(n_context + n_tok + 2);
        int32_t *fill = malloc((size_t)n_context * sizeof *fill);
        for (long i = 0; i < n_context; i++) fill[i] = (int32_t)(100 + (i * 7919) % 1000);
        if ((st = llms_session_create(m, &lp, &sl)) || (st = llms_session_feed_tokens(sl, fill, (size_t)n_context))) {
            cli_report(argv[0], "context", st);
            return 1;
        }
        free(fill);
    }

    bw_probe probe;
    if (!bw_probe_init(&probe, threads)) { fprintf(stderr, "%s: no memory for the probe\n", argv[0]); return 1; }
    double *g_probe = calloc((size_t)n_tok, sizeof(double)), *g_read = calloc((size_t)n_tok, sizeof(double)),
           *g_prod = calloc((size_t)n_tok, sizeof(double)), *g_dec = calloc((size_t)n_tok, sizeof(double)),
           *g_ctx = calloc((size_t)n_tok, sizeof(double));
    read_job rj;
    memset(&rj, 0, sizeof rj);
    const size_t slice = (size_t)128 << 20;
    const struct timespec pause = {0, 2000000};
    for (long t = -1; t < n_tok; t++) {   /* t = -1: warm-up */
        nanosleep(&pause, NULL);
        double probe_gbs = bw_probe_slice(&probe, slice * (size_t)(t + 1), slice);
        nanosleep(&pause, NULL);
        double t0 = now_s();
        for (int r = 0; r < n_regions; r++) {
            rj.r = &regs[r];
            pool_run_ranges(pool, regs[r].first_unit[regs[r].nw], 8, read_range, &rj);
        }
        double t1 = now_s();
        for (int r = 0; r < n_regions; r++) {
            float *ys[MAX_STREAMS] = {y[0], y[1], y[2]};
            if ((st = cpu_matmul_n(pool, &ctx->alloc, regs[r].w, regs[r].nw, x, 1, ys))) {
                cli_report(argv[0], "product", st);
                return 1;
            }
        }
        double t2 = now_s();
        if (llms_session_n_tokens(s) + 1 >= sp.n_ctx) llms_session_reset(s);
        if ((st = llms_session_feed_tokens(s, &tok, 1))) { cli_report(argv[0], "decode", st); return 1; }
        double t3 = now_s();
        if (sl && (st = llms_session_feed_tokens(sl, &tok, 1))) { cli_report(argv[0], "decode at --context", st); return 1; }
        double t4 = now_s();
        if (t < 0) continue;
        g_probe[t] = probe_gbs;
        g_read[t] = bytes / (t1 - t0) / 1e9;
        g_prod[t] = bytes / (t2 - t1) / 1e9;
        g_dec[t] = bytes / (t3 - t2) / 1e9;
        g_ctx[t] = bytes / (t4 - t3) / 1e9;
    }
    uint64_t keep = 0;
    for (int i = 0; i < 64; i++) keep += rj.sums[i];
    const double pr = median(g_probe, (int)n_tok), rd = median(g_read, (int)n_tok), pd = median(g_prod, (int)n_tok),
                 dc = median(g_dec, (int)n_tok), dl = sl ? median(g_ctx, (int)n_tok) : 0;
    if (json)
        printf("{\"model\": \"%s\", \"threads\": %d, \"tokens\": %ld, \"bytes_per_token\": %.0f, "
               "\"probe_gb_s\": %.2f, \"read_gb_s\": %.2f, \"products_gb_s\": %.2f, \"decode_gb_s\": %.2f, "
               "\"read_fraction\": %.3f, \"products_fraction\": %.3f, \"decode_fraction\": %.3f, "
               "\"context\": %ld, \"decode_at_context_gb_s\": %.2f, \"decode_at_context_fraction\": %.3f}\n",
               path, threads, n_tok, bytes, pr, rd, pd, dc, rd / pr, pd / pr, dc / pr, n_context, dl, dl / pr);
    else
        printf("model %s, %d threads, %.1f MB of weights a token, medians of %ld tokens:\n"
               "  probe      %6.2f GB/s\n"
               "  read       %6.2f GB/s  %5.1f%% of the probe (decode's regions, loads only)\n"
               "  products   %6.2f GB/s  %5.1f%% (the matrix products alone)\n"
               "  decode     %6.2f GB/s  %5.1f%% (whole forward passes)%s\n",
               path, threads, bytes / 1e6, n_tok, pr, rd, 100 * rd / pr, pd, 100 * pd / pr, dc, 100 * dc / pr,
               keep == 42 ? " " : "");
    if (!json && sl) printf("  at %-7ld %6.2f GB/s  %5.1f%% (whole forward passes at positions %ld on)\n", n_context, dl,
                            100 * dl / pr, n_context);
    llms_session_destroy(s);
    llms_session_destroy(sl);
    llms_model_destroy(m);
    llms_context_destroy(ctx);
    free(probe.buf);
    return 0;
}
