/*
 * GGUF v3 writer: see gguf.h. Little-endian output (the reader assumes a
 * little-endian host as well).
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "../core/error.h"
#include "../quant/types.h"

typedef struct wr_tensor {
    char *name;
    uint32_t type, n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint64_t n_bytes, offset;
} wr_tensor;

struct gguf_wr {
    lalloc a;
    uint8_t *kv;            /* serialised key/values */
    size_t kv_len, kv_cap;
    uint64_t n_kv;
    wr_tensor *t;
    uint64_t n_t, cap_t;
    llms_status err;        /* sticky */
};

llms_status gguf_wr_create(const lalloc *a, gguf_wr **out) {
    if (!a || !out) return err_set(LLMS_ERR_INVALID_ARGUMENT, "gguf_wr_create: NULL argument");
    gguf_wr *w = xcalloc(a, 1, sizeof *w);
    if (!w) return ERR_OOM();
    w->a = *a;
    *out = w;
    return LLMS_OK;
}

void gguf_wr_free(gguf_wr *w) {
    if (!w) return;
    lalloc a = w->a;
    for (uint64_t i = 0; i < w->n_t; i++) xfree(&a, w->t[i].name);
    xfree(&a, w->t);
    xfree(&a, w->kv);
    xfree(&a, w);
}

static int put(gguf_wr *w, const void *p, size_t n) {
    if (w->err) return 0;
    if (w->kv_len + n > w->kv_cap) {
        size_t cap = w->kv_cap ? w->kv_cap : 4096;
        while (cap < w->kv_len + n) cap *= 2;
        uint8_t *b = xrealloc(&w->a, w->kv, cap);
        if (!b) { w->err = ERR_OOM(); return 0; }
        w->kv = b;
        w->kv_cap = cap;
    }
    memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
    return 1;
}
static void put_u32(gguf_wr *w, uint32_t v) { put(w, &v, 4); }
static void put_u64(gguf_wr *w, uint64_t v) { put(w, &v, 8); }
static void put_strn(gguf_wr *w, const char *s, uint64_t n) { put_u64(w, n); put(w, s, (size_t)n); }

static size_t num_size(uint32_t t) {
    switch (t) {
    case GGUF_UINT8: case GGUF_INT8: case GGUF_BOOL: return 1;
    case GGUF_UINT16: case GGUF_INT16: return 2;
    case GGUF_UINT32: case GGUF_INT32: case GGUF_FLOAT32: return 4;
    case GGUF_UINT64: case GGUF_INT64: case GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

/* One scalar from a gguf_value, in the element's file size. */
static void put_scalar(gguf_wr *w, const gguf_value *v) {
    uint8_t b[8];
    switch (v->type) {
    case GGUF_UINT8: case GGUF_BOOL: b[0] = (uint8_t)v->v.u64; break;
    case GGUF_INT8: { int8_t x = (int8_t)v->v.i64; memcpy(b, &x, 1); break; }
    case GGUF_UINT16: { uint16_t x = (uint16_t)v->v.u64; memcpy(b, &x, 2); break; }
    case GGUF_INT16: { int16_t x = (int16_t)v->v.i64; memcpy(b, &x, 2); break; }
    case GGUF_UINT32: { uint32_t x = (uint32_t)v->v.u64; memcpy(b, &x, 4); break; }
    case GGUF_INT32: { int32_t x = (int32_t)v->v.i64; memcpy(b, &x, 4); break; }
    case GGUF_FLOAT32: { float x = (float)v->v.f64; memcpy(b, &x, 4); break; }
    case GGUF_UINT64: memcpy(b, &v->v.u64, 8); break;
    case GGUF_INT64: memcpy(b, &v->v.i64, 8); break;
    case GGUF_FLOAT64: memcpy(b, &v->v.f64, 8); break;
    }
    put(w, b, num_size(v->type));
}

static void put_value(gguf_wr *w, const gguf_value *v, int depth) {
    if (depth > GGUF_MAX_ARRAY_DEPTH) {
        if (!w->err) w->err = err_set(LLMS_ERR_GGUF_LIMIT, "gguf writer: arrays nested too deep");
        return;
    }
    if (v->type == GGUF_STRING) {
        put_strn(w, v->v.str.s, v->v.str.len);
    } else if (v->type == GGUF_ARRAY) {
        uint32_t et = v->v.arr.elem_type;
        put_u32(w, et);
        put_u64(w, v->v.arr.n);
        if (et == GGUF_STRING) {
            const gguf_string *s = v->v.arr.data;
            for (uint64_t i = 0; i < v->v.arr.n; i++) put_strn(w, s[i].s, s[i].len);
        } else if (et == GGUF_ARRAY) {
            const gguf_value *e = v->v.arr.data;
            for (uint64_t i = 0; i < v->v.arr.n; i++) {
                /* Nested array values carry their header without the type tag. */
                put_value(w, &e[i], depth + 1);
            }
        } else if (num_size(et)) {
            put(w, v->v.arr.data, (size_t)(v->v.arr.n * num_size(et)));
        } else if (!w->err) {
            w->err = err_set(LLMS_ERR_GGUF_TYPE, "gguf writer: unknown array element type %u", et);
        }
    } else if (num_size(v->type)) {
        put_scalar(w, v);
    } else if (!w->err) {
        w->err = err_set(LLMS_ERR_GGUF_TYPE, "gguf writer: unknown value type %u", v->type);
    }
}

static void put_key(gguf_wr *w, const char *key, uint32_t type) {
    put_strn(w, key, strlen(key));
    put_u32(w, type);
    if (!w->err) w->n_kv++;
}

llms_status gguf_wr_set(gguf_wr *w, const char *key, const gguf_value *v) {
    if (!w || !key || !v) return err_set(LLMS_ERR_INVALID_ARGUMENT, "gguf_wr_set: NULL argument");
    put_key(w, key, v->type);
    put_value(w, v, 0);
    return w->err;
}

llms_status gguf_wr_set_u32(gguf_wr *w, const char *key, uint32_t x) {
    gguf_value v = {.type = GGUF_UINT32};
    v.v.u64 = x;
    return gguf_wr_set(w, key, &v);
}

llms_status gguf_wr_set_f32(gguf_wr *w, const char *key, float x) {
    gguf_value v = {.type = GGUF_FLOAT32};
    v.v.f64 = x;
    return gguf_wr_set(w, key, &v);
}

llms_status gguf_wr_set_bool(gguf_wr *w, const char *key, int x) {
    gguf_value v = {.type = GGUF_BOOL};
    v.v.u64 = x ? 1 : 0;
    return gguf_wr_set(w, key, &v);
}

llms_status gguf_wr_set_str(gguf_wr *w, const char *key, const char *s) {
    gguf_value v = {.type = GGUF_STRING};
    v.v.str.s = s;
    v.v.str.len = strlen(s);
    return gguf_wr_set(w, key, &v);
}

llms_status gguf_wr_set_arr(gguf_wr *w, const char *key, uint32_t et, uint64_t n, const void *data) {
    if (!w || !key || (n && !data)) return err_set(LLMS_ERR_INVALID_ARGUMENT, "gguf_wr_set_arr: bad argument");
    if (et != GGUF_STRING && !num_size(et))
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "gguf_wr_set_arr: element type %u", et);
    put_key(w, key, GGUF_ARRAY);
    put_u32(w, et);
    put_u64(w, n);
    if (et == GGUF_STRING) {
        const char *const *s = data;
        for (uint64_t i = 0; i < n; i++) put_strn(w, s[i], strlen(s[i]));
    } else {
        put(w, data, (size_t)(n * num_size(et)));
    }
    return w->err;
}

uint64_t gguf_wr_kv_count(const gguf_wr *w) { return w ? w->n_kv : 0; }

llms_status gguf_wr_add_tensor(gguf_wr *w, const char *name, uint32_t type, uint32_t n_dims,
                               const int64_t *ne, uint64_t *index) {
    if (!w || !name || !ne) return err_set(LLMS_ERR_INVALID_ARGUMENT, "gguf_wr_add_tensor: NULL argument");
    if (w->err) return w->err;
    const type_traits *tt = type_get(type);
    if (!tt || !tt->name) return err_set(LLMS_ERR_GGUF_TENSOR_TYPE, "tensor '%s': unknown type %u", name, type);
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS || ne[0] <= 0 || ne[0] % tt->block_size)
        return err_set(LLMS_ERR_GGUF_SHAPE, "tensor '%s': bad shape for type %s", name, tt->name);
    uint64_t rows = 1;
    for (uint32_t d = 1; d < n_dims; d++) {
        if (ne[d] <= 0) return err_set(LLMS_ERR_GGUF_SHAPE, "tensor '%s': bad dimension", name);
        rows *= (uint64_t)ne[d];
    }
    if (w->n_t == w->cap_t) {
        uint64_t cap = w->cap_t ? w->cap_t * 2 : 64;
        wr_tensor *t = xrealloc_array(&w->a, w->t, (size_t)cap, sizeof *t);
        if (!t) return w->err = ERR_OOM();
        w->t = t;
        w->cap_t = cap;
    }
    wr_tensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    size_t len = strlen(name);
    t->name = xmalloc(&w->a, len + 1);
    if (!t->name) return w->err = ERR_OOM();
    memcpy(t->name, name, len + 1);
    t->type = type;
    t->n_dims = n_dims;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->n_bytes = type_row_bytes(tt, (uint64_t)ne[0]) * rows;
    if (index) *index = w->n_t;
    w->n_t++;
    return LLMS_OK;
}

uint64_t gguf_wr_tensor_bytes(const gguf_wr *w, uint64_t index) {
    return w && index < w->n_t ? w->t[index].n_bytes : 0;
}

static llms_status wr(FILE *fp, const void *p, size_t n, const char *path) {
    if (n && fwrite(p, 1, n, fp) != n) return err_set(LLMS_ERR_IO, "writing '%s' failed", path);
    return LLMS_OK;
}

static llms_status pad(FILE *fp, uint64_t *pos, const char *path) {
    static const uint8_t zeros[GGUF_DEFAULT_ALIGNMENT];
    size_t n = (size_t)((GGUF_DEFAULT_ALIGNMENT - *pos % GGUF_DEFAULT_ALIGNMENT) % GGUF_DEFAULT_ALIGNMENT);
    *pos += n;
    return wr(fp, zeros, n, path);
}

llms_status gguf_wr_write_file(gguf_wr *w, const char *path, gguf_wr_fill_fn fill, void *user) {
    if (!w || !path || (!fill && w->n_t)) return err_set(LLMS_ERR_INVALID_ARGUMENT, "gguf_wr_write_file: bad argument");
    if (w->err) return w->err;
    /* Header and tensor infos go into the same buffer after the key/values. */
    size_t kv_end = w->kv_len;
    uint64_t off = 0, max_bytes = 0;
    for (uint64_t i = 0; i < w->n_t; i++) {
        wr_tensor *t = &w->t[i];
        t->offset = off;
        off += (t->n_bytes + GGUF_DEFAULT_ALIGNMENT - 1) / GGUF_DEFAULT_ALIGNMENT * GGUF_DEFAULT_ALIGNMENT;
        if (t->n_bytes > max_bytes) max_bytes = t->n_bytes;
        put_strn(w, t->name, strlen(t->name));
        put_u32(w, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) put_u64(w, (uint64_t)t->ne[d]);
        put_u32(w, t->type);
        put_u64(w, t->offset);
    }
    if (w->err) return w->err;
    FILE *fp = fopen(path, "wb");
    if (!fp) return err_set(LLMS_ERR_IO, "cannot create '%s'", path);
    uint8_t *buf = NULL;
    llms_status st;
    uint8_t hdr[24];
    memcpy(hdr, "GGUF", 4);
    uint32_t ver = 3;
    memcpy(hdr + 4, &ver, 4);
    memcpy(hdr + 8, &w->n_t, 8);
    memcpy(hdr + 16, &w->n_kv, 8);
    uint64_t pos = 24 + w->kv_len;
    if ((st = wr(fp, hdr, 24, path)) || (st = wr(fp, w->kv, w->kv_len, path)) || (st = pad(fp, &pos, path)))
        goto done;
    w->kv_len = kv_end;  /* the infos are rebuilt on the next write */
    if (max_bytes) {
        buf = xmalloc_aligned(&w->a, (size_t)max_bytes, 64);
        if (!buf) { st = ERR_OOM(); goto done; }
    }
    for (uint64_t i = 0; i < w->n_t; i++) {
        const wr_tensor *t = &w->t[i];
        memset(buf, 0, (size_t)t->n_bytes);
        if ((st = fill(user, i, buf, t->n_bytes))) goto done;
        if ((st = wr(fp, buf, (size_t)t->n_bytes, path))) goto done;
        pos += t->n_bytes;
        if ((st = pad(fp, &pos, path))) goto done;
    }
done:
    w->kv_len = kv_end;
    xfree_aligned(&w->a, buf);
    if (fclose(fp) != 0 && !st) st = err_set(LLMS_ERR_IO, "closing '%s' failed", path);
    if (st) unlink(path);
    return st;
}
