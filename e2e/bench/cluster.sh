#!/usr/bin/env bash
# Benchmarks of the local cluster, printed as they are measured:
#   - start-up time of a cluster with its binaries already built (up.sh until nodes are Ready
#     and the default ServiceAccount exists), over several runs;
#   - pod start latency (create -> Running), one at a time and in a burst, against the floor of
#     starting the same binary directly.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../cluster/common.sh"
cd "$FLOTILLA_ROOT"
runs=${RUNS:-3}
pods=${PODS:-20}

e2e/cluster/build-binaries.sh > /dev/null
cargo build --quiet -p flotilla-podrunner -p flotilla-testpod -p flotilla-e2e --bins
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r); $(date -u +%Y-%m-%d)"

times=()
for i in $(seq "$runs"); do
  name=bench-$$-$i
  start=$(date +%s.%N)
  FLOTILLA_SKIP_BUILD=1 e2e/cluster/up.sh --name "$name" > /dev/null 2>&1
  times+=("$(python3 -c "print(round($(date +%s.%N) - $start, 2))")")
  if (( i < runs )); then e2e/cluster/down.sh --name "$name" 2> /dev/null; fi
done
echo "cluster start-up (3 nodes, binaries cached), ${runs} runs: ${times[*]} s"

dir=$(cluster_dir "bench-$$-$runs")
trap 'e2e/cluster/down.sh --name "bench-$$-$runs" 2> /dev/null' EXIT
FLOTILLA_KUBECONFIG=$dir/admin.kubeconfig "$CARGO_TARGET_DIR/debug/bench-pod-start" "$pods" \
  "$CARGO_TARGET_DIR/debug/flotilla-testpod"
