#!/usr/bin/env bash
# Builds the Debian package of aosd from the binaries cargo built: aosd, aosctl, aosd's shim
# (containerd-shim-aos-v1) and aos-logger in /usr/bin, the systemd unit, the default config (/etc/aosd/aosd.toml, a conffile), the
# containerd config aosd expects, aosctl's bash completion and the README.
#   hack/package.sh [--release] [OUT_DIR]   -> prints the path of the .deb
# --release builds and packages the `device` profile (Cargo.toml: the release build linked as
# one unit and stripped, smaller on flash and in RAM) with aos-logger linked statically
# (hack/device-bins.sh; one logger runs per task); without it, what target/debug holds.
# (BINS=DIR takes the binaries from DIR instead of target/debug or hack/device-bins.sh's;
# COMPRESS=none or gzip instead of xz.)
# Install it with `apt install ./aosd_<version>_<arch>.deb` (or dpkg -i); it needs containerd,
# runc, squashfs-tools-ng, nftables and iproute2, and creates the group `aosd` (api.group).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=debug
if [ "${1:-}" = --release ]; then profile=device; shift; fi
out="$(realpath -m "${1:-target}")"
bins="${BINS:-target/debug}"
if [ "$profile" = device ] && [ -z "${BINS:-}" ]; then bins="$(hack/device-bins.sh)"; fi
for b in aosd aosctl containerd-shim-aos-v1 aos-logger; do
  [ -x "$bins/$b" ] || { echo "hack/package.sh: $bins/$b is missing: cargo build --bins first" >&2; exit 1; }
done
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
arch="$(dpkg --print-architecture)"
root="$(mktemp -d)"
chmod 0755 "$root"
trap 'rm -rf "$root"' EXIT
install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/aosd" \
  "$root/usr/share/aosd" "$root/usr/share/doc/aosd" "$root/usr/share/bash-completion/completions"
for b in aosd aosctl containerd-shim-aos-v1 aos-logger; do install -m 0755 "$bins/$b" "$root/usr/bin/$b"; done
install -m 0644 deploy/aosd.service "$root/lib/systemd/system/aosd.service"
install -m 0644 deploy/aosd.toml "$root/etc/aosd/aosd.toml"
install -m 0644 deploy/containerd.toml "$root/usr/share/aosd/containerd.toml"
# The boot side of rootfs updates, for the initramfs (see docs/os-updates.md).
install -m 0755 deploy/aos-rootfs "$root/usr/share/aosd/aos-rootfs"
install -m 0644 README.md "$root/usr/share/doc/aosd/README.md"
"$bins/aosctl" completion bash > "$root/usr/share/bash-completion/completions/aosctl"
cat > "$root/DEBIAN/control" <<CONTROL
Package: aosd
Version: $version
Architecture: $arch
Maintainer: aosd developers <aosd@localhost>
Section: admin
Priority: optional
Depends: containerd, runc, squashfs-tools-ng, nftables, iproute2
Description: node agent for edge devices, and its command line aosctl
 aosd converges a node on a desired state (from a cloud or aosctl apply) through
 Kubernetes-style controllers: containers through containerd, networks, and OS updates.
CONTROL
echo /etc/aosd/aosd.toml > "$root/DEBIAN/conffiles"
cat > "$root/DEBIAN/postinst" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  getent group aosd >/dev/null || addgroup --system aosd >/dev/null
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable aosd.service >/dev/null 2>&1 || true
    systemctl restart aosd.service || true
  fi
fi
SCRIPT
cat > "$root/DEBIAN/prerm" <<'SCRIPT'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
  systemctl stop aosd.service || true
  systemctl disable aosd.service >/dev/null 2>&1 || true
fi
SCRIPT
cat > "$root/DEBIAN/postrm" <<'SCRIPT'
#!/bin/sh
set -e
# The data dir (/var/lib/aosd) holds the node's store and instance data: purge keeps it, as
# apt keeps a database's files; remove it by hand to start over.
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
SCRIPT
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
mkdir -p "$out"
deb="$out/aosd_${version}_${arch}.deb"
dpkg-deb --root-owner-group "-Z${COMPRESS:-xz}" --build "$root" "$deb" >/dev/null
echo "$deb"
