#!/usr/bin/env bash
# Builds aos-logger linked statically and not position-independent, and prints its path.
#   hack/static-logger.sh [PROFILE]   (dev, release or device; dev by default)
# One aos-logger runs per task, so what each copy cannot share counts a hundred times on a
# device: a dynamic PIE build dirties its own relocated pages and those of ld.so, libc and
# libgcc_s in every process (~158 KiB PSS each at 100 tasks); this build has no loader, no
# shared libraries and no relocations to apply (~84 KiB each; hack/bench/footprint.sh, the
# "device" rows). The flags go to the target only (`--target` keeps them off build scripts and
# proc macros), so the binary lands in target/<host>/<profile>/ beside, not over, cargo's
# usual one. glibc's libc.a comes with libc6-dev on every Debian architecture.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-dev}
host=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
  cargo build --quiet --profile "$profile" -p aos-logger --bins --target "$host" >&2
dir=$profile
[ "$profile" = dev ] && dir=debug
bin="target/$host/$dir/aos-logger"
# A dynamic result would pass every test and lose the saving: refuse it here.
if readelf -d "$bin" | grep -q NEEDED; then
  echo "hack/static-logger.sh: $bin links shared libraries" >&2
  exit 1
fi
echo "$PWD/$bin"
