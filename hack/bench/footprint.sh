#!/usr/bin/env bash
# Footprint benchmark of issue 14, one run: PSS of aosd, containerd, the shims and the logging
# processes with 0, 20 and 100 running instances, and aosd's idle CPU, for the previous
# configuration (containerd's Go shim per task with an aos-logger each, containerd with only
# CRI off, usage written at every reading), the Go shim in groups (go-groups), and the current
# one (aosd's own shim in groups, writing the logs itself). BENCH_SETUPS picks some
# (e.g. go-groups,now,device).
# It waits 75 s after each scale-up (the readings of new tasks settle in two usage intervals).
# BENCH_IDLE_SECS (60) and BENCH_COUNTS (0,20,100) shorten it; BENCH_NOW_CONFIG adds to the
# current [runtimes.container] (e.g. 'shim_group = 8'); BENCH_GO_ENV sets containerd's (and
# so its shims') environment for the current setup (e.g. GOGC=50,GOMEMLIMIT=16MiB). Release build;
# BENCH_DEVICE=1 also builds aosd and its shim with the `device` profile and aos-logger statically (what
# hack/package.sh --release ships) and measures them in the current setup as a third row
# group. (hack/bench/shims.sh compares the Go runc shim with a Rust one.)
set -euo pipefail
cd "$(dirname "$0")/../.."
hack/setup.sh
cargo build --release --quiet -p aosd -p aosctl -p aos-shim -p aos-logger -p aos-e2e --bins
if [ "${BENCH_DEVICE:-0}" = 1 ]; then
  # What hack/package.sh --release ships.
  BENCH_DEVICE_BIN_DIR="$(hack/device-bins.sh)"
  export BENCH_DEVICE_BIN_DIR
fi
AOS_BIN_DIR="$PWD/target/release" exec target/release/bench-footprint
