/*
 * GGUF reader (v2 and v3). The file is untrusted: every count, length,
 * dimension product, byte size and offset is checked for overflow and
 * against the file size before use, and strings/arrays have caps, so a
 * crafted file yields a specific LLMS_ERR_GGUF_* status with a message
 * naming the key or tensor (via err_set), never a crash or an allocation
 * far larger than the file.
 *
 * Layout: magic "GGUF", u32 version, u64 n_tensors, u64 n_kv (v1 used u32
 * counts and is rejected), then n_kv key/values, then n_tensors tensor
 * infos, padding to general.alignment (default 32), then the data section.
 */
#ifndef LLMS_GGUF_H
#define LLMS_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "llmserve.h"
#include "../core/alloc.h"

/* Value types: numbers as in the file (and LLMS_META_*). */
enum gguf_vtype {
    GGUF_UINT8 = 0, GGUF_INT8 = 1, GGUF_UINT16 = 2, GGUF_INT16 = 3,
    GGUF_UINT32 = 4, GGUF_INT32 = 5, GGUF_FLOAT32 = 6, GGUF_BOOL = 7,
    GGUF_STRING = 8, GGUF_ARRAY = 9, GGUF_UINT64 = 10, GGUF_INT64 = 11,
    GGUF_FLOAT64 = 12, GGUF_NTYPES = 13
};

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32

/* Caps beyond which a file is rejected with LLMS_ERR_GGUF_LIMIT. They are
 * far above anything a real model has. */
#define GGUF_MAX_STRING (64u << 20)     /* bytes in one string */
#define GGUF_MAX_KEY 65535u             /* bytes in a key or tensor name */
#define GGUF_MAX_ARRAY_DEPTH 4          /* nesting of arrays in arrays */
#define GGUF_MAX_ALIGNMENT (1u << 20)   /* larger alignments are nonsense */

typedef struct gguf_string {
    const char *s;   /* NUL-terminated copy (may contain embedded NULs) */
    uint64_t len;
} gguf_string;

typedef struct gguf_value gguf_value;
struct gguf_value {
    uint32_t type;            /* enum gguf_vtype */
    union {
        uint64_t u64;         /* UINT8/16/32/64 and BOOL (0/1) */
        int64_t i64;          /* INT8/16/32/64 */
        double f64;           /* FLOAT32/64 */
        gguf_string str;      /* STRING */
        struct {
            uint32_t elem_type;   /* enum gguf_vtype */
            uint64_t n;
            /* Numeric elements: a copy in host order, packed with the
             * element's natural size (uint8_t[], int32_t[], float[], ...;
             * BOOL as uint8_t). STRING: gguf_string[]. ARRAY: gguf_value[]. */
            const void *data;
        } arr;
    } v;
};

typedef struct gguf_tensor {
    const char *name;
    uint32_t type;              /* LLMS_TYPE_* */
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];  /* ne[0] = row length; unused dims are 1 */
    uint64_t n_elems;
    uint64_t offset;            /* relative to the start of the data section */
    uint64_t n_bytes;
    const void *data;           /* points into the mapped file/memory */
} gguf_tensor;

typedef struct gguf_file gguf_file;

enum { GGUF_OPEN_NO_MMAP = 1 };

/* Open and fully validate a file; memory-maps it unless GGUF_OPEN_NO_MMAP
 * (or mapping fails), in which case it is read into memory. */
llms_status gguf_open_file(const lalloc *a, const char *path, uint32_t flags, gguf_file **out);

/* Validate an image in memory; `data` is not copied and must outlive the file. */
llms_status gguf_open_memory(const lalloc *a, const void *data, size_t size, gguf_file **out);

void gguf_close(gguf_file *f);

uint32_t gguf_version(const gguf_file *f);
uint32_t gguf_alignment(const gguf_file *f);
uint64_t gguf_data_offset(const gguf_file *f);  /* file offset of the data section */
uint64_t gguf_file_size(const gguf_file *f);
/* 1 if the data is a mapping of the file, 0 if it is a buffer (read with
 * GGUF_OPEN_NO_MMAP or where mapping failed, or the host's memory). */
int gguf_is_mapped(const gguf_file *f);

/* Key/values in file order. */
uint64_t gguf_kv_count(const gguf_file *f);
const char *gguf_kv_key(const gguf_file *f, uint64_t i);
const gguf_value *gguf_kv_value(const gguf_file *f, uint64_t i);
const gguf_value *gguf_find(const gguf_file *f, const char *key);  /* NULL if absent */

/* Typed getters: LLMS_ERR_NOT_FOUND if absent, LLMS_ERR_GGUF_TYPE (message
 * naming the key) if the type does not fit. Integer getters accept any
 * integer type whose value fits; float getters accept FLOAT32/64. */
llms_status gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out);
llms_status gguf_get_i64(const gguf_file *f, const char *key, int64_t *out);
llms_status gguf_get_f64(const gguf_file *f, const char *key, double *out);
llms_status gguf_get_bool(const gguf_file *f, const char *key, int *out);
llms_status gguf_get_str(const gguf_file *f, const char *key, const gguf_string **out);
/* An array whose elements have exactly `elem_type`. */
llms_status gguf_get_arr(const gguf_file *f, const char *key, uint32_t elem_type,
                         uint64_t *n, const void **data);

/* Tensors in file order. */
uint64_t gguf_tensor_count(const gguf_file *f);
const gguf_tensor *gguf_tensor_at(const gguf_file *f, uint64_t i);
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);  /* NULL if absent */

/* Name of a value type ("u32", "string", ...). */
const char *gguf_type_name(uint32_t type);


/* ---- Writer (gguf_write.c) ------------------------------------------------
 * Builds a GGUF v3 file: key/values are serialised as they are set (in that
 * order), tensor infos are collected, and gguf_wr_write_file streams the
 * header and then each tensor's data, which a callback fills tensor by
 * tensor (so a multi-GiB model never has to be in memory at once). Data is
 * aligned to GGUF_DEFAULT_ALIGNMENT. Errors are sticky: a failed set makes
 * gguf_wr_write_file return that error. */
typedef struct gguf_wr gguf_wr;

llms_status gguf_wr_create(const lalloc *a, gguf_wr **out);
void gguf_wr_free(gguf_wr *w);

/* A deep copy of any value (strings, arrays of anything, nested arrays). */
llms_status gguf_wr_set(gguf_wr *w, const char *key, const gguf_value *v);
llms_status gguf_wr_set_u32(gguf_wr *w, const char *key, uint32_t v);
llms_status gguf_wr_set_f32(gguf_wr *w, const char *key, float v);
llms_status gguf_wr_set_bool(gguf_wr *w, const char *key, int v);
llms_status gguf_wr_set_str(gguf_wr *w, const char *key, const char *v);
/* Arrays of numbers (packed host-order elements of elem_type) or of strings
 * (elem_type GGUF_STRING, data = const char *const[n]). */
llms_status gguf_wr_set_arr(gguf_wr *w, const char *key, uint32_t elem_type, uint64_t n,
                            const void *data);
uint64_t gguf_wr_kv_count(const gguf_wr *w);

/* Declare a tensor (ne[0] = row length). Returns its index via *index. */
llms_status gguf_wr_add_tensor(gguf_wr *w, const char *name, uint32_t type, uint32_t n_dims,
                               const int64_t *ne, uint64_t *index);
uint64_t gguf_wr_tensor_bytes(const gguf_wr *w, uint64_t index);

/* Fill dst (n_bytes, 64-byte aligned) with tensor `index`'s data. */
typedef llms_status (*gguf_wr_fill_fn)(void *user, uint64_t index, void *dst, uint64_t n_bytes);

/* Write the file; on failure the partial file is removed. */
llms_status gguf_wr_write_file(gguf_wr *w, const char *path, gguf_wr_fill_fn fill, void *user);

#endif
