/*
 * GGUF reader (v2/v3). See gguf.h for the contract.
 *
 * Design notes:
 *  - The file is untrusted. Every read goes through rd_* helpers that check
 *    the remaining byte count first, and every count is checked against the
 *    remaining bytes (count * smallest possible encoding of one item) before
 *    anything is allocated, so memory use stays within a small constant
 *    factor of the file size whatever the header claims.
 *  - Strings, keys and copied arrays live in a chunked arena: a vocabulary
 *    has tens of thousands of strings, and one allocation per string would
 *    make loading slow and the fail-the-N-th-allocation tests quadratic.
 *  - Keys and tensor names are identified by their C-string view (bytes up
 *    to the first NUL), because that is all gguf_find() can be asked for; two
 *    names that differ only after an embedded NUL are therefore duplicates.
 *  - Fields are read with memcpy: the format packs them without alignment.
 *    The host is little-endian (x86_64), as is every GGUF file we accept.
 */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/error.h"
#include "../quant/types.h"

/* ------------------------------------------------------------------------ */
/* Arena                                                                     */
/* ------------------------------------------------------------------------ */

typedef struct arena_chunk arena_chunk;
struct arena_chunk {
    arena_chunk *next;
    size_t cap;
    size_t used;
    /* Followed by the payload; the header is 24 bytes, so round up. */
    _Alignas(16) unsigned char data[];
};

typedef struct arena {
    arena_chunk *head;
    size_t next_cap;
} arena;

#define ARENA_MIN_CHUNK ((size_t)4096)
/* Growth stops here so the slack in the last chunk stays small next to the
 * file (whose bytes bound everything we copy). */
#define ARENA_MAX_CHUNK ((size_t)1 << 20)

static void *arena_alloc(const lalloc *a, arena *ar, size_t n, size_t align) {
    arena_chunk *c = ar->head;
    if (c) {
        size_t off = (c->used + align - 1) & ~(align - 1);
        if (off <= c->cap && c->cap - off >= n) {
            c->used = off + n;
            return c->data + off;
        }
    }
    size_t cap = ar->next_cap ? ar->next_cap : ARENA_MIN_CHUNK;
    if (cap < n) cap = n;  /* n is bounded by the file size, checked by callers */
    if (cap > SIZE_MAX - sizeof(arena_chunk)) return NULL;
    c = xmalloc(a, sizeof(arena_chunk) + cap);
    if (!c) return NULL;
    c->next = ar->head;
    c->cap = cap;
    c->used = n;
    ar->head = c;
    if (ar->next_cap < ARENA_MAX_CHUNK)
        ar->next_cap = ar->next_cap ? ar->next_cap * 2 : ARENA_MIN_CHUNK * 2;
    return c->data;
}

static void arena_free(const lalloc *a, arena *ar) {
    arena_chunk *c = ar->head;
    while (c) {
        arena_chunk *next = c->next;
        xfree(a, c);
        c = next;
    }
    ar->head = NULL;
}

/* ------------------------------------------------------------------------ */
/* Name hash tables                                                          */
/* ------------------------------------------------------------------------ */

/* Open addressing over indices (slot = index + 1, 0 = empty). The hash is
 * seeded per file so a crafted file cannot precompute colliding names and
 * turn duplicate detection quadratic. */
typedef struct htab {
    uint64_t *slots;
    uint64_t mask;
    uint64_t seed;
} htab;

static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static uint64_t hash_bytes(uint64_t seed, const char *s, size_t n) {
    uint64_t h = seed ^ (n * 0x9e3779b97f4a7c15ull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = mix64(h ^ w);
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    return mix64(h ^ w ^ ((uint64_t)n << 56));
}

static int htab_init(const lalloc *a, htab *t, uint64_t n, uint64_t seed) {
    uint64_t cap = 16;
    while (cap < n * 2) cap *= 2;  /* n is bounded by file size / 13 */
    t->slots = xcalloc(a, (size_t)cap, sizeof *t->slots);
    if (!t->slots) return 0;
    t->mask = cap - 1;
    t->seed = seed;
    return 1;
}

typedef struct name_ref {
    const char *s;
    size_t len;  /* strlen: see the note on embedded NULs at the top */
} name_ref;

typedef name_ref (*name_of_fn)(const void *items, uint64_t i);

/* Returns the index of an existing equal name, or inserts `idx` and returns
 * UINT64_MAX. With idx == UINT64_MAX it only looks up. */
static uint64_t htab_find_or_insert(const htab *t, const void *items, name_of_fn name_of,
                                    const char *s, size_t len, uint64_t idx) {
    if (!t->slots) return UINT64_MAX;
    uint64_t i = hash_bytes(t->seed, s, len) & t->mask;
    for (;;) {
        uint64_t v = t->slots[i];
        if (v == 0) {
            if (idx != UINT64_MAX) t->slots[i] = idx + 1;
            return UINT64_MAX;
        }
        name_ref r = name_of(items, v - 1);
        if (r.len == len && memcmp(r.s, s, len) == 0) return v - 1;
        i = (i + 1) & t->mask;
    }
}

/* ------------------------------------------------------------------------ */
/* File object                                                               */
/* ------------------------------------------------------------------------ */

typedef struct gguf_kv {
    const char *key;
    gguf_value value;
} gguf_kv;

enum { BACKING_MEMORY = 0, BACKING_MMAP = 1, BACKING_BUFFER = 2 };

struct gguf_file {
    lalloc a;
    int backing;
    const uint8_t *base;
    uint64_t size;

    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;

    uint64_t n_kv;
    gguf_kv *kvs;
    htab kv_index;

    uint64_t n_tensors;
    gguf_tensor *tensors;
    htab tensor_index;

    arena strings;
};

static name_ref kv_name(const void *items, uint64_t i) {
    const gguf_kv *kv = (const gguf_kv *)items + i;
    return (name_ref){kv->key, strlen(kv->key)};
}

static name_ref tensor_name(const void *items, uint64_t i) {
    const gguf_tensor *t = (const gguf_tensor *)items + i;
    return (name_ref){t->name, strlen(t->name)};
}

void gguf_close(gguf_file *f) {
    if (!f) return;
    lalloc a = f->a;
    arena_free(&a, &f->strings);
    xfree(&a, f->kvs);
    xfree(&a, f->kv_index.slots);
    xfree(&a, f->tensors);
    xfree(&a, f->tensor_index.slots);
    if (f->backing == BACKING_MMAP)
        munmap((void *)f->base, (size_t)f->size);
    else if (f->backing == BACKING_BUFFER)
        xfree_aligned(&a, (void *)f->base);
    xfree(&a, f);
}

/* ------------------------------------------------------------------------ */
/* Parser                                                                    */
/* ------------------------------------------------------------------------ */

/* Smallest encodings, used to bound counts before allocating. A KV is at
 * least key length (8) + type (4) + a 1-byte value; a tensor info is at
 * least name length (8) + n_dims (4) + one dim (8) + type (4) + offset (8). */
#define MIN_KV_BYTES 13u
#define MIN_TENSOR_BYTES 32u
#define MIN_STRING_BYTES 8u
#define MIN_ARRAY_BYTES 12u  /* element type (4) + count (8) */

typedef struct parser {
    gguf_file *f;
    const uint8_t *p;
    uint64_t size;
    uint64_t pos;
    /* What is being parsed, for messages. */
    enum { IN_HEADER, IN_KV, IN_TENSOR } where;
    uint64_t index;        /* kv or tensor index */
    const char *name;      /* its key or name once read, else NULL */
    uint32_t depth;        /* enclosing arrays of the current value */
    uint64_t elem[GGUF_MAX_ARRAY_DEPTH];
} parser;

/* Copies at most 120 bytes of a name, replacing anything unprintable, so a
 * hostile key can neither flood the message buffer nor inject control
 * sequences into the host's logs. */
static void sanitize(char *dst, size_t cap, const char *s) {
    size_t j = 0;
    for (size_t i = 0; s[i] && j + 4 < cap; i++) {
        if (i == 120) {
            memcpy(dst + j, "...", 3);
            j += 3;
            break;
        }
        unsigned char c = (unsigned char)s[i];
        dst[j++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    dst[j] = 0;
}

static llms_status perr(const parser *ps, llms_status st, const char *fmt, ...) LLMS_PRINTF(3, 4);

/* Every parse error names where it is: "kv 3 'general.alignment'[2]: ..."
 * or "tensor 7 'blk.0.attn_q.weight': ...", and the byte offset. */
static llms_status perr(const parser *ps, llms_status st, const char *fmt, ...) {
    char where[256], name[128], detail[256];
    size_t n = 0;
    switch (ps->where) {
    case IN_HEADER:
        n = (size_t)snprintf(where, sizeof where, "header");
        break;
    case IN_KV:
    case IN_TENSOR:
        n = (size_t)snprintf(where, sizeof where, "%s %" PRIu64,
                             ps->where == IN_KV ? "kv" : "tensor", ps->index);
        if (ps->name) {
            sanitize(name, sizeof name, ps->name);
            n += (size_t)snprintf(where + n, sizeof where - n, " '%s'", name);
        }
        for (uint32_t d = 0; d < ps->depth && n < sizeof where; d++)
            n += (size_t)snprintf(where + n, sizeof where - n, "[%" PRIu64 "]", ps->elem[d]);
        break;
    }
    (void)n;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return err_set(st, "gguf: %s: %s (at byte %" PRIu64 ")", where, detail, ps->pos);
}

static uint64_t remaining(const parser *ps) { return ps->size - ps->pos; }

static llms_status need(const parser *ps, uint64_t n, const char *what) {
    if (remaining(ps) < n)
        return perr(ps, LLMS_ERR_GGUF_TRUNCATED, "file ends inside %s (%" PRIu64
                    " bytes needed, %" PRIu64 " left)", what, n, remaining(ps));
    return LLMS_OK;
}

static llms_status rd_u32(parser *ps, uint32_t *v, const char *what) {
    llms_status st = need(ps, 4, what);
    if (st) return st;
    memcpy(v, ps->p + ps->pos, 4);
    ps->pos += 4;
    return LLMS_OK;
}

static llms_status rd_u64(parser *ps, uint64_t *v, const char *what) {
    llms_status st = need(ps, 8, what);
    if (st) return st;
    memcpy(v, ps->p + ps->pos, 8);
    ps->pos += 8;
    return LLMS_OK;
}

static llms_status oom(const parser *ps) {
    return perr(ps, LLMS_ERR_NO_MEMORY, "out of memory");
}

/* Checks that `count` items of at least `min_bytes` each can fit in what is
 * left: a product that wraps is an OVERFLOW, one that merely exceeds the
 * file is TRUNCATED (a cut file looks exactly like that). */
static llms_status check_count(const parser *ps, uint64_t count, uint64_t min_bytes,
                               const char *what) {
    uint64_t total;
    if (!mul_ok(count, min_bytes, &total))
        return perr(ps, LLMS_ERR_GGUF_OVERFLOW, "%s %" PRIu64 " overflows (x %" PRIu64
                    " bytes each)", what, count, min_bytes);
    if (total > remaining(ps))
        return perr(ps, LLMS_ERR_GGUF_TRUNCATED, "%s %" PRIu64 " needs at least %" PRIu64
                    " bytes, %" PRIu64 " left", what, count, total, remaining(ps));
    return LLMS_OK;
}

/* Reads a length-prefixed string into the arena (NUL-terminated). */
static llms_status rd_string(parser *ps, uint64_t cap, llms_status over_cap, const char *what,
                             gguf_string *out) {
    uint64_t len;
    llms_status st = rd_u64(ps, &len, what);
    if (st) return st;
    /* The cap comes first so an absurd length (near UINT64_MAX) is reported
     * as what it is rather than as a truncation. */
    if (len > cap)
        return perr(ps, over_cap, "%s length %" PRIu64 " exceeds the cap of %" PRIu64,
                    what, len, cap);
    if ((st = need(ps, len, what))) return st;
    char *s = arena_alloc(&ps->f->a, &ps->f->strings, (size_t)len + 1, 1);
    if (!s) return oom(ps);
    memcpy(s, ps->p + ps->pos, (size_t)len);
    s[len] = 0;
    ps->pos += len;
    out->s = s;
    out->len = len;
    return LLMS_OK;
}

/* Packed size of a numeric element (0 for STRING/ARRAY). */
static size_t elem_size(uint32_t type) {
    switch (type) {
    case GGUF_UINT8: case GGUF_INT8: case GGUF_BOOL: return 1;
    case GGUF_UINT16: case GGUF_INT16: return 2;
    case GGUF_UINT32: case GGUF_INT32: case GGUF_FLOAT32: return 4;
    case GGUF_UINT64: case GGUF_INT64: case GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

static llms_status check_bool(const parser *ps, uint8_t b) {
    if (b > 1)
        return perr(ps, LLMS_ERR_GGUF_TYPE, "bool value %u is neither 0 nor 1", (unsigned)b);
    return LLMS_OK;
}

static const uint64_t empty_array_data[1];


static llms_status parse_array(parser *ps, gguf_value *out) {
    uint32_t et;
    uint64_t n;
    llms_status st = rd_u32(ps, &et, "array element type");
    if (st) return st;
    if (et >= GGUF_NTYPES)
        return perr(ps, LLMS_ERR_GGUF_TYPE, "unknown array element type %" PRIu32, et);
    /* This array sits at level depth+1; its elements would be at depth+2.
     * The declared type decides, even for an empty array, so the recursion
     * bound does not depend on the data. */
    if (et == GGUF_ARRAY && ps->depth + 2 > GGUF_MAX_ARRAY_DEPTH)
        return perr(ps, LLMS_ERR_GGUF_LIMIT, "arrays nested deeper than %d",
                    GGUF_MAX_ARRAY_DEPTH);
    if ((st = rd_u64(ps, &n, "array length"))) return st;
    size_t es = elem_size(et);
    uint64_t min_bytes = es ? es : (et == GGUF_STRING ? MIN_STRING_BYTES : MIN_ARRAY_BYTES);
    if ((st = check_count(ps, n, min_bytes, "array length"))) return st;

    out->type = GGUF_ARRAY;
    out->v.arr.elem_type = et;
    out->v.arr.n = n;
    out->v.arr.data = empty_array_data;
    if (n == 0) return LLMS_OK;

    arena *ar = &ps->f->strings;
    const lalloc *a = &ps->f->a;
    if (es) {
        /* n * es <= remaining, so this fits in size_t and the file. */
        size_t bytes = (size_t)(n * es);
        uint8_t *d = arena_alloc(a, ar, bytes, 16);
        if (!d) return oom(ps);
        memcpy(d, ps->p + ps->pos, bytes);
        if (et == GGUF_BOOL) {
            for (uint64_t i = 0; i < n; i++) {
                if (d[i] > 1) {
                    ps->elem[ps->depth] = i;
                    ps->depth++;
                    st = check_bool(ps, d[i]);
                    ps->depth--;
                    return st;
                }
            }
        }
        ps->pos += bytes;
        out->v.arr.data = d;
        return LLMS_OK;
    }

    size_t item = et == GGUF_STRING ? sizeof(gguf_string) : sizeof(gguf_value);
    /* n <= remaining / 8, and item <= 32, so no overflow on 64-bit size_t;
     * mul_ok keeps it honest elsewhere. */
    uint64_t bytes;
    if (!mul_ok(n, item, &bytes) || bytes > SIZE_MAX)
        return perr(ps, LLMS_ERR_GGUF_OVERFLOW, "array length %" PRIu64 " overflows", n);
    void *items = arena_alloc(a, ar, (size_t)bytes, 16);
    if (!items) return oom(ps);
    ps->depth++;
    for (uint64_t i = 0; i < n; i++) {
        ps->elem[ps->depth - 1] = i;
        if (et == GGUF_STRING)
            st = rd_string(ps, GGUF_MAX_STRING, LLMS_ERR_GGUF_LIMIT, "string",
                           (gguf_string *)items + i);
        else
            st = parse_array(ps, (gguf_value *)items + i);
        if (st) return st;  /* depth stays for the message; the parse is over */
    }
    ps->depth--;
    out->v.arr.data = items;
    return LLMS_OK;
}

static llms_status parse_value(parser *ps, uint32_t type, gguf_value *out) {
    llms_status st;
    out->type = type;
    switch (type) {
    case GGUF_UINT8: case GGUF_INT8: case GGUF_BOOL:
    case GGUF_UINT16: case GGUF_INT16:
    case GGUF_UINT32: case GGUF_INT32: case GGUF_FLOAT32:
    case GGUF_UINT64: case GGUF_INT64: case GGUF_FLOAT64: {
        size_t es = elem_size(type);
        if ((st = need(ps, es, gguf_type_name(type)))) return st;
        const uint8_t *q = ps->p + ps->pos;
        switch (type) {
        case GGUF_UINT8: out->v.u64 = q[0]; break;
        case GGUF_BOOL:
            if ((st = check_bool(ps, q[0]))) return st;
            out->v.u64 = q[0];
            break;
        case GGUF_INT8: { int8_t x; memcpy(&x, q, 1); out->v.i64 = x; break; }
        case GGUF_UINT16: { uint16_t x; memcpy(&x, q, 2); out->v.u64 = x; break; }
        case GGUF_INT16: { int16_t x; memcpy(&x, q, 2); out->v.i64 = x; break; }
        case GGUF_UINT32: { uint32_t x; memcpy(&x, q, 4); out->v.u64 = x; break; }
        case GGUF_INT32: { int32_t x; memcpy(&x, q, 4); out->v.i64 = x; break; }
        case GGUF_FLOAT32: { float x; memcpy(&x, q, 4); out->v.f64 = x; break; }
        case GGUF_UINT64: memcpy(&out->v.u64, q, 8); break;
        case GGUF_INT64: memcpy(&out->v.i64, q, 8); break;
        case GGUF_FLOAT64: memcpy(&out->v.f64, q, 8); break;
        }
        ps->pos += es;
        return LLMS_OK;
    }
    case GGUF_STRING:
        return rd_string(ps, GGUF_MAX_STRING, LLMS_ERR_GGUF_LIMIT, "string", &out->v.str);
    case GGUF_ARRAY:
        return parse_array(ps, out);
    default:
        return perr(ps, LLMS_ERR_GGUF_TYPE, "unknown value type %" PRIu32, type);
    }
}

static llms_status parse_kvs(parser *ps) {
    gguf_file *f = ps->f;
    llms_status st;
    for (uint64_t i = 0; i < f->n_kv; i++) {
        ps->where = IN_KV;
        ps->index = i;
        ps->name = NULL;
        ps->depth = 0;
        gguf_string key;
        if ((st = rd_string(ps, GGUF_MAX_KEY, LLMS_ERR_GGUF_LIMIT, "key", &key))) return st;
        f->kvs[i].key = key.s;
        ps->name = key.s;
        uint64_t prev = htab_find_or_insert(&f->kv_index, f->kvs, kv_name, key.s,
                                            strlen(key.s), i);
        if (prev != UINT64_MAX)
            return perr(ps, LLMS_ERR_GGUF_DUPLICATE, "duplicate key (first at kv %" PRIu64 ")",
                        prev);
        uint32_t type;
        if ((st = rd_u32(ps, &type, "value type"))) return st;
        if ((st = parse_value(ps, type, &f->kvs[i].value))) return st;
        /* Only now is the entry complete; until here a failed parse leaves a
         * zeroed value behind, which gguf_close does not look at anyway. */
    }
    return LLMS_OK;
}

static llms_status parse_alignment(parser *ps) {
    gguf_file *f = ps->f;
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    uint64_t i = htab_find_or_insert(&f->kv_index, f->kvs, kv_name, "general.alignment",
                                     strlen("general.alignment"), UINT64_MAX);
    if (i == UINT64_MAX) return LLMS_OK;
    const gguf_value *v = &f->kvs[i].value;
    ps->where = IN_KV;
    ps->index = i;
    ps->name = f->kvs[i].key;
    ps->depth = 0;
    if (v->type != GGUF_UINT32)
        return perr(ps, LLMS_ERR_GGUF_TYPE, "must be u32, not %s", gguf_type_name(v->type));
    uint64_t al = v->v.u64;
    if (al == 0 || (al & (al - 1)) != 0 || al > GGUF_MAX_ALIGNMENT)
        return perr(ps, LLMS_ERR_GGUF_ALIGNMENT, "alignment %" PRIu64 " is not a power of two"
                    " in [1, %u]", al, (unsigned)GGUF_MAX_ALIGNMENT);
    f->alignment = (uint32_t)al;
    return LLMS_OK;
}

static llms_status parse_tensor(parser *ps, uint64_t i) {
    gguf_file *f = ps->f;
    gguf_tensor *t = &f->tensors[i];
    llms_status st;
    ps->where = IN_TENSOR;
    ps->index = i;
    ps->name = NULL;
    ps->depth = 0;

    gguf_string name;
    if ((st = rd_string(ps, GGUF_MAX_KEY, LLMS_ERR_GGUF_LIMIT, "tensor name", &name))) return st;
    t->name = name.s;
    ps->name = name.s;
    uint64_t prev = htab_find_or_insert(&f->tensor_index, f->tensors, tensor_name, name.s,
                                        strlen(name.s), i);
    if (prev != UINT64_MAX)
        return perr(ps, LLMS_ERR_GGUF_DUPLICATE, "duplicate tensor name (first at tensor %"
                    PRIu64 ")", prev);

    if ((st = rd_u32(ps, &t->n_dims, "n_dims"))) return st;
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return perr(ps, LLMS_ERR_GGUF_SHAPE, "n_dims %" PRIu32 " not in [1, %d]", t->n_dims,
                    GGUF_MAX_DIMS);
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t ne;
        if ((st = rd_u64(ps, &ne, "dimension"))) return st;
        if (ne == 0 || ne > (uint64_t)INT64_MAX)
            return perr(ps, LLMS_ERR_GGUF_SHAPE, "dimension %" PRIu32 " is %s (%" PRIu64 ")",
                        d, ne == 0 ? "zero" : "negative", ne);
        t->ne[d] = (int64_t)ne;
    }
    if ((st = rd_u32(ps, &t->type, "tensor type"))) return st;
    const type_traits *tt = type_get(t->type);
    if (!tt)
        return perr(ps, LLMS_ERR_GGUF_TENSOR_TYPE, "unknown tensor type %" PRIu32, t->type);
    if ((st = rd_u64(ps, &t->offset, "tensor offset"))) return st;

    /* Elements as int64 (what every consumer indexes with), then bytes. */
    uint64_t n_elems = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        if (!mul_ok(n_elems, (uint64_t)t->ne[d], &n_elems) || n_elems > (uint64_t)INT64_MAX)
            return perr(ps, LLMS_ERR_GGUF_OVERFLOW, "element count overflows (%" PRIu32
                        " dims, ne[%" PRIu32 "] = %" PRId64 ")", t->n_dims, d, t->ne[d]);
    }
    if ((uint64_t)t->ne[0] % tt->block_size != 0)
        return perr(ps, LLMS_ERR_GGUF_SHAPE, "row length %" PRId64 " is not a multiple of the"
                    " %s block size %" PRIu32, t->ne[0], tt->name, tt->block_size);
    uint64_t n_bytes;
    if (!mul_ok(n_elems / tt->block_size, tt->type_size, &n_bytes))
        return perr(ps, LLMS_ERR_GGUF_OVERFLOW, "byte size overflows (%" PRIu64 " elements of %s)",
                    n_elems, tt->name);
    t->n_elems = n_elems;
    t->n_bytes = n_bytes;
    if (t->offset % f->alignment != 0)
        return perr(ps, LLMS_ERR_GGUF_ALIGNMENT, "data offset %" PRIu64 " is not a multiple of"
                    " the alignment %" PRIu32, t->offset, f->alignment);
    return LLMS_OK;
}

static llms_status parse(gguf_file *f) {
    parser ps;
    memset(&ps, 0, sizeof ps);
    ps.f = f;
    ps.p = f->base;
    ps.size = f->size;
    ps.where = IN_HEADER;
    llms_status st;

    /* Magic first, on whatever bytes there are: a 2-byte file that is not
     * "GG" is not GGUF; one that is "GG" is a truncated GGUF. */
    size_t m = f->size < 4 ? (size_t)f->size : 4;
    if (memcmp(f->base, "GGUF", m) != 0)
        return perr(&ps, LLMS_ERR_GGUF_MAGIC, "bad magic (not a GGUF file)");
    if ((st = need(&ps, 4, "magic"))) return st;
    ps.pos = 4;
    if ((st = rd_u32(&ps, &f->version, "version"))) return st;
    if (f->version != 2 && f->version != 3)
        return perr(&ps, LLMS_ERR_GGUF_VERSION, "version %" PRIu32 " is not 2 or 3%s",
                    f->version, f->version > 0xffff ? " (a big-endian file?)" : "");
    if ((st = rd_u64(&ps, &f->n_tensors, "tensor count"))) return st;
    if ((st = rd_u64(&ps, &f->n_kv, "kv count"))) return st;
    if ((st = check_count(&ps, f->n_kv, MIN_KV_BYTES, "kv count"))) return st;
    if ((st = check_count(&ps, f->n_tensors, MIN_TENSOR_BYTES, "tensor count"))) return st;
    /* Both together must fit too; each product is known not to wrap. */
    if (f->n_kv * MIN_KV_BYTES > remaining(&ps) - f->n_tensors * MIN_TENSOR_BYTES)
        return perr(&ps, LLMS_ERR_GGUF_TRUNCATED, "kv count %" PRIu64 " and tensor count %"
                    PRIu64 " do not fit in the %" PRIu64 " bytes left", f->n_kv, f->n_tensors,
                    remaining(&ps));

    /* Seed from addresses, which ASLR varies between runs (see htab). */
    uint64_t seed = mix64((uint64_t)(uintptr_t)f ^ ((uint64_t)(uintptr_t)&ps << 17));

    if (f->n_kv) {
        f->kvs = xcalloc(&f->a, (size_t)f->n_kv, sizeof *f->kvs);
        if (!f->kvs || !htab_init(&f->a, &f->kv_index, f->n_kv, seed)) return oom(&ps);
    }
    if ((st = parse_kvs(&ps))) return st;
    if ((st = parse_alignment(&ps))) return st;

    ps.where = IN_HEADER;
    ps.name = NULL;
    ps.depth = 0;
    if ((st = check_count(&ps, f->n_tensors, MIN_TENSOR_BYTES, "tensor count"))) return st;
    if (f->n_tensors) {
        f->tensors = xcalloc(&f->a, (size_t)f->n_tensors, sizeof *f->tensors);
        if (!f->tensors || !htab_init(&f->a, &f->tensor_index, f->n_tensors, mix64(seed)))
            return oom(&ps);
    }
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if ((st = parse_tensor(&ps, i))) return st;

    /* pos <= size <= UINT64_MAX - alignment in practice; check anyway. */
    uint64_t data_offset;
    if (!add_ok(ps.pos, f->alignment - 1, &data_offset))
        return perr(&ps, LLMS_ERR_GGUF_OVERFLOW, "data section offset overflows");
    data_offset &= ~(uint64_t)(f->alignment - 1);
    if (data_offset > f->size) {
        /* With no tensors the data section is empty and the padding before
         * it is optional (writers differ); with tensors the file is cut. */
        if (f->n_tensors)
            return perr(&ps, LLMS_ERR_GGUF_TRUNCATED, "file ends in the padding before the data"
                        " section at %" PRIu64, data_offset);
        data_offset = f->size;
    }
    f->data_offset = data_offset;

    uint64_t data_size = f->size - data_offset;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        uint64_t end;
        if (!add_ok(t->offset, t->n_bytes, &end) || end > data_size) {
            ps.where = IN_TENSOR;
            ps.index = i;
            ps.name = t->name;
            ps.pos = data_offset;
            return perr(&ps, LLMS_ERR_GGUF_BOUNDS, "data at offset %" PRIu64 " + %" PRIu64
                        " bytes exceeds the data section of %" PRIu64 " bytes",
                        t->offset, t->n_bytes, data_size);
        }
        t->data = f->base + data_offset + t->offset;
    }
    return LLMS_OK;
}

/* ------------------------------------------------------------------------ */
/* Opening                                                                   */
/* ------------------------------------------------------------------------ */

static llms_status open_common(gguf_file *f, gguf_file **out) {
    llms_status st = parse(f);
    if (st != LLMS_OK) {
        gguf_close(f);
        return st;
    }
    *out = f;
    return LLMS_OK;
}

static gguf_file *file_new(const lalloc *a) {
    gguf_file *f = xcalloc(a, 1, sizeof *f);
    if (f) f->a = *a;
    return f;
}

llms_status gguf_open_memory(const lalloc *a, const void *data, size_t size, gguf_file **out) {
    if (!out) return err_set(LLMS_ERR_INVALID_ARGUMENT, "gguf_open_memory: out is NULL");
    *out = NULL;
    if (!data && size)
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "gguf_open_memory: data is NULL");
    if (!a) a = &lalloc_libc;
    /* An empty image still needs a valid pointer for the magic check. */
    static const uint8_t empty[1];
    gguf_file *f = file_new(a);
    if (!f) return ERR_OOM();
    f->backing = BACKING_MEMORY;
    f->base = size ? data : empty;
    f->size = size;
    return open_common(f, out);
}

static llms_status io_err(const char *what, const char *path, int e) {
    char buf[128];
    char name[128];
    sanitize(name, sizeof name, path);
    /* GNU strerror_r (we build with _GNU_SOURCE): thread-safe. */
    const char *msg = strerror_r(e, buf, sizeof buf);
    return err_set(LLMS_ERR_IO, "gguf: %s '%s': %s", what, name, msg);
}

/* Reads the whole file into an aligned buffer: page alignment keeps tensor
 * data as aligned as it would be in a mapping. */
static llms_status read_all(gguf_file *f, int fd, const char *path) {
    uint8_t *buf = xmalloc_aligned(&f->a, (size_t)f->size, 4096);
    if (!buf) return err_set(LLMS_ERR_NO_MEMORY, "gguf: out of memory reading '%s' (%" PRIu64
                             " bytes)", path, f->size);
    uint64_t done = 0;
    while (done < f->size) {
        size_t chunk = f->size - done > (1u << 30) ? (1u << 30) : (size_t)(f->size - done);
        ssize_t r = pread(fd, buf + done, chunk, (off_t)done);
        if (r < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            xfree_aligned(&f->a, buf);
            return io_err("cannot read", path, e);
        }
        if (r == 0) {
            xfree_aligned(&f->a, buf);
            return err_set(LLMS_ERR_IO, "gguf: '%s' shrank while being read", path);
        }
        done += (uint64_t)r;
    }
    f->base = buf;
    f->backing = BACKING_BUFFER;
    return LLMS_OK;
}

llms_status gguf_open_file(const lalloc *a, const char *path, uint32_t flags, gguf_file **out) {
    if (!out) return err_set(LLMS_ERR_INVALID_ARGUMENT, "gguf_open_file: out is NULL");
    *out = NULL;
    if (!path) return err_set(LLMS_ERR_INVALID_ARGUMENT, "gguf_open_file: path is NULL");
    if (!a) a = &lalloc_libc;

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return io_err("cannot open", path, errno);
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return io_err("cannot stat", path, e);
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return io_err("cannot load", path, EINVAL);
    }
    if (sb.st_size <= 0) {
        close(fd);
        return err_set(LLMS_ERR_GGUF_TRUNCATED, "gguf: header: '%s' is empty", path);
    }
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        return err_set(LLMS_ERR_IO, "gguf: '%s' is too large to address", path);
    }

    gguf_file *f = file_new(a);
    if (!f) {
        close(fd);
        return ERR_OOM();
    }
    f->size = (uint64_t)sb.st_size;
    if (!(flags & GGUF_OPEN_NO_MMAP)) {
        void *p = mmap(NULL, (size_t)f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p != MAP_FAILED) {
            f->base = p;
            f->backing = BACKING_MMAP;
        }
        /* On failure (e.g. a file system without mmap) fall back to reading. */
    }
    if (!f->base) {
        llms_status st = read_all(f, fd, path);
        if (st != LLMS_OK) {
            close(fd);
            gguf_close(f);
            return st;
        }
    }
    close(fd);  /* a mapping stays valid after its descriptor is closed */
    return open_common(f, out);
}

/* ------------------------------------------------------------------------ */
/* Accessors                                                                 */
/* ------------------------------------------------------------------------ */

uint32_t gguf_version(const gguf_file *f) { return f ? f->version : 0; }
uint32_t gguf_alignment(const gguf_file *f) { return f ? f->alignment : 0; }
uint64_t gguf_data_offset(const gguf_file *f) { return f ? f->data_offset : 0; }
uint64_t gguf_file_size(const gguf_file *f) { return f ? f->size : 0; }
int gguf_is_mapped(const gguf_file *f) { return f && f->backing == BACKING_MMAP; }

uint64_t gguf_kv_count(const gguf_file *f) { return f ? f->n_kv : 0; }

const char *gguf_kv_key(const gguf_file *f, uint64_t i) {
    return f && i < f->n_kv ? f->kvs[i].key : NULL;
}

const gguf_value *gguf_kv_value(const gguf_file *f, uint64_t i) {
    return f && i < f->n_kv ? &f->kvs[i].value : NULL;
}

const gguf_value *gguf_find(const gguf_file *f, const char *key) {
    if (!f || !key) return NULL;
    uint64_t i = htab_find_or_insert(&f->kv_index, f->kvs, kv_name, key, strlen(key),
                                     UINT64_MAX);
    return i == UINT64_MAX ? NULL : &f->kvs[i].value;
}

uint64_t gguf_tensor_count(const gguf_file *f) { return f ? f->n_tensors : 0; }

const gguf_tensor *gguf_tensor_at(const gguf_file *f, uint64_t i) {
    return f && i < f->n_tensors ? &f->tensors[i] : NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
    if (!f || !name) return NULL;
    uint64_t i = htab_find_or_insert(&f->tensor_index, f->tensors, tensor_name, name,
                                     strlen(name), UINT64_MAX);
    return i == UINT64_MAX ? NULL : &f->tensors[i];
}

const char *gguf_type_name(uint32_t type) {
    static const char *const names[GGUF_NTYPES] = {
        "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array",
        "u64", "i64", "f64",
    };
    return type < GGUF_NTYPES ? names[type] : "unknown";
}

/* Common part of the typed getters: argument checks and lookup. */
static llms_status get_value(const gguf_file *f, const char *key, const void *out,
                             const gguf_value **v) {
    if (!f || !key || !out)
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "gguf getter: NULL argument");
    *v = gguf_find(f, key);
    if (!*v) {
        char name[128];
        sanitize(name, sizeof name, key);
        return err_set(LLMS_ERR_NOT_FOUND, "gguf: key '%s' not found", name);
    }
    return LLMS_OK;
}

static llms_status type_err(const char *key, const gguf_value *v, const char *wanted) {
    char name[128];
    sanitize(name, sizeof name, key);
    return err_set(LLMS_ERR_GGUF_TYPE, "gguf: key '%s' is %s, expected %s", name,
                   gguf_type_name(v->type), wanted);
}

static int is_unsigned(uint32_t t) {
    return t == GGUF_UINT8 || t == GGUF_UINT16 || t == GGUF_UINT32 || t == GGUF_UINT64;
}
static int is_signed(uint32_t t) {
    return t == GGUF_INT8 || t == GGUF_INT16 || t == GGUF_INT32 || t == GGUF_INT64;
}

static llms_status range_err(const char *key, const gguf_value *v, const char *wanted) {
    char name[128];
    sanitize(name, sizeof name, key);
    if (is_unsigned(v->type))
        return err_set(LLMS_ERR_GGUF_TYPE, "gguf: key '%s' value %" PRIu64 " does not fit %s",
                       name, v->v.u64, wanted);
    return err_set(LLMS_ERR_GGUF_TYPE, "gguf: key '%s' value %" PRId64 " does not fit %s",
                   name, v->v.i64, wanted);
}

llms_status gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out) {
    const gguf_value *v;
    llms_status st = get_value(f, key, out, &v);
    if (st) return st;
    if (is_unsigned(v->type)) {
        if (v->v.u64 > UINT32_MAX) return range_err(key, v, "u32");
        *out = (uint32_t)v->v.u64;
        return LLMS_OK;
    }
    if (is_signed(v->type)) {
        if (v->v.i64 < 0 || v->v.i64 > (int64_t)UINT32_MAX) return range_err(key, v, "u32");
        *out = (uint32_t)v->v.i64;
        return LLMS_OK;
    }
    return type_err(key, v, "an integer");
}

llms_status gguf_get_i64(const gguf_file *f, const char *key, int64_t *out) {
    const gguf_value *v;
    llms_status st = get_value(f, key, out, &v);
    if (st) return st;
    if (is_unsigned(v->type)) {
        if (v->v.u64 > (uint64_t)INT64_MAX) return range_err(key, v, "i64");
        *out = (int64_t)v->v.u64;
        return LLMS_OK;
    }
    if (is_signed(v->type)) {
        *out = v->v.i64;
        return LLMS_OK;
    }
    return type_err(key, v, "an integer");
}

llms_status gguf_get_f64(const gguf_file *f, const char *key, double *out) {
    const gguf_value *v;
    llms_status st = get_value(f, key, out, &v);
    if (st) return st;
    if (v->type != GGUF_FLOAT32 && v->type != GGUF_FLOAT64) return type_err(key, v, "f32 or f64");
    *out = v->v.f64;
    return LLMS_OK;
}

llms_status gguf_get_bool(const gguf_file *f, const char *key, int *out) {
    const gguf_value *v;
    llms_status st = get_value(f, key, out, &v);
    if (st) return st;
    if (v->type != GGUF_BOOL) return type_err(key, v, "bool");
    *out = v->v.u64 != 0;
    return LLMS_OK;
}

llms_status gguf_get_str(const gguf_file *f, const char *key, const gguf_string **out) {
    const gguf_value *v;
    llms_status st = get_value(f, key, out, &v);
    if (st) return st;
    if (v->type != GGUF_STRING) return type_err(key, v, "string");
    *out = &v->v.str;
    return LLMS_OK;
}

llms_status gguf_get_arr(const gguf_file *f, const char *key, uint32_t elem_type,
                         uint64_t *n, const void **data) {
    const gguf_value *v;
    llms_status st = get_value(f, key, n, &v);
    if (st) return st;
    if (!data) return err_set(LLMS_ERR_INVALID_ARGUMENT, "gguf_get_arr: data is NULL");
    if (v->type != GGUF_ARRAY) return type_err(key, v, "array");
    if (v->v.arr.elem_type != elem_type) {
        char name[128];
        sanitize(name, sizeof name, key);
        return err_set(LLMS_ERR_GGUF_TYPE, "gguf: key '%s' is an array of %s, expected %s",
                       name, gguf_type_name(v->v.arr.elem_type), gguf_type_name(elem_type));
    }
    *n = v->v.arr.n;
    *data = v->v.arr.data;
    return LLMS_OK;
}
