/*
 * Byte-level BPE ("gpt2" vocabularies).
 *
 * 1. Pre-tokenizer: the text is cut into words by the regexes the model's
 *    tokenizer.json uses (named by tokenizer.ggml.pre). They are hand-written
 *    matchers over code points, applied in sequence like Hugging Face's
 *    Split pre-tokenizers: each rule cuts every current piece on its own, the
 *    matches and the gaps between them both becoming pieces. The rule lists
 *    follow the published regexes (mirrored in llama.cpp's llama-vocab.cpp):
 *
 *    gpt-2 (also mpt, olmo, ...): 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+|
 *                                  ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *    llama3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *             ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *    qwen2: the same with \p{N} (single digits)
 *    starcoder, refact: \p{N}, then gpt-2
 *    falcon: [\p{P}\$\+<=>\^~\|`]+, then gpt-2, then [0-9][0-9][0-9]
 *    deepseek-llm: [\r\n], \s?[cased letters]+, \s?[ASCII/CJK punct.]+, \s+$,
 *                  [CJK]+, \p{N}+
 *    deepseek-coder: [\r\n], \s?\p{L}+, \s?\p{P}+, [CJK]+, \p{N}
 *    default (no pre key): [\p{P}\$\+<=>\^~\|]+, gpt-2, \p{N}+, [0-9][0-9][0-9]
 *
 *    Every matcher decides at a position in O(1) (or consumes what it scans),
 *    so a piece of n code points is cut in O(n). Text that is not valid
 *    UTF-8 is classified byte by byte as U+FFFD but keeps its bytes, so
 *    tokenizing any byte string round-trips.
 *
 * 2. Each word is merged by rank (lowest first, ties leftmost) starting from
 *    single bytes, with a heap and a linked list of symbols: O(n log n) even
 *    for one 1 MiB word. Merges are looked up by part ids (see tok_internal.h).
 */
#include <string.h>

#include "tok_internal.h"
#include "unicode.h"
#include "../core/error.h"

/* ---- pre-tokenizer ---------------------------------------------------- */

enum rule_kind {
    R_GPT2,       /* the gpt-2 regex: covers every code point */
    R_LLAMA3,     /* the llama3/qwen2 regex (param: most digits per number) */
    R_SEARCH,     /* \s?C+, C+, C, or CCC searched left to right */
    R_TRAIL_WS    /* \s+$ */
};

enum char_class {
    C_NEWLINE, C_LETTER, C_NUMBER, C_PUNCT, C_PUNCT_DEFAULT, C_PUNCT_FALCON, C_DIGIT,
    C_DS_LETTER, C_DS_PUNCT, C_CJK
};

enum count { ONE, RUN, THREE };

typedef struct rule {
    uint8_t kind, cls, count, ws_prefix;
    uint8_t max_digits;  /* R_LLAMA3 */
} rule;

#define GPT2 { R_GPT2, 0, 0, 0, 0 }
#define SEARCH(cls, count, ws) { R_SEARCH, cls, count, ws, 0 }

static const rule rules_default[] = {
    SEARCH(C_PUNCT_DEFAULT, RUN, 0), GPT2, SEARCH(C_NUMBER, RUN, 0), SEARCH(C_DIGIT, THREE, 0)
};
static const rule rules_gpt2[] = { GPT2 };
static const rule rules_llama3[] = { { R_LLAMA3, 0, 0, 0, 3 } };
static const rule rules_qwen2[] = { { R_LLAMA3, 0, 0, 0, 1 } };
static const rule rules_deepseek_llm[] = {
    SEARCH(C_NEWLINE, ONE, 0), SEARCH(C_DS_LETTER, RUN, 1), SEARCH(C_DS_PUNCT, RUN, 1),
    { R_TRAIL_WS, 0, 0, 0, 0 }, SEARCH(C_CJK, RUN, 0), SEARCH(C_NUMBER, RUN, 0)
};
static const rule rules_deepseek_coder[] = {
    SEARCH(C_NEWLINE, ONE, 0), SEARCH(C_LETTER, RUN, 1), SEARCH(C_PUNCT, RUN, 1),
    SEARCH(C_CJK, RUN, 0), SEARCH(C_NUMBER, ONE, 0)
};
static const rule rules_falcon[] = {
    SEARCH(C_PUNCT_FALCON, RUN, 0), GPT2, SEARCH(C_DIGIT, THREE, 0)
};
static const rule rules_starcoder[] = { SEARCH(C_NUMBER, ONE, 0), GPT2 };

#define RULES(r) { r, sizeof r / sizeof r[0] }
static const struct { const rule *r; size_t n; } pre_rules[] = {
    [PRE_DEFAULT] = RULES(rules_default),
    [PRE_GPT2] = RULES(rules_gpt2),
    [PRE_LLAMA3] = RULES(rules_llama3),
    [PRE_QWEN2] = RULES(rules_qwen2),
    [PRE_DEEPSEEK_LLM] = RULES(rules_deepseek_llm),
    [PRE_DEEPSEEK_CODER] = RULES(rules_deepseek_coder),
    [PRE_FALCON] = RULES(rules_falcon),
    [PRE_STARCODER] = RULES(rules_starcoder),
};

int tok_bpe_pre_from_name(const char *name, int *llama3_defaults) {
    static const struct { const char *name; int pre; int llama3; } names[] = {
        { "default", PRE_DEFAULT, 0 },
        { "gpt-2", PRE_GPT2, 0 }, { "phi-2", PRE_GPT2, 0 }, { "mpt", PRE_GPT2, 0 },
        { "olmo", PRE_GPT2, 0 }, { "jais", PRE_GPT2, 0 }, { "jina-es", PRE_GPT2, 0 },
        { "jina-de", PRE_GPT2, 0 }, { "jina-v2-es", PRE_GPT2, 0 }, { "jina-v2-de", PRE_GPT2, 0 },
        { "roberta-bpe", PRE_GPT2, 0 },
        { "llama3", PRE_LLAMA3, 1 }, { "llama-v3", PRE_LLAMA3, 1 }, { "llama-bpe", PRE_LLAMA3, 1 },
        { "falcon3", PRE_LLAMA3, 1 }, { "pixtral", PRE_LLAMA3, 1 },
        { "dbrx", PRE_LLAMA3, 0 }, { "smaug-bpe", PRE_LLAMA3, 0 },
        { "qwen2", PRE_QWEN2, 0 }, { "deepseek-r1-qwen", PRE_QWEN2, 0 }, { "megrez", PRE_QWEN2, 0 },
        { "stablelm2", PRE_QWEN2, 0 },
        { "deepseek-llm", PRE_DEEPSEEK_LLM, 0 },
        { "deepseek-coder", PRE_DEEPSEEK_CODER, 0 },
        { "falcon", PRE_FALCON, 0 },
        { "starcoder", PRE_STARCODER, 0 }, { "refact", PRE_STARCODER, 0 },
        { "command-r", PRE_STARCODER, 0 }, { "smollm", PRE_STARCODER, 0 },
        { "codeshell", PRE_STARCODER, 0 }, { "exaone", PRE_STARCODER, 0 },
        { "minerva-7b", PRE_STARCODER, 0 },
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(name, names[i].name)) {
            *llama3_defaults = names[i].llama3;
            return names[i].pre;
        }
    return -1;
}

typedef struct piece_ctx {
    const uint32_t *cp;
    size_t end;  /* one past the current piece: lookahead never crosses it */
} piece_ctx;

static inline int is_ws(uint32_t c) { return (uni_flags(c) & UNI_SPACE) != 0; }
static inline int is_nl(uint32_t c) { return c == '\r' || c == '\n'; }
/* [^\s\p{L}\p{N}] */
static inline int is_other(uint8_t f) { return !(f & (UNI_SPACE | UNI_LETTER | UNI_NUMBER)); }

static int in_class(int cls, uint32_t c) {
    switch (cls) {
    case C_NEWLINE: return is_nl(c);
    case C_LETTER: return (uni_flags(c) & UNI_LETTER) != 0;
    case C_NUMBER: return (uni_flags(c) & UNI_NUMBER) != 0;
    case C_PUNCT: return (uni_flags(c) & UNI_PUNCT) != 0;
    case C_PUNCT_DEFAULT:  /* \p{P} plus the ASCII symbols $ + < = > ^ ~ | */
        return (uni_flags(c) & UNI_PUNCT) || (c < 128 && strchr("$+<=>^~|", (int)c) && c);
    case C_PUNCT_FALCON:   /* the same plus ` */
        return (uni_flags(c) & UNI_PUNCT) || (c < 128 && strchr("$+<=>^~|`", (int)c) && c);
    case C_DIGIT: return c >= '0' && c <= '9';
    case C_DS_LETTER: return uni_in_ranges(uni_deepseek_letters, uni_deepseek_letters_n, c);
    case C_DS_PUNCT: return uni_in_ranges(uni_deepseek_punct, uni_deepseek_punct_n, c);
    case C_CJK: return uni_in_ranges(uni_deepseek_cjk, uni_deepseek_cjk_n, c);
    }
    return 0;
}

/* Flags of code point p, or 0 past the piece (so nothing matches there). */
static inline uint8_t flags_at(const piece_ctx *c, size_t p) {
    return p < c->end ? uni_flags(c->cp[p]) : 0;
}

/* Contractions: 's 't 're 've 'm 'll 'd (ASCII case folded if `fold`). */
static size_t match_contraction(const piece_ctx *c, size_t p, int fold) {
    if (c->cp[p] != '\'' || p + 1 >= c->end) return 0;
    uint32_t a = c->cp[p + 1];
    if (fold && a >= 'A' && a <= 'Z') a += 32;
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (p + 2 >= c->end) return 0;
    uint32_t b = c->cp[p + 2];
    if (fold && b >= 'A' && b <= 'Z') b += 32;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

/* \s+(?!\S)|\s+ at a whitespace run of k code points: all of it at the end
 * of the piece, else all but the last (which then leads the next word), but
 * at least one. */
static size_t match_ws_run(const piece_ctx *c, size_t p) {
    size_t k = 0;
    while (p + k < c->end && is_ws(c->cp[p + k])) k++;
    if (k > 1 && p + k < c->end) return k - 1;
    return k ? k : 1;
}

/* The gpt-2 regex at p; always matches at least one code point. */
static size_t match_gpt2(const piece_ctx *c, size_t p) {
    size_t m = match_contraction(c, p, 0);
    if (m) return m;
    uint32_t ch = c->cp[p];
    /* ' ?X+': an optional U+0020 then a run of one class. */
    size_t q = ch == ' ' ? p + 1 : p;
    uint8_t f = flags_at(c, q);
    if (q < c->end) {
        if (f & UNI_LETTER) {
            while (flags_at(c, q) & UNI_LETTER) q++;
            return q - p;
        }
        if (f & UNI_NUMBER) {
            while (flags_at(c, q) & UNI_NUMBER) q++;
            return q - p;
        }
        if (is_other(f)) {
            while (q < c->end && is_other(uni_flags(c->cp[q]))) q++;
            return q - p;
        }
    }
    return match_ws_run(c, p);
}

/* The llama3 regex (max_digits 3) or qwen2's (1) at p; always matches. */
static size_t match_llama3(const piece_ctx *c, size_t p, size_t max_digits) {
    size_t m = match_contraction(c, p, 1);
    if (m) return m;
    uint32_t ch = c->cp[p];
    uint8_t f = uni_flags(ch);
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (!is_nl(ch) && !(f & UNI_NUMBER) && ((f & UNI_LETTER) || (flags_at(c, p + 1) & UNI_LETTER))) {
        size_t q = p + 1;
        while (flags_at(c, q) & UNI_LETTER) q++;
        return q - p;
    }
    /* \p{N}{1,max} */
    if (f & UNI_NUMBER) {
        size_t q = p + 1;
        while (q - p < max_digits && (flags_at(c, q) & UNI_NUMBER)) q++;
        return q - p;
    }
    /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    size_t q = ch == ' ' ? p + 1 : p;
    if (q < c->end && is_other(uni_flags(c->cp[q]))) {
        while (q < c->end && is_other(uni_flags(c->cp[q]))) q++;
        while (q < c->end && is_nl(c->cp[q])) q++;
        return q - p;
    }
    /* \s*[\r\n]+ : through the last \r or \n of the whitespace run */
    size_t k = 0, last_nl = 0;
    while (p + k < c->end && is_ws(c->cp[p + k])) {
        if (is_nl(c->cp[p + k])) last_nl = k + 1;
        k++;
    }
    if (last_nl) return last_nl;
    if (k > 1 && p + k < c->end) return k - 1;  /* \s+(?!\S) */
    return k ? k : 1;                           /* \s+, or no match: one code point */
}

/* A search rule at p: length of the match starting exactly at p, or 0. */
static size_t match_search(const piece_ctx *c, size_t p, const rule *r) {
    size_t q = p;
    if (r->ws_prefix && is_ws(c->cp[p]) && p + 1 < c->end && in_class(r->cls, c->cp[p + 1]))
        q = p + 1;  /* \s? is greedy: take the space when the class follows */
    if (!in_class(r->cls, c->cp[q])) return 0;
    switch (r->count) {
    case ONE: return q + 1 - p;
    case THREE:
        return q + 2 < c->end && in_class(r->cls, c->cp[q + 1]) && in_class(r->cls, c->cp[q + 2])
                   ? 3 : 0;
    default:
        q++;
        while (q < c->end && in_class(r->cls, c->cp[q])) q++;
        return q - p;
    }
}

/* Apply one rule to every piece in `in` (sorted piece ends, last = n) and
 * write the refined ends to `out`; returns their count. */
static size_t apply_rule(const rule *r, const uint32_t *cp, const size_t *in, size_t n_in,
                         size_t *out) {
    size_t n_out = 0, start = 0;
    for (size_t i = 0; i < n_in; start = in[i], i++) {
        piece_ctx c = { cp, in[i] };
        size_t p = start;
        switch (r->kind) {
        case R_GPT2:
        case R_LLAMA3:
            while (p < c.end) {
                p += r->kind == R_GPT2 ? match_gpt2(&c, p) : match_llama3(&c, p, r->max_digits);
                out[n_out++] = p;
            }
            break;
        case R_TRAIL_WS: {
            size_t q = c.end;
            while (q > start && is_ws(cp[q - 1])) q--;
            if (q > start && q < c.end) out[n_out++] = q;
            out[n_out++] = c.end;
            break;
        }
        default: {
            size_t gap = start;
            while (p < c.end) {
                size_t m = match_search(&c, p, r);
                if (!m) { p++; continue; }
                if (p > gap) out[n_out++] = p;
                p += m;
                out[n_out++] = p;
                gap = p;
            }
            if (gap < c.end) out[n_out++] = c.end;
            break;
        }
        }
    }
    return n_out;
}

/* ---- merging ---------------------------------------------------------- */

typedef struct bpe_sym {
    size_t start;
    uint32_t len;   /* 0 once merged into its left neighbour */
    int32_t part;   /* part id of the symbol's bytes, -1 if no merge involves them */
    int32_t prev, next;
} bpe_sym;

typedef struct bpe_state {
    const tokenizer *t;
    bpe_sym *sym;
    tok_scratch *s;   /* the heap lives in s->buf[SCR_HEAP], reused across words */
    heap_entry *heap;
    size_t n_heap, cap_heap;
} bpe_state;

/* (rank, result part) of merging parts l and r, or NULL. */
static const int32_t *merge_of(const tokenizer *t, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return NULL;
    return tok_u64map_get(&t->merges, ((uint64_t)(uint32_t)l << 32) | (uint32_t)r);
}

static llms_status try_pair(bpe_state *st, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return LLMS_OK;
    const int32_t *m = merge_of(st->t, st->sym[l].part, st->sym[r].part);
    if (!m) return LLMS_OK;
    if (st->n_heap == st->cap_heap) {
        size_t cap = st->cap_heap * 2;
        heap_entry *h = tok_scratch_grow(st->s, SCR_HEAP, cap, sizeof *h);
        if (!h) return ERR_OOM();
        st->heap = h;
        st->cap_heap = cap;
    }
    heap_entry e = { ((uint64_t)(uint32_t)m[0] << 32) | (uint32_t)l, r,
                     st->sym[l].len + st->sym[r].len };
    tok_heap_push(st->heap, &st->n_heap, e);
    return LLMS_OK;
}


static llms_status bpe_word(const tokenizer *t, tok_scratch *s, const char *w, size_t n,
                            tok_vec *out) {
    if (t->ignore_merges || n == 1) {
        int32_t id = n <= t->max_key_len ? tok_key_lookup(t, w, n) : -1;
        if (id >= 0) return tok_vec_push(&t->a, out, id);
    }
    if (n == 1) return tok_emit_symbol(t, w, 1, out);
    if (n > INT32_MAX) return err_set(LLMS_ERR_INVALID_ARGUMENT, "word of %zu bytes is too long", n);

    bpe_state st = { t, NULL, s, NULL, 0, 0 };
    st.sym = tok_scratch_get(s, SCR_SYMS, n, sizeof *st.sym);
    if (!st.sym) return ERR_OOM();
    for (size_t i = 0; i < n; i++) {
        st.sym[i].start = i;
        st.sym[i].len = 1;
        st.sym[i].part = t->byte_part[(unsigned char)w[i]];
        st.sym[i].prev = (int32_t)i - 1;
        st.sym[i].next = i + 1 == n ? -1 : (int32_t)i + 1;
    }
    /* The heap holds every pair pushed and not yet popped: n-1 at the start
     * plus at most two per merge; it starts at n and doubles on demand. */
    st.cap_heap = n + 16;
    st.heap = tok_scratch_grow(s, SCR_HEAP, st.cap_heap, sizeof *st.heap);
    if (!st.heap) return ERR_OOM();
    st.cap_heap = s->cap[SCR_HEAP] / sizeof *st.heap;

    llms_status rc = LLMS_OK;
    for (size_t i = 1; i < n && !rc; i++) rc = try_pair(&st, (int32_t)i - 1, (int32_t)i);
    while (!rc && st.n_heap) {
        heap_entry e = tok_heap_pop(st.heap, &st.n_heap);
        int32_t l = (int32_t)(uint32_t)e.prio_left, r = e.right;
        bpe_sym *L = &st.sym[l], *R = &st.sym[r];
        if (L->len == 0 || R->len == 0 || L->next != r || L->len + R->len != e.size) continue;
        const int32_t *m = merge_of(t, L->part, R->part);
        L->len += R->len;
        L->part = m ? m[1] : -1;
        R->len = 0;
        L->next = R->next;
        if (R->next >= 0) st.sym[R->next].prev = l;
        rc = try_pair(&st, L->prev, l);
        if (!rc) rc = try_pair(&st, l, L->next);
    }
    for (int32_t i = 0; !rc && i >= 0; i = st.sym[i].next)
        rc = tok_emit_symbol(t, w + st.sym[i].start, st.sym[i].len, out);
    return rc;
}

llms_status tok_bpe_split(int pre, tok_scratch *s, const char *text, size_t len,
                          const size_t **ends, size_t *n_words) {
    *ends = NULL;
    *n_words = 0;
    if (len == 0) return LLMS_OK;
    uint32_t *cp = tok_scratch_get(s, SCR_CPS, len, sizeof *cp);
    size_t *off = tok_scratch_get(s, SCR_OFFS, len + 1, sizeof *off);
    size_t *ba = tok_scratch_get(s, SCR_BOUNDS_A, len, sizeof *ba);
    size_t *bb = tok_scratch_get(s, SCR_BOUNDS_B, len, sizeof *bb);
    if (!cp || !off || !ba || !bb) return ERR_OOM();

    size_t n = 0;
    for (size_t o = 0; o < len; n++) {
        off[n] = o;
        o += uni_decode((const unsigned char *)text + o, len - o, &cp[n]);
    }
    off[n] = len;

    /* Piece ends, refined rule by rule (ping-pong between two buffers). */
    size_t n_b = 1;
    ba[0] = n;
    const rule *rules = pre_rules[pre].r;
    for (size_t i = 0; i < pre_rules[pre].n; i++) {
        n_b = apply_rule(&rules[i], cp, ba, n_b, bb);
        size_t *tmp = ba; ba = bb; bb = tmp;
    }
    /* Code point ends to byte ends, in place. */
    for (size_t i = 0; i < n_b; i++) ba[i] = off[ba[i]];
    *ends = ba;
    *n_words = n_b;
    return LLMS_OK;
}

llms_status tok_bpe_encode(const tokenizer *t, tok_scratch *s, const char *text, size_t len,
                           tok_vec *out) {
    const size_t *ends;
    size_t n_words;
    llms_status st = tok_bpe_split(t->pre, s, text, len, &ends, &n_words);
    for (size_t i = 0, start = 0; !st && i < n_words; start = ends[i], i++)
        st = bpe_word(t, s, text + start, ends[i] - start, out);
    return st;
}
