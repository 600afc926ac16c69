#!/usr/bin/env bash
# A longer run of the property tests that feed untrusted input to aosd's parsers (manifests,
# item configs, OCI documents) and its layer tar filter. hack/test.sh runs the same tests with
# 256 cases each; this runs CASES (default 100000) each, in release mode.
#   hack/fuzz.sh            CASES=1000000 hack/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PROPTEST_CASES="${CASES:-100000}"
start=$(date +%s)
cargo test --release -p aos-api --test fuzz
cargo test --release -p aos-image --test fuzz
echo "== hack/fuzz.sh: $PROPTEST_CASES cases per property in $(( $(date +%s) - start ))s"
