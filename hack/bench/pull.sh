#!/usr/bin/env bash
# Pull benchmark of issue 3: a >= 300 MB / >= 10k files / 3 layer image in the local registry,
# pulled cold by aosd, `ctr image pull` (containerd, overlayfs) and skopeo + umoci, alternating,
# medians of several rounds; aosd's peak RSS and each one's disk use. Release build.
set -euo pipefail
cd "$(dirname "$0")/../.."
hack/setup.sh
cargo build --release --quiet -p aosd -p aosctl -p aos-shim -p aos-logger -p aos-e2e --bins
# As deploy/aosd.service runs aosd (and so the converters it starts): glibc's malloc arenas
# capped (README, "Installing"); MALLOC_ARENA_MAX= (empty) measures without.
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX-2}"
AOS_BIN_DIR="$PWD/target/release" exec target/release/bench-pull
