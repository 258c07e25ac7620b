#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs the external tools the tests use (xmllint
# and the pain.001 XSD; the tansu broker, built once and cached outside the clone), then runs
# a bounded fuzz run of every fuzz target (scripts/fuzz.sh, FUZZ_SECS seconds each, default 45),
# then every test target (unit, property, golden, XSD, broker, end-to-end CLI) and compiles the
# benchmarks, running each once in test mode. The `ci` profile (Cargo.toml): optimised, because the
# property and end-to-end tests push real volumes through the engine, but without LTO.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
CLEARHOUSE_TANSU=$(scripts/install-tansu.sh)
export CLEARHOUSE_TANSU
scripts/fuzz.sh "${FUZZ_SECS:-45}"
cargo test --workspace --profile ci --locked --all-targets "$@"
