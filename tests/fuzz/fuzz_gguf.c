/*
 * libFuzzer target for the GGUF reader: open an arbitrary image, then walk
 * everything the reader exposes (all KVs including nested arrays, every
 * tensor and its data) and call every getter. Besides the sanitizers, it
 * traps on broken invariants: lookups disagreeing with the tables, tensor
 * data outside the input, or allocations far larger than the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "gguf/gguf.h"
#include "quant/types.h"

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

/* Tracks live bytes to check that memory stays proportional to the input. */
static size_t live_bytes, peak_bytes;

static void *f_malloc(void *user, size_t size) {
    (void)user;
    size_t *p = malloc(size + 16);
    if (!p) return NULL;
    p[0] = size;
    live_bytes += size;
    if (live_bytes > peak_bytes) peak_bytes = live_bytes;
    return (char *)p + 16;
}

static void f_free(void *user, void *ptr) {
    (void)user;
    if (!ptr) return;
    size_t *p = (size_t *)((char *)ptr - 16);
    live_bytes -= p[0];
    free(p);
}

static void *f_realloc(void *user, void *ptr, size_t size) {
    void *n = f_malloc(user, size);
    if (n && ptr) {
        size_t old = ((size_t *)((char *)ptr - 16))[0];
        memcpy(n, ptr, old < size ? old : size);
        f_free(user, ptr);
    }
    return n;
}

static const lalloc fuzz_alloc = {NULL, f_malloc, f_realloc, f_free};

static volatile uint64_t sink;

static void walk_value(const gguf_value *v, int depth) {
    CHECK(depth <= GGUF_MAX_ARRAY_DEPTH);
    CHECK(v->type < GGUF_NTYPES);
    switch (v->type) {
    case GGUF_STRING:
        CHECK(v->v.str.s != NULL && v->v.str.s[v->v.str.len] == 0);
        if (v->v.str.len) sink += (unsigned char)v->v.str.s[v->v.str.len - 1];
        break;
    case GGUF_BOOL:
        CHECK(v->v.u64 <= 1);
        break;
    case GGUF_ARRAY: {
        CHECK(depth < GGUF_MAX_ARRAY_DEPTH);
        CHECK(v->v.arr.elem_type < GGUF_NTYPES);
        CHECK(v->v.arr.data != NULL);
        uint64_t n = v->v.arr.n;
        if (v->v.arr.elem_type == GGUF_STRING) {
            const gguf_string *s = v->v.arr.data;
            for (uint64_t i = 0; i < n; i++) {
                CHECK(s[i].s[s[i].len] == 0);
                sink += s[i].len;
            }
        } else if (v->v.arr.elem_type == GGUF_ARRAY) {
            const gguf_value *a = v->v.arr.data;
            for (uint64_t i = 0; i < n; i++) {
                CHECK(a[i].type == GGUF_ARRAY);
                walk_value(&a[i], depth + 1);
            }
        } else if (n) {
            /* Touch the last byte of the packed copy. */
            static const uint8_t size[GGUF_NTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
            const uint8_t *d = v->v.arr.data;
            sink += d[n * size[v->v.arr.elem_type] - 1];
        }
        break;
    }
    default:
        sink += v->v.u64;
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf_file *f = NULL;
    live_bytes = peak_bytes = 0;
    llms_status st = gguf_open_memory(&fuzz_alloc, data, size, &f);
    /* Memory stays within a small multiple of the input, whatever it claims. */
    CHECK(peak_bytes <= 65536 + 8 * size);
    if (st != LLMS_OK) {
        CHECK(f == NULL);
        CHECK(st < 0);
        CHECK(err_message()[0] != 0);
        CHECK(live_bytes == 0);
        return 0;
    }
    CHECK(gguf_version(f) == 2 || gguf_version(f) == 3);
    uint32_t al = gguf_alignment(f);
    CHECK(al && (al & (al - 1)) == 0 && al <= GGUF_MAX_ALIGNMENT);
    CHECK(gguf_data_offset(f) <= size && gguf_file_size(f) == size);

    for (uint64_t i = 0; i < gguf_kv_count(f); i++) {
        const char *key = gguf_kv_key(f, i);
        const gguf_value *v = gguf_kv_value(f, i);
        CHECK(key && v);
        CHECK(gguf_find(f, key) == v);
        walk_value(v, 0);
        uint32_t u32;
        int64_t i64;
        double f64;
        int b;
        const gguf_string *s;
        uint64_t n;
        const void *d;
        sink += (uint64_t)gguf_get_u32(f, key, &u32);
        sink += (uint64_t)gguf_get_i64(f, key, &i64);
        sink += (uint64_t)gguf_get_f64(f, key, &f64);
        sink += (uint64_t)gguf_get_bool(f, key, &b);
        sink += (uint64_t)gguf_get_str(f, key, &s);
        for (uint32_t t = 0; t <= GGUF_NTYPES; t++) {
            if (gguf_get_arr(f, key, t, &n, &d) == LLMS_OK) {
                CHECK(v->type == GGUF_ARRAY && v->v.arr.elem_type == t && n == v->v.arr.n);
            }
        }
    }
    CHECK(gguf_kv_key(f, gguf_kv_count(f)) == NULL);

    for (uint64_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        CHECK(t && t->name);
        CHECK(gguf_find_tensor(f, t->name) == t);
        CHECK(t->n_dims >= 1 && t->n_dims <= GGUF_MAX_DIMS);
        const type_traits *tt = type_get(t->type);
        CHECK(tt != NULL);
        uint64_t ne = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) {
            CHECK(t->ne[d] >= 1);
            ne *= (uint64_t)t->ne[d];
        }
        CHECK(ne == t->n_elems);
        CHECK(t->n_bytes == type_row_bytes(tt, t->n_elems));
        CHECK(t->offset % al == 0);
        const uint8_t *p = t->data;
        CHECK(p >= data + gguf_data_offset(f) && p + t->n_bytes <= data + size);
        sink += p[0] + p[t->n_bytes - 1];
    }
    CHECK(gguf_tensor_at(f, gguf_tensor_count(f)) == NULL);
    sink += gguf_find(f, "general.architecture") != NULL;
    sink += gguf_find_tensor(f, "token_embd.weight") != NULL;
    gguf_close(f);
    CHECK(live_bytes == 0);
    return 0;
}
