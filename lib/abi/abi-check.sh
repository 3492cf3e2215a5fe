#!/bin/sh
# Compares the built library's ABI with the committed baseline (libabigail).
# Compatible changes (new functions, fields appended to size-prefixed
# structs) pass; anything incompatible fails unless the same commit bumped
# the soname's major version and regenerated the baseline (make abi-baseline),
# in which case the baseline carries the new soname and matches again.
set -eu
lib=$1 baseline=$2 suppr=$3
command -v abidw >/dev/null || { echo "abi-check: abidw not found (Debian package abigail-tools)"; exit 1; }
[ -f "$baseline" ] || { echo "abi-check: no baseline $baseline (run make abi-baseline)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
abidw --no-corpus-path --drop-private-types --headers-dir include --out-file "$tmp/current.abi" "$lib"

base_soname=$(sed -n 's/.*soname=.\([^"'\'']*\).*/\1/p' "$baseline" | head -n 1)
cur_soname=$(sed -n 's/.*soname=.\([^"'\'']*\).*/\1/p' "$tmp/current.abi" | head -n 1)
if [ "$base_soname" != "$cur_soname" ]; then
    echo "abi-check: soname changed ($base_soname -> $cur_soname) but the baseline was not regenerated"
    exit 1
fi

set +e
abidiff --suppressions "$suppr" --no-added-syms "$baseline" "$tmp/current.abi" > "$tmp/diff.txt"
rc=$?
set -e
# abidiff exit bits: 1 error, 2 usage error, 4 ABI change, 8 incompatible change.
if [ $((rc & 3)) -ne 0 ]; then
    cat "$tmp/diff.txt"; echo "abi-check: abidiff failed (exit $rc)"; exit 1
fi
if [ $((rc & 12)) -ne 0 ]; then
    cat "$tmp/diff.txt"
    echo "abi-check: FAILED: incompatible ABI change against $baseline with soname $cur_soname."
    echo "  Either keep the ABI (append fields, add functions) or bump LLMS_VERSION_MAJOR and run make abi-baseline."
    exit 1
fi
echo "abi-check: OK ($cur_soname compatible with the baseline)"
