/*
 * Tokenizer: the reference vectors of every fixture vocabulary (llama.cpp's
 * test files, produced with the models' own Hugging Face / SentencePiece
 * tokenizers), round trips, special tokens, BOS/EOS flags, decoding rules,
 * linear time on hostile 1 MiB inputs, unsupported models and pre-tokenizers,
 * and allocation failures at every point of load and encode.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "llmserve.h"
#include "core/alloc.h"
#include "core/error.h"
#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/unicode.h"
#include "support/fixtures.h"
#include "support/gguf_writer.h"

/* Sanitizers slow the code down by an order of magnitude; the time limits
 * are about complexity (quadratic behaviour takes minutes on 1 MiB), so
 * they scale with the build. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SLOWDOWN 10.0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define SLOWDOWN 10.0
#endif
#endif
#ifndef SLOWDOWN
#define SLOWDOWN 1.0
#endif

/* ------------------------------------------------------------------------ */
/* Helpers                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct loaded {
    gguf_file *f;
    tokenizer *t;
} loaded;

/* Loads vocab/ggml-vocab-NAME.gguf; skips (or fails in CI) if missing. */
static int load_vocab(const char *name, loaded *l) {
    char rel[256];
    snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf", name);
    const char *path = fixture_path(rel);
    if (!path) {
        fixture_missing(rel);
        return 0;
    }
    assert_int_equal(gguf_open_file(&lalloc_libc, path, 0, &l->f), LLMS_OK);
    llms_status st = tok_load(&lalloc_libc, l->f, &l->t);
    if (st) fail_msg("tok_load(%s): %s", name, err_message());
    return 1;
}

static void unload(loaded *l) {
    tok_free(l->t);
    gguf_close(l->f);
}

static tok_vec encode(const tokenizer *t, const char *s, size_t n, uint32_t flags) {
    tok_vec v = { 0 };
    llms_status st = tok_encode(t, s, n, flags, &v);
    if (st) fail_msg("tok_encode: %s", err_message());
    return v;
}

static char *decode(const tokenizer *t, const tok_vec *v, uint32_t flags, size_t *len) {
    size_t need = 0;
    assert_int_equal(tok_decode(t, v->data, v->n, flags, NULL, 0, &need), LLMS_ERR_BUFFER_TOO_SMALL);
    char *buf = malloc(need + 1);
    assert_non_null(buf);
    size_t got = 0;
    assert_int_equal(tok_decode(t, v->data, v->n, flags, buf, need + 1, &got), LLMS_OK);
    assert_int_equal(got, need);
    assert_int_equal(buf[got], 0);
    if (len) *len = got;
    return buf;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void print_ids(const char *label, const int32_t *ids, size_t n) {
    fprintf(stderr, "  %s:", label);
    for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
}

/* ------------------------------------------------------------------------ */
/* Reference vectors                                                          */
/* ------------------------------------------------------------------------ */

static const char SEP[] = "\n__ggml_vocab_test__\n";

static void check_vectors(const char *name) {
    loaded l;
    if (!load_vocab(name, &l)) return;
    char rel_inp[256], rel_out[256];
    snprintf(rel_inp, sizeof rel_inp, "vocab/ggml-vocab-%s.gguf.inp", name);
    snprintf(rel_out, sizeof rel_out, "vocab/ggml-vocab-%s.gguf.out", name);
    const char *pi = fixture_path(rel_inp), *po = fixture_path(rel_out);
    if (!pi || !po) {
        unload(&l);
        fixture_missing(pi ? rel_out : rel_inp);
        return;
    }
    size_t ni, no;
    char *inp = read_file_all(pi, &ni), *outs = read_file_all(po, &no);
    assert_non_null(inp);
    assert_non_null(outs);

    /* Cases are joined by SEP, and the file ends with SEP (no case after it). */
    size_t cases = 0, failures = 0;
    char *p = inp, *end = inp + ni, *line = outs;
    while (p < end) {
        char *q = strstr(p, SEP);
        size_t len = q ? (size_t)(q - p) : (size_t)(end - p);
        char *eol = strchr(line, '\n');
        assert_non_null(eol);
        *eol = 0;

        int32_t want[512];
        size_t nw = 0;
        for (char *s = line; *s;) {
            char *e;
            long v = strtol(s, &e, 10);
            if (e == s) break;
            assert_true(nw < 512);
            want[nw++] = (int32_t)v;
            s = e;
        }
        tok_vec got = encode(l.t, p, len, 0);
        if (got.n != nw || (nw && memcmp(got.data, want, nw * sizeof *want))) {
            fprintf(stderr, "%s case %zu: \"%.*s\"\n", name, cases, (int)len, p);
            print_ids("expected", want, nw);
            print_ids("got     ", got.data, got.n);
            failures++;
        }
        free(got.data);
        cases++;
        line = eol + 1;
        p = q ? q + strlen(SEP) : end;
    }
    fprintf(stderr, "%s: %zu cases, %zu mismatches\n", name, cases, failures);
    assert_true(cases >= 40);
    assert_int_equal(failures, 0);
    free(inp);
    free(outs);
    unload(&l);
}

static void test_vectors_llama_spm(void **state) { (void)state; check_vectors("llama-spm"); }
static void test_vectors_phi3(void **state) { (void)state; check_vectors("phi-3"); }
static void test_vectors_gpt2(void **state) { (void)state; check_vectors("gpt-2"); }
static void test_vectors_deepseek_llm(void **state) { (void)state; check_vectors("deepseek-llm"); }
static void test_vectors_deepseek_coder(void **state) { (void)state; check_vectors("deepseek-coder"); }
static void test_vectors_mpt(void **state) { (void)state; check_vectors("mpt"); }

/* ------------------------------------------------------------------------ */
/* Round trips                                                                */
/* ------------------------------------------------------------------------ */

static const char *const SAMPLES[] = {
    "Hello world",
    " Hello, world!  How are you?\n\nFine\tthanks.",
    "def f(x):\n    return x ** 2  # square\n",
    "ied 4 \xc2\xbd months, 1234567 items, 3.14159",
    "\xc3\x84pfel, \xd0\xbd\xd0\xb5\xd1\x89\xd0\xbe \xd0\xbd\xd0\xb0 \xd0\x91\xd1\x8a\xd0\xbb\xd0\xb3\xd0\xb0\xd1\x80\xd1\x81\xd0\xba\xd0\xb8",
    "\xe6\x88\x91\xe6\x83\xb3\xe5\x9c\250apple\xe5\xb7\xa5\xe4\xbd\2341314151\xe5\xa4\xa9\xef\xbd\x9e",
    "\xf0\x9f\x9a\x80 (normal) \xf0\x9f\x98\xb6\xe2\x80\x8d\xf0\x9f\x8c\xab\xef\xb8\x8f emojis \xe2\x9c\x85",
    "I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you",
    "   leading and trailing spaces   ",
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n",
    "x <|endoftext|> <s> </s> [INST] <fim_prefix> >>TITLE<< y",
    "C\xe1\xbb\255a Vi\xe1\xbb\x87t \xe1\x9e\x80\xe1\x9e\xb6\xe1\x9e\x93\xe1\x9f\x8b",
    "------======= ''''''```````\"\"\"\"......!!!!!!??????",
};

static void check_round_trip(const char *name, int check_spm_texts) {
    loaded l;
    if (!load_vocab(name, &l)) return;
    for (size_t i = 0; i < sizeof SAMPLES / sizeof SAMPLES[0]; i++) {
        const char *s = SAMPLES[i];
        if (!check_spm_texts && strstr(s, "</s>")) continue;
        tok_vec v = encode(l.t, s, strlen(s), 0);
        assert_true(v.n > 0);
        size_t n;
        char *d = decode(l.t, &v, 0, &n);
        if (n != strlen(s) || memcmp(d, s, n))
            fail_msg("%s: round trip of \"%s\" gave \"%s\"", name, s, d);
        free(d);
        free(v.data);
    }
    unload(&l);
}

/* phi-3 types "</s>" as an end-of-generation control token, so its plain
 * text does not survive a non-special decode. */
static void test_round_trip_llama_spm(void **state) { (void)state; check_round_trip("llama-spm", 1); }
static void test_round_trip_phi3(void **state) { (void)state; check_round_trip("phi-3", 0); }
static void test_round_trip_gpt2(void **state) { (void)state; check_round_trip("gpt-2", 1); }
static void test_round_trip_deepseek_llm(void **state) { (void)state; check_round_trip("deepseek-llm", 1); }
static void test_round_trip_deepseek_coder(void **state) { (void)state; check_round_trip("deepseek-coder", 1); }
static void test_round_trip_mpt(void **state) { (void)state; check_round_trip("mpt", 1); }
/* The vocabularies without published vectors: loading, tokenizing and
 * reproducing the text is what can be checked. */
static void test_round_trip_falcon(void **state) { (void)state; check_round_trip("falcon", 1); }
static void test_round_trip_refact(void **state) { (void)state; check_round_trip("refact", 1); }
static void test_round_trip_starcoder(void **state) { (void)state; check_round_trip("starcoder", 1); }

/* Digits: starcoder/refact split every digit, falcon groups three. */
static void test_digit_rules(void **state) {
    (void)state;
    loaded l;
    if (!load_vocab("starcoder", &l)) return;
    tok_vec v = encode(l.t, "12345", 5, 0);
    assert_int_equal(v.n, 5);
    free(v.data);
    unload(&l);
    if (!load_vocab("falcon", &l)) return;
    v = encode(l.t, "1234567", 7, 0);
    /* 123 | 456 | 7 */
    size_t n;
    assert_true(v.n >= 3);
    char *d = decode(l.t, &v, 0, &n);
    assert_string_equal(d, "1234567");
    free(d);
    const char *p0 = tok_piece(l.t, v.data[0], 0, &n);
    assert_int_equal(n, 3);
    assert_memory_equal(p0, "123", 3);
    free(v.data);
    unload(&l);
}

/* ------------------------------------------------------------------------ */
/* Special tokens, BOS/EOS                                                    */
/* ------------------------------------------------------------------------ */

static int contains(const tok_vec *v, int32_t id) {
    for (size_t i = 0; i < v->n; i++)
        if (v->data[i] == id) return 1;
    return 0;
}

static void test_special_spm(void **state) {
    (void)state;
    loaded l;
    if (!load_vocab("llama-spm", &l)) return;
    const char *s = "<s>Hello</s>";
    tok_vec off = encode(l.t, s, strlen(s), 0);
    assert_false(contains(&off, 1));
    assert_false(contains(&off, 2));
    tok_vec on = encode(l.t, s, strlen(s), LLMS_TOKENIZE_PARSE_SPECIAL);
    /* <s>, then "Hello" with the space SPM puts after a special token, </s> */
    tok_vec hello = encode(l.t, "Hello", 5, 0);
    assert_int_equal(on.n, hello.n + 2);
    assert_int_equal(on.data[0], 1);
    assert_memory_equal(on.data + 1, hello.data, hello.n * sizeof(int32_t));
    assert_int_equal(on.data[on.n - 1], 2);

    /* Pieces: control text only when asked; decode likewise. */
    size_t n;
    tok_piece(l.t, 1, 0, &n);
    assert_int_equal(n, 0);
    const char *p = tok_piece(l.t, 1, 1, &n);
    assert_int_equal(n, 3);
    assert_memory_equal(p, "<s>", 3);
    char *d = decode(l.t, &on, 0, NULL);
    assert_string_equal(d, "Hello");
    free(d);
    d = decode(l.t, &on, LLMS_DETOKENIZE_SPECIAL, NULL);
    assert_string_equal(d, "<s> Hello</s>");
    free(d);
    free(off.data);
    free(on.data);
    free(hello.data);
    unload(&l);
}

static void test_special_bpe(void **state) {
    (void)state;
    loaded l;
    if (!load_vocab("gpt-2", &l)) return;
    const char *s = "a<|endoftext|>b";
    tok_vec off = encode(l.t, s, strlen(s), 0);
    assert_false(contains(&off, 50256));
    char *d = decode(l.t, &off, 0, NULL);
    assert_string_equal(d, s);
    free(d);
    tok_vec on = encode(l.t, s, strlen(s), LLMS_TOKENIZE_PARSE_SPECIAL);
    assert_int_equal(on.n, 3);
    assert_int_equal(on.data[1], 50256);
    d = decode(l.t, &on, 0, NULL);
    assert_string_equal(d, "ab");
    free(d);
    d = decode(l.t, &on, LLMS_DETOKENIZE_SPECIAL, NULL);
    assert_string_equal(d, s);
    free(d);
    /* Longest match wins, and a partial special text is plain text. */
    const char *partial = "<|endoftext|<|endoftext|>";
    tok_vec pv = encode(l.t, partial, strlen(partial), LLMS_TOKENIZE_PARSE_SPECIAL);
    assert_int_equal(pv.data[pv.n - 1], 50256);
    assert_int_equal(contains(&pv, 50256), 1);
    free(pv.data);
    free(off.data);
    free(on.data);
    unload(&l);
}

/* User-defined tokens (GPT-NeoX's runs of spaces) are matched even without
 * PARSE_SPECIAL, longest first. */
static void test_user_defined_mpt(void **state) {
    (void)state;
    loaded l;
    if (!load_vocab("mpt", &l)) return;
    char s[64];
    memset(s, ' ', 30);
    strcpy(s + 30, "x");
    tok_vec v = encode(l.t, s, strlen(s), 0);
    /* 24 spaces (id 50254), then 6 spaces (50272), then x */
    assert_true(v.n >= 2);
    assert_int_equal(v.data[0], 50254);
    assert_int_equal(v.data[1], 50272);
    char *d = decode(l.t, &v, 0, NULL);
    assert_string_equal(d, s);
    free(d);
    free(v.data);
    unload(&l);
}

static void test_bos_eos(void **state) {
    (void)state;
    loaded l;
    if (!load_vocab("llama-spm", &l)) return;
    assert_int_equal(tok_special(l.t, LLMS_SPECIAL_BOS), 1);
    assert_int_equal(tok_special(l.t, LLMS_SPECIAL_EOS), 2);
    assert_int_equal(tok_special(l.t, LLMS_SPECIAL_UNK), 0);
    assert_int_equal(tok_special(l.t, LLMS_SPECIAL_NL), 13);  /* <0x0A> */
    assert_int_equal(tok_special(l.t, 99), -1);
    assert_true(tok_add_bos_default(l.t));
    assert_false(tok_add_eos_default(l.t));
    assert_true(tok_is_eog(l.t, 2));
    assert_false(tok_is_eog(l.t, 1));
    assert_true(tok_is_control(l.t, 1));
    assert_false(tok_is_eog(l.t, -1));
    assert_false(tok_is_eog(l.t, 1 << 30));
    tok_vec a = encode(l.t, "Hi", 2, LLMS_TOKENIZE_ADD_BOS);
    tok_vec b = encode(l.t, "Hi", 2, LLMS_TOKENIZE_MODEL_DEFAULTS);
    tok_vec c = encode(l.t, "Hi", 2, 0);
    tok_vec e = encode(l.t, "", 0, LLMS_TOKENIZE_ADD_BOS);
    assert_int_equal(a.data[0], 1);
    assert_int_equal(a.n, c.n + 1);
    assert_int_equal(b.n, a.n);
    assert_memory_equal(a.data, b.data, a.n * sizeof(int32_t));
    assert_int_equal(e.n, 1);
    /* The BOS renders as nothing; the space SPM prepended is dropped. */
    char *d = decode(l.t, &a, 0, NULL);
    assert_string_equal(d, "Hi");
    free(d);
    d = decode(l.t, &a, LLMS_DETOKENIZE_KEEP_LEADING_SPACE, NULL);
    assert_string_equal(d, " Hi");
    free(d);
    free(a.data); free(b.data); free(c.data); free(e.data);
    unload(&l);

    /* gpt-2 has no add_bos_token key: byte-level BPE adds no BOS by default. */
    if (!load_vocab("gpt-2", &l)) return;
    assert_false(tok_add_bos_default(l.t));
    assert_int_equal(tok_special(l.t, LLMS_SPECIAL_BOS), 50256);
    assert_true(tok_is_eog(l.t, 50256));
    a = encode(l.t, "Hi", 2, LLMS_TOKENIZE_MODEL_DEFAULTS);
    b = encode(l.t, "Hi", 2, LLMS_TOKENIZE_ADD_BOS);
    assert_int_equal(b.n, a.n + 1);
    assert_int_equal(b.data[0], 50256);
    free(a.data); free(b.data);
    unload(&l);

    /* deepseek: add_bos_token true. */
    if (!load_vocab("deepseek-llm", &l)) return;
    assert_true(tok_add_bos_default(l.t));
    a = encode(l.t, "Hi", 2, LLMS_TOKENIZE_MODEL_DEFAULTS);
    assert_int_equal(a.data[0], 100000);
    assert_true(tok_is_eog(l.t, 100001));
    free(a.data);
    unload(&l);

    /* phi-3: end of turn by text, and its added tokens eat the whitespace
     * after them (rstrip), except <s>, <unk> and <|endoftext|>. */
    if (!load_vocab("phi-3", &l)) return;
    assert_int_equal(tok_special(l.t, LLMS_SPECIAL_EOS), 32000);
    assert_true(tok_is_eog(l.t, 32007));  /* <|end|> */
    assert_true(tok_is_eog(l.t, 32000));
    const char *chat = "<|user|>\nHi<|end|>\n<|assistant|>";
    a = encode(l.t, chat, strlen(chat), LLMS_TOKENIZE_PARSE_SPECIAL);
    b = encode(l.t, "Hi", 2, 0);
    assert_int_equal(a.n, b.n + 3);
    assert_int_equal(a.data[0], 32010);
    assert_memory_equal(a.data + 1, b.data, b.n * sizeof(int32_t));
    assert_int_equal(a.data[a.n - 2], 32007);
    assert_int_equal(a.data[a.n - 1], 32001);
    free(a.data); free(b.data);
    unload(&l);
}

/* ------------------------------------------------------------------------ */
/* Decoding                                                                   */
/* ------------------------------------------------------------------------ */

static void test_decode_rules(void **state) {
    (void)state;
    loaded l;
    if (!load_vocab("llama-spm", &l)) return;
    /* An emoji without a token of its own falls back to four byte tokens;
     * each piece is one byte and together they make the character. */
    const char *llama = "\xf0\x9f\xa6\x99";
    tok_vec v = encode(l.t, llama, 4, 0);
    size_t n;
    int bytes = 0;
    for (size_t i = 0; i < v.n; i++) {
        tok_piece(l.t, v.data[i], 0, &n);
        if (n == 1) bytes++;
    }
    assert_true(bytes >= 4);
    char *d = decode(l.t, &v, 0, NULL);
    assert_string_equal(d, llama);
    free(d);

    /* Buffer semantics: too small reports the size, partial content. */
    size_t need;
    char small[3];
    assert_int_equal(tok_decode(l.t, v.data, v.n, 0, small, sizeof small, &need),
                     LLMS_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(need, 4);
    char exact[5];
    assert_int_equal(tok_decode(l.t, v.data, v.n, 0, exact, 4, &need), LLMS_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(tok_decode(l.t, v.data, v.n, 0, exact, 5, &need), LLMS_OK);
    assert_string_equal(exact, llama);
    int32_t bad = 1 << 30;
    assert_int_equal(tok_decode(l.t, &bad, 1, 0, exact, 5, &need), LLMS_ERR_TOKEN_RANGE);
    assert_null(tok_piece(l.t, -1, 0, &n));
    assert_null(tok_piece(l.t, tok_n_vocab(l.t), 0, &n));
    assert_int_equal(tok_decode(l.t, NULL, 0, 0, exact, 5, &need), LLMS_OK);
    assert_int_equal(need, 0);
    assert_string_equal(exact, "");
    free(v.data);

    /* Only one leading space goes. */
    v = encode(l.t, "  two", 5, 0);
    d = decode(l.t, &v, 0, NULL);
    assert_string_equal(d, "  two");
    free(d);
    free(v.data);
    unload(&l);

    /* Byte-level BPE pieces are raw bytes: a token may hold part of a
     * character, and the concatenation restores it. */
    if (!load_vocab("gpt-2", &l)) return;
    const char *cjk = "\xe6\x88\x91\xe6\x83\xb3";
    v = encode(l.t, cjk, strlen(cjk), 0);
    assert_true(v.n >= 2);
    d = decode(l.t, &v, 0, NULL);
    assert_string_equal(d, cjk);
    free(d);
    free(v.data);
    /* " Hello" keeps its space: BPE prepends nothing. */
    v = encode(l.t, " Hello", 6, 0);
    d = decode(l.t, &v, 0, NULL);
    assert_string_equal(d, " Hello");
    free(d);
    free(v.data);
    unload(&l);
}

/* Random texts assembled from awkward fragments (special texts, partial
 * special texts, whitespace runs, digits, multi-byte and invalid UTF-8),
 * with random flags: nothing may crash (run under the sanitizers), and for
 * gpt-2, whose vocabulary covers every byte, decoding with special text
 * shown must give the input back exactly. */
static void check_random_texts(const char *vocab, int exact) {
    static const char *const frag[] = {
        "<|endoftext|>", "<|endoftext", "<s>", "</s>", "<unk>", "<|end|>", "<|user|>", " ", "  ",
        "\n", "\r\n", "\t", "a", "Hello", "'s", "'LL", "123", "4", "\xc3\xa4", "\xe6\x88\x91",
        "\xf0\x9f\xa6\x99", "\xe2\x96\x81", "\xff", "\xc3", "\x80", "!!", "?", ".", "-",
        "\xef\xbd\x9e", "\xe3\x80\x80", "\xc2\xa0", "[PAD32011]", "<fim_prefix>",
    };
    loaded l;
    if (!load_vocab(vocab, &l)) return;
    uint64_t x = 12345;
    char buf[256];
    for (int it = 0; it < 3000; it++) {
        size_t n = 0;
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        int parts = (int)(x % 12);
        for (int k = 0; k < parts; k++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            const char *f = frag[x % (sizeof frag / sizeof frag[0])];
            size_t fl = strlen(f);
            if (n + fl >= sizeof buf) break;
            memcpy(buf + n, f, fl);
            n += fl;
        }
        uint32_t flags = (uint32_t)(x >> 40) & 7;
        tok_vec v = encode(l.t, buf, n, flags);
        for (size_t i = 0; i < v.n; i++) assert_true(v.data[i] >= 0 && v.data[i] < tok_n_vocab(l.t));
        size_t dn;
        char *d = decode(l.t, &v, LLMS_DETOKENIZE_SPECIAL, &dn);
        if (exact && !(flags & (LLMS_TOKENIZE_ADD_BOS | LLMS_TOKENIZE_MODEL_DEFAULTS)) &&
            (dn != n || memcmp(d, buf, n)))
            fail_msg("%s: \"%.*s\" came back as \"%s\"", vocab, (int)n, buf, d);
        free(d);
        free(v.data);
    }
    unload(&l);
}

static void test_random_texts(void **state) {
    (void)state;
    check_random_texts("gpt-2", 1);
    check_random_texts("llama-spm", 0);
    check_random_texts("phi-3", 0);
    check_random_texts("deepseek-coder", 0);
    check_random_texts("mpt", 0);
    check_random_texts("starcoder", 0);
}

/* ------------------------------------------------------------------------ */
/* Linear time                                                                */
/* ------------------------------------------------------------------------ */

#define MIB (1u << 20)

/* Tokenizes s[0..n) against the clock; if `expect` is not NULL the decoded
 * text must equal it. */
static void timed_case(const tokenizer *t, const char *what, const char *vocab, const char *s,
                       size_t n, const char *expect, size_t expect_n) {
    double t0 = now_s();
    tok_vec v = encode(t, s, n, 0);
    double dt = now_s() - t0;
    fprintf(stderr, "  %-14s %-14s %8zu tokens in %.3f s\n", vocab, what, v.n, dt);
    assert_true(v.n > 0);
    if (dt > 1.0 * SLOWDOWN) fail_msg("%s on %s took %.2f s (limit %.1f s)", what, vocab, dt, SLOWDOWN);
    if (expect) {
        size_t len;
        char *d = decode(t, &v, 0, &len);
        assert_int_equal(len, expect_n);
        assert_memory_equal(d, expect, expect_n);
        free(d);
    }
    free(v.data);
}

/* exact: 0 = only the valid UTF-8 inputs must round-trip (the vocabulary
 * lacks tokens for bytes that never occur in UTF-8: C0, C1, F5..FF, or, for
 * falcon, some control bytes); 1 = every input; 2 = SentencePiece, where a
 * literal U+2581 in the input comes back as a space. */
static void check_linear(const char *vocab, int exact) {
    loaded l;
    if (!load_vocab(vocab, &l)) return;
    char *s = malloc(MIB), *e = malloc(MIB);
    assert_non_null(s);
    assert_non_null(e);
    memset(s, 'a', MIB);
    timed_case(l.t, "1 MiB 'a'", vocab, s, MIB, s, MIB);
    memset(s, ' ', MIB);
    timed_case(l.t, "1 MiB ' '", vocab, s, MIB, s, MIB);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < MIB; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        s[i] = (char)(x >> 24);
    }
    size_t en = 0;
    for (size_t i = 0; i < MIB; i++) {
        if (exact == 2 && i + 3 <= MIB && !memcmp(s + i, "\xe2\x96\x81", 3)) {
            e[en++] = ' ';
            i += 2;
        } else {
            e[en++] = s[i];
        }
    }
    timed_case(l.t, "random bytes", vocab, s, MIB, exact ? e : NULL, en);
    /* Nothing but invalid UTF-8: stray continuation bytes, 0xFF, and lead
     * bytes followed by ASCII. */
    for (size_t i = 0; i < MIB; i++) {
        static const unsigned char pat[] = { 0x80, 0xBF, 0xFF, 0xC3, '(', 0xE2, 0x82, 'x', 0x9F };
        s[i] = (char)pat[i % sizeof pat];
    }
    timed_case(l.t, "invalid UTF-8", vocab, s, MIB, exact ? s : NULL, MIB);
    free(s);
    free(e);
    unload(&l);
}

static void test_linear_llama_spm(void **state) { (void)state; check_linear("llama-spm", 2); }
static void test_linear_gpt2(void **state) { (void)state; check_linear("gpt-2", 1); }
static void test_linear_deepseek_llm(void **state) { (void)state; check_linear("deepseek-llm", 0); }
static void test_linear_deepseek_coder(void **state) { (void)state; check_linear("deepseek-coder", 0); }
static void test_linear_mpt(void **state) { (void)state; check_linear("mpt", 0); }
static void test_linear_falcon(void **state) { (void)state; check_linear("falcon", 0); }

/* ------------------------------------------------------------------------ */
/* Synthetic vocabularies: unsupported models, pre-tokenizers, llama3 rules,  */
/* allocation failures                                                        */
/* ------------------------------------------------------------------------ */

/* A byte-level vocabulary: the 256 mapped bytes, then "Ġt", "he", "Ġthe",
 * "<|eot_id|>" (control), with merges "Ġ t", "h e", "Ġt he". The GPT-2
 * mapped form of a byte b below '!' is U+0100 + b, so ' ' is "Ġ". */
static void write_bpe_vocab(gguf_writer *w, const char *model, const char *pre,
                            int with_merges) {
    uint64_t n_kv = 3 + (pre != NULL) + (with_merges != 0);
    gw_header(w, 3, 0, n_kv);
    gw_kv_str(w, "tokenizer.ggml.model", model);
    if (pre) gw_kv_str(w, "tokenizer.ggml.pre", pre);
    gw_kv_arr(w, "tokenizer.ggml.tokens", GGUF_STRING, 256 + 4);
    for (int b = 0, extra = 0; b < 256; b++) {
        int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        uint32_t cp = printable ? (uint32_t)b : 256u + (uint32_t)extra++;
        char u[3];
        size_t un;
        if (cp < 0x80) { u[0] = (char)cp; un = 1; }
        else { u[0] = (char)(0xC0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 0x3F)); un = 2; }
        gw_strn(w, u, un);
    }
    gw_str(w, "\xc4\xa0t");
    gw_str(w, "he");
    gw_str(w, "\xc4\xa0the");
    gw_str(w, "<|eot_id|>");
    gw_kv_arr(w, "tokenizer.ggml.token_type", GGUF_INT32, 256 + 4);
    for (int i = 0; i < 256 + 3; i++) gw_u32(w, 1);
    gw_u32(w, 3);
    if (with_merges) {
        gw_kv_arr(w, "tokenizer.ggml.merges", GGUF_STRING, 3);
        gw_str(w, "\xc4\xa0 t");
        gw_str(w, "h e");
        gw_str(w, "\xc4\xa0t he");
    }
    assert_false(w->oom);
}

static llms_status load_mem(const gguf_writer *w, gguf_file **f, tokenizer **t) {
    assert_int_equal(gguf_open_memory(&lalloc_libc, w->buf, w->len, f), LLMS_OK);
    return tok_load(&lalloc_libc, *f, t);
}

static void test_unsupported(void **state) {
    (void)state;
    gguf_writer w;
    gguf_file *f;
    tokenizer *t = NULL;

    gw_init(&w);
    write_bpe_vocab(&w, "bert", NULL, 0);
    assert_int_equal(load_mem(&w, &f, &t), LLMS_ERR_UNSUPPORTED);
    assert_non_null(strstr(err_message(), "bert"));
    assert_null(t);
    gguf_close(f);
    gw_free(&w);

    gw_init(&w);
    write_bpe_vocab(&w, "gpt2", "no-such-pre", 1);
    assert_int_equal(load_mem(&w, &f, &t), LLMS_ERR_UNSUPPORTED);
    assert_non_null(strstr(err_message(), "no-such-pre"));
    gguf_close(f);
    gw_free(&w);

    /* gpt2 without merges is inconsistent. */
    gw_init(&w);
    write_bpe_vocab(&w, "gpt2", "gpt-2", 0);
    assert_int_equal(load_mem(&w, &f, &t), LLMS_ERR_TOKENIZER);
    gguf_close(f);
    gw_free(&w);

    /* No tokenizer at all. */
    gw_init(&w);
    gw_header(&w, 3, 0, 1);
    gw_kv_str(&w, "general.architecture", "llama");
    assert_int_equal(load_mem(&w, &f, &t), LLMS_ERR_TOKENIZER);
    gguf_close(f);
    gw_free(&w);
}

static void test_synthetic_bpe(void **state) {
    (void)state;
    gguf_writer w;
    gguf_file *f;
    tokenizer *t = NULL;

    /* Missing .pre: the default rules. */
    gw_init(&w);
    write_bpe_vocab(&w, "gpt2", NULL, 1);
    assert_int_equal(load_mem(&w, &f, &t), LLMS_OK);
    tok_vec v = encode(t, " the", 4, 0);
    assert_int_equal(v.n, 1);
    assert_int_equal(v.data[0], 256 + 2);
    free(v.data);
    /* Tokens are the bytes' pieces, merges and all. */
    v = encode(t, "xthe the", 8, 0);
    assert_int_equal(v.n, 4);  /* x, t, he, " the" */
    assert_int_equal(v.data[2], 256 + 1);
    assert_int_equal(v.data[3], 256 + 2);
    free(v.data);
    tok_free(t);
    gguf_close(f);
    gw_free(&w);

    /* llama-bpe: BOS by default (the file has no BOS id, so none is added),
     * case-insensitive contractions, digits in threes, and the control
     * token <|eot_id|> ends generation. */
    gw_init(&w);
    write_bpe_vocab(&w, "gpt2", "llama-bpe", 1);
    assert_int_equal(load_mem(&w, &f, &t), LLMS_OK);
    assert_true(tok_add_bos_default(t));
    assert_true(tok_is_eog(t, 256 + 3));
    assert_int_equal(tok_special(t, LLMS_SPECIAL_EOT), 256 + 3);
    v = encode(t, " the", 4, 0);
    assert_int_equal(v.n, 1);
    assert_int_equal(v.data[0], 256 + 2);
    free(v.data);
    /* Without merges for them, words fall back to their bytes; pieces of
     * single mapped bytes are those bytes. */
    v = encode(t, "I'VE 12345", 10, 0);
    assert_int_equal(v.n, 10);
    char *d = decode(t, &v, 0, NULL);
    assert_string_equal(d, "I'VE 12345");
    free(d);
    free(v.data);
    tok_free(t);
    gguf_close(f);
    gw_free(&w);
}

/* Pre-tokenizer rules on their own (words as the published regexes cut
 * them; see tok_bpe.c), for the families without fixture vectors. */
static void check_split(int pre, const char *text, const char *const *want, size_t n_want) {
    tok_scratch s = { &lalloc_libc, { 0 }, { 0 } };
    const size_t *ends;
    size_t n;
    assert_int_equal(tok_bpe_split(pre, &s, text, strlen(text), &ends, &n), LLMS_OK);
    int ok = n == n_want;
    for (size_t i = 0, start = 0; ok && i < n; start = ends[i], i++)
        ok = ends[i] - start == strlen(want[i]) && !memcmp(text + start, want[i], ends[i] - start);
    if (!ok) {
        fprintf(stderr, "pre %d, \"%s\":\n  got:", pre, text);
        for (size_t i = 0, start = 0; i < n; start = ends[i], i++)
            fprintf(stderr, " [%.*s]", (int)(ends[i] - start), text + start);
        fprintf(stderr, "\n");
    }
    tok_scratch_free(&s);
    assert_true(ok);
}

#define SPLIT(pre, text, ...) do { \
        static const char *const w_[] = { __VA_ARGS__ }; \
        check_split(pre, text, w_, sizeof w_ / sizeof w_[0]); \
    } while (0)

static void test_pretokenizers(void **state) {
    (void)state;
    /* llama3: contractions any case, a leading non-letter joins a word,
     * numbers in threes, newlines with the whitespace before them. */
    SPLIT(PRE_LLAMA3, "Hello, y'all! How are you \xf0\x9f\x98\x81 ?\xe6\x88\x91\xe6\x83\xb3"
          "apple\xe5\xb7\2451314151\xe5\xa4\xa9\xef\xbd\x9e",
          "Hello", ",", " y", "'all", "!", " How", " are", " you", " \xf0\x9f\x98\x81", " ?",
          "\xe6\x88\x91\xe6\x83\263apple\xe5\xb7\xa5", "131", "415", "1", "\xe5\xa4\xa9",
          "\xef\xbd\x9e");
    SPLIT(PRE_LLAMA3, "I'VE 12345\n\n  x  ",
          "I", "'VE", " ", "123", "45", "\n\n", " ", " x", "  ");
    SPLIT(PRE_LLAMA3, "a \n\n b;;\n\nc", "a", " \n\n", " b", ";;\n\n", "c");
    /* qwen2: the same with single digits. */
    SPLIT(PRE_QWEN2, "x12345", "x", "1", "2", "3", "4", "5");
    /* gpt-2: case-sensitive contractions, one space leads a word. */
    SPLIT(PRE_GPT2, "I'VE it's  a", "I", "'", "VE", " it", "'s", " ", " a");
    /* starcoder / refact: every digit apart, then gpt-2. */
    SPLIT(PRE_STARCODER, "abc123 x", "abc", "1", "2", "3", " x");
    /* falcon: punctuation and ASCII symbols first, digits in threes last. */
    SPLIT(PRE_FALCON, "Hello, world! 1234567 x+=1",
          "Hello", ",", " world", "!", " ", "123", "456", "7", " x", "+=", "1");
    /* default (no pre key). */
    SPLIT(PRE_DEFAULT, "a+b 12345", "a", "+", "b", " ", "123", "45");
    /* deepseek-llm: cased letters, its punctuation set, trailing spaces,
     * CJK runs, number runs. */
    SPLIT(PRE_DEEPSEEK_LLM, "Hello  world\n1234 \xe4\xb8\xad\xe6\x96\x87 !!",
          "Hello", " ", " world", "\n", "1234", " ", "\xe4\xb8\xad\xe6\x96\x87", " !!");
    SPLIT(PRE_DEEPSEEK_LLM, "ab  ", "ab", "  ");
    /* deepseek-coder: \s?\p{L}+, \s?\p{P}+, single digits. */
    SPLIT(PRE_DEEPSEEK_CODER, "x = foo(12)\n", "x", " =", " foo", "(", "1", "2", ")", "\n");
    /* Invalid UTF-8 keeps its bytes: 0xFF is "other" punctuation-like. */
    SPLIT(PRE_GPT2, "a\xff\xfe b", "a", "\xff\xfe", " b");
}

/* An allocator that fails the N-th call and every call after it. */
typedef struct failing {
    long left;
    long calls;
} failing;

static void *f_malloc(void *u, size_t n) {
    failing *fa = u;
    fa->calls++;
    return fa->left-- > 0 ? malloc(n) : NULL;
}
static void *f_realloc(void *u, void *p, size_t n) {
    failing *fa = u;
    fa->calls++;
    return fa->left-- > 0 ? realloc(p, n) : NULL;
}
static void f_free(void *u, void *p) { (void)u; free(p); }

static void test_alloc_failures(void **state) {
    (void)state;
    gguf_writer w;
    gw_init(&w);
    write_bpe_vocab(&w, "gpt2", "gpt-2", 1);
    gguf_file *f;
    assert_int_equal(gguf_open_memory(&lalloc_libc, w.buf, w.len, &f), LLMS_OK);
    const char *text = "the x <|eot_id|> the  the";
    int loaded_ok = 0;
    for (long k = 0; k < 200 && !loaded_ok; k++) {
        failing fa = { k, 0 };
        lalloc a = { &fa, f_malloc, f_realloc, f_free };
        tokenizer *t = NULL;
        llms_status st = tok_load(&a, f, &t);
        if (st) {
            assert_int_equal(st, LLMS_ERR_NO_MEMORY);
            assert_null(t);
            continue;
        }
        loaded_ok = 1;
        /* Now fail each allocation of an encode in turn. */
        for (long e = 0; e < 100; e++) {
            fa.left = e;
            tok_vec v = { 0 };
            st = tok_encode(t, text, strlen(text), LLMS_TOKENIZE_PARSE_SPECIAL, &v);
            xfree(&a, v.data);
            if (!st) break;
            assert_int_equal(st, LLMS_ERR_NO_MEMORY);
        }
        fa.left = 1 << 30;
        tok_free(t);
    }
    assert_true(loaded_ok);
    gguf_close(f);
    gw_free(&w);
}

static void test_unicode_tables(void **state) {
    (void)state;
    /* The ASCII fast path agrees with the generated table. */
    for (uint32_t c = 0; c < 128; c++) {
        size_t lo = 0;
        while (lo + 1 < uni_n_runs && uni_run_start[lo + 1] <= c) lo++;
        assert_int_equal(uni_flags(c), uni_run_flags[lo]);
    }
    assert_true(uni_flags(0x00E4) & UNI_LETTER);      /* ä */
    assert_true(uni_flags(0x0661) & UNI_NUMBER);      /* Arabic-Indic one */
    assert_true(uni_flags(0x00BD) & UNI_NUMBER);      /* ½ is No */
    assert_true(uni_flags(0x3001) & UNI_PUNCT);       /* 、 */
    assert_true(uni_flags(0x3000) & UNI_SPACE);
    assert_true(uni_flags(0x0085) & UNI_SPACE);
    assert_false(uni_flags(0x200B) & UNI_SPACE);      /* zero width space is not White_Space */
    assert_int_equal(uni_flags(0x1F600), 0);          /* emoji: So */
    assert_int_equal(uni_flags(0x110000), 0);
    uint32_t cp;
    assert_int_equal(uni_decode((const unsigned char *)"\xc3", 1, &cp), 1);
    assert_int_equal(cp, UNI_REPLACEMENT);
    assert_int_equal(uni_decode((const unsigned char *)"\xe2\x96\x81", 3, &cp), 3);
    assert_int_equal(cp, 0x2581);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unicode_tables),
        cmocka_unit_test(test_vectors_llama_spm),
        cmocka_unit_test(test_vectors_phi3),
        cmocka_unit_test(test_vectors_gpt2),
        cmocka_unit_test(test_vectors_deepseek_llm),
        cmocka_unit_test(test_vectors_deepseek_coder),
        cmocka_unit_test(test_vectors_mpt),
        cmocka_unit_test(test_round_trip_llama_spm),
        cmocka_unit_test(test_round_trip_phi3),
        cmocka_unit_test(test_round_trip_gpt2),
        cmocka_unit_test(test_round_trip_deepseek_llm),
        cmocka_unit_test(test_round_trip_deepseek_coder),
        cmocka_unit_test(test_round_trip_mpt),
        cmocka_unit_test(test_round_trip_falcon),
        cmocka_unit_test(test_round_trip_refact),
        cmocka_unit_test(test_round_trip_starcoder),
        cmocka_unit_test(test_digit_rules),
        cmocka_unit_test(test_special_spm),
        cmocka_unit_test(test_special_bpe),
        cmocka_unit_test(test_user_defined_mpt),
        cmocka_unit_test(test_bos_eos),
        cmocka_unit_test(test_decode_rules),
        cmocka_unit_test(test_random_texts),
        cmocka_unit_test(test_linear_llama_spm),
        cmocka_unit_test(test_linear_gpt2),
        cmocka_unit_test(test_linear_deepseek_llm),
        cmocka_unit_test(test_linear_deepseek_coder),
        cmocka_unit_test(test_linear_mpt),
        cmocka_unit_test(test_linear_falcon),
        cmocka_unit_test(test_pretokenizers),
        cmocka_unit_test(test_unsupported),
        cmocka_unit_test(test_synthetic_bpe),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
