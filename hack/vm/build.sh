#!/bin/sh
# hack/vm/build.sh [OUT]: builds the device in a box of e2e/vm from Debian packages and the
# project's own files, without downloading images: a Debian kernel (taken with apt-get download,
# not installed), an initramfs of busybox with the modules it needs, a unified kernel image
# (kernel + initramfs + command line in one EFI binary, systemd's stub) at
# \EFI\BOOT\BOOTX64.EFI on the boot partitions boot_a and boot_b of a GPT disk, and a writable
# copy of the OVMF variables. Everything is cached under OUT (default target/vm) by content:
# a rerun rebuilds only what changed.
set -eu
cd "$(dirname "$0")/../.."
OUT=${1:-$PWD/target/vm}
mkdir -p "$OUT/cache"
log() { echo "hack/vm/build.sh: $*" >&2; }

# What the VM needs besides hack/setup.sh's packages, installed when missing (socat: the shell
# of a kept VM).
missing=""
for p in qemu-system-x86 ovmf systemd-boot-efi dosfstools mtools cpio fdisk busybox-static binutils socat; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO=sudo
	log "installing$missing"
	$SUDO apt-get update -qq
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# The kernel: the version linux-image-amd64 depends on, unsigned (the same binary as signed).
KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n 1)
[ -n "$KPKG" ] || { log "apt knows no linux-image-amd64"; exit 1; }
KDIR=$OUT/cache/$KPKG
if [ ! -f "$KDIR/done" ]; then
	log "fetching $KPKG-unsigned"
	rm -rf "$KDIR" && mkdir -p "$KDIR"
	(cd "$KDIR" && apt-get download -q "$KPKG-unsigned" >/dev/null 2>&1 && dpkg -x ./*.deb x && rm -f ./*.deb)
	KV=$(ls "$KDIR/x/lib/modules")
	busybox depmod -b "$KDIR/x" "$KV"
	echo "$KV" >"$KDIR/done"
fi
KV=$(cat "$KDIR/done")
MODS=$KDIR/x/lib/modules/$KV

# The initramfs: busybox, the modules (with what they depend on), /init and the boot side.
MODULES="virtio_pci virtio_blk virtio_console virtio_net efivarfs squashfs loop overlay ext4 vfat nls_cp437 nls_ascii crc32c_generic"
IRD=$OUT/initramfs
rm -rf "$IRD" && mkdir -p "$IRD/bin" "$IRD/lib/modules/$KV" "$IRD/proc" "$IRD/sys" "$IRD/dev" "$IRD/run" "$IRD/mnt" "$IRD/usr/share/aosd"
cp /bin/busybox "$IRD/bin/busybox"
for a in $(busybox --list); do [ -e "$IRD/bin/$a" ] || ln -s busybox "$IRD/bin/$a"; done
need=""
for m in $MODULES; do
	line=$(grep -E "/$m\.ko:" "$MODS/modules.dep" || true)
	[ -n "$line" ] || { log "no module $m"; exit 1; }
	need="$need ${line%%:*} ${line#*:}"
done
for f in $need; do
	mkdir -p "$IRD/lib/modules/$KV/$(dirname "$f")"
	cp "$MODS/$f" "$IRD/lib/modules/$KV/$f"
done
cp "$MODS/modules.dep" "$MODS/modules.alias" "$MODS/modules.builtin" "$IRD/lib/modules/$KV/" 2>/dev/null || true
# rsync applies rootfs updates (deploy/aos-rootfs); it comes with the libraries it links.
cp /usr/bin/rsync "$IRD/bin/rsync"
ldd /usr/bin/rsync | awk '/=> \// { print $3 } /^\t\/lib64/ { print $1 }' | while read -r lib; do
	mkdir -p "$IRD$(dirname "$lib")"
	cp -L "$lib" "$IRD$lib"
done
cp hack/vm/init "$IRD/init"
chmod 0755 "$IRD/init"
cp deploy/aos-rootfs "$IRD/usr/share/aosd/aos-rootfs"
echo "$MODULES" | tr ' ' '\n' >"$IRD/etc.modules"
(cd "$IRD" && find . | sort | cpio -o -H newc --quiet | gzip -n -1) >"$OUT/initrd.img.new"

# The unified kernel image, rebuilt only when its parts changed.
# loglevel=5: a soft lockup's stacks (of every CPU) reach the console, which a failed scenario
# prints.
CMDLINE="console=ttyS0 panic=-1 quiet loglevel=5 softlockup_all_cpu_backtrace=1"
sum=$(cat "$KDIR/x/boot/vmlinuz-$KV" "$OUT/initrd.img.new" /usr/lib/systemd/boot/efi/linuxx64.efi.stub | sha256sum | cut -c1-16)-$(echo "$CMDLINE" | sha256sum | cut -c1-8)
if [ "$(cat "$OUT/uki.sum" 2>/dev/null)" != "$sum" ]; then
	log "building the unified kernel image"
	printf '%s' "$CMDLINE" >"$OUT/cmdline"
	printf 'NAME="aosd VM"\nID=aosd-vm\n' >"$OUT/os-release"
	objcopy \
		--add-section .osrel="$OUT/os-release" --change-section-vma .osrel=0x20000 \
		--add-section .cmdline="$OUT/cmdline" --change-section-vma .cmdline=0x30000 \
		--add-section .linux="$KDIR/x/boot/vmlinuz-$KV" --change-section-vma .linux=0x2000000 \
		--add-section .initrd="$OUT/initrd.img.new" --change-section-vma .initrd=0x4000000 \
		/usr/lib/systemd/boot/efi/linuxx64.efi.stub "$OUT/uki.efi"
	echo "$sum" >"$OUT/uki.sum"
	rm -f "$OUT/disk.sum"
fi
rm -f "$OUT/initrd.img.new"

# The root: busybox, aosd and its tools with the libraries they link, the init, the config. The
# tree stays in OUT/rootfs: the rootfs scenarios make their update images from it.
PROFILE=${AOSD_VM_PROFILE:-debug}
# aos-logger as a device gets it: linked statically (hack/static-logger.sh).
cargo_profile=$PROFILE
[ "$PROFILE" = debug ] && cargo_profile=dev
LOGGER=$(hack/static-logger.sh "$cargo_profile")
BINS="target/$PROFILE/aosd target/$PROFILE/aosctl target/$PROFILE/containerd-shim-aos-v1 $LOGGER"
for b in $BINS; do [ -x "$b" ] || { log "$b is missing: cargo build first"; exit 1; }; done
rsum=$(cat $BINS hack/vm/build.sh hack/vm/rootfs-init hack/vm/aosd.toml deploy/containerd.toml /bin/busybox | sha256sum | cut -c1-16)
if [ "$(cat "$OUT/rootfs.sum" 2>/dev/null)" != "$rsum" ] || [ ! -d "$OUT/rootfs" ]; then
	log "building the root"
	R=$OUT/rootfs
	rm -rf "$R" && mkdir -p "$R/bin" "$R/sbin" "$R/usr/local/bin" "$R/etc/aos" "$R/etc/aosd" \
		"$R/proc" "$R/sys" "$R/dev" "$R/run" "$R/tmp" "$R/data" "$R/var/log" "$R/lib64"
	cp /bin/busybox "$R/bin/busybox"
	for a in $(busybox --list); do [ -e "$R/bin/$a" ] || ln -s busybox "$R/bin/$a"; done
	# What busybox lacks: blkid (partition GUIDs) and chattr (efivarfs' immutable flag).
	extra="/sbin/blkid /usr/bin/chattr /usr/bin/containerd /usr/bin/containerd-shim-runc-v2 /usr/sbin/runc /usr/bin/nsenter /usr/sbin/mkfs.ext4 /usr/sbin/e2fsck /usr/sbin/resize2fs /usr/sbin/mke2fs /usr/bin/tar2sqfs /usr/bin/socat"
	for b in $BINS; do
		cp "$b" "$R/usr/local/bin/"
		strip "$R/usr/local/bin/$(basename "$b")"
	done
	for x in $extra; do cp "$x" "$R/usr/local/bin/"; done
	for f in $BINS $extra; do
		# (a static binary has none: ldd says so and fails)
		{ ldd "$f" || true; } | awk '/=> \// { print $3 } /^\t\/lib64/ { print $1 }'
	done | sort -u | while read -r lib; do
		mkdir -p "$R$(dirname "$lib")"
		cp -L "$lib" "$R$lib"
	done
	cp hack/vm/rootfs-init "$R/sbin/init"
	chmod 0755 "$R/sbin/init"
	cp hack/vm/aosd.toml "$R/etc/aosd/aosd.toml"
	mkdir -p "$R/etc/containerd"
	cp deploy/containerd.toml "$R/etc/containerd/config.toml"
	echo "vm-1" >"$R/etc/aos/version"
	rm -f "$OUT/rootfs.img"
	truncate -s 768M "$OUT/rootfs.img"
	mke2fs -q -t ext4 -L rootfs -d "$R" "$OUT/rootfs.img"
	echo "$rsum" >"$OUT/rootfs.sum"
	rm -f "$OUT/disk.sum"
fi

# A boot partition: FAT with the UKI as the removable-media loader and the version file.
boot_fat() {
	rm -f "$2"
	mkfs.vfat -C -n AOSBOOT "$2" 65536 >/dev/null
	mmd -i "$2" ::/EFI ::/EFI/BOOT ::/etc ::/etc/aos
	mcopy -i "$2" "$OUT/uki.efi" ::/EFI/BOOT/BOOTX64.EFI
	printf '%s\n' "$1" >"$OUT/version"
	mcopy -i "$2" "$OUT/version" ::/etc/aos/version
}

# The disk: GPT with boot_a, boot_b, rootfs, data (aosd's store and blobs, the rootfs work
# directory, the host's inbox) and boot_recovery; a fresh copy of the OVMF variables.
# (The layout is in this script: its own sum is part of the disk's.)
dsum=$sum-$rsum-$(sha256sum <hack/vm/build.sh | cut -c1-8)
if [ "$(cat "$OUT/disk.sum" 2>/dev/null)" != "$dsum" ]; then
	log "building the disk"
	rm -f "$OUT/disk.img"
	boot_fat 1.0 "$OUT/boot_a.fat"
	boot_fat 0.9 "$OUT/boot_b.fat"
	boot_fat recovery-1 "$OUT/boot_recovery.fat"
	truncate -s 1600M "$OUT/disk.img"
	printf '%s\n' 'label: gpt' \
		'start=2048, size=131072, type=uefi, name=boot_a' \
		'start=133120, size=131072, type=uefi, name=boot_b' \
		'start=264192, size=1572864, name=rootfs' \
		'start=1837056, size=1185792, name=data' \
		'start=3022848, size=131072, type=uefi, name=boot_recovery' | sfdisk -q "$OUT/disk.img"
	dd if="$OUT/boot_a.fat" of="$OUT/disk.img" bs=512 seek=2048 conv=notrunc status=none
	dd if="$OUT/boot_b.fat" of="$OUT/disk.img" bs=512 seek=133120 conv=notrunc status=none
	dd if="$OUT/boot_recovery.fat" of="$OUT/disk.img" bs=512 seek=3022848 conv=notrunc status=none
	dd if="$OUT/rootfs.img" of="$OUT/disk.img" bs=512 seek=264192 conv=notrunc,sparse status=none
	rm -f "$OUT/data.img"
	truncate -s 579M "$OUT/data.img"
	mke2fs -q -t ext4 -L data "$OUT/data.img"
	dd if="$OUT/data.img" of="$OUT/disk.img" bs=512 seek=1837056 conv=notrunc,sparse status=none
	rm -f "$OUT"/boot_*.fat "$OUT/data.img" "$OUT/version"
	cp /usr/share/OVMF/OVMF_VARS_4M.fd "$OUT/vars.fd"
	echo "$dsum" >"$OUT/disk.sum"
fi
log "ready: $OUT/disk.img (kernel $KV)"
echo "$OUT"
