#!/usr/bin/env bash
# The main job on a fresh machine: installs what is missing, builds, starts aosd with the
# embedded store (isolated under .demo/), applies examples/, and shows the node and the
# resources, a watch and a delete. aosd keeps running afterwards; `hack/demo.sh stop` stops it.
# `hack/demo.sh cloud` drives the node from the test cloud instead (a local registry, the cloud
# under .demo/cloud/: edit its desired.json and the node follows; received.jsonl is what the
# cloud heard).
set -euo pipefail
cd "$(dirname "$0")/.."
# AOSD_DEMO_DIR and AOSD_DEMO_NAMESPACE move the demo elsewhere (README's test runs its own).
DEMO="${AOSD_DEMO_DIR:-$PWD/.demo}"
NAMESPACE="${AOSD_DEMO_NAMESPACE:-aos-demo}"
SOCK="$DEMO/aosd.sock"
AOSD="$PWD/target/debug/aosd"
AOSCTL="$PWD/target/debug/aosctl"

stop() {
  if [ -f "$DEMO/aosd.pid" ] && kill -0 "$(cat "$DEMO/aosd.pid")" 2>/dev/null; then
    # Instances and networks keep running across restarts of aosd: the demo's (and the test
    # cloud's) go first, so that no namespace, link or rule of it outlives it.
    for kind in instance network; do
      for sel in app.kubernetes.io/part-of=aos-demo aos.edge/managed-by=cloud; do
        "$AOSCTL" --socket "$SOCK" delete "$kind" -l "$sel" --wait --timeout=60s >/dev/null 2>&1 || true
      done
    done
    kill -TERM "$(cat "$DEMO/aosd.pid")"
    for _ in $(seq 50); do kill -0 "$(cat "$DEMO/aosd.pid")" 2>/dev/null || break; sleep 0.1; done
    echo "aosd stopped"
  fi
  rm -f "$DEMO/aosd.pid"
  if [ -f "$DEMO/cloud.pid" ]; then
    kill "$(cat "$DEMO/cloud.pid")" 2>/dev/null || true
    rm -f "$DEMO/cloud.pid"
  fi
  [ -d "$DEMO/registry" ] && hack/registry.sh stop "$DEMO/registry"
  hack/containerd.sh stop "$DEMO/containerd"
  # Layers stay mounted across restarts of aosd; the demo's go with it.
  local m
  for m in $(awk -v d="$DEMO/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
    umount -l "$m" || true
  done
}

MODE="${1:-}"
if [ "$MODE" = stop ]; then stop; exit 0; fi

hack/setup.sh
echo "== building"
cargo build --workspace --bins --quiet

stop
rm -rf "$DEMO/data"
mkdir -p "$DEMO"
echo "== starting a private containerd (state in $DEMO/containerd)"
CONTAINERD_SOCK="$(hack/containerd.sh start "$DEMO/containerd")"
cat > "$DEMO/aosd.toml" <<TOML
version = 1
[api]
group = ""
[node]
id = "demo"
[runtimes.boot]
# A machine in a box: simulated firmware and A/B slot files under the data directory.
enabled = true
simulate = true
[runtimes.boot.health]
probation_secs = 3
interval_secs = 1
[runtimes.container]
containerd_socket = "$CONTAINERD_SOCK"
namespace = "$NAMESPACE"
stop_grace = "3s"
usage_interval = "5s"
TOML
if [ "$MODE" = cloud ]; then
  echo "== starting a registry and the test cloud (under $DEMO/cloud)"
  REGISTRY="$(hack/registry.sh start "$DEMO/registry" 5055)"
  rm -rf "$DEMO/cloud"
  target/debug/test-cloud "$DEMO/cloud" >"$DEMO/cloud.log" 2>&1 &
  echo $! > "$DEMO/cloud.pid"
  for _ in $(seq 100); do [ -f "$DEMO/cloud/cloud.toml" ] && break; sleep 0.1; done
  { echo "[images]"; echo "insecure_registries = [\"$REGISTRY\"]"
    cat "$DEMO/cloud/cloud.toml"; echo "registry = \"$REGISTRY/aos\""; } >> "$DEMO/aosd.toml"
fi

echo "== starting aosd (data in $DEMO/data, socket $SOCK, log $DEMO/aosd.log)"
"$AOSD" --config "$DEMO/aosd.toml" --data-dir "$DEMO/data" --socket "$SOCK" >"$DEMO/aosd.log" 2>&1 &
echo $! > "$DEMO/aosd.pid"
export AOSD_SOCKET="$SOCK"
for _ in $(seq 100); do "$AOSCTL" health >/dev/null 2>&1 && break; sleep 0.05; done
"$AOSCTL" health
"$AOSCTL" wait "node/$("$AOSCTL" get nodes -o name | head -1 | cut -d/ -f2)" --for=condition=Ready --timeout=10s >/dev/null

run() { echo; echo "\$ aosctl $*"; "$AOSCTL" "$@"; }

if [ "$MODE" = cloud ]; then
  echo; echo "== pushing the example service to the registry as the cloud's item"
  "$AOSCTL" pack examples/services/state-writer -o "$DEMO/state-writer.tar"
  "$AOSCTL" push "$DEMO/state-writer.tar" "$REGISTRY/aos/state-writer:1.0.0" --insecure "$REGISTRY"
  desired() {
    cat > "$DEMO/cloud/desired.json" <<JSON
{"messageType": "desiredStatus",
 "items": [{"item": {"id": "state-writer", "type": "service"}, "version": "1.0.0"}],
 "instances": [{"item": {"id": "state-writer"}, "subject": {"id": "demo"}, "numInstances": $1}]}
JSON
  }
  echo; echo "== the cloud wants 2 instances"
  desired 2
  run wait instance/state-writer-demo-1 --for=create --timeout=30s
  run wait instance/state-writer-demo-0 --for=condition=Ready --timeout=60s
  run wait instance/state-writer-demo-1 --for=condition=Ready --timeout=60s
  run get items,instances
  sleep 1
  echo; echo "== the last unit status the cloud heard"
  grep '"unitStatus"' "$DEMO/cloud/received.jsonl" | tail -n 1
  echo; echo "== the cloud wants 1"
  desired 1
  run wait instance/state-writer-demo-1 --for=delete --timeout=60s
  run get instances
  echo
  echo "aosd and the test cloud are still running. Edit $DEMO/cloud/desired.json and watch:"
  echo "  export AOSD_SOCKET=$SOCK; target/debug/aosctl get instances -w"
  echo "  tail -f $DEMO/cloud/received.jsonl"
  echo "Stop them with: hack/demo.sh stop"
  exit 0
fi

run get nodes -o wide
run apply -f examples/
run get all

echo; echo "\$ aosctl get instances -w   (in the background, while we change things)"
"$AOSCTL" get instances -w & WATCH=$!
sleep 0.5
run delete instance state-writer-demo-1 --wait
run apply -f examples/
sleep 0.5
kill "$WATCH" 2>/dev/null || true
wait "$WATCH" 2>/dev/null || true

run describe network demo

echo; echo "== packing the example services and installing them (progress bars until Ready)"
for svc in state-writer http-hello; do
  "$AOSCTL" pack "examples/services/$svc" -o "$DEMO/$svc.tar"
  cat > "$DEMO/$svc-item.yaml" <<YAML
apiVersion: aos.edge/v1alpha1
kind: Item
metadata:
  name: $svc-1.0.0
spec:
  itemId: $svc
  version: "1.0.0"
  source:
    archive: $DEMO/$svc.tar
YAML
done
run apply --wait -f "$DEMO/state-writer-item.yaml" -f "$DEMO/http-hello-item.yaml"
run get items,layers

echo; echo "== the instances of examples/hello.yaml now run as containerd tasks"
run wait instance/state-writer-demo-0 --for=condition=Ready --timeout=30s
run wait instance/state-writer-demo-1 --for=condition=Ready --timeout=30s
run get instances -o wide
run logs state-writer-demo-0
sleep 5
run top

echo; echo "== an A/B boot update on the simulated machine: written to slot b, booted once, kept after probation"
"$AOSCTL" pack --boot examples/os/boot-2.0.img -o "$DEMO/boot-2.0.tar"
cat > "$DEMO/boot-2.0.yaml" <<YAML
apiVersion: aos.edge/v1alpha1
kind: Item
metadata:
  name: os-2.0
spec:
  itemId: os
  version: "2.0"
  type: component
  source:
    archive: $DEMO/boot-2.0.tar
---
apiVersion: aos.edge/v1alpha1
kind: BootSlot
metadata:
  name: demo
spec:
  item:
    itemId: os
    version: "2.0"
YAML
run apply -f "$DEMO/boot-2.0.yaml"
run wait bootslot/demo --for=condition=Ready --timeout=60s
run get bootslots -o wide

echo
echo "aosd is still running (pid $(cat "$DEMO/aosd.pid")). Try:"
echo "  export AOSD_SOCKET=$SOCK"
echo "  target/debug/aosctl get all"
echo "Stop it with: hack/demo.sh stop"
