#!/usr/bin/env bash
# Stops a local cluster started by up.sh and leaves no process behind.
#
#   e2e/cluster/down.sh [--name NAME] [--keep-logs]
#
# The pod runner goes first (it stops every pod), then the control plane; whatever is still
# alive after a grace period is killed, including any process group the runner recorded.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

CLUSTER_NAME=dev
keep_logs=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --name) CLUSTER_NAME=$2; shift 2 ;;
    --keep-logs) keep_logs=1; shift ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
dir=$(cluster_dir "$CLUSTER_NAME")
[[ -d $dir ]] || { log "no cluster named $CLUSTER_NAME"; exit 0; }

stop() { # name...: SIGTERM, wait up to 10 s, then SIGKILL
  local pids=()
  for name in "$@"; do
    pid=$(awk -v n="$name" '$1 == n {print $2}' "$dir/pids" 2>/dev/null || true)
    [[ -n $pid ]] && alive "$pid" && pids+=("$pid") && kill -TERM "$pid" 2>/dev/null || true
  done
  for _ in $(seq 50); do
    local any=0
    for pid in "${pids[@]}"; do alive "$pid" && any=1; done
    (( any )) || return 0
    sleep 0.2
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}
if [[ -f $dir/pids ]]; then
  stop podrunner
  stop kube-scheduler kube-controller-manager
  stop kube-apiserver
  stop etcd
fi
# Pod processes of a runner that was itself killed outright.
for f in "$dir"/runner/pgids/*; do
  [[ -e $f ]] || continue
  kill -KILL -- "-$(basename "$f")" 2>/dev/null || true
  rm -f "$f"
done
rm -f "$dir/pids"
network=$(cat "$dir/pod-network" 2>/dev/null || true)
[[ -n $network ]] && rm -f "$POD_NETWORKS_DIR/${network#127.}"

if (( keep_logs )); then
  rm -rf "$dir/etcd" "$dir/pki" "$dir/kubeconfig" "$dir"/runner/pods/*/volumes
  log "stopped; logs kept in $dir/logs and $dir/runner/pods"
else
  rm -rf "$dir"
  log "stopped and removed"
fi
