#!/usr/bin/env bash
# Runs every test of aosd: installs what is missing, builds the binaries the end-to-end suites
# start, checks formatting and lints, then runs all tests (nextest when available). Each step
# prints its wall time; a cold first run on 2 cores takes about 10 minutes, most of it building.
# Set AOS_SKIP_LINT=1 to skip fmt and clippy, AOSD_SKIP_VM=1 to skip the VM suite (CI never
# does). Arguments go to the test runner (a filter, say).
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

if [ "${AOSD_SKIP_VM:-0}" != 1 ]; then
  step "VM image (hack/vm/build.sh)"
  hack/vm/build.sh target/vm >/dev/null
fi

# The VM suite runs on its own after the rest: its emulated guests take both cores.
step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --exclude aos-e2e-vm --no-fail-fast --no-tests=pass "$@"
  step "VM suite (e2e/vm)"
  cargo nextest run -p aos-e2e-vm --no-fail-fast --no-tests=pass --test-threads 2 --success-output final "$@"
else
  cargo test --workspace --exclude aos-e2e-vm --no-fail-fast "$@"
  step "VM suite (e2e/vm)"
  cargo test -p aos-e2e-vm --no-fail-fast "$@" -- --nocapture
fi
step end
