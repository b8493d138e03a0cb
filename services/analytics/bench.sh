#!/usr/bin/env bash
# Analytics benchmark (benches/collector.rs): the log's own append ceiling, the collector pinned to
# one core against it, the pipeline's drain rate and freshness, and a KPI report with D0-D30
# retention over ten million events, then exact counts over a million events resent through three
# SIGKILLs.
#
#   services/analytics/bench.sh        (./x bench analytics)
#
#   BENCH_SECONDS (20)          each load phase's length
#   BENCH_CLIENTS (16)          concurrent clients of the collector and the ceiling
#   BENCH_KPI_EVENTS (10000000) events in the store the KPI report reads
#   BENCH_EXACT_EVENTS (1000000) events for the exact-count run with three SIGKILLs (0 skips it)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${FLOTILLA_CACHE:-$HOME/.cache/flotilla}/target}
work=$(mktemp -d)
cleanup() {
  e2e/storage/down.sh --dir "$work/storage" > /dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

e2e/storage/build.sh > /dev/null
e2e/storage/up.sh --dir "$work/storage" > /dev/null
set -a; source "$work/storage/env"; set +a
echo "$(nproc) cores, $(date -u +%Y-%m-%d); Redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') on the same machine"
cargo bench --quiet -p flotilla-analytics --bench collector
