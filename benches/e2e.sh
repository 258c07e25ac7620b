#!/usr/bin/env bash
# End-to-end file-mode benchmark (docs/benchmarks.md): generate N instructions (default 5 million),
# time `clearhouse net` on them (read, validate, net, write every output), record instructions/s
# and peak RSS, check the result with `verify`, then run the DuckDB baseline on the same file.
# Usage: benches/e2e.sh [N] [SHARDS]. Work files go to target/bench (about 270 bytes a line).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-5000000}
shards=${2:-}
dir=target/bench
mkdir -p "$dir"
cargo build --release --quiet
bin=target/release/clearhouse
input="$dir/gen-$n.jsonl"
[ -s "$input" ] || "$bin" gen --count "$n" --seed 1 --merchants 10000 --out "$input"
rm -rf "$dir/out"
args=(net --no-progress --input "$input" --out "$dir/out")
[ -n "$shards" ] && args+=(--shards "$shards")
/usr/bin/time -f "peak_rss_kb %M wall_s %e user_s %U sys_s %S" -o "$dir/time.txt" "$bin" "${args[@]}" | tee "$dir/net.txt"
cat "$dir/time.txt"
accepted=$(grep -o 'accepted [0-9]*' "$dir/net.txt" | awk '{print $2}')
rss_kb=$(awk '{print $2}' "$dir/time.txt")
wall=$(awk '{print $4}' "$dir/time.txt")
echo "throughput: $(( n * 100 / ${wall/./} )) instructions/s (wall ${wall} s)"
echo "peak memory: $(( rss_kb * 1024 / accepted )) bytes per accepted instruction (${rss_kb} KB for ${accepted})"
"$bin" verify "$dir/out"
if [ ! -x .cache/bench-venv/bin/python ]; then
  python3 -m venv .cache/bench-venv
  .cache/bench-venv/bin/pip install --quiet duckdb==2.0.0
fi
.cache/bench-venv/bin/python benches/duckdb_baseline.py "$input" 2
