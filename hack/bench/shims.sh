#!/usr/bin/env bash
# Issue 14 point 1: what runc shims cost, containerd's Go shim beside rust-extensions' Rust one
# (crate containerd-runc-shim, the only version on crates.io, 0.1.1; built once into
# target/tools). BENCH_SHIM_TASKS (20) sleeping busybox tasks run through `ctr` on a private
# containerd, first a shim per task, then all in one group (the annotation
# io.containerd.runc.v2.group); it prints the shims' summed PSS (/proc/PID/smaps_rollup).
# The Rust shim 0.1.1 hangs in Create when a task logs through a `binary://` URI, as aosd's
# tasks do (aos-logger), so aosd cannot use it as it is: this measures what a Rust shim costs.
set -euo pipefail
cd "$(dirname "$0")/../.."
hack/setup.sh
[ -x target/tools/bin/containerd-shim-runc-v2-rs ] ||
  cargo install --quiet --locked --root target/tools containerd-runc-shim --version 0.1.1
n=${BENCH_SHIM_TASKS:-20}
dir=$(mktemp -d)
ns=shims-bench
sock="$dir/containerd.sock"
cleanup() {
  for i in $(seq 1 "$n"); do ctr -a "$sock" -n $ns t kill -s 9 "t$i" >/dev/null 2>&1 || true; done
  sleep 1
  for i in $(seq 1 "$n"); do
    ctr -a "$sock" -n $ns t rm "t$i" >/dev/null 2>&1 || true
    ctr -a "$sock" -n $ns c rm "t$i" >/dev/null 2>&1 || true
  done
}
finish() {
  cleanup
  [ -n "${containerd:-}" ] && kill "$containerd" 2>/dev/null && wait "$containerd" 2>/dev/null
  pkill -9 -f "containerd-shim-runc-v2.* -address $sock" 2>/dev/null || true
  rm -rf "$dir"
}
trap finish EXIT
mkdir -p "$dir/rootfs/bin"
cp /bin/busybox "$dir/rootfs/bin/"
ln -s busybox "$dir/rootfs/bin/sleep"
printf 'version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n' > "$dir/config.toml"
PATH="$PWD/target/tools/bin:$PATH" containerd --root "$dir/root" --state "$dir/state" \
  --address "$sock" --config "$dir/config.toml" > "$dir/containerd.log" 2>&1 &
containerd=$!
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
# Summed PSS in MiB and count of the shims named $1 serving this containerd.
pss() {
  local kib=0 count=0 p v
  for p in $(pgrep -f "$1 .*-address $sock" || true); do
    v=$(awk '/^Pss:/{print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
    kib=$((kib + ${v:-0})); count=$((count + 1))
  done
  awk -v k="$kib" -v c="$count" 'BEGIN { printf "%5.1f MiB in %d shim(s)", k / 1024, c }'
}
printf '%-26s %-10s %s\n' runtime groups "PSS of the shims ($n tasks)"
for rt in io.containerd.runc.v2 io.containerd.runc.v2-rs; do
  bin=containerd-shim-runc-v2
  [ $rt = io.containerd.runc.v2-rs ] && bin=containerd-shim-runc-v2-rs
  for group in none one; do
    args=()
    [ $group = one ] && args=(--annotation io.containerd.runc.v2.group=g1)
    for i in $(seq 1 "$n"); do
      timeout 30 ctr -a "$sock" -n $ns run -d "${args[@]}" --runtime $rt --rootfs "$dir/rootfs" \
        "t$i" /bin/sleep 100000 >/dev/null
    done
    sleep 3
    printf '%-26s %-10s %s\n' $rt $group "$(pss $bin)"
    cleanup
  done
done
