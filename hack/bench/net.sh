#!/usr/bin/env bash
# Network benchmark of issue 5, one run: set-up and tear-down of one instance's network by aosd
# beside `ip netns add` + `netavark setup`/`teardown` of an equivalent bridge network, and the
# time to bring up 100 instances' networks (BENCH_INSTANCES shortens it). Release build; root.
set -euo pipefail
cd "$(dirname "$0")/../.."
hack/setup.sh
cargo build --release --quiet -p aos-e2e --bin bench-net
exec target/release/bench-net
