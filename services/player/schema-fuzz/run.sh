#!/usr/bin/env bash
# Schema-driven fuzzing of the player service: schemathesis (from PyPI, into a venv in the cache)
# reads /v1/openapi.json and sends generated requests, valid and invalid, to a running service.
# Every schemathesis check is on: it fails on a 5xx, a status the document does not list, a body
# that breaks its schema, a request the document calls valid that is refused with 400, one it calls
# invalid that is accepted, a call without its credentials that is served, and the rest.
#
#   services/player/schema-fuzz/run.sh      (part of ./x test)
#
# Needs the storage servers' addresses in the environment (e2e/storage/up.sh's env file).
#   FUZZ_EXAMPLES (25)  generated requests per operation and phase
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
here=$PWD/services/player/schema-fuzz
cache=${FLOTILLA_CACHE:-$HOME/.cache/flotilla}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}
: "${FLOTILLA_MONGO_URL:?start the storage servers (e2e/storage/up.sh) and load their env file}"
version=4.32.5
venv=$cache/schemathesis-$version
if [[ ! -x $venv/bin/st ]]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi

cargo build --quiet -p flotilla-player
work=$(mktemp -d)
service=
cleanup() {
  [[ -n $service ]] && kill "$service" 2> /dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
api=127.0.0.1:$(free_port) ops=127.0.0.1:$(free_port)
run=fuzz$(date +%s%N)
export FUZZ_SERVICE_KEY=fuzz-service-key-$RANDOM$RANDOM$RANDOM
RUST_LOG=error "$CARGO_TARGET_DIR/debug/flotilla-player" serve \
  --addr "$api" --metrics-addr "$ops" --migrate true --database "$run" --namespace "$run" \
  --token-key "$("$CARGO_TARGET_DIR/debug/flotilla-player" generate-token-key)" \
  --service-key "$FUZZ_SERVICE_KEY" --login-limit-account 1000000 --login-limit-address 1000000 \
  2> "$work/service.log" &
service=$!
for _ in $(seq 100); do curl -sf "http://$ops/readyz" > /dev/null && break; sleep 0.2; done
curl -sf "http://$ops/readyz" > /dev/null || { cat "$work/service.log" >&2; echo "the player service did not start" >&2; exit 1; }
FUZZ_PLAYER_TOKEN=$(curl -sf -X POST "http://$api/v1/auth/device" -H 'content-type: application/json' \
  -d "{\"id\": \"schema-fuzz-$run\"}" | python3 -c 'import json, sys; print(json.load(sys.stdin)["accessToken"])')
export FUZZ_PLAYER_TOKEN

# Run from the scratch directory, where schemathesis leaves its caches, not in the clone. One
# worker: with two, CPython 3.11 now and then fails compiling a pattern ("AST constructor
# recursion depth mismatch") in schemathesis' own code.
fuzz() {
  (cd "$work" && PYTHONPATH=$here SCHEMATHESIS_HOOKS=hooks "$venv/bin/st" --no-color \
    --config-file "$here/schemathesis.toml" run "http://$api/v1/openapi.json" \
    --phases examples,coverage,fuzzing --max-examples "${FUZZ_EXAMPLES:-25}" --workers 1 \
    --request-timeout 20 --seed "${FUZZ_SEED:-$RANDOM}" "$@")
}
# Left out: the WebSocket upgrade (not a request/answer exchange; tests/realtime.rs covers it), and
# the two calls that end the fuzzing player's own session (sign-out, account deletion), after which
# every other call would only be refused. Bans come last, on their own: the fuzzer reuses ids it
# has seen, its own player's among them.
status=0
fuzz --exclude-path /v1/realtime --exclude-name 'POST /v1/auth/logout' --exclude-name 'DELETE /v1/players/me' \
  --exclude-path-regex '^/v1/admin/' || status=$?
fuzz --include-path-regex '^/v1/admin/' || status=$?
if grep -q "panicked" "$work/service.log"; then
  echo "the player service panicked:" >&2
  grep -A5 "panicked" "$work/service.log" >&2
  status=1
fi
exit "$status"
