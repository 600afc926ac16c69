#!/usr/bin/env bash
# Installs what building and testing aosd needs and is missing on this machine (Debian).
# Idempotent: packages already installed are not touched. Run as root (or with sudo available).
set -euo pipefail

PACKAGES=(
  protobuf-compiler   # protoc, for the gRPC API (tonic-prost-build) and etcd-client
  etcd-server         # the etcd backend of the store: its tests start a 3-member cluster on loopback
  etcd-client         # etcdctl, for looking at what aosd keeps in etcd
  libprotobuf-dev     # google/protobuf/*.proto, which etcd-client's protos import
  cmake               # builds zlib-ng (fast gunzip of layers)

  squashfs-tools-ng   # tar2sqfs: layers become squashfs images
  squashfs-tools      # unsquashfs, for inspecting layer images
  util-linux          # mount/umount with loop devices
  e2fsprogs           # mkfs.ext4, resize2fs: the volumes that bound an instance's state and storage
  docker-registry     # a real OCI registry for the tests and benchmarks
  skopeo              # pushes test images to that registry
  umoci               # the reference unpacker the tests compare against
  attr                # getfattr, used to compare trees
  curl                # pushes extra blobs to the test registry
  containerd          # the container runtime (tests start a private one)
  runc
  busybox-static      # a tiny rootfs for container tests
  python3             # the system-call probes of the isolation tests run inside instances
  nftables            # nft: the NAT and firewall rules of instance networks
  iproute2            # ip: the tests list links and namespaces with it
  netavark            # the peer of hack/bench/net.sh
  iptables            # netavark programs its NAT through it (nf_tables backend)
  fdisk               # sfdisk: GPT disks on loop devices for the boot slot tests
  efibootmgr          # efibootdump: an independent reader of the boot entries aosd writes
  rsync               # the boot-side rootfs script applies updates with it (deploy/aos-rootfs)
)



missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "hack/setup.sh: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# grpc-python: a client of another language for the API test (its default authority on a Unix
# socket is the socket's path, which aosd must accept).
if ! python3 -c 'import grpc' 2>/dev/null; then
  echo "hack/setup.sh: installing grpcio (python)"
  python3 -m pip install --quiet --disable-pip-version-check grpcio >/dev/null 2>&1 \
    || python3 -m pip install --quiet --break-system-packages grpcio
fi

command -v cargo >/dev/null || { echo "hack/setup.sh: cargo is required (rustup)"; exit 1; }
