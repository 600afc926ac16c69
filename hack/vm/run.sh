#!/bin/sh
# hack/vm/run.sh [OUT]: boots a copy of the device hack/vm/build.sh made (its disk and OVMF
# variables copied to a temp dir, removed at the end: the built image stays as the VM suite
# needs it), with the serial console on this terminal (Ctrl-A X quits). TCG by default (the
# /dev/kvm of these machines does not run guests); AOSD_VM_KVM=1 asks for KVM. The VM suite
# (e2e/vm) boots its own copies of the same image.
set -eu
cd "$(dirname "$0")/../.."
OUT=${1:-$PWD/target/vm}
accel="tcg,thread=${AOSD_VM_TCG_THREAD:-single}"
[ "${AOSD_VM_KVM:-0}" = 1 ] && accel=kvm
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cp --sparse=always "$OUT/disk.img" "$OUT/vars.fd" "$TMP/"
qemu-system-x86_64 -machine q35 -accel "$accel" -m 1024 -smp 2 -nographic -no-user-config \
	-drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
	-drive if=pflash,format=raw,file="$TMP/vars.fd" \
	-drive file="$TMP/disk.img",format=raw,if=virtio
