/*
 * Public read-only views of a model: summary, tensor table, metadata by
 * key, and the vocabulary (tokenize / detokenize).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model.h"
#include "../core/error.h"
#include "../core/params.h"

#define CHECK_MODEL(m)                                                              \
    do {                                                                            \
        if (!(m)) return err_set(LLMS_ERR_INVALID_ARGUMENT, "%s: model is NULL", __func__); \
    } while (0)

LLMS_API void llms_model_info_init(llms_model_info *info) {
    if (!info) return;
    memset(info, 0, sizeof *info);
    info->struct_size = sizeof *info;
}

LLMS_API llms_status llms_model_get_info(const llms_model *m, llms_model_info *out) {
    CHECK_MODEL(m);
    if (!out) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_model_get_info: info is NULL");
    llms_model_info i;
    memset(&i, 0, sizeof i);
    i.struct_size = sizeof i;
    i.gguf_version = gguf_version(m->file);
    i.architecture = m->arch_name;
    i.name = m->name;
    i.n_params = m->n_params;
    i.n_bytes = m->n_bytes;
    i.n_tensors = (uint32_t)gguf_tensor_count(m->file);
    i.n_metadata = (uint32_t)gguf_kv_count(m->file);
    i.n_vocab = m->hp.n_vocab;
    i.n_ctx_train = m->hp.n_ctx_train;
    i.n_embd = m->hp.n_embd;
    i.n_layer = m->hp.n_layer;
    i.n_head = m->hp.n_head;
    i.n_head_kv = m->hp.n_head_kv;
    i.n_ff = m->hp.n_ff;
    uint32_t ft = 0;
    if (gguf_get_u32(m->file, "general.file_type", &ft) != LLMS_OK) ft = 0;
    i.file_type = ft;
    i.rope_freq_base = m->hp.rope_freq_base;
    i.rms_norm_eps = m->hp.rms_eps;
    if (!params_emit(out, &i, sizeof i))
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_model_info: struct_size too small");
    return LLMS_OK;
}

LLMS_API void llms_tensor_info_init(llms_tensor_info *info) {
    if (!info) return;
    memset(info, 0, sizeof *info);
    info->struct_size = sizeof *info;
}

LLMS_API llms_status llms_model_tensor(const llms_model *m, uint32_t index, llms_tensor_info *out) {
    CHECK_MODEL(m);
    if (!out) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_model_tensor: info is NULL");
    if (index >= gguf_tensor_count(m->file))
        return err_set(LLMS_ERR_NOT_FOUND, "tensor index %u out of range", index);
    const gguf_tensor *t = gguf_tensor_at(m->file, index);
    llms_tensor_info i;
    memset(&i, 0, sizeof i);
    i.struct_size = sizeof i;
    i.type = (int32_t)t->type;
    i.n_dims = t->n_dims;
    for (int d = 0; d < 4; d++) i.dims[d] = t->ne[d];
    i.offset = gguf_data_offset(m->file) + t->offset;
    i.n_bytes = t->n_bytes;
    i.name = t->name;
    if (!params_emit(out, &i, sizeof i))
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_tensor_info: struct_size too small");
    return LLMS_OK;
}

LLMS_API llms_status llms_model_meta_key(const llms_model *m, uint32_t index, const char **key) {
    CHECK_MODEL(m);
    if (!key) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_model_meta_key: key is NULL");
    if (index >= gguf_kv_count(m->file))
        return err_set(LLMS_ERR_NOT_FOUND, "metadata index %u out of range", index);
    *key = gguf_kv_key(m->file, index);
    return LLMS_OK;
}

static llms_status find_value(const llms_model *m, const char *key, const gguf_value **v) {
    if (!key) return err_set(LLMS_ERR_INVALID_ARGUMENT, "metadata key is NULL");
    *v = gguf_find(m->file, key);
    if (!*v) return err_set(LLMS_ERR_NOT_FOUND, "no metadata key '%s'", key);
    return LLMS_OK;
}

LLMS_API llms_status llms_model_meta_type(const llms_model *m, const char *key, int32_t *type,
                                          int32_t *elem_type, uint64_t *n_elems) {
    CHECK_MODEL(m);
    const gguf_value *v;
    llms_status st = find_value(m, key, &v);
    if (st) return st;
    if (type) *type = (int32_t)v->type;
    if (elem_type) *elem_type = v->type == GGUF_ARRAY ? (int32_t)v->v.arr.elem_type : -1;
    if (n_elems) *n_elems = v->type == GGUF_ARRAY ? v->v.arr.n : 1;
    return LLMS_OK;
}

LLMS_API llms_status llms_model_meta_int(const llms_model *m, const char *key, int64_t *value) {
    CHECK_MODEL(m);
    if (!key || !value) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_model_meta_int: NULL argument");
    return gguf_get_i64(m->file, key, value);
}

LLMS_API llms_status llms_model_meta_float(const llms_model *m, const char *key, double *value) {
    CHECK_MODEL(m);
    if (!key || !value) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_model_meta_float: NULL argument");
    return gguf_get_f64(m->file, key, value);
}

LLMS_API llms_status llms_model_meta_string(const llms_model *m, const char *key, const char **value,
                                            size_t *len) {
    CHECK_MODEL(m);
    if (!key || !value) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_model_meta_string: NULL argument");
    const gguf_string *s;
    llms_status st = gguf_get_str(m->file, key, &s);
    if (st) return st;
    *value = s->s;
    if (len) *len = (size_t)s->len;
    return LLMS_OK;
}

/* A bounded text sink: counts everything, stores what fits. */
typedef struct sink {
    char *buf;
    size_t cap, n;
} sink;

static void sink_put(sink *s, const char *p, size_t n) {
    if (s->n < s->cap) {
        size_t room = s->cap - s->n;
        memcpy(s->buf + s->n, p, n < room ? n : room);
    }
    s->n += n;
}

static void sink_printf(sink *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sink_printf(sink *s, const char *fmt, ...) {
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) sink_put(s, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Strings are quoted with control characters escaped, so the output is one line. */
static void sink_string(sink *s, const char *p, uint64_t n) {
    sink_put(s, "\"", 1);
    for (uint64_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"' || c == '\\') { char e[2] = {'\\', (char)c}; sink_put(s, e, 2); }
        else if (c == '\n') sink_put(s, "\\n", 2);
        else if (c < 0x20) sink_printf(s, "\\x%02x", c);
        else sink_put(s, (const char *)&p[i], 1);
    }
    sink_put(s, "\"", 1);
}

static void sink_scalar(sink *s, uint32_t type, const void *p) {
    switch (type) {
    case GGUF_UINT8: sink_printf(s, "%u", *(const uint8_t *)p); break;
    case GGUF_INT8: sink_printf(s, "%d", *(const int8_t *)p); break;
    case GGUF_UINT16: sink_printf(s, "%u", *(const uint16_t *)p); break;
    case GGUF_INT16: sink_printf(s, "%d", *(const int16_t *)p); break;
    case GGUF_UINT32: sink_printf(s, "%" PRIu32, *(const uint32_t *)p); break;
    case GGUF_INT32: sink_printf(s, "%" PRId32, *(const int32_t *)p); break;
    case GGUF_FLOAT32: sink_printf(s, "%.9g", *(const float *)p); break;
    case GGUF_BOOL: sink_printf(s, "%s", *(const uint8_t *)p ? "true" : "false"); break;
    case GGUF_UINT64: sink_printf(s, "%" PRIu64, *(const uint64_t *)p); break;
    case GGUF_INT64: sink_printf(s, "%" PRId64, *(const int64_t *)p); break;
    case GGUF_FLOAT64: sink_printf(s, "%.17g", *(const double *)p); break;
    default: sink_put(s, "?", 1);
    }
}

static size_t elem_size(uint32_t t) {
    switch (t) {
    case GGUF_UINT8: case GGUF_INT8: case GGUF_BOOL: return 1;
    case GGUF_UINT16: case GGUF_INT16: return 2;
    case GGUF_UINT32: case GGUF_INT32: case GGUF_FLOAT32: return 4;
    case GGUF_UINT64: case GGUF_INT64: case GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

static void sink_value(sink *s, const gguf_value *v, uint32_t max_elems) {
    switch (v->type) {
    case GGUF_STRING: sink_string(s, v->v.str.s, v->v.str.len); return;
    case GGUF_ARRAY: {
        uint64_t n = v->v.arr.n, shown = n < max_elems ? n : max_elems;
        sink_put(s, "[", 1);
        for (uint64_t i = 0; i < shown; i++) {
            if (i) sink_put(s, ", ", 2);
            uint32_t et = v->v.arr.elem_type;
            if (et == GGUF_STRING) {
                const gguf_string *str = (const gguf_string *)v->v.arr.data + i;
                sink_string(s, str->s, str->len);
            } else if (et == GGUF_ARRAY) {
                sink_value(s, (const gguf_value *)v->v.arr.data + i, max_elems);
            } else {
                sink_scalar(s, et, (const char *)v->v.arr.data + i * elem_size(et));
            }
        }
        if (shown < n) sink_printf(s, ", ... (%llu elements)", (unsigned long long)n);
        sink_put(s, "]", 1);
        return;
    }
    case GGUF_FLOAT32: { float f = (float)v->v.f64; sink_scalar(s, v->type, &f); return; }
    case GGUF_FLOAT64: sink_scalar(s, v->type, &v->v.f64); return;
    case GGUF_BOOL: sink_printf(s, "%s", v->v.u64 ? "true" : "false"); return;
    case GGUF_INT8: case GGUF_INT16: case GGUF_INT32: case GGUF_INT64:
        sink_printf(s, "%" PRId64, v->v.i64); return;
    default: sink_printf(s, "%" PRIu64, v->v.u64); return;
    }
}

LLMS_API llms_status llms_model_meta_format(const llms_model *m, const char *key, uint32_t max_elems,
                                            char *buf, size_t cap, size_t *len) {
    CHECK_MODEL(m);
    const gguf_value *v;
    llms_status st = find_value(m, key, &v);
    if (st) return st;
    if (!buf && cap) return err_set(LLMS_ERR_INVALID_ARGUMENT, "buf is NULL");
    sink s = {buf, cap, 0};
    sink_value(&s, v, max_elems);
    if (len) *len = s.n;
    if (s.n + 1 > cap) {
        if (cap) buf[cap - 1] = 0;
        return err_set(LLMS_ERR_BUFFER_TOO_SMALL, "value of '%s' needs %zu bytes", key, s.n + 1);
    }
    buf[s.n] = 0;
    return LLMS_OK;
}

LLMS_API const char *llms_model_chat_template(const llms_model *m) {
    return m ? m->chat_template : NULL;
}

LLMS_API int32_t llms_model_special_token(const llms_model *m, int32_t which) {
    return m ? tok_special(m->tok, which) : -1;
}

LLMS_API int32_t llms_model_n_vocab(const llms_model *m) { return m ? tok_n_vocab(m->tok) : 0; }

LLMS_API int32_t llms_model_token_is_eog(const llms_model *m, int32_t token) {
    return m ? tok_is_eog(m->tok, token) : 0;
}

LLMS_API llms_status llms_tokenize(const llms_model *m, const char *text, size_t len, uint32_t flags,
                                   int32_t *tokens, size_t cap, size_t *n_tokens) {
    CHECK_MODEL(m);
    if ((!text && len) || (!tokens && cap) || !n_tokens)
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_tokenize: NULL argument");
    tok_vec v = {0};
    llms_status st = tok_encode(m->tok, text ? text : "", len, flags, &v);
    if (st) { xfree(m->alloc, v.data); return st; }
    *n_tokens = v.n;
    if (v.n > cap) {
        xfree(m->alloc, v.data);
        return err_set(LLMS_ERR_BUFFER_TOO_SMALL, "%zu tokens do not fit in %zu", v.n, cap);
    }
    if (v.n) memcpy(tokens, v.data, v.n * sizeof *tokens);
    xfree(m->alloc, v.data);
    return LLMS_OK;
}

LLMS_API llms_status llms_token_to_piece(const llms_model *m, int32_t token, char *buf, size_t cap,
                                         size_t *len) {
    CHECK_MODEL(m);
    if ((!buf && cap) || !len) return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_token_to_piece: NULL argument");
    size_t n = 0;
    const char *p = tok_piece(m->tok, token, 1, &n);
    if (!p) return err_set(LLMS_ERR_TOKEN_RANGE, "token %d is outside the vocabulary (%d)", token,
                           tok_n_vocab(m->tok));
    *len = n;
    if (n > cap) return err_set(LLMS_ERR_BUFFER_TOO_SMALL, "token piece needs %zu bytes", n);
    if (n) memcpy(buf, p, n);
    return LLMS_OK;
}

LLMS_API llms_status llms_detokenize(const llms_model *m, const int32_t *tokens, size_t n, uint32_t flags,
                                     char *buf, size_t cap, size_t *len) {
    CHECK_MODEL(m);
    if ((!tokens && n) || (!buf && cap) || !len)
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "llms_detokenize: NULL argument");
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= tok_n_vocab(m->tok))
            return err_set(LLMS_ERR_TOKEN_RANGE, "token %d at index %zu is outside the vocabulary",
                           tokens[i], i);
    return tok_decode(m->tok, tokens, n, flags, buf, cap, len);
}
