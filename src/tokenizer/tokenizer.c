/*
 * Tokenizer: loading from GGUF metadata, special-token handling, pieces and
 * decoding, and the encode driver. The merge algorithms live in tok_spm.c
 * and tok_bpe.c.
 *
 * Behaviour follows the reference implementations the GGUF vocabularies
 * come from (SentencePiece / Hugging Face tokenizers, as mirrored by
 * llama.cpp), because models are trained on exactly those token sequences:
 *  - User-defined tokens are cut out of the raw text before BPE even when
 *    special tokens are not parsed (HF added tokens; GPT-NeoX's runs of
 *    spaces are user-defined tokens). Control and unknown tokens are
 *    recognised only with LLMS_TOKENIZE_PARSE_SPECIAL. Matching is
 *    leftmost-longest, as HF's added-vocabulary matcher does.
 *  - SPM prepends a space at the start of the text and after every special
 *    token (add_space_prefix, default on), and writes spaces as U+2581.
 *  - Tokens whose text is a well-known end marker ("<|im_end|>", ...) end
 *    generation and are treated as control tokens even if the converter
 *    typed them otherwise, as llama.cpp does (ref. llama.cpp issue 9606).
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"
#include "unicode.h"
#include "../core/error.h"

/* GGUF token types (tokenizer.ggml.token_type). */
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

/* ---- small utilities shared with tok_spm.c / tok_bpe.c --------------- */

void *tok_scratch_get(tok_scratch *s, int which, size_t n, size_t size) {
    uint64_t bytes;
    if (!mul_ok(n ? n : 1, size, &bytes) || bytes > SIZE_MAX) return NULL;
    if (s->cap[which] < bytes) {
        xfree(s->a, s->buf[which]);
        s->buf[which] = xmalloc(s->a, (size_t)bytes);
        s->cap[which] = s->buf[which] ? (size_t)bytes : 0;
    }
    return s->buf[which];
}

void *tok_scratch_grow(tok_scratch *s, int which, size_t n, size_t size) {
    uint64_t bytes;
    if (!mul_ok(n ? n : 1, size, &bytes) || bytes > SIZE_MAX) return NULL;
    if (s->cap[which] < bytes) {
        void *p = xrealloc(s->a, s->buf[which], (size_t)bytes);
        if (!p) return NULL;
        s->buf[which] = p;
        s->cap[which] = (size_t)bytes;
    }
    return s->buf[which];
}

void tok_scratch_free(tok_scratch *s) {
    for (int i = 0; i < SCR_N; i++) xfree(s->a, s->buf[i]);
}

llms_status tok_vec_push(const lalloc *a, tok_vec *out, int32_t id) {
    if (out->n == out->cap) {
        size_t cap = out->cap ? out->cap * 2 : 64;
        int32_t *d = xrealloc_array(a, out->data, cap, sizeof *d);
        if (!d) return ERR_OOM();
        out->data = d;
        out->cap = cap;
    }
    out->data[out->n++] = id;
    return LLMS_OK;
}

/* FNV-1a: keys are short token texts; quality is ample for open addressing. */
uint32_t tok_hash(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return (uint32_t)(h ^ (h >> 32));
}

/* A 4-ary min-heap: half the depth of a binary one, and the four children
 * of a node are adjacent (one or two cache lines), which matters when a
 * single 1 MiB word puts a million pairs in the heap. */
void tok_heap_push(heap_entry *h, size_t *n, heap_entry e) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 4;
        if (h[p].prio_left <= e.prio_left) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
}

heap_entry tok_heap_pop(heap_entry *h, size_t *n) {
    heap_entry top = h[0], last = h[--*n];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 4 * i + 1;
        if (c >= m) break;
        size_t best = c, end = c + 4 < m ? c + 4 : m;
        for (size_t k = c + 1; k < end; k++)
            if (h[k].prio_left < h[best].prio_left) best = k;
        if (last.prio_left <= h[best].prio_left) break;
        h[i] = h[best];
        i = best;
    }
    if (m) h[i] = last;
    return top;
}

/* ---- hash maps ---------------------------------------------------------- */

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c *= 2;
    return c;
}

static llms_status strmap_init(const lalloc *a, strmap *m, size_t n) {
    size_t cap = pow2_at_least(n * 2 + 1);
    m->slot = xmalloc(a, cap * sizeof *m->slot);
    m->hash = xmalloc(a, cap * sizeof *m->hash);
    if (!m->slot || !m->hash) return ERR_OOM();
    memset(m->slot, 0xff, cap * sizeof *m->slot);
    m->mask = cap - 1;
    m->count = 0;
    return LLMS_OK;
}

static void strmap_free(const lalloc *a, strmap *m) {
    xfree(a, m->slot);
    xfree(a, m->hash);
}

static int32_t strmap_find(const strmap *m, const char *base, const size_t *off,
                           const uint32_t *len, const char *s, size_t n, uint32_t h) {
    if (!m->slot) return -1;
    for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
        int32_t k = m->slot[i];
        if (k < 0) return -1;
        if (m->hash[i] == h && len[k] == n && !memcmp(base + off[k], s, n)) return k;
    }
}

/* Insert key k unless an equal key is present; returns the key now stored
 * (so the first of duplicates wins). The map was sized for all inserts. */
static int32_t strmap_insert(strmap *m, const char *base, const size_t *off,
                             const uint32_t *len, int32_t k) {
    const char *s = base + off[k];
    uint32_t h = tok_hash(s, len[k]);
    size_t i = h & m->mask;
    for (;; i = (i + 1) & m->mask) {
        int32_t o = m->slot[i];
        if (o < 0) break;
        if (m->hash[i] == h && len[o] == len[k] && !memcmp(base + off[o], s, len[k])) return o;
    }
    m->slot[i] = k;
    m->hash[i] = h;
    m->count++;
    return k;
}

static llms_status u64map_init(const lalloc *a, u64map *m, size_t n) {
    size_t cap = pow2_at_least(n * 2 + 1);
    m->key = xmalloc(a, cap * sizeof *m->key);
    m->val = xmalloc(a, cap * sizeof *m->val);
    if (!m->key || !m->val) return ERR_OOM();
    memset(m->key, 0xff, cap * sizeof *m->key);
    m->mask = cap - 1;
    m->count = 0;
    return LLMS_OK;
}

static void u64map_free(const lalloc *a, u64map *m) {
    xfree(a, m->key);
    xfree(a, m->val);
}

static inline size_t u64_slot(const u64map *m, uint64_t k) {
    return (size_t)(k * 0x9E3779B97F4A7C15ull >> 32) & m->mask;
}

int32_t *tok_u64map_get(const u64map *m, uint64_t k) {
    if (!m->key) return NULL;
    for (size_t i = u64_slot(m, k);; i = (i + 1) & m->mask) {
        if (m->key[i] == k) return m->val[i];
        if (m->key[i] == UINT64_MAX) return NULL;
    }
}

/* Insert if absent (first wins); returns the stored values. */
static int32_t *u64map_put(u64map *m, uint64_t k, int32_t v0, int32_t v1) {
    size_t i = u64_slot(m, k);
    for (; m->key[i] != UINT64_MAX; i = (i + 1) & m->mask)
        if (m->key[i] == k) return m->val[i];
    m->key[i] = k;
    m->val[i][0] = v0;
    m->val[i][1] = v1;
    m->count++;
    return m->val[i];
}

int32_t tok_key_lookup(const tokenizer *t, const char *s, size_t n) {
    return strmap_find(&t->key_map, t->key, t->key_off, t->key_len, s, n, tok_hash(s, n));
}

/* ---- GPT-2 byte <-> unicode mapping ------------------------------------ */

/* GPT-2 shows each byte as a printable code point: the bytes ! .. ~,
 * ¡ .. ¬ and ® .. ÿ as themselves, the other 68 as U+0100.. in byte order. */
static void gpt2_maps(uint16_t byte_to_cp[256], int16_t cp_to_byte[0x200]) {
    for (int i = 0; i < 0x200; i++) cp_to_byte[i] = -1;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        byte_to_cp[b] = (uint16_t)(printable ? b : 256 + n++);
        cp_to_byte[byte_to_cp[b]] = (int16_t)b;
    }
}

/* Undo the mapping of s[0..n) into dst (room for n bytes). Returns the
 * decoded length, or SIZE_MAX if some character is not a mapped byte. */
static size_t gpt2_decode_strict(const int16_t *cp_to_byte, const char *s, size_t n, char *dst) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = uni_decode((const unsigned char *)s + i, n - i, &cp);
        /* (an invalid byte decodes as U+FFFD, which is not a mapped byte) */
        if (cp >= 0x200 || cp_to_byte[cp] < 0) return SIZE_MAX;
        dst[o++] = (char)cp_to_byte[cp];
        i += l;
    }
    return o;
}

/* ---- loading -------------------------------------------------------------- */

static const char *const eog_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<end_of_turn>",
    "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>",
    "<\xef\xbd\234end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", /* DeepSeek */
};

/* Texts that name the end of a turn, for models without eot_token_id. */
static const char *const eot_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
    "<EOT>", "_<EOT>", "[EOT]", "<\xef\xbd\234end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
    "<end_of_utterance>",
};

static int text_in(const char *s, size_t n, const char *const *list, size_t count) {
    for (size_t i = 0; i < count; i++)
        if (strlen(list[i]) == n && !memcmp(list[i], s, n)) return 1;
    return 0;
}

#define TOK_TEXT(t, i) ((t)->text + (t)->text_off[i])
#define TOK_LEN(t, i) ((t)->text_off[(i) + 1] - (t)->text_off[i])

static llms_status meta_err(llms_status st, const char *key) {
    if (st == LLMS_ERR_NO_MEMORY) return st;
    char why[256];  /* err_set must not format from its own buffer */
    snprintf(why, sizeof why, "%s", err_message());
    return err_set(LLMS_ERR_TOKENIZER, "tokenizer: metadata key %s is invalid (%s)", key, why);
}

/* Optional bool: *out unchanged if absent. */
static llms_status get_opt_bool(const gguf_file *f, const char *key, int *out) {
    llms_status st = gguf_get_bool(f, key, out);
    if (st == LLMS_ERR_NOT_FOUND) return LLMS_OK;
    return st ? meta_err(st, key) : LLMS_OK;
}

/* Optional token id: kept if absent, negative (-1 = none) or out of range
 * (llama.cpp likewise ignores an out-of-range id and keeps the default). */
static llms_status get_opt_id(const tokenizer *t, const gguf_file *f, const char *key, int32_t *id) {
    int64_t v;
    llms_status st = gguf_get_i64(f, key, &v);
    if (st == LLMS_ERR_NOT_FOUND) return LLMS_OK;
    if (st) return meta_err(st, key);
    if (v < 0) *id = -1;
    else if (v < t->n_vocab) *id = (int32_t)v;
    return LLMS_OK;
}

static llms_status load_vocab(tokenizer *t, const gguf_file *f) {
    const lalloc *a = &t->a;
    uint64_t n;
    const void *data;
    llms_status st = gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_STRING, &n, &data);
    if (st == LLMS_ERR_NOT_FOUND)
        return err_set(LLMS_ERR_TOKENIZER, "tokenizer: tokenizer.ggml.tokens is missing");
    if (st) return meta_err(st, "tokenizer.ggml.tokens");
    if (n == 0 || n > INT32_MAX)
        return err_set(LLMS_ERR_TOKENIZER, "tokenizer: %llu tokens is not a valid vocabulary size",
                       (unsigned long long)n);
    const gguf_string *tok = data;
    t->n_vocab = (int32_t)n;

    size_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (tok[i].len > UINT32_MAX - 1 || total + tok[i].len < total)
            return err_set(LLMS_ERR_TOKENIZER, "tokenizer: token %llu is too long",
                           (unsigned long long)i);
        total += tok[i].len;
    }
    t->text = xmalloc(a, total + 1);
    t->text_off = xcalloc(a, n + 1, sizeof *t->text_off);
    t->score = xcalloc(a, n, sizeof *t->score);
    t->attr = xcalloc(a, n, 1);
    if (!t->text || !t->text_off || !t->score || !t->attr) return ERR_OOM();
    size_t o = 0;
    for (uint64_t i = 0; i < n; i++) {
        t->text_off[i] = o;
        if (tok[i].len) memcpy(t->text + o, tok[i].s, tok[i].len);
        o += tok[i].len;
    }
    t->text_off[n] = o;

    /* Scores: float32 (or int32 in some converters); optional. */
    uint64_t ns;
    st = gguf_get_arr(f, "tokenizer.ggml.scores", GGUF_FLOAT32, &ns, &data);
    if (st == LLMS_ERR_GGUF_TYPE) {
        st = gguf_get_arr(f, "tokenizer.ggml.scores", GGUF_INT32, &ns, &data);
        if (!st) {
            if (ns < n) goto short_scores;
            for (uint64_t i = 0; i < n; i++) t->score[i] = (float)((const int32_t *)data)[i];
        }
    } else if (!st) {
        if (ns < n) goto short_scores;
        memcpy(t->score, data, n * sizeof(float));
    }
    if (st && st != LLMS_ERR_NOT_FOUND) return meta_err(st, "tokenizer.ggml.scores");
    /* NaN would make the merge order meaningless; -0.0 must tie with 0.0. */
    for (uint64_t i = 0; i < n; i++) {
        if (isnan(t->score[i])) t->score[i] = -INFINITY;
        if (t->score[i] == 0.0f) t->score[i] = 0.0f;
    }

    uint64_t nt;
    st = gguf_get_arr(f, "tokenizer.ggml.token_type", GGUF_INT32, &nt, &data);
    if (st && st != LLMS_ERR_NOT_FOUND) return meta_err(st, "tokenizer.ggml.token_type");
    if (!st && nt < n)
        return err_set(LLMS_ERR_TOKENIZER, "tokenizer: %llu token types for %llu tokens",
                       (unsigned long long)nt, (unsigned long long)n);
    for (uint64_t i = 0; i < n; i++) {
        int32_t ty = st ? TT_NORMAL : ((const int32_t *)data)[i];
        switch (ty) {
        case TT_NORMAL: t->attr[i] = TA_NORMAL; break;
        case TT_UNKNOWN: t->attr[i] = TA_UNKNOWN; break;
        case TT_CONTROL: t->attr[i] = TA_CONTROL; break;
        case TT_USER: t->attr[i] = TA_USER; break;
        case TT_BYTE: t->attr[i] = TA_BYTE; break;
        default: t->attr[i] = TA_UNUSED; break;  /* unused or undefined: never shown */
        }
    }
    return LLMS_OK;

short_scores:
    return err_set(LLMS_ERR_TOKENIZER, "tokenizer: %llu scores for %llu tokens",
                   (unsigned long long)ns, (unsigned long long)n);
}

/* Build the key arrays and map (see struct tokenizer). */
static llms_status build_keys(tokenizer *t, const int16_t *cp_to_byte) {
    const lalloc *a = &t->a;
    int32_t n = t->n_vocab;
    t->key_len = xcalloc(a, (size_t)n, sizeof *t->key_len);
    if (!t->key_len) return ERR_OOM();
    if (t->kind == TOK_SPM) {
        /* SPM keys are the texts themselves. */
        t->key = t->text;
        t->key_off = t->text_off;
        for (int32_t i = 0; i < n; i++) t->key_len[i] = (uint32_t)TOK_LEN(t, i);
    } else {
        t->key = xmalloc(a, t->text_off[n] + 1);
        t->key_off = xcalloc(a, (size_t)n + 1, sizeof *t->key_off);
        if (!t->key || !t->key_off) return ERR_OOM();
        size_t o = 0;
        for (int32_t i = 0; i < n; i++) {
            t->key_off[i] = o;
            size_t l = gpt2_decode_strict(cp_to_byte, TOK_TEXT(t, i), TOK_LEN(t, i), t->key + o);
            t->key_len[i] = l == SIZE_MAX ? UINT32_MAX : (uint32_t)l;
            if (l != SIZE_MAX) o += l;
        }
        t->key_off[n] = o;
    }
    llms_status st = strmap_init(a, &t->key_map, (size_t)n);
    if (st) return st;
    for (int32_t i = 0; i < n; i++) {
        /* Empty texts are never looked up; unmappable BPE texts have no key. */
        if (t->key_len[i] == 0 || t->key_len[i] == UINT32_MAX) continue;
        strmap_insert(&t->key_map, t->key, t->key_off, t->key_len, i);
        if (t->key_len[i] > t->max_key_len) t->max_key_len = t->key_len[i];
    }
    return LLMS_OK;
}

/* Parse tokenizer.ggml.merges ("left right" in mapped text; rank = index). */
static llms_status load_merges(tokenizer *t, const gguf_file *f, const int16_t *cp_to_byte) {
    const lalloc *a = &t->a;
    uint64_t nm;
    const void *data;
    llms_status st = gguf_get_arr(f, "tokenizer.ggml.merges", GGUF_STRING, &nm, &data);
    if (st == LLMS_ERR_NOT_FOUND)
        return err_set(LLMS_ERR_TOKENIZER, "tokenizer: tokenizer.ggml.merges is missing (gpt2 model)");
    if (st) return meta_err(st, "tokenizer.ggml.merges");
    if (nm > INT32_MAX / 2 - 256)
        return err_set(LLMS_ERR_TOKENIZER, "tokenizer: too many merges (%llu)", (unsigned long long)nm);
    const gguf_string *m = data;

    size_t total = 256, max_len = 0;
    for (uint64_t i = 0; i < nm; i++) {
        if (total + m[i].len < total)
            return err_set(LLMS_ERR_TOKENIZER, "tokenizer: merges too large");
        total += m[i].len;
        if (m[i].len > max_len) max_len = m[i].len;
    }
    size_t max_parts = 2 * (size_t)nm + 256;
    t->part = xmalloc(a, total);
    t->part_off = xcalloc(a, max_parts, sizeof *t->part_off);
    t->part_len = xcalloc(a, max_parts, sizeof *t->part_len);
    int32_t (*pair)[2] = xcalloc(a, nm ? nm : 1, sizeof *pair);
    char *cat = xmalloc(a, max_len + 1);
    if (!t->part || !t->part_off || !t->part_len || !pair || !cat) {
        xfree(a, pair);
        xfree(a, cat);
        return ERR_OOM();
    }
    if ((st = strmap_init(a, &t->part_map, max_parts)) ||
        (st = u64map_init(a, &t->merges, (size_t)nm))) {
        xfree(a, pair);
        xfree(a, cat);
        return st;
    }

    /* Intern the 256 single bytes first so every byte symbol has a part if
     * any merge uses it, then both sides of every merge. */
    size_t used = 0;
    int32_t np = 0;
    for (int b = 0; b < 256; b++) {
        t->part[used] = (char)b;
        t->part_off[np] = used;
        t->part_len[np] = 1;
        used++;
        t->byte_part[b] = strmap_insert(&t->part_map, t->part, t->part_off, t->part_len, np++);
    }
    for (uint64_t i = 0; i < nm; i++) {
        pair[i][0] = pair[i][1] = -1;
        const char *s = m[i].s;
        size_t len = m[i].len, sp;
        /* The separator is the first space after the first byte. */
        for (sp = 1; sp < len && s[sp] != ' '; sp++) {}
        if (sp >= len) continue;
        const char *side[2] = { s, s + sp + 1 };
        size_t side_len[2] = { sp, len - sp - 1 };
        for (int k = 0; k < 2; k++) {
            size_t l = gpt2_decode_strict(cp_to_byte, side[k], side_len[k], t->part + used);
            if (l == SIZE_MAX || l == 0) { pair[i][0] = -1; break; }
            t->part_off[np] = used;
            t->part_len[np] = (uint32_t)l;
            int32_t id = strmap_insert(&t->part_map, t->part, t->part_off, t->part_len, np);
            if (id == np) { np++; used += l; }
            pair[i][k] = id;
        }
    }
    t->n_parts = np;

    /* Ranks: the first occurrence of a pair wins. Result part: the part
     * equal to the concatenation, if any (else the merged symbol can merge
     * no further). */
    for (uint64_t i = 0; i < nm; i++) {
        if (pair[i][0] < 0 || pair[i][1] < 0) continue;
        int32_t l = pair[i][0], r = pair[i][1];
        size_t ll = t->part_len[l], rl = t->part_len[r];
        memcpy(cat, t->part + t->part_off[l], ll);
        memcpy(cat + ll, t->part + t->part_off[r], rl);
        int32_t res = strmap_find(&t->part_map, t->part, t->part_off, t->part_len, cat, ll + rl,
                                  tok_hash(cat, ll + rl));
        u64map_put(&t->merges, ((uint64_t)(uint32_t)l << 32) | (uint32_t)r, (int32_t)i, res);
    }
    xfree(a, pair);
    xfree(a, cat);
    return LLMS_OK;
}

/* Pieces: the bytes each token stands for in output text. */
static llms_status build_pieces(tokenizer *t, const int16_t *cp_to_byte) {
    const lalloc *a = &t->a;
    int32_t n = t->n_vocab;
    /* No piece is longer than its text (U+2581 -> ' ', mapped char -> byte). */
    t->piece = xmalloc(a, t->text_off[n] + 1);
    t->piece_off = xcalloc(a, (size_t)n + 1, sizeof *t->piece_off);
    if (!t->piece || !t->piece_off) return ERR_OOM();
    size_t o = 0;
    for (int32_t i = 0; i < n; i++) {
        t->piece_off[i] = o;
        const char *s = TOK_TEXT(t, i);
        size_t len = TOK_LEN(t, i);
        uint8_t at = t->attr[i];
        char *dst = t->piece + o;
        if (at & TA_BYTE) {
            /* "<0xNN>" stands for the byte NN; anything else shows as text. */
            if (len == 6 && !memcmp(s, "<0x", 3) && s[5] == '>' && isxdigit((unsigned char)s[3]) &&
                isxdigit((unsigned char)s[4])) {
                char hex[3] = { s[3], s[4], 0 };
                dst[0] = (char)strtoul(hex, NULL, 16);
                o += 1;
            } else {
                memcpy(dst, s, len);
                o += len;
            }
        } else if (at & (TA_CONTROL | TA_UNKNOWN | TA_USER)) {
            memcpy(dst, s, len);  /* verbatim (control/unknown hidden unless asked) */
            o += len;
        } else if (at & TA_NORMAL) {
            size_t k = 0;
            for (size_t j = 0; j < len;) {
                if (t->kind == TOK_SPM) {
                    if (len - j >= 3 && !memcmp(s + j, "\xe2\x96\x81", 3)) {
                        dst[k++] = ' ';
                        j += 3;
                    } else {
                        dst[k++] = s[j++];
                    }
                } else {
                    uint32_t cp;
                    size_t l = uni_decode((const unsigned char *)s + j, len - j, &cp);
                    if (cp < 0x200 && cp_to_byte[cp] >= 0) {
                        dst[k++] = (char)cp_to_byte[cp];
                    } else {
                        memcpy(dst + k, s + j, l);  /* not a mapped byte: keep it */
                        k += l;
                    }
                    j += l;
                }
            }
            o += k;
        }
        /* TA_UNUSED: empty. */
    }
    t->piece_off[n] = o;
    return LLMS_OK;
}

/* Special-token trie over control, unknown and user-defined token texts. */
static llms_status build_trie(tokenizer *t) {
    const lalloc *a = &t->a;
    size_t max_nodes = 1;
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (t->attr[i] & (TA_CONTROL | TA_UNKNOWN | TA_USER)) max_nodes += TOK_LEN(t, i);
    if (max_nodes > INT32_MAX) return err_set(LLMS_ERR_TOKENIZER, "tokenizer: special tokens too large");
    t->trie_all = xmalloc(a, max_nodes * sizeof *t->trie_all);
    t->trie_user = xmalloc(a, max_nodes * sizeof *t->trie_user);
    if (!t->trie_all || !t->trie_user) return ERR_OOM();
    llms_status st = u64map_init(a, &t->trie_edges, max_nodes);
    if (st) return st;
    t->trie_all[0] = t->trie_user[0] = -1;
    int32_t nodes = 1;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        uint8_t at = t->attr[i];
        size_t len = TOK_LEN(t, i);
        if (!(at & (TA_CONTROL | TA_UNKNOWN | TA_USER)) || len == 0) continue;
        const unsigned char *s = (const unsigned char *)TOK_TEXT(t, i);
        int32_t node = 0;
        for (size_t j = 0; j < len; j++) {
            int32_t *v = u64map_put(&t->trie_edges, ((uint64_t)node << 8) | s[j], nodes, 0);
            if (v[0] == nodes) {
                t->trie_all[nodes] = t->trie_user[nodes] = -1;
                nodes++;
            }
            node = v[0];
        }
        if (t->trie_all[node] < 0) t->trie_all[node] = i;
        if ((at & TA_USER) && !(at & TA_CONTROL) && t->trie_user[node] < 0) t->trie_user[node] = i;
        t->trie_first[s[0]] |= 1;
        if ((at & TA_USER) && !(at & TA_CONTROL)) t->trie_first[s[0]] |= 2;
    }
    t->trie_nodes = nodes;
    return LLMS_OK;
}

static int32_t find_text(const tokenizer *t, const char *s) {
    size_t n = strlen(s);
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (TOK_LEN(t, i) == n && !memcmp(TOK_TEXT(t, i), s, n)) return i;
    return -1;
}

static llms_status load_specials(tokenizer *t, const gguf_file *f) {
    static const struct { const char *key; int which; } keys[] = {
        { "tokenizer.ggml.bos_token_id", LLMS_SPECIAL_BOS },
        { "tokenizer.ggml.eos_token_id", LLMS_SPECIAL_EOS },
        { "tokenizer.ggml.eot_token_id", LLMS_SPECIAL_EOT },
        { "tokenizer.ggml.padding_token_id", LLMS_SPECIAL_PAD },
        { "tokenizer.ggml.unknown_token_id", LLMS_SPECIAL_UNK },
        { "tokenizer.ggml.seperator_token_id", LLMS_SPECIAL_SEP },  /* sic: the GGUF spelling */
    };
    for (int i = 0; i < 7; i++) t->special[i] = -1;
    if (t->kind == TOK_SPM) {
        /* SentencePiece's fixed ids, used when the file does not say. */
        t->special[LLMS_SPECIAL_UNK] = 0;
        t->special[LLMS_SPECIAL_BOS] = t->n_vocab > 1 ? 1 : -1;
        t->special[LLMS_SPECIAL_EOS] = t->n_vocab > 2 ? 2 : -1;
    }
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        llms_status st = get_opt_id(t, f, keys[i].key, &t->special[keys[i].which]);
        if (st) return st;
    }
    int have_eot_key = gguf_find(f, "tokenizer.ggml.eot_token_id") != NULL;

    /* End-of-generation and end-of-turn tokens by text (lowest id first). */
    for (int32_t i = 0; i < t->n_vocab; i++) {
        const char *s = TOK_TEXT(t, i);
        size_t n = TOK_LEN(t, i);
        if (!have_eot_key && t->special[LLMS_SPECIAL_EOT] < 0 &&
            text_in(s, n, eot_texts, sizeof eot_texts / sizeof eot_texts[0])) {
            t->special[LLMS_SPECIAL_EOT] = i;
            t->attr[i] = (uint8_t)((t->attr[i] & ~(TA_NORMAL | TA_USER)) | TA_CONTROL);
        }
        if (text_in(s, n, eog_texts, sizeof eog_texts / sizeof eog_texts[0])) {
            t->attr[i] = (uint8_t)((t->attr[i] & ~(TA_NORMAL | TA_USER)) | TA_CONTROL | TA_EOG);
        }
    }
    if (t->special[LLMS_SPECIAL_EOS] >= 0) t->attr[t->special[LLMS_SPECIAL_EOS]] |= TA_EOG;
    if (t->special[LLMS_SPECIAL_EOT] >= 0) t->attr[t->special[LLMS_SPECIAL_EOT]] |= TA_EOG;

    /* Phi-3's added tokens strip the whitespace after them (HF rstrip),
     * recognisable only by the model name, as llama.cpp does. */
    const gguf_string *name;
    if (!gguf_get_str(f, "general.name", &name)) {
        char low[64];
        size_t n = name->len < sizeof low - 1 ? name->len : sizeof low - 1;
        for (size_t i = 0; i < n; i++) low[i] = (char)tolower((unsigned char)name->s[i]);
        low[n] = 0;
        if (strstr(low, "phi-3") || strstr(low, "phi3")) {
            for (int32_t i = 0; i < t->n_vocab; i++)
                if (t->attr[i] & (TA_CONTROL | TA_UNKNOWN | TA_USER)) t->attr[i] |= TA_RSTRIP;
            static const char *const keep[] = { "<unk>", "<s>", "<|endoftext|>" };
            for (size_t k = 0; k < 3; k++) {
                int32_t id = find_text(t, keep[k]);
                if (id >= 0) t->attr[id] &= (uint8_t)~TA_RSTRIP;
            }
            int32_t eos = find_text(t, "</s>");
            if (eos >= 0) t->attr[eos] |= TA_RSTRIP;
        }
    }
    return LLMS_OK;
}

static void build_byte_tokens(tokenizer *t) {
    for (int b = 0; b < 256; b++) {
        char s[8];
        int32_t id = -1;
        if (t->kind == TOK_SPM) {
            snprintf(s, sizeof s, "<0x%02X>", b);
            id = tok_key_lookup(t, s, 6);
        }
        if (id < 0) {
            s[0] = (char)b;
            id = tok_key_lookup(t, s, 1);
        }
        t->byte_tok[b] = id;
    }
}

void tok_free(tokenizer *t) {
    if (!t) return;
    const lalloc *a = &t->a;
    if (t->key != t->text) xfree(a, t->key);
    if (t->key_off != t->text_off) xfree(a, t->key_off);
    xfree(a, t->text);
    xfree(a, t->text_off);
    xfree(a, t->score);
    xfree(a, t->attr);
    xfree(a, t->piece);
    xfree(a, t->piece_off);
    xfree(a, t->key_len);
    strmap_free(a, &t->key_map);
    xfree(a, t->part);
    xfree(a, t->part_off);
    xfree(a, t->part_len);
    strmap_free(a, &t->part_map);
    u64map_free(a, &t->merges);
    u64map_free(a, &t->trie_edges);
    xfree(a, t->trie_all);
    xfree(a, t->trie_user);
    lalloc copy = t->a;
    xfree(&copy, t);
}

llms_status tok_load(const lalloc *a, const gguf_file *f, tokenizer **out) {
    if (!a || !f || !out) return err_set(LLMS_ERR_INVALID_ARGUMENT, "tok_load: NULL argument");
    *out = NULL;

    const gguf_string *model;
    llms_status st = gguf_get_str(f, "tokenizer.ggml.model", &model);
    if (st == LLMS_ERR_NOT_FOUND)
        return err_set(LLMS_ERR_TOKENIZER, "tokenizer: tokenizer.ggml.model is missing");
    if (st) return meta_err(st, "tokenizer.ggml.model");
    int kind = !strcmp(model->s, "llama") ? TOK_SPM : !strcmp(model->s, "gpt2") ? TOK_BPE : 0;
    if (!kind || strlen(model->s) != model->len)
        return err_set(LLMS_ERR_UNSUPPORTED, "tokenizer model '%.64s' is not supported "
                       "(supported: llama, gpt2)", model->s);

    /* The pre-tokenizer is checked before anything is allocated. */
    int pre = PRE_DEFAULT, llama3_defaults = 0;
    if (kind == TOK_BPE) {
        const gguf_string *ps;
        st = gguf_get_str(f, "tokenizer.ggml.pre", &ps);
        if (st && st != LLMS_ERR_NOT_FOUND) return meta_err(st, "tokenizer.ggml.pre");
        if (!st) {
            pre = strlen(ps->s) == ps->len ? tok_bpe_pre_from_name(ps->s, &llama3_defaults) : -1;
            if (pre < 0)
                return err_set(LLMS_ERR_UNSUPPORTED, "tokenizer pre-tokenizer '%.64s' is not supported",
                               ps->s);
        }
    }

    tokenizer *t = xcalloc(a, 1, sizeof *t);
    if (!t) return ERR_OOM();
    t->a = *a;
    t->kind = kind;
    t->pre = pre;

    uint16_t byte_to_cp[256];
    int16_t cp_to_byte[0x200];
    gpt2_maps(byte_to_cp, cp_to_byte);

    if ((st = load_vocab(t, f))) goto fail;
    if ((st = build_keys(t, cp_to_byte))) goto fail;
    if (kind == TOK_BPE) {
        if ((st = load_merges(t, f, cp_to_byte))) goto fail;
        t->ignore_merges = llama3_defaults;
    } else {
        for (int b = 0; b < 256; b++) t->byte_part[b] = -1;
    }
    build_byte_tokens(t);
    if ((st = load_specials(t, f))) goto fail;
    t->special[LLMS_SPECIAL_NL] = t->byte_tok['\n'];
    if ((st = build_pieces(t, cp_to_byte))) goto fail;
    if ((st = build_trie(t))) goto fail;

    /* BOS by default: SentencePiece models and the llama3 family do; other
     * byte-level BPE models do not. The file's keys override. */
    t->add_bos = kind == TOK_SPM || llama3_defaults;
    t->add_eos = 0;
    t->add_space_prefix = kind == TOK_SPM;
    if ((st = get_opt_bool(f, "tokenizer.ggml.add_bos_token", &t->add_bos))) goto fail;
    if ((st = get_opt_bool(f, "tokenizer.ggml.add_eos_token", &t->add_eos))) goto fail;
    if (kind == TOK_SPM &&
        (st = get_opt_bool(f, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix)))
        goto fail;

    *out = t;
    return LLMS_OK;
fail:
    tok_free(t);
    return st;
}

/* ---- queries --------------------------------------------------------------- */

int32_t tok_n_vocab(const tokenizer *t) { return t ? t->n_vocab : 0; }

int32_t tok_special(const tokenizer *t, int32_t which) {
    if (!t || which < 0 || which > LLMS_SPECIAL_NL) return -1;
    return t->special[which];
}

int tok_is_eog(const tokenizer *t, int32_t id) {
    return t && id >= 0 && id < t->n_vocab && (t->attr[id] & TA_EOG) != 0;
}

int tok_is_control(const tokenizer *t, int32_t id) {
    return t && id >= 0 && id < t->n_vocab && (t->attr[id] & TA_CONTROL) != 0;
}
int tok_add_bos_default(const tokenizer *t) { return t ? t->add_bos : 0; }
int tok_add_eos_default(const tokenizer *t) { return t ? t->add_eos : 0; }

const char *tok_piece(const tokenizer *t, int32_t id, int special, size_t *len) {
    if (!t || id < 0 || id >= t->n_vocab) {
        if (len) *len = 0;
        return NULL;
    }
    const char *p = t->piece + t->piece_off[id];
    size_t n = t->piece_off[id + 1] - t->piece_off[id];
    if (!special && (t->attr[id] & (TA_CONTROL | TA_UNKNOWN))) n = 0;
    if (len) *len = n;
    return p;
}

llms_status tok_decode(const tokenizer *t, const int32_t *ids, size_t n, uint32_t flags, char *buf,
                       size_t cap, size_t *len) {
    if (!t || (!ids && n) || (!buf && cap) || !len)
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "tok_decode: NULL argument");
    int special = (flags & LLMS_DETOKENIZE_SPECIAL) != 0;
    /* SPM text starts with the space the encoder prepended: drop it from
     * the first piece that shows anything, unless asked to keep it. */
    int strip = t->kind == TOK_SPM && t->add_space_prefix &&
                !(flags & LLMS_DETOKENIZE_KEEP_LEADING_SPACE);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t pl;
        const char *p = tok_piece(t, ids[i], special, &pl);
        if (!p) return err_set(LLMS_ERR_TOKEN_RANGE, "token %d at index %zu is outside the "
                               "vocabulary (%d)", ids[i], i, t->n_vocab);
        if (strip && pl) {
            if (p[0] == ' ') { p++; pl--; }
            strip = 0;
        }
        if (total < cap) memcpy(buf + total, p, pl < cap - total ? pl : cap - total);
        total += pl;
    }
    *len = total;
    if (total >= cap)
        return err_set(LLMS_ERR_BUFFER_TOO_SMALL, "detokenized text needs %zu bytes plus NUL", total);
    buf[total] = 0;
    return LLMS_OK;
}

/* ---- encoding --------------------------------------------------------------- */

/* The special token whose text starts at text[i] (longest wins), or -1.
 * `mask` selects the tokens allowed: 1 = any special, 2 = user-defined. The
 * walk is bounded by the longest special text. */
static int32_t match_special(const tokenizer *t, const char *text, size_t len, size_t i,
                             int mask, size_t *mlen) {
    int32_t best = -1, node = 0;
    for (size_t j = i; j < len; j++) {
        const int32_t *v = tok_u64map_get(&t->trie_edges, ((uint64_t)node << 8) | (unsigned char)text[j]);
        if (!v) break;
        node = v[0];
        int32_t id = mask == 1 ? t->trie_all[node] : t->trie_user[node];
        if (id >= 0) {
            best = id;
            *mlen = j + 1 - i;
        }
    }
    return best;
}

/* Tokenize text that holds no special token. */
static llms_status encode_raw(const tokenizer *t, tok_scratch *s, const char *text, size_t len,
                              int after_special, tok_vec *out) {
    if (t->kind == TOK_BPE) return tok_bpe_encode(t, s, text, len, out);
    /* SPM: the leading space, and every ' ' written as U+2581 (3 bytes). */
    int prefix = t->add_space_prefix && after_special;
    uint64_t need;
    if (!mul_ok(len, 3, &need) || !add_ok(need, 3, &need) || need > SIZE_MAX)
        return ERR_OOM();
    char *buf = tok_scratch_get(s, SCR_TEXT, (size_t)need, 1);
    if (!buf) return ERR_OOM();
    size_t o = 0;
    if (prefix) { memcpy(buf, "\xe2\x96\x81", 3); o = 3; }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') { memcpy(buf + o, "\xe2\x96\x81", 3); o += 3; }
        else buf[o++] = text[i];
    }
    return tok_spm_encode(t, s, buf, o, out);
}

llms_status tok_encode(const tokenizer *t, const char *text, size_t len, uint32_t flags,
                       tok_vec *out) {
    if (!t || !out || (!text && len))
        return err_set(LLMS_ERR_INVALID_ARGUMENT, "tok_encode: NULL argument");
    size_t n0 = out->n;
    llms_status st = LLMS_OK;
    int32_t bos = t->special[LLMS_SPECIAL_BOS], eos = t->special[LLMS_SPECIAL_EOS];
    int add_bos = (flags & LLMS_TOKENIZE_ADD_BOS) || ((flags & LLMS_TOKENIZE_MODEL_DEFAULTS) && t->add_bos);
    int add_eos = (flags & LLMS_TOKENIZE_MODEL_DEFAULTS) && t->add_eos;
    if (add_bos && bos >= 0 && (st = tok_vec_push(&t->a, out, bos))) return st;

    tok_scratch s = { &t->a, { 0 }, { 0 } };
    int mask = (flags & LLMS_TOKENIZE_PARSE_SPECIAL) ? 1 : 2;
    int after_special = 1;  /* SPM: the text start counts as following a special token */
    size_t seg = 0, i = 0;
    while (i < len && !st) {
        size_t mlen = 0;
        int32_t id = (t->trie_first[(unsigned char)text[i]] & mask)
                         ? match_special(t, text, len, i, mask, &mlen) : -1;
        if (id < 0) { i++; continue; }
        if (i > seg) st = encode_raw(t, &s, text + seg, i - seg, after_special, out);
        if (!st) st = tok_vec_push(&t->a, out, id);
        after_special = 1;
        i += mlen;
        if (t->attr[id] & TA_RSTRIP)
            while (i < len && isspace((unsigned char)text[i])) i++;
        seg = i;
    }
    if (!st && seg < len) st = encode_raw(t, &s, text + seg, len - seg, after_special, out);
    if (!st && add_eos && eos >= 0) st = tok_vec_push(&t->a, out, eos);
    tok_scratch_free(&s);
    if (st) out->n = n0;
    return st;
}

/* Shared by both BPE flavours. Output a final symbol: its token, else one byte token per byte, else the
 * unknown token once (a vocabulary without byte tokens). */
llms_status tok_emit_symbol(const tokenizer *t, const char *s, size_t n, tok_vec *out) {
    int32_t id = n <= t->max_key_len ? tok_key_lookup(t, s, n) : -1;
    if (id >= 0) return tok_vec_push(&t->a, out, id);
    size_t i;
    for (i = 0; i < n && t->byte_tok[(unsigned char)s[i]] >= 0; i++) {}
    if (i == n) {
        for (i = 0; i < n; i++) {
            llms_status st = tok_vec_push(&t->a, out, t->byte_tok[(unsigned char)s[i]]);
            if (st) return st;
        }
        return LLMS_OK;
    }
    int32_t unk = t->special[LLMS_SPECIAL_UNK];
    return unk >= 0 ? tok_vec_push(&t->a, out, unk) : LLMS_OK;
}
