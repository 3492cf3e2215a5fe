/*
 * SentencePiece-style BPE ("llama" vocabularies): start from one symbol per
 * UTF-8 character and repeatedly merge the adjacent pair whose concatenation
 * is the vocabulary token with the highest score (ties: leftmost first),
 * as SentencePiece's BPE model and llama.cpp do. Symbols that end up not
 * being tokens fall back to <0xNN> byte tokens.
 *
 * Symbols form a doubly linked list in an array and candidate pairs sit in a
 * binary heap, so n characters take O(n log n) time; entries made stale by
 * an earlier merge are recognised (their recorded size no longer matches)
 * and dropped when popped.
 */
#include <string.h>

#include "tok_internal.h"
#include "unicode.h"
#include "../core/error.h"

typedef struct spm_sym {
    size_t start;
    uint32_t len;   /* 0 once merged into its left neighbour */
    int32_t prev, next;
} spm_sym;

/* Heap order is ascending, so a higher score must give a smaller key. The
 * usual float-to-sortable-integer transform, then complemented. Scores were
 * cleaned of NaN and -0.0 at load, so this order equals float order. */
static uint32_t score_key(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ~u;
}

typedef struct spm_state {
    const tokenizer *t;
    const char *text;
    spm_sym *sym;
    tok_scratch *s;   /* the heap lives in s->buf[SCR_HEAP], reused across fragments */
    heap_entry *heap;
    size_t n_heap, cap_heap;
} spm_state;

static llms_status try_pair(spm_state *st, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return LLMS_OK;
    const tokenizer *t = st->t;
    size_t size = (size_t)st->sym[l].len + st->sym[r].len;
    if (size > t->max_key_len) return LLMS_OK;
    int32_t id = tok_key_lookup(t, st->text + st->sym[l].start, size);
    if (id < 0) return LLMS_OK;
    if (st->n_heap == st->cap_heap) {
        size_t cap = st->cap_heap * 2;
        heap_entry *h = tok_scratch_grow(st->s, SCR_HEAP, cap, sizeof *h);
        if (!h) return ERR_OOM();
        st->heap = h;
        st->cap_heap = cap;
    }
    heap_entry e = { ((uint64_t)score_key(t->score[id]) << 32) | (uint32_t)l, r, (uint32_t)size };
    tok_heap_push(st->heap, &st->n_heap, e);
    return LLMS_OK;
}


llms_status tok_spm_encode(const tokenizer *t, tok_scratch *s, const char *text, size_t len,
                           tok_vec *out) {
    if (len == 0) return LLMS_OK;
    if (len > INT32_MAX) return err_set(LLMS_ERR_INVALID_ARGUMENT, "text of %zu bytes is too long", len);

    spm_state st = { t, text, NULL, s, NULL, 0, 0 };
    st.sym = tok_scratch_get(s, SCR_SYMS, len, sizeof *st.sym);
    if (!st.sym) return ERR_OOM();

    /* One symbol per UTF-8 character. A byte that does not start a valid
     * sequence is a symbol on its own (llama.cpp takes as many bytes as the
     * lead byte announces, which can swallow part of a following U+2581 and
     * turn that space into three byte tokens); for valid UTF-8 the two agree. */
    int32_t n = 0;
    for (size_t off = 0; off < len; n++) {
        uint32_t cp;
        size_t cl = uni_decode((const unsigned char *)text + off, len - off, &cp);
        st.sym[n].start = off;
        st.sym[n].len = (uint32_t)cl;
        st.sym[n].prev = n - 1;
        off += cl;
        st.sym[n].next = off == len ? -1 : n + 1;
    }

    /* The heap holds every pair ever pushed until popped: n-1 at the start
     * plus at most two per merge. It starts at n and doubles on demand. */
    st.cap_heap = (size_t)n + 16;
    st.heap = tok_scratch_grow(s, SCR_HEAP, st.cap_heap, sizeof *st.heap);
    if (!st.heap) return ERR_OOM();
    st.cap_heap = s->cap[SCR_HEAP] / sizeof *st.heap;

    llms_status rc = LLMS_OK;
    for (int32_t i = 1; i < n && !rc; i++) rc = try_pair(&st, i - 1, i);

    while (!rc && st.n_heap) {
        heap_entry e = tok_heap_pop(st.heap, &st.n_heap);
        int32_t l = (int32_t)(uint32_t)e.prio_left, r = e.right;
        spm_sym *L = &st.sym[l], *R = &st.sym[r];
        if (L->len == 0 || R->len == 0 || L->next != r || (size_t)L->len + R->len != e.size)
            continue;
        L->len += R->len;
        R->len = 0;
        L->next = R->next;
        if (R->next >= 0) st.sym[R->next].prev = l;
        rc = try_pair(&st, L->prev, l);
        if (!rc) rc = try_pair(&st, l, L->next);
    }

    for (int32_t i = 0; !rc && i >= 0 && n > 0; i = st.sym[i].next)
        rc = tok_emit_symbol(t, text + st.sym[i].start, st.sym[i].len, out);
    return rc;
}
