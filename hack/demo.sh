#!/usr/bin/env bash
# The main job on a fresh machine: installs what is missing, builds, starts aosd with the
# embedded store (isolated under .demo/), applies examples/, and shows the node and the
# resources, a watch and a delete. aosd keeps running afterwards; `hack/demo.sh stop` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO="$PWD/.demo"
SOCK="$DEMO/aosd.sock"
AOSD="$PWD/target/debug/aosd"
AOSCTL="$PWD/target/debug/aosctl"

stop() {
  if [ -f "$DEMO/aosd.pid" ] && kill -0 "$(cat "$DEMO/aosd.pid")" 2>/dev/null; then
    kill -TERM "$(cat "$DEMO/aosd.pid")"
    for _ in $(seq 50); do kill -0 "$(cat "$DEMO/aosd.pid")" 2>/dev/null || break; sleep 0.1; done
    echo "aosd stopped"
  fi
  rm -f "$DEMO/aosd.pid"
}

if [ "${1:-}" = stop ]; then stop; exit 0; fi

hack/setup.sh
echo "== building"
cargo build --workspace --bins --quiet

stop
mkdir -p "$DEMO"
cat > "$DEMO/aosd.toml" <<TOML
version = 1
[api]
group = ""
[runtimes.boot]
enabled = true
[runtimes.rootfs]
enabled = true
TOML

echo "== starting aosd (data in $DEMO/data, socket $SOCK, log $DEMO/aosd.log)"
"$AOSD" --config "$DEMO/aosd.toml" --data-dir "$DEMO/data" --socket "$SOCK" >"$DEMO/aosd.log" 2>&1 &
echo $! > "$DEMO/aosd.pid"
export AOSD_SOCKET="$SOCK"
for _ in $(seq 100); do "$AOSCTL" health >/dev/null 2>&1 && break; sleep 0.05; done
"$AOSCTL" health
"$AOSCTL" wait "node/$("$AOSCTL" get nodes -o name | head -1 | cut -d/ -f2)" --for=condition=Ready --timeout=10s >/dev/null

run() { echo; echo "\$ aosctl $*"; "$AOSCTL" "$@"; }

run get nodes -o wide
run apply -f examples/
run get all

echo; echo "\$ aosctl get instances -w   (in the background, while we change things)"
"$AOSCTL" get instances -w & WATCH=$!
sleep 0.5
run delete instance hello-demo-1
sleep 0.5
run apply -f examples/
sleep 0.5
kill "$WATCH" 2>/dev/null || true
wait "$WATCH" 2>/dev/null || true

run describe network demo

echo
echo "aosd is still running (pid $(cat "$DEMO/aosd.pid")). Try:"
echo "  export AOSD_SOCKET=$SOCK"
echo "  target/debug/aosctl get all"
echo "Stop it with: hack/demo.sh stop"
