#!/usr/bin/env bash
# Economy benchmark: the ledger's transfers and a hot sink on FerretDB (benches/ledger.rs), then
# market purchases, auction bids and market search over 100,000 listings through the HTTP API
# (benches/market.rs), each against the store's own unique-insert ceiling measured in the same run.
#
#   services/economy/bench.sh        (./x bench economy)
#
#   BENCH_SECONDS (20)  each phase's length
#   BENCH_ACCOUNTS (10000)  player accounts the transfers move between
#   BENCH_LISTINGS (100000)  listings indexed for the search phase
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
echo "$(nproc) cores, $(date -u +%Y-%m-%d); FerretDB 1.24 (SQLite) on the same machine"
cargo bench --quiet -p flotilla-economy --bench ledger
cargo bench --quiet -p flotilla-economy --bench market
