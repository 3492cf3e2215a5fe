/*
 * Internals shared by the tokenizer's files: tokenizer.c (loading, special
 * tokens, pieces, decoding, the encode driver), tok_spm.c (SentencePiece
 * BPE) and tok_bpe.c (pre-tokenizers and byte-level BPE).
 */
#ifndef LLMS_TOKENIZER_INTERNAL_H
#define LLMS_TOKENIZER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

enum tok_kind { TOK_SPM = 1, TOK_BPE = 2 };

/* Token attributes (one byte per token). TYPE_* come from
 * tokenizer.ggml.token_type; the rest are derived at load. */
enum {
    TA_NORMAL = 1u << 0,
    TA_UNKNOWN = 1u << 1,
    TA_CONTROL = 1u << 2,
    TA_USER = 1u << 3,    /* user-defined: matched in raw text before BPE, shown verbatim */
    TA_UNUSED = 1u << 4,
    TA_BYTE = 1u << 5,
    TA_EOG = 1u << 6,
    TA_RSTRIP = 1u << 7   /* when matched as special text, eat the whitespace after it */
};

/* Pre-tokenizer families (tokenizer.ggml.pre), each a fixed list of rules. */
enum tok_pre {
    PRE_DEFAULT = 0, PRE_GPT2, PRE_LLAMA3, PRE_QWEN2, PRE_DEEPSEEK_LLM, PRE_DEEPSEEK_CODER,
    PRE_FALCON, PRE_STARCODER
};

/* Open-addressing set of byte strings, each identified by an index k whose
 * bytes are base + off[k], len[k] (arrays owned by the caller, passed on
 * every call so they may be reallocated between calls). */
typedef struct strmap {
    int32_t *slot;    /* k, or -1 if empty */
    uint32_t *hash;   /* full hash of the key in the slot, to skip most compares */
    size_t mask;      /* capacity - 1 (capacity a power of two) */
    size_t count;
} strmap;

/* Open-addressing map from a 64-bit key to two int32 values. */
typedef struct u64map {
    uint64_t *key;    /* UINT64_MAX = empty */
    int32_t (*val)[2];
    size_t mask;
    size_t count;
} u64map;

struct tokenizer {
    lalloc a;           /* a copy: the caller's lalloc may not outlive us */
    int kind;           /* enum tok_kind */
    int pre;            /* enum tok_pre (BPE only) */
    int32_t n_vocab;

    /* Token text as stored in the file. */
    char *text;
    size_t *text_off;   /* n_vocab + 1 offsets into text */
    float *score;
    uint8_t *attr;

    /* What each token stands for in output text (TA_CONTROL/TA_UNKNOWN
     * pieces are shown only when asked for special text). */
    char *piece;
    size_t *piece_off;  /* n_vocab + 1 */

    /* Lookup of the text a merge produces: SPM keys are the token texts
     * (with U+2581 for spaces); BPE keys are the raw bytes a token stands
     * for (GPT-2 byte mapping undone), absent for tokens that cannot be
     * mapped back. */
    char *key;
    size_t *key_off;
    uint32_t *key_len;  /* UINT32_MAX = no key */
    strmap key_map;
    size_t max_key_len;

    int32_t byte_tok[256];  /* token for a lone byte (SPM <0xNN>, BPE its mapped char), -1 if none */

    /* BPE merges. Every string that is the left or right side of a merge is
     * a "part" with an id; a pair of part ids maps to (rank, part id of the
     * concatenation or -1). Symbols carry part ids, so a lookup is O(1)
     * whatever the length of the symbols. */
    char *part;
    size_t *part_off;
    uint32_t *part_len;
    int32_t n_parts;
    strmap part_map;
    u64map merges;
    int32_t byte_part[256];
    int ignore_merges;  /* llama3: a word that is a whole token skips merging */

    /* Special-token matcher: a byte trie. Node n's child for byte b is
     * trie_edges[(n << 8) | b]; a node ending a token text holds the first
     * such token of any type (tok_all) and of user-defined type (tok_user). */
    u64map trie_edges;
    int32_t *trie_all;
    int32_t *trie_user;
    int32_t trie_nodes;
    uint8_t trie_first[256];  /* bit 0: some special text starts with this byte; bit 1: a user one */

    int32_t special[7];       /* LLMS_SPECIAL_* ids or -1 */
    int add_bos, add_eos;
    int add_space_prefix;     /* SPM: prepend a space to text (after the start or a special token) */
};

/* Growable scratch buffers of one encode call (tokenizers are shared between
 * threads, so nothing mutable lives in struct tokenizer). */
typedef struct tok_scratch {
    const lalloc *a;
    void *buf[8];
    size_t cap[8];
} tok_scratch;

enum { SCR_CPS, SCR_OFFS, SCR_BOUNDS_A, SCR_BOUNDS_B, SCR_SYMS, SCR_HEAP, SCR_TEXT, SCR_N };

/* Buffer `which` with room for n elements of `size` bytes (grown as needed;
 * contents are not preserved). NULL on overflow or allocation failure. */
void *tok_scratch_get(tok_scratch *s, int which, size_t n, size_t size);
/* The same, keeping the contents (for buffers that grow while in use). */
void *tok_scratch_grow(tok_scratch *s, int which, size_t n, size_t size);
void tok_scratch_free(tok_scratch *s);

/* Append one token to `out`. */
llms_status tok_vec_push(const lalloc *a, tok_vec *out, int32_t id);

/* Appends a merged symbol's token: the piece itself, else one byte token per
 * byte, else the unknown token once. */
llms_status tok_emit_symbol(const tokenizer *t, const char *s, size_t n, tok_vec *out);

uint32_t tok_hash(const char *s, size_t n);
/* The two values stored under k, or NULL. */
int32_t *tok_u64map_get(const u64map *m, uint64_t k);
/* Token whose key is exactly s[0..n), or -1. */
int32_t tok_key_lookup(const tokenizer *t, const char *s, size_t n);

/* A merge priority queue: entries ordered by (prio, left) ascending. */
typedef struct heap_entry {
    uint64_t prio_left;  /* prio << 32 | left symbol index */
    int32_t right;
    uint32_t size;       /* bytes of left + right when pushed: a stale entry no longer matches */
} heap_entry;

void tok_heap_push(heap_entry *h, size_t *n, heap_entry e);
heap_entry tok_heap_pop(heap_entry *h, size_t *n);

/* SentencePiece BPE over already-escaped text (spaces are U+2581). */
llms_status tok_spm_encode(const tokenizer *t, tok_scratch *s, const char *text, size_t len,
                           tok_vec *out);

/* Pre-tokenize text with the rules of `pre` (enum tok_pre): *ends receives
 * the byte offset just past each word (in scratch memory, valid until the
 * next use of `s`). */
llms_status tok_bpe_split(int pre, tok_scratch *s, const char *text, size_t len,
                          const size_t **ends, size_t *n_words);

/* Byte-level BPE of raw text: pre-tokenize, then merge each word. */
llms_status tok_bpe_encode(const tokenizer *t, tok_scratch *s, const char *text, size_t len,
                           tok_vec *out);

/* Map a tokenizer.ggml.pre name to enum tok_pre; -1 if unknown. Sets
 * *llama3_defaults for the llama3 family (ignore merges, add BOS). */
int tok_bpe_pre_from_name(const char *name, int *llama3_defaults);

#endif
