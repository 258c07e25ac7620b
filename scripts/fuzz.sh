#!/usr/bin/env bash
# Bounded runs of every fuzz target (fuzz/fuzz_targets) on the stable toolchain: cargo-fuzz with
# `--sanitizer none` (sanitizers need nightly, which this project's machines cannot fetch).
# Each target starts from its committed corpus, fuzz/corpus/<target>; inputs it finds go to a
# scratch directory, so the committed corpus only changes by hand. A failure stops the script
# with the input saved under fuzz/artifacts/<target>/: copy it into the corpus, which the unit
# tests replay, so it stays a regression test once fixed.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 30)
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-30}
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: cargo-fuzz is missing (scripts/setup.sh installs it)" >&2
  exit 1
fi
for target in $(cargo fuzz list); do
  scratch=$(mktemp -d)
  log=$(mktemp)
  if ! cargo fuzz run --sanitizer none "$target" "$scratch" "corpus/$target" -- \
      -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 >"$log" 2>&1; then
    grep -v '^ *[0-9]*: \|^ *at ' "$log" | tail -40 >&2
    echo "fuzz: $target FAILED; the input is under fuzz/artifacts/$target/" >&2
    exit 1
  fi
  runs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | tail -1)
  echo "fuzz: $target: ${runs:-finished}s, no failure (corpus $(ls "corpus/$target" | wc -l) files)"
  rm -rf "$scratch" "$log"
done
