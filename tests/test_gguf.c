/*
 * GGUF reader tests: one test per class of hostile input (each asserting the
 * specific status and that the message names the key or tensor), exhaustive
 * truncation, allocation failure at every point, and the real fixtures.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "gguf/gguf.h"
#include "support/fixtures.h"
#include "support/gguf_writer.h"

/* ------------------------------------------------------------------------ */
/* A counting allocator: live blocks, peak bytes, and fail-the-N-th.         */
/* ------------------------------------------------------------------------ */

typedef struct talloc {
    long live;         /* blocks not yet freed */
    long n_allocs;     /* allocations attempted (malloc and realloc) */
    long fail_at;      /* fail the fail_at-th attempt (1-based); 0 = never */
    size_t bytes;      /* bytes live */
    size_t peak;       /* most bytes live at once */
} talloc;

/* Each block carries its size in a 16-byte header so free can account. */
static void *t_malloc(void *user, size_t size) {
    talloc *t = user;
    t->n_allocs++;
    if (t->fail_at && t->n_allocs == t->fail_at) return NULL;
    if (size > SIZE_MAX - 16) return NULL;
    unsigned char *p = malloc(size + 16);
    if (!p) return NULL;
    memcpy(p, &size, sizeof size);
    t->live++;
    t->bytes += size;
    if (t->bytes > t->peak) t->peak = t->bytes;
    return p + 16;
}

static void t_free(void *user, void *ptr) {
    talloc *t = user;
    if (!ptr) return;
    unsigned char *p = (unsigned char *)ptr - 16;
    size_t size;
    memcpy(&size, p, sizeof size);
    t->live--;
    t->bytes -= size;
    free(p);
}

static void *t_realloc(void *user, void *ptr, size_t size) {
    if (!ptr) return t_malloc(user, size);
    talloc *t = user;
    void *n = t_malloc(user, size);
    if (!n) return NULL;
    size_t old;
    memcpy(&old, (unsigned char *)ptr - 16, sizeof old);
    memcpy(n, ptr, old < size ? old : size);
    t_free(t, ptr);
    return n;
}

static talloc g_t;
static lalloc g_alloc = {&g_t, t_malloc, t_realloc, t_free};

static int reset_alloc(void **state) {
    (void)state;
    memset(&g_t, 0, sizeof g_t);
    return 0;
}

/* Every test ends with nothing live. */
static int check_leaks(void **state) {
    (void)state;
    assert_int_equal(g_t.live, 0);
    assert_int_equal(g_t.bytes, 0);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

/* Opens a copy of the image in an allocation of exactly its size, so the
 * address sanitizer catches any read past the end. The copy stays alive
 * with the file: close with close_image. */
typedef struct image {
    uint8_t *copy;
    gguf_file *f;
} image;

static llms_status open_image(const void *p, size_t n, image *im) {
    im->copy = malloc(n ? n : 1);
    assert_non_null(im->copy);
    if (n) memcpy(im->copy, p, n);
    im->f = NULL;
    llms_status st = gguf_open_memory(&g_alloc, im->copy, n, &im->f);
    if (st != LLMS_OK) {
        assert_null(im->f);
        free(im->copy);
        im->copy = NULL;
    }
    return st;
}

static void close_image(image *im) {
    gguf_close(im->f);
    free(im->copy);
    im->f = NULL;
    im->copy = NULL;
}

/* Opens, expects `status`, and checks the message holds every given
 * fragment (NULL-terminated list). Also checks that no allocation was far
 * larger than the file: a hostile count must not become a huge malloc. */
static void expect_status(gguf_writer *w, llms_status status, ...) {
    assert_false(w->oom);
    image im;
    size_t peak0 = g_t.peak;
    llms_status st = open_image(w->buf, w->len, &im);
    if (st == LLMS_OK) close_image(&im);
    if (st != status)
        fail_msg("expected status %d, got %d (%s)", (int)status, (int)st, err_message());
    const char *msg = err_message();
    va_list ap;
    va_start(ap, status);
    for (const char *frag; (frag = va_arg(ap, const char *)) != NULL;) {
        if (!strstr(msg, frag)) {
            va_end(ap);
            fail_msg("message \"%s\" lacks \"%s\"", msg, frag);
        }
    }
    va_end(ap);
    /* 64 KiB of fixed overhead plus a small multiple of the file. */
    size_t bound = 65536 + 8 * w->len;
    if (g_t.peak > peak0 && g_t.peak > bound)
        fail_msg("peak allocation %zu bytes for a %zu-byte file", g_t.peak, w->len);
    assert_int_equal(g_t.live, 0);
    gw_free(w);
}

static llms_status open_writer(gguf_writer *w, image *im) {
    assert_false(w->oom);
    return open_image(w->buf, w->len, im);
}

/* A valid file: one KV and one F32 tensor of 8 elements. The hostile tests
 * mostly start from this shape and change one field. */
static const uint64_t DIMS8[1] = {8};

static void small_file(gguf_writer *w) {
    gw_init(w);
    gw_header(w, 3, 1, 1);
    gw_kv_str(w, "general.architecture", "llama");
    gw_tensor(w, "t0", 1, DIMS8, LLMS_TYPE_F32, 0);
    gw_pad(w, 32);
    for (int i = 0; i < 8; i++) gw_f32(w, (float)i);
}

/* ------------------------------------------------------------------------ */
/* Header                                                                    */
/* ------------------------------------------------------------------------ */

static void test_minimal_valid(void **state) {
    (void)state;
    for (uint32_t ver = 2; ver <= 3; ver++) {
        gguf_writer w;
        gw_init(&w);
        gw_header(&w, ver, 0, 0);
        image im;
        assert_int_equal(open_writer(&w, &im), LLMS_OK);
        assert_int_equal(gguf_version(im.f), ver);
        assert_int_equal(gguf_kv_count(im.f), 0);
        assert_int_equal(gguf_tensor_count(im.f), 0);
        assert_int_equal(gguf_alignment(im.f), GGUF_DEFAULT_ALIGNMENT);
        /* No tensors: an unpadded end is fine, the data section is empty. */
        assert_int_equal(gguf_data_offset(im.f), 24);
        assert_int_equal(gguf_file_size(im.f), 24);
        assert_null(gguf_find(im.f, "general.architecture"));
        assert_null(gguf_find_tensor(im.f, "x"));
        assert_null(gguf_kv_key(im.f, 0));
        assert_null(gguf_kv_value(im.f, 0));
        assert_null(gguf_tensor_at(im.f, 0));
        close_image(&im);
        gw_free(&w);
    }
}

static void test_bad_magic(void **state) {
    (void)state;
    gguf_writer w;
    gw_init(&w);
    gw_bytes(&w, "GGML", 4);
    gw_u32(&w, 3);
    gw_u64(&w, 0);
    gw_u64(&w, 0);
    expect_status(&w, LLMS_ERR_GGUF_MAGIC, "magic", NULL);
    /* Even a one-byte file is recognisably not GGUF. */
    gw_init(&w);
    gw_u8(&w, 'X');
    expect_status(&w, LLMS_ERR_GGUF_MAGIC, "magic", NULL);
    /* An empty image is a truncated one. */
    gw_init(&w);
    expect_status(&w, LLMS_ERR_GGUF_TRUNCATED, "magic", NULL);
}

static void test_bad_version(void **state) {
    (void)state;
    const uint32_t bad[] = {0, 1, 4, 0x03000000u /* a big-endian v3 */};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gguf_writer w;
        gw_init(&w);
        gw_header(&w, bad[i], 0, 0);
        char frag[32];
        snprintf(frag, sizeof frag, "version %u", (unsigned)bad[i]);
        expect_status(&w, LLMS_ERR_GGUF_VERSION, frag, NULL);
    }
}

/* ------------------------------------------------------------------------ */
/* Counts and lengths                                                        */
/* ------------------------------------------------------------------------ */

static void test_kv_count_wraps(void **state) {
    (void)state;
    gguf_writer w;
    /* 2^62 KVs of at least 13 bytes: the product wraps 64 bits. */
    gw_init(&w);
    gw_header(&w, 3, 0, 1ull << 62);
    gw_kv_u32(&w, "a", 1);
    expect_status(&w, LLMS_ERR_GGUF_OVERFLOW, "kv count", NULL);
    /* UINT64_MAX too. */
    gw_init(&w);
    gw_header(&w, 3, 0, UINT64_MAX);
    expect_status(&w, LLMS_ERR_GGUF_OVERFLOW, "kv count", NULL);
    /* Large but not wrapping: the file is simply too short for them, and
     * nothing is allocated for a million entries. */
    gw_init(&w);
    gw_header(&w, 3, 0, 1u << 20);
    gw_kv_u32(&w, "a", 1);
    expect_status(&w, LLMS_ERR_GGUF_TRUNCATED, "kv count", NULL);
}

static void test_tensor_count_wraps(void **state) {
    (void)state;
    gguf_writer w;
    gw_init(&w);
    gw_header(&w, 3, 1ull << 60, 0);  /* x 32 bytes wraps */
    gw_tensor(&w, "t0", 1, DIMS8, LLMS_TYPE_F32, 0);
    expect_status(&w, LLMS_ERR_GGUF_OVERFLOW, "tensor count", NULL);
    gw_init(&w);
    gw_header(&w, 3, 100000, 0);
    gw_tensor(&w, "t0", 1, DIMS8, LLMS_TYPE_F32, 0);
    expect_status(&w, LLMS_ERR_GGUF_TRUNCATED, "tensor count", NULL);
    /* Counts that fit alone but not together. */
    gw_init(&w);
    gw_header(&w, 3, 2, 2);
    gw_zeros(&w, 2 * 32);
    expect_status(&w, LLMS_ERR_GGUF_TRUNCATED, "tensor count", NULL);
}

static void test_array_length_wraps(void **state) {
    (void)state;
    gguf_writer w;
    /* u64 elements: 2^61 x 8 wraps. */
    gw_init(&w);
    gw_header(&w, 3, 0, 1);
    gw_kv_arr(&w, "big.u64", GGUF_UINT64, 1ull << 61);
    gw_u64(&w, 0);
    expect_status(&w, LLMS_ERR_GGUF_OVERFLOW, "kv 0 'big.u64'", "array length", NULL);
    /* Strings need at least 8 bytes each: same wrap. */
    gw_init(&w);
    gw_header(&w, 3, 0, 1);
    gw_kv_arr(&w, "tokenizer.ggml.tokens", GGUF_STRING, (1ull << 61) + 1);
    gw_str(&w, "a");
    expect_status(&w, LLMS_ERR_GGUF_OVERFLOW, "'tokenizer.ggml.tokens'", NULL);
    /* Arrays of arrays need 12 bytes each. */
    gw_init(&w);
    gw_header(&w, 3, 0, 1);
    gw_kv_arr(&w, "nested", GGUF_ARRAY, UINT64_MAX / 6);
    expect_status(&w, LLMS_ERR_GGUF_OVERFLOW, "'nested'", NULL);
    /* One-byte elements cannot wrap; the file is just too short, and the
     * reader must not have tried to allocate UINT64_MAX bytes. */
    gw_init(&w);
    gw_header(&w, 3, 0, 1);
    gw_kv_arr(&w, "big.u8", GGUF_UINT8, UINT64_MAX);
    gw_u8(&w, 1);
    expect_status(&w, LLMS_ERR_GGUF_TRUNCATED, "'big.u8'", NULL);
    /* In the second KV, so the index is named too. */
    gw_init(&w);
    gw_header(&w, 3, 0, 2);
    gw_kv_u32(&w, "first", 1);
    gw_kv_arr(&w, "second", GGUF_INT32, 1000);
    gw_u32(&w, 5);
    expect_status(&w, LLMS_ERR_GGUF_TRUNCATED, "kv 1 'second'", NULL);
}

static void test_string_length_limits(void **state) {
    (void)state;
    gguf_writer w;
    /* Near UINT64_MAX: over the cap (not a wrap in pos + len). */
    gw_init(&w);
    gw_header(&w, 3, 0, 1);
    gw_key(&w, "general.name", GGUF_STRING);
    gw_u64(&w, UINT64_MAX - 3);
    gw_bytes(&w, "abcd", 4);
    expect_status(&w, LLMS_ERR_GGUF_LIMIT, "kv 0 'general.name'", "cap", NULL);
    /* Just over the cap. */
    gw_init(&w);
    gw_header(&w, 3, 0, 1);
    gw_key(&w, "general.name", GGUF_STRING);
    gw_u64(&w, (uint64_t)GGUF_MAX_STRING + 1);
    expect_status(&w, LLMS_ERR_GGUF_LIMIT, "'general.name'", NULL);
    /* At the cap it is allowed, so a short file is a truncation. */
    gw_init(&w);
    gw_header(&w, 3, 0, 1);
    gw_key(&w, "general.name", GGUF_STRING);
    gw_u64(&w, GGUF_MAX_STRING);
    gw_bytes(&w, "abc", 3);
    expect_status(&w, LLMS_ERR_GGUF_TRUNCATED, "'general.name'", NULL);
    /* A string inside an array: the element index is named. */
    gw_init(&w);
    gw_header(&w, 3, 0, 1);
    gw_kv_arr(&w, "tokenizer.ggml.tokens", GGUF_STRING, 3);
    gw_str(&w, "a");
    gw_str(&w, "b");
    gw_u64(&w, UINT64_MAX);
    expect_status(&w, LLMS_ERR_GGUF_LIMIT, "'tokenizer.ggml.tokens'[2]", NULL);
    /* Keys have a lower cap. */
    gw_init(&w);
    gw_header(&w, 3, 0, 2);
    gw_kv_u32(&w, "ok", 1);
    gw_u64(&w, (uint64_t)GGUF_MAX_KEY + 1);
    expect_status(&w, LLMS_ERR_GGUF_LIMIT, "kv 1", "key length 65536", NULL);
    /* Tensor names too. */
    gw_init(&w);
    gw_header(&w, 3, 2, 0);
    gw_tensor(&w, "t0", 1, DIMS8, LLMS_TYPE_F32, 0);
    gw_u64(&w, UINT64_MAX);
    gw_zeros(&w, 64);
    expect_status(&w, LLMS_ERR_GGUF_LIMIT, "tensor 1", "tensor name length", NULL);
}

/* ------------------------------------------------------------------------ */
/* Value types                                                               */
/* ------------------------------------------------------------------------ */

/* Writes an array nested `levels` deep (levels >= 1) whose innermost arrays
 * hold two i32 values: level k holds two arrays of level k-1. */
static void write_nested(gguf_writer *w, int levels, int32_t *next) {
    if (levels == 1) {
        gw_u32(w, GGUF_INT32);
        gw_u64(w, 2);
        gw_u32(w, (uint32_t)(*next)++);
        gw_u32(w, (uint32_t)(*next)++);
        return;
    }
    gw_u32(w, GGUF_ARRAY);
    gw_u64(w, 2);
    for (int i = 0; i < 2; i++) write_nested(w, levels - 1, next);
}

static void test_nested_arrays(void **state) {
    (void)state;
    gguf_writer w;
    image im;
    /* GGUF_MAX_ARRAY_DEPTH levels of arrays are accepted and read back. */
    gw_init(&w);
    gw_header(&w, 3, 0, 2);
    gw_key(&w, "deep", GGUF_ARRAY);
    int32_t next = 0;
    write_nested(&w, GGUF_MAX_ARRAY_DEPTH, &next);
    gw_kv_u32(&w, "after", 7);
    assert_int_equal(open_writer(&w, &im), LLMS_OK);
    const gguf_value *v = gguf_find(im.f, "deep");
    assert_non_null(v);
    int32_t expect = 0;
    /* Walk the full binary tree in order; leaves count up from 0. */
    const gguf_value *l1 = v;
    for (uint64_t a = 0; a < 2; a++) {
        assert_int_equal(l1->type, GGUF_ARRAY);
        assert_int_equal(l1->v.arr.elem_type, GGUF_ARRAY);
        assert_int_equal(l1->v.arr.n, 2);
        const gguf_value *l2 = (const gguf_value *)l1->v.arr.data + a;
        assert_int_equal(l2->v.arr.elem_type, GGUF_ARRAY);
        for (uint64_t b = 0; b < 2; b++) {
            const gguf_value *l3 = (const gguf_value *)l2->v.arr.data + b;
            assert_int_equal(l3->v.arr.elem_type, GGUF_ARRAY);
            for (uint64_t c = 0; c < 2; c++) {
                const gguf_value *l4 = (const gguf_value *)l3->v.arr.data + c;
                assert_int_equal(l4->type, GGUF_ARRAY);
                assert_int_equal(l4->v.arr.elem_type, GGUF_INT32);
                assert_int_equal(l4->v.arr.n, 2);
                const int32_t *d = l4->v.arr.data;
                assert_int_equal(d[0], expect++);
                assert_int_equal(d[1], expect++);
            }
        }
    }
    assert_int_equal(expect, next);
    uint32_t after;
    assert_int_equal(gguf_get_u32(im.f, "after", &after), LLMS_OK);
    assert_int_equal(after, 7);
    close_image(&im);
    gw_free(&w);

    /* One level more is refused, with the path to the offending array. */
    gw_init(&w);
    gw_header(&w, 3, 0, 1);
    gw_key(&w, "too.deep", GGUF_ARRAY);
    next = 0;
    write_nested(&w, GGUF_MAX_ARRAY_DEPTH + 1, &next);
    expect_status(&w, LLMS_ERR_GGUF_LIMIT, "kv 0 'too.deep'[0][0][0]", "nested", NULL);

    /* Even when the too-deep array is empty: the declared type decides. */
    gw_init(&w);
    gw_header(&w, 3, 0, 1);
    gw_key(&w, "too.deep.empty", GGUF_ARRAY);
    for (int i = 0; i < GGUF_MAX_ARRAY_DEPTH - 1; i++) {
        gw_u32(&w, GGUF_ARRAY);
        gw_u64(&w, 1);
    }
    gw_u32(&w, GGUF_ARRAY);
    gw_u64(&w, 0);
    expect_status(&w, LLMS_ERR_GGUF_LIMIT, "'too.deep.empty'", NULL);

    /* Empty arrays at legal depths are fine, with a usable data pointer. */
    gw_init(&w);
    gw_header(&w, 3, 0, 2);
    gw_kv_arr(&w, "empty.f32", GGUF_FLOAT32, 0);
    gw_kv_arr(&w, "empty.nested", GGUF_ARRAY, 0);
    assert_int_equal(open_writer(&w, &im), LLMS_OK);
    uint64_t n = 99;
    const void *data = NULL;
    assert_int_equal(gguf_get_arr(im.f, "empty.f32", GGUF_FLOAT32, &n, &data), LLMS_OK);
    assert_int_equal(n, 0);
    assert_non_null(data);
    close_image(&im);
    gw_free(&w);
}

static void test_unknown_value_type(void **state) {
    (void)state;
    gguf_writer w;
    gw_init(&w);
    gw_header(&w, 3, 0, 2);
    gw_kv_u32(&w, "ok", 1);
    gw_key(&w, "weird", GGUF_NTYPES);
    gw_u32(&w, 0);
    expect_status(&w, LLMS_ERR_GGUF_TYPE, "kv 1 'weird'", "unknown value type 13", NULL);
    gw_init(&w);
    gw_header(&w, 3, 0, 1);
    gw_kv_arr(&w, "weird.arr", 0xffffffffu, 1);
    gw_u32(&w, 0);
    expect_status(&w, LLMS_ERR_GGUF_TYPE, "'weird.arr'", "element type", NULL);
    /* A bool is a byte that is 0 or 1. */
    gw_init(&w);
    gw_header(&w, 3, 0, 1);
    gw_key(&w, "flag", GGUF_BOOL);
    gw_u8(&w, 2);
    expect_status(&w, LLMS_ERR_GGUF_TYPE, "'flag'", "bool", NULL);
    gw_init(&w);
    gw_header(&w, 3, 0, 1);
    gw_kv_arr(&w, "flags", GGUF_BOOL, 3);
    gw_u8(&w, 0);
    gw_u8(&w, 1);
    gw_u8(&w, 0x80);
    expect_status(&w, LLMS_ERR_GGUF_TYPE, "'flags'[2]", NULL);
}

static void test_alignment_wrong_type(void **state) {
    (void)state;
    gguf_writer w;
    gw_init(&w);
    gw_header(&w, 3, 0, 2);
    gw_kv_str(&w, "general.architecture", "llama");
    gw_kv_u64(&w, "general.alignment", 32);
    expect_status(&w, LLMS_ERR_GGUF_TYPE, "kv 1 'general.alignment'", "u64", NULL);
    gw_init(&w);
    gw_header(&w, 3, 0, 1);
    gw_kv_str(&w, "general.alignment", "32");
    expect_status(&w, LLMS_ERR_GGUF_TYPE, "kv 0 'general.alignment'", "string", NULL);
    gw_init(&w);
    gw_header(&w, 3, 0, 1);
    gw_key(&w, "general.alignment", GGUF_INT32);
    gw_u32(&w, 32);
    expect_status(&w, LLMS_ERR_GGUF_TYPE, "'general.alignment'", NULL);
}

static void test_alignment_values(void **state) {
    (void)state;
    const uint32_t bad[] = {0, 3, 48, 1u << 30, GGUF_MAX_ALIGNMENT * 2, 0x80000000u};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gguf_writer w;
        gw_init(&w);
        gw_header(&w, 3, 0, 1);
        gw_kv_u32(&w, "general.alignment", bad[i]);
        char frag[64];
        snprintf(frag, sizeof frag, "alignment %u ", (unsigned)bad[i]);
        expect_status(&w, LLMS_ERR_GGUF_ALIGNMENT, "kv 0 'general.alignment'", frag, NULL);
    }
    /* Valid alignments are honoured for the data section and the offsets. */
    const uint32_t good[] = {1, 8, 64, 4096};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        gguf_writer w;
        gw_init(&w);
        gw_header(&w, 3, 2, 1);
        gw_kv_u32(&w, "general.alignment", good[i]);
        gw_tensor(&w, "a", 1, (const uint64_t[]){3}, LLMS_TYPE_I8, 0);
        uint64_t off_b = (3 + good[i] - 1) / good[i] * good[i];
        gw_tensor(&w, "b", 1, (const uint64_t[]){2}, LLMS_TYPE_I16, off_b);
        gw_pad(&w, good[i]);
        size_t data_start = w.len;
        gw_bytes(&w, "\x01\x02\x03", 3);
        gw_pad(&w, good[i]);
        gw_u16(&w, 0x1234);
        gw_u16(&w, 0x5678);
        image im;
        assert_int_equal(open_writer(&w, &im), LLMS_OK);
        assert_int_equal(gguf_alignment(im.f), good[i]);
        assert_int_equal(gguf_data_offset(im.f), data_start);
        assert_int_equal(gguf_data_offset(im.f) % good[i], 0);
        const gguf_tensor *b = gguf_find_tensor(im.f, "b");
        assert_non_null(b);
        uint16_t second;  /* memcpy: with alignment 1 the data is unaligned */
        memcpy(&second, (const uint8_t *)b->data + 2, 2);
        assert_int_equal(second, 0x5678);
        assert_ptr_equal(b->data, im.copy + data_start + off_b);
        close_image(&im);
        gw_free(&w);
    }
    /* The largest alignment is accepted (no tensors, so no padding needed). */
    gguf_writer w;
    gw_init(&w);
    gw_header(&w, 3, 0, 1);
    gw_kv_u32(&w, "general.alignment", GGUF_MAX_ALIGNMENT);
    image im;
    assert_int_equal(open_writer(&w, &im), LLMS_OK);
    assert_int_equal(gguf_alignment(im.f), GGUF_MAX_ALIGNMENT);
    close_image(&im);
    gw_free(&w);
}

static void test_duplicate_keys(void **state) {
    (void)state;
    gguf_writer w;
    gw_init(&w);
    gw_header(&w, 3, 0, 3);
    gw_kv_u32(&w, "llama.block_count", 4);
    gw_kv_str(&w, "general.architecture", "llama");
    gw_kv_u32(&w, "llama.block_count", 5);
    expect_status(&w, LLMS_ERR_GGUF_DUPLICATE, "kv 2 'llama.block_count'", "kv 0", NULL);
    /* Keys are compared as C strings (what gguf_find can ask for): an
     * embedded NUL cannot smuggle in a second "general.alignment". */
    gw_init(&w);
    gw_header(&w, 3, 0, 2);
    gw_kv_u32(&w, "general.alignment", 32);
    gw_strn(&w, "general.alignment\0x", 19);
    gw_u32(&w, GGUF_UINT32);
    gw_u32(&w, 1);
    expect_status(&w, LLMS_ERR_GGUF_DUPLICATE, "kv 1 'general.alignment'", NULL);
    /* Many distinct keys are fine (and exercise the hash table growth). */
    gw_init(&w);
    gw_header(&w, 3, 0, 5000);
    char key[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "k.%d", i);
        gw_kv_u32(&w, key, (uint32_t)i);
    }
    image im;
    assert_int_equal(open_writer(&w, &im), LLMS_OK);
    for (int i = 0; i < 5000; i += 7) {
        snprintf(key, sizeof key, "k.%d", i);
        uint32_t v;
        assert_int_equal(gguf_get_u32(im.f, key, &v), LLMS_OK);
        assert_int_equal(v, (uint32_t)i);
    }
    close_image(&im);
    gw_free(&w);
}

/* ------------------------------------------------------------------------ */
/* Tensor infos                                                              */
/* ------------------------------------------------------------------------ */

static void test_duplicate_tensors(void **state) {
    (void)state;
    gguf_writer w;
    gw_init(&w);
    gw_header(&w, 3, 3, 0);
    gw_tensor(&w, "blk.0.attn_q.weight", 1, DIMS8, LLMS_TYPE_F32, 0);
    gw_tensor(&w, "blk.0.attn_k.weight", 1, DIMS8, LLMS_TYPE_F32, 32);
    gw_tensor(&w, "blk.0.attn_q.weight", 1, DIMS8, LLMS_TYPE_F32, 64);
    gw_pad(&w, 32);
    gw_zeros(&w, 96);
    expect_status(&w, LLMS_ERR_GGUF_DUPLICATE, "tensor 2 'blk.0.attn_q.weight'", "tensor 0",
                  NULL);
}

/* One tensor with the given shape/type/offset after a valid KV. */
static void one_tensor(gguf_writer *w, const char *name, uint32_t n_dims, const uint64_t *dims,
                       uint32_t type, uint64_t offset, size_t data_bytes) {
    gw_init(w);
    gw_header(w, 3, 2, 1);
    gw_kv_str(w, "general.architecture", "llama");
    gw_tensor(w, "ok", 1, DIMS8, LLMS_TYPE_F32, 0);
    gw_tensor(w, name, n_dims, dims, type, offset);
    gw_pad(w, 32);
    gw_zeros(w, 32 + data_bytes);
}

static void test_unknown_tensor_type(void **state) {
    (void)state;
    /* 4 and 5 were Q4_2/Q4_3, removed from the format; 99 never existed. */
    const uint32_t bad[] = {99, 4, 5, 31, 0xffffffffu};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gguf_writer w;
        one_tensor(&w, "weird.weight", 1, DIMS8, bad[i], 32, 64);
        char frag[48];
        snprintf(frag, sizeof frag, "unknown tensor type %u", (unsigned)bad[i]);
        expect_status(&w, LLMS_ERR_GGUF_TENSOR_TYPE, "tensor 1 'weird.weight'", frag, NULL);
    }
}

static void test_n_dims(void **state) {
    (void)state;
    const uint64_t dims[5] = {8, 1, 1, 1, 1};
    gguf_writer w;
    one_tensor(&w, "flat", 0, dims, LLMS_TYPE_F32, 32, 32);
    expect_status(&w, LLMS_ERR_GGUF_SHAPE, "tensor 1 'flat'", "n_dims 0", NULL);
    one_tensor(&w, "five", 5, dims, LLMS_TYPE_F32, 32, 32);
    expect_status(&w, LLMS_ERR_GGUF_SHAPE, "tensor 1 'five'", "n_dims 5", NULL);
    /* 4 dims is the most, and works; unused dims read as 1. */
    one_tensor(&w, "four", 4, (const uint64_t[]){2, 2, 1, 2}, LLMS_TYPE_F32, 32, 32);
    image im;
    assert_int_equal(open_writer(&w, &im), LLMS_OK);
    const gguf_tensor *t = gguf_find_tensor(im.f, "four");
    assert_non_null(t);
    assert_int_equal(t->n_dims, 4);
    assert_int_equal(t->n_elems, 8);
    assert_int_equal(t->n_bytes, 32);
    const gguf_tensor *ok = gguf_find_tensor(im.f, "ok");
    assert_int_equal(ok->ne[1], 1);
    assert_int_equal(ok->ne[3], 1);
    close_image(&im);
    gw_free(&w);
}

static void test_bad_dims(void **state) {
    (void)state;
    gguf_writer w;
    one_tensor(&w, "zero", 2, (const uint64_t[]){8, 0}, LLMS_TYPE_F32, 32, 32);
    expect_status(&w, LLMS_ERR_GGUF_SHAPE, "tensor 1 'zero'", "dimension 1 is zero", NULL);
    /* As int64 this is negative: top bit set. */
    one_tensor(&w, "neg", 2, (const uint64_t[]){8, (uint64_t)-4}, LLMS_TYPE_F32, 32, 32);
    expect_status(&w, LLMS_ERR_GGUF_SHAPE, "tensor 1 'neg'", "negative", NULL);
    one_tensor(&w, "neg0", 1, (const uint64_t[]){1ull << 63}, LLMS_TYPE_F32, 32, 32);
    expect_status(&w, LLMS_ERR_GGUF_SHAPE, "tensor 1 'neg0'", "dimension 0", NULL);
}

static void test_dims_overflow(void **state) {
    (void)state;
    gguf_writer w;
    /* 2^32 * 2^32 = 2^64 wraps uint64. */
    one_tensor(&w, "huge", 2, (const uint64_t[]){1ull << 32, 1ull << 32}, LLMS_TYPE_F32, 32, 32);
    expect_status(&w, LLMS_ERR_GGUF_OVERFLOW, "tensor 1 'huge'", "element count", NULL);
    /* Each dim fine, product of four wraps. */
    one_tensor(&w, "huge4", 4, (const uint64_t[]){1ull << 20, 1ull << 20, 1ull << 20, 1ull << 20},
               LLMS_TYPE_F32, 32, 32);
    expect_status(&w, LLMS_ERR_GGUF_OVERFLOW, "tensor 1 'huge4'", NULL);
    /* Elements fit (2^62) but bytes (x 4) wrap. */
    one_tensor(&w, "bytes", 2, (const uint64_t[]){1ull << 31, 1ull << 31}, LLMS_TYPE_F32, 32, 32);
    expect_status(&w, LLMS_ERR_GGUF_OVERFLOW, "tensor 1 'bytes'", "byte size", NULL);
    /* Elements fit, bytes fit, but the data is not in the file. */
    one_tensor(&w, "big", 2, (const uint64_t[]){1ull << 20, 1ull << 20}, LLMS_TYPE_F32, 32, 32);
    expect_status(&w, LLMS_ERR_GGUF_BOUNDS, "tensor 1 'big'", NULL);
}

static void test_block_size(void **state) {
    (void)state;
    gguf_writer w;
    one_tensor(&w, "q", 2, (const uint64_t[]){33, 2}, LLMS_TYPE_Q4_0, 32, 64);
    expect_status(&w, LLMS_ERR_GGUF_SHAPE, "tensor 1 'q'", "row length 33", "Q4_0", NULL);
    one_tensor(&w, "k", 1, (const uint64_t[]){128}, LLMS_TYPE_Q4_K, 32, 256);
    expect_status(&w, LLMS_ERR_GGUF_SHAPE, "tensor 1 'k'", "Q4_K", NULL);
    /* A whole block is fine: 32 Q4_0 elements are 18 bytes. */
    one_tensor(&w, "q", 2, (const uint64_t[]){32, 2}, LLMS_TYPE_Q4_0, 32, 36);
    image im;
    assert_int_equal(open_writer(&w, &im), LLMS_OK);
    assert_int_equal(gguf_find_tensor(im.f, "q")->n_bytes, 36);
    close_image(&im);
    gw_free(&w);
}

static void test_tensor_bounds(void **state) {
    (void)state;
    gguf_writer w;
    /* 8 floats at offset 32 need 64 bytes of data; give 63. */
    one_tensor(&w, "past.end", 1, DIMS8, LLMS_TYPE_F32, 32, 32);
    w.len -= 1;
    expect_status(&w, LLMS_ERR_GGUF_BOUNDS, "tensor 1 'past.end'", NULL);
    /* An offset so large that offset + size wraps. */
    one_tensor(&w, "wrap", 1, DIMS8, LLMS_TYPE_F32, UINT64_MAX - 31, 32);
    expect_status(&w, LLMS_ERR_GGUF_BOUNDS, "tensor 1 'wrap'", NULL);
    one_tensor(&w, "far", 1, DIMS8, LLMS_TYPE_F32, 1ull << 40, 32);
    expect_status(&w, LLMS_ERR_GGUF_BOUNDS, "tensor 1 'far'", NULL);
    /* Exactly at the end is fine (no trailing padding needed). */
    one_tensor(&w, "exact", 1, DIMS8, LLMS_TYPE_F32, 32, 32);
    image im;
    assert_int_equal(open_writer(&w, &im), LLMS_OK);
    const gguf_tensor *t = gguf_find_tensor(im.f, "exact");
    assert_ptr_equal((const uint8_t *)t->data + t->n_bytes, im.copy + w.len);
    close_image(&im);
    gw_free(&w);
}

static void test_offset_unaligned(void **state) {
    (void)state;
    gguf_writer w;
    one_tensor(&w, "odd", 1, DIMS8, LLMS_TYPE_F32, 36, 64);
    expect_status(&w, LLMS_ERR_GGUF_ALIGNMENT, "tensor 1 'odd'", "offset 36", NULL);
}

/* ------------------------------------------------------------------------ */
/* Round trip of every value type                                            */
/* ------------------------------------------------------------------------ */

static void all_types_file(gguf_writer *w) {
    gw_init(w);
    gw_header(w, 3, 2, 15);
    gw_key(w, "v.u8", GGUF_UINT8); gw_u8(w, 200);
    gw_key(w, "v.i8", GGUF_INT8); gw_u8(w, (uint8_t)-100);
    gw_key(w, "v.u16", GGUF_UINT16); gw_u16(w, 60000);
    gw_key(w, "v.i16", GGUF_INT16); gw_u16(w, (uint16_t)-30000);
    gw_kv_u32(w, "v.u32", 4000000000u);
    gw_key(w, "v.i32", GGUF_INT32); gw_u32(w, (uint32_t)-2000000000);
    gw_kv_f32(w, "v.f32", 1.5f);
    gw_key(w, "v.bool", GGUF_BOOL); gw_u8(w, 1);
    gw_kv_str(w, "v.string", "h\xc3\xa9llo");
    gw_kv_arr(w, "v.array", GGUF_STRING, 3);
    gw_str(w, "a");
    gw_strn(w, "b\0c", 3);
    gw_str(w, "");
    gw_kv_u64(w, "v.u64", UINT64_MAX);
    gw_key(w, "v.i64", GGUF_INT64); gw_u64(w, (uint64_t)INT64_MIN);
    gw_key(w, "v.f64", GGUF_FLOAT64); gw_f64(w, -2.25e300);
    gw_kv_arr(w, "v.f32s", GGUF_FLOAT32, 3);
    gw_f32(w, 0.5f); gw_f32(w, -1.0f); gw_f32(w, 3.25f);
    gw_kv_arr(w, "v.i16s", GGUF_INT16, 2);
    gw_u16(w, (uint16_t)-2); gw_u16(w, 7);
    gw_tensor(w, "tok_embd", 2, (const uint64_t[]){4, 2}, LLMS_TYPE_F16, 0);
    gw_tensor(w, "q", 1, (const uint64_t[]){32}, LLMS_TYPE_Q8_0, 32);
    gw_pad(w, 32);
    for (int i = 0; i < 8; i++) gw_u16(w, (uint16_t)(0x3c00 + i));
    gw_zeros(w, 16);
    for (int i = 0; i < 34; i++) gw_u8(w, (uint8_t)i);
}

static void test_roundtrip_all_types(void **state) {
    (void)state;
    gguf_writer w;
    all_types_file(&w);
    image im;
    assert_int_equal(open_writer(&w, &im), LLMS_OK);
    gguf_file *f = im.f;
    assert_int_equal(gguf_kv_count(f), 15);
    /* File order is kept, and every type has its name. */
    const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string",
                           "array", "u64", "i64", "f64"};
    for (uint32_t i = 0; i < GGUF_NTYPES; i++) {
        char key[32];
        snprintf(key, sizeof key, "v.%s", names[i]);
        assert_string_equal(gguf_kv_key(f, i), key);
        assert_int_equal(gguf_kv_value(f, i)->type, i);
        assert_ptr_equal(gguf_find(f, key), gguf_kv_value(f, i));
        assert_string_equal(gguf_type_name(i), names[i]);
    }
    assert_string_equal(gguf_type_name(GGUF_NTYPES), "unknown");

    assert_int_equal(gguf_find(f, "v.u8")->v.u64, 200);
    assert_int_equal(gguf_find(f, "v.i8")->v.i64, -100);
    assert_int_equal(gguf_find(f, "v.u16")->v.u64, 60000);
    assert_int_equal(gguf_find(f, "v.i16")->v.i64, -30000);
    assert_int_equal(gguf_find(f, "v.u32")->v.u64, 4000000000u);
    assert_int_equal(gguf_find(f, "v.i32")->v.i64, -2000000000);
    assert_true(gguf_find(f, "v.f32")->v.f64 == 1.5);
    assert_int_equal(gguf_find(f, "v.bool")->v.u64, 1);
    assert_true(gguf_find(f, "v.u64")->v.u64 == UINT64_MAX);
    assert_true(gguf_find(f, "v.i64")->v.i64 == INT64_MIN);
    assert_true(gguf_find(f, "v.f64")->v.f64 == -2.25e300);

    /* Typed getters: integers widen/narrow when the value fits. */
    uint32_t u32;
    int64_t i64;
    double f64;
    int b;
    const gguf_string *s;
    assert_int_equal(gguf_get_u32(f, "v.u8", &u32), LLMS_OK);
    assert_int_equal(u32, 200);
    assert_int_equal(gguf_get_u32(f, "v.u32", &u32), LLMS_OK);
    assert_int_equal(u32, 4000000000u);
    assert_int_equal(gguf_get_u32(f, "v.i16", &u32), LLMS_ERR_GGUF_TYPE);  /* negative */
    assert_non_null(strstr(err_message(), "v.i16"));
    assert_int_equal(gguf_get_u32(f, "v.u64", &u32), LLMS_ERR_GGUF_TYPE);  /* too big */
    assert_non_null(strstr(err_message(), "v.u64"));
    assert_int_equal(gguf_get_u32(f, "v.f32", &u32), LLMS_ERR_GGUF_TYPE);
    assert_int_equal(gguf_get_u32(f, "v.bool", &u32), LLMS_ERR_GGUF_TYPE);
    assert_int_equal(gguf_get_i64(f, "v.i64", &i64), LLMS_OK);
    assert_true(i64 == INT64_MIN);
    assert_int_equal(gguf_get_i64(f, "v.u32", &i64), LLMS_OK);
    assert_int_equal(i64, 4000000000ll);
    assert_int_equal(gguf_get_i64(f, "v.u64", &i64), LLMS_ERR_GGUF_TYPE);
    assert_int_equal(gguf_get_i64(f, "v.string", &i64), LLMS_ERR_GGUF_TYPE);
    assert_non_null(strstr(err_message(), "v.string"));
    assert_int_equal(gguf_get_f64(f, "v.f32", &f64), LLMS_OK);
    assert_true(f64 == 1.5);
    assert_int_equal(gguf_get_f64(f, "v.f64", &f64), LLMS_OK);
    assert_true(f64 == -2.25e300);
    assert_int_equal(gguf_get_f64(f, "v.i32", &f64), LLMS_ERR_GGUF_TYPE);
    assert_int_equal(gguf_get_bool(f, "v.bool", &b), LLMS_OK);
    assert_int_equal(b, 1);
    assert_int_equal(gguf_get_bool(f, "v.u8", &b), LLMS_ERR_GGUF_TYPE);
    assert_int_equal(gguf_get_str(f, "v.string", &s), LLMS_OK);
    assert_int_equal(s->len, 6);
    assert_string_equal(s->s, "h\xc3\xa9llo");
    assert_int_equal(gguf_get_str(f, "v.u8", &s), LLMS_ERR_GGUF_TYPE);
    assert_int_equal(gguf_get_u32(f, "absent.key", &u32), LLMS_ERR_NOT_FOUND);
    assert_non_null(strstr(err_message(), "absent.key"));
    assert_int_equal(gguf_get_u32(NULL, "v.u8", &u32), LLMS_ERR_INVALID_ARGUMENT);
    assert_int_equal(gguf_get_u32(f, NULL, &u32), LLMS_ERR_INVALID_ARGUMENT);
    assert_int_equal(gguf_get_u32(f, "v.u8", NULL), LLMS_ERR_INVALID_ARGUMENT);

    /* Arrays: exact element type; strings keep embedded NULs and length. */
    uint64_t n;
    const void *data;
    assert_int_equal(gguf_get_arr(f, "v.array", GGUF_STRING, &n, &data), LLMS_OK);
    assert_int_equal(n, 3);
    const gguf_string *strs = data;
    assert_string_equal(strs[0].s, "a");
    assert_int_equal(strs[1].len, 3);
    assert_memory_equal(strs[1].s, "b\0c", 4);  /* and the NUL terminator */
    assert_int_equal(strs[2].len, 0);
    assert_string_equal(strs[2].s, "");
    assert_int_equal(gguf_get_arr(f, "v.f32s", GGUF_FLOAT32, &n, &data), LLMS_OK);
    assert_int_equal(n, 3);
    const float *fl = data;
    assert_true(fl[0] == 0.5f && fl[1] == -1.0f && fl[2] == 3.25f);
    /* A float array requested as INT32 is the wrong type, named. */
    assert_int_equal(gguf_get_arr(f, "v.f32s", GGUF_INT32, &n, &data), LLMS_ERR_GGUF_TYPE);
    assert_non_null(strstr(err_message(), "v.f32s"));
    assert_non_null(strstr(err_message(), "f32"));
    assert_int_equal(gguf_get_arr(f, "v.u32", GGUF_UINT32, &n, &data), LLMS_ERR_GGUF_TYPE);
    assert_int_equal(gguf_get_arr(f, "absent", GGUF_UINT32, &n, &data), LLMS_ERR_NOT_FOUND);
    assert_int_equal(gguf_get_arr(f, "v.i16s", GGUF_INT16, &n, &data), LLMS_OK);
    assert_int_equal(((const int16_t *)data)[0], -2);
    assert_int_equal(((const int16_t *)data)[1], 7);

    /* Tensors. */
    assert_int_equal(gguf_tensor_count(f), 2);
    const gguf_tensor *t = gguf_tensor_at(f, 0);
    assert_string_equal(t->name, "tok_embd");
    assert_int_equal(t->type, LLMS_TYPE_F16);
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->ne[0], 4);
    assert_int_equal(t->ne[1], 2);
    assert_int_equal(t->n_elems, 8);
    assert_int_equal(t->n_bytes, 16);
    assert_int_equal(((const uint16_t *)t->data)[7], 0x3c07);
    const gguf_tensor *q = gguf_find_tensor(f, "q");
    assert_ptr_equal(q, gguf_tensor_at(f, 1));
    assert_int_equal(q->n_bytes, 34);
    assert_int_equal(q->offset, 32);
    assert_int_equal(((const uint8_t *)q->data)[33], 33);
    assert_null(gguf_find_tensor(f, "nope"));
    close_image(&im);
    gw_free(&w);
}

/* ------------------------------------------------------------------------ */
/* Truncation                                                                */
/* ------------------------------------------------------------------------ */

/* A cut file must fail as a truncation (or, once the tensor infos are
 * complete, as data out of bounds) - never succeed, never crash. */
static void expect_prefix_fails(const uint8_t *p, size_t n, size_t full) {
    long live0 = g_t.live;  /* the caller may hold the full file open */
    image im;
    llms_status st = open_image(p, n, &im);
    if (n == full) {
        if (st != LLMS_OK) fail_msg("full file failed: %s", err_message());
        close_image(&im);
        return;
    }
    if (st == LLMS_OK) {
        close_image(&im);
        fail_msg("prefix of %zu of %zu bytes was accepted", n, full);
    }
    if (st != LLMS_ERR_GGUF_TRUNCATED && st != LLMS_ERR_GGUF_BOUNDS)
        fail_msg("prefix of %zu bytes: status %d (%s)", n, (int)st, err_message());
    assert_int_equal(g_t.live, live0);
}

static void test_truncate_small_every_byte(void **state) {
    (void)state;
    gguf_writer w;
    all_types_file(&w);
    assert_false(w.oom);
    for (size_t n = 0; n <= w.len; n++) expect_prefix_fails(w.buf, n, w.len);
    gw_free(&w);
}

static void test_truncate_fixture(void **state) {
    (void)state;
    const char *rel = "models/aidreams260K.gguf";
    const char *path = fixture_path(rel);
    if (!path) fixture_missing(rel);
    size_t len;
    uint8_t *buf = (uint8_t *)read_file_all(path, &len);
    assert_non_null(buf);
    image im;
    assert_int_equal(open_image(buf, len, &im), LLMS_OK);
    uint64_t data_off = gguf_data_offset(im.f);
    /* Every byte of the metadata and tensor infos, and 4 KiB into the data. */
    size_t upto = data_off + 4096 < len ? (size_t)data_off + 4096 : len;
    for (size_t n = 0; n <= upto; n++) expect_prefix_fails(buf, n, len);
    /* Around every tensor's end, where the bounds check decides. */
    for (uint64_t i = 0; i < gguf_tensor_count(im.f); i++) {
        const gguf_tensor *t = gguf_tensor_at(im.f, i);
        uint64_t end = data_off + t->offset + t->n_bytes;
        for (uint64_t n = end - 1; n <= end + 1 && n <= len; n++)
            expect_prefix_fails(buf, (size_t)n, len);
    }
    expect_prefix_fails(buf, len - 1, len);
    expect_prefix_fails(buf, len, len);
    close_image(&im);
    free(buf);
}

/* ------------------------------------------------------------------------ */
/* Real fixtures                                                             */
/* ------------------------------------------------------------------------ */

/* Checks that must hold for any good file: lookups agree with the tables,
 * and every tensor's data is the file's bytes at data_offset + offset. */
static void check_consistent(gguf_file *f, const uint8_t *file, size_t len) {
    assert_int_equal(gguf_file_size(f), len);
    assert_true(gguf_data_offset(f) <= len);
    for (uint64_t i = 0; i < gguf_kv_count(f); i++)
        assert_ptr_equal(gguf_find(f, gguf_kv_key(f, i)), gguf_kv_value(f, i));
    for (uint64_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        assert_ptr_equal(gguf_find_tensor(f, t->name), t);
        assert_int_equal(t->offset % gguf_alignment(f), 0);
        assert_true(gguf_data_offset(f) + t->offset + t->n_bytes <= len);
        assert_memory_equal(t->data, file + gguf_data_offset(f) + t->offset, t->n_bytes);
        if (i > 0) {
            /* All data pointers come from one base: the same file image. */
            const gguf_tensor *t0 = gguf_tensor_at(f, 0);
            assert_ptr_equal((const uint8_t *)t->data - t->offset,
                             (const uint8_t *)t0->data - t0->offset);
        }
    }
}

static void expect_str(gguf_file *f, const char *key, const char *want) {
    const gguf_string *s;
    assert_int_equal(gguf_get_str(f, key, &s), LLMS_OK);
    assert_string_equal(s->s, want);
}

static void expect_u32(gguf_file *f, const char *key, uint32_t want) {
    uint32_t v;
    assert_int_equal(gguf_get_u32(f, key, &v), LLMS_OK);
    assert_int_equal(v, want);
}

static uint64_t arr_len(gguf_file *f, const char *key, uint32_t elem_type) {
    uint64_t n = 0;
    const void *d;
    assert_int_equal(gguf_get_arr(f, key, elem_type, &n, &d), LLMS_OK);
    return n;
}

typedef struct model_fact {
    const char *path;
    uint64_t n_tensors;
    uint32_t n_embd;
    uint32_t n_layer;
    uint32_t n_vocab;
    const char *a_tensor;  /* with this type and row length */
    uint32_t a_type;
} model_fact;

static const model_fact MODELS[] = {
    {"models/aidreams260K.gguf", 39, 64, 4, 512, "token_embd.weight", LLMS_TYPE_F32},
    {"models/rand-llama-spm-d128-f16.gguf", 30, 128, 3, 32000, "token_embd.weight", LLMS_TYPE_F16},
    {"models/rand-llama-spm-d128-q4_0.gguf", 30, 128, 3, 32000, "output.weight", LLMS_TYPE_Q4_0},
    {"models/rand-llama-spm-d128-q8_0.gguf", 30, 128, 3, 32000, "output.weight", LLMS_TYPE_Q8_0},
    {"models/rand-llama-spm-d256-f16.gguf", 20, 256, 2, 32000, "token_embd.weight", LLMS_TYPE_F16},
    {"models/rand-llama-spm-d256-q4_k_m.gguf", 20, 256, 2, 32000, "token_embd.weight",
     LLMS_TYPE_Q6_K},
};

static void test_fixture_models(void **state) {
    (void)state;
    for (size_t m = 0; m < sizeof MODELS / sizeof MODELS[0]; m++) {
        const model_fact *mf = &MODELS[m];
        const char *path = fixture_path(mf->path);
        if (!path) fixture_missing(mf->path);
        size_t len;
        uint8_t *file = (uint8_t *)read_file_all(path, &len);
        assert_non_null(file);
        for (int mode = 0; mode < 2; mode++) {
            gguf_file *f = NULL;
            llms_status st = gguf_open_file(&g_alloc, path, mode ? GGUF_OPEN_NO_MMAP : 0, &f);
            if (st != LLMS_OK) fail_msg("%s: %s", mf->path, err_message());
            assert_int_equal(gguf_version(f), 3);
            assert_int_equal(gguf_alignment(f), 32);
            assert_int_equal(gguf_data_offset(f) % 32, 0);
            expect_str(f, "general.architecture", "llama");
            expect_str(f, "tokenizer.ggml.model", "llama");
            expect_u32(f, "llama.embedding_length", mf->n_embd);
            expect_u32(f, "llama.block_count", mf->n_layer);
            expect_u32(f, "tokenizer.ggml.bos_token_id", 1);
            expect_u32(f, "tokenizer.ggml.eos_token_id", 2);
            assert_int_equal(arr_len(f, "tokenizer.ggml.tokens", GGUF_STRING), mf->n_vocab);
            assert_int_equal(arr_len(f, "tokenizer.ggml.scores", GGUF_FLOAT32), mf->n_vocab);
            assert_int_equal(arr_len(f, "tokenizer.ggml.token_type", GGUF_INT32), mf->n_vocab);
            double eps;
            assert_int_equal(gguf_get_f64(f, "llama.attention.layer_norm_rms_epsilon", &eps),
                             LLMS_OK);
            assert_true(eps > 0.9e-5 && eps < 1.1e-5);
            assert_int_equal(gguf_tensor_count(f), mf->n_tensors);
            const gguf_tensor *t = gguf_find_tensor(f, mf->a_tensor);
            assert_non_null(t);
            assert_int_equal(t->type, mf->a_type);
            assert_int_equal(t->n_dims, 2);
            assert_int_equal(t->ne[0], mf->n_embd);
            assert_int_equal(t->ne[1], mf->n_vocab);
            /* The data of these files ends exactly at the end of the file. */
            uint64_t end = 0;
            for (uint64_t i = 0; i < gguf_tensor_count(f); i++) {
                const gguf_tensor *x = gguf_tensor_at(f, i);
                if (x->offset + x->n_bytes > end) end = x->offset + x->n_bytes;
            }
            assert_int_equal(gguf_data_offset(f) + end, len);
            check_consistent(f, file, len);
            gguf_close(f);
            assert_int_equal(g_t.live, 0);
        }
        free(file);
    }
}

static void test_fixture_aidreams_facts(void **state) {
    (void)state;
    const char *rel = "models/aidreams260K.gguf";
    const char *path = fixture_path(rel);
    if (!path) fixture_missing(rel);
    gguf_file *f;
    assert_int_equal(gguf_open_file(&g_alloc, path, 0, &f), LLMS_OK);
    expect_str(f, "general.architecture", "llama");
    expect_u32(f, "llama.embedding_length", 64);
    expect_u32(f, "llama.context_length", 128);
    expect_u32(f, "llama.attention.head_count", 4);
    expect_u32(f, "llama.feed_forward_length", 172);
    expect_u32(f, "tokenizer.ggml.padding_token_id", UINT32_MAX);
    uint64_t n;
    const void *d;
    assert_int_equal(gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_STRING, &n, &d), LLMS_OK);
    assert_int_equal(n, 512);
    const gguf_string *tok = d;
    assert_string_equal(tok[0].s, "<unk>");
    assert_string_equal(tok[1].s, "<s>");
    assert_string_equal(tok[2].s, "</s>");
    for (uint64_t i = 0; i < n; i++) assert_int_equal(strlen(tok[i].s), tok[i].len);
    const gguf_tensor *t = gguf_find_tensor(f, "blk.3.ffn_norm.weight");
    assert_non_null(t);
    assert_int_equal(t->type, LLMS_TYPE_F32);
    assert_int_equal(t->ne[0], 64);
    assert_int_equal(t->n_bytes, 256);
    /* An RMS-norm weight is a finite float vector. */
    const float *w = t->data;
    for (int i = 0; i < 64; i++) assert_true(w[i] == w[i] && w[i] > -1e6f && w[i] < 1e6f);
    assert_non_null(gguf_find_tensor(f, "output.weight"));
    assert_null(gguf_find_tensor(f, "blk.4.ffn_norm.weight"));
    gguf_close(f);
}

typedef struct vocab_fact {
    const char *path;
    const char *arch;
    const char *model;
    uint64_t n_tokens;
    uint64_t n_merges;  /* 0: no merges key */
} vocab_fact;

static const vocab_fact VOCABS[] = {
    {"vocab/ggml-vocab-llama-spm.gguf", "llama", "llama", 32000, 0},
    {"vocab/ggml-vocab-phi-3.gguf", "phi3", "llama", 32064, 0},
    {"vocab/ggml-vocab-gpt-2.gguf", "gpt2", "gpt2", 50257, 50000},
    {"vocab/ggml-vocab-deepseek-llm.gguf", "llama", "gpt2", 102400, 99757},
    {"vocab/ggml-vocab-deepseek-coder.gguf", "llama", "gpt2", 32256, 31757},
    {"vocab/ggml-vocab-mpt.gguf", "mpt", "gpt2", 50432, 50009},
    {"vocab/ggml-vocab-starcoder.gguf", "starcoder2", "gpt2", 49152, 48872},
    {"vocab/ggml-vocab-falcon.gguf", "falcon", "gpt2", 65024, 64784},
    {"vocab/ggml-vocab-refact.gguf", "refact", "gpt2", 49216, 48891},
};

static void test_fixture_vocabs(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof VOCABS / sizeof VOCABS[0]; i++) {
        const vocab_fact *vf = &VOCABS[i];
        const char *path = fixture_path(vf->path);
        if (!path) fixture_missing(vf->path);
        size_t len;
        uint8_t *file = (uint8_t *)read_file_all(path, &len);
        assert_non_null(file);
        for (int mode = 0; mode < 2; mode++) {
            gguf_file *f = NULL;
            llms_status st = gguf_open_file(&g_alloc, path, mode ? GGUF_OPEN_NO_MMAP : 0, &f);
            if (st != LLMS_OK) fail_msg("%s: %s", vf->path, err_message());
            expect_str(f, "general.architecture", vf->arch);
            expect_str(f, "tokenizer.ggml.model", vf->model);
            assert_int_equal(arr_len(f, "tokenizer.ggml.tokens", GGUF_STRING), vf->n_tokens);
            assert_int_equal(arr_len(f, "tokenizer.ggml.token_type", GGUF_INT32), vf->n_tokens);
            if (vf->n_merges)
                assert_int_equal(arr_len(f, "tokenizer.ggml.merges", GGUF_STRING), vf->n_merges);
            else
                assert_null(gguf_find(f, "tokenizer.ggml.merges"));
            assert_int_equal(gguf_tensor_count(f), 0);
            /* These files stop right after the metadata, without padding. */
            assert_int_equal(gguf_data_offset(f), len);
            check_consistent(f, file, len);
            gguf_close(f);
            assert_int_equal(g_t.live, 0);
        }
        free(file);
    }
}

/* ------------------------------------------------------------------------ */
/* Allocation failure                                                        */
/* ------------------------------------------------------------------------ */

static void fail_every_allocation(const char *rel, uint32_t flags) {
    const char *path = fixture_path(rel);
    if (!path) fixture_missing(rel);
    for (long n = 1;; n++) {
        memset(&g_t, 0, sizeof g_t);
        g_t.fail_at = n;
        gguf_file *f = NULL;
        llms_status st = gguf_open_file(&g_alloc, path, flags, &f);
        if (st == LLMS_OK) {
            assert_true(n > 1);
            /* Success only once every allocation was allowed. */
            assert_true(g_t.n_allocs < n);
            gguf_close(f);
            assert_int_equal(g_t.live, 0);
            break;
        }
        if (st != LLMS_ERR_NO_MEMORY)
            fail_msg("%s: failing allocation %ld gave %d (%s)", rel, n, (int)st, err_message());
        assert_null(f);
        assert_int_equal(g_t.live, 0);
        assert_true(n < 100000);
    }
    memset(&g_t, 0, sizeof g_t);
}

static void test_alloc_failure(void **state) {
    (void)state;
    fail_every_allocation("models/aidreams260K.gguf", 0);
    fail_every_allocation("models/aidreams260K.gguf", GGUF_OPEN_NO_MMAP);
    fail_every_allocation("vocab/ggml-vocab-llama-spm.gguf", 0);
    fail_every_allocation("vocab/ggml-vocab-gpt-2.gguf", GGUF_OPEN_NO_MMAP);
}

static void test_alloc_failure_memory(void **state) {
    (void)state;
    gguf_writer w;
    all_types_file(&w);
    for (long n = 1;; n++) {
        memset(&g_t, 0, sizeof g_t);
        g_t.fail_at = n;
        gguf_file *f = NULL;
        llms_status st = gguf_open_memory(&g_alloc, w.buf, w.len, &f);
        if (st == LLMS_OK) {
            gguf_close(f);
            assert_int_equal(g_t.live, 0);
            break;
        }
        assert_int_equal(st, LLMS_ERR_NO_MEMORY);
        assert_int_equal(g_t.live, 0);
    }
    memset(&g_t, 0, sizeof g_t);
    gw_free(&w);
}

/* ------------------------------------------------------------------------ */
/* Opening files and arguments                                               */
/* ------------------------------------------------------------------------ */

static char *temp_file(const void *data, size_t n) {
    const char *dir = getenv("TMPDIR");
    char *path = malloc(4096);
    assert_non_null(path);
    snprintf(path, 4096, "%s/test_gguf_XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    if (n) assert_int_equal(write(fd, data, n), (ssize_t)n);
    close(fd);
    return path;
}

static void test_open_file_errors(void **state) {
    (void)state;
    gguf_file *f = (gguf_file *)1;
    assert_int_equal(gguf_open_file(&g_alloc, "/nonexistent/dir/x.gguf", 0, &f), LLMS_ERR_IO);
    assert_null(f);
    assert_non_null(strstr(err_message(), "/nonexistent/dir/x.gguf"));
    assert_int_equal(gguf_open_file(&g_alloc, "/", 0, &f), LLMS_ERR_IO);
    assert_int_equal(gguf_open_file(&g_alloc, NULL, 0, &f), LLMS_ERR_INVALID_ARGUMENT);
    assert_int_equal(gguf_open_file(&g_alloc, "/", 0, NULL), LLMS_ERR_INVALID_ARGUMENT);
    assert_int_equal(gguf_open_memory(&g_alloc, NULL, 5, &f), LLMS_ERR_INVALID_ARGUMENT);
    assert_int_equal(gguf_open_memory(&g_alloc, "GGUF", 4, NULL), LLMS_ERR_INVALID_ARGUMENT);
    gguf_close(NULL);
    assert_int_equal(gguf_kv_count(NULL), 0);
    assert_null(gguf_find(NULL, "x"));
    assert_null(gguf_find_tensor(NULL, "x"));

    /* An empty file, a hostile file and a good one, through both paths. */
    char *empty = temp_file("", 0);
    assert_int_equal(gguf_open_file(&g_alloc, empty, 0, &f), LLMS_ERR_GGUF_TRUNCATED);
    assert_int_equal(gguf_open_file(&g_alloc, empty, GGUF_OPEN_NO_MMAP, &f),
                     LLMS_ERR_GGUF_TRUNCATED);
    unlink(empty);
    free(empty);

    gguf_writer w;
    one_tensor(&w, "odd", 1, DIMS8, LLMS_TYPE_F32, 36, 64);
    char *bad = temp_file(w.buf, w.len);
    for (uint32_t flags = 0; flags <= GGUF_OPEN_NO_MMAP; flags++) {
        assert_int_equal(gguf_open_file(&g_alloc, bad, flags, &f), LLMS_ERR_GGUF_ALIGNMENT);
        assert_non_null(strstr(err_message(), "'odd'"));
        assert_int_equal(g_t.live, 0);
    }
    unlink(bad);
    free(bad);
    gw_free(&w);

    small_file(&w);
    char *good = temp_file(w.buf, w.len);
    for (uint32_t flags = 0; flags <= GGUF_OPEN_NO_MMAP; flags++) {
        assert_int_equal(gguf_open_file(&g_alloc, good, flags, &f), LLMS_OK);
        const gguf_tensor *t = gguf_find_tensor(f, "t0");
        assert_non_null(t);
        assert_true(((const float *)t->data)[7] == 7.0f);
        /* Read-into-memory keeps data as aligned as a mapping would. */
        assert_int_equal((uintptr_t)t->data % 32, 0);
        gguf_close(f);
    }
    /* The libc allocator works too (lalloc NULL means libc). */
    assert_int_equal(gguf_open_file(NULL, good, 0, &f), LLMS_OK);
    gguf_close(f);
    unlink(good);
    free(good);
    gw_free(&w);
}

int main(void) {
#define T(fn) cmocka_unit_test_setup_teardown(fn, reset_alloc, check_leaks)
    const struct CMUnitTest tests[] = {
        T(test_minimal_valid),
        T(test_bad_magic),
        T(test_bad_version),
        T(test_kv_count_wraps),
        T(test_tensor_count_wraps),
        T(test_array_length_wraps),
        T(test_string_length_limits),
        T(test_nested_arrays),
        T(test_unknown_value_type),
        T(test_alignment_wrong_type),
        T(test_alignment_values),
        T(test_duplicate_keys),
        T(test_duplicate_tensors),
        T(test_unknown_tensor_type),
        T(test_n_dims),
        T(test_bad_dims),
        T(test_dims_overflow),
        T(test_block_size),
        T(test_tensor_bounds),
        T(test_offset_unaligned),
        T(test_roundtrip_all_types),
        T(test_truncate_small_every_byte),
        T(test_truncate_fixture),
        T(test_fixture_models),
        T(test_fixture_aidreams_facts),
        T(test_fixture_vocabs),
        T(test_alloc_failure),
        T(test_alloc_failure_memory),
        T(test_open_file_errors),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
