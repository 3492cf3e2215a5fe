#include "fixtures.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

const char *fixture_path(const char *relative) {
    static char bufs[8][4096];
    static int slot;
    const char *root = getenv("LLMS_FIXTURES");
    if (!root || !*root) root = "../shared/fixtures";
    char *b = bufs[slot++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", root, relative);
    return access(b, R_OK) == 0 ? b : NULL;
}

char *read_file_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *d = malloc((size_t)n + 1);
    if (d && fread(d, 1, (size_t)n, f) != (size_t)n) { free(d); d = NULL; }
    fclose(f);
    if (d) { d[n] = 0; if (len) *len = (size_t)n; }
    return d;
}

void fixture_missing(const char *relative) {
    if (getenv("CI")) fail_msg("fixture %s is missing (set LLMS_FIXTURES)", relative);
    fprintf(stderr, "SKIP: fixture %s missing (set LLMS_FIXTURES)\n", relative);
    skip();
}

int fixture_setup_model(const char *relative, llms_context **ctx, llms_model **model) {
    *ctx = NULL;
    *model = NULL;
    llms_context_params p;
    llms_context_params_init(&p);
    p.n_threads = 2;
    if (llms_context_create(&p, ctx)) return -1;
    const char *path = fixture_path(relative);
    if (!path) return getenv("CI") ? -1 : 0;
    return llms_model_load(*ctx, path, NULL, model) == LLMS_OK ? 0 : -1;
}

void fixture_teardown_model(llms_context *ctx, llms_model *model) {
    llms_model_destroy(model);
    llms_context_destroy(ctx);
}
