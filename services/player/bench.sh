#!/usr/bin/env bash
# Player-service benchmark: device logins, profile reads (cached and uncached) and idle WebSockets
# held by one replica on one core.
#
#   services/player/bench.sh        (./x bench player)
#
# Starts FerretDB, Redis and OpenSearch (e2e/storage/up.sh), then the service pinned to core 0
# (taskset) and the load generator (services/player/benches/load.rs) pinned to core 1, which also
# runs the databases. Prints, in one run: the service's bare HTTP rate on its core (GET /healthz, no
# storage: the ceiling), the database's own rate for a login's reads and writes (the store
# ceiling), logins/s with p50/p99 (then again with the service capped to a small CPU quota, so that
# it and not the store is the bound), profile reads/s with the cache on and off, and idle WebSockets:
# three replicas on core 0 (a process may hold at most `ulimit -Hn` descriptors here, 20,000)
# with BENCH_SOCKETS each, their memory per connection and CPU while idle.
#
#   BENCH_SECONDS (10)  BENCH_CONCURRENCY (64)  BENCH_ACCOUNTS (1000)  BENCH_SOCKETS (19500)
#   BENCH_LOGIN_CAP (3)  the capped login phase's CPU quota, in % of a core
#   BENCH_ONLY=sockets|http  run only the socket phase, or only the HTTP phases
#   BENCH_BASE=<git revision>  instead, compare: build that revision's service too and run sign-ins
#                    and profile reads (cached, uncached) against both in one run, alternating
#                    base, this tree, base, this tree, each on a database of its own
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${FLOTILLA_CACHE:-$HOME/.cache/flotilla}/target}
export BENCH_SECONDS=${BENCH_SECONDS:-10} BENCH_CONCURRENCY=${BENCH_CONCURRENCY:-64}
export BENCH_ACCOUNTS=${BENCH_ACCOUNTS:-1000}
sockets=${BENCH_SOCKETS:-19500}

work=$(mktemp -d)
if [[ -n ${BENCH_BASE:-} ]]; then
  # Built first, from a worktree that is removed again: cargo then finds the sources it recorded
  # for the workspace's crates gone and rebuilds this tree's below, instead of trusting the base's.
  git worktree add --quiet --detach "$work/base" "$BENCH_BASE"
  (cd "$work/base" && cargo build --release --quiet -p flotilla-player)
  cp "$CARGO_TARGET_DIR/release/flotilla-player" "$work/flotilla-player-base"
  git worktree remove --force "$work/base"
fi
cargo build --release --quiet -p flotilla-player
cargo bench --quiet -p flotilla-player --bench load --no-run 2> /dev/null
load=$(ls -t "$CARGO_TARGET_DIR"/release/deps/load-* | grep -v '\.d$' | head -1)
player=$CARGO_TARGET_DIR/release/flotilla-player
service=
replicas=()
cleanup() {
  [[ -n $service ]] && kill "$service" 2> /dev/null || true
  [[ -n $cgroup ]] && { sleep 0.5; rmdir "$cgroup" 2> /dev/null || true; }
  for pid in "${replicas[@]}"; do kill "$pid" 2> /dev/null || true; done
  e2e/storage/down.sh --dir "$work/storage" > /dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

e2e/storage/build.sh > /dev/null
taskset -c 1 e2e/storage/up.sh --dir "$work/storage" > /dev/null
set -a; source "$work/storage/env"; set +a
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# As many descriptors as this machine allows: each idle WebSocket holds one in the service.
ulimit -n "$(ulimit -Hn)"

token_key=$("$player" generate-token-key)

# Starts a replica on core 0 against database bench$2 (cache seconds $1), waits until it is ready,
# and sets BENCH_API, BENCH_OPS and BENCH_SERVICE_PID for it.
start_replica() {
  export BENCH_API=127.0.0.1:$(free_port) BENCH_OPS=127.0.0.1:$(free_port) BENCH_DATABASE=bench$2
  FLOTILLA_PROFILE_CACHE_SECONDS=$1 RUST_LOG=warn taskset -c 0 "$player" serve \
    --addr "$BENCH_API" --metrics-addr "$BENCH_OPS" --migrate true --database "bench$2" --namespace "bench$2" \
    --token-key "$token_key" --service-key bench-service-key-0123456789 \
    --login-limit-account 1000000000 --login-limit-address 1000000000 &
  export BENCH_SERVICE_PID=$!
  for _ in $(seq 100); do curl -sf "http://$BENCH_OPS/readyz" > /dev/null && return; sleep 0.2; done
  echo "the player service did not become ready" >&2; exit 1
}

# Replaces the running single replica with a fresh one.
start_service() {
  [[ -n $service ]] && { kill "$service"; wait "$service" 2> /dev/null || true; }
  start_replica "$@"
  service=$BENCH_SERVICE_PID
}

# Caps process $1 at $2 % of one core with a CFS quota in a cgroup of its own (the mechanism behind
# a Kubernetes CPU limit, with its default 100 ms period); `uncap_cpu` moves it back. Fails where
# this machine lets no cpu controller be written (cgroup v1 or v2).
cgroup=
cap_cpu() {
  local quota=$(( $2 * 1000 ))
  if [[ -w /sys/fs/cgroup/cpu/cgroup.procs ]]; then
    cgroup=/sys/fs/cgroup/cpu/flotilla-bench-$$
    mkdir -p "$cgroup" && echo 100000 > "$cgroup/cpu.cfs_period_us" && echo "$quota" > "$cgroup/cpu.cfs_quota_us"
  elif [[ -w /sys/fs/cgroup/cgroup.subtree_control ]]; then
    cgroup=/sys/fs/cgroup/flotilla-bench-$$
    echo +cpu > /sys/fs/cgroup/cgroup.subtree_control && mkdir -p "$cgroup" && echo "$quota 100000" > "$cgroup/cpu.max"
  else
    return 1
  fi
  echo "$1" > "$cgroup/cgroup.procs"
}
uncap_cpu() {
  echo "$1" > "$(dirname "$cgroup")/cgroup.procs"
  rmdir "$cgroup"
  cgroup=
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(date -u +%F)"
echo "service on core 0, load generator and databases on core 1"
if [[ -n ${BENCH_BASE:-} ]]; then
  head=$player
  for round in 1 2; do
    for side in base head; do
      if [[ $side == base ]]; then player=$work/flotilla-player-base; else player=$head; fi
      start_service 300 "$side$round"
      BENCH_LABEL="$side, round $round: device logins" taskset -c 1 "$load" logins
      BENCH_LABEL="$side, round $round: profile reads, cached" taskset -c 1 "$load" reads
      start_service 0 "${side}u$round"
      BENCH_LABEL="$side, round $round: profile reads, uncached" taskset -c 1 "$load" reads
      kill "$service"; wait "$service" 2> /dev/null || true; service=
    done
  done
  exit 0
fi
if [[ ${BENCH_ONLY:-} != sockets ]]; then
  start_service 300 1
  taskset -c 1 "$load" ceiling
  taskset -c 1 "$load" logins
  # Under a quota the service always has work queued when it runs, as a saturated core would, so
  # rate / quota is what one busy core does (a lower bound: it may use less than its quota).
  cap=${BENCH_LOGIN_CAP:-3}
  if cap_cpu "$service" "$cap"; then
    BENCH_CPU_CAP=$cap BENCH_LABEL="device logins, service capped at $cap % of a core" taskset -c 1 "$load" logins
    uncap_cpu "$service"
  else
    echo "device logins, capped: skipped (no writable cgroup cpu controller here)"
  fi
  taskset -c 1 "$load" store
  BENCH_LABEL="profile reads, cached" taskset -c 1 "$load" reads
  start_service 0 2
  BENCH_LABEL="profile reads, uncached" taskset -c 1 "$load" reads
  kill "$service"; wait "$service" 2> /dev/null || true; service=
fi
[[ ${BENCH_ONLY:-} == http ]] && exit 0
# Three replicas of one deployment on core 0, each with its own generator on core 1, at once;
# the generators hold their sockets idle over one shared window, once all are open.
generators=()
for k in 1 2 3; do
  start_replica 300 3
  replicas+=("$BENCH_SERVICE_PID")
  BENCH_SOCKETS=$sockets BENCH_SOURCE=$k BENCH_REDIS_PID=$(cat "$work/storage/redis.pid") BENCH_BARRIER=$work:3 \
    taskset -c 1 "$load" sockets > "$work/sockets-$k" &
  generators+=($!)
done
for pid in "${generators[@]}"; do wait "$pid"; done
cat "$work"/sockets-*
awk '/idle websockets/ {n += $3} END {printf "idle websockets on one core: %d in total\n", n}' "$work"/sockets-*
