#!/bin/sh
# Smoke tests of the example programs not covered by test_cli: the chat
# (piped stdin, /quit, a model without a chat template), the C++ example and
# the scheduler's batch example.
# Usage: tests/examples.sh BIN_DIR FIXTURES_DIR
set -u
bin=$1
model=$2/models/aidreams260K.gguf
fail=0
ok() { echo "ok: $1"; }
bad() { echo "FAILED: $1"; fail=1; }

# Without a chat template the chat says so and exits non-zero.
err=$("$bin/chat" --model "$model" </dev/null 2>&1 >/dev/null); rc=$?
[ $rc -ne 0 ] && echo "$err" | grep -q "no chat template" && ok "chat refuses a model without a template" \
    || bad "chat without template: rc=$rc: $err"

# Piped input, two turns; /quit stops reading, so the line after it is never
# a turn: the output equals that of the two turns alone.
chat() { "$bin/chat" --model "$model" --template chatml --temperature 0 --max-tokens 8 --threads 1 | od -c; }
out=$(printf 'hello\nmore\n/quit\nnever\n' | chat); rc=$?
two=$(printf 'hello\nmore\n' | chat)
one=$(printf 'hello\n' | chat)
[ $rc -eq 0 ] && [ -n "$out" ] && [ "$out" = "$two" ] && [ "$out" != "$one" ] && ok "chat with piped stdin and /quit" \
    || bad "chat piped: rc=$rc"

# Unknown option: usage, exit 2.
"$bin/chat" --bogus >/dev/null 2>&1; [ $? -eq 2 ] && ok "chat usage" || bad "chat usage"

# The C++ example streams the same greedy text as the C example program.
want=$("$bin/llms-generate" --model "$model" --prompt "The robot" --max-tokens 64 --temperature 0 2>/dev/null)
got=$("$bin/cpp-example" "$model" "The robot" 2>/dev/null)
[ "$got" = "$want" ] && ok "cpp-example matches llms-generate" || bad "cpp-example: '$got' != '$want'"
"$bin/cpp-example" /nonexistent.gguf x 2>&1 | grep -q "LLMS_ERR_IO" && ok "cpp-example reports errors" \
    || bad "cpp-example error"

# The batch example runs every request through the scheduler and reports
# throughput and latency percentiles; a failure exits non-zero.
out=$("$bin/batch" --model "$model" --requests 20 --concurrency 4 --max-tokens 8 --threads 1 --prompt "The robot" 2>&1); rc=$?
[ $rc -eq 0 ] && echo "$out" | grep -q "^requests: 20 ok, 0 failed" && echo "$out" | grep -q "tokens/s" \
    && echo "$out" | grep -q "^ttft ms: p50 .* p90 .* p99" && echo "$out" | grep -q "^e2e  ms: p50" \
    && ok "batch runs concurrent requests" || bad "batch: rc=$rc: $out"
"$bin/batch" --model /nonexistent.gguf >/dev/null 2>&1; rc=$?
[ $rc -ne 0 ] && [ $rc -ne 2 ] && ok "batch reports errors" || bad "batch error: rc=$rc"
"$bin/batch" --bogus >/dev/null 2>&1; [ $? -eq 2 ] && ok "batch usage" || bad "batch usage"

[ $fail -eq 0 ] && echo "[  PASSED  ] examples" || echo "[  FAILED  ] 1 test(s)."
exit $fail
