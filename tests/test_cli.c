/*
 * The example programs, checked from outside the library the way a user runs
 * them (LLMS_BIN points at build/bin): exact reference text from
 * llms-generate, token ids from llms-tokenize, llms-info and llms-logits
 * output, and clean failures (message, non-zero exit, no crash) on bad input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support/fixtures.h"

typedef struct run_result {
    char *out;      /* stdout */
    char *err;      /* stderr */
    int status;     /* exit code; 128+signal if killed */
} run_result;

static char *slurp(const char *path) {
    char *s = read_file_all(path, NULL);
    return s ? s : calloc(1, 1);
}

/* Runs LLMS_BIN/prog with arguments given as one shell-quoted string. */
static run_result run(const char *prog, const char *args) {
    const char *bin = getenv("LLMS_BIN");
    if (!bin) bin = "build/bin";
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "%s/%s %s > /tmp/llms_cli_out.%d 2> /tmp/llms_cli_err.%d", bin, prog, args,
             (int)getpid(), (int)getpid());
    int rc = system(cmd);
    run_result r;
    char p[64];
    snprintf(p, sizeof p, "/tmp/llms_cli_out.%d", (int)getpid());
    r.out = slurp(p);
    remove(p);
    snprintf(p, sizeof p, "/tmp/llms_cli_err.%d", (int)getpid());
    r.err = slurp(p);
    remove(p);
    r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
    return r;
}

static void run_free(run_result *r) { free(r->out); free(r->err); }

/* Single-quotes a string for the shell. */
static void shell_quote(char *dst, size_t cap, const char *s) {
    size_t n = 0;
    dst[n++] = '\'';
    for (; *s && n + 5 < cap; s++) {
        if (*s == '\'') { memcpy(dst + n, "'\\''", 4); n += 4; }
        else dst[n++] = *s;
    }
    dst[n++] = '\'';
    dst[n] = 0;
}

static const char *need(const char *rel) {
    const char *p = fixture_path(rel);
    if (!p) fixture_missing(rel);
    return p;
}

/* The trained model reproduces llama2.c's / llama.cpp's greedy completions
 * exactly, as text, through the command-line program. */
static void test_generate_reference_text(void **state) {
    (void)state;
    const char *model = need("models/aidreams260K.gguf");
    const char *gpath = need("models/aidreams260K.golden.json");
    char *text = read_file_all(gpath, NULL);
    cJSON *g = cJSON_Parse(text);
    free(text);
    assert_non_null(g);
    const cJSON *c;
    int n_cases = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(g, "cases")) {
        const char *prompt = cJSON_GetObjectItem(c, "prompt")->valuestring;
        const char *expect = cJSON_GetObjectItem(c, "completion")->valuestring;
        int n_steps = cJSON_GetArraySize(cJSON_GetObjectItem(c, "steps"));
        assert_non_null(expect);
        char qp[1024], qm[1024], args[4096];
        shell_quote(qp, sizeof qp, prompt);
        shell_quote(qm, sizeof qm, model);
        snprintf(args, sizeof args, "--model %s --prompt %s --max-tokens %d --temperature 0", qm, qp, n_steps);
        run_result r = run("llms-generate", args);
        assert_int_equal(r.status, 0);
        if (strcmp(r.out, expect) != 0)
            fail_msg("prompt '%s':\n  got      '%s'\n  expected '%s'", prompt, r.out, expect);
        assert_non_null(strstr(r.err, "tok/s"));   /* timing goes to stderr only */
        run_free(&r);
        n_cases++;
    }
    assert_int_equal(n_cases, 3);
    cJSON_Delete(g);
}

static void test_tokenize_vectors(void **state) {
    (void)state;
    const char *vocab = need("vocab/ggml-vocab-llama-spm.gguf");
    const char *inp = need("vocab/ggml-vocab-llama-spm.gguf.inp");
    const char *outp = need("vocab/ggml-vocab-llama-spm.gguf.out");
    char *in = read_file_all(inp, NULL), *out = read_file_all(outp, NULL);
    /* Check the first few cases through a file (--in), so any bytes work. */
    const char *sep = "\n__ggml_vocab_test__\n";
    char *cur = in, *line = out;
    for (int k = 0; k < 12 && cur; k++) {
        char *end = strstr(cur, sep);
        size_t len = end ? (size_t)(end - cur) : strlen(cur);
        FILE *f = fopen("/tmp/llms_cli_case.txt", "wb");
        fwrite(cur, 1, len, f);
        fclose(f);
        char *nl = strchr(line, '\n');
        *nl = 0;
        char args[2048];
        snprintf(args, sizeof args, "--model '%s' --in /tmp/llms_cli_case.txt", vocab);
        run_result r = run("llms-tokenize", args);
        assert_int_equal(r.status, 0);
        char *rn = strchr(r.out, '\n');
        assert_non_null(rn);
        *rn = 0;
        const char *want = line;
        while (*want == ' ') want++;   /* the .out lines may start with a space */
        if (strcmp(r.out, want) != 0) fail_msg("case %d: got '%s' expected '%s'", k, r.out, line);
        run_free(&r);
        line = nl + 1;
        cur = end ? end + strlen(sep) : NULL;
    }
    remove("/tmp/llms_cli_case.txt");
    /* --bos adds the model's BOS (1); --special parses control-token text. */
    char args[2048];
    snprintf(args, sizeof args, "--model '%s' --text 'Hello' --bos", vocab);
    run_result r = run("llms-tokenize", args);
    assert_int_equal(r.status, 0);
    assert_true(strncmp(r.out, "1 ", 2) == 0);
    run_free(&r);
    snprintf(args, sizeof args, "--model '%s' --text '</s>' --special", vocab);
    r = run("llms-tokenize", args);
    assert_string_equal(r.out, "2\n");
    run_free(&r);
    snprintf(args, sizeof args, "--model '%s' --text '</s>'", vocab);
    r = run("llms-tokenize", args);
    assert_string_not_equal(r.out, "2\n");
    run_free(&r);
    free(in);
    free(out);
}

/* Every failure: a message on stderr, a non-zero exit, never a crash. */
static void test_clean_failures(void **state) {
    (void)state;
    const char *model = need("models/aidreams260K.gguf");
    /* A truncated copy of a real model. */
    size_t len;
    char *data = read_file_all(model, &len);
    FILE *f = fopen("/tmp/llms_cli_trunc.gguf", "wb");
    fwrite(data, 1, len / 3, f);
    fclose(f);
    /* Garbage with the right magic. */
    memset(data + 4, 0xff, 64);
    f = fopen("/tmp/llms_cli_bad.gguf", "wb");
    fwrite(data, 1, 256, f);
    fclose(f);
    free(data);
    const char *progs[] = {"llms-info", "llms-tokenize", "llms-generate", "llms-logits"};
    const char *extra[] = {"", "--text hi", "--prompt hi", "--tokens 1,2"};
    const char *files[] = {"/tmp/llms_cli_trunc.gguf", "/tmp/llms_cli_bad.gguf", "/nonexistent/model.gguf"};
    for (int p = 0; p < 4; p++)
        for (int k = 0; k < 3; k++) {
            char args[1024];
            snprintf(args, sizeof args, "--model %s %s", files[k], extra[p]);
            run_result r = run(progs[p], args);
            if (r.status == 0 || r.status >= 128)
                fail_msg("%s %s: exit %d", progs[p], args, r.status);
            assert_non_null(strstr(r.err, "LLMS_ERR_"));
            run_free(&r);
        }
    remove("/tmp/llms_cli_trunc.gguf");
    remove("/tmp/llms_cli_bad.gguf");
    /* Bad options and bad values. */
    char args[1024];
    snprintf(args, sizeof args, "--model '%s' --prompt hi --temperature nan", model);
    run_result r = run("llms-generate", args);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "LLMS_ERR_INVALID_ARGUMENT"));
    run_free(&r);
    snprintf(args, sizeof args, "--model '%s' --tokens 1,99999", model);
    r = run("llms-logits", args);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "LLMS_ERR_TOKEN_RANGE"));
    run_free(&r);
    r = run("llms-generate", "--bogus");
    assert_int_equal(r.status, 2);
    run_free(&r);
}

static void test_info_and_logits(void **state) {
    (void)state;
    const char *model = need("models/aidreams260K.gguf");
    char args[2048];
    snprintf(args, sizeof args, "--model '%s'", model);
    run_result r = run("llms-info", args);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "architecture: llama"));
    assert_non_null(strstr(r.out, "llama.embedding_length = 64"));
    assert_non_null(strstr(r.out, "token_embd.weight"));
    run_free(&r);

    /* llms-logits on the golden prompt: position n-1 holds step 0's top. */
    char *text = read_file_all(need("models/aidreams260K.golden.json"), NULL);
    cJSON *g = cJSON_Parse(text);
    free(text);
    const cJSON *c = cJSON_GetArrayItem(cJSON_GetObjectItem(g, "cases"), 1);
    const cJSON *pt = cJSON_GetObjectItem(c, "prompt_tokens");
    char list[512] = "";
    int n = cJSON_GetArraySize(pt);
    for (int i = 0; i < n; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", i ? "," : "",
                 (int)cJSON_GetArrayItem(pt, i)->valuedouble);
    snprintf(args, sizeof args, "--model '%s' --tokens %s --top 5", model, list);
    r = run("llms-logits", args);
    assert_int_equal(r.status, 0);
    cJSON *j = cJSON_Parse(r.out);
    assert_non_null(j);
    const cJSON *pos = cJSON_GetObjectItem(j, "positions");
    assert_int_equal(cJSON_GetArraySize(pos), n);
    const cJSON *top = cJSON_GetObjectItem(cJSON_GetArrayItem(pos, n - 1), "top");
    assert_int_equal(cJSON_GetArraySize(top), 5);
    const cJSON *ref = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(c, "steps"), 0), "top");
    for (int k = 0; k < 5; k++) {
        const cJSON *a = cJSON_GetArrayItem(top, k), *b = cJSON_GetArrayItem(ref, k);
        assert_int_equal((int)cJSON_GetArrayItem(a, 0)->valuedouble, (int)cJSON_GetArrayItem(b, 0)->valuedouble);
        assert_float_equal(cJSON_GetArrayItem(a, 1)->valuedouble, cJSON_GetArrayItem(b, 1)->valuedouble, 0.01);
    }
    cJSON_Delete(j);
    cJSON_Delete(g);
    run_free(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate_reference_text),
        cmocka_unit_test(test_tokenize_vectors),
        cmocka_unit_test(test_clean_failures),
        cmocka_unit_test(test_info_and_logits),
    };
    return cmocka_run_group_tests_name("cli", tests, NULL, NULL);
}
