#!/bin/sh
# Side-by-side CPU benchmark: libllmserve (build/bin/llms-bench) and llama.cpp
# (bench.mjs beside this file) on the same GGUF files, interleaved, on this
# machine, minutes apart. A shared VM's memory bandwidth drifts by tens of
# percent over an hour, so only ratios measured this way are comparable.
#
# usage: bench/llamacpp/side_by_side.sh [ROUNDS=2]   (run by `make bench-compare`)
# env:   BENCH_DIR (models; default build/bench), TYPES, THREADS, PROMPT, GEN, REPS
# Needs npm and the npm registry once, to install node-llama-cpp's prebuilt
# CPU build into $BENCH_DIR/llamacpp-node (never needed by the tests or CI).
set -eu
rounds=${1:-2}
dir=${BENCH_DIR:-build/bench}
types=${TYPES:-Q4_0 Q8_0 Q4_K_M F16}
threads=${THREADS:-2}; prompt=${PROMPT:-512}; gen=${GEN:-128}; reps=${REPS:-3}
shape=tinyllama-1.1b
mkdir -p "$dir"
node_dir=$(cd "$dir" && pwd)/llamacpp-node
here=$(cd "$(dirname "$0")" && pwd)

if [ ! -d "$node_dir/node_modules/@node-llama-cpp/linux-x64" ]; then
    echo "side-by-side: installing llama.cpp's prebuilt CPU build (npm node-llama-cpp) into $node_dir"
    mkdir -p "$node_dir"
    [ -f "$node_dir/package.json" ] || (cd "$node_dir" && npm init -y >/dev/null)
    # --ignore-scripts: use the prebuilt binaries as shipped, never build or download.
    (cd "$node_dir" && npm install --ignore-scripts --omit=optional node-llama-cpp@3.22.1 >/dev/null &&
        npm install --ignore-scripts @node-llama-cpp/linux-x64@3.22.1 >/dev/null)
fi
cp "$here/bench.mjs" "$node_dir/bench.mjs"

out=$dir/side_by_side.json
printf '{"machine": "%s", "threads": %s, "prompt": %s, "gen": %s, "rounds": %s, "results": [\n' \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores" \
    "$threads" "$prompt" "$gen" "$rounds" > "$out.tmp"
sep=''
for t in $types; do
    f=$dir/$shape-$t.gguf
    if [ ! -f "$f" ]; then
        echo "side-by-side: generating $f"
        build/bin/llms-mkmodel --shape $shape --type "$t" --out "$f.part" && mv "$f.part" "$f"
    fi
    model=$(realpath "$f")
    ours_pp=0; ours_tg=0; ref_pp=0; ref_tg=0; fracs=
    r=0
    while [ $r -lt "$rounds" ]; do
        # Alternate which engine goes first, so a drift in the machine's speed
        # during a round does not always favour the same one.
        for who in $( [ $((r % 2)) -eq 0 ] && echo "ours ref" || echo "ref ours"); do
            if [ "$who" = ours ]; then
                j=$(build/bin/llms-bench --model "$model" --threads "$threads" --prompt "$prompt" \
                        --gen "$gen" --reps "$reps" --json | tail -n 1)
            else
                j=$(cd "$node_dir" && node bench.mjs "$model" \
                        "$prompt" "$gen" "$reps" "$threads" | tail -n 1)
            fi
            pp=$(echo "$j" | sed -n 's/.*"prompt_tok_s": *\([0-9.]*\).*/\1/p')
            tg=$(echo "$j" | sed -n 's/.*"gen_tok_s": *\([0-9.]*\).*/\1/p')
            echo "side-by-side: $t round $r $who: prompt $pp tok/s, gen $tg tok/s"
            if [ "$who" = ours ]; then
                # llms-bench's own bandwidth readings, taken between its
                # tokens: generation as a fraction of the machine's limit
                # (every round's, lowest and highest reported).
                fr=$(echo "$j" | sed -n 's/.*"gen_fraction_of_bandwidth_limit": *\([0-9.]*\).*/\1/p')
                fracs="$fracs $fr"
            fi
            if [ "$who" = ours ]; then
                ours_pp=$(echo "$ours_pp $pp" | awk '{print ($2 > $1) ? $2 : $1}')
                ours_tg=$(echo "$ours_tg $tg" | awk '{print ($2 > $1) ? $2 : $1}')
            else
                ref_pp=$(echo "$ref_pp $pp" | awk '{print ($2 > $1) ? $2 : $1}')
                ref_tg=$(echo "$ref_tg $tg" | awk '{print ($2 > $1) ? $2 : $1}')
            fi
        done
        r=$((r + 1))
    done
    lo=$(echo $fracs | tr ' ' '\n' | sort -g | head -n 1); hi=$(echo $fracs | tr ' ' '\n' | sort -g | tail -n 1)
    line=$(awk -v t="$t" -v a="$ours_pp" -v b="$ours_tg" -v c="$ref_pp" -v d="$ref_tg" -v lo="${lo:-0}" -v hi="${hi:-0}" 'BEGIN {
        printf "{\"type\": \"%s\", \"llmserve\": {\"prompt_tok_s\": %s, \"gen_tok_s\": %s, \"gen_fraction_of_bandwidth_limit\": [%s, %s]}, \"llama_cpp\": {\"prompt_tok_s\": %s, \"gen_tok_s\": %s}, \"prompt_ratio\": %.3f, \"gen_ratio\": %.3f}", t, a, b, lo, hi, c, d, a / c, b / d }')
    [ -n "$sep" ] && printf ',\n' >> "$out.tmp"
    printf '  %s' "$line" >> "$out.tmp"; sep=1
    awk -v t="$t" -v a="$ours_pp" -v b="$ours_tg" -v c="$ref_pp" -v d="$ref_tg" -v lo="${lo:-0}" -v hi="${hi:-0}" 'BEGIN {
        printf "%-7s prompt %7.1f vs %7.1f tok/s (%.2fx)   gen %6.2f vs %6.2f tok/s (%.2fx), ours at %.0f-%.0f%% of the bandwidth limit\n", t, a, c, a / c, b, d, b / d, 100 * lo, 100 * hi }'
done
printf '\n]}\n' >> "$out.tmp"; mv "$out.tmp" "$out"; echo "side-by-side: wrote $out"
