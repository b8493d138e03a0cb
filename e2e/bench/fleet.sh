#!/usr/bin/env bash
# Fleet start-up at scale (COUNT, default 1000 servers) on a fresh 10-node local cluster:
# time to all Ready against the raw pod-creation rate of the same cluster, and the operator's
# peak memory. See e2e/suite/src/bin/bench-fleet.rs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../cluster/common.sh"
cd "$FLOTILLA_ROOT"
count=${COUNT:-1000}
name=benchfleet-$$

e2e/cluster/build-binaries.sh > /dev/null
cargo build --quiet -p flotilla-podrunner -p flotilla-testpod -p flotilla-operator -p flotilla-e2e --bins
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r); $(date -u +%Y-%m-%d)"
trap 'e2e/cluster/down.sh --name "$name" 2> /dev/null' EXIT
RUST_LOG=warn FLOTILLA_SKIP_BUILD=1 e2e/cluster/up.sh --name "$name" --nodes 10 > /dev/null
FLOTILLA_KUBECONFIG=$(cluster_dir "$name")/admin.kubeconfig "$CARGO_TARGET_DIR/debug/bench-fleet" "$count"
