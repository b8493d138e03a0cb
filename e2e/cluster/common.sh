# Shared settings of the cluster scripts; sourced, not run.
# Everything built or generated lives outside the clone, under FLOTILLA_CACHE.
FLOTILLA_CACHE=${FLOTILLA_CACHE:-$HOME/.cache/flotilla}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$FLOTILLA_CACHE/target}
FLOTILLA_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CLUSTERS_DIR=$FLOTILLA_CACHE/clusters
POD_NETWORKS_DIR=$FLOTILLA_CACHE/pod-networks

cluster_dir() { echo "$CLUSTERS_DIR/$1"; }

log() { printf '%s [cluster %s] %s\n' "$(date +%H:%M:%S)" "${CLUSTER_NAME:-?}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Is the process with this pid alive and not a zombie?
alive() { [[ -d /proc/$1 ]] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }
