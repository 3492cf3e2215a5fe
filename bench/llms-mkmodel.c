/*
 * llms-mkmodel: write a random-weight GGUF model with the shape of a real
 * one, for benchmarks.
 *   llms-mkmodel --shape NAME --type TYPE --out FILE [--seed N]
 *   llms-mkmodel --dims E,LAYERS,HEADS,KV_HEADS,FF,VOCAB --type TYPE --out FILE
 * Shapes: tinyllama-1.1b, llama-3.2-1b, qwen2.5-0.5b.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmserve.h"

typedef struct shape {
    const char *name, *arch;
    uint32_t e, l, h, kv, ff, vocab;
    float rope_base;
    int tied, bias;
} shape;

static const shape SHAPES[] = {
    {"tinyllama-1.1b", "llama", 2048, 22, 32, 4, 5632, 32000, 10000.0f, 0, 0},
    {"llama-3.2-1b", "llama", 2048, 16, 32, 8, 8192, 128256, 500000.0f, 1, 0},
    {"qwen2.5-0.5b", "qwen2", 896, 24, 14, 2, 4864, 151936, 1000000.0f, 1, 1},
};

static int usage(const char *argv0) {
    fprintf(stderr, "usage: %s --shape NAME|--dims E,L,H,KV,FF,VOCAB --type TYPE --out FILE [--seed N] "
                    "[--threads N]\nshapes:", argv0);
    for (size_t i = 0; i < sizeof SHAPES / sizeof SHAPES[0]; i++) fprintf(stderr, " %s", SHAPES[i].name);
    fprintf(stderr, "\ntypes: F32 F16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K_M Q4_K_M Q5_K_M Q6_K\n");
    return 2;
}

int main(int argc, char **argv) {
    const char *shape_name = NULL, *dims = NULL, *type = "F16", *out = NULL;
    unsigned long long seed = 1;
    int threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) return usage(argv[0]);
        if (!strcmp(a, "--shape")) shape_name = argv[++i];
        else if (!strcmp(a, "--dims")) dims = argv[++i];
        else if (!strcmp(a, "--type")) type = argv[++i];
        else if (!strcmp(a, "--out")) out = argv[++i];
        else if (!strcmp(a, "--seed")) seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--threads")) threads = atoi(argv[++i]);
        else return usage(argv[0]);
    }
    if (!out || (!shape_name == !dims)) return usage(argv[0]);
    llms_random_model_params p;
    llms_random_model_params_init(&p);
    if (shape_name) {
        const shape *s = NULL;
        for (size_t i = 0; i < sizeof SHAPES / sizeof SHAPES[0]; i++)
            if (!strcmp(SHAPES[i].name, shape_name)) s = &SHAPES[i];
        if (!s) {
            fprintf(stderr, "unknown shape '%s'\n", shape_name);
            return usage(argv[0]);
        }
        p.arch = s->arch;
        p.name = s->name;
        p.n_embd = s->e; p.n_layer = s->l; p.n_head = s->h; p.n_head_kv = s->kv;
        p.n_ff = s->ff; p.n_vocab = s->vocab;
        p.rope_freq_base = s->rope_base;
        p.tied = s->tied;
        p.qkv_bias = s->bias;
    } else {
        unsigned e, l, h, kv, ff, v;
        if (sscanf(dims, "%u,%u,%u,%u,%u,%u", &e, &l, &h, &kv, &ff, &v) != 6) return usage(argv[0]);
        p.n_embd = e; p.n_layer = l; p.n_head = h; p.n_head_kv = kv; p.n_ff = ff; p.n_vocab = v;
        p.name = "custom";
    }
    p.ftype = llms_ftype_from_name(type);
    if (p.ftype < 0) {
        fprintf(stderr, "unknown type '%s'\n", type);
        return usage(argv[0]);
    }
    p.seed = seed;
    llms_context_params cp;
    llms_context_params_init(&cp);
    cp.n_threads = threads;
    cp.backend = LLMS_BACKEND_CPU;
    llms_context *ctx;
    llms_status st = llms_context_create(&cp, &ctx);
    if (st) {
        fprintf(stderr, "context: %s (%s)\n", llms_status_string(st), llms_errmsg());
        return 1;
    }
    st = llms_model_write_random(ctx, &p, out);
    if (st) fprintf(stderr, "llms-mkmodel: %s (%s)\n", llms_status_string(st), llms_errmsg());
    else fprintf(stderr, "wrote %s (%s, %s)\n", out, shape_name ? shape_name : "custom", llms_ftype_name(p.ftype));
    llms_context_destroy(ctx);
    return st ? 1 : 0;
}
