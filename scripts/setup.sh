#!/usr/bin/env bash
# Installs what the test suite needs that cargo does not: xmllint (Debian's libxml2-utils), socat
# and openssl for the TLS test, promtool for the alert rules, cargo-fuzz (crates.io) for the
# bounded fuzz runs, and the
# official ISO 20022 pain.001.001.09 XSD, taken from the pinned `sepaxml` wheel on PyPI and checked
# against a known SHA-256. Idempotent: a second run only re-checks.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache="$root/.cache"
xsd="$cache/xsd/pain.001.001.09.xsd"
xsd_sha256=de038b373e47b0077b1832ddd81f4b2f1eb25d35721f62da1e38b7f5a09fda24
sepaxml_version=2.7.0

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Debian packages the tests run: xmllint (libxml2-utils), socat (the TLS-terminating proxy in
# front of the test broker), openssl (test CA), promtool (prometheus: the alert rules).
missing=()
command -v xmllint >/dev/null 2>&1 || missing+=(libxml2-utils)
command -v socat >/dev/null 2>&1 || missing+=(socat)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# cargo-fuzz drives libFuzzer; `--sanitizer none` lets it build on the stable toolchain.
cargo_fuzz_version=0.13.2
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $cargo_fuzz_version" ]; then
  echo "setup: installing cargo-fuzz $cargo_fuzz_version"
  cargo install --quiet --locked cargo-fuzz --version "$cargo_fuzz_version"
fi

if [ ! -s "$xsd" ] || ! echo "$xsd_sha256  $xsd" | sha256sum --check --status; then
  echo "setup: fetching pain.001.001.09.xsd from sepaxml==$sepaxml_version"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "sepaxml==$sepaxml_version"
  python3 -m zipfile -e "$tmp"/sepaxml-"$sepaxml_version"-*.whl "$tmp/wheel"
  mkdir -p "$(dirname "$xsd")"
  cp "$tmp/wheel/sepaxml/schemas/pain.001.001.09.xsd" "$xsd"
  echo "$xsd_sha256  $xsd" | sha256sum --check --status || { echo "setup: XSD checksum mismatch" >&2; exit 1; }
fi

echo "setup: xmllint $(xmllint --version 2>&1 | head -1 | awk '{print $NF}'), XSD at ${xsd#"$root"/}"
