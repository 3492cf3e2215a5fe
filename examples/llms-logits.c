/* llms-logits --model FILE --tokens ID,ID,... [--top K] [--threads N] [--backend B]
 * Evaluates the tokens as one prompt and prints, as JSON, the top K
 * (id, logit) pairs at every position. */
#include "common/cli.h"

/* qsort key: logits of the position being printed. */
static const float *g_logits;
static int by_logit_desc(const void *a, const void *b) {
    float x = g_logits[*(const int32_t *)a], y = g_logits[*(const int32_t *)b];
    if (x != y) return x > y ? -1 : 1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

static void usage(const char *p) {
    fprintf(stderr, "usage: %s --model FILE --tokens ID,ID,... [--top K] [--threads N] "
                    "[--backend auto|cpu|vulkan]\n", p);
    exit(2);
}

int main(int argc, char **argv) {
    const char *path = NULL, *list = NULL;
    long top = 10;
    llms_context_params cp;
    llms_context_params_init(&cp);
    for (int i = 1; i < argc; i++) {
        const char *v;
        long l;
        if ((v = cli_opt(argc, argv, &i, "--model"))) path = v;
        else if ((v = cli_opt(argc, argv, &i, "--tokens"))) list = v;
        else if ((v = cli_opt(argc, argv, &i, "--top"))) { if (!cli_long(v, 1, 1 << 20, &top)) usage(argv[0]); }
        else if ((v = cli_opt(argc, argv, &i, "--threads"))) {
            if (!cli_long(v, 0, 1024, &l)) usage(argv[0]);
            cp.n_threads = (int32_t)l;
        } else if ((v = cli_opt(argc, argv, &i, "--backend"))) {
            if ((cp.backend = cli_backend(v)) < 0) usage(argv[0]);
        } else usage(argv[0]);
    }
    if (!path || !list) usage(argv[0]);
    size_t n = 0, cap = 16;
    int32_t *ids = malloc(cap * sizeof *ids);
    for (const char *p = list; ids && *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || (*end && *end != ',')) { fprintf(stderr, "%s: bad --tokens list\n", argv[0]); return 2; }
        if (n == cap) { int32_t *ni = realloc(ids, (cap *= 2) * sizeof *ids); if (!ni) { free(ids); return 1; } ids = ni; }
        ids[n++] = (int32_t)v;
        p = *end ? end + 1 : end;
    }
    if (!ids || n == 0) usage(argv[0]);

    llms_context *ctx = NULL;
    llms_model *m = NULL;
    llms_session *s = NULL;
    int rc = 1;
    llms_status st;
    if ((st = llms_context_create(&cp, &ctx))) { cli_report(argv[0], "context", st); free(ids); return 1; }
    if ((st = llms_model_load(ctx, path, NULL, &m))) { cli_report(argv[0], path, st); goto out; }
    llms_session_params spar;
    llms_session_params_init(&spar);
    spar.n_ctx = (uint32_t)n;
    if ((st = llms_session_create(m, &spar, &s))) { cli_report(argv[0], "session", st); goto out; }
    int32_t V = llms_model_n_vocab(m);
    if (top > V) top = V;
    int32_t *order = malloc((size_t)V * sizeof *order);
    if (!order) goto out;
    float *all = malloc(n * (size_t)V * sizeof *all);
    if (!all) { free(order); goto out; }
    if ((st = llms_session_feed_tokens_logits(s, ids, n, all))) {
        cli_report(argv[0], "evaluate", st);
        free(order);
        free(all);
        goto out;
    }
    printf("{\"model\": \"%s\", \"n_vocab\": %d, \"positions\": [\n", path, V);
    for (size_t i = 0; i < n; i++) {
        const float *lg = all + i * (size_t)V;
        g_logits = lg;
        for (int32_t t = 0; t < V; t++) order[t] = t;
        qsort(order, (size_t)V, sizeof *order, by_logit_desc);
        printf("  {\"pos\": %zu, \"token\": %d, \"top\": [", i, ids[i]);
        for (long k = 0; k < top; k++) printf("%s[%d, %.6f]", k ? ", " : "", order[k], lg[order[k]]);
        printf("]}%s\n", i + 1 < n ? "," : "");
    }
    printf("]}\n");
    free(order);
    free(all);
    rc = 0;
out:
    free(ids);
    llms_session_destroy(s);
    llms_model_destroy(m);
    llms_context_destroy(ctx);
    return rc;
}
