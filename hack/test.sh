#!/usr/bin/env bash
# Runs every test of aosd: installs what is missing, builds the binaries the end-to-end suites
# start, checks formatting and lints, then runs all tests (nextest when available). Each step
# prints its wall time; a cold first run on 2 cores takes about 10 minutes, most of it building.
# Set AOS_SKIP_LINT=1 to skip fmt and clippy. Arguments go to the test runner (a filter, say).
set -euo pipefail
cd "$(dirname "$0")/.."

T0=$(date +%s)
step_start=$T0
step() {
  local now; now=$(date +%s)
  if [ -n "${STEP:-}" ]; then
    printf '== %s done in %ss (total %ss)\n' "$STEP" "$((now - step_start))" "$((now - T0))"
  fi
  STEP="$1"; step_start=$now
  [ "$STEP" = end ] || printf '== %s\n' "$STEP"
}

step "setup (hack/setup.sh)"
hack/setup.sh

if [ "${AOS_SKIP_LINT:-0}" != 1 ]; then
  step "cargo fmt --check"
  cargo fmt --all -- --check
  step "cargo clippy"
  cargo clippy --workspace --all-targets -- -D warnings
fi

step "build"
cargo build --workspace --bins

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
step end
