#!/usr/bin/env python3
"""Generate src/tokenizer/unicode_tables.c from the Unicode Character Database.

Usage: python3 src/tokenizer/gen_unicode_tables.py [UCD_DIR] > src/tokenizer/unicode_tables.c
UCD_DIR defaults to /usr/share/unicode (Debian package `unicode-data`).

The pre-tokenizers need, per code point: letter (\\p{L}), number (\\p{N}),
punctuation (\\p{P}) and White_Space. They are packed into one sorted table of
runs (first code point of each run + its flag byte), looked up by binary
search, so the committed file stays small and the lookup is O(log runs).

It also emits the explicit character classes of the deepseek-llm and
deepseek-coder pre-tokenizer regexes as range tables, parsed here from the
class text of the published regexes (tokenizer.json of those models), so the
C code never has to parse a regex.
"""
import os
import re
import sys

UCD = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/unicode"
MAX_CP = 0x110000

F_LETTER, F_NUMBER, F_PUNCT, F_SPACE = 1, 2, 4, 8


def read_categories():
    """General category per code point, from UnicodeData.txt (ranges expanded)."""
    cat = {}
    first = None
    with open(os.path.join(UCD, "UnicodeData.txt"), encoding="utf-8") as f:
        for line in f:
            fields = line.rstrip("\n").split(";")
            cp = int(fields[0], 16)
            name, gc = fields[1], fields[2]
            if name.endswith(", First>"):
                first = cp
                continue
            if name.endswith(", Last>"):
                for c in range(first, cp + 1):
                    cat[c] = gc
                first = None
                continue
            cat[cp] = gc
    return cat


def read_white_space():
    ws = set()
    with open(os.path.join(UCD, "PropList.txt"), encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            rng, prop = [x.strip() for x in line.split(";")]
            if prop != "White_Space":
                continue
            if ".." in rng:
                a, b = [int(x, 16) for x in rng.split("..")]
            else:
                a = b = int(rng, 16)
            ws.update(range(a, b + 1))
    return ws


def read_version():
    try:
        with open(os.path.join(UCD, "ReadMe.txt"), encoding="utf-8") as f:
            m = re.search(r"Version (\d+\.\d+\.\d+)", f.read())
            if m:
                return "Unicode " + m.group(1)
    except OSError:
        pass
    return "unknown Unicode version"


def class_ranges(text):
    """Ranges of a regex character-class body made only of literals and a-b."""
    out = []
    i = 0
    while i < len(text):
        a = ord(text[i])
        if i + 2 < len(text) and text[i + 1] == "-":
            out.append((a, ord(text[i + 2])))
            i += 3
        else:
            out.append((a, a))
            i += 1
    out.sort()
    merged = []
    for a, b in out:
        if merged and a <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


# Class bodies of the deepseek regexes (data, as published in the models'
# tokenizer.json and mirrored by llama.cpp):
#   deepseek-llm:   \s?[LETTERS]+   \s?[PUNCT]+   [CJK]+
#   deepseek-coder: [CJK]+
# Code points with a singleton canonical decomposition (KELVIN SIGN, OHM SIGN,
# the Greek oxia vowels, ...) are written as escapes: editors and copy/paste
# silently NFC-normalise them to a different code point. main() checks that
# every letter is a cased letter (Lu/Ll/Lt), which is what this class is.
DEEPSEEK_LETTERS = (
    "A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚ"
    "Ḁ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝ\u1F5F-\u1F7Dᾀ-ᾴᾶ-ᾼ\u1FBEῂ-ῄῆ-ῌ\u1FD0-\u1FD3\u1FD6-\u1FDBῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\u2126ℨ\u212A-\u212Dℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄ"
    "Ⰰ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃"
)
DEEPSEEK_PUNCT = "!-/:-~！-／：-～‘-‟　-。"
DEEPSEEK_CJK = "一-龥ࠀ-一가-퟿"


def emit_ranges(name, ranges, comment):
    print(f"/* {comment} */")
    print(f"const uint32_t {name}[][2] = {{")
    for i in range(0, len(ranges), 4):
        chunk = ranges[i:i + 4]
        print("    " + " ".join(f"{{0x{a:05X}, 0x{b:05X}}}," for a, b in chunk))
    print("};")
    print(f"const size_t {name}_n = {len(ranges)};")
    print()


def main():
    cat = read_categories()
    ws = read_white_space()

    for a, b in class_ranges(DEEPSEEK_LETTERS):
        for cp in range(a, b + 1):
            if cat.get(cp) not in ("Lu", "Ll", "Lt"):
                raise SystemExit(f"deepseek letter class: U+{cp:04X} is not a cased letter")

    flags = bytearray(MAX_CP)
    for cp, gc in cat.items():
        if gc[0] == "L":
            flags[cp] |= F_LETTER
        elif gc[0] == "N":
            flags[cp] |= F_NUMBER
        elif gc[0] == "P":
            flags[cp] |= F_PUNCT
    for cp in ws:
        flags[cp] |= F_SPACE

    starts, values = [], []
    prev = None
    for cp in range(MAX_CP):
        if flags[cp] != prev:
            starts.append(cp)
            values.append(flags[cp])
            prev = flags[cp]

    print("/* Generated by src/tokenizer/gen_unicode_tables.py from the Unicode")
    print(f" * Character Database ({read_version()}). Do not edit. */")
    print('#include "unicode.h"')
    print()
    print("/* Runs of equal flags: code points uni_run_start[i] .. uni_run_start[i+1]-1")
    print(" * have flags uni_run_flags[i] (UNI_LETTER, UNI_NUMBER, UNI_PUNCT, UNI_SPACE). */")
    print(f"const size_t uni_n_runs = {len(starts)};")
    print("const uint32_t uni_run_start[] = {")
    for i in range(0, len(starts), 8):
        print("    " + " ".join(f"0x{s:05X}," for s in starts[i:i + 8]))
    print("};")
    print("const uint8_t uni_run_flags[] = {")
    for i in range(0, len(values), 16):
        print("    " + " ".join(f"{v}," for v in values[i:i + 16]))
    print("};")
    print()
    emit_ranges("uni_deepseek_letters", class_ranges(DEEPSEEK_LETTERS),
                "deepseek-llm letter class [A-Za-zµÀ-Ö...]")
    emit_ranges("uni_deepseek_punct", class_ranges(DEEPSEEK_PUNCT),
                "deepseek-llm punctuation class [!-/:-~！-／：-～‘-‟　-。]")
    emit_ranges("uni_deepseek_cjk", class_ranges(DEEPSEEK_CJK),
                "deepseek CJK class [一-龥ࠀ-一가-퟿]")


if __name__ == "__main__":
    main()
