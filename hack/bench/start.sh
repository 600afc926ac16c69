#!/usr/bin/env bash
# Start benchmark of issue 4, one run: apply-to-Active latency (image unpacked) beside `ctr run -d`
# of the same rootfs, time for 100 instances to converge, aosd RSS with 100 running and aosd CPU
# over 60 s idle, and the time to delete the 100 (1 s stop grace, tasks that ignore SIGTERM).
# BENCH_INSTANCES and BENCH_IDLE_SECS shorten it; BENCH_EXTRA_CONFIG is put at the top of aosd's
# config (e.g. $'[controllers]\nconcurrency = 16\n'), BENCH_CONTAINER_CONFIG into its
# [runtimes.container] (e.g. 'shim_group = 1'). Release build.
set -euo pipefail
cd "$(dirname "$0")/../.."
hack/setup.sh
cargo build --release --quiet -p aosd -p aosctl -p aos-shim -p aos-logger -p aos-e2e --bins
AOS_BIN_DIR="$PWD/target/release" exec target/release/bench-start
