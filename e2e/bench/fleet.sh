#!/usr/bin/env bash
# Fleet start-up at scale (COUNT, default 1000 servers) on a fresh 10-node local cluster:
# time to all Ready against the raw pod-creation rate of the same cluster, and the operator's
# peak memory. See e2e/suite/src/bin/bench-fleet.rs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../cluster/common.sh"
cd "$FLOTILLA_ROOT"
count=${COUNT:-1000}
# PROFILE=release measures release builds of the runner, the operator and the test binary.
export FLOTILLA_PROFILE=${PROFILE:-debug}
release_flag=()
[[ $FLOTILLA_PROFILE == release ]] && release_flag=(--release)
name=benchfleet-$$

e2e/cluster/build-binaries.sh > /dev/null
cargo build --quiet "${release_flag[@]}" -p flotilla-podrunner -p flotilla-testpod -p flotilla-operator -p flotilla-e2e --bins
export FLOTILLA_OPERATOR_BIN=$CARGO_TARGET_DIR/$FLOTILLA_PROFILE/flotilla-operator
echo "builds: $FLOTILLA_PROFILE"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r); $(date -u +%Y-%m-%d)"
trap 'e2e/cluster/down.sh --name "$name" 2> /dev/null' EXIT
RUST_LOG=warn FLOTILLA_SKIP_BUILD=1 e2e/cluster/up.sh --name "$name" --nodes 10 > /dev/null
FLOTILLA_KUBECONFIG=$(cluster_dir "$name")/admin.kubeconfig "$CARGO_TARGET_DIR/$FLOTILLA_PROFILE/bench-fleet" "$count"
