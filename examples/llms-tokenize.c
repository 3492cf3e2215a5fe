/* llms-tokenize --model FILE (--text STRING | --in FILE) [--bos] [--special]
 * Prints the token ids, space-separated, on one line. */
#include "common/cli.h"

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *d = malloc(cap);
    while (d) {
        size_t r = fread(d + n, 1, cap - n, f);
        n += r;
        if (n < cap) break;
        char *nd = realloc(d, cap *= 2);
        if (!nd) { free(d); d = NULL; }
        else d = nd;
    }
    int err = ferror(f);
    fclose(f);
    if (err) { free(d); return NULL; }
    *len = n;
    return d;
}

int main(int argc, char **argv) {
    const char *path = NULL, *text = NULL, *in = NULL;
    uint32_t flags = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if ((v = cli_opt(argc, argv, &i, "--model"))) path = v;
        else if ((v = cli_opt(argc, argv, &i, "--text"))) text = v;
        else if ((v = cli_opt(argc, argv, &i, "--in"))) in = v;
        else if (!strcmp(argv[i], "--bos")) flags |= LLMS_TOKENIZE_ADD_BOS;
        else if (!strcmp(argv[i], "--special")) flags |= LLMS_TOKENIZE_PARSE_SPECIAL;
        else { path = NULL; break; }
    }
    if (!path || (!text) == (!in)) {
        fprintf(stderr, "usage: %s --model FILE (--text STRING | --in FILE) [--bos] [--special]\n", argv[0]);
        return 2;
    }
    size_t len = 0;
    char *owned = NULL;
    if (in) {
        owned = read_all(in, &len);
        if (!owned) { fprintf(stderr, "%s: cannot read %s\n", argv[0], in); return 1; }
        text = owned;
    } else {
        len = strlen(text);
    }
    llms_context *ctx;
    llms_status st = llms_context_create(NULL, &ctx);
    if (st) { cli_report(argv[0], "context", st); free(owned); return 1; }
    llms_model_params mp;
    llms_model_params_init(&mp);
    mp.flags = LLMS_MODEL_VOCAB_ONLY;
    llms_model *m = NULL;
    int rc = 1;
    if ((st = llms_model_load(ctx, path, &mp, &m))) { cli_report(argv[0], path, st); goto out; }
    size_t n = 0, cap = len + 8;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) { fprintf(stderr, "%s: out of memory\n", argv[0]); goto out; }
    st = llms_tokenize(m, text, len, flags, ids, cap, &n);
    if (st == LLMS_ERR_BUFFER_TOO_SMALL) {
        int32_t *nid = realloc(ids, n * sizeof *ids);
        if (nid) { ids = nid; cap = n; st = llms_tokenize(m, text, len, flags, ids, cap, &n); }
    }
    if (st) { cli_report(argv[0], "tokenize", st); free(ids); goto out; }
    for (size_t i = 0; i < n; i++) printf("%s%d", i ? " " : "", ids[i]);
    printf("\n");
    free(ids);
    rc = 0;
out:
    llms_model_destroy(m);
    llms_context_destroy(ctx);
    free(owned);
    return rc;
}
