#include "gguf_writer.h"

#include <stdlib.h>
#include <string.h>

/* Value type numbers of the format (kept here so the writer does not depend
 * on the library's headers). */
enum { GW_STRING = 8, GW_ARRAY = 9, GW_UINT32 = 4, GW_UINT64 = 10, GW_FLOAT32 = 6 };

void gw_init(gguf_writer *w) { memset(w, 0, sizeof *w); }

void gw_free(gguf_writer *w) {
    free(w->buf);
    memset(w, 0, sizeof *w);
}

void gw_bytes(gguf_writer *w, const void *p, size_t n) {
    if (w->oom || n == 0) return;
    if (w->cap - w->len < n) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap - w->len < n) {
            if (cap > SIZE_MAX / 2) { w->oom = 1; return; }
            cap *= 2;
        }
        uint8_t *b = realloc(w->buf, cap);
        if (!b) { w->oom = 1; return; }
        w->buf = b;
        w->cap = cap;
    }
    if (p)
        memcpy(w->buf + w->len, p, n);
    else
        memset(w->buf + w->len, 0, n);
    w->len += n;
}

void gw_u8(gguf_writer *w, uint8_t v) { gw_bytes(w, &v, 1); }
void gw_u16(gguf_writer *w, uint16_t v) { gw_bytes(w, &v, 2); }
void gw_u32(gguf_writer *w, uint32_t v) { gw_bytes(w, &v, 4); }
void gw_u64(gguf_writer *w, uint64_t v) { gw_bytes(w, &v, 8); }
void gw_f32(gguf_writer *w, float v) { gw_bytes(w, &v, 4); }
void gw_f64(gguf_writer *w, double v) { gw_bytes(w, &v, 8); }
void gw_zeros(gguf_writer *w, size_t n) { gw_bytes(w, NULL, n); }

void gw_pad(gguf_writer *w, size_t align) {
    size_t r = w->len & (align - 1);
    if (r) gw_zeros(w, align - r);
}

void gw_strn(gguf_writer *w, const char *s, size_t n) {
    gw_u64(w, n);
    gw_bytes(w, s, n);
}

void gw_str(gguf_writer *w, const char *s) { gw_strn(w, s, strlen(s)); }

void gw_header(gguf_writer *w, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    gw_bytes(w, "GGUF", 4);
    gw_u32(w, version);
    gw_u64(w, n_tensors);
    gw_u64(w, n_kv);
}

void gw_key(gguf_writer *w, const char *key, uint32_t type) {
    gw_str(w, key);
    gw_u32(w, type);
}

void gw_kv_u32(gguf_writer *w, const char *key, uint32_t v) { gw_key(w, key, GW_UINT32); gw_u32(w, v); }
void gw_kv_u64(gguf_writer *w, const char *key, uint64_t v) { gw_key(w, key, GW_UINT64); gw_u64(w, v); }
void gw_kv_f32(gguf_writer *w, const char *key, float v) { gw_key(w, key, GW_FLOAT32); gw_f32(w, v); }
void gw_kv_str(gguf_writer *w, const char *key, const char *v) { gw_key(w, key, GW_STRING); gw_str(w, v); }

void gw_kv_arr(gguf_writer *w, const char *key, uint32_t elem_type, uint64_t n) {
    gw_key(w, key, GW_ARRAY);
    gw_u32(w, elem_type);
    gw_u64(w, n);
}

void gw_tensor(gguf_writer *w, const char *name, uint32_t n_dims, const uint64_t *dims,
               uint32_t type, uint64_t offset) {
    gw_str(w, name);
    gw_u32(w, n_dims);
    for (uint32_t i = 0; i < n_dims; i++) gw_u64(w, dims[i]);
    gw_u32(w, type);
    gw_u64(w, offset);
}
