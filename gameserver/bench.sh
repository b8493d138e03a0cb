#!/usr/bin/env bash
# Game-server benchmark: how many players one server holds on one core at 30 Hz.
#
#   gameserver/bench.sh [PLAYER_COUNTS...]      (default: 250 500 1000 1500)
#
# Prints, per player count: the server's tick time p50/p99 (from its own histogram), its CPU
# per player, bytes per player per second, snapshot loss and input latency seen by the bots;
# plus the game core's tick time without a network, and the raw loopback UDP datagram rate
# of one core (the physical ceiling) measured in the same run. The server is pinned to core 0
# and the bots to core 1 (taskset), so "one core" is literal.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${FLOTILLA_CACHE:-$HOME/.cache/flotilla}/target}
counts=("${@:-250 500 1000 1500}")
read -r -a counts <<< "${counts[*]}"
seconds=${BENCH_SECONDS:-15}

cargo build --release --quiet -p flotilla-gameserver --bins
cargo build --release --quiet -p flotilla-game --example tick-bench
bin=$CARGO_TARGET_DIR/release
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# p50 and p99 (upper bucket edge, ms) of the tick histogram between two scrapes.
tick_percentiles() {
  python3 - "$1" "$2" <<'PY'
import re, sys
def buckets(path):
    out = {}
    for line in open(path):
        m = re.match(r'flotilla_gameserver_tick_duration_seconds_bucket\{le="([^"]+)"\} (\S+)', line)
        if m: out[m.group(1)] = float(m.group(2))
    return out
a, b = buckets(sys.argv[1]), buckets(sys.argv[2])
edges = sorted(b, key=lambda e: float('inf') if e == '+Inf' else float(e))
total = b['+Inf'] - a.get('+Inf', 0)
def pct(p):
    for e in edges:
        if b[e] - a.get(e, 0) >= p * total: return e
    return '+Inf'
fmt = lambda e: e if e == '+Inf' else '%.2f' % (float(e) * 1000)
print(fmt(pct(0.5)), fmt(pct(0.99)), int(total))
PY
}

echo "== machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r), $(date -u +%F)"

# Other load skews every number below: say how busy the machine was just before the runs.
busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8}' /proc/stat; }
read -r busy1 total1 < <(busy); sleep 1; read -r busy2 total2 < <(busy)
echo "== other load before the runs: $(( 100 * (busy2 - busy1) / (total2 - total1) )) % of all cores over 1 s"
echo "== raw UDP ceiling: one core receiving, one sending (100-byte datagrams)"
port=$(free_port)
taskset -c 0 "$bin/bench-udp" recv "127.0.0.1:$port" 5 > "$work/udp" &
recv_pid=$!
sleep 0.3
taskset -c 1 "$bin/bench-udp" send "127.0.0.1:$port" 6 100 > /dev/null
wait "$recv_pid"
udp_rate=$(awk '{print $2}' "$work/udp")
echo "udp ceiling: $udp_rate datagrams/s into one core"

echo "== game core alone (no network), 1000 players, 900 ticks"
taskset -c 0 "$bin/examples/tick-bench" 1000 900

public=$("$bin/flotilla-bots" --write-key "$work/key.der")
clk=$(getconf CLK_TCK)
printf '\n%-8s %-10s %-10s %-10s %-12s %-12s %-12s %-8s %-10s %-10s %-10s\n' players tick_p50 tick_p99 budget% cpu_core% cpu_us/pl/s bytes_in/pl bytes_out/pl loss lat_p50 lat_p99
for run in "${!counts[@]}"; do
  n=${counts[$run]}
  # One log per run: a count given twice must not read the previous server's fingerprint.
  log=$work/server-$run.log
  port=$(free_port) metrics=$(free_port)
  RUST_LOG=info taskset -c 0 "$bin/flotilla-gameserver" --address 127.0.0.1 --port "$port" \
    --metrics-port "$metrics" --name bench --token-keys "$public" --standalone-session bench \
    --max-players $((n + 10)) --match-seconds 3600 --arena-metres "$(python3 -c "import math; print(max(100, int(math.sqrt($n * 40))))")" \
    > "$log" 2>&1 &
  server=$!
  pids+=("$server")
  for _ in $(seq 50); do grep -qs fingerprint "$log" && break; sleep 0.1; done
  fingerprint=$(sed -nE 's/.*fingerprint=([0-9a-f]{64}).*/\1/p' "$log" | head -1)
  taskset -c 1 "$bin/flotilla-bots" --addr "127.0.0.1:$port" --fingerprint "$fingerprint" \
    --signing-key "$work/key.der" --server bench --session bench --players "$n" \
    --seconds "$seconds" > "$work/bots" 2>&1 &
  bots=$!
  # Measure the middle of the run, after every bot has joined.
  sleep 4
  curl -s "http://127.0.0.1:$metrics/metrics" > "$work/m1"
  c1=$(cpu_ticks "$server") t1=$(date +%s.%N)
  sleep $((seconds - 7))
  curl -s "http://127.0.0.1:$metrics/metrics" > "$work/m2"
  c2=$(cpu_ticks "$server") t2=$(date +%s.%N)
  wait "$bots" || true
  kill "$server"; wait "$server" 2> /dev/null || true
  read -r p50 p99 ticks < <(tick_percentiles "$work/m1" "$work/m2")
  summary=$(grep '^bots' "$work/bots") && [[ $summary != *"joined=0 "* ]] || { cat "$work/bots" >&2; exit 1; }
  python3 - "$n" "$p50" "$p99" "$c1" "$c2" "$t1" "$t2" "$clk" "$summary" <<'PY'
import re, sys
n, p50, p99, c1, c2, t1, t2, clk, summary = sys.argv[1:]
n = int(n); secs = float(t2) - float(t1)
cpu = (int(c2) - int(c1)) / int(clk) / secs
kv = dict(re.findall(r'(\w+)=([\d.]+)', summary))
get = lambda k: re.search(k + r'=([\d.]+)', summary).group(1)
budget = '-' if p99 == '+Inf' else '%.0f' % (float(p99) / (1000 / 30) * 100)
print('%-8d %-10s %-10s %-10s %-12.0f %-12.1f %-12s %-12s %-8s %-10s %-10s' % (
    n, p50, p99, budget, cpu * 100, cpu / n * 1e6, get('in'), get('out'), get('loss'),
    get('p50'), get('p99')))
PY
done
echo
echo "tick_p50/p99: ms, upper edge of the histogram bucket (server pinned to one core); budget%: p99 / 33.3 ms"
echo "cpu_core%: the server process's CPU over the window (100 = one core); cpu_us/pl/s: CPU µs per player per second"
echo "bytes_in/pl: snapshot bytes each bot received per second; bytes_out/pl: input bytes it sent"
echo "loss: snapshots missing at the bots (%); lat: input→acknowledging snapshot (ms), includes up to one tick of wait"
echo "server packet rate at N players ≈ 2 × 30 × N datagrams/s vs the udp ceiling above"
