#!/bin/sh
# Runs each test program; prints a summary line and fails if any failed.
pass=0; fail=0; failed=""
for t in "$@"; do
    echo "=== $t"
    if "$t"; then pass=$((pass + 1)); else fail=$((fail + 1)); failed="$failed $t"; fi
done
echo "test programs: $pass passed, $fail failed"
[ -n "$failed" ] && echo "failed:$failed"
[ "$fail" -eq 0 ]
