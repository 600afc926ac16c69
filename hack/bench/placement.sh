#!/usr/bin/env bash
# Placement benchmark of issue 13, one run: the decision for 1,000 instances on 3 nodes (the
# rules alone), then whole placement passes (list, decide, write spec.nodeName and the Scheduled
# condition of each) on a 3-member etcd cluster on loopback and on the embedded store, printed
# side by side. BENCH_INSTANCES changes the count. Release build.
set -euo pipefail
cd "$(dirname "$0")/../.."
hack/setup.sh
cargo build --release --quiet -p aos-e2e --bin bench-placement
exec target/release/bench-placement
