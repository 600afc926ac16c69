#!/usr/bin/env bash
# Store benchmark of issue 2: durable applies/s with 1 and 8 clients over 10,000 resources,
# p50/p99 apply latency, p99 watch delivery latency, aosd idle RSS and start-to-ready time,
# all from one run of a release build, printed beside the targets and redb's raw commit rate;
# the apply and watch figures again on the etcd backend (3 members on loopback; BENCH_ETCD=0 skips).
set -euo pipefail
cd "$(dirname "$0")/../.."
hack/setup.sh
cargo build --release --quiet -p aosd -p aosctl -p aos-shim -p aos-logger -p aos-e2e --bins
AOS_BIN_DIR="$PWD/target/release" exec target/release/bench-store
