#!/usr/bin/env bash
# Installs the tansu Kafka-protocol broker (crates.io, SQLite storage) used by the broker tests.
# Building it takes about 13 minutes on 2 cores, so the binary is cached outside the clone, in
# $CLEARHOUSE_TOOLS (default ~/.cache/clearhouse), keyed by version: later runs on the same machine
# skip the build. Prints the binary's path.
set -euo pipefail
version=0.6.0
tools=${CLEARHOUSE_TOOLS:-$HOME/.cache/clearhouse}
root="$tools/tansu-$version"
bin="$root/bin/tansu"
if [ ! -x "$bin" ]; then
  echo "install-tansu: building tansu $version into $root (about 13 minutes)" >&2
  mkdir -p "$tools"
  cargo install tansu --version "$version" --locked --features dynostore,libsql --root "$root.partial" --quiet >&2
  rm -rf "$root" && mv "$root.partial" "$root"
fi
echo "$bin"
