#!/bin/sh
# Scale-out: two llms-server processes behind nginx (Debian's) on loopback.
# Checks that requests spread over both, and that when one is stopped while
# requests are in flight, those that had not started answering are retried
# on the other by nginx and none is lost.
# Usage: tests/test_scaleout.sh [BIN_DIR] [FIXTURES_DIR]
# Skipped (exit 0, a "skipped" line) where nginx is not installed.
set -u
bin=${1:-${LLMS_BIN:-build/bin}}
fix=${2:-${LLMS_FIXTURES:-../shared/fixtures}}
model=$fix/models/rand-llama-spm-d256-f16.gguf
here=$(cd "$(dirname "$0")" && pwd)
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
if [ ! -x "$NGINX" ]; then echo "skipped: nginx is not installed (apt-get install nginx-light)"; exit 0; fi
[ -f "$model" ] || { echo "test_scaleout: missing fixture $model"; echo "[  FAILED  ] 1 test(s)."; exit 1; }

tmp=$(mktemp -d)
pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 1' INT TERM
pass=0; fail=0
ok() { echo "ok: $1"; pass=$((pass + 1)); }
bad() { echo "FAILED: $1"; fail=$((fail + 1)); }

# start NAME: a server on a free port; sets $port and $pid.
start() {
    "$bin/llms-server" --model "$model" --port 0 --threads 1 2> "$tmp/$1.err" &
    pid=$!
    pids="$pids $pid"
    port=""
    i=0
    while [ $i -lt 100 ]; do
        port=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$tmp/$1.err" 2>/dev/null)
        [ -n "$port" ] && curl -sf --max-time 2 "http://127.0.0.1:$port/health" >/dev/null && return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}
submitted() {
    curl -s --max-time 5 "http://127.0.0.1:$1/metrics" | sed -n 's/^llms_requests_submitted_total //p'
}

start a || { bad "server a"; exit 1; }
pa=$port; pida=$pid
start b || { bad "server b"; exit 1; }
pb=$port
# nginx needs a fixed port: ask the kernel for a free one.
pn=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1]); s.close()")
mkdir -p "$tmp/nginx/logs"
sed -e "s|@TMP@|$tmp/nginx|g" -e "s|@A@|$pa|g" -e "s|@B@|$pb|g" -e "s|@PORT@|$pn|g" \
    "$here/scaleout/nginx.conf.in" > "$tmp/nginx/nginx.conf"
"$NGINX" -p "$tmp/nginx/" -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/logs/error.log" 2>"$tmp/nginx.out" &
pids="$pids $!"
lb="http://127.0.0.1:$pn"
i=0
while [ $i -lt 100 ] && ! curl -sf --max-time 2 "$lb/health" >/dev/null; do sleep 0.1; i=$((i + 1)); done
curl -sf --max-time 2 "$lb/health" >/dev/null && ok "nginx in front of two servers" \
    || { bad "nginx did not start: $(cat "$tmp/nginx.out" "$tmp/nginx/logs/error.log" 2>/dev/null)"; exit 1; }

req='{"prompt":"hello","max_tokens":300,"temperature":0}'
want=$(curl -s --max-time 30 --data-binary "$req" "http://127.0.0.1:$pb/v1/completions" | \
    python3 -c "import json,sys; print(json.load(sys.stdin)['choices'][0]['text'])")
[ -n "$want" ] && ok "reference completion from one server" || bad "reference completion"

# Spread: round robin sends requests to both.
a0=$(submitted "$pa"); b0=$(submitted "$pb")
i=0
while [ $i -lt 8 ]; do
    curl -s --max-time 30 -o /dev/null --data-binary '{"prompt":"hi","max_tokens":4,"temperature":0}' "$lb/v1/completions"
    i=$((i + 1))
done
a1=$(submitted "$pa"); b1=$(submitted "$pb")
da=$((a1 - a0)); db=$((b1 - b0))
[ $da -ge 2 ] && [ $db -ge 2 ] && [ $((da + db)) -eq 8 ] && ok "8 requests spread over both servers ($da + $db)" \
    || bad "spread: a $da, b $db"

# Failover: 8 requests in flight, then server a stops. Those it had not
# answered are retried on b (proxy_next_upstream ... non_idempotent); every
# one must come back 200 with the reference text.
i=0
while [ $i -lt 8 ]; do
    curl -s --max-time 60 -o "$tmp/r$i" -w '%{http_code}' --data-binary "$req" "$lb/v1/completions" > "$tmp/c$i" &
    i=$((i + 1))
done
sleep 0.3
kill -TERM "$pida"
wait "$pida" 2>/dev/null
i=0; good=0
while [ $i -lt 8 ]; do
    k=0
    while [ ! -s "$tmp/c$i" ] && [ $k -lt 600 ]; do sleep 0.1; k=$((k + 1)); done
    got=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['choices'][0]['text'])" "$tmp/r$i" 2>/dev/null)
    [ "$(cat "$tmp/c$i")" = 200 ] && [ "$got" = "$want" ] && good=$((good + 1))
    i=$((i + 1))
done
retried=$(grep -c "upstream prematurely closed\|Connection refused\|reset by peer" "$tmp/nginx/logs/error.log" 2>/dev/null)
[ $good -eq 8 ] && ok "server a stopped mid-flight: 8 of 8 requests answered correctly ($retried retried by nginx)" \
    || bad "failover: $good of 8 answered; codes: $(cat "$tmp"/c?)"
# With a down, everything still works through b.
r=$(curl -s --max-time 30 -w '%{http_code}' -o /dev/null --data-binary "$req" "$lb/v1/completions")
[ "$r" = 200 ] && ok "requests after the stop go to the remaining server" || bad "after stop: $r"

echo "test_scaleout: $pass passed, $fail failed"
if [ $fail -eq 0 ]; then echo "[  PASSED  ] $pass test(s)."; else echo "[  FAILED  ] $fail test(s)."; fi
[ $fail -eq 0 ]
