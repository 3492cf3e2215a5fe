"""Every public struct's ctypes mirror has the C header's size and field
offsets. A C program generated from the mirrors' field names prints
sizeof/offsetof as the compiler sees them; a field renamed or missing in the
mirror fails to compile, one moved or resized shows up as a different offset."""

import ctypes
import os
import re
import shutil
import subprocess

import pytest

from llmserve import _lib


def c_layouts(repo, tmp_path):
    cc = os.environ.get("CC", "cc")
    if not shutil.which(cc):
        pytest.skip("no C compiler")
    lines = ['#include <stddef.h>', '#include <stdio.h>', '#include "llmserve.h"', 'int main(void) {']
    for name, cls in _lib.STRUCTS.items():
        lines.append('    printf("%s sizeof %%zu\\n", sizeof(%s));' % (name, name))
        lines.append('    printf("%s alignof %%zu\\n", _Alignof(%s));' % (name, name))
        for field, _ in cls._fields_:
            lines.append('    printf("%s %s %%zu\\n", offsetof(%s, %s));' % (name, field, name, field))
    lines += ['    return 0;', '}']
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines) + "\n")
    exe = tmp_path / "layout"
    subprocess.run([cc, "-std=c11", "-I", str(repo / "include"), "-o", str(exe), str(src)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    return {tuple(line.split()[:2]): int(line.split()[2]) for line in out.splitlines()}


def test_struct_layouts_match_header(repo, tmp_path):
    c = c_layouts(repo, tmp_path)
    for name, cls in _lib.STRUCTS.items():
        assert ctypes.sizeof(cls) == c[(name, "sizeof")], name
        assert ctypes.alignment(cls) == c[(name, "alignof")], name
        for field, _ in cls._fields_:
            assert getattr(cls, field).offset == c[(name, field)], (name, field)


def test_every_public_struct_is_mirrored(repo):
    # Catches a struct added to the header (e.g. the scheduler's) that the
    # bindings do not mirror yet.
    header = (repo / "include" / "llmserve.h").read_text()
    declared = set(re.findall(r"typedef\s+struct\s+(llms_\w+)\s*\{", header))
    assert declared, "no structs found in the header"
    assert declared - set(_lib.STRUCTS) == set()


def test_field_counts_match_header(repo):
    # A field appended in C but not here would keep every offset right and
    # only change sizeof; this names the struct directly.
    header = (repo / "include" / "llmserve.h").read_text()
    for name, body in re.findall(r"typedef\s+struct\s+(llms_\w+)\s*\{(.*?)\}\s*\1\s*;", header, re.S):
        body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
        # Function-pointer fields: their parameter lists hold commas too.
        body = re.sub(r"\([^()]*\)", "()", body)
        if name not in _lib.STRUCTS:
            continue  # reported by test_every_public_struct_is_mirrored
        # "uint32_t a, b, c;" declares three fields.
        n = sum(decl.count(",") + 1 for decl in body.split(";") if decl.strip())
        assert len(_lib.STRUCTS[name]._fields_) == n, name


def test_status_numbers_match_header(repo):
    # The Status enum mirrors the frozen status numbers by name.
    header = (repo / "include" / "llmserve.h").read_text()
    import llmserve
    found = dict((name, int(num)) for name, num in re.findall(
        r"^\s*LLMS_((?:ERR_\w+)|OK|TOKEN|DONE|AGAIN)\s*=\s*(-?\d+)", header, re.M))
    assert found
    for name, num in found.items():
        assert name in llmserve.Status.__members__, name
        assert llmserve.Status[name] == num, name
