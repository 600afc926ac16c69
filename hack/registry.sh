#!/usr/bin/env bash
# A local OCI registry (Debian's docker-registry) for `aosctl push` and registry Items, plain
# HTTP on loopback, storage under DIR (default .registry/ in the checkout):
#   hack/registry.sh start [DIR] [PORT]   -> prints host:port once it answers (PORT default 5000)
#   hack/registry.sh stop [DIR]
# aosd reaches it with `[images] insecure_registries = ["127.0.0.1:5000"]`, aosctl with
# `--insecure 127.0.0.1:5000`.
set -euo pipefail
cd "$(dirname "$0")/.."
cmd="${1:?start|stop}"
dir="$(realpath -m "${2:-.registry}")"
port="${3:-5000}"

case "$cmd" in
start)
  command -v docker-registry >/dev/null || hack/setup.sh >&2
  mkdir -p "$dir"
  if [ -f "$dir/registry.pid" ] && kill -0 "$(cat "$dir/registry.pid")" 2>/dev/null; then
    cat "$dir/address"; exit 0
  fi
  cat > "$dir/config.yml" <<YAML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
YAML
  docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
  echo $! > "$dir/registry.pid"
  echo "127.0.0.1:$port" > "$dir/address"
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    kill -0 "$(cat "$dir/registry.pid")" 2>/dev/null || { cat "$dir/registry.log" >&2; exit 1; }
    sleep 0.1
  done
  cat "$dir/address"
  ;;
stop)
  if [ -f "$dir/registry.pid" ]; then
    kill "$(cat "$dir/registry.pid")" 2>/dev/null || true
    rm -f "$dir/registry.pid"
  fi
  ;;
*) echo "usage: $0 start|stop [DIR] [PORT]" >&2; exit 2 ;;
esac
