#!/usr/bin/env bash
# Cloud benchmark of issue 12: desired state -> 20 instances active from the test cloud and from
# `aosctl apply` in the same run, reconnect time after the cloud returns, and the connector's
# idle CPU and memory (aosd with a connected cloud beside one without), from a release build.
# BENCH_IDLE_SECS (default 60) sets the idle window.
set -euo pipefail
cd "$(dirname "$0")/../.."
hack/setup.sh
cargo build --release --quiet -p aosd -p aosctl -p aos-shim -p aos-logger -p aos-e2e --bins
AOS_BIN_DIR="$PWD/target/release" exec target/release/bench-cloud
