/* llms-info --model FILE: a model's metadata and tensor table. */
#include "common/cli.h"

int main(int argc, char **argv) {
    const char *path = NULL;
    long max_elems = 8;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if ((v = cli_opt(argc, argv, &i, "--model"))) path = v;
        else if ((v = cli_opt(argc, argv, &i, "--max-elems"))) {
            if (!cli_long(v, 0, 1 << 30, &max_elems)) { fprintf(stderr, "bad --max-elems\n"); return 2; }
        } else {
            fprintf(stderr, "usage: %s --model FILE [--max-elems N]\n", argv[0]);
            return 2;
        }
    }
    if (!path) { fprintf(stderr, "usage: %s --model FILE [--max-elems N]\n", argv[0]); return 2; }
    llms_context *ctx;
    llms_status st = llms_context_create(NULL, &ctx);
    if (st) { cli_report(argv[0], "context", st); return 1; }
    llms_model_params mp;
    llms_model_params_init(&mp);
    mp.flags = LLMS_MODEL_VOCAB_ONLY;  /* metadata and tensor table only: no weight checks */
    llms_model *m;
    if ((st = llms_model_load(ctx, path, &mp, &m))) {
        cli_report(argv[0], path, st);
        llms_context_destroy(ctx);
        return 1;
    }
    llms_model_info info;
    llms_model_info_init(&info);
    llms_model_get_info(m, &info);
    printf("file: %s\nGGUF version: %u\narchitecture: %s\nname: %s\nparameters: %llu\ntensor bytes: %llu\n"
           "vocabulary: %u\n", path, info.gguf_version, info.architecture, info.name,
           (unsigned long long)info.n_params, (unsigned long long)info.n_bytes, info.n_vocab);
    printf("\nmetadata (%u keys):\n", info.n_metadata);
    size_t cap = 1 << 16;
    char *buf = malloc(cap);
    for (uint32_t i = 0; i < info.n_metadata && buf; i++) {
        const char *key;
        llms_model_meta_key(m, i, &key);
        size_t len;
        st = llms_model_meta_format(m, key, (uint32_t)max_elems, buf, cap, &len);
        if (st == LLMS_ERR_BUFFER_TOO_SMALL) {
            char *nb = realloc(buf, len + 1);
            if (!nb) break;
            buf = nb;
            cap = len + 1;
            st = llms_model_meta_format(m, key, (uint32_t)max_elems, buf, cap, &len);
        }
        printf("  %s = %s\n", key, st == LLMS_OK ? buf : "?");
    }
    free(buf);
    printf("\ntensors (%u):\n", info.n_tensors);
    for (uint32_t i = 0; i < info.n_tensors; i++) {
        llms_tensor_info t;
        llms_tensor_info_init(&t);
        if (llms_model_tensor(m, i, &t)) break;
        printf("  %-32s %-5s [", t.name, llms_type_name(t.type));
        for (uint32_t d = 0; d < t.n_dims; d++) printf("%s%lld", d ? ", " : "", (long long)t.dims[d]);
        printf("] offset %llu, %llu bytes\n", (unsigned long long)t.offset, (unsigned long long)t.n_bytes);
    }
    llms_model_destroy(m);
    llms_context_destroy(ctx);
    return 0;
}
