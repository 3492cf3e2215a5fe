#include "unicode.h"

/* ASCII is by far the most common input, so it skips the binary search. */
static const uint8_t ascii_flags[128] = {
    /* \t \n \v \f \r are White_Space; the other C0 controls have no flag. */
    0, 0, 0, 0, 0, 0, 0, 0, 0, UNI_SPACE, UNI_SPACE, UNI_SPACE, UNI_SPACE, UNI_SPACE, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    /* space ! " # $ % & ' ( ) * + , - . / : $ and + are symbols (Sc, Sm), not P. */
    UNI_SPACE, UNI_PUNCT, UNI_PUNCT, UNI_PUNCT, 0, UNI_PUNCT, UNI_PUNCT, UNI_PUNCT,
    UNI_PUNCT, UNI_PUNCT, UNI_PUNCT, 0, UNI_PUNCT, UNI_PUNCT, UNI_PUNCT, UNI_PUNCT,
    /* 0-9 : ; < = > ? */
    UNI_NUMBER, UNI_NUMBER, UNI_NUMBER, UNI_NUMBER, UNI_NUMBER, UNI_NUMBER, UNI_NUMBER,
    UNI_NUMBER, UNI_NUMBER, UNI_NUMBER, UNI_PUNCT, UNI_PUNCT, 0, 0, 0, UNI_PUNCT,
    /* @ A-Z [ \ ] ^ _ */
    UNI_PUNCT, UNI_LETTER, UNI_LETTER, UNI_LETTER, UNI_LETTER, UNI_LETTER, UNI_LETTER,
    UNI_LETTER, UNI_LETTER, UNI_LETTER, UNI_LETTER, UNI_LETTER, UNI_LETTER, UNI_LETTER,
    UNI_LETTER, UNI_LETTER, UNI_LETTER, UNI_LETTER, UNI_LETTER, UNI_LETTER, UNI_LETTER,
    UNI_LETTER, UNI_LETTER, UNI_LETTER, UNI_LETTER, UNI_LETTER, UNI_LETTER, UNI_PUNCT,
    UNI_PUNCT, UNI_PUNCT, 0, UNI_PUNCT,
    /* ` a-z { | } ~ DEL */
    0, UNI_LETTER, UNI_LETTER, UNI_LETTER, UNI_LETTER, UNI_LETTER, UNI_LETTER,
    UNI_LETTER, UNI_LETTER, UNI_LETTER, UNI_LETTER, UNI_LETTER, UNI_LETTER, UNI_LETTER,
    UNI_LETTER, UNI_LETTER, UNI_LETTER, UNI_LETTER, UNI_LETTER, UNI_LETTER, UNI_LETTER,
    UNI_LETTER, UNI_LETTER, UNI_LETTER, UNI_LETTER, UNI_LETTER, UNI_LETTER, UNI_PUNCT,
    0, UNI_PUNCT, 0, 0,
};

uint8_t uni_flags(uint32_t cp) {
    if (cp < 128) return ascii_flags[cp];
    if (cp > 0x10FFFF) return 0;
    /* Last run whose start is <= cp. Run 0 starts at 0, so lo stays valid. */
    size_t lo = 0, hi = uni_n_runs;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (uni_run_start[mid] <= cp) lo = mid;
        else hi = mid;
    }
    return uni_run_flags[lo];
}

int uni_in_ranges(const uint32_t (*ranges)[2], size_t n, uint32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < ranges[mid][0]) hi = mid;
        else if (cp > ranges[mid][1]) lo = mid + 1;
        else return 1;
    }
    return 0;
}

size_t uni_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    size_t len;
    uint32_t v;
    if ((c & 0xE0) == 0xC0) { len = 2; v = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { len = 3; v = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { len = 4; v = c & 0x07; }
    else { *cp = UNI_REPLACEMENT; return 1; }  /* continuation byte or 0xF8.. */
    if (len > n) { *cp = UNI_REPLACEMENT; return 1; }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) { *cp = UNI_REPLACEMENT; return 1; }
        v = (v << 6) | (s[i] & 0x3F);
    }
    *cp = v;
    return len;
}
