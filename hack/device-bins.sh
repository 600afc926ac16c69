#!/usr/bin/env bash
# Builds what a device runs and prints the directory that holds it: aosd, aosctl and aosd's
# shim (containerd-shim-aos-v1) of the `device` cargo profile (Cargo.toml) and aos-logger linked statically (hack/static-logger.sh),
# side by side in target/device-bins (aosd runs the aos-logger beside its own binary).
# hack/package.sh --release packs this directory and hack/bench/footprint.sh measures it: one
# cargo command for both, so that features unify the same way and neither rebuilds the other's.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --profile device --quiet --bins -p aosd -p aosctl -p aos-shim >&2
logger="$(hack/static-logger.sh device)"
dir="$PWD/target/device-bins"
mkdir -p "$dir"
cp target/device/aosd target/device/aosctl target/device/containerd-shim-aos-v1 "$logger" "$dir/"
echo "$dir"
