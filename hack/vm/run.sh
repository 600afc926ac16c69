#!/bin/sh
# hack/vm/run.sh [OUT]: boots the VM that hack/vm/build.sh made, with the serial console on
# stdout; the VM powers off at the end of its init. TCG by default (the /dev/kvm of these
# machines does not run guests); AOSD_VM_KVM=1 asks for KVM. The start of the VM suite of
# e2e/vm: not yet part of hack/test.sh.
set -eu
cd "$(dirname "$0")/../.."
OUT=${1:-$PWD/target/vm}
accel=tcg
[ "${AOSD_VM_KVM:-0}" = 1 ] && accel=kvm
exec qemu-system-x86_64 -machine "q35,accel=$accel" -m 1024 -smp 2 -nographic -no-reboot \
	-drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
	-drive if=pflash,format=raw,file="$OUT/vars.fd" \
	-drive file="$OUT/disk.img",format=raw,if=virtio
