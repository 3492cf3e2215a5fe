/*
 * Unicode support for the tokenizers: UTF-8 decoding that never fails (so
 * arbitrary bytes tokenize), and the code point classes the pre-tokenizer
 * regexes use. The data lives in unicode_tables.c, generated from the
 * Unicode Character Database by gen_unicode_tables.py.
 */
#ifndef LLMS_TOKENIZER_UNICODE_H
#define LLMS_TOKENIZER_UNICODE_H

#include <stddef.h>
#include <stdint.h>

enum {
    UNI_LETTER = 1,  /* general category L* */
    UNI_NUMBER = 2,  /* N* */
    UNI_PUNCT = 4,   /* P* */
    UNI_SPACE = 8    /* White_Space property */
};

/* Stands in for a byte that does not start a valid UTF-8 sequence. */
#define UNI_REPLACEMENT 0xFFFDu

extern const size_t uni_n_runs;
extern const uint32_t uni_run_start[];
extern const uint8_t uni_run_flags[];

extern const uint32_t uni_deepseek_letters[][2];
extern const size_t uni_deepseek_letters_n;
extern const uint32_t uni_deepseek_punct[][2];
extern const size_t uni_deepseek_punct_n;
extern const uint32_t uni_deepseek_cjk[][2];
extern const size_t uni_deepseek_cjk_n;

/* UNI_* flags of a code point (0 for anything else, including values above
 * U+10FFFF). */
uint8_t uni_flags(uint32_t cp);

/* 1 if cp lies in one of the sorted, disjoint [lo, hi] ranges. */
int uni_in_ranges(const uint32_t (*ranges)[2], size_t n, uint32_t cp);

/* Decode one code point at s[0..n) (n >= 1). A lead byte followed by the
 * right number of continuation bytes decodes structurally (as llama.cpp and
 * most tokenizers do: overlong forms and surrogates are not rejected); any
 * other byte decodes alone as U+FFFD. Returns the number of bytes used. */
size_t uni_decode(const unsigned char *s, size_t n, uint32_t *cp);

#endif
