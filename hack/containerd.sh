#!/usr/bin/env bash
# A private containerd for the demo (or by hand): its own root, state and socket under DIR, the
# CRI plugin off, so that nothing of the host's containerd (if any) is touched.
#   hack/containerd.sh start DIR   -> prints the socket path once it answers
#   hack/containerd.sh stop DIR    -> stops it, its shims and tasks, and unmounts what it mounted
set -euo pipefail
cmd="${1:?start|stop}"
dir="$(realpath -m "${2:?DIR}")"
sock="$dir/containerd.sock"

case "$cmd" in
start)
  mkdir -p "$dir"
  if [ -f "$dir/containerd.pid" ] && kill -0 "$(cat "$dir/containerd.pid")" 2>/dev/null; then
    echo "$sock"; exit 0
  fi
  cp "$(dirname "$0")/../deploy/containerd.toml" "$dir/config.toml"
  containerd --root "$dir/root" --state "$dir/state" --address "$sock" --config "$dir/config.toml" \
    >"$dir/containerd.log" 2>&1 &
  echo $! > "$dir/containerd.pid"
  for _ in $(seq 200); do [ -S "$sock" ] && ctr -a "$sock" version >/dev/null 2>&1 && break; sleep 0.05; done
  ctr -a "$sock" version >/dev/null
  echo "$sock"
  ;;
stop)
  if [ -S "$sock" ]; then
    for ns in $(ctr -a "$sock" namespaces ls -q 2>/dev/null); do
      for t in $(ctr -a "$sock" -n "$ns" tasks ls -q 2>/dev/null); do
        ctr -a "$sock" -n "$ns" tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true
      done
      sleep 0.2
      for t in $(ctr -a "$sock" -n "$ns" tasks ls -q 2>/dev/null); do
        ctr -a "$sock" -n "$ns" tasks delete -f "$t" >/dev/null 2>&1 || true
      done
      for c in $(ctr -a "$sock" -n "$ns" containers ls -q 2>/dev/null); do
        ctr -a "$sock" -n "$ns" containers delete "$c" >/dev/null 2>&1 || true
      done
      # runc keeps per-namespace state here, shared by every containerd of the host; aosd's
      # cgroup parent is named after the namespace.
      rmdir "/run/containerd/runc/$ns" 2>/dev/null || true
      rmdir "/sys/fs/cgroup/$ns" /sys/fs/cgroup/*/"$ns" 2>/dev/null || true
    done
  fi
  if [ -f "$dir/containerd.pid" ]; then
    kill "$(cat "$dir/containerd.pid")" 2>/dev/null || true
    rm -f "$dir/containerd.pid"
  fi
  pkill -9 -f "containerd-shim.*-address $sock" 2>/dev/null || true
  for m in $(awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
    umount -l "$m" || true
  done
  ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
