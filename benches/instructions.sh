#!/usr/bin/env bash
# Noise-free cost figure for docs/benchmarks.md: CPU instructions per input line of a whole
# `clearhouse net` run (all threads, all stages), counted by valgrind's callgrind. Unlike wall
# time on a shared VM, the count is the same on every run of the same binary and input.
# Usage: benches/instructions.sh [LINES] (default 20000).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20000}
dir=target/bench/callgrind
rm -rf "$dir" && mkdir -p "$dir"
cargo build --release --quiet
bin=target/release/clearhouse
"$bin" gen --count "$n" --seed 1 --merchants 1000 --out "$dir/input.jsonl" >/dev/null
valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" "$bin" net --no-progress --shards 2 \
  --input "$dir/input.jsonl" --out "$dir/out" >/dev/null 2>"$dir/valgrind.log"
total=$(grep -E '^(summary|totals):' "$dir/callgrind.out" | head -1 | awk '{print $2}')
echo "instructions: $total for $n lines = $(( total / n )) per line"
