#!/bin/sh
# Runs each test program, shows its output, and ends with one line that adds
# up the cmocka results of all of them. Fails if any program failed.
passed=0; failed=0; bad_programs=""
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for t in "$@"; do
    echo "=== $t"
    # A hang (a deadlock, say) fails the program instead of stalling CI.
    timeout "${LLMS_TEST_TIMEOUT:-900}" "$t" > "$log" 2>&1
    rc=$?
    cat "$log"
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -n 1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -n 1)
    passed=$((passed + ${p:-0}))
    failed=$((failed + ${f:-0}))
    if [ "$rc" -ne 0 ]; then
        bad_programs="$bad_programs $(basename "$t")"
        # A crash reports no cmocka count: count the program as one failure.
        [ -z "$f" ] && failed=$((failed + 1))
    fi
done
[ -n "$bad_programs" ] && echo "failing programs:$bad_programs"
echo "summary: $passed passed, $failed failed"
[ -z "$bad_programs" ]
