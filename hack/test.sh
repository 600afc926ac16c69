#!/usr/bin/env bash
# Runs every test of aosd: installs what is missing, builds the binaries the end-to-end suites
# start, checks formatting and lints, then runs all tests (nextest when available).
# Set AOS_SKIP_LINT=1 to skip fmt and clippy.
set -euo pipefail
cd "$(dirname "$0")/.."

hack/setup.sh

if [ "${AOS_SKIP_LINT:-0}" != 1 ]; then
  echo "== cargo fmt --check"
  cargo fmt --all -- --check
  echo "== cargo clippy"
  cargo clippy --workspace --all-targets --quiet -- -D warnings
fi

echo "== build"
cargo build --workspace --bins --quiet

echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
