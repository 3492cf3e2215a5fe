/*
 * A tiny in-memory GGUF writer for tests. It writes exactly what it is told,
 * including lies (counts, lengths, types that do not match what follows), so
 * tests can craft hostile files field by field. Little-endian host assumed.
 *
 * Allocation failures are sticky: gw->oom is set and later writes do
 * nothing, so a test checks once at the end.
 */
#ifndef LLMS_TEST_GGUF_WRITER_H
#define LLMS_TEST_GGUF_WRITER_H

#include <stddef.h>
#include <stdint.h>

typedef struct gguf_writer {
    uint8_t *buf;
    size_t len;
    size_t cap;
    int oom;
} gguf_writer;

void gw_init(gguf_writer *w);
void gw_free(gguf_writer *w);

/* Raw little-endian fields. */
void gw_bytes(gguf_writer *w, const void *p, size_t n);
void gw_u8(gguf_writer *w, uint8_t v);
void gw_u16(gguf_writer *w, uint16_t v);
void gw_u32(gguf_writer *w, uint32_t v);
void gw_u64(gguf_writer *w, uint64_t v);
void gw_f32(gguf_writer *w, float v);
void gw_f64(gguf_writer *w, double v);
void gw_zeros(gguf_writer *w, size_t n);
/* Zero bytes up to the next multiple of `align` (a power of two). */
void gw_pad(gguf_writer *w, size_t align);

/* A GGUF string: u64 length then the bytes (no NUL). */
void gw_str(gguf_writer *w, const char *s);
void gw_strn(gguf_writer *w, const char *s, size_t n);

/* "GGUF", version, tensor count, kv count. */
void gw_header(gguf_writer *w, uint32_t version, uint64_t n_tensors, uint64_t n_kv);

/* A key followed by its value type; the caller then writes the value. */
void gw_key(gguf_writer *w, const char *key, uint32_t type);

/* Whole key/values of the common kinds. */
void gw_kv_u32(gguf_writer *w, const char *key, uint32_t v);
void gw_kv_u64(gguf_writer *w, const char *key, uint64_t v);
void gw_kv_f32(gguf_writer *w, const char *key, float v);
void gw_kv_str(gguf_writer *w, const char *key, const char *v);
/* Array header only: key, ARRAY, element type, count. */
void gw_kv_arr(gguf_writer *w, const char *key, uint32_t elem_type, uint64_t n);

/* A tensor info: name, n_dims, dims (n_dims of them), type, offset. */
void gw_tensor(gguf_writer *w, const char *name, uint32_t n_dims, const uint64_t *dims,
               uint32_t type, uint64_t offset);

#endif
