/*
 * Tokenizers: SentencePiece-style BPE ("llama": scores, byte fallback
 * <0xNN>, leading-space rule) and byte-level BPE ("gpt2": merges, GPT-2
 * byte mapping) with the pre-tokenizer chosen by tokenizer.ggml.pre.
 * Built from GGUF metadata (tokenizer.ggml.*). Immutable after load, so
 * safe to use from many threads.
 */
#ifndef LLMS_TOKENIZER_H
#define LLMS_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "llmserve.h"
#include "../core/alloc.h"
#include "../gguf/gguf.h"

typedef struct tokenizer tokenizer;

/* Growable token buffer owned by the caller (free data with xfree). */
typedef struct tok_vec {
    int32_t *data;
    size_t n, cap;
} tok_vec;

/* Build from the file's tokenizer.ggml.* keys. LLMS_ERR_TOKENIZER (or
 * LLMS_ERR_UNSUPPORTED naming the tokenizer model / pre-tokenizer) on
 * missing or inconsistent data. The tokenizer copies what it needs; the
 * file may be closed afterwards. */
llms_status tok_load(const lalloc *a, const gguf_file *f, tokenizer **out);
void tok_free(tokenizer *t);

/* flags: LLMS_TOKENIZE_*. Appends to `out` (allocating through the
 * tokenizer's allocator). Linear time, no recursion proportional to input. */
llms_status tok_encode(const tokenizer *t, const char *text, size_t len, uint32_t flags,
                       tok_vec *out);

/* The bytes a token stands for (byte tokens give one byte; control tokens
 * give "" unless `special`). Returns a pointer to internal storage and sets
 * *len; NULL if the id is out of range. */
const char *tok_piece(const tokenizer *t, int32_t id, int special, size_t *len);

/* Concatenate pieces into buf (flags: LLMS_DETOKENIZE_*). Writes at most cap
 * bytes plus a NUL if room; *len = total bytes needed without the NUL.
 * Returns LLMS_ERR_BUFFER_TOO_SMALL if cap < needed + 1. */
llms_status tok_decode(const tokenizer *t, const int32_t *ids, size_t n, uint32_t flags,
                       char *buf, size_t cap, size_t *len);

int32_t tok_n_vocab(const tokenizer *t);
int32_t tok_special(const tokenizer *t, int32_t which);  /* LLMS_SPECIAL_*, -1 if none */
int tok_is_eog(const tokenizer *t, int32_t id);
int tok_is_control(const tokenizer *t, int32_t id);
int tok_add_bos_default(const tokenizer *t);  /* tokenizer.ggml.add_bos_token (or model default) */
int tok_add_eos_default(const tokenizer *t);

#endif
